//! The election's effects carried out: its messages sent, and a change of master told to
//! the application.

use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, Event};
use crate::core::election::Effect;
use crate::core::message::Message;
use crate::core::node::{NodeId, NodeInfo};

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
            }
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
