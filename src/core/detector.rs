//! Failure detection for one member. Every member is sent a heartbeat each interval, as a
//! record on the connection and as a UDP probe ([`super::probe`]) that does not wait behind
//! TCP retransmissions; any authentic record or probe from the peer counts as a sign of
//! life. A peer silent for [`DetectorConfig::indirect_after`] is also probed through
//! [`RELAYS`] other members (an indirect probe, after SWIM), so one bad link between two
//! nodes that still reach the others removes neither. A peer silent for `misses` intervals
//! plus a grace period is dead (the original's rule: 3 missed heartbeats + 1 s).
//!
//! A timer of ours that fires far later than it was due means our own process did not run
//! (SIGSTOP, a VM pause): the silence was ours to hear, not theirs to make. Every member is
//! then probed again at once and given `misses` intervals to answer
//! ([`Liveness::recheck`]) before any is removed (Lifeguard's local health idea).
//!
//! This runs in the core, fed by the driver's timers, so a blocked JavaScript event loop
//! neither delays our heartbeats nor makes us miss the peer's.

use std::time::{Duration, Instant};

/// Heartbeat settings.
#[derive(Debug, Clone, Copy)]
pub struct DetectorConfig {
    pub interval: Duration,
    pub misses: u32,
    pub grace: Duration,
}

/// Members asked to relay a probe to a silent peer, each interval while it stays silent.
pub const RELAYS: usize = 3;

impl DetectorConfig {
    /// How long a peer may stay silent before it is declared dead.
    pub fn dead_after(&self) -> Duration {
        self.interval * self.misses + self.grace
    }

    /// How long a peer may stay silent before it is probed through other members too:
    /// two missed intervals.
    pub fn indirect_after(&self) -> Duration {
        self.interval * 2
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
    next_ping: Instant,
    last_heard: Instant,
}

impl Liveness {
    pub fn new(now: Instant, cfg: &DetectorConfig) -> Self {
        Liveness {
            next_ping: now + cfg.interval,
            last_heard: now,
        }
    }

    /// Something authentic arrived from the peer.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// Our own process was paused: probe the peer now, and give it `misses` intervals
    /// from `now` to answer before its silence counts against it.
    pub fn recheck(&mut self, now: Instant, cfg: &DetectorConfig) {
        if let Some(from) = now.checked_sub(cfg.grace) {
            self.last_heard = self.last_heard.max(from);
        }
        self.next_ping = self.next_ping.min(now);
    }

    /// True if the peer has been silent long enough to be probed through others.
    pub fn wants_relays(&self, now: Instant, cfg: &DetectorConfig) -> bool {
        now >= self.last_heard + cfg.indirect_after()
    }

    /// True if a heartbeat is due at `now`; schedules the next one.
    pub fn ping_due(&mut self, now: Instant, cfg: &DetectorConfig) -> bool {
        if self.next_ping > now {
            return false;
        }
        self.next_ping = now + cfg.interval;
        true
    }

    /// True if the peer has been silent too long.
    pub fn is_dead(&self, now: Instant, cfg: &DetectorConfig) -> bool {
        now >= self.last_heard + cfg.dead_after()
    }

    /// The next instant this liveness needs attention.
    pub fn deadline(&self, cfg: &DetectorConfig) -> Instant {
        self.next_ping.min(self.last_heard + cfg.dead_after())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: DetectorConfig = DetectorConfig {
        interval: Duration::from_millis(100),
        misses: 3,
        grace: Duration::from_millis(1000),
    };

    #[test]
    fn a_peer_is_dead_only_after_misses_plus_grace() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &CFG);
        assert!(!l.is_dead(t0 + Duration::from_millis(1299), &CFG));
        assert!(l.is_dead(t0 + Duration::from_millis(1300), &CFG));
        l.heard(t0 + Duration::from_millis(1000));
        assert!(!l.is_dead(t0 + Duration::from_millis(2299), &CFG));
    }

    #[test]
    fn after_our_own_pause_a_peer_gets_misses_intervals_to_answer() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &CFG);
        let resumed = t0 + Duration::from_secs(10);
        assert!(l.is_dead(resumed, &CFG));
        l.recheck(resumed, &CFG);
        assert!(!l.is_dead(resumed, &CFG));
        assert!(l.ping_due(resumed, &CFG), "probed at once");
        assert!(!l.is_dead(resumed + Duration::from_millis(299), &CFG));
        assert!(l.is_dead(resumed + Duration::from_millis(300), &CFG));
    }

    #[test]
    fn relays_are_wanted_after_two_silent_intervals() {
        let t0 = Instant::now();
        let l = Liveness::new(t0, &CFG);
        assert!(!l.wants_relays(t0 + Duration::from_millis(199), &CFG));
        assert!(l.wants_relays(t0 + Duration::from_millis(200), &CFG));
    }

    #[test]
    fn heartbeats_are_due_once_per_interval() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &CFG);
        assert!(!l.ping_due(t0 + Duration::from_millis(99), &CFG));
        assert!(l.ping_due(t0 + Duration::from_millis(100), &CFG));
        assert!(!l.ping_due(t0 + Duration::from_millis(150), &CFG));
        assert_eq!(l.deadline(&CFG), t0 + Duration::from_millis(200));
    }
}
