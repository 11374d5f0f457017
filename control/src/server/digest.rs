//! The sha256 of a file this server hands out (the agent and CLI binaries
//! behind `/v1/*/download/*.sha256`, the agent an upgrade mission names):
//! hashed once per change of the file, keyed by path, modification time and
//! size, on a blocking thread so a debug build's tens of megabytes never
//! hold up an async worker.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

type Key = (PathBuf, SystemTime, u64);

fn cache() -> &'static Mutex<HashMap<Key, String>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, String>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The file's sha256 as lowercase hex.
pub async fn file_sha256(path: &Path) -> std::io::Result<String> {
    let meta = tokio::fs::metadata(path).await?;
    let key = (
        path.to_owned(),
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    );
    if let Some(hit) = cache().lock().expect("digest cache lock").get(&key) {
        return Ok(hit.clone());
    }
    let owned = path.to_owned();
    let hex = tokio::task::spawn_blocking(move || hash(&owned))
        .await
        .map_err(std::io::Error::other)??;
    cache()
        .lock()
        .expect("digest cache lock")
        .insert(key, hex.clone());
    Ok(hex)
}

fn hash(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_changed_file_is_hashed_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"one").unwrap();
        let first = file_sha256(&path).await.unwrap();
        assert_eq!(first, hex::encode(Sha256::digest(b"one")));
        assert_eq!(file_sha256(&path).await.unwrap(), first, "cached");
        // Another size is another key, whatever the clock's resolution.
        std::fs::write(&path, b"two!").unwrap();
        assert_eq!(
            file_sha256(&path).await.unwrap(),
            hex::encode(Sha256::digest(b"two!"))
        );
    }
}
