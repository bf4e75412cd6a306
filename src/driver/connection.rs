//! Per-connection I/O tasks: a reader that forwards bytes to the node task, and a writer
//! that drains a queue of frames. The node task alone decides what they carry.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::gate::SendGate;
use crate::core::cluster::ConnId;

/// A safety net only: the core gives up on a dial sooner and the task is aborted then.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
const READ_BUF: usize = 64 * 1024;
/// Bytes queued on a connection above which `send()` waits (backpressure)...
pub const HIGH_WATER: usize = 8 * 1024 * 1024;
/// ...until the writer has brought the queue below this.
const LOW_WATER: usize = 2 * 1024 * 1024;
/// Small frames are gathered into writes of up to this many bytes.
const COALESCE: usize = 64 * 1024;

/// What connection tasks report to the node task.
pub enum ConnEvent {
    Connected(ConnId, TcpStream),
    DialFailed(ConnId),
    Data(ConnId, Vec<u8>),
    Closed(ConnId),
    /// The connection filter's answer about the node on this connection.
    Verdict(ConnId, bool),
    /// The write queue fell below the low-water mark after a sender waited on it.
    Drained,
}

/// The node task's hold on a live connection. Dropping `frames` lets the writer flush and
/// shut the socket down.
pub struct ConnHandle {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes handed to the writer and not yet written.
    queued: Arc<AtomicUsize>,
    /// A sender waits for this queue to drain: the writer reports when it has.
    waiting: Arc<AtomicBool>,
    reader: AbortHandle,
    /// Where this connection's queue is counted in the node's outgoing bytes.
    gate: Arc<SendGate>,
    conn: ConnId,
}

impl ConnHandle {
    /// Queues a frame for writing.
    pub fn write(&self, bytes: Vec<u8>) {
        self.queued.fetch_add(bytes.len(), Ordering::Relaxed);
        let _ = self.frames.send(bytes);
    }

    /// True if the queue is over the high-water mark; then the writer will report
    /// [`ConnEvent::Drained`] once it is low again.
    pub fn backlogged(&self) -> bool {
        if self.queued.load(Ordering::Relaxed) < HIGH_WATER {
            return false;
        }
        self.waiting.store(true, Ordering::Relaxed);
        // The writer may have drained between the two loads: look again.
        if self.queued.load(Ordering::Relaxed) < LOW_WATER {
            self.waiting.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.gate.forget_queue(self.conn);
        self.reader.abort();
    }
}

/// Dials `addr` from `local` (so the peer sees our node address) and reports the outcome.
pub fn dial(
    conn: ConnId,
    local: IpAddr,
    addr: SocketAddr,
    events: mpsc::UnboundedSender<ConnEvent>,
) -> AbortHandle {
    tokio::spawn(async move {
        let attempt = async {
            let socket = match local {
                IpAddr::V4(_) => TcpSocket::new_v4()?,
                IpAddr::V6(_) => TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(local, 0))?;
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

/// Starts the reader and writer of an open connection. The writer runs in `writers` so
/// that shutdown can wait for queued frames (a goodbye, say) to be flushed.
pub fn spawn_io(
    conn: ConnId,
    stream: TcpStream,
    events: mpsc::UnboundedSender<ConnEvent>,
    writers: &mut JoinSet<()>,
    gate: Arc<SendGate>,
) -> ConnHandle {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (frames, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
    let queued = Arc::new(AtomicUsize::new(0));
    gate.count_queue(conn, queued.clone());
    let waiting = Arc::new(AtomicBool::new(false));
    let drained = events.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if events
                        .send(ConnEvent::Data(conn, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = events.send(ConnEvent::Closed(conn));
    })
    .abort_handle();
    let (left, wake) = (queued.clone(), waiting.clone());
    writers.spawn(async move {
        // Frames queued together go out in one write: many small messages then cost one
        // system call instead of one each.
        let mut out = Vec::with_capacity(COALESCE);
        while let Some(first) = queue.recv().await {
            let bytes = if first.len() >= COALESCE {
                first
            } else {
                out.clear();
                out.extend_from_slice(&first);
                while out.len() < COALESCE {
                    match queue.try_recv() {
                        Ok(more) => out.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                std::mem::take(&mut out)
            };
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
            let now_queued = left.fetch_sub(bytes.len(), Ordering::Relaxed) - bytes.len();
            if now_queued < LOW_WATER && wake.swap(false, Ordering::Relaxed) {
                let _ = drained.send(ConnEvent::Drained);
            }
            if out.capacity() == 0 {
                out = bytes;
            }
        }
        let _ = wr.shutdown().await;
    });
    ConnHandle {
        frames,
        queued,
        waiting,
        reader,
        gate,
        conn,
    }
}
