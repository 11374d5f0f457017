//! Running the `launch` CLI against a [`Server`]: `LAUNCH_ADDR` and
//! `LAUNCH_TOKEN` point it at the server with the admin token, output is
//! captured, and every run has a deadline so a hung command fails the test
//! instead of hanging it.

use std::fmt;
use std::process::Command;
use std::time::Duration;

use crate::binaries;
use crate::process::Process;
use crate::server::{SCRUBBED_ENV, Server};

/// The longest any single CLI command may run (a `deploy --wait` builds an image).
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// What a finished `launch` command printed and how it exited.
pub struct CliOutput {
    pub args: Vec<String>,
    /// `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{self}");
        self
    }

    /// Panics unless the command exited 0.
    pub fn success(&self) -> &Self {
        self.expect_code(0)
    }

    /// Stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e})\n{self}"))
    }

    /// Stdout parsed as one JSON value per non-empty line.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("line {l:?} is not JSON ({e})\n{self}"))
            })
            .collect()
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ launch {}", self.args.join(" "))?;
        writeln!(f, "exit code: {:?}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

impl fmt::Debug for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A `launch` command aimed at `server` (address and admin token in the env).
pub fn command(server: &Server, args: &[&str]) -> Command {
    let mut command = Command::new(binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .env("LAUNCH_ADDR", server.url())
        .env("LAUNCH_TOKEN", &server.admin_token)
        .env("NO_COLOR", "1")
        .args(args);
    command
}

/// Runs `launch <args>` to completion.
pub fn run(server: &Server, args: &[&str]) -> CliOutput {
    finish(args, command(server, args), None)
}

/// Runs `launch <args>` with `stdin` as its standard input.
pub fn run_with_stdin(server: &Server, args: &[&str], stdin: &str) -> CliOutput {
    finish(args, command(server, args), Some(stdin.as_bytes().to_vec()))
}

/// Runs an arbitrary prepared `launch` command to completion.
pub fn finish(args: &[&str], command: Command, stdin: Option<Vec<u8>>) -> CliOutput {
    let mut process = Process::spawn_with_stdin(&format!("launch {}", args[0]), command, stdin);
    let status = process
        .wait_exit(TIMEOUT)
        .unwrap_or_else(|e| panic!("`launch {}` did not finish: {e}", args.join(" ")));
    CliOutput {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code(),
        stdout: process.stdout.text(),
        stderr: process.stderr.text(),
    }
}

/// Starts a long-running `launch <args>` (e.g. `logs -f`); killed on drop.
pub fn spawn(server: &Server, args: &[&str]) -> Process {
    Process::spawn(&format!("launch {}", args.join(" ")), command(server, args))
}

/// `launch releases S --env E --output json`: the releases, newest first.
pub fn releases(server: &Server, service: &str, environment: &str) -> Vec<serde_json::Value> {
    let out = server.cli(&[
        "releases",
        service,
        "--env",
        environment,
        "--output",
        "json",
    ]);
    out.success();
    list(&out.json(), "releases")
        .unwrap_or_else(|| panic!("`launch releases --output json` is not an array\n{out}"))
}

/// `launch agents --output json`: every agent.
pub fn agents(server: &Server) -> Vec<serde_json::Value> {
    let out = server.cli(&["agents", "--output", "json"]);
    out.success();
    list(&out.json(), "agents")
        .unwrap_or_else(|| panic!("`launch agents --output json` is not an array\n{out}"))
}

/// `launch logs S --env E --output json` (stored lines, no follow).
pub fn log_lines(server: &Server, service: &str, environment: &str) -> Vec<serde_json::Value> {
    let out = server.cli(&["logs", service, "--env", environment, "--output", "json"]);
    out.success();
    out.json_lines()
}

/// A JSON array, or the array under `key` of a JSON object.
pub fn list(value: &serde_json::Value, key: &str) -> Option<Vec<serde_json::Value>> {
    match value {
        serde_json::Value::Array(items) => Some(items.clone()),
        serde_json::Value::Object(map) => map.get(key).and_then(|v| v.as_array()).cloned(),
        _ => None,
    }
}

/// The string field `key` of a JSON object ("" if absent).
pub fn field<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    value.get(key).and_then(|v| v.as_str()).unwrap_or_default()
}

/// The first mission id (`m-…`) and release id (`r-…`) mentioned in `text`.
pub fn ids(text: &str) -> (Option<String>, Option<String>) {
    let find = |prefix: &str| {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .find(|word| word.len() == prefix.len() + 26 && word.starts_with(prefix))
            .map(str::to_owned)
    };
    (find("m-"), find("r-"))
}
