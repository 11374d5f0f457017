//! Where uploaded bundles live, content-addressed by sha256: the data dir's
//! `bundles/` (the default, one replica's own disk) or an S3-compatible
//! bucket (`--bundle-store s3://BUCKET/PREFIX`), which every replica on one
//! database shares, so an agent fetches from any replica what was uploaded
//! through another. `Deploy` puts, `FetchBundle` opens; nothing else reads
//! bundles. The two backends differ only behind [`BundleStore`]: its
//! methods are the one `match` on [`Backend`].
//!
//! An upload is received into memory, or into a temp file in
//! `<data-dir>/bundles` once it is large (`upload`), hashed and
//! size-checked while it arrives, then checked as a bundle; only a bundle
//! the control plane accepted is put. The data dir
//! syncs the file to disk and renames it to `<sha256>.tar.gz`; S3 streams it
//! from the file to `<prefix>/<sha256>.tar.gz`. Both skip a bundle that is
//! stored already, and puts of one sha256 run one at a time ([`Inflight`]):
//! a hundred concurrent deploys of one bundle write and sync it once, not a
//! hundred times over, while puts of different bundles do not wait for each
//! other. A bundle missing at fetch time is [`BundleStoreError::Missing`],
//! which the agent reports as its mission's failure.

mod s3;
#[cfg(test)]
mod tests;
mod upload;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncRead;

pub use s3::S3Location;
pub use upload::{Spool, Upload};

/// Where bundles are kept: the parsed `--bundle-store`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Location {
    /// `<data-dir>/bundles`.
    #[default]
    DataDir,
    S3(S3Location),
}

impl Location {
    /// Parses `--bundle-store`: `s3://BUCKET` or `s3://BUCKET/PREFIX`.
    pub fn parse(text: &str) -> Result<Location, String> {
        match text.strip_prefix("s3://") {
            Some(rest) => S3Location::parse(rest).map(Location::S3),
            None => Err(format!(
                "--bundle-store {text:?} is not s3://BUCKET[/PREFIX]: give an S3 bucket (and key prefix), or leave it unset to keep bundles in <data-dir>/bundles"
            )),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::DataDir => f.write_str("<data-dir>/bundles"),
            Location::S3(s3) => s3.fmt(f),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleStoreError {
    #[error(
        "bundle {sha256} is not in the bundle store {store}: deploy the service again to upload it (replicas sharing a database need one shared --bundle-store, s3://…)"
    )]
    Missing { sha256: String, store: String },
    #[error("{0}")]
    S3(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The bundle was written.
    New,
    /// A bundle with this sha256 was there already; nothing was written.
    AlreadyThere,
}

/// A stored bundle's bytes, read in the order they were uploaded.
pub type BundleReader = Pin<Box<dyn AsyncRead + Send>>;

pub struct BundleStore {
    /// Where uploads are received before they are put (and, for the data
    /// dir, where bundles stay).
    staging_dir: PathBuf,
    backend: Backend,
    inflight: Inflight,
}

enum Backend {
    DataDir,
    S3(s3::S3Bundles),
}

impl BundleStore {
    /// Opens `location`, with `bundles_dir` the data dir's `bundles/`. For S3
    /// the bucket must answer HeadBucket; `aws` replaces the standard AWS
    /// chain (env, profile, IMDS) when given.
    pub async fn open(
        location: &Location,
        bundles_dir: PathBuf,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Result<BundleStore, BundleStoreError> {
        let backend = match location {
            Location::DataDir => Backend::DataDir,
            Location::S3(s3) => Backend::S3(s3::S3Bundles::connect(s3, aws).await?),
        };
        Ok(BundleStore {
            staging_dir: bundles_dir,
            backend,
            inflight: Inflight::default(),
        })
    }

    /// The directory an upload is received into, as a temp file.
    pub fn staging_dir(&self) -> &Path {
        &self.staging_dir
    }

    /// Where bundles are kept, for messages.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::DataDir => self.staging_dir.display().to_string(),
            Backend::S3(s3) => s3.describe(),
        }
    }

    /// Stores the accepted `upload` as `sha256`, which must be its
    /// content's hash. A bundle already stored is found without waiting:
    /// it only ever appears whole (renamed into place, or an object S3 has
    /// finished). Concurrent puts of one new sha256 wait for each other;
    /// the first stores, the rest find it there.
    pub async fn put(&self, upload: Upload, sha256: &str) -> Result<Stored, BundleStoreError> {
        if self.exists(sha256).await? {
            return Ok(Stored::AlreadyThere);
        }
        let turn = self.inflight.turn(sha256);
        let _held = turn.lock().await;
        if self.exists(sha256).await? {
            return Ok(Stored::AlreadyThere);
        }
        match &self.backend {
            Backend::DataDir => {
                let path = self.data_dir_path(sha256);
                let staging = self.staging_dir.clone();
                // On disk before it has its name: a crash never leaves a
                // named bundle with missing bytes.
                let temp = tokio::task::spawn_blocking(move || {
                    let temp = upload.into_file(&staging)?;
                    temp.as_file().sync_all().map(|()| temp)
                })
                .await
                .map_err(io::Error::other)
                .and_then(|synced| synced)
                .map_err(|source| BundleStoreError::Io {
                    what: "write and sync the upload before storing it as",
                    path: path.clone(),
                    source,
                })?;
                temp.persist(&path).map_err(|err| BundleStoreError::Io {
                    what: "store the bundle as",
                    path,
                    source: err.error,
                })?;
                Ok(Stored::New)
            }
            // A temp file lives until the upload ends, then is removed.
            Backend::S3(s3) => s3.put(&upload, sha256).await,
        }
    }

    /// Whether a bundle with this sha256 is stored.
    pub async fn exists(&self, sha256: &str) -> Result<bool, BundleStoreError> {
        match &self.backend {
            // One `stat` of a path in the local data dir, on the caller's
            // task: microseconds, where the hand-off to the blocking pool
            // and back (`tokio::fs`) cost more than the call itself.
            Backend::DataDir => {
                let path = self.data_dir_path(sha256);
                std::fs::exists(&path).map_err(|source| BundleStoreError::Io {
                    what: "look for",
                    path,
                    source,
                })
            }
            Backend::S3(s3) => s3.exists(sha256).await,
        }
    }

    /// The bundle's bytes, streamed (never read whole into memory).
    pub async fn open_bundle(&self, sha256: &str) -> Result<BundleReader, BundleStoreError> {
        match &self.backend {
            Backend::DataDir => {
                let path = self.data_dir_path(sha256);
                match tokio::fs::File::open(&path).await {
                    Ok(file) => Ok(Box::pin(file)),
                    Err(err) if err.kind() == io::ErrorKind::NotFound => {
                        Err(BundleStoreError::Missing {
                            sha256: sha256.to_owned(),
                            store: self.describe(),
                        })
                    }
                    Err(source) => Err(BundleStoreError::Io {
                        what: "open",
                        path,
                        source,
                    }),
                }
            }
            Backend::S3(s3) => s3.open(sha256).await,
        }
    }

    fn data_dir_path(&self, sha256: &str) -> PathBuf {
        self.staging_dir.join(file_name(sha256))
    }
}

/// One lock per sha256 being put, so concurrent puts of one bundle take
/// turns while puts of different bundles run side by side. An entry lives
/// while someone holds or waits for its lock.
#[derive(Default)]
struct Inflight(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Inflight {
    fn turn(&self, sha256: &str) -> Turn<'_> {
        let mut map = self.0.lock().expect("inflight map poisoned");
        let lock = map.entry(sha256.to_owned()).or_default().clone();
        Turn {
            inflight: self,
            sha256: sha256.to_owned(),
            lock,
        }
    }
}

/// A place in the queue of puts of one sha256; forgets the entry when the
/// last one leaves.
struct Turn<'a> {
    inflight: &'a Inflight,
    sha256: String,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Turn<'_> {
    async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut map = self.inflight.0.lock().expect("inflight map poisoned");
        // The map's own reference plus ours: nobody else waits.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.sha256);
        }
    }
}

/// A bundle's file (data dir) or object (S3, after the prefix) name.
fn file_name(sha256: &str) -> String {
    format!("{sha256}.tar.gz")
}

/// AWS settings pointing at moto's S3 at `endpoint`, read from nothing in
/// the environment (a developer's AWS variables cannot leak in).
#[cfg(test)]
pub(crate) fn moto_aws(endpoint: &str) -> aws_config::SdkConfig {
    use super::test_moto_s3::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "moto",
        )))
        .http_client(s3::https())
        .build()
}
