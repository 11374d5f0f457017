//! The front door stopping (a shutdown, or a self-upgrade's hand-over:
//! both drain the same way) under a client that is sending a request at
//! that moment. The tests run on one thread, so the drain reaches the
//! connection before it has read what the client sent: hyper's own graceful
//! shutdown then closed the connection with the request unread, which the
//! client saw as a reset.

use super::*;

async fn routed_door() -> (Door, Upstream) {
    let door = door().await;
    let web = upstream("web").await;
    door.ingress
        .router
        .switch("web", &hosts(&["hello.test"]), Some((web.addr, "r1")))
        .unwrap();
    (door, web)
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: hello.test\r\n\r\n";

/// Reads one response with a `content-length` body: its head and body.
async fn read_response(stream: &mut TcpStream) -> Result<(String, String), String> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(0) => return Err(format!("the connection ended after {raw:?}")),
            Ok(_) => raw.push(byte[0]),
            Err(err) => return Err(format!("{err} after {raw:?}")),
        }
    }
    let head = String::from_utf8(raw).unwrap().to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    let mut body = vec![0u8; length];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|err| format!("{err} reading the body after {head:?}"))?;
    Ok((head, String::from_utf8(body).unwrap()))
}

async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_connection_accepted_as_the_front_door_stops_is_answered_and_closed() {
    let (door, _web) = routed_door().await;
    let mut client = TcpStream::connect(door.ingress.http_addr).await.unwrap();
    eventually("the front door to accept the connection", || {
        door.ingress.open_connections() == 1
    })
    .await;

    door.stop.cancel();
    client.write_all(REQUEST).await.unwrap();

    let (head, body) = read_response(&mut client).await.unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.starts_with("web host=hello.test"), "{body}");
    let mut rest = Vec::new();
    let end = client.read_to_end(&mut rest).await;
    assert!(
        matches!(end, Ok(0)),
        "the front door closes the connection after the answer: {end:?} {rest:?}"
    );
}

#[tokio::test]
async fn a_request_sent_on_a_keep_alive_connection_as_the_front_door_stops_is_answered() {
    let (door, _web) = routed_door().await;
    let mut client = TcpStream::connect(door.ingress.http_addr).await.unwrap();
    client.write_all(REQUEST).await.unwrap();
    let (head, _) = read_response(&mut client).await.unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");

    // The next request is on its way as the drain starts.
    client.write_all(REQUEST).await.unwrap();
    door.stop.cancel();

    let (head, body) = read_response(&mut client).await.unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(body.starts_with("web host=hello.test"), "{body}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_by_the_drain() {
    let (door, _web) = routed_door().await;
    let mut client = TcpStream::connect(door.ingress.http_addr).await.unwrap();
    client.write_all(REQUEST).await.unwrap();
    read_response(&mut client).await.unwrap();

    door.stop.cancel();

    let mut rest = Vec::new();
    let end = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest)).await;
    assert!(
        matches!(end, Ok(Ok(0))),
        "an idle connection ends with the drain, cleanly: {end:?} {rest:?}"
    );
    drop(client);
    eventually("the connection to be closed", || {
        door.ingress.open_connections() == 0
    })
    .await;
}
