//! The stream decoder on arbitrary bytes, pushed in arbitrary chunks: it never panics, never
//! returns a frame longer than its limit, never buffers more than what was pushed, and never
//! reserves memory for a length it has not received.
#![no_main]

use espial::core::wire::{FrameDecoder, LEN_PREFIX, MAX_HANDSHAKE_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    // Either the pre-handshake limit or a larger, authenticated one.
    let max = if control & 1 == 0 {
        MAX_HANDSHAKE_FRAME
    } else {
        64 * 1024
    };
    let mut d = FrameDecoder::new(max);
    let mut pushed = 0usize;
    let mut taken = 0usize;
    while !rest.is_empty() {
        // Chunk sizes from the data itself: 1..=64 bytes.
        let n = (usize::from(rest[0]) % 64 + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        d.push(chunk);
        pushed += chunk.len();
        loop {
            match d.next_frame() {
                Ok(Some(frame)) => {
                    assert!(!frame.is_empty() && frame.len() <= max);
                    taken += LEN_PREFIX + frame.len();
                }
                Ok(None) => break,
                Err(_) => {
                    // A refused stream is closed; nothing was allocated for the claim.
                    assert!(d.capacity() <= pushed.max(64) * 2 + 64);
                    return;
                }
            }
        }
        assert_eq!(d.buffered(), pushed - taken);
        assert!(
            d.capacity() <= pushed.max(64) * 2 + 64,
            "capacity {}",
            d.capacity()
        );
    }
    let _ = d.finish();
});
