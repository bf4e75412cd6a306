//! Failure detection on one connection. Every member is sent a heartbeat each interval;
//! any record from a peer counts as a sign of life. A peer silent for `misses` intervals
//! plus a grace period is dead (the original's rule: 3 missed heartbeats + 1 s).
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

impl DetectorConfig {
    /// How long a peer may stay silent before it is declared dead.
    pub fn dead_after(&self) -> Duration {
        self.interval * self.misses + self.grace
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
    fn heartbeats_are_due_once_per_interval() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0, &CFG);
        assert!(!l.ping_due(t0 + Duration::from_millis(99), &CFG));
        assert!(l.ping_due(t0 + Duration::from_millis(100), &CFG));
        assert!(!l.ping_due(t0 + Duration::from_millis(150), &CFG));
        assert_eq!(l.deadline(&CFG), t0 + Duration::from_millis(200));
    }
}
