//! A fault-injecting HTTP proxy in front of moto: it answers the next N
//! requests (or all of them) itself with an error EC2 really returns (503
//! Service Unavailable, or 400 `RequestLimitExceeded` throttling) and forwards
//! the rest. It proves the provider retries what AWS says is retryable and
//! reports a clear error when retries run out. It also counts the requests
//! it forwarded by EC2 action, so a test can say how many calls a plan made.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// HTTP 503 with EC2's `Unavailable` error body.
    Unavailable,
    /// HTTP 400 `RequestLimitExceeded`, EC2's throttling error.
    Throttling,
}

#[derive(Default)]
struct Counters {
    fail_next: AtomicU32,
    fail_all: AtomicBool,
    throttle: AtomicBool,
    failed: AtomicU32,
    forwarded: AtomicU32,
    /// Forwarded requests by their `Action=` (EC2's query protocol).
    actions: Mutex<BTreeMap<String, u32>>,
}

pub struct FaultProxy {
    pub port: u16,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().unwrap().port();
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counters.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let c = c.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream_port, &c);
                });
            }
        });
        FaultProxy {
            port,
            counters,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Fails the next `n` requests with `fault`, then forwards again.
    pub fn fail_next(&self, n: u32, fault: Fault) {
        self.counters
            .throttle
            .store(fault == Fault::Throttling, Ordering::SeqCst);
        self.counters.fail_next.store(n, Ordering::SeqCst);
    }

    /// Fails every request with `fault` (or forwards every one again).
    pub fn fail_all(&self, on: bool, fault: Fault) {
        self.counters
            .throttle
            .store(fault == Fault::Throttling, Ordering::SeqCst);
        self.counters.fail_all.store(on, Ordering::SeqCst);
    }

    pub fn failed(&self) -> u32 {
        self.counters.failed.load(Ordering::SeqCst)
    }

    pub fn forwarded(&self) -> u32 {
        self.counters.forwarded.load(Ordering::SeqCst)
    }

    /// How many forwarded requests called `action`, e.g. "DescribeInstances".
    pub fn calls(&self, action: &str) -> u32 {
        let actions = self.counters.actions.lock().expect("action counts");
        actions.get(action).copied().unwrap_or(0)
    }

    /// Forgets the counts of every action.
    pub fn reset_calls(&self) {
        self.counters.actions.lock().expect("action counts").clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request per connection: read it, fail it or forward it, close.
fn serve(client: TcpStream, upstream_port: u16, counters: &Counters) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
            if name.eq_ignore_ascii_case("connection") {
                continue;
            }
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;

    let mut client = client;
    let fail = counters.fail_all.load(Ordering::SeqCst)
        || counters
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    if fail {
        counters.failed.fetch_add(1, Ordering::SeqCst);
        let (status, code, message) = if counters.throttle.load(Ordering::SeqCst) {
            (
                "400 Bad Request",
                "RequestLimitExceeded",
                "Request limit exceeded.",
            )
        } else {
            (
                "503 Service Unavailable",
                "Unavailable",
                "The service is unavailable. Please try again shortly.",
            )
        };
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
        );
        write!(
            client,
            "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        return client.flush();
    }
    counters.forwarded.fetch_add(1, Ordering::SeqCst);
    if let Some(action) = action(&body) {
        *counters
            .actions
            .lock()
            .expect("action counts")
            .entry(action)
            .or_default() += 1;
    }
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    upstream.write_all(&head)?;
    upstream.write_all(&body)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    // Tell the client this connection ends here, so it never reuses it.
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(response.len());
    let has_close = String::from_utf8_lossy(&response[..head_end])
        .to_ascii_lowercase()
        .contains("\r\nconnection: close");
    if let (false, Some(status_end)) = (has_close, response.windows(2).position(|w| w == b"\r\n")) {
        response.splice(
            status_end + 2..status_end + 2,
            b"Connection: close\r\n".iter().copied(),
        );
    }
    client.write_all(&response)?;
    client.flush()
}

/// The `Action` of a form-encoded EC2 request body.
fn action(body: &[u8]) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(str::to_owned)
}
