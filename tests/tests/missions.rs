//! The missions an operator starts or stops by hand, on one server, agent
//! and service: `launch restart` restarts the running containers;
//! `launch cancel` stops a deploy stuck in its health gate and the release
//! that ran before it serves again; cancelling what already ended or does
//! not exist is bad input (exit 2); `launch retire` takes the service down.

use std::time::Duration;

use launch_e2e::poll::eventually;
use launch_e2e::{Agent, Server, Service, cli};

const TIMEOUT: Duration = Duration::from_secs(90);

fn started_at(container: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.StartedAt}}", container])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn restart_cancel_and_retire_through_the_cli() {
    let service = Service::quickstart();
    service.set_index("one");
    service.set_settle("1s");
    let server = Server::start();
    let _agent = Agent::start(&server, &service.name, &service.environment);
    let dir = service.dir_arg();
    let env = service.environment.as_str();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();

    // Restart: the same container, started again, still serving.
    let container = service.running_containers().pop().expect("a container");
    let before = started_at(&container);
    server
        .cli(&["restart", &service.name, "--env", env, "--wait"])
        .success();
    assert_eq!(
        service.running_containers(),
        std::slice::from_ref(&container)
    );
    assert_ne!(
        started_at(&container),
        before,
        "the container was not restarted"
    );
    assert_eq!(service.get("/").map(|(_, body)| body), Ok("one".to_owned()));

    // A deploy whose container never answers waits in its health gate (5 min).
    service.set_index("two");
    service.set_compose_script("exec /bin/busybox sleep 600");
    service.set_health("/healthz", "5m");
    let queued = server.cli(&service.deploy_args(&dir, &[]));
    queued.success();
    let (mission, _) = cli::ids(&queued.stdout);
    let mission = mission.unwrap_or_else(|| panic!("no mission id\n{queued}"));
    eventually(TIMEOUT, "the slow release starting", || {
        let lines = cli::log_lines(&server, &service.name, env);
        let texts: Vec<&str> = lines.iter().map(|l| cli::field(l, "text")).collect();
        texts
            .iter()
            .any(|t| t.contains("starting new release"))
            .then_some(())
            .ok_or_else(|| format!("{texts:?}"))
    });
    let cancel = server.cli(&["cancel", &mission]);
    cancel.success();
    assert!(cancel.stdout.contains("cancelled"), "{cancel}");
    eventually(TIMEOUT, "the previous release serving", || {
        match service.get("/") {
            Ok((200, body)) if body == "one" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let releases = cli::releases(&server, &service.name, env);
    let current: Vec<&serde_json::Value> = releases
        .iter()
        .filter(|r| r.get("current").and_then(|c| c.as_bool()) == Some(true))
        .collect();
    assert_eq!(current.len(), 1, "{releases:?}");
    assert_ne!(
        cli::field(current[0], "release_id"),
        cli::ids(&queued.stdout).1.unwrap_or_default(),
        "the cancelled release is not current: {releases:?}"
    );

    // Nothing left to cancel: exit 2, saying why.
    let again = server.cli(&["cancel", &mission]);
    again.expect_code(2);
    assert!(again.stderr.contains("already ended cancelled"), "{again}");
    server
        .cli(&["cancel", "m-01JZZZZZZZZZZZZZZZZZZZZZZZ"])
        .expect_code(2);

    // Retire: the containers go; the service stays known.
    server
        .cli(&["retire", &service.name, "--env", env, "--wait"])
        .success();
    assert!(service.running_containers().is_empty());
    assert!(service.get("/").is_err(), "the service still answers");
}
