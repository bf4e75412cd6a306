//! Identity in the simulation: ids come from key pairs drawn from each node's seeded rng,
//! and a dial meant for an id that reaches another key adds nothing.

use std::time::Duration;

use super::sim::{added, addr, removed, Sim};
use crate::core::config::Config;
use crate::core::message::Message;
use crate::core::node::NodeId;

fn manual(seeds: &[usize]) -> Config {
    let mut c = Config::lan("sim");
    c.discovery.seeds = seeds.iter().map(|&h| addr(h)).collect();
    c.discovery.probe_lost = true;
    c
}

#[test]
fn identity_keys_come_from_the_seed_and_ids_are_version_8() {
    let ids = |seed| {
        let mut sim = Sim::new(seed);
        for _ in 0..3 {
            sim.add(Config::lan("sim"));
        }
        (0..3).map(|h| sim.id(h)).collect::<Vec<NodeId>>()
    };
    assert_eq!(ids(5), ids(5), "the same seed, the same keys");
    assert_ne!(ids(5), ids(6));
    for id in ids(5) {
        assert_eq!(id.0[6] >> 4, 8, "{id}");
        assert_eq!(id.0[8] >> 6, 2, "{id}");
    }
}

#[test]
fn a_hinted_dial_that_reaches_another_key_fails_is_counted_and_adds_nothing() {
    let mut sim = Sim::new(77);
    sim.add_manual(manual(&[]));
    sim.add_manual(manual(&[0]));
    sim.add_manual(manual(&[0]));
    sim.run_for(Duration::from_secs(3));
    let (old, id0) = (sim.id(2), sim.id(0));
    assert_eq!(sim.member_ids(1).len(), 2);
    // Host 2 restarts with a new key and no seeds: nobody dials it for its new id. The
    // others' probes of the member they lost at its address expect the old id.
    sim.crash(2);
    sim.restart(2, manual(&[]));
    let new = sim.id(2);
    // And a member hints that an id nobody holds listens there.
    let hinted = NodeId([0xff; 16]);
    sim.inject(0, 1, &Message::Members(vec![(hinted, addr(2))]));
    sim.run_for(Duration::from_secs(10));
    for h in [0, 1] {
        let stats = sim.nodes[&h].stats().clone();
        assert!(stats.identity_mismatches >= 1, "host {h}: {stats:?}");
        assert_eq!(sim.count(h, old, removed), 1, "host {h}");
        assert_eq!(sim.count(h, new, added), 0, "host {h}");
        assert_eq!(sim.count(h, hinted, added), 0, "host {h}");
    }
    assert_eq!(sim.member_ids(1), vec![id0]);
    assert_eq!(sim.member_ids(2), Vec::<NodeId>::new());
}

#[test]
fn a_beacon_of_another_version_is_ignored_counted_and_told() {
    use crate::core::beacon::{self, Beacon};
    use crate::core::cluster::{Event, Output};
    let mut sim = Sim::new(78);
    sim.add(Config::lan("sim"));
    let mut v1 = beacon::encode(
        "sim",
        None,
        Beacon {
            id: NodeId([1; 16]),
            addr: addr(5),
            time_ms: 0,
            seq: 1,
        },
    );
    v1[4] = 1;
    let now = sim.now;
    let node = sim.nodes.get_mut(&0).unwrap();
    node.handle_beacon(now, addr(5), &v1);
    let stats = node.stats().clone();
    assert_eq!(
        (stats.version_mismatches, stats.beacons_ignored),
        (1, 1),
        "{stats:?}"
    );
    let told = std::iter::from_fn(|| node.poll_output()).any(|o| {
        o == Output::Event(Event::BeaconVersionMismatch {
            addr: addr(5),
            ours: 2,
            theirs: 1,
        })
    });
    assert!(told, "no BeaconVersionMismatch event");
    assert_eq!(sim.member_ids(0), Vec::<NodeId>::new());
}
