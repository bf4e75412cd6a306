//! Seeds given while running (the driver's answers for `network.peers` names): a new
//! address is dialed at once, not at the next probe round.

use std::time::Duration;

use super::sim::{addr, Sim};
use crate::core::config::Config;
use crate::core::output::Output;

fn slow_probes() -> Config {
    let mut c = Config::lan("seeds");
    // Far longer than the test runs: only a dial made when the seed is given can join.
    c.discovery.probe_interval = Duration::from_secs(3600);
    c
}

#[test]
fn a_seed_given_while_running_is_dialed_at_once() {
    let mut sim = Sim::new(1);
    let a = sim.add_manual(slow_probes());
    let b = sim.add_manual(slow_probes());
    sim.run_for(Duration::from_secs(2));
    assert!(sim.member_ids(b).is_empty(), "no seed, no multicast: alone");
    let now = sim.now;
    sim.nodes.get_mut(&b).unwrap().set_seeds(now, vec![addr(a)]);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.member_ids(b), vec![sim.id(a)]);
    assert_eq!(sim.member_ids(a), vec![sim.id(b)]);
}

#[test]
fn seeds_given_again_unchanged_dial_nobody_new() {
    let mut sim = Sim::new(2);
    let a = sim.add_manual(slow_probes());
    let b = sim.add_manual(slow_probes());
    let now = sim.now;
    // An address nobody listens at: the dial to it fails, and is not made again when the
    // same seeds come again (the period is an hour).
    let nobody = addr(9);
    sim.nodes.get_mut(&b).unwrap().set_seeds(now, vec![nobody]);
    sim.run_for(Duration::from_secs(5));
    let now = sim.now;
    let node = sim.nodes.get_mut(&b).unwrap();
    node.set_seeds(now, vec![nobody]);
    let mut dials = 0;
    while let Some(out) = node.poll_output() {
        dials += usize::from(matches!(out, Output::Dial { .. }));
    }
    assert_eq!(dials, 0, "the same seeds again: nothing new to dial");
    assert!(node.poll_timeout().is_none_or(|t| t > now));
    assert!(sim.member_ids(b).is_empty());
    // Then a new address among the old: dialed.
    let now = sim.now;
    sim.nodes
        .get_mut(&b)
        .unwrap()
        .set_seeds(now, vec![nobody, addr(a)]);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(sim.member_ids(b), vec![sim.id(a)]);
}
