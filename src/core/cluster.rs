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

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::beacon::{self, Beacon};
use super::beacon_schedule::BeaconSchedule;
use super::config::Config;
use super::crypto::{Handshake, Role};
use super::discovery::{Discovery, Learned, Target};
use super::election::{Effect, Election, PromoteError};
use super::error::{ConnectionError, SendError, SubscribeError};
use super::link::{Heartbeat, Link, Timer};
use super::membership::Membership;
use super::message::{self, Message, MAX_MEMBERS};
use super::node::{NodeId, NodeInfo};
use super::subscriptions::{is_valid_name, Subscriptions};
use super::wire::{self, FrameDecoder};

pub use super::output::{ConnId, Event, Output, Stats};

/// Why a member is no longer one.
enum Loss {
    /// It said goodbye.
    Left,
    /// Its connection dropped: suspect it and redial.
    Dropped,
    /// It is gone for good (silent too long, redial failed, replaced by a new id).
    Dead,
}

/// This node's state: its links, its members, its discovery.
pub struct Cluster<R> {
    me: NodeInfo,
    config: Config,
    rng: R,
    outputs: VecDeque<Output>,
    discovery: Discovery,
    membership: Membership,
    election: Election,
    /// Custom events this node has joined.
    subscriptions: Subscriptions,
    /// The last node known to be master, for `promotion`'s previous master.
    last_master: Option<NodeInfo>,
    /// Addresses that turned out to reach this very node (a seed naming us, say).
    own_addrs: BTreeSet<SocketAddr>,
    beacons: BeaconSchedule,
    leaving: bool,
    stats: Stats,
    /// The links of the message being sent (see [`Cluster::send_event`]).
    send_scratch: Vec<ConnId>,
}

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// A node with identity `me` (its `ip`/`port` are where it listens).
    pub fn new(mut me: NodeInfo, config: Config, rng: R) -> Self {
        me.master_eligible = config.election.eligible;
        Cluster {
            election: Election::new(me.id, config.election),
            subscriptions: Subscriptions::default(),
            last_master: None,
            me,
            config,
            rng,
            outputs: VecDeque::new(),
            discovery: Discovery::default(),
            membership: Membership::default(),
            own_addrs: BTreeSet::new(),
            beacons: BeaconSchedule::default(),
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
        self.membership.members()
    }

    /// The largest payload member `id` accepts, while it is connected as a member.
    pub fn payload_limit(&self, id: NodeId) -> Option<usize> {
        let conn = self.membership.member_link(id)?;
        Some(self.membership[conn].peer_max_message)
    }

    /// Starts beaconing and discovery; call once the sockets are bound.
    pub fn start(&mut self, now: Instant) {
        self.beacons.start(now);
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
        self.membership
            .poll_timeout(&self.config.detector)
            .into_iter()
            .chain(self.discovery.poll_timeout(&self.config.discovery))
            .chain(self.election.poll_timeout())
            .chain(self.beacons.next())
            .min()
    }

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (conn, timer) in self.membership.expired(now) {
            if self.membership.get(conn).is_none() {
                continue;
            }
            match timer {
                Timer::Dial => {
                    self.dial_failed(now, conn);
                    self.outputs.push_back(Output::Close { conn });
                }
                // An admission that runs out is reported as the handshake's, as it
                // always was.
                Timer::Handshake | Timer::Admission => {
                    self.fail(now, conn, ConnectionError::HandshakeTimeout)
                }
            }
        }
        self.heartbeats(now);
        for id in self.membership.overdue_suspects(now) {
            self.give_up_suspect(now, id);
        }
        if !self.leaving {
            self.election.handle_timeout(now);
            self.run_election(now);
            self.pump(now);
            if self.beacons.is_due(now) {
                self.send_beacon(now);
            }
        }
        self.debug_check_index();
    }

    /// Sends due heartbeats and removes members silent for too long.
    fn heartbeats(&mut self, now: Instant) {
        let detector = self.config.detector;
        let mut dead = Vec::new();
        for (conn, link) in self.membership.iter_mut() {
            match link.heartbeat(now, &detector) {
                Heartbeat::Dead => dead.push(conn),
                Heartbeat::Ping(Ok(bytes)) => {
                    self.outputs.push_back(Output::Transmit { conn, bytes })
                }
                Heartbeat::Ping(Err(_)) | Heartbeat::Quiet => {}
            }
        }
        for conn in dead {
            self.lose(now, conn, Loss::Dead);
        }
    }

    /// Carries out the dials discovery wants now.
    fn pump(&mut self, now: Instant) {
        let scans = self.membership.scans_in_flight();
        let alone = !self.membership.has_members();
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
                // It has the smaller id and dials us once it hears us.
                self.beacons
                    .answer_announce(now, self.config.beacon_min_gap);
            }
            None => {}
        }
    }

    /// True if we are, or are connecting to, node `id` or the node listening at `addr`.
    fn knows(&self, id: Option<NodeId>, addr: SocketAddr) -> bool {
        if addr == SocketAddr::new(self.me.ip, self.me.port) || self.own_addrs.contains(&addr) {
            return true;
        }
        self.membership.is_known(id, addr)
    }

    fn dial(&mut self, now: Instant, target: Target) {
        if self.leaving {
            return;
        }
        // Counted apart from incoming ones, so stalled peers cannot stop us dialing.
        if self.membership.pending_dials() >= self.config.max_pending_handshakes {
            self.stats.connections_refused += 1;
            return;
        }
        let timeout = if target.scan {
            self.config.discovery.scan_dial_timeout
        } else {
            self.config.dial_timeout
        };
        let conn = self.membership.add(Link::dial(&target, now + timeout));
        self.outputs.push_back(Output::Dial {
            conn,
            addr: target.addr,
        });
    }

    /// A dial succeeded.
    pub fn connected(&mut self, now: Instant, conn: ConnId) {
        let Some(link) = self.membership.get_mut(conn) else {
            self.outputs.push_back(Output::Close { conn });
            return;
        };
        if !link.is_dialing() {
            return;
        }
        let key = self.config.cluster_key.as_ref();
        let (hs, hello) =
            Handshake::start(Role::Initiator, &self.config.cluster, key, &mut self.rng);
        link.connected(hs, now + self.config.handshake_timeout);
        let scan = link.scan;
        self.transmit(conn, wire::frame(&hello));
        if scan {
            self.pump(now);
        }
    }

    /// A dial failed (refused, unreachable, timed out).
    pub fn dial_failed(&mut self, now: Instant, conn: ConnId) {
        let Some(link) = self.membership.remove(conn) else {
            return;
        };
        if let Some(id) = link.expect {
            let backoff = self.config.discovery.redial_backoff;
            self.discovery.failed(now, id, backoff);
            // A suspect whose redial is refused has crashed or stopped: remove it now.
            if self.membership.is_suspect(id) {
                self.give_up_suspect(now, id);
            }
        }
        if link.scan {
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
        let from_ip = self.membership.pending_accepts_from(addr.ip());
        if self.leaving || from_ip >= self.config.max_pending_per_ip {
            self.stats.connections_refused += 1;
            return None;
        }
        if self.membership.pending() >= self.config.max_pending_handshakes {
            let oldest = self.membership.oldest_accept_before_admission();
            self.stats.connections_refused += 1;
            self.close(oldest?);
        }
        let key = self.config.cluster_key.as_ref();
        let (hs, hello) =
            Handshake::start(Role::Responder, &self.config.cluster, key, &mut self.rng);
        let deadline = now + self.config.handshake_timeout;
        let conn = self.membership.add(Link::accepted(addr, hs, deadline));
        self.transmit(conn, wire::frame(&hello));
        Some(conn)
    }

    /// Bytes arrived on a connection.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(link) = self.membership.get_mut(conn) else {
            return;
        };
        self.stats.bytes_in += bytes.len() as u64;
        let mut decoder = link.lend_decoder();
        decoder.push(bytes);
        let read = self.read_frames(now, conn, &mut decoder);
        if let Some(link) = self.membership.get_mut(conn) {
            link.return_decoder(decoder);
        }
        if let Err(e) = read {
            self.fail(now, conn, e);
        }
        self.debug_check_index();
    }

    /// Handles every whole frame in `decoder`, `conn`'s, while the link lasts.
    fn read_frames(
        &mut self,
        now: Instant,
        conn: ConnId,
        decoder: &mut FrameDecoder,
    ) -> Result<(), ConnectionError> {
        loop {
            let Some(link) = self.membership.get(conn) else {
                return Ok(());
            };
            decoder.set_max_len(link.frame_limit(self.config.max_frame));
            let Some(frame) = decoder.next_frame()? else {
                return Ok(());
            };
            self.handle_frame(now, conn, frame)?;
        }
    }

    /// The connection ended (peer closed it, reset, or an I/O error).
    pub fn connection_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(link) = self.membership.get(conn) else {
            return;
        };
        if let Err(e) = link.finish_reading() {
            self.stats.frames_rejected += 1;
            self.report(link.addr, e.into());
        }
        self.end(now, conn, Loss::Dropped);
        self.debug_check_index();
    }

    /// The application's verdict on an [`Output::AskAdmission`].
    pub fn admit(&mut self, now: Instant, conn: ConnId, accept: bool) {
        let link = self.membership.get_mut(conn);
        let Some(verdict) = link.and_then(|l| l.our_verdict(accept)) else {
            return;
        };
        match verdict {
            Ok(bytes) => self.transmit(conn, bytes),
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
        if self.subscriptions.subscribe(name)? {
            self.send_all(now, &Message::Subscribe(name.to_owned()));
        }
        Ok(())
    }

    /// Stops delivery of custom event `name`.
    pub fn unsubscribe(&mut self, now: Instant, name: &str) {
        if self.subscriptions.unsubscribe(name) {
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
        if !is_valid_name(name) {
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
        let targeted = self
            .membership
            .event_targets(name, payload.len(), targets, &mut conns);
        if let Err(e) = targeted {
            self.send_scratch = conns;
            return Err(e);
        }
        let head = message::event_head(name, binary);
        let parts = [&head[..], name.as_bytes(), payload];
        let mut sent = 0;
        for i in 0..conns.len() {
            let conn = conns[i];
            match self.membership[conn]
                .seal_parts(&parts)
                .expect("members have sessions")
            {
                Ok(bytes) => {
                    self.transmit(conn, bytes);
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
        for conn in self.membership.member_links() {
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
        for (conn, link) in self.membership.iter_mut() {
            if link.is_introduced() {
                if let Some(Ok(bytes)) = link.seal_parts(&[&update]) {
                    self.outputs.push_back(Output::Transmit { conn, bytes });
                }
            }
        }
    }

    /// Leaves the cluster: tells every peer, then closes every connection. Beacons, dials
    /// and accepts stop.
    pub fn leave(&mut self, _now: Instant) {
        self.leaving = true;
        self.beacons.stop();
        self.discovery.stop();
        self.membership.clear_suspects();
        for conn in self.membership.conns() {
            let link = &mut self.membership[conn];
            if link.is_introduced() {
                if let Some(Ok(bytes)) = link.seal(&Message::Leave) {
                    self.transmit(conn, bytes);
                }
            }
            self.close(conn);
        }
        self.debug_check_index();
    }

    /// What we say about ourselves once the handshake is done.
    fn introduction(&self) -> Message<'static> {
        Message::Introduce {
            id: self.me.id,
            host_name: self.me.host_name.clone(),
            port: self.me.port,
            metadata: self.me.metadata.clone(),
            master_eligible: self.me.master_eligible,
            max_message: u32::try_from(self.config.max_message).unwrap_or(u32::MAX),
        }
    }

    /// A frame, still in the link's decoder: a record is decrypted there, and its message
    /// borrows it.
    fn handle_frame(
        &mut self,
        now: Instant,
        conn: ConnId,
        frame: &mut [u8],
    ) -> Result<(), ConnectionError> {
        if self.membership[conn].is_handshaking() {
            let intro = self.introduction();
            let [finished, intro] = self.membership[conn].finish_handshake(frame, &intro)?;
            self.stats.handshakes_completed += 1;
            self.transmit(conn, finished);
            self.transmit(conn, intro);
            return Ok(());
        }
        let link = &mut self.membership[conn];
        match link.receive(now, frame, self.config.max_metadata)? {
            Some(msg) => self.handle_message(now, conn, msg),
            None => Ok(()),
        }
    }

    fn handle_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: Message<'_>,
    ) -> Result<(), ConnectionError> {
        let link = &mut self.membership[conn];
        let from = link.peer_id();
        match msg {
            Message::Introduce { .. } if link.is_introducing() => {
                let peer = link.peer_from_introduction(msg).expect("an introduction");
                self.introduced(now, conn, peer)
            }
            Message::Verdict { accepted } if link.is_admitting() => {
                let peer = link.their_verdict(accepted)?;
                if accepted {
                    if !link.restore && !link.accepted_told {
                        link.accepted_told = true;
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
            Message::Leave if link.is_introduced() => {
                self.end(now, conn, Loss::Left);
                Ok(())
            }
            Message::Update { metadata } if link.is_introduced() => {
                let member = link.is_member();
                let peer = link.update_metadata(metadata);
                if member {
                    let peer = peer.clone();
                    self.push_event(Event::NodeUpdated(peer));
                }
                Ok(())
            }
            // The rest is for members only.
            _ if !link.is_member() => Err(ConnectionError::Protocol("unexpected message")),
            Message::Ping => Ok(()),
            Message::Event {
                name,
                binary,
                payload,
            } => {
                // Sent before our Unsubscribe reached the peer: dropped here, never emitted.
                if self.subscriptions.contains(name) {
                    self.stats.messages_in += 1;
                    // The one copy of a received payload the core makes.
                    self.push_event(Event::Delivery {
                        from: from.expect("members are introduced"),
                        name: name.to_owned(),
                        binary,
                        payload: payload.to_vec(),
                    });
                }
                Ok(())
            }
            Message::Subscribe(name) => link.subscriptions.peer_subscribed(name),
            Message::Unsubscribe(name) => {
                link.subscriptions.unsubscribe(&name);
                Ok(())
            }
            Message::Subscriptions(names) => {
                link.subscriptions.replace(names);
                Ok(())
            }
            Message::Election(m) => {
                self.election
                    .handle(now, from.expect("members are introduced"), m);
                self.run_election(now);
                Ok(())
            }
            Message::Members(list) => {
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
        let link = &mut self.membership[conn];
        if id == self.me.id {
            if link.role == Role::Initiator {
                self.own_addrs.insert(link.addr);
            }
            return Err(ConnectionError::Protocol("connected to itself"));
        }
        if let Some(expected) = link.expect.filter(|&e| e != id) {
            // Another node now listens where `expected` did: it restarted with a new id,
            // or the address was reused. The old one is gone for good.
            link.expect = None;
            if let Some(info) = self.membership.clear_suspect(expected) {
                self.removed(now, info);
            }
            self.discovery.forget(expected);
        }
        let ip = peer.ip;
        self.membership[conn].introduced(peer, now + self.config.admission_timeout);
        self.discovery.connected(id);
        if self.membership.suspect_info(id).is_some_and(|s| s.ip == ip) {
            // A suspect is back: the member carries on, no event either way.
            self.membership.clear_suspect(id);
            self.membership[conn].restore = true;
        }
        if !self.resolve_duplicate(conn, id) {
            return Ok(());
        }
        self.membership.introduced(id, conn);
        let link = &self.membership[conn];
        if link.restore {
            self.admit(now, conn, true);
        } else {
            let node = link.peer().expect("just introduced").clone();
            self.outputs.push_back(Output::AskAdmission { conn, node });
        }
        Ok(())
    }

    /// Applies the one-connection-per-pair rule when `conn` has introduced node `id`.
    /// Returns false if `conn` itself lost and was closed.
    fn resolve_duplicate(&mut self, conn: ConnId, id: NodeId) -> bool {
        let Some(other) = self.membership.link_of(id) else {
            return true;
        };
        let preferred = if self.me.id < id {
            Role::Initiator
        } else {
            Role::Responder
        };
        let this_role = self.membership[conn].role;
        let other_role = self.membership[other].role;
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
            let l = &self.membership[loser];
            (l.is_member(), l.restore, l.accepted_told)
        };
        let w = &mut self.membership[winner];
        w.restore |= member || restore;
        w.accepted_told |= told;
        self.close(loser);
        keep_this
    }

    fn check_admitted(&mut self, now: Instant, conn: ConnId) {
        let link = &mut self.membership[conn];
        let Some(peer) = link.become_member(now, &self.config.detector) else {
            return;
        };
        let restore = std::mem::take(&mut link.restore);
        // Tell the newcomer whom to connect to, and everyone else about the newcomer.
        let others: Vec<(NodeId, SocketAddr)> = self
            .members()
            .into_iter()
            .filter(|m| m.id != peer.id)
            .take(MAX_MEMBERS)
            .map(|m| (m.id, SocketAddr::new(m.ip, m.port)))
            .collect();
        self.send(now, conn, &Message::Members(others));
        let joined = Message::Subscriptions(self.subscriptions.names());
        self.send(now, conn, &joined);
        let newcomer = Message::Members(vec![(peer.id, SocketAddr::new(peer.ip, peer.port))]);
        for other in self.membership.member_links() {
            if other != conn {
                self.send(now, other, &newcomer);
            }
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
                    if let Some(conn) = self.membership.member_link(id) {
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
        self.membership
            .info_of(id)
            .or(self.last_master.as_ref().filter(|m| m.id == id))
            .cloned()
    }

    /// Seals and queues a message on a link with a session.
    fn send(&mut self, now: Instant, conn: ConnId, msg: &Message) {
        let Some(sealed) = self.membership.get_mut(conn).and_then(|l| l.seal(msg)) else {
            return;
        };
        match sealed {
            Ok(bytes) => self.transmit(conn, bytes),
            Err(e) => self.fail(now, conn, e.into()),
        }
    }

    /// Removes a connection that ended; if it carried a member, deals with the loss.
    fn end(&mut self, now: Instant, conn: ConnId, loss: Loss) {
        let Some(link) = self.membership.get(conn) else {
            return;
        };
        if link.is_member() {
            return self.lose(now, conn, loss);
        }
        // A suspect's redial that ends before the peer introduced itself: a crashing
        // process can accept a connection in its last instant and reset it right after.
        // (A peer that closes our redial as a duplicate has introduced itself first, so
        // its suspect's own deadline decides then.)
        let unproven = link.is_unproven();
        let expected = link.expect;
        self.close(conn);
        if let Some(id) = expected.filter(|&id| unproven && self.membership.is_suspect(id)) {
            self.give_up_suspect(now, id);
        }
    }

    /// A member's connection is gone.
    fn lose(&mut self, now: Instant, conn: ConnId, loss: Loss) {
        let Some(link) = self.membership.remove(conn) else {
            return;
        };
        self.outputs.push_back(Output::Close { conn });
        let Some(peer) = link.into_member() else {
            return;
        };
        let addr = SocketAddr::new(peer.ip, peer.port);
        match loss {
            Loss::Dropped if !self.leaving => {
                let expect = Some(peer.id);
                let deadline = now + self.config.suspect_timeout;
                self.membership.suspect(peer, deadline);
                let redial = Target {
                    addr,
                    expect,
                    scan: false,
                };
                self.dial(now, redial);
            }
            Loss::Left => self.removed(now, peer),
            Loss::Dropped | Loss::Dead => {
                self.discovery
                    .lost(now, &self.config.discovery, peer.id, addr);
                self.removed(now, peer);
            }
        }
    }

    /// A suspect did not come back in time: remove it.
    fn give_up_suspect(&mut self, now: Instant, id: NodeId) {
        let Some(info) = self.membership.clear_suspect(id) else {
            return;
        };
        let addr = SocketAddr::new(info.ip, info.port);
        self.discovery.lost(now, &self.config.discovery, id, addr);
        self.removed(now, info);
    }

    fn close(&mut self, conn: ConnId) {
        if self.membership.remove(conn).is_some() {
            self.outputs.push_back(Output::Close { conn });
        }
    }

    fn fail(&mut self, now: Instant, conn: ConnId, error: ConnectionError) {
        let Some(link) = self.membership.get(conn) else {
            return;
        };
        let addr = link.addr;
        match &error {
            ConnectionError::Handshake(_) | ConnectionError::HandshakeTimeout => {
                self.stats.handshakes_failed += 1
            }
            ConnectionError::Frame(_) | ConnectionError::Record(_) | ConnectionError::Decode(_) => {
                self.stats.frames_rejected += 1
            }
            _ => {}
        }
        if let Some(id) = link.expect.or(link.peer_id()) {
            let backoff = self.config.discovery.redial_backoff;
            self.discovery.failed(now, id, backoff);
        }
        self.report(addr, error);
        self.end(now, conn, Loss::Dropped);
    }

    fn report(&mut self, addr: SocketAddr, error: ConnectionError) {
        self.push_event(Event::ConnectionFailed { addr, error });
    }

    fn transmit(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.outputs.push_back(Output::Transmit { conn, bytes });
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
        let (burst, interval) = (&self.config.beacon_burst, self.config.beacon_interval);
        self.beacons.sent(now, burst, interval, &mut self.rng);
    }

    /// The node index must name exactly the introduced links after every input.
    fn debug_check_index(&self) {
        debug_assert!(
            self.membership.index_agrees(),
            "the node index disagrees with the links"
        );
    }

    #[cfg(test)]
    pub(crate) fn index_agrees(&self) -> bool {
        self.membership.index_agrees()
    }
}
