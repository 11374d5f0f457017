//! A service's releases on this host:
//! `<data-dir>/services/<service>/releases/<release-id>/` holds an unpacked
//! bundle plus its `.env`, and the `current` symlink beside `releases/` names
//! the release that is running. The symlink is flipped atomically (new link,
//! then rename), only after a release passed its health gate. Old releases
//! beyond the newest [`KEEP_RELEASES`] are pruned, never the current one.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use launch_core::private_file;

use crate::compose::Flavor;
use crate::dotenv;

pub const KEEP_RELEASES: usize = 5;

/// Where the `.env` a bundle brought (`launch deploy --include-env`) is kept,
/// 0600, once unpacked: `.env` itself is the agent's to write.
pub const BUNDLE_ENV_FILE: &str = ".launch-bundle.env";

/// Moves a freshly unpacked bundle's `.env` aside (see [`BUNDLE_ENV_FILE`]).
pub fn keep_bundle_env(release_dir: &Path) -> io::Result<()> {
    let from = release_dir.join(launch_core::bundle::DOTENV_FILE);
    if !from.is_file() {
        return Ok(());
    }
    let to = release_dir.join(BUNDLE_ENV_FILE);
    fs::rename(&from, &to)?;
    fs::set_permissions(
        &to,
        <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
}

/// The variables of a release's `.env`, lowest precedence first: the
/// bundle's own `.env`, then `launch.toml [env]`, then the secrets (the
/// `LAUNCH_*` variables are added by [`env_file`]).
pub fn env_vars(
    release_dir: &Path,
    config_env: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> = fs::read_to_string(release_dir.join(BUNDLE_ENV_FILE))
        .map(|text| {
            launch_core::compose::interpolate::parse_dotenv(&text)
                .into_iter()
                .collect()
        })
        .unwrap_or_default();
    vars.extend(config_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars.extend(secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

pub struct ServiceDir {
    root: PathBuf,
}

impl ServiceDir {
    pub fn new(data_dir: &Path, service: &str) -> Self {
        ServiceDir {
            root: data_dir.join("services").join(service),
        }
    }

    /// The same layout at `root` (a preview's directory).
    pub fn at(root: PathBuf) -> Self {
        ServiceDir { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn releases(&self) -> PathBuf {
        self.root.join("releases")
    }

    pub fn release(&self, release_id: &str) -> PathBuf {
        self.releases().join(release_id)
    }

    /// The running release, if any.
    pub fn current(&self) -> Option<String> {
        let target = fs::read_link(self.root.join("current")).ok()?;
        let id = target.file_name()?.to_str()?.to_owned();
        self.release(&id).is_dir().then_some(id)
    }

    /// Points `current` at `release_id`, atomically.
    pub fn set_current(&self, release_id: &str) -> io::Result<()> {
        let temp = self
            .root
            .join(format!(".current.tmp-{}", std::process::id()));
        let _ = fs::remove_file(&temp);
        std::os::unix::fs::symlink(Path::new("releases").join(release_id), &temp)?;
        fs::rename(&temp, self.root.join("current"))
    }

    /// Removes the oldest releases beyond [`KEEP_RELEASES`], keeping `current` and `keep`.
    pub fn prune(&self, keep: &str) -> io::Result<()> {
        let current = self.current();
        let mut releases: Vec<(std::time::SystemTime, String)> = fs::read_dir(self.releases())?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                Some((
                    e.metadata().ok()?.modified().ok()?,
                    e.file_name().to_string_lossy().into_owned(),
                ))
            })
            .collect();
        releases.sort();
        let excess = releases.len().saturating_sub(KEEP_RELEASES);
        for (_, id) in releases.into_iter().take(excess) {
            if Some(&id) != current.as_ref() && id != keep {
                fs::remove_dir_all(self.release(&id))?;
            }
        }
        Ok(())
    }
}

/// The text of a `.env` holding `vars` plus the LAUNCH_* variables, encoded
/// for the compose that will read it (`crate::dotenv`).
pub fn env_file(
    vars: &BTreeMap<String, String>,
    flavor: Flavor,
    service: &str,
    environment: &str,
    release_id: &str,
) -> String {
    let mut vars = vars.clone();
    vars.insert("LAUNCH_SERVICE".into(), service.into());
    vars.insert("LAUNCH_ENVIRONMENT".into(), environment.into());
    vars.insert("LAUNCH_RELEASE".into(), release_id.into());
    dotenv::encode(
        "# Written by launch-agent; holds secrets: do not copy.\n",
        &vars,
        flavor,
    )
}

/// The variables the agent adds to every `.env` beside the secrets.
const LAUNCH_VARIABLES: [&str; 3] = ["LAUNCH_SERVICE", "LAUNCH_ENVIRONMENT", "LAUNCH_RELEASE"];

/// The variables of the `.env` in `dir` (what [`env_file`] wrote); empty
/// when there is none.
pub fn read_env(dir: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(dir.join(".env"))
        .map(|text| dotenv::decode(&text))
        .unwrap_or_default()
}

/// The secret values of the `.env` in `dir` (what [`env_file`] wrote, without
/// the LAUNCH_* variables), for redacting a running release's output once its
/// mission's journal entry no longer holds them. Empty when there is no file.
pub fn secret_values(dir: &Path) -> Vec<String> {
    read_env(dir)
        .into_iter()
        .filter(|(key, _)| !LAUNCH_VARIABLES.contains(&key.as_str()))
        .map(|(_, value)| value)
        .collect()
}

/// Writes `.env` into `dir` (0600, atomically).
pub fn write_env(dir: &Path, text: &str) -> io::Result<()> {
    private_file::write_private(&dir.join(".env"), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_flips_atomically_and_ignores_missing_releases() {
        let data = tempfile::tempdir().unwrap();
        let dir = ServiceDir::new(data.path(), "hello");
        assert_eq!(dir.current(), None);
        for id in ["r-1", "r-2"] {
            fs::create_dir_all(dir.release(id)).unwrap();
        }
        dir.set_current("r-1").unwrap();
        assert_eq!(dir.current().as_deref(), Some("r-1"));
        dir.set_current("r-2").unwrap();
        assert_eq!(dir.current().as_deref(), Some("r-2"));
        fs::remove_dir_all(dir.release("r-2")).unwrap();
        assert_eq!(dir.current(), None);
    }

    #[test]
    fn prune_keeps_the_newest_and_the_current() {
        let data = tempfile::tempdir().unwrap();
        let dir = ServiceDir::new(data.path(), "hello");
        for i in 0..8 {
            let path = dir.release(&format!("r-{i}"));
            fs::create_dir_all(&path).unwrap();
            let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i);
            fs::File::open(&path).unwrap().set_modified(when).unwrap();
        }
        dir.set_current("r-0").unwrap();
        dir.prune("r-7").unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.releases())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["r-0", "r-3", "r-4", "r-5", "r-6", "r-7"]);
    }

    #[test]
    fn env_file_holds_the_launch_variables() {
        let text = env_file(
            &BTreeMap::from([("API_TOKEN".into(), "s3cret".into())]),
            Flavor::Plugin,
            "hello",
            "prod",
            "r-1",
        );
        assert!(text.starts_with("# Written by launch-agent"), "{text}");
        assert!(text.contains("API_TOKEN=\"s3cret\"\n"), "{text}");
        assert!(text.contains("LAUNCH_RELEASE=\"r-1\"\n"), "{text}");
    }

    #[test]
    fn env_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_env(dir.path(), "A='b'\n").unwrap();
        let mode = fs::metadata(dir.path().join(".env"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_bundles_env_is_kept_aside_and_loses_to_launch_toml_and_secrets() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(".env"),
            "MEDIA=/srv/media\nLEVEL=debug\nTOKEN=old\n",
        )
        .unwrap();
        keep_bundle_env(dir.path()).unwrap();
        assert!(!dir.path().join(".env").exists());
        let kept = fs::metadata(dir.path().join(BUNDLE_ENV_FILE)).unwrap();
        assert_eq!(kept.permissions().mode() & 0o777, 0o600);
        let vars = env_vars(
            dir.path(),
            &BTreeMap::from([("LEVEL".into(), "info".into())]),
            &BTreeMap::from([("TOKEN".into(), "new".into())]),
        );
        assert_eq!(vars["MEDIA"], "/srv/media");
        assert_eq!(vars["LEVEL"], "info");
        assert_eq!(vars["TOKEN"], "new");
        keep_bundle_env(dir.path()).unwrap();
    }

    #[test]
    fn secret_values_read_back_what_env_file_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = BTreeMap::from([
            ("A".to_owned(), "plain".to_owned()),
            ("B".to_owned(), "it's \"x\" \\ a\nb".to_owned()),
        ]);
        write_env(
            dir.path(),
            &env_file(&secrets, Flavor::Standalone, "hello", "prod", "r-1"),
        )
        .unwrap();
        let mut values = secret_values(dir.path());
        values.sort();
        let mut expected: Vec<String> = secrets.into_values().collect();
        expected.sort();
        assert_eq!(
            values, expected,
            "the service name and release id are not secrets"
        );
        assert!(secret_values(&dir.path().join("missing")).is_empty());
    }
}
