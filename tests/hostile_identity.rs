//! Identity against a real driver node on 127.0.0.1 (issue 13): a node is its key. The
//! attacker completes genuine handshakes with key pairs of its own (`support/peer.rs`) and
//! tries to be connected as another node's id, to answer a dial meant for another id, to
//! speak another protocol version, and to get a keyed node's key confirmation without the
//! key. The victim's view is read off its notifications (added, removed, deliveries), the
//! nodes its connection filter was asked about, and its counters.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use espial::core::cluster::Event;
use espial::core::crypto::{ClusterKey, Handshake, Identity, Role};
use espial::core::message::Message;
use espial::core::node::{Candidate, NodeId};
use espial::core::wire;
use espial::driver::{Filter, Notification};
use rand_core::OsRng;
use support::peer::{read_frame, Refused};
use support::{assert_closed, still_serving, Peer, Target, WAIT};

/// A connection filter that admits everyone and remembers whom it was asked about.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<NodeId>>>);

impl Filter for Recorder {
    fn judge(
        &self,
        node: Candidate,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<bool, String>> + Send>> {
        self.0.lock().unwrap().push(node.id);
        Box::pin(async { Ok(true) })
    }
}

impl Recorder {
    fn asked(&self) -> Vec<NodeId> {
        self.0.lock().unwrap().clone()
    }
}

fn filtered_target() -> (Target, Recorder) {
    let target = Target::start(&["evt"]);
    let filter = Recorder::default();
    target.handle.set_filter(Some(Arc::new(filter.clone())));
    (target, filter)
}

fn added(target: &Target) -> Vec<NodeId> {
    let ids = target.seen.iter().filter_map(|n| match n {
        Notification::Cluster(Event::NodeAdded(info)) => Some(info.id),
        _ => None,
    });
    ids.collect()
}

fn removed(target: &Target) -> Vec<NodeId> {
    let ids = target.seen.iter().filter_map(|n| match n {
        Notification::Cluster(Event::NodeRemoved(info)) => Some(info.id),
        _ => None,
    });
    ids.collect()
}

/// Everything the node sends on `s` until it closes it (or [`WAIT`]).
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the node kept the connection open ({e}); read {out:?}"),
        }
    }
}

/// The frames in `bytes`, as (kind, body length).
fn frames(bytes: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= wire::LEN_PREFIX {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let body = &rest[4..(4 + len).min(rest.len())];
        out.push((body.first().copied().unwrap_or(0), len));
        rest = &rest[(4 + len).min(rest.len())..];
    }
    out
}

#[test]
fn a_peer_without_a_members_key_cannot_be_connected_as_that_member() {
    let (mut target, filter) = filtered_target();
    let mut member = Peer::join(&mut target);
    let victim_of = member.id;
    assert_eq!(filter.asked(), vec![victim_of]);

    // 1. Its own key, the member's id in its introduction: refused, never asked about.
    let mut claimer = Peer::handshake(&target);
    claimer.introduce_as(victim_of, "{}");
    assert_eq!(claimer.their_verdict(), None, "closed, no verdict");
    assert_eq!(target.stats().messages_refused, 1);

    // 2. The member's public key in its key confirmation, signed with its own: the
    // handshake fails, and the node never confirms back.
    let refused = Peer::try_connect(
        target.addr,
        &target.cluster,
        None,
        Identity::generate(&mut OsRng),
        Some(*member.identity.public_key()),
    );
    assert_eq!(refused.err(), Some(Refused::Closed));
    let stats = target.stats();
    assert_eq!(stats.handshakes_failed, 1, "{stats:?}");

    // 3. Its own key, honestly: it is a node of its own, judged by the filter as itself.
    let honest = Peer::join(&mut target);
    assert_ne!(honest.id, victim_of);
    assert_eq!(filter.asked(), vec![victim_of, honest.id]);

    // The member is untouched: added once, never removed, still heard as itself.
    member.event(b"from-the-member");
    target.wait_for("the member's event", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { from, payload, .. })
            if *from == victim_of && payload == b"from-the-member")
    });
    target.settle(Duration::from_millis(200));
    assert_eq!(added(&target), vec![victim_of, honest.id]);
    assert_eq!(removed(&target), vec![]);
    assert_eq!(filter.asked(), vec![victim_of, honest.id]);
    target.assert_no_errors();
    target.exit();
}

#[test]
fn a_dial_to_a_hinted_id_that_reaches_another_key_fails_is_counted_and_adds_nothing() {
    let (mut target, filter) = filtered_target();
    let mut member = Peer::join(&mut target);
    // The member hints that node `hinted` listens at our address; the node dials it (its
    // id is smaller than any with every byte 0xff) and meets another key there.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hinted = NodeId([0xff; 16]);
    member.send(&Message::Members(vec![(
        hinted,
        listener.local_addr().unwrap(),
    )]));
    let answerer = Identity::generate(&mut OsRng);
    let answerer_id = answerer.id();
    let mut answered = Peer::accept(&listener, &target.cluster, None, answerer)
        .expect("our half of the handshake checks out");
    assert_eq!(
        answered.node_id, member.node_id,
        "the node proved its own id"
    );
    // The node learns who answered and closes at once: it introduces itself to nobody
    // but the node it dialed.
    let after = read_to_close(&mut answered.stream);
    assert_eq!(after, Vec::<u8>::new(), "sent after our confirmation");
    let stats = target.stats();
    assert_eq!(stats.identity_mismatches, 1, "{stats:?}");
    assert_eq!(stats.handshakes_failed, 1, "{stats:?}");
    target.settle(Duration::from_millis(200));
    assert_eq!(added(&target), vec![member.id]);
    assert!(!added(&target).contains(&answerer_id) && !added(&target).contains(&hinted));
    assert_eq!(filter.asked(), vec![member.id]);
    still_serving(&mut target, "a member after the mismatch");
    target.exit();
}

#[test]
fn a_peer_of_another_protocol_version_is_refused_and_counted() {
    let mut target = Target::start(&["evt"]);
    // Version 1's hello: kind, version, flags, role, cluster, key, random.
    let mut v1 = vec![wire::kind::HELLO, 1, 0, 0, target.cluster.len() as u8];
    v1.extend_from_slice(target.cluster.as_bytes());
    v1.extend_from_slice(&[4; 65]);
    v1.extend_from_slice(&[0; 32]);
    for hello in [v1, vec![wire::kind::HELLO, 3, 0xee]] {
        let mut s = TcpStream::connect(target.addr).unwrap();
        s.write_all(&wire::frame(&hello)).unwrap();
        let got = read_to_close(&mut s);
        assert_eq!(frames(&got).len(), 1, "its hello only: {got:?}");
        assert_eq!(
            got[4..6],
            [wire::kind::HELLO, 2],
            "it says which version it speaks"
        );
    }
    let stats = target.stats();
    assert_eq!(stats.version_mismatches, 2, "{stats:?}");
    assert_eq!(stats.handshakes_failed, 2, "{stats:?}");
    assert_eq!(stats.handshakes_completed, 0, "{stats:?}");
    still_serving(&mut target, "a member after the attempts");
    target.exit();
}

#[test]
fn a_keyless_or_guessing_initiator_gets_nothing_sealed_from_a_keyed_node() {
    // The node's key confirmation, sealed under the cluster key, would let a guesser test
    // each guess offline: the node must not send it before ours verifies, and never if it
    // does not.
    let key = ClusterKey::new(b"the genuine cluster key, 32 bytes+", "hostile");
    let mut target = Target::start_with(&["evt"], |c| c.cluster_key = Some(key.clone()));
    let guess = ClusterKey::new(b"a guess at the cluster key, 32 b+", "hostile");
    for attempt in [None, Some(&guess)] {
        let mut s = TcpStream::connect(target.addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let (hs, hello) = Handshake::start(Role::Initiator, &target.cluster, attempt, &mut OsRng);
        s.write_all(&wire::frame(&hello)).unwrap();
        let their_hello = read_frame(&mut s).expect("the node's hello");
        assert_eq!(their_hello[0], wire::kind::HELLO);
        if attempt.is_some() {
            // Its keys agreed on a guess: what it gets for it before it confirms is nothing.
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut byte = [0u8; 1];
            let early = s.read(&mut byte);
            assert!(
                matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
                "the node sent something before our confirmation: {early:?}"
            );
            let me = Identity::generate(&mut OsRng);
            let (_, confirmation) = hs.finish(&their_hello, &me).unwrap();
            s.write_all(&confirmation.unwrap()).unwrap();
        }
        let after = read_to_close(&mut s);
        if attempt.is_some() {
            // Told why in the clear (two bytes), and nothing sealed, ever.
            let alert = wire::frame(&wire::KEY_MISMATCH_ALERT);
            assert_eq!(after, alert, "{:?}", frames(&after));
        } else {
            assert_eq!(after, Vec::<u8>::new(), "{:?}", frames(&after));
        }
    }
    let stats = target.stats();
    assert_eq!(stats.key_mismatches, 2, "{stats:?}");
    assert_eq!(stats.handshakes_completed, 0, "{stats:?}");
    // A peer with the key is confirmed to as usual.
    still_serving(&mut target, "a member with the key");
    target.exit();
}

#[test]
fn a_peer_reconnecting_with_its_own_key_is_the_same_node() {
    let mut target = Target::start(&["evt"]);
    let identity = Identity::generate(&mut OsRng);
    let mut first = Peer::connect_as(target.addr, &target.cluster, None, identity.clone());
    first.introduce("{}");
    assert_eq!(first.their_verdict(), Some(true));
    let id = first.id;
    target.wait_for(
        "the peer added",
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(i)) if i.id == id),
    );
    first.send(&Message::Leave);
    assert_closed(&mut first.stream, "after its goodbye");
    target.wait_for(
        "the peer removed",
        |n| matches!(n, Notification::Cluster(Event::NodeRemoved(i)) if i.id == id),
    );
    // The same key pair again proves the same id.
    let again = Peer::connect_as(target.addr, &target.cluster, None, identity);
    assert_eq!(again.id, id);
    assert_eq!(again.node_id, first.node_id);
    target.exit();
}
