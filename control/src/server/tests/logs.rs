//! A mission's log lines from the agent to the readers: stored once per
//! seq and resumed from the last one, ingested from many agents at once
//! without a loss, a finished mission replayed to a watcher, `follow` moving
//! on to the newer mission, and missing lines reported as a gap.

use super::*;

on_both_engines! {
#[tokio::test]
async fn log_lines_are_deduplicated_and_resumable_by_seq(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let deploy = server.deploy("hello", "prod", good_bundle("x")).await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let mission = session.next_mission().await;
    session.ack(&mission.mission_id).await;

    session.logs(&mission.mission_id, 1..=3).await;
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 3);
    session.logs(&mission.mission_id, 2..=5).await;
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 5);

    // A watcher resuming after seq 2 sees 3, 4, 5, then live lines and the final update.
    let mut watch = server
        .control()
        .await
        .watch_mission(server.admin(WatchMissionRequest {
            mission_id: deploy.mission_id.clone(),
            since_seq: 2,
        }))
        .await
        .unwrap()
        .into_inner();
    session.logs(&mission.mission_id, 5..=6).await;
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 6);
    session
        .update(
            &mission.mission_id,
            MissionState::Healthy,
            &deploy.release_id,
        )
        .await;
    let mut seqs = Vec::new();
    let mut final_state = None;
    while let Some(event) = tokio::time::timeout(DEADLINE, watch.next()).await.unwrap() {
        match event.unwrap().event.unwrap() {
            mission_event::Event::Line(line) => seqs.push(line.seq),
            mission_event::Event::Update(update) => final_state = Some(update.state()),
            mission_event::Event::Gap(gap) => panic!("unexpected gap {gap:?}"),
        }
    }
    assert_eq!(seqs, vec![3, 4, 5, 6]);
    assert_eq!(final_state, Some(MissionState::Healthy));

    // Stored exactly once each.
    let logs: Vec<u64> = server
        .stored_logs("")
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.line.unwrap().seq)
        .collect();
    assert_eq!(logs, vec![1, 2, 3, 4, 5, 6]);

    // A reconnecting agent learns where numbering continues.
    drop(session);
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 6);

    // The release is healthy and current.
    let releases = server
        .control()
        .await
        .list_releases(server.admin(ListReleasesRequest {
            target: Some(target("hello", "prod")),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .releases;
    assert_eq!(releases.len(), 1);
    assert!(releases[0].current);
    assert_eq!(releases[0].state(), ReleaseState::Healthy);
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_log_ingest_from_many_agents_loses_nothing(db) {
    let server = TestServer::start(&db).await;
    let mut workers = tokio::task::JoinSet::new();
    for index in 0..4 {
        let service = format!("svc{index}");
        let (_, agent_token) = server.register(&service, "prod").await;
        let deploy = server.deploy(&service, "prod", good_bundle(&service)).await;
        let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
        workers.spawn(async move {
            let mission = session.next_mission().await;
            assert_eq!(mission.mission_id, deploy.mission_id);
            for batch in 0..50u64 {
                session
                    .logs(&mission.mission_id, batch * 20 + 1..=batch * 20 + 20)
                    .await;
            }
            while session.next_log_ack(&mission.mission_id).await < 1000 {}
            mission.mission_id
        });
    }
    let missions = workers.join_all().await;
    for mission_id in missions {
        let seqs: Vec<u64> = server
            .control()
            .await
            .watch_mission(server.admin(WatchMissionRequest {
                mission_id: mission_id.clone(),
                since_seq: 0,
            }))
            .await
            .unwrap()
            .into_inner()
            .take(1000)
            .map(|event| match event.unwrap().event.unwrap() {
                mission_event::Event::Line(line) => line.seq,
                other => panic!("{other:?}"),
            })
            .collect()
            .await;
        assert_eq!(seqs, (1..=1000).collect::<Vec<_>>(), "{mission_id}");
    }
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn watching_a_finished_mission_replays_lines_then_the_final_update(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let deploy = server.deploy("hello", "prod", good_bundle("x")).await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let mission = session.next_mission().await;
    session.ack(&mission.mission_id).await;
    session.logs(&mission.mission_id, 1..=2).await;
    session.logs(&mission.mission_id, 5..=5).await; // 3 and 4 never arrive
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 2);
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 5);
    session
        .update(
            &mission.mission_id,
            MissionState::Failed,
            &deploy.release_id,
        )
        .await;
    wait_for_state(&server, &deploy.mission_id, MissionState::Failed).await;

    let events: Vec<mission_event::Event> = server
        .control()
        .await
        .watch_mission(server.admin(WatchMissionRequest {
            mission_id: deploy.mission_id.clone(),
            since_seq: 0,
        }))
        .await
        .unwrap()
        .into_inner()
        .map(|event| event.unwrap().event.unwrap())
        .collect()
        .await;
    let shown: Vec<String> = events
        .iter()
        .map(|event| match event {
            mission_event::Event::Line(line) => format!("line {}", line.seq),
            mission_event::Event::Gap(gap) => format!("gap {}-{}", gap.from_seq, gap.to_seq),
            mission_event::Event::Update(update) => format!("update {}", update.state().label()),
        })
        .collect();
    assert_eq!(
        shown,
        ["line 1", "line 2", "gap 3-4", "line 5", "update failed"]
    );
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn following_logs_switches_to_the_newer_mission(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let first = server.deploy("hello", "prod", good_bundle("1")).await;
    session.next_mission().await;
    session.ack(&first.mission_id).await;
    session.logs(&first.mission_id, 1..=2).await;
    assert_eq!(session.next_log_ack(&first.mission_id).await, 2);

    let mut follow = server
        .control()
        .await
        .stream_logs(server.admin(StreamLogsRequest {
            target: Some(target("hello", "prod")),
            mission_id: String::new(),
            since_seq: 1,
            follow: true,
        }))
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        let event = tokio::time::timeout(DEADLINE, follow.next())
            .await
            .expect("a log event within the deadline")
            .unwrap()
            .unwrap();
        (event.mission_id, event.line.unwrap().seq)
    };
    assert_eq!(next().await, (first.mission_id.clone(), 2));
    session.logs(&first.mission_id, 3..=3).await;
    assert_eq!(next().await, (first.mission_id.clone(), 3));

    let second = server.deploy("hello", "prod", good_bundle("2")).await;
    session.next_mission().await;
    session.ack(&second.mission_id).await;
    session.logs(&second.mission_id, 1..=1).await;
    assert_eq!(next().await, (second.mission_id.clone(), 1));
    server.stop().await;
}
}

on_both_engines! {
#[tokio::test]
async fn stream_logs_reports_missing_lines_as_a_gap_like_watch_mission(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("hello", "prod").await;
    server.deploy("hello", "prod", good_bundle("x")).await;
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let mission = session.next_mission().await;
    session.ack(&mission.mission_id).await;
    session.logs(&mission.mission_id, 1..=2).await;
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 2);
    let request = |follow| {
        server.admin(StreamLogsRequest {
            target: Some(target("hello", "prod")),
            mission_id: String::new(),
            since_seq: 0,
            follow,
        })
    };
    let mut live = server
        .control()
        .await
        .stream_logs(request(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(log_labels(&mut live, 2).await, ["line 1", "line 2"]);
    // Lines 3 and 4 never arrive (the agent's buffer overflowed).
    session.logs(&mission.mission_id, 5..=6).await;
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 6);
    assert_eq!(
        log_labels(&mut live, 6).await,
        ["gap 3-4", "line 5", "line 6"],
        "a follower is told what it missed"
    );
    let mut stored = server
        .control()
        .await
        .stream_logs(request(false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        log_labels(&mut stored, u64::MAX).await,
        ["line 1", "line 2", "gap 3-4", "line 5", "line 6"],
        "a reader of stored lines is told what is missing"
    );
}
}
