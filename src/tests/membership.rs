//! Membership over the in-memory network: formation, one connection per pair, leaving,
//! and cluster names and keys keeping nodes apart.

use std::time::Duration;

use super::sim::{accepted, added, rejected, removed, updated, Sim};
use crate::core::config::Config;
use crate::core::crypto::ClusterKey;

fn full_mesh(sim: &Sim) {
    let hosts: Vec<_> = sim.nodes.keys().copied().collect();
    for &h in &hosts {
        members_are_each_other(sim, h, &hosts);
        for &o in &hosts {
            if o != h {
                assert_eq!(sim.count(h, sim.id(o), added), 1, "{h} added {o}");
                assert_eq!(sim.count(h, sim.id(o), accepted), 1, "{h} accepted by {o}");
            }
        }
    }
}

/// Host `h`'s members are exactly the other `hosts`.
fn members_are_each_other(sim: &Sim, h: usize, hosts: &[usize]) {
    let mut expected: Vec<_> = hosts
        .iter()
        .filter(|&&o| o != h)
        .map(|&o| sim.id(o))
        .collect();
    expected.sort();
    assert_eq!(sim.member_ids(h), expected, "members of host {h}");
}

/// Each pair of nodes shares exactly one connection (two ends).
fn one_connection_per_pair(sim: &Sim, seed: u64) {
    let n = sim.nodes.len();
    assert_eq!(
        sim.open_links(),
        n * (n - 1),
        "seed {seed}: one connection per pair"
    );
}

#[test]
fn nodes_started_together_form_a_full_mesh_with_one_connection_per_pair() {
    for seed in 0..50 {
        let mut sim = Sim::new(seed);
        for _ in 0..6 {
            sim.add(Config::lan("sim"));
        }
        sim.run_for(Duration::from_secs(3));
        full_mesh(&sim);
        one_connection_per_pair(&sim, seed);
    }
}

#[test]
fn a_late_node_is_found_within_the_start_burst() {
    let mut sim = Sim::new(7);
    for _ in 0..4 {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(5));
    sim.add(Config::lan("sim"));
    // Faster than one periodic beacon interval: the late node's first beacon is answered.
    sim.run_for(Duration::from_millis(100));
    full_mesh(&sim);
}

#[test]
fn a_leaving_node_is_removed_once_everywhere() {
    let mut sim = Sim::new(11);
    for _ in 0..4 {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(2));
    let gone = sim.id(2);
    let now = sim.now;
    sim.nodes.get_mut(&2).unwrap().leave(now);
    sim.run_for(Duration::from_secs(10));
    for h in [0, 1, 3] {
        assert_eq!(sim.count(h, gone, removed), 1, "host {h}");
        assert!(!sim.member_ids(h).contains(&gone));
        assert_eq!(sim.member_ids(h).len(), 2);
    }
    assert!(sim.member_ids(2).is_empty());
}

#[test]
fn different_cluster_names_and_keys_stay_apart() {
    let mut sim = Sim::new(13);
    let key = ClusterKey::derive(b"0123456789abcdef");
    let mut keyed = Config::lan("sim");
    keyed.cluster_key = Some(key.clone());
    let a = sim.add(keyed.clone());
    let b = sim.add(keyed);
    let c = sim.add(Config::lan("sim"));
    let d = sim.add(Config::lan("other"));
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.member_ids(a), vec![sim.id(b)]);
    assert_eq!(sim.member_ids(b), vec![sim.id(a)]);
    assert!(sim.member_ids(c).is_empty());
    assert!(sim.member_ids(d).is_empty());
    // The keyed pair and the unkeyed node of the same cluster name hear each other's
    // beacons: key mismatches, counted (not silently lumped with other clusters' beacons);
    // the node of another cluster name is no key mismatch for anyone.
    for h in [a, b, c] {
        let stats = sim.nodes[&h].stats();
        assert!(stats.key_mismatches > 0, "node {h}: {stats:?}");
        assert!(
            stats.beacons_ignored >= stats.key_mismatches,
            "node {h}: {stats:?}"
        );
    }
    assert_eq!(sim.nodes[&d].stats().key_mismatches, 0);
}

/// Keyed beacons carry the sender's clock: nodes whose clocks are within the freshness
/// window find each other by multicast; a node whose clock is set far off is refused by
/// the others (counted in `beacons_refused`, never dialed) until its clock is put right.
#[test]
fn keyed_discovery_needs_clocks_within_the_freshness_window() {
    use crate::core::beacon::FRESHNESS_WINDOW;
    let window = FRESHNESS_WINDOW.as_millis() as i64;
    let mut sim = Sim::new(14);
    let mut keyed = Config::lan("sim");
    keyed.cluster_key = Some(ClusterKey::derive(b"0123456789abcdef"));
    let a = sim.add(keyed.clone());
    let b = sim.add(keyed.clone());
    let far = sim.add(keyed);
    sim.set_clock_skew(b, -(window - 5_000));
    sim.set_clock_skew(far, window + 5_000);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.member_ids(a), vec![sim.id(b)]);
    assert_eq!(sim.member_ids(b), vec![sim.id(a)]);
    assert!(sim.member_ids(far).is_empty());
    assert!(sim.nodes[&a].stats().beacons_refused > 0);
    // Refused from the skewed node, but its own view of the others' beacons is just as far
    // off: nobody dials anybody across the gap.
    assert!(sim.nodes[&far].stats().beacons_refused > 0);
    sim.set_clock_skew(far, 0);
    sim.run_for(Duration::from_secs(10));
    assert_eq!(sim.member_ids(far).len(), 2);
}

#[test]
fn when_both_nodes_dial_at_once_both_keep_the_same_single_connection() {
    use crate::core::beacon::{self, Beacon};
    use std::net::SocketAddr;
    for seed in 0..20 {
        let mut sim = Sim::new(100 + seed);
        let x = sim.add(Config::lan("sim"));
        let y = sim.add(Config::lan("sim"));
        // Only the larger id would dial after hearing the smaller one for two beacon
        // periods; make both dial in the same instant by hand-feeding beacons.
        let (small, large) = if sim.id(x) < sim.id(y) {
            (x, y)
        } else {
            (y, x)
        };
        let beacon_of = |sim: &Sim, h| {
            let me = sim.nodes[&h].me();
            let b = Beacon {
                id: me.id,
                addr: SocketAddr::new(me.ip, me.port),
                time_ms: 0,
                seq: 1,
            };
            (
                SocketAddr::new(me.ip, 50000),
                beacon::encode("sim", None, b),
            )
        };
        let (small_addr, small_beacon) = beacon_of(&sim, small);
        let (large_addr, large_beacon) = beacon_of(&sim, large);
        let t0 = sim.now;
        sim.nodes
            .get_mut(&large)
            .unwrap()
            .handle_beacon(t0, small_addr, &small_beacon);
        let t1 = t0 + Duration::from_secs(5);
        sim.now = t1;
        sim.nodes
            .get_mut(&large)
            .unwrap()
            .handle_beacon(t1, small_addr, &small_beacon);
        sim.nodes
            .get_mut(&small)
            .unwrap()
            .handle_beacon(t1, large_addr, &large_beacon);
        sim.run_for(Duration::from_millis(1));
        assert_eq!(sim.open_links(), 2, "seed {seed}: one connection, two ends");
        assert_eq!(sim.member_ids(small), vec![sim.id(large)]);
        assert_eq!(sim.member_ids(large), vec![sim.id(small)]);
        assert_eq!(sim.count(small, sim.id(large), added), 1);
        assert_eq!(sim.count(large, sim.id(small), added), 1);
        assert_eq!(sim.count(small, sim.id(large), removed), 0);
        // The larger address gave its dial up when the other's arrived (PROTOCOL.md,
        // "Dials that cross"); before, both dials completed and one was dropped after.
        for h in [small, large] {
            let done = sim.nodes[&h].stats().handshakes_completed;
            assert_eq!(done, 1, "seed {seed}: one handshake, not one per dial");
        }
    }
}

/// A config for manual discovery through the given seeds, with quick heartbeats.
fn manual(seeds: &[usize]) -> Config {
    let mut c = Config::lan("sim");
    c.discovery.seeds = seeds.iter().map(|&h| super::sim::addr(h)).collect();
    c.discovery.probe_lost = true;
    c
}

#[test]
fn joining_through_one_seed_gives_the_whole_membership() {
    for seed in 0..30 {
        let mut sim = Sim::new(200 + seed);
        sim.add_manual(manual(&[]));
        for _ in 0..5 {
            sim.add_manual(manual(&[0]));
        }
        sim.run_for(Duration::from_secs(10));
        full_mesh(&sim);
        one_connection_per_pair(&sim, seed);
    }
}

#[test]
fn a_subnet_scan_finds_every_node() {
    let mut sim = Sim::new(17);
    for _ in 0..4 {
        let mut c = Config::lan("sim");
        c.discovery.subnets = vec!["10.0.0.1".parse().unwrap()];
        c.discovery.scan_port = 27272;
        sim.add_manual(c);
    }
    sim.run_for(Duration::from_secs(20));
    full_mesh(&sim);
}

#[test]
fn a_crashed_node_is_removed_at_once_everywhere_and_only_once() {
    let mut sim = Sim::new(19);
    for _ in 0..4 {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(2));
    let gone = sim.id(1);
    sim.crash(1);
    // Far less than the heartbeat bound (3 x 5 s + 1 s): the redial is refused.
    sim.run_for(Duration::from_millis(10));
    for h in [0, 2, 3] {
        assert_eq!(sim.count(h, gone, removed), 1, "host {h}");
        assert!(!sim.member_ids(h).contains(&gone));
    }
    sim.run_for(Duration::from_secs(60));
    for h in [0, 2, 3] {
        assert_eq!(sim.count(h, gone, removed), 1, "host {h}: removed once");
    }
}

#[test]
fn a_silent_node_is_removed_after_the_heartbeat_bound_and_not_before() {
    let mut sim = Sim::new(23);
    for _ in 0..3 {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(2));
    let gone = sim.id(2);
    sim.cut(2);
    // Silence is measured from the last heartbeat, which came at most one interval
    // before the cut.
    let detector = Config::lan("sim").detector;
    let earliest = detector.dead_after() - detector.interval;
    sim.run_for(earliest - Duration::from_millis(100));
    for h in [0, 1] {
        assert_eq!(sim.count(h, gone, removed), 0, "host {h} removed it early");
    }
    sim.run_for(detector.interval + Duration::from_millis(200));
    for h in [0, 1] {
        assert_eq!(sim.count(h, gone, removed), 1, "host {h}");
    }
    // The cut host saw everyone go silent too.
    assert!(sim.member_ids(2).is_empty());
    // After the link heals, beacons bring it back.
    sim.heal(2);
    sim.run_for(Duration::from_secs(10));
    full_mesh_members(&sim);
}

fn full_mesh_members(sim: &Sim) {
    for &h in sim.nodes.keys() {
        assert_eq!(sim.member_ids(h).len(), sim.nodes.len() - 1, "host {h}");
    }
}

#[test]
fn a_partition_in_manual_mode_heals_by_probing_lost_members() {
    let mut sim = Sim::new(29);
    sim.add_manual(manual(&[]));
    for _ in 0..3 {
        sim.add_manual(manual(&[0]));
    }
    sim.run_for(Duration::from_secs(5));
    sim.cut(3);
    sim.run_for(Duration::from_secs(30));
    assert!(sim.member_ids(3).is_empty());
    sim.heal(3);
    sim.run_for(Duration::from_secs(10));
    full_mesh_members(&sim);
}

#[test]
fn a_reset_connection_between_live_nodes_is_mended_without_events() {
    let mut sim = Sim::new(31);
    for _ in 0..3 {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(2));
    sim.reset_link(0, 1);
    sim.run_for(Duration::from_secs(30));
    full_mesh(&sim);
    assert_eq!(sim.open_links(), 6);
    for h in 0..3 {
        assert!(
            sim.events[&h].iter().all(|e| removed(e).is_none()),
            "host {h}"
        );
    }
}

#[test]
fn a_node_restarted_at_the_same_address_is_the_old_removed_and_a_new_added() {
    let mut sim = Sim::new(37);
    sim.add_manual(manual(&[]));
    sim.add_manual(manual(&[0]));
    sim.run_for(Duration::from_secs(3));
    let old = sim.id(1);
    sim.crash(1);
    sim.restart(1, manual(&[0]));
    let new = sim.id(1);
    assert_ne!(old, new);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(sim.count(0, old, removed), 1);
    assert_eq!(sim.count(0, new, added), 1);
    assert_eq!(sim.member_ids(0), vec![new]);
}

#[test]
fn metadata_updates_reach_every_member() {
    let mut sim = Sim::new(41);
    for _ in 0..3 {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    sim.nodes
        .get_mut(&0)
        .unwrap()
        .set_metadata(now, r#"{"v":2}"#.into());
    sim.run_for(Duration::from_millis(1));
    let id = sim.id(0);
    for h in [1, 2] {
        assert_eq!(sim.count(h, id, updated), 1);
        let seen = sim.nodes[&h].members();
        let m = seen.iter().find(|n| n.id == id).unwrap();
        assert_eq!(m.metadata, r#"{"v":2}"#);
    }
    // A node joining later is introduced to the new metadata.
    let late = sim.add(Config::lan("sim"));
    sim.run_for(Duration::from_secs(1));
    let seen = sim.nodes[&late].members();
    assert_eq!(
        seen.iter().find(|n| n.id == id).unwrap().metadata,
        r#"{"v":2}"#
    );
}

#[test]
fn a_rejected_node_learns_nothing_and_is_nobodys_member() {
    // Hosts 1 and 2 join through host 0; host 3 is refused by everyone's filter.
    let mut sim = Sim::new(43);
    sim.add_manual(manual(&[]));
    sim.add_manual(manual(&[0]));
    sim.add_manual(manual(&[0]));
    sim.run_for(Duration::from_secs(3));
    for h in 0..3 {
        sim.filters.insert(
            h,
            Box::new(|n: &crate::core::node::Candidate| n.host_name != "host-3"),
        );
    }
    let intruder = sim.add_manual(manual(&[0]));
    sim.run_for(Duration::from_secs(10));
    let bad = sim.id(intruder);
    for h in 0..3 {
        assert!(!sim.member_ids(h).contains(&bad), "host {h}");
        assert_eq!(sim.count(h, bad, added), 0);
    }
    assert!(sim.member_ids(intruder).is_empty());
    assert!(sim.count(intruder, sim.id(0), rejected) >= 1);
    // Only the seed was ever dialed: no member list reached the intruder.
    assert_eq!(sim.count(intruder, sim.id(1), rejected), 0);
    assert_eq!(sim.count(intruder, sim.id(2), rejected), 0);
    assert!(sim.nodes[&0].stats().nodes_rejected >= 1);
}

#[test]
fn stalled_handshakes_cannot_lock_a_newcomer_out() {
    use std::net::SocketAddr;
    let mut sim = Sim::new(51);
    sim.add(Config::lan("sim"));
    sim.run_for(Duration::from_millis(10));
    let now = sim.now;
    let node = sim.nodes.get_mut(&0).unwrap();
    // One attacker address fills its share and no more.
    let attacker = |port: u16| SocketAddr::new("10.9.9.9".parse().unwrap(), port);
    let per_ip = Config::lan("sim").max_pending_per_ip;
    let taken = (0..per_ip + 10)
        .filter(|&i| node.accept(now, attacker(1000 + i as u16)).is_some())
        .count();
    assert_eq!(taken, per_ip);
    // Many addresses fill every slot: a newcomer still gets in, the oldest stall goes.
    for i in 0..400u32 {
        let ip = format!("10.8.{}.{}", i / 200, i % 200 + 1);
        let _ = node.accept(now, SocketAddr::new(ip.parse().unwrap(), 5000));
    }
    let _ = std::iter::from_fn(|| node.poll_output()).count();
    assert!(node.accept(now, "10.7.7.7:6000".parse().unwrap()).is_some());
    // And a real node joins while the stalls are still pending.
    sim.add(Config::lan("sim"));
    sim.run_for(Duration::from_millis(500));
    assert_eq!(sim.member_ids(0), vec![sim.id(1)]);
}

/// The index from node id to link names exactly the introduced links, on every node and
/// at every step of formation, duplicate dials, resets, crashes and restarts.
#[test]
fn the_node_index_always_agrees_with_the_links() {
    let mut sim = Sim::new(41);
    for _ in 0..5 {
        sim.add(Config::lan("sim"));
    }
    let check = |sim: &Sim, when: &str| {
        for (h, node) in &sim.nodes {
            assert!(node.index_agrees(), "host {h} {when}");
        }
    };
    let step = |sim: &mut Sim, for_ms: u64, when: &str| {
        for _ in 0..for_ms / 5 {
            sim.run_for(Duration::from_millis(5));
            check(sim, when);
        }
    };
    step(&mut sim, 3000, "forming");
    sim.reset_link(0, 1);
    step(&mut sim, 2000, "after a reset");
    sim.crash(2);
    step(&mut sim, 500, "after a crash");
    sim.restart(2, Config::lan("sim"));
    step(&mut sim, 3000, "after a restart");
    let now = sim.now;
    sim.nodes.get_mut(&3).unwrap().leave(now);
    step(&mut sim, 1000, "after a leave");
    let stayed = [0, 1, 2, 4];
    for h in stayed {
        members_are_each_other(&sim, h, &stayed);
    }
}

/// Host 0's filter refuses host 1, over `span`: how often each filter ran, and the events
/// each side emitted about the other.
fn refusal_over(seed: u64, span: Duration, manual_mode: bool) -> (Sim, usize, usize) {
    let mut sim = Sim::new(seed);
    let (a, b) = if manual_mode {
        (sim.add_manual(manual(&[])), sim.add_manual(manual(&[0])))
    } else {
        (sim.add(Config::lan("sim")), sim.add(Config::lan("sim")))
    };
    sim.filters.insert(
        a,
        Box::new(|n: &crate::core::node::Candidate| n.host_name != "host-1"),
    );
    sim.run_for(span);
    let asked = |h| sim.asked.get(&h).copied().unwrap_or(0);
    let (on_a, on_b) = (asked(a), asked(b));
    (sim, on_a, on_b)
}

/// Trap 4 of issue 16: a refused node is retried with a back-off that doubles (2 s, 4 s,
/// 8 s... up to 60 s, plus up to a quarter), not every beacon period: over 20 s each
/// filter runs at most 5 times (once every 2 s was 10 or more), and each side's events
/// read the right way round: the refused node hears `NodeRejected(refuser)` once per try,
/// the refusing node tells the application nothing, and nobody is accepted or added.
#[test]
fn a_refused_node_is_retried_with_a_back_off_that_doubles_and_events_read_right() {
    for manual_mode in [false, true] {
        for seed in [61, 62, 63] {
            let (sim, on_a, on_b) = refusal_over(seed, Duration::from_secs(20), manual_mode);
            let (a, b) = (0, 1);
            let what = format!("seed {seed}, manual {manual_mode}");
            assert!(
                (1..=5).contains(&on_a),
                "{what}: the refusing filter ran {on_a} times in 20 s"
            );
            assert!(
                on_b <= 5,
                "{what}: the refused node's filter ran {on_b} times in 20 s"
            );
            let refusals = sim.nodes[&a].stats().nodes_rejected as usize;
            assert_eq!(
                sim.count(b, sim.id(a), rejected),
                refusals,
                "{what}: one NodeRejected per refusal"
            );
            assert_eq!(
                sim.count(a, sim.id(b), accepted),
                0,
                "{what}: the refuser was not 'accepted by' the node it refused"
            );
            assert_eq!(sim.count(b, sim.id(a), accepted), 0, "{what}");
            assert_eq!(
                sim.count(a, sim.id(b), rejected),
                0,
                "{what}: the refuser was not refused"
            );
            assert_eq!(
                sim.count(a, sim.id(b), added) + sim.count(b, sim.id(a), added),
                0,
                "{what}"
            );
        }
    }
    // Over ten minutes the wait reaches its cap: about log2(60/2) + 600/60 tries, not 300.
    let (_, on_a, _) = refusal_over(64, Duration::from_secs(600), false);
    assert!(
        on_a <= 16,
        "the refusing filter ran {on_a} times in 10 minutes"
    );
}

/// Once the refusing filter changes its mind, the refused node joins at its next try, and
/// its refusals in a row start again from the shortest wait.
#[test]
fn a_refused_node_joins_once_the_filter_admits_it() {
    let (mut sim, _, _) = refusal_over(65, Duration::from_secs(10), false);
    sim.filters.clear();
    sim.run_for(Duration::from_secs(70));
    assert_eq!(sim.member_ids(0), vec![sim.id(1)]);
    assert_eq!(sim.count(0, sim.id(1), accepted), 1);
    assert_eq!(sim.count(1, sim.id(0), accepted), 1);
    assert_eq!(sim.count(0, sim.id(1), added), 1);
}

/// The reason each removal and refusal is logged with (`Event::Explained`): a goodbye is
/// `Left`, a crash `Reset`, a silence `Timeout`, a node our filter refuses `Filter`, and
/// one that comes back while refused `RefusedBefore`.
#[test]
fn every_removal_and_refusal_is_explained() {
    use crate::core::cluster::Event;
    use crate::core::node::NodeId;
    use crate::core::output::{Happened, Reason};
    fn why(sim: &Sim, host: usize, about: NodeId, what: Happened) -> Vec<Reason> {
        sim.events[&host]
            .iter()
            .filter_map(|e| match e {
                Event::Explained {
                    node,
                    what: w,
                    reason,
                } if node.id == about && *w == what => Some(*reason),
                _ => None,
            })
            .collect()
    }
    let mut sim = Sim::new(71);
    for _ in 0..4 {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(2));
    let (left, crashed, silent) = (sim.id(1), sim.id(2), sim.id(3));
    let now = sim.now;
    sim.nodes.get_mut(&1).unwrap().leave(now);
    sim.crash(2);
    sim.cut(3);
    sim.run_for(Duration::from_secs(30));
    assert_eq!(why(&sim, 0, left, Happened::Removed), [Reason::Left]);
    assert_eq!(why(&sim, 0, crashed, Happened::Removed), [Reason::Reset]);
    assert_eq!(why(&sim, 0, silent, Happened::Removed), [Reason::Timeout]);
    // Each explanation comes just before its removal.
    let events = &sim.events[&0];
    for (i, e) in events.iter().enumerate() {
        if let Event::NodeRemoved(n) = e {
            assert!(
                matches!(&events[i - 1], Event::Explained { node, what: Happened::Removed, .. } if node.id == n.id)
            );
        }
    }

    let (refusing, _, _) = refusal_over(72, Duration::from_secs(20), true);
    let refused = refusing.id(1);
    let reasons = why(&refusing, 0, refused, Happened::Refused);
    assert_eq!(reasons.first(), Some(&Reason::Filter));
    assert!(reasons
        .iter()
        .all(|r| matches!(r, Reason::Filter | Reason::RefusedBefore)));
    assert_eq!(
        reasons.len() as u64,
        refusing.nodes[&0].stats().nodes_rejected
    );
}

#[test]
fn a_member_that_breaks_a_rule_is_judged_again_when_it_reconnects() {
    use std::cell::Cell;
    use std::rc::Rc;

    use crate::core::message::Message;

    let mut sim = Sim::new(47);
    let a = sim.add_manual(manual(&[]));
    let b = sim.add_manual(manual(&[a]));
    sim.run_for(Duration::from_secs(3));
    let b_id = sim.id(b);
    let metadata = sim.nodes[&a].members()[0].metadata.clone();
    let asked = Rc::new(Cell::new(0));
    let refuse = Rc::new(Cell::new(false));
    let (count, no) = (asked.clone(), refuse.clone());
    sim.filters.insert(
        a,
        Box::new(move |c: &crate::core::node::Candidate| {
            count.set(count.get() + u32::from(c.id == b_id));
            !no.get()
        }),
    );
    let rule_broken = Message::Update {
        metadata: "not json".into(),
    };
    // Its connection is closed for it; the reconnection is judged like a newcomer's, and
    // admitted it carries on as the member it was: no event, the metadata it had.
    sim.inject(b, a, &rule_broken);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.nodes[&a].stats().messages_refused, 1);
    assert!(asked.get() >= 1, "the reconnection was judged");
    assert_eq!(sim.member_ids(a), vec![b_id]);
    assert_eq!(sim.nodes[&a].members()[0].metadata, metadata);
    assert_eq!(sim.count(a, b_id, removed), 0);
    assert_eq!(sim.count(a, b_id, added), 1);
    assert_eq!(sim.count(a, b_id, updated), 0);
    // Refused by the filter this time: it is a member no more.
    refuse.set(true);
    let before = asked.get();
    sim.inject(b, a, &rule_broken);
    sim.run_for(Duration::from_secs(10));
    assert!(asked.get() > before, "the reconnection was judged");
    assert!(sim.member_ids(a).is_empty());
    assert_eq!(sim.count(a, b_id, removed), 1);
    assert_eq!(sim.count(a, b_id, added), 1);
    assert!(sim.nodes[&a].index_agrees());
}
