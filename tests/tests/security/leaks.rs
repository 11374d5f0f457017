//! A secret value in no output of any process: not in the CLI's output of
//! a healthy deploy, a rolled-back one or refused inputs, not in a gRPC
//! status, `/metrics` or the logs of the server and the agent, even at debug
//! level; each time the value did reach the host's `.env`, so its absence
//! elsewhere means something.

use launch_e2e::{Agent, CliOutput, Server, Service, cli, grpc, http, unique};

use super::{CONNECT_TIMEOUT, OwnServer, find_env, spawn_agent_logging};

#[test]
fn a_secret_never_reaches_any_log_error_or_metric() {
    let service = Service::quickstart();
    let secret = format!("leak-canary-{}", unique::hex(16));
    let server = Server::start();
    let agent = Agent::start(&server, &service.name, &service.environment);
    let mut outputs: Vec<CliOutput> = Vec::new();

    // A healthy deploy with the secret from the environment.
    let dir = service.dir_arg();
    let deploy = |extra: &[&str]| {
        let args = service.deploy_args(&dir, extra);
        let mut command = cli::command(&server, &args);
        command.env("API_KEY", &secret);
        cli::finish(&args, command, None)
    };
    let ok = deploy(&["--secret-env", "API_KEY", "--wait"]);
    ok.success();
    outputs.push(ok);
    // A deploy that fails its health gate and rolls back.
    service.set_health("/no-such-file", "3s");
    let failed = deploy(&["--secret-env", "API_KEY", "--wait"]);
    failed.expect_code(1);
    outputs.push(failed);
    // Refused inputs that carry the value.
    let bad_key = cli::run_with_stdin(
        &server,
        &[
            "secrets",
            "set",
            &service.name,
            "BAD-KEY",
            "--env",
            &service.environment,
        ],
        &secret,
    );
    assert_ne!(bad_key.code, Some(0), "{bad_key}");
    outputs.push(bad_key);
    let mut wrong_token = cli::command(&server, &["secrets", "set", &service.name, "API_KEY"]);
    wrong_token.env("LAUNCH_TOKEN", "lt_admin_wrong");
    let wrong_token = cli::finish(
        &["secrets", "set"],
        wrong_token,
        Some(secret.clone().into_bytes()),
    );
    wrong_token.expect_code(3);
    outputs.push(wrong_token);
    let no_service = cli::run_with_stdin(
        &server,
        &[
            "secrets",
            "set",
            "no-such-service-x",
            "API_KEY",
            "--env",
            "nowhere",
        ],
        &secret,
    );
    outputs.push(no_service);
    // Directly over gRPC: a refused SetSecret's status must not echo the value.
    let status = grpc::runtime().block_on(async {
        let mut client = grpc::control_client(&server).await;
        client
            .set_secret(grpc::request(
                launch_proto::SetSecretRequest {
                    target: Some(launch_proto::ServiceRef {
                        service: service.name.clone(),
                        environment: service.environment.clone(),
                    }),
                    key: "1-not-a-name".into(),
                    value: secret.clone(),
                },
                &server.admin_token,
            ))
            .await
            .expect_err("an invalid key name was accepted")
    });
    assert!(!format!("{status:?}").contains(&secret), "{status:?}");

    let (code, metrics) = http::get(server.addr.port(), "/metrics").unwrap();
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics.contains("launch_"),
        "is this the metrics page? {metrics}"
    );

    // The value really reached the host, so its absence elsewhere means something.
    let env = find_env(agent.data_dir()).expect("the release has a .env");
    assert!(std::fs::read_to_string(env).unwrap().contains(&secret));

    let mut leaks = Vec::new();
    for out in &outputs {
        if out.to_string().contains(&secret) {
            leaks.push(format!("`launch {}`:\n{out}", out.args.join(" ")));
        }
    }
    for (name, text) in [
        ("server stdout", server.process.stdout.text()),
        ("server stderr", server.process.stderr.text()),
        ("agent stdout", agent.process.stdout.text()),
        ("agent stderr", agent.process.stderr.text()),
        ("/metrics", metrics),
    ] {
        if text.contains(&secret) {
            leaks.push(format!("{name}:\n{text}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "the secret value leaked:\n{}",
        leaks.join("\n\n")
    );
}

#[test]
fn a_secret_never_reaches_the_debug_logs_of_the_server_or_the_agent() {
    let service = Service::from_quickstart(&unique::service_name(), "prod");
    let server = OwnServer::spawn(None, "debug");
    let url = server.url();
    let token = server.cli(
        &url,
        None,
        &[
            "token",
            "create",
            "--service",
            &service.name,
            "--env",
            "prod",
        ],
    );
    token.success();
    let data = tempfile::tempdir().unwrap();
    let agent = spawn_agent_logging(
        &service.name,
        &url,
        None,
        token.stdout.trim(),
        data.path(),
        "debug",
    );
    agent
        .stdout
        .wait_for(CONNECT_TIMEOUT, |l| {
            l.starts_with("launch-agent connected as ")
        })
        .unwrap_or_else(|e| panic!("the agent did not connect: {e}\n{}", agent.stderr.text()));

    let secret = format!("debug-canary-{}", unique::hex(16));
    let dir = service.dir_arg();
    let args = service.deploy_args(&dir, &["--secret-env", "API_KEY", "--wait"]);
    let mut command = server.command(&url, None, &args);
    command.env("API_KEY", &secret);
    let deploy = cli::finish(&args, command, None);
    deploy.success();
    let env = find_env(data.path()).expect("the release has a .env");
    assert!(std::fs::read_to_string(env).unwrap().contains(&secret));
    assert!(
        server.process.stderr.text().contains("DEBUG"),
        "the server does not log at debug level: this test would prove little"
    );

    for (name, text) in [
        ("deploy", deploy.to_string()),
        ("server stdout", server.process.stdout.text()),
        ("server stderr (debug)", server.process.stderr.text()),
        ("agent stdout", agent.stdout.text()),
        ("agent stderr (debug)", agent.stderr.text()),
    ] {
        assert!(
            !text.contains(&secret),
            "the secret value is in the {name}:\n{text}"
        );
    }
}
