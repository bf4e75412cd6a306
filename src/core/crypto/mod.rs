//! The secure link between two nodes: an ephemeral P-256 ECDH [`handshake`] whose keys are
//! derived with HKDF-SHA256 over the whole transcript, consumed into a [`session`] that
//! seals records with AES-128-GCM under one key per direction and 64-bit counter nonces.
//! Each node also holds a static [`identity`] key pair, its id derived from it, and proves
//! it in the handshake.
//!
//! An optional cluster key is mixed into the derivation; key confirmation (the first record
//! each side sends) then proves both hold it, so a node without it can neither complete a
//! connection, read records nor impersonate a member.

pub mod handshake;
pub mod identity;
pub mod session;

use hkdf::Hkdf;
use sha2::Sha256;

pub use handshake::{Confirmed, Confirming, Handshake, Role};
pub use identity::Identity;
pub use session::Session;

/// Secrets derived from the user's `cluster_key` option. The raw option never leaves the
/// binding; the core holds only these derived keys.
#[derive(Clone)]
pub struct ClusterKey {
    /// Mixed into the handshake's key derivation.
    pub(crate) psk: [u8; 32],
    /// Authenticates multicast beacons.
    pub(crate) beacon: [u8; 32],
}

impl ClusterKey {
    /// Derives the cluster secrets from the user's key material (any length; the
    /// binding enforces a sensible minimum).
    pub fn derive(material: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"espial/1 cluster key"), material);
        let mut psk = [0u8; 32];
        let mut beacon = [0u8; 32];
        hk.expand(b"handshake psk", &mut psk)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hk.expand(b"beacon mac", &mut beacon)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        ClusterKey { psk, beacon }
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(<redacted>)")
    }
}
