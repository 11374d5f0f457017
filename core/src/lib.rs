//! Pure logic that more than one Launch process needs and that must never
//! differ between them: what a valid service name is, how labels are spelled,
//! what a bundle may contain and how it is unpacked, how secrets are redacted
//! from log lines, and what `launch.toml` means. No I/O beyond the files a
//! bundle function is handed, no async, no network.
//!
//! # Layout
//! - [`names`]: service and environment names (DNS labels).
//! - [`labels`]: the `service-name=…,environment=…` label set of an agent.
//! - [`bundle`]: packing a service directory into a tar.gz and unpacking it safely.
//! - [`redact`]: replacing secret values in text with `[REDACTED]`.
//! - [`service_config`]: the typed `launch.toml`.

pub mod bundle;
pub mod labels;
pub mod names;
pub mod redact;
pub mod service_config;

mod error;

pub use error::Error;
