//! TEST-ONLY: a hostile espial peer for the JavaScript attack tests
//! (`__test__/hostile-peer.test.js`). Not part of espial; never run it against a node you do
//! not own. It connects to 127.0.0.1 only, completes a genuine handshake with the crate's own
//! `Handshake`/`Session` (cluster without a key), then does what its arguments say, in order:
//!
//! ```text
//! adversary <port> <cluster> [step…]
//!   intro <metadata>     introduce itself and admit the node; the metadata, verbatim, goes
//!                        in the profile sent once the node has admitted it (`verdict`)
//!   verdict              wait for the node's verdict (then send the profile if admitted);
//!                        prints `verdict true|false|closed`
//!   heard                read until the node closes the connection; prints `heard ` and
//!                        the kinds of every message the node sent it, comma-separated
//!   update <metadata>    send an Update with this metadata, verbatim
//!   event <name> <text>  send custom event <name> with these bytes as its JSON text
//!   closed               wait for the node to close the connection; prints `closed`
//!   sleep <ms>           wait (at most 10 s)
//! ```
//!
//! Declared as a cargo example in Cargo.toml (kept here, out of the user-facing `examples/`),
//! so `cargo test` (and so `npm test`) builds it as `target/debug/examples/adversary`. It exits
//! 0 when every step ran, 2 on bad arguments, and panics (101) on anything unexpected; every
//! wait is bounded by 10 s.

#[allow(dead_code)]
mod peer;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use espial::core::message::Message;
use peer::{wait_closed, Peer, WAIT};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(usage) = run(&args) {
        eprintln!("adversary: {usage}");
        std::process::exit(2);
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let [port, cluster, steps @ ..] = args else {
        return Err("usage: adversary <port> <cluster> [step…]".into());
    };
    let port: u16 = port.parse().map_err(|_| format!("bad port {port}"))?;
    let mut peer = Peer::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), cluster);
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
            "sleep" => {
                let ms: u64 = arg("sleep")?.parse().map_err(|_| "sleep: bad ms")?;
                std::thread::sleep(Duration::from_millis(ms).min(WAIT));
            }
            other => return Err(format!("unknown step {other:?}")),
        }
    }
    Ok(())
}
