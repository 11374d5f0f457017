//! What happens on deploy for the service the front door routes, in Kamal's
//! order: health first, then the switch. Only the routed compose service is
//! doubled — its new container starts next to the old one in the same
//! project (`up --no-recreate --scale S=n+1`, which compose v1 and v2 both
//! understand), the other services are updated the way `compose up` would.
//! The new container must pass the health gate and answer on its project
//! network address; only then does the route switch, the old container drain
//! (in-flight requests first, upgraded connections last) and go. A release
//! that fails never receives traffic: its new container is removed and the
//! old one keeps serving.
//!
//! A routed service that publishes a fixed host port (two containers cannot
//! bind it) or mounts a named volume (two writers on one volume is
//! corruption) is switched in place instead, and the mission log says so.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use launch_core::service_config::ServiceConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::compose::{Compose, docker_output};
use crate::ingress::Router;
use crate::uplink::Sink;

const QUERY_TIMEOUT: Duration = Duration::from_secs(20);

/// The front door as the executor hands it to a deploy.
#[derive(Clone)]
pub struct Front {
    pub router: Arc<Router>,
    /// How long an old container may finish its requests.
    pub drain: Duration,
    /// The listeners' ports (for the URL a deploy reports).
    pub http_port: u16,
    pub https_port: u16,
    /// The ACME server is a private one (`--acme-ca-root`), which may
    /// certify any name; a public one only public names.
    pub private_ca: bool,
    /// Names this agent's service answers besides `[http] hosts` and the
    /// mission's (`launch dev`: `<service>.localhost`).
    pub extra_hosts: Vec<String>,
}

/// One compose release being brought up.
pub struct Release<'a> {
    pub compose: &'a Compose,
    pub dir: &'a Path,
    pub file: &'a str,
    pub project: &'a str,
    pub release_id: &'a str,
    pub config: &'a ServiceConfig,
    /// Host names from the mission (the control plane's fqdn).
    pub mission_hosts: &'a [String],
    /// A preview's name: its route is its own (`crate::preview`), at
    /// `<preview>.<name>` for each of the service's names.
    pub preview: Option<&'a str>,
}

/// A container of the project, as `docker inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub id: String,
    pub service: String,
    pub running: bool,
    /// The address on the project's network (else the first network).
    pub ip: Option<IpAddr>,
    pub exposed: Vec<u16>,
    pub fixed_host_port: bool,
    pub named_volume: bool,
}

/// How a release is brought up, decided before `compose up`.
pub enum Plan {
    /// Nothing is routed for this service: `compose up` as always.
    Unrouted,
    /// `compose up` recreates the routed service; the route follows after
    /// the gate. `reason` says why it is not doubled (`None`: nothing ran).
    InPlace {
        hosts: Vec<String>,
        reason: Option<String>,
    },
    /// The routed service `service` runs twice until the switch.
    Doubled {
        hosts: Vec<String>,
        service: String,
        old: Vec<Replica>,
    },
}

impl Plan {
    /// Decides and runs `compose up` for `release`.
    pub async fn up(
        front: Option<&Front>,
        release: &Release<'_>,
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> Result<Plan, String> {
        let plan = Self::decide(front, release).await?;
        if let (Some(front), Some(hosts)) = (front, plan.hosts()) {
            announce(front, release, hosts);
        }
        let compose = release.compose;
        let run = |args: Vec<String>| async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            compose
                .run(
                    release.dir,
                    release.file,
                    release.project,
                    &args,
                    sink,
                    cancel,
                )
                .await
                .map_err(|e| e.to_string())
        };
        let everything = || {
            ["up", "-d", "--build", "--remove-orphans"]
                .map(str::to_owned)
                .to_vec()
        };
        match &plan {
            Plan::Unrouted => run(everything()).await?,
            Plan::InPlace { .. } => run(everything()).await?,
            Plan::Doubled { service, old, .. } => {
                let others: Vec<String> = services(release)
                    .await?
                    .into_iter()
                    .filter(|s| s != service)
                    .collect();
                if !others.is_empty() {
                    let mut args = ["up", "-d", "--build", "--no-deps", "--remove-orphans"]
                        .map(str::to_owned)
                        .to_vec();
                    args.extend(others);
                    run(args).await?;
                }
                sink.say(&format!(
                    "starting a new {service} container next to the running one; traffic stays on the old one until the new one is healthy"
                ));
                let scale = format!("{service}={}", old.len() + 1);
                run([
                    "up",
                    "-d",
                    "--build",
                    "--no-deps",
                    "--no-recreate",
                    "--scale",
                ]
                .map(str::to_owned)
                .into_iter()
                .chain([scale, service.clone()])
                .collect())
                .await?;
            }
        }
        Ok(plan)
    }

    /// After containers were restarted in place (their addresses may have
    /// changed): points the route at them again.
    pub async fn reroute(
        front: Option<&Front>,
        release: &Release<'_>,
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, String> {
        let Some(hosts) = front.and_then(|front| routed_hosts(front, release)) else {
            return Ok(None);
        };
        Plan::InPlace {
            hosts,
            reason: None,
        }
        .finish(front, release, sink, cancel)
        .await
    }

    async fn decide(front: Option<&Front>, release: &Release<'_>) -> Result<Plan, String> {
        let Some(front) = front else {
            return Ok(Plan::Unrouted);
        };
        let Some(hosts) = routed_hosts(front, release) else {
            return Ok(Plan::Unrouted);
        };
        let http = release.config.http.clone().unwrap_or_default();
        let replicas = replicas(release.project).await?;
        let running: Vec<&Replica> = replicas.iter().filter(|r| r.running).collect();
        let service = match &http.service {
            Some(service) => Some(service.clone()),
            None => only_service_with_a_port(&running).ok(),
        };
        let in_place = |reason: Option<String>| {
            Ok(Plan::InPlace {
                hosts: hosts.clone(),
                reason,
            })
        };
        let Some(service) = service else {
            return in_place(None);
        };
        let old: Vec<Replica> = running
            .into_iter()
            .filter(|r| r.service == service)
            .cloned()
            .collect();
        if old.is_empty() {
            return in_place(None);
        }
        if old.iter().any(|r| r.fixed_host_port) {
            return in_place(Some(format!(
                "{service} publishes a fixed host port, which two containers cannot share"
            )));
        }
        if old.iter().any(|r| r.named_volume) {
            return in_place(Some(format!(
                "{service} mounts a named volume, and two containers must never write to one"
            )));
        }
        Ok(Plan::Doubled {
            hosts,
            service,
            old,
        })
    }

    /// The config the health gate should use: a doubled service is probed
    /// by [`Plan::finish`] on its own address, not on a host port.
    pub fn gate_config(&self, config: &ServiceConfig) -> ServiceConfig {
        let mut config = config.clone();
        if matches!(self, Plan::Doubled { .. }) {
            config.health.path = None;
        }
        config
    }

    /// After the gate: the new container answers, the route switches, the
    /// old container drains and is removed. `Ok` carries the URL the front
    /// door serves the release at (`None`: not routed).
    pub async fn finish(
        &self,
        front: Option<&Front>,
        release: &Release<'_>,
        sink: &Sink,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, String> {
        let (Some(front), hosts) = (front, self.hosts()) else {
            return Ok(None);
        };
        let Some(hosts) = hosts else {
            return Ok(None);
        };
        let http = release.config.http.clone().unwrap_or_default();
        let replicas = replicas(release.project).await?;
        let running: Vec<&Replica> = replicas.iter().filter(|r| r.running).collect();
        let service = match (self, &http.service) {
            (Plan::Doubled { service, .. }, _) => service.clone(),
            (_, Some(service)) => service.clone(),
            (_, None) => only_service_with_a_port(&running)?,
        };
        let old_ids: BTreeSet<&str> = match self {
            Plan::Doubled { old, .. } => old.iter().map(|r| r.id.as_str()).collect(),
            _ => BTreeSet::new(),
        };
        let new = running
            .iter()
            .find(|r| r.service == service && !old_ids.contains(r.id.as_str()))
            .ok_or_else(|| format!("no running container of the routed service {service}"))?;
        let port = match http.port {
            Some(port) => port,
            None => match new.exposed.as_slice() {
                [port] => *port,
                _ => {
                    return Err(format!(
                        "service {service} exposes {} ports: set [http] port in launch.toml to the one that serves HTTP",
                        new.exposed.len()
                    ));
                }
            },
        };
        let ip = new.ip.ok_or_else(|| {
            format!(
                "container {} of {service} has no network address",
                short(&new.id)
            )
        })?;
        let upstream = SocketAddr::new(ip, port);
        let path = release.config.health.path.as_deref();
        answers(upstream, path, release.config.health.timeout, cancel)
            .await
            .map_err(|last| {
                format!("the new {service} container at {upstream} does not answer: {last}")
            })?;
        if let Plan::InPlace {
            reason: Some(reason),
            ..
        } = self
        {
            sink.say(&format!(
                "{service} was switched in place, not side by side: {reason}; requests during the switch may fail (publish no fixed host port, e.g. `expose:`, to get a zero-downtime cutover)"
            ));
        }
        let key = match release.preview {
            Some(preview) => crate::preview::route_key(&service, preview),
            None => service.clone(),
        };
        let previous = front
            .router
            .switch(&key, hosts, Some((upstream, release.release_id)))
            .map_err(|e| format!("cannot switch the route: {e}"))?;
        sink.say(&format!(
            "route switched: {} → {service} at {upstream}",
            hosts.join(", ")
        ));
        if let Plan::Doubled { old, .. } = self {
            if let Some(previous) = previous {
                sink.say(&format!(
                    "draining the old {service} container ({} requests and {} upgraded connections in flight, up to {})",
                    previous.requests(),
                    previous.tunnels(),
                    humantime::format_duration(front.drain)
                ));
                let drained = previous.drain(front.drain).await;
                if drained.cut_requests > 0 {
                    sink.say(&format!(
                        "drain deadline passed with {} requests still running",
                        drained.cut_requests
                    ));
                }
            }
            remove(old, sink).await;
        }
        Ok(hosts.first().map(|host| {
            let tls = front.private_ca || crate::ingress::certs::publicly_issuable(host);
            crate::service_url::routed(host, tls, front.http_port, front.https_port)
        }))
    }

    /// A release that failed: a doubled service's new containers go, so
    /// the old one (still routed) is all that is left of it.
    pub async fn abandon(&self, project: &str, sink: &Sink) {
        let Plan::Doubled { service, old, .. } = self else {
            return;
        };
        let old_ids: BTreeSet<&str> = old.iter().map(|r| r.id.as_str()).collect();
        let Ok(replicas) = replicas(project).await else {
            return;
        };
        let new: Vec<Replica> = replicas
            .into_iter()
            .filter(|r| r.service == *service && !old_ids.contains(r.id.as_str()))
            .collect();
        if !new.is_empty() {
            sink.say(&format!(
                "removing the failed new {service} container; the old one keeps serving"
            ));
            remove(&new, sink).await;
        }
    }

    fn hosts(&self) -> Option<&[String]> {
        match self {
            Plan::Unrouted => None,
            Plan::InPlace { hosts, .. } | Plan::Doubled { hosts, .. } => Some(hosts),
        }
    }
}

/// A new preview's names enter the route table (with no upstream yet:
/// 503) before `compose up`, so its certificate is ordered while compose
/// builds instead of after the health gate. Only for a preview whose routed
/// service `[http] service` names, and only when it has no route yet; a
/// preview whose first deploy fails keeps answering 503 until it is removed.
fn announce(front: &Front, release: &Release<'_>, hosts: &[String]) {
    let (Some(preview), Some(service)) = (
        release.preview,
        release
            .config
            .http
            .as_ref()
            .and_then(|h| h.service.as_ref()),
    ) else {
        return;
    };
    let key = crate::preview::route_key(service, preview);
    if front.router.snapshot().routes.contains_key(&key) {
        return;
    }
    if let Err(err) = front.router.switch(&key, hosts, None) {
        tracing::warn!(cause = %err, %preview, "cannot announce the preview's names before it is up");
    }
}

/// The names routed to the release's service, first the mission's (the
/// public fqdn), then `[http] hosts`, then the agent's own; `None` when the
/// service is not routed (no `[http]` and no names).
fn routed_hosts(front: &Front, release: &Release<'_>) -> Option<Vec<String>> {
    let http = release.config.http.clone().unwrap_or_default();
    let mut hosts: Vec<String> = Vec::new();
    for host in release
        .mission_hosts
        .iter()
        .chain(&http.hosts)
        .chain(&front.extra_hosts)
    {
        let host = host.to_ascii_lowercase();
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    let routed = release.config.http.is_some() || !hosts.is_empty();
    let hosts = match release.preview {
        Some(preview) => crate::preview::host_names(preview, &hosts),
        None => hosts,
    };
    routed.then_some(hosts)
}

/// `docker stop` then `docker rm` of `replicas`.
async fn remove(replicas: &[Replica], sink: &Sink) {
    if replicas.is_empty() {
        return;
    }
    let ids: Vec<&str> = replicas.iter().map(|r| r.id.as_str()).collect();
    for verb in [&["stop", "-t", "10"][..], &["rm", "-f"][..]] {
        let mut args = verb.to_vec();
        args.extend(&ids);
        if let Err(err) = docker_output(&args, Duration::from_secs(60)).await {
            sink.say(&format!("could not remove the old container: {err}"));
        }
    }
    sink.say(&format!(
        "old container {} removed",
        ids.iter()
            .map(|id| short(id))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The service the front door routes when `[http] service` is not set.
fn only_service_with_a_port(running: &[&Replica]) -> Result<String, String> {
    let with_port: BTreeSet<&str> = running
        .iter()
        .filter(|r| !r.exposed.is_empty())
        .map(|r| r.service.as_str())
        .collect();
    match with_port.len() {
        1 => Ok(with_port.into_iter().next().unwrap_or_default().to_owned()),
        0 => {
            Err("no service exposes a port: set [http] service and port in launch.toml".to_owned())
        }
        _ => Err(format!(
            "services {} all expose ports: set [http] service in launch.toml to the one that receives traffic",
            with_port.into_iter().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The services of the release's compose file.
async fn services(release: &Release<'_>) -> Result<Vec<String>, String> {
    let mut command = release.compose.command(
        release.dir,
        release.file,
        release.project,
        &["config", "--services"],
    );
    command
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(QUERY_TIMEOUT, command.output())
        .await
        .map_err(|_| "`compose config --services` timed out".to_owned())?
        .map_err(|e| format!("cannot run compose: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`compose config --services` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

const INSPECT_FORMAT: &str = concat!(
    "{{.Id}}|{{index .Config.Labels \"com.docker.compose.service\"}}|{{.State.Running}}|",
    "{{range $name, $net := .NetworkSettings.Networks}}{{$name}}={{$net.IPAddress}} {{end}}|",
    "{{range $port, $_ := .Config.ExposedPorts}}{{$port}} {{end}}|",
    "{{range $port, $bindings := .HostConfig.PortBindings}}{{range $bindings}}{{.HostPort}} {{end}}{{end}}|",
    "{{range .Mounts}}{{.Type}}={{.Name}} {{end}}"
);

/// The project's service containers (one-off `run` containers left out).
pub async fn replicas(project: &str) -> Result<Vec<Replica>, String> {
    let filter = format!("label=com.docker.compose.project={project}");
    let ids = docker_output(
        &["ps", "-a", "-q", "--no-trunc", "--filter", &filter],
        QUERY_TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["inspect", "--format", INSPECT_FORMAT];
    args.extend(ids);
    let text = docker_output(&args, QUERY_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let network = format!("{project}_default");
    Ok(text
        .lines()
        .filter_map(|line| parse_replica(line, &network))
        .collect())
}

fn parse_replica(line: &str, project_network: &str) -> Option<Replica> {
    let fields: Vec<&str> = line.split('|').collect();
    let [id, service, running, networks, exposed, bindings, mounts] = fields[..] else {
        return None;
    };
    let addresses: Vec<(&str, IpAddr)> = networks
        .split_whitespace()
        .filter_map(|n| n.split_once('='))
        .filter_map(|(name, ip)| Some((name, ip.parse().ok()?)))
        .collect();
    let ip = addresses
        .iter()
        .find(|(name, _)| *name == project_network)
        .or(addresses.first())
        .map(|(_, ip)| *ip);
    Some(Replica {
        id: id.to_owned(),
        service: service.to_owned(),
        running: running == "true",
        ip,
        exposed: exposed
            .split_whitespace()
            .filter_map(|p| p.strip_suffix("/tcp"))
            .filter_map(|p| p.parse().ok())
            .collect(),
        fixed_host_port: bindings
            .split_whitespace()
            .any(|port| port.parse::<u16>().is_ok_and(|p| p != 0)),
        named_volume: mounts.split_whitespace().any(|mount| {
            mount.strip_prefix("volume=").is_some_and(|name| {
                !(name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()))
            })
        }),
    })
}

/// Waits until `upstream` answers: `path` with 2xx/3xx, or (no path) a TCP
/// connection. `Err` is the last thing seen.
async fn answers(
    upstream: SocketAddr,
    path: Option<&str>,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match tokio::time::timeout(Duration::from_secs(3), probe(upstream, path)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err)) => err,
            Err(_) => "no answer within 3s".to_owned(),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err("cancelled".to_owned()),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

async fn probe(upstream: SocketAddr, path: Option<&str>) -> Result<(), String> {
    let mut stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| e.to_string())?;
    let Some(path) = path else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {upstream}\r\nUser-Agent: launch-agent\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buf = [0u8; 64];
    while head.len() < 12 {
        let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    match head
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
    {
        Some(status) if (200..400).contains(&status) => Ok(()),
        Some(status) => Err(format!("GET {path} answered {status}")),
        None => Err(format!("GET {path}: not an HTTP answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_lines_become_replicas() {
        let line = "abc|web|true|bridge=172.17.0.5 p_default=172.20.0.3 |8080/tcp 9090/udp ||volume=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef bind= ";
        let web = parse_replica(line, "p_default").unwrap();
        assert_eq!(web.ip, Some("172.20.0.3".parse().unwrap()));
        assert_eq!(web.exposed, vec![8080]);
        assert!(web.running && !web.fixed_host_port && !web.named_volume);

        let db = parse_replica(
            "def|db|false|bridge=172.17.0.6 |5432/tcp |5432 |volume=p_data ",
            "p_default",
        )
        .unwrap();
        assert_eq!(db.ip, Some("172.17.0.6".parse().unwrap()));
        assert!(!db.running && db.fixed_host_port && db.named_volume);

        let ephemeral = parse_replica("x|web|true||8080/tcp | |", "p").unwrap();
        assert!(
            !ephemeral.fixed_host_port,
            "a published port without a fixed host port can run twice"
        );
        assert_eq!(parse_replica("too|few", "p"), None);
    }

    #[test]
    fn the_routed_service_is_the_only_one_with_a_port() {
        let replica = |service: &str, exposed: Vec<u16>| Replica {
            id: service.into(),
            service: service.into(),
            running: true,
            ip: None,
            exposed,
            fixed_host_port: false,
            named_volume: false,
        };
        let (web, db, worker) = (
            replica("web", vec![8080]),
            replica("db", vec![5432]),
            replica("worker", vec![]),
        );
        assert_eq!(only_service_with_a_port(&[&web, &worker]).unwrap(), "web");
        let error = only_service_with_a_port(&[&web, &db]).unwrap_err();
        assert!(error.contains("set [http] service"), "{error}");
        assert!(only_service_with_a_port(&[&worker]).is_err());
    }
}
