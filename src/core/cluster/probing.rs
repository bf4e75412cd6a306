//! Liveness probes over UDP (formats and keys in [`crate::core::probe`], the silence rule
//! in [`crate::core::detector`]): sending each member its probe, probing silent members
//! through others, relaying for others, and taking datagrams in.
//!
//! Every datagram is hostile until it opens: its shape is checked, then that its source is
//! an address some member has and its sender a member, then the replay window, and only
//! then one AES-GCM open over at most [`probe::MAX_DATAGRAM`] bytes. Nothing is stored for
//! a datagram that does not open, except the relay table's entries, which only an
//! authentic request from a member makes ([`MAX_RELAYS`] at most).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, ConnId, Output};
use crate::core::detector::RELAYS;
use crate::core::node::NodeId;
use crate::core::probe::{self, Header, Refused};

/// Relays this node carries at once (asker, target): a relay request beyond it is
/// refused. An entry lives one failure-detector bound at most.
pub const MAX_RELAYS: usize = 1024;

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// Seals a probe of `kind` to member `to` (on `conn`) and queues it for `addr`.
    fn send_probe(&mut self, conn: ConnId, to: NodeId, kind: u8, plain: &[u8], addr: SocketAddr) {
        let me = self.me.id;
        let Some(keys) = self.membership[conn].probe_keys() else {
            return;
        };
        if let Some(bytes) = keys.seal(kind, me, to, plain) {
            self.stats.probes_sent += 1;
            self.outputs.push_back(Output::Probe { addr, bytes });
        }
    }

    /// The heartbeat of member `conn` is due: a direct probe, and if it has been silent
    /// for a while, a sealed ping through up to [`RELAYS`] other members.
    pub(super) fn probe(&mut self, now: Instant, conn: ConnId) {
        let link = &self.membership[conn];
        let (Some(target), Some(addr)) = (link.peer_id(), link.listen_addr()) else {
            return;
        };
        let indirect = link.wants_relays(now, &self.config.detector);
        self.send_probe(conn, target, probe::PING, &[0], addr);
        if !indirect {
            return;
        }
        let mut others: Vec<ConnId> = self.membership.member_links();
        others.retain(|&c| c != conn);
        // A different few each interval, so one bad relay does not decide.
        for i in 0..RELAYS.min(others.len()) {
            let j = i + (self.rng.next_u32() as usize) % (others.len() - i);
            others.swap(i, j);
        }
        let me = self.me.id;
        for &relay in others.iter().take(RELAYS) {
            let r = &self.membership[relay];
            let (Some(relay_id), Some(relay_addr)) = (r.peer_id(), r.listen_addr()) else {
                continue;
            };
            let Some(keys) = self.membership[conn].probe_keys() else {
                return;
            };
            let Some(inner) = keys.seal(probe::PING, me, target, &[probe::FLAG_ANSWER]) else {
                return;
            };
            self.stats.indirect_probes += 1;
            self.send_probe(relay, relay_id, probe::RELAY, &inner, relay_addr);
        }
    }

    /// Our own process did not run for a while (a timer fired far too late): every member
    /// is probed at once and given the detector's misses to answer before its silence
    /// counts (see [`crate::core::detector::Liveness::recheck`]).
    pub(super) fn notice_pause(&mut self, now: Instant) {
        self.stats.pauses_noticed += 1;
        let detector = self.config.detector;
        for (_, link) in self.membership.iter_mut() {
            link.recheck(now, &detector);
        }
    }

    /// Forgets relays whose answer never came, and rebuilds the addresses members have
    /// (probes from any other address are dropped unread).
    pub(super) fn tidy_probes(&mut self, now: Instant) {
        self.relays.retain(|_, until| *until > now);
        self.member_ips.clear();
        for conn in self.membership.member_links() {
            if let Some(peer) = self.membership[conn].peer() {
                self.member_ips.insert(peer.ip);
            }
        }
    }

    /// A datagram arrived on the probe socket from `from`.
    pub fn handle_probe(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.leaving {
            return;
        }
        match self.take_probe(now, from, datagram) {
            Ok(true) => self.stats.probes_received += 1,
            Ok(false) => {}
            Err(_) => self.stats.probes_rejected += 1,
        }
    }

    /// Takes a datagram in: `Ok(true)` if it was authentic and for us, `Ok(false)` if we
    /// passed it on for others.
    fn take_probe(&mut self, now: Instant, from: SocketAddr, d: &[u8]) -> Result<bool, Refused> {
        let h = Header::parse(d).ok_or(Refused::Malformed)?;
        if !self.knows_ip(from.ip(), h.from) {
            return Err(Refused::Unknown);
        }
        if h.to != self.me.id {
            return self.relay_answer(&h, d).map(|()| false);
        }
        let conn = self
            .membership
            .member_link(h.from)
            .ok_or(Refused::Unknown)?;
        let link = &mut self.membership[conn];
        let plain = link.probe_keys().ok_or(Refused::Unknown)?.open(&h, d)?;
        link.heard(now);
        match h.kind {
            probe::PING => {
                if plain.first().is_some_and(|f| f & probe::FLAG_ANSWER != 0) {
                    // Answered to where it came from: the relay that brought it.
                    self.send_probe(conn, h.from, probe::ACK, &[0], from);
                }
                Ok(true)
            }
            // The request is authentic (a sign of life of the asker) even if we do not
            // carry it out.
            probe::RELAY => self.relay_ping(now, h.from, &plain).map(|()| true),
            _ => Ok(true),
        }
    }

    /// True if `ip` is an address a member has: the sender's own (a member that joined
    /// since the last [`Cluster::tidy_probes`] included), or another member's (a relay).
    fn knows_ip(&self, ip: IpAddr, sender: NodeId) -> bool {
        self.member_ips.contains(&ip)
            || self
                .membership
                .member_link(sender)
                .and_then(|c| self.membership[c].peer())
                .is_some_and(|p| p.ip == ip)
    }

    /// Member `asker` (authenticated) asks us to pass `inner` on: it must be a ping from
    /// `asker` itself to another member. We cannot open it (it is sealed for the target),
    /// only check its header; the target checks the rest.
    fn relay_ping(&mut self, now: Instant, asker: NodeId, inner: &[u8]) -> Result<(), Refused> {
        let h = Header::parse(inner).ok_or(Refused::NotRelayed)?;
        let ours = h.kind == probe::PING && h.from == asker && h.to != self.me.id;
        let target = self.membership.member_link(h.to).filter(|_| ours);
        let addr = target.and_then(|c| self.membership[c].listen_addr());
        let Some(addr) = addr else {
            return Err(Refused::NotRelayed);
        };
        let key = (asker, h.to);
        if self.relays.len() >= MAX_RELAYS && !self.relays.contains_key(&key) {
            return Err(Refused::NotRelayed);
        }
        self.relays
            .insert(key, now + self.config.detector.dead_after());
        self.stats.probes_relayed += 1;
        self.stats.probes_sent += 1;
        self.outputs.push_back(Output::Probe {
            addr,
            bytes: inner.to_vec(),
        });
        Ok(())
    }

    /// A datagram for another node: passed on only if it is the answer to a ping we
    /// relayed (one answer per request), to the member that asked.
    fn relay_answer(&mut self, h: &Header, d: &[u8]) -> Result<(), Refused> {
        if h.kind != probe::ACK || self.relays.remove(&(h.to, h.from)).is_none() {
            return Err(Refused::NotRelayed);
        }
        let asker = self.membership.member_link(h.to);
        let addr = asker.and_then(|c| self.membership[c].listen_addr());
        let addr = addr.ok_or(Refused::NotRelayed)?;
        self.stats.probes_relayed += 1;
        self.stats.probes_sent += 1;
        self.outputs.push_back(Output::Probe {
            addr,
            bytes: d.to_vec(),
        });
        Ok(())
    }
}
