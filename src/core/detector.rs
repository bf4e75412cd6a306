//! Failure detection for one member, SWIM-like in its cost: each interval a node sends a
//! UDP probe ([`super::probe`]) to a bounded number of members, [`DetectorConfig::per_interval`],
//! taken round-robin, so that what a node sends and receives while idle does not grow with
//! the cluster (memberlist probes one member a period the same way). With at most that many
//! members (10 nodes by default) every member is probed every interval, as before. Any
//! authentic record or probe from the peer counts as a sign of life.
//!
//! With more members each is probed once every [`DetectorConfig::rounds`] intervals, and
//! the bounds stretch by the rounds: a member silent for [`DetectorConfig::answer_after`]
//! (its own probe is overdue) is probed directly with a ping that asks for an answer, and
//! through [`RELAYS`] other members (an indirect probe, after SWIM), so one bad link
//! between two nodes that still reach the others removes neither; a member silent for
//! [`DetectorConfig::dead_after`], `(rounds - 1 + misses) × interval + grace`, is dead
//! (with one round: the original's rule, 3 missed heartbeats + 1 s).
//!
//! No record goes on the connection while probes answer. A member from which no probe has
//! come for `answer_after` (UDP filtered on the path) is sent a `Ping` record each interval
//! instead, and a `Ping` record is answered with one (at most one an interval), so a node
//! whose probes do not reach its peer is still heard by it, over TCP.
//!
//! A timer of ours that fires far later than it was due means our own process did not run
//! (SIGSTOP, a VM pause): the silence was ours to hear, not theirs to make. Every member is
//! then asked for an answer at once and given `misses` intervals more than its silence bound
//! allows from then ([`Liveness::recheck`]) before any is removed (Lifeguard's local health
//! idea).
//!
//! This runs in the core, fed by the driver's timers, so a blocked JavaScript event loop
//! neither delays our probes nor makes us miss the peer's.

use std::time::{Duration, Instant};

/// Heartbeat settings.
#[derive(Debug, Clone, Copy)]
pub struct DetectorConfig {
    pub interval: Duration,
    pub misses: u32,
    pub grace: Duration,
    /// Members sent a regular probe each interval, at most.
    pub per_interval: usize,
    /// Intervals between two regular probes of one member: the rounds of `per_interval`
    /// it takes to probe every member (see [`DetectorConfig::for_members`]); 1 in a
    /// configuration.
    pub rounds: u32,
}

/// Members asked to relay a probe to a silent peer, each interval while it stays silent.
pub const RELAYS: usize = 3;

/// Members probed each interval by default: with 10 nodes or fewer, every member, every
/// interval.
pub const PER_INTERVAL: usize = 9;

impl DetectorConfig {
    /// These settings for a node with `members` members: one round-robin over them takes
    /// `ceil(members / per_interval)` intervals.
    pub fn for_members(&self, members: usize) -> DetectorConfig {
        let per = self.per_interval.max(1);
        let rounds = members.div_ceil(per).max(1);
        DetectorConfig {
            rounds: u32::try_from(rounds).unwrap_or(u32::MAX),
            ..*self
        }
    }

    /// How long a peer may stay silent before it is declared dead: `misses` intervals
    /// past the round it is probed in, plus the grace period.
    pub fn dead_after(&self) -> Duration {
        self.interval * (self.rounds.saturating_sub(1).saturating_add(self.misses)) + self.grace
    }

    /// How long a peer may stay silent before it is asked for an answer, directly and
    /// through other members: its regular probe is one interval overdue.
    pub fn answer_after(&self) -> Duration {
        self.interval * self.rounds.saturating_add(1)
    }

    /// How late a timer may fire before we take it that our own process was paused: one
    /// interval, and never under 250 ms (a busy machine delays timers by tens of ms).
    pub fn late_after(&self) -> Duration {
        self.interval.max(Duration::from_millis(250))
    }
}

/// Liveness of one peer.
#[derive(Debug, Clone)]
pub struct Liveness {
    /// Until the node's probe round takes this member in: when it first needs a round.
    first_round: Option<Instant>,
    /// The last sign of life of any kind.
    last_heard: Instant,
    /// The last authentic probe datagram: while they come, no record is needed.
    last_probe: Instant,
    /// The last `Ping` record we sent it.
    last_record: Option<Instant>,
}

impl Liveness {
    pub fn new(now: Instant, cfg: &DetectorConfig) -> Self {
        Liveness {
            first_round: Some(now + cfg.interval),
            last_heard: now,
            last_probe: now,
            last_record: None,
        }
    }

    /// Something authentic arrived from the peer.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// An authentic probe datagram arrived from the peer.
    pub fn probed(&mut self, now: Instant) {
        self.heard(now);
        self.last_probe = self.last_probe.max(now);
    }

    /// The node's probe round has this member now.
    pub fn in_rounds(&mut self) {
        self.first_round = None;
    }

    /// Our own process was paused: give the peer `misses` intervals from `now` more than
    /// its round allows before its silence counts against it (the caller asks it for an
    /// answer at once).
    pub fn recheck(&mut self, now: Instant, cfg: &DetectorConfig) {
        if let Some(from) = now.checked_sub(cfg.grace) {
            self.last_heard = self.last_heard.max(from);
        }
    }

    /// True if the peer has been silent long enough to be asked for an answer, directly
    /// and through others.
    pub fn wants_answer(&self, now: Instant, cfg: &DetectorConfig) -> bool {
        now >= self.last_heard + cfg.answer_after()
    }

    /// True if a `Ping` record is to go on the connection at `now`: no probe came from the
    /// peer for `answer_after` (`asked`: the peer sent us a `Ping` record), and none went
    /// in the last interval. Records it as sent.
    pub fn record_due(&mut self, now: Instant, cfg: &DetectorConfig, asked: bool) -> bool {
        let wanted = asked || now >= self.last_probe + cfg.answer_after();
        // A tick is never early by more than a millisecond's rounding of the driver's timer.
        let spaced = self
            .last_record
            .is_none_or(|t| now + Duration::from_millis(5) >= t + cfg.interval);
        if wanted && spaced {
            self.last_record = Some(now);
            return true;
        }
        false
    }

    /// True if the peer has been silent too long.
    pub fn is_dead(&self, now: Instant, cfg: &DetectorConfig) -> bool {
        now >= self.last_heard + cfg.dead_after()
    }

    /// How long the peer has been silent at `now`.
    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_heard)
    }

    /// When the node's probe round is first due for this member, until it takes it in.
    pub fn first_round(&self) -> Option<Instant> {
        self.first_round
    }

    /// The last sign of life: the silence bound runs from here.
    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// The next instant this liveness needs attention.
    pub fn deadline(&self, cfg: &DetectorConfig) -> Instant {
        let dead = self.last_heard + cfg.dead_after();
        self.first_round.map_or(dead, |t| t.min(dead))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: DetectorConfig = DetectorConfig {
        interval: Duration::from_millis(100),
        misses: 3,
        grace: Duration::from_millis(1000),
        per_interval: 9,
        rounds: 1,
    };
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_peer_is_dead_only_after_misses_plus_grace() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &CFG);
        assert!(!l.is_dead(t0 + MS(1299), &CFG));
        assert!(l.is_dead(t0 + MS(1300), &CFG));
        l.heard(t0 + MS(1000));
        assert!(!l.is_dead(t0 + MS(2299), &CFG));
    }

    #[test]
    fn up_to_per_interval_members_take_one_round_and_the_rules_are_the_original() {
        for members in [0, 1, 9] {
            let c = CFG.for_members(members);
            assert_eq!(c.rounds, 1);
            assert_eq!(c.dead_after(), MS(1300));
            assert_eq!(c.answer_after(), MS(200));
        }
    }

    #[test]
    fn more_members_stretch_the_bounds_by_the_rounds() {
        // 99 members, 9 an interval: 11 rounds; dead after (11 - 1 + 3) x 100 ms + 1 s.
        let c = CFG.for_members(99);
        assert_eq!(c.rounds, 11);
        assert_eq!(c.dead_after(), MS(2300));
        assert_eq!(c.answer_after(), MS(1200));
        assert_eq!(CFG.for_members(10).rounds, 2);
        assert_eq!(CFG.for_members(24).rounds, 3);
        assert_eq!(CFG.for_members(49).rounds, 6);
        // A configuration of 0 members an interval is taken as 1.
        let zero = DetectorConfig {
            per_interval: 0,
            ..CFG
        };
        assert_eq!(zero.for_members(5).rounds, 5);
    }

    #[test]
    fn after_our_own_pause_a_peer_gets_misses_intervals_to_answer() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &CFG);
        let resumed = t0 + Duration::from_secs(10);
        assert!(l.is_dead(resumed, &CFG));
        l.recheck(resumed, &CFG);
        assert!(!l.is_dead(resumed, &CFG));
        assert!(l.wants_answer(resumed, &CFG), "asked at once");
        assert!(!l.is_dead(resumed + MS(299), &CFG));
        assert!(l.is_dead(resumed + MS(300), &CFG));
    }

    #[test]
    fn an_answer_is_wanted_once_the_regular_probe_is_an_interval_overdue() {
        let t0 = Instant::now();
        let l = Liveness::new(t0, &CFG);
        assert!(!l.wants_answer(t0 + MS(199), &CFG));
        assert!(l.wants_answer(t0 + MS(200), &CFG));
        let c = CFG.for_members(20);
        assert!(!l.wants_answer(t0 + MS(399), &c));
        assert!(l.wants_answer(t0 + MS(400), &c));
    }

    #[test]
    fn records_go_only_while_probes_do_not_come_or_when_asked_one_an_interval() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &CFG);
        assert!(
            !l.record_due(t0 + MS(100), &CFG, false),
            "probes may still come"
        );
        l.probed(t0 + MS(150));
        assert!(!l.record_due(t0 + MS(300), &CFG, false));
        // Records keep the member heard, yet no probe comes: UDP does not get through.
        l.heard(t0 + MS(340));
        assert!(l.record_due(t0 + MS(350), &CFG, false));
        assert!(!l.record_due(t0 + MS(400), &CFG, false), "one an interval");
        assert!(!l.record_due(t0 + MS(420), &CFG, true), "answers too");
        assert!(l.record_due(t0 + MS(450), &CFG, false));
        l.probed(t0 + MS(460));
        assert!(!l.record_due(t0 + MS(550), &CFG, false), "probes came back");
        assert!(
            l.record_due(t0 + MS(560), &CFG, true),
            "a record is answered"
        );
    }

    #[test]
    fn a_new_member_wants_the_round_one_interval_on() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &CFG);
        assert_eq!(l.deadline(&CFG), t0 + MS(100));
        l.in_rounds();
        assert_eq!(l.deadline(&CFG), t0 + MS(1300));
        assert_eq!(l.silence(t0 + MS(40)), MS(40));
    }
}
