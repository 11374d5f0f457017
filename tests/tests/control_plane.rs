//! The control plane as a process: its HTTP endpoints, its files' modes, its
//! refusal of bad configuration, and the CLI's exit code 3 when it cannot
//! reach it or is not allowed in.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use launch_e2e::server::SCRUBBED_ENV;
use launch_e2e::{Server, binaries, cli, http, unique};

#[test]
fn server_serves_healthz_metrics_and_the_agent_binary() {
    let server = Server::start();
    let port = server.addr.port();
    let (code, body) = http::get(port, "/healthz").expect("GET /healthz");
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = http::get(port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("launch_agents_connected"), "{body}");
    // `launch-agent` is built beside `launch`, so the server finds and serves it.
    let (code, body) =
        http::get(port, "/v1/agent/download/linux-amd64.sha256").expect("GET sha256");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.split_whitespace()
            .next()
            .is_some_and(|h| h.len() == 64),
        "not a sha256: {body:?}"
    );
}

#[test]
fn server_keeps_its_tokens_and_keys_private() {
    let server = Server::start();
    let mode = |name: &str| {
        let path = server.data_dir().join(name);
        std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert!(server.admin_token.starts_with("lt_admin_"));
    assert_eq!(mode("admin.token"), 0o600);
    assert_eq!(mode("secret.key"), 0o600);
    assert_eq!(mode(""), 0o700, "the data dir must be 0700");
}

#[test]
fn server_refuses_a_database_url_of_another_engine_with_exit_64_before_binding() {
    let temp = tempfile::tempdir().unwrap();
    let mut command = Command::new(binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    let out = command
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(temp.path().join("data"))
        .args(["--database-url", "mysql://launch:hunter2@localhost/launch"])
        .output()
        .expect("run launch server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("sqlite://") && stderr.contains("postgres://"),
        "say what is supported: {stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password reached stderr: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "it bound a port with a bad config"
    );
}

#[test]
fn two_server_processes_on_one_postgres_database_serve_the_same_state() {
    let cluster = launch_e2e::postgres::Cluster::start();
    let url = cluster.new_database();
    let first = Server::start_with(&["--database-url", &url]);
    let second = Server::start_replica(&first).expect("a second replica starts");
    let created = first.cli(&["token", "create", "--name", "ci-read", "--scope", "read"]);
    created.success();
    let listed = second.cli(&["token", "list", "--output", "json"]);
    listed.success();
    assert!(listed.stdout.contains("ci-read"), "{listed}");

    // A replica with a key of its own refuses to start, naming the key.
    let (status, out) = launch_e2e::server::run_refused(
        &["--database-url", &url],
        &[],
        std::time::Duration::from_secs(30),
        "a replica with another secret key",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("every replica needs the same key") && stderr.contains("secret.key"),
        "{stderr}"
    );
}

#[test]
fn cli_exits_3_when_the_control_plane_is_unreachable_or_the_token_is_wrong() {
    let server = Server::start();
    let nobody = format!("http://127.0.0.1:{}", unique::free_port());
    let mut command = cli::command(&server, &["services"]);
    command.env("LAUNCH_ADDR", &nobody);
    let out = cli::finish(&["services"], command, None);
    out.expect_code(3);
    assert!(
        out.stderr.contains("error:") && out.stderr.contains("LAUNCH_ADDR"),
        "say how to point the CLI at a server\n{out}"
    );

    let mut command = cli::command(&server, &["services"]);
    command.env("LAUNCH_TOKEN", "lt_admin_wrong");
    let out = cli::finish(&["services"], command, None);
    out.expect_code(3);
    assert!(
        out.stderr.contains("admin.token"),
        "say where the token is\n{out}"
    );

    server.cli(&["services"]).success();
}
