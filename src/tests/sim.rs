//! A deterministic in-memory network for [`Cluster`] instances: beacons reach every node,
//! dials reach the node listening at the address, bytes arrive in order, and virtual time
//! jumps to the next wake-up when nothing is in flight (quinn-proto's `Pair::step` idea).
//! Every choice is seeded; `BTreeMap`s keep iteration order stable.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::core::cluster::{Cluster, ConnId, Event, Output};
use crate::core::config::Config;
use crate::core::node::{NodeId, NodeInfo};

/// Index of a node in the simulation.
pub type Host = usize;

enum Delivery {
    Bytes { to: (Host, ConnId), bytes: Vec<u8> },
    Closed { to: (Host, ConnId) },
    Beacon { from: Host, bytes: Vec<u8> },
}

/// The simulated network and its nodes.
pub struct Sim {
    pub now: Instant,
    pub nodes: BTreeMap<Host, Cluster<ChaCha20Rng>>,
    /// Every application event each node emitted, in order.
    pub events: BTreeMap<Host, Vec<Event>>,
    links: BTreeMap<(Host, ConnId), (Host, ConnId)>,
    queue: VecDeque<Delivery>,
    rng: ChaCha20Rng,
}

fn addr(host: Host) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, host as u8 + 1)), 27272)
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        Sim {
            now: Instant::now(),
            nodes: BTreeMap::new(),
            events: BTreeMap::new(),
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            rng: ChaCha20Rng::seed_from_u64(seed),
        }
    }

    /// Adds and starts a node with the given core configuration.
    pub fn add(&mut self, config: Config) -> Host {
        use rand_chacha::rand_core::RngCore;
        let host = self.nodes.len();
        let mut rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        let me = NodeInfo {
            id: NodeId::random(&mut rng),
            host_name: format!("host-{host}"),
            ip: addr(host).ip(),
            port: addr(host).port(),
            metadata: format!("{{\"n\":{host}}}"),
        };
        let mut node = Cluster::new(me, config, rng);
        node.start(self.now);
        self.nodes.insert(host, node);
        self.events.insert(host, Vec::new());
        host
    }

    pub fn id(&self, host: Host) -> NodeId {
        self.nodes[&host].me().id
    }

    /// Runs for `d` of virtual time, delivering everything and firing every timer.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        for _ in 0..1_000_000 {
            self.collect();
            if let Some(delivery) = self.queue.pop_front() {
                self.deliver(delivery);
                continue;
            }
            let next = self.nodes.values().filter_map(|n| n.poll_timeout()).min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for node in self.nodes.values_mut() {
                        if node.poll_timeout().is_some_and(|t| t <= now) {
                            node.handle_timeout(now);
                        }
                    }
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
        panic!("simulation did not settle: a node keeps waking up without progress");
    }

    /// Moves every node's outputs into the network.
    fn collect(&mut self) {
        let hosts: Vec<Host> = self.nodes.keys().copied().collect();
        for host in hosts {
            while let Some(out) = self.nodes.get_mut(&host).unwrap().poll_output() {
                self.carry_out(host, out);
            }
        }
    }

    fn carry_out(&mut self, host: Host, out: Output) {
        let now = self.now;
        match out {
            Output::Transmit { conn, bytes } => {
                if let Some(&to) = self.links.get(&(host, conn)) {
                    self.queue.push_back(Delivery::Bytes { to, bytes });
                }
            }
            Output::Close { conn } => {
                if let Some(to) = self.links.remove(&(host, conn)) {
                    self.links.remove(&to);
                    self.queue.push_back(Delivery::Closed { to });
                }
            }
            Output::Dial { conn, addr: target } => {
                let listener = self.nodes.keys().copied().find(|&h| addr(h) == target);
                let accepted = listener.and_then(|h| {
                    let from = SocketAddr::new(addr(host).ip(), 40000 + conn as u16);
                    let peer_conn = self.nodes.get_mut(&h).unwrap().accept(now, from)?;
                    Some((h, peer_conn))
                });
                let node = self.nodes.get_mut(&host).unwrap();
                match accepted {
                    Some(peer) => {
                        self.links.insert((host, conn), peer);
                        self.links.insert(peer, (host, conn));
                        node.connected(now, conn);
                    }
                    None => node.dial_failed(now, conn),
                }
            }
            Output::Beacon(bytes) => self.queue.push_back(Delivery::Beacon { from: host, bytes }),
            Output::AskAdmission { conn, .. } => {
                self.nodes.get_mut(&host).unwrap().admit(now, conn, true);
            }
            Output::Event(e) => self.events.get_mut(&host).unwrap().push(e),
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        match d {
            Delivery::Bytes { to: (h, c), bytes } => {
                if let Some(n) = self.nodes.get_mut(&h) {
                    n.handle_bytes(now, c, &bytes);
                }
            }
            Delivery::Closed { to: (h, c) } => {
                if let Some(n) = self.nodes.get_mut(&h) {
                    n.connection_closed(now, c);
                }
            }
            Delivery::Beacon { from, bytes } => {
                let src = SocketAddr::new(addr(from).ip(), 50000);
                for node in self.nodes.values_mut() {
                    node.handle_beacon(now, src, &bytes);
                }
            }
        }
    }

    /// Node ids each node counts as members.
    pub fn member_ids(&self, host: Host) -> Vec<NodeId> {
        self.nodes[&host].members().iter().map(|n| n.id).collect()
    }

    /// Open simulated connections (each counted once per end).
    pub fn open_links(&self) -> usize {
        self.links.len()
    }

    /// Number of events of a kind a node emitted about `about`.
    pub fn count(&self, host: Host, about: NodeId, kind: fn(&Event) -> Option<NodeId>) -> usize {
        self.events[&host]
            .iter()
            .filter(|e| kind(e) == Some(about))
            .count()
    }
}

/// Selectors for [`Sim::count`].
pub fn added(e: &Event) -> Option<NodeId> {
    match e {
        Event::NodeAdded(n) => Some(n.id),
        _ => None,
    }
}

pub fn removed(e: &Event) -> Option<NodeId> {
    match e {
        Event::NodeRemoved(n) => Some(n.id),
        _ => None,
    }
}

pub fn accepted(e: &Event) -> Option<NodeId> {
    match e {
        Event::NodeAccepted(n) => Some(n.id),
        _ => None,
    }
}
