//! The missions queued or stopped by hand, and agent versions, against an
//! in-process server and a test-driven agent session: cancel (a queued
//! mission here, a dispatched one through its agent), restart with nothing
//! running, agent versions refused at Session open, and `UpgradeAgents`
//! choosing agents by the sha256 of their executable.

use super::*;

fn cancel(mission_id: &str) -> CancelMissionRequest {
    CancelMissionRequest {
        mission_id: mission_id.into(),
    }
}

on_both_engines! {
#[tokio::test]
async fn a_queued_mission_is_cancelled_here_and_a_dispatched_one_by_its_agent(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let mut control = server.control().await;

    // No agent connected: the mission is queued and cancelled at once.
    let queued = server.deploy("hello", "prod", good_bundle("1")).await;
    let info = control
        .cancel_mission(server.admin(cancel(&queued.mission_id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state(), MissionState::Cancelled);
    let again = control
        .cancel_mission(server.admin(cancel(&queued.mission_id)))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again.message().contains("already ended cancelled"),
        "{again:?}"
    );
    let unknown = control
        .cancel_mission(server.admin(cancel("m-unknown")))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // The cancelled mission is not sent to an agent that connects later.
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let running = server.deploy("hello", "prod", good_bundle("2")).await;
    assert_eq!(session.next_mission().await.mission_id, running.mission_id);
    session.ack(&running.mission_id).await;
    wait_for_state(&server, &running.mission_id, MissionState::Running).await;
    let info = control
        .cancel_mission(server.admin(cancel(&running.mission_id)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.state(), MissionState::Running, "the agent decides");
    loop {
        match session.next().await.unwrap() {
            control_message::Msg::Cancel(cancel) => {
                assert_eq!(cancel.mission_id, running.mission_id);
                break;
            }
            control_message::Msg::LogAck(_) => continue,
            other => panic!("expected CancelMission, got {other:?}"),
        }
    }
    session
        .update(&running.mission_id, MissionState::Cancelled, "")
        .await;
    wait_for_state(&server, &running.mission_id, MissionState::Cancelled).await;
    drop(session);

    // Without its agent a running mission cannot be stopped: unreachable.
    let third = server.deploy("hello", "prod", good_bundle("3")).await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    session.next_mission().await;
    session.ack(&third.mission_id).await;
    wait_for_state(&server, &third.mission_id, MissionState::Running).await;
    drop(session);
    let gone = eventually("the agent gone", || async {
        match server
            .control()
            .await
            .cancel_mission(server.admin(cancel(&third.mission_id)))
            .await
        {
            Err(err) if err.code() == Code::Unavailable => Ok(err),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(gone.message().contains("not connected"), "{gone:?}");
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn restart_needs_a_running_release_and_is_dispatched_for_the_current_one(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let mut control = server.control().await;
    let restart = || RestartRequest {
        target: Some(target("hello", "prod")),
    };
    let nothing = control.restart(server.admin(restart())).await.unwrap_err();
    assert_eq!(nothing.code(), Code::FailedPrecondition);
    assert!(nothing.message().contains("deploy it"), "{nothing:?}");

    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let deploy = server.deploy("hello", "prod", good_bundle("1")).await;
    session.next_mission().await;
    session.ack(&deploy.mission_id).await;
    session
        .update(
            &deploy.mission_id,
            MissionState::Healthy,
            &deploy.release_id,
        )
        .await;
    wait_for_state(&server, &deploy.mission_id, MissionState::Healthy).await;
    let queued = control
        .restart(server.admin(restart()))
        .await
        .unwrap()
        .into_inner();
    let mission = session.next_mission().await;
    assert_eq!(mission.mission_id, queued.mission_id);
    assert_eq!(mission.kind(), MissionKind::Restart);
    assert_eq!(mission.release_id, deploy.release_id);
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn an_agent_of_a_version_not_accepted_is_refused_at_session_open_saying_why(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let hello = || Hello {
        version: "9.9.9".into(),
        ..Default::default()
    };
    let refused = AgentSession::open_with(&server, &agent_token, hello(), Some("9.9.9"))
        .await
        .err()
        .expect("a newer agent is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("9.9.9")
            && refused.message().contains("newer than the control plane"),
        "{refused:?}"
    );
    // Positive control: its own version is accepted.
    AgentSession::open_with(
        &server,
        &agent_token,
        hello(),
        Some(env!("CARGO_PKG_VERSION")),
    )
    .await
    .expect("the control plane's own version is accepted");
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn upgrade_goes_to_agents_whose_executable_differs_from_the_served_one(db) {
    // A file no one holds open for writing (exec would fail with ETXTBSY).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("launch-agent");
    std::fs::write(&path, b"#!/bin/sh\necho launch-agent 0.1.7\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let served_sha = launch_core::bundle::sha256_hex(&std::fs::read(&path).unwrap());
    let served_bytes = std::fs::read(&path).unwrap();
    let server = TestServer::start_with(&db, |c| c.agent_binary = Some(path.clone())).await;
    let (old_agent, old_token) = server.register("hello", "prod").await;
    let (_, current_token) = server.register("other", "prod").await;
    let (_, later_token) = server.register("later", "prod").await;
    let hello = |sha: &str| Hello {
        version: "0.1.0".into(),
        agent_sha256: sha.into(),
        ..Default::default()
    };
    let mut old = AgentSession::open_with(&server, &old_token, hello(&"0".repeat(64)), None)
        .await
        .unwrap();
    let _current = AgentSession::open_with(&server, &current_token, hello(&served_sha), None)
        .await
        .unwrap();
    let _later = AgentSession::open_with(&server, &later_token, hello(&"1".repeat(64)), None)
        .await
        .unwrap();
    let mut control = server.control().await;
    let response = eventually("every agent's Hello recorded", || async {
        // Hello is read after Welcome: ask until every session counts.
        let listed = server
            .control()
            .await
            .list_agents(server.admin(ListAgentsRequest {}))
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let connected = listed.agents.iter().filter(|a| a.connected).count();
        (connected == 3)
            .then_some(listed)
            .ok_or_else(|| format!("{connected} connected"))
    })
    .await;
    assert_eq!(
        response.served_version, "0.1.7",
        "from the binary's --version"
    );
    let upgrade = control
        .upgrade_agents(server.admin(UpgradeAgentsRequest {
            canary: 1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(upgrade.sha256, served_sha);
    assert_eq!(
        upgrade.current, 1,
        "the agent on the served binary is left alone"
    );
    assert_eq!(upgrade.deferred, 1, "--canary 1 leaves the other for later");
    assert_eq!(upgrade.upgrades.len(), 1, "{upgrade:?}");
    assert_eq!(upgrade.upgrades[0].agent_id, old_agent);
    let mission = old.next_mission().await;
    assert_eq!(mission.kind(), MissionKind::Upgrade);
    assert_eq!(mission.agent_sha256, served_sha);
    assert_eq!(mission.agent_version, "0.1.7");

    // The binary, by the sha256 the mission names; another sha is refused.
    let mut agents = server.agents().await;
    let mut chunks = agents
        .fetch_agent_binary(with_token(
            FetchAgentBinaryRequest {
                sha256: served_sha.clone(),
            },
            &old_token,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.message().await.unwrap() {
        bytes.extend(chunk.data);
    }
    assert_eq!(bytes, served_bytes);
    let stale = agents
        .fetch_agent_binary(with_token(
            FetchAgentBinaryRequest {
                sha256: "0".repeat(64),
            },
            &old_token,
        ))
        .await
        .expect_err("a sha256 that is not served is refused");
    assert_eq!(stale.code(), Code::FailedPrecondition);

    // Patterns choose the agents.
    let none = control
        .upgrade_agents(server.admin(UpgradeAgentsRequest {
            service: "nothing-*".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(
        none.upgrades.is_empty() && none.current == 0 && none.deferred == 0,
        "{none:?}"
    );
    server.stop().await;
}
}
