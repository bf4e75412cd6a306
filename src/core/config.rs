//! Protocol settings of the core, as named presets rather than numbers scattered in code
//! (after memberlist's `DefaultLANConfig`).

use std::time::Duration;

use super::crypto::ClusterKey;
use super::detector::DetectorConfig;
use super::discovery::DiscoveryConfig;
use super::election::ElectionConfig;
use super::message::MAX_MEMBERS;

/// Settings the core needs. The binding builds one from the user's options.
#[derive(Debug, Clone)]
pub struct Config {
    /// Nodes only talk to nodes of the same cluster name.
    pub cluster: String,
    /// Optional shared secret mixed into every handshake and beacon.
    pub cluster_key: Option<ClusterKey>,
    /// A connection whose handshake is not complete by then is closed.
    pub handshake_timeout: Duration,
    /// A dial not connected by then is given up.
    pub dial_timeout: Duration,
    /// A connection whose admission (the connection filter on both ends) is not complete
    /// by then is closed; longer than the filter's own timeout.
    pub admission_timeout: Duration,
    /// How long a member whose connection dropped stays a suspect while we redial it,
    /// before it is removed (a refused redial removes it at once).
    pub suspect_timeout: Duration,
    /// Heartbeats and when a silent peer is dead.
    pub detector: DetectorConfig,
    /// Seeds, scans, probes and the dial rule.
    pub discovery: DiscoveryConfig,
    /// Master eligibility, election timeout and quorum.
    pub election: ElectionConfig,
    /// Delays of the quick beacons sent at start, so a cluster forms fast.
    pub beacon_burst: Vec<Duration>,
    /// Period of beacons after the burst, so late nodes and healed partitions are found.
    pub beacon_interval: Duration,
    /// Least gap between two beacons, when answering a newcomer's beacon.
    pub beacon_min_gap: Duration,
    /// Largest frame an authenticated peer may send: a message plus its headers.
    pub max_frame: usize,
    /// Largest custom event payload, in bytes (`max_message_size`).
    pub max_message: usize,
    /// Bytes of custom events sent to one peer and not yet acknowledged by it above which
    /// senders wait (`max_unacked_bytes`; see `sessions`).
    pub max_unacked: usize,
    /// Largest metadata JSON text, in bytes.
    pub max_metadata: usize,
    /// Most connections still in their handshake at once; more are refused, so half-open
    /// connections cannot exhaust memory.
    pub max_pending_handshakes: usize,
    /// Most incoming connections still in their handshake from one IP address, so one
    /// host cannot take every slot.
    pub max_pending_per_ip: usize,
    /// Most peers introduced at once (being admitted or members); a further introduction
    /// is refused. [`MAX_MEMBERS`] by default, the most a member list carries.
    pub max_members: usize,
    /// Most peers introduced at once from one IP address, so one host cannot register
    /// fake members by the hundred. [`MAX_MEMBERS_PER_IP`] by default.
    pub max_members_per_ip: usize,
}

/// Default for [`Config::max_members_per_ip`]: room for a host running a node per core,
/// as many as [`Config::max_pending_per_ip`]'s handshakes.
pub const MAX_MEMBERS_PER_IP: usize = 32;

/// Documented default for [`Config::max_metadata`]: 64 KiB of JSON.
pub const DEFAULT_MAX_METADATA: usize = 64 * 1024;
/// Documented default for [`Config::max_message`]: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Room in a frame above the payload: event name, message and record headers, tag, and
/// metadata updates, which are bounded separately.
pub const FRAME_HEADROOM: usize = DEFAULT_MAX_METADATA + 1024;

impl Config {
    /// Sets the largest custom event payload, and the frame bound that follows from it.
    pub fn set_max_message(&mut self, max: usize) {
        self.max_message = max;
        self.max_frame = max + FRAME_HEADROOM;
    }
}

impl Config {
    /// Defaults for nodes on one LAN.
    pub fn lan(cluster: impl Into<String>) -> Self {
        Config {
            cluster: cluster.into(),
            cluster_key: None,
            handshake_timeout: Duration::from_secs(5),
            dial_timeout: Duration::from_secs(3),
            admission_timeout: Duration::from_secs(7),
            suspect_timeout: Duration::from_secs(3),
            // 3 x 300 ms + 1 s = 1.9 s of silence with up to 9 members (10 nodes): a
            // vanished host is removed within 2 s, and an outage under 1.3 s stays under
            // it. Each further round of 9 members adds an interval (see `detector`). 300
            // rather than 400 ms finds a silent loss before node-discover's 2 s, for about
            // 0.02 % of a core more per idle node (BENCHMARKS.md, "A shorter interval?").
            detector: DetectorConfig {
                interval: Duration::from_millis(300),
                misses: 3,
                grace: Duration::from_secs(1),
                per_interval: super::detector::PER_INTERVAL,
                rounds: 1,
            },
            discovery: DiscoveryConfig::lan(),
            election: ElectionConfig {
                eligible: true,
                timeout: Duration::from_millis(1000),
                quorum: 0,
            },
            beacon_burst: [0, 50, 150, 350, 750]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            beacon_interval: Duration::from_secs(2),
            beacon_min_gap: Duration::from_millis(50),
            max_frame: DEFAULT_MAX_MESSAGE + FRAME_HEADROOM,
            max_message: DEFAULT_MAX_MESSAGE,
            max_unacked: super::sessions::DEFAULT_MAX_UNACKED,
            max_metadata: DEFAULT_MAX_METADATA,
            max_pending_handshakes: 256,
            max_pending_per_ip: 32,
            max_members: MAX_MEMBERS,
            max_members_per_ip: MAX_MEMBERS_PER_IP,
        }
    }
}
