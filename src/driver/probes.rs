//! The liveness probe socket (UDP, on the TCP listener's address and port number) and when
//! it is read.
//!
//! An idle node is sent a probe by every member each interval, each member on its own
//! phase: read as they arrive, they woke the node's thread once per datagram (10 times a
//! second in a cluster of 5, up to 22 with 10 and more), which was most of what an idle
//! node cost. So while nothing is owed promptly the socket is not watched at all (on
//! Linux): datagrams wait in the kernel's queue and the node task reads them all at its
//! next timer (the probe round, each interval), before the core looks at anyone's silence.
//! The kernel stamps each datagram when it arrives (`SO_TIMESTAMPNS`) and that instant is
//! what the core is told, so the silence rule counts from when a probe came, not from when
//! it was read: what is detected, and when, is what it was. (Linux turns arrival stamps on
//! for the whole system a moment after the first socket asks for them; a datagram that
//! arrived before then, or read right after the wall clock was stepped, is taken as
//! arriving when read: later than it did, never sooner, which can only keep a member
//! longer.)
//!
//! The socket is watched, and read as datagrams arrive, while the core owes answers
//! promptly (it relays for others, or was asked for an answer or a relay lately:
//! [`crate::core::cluster::Cluster::probes_prompt`]) and for [`FLOOD_HOLD`] after a read
//! found [`FLOOD`] datagrams or more waiting, so that a flood empties the kernel's queue as
//! fast as before rather than overflowing it. Elsewhere than Linux (no monotonic-convertible
//! arrival stamps) it is always watched, as before.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Datagrams read in one go at most; more waiting are read on the next wake-up (the socket
/// is watched from then on: see [`FLOOD`]).
pub const MAX_READ: usize = 256;
/// Datagrams found waiting in one read from which the socket is watched for a while: far
/// more than a quiet node receives in an interval (about 9 probes, and a few asks).
pub const FLOOD: usize = 64;
/// How long the socket stays watched after a read found a flood.
pub const FLOOD_HOLD: Duration = Duration::from_secs(10);

/// Binds the probe socket, non-blocking: the sending side, shared with whoever steps the
/// core, and the node task's reading side.
pub fn bind(addr: SocketAddr) -> io::Result<(Arc<UdpSocket>, Reader)> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    let socket = Arc::new(socket);
    let reader = Reader::new(socket.clone())?;
    Ok((socket, reader))
}

#[cfg(target_os = "linux")]
pub use linux::Reader;
#[cfg(not(target_os = "linux"))]
pub use portable::Reader;

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::{SystemTime, UNIX_EPOCH};
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    /// A wall clock that moved against the monotonic one by more than this between two
    /// reads was stepped: the stamps of that read are not trusted.
    const STEP: Duration = Duration::from_millis(5);

    /// The node task's side of the probe socket.
    pub struct Reader {
        socket: Arc<UdpSocket>,
        /// Registered with the runtime while the socket is watched.
        pub(super) watched: Option<AsyncFd<Arc<UdpSocket>>>,
        /// Watched at least until then (a flood was read).
        flood_until: Option<Instant>,
        /// The monotonic instant the wall clock is read against (any fixed one).
        base: Instant,
        /// The wall clock minus the monotonic one at the last read, in ns.
        offset: Option<i128>,
        /// When the last read that emptied the queue started: nothing waiting now arrived
        /// before it.
        emptied_at: Option<Instant>,
    }

    impl Reader {
        pub(super) fn new(socket: Arc<UdpSocket>) -> io::Result<Reader> {
            let on: libc::c_int = 1;
            // SAFETY: a valid socket and an int option of the right size.
            let r = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TIMESTAMPNS,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut reader = Reader {
                socket,
                watched: None,
                flood_until: None,
                base: Instant::now(),
                offset: None,
                emptied_at: None,
            };
            // Watched until the first step says otherwise.
            reader.watch(true)?;
            Ok(reader)
        }

        /// Watches the socket (or stops) as the core asks, or for a flood read lately.
        pub fn set_prompt(&mut self, now: Instant, prompt: bool) {
            let flood = self.flood_until.is_some_and(|t| t > now);
            // Registration cannot fail on a socket that was registered before; should it,
            // the socket stays as it was, and is still read at every timer.
            let _ = self.watch(prompt || flood);
        }

        fn watch(&mut self, on: bool) -> io::Result<()> {
            match (on, self.watched.is_some()) {
                // Readable only: write readiness would wake the runtime each time a sent
                // probe's buffer is freed.
                (true, false) => {
                    let socket = self.socket.clone();
                    // SAFETY: the registration holds its own `Arc` of the socket, so the
                    // descriptor stays open and the same for as long as it is registered.
                    let fd = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) };
                    self.watched = Some(fd?);
                }
                // Dropping the registration takes the socket out of the runtime's epoll.
                (false, true) => self.watched = None,
                _ => {}
            }
            Ok(())
        }

        /// Resolves when datagrams wait, if the socket is watched; never otherwise.
        pub async fn ready(&self) {
            let Some(fd) = &self.watched else {
                return std::future::pending().await;
            };
            match fd.readable().await {
                // Cleared before reading: what arrives after this is a new readiness.
                Ok(mut guard) => guard.clear_ready(),
                Err(_) => std::future::pending().await,
            }
        }

        /// Reads what waits (at most [`MAX_READ`] datagrams) at `now`, handing each to `f`
        /// with its sender and when it arrived; how many there were.
        pub fn read(
            &mut self,
            now: Instant,
            buf: &mut [u8],
            mut f: impl FnMut(Instant, SocketAddr, &[u8]),
        ) -> usize {
            let (mono, wall) = clocks();
            let offset = signed_ns(wall) - (mono - self.base).as_nanos() as i128;
            // A stepped wall clock makes every stamp of this read suspect: they are taken
            // as arriving now, which can only make a member look alive longer.
            let steady = self
                .offset
                .is_some_and(|o| (offset - o).unsigned_abs() <= STEP.as_nanos());
            self.offset = Some(offset);
            let floor = self.emptied_at.filter(|_| steady);
            let mut count = 0;
            let mut emptied = false;
            while count < MAX_READ {
                match recv(&self.socket, buf) {
                    Ok((n, from, stamp)) => {
                        count += 1;
                        let arrived = match (floor, stamp) {
                            (Some(floor), Some(stamp)) => {
                                let age = wall.duration_since(stamp).unwrap_or_default();
                                mono.checked_sub(age).unwrap_or(now).max(floor).min(now)
                            }
                            _ => now,
                        };
                        f(arrived, from, &buf[..n.min(buf.len())]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        emptied = true;
                        break;
                    }
                    // An error of the socket (an ICMP report) is taken off the queue by the
                    // read, and a signal interrupts one read: go on, within the bound.
                    Err(_) => count += 1,
                }
            }
            self.emptied_at = emptied.then_some(now);
            if count >= FLOOD {
                self.flood_until = Some(now + FLOOD_HOLD);
                let _ = self.watch(true);
            }
            count
        }
    }

    /// The monotonic clock and the wall clock at (nearly) one instant: the wall clock read
    /// on both sides of the monotonic one, again (a few times at most) if a preemption came
    /// between.
    fn clocks() -> (Instant, SystemTime) {
        let mut best = None;
        for _ in 0..3 {
            let before = SystemTime::now();
            let mono = Instant::now();
            let after = SystemTime::now();
            let gap = after.duration_since(before).unwrap_or_default();
            let wall = before + gap / 2;
            if gap < Duration::from_micros(20) {
                return (mono, wall);
            }
            if best.is_none_or(|(_, _, g)| gap < g) {
                best = Some((mono, wall, gap));
            }
        }
        best.map(|(m, w, _)| (m, w)).expect("three readings")
    }

    fn signed_ns(t: SystemTime) -> i128 {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        }
    }

    /// One datagram, its sender and the kernel's stamp of its arrival (wall clock).
    fn recv(
        socket: &UdpSocket,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<SystemTime>)> {
        // SAFETY: every pointer handed to recvmsg points into locals that outlive the call,
        // with their true lengths; the control messages are read only within what the kernel
        // says it wrote (CMSG_FIRSTHDR / CMSG_NXTHDR check against msg_controllen).
        unsafe {
            let mut name: libc::sockaddr_storage = std::mem::zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // Room for one timespec stamp and more, aligned for cmsghdr.
            let mut control = [0u64; 16];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            let n = libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let from = sockaddr(&name).ok_or_else(|| io::Error::other("no sender address"))?;
            let mut stamp = None;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts: libc::timespec =
                        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                    if let (Ok(s), Ok(ns)) = (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
                        stamp = Some(UNIX_EPOCH + Duration::new(s, ns));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            Ok((n as usize, from, stamp))
        }
    }

    /// The sender's address, from what recvmsg wrote.
    fn sockaddr(name: &libc::sockaddr_storage) -> Option<SocketAddr> {
        // SAFETY: the family says which of the two layouts the kernel wrote.
        unsafe {
            match i32::from(name.ss_family) {
                libc::AF_INET => {
                    let a = &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>();
                    let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                    Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
                }
                libc::AF_INET6 => {
                    let a = &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>();
                    let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                        ip,
                        u16::from_be(a.sin6_port),
                        a.sin6_flowinfo,
                        a.sin6_scope_id,
                    )))
                }
                _ => None,
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod portable {
    use super::*;

    /// The node task's side of the probe socket: always watched, each datagram taken as
    /// arriving when it is read.
    pub struct Reader {
        socket: tokio::net::UdpSocket,
    }

    impl Reader {
        pub(super) fn new(socket: Arc<UdpSocket>) -> io::Result<Reader> {
            let socket = tokio::net::UdpSocket::from_std(socket.try_clone()?)?;
            Ok(Reader { socket })
        }

        pub fn set_prompt(&mut self, _now: Instant, _prompt: bool) {}

        pub async fn ready(&self) {
            let _ = self.socket.readable().await;
        }

        pub fn read(
            &mut self,
            now: Instant,
            buf: &mut [u8],
            mut f: impl FnMut(Instant, SocketAddr, &[u8]),
        ) -> usize {
            let mut count = 0;
            while count < MAX_READ {
                match self.socket.try_recv_from(buf) {
                    Ok((n, from)) => {
                        count += 1;
                        f(now, from, &buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => count += 1,
                }
            }
            count
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};

    fn pair() -> (Arc<UdpSocket>, Reader, UdpSocket) {
        let (socket, reader) = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        peer.connect(socket.local_addr().unwrap()).unwrap();
        (socket, reader, peer)
    }

    fn read_all(reader: &mut Reader, now: Instant) -> Vec<(Instant, SocketAddr, Vec<u8>)> {
        let mut buf = [0u8; 1500];
        let mut got = Vec::new();
        reader.read(now, &mut buf, |at, from, d| {
            got.push((at, from, d.to_vec()))
        });
        got
    }

    #[tokio::test]
    async fn a_datagram_read_late_is_handed_in_with_the_instant_it_arrived() {
        let (_socket, mut reader, peer) = pair();
        reader.set_prompt(Instant::now(), false);
        // A first read that empties the queue: what comes next arrived after it.
        assert!(read_all(&mut reader, Instant::now()).is_empty());
        // Linux turns arrival stamps on for the whole system a moment after the first
        // socket asks (deferred work): until then a datagram is stamped when read. A few
        // tries, bounded.
        let mut late = Vec::new();
        for _ in 0..10 {
            let sent = Instant::now();
            peer.send(b"probe").unwrap();
            std::thread::sleep(Duration::from_millis(150));
            let now = Instant::now();
            let got = read_all(&mut reader, now);
            assert_eq!(got.len(), 1);
            let (arrived, from, bytes) = &got[0];
            assert_eq!(bytes, b"probe");
            assert_eq!(*from, peer.local_addr().unwrap());
            // Never before it was sent (give or take the reading of two clocks).
            assert!(
                *arrived + Duration::from_millis(1) >= sent,
                "arrived {:?} before it was sent",
                sent.duration_since(*arrived)
            );
            // Stamped by the kernel on arrival, not when read 150 ms later.
            if now.duration_since(*arrived) >= Duration::from_millis(100) {
                return;
            }
            late.push(now.duration_since(*arrived));
        }
        panic!("every datagram taken as arriving when read: {late:?} before the read");
    }

    #[tokio::test]
    async fn without_a_read_that_emptied_the_queue_before_it_a_datagram_arrives_when_read() {
        let (_socket, mut reader, peer) = pair();
        reader.set_prompt(Instant::now(), false);
        peer.send(b"probe").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let now = Instant::now();
        let got = read_all(&mut reader, now);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].0, now,
            "nothing bounds when it came: the latest it could"
        );
    }

    #[tokio::test]
    async fn a_quiet_socket_is_watched_only_when_asked_and_a_flood_is_read_as_it_comes() {
        let (_socket, mut reader, peer) = pair();
        let now = Instant::now();
        reader.set_prompt(now, false);
        assert!(reader.watched.is_none());
        reader.set_prompt(now, true);
        assert!(reader.watched.is_some());
        peer.send(b"probe").unwrap();
        // Watched: the wake-up comes.
        tokio::time::timeout(Duration::from_secs(5), reader.ready())
            .await
            .expect("a watched socket wakes the task");
        assert_eq!(read_all(&mut reader, Instant::now()).len(), 1);
        reader.set_prompt(Instant::now(), false);
        assert!(reader.watched.is_none());
        for _ in 0..FLOOD {
            peer.send(b"junk").unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        assert_eq!(read_all(&mut reader, now).len(), FLOOD);
        reader.set_prompt(now, false);
        assert!(reader.watched.is_some(), "watched after a flood");
        reader.set_prompt(now + FLOOD_HOLD, false);
        assert!(reader.watched.is_none(), "and not after the hold");
    }

    #[tokio::test]
    async fn a_read_takes_at_most_max_read() {
        let (socket, mut reader, peer) = pair();
        // Room in the kernel's queue for all of them.
        socket2::SockRef::from(&*socket)
            .set_recv_buffer_size(1 << 20)
            .unwrap();
        reader.set_prompt(Instant::now(), false);
        for _ in 0..MAX_READ + 10 {
            peer.send(b"junk").unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(read_all(&mut reader, Instant::now()).len(), MAX_READ);
        assert_eq!(read_all(&mut reader, Instant::now()).len(), 10);
    }
}
