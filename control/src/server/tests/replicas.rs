//! Several `launch server` replicas on one database, on both engines: each
//! replica locks only its own data dir, all of them must hold the same
//! secret key (its fingerprint is stored at the first start), migrations run
//! once when replicas start together, and a schema newer than the binary is
//! refused saying which versions and what to do. On PostgreSQL, missions,
//! log lines and updates written through one replica reach the agents and
//! watchers of another, by notification or, when one is lost, by the
//! periodic check; an agent connected to one replica is connected in the
//! answers of all. With one S3 bundle store
//! they share bundles: an agent held by one replica fetches what was
//! uploaded through another; with bundles in each data dir it is told
//! clearly that the bundle is not there.

use super::super::bundle_store::{self, Location};
use super::super::test_moto_s3::MotoS3;
use super::*;

/// `db`'s URL; for SQLite a file both replicas' configs point at.
fn shared_url(db: &TestDb, dir: &Path) -> String {
    match db {
        TestDb::Sqlite => format!("sqlite://{}/shared.db", dir.display()),
        TestDb::Postgres(url) => url.clone(),
    }
}

fn replica_config(url: &str, data_dir: std::path::PathBuf, key: Option<[u8; 32]>) -> ServerConfig {
    let mut config = ServerConfig::for_data_dir(data_dir, "127.0.0.1:0".parse().unwrap());
    config.database_url = url.to_owned();
    config.secret_key = key;
    config
}

/// Starts `config`; `Ok(replica)` once it listens, `Err(message)` when `run`
/// ends first.
async fn start_replica(
    config: ServerConfig,
) -> Result<
    (
        SocketAddr,
        CancellationToken,
        JoinHandle<anyhow::Result<()>>,
    ),
    String,
> {
    let shutdown = CancellationToken::new();
    let (ready_tx, ready_rx) = oneshot::channel();
    let handle = tokio::spawn(run(config, shutdown.clone(), ready_tx));
    match tokio::time::timeout(DEADLINE, ready_rx).await {
        Ok(Ok(addr)) => Ok((addr, shutdown, handle)),
        Ok(Err(_)) => Err(format!("{:#}", handle.await.unwrap().unwrap_err())),
        Err(_) => panic!("the replica neither listened nor failed within {DEADLINE:?}"),
    }
}

on_both_engines! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_a_database_but_not_a_data_dir_and_need_the_same_key(db) {
    let dirs = tempfile::tempdir().unwrap();
    let url = shared_url(&db, dirs.path());
    let key: [u8; 32] = rand::random();
    let (first, stop_first, first_handle) =
        start_replica(replica_config(&url, dirs.path().join("a"), Some(key)))
            .await
            .expect("the first replica starts");

    // Another data dir, another key: refused, naming the key and the fix.
    let refused = start_replica(replica_config(&url, dirs.path().join("b"), None))
        .await
        .map(|_| ())
        .expect_err("a replica with another key must not start");
    assert!(refused.contains("every replica needs the same key"), "{refused}");
    assert!(refused.contains("b/secret.key"), "{refused}");
    assert!(refused.contains("LAUNCH_SECRET_KEY"), "{refused}");

    // The same data dir again: refused by the data dir lock.
    let locked = start_replica(replica_config(&url, dirs.path().join("a"), Some(key)))
        .await
        .map(|_| ())
        .expect_err("two replicas on one data dir must not start");
    assert!(locked.contains("in use"), "{locked}");

    // Another data dir with the same key: both serve, from one database.
    let (second, stop_second, second_handle) =
        start_replica(replica_config(&url, dirs.path().join("b"), Some(key)))
            .await
            .expect("a second replica with the same key starts");
    let admin = std::fs::read_to_string(dirs.path().join("a/admin.token")).unwrap();
    assert!(
        !dirs.path().join("b/admin.token").exists(),
        "the second replica made an admin token of its own"
    );
    let join = |addr: SocketAddr| {
        let admin = admin.trim().to_owned();
        async move {
            let channel = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            ControlServiceClient::new(channel)
                .create_join_token(with_token(
                    CreateJoinTokenRequest {
                        target: Some(target("web", "prod")),
                        ttl_secs: 0,
                    },
                    &admin,
                ))
                .await
                .map(|response| response.into_inner().join_token)
        }
    };
    join(first).await.expect("the first replica takes the admin token");
    join(second).await.expect("the second replica takes the same admin token");
    let store = store::Store::open(&url).await.unwrap();
    let services = store.services().await.unwrap();
    assert_eq!(services.len(), 1, "{services:?}");
    store.close().await;

    for (stop, handle) in [(stop_first, first_handle), (stop_second, second_handle)] {
        stop.cancel();
        handle.await.unwrap().unwrap();
    }
}
}

on_both_engines! {
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_opening_a_new_database_together_migrate_it_once(db) {
    let dir = tempfile::tempdir().unwrap();
    let url = shared_url(&db, dir.path());
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { store::Store::open(&url).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().expect("every concurrent open succeeds");
        store.close().await;
    }
    let store = store::Store::open(&url).await.unwrap();
    store.ensure_service("web", "prod").await.unwrap();
    assert_eq!(store.services().await.unwrap().len(), 1);
    store.close().await;
}
}

on_both_engines! {
#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused_naming_both_versions(db) {
    let dir = tempfile::tempdir().unwrap();
    let url = shared_url(&db, dir.path());
    let store = store::Store::open(&url).await.unwrap();
    store.plant_migration_for_test(9_999).await;
    store.close().await;
    let err = store::Store::open(&url).await.unwrap_err().to_string();
    assert!(err.contains("schema is at version 9999"), "{err}");
    let newest = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.get(..4)?.parse::<u32>().ok())
        .max()
        .unwrap();
    assert!(err.contains(&format!("up to {newest})")), "{err}");
    assert!(err.contains("newer launch server migrated it"), "{err}");
}
}

/// A [`TestServer`] replica on `db` (PostgreSQL) holding `key`, looking
/// for queued missions and comparing watched missions with the store every
/// `check_every`, using the admin token of
/// `admin_from` (the first replica) if given.
async fn replica(
    db: &TestDb,
    key: [u8; 32],
    check_every: Duration,
    admin_from: Option<&TestServer>,
) -> TestServer {
    replica_with(db, key, check_every, admin_from, |_| {}).await
}

/// [`replica`], its config changed by `adjust` first.
async fn replica_with(
    db: &TestDb,
    key: [u8; 32],
    check_every: Duration,
    admin_from: Option<&TestServer>,
    adjust: impl FnOnce(&mut ServerConfig),
) -> TestServer {
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = db.config(data_dir.path().join("server"));
    config.secret_key = Some(key);
    config.mission_check_every = check_every;
    config.relay_check_every = check_every;
    adjust(&mut config);
    let database_url = config.database_url.clone();
    let (addr, shutdown, handle) = start_replica(config).await.expect("the replica starts");
    let admin_token = match admin_from {
        Some(first) => first.admin_token.clone(),
        None => std::fs::read_to_string(data_dir.path().join("server/admin.token"))
            .unwrap()
            .trim()
            .to_owned(),
    };
    TestServer {
        addr,
        data_dir,
        admin_token,
        shutdown,
        handle,
        database_url,
        db: db.clone(),
    }
}

/// No periodic check within any test's time: only a notification helps.
const NEVER: Duration = Duration::from_secs(3600);

/// Two replicas on a new PostgreSQL database with no periodic checks, each
/// config changed by `adjust`; the first holds an agent session of web/prod.
async fn two_replicas(
    adjust: impl Fn(&mut ServerConfig) + Clone,
) -> (TestServer, TestServer, String, AgentSession) {
    let db = TestDb::postgres();
    let key: [u8; 32] = rand::random();
    let holder = replica_with(&db, key, NEVER, None, adjust.clone()).await;
    let other = replica_with(&db, key, NEVER, Some(&holder), adjust).await;
    let (_, agent_token) = holder.register("web", "prod").await;
    let session = AgentSession::open(&holder, &agent_token).await.unwrap();
    (holder, other, agent_token, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mission_recorded_by_one_replica_reaches_an_agent_held_by_another() {
    let (holder, other, _, mut session) = two_replicas(|_| {}).await;
    // The holder's first check runs at its start, before the session: from
    // here on only the notification can bring the mission.
    let deployed = other.deploy("web", "prod", good_bundle("1")).await;
    let mission = session.next_mission().await;
    assert_eq!(mission.mission_id, deployed.mission_id);
    wait_for_state(&holder, &deployed.mission_id, MissionState::Dispatched).await;
    drop(session);
    other.stop().await;
    holder.stop().await;
}

/// What `replica` answers of web/prod's agent: `ListAgents`' connected
/// flag and `GetService`'s count of connected agents.
async fn seen_connected(replica: &TestServer) -> (bool, u32) {
    let mut control = replica.control().await;
    let agents = control
        .list_agents(replica.admin(ListAgentsRequest {}))
        .await
        .unwrap()
        .into_inner()
        .agents;
    let info = control
        .get_service(replica.admin(GetServiceRequest {
            target: Some(target("web", "prod")),
        }))
        .await
        .unwrap()
        .into_inner();
    (agents.iter().any(|a| a.connected), info.agents_connected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_held_by_one_replica_is_connected_in_every_replicas_answers() {
    let (holder, other, _, session) = two_replicas(|_| {}).await;
    // The Welcome comes before the Hello is recorded: poll.
    for replica in [&holder, &other] {
        eventually(
            "the agent is connected in the replica's answers",
            || async {
                match seen_connected(replica).await {
                    (true, 1) => Ok(()),
                    seen => Err(format!("{seen:?}")),
                }
            },
        )
        .await;
    }
    // Its session closes on the holder: the other replica says so too.
    drop(session);
    eventually("the other replica sees the agent disconnected", || async {
        match seen_connected(&other).await {
            (false, 0) => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    assert_eq!(seen_connected(&holder).await, (false, 0));
    other.stop().await;
    holder.stop().await;
}

/// The next agent event of `events` (a `WatchEvents` stream), skipping
/// missions'.
async fn next_agent_event(events: &mut Streaming<FleetEvent>) -> (FleetEventKind, String) {
    loop {
        let event = tokio::time::timeout(DEADLINE, events.message())
            .await
            .expect("a fleet event within the deadline")
            .unwrap()
            .expect("the fleet's stream goes on");
        let kind = event.kind();
        if matches!(
            kind,
            FleetEventKind::AgentConnected | FleetEventKind::AgentDisconnected
        ) {
            let target = event.target.unwrap_or_default();
            return (kind, format!("{}/{}", target.service, target.environment));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_of_every_replica_hear_an_agent_connect_and_leave_once_the_store_says_so() {
    let db = TestDb::postgres();
    let key: [u8; 32] = rand::random();
    let holder = replica(&db, key, NEVER, None).await;
    let other = replica(&db, key, NEVER, Some(&holder)).await;
    let (_, agent_token) = holder.register("web", "prod").await;
    let mut watchers = Vec::new();
    for replica in [&holder, &other] {
        let events = replica
            .control()
            .await
            .watch_events(replica.admin(WatchEventsRequest {}))
            .await
            .unwrap()
            .into_inner();
        watchers.push((replica, events));
    }
    let session = AgentSession::open(&holder, &agent_token).await.unwrap();
    for (replica, events) in &mut watchers {
        assert_eq!(
            next_agent_event(events).await,
            (FleetEventKind::AgentConnected, "web/prod".to_owned())
        );
        // What a watcher reads when told agrees with what it was told.
        assert_eq!(seen_connected(replica).await, (true, 1));
    }
    drop(session);
    for (replica, events) in &mut watchers {
        assert_eq!(
            next_agent_event(events).await,
            (FleetEventKind::AgentDisconnected, "web/prod".to_owned())
        );
        assert_eq!(seen_connected(replica).await, (false, 0));
    }
    drop(watchers);
    other.stop().await;
    holder.stop().await;
}

/// A bundle whose compose names its project (`name:`), a key
/// docker-compose v1 lacks.
fn named_project_bundle() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "name: shop\nservices:\n  web:\n    image: busybox\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("launch.toml"), "port = 8080\n").unwrap();
    let mut out = Vec::new();
    launch_core::bundle::pack_dir(dir.path(), &mut out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_through_another_replica_is_checked_against_the_compose_the_agent_told_the_holder()
{
    let db = TestDb::postgres();
    let key: [u8; 32] = rand::random();
    let holder = replica(&db, key, NEVER, None).await;
    let other = replica(&db, key, NEVER, Some(&holder)).await;
    let (_, agent_token) = holder.register("web", "prod").await;
    // Positive control: with no compose known, the key passes.
    other
        .deploy_with("web", "prod", named_project_bundle(), Default::default())
        .await
        .expect("no host compose known yet: the bundle is accepted");
    let hello = Hello {
        version: "test".into(),
        hostname: "host-1".into(),
        advertise_host: "127.0.0.1".into(),
        compose: "docker-compose 1.29.2".into(),
        ..Default::default()
    };
    let session = AgentSession::open_with(&holder, &agent_token, hello, None)
        .await
        .unwrap();
    // The Welcome comes before the Hello is recorded: poll.
    eventually("the other replica shows the host's compose", || async {
        match host_compose_of(&other).await.as_str() {
            "docker-compose 1.29.2" => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    let err = other
        .deploy_with("web", "prod", named_project_bundle(), Default::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("docker-compose 1.29.2"),
        "{}",
        err.message()
    );
    drop(session);
    other.stop().await;
    holder.stop().await;
}

/// What `server`'s `GetService` says web/prod's host runs.
async fn host_compose_of(server: &TestServer) -> String {
    server
        .control()
        .await
        .get_service(server.admin(GetServiceRequest {
            target: Some(target("web", "prod")),
        }))
        .await
        .unwrap()
        .into_inner()
        .host_compose
}

on_both_engines! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hosts_compose_outlives_a_restart_of_the_control_plane(db) {
    let server = TestServer::start(&db).await;
    let (_, agent_token) = server.register("web", "prod").await;
    let hello = Hello {
        version: "test".into(),
        hostname: "host-1".into(),
        compose: "docker-compose 1.29.2".into(),
        ..Default::default()
    };
    let session = AgentSession::open_with(&server, &agent_token, hello, None)
        .await
        .unwrap();
    eventually("the Hello's compose is recorded", || async {
        match host_compose_of(&server).await.as_str() {
            "docker-compose 1.29.2" => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    drop(session);
    // No agent has said hello to the new process.
    let server = server.restart().await;
    assert_eq!(host_compose_of(&server).await, "docker-compose 1.29.2");
    let err = server
        .deploy_with("web", "prod", named_project_bundle(), Default::default())
        .await
        .unwrap_err();
    assert!(
        err.message().contains("docker-compose 1.29.2"),
        "{}",
        err.message()
    );
    server.stop().await;
}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mission_whose_notification_is_lost_is_found_by_the_periodic_check() {
    let db = TestDb::postgres();
    let key: [u8; 32] = rand::random();
    let holder = replica(&db, key, Duration::from_millis(200), None).await;
    let (_, agent_token) = holder.register("web", "prod").await;
    let mut session = AgentSession::open(&holder, &agent_token).await.unwrap();
    // Written straight to the store, as by a replica that died before its
    // NOTIFY: no notification at all.
    let store = holder.store().await;
    store
        .insert_mission(
            "m-lost-notification",
            MissionKind::Restart,
            "web",
            "prod",
            "",
        )
        .await
        .unwrap();
    store.close().await;
    let mission = session.next_mission().await;
    assert_eq!(mission.mission_id, "m-lost-notification");
    drop(session);
    holder.stop().await;
}

/// Keeps bundles in `bucket` (under `bundles/`) on `moto`.
fn on_s3(moto: &MotoS3, bucket: &str) -> impl Fn(&mut ServerConfig) + Clone {
    let location = Location::parse(&format!("s3://{bucket}/bundles")).unwrap();
    let aws = bundle_store::moto_aws(&moto.url());
    move |config: &mut ServerConfig| {
        config.bundle_store = location.clone();
        config.aws = Some(aws.clone());
    }
}

/// FetchBundle as the agent holding `agent_token` calls it, on `server`.
async fn fetch_bundle(
    server: &TestServer,
    agent_token: &str,
    release_id: &str,
) -> Result<Vec<u8>, Status> {
    let mut chunks = server
        .agents()
        .await
        .fetch_bundle(with_token(
            FetchBundleRequest {
                release_id: release_id.into(),
            },
            agent_token,
        ))
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = chunks.next().await {
        bytes.extend(chunk?.data);
    }
    Ok(bytes)
}

/// Every file a replica keeps in its data dir's `bundles/`.
fn bundle_files(server: &TestServer) -> Vec<String> {
    std::fs::read_dir(server.server_dir().join("bundles"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_held_by_one_replica_fetches_a_bundle_uploaded_through_another_from_s3() {
    let moto = MotoS3::shared();
    let bucket = moto.new_bucket();
    let (holder, other, agent_token, mut session) = two_replicas(on_s3(moto, &bucket)).await;

    let bundle = good_bundle("through the other replica");
    let deployed = other.deploy("web", "prod", bundle.clone()).await;
    let mission = session.next_mission().await;
    assert_eq!(mission.mission_id, deployed.mission_id);
    let fetched = fetch_bundle(&holder, &agent_token, &mission.release_id)
        .await
        .expect("the holder serves the bundle the other replica stored");
    assert_eq!(
        launch_core::bundle::sha256_hex(&fetched),
        mission.bundle_sha256
    );
    assert_eq!(fetched, bundle);
    assert_eq!(
        moto.request(
            "HEAD",
            &format!("/{bucket}/bundles/{}.tar.gz", mission.bundle_sha256)
        ),
        Ok(200)
    );
    // Neither replica kept it (or a half upload) on its own disk.
    assert!(
        bundle_files(&holder).is_empty(),
        "{:?}",
        bundle_files(&holder)
    );
    assert!(
        bundle_files(&other).is_empty(),
        "{:?}",
        bundle_files(&other)
    );
    drop(session);
    other.stop().await;
    holder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bundles_in_each_data_dir_another_replicas_agent_is_told_the_bundle_is_missing() {
    let (holder, other, agent_token, mut session) = two_replicas(|_| {}).await;

    let deployed = other.deploy("web", "prod", good_bundle("1")).await;
    let mission = session.next_mission().await;
    assert_eq!(mission.mission_id, deployed.mission_id);
    let refused = fetch_bundle(&holder, &agent_token, &mission.release_id)
        .await
        .expect_err("the holder has no copy of the other replica's bundle");
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
    for needle in [
        mission.release_id.as_str(),
        mission.bundle_sha256.as_str(),
        "deploy the service again",
        "--bundle-store",
    ] {
        assert!(refused.message().contains(needle), "{needle}: {refused:?}");
    }
    // Positive control: the replica it was uploaded through serves it.
    let fetched = fetch_bundle(&other, &agent_token, &mission.release_id)
        .await
        .expect("the other replica has it in its data dir");
    assert_eq!(
        launch_core::bundle::sha256_hex(&fetched),
        mission.bundle_sha256
    );
    drop(session);
    other.stop().await;
    holder.stop().await;
}

#[tokio::test]
async fn a_server_whose_bucket_does_not_answer_refuses_to_start_naming_it() {
    let moto = MotoS3::shared();
    let bucket = moto.new_bucket();
    let dirs = tempfile::tempdir().unwrap();
    let config = |name: &str, bucket: &str| {
        let mut config = TestDb::Sqlite.config(dirs.path().join(name));
        on_s3(moto, bucket)(&mut config);
        config
    };
    let refused = start_replica(config("a", "launch-no-such-bucket"))
        .await
        .map(|_| ())
        .expect_err("a server with a missing bucket must not start");
    assert!(refused.contains("\"launch-no-such-bucket\""), "{refused}");
    assert!(refused.contains(&moto.url()), "{refused}");
    assert!(refused.contains("create the bucket"), "{refused}");

    // Positive control: the same config with a bucket that exists starts.
    let (_, stop, handle) = start_replica(config("b", &bucket))
        .await
        .expect("a server with an existing bucket starts");
    stop.cancel();
    handle.await.unwrap().unwrap();
}

/// Everything a WatchMission stream carries until it ends, as `line N`,
/// `gap A-B` and `update STATE` labels.
async fn watch_labels(stream: &mut Streaming<MissionEvent>) -> Vec<String> {
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

fn line_labels(seqs: impl IntoIterator<Item = u64>) -> Vec<String> {
    seqs.into_iter().map(|seq| format!("line {seq}")).collect()
}

async fn watch(server: &TestServer, mission_id: &str, since_seq: u64) -> Streaming<MissionEvent> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_carry_on_after_postgresql_restarts_and_fail_calls_clearly_meanwhile() {
    let cluster = super::super::test_postgres::Cluster::start();
    let db = TestDb::Postgres(cluster.new_database());
    let key: [u8; 32] = rand::random();
    let holder = replica(&db, key, NEVER, None).await;
    let other = replica(&db, key, NEVER, Some(&holder)).await;
    let (_, agent_token) = holder.register("web", "prod").await;
    let deployed = other.deploy("web", "prod", good_bundle("1")).await;

    cluster.pause();
    let during = tokio::time::timeout(
        Duration::from_secs(30),
        other
            .control()
            .await
            .list_services(other.admin(ListServicesRequest::default())),
    )
    .await
    .expect("a call during the outage fails within the pool's timeout")
    .unwrap_err();
    assert_eq!(during.code(), Code::Unavailable, "{during:?}");
    assert!(
        during.message().contains("cannot reach its database"),
        "{during:?}"
    );
    cluster.resume();

    eventually("calls to succeed again", || async {
        other
            .control()
            .await
            .list_services(other.admin(ListServicesRequest::default()))
            .await
            .map(|_| ())
            .map_err(|status| status.to_string())
    })
    .await;
    let mut session = AgentSession::open(&holder, &agent_token).await.unwrap();
    let mission_id = session.next_mission().await.mission_id;
    assert_eq!(mission_id, deployed.mission_id);
    let mut watcher = watch(&other, &mission_id, 0).await;
    session.ack(&mission_id).await;
    // No periodic check: lines reach the other replica's watcher once its
    // LISTEN connection is back, those sent before it through the store.
    let mut sent = 0;
    let first = loop {
        sent += 1;
        session.logs(&mission_id, sent..=sent).await;
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(500), watcher.message()).await
        {
            break event.unwrap().unwrap();
        }
        assert!(
            sent < 40,
            "no line reached the other replica in 20 s after the restart"
        );
    };
    session
        .update(&mission_id, MissionState::Healthy, &deployed.release_id)
        .await;
    let mut shown = vec![match first.event.unwrap() {
        mission_event::Event::Line(line) => format!("line {}", line.seq),
        mission_event::Event::Update(update) => format!("update {}", update.state().label()),
        mission_event::Event::Gap(gap) => format!("gap {}-{}", gap.from_seq, gap.to_seq),
    }];
    shown.extend(watch_labels(&mut watcher).await);
    shown.retain(|label| label != "update running");
    let mut expected = line_labels(1..=sent);
    expected.push("update healthy".into());
    assert_eq!(shown, expected);
    drop(session);
    other.stop().await;
    holder.stop().await;
}
