//! Bounds before trust, against a real driver node on 127.0.0.1 (issue 14): what a peer may
//! make the node buffer or count before it has proven anything. A frame larger than the
//! stage allows is refused from its declared length (`FrameError::TooLarge`, nothing
//! reserved): [`wire::MAX_HANDSHAKE_FRAME`] until the peer's key confirmation is verified,
//! [`wire::MAX_ADMISSION_FRAME`] until both ends have admitted each other, the message
//! bound only for members. A handshake counts as completed once the key confirmation is
//! verified. The driver does not forward `ConnectionFailed`, so a refusal is read off the
//! counters: a frame refused counts in `frames_rejected` (`FrameError::TooLarge` is the
//! only frame error a declared length can raise), while a node that accepted the length
//! would wait for the body until the stage's deadline and count a timeout, or nothing.
//! Each frame is declared one byte over the stage's limit, and under the next stage's, so
//! a limit that rose a stage early lets it through. (The target and the peer are in
//! `support/`.)

mod support;

use std::io::Write;
use std::net::TcpStream;

use espial::core::cluster::Event;
use espial::core::crypto::{ClusterKey, Handshake, Identity, Role};
use espial::core::message::Message;
use espial::core::wire;
use espial::driver::Notification;
use rand_core::OsRng;
use support::peer::read_frame;
use support::{assert_closed, still_serving, Peer, Target, WAIT};

/// A member's event, under the message bound (16 MiB) and far over the others.
const LARGE: usize = 1 << 20;

fn keyed_target() -> Target {
    Target::start_with(&["evt"], |c| {
        c.cluster_key = Some(ClusterKey::new(
            b"the genuine cluster key, 32 bytes+",
            "hostile",
        ));
    })
}

/// A handshake half done: our hello sent, the node's hello read (the node has its keys
/// and awaits our key confirmation before it sends its own); returns our key
/// confirmation, not yet sent.
fn half_handshake(target: &Target, key: Option<&ClusterKey>) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(target.addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (hs, hello) = Handshake::start(Role::Initiator, &target.cluster, key, &mut OsRng);
    stream.write_all(&wire::frame(&hello)).unwrap();
    let their_hello = read_frame(&mut stream).expect("the node's hello");
    let me = Identity::generate(&mut OsRng);
    let (_, confirmation) = hs.finish(&their_hello, &me).expect("handshake");
    (stream, confirmation.expect("an initiator confirms at once"))
}

/// Declares a record of `len` bytes and sends its first bytes only.
fn declare(stream: &mut TcpStream, len: usize) {
    let mut head = (len as u32).to_be_bytes().to_vec();
    head.extend_from_slice(&[wire::kind::RECORD; 64]);
    stream.write_all(&head).unwrap();
}

#[test]
fn a_large_frame_before_the_key_confirmation_is_refused_at_the_handshake_limit() {
    let mut target = keyed_target();
    let key = target.key.clone();
    let (mut stream, _confirmation) = half_handshake(&target, key.as_ref());
    declare(&mut stream, wire::MAX_HANDSHAKE_FRAME + 1);
    assert_closed(
        &mut stream,
        "after a large frame before the key confirmation",
    );
    let stats = target.stats();
    assert_eq!(
        stats.frames_rejected, 1,
        "refused from its length: {stats:?}"
    );
    assert_eq!(stats.handshakes_failed, 0, "not left to the deadline");
    assert_eq!(stats.handshakes_completed, 0, "the key was never confirmed");
    still_serving(&mut target, "a member after the attack");
    target.exit();
}

#[test]
fn a_large_frame_before_admission_is_refused_at_the_admission_limit() {
    let mut target = keyed_target();
    let key = target.key.clone();
    // Key confirmed, not introduced.
    let (mut stream, confirmation) = half_handshake(&target, key.as_ref());
    stream.write_all(&confirmation).unwrap();
    declare(&mut stream, wire::MAX_ADMISSION_FRAME + 1);
    assert_closed(&mut stream, "after a large frame before the introduction");
    let stats = target.stats();
    assert_eq!(
        stats.frames_rejected, 1,
        "refused from its length: {stats:?}"
    );
    assert_eq!(stats.handshakes_failed, 0, "not left to the deadline");
    assert_eq!(stats.handshakes_completed, 1);

    // Introduced and admitted by the node, but it has not admitted the node: not a member.
    let mut peer = Peer::handshake(&target);
    peer.introduce_only();
    assert_eq!(peer.their_verdict(), Some(true));
    declare(&mut peer.stream, wire::MAX_ADMISSION_FRAME + 1);
    assert_closed(&mut peer.stream, "after a large frame before its verdict");
    let stats = target.stats();
    assert_eq!(
        stats.frames_rejected, 2,
        "refused from its length: {stats:?}"
    );
    still_serving(&mut target, "a member after the attack");
    target.exit();
}

#[test]
fn a_member_still_sends_a_one_mebibyte_event() {
    let mut target = keyed_target();
    let mut peer = Peer::join(&mut target);
    let payload = vec![7u8; LARGE];
    peer.event(&payload);
    target.wait_for("the 1 MiB event", |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload: p, .. }) if p.len() == LARGE)
    });
    assert_eq!(target.stats().frames_rejected, 0);
    target.assert_no_errors();
    target.exit();
}

#[test]
fn a_wrong_key_handshake_is_failed_not_completed() {
    let target = keyed_target();
    let wrong = ClusterKey::new(b"a different key of the same shape", "hostile");
    let (mut stream, confirmation) = half_handshake(&target, Some(&wrong));
    stream.write_all(&confirmation).unwrap();
    assert_closed(&mut stream, "after a wrong-key confirmation");
    let stats = target.stats();
    assert_eq!(stats.handshakes_completed, 0, "{stats:?}");
    assert_eq!(stats.handshakes_failed, 1, "{stats:?}");
    target.exit();
}

/// Joins `n` peers; the node adds each.
fn join_many(target: &mut Target, n: usize) -> Vec<Peer> {
    (0..n).map(|_| Peer::join(target)).collect()
}

/// A peer that completes the handshake and introduces itself is refused: closed with no
/// verdict, never asked about, and counted in `connections_refused`.
fn assert_introduction_refused(target: &mut Target, refused_before: u64) {
    let mut extra = Peer::handshake(target);
    extra.introduce("{}");
    assert_eq!(extra.their_verdict(), None, "closed, no verdict");
    assert_eq!(target.stats().connections_refused, refused_before + 1);
    let id = extra.id;
    target.settle(std::time::Duration::from_millis(200));
    assert!(
        !target.seen.iter().any(|n| matches!(
            n,
            Notification::Cluster(Event::NodeAdded(i)) if i.id == id
        )),
        "the refused peer was added"
    );
}

#[test]
fn one_address_cannot_register_more_than_its_share_of_members() {
    use espial::core::config::MAX_MEMBERS_PER_IP;
    let mut target = Target::start(&["evt"]);
    let mut members = join_many(&mut target, MAX_MEMBERS_PER_IP);
    assert_eq!(target.stats().connections_refused, 0);
    assert_introduction_refused(&mut target, 0);
    // A count, not a ban: once one leaves, another from the address may join.
    let mut gone = members.pop().unwrap();
    gone.send(&Message::Leave);
    let id = gone.id;
    target.wait_for(
        "the leaver removed",
        |n| matches!(n, Notification::Cluster(Event::NodeRemoved(i)) if i.id == id),
    );
    still_serving(&mut target, "a member once there is room");
    target.exit();
}

#[test]
fn the_node_holds_no_more_than_max_members_peers() {
    let mut target = Target::start_with(&["evt"], |c| c.max_members = 3);
    let _members = join_many(&mut target, 3);
    assert_introduction_refused(&mut target, 0);
    target.exit();
}

#[test]
fn a_host_name_with_control_characters_is_refused() {
    let mut target = Target::start(&["evt"]);
    let names = [
        "two\nlines",
        "esc\x1b[2Jape",
        "bell\x07",
        "del\x7f",
        "bidi\u{202e}txt",
    ];
    for (i, name) in names.into_iter().enumerate() {
        let mut peer = Peer::handshake(&target);
        peer.host_name = name.into();
        peer.introduce("{}");
        assert_eq!(peer.their_verdict(), None, "{name:?}: closed, no verdict");
        assert_eq!(target.stats().messages_refused, i as u64 + 1, "{name:?}");
    }
    target.settle(std::time::Duration::from_millis(200));
    assert!(
        !target
            .seen
            .iter()
            .any(|n| matches!(n, Notification::Cluster(Event::NodeAdded(_)))),
        "a refused name was added"
    );
    // Printable Unicode is a host name like any other.
    let mut peer = Peer::handshake(&target);
    peer.host_name = "caf\u{e9}-\u{6771}\u{4eac}".into();
    peer.introduce("{}");
    assert_eq!(peer.their_verdict(), Some(true));
    target.exit();
}
