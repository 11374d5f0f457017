//! Faults a host can throw at a deploy, each injected for real: no Docker
//! daemon behind the socket, no compose on the machine, a release whose port
//! is already taken, a release that crash-loops. Each ends in a clear mission
//! failure (or a rollback with the previous release serving again), and the
//! agent stays connected, ready for the next mission. And a 30 s network
//! partition between agent and control plane during heavy logging: every
//! line logged meanwhile arrives afterwards, in order, once.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use launch_e2e::agent::create_join_token;
use launch_e2e::poll::eventually;
use launch_e2e::tcp_proxy::TcpProxy;
use launch_e2e::{Agent, Server, Service, cli, unique};

fn deploy_json(server: &Server, service: &Service) -> (Option<i32>, serde_json::Value, String) {
    let dir = service.dir_arg();
    let out =
        server.cli(&service.deploy_args(&dir, &["--wait", "--timeout", "3m", "--output", "json"]));
    let value = out.json();
    (out.code, value, out.to_string())
}

fn still_connected(server: &Server, service: &Service) -> bool {
    cli::agents(server)
        .iter()
        .any(|a| a["labels"]["service-name"] == service.name.as_str() && a["connected"] == true)
}

fn agent_with_env(server: &Server, service: &Service, env: &[(&str, &str)]) -> Agent {
    let token = create_join_token(server, &service.name, &service.environment);
    let mut agent = Agent::spawn_with_env(server, &service.name, &service.environment, &token, env);
    agent.wait_connected();
    agent
}

#[test]
fn a_deploy_to_a_host_whose_docker_daemon_is_down_fails_clearly_and_the_agent_stays() {
    let service = Service::quickstart();
    let server = Server::start();
    let gone = format!("unix:///tmp/launch-e2e-no-docker-{}.sock", unique::hex(4));
    let _agent = agent_with_env(&server, &service, &[("DOCKER_HOST", &gone)]);
    let (code, result, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(cli::field(&result, "state"), "failed", "{out}");
    let message = cli::field(&result, "message").to_lowercase();
    assert!(
        message.contains("docker") || message.contains("daemon"),
        "the failure must name Docker: {out}"
    );
    assert!(
        still_connected(&server, &service),
        "the agent must survive a failed mission"
    );
}

#[test]
fn a_deploy_to_a_host_without_compose_fails_saying_what_to_install() {
    let service = Service::quickstart();
    let server = Server::start();
    // A PATH whose docker has no compose plugin and no docker-compose beside it.
    let bin = tempfile::tempdir().unwrap();
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v docker"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    let wrapper = bin.path().join("docker");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nif [ \"$1\" = compose ]; then echo \"docker: 'compose' is not a docker command.\" >&2; exit 1; fi\nexec {real} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Only that docker on PATH (/bin is /usr/bin on Debian, where docker-compose lives).
    let path = bin.path().display().to_string();
    let _agent = agent_with_env(&server, &service, &[("PATH", &path)]);
    let (code, result, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(1), "{out}");
    let message = cli::field(&result, "message").to_lowercase();
    assert!(
        message.contains("compose"),
        "the failure must say compose is missing: {out}"
    );
    assert!(still_connected(&server, &service));
}

#[test]
fn a_release_whose_port_is_taken_rolls_back_and_the_previous_serves_again() {
    let service = Service::quickstart();
    let server = Server::start();
    let _agent = Agent::start(&server, &service.name, &service.environment);
    service.set_index("release one\n");
    let (code, _, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(0), "{out}");

    // Release two publishes a port someone else holds.
    let squatter = TcpListener::bind("0.0.0.0:0").unwrap();
    let taken = squatter.local_addr().unwrap().port();
    let compose = std::fs::read_to_string(service.dir().join("compose.yaml")).unwrap();
    let published = format!("\"{}:8080\"", service.port);
    assert!(compose.contains(&published), "fixture changed: {compose}");
    service.write(
        "compose.yaml",
        &compose.replace(&published, &format!("\"{taken}:8080\"")),
    );
    service.set_index("release two\n");
    let (code, result, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(cli::field(&result, "state"), "rolled_back", "{out}");
    let (status, body) = service.get("/").expect("the previous release serves again");
    assert_eq!(
        (status, body.contains("release one")),
        (200, true),
        "{body}"
    );
    drop(squatter);
}

#[test]
fn a_crash_looping_release_rolls_back_and_the_previous_serves_again() {
    let service = Service::quickstart();
    let server = Server::start();
    let _agent = Agent::start(&server, &service.name, &service.environment);
    service.set_index("release one\n");
    let (code, _, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(0), "{out}");

    service.set_compose_script("echo starting; exit 3");
    service.set_health("/healthz", "10s");
    let (code, result, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(cli::field(&result, "state"), "rolled_back", "{out}");
    let (status, body) = service.get("/").expect("the previous release serves again");
    assert_eq!(
        (status, body.contains("release one")),
        (200, true),
        "{body}"
    );
    assert!(still_connected(&server, &service));
}

/// Ticks (`tick N`) stored for the service, in the order of their seqs.
fn stored_ticks(server: &Server, service: &Service) -> Vec<u64> {
    let mut lines: Vec<(String, u64, u64)> =
        cli::log_lines(server, &service.name, &service.environment)
            .into_iter()
            .filter_map(|l| {
                let tick = cli::field(&l, "text")
                    .trim()
                    .strip_prefix("tick ")?
                    .parse()
                    .ok()?;
                Some((
                    cli::field(&l, "mission_id").to_owned(),
                    l["seq"].as_u64()?,
                    tick,
                ))
            })
            .collect();
    lines.sort();
    lines.into_iter().map(|(_, _, tick)| tick).collect()
}

#[test]
fn lines_logged_during_a_30_s_partition_arrive_in_order_once_it_heals() {
    let service = Service::quickstart();
    let server = Server::start();
    let proxy = TcpProxy::start(server.addr.port());
    let token = create_join_token(&server, &service.name, &service.environment);
    let mut agent = Agent::spawn_through(&proxy.url(), &service.name, &service.environment, &token);
    agent.wait_connected();
    // A service that logs a numbered line every 10 ms while it serves.
    service.set_compose_script(
        "/bin/busybox httpd -p 8080 -h /www; i=0; while true; do i=$$((i+1)); echo tick $$i; /bin/busybox usleep 10000; done",
    );
    let (code, _, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(0), "{out}");
    eventually(Duration::from_secs(30), "ticks to be stored", || {
        let n = stored_ticks(&server, &service).len();
        if n > 50 {
            Ok(())
        } else {
            Err(format!("{n} ticks"))
        }
    });

    proxy.partition();
    std::thread::sleep(PARTITION);
    let during = stored_ticks(&server, &service).last().copied().unwrap_or(0);
    proxy.heal();
    // The service kept logging: wait for a tick well past the partition.
    let ticks = eventually(
        Duration::from_secs(120),
        "the ticks logged during the partition",
        || {
            let ticks = stored_ticks(&server, &service);
            match ticks.last() {
                Some(last) if *last > during + 1000 => Ok(ticks),
                last => Err(format!(
                    "last stored tick {last:?}, stored before healing: {during}"
                )),
            }
        },
    );
    let first = ticks[0];
    let expected: Vec<u64> = (first..first + ticks.len() as u64).collect();
    assert!(
        ticks == expected,
        "ticks lost, repeated or out of order around the partition (first {first}, {} stored)",
        ticks.len()
    );
    assert_eq!(
        service.get("/").map(|(c, _)| c).ok(),
        Some(200),
        "the service kept serving"
    );
    agent.process.kill_hard();
}

/// How long the agent is cut off from the control plane.
const PARTITION: Duration = Duration::from_secs(30);

/// A release that takes a few seconds to come up, so a process can be killed
/// while its deploy is under way.
fn slow_release(service: &Service, body: &str) {
    service.set_index(body);
    service.set_compose_script(
        "echo warming up; /bin/busybox sleep 4; exec /bin/busybox httpd -f -p 8080 -h /www",
    );
}

/// Waits for the first `[compose]` line `deploy --wait` prints (on stdout in
/// text mode, on stderr with `--output json`).
fn wait_for_compose_output(output: &launch_e2e::process::Captured) {
    output
        .wait_for(Duration::from_secs(60), |l| l.starts_with("[compose]"))
        .unwrap_or_else(|e| panic!("no compose output while waiting: {e}"));
}

#[test]
fn a_deploy_whose_control_plane_is_killed_mid_way_still_ends_healthy_and_the_wait_resumes() {
    let service = Service::quickstart();
    let mut server = Server::start();
    let _agent = Agent::start(&server, &service.name, &service.environment);
    slow_release(&service, "survived\n");
    let dir = service.dir_arg();
    let mut deploy = cli::spawn(
        &server,
        &service.deploy_args(&dir, &["--wait", "--timeout", "3m"]),
    );
    wait_for_compose_output(&deploy.stdout);
    server.kill_hard();
    std::thread::sleep(Duration::from_secs(1));
    server.restart();
    let status = deploy
        .wait_exit(Duration::from_secs(180))
        .expect("deploy --wait ends");
    let (stdout, stderr) = (deploy.stdout.text(), deploy.stderr.text());
    assert_eq!(
        status.code(),
        Some(0),
        "--wait must reconnect and see the outcome\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("healthy:"), "{stdout}");
    let releases = cli::releases(&server, &service.name, &service.environment);
    assert_eq!(cli::field(&releases[0], "state"), "healthy", "{releases:?}");
    let (code, body) = service.get("/").expect("the release serves");
    assert_eq!((code, body.contains("survived")), (200, true), "{body}");
}

#[test]
fn an_agent_killed_mid_deploy_comes_back_on_a_known_release_with_no_half_written_files() {
    let service = Service::quickstart();
    let server = Server::start();
    let mut agent = Agent::start(&server, &service.name, &service.environment);
    service.set_index("release one\n");
    let (code, _, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(0), "{out}");

    slow_release(&service, "release two\n");
    let dir = service.dir_arg();
    let mut deploy = cli::spawn(
        &server,
        &service.deploy_args(&dir, &["--wait", "--timeout", "3m", "--output", "json"]),
    );
    wait_for_compose_output(&deploy.stderr);
    agent.process.kill_hard();
    agent.restart();
    let status = deploy
        .wait_exit(Duration::from_secs(180))
        .expect("deploy --wait ends");
    let stdout = deploy.stdout.text();
    let result: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no final JSON object\n{stdout}\n{}", deploy.stderr.text()));
    let state = cli::field(&result, "state").to_owned();
    assert!(
        ["healthy", "failed", "rolled_back"].contains(&state.as_str()),
        "the interrupted mission must end in a final state, not {state:?}: {result}"
    );
    assert_eq!(
        status.code(),
        Some(if state == "healthy" { 0 } else { 1 }),
        "{result}"
    );

    // Whatever the outcome, the host is on one complete release.
    let releases = cli::releases(&server, &service.name, &service.environment);
    let current: Vec<&serde_json::Value> =
        releases.iter().filter(|r| r["current"] == true).collect();
    assert_eq!(current.len(), 1, "{releases:?}");
    let current_id = cli::field(current[0], "release_id");
    let service_dir = agent.data_dir().join("services").join(&service.name);
    let link = std::fs::read_link(service_dir.join("current")).expect("a current release link");
    assert!(
        link.to_string_lossy().ends_with(current_id),
        "current -> {} but the control plane says {current_id}",
        link.display()
    );
    let release_dir = service_dir.join("releases").join(current_id);
    assert!(
        release_dir.join("compose.yaml").is_file(),
        "the current release is incomplete"
    );
    let env =
        std::fs::metadata(release_dir.join(".env")).expect("the current release has its .env");
    assert_eq!(env.permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<String> = std::fs::read_dir(service_dir.join("releases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp") || n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-written release dirs left: {leftovers:?}"
    );
    let (code, body) = service.get("/").expect("the current release serves");
    let want = if current_id == cli::field(&result, "release_id") {
        "release two"
    } else {
        "release one"
    };
    assert_eq!((code, body.contains(want)), (200, true), "{body}");
}
