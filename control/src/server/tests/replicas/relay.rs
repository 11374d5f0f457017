//! Log lines and mission updates stored by one replica reach the watchers
//! (`WatchMission`, `StreamLogs`) on another, by notification or, when none
//! came, by the periodic check: every line once, in order, then the final
//! state.

use super::*;

/// Everything a WatchMission stream carries until it ends, as `line N`,
/// `gap A-B` and `update STATE` labels.
pub(super) async fn watch_labels(stream: &mut Streaming<MissionEvent>) -> Vec<String> {
    let mut labels = Vec::new();
    loop {
        let event = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("no mission event within {DEADLINE:?}; so far {labels:?}"))
            .unwrap();
        let Some(event) = event else { return labels };
        labels.push(match event.event.unwrap() {
            mission_event::Event::Line(line) => format!("line {}", line.seq),
            mission_event::Event::Gap(gap) => format!("gap {}-{}", gap.from_seq, gap.to_seq),
            mission_event::Event::Update(update) => format!("update {}", update.state().label()),
        });
    }
}

pub(super) fn line_labels(seqs: impl IntoIterator<Item = u64>) -> Vec<String> {
    seqs.into_iter().map(|seq| format!("line {seq}")).collect()
}

pub(super) async fn watch(
    server: &TestServer,
    mission_id: &str,
    since_seq: u64,
) -> Streaming<MissionEvent> {
    server
        .control()
        .await
        .watch_mission(server.admin(WatchMissionRequest {
            mission_id: mission_id.into(),
            since_seq,
        }))
        .await
        .unwrap()
        .into_inner()
}

async fn follow(server: &TestServer, since_seq: u64) -> Streaming<LogEvent> {
    server
        .control()
        .await
        .stream_logs(server.admin(StreamLogsRequest {
            target: Some(target("web", "prod")),
            mission_id: String::new(),
            since_seq,
            follow: true,
        }))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_and_updates_stored_by_one_replica_reach_watchers_on_another() {
    let (holder, other, _, mut session) = two_replicas(|_| {}).await;
    let deployed = other.deploy("web", "prod", good_bundle("1")).await;
    let mission_id = session.next_mission().await.mission_id;
    assert_eq!(mission_id, deployed.mission_id);

    // Watchers on the replica that does not hold the agent, before any line.
    let mut watcher = watch(&other, &mission_id, 0).await;
    let mut follower = follow(&other, 0).await;
    session.ack(&mission_id).await;
    session.logs(&mission_id, 1..=3).await;
    assert_eq!(session.next_log_ack(&mission_id).await, 3);
    assert_eq!(log_labels(&mut follower, 3).await, line_labels(1..=3));
    // One that resumes after seq 2, while the mission runs.
    let mut resumed = follow(&other, 2).await;
    assert_eq!(log_labels(&mut resumed, 3).await, line_labels([3]));

    // Many batches, then lines 301 and 302 lost by the agent.
    for batch in 0..30u64 {
        session
            .logs(&mission_id, 4 + batch * 10..=(13 + batch * 10).min(300))
            .await;
    }
    session.logs(&mission_id, 303..=310).await;
    while session.next_log_ack(&mission_id).await < 310 {}
    let mut expected = line_labels(4..=300);
    expected.push("gap 301-302".into());
    expected.extend(line_labels(303..=310));
    assert_eq!(log_labels(&mut follower, 310).await, expected);
    assert_eq!(log_labels(&mut resumed, 310).await, expected);
    session
        .update(&mission_id, MissionState::Healthy, &deployed.release_id)
        .await;

    let shown = watch_labels(&mut watcher).await;
    let (updates, lines): (Vec<String>, Vec<String>) = shown
        .iter()
        .cloned()
        .partition(|label| label.starts_with("update"));
    let mut all = line_labels(1..=300);
    all.push("gap 301-302".into());
    all.extend(line_labels(303..=310));
    assert_eq!(lines, all, "every line once, in order");
    assert_eq!(
        shown.last().map(String::as_str),
        Some("update healthy"),
        "{shown:?}"
    );
    assert!(
        updates == ["update healthy"] || updates == ["update running", "update healthy"],
        "{updates:?}"
    );

    // Resuming after the end, from a seq, on the other replica.
    let replayed = watch_labels(&mut watch(&other, &mission_id, 305).await).await;
    let mut tail = line_labels(306..=310);
    tail.push("update healthy".into());
    assert_eq!(replayed, tail);

    // `logs -f` there moves to the newer mission the holder records.
    let newer = holder.deploy("web", "prod", good_bundle("2")).await;
    assert_eq!(session.next_mission().await.mission_id, newer.mission_id);
    session.ack(&newer.mission_id).await;
    session.logs(&newer.mission_id, 1..=2).await;
    let event = tokio::time::timeout(DEADLINE, follower.message())
        .await
        .expect("the follower moves to the newer mission within the deadline")
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.mission_id, event.line.map(|line| line.seq)),
        (newer.mission_id.clone(), Some(1))
    );
    drop(session);
    other.stop().await;
    holder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_and_a_final_state_never_notified_reach_watchers_through_the_periodic_check() {
    let db = TestDb::postgres();
    let key: [u8; 32] = rand::random();
    let watched = replica(&db, key, Duration::from_millis(200), None).await;
    let deployed = watched.deploy("web", "prod", good_bundle("1")).await;
    let mut watcher = watch(&watched, &deployed.mission_id, 0).await;
    let mut follower = follow(&watched, 0).await;
    // Written straight to the store, as by a replica that died before its
    // NOTIFY.
    let store = watched.store().await;
    let lines = numbered_lines(1..=5);
    store
        .insert_lines(&deployed.mission_id, &lines)
        .await
        .unwrap();
    assert_eq!(log_labels(&mut follower, 5).await, line_labels(1..=5));
    let mission = store.mission(&deployed.mission_id).await.unwrap().unwrap();
    let update = MissionUpdate {
        mission_id: deployed.mission_id.clone(),
        state: MissionState::Failed as i32,
        message: "the replica died".into(),
        release_id: deployed.release_id.clone(),
        url: String::new(),
    };
    store
        .apply_update(&mission, &update, MissionState::Failed)
        .await
        .unwrap();
    store.close().await;
    let mut expected = line_labels(1..=5);
    expected.push("update failed".into());
    assert_eq!(watch_labels(&mut watcher).await, expected);
    watched.stop().await;
}
