//! Pure logic that more than one Launch process needs and that must never
//! differ between them: what a valid service name is, how labels are spelled,
//! what a bundle may contain and how it is unpacked, how secrets are redacted
//! from log lines, what `launch.toml` means, and how a private file is
//! written. No async, no network; the only I/O is the files a bundle or
//! private-file function is handed.
//!
//! # Layout
//! - [`bootstrap`]: the script (and `#cloud-config`) that turns a new host into an agent.
//! - [`names`]: service and environment names (DNS labels).
//! - [`private_file`]: atomic 0600 writes and 0700 directories.
//! - [`labels`]: the `service-name=…,environment=…` label set of an agent.
//! - [`bundle`]: packing a service directory into a tar.gz and unpacking it safely.
//! - [`redact`]: replacing secret values in text with `[REDACTED]`.
//! - [`service_config`]: the typed `launch.toml`.
//! - [`compose`]: the compose file as one typed model, interpolated and checked.
//! - [`policy`]: what a deploy may ask of its host, and the allowances an admin grants.
//! - [`repo`]: GitHub repository names (`owner/name`) recorded on releases.
//! - [`tags`]: service tags (`key=value`) and the filters that select services by them.

pub mod bootstrap;
pub mod bundle;
pub mod compose;
pub mod labels;
pub mod names;
pub mod policy;
pub mod private_file;
pub mod redact;
pub mod repo;
pub mod service_config;
pub mod tags;

mod error;

pub use error::Error;
