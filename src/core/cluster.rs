//! This node's protocol with the rest of the cluster, as one sans-IO state machine.
//!
//! Inputs are method calls carrying `now`; effects are queued as [`Output`]s that the
//! driver drains with [`Cluster::poll_output`], and the next wake-up is
//! [`Cluster::poll_timeout`] (the quinn-proto shape). Randomness is injected, so a seeded
//! simulation replays exactly.
//!
//! A connection goes Dialing → Handshake → Introducing → Admitting → Member. Admission is
//! an explicit step: the core asks ([`Output::AskAdmission`]) and the driver answers with
//! [`Cluster::admit`], which is where the application's connection filter plugs in. A node
//! becomes a member only when both ends have admitted each other.
//!
//! One connection per pair: see [`super::discovery`] for who dials. If both dial anyway,
//! both ends keep the connection initiated by the smaller id, a rule each end evaluates
//! alike; a replacement inherits the membership of the connection it replaces.
//!
//! A member whose connection drops without a goodbye becomes a suspect and is redialed at
//! once: a crashed process refuses the redial and is removed within milliseconds, a
//! transient break is mended without any event. A member silent past the detector's bound
//! is removed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::beacon::{self, Beacon};
use super::config::Config;
use super::crypto::{Handshake, Role, Session};
use super::detector::Liveness;
use super::discovery::{Discovery, Learned, Target};
use super::election::{Effect, Election, PromoteError};
use super::error::{ConnectionError, SendError, SubscribeError};
use super::message::{self, Message, MAX_EVENT_NAME, MAX_JOINED, MAX_MEMBERS};
use super::node::{NodeId, NodeInfo};
use super::wire::{self, FrameDecoder, MAX_HANDSHAKE_FRAME};

/// The core's name for a connection; the driver maps it to a socket.
pub type ConnId = u64;

/// An effect for the driver to carry out.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Write these bytes to the connection, in order.
    Transmit { conn: ConnId, bytes: Vec<u8> },
    /// Flush what was transmitted, then close the connection (or abandon the dial). No
    /// input about it follows.
    Close { conn: ConnId },
    /// Open a TCP connection; answer with [`Cluster::connected`] or [`Cluster::dial_failed`].
    Dial { conn: ConnId, addr: SocketAddr },
    /// Multicast this beacon.
    Beacon(Vec<u8>),
    /// Decide whether `node` may join; answer with [`Cluster::admit`].
    AskAdmission { conn: ConnId, node: NodeInfo },
    /// Something the application hears about.
    Event(Event),
}

/// What the application hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node joined: both ends admitted each other.
    NodeAdded(NodeInfo),
    /// A member left, crashed or went silent.
    NodeRemoved(NodeInfo),
    /// A member's metadata changed.
    NodeUpdated(NodeInfo),
    /// A node admitted this one (it is the decider).
    NodeAccepted(NodeInfo),
    /// A node refused this one (it is the decider).
    NodeRejected(NodeInfo),
    /// The master changed: the new one (possibly this node), or nobody.
    NewMaster(Option<NodeInfo>),
    /// This node became master; `previous` is the master before it.
    Promotion { previous: Option<NodeInfo> },
    /// This node stopped being master; `new` is who is master now.
    Demotion { new: Option<NodeInfo> },
    /// A custom event this node joined arrived from member `from`.
    Delivery {
        from: NodeId,
        name: String,
        binary: bool,
        payload: Vec<u8>,
    },
    /// A connection failed; for logs and counters.
    ConnectionFailed {
        addr: SocketAddr,
        error: ConnectionError,
    },
}

/// Counters, for `stats()` and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Custom event messages sent (one per target) and received.
    pub messages_out: u64,
    pub messages_in: u64,
    /// Bytes written to and read from connections, all protocol traffic included.
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub handshakes_completed: u64,
    pub handshakes_failed: u64,
    pub frames_rejected: u64,
    pub connections_refused: u64,
    pub beacons_sent: u64,
    pub beacons_ignored: u64,
    pub nodes_rejected: u64,
}

enum Stage {
    Dialing,
    Handshake(Handshake),
    Introducing(Session),
    Admitting {
        session: Session,
        peer: NodeInfo,
        ours: Option<bool>,
        theirs: Option<bool>,
    },
    Member {
        session: Session,
        peer: NodeInfo,
        liveness: Liveness,
    },
    /// Transient, while a stage is being replaced.
    Moving,
}

struct Conn {
    role: Role,
    /// Dialed address, or the peer's source address for accepted connections.
    addr: SocketAddr,
    /// The node a dial was meant for, if known.
    expect: Option<NodeId>,
    decoder: FrameDecoder,
    stage: Stage,
    /// Dial, handshake or admission deadline; `None` once the node is a member.
    deadline: Option<Instant>,
    /// A subnet-scan dial.
    scan: bool,
    /// A member coming back on a new connection: admitted without asking again and
    /// without events.
    restore: bool,
    /// `node_accepted` was already emitted for this peer (by this or a replaced connection).
    accepted_told: bool,
    /// Custom events the peer has joined: only those are sent to it.
    subscriptions: BTreeSet<String>,
    /// The largest payload the peer accepts; a larger one would break the connection.
    peer_max_message: usize,
}

impl Conn {
    fn peer(&self) -> Option<&NodeInfo> {
        match &self.stage {
            Stage::Admitting { peer, .. } | Stage::Member { peer, .. } => Some(peer),
            _ => None,
        }
    }

    fn session(&mut self) -> Option<&mut Session> {
        match &mut self.stage {
            Stage::Introducing(s) => Some(s),
            Stage::Admitting { session, .. } | Stage::Member { session, .. } => Some(session),
            _ => None,
        }
    }

    fn is_member(&self) -> bool {
        matches!(self.stage, Stage::Member { .. })
    }

    /// The address the peer listens on, when known.
    fn listen_addr(&self) -> Option<SocketAddr> {
        match (self.peer(), self.role) {
            (Some(p), _) => Some(SocketAddr::new(p.ip, p.port)),
            (None, Role::Initiator) => Some(self.addr),
            (None, Role::Responder) => None,
        }
    }
}

/// A member whose connection dropped without a goodbye, being redialed.
struct Suspect {
    info: NodeInfo,
    deadline: Instant,
}

/// Why a member is no longer one.
enum Loss {
    /// It said goodbye.
    Left,
    /// Its connection dropped: suspect it and redial.
    Dropped,
    /// It is gone for good (silent too long, redial failed, replaced by a new id).
    Dead,
}

/// This node's state: its connections, its members, its discovery.
pub struct Cluster<R> {
    me: NodeInfo,
    config: Config,
    rng: R,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    outputs: VecDeque<Output>,
    discovery: Discovery,
    suspects: BTreeMap<NodeId, Suspect>,
    election: Election,
    /// Custom events this node has joined.
    joined: BTreeSet<String>,
    /// The last node known to be master, for `promotion`'s previous master.
    last_master: Option<NodeInfo>,
    /// Addresses that turned out to reach this very node (a seed naming us, say).
    own_addrs: BTreeSet<SocketAddr>,
    started: Option<Instant>,
    beacons_sent: usize,
    last_beacon: Option<Instant>,
    next_beacon: Option<Instant>,
    leaving: bool,
    stats: Stats,
    /// The connections of the message being sent (see [`Cluster::send_event`]).
    send_scratch: Vec<ConnId>,
}

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// A node with identity `me` (its `ip`/`port` are where it listens).
    pub fn new(mut me: NodeInfo, config: Config, rng: R) -> Self {
        me.master_eligible = config.election.eligible;
        Cluster {
            election: Election::new(me.id, config.election),
            joined: BTreeSet::new(),
            last_master: None,
            me,
            config,
            rng,
            conns: BTreeMap::new(),
            next_conn: 1,
            outputs: VecDeque::new(),
            discovery: Discovery::default(),
            suspects: BTreeMap::new(),
            own_addrs: BTreeSet::new(),
            started: None,
            beacons_sent: 0,
            last_beacon: None,
            next_beacon: None,
            leaving: false,
            stats: Stats::default(),
            send_scratch: Vec::new(),
        }
    }

    /// This node.
    pub fn me(&self) -> &NodeInfo {
        &self.me
    }

    /// Counters so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The current members, in id order (suspects included: they have not been removed).
    pub fn members(&self) -> Vec<NodeInfo> {
        let mut m: Vec<NodeInfo> = self
            .conns
            .values()
            .filter(|c| c.is_member())
            .filter_map(|c| c.peer().cloned())
            .chain(self.suspects.values().map(|s| s.info.clone()))
            .collect();
        m.sort_by_key(|n| n.id);
        m.dedup_by_key(|n| n.id);
        m
    }

    /// The largest payload member `id` accepts, while it is connected as a member.
    pub fn payload_limit(&self, id: NodeId) -> Option<usize> {
        self.conns
            .values()
            .find(|c| c.is_member() && c.peer().is_some_and(|p| p.id == id))
            .map(|c| c.peer_max_message)
    }

    /// Starts beaconing and discovery; call once the sockets are bound.
    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
        self.next_beacon = Some(now);
        self.discovery.start(now, &self.config.discovery);
        self.election.start(now);
        self.pump(now);
    }

    /// The master this node follows, if any.
    pub fn master(&self) -> Option<NodeId> {
        self.election.master()
    }

    /// Makes this node master, cluster-wide.
    pub fn promote(&mut self, now: Instant) -> Result<(), PromoteError> {
        self.election.promote(now)?;
        self.run_election(now);
        Ok(())
    }

    /// The next effect to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front();
        if let Some(Output::Transmit { bytes, .. }) = &out {
            self.stats.bytes_out += bytes.len() as u64;
        }
        out
    }

    /// When [`Cluster::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let detector = &self.config.detector;
        let conns = self.conns.values().filter_map(|c| match &c.stage {
            Stage::Member { liveness, .. } => Some(liveness.deadline(detector)),
            _ => c.deadline,
        });
        let suspects = self.suspects.values().map(|s| s.deadline);
        conns
            .chain(suspects)
            .chain(self.discovery.poll_timeout(&self.config.discovery))
            .chain(self.election.poll_timeout())
            .chain(self.next_beacon)
            .min()
    }

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline.is_some_and(|d| d <= now))
            .map(|(&id, _)| id)
            .collect();
        for conn in expired {
            let dialing = matches!(self.conns[&conn].stage, Stage::Dialing);
            if dialing {
                self.dial_failed(now, conn);
                self.outputs.push_back(Output::Close { conn });
            } else {
                self.fail(now, conn, ConnectionError::HandshakeTimeout);
            }
        }
        self.heartbeats(now);
        let overdue: Vec<NodeId> = self
            .suspects
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(&id, _)| id)
            .collect();
        for id in overdue {
            self.give_up_suspect(now, id);
        }
        if self.leaving {
            return;
        }
        self.election.handle_timeout(now);
        self.run_election(now);
        self.pump(now);
        if self.next_beacon.is_some_and(|t| t <= now) {
            self.send_beacon(now);
        }
    }

    /// Sends due heartbeats and removes members silent for too long.
    fn heartbeats(&mut self, now: Instant) {
        let detector = self.config.detector;
        let mut dead = Vec::new();
        for (&conn, c) in self.conns.iter_mut() {
            let Stage::Member {
                session, liveness, ..
            } = &mut c.stage
            else {
                continue;
            };
            if liveness.is_dead(now, &detector) {
                dead.push(conn);
            } else if liveness.ping_due(now, &detector) {
                if let Ok(bytes) = session.seal(&Message::Ping.encode()) {
                    self.outputs.push_back(Output::Transmit { conn, bytes });
                }
            }
        }
        for conn in dead {
            self.lose(now, conn, Loss::Dead);
        }
    }

    /// Carries out the dials discovery wants now.
    fn pump(&mut self, now: Instant) {
        let scans = self
            .conns
            .values()
            .filter(|c| c.scan && matches!(c.stage, Stage::Dialing))
            .count();
        let alone = !self.conns.values().any(|c| c.is_member());
        for t in self
            .discovery
            .due(now, &self.config.discovery, scans, alone)
        {
            if !self.knows(t.expect, t.addr) {
                self.dial(now, t);
            }
        }
    }

    /// A datagram arrived on the discovery socket from `from`.
    pub fn handle_beacon(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.leaving {
            return;
        }
        let key = self.config.cluster_key.as_ref();
        let Some(Beacon { id, port }) = beacon::decode(datagram, &self.config.cluster, key) else {
            self.stats.beacons_ignored += 1;
            return;
        };
        self.learn(now, id, SocketAddr::new(from.ip(), port));
    }

    /// Node `id` listens at `addr` (from a beacon or a member list).
    fn learn(&mut self, now: Instant, id: NodeId, addr: SocketAddr) {
        if id == self.me.id || self.knows(Some(id), addr) {
            return;
        }
        let cfg = &self.config.discovery;
        match self.discovery.learn(now, cfg, self.me.id, id, addr) {
            Some(Learned::Dial) => self.dial(
                now,
                Target {
                    addr,
                    expect: Some(id),
                    scan: false,
                },
            ),
            Some(Learned::Announce) => {
                // It has the smaller id and dials us once it hears us: answer now rather
                // than at our next periodic beacon.
                let soonest = self
                    .last_beacon
                    .map_or(now, |t| (t + self.config.beacon_min_gap).max(now));
                if self.next_beacon.is_none_or(|t| t > soonest) {
                    self.next_beacon = Some(soonest);
                }
            }
            None => {}
        }
    }

    /// True if we are, or are connecting to, node `id` or the node listening at `addr`.
    fn knows(&self, id: Option<NodeId>, addr: SocketAddr) -> bool {
        if addr == SocketAddr::new(self.me.ip, self.me.port) || self.own_addrs.contains(&addr) {
            return true;
        }
        if id.is_some_and(|id| self.suspects.contains_key(&id)) {
            return true;
        }
        self.conns.values().any(|c| {
            let same_id = id.is_some() && (c.expect == id || c.peer().map(|p| p.id) == id);
            same_id || c.listen_addr() == Some(addr)
        })
    }

    fn dial(&mut self, now: Instant, target: Target) {
        if self.leaving {
            return;
        }
        // Counted apart from incoming ones, so stalled peers cannot stop us dialing.
        let outgoing = self
            .conns
            .values()
            .filter(|c| c.role == Role::Initiator && c.deadline.is_some())
            .count();
        if outgoing >= self.config.max_pending_handshakes {
            self.stats.connections_refused += 1;
            return;
        }
        let timeout = if target.scan {
            self.config.discovery.scan_dial_timeout
        } else {
            self.config.dial_timeout
        };
        let conn = self.alloc_conn();
        self.conns.insert(
            conn,
            Conn {
                role: Role::Initiator,
                addr: target.addr,
                expect: target.expect,
                decoder: FrameDecoder::new(MAX_HANDSHAKE_FRAME),
                stage: Stage::Dialing,
                deadline: Some(now + timeout),
                scan: target.scan,
                restore: false,
                accepted_told: false,
                subscriptions: BTreeSet::new(),
                peer_max_message: 0,
            },
        );
        self.outputs.push_back(Output::Dial {
            conn,
            addr: target.addr,
        });
    }

    fn pending_handshakes(&self) -> usize {
        self.conns.values().filter(|c| c.deadline.is_some()).count()
    }

    fn alloc_conn(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// A dial succeeded.
    pub fn connected(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            self.outputs.push_back(Output::Close { conn });
            return;
        };
        if !matches!(c.stage, Stage::Dialing) {
            return;
        }
        let key = self.config.cluster_key.as_ref();
        let (hs, hello) =
            Handshake::start(Role::Initiator, &self.config.cluster, key, &mut self.rng);
        c.stage = Stage::Handshake(hs);
        c.deadline = Some(now + self.config.handshake_timeout);
        self.outputs.push_back(Output::Transmit {
            conn,
            bytes: wire::frame(&hello),
        });
        if c.scan {
            self.pump(now);
        }
    }

    /// A dial failed (refused, unreachable, timed out).
    pub fn dial_failed(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(id) = c.expect {
            let backoff = self.config.discovery.redial_backoff;
            self.discovery.failed(now, id, backoff);
            // A suspect whose redial is refused has crashed or stopped: remove it now.
            if self.suspects.contains_key(&id) {
                self.give_up_suspect(now, id);
            }
        }
        if c.scan {
            self.pump(now);
        }
    }

    /// A peer connected to our listener. Returns the id to use for it, or `None` if the
    /// connection must be closed at once (too many handshakes pending, or leaving).
    ///
    /// Stalled handshakes cannot lock joins out: one IP address may hold at most
    /// `max_pending_per_ip` of them, and when every slot is taken the oldest incoming one
    /// is closed to make room, so a newcomer always gets its turn.
    pub fn accept(&mut self, now: Instant, addr: SocketAddr) -> Option<ConnId> {
        let incoming = |c: &Conn| c.role == Role::Responder && c.deadline.is_some();
        let from_ip = self
            .conns
            .values()
            .filter(|c| incoming(c) && c.addr.ip() == addr.ip())
            .count();
        if self.leaving || from_ip >= self.config.max_pending_per_ip {
            self.stats.connections_refused += 1;
            return None;
        }
        if self.pending_handshakes() >= self.config.max_pending_handshakes {
            let oldest = self
                .conns
                .iter()
                .filter(|(_, c)| incoming(c) && !matches!(c.stage, Stage::Admitting { .. }))
                .min_by_key(|(_, c)| c.deadline)
                .map(|(&k, _)| k);
            let Some(oldest) = oldest else {
                self.stats.connections_refused += 1;
                return None;
            };
            self.stats.connections_refused += 1;
            self.close(oldest);
        }
        let conn = self.alloc_conn();
        let key = self.config.cluster_key.as_ref();
        let (hs, hello) =
            Handshake::start(Role::Responder, &self.config.cluster, key, &mut self.rng);
        self.conns.insert(
            conn,
            Conn {
                role: Role::Responder,
                addr,
                expect: None,
                decoder: FrameDecoder::new(MAX_HANDSHAKE_FRAME),
                stage: Stage::Handshake(hs),
                deadline: Some(now + self.config.handshake_timeout),
                scan: false,
                restore: false,
                accepted_told: false,
                subscriptions: BTreeSet::new(),
                peer_max_message: 0,
            },
        );
        self.outputs.push_back(Output::Transmit {
            conn,
            bytes: wire::frame(&hello),
        });
        Some(conn)
    }

    /// Bytes arrived on a connection.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        self.stats.bytes_in += bytes.len() as u64;
        c.decoder.push(bytes);
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(e) = self.handle_frame(now, conn, &frame) {
                        self.fail(now, conn, e);
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    self.fail(now, conn, e.into());
                    return;
                }
            }
        }
    }

    /// The connection ended (peer closed it, reset, or an I/O error).
    pub fn connection_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if let Err(e) = c.decoder.finish() {
            self.stats.frames_rejected += 1;
            self.report(c.addr, e.into());
        }
        self.end(now, conn, Loss::Dropped);
    }

    /// The application's verdict on an [`Output::AskAdmission`].
    pub fn admit(&mut self, now: Instant, conn: ConnId, accept: bool) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Stage::Admitting { session, ours, .. } = &mut c.stage else {
            return;
        };
        if ours.is_some() {
            return;
        }
        *ours = Some(accept);
        match session.seal(&Message::Verdict { accepted: accept }.encode()) {
            Ok(bytes) => self.outputs.push_back(Output::Transmit { conn, bytes }),
            Err(e) => return self.fail(now, conn, e.into()),
        }
        if !accept {
            // A refused node learns nothing more and is heard no more.
            self.stats.nodes_rejected += 1;
            self.close(conn);
            return;
        }
        self.check_admitted(now, conn);
    }

    /// Starts delivery of custom event `name` and tells every member to send it to us.
    /// Joining an event joined already changes nothing.
    pub fn subscribe(&mut self, now: Instant, name: &str) -> Result<(), SubscribeError> {
        if name.is_empty() || name.len() > MAX_EVENT_NAME {
            return Err(SubscribeError::InvalidName);
        }
        if self.joined.contains(name) {
            return Ok(());
        }
        if self.joined.len() >= MAX_JOINED {
            return Err(SubscribeError::TooMany { max: MAX_JOINED });
        }
        if self.joined.insert(name.to_owned()) {
            self.send_all(now, &Message::Subscribe(name.to_owned()));
        }
        Ok(())
    }

    /// Stops delivery of custom event `name`.
    pub fn unsubscribe(&mut self, now: Instant, name: &str) {
        if self.joined.remove(name) {
            self.send_all(now, &Message::Unsubscribe(name.to_owned()));
        }
    }

    /// Sends custom event `name` to `targets` (every member if `None`), skipping members
    /// that have not joined it. Returns the connections it was queued on. Either every
    /// target gets it or, on error, nobody does.
    pub fn send_event(
        &mut self,
        now: Instant,
        name: &str,
        binary: bool,
        payload: &[u8],
        targets: Option<&[NodeId]>,
    ) -> Result<&[ConnId], SendError> {
        if name.is_empty() || name.len() > MAX_EVENT_NAME {
            return Err(SendError::InvalidName);
        }
        if payload.len() > self.config.max_message {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: self.config.max_message,
            });
        }
        // Called for every message: the connection list is kept between calls, not
        // allocated each time.
        let mut conns = std::mem::take(&mut self.send_scratch);
        conns.clear();
        let wanted = |c: &Conn| c.is_member() && c.subscriptions.contains(name);
        match targets {
            None => conns.extend(
                self.conns
                    .iter()
                    .filter(|(_, c)| wanted(c))
                    .map(|(&k, _)| k),
            ),
            Some(ids) => {
                for &id in ids {
                    let member = self
                        .conns
                        .iter()
                        .find(|(_, c)| c.is_member() && c.peer().is_some_and(|p| p.id == id));
                    match member {
                        Some((&k, c)) if wanted(c) => conns.push(k),
                        Some(_) => {}
                        // A suspect is still a member: its connection is being mended, and
                        // what is sent meanwhile is lost with the old connection.
                        None if self.suspects.contains_key(&id) => {}
                        None => {
                            self.send_scratch = conns;
                            return Err(SendError::UnknownTarget(id.to_string()));
                        }
                    }
                }
                if ids.len() > 1 {
                    conns.sort_unstable();
                    conns.dedup();
                }
            }
        }
        // A receiver closes a connection carrying more than it accepts: refuse up front.
        if let Some(c) = conns
            .iter()
            .map(|k| &self.conns[k])
            .find(|c| payload.len() > c.peer_max_message)
        {
            let max = c.peer_max_message;
            self.send_scratch = conns;
            return Err(SendError::TooLarge {
                len: payload.len(),
                max,
            });
        }
        let head = message::event_head(name, binary);
        let parts = [&head[..], name.as_bytes(), payload];
        let mut sent = 0;
        for i in 0..conns.len() {
            let conn = conns[i];
            let c = self.conns.get_mut(&conn).expect("collected above");
            match c
                .session()
                .expect("members have sessions")
                .seal_parts(&parts)
            {
                Ok(bytes) => {
                    self.outputs.push_back(Output::Transmit { conn, bytes });
                    self.stats.messages_out += 1;
                    conns[sent] = conn;
                    sent += 1;
                }
                Err(e) => self.fail(now, conn, e.into()),
            }
        }
        conns.truncate(sent);
        self.send_scratch = conns;
        Ok(&self.send_scratch)
    }

    /// Sends a message to every member.
    fn send_all(&mut self, now: Instant, msg: &Message) {
        let members: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_member())
            .map(|(&k, _)| k)
            .collect();
        for conn in members {
            self.send(now, conn, msg);
        }
    }

    /// Replaces this node's metadata (JSON text) and tells every peer.
    pub fn set_metadata(&mut self, _now: Instant, metadata: String) {
        self.me.metadata = metadata;
        let update = Message::Update {
            metadata: self.me.metadata.clone(),
        }
        .encode();
        // Peers still being admitted got the old metadata in our introduction.
        for (&conn, c) in self.conns.iter_mut() {
            if matches!(c.stage, Stage::Admitting { .. } | Stage::Member { .. }) {
                if let Ok(bytes) = c.session().unwrap().seal(&update) {
                    self.outputs.push_back(Output::Transmit { conn, bytes });
                }
            }
        }
    }

    /// Leaves the cluster: tells every peer, then closes every connection. Beacons, dials
    /// and accepts stop.
    pub fn leave(&mut self, _now: Instant) {
        self.leaving = true;
        self.next_beacon = None;
        self.discovery.stop();
        self.suspects.clear();
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            let c = self.conns.get_mut(&conn).unwrap();
            let introduced = matches!(c.stage, Stage::Admitting { .. } | Stage::Member { .. });
            if introduced {
                if let Ok(bytes) = c.session().unwrap().seal(&Message::Leave.encode()) {
                    self.outputs.push_back(Output::Transmit { conn, bytes });
                }
            }
            self.close(conn);
        }
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        conn: ConnId,
        frame: &[u8],
    ) -> Result<(), ConnectionError> {
        let max_frame = self.config.max_frame;
        let c = self.conns.get_mut(&conn).expect("caller checked");
        if let Stage::Handshake(_) = c.stage {
            let Stage::Handshake(hs) = std::mem::replace(&mut c.stage, Stage::Moving) else {
                unreachable!()
            };
            let (mut session, finished) = hs.finish(frame)?;
            let intro = Message::Introduce {
                id: self.me.id,
                host_name: self.me.host_name.clone(),
                port: self.me.port,
                metadata: self.me.metadata.clone(),
                master_eligible: self.me.master_eligible,
                max_message: u32::try_from(self.config.max_message).unwrap_or(u32::MAX),
            };
            let intro = session.seal(&intro.encode())?;
            c.decoder.set_max_len(max_frame);
            c.stage = Stage::Introducing(session);
            self.stats.handshakes_completed += 1;
            self.outputs.push_back(Output::Transmit {
                conn,
                bytes: finished,
            });
            self.outputs
                .push_back(Output::Transmit { conn, bytes: intro });
            return Ok(());
        }
        let Some(session) = c.session() else {
            return Err(ConnectionError::Protocol("data before the handshake"));
        };
        let Some(plain) = session.open(frame)? else {
            return Ok(());
        };
        if let Stage::Member { liveness, .. } = &mut c.stage {
            liveness.heard(now);
        }
        let msg = Message::decode(&plain, self.config.max_metadata)?;
        self.handle_message(now, conn, msg)
    }

    fn handle_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: Message,
    ) -> Result<(), ConnectionError> {
        let c = self.conns.get_mut(&conn).expect("caller checked");
        match (&mut c.stage, msg) {
            (
                Stage::Introducing(_),
                Message::Introduce {
                    id,
                    host_name,
                    port,
                    metadata,
                    master_eligible,
                    max_message,
                },
            ) => {
                c.peer_max_message = max_message as usize;
                let peer = NodeInfo {
                    id,
                    host_name,
                    ip: c.addr.ip(),
                    port,
                    metadata,
                    master_eligible,
                };
                self.introduced(now, conn, peer)
            }
            (Stage::Admitting { theirs, peer, .. }, Message::Verdict { accepted }) => {
                if theirs.is_some() {
                    return Err(ConnectionError::Protocol("second verdict"));
                }
                *theirs = Some(accepted);
                let peer = peer.clone();
                if accepted {
                    if !c.restore && !c.accepted_told {
                        c.accepted_told = true;
                        self.push_event(Event::NodeAccepted(peer));
                    }
                    self.check_admitted(now, conn);
                } else {
                    self.push_event(Event::NodeRejected(peer.clone()));
                    // Do not knock again until its next beacon period.
                    let wait = self.config.beacon_interval;
                    self.discovery.failed(now, peer.id, wait);
                    self.close(conn);
                }
                Ok(())
            }
            (Stage::Admitting { .. } | Stage::Member { .. }, Message::Leave) => {
                self.end(now, conn, Loss::Left);
                Ok(())
            }
            (Stage::Admitting { peer, .. }, Message::Update { metadata }) => {
                peer.metadata = metadata;
                Ok(())
            }
            (Stage::Member { peer, .. }, Message::Update { metadata }) => {
                peer.metadata = metadata;
                let peer = peer.clone();
                self.push_event(Event::NodeUpdated(peer));
                Ok(())
            }
            (Stage::Member { .. }, Message::Ping) => Ok(()),
            (
                Stage::Member { peer, .. },
                Message::Event {
                    name,
                    binary,
                    payload,
                },
            ) => {
                // Sent before our Unsubscribe reached the peer: dropped here, never emitted.
                if self.joined.contains(&name) {
                    self.stats.messages_in += 1;
                    let from = peer.id;
                    self.push_event(Event::Delivery {
                        from,
                        name,
                        binary,
                        payload,
                    });
                }
                Ok(())
            }
            (Stage::Member { .. }, Message::Subscribe(name)) => {
                if c.subscriptions.len() >= MAX_JOINED {
                    return Err(ConnectionError::Protocol("too many joined events"));
                }
                c.subscriptions.insert(name);
                Ok(())
            }
            (Stage::Member { .. }, Message::Unsubscribe(name)) => {
                c.subscriptions.remove(&name);
                Ok(())
            }
            (Stage::Member { .. }, Message::Subscriptions(names)) => {
                c.subscriptions = names.into_iter().collect();
                Ok(())
            }
            (Stage::Member { peer, .. }, Message::Election(m)) => {
                let from = peer.id;
                self.election.handle(now, from, m);
                self.run_election(now);
                Ok(())
            }
            (Stage::Member { .. }, Message::Members(list)) => {
                for (id, addr) in list {
                    self.learn(now, id, addr);
                }
                Ok(())
            }
            _ => Err(ConnectionError::Protocol("unexpected message")),
        }
    }

    /// The peer on `conn` said who it is.
    fn introduced(
        &mut self,
        now: Instant,
        conn: ConnId,
        peer: NodeInfo,
    ) -> Result<(), ConnectionError> {
        let id = peer.id;
        let c = self.conns.get_mut(&conn).expect("caller checked");
        if id == self.me.id {
            if c.role == Role::Initiator {
                self.own_addrs.insert(c.addr);
            }
            return Err(ConnectionError::Protocol("connected to itself"));
        }
        if let Some(expected) = c.expect.filter(|&e| e != id) {
            // Another node now listens where `expected` did: it restarted with a new id,
            // or the address was reused. The old one is gone for good.
            c.expect = None;
            if let Some(s) = self.suspects.remove(&expected) {
                self.removed(now, s.info);
            }
            self.discovery.forget(expected);
        }
        let c = self.conns.get_mut(&conn).expect("still there");
        let Stage::Introducing(session) = std::mem::replace(&mut c.stage, Stage::Moving) else {
            unreachable!()
        };
        c.stage = Stage::Admitting {
            session,
            peer: peer.clone(),
            ours: None,
            theirs: None,
        };
        c.deadline = Some(now + self.config.admission_timeout);
        self.discovery.connected(id);
        if self.suspects.get(&id).is_some_and(|s| s.info.ip == peer.ip) {
            // A suspect is back: the member carries on, no event either way.
            self.suspects.remove(&id);
            self.conns.get_mut(&conn).unwrap().restore = true;
        }
        if !self.resolve_duplicate(now, conn, id) {
            return Ok(());
        }
        if self.conns[&conn].restore {
            self.admit(now, conn, true);
        } else {
            self.outputs
                .push_back(Output::AskAdmission { conn, node: peer });
        }
        Ok(())
    }

    /// Applies the one-connection-per-pair rule when `conn` has introduced node `id`.
    /// Returns false if `conn` itself lost and was closed.
    fn resolve_duplicate(&mut self, _now: Instant, conn: ConnId, id: NodeId) -> bool {
        let Some((&other, _)) = self
            .conns
            .iter()
            .find(|(&k, c)| k != conn && c.peer().is_some_and(|p| p.id == id))
        else {
            return true;
        };
        let preferred = if self.me.id < id {
            Role::Initiator
        } else {
            Role::Responder
        };
        let this_role = self.conns[&conn].role;
        let other_role = self.conns[&other].role;
        // Same role on both (a redial while an old connection lingers): the newer wins.
        let keep_this = this_role == preferred || this_role == other_role;
        let (winner, loser) = if keep_this {
            (conn, other)
        } else {
            (other, conn)
        };
        // The winner inherits what the loser had told the application, so the pair's
        // events happen once.
        let (member, restore, told) = {
            let l = &self.conns[&loser];
            (l.is_member(), l.restore, l.accepted_told)
        };
        let w = self.conns.get_mut(&winner).unwrap();
        w.restore |= member || restore;
        w.accepted_told |= told;
        self.close(loser);
        keep_this
    }

    fn check_admitted(&mut self, now: Instant, conn: ConnId) {
        let c = self.conns.get_mut(&conn).expect("caller checked");
        let Stage::Admitting {
            ours: Some(true),
            theirs: Some(true),
            ..
        } = &c.stage
        else {
            return;
        };
        let Stage::Admitting { session, peer, .. } = std::mem::replace(&mut c.stage, Stage::Moving)
        else {
            unreachable!()
        };
        c.deadline = None;
        c.stage = Stage::Member {
            session,
            peer: peer.clone(),
            liveness: Liveness::new(now, &self.config.detector),
        };
        let restore = c.restore;
        c.restore = false;
        // Tell the newcomer whom to connect to, and everyone else about the newcomer.
        let others: Vec<(NodeId, SocketAddr)> = self
            .members()
            .into_iter()
            .filter(|m| m.id != peer.id)
            .take(MAX_MEMBERS)
            .map(|m| (m.id, SocketAddr::new(m.ip, m.port)))
            .collect();
        self.send(now, conn, &Message::Members(others));
        let joined = Message::Subscriptions(self.joined.iter().cloned().collect());
        self.send(now, conn, &joined);
        let newcomer = Message::Members(vec![(peer.id, SocketAddr::new(peer.ip, peer.port))]);
        let member_conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(&k, c)| k != conn && c.is_member())
            .map(|(&k, _)| k)
            .collect();
        for other in member_conns {
            self.send(now, other, &newcomer);
        }
        if !restore {
            self.election
                .member_added(now, peer.id, peer.master_eligible);
            self.push_event(Event::NodeAdded(peer));
            self.run_election(now);
        }
    }

    /// Tells the application and the election that a member is gone.
    fn removed(&mut self, now: Instant, info: NodeInfo) {
        let id = info.id;
        self.push_event(Event::NodeRemoved(info));
        self.election.member_removed(now, id);
        self.run_election(now);
    }

    /// Carries out what the election decided.
    fn run_election(&mut self, now: Instant) {
        while let Some(effect) = self.election.poll_effect() {
            match effect {
                Effect::SendAll(m) => self.send_all(now, &Message::Election(m)),
                Effect::SendTo(id, m) => {
                    let conn = self
                        .conns
                        .iter()
                        .find(|(_, c)| c.is_member() && c.peer().is_some_and(|p| p.id == id))
                        .map(|(&k, _)| k);
                    if let Some(conn) = conn {
                        self.send(now, conn, &Message::Election(m));
                    }
                }
                Effect::MasterChanged { previous, current } => {
                    let current_info = current.and_then(|id| self.info_of(id));
                    self.push_event(Event::NewMaster(current_info.clone()));
                    if current == Some(self.me.id) {
                        let previous = self.last_master.clone().filter(|m| m.id != self.me.id);
                        self.push_event(Event::Promotion { previous });
                    }
                    if previous == Some(self.me.id) {
                        self.push_event(Event::Demotion {
                            new: current_info.clone(),
                        });
                    }
                    if current_info.is_some() {
                        self.last_master = current_info;
                    }
                }
            }
        }
    }

    /// What we know of node `id`: ourselves, a member, a suspect or the last master.
    fn info_of(&self, id: NodeId) -> Option<NodeInfo> {
        if id == self.me.id {
            return Some(self.me.clone());
        }
        self.conns
            .values()
            .filter_map(|c| c.peer())
            .find(|p| p.id == id)
            .or_else(|| self.suspects.get(&id).map(|s| &s.info))
            .or(self.last_master.as_ref().filter(|m| m.id == id))
            .cloned()
    }

    /// Seals and queues a message on a connection with a session.
    fn send(&mut self, now: Instant, conn: ConnId, msg: &Message) {
        let Some(session) = self.conns.get_mut(&conn).and_then(|c| c.session()) else {
            return;
        };
        match session.seal(&msg.encode()) {
            Ok(bytes) => self.outputs.push_back(Output::Transmit { conn, bytes }),
            Err(e) => self.fail(now, conn, e.into()),
        }
    }

    /// Removes a connection that ended; if it carried a member, deals with the loss.
    fn end(&mut self, now: Instant, conn: ConnId, loss: Loss) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.is_member() {
            return self.lose(now, conn, loss);
        }
        // A suspect's redial that ends before the peer introduced itself: a crashing
        // process can accept a connection in its last instant and reset it right after.
        // (A peer that closes our redial as a duplicate has introduced itself first, so
        // its suspect's own deadline decides then.)
        let unproven = matches!(
            c.stage,
            Stage::Dialing | Stage::Handshake(_) | Stage::Introducing(_)
        );
        let expected = c.expect;
        self.close(conn);
        if let Some(id) = expected.filter(|id| unproven && self.suspects.contains_key(id)) {
            self.give_up_suspect(now, id);
        }
    }

    /// A member's connection is gone.
    fn lose(&mut self, now: Instant, conn: ConnId, loss: Loss) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.outputs.push_back(Output::Close { conn });
        let Stage::Member { peer, .. } = c.stage else {
            return;
        };
        match loss {
            Loss::Dropped if !self.leaving => {
                let addr = SocketAddr::new(peer.ip, peer.port);
                self.suspects.insert(
                    peer.id,
                    Suspect {
                        info: peer.clone(),
                        deadline: now + self.config.suspect_timeout,
                    },
                );
                self.dial(
                    now,
                    Target {
                        addr,
                        expect: Some(peer.id),
                        scan: false,
                    },
                );
            }
            Loss::Left => self.removed(now, peer),
            Loss::Dropped | Loss::Dead => {
                let addr = SocketAddr::new(peer.ip, peer.port);
                self.discovery
                    .lost(now, &self.config.discovery, peer.id, addr);
                self.removed(now, peer);
            }
        }
    }

    /// A suspect did not come back in time: remove it.
    fn give_up_suspect(&mut self, now: Instant, id: NodeId) {
        let Some(s) = self.suspects.remove(&id) else {
            return;
        };
        let addr = SocketAddr::new(s.info.ip, s.info.port);
        self.discovery.lost(now, &self.config.discovery, id, addr);
        self.removed(now, s.info);
    }

    fn close(&mut self, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.outputs.push_back(Output::Close { conn });
        }
    }

    fn fail(&mut self, now: Instant, conn: ConnId, error: ConnectionError) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let addr = c.addr;
        match &error {
            ConnectionError::Handshake(_) | ConnectionError::HandshakeTimeout => {
                self.stats.handshakes_failed += 1
            }
            ConnectionError::Frame(_) | ConnectionError::Record(_) | ConnectionError::Decode(_) => {
                self.stats.frames_rejected += 1
            }
            _ => {}
        }
        if let Some(id) = c.expect.or(c.peer().map(|p| p.id)) {
            let backoff = self.config.discovery.redial_backoff;
            self.discovery.failed(now, id, backoff);
        }
        self.report(addr, error);
        self.end(now, conn, Loss::Dropped);
    }

    fn report(&mut self, addr: SocketAddr, error: ConnectionError) {
        self.push_event(Event::ConnectionFailed { addr, error });
    }

    fn push_event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }

    fn send_beacon(&mut self, now: Instant) {
        let bytes = beacon::encode(
            &self.config.cluster,
            self.config.cluster_key.as_ref(),
            Beacon {
                id: self.me.id,
                port: self.me.port,
            },
        );
        self.outputs.push_back(Output::Beacon(bytes));
        self.stats.beacons_sent += 1;
        self.beacons_sent += 1;
        self.last_beacon = Some(now);
        let started = self.started.unwrap_or(now);
        let burst = &self.config.beacon_burst;
        self.next_beacon = Some(match burst.get(self.beacons_sent) {
            Some(&offset) if started + offset > now => started + offset,
            _ => now + self.jittered(self.config.beacon_interval),
        });
    }

    /// The interval ±10%, so nodes started together do not beacon in lockstep forever.
    fn jittered(&mut self, d: Duration) -> Duration {
        let tenth = d / 10;
        let span = tenth.as_millis().max(1) as u64 * 2;
        d - tenth + Duration::from_millis(self.rng.next_u64() % span)
    }
}
