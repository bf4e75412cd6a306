//! Requests and replies over the simulated network: each ending, at most one reply across a
//! reconnection, and replies a hostile member forges dropped and counted.

use std::time::Duration;

use super::sim::Sim;
use crate::core::calls::Answer;
use crate::core::cluster::requests::Reply;
use crate::core::cluster::Event;
use crate::core::config::Config;
use crate::core::message::status;

const SECOND: Duration = Duration::from_secs(1);

fn formed(n: usize) -> Sim {
    let mut sim = Sim::new(7);
    for _ in 0..n {
        sim.add(Config::lan("sim"));
    }
    sim.run_for(Duration::from_secs(3));
    sim
}

fn requests(sim: &Sim, host: usize) -> Vec<(u64, String, Vec<u8>)> {
    sim.events[&host]
        .iter()
        .filter_map(|e| match e {
            Event::Request {
                id, name, payload, ..
            } => Some((*id, name.clone(), payload.clone())),
            _ => None,
        })
        .collect()
}

fn answers(sim: &Sim, host: usize) -> Vec<(u64, Answer)> {
    sim.events[&host]
        .iter()
        .filter_map(|e| match e {
            Event::Answer { id, answer, .. } => Some((*id, answer.clone())),
            _ => None,
        })
        .collect()
}

fn ask(sim: &mut Sim, from: usize, to: usize, name: &str, timeout: Duration) -> u64 {
    let (now, target) = (sim.now, sim.id(to));
    let node = sim.nodes.get_mut(&from).unwrap();
    node.request(now, name, false, b"[1]", target, timeout)
        .unwrap()
}

fn answer(sim: &mut Sim, host: usize, to: usize, id: u64, reply: Reply<'_>) {
    let (now, to) = (sim.now, sim.id(to));
    sim.nodes.get_mut(&host).unwrap().reply(now, to, id, reply);
}

fn serve(sim: &mut Sim, host: usize, name: &str) {
    let now = sim.now;
    sim.nodes.get_mut(&host).unwrap().serve(now, name).unwrap();
    sim.run_for(Duration::from_millis(5));
}

#[test]
fn served_names_are_announced_and_every_ending_reaches_the_asker_once() {
    let mut sim = formed(3);
    serve(&mut sim, 1, "work");
    assert_eq!(sim.nodes[&0].servers("work"), vec![sim.id(1)]);
    assert_eq!(sim.nodes[&2].servers("work"), vec![sim.id(1)]);

    // A value.
    let id = ask(&mut sim, 0, 1, "work", SECOND);
    sim.run_for(Duration::from_millis(5));
    let got = requests(&sim, 1);
    assert_eq!(got.len(), 1);
    let (rid, name, payload) = got[0].clone();
    assert_eq!((name.as_str(), payload.as_slice()), ("work", &b"[1]"[..]));
    answer(
        &mut sim,
        1,
        0,
        rid,
        Reply::Value {
            binary: false,
            payload: b"42",
        },
    );
    // Answered once only: a second answer from the handler's side sends nothing.
    answer(
        &mut sim,
        1,
        0,
        rid,
        Reply::Value {
            binary: false,
            payload: b"43",
        },
    );
    sim.run_for(Duration::from_millis(5));
    let value = Answer::Value {
        binary: false,
        payload: b"42".to_vec(),
    };
    assert_eq!(answers(&sim, 0), vec![(id, value)]);

    // A remote error, cut to its bounds; a name not served; a timeout.
    let id2 = ask(&mut sim, 0, 1, "work", SECOND);
    let id3 = ask(&mut sim, 0, 2, "work", SECOND);
    let id4 = ask(&mut sim, 0, 1, "work", SECOND);
    sim.run_for(Duration::from_millis(5));
    let rid2 = requests(&sim, 1)[1].0;
    let long = "é".repeat(2000);
    answer(
        &mut sim,
        1,
        0,
        rid2,
        Reply::Remote {
            code: "E_BAD",
            message: &long,
        },
    );
    sim.run_for(Duration::from_millis(5));
    sim.run_for(SECOND);
    let got = answers(&sim, 0);
    assert_eq!(got.len(), 4, "{got:?}");
    match &got[1..] {
        [(a, Answer::NoHandler), (b, Answer::Remote { code, message }), (c, Answer::Timeout)] => {
            assert_eq!((*a, *b, *c), (id3, id2, id4));
            assert_eq!(code, "E_BAD");
            assert_eq!(message.len(), 1024);
        }
        other => panic!("{other:?}"),
    }
    // The handler answers after the timeout: dropped, counted as late.
    let rid4 = requests(&sim, 1)[2].0;
    answer(
        &mut sim,
        1,
        0,
        rid4,
        Reply::Value {
            binary: false,
            payload: b"1",
        },
    );
    sim.run_for(Duration::from_millis(5));
    assert_eq!(answers(&sim, 0).len(), 4);
    assert_eq!(sim.nodes[&0].stats().replies_late, 1);
}

#[test]
fn a_reconnection_mid_request_neither_loses_nor_repeats_it_or_its_reply() {
    let mut sim = formed(2);
    serve(&mut sim, 1, "work");
    let id = ask(&mut sim, 0, 1, "work", 10 * SECOND);
    // Broken before the request arrives, and again before the reply does.
    sim.reset_link(0, 1);
    sim.run_for(SECOND);
    assert_eq!(requests(&sim, 1).len(), 1, "delivered once");
    let rid = requests(&sim, 1)[0].0;
    answer(
        &mut sim,
        1,
        0,
        rid,
        Reply::Value {
            binary: true,
            payload: &[7],
        },
    );
    sim.reset_link(0, 1);
    sim.run_for(SECOND);
    assert_eq!(requests(&sim, 1).len(), 1, "the handler ran once");
    let value = Answer::Value {
        binary: true,
        payload: vec![7],
    };
    assert_eq!(answers(&sim, 0), vec![(id, value)]);
    assert!(sim.member_ids(0).contains(&sim.id(1)), "the pair mended");
}

#[test]
fn a_targets_removal_fails_its_requests_at_once() {
    let mut sim = formed(3);
    serve(&mut sim, 1, "work");
    let id = ask(&mut sim, 0, 1, "work", 60 * SECOND);
    sim.run_for(Duration::from_millis(5));
    sim.crash(1);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(answers(&sim, 0), vec![(id, Answer::TargetLeft)]);
    assert!(sim.nodes[&0].servers("work").is_empty());
}

#[test]
fn forged_replies_are_dropped_and_counted_before_the_application() {
    let mut sim = formed(3);
    serve(&mut sim, 1, "work");
    let id = ask(&mut sim, 0, 1, "work", 10 * SECOND);
    sim.run_for(Duration::from_millis(5));
    let (now, asker) = (sim.now, sim.id(0));
    // Host 2 answers a request sent to host 1, and one never sent.
    let hostile = sim.nodes.get_mut(&2).unwrap();
    hostile.inject_reply(now, asker, id, status::VALUE_JSON, b"666");
    hostile.inject_reply(now, asker, id + 100, status::VALUE_JSON, b"666");
    // Malformed: a value that is not JSON, a no-handler with a payload.
    hostile.inject_reply(now, asker, id, status::VALUE_JSON, b"{");
    hostile.inject_reply(now, asker, id, status::NO_HANDLER, b"x");
    sim.run_for(Duration::from_millis(5));
    assert!(answers(&sim, 0).is_empty());
    let stats = sim.nodes[&0].stats().clone();
    assert_eq!((stats.replies_refused, stats.messages_refused), (2, 2));
    // The target answers twice (a forged second reply of its own): one is taken.
    let target = sim.nodes.get_mut(&1).unwrap();
    target.inject_reply(now, asker, id, status::VALUE_JSON, b"1");
    target.inject_reply(now, asker, id, status::VALUE_JSON, b"2");
    sim.run_for(Duration::from_millis(5));
    let value = Answer::Value {
        binary: false,
        payload: b"1".to_vec(),
    };
    assert_eq!(answers(&sim, 0), vec![(id, value)]);
    assert_eq!(sim.nodes[&0].stats().replies_late, 1);
    // Host 2 again, now that the request has ended: still not its target, so refused.
    let now = sim.now;
    let hostile = sim.nodes.get_mut(&2).unwrap();
    hostile.inject_reply(now, asker, id, status::VALUE_JSON, b"667");
    sim.run_for(Duration::from_millis(5));
    let stats = sim.nodes[&0].stats().clone();
    assert_eq!((stats.replies_refused, stats.replies_late), (3, 1));
    assert_eq!(answers(&sim, 0).len(), 1);
    assert_eq!(
        sim.member_ids(0).len(),
        2,
        "both kept: the streams are sound"
    );
}

#[test]
fn a_reply_to_an_ended_request_is_late_from_its_target_and_refused_from_any_other() {
    let mut sim = formed(3);
    serve(&mut sim, 1, "work");
    let answered = ask(&mut sim, 0, 1, "work", 10 * SECOND);
    let aborted = ask(&mut sim, 0, 1, "work", 10 * SECOND);
    let timed_out = ask(&mut sim, 0, 1, "work", SECOND);
    sim.run_for(Duration::from_millis(5));
    answer(&mut sim, 1, 0, answered, Reply::NoHandler);
    assert!(sim.nodes.get_mut(&0).unwrap().cancel_request(aborted));
    sim.run_for(SECOND);
    assert_eq!(
        answers(&sim, 0),
        vec![(answered, Answer::NoHandler), (timed_out, Answer::Timeout)]
    );
    let (now, asker) = (sim.now, sim.id(0));
    for id in [answered, aborted, timed_out] {
        let hostile = sim.nodes.get_mut(&2).unwrap();
        hostile.inject_reply(now, asker, id, status::VALUE_JSON, b"666");
        let target = sim.nodes.get_mut(&1).unwrap();
        target.inject_reply(now, asker, id, status::VALUE_JSON, b"1");
    }
    sim.run_for(Duration::from_millis(5));
    let stats = sim.nodes[&0].stats().clone();
    assert_eq!((stats.replies_refused, stats.replies_late), (3, 3));
    assert_eq!(
        answers(&sim, 0).len(),
        2,
        "nothing more reached the application"
    );
}
