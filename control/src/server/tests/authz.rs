//! Who may call what, over the wire: every ControlService RPC refused
//! without a token, with a wrong one and with an agent's, and an agent that
//! never gets another service's bundle or missions, nor moves them with its
//! reports.

use super::*;

on_both_engines! {
#[tokio::test]
async fn every_control_rpc_refuses_missing_wrong_and_agent_tokens(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let mut control = server.control().await;
    for (token, expected) in [
        (None, Code::Unauthenticated),
        (Some("lt_admin_wrong"), Code::Unauthenticated),
        (Some(agent_token.as_str()), Code::PermissionDenied),
    ] {
        fn req<T>(message: T, token: Option<&str>) -> Request<T> {
            match token {
                Some(token) => with_token(message, token),
                None => Request::new(message),
            }
        }
        let t = || Some(target("hello", "prod"));
        let codes: Vec<(&str, Code)> = vec![
            (
                "Deploy",
                control
                    .deploy(req(tokio_stream::iter(Vec::<DeployRequest>::new()), token))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "Rollback",
                control
                    .rollback(req(
                        RollbackRequest {
                            target: t(),
                            to_release_id: String::new(),
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "GetMission",
                control
                    .get_mission(req(
                        GetMissionRequest {
                            mission_id: "m-x".into(),
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "WatchMission",
                control
                    .watch_mission(req(
                        WatchMissionRequest {
                            mission_id: "m-x".into(),
                            since_seq: 0,
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "StreamLogs",
                control
                    .stream_logs(req(
                        StreamLogsRequest {
                            target: t(),
                            mission_id: String::new(),
                            since_seq: 0,
                            follow: false,
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "Status",
                control
                    .status(req(StatusRequest {}, token))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "ListServices",
                control
                    .list_services(req(ListServicesRequest::default(), token))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "EnsureService",
                control
                    .ensure_service(req(
                        EnsureServiceRequest {
                            target: t(),
                            ..Default::default()
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "RetireService",
                control
                    .retire_service(req(
                        RetireServiceRequest {
                            target: t(),
                            ..Default::default()
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "ListReleases",
                control
                    .list_releases(req(
                        ListReleasesRequest {
                            target: t(),
                            ..Default::default()
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "ListAgents",
                control
                    .list_agents(req(ListAgentsRequest {}, token))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "RevokeAgent",
                control
                    .revoke_agent(req(
                        RevokeAgentRequest {
                            agent_id: "a-x".into(),
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "CreateJoinToken",
                control
                    .create_join_token(req(
                        CreateJoinTokenRequest {
                            target: t(),
                            ttl_secs: 0,
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "RevokeJoinToken",
                control
                    .revoke_join_token(req(
                        RevokeJoinTokenRequest {
                            join_token_id: "j-x".into(),
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "SetSecret",
                control
                    .set_secret(req(
                        SetSecretRequest {
                            target: t(),
                            key: "K".into(),
                            value: "v".into(),
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "ListSecrets",
                control
                    .list_secrets(req(ListSecretsRequest { target: t() }, token))
                    .await
                    .unwrap_err()
                    .code(),
            ),
            (
                "DeleteSecret",
                control
                    .delete_secret(req(
                        DeleteSecretRequest {
                            target: t(),
                            key: "K".into(),
                        },
                        token,
                    ))
                    .await
                    .unwrap_err()
                    .code(),
            ),
        ];
        for (rpc, code) in codes {
            assert_eq!(code, expected, "{rpc} with token {token:?}");
        }
    }
    let err = control
        .status(Request::new(StatusRequest {}))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("pass --token or set LAUNCH_TOKEN")
            && err.message().contains("admin.token"),
        "{}",
        err.message()
    );
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn agent_never_gets_another_services_bundle_or_missions(db) {
    let server = TestServer::start(&db).await;
    let (_, token_a) = server.register("alpha", "prod").await;
    let (_, token_b) = server.register("beta", "prod").await;
    let mut session_a = AgentSession::open(&server, &token_a).await.unwrap();
    let mut session_b = AgentSession::open(&server, &token_b).await.unwrap();

    let deploy_b = server.deploy("beta", "prod", good_bundle("b")).await;
    let mission_b = session_b.next_mission().await;
    assert_eq!(mission_b.mission_id, deploy_b.mission_id);
    assert_eq!(mission_b.service, "beta");

    let refused = server
        .agents()
        .await
        .fetch_bundle(with_token(
            FetchBundleRequest {
                release_id: deploy_b.release_id.clone(),
            },
            &token_a,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // B's own agent gets the exact bundle.
    let mut chunks = server
        .agents()
        .await
        .fetch_bundle(with_token(
            FetchBundleRequest {
                release_id: deploy_b.release_id.clone(),
            },
            &token_b,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut fetched = Vec::new();
    while let Some(chunk) = chunks.next().await {
        fetched.extend(chunk.unwrap().data);
    }
    assert_eq!(
        launch_core::bundle::sha256_hex(&fetched),
        mission_b.bundle_sha256
    );

    // A's next mission is its own, not B's.
    let deploy_a = server.deploy("alpha", "prod", good_bundle("a")).await;
    let mission_a = session_a.next_mission().await;
    assert_eq!(mission_a.mission_id, deploy_a.mission_id);
    assert_eq!(mission_a.service, "alpha");

    // Reports on B's mission from A's agent are ignored.
    session_a
        .update(&deploy_b.mission_id, MissionState::Failed, "")
        .await;
    session_a.logs(&deploy_b.mission_id, 1..=1).await;
    session_a.ack(&deploy_a.mission_id).await;
    wait_for_state(&server, &deploy_a.mission_id, MissionState::Running).await;
    assert_eq!(
        server.mission(&deploy_b.mission_id).await.state(),
        MissionState::Dispatched
    );
    server.stop().await;
}
}
