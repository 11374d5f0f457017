//! The front door against real sockets: a real upstream on port 0 (a small
//! hyper server that reports what it received, can hold a response, and
//! echoes after an `Upgrade`), the real listeners, and clients speaking raw
//! HTTP/1.1 or TLS + HTTP/2 with a certificate made by rcgen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;

use super::*;

mod drain;

/// An upstream named `name`: `/hold` waits until `release` is notified,
/// an `Upgrade` request gets 101 and then an echo, anything else answers
/// with what it saw.
struct Upstream {
    addr: SocketAddr,
    release: Arc<Notify>,
    stop: CancellationToken,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn upstream(name: &'static str) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let release = Arc::new(Notify::new());
    let stop = CancellationToken::new();
    let (held, stopped) = (release.clone(), stop.clone());
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = stopped.cancelled() => return,
                accepted = listener.accept() => accepted.unwrap(),
            };
            let held = held.clone();
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let held = held.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(name, req, held).await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades(),
            );
        }
    });
    Upstream {
        addr,
        release,
        stop,
    }
}

async fn answer(
    name: &str,
    mut req: Request<Incoming>,
    held: Arc<Notify>,
) -> Response<Full<Bytes>> {
    if req.headers().contains_key("upgrade") {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let mut io = TokioIo::new(upgrade.await.unwrap());
            let mut buf = [0u8; 64];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "echo")
            .body(Full::default())
            .unwrap();
    }
    if req.uri().path() == "/hold" {
        held.notified().await;
    }
    let (parts, body) = req.into_parts();
    let header = |h: &str| {
        parts
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let text = format!(
        "{name} host={} xff={} proto={} xhost={} body={}",
        header("host"),
        header("x-forwarded-for"),
        header("x-forwarded-proto"),
        header("x-forwarded-host"),
        String::from_utf8_lossy(&body)
    );
    Response::new(Full::new(Bytes::from(text)))
}

struct Door {
    ingress: Ingress,
    stop: CancellationToken,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Door {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn settings(timeouts: Timeouts) -> Settings {
    Settings {
        http: "127.0.0.1:0".parse().unwrap(),
        https: "127.0.0.1:0".parse().unwrap(),
        timeouts,
        drain: DEFAULT_DRAIN,
        extra_hosts: Vec::new(),
    }
}

async fn door_in(dir: &Path, certificates: Arc<dyn Certificates>, timeouts: Timeouts) -> Door {
    let stop = CancellationToken::new();
    let router = Arc::new(Router::restore(table_path(dir), certificates.clone()).unwrap());
    let ingress = Ingress::start(&settings(timeouts), router, certificates, stop.clone())
        .await
        .unwrap();
    Door {
        ingress,
        stop,
        _dir: None,
    }
}

async fn door() -> Door {
    let dir = tempfile::tempdir().unwrap();
    let mut door = door_in(dir.path(), Arc::new(NoCertificates), Timeouts::default()).await;
    door._dir = Some(dir);
    door
}

/// One HTTP/1.1 request with `Connection: close`: the status and body.
async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    parse(&response)
}

fn parse(response: &str) -> (u16, String) {
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn hosts(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn requests_go_to_the_service_that_answers_their_host() {
    let door = door().await;
    let web = upstream("web").await;
    let router = &door.ingress.router;
    router
        .switch("web", &hosts(&["hello.test"]), Some((web.addr, "r1")))
        .unwrap();
    router.switch("api", &hosts(&["api.test"]), None).unwrap();

    let (status, body) = get(door.ingress.http_addr, "Hello.Test:80", "/x?y=1").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("web host=Hello.Test:80 xff=127.0.0.1 proto=http xhost=Hello.Test:80"),
        "{body}"
    );

    let (status, body) = get(door.ingress.http_addr, "other.test", "/").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("other.test"), "{body}");

    let (status, body) = get(door.ingress.http_addr, "api.test", "/").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("service api has no healthy release"),
        "{body}"
    );

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = closed.local_addr().unwrap();
    drop(closed);
    router
        .switch("api", &hosts(&["api.test"]), Some((refused, "r2")))
        .unwrap();
    let (status, body) = get(door.ingress.http_addr, "api.test", "/").await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("service api did not answer"), "{body}");
}

#[tokio::test]
async fn a_host_name_belongs_to_one_service() {
    let door = door().await;
    let router = &door.ingress.router;
    router.switch("web", &hosts(&["hello.test"]), None).unwrap();
    let error = router
        .switch("api", &hosts(&["HELLO.test"]), None)
        .unwrap_err();
    assert!(
        error.to_string().contains("already routes to service web"),
        "{error}"
    );
    assert!(
        router
            .switch("web", &hosts(&["hello.test", "www.test"]), None)
            .is_ok()
    );
}

#[tokio::test]
async fn the_route_table_is_restored_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let web = upstream("web").await;
    {
        let first = door_in(dir.path(), Arc::new(NoCertificates), Timeouts::default()).await;
        first
            .ingress
            .router
            .switch("web", &hosts(&["hello.test"]), Some((web.addr, "r1")))
            .unwrap();
    }
    let second = door_in(dir.path(), Arc::new(NoCertificates), Timeouts::default()).await;
    let (status, body) = get(second.ingress.http_addr, "hello.test", "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("web "), "{body}");
    assert_eq!(
        second.ingress.router.target("web").unwrap().release_id,
        "r1"
    );
}

#[tokio::test]
async fn a_switch_sends_new_requests_to_the_new_target_and_drains_the_old() {
    let door = door().await;
    let (old, new) = (upstream("old").await, upstream("new").await);
    let router = door.ingress.router.clone();
    router
        .switch("web", &hosts(&["hello.test"]), Some((old.addr, "r1")))
        .unwrap();
    let addr = door.ingress.http_addr;
    let held = tokio::spawn(async move { get(addr, "hello.test", "/hold").await });
    let target = router.target("web").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while target.requests() == 0 {
        assert!(Instant::now() < deadline, "the held request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let previous = router
        .switch("web", &hosts(&["hello.test"]), Some((new.addr, "r2")))
        .unwrap()
        .expect("the old target is handed back for draining");
    let (status, body) = get(addr, "hello.test", "/").await;
    assert_eq!((status, body.split(' ').next().unwrap()), (200, "new"));

    let drain = tokio::spawn(async move { previous.drain(Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !drain.is_finished(),
        "the drain must wait for the held request"
    );
    old.release.notify_one();
    let (status, body) = held.await.unwrap();
    assert_eq!((status, body.split(' ').next().unwrap()), (200, "old"));
    let drained = drain.await.unwrap();
    assert_eq!(drained.cut_requests, 0);
}

#[tokio::test]
async fn a_drain_gives_up_on_requests_at_its_deadline() {
    let target = Target::new("127.0.0.1:9".parse().unwrap(), "r1");
    let _stuck = target.request();
    let drained = target.drain(Duration::from_millis(50)).await;
    assert_eq!(drained.cut_requests, 1);
}

#[tokio::test]
async fn an_upgraded_connection_lives_until_the_end_of_the_drain() {
    let door = door().await;
    let (old, new) = (upstream("old").await, upstream("new").await);
    let router = door.ingress.router.clone();
    router
        .switch("web", &hosts(&["hello.test"]), Some((old.addr, "r1")))
        .unwrap();
    let mut stream = TcpStream::connect(door.ingress.http_addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: hello.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed during the head"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    let previous = router
        .switch("web", &hosts(&["hello.test"]), Some((new.addr, "r2")))
        .unwrap()
        .unwrap();
    assert_eq!(previous.tunnels(), 1);
    stream.write_all(b"after the switch").await.unwrap();
    let mut echoed = [0u8; 16];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"after the switch");

    let drained = previous.drain(Duration::from_secs(5)).await;
    assert_eq!(drained.closed_tunnels, 1);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the tunnel ends with a clean close: {read:?}"
    );
    assert_eq!(previous.tunnels(), 0);
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let timeouts = Timeouts {
        header: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let door = door_in(dir.path(), Arc::new(NoCertificates), timeouts).await;
    let mut slow = TcpStream::connect(door.ingress.http_addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: hel")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the slow client was never disconnected");
    // Positive control: a client that sends its headers in time is answered.
    let (status, _) = get(door.ingress.http_addr, "hello.test", "/").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_request_body_that_stalls_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let timeouts = Timeouts {
        body: Duration::from_millis(300),
        ..Timeouts::default()
    };
    let door = door_in(dir.path(), Arc::new(NoCertificates), timeouts).await;
    let web = upstream("web").await;
    door.ingress
        .router
        .switch("web", &hosts(&["hello.test"]), Some((web.addr, "r1")))
        .unwrap();
    let addr = door.ingress.http_addr;
    let post = |body: &'static str, length: usize| async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: hello.test\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n{body}"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut response = String::new();
        let read = tokio::time::timeout(
            Duration::from_secs(10),
            stream.read_to_string(&mut response),
        )
        .await;
        (read.is_ok(), parse(&response))
    };
    let (answered, (status, body)) = post("hello", 5).await;
    assert!(answered);
    assert_eq!(status, 200);
    assert!(body.ends_with("body=hello"), "{body}");
    let (answered, (status, _)) = post("hel", 5).await;
    assert!(
        answered,
        "a stalled upload must not hold the connection forever"
    );
    assert_ne!(status, 200);
}

/// Certificates for `hello.test` from rcgen, and one pending HTTP-01 token.
struct TestCertificates {
    resolver: Arc<rustls::server::ResolvesServerCertUsingSni>,
    root: rustls::pki_types::CertificateDer<'static>,
    names: std::sync::Mutex<Vec<String>>,
    forgotten: std::sync::Mutex<Vec<String>>,
}

impl TestCertificates {
    fn new() -> Arc<TestCertificates> {
        let made = rcgen::generate_simple_self_signed(vec!["hello.test".to_owned()]).unwrap();
        let der = made.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into());
        let signing = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
        let mut resolver = rustls::server::ResolvesServerCertUsingSni::new();
        resolver
            .add(
                "hello.test",
                rustls::sign::CertifiedKey::new(vec![der.clone()], signing),
            )
            .unwrap();
        Arc::new(TestCertificates {
            resolver: Arc::new(resolver),
            root: der,
            names: std::sync::Mutex::new(Vec::new()),
            forgotten: std::sync::Mutex::new(Vec::new()),
        })
    }
}

impl Certificates for TestCertificates {
    fn resolver(&self) -> Arc<dyn rustls::server::ResolvesServerCert> {
        self.resolver.clone()
    }
    fn has_certificate(&self, host: &str) -> bool {
        host == "hello.test"
    }
    fn http01_response(&self, token: &str) -> Option<String> {
        (token == "tok-1").then(|| "tok-1.thumbprint".to_owned())
    }
    fn set_names(&self, names: &[String]) {
        *self.names.lock().unwrap() = names.to_vec();
    }
    fn forget(&self, names: &[String]) {
        self.forgotten.lock().unwrap().extend_from_slice(names);
    }
}

#[tokio::test]
async fn removing_routes_drops_only_the_matching_ones_and_forgets_their_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::new();
    let door = door_in(dir.path(), certificates.clone(), Timeouts::default()).await;
    let router = &door.ingress.router;
    let web = upstream("web").await;
    router
        .switch("web", &hosts(&["hello.test"]), Some((web.addr, "r1")))
        .unwrap();
    router
        .switch(
            "web@pr-1",
            &hosts(&["pr-1.hello.test"]),
            Some((web.addr, "r2")),
        )
        .unwrap();

    let removed = router
        .remove_matching(|key| key.ends_with("@pr-1"))
        .unwrap();
    assert_eq!(removed, vec!["web@pr-1"]);
    assert_eq!(
        *certificates.forgotten.lock().unwrap(),
        vec!["pr-1.hello.test"]
    );
    assert!(
        router.target("web").is_some() && router.snapshot().names() == ["hello.test"],
        "the other route must stay: {:?}",
        router.snapshot()
    );
    let saved = std::fs::read_to_string(table_path(dir.path())).unwrap();
    assert!(saved.contains("hello.test"), "{saved}");
    assert!(
        !saved.contains("pr-1.hello.test"),
        "the removal must be saved: {saved}"
    );

    assert!(
        router
            .remove_matching(|key| key.ends_with("@pr-1"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(router.remove_matching(|_| true).unwrap(), vec!["web"]);
    assert!(router.snapshot().routes.is_empty());
}

async fn tls_connect(
    addr: SocketAddr,
    root: &rustls::pki_types::CertificateDer<'static>,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(addr).await?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(server_name, stream).await
}

#[tokio::test]
async fn https_serves_http2_by_sni_and_plain_http_redirects() {
    let dir = tempfile::tempdir().unwrap();
    let certificates = TestCertificates::new();
    let door = door_in(dir.path(), certificates.clone(), Timeouts::default()).await;
    let web = upstream("web").await;
    door.ingress
        .router
        .switch(
            "web",
            &hosts(&["hello.test", "other.test"]),
            Some((web.addr, "r1")),
        )
        .unwrap();
    assert_eq!(
        *certificates.names.lock().unwrap(),
        vec!["hello.test", "other.test"],
        "the certificate side is told the routed names"
    );

    let tls = tls_connect(door.ingress.https_addr, &certificates.root, "hello.test")
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::get("https://hello.test/page")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), hyper::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.starts_with("web host=hello.test xff=127.0.0.1 proto=https"),
        "{body}"
    );

    // No certificate for other.test: the handshake fails, no default certificate.
    assert!(
        tls_connect(door.ingress.https_addr, &certificates.root, "other.test")
            .await
            .is_err()
    );

    let (status, _) = get(door.ingress.http_addr, "hello.test", "/page?a=1").await;
    assert_eq!(status, 308);
    let mut stream = TcpStream::connect(door.ingress.http_addr).await.unwrap();
    stream
        .write_all(b"GET /page?a=1 HTTP/1.1\r\nHost: hello.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let location = format!(
        "location: https://hello.test:{}/page?a=1",
        door.ingress.https_addr.port()
    );
    assert!(response.to_lowercase().contains(&location), "{response}");
    // A name without a certificate stays on plain HTTP.
    let (status, body) = get(door.ingress.http_addr, "other.test", "/").await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = get(
        door.ingress.http_addr,
        "any.test",
        "/.well-known/acme-challenge/tok-1",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "tok-1.thumbprint"));
    let (status, _) = get(
        door.ingress.http_addr,
        "any.test",
        "/.well-known/acme-challenge/tok-2",
    )
    .await;
    assert_eq!(status, 404);
}
