//! How large a bundle this agent takes for a mission: the control plane's
//! limit (its `--max-bundle-bytes`, sent with the mission), capped by the
//! agent's own ceiling (`launch-agent run --max-bundle-bytes`), so raising
//! the server's flag is enough unless the host says otherwise.

use launch_core::bundle::Limits;

use crate::config::Config;
use crate::journal::Record;

/// The limits for `record`: `base` with the compressed size the mission allows.
pub fn for_mission(base: &Limits, config: &Config, record: &Record) -> Limits {
    let allowed = match record.max_bundle_bytes {
        0 => base.max_compressed_bytes,
        sent => sent,
    };
    Limits::for_max_bundle_bytes(allowed.min(config.max_bundle_bytes)).max_entries_of(base)
}

/// The refusal of a bundle over the limit, naming the flag that raises it.
pub fn too_large(size: u64, limits: &Limits, config: &Config) -> String {
    let flag = if limits.max_compressed_bytes == config.max_bundle_bytes {
        "the agent's --max-bundle-bytes (LAUNCH_AGENT_MAX_BUNDLE_BYTES)"
    } else {
        "`launch server --max-bundle-bytes`"
    };
    format!(
        "bundle is {size} bytes, over this host's limit of {} bytes: make it smaller (.launchignore) or raise {flag}",
        limits.max_compressed_bytes
    )
}
