//! Several `launch server` replicas on one database, on both engines: each
//! replica locks only its own data dir, all of them must hold the same
//! secret key (its fingerprint is stored at the first start), migrations run
//! once when replicas start together, and a schema newer than the binary is
//! refused saying which versions and what to do. On PostgreSQL, missions,
//! log lines and updates written through one replica reach the agents and
//! watchers of another, by notification or, when one is lost, by the
//! periodic check; an agent connected to one replica is connected in the
//! answers of all (`replicas/relay`: log lines and updates). With one S3
//! bundle store they share bundles (`replicas/bundles`).

use super::*;

mod bundles;
mod relay;
use relay::{line_labels, watch, watch_labels};

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
    let (holder, other, agent_token) = two_replicas_and_an_agent(adjust).await;
    let session = AgentSession::open(&holder, &agent_token).await.unwrap();
    (holder, other, agent_token, session)
}

/// [`two_replicas`] before the session: web/prod's agent is registered
/// (through the first) and its token returned, but not connected.
async fn two_replicas_and_an_agent(
    adjust: impl Fn(&mut ServerConfig) + Clone,
) -> (TestServer, TestServer, String) {
    let db = TestDb::postgres();
    let key: [u8; 32] = rand::random();
    let holder = replica_with(&db, key, NEVER, None, adjust.clone()).await;
    let other = replica_with(&db, key, NEVER, Some(&holder), adjust).await;
    let (_, agent_token) = holder.register("web", "prod").await;
    (holder, other, agent_token)
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
    let (holder, other, agent_token) = two_replicas_and_an_agent(|_| {}).await;
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
    bundle_of(
        "name: shop\nservices:\n  web:\n    image: busybox\n",
        "port = 8080\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_through_another_replica_is_checked_against_the_compose_the_agent_told_the_holder()
{
    let (holder, other, agent_token) = two_replicas_and_an_agent(|_| {}).await;
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
