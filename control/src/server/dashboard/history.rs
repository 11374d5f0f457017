//! The recent past of a followed mission's rendered log, shared by its
//! followers. A follower that falls behind the broadcast (a slow browser,
//! a busy machine) used to read what it missed from the store and render
//! it again, alone, a page at a time: with a hundred followers behind at
//! once that cost more than the live log, and kept them behind. The source
//! keeps the batches it broadcast, up to [`KEEP_BYTES`], in seq order; a
//! follower behind takes its missing lines from here as bytes, and reads
//! the store only for what is older.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;

use super::rendered::{Kind, Rendered, Unsent, gap};

/// Rendered bytes kept (a few seconds of a very busy log, minutes of most).
pub const KEEP_BYTES: usize = 8 << 20;

/// The batches of lines and gaps broadcast, oldest first.
#[derive(Default)]
pub struct History {
    batches: VecDeque<Arc<Rendered>>,
    bytes: usize,
}

/// The seqs an item of the history covers.
fn range(item: &Rendered) -> Option<(u64, u64)> {
    match item.kind {
        Kind::Lines { first, last } => Some((first, last)),
        Kind::Gap { from_seq, to_seq } => Some((from_seq, to_seq)),
        Kind::State { .. } => None,
    }
}

impl History {
    /// Keeps a broadcast batch of lines or a gap (states are not kept: a
    /// follower catching up from the store does not get them either).
    pub fn keep(&mut self, item: &Arc<Rendered>) {
        if range(item).is_none() {
            return;
        }
        self.bytes += item.bytes.len();
        self.batches.push_back(item.clone());
        while self.bytes > KEEP_BYTES
            && let Some(old) = self.batches.pop_front()
        {
            self.bytes -= old.bytes.len();
        }
    }

    /// What follows seq `sent`, appended to `out` up to about `most` bytes:
    /// the seq now sent, or `None` when the history does not hold the line
    /// after `sent` (older than it, or not broadcast yet).
    pub fn after(&self, sent: u64, out: &mut BytesMut, most: usize) -> Option<u64> {
        let start = self
            .batches
            .partition_point(|b| range(b).is_some_and(|(_, last)| last <= sent));
        let mut sent_now = sent;
        for item in self.batches.range(start..) {
            let (first, last) = range(item)?;
            if first > sent_now + 1 {
                break;
            }
            match item.kind {
                Kind::Lines { .. } => match item.unsent(sent_now) {
                    Unsent::Bytes(bytes) => out.extend_from_slice(&bytes),
                    Unsent::Nothing => continue,
                    Unsent::Hole => break,
                },
                _ if first == sent_now + 1 => out.extend_from_slice(&item.bytes),
                // Part of the gap was sent: the rest of it.
                _ => out.extend_from_slice(&gap(sent_now + 1, last).bytes),
            }
            sent_now = last;
            if out.len() >= most {
                break;
            }
        }
        (sent_now > sent).then_some(sent_now)
    }
}

#[cfg(test)]
mod tests {
    use super::super::rendered::frame;
    use super::*;

    fn lines(first: u64, last: u64) -> Arc<Rendered> {
        let mut bytes = BytesMut::new();
        let mut ends = Vec::new();
        for seq in first..=last {
            bytes.extend_from_slice(&frame(Some(seq), "line", &format!("line {seq}")));
            ends.push(bytes.len() as u32);
        }
        Arc::new(Rendered {
            kind: Kind::Lines { first, last },
            bytes: bytes.freeze(),
            ends,
        })
    }

    fn ids(out: &BytesMut) -> Vec<u64> {
        String::from_utf8_lossy(out)
            .lines()
            .filter_map(|l| l.strip_prefix("id: ")?.parse().ok())
            .collect()
    }

    #[test]
    fn a_follower_behind_gets_the_lines_after_its_seq_from_the_history() {
        let mut history = History::default();
        for (first, last) in [(1, 3), (4, 6), (7, 9)] {
            history.keep(&lines(first, last));
        }
        let mut out = BytesMut::new();
        assert_eq!(history.after(4, &mut out, usize::MAX), Some(9));
        assert_eq!(ids(&out), [5, 6, 7, 8, 9]);
        let mut out = BytesMut::new();
        assert_eq!(
            history.after(9, &mut out, usize::MAX),
            None,
            "nothing newer"
        );
        // At most about `most` bytes: whole batches, the first going over.
        let mut out = BytesMut::new();
        assert_eq!(history.after(0, &mut out, 1), Some(3));
        assert_eq!(ids(&out), [1, 2, 3]);
    }

    #[test]
    fn what_the_history_no_longer_holds_is_left_to_the_store() {
        let mut history = History::default();
        history.keep(&lines(1, 3));
        // Far more than it keeps: the first batches are dropped.
        let big = KEEP_BYTES / lines(4, 4).bytes.len() + 10;
        history.keep(&lines(4, 3 + big as u64));
        let mut out = BytesMut::new();
        assert_eq!(
            history.after(0, &mut out, usize::MAX),
            None,
            "line 1 is gone"
        );
        assert!(out.is_empty());
        assert!(history.bytes <= KEEP_BYTES || history.batches.len() == 1);
    }
}
