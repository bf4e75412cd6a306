//! The task that owns one node: binds its sockets, then loops feeding the core with socket
//! input, commands and timer expiries, and carrying out what the core asks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_core::OsRng;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use super::connection::{self, ConnEvent, ConnHandle};
use super::discovery::{self, Discovery};
use super::gate::SendGate;
use super::log::Log;
use super::{ipv4, Command, ErrorCode, EventSink, Filter, NodeConfig, Notification};
use crate::core::cluster::{Cluster, ConnId, Event, Output, Stats};
use crate::core::error::SendError;

/// How long `exit()` waits for goodbyes to be flushed before closing regardless.
const EXIT_FLUSH: Duration = Duration::from_secs(1);
const MAX_DATAGRAM: usize = 1500;

pub async fn run(
    config: NodeConfig,
    sink: Box<dyn EventSink>,
    filter: Option<Arc<dyn Filter>>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    stats: Arc<Mutex<Stats>>,
    gate: Arc<SendGate>,
) {
    let local = config.me.ip;
    let log = Log::for_node(config.me.id);
    let listener = match TcpListener::bind(SocketAddr::new(local, config.me.port)).await {
        Ok(l) => l,
        Err(e) => {
            let message = format!(
                "cannot listen on {local}:{}: {e}{}",
                config.me.port,
                hint(&e)
            );
            log.line(format_args!("{message}"));
            return sink.deliver(vec![Notification::Error {
                code: ErrorCode::Bind,
                message,
            }]);
        }
    };
    let discovery = match &config.multicast {
        None => None,
        Some(mc) => {
            let bound = ipv4(local)
                .ok_or_else(|| std::io::Error::other("multicast discovery needs an IPv4 address"))
                .and_then(|v4| discovery::bind(mc, v4));
            match bound {
                Ok(d) => Some(d),
                Err(e) => {
                    let message = format!(
                        "cannot join multicast group {}:{} on interface {}: {e}",
                        mc.group, mc.port, mc.interface
                    );
                    log.line(format_args!("{message}"));
                    return sink.deliver(vec![Notification::Error {
                        code: ErrorCode::Multicast,
                        message,
                    }]);
                }
            }
        }
    };
    let mut me = config.me;
    me.port = listener.local_addr().map(|a| a.port()).unwrap_or(me.port);
    let port = me.port;
    let mut core_config = config.core;
    let mut notes = vec![Notification::Listening { port }];
    for seed in &config.seeds {
        match resolve(seed).await {
            Ok(addrs) => core_config.discovery.seeds.extend(addrs),
            Err(e) => notes.push(Notification::Error {
                code: ErrorCode::Seed,
                message: format!("cannot resolve seed \"{seed}\" (network.peers): {e}"),
            }),
        }
    }
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
    let mut core = Cluster::new(me, core_config, OsRng);
    core.start(Instant::now().into_std());
    sink.deliver(notes);

    let mut driver = Driver {
        core,
        local,
        discovery,
        conns: HashMap::new(),
        dials: HashMap::new(),
        waiting_sends: Vec::new(),
        log,
        stats,
        filter,
        filter_timeout: config.filter_timeout,
        writers: JoinSet::new(),
        events: mpsc::unbounded_channel(),
        batch: Vec::new(),
        gate,
    };
    let exit_waiters = driver.run(&listener, &mut commands, &*sink).await;
    drop(listener);
    // Close every socket before saying we are done.
    drop(driver);
    for w in exit_waiters {
        let _ = w.send(());
    }
}

struct Driver {
    core: Cluster<OsRng>,
    local: std::net::IpAddr,
    discovery: Option<Discovery>,
    conns: HashMap<ConnId, ConnHandle>,
    /// Dials in progress, aborted if the core gives up on them first.
    dials: HashMap<ConnId, tokio::task::AbortHandle>,
    /// Sends handed to backlogged connections, answered once those drain.
    waiting_sends: Vec<WaitingSend>,
    log: Log,
    /// Shared with the [`Handle`](super::Handle) so `stats()` needs no round trip.
    stats: Arc<Mutex<Stats>>,
    filter: Option<Arc<dyn Filter>>,
    filter_timeout: Duration,
    writers: JoinSet<()>,
    events: (
        mpsc::UnboundedSender<ConnEvent>,
        mpsc::UnboundedReceiver<ConnEvent>,
    ),
    batch: Vec<Notification>,
    /// What lets `send` answer at once: kept up to date with members and queues.
    gate: Arc<SendGate>,
}

impl Driver {
    /// Runs until an exit is asked for (or the handle is dropped); returns who to tell.
    async fn run(
        &mut self,
        listener: &TcpListener,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        sink: &dyn EventSink,
    ) -> Vec<oneshot::Sender<()>> {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            self.carry_out();
            if !self.batch.is_empty() {
                sink.deliver(std::mem::take(&mut self.batch));
            }
            self.stats.lock().unwrap().clone_from(self.core.stats());
            let deadline = self.core.poll_timeout().map(Instant::from_std);
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    Some(Command::Exit(done)) => return self.leave(vec![done], commands, sink).await,
                    Some(Command::SetFilter(filter)) => self.filter = filter,
                    Some(Command::Join(name)) => {
                        // Names were checked by the caller; a refusal changes nothing.
                        let _ = self.core.join(Instant::now().into_std(), &name);
                    }
                    Some(Command::Leave(name)) => {
                        self.core.leave_event(Instant::now().into_std(), &name);
                    }
                    Some(Command::Send { batch, answer }) => self.send(batch, answer),
                    Some(Command::Promote) => {
                        // Eligibility was checked by the caller; a refusal changes nothing.
                        let _ = self.core.promote(Instant::now().into_std());
                    }
                    Some(Command::SetMetadata(json)) => {
                        self.core.set_metadata(Instant::now().into_std(), json);
                    }
                    // The handle was dropped without exit(): leave all the same.
                    None => return self.leave(Vec::new(), commands, sink).await,
                },
                Some(ev) = self.events.1.recv() => self.on_conn_event(ev),
                accepted = listener.accept() => {
                    if let Ok((stream, addr)) = accepted {
                        let now = Instant::now().into_std();
                        if let Some(conn) = self.core.accept(now, addr) {
                            self.open(conn, stream);
                        }
                    }
                }
                Some((n, from)) = recv_beacon(&self.discovery, &mut buf) => {
                    self.core.handle_beacon(Instant::now().into_std(), from, &buf[..n]);
                }
                _ = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    self.core.handle_timeout(Instant::now().into_std());
                }
                Some(_) = self.writers.join_next() => {}
            }
        }
    }

    /// Says goodbye to every peer, waits (bounded) for it to be flushed.
    async fn leave(
        &mut self,
        mut waiters: Vec<oneshot::Sender<()>>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        sink: &dyn EventSink,
    ) -> Vec<oneshot::Sender<()>> {
        self.core.leave(Instant::now().into_std());
        self.carry_out();
        // What was handed to a connection is flushed below, as far as time allows.
        for w in std::mem::take(&mut self.waiting_sends) {
            self.answer(w);
        }
        if !self.batch.is_empty() {
            sink.deliver(std::mem::take(&mut self.batch));
        }
        self.conns.clear();
        let flush = async { while self.writers.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(EXIT_FLUSH, flush).await;
        self.writers.abort_all();
        // Nothing more is taken; what came meanwhile is answered: sends as not sent.
        commands.close();
        let mut unsent = Vec::new();
        while let Ok(cmd) = commands.try_recv() {
            match cmd {
                Command::Exit(done) => waiters.push(done),
                Command::Send { batch, answer } => {
                    self.gate.batch_handled(batch.payload_len());
                    if let Some(id) = answer {
                        let results = vec![Err(SendError::NotRunning); batch.len()];
                        unsent.push(Notification::Sent { id, results });
                    }
                }
                _ => {}
            }
        }
        if !unsent.is_empty() {
            sink.deliver(unsent);
        }
        waiters
    }

    fn on_conn_event(&mut self, ev: ConnEvent) {
        let now = Instant::now().into_std();
        match ev {
            ConnEvent::Connected(conn, stream) => {
                self.dials.remove(&conn);
                self.open(conn, stream);
                self.core.connected(now, conn);
            }
            ConnEvent::DialFailed(conn) => {
                self.dials.remove(&conn);
                self.core.dial_failed(now, conn);
            }
            ConnEvent::Verdict(conn, accept) => self.core.admit(now, conn, accept),
            ConnEvent::Drained => self.answer_sends(),
            ConnEvent::Data(conn, bytes) => self.core.handle_bytes(now, conn, &bytes),
            ConnEvent::Closed(conn) => {
                self.conns.remove(&conn);
                self.core.connection_closed(now, conn);
                self.answer_sends();
            }
        }
    }

    fn open(&mut self, conn: ConnId, stream: tokio::net::TcpStream) {
        let events = self.events.0.clone();
        let gate = self.gate.clone();
        let handle = connection::spawn_io(conn, stream, events, &mut self.writers, gate);
        self.conns.insert(conn, handle);
    }

    /// Queues a batch of custom events; answers once their connections are not backlogged.
    fn send(&mut self, batch: super::SendBatch, answer: Option<u64>) {
        self.gate.batch_handled(batch.payload_len());
        let now = Instant::now().into_std();
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
        self.carry_out();
        // Answered already (by the gate): what the core found (a target gone meanwhile) is
        // what happens to messages on a connection that drops.
        let Some(id) = answer else {
            return;
        };
        conns.sort_unstable();
        conns.dedup();
        self.waiting_sends.push(WaitingSend { conns, id, results });
        self.answer_sends();
    }

    /// Answers the sends whose connections are no longer backlogged (or are gone: what was
    /// queued on a lost connection is lost with it, as with any socket).
    fn answer_sends(&mut self) {
        let conns = &self.conns;
        let (blocked, ready): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting_sends)
            .into_iter()
            .partition(|w| {
                w.conns
                    .iter()
                    .any(|c| conns.get(c).is_some_and(|h| h.backlogged()))
            });
        self.waiting_sends = blocked;
        for w in ready {
            self.answer(w);
        }
    }

    fn answer(&mut self, w: WaitingSend) {
        self.batch.push(Notification::Sent {
            id: w.id,
            results: w.results,
        });
    }

    /// Drains the core's outputs.
    fn carry_out(&mut self) {
        while let Some(out) = self.core.poll_output() {
            match out {
                Output::Transmit { conn, bytes } => {
                    if let Some(c) = self.conns.get(&conn) {
                        c.write(bytes);
                    }
                }
                Output::Close { conn } => {
                    self.conns.remove(&conn);
                    if let Some(dial) = self.dials.remove(&conn) {
                        dial.abort();
                    }
                }
                Output::Dial { conn, addr } => {
                    let dial = connection::dial(conn, self.local, addr, self.events.0.clone());
                    self.dials.insert(conn, dial);
                }
                Output::Beacon(bytes) => {
                    if let Some(d) = &self.discovery {
                        // A full send buffer only loses one beacon; the next one follows.
                        let _ = d.send.try_send_to(&bytes, d.group);
                    }
                }
                Output::AskAdmission { conn, node } => match &self.filter {
                    // Without a connection filter every node is admitted.
                    None => self.core.admit(Instant::now().into_std(), conn, true),
                    Some(filter) => {
                        // Asked off the node task so a slow filter holds up nobody else.
                        let verdict = filter.judge(node);
                        let limit = self.filter_timeout;
                        let events = self.events.0.clone();
                        tokio::spawn(async move {
                            let accept =
                                tokio::time::timeout(limit, verdict).await.unwrap_or(false);
                            let _ = events.send(ConnEvent::Verdict(conn, accept));
                        });
                    }
                },
                Output::Event(e) => {
                    match &e {
                        Event::NodeAdded(n) => {
                            if let Some(limit) = self.core.payload_limit(n.id) {
                                self.gate.added(n.id, limit);
                            }
                        }
                        Event::NodeRemoved(n) => self.gate.removed(n.id),
                        _ => {}
                    }
                    if self.log.enabled() {
                        log_event(&self.log, &e);
                    }
                    if let Some(n) = notification(e) {
                        self.batch.push(n);
                    }
                }
            }
        }
    }
}

fn log_event(log: &Log, e: &Event) {
    let who =
        |n: &crate::core::node::NodeInfo| format!("{} ({} {}:{})", n.id, n.host_name, n.ip, n.port);
    let maybe =
        |n: &Option<crate::core::node::NodeInfo>| n.as_ref().map_or("nobody".to_owned(), who);
    match e {
        Event::NodeAdded(n) => log.line(format_args!("added {}", who(n))),
        Event::NodeRemoved(n) => log.line(format_args!("removed {}", who(n))),
        Event::NodeUpdated(n) => log.line(format_args!("metadata of {} updated", who(n))),
        Event::NodeAccepted(n) => log.line(format_args!("accepted by {}", who(n))),
        Event::NodeRejected(n) => log.line(format_args!("rejected by {}", who(n))),
        Event::NewMaster(n) => log.line(format_args!("master is now {}", maybe(n))),
        Event::Promotion { previous } => log.line(format_args!(
            "promoted to master (previous: {})",
            maybe(previous)
        )),
        Event::Demotion { new } => log.line(format_args!("demoted (master now: {})", maybe(new))),
        Event::ConnectionFailed { addr, error } => {
            log.line(format_args!("connection with {addr} closed: {error}"))
        }
        Event::Message { .. } => {}
    }
}

/// A `send()` waiting for backlogged connections to drain.
struct WaitingSend {
    conns: Vec<ConnId>,
    /// The batch id its outcome is reported with.
    id: u64,
    results: Vec<Result<(), SendError>>,
}

fn notification(e: Event) -> Option<Notification> {
    match e {
        // Failed connections are counted by the core; they are not application events.
        Event::ConnectionFailed { .. } => None,
        e => Some(Notification::Cluster(e)),
    }
}

async fn recv_beacon(d: &Option<Discovery>, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match d {
        Some(d) => d.recv.recv_from(buf).await.ok(),
        None => std::future::pending().await,
    }
}

/// Resolves `host:port`, bounded in time so a dead resolver cannot hold up the start.
async fn resolve(seed: &str) -> std::io::Result<Vec<SocketAddr>> {
    let lookup = tokio::net::lookup_host(seed);
    match tokio::time::timeout(Duration::from_secs(5), lookup).await {
        Ok(addrs) => Ok(addrs?.collect()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "name resolution timed out",
        )),
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
