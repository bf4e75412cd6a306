//! The dial budget (issue 14): a member can name any address in a member list, so lists
//! naming 200 ports of another host must not make the node open 200 connections there at
//! once. Addresses learnt from member lists and beacons are dialed at most
//! [`DIAL_BUDGET_BURST`] at once and [`DIAL_BUDGET_PER_SEC`] a second after that; the rest
//! wait their turn and are counted in `stats().dials_skipped`. The "other host" is
//! 127.0.0.99 (loopback), where the test listens and counts what arrives.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use espial::core::discovery::{DIAL_BUDGET_BURST, DIAL_BUDGET_PER_SEC};
use espial::core::message::Message;
use espial::core::node::NodeId;
use support::{Peer, Target};

const NAMED: usize = 200;
const WINDOW: Duration = Duration::from_millis(1500);

#[test]
fn member_lists_naming_another_hosts_ports_are_dialed_within_the_budget() {
    let mut target = Target::start(&["evt"]);
    let listeners: Vec<TcpListener> = (0..NAMED)
        .map(|_| {
            let l = TcpListener::bind("127.0.0.99:0").expect("bind 127.0.0.99");
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut attacker = Peer::join(&mut target);
    // Ids above any the target could have below them, so that the target is the one to
    // dial each at once (the smaller id dials).
    let forged = |i: usize| {
        let mut b = [0xff; 16];
        b[14..].copy_from_slice(&(i as u16).to_be_bytes());
        NodeId(b)
    };
    let start = Instant::now();
    for chunk in (0..NAMED).collect::<Vec<_>>().chunks(20) {
        let list = chunk.iter().map(|&i| (forged(i), addrs[i])).collect();
        attacker.send(&Message::Members(list));
    }
    // Count the connections that reach the named ports within the window.
    let mut held = Vec::new();
    while start.elapsed() < WINDOW {
        for l in &listeners {
            while let Ok((s, _)) = l.accept() {
                held.push(s);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let opened = held.len();
    let seconds = WINDOW.as_secs_f64();
    let budget =
        DIAL_BUDGET_BURST as usize + (f64::from(DIAL_BUDGET_PER_SEC) * seconds).ceil() as usize;
    assert!(
        opened >= DIAL_BUDGET_BURST as usize,
        "{opened} dials: the budget's burst is used"
    );
    assert!(
        opened <= budget,
        "{opened} connections in {seconds} s; the budget allows {budget}"
    );
    let skipped = target.stats().dials_skipped;
    eprintln!("{opened} connections to the named ports in {seconds} s, {skipped} dials skipped");
    assert_eq!(
        skipped,
        (NAMED - DIAL_BUDGET_BURST as usize) as u64,
        "every address past the burst counted once"
    );
    target.assert_no_errors();
    target.exit();
}
