//! The napi binding: the only code that imports napi. It converts options and node objects
//! and moves notifications to JavaScript; all behaviour lives in the driver and the core.
//! `index.js` wraps [`NativeNode`] in the public `Espial` EventEmitter.

mod call_batch;
mod calls;
mod convert;
#[cfg(unix)]
mod delivery;
mod errors;
mod interner;
mod packed;
#[cfg(unix)]
mod readpoll;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::core::node::{Candidate, NodeInfo};
use crate::driver::{ErrorCode, EventSink, Filter, Handle, Notification, Receipt, Sent};

pub use convert::{NativeEvent, NativeNodeInfo, NativeOptions, NativeSendError, NativeStats};

/// Strong (ref'd) while the node runs, so the process stays alive like a listening server;
/// the driver drops it when the node stops, which lets the process end by itself. (Where
/// libuv can be reached, [`delivery::LoopSink`] instead: see there why.)
#[cfg_attr(unix, allow(dead_code))]
type EventCallback = ThreadsafeFunction<Vec<NativeEvent>, (), Vec<NativeEvent>, Status, false>;

/// Weak: a filter alone does not keep the process alive.
type FilterCallback = ThreadsafeFunction<
    NativeNodeInfo,
    Promise<Either<bool, String>>,
    NativeNodeInfo,
    Status,
    false,
    true,
>;

/// Where notifications go: to the JavaScript callback, through our own queue and libuv
/// wake-up on unix, through napi's threadsafe function elsewhere.
enum JsSink {
    #[cfg(unix)]
    Loop(delivery::LoopSink),
    #[cfg_attr(unix, allow(dead_code))]
    Threadsafe(EventCallback),
}

impl JsSink {
    /// Delivers to `on_events`, a function of the current call (`env`'s).
    fn new(env: &Env, on_events: &Function<'_>) -> Result<JsSink> {
        #[cfg(unix)]
        {
            delivery::LoopSink::new(env.raw(), on_events.raw()).map(JsSink::Loop)
        }
        #[cfg(not(unix))]
        {
            let tsfn = unsafe { EventCallback::from_napi_value(env.raw(), on_events.raw())? };
            Ok(JsSink::Threadsafe(tsfn))
        }
    }
}

impl EventSink for JsSink {
    fn deliver(&self, batch: Vec<Notification>, receipt: Receipt) {
        let events = convert::pack(batch);
        let tsfn = match self {
            #[cfg(unix)]
            JsSink::Loop(sink) => return sink.deliver(events, receipt),
            JsSink::Threadsafe(tsfn) => tsfn,
        };
        // NonBlocking: the queue is unbounded, so this never fails for lack of room; what
        // waits in it is bounded by the receipts (max_receive_buffer).
        let mode = ThreadsafeFunctionCallMode::NonBlocking;
        if receipt.is_none() {
            tsfn.call(events, mode);
            return;
        }
        // The receipt is given back once `index.js` has dispatched the batch: the callback
        // runs on the JavaScript thread right after the function returns, every listener of
        // the batch having run. (Dropped with the call, should the call never be made.)
        tsfn.call_with_return_value(events, mode, move |_, _| {
            drop(receipt);
            Ok(())
        });
    }
}

/// `index.js` hands in a function that never throws and returns a Promise of the answer, a
/// boolean, or of a string saying how the application's filter failed (it has told the
/// application itself, with what was thrown); anything else is a failure too.
struct JsFilter(Arc<FilterCallback>);

impl Filter for JsFilter {
    fn judge(
        &self,
        node: Candidate,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<bool, String>> + Send>> {
        let filter = self.0.clone();
        Box::pin(async move {
            let answer = filter
                .call_async_catch(NativeNodeInfo::from(&node))
                .await
                .map_err(|e| format!("could not be called: {}", e.reason))?;
            match answer.await {
                Ok(Either::A(accept)) => Ok(accept),
                Ok(Either::B(failure)) => Err(failure),
                Err(e) => Err(e.reason.clone()),
            }
        })
    }
}

/// One espial node, running on the shared runtime once started. Its lifecycle is the
/// driver's: this only converts types.
#[napi]
pub struct NativeNode {
    node: Handle,
    /// This node's own object, with its latest metadata.
    info: Mutex<NodeInfo>,
    max_metadata: usize,
    /// Ids of send batches, matched by `index.js` with their `sent` events.
    next_batch: AtomicU32,
}

#[napi]
impl NativeNode {
    /// Prepares a node; `start()` starts it. Invalid options throw.
    #[napi(
        constructor,
        ts_args_type = "options: NativeOptions, onEvents: (events: Array<NativeEvent> | null, strings?: Array<string>, count?: number, data?: Buffer) => void"
    )]
    pub fn new(env: Env, options: NativeOptions, on_events: Function<'_>) -> Result<Self> {
        let config = convert::node_config(options)?;
        let sink = JsSink::new(&env, &on_events)?;
        let info = Mutex::new(config.me.clone());
        let max_metadata = config.core.max_metadata;
        // Connections are read on this thread too while it is idle (see readpoll.rs).
        #[cfg(unix)]
        let node =
            Handle::with_read_loop(config, sink, Arc::new(readpoll::PollLoop::new(env.raw())?));
        #[cfg(not(unix))]
        let node = Handle::new(config, sink);
        Ok(NativeNode {
            info,
            max_metadata,
            next_batch: AtomicU32::new(0),
            node,
        })
    }

    /// Starts the node: failures to bind arrive as an `error` event. Does nothing once
    /// started or exited.
    #[napi]
    pub fn start(&self) {
        self.node.start();
    }

    /// Counters since the node started (zeros before it starts, the last ones after exit).
    #[napi]
    pub fn stats(&self) -> NativeStats {
        self.node.stats().into()
    }

    /// This node's own object.
    #[napi]
    pub fn info(&self) -> NativeNodeInfo {
        NativeNodeInfo::from(&*self.info.lock().unwrap())
    }

    /// Installs the connection filter (`null` removes it). It applies to nodes that ask
    /// to join from now on.
    #[napi(ts_args_type = "filter: ((node: NativeNodeInfo) => Promise<boolean | string>) | null")]
    pub fn set_filter(&self, filter: Option<FilterCallback>) {
        let filter = filter.map(|f| Arc::new(JsFilter(Arc::new(f))) as Arc<dyn Filter>);
        self.node.set_filter(filter);
    }

    /// Makes this node master cluster-wide; `new_master` follows everywhere.
    #[napi]
    pub fn promote(&self) -> Result<(), String> {
        if !self.info.lock().unwrap().master_eligible {
            return Err(Error::new(
                ErrorCode::NotEligible.as_str().to_owned(),
                "espial: promote(): this node has master_eligible: false".to_owned(),
            ));
        }
        self.node.promote();
        Ok(())
    }

    /// Starts delivery of custom event `event` (the name is checked by `index.js`). Throws
    /// `ERR_ESPIAL_TOO_MANY_EVENTS` past the number of events a node may join.
    #[napi]
    pub fn join(&self, event: String) -> Result<(), String> {
        self.node
            .subscribe(event)
            .map_err(|e| Error::new(e.code().as_str().to_owned(), format!("espial: join(): {e}")))
    }

    /// Stops delivery of custom event `event`.
    #[napi]
    pub fn leave(&self, event: String) {
        self.node.unsubscribe(event);
    }

    /// Sends custom events, in order, packed by `lib/outbox.js`: message `i` is event
    /// `names[meta[4i]]` to `targets[meta[4i+1]]` (node ids; `null` for every member that
    /// joined it), its payload the next `meta[4i+2]` bytes of `payload`, binary if
    /// `meta[4i+3]` is 1 (else JSON text). `index.js` gathers the sends of one tick into
    /// one call. They are sealed and written (or queued behind earlier bytes) before this
    /// returns, so they keep the order of the calls.
    ///
    /// Returns `null` when every message is handed over; one entry per message (`null` or
    /// its error) when any was refused; or, when a connection it went to is backlogged, a
    /// batch id whose outcome arrives as a `sent` event once that connection drains.
    #[napi(
        ts_args_type = "names: Array<string>, targets: Array<Array<string> | null>, meta: Uint32Array, payload: Uint8Array",
        ts_return_type = "number | null | Array<NativeSendError | null>"
    )]
    pub fn send_batch(
        &self,
        names: Vec<String>,
        targets: Vec<Option<Vec<String>>>,
        meta: &[u32],
        payload: &[u8],
    ) -> Result<Option<Either<u32, Vec<Option<NativeSendError>>>>> {
        let batch = convert::send_batch(names, targets, meta, payload)?;
        let id = self.next_batch.fetch_add(1, Ordering::Relaxed);
        let results = match self.node.send(&batch, u64::from(id)) {
            Sent::Now(results) => results,
            Sent::Later => return Ok(Some(Either::A(id))),
        };
        if results.iter().all(|r| r.is_ok()) {
            return Ok(None);
        }
        let outcome = results
            .into_iter()
            .map(|r| r.err().map(NativeSendError::from))
            .collect();
        Ok(Some(Either::B(outcome)))
    }

    /// Serves requests named `name` from now on (the name is checked by `index.js`).
    /// Throws `ERR_ESPIAL_TOO_MANY_EVENTS` past the names a node may serve.
    #[napi]
    pub fn serve(&self, name: String) -> Result<(), String> {
        self.node.serve(name).map_err(|e| {
            Error::new(
                e.code().as_str().to_owned(),
                format!("espial: handle(): {e}"),
            )
        })
    }

    /// Stops serving `name`.
    #[napi]
    pub fn unserve(&self, name: String) {
        self.node.unserve(name);
    }

    /// Ids of the members serving `name`, in id order.
    #[napi]
    pub fn servers(&self, name: String) -> Vec<String> {
        let ids = self.node.servers(&name);
        ids.into_iter().map(|id| id.to_string()).collect()
    }

    /// Asks several handlers in one step, in order, as `lib/call-batch.js` packs a tick's
    /// requests: request `i` is handler `names[meta[5i]]` of node `targets[meta[5i+1]]`,
    /// its payload the next `meta[5i+2]` bytes of `payload`, binary if `meta[5i+3]` is 1,
    /// its timeout `meta[5i+4]` ms. Request `i`'s id (below 2^53) is written to `ids[i]`,
    /// or 0 if it was refused; then the answer is one entry per request (`null` or why
    /// not), else `null` when none was refused.
    #[napi(
        ts_args_type = "names: Array<string>, targets: Array<string>, meta: Uint32Array, payload: Uint8Array, ids: Float64Array",
        ts_return_type = "Array<NativeSendError | null> | null"
    )]
    pub fn request_batch(
        &self,
        names: Vec<String>,
        targets: Vec<String>,
        meta: &[u32],
        payload: &[u8],
        mut ids: Float64ArraySlice<'_>,
    ) -> Result<Option<Vec<Option<NativeSendError>>>> {
        // SAFETY: the array is the caller's, and the caller (the JavaScript thread) is in
        // this call until it returns: nothing else reads or writes it meanwhile.
        let ids = unsafe { ids.as_mut() };
        let asks = call_batch::asks(&names, &targets, meta, payload)?;
        if ids.len() < asks.len() {
            return Err(Error::new(
                Status::InvalidArg,
                "requestBatch: ids is shorter than the batch".to_owned(),
            ));
        }
        let results = self.node.ask_all(&asks);
        let mut refused = false;
        for (slot, result) in ids.iter_mut().zip(&results) {
            *slot = match result {
                Ok(id) => *id as f64,
                Err(_) => {
                    refused = true;
                    0.0
                }
            };
        }
        if !refused {
            return Ok(None);
        }
        let outcome = results
            .into_iter()
            .map(|r| r.err().map(NativeSendError::from))
            .collect();
        Ok(Some(outcome))
    }

    /// Answers several requests in one step, in order, as `lib/call-batch.js` packs a
    /// tick's replies: reply `i` goes to node `peers[meta[5i]]`, kind `meta[5i+1]` (a value
    /// or `NO_HANDLER`, see `calls.rs`), for its request `meta[5i+2] + meta[5i+3] * 2^32`,
    /// its payload the next `meta[5i+4]` bytes of `payload`.
    #[napi(ts_args_type = "peers: Array<string>, meta: Uint32Array, payload: Uint8Array")]
    pub fn reply_batch(&self, peers: Vec<String>, meta: &[u32], payload: &[u8]) -> Result<()> {
        let replies = call_batch::replies(&peers, meta, payload)?;
        self.node.reply_all(replies);
        Ok(())
    }

    /// Gives up on request `id` (aborted): no answer follows.
    #[napi]
    pub fn cancel_request(&self, id: f64) {
        self.node.cancel_request(id as u64);
    }

    /// Answers request `id` of node `peer` (see `calls.rs` for `kind`).
    #[napi]
    pub fn reply(
        &self,
        peer: String,
        id: f64,
        kind: u32,
        payload: &[u8],
        code: String,
        message: String,
    ) -> Result<()> {
        let Ok(peer) = peer.parse() else {
            return Ok(());
        };
        let Some(reply) = calls::reply(kind, payload, &code, &message) else {
            return Err(Error::new(
                Status::InvalidArg,
                format!("reply: kind {kind}"),
            ));
        };
        self.node.reply(peer, id as u64, reply);
        Ok(())
    }

    /// Replaces this node's metadata (JSON text) and tells every member.
    #[napi]
    pub fn set_metadata(&self, metadata: String) -> Result<()> {
        if metadata.len() > self.max_metadata {
            return Err(convert::metadata_too_large(
                metadata.len(),
                self.max_metadata,
            ));
        }
        self.info.lock().unwrap().metadata = metadata.clone();
        self.node.set_metadata(metadata);
        Ok(())
    }

    /// Leaves the cluster gracefully and closes every socket and timer. From this call on,
    /// sends are answered as not sent. Before `start()`, the node ends without ever binding.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn exit<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ()>> {
        // Asked here, not in the spawned future, so that a send made right after exit()
        // cannot count as handed over.
        let exiting = self.node.exit();
        env.spawn_future(async move {
            exiting.await;
            Ok(())
        })
    }
}
