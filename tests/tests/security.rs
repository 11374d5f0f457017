//! Security checks of the control plane, each against the real binaries:
//! TLS between agents or the CLI and the control plane (certificates made
//! here with rcgen: a test CA, a server certificate for `localhost` and
//! 127.0.0.1, and a second CA that must not be trusted), a bearer token on
//! every RPC, `launch server rotate-key` on a real data dir, and a secret
//! value that must appear in no output of any process, even on failures and
//! at debug log level (with servers and agents started here, `OwnServer`).
//! `RELIABILITY.md` lists each scenario with its test.
//!
//! # Layout
//! - this file: `OwnServer`, the agents it starts, and `find_env`.
//! - `tls`: the right CA, a wrong CA or none, plain HTTP and TLS crossed.
//! - `tokens`: a missing or wrong token refused on every RPC.
//! - `data_dir`: `rotate-key`, and a second server on one data dir.
//! - `leaks`: a secret value in no output, at info and at debug level.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use launch_e2e::process::Process;
use launch_e2e::server::SCRUBBED_ENV;
use launch_e2e::{CliOutput, binaries, cli};
use tempfile::TempDir;

use crate::certs::Certs;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A `launch server` this module starts itself, in its own data dir: with
/// `--tls-cert --tls-key`, or plain at another log level than the harness's.
struct OwnServer {
    process: Process,
    addr: SocketAddr,
    admin_token: String,
    tls: bool,
    _temp: TempDir,
}

impl OwnServer {
    /// With TLS, logging at `info`.
    fn start(certs: &Certs) -> OwnServer {
        OwnServer::spawn(Some(certs), "info")
    }

    fn spawn(certs: Option<&Certs>, rust_log: &str) -> OwnServer {
        let temp = tempfile::Builder::new()
            .prefix("launch-e2e-tls-server-")
            .tempdir()
            .unwrap();
        let data_dir = temp.path().join("data");
        let mut command = Command::new(binaries::launch());
        for var in SCRUBBED_ENV {
            command.env_remove(var);
        }
        command
            .env("RUST_LOG", rust_log)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir);
        if let Some(certs) = certs {
            command
                .arg("--tls-cert")
                .arg(certs.path("server.pem"))
                .arg("--tls-key")
                .arg(certs.path("server.key"));
        }
        let process = Process::spawn("own server", command);
        let prefix = if certs.is_some() {
            "launch server listening on https://"
        } else {
            "launch server listening on http://"
        };
        let line = process
            .stdout
            .wait_for(START_TIMEOUT, |l| l.starts_with(prefix))
            .unwrap_or_else(|e| {
                panic!(
                    "the server did not start: {e}\nstderr:\n{}",
                    process.stderr.text()
                )
            });
        let addr = line[prefix.len()..].trim().parse().unwrap();
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        OwnServer {
            process,
            addr,
            admin_token,
            tls: certs.is_some(),
            _temp: temp,
        }
    }

    /// With TLS by host name, so the certificate's name is what is checked.
    fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// `launch <args>` against `addr` with the admin token and `ca_cert`.
    fn cli(&self, addr: &str, ca_cert: Option<&Path>, args: &[&str]) -> CliOutput {
        cli::finish(args, self.command(addr, ca_cert, args), None)
    }

    fn command(&self, addr: &str, ca_cert: Option<&Path>, args: &[&str]) -> Command {
        let mut command = Command::new(binaries::launch());
        for var in SCRUBBED_ENV {
            command.env_remove(var);
        }
        command
            .env_remove("LAUNCH_CA_CERT")
            .env("LAUNCH_ADDR", addr)
            .env("LAUNCH_TOKEN", &self.admin_token)
            .args(args);
        if let Some(ca) = ca_cert {
            command.env("LAUNCH_CA_CERT", ca);
        }
        command
    }
}

/// A `launch-agent run` against `control_url`, trusting `ca_cert`.
fn spawn_agent(
    service: &str,
    control_url: &str,
    ca_cert: Option<&Path>,
    join_token: &str,
    data_dir: &Path,
) -> Process {
    spawn_agent_logging(service, control_url, ca_cert, join_token, data_dir, "info")
}

fn spawn_agent_logging(
    service: &str,
    control_url: &str,
    ca_cert: Option<&Path>,
    join_token: &str,
    data_dir: &Path,
    log_level: &str,
) -> Process {
    let mut command = Command::new(binaries::launch_agent());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .env_remove("LAUNCH_AGENT_CA_CERT")
        .env("LAUNCH_LOG", log_level)
        .args([
            "run",
            "--ingress",
            "off",
            "--control-url",
            control_url,
            "--join-token",
            join_token,
        ])
        .arg("--labels")
        .arg(format!("service-name={service},environment=prod"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--advertise-host", "127.0.0.1"]);
    if let Some(ca) = ca_cert {
        command.arg("--ca-cert").arg(ca);
    }
    Process::spawn("own agent", command)
}

/// The first `.env` under `dir`.
fn find_env(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if entry.file_name() == ".env" {
            return Some(path);
        }
        if entry.file_type().ok()?.is_dir()
            && let Some(found) = find_env(&path)
        {
            return Some(found);
        }
    }
    None
}

mod data_dir;
mod leaks;
mod tls;
mod tokens;
