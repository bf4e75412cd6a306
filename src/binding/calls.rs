//! Requests and replies at the JavaScript edge: a run of incoming requests and of answers
//! to ours crosses as one packed object, the way custom event deliveries do (`packed.rs`),
//! and `lib/requests.js` reads it. Per entry the trailer holds [`CALL_FIELDS`] numbers:
//! name (index into `strings`, or `u32::MAX` for an answer), sender (index), payload bytes,
//! kind (below), the request id's low and high 32 bits.

use super::convert::NativeEvent;
use super::interner::Interner;
use super::packed::{DeliveredBytes, NativeMessages};
use crate::core::calls::Answer;
use crate::core::cluster::requests::Reply;
use crate::core::cluster::Event;

/// Numbers per entry of a run of calls.
pub const CALL_FIELDS: usize = 6;

/// What an entry is: `lib/requests.js` has the same list.
pub mod kind {
    pub const REQUEST_JSON: u32 = 0;
    pub const REQUEST_BINARY: u32 = 1;
    pub const VALUE_JSON: u32 = 2;
    pub const VALUE_BINARY: u32 = 3;
    /// Payload: code length (u8), code, message.
    pub const REMOTE: u32 = 4;
    pub const NO_HANDLER: u32 = 5;
    pub const BUSY: u32 = 6;
    pub const TOO_LARGE: u32 = 7;
    pub const TIMEOUT: u32 = 8;
    pub const TARGET_LEFT: u32 = 9;
}

#[derive(Default)]
pub struct CallRun {
    strings: Interner,
    bytes: DeliveredBytes,
}

impl CallRun {
    /// Adds a request or an answer (other events are not calls and are skipped).
    pub fn push(&mut self, e: Event) {
        let (name, from, id, kind, payload) = match e {
            Event::Request {
                from,
                id,
                name,
                binary,
                payload,
            } => {
                let kind = if binary {
                    kind::REQUEST_BINARY
                } else {
                    kind::REQUEST_JSON
                };
                (self.strings.name(name), from, id, kind, payload)
            }
            Event::Answer { id, from, answer } => {
                let (kind, payload) = match answer {
                    Answer::Value {
                        binary: false,
                        payload,
                    } => (kind::VALUE_JSON, payload),
                    Answer::Value {
                        binary: true,
                        payload,
                    } => (kind::VALUE_BINARY, payload),
                    Answer::Remote { code, message } => {
                        let mut p = Vec::with_capacity(1 + code.len() + message.len());
                        p.push(code.len() as u8);
                        p.extend_from_slice(code.as_bytes());
                        p.extend_from_slice(message.as_bytes());
                        (kind::REMOTE, p)
                    }
                    Answer::NoHandler => (kind::NO_HANDLER, Vec::new()),
                    Answer::Busy => (kind::BUSY, Vec::new()),
                    Answer::TooLarge => (kind::TOO_LARGE, Vec::new()),
                    Answer::Timeout => (kind::TIMEOUT, Vec::new()),
                    Answer::TargetLeft => (kind::TARGET_LEFT, Vec::new()),
                };
                (u32::MAX, from, id, kind, payload)
            }
            _ => return,
        };
        let from = self.strings.sender(from);
        let fields = [
            name,
            from,
            payload.len() as u32,
            kind,
            id as u32,
            (id >> 32) as u32,
        ];
        self.bytes.push(&fields, payload);
    }

    pub fn event(self) -> NativeEvent {
        NativeEvent {
            calls: Some(NativeMessages::new(self.strings, self.bytes, CALL_FIELDS)),
            ..super::convert::plain("calls", None)
        }
    }
}

/// A reply as `lib/requests.js` hands it over: `kind` is `VALUE_JSON`, `VALUE_BINARY`,
/// `REMOTE` (with `code` and `message`) or `NO_HANDLER`.
pub fn reply<'a>(
    kind: u32,
    payload: &'a [u8],
    code: &'a str,
    message: &'a str,
) -> Option<Reply<'a>> {
    Some(match kind {
        kind::VALUE_JSON => Reply::Value {
            binary: false,
            payload,
        },
        kind::VALUE_BINARY => Reply::Value {
            binary: true,
            payload,
        },
        kind::REMOTE => Reply::Remote { code, message },
        kind::NO_HANDLER => Reply::NoHandler,
        _ => return None,
    })
}
