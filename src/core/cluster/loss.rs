//! Connections and members going away: failed dials and handshakes, closes, goodbyes,
//! silence past the detector's bound, and suspects that are redialed or given up on.

use std::net::SocketAddr;
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, ConnId, Event, Output};
use crate::core::discovery::Target;
use crate::core::error::{ConnectionError, HandshakeError};
use crate::core::message::Message;
use crate::core::node::{Candidate, NodeId, NodeInfo};
use crate::core::output::{Happened, Reason};

/// Why a member is no longer one.
pub(super) enum Loss {
    /// It said goodbye.
    Left,
    /// Its connection dropped: suspect it and redial.
    Dropped,
    /// It is gone for good (silent too long, redial failed, replaced by a new id).
    Dead,
}

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// Our dial on `conn` failed (see [`Cluster::dial_failed`]): forget the link, back
    /// off from the node it expected.
    pub(super) fn abandon_dial(&mut self, now: Instant, conn: ConnId) {
        let Some(link) = self.membership.remove(conn) else {
            return;
        };
        if let Some(id) = link.expect {
            let backoff = self.config.discovery.redial_backoff;
            self.discovery.failed(now, id, backoff);
            // A suspect whose redial is refused has crashed or stopped: remove it now.
            if self.membership.is_suspect(id) {
                self.give_up_suspect(now, id, Reason::Reset);
            } else {
                self.discovery
                    .retry(now, &self.config.discovery, id, link.addr);
            }
        }
        if link.scan {
            self.pump(now);
        }
    }

    /// Tells every member that this node leaves, then closes every connection (a peer
    /// still being admitted is no member to leave: it sees the connection close).
    pub(super) fn say_goodbye(&mut self) {
        for conn in self.membership.conns() {
            let link = &mut self.membership[conn];
            if link.is_member() {
                if let Some(Ok(bytes)) = link.seal(&Message::Leave) {
                    self.transmit(conn, bytes);
                }
            }
            self.close(conn);
        }
    }

    /// The driver stops (`true`) or resumes reading members' connections, as it does while
    /// the application has not taken what was delivered to it (a slow consumer, or an event
    /// loop blocked for seconds). Unread, a member's heartbeats look like silence: while
    /// paused nobody is declared dead for silence, and on resuming each member has the
    /// detector's whole bound again from `now`. Our own probes go out as usual, so the
    /// peers keep us. A member that crashes meanwhile is noticed once reading resumes (its
    /// end of stream is behind the unread bytes), as other members notice it at once.
    pub fn set_reading_paused(&mut self, now: Instant, paused: bool) {
        if self.reading_paused == paused {
            return;
        }
        self.reading_paused = paused;
        for (_, link) in self.membership.iter_mut() {
            link.excuse_silence(now);
        }
    }

    /// True if `conn` carries a member: the only connections whose bytes can become
    /// custom events for the application, so the ones the driver pauses.
    pub fn is_member_conn(&self, conn: ConnId) -> bool {
        self.membership.get(conn).is_some_and(|l| l.is_member())
    }

    /// Removes members silent past the detector's bound (probes and the records that
    /// stand in for them are `probing`'s).
    pub(super) fn remove_silent(&mut self, now: Instant) {
        let detector = self.detector();
        let excused = self.reading_paused;
        if excused {
            for (_, link) in self.membership.iter_mut() {
                link.excuse_silence(now);
            }
        }
        for conn in self.membership.dead(now, &detector) {
            self.lose(now, conn, Loss::Dead);
        }
    }

    /// Tells the application and the election that a member is gone, and why (for logs).
    /// A master change its departure causes comes after its `NodeRemoved`, and so does one
    /// held back until it departed (see `master`).
    pub(super) fn removed(&mut self, now: Instant, info: NodeInfo, reason: Reason) {
        let id = info.id;
        self.push_event(Event::Explained {
            node: Candidate::from(&info),
            what: Happened::Removed,
            reason,
        });
        self.push_event(Event::NodeRemoved(info.clone()));
        self.end_stream(&info);
        self.release_master(id);
        self.election.member_removed(now, id);
        self.run_election(now);
        // Fewer members, a shorter beacon period: a node cut off from most of its cluster
        // is heard again as soon as a small cluster's node would be.
        let period = self.beacon_period();
        self.beacons.period_at_most(now, period, &mut self.rng);
    }

    /// Removes a connection that ended; if it carried a member, deals with the loss.
    pub(super) fn end(&mut self, now: Instant, conn: ConnId, loss: Loss) {
        let Some(link) = self.membership.get(conn) else {
            return;
        };
        if link.is_member() {
            return self.lose(now, conn, loss);
        }
        // A suspect's redial that ends before the peer introduced itself: a crashing
        // process can accept a connection in its last instant and reset it right after.
        // (A peer that closes our redial as a duplicate has introduced itself first, so
        // its suspect's own deadline decides then.)
        let unproven = link.is_unproven();
        let expected = link.expect;
        let addr = link.addr;
        self.close(conn);
        if let Some(id) = expected.filter(|&id| unproven && self.membership.is_suspect(id)) {
            self.give_up_suspect(now, id, Reason::Reset);
        } else if let Some(id) = expected.filter(|&id| self.membership.link_of(id).is_none()) {
            // A dial to a node learnt by id that failed on its way (a handshake timed out
            // on a loaded host, say): tried again, a few times.
            self.discovery.retry(now, &self.config.discovery, id, addr);
        }
    }

    /// A member's connection is gone.
    fn lose(&mut self, now: Instant, conn: ConnId, loss: Loss) {
        let Some(link) = self.membership.remove(conn) else {
            return;
        };
        self.outputs.push_back(Output::Close { conn });
        let joined = (link.subscriptions.clone(), link.peer_max_message);
        let listen = link.listen_addr();
        let Some(peer) = link.into_member() else {
            return;
        };
        let addr = listen.unwrap_or(SocketAddr::new(peer.ip, peer.port));
        let violation = std::mem::take(&mut self.violation);
        match loss {
            Loss::Dropped if !self.leaving => {
                let expect = Some(peer.id);
                if violation {
                    self.suspect_why.insert(peer.id, Reason::ProtocolViolation);
                }
                let deadline = now + self.config.suspect_timeout;
                // What is sent to it meanwhile is kept for its return.
                let rng = &mut self.rng;
                let out = self
                    .sessions
                    .outbound(peer.id, || super::custom_events::stream_id(rng));
                out.away = Some(joined);
                // Its second connection, if one is being admitted, took the index: it is
                // the reconnection, judged like any other; no redial beside it.
                let reconnecting = self.membership.link_of(peer.id).is_some();
                self.membership.suspect(peer, deadline);
                if reconnecting {
                    return;
                }
                // A suspect may have missed joins while away: it is asked for its list.
                let redial = Target {
                    addr,
                    expect,
                    scan: false,
                    ask: true,
                };
                self.dial(now, redial);
            }
            Loss::Left => self.removed(now, peer, Reason::Left),
            Loss::Dropped | Loss::Dead => {
                self.discovery
                    .lost(now, &self.config.discovery, peer.id, addr);
                let reason = match loss {
                    Loss::Dead => Reason::Timeout,
                    _ if violation => Reason::ProtocolViolation,
                    _ => Reason::Reset,
                };
                self.removed(now, peer, reason);
            }
        }
    }

    /// A suspect did not come back (`reason`, unless its connection was closed for a
    /// protocol violation): remove it.
    pub(super) fn give_up_suspect(&mut self, now: Instant, id: NodeId, reason: Reason) {
        let why = self.suspect_why.remove(&id);
        let Some(info) = self.membership.clear_suspect(id) else {
            return;
        };
        // Its link is gone: an advertised address counts as its own only at its own IP.
        let addr = crate::core::link::own_dial_addr(info.ip, info.port, info.advertised, None);
        self.discovery.lost(now, &self.config.discovery, id, addr);
        self.removed(now, info, why.unwrap_or(reason));
    }

    /// Drops `conn` and has the driver close it, if it is still open.
    pub(super) fn close(&mut self, conn: ConnId) {
        if self.membership.remove(conn).is_some() {
            self.outputs.push_back(Output::Close { conn });
        }
    }

    /// `conn` failed: counts the error, backs off from its node, tells the application,
    /// and ends the connection as dropped.
    pub(super) fn fail(&mut self, now: Instant, conn: ConnId, error: ConnectionError) {
        let Some(link) = self.membership.get(conn) else {
            return;
        };
        let addr = link.addr;
        match &error {
            ConnectionError::Handshake(e) => {
                self.stats.handshakes_failed += 1;
                match e {
                    HandshakeError::KeyMismatch => self.stats.key_mismatches += 1,
                    HandshakeError::Version { .. } => self.stats.version_mismatches += 1,
                    _ => {}
                }
            }
            ConnectionError::HandshakeTimeout => self.stats.handshakes_failed += 1,
            ConnectionError::Frame(_) | ConnectionError::Record(_) | ConnectionError::Decode(_) => {
                self.stats.frames_rejected += 1;
                self.violation = true;
            }
            ConnectionError::Protocol(_) => self.violation = true,
        }
        if let Some(id) = link.expect.or(link.peer_id()) {
            let backoff = self.config.discovery.redial_backoff;
            self.discovery.failed(now, id, backoff);
        }
        self.report(addr, error);
        self.end(now, conn, Loss::Dropped);
        self.violation = false;
    }

    /// Tells the application that a connection with `addr` failed.
    pub(super) fn report(&mut self, addr: SocketAddr, error: ConnectionError) {
        self.push_event(Event::ConnectionFailed { addr, error });
    }
}
