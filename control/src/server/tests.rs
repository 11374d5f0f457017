//! The control plane driven over the wire, without Docker: each test starts
//! `run` on 127.0.0.1:0 with a temp data dir and talks to it with the
//! generated tonic clients, playing the CLI and, where needed, an agent.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

use launch_proto::agent_service_client::AgentServiceClient;
use launch_proto::control_service_client::ControlServiceClient;
use launch_proto::*;

use super::{ServerConfig, ServerFlags, run, store, tokens};

const DEADLINE: Duration = Duration::from_secs(10);

/// The database a test's server runs on: SQLite in its data dir, or a fresh
/// database of its own in this process's throwaway PostgreSQL cluster.
#[derive(Clone, Debug)]
enum TestDb {
    Sqlite,
    Postgres(String),
}

impl TestDb {
    fn postgres() -> Self {
        TestDb::Postgres(super::test_postgres::Cluster::shared().new_database())
    }

    /// The server config for `data_dir` on this database.
    fn config(&self, data_dir: std::path::PathBuf) -> ServerConfig {
        let mut config = ServerConfig::for_data_dir(data_dir, "127.0.0.1:0".parse().unwrap());
        if let TestDb::Postgres(url) = self {
            config.database_url = url.clone();
        }
        config
    }
}

/// Runs a test, written as `async fn name(db) { … }`, twice: as
/// `name::sqlite` and as `name::postgres`, with `db` the [`TestDb`].
macro_rules! on_both_engines {
    ($(#[$attr:meta])* async fn $name:ident($db:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            async fn sqlite() {
                let $db = TestDb::Sqlite;
                $body
            }

            $(#[$attr])*
            async fn postgres() {
                let $db = TestDb::postgres();
                $body
            }
        }
    };
}

struct TestServer {
    addr: SocketAddr,
    data_dir: tempfile::TempDir,
    admin_token: String,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    database_url: String,
    db: TestDb,
}

impl TestServer {
    async fn start(db: &TestDb) -> Self {
        Self::start_with(db, |_| {}).await
    }

    async fn start_with(db: &TestDb, adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = db.config(data_dir.path().join("server"));
        adjust(&mut config);
        Self::run_in(data_dir, db, config).await
    }

    /// Stops the server and starts another on the same data dir and database.
    async fn restart(self) -> Self {
        let db = self.db.clone();
        let data_dir = self.stop().await;
        let config = db.config(data_dir.path().join("server"));
        Self::run_in(data_dir, &db, config).await
    }

    async fn run_in(data_dir: tempfile::TempDir, db: &TestDb, config: ServerConfig) -> Self {
        let database_url = config.database_url.clone();
        let shutdown = CancellationToken::new();
        let (ready_tx, ready_rx) = oneshot::channel();
        let handle = tokio::spawn(run(config, shutdown.clone(), ready_tx));
        let addr = tokio::time::timeout(DEADLINE, ready_rx)
            .await
            .expect("server ready within the deadline")
            .expect("server sent its address");
        let admin_token =
            std::fs::read_to_string(data_dir.path().join("server/admin.token")).unwrap();
        TestServer {
            addr,
            data_dir,
            admin_token: admin_token.trim().to_owned(),
            shutdown,
            handle,
            database_url,
            db: db.clone(),
        }
    }

    fn server_dir(&self) -> std::path::PathBuf {
        self.data_dir.path().join("server")
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn control(&self) -> ControlServiceClient<Channel> {
        ControlServiceClient::new(self.channel().await)
    }

    async fn agents(&self) -> AgentServiceClient<Channel> {
        AgentServiceClient::new(self.channel().await)
    }

    fn admin<T>(&self, message: T) -> Request<T> {
        with_token(message, &self.admin_token)
    }

    async fn join_token(&self, service: &str, environment: &str) -> String {
        self.control()
            .await
            .create_join_token(self.admin(CreateJoinTokenRequest {
                target: Some(target(service, environment)),
                ttl_secs: 0,
            }))
            .await
            .unwrap()
            .into_inner()
            .join_token
    }

    /// Registers an agent for (service, environment); returns (id, token).
    async fn register(&self, service: &str, environment: &str) -> (String, String) {
        let join_token = self.join_token(service, environment).await;
        let response = self
            .agents()
            .await
            .register(register_request(&join_token, service, environment))
            .await
            .unwrap()
            .into_inner();
        (response.agent_id, response.agent_token)
    }

    async fn deploy(&self, service: &str, environment: &str, bundle: Vec<u8>) -> DeployResponse {
        self.deploy_with(service, environment, bundle, Default::default())
            .await
            .unwrap()
    }

    async fn deploy_with(
        &self,
        service: &str,
        environment: &str,
        bundle: Vec<u8>,
        secrets: std::collections::HashMap<String, String>,
    ) -> Result<DeployResponse, Status> {
        let mut messages = vec![DeployRequest {
            msg: Some(deploy_request::Msg::Header(DeployHeader {
                target: Some(target(service, environment)),
                git_ref: "main".into(),
                secrets,
                bundle_sha256: launch_core::bundle::sha256_hex(&bundle),
                ..Default::default()
            })),
        }];
        for chunk in bundle.chunks(4096) {
            messages.push(DeployRequest {
                msg: Some(deploy_request::Msg::Chunk(chunk.to_vec())),
            });
        }
        self.control()
            .await
            .deploy(self.admin(tokio_stream::iter(messages)))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn mission(&self, mission_id: &str) -> MissionInfo {
        self.control()
            .await
            .get_mission(self.admin(GetMissionRequest {
                mission_id: mission_id.into(),
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// Opens the server's database a second time (SQLite's WAL allows it).
    async fn store(&self) -> store::Store {
        store::Store::open(&self.database_url).await.unwrap()
    }

    /// Stops the server and hands back its data dir for inspection.
    async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("server stopped within the drain deadline")
            .unwrap()
            .unwrap();
        self.data_dir
    }
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    request
}

fn target(service: &str, environment: &str) -> ServiceRef {
    ServiceRef {
        service: service.into(),
        environment: environment.into(),
    }
}

fn register_request(join_token: &str, service: &str, environment: &str) -> RegisterRequest {
    RegisterRequest {
        join_token: join_token.into(),
        labels: [
            ("service-name".to_owned(), service.to_owned()),
            ("environment".to_owned(), environment.to_owned()),
        ]
        .into(),
        hostname: "host-1".into(),
        version: "test".into(),
    }
}

/// A valid bundle: a compose file and a launch.toml.
fn good_bundle(marker: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        format!("services:\n  web:\n    image: busybox # {marker}\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("launch.toml"), "port = 8080\n").unwrap();
    let mut out = Vec::new();
    launch_core::bundle::pack_dir(dir.path(), &mut out).unwrap();
    out
}

/// A bundle with a compose file and a symbolic link pointing out of it.
fn bundle_with_symlink() -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    let compose = b"services: {}\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(compose.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "compose.yaml", &compose[..])
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    builder
        .append_link(&mut link, "passwd", "/etc/passwd")
        .unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

/// Compose lines `line N` for each seq of `seqs`, as an agent sends them.
fn numbered_lines(seqs: impl IntoIterator<Item = u64>) -> Vec<LogLine> {
    seqs.into_iter()
        .map(|seq| LogLine {
            seq,
            unix_ms: 1,
            stream: LogStream::Stdout as i32,
            source: "compose".into(),
            text: format!("line {seq}"),
        })
        .collect()
}

/// An agent session driven by the test.
struct AgentSession {
    outbound: mpsc::Sender<AgentMessage>,
    inbound: Streaming<ControlMessage>,
    /// Missions already received on this session: one can arrive twice when
    /// a deploy races the connect, and agents dedupe by id, as this does.
    seen: std::collections::HashSet<String>,
    /// What the session opened with.
    welcome: Welcome,
}

impl AgentSession {
    async fn open(server: &TestServer, agent_token: &str) -> Result<Self, Status> {
        let hello = Hello {
            version: "test".into(),
            hostname: "host-1".into(),
            advertise_host: "127.0.0.1".into(),
            ..Default::default()
        };
        Self::open_with(server, agent_token, hello, None).await
    }

    /// Opens a session saying `hello`, with `version` in the session's
    /// metadata as agents send it.
    async fn open_with(
        server: &TestServer,
        agent_token: &str,
        hello: Hello,
        version: Option<&str>,
    ) -> Result<Self, Status> {
        let (outbound, rx) = mpsc::channel(64);
        outbound
            .send(AgentMessage {
                msg: Some(agent_message::Msg::Hello(hello)),
            })
            .await
            .unwrap();
        let mut request = with_token(ReceiverStream::new(rx), agent_token);
        if let Some(version) = version {
            request
                .metadata_mut()
                .insert(AGENT_VERSION_HEADER, version.parse().unwrap());
        }
        let inbound = server.agents().await.session(request).await?.into_inner();
        let mut session = AgentSession {
            outbound,
            inbound,
            seen: Default::default(),
            welcome: Welcome::default(),
        };
        match session.next().await? {
            control_message::Msg::Welcome(welcome) => {
                session.welcome = welcome;
                Ok(session)
            }
            other => panic!("expected Welcome first, got {other:?}"),
        }
    }

    async fn next(&mut self) -> Result<control_message::Msg, Status> {
        let message = tokio::time::timeout(DEADLINE, self.inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no control message within the deadline"))??
            .ok_or_else(|| Status::aborted("session ended"))?;
        Ok(message.msg.expect("control message has a body"))
    }

    /// The next Mission not seen before, skipping LogAcks.
    async fn next_mission(&mut self) -> Mission {
        loop {
            match self.next().await.unwrap() {
                control_message::Msg::Mission(mission) => {
                    if self.seen.insert(mission.mission_id.clone()) {
                        return mission;
                    }
                }
                control_message::Msg::LogAck(_) => continue,
                other => panic!("expected a mission, got {other:?}"),
            }
        }
    }

    /// The next LogAck for `mission_id`.
    async fn next_log_ack(&mut self, mission_id: &str) -> u64 {
        loop {
            match self.next().await.unwrap() {
                control_message::Msg::LogAck(ack) if ack.mission_id == mission_id => {
                    return ack.through_seq;
                }
                _ => continue,
            }
        }
    }

    async fn send(&self, msg: agent_message::Msg) {
        self.outbound
            .send(AgentMessage { msg: Some(msg) })
            .await
            .unwrap();
    }

    async fn ack(&self, mission_id: &str) {
        self.send(agent_message::Msg::Ack(MissionAck {
            mission_id: mission_id.into(),
        }))
        .await;
    }

    async fn logs(&self, mission_id: &str, seqs: std::ops::RangeInclusive<u64>) {
        let lines = numbered_lines(seqs);
        self.send(agent_message::Msg::Logs(LogBatch {
            mission_id: mission_id.into(),
            lines,
        }))
        .await;
    }

    async fn update(&self, mission_id: &str, state: MissionState, release_id: &str) {
        self.send(agent_message::Msg::Update(MissionUpdate {
            mission_id: mission_id.into(),
            state: state as i32,
            message: format!("now {}", state.label()),
            release_id: release_id.into(),
            url: "http://127.0.0.1:8080/".into(),
        }))
        .await;
    }
}

/// Polls `check` until it returns Some or the deadline passes.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    while start.elapsed() < DEADLINE {
        match check().await {
            Ok(value) => return value,
            Err(state) => last = state,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not true after {DEADLINE:?}; last state: {last}");
}

async fn wait_for_state(server: &TestServer, mission_id: &str, want: MissionState) {
    eventually(
        &format!("mission {mission_id} {}", want.label()),
        || async {
            let mission = server.mission(mission_id).await;
            if mission.state == want as i32 {
                Ok(())
            } else {
                Err(format!("{:?}", mission.state()))
            }
        },
    )
    .await
}

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
        .control()
        .await
        .stream_logs(server.admin(StreamLogsRequest {
            target: Some(target("hello", "prod")),
            mission_id: String::new(),
            since_seq: 0,
            follow: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .map(|event| event.unwrap().line.unwrap().seq)
        .collect()
        .await;
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

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_contain(&path, needle));
        } else if std::fs::read(&path)
            // SQLite may still be removing its -wal/-shm files as it closes.
            .unwrap_or_default()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

on_both_engines! {
#[tokio::test]
async fn secrets_are_encrypted_at_rest_and_reach_only_their_agent_redacted_from_logs(db) {
    let server = TestServer::start(&db).await;
    let plaintext = "pl41ntext-p4ssw0rd-value";
    let header_secret = "h34der-secret-value";
    let mut control = server.control().await;
    control
        .set_secret(server.admin(SetSecretRequest {
            target: Some(target("hello", "prod")),
            key: "DB_PASSWORD".into(),
            value: plaintext.into(),
        }))
        .await
        .unwrap();
    let bad_key = control
        .set_secret(server.admin(SetSecretRequest {
            target: Some(target("hello", "prod")),
            key: "1-bad".into(),
            value: "x".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(bad_key.code(), Code::InvalidArgument);

    let (_, agent_token) = server.register("hello", "prod").await;
    let deploy = server
        .deploy_with(
            "hello",
            "prod",
            good_bundle("s"),
            [("API_KEY".to_owned(), header_secret.to_owned())].into(),
        )
        .await
        .unwrap();
    let mut session = AgentSession::open(&server, &agent_token).await.unwrap();
    let mission = session.next_mission().await;
    assert_eq!(
        mission.secrets.get("DB_PASSWORD").map(String::as_str),
        Some(plaintext)
    );
    assert_eq!(
        mission.secrets.get("API_KEY").map(String::as_str),
        Some(header_secret)
    );

    // A line leaking the secret is stored redacted.
    session
        .send(agent_message::Msg::Logs(LogBatch {
            mission_id: mission.mission_id.clone(),
            lines: vec![LogLine {
                seq: 1,
                unix_ms: 1,
                stream: LogStream::Stdout as i32,
                source: "web".into(),
                text: format!("connecting with {plaintext}"),
            }],
        }))
        .await;
    assert_eq!(session.next_log_ack(&mission.mission_id).await, 1);
    let line = server
        .control()
        .await
        .stream_logs(server.admin(StreamLogsRequest {
            target: Some(target("hello", "prod")),
            mission_id: deploy.mission_id.clone(),
            since_seq: 0,
            follow: false,
        }))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap()
        .line
        .unwrap();
    assert_eq!(line.text, "connecting with [REDACTED]");

    let keys: Vec<String> = control
        .list_secrets(server.admin(ListSecretsRequest {
            target: Some(target("hello", "prod")),
        }))
        .await
        .unwrap()
        .into_inner()
        .secrets
        .into_iter()
        .map(|s| s.key)
        .collect();
    assert_eq!(keys, ["API_KEY", "DB_PASSWORD"]);

    drop(session);
    let data_dir = server.stop().await;
    for needle in [plaintext, header_secret] {
        let found = files_contain(data_dir.path(), needle.as_bytes());
        assert!(found.is_empty(), "{needle} in clear in {found:?}");
    }
}
}

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

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
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
    assert_eq!(config.bundle_store, super::bundle_store::Location::DataDir);
    let on_s3 = ServerFlags {
        bundle_store: Some("s3://launch-bundles/prod/".into()),
        ..ok
    };
    let config = ServerConfig::from_flags_with(&on_s3, None, Some("/home/u".into())).unwrap();
    assert_eq!(config.bundle_store.to_string(), "s3://launch-bundles/prod");
}

/// What a StreamLogs stream carried, as `line N` and `gap A-B` labels.
async fn log_labels(stream: &mut Streaming<LogEvent>, until_seq: u64) -> Vec<String> {
    let mut labels = Vec::new();
    loop {
        let event = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .unwrap_or_else(|_| panic!("no log event within {DEADLINE:?}; so far {labels:?}"))
            .unwrap();
        let Some(event) = event else { return labels };
        let seq = match (event.line, event.gap) {
            (Some(line), _) => {
                labels.push(format!("line {}", line.seq));
                line.seq
            }
            (None, Some(gap)) => {
                labels.push(format!("gap {}-{}", gap.from_seq, gap.to_seq));
                gap.to_seq
            }
            (None, None) => panic!("an empty log event after {labels:?}"),
        };
        if seq >= until_seq {
            return labels;
        }
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
mod dashboard;
mod listing;
mod missions;
mod previews;
mod recreate;
mod replicas;
mod store_writes;
mod tags;

mod front_door;
