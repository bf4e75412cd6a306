//! Node identity and the public description of a node.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use rand_core::{CryptoRng, RngCore};

/// A character that must not reach a log line or a terminal as it is: a control character
/// (newlines, escape sequences, C1 controls, DEL) or a bidirectional override, with which a
/// peer could forge a log line or rewrite what a terminal shows.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A host name a node may give: no [`is_unsafe_char`] character. A peer introducing
/// itself with any other name breaks the protocol.
pub fn is_valid_host_name(name: &str) -> bool {
    !name.chars().any(is_unsafe_char)
}

/// A node's id: derived from its static public key (see
/// [`crate::core::crypto::identity`]), new at every start, shown as a UUID (version 8) as
/// the original espial showed its random ids. Only the handshake makes an id true: anywhere
/// else (a beacon, a member list) it is a hint. Ordered, so ties between nodes break the
/// same way everywhere.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// A random id (UUID v4 layout) that no key backs: for tests that need an id nobody
    /// can prove.
    pub fn random<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        NodeId(b)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written into one buffer and handed over once: every delivery to JavaScript and
        // every log line names its sender, and the formatter's 16 calls cost more than the
        // rest of a small message's conversion.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 36];
        let mut at = 0;
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out[at] = b'-';
                at += 1;
            }
            out[at] = HEX[usize::from(byte >> 4)];
            out[at + 1] = HEX[usize::from(byte & 0x0f)];
            at += 2;
        }
        f.write_str(std::str::from_utf8(&out).expect("ASCII"))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// The text was not a node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidNodeId;

impl fmt::Display for InvalidNodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a node id (expected a UUID such as 0b5c...-...)")
    }
}

impl FromStr for NodeId {
    type Err = InvalidNodeId;

    /// 32 hex digits and 4 dashes (anywhere), 36 characters: the way ids are shown, and
    /// what `send()` and `request()` name their targets with (parsed for every batch).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(InvalidNodeId);
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut out = [0u8; 16];
        let mut nibbles = 0;
        for &c in s.as_bytes() {
            if c == b'-' {
                continue;
            }
            let d = digit(c).ok_or(InvalidNodeId)?;
            if nibbles == 32 {
                return Err(InvalidNodeId);
            }
            out[nibbles / 2] |= if nibbles % 2 == 0 { d << 4 } else { d };
            nibbles += 1;
        }
        if nibbles != 32 {
            return Err(InvalidNodeId);
        }
        Ok(NodeId(out))
    }
}

/// What every node knows about another: the object JavaScript sees, minus nothing and plus
/// nothing (no key material ever lives here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    pub host_name: String,
    /// For peers, the address seen on the socket, not a claim of theirs.
    pub ip: IpAddr,
    /// The TCP port the node listens on.
    pub port: u16,
    /// Where the node asks to be dialed when that is not `ip:port` (`network.advertise`:
    /// NAT, a container's port mapping): a claim of the peer's, see [`NodeInfo::dial_addr`].
    pub advertised: Option<SocketAddr>,
    /// JSON text, opaque to the core.
    pub metadata: String,
    /// May this node become master.
    pub master_eligible: bool,
}

/// What the connection filter judges, and all a node learns of a peer before both have
/// admitted each other: metadata, eligibility and the membership cross only after that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    /// A claim of the peer's: nothing checks it but its characters.
    pub host_name: String,
    /// The address seen on the socket, not a claim of the peer's.
    pub ip: IpAddr,
    /// The TCP port the peer says it listens on.
    pub port: u16,
    /// Where the peer asks to be dialed, if not `ip:port`: a claim (`network.advertise`).
    pub advertised: Option<SocketAddr>,
}

impl NodeInfo {
    /// Where others are told to dial it (member lists): its advertised address, else
    /// `ip:port`. A claim, so this node redials it there only once a dial there proved it
    /// (see `link::own_dial_addr`).
    pub fn dial_addr(&self) -> SocketAddr {
        self.advertised
            .unwrap_or(SocketAddr::new(self.ip, self.port))
    }
}

impl From<&NodeInfo> for Candidate {
    fn from(n: &NodeInfo) -> Candidate {
        Candidate {
            id: n.id,
            host_name: n.host_name.clone(),
            ip: n.ip,
            port: n.port,
            advertised: n.advertised,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn ids_print_as_uuids_and_parse_back() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let id = NodeId::random(&mut rng);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert_eq!(text.parse::<NodeId>(), Ok(id));
        assert_eq!("nope".parse::<NodeId>(), Err(InvalidNodeId));
        let fixed = NodeId(std::array::from_fn(|i| (i as u8) * 17));
        assert_eq!(fixed.to_string(), "00112233-4455-6677-8899-aabbccddeeff");
        assert_eq!(
            format!("{fixed:?}"),
            "NodeId(00112233-4455-6677-8899-aabbccddeeff)"
        );
        // Upper case too, as before; 36 characters of which 32 hex digits, nothing else.
        assert_eq!("00112233-4455-6677-8899-AABBCCDDEEFF".parse(), Ok(fixed));
        for bad in [
            "00112233-4455-6677-8899-aabbccddeef",   // 35
            "00112233-4455-6677-8899-aabbccddeeff0", // 37
            "00112233-4455-6677-8899aaabbccddeeff",  // 33 digits, 3 dashes
            "00112233-4455-6677-8899-aabbccddee-f",  // 31 digits, 5 dashes
            "00112233-4455-6677-8899-aabbccddeefg",
            "00112233-4455-6677-8899-aabbccddee+f",
            "00112233-4455-6677-8899-aabbccddeé",
        ] {
            assert_eq!(bad.parse::<NodeId>(), Err(InvalidNodeId), "{bad}");
        }
    }
}
