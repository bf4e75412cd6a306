//! The napi binding: the only code that imports napi. It converts options and node objects
//! and moves notifications to JavaScript; all behaviour lives in the driver and the core.
//! `index.js` wraps [`NativeNode`] in the public `Espial` EventEmitter.

mod convert;

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::core::node::NodeInfo;
use crate::driver::{EventSink, Handle, Notification};

pub use convert::{NativeEvent, NativeNodeInfo, NativeOptions};

/// Strong (ref'd) while the node runs, so the process stays alive like a listening server;
/// the driver drops it when the node stops, which lets the process end by itself.
type EventCallback = ThreadsafeFunction<Vec<NativeEvent>, (), Vec<NativeEvent>, Status, false>;

struct JsSink(EventCallback);

impl EventSink for JsSink {
    fn deliver(&self, batch: Vec<Notification>) {
        let events = batch.into_iter().map(NativeEvent::from).collect();
        // NonBlocking: the queue is unbounded, so this never fails for lack of room.
        self.0.call(events, ThreadsafeFunctionCallMode::NonBlocking);
    }
}

/// One espial node, running on the shared runtime.
#[napi]
pub struct NativeNode {
    handle: Arc<Handle>,
    info: NodeInfo,
}

#[napi]
impl NativeNode {
    /// Starts a node. Invalid options throw; failures to bind arrive as an `error` event.
    #[napi(
        constructor,
        ts_args_type = "options: NativeOptions, onEvents: (events: Array<NativeEvent>) => void"
    )]
    pub fn new(options: NativeOptions, on_events: EventCallback) -> Result<Self> {
        let config = convert::node_config(options)?;
        let info = config.me.clone();
        let handle = Handle::start(config, JsSink(on_events));
        Ok(NativeNode {
            handle: Arc::new(handle),
            info,
        })
    }

    /// This node's own object.
    #[napi]
    pub fn info(&self) -> NativeNodeInfo {
        NativeNodeInfo::from(&self.info)
    }

    /// Leaves the cluster gracefully and closes every socket and timer.
    #[napi]
    pub async fn exit(&self) -> Result<()> {
        let handle = self.handle.clone();
        handle.exit().await;
        Ok(())
    }
}
