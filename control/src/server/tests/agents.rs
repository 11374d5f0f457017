//! Agents joining and staying joined, against an in-process server and a
//! test-driven agent session: a join token used once (the service's note
//! says why another host was refused) or refused once expired, a mission
//! delivered again on each reconnect until its agent acknowledges it, and a
//! revoked agent disconnected and refused.

use super::*;

on_both_engines! {
#[tokio::test]
async fn join_token_is_single_use_and_the_service_note_says_why(db) {
    let server = TestServer::start(&db).await;
    let join_token = server.join_token("hello", "prod").await;
    let mut agents = server.agents().await;
    let first = agents
        .register(register_request(&join_token, "hello", "prod"))
        .await
        .unwrap()
        .into_inner();
    assert!(first.agent_id.starts_with("a-"), "{}", first.agent_id);
    assert!(first.agent_token.starts_with("lt_agent_"));

    let again = agents
        .register(register_request(&join_token, "hello", "prod"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    assert!(
        again.message().contains("join token was already used")
            && again
                .message()
                .contains("launch token create --service hello --env prod"),
        "{}",
        again.message()
    );
    let services = server
        .control()
        .await
        .list_services(server.admin(ListServicesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .services;
    assert_eq!(services.len(), 1);
    assert!(
        services[0].note.contains("join token already used") && services[0].note.contains("host-1"),
        "{}",
        services[0].note
    );

    let unknown = agents
        .register(register_request("lt_join_nope", "hello", "prod"))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);

    let other_labels = server.join_token("hello", "prod").await;
    let mismatch = agents
        .register(register_request(&other_labels, "hello", "staging"))
        .await
        .unwrap_err();
    assert_eq!(mismatch.code(), Code::PermissionDenied, "{mismatch:?}");
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn expired_join_token_is_refused_with_when_it_expired(db) {
    let server = TestServer::start(&db).await;
    let store = server.store().await;
    let join_token = tokens::mint(tokens::JOIN_PREFIX);
    store
        .insert_join_token(
            &tokens::new_id("j"),
            &tokens::hash(&join_token),
            "hello",
            "prod",
            store::now_ms() - 1000,
        )
        .await
        .unwrap();
    let err = server
        .agents()
        .await
        .register(register_request(&join_token, "hello", "prod"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().starts_with("join token expired at ")
            && err.message().contains("create a new one"),
        "{}",
        err.message()
    );
    store.close().await;
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn mission_is_redelivered_on_reconnect_until_acked(db) {
    let server = TestServer::start(&db).await;
    let (agent_id, agent_token) = server.register("hello", "prod").await;
    let first = server.deploy("hello", "prod", good_bundle("1")).await;
    assert_eq!(
        server.mission(&first.mission_id).await.state(),
        MissionState::Queued
    );

    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    assert_eq!(session.next_mission().await.mission_id, first.mission_id);
    wait_for_state(&server, &first.mission_id, MissionState::Dispatched).await;
    drop(session);

    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let again = session.next_mission().await;
    assert_eq!(again.mission_id, first.mission_id);
    session.ack(&first.mission_id).await;
    wait_for_state(&server, &first.mission_id, MissionState::Running).await;
    assert_eq!(server.mission(&first.mission_id).await.agent_id, agent_id);
    drop(session);

    // Acked: the next connection gets only the newer mission.
    let second = server.deploy("hello", "prod", good_bundle("2")).await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    assert_eq!(session.next_mission().await.mission_id, second.mission_id);
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn revoked_agent_is_disconnected_and_refused(db) {
    let server = TestServer::start(&db).await;
    let (agent_id, agent_token) = server.register("hello", "prod").await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let mut control = server.control().await;
    eventually("agent listed as connected", || {
        let mut control = control.clone();
        let admin = server.admin(ListAgentsRequest {});
        async move {
            let agents = control
                .list_agents(admin)
                .await
                .unwrap()
                .into_inner()
                .agents;
            match agents.first() {
                Some(agent) if agent.connected => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    control
        .revoke_agent(server.admin(RevokeAgentRequest {
            agent_id: agent_id.clone(),
        }))
        .await
        .unwrap();
    let ended = session.next().await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    let refused = AgentSession::open(&server, &agent_token)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("agent token revoked"),
        "{}",
        refused.message()
    );
    server.stop().await;
}
}
