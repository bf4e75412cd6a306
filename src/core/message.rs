//! Messages carried inside encrypted records. Binary and length-prefixed, with every length
//! bounded; application payloads (metadata today, events later) stay opaque bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::DecodeError;
use super::node::NodeId;

/// Longest host name accepted (DNS names are at most 253 characters).
pub const MAX_HOST_NAME: usize = 255;
/// Most entries in one member list.
pub const MAX_MEMBERS: usize = 4096;

mod tag {
    pub const INTRODUCE: u8 = 1;
    pub const VERDICT: u8 = 2;
    pub const LEAVE: u8 = 3;
    pub const PING: u8 = 4;
    pub const MEMBERS: u8 = 5;
    pub const UPDATE: u8 = 6;
}

/// A message between two connected nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// First message after key confirmation: who the sender is.
    Introduce {
        id: NodeId,
        host_name: String,
        port: u16,
        metadata: String,
    },
    /// The sender's admission decision about the receiver.
    Verdict { accepted: bool },
    /// The sender is leaving the cluster on purpose.
    Leave,
    /// A heartbeat: the sender is alive.
    Ping,
    /// Nodes the sender is connected to, so the receiver can connect to them too.
    Members(Vec<(NodeId, SocketAddr)>),
    /// The sender's metadata changed.
    Update { metadata: String },
}

impl Message {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Message::Introduce {
                id,
                host_name,
                port,
                metadata,
            } => {
                let mut out =
                    Vec::with_capacity(1 + 16 + 2 + 1 + host_name.len() + 4 + metadata.len());
                out.push(tag::INTRODUCE);
                out.extend_from_slice(&id.0);
                out.extend_from_slice(&port.to_be_bytes());
                out.push(host_name.len() as u8);
                out.extend_from_slice(host_name.as_bytes());
                out.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
                out.extend_from_slice(metadata.as_bytes());
                out
            }
            Message::Verdict { accepted } => vec![tag::VERDICT, u8::from(*accepted)],
            Message::Leave => vec![tag::LEAVE],
            Message::Ping => vec![tag::PING],
            Message::Members(list) => {
                let mut out = Vec::with_capacity(3 + list.len() * 35);
                out.push(tag::MEMBERS);
                out.extend_from_slice(&(list.len() as u16).to_be_bytes());
                for (id, addr) in list {
                    out.extend_from_slice(&id.0);
                    match addr.ip() {
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
                out
            }
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
    pub fn decode(bytes: &[u8], max_metadata: usize) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        let msg = match r.u8("type")? {
            tag::INTRODUCE => {
                let id = NodeId(r.array("id")?);
                let port = u16::from_be_bytes(r.array("port")?);
                let host_len = r.u8("host_name")? as usize;
                let host_name = r.text("host_name", host_len, MAX_HOST_NAME)?;
                let meta_len = u32::from_be_bytes(r.array("metadata")?) as usize;
                let metadata = r.text("metadata", meta_len, max_metadata)?;
                Message::Introduce {
                    id,
                    host_name,
                    port,
                    metadata,
                }
            }
            tag::VERDICT => match r.u8("accepted")? {
                0 => Message::Verdict { accepted: false },
                1 => Message::Verdict { accepted: true },
                _ => return Err(DecodeError::Invalid("accepted")),
            },
            tag::LEAVE => Message::Leave,
            tag::PING => Message::Ping,
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
                    let ip = match r.u8("member family")? {
                        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("member ip")?)),
                        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("member ip")?)),
                        _ => return Err(DecodeError::Invalid("member family")),
                    };
                    let port = u16::from_be_bytes(r.array("member port")?);
                    list.push((id, SocketAddr::new(ip, port)));
                }
                Message::Members(list)
            }
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

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        Ok(self.take(field, N)?.try_into().unwrap())
    }

    fn text(&mut self, field: &'static str, len: usize, max: usize) -> Result<String, DecodeError> {
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        let bytes = self.take(field, len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intro() -> Message {
        Message::Introduce {
            id: NodeId([7; 16]),
            host_name: "web-1.org.internal".into(),
            port: 27272,
            metadata: r#"{"role":"web"}"#.into(),
        }
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            intro(),
            Message::Verdict { accepted: true },
            Message::Verdict { accepted: false },
            Message::Leave,
            Message::Ping,
            Message::Members(vec![
                (NodeId([1; 16]), "10.0.0.1:27272".parse().unwrap()),
                (NodeId([2; 16]), "[fe80::1]:9".parse().unwrap()),
            ]),
            Message::Members(vec![]),
            Message::Update {
                metadata: "{}".into(),
            },
        ] {
            assert_eq!(Message::decode(&m.encode(), 1024), Ok(m));
        }
    }

    #[test]
    fn bounds_and_truncation_are_enforced() {
        let bytes = intro().encode();
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
    }
}
