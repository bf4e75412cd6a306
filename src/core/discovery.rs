//! Whom to dial, and when. Nodes are learned three ways: multicast beacons and member lists
//! (their id is known), seeds (`network.peers`, an address only) and a scan of /24 subnets
//! (`network.subnets`, an address only). Seeds, and in manual mode members lost without a
//! goodbye, are probed again periodically, so a restarted seed or a healed partition
//! rejoins by itself.
//!
//! Dial rule for nodes known by id: the smaller id dials; the larger one announces itself
//! (a beacon) and dials only if it has not been dialed after `fallback_after`. A dial to a
//! node known by id waits, a bounded time, while that node may be dialing us already
//! ([`Discovery::hold`]): one connection per pair, one handshake.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::due_map::DueMap;
use super::node::NodeId;
use super::output::ConnId;

/// Most nodes held back from redialing at once ([`Discovery::failed`]). Beacons are
/// unauthenticated without a cluster key, so every forged id can cost a failed dial and an
/// entry here: past the bound, expired entries go first, then the one ending soonest.
pub const MAX_BACKOFF: usize = 1024;

/// Most nodes heard of by id and waiting for their own dial ([`Discovery::learn`]); each
/// leaves after `fallback_after`, but forged beacons can arrive faster. Past the bound a
/// newly heard node is still answered with a beacon (it dials us), only our fallback dial
/// to it is not kept.
pub const MAX_HEARD: usize = 1024;

/// Dials to addresses learnt from beacons and member lists (which anyone on the LAN, or any
/// member, can fill with other hosts' addresses) are made at most this many at once (a
/// newcomer dials every member its member list names: room for a cluster of 128 at
/// once)...
pub const DIAL_BUDGET_BURST: u32 = 128;
/// ...and at most this many per second on average after that; the others wait for their
/// turn (each counted once in `stats().dials_skipped`). Seeds, scans and redials of
/// members are not counted against it: the application chose those.
pub const DIAL_BUDGET_PER_SEC: u32 = 16;

/// A seed not reached yet is dialed again this soon after a failed dial (a seed started
/// at the same instant may not listen yet)...
pub const SEED_RETRY_FIRST: Duration = Duration::from_millis(25);
/// ...each further failure doubling the wait, and after this many dials in all it is given
/// up on for formation (25 + 50 + ... + 800 ms: about 1.6 s): it is then probed every
/// `probe_interval` like a seed that went away.
pub const SEED_RETRY_TRIES: u32 = 7;

/// A dial to a node learnt by id (a beacon, a member list) that fails before the node is a
/// member is made again, after `redial_backoff`, at most this many times in a row: in
/// seeds-only discovery nobody else would tell us of it again.
pub const LEARNT_RETRIES: u32 = 3;

/// With multicast off, one member, in turn, is asked for its member list again this
/// often: manual discovery has no beacon that would bring two nodes together again, and a
/// pair whose dials all failed while the cluster formed (handshakes timing out on a loaded
/// host) would stay apart for good. A node named that we neither know nor dial is dialed.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// A connection carries at most one `AskMembers` per this long (a list costs up to
/// `MAX_MEMBERS` entries); an earlier one is refused and closes the connection. Honest
/// nodes ask at a member's admission and then every [`RESYNC_INTERVAL`] at most.
pub const ASK_MEMBERS_GAP: Duration = Duration::from_secs(10);

/// Most nodes remembered as refused at once ([`Discovery::refused`]); past the bound the
/// entry whose hold ends soonest goes.
pub const MAX_REFUSALS: usize = 1024;

/// The first retry after a refusal comes this long after it...
pub const REFUSAL_FIRST_WAIT: Duration = Duration::from_secs(2);
/// ...each further refusal in a row doubles the wait, up to this...
pub const REFUSAL_MAX_WAIT: Duration = Duration::from_secs(60);
/// ...and each wait is lengthened by a random part of up to 1/this of itself, so nodes
/// refused together do not all knock again together.
pub const REFUSAL_JITTER_DIVISOR: u32 = 4;

/// Discovery settings.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Addresses dialed at start and probed periodically while not connected.
    pub seeds: Vec<SocketAddr>,
    /// Each address's /24 is scanned on `scan_port`.
    pub subnets: Vec<Ipv4Addr>,
    pub scan_port: u16,
    /// Period of seed and lost-member probes.
    pub probe_interval: Duration,
    /// Multicast discovery is on: our beacons go out, and we hear the cluster's.
    pub multicast: bool,
    /// Probe members lost without a goodbye (manual mode; beacons do it with multicast).
    pub probe_lost: bool,
    /// How long a lost member keeps being probed.
    pub lost_memory: Duration,
    /// Most scan dials in flight at once.
    pub scan_concurrency: usize,
    /// A scan dial not answered by then is given up.
    pub scan_dial_timeout: Duration,
    /// While a node has no member, its subnets are scanned again this often.
    pub rescan_interval: Duration,
    /// A node heard but not dialed by then is dialed by us even if its id is smaller.
    pub fallback_after: Duration,
    /// How long to wait before redialing a node whose connection failed.
    pub redial_backoff: Duration,
}

impl DiscoveryConfig {
    /// LAN defaults with no seeds and no scan.
    pub fn lan() -> Self {
        DiscoveryConfig {
            seeds: Vec::new(),
            subnets: Vec::new(),
            scan_port: 0,
            probe_interval: Duration::from_secs(2),
            multicast: true,
            probe_lost: false,
            lost_memory: Duration::from_secs(600),
            scan_concurrency: 32,
            scan_dial_timeout: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(30),
            fallback_after: Duration::from_secs(4),
            redial_backoff: Duration::from_secs(1),
        }
    }
}

/// A dial discovery wants made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The node expected there, if known.
    pub expect: Option<NodeId>,
    /// A scan dial: short timeout, counted against the scan concurrency.
    pub scan: bool,
    /// Ask the node reached for its member list: a seed, a scanned address or a lost
    /// member may know nodes we have never heard of. Dials learnt from beacons and member
    /// lists do not ask (see `cluster::admission`).
    pub ask: bool,
}

/// How a node was learnt by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Its own beacon.
    Beacon,
    /// A member list that may name nodes out of our multicast's reach: multicast
    /// discovery is off, or the list came from a member we dialed as an entry point (a
    /// seed, a scanned address, a lost member: [`Target::ask`]).
    List,
    /// A member list from a member that is no entry point of ours, with multicast
    /// discovery on: the nodes it names hear our beacons (a node out of reach of them is
    /// dialed at `fallback_after`, as one whose beacon we hear and that does not dial).
    ListInReach,
}

/// What to do about a node just learned by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    Dial,
    /// Dial it, but the dial budget is spent: it is dialed when the budget allows.
    Deferred,
    /// Let it know about us soon (it has the smaller id and will dial).
    Announce,
}

/// Our dial to a node learnt by id, held back while connections from its IP address are
/// before their proof (see [`Discovery::hold`]).
#[derive(Debug, Clone, Copy)]
struct Hold {
    /// Only connections accepted up to this one hold the dial back.
    newest: ConnId,
    since: Instant,
    /// The dial is made then whatever happens.
    until: Instant,
    addr: SocketAddr,
    /// Released: the dial is due, and is not held again.
    spent: bool,
}

impl Hold {
    /// A dial to `addr` held from `now` for connections accepted up to `newest`, `wait`
    /// at most.
    fn new(now: Instant, addr: SocketAddr, newest: ConnId, wait: Duration) -> Hold {
        Hold {
            newest,
            since: now,
            until: now + wait,
            addr,
            spent: false,
        }
    }
}

/// A node refused at admission.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    /// Refusals in a row.
    count: u32,
    /// No dial to it, or to its address, before then.
    until: Instant,
    /// Refused again unasked before then, if `by_us`: the wait without its random part,
    /// so that a node keeping to its own back-off (which has one) always finds the filter
    /// asked again.
    refuse_until: Instant,
    addr: SocketAddr,
    /// Our own filter refused it (else it refused us).
    by_us: bool,
}

/// A token bucket for dials to learnt addresses ([`DIAL_BUDGET_BURST`],
/// [`DIAL_BUDGET_PER_SEC`]), counted in thousandths of a dial.
#[derive(Debug)]
struct DialBudget {
    milli: u64,
    refilled: Option<Instant>,
}

impl Default for DialBudget {
    fn default() -> Self {
        DialBudget {
            milli: u64::from(DIAL_BUDGET_BURST) * 1000,
            refilled: None,
        }
    }
}

impl DialBudget {
    fn refill(&mut self, now: Instant) {
        let last = *self.refilled.get_or_insert(now);
        let ms = now.saturating_duration_since(last).as_millis();
        let gained = u64::try_from(ms).unwrap_or(u64::MAX) * u64::from(DIAL_BUDGET_PER_SEC);
        self.milli = (self.milli.saturating_add(gained)).min(u64::from(DIAL_BUDGET_BURST) * 1000);
        self.refilled = Some(now);
    }

    /// Takes one dial, if there is one.
    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.milli < 1000 {
            return false;
        }
        self.milli -= 1000;
        true
    }

    /// A dial taken reached the node it was meant for: its token goes back.
    fn give_back(&mut self, now: Instant) {
        self.refill(now);
        let full = u64::from(DIAL_BUDGET_BURST) * 1000;
        self.milli = (self.milli + 1000).min(full);
    }

    /// When the next whole dial is there.
    fn next(&self) -> Option<Instant> {
        let missing = 1000u64.saturating_sub(self.milli);
        let ms = missing.div_ceil(u64::from(DIAL_BUDGET_PER_SEC));
        self.refilled.map(|t| t + Duration::from_millis(ms))
    }
}

/// Discovery state.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Nodes heard of by id, and when they are due for our dial: after `fallback_after`
    /// for a node that should dial us, at once for one the dial budget deferred.
    heard: DueMap<NodeId, SocketAddr>,
    /// Dials held back, each also in `heard` and due at the hold's end (at most
    /// [`MAX_HEARD`]; a hold is forgotten once its dial is made).
    holds: BTreeMap<NodeId, Hold>,
    /// Scan dials held back alike, by address (at most one per scanned address).
    scan_holds: BTreeMap<SocketAddr, Hold>,
    /// Scanned addresses whose dial waited for a connection from their IP, held before it
    /// was made ([`Discovery::hold_scan`]) or given way after ([`Discovery::give_way_scan`]):
    /// once each per scan (at most one per scanned address).
    scans_given_way: BTreeSet<SocketAddr>,
    /// Nodes learnt by id whose dial has waited for connections from their IP address,
    /// held before it was made ([`Discovery::hold`]) or given way after
    /// ([`Discovery::give_way`]): a dial gives way only to a node not in here. Cleared as
    /// each connects (at most [`MAX_HEARD`]).
    waited: BTreeSet<NodeId>,
    budget: DialBudget,
    backoff: BTreeMap<NodeId, Instant>,
    /// Nodes refused at admission, by us or by them: held back with a wait that doubles
    /// per refusal in a row. Kept past `connected` (an introduction is no admission) and
    /// cleared by [`Discovery::admitted`].
    refusals: BTreeMap<NodeId, Refusal>,
    lost: BTreeMap<NodeId, (SocketAddr, Instant)>,
    scan_queue: VecDeque<SocketAddr>,
    next_probe: Option<Instant>,
    next_scan: Option<Instant>,
    /// Failed dials in a row to nodes learnt by id (at most [`LEARNT_RETRIES`] each; one
    /// entry per node in `heard`, so bounded alike). Cleared when the node introduces
    /// itself.
    retries: BTreeMap<NodeId, u32>,
    /// Seeds not reached since start: when each is dialed next, and how many dials it had.
    /// Emptied as they are reached or given up on ([`SEED_RETRY_TRIES`]).
    unreached: BTreeMap<SocketAddr, (Instant, u32)>,
}

impl Discovery {
    pub fn start(&mut self, now: Instant, cfg: &DiscoveryConfig) {
        if !cfg.seeds.is_empty() || cfg.probe_lost {
            self.next_probe = Some(now + cfg.probe_interval);
        }
        self.unreached = cfg.seeds.iter().map(|&a| (a, (now, 0))).collect();
        if !cfg.subnets.is_empty() {
            self.next_scan = Some(now);
        }
    }

    /// Seeds not among the previous ones were given (a seed name resolved to a new
    /// address): the probe round comes now rather than at its period.
    pub fn seeds_added(&mut self, now: Instant) {
        self.next_probe = Some(self.next_probe.map_or(now, |t| t.min(now)));
    }

    /// Stops everything (the node is leaving).
    pub fn stop(&mut self) {
        *self = Discovery::default();
    }

    /// A node `id` at `addr` was learnt (`hint`: how). The caller has checked it is not us
    /// and not already connected or being dialed.
    ///
    /// Of two nodes that hear each other's beacons the smaller id dials. A member list is
    /// told to one node only (the one that asked), and the nodes it names have not been
    /// told of the asker (see `cluster::admission`'s `tell_members`). A list in our
    /// multicast's reach ([`Hint::ListInReach`]) is taken as the beacons of the nodes it
    /// names: a node with the smaller id hears our beacon and dials us, so we dial it only
    /// if it has not after `fallback_after`, as for a beacon. Dialing it at once would
    /// cross its dial whenever it is slower to hear our beacon than we are to get the list
    /// (a loaded host: 3 to 5 % of the handshakes of 100 processes forming on 2 cores were
    /// such duplicates). Of any other list the asker dials each node, whatever the ids, but
    /// one with the smaller id whose beacon it heard at the listed address.
    pub fn learn(
        &mut self,
        now: Instant,
        cfg: &DiscoveryConfig,
        me: NodeId,
        (id, addr): (NodeId, SocketAddr),
        hint: Hint,
    ) -> Option<Learned> {
        let listed = hint != Hint::Beacon;
        if self.in_backoff(now, id) {
            return None;
        }
        let full = self.heard.len() >= MAX_HEARD;
        let waiting = self.heard.get(&id).map(|&(due, _)| due);
        let heard_here = self
            .heard
            .get(&id)
            .is_some_and(|&(due, at)| due > now && at == addr);
        if listed && me > id && heard_here {
            // Its beacon named this very address, and ours answered it: it dials us, and
            // a dial from the list would cross its dial. We dial if it has not by the
            // fallback, as for any beacon. (Only at the address its beacon came from: a
            // beacon forged elsewhere under its id changes nothing here.)
            return None;
        }
        if me > id && hint != Hint::List {
            // It dials; we do only if it has not after `fallback_after`.
            match waiting {
                None => {
                    if !full {
                        self.heard.insert(id, (now + cfg.fallback_after, addr));
                    }
                    return Some(Learned::Announce);
                }
                Some(due) if due > now => return Some(Learned::Announce),
                Some(_) => {}
            }
        }
        if self.budget.take(now) {
            self.heard.remove(&id);
            return Some(Learned::Dial);
        }
        if waiting.is_some() {
            // Already waiting for its turn (counted when it began to).
            return None;
        }
        if !full {
            self.heard.insert(id, (now, addr));
        }
        Some(Learned::Deferred)
    }

    /// Holds back our dial to node `id` at `addr` (learnt by id, due now) while
    /// connections from its IP address, accepted up to `newest`, are before their proof:
    /// one may be that node dialing us, and two dials would cross (both ends would complete
    /// a handshake, then drop one connection). One hold per dial, for `wait` at most: a
    /// stalled or hostile connection from the same address delays the dial no longer, and
    /// neither a connection accepted later nor hearing of the node again extends it.
    /// Returns false if the dial is to be made now: its hold is over, or there is no room
    /// for one.
    pub fn hold(
        &mut self,
        now: Instant,
        (id, addr): (NodeId, SocketAddr),
        newest: ConnId,
        wait: Duration,
    ) -> bool {
        if let Some(h) = self.holds.get(&id).copied() {
            if h.spent || h.until <= now {
                self.holds.remove(&id);
                return false;
            }
            self.heard.insert(id, (h.until, h.addr));
            return true;
        }
        if self.holds.len() >= MAX_HEARD {
            self.holds.retain(|_, h| !h.spent && h.until > now);
        }
        let room = self.heard.len() < MAX_HEARD || self.heard.contains_key(&id);
        if !room || self.holds.len() >= MAX_HEARD {
            return false;
        }
        let hold = Hold::new(now, addr, newest, wait);
        self.holds.insert(id, hold);
        if self.waited.len() < MAX_HEARD {
            self.waited.insert(id);
        }
        self.heard.insert(id, (hold.until, addr));
        true
    }

    /// [`Discovery::hold`] for a scan dial to `addr` (its node is known by address only;
    /// one that connects to us from there and listens at `addr` is not scanned any more).
    /// Returns false if the dial is to be made now.
    pub fn hold_scan(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        newest: ConnId,
        wait: Duration,
    ) -> bool {
        if self.scan_holds.remove(&addr).is_some() {
            return false;
        }
        self.scan_holds
            .insert(addr, Hold::new(now, addr, newest, wait));
        // Held once: the dial made after this wait does not give way as well.
        self.scans_given_way.insert(addr);
        true
    }

    /// Our scan dial to `addr`, already made, gives way to connections from its IP address
    /// accepted up to `newest`: held as [`Discovery::hold_scan`] holds one not made yet.
    /// Once per address in a scan, so that connections that never prove themselves
    /// delay the scan once and no more. Returns false if the dial is to stand.
    pub fn give_way_scan(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        newest: ConnId,
        wait: Duration,
    ) -> bool {
        if !self.scans_given_way.insert(addr) {
            return false;
        }
        self.scan_holds
            .insert(addr, Hold::new(now, addr, newest, wait));
        true
    }

    /// Our dial to node `id` at `addr`, already made, gives way to connections from its IP
    /// address accepted up to `newest`: held as [`Discovery::hold`] holds one not made
    /// yet, and made again once those are proven or gone, `wait` at most. Not for a node
    /// whose dial has waited already, before or after it was made, until it connects: so
    /// connections that never prove themselves (another process on the host) delay our
    /// dials to a node once and no more. Returns false if the dial is to stand.
    pub fn give_way(
        &mut self,
        now: Instant,
        (id, addr): (NodeId, SocketAddr),
        newest: ConnId,
        wait: Duration,
    ) -> bool {
        if self.waited.contains(&id) || self.waited.len() >= MAX_HEARD {
            return false;
        }
        self.hold(now, (id, addr), newest, wait)
    }

    /// Held scan dials: address, the newest connection holding it, since when.
    pub fn scan_holds(&self) -> impl Iterator<Item = (SocketAddr, ConnId, Instant)> + '_ {
        let held = self.scan_holds.values().filter(|h| !h.spent);
        held.map(|h| (h.addr, h.newest, h.since))
    }

    /// The connections holding back the scan dial to `addr` are proven or gone (or its
    /// wait is over): it is scanned next, and not held again.
    pub fn release_scan(&mut self, addr: SocketAddr) {
        if let Some(h) = self.scan_holds.get_mut(&addr).filter(|h| !h.spent) {
            h.spent = true;
            self.scan_queue.push_front(addr);
        }
    }

    /// Our fallback dial to `id`, if one is planned, is made by `due` at the latest.
    pub fn hasten(&mut self, id: NodeId, due: Instant) {
        if self.heard.get(&id).is_some_and(|&(d, _)| d > due) && !self.holds.contains_key(&id) {
            self.heard.set_due(&id, due);
        }
    }

    /// Our dial to `id` is made now, held back or not.
    pub fn unhold(&mut self, id: NodeId) {
        self.holds.remove(&id);
    }

    /// Dials held back now: node, the IP address whose connections hold it, the newest of
    /// those, and since when.
    pub fn holds(&self) -> impl Iterator<Item = (NodeId, IpAddr, ConnId, Instant)> + '_ {
        let held = self.holds.iter().filter(|(_, h)| !h.spent);
        held.map(|(&id, h)| (id, h.addr.ip(), h.newest, h.since))
    }

    /// The connections holding back our dial to `id` are proven or gone: it is due now.
    pub fn release(&mut self, now: Instant, id: NodeId) {
        if let Some(h) = self.holds.get_mut(&id) {
            h.spent = true;
            self.heard.set_due(&id, now);
        }
    }

    fn in_backoff(&self, now: Instant, id: NodeId) -> bool {
        self.backoff.get(&id).is_some_and(|&t| t > now)
            || self.refusals.get(&id).is_some_and(|r| r.until > now)
    }

    /// Node `id`, listening at `addr`, was refused at admission (`by_us`: by our filter,
    /// else by its): no dial to it or its address until a wait of [`REFUSAL_FIRST_WAIT`]
    /// doubled per refusal in a row, at most [`REFUSAL_MAX_WAIT`], lengthened by up to a
    /// [`REFUSAL_JITTER_DIVISOR`]th of itself in proportion to `jitter` (a random number
    /// out of 2^32). Returns the wait.
    pub fn refused(
        &mut self,
        now: Instant,
        id: NodeId,
        addr: SocketAddr,
        by_us: bool,
        jitter: u32,
    ) -> Duration {
        if self.refusals.len() >= MAX_REFUSALS && !self.refusals.contains_key(&id) {
            let soonest = self.refusals.iter().min_by_key(|(_, r)| r.until);
            let soonest = *soonest.expect("the map is full").0;
            self.refusals.remove(&soonest);
        }
        let count = self.refusals.get(&id).map_or(0, |r| r.count);
        let base = REFUSAL_FIRST_WAIT
            .saturating_mul(1 << count.min(16))
            .min(REFUSAL_MAX_WAIT);
        let spread = base / REFUSAL_JITTER_DIVISOR;
        let extra = (spread.as_nanos() * u128::from(jitter)) >> 32;
        let extra = Duration::from_nanos(u64::try_from(extra).unwrap_or(u64::MAX));
        let wait = base + extra;
        self.refusals.insert(
            id,
            Refusal {
                count: count.saturating_add(1),
                until: now + wait,
                refuse_until: now + base,
                addr,
                by_us,
            },
        );
        wait
    }

    /// True while our filter's refusal of `id` holds: it is refused again unasked.
    pub fn we_refuse(&self, now: Instant, id: NodeId) -> bool {
        self.refusals
            .get(&id)
            .is_some_and(|r| r.by_us && r.refuse_until > now)
    }

    /// True while a refusal holds for the node at `addr` (a seed's address, say).
    fn refused_addr(&self, now: Instant, addr: SocketAddr) -> bool {
        self.refusals
            .values()
            .any(|r| r.addr == addr && r.until > now)
    }

    /// Both ends admitted node `id`: its refusals in a row are over.
    pub fn admitted(&mut self, id: NodeId) {
        self.refusals.remove(&id);
    }

    /// Nodes remembered as refused.
    pub fn refusals_len(&self) -> usize {
        self.refusals.len()
    }

    /// A dial to `addr` connected: if it is a seed not reached yet, it is reached (the
    /// handshake, admission and member list that follow have their own deadlines).
    pub fn reached(&mut self, addr: SocketAddr) {
        self.unreached.remove(&addr);
    }

    /// True while a seed has been neither reached nor given up on, or a node heard of
    /// waits for its dial: formation is not over (see `election`'s formation hold).
    pub fn forming(&self) -> bool {
        !self.unreached.is_empty() || !self.heard.is_empty()
    }

    /// A dial to node `id` at `addr`, learnt by id, failed before it was a member: it is
    /// dialed again after `redial_backoff`, [`LEARNT_RETRIES`] times at most in a row.
    pub fn retry(&mut self, now: Instant, cfg: &DiscoveryConfig, id: NodeId, addr: SocketAddr) {
        let tries = self.retries.get(&id).copied().unwrap_or(0);
        if tries >= LEARNT_RETRIES || self.heard.len() >= MAX_HEARD {
            return;
        }
        if self.retries.len() >= MAX_HEARD && !self.retries.contains_key(&id) {
            self.retries.retain(|id, _| self.heard.contains_key(id));
        }
        self.retries.insert(id, tries + 1);
        self.heard.insert(id, (now + cfg.redial_backoff, addr));
    }

    /// Our dial to a node learnt by id (from a beacon or a member list, within the dial
    /// budget) reached that very node: the handshake proved the id it was dialed for. Its
    /// token goes back, so that the budget bounds the learnt dials not yet proven, at
    /// [`DIAL_BUDGET_BURST`], and those that never prove the id they were made for
    /// (another host's address, a forged hint, a node with another id) at
    /// [`DIAL_BUDGET_PER_SEC`] past the burst, rather than every dial: a newcomer, or the
    /// smallest id of a cluster of hundreds forming by multicast, dials at the pace its
    /// handshakes complete instead of 16 a second.
    pub fn dial_proven(&mut self, now: Instant) {
        self.budget.give_back(now);
    }

    /// A connection to `id` got as far as its introduction.
    pub fn connected(&mut self, id: NodeId) {
        self.waited.remove(&id);
        self.retries.remove(&id);
        self.heard.remove(&id);
        self.holds.remove(&id);
        self.backoff.remove(&id);
        self.lost.remove(&id);
    }

    /// Node `id` is gone for good (another node answers at its address).
    pub fn forget(&mut self, id: NodeId) {
        self.waited.remove(&id);
        self.heard.remove(&id);
        self.holds.remove(&id);
        self.refusals.remove(&id);
        self.lost.remove(&id);
    }

    /// A connection to `id` failed: do not redial at once. At most [`MAX_BACKOFF`] nodes
    /// are held back; to make room, expired entries are dropped, then the one ending
    /// soonest.
    pub fn failed(&mut self, now: Instant, id: NodeId, wait: Duration) {
        if self.backoff.len() >= MAX_BACKOFF && !self.backoff.contains_key(&id) {
            self.backoff.retain(|_, until| *until > now);
            if self.backoff.len() >= MAX_BACKOFF {
                let soonest = self.backoff.iter().min_by_key(|(_, until)| **until);
                let soonest = *soonest.expect("the map is full").0;
                self.backoff.remove(&soonest);
            }
        }
        self.backoff.insert(id, now + wait);
    }

    /// Nodes heard of and waiting for their own dial.
    pub fn heard_len(&self) -> usize {
        self.heard.len()
    }

    /// Nodes held back from redialing, expired or not.
    pub fn backoff_len(&self) -> usize {
        self.backoff.len()
    }

    /// Member `id` was lost without a goodbye; probe it for a while if configured to.
    pub fn lost(&mut self, now: Instant, cfg: &DiscoveryConfig, id: NodeId, addr: SocketAddr) {
        if cfg.probe_lost {
            self.lost.insert(id, (addr, now + cfg.lost_memory));
        }
    }

    /// Dials due at `now`. `scans_in_flight` is how many scan dials are still pending;
    /// `alone` says this node has no member (so a finished scan is repeated later).
    pub fn due(
        &mut self,
        now: Instant,
        cfg: &DiscoveryConfig,
        scans_in_flight: usize,
        alone: bool,
    ) -> Vec<Target> {
        let mut out = Vec::new();
        let overdue = self.heard.due(now);
        for id in overdue {
            if self.in_backoff(now, id) {
                self.heard.remove(&id);
                self.holds.remove(&id);
                continue;
            }
            // Learnt addresses are dialed within the budget; the rest wait their turn.
            if !self.budget.take(now) {
                break;
            }
            let (_, addr) = self.heard.remove(&id).unwrap();
            out.push(Target {
                addr,
                expect: Some(id),
                scan: false,
                ask: false,
            });
        }
        // Seeds not reached yet, quickly: one started beside us may not listen yet.
        let refusals = &self.refusals;
        for (&addr, (next, tries)) in self.unreached.iter_mut() {
            let refused = refusals.values().any(|r| r.addr == addr && r.until > now);
            if *next <= now && !refused {
                let wait = SEED_RETRY_FIRST.saturating_mul(1 << (*tries).min(16));
                *next = now + wait;
                *tries += 1;
                out.push(Target {
                    addr,
                    expect: None,
                    scan: false,
                    ask: true,
                });
            }
        }
        // Given up on: probed with the others from now on.
        self.unreached
            .retain(|_, (_, tries)| *tries < SEED_RETRY_TRIES);
        if self.next_probe.is_some_and(|t| t <= now) {
            self.next_probe = Some(now + cfg.probe_interval);
            self.lost.retain(|_, (_, forget)| *forget > now);
            let probed = cfg.seeds.iter().filter(|&&a| !self.refused_addr(now, a));
            for &addr in probed.filter(|a| !self.unreached.contains_key(a)) {
                out.push(Target {
                    addr,
                    expect: None,
                    scan: false,
                    ask: true,
                });
            }
            for (&id, &(addr, _)) in &self.lost {
                if !self.in_backoff(now, id) {
                    out.push(Target {
                        addr,
                        expect: Some(id),
                        scan: false,
                        ask: true,
                    });
                }
            }
        }
        if self.next_scan.is_some_and(|t| t <= now) {
            self.next_scan = None;
            self.scans_given_way.clear();
            for subnet in &cfg.subnets {
                let [a, b, c, _] = subnet.octets();
                for d in 1..=254 {
                    let ip = IpAddr::V4(Ipv4Addr::new(a, b, c, d));
                    self.scan_queue
                        .push_back(SocketAddr::new(ip, cfg.scan_port));
                }
            }
        }
        let waited: Vec<SocketAddr> = self
            .scan_holds
            .values()
            .filter(|h| !h.spent && h.until <= now)
            .map(|h| h.addr)
            .collect();
        for addr in waited {
            self.release_scan(addr);
        }
        let room = cfg.scan_concurrency.saturating_sub(scans_in_flight);
        for addr in self.scan_queue.drain(..room.min(self.scan_queue.len())) {
            out.push(Target {
                addr,
                expect: None,
                scan: true,
                ask: true,
            });
        }
        if self.scan_queue.is_empty()
            && scans_in_flight == 0
            && self.next_scan.is_none()
            && !cfg.subnets.is_empty()
            && alone
        {
            self.next_scan = Some(now + cfg.rescan_interval);
        }
        out
    }

    /// True while scan addresses wait for room: the caller pumps [`Discovery::due`] again
    /// as scan dials finish.
    pub fn scanning(&self) -> bool {
        !self.scan_queue.is_empty()
    }

    /// The next instant [`Discovery::due`] has work.
    pub fn poll_timeout(&self, cfg: &DiscoveryConfig) -> Option<Instant> {
        let _ = cfg;
        // A dial due but over the budget waits for the next token, not a busy loop.
        let next_token = self.budget.next();
        let heard = self.heard.earliest();
        let heard = heard.map(|due| next_token.map_or(due, |t| due.max(t)));
        heard
            .into_iter()
            .chain(self.next_probe)
            .chain(self.next_scan)
            .chain(self.unreached.values().map(|(next, _)| *next))
            .chain(
                self.scan_holds
                    .values()
                    .filter(|h| !h.spent)
                    .map(|h| h.until),
            )
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 27272)
    }

    #[test]
    fn the_smaller_id_dials_and_the_larger_falls_back() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        assert_eq!(
            d.learn(t0, &cfg, id(1), (id(2), addr(2)), Hint::Beacon),
            Some(Learned::Dial)
        );
        assert_eq!(
            d.learn(t0, &cfg, id(3), (id(2), addr(2)), Hint::Beacon),
            Some(Learned::Announce)
        );
        assert!(d.due(t0, &cfg, 0, true).is_empty());
        let later = t0 + cfg.fallback_after;
        assert_eq!(
            d.due(later, &cfg, 0, true),
            vec![Target {
                addr: addr(2),
                expect: Some(id(2)),
                scan: false,
                ask: false,
            }]
        );
    }

    #[test]
    fn a_listed_node_whose_beacon_was_heard_there_is_left_to_dial_us() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        assert_eq!(
            d.learn(t0, &cfg, id(3), (id(2), addr(2)), Hint::Beacon),
            Some(Learned::Announce)
        );
        assert_eq!(d.learn(t0, &cfg, id(3), (id(2), addr(2)), Hint::List), None);
        // Listed elsewhere than its beacon said (a beacon forged under its id, say): dialed.
        assert_eq!(
            d.learn(t0, &cfg, id(3), (id(2), addr(9)), Hint::List),
            Some(Learned::Dial)
        );
        // A listed node with the larger id, or one not heard, is dialed at once.
        assert_eq!(
            d.learn(t0, &cfg, id(3), (id(4), addr(4)), Hint::List),
            Some(Learned::Dial)
        );
        assert_eq!(
            d.learn(t0, &cfg, id(3), (id(1), addr(1)), Hint::List),
            Some(Learned::Dial)
        );
    }

    #[test]
    fn a_smaller_node_a_list_in_reach_names_is_left_to_dial_us_until_the_fallback() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        let me = id(3);
        // A larger id does not dial on hearing our beacon: dialed at once.
        let larger = d.learn(t0, &cfg, me, (id(4), addr(4)), Hint::ListInReach);
        assert_eq!(larger, Some(Learned::Dial));
        // A smaller id hears our beacon and dials us: as if its own beacon were heard.
        let smaller = d.learn(t0, &cfg, me, (id(2), addr(2)), Hint::ListInReach);
        assert_eq!(smaller, Some(Learned::Announce));
        assert!(d.forming(), "a node waited for is formation still going on");
        let t1 = t0 + cfg.fallback_after / 2;
        assert!(d.due(t1, &cfg, 0, false).is_empty());
        // One that dials us in time is never dialed.
        let other = d.learn(t0, &cfg, me, (id(1), addr(1)), Hint::ListInReach);
        assert_eq!(other, Some(Learned::Announce));
        d.connected(id(1));
        let later = t0 + cfg.fallback_after;
        let due = d.due(later, &cfg, 0, false);
        let dialed: Vec<_> = due.iter().map(|t| (t.expect, t.addr)).collect();
        assert_eq!(
            dialed,
            vec![(Some(id(2)), addr(2))],
            "only the one that never dialed"
        );
        // A list out of reach (from a seed, or with multicast off) is dialed whole.
        let mut d = Discovery::default();
        let listed = d.learn(t0, &cfg, me, (id(2), addr(2)), Hint::List);
        assert_eq!(listed, Some(Learned::Dial));
    }

    #[test]
    fn a_dial_is_held_once_and_for_its_wait_at_most() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let wait = Duration::from_secs(5);
        let mut d = Discovery::default();
        assert!(d.hold(t0, (id(2), addr(2)), 7, wait));
        assert!(d.due(t0, &cfg, 0, false).is_empty());
        assert!(d.forming(), "a held dial is formation still going on");
        let held: Vec<_> = d.holds().collect();
        assert_eq!(held, vec![(id(2), addr(2).ip(), 7, t0)]);
        // Asked again later (heard of again, newer connections): the same wait, no longer.
        let t1 = t0 + Duration::from_secs(3);
        assert!(d.hold(t1, (id(2), addr(2)), 9, wait));
        assert_eq!(d.holds().next().map(|h| h.2), Some(7));
        assert!(d
            .due(t0 + wait - Duration::from_millis(1), &cfg, 0, false)
            .is_empty());
        let t2 = t0 + wait;
        let due = d.due(t2, &cfg, 0, false);
        assert_eq!(
            due.iter().map(|t| t.expect).collect::<Vec<_>>(),
            [Some(id(2))]
        );
        // Its wait is over: the dial is made, not held again.
        assert!(!d.hold(t2, (id(2), addr(2)), 11, wait));
        assert_eq!(d.holds().count(), 0);
        // Released before its end (its connections proven or gone): due at once, once.
        assert!(d.hold(t2, (id(3), addr(3)), 12, wait));
        d.release(t2, id(3));
        assert_eq!(d.holds().count(), 0);
        assert_eq!(d.due(t2, &cfg, 0, false).len(), 1);
        assert!(!d.hold(t2, (id(3), addr(3)), 13, wait));
    }

    #[test]
    fn backoff_holds_dials_back() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        d.failed(t0, id(2), Duration::from_secs(1));
        assert_eq!(
            d.learn(t0, &cfg, id(1), (id(2), addr(2)), Hint::Beacon),
            None
        );
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            d.learn(t1, &cfg, id(1), (id(2), addr(2)), Hint::Beacon),
            Some(Learned::Dial)
        );
    }

    #[test]
    fn forged_ids_cannot_grow_the_backoff_map_past_its_bound() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        let forged = |n: u32| {
            let mut b = [0xee; 16];
            b[..4].copy_from_slice(&n.to_be_bytes());
            NodeId(b)
        };
        // One failed dial per forged beacon, each waiting longer than the last.
        for n in 0..20_000u32 {
            let wait = Duration::from_secs(60) + Duration::from_millis(n.into());
            d.failed(t0, forged(n), wait);
            assert!(
                d.backoff_len() <= MAX_BACKOFF,
                "{} after {n}",
                d.backoff_len()
            );
        }
        assert_eq!(d.backoff_len(), MAX_BACKOFF);
        // The newest are held back; the one ending soonest made room.
        assert_eq!(
            d.learn(t0, &cfg, id(0), (forged(19_999), addr(2)), Hint::Beacon),
            None
        );
        assert_eq!(
            d.learn(t0, &cfg, id(0), (forged(0), addr(2)), Hint::Beacon),
            Some(Learned::Dial)
        );
        // Expired entries go first: one new failure later clears them all.
        let later = t0 + Duration::from_secs(3600);
        d.failed(later, id(2), Duration::from_secs(1));
        assert_eq!(d.backoff_len(), 1);
        assert_eq!(
            d.learn(later, &cfg, id(1), (id(2), addr(2)), Hint::Beacon),
            None
        );
    }

    #[test]
    fn forged_ids_cannot_grow_the_heard_map_past_its_bound() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        let me = NodeId([0xff; 16]);
        for n in 0..20_000u32 {
            let mut b = [0x01; 16];
            b[..4].copy_from_slice(&n.to_be_bytes());
            let learned = d.learn(t0, &cfg, me, (NodeId(b), addr(2)), Hint::Beacon);
            assert_eq!(learned, Some(Learned::Announce), "answered all the same");
            assert!(d.heard_len() <= MAX_HEARD, "{} after {n}", d.heard_len());
        }
        // They leave after the fallback delay, within the dial budget, and room is made
        // for new ones.
        let later = t0 + cfg.fallback_after;
        assert_eq!(
            d.due(later, &cfg, 0, false).len(),
            DIAL_BUDGET_BURST as usize
        );
        let mut dialed = DIAL_BUDGET_BURST as usize;
        for s in 1..=200u64 {
            let batch = d.due(later + Duration::from_secs(s), &cfg, 0, false).len();
            assert!(
                batch <= DIAL_BUDGET_PER_SEC as usize,
                "{batch} in one second"
            );
            dialed += batch;
        }
        assert_eq!(dialed, MAX_HEARD);
        assert_eq!(d.heard_len(), 0);
    }

    #[test]
    fn learnt_addresses_are_dialed_within_the_budget_and_the_rest_later() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        let mut dials = 0;
        let mut deferred = 0;
        let last = 2 + DIAL_BUDGET_BURST as u8 + 60;
        for n in 2..last {
            match d.learn(t0, &cfg, id(1), (id(n), addr(n)), Hint::List) {
                Some(Learned::Dial) => dials += 1,
                Some(Learned::Deferred) => deferred += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(dials, DIAL_BUDGET_BURST);
        assert_eq!(deferred, 60);
        // Heard again meanwhile: not counted twice.
        let again = (id(last - 1), addr(last - 1));
        assert_eq!(d.learn(t0, &cfg, id(1), again, Hint::Beacon), None);
        // The next one is due when the budget has a dial again, not before.
        let next = d.poll_timeout(&cfg).expect("deferred dials wait");
        assert_eq!(
            next,
            t0 + Duration::from_millis(1000u64.div_ceil(u64::from(DIAL_BUDGET_PER_SEC)))
        );
        assert_eq!(d.due(next, &cfg, 0, false).len(), 1);
        let second = next + Duration::from_secs(1);
        assert_eq!(
            d.due(second, &cfg, 0, false).len(),
            DIAL_BUDGET_PER_SEC as usize
        );
    }

    #[test]
    fn a_proven_dial_gives_its_token_back_up_to_the_burst() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        let learn =
            |d: &mut Discovery, n: u8| d.learn(t0, &cfg, id(1), (id(n), addr(n)), Hint::List);
        for n in 2..2 + DIAL_BUDGET_BURST as u8 {
            assert_eq!(learn(&mut d, n), Some(Learned::Dial));
        }
        let next = 2 + DIAL_BUDGET_BURST as u8;
        assert_eq!(
            learn(&mut d, next),
            Some(Learned::Deferred),
            "the burst is spent"
        );
        // Two dials reach their nodes: two dials are there again, at once.
        d.dial_proven(t0);
        d.dial_proven(t0);
        assert_eq!(d.due(t0, &cfg, 0, false).len(), 1, "the deferred one first");
        assert_eq!(learn(&mut d, next + 1), Some(Learned::Dial));
        assert_eq!(learn(&mut d, next + 2), Some(Learned::Deferred));
        // Never more than the burst, however many are proven.
        for _ in 0..2 * DIAL_BUDGET_BURST {
            d.dial_proven(t0);
        }
        let mut dials = 0;
        for i in 0..2 * DIAL_BUDGET_BURST {
            let mut b = [0xff; 16];
            b[12..].copy_from_slice(&i.to_be_bytes());
            let at = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 27272));
            let learnt = d.learn(t0, &cfg, id(1), (NodeId(b), at), Hint::List);
            dials += u32::from(learnt == Some(Learned::Dial));
        }
        assert_eq!(dials, DIAL_BUDGET_BURST);
    }

    #[test]
    fn refusals_in_a_row_double_the_wait_up_to_the_cap() {
        let cfg = DiscoveryConfig::lan();
        let t0 = Instant::now();
        let mut d = Discovery::default();
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..8 {
            let wait = d.refused(now, id(2), addr(2), true, 1 << 31);
            assert!(d.we_refuse(now, id(2)));
            assert_eq!(
                d.learn(now, &cfg, id(1), (id(2), addr(2)), Hint::Beacon),
                None
            );
            // Refused unasked for the wait without its random part only: the other side
            // waits at least that long after it was refused, so it finds the filter asked.
            let base = wait - wait / 9;
            assert!(d.we_refuse(now + base - Duration::from_millis(1), id(2)));
            assert!(!d.we_refuse(now + base, id(2)));
            assert_eq!(
                d.learn(now + base, &cfg, id(1), (id(2), addr(2)), Hint::Beacon),
                None,
                "no dial yet"
            );
            now += wait;
            waits.push(wait.as_millis());
        }
        // 2 s, 4 s, 8 s... each with an eighth more (half the jitter), capped at 60 s.
        assert_eq!(waits, [2250, 4500, 9000, 18000, 36000, 67500, 67500, 67500]);
        // The seed at its address is not probed while it holds either.
        let mut seeded = cfg.clone();
        seeded.seeds = vec![addr(2)];
        d.start(now, &seeded);
        d.refused(now, id(2), addr(2), false, 0);
        assert!(d.due(now, &seeded, 0, true).is_empty());
        // Admitted: the count starts again.
        d.admitted(id(2));
        assert_eq!(d.refused(now, id(2), addr(2), true, 0), REFUSAL_FIRST_WAIT);
    }

    #[test]
    fn a_scan_covers_the_subnet_with_bounded_concurrency() {
        let mut cfg = DiscoveryConfig::lan();
        cfg.subnets = vec![Ipv4Addr::new(192, 168, 7, 33)];
        cfg.scan_port = 4000;
        let t0 = Instant::now();
        let mut d = Discovery::default();
        d.start(t0, &cfg);
        let mut seen = Vec::new();
        let mut in_flight = 0;
        for _ in 0..100 {
            let batch = d.due(t0, &cfg, in_flight, true);
            assert!(in_flight + batch.len() <= cfg.scan_concurrency);
            seen.extend(batch.iter().map(|t| t.addr));
            in_flight = 0; // all of them answered
            if !d.scanning() {
                break;
            }
        }
        assert_eq!(seen.len(), 254);
        assert_eq!(seen[0], "192.168.7.1:4000".parse().unwrap());
        assert_eq!(seen[253], "192.168.7.254:4000".parse().unwrap());
        assert_eq!(d.poll_timeout(&cfg), Some(t0 + cfg.rescan_interval));
    }

    #[test]
    fn seeds_and_lost_members_are_probed_periodically() {
        let mut cfg = DiscoveryConfig::lan();
        cfg.seeds = vec![addr(9)];
        cfg.probe_lost = true;
        let t0 = Instant::now();
        let mut d = Discovery::default();
        d.start(t0, &cfg);
        assert_eq!(d.due(t0, &cfg, 0, true).len(), 1);
        d.lost(t0, &cfg, id(4), addr(4));
        assert!(
            d.due(t0, &cfg, 0, true).is_empty(),
            "not before the next probe"
        );
        let t1 = t0 + cfg.probe_interval;
        let targets = d.due(t1, &cfg, 0, true);
        assert_eq!(targets.len(), 2);
        assert!(targets.iter().any(|t| t.expect == Some(id(4))));
        let forgotten = t0 + cfg.lost_memory + cfg.probe_interval;
        let targets = d.due(forgotten, &cfg, 0, true);
        assert_eq!(
            targets.len(),
            1,
            "the lost member is forgotten, the seed is not"
        );
    }
}
