//! Following the running release's container logs after a deploy, as runtime
//! lines of the mission that deployed it (so `launch logs -f` keeps showing
//! the service between deploys). The follower restarts when `compose logs`
//! exits (containers recreated, docker restarted) and stops when the next
//! mission starts.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use launch_proto::LogStream;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::compose::Compose;
use crate::uplink::Sink;

pub struct Follower {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Follower {
    /// Starts following; `from_start` includes what the containers printed so far.
    pub fn start(
        compose: Compose,
        dir: PathBuf,
        file: String,
        project: String,
        sink: Sink,
        from_start: bool,
    ) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow(
            compose,
            dir,
            file,
            project,
            sink,
            from_start,
            stop.clone(),
        ));
        Follower { stop, task }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn follow(
    compose: Compose,
    dir: PathBuf,
    file: String,
    project: String,
    sink: Sink,
    mut from_start: bool,
    stop: CancellationToken,
) {
    loop {
        let tail = if from_start { "all" } else { "0" };
        let mut command = compose.command(
            &dir,
            &file,
            &project,
            &["logs", "-f", "--no-color", "--tail", tail],
        );
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Ok(mut child) = command.spawn() {
            let out = child
                .stdout
                .take()
                .map(|r| tokio::spawn(pipe(r, sink.clone(), LogStream::Stdout)));
            let err = child
                .stderr
                .take()
                .map(|r| tokio::spawn(pipe(r, sink.clone(), LogStream::Stderr)));
            tokio::select! {
                _ = stop.cancelled() => { let _ = child.kill().await; }
                _ = child.wait() => {}
            }
            for task in [out, err].into_iter().flatten() {
                let _ = task.await;
            }
        }
        from_start = false;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// `web_1  | line` (v1) or `web-1  | line` (v2) → source `web_1`, text `line`.
pub fn split(line: &str) -> (&str, &str) {
    match line.split_once(" | ") {
        Some((source, text))
            if !source.trim().is_empty() && !source.trim().contains(char::is_whitespace) =>
        {
            (source.trim(), text)
        }
        _ => ("compose", line),
    }
}

async fn pipe(reader: impl AsyncRead + Unpin, sink: Sink, stream: LogStream) {
    let mut lines = BufReader::new(reader).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with("Attaching to ") {
            continue;
        }
        let (source, text) = split(&line);
        sink.line(stream, source, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_log_prefixes_become_the_source() {
        assert_eq!(split("web_1  | GET / 200"), ("web_1", "GET / 200"));
        assert_eq!(
            split("hello-prod-web-1  | started"),
            ("hello-prod-web-1", "started")
        );
        assert_eq!(split("no prefix here"), ("compose", "no prefix here"));
    }
}
