//! Following the running release's container output, as runtime lines of the
//! mission that deployed it (so `launch logs -f` keeps showing the service
//! between deploys). Each container of the compose project is followed with
//! `docker logs -f --timestamps --since <cursor>`, and the newest timestamp
//! read from each is kept in a cursor file beside the releases. A restarted
//! agent resumes every container from its cursor, so what a container printed
//! while its agent was down still arrives, and nothing arrives twice.
//! Cursors are saved within a quarter second of moving; containers that
//! appear later (recreated, restarted) are picked up by a poll every second;
//! the follower stops when the next mission starts.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use launch_proto::LogStream;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::compose::docker_output;
use crate::uplink::Sink;

/// How often cursors are saved when they moved.
const SAVE: Duration = Duration::from_millis(250);
/// How often the project's containers are listed (every this many saves).
const LIST_EVERY: u32 = 4;

/// Where following starts for containers with no cursor yet.
#[derive(Clone, Debug)]
pub enum Start {
    /// From this moment (a unix time docker's `--since` understands).
    At(String),
    /// From now: containers already running keep their history to themselves.
    Now,
}

impl Start {
    /// The current time, for "what containers print from now on".
    pub fn now() -> Start {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Start::At(format!("{}.{:09}", now.as_secs(), now.subsec_nanos()))
    }
}

pub struct Follower {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Follower {
    /// Follows every container of `project`, keeping cursors in `cursor_file`.
    pub fn start(project: String, start: Start, sink: Sink, cursor_file: PathBuf) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(project, start, sink, cursor_file, stop.clone()));
        Follower { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Newest docker timestamp read per container id.
type Cursors = Arc<Mutex<BTreeMap<String, String>>>;

async fn follow(
    project: String,
    start: Start,
    sink: Sink,
    cursor_file: PathBuf,
    stop: CancellationToken,
) {
    let saved: BTreeMap<String, String> = std::fs::read_to_string(&cursor_file)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let cursors: Cursors = Arc::new(Mutex::new(saved));
    let Start::At(default_since) = (match start {
        Start::Now => Start::now(),
        at => at,
    }) else {
        unreachable!("Start::now() is always At")
    };
    // Forget cursors of containers that no longer exist.
    if let Ok(all) = docker_output(
        &[
            "ps",
            "-a",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ],
        Duration::from_secs(20),
    )
    .await
    {
        let existing: Vec<&str> = all.split_whitespace().collect();
        cursors
            .lock()
            .expect("cursor lock")
            .retain(|id, _| existing.contains(&id.as_str()));
    }
    let mut readers: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut written = String::new();
    let filter = format!("label=com.docker.compose.project={project}");
    let mut tick: u32 = 0;
    loop {
        readers.retain(|_, task| !task.is_finished());
        let listing = if tick.is_multiple_of(LIST_EVERY) {
            docker_output(
                &["ps", "-q", "--no-trunc", "--filter", &filter],
                Duration::from_secs(20),
            )
            .await
            .ok()
        } else {
            None
        };
        tick = tick.wrapping_add(1);
        if let Some(listing) = listing {
            for id in listing.split_whitespace() {
                if readers.contains_key(id) {
                    continue;
                }
                let since = cursors.lock().expect("cursor lock").get(id).cloned();
                let since = since.unwrap_or_else(|| default_since.clone());
                let source = container_source(id, &project).await;
                readers.insert(
                    id.to_owned(),
                    tokio::spawn(read_container(
                        id.to_owned(),
                        source,
                        since,
                        sink.clone(),
                        cursors.clone(),
                        stop.clone(),
                    )),
                );
            }
        }
        let snapshot =
            serde_json::to_string(&*cursors.lock().expect("cursor lock")).unwrap_or_default();
        if snapshot != written
            && launch_core::private_file::write_private(&cursor_file, snapshot.as_bytes()).is_ok()
        {
            written = snapshot;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(SAVE) => {}
        }
    }
    for (_, task) in readers {
        let _ = task.await;
    }
    let snapshot =
        serde_json::to_string(&*cursors.lock().expect("cursor lock")).unwrap_or_default();
    let _ = launch_core::private_file::write_private(&cursor_file, snapshot.as_bytes());
}

/// The container's name without the project prefix: `web_1` (v1) or `web-1` (v2).
async fn container_source(id: &str, project: &str) -> String {
    let name = docker_output(
        &["inspect", "--format", "{{.Name}}", id],
        Duration::from_secs(20),
    )
    .await
    .map(|n| n.trim().trim_start_matches('/').to_owned())
    .unwrap_or_default();
    source_name(&name, project)
}

pub fn source_name(container: &str, project: &str) -> String {
    let short = container
        .strip_prefix(project)
        .and_then(|rest| rest.strip_prefix(['_', '-']))
        .unwrap_or(container);
    if short.is_empty() {
        "container".to_owned()
    } else {
        short.to_owned()
    }
}

async fn read_container(
    id: String,
    source: String,
    since: String,
    sink: Sink,
    cursors: Cursors,
    stop: CancellationToken,
) {
    let mut command = Command::new("docker");
    command
        .args(["logs", "-f", "--timestamps", "--since", &since, &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let Ok(mut child) = command.spawn() else {
        return;
    };
    let out = child.stdout.take().map(|r| {
        tokio::spawn(pipe(
            r,
            id.clone(),
            source.clone(),
            since.clone(),
            LogStream::Stdout,
            sink.clone(),
            cursors.clone(),
        ))
    });
    let err = child.stderr.take().map(|r| {
        tokio::spawn(pipe(
            r,
            id.clone(),
            source.clone(),
            since.clone(),
            LogStream::Stderr,
            sink.clone(),
            cursors.clone(),
        ))
    });
    tokio::select! {
        _ = stop.cancelled() => { let _ = child.kill().await; }
        _ = child.wait() => {}
    }
    for task in [out, err].into_iter().flatten() {
        let _ = task.await;
    }
}

/// Splits docker's `2026-11-25T05:20:01.123456789Z text` into timestamp and text.
pub fn split_timestamp(line: &str) -> Option<(&str, &str)> {
    let (stamp, text) = line.split_once(' ').unwrap_or((line, ""));
    (stamp.len() >= 20 && stamp.ends_with('Z') && stamp.as_bytes()[4] == b'-')
        .then_some((stamp, text))
}

/// A key that orders docker timestamps correctly (their fraction drops trailing zeros).
pub fn order_key(stamp: &str) -> String {
    let body = stamp.trim_end_matches('Z');
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    format!("{whole}.{fraction:0<9}")
}

async fn pipe(
    reader: impl AsyncRead + Unpin,
    id: String,
    source: String,
    since: String,
    stream: LogStream,
    sink: Sink,
    cursors: Cursors,
) {
    let floor = if since.contains('T') {
        order_key(&since)
    } else {
        String::new()
    };
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Some((stamp, text)) = split_timestamp(&line) else {
            sink.line(stream, &source, &line);
            continue;
        };
        let key = order_key(stamp);
        {
            let mut cursors = cursors.lock().expect("cursor lock");
            let last = cursors
                .get(&id)
                .map(|s| order_key(s))
                .unwrap_or_else(|| floor.clone());
            // `--since` includes its own instant: never hand on a line twice.
            if key <= last {
                continue;
            }
            cursors.insert(id.clone(), stamp.to_owned());
        }
        sink.line(stream, &source, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_lose_the_project_prefix() {
        assert_eq!(source_name("hello-prod_web_1", "hello-prod"), "web_1");
        assert_eq!(source_name("hello-prod-web-1", "hello-prod"), "web-1");
        assert_eq!(source_name("other", "hello-prod"), "other");
    }

    #[test]
    fn docker_timestamps_split_and_order_despite_trimmed_fractions() {
        assert_eq!(
            split_timestamp("2026-11-25T05:20:01.1Z GET / 200"),
            Some(("2026-11-25T05:20:01.1Z", "GET / 200"))
        );
        assert_eq!(split_timestamp("no timestamp here"), None);
        assert!(order_key("2026-11-25T05:20:01.1Z") > order_key("2026-11-25T05:20:01.09Z"));
        assert!(order_key("2026-11-25T05:20:02Z") > order_key("2026-11-25T05:20:01.999999999Z"));
    }
}
