//! The election's effects carried out: its messages sent, and a change of master told to
//! the application, in a stated order: a departed master's `NodeRemoved` comes before the
//! `NewMaster` that replaces it, on every node.
//!
//! That order needs care because a departure reaches each node on its own connection: the
//! survivor that takes over may have seen the master's goodbye (or crash) and sent its
//! claim before this node has seen it. So when the master this node follows changes while
//! the previous one is still a member here, the change is held back (the election itself
//! follows the new master at once) until the previous master is removed, or says something
//! itself (it is alive: a `promote()` elsewhere, a resignation), or [`Config::suspect_timeout`]
//! has passed (a departure this node has not noticed by then is a silence, told by the
//! failure detector later).
//!
//! [`Config::suspect_timeout`]: crate::core::config::Config::suspect_timeout

use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, Event};
use crate::core::election::Effect;
use crate::core::message::Message;
use crate::core::node::{NodeId, NodeInfo};

/// A change of master held back until the master it replaces has departed here.
#[derive(Debug, Clone, Copy)]
pub(super) struct HeldMaster {
    /// The master the application was last told of, still a member here.
    departing: NodeId,
    /// Told by then whatever happens.
    until: Instant,
}

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// Carries out what the election decided.
    pub(super) fn run_election(&mut self, now: Instant) {
        while let Some(effect) = self.election.poll_effect() {
            match effect {
                Effect::SendAll(m) => self.send_all(now, &Message::Election(m)),
                Effect::SendTo(id, m) => {
                    if let Some(conn) = self.membership.member_link(id) {
                        self.send(now, conn, &Message::Election(m));
                    }
                }
                Effect::MasterChanged { previous, current } => {
                    let me = Some(self.me.id);
                    if self.held_master.is_some() {
                        // What is held is told on release, as it is then; this node's own
                        // mastership is told at once.
                        if current == me {
                            self.release_held_master();
                        }
                        continue;
                    }
                    let departing = previous.filter(|&p| {
                        me != previous && me != current && self.membership.info_of(p).is_some()
                    });
                    if let Some(departing) = departing {
                        let until = now + self.config.suspect_timeout;
                        self.held_master = Some(HeldMaster { departing, until });
                        continue;
                    }
                    self.tell_master(previous, current);
                }
            }
        }
    }

    /// Node `id` is no longer a member, or spoke for itself: a change of master held back
    /// for it is told now.
    pub(super) fn release_master(&mut self, id: NodeId) {
        if self.held_master.is_some_and(|h| h.departing == id) {
            self.release_held_master();
        }
    }

    /// A change of master held back past its bound is told now.
    pub(super) fn release_overdue_master(&mut self, now: Instant) {
        if self.held_master.is_some_and(|h| h.until <= now) {
            self.release_held_master();
        }
    }

    /// When a held change of master must be told at the latest.
    pub(super) fn held_master_deadline(&self) -> Option<Instant> {
        self.held_master.map(|h| h.until)
    }

    fn release_held_master(&mut self) {
        let Some(held) = self.held_master.take() else {
            return;
        };
        let current = self.election.master();
        if current != Some(held.departing) {
            self.tell_master(Some(held.departing), current);
        }
    }

    /// Tells the application that the master changed from `previous` to `current`.
    fn tell_master(&mut self, previous: Option<NodeId>, current: Option<NodeId>) {
        let current_info = current.and_then(|id| self.info_of(id));
        self.push_event(Event::NewMaster(current_info.clone()));
        if current == Some(self.me.id) {
            let previous = self.last_master.clone().filter(|m| m.id != self.me.id);
            self.push_event(Event::Promotion { previous });
        }
        if previous == Some(self.me.id) {
            self.push_event(Event::Demotion {
                new: current_info.clone(),
            });
        }
        if current_info.is_some() {
            self.last_master = current_info;
        }
    }

    /// What we know of node `id`: ourselves, a member, a suspect or the last master.
    fn info_of(&self, id: NodeId) -> Option<NodeInfo> {
        if id == self.me.id {
            return Some(self.me.clone());
        }
        self.membership
            .info_of(id)
            .or(self.last_master.as_ref().filter(|m| m.id == id))
            .cloned()
    }
}
