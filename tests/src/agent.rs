//! A `launch-agent` under test: registered with a join token made by `launch
//! token create`, its own temp data dir, `--advertise-host 127.0.0.1`, its
//! stderr (tracing logs) captured so tests can check what it logged. It can
//! be killed with SIGKILL and restarted with the same data dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::binaries;
use crate::process::Process;
use crate::server::{SCRUBBED_ENV, Server};

/// How long an agent may take from start to "connected".
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the agent prints on stdout once registered and connected.
pub const CONNECTED_PREFIX: &str = "launch-agent connected as ";

pub struct Agent {
    pub process: Process,
    pub service: String,
    pub environment: String,
    pub join_token: String,
    pub control_url: String,
    /// Set once the agent printed its connected line.
    pub agent_id: Option<String>,
    data_dir: PathBuf,
    /// Extra environment, kept for restarts.
    env: Vec<(String, String)>,
    /// The executable (the build's `launch-agent` unless a test gave a copy).
    binary: PathBuf,
    _temp: TempDir,
}

impl Agent {
    /// Creates a join token for `service`/`environment`, starts an agent with
    /// it and waits until it is connected.
    pub fn start(server: &Server, service: &str, environment: &str) -> Agent {
        let join_token = create_join_token(server, service, environment);
        let mut agent = Agent::spawn(server, service, environment, &join_token);
        agent.wait_connected();
        agent
    }

    /// Starts an agent with `join_token` without waiting for it to connect.
    pub fn spawn(server: &Server, service: &str, environment: &str, join_token: &str) -> Agent {
        Agent::spawn_with_env(server, service, environment, join_token, &[])
    }

    /// Like [`Agent::spawn`], connecting through `control_url` (e.g. a proxy
    /// in front of the server) instead of the server's own address.
    pub fn spawn_through(
        control_url: &str,
        service: &str,
        environment: &str,
        join_token: &str,
    ) -> Agent {
        let temp = tempfile::Builder::new()
            .prefix("launch-e2e-agent-")
            .tempdir()
            .expect("create a temp dir");
        let data_dir = temp.path().join("agent");
        let binary = binaries::launch_agent();
        let process = spawn_process(
            &binary,
            control_url,
            service,
            environment,
            join_token,
            &data_dir,
            &[],
        );
        Agent {
            process,
            service: service.to_owned(),
            environment: environment.to_owned(),
            join_token: join_token.to_owned(),
            control_url: control_url.to_owned(),
            agent_id: None,
            data_dir,
            env: Vec::new(),
            binary,
            _temp: temp,
        }
    }

    /// Like [`Agent::spawn`], with extra environment variables for the agent
    /// (e.g. a `DOCKER_HOST` that goes nowhere, or a `PATH` without compose).
    pub fn spawn_with_env(
        server: &Server,
        service: &str,
        environment: &str,
        join_token: &str,
        env: &[(&str, &str)],
    ) -> Agent {
        Agent::spawn_binary(
            &binaries::launch_agent(),
            server,
            service,
            environment,
            join_token,
            env,
        )
    }

    /// Like [`Agent::spawn_with_env`], running `binary` (e.g. a copy the
    /// agent may replace when it upgrades itself).
    pub fn spawn_binary(
        binary: &Path,
        server: &Server,
        service: &str,
        environment: &str,
        join_token: &str,
        env: &[(&str, &str)],
    ) -> Agent {
        let temp = tempfile::Builder::new()
            .prefix("launch-e2e-agent-")
            .tempdir()
            .expect("create a temp dir");
        let data_dir = temp.path().join("agent");
        let control_url = server.url();
        let process = spawn_process(
            binary,
            &control_url,
            service,
            environment,
            join_token,
            &data_dir,
            env,
        );
        Agent {
            process,
            service: service.to_owned(),
            environment: environment.to_owned(),
            join_token: join_token.to_owned(),
            control_url,
            agent_id: None,
            data_dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            binary: binary.to_owned(),
            _temp: temp,
        }
    }

    /// Waits for the "connected as" line of the current process; returns the agent id.
    pub fn wait_connected(&mut self) -> String {
        let line = self
            .process
            .stdout
            .wait_for(CONNECT_TIMEOUT, |l| l.starts_with(CONNECTED_PREFIX))
            .unwrap_or_else(|e| {
                panic!(
                    "launch-agent for {}/{} did not connect: {e}\nstderr:\n{}",
                    self.service,
                    self.environment,
                    self.process.stderr.text()
                )
            });
        let id = line[CONNECTED_PREFIX.len()..].trim().to_owned();
        self.agent_id = Some(id.clone());
        id
    }

    /// kill -9.
    pub fn kill_hard(&mut self) {
        self.process.kill_hard();
    }

    /// Starts the agent again with the same flags and data dir (as systemd
    /// would) and waits until it is connected; returns the agent id.
    pub fn restart(&mut self) -> String {
        self.respawn();
        self.wait_connected()
    }

    /// kill -9 and start again with the same flags, env and data dir,
    /// without waiting for a connection (the control plane may be down).
    pub fn respawn(&mut self) {
        self.process.kill_hard();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.process = spawn_process(
            &self.binary,
            &self.control_url,
            &self.service,
            &self.environment,
            &self.join_token,
            &self.data_dir,
            &env,
        );
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The agent token the agent saved at registration (`<data-dir>/agent.token`).
    pub fn agent_token(&self) -> String {
        let path = self.data_dir.join("agent.token");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    /// Everything the current agent process logged to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr.text()
    }
}

/// `launch token create --service S --env E`: the join token alone on stdout.
pub fn create_join_token(server: &Server, service: &str, environment: &str) -> String {
    let out = server.cli(&[
        "token",
        "create",
        "--service",
        service,
        "--env",
        environment,
    ]);
    out.success();
    let token = out.stdout.trim().to_owned();
    assert!(
        token.starts_with("lt_join_") && !token.contains(char::is_whitespace),
        "`launch token create` must print the join token alone on stdout\n{out}"
    );
    token
}

fn spawn_process(
    binary: &Path,
    control_url: &str,
    service: &str,
    environment: &str,
    join_token: &str,
    data_dir: &Path,
    env: &[(&str, &str)],
) -> Process {
    let mut command = Command::new(binary);
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    // The front door binds 80/443 by default; tests that want it pass
    // LAUNCH_AGENT_INGRESS=on with free ports.
    command.env("LAUNCH_AGENT_INGRESS", "off");
    command.envs(env.iter().copied());
    command
        .env("RUST_LOG", "info")
        .arg("run")
        .arg("--control-url")
        .arg(control_url)
        .arg("--join-token")
        .arg(join_token)
        .arg("--labels")
        .arg(format!("service-name={service},environment={environment}"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--advertise-host")
        .arg("127.0.0.1");
    Process::spawn(&format!("agent {service}"), command)
}
