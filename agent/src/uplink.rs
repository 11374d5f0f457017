//! The ordered queue of everything the agent says about missions: log lines
//! and state updates. Lines are numbered per mission when they are first sent
//! (after the control plane's cursors are known, so a restarted agent never
//! reuses a number), kept until the control plane acknowledges them, and sent
//! again in order after a reconnect. An update leaves only after every line
//! queued before it. The queue is bounded: when the control plane is away long
//! enough to fill it, the oldest unsent lines are dropped and an explicit line
//! saying how many takes their place — never a silent loss.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use launch_core::redact::Redactor;
use launch_proto::{
    LogAck, LogBatch, LogLine, LogStream, MissionUpdate, ServiceHealth, agent_message,
};
use tokio::sync::Notify;

/// Lines kept (sent but unacknowledged, plus unsent) before the oldest unsent are dropped.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Most lines in one LogBatch.
pub const MAX_BATCH: usize = 500;

enum Item {
    Line { mission_id: String, line: LogLine },
    Update(MissionUpdate),
}

#[derive(Default)]
struct State {
    /// Sent in some session, not yet acknowledged, in send order (seq set).
    unacked: VecDeque<(String, LogLine)>,
    /// How many of `unacked` went out in the current session.
    resent: usize,
    /// Not sent yet (lines have no seq yet).
    unsent: VecDeque<Item>,
    unsent_lines: usize,
    /// The last seq used per mission.
    last_seq: HashMap<String, u64>,
    /// Lines dropped per mission since the last marker.
    dropped: HashMap<String, u64>,
    /// The latest health report of the current release, and whether this
    /// session has sent it (only the latest matters; each session gets it).
    health: Option<ServiceHealth>,
    health_sent: bool,
}

/// A cheap handle to the shared queue.
#[derive(Clone)]
pub struct Uplink {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    capacity: usize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl Uplink {
    pub fn new(capacity: usize) -> Self {
        Uplink {
            state: Arc::default(),
            notify: Arc::new(Notify::new()),
            capacity,
        }
    }

    /// A sink that redacts with `redactor` and queues lines for `mission_id`.
    pub fn sink(&self, mission_id: &str, redactor: Arc<Redactor>) -> Sink {
        Sink {
            uplink: self.clone(),
            mission_id: mission_id.to_owned(),
            redactor,
        }
    }

    fn push_line(&self, mission_id: &str, stream: LogStream, source: &str, text: String) {
        let mut state = self.state.lock().expect("uplink lock");
        if state.unacked.len() + state.unsent_lines >= self.capacity {
            // Drop the oldest unsent line; remember where, for the marker.
            if let Some(index) = state
                .unsent
                .iter()
                .position(|i| matches!(i, Item::Line { .. }))
                && let Some(Item::Line { mission_id, .. }) = state.unsent.remove(index)
            {
                *state.dropped.entry(mission_id).or_default() += 1;
                state.unsent_lines -= 1;
            }
        }
        state.unsent.push_back(Item::Line {
            mission_id: mission_id.to_owned(),
            line: LogLine {
                seq: 0,
                unix_ms: now_ms(),
                stream: stream as i32,
                source: source.to_owned(),
                text,
            },
        });
        state.unsent_lines += 1;
        drop(state);
        self.notify.notify_one();
    }

    /// Queues a state update behind every line queued so far.
    pub fn update(&self, update: MissionUpdate) {
        self.state
            .lock()
            .expect("uplink lock")
            .unsent
            .push_back(Item::Update(update));
        self.notify.notify_one();
    }

    /// Replaces the health report of the current release (see `watch`).
    pub fn health(&self, report: ServiceHealth) {
        let mut state = self.state.lock().expect("uplink lock");
        state.health = Some(report);
        state.health_sent = false;
        drop(state);
        self.notify.notify_one();
    }

    /// A new session starts: everything unacknowledged goes out again, and
    /// numbering continues after what the control plane has stored.
    pub fn begin_session(&self, cursors: &[LogAck]) {
        let mut state = self.state.lock().expect("uplink lock");
        state.resent = 0;
        state.health_sent = false;
        for cursor in cursors {
            let last = state.last_seq.entry(cursor.mission_id.clone()).or_default();
            *last = (*last).max(cursor.through_seq);
        }
        drop(state);
        for cursor in cursors {
            self.ack(cursor);
        }
        self.notify.notify_one();
    }

    /// Forgets lines the control plane has stored.
    pub fn ack(&self, ack: &LogAck) {
        let mut state = self.state.lock().expect("uplink lock");
        let stored = |(mission_id, line): &(String, LogLine)| {
            *mission_id == ack.mission_id && line.seq <= ack.through_seq
        };
        let mut removed_before_cursor = 0;
        let mut index = 0;
        let resent = state.resent;
        state.unacked.retain(|entry| {
            let keep = !stored(entry);
            if !keep && index < resent {
                removed_before_cursor += 1;
            }
            index += 1;
            keep
        });
        state.resent -= removed_before_cursor;
    }

    /// The next message to send in this session, if any.
    pub fn next_message(&self) -> Option<agent_message::Msg> {
        let mut state = self.state.lock().expect("uplink lock");
        let state = &mut *state;
        // First, whatever this session has not re-sent yet.
        if state.resent < state.unacked.len() {
            let mission_id = state.unacked[state.resent].0.clone();
            let mut lines = Vec::new();
            while state.resent < state.unacked.len()
                && state.unacked[state.resent].0 == mission_id
                && lines.len() < MAX_BATCH
            {
                lines.push(state.unacked[state.resent].1.clone());
                state.resent += 1;
            }
            return Some(agent_message::Msg::Logs(LogBatch { mission_id, lines }));
        }
        // Then the explicit marker for lines dropped while the buffer was full.
        if let Some(mission_id) = state.dropped.keys().next().cloned() {
            let count = state.dropped.remove(&mission_id).unwrap_or_default();
            let last = state.last_seq.entry(mission_id.clone()).or_default();
            *last += 1;
            let line = LogLine {
                seq: *last,
                unix_ms: now_ms(),
                stream: LogStream::System as i32,
                source: "launch-agent".to_owned(),
                text: format!(
                    "{count} log lines were dropped: the control plane was unreachable and the agent's buffer of {} lines was full",
                    self.capacity
                ),
            };
            state.unacked.push_back((mission_id.clone(), line.clone()));
            state.resent += 1;
            return Some(agent_message::Msg::Logs(LogBatch {
                mission_id,
                lines: vec![line],
            }));
        }
        if !state.health_sent
            && let Some(report) = &state.health
        {
            state.health_sent = true;
            return Some(agent_message::Msg::ServiceHealth(report.clone()));
        }
        match state.unsent.front()? {
            Item::Update(_) => match state.unsent.pop_front() {
                Some(Item::Update(update)) => Some(agent_message::Msg::Update(update)),
                _ => unreachable!("front was an update"),
            },
            Item::Line { mission_id, .. } => {
                let mission_id = mission_id.clone();
                let mut lines = Vec::new();
                while lines.len() < MAX_BATCH {
                    match state.unsent.front() {
                        Some(Item::Line { mission_id: m, .. }) if *m == mission_id => {}
                        _ => break,
                    }
                    let Some(Item::Line { mut line, .. }) = state.unsent.pop_front() else {
                        break;
                    };
                    state.unsent_lines -= 1;
                    let last = state.last_seq.entry(mission_id.clone()).or_default();
                    *last += 1;
                    line.seq = *last;
                    state.unacked.push_back((mission_id.clone(), line.clone()));
                    state.resent += 1;
                    lines.push(line);
                }
                Some(agent_message::Msg::Logs(LogBatch { mission_id, lines }))
            }
        }
    }

    /// True when everything queued was sent and acknowledged.
    pub fn settled(&self) -> bool {
        let state = self.state.lock().expect("uplink lock");
        state.unacked.is_empty() && state.unsent.is_empty()
    }

    /// Waits until something may be ready to send.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    #[cfg(test)]
    fn pending_lines(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (state.unacked.len(), state.unsent_lines)
    }
}

/// Where a mission's output goes: redacted, then queued.
#[derive(Clone)]
pub struct Sink {
    uplink: Uplink,
    mission_id: String,
    redactor: Arc<Redactor>,
}

impl Sink {
    pub fn line(&self, stream: LogStream, source: &str, text: &str) {
        let text = self.redactor.redact(text).into_owned();
        self.uplink
            .push_line(&self.mission_id, stream, source, text);
    }

    /// A line from the agent itself about this mission.
    pub fn say(&self, text: &str) {
        self.line(LogStream::System, "agent", text);
    }

    pub fn redactor(&self) -> &Arc<Redactor> {
        &self.redactor
    }
}

#[cfg(test)]
mod tests;
