//! Liveness probes over UDP (formats and keys in [`crate::core::probe`], the silence rule
//! in [`crate::core::detector`]): the probe round (each interval, the next
//! [`DetectorConfig::per_interval`] members in an order of this node's own, so every member
//! is probed once a round and the cost per node does not grow with the cluster; with more
//! than one round each asks for an answer), asking silent members for an answer directly
//! and through others, telling the other members whom this node asks (`Asking` records) and
//! asking on their word, `Ping` records where probes do not come, relaying for others, and
//! taking datagrams in.
//!
//! Every datagram is hostile until it opens: its shape is checked, then that its source is
//! an address some member has and its sender a member, then the replay window, and only
//! then one AES-GCM open over at most [`probe::MAX_DATAGRAM`] bytes. Nothing is stored for
//! a datagram that does not open, except the relay table's entries, which only an
//! authentic request from a member makes ([`MAX_RELAYS`] at most).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Cluster, ConnId, Output};
use crate::core::detector::{DetectorConfig, RELAYS};
use crate::core::message::Message;
use crate::core::node::NodeId;
use crate::core::probe::{self, Header, Refused};

/// Relays this node carries at once (asker, target): a relay request beyond it is
/// refused. An entry lives one failure-detector bound at most.
pub const MAX_RELAYS: usize = 1024;

impl<R: RngCore + CryptoRng> Cluster<R> {
    /// Seals a probe of `kind` to member `to` (on `conn`) and queues it for `addr`.
    fn send_probe(&mut self, conn: ConnId, to: NodeId, kind: u8, plain: &[u8], addr: SocketAddr) {
        let me = self.me.id;
        let Some(keys) = self.membership[conn].probe_keys() else {
            return;
        };
        if let Some(bytes) = keys.seal(kind, me, to, plain) {
            self.stats.probes_sent += 1;
            self.outputs.push_back(Output::Probe { addr, bytes });
        }
    }

    /// The detector's bounds for the members this node had at its last probe round.
    pub(super) fn detector(&self) -> DetectorConfig {
        self.config.detector.for_members(self.probe_members)
    }

    /// When the next probe round is due: each interval while there are members, and one
    /// interval after the first one arrives (its link asks for that; see
    /// [`crate::core::detector::Liveness`]).
    pub(super) fn next_round(&self) -> Option<Instant> {
        self.next_round
    }

    /// The probe round, if due at `now`: regular probes to the next members in turn, an
    /// answer asked of every member silent for [`DetectorConfig::answer_after`] (directly
    /// and through [`RELAYS`] others), and a `Ping` record to every member whose probes do
    /// not come. `after_pause`: the round our own pause made overdue (see
    /// [`Cluster::notice_pause`]): its asks go directly only.
    pub(super) fn probe_round(&mut self, now: Instant, after_pause: bool) {
        if self.next_round.is_some_and(|due| due > now) {
            return;
        }
        let mut members = self.membership.member_links();
        self.probe_members = members.len();
        if members.is_empty() {
            self.next_round = None;
            return;
        }
        self.next_round = Some(now + self.config.detector.interval);
        let detector = self.detector();
        // This node's own order of the members: by id under a key of its own, so that
        // every member keeps its place (and its period) as others come and go, and the
        // nodes of a cluster do not all probe the same member at once.
        let salt = self.probe_salt;
        let place = |m: &Self, conn: ConnId| -> u64 {
            let id = m.membership[conn].peer_id().map_or([0; 16], |id| id.0);
            u64::from_be_bytes(id[..8].try_into().expect("8 bytes")) ^ salt
        };
        members.sort_by_cached_key(|&c| place(self, c));
        for &conn in &members {
            self.membership[conn].in_rounds();
        }
        // Regular probes whose answer is overdue: this node asks those members from now,
        // and tells the others so (see `detector`).
        let overdue: Vec<ConnId> = members
            .iter()
            .copied()
            .filter(|&c| self.membership[c].round_probe_overdue(now, &detector))
            .collect();
        // Silent members are asked for an answer, the longest silent first.
        let mut silent: Vec<ConnId> = members
            .iter()
            .copied()
            .filter(|&c| self.membership[c].wants_answer(now, &detector))
            .collect();
        silent.sort_by_key(|&c| std::cmp::Reverse(self.membership[c].silence(now)));
        for &conn in &silent {
            self.ask_answer(conn, &members, after_pause);
        }
        // While this node is still forming (a handshake under way, a seed or a node heard
        // of not reached yet), its regular probes ask for no answer: its members are busy
        // with handshakes too, so answers come late on a loaded host, and each late one
        // would start asks (3 relays an interval) and words to every member about a member
        // that is only slow; 100 processes forming on 2 cores made 7 000-9 000 relay
        // requests. Silence is then judged by the rounds' bound alone, as up to 10 nodes.
        let round_answers = detector.round_answers() && !self.forming();
        // The regular probes: the next `per_interval` members after the last one probed.
        let per = detector.per_interval.max(1).min(members.len());
        let cursor = self.probe_cursor;
        let first = cursor.map_or(0, |last| {
            members.partition_point(|&c| place(self, c) <= last)
        });
        let mut last = cursor;
        for i in 0..per {
            let conn = members[(first + i) % members.len()];
            last = Some(place(self, conn));
            if silent.contains(&conn) {
                continue;
            }
            if round_answers {
                self.send_ping(conn, probe::FLAG_ANSWER | probe::FLAG_ROUND);
                self.membership[conn].round_probe_sent(now);
            } else {
                self.send_ping(conn, 0);
            }
        }
        self.probe_cursor = last;
        // Records where probes do not come (UDP filtered), one an interval.
        for &conn in &members {
            if let Some(sealed) = self.membership[conn].record_due(now, &detector, false) {
                match sealed {
                    Ok(bytes) => self.transmit(conn, bytes),
                    Err(e) => self.fail(now, conn, e.into()),
                }
            }
        }
        // Last: a record that cannot be sealed fails its link, which `members` still names.
        for &conn in &overdue {
            self.tell_asking(now, conn, &members, &detector);
        }
    }

    /// A direct ping to member `conn`, with `flags`.
    fn send_ping(&mut self, conn: ConnId, flags: u8) {
        let link = &self.membership[conn];
        let (Some(target), Some(addr)) = (link.peer_id(), link.listen_addr()) else {
            return;
        };
        self.send_probe(conn, target, probe::PING, &[flags], addr);
    }

    /// Member `conn` is silent: a ping asking for an answer, and (unless `direct_only`)
    /// a sealed ping through up to [`RELAYS`] other `members`.
    fn ask_answer(&mut self, conn: ConnId, members: &[ConnId], direct_only: bool) {
        self.send_ping(conn, probe::FLAG_ANSWER);
        self.stats.answers_asked += 1;
        if direct_only {
            return;
        }
        let Some(target) = self.membership[conn].peer_id() else {
            return;
        };
        let mut others: Vec<ConnId> = members.iter().copied().filter(|&c| c != conn).collect();
        // A different few each interval, so one bad relay does not decide.
        for i in 0..RELAYS.min(others.len()) {
            let j = i + (self.rng.next_u32() as usize) % (others.len() - i);
            others.swap(i, j);
        }
        let me = self.me.id;
        for &relay in others.iter().take(RELAYS) {
            let r = &self.membership[relay];
            let (Some(relay_id), Some(relay_addr)) = (r.peer_id(), r.listen_addr()) else {
                continue;
            };
            let Some(keys) = self.membership[conn].probe_keys() else {
                return;
            };
            let Some(inner) = keys.seal(probe::PING, me, target, &[probe::FLAG_ANSWER]) else {
                return;
            };
            self.stats.indirect_probes += 1;
            self.send_probe(relay, relay_id, probe::RELAY, &inner, relay_addr);
        }
    }

    /// This node begins to ask member `conn` (its regular probe went unanswered): it tells
    /// the members it hears, each over its own connection, at most once per silence bound
    /// (see [`crate::core::detector::Liveness::tell_due`]). Only while probes from others
    /// reach it: a node that hears no probe at all is more likely cut off itself (or has
    /// UDP filtered) than the member gone, and keeps its doubt to itself. Members it asks
    /// itself are not told: it has no word of them either.
    fn tell_asking(&mut self, now: Instant, conn: ConnId, members: &[ConnId], d: &DetectorConfig) {
        let Some(about) = self.membership.get(conn).and_then(|l| l.peer_id()) else {
            return;
        };
        let hears = |c: ConnId| {
            let silence = self.membership.get(c).and_then(|l| l.probe_silence(now));
            silence.is_some_and(|s| s < d.answer_within())
        };
        if !members.iter().any(|&c| c != conn && hears(c)) {
            return;
        }
        if !self
            .membership
            .get_mut(conn)
            .is_some_and(|l| l.tell_due(now, d))
        {
            return;
        }
        let msg = Message::Asking(about);
        for &c in members {
            let told = self.membership.get(c).is_some_and(|l| !l.is_asking());
            if c != conn && told {
                self.stats.asks_told += 1;
                self.send(now, c, &msg);
            }
        }
    }

    /// Member `from` says it asks member `about` for an answer. Its own view only: this
    /// node changes nothing about `about` but its own probing, asking it directly at once
    /// (through relays from the next round, if it stays silent) under its own bound, at
    /// most once an interval whoever says it (see [`crate::core::detector::Liveness::ask`]).
    /// A member unknown here is skipped: views differ for a moment as members come and go.
    pub(super) fn member_asks(&mut self, now: Instant, about: NodeId) {
        let Some(conn) = self.membership.member_link(about) else {
            return;
        };
        let detector = self.detector();
        if self.membership[conn].ask(now, &detector) {
            self.stats.asks_taken += 1;
            self.send_ping(conn, probe::FLAG_ANSWER);
        }
    }

    /// Member `conn` sent a `Ping` record: its peer does not hear our probes (or runs a
    /// release that sends records each interval), so it is answered with one, at most one
    /// an interval.
    pub(super) fn answer_ping(&mut self, now: Instant, conn: ConnId) {
        let detector = self.detector();
        let Some(sealed) = self
            .membership
            .get_mut(conn)
            .and_then(|l| l.record_due(now, &detector, true))
        else {
            return;
        };
        match sealed {
            Ok(bytes) => self.transmit(conn, bytes),
            Err(e) => self.fail(now, conn, e.into()),
        }
    }

    /// Our own process did not run for a while (a timer fired far too late): every member's
    /// silence is counted from `grace` ago at most (see
    /// [`crate::core::detector::Liveness::recheck`]), and the round overdue now asks an
    /// answer, directly, of those still silent past `answer_after`: not of every member.
    /// Lifeguard's lesson (a slow node should not make the others work): a member heard
    /// while we were away (its probes are read with their arrival instants before this
    /// runs) or within `answer_after` needs no ask, and above 18 members (three rounds or
    /// more: `answer_after` over `grace`) nobody is asked at once: the regular probes bring
    /// a sign of life from each member (at 99, one every 3.3 s) before its silence could
    /// count (`dead_after` − `grace`, 3.9 s). On a loaded host a "pause" is a process
    /// starved a few hundred ms: 100 processes forming on 2 cores noticed 179-208 of them,
    /// and each asked all its members, who then read probes promptly for `dead_after`.
    pub(super) fn notice_pause(&mut self, now: Instant) {
        self.stats.pauses_noticed += 1;
        let detector = self.detector();
        for (_, link) in self.membership.iter_mut() {
            link.recheck(now, &detector);
        }
        self.probe_round(now, true);
    }

    /// Forgets relays whose answer never came, and rebuilds the addresses members have
    /// (probes from any other address are dropped unread).
    pub(super) fn tidy_probes(&mut self, now: Instant) {
        self.relays.retain(|_, until| *until > now);
        let seen = self.member_ips_seen;
        self.member_ips_seen = Some(self.membership.member_ips(seen, &mut self.member_ips));
        debug_assert!(
            self.membership.member_links().len() > crate::core::membership::CHECK_INDEX_UP_TO
                || self.member_ips
                    == self
                        .membership
                        .member_links()
                        .iter()
                        .filter_map(|&c| self.membership[c].peer().map(|p| p.ip))
                        .collect::<BTreeSet<_>>()
        );
    }

    /// True while probes are to be read as they arrive rather than at the next timer: an
    /// answer is owed promptly, as this node relays pings (the answers pass back through
    /// it) or was asked for an answer or a relay within the detector's bound (more asks
    /// follow each interval while the asker hears nothing). Otherwise the driver may leave
    /// datagrams waiting until its next timer, provided it hands each in with the instant
    /// it arrived, before [`Cluster::handle_timeout`] looks at anyone's silence.
    pub fn probes_prompt(&self, now: Instant) -> bool {
        !self.relays.is_empty() || self.asked_until.is_some_and(|t| t > now)
    }

    /// Probes need answering promptly for a while (see [`Cluster::probes_prompt`]).
    fn asked(&mut self, now: Instant) {
        let until = now + self.detector().dead_after();
        self.asked_until = Some(self.asked_until.map_or(until, |t| t.max(until)));
    }

    /// A datagram arrived on the probe socket from `from` at `now` (the instant it
    /// arrived, which may be before the last timer handled: the driver reads the socket
    /// once an interval while nothing is owed promptly).
    pub fn handle_probe(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.leaving {
            return;
        }
        match self.take_probe(now, from, datagram) {
            Ok(true) => self.stats.probes_received += 1,
            Ok(false) => {}
            Err(_) => self.stats.probes_rejected += 1,
        }
    }

    /// Takes a datagram in: `Ok(true)` if it was authentic and for us, `Ok(false)` if we
    /// passed it on for others.
    fn take_probe(&mut self, now: Instant, from: SocketAddr, d: &[u8]) -> Result<bool, Refused> {
        let h = Header::parse(d).ok_or(Refused::Malformed)?;
        if !self.knows_ip(from.ip(), h.from) {
            return Err(Refused::Unknown);
        }
        if h.to != self.me.id {
            return self.relay_answer(&h, d).map(|()| false);
        }
        let conn = self
            .membership
            .member_link(h.from)
            .ok_or(Refused::Unknown)?;
        let link = &mut self.membership[conn];
        let plain = link.probe_keys().ok_or(Refused::Unknown)?.open(&h, d)?;
        link.probed(now);
        match h.kind {
            probe::PING => {
                let flags = plain.first().copied().unwrap_or(0);
                if flags & probe::FLAG_ANSWER != 0 {
                    // Answered to where it came from: the relay that brought it.
                    self.send_probe(conn, h.from, probe::ACK, &[0], from);
                    // A round's probe may wait for our next timer; an ask may not.
                    if flags & probe::FLAG_ROUND == 0 {
                        self.asked(now);
                    }
                }
                Ok(true)
            }
            // The request is authentic (a sign of life of the asker) even if we do not
            // carry it out.
            probe::RELAY => {
                self.asked(now);
                self.relay_ping(now, h.from, &plain).map(|()| true)
            }
            _ => Ok(true),
        }
    }

    /// True if `ip` is an address a member has: the sender's own (a member that joined
    /// since the last [`Cluster::tidy_probes`] included), or another member's (a relay).
    fn knows_ip(&self, ip: IpAddr, sender: NodeId) -> bool {
        self.member_ips.contains(&ip)
            || self
                .membership
                .member_link(sender)
                .and_then(|c| self.membership[c].peer())
                .is_some_and(|p| p.ip == ip)
    }

    /// Member `asker` (authenticated) asks us to pass `inner` on: it must be a ping from
    /// `asker` itself to another member. We cannot open it (it is sealed for the target),
    /// only check its header; the target checks the rest.
    fn relay_ping(&mut self, now: Instant, asker: NodeId, inner: &[u8]) -> Result<(), Refused> {
        let h = Header::parse(inner).ok_or(Refused::NotRelayed)?;
        let ours = h.kind == probe::PING && h.from == asker && h.to != self.me.id;
        let target = self.membership.member_link(h.to).filter(|_| ours);
        let addr = target.and_then(|c| self.membership[c].listen_addr());
        let Some(addr) = addr else {
            return Err(Refused::NotRelayed);
        };
        let key = (asker, h.to);
        if self.relays.len() >= MAX_RELAYS && !self.relays.contains_key(&key) {
            return Err(Refused::NotRelayed);
        }
        self.relays
            .insert(key, now + self.config.detector.dead_after());
        self.stats.probes_relayed += 1;
        self.stats.probes_sent += 1;
        self.outputs.push_back(Output::Probe {
            addr,
            bytes: inner.to_vec(),
        });
        Ok(())
    }

    /// A datagram for another node: passed on only if it is the answer to a ping we
    /// relayed (one answer per request), to the member that asked.
    fn relay_answer(&mut self, h: &Header, d: &[u8]) -> Result<(), Refused> {
        if h.kind != probe::ACK || self.relays.remove(&(h.to, h.from)).is_none() {
            return Err(Refused::NotRelayed);
        }
        let asker = self.membership.member_link(h.to);
        let addr = asker.and_then(|c| self.membership[c].listen_addr());
        let addr = addr.ok_or(Refused::NotRelayed)?;
        self.stats.probes_relayed += 1;
        self.stats.probes_sent += 1;
        self.outputs.push_back(Output::Probe {
            addr,
            bytes: d.to_vec(),
        });
        Ok(())
    }
}
