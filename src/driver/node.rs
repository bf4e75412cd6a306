//! One node: its lifecycle ([`Stage`]), its protocol side ([`Node`]: the sans-IO core and
//! what it writes to) and the task that waits on its sockets and timers.
//!
//! # Who steps the core, and through which door
//!
//! The node's stage sits behind one mutex in [`Shared`], and the only way in is
//! [`Shared::lock`], which hands out a [`Step`]: whoever holds it may step the core, and
//! dropping it always finishes the step the same way ([`Node::finish_step`]: carry out the
//! core's outputs, write the connections written to during the step, wake the node task if
//! the core's next deadline is now sooner than the one it sleeps on; then, with the lock
//! let go, deliver the notifications). [`Shared::step`] is the usual way to take it. Three
//! kinds of caller step the core:
//!
//! - the node task, for connections opened and closed, beacons, filter verdicts and timers;
//! - a connection's reader, for the bytes it read, with its own buffer (no copy, no hand-off);
//! - the application's thread, for what it asks (a send, a join, new metadata): it then also
//!   writes the frames its call produced (see [`super::connection`]), so sending an event
//!   wakes no other thread.
//!
//! This is quinn's shape (a `Mutex` around the protocol connection, taken by the
//! application's calls and by the driver) rather than one task owning the core behind a
//! command channel: measured, the hand-off to the node task for every send cost more than
//! everything else in a round trip (stepping on the caller's thread halved it). The core
//! itself stays sans-IO: the lock only decides who steps it.
//!
//! # Lifecycle
//!
//! [`Stage::Idle`] (created; what the application asks is kept in [`Early`]) →
//! [`Stage::Starting`] (binding sockets; still kept) → [`Stage::Running`]
//! (the kept requests applied first, in one step) → [`Stage::Stopped`] (with the final
//! counters). `exit()` while idle goes straight to `Stopped`: nothing is ever bound. The
//! core is built once the port is bound (its identity carries the port), so the requests
//! made before then are kept as their net effect: the events joined, whether to
//! promote, the latest metadata and filter.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rand_core::OsRng;
use tokio::net::{TcpListener, UdpSocket};
use tokio::runtime::Handle as Runtime;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{sleep_until, Instant};

use super::batch::SendBatch;
use super::connection::{self, ConnEvent, ConnHandle, Read};
use super::inbox::{self, Inbox, Receipt};
use super::log::Log;
use super::multicast;
use super::probes;
use super::seeds::{self, Report, Seeds};
#[cfg(unix)]
use super::shared_read::{Pull, ReadLoop};
use super::{ErrorCode, EventSink, Filter, NodeConfig, Notification};
use crate::core::cluster::requests::Reply;
use crate::core::cluster::{Cluster, ConnId, Event, Output, Stats};
use crate::core::crypto::ClusterKey;
use crate::core::discovery::{REFUSAL_FIRST_WAIT, REFUSAL_MAX_WAIT};
use crate::core::error::{ConnectionError, HandshakeError, SendError, SubscribeError};
use crate::core::node::NodeId;
use crate::core::output::Happened;
use crate::core::subscriptions::Subscriptions;

/// How long `exit()` waits for goodbyes to be flushed before closing regardless.
const EXIT_FLUSH: Duration = Duration::from_secs(1);
const MAX_DATAGRAM: usize = 1500;

/// What the application's handle, the node task and the connections' readers share.
pub struct Shared {
    stage: Mutex<Stage>,
    /// Wakes the node task when a step elsewhere brought the core's next deadline forward.
    poke: Notify,
    /// Taken before the stage's lock is let go and held while a step's notifications are
    /// delivered, so that batches reach the sink in the order their steps ended although
    /// they are delivered outside the stage's lock.
    delivering: Mutex<()>,
}

/// Where a node is in its life.
pub enum Stage {
    /// Created, not started: what the application asks is kept.
    Idle {
        early: Early,
        start: Box<Start>,
    },
    /// Binding sockets and resolving seeds; what the application asks is still kept.
    Starting {
        early: Early,
        /// `exit()` was called meanwhile: sends are refused, and the node leaves at once.
        exiting: bool,
    },
    Running(Box<Node>),
    /// Stopped (or could not start, or never started), with the counters it ended with.
    Stopped(Stats),
}

/// What the node task needs to start.
pub struct Start {
    pub config: NodeConfig,
    pub sink: Box<dyn EventSink>,
    /// Where `exit()` asks the node task to leave.
    pub exits: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    /// The application's event loop, which reads connections too while it is idle.
    #[cfg(unix)]
    pub read_loop: Option<Arc<dyn ReadLoop>>,
}

/// What the application asks of a node: carried out at once while it runs, or kept until
/// it does.
pub enum Request {
    Subscribe(String),
    Unsubscribe(String),
    Promote,
    SetMetadata(String),
    SetFilter(Option<Arc<dyn Filter>>),
    Serve(String),
    Unserve(String),
}

/// The requests made before the node runs, as their net effect.
#[derive(Default)]
pub struct Early {
    /// Custom events joined (and not left again), by the core's own rule and bound.
    joined: Subscriptions,
    /// Names served (and not unserved again), by the same rule and bound.
    served: Subscriptions,
    promote: bool,
    metadata: Option<String>,
    filter: Option<Arc<dyn Filter>>,
}

impl Early {
    /// Keeps `request`; a join is refused by the rule the core applies once running.
    fn apply(&mut self, request: Request) -> Result<(), SubscribeError> {
        match request {
            // Whether it is news matters only to members, and there are none yet.
            Request::Subscribe(name) => {
                self.joined.subscribe(&name)?;
            }
            Request::Unsubscribe(name) => {
                self.joined.unsubscribe(&name);
            }
            Request::Promote => self.promote = true,
            Request::SetMetadata(json) => self.metadata = Some(json),
            Request::SetFilter(filter) => self.filter = filter,
            Request::Serve(name) => {
                self.served.subscribe(&name)?;
            }
            Request::Unserve(name) => {
                self.served.unsubscribe(&name);
            }
        }
        Ok(())
    }
}

impl Stage {
    /// Carries out `request` now (in the step the caller holds), or keeps it until the
    /// node runs; after the node stopped it changes nothing.
    pub fn apply(&mut self, request: Request) -> Result<(), SubscribeError> {
        match self {
            Stage::Running(node) => node.apply(request),
            Stage::Idle { early, .. } | Stage::Starting { early, .. } => early.apply(request),
            Stage::Stopped(_) => Ok(()),
        }
    }

    /// Idle → Starting: what the node task needs to start, if it was idle.
    pub fn begin(&mut self) -> Option<Box<Start>> {
        if !matches!(self, Stage::Idle { .. }) {
            return None;
        }
        match std::mem::replace(self, Stage::Stopped(Stats::default())) {
            Stage::Idle { early, start } => {
                *self = Stage::Starting {
                    early,
                    exiting: false,
                };
                Some(start)
            }
            _ => unreachable!("checked above"),
        }
    }
}

impl Shared {
    /// A node not started yet.
    pub fn new(start: Start) -> Arc<Shared> {
        Arc::new(Shared {
            stage: Mutex::new(Stage::Idle {
                early: Early::default(),
                start: Box::new(start),
            }),
            poke: Notify::new(),
            delivering: Mutex::new(()),
        })
    }

    /// The one door to the node: its stage, locked. If the node runs, dropping the guard
    /// finishes the step taken meanwhile.
    pub fn lock(&self) -> Step<'_> {
        Step {
            stage: Some(self.stage.lock().unwrap()),
            poke: &self.poke,
            delivering: &self.delivering,
        }
    }

    /// Steps the running node with `f`, then finishes the step; `None` if it is not running.
    pub fn step<T>(&self, f: impl FnOnce(&mut Node) -> T) -> Option<T> {
        match &mut *self.lock() {
            Stage::Running(node) => Some(f(node)),
            _ => None,
        }
    }
}

/// The node's stage, held locked. While the node runs, whoever holds this may step the
/// core; dropping it finishes the step (see the module doc).
pub struct Step<'a> {
    /// Always `Some` until the step is finished (taken by `drop`, which lets it go before
    /// delivering).
    stage: Option<MutexGuard<'a, Stage>>,
    poke: &'a Notify,
    delivering: &'a Mutex<()>,
}

impl Deref for Step<'_> {
    type Target = Stage;
    fn deref(&self) -> &Stage {
        self.stage
            .as_ref()
            .expect("a step is finished only when dropped")
    }
}

impl DerefMut for Step<'_> {
    fn deref_mut(&mut self) -> &mut Stage {
        self.stage
            .as_mut()
            .expect("a step is finished only when dropped")
    }
}

impl Drop for Step<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return; // a step that panicked is not finished (the lock is poisoned)
        }
        let Some(mut stage) = self.stage.take() else {
            return;
        };
        let Stage::Running(node) = &mut *stage else {
            return;
        };
        let (wake, delivery) = node.finish_step();
        if wake {
            self.poke.notify_one();
        }
        if let Some((sink, notes, receipt)) = delivery {
            // Delivered with the stage's lock let go: the binding's delivery wakes the
            // JavaScript thread, whose listener's first send then takes this lock. Held
            // meanwhile, it made that thread sleep on it and be woken again (seen in
            // `perf record -e sched:sched_switch` of the ping-pong benchmark).
            let order = self.delivering.lock().unwrap_or_else(|e| e.into_inner());
            drop(stage);
            sink.deliver(notes, receipt);
            drop(order);
        }
    }
}

/// What became of a batch handed to [`Node::send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Every message is handed over (or refused): one result per message.
    Now(Vec<Result<(), SendError>>),
    /// A connection it went to is backlogged: the outcome follows as
    /// [`Notification::Sent`] once it drains.
    Later,
}

/// What the node task is doing, as far as a step elsewhere needs to know.
#[derive(Clone, Copy)]
enum TaskState {
    /// Stepping, or about to: it reads the core's next deadline before it sleeps again.
    Awake,
    /// Asleep until the core's deadline read then (`None`: no deadline).
    Asleep(Option<std::time::Instant>),
}

/// The protocol side of a running node.
pub struct Node {
    core: Cluster<OsRng>,
    local: IpAddr,
    runtime: Runtime,
    conns: HashMap<ConnId, ConnHandle>,
    /// Connections with frames staged during the current step.
    touched: Vec<ConnId>,
    /// Dials in progress, aborted if the core gives up on them first.
    dials: HashMap<ConnId, AbortHandle>,
    /// Sends handed to backlogged connections, answered once those drain.
    waiting_sends: Vec<WaitingSend>,
    /// The socket beacons are multicast from, and the group.
    beacons: Option<(UdpSocket, SocketAddr)>,
    /// The liveness probe socket (UDP on the TCP listener's address and port number), for
    /// sending: the node task reads it (see [`probes`]).
    probes: Arc<std::net::UdpSocket>,
    log: Log,
    /// When a key or cluster mismatch with each peer address was last logged.
    mismatches_logged: Quiet,
    /// `network.peers` lookups that failed (the lookups run in their own task).
    seed_lookups_failed: u64,
    filter: Option<Arc<dyn Filter>>,
    filter_timeout: Duration,
    /// Where connection tasks (and filter verdicts) report to the node task.
    conn_events: mpsc::UnboundedSender<ConnEvent>,
    /// What the application hears, delivered at the end of each step. Dropped with the
    /// node when it stops (and by a step delivering just then, once it has), which is how
    /// the binding knows to let go of the event loop.
    sink: Arc<dyn EventSink>,
    notes: Vec<Notification>,
    /// What `notes` weigh against the receive bound.
    notes_weight: usize,
    /// What was delivered and not yet taken by the application; members' connections wait
    /// while it is over the bound.
    inbox: Arc<Inbox>,
    /// `exit()` was called: from then on sends are refused.
    exiting: bool,
    task: TaskState,
    /// For the connections' readers to step the node.
    shared: Weak<Shared>,
    /// The application's event loop, which reads connections too while it is idle.
    #[cfg(unix)]
    read_loop: Option<Arc<dyn ReadLoop>>,
    /// What a read under the lock reads into (whichever thread reads).
    #[cfg(unix)]
    read_buf: Vec<u8>,
}

/// A step's notifications, for the sink, with their receipt.
type Delivery = (Arc<dyn EventSink>, Vec<Notification>, Receipt);

/// A `send()` waiting for backlogged connections to drain.
struct WaitingSend {
    conns: Vec<ConnId>,
    /// The batch id its outcome is reported with.
    id: u64,
    results: Vec<Result<(), SendError>>,
}

/// True if any of `which` is backlogged (each one asked will report when it drains).
fn any_backlogged(conns: &HashMap<ConnId, ConnHandle>, which: &[ConnId]) -> bool {
    which
        .iter()
        .any(|c| conns.get(c).is_some_and(|h| h.backlogged()))
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// The system's wall clock in ms since the Unix epoch (0 before it), for the core's
/// freshness stamps on keyed beacons.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    /// Sends a batch of custom events, in order, and writes them out.
    pub fn send(&mut self, batch: &SendBatch, id: u64) -> Sent {
        if self.exiting {
            return Sent::Now(vec![Err(SendError::NotRunning); batch.len()]);
        }
        let now = now();
        let mut conns = Vec::new();
        let results = batch
            .iter()
            .map(|m| match m.targets {
                Err(e) => Err(e.clone()),
                Ok(targets) => {
                    let targets = targets.as_deref();
                    let used = self
                        .core
                        .send_event(now, m.name, m.binary, m.payload, targets)?;
                    conns.extend_from_slice(used);
                    Ok(())
                }
            })
            .collect();
        // Written now rather than when the step ends, so the backlog is judged with them.
        self.write_out();
        conns.sort_unstable();
        conns.dedup();
        // Two bounds make a sender wait: the socket's queue, and the peer's events not yet
        // acknowledged (kept for replay on its next connection).
        if any_backlogged(&self.conns, &conns) || self.core.sends_blocked(&conns) {
            self.waiting_sends.push(WaitingSend { conns, id, results });
            Sent::Later
        } else {
            Sent::Now(results)
        }
    }

    /// Carries out a request from the application (the step ends when the caller's does).
    fn apply(&mut self, request: Request) -> Result<(), SubscribeError> {
        let now = now();
        match request {
            Request::Subscribe(name) => return self.core.subscribe(now, &name),
            Request::Unsubscribe(name) => self.core.unsubscribe(now, &name),
            // Eligibility was checked by the caller; a refusal changes nothing.
            Request::Promote => drop(self.core.promote(now)),
            Request::SetMetadata(json) => self.core.set_metadata(now, json),
            Request::SetFilter(filter) => self.filter = filter,
            Request::Serve(name) => return self.core.serve(now, &name),
            Request::Unserve(name) => self.core.unserve(now, &name),
        }
        Ok(())
    }

    /// Asks handler `name` of `target` (see `Cluster::request`); its id.
    pub fn request(
        &mut self,
        name: &str,
        binary: bool,
        payload: &[u8],
        target: NodeId,
        timeout: Duration,
    ) -> Result<u64, SendError> {
        if self.exiting {
            return Err(SendError::NotRunning);
        }
        self.core
            .request(now(), name, binary, payload, target, timeout)
    }

    /// Gives up on request `id` (see `Cluster::cancel_request`).
    pub fn cancel_request(&mut self, id: u64) -> bool {
        self.core.cancel_request(id)
    }

    /// Answers `peer`'s request `id` (see `Cluster::reply`).
    pub fn reply(&mut self, peer: NodeId, id: u64, reply: Reply<'_>) {
        self.core.reply(now(), peer, id, reply);
    }

    /// The members serving `name`.
    pub fn servers(&self, name: &str) -> Vec<NodeId> {
        self.core.servers(name)
    }

    /// The node's counters so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.core.stats().clone();
        stats.seed_lookups_failed = self.seed_lookups_failed;
        stats
    }

    /// What the lookups of `network.peers` names found.
    fn on_seeds(&mut self, update: seeds::Update) {
        if update.failed {
            self.seed_lookups_failed += 1;
        }
        match update.report {
            Some(Report::Unresolved(message)) => {
                self.log.line(format_args!("{message}"));
                let n = Notification::Error {
                    code: ErrorCode::Seed,
                    message,
                };
                self.notes_weight += inbox::weight(&n);
                self.notes.push(n);
            }
            Some(Report::Resolved(message)) => self.log.line(format_args!("{message}")),
            None => {}
        }
        if let Some(all) = update.seeds {
            self.core.set_seeds(now(), all);
        }
    }

    /// From now on sends are refused; the node task is leaving.
    pub fn start_exit(&mut self) {
        self.exiting = true;
    }

    /// Ends every step (see [`Step`]'s `Drop`): carries out what it caused. True if the
    /// node task must be woken (the core's next deadline is now sooner than the one it
    /// sleeps on), and what is to be delivered, counted against the receive bound here.
    fn finish_step(&mut self) -> (bool, Option<Delivery>) {
        self.write_out();
        // Acknowledgements (or a removal) may have made room for senders waiting on them.
        if !self.waiting_sends.is_empty() {
            self.answer_sends();
        }
        let delivery = (!self.notes.is_empty()).then(|| {
            let receipt = self.inbox.deliver(std::mem::take(&mut self.notes_weight));
            (self.sink.clone(), std::mem::take(&mut self.notes), receipt)
        });
        let wake = match self.task {
            TaskState::Awake => false,
            TaskState::Asleep(until) => self
                .core
                .poll_timeout()
                .is_some_and(|next| until.is_none_or(|until| next < until)),
        };
        (wake, delivery)
    }

    /// Carries out the core's outputs and writes what they staged.
    fn write_out(&mut self) {
        self.carry_out();
        for conn in self.touched.drain(..) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.flush();
            }
        }
    }

    /// The node task is about to sleep: until when, and whether probes are to be read as
    /// they arrive meanwhile (see [`probes`]).
    fn sleep(&mut self) -> (Option<Instant>, bool) {
        let next = self.core.poll_timeout();
        self.task = TaskState::Asleep(next);
        (next.map(Instant::from_std), self.core.probes_prompt(now()))
    }

    /// Hands the core every probe datagram waiting, each with the instant it arrived.
    fn read_probes(
        &mut self,
        reader: &mut probes::Reader,
        buf: &mut [u8],
        now: std::time::Instant,
    ) {
        reader.read(now, buf, |arrived, from, datagram| {
            self.core.handle_probe(arrived, canonical(from), datagram);
        });
    }

    fn on_conn_event(&mut self, ev: ConnEvent, writers: &mut JoinSet<()>) {
        let now = now();
        match ev {
            ConnEvent::Connected(conn, stream) => {
                self.dials.remove(&conn);
                self.open(conn, stream, writers);
                self.core.connected(now, conn);
            }
            ConnEvent::DialFailed(conn) => {
                self.dials.remove(&conn);
                self.core.dial_failed(now, conn);
            }
            ConnEvent::Verdict(conn, accept) => self.core.admit(now, conn, accept),
            ConnEvent::FilterFailed {
                conn,
                node,
                reason,
                timed_out,
            } => {
                // A filter that fails refuses, as before, but never silently: counted in
                // stats().filter_errors, logged, and (a timeout, which only the driver sees)
                // reported to the application.
                let message = format!(
                    "connection filter failed on node {} ({}:{}): {reason}; the node was refused",
                    node.id, node.ip, node.port
                );
                self.log.line(format_args!("{message}"));
                self.core.filter_failed(now, conn);
                if timed_out {
                    self.notes.push(Notification::FilterTimeout {
                        node,
                        message: format!("espial: {message}"),
                    });
                }
            }
            ConnEvent::Drained => self.answer_sends(),
            // Unless a reader found the bound exceeded again since.
            ConnEvent::Resumed => {
                if !self.inbox.is_paused() {
                    self.core.set_reading_paused(now, false);
                }
            }
            ConnEvent::Closed(conn) => {
                self.conns.remove(&conn);
                self.core.connection_closed(now, conn);
                self.answer_sends();
            }
        }
    }

    fn open(&mut self, conn: ConnId, stream: tokio::net::TcpStream, writers: &mut JoinSet<()>) {
        // The reader steps the node itself: bytes read are handled on the reader's task, with
        // no copy and no hand-off to the node task.
        let shared = self.shared.clone();
        let received = move |bytes: &[u8]| {
            let Some(shared) = shared.upgrade() else {
                return Read::Gone;
            };
            shared
                .step(|node| node.receive(conn, bytes))
                .unwrap_or(Read::Gone)
        };
        let events = self.conn_events.clone();
        let inbox = self.inbox.clone();
        #[cfg(unix)]
        let stream = match &self.read_loop {
            None => stream,
            Some(read_loop) => {
                let shared = self.shared.clone();
                let pull = move |source: &mut dyn FnMut(&mut [u8]) -> std::io::Result<usize>| {
                    let Some(shared) = shared.upgrade() else {
                        return Pull::Gone;
                    };
                    shared
                        .step(|node| node.pull(conn, source))
                        .unwrap_or(Pull::Gone)
                };
                let (inbox, events) = (inbox.clone(), events.clone());
                match connection::spawn_shared_io(
                    conn,
                    stream,
                    Box::new(pull),
                    read_loop,
                    inbox,
                    events,
                    writers,
                ) {
                    Ok(handle) => {
                        self.conns.insert(conn, handle);
                        return;
                    }
                    Err(stream) => stream,
                }
            }
        };
        let handle = connection::spawn_io(conn, stream, received, inbox, events, writers);
        self.conns.insert(conn, handle);
    }

    /// Reads `conn` once from `source` and handles what it read, unless it comes from a
    /// member while the application is behind (as [`Node::receive`]; then nothing is read).
    #[cfg(unix)]
    fn pull(
        &mut self,
        conn: ConnId,
        source: &mut dyn FnMut(&mut [u8]) -> std::io::Result<usize>,
    ) -> Pull {
        let now = now();
        if !self.conns.contains_key(&conn) {
            // Closed by the node meanwhile: its bytes are nobody's.
            return Pull::Gone;
        }
        if self.core.is_member_conn(conn) && self.inbox.must_wait() {
            self.core.set_reading_paused(now, true);
            return Pull::Wait;
        }
        let mut buf = std::mem::take(&mut self.read_buf);
        buf.resize(connection::READ_BUF, 0);
        let pulled = loop {
            match source(&mut buf) {
                Ok(0) => break Pull::End,
                Ok(n) => {
                    self.core.handle_bytes(now, conn, &buf[..n]);
                    break Pull::Taken(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Pull::Empty,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break Pull::End,
            }
        };
        self.read_buf = buf;
        pulled
    }

    /// Bytes read on `conn`: handled, unless they come from a member while the application
    /// is behind (see [`super::inbox`]); then the core excuses the silence of every member
    /// until reading resumes.
    fn receive(&mut self, conn: ConnId, bytes: &[u8]) -> Read {
        let now = now();
        if self.core.is_member_conn(conn) && self.inbox.must_wait() {
            self.core.set_reading_paused(now, true);
            return Read::Wait;
        }
        self.core.handle_bytes(now, conn, bytes);
        Read::Taken
    }

    /// Answers the sends whose connections are no longer backlogged (or are gone: what was
    /// queued on a lost connection is kept in the peer's stream and replayed on its next
    /// one) and whose peers have acknowledged enough (see `Cluster::sends_resumable`).
    fn answer_sends(&mut self) {
        let (conns, core) = (&self.conns, &self.core);
        let (blocked, ready): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_sends)
            .into_iter()
            .partition(|w| any_backlogged(conns, &w.conns) || !core.sends_resumable(&w.conns));
        self.waiting_sends = blocked;
        for w in ready {
            self.answer(w);
        }
    }

    fn answer(&mut self, w: WaitingSend) {
        self.notes.push(Notification::Sent {
            id: w.id,
            results: w.results,
        });
    }

    /// Drains the core's outputs.
    fn carry_out(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { conn, bytes } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        if !c.has_staged() {
                            self.touched.push(conn);
                        }
                        c.stage(bytes);
                    }
                }
                Output::Close { conn } => {
                    // Dropping the handle writes what it has staged first.
                    self.conns.remove(&conn);
                    if let Some(dial) = self.dials.remove(&conn) {
                        dial.abort();
                    }
                }
                Output::Dial { conn, addr } => {
                    let events = self.conn_events.clone();
                    let dial = connection::dial(&self.runtime, conn, self.local, addr, events);
                    self.dials.insert(conn, dial);
                }
                Output::Probe { addr, bytes } => {
                    // Non-blocking: a full send buffer loses one probe; the next interval
                    // sends another.
                    let _ = self.probes.send_to(&bytes, for_socket(self.local, addr));
                }
                Output::Beacon(bytes) => {
                    if let Some((socket, group)) = &self.beacons {
                        // A full send buffer only loses one beacon; the next one follows.
                        let _ = socket.try_send_to(&bytes, *group);
                    }
                }
                Output::AskAdmission { conn, node } => match &self.filter {
                    // Without a connection filter every node is admitted.
                    None => self.core.admit(now(), conn, true),
                    Some(filter) => {
                        // Asked off the node's lock so a slow filter holds up nobody else.
                        let judged = node.clone();
                        let verdict = filter.judge(node);
                        let limit = self.filter_timeout;
                        let events = self.conn_events.clone();
                        self.runtime.spawn(async move {
                            let failed = |reason, timed_out| ConnEvent::FilterFailed {
                                conn,
                                node: judged,
                                reason,
                                timed_out,
                            };
                            let event = match tokio::time::timeout(limit, verdict).await {
                                Ok(Ok(accept)) => ConnEvent::Verdict(conn, accept),
                                Ok(Err(reason)) => failed(reason, false),
                                Err(_) => failed(
                                    format!("it did not answer within {} ms", limit.as_millis()),
                                    true,
                                ),
                            };
                            let _ = events.send(event);
                        });
                    }
                },
                Output::Event(e) => {
                    if self.log.enabled() {
                        match mismatch(&e) {
                            // A peer with another key (or cluster) is refused each time it
                            // tries: one line per address now and then is enough.
                            Some(ip) => {
                                if self.mismatches_logged.allow(now(), ip) {
                                    log_mismatch(&self.log, &e);
                                }
                            }
                            None => log_event(&self.log, &e),
                        }
                    }
                    if let Some(n) = notification(e) {
                        self.notes_weight += inbox::weight(&n);
                        self.notes.push(n);
                    }
                }
            }
        }
    }
}

/// Binds the node's sockets, then runs it until an exit is asked for (or the handle is
/// dropped): `Starting` meanwhile, `Running` then, `Stopped` afterwards.
pub async fn run(shared: Arc<Shared>, start: Box<Start>) {
    let Start {
        mut config,
        sink,
        mut exits,
        #[cfg(unix)]
        read_loop,
    } = *start;
    let local = config.me.ip;
    let log = Log::for_node(config.identity.id());
    if let Some(material) = config.key_material.take() {
        let cluster = config.core.cluster.clone();
        // Off the runtime's workers (and the application's thread): the stretch is slow
        // on purpose. The material is wiped once stretched.
        let stretch = move || ClusterKey::new(&material, &cluster);
        // It cannot fail (constant parameters); a panic in it is carried on here.
        let key = tokio::task::spawn_blocking(stretch)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        config.core.cluster_key = Some(key);
    }
    let fail = |code: ErrorCode, message: String| {
        log.line(format_args!("{message}"));
        *shared.lock() = Stage::Stopped(Stats::default());
        sink.deliver(vec![Notification::Error { code, message }], Receipt::none());
    };
    let listener = match TcpListener::bind(SocketAddr::new(local, config.me.port)).await {
        Ok(l) => l,
        Err(e) => {
            let message = format!(
                "cannot listen on {local}:{}: {e}{}",
                config.me.port,
                hint(&e)
            );
            return fail(ErrorCode::Bind, message);
        }
    };
    let mut beacons_in = None;
    let mut beacons_out = None;
    if let Some(mc) = &config.multicast {
        match multicast::bind(mc, local) {
            Ok(d) => {
                // Listening on every address (`::`), the node names the one its beacons
                // come from; the core checks nothing else against it.
                if local.is_unspecified() {
                    config.me.ip = d.source;
                }
                beacons_in = Some(d.recv);
                beacons_out = Some((d.send, d.group));
            }
            Err(e) => {
                let message = format!(
                    "cannot join multicast group {}:{} on interface {}: {e}",
                    mc.group, mc.port, mc.interface
                );
                return fail(ErrorCode::Multicast, message);
            }
        }
    }
    let mut me = config.me;
    me.port = listener.local_addr().map(|a| a.port()).unwrap_or(me.port);
    let port = me.port;
    let (probes, mut probe_reader) = match probes::bind(SocketAddr::new(local, port)) {
        Ok(s) => s,
        Err(e) => {
            let message = format!(
                "cannot bind the liveness probe socket (UDP) on {local}:{port}: {e}{}",
                hint(&e)
            );
            return fail(ErrorCode::Bind, message);
        }
    };
    let mut core_config = config.core;
    // Whether the core may count on its beacons being heard (see `discovery::Hint`).
    core_config.discovery.multicast = beacons_out.is_some();
    let notes = vec![Notification::Listening { port }];
    // Addresses are seeds from the start; names follow as their lookups answer.
    let seeds = Seeds::new(&config.seeds, config.seeds_resolve_interval, now());
    core_config.discovery.seeds.extend(seeds.all());
    let (seed_updates_in, mut seed_updates) = mpsc::channel(16);
    let lookups = seeds
        .has_names()
        .then(|| tokio::spawn(seeds::watch(seeds, seed_updates_in)));
    log.line(format_args!(
        "listening on {local}:{port} as {} (cluster {:?}, multicast {})",
        me.id,
        core_config.cluster,
        config
            .multicast
            .as_ref()
            .map_or("off".to_owned(), |m| format!(
                "{}:{} on {}",
                m.group, m.port, m.interface
            ))
    ));
    let (conn_events, mut conn_reports) = mpsc::unbounded_channel();
    let inbox = Inbox::new(config.max_receive_buffer, conn_events.clone());
    {
        // Starting → Running and the kept requests in one step, so that nothing asked
        // meanwhile can come before them.
        let mut stage = shared.lock();
        let (early, exiting) =
            match std::mem::replace(&mut *stage, Stage::Stopped(Stats::default())) {
                Stage::Starting { early, exiting } => (early, exiting),
                _ => (Early::default(), false),
            };
        if let Some(metadata) = early.metadata {
            me.metadata = metadata;
        }
        let mut core = Cluster::with_identity(config.identity, me, core_config, OsRng);
        let started = now();
        core.set_wall_clock(started, unix_ms());
        core.start(started);
        let mut node = Box::new(Node {
            core,
            local,
            runtime: Runtime::current(),
            conns: HashMap::new(),
            touched: Vec::new(),
            dials: HashMap::new(),
            waiting_sends: Vec::new(),
            beacons: beacons_out,
            probes: probes.clone(),
            log,
            mismatches_logged: Quiet::default(),
            seed_lookups_failed: 0,
            filter: early.filter,
            filter_timeout: config.filter_timeout,
            conn_events,
            sink: Arc::from(sink),
            notes,
            notes_weight: 0,
            inbox,
            exiting,
            task: TaskState::Awake,
            shared: Arc::downgrade(&shared),
            #[cfg(unix)]
            read_loop,
            #[cfg(unix)]
            read_buf: Vec::new(),
        });
        for name in early.joined.names() {
            // Kept under the same limit, so the core takes every one.
            let _ = node.apply(Request::Subscribe(name));
        }
        for name in early.served.names() {
            let _ = node.apply(Request::Serve(name));
        }
        if early.promote {
            let _ = node.apply(Request::Promote);
        }
        *stage = Stage::Running(node);
    }

    let mut task = Task {
        shared: &shared,
        writers: JoinSet::new(),
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut probe_buf = [0u8; MAX_DATAGRAM];
    let mut waiters = Vec::new();
    // Ends when asked to, or (which cannot happen while this task runs) if stopped elsewhere.
    while let Some((deadline, prompt)) = shared.step(Node::sleep) {
        probe_reader.set_prompt(now(), prompt);
        tokio::select! {
            exit = exits.recv() => {
                // None: the handle was dropped without exit(): leave all the same.
                waiters.extend(exit);
                break;
            }
            _ = shared.poke.notified() => {}
            Some(update) = seed_updates.recv() => {
                task.step(|node, _| node.on_seeds(update));
            }
            Some(ev) = conn_reports.recv() => {
                task.step(|node, writers| node.on_conn_event(ev, writers));
            }
            accepted = listener.accept() => {
                if let Ok((stream, addr)) = accepted {
                    let addr = canonical(addr);
                    task.step(|node, writers| {
                        if let Some(conn) = node.core.accept(now(), addr) {
                            node.open(conn, stream, writers);
                        }
                    });
                }
            }
            Some((n, from)) = recv_beacon(&beacons_in, &mut buf) => {
                task.step(|node, _| {
                    let now = now();
                    node.core.set_wall_clock(now, unix_ms());
                    node.core.handle_beacon(now, from, &buf[..n]);
                });
            }
            () = probe_reader.ready() => {
                // A datagram longer than any probe arrives cut to the buffer, which is
                // longer than any probe: the core drops it for its length.
                task.step(|node, _| node.read_probes(&mut probe_reader, &mut probe_buf, now()));
            }
            _ = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                task.step(|node, _| {
                    let now = now();
                    // Before any silence is judged: what waits arrived before now.
                    node.read_probes(&mut probe_reader, &mut probe_buf, now);
                    // Timeouts send our beacons: their stamps follow the system clock.
                    node.core.set_wall_clock(now, unix_ms());
                    node.core.handle_timeout(now);
                });
            }
            Some(_) = task.writers.join_next() => {}
        }
    }
    drop(listener);
    if let Some(lookups) = lookups {
        lookups.abort();
    }
    task.leave(&mut exits, &mut waiters).await;
    for w in waiters {
        let _ = w.send(());
    }
}

/// The node task's own state.
struct Task<'a> {
    shared: &'a Shared,
    writers: JoinSet<()>,
}

impl Task<'_> {
    /// A step of the node task's own, through the one door ([`Shared::step`]); the task is
    /// awake meanwhile, so nobody needs to wake it for what the step changes.
    fn step<T>(&mut self, f: impl FnOnce(&mut Node, &mut JoinSet<()>) -> T) -> Option<T> {
        let writers = &mut self.writers;
        self.shared.step(|node| {
            node.task = TaskState::Awake;
            f(node, writers)
        })
    }

    /// Says goodbye to every peer, waits (bounded) for it to be flushed, and stops.
    async fn leave(
        &mut self,
        exits: &mut mpsc::UnboundedReceiver<oneshot::Sender<()>>,
        waiters: &mut Vec<oneshot::Sender<()>>,
    ) {
        // Two steps: the first one's end writes the goodbyes to the connections the second
        // one closes.
        self.step(|node, _| {
            node.start_exit();
            node.core.leave(now());
        });
        self.step(|node, _| {
            // What was handed to a connection is flushed below, as far as time allows.
            for w in std::mem::take(&mut node.waiting_sends) {
                node.answer(w);
            }
            node.conns.clear();
            for (_, dial) in node.dials.drain() {
                dial.abort();
            }
        });
        let flush = async { while self.writers.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(EXIT_FLUSH, flush).await;
        self.writers.abort_all();
        // Stopped: dropping the node drops its sink, which is how the binding knows to let
        // go of the event loop.
        let mut stage = self.shared.lock();
        let stats = match &*stage {
            Stage::Running(node) => node.stats(),
            _ => Stats::default(),
        };
        let node = std::mem::replace(&mut *stage, Stage::Stopped(stats));
        drop(stage);
        drop(node);
        exits.close();
        while let Ok(w) = exits.try_recv() {
            waiters.push(w);
        }
    }
}

fn log_event(log: &Log, e: &Event) {
    let who =
        |n: &crate::core::node::NodeInfo| format!("{} ({} {}:{})", n.id, n.host_name, n.ip, n.port);
    let who_c = |n: &crate::core::node::Candidate| {
        format!("{} ({} {}:{})", n.id, n.host_name, n.ip, n.port)
    };
    let maybe =
        |n: &Option<crate::core::node::NodeInfo>| n.as_ref().map_or("nobody".to_owned(), who);
    match e {
        Event::NodeAdded(n) => log.line(format_args!("added {}", who(n))),
        // Told with its reason by the `Explained` just before.
        Event::NodeRemoved(_) => {}
        Event::Explained { node, what, reason } => match what {
            Happened::Removed => log.line(format_args!("removed {}: {reason}", who_c(node))),
            Happened::Refused => log.line(format_args!(
                "refused {}: {reason}; it is not dialed, and refused again unasked, for {} s doubling per refusal in a row up to {} s",
                who_c(node),
                REFUSAL_FIRST_WAIT.as_secs(),
                REFUSAL_MAX_WAIT.as_secs()
            )),
        },
        Event::NodeUpdated(n) => log.line(format_args!("metadata of {} updated", who(n))),
        Event::NodeAccepted(n) => log.line(format_args!("accepted by {}", who(n))),
        Event::NodeRejected(n) => log.line(format_args!(
            "refused by {}: its connection filter said no; not dialed again for {} s doubling per refusal in a row up to {} s",
            who_c(n),
            REFUSAL_FIRST_WAIT.as_secs(),
            REFUSAL_MAX_WAIT.as_secs()
        )),
        Event::NewMaster(n) => log.line(format_args!("master is now {}", maybe(n))),
        Event::Promotion { previous } => log.line(format_args!(
            "promoted to master (previous: {})",
            maybe(previous)
        )),
        Event::Demotion { new } => log.line(format_args!("demoted (master now: {})", maybe(new))),
        Event::ConnectionFailed { addr, error } => {
            log.line(format_args!("connection with {addr} closed: {error}"))
        }
        Event::BeaconKeyMismatch { addr } => log.line(format_args!(
            "ignored a beacon from {addr}: another cluster_key"
        )),
        Event::BeaconRefused { addr, reason } => {
            log.line(format_args!("refused a beacon from {addr}: {reason}"))
        }
        Event::BeaconVersionMismatch { addr, ours, theirs } => log.line(format_args!(
            "ignored a beacon from {addr}: it speaks espial protocol version {theirs}, this node speaks {ours}"
        )),
        Event::Undelivered { node, events } => log.line(format_args!(
            "{} custom events sent to {} were not acknowledged before it was removed: reported in `undelivered`",
            events.len(),
            who(node)
        )),
        Event::Delivery { .. } | Event::Request { .. } | Event::Answer { .. } => {}
    }
}

/// How long after a line about a key or cluster mismatch with a peer address the next one
/// about that address is left out.
const MISMATCH_QUIET: Duration = Duration::from_secs(10);
/// Addresses remembered for that at most; past it, lines are left out until some expire.
const MISMATCH_PEERS: usize = 256;

/// At most one line per peer address per [`MISMATCH_QUIET`], remembering at most
/// [`MISMATCH_PEERS`] addresses.
#[derive(Default)]
struct Quiet {
    last: HashMap<IpAddr, std::time::Instant>,
}

impl Quiet {
    fn allow(&mut self, now: std::time::Instant, ip: IpAddr) -> bool {
        let recent = |at: &std::time::Instant| now.saturating_duration_since(*at) < MISMATCH_QUIET;
        if self.last.get(&ip).is_some_and(recent) {
            return false;
        }
        if self.last.len() >= MISMATCH_PEERS && !self.last.contains_key(&ip) {
            self.last.retain(|_, at| recent(at));
            if self.last.len() >= MISMATCH_PEERS {
                return false;
            }
        }
        self.last.insert(ip, now);
        true
    }
}

/// The peer address of a refusal for another cluster key or cluster name.
fn mismatch(e: &Event) -> Option<IpAddr> {
    match e {
        Event::ConnectionFailed {
            addr,
            error:
                ConnectionError::Handshake(
                    HandshakeError::KeyMismatch
                    | HandshakeError::ClusterMismatch { .. }
                    | HandshakeError::Version { .. },
                ),
        } => Some(addr.ip()),
        Event::BeaconKeyMismatch { addr }
        | Event::BeaconRefused { addr, .. }
        | Event::BeaconVersionMismatch { addr, .. } => Some(addr.ip()),
        _ => None,
    }
}

fn log_mismatch(log: &Log, e: &Event) {
    let quiet = MISMATCH_QUIET.as_secs();
    match e {
        Event::ConnectionFailed {
            addr,
            error: error @ ConnectionError::Handshake(HandshakeError::Version { .. }),
        } => log.line(format_args!(
            "refused {addr}: {error}; every node of a cluster must run an espial release of the same protocol version (counted in stats().version_mismatches; the next such line about {} in {quiet} s at the earliest)",
            addr.ip()
        )),
        Event::BeaconVersionMismatch { addr, ours, theirs } => log.line(format_args!(
            "ignored a beacon of espial protocol version {theirs} from {addr}, this node speaks {ours}; every node of a cluster must run an espial release of the same protocol version (counted in stats().version_mismatches; the next such line about {} in {quiet} s at the earliest)",
            addr.ip()
        )),
        Event::ConnectionFailed { addr, error } => log.line(format_args!(
            "refused {addr}: {error}; check cluster_key and cluster on both nodes (counted in stats().key_mismatches or handshakes_failed; the next such line about {} in {quiet} s at the earliest)",
            addr.ip()
        )),
        Event::BeaconKeyMismatch { addr } => log.line(format_args!(
            "ignored a beacon of this cluster from {addr} under another cluster_key (or without one, or with one where this node has none); check cluster_key on both nodes (counted in stats().key_mismatches; the next such line about {} in {quiet} s at the earliest)",
            addr.ip()
        )),
        Event::BeaconRefused { addr, reason } => log.line(format_args!(
            "refused a beacon of this cluster from {addr}: {reason} (counted in stats().beacons_refused; the next such line about {} in {quiet} s at the earliest)",
            addr.ip()
        )),
        _ => {}
    }
}

fn notification(e: Event) -> Option<Notification> {
    match e {
        // Failed connections are counted by the core; they are not application events.
        Event::ConnectionFailed { .. }
        | Event::BeaconKeyMismatch { .. }
        | Event::Explained { .. } => None,
        Event::BeaconRefused { .. } | Event::BeaconVersionMismatch { .. } => None,
        e => Some(Notification::Cluster(e)),
    }
}

async fn recv_beacon(socket: &Option<UdpSocket>, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match socket {
        Some(s) => s.recv_from(buf).await.ok(),
        None => std::future::pending().await,
    }
}

/// A peer's address as the core knows it: an IPv4 peer of a dual-stack (`::`) socket shows
/// as an IPv4-mapped IPv6 address, which is the IPv4 address it stands for.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// `addr` as a socket bound to `local` can send to it: an IPv6 socket on `::` reaches
/// IPv4 peers at their IPv4-mapped addresses.
pub fn for_socket(local: IpAddr, addr: SocketAddr) -> SocketAddr {
    match (local, addr.ip()) {
        (IpAddr::V6(_), IpAddr::V4(v4)) => {
            SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), addr.port())
        }
        _ => addr,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another espial node or program is using this port; set network.port)"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            " (no interface has this address; check network.address.local)"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_lines_are_one_per_address_per_quiet_period_and_bounded() {
        let t0 = std::time::Instant::now();
        let ip = |n: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
        let mut quiet = Quiet::default();
        assert!(quiet.allow(t0, ip(1)));
        assert!(!quiet.allow(t0 + Duration::from_secs(9), ip(1)));
        assert!(quiet.allow(t0, ip(2)), "another address has its own line");
        assert!(quiet.allow(t0 + MISMATCH_QUIET, ip(1)));
        // Full: new addresses are left out until remembered ones expire.
        for n in 3..=MISMATCH_PEERS as u32 {
            assert!(quiet.allow(t0, ip(n)));
        }
        assert!(!quiet.allow(t0 + Duration::from_secs(1), ip(100_000)));
        assert!(quiet.last.len() <= MISMATCH_PEERS);
        assert!(quiet.allow(t0 + MISMATCH_QUIET * 2, ip(100_000)));
        assert!(quiet.last.len() <= MISMATCH_PEERS);
    }
}
