//! Finds the binaries under test: `$LAUNCH_BIN_DIR` if set, else the
//! workspace's `target/debug` (`scripts/test` runs `cargo build --bins` first,
//! because `cargo nextest` builds test targets but not other crates' binaries).

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// The directory holding `launch` and `launch-agent`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAUNCH_BIN_DIR") {
        // Relative paths are relative to the workspace (cargo runs tests in the crate dir).
        return workspace_root().join(dir);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("debug");
    }
    workspace_root().join("target").join("debug")
}

/// The path of a built binary; panics with the command that builds it.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} does not exist: build it with `cargo build --bins` (or set LAUNCH_BIN_DIR)",
        path.display()
    );
    path
}

/// `target/debug/launch`.
pub fn launch() -> PathBuf {
    binary("launch")
}

/// `target/debug/launch-agent`.
pub fn launch_agent() -> PathBuf {
    binary("launch-agent")
}
