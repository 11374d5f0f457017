//! One reader's position in one mission's log, shared by `WatchMission` and
//! `StreamLogs` so both streams say the same thing: every stored line once,
//! in seq order, and an explicit gap wherever seqs jump (lines the agent
//! dropped), whether the lines come from the store or live from the hub. A
//! live line that skips ahead, or a lagged subscription, sends the cursor back
//! to the store, which is the truth.

use tonic::Status;

use launch_proto::{LogGap, LogLine, MissionEvent, MissionState, mission_event};

use super::state::{State, internal};

/// Lines read from the store per page when replaying.
const PAGE: i64 = 1000;

pub struct LogCursor {
    mission_id: String,
    /// The highest seq delivered (a line, or the end of a gap).
    sent: u64,
}

fn line_event(line: LogLine) -> MissionEvent {
    MissionEvent {
        event: Some(mission_event::Event::Line(line)),
    }
}

fn gap_event(from_seq: u64, to_seq: u64) -> MissionEvent {
    MissionEvent {
        event: Some(mission_event::Event::Gap(LogGap { from_seq, to_seq })),
    }
}

impl LogCursor {
    /// A cursor that delivers what comes after `since_seq`.
    pub fn new(mission_id: impl Into<String>, since_seq: u64) -> Self {
        LogCursor {
            mission_id: mission_id.into(),
            sent: since_seq,
        }
    }

    pub fn mission_id(&self) -> &str {
        &self.mission_id
    }

    /// The highest seq delivered.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Records that everything up to `seq` was delivered another way (the
    /// dashboard's shared rendering); the cursor never goes back.
    pub fn delivered(&mut self, seq: u64) {
        self.sent = self.sent.max(seq);
    }

    /// Stored lines after the cursor, with a gap event wherever seqs jump.
    pub async fn replay(&mut self, state: &State) -> Result<Vec<MissionEvent>, Status> {
        let mut events = Vec::new();
        loop {
            let (page, done) = self.replay_page(state).await?;
            events.extend(page);
            if done {
                return Ok(events);
            }
        }
    }

    /// One page of [`LogCursor::replay`]: at most a page of stored lines
    /// after the cursor, and whether it was the last.
    pub async fn replay_page(
        &mut self,
        state: &State,
    ) -> Result<(Vec<MissionEvent>, bool), Status> {
        let lines = state
            .store
            .lines_after(&self.mission_id, self.sent, PAGE)
            .await
            .map_err(internal)?;
        let done = (lines.len() as i64) < PAGE;
        let mut events = Vec::with_capacity(lines.len());
        for line in lines {
            if line.seq > self.sent + 1 {
                events.push(gap_event(self.sent + 1, line.seq - 1));
            }
            self.sent = line.seq;
            events.push(line_event(line));
        }
        Ok((events, done))
    }

    /// What to deliver for one event published live for the mission: a
    /// line in order, or the store's lines when it skips ahead; a gap past
    /// the cursor; an update (after the rest of the stored lines when it
    /// is final). Lines already delivered give nothing.
    pub async fn live(
        &mut self,
        state: &State,
        event: MissionEvent,
    ) -> Result<Vec<MissionEvent>, Status> {
        Ok(match event.event {
            Some(mission_event::Event::Line(line)) if line.seq <= self.sent => Vec::new(),
            Some(mission_event::Event::Line(line)) if line.seq > self.sent + 1 => {
                self.replay(state).await?
            }
            Some(mission_event::Event::Line(line)) => {
                self.sent = line.seq;
                vec![line_event(line)]
            }
            Some(mission_event::Event::Gap(gap)) if gap.to_seq > self.sent => {
                let from_seq = gap.from_seq.max(self.sent + 1);
                self.sent = gap.to_seq;
                vec![gap_event(from_seq, gap.to_seq)]
            }
            Some(mission_event::Event::Gap(_)) | None => Vec::new(),
            Some(mission_event::Event::Update(update)) => {
                let done = MissionState::try_from(update.state).is_ok_and(MissionState::is_final);
                let mut events = if done {
                    self.replay(state).await?
                } else {
                    Vec::new()
                };
                events.push(MissionEvent {
                    event: Some(mission_event::Event::Update(update)),
                });
                events
            }
        })
    }
}
