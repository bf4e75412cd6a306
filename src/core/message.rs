//! Messages carried inside encrypted records. Binary and length-prefixed, with every length
//! bounded; application payloads (metadata today, events later) stay opaque bytes.

use super::error::DecodeError;
use super::node::NodeId;

/// Longest host name accepted (DNS names are at most 253 characters).
pub const MAX_HOST_NAME: usize = 255;

mod tag {
    pub const INTRODUCE: u8 = 1;
    pub const VERDICT: u8 = 2;
    pub const LEAVE: u8 = 3;
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
