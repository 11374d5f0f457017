//! The agent's front door with the real Docker engine: a deployed service
//! answers by host name through the proxy (404 for other names), its
//! counters reach `/metrics`, and `status` and `logs` show its route and a
//! failed certificate order; redeploys
//! under a steady request loop fail no request and end serving the new
//! content; a release failing health never gets traffic; a stateful service
//! beside the routed one is never run twice and keeps its volume; an
//! upgraded connection lives until the old container's drain; and a
//! restarted agent serves its routes while the control plane is down; a
//! retired service's names stop routing (its route is gone from disk).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use launch_e2e::agent::create_join_token;
use launch_e2e::front_door::{self, ContainerWatch, Ports, RequestLoop, env_refs};
use launch_e2e::poll::eventually;
use launch_e2e::unique::free_port;
use launch_e2e::{Agent, Server, Service, cli, http};

/// A server, a routed quickstart copy and an agent with its front door on
/// free loopback ports.
struct Setup {
    service: Service,
    server: Server,
    agent: Agent,
    ports: Ports,
    host: String,
}

fn setup() -> Setup {
    setup_with(&[])
}

/// [`setup`] with more agent environment.
fn setup_with(extra_env: &[(&str, &str)]) -> Setup {
    let service = Service::quickstart();
    let host = front_door::host_name(&service);
    front_door::make_routed(&service, &host);
    let ports = Ports::free();
    let server = Server::start();
    let token = create_join_token(&server, &service.name, &service.environment);
    let mut env = ports.agent_env();
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut agent = Agent::spawn_with_env(
        &server,
        &service.name,
        &service.environment,
        &token,
        &env_refs(&env),
    );
    agent.wait_connected();
    Setup {
        service,
        server,
        agent,
        ports,
        host,
    }
}

impl Setup {
    /// `deploy --wait --output json`: exit code, final object, whole output.
    fn deploy(&self) -> (Option<i32>, serde_json::Value, String) {
        let dir = self.service.dir_arg();
        let out = self.server.cli(
            &self
                .service
                .deploy_args(&dir, &["--wait", "--output", "json", "--timeout", "3m"]),
        );
        (out.code, out.json(), out.to_string())
    }

    fn deploy_healthy(&self) -> serde_json::Value {
        let (code, value, out) = self.deploy();
        assert_eq!(code, Some(0), "{out}\nagent:\n{}", self.agent.stderr());
        assert_eq!(cli::field(&value, "state"), "healthy", "{out}");
        value
    }

    fn page(&self) -> String {
        let (code, body) = front_door::get(self.ports.http, &self.host, "/")
            .unwrap_or_else(|e| panic!("the front door does not answer: {e}"));
        assert_eq!(code, 200, "{body}");
        body
    }
}

#[test]
fn the_front_door_serves_by_host_name_and_reports_counters_routes_and_certificate_failures() {
    // An ACME server that is down (nothing listens on its port); a private
    // CA root, so the agent orders for `.test` names at all.
    let acme = format!("https://127.0.0.1:{}/dir", free_port());
    let setup = setup_with(&[
        ("LAUNCH_AGENT_ACME_DIRECTORY", &acme),
        (
            "LAUNCH_AGENT_ACME_CA_ROOT",
            "/etc/ssl/certs/ca-certificates.crt",
        ),
    ]);
    setup.service.set_index("hello through the front door\n");
    let deployed = setup.deploy_healthy();
    assert_eq!(
        cli::field(&deployed, "url"),
        format!("https://{}:{}/", setup.host, setup.ports.https),
        "the deploy reports the routed URL: https, since a private CA may certify the name"
    );
    for _ in 0..5 {
        assert!(setup.page().contains("hello through the front door"));
    }

    let (code, body) = front_door::get(setup.ports.http, "nobody.test", "/").unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("nobody.test"), "{body}");

    // The counters reach /metrics with the heartbeats, labelled with the
    // service (the unknown name's 404 belongs to no service).
    let (name, env) = (&setup.service.name, &setup.service.environment);
    let labels = format!(r#"service="{name}",environment="{env}",route="web""#);
    eventually(
        Duration::from_secs(30),
        "the proxy counters on /metrics",
        || {
            let (_, metrics) = http::get(setup.server.addr.port(), "/metrics")?;
            let value = |metric: &str| {
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{metric}{{{labels}")))
                    .and_then(|rest| rest.rsplit(' ').next()?.parse::<u64>().ok())
            };
            match (
                value("launch_proxy_responses_total"),
                value("launch_proxy_request_duration_seconds_count"),
            ) {
                (Some(_), Some(count)) if count >= 5 => Ok(()),
                other => Err(format!("{other:?} in\n{metrics}")),
            }
        },
    );
    let (_, metrics) = http::get(setup.server.addr.port(), "/metrics").unwrap();
    assert!(
        metrics.contains(&format!(
            r#"launch_proxy_responses_total{{{labels},class="2xx"}} 5"#
        )),
        "{metrics}"
    );
    assert!(!metrics.contains("nobody.test"), "{metrics}");

    // `status` shows the route, its release and the failed certificate.
    let release = cli::field(&deployed, "release_id").to_owned();
    let route = eventually(
        Duration::from_secs(30),
        "the failed certificate in status",
        || {
            let out = setup.server.cli(&["status", "--output", "json"]);
            let status = out.json();
            let service = status["services"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["service"] == name.as_str()))
                .ok_or_else(|| out.to_string())?;
            let route = service["routes"][0].clone();
            match route["certificates"][0]["state"].as_str() {
                Some("failed") => Ok(route),
                _ => Err(out.to_string()),
            }
        },
    );
    assert_eq!(route["hosts"][0], setup.host.as_str(), "{route}");
    assert_eq!(route["release_id"], release.as_str(), "{route}");
    let error = route["certificates"][0]["error"].as_str().unwrap();
    assert!(
        error.contains(&acme),
        "the ACME error names the server: {error}"
    );
    let text = setup.server.cli(&["status"]);
    assert!(
        text.stdout
            .contains(&format!("{}: certificate failed (", setup.host)),
        "{text}"
    );

    // And the service's log says it: one line per attempt (retries back off
    // from a minute), never one per request.
    let logs = setup.server.cli(&["logs", name, "--env", env]);
    let failures: Vec<&str> = logs
        .stdout
        .lines()
        .filter(|l| l.contains(&format!("certificate {}: failed (", setup.host)))
        .collect();
    assert!(!failures.is_empty(), "{logs}");
    assert!(failures[0].contains(&acme), "{}", failures[0]);
    let mut attempts: Vec<&str> = failures
        .iter()
        .filter_map(|l| l.split("failed (").nth(1)?.split(' ').next())
        .collect();
    attempts.dedup();
    assert_eq!(
        attempts.len(),
        failures.len(),
        "one line per attempt: {logs}"
    );
}

#[test]
fn ten_redeploys_under_a_request_loop_fail_no_request() {
    let setup = setup();
    setup.service.set_index("release 0\n");
    setup.deploy_healthy();
    let requests = RequestLoop::start(setup.ports.http, &setup.host);
    let mut logs = String::new();
    for release in 1..=10 {
        setup.service.set_index(&format!("release {release}\n"));
        let before = requests.requests();
        let (code, _, out) = setup.deploy();
        assert_eq!(code, Some(0), "redeploy {release}: {out}");
        logs.push_str(&out);
        let body = setup.page();
        assert!(
            body.contains(&format!("release {release}")),
            "redeploy {release} ended serving {body:?}"
        );
        assert!(
            requests.requests() > before,
            "the request loop made no request during redeploy {release}"
        );
    }
    let report = requests.stop();
    eprintln!(
        "{} requests in {:.1}s ({:.0} req/s) through the front door",
        report.requests,
        report.seconds,
        report.rate()
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed during the redeploys: {:?}\n{logs}",
        report.failures.len(),
        report.requests,
        &report.failures[..report.failures.len().min(10)]
    );
    assert!(
        logs.contains("route switched"),
        "the cutover says when it switches\n{logs}"
    );
    assert!(!logs.contains("switched in place"), "{logs}");
}

#[test]
fn a_retired_service_stops_routing_its_names_even_when_its_compose_service_has_another_name() {
    let setup = setup();
    setup.deploy_healthy();
    assert!(
        setup.page().contains("Launch"),
        "positive control: it serves"
    );
    let routes = setup.agent.data_dir().join("ingress").join("routes.json");
    let on_disk = || std::fs::read_to_string(&routes).unwrap_or_default();
    assert!(on_disk().contains(&setup.host), "{}", on_disk());
    assert_ne!(
        setup.service.name, "web",
        "the bug needs a compose service named otherwise than the service"
    );

    setup
        .server
        .cli(&[
            "retire",
            &setup.service.name,
            "--env",
            &setup.service.environment,
            "--wait",
        ])
        .success();
    eventually(
        Duration::from_secs(60),
        "the retired service's name to stop routing",
        || match front_door::get(setup.ports.http, &setup.host, "/") {
            Ok((404, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(
        !on_disk().contains(&setup.host),
        "the route must be gone from disk: {}",
        on_disk()
    );
}

#[test]
fn a_release_that_fails_health_gets_no_traffic_and_the_old_one_keeps_serving() {
    let setup = setup();
    setup.service.set_index("the good release\n");
    setup.deploy_healthy();
    let requests = RequestLoop::start(setup.ports.http, &setup.host);

    setup.service.set_index("the broken release\n");
    let compose = std::fs::read_to_string(setup.service.dir().join("compose.yaml")).unwrap();
    setup.service.write(
        "compose.yaml",
        &compose.replace("8080/healthz", "8080/no-such-page"),
    );
    let (code, value, out) = setup.deploy();
    let report = requests.stop();
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(cli::field(&value, "state"), "rolled_back", "{out}");
    assert!(setup.page().contains("the good release"));
    assert!(report.requests > 0);
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:?}",
        report.failures.len(),
        report.requests,
        &report.failures[..report.failures.len().min(10)]
    );
    let broken_served = front_door::get(setup.ports.http, &setup.host, "/")
        .map(|(_, body)| body.contains("broken"))
        .unwrap_or(false);
    assert!(!broken_served, "the failed release must never be served");
}

#[test]
fn a_stateful_service_beside_the_routed_one_is_never_run_twice_and_keeps_its_data() {
    let setup = setup();
    let compose = std::fs::read_to_string(setup.service.dir().join("compose.yaml")).unwrap();
    setup.service.write(
        "compose.yaml",
        &format!(
            r#"{compose}  db:
    build: .
    init: true
    entrypoint: ["/bin/busybox", "sh", "-c"]
    command: ["[ -f /data/first ] || /bin/busybox cat /proc/sys/kernel/random/uuid > /data/first; echo started >> /data/starts; exec /bin/busybox sleep 100000"]
    volumes: ["data:/data"]
volumes:
  data: {{}}
"#
        ),
    );
    setup.service.set_index("release 0\n");
    setup.deploy_healthy();
    let db_file = |name: &str| {
        let ids = setup.service.project.containers(true);
        let db = ids
            .iter()
            .find(|id| {
                launch_e2e::docker::docker_lines(&[
                    "inspect",
                    "--format",
                    "{{index .Config.Labels \"com.docker.compose.service\"}}",
                    id,
                ]) == ["db"]
            })
            .unwrap_or_else(|| panic!("no running db container among {ids:?}"))
            .clone();
        launch_e2e::docker::docker_lines(&["exec", &db, "/bin/busybox", "cat", name])
    };
    let first = db_file("/data/first");
    assert_eq!(first.len(), 1, "the db wrote its marker: {first:?}");

    let watch = ContainerWatch::start(&setup.service.project.name, "db");
    let web_watch = ContainerWatch::start(&setup.service.project.name, "web");
    let requests = RequestLoop::start(setup.ports.http, &setup.host);
    for release in 1..=5 {
        setup.service.set_index(&format!("release {release}\n"));
        let (code, _, out) = setup.deploy();
        assert_eq!(code, Some(0), "redeploy {release}: {out}");
        assert!(setup.page().contains(&format!("release {release}")));
    }
    let report = requests.stop();
    let (most_db, samples) = watch.stop();
    let (most_web, _) = web_watch.stop();
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed: {:?}",
        report.failures.len(),
        report.requests,
        &report.failures[..report.failures.len().min(10)]
    );
    assert!(samples > 10, "the watch took {samples} samples");
    // Positive control: the same watch sees the routed service doubled.
    assert_eq!(
        most_web, 2,
        "the routed web service runs twice during a cutover"
    );
    assert_eq!(most_db, 1, "two db containers ran at once");
    assert_eq!(db_file("/data/first"), first, "the volume's data survived");
    assert_eq!(
        db_file("/data/starts").len(),
        6,
        "the db was recreated by each redeploy (its image changed), one at a time"
    );
}

#[test]
fn an_upgraded_connection_stays_open_until_the_old_container_drains() {
    let setup = setup();
    // busybox nc answers an Upgrade with 101 and then echoes; anything else
    // gets a small page.
    setup.service.write(
        "www/upgrade.sh",
        r#"up=""
while read -r line; do
  line=$(echo "$line" | /bin/busybox tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in [Uu]pgrade:*) up=1 ;; esac
done
if [ -n "$up" ]; then
  printf 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n'
  exec /bin/busybox cat
fi
printf 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\n'
/bin/busybox cat /www/index.html
"#,
    );
    let compose = std::fs::read_to_string(setup.service.dir().join("compose.yaml")).unwrap();
    setup.service.write(
        "compose.yaml",
        &compose.replace(
            "    init: true\n",
            "    init: true\n    command: [\"nc\", \"-ll\", \"-p\", \"8080\", \"-e\", \"/bin/busybox\", \"sh\", \"/www/upgrade.sh\"]\n    healthcheck:\n      disable: true\n",
        ).replace(
            "    healthcheck:\n      test: [\"CMD\", \"/bin/busybox\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8080/healthz\"]\n      interval: 1s\n      timeout: 2s\n      retries: 3\n",
            "",
        ),
    );
    setup.service.set_index("one....\n");
    setup.deploy_healthy();
    assert!(setup.page().starts_with("one"));

    let mut tunnel = TcpStream::connect(("127.0.0.1", setup.ports.http)).unwrap();
    tunnel
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    write!(
        tunnel,
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        setup.host
    )
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(tunnel.read(&mut byte).unwrap(), 1, "closed during the 101");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let echo = |tunnel: &mut TcpStream, text: &str| {
        tunnel.write_all(text.as_bytes()).unwrap();
        let mut back = vec![0u8; text.len()];
        tunnel.read_exact(&mut back).unwrap();
        assert_eq!(String::from_utf8_lossy(&back), text);
    };
    echo(&mut tunnel, "before the redeploy\n");

    setup.service.set_index("two....\n");
    let dir = setup.service.dir_arg();
    let mut deploy = cli::spawn(
        &setup.server,
        &setup
            .service
            .deploy_args(&dir, &["--wait", "--timeout", "3m"]),
    );
    let status = deploy.wait_exit(cli::TIMEOUT).unwrap();
    let out = deploy.stdout.text();
    assert_eq!(status.code(), Some(0), "{out}");
    // The tunnel was still open when the route switched: the drain counted it.
    assert!(out.contains("1 upgraded connections in flight"), "{out}");
    // The drain closed it at the end, cleanly (EOF, not a reset).
    let mut rest = Vec::new();
    let read = tunnel.read_to_end(&mut rest);
    assert!(
        matches!(read, Ok(0)),
        "the tunnel ended with {read:?} {rest:?}"
    );
    assert!(setup.page().starts_with("two"));
}

#[test]
fn a_restarted_agent_serves_its_routes_while_the_control_plane_is_down() {
    let mut setup = setup();
    setup.service.set_index("still here\n");
    setup.deploy_healthy();
    setup.server.kill_hard();
    setup.agent.respawn();
    let body = eventually(
        Duration::from_secs(30),
        "the restarted agent to serve the route",
        || match front_door::get(setup.ports.http, &setup.host, "/") {
            Ok((200, body)) => Ok(body),
            Ok((code, body)) => Err(format!("{code}: {body}")),
            Err(err) => Err(err),
        },
    );
    assert!(body.contains("still here"), "{body}");
    assert!(
        setup.agent.process.try_status().is_none(),
        "the agent keeps running without its control plane"
    );
}
