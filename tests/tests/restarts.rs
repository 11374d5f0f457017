//! Crashes: an agent killed with SIGKILL comes back with its saved token (no
//! second registration), never touched the running service, and receives the
//! mission queued while it was down; a control plane killed with SIGKILL comes
//! back from its data dir with services, releases and every log line (agents
//! resend what was not acknowledged, numbered without gaps); what a container
//! prints while its agent is down arrives once the agent is back.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use launch_e2e::poll::eventually;
use launch_e2e::{Agent, Server, Service, cli};

const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn assert_body(service: &Service, expected: &str) {
    let (code, body) = service
        .get("/")
        .unwrap_or_else(|e| panic!("{} does not answer: {e}", service.url()));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(expected),
        "expected {expected:?}, got {body:?}"
    );
}

#[test]
fn agent_restart_reconnects_without_registering_again_and_runs_missions_queued_meanwhile() {
    let service = Service::quickstart();
    let server = Server::start();
    let mut agent = Agent::start(&server, &service.name, &service.environment);
    let agent_id = agent.agent_id.clone().unwrap();
    let identity = std::fs::read(agent.data_dir().join("agent.json")).expect("agent.json");

    service.set_index("before the crash\n");
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();
    let containers = service.running_containers();
    assert!(!containers.is_empty(), "no running container after deploy");

    agent.kill_hard();
    assert_body(&service, "before the crash");
    assert_eq!(
        service.running_containers(),
        containers,
        "the service changed when its agent died"
    );

    // Queue a deploy while the agent is down.
    service.set_index("queued while down\n");
    let queued = server.cli(&service.deploy_args(&dir, &[]));
    queued.success();
    let (_, release_id) = cli::ids(&format!("{}\n{}", queued.stdout, queued.stderr));
    let release_id = release_id
        .unwrap_or_else(|| panic!("deploy without --wait must print the release id\n{queued}"));
    assert_body(&service, "before the crash");

    let again = agent.restart();
    assert_eq!(again, agent_id, "the restarted agent has a new identity");
    assert_eq!(
        std::fs::read(agent.data_dir().join("agent.json")).unwrap(),
        identity,
        "agent.json changed: the agent registered again"
    );
    let agents = cli::agents(&server);
    let mine: Vec<_> = agents
        .iter()
        .filter(|a| a.to_string().contains(&service.name))
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "one agent expected for the service: {agents:?}"
    );

    eventually(
        RECOVERY_TIMEOUT,
        "the queued release healthy and current",
        || {
            let releases = cli::releases(&server, &service.name, &service.environment);
            releases
                .iter()
                .find(|r| {
                    cli::field(r, "release_id") == release_id
                        && cli::field(r, "state") == "healthy"
                        && r["current"] == true
                })
                .map(|_| ())
                .ok_or_else(|| format!("{releases:?}"))
        },
    );
    assert_body(&service, "queued while down");
}

/// `(mission_id, seq) → text` of every stored line of the service.
fn stored_lines(server: &Server, service: &Service) -> BTreeMap<(String, u64), (i64, String)> {
    cli::log_lines(server, &service.name, &service.environment)
        .into_iter()
        .map(|line| {
            let mission = cli::field(&line, "mission_id").to_owned();
            let seq = line["seq"].as_u64().expect("seq is a number");
            let unix_ms = line["unix_ms"].as_i64().unwrap_or_default();
            let text = cli::field(&line, "text").to_owned();
            ((mission, seq), (unix_ms, text))
        })
        .collect()
}

/// Seqs per mission must run 1, 2, 3, … with nothing missing.
fn gaps(lines: &BTreeMap<(String, u64), (i64, String)>) -> Vec<String> {
    let mut missing = Vec::new();
    let mut expected: BTreeMap<&str, u64> = BTreeMap::new();
    for (mission, seq) in lines.keys() {
        let next = expected.entry(mission).or_insert(1);
        if *seq != *next {
            missing.push(format!("{mission}: expected seq {next}, found {seq}"));
        }
        *next = seq + 1;
    }
    missing
}

#[test]
fn control_plane_restart_keeps_services_releases_and_every_log_line() {
    let service = Service::quickstart();
    let mut server = Server::start();
    let agent = Agent::start(&server, &service.name, &service.environment);
    let agent_id = agent.agent_id.clone().unwrap();
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();
    let _ = service.get("/");
    let releases_before = cli::releases(&server, &service.name, &service.environment);
    let services_before = server.cli(&["services", "--output", "json"]);
    services_before.success();
    assert!(
        services_before.stdout.contains(&service.name),
        "{services_before}"
    );
    let lines_before = stored_lines(&server, &service);
    assert!(
        !lines_before.is_empty(),
        "no stored log lines after a deploy"
    );

    server.kill_hard();
    let down_from = unix_ms();
    // The service keeps answering, and each request is a runtime log line
    // the agent must hold until the control plane is back.
    const REQUESTS: usize = 5;
    for _ in 0..REQUESTS {
        assert_body(&service, "");
    }
    let down_until = unix_ms();
    server.restart();

    eventually(RECOVERY_TIMEOUT, "the agent connected again", || {
        let agents = cli::agents(&server);
        agents
            .iter()
            .find(|a| {
                cli::field(a, "agent_id") == agent_id
                    && a.get("connected").and_then(|c| c.as_bool()) == Some(true)
            })
            .map(|_| ())
            .ok_or_else(|| format!("{agents:?}"))
    });
    let services_after = server.cli(&["services", "--output", "json"]);
    services_after.success();
    assert!(
        services_after.stdout.contains(&service.name),
        "{services_after}"
    );
    let releases_after = cli::releases(&server, &service.name, &service.environment);
    let summary = |releases: &[serde_json::Value]| -> Vec<(String, String)> {
        releases
            .iter()
            .map(|r| {
                (
                    cli::field(r, "release_id").to_owned(),
                    cli::field(r, "state").to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&releases_after), summary(&releases_before));

    let lines_after = eventually(
        RECOVERY_TIMEOUT,
        "the lines logged while the control plane was down",
        || {
            let lines = stored_lines(&server, &service);
            let during = lines
                .values()
                .filter(|(ms, text)| {
                    *ms >= down_from && *ms <= down_until + 1000 && text.contains("response:")
                })
                .count();
            if during >= REQUESTS {
                Ok(lines)
            } else {
                Err(format!(
                    "{during} request lines from the down time stored; {} lines in all",
                    lines.len()
                ))
            }
        },
    );
    for (key, value) in &lines_before {
        assert_eq!(
            lines_after.get(key),
            Some(value),
            "line {key:?} changed or vanished across the restart"
        );
    }
    let missing = gaps(&lines_after);
    assert!(missing.is_empty(), "log lines lost: {missing:?}");
}

/// The test's own requests: they ask for a missing path, so busybox logs them
/// as 404 (the healthcheck and the agent's probe get 200).
fn request_lines(lines: &BTreeMap<(String, u64), (i64, String)>) -> usize {
    lines
        .values()
        .filter(|(_, text)| text.contains("response:404"))
        .count()
}

fn request_missing(service: &Service) {
    let (code, body) = service
        .get("/launch-test-missing")
        .unwrap_or_else(|e| panic!("{} does not answer: {e}", service.url()));
    assert_eq!(code, 404, "{body}");
}

#[test]
fn lines_printed_while_the_agent_is_down_arrive_once_after_it_restarts() {
    let service = Service::quickstart();
    let server = Server::start();
    let mut agent = Agent::start(&server, &service.name, &service.environment);
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();
    request_missing(&service);
    eventually(
        RECOVERY_TIMEOUT,
        "the request made before the crash is stored",
        || {
            let count = request_lines(&stored_lines(&server, &service));
            if count == 1 {
                Ok(())
            } else {
                Err(format!("{count} request lines stored"))
            }
        },
    );
    // The agent saves where it is in each container's output shortly after
    // reading; wait until it saved after the line above was stored.
    let stored_at = SystemTime::now();
    let cursors = agent
        .data_dir()
        .join("services")
        .join(&service.name)
        .join("follow.cursors");
    eventually(
        RECOVERY_TIMEOUT,
        "the agent saved its log cursors",
        || match std::fs::metadata(&cursors).and_then(|m| m.modified()) {
            Ok(saved) if saved > stored_at => Ok(()),
            other => Err(format!("{}: {other:?}", cursors.display())),
        },
    );

    agent.kill_hard();
    const REQUESTS: usize = 5;
    for _ in 0..REQUESTS {
        request_missing(&service);
    }
    // The one from before the crash, and each from while it was down, once.
    const WANT: usize = 1 + REQUESTS;
    agent.restart();

    let after = eventually(
        RECOVERY_TIMEOUT,
        "the requests made while the agent was down are stored",
        || {
            let lines = stored_lines(&server, &service);
            let count = request_lines(&lines);
            if count >= WANT {
                Ok(lines)
            } else {
                Err(format!("{count} request lines stored, want {WANT}"))
            }
        },
    );
    assert_eq!(
        request_lines(&after),
        WANT,
        "a request line arrived twice after the restart"
    );
    let missing = gaps(&after);
    assert!(missing.is_empty(), "log lines lost: {missing:?}");
}
