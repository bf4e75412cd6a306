//! Requests and replies: which of our requests await a reply, from whom and until when, and
//! which of each peer's requests we have not answered yet.
//!
//! Correlation lives here, in the core, not in JavaScript: the core alone sees the wire and
//! the membership, so a reply is checked against the request it answers before it costs
//! JavaScript anything (never sent, from another node than the target, a second reply:
//! dropped and counted), a target's removal fails its requests in the same step that
//! removes it, and the one entry per request is taken out exactly once (by its reply, its
//! deadline, its target's removal or its abort), which is what makes a reply arrive at most
//! once. An ended request's target is kept a while longer ([`MAX_ENDED`]), so that a reply
//! to it is still told apart: late from its target, refused from any other node. A request
//! travels on the pair's stream (`sessions`), so a reconnection neither loses nor repeats
//! it, nor its reply.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use super::node::NodeId;

/// Our requests awaiting a reply, all targets together. `index.js` keeps its own bounds
/// (`max_requests`, `max_requests_per_target`) far below it; this one holds against any
/// caller.
pub const MAX_PENDING: usize = 65_536;
/// A peer's requests we hold unanswered, at most; one past it is answered `Busy` at once,
/// without reaching the handler. A sound peer stays under it (its `max_requests_per_target`
/// is at most this), unless its own requests timed out while our handler still runs.
pub const MAX_INCOMING_PER_PEER: usize = 4_096;
/// Our ended requests whose target is remembered: the last this many to end (answered,
/// timed out, aborted, target removed). Only our own requests add to it, one entry each
/// as it ends, and no reply adds or removes one, so a peer can neither grow it nor push an
/// entry out faster than this node's own requests end. A reply to a request forgotten
/// here is counted late whoever sends it (dropped either way).
pub const MAX_ENDED: usize = 16_384;
/// Longest error code a remote error carries, in bytes.
pub const MAX_REMOTE_CODE: usize = 64;
/// Longest error message a remote error carries, in bytes.
pub const MAX_REMOTE_MESSAGE: usize = 1_024;

/// How a request ended, as the asker hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The handler's value: JSON text, or bytes.
    Value { binary: bool, payload: Vec<u8> },
    /// The handler threw or rejected.
    Remote { code: String, message: String },
    /// The target serves no handler of that name.
    NoHandler,
    /// The target holds the most of our requests it takes unanswered.
    Busy,
    /// The value was over our `max_message` or the target's `max_reply_size`.
    TooLarge,
    /// No reply within the request's timeout.
    Timeout,
    /// The target was removed before it replied.
    TargetLeft,
}

/// What to do with a reply that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyCheck {
    /// It answers a request awaiting it from its sender: hand it over.
    Accept,
    /// It comes from the target of one of our requests that has ended (timed out, aborted,
    /// its target removed) or was answered already, or answers one ended so long ago that
    /// its target is forgotten ([`MAX_ENDED`]): dropped, counted in `replies_late`.
    Late,
    /// It answers no request of ours to its sender (never sent, or sent to another node,
    /// awaiting its reply or ended): dropped, counted in `replies_refused`.
    Refused,
}

/// A request of a peer taken for its handler, or why not.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Taken,
    /// The peer has [`MAX_INCOMING_PER_PEER`] unanswered already: answer `Busy`.
    Busy,
    /// The peer reused the id of a request of its still unanswered: dropped, counted.
    Duplicate,
}

#[derive(Debug)]
struct Pending {
    target: NodeId,
    deadline: Instant,
}

/// Both sides' requests in flight.
#[derive(Debug)]
pub struct Calls {
    /// The next id of ours: ids are 1, 2, 3…, so one below it was sent by us.
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    deadlines: BTreeSet<(Instant, u64)>,
    incoming: BTreeMap<NodeId, BTreeSet<u64>>,
    /// The targets of our last [`MAX_ENDED`] requests to end, by id.
    ended: BTreeMap<u64, NodeId>,
    /// The ids in `ended`, in the order they ended: the first is forgotten first.
    ended_order: VecDeque<u64>,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            next_id: 1,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            incoming: BTreeMap::new(),
            ended: BTreeMap::new(),
            ended_order: VecDeque::new(),
        }
    }
}

impl Calls {
    /// A new request to `target`, failed with [`Answer::Timeout`] at `deadline`: its id, or
    /// `None` past [`MAX_PENDING`].
    pub fn start(&mut self, target: NodeId, deadline: Instant) -> Option<u64> {
        if self.pending.len() >= MAX_PENDING {
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, Pending { target, deadline });
        self.deadlines.insert((deadline, id));
        Some(id)
    }

    /// Our requests awaiting a reply.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Ends request `id`: every ending passes here once, so each ended id enters `ended`
    /// once.
    fn take(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.deadlines.remove(&(p.deadline, id));
        if self.ended_order.len() >= MAX_ENDED {
            if let Some(oldest) = self.ended_order.pop_front() {
                self.ended.remove(&oldest);
            }
        }
        self.ended.insert(id, p.target);
        self.ended_order.push_back(id);
        Some(p)
    }

    /// `from` replied to our request `id`.
    pub fn reply_from(&mut self, from: NodeId, id: u64) -> ReplyCheck {
        if let Some(p) = self.pending.get(&id) {
            if p.target != from {
                return ReplyCheck::Refused;
            }
            self.take(id);
            return ReplyCheck::Accept;
        }
        match self.ended.get(&id) {
            Some(&target) if target == from => ReplyCheck::Late,
            Some(_) => ReplyCheck::Refused,
            None if id != 0 && id < self.next_id => ReplyCheck::Late,
            None => ReplyCheck::Refused,
        }
    }

    /// The application gave up on request `id` (its signal aborted): a reply to it from its
    /// target will be late. False if it had ended already.
    pub fn cancel(&mut self, id: u64) -> bool {
        self.take(id).is_some()
    }

    /// Requests whose deadline is `now` or past: `(id, target)`, ended.
    pub fn expired(&mut self, now: Instant) -> Vec<(u64, NodeId)> {
        let mut out = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let p = self.take(id).expect("a deadline has its request");
            out.push((id, p.target));
        }
        out
    }

    /// The next deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// `peer` was removed: our requests to it, ended, and its requests to us, forgotten
    /// (a reply to it could go nowhere).
    pub fn peer_left(&mut self, peer: NodeId) -> Vec<u64> {
        self.incoming.remove(&peer);
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.target == peer)
            .map(|(&id, _)| id)
            .collect();
        for &id in &ids {
            self.take(id);
        }
        ids
    }

    /// `peer`'s request `id` arrived for a handler of ours.
    pub fn take_request(&mut self, peer: NodeId, id: u64) -> Incoming {
        let held = self.incoming.entry(peer).or_default();
        if held.contains(&id) {
            return Incoming::Duplicate;
        }
        if held.len() >= MAX_INCOMING_PER_PEER {
            return Incoming::Busy;
        }
        held.insert(id);
        Incoming::Taken
    }

    /// Our handler answers `peer`'s request `id`: true if it was awaiting that (not
    /// answered yet, its asker not removed since).
    pub fn answer(&mut self, peer: NodeId, id: u64) -> bool {
        let Some(held) = self.incoming.get_mut(&peer) else {
            return false;
        };
        let was = held.remove(&id);
        if held.is_empty() {
            self.incoming.remove(&peer);
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_reply_is_taken_once_from_its_target_only() {
        let mut c = Calls::default();
        let (a, b) = (NodeId([1; 16]), NodeId([2; 16]));
        let t = Instant::now();
        let id = c.start(a, t + Duration::from_secs(1)).unwrap();
        assert_eq!(c.reply_from(b, id), ReplyCheck::Refused, "not its target");
        assert_eq!(c.reply_from(a, id + 1), ReplyCheck::Refused, "never sent");
        assert_eq!(c.reply_from(a, 0), ReplyCheck::Refused, "never sent");
        assert_eq!(c.reply_from(a, id), ReplyCheck::Accept);
        assert_eq!(c.reply_from(a, id), ReplyCheck::Late, "a second reply");
        assert_eq!(
            c.reply_from(b, id),
            ReplyCheck::Refused,
            "answered: not its target"
        );
        assert_eq!(c.pending(), 0);
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn deadlines_removals_and_aborts_end_requests_once() {
        let mut c = Calls::default();
        let (a, b) = (NodeId([1; 16]), NodeId([2; 16]));
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let first = c.start(a, t + s).unwrap();
        let second = c.start(b, t + 2 * s).unwrap();
        let third = c.start(a, t + 3 * s).unwrap();
        assert_eq!(c.next_deadline(), Some(t + s));
        assert_eq!(c.expired(t), vec![]);
        assert_eq!(c.expired(t + s), vec![(first, a)]);
        assert_eq!(c.reply_from(a, first), ReplyCheck::Late);
        assert_eq!(c.reply_from(b, first), ReplyCheck::Refused, "timed out");
        assert!(c.cancel(second));
        assert!(!c.cancel(second));
        assert_eq!(c.reply_from(b, second), ReplyCheck::Late);
        assert_eq!(c.reply_from(a, second), ReplyCheck::Refused, "aborted");
        assert_eq!(c.peer_left(a), vec![third]);
        assert_eq!(c.reply_from(a, third), ReplyCheck::Late);
        assert_eq!(
            c.reply_from(b, third),
            ReplyCheck::Refused,
            "its target removed"
        );
        assert_eq!(c.expired(t + 10 * s), vec![]);
        assert_eq!(c.pending(), 0);
    }

    #[test]
    fn ended_targets_are_bounded_and_forgotten_in_the_order_they_ended() {
        let mut c = Calls::default();
        let (a, b) = (NodeId([1; 16]), NodeId([2; 16]));
        let t = Instant::now();
        let first = c.start(a, t).unwrap();
        let second = c.start(a, t + Duration::from_secs(1)).unwrap();
        assert!(c.cancel(second));
        assert!(c.cancel(first));
        // Replies, whoever sends them, neither add nor remove an entry.
        for _ in 0..3 {
            assert_eq!(c.reply_from(b, first), ReplyCheck::Refused);
            assert_eq!(c.reply_from(a, first), ReplyCheck::Late);
            assert_eq!(c.reply_from(b, u64::MAX), ReplyCheck::Refused);
        }
        assert_eq!(c.ended.len(), 2);
        for _ in 2..MAX_ENDED {
            let id = c.start(a, t).unwrap();
            assert!(c.cancel(id));
        }
        assert_eq!(c.ended.len(), MAX_ENDED);
        assert_eq!(c.reply_from(b, second), ReplyCheck::Refused);
        let last = c.start(a, t).unwrap();
        assert_eq!(c.expired(t), vec![(last, a)]);
        assert_eq!((c.ended.len(), c.ended_order.len()), (MAX_ENDED, MAX_ENDED));
        // `second` ended first, though it was started after `first`.
        assert_eq!(c.reply_from(b, second), ReplyCheck::Late, "forgotten");
        assert_eq!(c.reply_from(b, first), ReplyCheck::Refused, "still kept");
        assert_eq!(c.reply_from(b, last), ReplyCheck::Refused);
    }

    #[test]
    fn a_peers_unanswered_requests_are_bounded_and_unique() {
        let mut c = Calls::default();
        let a = NodeId([1; 16]);
        for id in 0..MAX_INCOMING_PER_PEER as u64 {
            assert_eq!(c.take_request(a, id), Incoming::Taken);
        }
        assert_eq!(c.take_request(a, 0), Incoming::Duplicate);
        assert_eq!(c.take_request(a, u64::MAX), Incoming::Busy);
        assert!(c.answer(a, 0));
        assert!(!c.answer(a, 0), "answered once");
        assert_eq!(c.take_request(a, u64::MAX), Incoming::Taken);
        c.peer_left(a);
        assert!(!c.answer(a, 1), "its asker is gone");
    }

    #[test]
    fn our_requests_are_bounded() {
        let mut c = Calls::default();
        let t = Instant::now();
        for _ in 0..MAX_PENDING {
            assert!(c.start(NodeId([1; 16]), t).is_some());
        }
        assert_eq!(c.start(NodeId([1; 16]), t), None);
    }
}
