//! A connection on its way to membership: Dialing → Handshake → Introducing → Admitting →
//! Member. The handshake's frames are read in `receive`; this file starts it, takes the
//! peer's introduction, applies the one-connection-per-pair rule and the two admission
//! verdicts.

use std::net::SocketAddr;
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, ConnId, Event, Output};
use crate::core::crypto::{Handshake, Role};
use crate::core::discovery::Target;
use crate::core::error::{ConnectionError, HandshakeError};
use crate::core::link::Link;
use crate::core::message::{Message, MAX_MEMBERS};
use crate::core::node::{NodeId, NodeInfo};
use crate::core::output::{Happened, Reason};
use crate::core::wire;

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// Dials `target`, unless this node is leaving or has too many dials pending.
    pub(super) fn dial(&mut self, now: Instant, target: Target) {
        if self.leaving {
            return;
        }
        // Counted apart from incoming ones, so stalled peers cannot stop us dialing.
        if self.membership.pending_dials() >= self.config.max_pending_handshakes {
            self.stats.connections_refused += 1;
            return;
        }
        let timeout = if target.scan {
            self.config.discovery.scan_dial_timeout
        } else {
            self.config.dial_timeout
        };
        let conn = self.membership.add(Link::dial(&target, now + timeout));
        self.outputs.push_back(Output::Dial {
            conn,
            addr: target.addr,
        });
    }

    /// Our dial on `conn` succeeded: open the handshake as its initiator.
    pub(super) fn start_handshake(&mut self, now: Instant, conn: ConnId) {
        let Some(link) = self.membership.get_mut(conn) else {
            self.outputs.push_back(Output::Close { conn });
            return;
        };
        if !link.is_dialing() {
            return;
        }
        let key = self.config.cluster_key.as_ref();
        let (hs, hello) =
            Handshake::start(Role::Initiator, &self.config.cluster, key, &mut self.rng);
        link.connected(hs, now + self.config.handshake_timeout);
        let scan = link.scan;
        self.transmit(conn, wire::frame(&hello));
        if scan {
            self.pump(now);
        }
    }

    /// A peer at `addr` connected to us: open the handshake as its responder, if there is
    /// room (see [`Cluster::accept`]).
    pub(super) fn accept_incoming(&mut self, now: Instant, addr: SocketAddr) -> Option<ConnId> {
        let from_ip = self.membership.pending_accepts_from(addr.ip());
        if self.leaving || from_ip >= self.config.max_pending_per_ip {
            self.stats.connections_refused += 1;
            return None;
        }
        if self.membership.pending() >= self.config.max_pending_handshakes {
            let oldest = self.membership.oldest_accept_before_admission();
            self.stats.connections_refused += 1;
            self.close(oldest?);
        }
        let key = self.config.cluster_key.as_ref();
        let (hs, hello) =
            Handshake::start(Role::Responder, &self.config.cluster, key, &mut self.rng);
        let deadline = now + self.config.handshake_timeout;
        let conn = self.membership.add(Link::accepted(addr, hs, deadline));
        self.transmit(conn, wire::frame(&hello));
        Some(conn)
    }

    /// The peer on `conn` proved its id `id` (its key confirmation verified); `ours` is the
    /// responder's own confirmation, released only now. Each end introduces itself only
    /// to a peer that proved the id it was dialed for: whoever answers a stale or forged
    /// hint learns nothing about us.
    pub(super) fn proven(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: NodeId,
        ours: Option<Vec<u8>>,
    ) -> Result<(), ConnectionError> {
        let link = &mut self.membership[conn];
        if id == self.me.id {
            // Only this node holds its key: we dialed ourselves. The responder still
            // confirms, so that the dialing end learns it too and stops dialing there.
            if link.role == Role::Initiator {
                self.own_addrs.insert(link.addr);
            }
            if let Some(confirmation) = ours {
                self.transmit(conn, confirmation);
            }
            return Err(ConnectionError::Protocol("connected to itself"));
        }
        if let Some(expected) = link.expect.filter(|&e| e != id) {
            // A hint (a beacon, a member list) said `expected` listens here, and the peer
            // proved another id: the hint was stale (`expected` restarted with a new key,
            // or the address was reused) or forged. The dial fails and nothing is added;
            // `expected`, if it was a suspect, is gone for good. The peer that answered is
            // found by its own beacons and dials.
            link.expect = None;
            self.stats.identity_mismatches += 1;
            self.suspect_why.remove(&expected);
            if let Some(info) = self.membership.clear_suspect(expected) {
                self.removed(now, info, Reason::Replaced);
            }
            self.discovery.forget(expected);
            let proven = id;
            return Err(HandshakeError::UnexpectedIdentity { expected, proven }.into());
        }
        self.stats.handshakes_completed += 1;
        if let Some(confirmation) = ours {
            self.transmit(conn, confirmation);
        }
        let intro = self.introduction();
        self.send(now, conn, &intro);
        Ok(())
    }

    /// What we say about ourselves once the handshake is done.
    pub(super) fn introduction(&self) -> Message<'static> {
        Message::Introduce {
            id: self.me.id,
            host_name: self.me.host_name.clone(),
            port: self.me.port,
            metadata: self.me.metadata.clone(),
            master_eligible: self.me.master_eligible,
            max_message: u32::try_from(self.config.max_message).unwrap_or(u32::MAX),
        }
    }

    /// The peer on `conn` said who it is.
    pub(super) fn introduced(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: NodeInfo,
    ) -> Result<(), ConnectionError> {
        let id = peer.id;
        let link = &mut self.membership[conn];
        debug_assert!(id != self.me.id && link.expect.is_none_or(|e| e == id));
        let ip = peer.ip;
        let (all, from_ip) = self.membership.introduced_counts(ip, id);
        if all >= self.config.max_members || from_ip >= self.config.max_members_per_ip {
            // Full, or this address has enough peers: refused before anyone is asked.
            self.stats.connections_refused += 1;
            let backoff = self.config.discovery.redial_backoff;
            self.discovery.failed(now, id, backoff);
            self.explain_refusal(peer, Reason::Full);
            self.close(conn);
            return Ok(());
        }
        self.membership[conn].introduced(peer, now + self.config.admission_timeout);
        self.discovery.connected(id);
        if self.membership.suspect_info(id).is_some_and(|s| s.ip == ip) {
            // A suspect is back: the member carries on, no event either way.
            self.membership.clear_suspect(id);
            self.suspect_why.remove(&id);
            self.membership[conn].restore = true;
        }
        if !self.resolve_duplicate(conn, id) {
            return Ok(());
        }
        self.membership.introduced(id, conn);
        let link = &self.membership[conn];
        if link.restore {
            self.admit(now, conn, true);
        } else if self.discovery.we_refuse(now, id) {
            // Refused a moment ago: refused again without troubling the filter, and the
            // wait before the next try doubles.
            self.give_verdict(now, conn, false, Reason::RefusedBefore);
        } else {
            let node = link.peer().expect("just introduced").clone();
            self.outputs.push_back(Output::AskAdmission { conn, node });
        }
        Ok(())
    }

    /// Applies the one-connection-per-pair rule when `conn` has introduced node `id`.
    /// Returns false if `conn` itself lost and was closed.
    fn resolve_duplicate(&mut self, conn: ConnId, id: NodeId) -> bool {
        let Some(other) = self.membership.link_of(id) else {
            return true;
        };
        let preferred = if self.me.id < id {
            Role::Initiator
        } else {
            Role::Responder
        };
        let this_role = self.membership[conn].role;
        let other_role = self.membership[other].role;
        // Same role on both (a redial while an old connection lingers): the newer wins.
        let keep_this = this_role == preferred || this_role == other_role;
        let (winner, loser) = if keep_this {
            (conn, other)
        } else {
            (other, conn)
        };
        // The winner inherits what the loser had told the application, so the pair's
        // events happen once.
        let (member, restore, told) = {
            let l = &self.membership[loser];
            (l.is_member(), l.restore, l.accepted_told)
        };
        let w = &mut self.membership[winner];
        w.restore |= member || restore;
        w.accepted_told |= told;
        self.close(loser);
        keep_this
    }

    /// Sends our verdict on the peer of `conn` (see [`Cluster::admit`]); `why` is the
    /// reason of a refusal.
    pub(super) fn give_verdict(&mut self, now: Instant, conn: ConnId, accept: bool, why: Reason) {
        let link = self.membership.get_mut(conn);
        let peer = link.as_ref().and_then(|l| l.peer()).cloned();
        let Some(verdict) = link.and_then(|l| l.our_verdict(accept)) else {
            return;
        };
        match verdict {
            Ok(bytes) => self.transmit(conn, bytes),
            Err(e) => return self.fail(now, conn, e.into()),
        }
        if !accept {
            // A refused node learns nothing more and is heard no more: no dial to it, and
            // it is refused unasked if it comes back, until a wait that doubles per refusal.
            self.stats.nodes_rejected += 1;
            self.close(conn);
            if let Some(peer) = peer {
                self.hold_back_refused(now, &peer, true);
                self.explain_refusal(peer, why);
            }
            return;
        }
        self.check_admitted(now, conn);
    }

    /// Tells the logs that this node refused `node`, and why.
    fn explain_refusal(&mut self, node: NodeInfo, reason: Reason) {
        self.push_event(Event::Explained {
            node,
            what: Happened::Refused,
            reason,
        });
    }

    /// Makes the peer of `conn` a member once both ends have admitted each other.
    pub(super) fn check_admitted(&mut self, now: Instant, conn: ConnId) {
        let link = &mut self.membership[conn];
        let Some(peer) = link.become_member(now, &self.config.detector) else {
            return;
        };
        let restore = std::mem::take(&mut link.restore);
        // Told only now, when both ends have admitted each other: a node that our filter
        // refuses never reads as having been accepted here.
        let tell_accepted = !restore && !std::mem::replace(&mut link.accepted_told, true);
        self.discovery.admitted(peer.id);
        // Tell the newcomer whom to connect to, and everyone else about the newcomer.
        let others: Vec<(NodeId, SocketAddr)> = self
            .members()
            .into_iter()
            .filter(|m| m.id != peer.id)
            .take(MAX_MEMBERS)
            .map(|m| (m.id, SocketAddr::new(m.ip, m.port)))
            .collect();
        self.send(now, conn, &Message::Members(others));
        let joined = Message::Subscriptions(self.subscriptions.names());
        self.send(now, conn, &joined);
        let newcomer = Message::Members(vec![(peer.id, SocketAddr::new(peer.ip, peer.port))]);
        for other in self.membership.member_links() {
            if other != conn {
                self.send(now, other, &newcomer);
            }
        }
        if tell_accepted {
            self.push_event(Event::NodeAccepted(peer.clone()));
        }
        if !restore {
            self.election
                .member_added(now, peer.id, peer.master_eligible);
            self.push_event(Event::NodeAdded(peer));
            self.run_election(now);
        }
    }
}
