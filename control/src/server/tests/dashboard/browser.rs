//! A small browser for the dashboard tests: HTTP/1.1 requests on fresh
//! connections (hyper), login through the form with its CSRF cookie, the
//! session cookie and CSRF token kept, and a reader of server-sent events.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::super::*;

/// One HTTP/1.1 request on a fresh connection.
async fn send(addr: SocketAddr, request: hyper::Request<Full<Bytes>>) -> hyper::Response<Incoming> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    tokio::time::timeout(DEADLINE, sender.send_request(request))
        .await
        .expect("an answer within the deadline")
        .unwrap()
}

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

pub async fn fetch(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Page {
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "dash.test");
    if let Some(cookie) = cookie {
        builder = builder.header("cookie", cookie);
    }
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let body = if method == "POST" {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
        form_encode(form)
    } else {
        String::new()
    };
    let response = send(addr, builder.body(Full::new(Bytes::from(body))).unwrap()).await;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let is_stream = headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
    let body = if is_stream {
        String::new()
    } else {
        let bytes = tokio::time::timeout(DEADLINE, response.into_body().collect())
            .await
            .expect("a body within the deadline")
            .unwrap()
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Page {
        status,
        headers,
        body,
    }
}

fn form_encode(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A logged-in browser: its cookie and CSRF token.
pub struct Browser {
    pub addr: SocketAddr,
    pub cookie: String,
    pub csrf: String,
}

impl Browser {
    pub async fn login(addr: SocketAddr, token: &str) -> Result<Self, Page> {
        let form = fetch(addr, "GET", "/login", None, &[], &[]).await;
        assert_eq!(form.status, 200, "{}", form.body);
        let login_cookie = cookie_pair(&form.header("set-cookie"), "launch_login");
        let csrf = between(&form.body, "name=\"csrf\" value=\"", "\"");
        let done = fetch(
            addr,
            "POST",
            "/login",
            Some(&login_cookie),
            &[("token", token), ("csrf", &csrf)],
            &[],
        )
        .await;
        if done.status != 303 {
            return Err(done);
        }
        let cookie = cookie_pair(&done.header("set-cookie"), "launch_session");
        let home = fetch(addr, "GET", "/", Some(&cookie), &[], &[]).await;
        // A token that may not list every service is refused the services
        // page: its session has no CSRF token to read there.
        let csrf = if home.status == 200 {
            between(&home.body, "<meta name=\"csrf\" content=\"", "\"")
        } else {
            String::new()
        };
        Ok(Browser { addr, cookie, csrf })
    }

    pub async fn get(&self, path: &str) -> Page {
        fetch(self.addr, "GET", path, Some(&self.cookie), &[], &[]).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        fetch(self.addr, "POST", path, Some(&self.cookie), form, &[]).await
    }

    /// Opens a log stream, resuming after `last_event_id`.
    pub async fn stream(&self, path: &str, last_event_id: Option<u64>) -> SseReader {
        let mut builder = hyper::Request::builder()
            .uri(path)
            .header("host", "dash.test")
            .header("cookie", &self.cookie)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            builder = builder.header("last-event-id", id.to_string());
        }
        let response = send(self.addr, builder.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(response.status(), 200);
        SseReader {
            body: response.into_body(),
            buffer: String::new(),
        }
    }
}

/// `name=value` of the Set-Cookie header naming `name`.
pub fn cookie_pair(set_cookie: &str, name: &str) -> String {
    set_cookie
        .lines()
        .find(|line| line.starts_with(&format!("{name}=")))
        .and_then(|line| line.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {set_cookie:?}"))
        .to_owned()
}

pub fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in {text}"))
        + start.len();
    let to = text[from..].find(end).unwrap() + from;
    text[from..to].to_owned()
}

/// One server-sent event.
#[derive(Debug, PartialEq)]
pub struct Sse {
    pub id: String,
    pub event: String,
    pub data: String,
}

pub struct SseReader {
    body: Incoming,
    buffer: String,
}

impl SseReader {
    /// The next event with a name (comments and retry lines skipped).
    pub async fn next(&mut self) -> Sse {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Sse {
                    id: String::new(),
                    event: String::new(),
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                        event.id = v.to_owned();
                    } else if let Some(v) =
                        line.strip_prefix("event: ").or(line.strip_prefix("event:"))
                    {
                        event.event = v.to_owned();
                    } else if let Some(v) =
                        line.strip_prefix("data: ").or(line.strip_prefix("data:"))
                    {
                        event.data.push_str(v);
                    }
                }
                if !event.event.is_empty() {
                    return event;
                }
                continue;
            }
            let frame = tokio::time::timeout(DEADLINE, self.body.frame())
                .await
                .expect("an event within the deadline")
                .expect("the stream is open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// Waits for the stream to end (events before the end are skipped).
    pub async fn ended(&mut self) {
        loop {
            let frame = tokio::time::timeout(DEADLINE, self.body.frame())
                .await
                .expect("the stream ends within the deadline");
            match frame {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Events until (and with) the line of seq `until`.
    pub async fn until(&mut self, until: u64) -> Vec<Sse> {
        let mut events = Vec::new();
        loop {
            let event = self.next().await;
            let done = event.id == until.to_string();
            events.push(event);
            if done {
                return events;
            }
        }
    }
}
