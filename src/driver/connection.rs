//! Per-connection I/O tasks: a reader that forwards bytes to the node task, and a writer
//! that drains a queue of frames. The node task alone decides what they carry.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use crate::core::cluster::ConnId;

/// A safety net only: the core gives up on a dial sooner and the task is aborted then.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
const READ_BUF: usize = 64 * 1024;

/// What connection tasks report to the node task.
pub enum ConnEvent {
    Connected(ConnId, TcpStream),
    DialFailed(ConnId),
    Data(ConnId, Vec<u8>),
    Closed(ConnId),
    /// The connection filter's answer about the node on this connection.
    Verdict(ConnId, bool),
}

/// The node task's hold on a live connection. Dropping `frames` lets the writer flush and
/// shut the socket down.
pub struct ConnHandle {
    pub frames: mpsc::UnboundedSender<Vec<u8>>,
    reader: AbortHandle,
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
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
) -> ConnHandle {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (frames, mut queue) = mpsc::unbounded_channel::<Vec<u8>>();
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
    writers.spawn(async move {
        while let Some(bytes) = queue.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    ConnHandle { frames, reader }
}
