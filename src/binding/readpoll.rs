//! The JavaScript thread's side of shared reading (unix; see `driver::shared_read`): a
//! libuv poll handle per connection, on a duplicate of its descriptor, in the thread's own
//! event loop. When the loop is idle and bytes arrive, the poll handle's callback reads
//! them and steps the node right there: one thread woken per message, as with a plain
//! socket, instead of the runtime thread and then this one.
//!
//! libuv asserts if a descriptor it watches is closed under it, so every duplicate is
//! closed here, on the loop's thread, in its handle's close callback, never before. The
//! driver asks for watches and pokes from any thread through an async handle; the watches
//! are closed when their connection ends, when the node is gone (the driver's hold on this
//! loop dropped), or by an environment cleanup hook when a worker thread ends under a
//! running node (its loop must have no open handle then). None of the handles keeps the
//! loop alive: the delivery's handle does that while the node runs (`delivery.rs`).
//!
//! libuv's functions are the ones Node.js exports to every addon, as in `delivery.rs`.

use std::ffi::c_void;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::raw::c_int;
use std::ptr;
use std::sync::{Arc, Mutex, RwLock};

use napi::sys;

use crate::driver::shared_read::{ReadLoop, SharedRead, Watch as Next};

/// `UV_ASYNC` and `UV_POLL` in libuv's `uv_handle_type`; `UV_READABLE` in `uv_poll_event`.
const UV_ASYNC: c_int = 1;
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;

extern "C" {
    fn uv_handle_size(kind: c_int) -> usize;
    fn uv_async_init(
        event_loop: *mut sys::uv_loop_s,
        handle: *mut c_void,
        cb: unsafe extern "C" fn(*mut c_void),
    ) -> c_int;
    fn uv_async_send(handle: *mut c_void) -> c_int;
    fn uv_poll_init(event_loop: *mut sys::uv_loop_s, handle: *mut c_void, fd: c_int) -> c_int;
    fn uv_poll_start(
        handle: *mut c_void,
        events: c_int,
        cb: unsafe extern "C" fn(*mut c_void, c_int, c_int),
    ) -> c_int;
    fn uv_poll_stop(handle: *mut c_void) -> c_int;
    fn uv_unref(handle: *mut c_void);
    fn uv_close(handle: *mut c_void, cb: unsafe extern "C" fn(*mut c_void));
}

/// The async handle, while it is open.
struct Handle(*mut c_void);
// libuv allows `uv_async_send` from any thread; everything else is done on the loop's.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

/// What the driver's threads and the JavaScript thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// `None` once closed. Asking holds it for reading; only closing, on the JavaScript
    /// thread, takes it for writing.
    handle: RwLock<Option<Handle>>,
}

#[derive(Default)]
struct Queue {
    /// Sockets to watch, not yet watched.
    new: Vec<(TcpStream, Arc<SharedRead>)>,
    /// The driver let go of the loop (the node stopped): close everything.
    finished: bool,
}

impl Shared {
    fn signal(&self) {
        let handle = self.handle.read().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = &*handle {
            unsafe { uv_async_send(h.0) };
        }
    }
}

/// The JavaScript thread's side, the async handle's `data`; freed once it is closed.
struct Js {
    shared: Arc<Shared>,
    env: sys::napi_env,
    event_loop: *mut sys::uv_loop_s,
    handle: *mut c_void,
    layout: std::alloc::Layout,
    watches: Vec<*mut Watch>,
}

/// One connection's poll handle, its `data`; freed (and the duplicate closed) once the
/// handle is closed.
struct Watch {
    poll: *mut c_void,
    layout: std::alloc::Layout,
    socket: TcpStream,
    read: Arc<SharedRead>,
    /// Started (stopped while the application is behind).
    active: bool,
    js: *mut Js,
}

/// The driver's hold on the JavaScript thread's loop.
pub struct PollLoop(Arc<Shared>);

impl PollLoop {
    /// Must be made on the JavaScript thread (`env` is the current call's).
    pub fn new(env: sys::napi_env) -> napi::Result<PollLoop> {
        let fail = |what: &str| napi::Error::from_reason(format!("espial: {what}"));
        unsafe {
            let mut event_loop = ptr::null_mut();
            if sys::napi_get_uv_event_loop(env, &mut event_loop) != sys::Status::napi_ok {
                return Err(fail("no event loop to read on"));
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
            });
            let js = Box::into_raw(Box::new(Js {
                shared: shared.clone(),
                env,
                event_loop,
                handle,
                layout,
                watches: Vec::new(),
            }));
            // `data` is the first field of every libuv handle.
            *handle.cast::<*mut Js>() = js;
            if uv_async_init(event_loop, handle, on_wake) != 0 {
                std::alloc::dealloc(handle.cast(), layout);
                drop(Box::from_raw(js));
                return Err(fail("cannot make the event loop's async handle"));
            }
            uv_unref(handle);
            *shared.handle.write().unwrap() = Some(Handle(handle));
            sys::napi_add_env_cleanup_hook(env, Some(on_env_cleanup), js.cast());
            Ok(PollLoop(shared))
        }
    }
}

impl ReadLoop for PollLoop {
    fn watch(&self, socket: TcpStream, read: Arc<SharedRead>) -> bool {
        // Held while queueing, so that closing (which takes it for writing, then drops what
        // is queued) cannot come in between.
        let handle = self.0.handle.read().unwrap_or_else(|e| e.into_inner());
        let Some(h) = &*handle else {
            return false;
        };
        self.0
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .new
            .push((socket, read));
        unsafe { uv_async_send(h.0) };
        true
    }

    fn poke(&self) {
        self.0.signal();
    }
}

impl Drop for PollLoop {
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
    /// Starts watching `socket`; if libuv refuses, the runtime reads it alone.
    unsafe fn add(&mut self, socket: TcpStream, read: Arc<SharedRead>) {
        if read.is_closed() {
            return;
        }
        let Ok(layout) = std::alloc::Layout::from_size_align(uv_handle_size(UV_POLL), 16) else {
            read.unwatched();
            return;
        };
        let poll = std::alloc::alloc_zeroed(layout).cast::<c_void>();
        if poll.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        let fd = socket.as_raw_fd();
        let watch = Box::into_raw(Box::new(Watch {
            poll,
            layout,
            socket,
            read,
            active: false,
            js: self,
        }));
        *poll.cast::<*mut Watch>() = watch;
        if uv_poll_init(self.event_loop, poll, fd) != 0 {
            let watch = Box::from_raw(watch);
            watch.read.unwatched();
            std::alloc::dealloc(poll.cast(), layout);
            return;
        }
        uv_unref(poll);
        self.watches.push(watch);
        (*watch).start();
    }

    /// Closes `watch`: stopped now, its duplicate closed once libuv has let go of it.
    unsafe fn close(&mut self, watch: *mut Watch) {
        self.watches.retain(|w| *w != watch);
        let w = &mut *watch;
        // The loop no longer reads it: the runtime does, if the connection goes on.
        w.read.unwatched();
        uv_poll_stop(w.poll);
        uv_close(w.poll, on_watch_closed);
    }

    /// Closes every watch and the async handle; nothing is watched from now on.
    unsafe fn close_all(&mut self) {
        let open = self
            .shared
            .handle
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let queued = std::mem::take(
            &mut self
                .shared
                .queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .new,
        );
        for (_, read) in queued {
            read.unwatched();
        }
        for watch in self.watches.clone() {
            self.close(watch);
        }
        if open.is_some() {
            uv_close(self.handle, on_closed);
        }
    }
}

impl Watch {
    unsafe fn start(&mut self) {
        if uv_poll_start(self.poll, UV_READABLE, on_poll) == 0 {
            self.active = true;
            self.read.watching();
        } else {
            self.read.unwatched();
        }
    }
}

/// Asked: watch the new sockets, close the watches of ended connections, start the ones
/// stopped while the application was behind; close everything once the node is gone.
unsafe extern "C" fn on_wake(handle: *mut c_void) {
    let js = &mut **handle.cast::<*mut Js>();
    let (new, finished) = {
        let mut queue = js.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut queue.new), queue.finished)
    };
    if finished {
        sys::napi_remove_env_cleanup_hook(js.env, Some(on_env_cleanup), (js as *mut Js).cast());
        js.close_all();
        return;
    }
    for (socket, read) in new {
        js.add(socket, read);
    }
    for watch in js.watches.clone() {
        let w = &mut *watch;
        if w.read.is_closed() {
            js.close(watch);
        } else if !w.active && w.read.wants_watch() {
            w.start();
        }
    }
}

/// The socket is readable (or in error, which the read then finds): the loop is idle.
unsafe extern "C" fn on_poll(poll: *mut c_void, status: c_int, _events: c_int) {
    let watch = *poll.cast::<*mut Watch>();
    let event_loop = (*(*watch).js).event_loop;
    // What the read's step delivers is handed to JavaScript right after this, here, not
    // through the delivery's wake-up (see `delivery::reading`).
    super::delivery::reading(event_loop, || after_read(poll, watch, status));
}

/// Reads, then does with the watch what the read says.
unsafe fn after_read(poll: *mut c_void, watch: *mut Watch, status: c_int) {
    // A panic must not unwind into libuv; the node's lock is poisoned then anyway, and the
    // watch is closed.
    let read = || (*watch).read.on_readable(&(*watch).socket);
    let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or(Next::Close);
    match next {
        // libuv stops a handle that reports an error (`status` < 0) itself; the read found
        // bytes before the error, so the runtime reads the rest, and the end, alone.
        Next::Keep if status < 0 => {
            (*watch).active = false;
            (*watch).read.unwatched();
        }
        Next::Keep => {}
        Next::Stop => {
            uv_poll_stop(poll);
            (*watch).active = false;
        }
        Next::Close => {
            let js = (*watch).js;
            (*js).close(watch);
        }
    }
}

/// The environment is going away with the node still running: nothing more is watched.
unsafe extern "C" fn on_env_cleanup(js: *mut c_void) {
    (*js.cast::<Js>()).close_all();
}

unsafe extern "C" fn on_watch_closed(poll: *mut c_void) {
    let watch = Box::from_raw(*poll.cast::<*mut Watch>());
    std::alloc::dealloc(poll.cast(), watch.layout);
    // Closes the duplicate, now that libuv no longer watches it.
    drop(watch);
}

unsafe extern "C" fn on_closed(handle: *mut c_void) {
    let js = Box::from_raw(*handle.cast::<*mut Js>());
    std::alloc::dealloc(handle.cast(), js.layout);
}
