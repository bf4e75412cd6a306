//! The handshake: an ephemeral P-256 ECDH exchange (forward secrecy), the optional cluster
//! key mixed into the key derivation, and each end proving its static identity key with a
//! signature over the transcript, as TLS 1.3's CertificateVerify does. See PROTOCOL.md for
//! the byte-level description and the test vectors (`tests::vectors` checks the same).
//!
//! ```text
//! I -> R  hello_I               (both hellos go out as soon as TCP is up)
//! R -> I  hello_R
//! I -> R  confirm_I             (sealed, i2r seq 0)
//! R -> I  confirm_R, Introduce  (sealed, r2i seq 0 and 1; only once confirm_I is verified)
//! I -> R  Introduce             (i2r seq 1; only once confirm_R is verified)
//!
//! th        = SHA-256("espial/2 transcript" || u32(len)||hello_I || u32(len)||hello_R)
//! prk       = HKDF-Extract(salt = th, ikm = ECDH(e_I, e_R) || psk-or-32-zeros)
//! key_i2r   = HKDF-Expand(prk, "espial/2 key i2r", 16)
//! key_r2i   = HKDF-Expand(prk, "espial/2 key r2i", 16)
//! proof_X   = ECDSA-P256-SHA256(s_X, "espial/2 initiator proof" | "espial/2 responder proof"
//!                                    || th || S_X)
//! confirm_X = "espial/2 finished" || S_X (33, compressed) || proof_X (64, r||s)
//! ```
//!
//! Why the responder waits: every record sealed under a key derived from the cluster key
//! lets whoever holds it test guesses of the cluster key offline. A peer that connects to us
//! gets nothing sealed until it has proven the key itself (its `confirm_I` authenticated).
//!
//! Typestate: [`Handshake::finish`] consumes the handshake, so an ephemeral secret is used
//! for exactly one exchange; [`Confirming::verify`] consumes what it returned.

use hkdf::Hkdf;
use p256::{PublicKey, SecretKey};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::generator::mul_generator;
use super::identity::{self, Identity, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use super::jacobian::{mul_x, Affine};
use super::session::Session;
use super::ClusterKey;
use crate::core::error::{ConnectionError, HandshakeError, RecordError};
use crate::core::node::NodeId;
use crate::core::wire::kind;

/// The protocol version this build speaks. A hello's first two bytes (kind, version) and a
/// beacon's first five (magic, version) keep their place in every version, so that nodes of
/// different versions can tell each other which they speak.
pub const PROTOCOL_VERSION: u8 = 2;
const FLAG_KEYED: u8 = 1;
const PUBKEY_LEN: usize = 65;
const RANDOM_LEN: usize = 32;
/// Longest cluster name (a `u8` length on the wire).
pub const MAX_CLUSTER_NAME: usize = 64;

const TRANSCRIPT_LABEL: &[u8] = b"espial/2 transcript";
const KEY_I2R_LABEL: &[u8] = b"espial/2 key i2r";
const KEY_R2I_LABEL: &[u8] = b"espial/2 key r2i";
/// Liveness probes (UDP, see `core::probe`) have keys of their own, so a probe's counter
/// nonce can never meet a record's under the same key.
const PROBE_I2R_LABEL: &[u8] = b"espial/2 probe i2r";
const PROBE_R2I_LABEL: &[u8] = b"espial/2 probe r2i";
const FINISHED_LABEL: &[u8] = b"espial/2 finished";
/// Bytes of a key confirmation's plaintext: label, identity key, proof.
pub const CONFIRMATION_LEN: usize = FINISHED_LABEL.len() + PUBLIC_KEY_LEN + SIGNATURE_LEN;

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

    /// What this end's identity proof signs before the transcript hash.
    fn proof_label(self) -> &'static [u8] {
        match self {
            Role::Initiator => b"espial/2 initiator proof",
            Role::Responder => b"espial/2 responder proof",
        }
    }

    fn other(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }
}

/// A handshake in progress: our hello is sent, the peer's is awaited.
pub struct Handshake {
    role: Role,
    /// Zeroized on drop (p256's `SecretKey`).
    secret: SecretKey,
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
        let secret = SecretKey::random(&mut *rng);
        let mut random = [0u8; RANDOM_LEN];
        rng.fill_bytes(&mut random);
        Handshake::from_parts(role, cluster, key, secret, random)
    }

    /// [`Handshake::start`] with a given ephemeral key and random: for test vectors.
    pub fn from_parts(
        role: Role,
        cluster: &str,
        key: Option<&ClusterKey>,
        secret: SecretKey,
        random: [u8; RANDOM_LEN],
    ) -> (Self, Vec<u8>) {
        assert!(
            cluster.len() <= MAX_CLUSTER_NAME,
            "cluster name validated by config"
        );
        // The table's product, not `secret.public_key()`: the same point, a fifth of the
        // work (see `super::generator`).
        let scalar = Zeroizing::new(secret.to_nonzero_scalar());
        let our_pubkey: [u8; PUBKEY_LEN] = mul_generator(&scalar)
            .to_affine()
            .expect("k·G is not the identity: 0 < k < n")
            .to_uncompressed();
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

    /// Reads the peer's hello and derives the session keys. Returns the handshake awaiting
    /// the peer's key confirmation, and, for the initiator, our own confirmation frame to
    /// send now (the responder's is sent by [`Confirming::verify`]).
    pub fn finish(
        self,
        peer_hello: &[u8],
        identity: &Identity,
    ) -> Result<(Confirming, Option<Vec<u8>>), HandshakeError> {
        self.finish_claiming(peer_hello, identity, identity.public_key())
    }

    /// [`Handshake::finish`] with a confirmation that names `claimed` as our identity key
    /// while `identity` signs: what an impostor can send. For the test adversary only.
    #[doc(hidden)]
    pub fn finish_claiming(
        self,
        peer_hello: &[u8],
        identity: &Identity,
        claimed: &[u8; PUBLIC_KEY_LEN],
    ) -> Result<(Confirming, Option<Vec<u8>>), HandshakeError> {
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
        // p256 checks that the key is a point of the curve (not the identity: that has no
        // uncompressed encoding); the product is ours (`super::jacobian`), a third cheaper.
        PublicKey::from_sec1_bytes(parsed.pubkey).map_err(|_| HandshakeError::BadPublicKey)?;
        let peer_key =
            Affine::from_uncompressed(parsed.pubkey).ok_or(HandshakeError::BadPublicKey)?;
        // The scalar's copy and the shared secret are zeroized as the key they came from is.
        let scalar = Zeroizing::new(self.secret.to_nonzero_scalar());
        let shared = mul_x(&peer_key, &scalar);

        let (initiator_hello, responder_hello) = match self.role {
            Role::Initiator => (&self.our_hello[..], peer_hello),
            Role::Responder => (peer_hello, &self.our_hello[..]),
        };
        let transcript = transcript_hash(initiator_hello, responder_hello);
        let (k_i2r, k_r2i) = session_keys(&transcript, &shared, &self.key);
        let (p_i2r, p_r2i) = derive_pair(
            &transcript,
            &shared,
            &self.key,
            [PROBE_I2R_LABEL, PROBE_R2I_LABEL],
        );
        let (send, recv, probe_send, probe_recv) = match self.role {
            Role::Initiator => (&k_i2r, &k_r2i, p_i2r, p_r2i),
            Role::Responder => (&k_r2i, &k_i2r, p_r2i, p_i2r),
        };
        let mut session = Session::new(**send, **recv);
        session.set_probe_keys(probe_send, probe_recv);
        let ours = session
            .seal(&confirmation(self.role, &transcript, identity, claimed))
            .expect("a fresh counter cannot be exhausted");
        let mut confirming = Confirming {
            session,
            transcript,
            peer_role: self.role.other(),
            held: None,
        };
        Ok(match self.role {
            Role::Initiator => (confirming, Some(ours)),
            Role::Responder => {
                confirming.held = Some(ours);
                (confirming, None)
            }
        })
    }
}

/// Keys are agreed; the peer's key confirmation is awaited. Nothing sealed under the keys
/// leaves a responder before that confirmation is verified.
pub struct Confirming {
    session: Session,
    transcript: [u8; 32],
    peer_role: Role,
    /// The responder's own confirmation, sealed and held back.
    held: Option<Vec<u8>>,
}

/// What a verified key confirmation establishes.
pub struct Confirmed {
    pub session: Session,
    /// The id whose private key the peer proved it holds.
    pub peer: NodeId,
    /// The responder's own confirmation frame, to send now (first of its records).
    pub confirmation: Option<Vec<u8>>,
}

impl Confirming {
    /// Checks the peer's first record, its key confirmation: it must authenticate under the
    /// agreed keys (else the cluster keys differ, [`HandshakeError::KeyMismatch`]) and carry
    /// a valid proof of the identity key it names ([`HandshakeError::BadProof`]).
    pub fn verify(mut self, record: &mut [u8]) -> Result<Confirmed, ConnectionError> {
        let plain = match self.session.open_in_place(record) {
            Ok(p) => p,
            // Under a wrong key the very first record cannot authenticate.
            Err(ConnectionError::Record(RecordError::Forged)) => {
                return Err(HandshakeError::KeyMismatch.into())
            }
            Err(e) => return Err(e),
        };
        let peer = check_confirmation(plain, self.peer_role, &self.transcript)?;
        Ok(Confirmed {
            session: self.session,
            peer,
            confirmation: self.held.take(),
        })
    }

    /// Seals a message for the peer: only the initiator may send before it has verified the
    /// peer's key confirmation.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, RecordError> {
        debug_assert!(
            self.held.is_none(),
            "a responder seals nothing before verifying"
        );
        self.session.seal(plaintext)
    }
}

/// `SHA-256(label || u32(len) || hello_I || u32(len) || hello_R)`.
fn transcript_hash(initiator_hello: &[u8], responder_hello: &[u8]) -> [u8; 32] {
    let mut th = Sha256::new();
    th.update(TRANSCRIPT_LABEL);
    for hello in [initiator_hello, responder_hello] {
        th.update((hello.len() as u32).to_be_bytes());
        th.update(hello);
    }
    th.finalize().into()
}

type Key = Zeroizing<[u8; 16]>;

/// The two record keys, i2r and r2i; every intermediate secret is zeroized.
fn session_keys(transcript: &[u8; 32], dh: &[u8], psk: &Option<ClusterKey>) -> (Key, Key) {
    derive_pair(transcript, dh, psk, [KEY_I2R_LABEL, KEY_R2I_LABEL])
}

/// Two keys from the handshake's secrets, one per label.
fn derive_pair(
    transcript: &[u8; 32],
    dh: &[u8],
    psk: &Option<ClusterKey>,
    labels: [&[u8]; 2],
) -> (Key, Key) {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(dh);
    if let Some(key) = psk {
        ikm[32..].copy_from_slice(&key.psk);
    }
    let hk = Hkdf::<Sha256>::new(Some(transcript), &ikm[..]);
    let mut k_i2r = Zeroizing::new([0u8; 16]);
    let mut k_r2i = Zeroizing::new([0u8; 16]);
    hk.expand(labels[0], &mut k_i2r[..])
        .expect("16 bytes is a valid HKDF output length");
    hk.expand(labels[1], &mut k_r2i[..])
        .expect("16 bytes is a valid HKDF output length");
    (k_i2r, k_r2i)
}

/// What `role`'s identity proof signs: its label, the transcript hash and its public key.
fn proof_input(role: Role, transcript: &[u8; 32], public: &[u8]) -> Vec<u8> {
    [role.proof_label(), &transcript[..], public].concat()
}

/// Our key confirmation's plaintext: label, our identity key (`public`, unless an impostor
/// names another), our proof.
fn confirmation(
    role: Role,
    transcript: &[u8; 32],
    identity: &Identity,
    public: &[u8; PUBLIC_KEY_LEN],
) -> Vec<u8> {
    let proof = identity.sign(&proof_input(role, transcript, public));
    [FINISHED_LABEL, &public[..], &proof[..]].concat()
}

/// The peer's key confirmation: the id it proves, or why it proves none.
fn check_confirmation(
    plain: &[u8],
    role: Role,
    transcript: &[u8; 32],
) -> Result<NodeId, HandshakeError> {
    let Some(rest) = plain.strip_prefix(FINISHED_LABEL) else {
        return Err(HandshakeError::Malformed("key confirmation label"));
    };
    if rest.len() != PUBLIC_KEY_LEN + SIGNATURE_LEN {
        return Err(HandshakeError::Malformed("key confirmation length"));
    }
    let (public, proof) = rest.split_at(PUBLIC_KEY_LEN);
    let public: &[u8; PUBLIC_KEY_LEN] = public.try_into().expect("split at its length");
    if !identity::verify(public, &proof_input(role, transcript, public), proof) {
        return Err(HandshakeError::BadProof);
    }
    Ok(identity::id_of(public))
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
        let [k, version, rest @ ..] = body else {
            return Err(HandshakeError::Malformed("hello shorter than its header"));
        };
        if *k != kind::HELLO {
            return Err(HandshakeError::Malformed("expected a hello frame"));
        }
        if *version != PROTOCOL_VERSION {
            // Checked before the layout, which another version may change.
            return Ok(ParsedHello {
                version: *version,
                flags: 0,
                role: 0,
                cluster: &[],
                pubkey: &[],
            });
        }
        let [flags, role, cluster_len, rest @ ..] = rest else {
            return Err(HandshakeError::Malformed("hello shorter than its header"));
        };
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

    struct Ends {
        a: Session,
        b: Session,
        a_saw: NodeId,
        b_saw: NodeId,
    }

    /// Runs both ends of a handshake in the protocol's order: the initiator's confirmation
    /// first, the responder's only once that one is verified.
    fn connect(
        a_key: Option<&ClusterKey>,
        b_key: Option<&ClusterKey>,
        ids: (&Identity, &Identity),
        rng: &mut ChaCha20Rng,
    ) -> Result<Ends, ConnectionError> {
        let (a, a_hello) = Handshake::start(Role::Initiator, "test", a_key, rng);
        let (b, b_hello) = Handshake::start(Role::Responder, "test", b_key, rng);
        let (ca, a_fin) = a.finish(&b_hello, ids.0)?;
        let (cb, none) = b.finish(&a_hello, ids.1)?;
        assert!(none.is_none(), "the responder holds its confirmation back");
        let b_done = cb.verify(&mut a_fin.unwrap()[4..])?;
        let mut b_fin = b_done
            .confirmation
            .expect("sent once the initiator's is verified");
        let a_done = ca.verify(&mut b_fin[4..])?;
        Ok(Ends {
            a: a_done.session,
            b: b_done.session,
            a_saw: a_done.peer,
            b_saw: b_done.peer,
        })
    }

    fn ids(seed: u64) -> (Identity, Identity) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        (Identity::generate(&mut rng), Identity::generate(&mut rng))
    }

    fn exchange(a: &mut Session, b: &mut Session) {
        for msg in [&b"hello"[..], b"", &[7u8; 3000][..]] {
            let f = a.seal(msg).unwrap();
            assert_eq!(b.open(&f[4..]).unwrap(), msg);
            let f = b.seal(msg).unwrap();
            assert_eq!(a.open(&f[4..]).unwrap(), msg);
        }
    }

    #[test]
    fn round_trip_without_cluster_key_proves_both_ids() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (ia, ib) = ids(1);
        let mut e = connect(None, None, (&ia, &ib), &mut rng).unwrap();
        assert_eq!((e.a_saw, e.b_saw), (ib.id(), ia.id()));
        exchange(&mut e.a, &mut e.b);
    }

    #[test]
    fn round_trip_with_cluster_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (ia, ib) = ids(2);
        let key = ClusterKey::derive(b"correct horse battery staple");
        let mut e = connect(Some(&key), Some(&key), (&ia, &ib), &mut rng).unwrap();
        assert_eq!((e.a_saw, e.b_saw), (ib.id(), ia.id()));
        exchange(&mut e.a, &mut e.b);
    }

    #[test]
    fn different_cluster_keys_fail_key_confirmation() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (ia, ib) = ids(3);
        let k1 = ClusterKey::derive(b"correct horse battery staple");
        let k2 = ClusterKey::derive(b"correct horse battery stapler");
        let err = connect(Some(&k1), Some(&k2), (&ia, &ib), &mut rng).err();
        assert_eq!(
            err,
            Some(ConnectionError::Handshake(HandshakeError::KeyMismatch))
        );
    }

    #[test]
    fn keyed_and_unkeyed_nodes_refuse_each_other() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let (ia, ib) = ids(4);
        let k = ClusterKey::derive(b"correct horse battery staple");
        for (a, b) in [(Some(&k), None), (None, Some(&k))] {
            let err = connect(a, b, (&ia, &ib), &mut rng).err();
            assert_eq!(
                err,
                Some(ConnectionError::Handshake(HandshakeError::KeyMismatch))
            );
        }
    }

    #[test]
    fn a_tampered_hello_fails_key_confirmation() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (ia, ib) = ids(5);
        let (a, a_hello) = Handshake::start(Role::Initiator, "test", None, &mut rng);
        let (b, mut b_hello) = Handshake::start(Role::Responder, "test", None, &mut rng);
        // An attacker flips a bit of the responder's random: the public keys still agree,
        // but the transcripts differ, so the derived keys differ.
        let last = b_hello.len() - 1;
        b_hello[last] ^= 1;
        let (_, a_fin) = a.finish(&b_hello, &ia).unwrap();
        let (cb, _) = b.finish(&a_hello, &ib).unwrap();
        assert_eq!(
            cb.verify(&mut a_fin.unwrap()[4..]).err(),
            Some(ConnectionError::Handshake(HandshakeError::KeyMismatch))
        );
    }

    #[test]
    fn a_confirmation_naming_a_key_it_cannot_sign_for_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let (victim, attacker) = ids(61);
        // The attacker names the victim's key but signs with its own.
        let (a, _) = Handshake::start(Role::Initiator, "test", None, &mut rng);
        let (_, b_hello) = Handshake::start(Role::Responder, "test", None, &mut rng);
        let (ca, _) = a.finish(&b_hello, &attacker).unwrap();
        let th = ca.transcript;
        let proof = attacker.sign(&proof_input(Role::Initiator, &th, victim.public_key()));
        let plain = [FINISHED_LABEL, &victim.public_key()[..], &proof[..]].concat();
        assert_eq!(
            check_confirmation(&plain, Role::Initiator, &th),
            Err(HandshakeError::BadProof)
        );
        // A genuine proof by the victim of another transcript does not carry over either.
        let other = [1u8; 32];
        let replayed = victim.sign(&proof_input(Role::Initiator, &other, victim.public_key()));
        let plain = [FINISHED_LABEL, &victim.public_key()[..], &replayed[..]].concat();
        assert_eq!(
            check_confirmation(&plain, Role::Initiator, &th),
            Err(HandshakeError::BadProof)
        );
        // Nor a responder's proof presented as an initiator's.
        let wrong_role = victim.sign(&proof_input(Role::Responder, &th, victim.public_key()));
        let plain = [FINISHED_LABEL, &victim.public_key()[..], &wrong_role[..]].concat();
        assert_eq!(
            check_confirmation(&plain, Role::Initiator, &th),
            Err(HandshakeError::BadProof)
        );
        // The genuine one passes, and a malformed one is refused as such.
        let good = victim.sign(&proof_input(Role::Initiator, &th, victim.public_key()));
        let plain = [FINISHED_LABEL, &victim.public_key()[..], &good[..]].concat();
        assert_eq!(
            check_confirmation(&plain, Role::Initiator, &th),
            Ok(victim.id())
        );
        assert!(matches!(
            check_confirmation(&plain[1..], Role::Initiator, &th),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn other_cluster_version_and_reflection_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let (ia, _) = ids(6);
        let (a, a_hello) = Handshake::start(Role::Initiator, "blue", None, &mut rng);
        let (_, b_hello) = Handshake::start(Role::Responder, "green", None, &mut rng);
        assert!(matches!(
            a.finish(&b_hello, &ia),
            Err(HandshakeError::ClusterMismatch { .. })
        ));
        // A version 1 hello (its whole old layout) and a future one: refused by version.
        for (version, theirs) in [(1u8, 1u8), (3, 3)] {
            let (a, _) = Handshake::start(Role::Initiator, "blue", None, &mut rng);
            let mut other = a_hello.clone();
            other[1] = version;
            other[3] = 1;
            assert_eq!(
                a.finish(&other, &ia).err(),
                Some(HandshakeError::Version { ours: 2, theirs })
            );
        }
        let (a, _) = Handshake::start(Role::Initiator, "blue", None, &mut rng);
        assert_eq!(
            a.finish(&[kind::HELLO, 1], &ia).err(),
            Some(HandshakeError::Version { ours: 2, theirs: 1 })
        );
        let (a, a_hello) = Handshake::start(Role::Initiator, "blue", None, &mut rng);
        assert!(matches!(
            a.finish(&a_hello, &ia),
            Err(HandshakeError::Malformed(_))
        ));
        let (a, _) = Handshake::start(Role::Initiator, "blue", None, &mut rng);
        assert!(matches!(
            a.finish(&a_hello[..20], &ia),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn records_before_confirmation_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (ia, ib) = ids(7);
        let (a, a_hello) = Handshake::start(Role::Initiator, "test", None, &mut rng);
        let (b, b_hello) = Handshake::start(Role::Responder, "test", None, &mut rng);
        let (mut ca, _a_fin) = a.finish(&b_hello, &ia).unwrap();
        let (cb, _) = b.finish(&a_hello, &ib).unwrap();
        // The initiator skips its confirmation and sends data: the responder refuses it
        // (sequence 1 where 0 was expected).
        let mut data = ca.seal(b"early").unwrap();
        assert_eq!(
            cb.verify(&mut data[4..]).err(),
            Some(ConnectionError::Record(RecordError::OutOfOrder {
                seq: 1,
                expected: 0
            }))
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The vectors of PROTOCOL.md ("Test vectors"): fixed ephemeral and static keys,
    /// randoms and pre-shared key give these exact bytes.
    #[test]
    fn vectors() {
        let scalar = |b: u8| SecretKey::from_bytes(&[b; 32].into()).unwrap();
        let static_i = Identity::from_secret_bytes(&[0x33; 32]).unwrap();
        let static_r = Identity::from_secret_bytes(&[0x44; 32]).unwrap();
        let mut key = ClusterKey::derive(b"unused: the vector fixes the psk");
        key.psk = [0x5c; 32];
        let (hs_i, hello_i) = Handshake::from_parts(
            Role::Initiator,
            "espial",
            Some(&key),
            scalar(0x11),
            [0xa1; 32],
        );
        let (hs_r, hello_r) = Handshake::from_parts(
            Role::Responder,
            "espial",
            Some(&key),
            scalar(0x22),
            [0xb2; 32],
        );
        let th = transcript_hash(&hello_i, &hello_r);
        let dh = p256::ecdh::diffie_hellman(
            scalar(0x11).to_nonzero_scalar(),
            scalar(0x22).public_key().as_affine(),
        );
        let (k_i2r, k_r2i) = session_keys(&th, dh.raw_secret_bytes(), &Some(key.clone()));
        let (k_i2r_open, k_r2i_open) = session_keys(&th, dh.raw_secret_bytes(), &None);
        let (ci, conf_i) = hs_i.finish(&hello_r, &static_i).unwrap();
        let mut conf_i = conf_i.unwrap();
        let (cr, none) = hs_r.finish(&hello_i, &static_r).unwrap();
        assert!(none.is_none());
        let sent_i = conf_i.clone();
        let done_r = cr.verify(&mut conf_i[4..]).unwrap();
        let mut conf_r = done_r.confirmation.unwrap();
        let sent_r = conf_r.clone();
        let done_i = ci.verify(&mut conf_r[4..]).unwrap();
        assert_eq!(done_r.peer, static_i.id());
        assert_eq!(done_i.peer, static_r.id());
        let got = [
            ("hello_I", hex(&hello_i)),
            ("hello_R", hex(&hello_r)),
            ("ecdh", hex(dh.raw_secret_bytes())),
            ("th", hex(&th)),
            ("key_i2r", hex(&k_i2r[..])),
            ("key_r2i", hex(&k_r2i[..])),
            ("key_i2r (no cluster key)", hex(&k_i2r_open[..])),
            ("key_r2i (no cluster key)", hex(&k_r2i_open[..])),
            ("S_I", hex(static_i.public_key())),
            ("S_R", hex(static_r.public_key())),
            ("id_I", static_i.id().to_string()),
            ("id_R", static_r.id().to_string()),
            (
                "proof_I",
                hex(&static_i.sign(&proof_input(Role::Initiator, &th, static_i.public_key()))),
            ),
            (
                "proof_R",
                hex(&static_r.sign(&proof_input(Role::Responder, &th, static_r.public_key()))),
            ),
            ("confirm_I frame", hex(&sent_i)),
            ("confirm_R frame", hex(&sent_r)),
        ];
        for (name, value) in &got {
            println!("{name}: {value}");
        }
        let expected = [
            ("hello_I", "010201000665737069616c040217e617f0b6443928278f96999e69a23a4f2c152bdf6d6cdf66e5b80282d4ed194a7debcb97712d2dda3ca85aa8765a56f45fc758599652f2897c65306e5794a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"),
            ("hello_R", "010201010665737069616c04d65a93977caa3d1b081852ff57a79e465f1660577304baead505dd3a48589cf350185e895372df6221ea3a137557e473fddb6755f05bd507c3c533fce9c91285b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"),
            ("ecdh", "ccfc261f58193c98ca4ad4a53bbac6f0ee29bc4d48438090446908622ca79af6"),
            ("th", "68636e07d7298a8009b7e7ac6d4d788f561d38c69e6f79b5cb65b7b95cd0fde3"),
            ("key_i2r", "3a28adc3ed0b3fe0012109d47e3eba3f"),
            ("key_r2i", "0ef7c5403c1fa37d74a1bb7159e4c8af"),
            ("key_i2r (no cluster key)", "9a7d876c49a99eb6119e2c5a212d603a"),
            ("key_r2i (no cluster key)", "207285e366c1908e0177de4ce0391367"),
            ("S_I", "0351a7580833898ea1b183cbd7350a4099078c6ef1c1e18e970cd7683035f25e7d"),
            ("S_R", "025b36890dacbd7c9a96bb74a1ee28b3d2d75b72e09a20ef25cf8e6fd8a9f0350d"),
            ("id_I", "0b0b0f69-3d14-8bff-91e0-d69b3d8672c8"),
            ("id_R", "ed1720b7-5bd2-8a63-906f-723094729797"),
            ("proof_I", "9ce2a7c4a0174eef511e7cce064ecfa4a7a4c956ee88b376b7004af2a2c35e819044485552f259e2fde0c2f38a0460a57e7c27fe7d39f18a834394f9abf2a713"),
            ("proof_R", "181ea574f023c5b8f8913f89e25b1035ac1c36628ef41b1024dcfcc5dbc04c89bd5a25a104eb6aa179599f0482a6a67c92e1f3fa5873eb337afb59e02f8690d2"),
            ("confirm_I frame", "0000008b0200000000000000008d3534e1d853fbcda9c18e2e11fb75c8caf3870e2c5f78e38e24b37c5bfcd28f1940ff7b807a3127a63daaf827a497e99827156973b319601d92a46181f91f4a2dd3324d8b4d3a1841f0ae5e54e43e1768824e052d2fe8ef31307cdefe8b2cbdd3f3fd1b6ab39b2f36d636b07b0d6467bf9b80d03ac0595c87b886f82271df9c7cab"),
            ("confirm_R frame", "0000008b020000000000000000e1231c7ecb877d6be7d70f8b6839571039b5f1d6b5ff1d6f6f4433c505da48ec4c85d9bacbf978f8c344a54683a2e70b75bc75c889f0e518451087cb857f02531c1a07100bef971250ad88708db7baf234d4ca15cdea5b8559999ab9291bfb267c47ce20b8d7a9bc1e1c253b1ffcc5274a7770f70b904bddbe485548ff0352666d8d"),
        ];
        assert_eq!(got.len(), expected.len());
        for ((name, value), (want_name, want)) in got.iter().zip(expected) {
            assert_eq!((*name, value.as_str()), (want_name, want));
        }
    }
}
