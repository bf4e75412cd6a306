//! A peer that speaks espial's protocol itself, with the crate's own handshake and record
//! layer over a blocking `TcpStream`, so it can complete a genuine handshake and then send
//! whatever it likes. Test-only: shared by the Rust attack tests (`support/mod.rs`) and the
//! adversary that the JavaScript tests drive (`adversary.rs`, a cargo example).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use espial::core::crypto::identity::PUBLIC_KEY_LEN;
use espial::core::crypto::{ClusterKey, Handshake, Identity, Role, Session};
use espial::core::message::Message;
use espial::core::node::NodeId;
use espial::core::wire;
use rand_core::{OsRng, RngCore};

/// How long any one wait on the node may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A peer past the handshake: it can send records the node accepts.
pub struct Peer {
    pub stream: TcpStream,
    pub session: Session,
    /// The id it introduces itself with by default: its identity's, the one it proved.
    pub id: NodeId,
    /// The key pair it proved in the handshake.
    pub identity: Identity,
    /// The id the node proved in the handshake.
    pub node_id: NodeId,
    /// The host name it introduces itself with.
    pub host_name: String,
    /// The port it says it listens on (9 unless it listens: see [`Peer::accept`]).
    pub port: u16,
    /// The address it asks to be dialed at in its introduction (`network.advertise`), if any.
    pub advertised: Option<SocketAddr>,
    /// The metadata of the profile it sends once the node has admitted it, if any.
    pub profile: Option<String>,
    /// Every message the node sent it, decrypted, in order (the key confirmation aside).
    pub heard: Vec<Vec<u8>>,
    /// The number of the last custom event it sent on this connection (its stream is
    /// announced with the first).
    pub events_sent: u64,
}

/// How a handshake with the node went wrong, for tests that expect it to.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The node closed the connection before its key confirmation (what it sent until then
    /// was only its hello).
    Closed,
    /// The node's own hello or confirmation did not check out (the message says why).
    Failed(String),
}

impl Peer {
    /// Connects to `addr` and completes the handshake and key confirmation of `cluster`,
    /// with a fresh identity key pair.
    pub fn connect(addr: SocketAddr, cluster: &str) -> Peer {
        Peer::connect_keyed(addr, cluster, None)
    }

    /// [`Peer::connect`] to a cluster with a key (`None`: keyless).
    pub fn connect_keyed(addr: SocketAddr, cluster: &str, key: Option<&ClusterKey>) -> Peer {
        Peer::connect_as(addr, cluster, key, Identity::generate(&mut OsRng))
    }

    /// [`Peer::connect_keyed`] proving the key pair `identity` (a fresh one or one it holds).
    pub fn connect_as(
        addr: SocketAddr,
        cluster: &str,
        key: Option<&ClusterKey>,
        identity: Identity,
    ) -> Peer {
        Peer::try_connect(addr, cluster, key, identity, None).expect("handshake")
    }

    /// Connects as the initiator and runs the handshake; its confirmation names `claimed`
    /// as its key (while `identity` signs) if given: an impostor's. `Err` if the node
    /// refuses.
    pub fn try_connect(
        addr: SocketAddr,
        cluster: &str,
        key: Option<&ClusterKey>,
        identity: Identity,
        claimed: Option<[u8; PUBLIC_KEY_LEN]>,
    ) -> Result<Peer, Refused> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let (hs, hello) = Handshake::start(Role::Initiator, cluster, key, &mut OsRng);
        stream.write_all(&wire::frame(&hello)).unwrap();
        let their_hello = read_frame(&mut stream).ok_or(Refused::Closed)?;
        let claimed = claimed.unwrap_or(*identity.public_key());
        let (confirming, confirmation) = hs
            .finish_claiming(&their_hello, &identity, &claimed)
            .map_err(|e| Refused::Failed(e.to_string()))?;
        stream
            .write_all(&confirmation.expect("an initiator confirms at once"))
            .unwrap();
        let mut theirs = read_frame(&mut stream).ok_or(Refused::Closed)?;
        let done = confirming
            .verify(&mut theirs)
            .map_err(|e| Refused::Failed(e.to_string()))?;
        Ok(Peer::ready(stream, done.session, identity, done.peer, 9))
    }

    fn ready(
        stream: TcpStream,
        session: Session,
        identity: Identity,
        node_id: NodeId,
        port: u16,
    ) -> Peer {
        Peer {
            stream,
            session,
            id: identity.id(),
            identity,
            node_id,
            host_name: "attacker".into(),
            port,
            advertised: None,
            profile: None,
            heard: Vec::new(),
            events_sent: 0,
        }
    }

    /// Accepts one connection on `listener` (a node dialing us) and runs the handshake as
    /// its responder, proving `identity`. `Err` if the node refuses or does not check out.
    pub fn accept(
        listener: &TcpListener,
        cluster: &str,
        key: Option<&ClusterKey>,
        identity: Identity,
    ) -> Result<Peer, Refused> {
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + WAIT;
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(Refused::Failed(format!("no dial came: {e}"))),
            }
        };
        let port = listener.local_addr().unwrap().port();
        Peer::answer(stream, port, cluster, key, identity)
    }

    /// Runs the handshake on `stream`, a node's dial accepted on our `port`, as its
    /// responder, proving `identity`. `Err` if the node refuses or does not check out.
    pub fn answer(
        mut stream: TcpStream,
        port: u16,
        cluster: &str,
        key: Option<&ClusterKey>,
        identity: Identity,
    ) -> Result<Peer, Refused> {
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let (hs, hello) = Handshake::start(Role::Responder, cluster, key, &mut OsRng);
        stream.write_all(&wire::frame(&hello)).unwrap();
        let their_hello = read_frame(&mut stream).ok_or(Refused::Closed)?;
        let (confirming, _) = hs
            .finish(&their_hello, &identity)
            .map_err(|e| Refused::Failed(e.to_string()))?;
        let mut theirs = read_frame(&mut stream).ok_or(Refused::Closed)?;
        let done = confirming
            .verify(&mut theirs)
            .map_err(|e| Refused::Failed(e.to_string()))?;
        let ours = done
            .confirmation
            .expect("a responder confirms once verified");
        stream.write_all(&ours).unwrap();
        Ok(Peer::ready(stream, done.session, identity, done.peer, port))
    }

    /// Seals `msg`; returns the frame written, so it can be replayed.
    pub fn send(&mut self, msg: &Message) -> Vec<u8> {
        let frame = self.session.seal(&msg.encode()).unwrap();
        self.stream.write_all(&frame).unwrap();
        frame
    }

    /// Introduces itself (id, host name, port) and admits the node; `metadata`, whatever
    /// it is, goes in the profile that [`Peer::their_verdict`] sends once the node has
    /// admitted it.
    pub fn introduce(&mut self, metadata: &str) {
        self.introduce_as(self.id, metadata);
    }

    /// [`Peer::introduce`] claiming the id `id`, which need not be the one it proved.
    pub fn introduce_as(&mut self, id: NodeId, metadata: &str) {
        self.profile = Some(metadata.into());
        self.send(&Message::Introduce {
            id,
            host_name: self.host_name.clone(),
            port: self.port,
            advertised: self.advertised,
        });
        self.send(&Message::Verdict { accepted: true });
    }

    /// Sends its introduction only.
    pub fn introduce_only(&mut self) {
        self.send(&Message::Introduce {
            id: self.id,
            host_name: self.host_name.clone(),
            port: self.port,
            advertised: self.advertised,
        });
    }

    /// Sends a profile with `metadata`, whatever the stage.
    pub fn send_profile(&mut self, metadata: &str) {
        self.send(&Message::Profile {
            metadata: metadata.into(),
            master_eligible: false,
            max_message: 1 << 20,
        });
    }

    /// Reads the node's next message, kept in [`Peer::heard`]; `None` at end of stream.
    pub fn next_message(&mut self) -> Option<Vec<u8>> {
        let frame = read_frame(&mut self.stream)?;
        let plain = self.session.open(&frame).unwrap();
        self.heard.push(plain.clone());
        Some(plain)
    }

    /// Reads until the node's verdict on us; `None` if it closed the connection first. If
    /// the node admitted us and a profile is pending (see [`Peer::introduce`]), sends it.
    pub fn their_verdict(&mut self) -> Option<bool> {
        loop {
            let plain = self.next_message()?;
            if let Ok(Message::Verdict { accepted }) = Message::decode(&plain, 1 << 20) {
                if let Some(metadata) = self.profile.take().filter(|_| accepted) {
                    self.send_profile(&metadata);
                }
                return Some(accepted);
            }
        }
    }

    /// Reads everything the node sends until it closes the connection (at most [`WAIT`]);
    /// an error if it has not closed it by then.
    pub fn read_until_closed(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.next_message().is_none() {
                return Ok(());
            }
        }
        Err("the node kept the connection open".into())
    }

    /// The next number of our stream, announcing it first if this is its first message.
    fn next_seq(&mut self) -> u64 {
        if self.events_sent == 0 {
            self.send(&Message::Stream {
                id: OsRng.next_u64() | 1,
                ack_bytes: 1 << 20,
            });
        }
        self.events_sent += 1;
        self.events_sent
    }

    /// Sends a reply to request `id`, in sequence on our stream, whether or not it was
    /// asked.
    pub fn send_reply(&mut self, id: u64, status: u8, payload: &[u8]) -> Vec<u8> {
        let seq = self.next_seq();
        self.send(&Message::Reply {
            seq,
            id,
            status,
            payload,
        })
    }

    /// Sends request `id` for handler `name`, in sequence on our stream.
    pub fn send_request(&mut self, id: u64, name: &str, payload: &[u8]) -> Vec<u8> {
        let seq = self.next_seq();
        self.send(&Message::Request {
            seq,
            id,
            name,
            binary: false,
            payload,
        })
    }

    /// Sends custom event `name` with `payload`, as JSON text unless `binary`.
    /// Each connection is a stream of its own, announced before its first event, so that
    /// a peer reconnecting under an id it held is not taken for a replay.
    pub fn send_event(&mut self, name: &str, binary: bool, payload: &[u8]) -> Vec<u8> {
        let seq = self.next_seq();
        self.send(&Message::Event {
            seq,
            name,
            binary,
            payload,
        })
    }
}

/// Waits until the node closes `s` (end of stream or reset), skipping whatever it still
/// sends; an error saying so if it has not within [`WAIT`].
pub fn wait_closed(s: &mut TcpStream) -> Result<(), String> {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(format!("the node kept the connection open ({e})")),
        }
    }
    Err("the node kept the connection open".into())
}

/// Reads one frame body, `None` at end of stream (or a reset).
pub fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; wire::LEN_PREFIX];
    read_exact_or_end(s, &mut len)?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    read_exact_or_end(s, &mut body)?;
    Some(body)
}

fn read_exact_or_end(s: &mut TcpStream, buf: &mut [u8]) -> Option<()> {
    match s.read_exact(buf) {
        Ok(()) => Some(()),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
            ) =>
        {
            None
        }
        Err(e) => panic!("reading from the node: {e}"),
    }
}
