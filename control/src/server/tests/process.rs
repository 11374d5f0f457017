//! The server as a process: shutdown ends sessions and watchers promptly,
//! HTTP shares the gRPC port, a restart keeps the admin token and the data,
//! and bad config is reported all at once.

use super::*;

on_both_engines! {
#[tokio::test]
async fn shutdown_ends_sessions_and_watchers_promptly(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let deploy = server.deploy("hello", "prod", good_bundle("1")).await;
    session.next_mission().await;
    let mut watch = server
        .control()
        .await
        .watch_mission(server.admin(WatchMissionRequest {
            mission_id: deploy.mission_id.clone(),
            since_seq: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    let mut follow = server
        .control()
        .await
        .stream_logs(server.admin(StreamLogsRequest {
            target: Some(target("hello", "prod")),
            mission_id: String::new(),
            since_seq: 0,
            follow: true,
        }))
        .await
        .unwrap()
        .into_inner();
    let started = tokio::time::Instant::now();
    server.shutdown.cancel();
    let watch_end = tokio::time::timeout(DEADLINE, watch.message())
        .await
        .unwrap();
    assert!(
        matches!(&watch_end, Err(status) if status.code() == Code::Unavailable),
        "{watch_end:?}"
    );
    let follow_end = tokio::time::timeout(DEADLINE, follow.message())
        .await
        .unwrap();
    assert!(follow_end.is_err(), "{follow_end:?}");
    // (A mission may arrive twice around connect; the agent dedupes by id.)
    let session_end = loop {
        match session.next().await {
            Ok(control_message::Msg::Mission(_) | control_message::Msg::LogAck(_)) => continue,
            other => break other,
        }
    };
    assert!(session_end.is_err(), "{session_end:?}");
    tokio::time::timeout(DEADLINE, server.handle)
        .await
        .expect("run returned within the deadline")
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < crate::server::DRAIN_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}
}

on_both_engines! {
#[tokio::test]
async fn http_endpoints_share_the_grpc_port(db) {
    let server = TestServer::start(&db).await;
    let health = http_get(server.addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");
    let metrics = http_get(server.addr, "/metrics").await;
    assert!(metrics.contains("launch_agents_connected 0"), "{metrics}");
    assert!(metrics.contains("launch_deploys_total 0"), "{metrics}");
    // SQLite's group commit of concurrent deploys; PostgreSQL has none.
    assert_eq!(
        metrics.contains("launch_deploy_groups_total 0"),
        matches!(db, TestDb::Sqlite),
        "{metrics}"
    );
    let download = http_get(server.addr, "/v1/agent/download/linux-amd64").await;
    if download.starts_with("HTTP/1.1 404") {
        assert!(download.contains("--agent-binary"), "{download}");
    } else {
        assert!(download.starts_with("HTTP/1.1 200"), "{download}");
    }
    // The CLI is served from the running executable unless told otherwise,
    // with a checksum `sha256sum -c` accepts.
    let cli = http_get(server.addr, "/v1/cli/download/linux-amd64.sha256").await;
    assert!(cli.starts_with("HTTP/1.1 200"), "{cli}");
    let line = cli.rsplit("\r\n\r\n").next().unwrap_or_default();
    let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    use sha2::Digest;
    assert_eq!(
        line,
        format!("{}  launch\n", hex::encode(sha2::Sha256::digest(&exe))),
        "{cli}"
    );
    let unknown = http_get(server.addr, "/nope").await;
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert!(unknown.contains("/healthz"), "{unknown}");
    // gRPC on the same port still works.
    server
        .control()
        .await
        .status(server.admin(StatusRequest {}))
        .await
        .unwrap();
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn restart_keeps_the_admin_token_and_the_data(db) {
    let data_dir = tempfile::tempdir().unwrap();
    let start = |dir: std::path::PathBuf| {
        let db = db.clone();
        async move {
            let shutdown = CancellationToken::new();
            let (ready_tx, ready_rx) = oneshot::channel();
            let handle = tokio::spawn(run(db.config(dir), shutdown.clone(), ready_tx));
            (ready_rx.await.unwrap(), shutdown, handle)
        }
    };
    let (_, shutdown, handle) = start(data_dir.path().to_owned()).await;
    let token = std::fs::read_to_string(data_dir.path().join("admin.token")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data_dir.path().join("admin.token")), 0o600);
        assert_eq!(mode(&data_dir.path().join("secret.key")), 0o600);
    }
    shutdown.cancel();
    handle.await.unwrap().unwrap();
    let (addr, shutdown, handle) = start(data_dir.path().to_owned()).await;
    let token_after = std::fs::read_to_string(data_dir.path().join("admin.token")).unwrap();
    assert_eq!(token, token_after);
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ControlServiceClient::new(channel)
        .status(with_token(StatusRequest {}, token.trim()))
        .await
        .unwrap();
    shutdown.cancel();
    handle.await.unwrap().unwrap();
}
}

#[test]
fn bad_config_is_reported_all_at_once() {
    let flags = ServerFlags {
        listen: "nowhere".into(),
        data_dir: Some("/tmp/x".into()),
        database_url: Some("mysql://launch:hunter2@db/launch".into()),
        database_pool_size: Some(0),
        agent_binary: None,
        cli_binary: None,
        max_bundle_bytes: 1,
        bundle_store: Some("/var/lib/bundles".into()),
        tls_cert: Some("/nonexistent/cert.pem".into()),
        tls_key: Some("/nonexistent/key.pem".into()),
        provider_dir: Some("/nonexistent/providers".into()),
        github: crate::server::github::GithubFlags {
            github_api_url: crate::server::github::DEFAULT_API_URL.into(),
            ..Default::default()
        },
        previews: Default::default(),
        command: None,
    };
    let errors = ServerConfig::from_flags_with(&flags, Some("short"), None).unwrap_err();
    let all = errors.join("\n");
    assert_eq!(errors.len(), 7, "{all}");
    assert!(
        all.contains("--bundle-store \"/var/lib/bundles\" is not s3://BUCKET[/PREFIX]"),
        "{all}"
    );
    assert!(
        all.contains("--provider-dir /nonexistent/providers holds no terraform-provider-launch"),
        "{all}"
    );
    assert!(
        all.contains("cannot read the TLS certificate /nonexistent/cert.pem"),
        "{all}"
    );
    assert!(all.contains("--listen \"nowhere\""), "{all}");
    assert!(
        all.contains("is neither sqlite://PATH nor postgres://"),
        "{all}"
    );
    assert!(!all.contains("hunter2"), "{all}");
    assert!(
        all.contains("--database-pool-size must be above 0"),
        "{all}"
    );
    assert!(
        all.contains("LAUNCH_SECRET_KEY is not base64 of 32 bytes"),
        "{all}"
    );

    let ok = ServerFlags {
        listen: "127.0.0.1:0".into(),
        data_dir: None,
        database_url: None,
        database_pool_size: None,
        agent_binary: None,
        cli_binary: None,
        max_bundle_bytes: 10,
        bundle_store: None,
        tls_cert: None,
        tls_key: None,
        provider_dir: None,
        github: crate::server::github::GithubFlags {
            github_api_url: crate::server::github::DEFAULT_API_URL.into(),
            ..Default::default()
        },
        previews: Default::default(),
        command: None,
    };
    let config = ServerConfig::from_flags_with(&ok, None, Some("/home/u".into())).unwrap();
    assert_eq!(
        config.data_dir,
        Path::new("/home/u/.local/share/launch/server")
    );
    assert_eq!(
        config.database_url,
        "sqlite:///home/u/.local/share/launch/server/launch.db"
    );
    assert_eq!(
        config.bundle_store,
        crate::server::bundle_store::Location::DataDir
    );
    let on_s3 = ServerFlags {
        bundle_store: Some("s3://launch-bundles/prod/".into()),
        ..ok
    };
    let config = ServerConfig::from_flags_with(&on_s3, None, Some("/home/u".into())).unwrap();
    assert_eq!(config.bundle_store.to_string(), "s3://launch-bundles/prod");
}
