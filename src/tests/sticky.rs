//! Mastership is sticky: a node that was away (paused, cut off, partitioned) does not take
//! mastership from a cluster that kept a healthy master, whatever its term; a real
//! partition heal keeps the master of the side followed by more nodes, with one demotion;
//! and a node that sees its cluster whole sees its master within milliseconds. Each case
//! runs over [`SEEDS`] seeds; a failure names its seed, and `ESPIAL_SIM_SEED=<seed>`
//! replays that one alone.

use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::sim::{demoted, over_seeds, Host, Sim};
use crate::core::cluster::Event;
use crate::core::config::Config;
use crate::core::node::NodeId;

const SEEDS: u64 = 200;

/// Heartbeats every 500 ms: a member silent for 2.5 s is removed.
fn config() -> Config {
    let mut c = Config::lan("sim");
    c.detector.interval = Duration::from_millis(500);
    c
}

fn dead_after() -> Duration {
    config().detector.dead_after()
}

/// `n` nodes, formed, with their agreed master.
fn formed(seed: u64, n: usize) -> (Sim, Vec<Host>, Host) {
    let mut sim = Sim::new(seed);
    let hosts: Vec<Host> = (0..n).map(|_| sim.add(config())).collect();
    sim.run_for(Duration::from_secs(5));
    let master = sim.nodes[&hosts[0]].master().expect("formed with a master");
    let m = hosts
        .iter()
        .copied()
        .find(|&h| sim.id(h) == master)
        .unwrap();
    (sim, hosts, m)
}

fn new_masters(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::NewMaster(_)))
        .count()
}

/// After `away` returned: everyone follows the master `m` it had before, `m` never
/// demoted, and no node but `away` saw its master change.
fn master_kept(
    sim: &Sim,
    hosts: &[Host],
    m: Host,
    away: Host,
    marks: &[usize],
) -> Result<(), String> {
    let master = Some(sim.id(m));
    let views: Vec<Option<NodeId>> = hosts.iter().map(|h| sim.nodes[h].master()).collect();
    if views.iter().any(|v| *v != master) {
        return Err(format!("master was host {m}; now {views:?}"));
    }
    for (&h, &mark) in hosts.iter().zip(marks) {
        let since = &sim.events[&h][mark..];
        // The node that was away may have made itself master while alone; it yields.
        if h != away && since.iter().any(demoted) {
            return Err(format!("host {h} was demoted"));
        }
        if h != away && new_masters(since) > 0 {
            return Err(format!("host {h} saw its master change"));
        }
    }
    Ok(())
}

fn marks(sim: &Sim, hosts: &[Host]) -> Vec<usize> {
    hosts.iter().map(|h| sim.events[h].len()).collect()
}

/// A node other than the master, picked by the seed.
fn pick_other(rng: &mut ChaCha8Rng, hosts: &[Host], m: Host) -> Host {
    let others: Vec<Host> = hosts.iter().copied().filter(|&h| h != m).collect();
    others[rng.next_u32() as usize % others.len()]
}

fn paused_node_returns(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = 3 + (rng.next_u32() % 3) as usize;
    let (mut sim, hosts, m) = formed(seed, n);
    let away = pick_other(&mut rng, &hosts, m);
    // Longer than the failure detector and the election timeout: 3 to 8 s.
    let pause = Duration::from_millis(3000 + u64::from(rng.next_u32() % 5000));
    assert!(pause > dead_after());
    let before = marks(&sim, &hosts);
    sim.pause(away);
    sim.run_for(pause);
    sim.resume(away);
    sim.run_for(Duration::from_secs(20));
    master_kept(&sim, &hosts, m, away, &before)
        .map_err(|e| format!("pause {pause:?} of host {away}: {e}"))
}

fn cut_node_returns(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = 3 + (rng.next_u32() % 3) as usize;
    let (mut sim, hosts, m) = formed(seed, n);
    let away = pick_other(&mut rng, &hosts, m);
    let cut = Duration::from_millis(2000 + u64::from(rng.next_u32() % 1000));
    let before = marks(&sim, &hosts);
    sim.cut(away);
    sim.run_for(cut);
    sim.heal(away);
    sim.run_for(Duration::from_secs(20));
    master_kept(&sim, &hosts, m, away, &before)
        .map_err(|e| format!("cut {cut:?} of host {away}: {e}"))
}

/// The link between the master and its successor (the node that would elect were the
/// master lost) breaks both ways for 4 s: the successor removes the master while every
/// other node still follows it. The pre-vote holds the successor back (its members say they
/// still follow the master), so nobody's master changes but the successor's own. Its
/// members told it what they follow when they adopted the master, not to every member.
fn successor_loses_master(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = 4 + (rng.next_u32() % 3) as usize;
    let (mut sim, hosts, m) = formed(seed, n);
    let successor = hosts
        .iter()
        .copied()
        .filter(|&h| h != m)
        .min_by_key(|&h| sim.id(h))
        .unwrap();
    let before = marks(&sim, &hosts);
    sim.reset_link(successor, m);
    sim.sever(successor, m);
    sim.sever(m, successor);
    sim.run_for(Duration::from_secs(4));
    // Control: the successor did lose the master, so its pre-vote was put to the test.
    let removed = |e: &Event| matches!(e, Event::NodeRemoved(i) if i.id == sim.id(m));
    if !sim.events[&successor][before[hosts.iter().position(|&h| h == successor).unwrap()]..]
        .iter()
        .any(removed)
    {
        return Err(format!("host {successor} never removed the master {m}"));
    }
    sim.mend();
    sim.run_for(Duration::from_secs(20));
    master_kept(&sim, &hosts, m, successor, &before)
}

fn partition_heals(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut sim, hosts, _) = formed(seed, 5);
    // Two nodes picked by the seed go apart: either side may hold the old master.
    let mut small = Vec::new();
    while small.len() < 2 {
        let h = hosts[rng.next_u32() as usize % hosts.len()];
        if !small.contains(&h) {
            small.push(h);
        }
    }
    let large: Vec<Host> = hosts
        .iter()
        .copied()
        .filter(|h| !small.contains(h))
        .collect();
    sim.partition(&small);
    sim.run_for(Duration::from_secs(10));
    let side_master = |sim: &Sim, side: &[Host]| -> Result<NodeId, String> {
        let v = sim.nodes[&side[0]]
            .master()
            .ok_or("a side without a master")?;
        if side.iter().any(|h| sim.nodes[h].master() != Some(v)) {
            return Err(format!("side {side:?} disagrees"));
        }
        Ok(v)
    };
    let (winner, loser) = (side_master(&sim, &large)?, side_master(&sim, &small)?);
    let before = marks(&sim, &hosts);
    sim.heal_all();
    sim.run_for(Duration::from_secs(20));
    let views: Vec<_> = hosts.iter().map(|h| sim.nodes[h].master()).collect();
    if views.iter().any(|v| *v != Some(winner)) {
        return Err(format!(
            "the larger side's master {winner:?} lost ({loser:?}): {views:?}"
        ));
    }
    let mut demotions = 0;
    for (&h, &mark) in hosts.iter().zip(&before) {
        let since = &sim.events[&h][mark..];
        demotions += since.iter().filter(|e| demoted(e)).count();
        if large.contains(&h) && new_masters(since) > 0 {
            return Err(format!("host {h} on the larger side saw its master change"));
        }
        // A follower whose master yields before the winner has reached it follows
        // nobody until it does (`NewMaster(None)`); it never follows a third node.
        let named: Vec<Option<NodeId>> = since
            .iter()
            .filter_map(|e| match e {
                Event::NewMaster(m) => Some(m.as_ref().map(|m| m.id)),
                _ => None,
            })
            .collect();
        if small.contains(&h)
            && (named.last() != Some(&Some(winner))
                || named.iter().any(|m| m.is_some_and(|m| m != winner)))
        {
            return Err(format!("host {h} on the smaller side followed {named:?}"));
        }
    }
    if demotions != 1 {
        return Err(format!("{demotions} demotions"));
    }
    Ok(())
}

/// The master's link to one node goes bad one way for 2.3 to 3.3 s: that node removes the
/// master (it hears nothing) while the master, which still hears it, may keep it as a
/// member across the reconnection. Every node that sees the whole cluster has its master
/// within 10 ms, and the master never moves. (Before the fix: 91 of 200 seeds failed, 24
/// of them with a node that saw the whole cluster and no master, never told by the master
/// that kept it; the rest with the master moved to the node that lost it.)
fn blip_sees_master_at_once(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = 3 + (rng.next_u32() % 3) as usize;
    let (mut sim, hosts, m) = formed(seed, n);
    let away = pick_other(&mut rng, &hosts, m);
    let bad = Duration::from_millis(2300 + u64::from(rng.next_u32() % 1000));
    sim.sever(m, away);
    sim.run_for(bad);
    sim.mend();
    let step = Duration::from_millis(1);
    // Since when each node has seen the whole cluster without a master.
    let mut without: Vec<Option<Duration>> = vec![None; hosts.len()];
    let mut t = Duration::ZERO;
    for _ in 0..20_000 {
        sim.run_for(step);
        t += step;
        for (i, &h) in hosts.iter().enumerate() {
            let whole = sim.member_ids(h).len() == n - 1;
            let masterless = whole && sim.nodes[&h].master().is_none();
            without[i] = match (masterless, without[i]) {
                (true, None) => Some(t),
                (true, since) => since,
                (false, _) => None,
            };
            if let Some(since) = without[i] {
                if t - since > Duration::from_millis(10) {
                    return Err(format!(
                        "host {h} saw the whole cluster without a master for over 10 ms (link {m}->{away} bad for {bad:?})"
                    ));
                }
            }
        }
    }
    let views: Vec<_> = hosts.iter().map(|h| sim.nodes[h].master()).collect();
    if views.iter().any(|v| *v != Some(sim.id(m))) {
        return Err(format!("master was host {m}; now {views:?}"));
    }
    Ok(())
}

#[test]
fn a_paused_node_returning_does_not_take_mastership() {
    over_seeds(SEEDS, paused_node_returns);
}

#[test]
fn a_node_cut_off_briefly_does_not_take_mastership() {
    over_seeds(SEEDS, cut_node_returns);
}

#[test]
fn a_partition_heal_keeps_the_larger_sides_master_with_one_demotion() {
    over_seeds(SEEDS, partition_heals);
}

#[test]
fn a_node_that_sees_its_cluster_whole_sees_its_master_within_milliseconds() {
    over_seeds(SEEDS, blip_sees_master_at_once);
}

#[test]
fn a_successor_that_loses_only_the_master_does_not_take_mastership() {
    over_seeds(SEEDS, successor_loses_master);
}
