//! Agent self-upgrade on the real engine: through the re-exec path (an agent
//! running from a copy of the built binary, which it replaces, its front
//! door handing its listening sockets to the new process), and under
//! systemd on the booted test host (the bootstrap's `/usr/local/bin`
//! binary, restarted by its unit). Each has one server, one agent and one
//! service answering a request loop throughout. The control plane serves first a working
//! binary that differs from the running one (the build plus a trailing
//! comment, so another sha256), then a broken one (a script that exits 1).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use launch_core::bootstrap::Bootstrap;
use launch_core::labels::Labels;
use launch_e2e::host::{Host, static_agent};
use launch_e2e::poll::{eventually, try_eventually};
use launch_e2e::{Agent, Server, Service, binaries, cli, front_door};

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

/// GET / every 20 ms on a thread, counting answers and failures.
struct RequestLoop {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u32, Vec<String>)>,
}

impl RequestLoop {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
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
        RequestLoop { stop, thread }
    }

    /// Stops the loop; fails unless every request was answered (and there were many).
    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let (served, failed) = self.thread.join().unwrap();
        assert!(served > 50, "only {served} requests were made");
        assert!(
            failed.is_empty(),
            "{} failed requests: {failed:?}",
            failed.len()
        );
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

    // Routed by the agent's front door (no host port): requests go through
    // the agent's own listeners, which the re-exec hands over.
    let service = Service::quickstart();
    let host = front_door::host_name(&service);
    front_door::make_routed(&service, &host);
    service.write(
        "launch.toml",
        &format!(
            "name = {:?}\n\n[health]\ntimeout = \"60s\"\nsettle = \"1s\"\n\n[http]\nservice = \"web\"\nport = 8080\nhosts = [{host:?}]\n",
            service.name
        ),
    );
    let ports = front_door::Ports::free();
    let mut env = ports.agent_env();
    env.push(("LAUNCH_AGENT_UPGRADE_WINDOW".into(), WINDOW.into()));
    let server = Server::start_with(&["--agent-binary", &served.display().to_string()]);
    let join_token =
        launch_e2e::agent::create_join_token(&server, &service.name, &service.environment);
    let mut agent = Agent::spawn_binary(
        &exe,
        &server,
        &service.name,
        &service.environment,
        &join_token,
        &front_door::env_refs(&env),
    );
    let agent_id = agent.wait_connected();
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();

    // Steady requests through the front door for as long as the agent
    // upgrades.
    let requests = front_door::RequestLoop::start(ports.http, &host);

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

    let report = requests.stop();
    assert!(
        report.requests > 50,
        "only {} requests were made",
        report.requests
    );
    assert!(
        report.failures.is_empty(),
        "{} of {} requests through the front door failed during the upgrade, first: {:?}",
        report.failures.len(),
        report.requests,
        &report.failures[..report.failures.len().min(5)]
    );

    // A binary that cannot even start: rolled back by the watchdog. (Its
    // front door is down until then: the broken process took the sockets.)
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

    eventually(
        Duration::from_secs(30),
        "the front door answering again",
        || match front_door::get(ports.http, &host, "/") {
            Ok((200, _)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    drop(agent);
}

/// The sha256 of a file inside the host.
fn host_sha256(host: &Host, path: &str) -> String {
    host.exec_text(&["sha256sum", path])
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn under_systemd_an_agent_upgrades_itself_and_a_broken_binary_is_rolled_back() {
    let temp = tempfile::Builder::new()
        .prefix("launch-e2e-upgrade-systemd-")
        .tempdir()
        .unwrap();
    // What the bootstrap installs: the static build when there is one.
    let agent = static_agent();
    let agent = if agent.is_file() {
        agent
    } else {
        binaries::launch_agent()
    };
    let built = std::fs::read(&agent).expect("read launch-agent");
    let served = temp.path().join("served-launch-agent");
    write_executable(&served, &built);
    let service = Service::quickstart();
    service.set_settle("1s");
    let server = Server::start_with(&["--agent-binary", &served.display().to_string()]);
    let token = launch_e2e::agent::create_join_token(&server, &service.name, &service.environment);
    let labels = Labels::parse(&format!(
        "service-name={},environment={}",
        service.name, service.environment
    ))
    .unwrap();
    let user_data = Bootstrap {
        control_url: &server.url(),
        join_token: &token,
        labels: &labels,
    }
    .cloud_config();
    let host = Host::boot(&user_data);
    let connected = |what: &str, id: Option<&str>| {
        try_eventually(Duration::from_secs(240), || {
            match connected_agents(&server, &service.name).as_slice() {
                [(agent_id, true)] if id.is_none_or(|id| id == agent_id) => Ok(agent_id.clone()),
                other => Err(format!("{other:?}")),
            }
        })
        .unwrap_or_else(|last| panic!("{what} ({last}):\n{}", host.diagnostics()))
    };
    let agent_id = connected("the host never registered", None);
    // The upgrade window, for this test, through a drop-in.
    let drop_in = format!(
        "mkdir -p /etc/systemd/system/launch-agent.service.d && printf '[Service]\\nEnvironment=LAUNCH_AGENT_UPGRADE_WINDOW={WINDOW}\\n' > /etc/systemd/system/launch-agent.service.d/window.conf && systemctl daemon-reload && systemctl restart launch-agent"
    );
    let out = host.exec(&["sh", "-c", &drop_in]);
    assert!(out.status.success(), "{}", host.diagnostics());
    connected("the agent after the drop-in", Some(&agent_id));
    let dir = service.dir_arg();
    let deploy = server.cli(&service.deploy_args(&dir, &["--wait"]));
    assert_eq!(deploy.code, Some(0), "{deploy}\n{}", host.diagnostics());
    let requests = RequestLoop::start(service.port);

    let mut newer = built.clone();
    newer.extend_from_slice(b"\n# launch-e2e: another build\n");
    write_executable(&served, &newer);
    let upgrade = server.cli(&[
        "agents",
        "upgrade",
        "--service",
        &service.name,
        "--env",
        &service.environment,
    ]);
    assert_eq!(upgrade.code, Some(0), "{upgrade}\n{}", host.diagnostics());
    let sha = launch_core::bundle::sha256_hex;
    assert_eq!(
        host_sha256(&host, "/usr/local/bin/launch-agent"),
        sha(&newer)
    );
    assert_eq!(
        host_sha256(&host, "/usr/local/bin/launch-agent.old"),
        sha(&built)
    );
    connected("the upgraded agent", Some(&agent_id));

    write_executable(&served, b"#!/bin/sh\nexit 1\n");
    let broken = server.cli(&[
        "agents",
        "upgrade",
        "--service",
        &service.name,
        "--env",
        &service.environment,
    ]);
    assert_eq!(broken.code, Some(1), "{broken}\n{}", host.diagnostics());
    assert!(
        broken
            .to_string()
            .contains(&format!("did not reconnect within {WINDOW}")),
        "the host reports the rollback\n{broken}"
    );
    assert_eq!(
        host_sha256(&host, "/usr/local/bin/launch-agent"),
        sha(&newer)
    );
    connected("the rolled-back agent", Some(&agent_id));
    assert_eq!(
        host.exec_text(&["systemctl", "is-active", "launch-agent"])
            .trim(),
        "active"
    );
    requests.finish();
}
