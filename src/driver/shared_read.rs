//! Reading a connection on the application's thread while it is idle (unix).
//!
//! Read by the runtime alone, every message received wakes two threads in turn: the runtime
//! thread (woken by the socket: it reads, opens, steps the core and queues the delivery),
//! then the JavaScript thread (woken by the delivery). Plain TCP wakes one. Here the
//! application's event loop watches a duplicate of the connection's descriptor
//! ([`ReadLoop`]) and reads it itself when it is idle, so a message received wakes only the
//! thread that handles it; meanwhile the runtime's registration of the socket is for
//! writing only, so the kernel does not wake the runtime thread for incoming bytes either.
//!
//! Two threads may read one socket, so each read and the step of the core it feeds happen
//! under the node's lock (the `pull` closure): bytes are handled in the order they arrive
//! whoever reads them.
//!
//! The application's thread can be busy for seconds (a listener in a busy loop), and the
//! protocol must go on meanwhile (acknowledgements, membership, the bound on what waits
//! for the application). So whoever owns reading is a state ([`Owner`]):
//!
//! - `Js`: the loop reads. The runtime is registered for reading only until bytes come:
//!   woken by them (as the loop is), it drops its registration, so that the bytes that
//!   follow wake only the loop, and looks [`TICK`] later. If nothing waits in the socket
//!   then, the loop keeps up and the runtime registers again. If bytes wait at two looks in
//!   a row and the loop has read nothing in between, the loop is busy: the runtime takes
//!   reading back (`Runtime`) within 2 × [`TICK`]. So a stream of messages costs the
//!   runtime about one wake-up per [`TICK`], not one per message, and a quiet connection
//!   none.
//! - `Runtime`: the runtime reads, as it always did. The loop's watch stays armed: the next
//!   time the loop runs it with bytes waiting it is idle again, and it takes reading back.
//!
//! While the application is behind (see [`super::inbox`]) the loop stops watching (a
//! level-triggered watch would fire again and again on bytes nobody may read) and hands
//! reading to the runtime, which waits for the application as before and asks the loop to
//! watch again once it reads. So it does for bulk transfers ([`BULK`]), which the runtime
//! reads in parallel with the loop, as before.
//!
//! The loop owns its duplicate and closes it only after it has stopped watching it (libuv
//! must never watch a closed descriptor). Since that duplicate keeps the socket open, the
//! write side is shut down explicitly when the connection ends (`connection::WriteSocket`),
//! so the peer reads its end at once as before.

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, Notify};

use super::connection::ConnEvent;
use super::inbox::Inbox;
use crate::core::cluster::ConnId;

/// How often the runtime looks at a connection the loop reads while bytes come: the loop
/// is taken for busy once bytes have waited two looks without it reading, so within
/// 2 × `TICK` the runtime reads instead.
pub const TICK: Duration = Duration::from_millis(5);
/// A read of at least this many bytes is a bulk transfer: the runtime reads it, in parallel
/// with the loop, which then only dispatches what it read (as before shared reading: on
/// one thread the two would take turns, and the throughput of small messages fell). The
/// loop watches again once a read of the runtime's is smaller.
pub const BULK: usize = 32 * 1024;

/// The application's event loop, which can watch descriptors and call back on its thread.
pub trait ReadLoop: Send + Sync + 'static {
    /// Watches `socket` (a duplicate, the loop's to close once it has stopped watching it)
    /// for reading, calling [`SharedRead::on_readable`] with it on the loop's thread. False
    /// if the loop cannot (it has ended): the runtime then reads alone.
    fn watch(&self, socket: TcpStream, read: Arc<SharedRead>) -> bool;
    /// Asks the loop to look at its watches again: one was closed or wants watching again.
    fn poke(&self);
}

/// What became of a read under the node's lock.
pub enum Pull {
    /// Bytes read (this many) and handled.
    Taken(usize),
    /// Nothing to read now.
    Empty,
    /// Not read: the application is behind (see [`super::inbox`]).
    Wait,
    /// The connection has ended (end of stream or an error).
    End,
    /// The node has stopped.
    Gone,
}

/// Reads once from the source handed in, under the node's lock, and steps the core with it.
pub type PullFn =
    dyn Fn(&mut dyn FnMut(&mut [u8]) -> io::Result<usize>) -> Pull + Send + Sync + 'static;

const RUNTIME: u8 = 0;
const JS: u8 = 1;

/// Who reads the connection now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Owner {
    Runtime,
    Js,
}

/// What the loop does with its watch after a callback.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Watch {
    /// Keep watching.
    Keep,
    /// Stop watching for now (the runtime reads); [`SharedRead::wants_watch`] says when again.
    Stop,
    /// Stop and close: the connection is over.
    Close,
}

/// One connection's reading, shared by the runtime's reader task and the loop.
pub struct SharedRead {
    conn: ConnId,
    pull: Box<PullFn>,
    owner: AtomicU8,
    /// Reads made by the loop: the runtime sees from it whether the loop keeps up.
    js_reads: AtomicU64,
    /// The loop's watch is stopped (the application was behind) and should be started again.
    watch_stopped: AtomicBool,
    /// The connection is over: the loop closes its watch, nobody reads any more.
    closed: AtomicBool,
    /// Its end was reported to the node task (once, whoever saw it).
    reported: AtomicBool,
    events: mpsc::UnboundedSender<ConnEvent>,
    /// Wakes the runtime's reader when the loop hands reading back.
    wake: Notify,
}

impl SharedRead {
    fn owner(&self) -> Owner {
        if self.owner.load(Ordering::SeqCst) == JS {
            Owner::Js
        } else {
            Owner::Runtime
        }
    }

    /// True once the connection is over.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// True if the loop's watch was stopped and should be started again.
    pub fn wants_watch(&self) -> bool {
        self.watch_stopped.load(Ordering::SeqCst) && !self.is_closed()
    }

    /// The loop (re)starts its watch.
    pub fn watching(&self) {
        self.watch_stopped.store(false, Ordering::SeqCst);
    }

    fn report_end(&self) {
        if !self.reported.swap(true, Ordering::SeqCst) {
            let _ = self.events.send(ConnEvent::Closed(self.conn));
        }
    }

    /// The loop's watch says `socket` is readable (on the loop's thread): the loop is idle,
    /// so it reads. What to do with the watch then.
    pub fn on_readable(&self, socket: &TcpStream) -> Watch {
        if self.is_closed() {
            return Watch::Close;
        }
        if self.owner.swap(JS, Ordering::SeqCst) == RUNTIME {
            // The runtime drops its registration when it next wakes.
            self.wake.notify_one();
        }
        self.js_reads.fetch_add(1, Ordering::SeqCst);
        let mut source = |buf: &mut [u8]| io::Read::read(&mut &*socket, buf);
        match (self.pull)(&mut source) {
            Pull::Taken(n) if n >= BULK => {
                // Bulk: the runtime reads, and hands reading back once reads are small.
                self.watch_stopped.store(true, Ordering::SeqCst);
                self.owner.store(RUNTIME, Ordering::SeqCst);
                self.wake.notify_one();
                Watch::Stop
            }
            Pull::Taken(_) | Pull::Empty => Watch::Keep,
            Pull::Wait => {
                // The runtime waits for the application and asks for the watch again once
                // it reads.
                self.watch_stopped.store(true, Ordering::SeqCst);
                self.owner.store(RUNTIME, Ordering::SeqCst);
                self.wake.notify_one();
                Watch::Stop
            }
            Pull::End => {
                self.closed.store(true, Ordering::SeqCst);
                self.report_end();
                Watch::Close
            }
            Pull::Gone => {
                self.closed.store(true, Ordering::SeqCst);
                Watch::Close
            }
        }
    }

    /// The loop no longer watches (it could not, or it is closing): the runtime reads alone.
    pub fn unwatched(&self) {
        self.watch_stopped.store(false, Ordering::SeqCst);
        self.owner.store(RUNTIME, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// The connection is over (the node let go of it): nobody reads any more.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Sets up shared reading of a socket by `event_loop` (which gets `for_loop`) and the
/// runtime (`for_runtime`); the runtime's side is the returned future (the connection's
/// reader task). If the loop cannot watch, the runtime reads alone.
pub(super) fn start(
    conn: ConnId,
    for_runtime: TcpStream,
    for_loop: TcpStream,
    pull: Box<PullFn>,
    event_loop: &Arc<dyn ReadLoop>,
    inbox: Arc<Inbox>,
    events: mpsc::UnboundedSender<ConnEvent>,
) -> (
    Arc<SharedRead>,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let read = Arc::new(SharedRead {
        conn,
        pull,
        owner: AtomicU8::new(RUNTIME),
        js_reads: AtomicU64::new(0),
        watch_stopped: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        reported: AtomicBool::new(false),
        events,
        wake: Notify::new(),
    });
    // Refused, the runtime reads alone: nothing ever hands reading to the loop.
    let _ = event_loop.watch(for_loop, read.clone());
    let task = run(read.clone(), for_runtime, event_loop.clone(), inbox);
    (read, task)
}

/// Bytes waiting in socket `fd`'s receive queue (0 if it cannot tell).
fn waiting(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int to the pointer given.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// The runtime's side of a shared connection: reads while it owns reading, looks after the
/// loop while the loop does (see the module doc).
async fn run(
    read: Arc<SharedRead>,
    socket: TcpStream,
    event_loop: Arc<dyn ReadLoop>,
    inbox: Arc<Inbox>,
) {
    // Registered for reading only while the runtime reads, or waits for the next bytes
    // while the loop reads; otherwise not registered at all, so that incoming bytes do not
    // wake this thread.
    let mut unregistered = Some(socket);
    let mut registered: Option<AsyncFd<TcpStream>> = None;
    let register = |unregistered: &mut Option<TcpStream>,
                    registered: &mut Option<AsyncFd<TcpStream>>|
     -> io::Result<()> {
        if let Some(s) = unregistered.take() {
            // SAFETY: `s` owns its descriptor, which stays open while the AsyncFd holds it.
            *registered = Some(unsafe { AsyncFd::register_with_interest(s, Interest::READABLE)? });
        }
        Ok(())
    };
    let unregister = |unregistered: &mut Option<TcpStream>,
                      registered: &mut Option<AsyncFd<TcpStream>>| {
        if let Some(r) = registered.take() {
            *unregistered = Some(r.into_inner());
        }
    };
    loop {
        if read.is_closed() {
            return;
        }
        match read.owner() {
            Owner::Runtime => {
                if register(&mut unregistered, &mut registered).is_err() {
                    read.report_end();
                    return;
                }
                let fd = registered.as_ref().expect("registered above");
                let mut guard = tokio::select! {
                    ready = fd.readable() => match ready {
                        Ok(guard) => guard,
                        Err(_) => { read.report_end(); return; }
                    },
                    // The loop took reading (or the connection closed): look again.
                    _ = read.wake.notified() => continue,
                };
                if read.owner() == Owner::Js {
                    // The loop reads what woke us.
                    continue;
                }
                let socket = guard.get_inner();
                let mut source = |buf: &mut [u8]| io::Read::read(&mut &*socket, buf);
                match (read.pull)(&mut source) {
                    Pull::Taken(n) => {
                        // The loop's watch was stopped while the application was behind,
                        // or for bulk: reading goes on, and not in bulk, so the loop may
                        // watch again.
                        if n < BULK && read.wants_watch() {
                            event_loop.poke();
                        }
                    }
                    Pull::Empty => guard.clear_ready(),
                    Pull::Wait => {
                        drop(guard);
                        inbox.resumed().await;
                    }
                    Pull::End => {
                        read.report_end();
                        return;
                    }
                    Pull::Gone => return,
                }
            }
            Owner::Js => {
                // Registered while nothing comes: the first bytes wake this thread once.
                if register(&mut unregistered, &mut registered).is_err() {
                    read.report_end();
                    return;
                }
                let registration = registered.as_ref().expect("registered above");
                tokio::select! {
                    ready = registration.readable() => match ready {
                        Ok(mut guard) => {
                            let ready = guard.ready();
                            if ready.is_read_closed() || ready.is_error() {
                                // The connection ended: should the loop be busy, nobody
                                // would look, so the runtime reads the end (its readiness
                                // kept for that).
                                read.owner.store(RUNTIME, Ordering::SeqCst);
                                continue;
                            }
                            // Bytes: the loop reads them.
                            guard.clear_ready();
                        }
                        Err(_) => {
                            read.report_end();
                            return;
                        }
                    },
                    // Reading handed back, or the connection closed: look again.
                    _ = read.wake.notified() => continue,
                }
                // Then not registered while bytes keep coming: they would wake this thread
                // each time. Instead it looks every TICK whether the loop keeps up.
                unregister(&mut unregistered, &mut registered);
                // Open as long as this task runs (`unregistered` or `registered` holds it).
                let fd = unregistered
                    .as_ref()
                    .expect("unregistered above")
                    .as_raw_fd();
                let mut last_reads = read.js_reads.load(Ordering::SeqCst);
                let mut waited = false;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(TICK) => {}
                        _ = read.wake.notified() => {}
                    }
                    if read.is_closed() || read.owner() != Owner::Js {
                        break;
                    }
                    let reads = read.js_reads.load(Ordering::SeqCst);
                    let waiting = waiting(fd) > 0;
                    if !waiting {
                        // The loop keeps up: wait for the next bytes, registered.
                        break;
                    }
                    if waited && reads == last_reads {
                        // Bytes waited at two looks and the loop read nothing in between:
                        // it is busy, and the runtime reads until it is idle again.
                        read.owner.store(RUNTIME, Ordering::SeqCst);
                        break;
                    }
                    waited = true;
                    last_reads = reads;
                }
            }
        }
    }
}
