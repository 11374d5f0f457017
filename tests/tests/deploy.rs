//! Deploys through the whole path: `launch deploy --wait` returns 0 only once
//! the health gate passed (the URL answers at that instant), streams compose
//! output while it waits; a release that fails its probe exits 1 and is rolled
//! back with the previous release still serving; `launch rollback` moves back
//! one release. The URL a deploy and `status` report is on the address the
//! provider registered for the host.

use launch_e2e::{Agent, Server, Service, cli, grpc};

#[test]
fn deploy_wait_exits_zero_after_the_probe_passes_and_streams_compose_output() {
    let service = Service::quickstart();
    let server = Server::start();
    // The address the provider saw for the host is the URL's host, not the
    // agent's `--advertise-host 127.0.0.1` (nor its kernel hostname).
    grpc::ensure_service(
        &server,
        &service.name,
        &service.environment,
        "",
        "localhost",
    );
    let _agent = Agent::start(&server, &service.name, &service.environment);

    let dir = service.dir_arg();
    let args = service.deploy_args(&dir, &["--wait"]);
    let mut deploy = cli::spawn(&server, &args);
    let first = deploy
        .stdout
        .wait_for(cli::TIMEOUT, |l| l.starts_with("[compose]"))
        .unwrap_or_else(|e| panic!("no `[compose] …` line while waiting: {e}"));
    let still_waiting = deploy.try_status().is_none();
    let status = deploy
        .wait_exit(cli::TIMEOUT)
        .unwrap_or_else(|e| panic!("deploy --wait did not finish: {e}"));
    // No retries: the probe passed before the CLI returned.
    let answer = service.get("/");
    let stdout = deploy.stdout.text();
    let stderr = deploy.stderr.text();
    assert_eq!(
        status.code(),
        Some(0),
        "deploy --wait failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    );
    assert!(
        still_waiting,
        "compose output ({first:?}) arrived only after the command ended"
    );
    let (code, body) = answer.unwrap_or_else(|e| panic!("{} does not answer: {e}", service.url()));
    assert_eq!(code, 200, "GET / after deploy --wait: {body}");
    let url = format!("http://localhost:{}/", service.port);
    assert!(
        stdout.contains(&format!("healthy: {url}")),
        "deploy --wait must end with `healthy: <url>` on the registered address\n{stdout}"
    );
    let status = server.cli(&["status", "--output", "json"]);
    assert!(
        status.stdout.contains(&url),
        "status must show {url}\n{status}"
    );

    let releases = cli::releases(&server, &service.name, &service.environment);
    assert_eq!(releases.len(), 1, "{releases:?}");
    assert_eq!(cli::field(&releases[0], "state"), "healthy", "{releases:?}");
    assert_eq!(releases[0]["current"], true, "{releases:?}");
}

/// Deploys the service's directory with `--wait --output json`; returns the
/// exit code and the final JSON object.
fn deploy_json(server: &Server, service: &Service) -> (Option<i32>, serde_json::Value, String) {
    let dir = service.dir_arg();
    let out = server.cli(&service.deploy_args(&dir, &["--wait", "--output", "json"]));
    let value = out.json();
    (out.code, value, out.to_string())
}

#[test]
fn deploy_rolls_back_when_health_fails_and_rollback_moves_back_one_release() {
    let service = Service::quickstart();
    let server = Server::start();
    let _agent = Agent::start(&server, &service.name, &service.environment);
    let body = |expected: &str| {
        let (code, body) = service
            .get("/")
            .unwrap_or_else(|e| panic!("{} does not answer: {e}", service.url()));
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains(expected),
            "expected {expected:?}, got {body:?}"
        );
    };

    service.set_index("release one\n");
    let (code, one, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(cli::field(&one, "state"), "healthy", "{out}");
    body("release one");

    service.set_index("release two\n");
    let (code, two, out) = deploy_json(&server, &service);
    assert_eq!(code, Some(0), "{out}");
    body("release two");

    // Release three probes a file that does not exist.
    service.set_index("release three\n");
    service.set_health("/no-such-file", "5s");
    let (code, three, out) = deploy_json(&server, &service);
    assert_eq!(
        code,
        Some(1),
        "a release failing its probe must exit 1\n{out}"
    );
    assert_eq!(cli::field(&three, "state"), "rolled_back", "{out}");
    assert!(
        !cli::field(&three, "message").is_empty(),
        "a rolled back deploy must say why\n{out}"
    );
    body("release two");

    let releases = cli::releases(&server, &service.name, &service.environment);
    let ids: Vec<&str> = releases
        .iter()
        .map(|r| cli::field(r, "release_id"))
        .collect();
    let expected = [
        cli::field(&three, "release_id"),
        cli::field(&two, "release_id"),
        cli::field(&one, "release_id"),
    ];
    assert_eq!(ids, expected, "releases newest first: {releases:?}");
    assert_eq!(
        cli::field(&releases[0], "state"),
        "rolled_back",
        "{releases:?}"
    );
    assert_eq!(releases[1]["current"], true, "{releases:?}");

    let out = server.cli(&[
        "rollback",
        &service.name,
        "--env",
        &service.environment,
        "--wait",
        "--timeout",
        "3m",
    ]);
    out.success();
    body("release one");
    let releases = cli::releases(&server, &service.name, &service.environment);
    let current: Vec<&str> = releases
        .iter()
        .filter(|r| r["current"] == true)
        .map(|r| cli::field(r, "release_id"))
        .collect();
    assert_eq!(current, [expected[2]], "after rollback: {releases:?}");
}

#[test]
fn deploy_without_an_agent_waits_and_times_out_with_exit_1() {
    let service = Service::quickstart();
    let server = Server::start();
    let dir = service.dir_arg();
    let out = server.cli(&service.deploy_args(&dir, &["--wait", "--timeout", "2s"]));
    out.expect_code(1);
}
