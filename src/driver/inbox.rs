//! The bound on what this node has handed to the application and the application has not
//! yet taken (`max_receive_buffer`).
//!
//! Every batch of notifications goes to the sink with a [`Receipt`] for its weight (the bytes
//! of its messages and metadata, plus a fixed amount per notification); the sink drops the
//! receipt once the application has processed the batch (the binding: after the JavaScript
//! callback that emits it has returned). While more than the bound is waiting, the
//! connections of members (the only ones whose bytes become custom events) are not read:
//! their bytes stay in the kernel, TCP's window closes, and the sender's own backpressure
//! (`send()` waits on its connection's write queue) holds it. Below half the bound they are
//! read again. Nothing is dropped: a reader that finds the bound exceeded keeps the bytes it
//! has read and hands them over once reading resumes.
//!
//! Every member connection is paused, not only the one that delivered last: the bound is
//! the node's, any member can fill it, and pausing them all lets the core excuse the
//! silence of every member alike (see `Cluster::set_reading_paused`). Connections still in
//! their handshake or admission are read as usual: what they can deliver is bounded by the
//! member caps, and a newcomer must not time out because the application is slow.
//!
//! The check is made under the node's lock, before a read is handled, and every delivery
//! is counted under the same lock, so the bound is exceeded by at most one step: one read
//! (64 KiB) and the message it completes.
//!
//! Costs per batch, not per message: one atomic add when delivered, one atomic subtract and
//! a load when released, one compare per read.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};

use super::connection::ConnEvent;
use super::Notification;
use crate::core::calls::Answer;
use crate::core::cluster::Event;

/// What a notification weighs beyond its bytes from the peer: its place in the batch, its
/// strings' headers and allocations, a delivery's entry in the packed batch.
pub const PER_NOTIFICATION: usize = 64;

/// The node's count of bytes delivered and not yet taken, and whether members' connections
/// are paused for it.
pub struct Inbox {
    waiting: AtomicUsize,
    /// Member connections are not read until the count falls below `low`.
    paused: AtomicBool,
    high: usize,
    low: usize,
    /// Wakes the paused readers.
    resume: Notify,
    /// Tells the node task that reading resumed, so that the core stops excusing silence.
    node_task: mpsc::UnboundedSender<ConnEvent>,
}

impl Inbox {
    /// A bound of `max` bytes: paused above it, read again below half of it.
    pub fn new(max: usize, node_task: mpsc::UnboundedSender<ConnEvent>) -> Arc<Inbox> {
        Arc::new(Inbox {
            waiting: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            high: max,
            low: max / 2,
            resume: Notify::new(),
            node_task,
        })
    }

    /// Counts a batch of `weight` handed to the application; the receipt gives it back.
    pub fn deliver(self: &Arc<Self>, weight: usize) -> Receipt {
        if weight == 0 {
            return Receipt::none();
        }
        self.waiting.fetch_add(weight, SeqCst);
        Receipt {
            inbox: Some(self.clone()),
            weight,
        }
    }

    /// Bytes delivered and not yet taken.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.load(SeqCst)
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(SeqCst)
    }

    /// Called under the node's lock before a member's bytes are handled: true if they must
    /// wait ([`Inbox::resumed`]) because the application is behind.
    pub fn must_wait(&self) -> bool {
        if self.paused.load(SeqCst) {
            return true;
        }
        if self.waiting.load(SeqCst) <= self.high {
            return false;
        }
        self.paused.store(true, SeqCst);
        // A release may have brought the count down meanwhile without seeing the flag (the
        // two sides write one and read the other): look again. A reader still on its way
        // out of an earlier pause may have seen the flag up meanwhile: wake it.
        if self.waiting.load(SeqCst) < self.low && self.paused.swap(false, SeqCst) {
            self.resume.notify_waiters();
            return false;
        }
        true
    }

    /// Waits until reading may resume, after [`Inbox::must_wait`] said to wait.
    pub async fn resumed(&self) {
        let notified = self.resume.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a resume in between is not missed.
        notified.as_mut().enable();
        if !self.paused.load(SeqCst) {
            return;
        }
        notified.await;
    }

    fn release(&self, weight: usize) {
        let left = self.waiting.fetch_sub(weight, SeqCst) - weight;
        if left < self.low && self.paused.load(SeqCst) && self.paused.swap(false, SeqCst) {
            self.resume.notify_waiters();
            let _ = self.node_task.send(ConnEvent::Resumed);
        }
    }
}

/// A batch's weight, given back to the [`Inbox`] when dropped: by the sink, once the
/// application has processed the batch.
pub struct Receipt {
    inbox: Option<Arc<Inbox>>,
    weight: usize,
}

impl Receipt {
    /// A receipt for nothing (a batch that weighs nothing, or a node without an inbox yet).
    pub fn none() -> Receipt {
        Receipt {
            inbox: None,
            weight: 0,
        }
    }

    /// True if dropping it releases nothing: the sink need not wait for the application.
    pub fn is_none(&self) -> bool {
        self.inbox.is_none()
    }

    /// What the batch weighs against the bound.
    pub fn weight(&self) -> usize {
        self.weight
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if let Some(inbox) = self.inbox.take() {
            inbox.release(self.weight);
        }
    }
}

/// What a notification weighs in the [`Inbox`]: what peers can make it carry, plus
/// [`PER_NOTIFICATION`]. Only news from the cluster counts; the outcomes of our own sends
/// and start-up reports are bounded by what the application asked.
pub fn weight(n: &Notification) -> usize {
    let Notification::Cluster(e) = n else {
        return 0;
    };
    let node = |n: &crate::core::node::NodeInfo| n.metadata.len() + n.host_name.len();
    PER_NOTIFICATION
        + match e {
            Event::Delivery { name, payload, .. } | Event::Request { name, payload, .. } => {
                name.len() + payload.len()
            }
            Event::Answer { answer, .. } => match answer {
                Answer::Value { payload, .. } => payload.len(),
                Answer::Remote { code, message } => code.len() + message.len(),
                _ => 0,
            },
            Event::Undelivered { node: n, events } => {
                node(n)
                    + events
                        .iter()
                        .map(|e| e.name.len() + e.payload.len())
                        .sum::<usize>()
            }
            Event::NodeAdded(n)
            | Event::NodeRemoved(n)
            | Event::NodeUpdated(n)
            | Event::NodeAccepted(n) => node(n),
            Event::NodeRejected(c) => c.host_name.len(),
            Event::NewMaster(n) | Event::Promotion { previous: n } | Event::Demotion { new: n } => {
                n.as_ref().map_or(0, node)
            }
            // Never handed to JavaScript (logs only).
            Event::ConnectionFailed { .. }
            | Event::BeaconKeyMismatch { .. }
            | Event::Explained { .. }
            | Event::BeaconRefused { .. }
            | Event::BeaconVersionMismatch { .. } => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(max: usize) -> (Arc<Inbox>, mpsc::UnboundedReceiver<ConnEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Inbox::new(max, tx), rx)
    }

    #[test]
    fn reading_pauses_above_the_bound_and_resumes_below_half_of_it() {
        let (inbox, mut told) = inbox(100);
        let a = inbox.deliver(60);
        assert!(!inbox.must_wait(), "60 of 100");
        let b = inbox.deliver(60);
        assert!(inbox.must_wait(), "120 of 100");
        assert!(inbox.is_paused());
        drop(b);
        assert!(inbox.must_wait(), "60: paused until below half");
        assert!(told.try_recv().is_err());
        drop(a);
        assert!(!inbox.is_paused() && !inbox.must_wait());
        assert!(matches!(told.try_recv(), Ok(ConnEvent::Resumed)));
        assert_eq!(inbox.waiting(), 0);
        assert!(inbox.deliver(0).is_none());
    }

    #[test]
    fn a_release_racing_the_pause_is_not_missed() {
        let (inbox, _told) = inbox(100);
        let r = inbox.deliver(150);
        assert!(inbox.must_wait());
        // The release sees the flag and wakes the waiter, whenever it registered.
        let waiter = {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                super::super::runtime::get().block_on(async {
                    tokio::time::timeout(std::time::Duration::from_secs(5), inbox.resumed()).await
                })
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(r);
        assert!(
            waiter.join().unwrap().is_ok(),
            "the paused reader was woken"
        );
        // Released before the wait began: the wait returns at once.
        let r = inbox.deliver(150);
        assert!(inbox.must_wait());
        drop(r);
        super::super::runtime::get().block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), inbox.resumed())
                .await
                .expect("no wait once resumed")
        });
    }

    #[test]
    fn a_message_weighs_its_bytes_and_a_fixed_amount() {
        let from = crate::core::node::NodeId::random(&mut rand_core::OsRng);
        let delivery = Notification::Cluster(Event::Delivery {
            from,
            name: "job".into(),
            binary: true,
            payload: vec![0; 1000],
        });
        assert_eq!(weight(&delivery), PER_NOTIFICATION + 3 + 1000);
        assert_eq!(weight(&Notification::Listening { port: 1 }), 0);
    }
}
