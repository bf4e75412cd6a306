//! Formation (issue 19): whatever the start order, staggering and discovery (multicast, or
//! seeds only with the seed not listening yet), exactly one node emits `promotion`, and
//! every node sees every other. Also what a formation costs: records and bytes per node,
//! and time to converge, at sizes up to a thousand nodes (`scale_*`, run by hand; see
//! TESTING.md).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::sim::{addr, over_seeds, promoted, Host, Sim};
use crate::core::beacon::{self, Beacon};
use crate::core::config::Config;
use crate::core::discovery::{ASK_MEMBERS_GAP, RESYNC_INTERVAL};
use crate::core::message::Message;

/// How nodes find each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Multicast,
    /// Every node is given host 0's address, and nothing else.
    Seeds,
    /// Every node scans the /24 of its own address, as with multicast off by default.
    Scan,
}

fn config(found: Found) -> Config {
    let mut c = Config::lan("sim");
    if found == Found::Seeds {
        c.discovery.seeds = vec![addr(0)];
        c.discovery.probe_lost = true;
    }
    if let (Found::Scan, std::net::IpAddr::V4(ip)) = (found, addr(0).ip()) {
        c.discovery.subnets = vec![ip];
        c.discovery.scan_port = addr(0).port();
        c.discovery.probe_lost = true;
    }
    c
}

/// A formation's outcome.
#[derive(Debug)]
struct Formed {
    /// From the last start until every node saw every other and followed one master.
    converged: Duration,
    promotions: usize,
}

/// Starts `n` nodes in an order drawn from `seed`, each at an instant drawn within
/// `spread`; with `seed_last`, host 0 (the seed) starts after every other. Runs until all
/// see all under one master (at most 20 s after the last start).
fn form(
    sim: &mut Sim,
    seed: u64,
    n: usize,
    found: Found,
    spread: Duration,
    seed_last: bool,
) -> Result<Formed, String> {
    let limit = Duration::from_secs(20);
    form_within(sim, seed, n, found, spread, seed_last, limit)
}

/// [`form`], waiting up to `limit` after the last start.
fn form_within(
    sim: &mut Sim,
    seed: u64,
    n: usize,
    found: Found,
    spread: Duration,
    seed_last: bool,
    limit: Duration,
) -> Result<Formed, String> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xf0f0);
    let mut order: Vec<Host> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.next_u32() as usize % (i + 1));
    }
    if seed_last {
        order.retain(|&h| h != 0);
        order.push(0);
    }
    let spread_ms = spread.as_millis() as u64;
    let mut at: Vec<u64> = (0..n)
        .map(|_| {
            if spread_ms == 0 {
                0
            } else {
                rng.next_u64() % spread_ms
            }
        })
        .collect();
    at.sort_unstable();
    if seed_last && n > 1 {
        // Strictly last: every other node has dialed it in vain first.
        at[n - 1] = at[n - 2] + 1;
    }
    let t0 = sim.now;
    for (&host, &ms) in order.iter().zip(&at) {
        let when = t0 + Duration::from_millis(ms);
        if when > sim.now {
            sim.run_for(when - sim.now);
        }
        sim.add_at(host, config(found), found != Found::Multicast);
    }
    let last_start = sim.now;
    let step = Duration::from_millis(5);
    for _ in 0..limit.as_millis() / step.as_millis() {
        if formed(sim, n) {
            break;
        }
        sim.run_for(step);
    }
    if !formed(sim, n) {
        let seen: Vec<usize> = (0..n).map(|h| sim.member_ids(h).len()).collect();
        let masters: Vec<_> = (0..n).map(|h| sim.nodes[&h].master()).collect();
        return Err(format!(
            "not formed {limit:?} after the last start: members seen {seen:?}, masters {masters:?}"
        ));
    }
    let converged = sim.now - last_start;
    let promotions = (0..n)
        .map(|h| sim.events[&h].iter().filter(|e| promoted(e)).count())
        .sum();
    Ok(Formed {
        converged,
        promotions,
    })
}

/// Every node sees every other, and all follow the same master.
fn formed(sim: &Sim, n: usize) -> bool {
    let master = sim.nodes[&0].master();
    master.is_some()
        && (0..n).all(|h| sim.member_ids(h).len() == n - 1 && sim.nodes[&h].master() == master)
}

fn one_promotion(
    seed: u64,
    n: usize,
    found: Found,
    spread: Duration,
    seed_last: bool,
) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    let f = form(&mut sim, seed, n, found, spread, seed_last)?;
    if f.promotions != 1 {
        return Err(format!("{} promotions: {f:?}", f.promotions));
    }
    Ok(())
}

#[test]
fn ten_by_seeds_started_together_elect_once_with_the_seed_not_listening_yet() {
    over_seeds(40, |seed| {
        one_promotion(seed, 10, Found::Seeds, Duration::ZERO, true)
    });
}

/// The seed is given its own address too (one list for every node). Dialing it reaches
/// itself, which ends its wait for that seed: without that, a seed with the smallest id
/// held the election until it gave the seed up (about 1.6 s).
#[test]
fn ten_by_seeds_started_together_form_within_half_a_second_whoever_has_the_smallest_id() {
    over_seeds(40, |seed| {
        let mut sim = Sim::new(seed);
        let f = form(&mut sim, seed, 10, Found::Seeds, Duration::ZERO, false)?;
        if f.converged > Duration::from_millis(500) || f.promotions != 1 {
            return Err(format!("{f:?}"));
        }
        Ok(())
    });
}

#[test]
fn ten_by_seeds_started_in_any_order_elect_once() {
    over_seeds(40, |seed| {
        one_promotion(seed, 10, Found::Seeds, Duration::from_millis(30), false)
    });
}

#[test]
fn staggered_starts_by_multicast_elect_once() {
    // Spread over several election timeouts: late nodes join an elected cluster.
    over_seeds(20, |seed| {
        one_promotion(seed, 12, Found::Multicast, Duration::from_secs(4), false)
    });
}

#[test]
fn staggered_starts_by_seeds_elect_once_while_the_seed_comes_up_within_the_retries() {
    // Nodes started before their seed retry it for about 1.6 s ([`SEED_RETRY_TRIES`]): a
    // seed that comes up within that, in any order, makes one cluster with one promotion.
    over_seeds(20, |seed| {
        one_promotion(
            seed,
            12,
            Found::Seeds,
            Duration::from_millis(1200),
            seed % 2 == 0,
        )
    });
}

#[test]
fn thirty_by_multicast_and_by_seeds_started_together_elect_once() {
    over_seeds(6, |seed| {
        one_promotion(seed, 30, Found::Multicast, Duration::ZERO, false)
    });
    over_seeds(6, |seed| {
        one_promotion(seed, 30, Found::Seeds, Duration::from_millis(20), true)
    });
}

/// Handshakes completed by the `n` nodes, one per connection (each end counts its own).
fn pair_handshakes(sim: &Sim, n: usize) -> u64 {
    let ends: u64 = (0..n)
        .map(|h| sim.nodes[&h].stats().handshakes_completed)
        .sum();
    ends / 2
}

/// Forms `n` nodes over connections that take 1 to 4 ms each way (at once, lists and
/// admissions come in the order that hides two dials crossing), then waits past the
/// beacons' fallback (a node heard and not dialed is dialed by then): exactly one
/// handshake per pair, none lost to two dials crossing.
fn one_handshake_per_pair(
    seed: u64,
    n: usize,
    found: Found,
    spread: Duration,
    seed_last: bool,
) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    sim.latency = Duration::from_millis(1 + seed / 8 % 4);
    let f = form(&mut sim, seed, n, found, spread, seed_last)?;
    sim.run_for(Duration::from_secs(5));
    let pairs = (n * (n - 1) / 2) as u64;
    let done = pair_handshakes(&sim, n);
    if done != pairs || !formed(&sim, n) {
        return Err(format!(
            "{done} handshakes for {pairs} pairs ({found:?}, spread {spread:?}): {f:?}"
        ));
    }
    Ok(())
}

#[test]
fn ten_nodes_complete_one_handshake_per_pair_in_any_start() {
    over_seeds(32, |seed| {
        let (found, spread, seed_last) = match seed % 8 {
            0 => (Found::Seeds, Duration::ZERO, false),
            1 => (Found::Seeds, Duration::ZERO, true),
            2 => (Found::Seeds, Duration::from_millis(30), false),
            3 => (Found::Seeds, Duration::from_millis(1200), true),
            4 => (Found::Multicast, Duration::ZERO, false),
            5 => (Found::Multicast, Duration::from_secs(4), false),
            // Scans started together dial each other before either dial arrives: the
            // larger address gives its dial up when the other's arrives. Staggered, each is
            // held for the other's.
            6 => (Found::Scan, Duration::ZERO, false),
            _ => (Found::Scan, Duration::from_millis(1000), false),
        };
        one_handshake_per_pair(seed, 10, found, spread, seed_last)
    });
}

#[test]
fn thirty_nodes_complete_one_handshake_per_pair_by_seeds_by_scans_and_by_multicast() {
    over_seeds(12, |seed| {
        let (found, spread, seed_last) = match seed % 6 {
            0 => (Found::Seeds, Duration::ZERO, false),
            1 => (Found::Seeds, Duration::from_millis(20), true),
            2 => (Found::Multicast, Duration::ZERO, false),
            3 => (Found::Multicast, Duration::from_millis(1500), false),
            // Every node scans every other the moment it starts: each pair's two dials
            // cross (435 handshakes too many among 30 before the larger address gave way).
            4 => (Found::Scan, Duration::ZERO, false),
            _ => (Found::Scan, Duration::from_millis(300), false),
        };
        one_handshake_per_pair(seed, 30, found, spread, seed_last)
    });
}

/// Scans started together on loaded hosts: each dial reaches its listener after up to
/// `accept_delay`, so a pair's dials cross in flight whichever arrives first. Returns the
/// handshakes beyond one per pair.
fn scans_crossing_on_loaded_hosts(
    seed: u64,
    n: usize,
    accept_delay: Duration,
    spread: Duration,
) -> Result<u64, String> {
    let mut sim = Sim::new(seed);
    sim.latency = Duration::from_millis(1);
    sim.accept_delay = accept_delay;
    form(&mut sim, seed, n, Found::Scan, spread, false)?;
    sim.run_for(Duration::from_secs(5));
    let pairs = (n * (n - 1) / 2) as u64;
    Ok(pair_handshakes(&sim, n) - pairs)
}

/// A newcomer found by multicast joins a formed cluster of `n` whose hosts are loaded: each
/// member hears its beacon after its own delay of up to 300 ms, and each dial reaches its
/// listener after up to 100 ms. The newcomer's first member answers its list long before
/// most members have heard it. Each member must cost it exactly one handshake, and it
/// must be a member everywhere before `fallback_after` (no member waits for a fallback).
/// Returns the handshakes beyond one per member.
fn newcomer_heard_late(seed: u64, n: usize) -> Result<u64, String> {
    let mut sim = Sim::new(seed);
    sim.latency = Duration::from_millis(2);
    form(&mut sim, seed, n, Found::Multicast, Duration::ZERO, false)?;
    // Past every fallback of the formation.
    sim.run_for(Duration::from_secs(5));
    let before = pair_handshakes(&sim, n);
    sim.beacon_delay = Duration::from_millis(300);
    sim.accept_delay = Duration::from_millis(100);
    let newcomer = sim.add(config(Found::Multicast));
    let fallback = config(Found::Multicast).discovery.fallback_after;
    sim.run_for(fallback - Duration::from_millis(500));
    if !formed(&sim, n + 1) {
        let seen = sim.member_ids(newcomer).len();
        return Err(format!(
            "not formed before the fallback: the newcomer has {seen} of {n}"
        ));
    }
    let extra = pair_handshakes(&sim, n + 1) - before - n as u64;
    Ok(extra)
}

/// Loaded hosts hear a newcomer at different times: a member list taken as the beacons of
/// the nodes it names (the smaller ids dial the newcomer when they hear it, and it dials
/// only the larger ones) completes no handshake beyond one per pair. Dialing every listed
/// node at once crossed the dials of the members that heard the newcomer late: 16 of
/// these 20 runs failed, with 2 to 11 handshakes too many each.
#[test]
fn a_newcomer_heard_late_by_loaded_members_completes_one_handshake_per_member() {
    over_seeds(20, |seed| match newcomer_heard_late(seed, 20)? {
        0 => Ok(()),
        extra => Err(format!("{extra} handshakes beyond one per member")),
    });
}

/// The cost of taking a list as beacons: a node the list names that does not hear the
/// newcomer's beacons (multicast off on its side, or not reaching it) and has the smaller
/// id is dialed by the newcomer at `fallback_after`, not at once. F (multicast) and M
/// (manual, joined through F as its seed) are members; N (multicast) finds F by its beacon
/// and gets F's list naming M.
#[test]
fn a_listed_node_out_of_multicast_reach_is_dialed_at_the_fallback() {
    let (mut late, mut early) = (0, 0);
    for seed in 0..8 {
        let mut sim = Sim::new(seed);
        sim.add_at(0, config(Found::Multicast), false);
        let mut m = config(Found::Seeds);
        m.discovery.seeds = vec![addr(0)];
        sim.add_at(1, m, true);
        sim.run_for(Duration::from_secs(5));
        assert_eq!(
            sim.member_ids(1),
            vec![sim.id(0)],
            "seed {seed}: M joined F"
        );
        sim.add_at(2, config(Found::Multicast), false);
        let fallback = config(Found::Multicast).discovery.fallback_after;
        sim.run_for(fallback - Duration::from_millis(100));
        let linked = sim.member_ids(1).contains(&sim.id(2));
        assert!(
            sim.member_ids(2).contains(&sim.id(0)),
            "seed {seed}: N joined F"
        );
        if sim.id(1) < sim.id(2) {
            // M would dial N on hearing its beacon: N waits for that until the fallback.
            assert!(!linked, "seed {seed}: N dialed M before the fallback");
            late += 1;
        } else {
            assert!(linked, "seed {seed}: N dials a larger M at once");
            early += 1;
        }
        sim.run_for(Duration::from_millis(600));
        assert!(
            sim.member_ids(1).contains(&sim.id(2)) && sim.member_ids(2).contains(&sim.id(1)),
            "seed {seed}: N and M members of each other after the fallback"
        );
    }
    assert!(
        late > 0 && early > 0,
        "both orders of ids met: {late} / {early}"
    );
}

/// Host 0 (F) and X, members of each other, and M alone, all without multicast, X with the
/// larger id of X and M (so that a beacon of M's makes X wait for M's dial).
fn x_with_f_and_m_alone(seed: u64) -> (Sim, Host, Host) {
    let mut sim = Sim::new(seed);
    sim.add_at(0, config(Found::Seeds), true);
    sim.add_at(1, Config::lan("sim"), true);
    sim.add_at(2, Config::lan("sim"), true);
    let (x, m) = if sim.id(1) > sim.id(2) {
        (1, 2)
    } else {
        (2, 1)
    };
    let now = sim.now;
    sim.nodes.get_mut(&x).unwrap().set_seeds(now, vec![addr(0)]);
    sim.run_for(Duration::from_millis(300));
    assert_eq!(sim.member_ids(x), vec![sim.id(0)]);
    (sim, x, m)
}

/// M's beacon, as if from `from` (a forger's own address, or M's).
fn beacon_of(sim: &mut Sim, to: Host, id: crate::core::node::NodeId, from: SocketAddr) {
    let bytes = beacon::encode(
        "sim",
        None,
        Beacon {
            id,
            addr: from,
            time_ms: 0,
            seq: 1,
        },
    );
    let now = sim.now;
    let src = SocketAddr::new(from.ip(), 50000);
    sim.nodes
        .get_mut(&to)
        .unwrap()
        .handle_beacon(now, src, &bytes);
}

#[test]
fn a_listed_node_is_dialed_at_once_whatever_a_beacon_from_elsewhere_said_of_it() {
    let (mut sim, x, m) = x_with_f_and_m_alone(21);
    let id = sim.id(m);
    // An unkeyed beacon under M's id, from a host where nothing listens: X waits for "M"
    // to dial it from there, but a list naming M where M listens is dialed at once.
    beacon_of(&mut sim, x, id, addr(7));
    sim.inject(0, x, &Message::Members(vec![(id, addr(m))]));
    sim.run_for(Duration::from_millis(100));
    assert!(sim.member_ids(x).contains(&id));
}

#[test]
fn a_listed_node_whose_beacon_was_heard_there_is_left_to_dial_then_dialed_at_the_fallback() {
    let (mut sim, x, m) = x_with_f_and_m_alone(22);
    let id = sim.id(m);
    // M's own beacon: X answers with its own and waits for M's dial. M does not hear it
    // (multicast one way): X dials at the fallback, as it would without the list.
    beacon_of(&mut sim, x, id, addr(m));
    sim.inject(0, x, &Message::Members(vec![(id, addr(m))]));
    sim.run_for(Duration::from_secs(1));
    assert!(!sim.member_ids(x).contains(&id), "left to M's dial");
    let fallback = Config::lan("sim").discovery.fallback_after;
    sim.run_for(fallback);
    assert!(sim.member_ids(x).contains(&id));
}

/// The same attack on a dial already made: X, the larger address, dials M (listed) at
/// once, and a stalled connection from M's host arrives before that dial is proven. X gives
/// its dial up for it (it may be M's own dial crossing), and dials again once that one
/// runs out, `handshake_timeout` at most; the stalls that keep coming meanwhile and after
/// do not make it give way again. It links with M within one timeout and a step.
#[test]
fn stalled_connections_from_a_nodes_address_make_a_dial_made_give_way_once_at_most() {
    let (mut sim, x, m) = (30..62)
        .map(x_with_f_and_m_alone)
        .find(|&(_, x, _)| x == 2)
        .expect("a seed where host 2 has the larger id");
    assert!(addr(x).ip() > addr(m).ip());
    let id = sim.id(m);
    let stall = |sim: &mut Sim, port: u16| {
        let now = sim.now;
        let from = SocketAddr::new(addr(m).ip(), port);
        sim.nodes.get_mut(&x).unwrap().accept(now, from).unwrap();
    };
    // Each delivery takes up to 5 ms: the stall comes while X's dial is on its way.
    sim.latency = Duration::from_millis(5);
    let start = sim.now;
    let links = sim.open_links();
    sim.inject(0, x, &Message::Members(vec![(id, addr(m))]));
    while sim.open_links() == links && sim.now - start < Duration::from_millis(20) {
        sim.run_for(Duration::from_millis(1));
    }
    assert!(sim.open_links() > links, "X dialed M");
    assert!(!sim.member_ids(x).contains(&id));
    stall(&mut sim, 45000);
    let timeout = Config::lan("sim").handshake_timeout;
    let step = Duration::from_millis(250);
    let mut port = 45001;
    while sim.now - start < timeout + 2 * step && !sim.member_ids(x).contains(&id) {
        sim.run_for(step);
        stall(&mut sim, port);
        port += 1;
    }
    let waited = sim.now - start;
    assert!(
        sim.member_ids(x).contains(&id),
        "not linked after {waited:?}"
    );
    assert!(
        waited >= timeout - step,
        "gave way for {waited:?}: not at all?"
    );
}

#[test]
fn stalled_connections_from_a_nodes_address_hold_its_dial_one_handshake_timeout_at_most() {
    let (mut sim, x, m) = x_with_f_and_m_alone(23);
    let id = sim.id(m);
    // An attacker on M's host: connections to X that never send a hello. X holds back its
    // dial to M while they are before their proof (one could be M dialing), but one
    // handshake timeout at most: neither new stalls nor the list sent again extend it.
    let stall = |sim: &mut Sim, port: u16| {
        let now = sim.now;
        let from = SocketAddr::new(addr(m).ip(), port);
        sim.nodes.get_mut(&x).unwrap().accept(now, from).unwrap();
    };
    stall(&mut sim, 45000);
    let start = sim.now;
    sim.inject(0, x, &Message::Members(vec![(id, addr(m))]));
    let timeout = Config::lan("sim").handshake_timeout;
    let step = Duration::from_millis(250);
    let mut port = 45001;
    while sim.now - start < timeout + step && !sim.member_ids(x).contains(&id) {
        sim.run_for(step);
        stall(&mut sim, port);
        port += 1;
        sim.inject(0, x, &Message::Members(vec![(id, addr(m))]));
    }
    let waited = sim.now - start;
    assert!(
        sim.member_ids(x).contains(&id),
        "not dialed after {waited:?}"
    );
    assert!(waited >= timeout - step, "held back for {waited:?}");
}

/// The scans of loaded hosts started together cross in flight: 100 ms of accept delay
/// left about 220 handshakes too many among 30 nodes before the larger address gave way
/// (435 pairs), and 1 to 7 with it: a scan dial crossing a dial the other end made from a
/// member list (resolved after the handshakes, PROTOCOL.md "One connection per pair").
#[test]
fn scans_of_loaded_hosts_started_together_mostly_complete_one_handshake_per_pair() {
    over_seeds(4, |seed| {
        match scans_crossing_on_loaded_hosts(seed, 30, Duration::from_millis(100), Duration::ZERO)?
        {
            extra if extra <= 10 => Ok(()),
            extra => Err(format!("{extra} handshakes beyond one per pair")),
        }
    });
}

/// Staggered starts on loaded hosts (30 nodes over 300 ms, up to 100 ms of accept delay per
/// dial): besides scans crossing scans, a newcomer's scan crosses the list dial of a node
/// started just before it, and two newcomers named to each other by different members'
/// lists dial each other. The larger address giving way only for scans left 40 / 71 / 48 /
/// 58 handshakes too many (seeds 0 to 3, 435 pairs); giving way for dials to nodes learnt
/// by id as well, 27 / 31 / 15 / 24. What is left: one end's dial proven before the
/// other's arrives (resolved after the handshakes, PROTOCOL.md "One connection per pair").
#[test]
fn staggered_scans_and_lists_of_loaded_hosts_give_way_by_address() {
    let extra: Vec<u64> = (0..4)
        .map(|seed| {
            let (accept_delay, spread) = (Duration::from_millis(100), Duration::from_millis(300));
            scans_crossing_on_loaded_hosts(seed, 30, accept_delay, spread)
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
        })
        .collect();
    let mean = extra.iter().sum::<u64>() / extra.len() as u64;
    assert!(mean <= 35, "handshakes beyond one per pair: {extra:?}");
}

/// The giving way cannot be used to keep two nodes apart: an attacker on A's host opens
/// connections to B that never send a hello, the first while B's scan dial to A is in
/// flight (B, the larger address, gives that dial up for it) or before B dials A (B holds
/// its dial back), then one every `step`. B dials A once the first runs out,
/// `handshake_timeout` at most, and links: the dial waits once, before it is made or
/// after, not both.
fn stalls_delay_a_scan_once(
    a: Host,
    b: Host,
    scan_concurrency: usize,
    step: Duration,
) -> Result<(), String> {
    let mut sim = Sim::new(41);
    // A listens and looks for nobody; B scans the /24 they share.
    sim.add_at(a, Config::lan("sim"), true);
    sim.accept_delay = Duration::from_millis(200);
    let mut c = config(Found::Scan);
    c.discovery.scan_concurrency = scan_concurrency;
    sim.add_at(b, c, true);
    let id = sim.id(a);
    let stall = |sim: &mut Sim, port: u16| {
        let now = sim.now;
        let from = SocketAddr::new(addr(a).ip(), port);
        // Refused once the address holds its most pending connections.
        let _ = sim.nodes.get_mut(&b).unwrap().accept(now, from);
    };
    stall(&mut sim, 45000);
    let start = sim.now;
    let timeout = Config::lan("sim").handshake_timeout;
    let mut port = 45001;
    let slack = Duration::from_millis(500);
    while sim.now - start < timeout + slack && !sim.member_ids(b).contains(&id) {
        sim.run_for(step);
        stall(&mut sim, port);
        port += 1;
    }
    let waited = sim.now - start;
    if !sim.member_ids(b).contains(&id) {
        return Err(format!("not linked after {waited:?}"));
    }
    if waited < timeout - step {
        return Err(format!("linked after {waited:?}: the dial did not wait"));
    }
    Ok(())
}

/// [`stalls_delay_a_scan_once`]: B's first scan dials include A's address (B gives that
/// dial up), or, four at a time, not yet (B holds its dial to A back; a connection every
/// 20 ms, so that one comes while the dial made after the wait is in flight). A build whose
/// dials could give way again once made anew never linked in 7 s; one whose dial held
/// back could give way once made took two timeouts.
#[test]
fn stalled_connections_from_a_scanned_address_delay_the_scan_one_handshake_timeout_at_most() {
    stalls_delay_a_scan_once(0, 1, 32, Duration::from_millis(250)).unwrap();
    stalls_delay_a_scan_once(5, 9, 4, Duration::from_millis(20)).unwrap();
}

#[test]
fn a_lone_node_whose_seed_never_answers_promotes_once_formation_is_given_up() {
    let mut sim = Sim::new(5);
    let mut c = config(Found::Seeds);
    c.discovery.seeds = vec![addr(9)];
    sim.add_at(1, c, true);
    // The election timeout (1 s) passes: the seed is still being retried, nobody promotes.
    sim.run_for(Duration::from_millis(1100));
    assert_eq!(
        sim.nodes[&1].master(),
        None,
        "held while the seed is retried"
    );
    // Given up on after about 1.6 s of retries: the node elects itself.
    sim.run_for(Duration::from_millis(600));
    assert_eq!(sim.nodes[&1].master(), Some(sim.id(1)));
}

#[test]
fn a_join_costs_no_message_among_the_members() {
    // The same seeded cluster twice, once with a newcomer joining through the seed: what
    // the members send each other must not change at all (no fan-out about the newcomer,
    // no member list but the one the newcomer asks for).
    let run = |join: bool| {
        let mut sim = Sim::new(8);
        form(&mut sim, 8, 12, Found::Seeds, Duration::ZERO, false).unwrap();
        sim.run_for(Duration::from_millis(50));
        if join {
            sim.add_at(12, config(Found::Seeds), true);
        }
        sim.run_for(Duration::from_millis(300));
        assert!(formed(&sim, if join { 13 } else { 12 }));
        let among = |(from, to): &(Host, Host)| *from < 12 && *to < 12;
        let sent: Vec<_> = sim
            .sent_to
            .iter()
            .filter(|(k, _)| among(k))
            .map(|(k, v)| (*k, *v))
            .collect();
        let to_newcomer: u64 = sim
            .sent_to
            .iter()
            .filter(|((_, to), _)| *to == 12)
            .map(|(_, v)| v)
            .sum();
        (sent, to_newcomer)
    };
    let (quiet, _) = run(false);
    let (joined, to_newcomer) = run(true);
    assert_eq!(
        quiet, joined,
        "the members spoke among themselves about the newcomer"
    );
    assert!(to_newcomer > 0);
}

#[test]
fn a_failover_costs_each_survivor_a_few_election_messages_not_one_to_every_member() {
    // The same seeded 30-node cluster twice, once with its master crashed: what the
    // survivors send each other in the next 300 ms may grow by a few transmits per survivor
    // (its loss of the master to its successor, its new master to the master and to the
    // next successor, the new master's claim to all: 113 in all, about 4 each; 6 each
    // allowed), not by one to every member twice (1 624 before).
    let n = 30;
    let run = |crash: bool| {
        let mut sim = Sim::new(12);
        form(&mut sim, 12, n, Found::Multicast, Duration::ZERO, false).unwrap();
        sim.run_for(Duration::from_millis(50));
        let master = sim.nodes[&0].master().unwrap();
        let victim = (0..n).find(|&h| sim.id(h) == master).unwrap();
        let before = sim.sent_to.clone();
        if crash {
            sim.crash(victim);
        }
        sim.run_for(Duration::from_millis(300));
        let survivors: Vec<Host> = (0..n).filter(|&h| h != victim).collect();
        if crash {
            assert!(agree(&sim, &survivors, n - 2), "no failover within 300 ms");
        }
        let among = |(from, to): &(Host, Host)| *from != victim && *to != victim;
        let sent: u64 = sim
            .sent_to
            .iter()
            .filter(|(k, _)| among(k))
            .map(|(k, v)| v - before.get(k).copied().unwrap_or(0))
            .sum();
        sent
    };
    let quiet = run(false);
    let failover = run(true);
    let survivors = (n - 1) as u64;
    eprintln!(
        "{survivors} survivors: {failover} transmits among them after the crash, {quiet} without"
    );
    assert!(
        failover <= quiet + 6 * survivors,
        "the survivors sent each other {failover} transmits after the crash, {quiet} without it"
    );
}

/// A list costs up to 4 096 entries: a member may ask for it once per `ASK_MEMBERS_GAP`
/// on its connection (honest nodes ask at admission, then every `RESYNC_INTERVAL` at most).
#[test]
fn an_ask_for_the_member_list_sooner_than_the_gap_after_the_last_closes_the_connection() {
    let mut sim = Sim::new(9);
    form(&mut sim, 9, 3, Found::Seeds, Duration::ZERO, false).unwrap();
    let id1 = sim.id(1);
    let refused = sim.nodes[&2].stats().messages_refused;
    sim.inject(1, 2, &Message::AskMembers);
    sim.run_for(Duration::from_millis(10));
    assert!(
        sim.member_ids(2).contains(&id1),
        "the first ask is answered"
    );
    sim.run_for(ASK_MEMBERS_GAP);
    sim.inject(1, 2, &Message::AskMembers);
    sim.run_for(Duration::from_millis(10));
    assert_eq!(
        sim.nodes[&2].stats().messages_refused,
        refused,
        "one a gap later is answered"
    );
    assert!(sim.member_ids(2).contains(&id1));
    sim.run_for(ASK_MEMBERS_GAP - Duration::from_millis(20));
    sim.inject(1, 2, &Message::AskMembers);
    sim.run_for(Duration::from_millis(10));
    let stats = sim.nodes[&2].stats().clone();
    assert_eq!(stats.messages_refused, refused + 1, "{stats:?}");
}

/// Manual discovery has no beacon to bring two nodes together again: a pair whose dials
/// all failed while the cluster formed (here every byte between them is lost until all
/// their retries are spent) is linked by a member's list asked again
/// (`RESYNC_INTERVAL`), within one round of asks over the members.
#[test]
fn with_multicast_off_a_pair_that_failed_to_link_at_formation_is_linked_by_a_later_list() {
    over_seeds(8, |seed| {
        let mut sim = Sim::new(seed);
        let n = 5;
        sim.add_at(0, config(Found::Seeds), true);
        sim.sever(1, 2);
        sim.sever(2, 1);
        for h in 1..n {
            sim.add_at(h, config(Found::Seeds), true);
        }
        // Past every retry of theirs (a handshake times out in 5 s, three retries).
        sim.run_for(Duration::from_secs(28));
        let apart = !sim.member_ids(1).contains(&sim.id(2));
        let others = (3..n).all(|h| sim.member_ids(h).len() == n - 1);
        if !apart || !others {
            return Err(format!(
                "not the case under test: apart {apart}, others whole {others}"
            ));
        }
        sim.mend();
        // Each node asks one of its n - 2 members every interval, in turn.
        sim.run_for(RESYNC_INTERVAL * (n as u32 - 1));
        if !formed(&sim, n) {
            let seen: Vec<usize> = (0..n).map(|h| sim.member_ids(h).len()).collect();
            return Err(format!("still apart: members seen {seen:?}"));
        }
        Ok(())
    });
}

/// CPU time this thread has used (Linux; zero elsewhere): the figure to quote for how long
/// a simulation takes on a shared machine, where wall-clock depends on the neighbours.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat.split_whitespace().next().and_then(|v| v.parse().ok());
    Duration::from_nanos(ns.unwrap_or(0))
}

/// Records and bytes every node sent so far.
fn sent(sim: &Sim) -> (u64, u64) {
    sim.sent
        .values()
        .fold((0, 0), |(r, b), &(r2, b2)| (r + r2, b + b2))
}

/// Handshakes each running node completed so far (each pair counts at both ends).
fn handshakes(sim: &Sim) -> BTreeMap<Host, u64> {
    let done = sim.nodes.iter();
    done.map(|(&h, c)| (h, c.stats().handshakes_completed))
        .collect()
}

/// Promotions `hosts` emitted so far.
fn promotions(sim: &Sim, hosts: &[Host]) -> usize {
    let of = |h: &Host| {
        sim.events
            .get(h)
            .map_or(0, |e| e.iter().filter(|e| promoted(e)).count())
    };
    hosts.iter().map(of).sum()
}

/// What one phase of [`scale`] cost, from a snapshot taken at its start.
struct Phase {
    at: std::time::Instant,
    cpu: Duration,
    sent: (u64, u64),
    handshakes: BTreeMap<Host, u64>,
}

impl Phase {
    fn start(sim: &Sim) -> Phase {
        Phase {
            at: std::time::Instant::now(),
            cpu: cpu_time(),
            sent: sent(sim),
            handshakes: handshakes(sim),
        }
    }

    /// Records, bytes and handshakes per node since the start, and the CPU and
    /// wall-clock the simulation took.
    fn cost(&self, sim: &Sim, n: usize) -> String {
        let (records, bytes) = sent(sim);
        let per = |v: u64| v as f64 / n as f64;
        // Nodes running now, since the start (a crashed node's counters went with it).
        let before = |h| self.handshakes.get(h).copied().unwrap_or(0);
        let done = handshakes(sim).iter().map(|(h, &d)| d - before(h)).sum();
        format!(
            "{:.0} records, {:.0} bytes and {:.1} handshakes per node (simulated in {:.1?} of CPU, {:.1?} wall-clock)",
            per(records - self.sent.0),
            per(bytes - self.sent.1),
            per(done),
            cpu_time().saturating_sub(self.cpu),
            self.at.elapsed()
        )
    }
}

/// Steps `sim` by `step` until `done` (checked first), for at most `limit`; how long that
/// took, or `None` if `done` never held.
fn until(
    sim: &mut Sim,
    step: Duration,
    limit: Duration,
    done: impl Fn(&Sim) -> bool,
) -> Option<Duration> {
    let t0 = sim.now;
    loop {
        if done(sim) {
            return Some(sim.now - t0);
        }
        if sim.now - t0 >= limit {
            return None;
        }
        sim.run_for(step);
    }
}

/// Every host in `hosts` counts exactly `members` members and follows one master, the
/// same for all of them. (Masters first: cheap, and they differ until late.)
fn agree(sim: &Sim, hosts: &[Host], members: usize) -> bool {
    let master = sim.nodes[&hosts[0]].master();
    master.is_some()
        && hosts.iter().all(|h| sim.nodes[h].master() == master)
        && hosts.iter().all(|&h| sim.member_ids(h).len() == members)
}

/// A fingerprint of everything the nodes of `sim` did so far: every event each emitted, in
/// order, the records each sent to each other and each node's counters.
/// Two runs of one seed agree on it only if they agree event for event, so a change meant
/// to keep the core's behaviour (an index in place of a walk) is checked by comparing it
/// before and after.
fn digest(sim: &Sim) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (host, events) in &sim.events {
        host.hash(&mut h);
        for e in events {
            format!("{e:?}").hash(&mut h);
        }
    }
    sim.sent_to.hash(&mut h);
    for (host, node) in &sim.nodes {
        host.hash(&mut h);
        format!("{:?}", node.stats()).hash(&mut h);
    }
    h.finish()
}

/// Formation, a crash of the master, a partition of a third and its heal, at `n` nodes by
/// multicast: prints what each costs, per node, and how long it took in virtual time. Run
/// by hand (TESTING.md) with `ESPIAL_SIM_NODES`; docs/SCALING.md has the figures.
fn scale(n: usize) {
    let mut sim = Sim::new(1);
    // Nothing below calls a node directly, and nobody replays probes.
    sim.poll_all_each_run = false;
    sim.record_probes = false;
    let all = Phase::start(&sim);
    let phase = Phase::start(&sim);
    // The smallest id dials every other node, 128 at once then 16 a second (the dial
    // budget): about a minute at a thousand nodes.
    let limit = Duration::from_secs(180);
    let f = form_within(
        &mut sim,
        1,
        n,
        Found::Multicast,
        Duration::ZERO,
        false,
        limit,
    );
    let f = f.unwrap();
    eprintln!(
        "n={n} formation: converged {:?} after the last start, {} promotion(s); {}; digest {:016x}",
        f.converged,
        f.promotions,
        phase.cost(&sim, n),
        digest(&sim)
    );
    // Issue 19 asks for one promotion up to a hundred nodes; past that it is a figure.
    if n <= 100 {
        assert_eq!(f.promotions, 1);
    }

    // A crash of the master: its connections close, as the kernel closes a killed
    // process's.
    let master = sim.nodes[&0].master().unwrap();
    let victim = (0..n).find(|&h| sim.id(h) == master).unwrap();
    let survivors: Vec<Host> = (0..n).filter(|&h| h != victim).collect();
    let phase = Phase::start(&sim);
    let promoted_before = promotions(&sim, &survivors);
    sim.crash(victim);
    let agreed = until(
        &mut sim,
        Duration::from_millis(5),
        Duration::from_secs(10),
        |sim| agree(sim, &survivors, n - 2) && sim.nodes[&survivors[0]].master() != Some(master),
    );
    let agreed = agreed.expect("survivors agree on a new master within 10 s");
    eprintln!(
        "n={n} crash of the master: new master agreed after {agreed:?}, {} promotion(s); {}; digest {:016x}",
        promotions(&sim, &survivors) - promoted_before,
        phase.cost(&sim, n),
        digest(&sim)
    );

    // A partition of a third of the survivors: silence, no close. Each side removes the
    // other once the failure detector's bound runs out, then the heal.
    let third: Vec<Host> = survivors[..survivors.len() / 3].to_vec();
    let rest: Vec<Host> = survivors[survivors.len() / 3..].to_vec();
    let phase = Phase::start(&sim);
    let promoted_before = promotions(&sim, &survivors);
    sim.partition(&third);
    let split = until(
        &mut sim,
        Duration::from_millis(50),
        Duration::from_secs(120),
        |sim| agree(sim, &third, third.len() - 1) && agree(sim, &rest, rest.len() - 1),
    );
    eprintln!(
        "n={n} partition of {}: each side alone with one master after {}, {} promotion(s); {}; digest {:016x}",
        third.len(),
        split.map_or("more than 120 s".into(), |d| format!("{d:?}")),
        promotions(&sim, &survivors) - promoted_before,
        phase.cost(&sim, n),
        digest(&sim)
    );
    sim.run_for(Duration::from_secs(1));
    let phase = Phase::start(&sim);
    let promoted_before = promotions(&sim, &survivors);
    sim.heal_all();
    let healed = until(
        &mut sim,
        Duration::from_millis(10),
        Duration::from_secs(60),
        |sim| agree(sim, &survivors, n - 2),
    );
    let healed = healed.expect("one cluster again within 60 s of the heal");
    eprintln!(
        "n={n} heal: one cluster with one master after {healed:?}, {} promotion(s); {}; digest {:016x}",
        promotions(&sim, &survivors) - promoted_before,
        phase.cost(&sim, n),
        digest(&sim)
    );
    eprintln!("n={n} in all: {}", all.cost(&sim, n));
}

#[test]
fn scale_small() {
    scale(20);
}

#[test]
#[ignore = "minutes of CPU: run by hand with ESPIAL_SIM_NODES (TESTING.md)"]
fn scale_large() {
    let n = std::env::var("ESPIAL_SIM_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    scale(n);
}

/// Beacons every node of the cluster sent so far.
fn beacons_sent(sim: &Sim, hosts: &[Host]) -> u64 {
    hosts
        .iter()
        .map(|h| sim.nodes[h].stats().beacons_sent)
        .sum()
}

/// Every node hears every beacon of its cluster. With one 2 s period for all, a node of
/// N heard N/2 beacons a second (10 at 20 nodes, 30 at 60, 500 at 1 000); with each
/// node's period spread by its members (`beacon_schedule::period`) the cluster sends
/// about 16 per 2 s whatever N. Counted over a minute of idling, once the periods planned
/// while forming have run out; the cluster stays whole meanwhile.
#[test]
fn beacons_heard_per_node_stay_about_eight_a_second_whatever_the_size() {
    for n in [20, 60] {
        let mut sim = Sim::new(11);
        sim.poll_all_each_run = false;
        sim.record_probes = false;
        form(&mut sim, 11, n, Found::Multicast, Duration::ZERO, false).unwrap();
        sim.run_for(Duration::from_secs(30));
        let hosts: Vec<Host> = (0..n).collect();
        let before = beacons_sent(&sim, &hosts);
        let window = Duration::from_secs(60);
        sim.run_for(window);
        // Each node hears every other's: the cluster's rate, less its own.
        let cluster_rate = (beacons_sent(&sim, &hosts) - before) as f64 / window.as_secs_f64();
        let heard = cluster_rate * (n - 1) as f64 / n as f64;
        assert!(
            (3.0..=9.0).contains(&heard),
            "{n} nodes: each heard {heard:.1} beacons a second"
        );
        assert!(formed(&sim, n), "{n} nodes: still one cluster");
    }
}

/// The partition of a third of a 60-node cluster heals within a second: the first node
/// to link across asks its new member, which follows another master, for its member list
/// (`Cluster::ask_across`), dials its larger ids and announces itself to the smaller ones,
/// which dial it. Without the asks, with beacons spread by the members (4 s and 6 s
/// periods on the two sides here), a pair waits to hear the other's beacon or an answer
/// to one: 2.7-3.4 s in five seeds of six (one beacon answered can mend many pairs at
/// once, so one seed healed in 100 ms). The asks are bounded: one per node per
/// `beacon_interval` at most, whatever the links across (a peer naming another master on
/// every new link gets one list an interval); without that bound every link across would
/// cost a list (1 020 lists in seed 2 without it).
#[test]
fn a_partition_of_sixty_heals_within_a_second_by_lists_asked_across() {
    // Seeds whose heal took 2.7 s without the asks (10-160 ms with them, in six seeds).
    for seed in 2..=3 {
        heal_by_lists(seed, 60);
    }
}

fn heal_by_lists(seed: u64, n: usize) {
    let mut sim = Sim::new(seed);
    sim.poll_all_each_run = false;
    sim.record_probes = false;
    form(&mut sim, seed, n, Found::Multicast, Duration::ZERO, false).unwrap();
    sim.run_for(Duration::from_secs(20));
    let hosts: Vec<Host> = (0..n).collect();
    let (third, rest) = hosts.split_at(n / 3);
    sim.partition(third);
    let split = until(
        &mut sim,
        Duration::from_millis(50),
        Duration::from_secs(30),
        |sim| agree(sim, third, third.len() - 1) && agree(sim, rest, rest.len() - 1),
    );
    split.expect("each side alone with a master of its own");
    let master = |sim: &Sim, h: Host| sim.nodes[&h].master();
    assert_ne!(master(&sim, third[0]), master(&sim, rest[0]));
    // The simulation carries each removal's close across the cut, and the far end redials
    // its suspect until `suspect_timeout`: past that, only beacons can bring the sides
    // together, as across a real partition.
    sim.run_for(Duration::from_secs(10));
    let asked = |sim: &Sim| -> u64 {
        let stats = hosts.iter().map(|h| sim.nodes[h].stats());
        stats.map(|s| s.lists_asked_across).sum()
    };
    let asked_before = asked(&sim);
    sim.heal_all();
    let healed = until(
        &mut sim,
        Duration::from_millis(10),
        Duration::from_secs(30),
        |sim| agree(sim, &hosts, n - 1),
    );
    let healed = healed.expect("one cluster again within 30 s of the heal");
    let lists = asked(&sim) - asked_before;
    assert!(
        healed <= Duration::from_secs(1),
        "seed {seed}: healed after {healed:?} ({lists} lists asked across)"
    );
    let gaps = (healed.as_secs_f64() / 2.0).ceil() as u64 + 1;
    assert!(
        (1..=n as u64 * gaps).contains(&lists),
        "seed {seed}: {lists} lists asked across in {healed:?}: none, or more than one per node per interval"
    );
}

/// A newcomer by multicast asks one member for the list, at admission. Its other members'
/// first `State`s name a master it may not follow yet: that is no partition healing, and
/// a list asked across on top (about 100 entries at 100 nodes) is counted toward the
/// gap of [`Cluster::ask_across`](crate::core::cluster::Cluster) like any list asked.
#[test]
fn a_newcomer_by_multicast_asks_no_list_across() {
    over_seeds(6, |seed| {
        let n = 30;
        let mut sim = Sim::new(seed);
        sim.record_probes = false;
        form(&mut sim, seed, n, Found::Multicast, Duration::ZERO, false)?;
        sim.run_for(Duration::from_millis(200));
        sim.add_at(n, config(Found::Multicast), false);
        let joined = until(
            &mut sim,
            Duration::from_millis(5),
            Duration::from_secs(5),
            |sim| formed(sim, n + 1),
        );
        joined.ok_or("the newcomer did not join within 5 s")?;
        let across = sim.nodes[&n].stats().lists_asked_across;
        if across != 0 {
            return Err(format!("the newcomer asked {across} list(s) across"));
        }
        Ok(())
    });
}

/// `n` nodes formed by multicast (2 ms of latency), then left 30 s: past the beacon
/// periods planned while forming (see the beacons' test above).
fn settled_by_multicast(seed: u64, n: usize) -> Result<Sim, String> {
    let mut sim = Sim::new(seed);
    sim.poll_all_each_run = false;
    sim.record_probes = false;
    sim.latency = Duration::from_millis(2);
    form(&mut sim, seed, n, Found::Multicast, Duration::ZERO, false)?;
    sim.run_for(Duration::from_secs(30));
    Ok(sim)
}

/// A newcomer found by multicast joins a formed cluster of `n`; returns the beacons the
/// members sent in the second after it started, less the regular ones (the cluster's own
/// rate over the ten seconds before), and how long it took to be a member everywhere.
fn answers_to_a_newcomer(seed: u64, n: usize) -> Result<(i64, Duration), String> {
    let mut sim = settled_by_multicast(seed, n)?;
    let hosts: Vec<Host> = (0..n).collect();
    let second = Duration::from_secs(1);
    let before = beacons_sent(&sim, &hosts);
    sim.run_for(10 * second);
    let regular = (beacons_sent(&sim, &hosts) - before) / 10;
    let before = beacons_sent(&sim, &hosts);
    sim.accept_delay = Duration::from_millis(20);
    sim.add(config(Found::Multicast));
    let start = sim.now;
    let joined = until(&mut sim, Duration::from_millis(5), second, |s| {
        formed(s, n + 1)
    });
    sim.run_for((start + second).saturating_duration_since(sim.now));
    let answers = beacons_sent(&sim, &hosts) as i64 - before as i64 - regular as i64;
    let joined = joined.ok_or_else(|| format!("not a member everywhere within {second:?}"))?;
    Ok((answers, joined))
}

/// 60 nodes by multicast started over a second, each dial accepted after up to 50 ms (a
/// loaded host): a node started late with a smaller id than an early member's was left to
/// dial it, and learnt of it only from the member's answer (dropped for another member's
/// beacon) or its first member's list (which, taken from a member that had just joined
/// itself, named few): the pair waited for the early member's fallback dial, 4 s after
/// the beacon. Converged 3 845 / 4 015 / 3 285 ms after the last start (seeds 1-3); the
/// dropped answer's newcomers are dialed within `DROPPED_ANSWER_DIAL_AFTER` now.
#[test]
fn late_starters_by_multicast_are_not_left_to_the_fallback() {
    over_seeds(4, |seed| {
        let mut sim = Sim::new(seed);
        sim.latency = Duration::from_millis(1);
        sim.accept_delay = Duration::from_millis(50);
        let spread = Duration::from_secs(1);
        let f = form(&mut sim, seed, 60, Found::Multicast, spread, false)?;
        if f.converged > Duration::from_secs(2) {
            return Err(format!("converged {:?} after the last start", f.converged));
        }
        Ok(())
    });
}

/// Every member with a larger id than a newcomer's owes its beacon an answer (it dials
/// the larger ids it hears), and every answer is heard by every node: all at once, a join
/// into 60 made about 30 beacons heard by 60 nodes each. Above 16 members each waits a
/// random part of a window growing with its members and drops its answer once the
/// newcomer has linked with it (`beacon_schedule::announce_spread`). The join stays quick.
#[test]
fn members_answer_a_newcomers_beacon_a_few_times_not_once_each() {
    over_seeds(6, |seed| {
        let (answers, joined) = answers_to_a_newcomer(seed, 60)?;
        eprintln!("seed {seed}: {answers} answers, a member in {joined:?}");
        if answers > 6 {
            return Err(format!("{answers} answers to one newcomer"));
        }
        Ok(())
    });
}

/// How long a newcomer whose id is below every member's (nobody dials it: it waits to hear
/// a member's beacon) takes to be a member everywhere in a formed cluster of `n`; with
/// `forger`, someone on the LAN sends every member, every millisecond, a beacon in the name of
/// another member (its id, from its address), which makes every member drop the answer it
/// planned (`BeaconSchedule::answered_by_member`).
fn smallest_newcomer_joins(seed: u64, n: usize, forger: bool) -> Result<Duration, String> {
    let mut sim = settled_by_multicast(seed, n)?;
    // The forger's beacons are handed to the nodes directly: their wake-ups move.
    sim.poll_all_each_run = forger;
    let newcomer = sim.add_below_all(config(Found::Multicast));
    let start = sim.now;
    let limit = Duration::from_secs(6);
    let step = Duration::from_millis(1);
    for i in 0..limit.as_millis() / step.as_millis() {
        if formed(&sim, n + 1) {
            return Ok(sim.now - start);
        }
        if forger {
            for to in 0..n {
                let named = (to + 1 + i as usize % (n - 1)) % n;
                let id = sim.id(named);
                beacon_of(&mut sim, to, id, addr(named));
            }
        }
        sim.run_for(step);
    }
    let seen = sim.member_ids(newcomer).len();
    Err(format!(
        "not a member everywhere after {limit:?}: it has {seen} of {n}"
    ))
}

/// The answers' cost: a newcomer that nobody dials waits for the first member's answer,
/// a random part of a window growing with the members (`announce_spread`: 325 ms with
/// 29 members, each of them drawing: the first answer comes about 11 ms after the
/// newcomer's beacon). Measured 20-54 ms to a member everywhere. And the attack on the
/// rule that drops an answer once another member has beaconed: forged member beacons,
/// every millisecond, cancel nearly every answer (1-2 went out, against 1-3), and the
/// newcomer is still joined by the answers that slip through, the members' regular
/// beacons, or at worst the members' dials 1 s after an answer is cancelled
/// (`DROPPED_ANSWER_DIAL_AFTER`; the fallback's 4 s before): 22-68 ms measured.
#[test]
fn a_newcomer_nobody_dials_is_answered_soon_even_with_every_answer_cancelled_by_forgery() {
    over_seeds(4, |seed| {
        let quiet = smallest_newcomer_joins(seed, 30, false)?;
        let forged = smallest_newcomer_joins(seed, 30, true)?;
        eprintln!("seed {seed}: a member everywhere in {quiet:?}, {forged:?} under forgery");
        if quiet > Duration::from_millis(300) {
            return Err(format!("{quiet:?} to join without an attacker"));
        }
        if forged > Duration::from_millis(4500) {
            return Err(format!("{forged:?} to join with every answer cancelled"));
        }
        Ok(())
    });
}

/// The bound on the newcomers an answer tracks (`beacon_schedule::MAX_ANSWERING`),
/// attacked: someone on the LAN sends a member of 30 beacons under 1 000 made-up ids below
/// the member's, from 1 000 addresses, then one in another member's name (which drops an
/// answer whose newcomers all heard it). The member tracks 64 of them, and as it cannot
/// tell whom else it owes an answer it keeps the answer and sends it within its draw
/// (`announce_spread`: under 350 ms with 29 members). Ignoring the overflow, the forged
/// member beacon cancels it: no beacon in that time.
#[test]
fn a_flood_of_made_up_newcomers_is_tracked_up_to_the_bound_and_still_answered() {
    use crate::core::beacon_schedule::MAX_ANSWERING;
    use rand_chacha::rand_core::SeedableRng;
    let n = 30;
    let mut sim = settled_by_multicast(7, n).unwrap();
    // The forged beacons are handed to the node directly: its wake-ups move.
    sim.poll_all_each_run = true;
    let target: Host = (0..n).max_by_key(|&h| sim.id(h)).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let before = sim.nodes[&target].stats().beacons_sent;
    let mut forged = 0;
    for _ in 0..2_000 {
        let id = crate::core::node::NodeId::random(&mut rng);
        if id >= sim.id(target) {
            continue;
        }
        let [a, b] = (forged as u16).to_be_bytes();
        beacon_of(
            &mut sim,
            target,
            id,
            SocketAddr::from(([10, 9, a, b], 7000)),
        );
        forged += 1;
        if forged == 1_000 {
            break;
        }
    }
    assert_eq!(forged, 1_000);
    let other = (target + 1) % n;
    let id = sim.id(other);
    beacon_of(&mut sim, target, id, addr(other));
    assert_eq!(
        sim.nodes[&target].answer_tracks(),
        Some((MAX_ANSWERING, true)),
        "tracks the bound, knows it overflowed"
    );
    sim.run_for(Duration::from_millis(400));
    let sent = sim.nodes[&target].stats().beacons_sent - before;
    assert_eq!(sent, 1, "the answer went out");
    assert_eq!(sim.nodes[&target].answer_tracks(), None);
    assert!(formed(&sim, n), "the cluster is whole");
}
