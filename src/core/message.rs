//! Messages carried inside encrypted records. Binary and length-prefixed, with every length
//! bounded; application payloads stay opaque bytes. A decoded [`Message`] borrows the
//! plaintext for a custom event's name and payload, so a received payload is copied once,
//! into the event handed to the application.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::election::{Claim, ElectionMsg};
use super::error::DecodeError;
use super::node::NodeId;

/// Longest host name accepted (DNS names are at most 253 characters).
pub const MAX_HOST_NAME: usize = 255;
/// Most entries in one member list.
pub const MAX_MEMBERS: usize = 4096;
/// Longest custom event name, in bytes.
pub const MAX_EVENT_NAME: usize = 255;
/// Most custom events one node may have joined.
pub const MAX_JOINED: usize = 4096;

mod tag {
    pub const INTRODUCE: u8 = 1;
    pub const VERDICT: u8 = 2;
    pub const LEAVE: u8 = 3;
    pub const PING: u8 = 4;
    pub const MEMBERS: u8 = 5;
    pub const UPDATE: u8 = 6;
    pub const ELECTION: u8 = 7;
    pub const EVENT: u8 = 8;
    pub const SUBSCRIBE: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const SUBSCRIPTIONS: u8 = 11;
    pub const PROFILE: u8 = 12;
    pub const STREAM: u8 = 13;
    pub const ACK: u8 = 14;
    pub const SERVE: u8 = 15;
    pub const UNSERVE: u8 = 16;
    pub const SERVING: u8 = 17;
    pub const REQUEST: u8 = 18;
    pub const REPLY: u8 = 19;
    pub const ASK_MEMBERS: u8 = 20;
    pub const ASKING: u8 = 21;
}

/// What the first byte of a body kept in a stream (see `sessions`) says beyond a custom
/// event's binary flag: requests and replies share the pair's stream with events, so they
/// are numbered, acknowledged and replayed alike, and the kept byte tells which message
/// to seal the body as. Events keep 0 and 1, so their bodies are what they always were.
pub mod kept {
    /// `REQUEST | binary`: a request; the body's rest is the name, the id, the payload.
    pub const REQUEST: u8 = 0x10;
    /// `REPLY | status`: a reply; no name, then the id and the payload.
    pub const REPLY: u8 = 0x20;
}

/// Reply statuses (a [`Message::Reply`]'s `status`).
pub mod status {
    /// The handler's value, JSON text.
    pub const VALUE_JSON: u8 = 0;
    /// The handler's value, bytes.
    pub const VALUE_BINARY: u8 = 1;
    /// The handler threw or rejected: `code_len` (u8) · code · message.
    pub const REMOTE: u8 = 2;
    /// The replier serves no handler of that name.
    pub const NO_HANDLER: u8 = 3;
    /// The replier holds the most requests from the asker it takes unanswered.
    pub const BUSY: u8 = 4;
    /// The handler's value was over the asker's `max_message` or the replier's
    /// `max_reply_size`.
    pub const TOO_LARGE: u8 = 5;
    /// The last status.
    pub const MAX: u8 = 5;
}

/// The head of a message of a stream, before the kept body's bytes after its first: the
/// message tag, the number, and the flag or status the kept byte holds.
pub fn stream_head(seq: u64, kept_flag: u8) -> [u8; 10] {
    let tag = match kept_flag & 0xf0 {
        kept::REQUEST => tag::REQUEST,
        kept::REPLY => tag::REPLY,
        _ => tag::EVENT,
    };
    let mut head = [tag; 10];
    head[1..9].copy_from_slice(&seq.to_be_bytes());
    head[9] = kept_flag & 0x0f;
    head
}

/// A message between two connected nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// First message after key confirmation: who the sender is, and no more than the
    /// receiver's connection filter judges (with the address seen on the socket).
    Introduce {
        id: NodeId,
        host_name: String,
        port: u16,
        /// Where the sender asks to be dialed, when not at the address the receiver sees
        /// and `port` (`network.advertise`): a claim.
        advertised: Option<SocketAddr>,
    },
    /// The sender's admission decision about the receiver.
    Verdict { accepted: bool },
    /// What the sender shares with members only, sent once both ends have admitted each
    /// other and before anything else of the membership: the receiver makes the sender a
    /// member on it.
    Profile {
        metadata: String,
        master_eligible: bool,
        /// The largest custom event payload the sender accepts (`max_message_size`).
        max_message: u32,
    },
    /// The sender is leaving the cluster on purpose.
    Leave,
    /// A heartbeat: the sender is alive.
    Ping,
    /// "I am asking this member for an answer": the sender's regular probe to it went
    /// unanswered (see `detector`). Its own view, nothing more: the receiver changes
    /// nothing about the member but its own probing (it asks too, under its own bound).
    Asking(NodeId),
    /// Nodes the sender is connected to, so the receiver can connect to them too: the
    /// answer to [`Message::AskMembers`].
    Members(Vec<(NodeId, SocketAddr)>),
    /// "Send me your member list": asked once per connection, by a node that may not know
    /// the sender's cluster (a newcomer, a seed's dialer, a returning node).
    AskMembers,
    /// The sender's metadata changed.
    Update { metadata: String },
    /// Master election.
    Election(ElectionMsg),
    /// A custom event, number `seq` of the sender's stream to the receiver; the payload is
    /// opaque (JSON text or bytes, as `binary` says).
    Event {
        seq: u64,
        name: &'a str,
        binary: bool,
        payload: &'a [u8],
    },
    /// The sender joined a custom event: send it that event from now on.
    Subscribe(String),
    /// The sender left a custom event.
    Unsubscribe(String),
    /// Every custom event the sender has joined (sent once to each new member).
    Subscriptions(Vec<String>),
    /// The sender's events from now on belong to its stream `id` (see `sessions`); it would
    /// have them acknowledged at least every `ack_bytes` of them.
    Stream { id: u64, ack_bytes: u32 },
    /// The sender received every event of the receiver's stream `stream` up to `seq`.
    Ack { stream: u64, seq: u64 },
    /// The sender serves requests named so from now on.
    Serve(String),
    /// The sender no longer serves requests named so.
    Unserve(String),
    /// Every name the sender serves (sent to each new member that there are any).
    Serving(Vec<String>),
    /// Request `id` of the sender to handler `name`, number `seq` of its stream.
    Request {
        seq: u64,
        id: u64,
        name: &'a str,
        binary: bool,
        payload: &'a [u8],
    },
    /// The answer to the receiver's request `id`, number `seq` of the sender's stream.
    Reply {
        seq: u64,
        id: u64,
        status: u8,
        payload: &'a [u8],
    },
}

/// Encodes a custom event.
fn encode_event(seq: u64, name: &str, binary: bool, payload: &[u8]) -> Vec<u8> {
    let body = event_body(name, binary, payload);
    [&event_tag(seq)[..], &body].concat()
}

/// What precedes an event's body in an encoded [`Message::Event`]: its tag and number.
pub fn event_tag(seq: u64) -> [u8; 9] {
    let mut head = [tag::EVENT; 9];
    head[1..].copy_from_slice(&seq.to_be_bytes());
    head
}

/// An encoded [`Message::Event`] after its number: the flag, the name (at most
/// [`MAX_EVENT_NAME`] bytes, checked by the caller) and the payload.
pub fn event_body(name: &str, binary: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(2 + name.len() + payload.len());
    body.extend_from_slice(&[u8::from(binary), name.len() as u8]);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    body
}

/// An address as the wire carries it (member lists, introductions): `family` (4 or 6),
/// the address's 4 or 16 bytes, the port. An IPv4-mapped IPv6 address (as a dual-stack
/// socket shows an IPv4 peer) goes as the IPv4 address it is.
fn put_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip().to_canonical() {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

impl<'a> Message<'a> {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Introduce {
                id,
                host_name,
                port,
                advertised,
            } => {
                let mut out = Vec::with_capacity(1 + 16 + 2 + 1 + host_name.len() + 19);
                out.push(tag::INTRODUCE);
                out.extend_from_slice(&id.0);
                out.extend_from_slice(&port.to_be_bytes());
                out.push(host_name.len() as u8);
                out.extend_from_slice(host_name.as_bytes());
                match advertised {
                    None => out.push(0),
                    Some(addr) => put_addr(&mut out, addr),
                }
                out
            }
            Message::Verdict { accepted } => vec![tag::VERDICT, u8::from(*accepted)],
            Message::Profile {
                metadata,
                master_eligible,
                max_message,
            } => {
                let mut out = Vec::with_capacity(1 + 1 + 4 + 4 + metadata.len());
                out.push(tag::PROFILE);
                out.push(u8::from(*master_eligible));
                out.extend_from_slice(&max_message.to_be_bytes());
                out.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
                out.extend_from_slice(metadata.as_bytes());
                out
            }
            Message::Leave => vec![tag::LEAVE],
            Message::Ping => vec![tag::PING],
            Message::Asking(id) => [&[tag::ASKING][..], &id.0].concat(),
            Message::AskMembers => vec![tag::ASK_MEMBERS],
            Message::Members(list) => {
                let mut out = Vec::with_capacity(3 + list.len() * 35);
                out.push(tag::MEMBERS);
                out.extend_from_slice(&(list.len() as u16).to_be_bytes());
                for (id, addr) in list {
                    out.extend_from_slice(&id.0);
                    put_addr(&mut out, addr);
                }
                out
            }
            Message::Election(msg) => {
                let mut out = vec![tag::ELECTION];
                let claim = |out: &mut Vec<u8>, c: &Claim| {
                    out.extend_from_slice(&c.master.0);
                    out.extend_from_slice(&c.term.to_be_bytes());
                };
                match msg {
                    ElectionMsg::State(None) => out.push(0),
                    ElectionMsg::State(Some(c)) => {
                        out.push(1);
                        claim(&mut out, c);
                    }
                    ElectionMsg::Nominate => out.push(2),
                    ElectionMsg::Resign(c) => {
                        out.push(3);
                        claim(&mut out, c);
                    }
                }
                out
            }
            Message::Event {
                seq,
                name,
                binary,
                payload,
            } => encode_event(*seq, name, *binary, payload),
            Message::Stream { id, ack_bytes } => {
                let mut out = vec![tag::STREAM];
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&ack_bytes.to_be_bytes());
                out
            }
            Message::Ack { stream, seq } => {
                let mut out = vec![tag::ACK];
                out.extend_from_slice(&stream.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out
            }
            Message::Subscribe(name) => {
                let mut out = vec![tag::SUBSCRIBE];
                put_name(&mut out, name);
                out
            }
            Message::Unsubscribe(name) => {
                let mut out = vec![tag::UNSUBSCRIBE];
                put_name(&mut out, name);
                out
            }
            Message::Serve(name) => {
                let mut out = vec![tag::SERVE];
                put_name(&mut out, name);
                out
            }
            Message::Unserve(name) => {
                let mut out = vec![tag::UNSERVE];
                put_name(&mut out, name);
                out
            }
            Message::Serving(names) => name_list(tag::SERVING, names),
            Message::Request {
                seq,
                id,
                name,
                binary,
                payload,
            } => [
                &stream_head(*seq, kept::REQUEST | u8::from(*binary))[..],
                &[name.len() as u8],
                name.as_bytes(),
                &id.to_be_bytes(),
                payload,
            ]
            .concat(),
            Message::Reply {
                seq,
                id,
                status,
                payload,
            } => [
                &stream_head(*seq, kept::REPLY | status)[..],
                &[0],
                &id.to_be_bytes(),
                payload,
            ]
            .concat(),
            Message::Subscriptions(names) => name_list(tag::SUBSCRIPTIONS, names),
            Message::Update { metadata } => {
                let mut out = Vec::with_capacity(5 + metadata.len());
                out.push(tag::UPDATE);
                out.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
                out.extend_from_slice(metadata.as_bytes());
                out
            }
        }
    }

    /// Decodes a message; `max_metadata` bounds the metadata field.
    pub fn decode(bytes: &'a [u8], max_metadata: usize) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let msg = match r.u8("type")? {
            tag::INTRODUCE => {
                let id = NodeId(r.array("id")?);
                let port = u16::from_be_bytes(r.array("port")?);
                let host_len = r.u8("host_name")? as usize;
                let host_name = r.text("host_name", host_len, MAX_HOST_NAME)?;
                let advertised = match r.u8("advertised family")? {
                    0 => None,
                    family => Some(r.addr(family, "advertised")?),
                };
                Message::Introduce {
                    id,
                    host_name,
                    port,
                    advertised,
                }
            }
            tag::PROFILE => {
                let master_eligible = r.flag("master_eligible")?;
                let max_message = u32::from_be_bytes(r.array("max_message")?);
                let meta_len = u32::from_be_bytes(r.array("metadata")?) as usize;
                let metadata = r.text("metadata", meta_len, max_metadata)?;
                Message::Profile {
                    metadata,
                    master_eligible,
                    max_message,
                }
            }
            tag::VERDICT => Message::Verdict {
                accepted: r.flag("accepted")?,
            },
            tag::LEAVE => Message::Leave,
            tag::PING => Message::Ping,
            tag::ASKING => Message::Asking(NodeId(r.array("asking id")?)),
            tag::ASK_MEMBERS => Message::AskMembers,
            tag::MEMBERS => {
                let count = u16::from_be_bytes(r.array("count")?) as usize;
                if count > MAX_MEMBERS {
                    return Err(DecodeError::TooLong {
                        field: "members",
                        len: count,
                        max: MAX_MEMBERS,
                    });
                }
                let mut list = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = NodeId(r.array("member id")?);
                    let family = r.u8("member family")?;
                    list.push((id, r.addr(family, "member")?));
                }
                Message::Members(list)
            }
            tag::ELECTION => {
                let claim = |r: &mut Reader| -> Result<Claim, DecodeError> {
                    Ok(Claim {
                        master: NodeId(r.array("master")?),
                        term: u64::from_be_bytes(r.array("term")?),
                    })
                };
                Message::Election(match r.u8("election")? {
                    0 => ElectionMsg::State(None),
                    1 => ElectionMsg::State(Some(claim(&mut r)?)),
                    2 => ElectionMsg::Nominate,
                    3 => ElectionMsg::Resign(claim(&mut r)?),
                    _ => return Err(DecodeError::Invalid("election")),
                })
            }
            tag::EVENT => {
                let seq = u64::from_be_bytes(r.array("seq")?);
                let binary = r.flag("binary")?;
                let name = r.name()?;
                // The frame bound already limits the payload.
                let payload = std::mem::take(&mut r.0);
                Message::Event {
                    seq,
                    name,
                    binary,
                    payload,
                }
            }
            tag::STREAM => Message::Stream {
                id: u64::from_be_bytes(r.array("stream")?),
                ack_bytes: u32::from_be_bytes(r.array("ack_bytes")?),
            },
            tag::ACK => Message::Ack {
                stream: u64::from_be_bytes(r.array("stream")?),
                seq: u64::from_be_bytes(r.array("seq")?),
            },
            tag::SERVE => Message::Serve(r.name()?.to_owned()),
            tag::UNSERVE => Message::Unserve(r.name()?.to_owned()),
            tag::SERVING => Message::Serving(r.names("serving")?),
            tag::REQUEST => {
                let seq = u64::from_be_bytes(r.array("seq")?);
                let binary = r.flag("binary")?;
                let name = r.name()?;
                let id = u64::from_be_bytes(r.array("request id")?);
                let payload = std::mem::take(&mut r.0);
                Message::Request {
                    seq,
                    id,
                    name,
                    binary,
                    payload,
                }
            }
            tag::REPLY => {
                let seq = u64::from_be_bytes(r.array("seq")?);
                let status = r.u8("status")?;
                if status > status::MAX {
                    return Err(DecodeError::Invalid("status"));
                }
                if r.u8("reply name")? != 0 {
                    return Err(DecodeError::Invalid("reply name"));
                }
                let id = u64::from_be_bytes(r.array("request id")?);
                let payload = std::mem::take(&mut r.0);
                Message::Reply {
                    seq,
                    id,
                    status,
                    payload,
                }
            }
            tag::SUBSCRIBE => Message::Subscribe(r.name()?.to_owned()),
            tag::UNSUBSCRIBE => Message::Unsubscribe(r.name()?.to_owned()),
            tag::SUBSCRIPTIONS => Message::Subscriptions(r.names("subscriptions")?),
            tag::UPDATE => {
                let len = u32::from_be_bytes(r.array("metadata")?) as usize;
                Message::Update {
                    metadata: r.text("metadata", len, max_metadata)?,
                }
            }
            other => return Err(DecodeError::UnknownType(other)),
        };
        if !r.0.is_empty() {
            return Err(DecodeError::Invalid("trailing bytes"));
        }
        Ok(msg)
    }
}

/// `tag` · `count` (u16) · `count` names (`Subscriptions`, `Serving`).
fn name_list(tag: u8, names: &[String]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(names.len() as u16).to_be_bytes());
    for name in names {
        put_name(&mut out, name);
    }
    out
}

/// A cursor that refuses to read past the end or past a field's bound.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated(field));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    /// A byte that is 0 (false) or 1 (true); any other value is malformed, so that a flag
    /// has one encoding.
    fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid(field)),
        }
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        Ok(self.take(field, N)?.try_into().unwrap())
    }

    /// An address after its `family` byte (see `put_addr`): 4 or 6, anything else is
    /// malformed.
    fn addr(&mut self, family: u8, field: &'static str) -> Result<SocketAddr, DecodeError> {
        let ip = match family {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>(field)?)),
            6 => match Ipv6Addr::from(self.array::<16>(field)?) {
                // An IPv4-mapped address goes as family 4 (`put_addr`): one encoding per
                // address, so what decodes re-encodes to the same bytes.
                v6 if v6.to_ipv4_mapped().is_some() => return Err(DecodeError::Invalid(field)),
                v6 => IpAddr::V6(v6),
            },
            _ => return Err(DecodeError::Invalid(field)),
        };
        Ok(SocketAddr::new(ip, u16::from_be_bytes(self.array(field)?)))
    }

    /// `count` (u16, at most [`MAX_JOINED`]) · `count` names: the full list of events a
    /// member joined or names it serves.
    fn names(&mut self, field: &'static str) -> Result<Vec<String>, DecodeError> {
        let count = u16::from_be_bytes(self.array("count")?) as usize;
        if count > MAX_JOINED {
            return Err(DecodeError::TooLong {
                field,
                len: count,
                max: MAX_JOINED,
            });
        }
        (0..count).map(|_| self.name().map(str::to_owned)).collect()
    }

    fn name(&mut self) -> Result<&'a str, DecodeError> {
        let len = self.u8("event name")? as usize;
        let name = self.str("event name", len, MAX_EVENT_NAME)?;
        if name.is_empty() {
            return Err(DecodeError::Invalid("event name"));
        }
        Ok(name)
    }

    fn str(&mut self, field: &'static str, len: usize, max: usize) -> Result<&'a str, DecodeError> {
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        let bytes = self.take(field, len)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid(field))
    }

    fn text(&mut self, field: &'static str, len: usize, max: usize) -> Result<String, DecodeError> {
        self.str(field, len, max).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intro() -> Message<'static> {
        Message::Introduce {
            id: NodeId([7; 16]),
            host_name: "web-1.org.internal".into(),
            port: 27272,
            advertised: None,
        }
    }

    fn intro_at(advertised: &str) -> Message<'static> {
        Message::Introduce {
            id: NodeId([7; 16]),
            host_name: "web-1.org.internal".into(),
            port: 27272,
            advertised: Some(advertised.parse().unwrap()),
        }
    }

    fn profile() -> Message<'static> {
        Message::Profile {
            metadata: r#"{"role":"web"}"#.into(),
            master_eligible: true,
            max_message: 1 << 24,
        }
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            intro(),
            intro_at("203.0.113.7:30001"),
            intro_at("[2001:db8::7]:30001"),
            profile(),
            Message::Verdict { accepted: true },
            Message::Verdict { accepted: false },
            Message::Leave,
            Message::Ping,
            Message::Asking(NodeId([9; 16])),
            Message::AskMembers,
            Message::Members(vec![
                (NodeId([1; 16]), "10.0.0.1:27272".parse().unwrap()),
                (NodeId([2; 16]), "[fe80::1]:9".parse().unwrap()),
            ]),
            Message::Members(vec![]),
            Message::Election(ElectionMsg::State(None)),
            Message::Election(ElectionMsg::State(Some(Claim {
                master: NodeId([3; 16]),
                term: u64::MAX,
            }))),
            Message::Election(ElectionMsg::Nominate),
            Message::Event {
                seq: 1,
                name: "job",
                binary: true,
                payload: &[0, 1, 2, 255],
            },
            Message::Event {
                seq: u64::MAX,
                name: &"x".repeat(255),
                binary: false,
                payload: b"{}",
            },
            Message::Subscribe("job".into()),
            Message::Unsubscribe("job".into()),
            Message::Stream {
                id: 0x0102_0304_0506_0708,
                ack_bytes: 0x0a0b_0c0d,
            },
            Message::Ack { stream: 9, seq: 10 },
            Message::Subscriptions(vec!["a".into(), "b".into()]),
            Message::Serve("work".into()),
            Message::Unserve("work".into()),
            Message::Serving(vec!["a".into(), "b".into()]),
            Message::Request {
                seq: 3,
                id: u64::MAX,
                name: "work",
                binary: false,
                payload: b"[1]",
            },
            Message::Request {
                seq: 4,
                id: 1,
                name: "w",
                binary: true,
                payload: &[],
            },
            Message::Reply {
                seq: 5,
                id: 7,
                status: status::REMOTE,
                payload: b"\x03ERRboom",
            },
            Message::Reply {
                seq: 6,
                id: 8,
                status: status::VALUE_JSON,
                payload: b"{}",
            },
            Message::Election(ElectionMsg::Resign(Claim {
                master: NodeId([4; 16]),
                term: 7,
            })),
            Message::Update {
                metadata: "{}".into(),
            },
        ] {
            assert_eq!(Message::decode(&m.encode(), 1024), Ok(m));
        }
    }

    #[test]
    fn bounds_and_truncation_are_enforced() {
        for cut in 0..intro().encode().len() {
            assert!(Message::decode(&intro().encode()[..cut], 1024).is_err());
        }
        let bytes = profile().encode();
        assert_eq!(
            Message::decode(&bytes, 4),
            Err(DecodeError::TooLong {
                field: "metadata",
                len: 14,
                max: 4
            })
        );
        for cut in 0..bytes.len() {
            assert!(Message::decode(&bytes[..cut], 1024).is_err(), "cut {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(Message::decode(&long, 1024).is_err());
        assert_eq!(
            Message::decode(&[99], 1024),
            Err(DecodeError::UnknownType(99))
        );
        assert_eq!(
            Message::decode(&[2, 5], 1024),
            Err(DecodeError::Invalid("accepted"))
        );
        let reply = Message::Reply {
            seq: 1,
            id: 2,
            status: status::MAX,
            payload: &[],
        }
        .encode();
        let mut bad = reply.clone();
        bad[9] = status::MAX + 1;
        assert_eq!(
            Message::decode(&bad, 1024),
            Err(DecodeError::Invalid("status"))
        );
        let mut named = reply.clone();
        named[10] = 1;
        assert!(
            Message::decode(&named, 1024).is_err(),
            "a reply has no name"
        );
        for cut in 0..reply.len() {
            assert!(Message::decode(&reply[..cut], 1024).is_err(), "cut {cut}");
        }
        let asking = Message::Asking(NodeId([9; 16])).encode();
        assert_eq!(asking.len(), 17);
        for cut in 1..asking.len() {
            assert_eq!(
                Message::decode(&asking[..cut], 1024),
                Err(DecodeError::Truncated("asking id"))
            );
        }
        assert!(Message::decode(&[&asking[..], &[0]].concat(), 1024).is_err());
    }

    #[test]
    fn a_flag_is_zero_or_one_and_truncation_names_it() {
        let event = Message::Event {
            seq: 1,
            name: "e",
            binary: true,
            payload: b"x",
        };
        let request = Message::Request {
            seq: 1,
            id: 2,
            name: "w",
            binary: false,
            payload: b"1",
        };
        let verdict = Message::Verdict { accepted: true };
        for (m, at, field) in [
            (event, 9, "binary"),
            (request, 9, "binary"),
            (profile(), 1, "master_eligible"),
            (verdict, 1, "accepted"),
        ] {
            let bytes = m.encode();
            for flag in [0, 1] {
                let mut good = bytes.clone();
                good[at] = flag;
                assert!(Message::decode(&good, 1024).is_ok(), "{field} {flag}");
            }
            for flag in [2, 0x11, 0xff] {
                let mut bad = bytes.clone();
                bad[at] = flag;
                assert_eq!(
                    Message::decode(&bad, 1024),
                    Err(DecodeError::Invalid(field)),
                    "{flag}"
                );
            }
            assert_eq!(
                Message::decode(&bytes[..at], 1024),
                Err(DecodeError::Truncated(field))
            );
        }
    }

    #[test]
    fn addresses_go_as_tagged_ipv4_or_ipv6() {
        let v4 = intro_at("192.0.2.1:7").encode();
        let v6 = intro_at("[2001:db8::1]:7").encode();
        let plain = intro().encode();
        // The introduction without an address ends in family 0; with one, the family, 4
        // or 16 bytes of address and the port follow.
        assert_eq!(plain.last(), Some(&0));
        assert_eq!(&v4[plain.len() - 1..], &[4, 192, 0, 2, 1, 0, 7]);
        assert_eq!(v6.len(), plain.len() + 18);
        assert_eq!(v6[plain.len() - 1], 6);
        // A dual-stack socket's IPv4-mapped address travels as the IPv4 address it is.
        let mapped = Message::Members(vec![(
            NodeId([1; 16]),
            "[::ffff:10.0.0.1]:9".parse().unwrap(),
        )]);
        assert_eq!(
            Message::decode(&mapped.encode(), 0),
            Ok(Message::Members(vec![(
                NodeId([1; 16]),
                "10.0.0.1:9".parse().unwrap()
            )]))
        );
    }

    #[test]
    fn hostile_address_fields_are_malformed_not_trusted() {
        let plain = intro().encode();
        let family_at = plain.len() - 1;
        for family in [1u8, 5, 16, 255] {
            let mut forged = plain.clone();
            forged[family_at] = family;
            forged.extend_from_slice(&[0; 18]);
            assert_eq!(
                Message::decode(&forged, 0),
                Err(DecodeError::Invalid("advertised")),
                "family {family}"
            );
        }
        // Family 6 with only an IPv4 address's bytes, or a port cut short: truncated.
        for (family, len) in [(6u8, 4 + 2), (6, 16 + 1), (4, 4 + 1), (4, 0)] {
            let mut short = plain.clone();
            short[family_at] = family;
            short.extend(std::iter::repeat_n(1, len));
            assert!(
                Message::decode(&short, 0).is_err(),
                "family {family}, {len} bytes"
            );
        }
        // An IPv4-mapped address as family 6: we send it as family 4, so one address has
        // one encoding and a decoded message re-encodes to its bytes (found by fuzzing).
        let mut mapped = plain.clone();
        mapped[family_at] = 6;
        let v6: std::net::Ipv6Addr = "::ffff:3.112.248.240".parse().unwrap();
        mapped.extend_from_slice(&v6.octets());
        mapped.extend_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            Message::decode(&mapped, 0),
            Err(DecodeError::Invalid("advertised"))
        );
        // Bytes after the address: malformed, like any trailing bytes.
        let mut long = intro_at("[2001:db8::1]:7").encode();
        long.push(0);
        assert!(Message::decode(&long, 0).is_err());
        for cut in 0..intro_at("[2001:db8::1]:7").encode().len() {
            assert!(Message::decode(&intro_at("[2001:db8::1]:7").encode()[..cut], 0).is_err());
        }
        // A member list entry of another family, or an IPv6 one cut short.
        let list = Message::Members(vec![(NodeId([1; 16]), "[2001:db8::2]:9".parse().unwrap())]);
        let bytes = list.encode();
        let mut odd = bytes.clone();
        odd[3 + 16] = 5;
        assert_eq!(
            Message::decode(&odd, 0),
            Err(DecodeError::Invalid("member"))
        );
        for cut in 3..bytes.len() {
            assert!(Message::decode(&bytes[..cut], 0).is_err(), "cut {cut}");
        }
    }
}
