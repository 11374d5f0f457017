//! The uplink's promises: order, numbering, resend, acknowledgement, bounds, redaction.

use super::*;

fn batch(msg: Option<agent_message::Msg>) -> (String, Vec<(u64, String)>) {
    match msg {
        Some(agent_message::Msg::Logs(batch)) => (
            batch.mission_id,
            batch.lines.into_iter().map(|l| (l.seq, l.text)).collect(),
        ),
        other => panic!("expected a log batch, got {other:?}"),
    }
}

fn sink(uplink: &Uplink, mission: &str) -> Sink {
    uplink.sink(mission, Arc::new(Redactor::new(["hunter2"])))
}

#[test]
fn lines_are_numbered_from_the_control_planes_cursor_and_redacted() {
    let uplink = Uplink::new(100);
    let log = sink(&uplink, "m-1");
    log.line(LogStream::Stdout, "web", "password is hunter2");
    uplink.begin_session(&[LogAck {
        mission_id: "m-1".into(),
        through_seq: 41,
    }]);
    let (mission, lines) = batch(uplink.next_message());
    assert_eq!(mission, "m-1");
    assert_eq!(lines, [(42, "password is [REDACTED]".to_owned())]);
}

#[test]
fn an_update_waits_for_the_lines_queued_before_it() {
    let uplink = Uplink::new(100);
    let log = sink(&uplink, "m-1");
    log.say("one");
    uplink.update(MissionUpdate {
        mission_id: "m-1".into(),
        ..Default::default()
    });
    log.say("two");
    assert_eq!(batch(uplink.next_message()).1, [(1, "one".to_owned())]);
    assert!(matches!(
        uplink.next_message(),
        Some(agent_message::Msg::Update(_))
    ));
    assert_eq!(batch(uplink.next_message()).1, [(2, "two".to_owned())]);
    assert!(uplink.next_message().is_none());
}

#[test]
fn unacknowledged_lines_are_resent_after_a_reconnect_and_acked_ones_are_not() {
    let uplink = Uplink::new(100);
    let log = sink(&uplink, "m-1");
    for i in 1..=3 {
        log.say(&format!("line {i}"));
    }
    uplink.begin_session(&[]);
    assert_eq!(batch(uplink.next_message()).1.len(), 3);
    uplink.ack(&LogAck {
        mission_id: "m-1".into(),
        through_seq: 1,
    });
    // The session breaks; the next one re-sends 2 and 3 with the same numbers.
    uplink.begin_session(&[]);
    let seqs: Vec<u64> = batch(uplink.next_message())
        .1
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(seqs, [2, 3]);
    // A cursor from the control plane that already has 3 releases it too.
    uplink.begin_session(&[LogAck {
        mission_id: "m-1".into(),
        through_seq: 3,
    }]);
    assert!(uplink.next_message().is_none());
    assert_eq!(uplink.pending_lines(), (0, 0));
}

#[test]
fn batches_hold_one_mission_and_at_most_max_batch_lines() {
    let uplink = Uplink::new(10_000);
    let a = sink(&uplink, "m-a");
    let b = sink(&uplink, "m-b");
    for _ in 0..(MAX_BATCH + 1) {
        a.say("a");
    }
    b.say("b");
    assert_eq!(batch(uplink.next_message()).1.len(), MAX_BATCH);
    assert_eq!(
        batch(uplink.next_message()).1,
        [(MAX_BATCH as u64 + 1, "a".to_owned())]
    );
    assert_eq!(
        batch(uplink.next_message()),
        ("m-b".to_owned(), vec![(1, "b".to_owned())])
    );
}

#[test]
fn a_full_buffer_drops_the_oldest_unsent_lines_and_says_so() {
    let uplink = Uplink::new(3);
    let log = sink(&uplink, "m-1");
    for i in 1..=5 {
        log.say(&format!("line {i}"));
    }
    assert_eq!(
        uplink.pending_lines(),
        (0, 3),
        "the buffer grew past its bound"
    );
    let (_, marker) = batch(uplink.next_message());
    assert_eq!(marker.len(), 1);
    assert!(
        marker[0].1.contains("2 log lines were dropped"),
        "{marker:?}"
    );
    let texts: Vec<String> = batch(uplink.next_message())
        .1
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(texts, ["line 3", "line 4", "line 5"]);
}
