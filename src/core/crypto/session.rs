//! The record layer. Each direction has its own AES-128-GCM key and a 64-bit counter;
//! the counter is the nonce (`0u32 || seq`) and travels in the clear as associated data so
//! that a replay or a gap is reported as what it is. A counter is checked, used, then
//! incremented, and never wraps: at `u64::MAX` sealing fails with `NonceExhausted`.
//!
//! Keys are renewed without a message: each direction's key is replaced by
//! `HKDF-SHA256(ikm = key, info = "espial/1 rekey")` once it has sealed [`REKEY_RECORDS`]
//! records or [`REKEY_BYTES`] bytes of plaintext, whichever comes first. Both ends count the
//! same records (they arrive in order, each one exactly once) so they turn the key at the
//! same record. The counter is not reset by a rekey: a nonce is never used twice in a
//! session, under any key. The key replaced is wiped, so a key taken from memory later does
//! not open the records sealed before it.
//!
//! Record frame body: `kind(1) | seq(8) | ciphertext | tag(16)`.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::core::error::{ConnectionError, RecordError};
use crate::core::wire::{self, kind};

const SEQ_LEN: usize = 8;
const TAG_LEN: usize = 16;
/// Bytes a record adds to its plaintext, length prefix included.
pub const RECORD_OVERHEAD: usize = wire::LEN_PREFIX + 1 + SEQ_LEN + TAG_LEN;
const REKEY_LABEL: &[u8] = b"espial/1 rekey";

/// Records one key seals before it is renewed (2^20).
pub const REKEY_RECORDS: u64 = 1 << 20;
/// Plaintext bytes one key seals before it is renewed (4 GiB): with a record of at most
/// 256 MiB on top, a key encrypts under 2^28.1 AES blocks, which keeps an attacker's
/// advantage in telling its output from random below 2^-71 (σ²/2^128).
pub const REKEY_BYTES: u64 = 1 << 32;

fn nonce(seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

fn header(seq: u64) -> [u8; 1 + SEQ_LEN] {
    let mut h = [0u8; 1 + SEQ_LEN];
    h[0] = kind::RECORD;
    h[1..].copy_from_slice(&seq.to_be_bytes());
    h
}

/// When a direction's key is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RekeyLimits {
    pub records: u64,
    pub bytes: u64,
}

impl Default for RekeyLimits {
    fn default() -> Self {
        RekeyLimits {
            records: REKEY_RECORDS,
            bytes: REKEY_BYTES,
        }
    }
}

/// One direction's current key and how much it has sealed.
struct DirectionKey {
    key: Zeroizing<[u8; 16]>,
    cipher: Aes128Gcm,
    records: u64,
    bytes: u64,
    limits: RekeyLimits,
    /// Keys used so far in this direction, the first one included.
    epoch: u64,
}

impl DirectionKey {
    fn new(key: [u8; 16]) -> Self {
        let key = Zeroizing::new(key);
        DirectionKey {
            cipher: Aes128Gcm::new(&(*key).into()),
            key,
            records: 0,
            bytes: 0,
            limits: RekeyLimits::default(),
            epoch: 1,
        }
    }

    /// The cipher for the next record of `len` plaintext bytes: the key is renewed first if
    /// the current one has done its share. Called exactly once per record, at the same
    /// record on both ends; on the receiving end only for a record that will be opened
    /// (its sequence number is the expected one), so a forgery cannot turn the key.
    fn next(&mut self, len: usize) -> &Aes128Gcm {
        if self.records >= self.limits.records || self.bytes >= self.limits.bytes {
            let mut next = Zeroizing::new([0u8; 16]);
            Hkdf::<Sha256>::new(None, &self.key[..])
                .expand(REKEY_LABEL, &mut next[..])
                .expect("16 bytes is a valid HKDF-SHA256 output length");
            // The old key and its schedule are wiped as they are replaced.
            self.cipher = Aes128Gcm::new(&(*next).into());
            self.key = next;
            self.records = 0;
            self.bytes = 0;
            self.epoch += 1;
        }
        self.records += 1;
        self.bytes = self.bytes.saturating_add(len as u64);
        &self.cipher
    }

    /// Undoes the count of a record that [`DirectionKey::next`] counted but that did not
    /// seal or open (a forgery with the expected sequence number), so that the record in
    /// its place is counted instead. A renewal made for it stands: the key turns at that
    /// position whichever record fills it, so the state is exactly "renewed, nothing sealed
    /// under the new key yet".
    fn uncount(&mut self, len: usize) {
        self.records -= 1;
        self.bytes -= len as u64;
    }
}

struct Sealer {
    dir: DirectionKey,
    next: u64,
}

impl Sealer {
    /// Seals the concatenation of `parts`: a message's fields go in without first being
    /// gathered into a buffer of their own.
    fn seal(&mut self, parts: &[&[u8]]) -> Result<Vec<u8>, RecordError> {
        let seq = self.next;
        if seq == u64::MAX {
            return Err(RecordError::NonceExhausted);
        }
        let hdr = header(seq);
        let plain_len: usize = parts.iter().map(|p| p.len()).sum();
        let body_len = hdr.len() + plain_len + TAG_LEN;
        let mut out = Vec::with_capacity(wire::LEN_PREFIX + body_len);
        wire::put_len(&mut out, body_len);
        out.extend_from_slice(&hdr);
        let start = out.len();
        for part in parts {
            out.extend_from_slice(part);
        }
        let sealed = self.dir.next(plain_len).encrypt_in_place_detached(
            &Nonce::from(nonce(seq)),
            &hdr,
            &mut out[start..],
        );
        let Ok(tag) = sealed else {
            // Only a plaintext over AES-GCM's 64 GiB could; the counts stay exact anyway.
            self.dir.uncount(plain_len);
            return Err(RecordError::Forged);
        };
        out.extend_from_slice(&tag);
        self.next = seq + 1;
        Ok(out)
    }
}

struct Opener {
    dir: DirectionKey,
    expected: u64,
}

impl Opener {
    /// Checks and decrypts a record body where it lies; returns its plaintext, a slice of
    /// `body`.
    fn open<'b>(&mut self, body: &'b mut [u8]) -> Result<&'b [u8], RecordError> {
        if body.len() < 1 + SEQ_LEN + TAG_LEN || body[0] != kind::RECORD {
            return Err(RecordError::Truncated);
        }
        let seq = u64::from_be_bytes(body[1..1 + SEQ_LEN].try_into().unwrap());
        if seq < self.expected {
            return Err(RecordError::Replayed {
                seq,
                expected: self.expected,
            });
        }
        if seq > self.expected {
            return Err(RecordError::OutOfOrder {
                seq,
                expected: self.expected,
            });
        }
        if seq == u64::MAX {
            return Err(RecordError::NonceExhausted);
        }
        let (header, rest) = body.split_at_mut(1 + SEQ_LEN);
        let (plain, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let len = plain.len();
        let opened = self.dir.next(len).decrypt_in_place_detached(
            &Nonce::from(nonce(seq)),
            header,
            plain,
            &Tag::from(<[u8; TAG_LEN]>::try_from(&*tag).expect("split at TAG_LEN")),
        );
        if opened.is_err() {
            // A refused record closes the connection, but the count stays exact anyway.
            self.dir.uncount(len);
            return Err(RecordError::Forged);
        }
        self.expected = seq + 1;
        Ok(plain)
    }
}

/// An established, encrypted link to one peer. Its first record each way is the key
/// confirmation, sealed and checked by the handshake ([`super::handshake::Confirming`]).
pub struct Session {
    sealer: Sealer,
    opener: Opener,
    /// The pair's probe keys (sending, receiving), until the link takes them.
    probe_keys: Option<ProbeKeyPair>,
}

/// A pair's liveness probe keys: (sending, receiving).
pub type ProbeKeyPair = (Zeroizing<[u8; 16]>, Zeroizing<[u8; 16]>);

impl Session {
    /// A session sealing under `send` and opening under `recv`, both counters at 0.
    pub(super) fn new(send: [u8; 16], recv: [u8; 16]) -> Session {
        Session {
            sealer: Sealer {
                dir: DirectionKey::new(send),
                next: 0,
            },
            opener: Opener {
                dir: DirectionKey::new(recv),
                expected: 0,
            },
            probe_keys: None,
        }
    }

    /// The pair's liveness probe keys, derived by the handshake beside the record keys.
    pub(super) fn set_probe_keys(&mut self, send: Zeroizing<[u8; 16]>, recv: Zeroizing<[u8; 16]>) {
        self.probe_keys = Some((send, recv));
    }

    /// Takes the probe keys (sending, receiving): they leave the session once, for the
    /// link's [`crate::core::probe::ProbeKeys`].
    pub fn take_probe_keys(&mut self) -> Option<ProbeKeyPair> {
        self.probe_keys.take()
    }

    /// Seals a plaintext into a complete frame (length prefix included).
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, RecordError> {
        self.sealer.seal(&[plaintext])
    }

    /// Seals the concatenation of `parts` into a complete frame.
    pub fn seal_parts(&mut self, parts: &[&[u8]]) -> Result<Vec<u8>, RecordError> {
        self.sealer.seal(parts)
    }

    /// Opens a record frame body in place: the plaintext is decrypted over the ciphertext
    /// and returned as a slice of `body`. A refused record may be left garbled in `body`.
    pub fn open_in_place<'b>(&mut self, body: &'b mut [u8]) -> Result<&'b [u8], ConnectionError> {
        Ok(self.opener.open(body)?)
    }

    /// [`Session::open_in_place`] on a copy of `body`, for callers that keep the record
    /// (tests, tools).
    pub fn open(&mut self, body: &[u8]) -> Result<Vec<u8>, ConnectionError> {
        let mut body = body.to_vec();
        Ok(self.open_in_place(&mut body)?.to_vec())
    }

    /// Keys used so far (sending, receiving), the first ones included.
    pub fn key_epochs(&self) -> (u64, u64) {
        (self.sealer.dir.epoch, self.opener.dir.epoch)
    }

    /// Renews keys sooner than [`RekeyLimits::default`], for tests of the renewal.
    #[cfg(test)]
    pub(crate) fn set_rekey_limits(&mut self, limits: RekeyLimits) {
        self.sealer.dir.limits = limits;
        self.opener.dir.limits = limits;
    }

    #[cfg(test)]
    pub(crate) fn set_send_counter(&mut self, next: u64) {
        self.sealer.next = next;
    }

    #[cfg(test)]
    pub(crate) fn set_recv_counter(&mut self, expected: u64) {
        self.opener.expected = expected;
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print keys.
        f.debug_struct("Session")
            .field("sent", &self.sealer.next)
            .field("received", &self.opener.expected)
            .field("key_epochs", &self.key_epochs())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair of sessions past their key confirmations, as the handshake would leave them.
    fn pair() -> (Session, Session) {
        let (k1, k2) = ([1u8; 16], [2u8; 16]);
        let (mut a, mut b) = (Session::new(k1, k2), Session::new(k2, k1));
        let a_fin = a.seal(b"confirmation").unwrap();
        let b_fin = b.seal(b"confirmation").unwrap();
        assert_eq!(b.open(&a_fin[4..]).unwrap(), b"confirmation");
        assert_eq!(a.open(&b_fin[4..]).unwrap(), b"confirmation");
        (a, b)
    }

    fn body(frame: &[u8]) -> &[u8] {
        &frame[4..]
    }

    #[test]
    fn a_flipped_bit_anywhere_is_rejected() {
        let (mut a, _) = pair();
        let frame = a.seal(b"attack at dawn").unwrap();
        for i in 0..body(&frame).len() {
            for bit in [0x01u8, 0x80] {
                let (_, mut b) = pair();
                let mut bad = body(&frame).to_vec();
                bad[i] ^= bit;
                let res = b.open(&bad);
                assert!(res.is_err(), "flip of bit {bit:#x} in byte {i} accepted");
            }
        }
        // And the untouched frame still opens.
        let (_, mut b) = pair();
        assert_eq!(b.open(body(&frame)).unwrap(), b"attack at dawn");
    }

    #[test]
    fn a_flipped_ciphertext_bit_is_forged() {
        let (mut a, mut b) = pair();
        let mut frame = a.seal(b"attack at dawn").unwrap();
        frame[4 + 1 + SEQ_LEN + 2] ^= 0x10;
        assert_eq!(
            b.open(body(&frame)),
            Err(ConnectionError::Record(RecordError::Forged))
        );
    }

    #[test]
    fn a_truncated_record_is_rejected() {
        let (mut a, mut b) = pair();
        let frame = a.seal(b"attack at dawn").unwrap();
        for cut in [1, 5, 1 + SEQ_LEN, body(&frame).len() - 1] {
            let res = b.open(&body(&frame)[..cut]);
            assert!(res.is_err(), "record cut to {cut} bytes accepted");
        }
        let short = &body(&frame)[..1 + SEQ_LEN + TAG_LEN - 1];
        assert_eq!(
            b.open(short),
            Err(ConnectionError::Record(RecordError::Truncated))
        );
    }

    #[test]
    fn a_replayed_record_is_rejected() {
        let (mut a, mut b) = pair();
        let frame = a.seal(b"pay 100").unwrap();
        b.open(body(&frame)).unwrap();
        assert_eq!(
            b.open(body(&frame)),
            Err(ConnectionError::Record(RecordError::Replayed {
                seq: 1,
                expected: 2
            }))
        );
    }

    #[test]
    fn an_out_of_order_record_is_rejected() {
        let (mut a, mut b) = pair();
        let first = a.seal(b"one").unwrap();
        let second = a.seal(b"two").unwrap();
        assert_eq!(
            b.open(body(&second)),
            Err(ConnectionError::Record(RecordError::OutOfOrder {
                seq: 2,
                expected: 1
            }))
        );
        // A forged sequence number on a genuine ciphertext does not authenticate either.
        let mut renumbered = body(&second).to_vec();
        renumbered[1..9].copy_from_slice(&1u64.to_be_bytes());
        assert_eq!(
            b.open(&renumbered),
            Err(ConnectionError::Record(RecordError::Forged))
        );
        b.open(body(&first)).unwrap();
    }

    #[test]
    fn nonces_strictly_increase() {
        let (mut a, _) = pair();
        let mut last = None;
        for _ in 0..100 {
            let f = a.seal(b"m").unwrap();
            let seq = u64::from_be_bytes(body(&f)[1..9].try_into().unwrap());
            if let Some(prev) = last {
                assert_eq!(seq, prev + 1);
            }
            last = Some(seq);
        }
    }

    #[test]
    fn nonce_exhaustion_is_an_error_not_a_wrap() {
        let (mut a, mut b) = pair();
        a.set_send_counter(u64::MAX - 1);
        b.set_recv_counter(u64::MAX - 1);
        let last = a.seal(b"last").unwrap();
        assert_eq!(b.open(body(&last)).unwrap(), b"last");
        assert_eq!(a.seal(b"one more"), Err(RecordError::NonceExhausted));
        assert_eq!(a.seal(b"and again"), Err(RecordError::NonceExhausted));
    }

    #[test]
    fn a_record_opened_in_place_leaves_its_plaintext_in_the_buffer_and_forgeries_fail() {
        let (mut a, mut b) = pair();
        let frame = a.seal(b"attack at dawn").unwrap();
        let mut record = body(&frame).to_vec();
        assert_eq!(b.open_in_place(&mut record).unwrap(), b"attack at dawn");
        assert_eq!(
            &record[1 + SEQ_LEN..record.len() - TAG_LEN],
            b"attack at dawn"
        );
        // The same record again, from a fresh copy: a replay.
        let mut replayed = body(&frame).to_vec();
        assert_eq!(
            b.open_in_place(&mut replayed),
            Err(ConnectionError::Record(RecordError::Replayed {
                seq: 1,
                expected: 2
            }))
        );
        // A forged one, in place: refused, and the counter is not consumed.
        let next = a.seal(b"retreat").unwrap();
        let mut forged = body(&next).to_vec();
        forged[1 + SEQ_LEN] ^= 0x01;
        assert_eq!(
            b.open_in_place(&mut forged),
            Err(ConnectionError::Record(RecordError::Forged))
        );
        let mut genuine = body(&next).to_vec();
        assert_eq!(b.open_in_place(&mut genuine).unwrap(), b"retreat");
    }

    #[test]
    fn each_direction_has_its_own_key() {
        let (mut a, mut b) = pair();
        // A record a sent cannot be reflected back to a.
        let frame = a.seal(b"to b").unwrap();
        assert_eq!(
            a.open(body(&frame)),
            Err(ConnectionError::Record(RecordError::Forged))
        );
        b.open(body(&frame)).unwrap();
    }

    /// A confirmed pair that renews keys every `records` records (or `bytes` bytes).
    fn pair_renewing(records: u64, bytes: u64) -> (Session, Session) {
        let (mut a, mut b) = pair();
        for s in [&mut a, &mut b] {
            s.set_rekey_limits(RekeyLimits { records, bytes });
        }
        (a, b)
    }

    #[test]
    fn keys_are_renewed_every_n_records_and_every_record_still_opens() {
        const N: u64 = 16;
        let (mut a, mut b) = pair_renewing(N, u64::MAX);
        // The key confirmation was record 0 of each direction's first key.
        let total = 5 * N + 3;
        for i in 0..total {
            let msg = format!("a to b, record {i}");
            let f = a.seal(msg.as_bytes()).unwrap();
            assert_eq!(b.open(body(&f)).unwrap(), msg.as_bytes());
            let msg = format!("b to a, record {i}");
            let f = b.seal(msg.as_bytes()).unwrap();
            assert_eq!(a.open(body(&f)).unwrap(), msg.as_bytes());
        }
        // 1 + total records per direction, N per key: both ends agree on the key in use.
        let epochs = (1 + total).div_ceil(N);
        assert_eq!(a.key_epochs(), (epochs, epochs));
        assert_eq!(b.key_epochs(), (epochs, epochs));
        assert!(epochs >= 5);
    }

    #[test]
    fn keys_are_renewed_by_bytes_too() {
        let (mut a, mut b) = pair_renewing(u64::MAX, 1000);
        for _ in 0..10 {
            let f = a.seal(&[9u8; 300]).unwrap();
            assert!(b.open(body(&f)).is_ok());
        }
        // 3000 bytes at 1000 a key (the key turns before the record that finds the count
        // at or over the bound; the confirmation's 49 bytes count too).
        assert_eq!(a.key_epochs().0, b.key_epochs().1);
        assert_eq!(a.key_epochs().0, 3);
    }

    #[test]
    fn a_record_sealed_under_the_old_key_after_the_renewal_point_is_refused() {
        const N: u64 = 4;
        let (mut a, mut b) = pair_renewing(N, u64::MAX);
        // A stale copy of a's sending state, as it was under the first key.
        let mut stale = Sealer {
            dir: DirectionKey::new([1u8; 16]),
            next: 0,
        };
        stale.dir.limits = RekeyLimits {
            records: u64::MAX,
            bytes: u64::MAX,
        };
        // Records 0 (the confirmation) to N-1 are under the first key.
        for _ in 1..N {
            let f = a.seal(b"first key").unwrap();
            assert!(b.open(body(&f)).is_ok());
        }
        stale.next = N;
        let old = stale.seal(&[b"old key, record N"]).unwrap();
        assert_eq!(
            b.open(body(&old)),
            Err(ConnectionError::Record(RecordError::Forged))
        );
        // The refusal does not move b's count: a's genuine record N still opens.
        let new = a.seal(b"new key, record N").unwrap();
        assert_eq!(b.open(body(&new)).unwrap(), &b"new key, record N"[..]);
        assert_eq!(b.key_epochs().1, 2);
    }

    #[test]
    fn the_counter_runs_on_across_renewals_so_no_nonce_repeats() {
        let (mut a, _) = pair_renewing(3, u64::MAX);
        let mut seen = std::collections::BTreeSet::new();
        seen.insert(0u64);
        for _ in 0..20 {
            let f = a.seal(b"m").unwrap();
            let seq = u64::from_be_bytes(body(&f)[1..9].try_into().unwrap());
            assert!(seen.insert(seq), "nonce {seq} used twice");
        }
        assert_eq!(a.key_epochs().0, 7);
    }

    /// The renewal vector of PROTOCOL.md ("Test vectors", "Key renewal"): key 0x01 × 16, then
    /// the next two.
    #[test]
    fn the_documented_renewal_vector() {
        let mut dir = DirectionKey::new([1u8; 16]);
        dir.limits = RekeyLimits {
            records: 1,
            bytes: u64::MAX,
        };
        let hex = |k: &[u8]| k.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut keys = Vec::new();
        for _ in 0..3 {
            dir.next(0);
            keys.push(hex(&dir.key[..]));
        }
        assert_eq!(
            keys,
            [
                "01010101010101010101010101010101",
                "fa0a9d807c7cc52555c032c3f4e60dff",
                "753e19ceea6e955ab780682410ab761f",
            ]
        );
    }
}
