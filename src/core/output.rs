//! What the core asks of the driver and tells the application: the vocabulary shared by
//! [`super::cluster`] and whoever steps it.

use std::net::SocketAddr;

pub use super::calls::Answer;
#[cfg(doc)]
use super::cluster::Cluster;
use super::error::ConnectionError;
use super::node::{Candidate, NodeId, NodeInfo};

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
    /// Open a TCP connection; answer with [`Cluster::connected`] or
    /// [`Cluster::dial_failed`].
    Dial { conn: ConnId, addr: SocketAddr },
    /// Multicast this beacon.
    Beacon(Vec<u8>),
    /// Send this liveness probe datagram from the probe socket (UDP, the node's TCP port
    /// number) to `addr`; losing it is fine.
    Probe { addr: SocketAddr, bytes: Vec<u8> },
    /// Decide whether `node` may join; answer with [`Cluster::admit`]. Every connection
    /// is asked about, before anything of the membership crosses it.
    AskAdmission { conn: ConnId, node: Candidate },
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
    /// A node admitted this one (it is the decider); reported when it becomes a member,
    /// just before [`Event::NodeAdded`], as only then is its metadata known.
    NodeAccepted(NodeInfo),
    /// A node refused this one (it is the decider): only what its introduction said is
    /// known of it.
    NodeRejected(Candidate),
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
    /// Member `from` asks handler `name` of ours (we serve it) with request `id`; answer
    /// with [`Cluster::reply`]. A JSON payload is valid JSON text.
    Request {
        from: NodeId,
        id: u64,
        name: String,
        binary: bool,
        payload: Vec<u8>,
    },
    /// Our request `id` to `from` ended: answered, or failed here (timeout, `from`
    /// removed). Exactly one per request, unless the application cancelled it first.
    Answer {
        id: u64,
        from: NodeId,
        answer: Answer,
    },
    /// Member `node` was removed (see [`Event::NodeRemoved`], which this follows) with
    /// custom events sent to it that it never acknowledged: they may or may not have
    /// reached it, and are not sent again. In the order they were sent.
    Undelivered {
        node: NodeInfo,
        events: Vec<UndeliveredEvent>,
    },
    /// A connection failed; for logs and counters.
    ConnectionFailed {
        addr: SocketAddr,
        error: ConnectionError,
    },
    /// Why a member was removed or a node refused, told just before `NodeRemoved` and for
    /// every refusal by this node. For logs (`DEBUG=espial`), not the application.
    Explained {
        node: Candidate,
        what: Happened,
        reason: Reason,
    },
    /// A beacon of this cluster from `addr` was ignored: it was under another cluster key
    /// (or none where this node has one, or the other way round). For logs.
    BeaconKeyMismatch { addr: SocketAddr },
    /// A beacon from `addr` was ignored: it speaks protocol version `theirs`, this node
    /// `ours`. For logs.
    BeaconVersionMismatch {
        addr: SocketAddr,
        ours: u8,
        theirs: u8,
    },
    /// A beacon of this cluster from `addr` (authenticated, in a keyed cluster) was not
    /// acted on: sent from another address than it names, stale or replayed. For logs.
    BeaconRefused {
        addr: SocketAddr,
        reason: super::beacon::Refused,
    },
}

/// A custom event in [`Event::Undelivered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndeliveredEvent {
    pub name: String,
    pub binary: bool,
    pub payload: Vec<u8>,
}

/// What [`Event::Explained`] explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// The member was removed.
    Removed,
    /// This node refused the node at admission.
    Refused,
}

/// Why a member was removed or a node refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// It said goodbye.
    Left,
    /// It went silent past the failure detector's bound, or did not come back in time.
    Timeout,
    /// Its connection dropped and a redial failed or was refused: it crashed or stopped.
    Reset,
    /// It broke a protocol rule, and its connection was closed for it.
    ProtocolViolation,
    /// Another node now answers at its address.
    Replaced,
    /// Our connection filter said no.
    Filter,
    /// Our connection filter failed on it (threw, rejected, answered no boolean, timed out).
    FilterError,
    /// Our filter refused it before, and its back-off has not run out.
    RefusedBefore,
    /// Too many members, or too many from its address.
    Full,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::Left => "left (it said goodbye)",
            Reason::Timeout => "timeout (silent past the failure detector's bound)",
            Reason::Reset => "reset (its connection dropped and the redial failed)",
            Reason::ProtocolViolation => "protocol violation",
            Reason::Replaced => "replaced (another node answers at its address)",
            Reason::Filter => "refused by the connection filter",
            Reason::FilterError => "filter error (the connection filter failed)",
            Reason::RefusedBefore => {
                "refused by the connection filter before, and still backing off"
            }
            Reason::Full => "full (max members in total or from its address)",
        })
    }
}

/// Counters, for `stats()` and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Custom event messages sent (one per target) and received.
    pub messages_out: u64,
    pub messages_in: u64,
    /// Custom events sent again on a member's new connection (not acknowledged on the old),
    /// and those received again and dropped as duplicates.
    pub messages_resent: u64,
    pub duplicates_dropped: u64,
    /// Custom events reported in `undelivered`: their peer was removed before it
    /// acknowledged them.
    pub messages_undelivered: u64,
    /// Bytes written to and read from connections, all protocol traffic included.
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Handshakes whose key confirmation from the peer was verified (a wrong key fails).
    pub handshakes_completed: u64,
    pub handshakes_failed: u64,
    pub frames_rejected: u64,
    pub connections_refused: u64,
    pub beacons_sent: u64,
    pub beacons_ignored: u64,
    /// Beacons of this cluster (authenticated, in a keyed cluster) not acted on: sent from
    /// another address than the one they name, or, keyed, stale or replayed.
    pub beacons_refused: u64,
    pub nodes_rejected: u64,
    /// Messages from a peer that broke a protocol rule after the handshake (a statement
    /// the peer has no authority for, metadata that is not a JSON object, a custom event
    /// whose JSON text is not JSON): never acted on.
    pub messages_refused: u64,
    /// Nodes refused because the connection filter failed: it threw, rejected, answered
    /// something that is not a boolean, or did not answer in time.
    pub filter_errors: u64,
    /// Peers refused for holding another `cluster_key` (or none where this node has one, or
    /// the other way round): handshakes that failed key confirmation (also counted in
    /// `handshakes_failed`) and beacons of this cluster under another key (also counted in
    /// `beacons_ignored`).
    pub key_mismatches: u64,
    /// Dials to addresses learnt from beacons and member lists put off because the dial
    /// budget was spent (each counted once; it is dialed when the budget allows, if still
    /// wanted then).
    pub dials_skipped: u64,
    /// Dials meant for a node (an id from a beacon or a member list) that reached a peer
    /// proving another id: failed, nothing added (also counted in `handshakes_failed`).
    pub identity_mismatches: u64,
    /// Peers refused for speaking another protocol version: handshakes (also counted in
    /// `handshakes_failed`) and beacons of this cluster's magic (also in `beacons_ignored`).
    pub version_mismatches: u64,
    /// Liveness probe datagrams sent (direct pings, answers, relay requests, and what this
    /// node relayed for others) and authentic ones received.
    pub probes_sent: u64,
    pub probes_received: u64,
    /// Probe datagrams dropped: malformed, from a sender that is no member or an address
    /// no member has, failing authentication, replayed, or a relay not asked for.
    pub probes_rejected: u64,
    /// Probes this node passed on between two other members (relayed pings and answers).
    pub probes_relayed: u64,
    /// Relay requests sent: a member silent for two intervals probed through others.
    pub indirect_probes: u64,
    /// Pings asking a silent member for an answer, sent to it directly (its relayed asks
    /// are `indirect_probes`).
    pub answers_asked: u64,
    /// `Asking` records sent: this node's regular probe to a member went unanswered, and it
    /// told each other member it hears that it asks that one.
    pub asks_told: u64,
    /// `Asking` records acted on: a member said it asks another, and this node began to
    /// ask it too (at most one an interval per member asked about).
    pub asks_taken: u64,
    /// Member lists asked of a new member that follows another master (a healed
    /// partition): at most one per `beacon_interval`.
    pub lists_asked_across: u64,
    /// Lookups of `network.peers` names that failed (no answer, no address, or an error);
    /// counted by the driver, which does the lookups.
    pub seed_lookups_failed: u64,
    /// Times a timer of ours fired so late that our own process must have been paused:
    /// every member was probed again before any silence counted.
    pub pauses_noticed: u64,
    /// Requests sent (one per target) and received for a handler of ours.
    pub requests_out: u64,
    pub requests_in: u64,
    /// Replies dropped for coming from the target after their request ended (timed out,
    /// aborted, target removed) or after a first reply to it (see `calls::MAX_ENDED`).
    pub replies_late: u64,
    /// Replies dropped for answering no request of ours to their sender: never sent, or
    /// sent to another node, ended or not.
    pub replies_refused: u64,
}
