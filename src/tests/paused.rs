//! A node that stops reading its connections because its application is behind (the
//! driver's receive bound): its members' silence is not theirs, so nobody is removed for it,
//! and nothing that arrived meanwhile is lost.

use std::time::Duration;

use super::sim::{removed, Sim};
use crate::core::cluster::Event;
use crate::core::config::Config;

fn formed(n: usize) -> Sim {
    let mut sim = Sim::new(41);
    for _ in 0..n {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(3));
    sim
}

/// Twice the detector's bound: long enough that an unexcused silence is fatal.
fn long_pause() -> Duration {
    Config::lan("sim").detector.dead_after() * 2
}

fn nobody_removed(sim: &Sim, what: &str) {
    for (&h, events) in &sim.events {
        let gone: Vec<_> = events.iter().filter_map(removed).collect();
        assert!(gone.is_empty(), "{what}: host {h} removed {gone:?}");
    }
}

#[test]
fn a_node_that_stops_reading_keeps_its_members_and_they_keep_it() {
    let mut sim = formed(3);
    let now = sim.now;
    sim.nodes
        .get_mut(&0)
        .unwrap()
        .subscribe(now, "job")
        .unwrap();
    sim.run_for(Duration::from_millis(100));
    sim.stop_reading(0, true);
    // Host 1 keeps sending to host 0, whose bytes wait unread.
    let to = sim.id(0);
    for i in 0..50u32 {
        let now = sim.now;
        sim.nodes
            .get_mut(&1)
            .unwrap()
            .send_event(now, "job", true, &i.to_be_bytes(), Some(&[to]))
            .unwrap();
        sim.run_for(long_pause() / 50);
    }
    nobody_removed(&sim, "while host 0 does not read");
    assert_eq!(sim.member_ids(0).len(), 2);
    sim.resume_reading(0);
    sim.run_for(Duration::from_millis(100));
    let got: Vec<u32> = sim.events[&0]
        .iter()
        .filter_map(|e| match e {
            Event::Delivery { payload, .. } => {
                Some(u32::from_be_bytes(payload[..].try_into().unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        (0..50).collect::<Vec<_>>(),
        "every message, once, in order"
    );
    // Reading again, each member has the detector's whole bound from the resume: the
    // heartbeats now flowing keep everyone.
    sim.run_for(long_pause());
    nobody_removed(&sim, "after reading resumed");
    for h in 0..3 {
        assert_eq!(sim.member_ids(h).len(), 2, "host {h}");
    }
}

/// The same pause without telling the core: the UDP probes, which the driver reads
/// whatever the application does, keep everyone.
#[test]
fn an_unexcused_pause_is_covered_by_the_probes() {
    let mut sim = formed(3);
    sim.stop_reading(0, false);
    sim.run_for(long_pause());
    nobody_removed(&sim, "probes flow while connections are unread");
}

/// The same pause, unexcused, with the probes lost too (UDP dropped on the way): the
/// silence is fatal. (What the tests above would see, were the pause not excused and
/// no probe heard.)
#[test]
fn an_unexcused_pause_without_probes_removes_the_members() {
    let mut sim = formed(3);
    sim.lose_probes(0);
    sim.stop_reading(0, false);
    sim.run_for(long_pause());
    let (one, two) = (sim.id(1), sim.id(2));
    assert_eq!(sim.count(0, one, removed), 1);
    assert_eq!(sim.count(0, two, removed), 1);
}

#[test]
fn a_member_that_crashes_during_a_pause_is_removed_once_reading_resumes() {
    let mut sim = formed(3);
    sim.stop_reading(0, true);
    let gone = sim.id(2);
    sim.crash(2);
    sim.run_for(long_pause());
    assert_eq!(
        sim.count(0, gone, removed),
        0,
        "its end of stream is unread"
    );
    assert_eq!(sim.count(1, gone, removed), 1, "the others notice at once");
    sim.resume_reading(0);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.count(0, gone, removed), 1);
    assert_eq!(sim.member_ids(0), vec![sim.id(1)]);
}
