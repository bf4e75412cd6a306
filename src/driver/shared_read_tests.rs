//! Shared reading (`shared_read`) with a stand-in for the JavaScript thread's loop: a thread
//! that polls the descriptors it is given and can be made busy, as a listener in a busy
//! loop makes the JavaScript thread.

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};

use super::shared_read::{ReadLoop, SharedRead, Watch};
use super::tests::{free_port, listening, manual, one, start, until_delivered, wait_for};
use super::{Handle, Notification};
use crate::core::cluster::Event;

struct Watched {
    socket: TcpStream,
    read: Arc<SharedRead>,
    active: bool,
}

/// A loop on a thread of its own: polls what it watches, reads what is readable, unless
/// busy. Never closes a descriptor it polls at that moment (it owns them all).
#[derive(Clone, Default)]
struct ThreadLoop {
    watched: Arc<Mutex<Vec<Watched>>>,
    busy: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    /// Callbacks that read, as the JavaScript thread's would.
    reads: Arc<AtomicUsize>,
}

impl ReadLoop for ThreadLoop {
    fn watch(&self, socket: TcpStream, read: Arc<SharedRead>) -> bool {
        read.watching();
        self.watched.lock().unwrap().push(Watched {
            socket,
            read,
            active: true,
        });
        true
    }

    // The thread looks at every watch at each turn anyway.
    fn poke(&self) {}
}

impl ThreadLoop {
    fn spawn(&self) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::spawn(move || {
            while !me.done.load(Ordering::SeqCst) {
                if me.busy.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                // A turn of the loop: drop ended watches, restart stopped ones, poll.
                let mut fds = Vec::new();
                {
                    let mut watched = me.watched.lock().unwrap();
                    watched.retain(|w| !w.read.is_closed());
                    for w in watched.iter_mut() {
                        if !w.active && w.read.wants_watch() {
                            w.read.watching();
                            w.active = true;
                        }
                        if w.active {
                            fds.push(libc::pollfd {
                                fd: w.socket.as_raw_fd(),
                                events: libc::POLLIN,
                                revents: 0,
                            });
                        }
                    }
                }
                // SAFETY: `fds` is a valid array of its length; the descriptors stay open
                // (only this thread closes them, above).
                let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, 2) };
                if n <= 0 {
                    continue;
                }
                let ready: Vec<_> = fds
                    .iter()
                    .filter(|p| p.revents != 0)
                    .map(|p| p.fd)
                    .collect();
                let calls: Vec<_> = {
                    let watched = me.watched.lock().unwrap();
                    watched
                        .iter()
                        .filter(|w| ready.contains(&w.socket.as_raw_fd()))
                        .map(|w| (w.read.clone(), w.socket.try_clone().unwrap()))
                        .collect()
                };
                // Off the loop's lock: the read takes the node's, under which the node may
                // ask for a watch.
                for (read, socket) in calls {
                    let next = read.on_readable(&socket);
                    me.reads.fetch_add(1, Ordering::SeqCst);
                    let mut watched = me.watched.lock().unwrap();
                    if let Some(w) = watched.iter_mut().find(|w| Arc::ptr_eq(&w.read, &read)) {
                        match next {
                            Watch::Keep => {}
                            Watch::Stop => w.active = false,
                            // Closed by then: dropped at the next turn.
                            Watch::Close => w.active = false,
                        }
                    }
                }
            }
            me.watched.lock().unwrap().clear();
        })
    }
}

/// Numbered messages from `a` to `b_id`, one every `gap`, each checked to arrive in order
/// at `b_rx` within `within` of being sent.
fn exchange(
    a: &Handle,
    b_rx: &mpsc::Receiver<Notification>,
    b_id: crate::core::node::NodeId,
    from: u32,
    count: u32,
    gap: Duration,
) -> Vec<Notification> {
    let mut others = Vec::new();
    for seq in from..from + count {
        let payload = seq.to_be_bytes();
        assert_eq!(
            a.send(&one(b_id, &payload), u64::from(seq)),
            super::Sent::Now(vec![Ok(())])
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = b_rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("message {seq} did not arrive within 2 s"));
            match &n {
                Notification::Cluster(Event::Delivery { payload, .. }) if payload.len() == 4 => {
                    let got = u32::from_be_bytes(payload[..].try_into().unwrap());
                    assert_eq!(got, seq, "every message once, in order");
                    break;
                }
                Notification::Cluster(Event::Delivery { .. }) => {}
                _ => others.push(n),
            }
        }
        std::thread::sleep(gap);
    }
    others
}

#[test]
fn the_loop_reads_while_idle_and_the_runtime_while_it_is_busy() {
    let cluster = format!("driver-shared-{}", OsRng.next_u64());
    let b_port = free_port();
    let quick = |mut c: super::NodeConfig| {
        // Dead after 1.3 s of silence: far shorter than the 3 s the loop is busy below.
        c.core.detector.interval = Duration::from_millis(100);
        c
    };
    let b_cfg = quick(manual(&cluster, b_port, Vec::new()));
    let a_cfg = quick(manual(&cluster, 0, vec![format!("127.0.0.1:{b_port}")]));
    let (a_id, b_id) = (a_cfg.me.id, b_cfg.me.id);
    let event_loop = ThreadLoop::default();
    let thread = event_loop.spawn();
    let (b_tx, b_rx) = mpsc::channel();
    let b = Handle::with_read_loop(b_cfg, b_tx, Arc::new(event_loop.clone()));
    b.start();
    listening(&b_rx);
    b.subscribe("e".into()).unwrap();
    let (a, a_rx) = start(a_cfg);
    wait_for(
        &a_rx,
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(n)) if n.id == b_id),
    );
    until_delivered(&a, &b_rx, b_id);

    // Idle loop: it reads.
    let before = event_loop.reads.load(Ordering::SeqCst);
    let mut seen = exchange(&a, &b_rx, b_id, 0, 50, Duration::from_millis(2));
    let idle_reads = event_loop.reads.load(Ordering::SeqCst) - before;
    assert!(
        idle_reads >= 25,
        "the idle loop read {idle_reads} times for 50 messages"
    );

    // Busy loop, longer than the detector's bound: the runtime reads, every message
    // arrives meanwhile, and nobody is removed.
    event_loop.busy.store(true, Ordering::SeqCst);
    let busy_from = Instant::now();
    seen.extend(exchange(
        &a,
        &b_rx,
        b_id,
        50,
        300,
        Duration::from_millis(10),
    ));
    assert!(busy_from.elapsed() >= Duration::from_secs(3));
    let during = event_loop.reads.load(Ordering::SeqCst);
    event_loop.busy.store(false, Ordering::SeqCst);

    // Idle again: the loop takes reading back.
    seen.extend(exchange(&a, &b_rx, b_id, 350, 50, Duration::from_millis(2)));
    let after = event_loop.reads.load(Ordering::SeqCst) - during;
    assert!(
        after >= 25,
        "the loop read {after} times for 50 messages once idle again"
    );

    std::thread::sleep(Duration::from_millis(300));
    seen.extend(b_rx.try_iter());
    let a_seen: Vec<_> = a_rx.try_iter().collect();
    for (who, notes, other) in [("b", &seen, a_id), ("a", &a_seen, b_id)] {
        assert!(
            !notes.iter().any(
                |n| matches!(n, Notification::Cluster(Event::NodeRemoved(n)) if n.id == other)
            ),
            "{who} removed the other: {notes:?}"
        );
    }
    super::runtime::get().block_on(a.exit());
    super::runtime::get().block_on(b.exit());
    // Every connection ended: the loop was told to let go of every watch.
    let deadline = Instant::now() + Duration::from_secs(5);
    while event_loop
        .watched
        .lock()
        .unwrap()
        .iter()
        .any(|w| !w.read.is_closed())
    {
        assert!(Instant::now() < deadline, "a watch outlived its connection");
        std::thread::sleep(Duration::from_millis(10));
    }
    event_loop.done.store(true, Ordering::SeqCst);
    thread.join().unwrap();
}
