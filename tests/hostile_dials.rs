//! The dial budget (issue 14): a member can name any address in a member list, so lists
//! naming 200 ports of another host must not make the node open 200 connections there at
//! once. Addresses learnt from member lists and beacons are dialed at most
//! [`DIAL_BUDGET_BURST`] at once and [`DIAL_BUDGET_PER_SEC`] a second after that; the rest
//! wait their turn and are counted in `stats().dials_skipped`. The "other host" is
//! 127.0.0.99 (loopback), where the test listens and counts what arrives.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use espial::core::crypto::Identity;
use espial::core::discovery::{DIAL_BUDGET_BURST, DIAL_BUDGET_PER_SEC};
use espial::core::message::Message;
use espial::core::node::NodeId;
use rand_core::OsRng;
use support::{Peer, Target};

const NAMED: usize = 200;
const WINDOW: Duration = Duration::from_millis(1500);

/// `NAMED` listeners on 127.0.0.99, the other host's ports the lists name.
fn named_listeners() -> Vec<TcpListener> {
    (0..NAMED)
        .map(|_| {
            let l = TcpListener::bind("127.0.0.99:0").expect("bind 127.0.0.99");
            l.set_nonblocking(true).unwrap();
            l
        })
        .collect()
}

#[test]
fn member_lists_naming_another_hosts_ports_are_dialed_within_the_budget() {
    let mut target = Target::start(&["evt"]);
    let listeners = named_listeners();
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

/// The most dials the budget lets out in `window` when none gives its token back.
fn rate_budget(window: Duration) -> usize {
    let seconds = window.as_secs_f64();
    DIAL_BUDGET_BURST as usize + (f64::from(DIAL_BUDGET_PER_SEC) * seconds).ceil() as usize
}

/// A member names `NAMED` ports of 127.0.0.99, each listed under `listed(i)`, where the test
/// answers every dial with a handshake proving `identities[i]`, for `window`: how many
/// dials came, how many we answered (our end of the handshake done), and how many the
/// target then found to prove another id than it dialed for.
fn answer_listed_dials(
    window: Duration,
    listed: impl Fn(usize, &Identity) -> NodeId,
) -> (usize, usize, u64) {
    let mut target = Target::start(&["evt"]);
    let listeners = named_listeners();
    let identities: Vec<Identity> = (0..NAMED).map(|_| Identity::generate(&mut OsRng)).collect();
    let mut attacker = Peer::join(&mut target);
    let start = Instant::now();
    let named: Vec<(NodeId, SocketAddr)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (listed(i, &identities[i]), l.local_addr().unwrap()))
        .collect();
    for chunk in named.chunks(20) {
        attacker.send(&Message::Members(chunk.to_vec()));
    }
    let (mut dials, mut answered, mut held) = (0, 0, Vec::new());
    while start.elapsed() < window {
        for (i, l) in listeners.iter().enumerate() {
            let Ok((stream, _)) = l.accept() else {
                continue;
            };
            dials += 1;
            let port = l.local_addr().unwrap().port();
            let identity =
                Identity::from_secret_bytes(&identities[i].secret_bytes()).expect("a key");
            let key = target.key.as_ref();
            if let Ok(peer) = Peer::answer(stream, port, &target.cluster, key, identity) {
                answered += 1;
                held.push(peer);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Until the target has judged the last answers.
    std::thread::sleep(Duration::from_millis(200));
    let mismatches = target.stats().identity_mismatches;
    eprintln!(
        "{dials} dials to the named ports in {window:?}, {answered} answered, {mismatches} under another id"
    );
    drop(held);
    target.assert_no_errors();
    target.exit();
    (dials, answered, mismatches)
}

/// A dial gives its token back only once the handshake proves the very id it was made for.
/// Here every named port answers, each proving an id of its own other than the one listed
/// (a forged list naming genuine nodes' addresses under other ids): every dial fails at the
/// proof and the dials stay within the rate. Were a token given back for any completed
/// handshake, each would let one more dial out: all of them within the window.
#[test]
fn dials_answered_under_another_id_give_no_token_back() {
    let forged = |i: usize, _: &Identity| {
        let mut b = [0xff; 16];
        b[14..].copy_from_slice(&(i as u16).to_be_bytes());
        NodeId(b)
    };
    let (dials, answered, mismatches) = answer_listed_dials(WINDOW, forged);
    assert!(answered > 0, "the test could not tell");
    assert_eq!(
        mismatches, answered as u64,
        "every answer proves another id than the one dialed for"
    );
    assert!(
        dials >= DIAL_BUDGET_BURST as usize,
        "{dials} dials: the burst is used"
    );
    assert!(
        dials <= rate_budget(WINDOW),
        "{dials} dials in {WINDOW:?}; without tokens back the budget allows {}",
        rate_budget(WINDOW)
    );
}

/// Dials that reach the ids they were made for give their tokens back: the budget bounds
/// dials not yet proven (the burst), not every dial, and a newcomer reaches all the nodes a
/// list names at the pace of its handshakes, well past what the rate alone would let out.
#[test]
fn dials_that_reach_the_ids_listed_give_their_tokens_back() {
    let window = Duration::from_secs(4);
    assert!(rate_budget(window) < NAMED, "the test could not tell");
    let (dials, answered, mismatches) = answer_listed_dials(window, |_, identity| identity.id());
    assert_eq!(dials, NAMED, "every named node dialed within {window:?}");
    assert_eq!((answered, mismatches), (NAMED, 0));
}
