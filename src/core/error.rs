//! Typed errors of the core. Each says, in words a Node.js user understands, what went wrong
//! on which connection; none of them leaves protocol state half-changed: the caller closes
//! the connection that produced it.

use std::fmt;

use super::node::NodeId;

/// Why a frame could not be read off a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer declared a frame longer than this connection allows; nothing was allocated.
    TooLarge { declared: usize, max: usize },
    /// The stream ended in the middle of a frame.
    Truncated { missing: usize },
    /// A frame of a kind that is not valid at this point of the protocol.
    UnexpectedKind(u8),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { declared, max } => write!(
                f,
                "peer declared a {declared}-byte frame, over the {max}-byte limit"
            ),
            FrameError::Truncated { missing } => {
                write!(
                    f,
                    "connection ended {missing} bytes short of a complete frame"
                )
            }
            FrameError::UnexpectedKind(k) => write!(f, "unexpected frame kind {k}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Why the handshake with a peer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer's hello is not a well-formed espial hello.
    Malformed(&'static str),
    /// The peer speaks a protocol version we do not.
    Version { ours: u8, theirs: u8 },
    /// The peer belongs to another cluster name.
    ClusterMismatch { ours: String, theirs: String },
    /// The peer's public key is not a valid P-256 point.
    BadPublicKey,
    /// One side has a cluster key and the other has none or another one (or the handshake
    /// was tampered with): key confirmation failed.
    KeyMismatch,
    /// The peer's key confirmation does not prove the identity key it names: a signature
    /// that does not verify over this handshake's transcript.
    BadProof,
    /// A dial meant for node `expected` reached a peer that proved another id: the hint it
    /// came from (a beacon, a member list) was stale or forged. Nothing is added.
    UnexpectedIdentity { expected: NodeId, proven: NodeId },
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Malformed(what) => write!(f, "malformed handshake: {what}"),
            HandshakeError::Version { ours, theirs } => write!(
                f,
                "peer speaks espial protocol version {theirs}, this node speaks {ours}"
            ),
            HandshakeError::ClusterMismatch { ours, theirs } => write!(
                f,
                "peer belongs to cluster \"{theirs}\", this node to \"{ours}\""
            ),
            HandshakeError::BadPublicKey => write!(f, "peer sent an invalid P-256 public key"),
            HandshakeError::KeyMismatch => write!(
                f,
                "key confirmation failed: the peer does not hold the same cluster_key, or the handshake was tampered with"
            ),
            HandshakeError::BadProof => write!(
                f,
                "the peer did not prove the identity key it named (bad signature)"
            ),
            HandshakeError::UnexpectedIdentity { expected, proven } => write!(
                f,
                "dialed node {expected}, but the peer proved it is {proven}"
            ),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Why an encrypted record was refused. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The record is shorter than its header and authentication tag.
    Truncated,
    /// A record with a sequence number already seen: a replay.
    Replayed { seq: u64, expected: u64 },
    /// A record from the future: one or more records were skipped or reordered.
    OutOfOrder { seq: u64, expected: u64 },
    /// Authentication failed: the record was forged or corrupted.
    Forged,
    /// The 64-bit nonce counter of this direction is used up; the connection must be
    /// re-established with fresh keys rather than ever reusing a nonce.
    NonceExhausted,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Truncated => write!(f, "encrypted record is truncated"),
            RecordError::Replayed { seq, expected } => write!(
                f,
                "replayed record: sequence {seq} already received (expected {expected})"
            ),
            RecordError::OutOfOrder { seq, expected } => write!(
                f,
                "out-of-order record: sequence {seq} arrived while {expected} was expected"
            ),
            RecordError::Forged => write!(f, "record failed authentication (forged or corrupted)"),
            RecordError::NonceExhausted => {
                write!(
                    f,
                    "nonce counter exhausted; the connection must be re-keyed"
                )
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// Why a decrypted message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ended before a field did.
    Truncated(&'static str),
    /// A field holds a value that cannot be right.
    Invalid(&'static str),
    /// A field is longer than its documented bound.
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// A message type this version does not know.
    UnknownType(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated(field) => write!(f, "message truncated in field {field}"),
            DecodeError::Invalid(field) => write!(f, "invalid value in field {field}"),
            DecodeError::TooLong { field, len, max } => {
                write!(f, "field {field} is {len} bytes, over the {max}-byte limit")
            }
            DecodeError::UnknownType(t) => write!(f, "unknown message type {t}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Every stable code JavaScript sees in `err.code` for an espial error of its own, defined
/// here once; `index.d.ts`'s `EspialErrorCode` lists the same (a test compares them). Node's
/// own `ERR_INVALID_ARG_TYPE` / `ERR_INVALID_ARG_VALUE` are used for bad arguments as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// An option name that espial does not know.
    UnknownOption,
    /// `promote()` on a node with `master_eligible: false`.
    NotEligible,
    /// A custom event named like one of espial's own events.
    ReservedEvent,
    /// An event name that is empty or over 255 bytes.
    InvalidEvent,
    /// `join()` past the number of custom events a node may join.
    TooManyEvents,
    /// A send target is not a current member.
    UnknownTarget,
    /// A payload over `max_message_size` (this node's or a target's).
    MessageTooLarge,
    /// The node is not running (exited).
    NotRunning,
    /// A received custom event whose JSON text does not parse.
    InvalidPayload,
    /// The TCP port could not be bound.
    Bind,
    /// The multicast socket could not be set up on the interface.
    Multicast,
    /// A seed's host name could not be resolved; the node runs without that seed.
    Seed,
    /// The connection filter threw, rejected, answered something that is not a boolean, or
    /// did not answer within `connection_filter_timeout`; the node judged was refused.
    Filter,
    /// A request (or a query's node) was not answered within its timeout.
    Timeout,
    /// No member serves the request's name, or the target does not.
    NoHandler,
    /// The target's handler threw or rejected: its message and code, never its stack.
    Remote,
    /// The target was removed from the cluster before it answered.
    TargetLeft,
    /// The target already has the most requests from this node it takes in flight.
    Busy,
}

impl ErrorCode {
    /// Every code, in the order of the enum.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::UnknownOption,
        ErrorCode::NotEligible,
        ErrorCode::ReservedEvent,
        ErrorCode::InvalidEvent,
        ErrorCode::TooManyEvents,
        ErrorCode::UnknownTarget,
        ErrorCode::MessageTooLarge,
        ErrorCode::NotRunning,
        ErrorCode::InvalidPayload,
        ErrorCode::Bind,
        ErrorCode::Multicast,
        ErrorCode::Seed,
        ErrorCode::Filter,
        ErrorCode::Timeout,
        ErrorCode::NoHandler,
        ErrorCode::Remote,
        ErrorCode::TargetLeft,
        ErrorCode::Busy,
    ];

    /// The string in `err.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownOption => "ERR_ESPIAL_UNKNOWN_OPTION",
            ErrorCode::NotEligible => "ERR_ESPIAL_NOT_ELIGIBLE",
            ErrorCode::ReservedEvent => "ERR_ESPIAL_RESERVED_EVENT",
            ErrorCode::InvalidEvent => "ERR_ESPIAL_INVALID_EVENT",
            ErrorCode::TooManyEvents => "ERR_ESPIAL_TOO_MANY_EVENTS",
            ErrorCode::UnknownTarget => "ERR_ESPIAL_UNKNOWN_TARGET",
            ErrorCode::MessageTooLarge => "ERR_ESPIAL_MESSAGE_TOO_LARGE",
            ErrorCode::NotRunning => "ERR_ESPIAL_NOT_RUNNING",
            ErrorCode::InvalidPayload => "ERR_ESPIAL_INVALID_PAYLOAD",
            ErrorCode::Bind => "ERR_ESPIAL_BIND",
            ErrorCode::Multicast => "ERR_ESPIAL_MULTICAST",
            ErrorCode::Seed => "ERR_ESPIAL_SEED",
            ErrorCode::Filter => "ERR_ESPIAL_FILTER",
            ErrorCode::Timeout => "ERR_ESPIAL_TIMEOUT",
            ErrorCode::NoHandler => "ERR_ESPIAL_NO_HANDLER",
            ErrorCode::Remote => "ERR_ESPIAL_REMOTE",
            ErrorCode::TargetLeft => "ERR_ESPIAL_TARGET_LEFT",
            ErrorCode::Busy => "ERR_ESPIAL_BUSY",
        }
    }
}

/// Why a custom event could not be joined. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscribeError {
    /// The event name is empty or longer than 255 bytes.
    InvalidName,
    /// This node has joined `max` custom events already.
    TooMany { max: usize },
    /// The names of the events joined would be over `max` bytes in all.
    TooManyBytes { max: usize },
}

impl SubscribeError {
    /// The stable code JavaScript sees in `err.code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            SubscribeError::InvalidName => ErrorCode::InvalidEvent,
            SubscribeError::TooMany { .. } | SubscribeError::TooManyBytes { .. } => {
                ErrorCode::TooManyEvents
            }
        }
    }
}

impl fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscribeError::InvalidName => write!(f, "event names are 1 to 255 bytes of UTF-8"),
            SubscribeError::TooMany { max } => {
                write!(
                    f,
                    "this node has joined {max} custom events, the most it may"
                )
            }
            SubscribeError::TooManyBytes { max } => write!(
                f,
                "the names of the custom events this node has joined would be over {max} bytes in all, the most it may"
            ),
        }
    }
}

impl std::error::Error for SubscribeError {}

/// Why a custom event could not be sent. Nothing was sent to anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A target is not a current member.
    UnknownTarget(String),
    /// The payload is over `max_message_size`.
    TooLarge { len: usize, max: usize },
    /// The event name is empty or longer than 255 bytes.
    InvalidName,
    /// The node is not running (not started yet, or exited).
    NotRunning,
    /// This node has `max` requests awaiting replies already.
    TooManyRequests { max: usize },
}

impl SendError {
    /// The stable code JavaScript sees in `err.code`.
    pub fn code(&self) -> ErrorCode {
        match self {
            SendError::UnknownTarget(_) => ErrorCode::UnknownTarget,
            SendError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            SendError::InvalidName => ErrorCode::InvalidEvent,
            SendError::NotRunning => ErrorCode::NotRunning,
            SendError::TooManyRequests { .. } => ErrorCode::Busy,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::UnknownTarget(id) => write!(f, "target {id} is not a member"),
            SendError::TooLarge { len, max } => write!(
                f,
                "a {len}-byte message is over the {max}-byte limit (the sender's or a target's)"
            ),
            SendError::InvalidName => write!(f, "event name is not 1 to 255 bytes of UTF-8"),
            SendError::NotRunning => write!(f, "the node is not running"),
            SendError::TooManyRequests { max } => {
                write!(
                    f,
                    "this node has {max} requests awaiting replies, the most it may"
                )
            }
        }
    }
}

impl std::error::Error for SendError {}

/// Any reason the core closed a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    Frame(FrameError),
    Handshake(HandshakeError),
    Record(RecordError),
    Decode(DecodeError),
    /// The peer broke the protocol's order of messages.
    Protocol(&'static str),
    /// The handshake did not complete in time.
    HandshakeTimeout,
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionError::Frame(e) => e.fmt(f),
            ConnectionError::Handshake(e) => e.fmt(f),
            ConnectionError::Record(e) => e.fmt(f),
            ConnectionError::Decode(e) => e.fmt(f),
            ConnectionError::Protocol(what) => write!(f, "protocol violation: {what}"),
            ConnectionError::HandshakeTimeout => write!(f, "handshake timed out"),
        }
    }
}

impl std::error::Error for ConnectionError {}

macro_rules! from_error {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for ConnectionError {
            fn from(e: $ty) -> Self {
                ConnectionError::$variant(e)
            }
        }
    )*};
}
from_error!(
    Frame(FrameError),
    Handshake(HandshakeError),
    Record(RecordError),
    Decode(DecodeError)
);
