//! Requests and replies (see `core::calls` for where correlation lives and why): the names
//! this node serves and each member's, our requests and their ends, and what arrives.
//!
//! Both travel on the pair's custom event stream (`sessions`), numbered with its events,
//! acknowledged and replayed alike: a request reaches a live target exactly once across
//! reconnections, and so does its reply.

use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::custom_events::stream_id;
use super::{Cluster, ConnId, Event, Output};
use crate::core::calls::{Answer, Incoming, ReplyCheck, MAX_REMOTE_CODE, MAX_REMOTE_MESSAGE};
use crate::core::error::{ConnectionError, SendError, SubscribeError};
use crate::core::json::is_json;
use crate::core::message::{self, kept, status, Message};
use crate::core::node::NodeId;
use crate::core::sessions::Received;
use crate::core::subscriptions::is_valid_name;

/// How this node answers a request of a peer (see [`Cluster::reply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// The handler's value: JSON text, or bytes.
    Value { binary: bool, payload: &'a [u8] },
    /// The handler threw or rejected (code and message are cut to their bounds).
    Remote { code: &'a str, message: &'a str },
    /// It serves no handler of that name (any more).
    NoHandler,
}

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// From now on this node serves requests named `name`; every member hears of it. The
    /// same rules and bounds as joined events (a separate set).
    pub fn serve(&mut self, now: Instant, name: &str) -> Result<(), SubscribeError> {
        if self.serving.subscribe(name)? {
            self.send_all(now, &Message::Serve(name.to_owned()));
        }
        Ok(())
    }

    /// This node no longer serves `name`; requests for it are answered `NoHandler`.
    pub fn unserve(&mut self, now: Instant, name: &str) {
        if self.serving.unsubscribe(name) {
            self.send_all(now, &Message::Unserve(name.to_owned()));
        }
    }

    /// The members (connected, not suspects) that serve `name`, in id order.
    pub fn servers(&self, name: &str) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .membership
            .member_links()
            .into_iter()
            .filter_map(|conn| {
                let link = self.membership.get(conn)?;
                link.serving.contains(name).then(|| link.peer_id())?
            })
            .collect();
        ids.sort();
        ids
    }

    /// The names we serve, for a new member (sent only if there are any, so that a node
    /// without handlers puts nothing new on the wire).
    pub(super) fn share_serving(&mut self, now: Instant, conn: ConnId) {
        let names = self.serving.names();
        if !names.is_empty() {
            self.send(now, conn, &Message::Serving(names));
        }
    }

    /// Asks handler `name` of member `target` (connected, or a suspect: then kept in its
    /// stream for its return); the request fails as [`Answer::Timeout`] after `timeout`.
    /// Its id, for [`Event::Answer`] and [`Cluster::cancel_request`].
    pub fn request(
        &mut self,
        now: Instant,
        name: &str,
        binary: bool,
        payload: &[u8],
        target: NodeId,
        timeout: Duration,
    ) -> Result<u64, SendError> {
        if !is_valid_name(name) {
            return Err(SendError::InvalidName);
        }
        let conn = self.membership.member_link(target);
        let max = match conn {
            Some(conn) => self.membership[conn].peer_max_message,
            None => match self
                .sessions
                .outbound_of(target)
                .and_then(|o| o.away.as_ref())
            {
                Some((_, max)) => *max,
                None => return Err(SendError::UnknownTarget(target.to_string())),
            },
        };
        let max = max.min(self.config.max_message);
        if payload.len() > max {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let Some(id) = self.calls.start(target, now + timeout) else {
            return Err(SendError::TooManyRequests {
                max: crate::core::calls::MAX_PENDING,
            });
        };
        let flag = kept::REQUEST | u8::from(binary);
        self.stream_send(now, target, conn, flag, name, &[&id.to_be_bytes(), payload]);
        self.stats.requests_out += 1;
        Ok(id)
    }

    /// The application gives up on our request `id` (aborted): no [`Event::Answer`] follows,
    /// and a reply to it is dropped, as late from its target. False if it had ended already.
    pub fn cancel_request(&mut self, id: u64) -> bool {
        self.calls.cancel(id)
    }

    /// Answers `peer`'s request `id`. Nothing is sent unless that request awaits its
    /// answer (answered once; its asker still a member or a suspect). A value over what
    /// the asker accepts (or over our `max_message_size`) is answered `TooLarge` instead.
    pub fn reply(&mut self, now: Instant, peer: NodeId, id: u64, reply: Reply<'_>) {
        if !self.calls.answer(peer, id) {
            return;
        }
        let conn = self.membership.member_link(peer);
        let max = match conn {
            Some(conn) => self.membership[conn].peer_max_message,
            None => match self
                .sessions
                .outbound_of(peer)
                .and_then(|o| o.away.as_ref())
            {
                Some((_, max)) => *max,
                None => return,
            },
        };
        let max = max.min(self.config.max_message);
        let id_bytes = id.to_be_bytes();
        let (code, message) = match reply {
            Reply::Remote { code, message } => {
                (cut(code, MAX_REMOTE_CODE), cut(message, MAX_REMOTE_MESSAGE))
            }
            _ => ("", ""),
        };
        let code_len = [code.len() as u8];
        let (status, parts): (u8, Vec<&[u8]>) = match reply {
            Reply::Value { binary, payload } if payload.len() <= max => {
                let status = if binary {
                    status::VALUE_BINARY
                } else {
                    status::VALUE_JSON
                };
                (status, vec![&id_bytes, payload])
            }
            Reply::Value { .. } => (status::TOO_LARGE, vec![&id_bytes]),
            Reply::Remote { .. } => (
                status::REMOTE,
                vec![&id_bytes, &code_len, code.as_bytes(), message.as_bytes()],
            ),
            Reply::NoHandler => (status::NO_HANDLER, vec![&id_bytes]),
        };
        self.stream_send(now, peer, conn, kept::REPLY | status, "", &parts);
    }

    /// Appends a request or reply to `peer`'s stream and, if it is connected (`conn`),
    /// seals it there; a suspect gets it on its return.
    fn stream_send(
        &mut self,
        now: Instant,
        peer: NodeId,
        conn: Option<ConnId>,
        flag: u8,
        name: &str,
        parts: &[&[u8]],
    ) {
        let rng = &mut self.rng;
        let (seq, (body, wrapped)) =
            self.sessions
                .record_kept(peer, || stream_id(rng), flag, name, parts);
        let Some(conn) = conn else {
            return;
        };
        let head = message::stream_head(seq, flag);
        let sealed = self.membership[conn]
            .seal_parts(&[&head, &body[1..], wrapped])
            .expect("members have sessions");
        match sealed {
            Ok(bytes) => self.outputs.push_back(Output::Transmit { conn, bytes }),
            // Kept in the peer's stream: its next connection carries it.
            Err(e) => self.fail(now, conn, e.into()),
        }
    }

    /// Sends `to` a reply to its request `id` in sequence on our stream, whether or not it
    /// asked: what a hostile member could say, for tests.
    #[cfg(test)]
    pub(crate) fn inject_reply(
        &mut self,
        now: Instant,
        to: NodeId,
        id: u64,
        status: u8,
        value: &[u8],
    ) {
        let conn = self.membership.member_link(to);
        let flag = kept::REPLY | status;
        self.stream_send(now, to, conn, flag, "", &[&id.to_be_bytes(), value]);
    }

    /// Our requests whose time ran out fail.
    pub(super) fn expire_requests(&mut self, now: Instant) {
        for (id, from) in self.calls.expired(now) {
            self.push_event(Event::Answer {
                id,
                from,
                answer: Answer::Timeout,
            });
        }
    }

    /// `peer` was removed: our requests to it fail at once, its requests to us are
    /// forgotten.
    pub(super) fn requests_peer_left(&mut self, peer: NodeId) {
        for id in self.calls.peer_left(peer) {
            self.push_event(Event::Answer {
                id,
                from: peer,
                answer: Answer::TargetLeft,
            });
        }
    }

    /// Number `seq` of `from`'s stream arrived, `len` bytes of body: true if it is new (a
    /// replay is dropped and counted; a gap breaks the protocol).
    fn stream_received(
        &mut self,
        now: Instant,
        conn: ConnId,
        from: NodeId,
        seq: u64,
        len: usize,
    ) -> Result<bool, ConnectionError> {
        let (verdict, ack) = self.sessions.received(now, from, seq, len);
        if let Some((stream, seq)) = ack {
            self.send(now, conn, &Message::Ack { stream, seq });
        }
        match verdict {
            Received::Gap => {
                self.stats.messages_refused += 1;
                Err(ConnectionError::Protocol(
                    "request or reply out of sequence",
                ))
            }
            Received::Duplicate => {
                self.stats.duplicates_dropped += 1;
                Ok(false)
            }
            Received::New => Ok(true),
        }
    }

    /// A member's request to us (a [`Message::Request`]).
    pub(super) fn request_received(
        &mut self,
        now: Instant,
        conn: ConnId,
        from: NodeId,
        msg: Message<'_>,
    ) -> Result<(), ConnectionError> {
        let Message::Request {
            seq,
            id,
            name,
            binary,
            payload,
        } = msg
        else {
            unreachable!("called with requests only")
        };
        let len = 2 + name.len() + 8 + payload.len();
        if !self.stream_received(now, conn, from, seq, len)? {
            return Ok(());
        }
        if !self.serving.contains(name) {
            // Sent before our `Unserve` reached it, or to a node it picked itself.
            if self.calls.take_request(from, id) == Incoming::Taken {
                self.reply(now, from, id, Reply::NoHandler);
            }
            return Ok(());
        }
        match self.calls.take_request(from, id) {
            Incoming::Taken => {}
            Incoming::Busy => {
                let id_bytes = id.to_be_bytes();
                let flag = kept::REPLY | status::BUSY;
                self.stream_send(now, from, Some(conn), flag, "", &[&id_bytes]);
                return Ok(());
            }
            Incoming::Duplicate => {
                // Its own request still unanswered under the same id: its answer would be
                // ambiguous, so the second is dropped.
                self.stats.messages_refused += 1;
                return Ok(());
            }
        }
        if !binary && !is_json(payload) {
            self.stats.messages_refused += 1;
            self.calls.answer(from, id);
            return Ok(());
        }
        self.stats.requests_in += 1;
        self.push_event(Event::Request {
            from,
            id,
            name: name.to_owned(),
            binary,
            payload: payload.to_vec(),
        });
        Ok(())
    }

    /// A member's reply to a request of ours (a [`Message::Reply`]): checked against the request it answers
    /// before anything of it reaches the application.
    pub(super) fn reply_received(
        &mut self,
        now: Instant,
        conn: ConnId,
        from: NodeId,
        msg: Message<'_>,
    ) -> Result<(), ConnectionError> {
        let Message::Reply {
            seq,
            id,
            status,
            payload,
        } = msg
        else {
            unreachable!("called with replies only")
        };
        if !self.stream_received(now, conn, from, seq, 2 + 8 + payload.len())? {
            return Ok(());
        }
        let Some(answer) = parse_answer(status, payload) else {
            // Malformed, but in sequence: the rest of its stream is sound.
            self.stats.messages_refused += 1;
            return Ok(());
        };
        match self.calls.reply_from(from, id) {
            ReplyCheck::Accept => self.push_event(Event::Answer { id, from, answer }),
            ReplyCheck::Late => self.stats.replies_late += 1,
            ReplyCheck::Refused => self.stats.replies_refused += 1,
        }
        Ok(())
    }
}

/// A reply's status and payload as an [`Answer`], if well formed: a JSON value is JSON
/// text, a remote error's code and message are UTF-8 within their bounds, and the other
/// statuses carry nothing.
fn parse_answer(status: u8, payload: &[u8]) -> Option<Answer> {
    Some(match status {
        status::VALUE_JSON if is_json(payload) => Answer::Value {
            binary: false,
            payload: payload.to_vec(),
        },
        status::VALUE_BINARY => Answer::Value {
            binary: true,
            payload: payload.to_vec(),
        },
        status::REMOTE => {
            let (&code_len, rest) = payload.split_first()?;
            let code_len = usize::from(code_len);
            if code_len > MAX_REMOTE_CODE || rest.len() < code_len {
                return None;
            }
            let (code, message) = rest.split_at(code_len);
            if message.len() > MAX_REMOTE_MESSAGE {
                return None;
            }
            Answer::Remote {
                code: std::str::from_utf8(code).ok()?.to_owned(),
                message: std::str::from_utf8(message).ok()?.to_owned(),
            }
        }
        status::NO_HANDLER if payload.is_empty() => Answer::NoHandler,
        status::BUSY if payload.is_empty() => Answer::Busy,
        status::TOO_LARGE if payload.is_empty() => Answer::TooLarge,
        _ => return None,
    })
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
