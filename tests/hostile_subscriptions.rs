//! A member's subscriptions are bounded (issue 14): at most `MAX_JOINED` events whose names
//! are at most `MAX_JOINED_BYTES` in all, the bounds a node applies to its own joins. A
//! `Subscribe` or `Subscriptions` past either breaks the protocol: the connection is closed,
//! `messages_refused` counts it, and the node holds nothing more for the peer. Against a real
//! driver node on 127.0.0.1 (the target and the peer are in `support/`).

mod support;

use espial::core::cluster::Event;
use espial::core::message::{Message, MAX_EVENT_NAME, MAX_JOINED};
use espial::core::subscriptions::MAX_JOINED_BYTES;
use espial::driver::Notification;
use support::{assert_closed, still_serving, Peer, Target};

/// Distinct names of the longest kind: as few as it takes to pass the byte bound.
fn long_name(i: usize) -> String {
    format!("{i:0>width$}", width = MAX_EVENT_NAME)
}

/// How many longest names fit under the byte bound.
fn fit() -> usize {
    MAX_JOINED_BYTES / MAX_EVENT_NAME
}

fn refused_once(target: &Target, what: &str) {
    let stats = target.stats();
    assert_eq!(stats.messages_refused, 1, "{what}: {stats:?}");
}

#[test]
fn subscribes_past_the_byte_bound_close_the_connection() {
    let mut target = Target::start(&["evt"]);
    let mut peer = Peer::join(&mut target);
    for i in 0..fit() {
        peer.send(&Message::Subscribe(long_name(i)));
    }
    // Up to the bound the member is a member like any other.
    peer.event(b"within");
    target.wait_for("an event after joins within the bound", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"within")
    });
    assert_eq!(target.stats().messages_refused, 0);
    peer.send(&Message::Subscribe(long_name(fit())));
    assert_closed(&mut peer.stream, "a Subscribe past the byte bound");
    refused_once(&target, "a Subscribe past the byte bound");
    still_serving(&mut target, "a member after the attack");
    target.exit();
}

#[test]
fn a_subscription_list_past_the_byte_bound_closes_the_connection() {
    let mut target = Target::start(&["evt"]);
    let mut peer = Peer::join(&mut target);
    // Within the count the decoder allows, over the bytes.
    let names = (0..=fit()).map(long_name).collect();
    peer.send(&Message::Subscriptions(names));
    assert_closed(&mut peer.stream, "a Subscriptions list past the byte bound");
    refused_once(&target, "a Subscriptions list past the byte bound");
    still_serving(&mut target, "a member after the attack");
    target.exit();
}

#[test]
fn subscribes_past_the_event_bound_close_the_connection() {
    let mut target = Target::start(&["evt"]);
    let mut peer = Peer::join(&mut target);
    // Short names: the count is the bound that is passed, not the bytes.
    for i in 0..MAX_JOINED {
        peer.send(&Message::Subscribe(format!("{i:x}")));
    }
    // Joining again a name held already is no news, and no violation.
    peer.send(&Message::Subscribe("0".into()));
    peer.event(b"within");
    target.wait_for("an event after joins within the bound", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"within")
    });
    assert_eq!(target.stats().messages_refused, 0);
    peer.send(&Message::Subscribe("one more".into()));
    assert_closed(&mut peer.stream, "a Subscribe past the event bound");
    refused_once(&target, "a Subscribe past the event bound");
    still_serving(&mut target, "a member after the attack");
    target.exit();
}
