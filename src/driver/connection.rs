//! Per-connection I/O: a reader task that steps the node with the bytes it reads, and a
//! write side that whichever thread is stepping the node writes to directly.
//!
//! Frames sealed during one step of the node are staged, then written with one system call
//! when the step ends ([`ConnHandle::flush`]). When nothing is waiting to be written, that
//! call is made right there, on the calling thread (often the JavaScript thread sending an
//! event): a small message then reaches the socket without waking any other thread. What
//! the socket does not take at once goes to the connection's writer task, which writes it
//! in order as the socket drains; nothing is written around it meanwhile.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::runtime::Handle as Runtime;
use tokio::sync::{mpsc, Notify};
use tokio::task::{AbortHandle, JoinSet};

use super::inbox::Inbox;
#[cfg(unix)]
use super::shared_read::{self, PullFn, ReadLoop, SharedRead};
use crate::core::cluster::ConnId;
use crate::core::node::Candidate;

/// A safety net only: the core gives up on a dial sooner and the task is aborted then.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
pub const READ_BUF: usize = 64 * 1024;
/// Bytes queued on a connection above which `send()` waits (backpressure)...
pub const HIGH_WATER: usize = 8 * 1024 * 1024;
/// ...until the writer has brought the queue below this.
const LOW_WATER: usize = 2 * 1024 * 1024;

/// What connection tasks report to the node task.
pub enum ConnEvent {
    Connected(ConnId, TcpStream),
    DialFailed(ConnId),
    Closed(ConnId),
    /// The connection filter's answer about the node on this connection.
    Verdict(ConnId, bool),
    /// The connection filter failed on `node` (on this connection): `reason` says how, and
    /// `timed_out` whether it did not answer in time (which nobody has reported yet).
    FilterFailed {
        conn: ConnId,
        node: Candidate,
        reason: String,
        timed_out: bool,
    },
    /// The write queue fell below the low-water mark after a sender waited on it.
    Drained,
    /// The application took enough of what was delivered: members' connections are read
    /// again (see [`super::inbox`]).
    Resumed,
}

/// What became of bytes a connection's reader read.
pub enum Read {
    /// Handled.
    Taken,
    /// Not handled: the application is behind. The reader keeps them and tries again once
    /// reading resumes.
    Wait,
    /// Nobody wants them any more: the node has stopped.
    Gone,
}

/// The node's hold on a live connection. Dropping it writes what is staged, lets the writer
/// finish the queue and shut the socket down, and stops the reader.
pub struct ConnHandle {
    out: Arc<Outgoing>,
    /// Frames sealed during the current step, not yet handed to the socket.
    staged: Vec<u8>,
    reader: AbortHandle,
    /// Read by the application's loop too: told when the connection ends.
    #[cfg(unix)]
    shared: Option<(Arc<SharedRead>, Arc<dyn ReadLoop>)>,
}

/// A connection's socket, for writing.
enum WriteSocket {
    /// Read by the runtime alone (through the other half).
    Tokio(OwnedWriteHalf),
    /// Registered with the runtime for writing only, as the application's loop may read it
    /// (see [`shared_read`]).
    #[cfg(unix)]
    Shared(tokio::io::unix::AsyncFd<std::net::TcpStream>),
}

impl WriteSocket {
    /// Writes what the socket takes now.
    fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            WriteSocket::Tokio(w) => w.try_write(bytes),
            #[cfg(unix)]
            WriteSocket::Shared(fd) => io::Write::write(&mut fd.get_ref(), bytes),
        }
    }

    /// Writes some of `bytes`, waiting until the socket takes any.
    async fn write_some(&self, bytes: &[u8]) -> io::Result<usize> {
        loop {
            match self {
                WriteSocket::Tokio(w) => {
                    w.writable().await?;
                    match w.try_write(bytes) {
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        done => return done,
                    }
                }
                #[cfg(unix)]
                WriteSocket::Shared(fd) => {
                    let mut ready = fd.writable().await?;
                    let write = |s: &tokio::io::unix::AsyncFd<std::net::TcpStream>| {
                        io::Write::write(&mut s.get_ref(), bytes)
                    };
                    if let Ok(done) = ready.try_io(write) {
                        return done;
                    }
                }
            }
        }
    }
}

#[cfg(unix)]
impl Drop for WriteSocket {
    fn drop(&mut self) {
        // The application's loop may still hold a duplicate of the descriptor (it closes it
        // on its own thread), which keeps the socket open: the peer reads the end now.
        if let WriteSocket::Shared(fd) = self {
            let _ = fd.get_ref().shutdown(std::net::Shutdown::Write);
        }
    }
}

/// The write side, shared by the node (under its lock) and the connection's writer task.
struct Outgoing {
    socket: WriteSocket,
    queue: Mutex<Queue>,
    /// Tells the writer task there is something in the queue, or that it is closed.
    wake: Notify,
    /// Bytes in the queue or being written by the writer task.
    queued: AtomicUsize,
    /// A sender waits for this queue to drain: the writer reports when it has.
    waiting: AtomicBool,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// The writer task holds bytes taken from the queue and not yet all written.
    writing: bool,
    /// No more bytes come: the writer finishes the queue and shuts the socket down.
    closed: bool,
}

impl ConnHandle {
    /// Stages a sealed frame; it goes out at the next [`ConnHandle::flush`].
    pub fn stage(&mut self, frame: Vec<u8>) {
        if self.staged.is_empty() {
            // A large frame (a 1 MiB message) is kept as it is rather than copied.
            self.staged = frame;
        } else {
            self.staged.extend_from_slice(&frame);
        }
    }

    /// True if frames are staged.
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Writes the staged frames: straight to the socket when nothing is queued before them
    /// and the socket takes them, else (the rest) through the writer task.
    pub fn flush(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        let out = &self.out;
        let mut queue = out.queue.lock().unwrap();
        let mut written = 0;
        if queue.bytes.is_empty() && !queue.writing {
            match out.socket.try_write(&self.staged) {
                Ok(n) => written = n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                // The connection is broken: the reader sees it end and reports the close,
                // and what was staged is lost with it, as with any socket.
                Err(_) => {
                    self.staged.clear();
                    return;
                }
            }
        }
        if written == self.staged.len() {
            self.staged.clear();
            return;
        }
        let rest = self.staged.len() - written;
        if written == 0 && queue.bytes.is_empty() {
            std::mem::swap(&mut queue.bytes, &mut self.staged);
        } else {
            queue.bytes.extend_from_slice(&self.staged[written..]);
        }
        self.staged.clear();
        out.queued.fetch_add(rest, Ordering::Relaxed);
        drop(queue);
        out.wake.notify_one();
    }

    /// True if the queue is over the high-water mark; then the writer will report
    /// [`ConnEvent::Drained`] once it is low again.
    pub fn backlogged(&self) -> bool {
        let out = &self.out;
        if out.queued.load(Ordering::Relaxed) < HIGH_WATER {
            return false;
        }
        out.waiting.store(true, Ordering::Relaxed);
        // The writer may have drained between the two loads: look again.
        if out.queued.load(Ordering::Relaxed) < LOW_WATER {
            out.waiting.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        // A goodbye staged just before the connection is closed still goes out.
        self.flush();
        self.out.queue.lock().unwrap().closed = true;
        self.out.wake.notify_one();
        self.reader.abort();
        #[cfg(unix)]
        if let Some((read, event_loop)) = &self.shared {
            read.close();
            event_loop.poke();
        }
    }
}

/// Dials `addr` from `local` (so the peer sees our node address) and reports the outcome.
pub fn dial(
    runtime: &Runtime,
    conn: ConnId,
    local: IpAddr,
    addr: SocketAddr,
    events: mpsc::UnboundedSender<ConnEvent>,
) -> AbortHandle {
    runtime
        .spawn(async move {
            let attempt = async {
                // Listening on every address (`::`, `0.0.0.0`), the kernel picks the source
                // and the family follows the peer's; else we dial from our own address.
                let family = if local.is_unspecified() {
                    addr.ip()
                } else {
                    local
                };
                let socket = match family {
                    IpAddr::V4(_) => TcpSocket::new_v4()?,
                    IpAddr::V6(_) => TcpSocket::new_v6()?,
                };
                if !local.is_unspecified() {
                    socket.bind(SocketAddr::new(local, 0))?;
                }
                socket.connect(addr).await
            };
            let event = match tokio::time::timeout(DIAL_TIMEOUT, attempt).await {
                Ok(Ok(stream)) => ConnEvent::Connected(conn, stream),
                _ => ConnEvent::DialFailed(conn),
            };
            let _ = events.send(event);
        })
        .abort_handle()
}

/// Idle time after which the kernel checks an idle connection with a TCP keepalive, and
/// the time between its checks. No heartbeat record goes on a connection while liveness
/// probes answer (see `core::detector`), so without these an idle connection could be
/// dropped unnoticed by a NAT or firewall that forgets idle flows (commonly after 4-6
/// minutes), and the next custom event would wait on a dead flow. The kernel sends them
/// (about 100 bytes a minute per idle connection), so they cost this process nothing.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Unanswered checks after which the kernel closes the connection: with
/// [`KEEPALIVE_IDLE`], about 15 minutes, as long as Linux retransmits before giving up on a
/// connection with data in flight (`tcp_retries2`), so that a connection is never given up
/// on sooner for being idle while probes still answer.
pub const KEEPALIVE_RETRIES: u32 = 14;

fn keep_alive(stream: &TcpStream) {
    let keepalive = socket2::TcpKeepalive::new().with_time(KEEPALIVE_IDLE);
    #[cfg(any(target_os = "linux", target_os = "macos", target_os = "windows"))]
    let keepalive = keepalive
        .with_interval(KEEPALIVE_IDLE)
        .with_retries(KEEPALIVE_RETRIES);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive);
}

/// Starts the reader and writer of an open connection. The reader hands what it reads to
/// `received`; told to wait, it reads nothing more until `inbox` resumes, then hands the
/// same bytes over again. It reports the end to `events`. The writer runs in `writers` so
/// that shutdown can wait for queued frames (a goodbye, say) to be flushed.
pub fn spawn_io(
    conn: ConnId,
    stream: TcpStream,
    mut received: impl FnMut(&[u8]) -> Read + Send + 'static,
    inbox: Arc<Inbox>,
    events: mpsc::UnboundedSender<ConnEvent>,
    writers: &mut JoinSet<()>,
) -> ConnHandle {
    let _ = stream.set_nodelay(true);
    keep_alive(&stream);
    let (mut rd, wr) = stream.into_split();
    let out = outgoing(WriteSocket::Tokio(wr));
    let drained = events.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => loop {
                    match received(&buf[..n]) {
                        Read::Taken => break,
                        Read::Wait => inbox.resumed().await,
                        Read::Gone => return,
                    }
                },
            }
        }
        let _ = events.send(ConnEvent::Closed(conn));
    })
    .abort_handle();
    writers.spawn(write_queue(out.clone(), drained));
    ConnHandle {
        out,
        staged: Vec::new(),
        reader,
        #[cfg(unix)]
        shared: None,
    }
}

fn outgoing(socket: WriteSocket) -> Arc<Outgoing> {
    Arc::new(Outgoing {
        socket,
        queue: Mutex::new(Queue::default()),
        wake: Notify::new(),
        queued: AtomicUsize::new(0),
        waiting: AtomicBool::new(false),
    })
}

/// Starts the reading and writing of an open connection that `event_loop` reads too while
/// it is idle (see [`shared_read`]): `pull` reads once and steps the node, under its lock.
/// Otherwise as [`spawn_io`]. Gives the stream back if it cannot (out of descriptors): the
/// caller then uses [`spawn_io`].
#[cfg(unix)]
pub fn spawn_shared_io(
    conn: ConnId,
    stream: TcpStream,
    pull: Box<PullFn>,
    event_loop: &Arc<dyn ReadLoop>,
    inbox: Arc<Inbox>,
    events: mpsc::UnboundedSender<ConnEvent>,
    writers: &mut JoinSet<()>,
) -> Result<ConnHandle, TcpStream> {
    let _ = stream.set_nodelay(true);
    keep_alive(&stream);
    // Three descriptors of one socket: one registered with the runtime for writing only,
    // one it registers for reading when it reads, one the loop watches. Made before the
    // stream is let go, so that a failure leaves it as it was.
    let dup = || -> io::Result<std::net::TcpStream> {
        Ok(socket2::SockRef::from(&stream).try_clone()?.into())
    };
    let made = (|| {
        let (w, r, l) = (dup()?, dup()?, dup()?);
        let writable = tokio::io::Interest::WRITABLE;
        // SAFETY: `w` owns its descriptor, which stays open while the AsyncFd holds it.
        let w = unsafe { tokio::io::unix::AsyncFd::register_with_interest(w, writable)? };
        Ok::<_, io::Error>((w, r, l))
    })();
    let Ok((for_writer, for_runtime, for_loop)) = made else {
        return Err(stream);
    };
    // Deregistered from the runtime (it was registered for reading) and closed.
    drop(stream);
    let drained = events.clone();
    let (read, task) =
        shared_read::start(conn, for_runtime, for_loop, pull, event_loop, inbox, events);
    let reader = tokio::spawn(task).abort_handle();
    let out = outgoing(WriteSocket::Shared(for_writer));
    writers.spawn(write_queue(out.clone(), drained));
    Ok(ConnHandle {
        out,
        staged: Vec::new(),
        reader,
        shared: Some((read, event_loop.clone())),
    })
}

/// The writer task: writes what the socket did not take at once, in order, until the
/// connection is closed and its queue is empty; then shuts the socket down.
async fn write_queue(out: Arc<Outgoing>, drained: mpsc::UnboundedSender<ConnEvent>) {
    let mut bytes = Vec::new();
    loop {
        let wait = {
            let mut queue = out.queue.lock().unwrap();
            if queue.bytes.is_empty() {
                queue.writing = false;
                if queue.closed {
                    break;
                }
                true
            } else {
                std::mem::swap(&mut queue.bytes, &mut bytes);
                queue.writing = true;
                false
            }
        };
        if wait {
            // A wake-up given before this wait is kept, so none is missed.
            out.wake.notified().await;
            continue;
        }
        let mut at = 0;
        while at < bytes.len() {
            match out.socket.write_some(&bytes[at..]).await {
                Ok(n) => at += n,
                Err(_) => return,
            }
        }
        let now_queued = out.queued.fetch_sub(bytes.len(), Ordering::Relaxed) - bytes.len();
        if now_queued < LOW_WATER && out.waiting.swap(false, Ordering::Relaxed) {
            let _ = drained.send(ConnEvent::Drained);
        }
        bytes.clear();
    }
    // Dropping the write half shuts the write side down: the peer reads a clean end.
    drop(out);
}
