//! `launch server rotate-key`: replaces the secret key and re-encrypts every
//! secret with it. It is an offline operation on a stopped server's data dir,
//! not an RPC: a running server holds the key in memory and would go on
//! sealing new secrets with the old one, and an RPC would put a request
//! that can re-key every secret behind the same bearer token as `launch
//! status`. The data dir lock (`server.lock`, held by a running server)
//! makes "stopped" a checked fact rather than a hope.
//!
//! The steps are ordered so that an interruption at any point loses
//! nothing. (1) The new key is written 0600, atomically, to
//! `secret.key.new` (or `--new-key-file`). (2) One SQLite transaction opens
//! every secret with the old key, seals it with the new one (a fresh random
//! nonce per value) and records the new key's fingerprint in `settings`;
//! it commits whole or not at all. (3) `secret.key.new` is renamed over
//! `secret.key`. A crash before (2) commits leaves the old key and the old
//! rows; a crash between (2) and (3) leaves a `secret.key.new` whose
//! fingerprint the store already names, and [`finish_interrupted`] (run by
//! the server at start and by the next rotation) completes the rename.
//! At start the server refuses a key whose fingerprint differs from the
//! stored one, so the old key cannot be used by mistake.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use launch_core::private_file;

use super::secrets::{self, SecretBox, SecretError, fingerprint};
use super::store::Store;

/// Where a rotation stages the new key before the transaction commits.
pub const STAGED_KEY_FILE: &str = "secret.key.new";
/// Held (flock) by a running server and by a rotation.
pub const LOCK_FILE: &str = "server.lock";
/// The `settings` row naming the fingerprint of the key the secrets are sealed with.
pub const FINGERPRINT_SETTING: &str = "secret_key_fingerprint";

/// Flags of `launch server rotate-key`.
#[derive(Clone, Debug, clap::Args)]
pub struct RotateKeyArgs {
    /// The stopped server's data dir [default: ~/.local/share/launch/server]
    #[arg(long, env = "LAUNCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The database the server uses [default: sqlite://<data-dir>/launch.db]
    #[arg(long, env = "LAUNCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Write the new key (base64) here instead of <data-dir>/secret.key;
    /// required when the current key comes from LAUNCH_SECRET_KEY
    #[arg(long)]
    pub new_key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(
        "the data dir {dir} is in use by a running `launch server` or `launch dev`: stop it first (or use another --data-dir)"
    )]
    Locked { dir: String },
    #[error(
        "a launch server replica is running on this database: stop every replica first, then copy the new key to each one's data dir (or LAUNCH_SECRET_KEY)"
    )]
    ReplicasRunning,
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no secret key at {path}: is {dir} a server's data dir? pass --data-dir")]
    NoKey { path: String, dir: String },
    #[error(
        "the secret key comes from LAUNCH_SECRET_KEY: pass --new-key-file PATH for the new key, then put its contents in LAUNCH_SECRET_KEY"
    )]
    NeedKeyFile,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the database: {0}")]
    Store(#[from] sqlx::Error),
}

/// What a finished rotation did.
#[derive(Debug)]
pub struct Rotated {
    pub secrets: usize,
    /// Where the new key is.
    pub key_file: PathBuf,
}

/// The data dir lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the exclusive lock on `data_dir`, failing at once if it is held.
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock, RotateError> {
    use std::os::fd::AsRawFd;
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| RotateError::Lock {
            path: path.display().to_string(),
            source,
        })?;
    // SAFETY: flock on a descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(RotateError::Locked {
                dir: data_dir.display().to_string(),
            });
        }
        return Err(RotateError::Lock {
            path: path.display().to_string(),
            source: err,
        });
    }
    Ok(DataDirLock { _file: file })
}

/// Completes a rotation that committed but stopped before renaming
/// `secret.key.new` into place, or discards one that never committed.
/// Returns true when it moved a new key into place.
pub async fn finish_interrupted(store: &Store, data_dir: &Path) -> Result<bool, RotateError> {
    let staged = data_dir.join(STAGED_KEY_FILE);
    let text = match std::fs::read_to_string(&staged) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(RotateError::Write {
                path: staged.display().to_string(),
                source,
            });
        }
    };
    let committed = match secrets::parse_key(&text, &staged.display().to_string()) {
        Ok(key) => store.setting(FINGERPRINT_SETTING).await?.as_deref() == Some(&fingerprint(&key)),
        // A half-written staging file is impossible (it is renamed into
        // place), but a damaged one cannot be the committed key either.
        Err(_) => false,
    };
    let result = if committed {
        std::fs::rename(&staged, data_dir.join(secrets::KEY_FILE))
    } else {
        std::fs::remove_file(&staged)
    };
    result.map_err(|source| RotateError::Write {
        path: staged.display().to_string(),
        source,
    })?;
    Ok(committed)
}

/// Fails when the store names a key fingerprint and `secret_box` does not
/// hold that key.
pub async fn check_key(store: &Store, secret_box: &SecretBox) -> anyhow::Result<()> {
    if let Some(stored) = store.setting(FINGERPRINT_SETTING).await? {
        anyhow::ensure!(
            stored == secret_box.fingerprint(),
            "the secret key (LAUNCH_SECRET_KEY or <data-dir>/secret.key) is not the one the secrets are encrypted with (fingerprint {stored}); after `launch server rotate-key` use the new key it wrote"
        );
    }
    Ok(())
}

/// Records the fingerprint of `secret_box`'s key at the first start on a
/// database and, on every later start (of any replica), refuses a key whose
/// fingerprint is not the stored one: the secrets are sealed with one key,
/// so every replica must hold it. `origin` names where the key came from.
pub async fn claim_key(store: &Store, secret_box: &SecretBox, origin: &str) -> anyhow::Result<()> {
    let mine = secret_box.fingerprint();
    let stored = store.setting_or_insert(FINGERPRINT_SETTING, mine).await?;
    anyhow::ensure!(
        stored == mine,
        "the secret key from {origin} (fingerprint {mine}) is not the key this database's secrets are sealed with (fingerprint {stored}): \
         every replica needs the same key. Copy secret.key from the data dir of the replica that started first over {origin}, \
         or give that key in LAUNCH_SECRET_KEY; after `launch server rotate-key`, use the new key it wrote"
    );
    Ok(())
}

/// Rotates the key of the stopped server whose data dir is `data_dir`.
/// `env_key` is `LAUNCH_SECRET_KEY` if set.
pub async fn rotate(
    store: &Store,
    data_dir: &Path,
    env_key: Option<[u8; 32]>,
    new_key_file: Option<&Path>,
) -> Result<Rotated, RotateError> {
    finish_interrupted(store, data_dir).await?;
    let key_path = data_dir.join(secrets::KEY_FILE);
    let old_key = match env_key {
        Some(key) => key,
        None => match std::fs::read_to_string(&key_path) {
            Ok(text) => secrets::parse_key(&text, &key_path.display().to_string())?,
            Err(_) => {
                return Err(RotateError::NoKey {
                    path: key_path.display().to_string(),
                    dir: data_dir.display().to_string(),
                });
            }
        },
    };
    let staged = match (env_key, new_key_file) {
        (_, Some(path)) => path.to_path_buf(),
        (Some(_), None) => return Err(RotateError::NeedKeyFile),
        (None, None) => data_dir.join(STAGED_KEY_FILE),
    };
    let new_key: [u8; 32] = rand::random();
    write_key(&staged, &new_key)?;
    let old_box = SecretBox::new(old_key);
    let new_box = SecretBox::new(new_key);
    let count = store
        .reseal_secrets(
            |service, environment, key, nonce, ciphertext| {
                let address = secrets::address(service, environment, key);
                let value = old_box.open(&address, nonce, ciphertext)?;
                Ok::<_, RotateError>(new_box.seal(&address, &value))
            },
            (FINGERPRINT_SETTING, &fingerprint(&new_key)),
        )
        .await;
    let count = match count {
        Ok(count) => count,
        Err(err) => {
            // Nothing committed: the old key stays the key.
            let _ = std::fs::remove_file(&staged);
            return Err(err);
        }
    };
    let key_file = if new_key_file.is_none() && env_key.is_none() {
        std::fs::rename(&staged, &key_path).map_err(|source| RotateError::Write {
            path: key_path.display().to_string(),
            source,
        })?;
        key_path
    } else {
        staged
    };
    Ok(Rotated {
        secrets: count,
        key_file,
    })
}

fn write_key(path: &Path, key: &[u8; 32]) -> Result<(), RotateError> {
    private_file::write_private(path, format!("{}\n", BASE64.encode(key)).as_bytes()).map_err(
        |source| RotateError::Write {
            path: path.display().to_string(),
            source,
        },
    )
}

/// The `launch server rotate-key` entry: exit 0 rotated, 64 bad input, 1
/// failed. `server` holds the flags given before `rotate-key` (`launch
/// server --data-dir D rotate-key` means the same as `… rotate-key --data-dir D`).
pub async fn main(server: &super::ServerFlags, args: &RotateKeyArgs) -> ExitCode {
    let data_dir = match (
        args.data_dir.as_ref().or(server.data_dir.as_ref()),
        std::env::var_os("HOME"),
    ) {
        (Some(dir), _) => dir.clone(),
        (None, Some(home)) => PathBuf::from(home).join(".local/share/launch/server"),
        (None, None) => {
            eprintln!("error: HOME is not set: pass --data-dir or set LAUNCH_DATA_DIR");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let env_key = match std::env::var(secrets::KEY_ENV) {
        Ok(text) => match secrets::parse_key(&text, secrets::KEY_ENV) {
            Ok(key) => Some(key),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(super::EXIT_CONFIG);
            }
        },
        Err(_) => None,
    };
    if !data_dir.join(secrets::KEY_FILE).is_file() && env_key.is_none() {
        eprintln!(
            "error: no secret key at {}: is {} a server's data dir? pass --data-dir",
            data_dir.join(secrets::KEY_FILE).display(),
            data_dir.display()
        );
        return ExitCode::from(super::EXIT_CONFIG);
    }
    let database_url = args
        .database_url
        .clone()
        .or(server.database_url.clone())
        .unwrap_or_else(|| super::sqlite_url(&data_dir));
    // Opening a missing SQLite file would create an empty database, rotate
    // nothing in it and leave the real one sealed with a key that is gone.
    let database_file = database_url
        .strip_prefix("sqlite://")
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .map(PathBuf::from);
    let postgres =
        super::store::Engine::of_url(&database_url) == Some(super::store::Engine::Postgres);
    match &database_file {
        _ if postgres => {}
        Some(path) if path.is_file() => {}
        _ => {
            eprintln!(
                "error: no SQLite database at {database_url}: pass --database-url (or LAUNCH_DATABASE_URL) as the server was started with"
            );
            return ExitCode::from(super::EXIT_CONFIG);
        }
    }
    let outcome = async {
        let _lock = lock_data_dir(&data_dir)?;
        let store = Store::open(&database_url).await?;
        // Other replicas on the same PostgreSQL database hold the key in
        // memory too: every one of them must be stopped.
        let Some(_replicas) = store.try_lock_replicas().await? else {
            store.close().await;
            return Err(RotateError::ReplicasRunning);
        };
        let result = rotate(&store, &data_dir, env_key, args.new_key_file.as_deref()).await;
        store.close().await;
        result
    }
    .await;
    match outcome {
        Ok(rotated) => {
            let mut out = std::io::stdout();
            let _ = writeln!(
                out,
                "re-encrypted {} secret(s); the new key is in {}",
                rotated.secrets,
                rotated.key_file.display()
            );
            if env_key.is_some() {
                let _ = writeln!(
                    out,
                    "put the contents of {} in LAUNCH_SECRET_KEY before starting the server: the old key no longer opens any secret",
                    rotated.key_file.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with(dir: &Path, key: [u8; 32], values: &[(&str, &str)]) -> Store {
        let store = Store::open(&super::super::sqlite_url(dir)).await.unwrap();
        let sealer = SecretBox::new(key);
        for (name, value) in values {
            let (nonce, ciphertext) = sealer.seal(&secrets::address("svc", "prod", name), value);
            store
                .put_secret("svc", "prod", name, &nonce, &ciphertext)
                .await
                .unwrap();
        }
        store
    }

    fn key_file(dir: &Path) -> [u8; 32] {
        let path = dir.join(secrets::KEY_FILE);
        secrets::parse_key(&std::fs::read_to_string(&path).unwrap(), "test").unwrap()
    }

    async fn opened(store: &Store, key: [u8; 32]) -> Vec<Result<String, SecretError>> {
        let sealer = SecretBox::new(key);
        store
            .all_secrets()
            .await
            .unwrap()
            .into_iter()
            .map(|(s, e, k, nonce, ct)| sealer.open(&secrets::address(&s, &e, &k), &nonce, &ct))
            .collect()
    }

    #[tokio::test]
    async fn rotation_reseals_every_secret_with_fresh_nonces_and_the_old_key_opens_none() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let old = SecretBox::load(None, dir.path()).unwrap();
        drop(old);
        let old_key = key_file(dir.path());
        let store = store_with(
            dir.path(),
            old_key,
            &[("A", "same"), ("B", "same"), ("C", "other")],
        )
        .await;
        let before = store.all_secrets().await.unwrap();

        let rotated = rotate(&store, dir.path(), None, None).await.unwrap();
        assert_eq!(rotated.secrets, 3);
        assert_eq!(rotated.key_file, dir.path().join(secrets::KEY_FILE));
        let mode = std::fs::metadata(&rotated.key_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.path().join(STAGED_KEY_FILE).exists());
        let new_key = key_file(dir.path());
        assert_ne!(new_key, old_key);

        let values: Vec<String> = opened(&store, new_key)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(values, ["same", "same", "other"]);
        assert!(opened(&store, old_key).await.iter().all(Result::is_err));
        let after = store.all_secrets().await.unwrap();
        let nonces: std::collections::HashSet<&Vec<u8>> = after.iter().map(|row| &row.3).collect();
        assert_eq!(nonces.len(), 3, "identical values got identical nonces");
        for (old_row, new_row) in before.iter().zip(&after) {
            assert_ne!(old_row.3, new_row.3, "a nonce survived the rotation");
            assert_ne!(old_row.4, new_row.4);
        }
        check_key(&store, &SecretBox::new(new_key)).await.unwrap();
        let err = check_key(&store, &SecretBox::new(old_key))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("rotate-key"), "{err}");
    }

    #[tokio::test]
    async fn a_rotation_that_cannot_open_a_secret_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let _ = SecretBox::load(None, dir.path()).unwrap();
        let old_key = key_file(dir.path());
        let store = store_with(dir.path(), old_key, &[("A", "one")]).await;
        // A row sealed with some other key: the transaction must roll back.
        let (nonce, ct) = SecretBox::new([9; 32]).seal(&secrets::address("svc", "prod", "Z"), "z");
        store
            .put_secret("svc", "prod", "Z", &nonce, &ct)
            .await
            .unwrap();
        let before = store.all_secrets().await.unwrap();

        let err = rotate(&store, dir.path(), None, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot decrypt secret svc/prod/Z"), "{err}");
        assert_eq!(store.all_secrets().await.unwrap(), before);
        assert_eq!(key_file(dir.path()), old_key);
        assert!(!dir.path().join(STAGED_KEY_FILE).exists());
        assert_eq!(store.setting(FINGERPRINT_SETTING).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_rotation_interrupted_after_commit_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let _ = SecretBox::load(None, dir.path()).unwrap();
        let old_key = key_file(dir.path());
        let store = store_with(dir.path(), old_key, &[("A", "one"), ("B", "two")]).await;
        // Steps 1 and 2 of a rotation, then a "crash" before the rename.
        let new_key = [42u8; 32];
        write_key(&dir.path().join(STAGED_KEY_FILE), &new_key).unwrap();
        let (old_box, new_box) = (SecretBox::new(old_key), SecretBox::new(new_key));
        store
            .reseal_secrets(
                |s, e, k, n, c| {
                    let address = secrets::address(s, e, k);
                    Ok::<_, RotateError>(new_box.seal(&address, &old_box.open(&address, n, c)?))
                },
                (FINGERPRINT_SETTING, &fingerprint(&new_key)),
            )
            .await
            .unwrap();
        assert_eq!(key_file(dir.path()), old_key);

        assert!(finish_interrupted(&store, dir.path()).await.unwrap());
        assert_eq!(key_file(dir.path()), new_key);
        let values: Vec<String> = opened(&store, new_key)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(values, ["one", "two"]);
    }

    #[tokio::test]
    async fn a_rotation_interrupted_before_commit_keeps_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let _ = SecretBox::load(None, dir.path()).unwrap();
        let old_key = key_file(dir.path());
        let store = store_with(dir.path(), old_key, &[("A", "one")]).await;
        write_key(&dir.path().join(STAGED_KEY_FILE), &[42u8; 32]).unwrap();

        assert!(!finish_interrupted(&store, dir.path()).await.unwrap());
        assert!(!dir.path().join(STAGED_KEY_FILE).exists());
        assert_eq!(key_file(dir.path()), old_key);
        assert_eq!(opened(&store, old_key).await[0].as_deref().unwrap(), "one");
    }

    #[tokio::test]
    async fn an_env_key_needs_a_new_key_file_and_leaves_secret_key_alone() {
        let dir = tempfile::tempdir().unwrap();
        let env_key = [5u8; 32];
        let store = store_with(dir.path(), env_key, &[("A", "one")]).await;
        let err = rotate(&store, dir.path(), Some(env_key), None)
            .await
            .unwrap_err();
        assert!(matches!(err, RotateError::NeedKeyFile), "{err}");
        let out = dir.path().join("new.key");
        let rotated = rotate(&store, dir.path(), Some(env_key), Some(&out))
            .await
            .unwrap();
        assert_eq!(rotated.key_file, out);
        assert!(!dir.path().join(secrets::KEY_FILE).exists());
        let new_key = secrets::parse_key(&std::fs::read_to_string(&out).unwrap(), "t").unwrap();
        assert_eq!(opened(&store, new_key).await[0].as_deref().unwrap(), "one");
    }

    #[test]
    fn the_data_dir_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        let err = lock_data_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("stop it first"), "{err}");
        drop(held);
        lock_data_dir(dir.path()).unwrap();
    }
}
