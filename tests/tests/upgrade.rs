//! Agent self-upgrade on the real engine, through the re-exec path (the agent
//! is not under systemd here): one server, one agent running from a copy of
//! the built binary (it replaces its own executable), one service answering
//! a request loop throughout. The control plane serves first a working
//! binary that differs from the running one (the build plus a trailing
//! comment, so another sha256), then a broken one (a script that exits 1).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use launch_e2e::poll::eventually;
use launch_e2e::{Agent, Server, Service, binaries, cli};

/// How long a new agent has to reconnect before the watchdog rolls back
/// (a debug build of 200 MB takes seconds to write, exec and start).
const WINDOW: &str = "15s";

fn write_executable(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    // Written beside and renamed: the server may be reading the old file.
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

/// Kills whatever still runs with `needle` in its command line (the old
/// agent the watchdog started after the rollback is no child of the test).
struct KillByCommandLine(String);

impl Drop for KillByCommandLine {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&self.0) {
                // SAFETY: kill(2) of a process running our own temp paths.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn connected_agents(server: &Server, service: &str) -> Vec<(String, bool)> {
    cli::agents(server)
        .iter()
        .filter(|a| {
            a.get("labels")
                .and_then(|l| l.get("service-name"))
                .and_then(|s| s.as_str())
                == Some(service)
        })
        .map(|a| {
            (
                cli::field(a, "agent_id").to_owned(),
                a.get("connected").and_then(|c| c.as_bool()) == Some(true),
            )
        })
        .collect()
}

#[test]
fn an_agent_upgrades_itself_without_stopping_its_service_and_a_broken_binary_is_rolled_back() {
    let temp = tempfile::Builder::new()
        .prefix("launch-e2e-upgrade-")
        .tempdir()
        .unwrap();
    let _cleanup = KillByCommandLine(temp.path().display().to_string());
    let built = std::fs::read(binaries::launch_agent()).expect("read the built launch-agent");
    let exe: PathBuf = temp.path().join("bin").join("launch-agent");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    write_executable(&exe, &built);
    let served = temp.path().join("served-launch-agent");
    let mut newer = built.clone();
    newer.extend_from_slice(b"\n# launch-e2e: another build\n");
    write_executable(&served, &newer);

    let service = Service::quickstart();
    service.set_settle("1s");
    let server = Server::start_with(&["--agent-binary", &served.display().to_string()]);
    let join_token =
        launch_e2e::agent::create_join_token(&server, &service.name, &service.environment);
    let mut agent = Agent::spawn_binary(
        &exe,
        &server,
        &service.name,
        &service.environment,
        &join_token,
        &[("LAUNCH_AGENT_UPGRADE_WINDOW", WINDOW)],
    );
    let agent_id = agent.wait_connected();
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();

    // A request every 20 ms for as long as the agent upgrades, twice.
    let stop = Arc::new(AtomicBool::new(false));
    let port = service.port;
    let requests = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let (mut served, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match launch_e2e::http::get(port, "/") {
                    Ok((200, _)) => served += 1,
                    other => failed.push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (served, failed)
        }
    });

    let upgrade = server.cli(&[
        "agents",
        "upgrade",
        "--service",
        &service.name,
        "--env",
        &service.environment,
    ]);
    upgrade.success();
    assert!(upgrade.stdout.contains("healthy"), "{upgrade}");
    assert_eq!(
        std::fs::read(&exe).unwrap(),
        newer,
        "the agent runs the served binary"
    );
    let mut old = exe.clone().into_os_string();
    old.push(".old");
    assert_eq!(
        std::fs::read(&old).unwrap(),
        built,
        "the old binary is kept"
    );
    assert!(
        agent.process.try_status().is_none(),
        "the agent re-executed in place (same process)"
    );
    assert_eq!(
        connected_agents(&server, &service.name),
        [(agent_id.clone(), true)],
        "the same agent, connected again"
    );

    // A binary that cannot even start: rolled back by the watchdog.
    write_executable(&served, b"#!/bin/sh\nexit 1\n");
    let broken = server.cli(&[
        "agents",
        "upgrade",
        "--service",
        &service.name,
        "--env",
        &service.environment,
    ]);
    broken.expect_code(1);
    assert!(
        broken
            .to_string()
            .contains(&format!("did not reconnect within {WINDOW}")),
        "the host reports the rollback\n{broken}"
    );
    assert_eq!(
        std::fs::read(&exe).unwrap(),
        newer,
        "the previous binary is back"
    );
    eventually(Duration::from_secs(30), "the agent connected again", || {
        let agents = connected_agents(&server, &service.name);
        (agents == [(agent_id.clone(), true)])
            .then_some(())
            .ok_or_else(|| format!("{agents:?}"))
    });

    stop.store(true, Ordering::Relaxed);
    let (served_requests, failed) = requests.join().unwrap();
    assert!(
        served_requests > 50,
        "only {served_requests} requests were made"
    );
    assert!(
        failed.is_empty(),
        "{} failed requests: {failed:?}",
        failed.len()
    );
    drop(agent);
}
