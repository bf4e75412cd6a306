//! How this node finds peers and is found: the beacons it sends, the dials discovery asks
//! for, and the addresses it learns from beacons and member lists.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, ConnId, Output};
use crate::core::beacon::{self, Beacon};
use crate::core::beacon_schedule;
use crate::core::discovery::{Hint, Learned, Target};
use crate::core::node::{Candidate, NodeId};

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// Carries out the dials discovery wants now.
    pub(super) fn pump(&mut self, now: Instant) {
        let released: Vec<NodeId> = self.releasable_holds().map(|(id, _)| id).collect();
        for id in released {
            self.discovery.release(now, id);
        }
        let released: Vec<SocketAddr> = self.releasable_scans().map(|(a, _)| a).collect();
        for addr in released {
            self.discovery.release_scan(addr);
        }
        let scans = self.membership.scans_in_flight();
        let alone = !self.membership.has_members();
        for t in self
            .discovery
            .due(now, &self.config.discovery, scans, alone)
        {
            if self.is_own_addr(t.addr) {
                // One seed list for every node names the seed itself too: a seed that is
                // us is reached, or the first election would wait until it was given up.
                self.discovery.reached(t.addr);
            } else if !self.knows(t.expect, t.addr) {
                self.dial_unless_dialed(now, t);
            }
        }
    }

    /// Dials `target`; if it is a node learnt by id (from a beacon or a member list) or a
    /// scanned address, not while a connection from its IP address is still before its
    /// proof: that may be the node dialing us (see
    /// [`crate::core::discovery::Discovery::hold`]). The dial is made once those
    /// connections are proven (introduced, for a scan: the address is all it knows) or
    /// gone, or after `handshake_timeout` at most.
    fn dial_unless_dialed(&mut self, now: Instant, target: Target) {
        let ip = target.addr.ip();
        let wait = self.config.handshake_timeout;
        if target.scan {
            if let Some(newest) = self.accepted_unknown(ip, ConnId::MAX, true) {
                if self.discovery.hold_scan(now, target.addr, newest, wait) {
                    return;
                }
            }
        } else if let (Some(id), false) = (target.expect, target.ask) {
            if let Some(newest) = self.accepted_unknown(ip, ConnId::MAX, false) {
                if self.discovery.hold(now, (id, target.addr), newest, wait) {
                    return;
                }
            }
            self.discovery.unhold(id);
        }
        self.dial(now, target);
    }

    /// A connection from `ip` was accepted (`inbound`) while our own dials to `ip` that
    /// it may cross (scans, dials to nodes learnt by id) are before their proof: it may be
    /// the node there dialing us, each dial made before the other arrived (nodes scanning
    /// each other as they start together, two newcomers named to each other by different
    /// members' lists, a scan and a list). The end with the larger IP address gives its
    /// dial up, as if the connection had come before it (see
    /// [`Cluster::dial_unless_dialed`]); the other keeps its own, which is that connection
    /// at this end. Once per scanned address in a scan, and once per node learnt by id
    /// until it connects, so connections that never prove themselves, or prove to be
    /// another node, delay the dial once, `handshake_timeout` at most.
    pub(super) fn yield_crossing_dials(&mut self, now: Instant, ip: IpAddr, inbound: ConnId) {
        if !yields_to(self.me.ip, ip) {
            return;
        }
        let wait = self.config.handshake_timeout;
        for conn in self.membership.unproven_dials_to(ip) {
            let link = &self.membership[conn];
            let given_way = match (link.scan, link.expect) {
                (true, _) => self.discovery.give_way_scan(now, link.addr, inbound, wait),
                (false, Some(id)) => {
                    let addr = link.addr;
                    self.discovery.give_way(now, (id, addr), inbound, wait)
                }
                (false, None) => false,
            };
            if given_way {
                self.close(conn);
            }
        }
    }

    /// A peer introduced itself as listening at `addr`: our scan dials there that have not
    /// connected yet are given up (they would only reach it again). One that has connected
    /// is left to [`Cluster::yield_crossing_dials`] at the other end: each end dropping its
    /// own connected dial could leave the pair with none.
    pub(super) fn drop_scans_not_connected(&mut self, addr: SocketAddr) {
        for conn in self.membership.unproven_dials_to(addr.ip()) {
            let link = &self.membership[conn];
            if link.scan && link.addr == addr && link.is_dialing() {
                self.close(conn);
            }
        }
    }

    /// The newest connection from `ip`, accepted up to `newest`, whose peer has not yet
    /// proven its id (`or_introduced`: or not yet said where it listens).
    fn accepted_unknown(&self, ip: IpAddr, newest: ConnId, or_introduced: bool) -> Option<ConnId> {
        self.membership.accepted_unknown(ip, newest, or_introduced)
    }

    /// Held dials whose connections are all proven or gone, and since when each was held.
    fn releasable_holds(&self) -> impl Iterator<Item = (NodeId, Instant)> + '_ {
        let holds = self.discovery.holds();
        let free = holds
            .filter(move |&(_, ip, newest, _)| self.accepted_unknown(ip, newest, false).is_none());
        free.map(|(id, _, _, since)| (id, since))
    }

    /// Held scan dials whose connections are all introduced or gone, and since when.
    fn releasable_scans(&self) -> impl Iterator<Item = (SocketAddr, Instant)> + '_ {
        let holds = self.discovery.scan_holds();
        let free = holds.filter(move |&(addr, newest, _)| {
            self.accepted_unknown(addr.ip(), newest, true).is_none()
        });
        free.map(|(addr, _, since)| (addr, since))
    }

    /// When a held dial is to be released: at once (its time is past) if one can be.
    pub(super) fn holds_due(&self) -> Option<Instant> {
        let ids = self.releasable_holds().map(|(_, since)| since);
        ids.chain(self.releasable_scans().map(|(_, since)| since))
            .min()
    }

    /// The seeds are now `seeds` (the driver looks `network.peers` names up again now and
    /// then; resolving is I/O, so only its answers come here). An address not among the
    /// seeds before is dialed at once; one gone is no longer probed (a member there stays
    /// a member until it leaves or fails).
    pub fn set_seeds(&mut self, now: Instant, seeds: Vec<SocketAddr>) {
        let old = &self.config.discovery.seeds;
        let added = seeds.iter().any(|a| !old.contains(a));
        self.config.discovery.seeds = seeds;
        if added && !self.leaving {
            self.discovery.seeds_added(now);
            self.pump(now);
        }
    }

    /// Node `id` listens at `addr`, as a beacon or a member list said (`hint`).
    pub(super) fn learn(&mut self, now: Instant, id: NodeId, addr: SocketAddr, hint: Hint) {
        if id == self.me.id || self.knows(Some(id), addr) {
            if hint == Hint::Beacon && self.membership.member_link(id).is_some() {
                // A member's beacon: the newcomers we owe an answer heard it too, and each
                // links with that member, whose list names us, or with its first member,
                // whose list does unless it was taken while the cluster was forming. So
                // should one not dial us, we dial it soon (`DROPPED_ANSWER_DIAL_AFTER`),
                // not at `fallback_after` as for any other beacon whose sender does not.
                let soon = now + beacon_schedule::DROPPED_ANSWER_DIAL_AFTER;
                for (id, _) in self.beacons.answered_by_member() {
                    self.discovery.hasten(id, soon);
                }
            }
            return;
        }
        let cfg = &self.config.discovery;
        match self.discovery.learn(now, cfg, self.me.id, (id, addr), hint) {
            Some(Learned::Dial) => self.dial_unless_dialed(
                now,
                Target {
                    addr,
                    expect: Some(id),
                    scan: false,
                    ask: false,
                },
            ),
            Some(Learned::Deferred) => self.stats.dials_skipped += 1,
            Some(Learned::Announce) => {
                // It has the smaller id and dials us once it hears us.
                let gap = self.config.beacon_min_gap;
                let spread = beacon_schedule::announce_spread(gap, self.membership.member_count());
                let wait = beacon_schedule::up_to(spread, &mut self.rng);
                self.beacons.answer_announce(now, (gap, wait), (id, addr));
            }
            None => {}
        }
    }

    /// `peer` was refused at admission (`by_us`: by our filter, else by its): no dial to it
    /// or its address, and (by us) refused unasked, for a wait that doubles per refusal in
    /// a row (see [`crate::core::discovery::REFUSAL_FIRST_WAIT`]).
    pub(super) fn hold_back_refused(&mut self, now: Instant, peer: &Candidate, by_us: bool) {
        let jitter = self.rng.next_u32();
        let addr = SocketAddr::new(peer.ip, peer.port);
        self.discovery.refused(now, peer.id, addr, by_us, jitter);
    }

    /// True if we are, or are connecting to, node `id` or the node listening at `addr`:
    /// also while a connection on which `id` has proven itself awaits its introduction
    /// (another dial to it would cross that one).
    fn knows(&self, id: Option<NodeId>, addr: SocketAddr) -> bool {
        let proven = |id| self.membership.is_proven(id);
        self.is_own_addr(addr) || self.membership.is_known(id, addr) || id.is_some_and(proven)
    }

    /// True if `addr` is where this node listens (as configured, advertised, or found by
    /// dialing ourselves there).
    fn is_own_addr(&self, addr: SocketAddr) -> bool {
        addr == SocketAddr::new(self.me.ip, self.me.port)
            || Some(addr) == self.me.advertised
            || self.own_addrs.contains(&addr)
    }

    /// True if the answer planned is still owed: a newcomer it answers has not linked
    /// with us (nor we with it) meanwhile (see [`beacon_schedule`]).
    pub(super) fn answer_owed(&self) -> bool {
        self.beacons
            .answer_owed(|id, addr| self.knows(Some(id), addr))
    }

    /// Broadcasts our beacon and schedules the next one.
    pub(super) fn send_beacon(&mut self, now: Instant) {
        self.beacon_seq += 1;
        let bytes = beacon::encode(
            &self.config.cluster,
            self.config.cluster_key.as_ref(),
            Beacon {
                id: self.me.id,
                addr: SocketAddr::new(self.me.ip, self.me.port),
                time_ms: self.wall_ms(now).unwrap_or(0),
                seq: self.beacon_seq,
            },
        );
        self.outputs.push_back(Output::Beacon(bytes));
        self.stats.beacons_sent += 1;
        let periods = (self.config.beacon_interval, self.beacon_period());
        self.beacons
            .sent(now, &self.config.beacon_burst, periods, &mut self.rng);
    }

    /// Our beacon period now: the longer the more members we have (see
    /// [`beacon_schedule::period`]).
    pub(super) fn beacon_period(&self) -> Duration {
        let members = self.membership.member_count();
        beacon_schedule::period(self.config.beacon_interval, members)
    }
}

/// Of two nodes at `ours` and `theirs` whose dials to each other cross, whether ours is
/// the one to give way: the larger address does. Nothing is decided between addresses of
/// different families, or from an address we do not know (listening on every address).
fn yields_to(ours: IpAddr, theirs: IpAddr) -> bool {
    !ours.is_unspecified() && ours.is_ipv4() == theirs.is_ipv4() && ours > theirs
}
