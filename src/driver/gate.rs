//! Lets a batch of sends count as handed over the moment it is queued for the node task,
//! when nothing could make it fail or wait there: every target is a member (as last
//! announced) within its size limit, and little is queued on the way out. The sender then
//! needs no answer from the node task, which saves a wake-up of the JavaScript thread per
//! batch. Anything else is answered by the node task once it has handled the batch.
//!
//! The view may lag the node task by one step: a member that leaves meanwhile does not get
//! what was sent to it, as with a message queued on a connection that then drops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::batch::SendBatch;
use crate::core::cluster::ConnId;
use crate::core::message::MAX_EVENT_NAME;
use crate::core::node::NodeId;

/// Bytes on their way out above which batches wait for the node task's answer: enough
/// for the application and the node task to work in parallel, little enough that a burst
/// of sends never queues much ahead of the sockets.
pub const CLEAR_LIMIT: usize = 1024 * 1024;

#[derive(Default)]
pub struct SendGate {
    view: RwLock<View>,
    /// Payload bytes of batches the node task has not handled yet.
    unhandled: AtomicUsize,
    /// The node is leaving: every batch waits for the node task's answer.
    closed: AtomicBool,
}

#[derive(Default)]
struct View {
    /// Members the application has been told about, and the largest payload each takes.
    members: HashMap<NodeId, usize>,
    /// The bytes queued on each open connection.
    queues: HashMap<ConnId, Arc<AtomicUsize>>,
}

impl SendGate {
    /// True if `batch` can be reported as handed over now.
    pub fn clears(&self, batch: &SendBatch) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let names_ok = batch
            .names()
            .iter()
            .all(|n| !n.is_empty() && n.len() <= MAX_EVENT_NAME);
        if !names_ok {
            return false;
        }
        let view = self.view.read().unwrap();
        let queued: usize = view
            .queues
            .values()
            .map(|q| q.load(Ordering::Relaxed))
            .sum();
        if queued + self.unhandled.load(Ordering::Acquire) >= CLEAR_LIMIT {
            return false;
        }
        let largest = batch.largest_payload();
        let fits = |limit: &usize| largest <= *limit;
        batch.targets().iter().all(|t| match t {
            Err(_) => false,
            Ok(None) => view.members.values().all(fits),
            Ok(Some(ids)) => ids.iter().all(|id| view.members.get(id).is_some_and(fits)),
        })
    }

    /// Nothing clears any more (the node is leaving).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn added(&self, id: NodeId, payload_limit: usize) {
        self.view.write().unwrap().members.insert(id, payload_limit);
    }

    pub fn removed(&self, id: NodeId) {
        self.view.write().unwrap().members.remove(&id);
    }

    /// A batch of this many payload bytes is on its way to the node task.
    pub fn queue_batch(&self, bytes: usize) {
        self.unhandled.fetch_add(bytes, Ordering::AcqRel);
    }

    /// The node task took (or will never take) a batch of this many payload bytes.
    pub fn batch_handled(&self, bytes: usize) {
        self.unhandled.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Counts the queue of an open connection.
    pub fn count_queue(&self, conn: ConnId, queued: Arc<AtomicUsize>) {
        self.view.write().unwrap().queues.insert(conn, queued);
    }

    /// The connection is closed: its queue no longer counts.
    pub fn forget_queue(&self, conn: ConnId) {
        self.view.write().unwrap().queues.remove(&conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::SendError;

    fn batch(name: &str, len: usize, targets: super::super::Targets) -> SendBatch {
        let mut b = SendBatch::default();
        b.add(name, false, &vec![b'1'; len], targets);
        b
    }

    #[test]
    fn only_known_members_within_their_limits_and_valid_names_clear() {
        let gate = SendGate::default();
        let (a, b, stranger) = (NodeId([1; 16]), NodeId([2; 16]), NodeId([3; 16]));
        gate.added(a, 100);
        gate.added(b, 10);
        assert!(gate.clears(&batch("e", 100, Ok(Some(vec![a])))));
        assert!(!gate.clears(&batch("e", 101, Ok(Some(vec![a])))));
        assert!(gate.clears(&batch("e", 10, Ok(None))));
        assert!(
            !gate.clears(&batch("e", 11, Ok(None))),
            "b takes 10 at most"
        );
        assert!(!gate.clears(&batch("e", 1, Ok(Some(vec![a, stranger])))));
        assert!(!gate.clears(&batch("e", 1, Err(SendError::NotRunning))));
        assert!(!gate.clears(&batch("", 1, Ok(None))));
        assert!(!gate.clears(&batch(&"n".repeat(256), 1, Ok(None))));
        gate.removed(a);
        assert!(!gate.clears(&batch("e", 1, Ok(Some(vec![a])))));
        assert!(gate.clears(&batch("e", 1, Ok(Some(vec![b])))));
        gate.close();
        assert!(!gate.clears(&batch("e", 1, Ok(Some(vec![b])))));
    }

    #[test]
    fn nothing_clears_while_much_is_queued() {
        let gate = SendGate::default();
        let one = || batch("e", 1, Ok(None));
        assert!(gate.clears(&one()));
        gate.queue_batch(CLEAR_LIMIT / 2);
        let queue = Arc::new(AtomicUsize::new(CLEAR_LIMIT / 2));
        gate.count_queue(7, queue.clone());
        assert!(!gate.clears(&one()));
        queue.fetch_sub(1, Ordering::Relaxed);
        assert!(gate.clears(&one()));
        gate.queue_batch(1);
        assert!(!gate.clears(&one()));
        gate.forget_queue(7);
        assert!(gate.clears(&one()));
        gate.batch_handled(CLEAR_LIMIT / 2 + 1);
        assert!(gate.clears(&one()));
    }
}
