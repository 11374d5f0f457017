//! Security checks of the control plane, each against the real binaries:
//! TLS between agents or the CLI and the control plane (certificates made
//! here with rcgen: a test CA, a server certificate for `localhost` and
//! 127.0.0.1, and a second CA that must not be trusted), a bearer token on
//! every RPC, `launch server rotate-key` on a real data dir, and a secret
//! value that must appear in no output of any process, even on failures and
//! at debug log level (with servers and agents started here, `OwnServer`).
//! `RELIABILITY.md` lists each scenario with its test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use launch_e2e::poll::eventually;
use launch_e2e::process::Process;
use launch_e2e::server::SCRUBBED_ENV;
use launch_e2e::{Agent, CliOutput, Server, Service, binaries, cli, grpc, http, unique};
use launch_proto::agent_service_client::AgentServiceClient;
use launch_proto::control_service_client::ControlServiceClient;
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::certs::Certs;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A `launch server` this module starts itself, in its own data dir: with
/// `--tls-cert --tls-key`, or plain at another log level than the harness's.
struct OwnServer {
    process: Process,
    addr: SocketAddr,
    admin_token: String,
    tls: bool,
    _temp: TempDir,
}

impl OwnServer {
    /// With TLS, logging at `info`.
    fn start(certs: &Certs) -> OwnServer {
        OwnServer::spawn(Some(certs), "info")
    }

    fn spawn(certs: Option<&Certs>, rust_log: &str) -> OwnServer {
        let temp = tempfile::Builder::new()
            .prefix("launch-e2e-tls-server-")
            .tempdir()
            .unwrap();
        let data_dir = temp.path().join("data");
        let mut command = Command::new(binaries::launch());
        for var in SCRUBBED_ENV {
            command.env_remove(var);
        }
        command
            .env("RUST_LOG", rust_log)
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir);
        if let Some(certs) = certs {
            command
                .arg("--tls-cert")
                .arg(certs.path("server.pem"))
                .arg("--tls-key")
                .arg(certs.path("server.key"));
        }
        let process = Process::spawn("own server", command);
        let prefix = if certs.is_some() {
            "launch server listening on https://"
        } else {
            "launch server listening on http://"
        };
        let line = process
            .stdout
            .wait_for(START_TIMEOUT, |l| l.starts_with(prefix))
            .unwrap_or_else(|e| {
                panic!(
                    "the server did not start: {e}\nstderr:\n{}",
                    process.stderr.text()
                )
            });
        let addr = line[prefix.len()..].trim().parse().unwrap();
        let admin_token = std::fs::read_to_string(data_dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        OwnServer {
            process,
            addr,
            admin_token,
            tls: certs.is_some(),
            _temp: temp,
        }
    }

    /// With TLS by host name, so the certificate's name is what is checked.
    fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// `launch <args>` against `addr` with the admin token and `ca_cert`.
    fn cli(&self, addr: &str, ca_cert: Option<&Path>, args: &[&str]) -> CliOutput {
        cli::finish(args, self.command(addr, ca_cert, args), None)
    }

    fn command(&self, addr: &str, ca_cert: Option<&Path>, args: &[&str]) -> Command {
        let mut command = Command::new(binaries::launch());
        for var in SCRUBBED_ENV {
            command.env_remove(var);
        }
        command
            .env_remove("LAUNCH_CA_CERT")
            .env("LAUNCH_ADDR", addr)
            .env("LAUNCH_TOKEN", &self.admin_token)
            .args(args);
        if let Some(ca) = ca_cert {
            command.env("LAUNCH_CA_CERT", ca);
        }
        command
    }
}

/// A `launch-agent run` against `control_url`, trusting `ca_cert`.
fn spawn_agent(
    service: &str,
    control_url: &str,
    ca_cert: Option<&Path>,
    join_token: &str,
    data_dir: &Path,
) -> Process {
    spawn_agent_logging(service, control_url, ca_cert, join_token, data_dir, "info")
}

fn spawn_agent_logging(
    service: &str,
    control_url: &str,
    ca_cert: Option<&Path>,
    join_token: &str,
    data_dir: &Path,
    log_level: &str,
) -> Process {
    let mut command = Command::new(binaries::launch_agent());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .env_remove("LAUNCH_AGENT_CA_CERT")
        .env("LAUNCH_LOG", log_level)
        .args([
            "run",
            "--ingress",
            "off",
            "--control-url",
            control_url,
            "--join-token",
            join_token,
        ])
        .arg("--labels")
        .arg(format!("service-name={service},environment=prod"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--advertise-host", "127.0.0.1"]);
    if let Some(ca) = ca_cert {
        command.arg("--ca-cert").arg(ca);
    }
    Process::spawn("own agent", command)
}

fn join_token(server: &OwnServer, certs: &Certs, service: &str) -> String {
    let out = server.cli(
        &server.url(),
        Some(&certs.path("ca.pem")),
        &["token", "create", "--service", service, "--env", "prod"],
    );
    out.success();
    out.stdout.trim().to_owned()
}

#[test]
fn agent_and_cli_work_over_tls_with_the_right_ca() {
    let certs = Certs::new();
    let server = OwnServer::start(&certs);

    let status = server.cli(&server.url(), Some(&certs.path("ca.pem")), &["status"]);
    status.success();
    // `--ca-cert` works as well as LAUNCH_CA_CERT, by name and by address.
    let by_ip = format!("https://127.0.0.1:{}", server.addr.port());
    server
        .cli(
            &by_ip,
            None,
            &["--ca-cert", &certs.arg("ca.pem"), "services"],
        )
        .success();

    let service = Service::from_quickstart(&unique::service_name(), "prod");
    let token = join_token(&server, &certs, &service.name);
    let data = tempfile::tempdir().unwrap();
    let agent = spawn_agent(
        &service.name,
        &server.url(),
        Some(&certs.path("ca.pem")),
        &token,
        data.path(),
    );
    agent
        .stdout
        .wait_for(CONNECT_TIMEOUT, |l| {
            l.starts_with("launch-agent connected as ")
        })
        .unwrap_or_else(|e| {
            panic!(
                "the agent did not connect over TLS: {e}\nstderr:\n{}",
                agent.stderr.text()
            )
        });
    let agents = server.cli(
        &server.url(),
        Some(&certs.path("ca.pem")),
        &["agents", "--output", "json"],
    );
    agents.success();
    assert!(agents.stdout.contains(&service.name), "{agents}");

    // A whole deploy over TLS: upload, dispatch, bundle fetch, logs, outcome.
    let dir = service.dir_arg();
    let deploy = server.cli(
        &server.url(),
        Some(&certs.path("ca.pem")),
        &service.deploy_args(&dir, &["--wait"]),
    );
    deploy.success();
    assert_eq!(service.get("/").map(|(code, _)| code), Ok(200), "{deploy}");

    // HTTP/1.1 endpoints over the same TLS port (ALPN http/1.1).
    let curl = Command::new("curl")
        .args(["--silent", "--show-error", "--http1.1", "--cacert"])
        .arg(certs.path("ca.pem"))
        .arg(format!("{}/healthz", server.url()))
        .output()
        .expect("run curl");
    assert!(
        curl.status.success(),
        "curl https://…/healthz: {}",
        String::from_utf8_lossy(&curl.stderr)
    );

    // SIGINT drains the TLS connections (the agent's open session too) and exits 0.
    let mut server = server;
    let status = server.process.interrupt(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "the TLS server did not stop cleanly on SIGINT: {status:?}\n{}",
        server.process.stderr.text()
    );
}

#[test]
fn a_wrong_ca_is_refused_clearly_and_the_agent_keeps_retrying() {
    let certs = Certs::new();
    let server = OwnServer::start(&certs);

    let refused = server.cli(
        &server.url(),
        Some(&certs.path("other-ca.pem")),
        &["status"],
    );
    refused.expect_code(3);
    assert!(
        refused.stderr.contains("not trusted") && refused.stderr.contains("--ca-cert"),
        "the CLI must say the certificate is not trusted and name --ca-cert\n{refused}"
    );
    let no_ca = server.cli(&server.url(), None, &["status"]);
    no_ca.expect_code(3);
    assert!(no_ca.stderr.contains("--ca-cert"), "{no_ca}");

    let token = join_token(&server, &certs, "tls");
    let data = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent(
        "tls",
        &server.url(),
        Some(&certs.path("other-ca.pem")),
        &token,
        data.path(),
    );
    // Two failed attempts: the agent backs off and tries again; it does not exit.
    let errors = eventually(CONNECT_TIMEOUT, "two refused attempts of the agent", || {
        let lines: Vec<String> = agent
            .stderr
            .lines()
            .into_iter()
            .filter(|l| l.contains("cannot open a session"))
            .collect();
        if lines.len() >= 2 {
            Ok(lines)
        } else {
            Err(agent.stderr.text())
        }
    });
    assert!(
        errors[0].contains("not trusted") && errors[0].contains("--ca-cert"),
        "the agent must say why and what to do: {errors:?}"
    );
    assert!(
        agent.try_status().is_none(),
        "the agent exited on a TLS error"
    );
    assert!(
        !agent.stdout.text().contains("connected as"),
        "the agent connected through an untrusted certificate"
    );
    assert!(
        !data.path().join("agent.token").exists(),
        "the agent registered through an untrusted certificate"
    );
}

/// Sends `G` to `port`, reads the answer to its end, then sends the rest of
/// a request head in two writes: the answer, and how the writes went.
fn plain_request_in_pieces(port: u16) -> (String, Result<(), String>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"G").unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let rest = [b"ET /healthz HTTP/1.1\r\n".as_slice(), b"Host: x\r\n\r\n"]
        .iter()
        .try_for_each(|piece| stream.write_all(piece).map_err(|e| e.to_string()));
    (String::from_utf8_lossy(&answer).into_owned(), rest)
}

#[test]
fn plain_http_to_a_tls_server_fails_clearly() {
    let certs = Certs::new();
    let server = OwnServer::start(&certs);
    let plain = format!("http://127.0.0.1:{}", server.addr.port());

    let out = server.cli(&plain, None, &["status"]);
    out.expect_code(3);
    assert!(out.stderr.contains("https://"), "{out}");

    let (code, body) = http::get(server.addr.port(), "/healthz").unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("this port speaks TLS"), "{body}");
    // A client whose request arrives in pieces after the answer (the
    // server answers on the first byte) finishes sending it without a
    // reset, and has read the whole answer.
    let (answer, rest) = plain_request_in_pieces(server.addr.port());
    assert!(answer.contains("400 Bad Request"), "{answer}");
    assert!(answer.contains("this port speaks TLS"), "{answer}");
    assert_eq!(rest, Ok(()), "the rest of the request met a closed socket");
    server
        .process
        .stderr
        .wait_for(START_TIMEOUT, |l| l.contains("spoke plain HTTP"))
        .expect("the server logs the plain-HTTP client");

    // The agent says so too, and keeps trying.
    let data = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent("tls", &plain, None, "lt_join_unused", data.path());
    let line = agent
        .stderr
        .wait_for(CONNECT_TIMEOUT, |l| l.contains("cannot open a session"))
        .unwrap_or_else(|e| panic!("the agent did not report the failure: {e}"));
    assert!(line.contains("https://"), "{line}");
    assert!(agent.try_status().is_none(), "the agent exited");

    // And TLS to a plain server says so too.
    let plain_server = Server::start();
    let tls_to_plain = format!("https://127.0.0.1:{}", plain_server.addr.port());
    let out = server.cli(&tls_to_plain, Some(&certs.path("ca.pem")), &["status"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("cannot reach the control plane"),
        "{out}"
    );
}

/// Asserts that `call` fails with `Unauthenticated` (directly or on the
/// first message of a stream).
macro_rules! assert_unauthenticated {
    ($what:expr, $call:expr) => {{
        let code = match $call.await {
            Err(status) => status.code(),
            Ok(_) => tonic::Code::Ok,
        };
        assert_eq!(
            code,
            tonic::Code::Unauthenticated,
            "{} was not refused",
            $what
        );
    }};
}

/// Calls every ControlService RPC with `token` (or none) and asserts each is
/// refused as Unauthenticated.
async fn every_control_rpc_is_refused(
    client: &mut ControlServiceClient<Channel>,
    token: Option<&str>,
) {
    use launch_proto::*;
    let target = || {
        Some(ServiceRef {
            service: "svc".into(),
            environment: "prod".into(),
        })
    };
    let label = token.map_or("no token".to_owned(), |_| "a wrong token".to_owned());
    let deploy = futures_lite_stream(DeployRequest {
        msg: Some(deploy_request::Msg::Header(DeployHeader {
            target: target(),
            ..Default::default()
        })),
    });
    assert_unauthenticated!(
        format!("Deploy with {label}"),
        client.deploy(with(token, deploy))
    );
    assert_unauthenticated!(
        format!("Rollback with {label}"),
        client.rollback(with(
            token,
            RollbackRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("GetMission with {label}"),
        client.get_mission(with(token, GetMissionRequest::default()))
    );
    assert_unauthenticated!(format!("WatchMission with {label}"), async {
        let mut stream = client
            .watch_mission(with(token, WatchMissionRequest::default()))
            .await?
            .into_inner();
        stream.message().await
    });
    assert_unauthenticated!(format!("StreamLogs with {label}"), async {
        let mut stream = client
            .stream_logs(with(
                token,
                StreamLogsRequest {
                    target: target(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner();
        stream.message().await
    });
    assert_unauthenticated!(
        format!("Status with {label}"),
        client.status(with(token, StatusRequest::default()))
    );
    assert_unauthenticated!(
        format!("ListServices with {label}"),
        client.list_services(with(token, ListServicesRequest::default()))
    );
    assert_unauthenticated!(
        format!("EnsureService with {label}"),
        client.ensure_service(with(
            token,
            EnsureServiceRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("RetireService with {label}"),
        client.retire_service(with(
            token,
            RetireServiceRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("ListReleases with {label}"),
        client.list_releases(with(
            token,
            ListReleasesRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("ListAgents with {label}"),
        client.list_agents(with(token, ListAgentsRequest::default()))
    );
    assert_unauthenticated!(
        format!("RevokeAgent with {label}"),
        client.revoke_agent(with(token, RevokeAgentRequest::default()))
    );
    assert_unauthenticated!(
        format!("CreateJoinToken with {label}"),
        client.create_join_token(with(
            token,
            CreateJoinTokenRequest {
                target: target(),
                ..Default::default()
            }
        ))
    );
    assert_unauthenticated!(
        format!("RevokeJoinToken with {label}"),
        client.revoke_join_token(with(token, RevokeJoinTokenRequest::default()))
    );
    assert_unauthenticated!(
        format!("SetSecret with {label}"),
        client.set_secret(with(
            token,
            SetSecretRequest {
                target: target(),
                key: "KEY".into(),
                value: "value".into(),
            }
        ))
    );
    assert_unauthenticated!(
        format!("ListSecrets with {label}"),
        client.list_secrets(with(token, ListSecretsRequest { target: target() }))
    );
    assert_unauthenticated!(
        format!("DeleteSecret with {label}"),
        client.delete_secret(with(
            token,
            DeleteSecretRequest {
                target: target(),
                key: "KEY".into(),
            }
        ))
    );
}

/// Calls the AgentService RPCs that need an agent token with `token` (or
/// none) and asserts each is refused as Unauthenticated.
async fn every_agent_rpc_is_refused(client: &mut AgentServiceClient<Channel>, token: Option<&str>) {
    use launch_proto::*;
    let label = token.map_or("no token".to_owned(), |t| format!("token {t:.12}…"));
    let hello = futures_lite_stream(AgentMessage {
        msg: Some(agent_message::Msg::Hello(Hello::default())),
    });
    assert_unauthenticated!(format!("Session with {label}"), async {
        let mut stream = client.session(with(token, hello)).await?.into_inner();
        stream.message().await
    });
    assert_unauthenticated!(format!("FetchBundle with {label}"), async {
        let mut stream = client
            .fetch_bundle(with(token, FetchBundleRequest::default()))
            .await?
            .into_inner();
        stream.message().await
    });
}

/// `message` with `token` as its bearer token, or with none.
fn with<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    match token {
        Some(token) => grpc::request(message, token),
        None => tonic::Request::new(message),
    }
}

/// A request stream of one message that then stays open, like a client that
/// waits for the server's answer.
fn futures_lite_stream<T: Send + 'static>(
    first: T,
) -> impl tokio_stream::Stream<Item = T> + Send + 'static {
    use tokio_stream::StreamExt;
    tokio_stream::once(first).chain(tokio_stream::pending())
}

#[test]
fn every_rpc_refuses_a_missing_or_wrong_token() {
    let server = Server::start();
    let runtime = grpc::runtime();
    runtime.block_on(async {
        let mut control = grpc::control_client(&server).await;
        every_control_rpc_is_refused(&mut control, None).await;
        every_control_rpc_is_refused(&mut control, Some("lt_admin_wrong")).await;
        let mut agents = grpc::agent_client(&server).await;
        every_agent_rpc_is_refused(&mut agents, None).await;
        every_agent_rpc_is_refused(&mut agents, Some("lt_agent_wrong")).await;
        // The admin token is not an agent token.
        every_agent_rpc_is_refused(&mut agents, Some(&server.admin_token)).await;

        // Register is public but needs a valid join token.
        let refused = agents
            .register(launch_proto::RegisterRequest {
                join_token: "lt_join_wrong".into(),
                labels: [
                    ("service-name".to_owned(), "svc".to_owned()),
                    ("environment".to_owned(), "prod".to_owned()),
                ]
                .into(),
                hostname: "h".into(),
                version: "0".into(),
            })
            .await
            .expect_err("a wrong join token registered an agent");
        assert!(
            matches!(
                refused.code(),
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
            ),
            "{refused:?}"
        );
    });
    // The right token passes the same door (or this test proves nothing).
    server.cli(&["status"]).success();
    // The public HTTP endpoints stay public; RELIABILITY.md lists them.
    assert_eq!(http::get(server.addr.port(), "/healthz").unwrap().0, 200);
}

#[test]
fn rotate_key_refuses_a_running_server_and_keeps_every_secret_readable() {
    use std::os::unix::fs::PermissionsExt;
    let service = Service::quickstart();
    let secret = format!("rotated-{}", unique::hex(12));
    let mut server = Server::start();
    cli::run_with_stdin(
        &server,
        &[
            "secrets",
            "set",
            &service.name,
            "API_KEY",
            "--env",
            &service.environment,
        ],
        &secret,
    )
    .success();
    let key_file = server.data_dir().join("secret.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();

    let rotate = |data_dir: &Path, extra: &[&str]| {
        let mut command = Command::new(binaries::launch());
        for var in SCRUBBED_ENV {
            command.env_remove(var);
        }
        command
            .args(["server", "rotate-key", "--data-dir"])
            .arg(data_dir)
            .args(extra);
        cli::finish(&["server", "rotate-key"], command, None)
    };
    let busy = rotate(server.data_dir(), &[]);
    busy.expect_code(1);
    assert!(busy.stderr.contains("stop it first"), "{busy}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), old_key);

    server.kill_hard();
    // Pointed at the wrong place it refuses before touching anything.
    let empty = tempfile::tempdir().unwrap();
    let nowhere = rotate(empty.path(), &[]);
    nowhere.expect_code(64);
    assert!(nowhere.stderr.contains("no secret key"), "{nowhere}");
    let wrong_db = format!("sqlite://{}/other.db", empty.path().display());
    let wrong = rotate(server.data_dir(), &["--database-url", &wrong_db]);
    wrong.expect_code(64);
    assert!(wrong.stderr.contains("--database-url"), "{wrong}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), old_key);
    assert!(!empty.path().join("other.db").exists());

    let rotated = rotate(server.data_dir(), &[]);
    rotated.success();
    assert!(
        rotated.stdout.contains("re-encrypted 1 secret"),
        "{rotated}"
    );
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(new_key, old_key);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        !server
            .store_bytes()
            .windows(secret.len())
            .any(|w| w == secret.as_bytes())
    );

    // The old key opens nothing: a server given it refuses to start.
    let mut command = Command::new(binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .env("LAUNCH_SECRET_KEY", old_key.trim())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir());
    let old = cli::finish(&["server"], command, None);
    assert_ne!(old.code, Some(0), "{old}");
    assert!(old.stderr.contains("rotate-key"), "{old}");

    // The restarted server decrypts with the new key: the agent gets the value.
    server.restart();
    let agent = Agent::start(&server, &service.name, &service.environment);
    let dir = service.dir_arg();
    server
        .cli(&service.deploy_args(&dir, &["--wait"]))
        .success();
    let env = find_env(agent.data_dir()).expect("the release has a .env");
    assert!(
        std::fs::read_to_string(&env).unwrap().contains(&secret),
        "the deployed .env lacks the secret after rotation"
    );
}

/// The first `.env` under `dir`.
fn find_env(dir: &Path) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if entry.file_name() == ".env" {
            return Some(path);
        }
        if entry.file_type().ok()?.is_dir()
            && let Some(found) = find_env(&path)
        {
            return Some(found);
        }
    }
    None
}

#[test]
fn a_secret_never_reaches_any_log_error_or_metric() {
    let service = Service::quickstart();
    let secret = format!("leak-canary-{}", unique::hex(16));
    let server = Server::start();
    let agent = Agent::start(&server, &service.name, &service.environment);
    let mut outputs: Vec<CliOutput> = Vec::new();

    // A healthy deploy with the secret from the environment.
    let dir = service.dir_arg();
    let deploy = |extra: &[&str]| {
        let args = service.deploy_args(&dir, extra);
        let mut command = cli::command(&server, &args);
        command.env("API_KEY", &secret);
        cli::finish(&args, command, None)
    };
    let ok = deploy(&["--secret-env", "API_KEY", "--wait"]);
    ok.success();
    outputs.push(ok);
    // A deploy that fails its health gate and rolls back.
    service.set_health("/no-such-file", "3s");
    let failed = deploy(&["--secret-env", "API_KEY", "--wait"]);
    failed.expect_code(1);
    outputs.push(failed);
    // Refused inputs that carry the value.
    let bad_key = cli::run_with_stdin(
        &server,
        &[
            "secrets",
            "set",
            &service.name,
            "BAD-KEY",
            "--env",
            &service.environment,
        ],
        &secret,
    );
    assert_ne!(bad_key.code, Some(0), "{bad_key}");
    outputs.push(bad_key);
    let mut wrong_token = cli::command(&server, &["secrets", "set", &service.name, "API_KEY"]);
    wrong_token.env("LAUNCH_TOKEN", "lt_admin_wrong");
    let wrong_token = cli::finish(
        &["secrets", "set"],
        wrong_token,
        Some(secret.clone().into_bytes()),
    );
    wrong_token.expect_code(3);
    outputs.push(wrong_token);
    let no_service = cli::run_with_stdin(
        &server,
        &[
            "secrets",
            "set",
            "no-such-service-x",
            "API_KEY",
            "--env",
            "nowhere",
        ],
        &secret,
    );
    outputs.push(no_service);
    // Directly over gRPC: a refused SetSecret's status must not echo the value.
    let status = grpc::runtime().block_on(async {
        let mut client = grpc::control_client(&server).await;
        client
            .set_secret(grpc::request(
                launch_proto::SetSecretRequest {
                    target: Some(launch_proto::ServiceRef {
                        service: service.name.clone(),
                        environment: service.environment.clone(),
                    }),
                    key: "1-not-a-name".into(),
                    value: secret.clone(),
                },
                &server.admin_token,
            ))
            .await
            .expect_err("an invalid key name was accepted")
    });
    assert!(!format!("{status:?}").contains(&secret), "{status:?}");

    let (code, metrics) = http::get(server.addr.port(), "/metrics").unwrap();
    assert_eq!(code, 200, "{metrics}");
    assert!(
        metrics.contains("launch_"),
        "is this the metrics page? {metrics}"
    );

    // The value really reached the host, so its absence elsewhere means something.
    let env = find_env(agent.data_dir()).expect("the release has a .env");
    assert!(std::fs::read_to_string(env).unwrap().contains(&secret));

    let mut leaks = Vec::new();
    for out in &outputs {
        if out.to_string().contains(&secret) {
            leaks.push(format!("`launch {}`:\n{out}", out.args.join(" ")));
        }
    }
    for (name, text) in [
        ("server stdout", server.process.stdout.text()),
        ("server stderr", server.process.stderr.text()),
        ("agent stdout", agent.process.stdout.text()),
        ("agent stderr", agent.process.stderr.text()),
        ("/metrics", metrics),
    ] {
        if text.contains(&secret) {
            leaks.push(format!("{name}:\n{text}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "the secret value leaked:\n{}",
        leaks.join("\n\n")
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let server = Server::start();
    let mut command = Command::new(binaries::launch());
    for var in SCRUBBED_ENV {
        command.env_remove(var);
    }
    command
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(server.data_dir());
    let second = cli::finish(&["server"], command, None);
    assert_ne!(second.code, Some(0), "{second}");
    assert!(second.stderr.contains("in use by a running"), "{second}");
    server.cli(&["status"]).success();
}

#[test]
fn a_secret_never_reaches_the_debug_logs_of_the_server_or_the_agent() {
    let service = Service::from_quickstart(&unique::service_name(), "prod");
    let server = OwnServer::spawn(None, "debug");
    let url = server.url();
    let token = server.cli(
        &url,
        None,
        &[
            "token",
            "create",
            "--service",
            &service.name,
            "--env",
            "prod",
        ],
    );
    token.success();
    let data = tempfile::tempdir().unwrap();
    let agent = spawn_agent_logging(
        &service.name,
        &url,
        None,
        token.stdout.trim(),
        data.path(),
        "debug",
    );
    agent
        .stdout
        .wait_for(CONNECT_TIMEOUT, |l| {
            l.starts_with("launch-agent connected as ")
        })
        .unwrap_or_else(|e| panic!("the agent did not connect: {e}\n{}", agent.stderr.text()));

    let secret = format!("debug-canary-{}", unique::hex(16));
    let dir = service.dir_arg();
    let args = service.deploy_args(&dir, &["--secret-env", "API_KEY", "--wait"]);
    let mut command = server.command(&url, None, &args);
    command.env("API_KEY", &secret);
    let deploy = cli::finish(&args, command, None);
    deploy.success();
    let env = find_env(data.path()).expect("the release has a .env");
    assert!(std::fs::read_to_string(env).unwrap().contains(&secret));
    assert!(
        server.process.stderr.text().contains("DEBUG"),
        "the server does not log at debug level: this test would prove little"
    );

    for (name, text) in [
        ("deploy", deploy.to_string()),
        ("server stdout", server.process.stdout.text()),
        ("server stderr (debug)", server.process.stderr.text()),
        ("agent stdout", agent.stdout.text()),
        ("agent stderr (debug)", agent.stderr.text()),
    ] {
        assert!(
            !text.contains(&secret),
            "the secret value is in the {name}:\n{text}"
        );
    }
}
