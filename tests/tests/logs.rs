//! Logs after a deploy: `launch logs -f` keeps showing the containers' runtime
//! lines, and a secret the container prints never appears in clear — not in
//! the CLI, not in the control plane's store, not in the agent's own logs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use launch_e2e::poll::eventually;
use launch_e2e::{Agent, Server, Service, cli, unique};

const FOLLOW_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn logs_follow_shows_runtime_lines_of_the_running_release() {
    let service = Service::quickstart();
    let server = Server::start();
    let _agent = Agent::start(&server, &service.name, &service.environment);
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();

    let follow = cli::spawn(
        &server,
        &["logs", &service.name, "--env", &service.environment, "-f"],
    );
    // busybox httpd -v logs every request as `<ip>:<port>: response:<code>`.
    let line = eventually(FOLLOW_TIMEOUT, "a runtime line in `launch logs -f`", || {
        let _ = service.get("/");
        follow
            .stdout
            .lines()
            .into_iter()
            .find(|l| l.contains("response:") && !l.starts_with("[compose]"))
            .ok_or_else(|| follow.stdout.text())
    });
    assert!(
        line.starts_with('['),
        "lines print as `[source] text`: {line:?}"
    );
}

/// The files under `dir` named `name`, each with its permission bits.
fn files_named(dir: &Path, name: &str, out: &mut Vec<(String, u32)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            files_named(&path, name, out);
        } else if entry.file_name() == name {
            out.push((
                path.display().to_string(),
                meta.permissions().mode() & 0o777,
            ));
        }
    }
}

#[test]
fn secret_values_are_redacted_in_the_cli_the_store_and_the_agent_logs() {
    let service = Service::quickstart();
    service.set_compose_script(
        "while true; do echo \"the secret is $$API_KEY\"; /bin/busybox sleep 1; done & \
         exec /bin/busybox httpd -f -v -p 8080 -h /www",
    );
    let secret = format!("s3cr3t-{}", unique::hex(8));
    let server = Server::start();
    let agent = Agent::start(&server, &service.name, &service.environment);

    let set = cli::run_with_stdin(
        &server,
        &[
            "secrets",
            "set",
            &service.name,
            "API_KEY",
            "--env",
            &service.environment,
        ],
        &format!("{secret}\n"),
    );
    set.success();
    assert!(
        !set.to_string().contains(&secret),
        "secrets set echoed the value\n{set}"
    );
    let list = server.cli(&[
        "secrets",
        "list",
        &service.name,
        "--env",
        &service.environment,
    ]);
    list.success();
    assert!(list.stdout.contains("API_KEY"), "{list}");
    assert!(
        !list.to_string().contains(&secret),
        "secrets list shows the value\n{list}"
    );

    let dir = service.dir_arg();
    let deploy = server.cli(&service.deploy_args(&dir, &["--wait"]));
    deploy.success();
    assert!(
        !deploy.to_string().contains(&secret),
        "deploy printed the secret\n{deploy}"
    );

    // The container really prints the value (or this test proves nothing).
    eventually(FOLLOW_TIMEOUT, "the container printing the secret", || {
        let containers = service.running_containers();
        let logs = containers
            .first()
            .map(|id| {
                let out = std::process::Command::new("docker")
                    .args(["logs", id])
                    .output()
                    .expect("docker logs");
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .unwrap_or_default();
        if logs.contains(&format!("the secret is {secret}")) {
            Ok(())
        } else {
            Err(format!("containers {containers:?}, logs: {logs}"))
        }
    });

    // CLI: the line arrives redacted.
    let follow = cli::spawn(
        &server,
        &["logs", &service.name, "--env", &service.environment, "-f"],
    );
    follow
        .stdout
        .wait_for(FOLLOW_TIMEOUT, |l| l.contains("the secret is [REDACTED]"))
        .unwrap_or_else(|e| panic!("no redacted secret line in `launch logs -f`: {e}"));
    assert!(
        !follow.stdout.text().contains(&secret),
        "`launch logs -f` shows the secret value"
    );
    let stored = server.cli(&["logs", &service.name, "--env", &service.environment]);
    stored.success();
    assert!(stored.stdout.contains("[REDACTED]"), "{stored}");
    assert!(
        !stored.to_string().contains(&secret),
        "`launch logs` shows the secret value"
    );

    // Store: neither the database nor its WAL holds the value in clear.
    let bytes = server.store_bytes();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(service.name.as_bytes()),
        "the service is not in the store files: are these the right files?"
    );
    assert!(
        !contains(secret.as_bytes()),
        "the store holds the secret value in clear"
    );

    // Agent: its own logs never show the value; its .env files are 0600.
    assert!(
        !agent.stderr().contains(&secret),
        "the agent logged the secret value"
    );
    let mut env_files = Vec::new();
    files_named(agent.data_dir(), ".env", &mut env_files);
    // Positive control: the walk found the release's .env at all.
    assert!(
        !env_files.is_empty(),
        "no .env under {}: the walk checked nothing",
        agent.data_dir().display()
    );
    let loose: Vec<_> = env_files
        .iter()
        .filter(|(_, mode)| *mode != 0o600)
        .collect();
    assert!(loose.is_empty(), ".env files must be 0600: {loose:?}");
}
