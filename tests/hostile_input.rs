//! Hostile *content* from authenticated peers against a real driver node on 127.0.0.1:
//! metadata that is not a JSON object (in the profile and in an `Update`) and custom
//! event text that is not JSON. JavaScript parses both, so the core refuses them before
//! they become an event: metadata closes the connection, a bad payload is dropped, each is
//! counted in `messages_refused`, and the node keeps serving. (The target and the peer are
//! in `support/`, shared with `hostile.rs`.)

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use espial::core::cluster::Event;
use espial::core::config::DEFAULT_MAX_METADATA;
use espial::core::message::Message;
use espial::core::node::{Candidate, NodeId};
use espial::driver::{Filter, Notification};
use support::{assert_closed, still_serving, Peer, Target};

/// Metadata a peer may not give: each case closes its connection.
fn bad_metadata() -> Vec<(&'static str, String)> {
    vec![
        ("an unclosed object", "{".into()),
        ("not JSON", "not json".into()),
        ("an array", "[1]".into()),
        ("a string", "\"str\"".into()),
        (
            "an object over the 64 KiB bound",
            format!("{{\"a\":\"{}\"}}", "x".repeat(DEFAULT_MAX_METADATA)),
        ),
    ]
}

/// A connection filter that admits everyone and remembers whom it was asked about.
#[derive(Default)]
struct Asked(Mutex<Vec<NodeId>>);

impl Filter for Asked {
    fn judge(&self, node: Candidate) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send>> {
        self.0.lock().unwrap().push(node.id);
        Box::pin(async { Ok(true) })
    }
}

/// Every membership event about `ids` so far.
fn events_about(target: &Target, ids: &[NodeId]) -> Vec<Notification> {
    target
        .seen
        .iter()
        .filter(|n| match n {
            Notification::Cluster(
                Event::NodeAdded(i) | Event::NodeUpdated(i) | Event::NodeAccepted(i),
            ) => ids.contains(&i.id),
            Notification::Cluster(Event::NodeRejected(c)) => ids.contains(&c.id),
            _ => false,
        })
        .cloned()
        .collect()
}

#[test]
fn profile_metadata_that_is_not_a_json_object_is_refused() {
    let mut target = Target::start(&["evt"]);
    let asked = Arc::new(Asked::default());
    target.handle.set_filter(Some(asked.clone()));
    let mut forgers = Vec::new();
    for (i, (what, metadata)) in bad_metadata().into_iter().enumerate() {
        let mut peer = Peer::handshake(&target);
        // The filter judges the introduction, which carries no metadata; the profile
        // that follows admission does, and is refused.
        peer.introduce(&metadata);
        assert_eq!(peer.their_verdict(), Some(true), "{what}");
        assert_closed(&mut peer.stream, what);
        assert_eq!(target.stats().messages_refused, i as u64 + 1, "{what}");
        forgers.push(peer.id);
    }
    target.settle(Duration::from_millis(300));
    assert_eq!(
        events_about(&target, &forgers),
        vec![],
        "nothing about the forgers"
    );
    assert_eq!(target.handle.stats().nodes_rejected, 0);
    still_serving(&mut target, "a genuine peer after the forged introductions");
    // The filter was asked about every newcomer, forgers included: it judges before any
    // metadata crosses.
    let asked = asked.0.lock().unwrap().clone();
    assert_eq!(asked.len(), forgers.len() + 1, "{asked:?}");
    assert_eq!(asked[..forgers.len()], forgers[..]);
    target.assert_no_errors();
    target.exit();
}

#[test]
fn an_update_whose_metadata_is_not_a_json_object_is_refused() {
    let mut target = Target::start(&["evt"]);
    let mut forgers = Vec::new();
    for (i, (what, metadata)) in bad_metadata().into_iter().enumerate() {
        let mut peer = Peer::join(&mut target);
        peer.send(&Message::Update { metadata });
        assert_closed(&mut peer.stream, what);
        let id = peer.id;
        target.wait_for(
            "the forger removed",
            |n| matches!(n, Notification::Cluster(Event::NodeRemoved(info)) if info.id == id),
        );
        assert_eq!(target.stats().messages_refused, i as u64 + 1, "{what}");
        forgers.push(id);
    }
    target.settle(Duration::from_millis(300));
    let updated: Vec<_> = events_about(&target, &forgers)
        .into_iter()
        .filter(|n| matches!(n, Notification::Cluster(Event::NodeUpdated(_))))
        .collect();
    assert_eq!(updated, vec![], "no forged update emitted");
    // A genuine update still is.
    let mut peer = Peer::join(&mut target);
    peer.send(&Message::Update {
        metadata: "{\"role\":\"web\"}".into(),
    });
    let id = peer.id;
    target.wait_for("the genuine update", |n| {
        matches!(n, Notification::Cluster(Event::NodeUpdated(info))
            if info.id == id && info.metadata == "{\"role\":\"web\"}")
    });
    still_serving(&mut target, "an event after the forged updates");
    target.assert_no_errors();
    target.exit();
}

#[test]
fn a_text_payload_that_is_not_json_is_dropped_and_the_connection_kept() {
    let mut target = Target::start(&["evt"]);
    let mut peer = Peer::join(&mut target);
    let bad: [&[u8]; 5] = [b"not json", b"{", b"", b"1 2", b"\"\xff\""];
    for payload in bad {
        peer.send_event("evt", false, payload);
    }
    // The same bytes as binary are opaque, and delivered; then valid JSON text is too.
    peer.send_event("evt", true, b"not json");
    peer.send_event("evt", false, b"{\"ok\":1}");
    target.wait_for("the valid text payload", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"{\"ok\":1}")
    });
    assert_eq!(
        target.messages(),
        vec![b"not json".to_vec(), b"{\"ok\":1}".to_vec()]
    );
    let stats = target.stats();
    assert_eq!(stats.messages_refused, bad.len() as u64);
    assert_eq!(stats.messages_in, 2);
    // Still a member, on the same connection.
    peer.event(b"after");
    target.wait_for("an event on the same connection", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"after")
    });
    let id = peer.id;
    assert!(!target
        .seen
        .iter()
        .any(|n| matches!(n, Notification::Cluster(Event::NodeRemoved(i)) if i.id == id)));
    target.assert_no_errors();
    target.exit();
}
