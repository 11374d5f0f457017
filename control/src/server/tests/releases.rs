//! A service's releases: a bundle refused (unsafe, or over the size limit)
//! leaves nothing recorded, a rollback goes to the previous healthy release,
//! and a retired service loses its agents, its join tokens and its place in
//! the lists.

use super::*;

on_both_engines! {
#[tokio::test]
async fn unsafe_bundle_is_refused_and_nothing_is_recorded(db) {
    let server = TestServer::start(&db).await;
    for (bundle, expected) in [
        (bundle_with_symlink(), "bundle rejected"),
        (b"not a tar.gz".to_vec(), "not a valid tar.gz"),
    ] {
        let err = server
            .deploy_with(
                "hello",
                "prod",
                bundle,
                [("LEAK".to_owned(), "v".to_owned())].into(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(expected), "{}", err.message());
    }
    let no_compose = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("README"), "hi").unwrap();
        let mut out = Vec::new();
        launch_core::bundle::pack_dir(dir.path(), &mut out).unwrap();
        out
    };
    let err = server
        .deploy_with("hello", "prod", no_compose, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("no compose file"),
        "{}",
        err.message()
    );

    let bad_name = server
        .deploy_with("Hello", "prod", good_bundle("n"), Default::default())
        .await
        .unwrap_err();
    assert_eq!(bad_name.code(), Code::InvalidArgument);

    let mut control = server.control().await;
    let status = control
        .status(server.admin(StatusRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(status.services.is_empty(), "{:?}", status.services);
    let releases = control
        .list_releases(server.admin(ListReleasesRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .releases;
    assert!(releases.is_empty());
    let secrets = control
        .list_secrets(server.admin(ListSecretsRequest {
            target: Some(target("hello", "prod")),
        }))
        .await
        .unwrap()
        .into_inner()
        .secrets;
    assert!(secrets.is_empty());
    let bundles: Vec<_> = std::fs::read_dir(server.server_dir().join("bundles"))
        .unwrap()
        .collect();
    assert!(bundles.is_empty(), "{bundles:?}");
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn a_small_upload_that_unpacks_large_or_into_many_files_is_still_accepted(db) {
    // Deploy inspects a small upload on its own task within tight limits
    // first; bundles past them must fall back to the full limits, not fail.
    let server = TestServer::start(&db).await;
    let large = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "services:\n  web:\n    image: busybox\n").unwrap();
        std::fs::write(dir.path().join("zeros.bin"), vec![0u8; 2 << 20]).unwrap();
        let mut out = Vec::new();
        launch_core::bundle::pack_dir(dir.path(), &mut out).unwrap();
        out
    };
    let many = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "services:\n  web:\n    image: busybox\n").unwrap();
        for i in 0..1100 {
            std::fs::write(dir.path().join(format!("f{i}")), "x").unwrap();
        }
        let mut out = Vec::new();
        launch_core::bundle::pack_dir(dir.path(), &mut out).unwrap();
        out
    };
    for (name, bundle) in [("large", large), ("many", many)] {
        assert!(bundle.len() < 64 * 1024, "{name}: a small upload ({} bytes)", bundle.len());
        let deployed = server.deploy(&format!("{name}-files"), "prod", bundle).await;
        assert!(!deployed.release_id.is_empty(), "{name}: {deployed:?}");
    }
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn oversized_bundle_is_refused_with_its_size_and_the_limit(db) {
    let server = TestServer::start_with(&db, |config| config.max_bundle_bytes = 1000).await;
    let bundle: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let err = server
        .deploy_with("hello", "prod", bundle, Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("bundle is 5000 bytes, over the limit of 1000:"),
        "{}",
        err.message()
    );
    let bundles: Vec<_> = std::fs::read_dir(server.server_dir().join("bundles"))
        .unwrap()
        .collect();
    assert!(bundles.is_empty(), "{bundles:?}");

    let corrupted = {
        let mut request = vec![DeployRequest {
            msg: Some(deploy_request::Msg::Header(DeployHeader {
                target: Some(target("hello", "prod")),
                git_ref: String::new(),
                secrets: Default::default(),
                bundle_sha256: "00".repeat(32),
                ..Default::default()
            })),
        }];
        request.push(DeployRequest {
            msg: Some(deploy_request::Msg::Chunk(vec![1, 2, 3])),
        });
        server
            .control()
            .await
            .deploy(server.admin(tokio_stream::iter(request)))
            .await
            .unwrap_err()
    };
    assert_eq!(corrupted.code(), Code::InvalidArgument);
    assert!(
        corrupted.message().contains("sha256"),
        "{}",
        corrupted.message()
    );
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn rollback_targets_the_previous_healthy_release(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let mut control = server.control().await;
    let none = control
        .rollback(server.admin(RollbackRequest {
            target: Some(target("hello", "prod")),
            to_release_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::FailedPrecondition, "{none:?}");

    let mut releases = Vec::new();
    for marker in ["1", "2"] {
        let deploy = server.deploy("hello", "prod", good_bundle(marker)).await;
        let mission = session.next_mission().await;
        session.ack(&mission.mission_id).await;
        session
            .update(
                &mission.mission_id,
                MissionState::Healthy,
                &deploy.release_id,
            )
            .await;
        wait_for_state(&server, &deploy.mission_id, MissionState::Healthy).await;
        releases.push(deploy.release_id);
    }
    let rollback = control
        .rollback(server.admin(RollbackRequest {
            target: Some(target("hello", "prod")),
            to_release_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rollback.release_id, releases[0]);
    let mission = session.next_mission().await;
    assert_eq!(mission.mission_id, rollback.mission_id);
    assert_eq!(mission.kind(), MissionKind::Rollback);
    session.ack(&mission.mission_id).await;
    session
        .update(&mission.mission_id, MissionState::Healthy, &releases[0])
        .await;
    wait_for_state(&server, &rollback.mission_id, MissionState::Healthy).await;
    let services = control
        .list_services(server.admin(ListServicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .services;
    assert_eq!(services[0].current_release_id, releases[0]);
    assert_eq!(services[0].agents_connected, 1);

    // A deploy whose health fails and rolls back keeps the previous release current.
    let deploy = server.deploy("hello", "prod", good_bundle("3")).await;
    let mission = session.next_mission().await;
    session.ack(&mission.mission_id).await;
    session
        .update(&mission.mission_id, MissionState::RolledBack, &releases[0])
        .await;
    wait_for_state(&server, &deploy.mission_id, MissionState::RolledBack).await;
    let listed = control
        .list_releases(server.admin(ListReleasesRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .releases;
    assert_eq!(listed[0].release_id, deploy.release_id);
    assert_eq!(listed[0].state(), ReleaseState::RolledBack);
    assert!(
        listed
            .iter()
            .find(|r| r.release_id == releases[0])
            .unwrap()
            .current
    );
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn retired_service_loses_its_agents_and_leaves_the_list(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let unused = server.join_token("hello", "prod").await;
    let queued = server.deploy("hello", "prod", good_bundle("1")).await;
    let mut control = server.control().await;
    let mut watch = control
        .watch_mission(server.admin(WatchMissionRequest {
            mission_id: queued.mission_id.clone(),
            since_seq: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    let retired = control
        .retire_service(server.admin(RetireServiceRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (retired.agents_revoked, retired.join_tokens_revoked),
        (1, 1)
    );
    let ended = tokio::time::timeout(DEADLINE, watch.message())
        .await
        .unwrap()
        .unwrap()
        .and_then(|event| event.event);
    assert!(
        matches!(&ended, Some(mission_event::Event::Update(u)) if u.state() == MissionState::Cancelled),
        "{ended:?}"
    );
    assert_eq!(
        watch.message().await.unwrap(),
        None,
        "the watch ends after the final update"
    );
    let services = control
        .list_services(server.admin(ListServicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .services;
    assert!(services.is_empty(), "{services:?}");
    let releases = control
        .list_releases(server.admin(ListReleasesRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .releases;
    assert!(releases.is_empty(), "{releases:?}");
    let refused = AgentSession::open(&server, &agent_token)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let join = server
        .agents()
        .await
        .register(register_request(&unused, "hello", "prod"))
        .await
        .unwrap_err();
    assert_eq!(join.code(), Code::FailedPrecondition, "{join:?}");
    server.stop().await;
}
}
