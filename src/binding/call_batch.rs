//! The requests and the replies of one tick, as `lib/call-batch.js` packs them, for
//! `NativeNode::request_batch` and `NativeNode::reply_batch`: names and node ids once each,
//! a few numbers per call in one `Uint32Array`, the payloads back to back in one buffer.
//! Handed over one call at a time, each request and each reply was a napi call, a step of
//! the node and a `write` of its own; a tick's together take one of each.

use std::time::Duration;

use napi::bindgen_prelude::*;

use super::calls::{self, kind};
use crate::core::cluster::requests::Reply;
use crate::core::error::SendError;
use crate::core::node::NodeId;
use crate::driver::Ask;

/// Numbers per request in a request batch's `meta`: name index, target index, payload
/// bytes, binary 0/1, timeout in ms.
pub const REQUEST_FIELDS: usize = 5;
/// Numbers per reply in a reply batch's `meta`: peer index, kind (`calls::kind`: a value,
/// or `NO_HANDLER`), the request id's low and high 32 bits, payload bytes.
pub const REPLY_FIELDS: usize = 5;

fn bad(method: &str, why: &str) -> Error {
    Error::new(Status::InvalidArg, format!("{method}: {why}"))
}

/// Cuts `payload` into `meta`'s lengths (field `len_at` of each entry of `fields`); an
/// error unless they cover it exactly.
fn payloads<'a>(
    method: &str,
    meta: &[u32],
    fields: usize,
    len_at: usize,
    payload: &'a [u8],
) -> Result<Vec<&'a [u8]>> {
    if !meta.len().is_multiple_of(fields) {
        return Err(bad(
            method,
            "meta must hold the same numbers for every entry",
        ));
    }
    let mut start = 0usize;
    let mut out = Vec::with_capacity(meta.len() / fields);
    for m in meta.chunks_exact(fields) {
        let end = start
            .checked_add(m[len_at] as usize)
            .filter(|&end| end <= payload.len())
            .ok_or_else(|| bad(method, "an entry's payload runs past the buffer"))?;
        out.push(&payload[start..end]);
        start = end;
    }
    if start != payload.len() {
        return Err(bad(method, "the entries do not cover the payload buffer"));
    }
    Ok(out)
}

/// The requests of a batch, in order. A target that is no node id is an unknown target,
/// that request's outcome; an index past `names` or `targets` fails the whole batch.
pub fn asks<'a>(
    names: &'a [String],
    targets: &[String],
    meta: &[u32],
    payload: &'a [u8],
) -> Result<Vec<Ask<'a>>> {
    const METHOD: &str = "requestBatch";
    let targets: Vec<std::result::Result<NodeId, SendError>> = targets
        .iter()
        .map(|t| t.parse().map_err(|_| SendError::UnknownTarget(t.clone())))
        .collect();
    let bytes = payloads(METHOD, meta, REQUEST_FIELDS, 2, payload)?;
    meta.chunks_exact(REQUEST_FIELDS)
        .zip(bytes)
        .map(|(m, payload)| {
            let name = names
                .get(m[0] as usize)
                .ok_or_else(|| bad(METHOD, "a request names a handler the batch does not list"))?;
            let target = targets
                .get(m[1] as usize)
                .ok_or_else(|| bad(METHOD, "a request names a target the batch does not list"))?;
            Ok(Ask {
                name,
                binary: m[3] != 0,
                payload,
                target: target.clone(),
                timeout: Duration::from_millis(u64::from(m[4])),
            })
        })
        .collect()
}

/// The replies of a batch, in order. A reply to a peer that is no node id is dropped (as
/// `NativeNode::reply` drops it); a remote error does not travel in a batch (it has a code
/// and a message: `reply` takes it).
pub fn replies<'a>(
    peers: &[String],
    meta: &[u32],
    payload: &'a [u8],
) -> Result<Vec<(NodeId, u64, Reply<'a>)>> {
    const METHOD: &str = "replyBatch";
    let peers: Vec<Option<NodeId>> = peers.iter().map(|p| p.parse().ok()).collect();
    let bytes = payloads(METHOD, meta, REPLY_FIELDS, 4, payload)?;
    let mut out = Vec::with_capacity(bytes.len());
    for (m, payload) in meta.chunks_exact(REPLY_FIELDS).zip(bytes) {
        let peer = peers
            .get(m[0] as usize)
            .ok_or_else(|| bad(METHOD, "a reply names a peer the batch does not list"))?;
        let reply = match m[1] {
            kind::REMOTE => None,
            k => calls::reply(k, payload, "", ""),
        }
        .ok_or_else(|| bad(METHOD, &format!("kind {}", m[1])))?;
        if let Some(peer) = peer {
            out.push((*peer, u64::from(m[2]) | (u64::from(m[3]) << 32), reply));
        }
    }
    Ok(out)
}
