//! The napi binding: the only code that imports napi. It converts options and node objects
//! and moves notifications to JavaScript; all behaviour lives in the driver and the core.
//! `index.js` wraps [`NativeNode`] in the public `Espial` EventEmitter.

mod convert;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::core::node::NodeInfo;
use crate::driver::{EventSink, Filter, Handle, NodeConfig, Notification};

pub use convert::{NativeEvent, NativeNodeInfo, NativeOptions};

/// Strong (ref'd) while the node runs, so the process stays alive like a listening server;
/// the driver drops it when the node stops, which lets the process end by itself.
type EventCallback = ThreadsafeFunction<Vec<NativeEvent>, (), Vec<NativeEvent>, Status, false>;

/// Weak: a filter alone does not keep the process alive.
type FilterCallback =
    ThreadsafeFunction<NativeNodeInfo, Promise<bool>, NativeNodeInfo, Status, false, true>;

struct JsSink(EventCallback);

impl EventSink for JsSink {
    fn deliver(&self, batch: Vec<Notification>) {
        let events = batch.into_iter().map(NativeEvent::from).collect();
        // NonBlocking: the queue is unbounded, so this never fails for lack of room.
        self.0.call(events, ThreadsafeFunctionCallMode::NonBlocking);
    }
}

/// `index.js` hands in a function that never throws and returns a Promise; a rejection,
/// an exception or anything but `true` rejects the node.
struct JsFilter(Arc<FilterCallback>);

impl Filter for JsFilter {
    fn judge(&self, node: NodeInfo) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        let filter = self.0.clone();
        Box::pin(async move {
            match filter.call_async_catch(NativeNodeInfo::from(&node)).await {
                Ok(answer) => answer.await.unwrap_or(false),
                Err(_) => false,
            }
        })
    }
}

enum State {
    /// Constructed; `start()` not yet called.
    Idle {
        config: Box<NodeConfig>,
        sink: JsSink,
        filter: Option<Arc<dyn Filter>>,
    },
    Running(Arc<Handle>),
    Stopped,
}

/// One espial node, running on the shared runtime once started.
#[napi]
pub struct NativeNode {
    state: Mutex<State>,
    info: Mutex<NodeInfo>,
    max_metadata: usize,
}

#[napi]
impl NativeNode {
    /// Prepares a node; `start()` starts it. Invalid options throw.
    #[napi(
        constructor,
        ts_args_type = "options: NativeOptions, onEvents: (events: Array<NativeEvent>) => void"
    )]
    pub fn new(options: NativeOptions, on_events: EventCallback) -> Result<Self> {
        let config = convert::node_config(options)?;
        Ok(NativeNode {
            info: Mutex::new(config.me.clone()),
            max_metadata: config.core.max_metadata,
            state: Mutex::new(State::Idle {
                config: Box::new(config),
                sink: JsSink(on_events),
                filter: None,
            }),
        })
    }

    /// Starts the node: failures to bind arrive as an `error` event. Idempotent.
    #[napi]
    pub fn start(&self) {
        let mut state = self.state.lock().unwrap();
        if !matches!(*state, State::Idle { .. }) {
            return;
        }
        let State::Idle {
            mut config,
            sink,
            filter,
        } = std::mem::replace(&mut *state, State::Stopped)
        else {
            unreachable!()
        };
        config.me.metadata = self.info.lock().unwrap().metadata.clone();
        let handle = Handle::start(*config, sink, filter);
        *state = State::Running(Arc::new(handle));
    }

    /// This node's own object.
    #[napi]
    pub fn info(&self) -> NativeNodeInfo {
        NativeNodeInfo::from(&*self.info.lock().unwrap())
    }

    /// Installs the connection filter (`null` removes it). It applies to nodes that ask
    /// to join from now on.
    #[napi(ts_args_type = "filter: ((node: NativeNodeInfo) => Promise<boolean>) | null")]
    pub fn set_filter(&self, filter: Option<FilterCallback>) {
        let filter = filter.map(|f| Arc::new(JsFilter(Arc::new(f))) as Arc<dyn Filter>);
        match &mut *self.state.lock().unwrap() {
            State::Idle { filter: slot, .. } => *slot = filter,
            State::Running(handle) => handle.set_filter(filter),
            State::Stopped => {}
        }
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
        if let State::Running(handle) = &*self.state.lock().unwrap() {
            handle.set_metadata(metadata);
        }
        Ok(())
    }

    /// Leaves the cluster gracefully and closes every socket and timer.
    #[napi]
    pub async fn exit(&self) -> Result<()> {
        let handle = {
            let mut state = self.state.lock().unwrap();
            match std::mem::replace(&mut *state, State::Stopped) {
                State::Running(handle) => {
                    *state = State::Running(handle.clone());
                    Some(handle)
                }
                // Never started: dropping the sink releases the event callback.
                State::Idle { .. } | State::Stopped => None,
            }
        };
        if let Some(handle) = handle {
            handle.exit().await;
        }
        Ok(())
    }
}
