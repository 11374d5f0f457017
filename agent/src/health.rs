//! The health gate between `compose up` and calling a release live. Every
//! container of the compose project must be running, those with a healthcheck
//! must report `healthy`, all of them must then stay up for the settle period
//! (`health.settle`, 5 s by default) so a service that crashes a moment after
//! it starts is caught, and when `launch.toml` sets `health.path` an HTTP GET
//! on 127.0.0.1 must answer 2xx or 3xx, all within the timeout. A container
//! that exits, restarts (crash loop) or turns `unhealthy` fails the gate at
//! once, with its last log lines, instead of waiting out the timeout. One-shot
//! services (an explicit `restart: "no"`, or the target of a
//! `service_completed_successfully` dependency) pass when they exit 0.

use std::collections::BTreeSet;
use std::time::Duration;

use launch_core::service_config::ServiceConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::compose::docker_output;
use crate::uplink::Sink;

const QUERY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    /// The compose service (label `com.docker.compose.service`).
    pub service: String,
    pub status: String,
    /// Empty when the container has no healthcheck.
    pub health: String,
    pub exit_code: i64,
    pub restarts: i64,
}

/// What the containers say right now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ready,
    Waiting(String),
    Failed { container: String, reason: String },
}

/// Judges the containers of a project from their inspected state;
/// containers of `one_shots` services may have exited 0.
pub fn judge(containers: &[Container], one_shots: &BTreeSet<String>) -> Verdict {
    if containers.is_empty() {
        return Verdict::Waiting("no containers yet".to_owned());
    }
    let mut waiting = Vec::new();
    for c in containers {
        if one_shots.contains(&c.service) && c.status == "exited" && c.exit_code == 0 {
            continue;
        }
        match (c.status.as_str(), c.health.as_str()) {
            ("exited" | "dead", _) => {
                return Verdict::Failed {
                    container: c.name.clone(),
                    reason: format!("container {} exited with code {}", c.name, c.exit_code),
                };
            }
            ("restarting", _) => {
                return Verdict::Failed {
                    container: c.name.clone(),
                    reason: format!(
                        "container {} is restarting (crash loop, exit code {})",
                        c.name, c.exit_code
                    ),
                };
            }
            (_, "unhealthy") => {
                return Verdict::Failed {
                    container: c.name.clone(),
                    reason: format!("container {} is unhealthy", c.name),
                };
            }
            _ if c.restarts > 0 => {
                return Verdict::Failed {
                    container: c.name.clone(),
                    reason: format!(
                        "container {} restarted {} times (crash loop)",
                        c.name, c.restarts
                    ),
                };
            }
            ("running", "" | "healthy") => {}
            (status, health) => waiting.push(format!(
                "{} is {status}{}",
                c.name,
                if health.is_empty() {
                    String::new()
                } else {
                    format!(" ({health})")
                }
            )),
        }
    }
    if waiting.is_empty() {
        Verdict::Ready
    } else {
        Verdict::Waiting(waiting.join(", "))
    }
}

/// Every container of a compose project, stopped ones included.
pub async fn containers(project: &str) -> Result<Vec<Container>, String> {
    let filter = format!("label=com.docker.compose.project={project}");
    let ids = docker_output(&["ps", "-a", "-q", "--filter", &filter], QUERY_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![
        "inspect",
        "--format",
        "{{.Name}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}|{{.RestartCount}}|{{index .Config.Labels \"com.docker.compose.service\"}}",
    ];
    args.extend(ids);
    let text = docker_output(&args, QUERY_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.split('|').collect();
            (parts.len() == 6).then(|| Container {
                name: parts[0].trim_start_matches('/').to_owned(),
                service: parts[5].to_owned(),
                status: parts[1].to_owned(),
                health: parts[2].to_owned(),
                exit_code: parts[3].parse().unwrap_or_default(),
                restarts: parts[4].parse().unwrap_or_default(),
            })
        })
        .collect())
}

/// One HTTP/1.1 GET; `Ok(status)` for any answer.
pub async fn probe(port: u16, path: &str) -> Result<u16, String> {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: launch-agent\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < 12 {
            let n = stream
                .read(&mut head[read..])
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            read += n;
        }
        let head = String::from_utf8_lossy(&head[..read]);
        head.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|_| head.starts_with("HTTP/"))
            .ok_or_else(|| {
                format!(
                    "not an HTTP answer: {:?}",
                    head.lines().next().unwrap_or_default()
                )
            })
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .unwrap_or_else(|_| Err("no answer within 3s".to_owned()))
}

/// Waits until the project is healthy; `Err` says why not. No service is
/// one-shot here; [`gate_with`] takes them from the compose file.
pub async fn gate(
    project: &str,
    config: &ServiceConfig,
    sink: &Sink,
    cancel: &CancellationToken,
) -> Result<(), String> {
    gate_with(project, config, &BTreeSet::new(), sink, cancel).await
}

/// [`gate`], where containers of the `one_shots` services pass by exiting 0.
pub async fn gate_with(
    project: &str,
    config: &ServiceConfig,
    one_shots: &BTreeSet<String>,
    sink: &Sink,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let health = &config.health;
    let deadline = Instant::now() + health.timeout;
    let probe_target = health.path.as_deref().zip(health.probe_port(config.port));
    sink.say(&format!(
        "health gate: containers running and healthy, then up for {}{} within {}",
        humantime::format_duration(health.settle),
        probe_target
            .map(|(path, port)| format!(", GET http://127.0.0.1:{port}{path} answers 2xx/3xx"))
            .unwrap_or_default(),
        humantime::format_duration(health.timeout)
    ));
    // Since when every container has been ready without a break.
    let mut ready_since: Option<Instant> = None;
    loop {
        let last: String;
        match containers(project).await {
            Err(err) => last = err,
            Ok(list) => match judge(&list, one_shots) {
                Verdict::Failed { container, reason } => {
                    if let Ok(logs) =
                        docker_output(&["logs", "--tail", "20", &container], QUERY_TIMEOUT).await
                    {
                        for line in logs.lines() {
                            sink.line(launch_proto::LogStream::Stderr, &container, line);
                        }
                    }
                    return Err(reason);
                }
                Verdict::Waiting(why) => {
                    ready_since = None;
                    last = why;
                }
                Verdict::Ready
                    if ready_since.get_or_insert_with(Instant::now).elapsed() < health.settle =>
                {
                    last = format!(
                        "settling: containers up for {} of {}",
                        humantime::format_duration(Duration::from_secs(
                            ready_since
                                .map(|t| t.elapsed().as_secs())
                                .unwrap_or_default()
                        )),
                        humantime::format_duration(health.settle)
                    );
                }
                Verdict::Ready => match probe_target {
                    None => return Ok(()),
                    Some((path, port)) => match probe(port, path).await {
                        Ok(status) if (200..400).contains(&status) => return Ok(()),
                        Ok(status) => last = format!("GET {path} on port {port} answered {status}"),
                        Err(err) => last = format!("GET {path} on port {port}: {err}"),
                    },
                },
            },
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "health gate timed out after {}: {last}",
                humantime::format_duration(health.timeout)
            ));
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err("cancelled during the health gate".to_owned()),
            _ = tokio::time::sleep(health.interval.min(deadline.saturating_duration_since(Instant::now()))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(status: &str, health: &str, restarts: i64) -> Container {
        Container {
            name: "web".into(),
            service: "web".into(),
            status: status.into(),
            health: health.into(),
            exit_code: 1,
            restarts,
        }
    }

    #[test]
    fn judge_waits_passes_and_fails_early() {
        let judge = |list: &[Container]| super::judge(list, &BTreeSet::new());
        assert!(matches!(judge(&[]), Verdict::Waiting(_)));
        assert_eq!(judge(&[container("running", "", 0)]), Verdict::Ready);
        assert_eq!(judge(&[container("running", "healthy", 0)]), Verdict::Ready);
        assert!(
            matches!(judge(&[container("running", "starting", 0)]), Verdict::Waiting(w) if w.contains("starting"))
        );
        assert!(matches!(
            judge(&[container("created", "", 0)]),
            Verdict::Waiting(_)
        ));
        for bad in [
            container("exited", "", 0),
            container("restarting", "", 1),
            container("running", "unhealthy", 0),
            container("running", "", 2),
        ] {
            assert!(matches!(judge(&[bad]), Verdict::Failed { .. }));
        }
    }

    #[test]
    fn a_one_shot_passes_by_exiting_zero_and_fails_otherwise() {
        let one_shots = BTreeSet::from(["migrate".to_owned()]);
        let exited = |service: &str, code: i64| Container {
            name: format!("p-{service}-1"),
            service: service.into(),
            status: "exited".into(),
            health: String::new(),
            exit_code: code,
            restarts: 0,
        };
        let web = container("running", "", 0);
        assert_eq!(
            judge(&[web, exited("migrate", 0)], &one_shots),
            Verdict::Ready
        );
        assert!(matches!(
            judge(&[exited("migrate", 3)], &one_shots),
            Verdict::Failed { reason, .. } if reason.contains("exited with code 3")
        ));
        assert!(
            matches!(
                judge(&[exited("web", 0)], &one_shots),
                Verdict::Failed { .. }
            ),
            "a service that is not one-shot may not exit, even with 0"
        );
    }

    #[tokio::test]
    async fn probe_reads_the_status_of_a_real_http_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "404 Not Found"] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await.unwrap();
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                socket.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        assert_eq!(probe(port, "/healthz").await, Ok(200));
        assert_eq!(probe(port, "/missing").await, Ok(404));
        server.await.unwrap();
        assert!(probe(port, "/").await.is_err(), "nothing listens any more");
    }
}
