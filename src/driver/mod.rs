//! The tokio driver: one task per node owns the sans-IO [`Cluster`](crate::core::cluster::Cluster)
//! and every socket and timer, and feeds the core (foca's agent and quinn's connection
//! driver shape). No lock guards protocol state; other tasks talk to it through channels.
//!
//! Nothing here imports napi: the binding hands in an [`EventSink`] and gets a [`Handle`].

mod batch;
mod connection;
pub mod discovery;
mod gate;
mod log;
mod node;
pub mod runtime;
#[cfg(test)]
mod tests;

pub use batch::{BatchError, SendBatch, Targets};

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::core::cluster::Event;
use crate::core::cluster::Stats;
use crate::core::config::Config;
use crate::core::error::SendError;
use crate::core::node::NodeInfo;

/// How a node finds its peers by multicast.
#[derive(Debug, Clone)]
pub struct MulticastConfig {
    pub group: Ipv4Addr,
    pub port: u16,
    /// Address of the interface to send and listen on; never defaulted to "any".
    pub interface: Ipv4Addr,
    pub ttl: u32,
}

/// Everything needed to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node; `ip` and `port` are where it listens (port 0 picks a free one).
    pub me: NodeInfo,
    pub core: Config,
    /// `None` when multicast discovery is off.
    pub multicast: Option<MulticastConfig>,
    /// Seed peers as `host:port`, resolved when the node starts.
    pub seeds: Vec<String>,
    /// A connection filter that has not answered by then has rejected.
    pub filter_timeout: Duration,
}

/// Stable error codes, as JavaScript sees them in `err.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The TCP port could not be bound.
    Bind,
    /// The multicast socket could not be set up on the interface.
    Multicast,
    /// A seed's host name could not be resolved; the node runs without that seed.
    Seed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Bind => "ERR_ESPIAL_BIND",
            ErrorCode::Multicast => "ERR_ESPIAL_MULTICAST",
            ErrorCode::Seed => "ERR_ESPIAL_SEED",
        }
    }
}

/// What the driver tells the application, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Sockets are bound; `port` is the TCP port actually listened on.
    Listening { port: u16 },
    /// Membership and election news from the core.
    Cluster(Event),
    /// The outcome of a batch sent with [`Handle::send_notify`], one result per message.
    Sent {
        id: u64,
        results: Vec<Result<(), SendError>>,
    },
    /// The node could not start or hit a fatal error; it has stopped.
    Error { code: ErrorCode, message: String },
}

/// Receives notifications in batches, in order. Dropped when the node has stopped, which
/// is how the binding knows to release its hold on the Node.js event loop.
pub trait EventSink: Send + Sync + 'static {
    fn deliver(&self, batch: Vec<Notification>);
}

/// The application's connection filter: may this node join? Answering `false`, or not
/// answering within the node's filter timeout, rejects it.
pub trait Filter: Send + Sync + 'static {
    fn judge(&self, node: NodeInfo) -> Pin<Box<dyn Future<Output = bool> + Send>>;
}

enum Command {
    Exit(oneshot::Sender<()>),
    SetFilter(Option<Arc<dyn Filter>>),
    SetMetadata(String),
    Promote,
    Join(String),
    Leave(String),
    /// With an id, the outcome goes out as a [`Notification::Sent`] with it; without, the
    /// sender was told at once (see [`gate`]).
    Send {
        batch: SendBatch,
        answer: Option<u64>,
    },
}

/// A running node.
pub struct Handle {
    commands: mpsc::UnboundedSender<Command>,
    /// The node task's counters, refreshed after every step it takes.
    stats: Arc<Mutex<Stats>>,
    gate: Arc<gate::SendGate>,
}

/// What became of a batch handed to [`Handle::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// Every message is handed over; no [`Notification::Sent`] will follow.
    Done,
    /// The outcome will arrive as [`Notification::Sent`].
    Pending,
    /// The node has stopped; nothing was sent.
    Stopped,
}

impl Handle {
    /// Starts a node on the shared runtime, with the connection filter it starts with (so
    /// no peer can slip in before it). Start-up failures arrive as [`Notification::Error`].
    pub fn start(
        config: NodeConfig,
        sink: impl EventSink,
        filter: Option<Arc<dyn Filter>>,
    ) -> Handle {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(Stats::default()));
        let gate = Arc::new(gate::SendGate::default());
        let node = node::run(
            config,
            Box::new(sink),
            filter,
            rx,
            stats.clone(),
            gate.clone(),
        );
        runtime::get().spawn(node);
        Handle {
            commands: tx,
            stats,
            gate,
        }
    }

    /// The node's counters so far.
    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap().clone()
    }

    /// Installs (or with `None` removes) the connection filter for nodes that join from now on.
    pub fn set_filter(&self, filter: Option<Arc<dyn Filter>>) {
        let _ = self.commands.send(Command::SetFilter(filter));
    }

    /// Replaces this node's metadata (JSON text, already checked against the size bound).
    pub fn set_metadata(&self, metadata: String) {
        let _ = self.commands.send(Command::SetMetadata(metadata));
    }

    /// Starts delivery of custom event `name`.
    pub fn join(&self, name: String) {
        let _ = self.commands.send(Command::Join(name));
    }

    /// Stops delivery of custom event `name`.
    pub fn leave(&self, name: String) {
        let _ = self.commands.send(Command::Leave(name));
    }

    /// Sends custom events, in order; sending many at once costs one trip to the node task
    /// instead of one each. When nothing can make the batch fail or wait (see [`gate`]) and
    /// `may_answer_now`, the batch counts as handed over at once ([`Queued::Done`]).
    /// Otherwise, once each message is handed to every target's connection and none of
    /// those is backlogged, the outcome (one result per message) arrives as
    /// [`Notification::Sent`] with `id` among the node's notifications.
    pub fn send(&self, batch: SendBatch, id: u64, may_answer_now: bool) -> Queued {
        let bytes = batch.payload_len();
        let now = may_answer_now && self.gate.clears(&batch);
        self.gate.queue_batch(bytes);
        let answer = (!now).then_some(id);
        if self.commands.send(Command::Send { batch, answer }).is_err() {
            self.gate.batch_handled(bytes);
            return Queued::Stopped;
        }
        if now {
            Queued::Done
        } else {
            Queued::Pending
        }
    }

    /// Makes this node master cluster-wide (the caller checks it is eligible).
    pub fn promote(&self) {
        let _ = self.commands.send(Command::Promote);
    }

    /// Leaves the cluster gracefully; the future resolves once every socket is closed.
    /// From this call on no send counts as handed over at once: a batch sent after it is
    /// answered as not sent ([`SendError::NotRunning`]).
    pub fn exit(&self) -> impl Future<Output = ()> + Send + 'static {
        self.gate.close();
        let (tx, rx) = oneshot::channel();
        let asked = self.commands.send(Command::Exit(tx)).is_ok();
        async move {
            if asked {
                // An error means the node had already stopped: the goal is reached either way.
                let _ = rx.await;
            }
        }
    }
}

/// An IPv4 address, for options that only make sense with one.
pub fn ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}
