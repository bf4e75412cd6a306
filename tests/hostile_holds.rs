//! One connection per pair (issue 19): a node about to dial a node it learnt by id (from a
//! beacon or a member list) waits while a connection from that node's IP address is still
//! before its proof, since it may be that node dialing it. The address is a claim: another
//! process on the same host (or behind the same NAT) can hold such connections open
//! without ever sending its hello. Here the attacker, a member, names a genuine node on
//! 127.0.0.1 in a member list while stalling connections from 127.0.0.1, opens a new one
//! and sends the list again every 100 ms: the dial still comes within `handshake_timeout`
//! (one wait per dial, counting only connections accepted before it began).

mod support;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use espial::core::crypto::Identity;
use espial::core::message::Message;
use rand_core::OsRng;
use support::{Peer, Target};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1500);

#[test]
fn stalled_connections_from_a_nodes_address_delay_its_dial_by_one_handshake_timeout_at_most() {
    let mut target = Target::start_with(&[], |c| c.handshake_timeout = HANDSHAKE_TIMEOUT);
    let genuine = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let genuine_addr = genuine.local_addr().unwrap();
    let identity = Identity::generate(&mut OsRng);
    let list = Message::Members(vec![(identity.id(), genuine_addr)]);
    let mut attacker = Peer::join(&mut target);
    let target_id = attacker.node_id;
    // Stalled before the list: the target holds its dial back for them.
    let mut stalls = vec![TcpStream::connect(target.addr).unwrap()];
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    attacker.send(&list);
    let stop = Arc::new(AtomicBool::new(false));
    let keep_stalling = {
        let (stop, addr) = (stop.clone(), target.addr);
        std::thread::spawn(move || {
            // Bounded: the main thread stops it, and the target's own wait is 10 s at most.
            for _ in 0..100 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                stalls.push(TcpStream::connect(addr).unwrap());
                attacker.send(&list);
            }
            (attacker, stalls)
        })
    };
    let dialed = Peer::accept(&genuine, &target.cluster, None, identity);
    let waited = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (_attacker, stalls) = keep_stalling.join().unwrap();
    let dialed = dialed.expect("the target dials the genuine node");
    assert_eq!(dialed.node_id, target_id, "the target dialed");
    eprintln!(
        "dialed after {waited:?} ({} stalled connections opened meanwhile)",
        stalls.len()
    );
    // The hold's bound, and room for a loaded machine.
    assert!(
        waited < HANDSHAKE_TIMEOUT + Duration::from_millis(1000),
        "the dial came after {waited:?}"
    );
    target.exit();
}
