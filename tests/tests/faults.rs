//! Faults a host can throw at a deploy, each injected for real: no Docker
//! daemon behind the socket, no compose on the machine, a release whose port
//! is already taken, a release that crash-loops. Each ends in a clear mission
//! failure (or a rollback with the previous release serving again), and the
//! agent stays connected, ready for the next mission.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use launch_e2e::agent::create_join_token;
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
