//! TLS between the CLI or an agent and the control plane: the right CA
//! works end to end (a whole deploy, HTTP/1.1 on the same port, a clean
//! SIGINT), a wrong CA or none is refused saying what to give while the agent
//! keeps retrying, and plain HTTP to the TLS port (or TLS to a plain one)
//! fails clearly.

use std::process::Command;
use std::time::Duration;

use launch_e2e::poll::eventually;
use launch_e2e::{Server, Service, http, unique};

use super::{CONNECT_TIMEOUT, OwnServer, START_TIMEOUT, spawn_agent};
use crate::certs::Certs;

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
