//! What the application tells the cluster: custom events, the ones it joins, and this
//! node's metadata.

use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, ConnId, Event, Output};
use crate::core::error::{ConnectionError, SendError, SubscribeError};
use crate::core::message::{self, Message};
use crate::core::node::{NodeId, NodeInfo};
use crate::core::output::UndeliveredEvent;
use crate::core::subscriptions::{is_valid_name, Subscriptions};

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// Starts delivery of custom event `name` and tells every member to send it to us.
    /// Joining an event joined already changes nothing.
    pub fn subscribe(&mut self, now: Instant, name: &str) -> Result<(), SubscribeError> {
        if self.subscriptions.subscribe(name)? {
            self.send_all(now, &Message::Subscribe(name.to_owned()));
        }
        Ok(())
    }

    /// Stops delivery of custom event `name`.
    pub fn unsubscribe(&mut self, now: Instant, name: &str) {
        if self.subscriptions.unsubscribe(name) {
            self.send_all(now, &Message::Unsubscribe(name.to_owned()));
        }
    }

    /// A member's `Subscribe` or `Subscriptions`, applied by `join` to its set. Past the
    /// set's bounds (events and bytes) that breaks the protocol: nothing changes, it is
    /// counted in `messages_refused`, and the error fails the connection.
    pub(super) fn peer_joins(
        &mut self,
        conn: ConnId,
        join: impl FnOnce(&mut Subscriptions) -> Result<(), ConnectionError>,
    ) -> Result<(), ConnectionError> {
        let joined = join(&mut self.membership[conn].subscriptions);
        if joined.is_err() {
            self.stats.messages_refused += 1;
        }
        joined
    }

    /// [`Cluster::peer_joins`] for the names a member serves.
    pub(super) fn peer_serves(
        &mut self,
        conn: ConnId,
        serve: impl FnOnce(&mut Subscriptions) -> Result<(), ConnectionError>,
    ) -> Result<(), ConnectionError> {
        let served = serve(&mut self.membership[conn].serving);
        if served.is_err() {
            self.stats.messages_refused += 1;
        }
        served
    }

    /// Sends custom event `name` to `targets` (every member if `None`), skipping members
    /// that have not joined it. Returns the connections it was queued on. Either every
    /// target gets it or, on error, nobody does.
    pub fn send_event(
        &mut self,
        now: Instant,
        name: &str,
        binary: bool,
        payload: &[u8],
        targets: Option<&[NodeId]>,
    ) -> Result<&[ConnId], SendError> {
        if !is_valid_name(name) {
            return Err(SendError::InvalidName);
        }
        if payload.len() > self.config.max_message {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: self.config.max_message,
            });
        }
        // Called for every message: the connection list is kept between calls, not
        // allocated each time.
        let mut conns = std::mem::take(&mut self.send_scratch);
        conns.clear();
        let targeted = self
            .membership
            .event_targets(name, payload.len(), targets, &mut conns);
        if let Err(e) = targeted {
            self.send_scratch = conns;
            return Err(e);
        }
        // Suspects that joined it get it too, kept until they return (or are removed).
        let away = self.away_targets(name, payload.len(), targets);
        let away = match away {
            Ok(away) => away,
            Err(e) => {
                self.send_scratch = conns;
                return Err(e);
            }
        };
        if conns.is_empty() && away.is_empty() {
            self.send_scratch = conns;
            return Ok(&self.send_scratch);
        }
        for peer in away {
            let rng = &mut self.rng;
            self.sessions
                .record(peer, || stream_id(rng), binary, name, payload);
        }
        let mut sent = 0;
        for i in 0..conns.len() {
            let conn = conns[i];
            let link = &mut self.membership[conn];
            let peer = link.peer_id().expect("members are introduced");
            let rng = &mut self.rng;
            // Appended to the peer's stream and sealed from there: the body is copied once.
            let (seq, (body, wrapped)) =
                self.sessions
                    .record(peer, || stream_id(rng), binary, name, payload);
            let tag = message::event_tag(seq);
            match link
                .seal_parts(&[&tag, body, wrapped])
                .expect("members have sessions")
            {
                Ok(bytes) => {
                    self.outputs.push_back(Output::Transmit { conn, bytes });
                    self.stats.messages_out += 1;
                    conns[sent] = conn;
                    sent += 1;
                }
                // Kept in the peer's stream: its next connection carries it.
                Err(e) => self.fail(now, conn, e.into()),
            }
        }
        conns.truncate(sent);
        self.send_scratch = conns;
        Ok(&self.send_scratch)
    }

    /// The suspects (members whose connection dropped) among `targets` (all if `None`) that
    /// had joined `name`; an error if one of them does not accept `len` bytes.
    fn away_targets(
        &mut self,
        name: &str,
        len: usize,
        targets: Option<&[NodeId]>,
    ) -> Result<Vec<NodeId>, SendError> {
        let mut away = Vec::new();
        for (&peer, out) in self.sessions.away() {
            let (joined, max) = out.away.as_ref().expect("away");
            let wanted = targets.is_none_or(|t| t.contains(&peer));
            if !wanted || !joined.contains(name) {
                continue;
            }
            if len > *max {
                return Err(SendError::TooLarge { len, max: *max });
            }
            away.push(peer);
        }
        Ok(away)
    }

    /// True if a sender must wait: the stream to the peer of one of `conns`, or to a peer
    /// away, holds `max_unacked_bytes` not yet acknowledged. A waiting sender goes on once
    /// [`Cluster::sends_resumable`].
    pub fn sends_blocked(&self, conns: &[ConnId]) -> bool {
        self.unacked_reach(conns, self.config.max_unacked)
    }

    /// True once a sender that waited may go on: below three quarters of
    /// `max_unacked_bytes` on each of those streams. Not at once below the bound, so that
    /// an acknowledgement of a few messages does not release one send at a time; not lower,
    /// so that what is still unacknowledged keeps the connection busy while the
    /// application sends more.
    pub fn sends_resumable(&self, conns: &[ConnId]) -> bool {
        !self.unacked_reach(conns, resume_below(self.config.max_unacked))
    }

    fn unacked_reach(&self, conns: &[ConnId], limit: usize) -> bool {
        self.sessions.full_away(limit)
            || conns.iter().any(|&conn| {
                let peer = self.membership.get(conn).and_then(|l| l.peer_id());
                peer.is_some_and(|p| self.sessions.full_to(p, limit))
            })
    }

    /// Sends every acknowledgement due by its delay. One owed to a peer without a
    /// connection is dropped: on its return it replays what it holds, and the duplicates
    /// are acknowledged then.
    pub(super) fn send_acks(&mut self, now: Instant) {
        for peer in self.sessions.acks_waiting() {
            match self.membership.member_link(peer) {
                Some(conn) => self.ack_if_due(now, conn, peer),
                None => drop(self.sessions.ack_due(now, peer, true)),
            }
        }
    }

    /// Acknowledges what `peer` sent on `conn`, if an acknowledgement is due.
    pub(super) fn ack_if_due(&mut self, now: Instant, conn: ConnId, peer: NodeId) {
        if let Some((stream, seq)) = self.sessions.ack_due(now, peer, false) {
            self.send(now, conn, &Message::Ack { stream, seq });
        }
    }

    /// `peer` became a member on `conn` (new, or back on a new connection): announce our
    /// stream to it, then replay, in order, what it has not acknowledged.
    pub(super) fn resume_stream(&mut self, now: Instant, conn: ConnId, peer: NodeId) {
        self.sessions.revive(peer);
        let out = self.sessions.outbound(peer, || stream_id(&mut self.rng));
        out.away = None;
        let stream = out.stream;
        let ack_bytes = ack_bytes_for(self.config.max_unacked);
        self.send(
            now,
            conn,
            &Message::Stream {
                id: stream,
                ack_bytes,
            },
        );
        let (Some(out), Some(link)) = (
            self.sessions.outbound_of(peer),
            self.membership.get_mut(conn),
        ) else {
            return;
        };
        let mut failed = None;
        for (seq, (body, wrapped)) in out.unacked_events() {
            // Requests and replies share the stream: its kept byte says which message.
            let head = message::stream_head(seq, body[0]);
            match link.seal_parts(&[&head, &body[1..], wrapped]) {
                Some(Ok(bytes)) => {
                    self.outputs.push_back(Output::Transmit { conn, bytes });
                    self.stats.messages_resent += 1;
                }
                Some(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                // Failed already (announcing the stream).
                None => break,
            }
        }
        if let Some(e) = failed {
            self.fail(now, conn, e.into());
        }
    }

    /// `peer` was removed: its stream ends, and what it never acknowledged is reported.
    pub(super) fn end_stream(&mut self, node: &NodeInfo) {
        self.requests_peer_left(node.id);
        let Some(left) = self.sessions.end(node.id) else {
            return;
        };
        // Requests and replies in the stream are not events: a request fails as its
        // target's removal says (above), a reply has nobody left to go to.
        let events: Vec<UndeliveredEvent> = left
            .unacked_events()
            .filter(|(_, (a, _))| a[0] & 0xf0 == 0)
            .map(|(_, (a, b))| undelivered(&[a, b].concat()))
            .collect();
        if events.is_empty() {
            return;
        }
        self.stats.messages_undelivered += events.len() as u64;
        self.push_event(Event::Undelivered {
            node: node.clone(),
            events,
        });
    }

    /// Replaces this node's metadata (JSON text) and tells every peer.
    pub fn set_metadata(&mut self, _now: Instant, metadata: String) {
        self.me.metadata = metadata;
        let update = Message::Update {
            metadata: self.me.metadata.clone(),
        }
        .encode();
        // Peers not yet admitted by both ends get it in our profile, once they are.
        for (conn, link) in self.membership.iter_mut() {
            if link.is_admitted() {
                if let Some(Ok(bytes)) = link.seal_parts(&[&update]) {
                    self.outputs.push_back(Output::Transmit { conn, bytes });
                }
            }
        }
    }
}

/// A new stream's id: random, so that a peer tells a stream restarted after our removal of
/// it from the one it knew; never 0, the stream of a peer that announced none.
pub(super) fn stream_id(rng: &mut impl RngCore) -> u64 {
    rng.next_u64().max(1)
}

/// Below what a sender that waited on `max_unacked` goes on (see `sends_resumable`).
pub(super) fn resume_below(max_unacked: usize) -> usize {
    max_unacked - max_unacked / 4
}

/// How often a peer is asked to acknowledge: an eighth of the bound, so that a sender at
/// it has several acknowledgements on their way and goes on (below 3/4) before the
/// connection runs dry.
fn ack_bytes_for(max_unacked: usize) -> u32 {
    u32::try_from(max_unacked / 8).unwrap_or(u32::MAX)
}

/// An event kept in a stream, as the application sent it.
fn undelivered(body: &[u8]) -> UndeliveredEvent {
    let name_len = usize::from(body[1]);
    UndeliveredEvent {
        name: String::from_utf8_lossy(&body[2..2 + name_len]).into_owned(),
        binary: body[0] == 1,
        payload: body[2 + name_len..].to_vec(),
    }
}
