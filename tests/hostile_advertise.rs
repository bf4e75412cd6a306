//! Advertised addresses (`network.advertise`, issue 17): a peer's introduction may name
//! where it asks to be dialed, and a hostile peer can name any host. The rule: the node
//! itself (its redials of a lost member, its liveness probes) uses an advertised address
//! only if it is at the peer's own IP address as seen on the socket, or it is where the
//! node dialed and the handshake proved the peer; otherwise it keeps to the address seen on
//! the socket. A third party's address reaches other nodes only as a member-list hint,
//! which the dial budget bounds (`tests/hostile_dials.rs`). An address nobody can be
//! dialed at (unspecified, multicast, broadcast, port 0) refuses the introduction. The
//! "third party" is 127.0.0.99, where the test listens and counts what arrives.

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use espial::core::cluster::Event;
use espial::driver::Notification;
use support::{assert_closed, Peer, Target};

/// Long enough for the node's redial of a dropped member (at once) and its retries.
const WINDOW: Duration = Duration::from_millis(2500);

fn listener(ip: &str) -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A peer that listens (it says) on `port` and advertises `advertised`, admitted by the
/// target; returns it once the target has added it, with what the target reported.
fn join_advertising(target: &mut Target, port: u16, advertised: SocketAddr) -> Peer {
    let mut peer = Peer::handshake(target);
    peer.port = port;
    peer.advertised = Some(advertised);
    peer.introduce("{}");
    assert_eq!(peer.their_verdict(), Some(true));
    let id = peer.id;
    let added = target.wait_for(
        "the peer added",
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(info)) if info.id == id),
    );
    let Notification::Cluster(Event::NodeAdded(info)) = added else {
        unreachable!()
    };
    assert_eq!(
        info.advertised,
        Some(advertised),
        "the claim is reported as such"
    );
    assert_eq!(info.ip.to_string(), "127.0.0.1", "ip stays the socket's");
    peer
}

/// Accepts on every listener for `window`; the connections each received.
fn count(listeners: &[&TcpListener], window: Duration) -> Vec<Vec<TcpStream>> {
    let mut held: Vec<Vec<TcpStream>> = listeners.iter().map(|_| Vec::new()).collect();
    let start = Instant::now();
    while start.elapsed() < window {
        for (i, l) in listeners.iter().enumerate() {
            while let Ok((s, _)) = l.accept() {
                held[i].push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    held
}

#[test]
fn a_member_advertising_another_hosts_address_is_never_redialed_there() {
    let mut target = Target::start(&[]);
    let (third_party, victim) = listener("127.0.0.99");
    // Where the attacker says it listens, at its own address: redials go there.
    let (own, own_addr) = listener("127.0.0.1");
    let attacker = join_advertising(&mut target, own_addr.port(), victim);
    // The control: a member advertising a port at its own IP is redialed there, so the
    // node does redial, and does use advertised addresses that are not a third party's.
    let (advertised_own, advertised_own_addr) = listener("127.0.0.1");
    let honest = join_advertising(&mut target, 9, advertised_own_addr);

    // Both vanish without a goodbye: the node redials each at once.
    drop(attacker);
    drop(honest);
    let held = count(&[&third_party, &own, &advertised_own], WINDOW);
    let [at_victim, at_own, at_advertised_own] = [&held[0], &held[1], &held[2]].map(Vec::len);
    eprintln!(
        "in {WINDOW:?}: {at_victim} dials to the advertised third party, {at_own} to the attacker's \
         own address, {at_advertised_own} to the control's advertised address"
    );
    assert_eq!(
        at_victim, 0,
        "the third party named as advertised address was dialed"
    );
    assert!(
        at_own >= 1,
        "the attacker was redialed at the address seen on its socket"
    );
    assert!(
        at_advertised_own >= 1,
        "an advertised address at the member's own IP was not used"
    );
    target.assert_no_errors();
    target.exit();
}

#[test]
fn the_claim_reaches_other_members_as_a_hint_only() {
    let mut target = Target::start(&[]);
    let (_third_party, victim) = listener("127.0.0.99");
    let attacker = join_advertising(&mut target, 9, victim);
    // A newcomer that asks is told where the attacker asks to be dialed: a hint it dials within its
    // budget, expecting the attacker's id (which 127.0.0.99 cannot prove).
    let mut newcomer = Peer::join(&mut target);
    // Member lists are sent on request (`AskMembers`), at most one per 10 s on a connection.
    newcomer.send(&espial::core::message::Message::AskMembers);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut told = None;
    while told.is_none() && Instant::now() < deadline {
        let Some(plain) = newcomer.next_message() else {
            break;
        };
        if let Ok(espial::core::message::Message::Members(list)) =
            espial::core::message::Message::decode(&plain, 1 << 20)
        {
            told = list.into_iter().find(|(id, _)| *id == attacker.id);
        }
    }
    assert_eq!(told, Some((attacker.id, victim)));
    target.exit();
}

#[test]
fn an_advertised_address_nobody_can_dial_refuses_the_introduction() {
    let mut target = Target::start(&[]);
    let unusable = [
        "0.0.0.0:27272",
        "[::]:27272",
        "239.255.27.27:27272",
        "[ff02::1]:27272",
        "255.255.255.255:27272",
        "127.0.0.1:0",
    ];
    for (i, text) in unusable.iter().enumerate() {
        let mut peer = Peer::handshake(&target);
        peer.advertised = Some(text.parse().unwrap());
        peer.introduce("{}");
        assert_closed(&mut peer.stream, text);
        assert_eq!(target.stats().messages_refused, i as u64 + 1, "{text}");
    }
    assert!(
        !target
            .seen
            .iter()
            .any(|n| matches!(n, Notification::Cluster(Event::NodeAdded(_)))),
        "nobody was added"
    );
    // An IPv6 advertised address is as good as an IPv4 one.
    let peer = join_advertising(&mut target, 9, "[2001:db8::7]:27272".parse().unwrap());
    drop(peer);
    target.exit();
}
