//! Master election: exactly one eligible master per connected cluster, agreed by all.
//!
//! The master holds a *claim* `(master, term)`. Every node says which claim it follows (or
//! none) to each new member, and, whenever that changes, to those who act on it (not to
//! every member: that made a failover cost N^2 messages): a master taking or giving up
//! mastership tells everyone; a follower tells the master it leaves, the one it joins,
//! and its *successor*, the smallest eligible member other than its master, the node
//! that elects if the master is lost ([`Election::successor`]); a new successor is told
//! too. So a master knows its claim's *support* (how many nodes in its view follow it),
//! and a successor knows whether its members still follow a master it lost. What other
//! members last heard of a node may be stale: there it decides no more than whether to
//! nominate (the nominee weighs that by its own view) until they become its master or
//! successor, when they are told. (In a mesh not yet whole, a node whose members see a
//! smaller eligible node than it does may miss a member's change: the worst it can do is
//! elect once too early, settled by the term as any failover.)
//!
//! - On joining, members tell each other their claim (or that they have none), so a
//!   newcomer adopts the cluster's master: joins never move mastership.
//! - **Mastership is sticky.** A claim a node brings when it joins or comes back (a node
//!   that was paused, cut off or partitioned, and made itself master meanwhile) is a
//!   *rival*, settled by the heal rule ([`Election::heal_beats`]), not by the term alone:
//!   at equal terms the smaller id wins (masters made apart from the same history, such as
//!   nodes started apart); at different terms the claim with more support wins, then the
//!   higher term. A node away alone took the term above its cluster's: it yields to any
//!   cluster of two or more that kept its master. Only masters weigh rivals: a master
//!   yields to a rival that wins (its followers then follow the winner on the winner's own
//!   word); a follower stays with its master. Support only grows as a side's nodes
//!   connect, so at different terms no master yields to a side smaller than its own.
//! - A claim *changed* by a member already here (a `promote()` or a failover, made in view
//!   of ours) is settled as before: a higher term beats a lower one, then the smaller id.
//! - **Pre-vote.** A node that follows nobody adopts at once a claim whose master's own
//!   word it already has. It raises no term of its own while a member it hears still
//!   follows a master (one it cannot reach, or has not heard yet): it waits for that member
//!   to lose the master (it says so) or for the master's own word. A node alone has nobody
//!   to ask and elects itself.
//! - A node that has heard from every member and still knows no master after the election
//!   timeout elects: the eligible node with the smallest id (itself, or it nominates that
//!   node). A lone node therefore becomes master after the timeout.
//! - When the master is removed (crash, exit, silence) the survivors elect as soon as each
//!   of them has lost it (pre-vote): the eligible member with the smallest id promotes
//!   itself with the next term.
//! - `promote()` takes mastership with a term above any seen.
//! - With a quorum set, a node needs that many eligible nodes (itself included) in view to
//!   become or stay master; a master that loses quorum resigns.
//!
//! **Nobody speaks for another node.** `from` below is the member whose authenticated
//! link carried the message; in a full mesh every member hears the master directly.
//! - A claim naming M is *acted on* only when it comes from M itself, and only if M
//!   introduced itself as master-eligible. A claim from anyone else is a *hint* (honest
//!   nodes relay the claim they follow to newcomers): never adopted, never raising the
//!   term; while this node follows nobody, a hint naming an eligible member or a node not
//!   yet connected makes it wait for that node's own word, at most one election timeout,
//!   so a newcomer does not elect itself before hearing the cluster's master.
//! - `Resign(claim)` is accepted only from `claim.master`.
//! - `Nominate` is not an order: the nominee promotes itself only when its own rule says
//!   so: it follows nobody and waits for no hinted master, its first election timeout is
//!   over, it can be master, and it is the smallest eligible id it knows.
//! - Terms: a claim may carry a term at most [`TERM_STEP`] (2^32) above the highest term
//!   this node has acted on, never above [`TERM_MAX`] (2^62); a node that has acted on no
//!   term yet (a newcomer) accepts any term up to `TERM_MAX`, so it can always join. Two
//!   partitions heal unless one promoted 2^32 times more than the other. No single claim
//!   can put the term out of `promote()`'s reach: climbing to the ceiling takes 2^30
//!   successive claims. Term arithmetic is checked: `promote()` fails at the ceiling
//!   rather than overflow.
//! - A message that breaks a rule no honest node breaks (a claim, relayed or not, over
//!   the term bound; a claim from a node that is not a master-eligible member; a resign of
//!   another node's claim) is [`Refused`]: it changes nothing, and the cluster closes the
//!   connection it came on. Who a hint names and whom a nomination picks are never
//!   refused, only not acted on: an honest node relays and nominates from its own view,
//!   which may differ from ours.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::node::NodeId;

/// How far above the highest term a node has acted on a claim's term may be.
pub const TERM_STEP: u64 = 1 << 32;

/// No claim's term is ever above this, `promote()`'s own included.
pub const TERM_MAX: u64 = 1 << 62;

/// An election message that breaks a rule no honest node breaks (see the module doc): it
/// changed nothing, and the connection it came on must be closed. The text says which rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// A formation hold ([`Election::set_forming`]) ends at the latest this many election
/// timeouts after start, whatever is still in flight (a dial, handshake or admission has
/// deadlines of its own, up to 7 s).
pub const FORMATION_HOLD_TIMEOUTS: u32 = 4;

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
    /// Between claims made in view of each other (a `promote()`, a failover): higher term
    /// first, then the smaller id. A heal is settled by support first (`heal_beats`).
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
    /// What each member last said it follows: its own word about itself, so it counts for
    /// a claim's support, and a master's own claim heard once is not waited for again.
    /// One entry per member (bounded by the member limit), dropped with it.
    said: BTreeMap<NodeId, Option<Claim>>,
    /// Claims members brought with them when they joined (or came back) that conflicted
    /// with ours: a heal, settled by [`Election::heal_beats`], not by the term alone.
    /// At most one per member.
    rivals: BTreeMap<NodeId, Claim>,
    /// Masters we followed that were removed here while members may still follow them
    /// (the pre-vote waits for those members); at most one per member.
    lost: BTreeSet<NodeId>,
    claim: Option<Claim>,
    /// Best hint heard while following nobody: a claim relayed about a node whose own word
    /// we wait for (bounded by the deadline).
    pending: Option<Claim>,
    /// Highest term acted on (hints do not count).
    term: u64,
    deadline: Option<Instant>,
    started: Option<Instant>,
    /// Still in the first wait after start, the only one `hasten` may shorten.
    first_wait: bool,
    /// The node still has seeds or peers it has neither reached nor given up on (see
    /// [`Election::set_forming`]).
    forming: bool,
    /// An election came due while forming: it is held until formation is over.
    held: bool,
    /// The successor (see [`Election::successor`]) last told what this node follows.
    told_successor: Option<NodeId>,
    effects: VecDeque<Effect>,
}

/// Why `promote()` did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromoteError {
    /// The node has `master_eligible: false`.
    NotEligible,
    /// A quorum is set and the node does not see it.
    NoQuorum,
    /// The term is at [`TERM_MAX`]: no higher one may be claimed.
    TermsExhausted,
}

impl Election {
    pub fn new(me: NodeId, cfg: ElectionConfig) -> Self {
        Election {
            me,
            cfg,
            members: BTreeMap::new(),
            reported: BTreeSet::new(),
            said: BTreeMap::new(),
            rivals: BTreeMap::new(),
            lost: BTreeSet::new(),
            claim: None,
            pending: None,
            term: 0,
            deadline: None,
            started: None,
            first_wait: false,
            forming: false,
            held: false,
            told_successor: None,
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

    /// True once member `id` has reported what it follows since it was added (or relinked).
    pub fn has_reported(&self, id: NodeId) -> bool {
        self.reported.contains(&id)
    }

    pub fn is_master(&self) -> bool {
        self.master() == Some(self.me)
    }

    pub fn start(&mut self, now: Instant) {
        self.started = Some(now);
        self.first_wait = true;
        self.deadline = Some(now + self.cfg.timeout);
    }

    /// Formation hold: a node that has never followed a master does not promote itself
    /// while it still has seeds or peers it has neither reached nor given up on (a dial,
    /// handshake or admission in flight, a seed not listening yet, a node heard of and not
    /// dialed yet): the node it has not reached may well be, or know, the cluster's master
    /// or a smaller id. An election that comes due meanwhile waits for the end of formation,
    /// and at most [`FORMATION_HOLD_TIMEOUTS`] election timeouts after start. After the
    /// node's first master there is no hold: a failover does not wait for redials.
    pub fn set_forming(&mut self, now: Instant, forming: bool) {
        self.forming = forming;
        if !forming && std::mem::take(&mut self.held) {
            self.deadline = Some(now);
        }
    }

    /// True while the formation hold applies (see [`Election::set_forming`]).
    fn holding(&self, now: Instant) -> bool {
        let within = self.hold_end().is_some_and(|end| now < end);
        self.forming && self.term == 0 && self.claim.is_none() && within
    }

    /// The latest a formation hold lasts.
    fn hold_end(&self) -> Option<Instant> {
        let started = self.started?;
        Some(started + self.cfg.timeout * FORMATION_HOLD_TIMEOUTS)
    }

    /// Nodes that have found each other need not wait out the whole timeout, which is for a
    /// node alone: once every member has said it knows no master, the election is held a
    /// quarter of the timeout after start (time enough for the start burst of beacons to
    /// bring in whoever else is there).
    fn hasten(&mut self, now: Instant) {
        // Members walked last: on every member's word, and a walk over all of them.
        let all_reported = || self.members.keys().all(|m| self.reported.contains(m));
        if !self.first_wait
            || self.claim.is_some()
            || self.pending.is_some()
            || self.members.is_empty()
            || !all_reported()
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

    /// A node joined; tell it what we follow. A hint naming it waits for its own word.
    pub fn member_added(&mut self, _now: Instant, id: NodeId, eligible: bool) {
        self.members.insert(id, eligible);
        self.lost.remove(&id);
        self.effects
            .push_back(Effect::SendTo(id, ElectionMsg::State(self.claim)));
        // Told just now, if it is the successor.
        if self.successor() == Some(id) {
            self.told_successor = Some(id);
        } else {
            self.tell_successor();
        }
    }

    /// A node left or failed.
    pub fn member_removed(&mut self, now: Instant, id: NodeId) {
        self.members.remove(&id);
        self.reported.remove(&id);
        self.said.remove(&id);
        self.rivals.remove(&id);
        if self.pending.is_some_and(|p| p.master == id) {
            self.pending = None;
        }
        if self.master() == Some(id) {
            self.lost.insert(id);
            self.set_claim(None);
        } else if self.is_master() && !self.has_quorum() {
            self.resign();
        }
        // The candidate may have changed, and so may the support of a rival.
        self.prune_lost();
        self.settle_heal();
        self.elect(now);
        self.tell_successor();
    }

    /// A member came back on a new connection without having been removed here (it may
    /// have removed us): tell it what we follow, and weigh its next report as a returning
    /// node's, as if it had just joined.
    pub fn member_relinked(&mut self, id: NodeId) {
        if self.members.contains_key(&id) {
            self.reported.remove(&id);
            self.effects
                .push_back(Effect::SendTo(id, ElectionMsg::State(self.claim)));
        }
    }

    /// An election message from member `from`, over its own link. A message that breaks a
    /// rule is refused before it changes anything.
    pub fn handle(&mut self, now: Instant, from: NodeId, msg: ElectionMsg) -> Result<(), Refused> {
        self.check(from, msg)?;
        match msg {
            ElectionMsg::State(claim) => {
                let first = self.reported.insert(from);
                if self.said.get(&from) != Some(&claim) {
                    self.rivals.remove(&from);
                }
                self.said.insert(from, claim);
                // Its own word settles what a hint said about it.
                if self.pending.is_some_and(|p| p.master == from) {
                    self.pending = None;
                }
                // Only a master speaks for itself: if the node we follow says it is not
                // master (it resigned or yielded while we were apart), we stop following.
                let stale = self.master() == Some(from) && claim.map(|c| c.master) != Some(from);
                if stale {
                    // It yielded to a master whose own word we have: follow that one
                    // straight away, with no masterless moment between.
                    let known = claim.filter(|c| self.said.get(&c.master) == Some(&Some(*c)));
                    self.set_claim(known);
                }
                match claim {
                    Some(c) if c.master == from => self.consider(from, c, first),
                    Some(c) => self.hint(from, c),
                    None => {}
                }
                self.settle_heal();
                self.prune_lost();
                // Following nobody and not waiting for a deadline: this member may have
                // been the last one the pre-vote waited for.
                if stale || (self.claim.is_none() && self.deadline.is_none()) {
                    self.elect(now);
                }
                self.hasten(now);
            }
            ElectionMsg::Nominate => {
                if !(self.nomination_holds(now) && self.promote_self()) {
                    // Tell the nominator what we follow; it may not know yet.
                    self.effects
                        .push_back(Effect::SendTo(from, ElectionMsg::State(self.claim)));
                }
            }
            // `check` saw that `from` resigns its own claim.
            ElectionMsg::Resign(c) => {
                if self.said.get(&from) == Some(&Some(c)) {
                    self.said.insert(from, None);
                }
                if self.claim == Some(c) {
                    self.set_claim(None);
                    self.elect(now);
                }
            }
        }
        Ok(())
    }

    /// The rules of the module doc that a message itself can break.
    fn check(&self, from: NodeId, msg: ElectionMsg) -> Result<(), Refused> {
        let claim = match msg {
            ElectionMsg::State(Some(c)) => c,
            ElectionMsg::Resign(c) if c.master != from => {
                return Err(Refused("resign of another node's claim"))
            }
            ElectionMsg::Resign(c) => c,
            ElectionMsg::State(None) | ElectionMsg::Nominate => return Ok(()),
        };
        if claim.term > self.term_bound() {
            return Err(Refused("election term over the bound"));
        }
        if claim.master == from && self.members.get(&from) != Some(&true) {
            return Err(Refused(
                "master claim from a node that is not master-eligible",
            ));
        }
        Ok(())
    }

    /// The highest term a claim may carry: [`TERM_STEP`] above the highest acted on, or
    /// anything up to [`TERM_MAX`] for a node that has acted on none yet.
    fn term_bound(&self) -> u64 {
        match self.term {
            0 => TERM_MAX,
            t => t
                .checked_add(TERM_STEP)
                .map_or(TERM_MAX, |b| b.min(TERM_MAX)),
        }
    }

    /// A nomination is followed only when this node's own rule would elect it now.
    fn nomination_holds(&self, now: Instant) -> bool {
        let first_wait_over = self
            .started
            .and_then(|s| s.checked_add(self.cfg.timeout))
            .is_some_and(|end| now >= end);
        self.claim.is_none()
            && self.pending.is_none()
            && !self.holding(now)
            && !self.others_follow_a_master()
            && first_wait_over
            && self.can_be_master()
            && self.candidate() == Some(self.me)
    }

    /// The user asked this node to be master.
    pub fn promote(&mut self, _now: Instant) -> Result<(), PromoteError> {
        if !self.cfg.eligible {
            return Err(PromoteError::NotEligible);
        }
        if !self.has_quorum() {
            return Err(PromoteError::NoQuorum);
        }
        if !self.is_master() && !self.promote_self() {
            return Err(PromoteError::TermsExhausted);
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
        if self.holding(now) {
            // Formation is not over: looked at again when it is, or at the hold's end.
            self.held = true;
            self.deadline = self.hold_end();
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
            _ => self.elect_now(now),
        }
    }

    /// Weighs a claim made by its master `from` itself (checked: an eligible member).
    /// `first`: its first report since it joined or came back.
    fn consider(&mut self, from: NodeId, c: Claim, first: bool) {
        self.term = self.term.max(c.term);
        match self.claim {
            Some(ours) if ours == c => {}
            None => self.set_claim(Some(c)),
            // A node that joins (or comes back) as master of its own while we follow a
            // master that is not it: a heal. Higher term does not decide it; the masters
            // settle it by support (`settle_heal`), followers stay with theirs.
            // (It has our claim: we sent it when it joined. Repeats change nothing.)
            Some(ours) if (first || self.rivals.get(&from) == Some(&c)) && ours.master != from => {
                self.rivals.insert(from, c);
            }
            // A member already here changed its claim: a `promote()` or a failover, made
            // in view of ours. Higher term wins.
            Some(ours) if ours.beats(&c) => self.tell(from, ours),
            _ => self.set_claim(Some(c)),
        }
    }

    /// How many nodes in view follow `c`: members by their own last word, and this node.
    fn support(&self, c: &Claim) -> usize {
        usize::from(self.claim.as_ref() == Some(c))
            + self.said.values().filter(|s| s.as_ref() == Some(c)).count()
    }

    /// The heal rule. Masters at the same term were made from the same history (nodes
    /// that started apart, each electing itself first): the smaller id wins, as it always
    /// did. At different terms one side changed master while the other may have kept its
    /// own: the claim followed by more nodes in view wins, then the higher term.
    fn heal_beats(&self, a: &Claim, b: &Claim) -> bool {
        if a.term == b.term {
            return a.master < b.master;
        }
        let (sa, sb) = (self.support(a), self.support(b));
        sa > sb || (sa == sb && a.term > b.term)
    }

    /// A master facing rivals (masters that joined or came back with their own claim)
    /// yields to the best of them that the heal rule prefers; its followers then follow
    /// the winner on its own word. Support only grows as a side's nodes connect, so a
    /// master never yields to a side smaller than its own.
    fn settle_heal(&mut self) {
        self.rivals
            .retain(|m, r| self.said.get(m) == Some(&Some(*r)) && self.claim != Some(*r));
        let Some(ours) = self.claim.filter(|c| c.master == self.me) else {
            return;
        };
        let best = self
            .rivals
            .values()
            .copied()
            .filter(|r| self.heal_beats(r, &ours))
            .fold(None::<Claim>, |best, r| match best {
                Some(b) if self.heal_beats(&b, &r) => Some(b),
                _ => Some(r),
            });
        if let Some(winner) = best {
            self.rivals.clear();
            self.set_claim(Some(winner));
        }
    }

    /// The best claim a member made itself and still holds, as its own word said: what a
    /// node that follows nobody adopts at once.
    fn known_master(&self) -> Option<Claim> {
        self.said
            .iter()
            .filter_map(|(m, s)| s.filter(|c| c.master == *m))
            .filter(|c| self.members.get(&c.master) == Some(&true))
            .fold(None::<Claim>, |best, c| match best {
                Some(b) if self.heal_beats(&b, &c) => Some(b),
                _ => Some(c),
            })
    }

    /// Pre-vote: some member still follows a master that was removed here: it may well be
    /// alive, out of our reach only. Wait for that member to lose it too (it says so) or
    /// for the master's own word when it is back.
    fn others_follow_a_master(&self) -> bool {
        self.said
            .values()
            .any(|s| s.is_some_and(|c| self.lost.contains(&c.master)))
    }

    /// Forgets lost masters no member follows any more: the pre-vote is over for them.
    fn prune_lost(&mut self) {
        let said = &self.said;
        self.lost
            .retain(|l| said.values().any(|s| s.is_some_and(|c| c.master == *l)));
    }

    /// A claim `from` relays about another node: never adopted, and the term is not raised.
    /// Following nobody, we wait for the named node's own word (bounded by the deadline);
    /// following a better claim, we tell `from` ours.
    fn hint(&mut self, from: NodeId, c: Claim) {
        // Only we can say we are master; an old claim naming us is stale. A claim naming a
        // node that introduced itself as not eligible can never be confirmed.
        if c.master == self.me || self.members.get(&c.master) == Some(&false) {
            return;
        }
        match self.claim {
            Some(ours) if ours.beats(&c) => self.tell(from, ours),
            Some(_) => {}
            // The master's own word already reached us: no need to wait for it.
            None if self.said.get(&c.master) == Some(&Some(c)) => self.set_claim(Some(c)),
            None => {
                if self.pending.is_none_or(|p| c.beats(&p)) {
                    self.pending = Some(c);
                }
            }
        }
    }

    /// `from` follows a worse claim than ours: tell it (a partition heal converges so).
    fn tell(&mut self, from: NodeId, ours: Claim) {
        self.effects
            .push_back(Effect::SendTo(from, ElectionMsg::State(Some(ours))));
    }

    /// Elects if nobody is master: the eligible node with the smallest id promotes itself
    /// (once it has heard every member, one of which may know a master); others wait for
    /// it until the deadline, then nominate it.
    fn elect(&mut self, now: Instant) {
        self.elect_with(now, true)
    }

    /// Elects once the wait for a hinted master has run out. The pre-vote has no such
    /// bound: a member that follows a live master we cannot reach is what it is for.
    fn elect_now(&mut self, now: Instant) {
        self.elect_with(now, false)
    }

    fn elect_with(&mut self, now: Instant, wait_for_hint: bool) {
        if self.claim.is_some() {
            return;
        }
        if let Some(c) = self.known_master() {
            self.set_claim(Some(c));
            return;
        }
        if self.others_follow_a_master() {
            // Pre-vote: no term raised while a member we hear still has a master. It says
            // so when it loses it (or we hear that master ourselves).
            return;
        }
        if wait_for_hint && self.pending.is_some() {
            // A master exists that we are not connected to yet: wait for it, bounded by
            // the deadline.
            self.deadline.get_or_insert(now + self.cfg.timeout);
            return;
        }
        let waiting_for_reports = self.members.keys().any(|m| !self.reported.contains(m));
        match self.candidate() {
            Some(c)
                if c == self.me
                    && self.has_quorum()
                    && !waiting_for_reports
                    && !self.holding(now) =>
            {
                self.promote_self();
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

    /// Claims mastership with the next term; `false` (nothing changed) at [`TERM_MAX`].
    fn promote_self(&mut self) -> bool {
        let Some(term) = self.term.checked_add(1).filter(|&t| t <= TERM_MAX) else {
            return false;
        };
        let claim = Claim {
            master: self.me,
            term,
        };
        // Made in view of every claim we know: none of them is a rival any more.
        self.rivals.clear();
        self.set_claim(Some(claim));
        true
    }

    fn resign(&mut self) {
        if let Some(c) = self.claim.filter(|c| c.master == self.me) {
            self.set_claim(None);
            self.effects
                .push_back(Effect::SendAll(ElectionMsg::Resign(c)));
        }
    }

    /// Says what this node now follows to those who need it, not to every member: a
    /// failover would otherwise cost every survivor two messages to every other, N^2 in
    /// all, which at 100 processes is most of the failover's time (CPU-bound).
    /// - A master that takes or gives up mastership tells everyone: its followers follow
    ///   on its own word, and a node following nobody adopts a master whose word it has.
    ///   (A node that hears a new master before the old one is gone holds its news back:
    ///   see `cluster::master`.)
    /// - A follower tells the master it leaves and the one it joins, so a master knows
    ///   its support (the heal rule), and its successor, the node that would elect if the
    ///   master were lost (the pre-vote waits on what the successor has heard).
    ///
    /// Other members' view of it may be stale; they are told when it matters to them: when
    /// they become its successor or its master, or when they join.
    fn tell_change(&mut self, previous: Option<Claim>, claim: Option<Claim>) {
        let mastership = |c: Option<Claim>| c.is_some_and(|c| c.master == self.me);
        if mastership(previous) || mastership(claim) {
            self.effects
                .push_back(Effect::SendAll(ElectionMsg::State(claim)));
            self.told_successor = self.successor();
            return;
        }
        let successor = self.successor();
        let mut told = Vec::with_capacity(3);
        let whom = [
            previous.map(|c| c.master),
            claim.map(|c| c.master),
            successor,
        ];
        for m in whom.into_iter().flatten() {
            if self.members.contains_key(&m) && !told.contains(&m) {
                told.push(m);
                self.effects
                    .push_back(Effect::SendTo(m, ElectionMsg::State(claim)));
            }
        }
        self.told_successor = successor;
    }

    /// The node that would elect if this node's master were lost: the smallest eligible
    /// member other than that master (never this node, which knows its own word). Its
    /// pre-vote waits while a member it hears still follows the lost master, so it must
    /// hear each change of what its members follow.
    fn successor(&self) -> Option<NodeId> {
        let master = self.master();
        self.members
            .iter()
            .filter(|&(&id, &eligible)| eligible && Some(id) != master)
            .map(|(&id, _)| id)
            .next()
    }

    /// A new successor (members came or went, the master changed) is told what this node
    /// follows: the member it replaces may have been the only one that knew.
    fn tell_successor(&mut self) {
        let successor = self.successor();
        if successor != self.told_successor {
            if let Some(s) = successor {
                self.effects
                    .push_back(Effect::SendTo(s, ElectionMsg::State(self.claim)));
            }
            self.told_successor = successor;
        }
    }

    fn set_claim(&mut self, claim: Option<Claim>) {
        let previous = self.master();
        let previous_claim = self.claim;
        self.claim = claim;
        if let Some(c) = claim {
            self.term = self.term.max(c.term);
            self.deadline = None;
            self.pending = None;
        }
        if previous_claim != claim {
            self.tell_change(previous_claim, claim);
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
        e.handle(t0, id(7), ElectionMsg::State(Some(claim)))
            .unwrap();
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
        e.handle(t0, id(2), ElectionMsg::State(Some(claim)))
            .unwrap();
        assert_eq!(e.master(), None);
        e.member_added(t0, id(9), true);
        assert_eq!(e.master(), None, "a hint is confirmed by the master alone");
        e.handle(t0, id(9), ElectionMsg::State(Some(claim)))
            .unwrap();
        assert_eq!(e.master(), Some(id(9)));
    }

    #[test]
    fn the_smallest_eligible_survivor_takes_over_at_once() {
        let t0 = Instant::now();
        let mut e = Election::new(id(3), CFG);
        for (n, eligible) in [(1, false), (2, true), (9, true)] {
            e.member_added(t0, id(n), eligible);
            e.handle(t0, id(n), ElectionMsg::State(None)).unwrap();
        }
        let claim = Claim {
            master: id(9),
            term: 4,
        };
        e.handle(t0, id(9), ElectionMsg::State(Some(claim)))
            .unwrap();
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

    /// The messages among the effects drained.
    fn sends(e: &mut Election) -> Vec<Effect> {
        drain(e)
            .into_iter()
            .filter(|f| !matches!(f, Effect::MasterChanged { .. }))
            .collect()
    }

    #[test]
    fn a_follower_tells_its_masters_and_its_successor_not_every_member() {
        let t0 = Instant::now();
        let mut e = Election::new(id(5), CFG);
        e.start(t0);
        for n in [1, 2, 3, 4, 6, 7] {
            e.member_added(t0, id(n), n != 2);
            e.handle(t0, id(n), ElectionMsg::State(None)).unwrap();
        }
        drain(&mut e);
        let one = Claim {
            master: id(1),
            term: 1,
        };
        e.handle(t0, id(1), ElectionMsg::State(Some(one))).unwrap();
        // Its master, and node 3: the smallest eligible member but the master (2 is not
        // eligible), which would elect were node 1 lost.
        let adopted = ElectionMsg::State(Some(one));
        assert_eq!(
            drain(&mut e),
            vec![
                Effect::SendTo(id(1), adopted),
                Effect::SendTo(id(3), adopted),
                Effect::MasterChanged {
                    previous: None,
                    current: Some(id(1))
                },
            ]
        );
        // The master is lost: node 3 is told, and waits for nobody else's word from us.
        e.member_removed(t0, id(1));
        let sent = sends(&mut e);
        assert_eq!(sent, vec![Effect::SendTo(id(3), ElectionMsg::State(None))]);
        // Node 3 takes over: we tell it, and our next successor, node 4.
        let three = Claim {
            master: id(3),
            term: 2,
        };
        e.handle(t0, id(3), ElectionMsg::State(Some(three)))
            .unwrap();
        let sent = sends(&mut e);
        let followed = ElectionMsg::State(Some(three));
        assert_eq!(
            sent,
            vec![
                Effect::SendTo(id(3), followed),
                Effect::SendTo(id(4), followed)
            ]
        );
        // Node 4 leaves: node 6 is our successor now, and hears what we follow.
        e.member_removed(t0, id(4));
        assert_eq!(drain(&mut e), vec![Effect::SendTo(id(6), followed)]);
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
        e.handle(t0, id(1), ElectionMsg::State(Some(c))).unwrap();
        assert_eq!(e.master(), Some(id(1)));
        assert!(drain(&mut e).contains(&Effect::MasterChanged {
            previous: Some(id(8)),
            current: Some(id(1))
        }));
        // A worse claim is answered with ours.
        e.member_added(t0, id(4), true);
        drain(&mut e);
        e.handle(t0, id(4), ElectionMsg::State(Some(b))).unwrap();
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
        e.handle(t0, id(2), ElectionMsg::Nominate).unwrap();
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
        e.handle(t0, id(2), ElectionMsg::State(None)).unwrap();
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

    /// Node 1 with eligible members 2 and 3 that have reported no master.
    fn with_members(t0: Instant) -> Election {
        let mut e = Election::new(id(1), CFG);
        e.start(t0);
        for n in [2, 3] {
            e.member_added(t0, id(n), true);
            e.handle(t0, id(n), ElectionMsg::State(None)).unwrap();
        }
        drain(&mut e);
        e
    }

    fn claim(n: u8, term: u64) -> ElectionMsg {
        ElectionMsg::State(Some(Claim {
            master: id(n),
            term,
        }))
    }

    #[test]
    fn a_claim_for_another_node_is_a_hint_that_node_must_confirm() {
        let t0 = Instant::now();
        let mut e = with_members(t0);
        // Node 2 says node 3 is master at a high term: not adopted, the term not raised.
        e.handle(t0, id(2), claim(3, 1000)).unwrap();
        assert_eq!(e.master(), None);
        assert_eq!(drain(&mut e), vec![]);
        // Node 3 says the same itself: adopted.
        e.handle(t0, id(3), claim(3, 1000)).unwrap();
        assert_eq!(e.master(), Some(id(3)));
        // A better claim relayed about another member cannot move us off it either.
        e.member_added(t0, id(4), true);
        e.handle(t0, id(2), claim(4, 2000)).unwrap();
        assert_eq!(e.master(), Some(id(3)));
        // But the master itself saying it follows another node is its own word: we stop
        // following it, and wait for that node's.
        e.handle(t0, id(3), claim(4, 2000)).unwrap();
        assert_eq!(e.master(), None);
        e.handle(t0, id(4), claim(4, 2000)).unwrap();
        assert_eq!(e.master(), Some(id(4)));
    }

    #[test]
    fn a_hint_does_not_raise_the_term() {
        let t0 = Instant::now();
        let mut e = with_members(t0);
        e.handle(t0, id(2), claim(3, 1000)).unwrap();
        e.promote(t0).unwrap();
        assert_eq!(
            e.claim(),
            Some(Claim {
                master: id(1),
                term: 1
            })
        );
    }

    #[test]
    fn a_claim_from_a_node_that_is_not_eligible_is_refused() {
        let t0 = Instant::now();
        let mut e = with_members(t0);
        e.member_added(t0, id(4), false);
        drain(&mut e);
        assert!(e.handle(t0, id(4), claim(4, 1)).is_err());
        assert_eq!(e.master(), None);
        assert!(
            !e.reported.contains(&id(4)),
            "a refused message changes nothing"
        );
        assert_eq!(drain(&mut e), vec![]);
        // Relayed by an eligible member, it can never be confirmed: ignored.
        e.handle(t0, id(2), claim(4, 1)).unwrap();
        assert_eq!(e.pending, None);
    }

    #[test]
    fn a_claim_about_an_unknown_node_is_never_adopted_on_anothers_word() {
        let t0 = Instant::now();
        let mut e = with_members(t0);
        // A node that is not a member cannot claim at all.
        assert!(e.handle(t0, id(9), claim(9, 1)).is_err());
        assert_eq!(e.master(), None);
        // Relayed, it is a hint: when node 9 joins, it is not master until it says so.
        e.handle(t0, id(2), claim(9, 5)).unwrap();
        e.member_added(t0, id(9), true);
        assert_eq!(e.master(), None);
        e.handle(t0, id(9), ElectionMsg::State(None)).unwrap();
        assert_eq!(e.master(), None);
        assert_eq!(e.pending, None, "its own word settles the hint");
    }

    #[test]
    fn a_term_over_the_bound_is_refused() {
        let t0 = Instant::now();
        // A newcomer accepts any term up to the ceiling: it can join any cluster.
        let mut e = with_members(t0);
        for term in [u64::MAX, TERM_MAX + 1] {
            assert!(e.handle(t0, id(2), claim(2, term)).is_err());
            assert!(e.handle(t0, id(3), claim(2, term)).is_err(), "relayed");
            assert!(e
                .handle(
                    t0,
                    id(2),
                    ElectionMsg::Resign(Claim {
                        master: id(2),
                        term
                    })
                )
                .is_err());
        }
        assert_eq!(e.master(), None);
        e.handle(t0, id(2), claim(2, 5)).unwrap();
        // Past that, at most TERM_STEP above the highest term acted on.
        let over = 5 + TERM_STEP + 1;
        assert!(e.handle(t0, id(3), claim(3, over)).is_err());
        assert_eq!(e.master(), Some(id(2)));
        assert_eq!(e.term, 5);
        // Two partitions whose terms differ by up to TERM_STEP heal.
        e.handle(t0, id(3), claim(3, over - 1)).unwrap();
        assert_eq!(e.master(), Some(id(3)));
    }

    #[test]
    fn a_resign_from_a_node_other_than_the_master_is_refused() {
        let t0 = Instant::now();
        let mut e = with_members(t0);
        let c = Claim {
            master: id(2),
            term: 3,
        };
        e.handle(t0, id(2), ElectionMsg::State(Some(c))).unwrap();
        drain(&mut e);
        assert!(e.handle(t0, id(3), ElectionMsg::Resign(c)).is_err());
        assert_eq!(e.master(), Some(id(2)));
        assert_eq!(drain(&mut e), vec![]);
        e.handle(t0, id(2), ElectionMsg::Resign(c)).unwrap();
        assert_ne!(e.master(), Some(id(2)));
    }

    #[test]
    fn promote_at_the_ceiling_fails_instead_of_overflowing() {
        let t0 = Instant::now();
        for term in [TERM_MAX, u64::MAX] {
            let mut e = Election::new(id(1), CFG);
            e.term = term;
            assert_eq!(e.promote(t0), Err(PromoteError::TermsExhausted));
            assert_eq!(e.master(), None);
            assert_eq!(drain(&mut e), vec![]);
        }
        let mut e = Election::new(id(1), CFG);
        e.term = TERM_MAX - 1;
        e.promote(t0).unwrap();
        assert_eq!(
            e.claim(),
            Some(Claim {
                master: id(1),
                term: TERM_MAX
            })
        );
    }

    #[test]
    fn a_nomination_is_followed_only_when_the_nominees_own_rule_agrees() {
        let t0 = Instant::now();
        let after = t0 + CFG.timeout;
        // Node 3 knows an eligible node with a smaller id: it is not the one.
        let mut e = Election::new(id(3), CFG);
        e.start(t0);
        e.member_added(t0, id(2), true);
        e.handle(t0, id(2), ElectionMsg::State(None)).unwrap();
        e.member_added(t0, id(4), true);
        drain(&mut e);
        e.handle(after, id(4), ElectionMsg::Nominate).unwrap();
        assert_eq!(e.master(), None);
        assert_eq!(
            drain(&mut e),
            vec![Effect::SendTo(id(4), ElectionMsg::State(None))]
        );
        // The smallest one is not pushed before its own first wait is over.
        let mut e = Election::new(id(1), CFG);
        e.start(t0);
        e.member_added(t0, id(4), true);
        e.handle(t0 + CFG.timeout / 2, id(4), ElectionMsg::Nominate)
            .unwrap();
        assert_eq!(e.master(), None);
        // Nor while a hinted master may still speak up.
        e.handle(after, id(4), claim(9, 1)).unwrap();
        e.handle(after, id(4), ElectionMsg::Nominate).unwrap();
        assert_eq!(e.master(), None);
        e.handle_timeout(after + CFG.timeout);
        assert_eq!(e.master(), Some(id(1)), "its own deadline decides");
        // After its first wait, with nothing pending, a nomination is followed at once.
        let mut e = Election::new(id(1), CFG);
        e.start(t0);
        e.member_added(t0, id(4), true);
        e.handle(after, id(4), ElectionMsg::Nominate).unwrap();
        assert_eq!(e.master(), Some(id(1)));
    }
}
