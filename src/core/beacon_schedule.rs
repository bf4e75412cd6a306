//! When this node multicasts its next beacon: a quick burst at start so a cluster forms
//! fast, then a jittered period so late nodes and healed partitions are found, and an early
//! beacon to answer a newcomer that waits to hear us before it dials.
//!
//! An answer goes to the whole group, and every member with a larger id than the newcomer's
//! owes one: at once, a join of a node into N would make about N/2 beacons heard by N nodes
//! each (100 processes forming by multicast sent 5 000 beacons, 4 000 of them answers).
//! Above [`BEACONS_PER_INTERVAL`] members each member waits a random part of a window that
//! grows with its members ([`announce_spread`]), and at any size it answers only if the
//! newcomer has not linked with it and no other member has beaconed meanwhile: the first answer makes the
//! newcomer dial, its first member's list names the rest, and their answers are dropped
//! (mDNS delays its shared answers, and drops one another responder has given, for the
//! same reason: RFC 6762 §6, §7.4). The answer is kept apart from the regular beacons, so
//! that dropping it leaves them where they were, and with the newcomers it is owed to,
//! so that it is dropped with them (what "linked with us" means is the cluster's).
//!
//! The period grows with the node's members ([`period`]): every node hears every beacon of
//! its cluster, so with one period for all a node would hear N/2 beacons a second (500 at
//! 1 000 nodes). Spread out, the cluster as a whole sends about [`BEACONS_PER_INTERVAL`]
//! per base interval whatever N, and a node hears a constant number a second.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::RngCore;

use crate::core::node::NodeId;

/// Newcomers an answer tracks (see [`BeaconSchedule::answer_owed`]): beyond it, the answer
/// planned goes out whatever (a flood of beacons under made-up ids can neither grow the
/// list nor cancel the answer).
pub const MAX_ANSWERING: usize = 64;

/// How soon we dial a newcomer whose answer we dropped for a member's beacon, if it has
/// not linked with us by then (instead of `fallback_after`): the newcomer asks only its
/// first member for a list, and one that joined with the cluster still forming may name
/// few of us. 100 processes by multicast waited up to 4 s for those last pairs.
pub const DROPPED_ANSWER_DIAL_AFTER: Duration = Duration::from_secs(1);

/// Beacons the whole cluster sends per base interval, about: past this many nodes each
/// one's period is the base interval times `ceil((members + 1) / BEACONS_PER_INTERVAL)`
/// (2 s up to 15 members, 14 s at 100 nodes, 126 s at 1 000 with the default 2 s).
pub const BEACONS_PER_INTERVAL: usize = 16;

/// A node's beacon period with `members` members (see [`BEACONS_PER_INTERVAL`]).
pub fn period(base: Duration, members: usize) -> Duration {
    let nodes = members.saturating_add(1);
    base.saturating_mul(u32::try_from(nodes.div_ceil(BEACONS_PER_INTERVAL)).unwrap_or(u32::MAX))
}

/// How long a member with `members` members may wait before it answers a newcomer's
/// beacon: nothing up to [`BEACONS_PER_INTERVAL`] members (a small cluster answers as it
/// always did), then half of `min_gap` for each member beyond, so that the first of the
/// members owing an answer (about half of them) answers within about `min_gap` of the
/// first chance whatever N (1.6 s of window at 80 members, 3.9 s at 170).
pub fn announce_spread(min_gap: Duration, members: usize) -> Duration {
    let beyond = members.saturating_sub(BEACONS_PER_INTERVAL);
    (min_gap / 2).saturating_mul(u32::try_from(beyond).unwrap_or(u32::MAX))
}

/// The beacon timer of one node.
#[derive(Debug, Default)]
pub struct BeaconSchedule {
    started: Option<Instant>,
    sent: usize,
    last: Option<Instant>,
    next: Option<Instant>,
    /// An answer planned to newcomers' beacons, apart from the regular schedule.
    answer: Option<Answer>,
}

/// A beacon planned early, to answer newcomers that wait to hear us before they dial.
#[derive(Debug)]
struct Answer {
    at: Instant,
    /// The newcomers (id, where they listen) it is owed to, [`MAX_ANSWERING`] at most.
    to: Vec<(NodeId, SocketAddr)>,
    /// More were owed one than `to` holds: the answer goes out whatever.
    overflow: bool,
}

impl BeaconSchedule {
    /// The first beacon goes out at once.
    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
        self.next = Some(now);
    }

    /// No beacon is sent any more (the node is leaving).
    pub fn stop(&mut self) {
        self.next = None;
        self.answer = None;
    }

    /// When the next beacon is due, if one is planned.
    pub fn next(&self) -> Option<Instant> {
        self.next.into_iter().chain(self.answer_at()).min()
    }

    fn answer_at(&self) -> Option<Instant> {
        self.answer.as_ref().map(|a| a.at)
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.next().is_some_and(|t| t <= now)
    }

    /// True if only an answer is due at `now`, not the regular schedule's beacon.
    pub fn only_answer_due(&self, now: Instant) -> bool {
        self.answer_at().is_some_and(|t| t <= now) && self.next.is_none_or(|t| t > now)
    }

    /// True if the answer planned is still owed: one of its newcomers has not linked with
    /// us (`linked`), or more were owed it than it tracks.
    pub fn answer_owed(&self, linked: impl Fn(NodeId, SocketAddr) -> bool) -> bool {
        self.answer
            .as_ref()
            .is_some_and(|a| a.overflow || a.to.iter().any(|&(id, addr)| !linked(id, addr)))
    }

    /// The answer planned is no longer owed: the regular schedule goes on as planned.
    pub fn drop_answer(&mut self) {
        self.answer = None;
    }

    /// A member's beacon was heard: our newcomers heard it too (one group), so the answer
    /// is dropped, unless it owes more newcomers than it tracks. Returns the newcomers it
    /// was owed to.
    pub fn answered_by_member(&mut self) -> Vec<(NodeId, SocketAddr)> {
        if self.answer.as_ref().is_some_and(|a| !a.overflow) {
            return self.answer.take().map(|a| a.to).unwrap_or_default();
        }
        Vec::new()
    }

    /// How many newcomers the answer planned tracks, and whether more were owed it.
    #[cfg(test)]
    pub fn answer_tracks(&self) -> Option<(usize, bool)> {
        self.answer.as_ref().map(|a| (a.to.len(), a.overflow))
    }

    /// A beacon went out at `now`. The next follows the burst's offsets from the start
    /// while they lie ahead, then `period` later: ±10% while it is the `base` interval,
    /// and anywhere from half to one and a half times it when spread out (more members):
    /// nodes started together, or that lost their members together, would otherwise
    /// beacon in waves one long period apart, and a partition healing between two waves
    /// would hear no beacon across for seconds.
    pub fn sent(
        &mut self,
        now: Instant,
        burst: &[Duration],
        (base, period): (Duration, Duration),
        rng: &mut impl RngCore,
    ) {
        self.sent += 1;
        self.last = Some(now);
        self.answer = None;
        let started = self.started.unwrap_or(now);
        self.next = Some(match burst.get(self.sent) {
            Some(&offset) if started + offset > now => started + offset,
            _ if period <= base => now + jittered(period, rng),
            _ => now + period / 2 + up_to(period, rng),
        });
    }

    /// The period is now `period` (the node lost members): a next beacon planned further
    /// off than `period` from now is drawn again, at a random point within `period` from
    /// now. Not at once nor at the same offset from the last beacon: the nodes of a side
    /// cut off together lose their members together, and nodes started together sent
    /// their last beacon (the burst's) together. A node cut off from most of its cluster
    /// goes back to beaconing as often as a small cluster's node does.
    pub fn period_at_most(&mut self, now: Instant, period: Duration, rng: &mut impl RngCore) {
        if self.next.is_some_and(|next| next > now + period) {
            self.next = Some(now + up_to(period, rng));
        }
    }

    /// Node `newcomer` has a smaller id and waits to hear us before it dials: beacon
    /// `wait` from now, or as soon as `min_gap` after the last one allows, rather than at
    /// the next periodic beacon (unless one is planned sooner: it answers, and no answer
    /// needs planning).
    pub fn answer_announce(
        &mut self,
        now: Instant,
        (min_gap, wait): (Duration, Duration),
        newcomer: (NodeId, SocketAddr),
    ) {
        let soonest = self
            .last
            .map_or(now, |t| (t + min_gap).max(now))
            .max(now + wait);
        let sooner = self.next.is_none_or(|t| t > soonest);
        let answer = match &mut self.answer {
            Some(answer) => answer,
            None if sooner => self.answer.insert(Answer {
                at: soonest,
                to: Vec::new(),
                overflow: false,
            }),
            None => return,
        };
        if sooner {
            answer.at = answer.at.min(soonest);
        }
        if answer.to.contains(&newcomer) {
            return;
        }
        if answer.to.len() < MAX_ANSWERING {
            answer.to.push(newcomer);
        } else {
            answer.overflow = true;
        }
    }
}

/// `d` ±10%, so nodes started together do not beacon in lockstep forever.
fn jittered(d: Duration, rng: &mut impl RngCore) -> Duration {
    let tenth = d / 10;
    d - tenth + up_to(tenth * 2, rng)
}

/// A random duration from 0 to `d`, by the millisecond.
pub fn up_to(d: Duration, rng: &mut impl RngCore) -> Duration {
    let span = d.as_millis().max(1) as u64;
    Duration::from_millis(rng.next_u64() % span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A schedule started at the returned instant, with its seeded RNG.
    fn started(seed: u64) -> (BeaconSchedule, ChaCha20Rng, Instant) {
        let t0 = Instant::now();
        let mut s = BeaconSchedule::default();
        assert_eq!(s.next(), None);
        s.start(t0);
        assert!(s.is_due(t0));
        (s, ChaCha20Rng::seed_from_u64(seed), t0)
    }

    #[test]
    fn the_burst_follows_its_offsets_from_the_start_then_the_interval_is_jittered() {
        let (mut s, mut rng, t0) = started(1);
        let burst = [MS(0), MS(50), MS(150)];
        s.sent(t0, &burst, (MS(2000), MS(2000)), &mut rng);
        assert_eq!(s.next(), Some(t0 + MS(50)));
        // A late beacon does not shift the burst: offsets count from the start.
        s.sent(t0 + MS(60), &burst, (MS(2000), MS(2000)), &mut rng);
        assert_eq!(s.next(), Some(t0 + MS(150)));
        let mut gaps = std::collections::BTreeSet::new();
        let mut now = t0 + MS(150);
        for _ in 0..50 {
            s.sent(now, &burst, (MS(2000), MS(2000)), &mut rng);
            let gap = s.next().unwrap() - now;
            assert!(gap >= MS(1800) && gap < MS(2200), "gap {gap:?}");
            gaps.insert(gap);
            now += gap;
        }
        assert!(gaps.len() > 10, "the interval is jittered: {gaps:?}");
    }

    #[test]
    fn a_burst_offset_already_past_gives_way_to_the_interval() {
        let (mut s, mut rng, t0) = started(2);
        s.sent(
            t0 + MS(80),
            &[MS(0), MS(50)],
            (MS(1000), MS(1000)),
            &mut rng,
        );
        let gap = s.next().unwrap() - (t0 + MS(80));
        assert!(gap >= MS(900) && gap < MS(1100), "gap {gap:?}");
    }

    #[test]
    fn the_period_grows_with_the_members_so_the_cluster_beacons_at_a_constant_rate() {
        let base = MS(2000);
        assert_eq!(period(base, 0), base);
        assert_eq!(period(base, 15), base);
        assert_eq!(period(base, 16), MS(4000));
        assert_eq!(period(base, 99), MS(14_000));
        assert_eq!(period(base, 999), MS(126_000));
        // The cluster's beacons per base interval: N nodes, each once per its period.
        for n in [16usize, 17, 50, 100, 500, 1000] {
            let per_base = n as f64 * base.as_secs_f64() / period(base, n - 1).as_secs_f64();
            assert!((8.0..=16.0).contains(&per_base), "{n} nodes: {per_base}");
        }
    }

    #[test]
    fn a_spread_period_is_drawn_from_half_to_one_and_a_half_times_itself() {
        let (mut s, mut rng, t0) = started(5);
        let mut now = t0;
        let (mut least, mut most, mut sum) = (MS(u64::MAX / 2), MS(0), MS(0));
        for _ in 0..200 {
            s.sent(now, &[], (MS(2000), MS(14_000)), &mut rng);
            let gap = s.next().unwrap() - now;
            (least, most, sum) = (least.min(gap), most.max(gap), sum + gap);
            now += gap;
        }
        assert!(least >= MS(7000) && least < MS(8000), "least {least:?}");
        assert!(most < MS(21_000) && most > MS(20_000), "most {most:?}");
        let mean = sum / 200;
        assert!(mean > MS(13_000) && mean < MS(15_000), "mean {mean:?}");
    }

    #[test]
    fn a_shorter_period_draws_the_next_beacon_within_it_from_now_once() {
        // Nodes cut off together lose their members together, and nodes started together
        // sent their last beacon together: at once, or a period after the last, would put
        // them back in step.
        let mut draws = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let (mut s, mut rng, t0) = started(100 + seed);
            s.sent(t0, &[], (MS(2000), MS(26_000)), &mut rng);
            let planned = s.next().unwrap();
            assert!(planned >= t0 + MS(13_000));
            let now = t0 + MS(3000);
            s.period_at_most(now, MS(40_000), &mut rng);
            assert_eq!(s.next(), Some(planned), "a longer period changes nothing");
            s.period_at_most(now, MS(10_000), &mut rng);
            let next = s.next().unwrap();
            assert!(next >= now && next < now + MS(10_000), "{:?}", next - now);
            // One member after another is removed: the draw stands.
            for _ in 0..50 {
                s.period_at_most(now, MS(10_000), &mut rng);
            }
            assert_eq!(s.next(), Some(next));
            draws.insert(next - now);
        }
        assert!(draws.len() > 15, "drawn, not at once: {draws:?}");
    }

    #[test]
    fn an_announce_is_answered_no_sooner_than_the_least_gap() {
        let (mut s, mut rng, t0) = started(3);
        s.sent(t0, &[], (MS(2000), MS(2000)), &mut rng);
        s.answer_announce(t0 + MS(10), (MS(50), MS(0)), newcomer(1));
        assert_eq!(s.next(), Some(t0 + MS(50)));
        s.answer_announce(t0 + MS(70), (MS(50), MS(0)), newcomer(1));
        assert_eq!(s.next(), Some(t0 + MS(50)), "an earlier beacon stays");
        s.stop();
        assert_eq!(s.next(), None);
        assert!(!s.is_due(t0 + MS(5000)));
    }

    #[test]
    fn an_answer_waits_its_draw_and_once_dropped_the_regular_beacon_stands() {
        let (mut s, mut rng, t0) = started(4);
        s.sent(t0, &[], (MS(2000), MS(2000)), &mut rng);
        let regular = s.next().unwrap();
        s.answer_announce(t0 + MS(10), (MS(50), MS(300)), newcomer(1));
        assert_eq!(s.next(), Some(t0 + MS(310)));
        assert!(!s.is_due(t0 + MS(309)) && s.only_answer_due(t0 + MS(310)));
        // Another newcomer's beacon, a shorter draw: the sooner answer serves both.
        s.answer_announce(t0 + MS(20), (MS(50), MS(100)), newcomer(2));
        assert_eq!(s.next(), Some(t0 + MS(120)));
        s.drop_answer();
        assert_eq!(s.next(), Some(regular), "the regular schedule is untouched");
        assert!(!s.only_answer_due(regular) && s.is_due(regular));
        // A regular beacon due first serves as the answer.
        s.answer_announce(regular - MS(1), (MS(50), MS(500)), newcomer(1));
        assert_eq!(s.next(), Some(regular));
    }

    /// Newcomer `i`, listening at 10.0.0.`i`.
    fn newcomer(i: u8) -> (NodeId, SocketAddr) {
        (NodeId([i; 16]), SocketAddr::from(([10, 0, 0, i], 7000)))
    }

    #[test]
    fn an_answer_is_owed_until_its_newcomers_have_linked_and_a_flood_of_them_keeps_it_owed() {
        let (mut s, mut rng, t0) = started(6);
        s.sent(t0, &[], (MS(2000), MS(2000)), &mut rng);
        assert!(!s.answer_owed(|_, _| false), "no answer planned");
        s.answer_announce(t0 + MS(10), (MS(50), MS(300)), newcomer(1));
        s.answer_announce(t0 + MS(20), (MS(50), MS(300)), newcomer(2));
        s.answer_announce(t0 + MS(30), (MS(50), MS(300)), newcomer(2));
        assert_eq!(s.answer_tracks(), Some((2, false)), "each newcomer once");
        assert!(
            s.answer_owed(|id, _| id == newcomer(1).0),
            "newcomer 2 has not linked"
        );
        assert!(!s.answer_owed(|_, _| true), "both have");
        s.answered_by_member();
        assert_eq!(s.answer_tracks(), None, "a member's beacon answered them");
        // Made-up newcomers, more than tracked: the list stops growing and the answer goes
        // out whatever, even once a member has beaconed (who was owed it is not known).
        for i in 0..=255u8 {
            s.answer_announce(t0 + MS(40), (MS(50), MS(300)), newcomer(i));
        }
        assert_eq!(s.answer_tracks(), Some((MAX_ANSWERING, true)));
        assert!(s.answer_owed(|_, _| true));
        s.answered_by_member();
        assert!(s.answer_owed(|_, _| true), "kept");
        let at = s.next().unwrap();
        assert!(s.only_answer_due(at));
        s.sent(at, &[], (MS(2000), MS(2000)), &mut rng);
        assert_eq!(s.answer_tracks(), None, "sent: owed no more");
    }

    #[test]
    fn small_clusters_answer_at_once_larger_ones_within_a_window_growing_with_members() {
        assert_eq!(announce_spread(MS(50), 0), MS(0));
        assert_eq!(announce_spread(MS(50), BEACONS_PER_INTERVAL), MS(0));
        assert_eq!(announce_spread(MS(50), 80), MS(1600));
        assert_eq!(announce_spread(MS(50), 170), MS(3850));
    }
}
