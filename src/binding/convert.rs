//! Conversions between JavaScript objects and driver types, and the one place where
//! invalid options become JavaScript errors.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use rand_core::OsRng;
use zeroize::Zeroize;

use crate::core::cluster::{Event, Stats};
use crate::core::config::Config;
use crate::core::crypto::handshake::MAX_CLUSTER_NAME;
use crate::core::crypto::Identity;
use crate::core::election::ElectionConfig;
use crate::core::message::MAX_HOST_NAME;
use crate::core::node::{is_valid_host_name, Candidate, NodeInfo};
use crate::driver::multicast;
use crate::driver::{
    ErrorCode, KeyMaterial, MulticastConfig, MulticastInterface, NodeConfig, Notification,
    DEFAULT_SEEDS_RESOLVE_INTERVAL,
};

// Where `mod.rs` has always found them.
use super::calls::CallRun;
pub use super::errors::NativeSendError;
pub use super::packed::send_batch;
use super::packed::{Deliveries, NativeMessages};

/// Options after `lib/options.js` has validated and defaulted them.
#[napi(object)]
pub struct NativeOptions {
    pub port: u32,
    pub address: String,
    pub host_name: String,
    pub multicast: bool,
    pub multicast_address: String,
    pub multicast_port: u32,
    pub multicast_interface: String,
    pub multicast_ttl: u32,
    /// `network.advertise` as "ip:port" (`[ip]:port` for IPv6), if set.
    pub advertise: Option<String>,
    pub cluster: String,
    pub cluster_key: Option<Buffer>,
    /// JSON text.
    pub metadata: String,
    pub peers: Vec<String>,
    /// ms; absent: [`DEFAULT_SEEDS_RESOLVE_INTERVAL`].
    pub peers_resolve_interval: Option<u32>,
    pub subnets: Vec<String>,
    pub master_eligible: bool,
    pub master_election_timeout: u32,
    pub master_polling_frequency: u32,
    pub send_presence_frequency: u32,
    pub connection_filter_timeout: u32,
    /// 0 is off.
    pub master_quorum: u32,
    pub max_message_size: u32,
    pub max_receive_buffer: u32,
    pub max_unacked_bytes: u32,
}

/// A node as JavaScript receives it; `index.js` parses `metadata`.
#[napi(object)]
pub struct NativeNodeInfo {
    pub id: String,
    pub host_name: String,
    pub ip: String,
    pub port: u32,
    /// `network.advertise` of the node as "host:port", if it set one: where it asks to be
    /// dialed (`ip` stays the address seen on the socket).
    pub advertised: Option<String>,
    /// JSON text; none for a node not admitted by both ends (the connection filter's
    /// candidate, a node that refused this one): its metadata never reached this node.
    pub metadata: Option<String>,
}

/// One notification; `kind` is the event name JavaScript emits (`message` for a custom
/// event, named in `event`).
#[napi(object, object_from_js = false)]
pub struct NativeEvent {
    pub kind: String,
    pub node: Option<NativeNodeInfo>,
    pub port: Option<u32>,
    pub message: Option<String>,
    pub code: Option<String>,
    /// A run of custom event messages (`kind` is `messages`), packed (see `packed.rs`).
    pub messages: Option<NativeMessages>,
    /// A run of requests and answers (`kind` is `calls`), packed (see `calls.rs`).
    pub calls: Option<NativeMessages>,
    /// A send batch's id (`kind` is `sent`).
    pub batch: Option<u32>,
    /// Its failures, one entry per message, when any message failed.
    pub failures: Option<Vec<Option<NativeSendError>>>,
}

pub(super) fn plain(kind: &str, node: Option<&NodeInfo>) -> NativeEvent {
    NativeEvent {
        kind: kind.to_owned(),
        node: node.map(NativeNodeInfo::from),
        port: None,
        message: None,
        code: None,
        messages: None,
        calls: None,
        batch: None,
        failures: None,
    }
}

/// Converts a batch of notifications, packing each run of custom event messages into one.
pub fn pack(batch: Vec<Notification>) -> Vec<NativeEvent> {
    let mut out = Vec::new();
    let mut run: Option<Deliveries> = None;
    let mut calls: Option<CallRun> = None;
    for n in batch {
        // Requests and answers are packed alike, in their own runs, keeping the order.
        if let Notification::Cluster(Event::Request { .. } | Event::Answer { .. }) = &n {
            if let Some(r) = run.take() {
                out.push(messages(r));
            }
            let Notification::Cluster(e) = n else {
                unreachable!("matched above")
            };
            calls.get_or_insert_with(CallRun::default).push(e);
            continue;
        }
        if let Some(c) = calls.take() {
            out.push(c.event());
        }
        if let Notification::Cluster(Event::Delivery {
            from,
            name,
            binary,
            payload,
        }) = n
        {
            run.get_or_insert_with(Deliveries::default)
                .push(from, name, binary, payload);
            continue;
        }
        if let Some(r) = run.take() {
            out.push(messages(r));
        }
        out.push(NativeEvent::from(n));
    }
    if let Some(r) = run {
        out.push(messages(r));
    }
    if let Some(c) = calls {
        out.push(c.event());
    }
    out
}

fn messages(run: Deliveries) -> NativeEvent {
    NativeEvent {
        messages: Some(run.finish()),
        ..plain("messages", None)
    }
}

/// Counters of one node, as `espial.stats()` returns them.
#[napi(object)]
pub struct NativeStats {
    pub messages_out: i64,
    pub messages_in: i64,
    pub bytes_out: i64,
    pub bytes_in: i64,
    pub handshakes_completed: i64,
    pub handshakes_failed: i64,
    pub frames_rejected: i64,
    pub connections_refused: i64,
    pub nodes_rejected: i64,
    pub beacons_sent: i64,
    pub beacons_ignored: i64,
    pub beacons_refused: i64,
    pub messages_refused: i64,
    pub filter_errors: i64,
    pub key_mismatches: i64,
    pub dials_skipped: i64,
    pub identity_mismatches: i64,
    pub version_mismatches: i64,
    pub messages_resent: i64,
    pub duplicates_dropped: i64,
    pub messages_undelivered: i64,
    pub probes_sent: i64,
    pub probes_received: i64,
    pub probes_rejected: i64,
    pub probes_relayed: i64,
    pub indirect_probes: i64,
    pub answers_asked: i64,
    pub pauses_noticed: i64,
    pub requests_out: i64,
    pub requests_in: i64,
    pub replies_late: i64,
    pub replies_refused: i64,
    pub seed_lookups_failed: i64,
}

impl From<Stats> for NativeStats {
    fn from(s: Stats) -> Self {
        // Counters stay far below 2^63; saturate rather than wrap if one ever did not.
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        NativeStats {
            messages_out: n(s.messages_out),
            messages_in: n(s.messages_in),
            bytes_out: n(s.bytes_out),
            bytes_in: n(s.bytes_in),
            handshakes_completed: n(s.handshakes_completed),
            handshakes_failed: n(s.handshakes_failed),
            frames_rejected: n(s.frames_rejected),
            connections_refused: n(s.connections_refused),
            nodes_rejected: n(s.nodes_rejected),
            beacons_sent: n(s.beacons_sent),
            beacons_ignored: n(s.beacons_ignored),
            beacons_refused: n(s.beacons_refused),
            messages_refused: n(s.messages_refused),
            filter_errors: n(s.filter_errors),
            key_mismatches: n(s.key_mismatches),
            dials_skipped: n(s.dials_skipped),
            identity_mismatches: n(s.identity_mismatches),
            version_mismatches: n(s.version_mismatches),
            messages_resent: n(s.messages_resent),
            duplicates_dropped: n(s.duplicates_dropped),
            messages_undelivered: n(s.messages_undelivered),
            probes_sent: n(s.probes_sent),
            probes_received: n(s.probes_received),
            probes_rejected: n(s.probes_rejected),
            probes_relayed: n(s.probes_relayed),
            indirect_probes: n(s.indirect_probes),
            answers_asked: n(s.answers_asked),
            pauses_noticed: n(s.pauses_noticed),
            requests_out: n(s.requests_out),
            requests_in: n(s.requests_in),
            replies_late: n(s.replies_late),
            replies_refused: n(s.replies_refused),
            seed_lookups_failed: n(s.seed_lookups_failed),
        }
    }
}

impl From<&NodeInfo> for NativeNodeInfo {
    fn from(n: &NodeInfo) -> Self {
        NativeNodeInfo {
            id: n.id.to_string(),
            host_name: n.host_name.clone(),
            ip: n.ip.to_string(),
            port: u32::from(n.port),
            advertised: n.advertised.map(|a| a.to_string()),
            metadata: Some(n.metadata.clone()),
        }
    }
}

impl From<&Candidate> for NativeNodeInfo {
    fn from(n: &Candidate) -> Self {
        NativeNodeInfo {
            id: n.id.to_string(),
            host_name: n.host_name.clone(),
            ip: n.ip.to_string(),
            port: u32::from(n.port),
            advertised: n.advertised.map(|a| a.to_string()),
            metadata: None,
        }
    }
}

impl From<Notification> for NativeEvent {
    fn from(n: Notification) -> Self {
        let event = plain;
        match n {
            Notification::Listening { port } => NativeEvent {
                port: Some(u32::from(port)),
                ..event("listening", None)
            },
            Notification::Sent { id, results } => NativeEvent {
                batch: Some(id as u32),
                failures: results.iter().any(|r| r.is_err()).then(|| {
                    results
                        .into_iter()
                        .map(|r| r.err().map(NativeSendError::from))
                        .collect()
                }),
                ..event("sent", None)
            },
            Notification::Error { code, message } => NativeEvent {
                message: Some(message),
                code: Some(code.as_str().to_owned()),
                ..event("error", None)
            },
            Notification::FilterTimeout { node, message } => NativeEvent {
                message: Some(message),
                code: Some(ErrorCode::Filter.as_str().to_owned()),
                node: Some(NativeNodeInfo::from(&node)),
                ..event("error", None)
            },
            Notification::Cluster(e) => match &e {
                Event::NodeAdded(n) => event("added_node", Some(n)),
                Event::NodeRemoved(n) => event("removed_node", Some(n)),
                Event::NodeUpdated(n) => event("updated_node", Some(n)),
                Event::NodeAccepted(n) => event("node_accepted", Some(n)),
                Event::NodeRejected(n) => NativeEvent {
                    node: Some(NativeNodeInfo::from(n)),
                    ..event("node_rejected", None)
                },
                Event::NewMaster(n) => event("new_master", n.as_ref()),
                Event::Promotion { previous } => event("promotion", previous.as_ref()),
                Event::Demotion { new } => event("demotion", new.as_ref()),
                // The events as a packed run, each "from" the node they were for.
                Event::Undelivered { node, events } => {
                    let mut run = Deliveries::default();
                    for e in events.clone() {
                        run.push(node.id, e.name, e.binary, e.payload);
                    }
                    NativeEvent {
                        messages: Some(run.finish()),
                        ..event("undelivered", Some(node))
                    }
                }
                // Messages are packed by `pack`; failed connections are never delivered.
                Event::ConnectionFailed { .. }
                | Event::BeaconKeyMismatch { .. }
                | Event::Explained { .. }
                | Event::BeaconRefused { .. }
                | Event::BeaconVersionMismatch { .. }
                | Event::Request { .. }
                | Event::Answer { .. }
                | Event::Delivery { .. } => event("connection_failed", None),
            },
        }
    }
}

/// The metadata is over its documented bound.
pub fn metadata_too_large(len: usize, max: usize) -> Error {
    Error::new(
        Status::InvalidArg,
        format!("espial: metadata is {len} bytes as JSON, over the {max}-byte limit"),
    )
}

fn invalid(option: &str, expected: &str) -> Error {
    Error::new(
        Status::InvalidArg,
        format!("espial: option \"{option}\" must be {expected}"),
    )
}

fn ip(option: &str, text: &str) -> Result<IpAddr> {
    text.parse()
        .map_err(|_| invalid(option, "an IP address such as \"127.0.0.1\""))
}

fn ipv4(option: &str, text: &str) -> Result<Ipv4Addr> {
    text.parse()
        .map_err(|_| invalid(option, "an IPv4 address such as \"127.0.0.1\""))
}

fn port(option: &str, value: u32) -> Result<u16> {
    u16::try_from(value).map_err(|_| invalid(option, "a port number from 0 to 65535"))
}

/// Checks what JavaScript already validated once more (the binding is public too) and
/// builds the driver's configuration with a fresh node id.
pub fn node_config(mut o: NativeOptions) -> Result<NodeConfig> {
    if o.cluster.is_empty() || o.cluster.len() > MAX_CLUSTER_NAME {
        return Err(invalid("cluster", "a name of 1 to 64 bytes"));
    }
    if o.host_name.len() > MAX_HOST_NAME {
        return Err(invalid("network.host_name", "at most 255 bytes"));
    }
    // Peers refuse such a name (it would reach their logs and terminals).
    if !is_valid_host_name(&o.host_name) {
        return Err(invalid(
            "network.host_name",
            "a name without control characters",
        ));
    }
    let mut core = Config::lan(o.cluster.clone());
    if o.metadata.len() > core.max_metadata {
        return Err(metadata_too_large(o.metadata.len(), core.max_metadata));
    }
    // Stretched when the node starts, off this thread (see `driver::KeyMaterial`). The
    // Buffer is `lib/options.js`'s own copy of the option, so it is wiped here: from now on
    // the key's bytes live only in memory that is wiped after use.
    let key_material = o.cluster_key.as_mut().map(|buffer| {
        let bytes = buffer.as_mut();
        let material = KeyMaterial::new(bytes.to_vec());
        bytes.zeroize();
        material
    });
    let positive = |option: &str, ms: u32| {
        if ms == 0 {
            Err(invalid(option, "a positive number of milliseconds"))
        } else {
            Ok(Duration::from_millis(u64::from(ms)))
        }
    };
    core.detector.interval = positive("send_presence_frequency", o.send_presence_frequency)?;
    let filter_timeout = positive("connection_filter_timeout", o.connection_filter_timeout)?;
    // Admission waits for the filters on both ends, then one round trip.
    core.admission_timeout = filter_timeout + Duration::from_secs(2);
    if o.max_message_size == 0 {
        return Err(invalid("max_message_size", "a positive number of bytes"));
    }
    core.set_max_message(o.max_message_size as usize);
    if o.max_unacked_bytes == 0 {
        return Err(invalid("max_unacked_bytes", "a positive number of bytes"));
    }
    core.max_unacked = o.max_unacked_bytes as usize;
    if o.max_receive_buffer == 0 {
        return Err(invalid("max_receive_buffer", "a positive number of bytes"));
    }
    let listen_port = port("network.port", o.port)?;
    let subnets = o
        .subnets
        .iter()
        .map(|s| ipv4("network.subnets", s))
        .collect::<Result<Vec<_>>>()?;
    // As in the original, subnets are scanned only when multicast discovery is off.
    if !o.multicast {
        core.discovery.subnets = subnets;
    }
    core.discovery.scan_port = listen_port;
    core.discovery.probe_lost = !o.multicast;
    core.election = ElectionConfig {
        eligible: o.master_eligible,
        timeout: positive("master_election_timeout", o.master_election_timeout)?,
        quorum: o.master_quorum as usize,
    };
    let address = ip("network.address.local", &o.address)?;
    let advertised = match &o.advertise {
        None => None,
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(a) if crate::core::cluster::is_dialable(a) => Some(a),
            _ => {
                return Err(invalid(
                    "network.advertise",
                    "\"ip:port\" with a unicast address, like \"203.0.113.7:27272\" or \"[2001:db8::7]:27272\"",
                ))
            }
        },
    };
    let multicast = if o.multicast {
        let group = ip("network.multicast_address", &o.multicast_address)?;
        if !group.is_multicast() {
            return Err(invalid(
                "network.multicast_address",
                "a multicast address (224.0.0.0 to 239.255.255.255, or IPv6 ff00::/8)",
            ));
        }
        let interface = match group {
            IpAddr::V4(_) => {
                MulticastInterface::V4(ipv4("network.multicast_interface", &o.multicast_interface)?)
            }
            IpAddr::V6(_) => {
                let name = &o.multicast_interface;
                let index = multicast::interface_index(name).map_err(|e| {
                    invalid(
                        "network.multicast_interface",
                        &format!("the name or index of an interface of this host for an IPv6 group (\"{name}\": {e})"),
                    )
                })?;
                MulticastInterface::V6 {
                    index,
                    name: name.clone(),
                }
            }
        };
        Some(MulticastConfig {
            group,
            port: port("network.multicast_port", o.multicast_port)?,
            interface,
            ttl: o.multicast_ttl.min(255),
        })
    } else {
        None
    };
    // The node's key pair is made now, so that its id is known before it starts.
    let identity = Identity::generate(&mut OsRng);
    Ok(NodeConfig {
        me: NodeInfo {
            id: identity.id(),
            host_name: o.host_name,
            ip: address,
            port: listen_port,
            advertised,
            metadata: o.metadata,
            master_eligible: o.master_eligible,
        },
        core,
        multicast,
        seeds: o.peers,
        seeds_resolve_interval: match o.peers_resolve_interval {
            Some(ms) => positive("network.peers_resolve_interval", ms)?,
            None => DEFAULT_SEEDS_RESOLVE_INTERVAL,
        },
        filter_timeout,
        max_receive_buffer: o.max_receive_buffer as usize,
        key_material,
        identity,
    })
}
