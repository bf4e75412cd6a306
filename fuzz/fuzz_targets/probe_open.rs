//! Liveness probe datagrams (UDP, anyone can send them) on arbitrary bytes interleaved with
//! genuine ones, parsed and opened as the core does: never panics; a genuine datagram opens
//! to its plaintext once; a fuzzer-made one is accepted only if it is byte for byte what
//! the sender seals at that counter (the fuzzer cannot forge AES-GCM), and nothing is
//! accepted twice (the replay window).
//!
//! The keys are fixed, so the genuine datagrams are the same in every run and libFuzzer's
//! comparison tracing learns them: a "made-up" datagram may be one the sender sealed in an
//! earlier run, which opens once as it should (keys are fresh per handshake in the node, so
//! no such earlier run exists there). Authentic means equal to the sender's seal.
#![no_main]

use espial::core::node::NodeId;
use espial::core::probe::{Header, ProbeKeys, PING};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

fuzz_target!(|data: &[u8]| {
    let (k1, k2) = (Zeroizing::new([1u8; 16]), Zeroizing::new([2u8; 16]));
    let mut a = ProbeKeys::new(&k1, &k2);
    let mut b = ProbeKeys::new(&k2, &k1);
    let (from, to) = (NodeId([3; 16]), NodeId([4; 16]));
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut opened: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let datagram = match op >> 6 {
            // A genuine ping from a.
            0 => {
                let d = a.seal(PING, from, to, &[op & 1]).expect("counter left");
                sent.push(d.clone());
                d
            }
            // A genuine datagram sent again (a replay), chosen by the next byte.
            1 if !sent.is_empty() => sent[usize::from(op & 0x3f) % sent.len()].clone(),
            // Made-up bytes, or a genuine datagram with one byte changed.
            _ => {
                let len = usize::from(op & 0x3f).min(rest.len());
                let mut d = rest[..len].to_vec();
                rest = &rest[len..];
                if op >> 6 == 3 && !sent.is_empty() && !d.is_empty() {
                    let mut g = sent[usize::from(d[0]) % sent.len()].clone();
                    let at = usize::from(d[d.len() - 1]) % g.len();
                    g[at] ^= d[0] | 1;
                    d = g;
                }
                d
            }
        };
        let Some(h) = Header::parse(&datagram) else {
            continue;
        };
        if let Ok(plain) = b.open(&h, &datagram) {
            assert!(
                sent.contains(&datagram) || is_sealed_by_sender(&k1, &k2, h.counter, &datagram),
                "a made-up datagram opened: {plain:?}"
            );
            assert!(!opened.contains(&datagram), "a datagram opened twice");
            opened.push(datagram);
        }
    }
});

/// True if `datagram` is the ping the sender (keys `k1`, `k2`, as `a` above) seals at
/// `counter`, with either plaintext the harness uses. Counters beyond what one input can
/// seal (one per byte of at most 4 096) are never genuine.
fn is_sealed_by_sender(k1: &[u8; 16], k2: &[u8; 16], counter: u64, datagram: &[u8]) -> bool {
    if counter > 4096 {
        return false;
    }
    let (k1, k2) = (Zeroizing::new(*k1), Zeroizing::new(*k2));
    (0..=1u8).any(|bit| {
        let mut sender = ProbeKeys::new(&k1, &k2);
        let mut last = None;
        for _ in 0..=counter {
            last = sender.seal(PING, NodeId([3; 16]), NodeId([4; 16]), &[bit]);
        }
        last.as_deref() == Some(datagram)
    })
}
