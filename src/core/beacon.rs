//! Multicast beacons: the little a peer needs to dial us, and nothing more (no host name,
//! no metadata, which travel only inside the encrypted link). The sender's address is taken
//! from the datagram itself. In a keyed cluster each beacon carries a truncated
//! HMAC-SHA256 under a key derived from the cluster key, so forged beacons are dropped.
//!
//! Layout: `"ESPB" | version | flags | cluster_len | cluster | node_id(16) | port(2) | [mac(16)]`.

use hkdf::hmac::{Hmac, Mac};
use sha2::Sha256;

use super::crypto::handshake::{MAX_CLUSTER_NAME, PROTOCOL_VERSION};
use super::crypto::ClusterKey;
use super::node::NodeId;

const MAGIC: &[u8; 4] = b"ESPB";
const FLAG_KEYED: u8 = 1;
const MAC_LEN: usize = 16;

/// What a valid beacon says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beacon {
    pub id: NodeId,
    pub port: u16,
}

fn mac(key: &ClusterKey, bytes: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(&key.beacon).expect("HMAC takes any key length");
    m.update(bytes);
    m
}

/// Encodes our beacon.
pub fn encode(cluster: &str, key: Option<&ClusterKey>, beacon: Beacon) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 + cluster.len() + 18 + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(if key.is_some() { FLAG_KEYED } else { 0 });
    out.push(cluster.len() as u8);
    out.extend_from_slice(cluster.as_bytes());
    out.extend_from_slice(&beacon.id.0);
    out.extend_from_slice(&beacon.port.to_be_bytes());
    if let Some(key) = key {
        let tag = mac(key, &out).finalize().into_bytes();
        out.extend_from_slice(&tag[..MAC_LEN]);
    }
    out
}

/// Why a datagram is not a beacon to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not a well-formed beacon of our cluster name and version.
    NotOurs,
    /// An espial beacon of another protocol version (this one, the version it speaks): a
    /// node of another release, which cannot join this one.
    Version(u8),
    /// A well-formed beacon of our cluster name and version, but under another cluster key,
    /// or without one where we have one (or the other way round), or forged: the usual sign
    /// of a `cluster_key` that differs between nodes.
    KeyMismatch,
}

/// Decodes a datagram. `None` for anything that is not a beacon of our cluster, of our
/// version, and (in a keyed cluster) authenticated: such datagrams are silently ignored,
/// since anyone on the LAN can send them.
pub fn decode(datagram: &[u8], cluster: &str, key: Option<&ClusterKey>) -> Option<Beacon> {
    classify(datagram, cluster, key).ok()
}

/// [`decode`], saying why a datagram is ignored.
pub fn classify(
    datagram: &[u8],
    cluster: &str,
    key: Option<&ClusterKey>,
) -> Result<Beacon, Ignored> {
    let rest = datagram.strip_prefix(MAGIC).ok_or(Ignored::NotOurs)?;
    let [version, flags, cluster_len, rest @ ..] = rest else {
        return Err(Ignored::NotOurs);
    };
    let cluster_len = *cluster_len as usize;
    if *version != PROTOCOL_VERSION {
        // Magic and version keep their place in every version; the rest may change.
        return Err(Ignored::Version(*version));
    }
    if cluster_len > MAX_CLUSTER_NAME {
        return Err(Ignored::NotOurs);
    }
    let keyed = *flags & FLAG_KEYED != 0;
    let mac_len = if keyed { MAC_LEN } else { 0 };
    if rest.len() != cluster_len + 18 + mac_len || &rest[..cluster_len] != cluster.as_bytes() {
        return Err(Ignored::NotOurs);
    }
    if keyed != key.is_some() {
        return Err(Ignored::KeyMismatch);
    }
    let body = &rest[cluster_len..];
    if let Some(key) = key {
        let signed = &datagram[..datagram.len() - MAC_LEN];
        mac(key, signed)
            .verify_truncated_left(&datagram[datagram.len() - MAC_LEN..])
            .map_err(|_| Ignored::KeyMismatch)?;
    }
    Ok(Beacon {
        id: NodeId(body[..16].try_into().unwrap()),
        port: u16::from_be_bytes(body[16..18].try_into().unwrap()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Beacon = Beacon {
        id: NodeId([5; 16]),
        port: 27272,
    };

    #[test]
    fn unkeyed_beacons_round_trip_within_their_cluster_only() {
        let bytes = encode("prod", None, B);
        assert_eq!(decode(&bytes, "prod", None), Some(B));
        assert_eq!(decode(&bytes, "staging", None), None);
        assert_eq!(decode(&bytes[..bytes.len() - 1], "prod", None), None);
        assert_eq!(decode(b"ESPB", "prod", None), None);
        assert_eq!(decode(b"random junk", "prod", None), None);
    }

    #[test]
    fn keyed_beacons_are_authenticated() {
        let key = ClusterKey::derive(b"0123456789abcdef");
        let other = ClusterKey::derive(b"0123456789abcdeg");
        let bytes = encode("prod", Some(&key), B);
        assert_eq!(decode(&bytes, "prod", Some(&key)), Some(B));
        assert_eq!(decode(&bytes, "prod", Some(&other)), None);
        assert_eq!(decode(&bytes, "prod", None), None);
        // An unkeyed (forged) beacon is ignored by a keyed node.
        assert_eq!(decode(&encode("prod", None, B), "prod", Some(&key)), None);
        // Tampering with the advertised port breaks the MAC.
        let mut forged = bytes.clone();
        let port_at = forged.len() - MAC_LEN - 1;
        forged[port_at] ^= 1;
        assert_eq!(decode(&forged, "prod", Some(&key)), None);
    }

    #[test]
    fn a_beacon_of_our_cluster_under_another_key_is_a_key_mismatch() {
        let key = ClusterKey::derive(b"0123456789abcdef");
        let other = ClusterKey::derive(b"0123456789abcdeg");
        let keyed = encode("prod", Some(&key), B);
        let unkeyed = encode("prod", None, B);
        assert_eq!(classify(&keyed, "prod", Some(&key)), Ok(B));
        assert_eq!(
            classify(&keyed, "prod", Some(&other)),
            Err(Ignored::KeyMismatch)
        );
        assert_eq!(classify(&keyed, "prod", None), Err(Ignored::KeyMismatch));
        assert_eq!(
            classify(&unkeyed, "prod", Some(&key)),
            Err(Ignored::KeyMismatch)
        );
        // Another cluster, a truncated beacon or junk are not ours, whatever the key.
        assert_eq!(
            classify(&keyed, "staging", Some(&other)),
            Err(Ignored::NotOurs)
        );
        assert_eq!(
            classify(&keyed[..keyed.len() - 1], "prod", Some(&key)),
            Err(Ignored::NotOurs)
        );
        assert_eq!(
            classify(b"random junk", "prod", None),
            Err(Ignored::NotOurs)
        );
    }

    #[test]
    fn a_beacon_of_another_version_says_which() {
        let mut v1 = encode("prod", None, B);
        v1[4] = 1;
        assert_eq!(classify(&v1, "prod", None), Err(Ignored::Version(1)));
        assert_eq!(
            classify(b"ESPB\x03\x00\x00", "prod", None),
            Err(Ignored::Version(3))
        );
        assert_eq!(classify(b"ESPB", "prod", None), Err(Ignored::NotOurs));
    }
}
