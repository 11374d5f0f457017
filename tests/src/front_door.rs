//! What the front-door scenarios share: an agent whose front door listens on
//! free loopback ports, a routed service (the quickstart web container with
//! no published host port, `[http] hosts = [<unique>.test]`), requests with
//! a chosen `Host` header, a steady request loop that records every failed
//! request while deploys run, and a watcher that counts a compose service's
//! running containers with the docker CLI.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::docker::docker_lines;
use crate::service::Service;
use crate::unique;

/// Free loopback ports for an agent's front door.
pub struct Ports {
    pub http: u16,
    pub https: u16,
}

impl Ports {
    pub fn free() -> Ports {
        Ports {
            http: unique::free_port(),
            https: unique::free_port(),
        }
    }

    /// The agent environment that turns its front door on at these ports.
    pub fn agent_env(&self) -> Vec<(String, String)> {
        vec![
            ("LAUNCH_AGENT_INGRESS".into(), "on".into()),
            (
                "LAUNCH_AGENT_HTTP_LISTEN".into(),
                format!("127.0.0.1:{}", self.http),
            ),
            (
                "LAUNCH_AGENT_HTTPS_LISTEN".into(),
                format!("127.0.0.1:{}", self.https),
            ),
        ]
    }
}

/// A connected agent for `service` whose front door listens on `ports`
/// and orders certificates from `pebble` (its HTTP-01 port is `ports.http`).
pub fn acme_agent(
    server: &crate::Server,
    service: &Service,
    ports: &Ports,
    pebble: &crate::pebble::Pebble,
) -> crate::Agent {
    let mut env = ports.agent_env();
    env.push(("LAUNCH_AGENT_ACME_DIRECTORY".into(), pebble.directory_url()));
    env.push((
        "LAUNCH_AGENT_ACME_CA_ROOT".into(),
        pebble.listener_root_file().display().to_string(),
    ));
    env.push(("LAUNCH_AGENT_ACME_EMAIL".into(), "ops@example.com".into()));
    let token = crate::agent::create_join_token(server, &service.name, &service.environment);
    let mut agent = crate::Agent::spawn_with_env(
        server,
        &service.name,
        &service.environment,
        &token,
        &env_refs(&env),
    );
    agent.wait_connected();
    agent
}

/// Borrows `env` as the `&[(&str, &str)]` the agent harness takes.
pub fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A unique `.test` host name for a service.
pub fn host_name(service: &Service) -> String {
    format!("{}.test", service.name)
}

/// Rewrites the quickstart copy as a routed service: `web` exposes 8080 on
/// the project network only (no host port: it can run twice), with its
/// healthcheck, and `launch.toml` routes `host` to it.
pub fn make_routed(service: &Service, host: &str) {
    service.write(
        "compose.yaml",
        r#"services:
  web:
    build: .
    expose: ["8080"]
    env_file: .env
    init: true
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
      interval: 1s
      timeout: 2s
      retries: 3
"#,
    );
    write_launch_toml(service, host);
}

/// `launch.toml` naming the service and routing `host` to `web:8080`.
pub fn write_launch_toml(service: &Service, host: &str) {
    service.write(
        "launch.toml",
        &format!(
            "name = {name:?}\n\n[health]\ntimeout = \"60s\"\n\n[http]\nservice = \"web\"\nport = 8080\nhosts = [{host:?}]\n",
            name = service.name
        ),
    );
}

/// One HTTP/1.1 GET to `127.0.0.1:port` with `Host: host`: status and body.
pub fn get(port: u16, host: &str, path: &str) -> Result<(u16, String), String> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// What a request loop saw.
#[derive(Debug)]
pub struct LoopReport {
    pub requests: usize,
    pub failures: Vec<String>,
    pub seconds: f64,
}

impl LoopReport {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds.max(0.001)
    }
}

/// Steady GETs through the front door from a few threads, each paced to
/// one request per 8 ms (bounded: about 250 req/s in all, loopback only).
/// Anything but a 200 is a failure, recorded with what was seen.
pub struct RequestLoop {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

/// One request of a [`RequestLoop`]: status and body.
pub type Fetch = Arc<dyn Fn() -> Result<(u16, String), String> + Send + Sync>;

impl RequestLoop {
    /// Plain-HTTP GETs of `/` with `Host: host` to `127.0.0.1:port`.
    pub fn start(port: u16, host: &str) -> RequestLoop {
        let host = host.to_owned();
        RequestLoop::start_with(Arc::new(move || get(port, &host, "/")))
    }

    /// The loop over any request (e.g. HTTPS with a given root).
    pub fn start_with(fetch: Fetch) -> RequestLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..2)
            .map(|_| {
                let (stop, requests, failures) = (stop.clone(), requests.clone(), failures.clone());
                let fetch = fetch.clone();
                std::thread::spawn(move || {
                    let pace = Duration::from_millis(8);
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        match fetch() {
                            Ok((200, _)) => {}
                            Ok((code, body)) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{code}: {}", body.trim())),
                            Err(err) => failures.lock().unwrap().push(err),
                        }
                        requests.fetch_add(1, Ordering::Relaxed);
                        if let Some(rest) = pace.checked_sub(started.elapsed()) {
                            std::thread::sleep(rest);
                        }
                    }
                })
            })
            .collect();
        RequestLoop {
            stop,
            requests,
            failures,
            threads,
            started: Instant::now(),
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) -> LoopReport {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().expect("a request loop thread panicked");
        }
        LoopReport {
            requests: self.requests(),
            failures: std::mem::take(&mut *self.failures.lock().unwrap()),
            seconds: self.started.elapsed().as_secs_f64(),
        }
    }
}

impl Drop for RequestLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Counts the running containers of one compose service every 50 ms with
/// `docker ps` and keeps the highest count seen. (Compose's own recreate
/// keeps the stopped old container until the new one runs; that is not two
/// running on one volume, so stopped containers are not counted.)
pub struct ContainerWatch {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl ContainerWatch {
    pub fn start(project: &str, service: &str) -> ContainerWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let most = Arc::new(AtomicUsize::new(0));
        let samples = Arc::new(AtomicUsize::new(0));
        let project_label = format!("label=com.docker.compose.project={project}");
        let service_label = format!("label=com.docker.compose.service={service}");
        let (done, highest, counted) = (stop.clone(), most.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let count = docker_lines(&[
                    "ps",
                    "-q",
                    "--filter",
                    &project_label,
                    "--filter",
                    &service_label,
                ])
                .len();
                highest.fetch_max(count, Ordering::Relaxed);
                counted.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        ContainerWatch {
            stop,
            most,
            samples,
            thread: Some(thread),
        }
    }

    /// (the most containers seen at once, how many samples were taken).
    pub fn stop(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the container watch panicked");
        }
        (
            self.most.load(Ordering::Relaxed),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

impl Drop for ContainerWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
