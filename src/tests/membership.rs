//! Membership over the in-memory network: formation, one connection per pair, leaving,
//! and cluster names and keys keeping nodes apart.

use std::time::Duration;

use super::sim::{accepted, added, removed, Sim};
use crate::core::config::Config;
use crate::core::crypto::ClusterKey;

fn full_mesh(sim: &Sim) {
    let hosts: Vec<_> = sim.nodes.keys().copied().collect();
    for &h in &hosts {
        let mut expected: Vec<_> = hosts
            .iter()
            .filter(|&&o| o != h)
            .map(|&o| sim.id(o))
            .collect();
        expected.sort();
        assert_eq!(sim.member_ids(h), expected, "members of host {h}");
        for &o in &hosts {
            if o != h {
                assert_eq!(sim.count(h, sim.id(o), added), 1, "{h} added {o}");
                assert_eq!(sim.count(h, sim.id(o), accepted), 1, "{h} accepted by {o}");
            }
        }
    }
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
        assert_eq!(
            sim.open_links(),
            6 * 5,
            "seed {seed}: one connection per pair"
        );
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
                port: me.port,
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
        assert_eq!(
            sim.nodes[&small].stats().handshakes_completed,
            2,
            "both dials completed"
        );
    }
}
