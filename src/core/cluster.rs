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
//! One connection per pair: on a beacon only the node with the smaller id dials (the other
//! answers with a beacon of its own so it is found at once). If both dial anyway, both ends
//! keep the connection initiated by the smaller id, a rule each end evaluates alike.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::beacon::{self, Beacon};
use super::config::Config;
use super::crypto::{Handshake, Role, Session};
use super::error::{ConnectionError, FrameError};
use super::message::Message;
use super::node::{NodeId, NodeInfo};
use super::wire::{FrameDecoder, MAX_HANDSHAKE_FRAME};

/// The core's name for a connection; the driver maps it to a socket.
pub type ConnId = u64;

/// An effect for the driver to carry out.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Write these bytes to the connection, in order.
    Transmit { conn: ConnId, bytes: Vec<u8> },
    /// Flush what was transmitted, then close the connection. No input about it follows.
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
    /// A member left or its connection was lost.
    NodeRemoved(NodeInfo),
    /// A node admitted this one (it is the decider).
    NodeAccepted(NodeInfo),
    /// A node refused this one (it is the decider).
    NodeRejected(NodeInfo),
    /// A connection failed before or after the handshake; for logs and counters.
    ConnectionFailed {
        addr: SocketAddr,
        error: ConnectionError,
    },
}

/// Counters, for `stats()` and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub handshakes_completed: u64,
    pub handshakes_failed: u64,
    pub frames_rejected: u64,
    pub connections_refused: u64,
    pub beacons_sent: u64,
    pub beacons_ignored: u64,
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
    },
}

struct Conn {
    role: Role,
    addr: SocketAddr,
    /// The node a dial was meant for, known from its beacon.
    expect: Option<NodeId>,
    decoder: FrameDecoder,
    stage: Stage,
    /// Handshake deadline; `None` once the node is a member.
    deadline: Option<Instant>,
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
}

/// This node's state: its connections, its members, its beacons.
pub struct Cluster<R> {
    me: NodeInfo,
    config: Config,
    rng: R,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: ConnId,
    outputs: VecDeque<Output>,
    /// When each node we heard but are not connected to was first heard; lets the node
    /// with the larger id dial after all if the smaller one never does.
    heard: BTreeMap<NodeId, (Instant, SocketAddr)>,
    /// Nodes not to be dialed again before the given time.
    backoff: BTreeMap<NodeId, Instant>,
    started: Option<Instant>,
    beacons_sent: usize,
    last_beacon: Option<Instant>,
    next_beacon: Option<Instant>,
    leaving: bool,
    stats: Stats,
}

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// A node with identity `me` (its `ip`/`port` are where it listens).
    pub fn new(me: NodeInfo, config: Config, rng: R) -> Self {
        Cluster {
            me,
            config,
            rng,
            conns: BTreeMap::new(),
            next_conn: 1,
            outputs: VecDeque::new(),
            heard: BTreeMap::new(),
            backoff: BTreeMap::new(),
            started: None,
            beacons_sent: 0,
            last_beacon: None,
            next_beacon: None,
            leaving: false,
            stats: Stats::default(),
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

    /// The current members, in id order.
    pub fn members(&self) -> Vec<NodeInfo> {
        let mut m: Vec<NodeInfo> = self
            .conns
            .values()
            .filter(|c| c.is_member())
            .filter_map(|c| c.peer().cloned())
            .collect();
        m.sort_by_key(|n| n.id);
        m
    }

    /// Starts beaconing; call once the sockets are bound.
    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
        self.next_beacon = Some(now);
    }

    /// The next effect to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Cluster::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadlines = self.conns.values().filter_map(|c| c.deadline);
        let fallback = self
            .heard
            .values()
            .map(|&(t, _)| t + self.config.beacon_interval * 2);
        deadlines.chain(fallback).chain(self.next_beacon).min()
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
            self.fail(now, conn, ConnectionError::HandshakeTimeout);
        }
        if self.leaving {
            return;
        }
        // A node that has heard a smaller id for two beacon periods without being dialed
        // dials it itself (the smaller one may not reach us, or missed our beacons).
        let overdue: Vec<(NodeId, SocketAddr)> = self
            .heard
            .iter()
            .filter(|(_, &(t, _))| t + self.config.beacon_interval * 2 <= now)
            .map(|(&id, &(_, addr))| (id, addr))
            .collect();
        for (id, addr) in overdue {
            self.heard.remove(&id);
            self.dial(now, id, addr);
        }
        if self.next_beacon.is_some_and(|t| t <= now) {
            self.send_beacon(now);
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
        if id == self.me.id || self.knows(id) {
            return;
        }
        let addr = SocketAddr::new(from.ip(), port);
        let (first_heard, _) = *self.heard.entry(id).or_insert((now, addr));
        let overdue = first_heard + self.config.beacon_interval * 2 <= now;
        if self.me.id < id || overdue {
            self.dial(now, id, addr);
        } else {
            // The newcomer has the smaller id and dials us once it hears us: answer now
            // rather than at our next periodic beacon.
            let soonest = self
                .last_beacon
                .map_or(now, |t| (t + self.config.beacon_min_gap).max(now));
            if self.next_beacon.is_none_or(|t| t > soonest) {
                self.next_beacon = Some(soonest);
            }
        }
    }

    /// True if a connection to `id` exists or is being made.
    fn knows(&self, id: NodeId) -> bool {
        self.conns
            .values()
            .any(|c| c.expect == Some(id) || c.peer().is_some_and(|p| p.id == id))
    }

    fn dial(&mut self, now: Instant, id: NodeId, addr: SocketAddr) {
        if self.backoff.get(&id).is_some_and(|&t| t > now) {
            return;
        }
        if self.pending_handshakes() >= self.config.max_pending_handshakes {
            self.stats.connections_refused += 1;
            return;
        }
        self.heard.remove(&id);
        let conn = self.alloc_conn();
        self.conns.insert(
            conn,
            Conn {
                role: Role::Initiator,
                addr,
                expect: Some(id),
                decoder: FrameDecoder::new(MAX_HANDSHAKE_FRAME),
                stage: Stage::Dialing,
                deadline: Some(now + self.config.handshake_timeout),
            },
        );
        self.outputs.push_back(Output::Dial { conn, addr });
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
            bytes: super::wire::frame(&hello),
        });
    }

    /// A dial failed (refused, unreachable, timed out).
    pub fn dial_failed(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(id) = c.expect {
                self.backoff.insert(id, now + self.config.redial_backoff);
            }
        }
    }

    /// A peer connected to our listener. Returns the id to use for it, or `None` if the
    /// connection must be closed at once (too many handshakes pending, or leaving).
    pub fn accept(&mut self, now: Instant, addr: SocketAddr) -> Option<ConnId> {
        if self.leaving || self.pending_handshakes() >= self.config.max_pending_handshakes {
            self.stats.connections_refused += 1;
            return None;
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
            },
        );
        self.outputs.push_back(Output::Transmit {
            conn,
            bytes: super::wire::frame(&hello),
        });
        Some(conn)
    }

    /// Bytes arrived on a connection.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
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
        self.drop_conn(now, conn);
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
        let frame = session.seal(&Message::Verdict { accepted: accept }.encode());
        match frame {
            Ok(bytes) => self.outputs.push_back(Output::Transmit { conn, bytes }),
            Err(e) => return self.fail(now, conn, e.into()),
        }
        if !accept {
            // A refused node learns nothing more and is heard no more.
            self.close(conn);
            return;
        }
        self.check_admitted(conn);
    }

    /// Leaves the cluster: tells every peer, then closes every connection. Beacons, dials
    /// and accepts stop.
    pub fn leave(&mut self, _now: Instant) {
        self.leaving = true;
        self.next_beacon = None;
        self.heard.clear();
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            let c = self.conns.get_mut(&conn).unwrap();
            let confirmed = c.session().is_some_and(|s| s.is_confirmed());
            if confirmed {
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
            let Stage::Handshake(hs) = std::mem::replace(&mut c.stage, Stage::Dialing) else {
                unreachable!()
            };
            let (mut session, finished) = hs.finish(frame)?;
            let intro = Message::Introduce {
                id: self.me.id,
                host_name: self.me.host_name.clone(),
                port: self.me.port,
                metadata: self.me.metadata.clone(),
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
                },
            ) => {
                if id == self.me.id {
                    return Err(ConnectionError::Protocol("connected to itself"));
                }
                if c.expect.is_some_and(|e| e != id) {
                    return Err(ConnectionError::Protocol(
                        "the node at this address is not the one its beacon announced",
                    ));
                }
                let peer = NodeInfo {
                    id,
                    host_name,
                    ip: c.addr.ip(),
                    port,
                    metadata,
                };
                let Stage::Introducing(session) = std::mem::replace(&mut c.stage, Stage::Dialing)
                else {
                    unreachable!()
                };
                c.stage = Stage::Admitting {
                    session,
                    peer: peer.clone(),
                    ours: None,
                    theirs: None,
                };
                self.heard.remove(&id);
                self.backoff.remove(&id);
                if !self.resolve_duplicate(now, conn, id) {
                    return Ok(());
                }
                self.outputs
                    .push_back(Output::AskAdmission { conn, node: peer });
                Ok(())
            }
            (Stage::Admitting { theirs, peer, .. }, Message::Verdict { accepted }) => {
                if theirs.is_some() {
                    return Err(ConnectionError::Protocol("second verdict"));
                }
                *theirs = Some(accepted);
                let peer = peer.clone();
                if accepted {
                    self.push_event(Event::NodeAccepted(peer));
                    self.check_admitted(conn);
                } else {
                    self.push_event(Event::NodeRejected(peer.clone()));
                    // Do not redial a node that refused us until its next beacon period.
                    self.backoff
                        .insert(peer.id, now + self.config.beacon_interval);
                    self.close(conn);
                }
                Ok(())
            }
            (Stage::Admitting { .. } | Stage::Member { .. }, Message::Leave) => {
                self.drop_conn(now, conn);
                Ok(())
            }
            _ => Err(ConnectionError::Protocol("unexpected message")),
        }
    }

    /// Applies the one-connection-per-pair rule when `conn` has introduced node `id`.
    /// Returns false if `conn` itself lost and was closed.
    fn resolve_duplicate(&mut self, now: Instant, conn: ConnId, id: NodeId) -> bool {
        let Some((&other, _)) = self
            .conns
            .iter()
            .find(|(&k, c)| k != conn && c.peer().is_some_and(|p| p.id == id))
        else {
            return true;
        };
        let preferred_initiator = if self.me.id < id {
            Role::Initiator
        } else {
            Role::Responder
        };
        let this_role = self.conns[&conn].role;
        let other_role = self.conns[&other].role;
        // Same role on both (a redial while an old connection lingers): the newer wins.
        let keep_this = this_role == preferred_initiator || this_role == other_role;
        let loser = if keep_this { other } else { conn };
        self.drop_conn(now, loser);
        self.outputs.push_back(Output::Close { conn: loser });
        keep_this
    }

    fn check_admitted(&mut self, conn: ConnId) {
        let c = self.conns.get_mut(&conn).expect("caller checked");
        let Stage::Admitting {
            ours: Some(true),
            theirs: Some(true),
            ..
        } = &c.stage
        else {
            return;
        };
        let Stage::Admitting { session, peer, .. } =
            std::mem::replace(&mut c.stage, Stage::Dialing)
        else {
            unreachable!()
        };
        c.deadline = None;
        c.stage = Stage::Member {
            session,
            peer: peer.clone(),
        };
        self.push_event(Event::NodeAdded(peer));
    }

    /// Removes the connection, telling the application if a member was lost. The driver
    /// is told to close it.
    fn drop_conn(&mut self, _now: Instant, conn: ConnId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Stage::Member { peer, .. } = c.stage {
            self.push_event(Event::NodeRemoved(peer));
        }
        self.outputs.push_back(Output::Close { conn });
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
            ConnectionError::Frame(FrameError::TooLarge { .. })
            | ConnectionError::Frame(_)
            | ConnectionError::Record(_)
            | ConnectionError::Decode(_) => self.stats.frames_rejected += 1,
            _ => {}
        }
        if let Some(id) = c.expect.or(c.peer().map(|p| p.id)) {
            self.backoff.insert(id, now + self.config.redial_backoff);
        }
        self.report(addr, error);
        self.drop_conn(now, conn);
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
