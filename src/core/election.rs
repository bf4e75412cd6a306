//! Master election: exactly one eligible master per connected cluster, agreed by all.
//!
//! The master holds a *claim* `(master, term)`. Every node follows the best claim it has
//! heard about a live member (or itself): a higher term beats a lower one, and at equal
//! terms the smaller node id wins. That one rule settles every conflict the same way on
//! every node, including two masters meeting after a partition heals.
//!
//! - On joining, members tell each other their claim (or that they have none), so a
//!   newcomer adopts the cluster's master: joins never move mastership.
//! - A node that has heard from every member and still knows no master after the election
//!   timeout elects: the eligible node with the smallest id (itself, or it nominates that
//!   node). A lone node therefore becomes master after the timeout.
//! - When the master is removed (crash, exit, silence) the survivors elect at once: the
//!   eligible member with the smallest id promotes itself with the next term.
//! - `promote()` takes mastership with a term above any seen.
//! - With a quorum set, a node needs that many eligible nodes (itself included) in view to
//!   become or stay master; a master that loses quorum resigns.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::node::NodeId;

/// Election settings.
#[derive(Debug, Clone, Copy)]
pub struct ElectionConfig {
    /// May this node be master.
    pub eligible: bool,
    /// How long a node without a master waits for one before electing.
    pub timeout: Duration,
    /// Least number of eligible nodes in view to hold mastership; 0 is off.
    pub quorum: usize,
}

/// "`master` is master for `term`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub master: NodeId,
    pub term: u64,
}

impl Claim {
    /// The documented rule: higher term first, then the smaller id.
    pub fn beats(&self, other: &Claim) -> bool {
        self.term > other.term || (self.term == other.term && self.master < other.master)
    }
}

/// Election messages between members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionMsg {
    /// The sender's current claim, or none. Sent to each new member and on every change.
    State(Option<Claim>),
    /// "You should be master": sent to the chosen candidate when a wait runs out.
    Nominate,
    /// The sender gave up this claim (it lost its quorum).
    Resign(Claim),
}

/// What the cluster must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    SendAll(ElectionMsg),
    SendTo(NodeId, ElectionMsg),
    /// The master this node follows changed.
    MasterChanged {
        previous: Option<NodeId>,
        current: Option<NodeId>,
    },
}

/// The election state of one node.
#[derive(Debug)]
pub struct Election {
    me: NodeId,
    cfg: ElectionConfig,
    /// Live members and whether each is eligible.
    members: BTreeMap<NodeId, bool>,
    /// Members whose state report has arrived.
    reported: BTreeSet<NodeId>,
    claim: Option<Claim>,
    /// Best claim heard about a node that is not (yet) a member.
    pending: Option<Claim>,
    /// Highest term seen.
    term: u64,
    deadline: Option<Instant>,
    started: Option<Instant>,
    /// Still in the first wait after start, the only one `hasten` may shorten.
    first_wait: bool,
    effects: VecDeque<Effect>,
}

/// Why `promote()` did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteError {
    /// The node has `master_eligible: false`.
    NotEligible,
    /// A quorum is set and the node does not see it.
    NoQuorum,
}

impl Election {
    pub fn new(me: NodeId, cfg: ElectionConfig) -> Self {
        Election {
            me,
            cfg,
            members: BTreeMap::new(),
            reported: BTreeSet::new(),
            claim: None,
            pending: None,
            term: 0,
            deadline: None,
            started: None,
            first_wait: false,
            effects: VecDeque::new(),
        }
    }

    /// The master this node follows.
    pub fn master(&self) -> Option<NodeId> {
        self.claim.map(|c| c.master)
    }

    /// The claim this node follows.
    pub fn claim(&self) -> Option<Claim> {
        self.claim
    }

    pub fn is_master(&self) -> bool {
        self.master() == Some(self.me)
    }

    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
        self.first_wait = true;
        self.deadline = Some(now + self.cfg.timeout);
    }

    /// Nodes that have found each other need not wait out the whole timeout, which is for a
    /// node alone: once every member has said it knows no master, the election is held a
    /// quarter of the timeout after start (time enough for the start burst of beacons to
    /// bring in whoever else is there).
    fn hasten(&mut self, now: Instant) {
        let all_reported = self.members.keys().all(|m| self.reported.contains(m));
        if !self.first_wait
            || self.claim.is_some()
            || self.pending.is_some()
            || self.members.is_empty()
            || !all_reported
        {
            return;
        }
        let Some(started) = self.started else {
            return;
        };
        let soon = (started + self.cfg.timeout / 4).max(now);
        if self.deadline.is_some_and(|d| d > soon) {
            self.deadline = Some(soon);
        }
    }

    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// A node joined; tell it what we follow.
    pub fn member_added(&mut self, now: Instant, id: NodeId, eligible: bool) {
        self.members.insert(id, eligible);
        self.effects
            .push_back(Effect::SendTo(id, ElectionMsg::State(self.claim)));
        if let Some(p) = self.pending.filter(|p| p.master == id) {
            self.pending = None;
            self.consider(now, id, p);
        }
    }

    /// A node left or failed.
    pub fn member_removed(&mut self, now: Instant, id: NodeId) {
        self.members.remove(&id);
        self.reported.remove(&id);
        if self.pending.is_some_and(|p| p.master == id) {
            self.pending = None;
        }
        if self.master() == Some(id) {
            self.set_claim(None);
        } else if self.is_master() && !self.has_quorum() {
            self.resign();
        }
        // The candidate may have changed.
        self.elect(now);
    }

    /// An election message from member `from`.
    pub fn handle(&mut self, now: Instant, from: NodeId, msg: ElectionMsg) {
        match msg {
            ElectionMsg::State(claim) => {
                self.reported.insert(from);
                // Only a master speaks for itself: if the node we follow says it is not
                // master (it resigned or yielded while we were apart), we stop following.
                let stale = self.master() == Some(from) && claim.map(|c| c.master) != Some(from);
                if stale {
                    self.set_claim(None);
                }
                if let Some(c) = claim {
                    self.consider(now, from, c);
                }
                if stale {
                    self.elect(now);
                }
                self.hasten(now);
            }
            ElectionMsg::Nominate => match self.claim {
                None if self.can_be_master() => self.promote_self(),
                // Tell the nominator what we follow; it may not know yet.
                _ => self
                    .effects
                    .push_back(Effect::SendTo(from, ElectionMsg::State(self.claim))),
            },
            ElectionMsg::Resign(c) => {
                if self.claim == Some(c) {
                    self.set_claim(None);
                    self.elect(now);
                }
            }
        }
    }

    /// The user asked this node to be master.
    pub fn promote(&mut self, _now: Instant) -> Result<(), PromoteError> {
        if !self.cfg.eligible {
            return Err(PromoteError::NotEligible);
        }
        if !self.has_quorum() {
            return Err(PromoteError::NoQuorum);
        }
        if !self.is_master() {
            self.promote_self();
        }
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_none_or(|d| d > now) {
            return;
        }
        self.deadline = None;
        self.first_wait = false;
        if self.claim.is_some() {
            return;
        }
        // A claim about a node that never connected does not hold the election up forever.
        self.pending = None;
        match self.candidate() {
            // It has not promoted itself in time (it may have missed the failure, or be
            // waiting for us): nominate it, and look again later.
            Some(c) if c != self.me => {
                self.effects
                    .push_back(Effect::SendTo(c, ElectionMsg::Nominate));
                self.deadline = Some(now + self.cfg.timeout);
            }
            _ => self.elect(now),
        }
    }

    /// Weighs a claim heard from `from`.
    fn consider(&mut self, _now: Instant, from: NodeId, c: Claim) {
        self.term = self.term.max(c.term);
        if c.master == self.me {
            // Only we can say we are master; an old claim naming us is stale.
            return;
        }
        if !self.members.contains_key(&c.master) {
            if self.pending.is_none_or(|p| c.beats(&p)) {
                self.pending = Some(c);
            }
            return;
        }
        match self.claim {
            Some(ours) if ours == c => {}
            Some(ours) if ours.beats(&c) => {
                // The sender follows a worse master: tell it (a partition heal converges so).
                self.effects
                    .push_back(Effect::SendTo(from, ElectionMsg::State(Some(ours))));
            }
            _ => self.set_claim(Some(c)),
        }
    }

    /// Elects if nobody is master: the eligible node with the smallest id promotes itself
    /// (once it has heard every member, one of which may know a master); others wait for
    /// it until the deadline, then nominate it.
    fn elect(&mut self, now: Instant) {
        if self.claim.is_some() {
            return;
        }
        if self.pending.is_some() {
            // A master exists that we are not connected to yet: wait for it, bounded by
            // the deadline.
            self.deadline.get_or_insert(now + self.cfg.timeout);
            return;
        }
        let waiting_for_reports = self.members.keys().any(|m| !self.reported.contains(m));
        match self.candidate() {
            Some(c) if c == self.me && self.has_quorum() && !waiting_for_reports => {
                self.promote_self()
            }
            Some(c) if c == self.me => {
                let soon = now + self.cfg.timeout / 4;
                self.deadline = Some(self.deadline.map_or(soon, |d| d.min(soon)));
            }
            Some(_) => {
                self.deadline.get_or_insert(now + self.cfg.timeout);
            }
            None => {}
        }
    }

    fn candidate(&self) -> Option<NodeId> {
        let me = self.cfg.eligible.then_some(self.me);
        let others = self
            .members
            .iter()
            .filter(|(_, &eligible)| eligible)
            .map(|(&id, _)| id);
        me.into_iter().chain(others).min()
    }

    fn eligible_in_view(&self) -> usize {
        usize::from(self.cfg.eligible) + self.members.values().filter(|&&e| e).count()
    }

    fn has_quorum(&self) -> bool {
        self.eligible_in_view() >= self.cfg.quorum
    }

    fn can_be_master(&self) -> bool {
        self.cfg.eligible && self.has_quorum()
    }

    fn promote_self(&mut self) {
        self.term += 1;
        let claim = Claim {
            master: self.me,
            term: self.term,
        };
        self.set_claim(Some(claim));
    }

    fn resign(&mut self) {
        if let Some(c) = self.claim.filter(|c| c.master == self.me) {
            self.set_claim(None);
            self.effects
                .push_back(Effect::SendAll(ElectionMsg::Resign(c)));
        }
    }

    fn set_claim(&mut self, claim: Option<Claim>) {
        let previous = self.master();
        self.claim = claim;
        if let Some(c) = claim {
            self.term = self.term.max(c.term);
            self.deadline = None;
            if c.master == self.me {
                self.effects
                    .push_back(Effect::SendAll(ElectionMsg::State(claim)));
            }
        }
        if previous != self.master() {
            self.effects.push_back(Effect::MasterChanged {
                previous,
                current: self.master(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    const CFG: ElectionConfig = ElectionConfig {
        eligible: true,
        timeout: Duration::from_millis(1000),
        quorum: 0,
    };

    fn drain(e: &mut Election) -> Vec<Effect> {
        std::iter::from_fn(|| e.poll_effect()).collect()
    }

    #[test]
    fn a_lone_node_becomes_master_after_the_timeout() {
        let t0 = Instant::now();
        let mut e = Election::new(id(5), CFG);
        e.start(t0);
        e.handle_timeout(t0 + Duration::from_millis(999));
        assert_eq!(e.master(), None);
        e.handle_timeout(t0 + CFG.timeout);
        assert_eq!(e.master(), Some(id(5)));
        assert!(drain(&mut e).contains(&Effect::MasterChanged {
            previous: None,
            current: Some(id(5))
        }));
    }

    #[test]
    fn a_newcomer_adopts_the_existing_master_even_with_a_smaller_id() {
        let t0 = Instant::now();
        let mut e = Election::new(id(1), CFG);
        e.start(t0);
        e.member_added(t0, id(7), true);
        let claim = Claim {
            master: id(7),
            term: 3,
        };
        e.handle(t0, id(7), ElectionMsg::State(Some(claim)));
        assert_eq!(e.master(), Some(id(7)));
        e.handle_timeout(t0 + Duration::from_secs(5));
        assert_eq!(
            e.master(),
            Some(id(7)),
            "the timeout does not move mastership"
        );
    }

    #[test]
    fn a_claim_about_a_node_not_yet_connected_waits_for_it() {
        let t0 = Instant::now();
        let mut e = Election::new(id(1), CFG);
        e.member_added(t0, id(2), true);
        let claim = Claim {
            master: id(9),
            term: 1,
        };
        e.handle(t0, id(2), ElectionMsg::State(Some(claim)));
        assert_eq!(e.master(), None);
        e.member_added(t0, id(9), true);
        assert_eq!(e.master(), Some(id(9)));
    }

    #[test]
    fn the_smallest_eligible_survivor_takes_over_at_once() {
        let t0 = Instant::now();
        let mut e = Election::new(id(3), CFG);
        for (n, eligible) in [(1, false), (2, true), (9, true)] {
            e.member_added(t0, id(n), eligible);
            e.handle(t0, id(n), ElectionMsg::State(None));
        }
        let claim = Claim {
            master: id(9),
            term: 4,
        };
        e.handle(t0, id(9), ElectionMsg::State(Some(claim)));
        // Node 2 is the candidate: we wait for it.
        e.member_removed(t0, id(9));
        assert_eq!(e.master(), None);
        // Node 2 fails too: we are the smallest eligible one now.
        e.member_removed(t0, id(2));
        assert_eq!(
            e.claim(),
            Some(Claim {
                master: id(3),
                term: 5
            })
        );
    }

    #[test]
    fn after_a_heal_the_higher_term_wins_then_the_smaller_id() {
        let a = Claim {
            master: id(8),
            term: 2,
        };
        let b = Claim {
            master: id(1),
            term: 1,
        };
        assert!(a.beats(&b));
        let c = Claim {
            master: id(1),
            term: 2,
        };
        assert!(c.beats(&a));
        let t0 = Instant::now();
        let mut e = Election::new(id(8), CFG);
        e.promote(t0).unwrap();
        e.member_added(t0, id(1), true);
        drain(&mut e);
        e.handle(t0, id(1), ElectionMsg::State(Some(c)));
        assert_eq!(e.master(), Some(id(1)));
        assert!(drain(&mut e).contains(&Effect::MasterChanged {
            previous: Some(id(8)),
            current: Some(id(1))
        }));
        // A worse claim is answered with ours.
        e.member_added(t0, id(4), true);
        drain(&mut e);
        e.handle(t0, id(4), ElectionMsg::State(Some(b)));
        assert_eq!(
            drain(&mut e),
            vec![Effect::SendTo(id(4), ElectionMsg::State(Some(c)))]
        );
    }

    #[test]
    fn ineligible_nodes_never_become_master() {
        let t0 = Instant::now();
        let cfg = ElectionConfig {
            eligible: false,
            ..CFG
        };
        let mut e = Election::new(id(1), cfg);
        e.start(t0);
        e.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(e.master(), None);
        assert_eq!(e.promote(t0), Err(PromoteError::NotEligible));
        e.handle(t0, id(2), ElectionMsg::Nominate);
        assert_eq!(e.master(), None);
    }

    #[test]
    fn a_master_that_loses_quorum_resigns() {
        let t0 = Instant::now();
        let cfg = ElectionConfig { quorum: 2, ..CFG };
        let mut e = Election::new(id(1), cfg);
        e.start(t0);
        e.handle_timeout(t0 + Duration::from_secs(10));
        assert_eq!(e.master(), None, "alone, below quorum");
        e.member_added(t0, id(2), true);
        e.handle(t0, id(2), ElectionMsg::State(None));
        e.handle_timeout(t0 + Duration::from_secs(20));
        assert_eq!(e.master(), Some(id(1)));
        drain(&mut e);
        e.member_removed(t0, id(2));
        assert_eq!(e.master(), None);
        let effects = drain(&mut e);
        assert!(effects
            .iter()
            .any(|f| matches!(f, Effect::SendAll(ElectionMsg::Resign(_)))));
    }
}
