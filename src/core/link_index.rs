//! Indexes over a node's links, so that what every input asks of them (the next wake-up,
//! whether a beacon names a node already linked, whether formation is over) costs
//! O(log N) instead of a walk over every link: at a thousand members that walk, on each of
//! the hundreds of beacons a node hears a second, was most of a node's work.
//!
//! Links change stage through `&mut Link` handed out by [`super::membership::Membership`],
//! which cannot see what changed; it marks every link it hands out so as *dirty*, and the
//! index reads each dirty link again ([`Keys::of`]) before it next answers. A link read
//! again and found unchanged costs a comparison. The index holds one entry per link in
//! each of its maps (the links' own bound, README "Limits"), and at most as many dirty
//! marks as links plus [`DIRTY_SLACK`]: past that, every link is read again once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::crypto::Role;
use super::link::Link;
use super::node::NodeId;
use super::output::ConnId;

/// Dirty marks kept beyond one per link before the index gives up on them and reads every
/// link again.
pub const DIRTY_SLACK: usize = 64;

/// What one link contributes to the indexes, as read off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    /// The running deadline of a link not yet a member.
    deadline: Option<Instant>,
    /// A member's first probe round, until the round takes it in.
    first_round: Option<Instant>,
    /// A member's last sign of life: its silence bound runs from there.
    heard: Option<Instant>,
    /// Since when this node asks a silent member for an answer: its shorter bound runs
    /// from there.
    asking: Option<Instant>,
    expect: Option<NodeId>,
    listen: Option<SocketAddr>,
    proven: Option<NodeId>,
    /// The node the peer introduced itself as (admitting or member).
    peer: Option<NodeId>,
    /// A member's IP address.
    member_ip: Option<IpAddr>,
    ip: IpAddr,
    role: Role,
    member: bool,
    pending: bool,
    /// On its way to membership, a scan dial not yet answered aside.
    forming: bool,
    scan_dialing: bool,
    /// Accepted and not yet proven.
    unproven_accept: bool,
    /// Our dial that one of the peer's may cross (see [`Link::may_cross`]), not yet proven.
    unproven_dial: bool,
    /// Accepted, proven, and its introduction awaited.
    introducing_accept: bool,
}

impl Keys {
    pub fn of(link: &Link) -> Keys {
        let liveness = link.liveness();
        let pending = link.is_pending();
        let accepted = link.role == Role::Responder;
        Keys {
            deadline: link.deadline(),
            first_round: liveness.and_then(|l| l.first_round()),
            heard: liveness.map(|l| l.last_heard()),
            asking: liveness.and_then(|l| l.asking_since()),
            expect: link.expect,
            listen: link.listen_addr(),
            proven: link.proven_id(),
            peer: link.peer_id(),
            member_ip: link.peer().map(|p| p.ip),
            ip: link.addr.ip(),
            role: link.role,
            member: link.is_member(),
            pending,
            forming: pending && !(link.scan && link.is_dialing()),
            scan_dialing: link.scan && link.is_dialing(),
            unproven_accept: accepted && link.is_unproven(),
            unproven_dial: link.may_cross() && link.is_unproven(),
            introducing_accept: accepted && link.is_introducing(),
        }
    }
}

/// The indexes, and the links to read again before they answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkIndex {
    keys: BTreeMap<ConnId, Keys>,
    /// Deadlines of links not yet members.
    deadlines: BTreeSet<(Instant, ConnId)>,
    first_rounds: BTreeSet<(Instant, ConnId)>,
    heard: BTreeSet<(Instant, ConnId)>,
    asking: BTreeSet<(Instant, ConnId)>,
    expects: BTreeMap<NodeId, u32>,
    listens: BTreeMap<SocketAddr, u32>,
    proven: BTreeMap<NodeId, u32>,
    /// Introduced links by the id the peer gave.
    by_peer: BTreeSet<(NodeId, ConnId)>,
    introduced_from: BTreeMap<IpAddr, u32>,
    introduced: usize,
    pending_accepts_from: BTreeMap<IpAddr, u32>,
    unproven_accepts: BTreeSet<(IpAddr, ConnId)>,
    /// Our dials that the peer's may cross, not yet proven, by the IP address dialed.
    unproven_dials: BTreeSet<(IpAddr, ConnId)>,
    introducing_accepts: BTreeSet<(IpAddr, ConnId)>,
    members: usize,
    pending: usize,
    pending_dials: usize,
    forming: usize,
    scans_dialing: usize,
    /// Members by IP address, and a count of changes to the set of addresses.
    member_ips: BTreeMap<IpAddr, u32>,
    member_ips_changes: Changes,
    dirty: Vec<ConnId>,
    all_dirty: bool,
}

/// A count of changes, which says when a copy is out of date; not part of what the index
/// says (an index built afresh equals one kept whatever their counts).
#[derive(Debug, Default, Clone, Copy)]
struct Changes(u64);

impl PartialEq for Changes {
    fn eq(&self, _: &Changes) -> bool {
        true
    }
}

impl Eq for Changes {}

fn set<T: Ord>(s: &mut BTreeSet<T>, v: T, add: bool) {
    if add {
        s.insert(v);
    } else {
        s.remove(&v);
    }
}

/// Counts `v` in or out of `m`; true if that put it in or took it out.
fn count<T: Ord>(m: &mut BTreeMap<T, u32>, v: T, add: bool) -> bool {
    use std::collections::btree_map::Entry;
    match m.entry(v) {
        Entry::Vacant(e) => {
            debug_assert!(add, "a count below zero");
            if add {
                e.insert(1);
            }
            add
        }
        Entry::Occupied(mut e) if add => {
            *e.get_mut() += 1;
            false
        }
        Entry::Occupied(mut e) => {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
                return true;
            }
            false
        }
    }
}

/// A link's keys before and after a change (`None`: no link).
struct Diff<'a>(Option<&'a Keys>, Option<&'a Keys>);

impl Diff<'_> {
    /// If the part `of` the keys changed, takes the old value out (`f(old, false)`) and
    /// puts the new one in (`f(new, true)`).
    fn part<T: PartialEq>(&self, of: impl Fn(&Keys) -> Option<T>, mut f: impl FnMut(T, bool)) {
        let (old, new) = (self.0.and_then(&of), self.1.and_then(&of));
        if old != new {
            if let Some(v) = old {
                f(v, false);
            }
            if let Some(v) = new {
                f(v, true);
            }
        }
    }

    /// Counts the link in `n` or out of it if whether it is `on` changed.
    fn tally(&self, on: fn(&Keys) -> bool, n: &mut usize) {
        self.part(|k| on(k).then_some(()), |(), add| *n = tallied(*n, add));
    }
}

fn tallied(n: usize, add: bool) -> usize {
    if add {
        n + 1
    } else {
        n - 1
    }
}

impl LinkIndex {
    /// The index of `links`, read from scratch (what the kept one must equal).
    pub fn build(links: &BTreeMap<ConnId, Link>) -> LinkIndex {
        let mut ix = LinkIndex::default();
        for (&conn, link) in links {
            ix.put(conn, Some(Keys::of(link)));
        }
        ix
    }

    /// `conn` may have changed: read it again before the next answer.
    pub fn mark(&mut self, conn: ConnId, links: usize) {
        if self.all_dirty {
            return;
        }
        if self.dirty.len() >= links + DIRTY_SLACK {
            self.dirty.clear();
            self.all_dirty = true;
        } else {
            self.dirty.push(conn);
        }
    }

    /// Every link may have changed.
    pub fn mark_all(&mut self) {
        self.dirty.clear();
        self.all_dirty = true;
    }

    pub fn is_stale(&self) -> bool {
        self.all_dirty || !self.dirty.is_empty()
    }

    /// Reads the dirty links again.
    pub fn sync(&mut self, links: &BTreeMap<ConnId, Link>) {
        if std::mem::take(&mut self.all_dirty) {
            self.dirty.clear();
            for (&conn, link) in links {
                self.put(conn, Some(Keys::of(link)));
            }
            return;
        }
        let dirty = std::mem::take(&mut self.dirty);
        for &conn in &dirty {
            self.put(conn, links.get(&conn).map(Keys::of));
        }
        // Keep the allocation: marks come back with the next input.
        self.dirty = dirty;
        self.dirty.clear();
    }

    /// `conn`'s keys are now `keys` (`None`: the link is gone). Only the parts that changed
    /// are moved: most inputs change one (a member heard from moves in `heard` only).
    /// Moving all of them took 5.7 % of the CPU of 100 processes forming (after the last
    /// `listening`, by the profile described in `bench/formation.js`), the changed ones 2.8 %.
    pub fn put(&mut self, conn: ConnId, keys: Option<Keys>) {
        let old = self.keys.get(&conn).copied();
        if old == keys {
            return;
        }
        self.apply(conn, old.as_ref(), keys.as_ref());
        match keys {
            Some(k) => self.keys.insert(conn, k),
            None => self.keys.remove(&conn),
        };
    }

    /// Moves `conn` in each index whose part of its keys differs from `old` to `new`.
    fn apply(&mut self, conn: ConnId, old: Option<&Keys>, new: Option<&Keys>) {
        let d = Diff(old, new);
        d.part(
            |k| k.deadline,
            |t, add| set(&mut self.deadlines, (t, conn), add),
        );
        d.part(
            |k| k.first_round,
            |t, add| set(&mut self.first_rounds, (t, conn), add),
        );
        d.part(|k| k.heard, |t, add| set(&mut self.heard, (t, conn), add));
        d.part(|k| k.asking, |t, add| set(&mut self.asking, (t, conn), add));
        d.part(
            |k| k.expect,
            |id, add| _ = count(&mut self.expects, id, add),
        );
        d.part(|k| k.listen, |a, add| _ = count(&mut self.listens, a, add));
        d.part(|k| k.proven, |id, add| _ = count(&mut self.proven, id, add));
        d.part(
            |k| k.peer.map(|id| (id, k.ip)),
            |(id, ip), add| {
                set(&mut self.by_peer, (id, conn), add);
                count(&mut self.introduced_from, ip, add);
                self.introduced = tallied(self.introduced, add);
            },
        );
        let ip_if = |on: fn(&Keys) -> bool| move |k: &Keys| on(k).then_some(k.ip);
        d.part(
            ip_if(|k| k.pending && k.role == Role::Responder),
            |ip, add| _ = count(&mut self.pending_accepts_from, ip, add),
        );
        d.part(ip_if(|k| k.unproven_accept), |ip, add| {
            set(&mut self.unproven_accepts, (ip, conn), add)
        });
        d.part(ip_if(|k| k.unproven_dial), |ip, add| {
            set(&mut self.unproven_dials, (ip, conn), add)
        });
        d.part(ip_if(|k| k.introducing_accept), |ip, add| {
            set(&mut self.introducing_accepts, (ip, conn), add)
        });
        d.tally(|k| k.member, &mut self.members);
        d.tally(|k| k.pending, &mut self.pending);
        d.tally(
            |k| k.pending && k.role == Role::Initiator,
            &mut self.pending_dials,
        );
        d.tally(|k| k.forming, &mut self.forming);
        d.tally(|k| k.scan_dialing, &mut self.scans_dialing);
        d.part(
            |k| k.member_ip,
            |ip, add| {
                if count(&mut self.member_ips, ip, add) {
                    self.member_ips_changes.0 += 1;
                }
            },
        );
    }

    /// The earliest deadline of a link not yet a member, and of a member's first round.
    pub fn earliest_fixed(&self) -> Option<Instant> {
        let deadline = self.deadlines.first().map(|&(t, _)| t);
        let round = self.first_rounds.first().map(|&(t, _)| t);
        deadline.into_iter().chain(round).min()
    }

    /// The earliest last sign of life of a member.
    pub fn earliest_heard(&self) -> Option<Instant> {
        self.heard.first().map(|&(t, _)| t)
    }

    /// Since when this node has asked the member it began to ask first, of those it asks.
    pub fn earliest_asking(&self) -> Option<Instant> {
        self.asking.first().map(|&(t, _)| t)
    }

    /// Links whose deadline (not yet members) is at or before `now`, in id order.
    pub fn expired(&self, now: Instant) -> Vec<ConnId> {
        let due = self.deadlines.iter().take_while(|&&(t, _)| t <= now);
        let mut conns: Vec<ConnId> = due.map(|&(_, k)| k).collect();
        conns.sort_unstable();
        conns
    }

    /// Members whose last sign of life `t` has `silent(t)`, or that this node has asked
    /// since `t` with `asked(t)`, in id order.
    pub fn silent(
        &self,
        silent: impl Fn(Instant) -> bool,
        asked: impl Fn(Instant) -> bool,
    ) -> Vec<ConnId> {
        let heard = self.heard.iter().take_while(|&&(t, _)| silent(t));
        let asking = self.asking.iter().take_while(|&&(t, _)| asked(t));
        let mut conns: Vec<ConnId> = heard.chain(asking).map(|&(_, k)| k).collect();
        conns.sort_unstable();
        conns.dedup();
        conns
    }

    pub fn expects(&self, id: NodeId) -> bool {
        self.expects.contains_key(&id)
    }

    pub fn listens_at(&self, addr: SocketAddr) -> bool {
        self.listens.contains_key(&addr)
    }

    pub fn proven(&self, id: NodeId) -> bool {
        self.proven.contains_key(&id)
    }

    /// Introduced links of node `id`, in id order.
    pub fn links_of(&self, id: NodeId) -> impl Iterator<Item = ConnId> + '_ {
        let range = self.by_peer.range((id, ConnId::MIN)..=(id, ConnId::MAX));
        range.map(|&(_, k)| k)
    }

    /// Introduced links (how many in all, and from `ip`), but node `except`'s.
    pub fn introduced_counts(&self, ip: IpAddr, except: NodeId) -> (usize, usize) {
        let (mut all, mut from) = (self.introduced, self.count_from(&self.introduced_from, ip));
        for k in self.links_of(except) {
            all -= 1;
            if self.keys[&k].ip == ip {
                from -= 1;
            }
        }
        (all, from)
    }

    fn count_from(&self, m: &BTreeMap<IpAddr, u32>, ip: IpAddr) -> usize {
        m.get(&ip).map_or(0, |&n| n as usize)
    }

    pub fn pending_accepts_from(&self, ip: IpAddr) -> usize {
        self.count_from(&self.pending_accepts_from, ip)
    }

    /// The newest accepted link from `ip`, up to `newest`, not yet proven
    /// (`or_introducing`: or proven and not yet introduced).
    pub fn accepted_unknown(
        &self,
        ip: IpAddr,
        newest: ConnId,
        or_introducing: bool,
    ) -> Option<ConnId> {
        let range = |s: &BTreeSet<(IpAddr, ConnId)>| {
            let mut r = s.range((ip, ConnId::MIN)..=(ip, newest));
            r.next_back().map(|&(_, k)| k)
        };
        let unproven = range(&self.unproven_accepts);
        let introducing = or_introducing.then(|| range(&self.introducing_accepts));
        unproven.into_iter().chain(introducing.flatten()).max()
    }

    /// Our dials to `ip` that the peer's may cross, not yet proven.
    pub fn unproven_dials_to(&self, ip: IpAddr) -> impl Iterator<Item = ConnId> + '_ {
        let range = self
            .unproven_dials
            .range((ip, ConnId::MIN)..=(ip, ConnId::MAX));
        range.map(|&(_, k)| k)
    }

    pub fn members(&self) -> usize {
        self.members
    }

    /// The IP addresses members have, and how many times that set has changed.
    pub fn member_ips(&self) -> (impl Iterator<Item = IpAddr> + '_, u64) {
        (self.member_ips.keys().copied(), self.member_ips_changes.0)
    }

    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn pending_dials(&self) -> usize {
        self.pending_dials
    }

    pub fn forming(&self) -> bool {
        self.forming > 0
    }

    pub fn scans_dialing(&self) -> usize {
        self.scans_dialing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use std::time::Duration;

    /// Keys with each part drawn from a few values, so that changes touch one part, some
    /// or all of them, and values repeat across links (the counted maps).
    fn random_keys(rng: &mut ChaCha20Rng, t0: Instant) -> Keys {
        let mut pick = |n: u64| rng.next_u64() % n;
        let time = |p: u64| (p > 0).then_some(t0 + Duration::from_millis(p * 10));
        let id = |v: u64| (v > 0).then_some(NodeId([v as u8; 16]));
        let ip = |v: u64| IpAddr::from([127, 0, 0, v as u8]);
        let (d, f, h, a) = (pick(3), pick(3), pick(4), pick(3));
        let (e, l, p, pe, mi) = (pick(3), pick(3), pick(3), pick(3), pick(3));
        let listen = (l > 0).then_some(SocketAddr::new(ip(l), 7000));
        Keys {
            deadline: time(d),
            first_round: time(f),
            heard: time(h),
            asking: time(a),
            expect: id(e),
            listen,
            proven: id(p),
            peer: id(pe),
            member_ip: (mi > 0).then_some(ip(mi)),
            ip: ip(pick(3) + 1),
            role: if pick(2) == 0 {
                Role::Initiator
            } else {
                Role::Responder
            },
            member: pick(2) == 0,
            pending: pick(2) == 0,
            forming: pick(2) == 0,
            scan_dialing: pick(2) == 0,
            unproven_accept: pick(2) == 0,
            unproven_dial: pick(2) == 0,
            introducing_accept: pick(2) == 0,
        }
    }

    /// `put` moves only the parts of a link's keys that changed; whatever the order of
    /// changes and removals, the index equals one built afresh from the keys left.
    #[test]
    fn moving_only_the_changed_parts_leaves_the_index_a_fresh_build_would_make() {
        let t0 = Instant::now();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for _ in 0..200 {
            let mut kept = LinkIndex::default();
            let mut now: BTreeMap<ConnId, Keys> = BTreeMap::new();
            for _ in 0..40 {
                let conn = rng.next_u64() % 6;
                let keys = (rng.next_u64() % 5 != 0).then(|| {
                    let mut k = now
                        .get(&conn)
                        .copied()
                        .unwrap_or_else(|| random_keys(&mut rng, t0));
                    // Often one part only, as most inputs do.
                    if rng.next_u64() % 2 == 0 {
                        k.heard = Some(t0 + Duration::from_millis(rng.next_u64() % 50));
                    } else {
                        k = random_keys(&mut rng, t0);
                    }
                    k
                });
                kept.put(conn, keys);
                match keys {
                    Some(k) => now.insert(conn, k),
                    None => now.remove(&conn),
                };
                let mut fresh = LinkIndex::default();
                for (&c, &k) in &now {
                    fresh.put(c, Some(k));
                }
                assert_eq!(kept, fresh);
                // And against the keys themselves, for a few parts.
                let count = |on: fn(&Keys) -> bool| now.values().filter(|k| on(k)).count();
                assert_eq!(kept.members, count(|k| k.member));
                assert_eq!(kept.introduced, count(|k| k.peer.is_some()));
                assert_eq!(kept.heard.len(), count(|k| k.heard.is_some()));
                let dials = count(|k| k.pending && k.role == Role::Initiator);
                assert_eq!(kept.pending_dials, dials);
                let heard: BTreeSet<_> = now
                    .iter()
                    .filter_map(|(&c, k)| Some((k.heard?, c)))
                    .collect();
                assert_eq!(kept.heard, heard);
            }
        }
    }
}
