//! The control plane driven over the wire, without Docker: each test starts
//! `run` on 127.0.0.1:0 with a temp data dir and talks to it with the
//! generated tonic clients, playing the CLI and, where needed, an agent.
//! This file holds the harness every module shares (`TestServer`,
//! `AgentSession`, `on_both_engines!` and the helpers); the tests are in the
//! modules, one topic each.

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

    /// The stored log of `mission_id` of hello in prod (the newest
    /// mission's when empty), read to the end without following.
    async fn stored_logs(&self, mission_id: &str) -> Result<Vec<LogEvent>, Status> {
        let stream = self
            .control()
            .await
            .stream_logs(self.admin(StreamLogsRequest {
                target: Some(target("hello", "prod")),
                mission_id: mission_id.into(),
                since_seq: 0,
                follow: false,
            }))
            .await?
            .into_inner();
        stream.collect::<Result<Vec<_>, _>>().await
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
    bundle_of(
        &format!("services:\n  web:\n    image: busybox # {marker}\n"),
        "port = 8080\n",
    )
}

/// A bundle of `compose.yaml` and `launch.toml` with these texts.
fn bundle_of(compose: &str, launch_toml: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), compose).unwrap();
    std::fs::write(dir.path().join("launch.toml"), launch_toml).unwrap();
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

mod agents;
mod authz;
mod logs;
mod process;
mod releases;
mod secrets;

mod dashboard;
mod listing;
mod missions;
mod previews;
mod recreate;
mod replicas;
mod store_writes;
mod tags;

mod front_door;
