//! How batches of events reach the JavaScript thread (unix): a queue of ours and a libuv
//! async handle of ours, instead of napi's threadsafe function.
//!
//! Node's threadsafe function signals the event loop while it still holds its queue's
//! mutex (`Push`: lock, push, `uv_async_send`, unlock). When the JavaScript thread, woken,
//! runs at once (on the core the espial thread was on, which the wake-up then preempts),
//! its first act is to take that mutex, so it sleeps on it and is woken a second time: four
//! context switches per message received instead of two (`perf sched timehist` of the
//! ping-pong benchmark showed it on every round trip when the two processes shared a core;
//! `bench/perf-switches.sh` on about one in seven on a quiet machine). Here the queue's
//! lock is let go before the loop is signalled, and the JavaScript thread never takes the
//! lock the signaller holds while signalling (a read lock that only closing the handle
//! takes for writing). One wake-up drains every batch queued meanwhile, in one call into
//! JavaScript, in order.
//!
//! A step made by the JavaScript thread itself, in a poll callback of `readpoll.rs` (it
//! read the socket while idle), delivers without the wake-up: its batches are queued and
//! handed to JavaScript by that callback as soon as the step is over ([`reading`]), not one
//! eventfd write, one more turn of the loop and one eventfd read later.
//!
//! libuv's functions are the ones Node.js exports to every addon (as node-gyp addons use
//! them); Windows, where napi-rs loads Node's symbols at run time, keeps the threadsafe
//! function.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::os::raw::c_int;
use std::ptr;
use std::sync::{Arc, Mutex, RwLock};

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;

use super::convert::NativeEvent;
use crate::driver::Receipt;

/// `UV_ASYNC` in libuv's `uv_handle_type`.
const UV_ASYNC: c_int = 1;

extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_async_init(
        event_loop: *mut sys::uv_loop_s,
        handle: *mut c_void,
        cb: unsafe extern "C" fn(*mut c_void),
    ) -> c_int;
    fn uv_async_send(handle: *mut c_void) -> c_int;
    fn uv_close(handle: *mut c_void, cb: unsafe extern "C" fn(*mut c_void));
}

/// The async handle, while it is open.
struct Handle(*mut c_void);
// libuv allows `uv_async_send` from any thread; everything else is done on the loop's.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

/// What the espial thread and the JavaScript thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// `None` once closed. Signalling holds it for reading; only closing, on the
    /// JavaScript thread, takes it for writing.
    handle: RwLock<Option<Handle>>,
    /// The event loop the handle is on: deliveries made by a callback of this loop, on its
    /// thread, are handed over by that callback (see [`reading`]).
    event_loop: usize,
    /// The JavaScript side (the handle's `data`), to be touched on the loop's thread only,
    /// and only while the handle is open.
    js: std::sync::atomic::AtomicPtr<Js>,
}

thread_local! {
    /// The loop whose poll callback is reading on this thread, while it does.
    static READING: Cell<usize> = const { Cell::new(0) };
    /// The sinks that queued batches meanwhile, without a wake-up.
    static QUEUED: RefCell<Vec<Arc<Shared>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `read` (a poll callback's read, which steps the node) on the thread of
/// `event_loop`, then hands what its step delivered to JavaScript at once, in order after
/// anything queued before it. Not while `read` runs: its step holds the order lock of the
/// node (`driver::node::Step`), which a listener's `send()` takes too.
///
/// # Safety
/// On the JavaScript thread of `event_loop`, in a libuv callback (not inside JavaScript).
pub(super) unsafe fn reading<T>(event_loop: *mut sys::uv_loop_s, read: impl FnOnce() -> T) -> T {
    let previous = READING.with(|r| r.replace(event_loop as usize));
    let result = read();
    READING.with(|r| r.set(previous));
    if previous == 0 {
        let queued = QUEUED.with(|q| std::mem::take(&mut *q.borrow_mut()));
        for shared in queued {
            shared.hand_over();
        }
    }
    result
}

#[derive(Default)]
struct Queue {
    batches: Vec<(Vec<NativeEvent>, Receipt)>,
    /// The sink was dropped (the node stopped): close once the queue is drained.
    finished: bool,
}

impl Shared {
    /// On the loop's thread, outside JavaScript: delivers what is queued now, as a wake-up
    /// would (and one still pending finds nothing).
    unsafe fn hand_over(&self) {
        {
            let handle = self.handle.read().unwrap_or_else(|e| e.into_inner());
            if handle.is_none() {
                return;
            }
        }
        // Open, so `js` is alive: it is freed in the close callback, on this thread.
        let js = &mut *self.js.load(std::sync::atomic::Ordering::Relaxed);
        let batches =
            std::mem::take(&mut self.queue.lock().unwrap_or_else(|e| e.into_inner()).batches);
        if !batches.is_empty() && !js.released {
            js.call(batches);
        }
    }

    fn signal(&self) {
        let handle = self.handle.read().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = &*handle {
            // Cannot fail on an open handle.
            unsafe { uv_async_send(h.0) };
        }
    }
}

/// The JavaScript thread's side, the handle's `data`; freed once the handle is closed.
struct Js {
    shared: Arc<Shared>,
    env: sys::napi_env,
    callback: sys::napi_ref,
    context: sys::napi_async_context,
    handle: *mut c_void,
    layout: std::alloc::Layout,
    /// Napi's references were let go (closing, or the environment going away).
    released: bool,
}

/// The espial side: queues batches and wakes the JavaScript thread. Dropping it (the node
/// stopped) closes the handle once what is queued is delivered, which lets go of the event
/// loop as the threadsafe function's release did.
pub struct LoopSink(Arc<Shared>);

impl LoopSink {
    /// A sink that calls `callback` with each drained run of events, on the JavaScript
    /// thread. Must be made on that thread (`env` is the current call's).
    pub fn new(env: sys::napi_env, callback: sys::napi_value) -> napi::Result<LoopSink> {
        let fail = |what: &str| napi::Error::from_reason(format!("espial: {what}"));
        unsafe {
            let mut event_loop = ptr::null_mut();
            if sys::napi_get_uv_event_loop(env, &mut event_loop) != sys::Status::napi_ok {
                return Err(fail("no event loop to deliver events on"));
            }
            let mut reference = ptr::null_mut();
            if sys::napi_create_reference(env, callback, 1, &mut reference) != sys::Status::napi_ok
            {
                return Err(fail("cannot keep the event callback"));
            }
            let mut resource = ptr::null_mut();
            let mut name = ptr::null_mut();
            let mut context = ptr::null_mut();
            let label = "espial:events";
            if sys::napi_create_object(env, &mut resource) != sys::Status::napi_ok
                || sys::napi_create_string_utf8(
                    env,
                    label.as_ptr().cast(),
                    label.len() as isize,
                    &mut name,
                ) != sys::Status::napi_ok
                || sys::napi_async_init(env, resource, name, &mut context) != sys::Status::napi_ok
            {
                sys::napi_delete_reference(env, reference);
                return Err(fail("cannot make the event callback's async context"));
            }
            let layout = std::alloc::Layout::from_size_align(uv_handle_size(UV_ASYNC), 16)
                .map_err(|_| fail("libuv reports no size for an async handle"))?;
            let handle = std::alloc::alloc_zeroed(layout).cast::<c_void>();
            if handle.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            let shared = Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                handle: RwLock::new(None),
                event_loop: event_loop as usize,
                js: std::sync::atomic::AtomicPtr::new(ptr::null_mut()),
            });
            let js = Box::into_raw(Box::new(Js {
                shared: shared.clone(),
                env,
                callback: reference,
                context,
                handle,
                layout,
                released: false,
            }));
            // `data` is the first field of every libuv handle.
            *handle.cast::<*mut Js>() = js;
            shared.js.store(js, std::sync::atomic::Ordering::Relaxed);
            if uv_async_init(event_loop, handle, on_wake) != 0 {
                (*js).release();
                std::alloc::dealloc(handle.cast(), layout);
                drop(Box::from_raw(js));
                return Err(fail("cannot make the event loop's async handle"));
            }
            *shared.handle.write().unwrap() = Some(Handle(handle));
            // A worker thread's environment can end with the node still running: the
            // handle must be closed before its loop is.
            sys::napi_add_env_cleanup_hook(env, Some(on_env_cleanup), js.cast());
            Ok(LoopSink(shared))
        }
    }

    /// Queues `events`; `receipt` is dropped once JavaScript has processed them.
    pub fn deliver(&self, events: Vec<NativeEvent>, receipt: Receipt) {
        self.0
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .batches
            .push((events, receipt));
        // A poll callback of our loop is reading on this thread: it hands the batch over
        // once its step is over (see `reading`).
        let inline = READING.with(|r| r.get() == self.0.event_loop);
        if inline {
            QUEUED.with(|q| {
                let mut q = q.borrow_mut();
                if !q.iter().any(|s| Arc::ptr_eq(s, &self.0)) {
                    q.push(self.0.clone());
                }
            });
            return;
        }
        self.0.signal();
    }
}

impl Drop for LoopSink {
    fn drop(&mut self) {
        self.0
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finished = true;
        self.0.signal();
    }
}

impl Js {
    /// Lets go of napi's references (on the JavaScript thread, with the environment alive).
    unsafe fn release(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        sys::napi_delete_reference(self.env, self.callback);
        sys::napi_async_destroy(self.env, self.context);
    }

    /// Closes the handle; signals from now on do nothing. Its memory (and this) is freed
    /// in the close callback.
    unsafe fn close(&mut self) {
        let open = self
            .shared
            .handle
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if open.is_some() {
            uv_close(self.handle, on_closed);
        }
    }

    /// Calls the callback with every event of `batches`, in order, then drops their
    /// receipts.
    unsafe fn call(&mut self, batches: Vec<(Vec<NativeEvent>, Receipt)>) {
        let env = self.env;
        let mut events = Vec::new();
        let mut receipts = Vec::with_capacity(batches.len());
        for (batch, receipt) in batches {
            if events.is_empty() {
                events = batch;
            } else {
                events.extend(batch);
            }
            receipts.push(receipt);
        }
        let mut scope = ptr::null_mut();
        if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
            return;
        }
        let mut callback = ptr::null_mut();
        let mut global = ptr::null_mut();
        if let Some(args) = arguments(env, events) {
            if sys::napi_get_reference_value(env, self.callback, &mut callback)
                == sys::Status::napi_ok
                && sys::napi_get_global(env, &mut global) == sys::Status::napi_ok
            {
                let mut result = ptr::null_mut();
                // Runs the callback, then the microtasks and ticks it queued (the sends of
                // its listeners), as the threadsafe function's call did.
                let status = sys::napi_make_callback(
                    env,
                    self.context,
                    global,
                    callback,
                    args.len(),
                    args.as_ptr(),
                    &mut result,
                );
                if status == sys::Status::napi_pending_exception {
                    // index.js catches what listeners throw; anything else is uncaught.
                    let mut error = ptr::null_mut();
                    sys::napi_get_and_clear_last_exception(env, &mut error);
                    sys::napi_fatal_exception(env, error);
                }
            }
        }
        sys::napi_close_handle_scope(env, scope);
        drop(receipts);
    }
}

/// The callback's arguments for `events`: `(events)`, or, when they are one run of custom
/// event messages and nothing else (a message of a ping-pong, a stream's read), the run's
/// parts as they are, `(null, strings, count, data)`: the two objects around them (the
/// event and its `messages`) and their properties cost the JavaScript thread more than the
/// rest of the crossing.
unsafe fn arguments(
    env: sys::napi_env,
    mut events: Vec<NativeEvent>,
) -> Option<Vec<sys::napi_value>> {
    let run_only =
        events.len() == 1 && events[0].kind == "messages" && events[0].messages.is_some();
    if !run_only {
        return Vec::<NativeEvent>::to_napi_value(env, events)
            .ok()
            .map(|a| vec![a]);
    }
    let run = events.pop()?.messages?;
    let mut null = ptr::null_mut();
    if sys::napi_get_null(env, &mut null) != sys::Status::napi_ok {
        return None;
    }
    let strings = Vec::<String>::to_napi_value(env, run.strings).ok()?;
    let count = u32::to_napi_value(env, run.count).ok()?;
    let data = super::packed::DeliveredBytes::to_napi_value(env, run.data).ok()?;
    Some(vec![null, strings, count, data])
}

/// The loop was signalled: deliver what is queued; close once the sink is gone.
unsafe extern "C" fn on_wake(handle: *mut c_void) {
    let js = &mut **handle.cast::<*mut Js>();
    let (batches, finished) = {
        let mut queue = js.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut queue.batches), queue.finished)
    };
    if !batches.is_empty() && !js.released {
        js.call(batches);
    }
    if finished {
        sys::napi_remove_env_cleanup_hook(js.env, Some(on_env_cleanup), (js as *mut Js).cast());
        js.release();
        js.close();
    }
}

/// The environment is going away with the node still running: nothing more is delivered.
unsafe extern "C" fn on_env_cleanup(js: *mut c_void) {
    let js = &mut *js.cast::<Js>();
    js.release();
    js.close();
}

unsafe extern "C" fn on_closed(handle: *mut c_void) {
    let js = Box::from_raw(*handle.cast::<*mut Js>());
    std::alloc::dealloc(handle.cast(), js.layout);
    // Receipts still queued (nothing more can be delivered) are given back.
    drop(js);
}
