//! The driver on real sockets, loopback only: two nodes find each other by multicast on
//! 127.0.0.1, handshake over TCP and leave.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::mpsc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};

use super::{ErrorCode, Handle, MulticastConfig, MulticastInterface, NodeConfig, Notification};
use crate::core::cluster::Event;
use crate::core::config::Config;
use crate::core::crypto::Identity;
use crate::core::node::{NodeId, NodeInfo};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn config(cluster: &str, group_port: u16, port: u16) -> NodeConfig {
    let identity = Identity::generate(&mut OsRng);
    NodeConfig {
        me: NodeInfo {
            id: identity.id(),
            host_name: "test".into(),
            ip: IpAddr::V4(LOOPBACK),
            port,
            advertised: None,
            metadata: "{}".into(),
            master_eligible: true,
        },
        core: Config::lan(cluster),
        multicast: Some(MulticastConfig {
            group: Ipv4Addr::new(239, 255, 27, 27).into(),
            port: group_port,
            interface: MulticastInterface::V4(LOOPBACK),
            ttl: 1,
        }),
        seeds: Vec::new(),
        seeds_resolve_interval: super::DEFAULT_SEEDS_RESOLVE_INTERVAL,
        filter_timeout: Duration::from_secs(5),
        max_receive_buffer: crate::driver::DEFAULT_MAX_RECEIVE_BUFFER,
        key_material: None,
        identity,
    }
}

pub(super) fn start(config: NodeConfig) -> (Handle, mpsc::Receiver<Notification>) {
    let (tx, rx) = mpsc::channel();
    let node = Handle::new(config, tx);
    node.start();
    (node, rx)
}

fn next(rx: &mpsc::Receiver<Notification>) -> Notification {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("no notification within 10 s")
}

/// The first notification matching `pred`, skipping others (election news, say).
pub(super) fn wait_for(
    rx: &mpsc::Receiver<Notification>,
    pred: impl Fn(&Notification) -> bool,
) -> Notification {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let n = rx
            .recv_timeout(left)
            .expect("no matching notification within 10 s");
        if pred(&n) {
            return n;
        }
    }
}

fn random_port() -> u16 {
    20_000 + (OsRng.next_u32() % 30_000) as u16
}

/// IPv6 end to end on loopback: A listens on `::` (dual stack) and advertises `[::1]:9`; B,
/// on `::1`, seeds it by `[::1]:port` and C, on `127.0.0.1`, by `127.0.0.1:port`. A sees B at
/// `::1` and C at `127.0.0.1` (not `::ffff:127.0.0.1`); B reports A's advertised address.
#[test]
fn dual_stack_node_takes_ipv6_and_ipv4_seeds_and_its_advertised_address_travels() {
    let cluster = format!("driver-v6-{}", OsRng.next_u64());
    let node = |ip: &str, seeds: Vec<String>| {
        let mut cfg = config(&cluster, 0, 0);
        cfg.multicast = None;
        cfg.me.ip = ip.parse().unwrap();
        cfg.seeds = seeds;
        cfg
    };
    let mut a_cfg = node("::", Vec::new());
    a_cfg.me.advertised = Some("[::1]:9".parse().unwrap());
    let a_id = a_cfg.me.id;
    let (a, a_rx) = start(a_cfg);
    let Notification::Listening { port } = next(&a_rx) else {
        panic!("A did not listen")
    };
    let b_cfg = node("::1", vec![format!("[::1]:{port}")]);
    let c_cfg = node("127.0.0.1", vec![format!("127.0.0.1:{port}")]);
    let (b_id, c_id) = (b_cfg.me.id, c_cfg.me.id);
    let (b, b_rx) = start(b_cfg);
    let (c, _c_rx) = start(c_cfg);
    let added = |rx: &mpsc::Receiver<Notification>, id| match wait_for(
        rx,
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(n)) if n.id == id),
    ) {
        Notification::Cluster(Event::NodeAdded(n)) => n,
        _ => unreachable!(),
    };
    // A adds B and C in whichever order they come.
    let (mut a_saw_b, mut a_saw_c) = (None, None);
    while a_saw_b.is_none() || a_saw_c.is_none() {
        match next(&a_rx) {
            Notification::Cluster(Event::NodeAdded(n)) if n.id == b_id => a_saw_b = Some(n),
            Notification::Cluster(Event::NodeAdded(n)) if n.id == c_id => a_saw_c = Some(n),
            _ => {}
        }
    }
    let (a_saw_b, a_saw_c) = (a_saw_b.unwrap(), a_saw_c.unwrap());
    assert_eq!(a_saw_b.ip, "::1".parse::<IpAddr>().unwrap());
    assert_eq!(a_saw_c.ip, IpAddr::V4(LOOPBACK));
    let b_saw_a = added(&b_rx, a_id);
    assert_eq!(b_saw_a.ip, "::1".parse::<IpAddr>().unwrap());
    assert_eq!(b_saw_a.advertised, Some("[::1]:9".parse().unwrap()));
    for handle in [c, b, a] {
        super::runtime::get().block_on(handle.exit());
    }
}

#[test]
fn two_nodes_find_each_other_and_leave() {
    let cluster = format!("driver-{}", OsRng.next_u64());
    let group_port = random_port();
    let a_cfg = config(&cluster, group_port, 0);
    let b_cfg = config(&cluster, group_port, 0);
    let (a_id, b_id) = (a_cfg.me.id, b_cfg.me.id);
    let (a, a_rx) = start(a_cfg);
    let (b, b_rx) = start(b_cfg);
    assert!(matches!(next(&a_rx), Notification::Listening { port } if port != 0));
    assert!(matches!(next(&b_rx), Notification::Listening { .. }));
    for (rx, peer) in [(&a_rx, b_id), (&b_rx, a_id)] {
        assert!(matches!(next(rx), Notification::Cluster(Event::NodeAccepted(n)) if n.id == peer));
        assert!(
            matches!(next(rx), Notification::Cluster(Event::NodeAdded(n)) if n.id == peer && n.ip == IpAddr::V4(LOOPBACK))
        );
    }
    super::runtime::get().block_on(a.exit());
    wait_for(
        &b_rx,
        |n| matches!(n, Notification::Cluster(Event::NodeRemoved(n)) if n.id == a_id),
    );
    super::runtime::get().block_on(b.exit());
    // Once stopped, each node drops its sink: the channel disconnects.
    for rx in [a_rx, b_rx] {
        while rx.try_recv().is_ok() {}
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap_err(),
            mpsc::RecvTimeoutError::Disconnected
        );
    }
}

#[test]
fn a_port_in_use_is_reported_not_a_panic() {
    let taken = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_node, rx) = start(config("driver-bind", random_port(), port));
    match next(&rx) {
        Notification::Error { code, message } => {
            assert_eq!(code, ErrorCode::Bind);
            assert!(message.contains("network.port"), "{message}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
}

/// One message of custom event "e" to `to`.
pub(super) fn one(to: NodeId, payload: &[u8]) -> super::SendBatch<'static> {
    let mut batch = super::SendBatch::default();
    batch.add("e", true, payload, Ok(Some(vec![to])));
    batch
}

type Started = (Handle, mpsc::Receiver<Notification>);

/// Two nodes of a fresh cluster, the second joined to custom event "e", once a message of it
/// from the first has arrived (so the first knows the subscription), and the second's id.
fn sender_and_subscriber() -> (Started, Started, NodeId) {
    let cluster = format!("driver-{}", OsRng.next_u64());
    let group_port = random_port();
    let (a_cfg, b_cfg) = (
        config(&cluster, group_port, 0),
        config(&cluster, group_port, 0),
    );
    let b_id = b_cfg.me.id;
    let (a, a_rx) = start(a_cfg);
    let (b, b_rx) = start(b_cfg);
    b.subscribe("e".into()).unwrap();
    wait_for(
        &a_rx,
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(n)) if n.id == b_id),
    );
    until_delivered(&a, &b_rx, b_id);
    ((a, a_rx), (b, b_rx), b_id)
}

/// `a` sends "hi" to `b_id` until b's application has one. A member is handed a message when
/// the call returns, but b's subscription may reach a just after b is added, and a member
/// that has not joined gets none.
pub(super) fn until_delivered(a: &Handle, b_rx: &mpsc::Receiver<Notification>, b_id: NodeId) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(a.send(&one(b_id, b"hi"), 0), super::Sent::Now(vec![Ok(())]));
        let got = b_rx.recv_timeout(Duration::from_millis(50));
        if let Ok(Notification::Cluster(Event::Delivery { payload, .. })) = got {
            assert_eq!(payload, b"hi");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b never got a message"
        );
    }
}

#[test]
fn sends_are_answered_when_made_and_refused_after_exit() {
    use super::Sent;
    use crate::core::error::SendError;

    let ((a, _a_rx), (b, b_rx), b_id) = sender_and_subscriber();
    // Not a member: refused in the answer, and nothing else in the batch is held up.
    let stranger = NodeId([9; 16]);
    let mut batch = one(stranger, b"x");
    batch.add("e", true, b"y", Ok(Some(vec![b_id])));
    assert_eq!(
        a.send(&batch, 2),
        Sent::Now(vec![
            Err(SendError::UnknownTarget(stranger.to_string())),
            Ok(())
        ])
    );
    wait_for(
        &b_rx,
        |n| matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"y"),
    );
    let exiting = a.exit();
    assert_eq!(
        a.send(&one(b_id, b"gone"), 3),
        Sent::Now(vec![Err(SendError::NotRunning)]),
        "refused from the moment exit() is called"
    );
    super::runtime::get().block_on(exiting);
    assert_eq!(
        a.send(&one(b_id, b"gone"), 4),
        Sent::Now(vec![Err(SendError::NotRunning)])
    );
    super::runtime::get().block_on(b.exit());
}

#[test]
fn a_send_to_a_backlogged_connection_is_answered_once_it_drains() {
    use super::{SendBatch, Sent};

    let ((a, a_rx), (b, _b_rx), b_id) = sender_and_subscriber();
    // The runtime's one worker is held while a sends, so neither b's reader nor a's writer
    // can run: the kernel's buffers fill, then a's queue passes the high-water mark, on
    // any scheduling of threads. Released (also on a panic) before waiting for the answer.
    let held = HeldRuntime::hold();
    let mut big = SendBatch::default();
    big.add("e", true, &vec![7u8; 1 << 20], Ok(Some(vec![b_id])));
    let mut later = None;
    for id in 1..=64 {
        match a.send(&big, id) {
            Sent::Now(results) => assert_eq!(results, vec![Ok(())]),
            Sent::Later => {
                later = Some(id);
                break;
            }
        }
    }
    drop(held);
    let id = later.expect("64 MiB queued without the connection ever being backlogged");
    let sent = wait_for(&a_rx, |n| matches!(n, Notification::Sent { .. }));
    assert_eq!(
        sent,
        Notification::Sent {
            id,
            results: vec![Ok(())]
        }
    );
    super::runtime::get().block_on(a.exit());
    super::runtime::get().block_on(b.exit());
}

/// Keeps the shared runtime's only worker busy until dropped, so no socket task runs.
struct HeldRuntime(mpsc::Sender<()>);

impl HeldRuntime {
    fn hold() -> Self {
        let (release, released) = mpsc::channel::<()>();
        let (holding, held) = mpsc::channel();
        super::runtime::get().spawn(async move {
            let _ = holding.send(());
            // Blocking on purpose: this is what keeps the worker from polling anything else.
            let _ = released.recv_timeout(Duration::from_secs(10));
        });
        held.recv_timeout(Duration::from_secs(10))
            .expect("the runtime's worker never picked up the holding task");
        HeldRuntime(release)
    }
}

impl Drop for HeldRuntime {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// A node that finds peers only through `seeds` (no multicast).
pub(super) fn manual(cluster: &str, port: u16, seeds: Vec<String>) -> NodeConfig {
    NodeConfig {
        multicast: None,
        seeds,
        ..config(cluster, 0, port)
    }
}

/// A port nobody listens on right now.
pub(super) fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    probe.local_addr().unwrap().port()
}

/// The port in the node's first notification, which must be `Listening`.
pub(super) fn listening(rx: &mpsc::Receiver<Notification>) -> u16 {
    match next(rx) {
        Notification::Listening { port } => port,
        other => panic!("expected listening first, got {other:?}"),
    }
}

/// Runs `f` on the shared runtime, giving up after 10 s.
fn bounded<F: std::future::Future>(f: F) -> F::Output {
    super::runtime::get()
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), f).await })
        .expect("not done within 10 s")
}

#[test]
fn requests_made_before_start_are_applied_in_order_once_running() {
    use super::Sent;
    use crate::core::error::SendError;

    let cluster = format!("driver-{}", OsRng.next_u64());
    let group_port = random_port();
    let (a, a_rx) = start(config(&cluster, group_port, 0));
    let b_cfg = config(&cluster, group_port, 0);
    let b_id = b_cfg.me.id;
    let (tx, b_rx) = mpsc::channel();
    let b = Handle::new(b_cfg, tx);
    b.subscribe("gone".into()).unwrap();
    b.subscribe("e".into()).unwrap();
    b.unsubscribe("gone".into());
    b.set_metadata(r#"{"early":1}"#.into());
    b.set_metadata(r#"{"early":2}"#.into());
    b.promote();
    // Not running: a message to every member goes to nobody, one to a named node has an
    // unknown target.
    let mut batch = one(b_id, b"x");
    batch.add("e", true, b"y", Ok(None));
    assert_eq!(
        b.send(&batch, 0),
        Sent::Now(vec![
            Err(SendError::UnknownTarget(b_id.to_string())),
            Ok(())
        ])
    );
    assert_eq!(b.stats(), Default::default());
    b.start();
    b.start(); // once only
    assert_ne!(listening(&b_rx), 0);
    // Promoted in the step that started it, before any peer could be heard.
    wait_for(&b_rx, |n| {
        matches!(n, Notification::Cluster(Event::Promotion { .. }))
    });
    // The last metadata asked for is the one it started with.
    wait_for(&a_rx, |n| {
        matches!(n, Notification::Cluster(Event::NodeAdded(n))
            if n.id == b_id && n.metadata == r#"{"early":2}"#)
    });
    // It joined "e" (a member that has not joined gets none of its messages).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(a.send(&one(b_id, b"hi"), 0), Sent::Now(vec![Ok(())]));
        let got = b_rx.recv_timeout(Duration::from_millis(50));
        if let Ok(Notification::Cluster(Event::Delivery { name, .. })) = got {
            assert_eq!(name, "e");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b never got a message"
        );
    }
    bounded(a.exit());
    bounded(b.exit());
}

#[test]
fn exit_before_start_never_binds() {
    use super::Sent;
    use crate::core::error::SendError;

    let port = free_port();
    let (tx, rx) = mpsc::channel();
    let node = Handle::new(manual("driver-idle", port, Vec::new()), tx);
    node.subscribe("e".into()).unwrap();
    bounded(node.exit());
    node.start(); // after exit(): does nothing
    assert_eq!(
        node.send(&one(NodeId([1; 16]), b"x"), 0),
        Sent::Now(vec![Err(SendError::NotRunning)])
    );
    // The sink was dropped without a word: no `listening`, no error.
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)).unwrap_err(),
        mpsc::RecvTimeoutError::Disconnected
    );
    std::net::TcpListener::bind((LOOPBACK, port)).expect("the port was bound after all");
    assert_eq!(node.stats(), Default::default());
    bounded(node.exit()); // again: already done
}

#[test]
fn a_send_right_after_start_and_exit_is_refused() {
    use super::Sent;
    use crate::core::error::SendError;

    let (tx, rx) = mpsc::channel();
    let node = Handle::new(manual("driver-quick", 0, Vec::new()), tx);
    node.start();
    // Starting or running, whichever it is by now: refused from the moment exit() is called.
    let exiting = node.exit();
    let mut batch = one(NodeId([1; 16]), b"x");
    batch.add("e", true, b"y", Ok(None));
    assert_eq!(
        node.send(&batch, 0),
        Sent::Now(vec![Err(SendError::NotRunning); 2])
    );
    bounded(exiting);
    while rx.try_recv().is_ok() {}
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)).unwrap_err(),
        mpsc::RecvTimeoutError::Disconnected,
        "the node stopped"
    );
}

#[test]
fn the_join_limit_is_the_same_before_start_and_while_running() {
    use crate::core::error::SubscribeError;
    use crate::core::message::MAX_JOINED;

    let too_many = Err(SubscribeError::TooMany { max: MAX_JOINED });
    let (tx, rx) = mpsc::channel();
    let node = Handle::new(manual("driver-limit", 0, Vec::new()), tx);
    for i in 0..MAX_JOINED {
        node.subscribe(format!("e{i}")).unwrap();
    }
    assert_eq!(node.subscribe("more".into()), too_many, "idle");
    assert_eq!(
        node.subscribe("e0".into()),
        Ok(()),
        "joined already: no new one"
    );
    node.unsubscribe("e1".into());
    assert_eq!(node.subscribe("more".into()), Ok(()));
    assert_eq!(node.subscribe("more2".into()), too_many, "idle");
    node.start();
    listening(&rx);
    // What was joined before start is what the core holds now.
    assert_eq!(node.subscribe("more2".into()), too_many, "running");
    node.unsubscribe("e2".into());
    assert_eq!(node.subscribe("more2".into()), Ok(()));
    assert_eq!(node.subscribe("more3".into()), too_many, "running");
    bounded(node.exit());
}

/// No call of the application brings a timer forward in today's core, but a connection's
/// reader steps through the same door: the step that completes a handshake makes a member
/// whose first probe round is due long before anything the node task sleeps on (30 s). Unless
/// that step wakes the node task, the node sends no probe.
#[test]
fn a_step_off_the_node_task_that_brings_a_timer_forward_wakes_it() {
    use crate::core::detector::DetectorConfig;

    let cluster = format!("driver-{}", OsRng.next_u64());
    let quiet = |seeds| {
        let mut c = manual(&cluster, 0, seeds);
        c.core.beacon_burst = vec![Duration::ZERO];
        c.core.beacon_interval = Duration::from_secs(60);
        c.core.discovery.probe_interval = Duration::from_secs(60);
        c.core.election.timeout = Duration::from_secs(60);
        c.core.handshake_timeout = Duration::from_secs(30);
        c.core.admission_timeout = Duration::from_secs(30);
        c.core.dial_timeout = Duration::from_secs(30);
        c.core.detector = DetectorConfig {
            interval: Duration::from_millis(100),
            misses: 3,
            grace: Duration::from_millis(200),
            ..c.core.detector
        };
        c
    };
    let a_cfg = quiet(Vec::new());
    let a_id = a_cfg.me.id;
    let (a, a_rx) = start(a_cfg);
    let a_port = listening(&a_rx);
    let b_cfg = quiet(vec![format!("127.0.0.1:{a_port}")]);
    let b_id = b_cfg.me.id;
    let (b, b_rx) = start(b_cfg);
    for (rx, peer) in [(&a_rx, b_id), (&b_rx, a_id)] {
        wait_for(
            rx,
            |n| matches!(n, Notification::Cluster(Event::NodeAdded(n)) if n.id == peer),
        );
    }
    // Probes every 100 ms reach b (a's counters are not read: taking a's lock is a step
    // too, and would wake a's node task in the reader's place).
    let heard = || {
        let s = b.stats();
        s.bytes_in + s.probes_received
    };
    std::thread::sleep(Duration::from_millis(300));
    let heard_before = heard();
    std::thread::sleep(Duration::from_millis(700));
    assert!(heard() > heard_before, "a sent no heartbeat within 700 ms");
    for rx in [&a_rx, &b_rx] {
        while let Ok(n) = rx.try_recv() {
            assert!(
                !matches!(n, Notification::Cluster(Event::NodeRemoved(_))),
                "a member was declared dead"
            );
        }
    }
    bounded(a.exit());
    bounded(b.exit());
}

#[test]
fn goodbyes_are_flushed_on_exit_and_the_final_counters_kept() {
    let ((a, _a_rx), (b, b_rx), _b_id) = sender_and_subscriber();
    let before = a.stats();
    assert!(before.messages_out >= 1);
    // Once nothing more is on its way to b (the election, the last of the test messages),
    // what b reads next is a's goodbye.
    let quiet = std::time::Instant::now() + Duration::from_secs(5);
    let mut read_before = b.stats().bytes_in;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let read = b.stats().bytes_in;
        if read == read_before || std::time::Instant::now() > quiet {
            break;
        }
        read_before = read;
    }
    bounded(a.exit());
    // Removed on a's goodbye (a is the only member b has), well before b's failure
    // detector would (16 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match b_rx.recv_timeout(left) {
            Ok(Notification::Cluster(Event::NodeRemoved(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("b did not remove a within 2 s of its exit: {e:?}"),
        }
    }
    assert!(
        b.stats().bytes_in > read_before,
        "the goodbye never reached b"
    );
    let after = a.stats();
    assert_eq!(after.messages_out, before.messages_out);
    assert!(after.bytes_out > before.bytes_out, "the goodbye is counted");
    assert_eq!(a.stats(), after, "stopped: the counters stay");
    bounded(b.exit());
}

/// A sink that, while told to hold, keeps the receipts of what it was handed: an
/// application whose event loop is blocked (the notifications still reach the channel, so
/// the test sees what was delivered).
#[derive(Clone)]
struct Holding {
    tx: mpsc::Sender<Notification>,
    held: std::sync::Arc<std::sync::Mutex<Option<Vec<super::Receipt>>>>,
}

impl super::EventSink for Holding {
    fn deliver(&self, batch: Vec<Notification>, receipt: super::Receipt) {
        for n in batch {
            let _ = self.tx.send(n);
        }
        if let Some(held) = self.held.lock().unwrap().as_mut() {
            held.push(receipt);
        }
    }
}

impl Holding {
    fn hold(&self) {
        *self.held.lock().unwrap() = Some(Vec::new());
    }

    /// The weight held so far.
    fn weight(&self) -> usize {
        let held = self.held.lock().unwrap();
        held.iter().flatten().map(|r| r.weight()).sum()
    }

    /// Lets go of every receipt: the application has caught up.
    fn release(&self) {
        self.held.lock().unwrap().take();
    }
}

#[test]
fn a_receiver_that_is_behind_stops_reading_and_loses_nothing_nor_anyone() {
    use super::{SendBatch, Sent};

    const BOUND: usize = 256 * 1024;
    const SIZE: usize = 16 * 1024;
    let cluster = format!("driver-{}", OsRng.next_u64());
    let b_port = free_port();
    let quick = |mut c: NodeConfig| {
        // Dead after 1.3 s of silence: far shorter than the hold below.
        c.core.detector.interval = Duration::from_millis(100);
        c
    };
    let mut b_cfg = quick(manual(&cluster, b_port, Vec::new()));
    b_cfg.max_receive_buffer = BOUND;
    let a_cfg = quick(manual(&cluster, 0, vec![format!("127.0.0.1:{b_port}")]));
    let (a_id, b_id) = (a_cfg.me.id, b_cfg.me.id);
    let (b_tx, b_rx) = mpsc::channel();
    let sink = Holding {
        tx: b_tx,
        held: Default::default(),
    };
    let b = Handle::new(b_cfg, sink.clone());
    b.start();
    listening(&b_rx);
    b.subscribe("e".into()).unwrap();
    let (a, a_rx) = start(a_cfg);
    wait_for(
        &a_rx,
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(n)) if n.id == b_id),
    );
    until_delivered(&a, &b_rx, b_id);
    while b_rx.try_recv().is_ok() {}

    // b's application stops taking anything; a sends numbered messages until its send waits.
    sink.hold();
    let mut sent = 0u32;
    let mut later = None;
    for id in 1..=8192u64 {
        let mut payload = vec![0u8; SIZE];
        payload[..4].copy_from_slice(&sent.to_be_bytes());
        let mut batch = SendBatch::default();
        batch.add("e", true, &payload, Ok(Some(vec![b_id])));
        let answer = a.send(&batch, id);
        sent += 1;
        if answer == Sent::Later {
            later = Some(id);
            break;
        }
        assert_eq!(answer, Sent::Now(vec![Ok(())]));
    }
    let later = later.expect("128 MiB sent to a receiver that takes nothing, never waiting");
    // Longer than the detector's bound: neither node may take the other for dead.
    std::thread::sleep(Duration::from_millis(2500));
    let held = sink.weight();
    // One step past the bound at most: a read (64 KiB) and the message it completes.
    let most = BOUND + 64 * 1024 + SIZE + super::inbox::PER_NOTIFICATION + 1;
    assert!(
        held <= most,
        "{held} bytes waiting for the application, over {most}"
    );
    assert!(held >= BOUND, "the bound was reached ({held})");
    let answered = a_rx
        .try_iter()
        .any(|n| matches!(n, Notification::Sent { id, .. } if id == later));
    assert!(!answered, "a's send was answered while b took nothing");

    sink.release();
    wait_for(
        &a_rx,
        |n| matches!(n, Notification::Sent { id, .. } if *id == later),
    );
    let mut next_seq = 0u32;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while next_seq < sent {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let n = b_rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("only {next_seq} of {sent} messages arrived"));
        // (A late "hi" from the subscription check above is skipped.)
        if let Notification::Cluster(Event::Delivery { payload, .. }) = &n {
            if payload.len() != SIZE {
                continue;
            }
            let seq = u32::from_be_bytes(payload[..4].try_into().unwrap());
            assert_eq!(seq, next_seq, "every message once, in order");
            next_seq += 1;
        } else {
            seen.push(n);
        }
    }
    // Reading again; a little longer for a late verdict of either detector.
    std::thread::sleep(Duration::from_millis(1500));
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
}

/// A keyed node's beacon, captured off the multicast group and sent again (the same bytes,
/// later) from the same address, and from another address: the node it reached the first
/// time refuses both, counts them in `beacons_refused`, and nothing changes in its cluster.
#[test]
fn a_replayed_or_relayed_keyed_beacon_is_refused_and_counted() {
    use crate::core::beacon;
    use crate::core::crypto::ClusterKey;
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{SocketAddrV4, UdpSocket};

    let cluster = format!("driver-{}", OsRng.next_u64());
    let group_port = random_port();
    let group = Ipv4Addr::new(239, 255, 27, 27);
    let material = b"a keyed cluster for the replay test";
    let keyed = || {
        let mut c = config(&cluster, group_port, 0);
        c.key_material = Some(super::KeyMaterial::new(material.to_vec()));
        c
    };
    let capture = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    capture.set_reuse_address(true).unwrap();
    capture.set_reuse_port(true).unwrap();
    capture
        .bind(&SocketAddrV4::new(group, group_port).into())
        .unwrap();
    capture.join_multicast_v4(&group, &LOOPBACK).unwrap();
    let capture: UdpSocket = capture.into();
    capture
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let (victim, victim_rx) = start(keyed());
    listening(&victim_rx);
    let sender_cfg = keyed();
    let sender_id = sender_cfg.me.id;
    let (sender, sender_rx) = start(sender_cfg);
    listening(&sender_rx);
    // The sender's first beacon, as the victim heard it.
    let key = ClusterKey::new(material, &cluster);
    let mut buf = [0u8; 1500];
    let captured = loop {
        let (n, _) = capture.recv_from(&mut buf).expect("no beacon within 10 s");
        if beacon::decode(&buf[..n], &cluster, Some(&key)).is_some_and(|b| b.id == sender_id) {
            break buf[..n].to_vec();
        }
    };
    wait_for(
        &victim_rx,
        |n| matches!(n, Notification::Cluster(Event::NodeAdded(n)) if n.id == sender_id),
    );
    let refused_before = victim.stats().beacons_refused;

    let to = SocketAddrV4::new(group, group_port);
    let replayer = UdpSocket::bind((LOOPBACK, 0)).unwrap();
    replayer.set_multicast_loop_v4(true).unwrap();
    replayer.send_to(&captured, to).unwrap();
    let relayer = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    relayer
        .bind(&SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 0).into())
        .unwrap();
    relayer.set_multicast_if_v4(&LOOPBACK).unwrap();
    relayer.set_multicast_loop_v4(true).unwrap();
    relayer.send_to(&captured, &to.into()).unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while victim.stats().beacons_refused < refused_before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replayed and relayed beacons were not refused: {:?}",
            victim.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(victim.stats().beacons_refused, refused_before + 2);
    while let Ok(n) = victim_rx.try_recv() {
        assert!(
            !matches!(
                n,
                Notification::Cluster(Event::NodeAdded(_) | Event::NodeRemoved(_))
            ),
            "membership changed: {n:?}"
        );
    }
    bounded(sender.exit());
    bounded(victim.exit());
}
