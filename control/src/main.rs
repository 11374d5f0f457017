//! The `launch` binary: `launch server` runs the control plane, every other
//! subcommand is a CLI client of it. This file only parses arguments and starts
//! the runtime; the work is in `server` and `cli`, which map outcomes to exit codes.

use std::process::ExitCode;

use launch_control::cli::{self, Command};
use launch_control::server;

fn main() -> ExitCode {
    let args = cli::parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(cli::exit::FAILED);
        }
    };
    runtime.block_on(async move {
        match args.command {
            Command::Server(flags) => server::main(flags).await,
            command => cli::main(args.global, command).await,
        }
    })
}
