//! Master election under the deterministic simulation: scripted scenarios, then thousands
//! of seeded random runs (2000 by default) of joins, crashes, restarts, resets, partitions, heals and
//! promotions, checking after each quiet period that every side of the network has exactly
//! one master, alive and eligible, agreed by all its nodes.
//!
//! A failure prints its seed; `ESPIAL_SIM_SEED=<seed>` replays just that run, and
//! `ESPIAL_SIM_RUNS=<n>` changes how many seeds run.

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::sim::{demoted, over_seeds, promoted, Host, Sim};
use crate::core::cluster::Event;
use crate::core::config::Config;
use crate::core::election::{Claim, ElectionMsg};
use crate::core::error::ConnectionError;
use crate::core::message::Message;

fn config(eligible: bool, quorum: usize) -> Config {
    let mut c = Config::lan("sim");
    c.election.eligible = eligible;
    c.election.quorum = quorum;
    c
}

/// Checks every side of the partition: one master, alive, eligible, agreed; or, when the
/// side cannot have one (no eligible node, or below quorum), nobody claims mastership.
fn check(sim: &Sim, eligible: &BTreeMap<Host, bool>, quorum: usize) -> Result<(), String> {
    let mut sides: BTreeMap<u64, Vec<Host>> = BTreeMap::new();
    for &h in sim.nodes.keys() {
        sides.entry(sim.side_of(h)).or_default().push(h);
    }
    for (side, hosts) in sides {
        let eligible_here = hosts.iter().filter(|h| eligible[h]).count();
        let can_have_master = eligible_here > 0 && eligible_here >= quorum.max(1);
        let masters: Vec<Host> = hosts
            .iter()
            .copied()
            .filter(|&h| sim.nodes[&h].master() == Some(sim.id(h)))
            .collect();
        let views: Vec<_> = hosts.iter().map(|h| sim.nodes[h].master()).collect();
        if !can_have_master {
            if !masters.is_empty() || views.iter().any(|v| v.is_some()) {
                return Err(format!(
                    "side {side} {hosts:?} may not have a master: {views:?}"
                ));
            }
            continue;
        }
        if masters.len() != 1 {
            return Err(format!(
                "side {side} {hosts:?} has masters {masters:?}: {views:?}"
            ));
        }
        let master = masters[0];
        if !eligible[&master] {
            return Err(format!("master {master} is not eligible"));
        }
        if views.iter().any(|v| *v != Some(sim.id(master))) {
            return Err(format!("side {side} {hosts:?} disagrees: {views:?}"));
        }
    }
    // Promotion and demotion alternate on every node: never promoted twice for one change.
    for (h, events) in &sim.events {
        let mut master = false;
        for e in events {
            if promoted(e) {
                if master {
                    return Err(format!("host {h} promoted twice in a row"));
                }
                master = true;
            } else if demoted(e) {
                if !master {
                    return Err(format!("host {h} demoted while not master"));
                }
                master = false;
            }
        }
    }
    Ok(())
}

const QUIET: Duration = Duration::from_secs(30);

/// One random run; returns a description of the first violated property.
fn random_run(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sim = Sim::new(seed);
    let n = 3 + (rng.next_u32() % 5) as usize;
    let quorum = if rng.next_u32() % 3 == 0 {
        n / 2 + 1
    } else {
        0
    };
    let mut eligible = BTreeMap::new();
    let mut crashed: Vec<Host> = Vec::new();
    for i in 0..n {
        // At least one eligible node; a few are not.
        let e = i == 0 || rng.next_u32() % 5 != 0;
        let h = sim.add(config(e, quorum));
        eligible.insert(h, e);
        sim.run_for(Duration::from_millis(u64::from(rng.next_u32() % 400)));
    }
    sim.run_for(QUIET);
    check(&sim, &eligible, quorum).map_err(|e| format!("after forming: {e}"))?;
    for step in 0..8 {
        let live: Vec<Host> = sim.nodes.keys().copied().collect();
        let pick =
            |rng: &mut ChaCha8Rng, from: &[Host]| from[(rng.next_u32() as usize) % from.len()];
        let op = rng.next_u32() % 7;
        let what = match op {
            0 if live.len() > 1 => {
                // Crash the master if there is one, else anyone.
                let m = live
                    .iter()
                    .copied()
                    .find(|&h| sim.nodes[&h].master() == Some(sim.id(h)))
                    .unwrap_or_else(|| pick(&mut rng, &live));
                sim.crash(m);
                crashed.push(m);
                format!("crash {m}")
            }
            1 if !crashed.is_empty() => {
                let h = crashed.remove(0);
                sim.restart(h, config(eligible[&h], quorum));
                format!("restart {h}")
            }
            2 if live.len() > 1 => {
                let mut group: Vec<Host> = live
                    .iter()
                    .copied()
                    .filter(|_| rng.next_u32() % 2 == 0)
                    .collect();
                if group.is_empty() {
                    group.push(live[0]);
                }
                sim.partition(&group);
                sim.run_for(QUIET + Duration::from_secs(u64::from(rng.next_u32() % 30)));
                check(&sim, &eligible, quorum)
                    .map_err(|e| format!("step {step} during partition {group:?}: {e}"))?;
                sim.heal_all();
                format!("partition {group:?} and heal")
            }
            3 => {
                let candidates: Vec<Host> = live.iter().copied().filter(|h| eligible[h]).collect();
                if candidates.is_empty() {
                    continue;
                }
                let h = pick(&mut rng, &candidates);
                let now = sim.now;
                let _ = sim.nodes.get_mut(&h).unwrap().promote(now);
                format!("promote {h}")
            }
            4 if live.len() > 1 => {
                let a = pick(&mut rng, &live);
                let b = pick(&mut rng, &live);
                sim.reset_link(a, b);
                format!("reset {a}-{b}")
            }
            5 => {
                let e = rng.next_u32() % 4 != 0;
                let h = sim.add(config(e, quorum));
                eligible.insert(h, e);
                format!("add {h}")
            }
            6 if live.len() > 1 => {
                let h = pick(&mut rng, &live);
                let now = sim.now;
                sim.nodes.get_mut(&h).unwrap().leave(now);
                sim.run_for(Duration::from_millis(10));
                sim.crash(h);
                format!("leave {h}")
            }
            _ => continue,
        };
        if std::env::var_os("ESPIAL_SIM_TRACE").is_some() {
            eprintln!(
                "step {step}: {what}; ids {:?}",
                sim.nodes
                    .keys()
                    .map(|&h| (h, sim.id(h)))
                    .collect::<Vec<_>>()
            );
        }
        sim.run_for(QUIET);
        check(&sim, &eligible, quorum).map_err(|e| format!("step {step} after {what}: {e}"))?;
    }
    Ok(())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn random_runs_always_settle_on_one_agreed_master() {
    over_seeds(env_u64("ESPIAL_SIM_RUNS").unwrap_or(2000), random_run);
}

#[test]
fn nodes_started_together_elect_one_master_once_they_have_heard_each_other() {
    let mut sim = Sim::new(1);
    let hosts: Vec<Host> = (0..5).map(|_| sim.add(config(true, 0))).collect();
    // Not before a quarter of the election timeout: the start burst may bring in more.
    sim.run_for(Duration::from_millis(240));
    assert!(hosts.iter().all(|h| sim.nodes[h].master().is_none()));
    sim.run_for(Duration::from_millis(20));
    let smallest = hosts.iter().map(|&h| sim.id(h)).min();
    for h in &hosts {
        assert_eq!(sim.nodes[h].master(), smallest);
    }
}

#[test]
fn a_joining_node_adopts_the_master_and_failover_is_immediate() {
    let mut sim = Sim::new(2);
    for _ in 0..3 {
        sim.add(config(true, 0));
    }
    sim.run_for(Duration::from_secs(3));
    let master = sim.nodes[&0].master().unwrap();
    // A newcomer, whatever its id, adopts the master.
    let late = sim.add(config(true, 0));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.nodes[&late].master(), Some(master));
    for h in 0..3 {
        let changes = sim.events[&h]
            .iter()
            .filter(|e| matches!(e, crate::core::cluster::Event::NewMaster(_)))
            .count();
        assert_eq!(changes, 1, "host {h}: the join moved nothing");
    }
    // The master crashes: the others agree on a new one within milliseconds.
    let m = (0..=late).find(|&h| sim.id(h) == master).unwrap();
    sim.crash(m);
    sim.run_for(Duration::from_millis(5));
    let views: Vec<_> = sim.nodes.values().map(|n| n.master()).collect();
    assert!(
        views.iter().all(|v| v.is_some() && *v == views[0]),
        "{views:?}"
    );
    assert_ne!(views[0], Some(master));
}

#[test]
fn promote_moves_mastership_everywhere() {
    let mut sim = Sim::new(3);
    for _ in 0..4 {
        sim.add(config(true, 0));
    }
    sim.run_for(Duration::from_secs(3));
    let old = sim.nodes[&0].master().unwrap();
    let h = (0..4).find(|&h| sim.id(h) != old).unwrap();
    let now = sim.now;
    sim.nodes.get_mut(&h).unwrap().promote(now).unwrap();
    sim.run_for(Duration::from_millis(5));
    for n in sim.nodes.values() {
        assert_eq!(n.master(), Some(sim.id(h)));
    }
    let old_host = (0..4).find(|&x| sim.id(x) == old).unwrap();
    assert!(sim.events[&old_host].iter().any(demoted));
    assert!(sim.events[&h].iter().any(promoted));
}

#[test]
fn a_lone_node_waits_the_whole_timeout() {
    let mut sim = Sim::new(8);
    let h = sim.add(config(true, 0));
    sim.run_for(Duration::from_millis(990));
    assert_eq!(sim.nodes[&h].master(), None);
    sim.run_for(Duration::from_millis(20));
    assert_eq!(sim.nodes[&h].master(), Some(sim.id(h)));
}

#[test]
fn without_an_eligible_node_nobody_is_master() {
    let mut sim = Sim::new(4);
    let e = sim.add(config(true, 0));
    sim.add(config(false, 0));
    sim.add(config(false, 0));
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.nodes[&1].master(), Some(sim.id(e)));
    sim.crash(e);
    sim.run_for(Duration::from_secs(30));
    assert!(sim.nodes.values().all(|n| n.master().is_none()));
}

#[test]
fn after_a_heal_one_master_remains_and_the_other_is_demoted() {
    let mut sim = Sim::new(5);
    for _ in 0..4 {
        sim.add(config(true, 0));
    }
    sim.run_for(Duration::from_secs(3));
    let master = sim.nodes[&0].master().unwrap();
    let m = (0..4).find(|&h| sim.id(h) == master).unwrap();
    let others: Vec<Host> = (0..4).filter(|&h| h != m).collect();
    sim.partition(&others[..2]);
    sim.run_for(Duration::from_secs(30));
    let side_master = sim.nodes[&others[0]].master().unwrap();
    assert_ne!(
        side_master, master,
        "the cut-off side elected its own master"
    );
    sim.heal_all();
    sim.run_for(Duration::from_secs(30));
    let views: Vec<_> = sim.nodes.values().map(|n| n.master()).collect();
    assert!(views.iter().all(|v| *v == views[0]), "{views:?}");
    let loser = if views[0] == Some(master) {
        (0..4)
            .find(|&h| Some(sim.id(h)) == Some(side_master))
            .unwrap()
    } else {
        m
    };
    assert!(sim.events[&loser].iter().any(demoted));
}

#[test]
fn with_a_quorum_the_minority_side_has_no_master() {
    let mut sim = Sim::new(6);
    for _ in 0..5 {
        sim.add(config(true, 3));
    }
    sim.run_for(Duration::from_secs(3));
    let master = sim.nodes[&0].master().unwrap();
    let m = (0..5).find(|&h| sim.id(h) == master).unwrap();
    let mut minority = vec![m];
    minority.push((0..5).find(|&h| h != m).unwrap());
    sim.partition(&minority);
    sim.run_for(Duration::from_secs(30));
    for &h in &minority {
        assert_eq!(sim.nodes[&h].master(), None, "host {h} in the minority");
    }
    let majority: Vec<Host> = (0..5).filter(|h| !minority.contains(h)).collect();
    let new = sim.nodes[&majority[0]].master();
    assert!(new.is_some());
    assert!(majority.iter().all(|h| sim.nodes[h].master() == new));
}

/// Three honest eligible nodes and a hostile member, formed: the honest hosts, the
/// attacker, and the agreed master (never the attacker).
fn with_attacker(seed: u64, attacker_eligible: bool) -> (Sim, Vec<Host>, Host, Claim) {
    let mut sim = Sim::new(seed);
    let mut hosts: Vec<Host> = (0..4).map(|_| sim.add(config(true, 0))).collect();
    sim.run_for(Duration::from_secs(3));
    let master = sim.nodes[&0].master().unwrap();
    // The attacker is a node that is not master, eligible or not as asked.
    let attacker = *hosts.iter().rev().find(|&&h| sim.id(h) != master).unwrap();
    hosts.retain(|&h| h != attacker);
    if !attacker_eligible {
        sim.crash(attacker);
        sim.restart(attacker, config(false, 0));
        sim.run_for(Duration::from_secs(3));
    }
    let claim = sim.nodes[&hosts[0]].claim().unwrap();
    assert_eq!(claim.master, master);
    for h in &hosts {
        assert_eq!(sim.nodes[h].claim(), Some(claim), "host {h}");
    }
    (sim, hosts, attacker, claim)
}

/// How many events each host has emitted so far.
fn marks(sim: &Sim) -> BTreeMap<Host, usize> {
    sim.events.iter().map(|(&h, e)| (h, e.len())).collect()
}

/// The honest hosts still follow `claim`'s master, and emitted no master event since
/// `before`.
fn assert_master_unmoved(sim: &Sim, honest: &[Host], claim: Claim, before: &BTreeMap<Host, usize>) {
    for h in honest {
        assert_eq!(sim.nodes[h].master(), Some(claim.master), "host {h}");
        let since = &sim.events[h][before[h]..];
        assert!(
            !since.iter().any(|e| matches!(
                e,
                Event::NewMaster(_) | Event::Promotion { .. } | Event::Demotion { .. }
            )),
            "host {h} emitted {since:?}"
        );
    }
}

/// Each victim counted at least `times` refused messages, closed the connection they came
/// on as a protocol violation, and told the application so.
fn assert_refused(sim: &Sim, victims: &[Host], times: u64, before: &BTreeMap<Host, usize>) {
    for h in victims {
        assert!(
            sim.nodes[h].stats().messages_refused >= times,
            "host {h}: {:?}",
            sim.nodes[h].stats()
        );
        let closed = sim.events[h][before[h]..]
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::ConnectionFailed {
                        error: ConnectionError::Protocol(_),
                        ..
                    }
                )
            })
            .count();
        assert!(
            closed as u64 >= times,
            "host {h} closed {closed} connections"
        );
    }
}

/// The attacker sends `msg` to every honest host.
fn inject_all(sim: &mut Sim, attacker: Host, honest: &[Host], msg: &Message) {
    for &h in honest {
        sim.inject(attacker, h, msg);
    }
}

/// The attacker tells every honest host that `master` is master for `term`, and the
/// simulation runs on for a while.
fn forge_claim(sim: &mut Sim, attacker: Host, honest: &[Host], master: Host, term: u64) {
    let forged = Claim {
        master: sim.id(master),
        term,
    };
    let msg = Message::Election(ElectionMsg::State(Some(forged)));
    inject_all(sim, attacker, honest, &msg);
    sim.run_for(Duration::from_secs(10));
}

#[test]
fn a_forged_claim_by_an_ineligible_member_is_refused() {
    let (mut sim, honest, attacker, claim) = with_attacker(11, false);
    let before = marks(&sim);
    forge_claim(&mut sim, attacker, &honest, attacker, claim.term + 1);
    assert_master_unmoved(&sim, &honest, claim, &before);
    assert_refused(&sim, &honest, 1, &before);
}

#[test]
fn a_claim_relayed_for_another_member_moves_nobody() {
    // The measured attack: a claim naming another member at a high term.
    let (mut sim, honest, attacker, claim) = with_attacker(12, false);
    let before = marks(&sim);
    let other = *honest.iter().find(|&&h| sim.id(h) != claim.master).unwrap();
    forge_claim(&mut sim, attacker, &honest, other, claim.term + 1000);
    assert_master_unmoved(&sim, &honest, claim, &before);
    // The master is still master in its own view: is_master() is true somewhere.
    let m = *honest.iter().find(|&&h| sim.id(h) == claim.master).unwrap();
    assert_eq!(sim.nodes[&m].claim(), Some(claim));
}

#[test]
fn a_forged_resign_every_second_leaves_the_master_in_place() {
    let (mut sim, honest, attacker, claim) = with_attacker(13, false);
    let before = marks(&sim);
    let resign = Message::Election(ElectionMsg::Resign(claim));
    for _ in 0..10 {
        // The victims closed its connection; it is back (redialed) a second later.
        inject_all(&mut sim, attacker, &honest, &resign);
        sim.run_for(Duration::from_secs(1));
    }
    assert_master_unmoved(&sim, &honest, claim, &before);
    assert_refused(&sim, &honest, 10, &before);
    check(
        &sim,
        &BTreeMap::from_iter(sim.nodes.keys().map(|&h| (h, h != attacker))),
        0,
    )
    .unwrap();
}

#[test]
fn a_pinned_term_is_refused_and_promote_still_works() {
    let (mut sim, honest, attacker, claim) = with_attacker(14, true);
    let before = marks(&sim);
    forge_claim(&mut sim, attacker, &honest, attacker, u64::MAX);
    assert_master_unmoved(&sim, &honest, claim, &before);
    assert_refused(&sim, &honest, 1, &before);
    // An honest promote() still takes mastership everywhere, once.
    let h = *honest.iter().find(|&&h| sim.id(h) != claim.master).unwrap();
    let before = marks(&sim);
    let now = sim.now;
    sim.nodes.get_mut(&h).unwrap().promote(now).unwrap();
    sim.run_for(Duration::from_secs(1));
    for n in sim.nodes.values() {
        assert_eq!(n.master(), Some(sim.id(h)));
    }
    let since = &sim.events[&h][before[&h]..];
    assert_eq!(since.iter().filter(|e| promoted(e)).count(), 1);
    assert!(!since.iter().any(demoted), "{since:?}");
}

#[test]
fn partitions_with_different_promote_counts_heal_under_the_term_bound() {
    let mut sim = Sim::new(15);
    let hosts: Vec<Host> = (0..4).map(|_| sim.add(config(true, 0))).collect();
    sim.run_for(Duration::from_secs(3));
    sim.partition(&hosts[2..]);
    sim.run_for(QUIET);
    // One side changes master 40 times, the other not at all.
    for i in 0..40 {
        let h = hosts[i % 2];
        let now = sim.now;
        sim.nodes.get_mut(&h).unwrap().promote(now).unwrap();
        sim.run_for(Duration::from_millis(100));
    }
    let busy = sim.nodes[&hosts[0]].claim().unwrap();
    assert!(busy.term >= 39, "{busy:?}");
    sim.heal_all();
    sim.run_for(QUIET);
    for h in &hosts {
        assert_eq!(sim.nodes[h].claim(), Some(busy), "host {h}");
        assert_eq!(sim.nodes[h].stats().messages_refused, 0, "host {h}");
    }
}

/// Position in `host`'s events of the first one `pick` accepts.
fn position(sim: &Sim, host: Host, pick: impl Fn(&Event) -> bool) -> Option<usize> {
    sim.events[&host].iter().position(pick)
}

/// Trap 5 of issue 16: the survivor that takes over sends its claim as soon as it sees
/// the master go, and that claim can reach a third node before the master's own goodbye
/// or crash does (they travel on different connections). Scripted here: the claim is
/// delivered first. The third node still tells `NodeRemoved(old)` before `NewMaster(new)`,
/// whether the master exits gracefully or crashes.
#[test]
fn a_departed_masters_removal_comes_before_the_new_master_everywhere() {
    for graceful in [true, false] {
        let mut sim = Sim::new(91);
        for _ in 0..3 {
            sim.add(config(true, 0));
        }
        sim.run_for(Duration::from_secs(3));
        let claim = sim.nodes[&0].claim().expect("a master");
        let m = (0..3).find(|&h| sim.id(h) == claim.master).unwrap();
        let mut rest: Vec<Host> = (0..3).filter(|&h| h != m).collect();
        rest.sort_by_key(|&h| sim.id(h));
        let (x, y) = (rest[0], rest[1]);
        let (new, old) = (sim.id(x), claim.master);
        let before = sim.events[&y].len();
        // x's claim, as x will make it once it sees m go, reaches y first.
        let next = Claim {
            master: new,
            term: claim.term + 1,
        };
        sim.inject(x, y, &Message::Election(ElectionMsg::State(Some(next))));
        sim.run_for(Duration::from_millis(1));
        if graceful {
            let now = sim.now;
            sim.nodes.get_mut(&m).unwrap().leave(now);
        } else {
            sim.crash(m);
        }
        sim.run_for(Duration::from_secs(1));
        for h in [x, y] {
            let removed_at = position(
                &sim,
                h,
                |e| matches!(e, Event::NodeRemoved(n) if n.id == old),
            );
            let master_at = position(
                &sim,
                h,
                |e| matches!(e, Event::NewMaster(Some(n)) if n.id == new),
            );
            let (Some(r), Some(n)) = (removed_at, master_at) else {
                panic!("graceful {graceful}, host {h}: removed {removed_at:?}, new master {master_at:?}");
            };
            assert!(
                r < n,
                "graceful {graceful}, host {h}: NewMaster at {n} before NodeRemoved at {r}: {:?}",
                &sim.events[&h][before.min(r)..]
            );
            assert_eq!(sim.nodes[&h].master(), Some(new));
        }
    }
}

/// Holding a change of master back for a master that departed does not delay one made by
/// `promote()` while the old master lives: it speaks (it now follows the new one), and
/// that releases the change at once.
#[test]
fn a_promotion_elsewhere_is_told_at_once_while_the_old_master_lives() {
    let mut sim = Sim::new(92);
    for _ in 0..3 {
        sim.add(config(true, 0));
    }
    sim.run_for(Duration::from_secs(3));
    let old = sim.nodes[&0].master().unwrap();
    let others: Vec<Host> = (0..3).filter(|&h| sim.id(h) != old).collect();
    let (p, third) = (others[0], others[1]);
    let now = sim.now;
    sim.nodes.get_mut(&p).unwrap().promote(now).unwrap();
    sim.run_for(Duration::from_millis(5));
    let told = sim.events[&third]
        .iter()
        .any(|e| matches!(e, Event::NewMaster(Some(n)) if n.id == sim.id(p)));
    assert!(told, "third node: {:?}", sim.events[&third]);
}
