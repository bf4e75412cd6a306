//! Replies are checked in the core before anything reaches the application (issue 20): a
//! reply to a request never sent, one from another node than the target (before or after
//! the request ended), a second reply, a malformed one are dropped and counted, and the
//! members that sent them keep their connections (their streams are sound). A member's
//! unanswered requests are bounded. Against a real driver node on 127.0.0.1 (the target and
//! the peers are in `support/`).

mod support;

use std::time::Duration;

use espial::core::calls::{Answer, MAX_INCOMING_PER_PEER};
use espial::core::cluster::Event;
use espial::core::message::{status, Message};
use espial::driver::Notification;
use support::{still_serving, Peer, Target};

/// Reads what the node sends `peer` until a request arrives: its id.
fn next_request(peer: &mut Peer) -> u64 {
    loop {
        let plain = peer.next_message().expect("the node's request");
        if let Ok(Message::Request { id, .. }) = Message::decode(&plain, 1 << 20) {
            return id;
        }
    }
}

fn answers(target: &Target) -> Vec<(u64, Answer)> {
    target
        .seen
        .iter()
        .filter_map(|n| match n {
            Notification::Cluster(Event::Answer { id, answer, .. }) => Some((*id, answer.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn forged_second_and_malformed_replies_are_dropped_and_counted() {
    let mut target = Target::start(&["evt"]);
    let mut asked = Peer::join(&mut target);
    let mut other = Peer::join(&mut target);
    let id = target
        .handle
        .ask("work", false, b"[1]", asked.id, Duration::from_secs(30))
        .unwrap();
    assert_eq!(next_request(&mut asked), id);

    // Another member answers the request sent to `asked`, and one never sent. Two
    // connections are not ordered with each other: these may be read before or after the
    // genuine reply ends the request, and are refused either way.
    other.send_reply(id, status::VALUE_JSON, b"\"forged\"");
    other.send_reply(id + 1000, status::VALUE_JSON, b"\"forged\"");
    // The target itself: malformed (not JSON; a payload where none belongs), then never sent.
    asked.send_reply(id, status::VALUE_JSON, b"{");
    asked.send_reply(id, status::NO_HANDLER, b"x");
    asked.send_reply(0, status::VALUE_JSON, b"1");
    // Then the genuine reply, and a second one.
    asked.send_reply(id, status::VALUE_JSON, b"42");
    asked.send_reply(id, status::VALUE_JSON, b"43");
    asked.event(b"after");
    target.wait_for("an event after the replies", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"after")
    });
    other.event(b"other-after");
    target.wait_for("the other's event after its forgeries", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"other-after")
    });
    let value = Answer::Value {
        binary: false,
        payload: b"42".to_vec(),
    };
    assert_eq!(
        answers(&target),
        vec![(id, value)],
        "one answer, the genuine one"
    );
    let stats = target.stats();
    assert_eq!(stats.replies_refused, 3, "{stats:?}");
    assert_eq!(stats.replies_late, 1, "{stats:?}");
    assert_eq!(stats.messages_refused, 2, "{stats:?}");
    assert_eq!(target.handle.servers("work"), vec![]);
    still_serving(&mut target, "a member after the forgeries");
    target.assert_no_errors();
    target.exit();
}

#[test]
fn a_members_unanswered_requests_are_bounded_and_ids_unique() {
    let mut target = Target::start(&["evt"]);
    target.handle.serve("work".into()).unwrap();
    let mut peer = Peer::join(&mut target);
    // A name not served is answered at once, by the core.
    peer.send_request(1, "nobody", b"null");
    for id in 2..=(MAX_INCOMING_PER_PEER as u64 + 1) {
        peer.send_request(id, "work", b"null");
    }
    // The same id again while it is unanswered, then one past the bound.
    peer.send_request(2, "work", b"null");
    peer.send_request(u64::MAX, "work", b"null");
    let mut statuses = Vec::new();
    while statuses.len() < 2 {
        let plain = peer.next_message().expect("replies");
        if let Ok(Message::Reply { id, status, .. }) = Message::decode(&plain, 1 << 20) {
            statuses.push((id, status));
        }
    }
    assert_eq!(
        statuses,
        vec![(1, status::NO_HANDLER), (u64::MAX, status::BUSY)]
    );
    peer.event(b"after");
    target.wait_for("an event after the flood", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"after")
    });
    let handed = target
        .seen
        .iter()
        .filter(|n| matches!(n, Notification::Cluster(Event::Request { .. })))
        .count();
    assert_eq!(handed, MAX_INCOMING_PER_PEER);
    let stats = target.stats();
    assert_eq!(stats.requests_in, MAX_INCOMING_PER_PEER as u64);
    assert_eq!(stats.messages_refused, 1, "the reused id: {stats:?}");
    target.assert_no_errors();
    target.exit();
}

#[test]
fn a_third_partys_reply_after_the_request_ended_is_refused() {
    let mut target = Target::start(&["evt"]);
    let mut asked = Peer::join(&mut target);
    let mut other = Peer::join(&mut target);
    let ask = |target: &Target, to, timeout| {
        let id = target.handle.ask("work", false, b"[1]", to, timeout);
        id.unwrap()
    };
    let long = Duration::from_secs(30);
    let answered = ask(&target, asked.id, long);
    let aborted = ask(&target, asked.id, long);
    target.handle.cancel_request(aborted);
    asked.send_reply(answered, status::VALUE_JSON, b"42");
    target.wait_for(
        "the answer",
        |n| matches!(n, Notification::Cluster(Event::Answer { id, .. }) if *id == answered),
    );
    let timed_out = ask(&target, asked.id, Duration::from_millis(100));
    target.wait_for(
        "the timeout",
        |n| matches!(n, Notification::Cluster(Event::Answer { id, .. }) if *id == timed_out),
    );
    let value = Answer::Value {
        binary: false,
        payload: b"42".to_vec(),
    };
    let ended = vec![(answered, value), (timed_out, Answer::Timeout)];
    assert_eq!(answers(&target), ended);

    // Every request has ended: the other member's replies are refused, the target's late.
    for id in [answered, aborted, timed_out] {
        other.send_reply(id, status::VALUE_JSON, b"\"forged\"");
        asked.send_reply(id, status::VALUE_JSON, b"43");
    }
    other.event(b"other-after");
    asked.event(b"after");
    for marker in [&b"other-after"[..], b"after"] {
        target.wait_for("an event after the replies", |n| {
            matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == marker)
        });
    }
    assert_eq!(
        answers(&target),
        ended,
        "nothing more reached the application"
    );
    let stats = target.stats();
    assert_eq!(stats.replies_refused, 3, "{stats:?}");
    assert_eq!(stats.replies_late, 3, "{stats:?}");
    assert_eq!(stats.messages_refused, 0, "{stats:?}");
    target.assert_no_errors();
    target.exit();
}
