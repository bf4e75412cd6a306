//! The packed formats in which messages cross between JavaScript and Rust, on the Rust side
//! (`lib/packed.js` is the JavaScript side of both):
//!
//! - A send batch (JavaScript to Rust, `NativeNode.sendBatch`): event names and target
//!   lists once each, [`FIELDS`] numbers per message in `meta` (name index, targets index,
//!   payload bytes, binary 0/1), and the payloads back to back. [`send_batch`] reads it.
//! - A delivery (Rust to JavaScript, [`NativeMessages`]): a run of received messages as one
//!   object, so that crossing into JavaScript costs one object, not one per message.
//!   [`Deliveries`] writes it.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::interner::Interner;
use crate::core::error::SendError;
use crate::core::node::NodeId;
use crate::driver::{SendBatch, Targets};

/// Numbers per message: in a batch's `meta`, and in the trailer of a delivery's `data`.
pub const FIELDS: usize = 4;

/// A send batch as `lib/packed.js`'s Outbox packs it (see `NativeNode::send_batch`). A
/// target that is no node id is an unknown target, reported as that message's outcome.
pub fn send_batch<'a>(
    names: Vec<String>,
    targets: Vec<Option<Vec<String>>>,
    meta: &[u32],
    payload: &'a [u8],
) -> Result<SendBatch<'a>> {
    let targets = targets.into_iter().map(parse_targets).collect();
    let mut batch = SendBatch::new(names, targets, payload);
    let bad =
        |why: &dyn std::fmt::Display| Error::new(Status::InvalidArg, format!("sendBatch: {why}"));
    if !meta.len().is_multiple_of(FIELDS) {
        return Err(bad(&"meta must hold four numbers per message"));
    }
    for m in meta.chunks_exact(FIELDS) {
        batch
            .push(m[0], m[1], m[3] != 0, m[2] as usize)
            .map_err(|e| bad(&e))?;
    }
    Ok(batch)
}

fn parse_targets(targets: Option<Vec<String>>) -> Targets {
    let Some(targets) = targets else {
        return Ok(None);
    };
    let ids = targets
        .into_iter()
        .map(|s| s.parse::<NodeId>().map_err(|_| SendError::UnknownTarget(s)))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(Some(ids))
}

/// Consecutive custom event messages. `data` holds their payloads back to back, then
/// `count` times four little-endian u32s: message `i` is event `strings[m0]` from node
/// `strings[m1]`, its payload the next `m2` bytes, binary if `m3` is 1.
#[napi(object, object_from_js = false)]
pub struct NativeMessages {
    /// Event names and sender ids, each once.
    pub strings: Vec<String>,
    pub count: u32,
    #[napi(ts_type = "Buffer")]
    pub data: DeliveredBytes,
}

impl NativeMessages {
    /// A finished run of `fields` numbers per entry (see `calls.rs` for the other kind).
    pub(super) fn new(strings: Interner, data: DeliveredBytes, fields: usize) -> Self {
        NativeMessages {
            strings: strings.into_strings(),
            count: (data.trailer_len() / fields) as u32,
            data,
        }
    }
}

/// Builds [`NativeMessages`] from the deliveries of a run, interning names and senders.
/// The payloads are kept as they came and written once, into the Buffer JavaScript gets.
#[derive(Default)]
pub struct Deliveries {
    strings: Interner,
    bytes: DeliveredBytes,
}

impl Deliveries {
    /// Adds one message, after those added before.
    pub fn push(&mut self, from: NodeId, name: String, binary: bool, payload: Vec<u8>) {
        let name = self.strings.name(name);
        let from = self.strings.sender(from);
        let fields = [name, from, payload.len() as u32, u32::from(binary)];
        self.bytes.push(&fields, payload);
    }

    pub fn finish(self) -> NativeMessages {
        NativeMessages::new(self.strings, self.bytes, FIELDS)
    }
}

/// A delivery's `data`, kept in parts until it becomes a Buffer, so that each payload is
/// copied once at most. A small delivery is written straight into memory V8 owns: an
/// external Buffer (napi-rs's `Buffer::from(Vec)`) costs a finalizer, run later on the
/// JavaScript thread, and a weak handle that every scavenge visits, which for a delivery
/// of a few messages costs more than the copy. A large one is handed over as a Vec, and a
/// run of one large message (the usual way large messages come) hands over the Vec it
/// arrived in, without copying it.
#[derive(Default)]
pub struct DeliveredBytes {
    payloads: Vec<Vec<u8>>,
    /// Bytes in `payloads`.
    len: usize,
    /// [`FIELDS`] numbers per message, written after the payloads.
    trailer: Vec<u32>,
}

/// Deliveries at least this large are handed over as a Vec (see [`DeliveredBytes`]).
const COPY_BELOW: usize = 64 * 1024;

impl DeliveredBytes {
    /// Adds one entry: its trailer numbers and its payload.
    pub(super) fn push(&mut self, fields: &[u32], payload: Vec<u8>) {
        self.trailer.extend_from_slice(fields);
        self.len += payload.len();
        self.payloads.push(payload);
    }

    /// Numbers in the trailer so far.
    fn trailer_len(&self) -> usize {
        self.trailer.len()
    }

    fn total(&self) -> usize {
        self.len + self.trailer.len() * 4
    }

    /// Writes the payloads, then the trailer, into `out`, which is exactly `total()` long.
    fn write_into(&self, out: &mut [u8]) {
        let mut at = 0;
        for p in &self.payloads {
            out[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        for (chunk, n) in out[at..].chunks_exact_mut(4).zip(&self.trailer) {
            chunk.copy_from_slice(&n.to_le_bytes());
        }
    }

    /// The whole delivery as one Vec, reusing the payload's own when there is one.
    fn into_vec(mut self) -> Vec<u8> {
        let mut data = if self.payloads.len() == 1 {
            let mut only = self.payloads.pop().unwrap_or_default();
            only.reserve_exact(self.trailer.len() * 4);
            only
        } else {
            let mut data = Vec::with_capacity(self.total());
            for p in &self.payloads {
                data.extend_from_slice(p);
            }
            data
        };
        for n in &self.trailer {
            data.extend_from_slice(&n.to_le_bytes());
        }
        data
    }
}

impl ToNapiValue for DeliveredBytes {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> Result<sys::napi_value> {
        let total = val.total();
        if total == 0 || total >= COPY_BELOW {
            return unsafe { Buffer::to_napi_value(env, val.into_vec().into()) };
        }
        let mut buffer = std::ptr::null_mut();
        let mut data = std::ptr::null_mut();
        // SAFETY: napi_create_buffer allocates `total` bytes that V8 owns and points `data`
        // at them; they are written here, before any JavaScript can see the Buffer.
        let status = unsafe { sys::napi_create_buffer(env, total, &mut data, &mut buffer) };
        check_status!(status, "cannot allocate a Buffer for a delivery")?;
        if data.is_null() {
            return Err(Error::new(
                Status::GenericFailure,
                "cannot allocate a Buffer for a delivery",
            ));
        }
        // SAFETY: `data` points at `total` writable bytes (see above), not aliased in Rust.
        let out = unsafe { std::slice::from_raw_parts_mut(data.cast::<u8>(), total) };
        val.write_into(out);
        Ok(buffer)
    }
}
