//! The control plane process (`launch server`). Placeholder until the server lands.

use std::process::ExitCode;

/// Flags of `launch server`.
#[derive(Debug, clap::Args)]
pub struct ServerFlags {}

pub async fn main(_flags: ServerFlags) -> ExitCode {
    ExitCode::FAILURE
}
