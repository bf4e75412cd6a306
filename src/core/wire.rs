//! Stream framing: every frame on a TCP connection is a 4-byte big-endian body length, then
//! the body, whose first byte is the frame kind. The decoder checks a declared length
//! against its limit before it reserves a single byte for it, so one forged length cannot
//! make a node allocate gigabytes (memberlist issue #360).

use super::error::FrameError;

/// Bytes in the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Frame kinds (first body byte).
pub mod kind {
    /// Handshake hello, plaintext.
    pub const HELLO: u8 = 1;
    /// Encrypted record.
    pub const RECORD: u8 = 2;
    /// Plaintext alert from a responder whose peer's key confirmation did not verify:
    /// `ALERT || 1`. It tells the dialing end why it was refused (another cluster key) and
    /// nothing a close would not tell it.
    pub const ALERT: u8 = 3;
}

/// The body of the only alert: the peer's key confirmation failed.
pub const KEY_MISMATCH_ALERT: [u8; 2] = [kind::ALERT, 1];

/// Largest frame accepted before the handshake has authenticated anything: a hello is
/// about 150 bytes, so an unauthenticated peer can make us buffer at most this much.
pub const MAX_HANDSHAKE_FRAME: usize = 512;

/// Bytes of a record frame body around the largest valid message before admission,
/// metadata aside: the record's kind, sequence number and tag (25), a message's tag,
/// eligibility, max message, id, port (24), a host name of at most 255 bytes with its
/// length (256) and the metadata's length (4). Since admission comes first the host name
/// travels in the introduction and the metadata in the profile, each under this bound.
pub const INTRODUCTION_OVERHEAD: usize = 1 + 8 + 16 + (1 + 1 + 4 + 16 + 2) + (1 + 255) + 4;

/// Largest frame body accepted from a peer that has confirmed the key but is not yet a
/// member: its largest valid introduction with metadata of `max_metadata` bytes, and
/// nothing bigger (a verdict, a goodbye or a metadata update are smaller).
pub const fn admission_frame_limit(max_metadata: usize) -> usize {
    max_metadata + INTRODUCTION_OVERHEAD
}

/// [`admission_frame_limit`] at the default metadata bound of 64 KiB: 65 845 bytes.
pub const MAX_ADMISSION_FRAME: usize =
    admission_frame_limit(crate::core::config::DEFAULT_MAX_METADATA);

/// Writes the length prefix for a body of `body_len` bytes into `out`.
pub fn put_len(out: &mut Vec<u8>, body_len: usize) {
    let len = u32::try_from(body_len).expect("frame bodies are bounded far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
}

/// Wraps a body into a frame.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN_PREFIX + body.len());
    put_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// Accumulates bytes from a stream and yields whole frame bodies.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of unconsumed bytes in `buf`; compacted lazily to avoid a memmove per frame.
    start: usize,
    max_len: usize,
}

impl FrameDecoder {
    /// A decoder refusing any frame body longer than `max_len`.
    pub fn new(max_len: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_len,
        }
    }

    /// Changes the limit, e.g. once the handshake has authenticated the peer.
    pub fn set_max_len(&mut self, max_len: usize) {
        self.max_len = max_len;
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Drops the frames already returned: all at once when nothing follows them, else once
    /// they fill half the buffer, so a stream of small frames costs no memmove per frame.
    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Bytes buffered and not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Capacity currently held, for tests that prove a huge declared length was not
    /// allocated.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The next complete frame body, `Ok(None)` if more bytes are needed. The body stays
    /// in the decoder's buffer, mutable so that a record can be decrypted where it lies.
    pub fn next_frame(&mut self) -> Result<Option<&mut [u8]>, FrameError> {
        self.compact();
        let avail = &self.buf[self.start..];
        if avail.len() < LEN_PREFIX {
            return Ok(None);
        }
        let declared = u32::from_be_bytes(avail[..LEN_PREFIX].try_into().unwrap()) as usize;
        if declared > self.max_len {
            return Err(FrameError::TooLarge {
                declared,
                max: self.max_len,
            });
        }
        if declared == 0 {
            return Err(FrameError::UnexpectedKind(0));
        }
        if avail.len() < LEN_PREFIX + declared {
            return Ok(None);
        }
        let body = self.start + LEN_PREFIX..self.start + LEN_PREFIX + declared;
        self.start = body.end;
        Ok(Some(&mut self.buf[body]))
    }

    /// Called at end of stream: a clean end leaves nothing buffered.
    pub fn finish(&self) -> Result<(), FrameError> {
        let avail = &self.buf[self.start..];
        if avail.is_empty() {
            return Ok(());
        }
        let missing = if avail.len() < LEN_PREFIX {
            LEN_PREFIX - avail.len()
        } else {
            let declared = u32::from_be_bytes(avail[..LEN_PREFIX].try_into().unwrap()) as usize;
            LEN_PREFIX + declared - avail.len()
        };
        Err(FrameError::Truncated { missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let mut stream = frame(&[kind::HELLO, 1, 2, 3]);
        stream.extend(frame(&[kind::RECORD, 9]));
        let mut d = FrameDecoder::new(64);
        let mut got = Vec::new();
        for byte in stream {
            d.push(&[byte]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f.to_vec());
            }
        }
        assert_eq!(got, vec![vec![kind::HELLO, 1, 2, 3], vec![kind::RECORD, 9]]);
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn oversized_declared_length_is_refused_without_allocating_it() {
        let mut d = FrameDecoder::new(MAX_HANDSHAKE_FRAME);
        // Declares 4 GiB - 1 and sends a few bytes of it.
        d.push(&[0xff, 0xff, 0xff, 0xff, kind::RECORD, 0, 0]);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLarge {
                declared: u32::MAX as usize,
                max: MAX_HANDSHAKE_FRAME
            })
        );
        assert!(d.capacity() < 1024, "capacity {} grew", d.capacity());
    }

    #[test]
    fn the_admission_limit_holds_the_largest_valid_introduction_and_profile_sealed() {
        use crate::core::config::DEFAULT_MAX_METADATA;
        use crate::core::crypto::session::RECORD_OVERHEAD;
        use crate::core::message::{Message, MAX_HOST_NAME};
        use crate::core::node::NodeId;
        let intro = Message::Introduce {
            id: NodeId([7; 16]),
            host_name: "h".repeat(MAX_HOST_NAME),
            port: 1,
            advertised: Some("[2001:db8::1]:1".parse().unwrap()),
        };
        let profile = Message::Profile {
            metadata: "m".repeat(DEFAULT_MAX_METADATA),
            master_eligible: true,
            max_message: u32::MAX,
        };
        for largest in [intro, profile] {
            let body = largest.encode().len() + RECORD_OVERHEAD - LEN_PREFIX;
            assert!(body <= MAX_ADMISSION_FRAME, "{body}");
        }
        // Both together, as the introduction carried them before admission came first.
        assert_eq!(MAX_ADMISSION_FRAME, 65_845);
    }

    #[test]
    fn truncated_stream_is_an_error_at_end() {
        let f = frame(&[kind::RECORD, 1, 2, 3, 4]);
        let mut d = FrameDecoder::new(64);
        d.push(&f[..f.len() - 2]);
        assert_eq!(d.next_frame(), Ok(None));
        assert_eq!(d.finish(), Err(FrameError::Truncated { missing: 2 }));
        let mut d = FrameDecoder::new(64);
        d.push(&f[..2]);
        assert_eq!(d.finish(), Err(FrameError::Truncated { missing: 2 }));
    }

    #[test]
    fn empty_frame_is_refused() {
        let mut d = FrameDecoder::new(64);
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::UnexpectedKind(0)));
    }
}
