//! Who is in the cluster: the links that carry introduced nodes, indexed by node id, and
//! the suspects, members whose link dropped without a goodbye and that are being redialed.
//!
//! The index replaces searching every link for "the link of node X"; the one-link-per-pair
//! rule (see the coordinator's `resolve_duplicate`) keeps it to one link per node.

use std::collections::BTreeMap;
use std::time::Instant;

use super::cluster::ConnId;
use super::link::Link;
use super::node::{NodeId, NodeInfo};

/// A member whose connection dropped without a goodbye, being redialed until `deadline`.
struct Suspect {
    info: NodeInfo,
    deadline: Instant,
}

#[derive(Default)]
pub struct Membership {
    /// The link on which each node introduced itself (admitting or member).
    link_of: BTreeMap<NodeId, ConnId>,
    suspects: BTreeMap<NodeId, Suspect>,
}

impl Membership {
    /// The link on which node `id` introduced itself, member or still being admitted.
    pub fn link_of(&self, id: NodeId) -> Option<ConnId> {
        self.link_of.get(&id).copied()
    }

    /// Records that node `id` introduced itself on `conn`; its previous link, if any, must
    /// have been closed.
    pub fn index(&mut self, id: NodeId, conn: ConnId) {
        let previous = self.link_of.insert(id, conn);
        debug_assert_eq!(previous, None, "one link per node");
    }

    /// `conn`, which carried node `id`, is gone.
    pub fn unindex(&mut self, id: NodeId, conn: ConnId) {
        if self.link_of.get(&id) == Some(&conn) {
            self.link_of.remove(&id);
        }
    }

    /// True if the index names exactly the introduced links.
    pub fn agrees_with(&self, links: &BTreeMap<ConnId, Link>) -> bool {
        let introduced = links.iter().filter_map(|(&k, l)| Some((l.peer_id()?, k)));
        let mut count = 0;
        for (id, conn) in introduced {
            count += 1;
            if self.link_of(id) != Some(conn) {
                return false;
            }
        }
        count == self.link_of.len()
    }

    /// The current members in id order: member links, then suspects (they have not been
    /// removed); a member link wins over a suspect of the same id.
    pub fn members(&self, links: &BTreeMap<ConnId, Link>) -> Vec<NodeInfo> {
        let mut m: Vec<NodeInfo> = self
            .link_of
            .values()
            .map(|conn| &links[conn])
            .filter(|l| l.is_member())
            .filter_map(|l| l.peer().cloned())
            .chain(self.suspects.values().map(|s| s.info.clone()))
            .collect();
        m.sort_by_key(|n| n.id);
        m.dedup_by_key(|n| n.id);
        m
    }

    pub fn suspect(&mut self, info: NodeInfo, deadline: Instant) {
        self.suspects.insert(info.id, Suspect { info, deadline });
    }

    pub fn is_suspect(&self, id: NodeId) -> bool {
        self.suspects.contains_key(&id)
    }

    pub fn suspect_info(&self, id: NodeId) -> Option<&NodeInfo> {
        self.suspects.get(&id).map(|s| &s.info)
    }

    /// No longer a suspect (back, or given up); what was known of it.
    pub fn clear_suspect(&mut self, id: NodeId) -> Option<NodeInfo> {
        self.suspects.remove(&id).map(|s| s.info)
    }

    pub fn clear_suspects(&mut self) {
        self.suspects.clear();
    }

    /// Suspects whose deadline has passed at `now`.
    pub fn overdue_suspects(&self, now: Instant) -> Vec<NodeId> {
        self.suspects
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(&id, _)| id)
            .collect()
    }

    pub fn next_suspect_deadline(&self) -> Option<Instant> {
        self.suspects.values().map(|s| s.deadline).min()
    }
}
