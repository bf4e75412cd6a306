//! The tokio driver: it owns every socket and timer and feeds the sans-IO
//! [`Cluster`](crate::core::cluster::Cluster). A task per node waits on the node's sockets
//! and timers; the core sits behind one lock that this task and the application's calls
//! take in turn (quinn's connection shape; see [`node`] for why).
//!
//! Nothing here imports napi: the binding hands in an [`EventSink`] and gets a [`Handle`].

mod batch;
mod connection;
mod log;
pub mod multicast;
mod node;
pub mod runtime;
#[cfg(test)]
mod tests;

pub use batch::{BatchError, SendBatch, Targets};
pub use node::Sent;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::core::cluster::Event;
use crate::core::cluster::Stats;
use crate::core::config::Config;
pub use crate::core::error::ErrorCode;
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

/// What the driver tells the application, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Sockets are bound; `port` is the TCP port actually listened on.
    Listening { port: u16 },
    /// Membership and election news from the core.
    Cluster(Event),
    /// The outcome of a batch that [`Handle::send`] answered with [`Sent::Later`], one
    /// result per message.
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

/// A running node.
pub struct Handle {
    slot: Arc<Mutex<node::Slot>>,
    /// Asks the node task to leave; it answers once every socket is closed. Dropping it
    /// makes the node leave too.
    exits: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl Handle {
    /// Starts a node on the shared runtime, with the connection filter it starts with (so
    /// no peer can slip in before it). Start-up failures arrive as [`Notification::Error`].
    pub fn start(
        config: NodeConfig,
        sink: impl EventSink,
        filter: Option<Arc<dyn Filter>>,
    ) -> Handle {
        let (exits, exit_requests) = mpsc::unbounded_channel();
        let slot = Arc::new(Mutex::new(node::Slot::Starting {
            early: Vec::new(),
            exiting: false,
        }));
        let task = node::run(config, Box::new(sink), filter, slot.clone(), exit_requests);
        runtime::get().spawn(task);
        Handle { slot, exits }
    }

    /// The node's counters so far.
    pub fn stats(&self) -> Stats {
        match &*self.slot.lock().unwrap() {
            node::Slot::Running(node) => node.stats(),
            node::Slot::Stopped(stats) => stats.clone(),
            node::Slot::Starting { .. } => Stats::default(),
        }
    }

    /// Carries out `request` now, on this thread, or once the node runs.
    fn request(&self, request: node::Request) {
        match &mut *self.slot.lock().unwrap() {
            node::Slot::Running(node) => node.apply(request),
            node::Slot::Starting { early, .. } => early.push(request),
            node::Slot::Stopped(_) => {}
        }
    }

    /// Installs (or with `None` removes) the connection filter for nodes that join from now on.
    pub fn set_filter(&self, filter: Option<Arc<dyn Filter>>) {
        self.request(node::Request::SetFilter(filter));
    }

    /// Replaces this node's metadata (JSON text, already checked against the size bound).
    pub fn set_metadata(&self, metadata: String) {
        self.request(node::Request::SetMetadata(metadata));
    }

    /// Starts delivery of custom event `name`.
    pub fn join(&self, name: String) {
        self.request(node::Request::Join(name));
    }

    /// Stops delivery of custom event `name`.
    pub fn leave(&self, name: String) {
        self.request(node::Request::Leave(name));
    }

    /// Makes this node master cluster-wide (the caller checks it is eligible).
    pub fn promote(&self) {
        self.request(node::Request::Promote);
    }

    /// Sends custom events, in order. They are sealed and written on this thread, so they
    /// are on their way (or refused) when this returns: [`Sent::Now`] with one result per
    /// message. If a connection they went to is backlogged, [`Sent::Later`]: the outcome
    /// arrives as [`Notification::Sent`] with `id` once it drains.
    pub fn send(&self, batch: &SendBatch, id: u64) -> Sent {
        match &mut *self.slot.lock().unwrap() {
            node::Slot::Running(node) => node.send(batch, id),
            node::Slot::Starting { exiting: false, .. } => {
                // Not running yet: there are no members, so a message to every member goes
                // to nobody and one to a named node has an unknown target.
                Sent::Now(batch.iter().map(|m| before_start(m.targets)).collect())
            }
            node::Slot::Starting { exiting: true, .. } | node::Slot::Stopped(_) => {
                Sent::Now(vec![Err(SendError::NotRunning); batch.len()])
            }
        }
    }

    /// Leaves the cluster gracefully; the future resolves once every socket is closed.
    /// From this call on sends are refused ([`SendError::NotRunning`]).
    pub fn exit(&self) -> impl Future<Output = ()> + Send + 'static {
        match &mut *self.slot.lock().unwrap() {
            node::Slot::Running(node) => node.start_exit(),
            node::Slot::Starting { exiting, .. } => *exiting = true,
            node::Slot::Stopped(_) => {}
        }
        let (tx, rx) = oneshot::channel();
        let asked = self.exits.send(tx).is_ok();
        async move {
            if asked {
                // An error means the node had already stopped: the goal is reached either way.
                let _ = rx.await;
            }
        }
    }
}

/// The outcome of a message sent before the node runs (it has no members yet).
pub fn before_start(targets: &Targets) -> Result<(), SendError> {
    match targets {
        Err(e) => Err(e.clone()),
        Ok(None) => Ok(()),
        Ok(Some(ids)) => match ids.first() {
            None => Ok(()),
            Some(id) => Err(SendError::UnknownTarget(id.to_string())),
        },
    }
}

/// An IPv4 address, for options that only make sense with one.
pub fn ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}
