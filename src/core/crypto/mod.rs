//! The secure link between two nodes: an ephemeral P-256 ECDH [`handshake`] whose keys are
//! derived with HKDF-SHA256 over the whole transcript, consumed into a [`session`] that
//! seals records with AES-128-GCM under one key per direction and 64-bit counter nonces,
//! renewed every [`session::REKEY_RECORDS`] records. Each node also holds a static
//! [`identity`] key pair, its id derived from it, and proves it in the handshake.
//!
//! An optional cluster key is mixed into the derivation; key confirmation (the first record
//! each side sends) then proves both hold it, so a node without it can neither complete a
//! connection, read records nor impersonate a member.

mod generator;
pub mod handshake;
pub mod identity;
mod jacobian;
pub mod session;

use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Params, Version};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub use handshake::{Confirmed, Confirming, Handshake, Role};
pub use identity::Identity;
pub use session::Session;

/// Argon2id memory cost, in KiB: 64 MiB (RFC 9106's second recommended setting). Each guess
/// at a `cluster_key` costs an attacker this much memory and [`STRETCH_PASSES`] passes over
/// it, which is what keeps a sniffed beacon or key confirmation from being a cheap oracle.
pub const STRETCH_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes over that memory.
pub const STRETCH_PASSES: u32 = 3;
/// Argon2id lanes: one. The crate computes lanes one after another, so more lanes would
/// cost us the same time without making an attacker's guess dearer.
pub const STRETCH_LANES: u32 = 1;
/// Separates this use of the key from any other, in the salt alongside the cluster name.
const STRETCH_LABEL: &[u8] = b"espial cluster key v1 / argon2id / ";
/// Stretched keys kept per process (see [`ClusterKey::new`]).
pub const STRETCH_CACHE: usize = 8;

/// Secrets derived from the user's `cluster_key` option. The raw option never reaches the
/// core; the core holds only these derived keys, wiped when the last copy is dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ClusterKey {
    /// Mixed into the handshake's key derivation.
    pub(crate) psk: [u8; 32],
    /// Authenticates multicast beacons.
    pub(crate) beacon: [u8; 32],
}

/// Keys stretched so far in this process, by a digest of (cluster, material): many nodes
/// of one process (the tests start hundreds) pay for the stretch once per key.
struct Stretched {
    fingerprint: Zeroizing<[u8; 32]>,
    key: ClusterKey,
}

static CACHE: Mutex<Vec<Stretched>> = Mutex::new(Vec::new());

impl ClusterKey {
    /// Derives the cluster secrets from the user's key material (any length; the binding
    /// enforces a minimum) and the cluster name.
    ///
    /// The material is stretched with Argon2id ([`STRETCH_MEMORY_KIB`] KiB,
    /// [`STRETCH_PASSES`] passes), salted with a label and the cluster name so that one
    /// precomputed table cannot serve every cluster, then expanded with HKDF-SHA256 into
    /// one key per use. This takes a noticeable fraction of a second and 64 MiB: call it
    /// off any thread that must stay responsive (the driver does it on a blocking task).
    ///
    /// The last [`STRETCH_CACHE`] results are kept for the life of the process, keyed by
    /// SHA-256 over the cluster name and the material (the derived keys themselves, which
    /// sit next to it, are as sensitive), and wiped when pushed out.
    pub fn new(material: &[u8], cluster: &str) -> Self {
        let fingerprint = Zeroizing::new(fingerprint(material, cluster));
        if let Some(hit) = CACHE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|s| s.fingerprint == fingerprint)
        {
            return hit.key.clone();
        }
        let key = Self::stretch(material, cluster);
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.iter().any(|s| s.fingerprint == fingerprint) {
            if cache.len() >= STRETCH_CACHE {
                cache.remove(0);
            }
            cache.push(Stretched {
                fingerprint,
                key: key.clone(),
            });
        }
        key
    }

    /// The tests' shorthand: [`ClusterKey::new`] for a cluster named `test`.
    #[cfg(test)]
    pub(crate) fn derive(material: &[u8]) -> Self {
        Self::new(material, "test")
    }

    /// [`ClusterKey::new`] without the cache: what every guess at a key costs.
    pub fn stretch(material: &[u8], cluster: &str) -> Self {
        let params = Params::new(STRETCH_MEMORY_KIB, STRETCH_PASSES, STRETCH_LANES, Some(32))
            .expect("constant Argon2 parameters are valid");
        let salt = Zeroizing::new([STRETCH_LABEL, cluster.as_bytes()].concat());
        let mut stretched = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(material, &salt, &mut stretched[..])
            .expect("a salt of 8+ bytes and a 32-byte output are valid");
        Self::expand(&stretched[..])
    }

    /// The per-use keys from a stretched secret (HKDF-SHA256, one label per use).
    fn expand(stretched: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::from_prk(stretched).expect("32 bytes is a valid PRK");
        let mut key = ClusterKey {
            psk: [0u8; 32],
            beacon: [0u8; 32],
        };
        hk.expand(b"espial/1 handshake psk", &mut key.psk)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hk.expand(b"espial/1 beacon mac", &mut key.beacon)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }
}

fn fingerprint(material: &[u8], cluster: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"espial stretch cache");
    h.update((cluster.len() as u32).to_be_bytes());
    h.update(cluster.as_bytes());
    h.update(material);
    h.finalize().into()
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hkdf::hmac::{Hmac, Mac};
    use std::time::{Duration, Instant};

    #[test]
    fn the_same_material_and_cluster_give_the_same_keys_and_any_difference_others() {
        let a = ClusterKey::new(b"correct horse battery staple", "prod");
        let b = ClusterKey::new(b"correct horse battery staple", "prod");
        let other_material = ClusterKey::new(b"correct horse battery stapler", "prod");
        let other_cluster = ClusterKey::new(b"correct horse battery staple", "prod2");
        assert_eq!((a.psk, a.beacon), (b.psk, b.beacon));
        assert_ne!(a.psk, a.beacon);
        for k in [&other_material, &other_cluster] {
            assert_ne!(a.psk, k.psk);
            assert_ne!(a.beacon, k.beacon);
        }
        // The cache hands out what the stretch computes.
        let fresh = ClusterKey::stretch(b"correct horse battery staple", "prod");
        assert_eq!((a.psk, a.beacon), (fresh.psk, fresh.beacon));
    }

    #[test]
    fn the_cache_is_bounded() {
        for i in 0..STRETCH_CACHE + 3 {
            let _ = ClusterKey::new(format!("cache bound test key {i}").as_bytes(), "c");
        }
        assert!(CACHE.lock().unwrap().len() <= STRETCH_CACHE);
    }

    #[test]
    fn a_dropped_key_is_wiped() {
        let mut key = ClusterKey::stretch(b"0123456789abcdef", "wipe");
        assert_ne!(key.psk, [0; 32]);
        key.zeroize();
        assert_eq!((key.psk, key.beacon), ([0; 32], [0; 32]));
    }

    /// The offline-guessing figure of the README: testing one guess at the key against a
    /// sniffed beacon costs the stretch plus an HMAC, against an HMAC alone before. Both are
    /// measured here, on the same beacon, and the stretch must cost at least 10 000 HMACs.
    #[test]
    fn a_guess_against_a_beacon_costs_at_least_ten_thousand_hmacs() {
        let beacon = [0x5au8; 80];
        let key = [7u8; 32];
        let hmac_once = |k: &[u8]| {
            let mut m = Hmac::<Sha256>::new_from_slice(k).unwrap();
            m.update(&beacon);
            m.finalize().into_bytes()
        };
        // Enough HMACs for a stable rate, bounded in time.
        let mut hmacs = 0u32;
        let started = Instant::now();
        let mut sink = 0u8;
        while hmacs < 2_000_000 && started.elapsed() < Duration::from_millis(400) {
            for _ in 0..1000 {
                sink ^= hmac_once(&key)[0];
                hmacs += 1;
            }
        }
        let per_hmac = started.elapsed().as_secs_f64() / f64::from(hmacs);
        std::hint::black_box(sink);

        // A guess: stretch the candidate, then the HMAC under the beacon key.
        let guesses = 3;
        let started = Instant::now();
        for i in 0..guesses {
            let k = ClusterKey::stretch(format!("password{i:08}").as_bytes(), "espial");
            std::hint::black_box(hmac_once(&k.beacon));
        }
        let per_guess = started.elapsed().as_secs_f64() / f64::from(guesses);
        let ratio = per_guess / per_hmac;
        eprintln!(
            "one HMAC-SHA256: {:.3} us ({:.0}/s); one guess: {:.1} ms ({:.1}/s); ratio {ratio:.0}",
            per_hmac * 1e6,
            1.0 / per_hmac,
            per_guess * 1e3,
            1.0 / per_guess
        );
        assert!(
            ratio >= 10_000.0,
            "a guess costs only {ratio:.0} HMACs; the stretch is too cheap"
        );
    }
}
