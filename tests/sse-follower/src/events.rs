//! The dashboard's log stream as a browser's `EventSource` reads it: events
//! are blocks of `field: value` lines ended by a blank line; a `line` event's
//! id is its seq. The checker counts lines and proves they came once each
//! and in order (ids 1, 2, 3, …), and that no `gap` came.

/// What one follower saw so far.
#[derive(Debug, Default)]
pub struct Checker {
    /// Body bytes not yet scanned (an incomplete line at most).
    pub pending: Vec<u8>,
    /// The id the next `line` event must carry.
    next: u64,
    /// The current event's fields so far.
    id: Option<u64>,
    event: Kind,
    /// `line` events received.
    pub lines: u64,
    /// Lines whose id was not the next expected (repeated, skipped, out of
    /// order), and `gap` events: both must be 0.
    pub out_of_order: u64,
    /// The highest id seen on any event.
    pub last_id: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Kind {
    #[default]
    Other,
    Line,
    Gap,
}

impl Checker {
    pub fn new() -> Checker {
        Checker {
            next: 1,
            ..Checker::default()
        }
    }

    /// Scans the complete lines in `pending`, keeping an incomplete last
    /// one for the next call.
    pub fn scan(&mut self) {
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let (from, to) = (start, start + end);
            start = to + 1;
            let line = &self.pending[from..to];
            if line.is_empty() {
                self.dispatch();
            } else if let Some(value) = line.strip_prefix(b"id:") {
                self.id = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            } else if let Some(value) = line.strip_prefix(b"event:") {
                self.event = match value.trim_ascii() {
                    b"line" => Kind::Line,
                    b"gap" => Kind::Gap,
                    _ => Kind::Other,
                };
            }
        }
        self.pending.drain(..start);
    }

    /// One complete event (its blank line was read).
    fn dispatch(&mut self) {
        match self.event {
            Kind::Line => {
                self.lines += 1;
                if self.id == Some(self.next) {
                    self.next += 1;
                } else {
                    self.out_of_order += 1;
                    self.next = self.id.unwrap_or(self.next) + 1;
                }
            }
            Kind::Gap => self.out_of_order += 1,
            Kind::Other => {}
        }
        if let Some(id) = self.id {
            self.last_id = self.last_id.max(id);
        }
        (self.id, self.event) = (None, Kind::Other);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(stream: &str, cut: usize) -> Checker {
        let mut checker = Checker::new();
        for part in [&stream.as_bytes()[..cut], &stream.as_bytes()[cut..]] {
            checker.pending.extend_from_slice(part);
            checker.scan();
        }
        checker
    }

    const IN_ORDER: &str = "retry: 1000\n: log\n\nid: 1\nevent: line\ndata: one\n\n\
                            event: state\ndata: running\n\nid: 2\nevent: line\ndata: two\n\n";

    #[test]
    fn lines_in_order_count_once_wherever_the_reads_cut() {
        for cut in 0..=IN_ORDER.len() {
            let checker = checked(IN_ORDER, cut);
            assert_eq!(
                (checker.lines, checker.out_of_order, checker.last_id),
                (2, 0, 2),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_repeated_or_skipped_line_and_a_gap_are_out_of_order() {
        let repeated = "id: 1\nevent: line\ndata: a\n\nid: 1\nevent: line\ndata: a\n\n";
        assert_eq!(checked(repeated, 0).out_of_order, 1);
        let skipped = "id: 1\nevent: line\ndata: a\n\nid: 3\nevent: line\ndata: c\n\n";
        assert_eq!(checked(skipped, 0).out_of_order, 1);
        let gap = "id: 1\nevent: line\ndata: a\n\nid: 3\nevent: gap\ndata: lines 2–3\n\n";
        let checker = checked(gap, 0);
        assert_eq!((checker.lines, checker.out_of_order), (1, 1));
    }

    #[test]
    fn an_event_without_its_blank_line_is_not_counted_yet() {
        let checker = checked("id: 1\nevent: line\ndata: a\n", 0);
        assert_eq!((checker.lines, checker.last_id), (0, 0));
    }
}
