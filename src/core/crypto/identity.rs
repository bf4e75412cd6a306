//! A node's identity: a static P-256 key pair made at every start, never written anywhere.
//! The node id is derived from the public key, so an id can only be proven by the node that
//! holds its private key (the handshake makes each end prove it, see [`super::handshake`]).
//!
//! Id format (a UUID, version 8, RFC 9562 "custom"):
//! ```text
//! digest = SHA-256("espial/2 node id" || SEC1-compressed public key (33 bytes))
//! id     = digest[0..16], then id[6] = 0x80 | (id[6] & 0x0f), id[8] = 0x80 | (id[8] & 0x3f)
//! ```
//! 122 bits of the digest remain: claiming a given id means finding a key pair that hashes
//! to it, 2^122 work.

use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::{Curve, FieldBytesEncoding, PrimeField};
use p256::{NistP256, Scalar, U256};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::generator::{self, mul_generator};
use super::jacobian::Affine;
use crate::core::node::NodeId;

/// Bytes of a SEC1-compressed P-256 public key, as identity keys travel.
pub const PUBLIC_KEY_LEN: usize = 33;
/// Bytes of an ECDSA P-256 signature as it travels: `r || s`, 32 bytes each.
pub const SIGNATURE_LEN: usize = 64;
const ID_LABEL: &[u8] = b"espial/2 node id";

/// This node's static key pair and the id derived from it. The private key is zeroized
/// when the last copy is dropped (p256's `SigningKey` does so).
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
    public: [u8; PUBLIC_KEY_LEN],
    id: NodeId,
}

impl Identity {
    /// A fresh key pair.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Identity::from_signing_key(SigningKey::random(rng))
    }

    /// The key pair of a given private scalar (32 bytes, big-endian): for test vectors and
    /// for test peers that reuse a key. `None` if it is zero or not below the group order.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Option<Self> {
        SigningKey::from_bytes(secret.into())
            .ok()
            .map(Identity::from_signing_key)
    }

    fn from_signing_key(signing: SigningKey) -> Self {
        let point = signing.verifying_key().to_encoded_point(true);
        let public: [u8; PUBLIC_KEY_LEN] = point
            .as_bytes()
            .try_into()
            .expect("a compressed P-256 point is 33 bytes");
        Identity {
            id: id_of(&public),
            signing,
            public,
        }
    }

    /// The node id this key pair proves.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The public key, SEC1-compressed.
    pub fn public_key(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.public
    }

    /// The private scalar, for a test peer that must reconnect with the same key.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes().into()
    }

    /// ECDSA P-256 / SHA-256 over `msg`, RFC 6979 deterministic nonce, `r || s`: the bytes
    /// p256's `SigningKey::sign` gives, with the nonce point from the generator's table
    /// (see [`super::generator`]; `tests::signing_and_verifying_agree_with_p256`).
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let digest = Sha256::digest(msg);
        let d = self.signing.as_nonzero_scalar();
        // RFC 6979 with SHA-256: below the order and not zero.
        let k = Zeroizing::new(rfc6979::generate_k::<Sha256, _>(
            &Zeroizing::new(d.to_repr()),
            &<U256 as FieldBytesEncoding<NistP256>>::encode_field_bytes(&NistP256::ORDER),
            &digest,
            &[],
        ));
        let k = Zeroizing::new(
            Option::<Scalar>::from(Scalar::from_repr(*k)).expect("RFC 6979 gives 0 < k < n"),
        );
        let k_inv = Zeroizing::new(Option::<Scalar>::from(k.invert()).expect("k is not zero"));
        let z = <Scalar as Reduce<U256>>::reduce_bytes(&digest);
        let big_r = mul_generator(&k)
            .to_affine()
            .expect("k·G is not the identity: 0 < k < n");
        let r = <Scalar as Reduce<U256>>::reduce_bytes(&big_r.x_bytes());
        let s = *k_inv * (z + r * d.as_ref());
        // Zero r or s: probability about 2^-256; p256's own `sign` panics then too.
        let sig = Signature::from_scalars(r, s).expect("r and s are not zero");
        sig.to_bytes().into()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({}, <private key redacted>)", self.id)
    }
}

/// The node id of a SEC1-compressed public key.
pub fn id_of(public: &[u8; PUBLIC_KEY_LEN]) -> NodeId {
    let digest = Sha256::new()
        .chain_update(ID_LABEL)
        .chain_update(public)
        .finalize();
    let mut b: [u8; 16] = digest[..16].try_into().expect("SHA-256 is 32 bytes");
    b[6] = 0x80 | (b[6] & 0x0f);
    b[8] = 0x80 | (b[8] & 0x3f);
    NodeId(b)
}

/// Whether `sig` is `public`'s signature of `msg`. A key that is not a valid compressed
/// point, or a signature out of range, is simply not one. ECDSA verification as p256's
/// `VerifyingKey::verify` does it, with `u1·G` from the generator's table, `u2·Q` in
/// variable time and x compared without an inversion, all of it public
/// (`super::generator::check`; same test).
pub(crate) fn verify(public: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_sec1_bytes(public) else {
        return false;
    };
    // r and s in 1..n, or it is no signature.
    let Ok(sig) = Signature::from_slice(sig) else {
        return false;
    };
    let z = <Scalar as Reduce<U256>>::reduce_bytes(&Sha256::digest(msg));
    let (r, s) = sig.split_scalars();
    // Everything here is public: no need for constant time.
    let s_inv = *s.invert_vartime();
    let (u1, u2) = (z * s_inv, *r * s_inv);
    let Some(q) = Affine::from_uncompressed(key.to_encoded_point(false).as_bytes()) else {
        return false; // a valid key: never
    };
    generator::check(&q, &u1, &u2, &r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn the_id_is_a_version_8_uuid_of_the_public_key() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let a = Identity::generate(&mut rng);
        let text = a.id().to_string();
        assert_eq!(&text[14..15], "8", "{text}");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        assert_eq!(a.id(), id_of(a.public_key()));
        let again = Identity::from_secret_bytes(&a.secret_bytes()).unwrap();
        assert_eq!(again.id(), a.id());
        assert_ne!(Identity::generate(&mut rng).id(), a.id());
        assert!(Identity::from_secret_bytes(&[0; 32]).is_none());
        assert!(Identity::from_secret_bytes(&[0xff; 32]).is_none());
    }

    /// The table-based signing and verification against p256's own, both ways: the same
    /// signature bytes (RFC 6979 is deterministic), each accepting the other's signatures
    /// and refusing the same forgeries.
    #[test]
    fn signing_and_verifying_agree_with_p256() {
        use p256::ecdsa::signature::{Signer, Verifier};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(19);
        for i in 0..40u32 {
            let a = Identity::generate(&mut rng);
            let msg = format!("transcript {i}").repeat(i as usize % 7 + 1);
            let ours = a.sign(msg.as_bytes());
            let theirs: Signature = a.signing.sign(msg.as_bytes());
            assert_eq!(ours, <[u8; SIGNATURE_LEN]>::from(theirs.to_bytes()));
            let key = VerifyingKey::from_sec1_bytes(a.public_key()).unwrap();
            let p256_says = |sig: &[u8], msg: &[u8]| {
                Signature::from_slice(sig).is_ok_and(|sig| key.verify(msg, &sig).is_ok())
            };
            let mut forged = ours;
            forged[(i as usize * 5) % SIGNATURE_LEN] ^= 1 << (i % 8);
            let other = Identity::generate(&mut rng).sign(msg.as_bytes());
            for (sig, msg) in [
                (&ours[..], msg.as_bytes()),
                (&forged[..], msg.as_bytes()),
                (&other[..], msg.as_bytes()),
                (&ours[..], b"another message".as_slice()),
            ] {
                assert_eq!(verify(a.public_key(), msg, sig), p256_says(sig, msg));
            }
            assert!(verify(a.public_key(), msg.as_bytes(), &ours));
            assert!(!verify(a.public_key(), msg.as_bytes(), &forged));
        }
    }

    #[test]
    fn signatures_verify_under_their_key_only() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let (a, b) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
        let sig = a.sign(b"transcript");
        assert!(verify(a.public_key(), b"transcript", &sig));
        assert!(!verify(b.public_key(), b"transcript", &sig));
        assert!(!verify(a.public_key(), b"transcripT", &sig));
        assert!(!verify(&[2; 33], b"transcript", &sig));
        assert!(!verify(a.public_key(), b"transcript", &[0; 64]));
        assert!(!verify(a.public_key(), b"transcript", &sig[..63]));
    }
}
