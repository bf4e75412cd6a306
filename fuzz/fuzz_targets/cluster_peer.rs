//! A `Cluster` (node A, with an honest member B over an in-memory network) driven through
//! an authenticated hostile peer H: a genuine handshake, then any sequence of messages with
//! any field values, verdicts of A's filter, reconnections and time, all from the fuzz
//! bytes. Checked after every step:
//! - no panic (and the core's own debug assertions hold);
//! - the filter is asked before any membership change: every node A adds, updates, counts
//!   as a member or takes a custom event from was admitted by A's filter on a connection
//!   that introduced that id;
//! - H hears nothing of the membership before admission: before H has sent its profile,
//!   A sends it only its introduction, its verdict and (both verdicts in) its profile and
//!   the events it joined;
//! - a message A refuses changes nothing: same members, same master, no event but the
//!   connection's failure;
//! - one master per agreed view: once H is gone and the network is quiet, A and B, members
//!   of each other and of nobody else, follow the same master.
#![no_main]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use espial::core::cluster::{Cluster, ConnId, Event, Output};
use espial::core::config::Config;
use espial::core::crypto::{Handshake, Identity, Role, Session};
use espial::core::election::{Claim, ElectionMsg};
use espial::core::message::Message;
use espial::core::node::{NodeId, NodeInfo};
use espial::core::wire::{self, FrameDecoder};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const CLUSTER: &str = "fuzz";

fn addr(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 27272)
}

fn node(n: u8, rng: &mut ChaCha20Rng, seeds: Vec<SocketAddr>) -> Cluster<ChaCha20Rng> {
    let mut config = Config::lan(CLUSTER);
    config.discovery.seeds = seeds;
    let me = NodeInfo {
        id: NodeId::random(rng),
        host_name: format!("host-{n}"),
        ip: addr(n).ip(),
        port: addr(n).port(),
        advertised: None,
        metadata: "{}".into(),
        master_eligible: true,
    };
    Cluster::new(me, config, ChaCha20Rng::seed_from_u64(u64::from(n)))
}

/// H's identity key pair: the same on every connection, so a reconnection is the same node.
fn h_identity() -> Identity {
    Identity::from_secret_bytes(&[0x42; 32]).expect("a valid P-256 scalar")
}

/// The hostile peer's side of one connection to A.
struct Hostile {
    conn: ConnId,
    session: Session,
    decoder: FrameDecoder,
    /// What H has said on this connection so far.
    verdict_sent: bool,
    profile_sent: bool,
    /// What A has said to H on it.
    a_accepted: bool,
    a_profile: bool,
}

/// Connects H to A and completes a genuine handshake, as the initiator; A's hello and key
/// confirmation are taken from `a_out`. The one place that drives the handshake API.
fn hostile_handshake(
    a: &mut Cluster<ChaCha20Rng>,
    now: Instant,
    rng: &mut ChaCha20Rng,
    a_out: &mut Vec<(ConnId, Vec<u8>)>,
) -> Option<Hostile> {
    let conn = a.accept(now, addr(9))?;
    let (hs, hello) = Handshake::start(Role::Initiator, CLUSTER, None, rng);
    let mut decoder = FrameDecoder::new(1 << 20);
    drain(a, a_out, &mut Vec::new());
    for (_, bytes) in a_out.iter().filter(|(c, _)| *c == conn) {
        decoder.push(bytes);
    }
    a_out.retain(|(c, _)| *c != conn);
    let their_hello = decoder.next_frame().ok()??.to_vec();
    let (confirming, confirmation) = hs.finish(&their_hello, &h_identity()).ok()?;
    a.handle_bytes(now, conn, &wire::frame(&hello));
    a.handle_bytes(now, conn, &confirmation?);
    // A's key confirmation, sent once ours verified (and its introduction, read with the
    // rest).
    drain(a, a_out, &mut Vec::new());
    for (_, bytes) in a_out.drain(..).filter(|(c, _)| *c == conn) {
        decoder.push(&bytes);
    }
    let mut theirs = decoder.next_frame().ok()??.to_vec();
    let done = confirming.verify(&mut theirs).ok()?;
    Some(Hostile {
        conn,
        session: done.session,
        decoder,
        verdict_sent: false,
        profile_sent: false,
        a_accepted: false,
        a_profile: false,
    })
}

impl Hostile {
    /// Opens what A sent; checks that nothing of the membership came before admission.
    fn hear(&mut self) {
        while let Ok(Some(frame)) = self.decoder.next_frame() {
            let Ok(plain) = self.session.open(&frame.to_vec()) else {
                panic!("A sent a record H cannot open");
            };
            let msg = Message::decode(&plain, 1 << 20).expect("A sends valid messages");
            match msg {
                Message::Introduce { .. } => {}
                Message::Verdict { accepted } => self.a_accepted = accepted,
                Message::Profile { .. } => {
                    assert!(
                        self.a_accepted && self.verdict_sent,
                        "A's profile before both verdicts"
                    );
                    self.a_profile = true;
                }
                Message::Subscriptions(_) if self.a_profile => {}
                other => assert!(self.profile_sent, "A sent {other:?} to a peer not admitted"),
            }
        }
    }

    fn seal(&mut self, msg: &Message) -> Vec<u8> {
        self.session.seal(&msg.encode()).expect("H's nonces last")
    }
}

/// Takes A's outputs: transmits (kept for H or the network), asks, events.
fn drain(a: &mut Cluster<ChaCha20Rng>, out: &mut Vec<(ConnId, Vec<u8>)>, rest: &mut Vec<Output>) {
    while let Some(o) = a.poll_output() {
        match o {
            Output::Transmit { conn, bytes } => out.push((conn, bytes)),
            other => rest.push(other),
        }
    }
}

/// Bytes from a reader.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u64(&mut self) -> Option<u64> {
        let mut v = [0u8; 8];
        for b in &mut v {
            *b = self.u8()?;
        }
        Some(u64::from_be_bytes(v))
    }
}

/// The in-memory world: A, B, the hostile peer, and what each has been told.
struct World {
    now: Instant,
    a: Cluster<ChaCha20Rng>,
    b: Cluster<ChaCha20Rng>,
    rng: ChaCha20Rng,
    /// A ↔ B connection ends.
    pairs: BTreeMap<(u8, ConnId), (u8, ConnId)>,
    /// Bytes in flight between A and B.
    wire: VecDeque<((u8, ConnId), Vec<u8>)>,
    h: Option<Hostile>,
    /// H's connections A asked its filter about, with the id each introduced.
    asked: BTreeMap<ConnId, NodeId>,
    /// Ids A's filter admitted.
    admitted: BTreeSet<NodeId>,
    /// A's events of the current step.
    events: Vec<Event>,
}

impl World {
    fn node(&mut self, n: u8) -> &mut Cluster<ChaCha20Rng> {
        if n == 0 {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Runs A and B until nothing is in flight between them; H's share is left to H.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for n in [0u8, 1] {
                while let Some(o) = self.node(n).poll_output() {
                    moved = true;
                    self.carry_out(n, o);
                }
            }
            while let Some((to, bytes)) = self.wire.pop_front() {
                moved = true;
                let now = self.now;
                self.node(to.0).handle_bytes(now, to.1, &bytes);
            }
            if !moved {
                return;
            }
        }
        panic!("A and B never went quiet");
    }

    fn carry_out(&mut self, n: u8, o: Output) {
        let now = self.now;
        match o {
            Output::Transmit { conn, bytes } => {
                if let Some(&to) = self.pairs.get(&(n, conn)) {
                    self.wire.push_back((to, bytes));
                } else if n == 0 && self.h.as_ref().is_some_and(|h| h.conn == conn) {
                    let h = self.h.as_mut().unwrap();
                    h.decoder.push(&bytes);
                    h.hear();
                }
            }
            Output::Close { conn } => {
                if let Some(to) = self.pairs.remove(&(n, conn)) {
                    self.pairs.remove(&to);
                    self.node(to.0).connection_closed(now, to.1);
                }
                if n == 0 && self.h.as_ref().is_some_and(|h| h.conn == conn) {
                    self.h = None;
                }
            }
            Output::Dial { conn, addr: to } => {
                let other = 1 - n;
                if to == addr(other + 1) {
                    let from = SocketAddr::new(addr(n + 1).ip(), 40000 + conn as u16);
                    if let Some(peer) = self.node(other).accept(now, from) {
                        self.pairs.insert((n, conn), (other, peer));
                        self.pairs.insert((other, peer), (n, conn));
                        self.node(n).connected(now, conn);
                        return;
                    }
                    self.node(n).dial_failed(now, conn);
                }
                // Anywhere else (H's claimed address, forged member lists): no answer, the
                // core's dial timeout decides, in a later step.
            }
            Output::Beacon(_) => {}
            // Liveness probes between A and B arrive, as UDP on loopback would; H has no
            // probe socket, so probes to any other address are lost.
            Output::Probe { addr: to, bytes } => {
                let other = 1 - n;
                if to == addr(other + 1) {
                    self.node(other).handle_probe(now, addr(n + 1), &bytes);
                }
            }
            Output::AskAdmission { conn, node } => {
                if n == 1 || self.pairs.contains_key(&(0, conn)) {
                    // Between A and B: honest, admitted.
                    if n == 0 {
                        self.admitted.insert(node.id);
                    }
                    self.node(n).admit(now, conn, true);
                } else {
                    self.asked.insert(conn, node.id);
                }
            }
            Output::Event(e) if n == 0 => self.events.push(e),
            Output::Event(_) => {}
        }
    }

    /// The filter's invariant over A's events of this step and its members.
    fn check_filter(&self) {
        for e in &self.events {
            let id = match e {
                Event::NodeAdded(n) | Event::NodeUpdated(n) | Event::NodeAccepted(n) => n.id,
                Event::Delivery { from, .. }
                | Event::Request { from, .. }
                | Event::Answer { from, .. } => *from,
                _ => continue,
            };
            assert!(
                self.admitted.contains(&id),
                "{e:?} about a node never admitted"
            );
        }
        for m in self.a.members() {
            assert!(
                self.admitted.contains(&m.id),
                "{m:?} a member, never admitted"
            );
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        let now = self.now;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        self.pump();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let a = node(1, &mut rng, Vec::new());
    let b = node(2, &mut rng, vec![addr(1)]);
    let mut w = World {
        now: Instant::now(),
        a,
        b,
        rng,
        pairs: BTreeMap::new(),
        wire: VecDeque::new(),
        h: None,
        asked: BTreeMap::new(),
        admitted: BTreeSet::new(),
        events: Vec::new(),
    };
    let now = w.now;
    w.a.start(now);
    w.a.serve(now, "e").expect("a valid name");
    w.b.start(now);
    w.advance(0);
    w.advance(2000);
    // H's own (proven) id, then ids it cannot prove.
    let ids = [
        h_identity().id(),
        w.b.me().id,
        w.a.me().id,
        NodeId([0x01; 16]),
    ];
    let metadata = ["{}", r#"{"role":"admin"}"#, "not json", "[1]"];

    for _ in 0..64 {
        let Some(op) = input.u8() else { break };
        w.events.clear();
        let before = (w.a.members(), w.a.master(), w.a.stats().messages_refused);
        let pick = |i: Option<u8>| usize::from(i.unwrap_or(0));
        let msg = match op % 16 {
            0 => Some(Message::Introduce {
                id: ids[pick(input.u8()) % ids.len()],
                host_name: "h".into(),
                port: 9,
                advertised: (input.u8().unwrap_or(0) & 1 == 1)
                    .then(|| "[2001:db8::9]:9".parse().unwrap()),
            }),
            1 => Some(Message::Verdict {
                accepted: input.u8().unwrap_or(1) & 1 == 1,
            }),
            2 => Some(Message::Profile {
                metadata: metadata[pick(input.u8()) % metadata.len()].into(),
                master_eligible: input.u8().unwrap_or(0) & 1 == 1,
                max_message: 1 << 20,
            }),
            3 => Some(Message::Update {
                metadata: metadata[pick(input.u8()) % metadata.len()].into(),
            }),
            4 | 5 => {
                let claim = Claim {
                    master: ids[pick(input.u8()) % ids.len()],
                    term: input.u64().unwrap_or(u64::MAX),
                };
                Some(Message::Election(match input.u8().unwrap_or(0) % 4 {
                    0 => ElectionMsg::State(Some(claim)),
                    1 => ElectionMsg::Resign(claim),
                    2 => ElectionMsg::Nominate,
                    _ => ElectionMsg::State(None),
                }))
            }
            6 => Some(Message::Members(vec![(
                ids[pick(input.u8()) % ids.len()],
                addr(input.u8().unwrap_or(9)),
            )])),
            7 => {
                // An event, a request or a reply: all three are numbers of H's stream.
                let seq = u64::from(input.u8().unwrap_or(1));
                let kind = input.u8().unwrap_or(0);
                Some(match kind % 3 {
                    0 => Message::Event {
                        seq,
                        name: "e",
                        binary: kind & 4 != 0,
                        payload: b"{\"x\":1}",
                    },
                    1 => Message::Request {
                        seq,
                        id: u64::from(input.u8().unwrap_or(1)),
                        name: "e",
                        binary: kind & 4 != 0,
                        payload: b"[1]",
                    },
                    _ => Message::Reply {
                        seq,
                        id: u64::from(input.u8().unwrap_or(1)),
                        status: input.u8().unwrap_or(0) % 6,
                        payload: b"1",
                    },
                })
            }
            8 => Some(match input.u8().unwrap_or(0) % 6 {
                0 => Message::Subscribe("e".into()),
                1 => Message::Unsubscribe("e".into()),
                2 => Message::Serve("e".into()),
                3 => Message::Unserve("e".into()),
                4 => Message::Serving(vec!["e".into()]),
                _ => Message::Subscriptions(vec!["e".into()]),
            }),
            9 => Some(Message::Leave),
            10 => Some(match input.u8().unwrap_or(0) & 1 {
                0 => Message::Ping,
                _ => Message::AskMembers,
            }),
            11 => {
                // A's filter answers about H's connection.
                let accept = input.u8().unwrap_or(1) & 1 == 1;
                if let Some(h) = &w.h {
                    if let Some(&id) = w.asked.get(&h.conn) {
                        if accept {
                            w.admitted.insert(id);
                        }
                        let (now, conn) = (w.now, h.conn);
                        w.a.admit(now, conn, accept);
                    }
                }
                None
            }
            12 => {
                w.advance(u64::from(input.u8().unwrap_or(0)) * 40);
                None
            }
            13 => {
                // H (re)connects: a new connection, a genuine handshake.
                if let Some(h) = w.h.take() {
                    let now = w.now;
                    w.a.connection_closed(now, h.conn);
                }
                let mut out = Vec::new();
                let now = w.now;
                w.h = hostile_handshake(&mut w.a, now, &mut w.rng, &mut out);
                if let Some(h) = &mut w.h {
                    h.hear();
                }
                // Anything else A said meanwhile goes to B's connection.
                for (conn, bytes) in out {
                    if let Some(&to) = w.pairs.get(&(0, conn)) {
                        w.wire.push_back((to, bytes));
                    }
                }
                None
            }
            14 => {
                let now = w.now;
                w.a.set_metadata(now, r#"{"v":2}"#.into());
                let _ = w.b.promote(now);
                None
            }
            _ => {
                if let Some(h) = w.h.take() {
                    let now = w.now;
                    w.a.connection_closed(now, h.conn);
                }
                None
            }
        };
        if let (Some(msg), Some(h)) = (msg, w.h.as_mut()) {
            match &msg {
                Message::Verdict { accepted: true } => h.verdict_sent = true,
                Message::Profile { .. } => h.profile_sent = true,
                _ => {}
            }
            let (now, conn, bytes) = (w.now, h.conn, h.seal(&msg));
            w.a.handle_bytes(now, conn, &bytes);
            // What that one message did, before anything else runs.
            let mut caused = Vec::new();
            while let Some(o) = w.a.poll_output() {
                caused.push(o);
            }
            if w.a.stats().messages_refused > before.2 {
                assert_eq!(
                    w.a.members(),
                    before.0,
                    "a refused {msg:?} changed the members"
                );
                assert_eq!(
                    w.a.master(),
                    before.1,
                    "a refused {msg:?} changed the master"
                );
                for o in &caused {
                    assert!(
                        !matches!(o, Output::Event(e) if !matches!(e, Event::ConnectionFailed { .. })),
                        "a refused {msg:?} caused {o:?}"
                    );
                }
            }
            for o in caused {
                w.carry_out(0, o);
            }
        }
        w.pump();
        w.check_filter();
    }

    // H goes; after the network is quiet, A and B agree on the master.
    if let Some(h) = w.h.take() {
        let now = w.now;
        w.a.connection_closed(now, h.conn);
    }
    for _ in 0..40 {
        w.advance(500);
    }
    let (am, bm) = (w.a.members(), w.b.members());
    let (a_id, b_id) = (w.a.me().id, w.b.me().id);
    if am.iter().map(|m| m.id).eq([b_id]) && bm.iter().map(|m| m.id).eq([a_id]) {
        assert_eq!(w.a.master(), w.b.master(), "two views of one cluster");
    }
});
