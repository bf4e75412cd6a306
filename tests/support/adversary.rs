//! TEST-ONLY: a hostile espial peer for the JavaScript attack tests
//! (`__test__/hostile-peer.test.js`). Not part of espial; never run it against a node you do
//! not own. It connects to 127.0.0.1 only, completes a genuine handshake with the crate's own
//! `Handshake`/`Session` (with or without the cluster key, under a fresh identity key pair or
//! a given one), then does what its arguments say, in order:
//!
//! ```text
//! adversary <port> <cluster> [option…] [step…]
//!   intro <metadata>     introduce itself and admit the node; the metadata, verbatim, goes
//!                        in the profile sent once the node has admitted it (`verdict`)
//!   verdict              wait for the node's verdict (then send the profile if admitted);
//!                        prints `verdict true|false|closed`
//!   heard                read until the node closes the connection; prints `heard ` and
//!                        the kinds of every message the node sent it, comma-separated
//!   update <metadata>    send an Update with this metadata, verbatim
//!   event <name> <text>  send custom event <name> with these bytes as its JSON text
//!   asking <who> <n>     send <n> (at most 10 000) `Asking` records at once, about <who>:
//!                        `self` (its own id), `node` (the node's), or a node id
//!   closed               wait for the node to close the connection; prints `closed`
//!   sleep <ms>           wait (at most 10 s)
//!   whoami               prints `id <its id>` and `node <the id the node proved>`
//! options (anywhere before the steps):
//!   --key <secret>           the cluster key (as the `cluster_key` option; default none)
//!   --identity <hex>         prove this private key (32 bytes, hex; default a fresh one)
//!   --claim-id <uuid>        introduce itself with this id instead of the one it proved
//!   --claim-key <hex>        name this public key (33 bytes, compressed, hex) in its key
//!                            confirmation while signing with its own: an impostor
//!   --hello-version <n>      send a hello of protocol version <n> and no more of the
//!                            handshake; the steps then run on the bare connection
//! ```
//!
//! A handshake the node refuses prints `refused` and ends the run (exit 0).
//!
//! Declared as a cargo example in Cargo.toml (kept here, out of the user-facing `examples/`),
//! so `cargo test` (and so `npm test`) builds it as `target/debug/examples/adversary`. It exits
//! 0 when every step ran, 2 on bad arguments, and panics (101) on anything unexpected; every
//! wait is bounded by 10 s.

#[allow(dead_code)]
mod peer;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use espial::core::crypto::{ClusterKey, Handshake, Identity, Role};
use espial::core::message::Message;
use espial::core::node::NodeId;
use espial::core::wire;
use peer::{wait_closed, Peer, WAIT};
use rand_core::OsRng;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(usage) = run(&args) {
        eprintln!("adversary: {usage}");
        std::process::exit(2);
    }
}

/// The identity options.
#[derive(Default)]
struct Options {
    key: Option<ClusterKey>,
    identity: Option<Identity>,
    claim_id: Option<NodeId>,
    claim_key: Option<[u8; 33]>,
    hello_version: Option<u8>,
}

fn unhex<const N: usize>(flag: &str, text: &str) -> Result<[u8; N], String> {
    let bad = || format!("{flag}: expected {N} bytes of hex");
    if text.len() != 2 * N {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Takes the options out of `args`, leaving the steps.
fn options(args: &[String], cluster: &str) -> Result<(Options, Vec<String>), String> {
    let mut o = Options::default();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a}: a value is missing"));
        match a.as_str() {
            // Stretched as a node stretches it, salted with the cluster name.
            "--key" => o.key = Some(ClusterKey::new(value()?.as_bytes(), cluster)),
            "--identity" => {
                let secret = unhex::<32>(a, &value()?)?;
                o.identity = Some(
                    Identity::from_secret_bytes(&secret)
                        .ok_or("--identity: not a P-256 private key")?,
                );
            }
            "--claim-id" => {
                o.claim_id = Some(value()?.parse().map_err(|_| "--claim-id: not a node id")?)
            }
            "--claim-key" => o.claim_key = Some(unhex::<33>(a, &value()?)?),
            "--hello-version" => {
                o.hello_version = Some(value()?.parse().map_err(|_| "--hello-version: not 0-255")?)
            }
            _ => rest.push(a.clone()),
        }
    }
    Ok((o, rest))
}

/// Sends a hello that says `version`, of the layout this build knows otherwise.
fn bare_hello(addr: SocketAddr, cluster: &str, version: u8) -> TcpStream {
    use std::io::Write;
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let (_, mut hello) = Handshake::start(Role::Initiator, cluster, None, &mut OsRng);
    hello[1] = version;
    stream.write_all(&wire::frame(&hello)).unwrap();
    stream
}

fn run(args: &[String]) -> Result<(), String> {
    let [port, cluster, rest @ ..] = args else {
        return Err("usage: adversary <port> <cluster> [option…] [step…]".into());
    };
    let port: u16 = port.parse().map_err(|_| format!("bad port {port}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (o, steps) = options(rest, cluster)?;
    if let Some(version) = o.hello_version {
        let mut stream = bare_hello(addr, cluster, version);
        for step in &steps {
            match step.as_str() {
                "closed" => {
                    wait_closed(&mut stream)?;
                    println!("closed");
                }
                other => return Err(format!("{other:?}: only `closed` follows --hello-version")),
            }
        }
        return Ok(());
    }
    let identity = o.identity.unwrap_or_else(|| Identity::generate(&mut OsRng));
    let mut peer = match Peer::try_connect(addr, cluster, o.key.as_ref(), identity, o.claim_key) {
        Ok(peer) => peer,
        Err(_) => {
            println!("refused");
            return Ok(());
        }
    };
    if let Some(id) = o.claim_id {
        peer.id = id;
    }
    let mut steps = steps.iter().map(String::as_str);
    let mut arg = |step: &str| {
        steps
            .next()
            .ok_or_else(|| format!("{step}: an argument is missing"))
    };
    while let Ok(step) = arg("") {
        match step {
            "intro" => peer.introduce(arg("intro")?),
            "verdict" => match peer.their_verdict() {
                Some(accepted) => println!("verdict {accepted}"),
                None => println!("verdict closed"),
            },
            "update" => {
                let metadata = arg("update")?.to_owned();
                peer.send(&Message::Update { metadata });
            }
            "event" => {
                let name = arg("event")?;
                peer.send_event(name, false, arg("event")?.as_bytes());
            }
            "asking" => {
                let about = match arg("asking")? {
                    "self" => peer.id,
                    "node" => peer.node_id,
                    id => id.parse().map_err(|_| "asking: not a node id")?,
                };
                let n: u32 = arg("asking")?.parse().map_err(|_| "asking: bad count")?;
                for _ in 0..n.min(10_000) {
                    peer.send(&Message::Asking(about));
                }
            }
            "heard" => {
                peer.read_until_closed()?;
                let kinds: Vec<String> = peer
                    .heard
                    .iter()
                    .map(|plain| match Message::decode(plain, 1 << 20) {
                        Ok(m) => format!("{m:?}")
                            .split([' ', '(', '{'])
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                        Err(_) => "undecodable".into(),
                    })
                    .collect();
                println!("heard {}", kinds.join(","));
            }
            "closed" => {
                wait_closed(&mut peer.stream)?;
                println!("closed");
            }
            "whoami" => {
                println!("id {}", peer.identity.id());
                println!("node {}", peer.node_id);
            }
            "sleep" => {
                let ms: u64 = arg("sleep")?.parse().map_err(|_| "sleep: bad ms")?;
                std::thread::sleep(Duration::from_millis(ms).min(WAIT));
            }
            other => return Err(format!("unknown step {other:?}")),
        }
    }
    Ok(())
}
