//! When this node multicasts its next beacon: a quick burst at start so a cluster forms
//! fast, then a jittered period so late nodes and healed partitions are found, and an early
//! beacon to answer a newcomer that waits to hear us before it dials.

use std::time::{Duration, Instant};

use rand_core::RngCore;

/// The beacon timer of one node.
#[derive(Debug, Default)]
pub struct BeaconSchedule {
    started: Option<Instant>,
    sent: usize,
    last: Option<Instant>,
    next: Option<Instant>,
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
    }

    /// When the next beacon is due, if one is planned.
    pub fn next(&self) -> Option<Instant> {
        self.next
    }

    pub fn is_due(&self, now: Instant) -> bool {
        self.next.is_some_and(|t| t <= now)
    }

    /// A beacon went out at `now`. The next follows the burst's offsets from the start
    /// while they lie ahead, then `interval` ±10%.
    pub fn sent(
        &mut self,
        now: Instant,
        burst: &[Duration],
        interval: Duration,
        rng: &mut impl RngCore,
    ) {
        self.sent += 1;
        self.last = Some(now);
        let started = self.started.unwrap_or(now);
        self.next = Some(match burst.get(self.sent) {
            Some(&offset) if started + offset > now => started + offset,
            _ => now + jittered(interval, rng),
        });
    }

    /// A node with a smaller id waits to hear us before it dials: beacon as soon as
    /// `min_gap` after the last one allows, rather than at the next periodic beacon.
    pub fn answer_announce(&mut self, now: Instant, min_gap: Duration) {
        let soonest = self.last.map_or(now, |t| (t + min_gap).max(now));
        if self.next.is_none_or(|t| t > soonest) {
            self.next = Some(soonest);
        }
    }
}

/// `d` ±10%, so nodes started together do not beacon in lockstep forever.
fn jittered(d: Duration, rng: &mut impl RngCore) -> Duration {
    let tenth = d / 10;
    let span = tenth.as_millis().max(1) as u64 * 2;
    d - tenth + Duration::from_millis(rng.next_u64() % span)
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
        s.sent(t0, &burst, MS(2000), &mut rng);
        assert_eq!(s.next(), Some(t0 + MS(50)));
        // A late beacon does not shift the burst: offsets count from the start.
        s.sent(t0 + MS(60), &burst, MS(2000), &mut rng);
        assert_eq!(s.next(), Some(t0 + MS(150)));
        let mut gaps = std::collections::BTreeSet::new();
        let mut now = t0 + MS(150);
        for _ in 0..50 {
            s.sent(now, &burst, MS(2000), &mut rng);
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
        s.sent(t0 + MS(80), &[MS(0), MS(50)], MS(1000), &mut rng);
        let gap = s.next().unwrap() - (t0 + MS(80));
        assert!(gap >= MS(900) && gap < MS(1100), "gap {gap:?}");
    }

    #[test]
    fn an_announce_is_answered_no_sooner_than_the_least_gap() {
        let (mut s, mut rng, t0) = started(3);
        s.sent(t0, &[], MS(2000), &mut rng);
        s.answer_announce(t0 + MS(10), MS(50));
        assert_eq!(s.next(), Some(t0 + MS(50)));
        s.answer_announce(t0 + MS(70), MS(50));
        assert_eq!(s.next(), Some(t0 + MS(50)), "an earlier beacon stays");
        s.stop();
        assert_eq!(s.next(), None);
        assert!(!s.is_due(t0 + MS(5000)));
    }
}
