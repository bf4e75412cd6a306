//! A deterministic in-memory network for [`Cluster`] instances: beacons reach every node,
//! dials reach the node listening at the address, bytes arrive in order, and virtual time
//! jumps to the next wake-up when nothing is in flight (quinn-proto's `Pair::step` idea).
//! Every choice is seeded; `BTreeMap`s keep iteration order stable.
//!
//! The work per step is the touched nodes', not the cluster's, so that a thousand nodes can
//! be simulated: outputs are collected only from nodes that were handed an input since
//! (`dirty`), and wake-ups come from a queue of deadlines, re-read only for touched nodes
//! (`stale`). Both visit nodes in ascending order, exactly as a walk over every node would:
//! a run is the same as when every node was polled after every step.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::core::cluster::{Cluster, ConnId, Event, Output};
use crate::core::config::Config;
use crate::core::crypto::Identity;
use crate::core::message::Message;
use crate::core::node::{Candidate, NodeId, NodeInfo};

/// Index of a node in the simulation.
pub type Host = usize;

enum Delivery {
    Bytes {
        to: (Host, ConnId),
        bytes: Vec<u8>,
    },
    Closed {
        to: (Host, ConnId),
    },
    /// A multicast beacon: to every host on `from`'s side of a partition, or (delayed by
    /// [`Sim::beacon_delay`]) to `to` alone.
    Beacon {
        from: Host,
        to: Option<Host>,
        bytes: Vec<u8>,
    },
    /// A dial reaching its listener late (see [`Sim::accept_delay`]).
    Dial {
        from: (Host, ConnId),
        target: SocketAddr,
    },
    /// A UDP probe datagram: lost across a partition or a severed link, and to a paused
    /// host; not held back while a host stops reading its connections.
    Probe {
        from: Host,
        to: Host,
        bytes: Vec<u8>,
    },
}

/// A connection filter: may `host` admit `node`?
pub type Filter = Box<dyn Fn(&Candidate) -> bool>;

/// The simulated network and its nodes.
pub struct Sim {
    pub now: Instant,
    pub nodes: BTreeMap<Host, Cluster<ChaCha20Rng>>,
    /// Every application event each node emitted, in order.
    pub events: BTreeMap<Host, Vec<Event>>,
    /// Connection filters by host; a host without one admits everyone.
    pub filters: BTreeMap<Host, Filter>,
    /// How many times each host was asked to admit a node (its filter run).
    pub asked: BTreeMap<Host, usize>,
    links: BTreeMap<(Host, ConnId), (Host, ConnId)>,
    queue: VecDeque<Delivery>,
    /// Which side of a partition each host is on (absent: side 0). Hosts on different
    /// sides cannot reach each other: bytes are lost, dials hang, beacons do not cross.
    side: BTreeMap<Host, u64>,
    next_side: u64,
    next_host: Host,
    /// Hosts with multicast off.
    manual: BTreeSet<Host>,
    /// Hosts not reading their connections, with what arrived for them meanwhile, in order.
    held: BTreeMap<Host, VecDeque<Delivery>>,
    /// Paused processes (SIGSTOP): no input handled, no timer fired, until resumed.
    paused: BTreeSet<Host>,
    /// One-way bad links `(from, to)`: bytes from `from` to `to` are lost.
    severed: BTreeSet<(Host, Host)>,
    /// Hosts whose UDP probes, to and from them, are lost (a firewall dropping UDP).
    no_probes: BTreeSet<Host>,
    /// Hosts whose own probes are lost (UDP dropped one way).
    no_probes_from: BTreeSet<Host>,
    /// When the simulation started; the wall clock reads [`SIM_EPOCH_MS`] then.
    epoch: Instant,
    /// How far each host's wall clock is ahead of true time, in ms (absent: 0).
    clock_skew: BTreeMap<Host, i64>,
    rng: ChaCha20Rng,
    /// Every probe datagram sent, (from, to address, bytes), for hostile tests to replay.
    pub probes_sent: Vec<(Host, SocketAddr, Vec<u8>)>,
    /// Whether each [`Sim::run_for`] first collects from every node and re-reads every
    /// wake-up, for calls tests make on [`Sim::nodes`] directly between runs. A caller
    /// that makes none may turn it off: at a thousand nodes that walk costs more than a
    /// short run.
    pub poll_all_each_run: bool,
    /// Whether to keep [`Sim::probes_sent`] (large simulations turn it off: it grows by
    /// thousands of datagrams a second).
    pub record_probes: bool,
    /// Records (frames) each host sent on its connections, and their bytes.
    pub sent: BTreeMap<Host, (u64, u64)>,
    /// Records each host sent to each other host.
    pub sent_to: BTreeMap<(Host, Host), u64>,
    /// Probes waiting in each host's socket, with when they arrived: as the driver does, a
    /// node not owing prompt answers reads them only when a timer of its fires (see
    /// `driver::probes`). On unless a test turns it off.
    pub read_probes_at_timers: bool,
    probe_backlog: BTreeMap<Host, Vec<(Instant, SocketAddr, Vec<u8>)>>,
    /// Hosts handed an input since their outputs were last collected: only they can have
    /// outputs.
    dirty: BTreeSet<Host>,
    /// Hosts handed an input since their wake-up was last read.
    stale: BTreeSet<Host>,
    /// Wake-ups, earliest first; an entry counts only while it is its host's entry in
    /// `armed` (a re-read leaves the old one behind, skipped when it comes up).
    timers: BinaryHeap<Reverse<(Instant, Host)>>,
    /// Each running, unpaused host's wake-up as last read.
    armed: BTreeMap<Host, Instant>,
    /// The most bytes and closes take to arrive (zero: at once, in the order sent). Each
    /// connection draws its own delay up to this, the same both ways and for all its
    /// bytes, so that they keep their order.
    pub latency: Duration,
    /// Each connection end's delay, drawn when it opens (with a latency).
    delays: BTreeMap<(Host, ConnId), Duration>,
    /// The most a beacon takes to be read by each host (zero: by all at once). Each host
    /// draws its own delay for each beacon: a loaded host reads its multicast socket late,
    /// and hosts hear a newcomer in any order.
    pub beacon_delay: Duration,
    /// The most a dial takes to reach its listener (zero: at once), drawn for each: a
    /// loaded host accepts late, so two dials can cross, each made before the other
    /// arrived.
    pub accept_delay: Duration,
    /// Deliveries under way, by arrival (and then the order sent).
    in_flight: BTreeMap<(Instant, u64), Delivery>,
    sent_count: u64,
    /// Dials on their way to their listener (with an accept delay), until they arrive or
    /// their dialer closes them.
    dialing: BTreeSet<(Host, ConnId)>,
}

/// The wall clock (ms since the Unix epoch) when a simulation starts.
pub const SIM_EPOCH_MS: u64 = 1_800_000_000_000;

/// The address host `host` listens at: 10.0.0.1 for host 0, on up to 10.0.255.255.
pub fn addr(host: Host) -> SocketAddr {
    let n = u16::try_from(host + 1).expect("at most 65 535 hosts");
    let [hi, lo] = n.to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, hi, lo)), 27272)
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        let now = Instant::now();
        Sim {
            now,
            epoch: now,
            clock_skew: BTreeMap::new(),
            nodes: BTreeMap::new(),
            events: BTreeMap::new(),
            filters: BTreeMap::new(),
            asked: BTreeMap::new(),
            links: BTreeMap::new(),
            queue: VecDeque::new(),
            side: BTreeMap::new(),
            next_side: 1,
            next_host: 0,
            manual: BTreeSet::new(),
            held: BTreeMap::new(),
            paused: BTreeSet::new(),
            severed: BTreeSet::new(),
            no_probes: BTreeSet::new(),
            no_probes_from: BTreeSet::new(),
            rng: ChaCha20Rng::seed_from_u64(seed),
            probes_sent: Vec::new(),
            poll_all_each_run: true,
            record_probes: true,
            sent: BTreeMap::new(),
            sent_to: BTreeMap::new(),
            read_probes_at_timers: true,
            probe_backlog: BTreeMap::new(),
            dirty: BTreeSet::new(),
            stale: BTreeSet::new(),
            timers: BinaryHeap::new(),
            armed: BTreeMap::new(),
            latency: Duration::ZERO,
            delays: BTreeMap::new(),
            beacon_delay: Duration::ZERO,
            accept_delay: Duration::ZERO,
            in_flight: BTreeMap::new(),
            sent_count: 0,
            dialing: BTreeSet::new(),
        }
    }

    /// Queues a delivery over a connection: at once, or after [`Sim::latency`].
    fn carry(&mut self, d: Delivery) {
        let to = match &d {
            Delivery::Bytes { to, .. } | Delivery::Closed { to } => Some(*to),
            _ => None,
        };
        match to.and_then(|to| self.delays.get(&to)) {
            Some(&delay) => self.deliver_later(delay, d),
            None => self.queue.push_back(d),
        }
    }

    /// Queues `d` to arrive `delay` from now, after whatever is due at the same instant.
    fn deliver_later(&mut self, delay: Duration, d: Delivery) {
        self.sent_count += 1;
        self.in_flight
            .insert((self.now + delay, self.sent_count), d);
    }

    /// A delay drawn below `max` (which is not zero), to the microsecond.
    fn draw_delay(&mut self, max: Duration) -> Duration {
        use rand_chacha::rand_core::RngCore;
        Duration::from_micros(self.rng.next_u64() % max.as_micros() as u64)
    }

    /// Adds and starts a node with the given core configuration.
    pub fn add(&mut self, config: Config) -> Host {
        let host = self.next_host;
        self.start_at(host, config);
        host
    }

    /// Adds a node with multicast off (it neither sends nor hears beacons).
    pub fn add_manual(&mut self, config: Config) -> Host {
        let host = self.next_host;
        self.add_at(host, config, true);
        host
    }

    /// Starts host `host` (which may be below hosts already started: a seed started after
    /// the nodes that name it), with multicast off if `manual`.
    pub fn add_at(&mut self, host: Host, config: Config, manual: bool) {
        assert!(!self.nodes.contains_key(&host), "host {host} runs already");
        if manual {
            self.manual.insert(host);
        }
        self.start_at(host, config);
    }

    /// Kills a node's process: the kernel closes its connections, and nothing listens at
    /// its address any more.
    pub fn crash(&mut self, host: Host) {
        self.nodes.remove(&host);
        self.probe_backlog.remove(&host);
        self.dirty.remove(&host);
        self.stale.remove(&host);
        self.armed.remove(&host);
        self.dialing.retain(|&(h, _)| h != host);
        let ends: Vec<_> = self
            .links
            .keys()
            .filter(|(h, _)| *h == host)
            .copied()
            .collect();
        for end in ends {
            if let Some(to) = self.links.remove(&end) {
                self.links.remove(&to);
                self.carry(Delivery::Closed { to });
            }
        }
    }

    /// Starts a fresh node (new id) at the address of a crashed one.
    pub fn restart(&mut self, host: Host, config: Config) {
        assert!(!self.nodes.contains_key(&host), "crash it first");
        self.start_at(host, config);
    }

    /// Cuts a host's link: everything to and from it is silently lost.
    pub fn cut(&mut self, host: Host) {
        self.partition(&[host]);
    }

    /// Restores a host's link.
    pub fn heal(&mut self, host: Host) {
        self.side.remove(&host);
    }

    /// Moves these hosts to a side of their own, apart from everyone else.
    pub fn partition(&mut self, hosts: &[Host]) {
        for &h in hosts {
            self.side.insert(h, self.next_side);
        }
        self.next_side += 1;
    }

    /// Heals every partition.
    pub fn heal_all(&mut self) {
        self.side.clear();
    }

    /// The side of the partition a host is on.
    pub fn side_of(&self, host: Host) -> u64 {
        self.side.get(&host).copied().unwrap_or(0)
    }

    fn apart(&self, a: Host, b: Host) -> bool {
        self.side_of(a) != self.side_of(b)
    }

    /// Breaks the connection between two live nodes, as a reset would: both ends see it close.
    pub fn reset_link(&mut self, a: Host, b: Host) {
        let ends: Vec<_> = self
            .links
            .iter()
            .filter(|((h, _), (p, _))| *h == a && *p == b)
            .map(|(&end, &to)| (end, to))
            .collect();
        for (end, to) in ends {
            self.links.remove(&end);
            self.links.remove(&to);
            self.carry(Delivery::Closed { to });
            self.carry(Delivery::Closed { to: end });
        }
    }

    fn start_at(&mut self, host: Host, config: Config) {
        use rand_chacha::rand_core::RngCore;
        let mut rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
        // Drawn before the identity, as always: every seeded run stays the run it was.
        let _ = NodeId::random(&mut rng);
        let identity = Identity::generate(&mut rng);
        self.start_as(host, config, identity, rng);
    }

    /// Adds a node (multicast on) whose id is smaller than every running node's: nobody
    /// dials it on hearing its beacon, it dials those who answer it.
    pub fn add_below_all(&mut self, config: Config) -> Host {
        use rand_chacha::rand_core::RngCore;
        let least = self.nodes.values().map(|n| n.me().id).min();
        let host = self.next_host;
        // Bounded: an id below the least of N is drawn once in N + 1 tries on average.
        for _ in 0..100_000 {
            let mut rng = ChaCha20Rng::seed_from_u64(self.rng.next_u64());
            let identity = Identity::generate(&mut rng);
            if least.is_none_or(|least| identity.id() < least) {
                self.start_as(host, config, identity, rng);
                return host;
            }
        }
        panic!("no id below {least:?} in 100 000 draws");
    }

    fn start_as(&mut self, host: Host, mut config: Config, identity: Identity, rng: ChaCha20Rng) {
        self.next_host = self.next_host.max(host + 1);
        // Its beacons go nowhere and it hears none: the core is told, as the driver tells it.
        config.discovery.multicast &= !self.manual.contains(&host);
        let me = NodeInfo {
            id: identity.id(),
            host_name: format!("host-{host}"),
            ip: addr(host).ip(),
            port: addr(host).port(),
            advertised: None,
            metadata: format!("{{\"n\":{host}}}"),
            master_eligible: config.election.eligible,
        };
        let mut node = Cluster::with_identity(identity, me, config, rng);
        node.set_wall_clock(self.now, self.wall_ms(host));
        node.start(self.now);
        self.nodes.insert(host, node);
        self.touch(host);
        // A restarted node is a new process: its events start afresh.
        self.events.insert(host, Vec::new());
    }

    /// Host `host`'s wall clock now.
    pub fn wall_ms(&self, host: Host) -> u64 {
        let skew = self.clock_skew.get(&host).copied().unwrap_or(0);
        let true_ms = SIM_EPOCH_MS + self.now.duration_since(self.epoch).as_millis() as u64;
        true_ms.saturating_add_signed(skew)
    }

    /// Sets host `host`'s wall clock `skew_ms` ahead of true time (behind if negative),
    /// as a system clock set by hand would be; the node reads it at once.
    pub fn set_clock_skew(&mut self, host: Host, skew_ms: i64) {
        self.clock_skew.insert(host, skew_ms);
        let (now, wall) = (self.now, self.wall_ms(host));
        if let Some(node) = self.nodes.get_mut(&host) {
            node.set_wall_clock(now, wall);
            self.touch(host);
        }
    }

    pub fn id(&self, host: Host) -> NodeId {
        self.nodes[&host].me().id
    }

    /// `host` was handed an input: it may have outputs, and its wake-up may have moved.
    fn touch(&mut self, host: Host) {
        self.dirty.insert(host);
        self.stale.insert(host);
    }

    /// Runs for `d` of virtual time, delivering everything and firing every timer.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        // Tests call nodes directly between runs (`sim.nodes`): every node may have
        // outputs, and its wake-up may have moved.
        if self.poll_all_each_run {
            let hosts: Vec<Host> = self.nodes.keys().copied().collect();
            for host in hosts {
                self.touch(host);
            }
        }
        // Bounded, and room for a full mesh of a few hundred nodes forming.
        let steps = 1_000_000usize.max(self.nodes.len().pow(2) * 200);
        for _ in 0..steps {
            self.collect();
            if let Some(delivery) = self.queue.pop_front() {
                self.deliver(delivery);
                continue;
            }
            let next = self.next_wake_up();
            let arrival = self.in_flight.keys().next().map(|&(at, _)| at);
            let next = match (next, arrival) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    while let Some(entry) = self.in_flight.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        self.queue.push_back(entry.remove());
                    }
                    for host in self.due(now) {
                        let node = self.nodes.get_mut(&host).unwrap();
                        read_backlog(node, self.probe_backlog.remove(&host));
                        node.handle_timeout(now);
                        self.touch(host);
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

    /// The earliest wake-up of a running, unpaused host; entries left behind by re-reads
    /// are dropped on the way.
    fn next_wake_up(&mut self) -> Option<Instant> {
        let next = loop {
            let Some(&Reverse((t, host))) = self.timers.peek() else {
                break None;
            };
            if self.armed.get(&host) == Some(&t) {
                break Some(t);
            }
            self.timers.pop();
        };
        // The seeded tests check the queue against a walk over every node.
        if cfg!(debug_assertions) && self.nodes.len() <= 64 {
            let walk = self
                .nodes
                .iter()
                .filter(|(h, _)| !self.paused.contains(h))
                .filter_map(|(_, n)| n.poll_timeout())
                .min();
            assert_eq!(next, walk, "the wake-up queue missed a node's timer");
        }
        next
    }

    /// The hosts whose wake-up is due at `now`, in ascending order; they are disarmed.
    fn due(&mut self, now: Instant) -> Vec<Host> {
        let mut due = Vec::new();
        while let Some(&Reverse((t, host))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if self.armed.get(&host) == Some(&t) {
                self.armed.remove(&host);
                due.push(host);
            }
        }
        due.sort_unstable();
        due
    }

    /// Re-reads the wake-up of every host touched since the last read. A paused host has
    /// none (it fires no timer until resumed, which touches it).
    fn rearm(&mut self) {
        for host in std::mem::take(&mut self.stale) {
            let next = self
                .nodes
                .get(&host)
                .filter(|_| !self.paused.contains(&host))
                .and_then(|n| n.poll_timeout());
            match next {
                Some(t) if self.armed.get(&host) == Some(&t) => {}
                Some(t) => {
                    self.armed.insert(host, t);
                    self.timers.push(Reverse((t, host)));
                }
                None => {
                    self.armed.remove(&host);
                }
            }
        }
    }

    /// Moves the outputs of every host touched since into the network, in ascending
    /// order of hosts; a host touched by a higher one's outputs waits for the next call,
    /// as it would in a walk over every host. Then re-reads touched hosts' wake-ups.
    fn collect(&mut self) {
        let mut from = 0;
        while let Some(&host) = self.dirty.range(from..).next() {
            self.dirty.remove(&host);
            while let Some(out) = self.nodes.get_mut(&host).and_then(|n| n.poll_output()) {
                self.carry_out(host, out);
            }
            // Its own outputs may have touched it (a dial answered): drained all the same.
            self.dirty.remove(&host);
            from = host + 1;
        }
        self.rearm();
    }

    /// The running host listening at `at`, if any (the inverse of [`addr`]).
    fn host_at(&self, at: SocketAddr) -> Option<Host> {
        let IpAddr::V4(ip) = at.ip() else { return None };
        let [a, b, hi, lo] = ip.octets();
        let n = usize::from(u16::from_be_bytes([hi, lo]));
        let host = n.checked_sub(1)?;
        let ours = a == 10 && b == 0 && at.port() == addr(0).port();
        (ours && self.nodes.contains_key(&host)).then_some(host)
    }

    fn carry_out(&mut self, host: Host, out: Output) {
        let now = self.now;
        match out {
            Output::Transmit { conn, bytes } => {
                let sent = self.sent.entry(host).or_default();
                sent.0 += 1;
                sent.1 += bytes.len() as u64;
                if let Some(&to) = self.links.get(&(host, conn)) {
                    *self.sent_to.entry((host, to.0)).or_default() += 1;
                    if !self.apart(host, to.0) && !self.severed.contains(&(host, to.0)) {
                        self.carry(Delivery::Bytes { to, bytes });
                    }
                }
            }
            Output::Close { conn } => {
                // A dial given up before it reached its listener never reaches it.
                self.dialing.remove(&(host, conn));
                if let Some(to) = self.links.remove(&(host, conn)) {
                    self.links.remove(&to);
                    self.carry(Delivery::Closed { to });
                }
            }
            Output::Dial { conn, addr: target } => {
                if self.accept_delay.is_zero() {
                    return self.open(host, conn, target);
                }
                let delay = Duration::from_micros(1) + self.draw_delay(self.accept_delay);
                self.dialing.insert((host, conn));
                let d = Delivery::Dial {
                    from: (host, conn),
                    target,
                };
                self.deliver_later(delay, d);
            }
            Output::Probe {
                addr: target,
                bytes,
            } => {
                if self.record_probes {
                    self.probes_sent.push((host, target, bytes.clone()));
                }
                let to = self.host_at(target);
                let blocked = |h| self.no_probes.contains(&h);
                let mute = self.no_probes_from.contains(&host);
                if let Some(to) = to.filter(|&to| !mute && !blocked(host) && !blocked(to)) {
                    if !self.apart(host, to) && !self.severed.contains(&(host, to)) {
                        self.queue.push_back(Delivery::Probe {
                            from: host,
                            to,
                            bytes,
                        });
                    }
                }
            }
            Output::Beacon(bytes) => {
                if !self.manual.contains(&host) {
                    if self.beacon_delay.is_zero() {
                        let to = None;
                        self.queue.push_back(Delivery::Beacon {
                            from: host,
                            to,
                            bytes,
                        });
                    } else {
                        let hosts: Vec<Host> = self.nodes.keys().copied().collect();
                        for h in hosts.into_iter().filter(|&h| h != host) {
                            let delay = self.draw_delay(self.beacon_delay);
                            let to = Some(h);
                            let d = Delivery::Beacon {
                                from: host,
                                to,
                                bytes: bytes.clone(),
                            };
                            self.deliver_later(delay, d);
                        }
                    }
                }
            }
            Output::AskAdmission { conn, node } => {
                *self.asked.entry(host).or_default() += 1;
                let ok = self.filters.get(&host).is_none_or(|f| f(&node));
                self.nodes.get_mut(&host).unwrap().admit(now, conn, ok);
                self.touch(host);
            }
            Output::Event(e) => self.events.get_mut(&host).unwrap().push(e),
        }
    }

    /// `host` stops reading its connections, as the driver does while the application is
    /// behind: bytes and closes for it wait. `tell` says whether its core is told (as the
    /// driver does), or left to see the silence.
    pub fn stop_reading(&mut self, host: Host, tell: bool) {
        self.held.entry(host).or_default();
        if tell {
            let now = self.now;
            self.nodes
                .get_mut(&host)
                .unwrap()
                .set_reading_paused(now, true);
            self.touch(host);
        }
    }

    /// `host` reads again: what waited arrives first, in order.
    pub fn resume_reading(&mut self, host: Host) {
        let now = self.now;
        if let Some(node) = self.nodes.get_mut(&host) {
            node.set_reading_paused(now, false);
            self.touch(host);
        }
        for d in self
            .held
            .remove(&host)
            .unwrap_or_default()
            .into_iter()
            .rev()
        {
            self.queue.push_front(d);
        }
    }

    /// Pauses `host`'s process, as SIGSTOP does: it handles no input and fires no timer;
    /// bytes and closes for it wait, dials to it hang, beacons to it are lost.
    pub fn pause(&mut self, host: Host) {
        self.paused.insert(host);
        self.armed.remove(&host);
        self.held.entry(host).or_default();
    }

    /// Resumes a paused process, as SIGCONT does. Its timers are overdue and its sockets
    /// full; its overdue timers run first (the harsher order: it finds every member silent
    /// for the whole pause), then what waited arrives, in order.
    pub fn resume(&mut self, host: Host) {
        self.paused.remove(&host);
        // Tests call nodes directly before resuming: collect from every node, as a walk
        // over all of them did.
        let hosts: Vec<Host> = self.nodes.keys().copied().collect();
        for h in hosts {
            self.touch(h);
        }
        let now = self.now;
        if let Some(node) = self.nodes.get_mut(&host) {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                read_backlog(node, self.probe_backlog.remove(&host));
                node.handle_timeout(now);
            }
            self.touch(host);
        }
        self.collect();
        self.resume_reading(host);
    }

    /// Bytes from `from` to `to` are lost from now on (one direction of one link).
    pub fn sever(&mut self, from: Host, to: Host) {
        self.severed.insert((from, to));
    }

    /// Probes to and from `host` are lost from now on, as behind a firewall dropping UDP:
    /// only its connections tell whether it lives.
    pub fn lose_probes(&mut self, host: Host) {
        self.no_probes.insert(host);
    }

    /// Probes sent by `host` are lost from now on (those to it still arrive), as behind a
    /// firewall dropping UDP one way.
    pub fn lose_probes_from(&mut self, host: Host) {
        self.no_probes_from.insert(host);
    }

    /// Ends every [`Sim::sever`].
    pub fn mend(&mut self) {
        self.severed.clear();
    }

    /// Host `host`'s dial `conn` to `target` reaches the listener there (if any answers).
    fn open(&mut self, host: Host, conn: ConnId, target: SocketAddr) {
        let now = self.now;
        let listener = self.host_at(target);
        if listener.is_some_and(|h| self.apart(host, h) || self.paused.contains(&h)) {
            // No answer at all: the core's dial timeout decides.
            return;
        }
        let accepted = listener.and_then(|h| {
            let from = SocketAddr::new(addr(host).ip(), 40000 + conn as u16);
            self.touch(h);
            let peer_conn = self.nodes.get_mut(&h).unwrap().accept(now, from)?;
            Some((h, peer_conn))
        });
        self.touch(host);
        match accepted {
            Some(peer) => {
                self.links.insert((host, conn), peer);
                self.links.insert(peer, (host, conn));
                if !self.latency.is_zero() {
                    let delay = Duration::from_micros(1) + self.draw_delay(self.latency);
                    self.delays.insert((host, conn), delay);
                    self.delays.insert(peer, delay);
                }
                self.nodes.get_mut(&host).unwrap().connected(now, conn);
            }
            None => self.nodes.get_mut(&host).unwrap().dial_failed(now, conn),
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        let to = match &d {
            Delivery::Bytes { to, .. } | Delivery::Closed { to } => Some(to.0),
            Delivery::Beacon { .. } | Delivery::Probe { .. } | Delivery::Dial { .. } => None,
        };
        if let Some(held) = to.and_then(|h| self.held.get_mut(&h)) {
            held.push_back(d);
            return;
        }
        match d {
            Delivery::Dial {
                from: (host, conn),
                target,
            } => {
                // A dialer gone meanwhile (crashed, or it gave the dial up) dials nobody.
                if self.dialing.remove(&(host, conn)) {
                    self.open(host, conn, target);
                }
            }
            Delivery::Bytes { to: (h, c), bytes } => {
                if let Some(n) = self.nodes.get_mut(&h) {
                    n.handle_bytes(now, c, &bytes);
                    self.touch(h);
                }
            }
            Delivery::Closed { to: (h, c) } => {
                if let Some(n) = self.nodes.get_mut(&h) {
                    n.connection_closed(now, c);
                    self.touch(h);
                }
            }
            Delivery::Probe { from, to, bytes } => {
                if self.paused.contains(&to) {
                    return;
                }
                if let Some(n) = self.nodes.get_mut(&to) {
                    if self.read_probes_at_timers && !n.probes_prompt(now) {
                        let waiting = self.probe_backlog.entry(to).or_default();
                        waiting.push((now, addr(from), bytes));
                    } else {
                        n.handle_probe(now, addr(from), &bytes);
                        self.touch(to);
                    }
                }
            }
            Delivery::Beacon { from, to, bytes } => {
                let src = SocketAddr::new(addr(from).ip(), 50000);
                let from_side = self.side.get(&from).copied().unwrap_or(0);
                for (h, node) in self.nodes.iter_mut() {
                    let side = self.side.get(h).copied().unwrap_or(0);
                    let listening = !self.manual.contains(h) && !self.paused.contains(h);
                    if listening && side == from_side && to.is_none_or(|to| to == *h) {
                        node.handle_beacon(now, src, &bytes);
                        self.dirty.insert(*h);
                        self.stale.insert(*h);
                    }
                }
            }
        }
    }

    /// Delivers a datagram to `to`'s probe socket as if from `src`, now: what a hostile
    /// host can send. It waits in the socket behind what came before it, as any does.
    pub fn send_probe(&mut self, src: SocketAddr, to: Host, bytes: &[u8]) {
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(&to) {
            if self.read_probes_at_timers && !n.probes_prompt(now) {
                let waiting = self.probe_backlog.entry(to).or_default();
                waiting.push((now, src, bytes.to_vec()));
            } else {
                n.handle_probe(now, src, bytes);
                self.touch(to);
            }
        }
    }

    /// Has `from` send `msg` to `to` over their real session, whatever its own state says:
    /// a hostile member. Delivered by the next [`Sim::run_for`].
    pub fn inject(&mut self, from: Host, to: Host, msg: &Message) {
        let (now, to) = (self.now, self.id(to));
        self.nodes.get_mut(&from).unwrap().inject(now, to, msg);
        self.touch(from);
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

/// Hands a node the probes that waited in its socket, each with when it arrived.
fn read_backlog(
    node: &mut Cluster<ChaCha20Rng>,
    waiting: Option<Vec<(Instant, SocketAddr, Vec<u8>)>>,
) {
    for (arrived, from, bytes) in waiting.unwrap_or_default() {
        node.handle_probe(arrived, from, &bytes);
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

pub fn promoted(e: &Event) -> bool {
    matches!(e, Event::Promotion { .. })
}

pub fn demoted(e: &Event) -> bool {
    matches!(e, Event::Demotion { .. })
}

pub fn updated(e: &Event) -> Option<NodeId> {
    match e {
        Event::NodeUpdated(n) => Some(n.id),
        _ => None,
    }
}

pub fn rejected(e: &Event) -> Option<NodeId> {
    match e {
        Event::NodeRejected(n) => Some(n.id),
        _ => None,
    }
}

pub fn accepted(e: &Event) -> Option<NodeId> {
    match e {
        Event::NodeAccepted(n) => Some(n.id),
        _ => None,
    }
}

/// Runs `case` over seeds `0..runs` (or `ESPIAL_SIM_SEED` alone), spread over the cores, and
/// fails with the first few failures, each naming its seed and how to replay it.
pub fn over_seeds(runs: u64, case: fn(u64) -> Result<(), String>) {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("ESPIAL_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (0..runs).collect(),
    };
    // Runs are independent: spread them over the machine's cores.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = seeds.len().div_ceil(threads).max(1);
    let mut failures: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = seeds
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|&seed| {
                            case(seed).err().map(|e| {
                                format!("seed {seed}: {e} (replay: ESPIAL_SIM_SEED={seed})")
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a simulation thread panicked"))
            .collect()
    });
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        seeds.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
