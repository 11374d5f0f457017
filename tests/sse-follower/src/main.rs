//! Many dashboards following one mission's log stream, for the fan-out
//! benchmark (`tests/benches/dashboard_fanout.rs`): a browser does this
//! work on its own machine, so the benchmark runs it in a process of its
//! own, std only and optimised, where its cost is small and measured apart
//! from the server's and the fake agent's.
//!
//! `sse-follower ADDR MISSION_ID THROUGH IDLE_SECS`, with one logged-in
//! session cookie (`launch_session=…`) a line on stdin for each follower,
//! then an empty line.
//! Each follower opens `/missions/MISSION_ID/stream` on its own HTTP/1.1
//! connection. Once every stream has answered 200 it prints `ready`; then a
//! line per follower: `done I LINES OUT_OF_ORDER` when the line with id
//! THROUGH came, or `failed I WHY`; then `finished`, and it waits for the
//! end of stdin (so the caller can read its CPU time first) and exits, 0
//! only when every follower got every line to THROUGH once and in order.

mod chunked;
mod events;

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use chunked::Chunked;
use events::Checker;

/// One follower's request, as the command line and stdin give it.
struct Follow {
    addr: String,
    mission_id: String,
    cookie: String,
    through: u64,
    idle: Duration,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, mission_id, through, idle] = args.as_slice() else {
        eprintln!("usage: sse-follower ADDR MISSION_ID THROUGH IDLE_SECS < cookies");
        std::process::exit(2);
    };
    let (Ok(through), Ok(idle)) = (through.parse(), idle.parse()) else {
        eprintln!("sse-follower: THROUGH and IDLE_SECS are whole numbers");
        std::process::exit(2);
    };
    let mut stdin = std::io::stdin().lock();
    let cookies: Vec<String> = stdin
        .by_ref()
        .lines()
        .map_while(Result::ok)
        .take_while(|line| !line.trim().is_empty())
        .collect();

    let (opened_tx, opened) = mpsc::channel();
    let followers: Vec<_> = cookies
        .into_iter()
        .enumerate()
        .map(|(i, cookie)| {
            let follow = Follow {
                addr: addr.clone(),
                mission_id: mission_id.clone(),
                cookie,
                through,
                idle: Duration::from_secs(idle),
            };
            let opened = opened_tx.clone();
            std::thread::spawn(move || {
                let result = run(&follow, || {
                    let _ = opened.send(());
                });
                let mut out = std::io::stdout().lock();
                let ok = match &result {
                    Ok(checker) if checker.out_of_order == 0 => {
                        let _ = writeln!(out, "done {i} {} 0", checker.lines);
                        true
                    }
                    Ok(checker) => {
                        let _ =
                            writeln!(out, "done {i} {} {}", checker.lines, checker.out_of_order);
                        false
                    }
                    Err(why) => {
                        let _ = writeln!(out, "failed {i} {why}");
                        false
                    }
                };
                let _ = out.flush();
                ok
            })
        })
        .collect();
    drop(opened_tx);
    // Every stream answered, or one ended before it could.
    if opened.iter().take(followers.len()).count() == followers.len() {
        println!("ready");
        let _ = std::io::stdout().flush();
    }
    // Every thread joined (not `all`, which would stop at the first failure).
    let outcomes: Vec<bool> = followers
        .into_iter()
        .map(|f| f.join().unwrap_or(false))
        .collect();
    let all = outcomes.iter().all(|&ok| ok);
    println!("finished");
    let _ = std::io::stdout().flush();
    let _ = std::io::copy(&mut stdin, &mut std::io::sink());
    std::process::exit(if all { 0 } else { 1 });
}

/// Follows one stream until the line with id `through`; `opened` is
/// called once the server has answered 200.
fn run(follow: &Follow, opened: impl FnOnce()) -> Result<Checker, String> {
    let mut stream =
        TcpStream::connect(&follow.addr).map_err(|e| format!("connect {}: {e}", follow.addr))?;
    stream
        .set_read_timeout(Some(follow.idle))
        .map_err(|e| format!("set a read timeout: {e}"))?;
    let request = format!(
        "GET /missions/{}/stream HTTP/1.1\r\nhost: dash.bench\r\ncookie: {}\r\naccept: text/event-stream\r\n\r\n",
        follow.mission_id, follow.cookie
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send the request: {e}"))?;

    let mut buffer = vec![0u8; 64 * 1024];
    let mut head = Vec::new();
    let (chunked, rest) = loop {
        let n = read(&mut stream, &mut buffer, follow.idle, "the answer's head")?;
        head.extend_from_slice(&buffer[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = head.split_off(end + 4);
            break (response_head(&head)?, rest);
        }
    };
    opened();

    let mut checker = Checker::new();
    let mut decoder = chunked.then(Chunked::default);
    let mut input = rest;
    loop {
        let ended = match decoder.as_mut() {
            Some(decoder) => decoder.feed(&input, &mut checker.pending)?,
            None => {
                checker.pending.extend_from_slice(&input);
                false
            }
        };
        checker.scan();
        if checker.last_id >= follow.through {
            return Ok(checker);
        }
        if ended {
            return Err(format!("the stream ended after {} lines", checker.lines));
        }
        let n = read(&mut stream, &mut buffer, follow.idle, "the stream")?;
        if n == 0 {
            return Err(format!(
                "the connection closed after {} lines",
                checker.lines
            ));
        }
        input.clear();
        input.extend_from_slice(&buffer[..n]);
    }
}

fn read(
    stream: &mut TcpStream,
    buffer: &mut [u8],
    idle: Duration,
    what: &str,
) -> Result<usize, String> {
    stream.read(buffer).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("nothing of {what} for {idle:?}")
        }
        _ => format!("reading {what}: {e}"),
    })
}

/// Checks the status is 200; `true` when the body is chunked.
fn response_head(head: &[u8]) -> Result<bool, String> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("the log stream answered {status:?}"));
    }
    Ok(lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    }))
}
