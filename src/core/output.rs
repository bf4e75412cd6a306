//! What the core asks of the driver and tells the application: the vocabulary shared by
//! [`super::cluster`] and whoever steps it.

use std::net::SocketAddr;

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
    /// A connection failed; for logs and counters.
    ConnectionFailed {
        addr: SocketAddr,
        error: ConnectionError,
    },
    /// A beacon of this cluster from `addr` was ignored: it was under another cluster key
    /// (or none where this node has one, or the other way round). For logs.
    BeaconKeyMismatch { addr: SocketAddr },
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
    /// Handshakes whose key confirmation from the peer was verified (a wrong key fails).
    pub handshakes_completed: u64,
    pub handshakes_failed: u64,
    pub frames_rejected: u64,
    pub connections_refused: u64,
    pub beacons_sent: u64,
    pub beacons_ignored: u64,
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
}
