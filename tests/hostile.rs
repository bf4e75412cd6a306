//! Hostile peers against a real driver node on 127.0.0.1. The attacker speaks the protocol
//! itself, with the crate's own handshake and record layer over a blocking `TcpStream`, so
//! it can complete a genuine handshake and then misbehave: replay a record, flip a bit of
//! one, declare an enormous frame, cut a frame short. The node must close such connections,
//! emit nothing the attacker forged, and keep serving. (The target and the peer are in
//! `support/`, shared with `hostile_input.rs`.)

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use espial::core::cluster::Event;
use espial::core::crypto::{Handshake, Role};
use espial::core::message::Message;
use espial::core::wire;
use espial::driver::Notification;
use rand_core::OsRng;
use support::peer::read_frame;
use support::{assert_closed, still_serving, Peer, Target};

#[test]
fn a_replayed_record_closes_the_connection_and_is_not_delivered() {
    let mut target = Target::start(&["evt"]);
    let mut peer = Peer::join(&mut target);
    let frame = peer.event(b"genuine-1");
    target.wait_for("the genuine event", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"genuine-1")
    });
    peer.stream.write_all(&frame).unwrap();
    assert_closed(&mut peer.stream, "after a replayed record");
    let id = peer.id;
    target.wait_for(
        "the attacker removed",
        |n| matches!(n, Notification::Cluster(Event::NodeRemoved(info)) if info.id == id),
    );
    target.settle(Duration::from_millis(300));
    assert_eq!(
        target.messages(),
        vec![b"genuine-1".to_vec()],
        "delivered once only"
    );
    target.assert_no_errors();
    target.exit();
}

#[test]
fn a_bit_flipped_record_closes_the_connection_and_is_not_delivered() {
    let mut target = Target::start(&["evt"]);
    // One bit flipped in each part of the record: the kind byte, the sequence number, the
    // ciphertext and the tag (a fresh authenticated connection each time).
    let body_len = 1 + 8 + (1 + 8 + 1 + 1 + 3 + 9) + 16;
    for (i, at) in [0usize, 8, 14, body_len - 1].into_iter().enumerate() {
        let mut peer = Peer::join(&mut target);
        let mut frame = peer
            .session
            .seal(
                &Message::Event {
                    seq: 1,
                    name: "evt",
                    binary: true,
                    payload: b"forged-00",
                }
                .encode(),
            )
            .unwrap();
        assert_eq!(frame.len(), wire::LEN_PREFIX + body_len);
        frame[wire::LEN_PREFIX + at] ^= 0x04;
        peer.stream.write_all(&frame).unwrap();
        assert_closed(&mut peer.stream, &format!("flip {i} at body byte {at}"));
        let id = peer.id;
        target.wait_for(
            "the attacker removed",
            |n| matches!(n, Notification::Cluster(Event::NodeRemoved(info)) if info.id == id),
        );
    }
    target.settle(Duration::from_millis(300));
    assert_eq!(
        target.messages(),
        Vec::<Vec<u8>>::new(),
        "nothing forged emitted"
    );
    target.assert_no_errors();
    target.exit();
}

#[test]
fn an_enormous_declared_length_after_the_handshake_is_refused_at_once() {
    let mut target = Target::start(&["evt"]);
    let mut peer = Peer::join(&mut target);
    // 4 GiB - 1 declared, a few bytes sent: refused on the prefix, not buffered.
    peer.stream
        .write_all(&[0xff, 0xff, 0xff, 0xff, wire::kind::RECORD, 0, 0, 0])
        .unwrap();
    assert_closed(&mut peer.stream, "after a 4 GiB declared length");
    // And the node still serves: a new peer joins and is heard.
    still_serving(&mut target, "an event after the attack");
    target.assert_no_errors();
    target.exit();
}

#[test]
fn garbage_before_and_during_the_handshake_is_refused() {
    let mut target = Target::start(&["evt"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
        ),
        (
            "an enormous declared length",
            vec![0xff, 0xff, 0xff, 0xff, 1, 1, 0, 0],
        ),
        ("a length just over the handshake bound", {
            let mut v = ((wire::MAX_HANDSHAKE_FRAME + 1) as u32)
                .to_be_bytes()
                .to_vec();
            v.push(wire::kind::HELLO);
            v
        }),
        ("an empty frame", vec![0, 0, 0, 0]),
        (
            "a record before any hello",
            wire::frame(&[wire::kind::RECORD; 40]),
        ),
        (
            "a hello of the wrong length",
            wire::frame(&[wire::kind::HELLO, 1, 0, 0, 3, b'a']),
        ),
    ];
    for (what, bytes) in cases {
        let mut s = TcpStream::connect(target.addr).unwrap();
        s.write_all(&bytes).unwrap();
        assert_closed(&mut s, what);
    }
    // A truncated hello, then the end of the stream: the node closes its side too.
    let mut s = TcpStream::connect(target.addr).unwrap();
    let (_hs, hello) = Handshake::start(Role::Initiator, &target.cluster, None, &mut OsRng);
    let framed = wire::frame(&hello);
    s.write_all(&framed[..framed.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(&mut s, "a truncated hello");
    // A truncated record after a genuine handshake.
    let mut peer = Peer::join(&mut target);
    let frame = peer.event(b"never-whole");
    // (the event above went whole; now half of another one, then the end)
    let half = peer
        .session
        .seal(
            &Message::Event {
                seq: 2,
                name: "evt",
                binary: true,
                payload: b"cut-short",
            }
            .encode(),
        )
        .unwrap();
    assert!(frame.len() > 10);
    peer.stream.write_all(&half[..half.len() - 5]).unwrap();
    peer.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_closed(&mut peer.stream, "a truncated record");
    target.settle(Duration::from_millis(300));
    assert_eq!(target.messages(), vec![b"never-whole".to_vec()]);
    // Still serving.
    still_serving(&mut target, "an event after the garbage");
    target.assert_no_errors();
    target.exit();
}

#[test]
fn records_of_one_connection_are_refused_on_another() {
    // A record lifted from one authenticated connection and injected into another (with its
    // sequence number matching) does not authenticate there: keys are per connection.
    let mut target = Target::start(&["evt"]);
    let mut a = Peer::join(&mut target);
    let mut b = Peer::join(&mut target);
    // Both sessions have sent 2 records (Introduce, Verdict) plus the confirmation: same seq.
    let lifted = a.session.seal(
        &Message::Event {
            seq: 1,
            name: "evt",
            binary: true,
            payload: b"lifted",
        }
        .encode(),
    );
    let lifted = lifted.unwrap();
    b.stream.write_all(&lifted).unwrap();
    assert_closed(&mut b.stream, "a record from another connection");
    target.settle(Duration::from_millis(300));
    assert_eq!(target.messages(), Vec::<Vec<u8>>::new());
    // On its own connection the same record is genuine, and a is still a member.
    a.stream.write_all(&lifted).unwrap();
    target.wait_for("a's event", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"lifted")
    });
    target.assert_no_errors();
    target.exit();
}

/// Reads the node's messages to `peer` until its election state, and returns the claim it
/// follows.
fn claim_told_to(peer: &mut Peer) -> Option<espial::core::election::Claim> {
    use espial::core::election::ElectionMsg;
    loop {
        let frame = read_frame(&mut peer.stream).expect("the node's election state");
        let plain = peer.session.open(&frame).unwrap();
        if let Ok(Message::Election(ElectionMsg::State(claim))) = Message::decode(&plain, 1 << 20) {
            return claim;
        }
    }
}

#[test]
fn forged_election_messages_close_the_connection_and_move_no_master() {
    use espial::core::election::{Claim, ElectionMsg};
    let mut target = Target::start(&[]);
    // Alone, the node becomes master after the election timeout.
    target.wait_for("the node's promotion", |n| {
        matches!(n, Notification::Cluster(Event::Promotion { .. }))
    });
    let mut peer = Peer::join(&mut target);
    let claim = claim_told_to(&mut peer).expect("the node is master");
    let forgeries = [
        // An ineligible member claims mastership for itself.
        ElectionMsg::State(Some(Claim {
            master: peer.id,
            term: claim.term + 1,
        })),
        // A member resigns the node's own claim for it.
        ElectionMsg::Resign(claim),
        // A member pins the term where no promote() could ever pass it.
        ElectionMsg::State(Some(Claim {
            master: peer.id,
            term: u64::MAX,
        })),
    ];
    let before = target.seen.len();
    for (i, forged) in forgeries.into_iter().enumerate() {
        if i > 0 {
            peer = Peer::join(&mut target);
        }
        peer.send(&Message::Election(forged));
        assert_closed(&mut peer.stream, &format!("after {forged:?}"));
    }
    target.settle(Duration::from_millis(300));
    let moved: Vec<_> = target.seen[before..]
        .iter()
        .filter(|n| {
            matches!(
                n,
                Notification::Cluster(
                    Event::NewMaster(_) | Event::Promotion { .. } | Event::Demotion { .. }
                )
            )
        })
        .collect();
    assert!(moved.is_empty(), "the node's master moved: {moved:?}");
    assert_eq!(target.handle.stats().messages_refused, 3);
    // Still master: a newcomer is told the same claim.
    let mut next = Peer::join(&mut target);
    assert_eq!(claim_told_to(&mut next), Some(claim));
    target.assert_no_errors();
    target.exit();
}
