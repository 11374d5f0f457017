//! One rendered log per followed mission, shared by every browser that
//! follows it. A hundred browsers on one mission used to cost a hundred
//! `WatchMission` calls, each line encoded, decoded and turned into HTML a
//! hundred times; now one source per mission subscribes to the hub, renders
//! each event once into its server-sent-event bytes and broadcasts them, and
//! each follower only copies those bytes to its connection, many events per
//! write.
//!
//! A follower is authorized at subscribe by a `GetMission` control call with
//! its session's token (`sse::mission_log`), and its stream ends with the
//! token (`authz::stream_end`), as a `WatchMission` call's would. It keeps
//! its own position (the highest seq it sent): what it lacks (what came
//! before it joined, what the source skipped, what it missed by falling
//! behind the broadcast) it reads from the store through a [`LogCursor`],
//! a page at a time and at most [`CATCH_UP_READS`] followers at once, so
//! followers catching up never hold the connections the agents' log
//! writes need. Every line is sent once, in seq order, and a jump in seqs
//! is sent as a gap.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{Semaphore, broadcast};
use tokio::task::JoinHandle;
use tonic::Status;

use launch_proto::{MissionEvent, mission_event};

use super::super::authz::EndFuture;
use super::super::log_cursor::LogCursor;
use super::super::state::{State, internal};
use super::ansi;

/// Rendered events a mission's followers may fall behind by before they
/// read the rest from the store (about a second of a busy log).
const RENDERED: usize = 16 * 1024;
/// Followers reading the store at once; the others wait their turn.
pub const CATCH_UP_READS: usize = 2;
/// Most bytes a follower gathers into one write.
const WRITE: usize = 64 * 1024;
/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a rendered event is, for a follower to place it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Line { seq: u64 },
    Gap { from_seq: u64, to_seq: u64 },
    State { last: bool },
}

/// One mission event as server-sent-event bytes.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub kind: Kind,
    pub bytes: Bytes,
}

/// An event's bytes: `id:` (when given), `event:` and one `data:` line.
pub fn frame(id: Option<u64>, event: &str, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + event.len() + 32);
    if let Some(id) = id {
        let _ = writeln!(out, "id: {id}");
    }
    let _ = writeln!(out, "event: {event}");
    // `data` never holds a line break (`ansi` drops control characters).
    for line in data.split(['\n', '\r']) {
        let _ = writeln!(out, "data: {line}");
    }
    out.push('\n');
    Bytes::from(out)
}

fn gap(from_seq: u64, to_seq: u64) -> Rendered {
    Rendered {
        kind: Kind::Gap { from_seq, to_seq },
        bytes: frame(
            Some(to_seq),
            "gap",
            &format!("… lines {from_seq}–{to_seq} are missing (the agent dropped them) …"),
        ),
    }
}

/// One mission event as the browser gets it: a line as escaped HTML with
/// its seq as the event id, a gap, or the mission's new state.
pub fn render(event: &MissionEvent) -> Option<Rendered> {
    Some(match event.event.as_ref()? {
        mission_event::Event::Line(line) => Rendered {
            kind: Kind::Line { seq: line.seq },
            bytes: frame(Some(line.seq), "line", &ansi::to_html(&line.text)),
        },
        mission_event::Event::Gap(lost) => gap(lost.from_seq, lost.to_seq),
        mission_event::Event::Update(update) => Rendered {
            kind: Kind::State {
                last: update.state().is_final(),
            },
            bytes: frame(None, "state", &update.state().label().replace('_', " ")),
        },
    })
}

/// The followed missions' sources, and the store reads they may make.
pub struct Follows {
    missions: Mutex<HashMap<String, Weak<Source>>>,
    catch_up: Semaphore,
}

impl Default for Follows {
    fn default() -> Self {
        Follows {
            missions: Mutex::default(),
            catch_up: Semaphore::new(CATCH_UP_READS),
        }
    }
}

/// A mission's rendering task and its broadcast; the task stops when the
/// last follower leaves.
struct Source {
    rendered: broadcast::Sender<Arc<Rendered>>,
    task: JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Follows {
    /// The mission's source (started when it has none) and a receiver of
    /// everything it renders from now on.
    fn join(
        &self,
        state: &Arc<State>,
        mission_id: &str,
    ) -> (Arc<Source>, broadcast::Receiver<Arc<Rendered>>) {
        let mut missions = self.missions.lock().expect("follows lock");
        if let Some(source) = missions.get(mission_id).and_then(Weak::upgrade)
            && !source.task.is_finished()
        {
            let receiver = source.rendered.subscribe();
            return (source, receiver);
        }
        missions.retain(|_, source| source.strong_count() > 0);
        // Subscribed before the task starts: nothing published from here on
        // is missed, and what came before is in the store.
        let live = state.hub.subscribe_mission(mission_id);
        let (rendered, receiver) = broadcast::channel(RENDERED);
        let task = tokio::spawn(run_source(state.clone(), live, rendered.clone()));
        let source = Arc::new(Source { rendered, task });
        missions.insert(mission_id.to_owned(), Arc::downgrade(&source));
        (source, receiver)
    }
}

/// Renders the mission's events once for all its followers, until its
/// final state or the server's shutdown. A lagged subscription skips: the
/// followers see the seqs jump and read those lines from the store.
async fn run_source(
    state: Arc<State>,
    mut live: broadcast::Receiver<MissionEvent>,
    rendered: broadcast::Sender<Arc<Rendered>>,
) {
    loop {
        let received = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            received = live.recv() => received,
        };
        match received {
            Ok(event) => {
                let Some(event) = render(&event) else {
                    continue;
                };
                let last = event.kind == Kind::State { last: true };
                let _ = rendered.send(Arc::new(event));
                if last {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::debug!(
                    skipped,
                    "dashboard: a log source lagged; followers read the store"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One follower's stream of SSE bytes: the retry and a comment first, then
/// every line after `since_seq`, state changes, and `end` after the final
/// state. It ends early at shutdown, when `end` (the token's revocation or
/// expiry) fires, or on a store error (the browser reconnects and resumes).
pub fn follow(
    state: Arc<State>,
    follows: Arc<Follows>,
    mission_id: String,
    since_seq: u64,
    end: Option<EndFuture>,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    async_stream::stream! {
        let (source, mut rendered) = follows.join(&state, &mission_id);
        let mut follower = Follower {
            state: &state,
            follows: &follows,
            cursor: LogCursor::new(mission_id.clone(), since_seq),
            out: BytesMut::new(),
            behind: true,
            last_state: None,
            done: false,
        };
        follower.out.put_slice(b"retry: 1000\n: log\n\n");
        yield Ok(follower.out.split().freeze());
        let mut end = end.unwrap_or_else(|| Box::pin(std::future::pending()));
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        keep_alive.reset();
        // Whether the store said if the mission is over (once caught up with
        // what came before the source, which may have nothing more to say).
        let mut checked = false;
        while !follower.done {
            let step = tokio::select! {
                biased;
                _ = state.shutdown.cancelled() => break,
                _ = &mut end => break,
                step = follower.step(&mut rendered, &mut checked) => step,
                _ = keep_alive.tick() => {
                    yield Ok(Bytes::from_static(b": keep-alive\n\n"));
                    continue;
                }
            };
            if let Err(err) = step {
                tracing::warn!(mission_id = %mission_id, cause = %err, "dashboard: a follower could not read the log");
                break;
            }
            if !follower.out.is_empty() {
                keep_alive.reset();
                yield Ok(follower.out.split().freeze());
            }
        }
        drop(source);
    }
}

struct Follower<'a> {
    state: &'a State,
    follows: &'a Follows,
    /// The highest seq sent, and the store reads after it.
    cursor: LogCursor,
    /// Bytes not yet written.
    out: BytesMut,
    /// The store has lines this follower lacks: read them before anything
    /// else from the source.
    behind: bool,
    /// The final state, to send once caught up.
    last_state: Option<Bytes>,
    done: bool,
}

impl Follower<'_> {
    /// What comes next: a page from the store while behind, whether the
    /// mission is over once first caught up, else what the source sent
    /// (everything already waiting, up to a write's worth).
    async fn step(
        &mut self,
        rendered: &mut broadcast::Receiver<Arc<Rendered>>,
        checked: &mut bool,
    ) -> Result<(), Status> {
        if self.behind {
            if self.catch_up_page().await? {
                self.behind = false;
                if let Some(last_state) = self.last_state.take() {
                    self.out.put(last_state);
                    self.finish();
                }
            }
            return Ok(());
        }
        if !*checked {
            let mission = self
                .state
                .store
                .mission(self.cursor.mission_id())
                .await
                .map_err(internal)?;
            *checked = true;
            match mission {
                Some(mission) if !mission.state.is_final() => {}
                Some(mission) => {
                    self.behind = true;
                    self.last_state = Some(frame(
                        None,
                        "state",
                        &mission.state.label().replace('_', " "),
                    ));
                }
                None => self.finish(),
            }
            return Ok(());
        }
        let mut received = rendered.recv().await;
        loop {
            self.take(received);
            if self.done || self.behind || self.out.len() >= WRITE {
                return Ok(());
            }
            received = match rendered.try_recv() {
                Err(broadcast::error::TryRecvError::Empty) => return Ok(()),
                Ok(event) => Ok(event),
                Err(broadcast::error::TryRecvError::Lagged(skipped)) => {
                    Err(broadcast::error::RecvError::Lagged(skipped))
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    Err(broadcast::error::RecvError::Closed)
                }
            };
        }
    }

    /// One page of what is stored after the cursor, rendered into `out`;
    /// `true` when it was the last.
    async fn catch_up_page(&mut self) -> Result<bool, Status> {
        let (events, last) = {
            let _turn = self
                .follows
                .catch_up
                .acquire()
                .await
                .map_err(|_| internal("the catch-up semaphore is closed"))?;
            self.cursor.replay_page(self.state).await?
        };
        for event in &events {
            if let Some(rendered) = render(event) {
                self.out.put(rendered.bytes);
            }
        }
        Ok(last)
    }

    fn finish(&mut self) {
        self.out.put(frame(None, "end", ""));
        self.done = true;
    }

    /// Places one event from the source: sent in order, skipped when
    /// already sent; after a hole (lines the source skipped or this
    /// follower missed) the store is read first, and the final state is
    /// sent after the last stored line.
    fn take(&mut self, received: Result<Arc<Rendered>, broadcast::error::RecvError>) {
        let event = match received {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.behind = true;
                return;
            }
            // The source stopped without a final state: end, and the
            // browser reconnects.
            Err(broadcast::error::RecvError::Closed) => {
                self.done = true;
                return;
            }
        };
        let sent = self.cursor.sent();
        match event.kind {
            Kind::Line { seq } if seq <= sent => {}
            Kind::Line { seq } if seq == sent + 1 => {
                self.cursor.delivered(seq);
                self.out.put(event.bytes.clone());
            }
            // The store has the hole and this line (stored before published).
            Kind::Line { .. } => self.behind = true,
            Kind::Gap { to_seq, .. } if to_seq <= sent => {}
            Kind::Gap { from_seq, to_seq } if from_seq <= sent + 1 => {
                if from_seq == sent + 1 {
                    self.out.put(event.bytes.clone());
                } else {
                    self.out.put(gap(sent + 1, to_seq).bytes);
                }
                self.cursor.delivered(to_seq);
            }
            // Lines before the gap are missing here: the store has them,
            // and shows the gap once the line after it is stored.
            Kind::Gap { .. } => self.behind = true,
            Kind::State { last: false } => self.out.put(event.bytes.clone()),
            Kind::State { last: true } => {
                self.behind = true;
                self.last_state = Some(event.bytes.clone());
            }
        }
    }
}
