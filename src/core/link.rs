//! One connection's state machine: Dialing → Handshake → Confirming → Introducing →
//! Admitting → Member.
//!
//! Admission first: while Admitting, a link knows only the peer's [`Candidate`] (what the
//! connection filter judges); the peer's metadata, eligibility and largest payload arrive in
//! its `Profile`, which it sends once both ends have admitted each other, and which makes it
//! a member.
//!
//! Each stage before Member carries its own deadline, so "pending" and "which timeout" are
//! read off the stage instead of a shared field. A link decides what concerns it alone (the
//! handshake step, sealing and opening records, its stage transitions); whatever needs the
//! rest of the node (duplicates, events, the election) is the coordinator's, in
//! [`super::cluster`].

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::crypto::{Confirming, Handshake, Identity, Role, Session};
use super::detector::{DetectorConfig, Liveness};
use super::discovery::Target;
use super::error::{ConnectionError, FrameError, RecordError};
use super::message::Message;
use super::node::{Candidate, NodeId, NodeInfo};
use super::probe::ProbeKeys;
use super::subscriptions::Subscriptions;
use super::wire::{admission_frame_limit, FrameDecoder, MAX_HANDSHAKE_FRAME};

/// Which of a pending link's deadlines ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The TCP connection did not open.
    Dial,
    /// The handshake, key confirmation or introduction did not complete.
    Handshake,
    /// Both ends had not admitted each other.
    Admission,
}

enum Stage {
    Dialing {
        dial_deadline: Instant,
    },
    Handshake {
        handshake: Handshake,
        handshake_deadline: Instant,
    },
    /// Keys are agreed; the peer's key confirmation (its identity proof) is awaited, under
    /// the handshake's deadline.
    Confirming {
        confirming: Confirming,
        handshake_deadline: Instant,
    },
    /// The peer proved `proven` is its id; its introduction is awaited, still under the
    /// handshake's deadline.
    Introducing {
        session: Session,
        proven: NodeId,
        handshake_deadline: Instant,
    },
    /// The peer introduced itself. Once both verdicts are `true`, each end sends its
    /// `Profile`; the peer's makes it a member.
    Admitting {
        session: Session,
        candidate: Candidate,
        ours: Option<bool>,
        theirs: Option<bool>,
        admission_deadline: Instant,
    },
    Member {
        session: Session,
        peer: NodeInfo,
        liveness: Liveness,
        /// The pair's UDP probe keys (none on links made without a handshake, in tests).
        probe: Option<Box<ProbeKeys>>,
    },
    /// The handshake failed after consuming its secret; the link is closed next. It is no
    /// longer "unproven": a suspect's redial that fails so is left to the suspect's own
    /// deadline.
    Failed,
}

/// One connection, from dial or accept until it closes.
pub struct Link {
    pub role: Role,
    /// Dialed address, or the peer's source address for accepted connections.
    pub addr: SocketAddr,
    /// The node a dial was meant for, if known: a hint the handshake must prove, or the
    /// dial fails.
    pub expect: Option<NodeId>,
    /// A subnet-scan dial.
    pub scan: bool,
    /// We ask the peer for its member list once it is a member (see [`Target::ask`]).
    pub ask: bool,
    /// When the peer last asked for our member list and had it (at most once per
    /// [`ASK_MEMBERS_GAP`](crate::core::discovery::ASK_MEMBERS_GAP)).
    pub told_members_at: Option<Instant>,
    /// When we last asked the peer for its member list.
    pub asked_members_at: Option<Instant>,
    /// When the peer became our member, on this node's clock of admissions and answered
    /// member lists (see `Cluster::tell_members`).
    pub admitted_at: u64,
    /// When, on that clock, our member list answered the peer naming every member but
    /// those already told of it: from then on the peer dials each member admitted before.
    pub told_at: Option<u64>,
    /// Custom events the peer has joined: only those are sent to it.
    pub subscriptions: Subscriptions,
    /// Names the peer serves requests for (same rules and bounds as its joins).
    pub serving: Subscriptions,
    /// The largest payload the peer accepts; a larger one would break the connection.
    pub peer_max_message: usize,
    decoder: FrameDecoder,
    stage: Stage,
}

impl Link {
    fn new(role: Role, addr: SocketAddr, stage: Stage) -> Link {
        Link {
            role,
            addr,
            expect: None,
            scan: false,
            ask: false,
            told_members_at: None,
            asked_members_at: None,
            admitted_at: 0,
            told_at: None,
            subscriptions: Subscriptions::default(),
            serving: Subscriptions::default(),
            peer_max_message: 0,
            decoder: FrameDecoder::new(MAX_HANDSHAKE_FRAME),
            stage,
        }
    }

    /// A dial to `target`, given up at `dial_deadline`.
    pub fn dial(target: &Target, dial_deadline: Instant) -> Link {
        let mut link = Link::new(
            Role::Initiator,
            target.addr,
            Stage::Dialing { dial_deadline },
        );
        link.expect = target.expect;
        link.scan = target.scan;
        link.ask = target.ask;
        link
    }

    /// A connection from `addr` to our listener, our hello sent.
    pub fn accepted(addr: SocketAddr, handshake: Handshake, handshake_deadline: Instant) -> Link {
        let stage = Stage::Handshake {
            handshake,
            handshake_deadline,
        };
        Link::new(Role::Responder, addr, stage)
    }

    /// The peer, once it is a member.
    pub fn peer(&self) -> Option<&NodeInfo> {
        match &self.stage {
            Stage::Member { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// The peer as its introduction described it, while it is being admitted.
    pub fn candidate(&self) -> Option<&Candidate> {
        match &self.stage {
            Stage::Admitting { candidate, .. } => Some(candidate),
            _ => None,
        }
    }

    /// The node the peer introduced itself as (admitting or member).
    pub fn peer_id(&self) -> Option<NodeId> {
        self.candidate()
            .map(|c| c.id)
            .or_else(|| self.peer().map(|p| p.id))
    }

    fn session(&mut self) -> Option<&mut Session> {
        match &mut self.stage {
            Stage::Introducing { session, .. }
            | Stage::Admitting { session, .. }
            | Stage::Member { session, .. } => Some(session),
            _ => None,
        }
    }

    pub fn is_member(&self) -> bool {
        matches!(self.stage, Stage::Member { .. })
    }

    pub fn is_dialing(&self) -> bool {
        matches!(self.stage, Stage::Dialing { .. })
    }

    pub fn is_handshaking(&self) -> bool {
        matches!(self.stage, Stage::Handshake { .. })
    }

    pub fn is_confirming(&self) -> bool {
        matches!(self.stage, Stage::Confirming { .. })
    }

    pub fn is_introducing(&self) -> bool {
        matches!(self.stage, Stage::Introducing { .. })
    }

    /// The id the peer proved in the handshake, once it has.
    pub fn proven_id(&self) -> Option<NodeId> {
        match &self.stage {
            Stage::Introducing { proven, .. } => Some(*proven),
            Stage::Admitting { candidate, .. } => Some(candidate.id),
            Stage::Member { peer, .. } => Some(peer.id),
            _ => None,
        }
    }

    pub fn is_admitting(&self) -> bool {
        matches!(self.stage, Stage::Admitting { .. })
    }

    /// The peer has said who it is (admitting or member).
    #[cfg(test)]
    pub fn is_introduced(&self) -> bool {
        self.peer_id().is_some()
    }

    /// Both ends have admitted each other: our `Profile` is (being) sent, and the link takes
    /// the peer's and what follows it.
    pub fn is_admitted(&self) -> bool {
        matches!(
            self.stage,
            Stage::Admitting {
                ours: Some(true),
                theirs: Some(true),
                ..
            } | Stage::Member { .. }
        )
    }

    /// Our dial that the peer may be crossing with its own, each made before the other
    /// arrived: a scan (the peer may be scanning us), or a dial to a node learnt by id (a
    /// beacon, a list: it may have learnt of us alike). Not a seed's nor a lost member's:
    /// the application named those, and the peer holds no rule to leave them to us.
    pub fn may_cross(&self) -> bool {
        self.role == Role::Initiator && (self.scan || (self.expect.is_some() && !self.ask))
    }

    /// Nothing proves yet that the peer is the node it was dialed for.
    pub fn is_unproven(&self) -> bool {
        matches!(
            self.stage,
            Stage::Dialing { .. } | Stage::Handshake { .. } | Stage::Confirming { .. }
        )
    }

    /// The running deadline of a link not yet a member, and what it is for.
    fn timer(&self) -> Option<(Timer, Instant)> {
        match self.stage {
            Stage::Dialing { dial_deadline } => Some((Timer::Dial, dial_deadline)),
            Stage::Handshake {
                handshake_deadline, ..
            }
            | Stage::Confirming {
                handshake_deadline, ..
            }
            | Stage::Introducing {
                handshake_deadline, ..
            } => Some((Timer::Handshake, handshake_deadline)),
            Stage::Admitting {
                admission_deadline, ..
            } => Some((Timer::Admission, admission_deadline)),
            Stage::Member { .. } | Stage::Failed => None,
        }
    }

    /// Still on its way to membership, under a deadline.
    pub fn is_pending(&self) -> bool {
        self.timer().is_some()
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.timer().map(|(_, at)| at)
    }

    /// The deadline that ran out by `now`, if any.
    pub fn expired(&self, now: Instant) -> Option<Timer> {
        self.timer()
            .filter(|&(_, at)| at <= now)
            .map(|(timer, _)| timer)
    }

    /// When this link next needs the detector (its silence bound, or its first probe
    /// round) or [`Link::expired`].
    pub fn poll_timeout(&self, detector: &DetectorConfig) -> Option<Instant> {
        match &self.stage {
            Stage::Member { liveness, .. } => Some(liveness.deadline(detector)),
            _ => self.deadline(),
        }
    }

    /// A member's liveness (what [`Link::poll_timeout`] reads for a member).
    pub fn liveness(&self) -> Option<&Liveness> {
        match &self.stage {
            Stage::Member { liveness, .. } => Some(liveness),
            _ => None,
        }
    }

    /// The address this node itself dials or probes the peer at, when known: see
    /// [`own_dial_addr`].
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        let dialed = (self.role == Role::Initiator).then_some(self.addr);
        if let Some(c) = self.candidate() {
            return Some(own_dial_addr(c.ip, c.port, c.advertised, dialed));
        }
        match (self.peer(), self.role) {
            (Some(p), _) => Some(own_dial_addr(p.ip, p.port, p.advertised, dialed)),
            (None, Role::Initiator) => Some(self.addr),
            (None, Role::Responder) => None,
        }
    }

    /// The largest frame accepted now. Until the peer's key confirmation is verified
    /// nothing is authenticated: [`MAX_HANDSHAKE_FRAME`] (a hello or the confirmation). Then
    /// until both ends have admitted each other, the largest valid introduction (metadata
    /// up to `max_metadata`) and nothing bigger: [`admission_frame_limit`]. Only a member
    /// may send frames up to `max_frame`.
    pub fn frame_limit(&self, max_frame: usize, max_metadata: usize) -> usize {
        match &self.stage {
            Stage::Dialing { .. }
            | Stage::Handshake { .. }
            | Stage::Confirming { .. }
            | Stage::Failed => MAX_HANDSHAKE_FRAME,
            Stage::Introducing { .. } | Stage::Admitting { .. } => {
                admission_frame_limit(max_metadata).min(max_frame)
            }
            Stage::Member { .. } => max_frame,
        }
    }

    /// The frame decoder, taken out while its frames are handled (they borrow its
    /// buffer, and handling them needs the whole node); see [`Link::return_decoder`].
    pub fn lend_decoder(&mut self) -> FrameDecoder {
        std::mem::replace(&mut self.decoder, FrameDecoder::new(0))
    }

    pub fn return_decoder(&mut self, decoder: FrameDecoder) {
        self.decoder = decoder;
    }

    /// At end of stream: whether it ended between frames.
    pub fn finish_reading(&self) -> Result<(), FrameError> {
        self.decoder.finish()
    }

    /// The dial connected and our hello went out.
    pub fn connected(&mut self, handshake: Handshake, handshake_deadline: Instant) {
        debug_assert!(self.is_dialing());
        self.stage = Stage::Handshake {
            handshake,
            handshake_deadline,
        };
    }

    /// Takes the peer's hello. The initiator returns its key confirmation, to send now;
    /// the responder returns nothing: it sends nothing sealed before the peer has proven
    /// the cluster key ([`Link::confirm`]).
    pub fn finish_handshake(
        &mut self,
        hello: &[u8],
        identity: &Identity,
    ) -> Result<Option<Vec<u8>>, ConnectionError> {
        let Stage::Handshake {
            handshake,
            handshake_deadline,
        } = std::mem::replace(&mut self.stage, Stage::Failed)
        else {
            unreachable!("hellos are taken while handshaking only")
        };
        let (confirming, ours) = handshake.finish(hello, identity)?;
        self.stage = Stage::Confirming {
            confirming,
            handshake_deadline,
        };
        Ok(ours)
    }

    /// Takes the peer's key confirmation: returns the id it proved and, for the responder,
    /// its own confirmation to send now (before anything else it seals).
    pub fn confirm(
        &mut self,
        record: &mut [u8],
    ) -> Result<(NodeId, Option<Vec<u8>>), ConnectionError> {
        let Stage::Confirming {
            confirming,
            handshake_deadline,
        } = std::mem::replace(&mut self.stage, Stage::Failed)
        else {
            unreachable!("confirmations are taken while confirming only")
        };
        let done = confirming.verify(record)?;
        self.stage = Stage::Introducing {
            session: done.session,
            proven: done.peer,
            handshake_deadline,
        };
        Ok((done.peer, done.confirmation))
    }

    /// Opens a record where it lies and decodes its message, which borrows the record.
    /// Anything authentic from a member is a sign of life.
    pub fn receive<'r>(
        &mut self,
        now: Instant,
        record: &'r mut [u8],
        max_metadata: usize,
    ) -> Result<Message<'r>, ConnectionError> {
        let Some(session) = self.session() else {
            return Err(ConnectionError::Protocol("data before the handshake"));
        };
        let plain = session.open_in_place(record)?;
        if let Stage::Member { liveness, .. } = &mut self.stage {
            liveness.heard(now);
        }
        Ok(Message::decode(plain, max_metadata)?)
    }

    /// Seals a message, if the link has a session yet.
    pub fn seal(&mut self, msg: &Message) -> Option<Result<Vec<u8>, RecordError>> {
        Some(self.session()?.seal(&msg.encode()))
    }

    /// Seals the concatenation of `parts`, if the link has a session yet.
    pub fn seal_parts(&mut self, parts: &[&[u8]]) -> Option<Result<Vec<u8>, RecordError>> {
        Some(self.session()?.seal_parts(parts))
    }

    /// The node a `Message::Introduce` describes, as this node's filter will judge it: with
    /// the id proven in the handshake (the caller has checked the claimed one equals it), at
    /// the address seen on the socket, not one it claims. `None` for any other message.
    pub fn candidate_from_introduction(&self, msg: Message) -> Option<Candidate> {
        let Message::Introduce {
            id,
            host_name,
            port,
            advertised,
        } = msg
        else {
            return None;
        };
        debug_assert_eq!(Some(id), self.proven_id(), "checked by the caller");
        Some(Candidate {
            id: self.proven_id()?,
            host_name,
            ip: self.addr.ip(),
            port,
            advertised,
        })
    }

    /// The peer introduced itself: admission starts, under its own deadline.
    pub fn introduced(&mut self, candidate: Candidate, admission_deadline: Instant) {
        let Stage::Introducing { session, .. } = std::mem::replace(&mut self.stage, Stage::Failed)
        else {
            unreachable!("introductions are taken while introducing only")
        };
        self.stage = Stage::Admitting {
            session,
            candidate,
            ours: None,
            theirs: None,
            admission_deadline,
        };
    }

    /// Our verdict on the peer, sealed for it. `None` if not admitting or already given.
    pub fn our_verdict(&mut self, accept: bool) -> Option<Result<Vec<u8>, RecordError>> {
        let Stage::Admitting { session, ours, .. } = &mut self.stage else {
            return None;
        };
        if ours.is_some() {
            return None;
        }
        *ours = Some(accept);
        Some(session.seal(&Message::Verdict { accepted: accept }.encode()))
    }

    /// The peer's verdict on us; the peer, who gave it.
    pub fn their_verdict(&mut self, accepted: bool) -> Result<Candidate, ConnectionError> {
        let Stage::Admitting {
            theirs, candidate, ..
        } = &mut self.stage
        else {
            unreachable!("verdicts are taken while admitting only")
        };
        if theirs.is_some() {
            return Err(ConnectionError::Protocol("second verdict"));
        }
        *theirs = Some(accepted);
        Ok(candidate.clone())
    }

    /// The peer's `Profile` (metadata already checked by the caller) makes it a member, if
    /// both ends have admitted each other; returns the peer then. `None`, and no change, if
    /// they have not: a profile before both verdicts breaks the protocol.
    pub fn become_member(
        &mut self,
        now: Instant,
        detector: &DetectorConfig,
        metadata: String,
        master_eligible: bool,
        max_message: u32,
    ) -> Option<NodeInfo> {
        if !self.is_admitted() || self.is_member() {
            return None;
        }
        let Stage::Admitting {
            mut session,
            candidate,
            ..
        } = std::mem::replace(&mut self.stage, Stage::Failed)
        else {
            unreachable!("is_admitted and not a member")
        };
        let Candidate {
            id,
            host_name,
            ip,
            port,
            advertised,
        } = candidate;
        let peer = NodeInfo {
            id,
            host_name,
            ip,
            port,
            advertised,
            metadata,
            master_eligible,
        };
        self.peer_max_message = max_message as usize;
        let probe = session
            .take_probe_keys()
            .map(|(send, recv)| Box::new(ProbeKeys::new(&send, &recv)));
        self.stage = Stage::Member {
            session,
            peer: peer.clone(),
            liveness: Liveness::new(now, detector),
            probe,
        };
        Some(peer)
    }

    /// A member's new metadata; the member as it is now.
    pub fn update_metadata(&mut self, metadata: String) -> &NodeInfo {
        let Stage::Member { peer, .. } = &mut self.stage else {
            unreachable!("updates are taken from members only")
        };
        peer.metadata = metadata;
        peer
    }

    /// A member's silence up to `now` does not count: we were not reading its connection
    /// (see [`Cluster::set_reading_paused`](super::cluster::Cluster::set_reading_paused)).
    pub fn excuse_silence(&mut self, now: Instant) {
        if let Stage::Member { liveness, .. } = &mut self.stage {
            liveness.heard(now);
        }
    }

    /// An authentic probe from the member arrived.
    pub fn probed(&mut self, now: Instant) {
        if let Stage::Member { liveness, .. } = &mut self.stage {
            liveness.probed(now);
        }
    }

    /// The node's probe round takes this member in.
    pub fn in_rounds(&mut self) {
        if let Stage::Member { liveness, .. } = &mut self.stage {
            liveness.in_rounds();
        }
    }

    /// Our own process was paused: see [`Liveness::recheck`].
    pub fn recheck(&mut self, now: Instant, detector: &DetectorConfig) {
        if let Stage::Member { liveness, .. } = &mut self.stage {
            liveness.recheck(now, detector);
        }
    }

    /// True if the member has been silent long enough to be asked for an answer, directly
    /// and through others.
    pub fn wants_answer(&self, now: Instant, detector: &DetectorConfig) -> bool {
        match &self.stage {
            Stage::Member { liveness, .. } => liveness.wants_answer(now, detector),
            _ => false,
        }
    }

    /// True while this node asks the member for an answer: see [`Liveness::is_asking`].
    pub fn is_asking(&self) -> bool {
        match &self.stage {
            Stage::Member { liveness, .. } => liveness.is_asking(),
            _ => false,
        }
    }

    /// A regular probe asking for an answer went to the member: see
    /// [`Liveness::round_probe_sent`].
    pub fn round_probe_sent(&mut self, now: Instant) {
        if let Stage::Member { liveness, .. } = &mut self.stage {
            liveness.round_probe_sent(now);
        }
    }

    /// True if this node begins to ask the member, its regular probe unanswered: see
    /// [`Liveness::round_probe_overdue`].
    pub fn round_probe_overdue(&mut self, now: Instant, detector: &DetectorConfig) -> bool {
        match &mut self.stage {
            Stage::Member { liveness, .. } => liveness.round_probe_overdue(now, detector),
            _ => false,
        }
    }

    /// Another member asks this one: see [`Liveness::ask`].
    pub fn ask(&mut self, now: Instant, detector: &DetectorConfig) -> bool {
        match &mut self.stage {
            Stage::Member { liveness, .. } => liveness.ask(now, detector),
            _ => false,
        }
    }

    /// See [`Liveness::tell_due`].
    pub fn tell_due(&mut self, now: Instant, detector: &DetectorConfig) -> bool {
        match &mut self.stage {
            Stage::Member { liveness, .. } => liveness.tell_due(now, detector),
            _ => false,
        }
    }

    /// How long since the member's last authentic probe datagram (`None`: not a member).
    pub fn probe_silence(&self, now: Instant) -> Option<Duration> {
        match &self.stage {
            Stage::Member { liveness, .. } => Some(liveness.probe_silence(now)),
            _ => None,
        }
    }

    /// How long the member has been silent at `now` (`None`: not a member).
    pub fn silence(&self, now: Instant) -> Option<Duration> {
        match &self.stage {
            Stage::Member { liveness, .. } => Some(liveness.silence(now)),
            _ => None,
        }
    }

    /// The member's probe keys.
    pub fn probe_keys(&mut self) -> Option<&mut ProbeKeys> {
        match &mut self.stage {
            Stage::Member { probe, .. } => probe.as_deref_mut(),
            _ => None,
        }
    }

    /// True if the member has been silent past the detector's bound at `now`.
    pub fn is_dead(&self, now: Instant, detector: &DetectorConfig) -> bool {
        match &self.stage {
            Stage::Member { liveness, .. } => liveness.is_dead(now, detector),
            _ => false,
        }
    }

    /// A `Ping` record for the member, if one is due at `now` (see
    /// [`Liveness::record_due`]; `asked`: the member sent us one): its bytes, or the
    /// record layer's refusal to seal them.
    pub fn record_due(
        &mut self,
        now: Instant,
        detector: &DetectorConfig,
        asked: bool,
    ) -> Option<Result<Vec<u8>, RecordError>> {
        let Stage::Member {
            session, liveness, ..
        } = &mut self.stage
        else {
            return None;
        };
        if !liveness.record_due(now, detector, asked) {
            return None;
        }
        Some(session.seal(&Message::Ping.encode()))
    }

    /// The peer, if the link carried a member.
    pub fn into_member(self) -> Option<NodeInfo> {
        match self.stage {
            Stage::Member { peer, .. } => Some(peer),
            _ => None,
        }
    }
}

/// A link on which `peer` has introduced itself, for tests of what holds links.
#[cfg(test)]
pub(crate) fn introduced_link(peer: NodeInfo, role: Role, seed: u64) -> Link {
    let peer = Candidate::from(&peer);
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let t0 = Instant::now();
    let addr = SocketAddr::new(peer.ip, 40000);
    let (mut link, mut their_confirmation) = confirming_link(addr, &mut rng);
    link.role = role;
    link.confirm(&mut their_confirmation[4..])
        .expect("a genuine confirmation");
    link.introduced(peer, t0);
    link
}

/// An accepted link past the peer's hello, with the peer's key confirmation to come.
#[cfg(test)]
fn confirming_link(addr: SocketAddr, rng: &mut rand_chacha::ChaCha20Rng) -> (Link, Vec<u8>) {
    let t0 = Instant::now();
    let (me, them) = (Identity::generate(rng), Identity::generate(rng));
    let (ours, our_hello) = Handshake::start(Role::Responder, "c", None, rng);
    let (theirs, their_hello) = Handshake::start(Role::Initiator, "c", None, rng);
    let mut link = Link::accepted(addr, ours, t0);
    let sent = link.finish_handshake(&their_hello, &me);
    assert_eq!(sent, Ok(None), "a responder sends nothing sealed yet");
    let (_, confirmation) = theirs.finish(&our_hello, &them).expect("a genuine hello");
    (link, confirmation.expect("the initiator confirms at once"))
}

/// Where this node itself (not a hint it passes on) dials or probes a peer seen at `ip`
/// that listens on `port` and advertised `advertised`: the advertised address only if it
/// is no third party's, that is, it is at the peer's own IP address as seen on the socket
/// or it is the address this node dialed and the handshake proved (`dialed`); else the
/// address seen on the socket with the port the peer listens on. A peer that advertises
/// another host's address thus makes this node dial that host only through member-list
/// hints, which the dial budget bounds, never in its redials or probes.
pub fn own_dial_addr(
    ip: IpAddr,
    port: u16,
    advertised: Option<SocketAddr>,
    dialed: Option<SocketAddr>,
) -> SocketAddr {
    match advertised {
        Some(a) if a.ip() == ip || Some(a) == dialed => a,
        _ => SocketAddr::new(ip, port),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn detector() -> DetectorConfig {
        DetectorConfig {
            interval: S(5),
            misses: 3,
            grace: S(1),
            per_interval: 9,
            rounds: 1,
        }
    }

    fn peer() -> NodeInfo {
        NodeInfo {
            id: NodeId([9; 16]),
            host_name: "peer".into(),
            ip: "10.0.0.9".parse().unwrap(),
            port: 27272,
            advertised: None,
            metadata: "{}".into(),
            master_eligible: true,
        }
    }

    /// A link dialed at `t0` and connected, with the peer's hello and the peer's own end.
    fn connected(t0: Instant, rng: &mut ChaCha20Rng) -> (Link, Vec<u8>, Handshake, Vec<u8>) {
        let target = Target {
            addr: "10.0.0.9:27272".parse().unwrap(),
            expect: Some(NodeId([9; 16])),
            scan: false,
            ask: false,
        };
        let mut link = Link::dial(&target, t0 + S(3));
        assert!(link.is_pending() && link.is_unproven());
        assert_eq!(link.expired(t0 + S(3) - Duration::from_nanos(1)), None);
        assert_eq!(link.expired(t0 + S(3)), Some(Timer::Dial));
        let (ours, our_hello) = Handshake::start(Role::Initiator, "c", None, rng);
        let (theirs, their_hello) = Handshake::start(Role::Responder, "c", None, rng);
        link.connected(ours, t0 + S(6));
        assert_eq!(link.deadline(), Some(t0 + S(6)));
        assert_eq!(link.expired(t0 + S(6)), Some(Timer::Handshake));
        (link, their_hello, theirs, our_hello)
    }

    #[test]
    fn each_stage_runs_its_own_deadline_and_a_member_none() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let t0 = Instant::now();
        let (me, them) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
        let (mut link, their_hello, theirs, our_hello) = connected(t0, &mut rng);
        assert_eq!(link.frame_limit(1 << 20, 64), MAX_HANDSHAKE_FRAME);
        let sent = link.finish_handshake(&their_hello, &me).unwrap();
        let sent = sent.expect("the initiator confirms at once");
        // Confirming stays under the handshake's deadline, and at the handshake's frame
        // limit until the peer's key confirmation is verified.
        assert!(link.is_confirming() && link.is_unproven());
        assert_eq!(link.frame_limit(1 << 20, 64), MAX_HANDSHAKE_FRAME);
        assert_eq!(link.expired(t0 + S(6)), Some(Timer::Handshake));
        let (peer_end, _) = theirs.finish(&our_hello, &them).unwrap();
        let mut mine = sent;
        let peer_done = peer_end.verify(&mut mine[4..]).unwrap();
        assert_eq!(peer_done.peer, me.id());
        let mut theirs = peer_done.confirmation.unwrap();
        assert_eq!(link.confirm(&mut theirs[4..]), Ok((them.id(), None)));
        assert!(link.is_introducing() && !link.is_unproven());
        assert_eq!(link.proven_id(), Some(them.id()));
        assert_eq!(link.frame_limit(1 << 20, 64), admission_frame_limit(64));
        assert_eq!(link.expired(t0 + S(6)), Some(Timer::Handshake));
        link.introduced(Candidate::from(&peer()), t0 + S(13));
        assert_eq!(link.frame_limit(1 << 20, 64), admission_frame_limit(64));
        assert!(link.is_admitting() && !link.is_unproven());
        assert_eq!(link.peer_id(), Some(NodeId([9; 16])));
        assert_eq!(link.expired(t0 + S(12)), None);
        assert_eq!(link.expired(t0 + S(13)), Some(Timer::Admission));
        assert!(link.our_verdict(true).unwrap().is_ok());
        assert!(link.our_verdict(true).is_none(), "one verdict only");
        let p = peer();
        let profile = |l: &mut Link| {
            l.become_member(t0 + S(8), &detector(), p.metadata.clone(), true, 1 << 20)
        };
        // A profile before the peer's own verdict: no member, nothing changed.
        assert_eq!(profile(&mut link), None);
        assert!(link.is_admitting() && !link.is_admitted());
        assert_eq!(link.their_verdict(true), Ok(Candidate::from(&p)));
        assert_eq!(
            link.their_verdict(true),
            Err(ConnectionError::Protocol("second verdict"))
        );
        assert!(
            link.is_admitted() && link.peer().is_none(),
            "no profile yet"
        );
        assert_eq!(profile(&mut link), Some(peer()));
        assert_eq!(link.peer_max_message, 1 << 20);
        assert_eq!(profile(&mut link), None, "one profile only");
        assert!(link.is_member() && !link.is_pending());
        assert_eq!(link.frame_limit(1 << 20, 64), 1 << 20);
        assert_eq!(link.deadline(), None);
        assert_eq!(link.expired(t0 + S(3600)), None);
        // A member's wake-up is its heartbeat.
        assert_eq!(link.poll_timeout(&detector()), Some(t0 + S(13)));
        assert_eq!(link.into_member(), Some(peer()));
    }

    #[test]
    fn a_responder_hands_its_confirmation_over_only_with_the_peers_verified() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let addr = "10.0.0.9:40000".parse().unwrap();
        let (mut link, mut confirmation) = confirming_link(addr, &mut rng);
        let (proven, ours) = link.confirm(&mut confirmation[4..]).unwrap();
        assert_eq!(link.proven_id(), Some(proven));
        assert!(ours.is_some(), "released once the initiator's is verified");
        // A confirmation under other keys fails, and releases nothing.
        let (mut link, _) = confirming_link(addr, &mut rng);
        let (_, mut other) = confirming_link(addr, &mut rng);
        assert!(link.confirm(&mut other[4..]).is_err());
        assert!(!link.is_pending() && !link.is_introduced());
    }

    #[test]
    fn a_failed_handshake_leaves_a_link_neither_pending_nor_unproven() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let t0 = Instant::now();
        let me = Identity::generate(&mut rng);
        let (mut link, ..) = connected(t0, &mut rng);
        assert!(link.finish_handshake(b"not a hello", &me).is_err());
        assert!(!link.is_pending() && !link.is_unproven() && !link.is_introduced());
        assert_eq!(
            link.receive(t0, &mut [2; 40], 64),
            Err(ConnectionError::Protocol("data before the handshake"))
        );
    }

    #[test]
    fn an_accepted_link_awaits_the_hello_under_the_handshake_deadline() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let t0 = Instant::now();
        let (hs, _) = Handshake::start(Role::Responder, "c", None, &mut rng);
        let addr = "10.0.0.9:40000".parse().unwrap();
        let link = Link::accepted(addr, hs, t0 + S(5));
        assert!(link.is_handshaking() && link.is_pending());
        assert_eq!(
            link.listen_addr(),
            None,
            "a peer's source port is not its listener"
        );
        assert_eq!(link.expired(t0 + S(5)), Some(Timer::Handshake));
    }
}
