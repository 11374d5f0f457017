//! A browser of the web dashboard without a browser, for benchmarks: log in
//! through the form (its `launch_login` cookie and CSRF token) and keep the
//! `launch_session` cookie, then follow a mission's log stream
//! (`/missions/{id}/stream`, server-sent events) on its own HTTP/1.1
//! connection, checking that lines come once each and in order.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// One request on a fresh HTTP/1.1 connection.
async fn send(
    addr: SocketAddr,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(connection);
    sender
        .send_request(request)
        .await
        .map_err(|e| format!("{e}"))
}

async fn body_text(response: hyper::Response<Incoming>) -> Result<String, String> {
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("read body: {e}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `name=value` of the `Set-Cookie` header naming `name`.
fn cookie(response: &hyper::Response<Incoming>, name: &str) -> Result<String, String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} cookie in the answer"))
}

/// A logged-in dashboard session.
pub struct Session {
    addr: SocketAddr,
    cookie: String,
}

impl Session {
    /// Logs in with `token` as a person would through the login form.
    pub async fn login(addr: SocketAddr, token: &str) -> Result<Session, String> {
        let get = hyper::Request::get("/login")
            .header("host", "dash.bench")
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let form = send(addr, get).await?;
        let login_cookie = cookie(&form, "launch_login")?;
        let page = body_text(form).await?;
        let csrf = page
            .split_once("name=\"csrf\" value=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(csrf, _)| csrf.to_owned())
            .ok_or("no CSRF token in the login form")?;
        // Tokens and CSRF values are URL-safe: no form encoding needed.
        let post = hyper::Request::post("/login")
            .header("host", "dash.bench")
            .header("cookie", login_cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(format!("token={token}&csrf={csrf}"))))
            .expect("a valid request");
        let done = send(addr, post).await?;
        if done.status() != 303 {
            return Err(format!("login answered {}", done.status()));
        }
        let cookie = cookie(&done, "launch_session")?;
        Ok(Session { addr, cookie })
    }

    /// Opens `/missions/{mission_id}/stream` from its first line.
    pub async fn follow_mission(&self, mission_id: &str) -> Result<LogStream, String> {
        let request = hyper::Request::get(format!("/missions/{mission_id}/stream"))
            .header("host", "dash.bench")
            .header("cookie", &self.cookie)
            .header("accept", "text/event-stream")
            .body(Full::new(Bytes::new()))
            .expect("a valid request");
        let response = send(self.addr, request).await?;
        if response.status() != 200 {
            return Err(format!("the log stream answered {}", response.status()));
        }
        Ok(LogStream {
            body: response.into_body(),
            buffer: Vec::new(),
        })
    }
}

/// A mission's log stream as a browser reads it.
pub struct LogStream {
    body: Incoming,
    buffer: Vec<u8>,
}

/// What a follower saw of lines 1..=`through`.
#[derive(Debug, Default)]
pub struct Followed {
    /// `line` events received.
    pub lines: u64,
    /// Lines whose id was not the next one expected (repeated, skipped or
    /// out of order), and `gap` events: both must be 0.
    pub out_of_order: u64,
    /// When the line `through` arrived.
    pub last_at: Option<Instant>,
}

impl LogStream {
    /// Reads events until the line with id `through`, counting lines and
    /// checking their ids run 1, 2, 3, …; gives up after `idle` without data.
    pub async fn read_through(mut self, through: u64, idle: Duration) -> Result<Followed, String> {
        let mut followed = Followed::default();
        let mut next = 1;
        loop {
            // Each complete event (a block ending in a blank line) in turn.
            let mut start = 0;
            while let Some(end) = self.buffer[start..].windows(2).position(|w| w == b"\n\n") {
                let block = &self.buffer[start..start + end];
                start += end + 2;
                let (mut id, mut event) = (None, "");
                for line in block.split(|&b| b == b'\n') {
                    if let Some(value) = line.strip_prefix(b"id:") {
                        id = std::str::from_utf8(value)
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok());
                    } else if let Some(value) = line.strip_prefix(b"event:") {
                        event = match value.trim_ascii() {
                            b"line" => "line",
                            b"gap" => "gap",
                            _ => "other",
                        };
                    }
                }
                match event {
                    "line" => {
                        followed.lines += 1;
                        if id == Some(next) {
                            next += 1;
                        } else {
                            followed.out_of_order += 1;
                            next = id.unwrap_or(next) + 1;
                        }
                    }
                    "gap" => followed.out_of_order += 1,
                    _ => {}
                }
                if id == Some(through) {
                    followed.last_at = Some(Instant::now());
                    return Ok(followed);
                }
            }
            self.buffer.drain(..start);
            let frame = tokio::time::timeout(idle, self.body.frame())
                .await
                .map_err(|_| {
                    format!(
                        "nothing for {idle:?} after {} lines (next id {next})",
                        followed.lines
                    )
                })?
                .ok_or_else(|| format!("the stream ended after {} lines", followed.lines))?
                .map_err(|e| format!("reading the stream: {e}"))?;
            if let Ok(data) = frame.into_data() {
                self.buffer.extend_from_slice(&data);
            }
        }
    }
}
