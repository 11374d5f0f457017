//! A bundle upload as `Deploy` receives it: kept in memory while it is small
//! (most bundles are a few KB), moved to a temp file in the staging dir once
//! it passes [`IN_MEMORY_BYTES`]. Creating a file is the costliest step of a
//! small deploy on a busy ext4 (its inode allocator scans for recently
//! deleted inodes), so an upload of a bundle the store already holds — a
//! redeploy, a rollback's re-upload, the same bundle to many environments —
//! touches the disk not at all, and a new one only where the store keeps it.

use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

/// The most an upload keeps in memory before it moves to a file.
pub const IN_MEMORY_BYTES: usize = 1 << 20;

/// An upload being received.
pub enum Spool {
    Memory(Vec<u8>),
    File {
        temp: tempfile::NamedTempFile,
        file: tokio::fs::File,
    },
}

/// A received upload, checked and ready for [`super::BundleStore::put`].
#[derive(Debug)]
pub enum Upload {
    Memory(Bytes),
    File(tempfile::NamedTempFile),
}

impl Default for Spool {
    fn default() -> Self {
        Spool::Memory(Vec::new())
    }
}

impl Spool {
    /// Appends `chunk`, moving to a temp file in `staging_dir` when the
    /// upload grows past [`IN_MEMORY_BYTES`].
    pub async fn write(&mut self, chunk: &[u8], staging_dir: &Path) -> io::Result<()> {
        if let Spool::Memory(bytes) = self {
            if bytes.len() + chunk.len() <= IN_MEMORY_BYTES {
                bytes.extend_from_slice(chunk);
                return Ok(());
            }
            let temp = new_temp(staging_dir)?;
            let mut file = tokio::fs::File::from_std(temp.reopen()?);
            file.write_all(bytes).await?;
            *self = Spool::File { temp, file };
        }
        if let Spool::File { file, .. } = self {
            file.write_all(chunk).await?;
        }
        Ok(())
    }

    /// The whole upload, flushed to its file if it has one.
    pub async fn finish(self) -> io::Result<Upload> {
        match self {
            Spool::Memory(bytes) => Ok(Upload::Memory(bytes.into())),
            Spool::File { temp, mut file } => {
                file.flush().await?;
                Ok(Upload::File(temp))
            }
        }
    }
}

impl Upload {
    /// The upload's bytes from the start (blocking reads: for
    /// `spawn_blocking`).
    pub fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Upload::Memory(bytes) => Box::new(io::Cursor::new(bytes.clone())),
            Upload::File(temp) => Box::new(io::BufReader::new(std::fs::File::open(temp.path())?)),
        })
    }

    /// The upload as a temp file in `staging_dir` (written there if it was
    /// in memory). Blocking.
    pub fn into_file(self, staging_dir: &Path) -> io::Result<tempfile::NamedTempFile> {
        match self {
            Upload::File(temp) => Ok(temp),
            Upload::Memory(bytes) => {
                let mut temp = new_temp(staging_dir)?;
                io::Write::write_all(&mut temp, &bytes)?;
                Ok(temp)
            }
        }
    }
}

fn new_temp(staging_dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".upload-")
        .suffix(".tar.gz")
        .tempfile_in(staging_dir)
}
