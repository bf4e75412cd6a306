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
//! Acknowledgements are cheap: one small record per [`ACK_EVERY`] events or [`ACK_BYTES`]
//! of them, or [`ACK_DELAY`] after the first one not yet acknowledged.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::node::NodeId;
use super::subscriptions::Subscriptions;

/// Events received from a peer between two acknowledgements, at most.
pub const ACK_EVERY: u32 = 32;
/// Event bytes received from a peer between two acknowledgements, at most.
pub const ACK_BYTES: usize = 256 * 1024;
/// How long an event waits for its acknowledgement to be sent, at most.
pub const ACK_DELAY: Duration = Duration::from_millis(10);
/// Incoming states kept for peers that were removed, so that a peer which did not notice
/// (one-sided removal) and replays on its return is still deduplicated.
pub const MAX_RETIRED: usize = 4096;
/// Documented default for the bound on unacknowledged bytes per peer (`max_unacked_bytes`).
pub const DEFAULT_MAX_UNACKED: usize = 4 * 1024 * 1024;

/// An event sent and not yet acknowledged: `body` is its encoding after the sequence
/// number (binary flag, name, payload), shared by every peer it went to.
#[derive(Debug, Clone)]
pub struct Unacked {
    pub seq: u64,
    pub body: Arc<Vec<u8>>,
}

/// Our stream to one peer.
#[derive(Debug)]
pub struct Outbound {
    pub stream: u64,
    /// The number of the last event sent.
    pub last_seq: u64,
    pub unacked: VecDeque<Unacked>,
    /// Bytes of `unacked` bodies, summed.
    pub unacked_bytes: usize,
    /// While the peer is a suspect (its connection dropped): the events it had joined and
    /// the largest payload it accepts, so that what is sent meanwhile is kept for it.
    pub away: Option<(Subscriptions, usize)>,
}

/// A peer's stream to us.
#[derive(Debug, Default, Clone)]
struct Inbound {
    stream: u64,
    delivered: u64,
    /// Events received (duplicates included) since the last acknowledgement, their bytes,
    /// and when the first of them arrived.
    pending: u32,
    pending_bytes: usize,
    since: Option<Instant>,
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
    /// Peers removed whose incoming state is still kept, oldest first.
    retired: VecDeque<NodeId>,
}

impl Sessions {
    /// Our stream to `peer`, started with id `stream` if there is none.
    pub fn outbound(&mut self, peer: NodeId, stream: impl FnOnce() -> u64) -> &mut Outbound {
        self.out.entry(peer).or_insert_with(|| Outbound {
            stream: stream(),
            last_seq: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            away: None,
        })
    }

    pub fn outbound_of(&mut self, peer: NodeId) -> Option<&mut Outbound> {
        self.out.get_mut(&peer)
    }

    /// Peers away (suspects) whose stream keeps what is sent to them.
    pub fn away(&mut self) -> impl Iterator<Item = (&NodeId, &mut Outbound)> {
        self.out.iter_mut().filter(|(_, o)| o.away.is_some())
    }

    /// Numbers the next event to `peer` and keeps it until acknowledged; returns its number.
    pub fn record(
        &mut self,
        peer: NodeId,
        stream: impl FnOnce() -> u64,
        body: &Arc<Vec<u8>>,
    ) -> u64 {
        let out = self.outbound(peer, stream);
        out.last_seq += 1;
        out.unacked_bytes += body.len();
        out.unacked.push_back(Unacked {
            seq: out.last_seq,
            body: body.clone(),
        });
        out.last_seq
    }

    /// True if some stream holds `max` unacknowledged bytes or more: senders wait.
    pub fn full(&self, max: usize) -> bool {
        self.out.values().any(|o| o.unacked_bytes >= max)
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
        while out.unacked.front().is_some_and(|u| u.seq <= seq) {
            let done = out.unacked.pop_front().expect("checked");
            out.unacked_bytes -= done.body.len();
        }
        true
    }

    /// Ends our stream to `peer` (it was removed): what it never acknowledged.
    pub fn end(&mut self, peer: NodeId) -> Vec<Unacked> {
        let ended = self.out.remove(&peer);
        if self.inb.contains_key(&peer) && !self.retired.contains(&peer) {
            self.retired.push_back(peer);
            while self.retired.len() > MAX_RETIRED {
                let oldest = self.retired.pop_front().expect("non-empty");
                self.inb.remove(&oldest);
            }
        }
        ended.map(|o| o.unacked.into()).unwrap_or_default()
    }

    /// `peer` is a member again: its incoming state is live, not retired.
    pub fn revive(&mut self, peer: NodeId) {
        self.retired.retain(|&p| p != peer);
    }

    /// `peer` announced the stream its next events belong to.
    pub fn announced(&mut self, peer: NodeId, stream: u64) {
        let inb = self.inb.entry(peer).or_default();
        if inb.stream != stream {
            *inb = Inbound {
                stream,
                ..Inbound::default()
            };
        }
    }

    /// Event number `seq` of `len` bytes arrived from `peer` at `now`.
    pub fn received(&mut self, now: Instant, peer: NodeId, seq: u64, len: usize) -> Received {
        let inb = self.inb.entry(peer).or_default();
        let verdict = if seq <= inb.delivered {
            Received::Duplicate
        } else if seq == inb.delivered + 1 {
            inb.delivered = seq;
            Received::New
        } else {
            return Received::Gap;
        };
        inb.pending += 1;
        inb.pending_bytes += len;
        inb.since.get_or_insert(now);
        verdict
    }

    /// The acknowledgement due to `peer` now, `(stream, seq)`, if one is: enough events or
    /// bytes since the last one, or (with `force` or after [`ACK_DELAY`]) any.
    pub fn ack_due(&mut self, now: Instant, peer: NodeId, force: bool) -> Option<(u64, u64)> {
        let inb = self.inb.get_mut(&peer)?;
        let since = inb.since?;
        let due = force
            || inb.pending >= ACK_EVERY
            || inb.pending_bytes >= ACK_BYTES
            || now >= since + ACK_DELAY;
        if !due {
            return None;
        }
        inb.pending = 0;
        inb.pending_bytes = 0;
        inb.since = None;
        Some((inb.stream, inb.delivered))
    }

    /// Peers with an acknowledgement waiting.
    pub fn acks_waiting(&self) -> Vec<NodeId> {
        let waiting = self.inb.iter().filter(|(_, i)| i.since.is_some());
        waiting.map(|(&p, _)| p).collect()
    }

    /// When the next acknowledgement falls due by its delay.
    pub fn next_ack(&self) -> Option<Instant> {
        self.inb
            .values()
            .filter_map(|i| i.since)
            .min()
            .map(|t| t + ACK_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_events_are_released_and_a_stale_stream_is_ignored() {
        let mut s = Sessions::default();
        let p = NodeId([1; 16]);
        let body = Arc::new(b"abc".to_vec());
        for _ in 0..3 {
            s.record(p, || 7, &body);
        }
        assert!(s.full(9) && !s.full(10));
        assert!(s.acked(p, 8, 3), "another stream: ignored");
        assert_eq!(s.out[&p].unacked.len(), 3);
        assert!(s.acked(p, 7, 2));
        assert_eq!(s.out[&p].unacked_bytes, 3);
        assert!(!s.acked(p, 7, 4), "never sent");
        let left: Vec<u64> = s.end(p).iter().map(|u| u.seq).collect();
        assert_eq!(left, vec![3]);
    }

    #[test]
    fn replays_are_dropped_gaps_refused_and_a_new_stream_starts_over() {
        let mut s = Sessions::default();
        let p = NodeId([2; 16]);
        let t = Instant::now();
        s.announced(p, 5);
        assert_eq!(s.received(t, p, 1, 1), Received::New);
        assert_eq!(s.received(t, p, 1, 1), Received::Duplicate);
        assert_eq!(s.received(t, p, 3, 1), Received::Gap);
        assert_eq!(s.ack_due(t, p, false), None);
        assert_eq!(s.next_ack(), Some(t + ACK_DELAY));
        assert_eq!(s.ack_due(t + ACK_DELAY, p, false), Some((5, 1)));
        s.announced(p, 5);
        assert_eq!(s.received(t, p, 2, 1), Received::New);
        s.announced(p, 6);
        assert_eq!(s.received(t, p, 1, 1), Received::New, "a new stream");
    }
}
