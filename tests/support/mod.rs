//! What the attack tests share: a driver node on 127.0.0.1 to attack ([`Target`]) and a
//! peer that speaks the protocol itself ([`Peer`], in `peer.rs`, which
//! the adversary example `adversary.rs` shares). Each test file uses part of it.
#![allow(dead_code)]

pub mod peer;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use espial::core::cluster::{Event, Stats};
use espial::core::config::Config;
use espial::core::crypto::{ClusterKey, Identity};
use espial::core::node::NodeInfo;
use espial::driver::{Handle, NodeConfig, Notification};
use rand_core::OsRng;

pub use peer::{wait_closed, Peer, WAIT};

const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A node on 127.0.0.1 with neither multicast nor seeds: only the attacker talks to it.
pub struct Target {
    pub handle: Handle,
    rx: mpsc::Receiver<Notification>,
    pub addr: SocketAddr,
    pub cluster: String,
    /// The cluster key, if the node was started with one.
    pub key: Option<ClusterKey>,
    /// Every notification seen so far.
    pub seen: Vec<Notification>,
}

impl Target {
    pub fn start(events: &[&str]) -> Target {
        Target::start_with(events, |_| {})
    }

    /// [`Target::start`] with its core configuration changed by `tune` first.
    pub fn start_with(events: &[&str], tune: impl FnOnce(&mut Config)) -> Target {
        let cluster = format!("hostile-{}", std::process::id());
        let mut core = Config::lan(cluster.clone());
        tune(&mut core);
        let key = core.cluster_key.clone();
        let identity = Identity::generate(&mut OsRng);
        let config = NodeConfig {
            me: NodeInfo {
                id: identity.id(),
                host_name: "target".into(),
                ip: IpAddr::V4(LOOPBACK),
                port: 0,
                advertised: None,
                metadata: "{}".into(),
                master_eligible: true,
            },
            core,
            multicast: None,
            seeds: Vec::new(),
            seeds_resolve_interval: espial::driver::DEFAULT_SEEDS_RESOLVE_INTERVAL,
            filter_timeout: Duration::from_secs(5),
            max_receive_buffer: espial::driver::DEFAULT_MAX_RECEIVE_BUFFER,
            key_material: None,
            identity,
        };
        let (tx, rx) = mpsc::channel();
        let handle = Handle::new(config, tx);
        handle.start();
        let mut target = Target {
            handle,
            rx,
            addr: SocketAddr::new(IpAddr::V4(LOOPBACK), 0),
            cluster,
            key,
            seen: Vec::new(),
        };
        let port =
            match target.wait_for("listening", |n| matches!(n, Notification::Listening { .. })) {
                Notification::Listening { port } => port,
                _ => unreachable!(),
            };
        target.addr.set_port(port);
        for e in events {
            target.handle.subscribe((*e).to_string()).unwrap();
        }
        target
    }

    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Notification) -> bool) -> Notification {
        if let Some(n) = self.seen.iter().find(|n| pred(n)) {
            return n.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}; seen {:?}", self.seen));
            self.seen.push(n.clone());
            if pred(&n) {
                return n;
            }
        }
    }

    /// Collects notifications for `d`.
    pub fn settle(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while let Ok(n) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(n);
        }
    }

    pub fn messages(&self) -> Vec<Vec<u8>> {
        self.seen
            .iter()
            .filter_map(|n| match n {
                Notification::Cluster(Event::Delivery { payload, .. }) => Some(payload.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn assert_no_errors(&self) {
        for n in &self.seen {
            assert!(
                !matches!(n, Notification::Error { .. }),
                "the node reported {n:?}"
            );
        }
    }

    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    pub fn exit(self) {
        espial::driver::runtime::get().block_on(self.handle.exit());
    }
}

impl Peer {
    /// Connects to `target` and completes the handshake and key confirmation.
    pub fn handshake(target: &Target) -> Peer {
        Peer::connect_keyed(target.addr, &target.cluster, target.key.as_ref())
    }

    /// Handshake, introduction and admission: the node adds us as a member.
    pub fn join(target: &mut Target) -> Peer {
        let mut peer = Peer::handshake(target);
        peer.introduce("{}");
        // The node's verdict first: only then does our profile go, which makes us a member.
        assert_eq!(peer.their_verdict(), Some(true));
        let id = peer.id;
        target.wait_for(
            "the attacker added",
            |n| matches!(n, Notification::Cluster(Event::NodeAdded(info)) if info.id == id),
        );
        peer
    }

    /// A binary `evt` message.
    pub fn event(&mut self, payload: &[u8]) -> Vec<u8> {
        self.send_event("evt", true, payload)
    }
}

/// Waits until the node closes `s` (end of stream or reset), skipping whatever it still sends.
pub fn assert_closed(s: &mut TcpStream, what: &str) {
    if let Err(e) = wait_closed(s) {
        panic!("{what}: {e}");
    }
}

/// A new peer still joins the node and is heard: the attack did not stop it serving.
pub fn still_serving(target: &mut Target, what: &str) {
    let mut next = Peer::join(target);
    next.event(b"still-here");
    target.wait_for(what, |n| {
        matches!(n, Notification::Cluster(Event::Delivery { payload, .. }) if payload == b"still-here")
    });
}
