//! The tokio driver: it owns every socket and timer and feeds the sans-IO
//! [`Cluster`](crate::core::cluster::Cluster). A task per node waits on the node's sockets
//! and timers; the core sits behind one lock that this task, the connections' readers and
//! the application's calls take in turn, through one door that finishes every step the
//! same way (quinn's connection shape; see [`node`] for who steps it and why).
//!
//! The driver owns the node's lifecycle: [`Handle::new`] makes an idle node that keeps what
//! it is asked, [`Handle::start`] starts it (once), [`Handle::exit`] ends it from any stage.
//! Nothing here imports napi: the binding hands in an [`EventSink`] and gets a [`Handle`].

mod batch;
mod connection;
mod inbox;
mod log;
pub mod multicast;
mod node;
mod probes;
pub mod runtime;
pub mod seeds;
#[cfg(unix)]
pub mod shared_read;
#[cfg(all(test, unix))]
mod shared_read_tests;
#[cfg(test)]
mod tests;

pub use batch::{BatchError, SendBatch, Targets};
pub use inbox::Receipt;
pub use node::Sent;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::core::cluster::requests::Reply;
use crate::core::cluster::Event;
use crate::core::cluster::Stats;
use crate::core::config::Config;
use crate::core::crypto::Identity;
pub use crate::core::error::ErrorCode;
use crate::core::error::{SendError, SubscribeError};
use crate::core::node::{Candidate, NodeId, NodeInfo};

/// One request of a batch ([`Handle::ask_all`]): handler `name` of `target` (or why the
/// target named is none), as [`Handle::ask`] takes it. Asked one at a time, each request
/// was a step of its own and a `write` of its own; a tick's requests together take one.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    pub name: &'a str,
    pub binary: bool,
    pub payload: &'a [u8],
    pub target: Result<NodeId, SendError>,
    pub timeout: Duration,
}

/// How a node finds its peers by multicast.
#[derive(Debug, Clone)]
pub struct MulticastConfig {
    /// An IPv4 group, or an IPv6 one (`ff02::…`, link-local scope) with a `V6` interface.
    pub group: IpAddr,
    pub port: u16,
    /// The interface to send and listen on; never defaulted to "any".
    pub interface: MulticastInterface,
    /// TTL (IPv4) or hop limit (IPv6).
    pub ttl: u32,
}

/// The interface beacons go out on and are heard on: IPv4 names it by one of its
/// addresses, IPv6 by its index (a link-local group has one scope per link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MulticastInterface {
    V4(Ipv4Addr),
    V6 { index: u32, name: String },
}

impl std::fmt::Display for MulticastInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MulticastInterface::V4(ip) => write!(f, "{ip}"),
            MulticastInterface::V6 { index, name } => write!(f, "{name} (index {index})"),
        }
    }
}

/// Everything needed to start a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node; `ip` and `port` are where it listens (port 0 picks a free one).
    pub me: NodeInfo,
    pub core: Config,
    /// `None` when multicast discovery is off.
    pub multicast: Option<MulticastConfig>,
    /// Seed peers as `host:port`: addresses, or names looked up again every
    /// `seeds_resolve_interval` (see [`seeds`]).
    pub seeds: Vec<String>,
    pub seeds_resolve_interval: Duration,
    /// A connection filter that has not answered by then has rejected.
    pub filter_timeout: Duration,
    /// Most bytes delivered and not yet taken by the application before members'
    /// connections stop being read (`max_receive_buffer`; see [`Receipt`]).
    pub max_receive_buffer: usize,
    /// The `cluster_key` option as given: stretched into `core.cluster_key` when the node
    /// starts, on a blocking thread (it takes a good fraction of a second by design), then
    /// wiped. `None` keeps `core.cluster_key` as it is.
    pub key_material: Option<KeyMaterial>,
    /// This node's static key pair: `me.id` must be its id (the core sets it so).
    pub identity: Identity,
}

/// Raw `cluster_key` bytes, wiped when dropped, never printed.
#[derive(Clone)]
pub struct KeyMaterial(zeroize::Zeroizing<Vec<u8>>);

impl KeyMaterial {
    pub fn new(bytes: Vec<u8>) -> Self {
        KeyMaterial(zeroize::Zeroizing::new(bytes))
    }
}

impl std::ops::Deref for KeyMaterial {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

/// Default for [`NodeConfig::seeds_resolve_interval`] (`network.peers_resolve_interval`).
pub const DEFAULT_SEEDS_RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// Default for [`NodeConfig::max_receive_buffer`]: 4 MiB.
pub const DEFAULT_MAX_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

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
    /// The connection filter did not answer about `node` in time, so it was refused
    /// (`ERR_ESPIAL_FILTER`; failures the filter's side sees itself it reports itself).
    FilterTimeout { node: Candidate, message: String },
}

/// Receives notifications in batches, in order. Dropped when the node has stopped, which
/// is how the binding knows to release its hold on the Node.js event loop.
pub trait EventSink: Send + Sync + 'static {
    /// `receipt` is to be dropped once the application has processed `batch`, not before:
    /// until then its weight counts against `max_receive_buffer`, and above that bound
    /// members' connections are not read.
    fn deliver(&self, batch: Vec<Notification>, receipt: Receipt);
}

/// A channel as a sink, one notification at a time (the tests' sink): a batch counts as
/// taken once it is in the channel. The receiver sees the channel disconnect once the node
/// has stopped.
impl EventSink for std::sync::mpsc::Sender<Notification> {
    fn deliver(&self, batch: Vec<Notification>, _taken: Receipt) {
        for n in batch {
            // Nobody listening any more: the notification has nowhere to go.
            let _ = self.send(n);
        }
    }
}

/// The application's connection filter: may this node join? Answering `false`, or not
/// answering within the node's filter timeout, rejects it.
pub trait Filter: Send + Sync + 'static {
    /// `Ok(answer)`, or `Err(what went wrong)` when the filter failed (threw, rejected,
    /// answered something that is not a boolean): the node is refused and the failure
    /// counted and logged; telling the application is the filter side's own business, as
    /// only it holds what was thrown. A timeout is the driver's to see and report.
    fn judge(&self, node: Candidate) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send>>;
}

/// A node, from creation to its end.
pub struct Handle {
    shared: Arc<node::Shared>,
    /// Asks the node task to leave; it answers once every socket is closed. Dropping it
    /// makes the node leave too.
    exits: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl Handle {
    /// A node that is not started yet: what it is asked meanwhile is kept until it runs.
    /// Notifications go to `sink` once started.
    pub fn new(config: NodeConfig, sink: impl EventSink) -> Handle {
        let (exits, exit_requests) = mpsc::unbounded_channel();
        let shared = node::Shared::new(node::Start {
            config,
            sink: Box::new(sink),
            exits: exit_requests,
            #[cfg(unix)]
            read_loop: None,
        });
        Handle { shared, exits }
    }

    /// As [`Handle::new`], with the application's event loop reading the node's
    /// connections while it is idle (see [`shared_read`]).
    #[cfg(unix)]
    pub fn with_read_loop(
        config: NodeConfig,
        sink: impl EventSink,
        read_loop: Arc<dyn shared_read::ReadLoop>,
    ) -> Handle {
        let (exits, exit_requests) = mpsc::unbounded_channel();
        let shared = node::Shared::new(node::Start {
            config,
            sink: Box::new(sink),
            exits: exit_requests,
            read_loop: Some(read_loop),
        });
        Handle { shared, exits }
    }

    /// Starts the node on the shared runtime: binds its sockets, then runs it. Does nothing
    /// once started or exited. Start-up failures arrive as [`Notification::Error`].
    pub fn start(&self) {
        let start = self.shared.lock().begin();
        if let Some(start) = start {
            runtime::get().spawn(node::run(self.shared.clone(), start));
        }
    }

    /// The node's counters so far (zeros before it runs, the final ones once stopped).
    pub fn stats(&self) -> Stats {
        match &*self.shared.lock() {
            node::Stage::Running(node) => node.stats(),
            node::Stage::Stopped(stats) => stats.clone(),
            node::Stage::Idle { .. } | node::Stage::Starting { .. } => Stats::default(),
        }
    }

    /// Carries out `request` now, on this thread, or once the node runs.
    fn request(&self, request: node::Request) -> Result<(), SubscribeError> {
        self.shared.lock().apply(request)
    }

    /// Installs (or with `None` removes) the connection filter for nodes that join from now
    /// on (from the start if set before it, so no peer slips in unfiltered).
    pub fn set_filter(&self, filter: Option<Arc<dyn Filter>>) {
        let _ = self.request(node::Request::SetFilter(filter));
    }

    /// Replaces this node's metadata (JSON text, already checked against the size bound).
    pub fn set_metadata(&self, metadata: String) {
        let _ = self.request(node::Request::SetMetadata(metadata));
    }

    /// Starts delivery of custom event `name`. Refused, in every stage by the same rule,
    /// past [`MAX_JOINED`](crate::core::message::MAX_JOINED) events; nothing changes then.
    pub fn subscribe(&self, name: String) -> Result<(), SubscribeError> {
        self.request(node::Request::Subscribe(name))
    }

    /// Stops delivery of custom event `name`.
    pub fn unsubscribe(&self, name: String) {
        let _ = self.request(node::Request::Unsubscribe(name));
    }

    /// Serves requests named `name` from now on (same rule and bound as joins).
    pub fn serve(&self, name: String) -> Result<(), SubscribeError> {
        self.request(node::Request::Serve(name))
    }

    /// Stops serving `name`.
    pub fn unserve(&self, name: String) {
        let _ = self.request(node::Request::Unserve(name));
    }

    /// The members serving `name` (none before the node runs).
    pub fn servers(&self, name: &str) -> Vec<NodeId> {
        match &*self.shared.lock() {
            node::Stage::Running(node) => node.servers(name),
            _ => Vec::new(),
        }
    }

    /// Asks handler `name` of `target`, sealed and written on this thread like a send: the
    /// request's id; its end arrives as an `Event::Answer` with it.
    pub fn ask(
        &self,
        name: &str,
        binary: bool,
        payload: &[u8],
        target: NodeId,
        timeout: Duration,
    ) -> Result<u64, SendError> {
        match &mut *self.shared.lock() {
            node::Stage::Running(node) => node.request(name, binary, payload, target, timeout),
            node::Stage::Idle { .. } | node::Stage::Starting { exiting: false, .. } => {
                Err(SendError::UnknownTarget(target.to_string()))
            }
            _ => Err(SendError::NotRunning),
        }
    }

    /// Asks several handlers in one step, in order: each request's id or why not. One
    /// lock and one write per connection for all of them (see [`Ask`]).
    pub fn ask_all(&self, asks: &[Ask<'_>]) -> Vec<Result<u64, SendError>> {
        match &mut *self.shared.lock() {
            node::Stage::Running(node) => asks
                .iter()
                .map(|a| match &a.target {
                    Ok(target) => node.request(a.name, a.binary, a.payload, *target, a.timeout),
                    Err(e) => Err(e.clone()),
                })
                .collect(),
            node::Stage::Idle { .. } | node::Stage::Starting { exiting: false, .. } => asks
                .iter()
                .map(|a| match &a.target {
                    Ok(target) => Err(SendError::UnknownTarget(target.to_string())),
                    Err(e) => Err(e.clone()),
                })
                .collect(),
            _ => vec![Err(SendError::NotRunning); asks.len()],
        }
    }

    /// Answers several requests in one step, in order (see [`Handle::reply`]).
    pub fn reply_all<'a>(&self, replies: impl IntoIterator<Item = (NodeId, u64, Reply<'a>)>) {
        if let node::Stage::Running(node) = &mut *self.shared.lock() {
            for (peer, id, reply) in replies {
                node.reply(peer, id, reply);
            }
        }
    }

    /// Gives up on request `id`: no answer follows; a reply from its target is dropped as
    /// late, one from any other node refused.
    pub fn cancel_request(&self, id: u64) {
        if let node::Stage::Running(node) = &mut *self.shared.lock() {
            node.cancel_request(id);
        }
    }

    /// Answers `peer`'s request `id`.
    pub fn reply(&self, peer: NodeId, id: u64, reply: Reply<'_>) {
        if let node::Stage::Running(node) = &mut *self.shared.lock() {
            node.reply(peer, id, reply);
        }
    }

    /// Makes this node master cluster-wide (the caller checks it is eligible).
    pub fn promote(&self) {
        let _ = self.request(node::Request::Promote);
    }

    /// Sends custom events, in order. They are sealed and written on this thread, so they
    /// are on their way (or refused) when this returns: [`Sent::Now`] with one result per
    /// message. If a connection they went to is backlogged, [`Sent::Later`]: the outcome
    /// arrives as [`Notification::Sent`] with `id` once it drains.
    pub fn send(&self, batch: &SendBatch, id: u64) -> Sent {
        match &mut *self.shared.lock() {
            node::Stage::Running(node) => node.send(batch, id),
            node::Stage::Idle { .. } | node::Stage::Starting { exiting: false, .. } => {
                // Not running yet: there are no members, so a message to every member goes
                // to nobody and one to a named node has an unknown target.
                Sent::Now(batch.iter().map(|m| before_start(m.targets)).collect())
            }
            node::Stage::Starting { exiting: true, .. } | node::Stage::Stopped(_) => {
                Sent::Now(vec![Err(SendError::NotRunning); batch.len()])
            }
        }
    }

    /// Leaves the cluster gracefully; the future resolves once every socket is closed.
    /// From this call on sends are refused ([`SendError::NotRunning`]). A node not started
    /// yet stops at once without ever binding a socket.
    pub fn exit(&self) -> impl Future<Output = ()> + Send + 'static {
        {
            let mut stage = self.shared.lock();
            match &mut *stage {
                node::Stage::Running(node) => node.start_exit(),
                node::Stage::Starting { exiting, .. } => *exiting = true,
                // Dropping what it would have started with lets go of the sink.
                node::Stage::Idle { .. } => *stage = node::Stage::Stopped(Stats::default()),
                node::Stage::Stopped(_) => {}
            }
        }
        let (tx, rx) = oneshot::channel();
        // Refused when the node task is gone or was never started.
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
fn before_start(targets: &Targets) -> Result<(), SendError> {
    match targets {
        Err(e) => Err(e.clone()),
        Ok(None) => Ok(()),
        Ok(Some(ids)) => match ids.first() {
            None => Ok(()),
            Some(id) => Err(SendError::UnknownTarget(id.to_string())),
        },
    }
}
