//! Liveness probes: small UDP datagrams between members, on a socket of their own (the
//! node's TCP port number, same address), so that a sign of life never waits behind TCP
//! retransmissions.
//!
//! Every datagram is sealed end to end with the pair's probe keys, derived by the
//! handshake beside the record keys under labels of their own (`espial/2 probe i2r`,
//! `espial/2 probe r2i`): a probe's counter nonce never meets a record's under one key.
//! Each direction counts its datagrams from 0 on each connection (the keys are new on each
//! connection); the receiver keeps a [`ReplayWindow`] of [`WINDOW`] counters, so a datagram
//! seen before, or older than the window, is refused.
//!
//! Datagram: `magic "eP" (2) | version (1) | kind (1) | from (16) | to (16) | counter (8) |
//! ciphertext | tag (16)`; the first 44 bytes are the AES-128-GCM associated data and the
//! nonce is `0u32 || counter`. Kinds:
//! - `PING`: plaintext `flags (1)`; flag 1 asks for an `ACK` to the datagram's source
//!   (set on asks, direct or sent through a relay); flag 2, with flag 1, says it is a
//!   regular probe of a round, whose answer may wait for the receiver's next timer.
//! - `ACK`: plaintext `flags (1)` (0).
//! - `RELAY`: plaintext is a whole `PING` datagram from `from` to a third member, sealed
//!   with the pair key of those two: the relay can check who asks, not forge the answer.
//!
//! This module only encodes, seals and opens; who is probed when is `cluster::probing`'s.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use zeroize::Zeroizing;

use super::node::NodeId;

/// First bytes of every probe datagram.
pub const MAGIC: [u8; 2] = *b"eP";
/// Probe format version; a datagram of another one is dropped.
pub const VERSION: u8 = 1;
/// A direct probe; any authentic one is a sign of life of its sender.
pub const PING: u8 = 1;
/// The answer to a ping that asked for one.
pub const ACK: u8 = 2;
/// "Pass this sealed ping on to its target": an indirect probe.
pub const RELAY: u8 = 3;

/// Header bytes: magic, version, kind, from, to, counter.
pub const HEADER_LEN: usize = 2 + 1 + 1 + 16 + 16 + 8;
const TAG_LEN: usize = 16;
/// A ping's or an ack's whole length.
pub const SMALL_LEN: usize = HEADER_LEN + 1 + TAG_LEN;
/// The largest datagram of this format: a relay request carrying a ping. Anything longer
/// is dropped unread.
pub const MAX_DATAGRAM: usize = HEADER_LEN + SMALL_LEN + TAG_LEN;
/// Counters remembered behind the highest one seen: a datagram reordered by fewer than
/// this many is still taken.
pub const WINDOW: u64 = 64;

/// Ping flag: answer with an `ACK` to the address the ping came from.
pub const FLAG_ANSWER: u8 = 1;
/// Ping flag, beside [`FLAG_ANSWER`]: a regular probe of the sender's round (see
/// [`super::detector`]), not an ask: its answer is wanted within an interval, so the
/// receiver need not read its probes as they come for it.
pub const FLAG_ROUND: u8 = 2;

/// A datagram's clear header, checked for shape only: nothing in it is authentic until
/// the body opens under the key of the pair it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub from: NodeId,
    pub to: NodeId,
    pub counter: u64,
}

impl Header {
    /// Parses a datagram's header: the right magic and version, a known kind, and the
    /// length that kind has. `None` for anything else.
    pub fn parse(d: &[u8]) -> Option<Header> {
        if d.len() < HEADER_LEN || d.len() > MAX_DATAGRAM || d[..2] != MAGIC || d[2] != VERSION {
            return None;
        }
        let kind = d[3];
        let fits = match kind {
            PING | ACK => d.len() == SMALL_LEN,
            RELAY => d.len() == MAX_DATAGRAM,
            _ => false,
        };
        if !fits {
            return None;
        }
        let id = |at: usize| NodeId(d[at..at + 16].try_into().expect("16 bytes"));
        Some(Header {
            kind,
            from: id(4),
            to: id(20),
            counter: u64::from_be_bytes(d[36..44].try_into().expect("8 bytes")),
        })
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..2].copy_from_slice(&MAGIC);
        h[2] = VERSION;
        h[3] = self.kind;
        h[4..20].copy_from_slice(&self.from.0);
        h[20..36].copy_from_slice(&self.to.0);
        h[36..44].copy_from_slice(&self.counter.to_be_bytes());
        h
    }
}

/// Why a datagram was dropped. All are counted alike (`probes_rejected`); the variants
/// are for tests and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not of this format (magic, version, kind, length).
    Malformed,
    /// Its sender is not a member, or it came from an address no member has.
    Unknown,
    /// It does not authenticate under the pair's key.
    Forged,
    /// Its counter was seen before, or is older than the window.
    Replayed,
    /// A relay request this node does not carry out (not a ping, a target that is no
    /// member, the relay table full) or an ack nobody asked it to relay.
    NotRelayed,
}

/// Which counters of one direction were seen: the highest and a bitmap of the [`WINDOW`]
/// below it (IPsec's anti-replay window, RFC 4303 §3.4.3).
#[derive(Debug, Default, Clone)]
pub struct ReplayWindow {
    /// The highest counter seen plus one (0: none yet).
    top: u64,
    /// Bit `i` set: counter `top - 1 - i` was seen.
    seen: u64,
}

impl ReplayWindow {
    /// True if `counter` is new and not older than the window.
    pub fn fresh(&self, counter: u64) -> bool {
        if counter >= self.top {
            return true;
        }
        let behind = self.top - 1 - counter;
        behind < WINDOW && self.seen & (1 << behind) == 0
    }

    /// Records `counter` (already checked [`ReplayWindow::fresh`] and authentic).
    pub fn mark(&mut self, counter: u64) {
        if counter >= self.top {
            let shift = counter + 1 - self.top;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.top = counter + 1;
        } else {
            self.seen |= 1 << (self.top - 1 - counter);
        }
    }
}

/// One pair's probe keys and counters, held by the member's link.
pub struct ProbeKeys {
    send: Aes128Gcm,
    recv: Aes128Gcm,
    next: u64,
    window: ReplayWindow,
}

impl ProbeKeys {
    pub fn new(send: &Zeroizing<[u8; 16]>, recv: &Zeroizing<[u8; 16]>) -> Self {
        ProbeKeys {
            send: Aes128Gcm::new(&(**send).into()),
            recv: Aes128Gcm::new(&(**recv).into()),
            next: 0,
            window: ReplayWindow::default(),
        }
    }

    /// Seals a datagram of `kind` from `from` to `to` carrying `plain`; `None` once the
    /// counter is spent (2^64 datagrams: never in practice, but never a reused nonce).
    pub fn seal(&mut self, kind: u8, from: NodeId, to: NodeId, plain: &[u8]) -> Option<Vec<u8>> {
        let counter = self.next;
        self.next = counter.checked_add(1)?;
        let header = Header {
            kind,
            from,
            to,
            counter,
        }
        .encode();
        let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(plain);
        let tag = self
            .send
            .encrypt_in_place_detached(
                &Nonce::from(nonce(counter)),
                &header,
                &mut out[HEADER_LEN..],
            )
            .ok()?;
        out.extend_from_slice(&tag);
        Some(out)
    }

    /// Opens a datagram whose header (`h`, parsed from `d`) names this pair: the replay
    /// window is checked before any work, the tag next; only an authentic datagram moves
    /// the window. Returns its plaintext.
    pub fn open(&mut self, h: &Header, d: &[u8]) -> Result<Vec<u8>, Refused> {
        if !self.window.fresh(h.counter) {
            return Err(Refused::Replayed);
        }
        let (header, rest) = d.split_at(HEADER_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plain = body.to_vec();
        let tag = Tag::from(<[u8; TAG_LEN]>::try_from(tag).map_err(|_| Refused::Malformed)?);
        self.recv
            .decrypt_in_place_detached(&Nonce::from(nonce(h.counter)), header, &mut plain, &tag)
            .map_err(|_| Refused::Forged)?;
        self.window.mark(h.counter);
        Ok(plain)
    }
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (ProbeKeys, ProbeKeys) {
        let (k1, k2) = (Zeroizing::new([1u8; 16]), Zeroizing::new([2u8; 16]));
        (ProbeKeys::new(&k1, &k2), ProbeKeys::new(&k2, &k1))
    }

    const A: NodeId = NodeId([0xa; 16]);
    const B: NodeId = NodeId([0xb; 16]);

    #[test]
    fn a_ping_opens_once_and_a_replay_is_refused() {
        let (mut a, mut b) = pair();
        let d = a.seal(PING, A, B, &[FLAG_ANSWER]).unwrap();
        assert_eq!(d.len(), SMALL_LEN);
        let h = Header::parse(&d).unwrap();
        assert_eq!((h.kind, h.from, h.to, h.counter), (PING, A, B, 0));
        assert_eq!(b.open(&h, &d).unwrap(), vec![FLAG_ANSWER]);
        assert_eq!(b.open(&h, &d), Err(Refused::Replayed));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused_and_moves_nothing() {
        let (mut a, mut b) = pair();
        let d = a.seal(PING, A, B, &[0]).unwrap();
        for i in 0..d.len() {
            let mut bad = d.clone();
            bad[i] ^= 0x01;
            if let Some(h) = Header::parse(&bad) {
                assert!(b.open(&h, &bad).is_err(), "flip in byte {i} accepted");
            }
        }
        // The window did not move: the genuine datagram still opens.
        let h = Header::parse(&d).unwrap();
        assert!(b.open(&h, &d).is_ok());
    }

    #[test]
    fn the_other_direction_does_not_open_it() {
        let (mut a, _) = pair();
        let d = a.seal(ACK, A, B, &[0]).unwrap();
        let h = Header::parse(&d).unwrap();
        // Reflected back to its sender: opened under the receiving key, which differs.
        assert_eq!(a.open(&h, &d), Err(Refused::Forged));
    }

    #[test]
    fn reordered_datagrams_within_the_window_are_taken_older_ones_refused() {
        let (mut a, mut b) = pair();
        let ds: Vec<_> = (0..100)
            .map(|_| a.seal(PING, A, B, &[0]).unwrap())
            .collect();
        let open = |b: &mut ProbeKeys, i: usize| b.open(&Header::parse(&ds[i]).unwrap(), &ds[i]);
        assert!(open(&mut b, 99).is_ok());
        assert!(open(&mut b, 36).is_ok(), "63 behind: inside the window");
        assert_eq!(open(&mut b, 35), Err(Refused::Replayed), "64 behind");
        assert_eq!(open(&mut b, 36), Err(Refused::Replayed));
        assert!(open(&mut b, 98).is_ok());
    }

    #[test]
    fn the_shape_is_checked_before_anything_else() {
        let (mut a, _) = pair();
        let d = a.seal(PING, A, B, &[0]).unwrap();
        assert!(Header::parse(&d[..d.len() - 1]).is_none());
        let mut long = d.clone();
        long.push(0);
        assert!(Header::parse(&long).is_none());
        for (at, v) in [(0, b'x'), (2, 9), (3, 7), (3, RELAY)] {
            let mut bad = d.clone();
            bad[at] = v;
            assert!(Header::parse(&bad).is_none(), "byte {at} = {v}");
        }
        assert!(Header::parse(&[]).is_none());
        assert!(Header::parse(&[0u8; 4000]).is_none());
        let inner = a.seal(PING, A, B, &[FLAG_ANSWER]).unwrap();
        let relay = a.seal(RELAY, A, B, &inner).unwrap();
        assert_eq!(relay.len(), MAX_DATAGRAM);
        assert!(Header::parse(&relay).is_some());
    }

    #[test]
    fn the_window_forgets_what_is_far_behind() {
        let mut w = ReplayWindow::default();
        assert!(w.fresh(0));
        w.mark(0);
        assert!(!w.fresh(0));
        w.mark(1000);
        assert!(!w.fresh(0));
        assert!(!w.fresh(936));
        assert!(w.fresh(937));
        assert!(w.fresh(5000));
    }
}
