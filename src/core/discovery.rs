//! Whom to dial, and when. Nodes are learned three ways: multicast beacons and member lists
//! (their id is known), seeds (`network.peers`, an address only) and a scan of /24 subnets
//! (`network.subnets`, an address only). Seeds, and in manual mode members lost without a
//! goodbye, are probed again periodically, so a restarted seed or a healed partition
//! rejoins by itself.
//!
//! Dial rule for nodes known by id: the smaller id dials; the larger one announces itself
//! (a beacon) and dials only if it has not been dialed after `fallback_after`.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::node::NodeId;

/// Most nodes held back from redialing at once ([`Discovery::failed`]). Beacons are
/// unauthenticated without a cluster key, so every forged id can cost a failed dial and an
/// entry here: past the bound, expired entries go first, then the one ending soonest.
pub const MAX_BACKOFF: usize = 1024;

/// Most nodes heard of by id and waiting for their own dial ([`Discovery::learn`]); each
/// leaves after `fallback_after`, but forged beacons can arrive faster. Past the bound a
/// newly heard node is still answered with a beacon (it dials us), only our fallback dial
/// to it is not kept.
pub const MAX_HEARD: usize = 1024;

/// Discovery settings.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Addresses dialed at start and probed periodically while not connected.
    pub seeds: Vec<SocketAddr>,
    /// Each address's /24 is scanned on `scan_port`.
    pub subnets: Vec<Ipv4Addr>,
    pub scan_port: u16,
    /// Period of seed and lost-member probes.
    pub probe_interval: Duration,
    /// Probe members lost without a goodbye (manual mode; beacons do it with multicast).
    pub probe_lost: bool,
    /// How long a lost member keeps being probed.
    pub lost_memory: Duration,
    /// Most scan dials in flight at once.
    pub scan_concurrency: usize,
    /// A scan dial not answered by then is given up.
    pub scan_dial_timeout: Duration,
    /// While a node has no member, its subnets are scanned again this often.
    pub rescan_interval: Duration,
    /// A node heard but not dialed by then is dialed by us even if its id is smaller.
    pub fallback_after: Duration,
    /// How long to wait before redialing a node whose connection failed.
    pub redial_backoff: Duration,
}

impl DiscoveryConfig {
    /// LAN defaults with no seeds and no scan.
    pub fn lan() -> Self {
        DiscoveryConfig {
            seeds: Vec::new(),
            subnets: Vec::new(),
            scan_port: 0,
            probe_interval: Duration::from_secs(2),
            probe_lost: false,
            lost_memory: Duration::from_secs(600),
            scan_concurrency: 32,
            scan_dial_timeout: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(30),
            fallback_after: Duration::from_secs(4),
            redial_backoff: Duration::from_secs(1),
        }
    }
}

/// A dial discovery wants made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The node expected there, if known.
    pub expect: Option<NodeId>,
    /// A scan dial: short timeout, counted against the scan concurrency.
    pub scan: bool,
}

/// What to do about a node just learned by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    Dial,
    /// Let it know about us soon (it has the smaller id and will dial).
    Announce,
}

/// Discovery state.
#[derive(Debug, Default)]
pub struct Discovery {
    heard: BTreeMap<NodeId, (Instant, SocketAddr)>,
    backoff: BTreeMap<NodeId, Instant>,
    lost: BTreeMap<NodeId, (SocketAddr, Instant)>,
    scan_queue: VecDeque<SocketAddr>,
    next_probe: Option<Instant>,
    next_scan: Option<Instant>,
}

impl Discovery {
    pub fn start(&mut self, now: Instant, cfg: &DiscoveryConfig) {
        if !cfg.seeds.is_empty() || cfg.probe_lost {
            self.next_probe = Some(now);
        }
        if !cfg.subnets.is_empty() {
            self.next_scan = Some(now);
        }
    }

    /// Stops everything (the node is leaving).
    pub fn stop(&mut self) {
        *self = Discovery::default();
    }

    /// A node `id` at `addr` was learned from a beacon or a member list. The caller has
    /// checked it is not us and not already connected or being dialed.
    pub fn learn(
        &mut self,
        now: Instant,
        cfg: &DiscoveryConfig,
        me: NodeId,
        id: NodeId,
        addr: SocketAddr,
    ) -> Option<Learned> {
        if self.in_backoff(now, id) {
            return None;
        }
        if me > id && self.heard.len() >= MAX_HEARD && !self.heard.contains_key(&id) {
            return Some(Learned::Announce);
        }
        let (first, _) = *self.heard.entry(id).or_insert((now, addr));
        if me < id || first + cfg.fallback_after <= now {
            self.heard.remove(&id);
            Some(Learned::Dial)
        } else {
            Some(Learned::Announce)
        }
    }

    fn in_backoff(&self, now: Instant, id: NodeId) -> bool {
        self.backoff.get(&id).is_some_and(|&t| t > now)
    }

    /// A connection to `id` got as far as its introduction.
    pub fn connected(&mut self, id: NodeId) {
        self.heard.remove(&id);
        self.backoff.remove(&id);
        self.lost.remove(&id);
    }

    /// Node `id` is gone for good (another node answers at its address).
    pub fn forget(&mut self, id: NodeId) {
        self.heard.remove(&id);
        self.lost.remove(&id);
    }

    /// A connection to `id` failed: do not redial at once. At most [`MAX_BACKOFF`] nodes
    /// are held back; to make room, expired entries are dropped, then the one ending
    /// soonest.
    pub fn failed(&mut self, now: Instant, id: NodeId, wait: Duration) {
        if self.backoff.len() >= MAX_BACKOFF && !self.backoff.contains_key(&id) {
            self.backoff.retain(|_, until| *until > now);
            if self.backoff.len() >= MAX_BACKOFF {
                let soonest = self.backoff.iter().min_by_key(|(_, until)| **until);
                let soonest = *soonest.expect("the map is full").0;
                self.backoff.remove(&soonest);
            }
        }
        self.backoff.insert(id, now + wait);
    }

    /// Nodes heard of and waiting for their own dial.
    pub fn heard_len(&self) -> usize {
        self.heard.len()
    }

    /// Nodes held back from redialing, expired or not.
    pub fn backoff_len(&self) -> usize {
        self.backoff.len()
    }

    /// Member `id` was lost without a goodbye; probe it for a while if configured to.
    pub fn lost(&mut self, now: Instant, cfg: &DiscoveryConfig, id: NodeId, addr: SocketAddr) {
        if cfg.probe_lost {
            self.lost.insert(id, (addr, now + cfg.lost_memory));
        }
    }

    /// Dials due at `now`. `scans_in_flight` is how many scan dials are still pending;
    /// `alone` says this node has no member (so a finished scan is repeated later).
    pub fn due(
        &mut self,
        now: Instant,
        cfg: &DiscoveryConfig,
        scans_in_flight: usize,
        alone: bool,
    ) -> Vec<Target> {
        let mut out = Vec::new();
        let overdue: Vec<NodeId> = self
            .heard
            .iter()
            .filter(|(_, (t, _))| *t + cfg.fallback_after <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in overdue {
            let (_, addr) = self.heard.remove(&id).unwrap();
            if !self.in_backoff(now, id) {
                out.push(Target {
                    addr,
                    expect: Some(id),
                    scan: false,
                });
            }
        }
        if self.next_probe.is_some_and(|t| t <= now) {
            self.next_probe = Some(now + cfg.probe_interval);
            self.lost.retain(|_, (_, forget)| *forget > now);
            for &addr in &cfg.seeds {
                out.push(Target {
                    addr,
                    expect: None,
                    scan: false,
                });
            }
            for (&id, &(addr, _)) in &self.lost {
                if !self.in_backoff(now, id) {
                    out.push(Target {
                        addr,
                        expect: Some(id),
                        scan: false,
                    });
                }
            }
        }
        if self.next_scan.is_some_and(|t| t <= now) {
            self.next_scan = None;
            for subnet in &cfg.subnets {
                let [a, b, c, _] = subnet.octets();
                for d in 1..=254 {
                    let ip = IpAddr::V4(Ipv4Addr::new(a, b, c, d));
                    self.scan_queue
                        .push_back(SocketAddr::new(ip, cfg.scan_port));
                }
            }
        }
        let room = cfg.scan_concurrency.saturating_sub(scans_in_flight);
        for addr in self.scan_queue.drain(..room.min(self.scan_queue.len())) {
            out.push(Target {
                addr,
                expect: None,
                scan: true,
            });
        }
        if self.scan_queue.is_empty()
            && scans_in_flight == 0
            && self.next_scan.is_none()
            && !cfg.subnets.is_empty()
            && alone
        {
            self.next_scan = Some(now + cfg.rescan_interval);
        }
        out
    }

    /// True while scan addresses wait for room: the caller pumps [`Discovery::due`] again
    /// as scan dials finish.
    pub fn scanning(&self) -> bool {
        !self.scan_queue.is_empty()
    }

    /// The next instant [`Discovery::due`] has work.
    pub fn poll_timeout(&self, cfg: &DiscoveryConfig) -> Option<Instant> {
        let fallback = self.heard.values().map(|(t, _)| *t + cfg.fallback_after);
        fallback.chain(self.next_probe).chain(self.next_scan).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 27272)
    }

    #[test]
    fn the_smaller_id_dials_and_the_larger_falls_back() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        assert_eq!(
            d.learn(t0, &cfg, id(1), id(2), addr(2)),
            Some(Learned::Dial)
        );
        assert_eq!(
            d.learn(t0, &cfg, id(3), id(2), addr(2)),
            Some(Learned::Announce)
        );
        assert!(d.due(t0, &cfg, 0, true).is_empty());
        let later = t0 + cfg.fallback_after;
        assert_eq!(
            d.due(later, &cfg, 0, true),
            vec![Target {
                addr: addr(2),
                expect: Some(id(2)),
                scan: false
            }]
        );
    }

    #[test]
    fn backoff_holds_dials_back() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        d.failed(t0, id(2), Duration::from_secs(1));
        assert_eq!(d.learn(t0, &cfg, id(1), id(2), addr(2)), None);
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            d.learn(t1, &cfg, id(1), id(2), addr(2)),
            Some(Learned::Dial)
        );
    }

    #[test]
    fn forged_ids_cannot_grow_the_backoff_map_past_its_bound() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        let forged = |n: u32| {
            let mut b = [0xee; 16];
            b[..4].copy_from_slice(&n.to_be_bytes());
            NodeId(b)
        };
        // One failed dial per forged beacon, each waiting longer than the last.
        for n in 0..20_000u32 {
            let wait = Duration::from_secs(60) + Duration::from_millis(n.into());
            d.failed(t0, forged(n), wait);
            assert!(
                d.backoff_len() <= MAX_BACKOFF,
                "{} after {n}",
                d.backoff_len()
            );
        }
        assert_eq!(d.backoff_len(), MAX_BACKOFF);
        // The newest are held back; the one ending soonest made room.
        assert_eq!(d.learn(t0, &cfg, id(0), forged(19_999), addr(2)), None);
        assert_eq!(
            d.learn(t0, &cfg, id(0), forged(0), addr(2)),
            Some(Learned::Dial)
        );
        // Expired entries go first: one new failure later clears them all.
        let later = t0 + Duration::from_secs(3600);
        d.failed(later, id(2), Duration::from_secs(1));
        assert_eq!(d.backoff_len(), 1);
        assert_eq!(d.learn(later, &cfg, id(1), id(2), addr(2)), None);
    }

    #[test]
    fn forged_ids_cannot_grow_the_heard_map_past_its_bound() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        let me = NodeId([0xff; 16]);
        for n in 0..20_000u32 {
            let mut b = [0x01; 16];
            b[..4].copy_from_slice(&n.to_be_bytes());
            let learned = d.learn(t0, &cfg, me, NodeId(b), addr(2));
            assert_eq!(learned, Some(Learned::Announce), "answered all the same");
            assert!(d.heard_len() <= MAX_HEARD, "{} after {n}", d.heard_len());
        }
        // They leave after the fallback delay, and room is made for new ones.
        let later = t0 + cfg.fallback_after;
        assert_eq!(d.due(later, &cfg, 0, false).len(), MAX_HEARD);
        assert_eq!(d.heard_len(), 0);
    }

    #[test]
    fn a_scan_covers_the_subnet_with_bounded_concurrency() {
        let mut cfg = DiscoveryConfig::lan();
        cfg.subnets = vec![Ipv4Addr::new(192, 168, 7, 33)];
        cfg.scan_port = 4000;
        let t0 = Instant::now();
        let mut d = Discovery::default();
        d.start(t0, &cfg);
        let mut seen = Vec::new();
        let mut in_flight = 0;
        for _ in 0..100 {
            let batch = d.due(t0, &cfg, in_flight, true);
            assert!(in_flight + batch.len() <= cfg.scan_concurrency);
            seen.extend(batch.iter().map(|t| t.addr));
            in_flight = 0; // all of them answered
            if !d.scanning() {
                break;
            }
        }
        assert_eq!(seen.len(), 254);
        assert_eq!(seen[0], "192.168.7.1:4000".parse().unwrap());
        assert_eq!(seen[253], "192.168.7.254:4000".parse().unwrap());
        assert_eq!(d.poll_timeout(&cfg), Some(t0 + cfg.rescan_interval));
    }

    #[test]
    fn seeds_and_lost_members_are_probed_periodically() {
        let mut cfg = DiscoveryConfig::lan();
        cfg.seeds = vec![addr(9)];
        cfg.probe_lost = true;
        let t0 = Instant::now();
        let mut d = Discovery::default();
        d.start(t0, &cfg);
        assert_eq!(d.due(t0, &cfg, 0, true).len(), 1);
        d.lost(t0, &cfg, id(4), addr(4));
        assert!(
            d.due(t0, &cfg, 0, true).is_empty(),
            "not before the next probe"
        );
        let t1 = t0 + cfg.probe_interval;
        let targets = d.due(t1, &cfg, 0, true);
        assert_eq!(targets.len(), 2);
        assert!(targets.iter().any(|t| t.expect == Some(id(4))));
        let forgotten = t0 + cfg.lost_memory + cfg.probe_interval;
        let targets = d.due(forgotten, &cfg, 0, true);
        assert_eq!(
            targets.len(),
            1,
            "the lost member is forgotten, the seed is not"
        );
    }
}
