//! Failure detection for one member, SWIM-like in its cost: each interval a node sends a
//! UDP probe ([`super::probe`]) to a bounded number of members, [`DetectorConfig::per_interval`],
//! taken round-robin, so that what a node sends and receives while idle does not grow with
//! the cluster (memberlist probes one member a period the same way). With at most that many
//! members (10 nodes by default) every member is probed every interval, as before. Any
//! authentic record or probe from the peer counts as a sign of life.
//!
//! With more members each is probed once every [`DetectorConfig::rounds`] intervals. A
//! member silent for [`DetectorConfig::dead_after`], `(rounds - 1 + misses) × interval +
//! grace`, is dead (with one round: the original's rule, 3 missed heartbeats + 1 s); a
//! member silent for [`DetectorConfig::answer_after`] (its own probe is overdue) is probed
//! directly with a ping that asks for an answer, and through [`RELAYS`] other members (an
//! indirect probe, after SWIM), so one bad link between two nodes that still reach the
//! others removes neither.
//!
//! Those bounds grow with the cluster; SWIM's do not, because its probes are answered and
//! the first prober to miss an answer says so. So with more than one round a regular probe
//! asks for an answer too (answered at the peer's next timer, no hurry: see
//! [`super::probe::FLAG_ROUND`]). One not answered within [`DetectorConfig::answer_within`]
//! makes this node *ask* the member (directly and through relays, each interval), and from
//! then the member is dead for this node if nothing is heard from it for
//! [`DetectorConfig::asked_dead_after`], `misses × interval + grace` (the small cluster's
//! rule), whatever the rounds. The node tells its other members that it asks (each over its
//! own connection: a statement about its own view, nothing else), and a member told so
//! starts asking at once under the same rule, on its own account ([`Liveness::ask`]): it
//! removes the member only on its own silence. So a silent member is removed by everyone
//! within about `interval + answer_within + asked_dead_after` of going, whatever N.
//!
//! No record goes on the connection while probes answer. A member from which no probe has
//! come for `answer_after` (UDP filtered on the path), or one this node is asking, is sent a
//! `Ping` record each interval, and a `Ping` record is answered with one (at most one an interval), so a node
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

    /// True if regular probes ask for an answer: with more than one round, where the
    /// silence bound alone would grow with the members.
    pub fn round_answers(&self) -> bool {
        self.rounds > 1
    }

    /// How long a regular probe's answer may take: the member reads it at its next timer,
    /// at most an interval on, and that timer may be late by [`DetectorConfig::late_after`]
    /// before anyone calls it paused.
    pub fn answer_within(&self) -> Duration {
        self.interval + self.late_after()
    }

    /// How long a member this node asks for an answer may stay silent from the first ask:
    /// `misses` intervals plus the grace period, whatever the rounds.
    pub fn asked_dead_after(&self) -> Duration {
        self.interval * self.misses + self.grace
    }
}

/// A tick is never early by more than a millisecond's rounding of the driver's timer.
const EARLY: Duration = Duration::from_millis(5);

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
    /// When the oldest regular probe that asked for an answer, and has had none since,
    /// went out.
    awaiting: Option<Instant>,
    /// Since when this node asks the peer for an answer (a regular probe went unanswered,
    /// or a member said it asks): over once anything is heard from the peer after it.
    asking: Option<Instant>,
    /// When a member's word that it asks the peer was last acted on.
    hinted: Option<Instant>,
    /// When this node last told its members that it asks the peer.
    told: Option<Instant>,
}

impl Liveness {
    pub fn new(now: Instant, cfg: &DetectorConfig) -> Self {
        Liveness {
            first_round: Some(now + cfg.interval),
            last_heard: now,
            last_probe: now,
            last_record: None,
            awaiting: None,
            asking: None,
            hinted: None,
            told: None,
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
        // What our probes went unanswered by, and what we asked, is as unsure as the rest.
        self.awaiting = None;
        self.asking = None;
    }

    /// True if the peer has been silent long enough to be asked for an answer, directly
    /// and through others: past [`DetectorConfig::answer_after`], or since this node began
    /// to ask it.
    pub fn wants_answer(&self, now: Instant, cfg: &DetectorConfig) -> bool {
        now >= self.last_heard + cfg.answer_after() || self.is_asking()
    }

    /// True while this node asks the peer for an answer and has heard nothing since.
    pub fn is_asking(&self) -> bool {
        self.asking.is_some_and(|since| self.last_heard < since)
    }

    /// Since when this node asks the peer for an answer, while it does.
    pub fn asking_since(&self) -> Option<Instant> {
        self.asking.filter(|_| self.is_asking())
    }

    /// A regular probe that asks for an answer went to the peer at `now`.
    pub fn round_probe_sent(&mut self, now: Instant) {
        if self.awaiting.is_none_or(|sent| self.last_heard >= sent) {
            self.awaiting = Some(now);
        }
    }

    /// True if a regular probe's answer is overdue at `now` (nothing heard from the peer
    /// for [`DetectorConfig::answer_within`] since it went) and this node begins to ask
    /// the peer on its own account: from now its silence bound is
    /// [`DetectorConfig::asked_dead_after`].
    pub fn round_probe_overdue(&mut self, now: Instant, cfg: &DetectorConfig) -> bool {
        let Some(sent) = self.awaiting else {
            return false;
        };
        if self.last_heard >= sent {
            self.awaiting = None;
            return false;
        }
        if now + EARLY < sent + cfg.answer_within() {
            return false;
        }
        self.awaiting = None;
        self.begin_asking(now)
    }

    /// A member says it asks the peer for an answer: this node asks too, on its own account
    /// and under its own bound (true: it begins now, and sends its first ask). At most one
    /// such word is acted on an interval, whoever says it.
    pub fn ask(&mut self, now: Instant, cfg: &DetectorConfig) -> bool {
        if self.hinted.is_some_and(|t| now + EARLY < t + cfg.interval) {
            return false;
        }
        self.hinted = Some(now);
        self.begin_asking(now)
    }

    fn begin_asking(&mut self, now: Instant) -> bool {
        if self.is_asking() {
            return false;
        }
        self.asking = Some(now);
        self.is_asking()
    }

    /// True if this node is to tell its members that it asks the peer (and records it as
    /// told): once per [`DetectorConfig::dead_after`] at most, so that a peer that answers
    /// others and not us (one bad path) costs the cluster a bounded number of words.
    pub fn tell_due(&mut self, now: Instant, cfg: &DetectorConfig) -> bool {
        if self.told.is_some_and(|t| now < t + cfg.dead_after()) {
            return false;
        }
        self.told = Some(now);
        true
    }

    /// How long it is since the last authentic probe datagram from the peer.
    pub fn probe_silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_probe)
    }

    /// True if a `Ping` record is to go on the connection at `now`: no probe came from the
    /// peer for `answer_after`, or this node is asking it (`asked`: the peer sent us a
    /// `Ping` record), and none went in the last interval. Records it as sent.
    pub fn record_due(&mut self, now: Instant, cfg: &DetectorConfig, asked: bool) -> bool {
        // While asking, the connection is asked too: the asks' bound is shorter than
        // `answer_after` with many rounds, and a member whose UDP stopped getting through
        // must still be heard over TCP before it is removed.
        let wanted = asked || now >= self.last_probe + cfg.answer_after() || self.is_asking();
        let spaced = self
            .last_record
            .is_none_or(|t| now + EARLY >= t + cfg.interval);
        if wanted && spaced {
            self.last_record = Some(now);
            return true;
        }
        false
    }

    /// True if the peer has been silent too long: past [`DetectorConfig::dead_after`], or
    /// past [`DetectorConfig::asked_dead_after`] from the first ask of this node's.
    pub fn is_dead(&self, now: Instant, cfg: &DetectorConfig) -> bool {
        now >= self.death(cfg)
    }

    /// When the peer is dead if nothing is heard from it before.
    fn death(&self, cfg: &DetectorConfig) -> Instant {
        let silent = self.last_heard + cfg.dead_after();
        match self.asking_since() {
            Some(since) => silent.min(since + cfg.asked_dead_after()),
            None => silent,
        }
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
        let dead = self.death(cfg);
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

    #[test]
    fn an_unanswered_round_probe_starts_asking_and_the_small_bound_counts_from_then() {
        // 99 members: 11 rounds; silent for 6.2 s is dead by the rounds alone.
        let c = CFG.for_members(99);
        assert_eq!(c.answer_within(), MS(350));
        assert_eq!(c.asked_dead_after(), MS(1300));
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &c);
        l.in_rounds();
        l.round_probe_sent(t0 + MS(100));
        l.round_probe_sent(t0 + MS(200));
        assert!(!l.round_probe_overdue(t0 + MS(300), &c), "not yet due");
        assert!(l.round_probe_overdue(t0 + MS(450), &c), "the first probe's");
        assert!(l.is_asking() && l.wants_answer(t0 + MS(450), &c));
        assert!(!l.round_probe_overdue(t0 + MS(550), &c), "once");
        assert_eq!(l.deadline(&c), t0 + MS(450) + MS(1300));
        assert!(!l.is_dead(t0 + MS(1749), &c));
        assert!(l.is_dead(t0 + MS(1750), &c));
        // Heard: the ask is over, and the bound is the rounds' again.
        l.heard(t0 + MS(1700));
        assert!(!l.is_asking());
        assert!(!l.wants_answer(t0 + MS(1800), &c));
        assert_eq!(l.deadline(&c), t0 + MS(1700) + c.dead_after());
    }

    #[test]
    fn a_round_probe_answered_in_time_starts_nothing() {
        let c = CFG.for_members(30);
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &c);
        l.round_probe_sent(t0 + MS(100));
        l.probed(t0 + MS(420));
        assert!(!l.round_probe_overdue(t0 + MS(500), &c));
        assert!(!l.is_asking());
        // Its answer came, so the next probe is the one awaited.
        l.round_probe_sent(t0 + MS(600));
        assert!(l.round_probe_overdue(t0 + MS(950), &c));
    }

    #[test]
    fn a_members_word_starts_asking_at_most_once_an_interval() {
        let c = CFG.for_members(99);
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &c);
        l.in_rounds();
        assert!(l.ask(t0 + MS(500), &c));
        assert_eq!(l.deadline(&c), t0 + MS(500) + MS(1300));
        assert!(!l.ask(t0 + MS(510), &c), "asking already");
        l.heard(t0 + MS(520));
        assert!(!l.ask(t0 + MS(580), &c), "one word an interval");
        assert!(!l.is_asking());
        assert!(l.ask(t0 + MS(600), &c));
        // Heard at the very instant of the word: nothing to ask.
        l.heard(t0 + MS(700));
        assert!(!l.ask(t0 + MS(700), &c));
        assert!(!l.is_dead(t0 + MS(2000), &c));
    }

    #[test]
    fn our_own_pause_forgets_the_asks_and_tells_are_spaced_by_the_bound() {
        let c = CFG.for_members(99);
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &c);
        assert!(l.ask(t0 + MS(100), &c));
        l.recheck(t0 + MS(5000), &c);
        assert!(!l.is_asking());
        assert!(!l.is_dead(t0 + MS(5000) + MS(299), &c));
        assert!(l.tell_due(t0, &c));
        assert!(!l.tell_due(t0 + c.dead_after() - MS(1), &c));
        assert!(l.tell_due(t0 + c.dead_after(), &c));
    }

    #[test]
    fn regular_probes_ask_for_answers_only_with_more_than_one_round() {
        assert!(!CFG.for_members(9).round_answers());
        assert!(CFG.for_members(10).round_answers());
    }
}
