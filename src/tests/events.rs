//! Custom events over the simulated network: delivery only to joined nodes, order per
//! pair, target checks and size bounds.

use std::time::Duration;

use super::sim::Sim;
use crate::core::cluster::Event;
use crate::core::config::Config;
use crate::core::error::SendError;

fn messages(sim: &Sim, host: usize, name: &str) -> Vec<Vec<u8>> {
    sim.events[&host]
        .iter()
        .filter_map(|e| match e {
            Event::Delivery {
                name: n, payload, ..
            } if n == name => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

fn formed(n: usize) -> Sim {
    let mut sim = Sim::new(99);
    for _ in 0..n {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(3));
    sim
}

#[test]
fn events_reach_only_nodes_that_joined_them_in_order() {
    let mut sim = formed(3);
    let now = sim.now;
    sim.nodes
        .get_mut(&1)
        .unwrap()
        .subscribe(now, "job")
        .unwrap();
    sim.run_for(Duration::from_millis(1));
    for i in 0..1000u32 {
        let now = sim.now;
        let used = sim
            .nodes
            .get_mut(&0)
            .unwrap()
            .send_event(now, "job", true, &i.to_be_bytes(), None)
            .unwrap();
        assert_eq!(used.len(), 1, "only host 1 joined");
    }
    sim.run_for(Duration::from_millis(1));
    let got = messages(&sim, 1, "job");
    let expected: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    assert_eq!(got, expected);
    assert!(messages(&sim, 2, "job").is_empty());
    // The sender is named.
    let from = sim.events[&1].iter().find_map(|e| match e {
        Event::Delivery { from, .. } => Some(*from),
        _ => None,
    });
    assert_eq!(from, Some(sim.id(0)));
}

#[test]
fn leaving_stops_delivery() {
    let mut sim = formed(2);
    let now = sim.now;
    sim.nodes
        .get_mut(&1)
        .unwrap()
        .subscribe(now, "tick")
        .unwrap();
    sim.run_for(Duration::from_millis(1));
    let now = sim.now;
    sim.nodes
        .get_mut(&0)
        .unwrap()
        .send_event(now, "tick", false, b"1", None)
        .unwrap();
    sim.run_for(Duration::from_millis(1));
    let now = sim.now;
    sim.nodes.get_mut(&1).unwrap().unsubscribe(now, "tick");
    sim.run_for(Duration::from_millis(1));
    let now = sim.now;
    let used = sim
        .nodes
        .get_mut(&0)
        .unwrap()
        .send_event(now, "tick", false, b"2", None)
        .unwrap();
    assert!(used.is_empty(), "the sender knows host 1 left the event");
    sim.run_for(Duration::from_millis(1));
    assert_eq!(messages(&sim, 1, "tick"), vec![b"1".to_vec()]);
}

#[test]
fn a_member_joining_later_learns_existing_subscriptions() {
    let mut sim = formed(2);
    let now = sim.now;
    sim.nodes
        .get_mut(&0)
        .unwrap()
        .subscribe(now, "news")
        .unwrap();
    let late = sim.add(Config::lan("sim"));
    sim.run_for(Duration::from_secs(2));
    let now = sim.now;
    let used = sim
        .nodes
        .get_mut(&late)
        .unwrap()
        .send_event(now, "news", false, b"\"hi\"", None)
        .unwrap();
    assert_eq!(used.len(), 1);
    sim.run_for(Duration::from_millis(1));
    assert_eq!(messages(&sim, 0, "news"), vec![b"\"hi\"".to_vec()]);
}

#[test]
fn unknown_targets_and_oversized_payloads_are_refused_and_nothing_is_sent() {
    let mut sim = formed(2);
    let now = sim.now;
    sim.nodes.get_mut(&1).unwrap().subscribe(now, "x").unwrap();
    sim.run_for(Duration::from_millis(1));
    let stranger = crate::core::node::NodeId([9; 16]);
    let member = sim.id(1);
    let now = sim.now;
    let node = sim.nodes.get_mut(&0).unwrap();
    assert_eq!(
        node.send_event(now, "x", false, b"1", Some(&[member, stranger])),
        Err(SendError::UnknownTarget(stranger.to_string()))
    );
    let max = Config::lan("sim").max_message;
    let big = vec![0u8; max + 1];
    assert_eq!(
        node.send_event(now, "x", true, &big, None),
        Err(SendError::TooLarge { len: max + 1, max })
    );
    assert_eq!(
        node.send_event(now, "", true, b"", None),
        Err(SendError::InvalidName)
    );
    sim.run_for(Duration::from_millis(1));
    assert!(messages(&sim, 1, "x").is_empty());
    // A payload of exactly the bound goes through, whole.
    let exact = vec![7u8; max];
    let now = sim.now;
    let node = sim.nodes.get_mut(&0).unwrap();
    node.send_event(now, "x", true, &exact, Some(&[member]))
        .unwrap();
    sim.run_for(Duration::from_millis(1));
    assert_eq!(messages(&sim, 1, "x"), vec![exact]);
}

#[test]
fn a_payload_over_a_targets_smaller_limit_is_refused_before_sending() {
    let mut sim = Sim::new(7);
    sim.add(Config::lan("sim"));
    let mut small = Config::lan("sim");
    small.set_max_message(1024);
    sim.add(small);
    sim.run_for(Duration::from_secs(3));
    let now = sim.now;
    sim.nodes.get_mut(&1).unwrap().subscribe(now, "x").unwrap();
    sim.run_for(Duration::from_millis(1));
    let now = sim.now;
    let node = sim.nodes.get_mut(&0).unwrap();
    assert_eq!(
        node.send_event(now, "x", true, &[0; 1025], None),
        Err(SendError::TooLarge {
            len: 1025,
            max: 1024
        })
    );
    node.send_event(now, "x", true, &[0; 1024], None).unwrap();
    sim.run_for(Duration::from_millis(1));
    assert_eq!(messages(&sim, 1, "x").len(), 1);
    assert_eq!(sim.member_ids(0).len(), 1, "the connection survived");
}
