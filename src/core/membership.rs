//! Who this node is linked to and who is in the cluster: every link, an index from node id
//! to the link on which that node introduced itself, and the suspects (members whose link
//! dropped without a goodbye and that are being redialed until their deadline).
//!
//! Links are added and removed only here, so the index follows every removal; the
//! coordinator indexes a link once the one-link-per-pair rule has let it stay.
//!
//! A node that is a member may introduce itself again on a new link (a redial while the old
//! link lingers): that link, a challenger, is judged like any other and stays out of the
//! index until it is admitted and replaces the member's link. If the member's link goes
//! first, the challenger takes its place in the index.
//!
//! What every input asks of the links (the next wake-up, whether a node is known, whether
//! formation is over) is answered from [`LinkIndex`], kept up to date as links are handed
//! out for change, so that it costs O(log N), not a walk over every link. In debug builds,
//! up to [`CHECK_INDEX_UP_TO`] links, each answer is checked against the walk it replaces,
//! and every [`CHECK_INDEX_EVERY`]th the whole index against one built afresh.

use std::cell::{Cell, Ref, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::{Index, IndexMut};
use std::time::Instant;

use super::crypto::Role;
use super::detector::DetectorConfig;
use super::error::SendError;
use super::link::{Link, Timer};
use super::link_index::LinkIndex;
use super::node::{NodeId, NodeInfo};
use super::output::ConnId;

/// Links up to which debug builds check the index against one built afresh, and the walks
/// it replaces (above it, those checks would cost more than the walks).
pub const CHECK_INDEX_UP_TO: usize = 48;

/// Answers of the index between two checks against one built afresh, in debug builds (at
/// every answer that check made the simulation tests five times slower). A link handed
/// out for change and not marked stays wrong in the index until it is marked, so a later
/// check still finds it.
pub const CHECK_INDEX_EVERY: u32 = 16;

/// A member whose connection dropped without a goodbye, being redialed until `deadline`.
struct Suspect {
    info: NodeInfo,
    deadline: Instant,
}

pub struct Membership {
    links: BTreeMap<ConnId, Link>,
    next_conn: ConnId,
    /// The link on which each node introduced itself (admitting or member).
    link_of: BTreeMap<NodeId, ConnId>,
    suspects: BTreeMap<NodeId, Suspect>,
    /// The suspects by deadline.
    suspect_deadlines: BTreeSet<(Instant, NodeId)>,
    /// Indexes over the links, brought up to date (from `&self`) before they answer.
    index: RefCell<LinkIndex>,
    /// Answers of the index since it was last checked (debug builds).
    unchecked: Cell<u32>,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            links: BTreeMap::new(),
            next_conn: 1,
            link_of: BTreeMap::new(),
            suspects: BTreeMap::new(),
            suspect_deadlines: BTreeSet::new(),
            index: RefCell::default(),
            unchecked: Cell::new(0),
        }
    }
}

impl Index<ConnId> for Membership {
    type Output = Link;

    fn index(&self, conn: ConnId) -> &Link {
        &self.links[&conn]
    }
}

impl IndexMut<ConnId> for Membership {
    fn index_mut(&mut self, conn: ConnId) -> &mut Link {
        self.mark(conn);
        self.links.get_mut(&conn).expect("a live link")
    }
}

impl Membership {
    /// Adds a link under a fresh id; ids are never reused.
    pub fn add(&mut self, link: Link) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.links.insert(conn, link);
        self.mark(conn);
        conn
    }

    /// `conn` is handed out for change: the index reads it again before it next answers.
    fn mark(&mut self, conn: ConnId) {
        let links = self.links.len();
        self.index.get_mut().mark(conn, links);
    }

    /// The index, up to date.
    fn index(&self) -> Ref<'_, LinkIndex> {
        {
            let mut index = self.index.borrow_mut();
            if index.is_stale() {
                index.sync(&self.links);
            }
            if cfg!(debug_assertions) && self.links.len() <= CHECK_INDEX_UP_TO {
                let n = self.unchecked.get() + 1;
                self.unchecked.set(n % CHECK_INDEX_EVERY);
                if n == CHECK_INDEX_EVERY {
                    assert_eq!(
                        *index,
                        LinkIndex::build(&self.links),
                        "the link index is stale"
                    );
                }
            }
        }
        self.index.borrow()
    }

    pub fn get(&self, conn: ConnId) -> Option<&Link> {
        self.links.get(&conn)
    }

    pub fn get_mut(&mut self, conn: ConnId) -> Option<&mut Link> {
        self.mark(conn);
        self.links.get_mut(&conn)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnId, &mut Link)> {
        self.index.get_mut().mark_all();
        self.links.iter_mut().map(|(&k, l)| (k, l))
    }

    pub fn conns(&self) -> Vec<ConnId> {
        self.links.keys().copied().collect()
    }

    /// Forgets a link, and the node it carried (a challenger of that node, if any, is
    /// indexed instead).
    pub fn remove(&mut self, conn: ConnId) -> Option<Link> {
        let link = self.links.remove(&conn)?;
        self.index.get_mut().put(conn, None);
        if let Some(id) = link.peer_id() {
            if self.link_of.get(&id) == Some(&conn) {
                self.link_of.remove(&id);
                if let Some(next) = self.challenger_of(id, None) {
                    self.link_of.insert(id, next);
                }
            }
        }
        Some(link)
    }

    /// A link on which member `id` introduced itself again, not indexed (see the module
    /// documentation), other than `except`.
    pub fn challenger_of(&self, id: NodeId, except: Option<ConnId>) -> Option<ConnId> {
        let indexed = self.link_of(id);
        let found = self
            .index()
            .links_of(id)
            .find(|&k| Some(k) != indexed && Some(k) != except);
        debug_assert!(
            self.links.len() > CHECK_INDEX_UP_TO
                || found
                    == self
                        .links
                        .iter()
                        .find(|&(&k, l)| l.peer_id() == Some(id)
                            && Some(k) != indexed
                            && Some(k) != except)
                        .map(|(&k, _)| k)
        );
        found
    }

    /// Records that node `id` introduced itself on `conn`; its previous link, if any, must
    /// have been removed.
    pub fn introduced(&mut self, id: NodeId, conn: ConnId) {
        let previous = self.link_of.insert(id, conn);
        debug_assert!(previous.is_none_or(|k| k == conn), "one link per node");
    }

    /// The link on which node `id` introduced itself, member or still being admitted.
    pub fn link_of(&self, id: NodeId) -> Option<ConnId> {
        self.link_of.get(&id).copied()
    }

    /// The link of member `id`, once both ends have admitted each other.
    pub fn member_link(&self, id: NodeId) -> Option<ConnId> {
        let conn = self.link_of(id)?;
        self.links[&conn].is_member().then_some(conn)
    }

    pub fn member_links(&self) -> Vec<ConnId> {
        let members = self.links.iter().filter(|(_, l)| l.is_member());
        members.map(|(&k, _)| k).collect()
    }

    /// Puts in `out` the IP addresses members have, if they changed since `seen` (a count
    /// of changes this returned before); returns the count now.
    pub fn member_ips(&self, seen: Option<u64>, out: &mut BTreeSet<IpAddr>) -> u64 {
        let index = self.index();
        let (ips, changes) = index.member_ips();
        if seen != Some(changes) {
            out.clear();
            out.extend(ips);
        }
        changes
    }

    pub fn has_members(&self) -> bool {
        self.index().members() > 0
    }

    /// How many members (both ends admitted), from the index.
    pub fn member_count(&self) -> usize {
        self.index().members()
    }

    /// True if the index names exactly the introduced links but challengers, and a
    /// challenger only ever stands beside a member's link.
    pub fn index_agrees(&self) -> bool {
        let introduced = self
            .links
            .iter()
            .filter_map(|(&k, l)| Some((l.peer_id()?, k)));
        let mut indexed = 0;
        for (id, conn) in introduced {
            match self.link_of(id) {
                Some(k) if k == conn => indexed += 1,
                Some(k) if self.links.get(&k).is_some_and(Link::is_member) => {}
                _ => return false,
            }
        }
        let index_live = self
            .link_of
            .iter()
            .all(|(id, k)| self.links.get(k).and_then(Link::peer_id) == Some(*id));
        index_live && indexed == self.link_of.len()
    }

    /// The current members in id order: member links, then suspects (they have not been
    /// removed); a member link wins over a suspect of the same id.
    pub fn members(&self) -> Vec<NodeInfo> {
        let mut m: Vec<NodeInfo> = self
            .link_of
            .values()
            .map(|conn| &self.links[conn])
            .filter(|l| l.is_member())
            .filter_map(|l| l.peer().cloned())
            .chain(self.suspects.values().map(|s| s.info.clone()))
            .collect();
        m.sort_by_key(|n| n.id);
        m.dedup_by_key(|n| n.id);
        m
    }

    /// What the links and suspects know of node `id`.
    pub fn info_of(&self, id: NodeId) -> Option<&NodeInfo> {
        self.link_of(id)
            .and_then(|conn| self.links[&conn].peer())
            .or_else(|| self.suspects.get(&id).map(|s| &s.info))
    }

    /// True if a link or a suspect stands for node `id`, or a link dials or reaches `addr`.
    pub fn is_known(&self, id: Option<NodeId>, addr: SocketAddr) -> bool {
        let linked_or_suspect = |id| self.is_suspect(id) || self.link_of(id).is_some();
        if id.is_some_and(linked_or_suspect) {
            return true;
        }
        let index = self.index();
        let known = id.is_some_and(|id| index.expects(id)) || index.listens_at(addr);
        debug_assert!(
            self.links.len() > CHECK_INDEX_UP_TO
                || known
                    == self
                        .links
                        .values()
                        .any(|l| (id.is_some() && l.expect == id) || l.listen_addr() == Some(addr))
        );
        known
    }

    /// True if a link carries a peer that has proven it is node `id` (introduced or not).
    pub fn is_proven(&self, id: NodeId) -> bool {
        self.index().proven(id)
    }

    /// Links whose peer has introduced itself (being admitted or a member), but for node
    /// `except`'s (a reconnection replaces it): how many in all, and from `ip`.
    pub fn introduced_counts(&self, ip: IpAddr, except: NodeId) -> (usize, usize) {
        self.index().introduced_counts(ip, except)
    }

    /// Links still on their way to membership.
    pub fn pending(&self) -> usize {
        self.index().pending()
    }

    /// True while a connection is on its way to membership, scan dials not yet answered
    /// aside (most addresses of a scanned subnet never answer): formation is not over.
    pub fn forming(&self) -> bool {
        self.index().forming()
    }

    /// Our dials still on their way to membership.
    pub fn pending_dials(&self) -> usize {
        self.index().pending_dials()
    }

    /// The newest link accepted from `ip`, up to `newest`, whose peer has not yet proven
    /// its id (`or_introducing`: or not yet said where it listens).
    pub fn accepted_unknown(
        &self,
        ip: IpAddr,
        newest: ConnId,
        or_introducing: bool,
    ) -> Option<ConnId> {
        let found = self.index().accepted_unknown(ip, newest, or_introducing);
        debug_assert!(
            self.links.len() > CHECK_INDEX_UP_TO
                || found == {
                    let unknown =
                        |l: &Link| l.is_unproven() || (or_introducing && l.is_introducing());
                    let from_ip =
                        |l: &Link| l.role == Role::Responder && unknown(l) && l.addr.ip() == ip;
                    let mut links = self.links.range(..=newest).filter(|&(_, l)| from_ip(l));
                    links.next_back().map(|(&k, _)| k)
                }
        );
        found
    }

    fn pending_accepts(&self) -> impl Iterator<Item = (ConnId, &Link)> {
        let accepts = self.links.iter().filter(|(_, l)| l.role == Role::Responder);
        accepts
            .filter(|(_, l)| l.is_pending())
            .map(|(&k, l)| (k, l))
    }

    /// Accepted links from `ip` still on their way to membership.
    pub fn pending_accepts_from(&self, ip: IpAddr) -> usize {
        self.index().pending_accepts_from(ip)
    }

    /// The accepted link nearest its deadline that is not yet being admitted.
    pub fn oldest_accept_before_admission(&self) -> Option<ConnId> {
        let unadmitted = self.pending_accepts().filter(|(_, l)| !l.is_admitting());
        unadmitted.min_by_key(|(_, l)| l.deadline()).map(|(k, _)| k)
    }

    /// Our dials to `ip` that the peer's may cross ([`Link::may_cross`]) whose peer has not
    /// yet proven its id.
    pub fn unproven_dials_to(&self, ip: IpAddr) -> Vec<ConnId> {
        let found: Vec<ConnId> = self.index().unproven_dials_to(ip).collect();
        debug_assert!(
            self.links.len() > CHECK_INDEX_UP_TO
                || found
                    == self
                        .links
                        .iter()
                        .filter(|(_, l)| l.may_cross() && l.is_unproven())
                        .filter(|(_, l)| l.addr.ip() == ip)
                        .map(|(&k, _)| k)
                        .collect::<Vec<_>>()
        );
        found
    }

    /// Subnet-scan dials not connected yet.
    pub fn scans_in_flight(&self) -> usize {
        self.index().scans_dialing()
    }

    /// Links whose deadline ran out by `now`, and which one, in id order.
    pub fn expired(&self, now: Instant) -> Vec<(ConnId, Timer)> {
        let conns = self.index().expired(now);
        let timer = |k| self.links[&k].expired(now).expect("an indexed deadline");
        let expired: Vec<_> = conns.into_iter().map(|k| (k, timer(k))).collect();
        debug_assert!(
            self.links.len() > CHECK_INDEX_UP_TO
                || expired
                    == self
                        .links
                        .iter()
                        .filter_map(|(&k, l)| Some((k, l.expired(now)?)))
                        .collect::<Vec<_>>()
        );
        expired
    }

    /// Members silent past the detector's bound at `now`, in id order.
    pub fn dead(&self, now: Instant, detector: &DetectorConfig) -> Vec<ConnId> {
        let bound = detector.dead_after();
        let asked_bound = detector.asked_dead_after();
        let dead = self.index().silent(
            |heard| now >= heard + bound,
            |since| now >= since + asked_bound,
        );
        debug_assert!(
            self.links.len() > CHECK_INDEX_UP_TO
                || dead
                    == self
                        .links
                        .iter()
                        .filter(|(_, l)| l.is_dead(now, detector))
                        .map(|(&k, _)| k)
                        .collect::<Vec<_>>()
        );
        dead
    }

    /// The earliest wake-up a link or a suspect needs: a deadline of a link not yet a
    /// member, a member's first round, the silence bound of the member heard from least
    /// recently (the bound is the same for every member), the shorter bound of the member
    /// this node has asked for an answer the longest, a suspect's deadline.
    pub fn poll_timeout(&self, detector: &DetectorConfig) -> Option<Instant> {
        let index = self.index();
        let silence = index.earliest_heard().map(|t| t + detector.dead_after());
        let asked = index
            .earliest_asking()
            .map(|t| t + detector.asked_dead_after());
        let suspect = self.suspect_deadlines.first().map(|&(t, _)| t);
        let at = [index.earliest_fixed(), silence, asked, suspect]
            .into_iter()
            .flatten()
            .min();
        debug_assert!(
            self.links.len() > CHECK_INDEX_UP_TO
                || at
                    == self
                        .links
                        .values()
                        .filter_map(|l| l.poll_timeout(detector))
                        .chain(self.suspects.values().map(|s| s.deadline))
                        .min()
        );
        at
    }

    /// Puts in `out` the links custom event `name` of `len` bytes goes on: those of
    /// `targets` (every member if `None`) that joined it. A target that is not a member
    /// is an error; a suspect is skipped, as what is sent meanwhile would be lost with its
    /// old link.
    pub fn event_targets(
        &self,
        name: &str,
        len: usize,
        targets: Option<&[NodeId]>,
        out: &mut Vec<ConnId>,
    ) -> Result<(), SendError> {
        let wanted = |l: &Link| l.is_member() && l.subscriptions.contains(name);
        match targets {
            None => out.extend(
                self.links
                    .iter()
                    .filter(|(_, l)| wanted(l))
                    .map(|(&k, _)| k),
            ),
            Some(ids) => {
                for &id in ids {
                    match self.member_link(id) {
                        Some(k) if wanted(&self.links[&k]) => out.push(k),
                        Some(_) => {}
                        None if self.is_suspect(id) => {}
                        None => return Err(SendError::UnknownTarget(id.to_string())),
                    }
                }
                if ids.len() > 1 {
                    out.sort_unstable();
                    out.dedup();
                }
            }
        }
        // A receiver closes a connection carrying more than it accepts: refuse up front.
        let too_small = out
            .iter()
            .map(|k| &self.links[k])
            .find(|l| len > l.peer_max_message);
        match too_small {
            Some(l) => Err(SendError::TooLarge {
                len,
                max: l.peer_max_message,
            }),
            None => Ok(()),
        }
    }

    pub fn suspect(&mut self, info: NodeInfo, deadline: Instant) {
        let id = info.id;
        if let Some(old) = self.suspects.insert(id, Suspect { info, deadline }) {
            self.suspect_deadlines.remove(&(old.deadline, id));
        }
        self.suspect_deadlines.insert((deadline, id));
    }

    pub fn is_suspect(&self, id: NodeId) -> bool {
        self.suspects.contains_key(&id)
    }

    /// No longer a suspect (back, or given up); what was known of it.
    pub fn clear_suspect(&mut self, id: NodeId) -> Option<NodeInfo> {
        let s = self.suspects.remove(&id)?;
        self.suspect_deadlines.remove(&(s.deadline, id));
        Some(s.info)
    }

    pub fn clear_suspects(&mut self) {
        self.suspects.clear();
        self.suspect_deadlines.clear();
    }

    /// Suspects whose deadline has passed at `now`, in id order.
    pub fn overdue_suspects(&self, now: Instant) -> Vec<NodeId> {
        let due = self
            .suspect_deadlines
            .iter()
            .take_while(|&&(t, _)| t <= now);
        let mut ids: Vec<NodeId> = due.map(|&(_, id)| id).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::link::introduced_link;

    fn node(n: u8) -> NodeInfo {
        NodeInfo {
            id: NodeId([n; 16]),
            host_name: format!("host-{n}"),
            ip: IpAddr::from([10, 0, 0, n]),
            port: 27272,
            advertised: None,
            metadata: "{}".into(),
            master_eligible: true,
        }
    }

    #[test]
    fn the_index_follows_links_as_they_are_introduced_and_removed() {
        let mut m = Membership::default();
        let a = m.add(introduced_link(node(1), Role::Initiator, 1));
        assert!(!m.index_agrees(), "an introduced link not yet indexed");
        m.introduced(node(1).id, a);
        assert!(m.index_agrees());
        assert_eq!(m.link_of(node(1).id), Some(a));
        assert_eq!(m.member_link(node(1).id), None, "admitting, not a member");
        // A second link of the same node, the first closed by the one-link rule.
        let b = m.add(introduced_link(node(1), Role::Responder, 2));
        assert_ne!(a, b, "ids are never reused");
        assert!(m.remove(a).is_some());
        m.introduced(node(1).id, b);
        assert!(m.index_agrees());
        assert_eq!(
            m.info_of(node(1).id),
            None,
            "known as a member only once it is one"
        );
        // Removing a link that lost the rule leaves the winner indexed.
        let c = m.add(introduced_link(node(1), Role::Initiator, 3));
        assert!(m.remove(c).is_some());
        assert_eq!(m.link_of(node(1).id), Some(b));
        assert!(m.remove(b).is_some());
        assert_eq!(m.link_of(node(1).id), None);
        assert!(m.index_agrees());
    }

    #[test]
    fn suspects_are_members_until_cleared_and_stand_for_their_node() {
        let mut m = Membership::default();
        let t0 = Instant::now();
        m.suspect(node(2), t0 + std::time::Duration::from_secs(3));
        assert_eq!(m.members(), vec![node(2)]);
        assert!(m.is_known(Some(node(2).id), "10.9.9.9:1".parse().unwrap()));
        assert_eq!(m.info_of(node(2).id), Some(&node(2)));
        assert!(m.overdue_suspects(t0).is_empty());
        let due = t0 + std::time::Duration::from_secs(3);
        assert_eq!(m.overdue_suspects(due), vec![node(2).id]);
        assert_eq!(
            m.poll_timeout(&DetectorConfig {
                interval: std::time::Duration::from_secs(5),
                misses: 3,
                grace: std::time::Duration::from_secs(1),
                per_interval: 9,
                rounds: 1,
            }),
            Some(due)
        );
        // Sending to a suspect skips it; to a stranger is an error.
        let mut out = Vec::new();
        assert_eq!(
            m.event_targets("e", 1, Some(&[node(2).id]), &mut out),
            Ok(())
        );
        assert!(out.is_empty());
        assert_eq!(
            m.event_targets("e", 1, Some(&[node(3).id]), &mut out),
            Err(SendError::UnknownTarget(node(3).id.to_string()))
        );
        assert_eq!(m.clear_suspect(node(2).id), Some(node(2)));
        assert!(m.members().is_empty());
    }
}
