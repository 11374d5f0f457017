//! The Docker engine a `target = "docker"` host runs on, driven through the
//! `docker` CLI (what an operator would type, and no engine-API client to
//! keep in step with the engine's versions). `docker { host }` in the
//! provider block, else `DOCKER_HOST`, else the CLI's default (the local
//! socket). Each call has a timeout and is killed with the provider; the
//! first use checks the engine answers, so a missing engine is said once,
//! with what to fix. Scripts go to containers on stdin, never in argv.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::time::Instant;

/// How long one short CLI call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of a failed bootstrap's output an error carries.
const OUTPUT_TAIL: usize = 30;

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error(
        "the docker CLI is not installed or not on PATH ({0}): install Docker (the CLI is enough when docker {{ host }} points at a remote engine)"
    )]
    NoCli(String),
    #[error(
        "cannot reach the Docker engine at {host} ({detail}): start Docker, or point docker {{ host }} in provider \"launch\" (or DOCKER_HOST) at a running engine, e.g. \"unix:///var/run/docker.sock\""
    )]
    Unreachable { host: String, detail: String },
    #[error("`docker {command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("`docker {command}` did not finish within {secs}s")]
    Timeout { command: String, secs: u64 },
    #[error("Docker answered `docker {command}` with something unexpected ({detail})")]
    Decode { command: String, detail: String },
}

/// Where the engine is: `None` leaves it to `DOCKER_HOST` and the CLI.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub host: Option<String>,
}

impl Settings {
    /// How errors name the engine.
    pub fn shown(&self) -> String {
        self.host
            .clone()
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "the local socket (unix:///var/run/docker.sock)".to_owned())
    }
}

/// Whether `host` is an address the docker CLI accepts.
pub fn valid_host(host: &str) -> bool {
    ["unix://", "tcp://", "ssh://", "npipe://"]
        .iter()
        .any(|scheme| host.starts_with(scheme) && host.len() > scheme.len())
}

pub struct Docker {
    settings: Settings,
}

/// What a finished CLI call printed.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Docker {
    /// A client whose engine answered `docker version`.
    pub async fn connect(settings: &Settings) -> Result<Docker, DockerError> {
        let docker = Docker {
            settings: settings.clone(),
        };
        let out = docker
            .call(&["version", "--format", "{{.Server.Version}}"], None)
            .await?;
        if !out.ok || out.stdout.trim().is_empty() {
            return Err(DockerError::Unreachable {
                host: settings.shown(),
                detail: last_line(&out.stderr),
            });
        }
        tracing::debug!(engine = %out.stdout.trim(), "Docker engine answered");
        Ok(docker)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker");
        if let Some(host) = &self.settings.host {
            command.args(["-H", host]);
        }
        command
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn call(&self, args: &[&str], stdin: Option<&str>) -> Result<Output, DockerError> {
        self.call_within(args, stdin, CALL_TIMEOUT).await
    }

    async fn call_within(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        limit: Duration,
    ) -> Result<Output, DockerError> {
        let shown = args.first().copied().unwrap_or_default().to_owned();
        let mut command = self.command(args);
        command.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command
            .spawn()
            .map_err(|e| DockerError::NoCli(e.to_string()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let text = text.to_owned();
            // The pipe closes when the task ends, which ends the script.
            let _ = pipe.write_all(text.as_bytes()).await;
            let _ = pipe.shutdown().await;
        }
        let waited = tokio::time::timeout(limit, child.wait_with_output()).await;
        let out = match waited {
            Ok(out) => out.map_err(|e| DockerError::NoCli(e.to_string()))?,
            Err(_) => {
                return Err(DockerError::Timeout {
                    command: shown,
                    secs: limit.as_secs(),
                });
            }
        };
        Ok(Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// A call that must succeed; its stdout.
    async fn checked(&self, args: &[&str]) -> Result<String, DockerError> {
        let out = self.call(args, None).await?;
        if !out.ok {
            return Err(DockerError::Command {
                command: args.iter().take(2).copied().collect::<Vec<_>>().join(" "),
                detail: last_line(&out.stderr),
            });
        }
        Ok(out.stdout)
    }

    /// `docker inspect` of a container, `None` when there is none.
    pub async fn inspect(&self, container: &str) -> Result<Option<Json>, DockerError> {
        let out = self
            .call(
                &["container", "inspect", "--format", "{{json .}}", container],
                None,
            )
            .await?;
        if !out.ok {
            if out.stderr.contains("No such container") || out.stderr.contains("No such object") {
                return Ok(None);
            }
            return Err(DockerError::Command {
                command: "container inspect".into(),
                detail: last_line(&out.stderr),
            });
        }
        serde_json::from_str(out.stdout.trim())
            .map(Some)
            .map_err(|e| DockerError::Decode {
                command: "container inspect".into(),
                detail: e.to_string(),
            })
    }

    /// `docker run -d ARGS…`: the new container's ID.
    pub async fn run(&self, args: &[String]) -> Result<String, DockerError> {
        let mut all = vec!["run", "-d"];
        all.extend(args.iter().map(String::as_str));
        Ok(self.checked(&all).await?.trim().to_owned())
    }

    /// `docker update` of CPU and memory limits, live.
    pub async fn set_limits(
        &self,
        container: &str,
        cpus: i64,
        memory_mib: i64,
    ) -> Result<(), DockerError> {
        let memory = format!("{memory_mib}m");
        let cpus = cpus.to_string();
        self.checked(&[
            "update",
            "--cpus",
            &cpus,
            "--memory",
            &memory,
            "--memory-swap",
            &memory,
            container,
        ])
        .await
        .map(drop)
    }

    /// `docker rm -f`; a container already gone is fine.
    pub async fn remove(&self, container: &str) -> Result<(), DockerError> {
        let out = self.call(&["rm", "-f", "-v", container], None).await?;
        if out.ok || out.stderr.contains("No such container") {
            return Ok(());
        }
        Err(DockerError::Command {
            command: "rm -f".into(),
            detail: last_line(&out.stderr),
        })
    }

    /// IDs of the containers carrying `label` (`key=value`), stopped ones too.
    pub async fn containers_labeled(&self, label: &str) -> Result<Vec<String>, DockerError> {
        let filter = format!("label={label}");
        let out = self
            .checked(&["ps", "-aq", "--no-trunc", "--filter", &filter])
            .await?;
        Ok(out.split_whitespace().map(str::to_owned).collect())
    }

    /// Removes the containers and networks of a compose project.
    pub async fn remove_project(&self, project: &str) -> Result<(), DockerError> {
        let label = format!("com.docker.compose.project={project}");
        for container in self.containers_labeled(&label).await? {
            self.remove(&container).await?;
        }
        let filter = format!("label={label}");
        let networks = self
            .checked(&["network", "ls", "-q", "--filter", &filter])
            .await?;
        for network in networks.split_whitespace() {
            self.checked(&["network", "rm", network]).await?;
        }
        Ok(())
    }

    /// Waits until systemd in the container has booted (running or
    /// degraded), then runs `script` as root with it on stdin. On failure
    /// the error carries the script's last lines of output.
    pub async fn bootstrap(
        &self,
        container: &str,
        script: &str,
        deadline: Instant,
    ) -> Result<(), DockerError> {
        let started = Instant::now();
        loop {
            let out = self
                .call(&["exec", container, "systemctl", "is-system-running"], None)
                .await?;
            let state = out.stdout.trim().to_owned();
            if matches!(state.as_str(), "running" | "degraded") {
                break;
            }
            if Instant::now() + Duration::from_secs(1) > deadline {
                return Err(DockerError::Command {
                    command: "exec systemctl".into(),
                    detail: format!(
                        "systemd in {container} had not booted after {}s (last state {state:?}, {}): the image must run systemd as PID 1",
                        started.elapsed().as_secs(),
                        last_line(&out.stderr)
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let out = self
            .call_within(
                &["exec", "-i", container, "sh", "-s"],
                Some(script),
                left.max(CALL_TIMEOUT),
            )
            .await?;
        if out.ok {
            return Ok(());
        }
        let text = format!("{}{}", out.stdout, out.stderr);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(OUTPUT_TAIL)..].join("\n");
        Err(DockerError::Command {
            command: "exec sh -s".into(),
            detail: format!("the bootstrap script failed; last lines of its output:\n{tail}"),
        })
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_addresses_need_a_scheme_the_cli_knows() {
        assert!(valid_host("unix:///var/run/docker.sock"));
        assert!(valid_host("tcp://10.0.0.5:2375"));
        assert!(valid_host("ssh://me@nas"));
        assert!(!valid_host("/var/run/docker.sock"));
        assert!(!valid_host("http://10.0.0.5:2375"));
        assert!(!valid_host("tcp://"));
    }
}
