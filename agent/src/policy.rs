//! The host policy, enforced where it matters: on the agent, on the release
//! it is about to run, after interpolation with exactly the variables
//! compose will use (the `.env` the agent wrote, then the agent's own
//! environment, which compose lets win). The rules are
//! `launch_core::policy`; the allowances come with the mission from the
//! control plane, where only an admin can grant them. A refused release
//! never reaches `compose up`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use launch_core::compose::{self, Variables};
use launch_core::policy::{self, Allowance};

/// Checks the release's compose file; `Ok` holds its one-shot services.
pub fn enforce(
    release_dir: &Path,
    file: &str,
    dotenv: &BTreeMap<String, String>,
    allowances: &[String],
) -> Result<BTreeSet<String>, String> {
    let path = release_dir.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut vars = Variables::new();
    for (name, value) in dotenv {
        vars.set(name.clone(), value.clone());
    }
    for (name, value) in std::env::vars() {
        vars.set(name, value);
    }
    let project = compose::load(file, &text, &vars).map_err(|e| e.to_string())?;
    let granted: Vec<Allowance> = allowances.iter().filter_map(|a| a.parse().ok()).collect();
    let refusals = policy::check(&project, release_dir, &granted);
    if !refusals.is_empty() {
        let lines: Vec<String> = refusals.iter().map(ToString::to_string).collect();
        return Err(format!(
            "the host policy refuses this release:\n  {}",
            lines.join("\n  ")
        ));
    }
    Ok(project.one_shot_services())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_those_compose_sees_so_they_cannot_hide_a_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("compose.yaml"),
            "services:\n  web:\n    image: x\n    network_mode: ${MODE}\n    volumes: [\"${HOME}:/h\"]\n  migrate: {image: x, restart: \"no\"}\n",
        )
        .unwrap();
        let dotenv = BTreeMap::from([("MODE".to_owned(), "host".to_owned())]);
        let err = enforce(dir.path(), "compose.yaml", &dotenv, &[]).unwrap_err();
        assert!(err.contains("services.web.network_mode"), "{err}");
        assert!(
            err.contains("services.web.volumes[0]"),
            "$HOME comes from the agent's environment: {err}"
        );
        let home = std::env::var("HOME").unwrap();
        let allowed = enforce(
            dir.path(),
            "compose.yaml",
            &dotenv,
            &["host-network".into(), format!("bind:{home}")],
        )
        .unwrap();
        assert_eq!(allowed, BTreeSet::from(["migrate".to_owned()]));
    }
}
