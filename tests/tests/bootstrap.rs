//! Zero-touch bootstrap, proven by booting: the user-data the provider renders
//! passes `cloud-init schema`; the unit `launch-agent install` writes passes
//! `systemd-analyze verify`; the static agent has no dynamic dependency and
//! registers from a `FROM scratch` container resolving the control plane by
//! name; and a Debian host booted with that user-data (systemd, cloud-init,
//! NoCloud seed) installs the agent, registers, takes a deploy, comes back
//! after a reboot as the same agent, and with a used join token says why.

use std::process::Command;
use std::time::{Duration, Instant};

use launch_core::bootstrap::Bootstrap;
use launch_core::labels::Labels;
use launch_e2e::agent::create_join_token;
use launch_e2e::host::{Host, static_agent};
use launch_e2e::poll::{eventually, try_eventually};
use launch_e2e::{Agent, Server, Service, binaries, cli, unique};

fn labels(service: &str, environment: &str) -> Labels {
    Labels::parse(&format!("service-name={service},environment={environment}")).unwrap()
}

fn cloud_init_schema(user_data: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user-data");
    std::fs::write(&path, user_data).unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(&path)
        .output()
        .expect("cloud-init is installed by scripts/setup");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn rendered_user_data_passes_cloud_init_schema() {
    for (url, token, service, env) in [
        ("http://10.0.0.5:7400", "lt_join_0123abcd", "hello", "prod"),
        (
            "https://launch.example.com:7400/",
            "lt_join_with'quote$and`tick",
            "api-v2",
            "staging",
        ),
    ] {
        let labels = labels(service, env);
        let user_data = Bootstrap {
            control_url: url,
            join_token: token,
            labels: &labels,
        }
        .cloud_config();
        let (ok, output) = cloud_init_schema(&user_data);
        assert!(
            ok,
            "cloud-init schema refused the user-data for {service}/{env}:\n{output}\n{user_data}"
        );
    }
    // The check can fail: a broken document is refused.
    let (ok, _) = cloud_init_schema("#cloud-config\nruncmd: 5\n");
    assert!(!ok, "cloud-init schema accepted runcmd: 5");
}

#[test]
fn the_installed_unit_passes_systemd_analyze_verify() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(binaries::launch_agent())
        .args([
            "install",
            "--control-url",
            "http://127.0.0.1:7400",
            "--join-token",
            "lt_join_x",
        ])
        .args([
            "--labels",
            "service-name=hello,environment=prod",
            "--no-start",
            "--root",
        ])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = root.path().join("etc/systemd/system/launch-agent.service");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("launch-agent.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze verify complained:\n{stderr}"
    );
}

#[test]
fn the_static_agent_has_no_dynamic_dependency_and_registers_from_a_scratch_container() {
    let agent = static_agent();
    assert!(
        agent.is_file(),
        "{} is missing: scripts/test builds it with +crt-static",
        agent.display()
    );
    let ldd = Command::new("ldd").arg(&agent).output().unwrap();
    let ldd_text = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        ldd_text.contains("not a dynamic executable") || ldd_text.contains("statically linked"),
        "ldd {}: {ldd_text}",
        agent.display()
    );

    let context = tempfile::tempdir().unwrap();
    std::fs::copy(&agent, context.path().join("launch-agent")).unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY launch-agent /launch-agent\n",
    )
    .unwrap();
    let image = format!("launch-e2e-static-agent:{}", unique::hex(4));
    let build = Command::new("docker")
        .args(["build", "-q", "-t", &image])
        .arg(context.path())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let _cleanup = Cleanup(vec![vec![
        "rmi".into(),
        "-f".into(),
        "--no-prune".into(),
        image.clone(),
    ]]);

    // No libc, no NSS, no /etc/nsswitch.conf: the control plane is found by
    // name through the /etc/hosts entry docker writes.
    let server = Server::start();
    let service = unique::service_name();
    let token = create_join_token(&server, &service, "prod");
    let name = format!("launch-e2e-scratch-{}", unique::hex(4));
    let url = format!("http://launch-control.test:{}", server.addr.port());
    let labels = format!("service-name={service},environment=prod");
    let _container = Cleanup(vec![vec!["rm".into(), "-f".into(), name.clone()]]);
    let run = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "--add-host",
            "launch-control.test:127.0.0.1",
        ])
        .args([
            &image,
            "/launch-agent",
            "run",
            "--ingress",
            "off",
            "--control-url",
            &url,
            "--join-token",
            &token,
            "--labels",
            &labels,
        ])
        .args(["--data-dir", "/data", "--advertise-host", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    eventually(
        Duration::from_secs(30),
        "the scratch agent to register",
        || {
            let logs = Command::new("docker")
                .args(["logs", &name])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&logs.stdout).into_owned()
                + &String::from_utf8_lossy(&logs.stderr);
            if text.contains("launch-agent connected as ") {
                Ok(())
            } else {
                Err(text)
            }
        },
    );
}

/// `docker` commands run on drop.
struct Cleanup(Vec<Vec<String>>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for args in &self.0 {
            let _ = Command::new("docker").args(args).output();
        }
    }
}

fn service_agents(server: &Server, service: &str) -> Vec<serde_json::Value> {
    cli::agents(server)
        .into_iter()
        .filter(|a| a["labels"]["service-name"] == service)
        .collect()
}

fn served_agent() -> String {
    let agent = static_agent();
    let agent = if agent.is_file() {
        agent
    } else {
        binaries::launch_agent()
    };
    agent.display().to_string()
}

#[test]
fn a_host_booted_from_user_data_registers_takes_a_deploy_and_reboots_as_the_same_agent() {
    let service = Service::quickstart();
    let server = Server::start_with(&["--agent-binary", &served_agent()]);
    let token = create_join_token(&server, &service.name, &service.environment);
    let labels = labels(&service.name, &service.environment);
    let user_data = Bootstrap {
        control_url: &server.url(),
        join_token: &token,
        labels: &labels,
    }
    .cloud_config();
    launch_e2e::host::image();

    let booted = Instant::now();
    let host = Host::boot(&user_data);
    let registered = try_eventually(Duration::from_secs(240), || {
        match service_agents(&server, &service.name).as_slice() {
            [one] if one["connected"] == true => {
                Ok(one["agent_id"].as_str().unwrap_or_default().to_owned())
            }
            other => Err(format!("{other:?}")),
        }
    });
    let agent_id = registered.unwrap_or_else(|last| {
        panic!(
            "the host never registered ({last}):\n{}",
            host.diagnostics()
        )
    });
    println!(
        "boot -> registered: {:.1} s",
        booted.elapsed().as_secs_f64()
    );

    assert_eq!(
        host.mode("/etc/launch/agent.toml"),
        "600",
        "{}",
        host.diagnostics()
    );
    assert!(
        host.file("/run/launch-bootstrap.sh").is_none(),
        "the bootstrap script (with the join token) must delete itself"
    );
    let status = host.exec_text(&["cloud-init", "status", "--wait", "--long"]);
    assert!(
        status.contains("status: done"),
        "cloud-init did not finish cleanly:\n{status}"
    );
    let unit_state = host.exec_text(&["systemctl", "is-enabled", "launch-agent"]);
    assert_eq!(unit_state.trim(), "enabled");

    let dir = service.dir_arg();
    let deploy = server.cli(&service.deploy_args(&dir, &["--wait"]));
    assert_eq!(
        deploy.code,
        Some(0),
        "deploy to the booted host failed: {deploy}\n{}",
        host.diagnostics()
    );
    let (code, _) = service.get("/").expect("the service answers");
    assert_eq!(code, 200);

    host.reboot();
    eventually(
        Duration::from_secs(120),
        "the rebooted host's agent to reconnect",
        || match service_agents(&server, &service.name).as_slice() {
            [one] if one["connected"] == true && one["agent_id"] == agent_id.as_str() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let (code, _) = service
        .get("/")
        .expect("the service still answers after the reboot");
    assert_eq!(code, 200);
}

#[test]
fn a_host_booted_with_a_used_join_token_keeps_retrying_and_the_service_says_why() {
    let server = Server::start_with(&["--agent-binary", &served_agent()]);
    let service = unique::service_name();
    let token = create_join_token(&server, &service, "prod");
    // Someone else used the token first.
    let mut first = Agent::spawn(&server, &service, "prod", &token);
    first.wait_connected();
    first.process.kill_hard();

    let labels = labels(&service, "prod");
    let user_data = Bootstrap {
        control_url: &server.url(),
        join_token: &token,
        labels: &labels,
    }
    .cloud_config();
    let host = Host::boot(&user_data);
    let journal = try_eventually(Duration::from_secs(240), || {
        let text = host.exec_text(&["journalctl", "--no-pager", "-u", "launch-agent"]);
        if text.matches("join token was already used").count() >= 2 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .unwrap_or_else(|last| {
        panic!(
            "the agent did not report and retry the used token:\n{last}\n{}",
            host.diagnostics()
        )
    });
    assert!(
        !journal.contains(&token),
        "the join token leaked into the journal"
    );
    let services = server.cli(&["services", "--output", "json"]);
    let entry = cli::list(&services.json(), "services")
        .unwrap_or_default()
        .into_iter()
        .find(|s| s["service"] == service.as_str())
        .expect("the service is listed");
    assert!(
        entry["note"]
            .as_str()
            .unwrap_or_default()
            .contains("join token already used"),
        "{entry}"
    );
    assert_eq!(
        service_agents(&server, &service).len(),
        1,
        "only the first agent may be registered"
    );
}
