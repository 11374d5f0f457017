//! Running `docker compose` (the v2 plugin when `docker compose version`
//! works, else the standalone v1 `docker-compose`) and plain `docker`
//! commands. Every child gets its own process group, a timeout and the
//! mission's cancellation, which kill the whole group; its output is streamed
//! line by line into the mission's log. Arguments are passed as a vector,
//! never through a shell, and secrets never appear in them (they are in `.env`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use launch_proto::LogStream;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::uplink::Sink;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `docker compose` (v2 plugin).
    Plugin,
    /// `docker-compose` (v1).
    Standalone,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "docker compose is not installed: install the compose plugin (apt-get install docker-compose-plugin) or docker-compose"
    )]
    Missing,
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` timed out after {seconds}s and was killed")]
    Timeout { command: String, seconds: u64 },
    #[error("`{command}` was cancelled")]
    Cancelled { command: String },
    #[error("`{command}` failed ({status}){tail}")]
    Failed {
        command: String,
        status: String,
        tail: String,
    },
}

/// The host's compose as the control plane's check reads it
/// (`launch_core::compose::features::HostCompose`): "docker compose 2.24.0",
/// "docker-compose 1.29.2", or empty when neither answers within 10 s.
pub async fn describe_host() -> String {
    let version = |program: &'static str, args: &'static [&'static str]| async move {
        let output = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(10), output)
            .await
            .ok()?
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let (a, b, c) = launch_core::compose::features::parse_version(&text)
            .filter(|_| output.status.success())?;
        Some(format!("{a}.{b}.{c}"))
    };
    if let Some(v) = version("docker", &["compose", "version", "--short"]).await {
        format!("docker compose {v}")
    } else if let Some(v) = version("docker-compose", &["version", "--short"]).await {
        format!("docker-compose {v}")
    } else {
        String::new()
    }
}

#[derive(Clone, Debug)]
pub struct Compose {
    pub flavor: Flavor,
    pub timeout: Duration,
}

impl Compose {
    /// Finds a working compose: the plugin first, then v1.
    pub async fn detect(timeout: Duration) -> Result<Compose, Error> {
        let works = |program: &'static str, args: &'static [&'static str]| async move {
            Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .is_ok_and(|s| s.success())
        };
        if works("docker", &["compose", "version"]).await {
            Ok(Compose {
                flavor: Flavor::Plugin,
                timeout,
            })
        } else if works("docker-compose", &["version"]).await {
            Ok(Compose {
                flavor: Flavor::Standalone,
                timeout,
            })
        } else {
            Err(Error::Missing)
        }
    }

    /// `docker compose -f FILE -p PROJECT ARGS…` run in `dir`.
    pub fn command(&self, dir: &Path, file: &str, project: &str, args: &[&str]) -> Command {
        let mut command = match self.flavor {
            Flavor::Plugin => {
                let mut command = Command::new("docker");
                command.arg("compose");
                command
            }
            Flavor::Standalone => Command::new("docker-compose"),
        };
        command
            .current_dir(dir)
            .args(["--ansi", "never"])
            .arg("-f")
            .arg(file)
            .arg("-p")
            .arg(project)
            .args(args)
            .env("COMPOSE_PROGRESS", "plain")
            // docker-compose v1 is Python: unbuffered, or `logs -f` arrives in 8 KiB bursts.
            .env("PYTHONUNBUFFERED", "1");
        command
    }

    /// Runs a compose command, streaming its output into `sink`.
    pub async fn run(
        &self,
        dir: &Path,
        file: &str,
        project: &str,
        args: &[&str],
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        let shown = format!("{} {}", self.program(), args.join(" "));
        sink.say(&format!("$ {shown}"));
        run_streamed(
            self.command(dir, file, project, args),
            &shown,
            sink,
            "compose",
            self.timeout,
            cancel,
        )
        .await
    }

    fn program(&self) -> &'static str {
        match self.flavor {
            Flavor::Plugin => "docker compose",
            Flavor::Standalone => "docker-compose",
        }
    }
}

/// Runs `command` in its own process group, streaming stdout and stderr into
/// `sink` as `source`; kills the group on timeout or cancellation.
pub async fn run_streamed(
    mut command: Command,
    shown: &str,
    sink: &Sink,
    source: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        program: shown
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
        source,
    })?;
    let pid = child.id();
    let tail = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
    let stdout = child.stdout.take().map(|out| {
        pipe(
            out,
            sink.clone(),
            source.to_owned(),
            LogStream::Stdout,
            tail.clone(),
        )
    });
    let stderr = child.stderr.take().map(|err| {
        pipe(
            err,
            sink.clone(),
            source.to_owned(),
            LogStream::Stderr,
            tail.clone(),
        )
    });
    let outcome = tokio::select! {
        status = child.wait() => Ok(status),
        _ = tokio::time::sleep(timeout) => Err(Error::Timeout { command: shown.to_owned(), seconds: timeout.as_secs() }),
        _ = cancel.cancelled() => Err(Error::Cancelled { command: shown.to_owned() }),
    };
    if outcome.is_err() {
        kill_group(pid);
        let _ = child.wait().await;
    }
    for task in [stdout, stderr].into_iter().flatten() {
        let _ = task.await;
    }
    let status = outcome?.map_err(|source| Error::Spawn {
        program: shown.to_owned(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let lines: Vec<String> = tail.lock().expect("tail lock").iter().cloned().collect();
    let tail = if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines.join(" | "))
    };
    Err(Error::Failed {
        command: shown.to_owned(),
        status: status.to_string(),
        tail,
    })
}

/// Runs a short `docker …` query and returns its stdout (not logged).
pub async fn docker_output(args: &[&str], timeout: Duration) -> Result<String, Error> {
    let shown = format!("docker {}", args.join(" "));
    let mut command = Command::new("docker");
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(timeout, command.output())
        .await
        .map_err(|_| Error::Timeout {
            command: shown.clone(),
            seconds: timeout.as_secs(),
        })?
        .map_err(|source| Error::Spawn {
            program: "docker".to_owned(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Failed {
            command: shown,
            status: output.status.to_string(),
            tail: format!(": {}", String::from_utf8_lossy(&output.stderr).trim()),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn pipe(
    reader: impl AsyncRead + Unpin + Send + 'static,
    sink: Sink,
    source: String,
    stream: LogStream,
    tail: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            sink.line(stream, &source, &line);
            let mut tail = tail.lock().expect("tail lock");
            // Only redacted text is kept for error messages.
            tail.push_back(sink.redactor().redact(&line).into_owned());
            if tail.len() > 5 {
                tail.pop_front();
            }
        }
    })
}

fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        // SAFETY: kill(2) with a negative pid signals our child's own process group.
        unsafe {
            libc::kill(-(pid as i32), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use launch_core::redact::Redactor;

    use super::*;
    use crate::uplink::Uplink;

    fn sink() -> (Uplink, Sink) {
        let uplink = Uplink::new(1000);
        let sink = uplink.sink("m-1", Arc::new(Redactor::new(["hunter2"])));
        (uplink, sink)
    }

    fn texts(uplink: &Uplink) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(launch_proto::agent_message::Msg::Logs(batch)) = uplink.next_message() {
            out.extend(batch.lines.into_iter().map(|l| l.text));
        }
        out
    }

    #[tokio::test]
    async fn output_is_streamed_redacted_and_failures_carry_the_tail() {
        let (uplink, sink) = sink();
        let mut command = Command::new("sh");
        command.args(["-c", "echo out hunter2; echo err >&2; exit 3"]);
        let err = run_streamed(
            command,
            "sh",
            &sink,
            "test",
            Duration::from_secs(10),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        let lines = texts(&uplink);
        assert!(lines.contains(&"out [REDACTED]".to_owned()), "{lines:?}");
        assert!(lines.contains(&"err".to_owned()), "{lines:?}");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let (_uplink, sink) = sink();
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let script = format!("(sleep 1; touch {}) & sleep 30", marker.display());
        let mut command = Command::new("sh");
        command.args(["-c", &script]);
        let err = run_streamed(
            command,
            "sh",
            &sink,
            "test",
            Duration::from_millis(300),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        // The grandchild would touch the marker after 1 s had the group survived.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            !marker.exists(),
            "a child of the timed-out command kept running"
        );
    }
}
