//! This node's protocol with the rest of the cluster, as one sans-IO state machine.
//!
//! Inputs are method calls carrying `now`; effects are queued as [`Output`]s that the
//! driver drains with [`Cluster::poll_output`], and the next wake-up is
//! [`Cluster::poll_timeout`] (the quinn-proto shape). Randomness is injected, so a seeded
//! simulation replays exactly.
//!
//! A connection goes Dialing → Handshake → Confirming → Introducing → Admitting → Member.
//! The handshake proves the peer's id (its static key): that id, not one it claims, is the
//! one it is known by, and a dial meant for another id fails. Admission is
//! an explicit step: the core asks ([`Output::AskAdmission`]) and the driver answers with
//! [`Cluster::admit`], which is where the application's connection filter plugs in. It is
//! asked about every connection, and comes first: until both ends have admitted each other
//! only the introductions and the verdicts cross; the peer's profile (metadata,
//! eligibility), sent after both verdicts, makes it a member.
//!
//! One connection per pair: see [`super::discovery`] for who dials (with `admission`'s
//! member lists, which name each pair to one of its two nodes, and `finding`'s held
//! dials). If both dial anyway, both ends keep the connection initiated by the smaller id,
//! a rule each end evaluates alike. A member's second connection is judged like any other
//! and replaces the member's only once admitted; nothing passes from one connection to
//! another.
//!
//! A member whose connection drops without a goodbye becomes a suspect and is redialed at
//! once: a crashed process refuses the redial and is removed within milliseconds, a
//! transient break is mended without any event. A member silent past the detector's bound
//! is removed.
//!
//! This file holds the state, the accessors and the inputs, each routed to the file of its
//! concern (the application's custom events and metadata are inputs of `custom_events`):
//! - `admission`: a connection up to Member: dial, accept, the start of the handshake,
//!   the introduction, the one-connection-per-pair rule, the admission verdicts;
//! - `receive`: frames and the messages they carry;
//! - `loss`: connections and members going away: failures, closes, goodbyes, heartbeats,
//!   suspects;
//! - `finding`: beacons, and the dials discovery asks for;
//! - `master`: the election's effects;
//! - `custom_events`: the application's custom events, subscriptions and metadata.

mod admission;
mod custom_events;
mod finding;
mod loss;
mod master;
mod probing;
mod receive;
pub mod requests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::beacon;
use super::beacon_schedule::BeaconSchedule;
use super::calls::Calls;
use super::config::Config;
use super::crypto::Identity;
use super::discovery::{Discovery, Hint, RESYNC_INTERVAL};
use super::election::{Election, PromoteError};
use super::error::ConnectionError;
use super::link::Timer;
use super::membership::Membership;
use super::message::Message;
use super::node::{NodeId, NodeInfo};
use super::output::Reason;
use super::sessions::Sessions;
use super::subscriptions::Subscriptions;
use loss::Loss;
use master::HeldMaster;

pub use super::output::{ConnId, Event, Output, Stats};
pub use receive::is_dialable;

/// This node's state: its links, its members, its discovery.
pub struct Cluster<R> {
    me: NodeInfo,
    /// This node's static key pair; `me.id` is derived from it.
    identity: Identity,
    config: Config,
    rng: R,
    outputs: VecDeque<Output>,
    discovery: Discovery,
    membership: Membership,
    election: Election,
    /// Custom events this node has joined.
    subscriptions: Subscriptions,
    /// Custom event streams to and from each peer, across its connections.
    sessions: Sessions,
    /// Names this node serves requests for.
    serving: Subscriptions,
    /// Requests in flight, ours and our peers'.
    calls: Calls,
    /// The last node known to be master, for `promotion`'s previous master.
    last_master: Option<NodeInfo>,
    /// Addresses that turned out to reach this very node (a seed naming us, say).
    own_addrs: BTreeSet<SocketAddr>,
    /// Counts admissions and answered member lists, to tell which came first (see
    /// `admission`'s `tell_members`).
    list_clock: u64,
    /// With multicast off, when a member is next asked for its list again (see
    /// `admission`'s `resync`), and the turn of the member asked.
    next_resync: Option<Instant>,
    resync_turn: usize,
    /// When we last asked any member for its list: the gap of `admission`'s `ask_across`
    /// runs from it.
    list_asked_at: Option<Instant>,
    beacons: BeaconSchedule,
    /// Counts our beacons, for their freshness stamp.
    beacon_seq: u64,
    /// The last counter of each keyed beacon sender (see [`beacon::Freshness`]).
    beacon_freshness: beacon::Freshness,
    /// The wall clock at some `now`: an input, for the freshness stamps of keyed beacons.
    wall_clock: Option<(Instant, u64)>,
    leaving: bool,
    /// The driver is not reading members' connections (the application is behind): their
    /// silence is not theirs, so nobody is declared dead for it meanwhile.
    reading_paused: bool,
    stats: Stats,
    /// The links of the message being sent (see [`Cluster::send_event`]).
    send_scratch: Vec<ConnId>,
    /// A change of master not told yet: the master it replaces is still a member here
    /// (see `master`).
    held_master: Option<HeldMaster>,
    /// The connection being failed broke a protocol rule (set and cleared by `fail`).
    violation: bool,
    /// Suspects whose connection was closed for a protocol violation: if they do not come
    /// back, that is why they are removed. At most one entry per suspect.
    suspect_why: BTreeMap<NodeId, Reason>,
    /// Pings this node relayed, (asker, target), until when their answer is passed on
    /// (see `probing`; at most [`probing::MAX_RELAYS`]).
    relays: BTreeMap<(NodeId, NodeId), Instant>,
    /// Addresses members have, rebuilt each tick: probes from others are dropped unread.
    member_ips: BTreeSet<IpAddr>,
    /// The membership's count of changes to those addresses when they were last copied.
    member_ips_seen: Option<u64>,
    /// When the next probe round is due (`None`: no member at the last one).
    next_round: Option<Instant>,
    /// Members at the last probe round: the detector's bounds stretch with them.
    probe_members: usize,
    /// This node's key for its order of the members in probe rounds.
    probe_salt: u64,
    /// Where the probe round stopped: the place of the last member probed.
    probe_cursor: Option<u64>,
    /// A member asked us for an answer or a relay: until then, probes are to be read as
    /// they arrive (see [`Cluster::probes_prompt`]).
    asked_until: Option<Instant>,
}

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// A node described by `me` (its `ip`/`port` are where it listens), with a fresh
    /// identity key pair drawn from `rng`: `me.id` is replaced by the id derived from it.
    pub fn new(me: NodeInfo, config: Config, mut rng: R) -> Self {
        let identity = Identity::generate(&mut rng);
        Cluster::with_identity(identity, me, config, rng)
    }

    /// [`Cluster::new`] with a given identity (the driver makes it when the node is
    /// created, so its id is known before it starts); `me.id` is replaced by its id.
    pub fn with_identity(identity: Identity, mut me: NodeInfo, config: Config, mut rng: R) -> Self {
        me.master_eligible = config.election.eligible;
        me.id = identity.id();
        let probe_salt = rng.next_u64();
        Cluster {
            identity,
            election: Election::new(me.id, config.election),
            subscriptions: Subscriptions::default(),
            sessions: Sessions::default(),
            serving: Subscriptions::default(),
            calls: Calls::default(),
            last_master: None,
            me,
            config,
            rng,
            outputs: VecDeque::new(),
            discovery: Discovery::default(),
            membership: Membership::default(),
            own_addrs: BTreeSet::new(),
            list_clock: 0,
            next_resync: None,
            list_asked_at: None,
            resync_turn: 0,
            beacons: BeaconSchedule::default(),
            beacon_seq: 0,
            beacon_freshness: beacon::Freshness::default(),
            wall_clock: None,
            leaving: false,
            reading_paused: false,
            stats: Stats::default(),
            send_scratch: Vec::new(),
            held_master: None,
            violation: false,
            suspect_why: BTreeMap::new(),
            relays: BTreeMap::new(),
            member_ips: BTreeSet::new(),
            member_ips_seen: None,
            next_round: None,
            probe_members: 0,
            probe_salt,
            probe_cursor: None,
            asked_until: None,
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

    /// The wall clock reads `unix_ms` (ms since the Unix epoch) at `now`. Keyed beacons
    /// carry the time, and are refused when theirs is far from ours, so the node needs the
    /// wall clock: the core reads no clock, so the driver hands it in, before the start and
    /// whenever it likes after (it tracks changes to the system clock that way). Between
    /// two readings the core counts from the last one with `now`. Until the first, keyed
    /// beacons go out with time 0 and every one received is stale.
    pub fn set_wall_clock(&mut self, now: Instant, unix_ms: u64) {
        self.wall_clock = Some((now, unix_ms));
    }

    /// The wall clock at `now`, from the last reading.
    fn wall_ms(&self, now: Instant) -> Option<u64> {
        let (at, ms) = self.wall_clock?;
        Some(match now.checked_duration_since(at) {
            Some(later) => ms.saturating_add(later.as_millis() as u64),
            None => ms.saturating_sub(at.duration_since(now).as_millis() as u64),
        })
    }

    /// Starts beaconing and discovery; call once the sockets are bound.
    pub fn start(&mut self, now: Instant) {
        self.beacons.start(now);
        self.discovery.start(now, &self.config.discovery);
        if !self.config.discovery.multicast {
            self.next_resync = Some(now + RESYNC_INTERVAL);
        }
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
        // What `handle_timeout` runs only while we are not leaving: a timer of theirs left
        // due as we leave (an election a member's loss started) would wake us for nothing.
        let running = (!self.leaving).then(|| {
            self.discovery
                .poll_timeout(&self.config.discovery)
                .into_iter()
                .chain(self.holds_due())
                .chain(self.election.poll_timeout())
                .chain(self.beacons.next())
                .chain(self.next_resync)
                .min()
        });
        self.membership
            .poll_timeout(&self.detector())
            .into_iter()
            .chain(self.next_round())
            .chain(running.flatten())
            .chain(self.held_master_deadline())
            .chain(self.sessions.next_ack())
            .chain(self.calls.next_deadline())
            .min()
    }

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // The probe round, due each interval while there are members, fires far later
        // than it was due: our process did not run. (The round's timer, not the earliest
        // of all: a silence bound that shrinks as members leave can fall due in the past
        // without anyone having paused.)
        let due = self.next_round();
        if due.is_some_and(|due| now > due + self.config.detector.late_after()) {
            self.notice_pause(now);
        }
        self.tidy_probes(now);
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
        self.remove_silent(now);
        self.probe_round(now, false);
        self.send_acks(now);
        self.expire_requests(now);
        for id in self.membership.overdue_suspects(now) {
            self.give_up_suspect(now, id, Reason::Timeout);
        }
        self.release_overdue_master(now);
        if !self.leaving {
            self.pump(now);
            self.update_forming(now);
            self.election.handle_timeout(now);
            self.run_election(now);
            self.pump(now);
            if self.beacons.only_answer_due(now) && !self.answer_owed() {
                self.beacons.drop_answer();
            }
            if self.beacons.is_due(now) {
                self.send_beacon(now);
            }
            if self.next_resync.is_some_and(|t| t <= now) {
                self.resync(now);
            }
        }
        self.debug_check_index();
    }

    /// A datagram arrived on the discovery socket from `from`.
    pub fn handle_beacon(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.leaving {
            return;
        }
        let key = self.config.cluster_key.as_ref();
        let found = match beacon::classify(datagram, &self.config.cluster, key) {
            Ok(found) => found,
            Err(ignored) => {
                self.stats.beacons_ignored += 1;
                // Without these a node with another key or of another release would never
                // be heard of: no connection is ever tried with it in multicast discovery.
                match ignored {
                    beacon::Ignored::KeyMismatch => {
                        self.stats.key_mismatches += 1;
                        self.push_event(Event::BeaconKeyMismatch { addr: from });
                    }
                    beacon::Ignored::Version(theirs) => {
                        self.stats.version_mismatches += 1;
                        let ours = super::crypto::handshake::PROTOCOL_VERSION;
                        let addr = from;
                        self.push_event(Event::BeaconVersionMismatch { addr, ours, theirs });
                    }
                    beacon::Ignored::NotOurs => {}
                }
                return;
            }
        };
        let mut checked = beacon::check_source(&found, from);
        if checked.is_ok() && key.is_some() {
            // Unkeyed beacons can be forged outright: a stamp on them would prove nothing.
            let wall_ms = self.wall_ms(now).unwrap_or(0);
            checked = self.beacon_freshness.check(now, wall_ms, &found);
        }
        if let Err(reason) = checked {
            self.stats.beacons_refused += 1;
            self.push_event(Event::BeaconRefused { addr: from, reason });
            return;
        }
        self.learn(now, found.id, found.addr, Hint::Beacon);
        self.update_forming(now);
    }

    /// A dial succeeded.
    pub fn connected(&mut self, now: Instant, conn: ConnId) {
        self.start_handshake(now, conn);
        self.update_forming(now);
    }

    /// A dial failed (refused, unreachable, timed out).
    pub fn dial_failed(&mut self, now: Instant, conn: ConnId) {
        self.abandon_dial(now, conn);
        self.update_forming(now);
    }

    /// Tells the election whether formation is still going on: seeds not reached nor
    /// given up on, nodes heard of and not dialed, connections on their way to membership
    /// (see [`Election::set_forming`]).
    fn update_forming(&mut self, now: Instant) {
        let forming = self.forming();
        self.election.set_forming(now, forming);
    }

    /// True while formation is not over: a connection on its way to membership, a seed
    /// not yet reached or given up on, a node heard of waiting for its dial.
    fn forming(&self) -> bool {
        self.discovery.forming() || self.membership.forming()
    }

    /// A peer connected to our listener. Returns the id to use for it, or `None` if the
    /// connection must be closed at once (too many handshakes pending, or leaving).
    ///
    /// Stalled handshakes cannot lock joins out: one IP address may hold at most
    /// `max_pending_per_ip` of them, and when every slot is taken the oldest incoming one
    /// is closed to make room, so a newcomer always gets its turn.
    pub fn accept(&mut self, now: Instant, addr: SocketAddr) -> Option<ConnId> {
        let conn = self.accept_incoming(now, addr);
        self.update_forming(now);
        conn
    }

    /// Bytes arrived on a connection.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.receive(now, conn, bytes);
        self.update_forming(now);
        self.debug_check_index();
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
        self.update_forming(now);
        self.debug_check_index();
    }

    /// The application's verdict on an [`Output::AskAdmission`].
    pub fn admit(&mut self, now: Instant, conn: ConnId, accept: bool) {
        self.give_verdict(now, conn, accept, Reason::Filter);
        self.update_forming(now);
    }

    /// The connection filter failed on the node of `conn` (threw, rejected, answered
    /// something else than a boolean, or not in time): counted, and the node is refused.
    pub fn filter_failed(&mut self, now: Instant, conn: ConnId) {
        self.stats.filter_errors += 1;
        self.give_verdict(now, conn, false, Reason::FilterError);
        self.update_forming(now);
    }

    /// Leaves the cluster: tells every peer, then closes every connection. Beacons, dials
    /// and accepts stop.
    pub fn leave(&mut self, _now: Instant) {
        self.leaving = true;
        self.beacons.stop();
        self.next_resync = None;
        self.discovery.stop();
        self.membership.clear_suspects();
        self.suspect_why.clear();
        self.say_goodbye();
        self.debug_check_index();
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

    /// Sends a message to every member.
    fn send_all(&mut self, now: Instant, msg: &Message) {
        for conn in self.membership.member_links() {
            self.send(now, conn, msg);
        }
    }

    fn transmit(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.outputs.push_back(Output::Transmit { conn, bytes });
    }

    fn push_event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
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

    /// Seals `msg` to member `to` over their real session, as this node: what a hostile
    /// member could say, for tests.
    #[cfg(test)]
    pub(crate) fn inject(&mut self, now: Instant, to: NodeId, msg: &Message) {
        let conn = self.membership.member_link(to).expect("`to` is a member");
        self.send(now, conn, msg);
    }

    /// Our stream to `peer` and how many of its events wait for an acknowledgement.
    #[cfg(test)]
    pub(crate) fn stream_to(&mut self, peer: NodeId) -> Option<(u64, usize)> {
        let out = self.sessions.outbound_of(peer)?;
        Some((out.stream, out.unacked()))
    }

    /// How many newcomers the answer planned tracks, and whether more were owed it.
    #[cfg(test)]
    pub(crate) fn answer_tracks(&self) -> Option<(usize, bool)> {
        self.beacons.answer_tracks()
    }

    /// The claim this node follows.
    #[cfg(test)]
    pub(crate) fn claim(&self) -> Option<super::election::Claim> {
        self.election.claim()
    }
}
