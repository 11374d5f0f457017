//! One rendered log per followed mission, shared by every browser that
//! follows it. A hundred browsers on one mission used to cost a hundred
//! `WatchMission` calls, each line encoded, decoded and turned into HTML a
//! hundred times; now one source per mission subscribes to the hub, renders
//! each event once into its server-sent-event bytes and broadcasts them, and
//! each follower only copies those bytes to its connection, many events per
//! write. The source lets lines gather for [`GATHER`] and broadcasts the
//! consecutive ones as one batch (an agent sends its lines in batches, which
//! the hub publishes one after another): a follower wakes, takes and writes
//! once per batch, not once per line, which at 100 followers of a busy log
//! is most of the server's work, and the broadcast's window holds batches,
//! so a follower may fall that many batches behind before it reads the store.
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
use super::history::History;
use super::rendered::{Batch, Kind, Rendered, Unsent, frame, gap, render};

/// Rendered batches a mission's followers may fall behind by before they
/// read the rest from the store (seconds of a busy log, whose batches are
/// large; at most `RENDERED × BATCH_LINES` rendered lines held).
const RENDERED: usize = 1024;
/// How long the source lets lines gather after the first before it
/// broadcasts them: woken at once, it would mostly send batches of one line
/// (the hub publishes an agent's batch line by line), and the followers
/// would each wake and write per line again.
const GATHER: Duration = Duration::from_millis(2);
/// Followers reading the store at once; the others wait their turn.
pub const CATCH_UP_READS: usize = 2;
/// Most bytes a follower gathers into one write.
const WRITE: usize = 64 * 1024;
/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
    /// What was broadcast lately, for followers that fell behind.
    history: Arc<Mutex<History>>,
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
        let history = Arc::new(Mutex::new(History::default()));
        let task = tokio::spawn(run_source(
            state.clone(),
            mission_id.to_owned(),
            live,
            rendered.clone(),
            history.clone(),
        ));
        let source = Arc::new(Source {
            rendered,
            history,
            task,
        });
        missions.insert(mission_id.to_owned(), Arc::downgrade(&source));
        (source, receiver)
    }
}

/// Renders the mission's events once for all its followers, until its
/// final state or the server's shutdown: the consecutive lines already
/// waiting as one batch, anything else on its own, in order. When its own
/// subscription lagged, the source reads the lines it missed from the
/// store and broadcasts them itself, once, rather than let every follower
/// find the hole and read the same lines (which, for a hundred followers,
/// cost more than the live log and kept them behind).
async fn run_source(
    state: Arc<State>,
    mission_id: String,
    mut live: broadcast::Receiver<MissionEvent>,
    rendered: broadcast::Sender<Arc<Rendered>>,
    history: Arc<Mutex<History>>,
) {
    let mut source = Sourcing {
        state: &state,
        rendered: &rendered,
        history: &history,
        batch: Batch::default(),
        published: LogCursor::new(mission_id, 0),
        lagged: false,
    };
    loop {
        let mut received = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            received = live.recv() => received,
        };
        tokio::time::sleep(GATHER).await;
        // Everything already waiting, then the batch goes out.
        loop {
            match received {
                Ok(event) => {
                    if source.take(event).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::debug!(
                        skipped,
                        "dashboard: a log source lagged; it reads the store"
                    );
                    source.lagged = true;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    source.flush();
                    return;
                }
            }
            received = match waiting(&mut live) {
                Some(next) => next,
                None => break,
            };
        }
        source.flush();
    }
}

/// What a receiver has already waiting, as `recv` would give it; `None`
/// when nothing is.
fn waiting<T: Clone>(
    receiver: &mut broadcast::Receiver<T>,
) -> Option<Result<T, broadcast::error::RecvError>> {
    use broadcast::error::{RecvError, TryRecvError};
    match receiver.try_recv() {
        Ok(value) => Some(Ok(value)),
        Err(TryRecvError::Empty) => None,
        Err(TryRecvError::Lagged(skipped)) => Some(Err(RecvError::Lagged(skipped))),
        Err(TryRecvError::Closed) => Some(Err(RecvError::Closed)),
    }
}

/// A source's state between events.
struct Sourcing<'a> {
    state: &'a State,
    rendered: &'a broadcast::Sender<Arc<Rendered>>,
    history: &'a Mutex<History>,
    batch: Batch,
    /// The highest line seq broadcast (0: none yet).
    published: LogCursor,
    /// The hub's broadcast skipped events since the last line.
    lagged: bool,
}

impl Sourcing<'_> {
    fn send(&self, event: Rendered) {
        let event = Arc::new(event);
        self.history.lock().expect("history lock").keep(&event);
        let _ = self.rendered.send(event);
    }

    fn flush(&mut self) {
        if let Some(lines) = self.batch.take() {
            self.send(lines);
        }
    }

    /// A rendered event into the batch, or, when it cannot join it, the
    /// batch out and then the event (in a new batch, or on its own).
    fn add(&mut self, event: Rendered) {
        if let Err(event) = self.batch.push(event) {
            self.flush();
            if let Err(event) = self.batch.push(event) {
                self.send(event);
            }
        }
    }

    /// Adds one event from the hub; `true` after the final state.
    async fn take(&mut self, event: MissionEvent) -> bool {
        let published = self.published.sent();
        match &event.event {
            Some(mission_event::Event::Line(line)) if line.seq <= published => return false,
            Some(mission_event::Event::Line(line))
                if self.lagged && published > 0 && line.seq > published + 1 =>
            {
                self.lagged = false;
                self.flush();
                self.fill().await;
                if line.seq <= self.published.sent() {
                    return false;
                }
            }
            _ => {}
        }
        let Some(event) = render(&event) else {
            return false;
        };
        match event.kind {
            Kind::Lines { last, .. } | Kind::Gap { to_seq: last, .. } => {
                self.published.delivered(last);
            }
            Kind::State { .. } => {}
        }
        let last = event.kind == Kind::State { last: true };
        self.add(event);
        last
    }

    /// Broadcasts what the store has after the last line published: the
    /// lines this source missed (and any stored since). On a store error
    /// the followers find the hole and read it themselves.
    async fn fill(&mut self) {
        loop {
            let (events, last) = match self.published.replay_page(self.state).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(mission_id = %self.published.mission_id(), cause = %err, "dashboard: a log source could not read the lines it missed; its followers will");
                    return;
                }
            };
            for event in events.iter().filter_map(render) {
                self.add(event);
            }
            self.flush();
            if last {
                return;
            }
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
            history: &source.history,
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
    history: &'a Mutex<History>,
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
            received = match waiting(rendered) {
                Some(next) => next,
                None => return Ok(()),
            };
        }
    }

    /// One page of what is stored after the cursor, rendered into `out`;
    /// `true` when it was the last.
    async fn catch_up_page(&mut self) -> Result<bool, Status> {
        // What the source broadcast lately, as it sent it; only older
        // lines, and lines not broadcast yet, come from the store.
        let taken = self.history.lock().expect("history lock").after(
            self.cursor.sent(),
            &mut self.out,
            WRITE,
        );
        if let Some(sent) = taken {
            self.cursor.delivered(sent);
            return Ok(false);
        }
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
            Kind::Lines { last, .. } => match event.unsent(sent) {
                Unsent::Nothing => {}
                Unsent::Bytes(bytes) => {
                    self.cursor.delivered(last);
                    self.out.put(bytes);
                }
                // The store has the hole and these lines (stored before published).
                Unsent::Hole => self.behind = true,
            },
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
