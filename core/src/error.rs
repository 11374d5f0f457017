//! The one error type of this crate. Every message says what was wrong and what
//! to do about it, because these errors reach users unchanged.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: String,
    },

    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag { tag: String, reason: String },

    #[error("invalid labels {value:?}: {reason}")]
    InvalidLabels { value: String, reason: String },

    #[error("bundle rejected: {0}")]
    UnsafeBundle(String),

    #[error(
        "bundle is larger than the limit of {limit} bytes: leave large assets out (.launchignore) or raise `launch server --max-bundle-bytes` (the unpacked limit is 4 times that, at least 1 GiB)"
    )]
    BundleTooLarge { limit: u64 },

    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("bundle is not a valid tar.gz archive: {0}")]
    Archive(#[source] std::io::Error),

    #[error("{file} cannot be deployed:\n  {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Compose {
        file: String,
        problems: Vec<crate::compose::Problem>,
    },

    #[error("invalid {}: {message}", path.display())]
    Config { path: PathBuf, message: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
