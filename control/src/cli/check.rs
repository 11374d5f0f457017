//! What `launch deploy` checks before it packs or uploads anything: the
//! compose file read by the one compose model (`launch_core::compose`) with
//! the variables the host will have. A problem is bad input (exit 2) naming
//! the file:line or key path; nothing reaches the control plane. Variables
//! compose would miss on the host are warnings, and those that only the
//! local `.env` sets (it is not uploaded unless `--include-env`) are named
//! with where they belong instead. When the control plane knows the compose
//! the service's host runs (its agent says so in its Hello), keys that compose
//! lacks are refused here too, by the same rule the control plane applies
//! (`launch_core::compose::features`).

use std::collections::BTreeSet;
use std::path::Path;

use launch_core::bundle::{COMPOSE_FILES, DOTENV_FILE};
use launch_core::compose::{self, features::HostCompose};
use launch_core::service_config::ServiceConfig;

use super::CliError;

/// Checks the compose file in `dir` (against `host`'s compose when known);
/// `Ok` holds the warnings to print.
pub fn compose_dir(
    dir: &Path,
    config: &ServiceConfig,
    secret_names: &BTreeSet<String>,
    include_env: bool,
    host: Option<HostCompose>,
) -> Result<Vec<String>, CliError> {
    let Some(file) = COMPOSE_FILES.iter().find(|f| dir.join(f).is_file()) else {
        return Err(CliError::usage(format!(
            "no compose file in {}: add compose.yaml (or one of {}) describing the service",
            dir.display(),
            COMPOSE_FILES[1..].join(", ")
        )));
    };
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    let dotenv = std::fs::read_to_string(dir.join(DOTENV_FILE)).ok();
    let vars = compose::host_variables(
        dotenv.as_deref().filter(|_| include_env),
        &config.env,
        secret_names.iter().map(String::as_str),
    );
    let project = compose::check(&path.display().to_string(), &text, &vars, host)
        .map_err(|e| CliError::usage(e.to_string()))?;
    Ok(warnings(
        &project.unset_variables,
        dotenv.as_deref(),
        include_env,
        dir,
    ))
}

fn warnings(
    unset: &BTreeSet<String>,
    dotenv: Option<&str>,
    include_env: bool,
    dir: &Path,
) -> Vec<String> {
    let local: BTreeSet<String> = dotenv
        .filter(|_| !include_env)
        .map(|text| {
            compose::interpolate::parse_dotenv(text)
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        })
        .unwrap_or_default();
    let (from_dotenv, nowhere): (Vec<&String>, Vec<&String>) =
        unset.iter().partition(|name| local.contains(*name));
    let list = |names: &[&String]| {
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut warnings = Vec::new();
    if !from_dotenv.is_empty() {
        warnings.push(format!(
            "{} is not uploaded, so compose on the host will not see {}: put non-secret values in launch.toml [env], secrets in `launch secrets set` or --secret-env, or pass --include-env to upload the file",
            dir.join(DOTENV_FILE).display(),
            list(&from_dotenv)
        ));
    }
    if !nowhere.is_empty() {
        warnings.push(format!(
            "compose will substitute an empty string for {}: nothing sets them (launch.toml [env], secrets)",
            list(&nowhere)
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const USES_ENV: &str = "services:\n  web:\n    image: \"busybox:${TAG}\"\n    volumes: [\"${MEDIA_PATH:-./media}:/m\"]\n    environment: [\"LEVEL=${LEVEL}\"]\n";

    #[test]
    fn a_local_env_file_is_named_with_the_variables_compose_would_miss() {
        let d = dir(&[
            ("compose.yaml", USES_ENV),
            (".env", "TAG=1\nMEDIA_PATH=/x\n"),
        ]);
        let warnings = compose_dir(
            d.path(),
            &ServiceConfig::default(),
            &BTreeSet::new(),
            false,
            None,
        )
        .unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("will not see TAG:"), "{warnings:?}");
        assert!(warnings[0].contains("launch.toml [env]"), "{warnings:?}");
        assert!(
            warnings[1].contains("empty string for LEVEL"),
            "{warnings:?}"
        );
        let included = compose_dir(
            d.path(),
            &ServiceConfig::default(),
            &BTreeSet::new(),
            true,
            None,
        )
        .unwrap();
        assert_eq!(included.len(), 1, "{included:?}");
        let mut config = ServiceConfig::default();
        config.env.insert("TAG".into(), "2".into());
        let secrets = BTreeSet::from(["LEVEL".to_owned()]);
        assert!(
            compose_dir(d.path(), &config, &secrets, false, None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_broken_compose_file_is_bad_input_naming_the_key() {
        let d = dir(&[(
            "compose.yaml",
            "services:\n  web: {image: x, ports: [\"70000:80\"]}\n",
        )]);
        let err = compose_dir(
            d.path(),
            &ServiceConfig::default(),
            &BTreeSet::new(),
            false,
            None,
        )
        .unwrap_err();
        assert_eq!(err.code, super::super::exit::USAGE);
        assert!(
            err.message.contains("services.web.ports[0]"),
            "{}",
            err.message
        );
    }
}
