//! What the application tells the cluster: custom events, the ones it joins, and this
//! node's metadata.

use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, ConnId, Output};
use crate::core::error::{ConnectionError, SendError, SubscribeError};
use crate::core::message::{self, Message};
use crate::core::node::NodeId;
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
        let head = message::event_head(name, binary);
        let parts = [&head[..], name.as_bytes(), payload];
        let mut sent = 0;
        for i in 0..conns.len() {
            let conn = conns[i];
            match self.membership[conn]
                .seal_parts(&parts)
                .expect("members have sessions")
            {
                Ok(bytes) => {
                    self.transmit(conn, bytes);
                    self.stats.messages_out += 1;
                    conns[sent] = conn;
                    sent += 1;
                }
                Err(e) => self.fail(now, conn, e.into()),
            }
        }
        conns.truncate(sent);
        self.send_scratch = conns;
        Ok(&self.send_scratch)
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
