//! The `launch` CLI. Placeholder until the CLI lands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const UNREACHABLE: u8 = 3;
}

#[derive(Debug, Parser)]
#[command(name = "launch", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Args)]
pub struct Global {}

#[derive(Debug, Subcommand)]
pub enum Command {
    Server(crate::server::ServerFlags),
}

pub async fn main(_global: Global, _command: Command) -> ExitCode {
    ExitCode::from(exit::USAGE)
}
