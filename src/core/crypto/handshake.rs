//! One round trip: both ends send a hello as soon as the TCP connection opens; on reading
//! the other's, each derives the session keys. Typestate: [`Handshake::finish`] consumes
//! the handshake, so an ephemeral secret is used for exactly one exchange.
//!
//! Hello body: `kind | version | flags | role | cluster_len | cluster | pubkey(65) | random(32)`.
//! Key schedule:
//! ```text
//! th        = SHA-256("espial/1 transcript" || len||initiator_hello || len||responder_hello)
//! prk       = HKDF-Extract(salt = th, ikm = ECDH(x) || psk-or-zeros)
//! key_i2r   = HKDF-Expand(prk, "espial/1 key i2r", 16)
//! key_r2i   = HKDF-Expand(prk, "espial/1 key r2i", 16)
//! ```

use hkdf::Hkdf;
use p256::ecdh::EphemeralSecret;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::PublicKey;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use super::session::Session;
use super::ClusterKey;
use crate::core::error::HandshakeError;
use crate::core::wire::kind;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
const FLAG_KEYED: u8 = 1;
const PUBKEY_LEN: usize = 65;
const RANDOM_LEN: usize = 32;
/// Longest cluster name (a `u8` length on the wire).
pub const MAX_CLUSTER_NAME: usize = 64;

/// Which end of the TCP connection this node is: the dialer initiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Initiator,
    Responder,
}

impl Role {
    fn wire(self) -> u8 {
        match self {
            Role::Initiator => 0,
            Role::Responder => 1,
        }
    }
}

/// A handshake in progress: our hello is sent, the peer's is awaited.
pub struct Handshake {
    role: Role,
    secret: EphemeralSecret,
    our_hello: Vec<u8>,
    our_pubkey: [u8; PUBKEY_LEN],
    cluster: String,
    key: Option<ClusterKey>,
}

impl Handshake {
    /// Starts a handshake; returns it with the hello frame body to send at once.
    pub fn start<R: RngCore + CryptoRng>(
        role: Role,
        cluster: &str,
        key: Option<&ClusterKey>,
        rng: &mut R,
    ) -> (Self, Vec<u8>) {
        assert!(
            cluster.len() <= MAX_CLUSTER_NAME,
            "cluster name validated by config"
        );
        let secret = EphemeralSecret::random(&mut *rng);
        let point = secret.public_key().to_encoded_point(false);
        let our_pubkey: [u8; PUBKEY_LEN] = point
            .as_bytes()
            .try_into()
            .expect("an uncompressed P-256 point is 65 bytes");
        let mut random = [0u8; RANDOM_LEN];
        rng.fill_bytes(&mut random);

        let mut hello = Vec::with_capacity(5 + cluster.len() + PUBKEY_LEN + RANDOM_LEN);
        hello.push(kind::HELLO);
        hello.push(PROTOCOL_VERSION);
        hello.push(if key.is_some() { FLAG_KEYED } else { 0 });
        hello.push(role.wire());
        hello.push(cluster.len() as u8);
        hello.extend_from_slice(cluster.as_bytes());
        hello.extend_from_slice(&our_pubkey);
        hello.extend_from_slice(&random);
        let hs = Handshake {
            role,
            secret,
            our_hello: hello.clone(),
            our_pubkey,
            cluster: cluster.to_owned(),
            key: key.cloned(),
        };
        (hs, hello)
    }

    /// Reads the peer's hello and derives the session. The session's first sealed record
    /// must be the key confirmation returned alongside it.
    pub fn finish(self, peer_hello: &[u8]) -> Result<(Session, Vec<u8>), HandshakeError> {
        let parsed = ParsedHello::parse(peer_hello)?;
        if parsed.version != PROTOCOL_VERSION {
            return Err(HandshakeError::Version {
                ours: PROTOCOL_VERSION,
                theirs: parsed.version,
            });
        }
        if parsed.cluster != self.cluster.as_bytes() {
            return Err(HandshakeError::ClusterMismatch {
                ours: self.cluster.clone(),
                theirs: String::from_utf8_lossy(parsed.cluster).into_owned(),
            });
        }
        // Both ends must play different roles and hold different keys; otherwise our own
        // hello is being reflected back at us.
        if parsed.role == self.role.wire() || parsed.pubkey == self.our_pubkey {
            return Err(HandshakeError::Malformed("reflected or same-role hello"));
        }
        if (parsed.flags & FLAG_KEYED != 0) != self.key.is_some() {
            return Err(HandshakeError::KeyMismatch);
        }
        let peer_key =
            PublicKey::from_sec1_bytes(parsed.pubkey).map_err(|_| HandshakeError::BadPublicKey)?;
        let shared = self.secret.diffie_hellman(&peer_key);

        let (initiator_hello, responder_hello) = match self.role {
            Role::Initiator => (&self.our_hello[..], peer_hello),
            Role::Responder => (peer_hello, &self.our_hello[..]),
        };
        let mut th = Sha256::new();
        th.update(b"espial/1 transcript");
        for hello in [initiator_hello, responder_hello] {
            th.update((hello.len() as u32).to_be_bytes());
            th.update(hello);
        }
        let transcript: [u8; 32] = th.finalize().into();

        let mut ikm = [0u8; 64];
        ikm[..32].copy_from_slice(shared.raw_secret_bytes());
        if let Some(key) = &self.key {
            ikm[32..].copy_from_slice(&key.psk);
        }
        let hk = Hkdf::<Sha256>::new(Some(&transcript), &ikm);
        let mut k_i2r = [0u8; 16];
        let mut k_r2i = [0u8; 16];
        hk.expand(b"espial/1 key i2r", &mut k_i2r)
            .expect("16 bytes is a valid HKDF output length");
        hk.expand(b"espial/1 key r2i", &mut k_r2i)
            .expect("16 bytes is a valid HKDF output length");
        let (send, recv) = match self.role {
            Role::Initiator => (k_i2r, k_r2i),
            Role::Responder => (k_r2i, k_i2r),
        };
        Ok(Session::confirm(send, recv, transcript))
    }
}

struct ParsedHello<'a> {
    version: u8,
    flags: u8,
    role: u8,
    cluster: &'a [u8],
    pubkey: &'a [u8],
}

impl<'a> ParsedHello<'a> {
    fn parse(body: &'a [u8]) -> Result<Self, HandshakeError> {
        let [k, version, flags, role, cluster_len, rest @ ..] = body else {
            return Err(HandshakeError::Malformed("hello shorter than its header"));
        };
        if *k != kind::HELLO {
            return Err(HandshakeError::Malformed("expected a hello frame"));
        }
        if *version != PROTOCOL_VERSION {
            // Checked before the layout, which a later version may change.
            return Ok(ParsedHello {
                version: *version,
                flags: 0,
                role: *role,
                cluster: &[],
                pubkey: &[],
            });
        }
        let cluster_len = *cluster_len as usize;
        if cluster_len > MAX_CLUSTER_NAME || *role > 1 {
            return Err(HandshakeError::Malformed("hello header out of range"));
        }
        if rest.len() != cluster_len + PUBKEY_LEN + RANDOM_LEN {
            return Err(HandshakeError::Malformed("hello has the wrong length"));
        }
        Ok(ParsedHello {
            version: *version,
            flags: *flags,
            role: *role,
            cluster: &rest[..cluster_len],
            pubkey: &rest[cluster_len..cluster_len + PUBKEY_LEN],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::{ConnectionError, RecordError};
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// Runs both ends of a handshake and each side's key confirmation.
    fn connect(
        a_key: Option<&ClusterKey>,
        b_key: Option<&ClusterKey>,
        rng: &mut ChaCha20Rng,
    ) -> Result<(Session, Session), ConnectionError> {
        let (a, a_hello) = Handshake::start(Role::Initiator, "test", a_key, rng);
        let (b, b_hello) = Handshake::start(Role::Responder, "test", b_key, rng);
        let (mut sa, a_fin) = a.finish(&b_hello)?;
        let (mut sb, b_fin) = b.finish(&a_hello)?;
        assert_eq!(sb.open(&a_fin[4..])?, None);
        assert_eq!(sa.open(&b_fin[4..])?, None);
        Ok((sa, sb))
    }

    fn exchange(a: &mut Session, b: &mut Session) {
        for msg in [&b"hello"[..], b"", &[7u8; 3000][..]] {
            let f = a.seal(msg).unwrap();
            assert_eq!(b.open(&f[4..]).unwrap().as_deref(), Some(msg));
            let f = b.seal(msg).unwrap();
            assert_eq!(a.open(&f[4..]).unwrap().as_deref(), Some(msg));
        }
    }

    #[test]
    fn round_trip_without_cluster_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (mut a, mut b) = connect(None, None, &mut rng).unwrap();
        exchange(&mut a, &mut b);
    }

    #[test]
    fn round_trip_with_cluster_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let key = ClusterKey::derive(b"correct horse battery staple");
        let (mut a, mut b) = connect(Some(&key), Some(&key), &mut rng).unwrap();
        exchange(&mut a, &mut b);
    }

    #[test]
    fn different_cluster_keys_fail_key_confirmation() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let k1 = ClusterKey::derive(b"correct horse battery staple");
        let k2 = ClusterKey::derive(b"correct horse battery stapler");
        let err = connect(Some(&k1), Some(&k2), &mut rng).unwrap_err();
        assert_eq!(
            err,
            ConnectionError::Handshake(HandshakeError::KeyMismatch),
            "{err}"
        );
    }

    #[test]
    fn keyed_and_unkeyed_nodes_refuse_each_other() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let k = ClusterKey::derive(b"correct horse battery staple");
        for (a, b) in [(Some(&k), None), (None, Some(&k))] {
            let err = connect(a, b, &mut rng).unwrap_err();
            assert_eq!(err, ConnectionError::Handshake(HandshakeError::KeyMismatch));
        }
    }

    #[test]
    fn a_tampered_hello_fails_key_confirmation() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (a, a_hello) = Handshake::start(Role::Initiator, "test", None, &mut rng);
        let (b, mut b_hello) = Handshake::start(Role::Responder, "test", None, &mut rng);
        // An attacker flips a bit of the responder's random: the public keys still agree,
        // but the transcripts differ, so the derived keys differ.
        let last = b_hello.len() - 1;
        b_hello[last] ^= 1;
        let (mut sa, _) = a.finish(&b_hello).unwrap();
        let (_, b_fin) = b.finish(&a_hello).unwrap();
        assert_eq!(
            sa.open(&b_fin[4..]),
            Err(ConnectionError::Handshake(HandshakeError::KeyMismatch))
        );
    }

    #[test]
    fn other_cluster_version_and_reflection_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let (a, a_hello) = Handshake::start(Role::Initiator, "blue", None, &mut rng);
        let (_, b_hello) = Handshake::start(Role::Responder, "green", None, &mut rng);
        assert!(matches!(
            a.finish(&b_hello),
            Err(HandshakeError::ClusterMismatch { .. })
        ));
        let (a, _) = Handshake::start(Role::Initiator, "blue", None, &mut rng);
        let mut v2 = a_hello.clone();
        v2[1] = 2;
        assert_eq!(
            a.finish(&v2).err(),
            Some(HandshakeError::Version { ours: 1, theirs: 2 })
        );
        let (a, a_hello) = Handshake::start(Role::Initiator, "blue", None, &mut rng);
        assert!(matches!(
            a.finish(&a_hello),
            Err(HandshakeError::Malformed(_))
        ));
        let (a, _) = Handshake::start(Role::Initiator, "blue", None, &mut rng);
        assert!(matches!(
            a.finish(&a_hello[..20]),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn records_before_confirmation_are_not_delivered() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (a, a_hello) = Handshake::start(Role::Initiator, "test", None, &mut rng);
        let (b, b_hello) = Handshake::start(Role::Responder, "test", None, &mut rng);
        let (mut sa, _a_fin) = a.finish(&b_hello).unwrap();
        let (mut sb, _) = b.finish(&a_hello).unwrap();
        // The initiator skips its confirmation and sends data: the responder refuses it
        // (sequence 1 where 0 was expected).
        let data = sa.seal(b"early").unwrap();
        assert_eq!(
            sb.open(&data[4..]),
            Err(ConnectionError::Record(RecordError::OutOfOrder {
                seq: 1,
                expected: 0
            }))
        );
    }
}
