//! Connections and members going away: failed dials and handshakes, closes, goodbyes,
//! silence past the detector's bound, and suspects that are redialed or given up on.

use std::net::SocketAddr;
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, ConnId, Event, Output};
use crate::core::discovery::Target;
use crate::core::error::{ConnectionError, HandshakeError};
use crate::core::link::Heartbeat;
use crate::core::message::Message;
use crate::core::node::{NodeId, NodeInfo};

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
                self.give_up_suspect(now, id);
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

    /// Sends due heartbeats and removes members silent for too long.
    pub(super) fn heartbeats(&mut self, now: Instant) {
        let detector = self.config.detector;
        let mut dead = Vec::new();
        for (conn, link) in self.membership.iter_mut() {
            match link.heartbeat(now, &detector) {
                Heartbeat::Dead => dead.push(conn),
                Heartbeat::Ping(Ok(bytes)) => {
                    self.outputs.push_back(Output::Transmit { conn, bytes })
                }
                Heartbeat::Ping(Err(_)) | Heartbeat::Quiet => {}
            }
        }
        for conn in dead {
            self.lose(now, conn, Loss::Dead);
        }
    }

    /// Tells the application and the election that a member is gone.
    pub(super) fn removed(&mut self, now: Instant, info: NodeInfo) {
        let id = info.id;
        self.push_event(Event::NodeRemoved(info));
        self.election.member_removed(now, id);
        self.run_election(now);
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
        self.close(conn);
        if let Some(id) = expected.filter(|&id| unproven && self.membership.is_suspect(id)) {
            self.give_up_suspect(now, id);
        }
    }

    /// A member's connection is gone.
    fn lose(&mut self, now: Instant, conn: ConnId, loss: Loss) {
        let Some(link) = self.membership.remove(conn) else {
            return;
        };
        self.outputs.push_back(Output::Close { conn });
        let Some(peer) = link.into_member() else {
            return;
        };
        let addr = SocketAddr::new(peer.ip, peer.port);
        match loss {
            Loss::Dropped if !self.leaving => {
                let expect = Some(peer.id);
                let deadline = now + self.config.suspect_timeout;
                // Its second connection, if one is being admitted, took the index: it is
                // the reconnection, judged like any other; no redial beside it.
                let reconnecting = self.membership.link_of(peer.id).is_some();
                self.membership.suspect(peer, deadline);
                if reconnecting {
                    return;
                }
                let redial = Target {
                    addr,
                    expect,
                    scan: false,
                };
                self.dial(now, redial);
            }
            Loss::Left => self.removed(now, peer),
            Loss::Dropped | Loss::Dead => {
                self.discovery
                    .lost(now, &self.config.discovery, peer.id, addr);
                self.removed(now, peer);
            }
        }
    }

    /// A suspect did not come back in time: remove it.
    pub(super) fn give_up_suspect(&mut self, now: Instant, id: NodeId) {
        let Some(info) = self.membership.clear_suspect(id) else {
            return;
        };
        let addr = SocketAddr::new(info.ip, info.port);
        self.discovery.lost(now, &self.config.discovery, id, addr);
        self.removed(now, info);
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
                if *e == HandshakeError::KeyMismatch {
                    self.stats.key_mismatches += 1;
                }
            }
            ConnectionError::HandshakeTimeout => self.stats.handshakes_failed += 1,
            ConnectionError::Frame(_) | ConnectionError::Record(_) | ConnectionError::Decode(_) => {
                self.stats.frames_rejected += 1
            }
            _ => {}
        }
        if let Some(id) = link.expect.or(link.peer_id()) {
            let backoff = self.config.discovery.redial_backoff;
            self.discovery.failed(now, id, backoff);
        }
        self.report(addr, error);
        self.end(now, conn, Loss::Dropped);
    }

    /// Tells the application that a connection with `addr` failed.
    pub(super) fn report(&mut self, addr: SocketAddr, error: ConnectionError) {
        self.push_event(Event::ConnectionFailed { addr, error });
    }
}
