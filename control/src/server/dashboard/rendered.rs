//! A followed mission's events as the browser gets them: server-sent-event
//! bytes rendered once (a line as escaped HTML with its seq as the event
//! id, a gap, a state), and batches of consecutive lines a follower can
//! take from any seq on, which the follow source broadcasts and its
//! history keeps.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

use launch_proto::{MissionEvent, mission_event};

use super::ansi;

/// Most lines the source puts in one batch.
pub const BATCH_LINES: usize = 128;

/// What a rendered event is, for a follower to place it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Lines with seqs `first..=last`, every one of them, in order.
    Lines {
        first: u64,
        last: u64,
    },
    Gap {
        from_seq: u64,
        to_seq: u64,
    },
    State {
        last: bool,
    },
}

/// Mission events as server-sent-event bytes.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub kind: Kind,
    pub bytes: Bytes,
    /// For lines: where each line's event ends in `bytes`, in order.
    pub ends: Vec<u32>,
}

/// What of a batch of lines a follower that sent everything through seq
/// `sent` still needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsent {
    /// Nothing: it has every line.
    Nothing,
    /// These bytes: the lines after `sent`, through the batch's last.
    Bytes(Bytes),
    /// The lines between `sent` and the batch are missing here: read the store.
    Hole,
}

impl Rendered {
    fn single(kind: Kind, bytes: Bytes) -> Rendered {
        Rendered {
            kind,
            bytes,
            ends: Vec::new(),
        }
    }

    /// The part of a batch of lines a follower at `sent` lacks.
    pub fn unsent(&self, sent: u64) -> Unsent {
        let Kind::Lines { first, last } = self.kind else {
            return Unsent::Nothing;
        };
        if last <= sent {
            return Unsent::Nothing;
        }
        if first > sent + 1 {
            return Unsent::Hole;
        }
        let already = (sent + 1 - first) as usize;
        let from = match already {
            0 => 0,
            n => self.ends[n - 1] as usize,
        };
        Unsent::Bytes(self.bytes.slice(from..))
    }
}

/// Consecutive lines rendered into one [`Rendered`].
#[derive(Default)]
pub struct Batch {
    first: u64,
    last: u64,
    bytes: BytesMut,
    ends: Vec<u32>,
}

impl Batch {
    /// Adds `line` (a single rendered line) if it is the next seq and the
    /// batch has room; gives it back otherwise.
    pub fn push(&mut self, line: Rendered) -> Result<(), Rendered> {
        let Kind::Lines { first: seq, .. } = line.kind else {
            return Err(line);
        };
        if !self.ends.is_empty() && (seq != self.last + 1 || self.ends.len() >= BATCH_LINES) {
            return Err(line);
        }
        if self.ends.is_empty() {
            self.first = seq;
        }
        self.last = seq;
        self.bytes.put(line.bytes);
        self.ends.push(self.bytes.len() as u32);
        Ok(())
    }

    /// The batch as one broadcast item, if it holds any line.
    pub fn take(&mut self) -> Option<Rendered> {
        if self.ends.is_empty() {
            return None;
        }
        Some(Rendered {
            kind: Kind::Lines {
                first: self.first,
                last: self.last,
            },
            bytes: self.bytes.split().freeze(),
            ends: std::mem::take(&mut self.ends),
        })
    }
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

pub fn gap(from_seq: u64, to_seq: u64) -> Rendered {
    Rendered::single(
        Kind::Gap { from_seq, to_seq },
        frame(
            Some(to_seq),
            "gap",
            &format!("… lines {from_seq}–{to_seq} are missing (the agent dropped them) …"),
        ),
    )
}

/// One mission event as the browser gets it: a line as escaped HTML with
/// its seq as the event id, a gap, or the mission's new state.
pub fn render(event: &MissionEvent) -> Option<Rendered> {
    Some(match event.event.as_ref()? {
        mission_event::Event::Line(line) => Rendered::single(
            Kind::Lines {
                first: line.seq,
                last: line.seq,
            },
            frame(Some(line.seq), "line", &ansi::to_html(&line.text)),
        ),
        mission_event::Event::Gap(lost) => gap(lost.from_seq, lost.to_seq),
        mission_event::Event::Update(update) => Rendered::single(
            Kind::State {
                last: update.state().is_final(),
            },
            frame(None, "state", &update.state().label().replace('_', " ")),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64) -> Rendered {
        Rendered::single(
            Kind::Lines {
                first: seq,
                last: seq,
            },
            frame(Some(seq), "line", &format!("line {seq}")),
        )
    }

    /// Lines `first..=last` as one batch.
    fn batch(first: u64, last: u64) -> Rendered {
        let mut batch = Batch::default();
        for seq in first..=last {
            batch.push(line(seq)).unwrap();
        }
        batch.take().unwrap()
    }

    fn text(unsent: Unsent) -> String {
        match unsent {
            Unsent::Bytes(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
            other => panic!("expected bytes, got {other:?}"),
        }
    }

    #[test]
    fn a_follower_gets_the_lines_of_a_batch_it_lacks_and_no_others() {
        let lines = batch(5, 8);
        assert_eq!(lines.kind, Kind::Lines { first: 5, last: 8 });
        let all: String = (5..=8).map(|seq| text(line(seq).unsent(seq - 1))).collect();
        assert_eq!(text(lines.unsent(4)), all);
        let after_six: String = (7..=8).map(|seq| text(line(seq).unsent(seq - 1))).collect();
        assert_eq!(text(lines.unsent(6)), after_six);
        assert_eq!(lines.unsent(8), Unsent::Nothing);
        assert_eq!(lines.unsent(20), Unsent::Nothing);
        assert_eq!(lines.unsent(3), Unsent::Hole, "line 4 is missing");
    }

    #[test]
    fn a_batch_holds_only_consecutive_lines_up_to_its_size() {
        let mut lines = Batch::default();
        lines.push(line(1)).unwrap();
        assert!(lines.push(line(3)).is_err(), "a jump starts another batch");
        let gap = gap(2, 2);
        assert!(lines.push(gap).is_err(), "a gap is no line");
        for seq in 2..=BATCH_LINES as u64 {
            lines.push(line(seq)).unwrap();
        }
        assert!(lines.push(line(BATCH_LINES as u64 + 1)).is_err(), "full");
        let taken = lines.take().unwrap();
        assert_eq!(taken.ends.len(), BATCH_LINES);
        assert!(lines.take().is_none(), "emptied");
        lines.push(line(BATCH_LINES as u64 + 1)).unwrap();
    }
}
