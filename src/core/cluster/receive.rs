//! What arrives on a connection: frames, the handshake's and then sealed records, and the
//! messages they carry.

use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::loss::Loss;
use super::{Cluster, ConnId, Event};
use crate::core::discovery::{Hint, ASK_MEMBERS_GAP};
use crate::core::error::{ConnectionError, DecodeError, HandshakeError};
use crate::core::json::{is_json, is_json_object};
use crate::core::message::Message;
use crate::core::node::is_valid_host_name;
use crate::core::sessions::Received;
use crate::core::wire::{self, FrameDecoder};

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// Bytes arrived on `conn` (see [`Cluster::handle_bytes`]): lends its decoder to
    /// [`Cluster::read_frames`]; a frame that breaks the protocol fails the connection.
    pub(super) fn receive(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(link) = self.membership.get_mut(conn) else {
            return;
        };
        self.stats.bytes_in += bytes.len() as u64;
        let mut decoder = link.lend_decoder();
        decoder.push(bytes);
        let read = self.read_frames(now, conn, &mut decoder);
        if let Some(link) = self.membership.get_mut(conn) {
            link.return_decoder(decoder);
        }
        if let Err(e) = read {
            self.fail(now, conn, e);
        }
    }

    /// Handles every whole frame in `decoder`, `conn`'s, while the link lasts.
    fn read_frames(
        &mut self,
        now: Instant,
        conn: ConnId,
        decoder: &mut FrameDecoder,
    ) -> Result<(), ConnectionError> {
        loop {
            let Some(link) = self.membership.get(conn) else {
                return Ok(());
            };
            decoder.set_max_len(link.frame_limit(self.config.max_frame, self.config.max_metadata));
            let Some(frame) = decoder.next_frame()? else {
                return Ok(());
            };
            self.handle_frame(now, conn, frame)?;
        }
    }

    /// A frame, still in the link's decoder: a record is decrypted there, and its message
    /// borrows it.
    fn handle_frame(
        &mut self,
        now: Instant,
        conn: ConnId,
        frame: &mut [u8],
    ) -> Result<(), ConnectionError> {
        if self.membership[conn].is_handshaking() {
            // Not yet completed: that takes the peer's key confirmation, verified below.
            let ours = self.membership[conn].finish_handshake(frame, &self.identity)?;
            if let Some(confirmation) = ours {
                self.transmit(conn, confirmation);
            }
            return Ok(());
        }
        if self.membership[conn].is_confirming() {
            if frame.first() == Some(&wire::kind::ALERT) {
                // The responder could not verify our confirmation: it holds another key.
                let known = *frame == wire::KEY_MISMATCH_ALERT;
                return Err(if known {
                    HandshakeError::KeyMismatch.into()
                } else {
                    HandshakeError::Malformed("unknown alert").into()
                });
            }
            return match self.membership[conn].confirm(frame) {
                Ok((proven, ours)) => self.proven(now, conn, proven, ours),
                Err(e @ ConnectionError::Handshake(HandshakeError::KeyMismatch)) => {
                    // Said in the clear, so the dialing end can tell why (a close alone
                    // would not); it learns nothing a close would not tell it.
                    self.transmit(conn, wire::frame(&wire::KEY_MISMATCH_ALERT));
                    Err(e)
                }
                Err(e) => Err(e),
            };
        }
        let link = &mut self.membership[conn];
        match link.receive(now, frame, self.config.max_metadata) {
            Ok(msg) => self.handle_message(now, conn, msg),
            Err(e) => {
                // Authentic, but its metadata is over the bound: a rule broken, not noise.
                if let ConnectionError::Decode(DecodeError::TooLong {
                    field: "metadata", ..
                }) = e
                {
                    self.stats.messages_refused += 1;
                }
                Err(e)
            }
        }
    }

    /// Metadata from a peer must be a JSON object (its size was bounded by the decoder):
    /// anything else is refused, counted, and fails the connection.
    fn check_metadata(&mut self, metadata: &str) -> Result<(), ConnectionError> {
        if is_json_object(metadata) {
            return Ok(());
        }
        Err(self.refuse("metadata is not a JSON object"))
    }

    /// A message broke protocol rule `rule`: counted in `messages_refused`; the error fails
    /// the connection it came on.
    fn refuse(&mut self, rule: &'static str) -> ConnectionError {
        self.stats.messages_refused += 1;
        ConnectionError::Protocol(rule)
    }

    /// A message from the peer on `conn`, opened from its record.
    ///
    /// Before both ends have admitted each other the peer may send its introduction, its
    /// verdict and, once both verdicts are in, its profile, each once and in that order;
    /// anything else, or any of them out of turn, is refused: counted, the connection
    /// closed, nothing changed.
    fn handle_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: Message<'_>,
    ) -> Result<(), ConnectionError> {
        let link = &mut self.membership[conn];
        let from = link.peer_id();
        match msg {
            Message::Introduce {
                id,
                ref host_name,
                advertised,
                ..
            } if link.is_introducing() => {
                if Some(id) != link.proven_id() {
                    // The handshake proved who the peer is; it speaks for that id only.
                    return Err(self.refuse("introduced itself with an id it did not prove"));
                }
                if !is_valid_host_name(host_name) {
                    // Names reach logs and terminals: a newline or an escape sequence in
                    // one is refused here rather than escaped everywhere.
                    return Err(self.refuse("host name with control characters"));
                }
                if advertised.is_some_and(|a| !is_dialable(a)) {
                    // Nobody can be dialed there: a mistake or a probe of our checks.
                    return Err(self.refuse("advertised address that cannot be dialed"));
                }
                let candidate = link
                    .candidate_from_introduction(msg)
                    .expect("an introduction");
                self.introduced(now, conn, candidate)
            }
            Message::Verdict { accepted } if link.is_admitting() => {
                let Ok(candidate) = link.their_verdict(accepted) else {
                    return Err(self.refuse("second verdict"));
                };
                if accepted {
                    self.share_profile(now, conn);
                } else {
                    self.close(conn);
                    self.hold_back_refused(now, &candidate, false);
                    self.push_event(Event::NodeRejected(candidate));
                }
                Ok(())
            }
            Message::Profile {
                metadata,
                master_eligible,
                max_message,
            } if link.is_admitted() && !link.is_member() => {
                self.check_metadata(&metadata)?;
                let detector = self.config.detector;
                let link = &mut self.membership[conn];
                let peer = link
                    .become_member(now, &detector, metadata, master_eligible, max_message)
                    .expect("admitted by both ends");
                self.welcome(now, conn, peer);
                Ok(())
            }
            // The rest is for members only: nothing of the membership before admission.
            _ if !link.is_member() => Err(self.refuse("message before admission")),
            Message::Leave => {
                self.end(now, conn, Loss::Left);
                Ok(())
            }
            Message::Update { metadata } => {
                self.check_metadata(&metadata)?;
                let link = &mut self.membership[conn];
                let peer = link.update_metadata(metadata).clone();
                self.push_event(Event::NodeUpdated(peer));
                Ok(())
            }
            Message::Ping => {
                self.answer_ping(now, conn);
                Ok(())
            }
            Message::Asking(about) => {
                // The sender asks a third member; about itself, or about us, it would be
                // asking the one it talks to or a node that hears its own silence.
                if Some(about) == from {
                    return Err(self.refuse("asking about itself"));
                }
                if about == self.me.id {
                    return Err(self.refuse("asking the receiver about itself"));
                }
                self.member_asks(now, about);
                Ok(())
            }
            Message::Event {
                seq,
                name,
                binary,
                payload,
            } => {
                let from = from.expect("members are introduced");
                // Its body: the flag and the name's length, the name, the payload.
                let len = 2 + name.len() + payload.len();
                let (verdict, ack) = self.sessions.received(now, from, seq, len);
                if let Some((stream, seq)) = ack {
                    self.send(now, conn, &Message::Ack { stream, seq });
                }
                match verdict {
                    Received::Gap => return Err(self.refuse("custom event out of sequence")),
                    Received::Duplicate => {
                        // Replayed on a new connection: delivered already.
                        self.stats.duplicates_dropped += 1;
                        return Ok(());
                    }
                    Received::New => {}
                }
                // Sent before our Unsubscribe reached the peer: dropped here, never emitted
                // (and acknowledged: it was received).
                if self.subscriptions.contains(name) {
                    // JavaScript parses a text payload: one that is not JSON is refused
                    // here, and the connection kept (the rest of its stream is sound).
                    if !binary && !is_json(payload) {
                        self.stats.messages_refused += 1;
                    } else {
                        self.stats.messages_in += 1;
                        // The one copy of a received payload the core makes.
                        self.push_event(Event::Delivery {
                            from,
                            name: name.to_owned(),
                            binary,
                            payload: payload.to_vec(),
                        });
                    }
                }
                Ok(())
            }
            Message::Stream { id, ack_bytes } => {
                self.sessions
                    .announced(from.expect("members are introduced"), id, ack_bytes);
                Ok(())
            }
            Message::Ack { stream, seq } => {
                let from = from.expect("members are introduced");
                if !self.sessions.acked(from, stream, seq) {
                    return Err(self.refuse("acknowledged a custom event never sent"));
                }
                Ok(())
            }
            Message::Subscribe(name) => self.peer_joins(conn, |s| s.peer_subscribed(name)),
            Message::Unsubscribe(name) => {
                link.subscriptions.unsubscribe(&name);
                Ok(())
            }
            Message::Subscriptions(names) => self.peer_joins(conn, |s| s.replace(names)),
            Message::Serve(name) => self.peer_serves(conn, |s| s.peer_subscribed(name)),
            Message::Unserve(name) => {
                link.serving.unsubscribe(&name);
                Ok(())
            }
            Message::Serving(names) => self.peer_serves(conn, |s| s.replace(names)),
            Message::Request { .. } => {
                let from = from.expect("members are introduced");
                self.request_received(now, conn, from, msg)
            }
            Message::Reply { .. } => {
                let from = from.expect("members are introduced");
                self.reply_received(now, conn, from, msg)
            }
            Message::Election(m) => {
                // The peer speaks for itself only: a message that breaks the election's
                // rules changes nothing and closes this connection.
                let from = from.expect("members are introduced");
                let across = self.follows_another_master(from, &m);
                let heard = self.election.handle(now, from, m);
                self.run_election(now);
                // It speaks, so it has not departed: a change of master held for it is told.
                self.release_master(from);
                if across && heard.is_ok() {
                    self.ask_across(now, conn);
                }
                heard.map_err(|crate::core::election::Refused(rule)| self.refuse(rule))
            }
            Message::Members(list) => {
                // Hints only: each dial must prove the id it was made for.
                let hint = if self.config.discovery.multicast && !self.membership[conn].ask {
                    Hint::ListInReach
                } else {
                    Hint::List
                };
                for (id, addr) in list {
                    self.learn(now, id, addr, hint);
                }
                Ok(())
            }
            Message::AskMembers => {
                // A list costs up to `MAX_MEMBERS` entries: an honest node asks at admission,
                // then every `RESYNC_INTERVAL` at most.
                let told = &mut self.membership[conn].told_members_at;
                if told.is_some_and(|t| now < t + ASK_MEMBERS_GAP) {
                    return Err(self.refuse("asked for the member list again too soon"));
                }
                let again = told.replace(now).is_some();
                self.tell_members(now, conn, again);
                Ok(())
            }
            // An introduction, a verdict or a profile from a member: admission is over.
            Message::Introduce { .. } | Message::Verdict { .. } | Message::Profile { .. } => {
                Err(self.refuse("admission message from a member"))
            }
        }
    }
}

/// An address a node can be dialed at: a unicast address (not unspecified, multicast or
/// the IPv4 broadcast address) and a port.
pub fn is_dialable(addr: std::net::SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}
