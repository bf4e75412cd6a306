//! The liveness probe socket (UDP, the node's TCP port number) against a hostile member
//! and strangers, over real sockets on 127.0.0.1: every byte from it is validated before
//! use. Garbage, datagrams cut short or too long, forgeries (a bit flipped, a stranger's
//! sender id, the node's own id), replays of genuine probes and relay requests the node
//! must not carry out are dropped and counted in `stats().probes_rejected`; a flood of
//! them changes nothing; genuine probes are taken and answered, sealed with the pair's
//! probe keys from the handshake.

mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use espial::core::cluster::Event;
use espial::core::node::NodeId;
use espial::core::probe::{self, Header, ProbeKeys};
use espial::driver::Notification;
use support::{Peer, Target};

/// Waits until `done(stats)` holds, at most 5 s.
fn wait_stats(target: &Target, what: &str, done: impl Fn(&espial::core::cluster::Stats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(&target.stats()) {
        assert!(
            Instant::now() < deadline,
            "{what}: stats {:?}",
            target.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A member whose probe socket is `udp`: its introduction names the socket's port, so the
/// node's probes come to it.
fn member_at(target: &mut Target, udp: &UdpSocket) -> (Peer, ProbeKeys) {
    let mut peer = Peer::handshake(target);
    peer.port = udp.local_addr().unwrap().port();
    let (send, recv) = peer.session.take_probe_keys().expect("probe keys");
    peer.introduce("{}");
    assert_eq!(peer.their_verdict(), Some(true));
    let id = peer.id;
    target.wait_for(
        "the member added",
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(info)) if info.id == id),
    );
    (peer, ProbeKeys::new(&send, &recv))
}

#[test]
fn hostile_probes_are_dropped_and_counted_genuine_ones_answered() {
    let mut target = Target::start_with(&["evt"], |c| {
        c.detector.interval = Duration::from_millis(100);
    });
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (peer, mut keys) = member_at(&mut target, &udp);
    let (me, node) = (peer.id, peer.node_id);

    // The node's own probes reach us and open under the pair's keys: both ends derived
    // the same ones.
    let mut buf = [0u8; 2048];
    let (n, from) = udp.recv_from(&mut buf).unwrap();
    assert_eq!(
        from, target.addr,
        "probes come from the node's TCP port number"
    );
    let h = Header::parse(&buf[..n]).expect("a probe");
    assert_eq!((h.kind, h.from, h.to), (probe::PING, node, me));
    keys.open(&h, &buf[..n]).expect("the node's probe opens");

    // A genuine ping asking for an answer is taken, and answered.
    let base = target.stats();
    let ping = keys
        .seal(probe::PING, me, node, &[probe::FLAG_ANSWER])
        .unwrap();
    udp.send_to(&ping, target.addr).unwrap();
    wait_stats(&target, "the genuine ping", |s| {
        s.probes_received == base.probes_received + 1
    });
    let answered = (0..50).any(|_| {
        let (n, _) = udp.recv_from(&mut buf).unwrap();
        let h = Header::parse(&buf[..n]).unwrap();
        h.kind == probe::ACK && keys.open(&h, &buf[..n]).is_ok()
    });
    assert!(answered, "no authentic answer to our ping");

    // Now the hostile datagrams; each one must be dropped and counted.
    let base = target.stats();
    let mut long = ping.clone();
    long.push(0);
    let mut hostile: Vec<Vec<u8>> = vec![
        ping.clone(), // replayed
        Vec::new(),
        vec![0u8; 1500],
        b"eP".to_vec(),
        ping[..ping.len() - 1].to_vec(),
        long,
    ];
    for i in 0..ping.len() {
        let mut flipped = keys.seal(probe::PING, me, node, &[0]).unwrap();
        flipped[i] ^= 0x20;
        hostile.push(flipped);
    }
    // A sender that is no member, under our keys; and one claiming to be the node itself.
    hostile.push(keys.seal(probe::PING, NodeId([7; 16]), node, &[0]).unwrap());
    hostile.push(keys.seal(probe::PING, node, node, &[0]).unwrap());
    // Authentic relay requests the node must not carry out: for a target that is no
    // member, for the node itself, and carrying an answer instead of a ping. (Authentic:
    // signs of life of ours, but refused as relays.)
    let stranger = NodeId([9; 16]);
    let inner = keys.seal(probe::PING, me, stranger, &[1]).unwrap();
    hostile.push(keys.seal(probe::RELAY, me, node, &inner).unwrap());
    let inner = keys.seal(probe::PING, me, node, &[1]).unwrap();
    hostile.push(keys.seal(probe::RELAY, me, node, &inner).unwrap());
    let inner = keys.seal(probe::ACK, me, stranger, &[0]).unwrap();
    hostile.push(keys.seal(probe::RELAY, me, node, &inner).unwrap());
    // An answer to relay that the node never asked for.
    hostile.push(keys.seal(probe::ACK, me, stranger, &[0]).unwrap());
    for d in &hostile {
        udp.send_to(d, target.addr).unwrap();
    }
    let sent = hostile.len() as u64;
    wait_stats(&target, "every hostile datagram counted", |s| {
        s.probes_rejected == base.probes_rejected + sent
    });
    let after = target.stats();
    assert_eq!(after.probes_relayed, 0, "nothing relayed");

    // A flood of garbage and replays: counted (as many as the socket buffer kept), nothing
    // else changes.
    let flood = 20_000u64;
    for i in 0..flood {
        let d: &[u8] = if i % 2 == 0 { &ping } else { &hostile[8] };
        let _ = udp.send_to(d, target.addr);
    }
    target.settle(Duration::from_millis(500));
    let after = target.stats();
    let counted = after.probes_rejected - base.probes_rejected - sent;
    eprintln!("flood: {counted} of {flood} datagrams reached the node and were rejected");
    assert!(counted > 0 && counted <= flood);
    assert_eq!(after.probes_relayed, 0);
    for n in &target.seen {
        assert!(
            !matches!(n, Notification::Cluster(Event::NodeRemoved(_))),
            "{n:?}"
        );
    }
    support::still_serving(&mut target, "a newcomer after the probe flood");
    target.assert_no_errors();
    drop(peer);
    target.exit();
}
