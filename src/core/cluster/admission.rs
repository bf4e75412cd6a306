//! A connection on its way to membership: Dialing → Handshake → Introducing → Admitting →
//! Member. The handshake's frames are read in `receive`; this file starts it, takes the
//! peer's introduction, applies the one-connection-per-pair rule and the two admission
//! verdicts, and makes the peer a member when its profile arrives.
//!
//! Admission first: until both ends have admitted each other, a connection carries only
//! the two introductions (id, host name, port: what the filters judge) and the two
//! verdicts. Metadata, eligibility, the member list, subscriptions and the election's state
//! cross only after that, starting with each side's `Profile`. Every connection is judged by
//! the filter, a member's second connection and a suspect's redial included: nothing is
//! handed from one connection to another.

use std::net::SocketAddr;
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, ConnId, Event, Output};
use crate::core::crypto::{Handshake, Role};
use crate::core::discovery::{Target, ASK_MEMBERS_GAP, RESYNC_INTERVAL};
use crate::core::election::ElectionMsg;
use crate::core::error::{ConnectionError, HandshakeError};
use crate::core::link::Link;
use crate::core::message::{Message, MAX_MEMBERS};
use crate::core::node::{Candidate, NodeId, NodeInfo};
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
        self.discovery.reached(link.addr);
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
        self.yield_crossing_dials(now, addr.ip(), conn);
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
                // A seed that is ourselves is reached: waiting on it would hold the first
                // election until the seed was given up (every node may be given one list,
                // the seed's own address included).
                self.discovery.reached(link.addr);
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
        let link = &self.membership[conn];
        if link.role == Role::Initiator && link.expect == Some(id) && !link.ask && !link.scan {
            // A dial within the dial budget (to a node learnt by id) reached its node.
            self.discovery.dial_proven(now);
        }
        if let Some(confirmation) = ours {
            self.transmit(conn, confirmation);
        }
        let intro = self.introduction();
        self.send(now, conn, &intro);
        Ok(())
    }

    /// What we say about ourselves once the handshake is done: what the peer's filter
    /// judges, and nothing more.
    pub(super) fn introduction(&self) -> Message<'static> {
        Message::Introduce {
            id: self.me.id,
            host_name: self.me.host_name.clone(),
            port: self.me.port,
            advertised: self.me.advertised,
        }
    }

    /// What we share with a peer once both ends have admitted each other.
    fn profile(&self) -> Message<'static> {
        Message::Profile {
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
        candidate: Candidate,
    ) -> Result<(), ConnectionError> {
        let id = candidate.id;
        let link = &mut self.membership[conn];
        // Checked when the handshake proved `id` (see `proven`).
        debug_assert!(id != self.me.id && link.expect.is_none_or(|e| e == id));
        let ip = candidate.ip;
        let (all, from_ip) = self.membership.introduced_counts(ip, id);
        if all >= self.config.max_members || from_ip >= self.config.max_members_per_ip {
            // Full, or this address has enough peers: refused before anyone is asked.
            self.stats.connections_refused += 1;
            let backoff = self.config.discovery.redial_backoff;
            self.discovery.failed(now, id, backoff);
            self.explain_refusal(candidate, Reason::Full);
            self.close(conn);
            return Ok(());
        }
        let deadline = now + self.config.admission_timeout;
        self.membership[conn].introduced(candidate.clone(), deadline);
        self.discovery.connected(id);
        self.drop_scans_not_connected(SocketAddr::new(ip, candidate.port));
        if !self.resolve_duplicate(conn, id) {
            return Ok(());
        }
        if self.discovery.we_refuse(now, id) {
            // Refused a moment ago: refused again without troubling the filter, and the
            // wait before the next try doubles.
            self.give_verdict(now, conn, false, Reason::RefusedBefore);
        } else {
            // Every connection is judged, whoever it claims to be and whatever came before.
            self.outputs.push_back(Output::AskAdmission {
                conn,
                node: candidate,
            });
        }
        Ok(())
    }

    /// Applies the one-connection-per-pair rule when `conn` has introduced node `id`, and
    /// indexes `conn` if it stays. Returns false if `conn` itself lost and was closed.
    ///
    /// Between two connections still being admitted, both ends keep the one the rule
    /// prefers. A connection of a node that is a member already is a challenger: it is
    /// judged like any newcomer while the member's connection carries on, and replaces it
    /// only once both ends have admitted each other on it (see [`Cluster::welcome`]), so a
    /// refused or failed second connection changes nothing.
    fn resolve_duplicate(&mut self, conn: ConnId, id: NodeId) -> bool {
        let Some(other) = self.membership.link_of(id) else {
            self.membership.introduced(id, conn);
            return true;
        };
        let rival = if self.membership[other].is_member() {
            match self.membership.challenger_of(id, Some(conn)) {
                Some(rival) => rival,
                None => return true,
            }
        } else {
            other
        };
        let keep_this = self.prefers(conn, rival, id);
        let loser = if keep_this { rival } else { conn };
        self.close(loser);
        if keep_this && self.membership.member_link(id).is_none_or(|k| k == conn) {
            self.membership.introduced(id, conn);
        }
        keep_this
    }

    /// Whether `this` wins the one-connection-per-pair rule over `other`, both of node
    /// `id`: the connection initiated by the smaller id, or the newer of two of the same
    /// role (a redial while an old connection lingers). Both ends decide alike.
    fn prefers(&self, this: ConnId, other: ConnId, id: NodeId) -> bool {
        let preferred = if self.me.id < id {
            Role::Initiator
        } else {
            Role::Responder
        };
        let this_role = self.membership[this].role;
        this_role == preferred || this_role == self.membership[other].role
    }

    /// Sends our verdict on the peer of `conn` (see [`Cluster::admit`]); `why` is the
    /// reason of a refusal.
    pub(super) fn give_verdict(&mut self, now: Instant, conn: ConnId, accept: bool, why: Reason) {
        let link = self.membership.get_mut(conn);
        let candidate = link.as_ref().and_then(|l| l.candidate()).cloned();
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
            if let Some(candidate) = candidate {
                let id = candidate.id;
                self.explain_refusal(candidate.clone(), why);
                // A live member's second connection: only that connection is refused, and
                // the member is not held back from (its own connection carries on). A
                // suspect whose reconnection this node refuses is a member no more.
                if self.membership.link_of(id).is_none() {
                    self.hold_back_refused(now, &candidate, true);
                    self.give_up_suspect(now, id, why);
                }
            }
            return;
        }
        self.share_profile(now, conn);
    }

    /// Tells the logs that this node refused `node`, and why.
    fn explain_refusal(&mut self, node: Candidate, reason: Reason) {
        self.push_event(Event::Explained {
            node,
            what: Happened::Refused,
            reason,
        });
    }

    /// Sends our profile on `conn` once both ends have admitted each other, and the custom
    /// events we joined right behind it, so that they reach the peer with the profile that
    /// makes us its member (what it sends us before our join arrives is lost to us). Each
    /// end calls this after each verdict, so it happens exactly once: after the second.
    pub(super) fn share_profile(&mut self, now: Instant, conn: ConnId) {
        if self.membership[conn].is_admitted() && !self.membership[conn].is_member() {
            let profile = self.profile();
            self.send(now, conn, &profile);
            let joined = Message::Subscriptions(self.subscriptions.names());
            self.send(now, conn, &joined);
            self.share_serving(now, conn);
        }
    }

    /// Whether we ask the new member on `conn` for its member list: we dialed it as an
    /// entry point (a seed, a scanned address, a lost member or a suspect: [`Target::ask`]),
    /// or it is our first member (a newcomer found by multicast learns the nodes it cannot
    /// hear, beyond a seed of its own), or it came back (it may know nodes that joined
    /// meanwhile). A peer found by a beacon or a member list is not asked: the others
    /// find us the same way. So a join costs one list, not one per member.
    fn asks_members(&self, conn: ConnId, came_back: bool) -> bool {
        let link = &self.membership[conn];
        let first = self
            .membership
            .member_links()
            .into_iter()
            .all(|c| c == conn);
        (link.role == Role::Initiator && link.ask) || first || came_back
    }

    /// True if `msg` is member `from`'s first word on its link of what it follows (each
    /// end tells the other when it adds it) and names a master, not ours: it comes from
    /// another cluster, a partition healing, whose members we have not met.
    pub(super) fn follows_another_master(&self, from: NodeId, msg: &ElectionMsg) -> bool {
        let ElectionMsg::State(Some(claim)) = msg else {
            return false;
        };
        !self.election.has_reported(from) && Some(claim.master) != self.election.master()
    }

    /// Asks member `conn`, of another cluster (see [`Cluster::follows_another_master`]),
    /// for its member list, so that one link across a healed partition mends every pair:
    /// our beacons are spread out with the members (see `beacon_schedule`), and without
    /// the list each pair would wait to hear the other's beacon. The list is taken as
    /// beacons heard ([`crate::core::discovery::Hint::ListInReach`]): we dial its larger ids, and announce
    /// ourselves to the smaller ones, which dial us. At most one such ask per
    /// `beacon_interval`, and none on a link already asked: a peer that claims another
    /// master on every new link costs us one list (a bounded one) per interval, and its
    /// entries are dials under the dial budget like any beacon's. Multicast only: in
    /// manual mode lost members are dialed again by address (`probe_lost`).
    pub(super) fn ask_across(&mut self, now: Instant, conn: ConnId) {
        let gap = self.config.beacon_interval;
        let recent = self.list_asked_at.is_some_and(|t| now < t + gap);
        let asked = self.membership[conn].asked_members_at.is_some();
        if !self.config.discovery.multicast || recent || asked {
            return;
        }
        self.list_asked_at = Some(now);
        self.stats.lists_asked_across += 1;
        self.ask_members(now, conn);
    }

    /// Asks the member on `conn` for its member list. Every list counts toward the gap of
    /// [`Cluster::ask_across`]: a newcomer's other members name a master it does not follow
    /// yet, and the list it asked at admission is the one it needs.
    pub(super) fn ask_members(&mut self, now: Instant, conn: ConnId) {
        self.list_asked_at = Some(now);
        self.membership[conn].asked_members_at = Some(now);
        self.send(now, conn, &Message::AskMembers);
    }

    /// With multicast off, asks one member, in turn, for its member list again
    /// ([`RESYNC_INTERVAL`]); not one asked within [`ASK_MEMBERS_GAP`] (it would refuse).
    pub(super) fn resync(&mut self, now: Instant) {
        self.next_resync = Some(now + RESYNC_INTERVAL);
        let links = self.membership.member_links();
        if links.is_empty() {
            return;
        }
        self.resync_turn = self.resync_turn.wrapping_add(1);
        let conn = links[self.resync_turn % links.len()];
        let asked = self.membership[conn].asked_members_at;
        if asked.is_none_or(|t| now >= t + ASK_MEMBERS_GAP) {
            self.ask_members(now, conn);
        }
    }

    /// Answers a member's [`Message::AskMembers`]: every other member (suspects included:
    /// they have not been removed), at most [`MAX_MEMBERS`], but those this node has told
    /// of the asker already. One connection per pair: two newcomers that ask the same node
    /// would otherwise each be told of the other and dial each other at once. Of the two,
    /// the one answered first was told of the other if the other was a member by then (it
    /// dials it), and the other is not told of it; otherwise the second is told of the
    /// first. A member that never asks (a node found by a list or a beacon) is named to
    /// every later asker, as before: the lists name no fewer pairs than they did.
    ///
    /// A member asking `again` on its connection (a resync: see [`RESYNC_INTERVAL`]) is
    /// told of every member: it looks for nodes it missed, and dials only those.
    pub(super) fn tell_members(&mut self, now: Instant, conn: ConnId, again: bool) {
        let asker = &self.membership[conn];
        let (asker_id, admitted) = (asker.peer_id(), asker.admitted_at);
        let told_of_asker = |m: NodeId| {
            if again {
                return false;
            }
            let link = self.membership.member_link(m);
            let told_at = link.and_then(|k| self.membership[k].told_at);
            // Answered after the asker became a member: the asker was on its list.
            told_at.is_some_and(|t| t > admitted)
        };
        let mut others: Vec<(NodeId, SocketAddr)> = self
            .members()
            .into_iter()
            .filter(|m| Some(m.id) != asker_id && !told_of_asker(m.id))
            .map(|m| (m.id, m.dial_addr()))
            .collect();
        if others.len() <= MAX_MEMBERS {
            // A list cut short names not every member: nobody may count on it.
            let at = self.tick_list_clock();
            self.membership[conn].told_at = Some(at);
        }
        others.truncate(MAX_MEMBERS);
        self.send(now, conn, &Message::Members(others));
    }

    /// The next instant of this node's clock of admissions and answered member lists.
    fn tick_list_clock(&mut self) -> u64 {
        self.list_clock += 1;
        self.list_clock
    }

    /// The peer of `conn` sent its profile, both ends having admitted each other: it is a
    /// member. A member's challenger replaces the member's connection now; a suspect that
    /// came back carries on. Either way the node stays the member it was, without events,
    /// unless its metadata changed (`updated_node`) or it is not the same node at all (from
    /// another address, or with another eligibility: removed, then added).
    pub(super) fn welcome(&mut self, now: Instant, conn: ConnId, peer: NodeInfo) {
        let id = peer.id;
        let previous = match self.membership.link_of(id) {
            Some(old) if old != conn => {
                let info = self.membership[old].peer().cloned();
                self.close(old);
                info
            }
            _ => {
                self.suspect_why.remove(&id);
                self.membership.clear_suspect(id)
            }
        };
        self.membership.introduced(id, conn);
        let at = self.tick_list_clock();
        self.membership[conn].admitted_at = at;
        self.discovery.admitted(id);
        // Whom else to connect to is asked, not told to everyone: the node that may not know
        // this peer's cluster asks it once (see `asks_members`), and nobody speaks about a
        // newcomer to the others: it dials each member its list names itself.
        if self.asks_members(conn, previous.is_some()) {
            self.ask_members(now, conn);
        }
        match previous {
            Some(old) if old.ip == peer.ip && old.master_eligible == peer.master_eligible => {
                if old.metadata != peer.metadata {
                    self.push_event(Event::NodeUpdated(peer));
                }
                // It may have removed us meanwhile and be waiting for our word.
                self.election.member_relinked(id);
                self.run_election(now);
            }
            old => {
                if let Some(old) = old {
                    // Not the same node at all: another address or another eligibility.
                    self.removed(now, old, Reason::Replaced);
                }
                self.push_event(Event::NodeAccepted(peer.clone()));
                self.election.member_added(now, id, peer.master_eligible);
                self.push_event(Event::NodeAdded(peer));
                self.run_election(now);
            }
        }
        self.resume_stream(now, conn, id);
    }
}
