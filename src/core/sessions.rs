//! Per-pair sessions for custom events: what makes a resolved `send()` reach a live peer
//! exactly once and in order although its connection breaks and is re-established.
//!
//! A session belongs to a node id, not to a connection. An id is proven by the handshake and
//! derived from a key made at each start, so a connection of the same id is the same
//! process: the session carries over to it. A restarted process has a new id, hence a new
//! session, and nothing of the old one is sent to it.
//!
//! Outgoing, each peer has a *stream* (a random id drawn when the session starts) whose
//! events are numbered 1, 2, 3...; every event is kept until the peer acknowledges it
//! (cumulatively), and what is kept is replayed, in order, on the peer's next connection
//! after the stream is announced there. Incoming, each peer's stream and the highest number
//! delivered of it: anything at or below is a replay and dropped; anything past the next
//! number is a gap, which a sound peer never makes.
//!
//! Acknowledgements are cheap: one small record per eighth of the sender's bound of events
//! received (it says so in its `Stream`; each event weighs its body and
//! [`ACK_EVENT_WEIGHT`]), or [`ACK_DELAY`] after the first one not yet acknowledged.
//! Keeping an event costs no allocation of its own: the bodies of a stream lie back to back
//! in one ring buffer, and an acknowledgement releases all it covers by moving its head.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::node::NodeId;
use super::subscriptions::Subscriptions;

/// Event bytes received from a peer between two acknowledgements, at most, unless its
/// `Stream` asks for another figure (an eighth of its bound): the smallest bound allowed,
/// `max_unacked_bytes`, so that a sender at it has an acknowledgement on its way without
/// waiting for [`ACK_DELAY`].
pub const ACK_BYTES: usize = 64 * 1024;
/// The fewest bytes a peer may ask to be acknowledged after, so that one cannot make this
/// node acknowledge every event it sends.
pub const MIN_ACK_BYTES: usize = 4 * 1024;
/// What an event weighs towards an acknowledgement besides its body, so that the count of
/// tiny events between two is bounded too (1 024 per 64 KiB).
pub const ACK_EVENT_WEIGHT: usize = 64;
/// How long an event waits for its acknowledgement to be sent, at most.
pub const ACK_DELAY: Duration = Duration::from_millis(10);
/// Incoming states kept for peers that were removed, so that a peer which did not notice
/// (one-sided removal) and replays on its return is still deduplicated.
pub const MAX_RETIRED: usize = 4096;
/// Documented default for the bound on unacknowledged bytes per peer (`max_unacked_bytes`).
/// Above the connection's own send queue (`connection::HIGH_WATER`, 8 MiB) and what the
/// kernel buffers, so that a peer that keeps up never makes senders wait on it: the bound is
/// for a peer that stops acknowledging (away, or stuck).
pub const DEFAULT_MAX_UNACKED: usize = 16 * 1024 * 1024;
/// What keeping an event costs besides its body (its length), counted in the bound.
pub const KEPT_OVERHEAD: usize = 4;
/// Bytes of capacity a stream's buffers (bodies, lengths) keep once everything in them is
/// acknowledged; larger ones (after a burst) are freed, so that an idle peer costs little.
pub const KEPT_CAPACITY: usize = 64 * 1024;

/// A body kept: an encoded event after its number (binary flag, name, payload), in two
/// pieces where it wraps around the end of its stream's buffer (the second often empty).
pub type Body<'a> = (&'a [u8], &'a [u8]);

/// The bodies of the events sent on a stream and not yet acknowledged, oldest first, back to
/// back in a ring: acknowledged ones are released from the front without moving the rest,
/// and the ring grows (by doubling) only past its largest content so far.
#[derive(Debug, Default)]
struct Kept {
    bytes: VecDeque<u8>,
    lens: VecDeque<u32>,
}

impl Kept {
    fn push(&mut self, flag: u8, name: &str, parts: &[&[u8]]) -> Body<'_> {
        let at = self.bytes.len();
        // Names are at most 255 bytes (checked by the caller), so the length fits its byte.
        self.bytes.extend(&[flag, name.len() as u8]);
        self.bytes.extend(name.as_bytes());
        for part in parts {
            self.bytes.extend(*part);
        }
        let len = self.bytes.len() - at;
        self.lens
            .push_back(u32::try_from(len).expect("bodies are bounded by max_message"));
        self.body(at, len)
    }

    fn body(&self, at: usize, len: usize) -> Body<'_> {
        let (front, back) = self.bytes.as_slices();
        if at >= front.len() {
            let at = at - front.len();
            (&back[at..at + len], &[])
        } else if at + len <= front.len() {
            (&front[at..at + len], &[])
        } else {
            (&front[at..], &back[..at + len - front.len()])
        }
    }

    /// Forgets the `n` oldest bodies; returns their bytes.
    fn release(&mut self, n: usize) -> usize {
        let freed: usize = self.lens.drain(..n).map(|l| l as usize).sum();
        let capacity = self.bytes.capacity() + 4 * self.lens.capacity();
        if self.lens.is_empty() && capacity > KEPT_CAPACITY {
            self.bytes = VecDeque::new();
            self.lens = VecDeque::new();
        } else {
            self.bytes.drain(..freed);
        }
        freed
    }

    fn iter(&self) -> impl Iterator<Item = Body<'_>> {
        let mut at = 0;
        self.lens.iter().map(move |&l| {
            let body = self.body(at, l as usize);
            at += l as usize;
            body
        })
    }
}

/// Our stream to one peer.
#[derive(Debug)]
pub struct Outbound {
    pub stream: u64,
    /// The number of the last event sent.
    pub last_seq: u64,
    kept: Kept,
    /// Bytes of the events not yet acknowledged: their bodies and [`KEPT_OVERHEAD`] each.
    pub unacked_bytes: usize,
    /// While the peer is a suspect (its connection dropped): the events it had joined and
    /// the largest payload it accepts, so that what is sent meanwhile is kept for it.
    pub away: Option<(Subscriptions, usize)>,
}

impl Outbound {
    /// Events not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.kept.lens.len()
    }

    /// The events not yet acknowledged, oldest first: `(seq, body)`.
    pub fn unacked_events(&self) -> impl Iterator<Item = (u64, Body<'_>)> {
        let first = self.last_seq + 1 - self.unacked() as u64;
        (first..).zip(self.kept.iter())
    }
}

/// A peer's stream to us.
#[derive(Debug, Clone)]
struct Inbound {
    stream: u64,
    delivered: u64,
    /// Weight of the events received (duplicates included) since the last acknowledgement.
    pending: usize,
    /// The weight after which the peer would have them acknowledged (its `Stream` says).
    ack_bytes: usize,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound {
            stream: 0,
            delivered: 0,
            pending: 0,
            ack_bytes: ACK_BYTES,
        }
    }
}

/// What to do with an event received.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// Deliver it.
    New,
    /// Delivered already (a replay after a reconnection): drop it.
    Duplicate,
    /// Not the next number: the peer broke the protocol.
    Gap,
}

#[derive(Default)]
pub struct Sessions {
    out: BTreeMap<NodeId, Outbound>,
    inb: BTreeMap<NodeId, Inbound>,
    /// Peers owed an acknowledgement, and when the first event it covers arrived; apart
    /// from `inb` so that finding the next one due does not walk the retired peers.
    owed: BTreeMap<NodeId, Instant>,
    /// Peers removed whose incoming state is still kept, oldest first.
    retired: VecDeque<NodeId>,
}

impl Sessions {
    /// Our stream to `peer`, started with id `stream` if there is none.
    pub fn outbound(&mut self, peer: NodeId, stream: impl FnOnce() -> u64) -> &mut Outbound {
        self.out.entry(peer).or_insert_with(|| Outbound {
            stream: stream(),
            last_seq: 0,
            kept: Kept::default(),
            unacked_bytes: 0,
            away: None,
        })
    }

    pub fn outbound_of(&self, peer: NodeId) -> Option<&Outbound> {
        self.out.get(&peer)
    }

    /// Peers away (suspects) whose stream keeps what is sent to them.
    pub fn away(&mut self) -> impl Iterator<Item = (&NodeId, &mut Outbound)> {
        self.out.iter_mut().filter(|(_, o)| o.away.is_some())
    }

    /// Numbers the next event to `peer` and keeps it until acknowledged; returns its number
    /// and its body (the event's encoding after the number).
    pub fn record(
        &mut self,
        peer: NodeId,
        stream: impl FnOnce() -> u64,
        binary: bool,
        name: &str,
        payload: &[u8],
    ) -> (u64, Body<'_>) {
        self.record_kept(peer, stream, u8::from(binary), name, &[payload])
    }

    /// [`Sessions::record`] of any message of a stream: `flag` is the kept body's first
    /// byte (see `message::kept`), `parts` its bytes after the name.
    pub fn record_kept(
        &mut self,
        peer: NodeId,
        stream: impl FnOnce() -> u64,
        flag: u8,
        name: &str,
        parts: &[&[u8]],
    ) -> (u64, Body<'_>) {
        let out = self.outbound(peer, stream);
        out.last_seq += 1;
        let body = out.kept.push(flag, name, parts);
        out.unacked_bytes += body.0.len() + body.1.len() + KEPT_OVERHEAD;
        (out.last_seq, body)
    }

    /// True if the stream to `peer` holds `max` unacknowledged bytes or more.
    pub fn full_to(&self, peer: NodeId, max: usize) -> bool {
        self.out.get(&peer).is_some_and(|o| o.unacked_bytes >= max)
    }

    /// True if the stream to a peer away holds `max` unacknowledged bytes or more.
    pub fn full_away(&self, max: usize) -> bool {
        let away = self.out.values().filter(|o| o.away.is_some());
        away.into_iter().any(|o| o.unacked_bytes >= max)
    }

    /// `peer` acknowledged every event of `stream` up to `seq`. False if it acknowledged
    /// one never sent (a protocol violation); an acknowledgement of a stream ended since is
    /// ignored.
    pub fn acked(&mut self, peer: NodeId, stream: u64, seq: u64) -> bool {
        let Some(out) = self.out.get_mut(&peer).filter(|o| o.stream == stream) else {
            return true;
        };
        if seq > out.last_seq {
            return false;
        }
        let first = out.last_seq + 1 - out.unacked() as u64;
        if seq >= first {
            let n = (seq - first + 1) as usize;
            let freed = out.kept.release(n);
            out.unacked_bytes -= freed + n * KEPT_OVERHEAD;
        }
        true
    }

    /// Ends our stream to `peer` (it was removed): what it never acknowledged.
    pub fn end(&mut self, peer: NodeId) -> Option<Outbound> {
        let ended = self.out.remove(&peer);
        self.owed.remove(&peer);
        if self.inb.contains_key(&peer) && !self.retired.contains(&peer) {
            self.retired.push_back(peer);
            while self.retired.len() > MAX_RETIRED {
                let oldest = self.retired.pop_front().expect("non-empty");
                self.inb.remove(&oldest);
            }
        }
        ended
    }

    /// `peer` is a member again: its incoming state is live, not retired.
    pub fn revive(&mut self, peer: NodeId) {
        self.retired.retain(|&p| p != peer);
    }

    /// `peer` announced the stream its next events belong to, and how often it would have
    /// them acknowledged (at most every [`MIN_ACK_BYTES`]).
    pub fn announced(&mut self, peer: NodeId, stream: u64, ack_bytes: u32) {
        let inb = self.inb.entry(peer).or_default();
        inb.ack_bytes = (ack_bytes as usize).max(MIN_ACK_BYTES);
        if inb.stream != stream {
            *inb = Inbound {
                stream,
                ack_bytes: inb.ack_bytes,
                ..Inbound::default()
            };
            self.owed.remove(&peer);
        }
    }

    /// Event number `seq` with a body of `len` bytes arrived from `peer` at `now`: what to
    /// do with it, and the acknowledgement to send now `(stream, seq)` if one is due by
    /// the bytes received (the rest wait for [`Sessions::ack_due`]).
    pub fn received(
        &mut self,
        now: Instant,
        peer: NodeId,
        seq: u64,
        len: usize,
    ) -> (Received, Option<(u64, u64)>) {
        let inb = self.inb.entry(peer).or_default();
        let verdict = if seq <= inb.delivered {
            Received::Duplicate
        } else if seq == inb.delivered + 1 {
            inb.delivered = seq;
            Received::New
        } else {
            return (Received::Gap, None);
        };
        if inb.pending == 0 {
            self.owed.insert(peer, now);
        }
        inb.pending += len + ACK_EVENT_WEIGHT;
        if inb.pending < inb.ack_bytes {
            return (verdict, None);
        }
        inb.pending = 0;
        self.owed.remove(&peer);
        (verdict, Some((inb.stream, inb.delivered)))
    }

    /// The acknowledgement due to `peer` by [`ACK_DELAY`] (any, with `force`), `(stream,
    /// seq)`, if one is.
    pub fn ack_due(&mut self, now: Instant, peer: NodeId, force: bool) -> Option<(u64, u64)> {
        let since = *self.owed.get(&peer)?;
        if !force && now < since + ACK_DELAY {
            return None;
        }
        self.owed.remove(&peer);
        let inb = self.inb.get_mut(&peer)?;
        inb.pending = 0;
        Some((inb.stream, inb.delivered))
    }

    /// Peers with an acknowledgement waiting.
    pub fn acks_waiting(&self) -> Vec<NodeId> {
        self.owed.keys().copied().collect()
    }

    /// When the next acknowledgement falls due by its delay.
    pub fn next_ack(&self) -> Option<Instant> {
        self.owed.values().min().map(|&t| t + ACK_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(out: &Outbound) -> Vec<(u64, Vec<u8>)> {
        out.unacked_events()
            .map(|(q, (a, b))| (q, [a, b].concat()))
            .collect()
    }

    #[test]
    fn acknowledged_events_are_released_and_a_stale_stream_is_ignored() {
        let mut s = Sessions::default();
        let p = NodeId([1; 16]);
        for i in 0..3u8 {
            let (seq, (a, b)) = s.record(p, || 7, true, "e", &[i]);
            assert_eq!(
                (seq, [a, b].concat()),
                (u64::from(i) + 1, vec![1, 1, b'e', i])
            );
        }
        let each = 4 + KEPT_OVERHEAD;
        assert!(s.full_to(p, 3 * each) && !s.full_to(p, 3 * each + 1));
        assert!(s.acked(p, 8, 3), "another stream: ignored");
        assert_eq!(s.out[&p].unacked(), 3);
        assert!(s.acked(p, 7, 2));
        assert_eq!(s.out[&p].unacked_bytes, each);
        assert!(s.acked(p, 7, 1), "acknowledged already: nothing changes");
        assert_eq!(s.out[&p].unacked_bytes, each);
        assert!(!s.acked(p, 7, 4), "never sent");
        let left = s.end(p).unwrap();
        assert_eq!(bodies(&left), vec![(3, vec![1, 1, b'e', 2])]);
    }

    #[test]
    fn kept_bodies_survive_partial_releases_and_wrapping_around_in_order() {
        let mut s = Sessions::default();
        let p = NodeId([3; 16]);
        let (mut acked, mut wraps) = (0, 0);
        for i in 0..1000u32 {
            // Bodies of varying sizes, released in uneven cuts.
            let payload = vec![i as u8; (i % 37) as usize];
            let (_, (_, wrapped)) = s.record(p, || 1, false, "n", &payload);
            wraps += usize::from(!wrapped.is_empty());
            if i % 7 == 6 {
                acked = u64::from(i) - 2;
                assert!(s.acked(p, 1, acked));
            }
        }
        assert!(wraps > 0, "some bodies wrapped around the ring's end");
        let out = &s.out[&p];
        let left = bodies(out);
        assert_eq!(left.len() as u64, 1000 - acked);
        for (seq, body) in &left {
            let i = (seq - 1) as u32;
            let mut want = vec![0, 1, b'n'];
            want.extend(vec![i as u8; (i % 37) as usize]);
            assert_eq!(body, &want, "event {seq}");
        }
        let bytes: usize = left.iter().map(|(_, b)| b.len() + KEPT_OVERHEAD).sum();
        assert_eq!(out.unacked_bytes, bytes);
        assert!(
            out.kept.bytes.len() <= 2 * bytes,
            "released bytes are cut off"
        );
        assert!(s.acked(p, 1, 1000));
        assert_eq!((s.out[&p].unacked(), s.out[&p].unacked_bytes), (0, 0));
        assert!(s.out[&p].kept.bytes.is_empty());
    }

    #[test]
    fn a_burst_once_acknowledged_leaves_no_large_buffer_behind() {
        let mut s = Sessions::default();
        let p = NodeId([5; 16]);
        for _ in 0..100 {
            s.record(p, || 1, true, "e", &[0; 1000]);
        }
        assert!(s.acked(p, 1, 99));
        assert!(
            s.out[&p].kept.bytes.capacity() > KEPT_CAPACITY,
            "one left: kept"
        );
        assert!(s.acked(p, 1, 100));
        assert_eq!(s.out[&p].kept.bytes.capacity(), 0, "emptied: freed");
        s.record(p, || 1, true, "e", &[0; 10]);
        assert!(s.acked(p, 1, 101));
        assert!(
            s.out[&p].kept.bytes.capacity() > 0,
            "small: kept for the next"
        );
    }

    #[test]
    fn replays_are_dropped_gaps_refused_and_a_new_stream_starts_over() {
        let mut s = Sessions::default();
        let p = NodeId([2; 16]);
        let t = Instant::now();
        s.announced(p, 5, 0);
        assert_eq!(s.received(t, p, 1, 1), (Received::New, None));
        assert_eq!(s.received(t, p, 1, 1), (Received::Duplicate, None));
        assert_eq!(s.received(t, p, 3, 1).0, Received::Gap);
        assert_eq!(s.ack_due(t, p, false), None);
        assert_eq!(s.next_ack(), Some(t + ACK_DELAY));
        assert_eq!(s.ack_due(t + ACK_DELAY, p, false), Some((5, 1)));
        assert_eq!(s.next_ack(), None, "acknowledged");
        s.announced(p, 5, 0);
        assert_eq!(s.received(t, p, 2, 1).0, Received::New);
        s.announced(p, 6, 0);
        assert_eq!(
            s.next_ack(),
            None,
            "the old stream's acknowledgement is moot"
        );
        assert_eq!(s.received(t, p, 1, 1).0, Received::New, "a new stream");
    }

    #[test]
    fn an_acknowledgement_goes_at_once_every_ack_bytes_the_sender_asked_for() {
        let mut s = Sessions::default();
        let p = NodeId([4; 16]);
        let t = Instant::now();
        s.announced(p, 9, 100_000);
        // Tiny events weigh ACK_EVENT_WEIGHT each, so that their count is bounded too.
        let per_ack = (100_000 / (10 + ACK_EVENT_WEIGHT)) as u64 + 1;
        for seq in 1..per_ack {
            assert_eq!(s.received(t, p, seq, 10), (Received::New, None));
        }
        assert_eq!(
            s.received(t, p, per_ack, 10),
            (Received::New, Some((9, per_ack)))
        );
        assert_eq!(s.next_ack(), None, "nothing owed");
        // A large one is acknowledged on its own.
        let big = s.received(t, p, per_ack + 1, 100_000);
        assert_eq!(big, (Received::New, Some((9, per_ack + 1))));
        // A peer asking for an acknowledgement of every event gets one per MIN_ACK_BYTES.
        s.announced(p, 9, 1);
        let seq = per_ack + 1;
        let each = MIN_ACK_BYTES / 4;
        let got: Vec<_> = (1..=4)
            .map(|i| s.received(t, p, seq + i, each - ACK_EVENT_WEIGHT).1)
            .collect();
        assert_eq!(got, vec![None, None, None, Some((9, seq + 4))]);
    }
}
