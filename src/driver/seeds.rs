//! Seeds from `network.peers`. An entry that is an address is a seed as it is; an entry
//! that is a name is looked up again every `peers_resolve_interval` (the system resolver:
//! A and AAAA records, the hosts file), and every address it has now is a seed. So a
//! Kubernetes headless Service name follows its pods as they come and go: a new pod's
//! address is dialed at once, a gone one is no longer probed. The core only ever sees
//! addresses ([`Cluster::set_seeds`](crate::core::cluster::Cluster::set_seeds)): resolving
//! is I/O, so it stays here, in a task of its own, so that a slow resolver holds up nothing.
//!
//! A name that does not resolve keeps the addresses it last had (a resolver down for a
//! while is no reason to forget where the cluster was), is tried again with a back-off,
//! and is reported once per run of failures (a DEBUG line and an `ERR_ESPIAL_SEED`
//! diagnostic); every failed lookup is counted in `stats().seed_lookups_failed`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// Most addresses taken from one name: a name answering with more (a huge Service, or a
/// hostile resolver) gives its lowest this many (sorted, so the same ones each time). Joining through any one member is enough.
pub const MAX_ADDRS_PER_NAME: usize = 64;

/// A lookup not answered by then has failed.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A name failing again and again is tried again after the interval, then twice that, and
/// so on up to this (or the interval, if longer).
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// What the lookups found, for the node task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// Every seed now (addresses given and names' addresses), if they changed.
    pub seeds: Option<Vec<SocketAddr>>,
    /// The lookup failed.
    pub failed: bool,
    /// A line to report: a name's first failure in a row, or what it resolves to now.
    pub report: Option<Report>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The first failure of a run: logged and emitted as `ERR_ESPIAL_SEED`.
    Unresolved(String),
    /// A name's addresses changed: logged.
    Resolved(String),
}

/// `network.peers`, and what each name resolved to.
#[derive(Debug)]
pub struct Seeds {
    given: Vec<SocketAddr>,
    names: Vec<Name>,
    interval: Duration,
}

#[derive(Debug)]
struct Name {
    /// `host:port` as given.
    text: String,
    addrs: Vec<SocketAddr>,
    /// Failed lookups in a row.
    failures: u32,
    due: Instant,
}

impl Seeds {
    /// Entries that parse as addresses are seeds as they are; the others are names, all
    /// due for a lookup at `now`.
    pub fn new(peers: &[String], interval: Duration, now: Instant) -> Seeds {
        let mut given = Vec::new();
        let mut names = Vec::new();
        for p in peers {
            match p.parse::<SocketAddr>() {
                Ok(a) => push_new(&mut given, a),
                Err(_) => names.push(Name {
                    text: p.clone(),
                    addrs: Vec::new(),
                    failures: 0,
                    due: now,
                }),
            }
        }
        Seeds {
            given,
            names,
            interval,
        }
    }

    /// Every seed now, each once: the addresses given first, then names' addresses.
    pub fn all(&self) -> Vec<SocketAddr> {
        let mut all = self.given.clone();
        for n in &self.names {
            for &a in &n.addrs {
                push_new(&mut all, a);
            }
        }
        all
    }

    pub fn has_names(&self) -> bool {
        !self.names.is_empty()
    }

    /// The name looked up next, and when.
    pub fn next(&self) -> Option<(usize, Instant)> {
        self.names
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| n.due)
            .map(|(i, n)| (i, n.due))
    }

    pub fn name(&self, i: usize) -> &str {
        &self.names[i].text
    }

    /// Records the lookup of name `i` finished at `now`: its addresses (at most
    /// [`MAX_ADDRS_PER_NAME`], in the resolver's order) or why it failed.
    pub fn record(
        &mut self,
        i: usize,
        now: Instant,
        result: Result<Vec<SocketAddr>, String>,
    ) -> Update {
        let before = self.all();
        let interval = self.interval;
        let n = &mut self.names[i];
        let mut report = None;
        let failed = match result {
            Ok(mut addrs) if !addrs.is_empty() => {
                // Sorted: resolvers rotate their answers, and the same set in another order
                // is no news (and past the bound, the same addresses are kept each time).
                addrs.sort_unstable();
                addrs.dedup();
                addrs.truncate(MAX_ADDRS_PER_NAME);
                n.failures = 0;
                if addrs != n.addrs {
                    report = Some(Report::Resolved(format!(
                        "seed \"{}\" (network.peers) resolves to {}",
                        n.text,
                        list(&addrs)
                    )));
                    n.addrs = addrs;
                }
                n.due = now + interval;
                false
            }
            failure => {
                let why = failure.err().unwrap_or_else(|| "no address".to_owned());
                n.failures = n.failures.saturating_add(1);
                let wait = retry_wait(interval, n.failures);
                if n.failures == 1 {
                    let kept = if n.addrs.is_empty() {
                        String::new()
                    } else {
                        format!("; keeping its last addresses {}", list(&n.addrs))
                    };
                    report = Some(Report::Unresolved(format!(
                        "cannot resolve seed \"{}\" (network.peers): {why}{kept}; trying again in {} ms, then less often (further failures counted in stats().seed_lookups_failed)",
                        n.text,
                        wait.as_millis()
                    )));
                }
                n.due = now + wait;
                true
            }
        };
        let after = self.all();
        Update {
            seeds: (after != before).then_some(after),
            failed,
            report,
        }
    }
}

/// The wait after the `failures`-th failed lookup in a row: the interval, doubled per
/// further failure, up to [`MAX_RETRY_WAIT`] (or the interval, if longer).
fn retry_wait(interval: Duration, failures: u32) -> Duration {
    let cap = interval.max(MAX_RETRY_WAIT);
    let doublings = failures.saturating_sub(1).min(16);
    interval.saturating_mul(1 << doublings).min(cap)
}

fn push_new(v: &mut Vec<SocketAddr>, a: SocketAddr) {
    if !v.contains(&a) {
        v.push(a);
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    shown.join(", ")
}

/// Looks `name` (`host:port`) up with the system resolver, bounded in time.
async fn lookup(name: &str) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(name)).await {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} ms",
            LOOKUP_TIMEOUT.as_millis()
        )),
    }
}

/// Looks the names up, each when due, one at a time, and tells the node task what changed;
/// ends when the node task is gone (or has no names).
pub async fn watch(mut seeds: Seeds, updates: mpsc::Sender<Update>) {
    while let Some((i, due)) = seeds.next() {
        tokio::time::sleep_until(due.into()).await;
        let result = lookup(seeds.name(i)).await;
        let update = seeds.record(i, Instant::now(), result);
        if update.seeds.is_none() && !update.failed && update.report.is_none() {
            continue;
        }
        if updates.send(update).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_seeds_as_given_and_names_follow_their_answers() {
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let peers = ["10.0.0.1:1".to_owned(), "svc:27272".to_owned()];
        let mut s = Seeds::new(&peers, every, t0);
        assert_eq!(s.all(), vec![a("10.0.0.1:1")]);
        assert_eq!(s.next(), Some((0, t0)));
        assert_eq!(s.name(0), "svc:27272");

        let u = s.record(0, t0, Ok(vec![a("10.0.0.2:27272"), a("10.0.0.3:27272")]));
        let both = vec![a("10.0.0.1:1"), a("10.0.0.2:27272"), a("10.0.0.3:27272")];
        assert_eq!(u.seeds.as_ref(), Some(&both));
        assert!(matches!(u.report, Some(Report::Resolved(_))));
        assert_eq!(s.next(), Some((0, t0 + every)));

        // The same answer: nothing to tell.
        let u = s.record(
            0,
            t0 + every,
            Ok(vec![a("10.0.0.3:27272"), a("10.0.0.2:27272")]),
        );
        assert_eq!(u.seeds, None, "the same addresses");
        // A pod replaced: its old address goes, the new one comes.
        let u = s.record(
            0,
            t0 + every,
            Ok(vec![a("10.0.0.2:27272"), a("10.0.0.9:27272")]),
        );
        assert_eq!(
            u.seeds,
            Some(vec![
                a("10.0.0.1:1"),
                a("10.0.0.2:27272"),
                a("10.0.0.9:27272")
            ])
        );
    }

    #[test]
    fn a_failing_name_keeps_its_addresses_backs_off_and_is_reported_once_per_run() {
        let t0 = Instant::now();
        let every = Duration::from_secs(5);
        let mut s = Seeds::new(&["svc:1".to_owned()], every, t0);
        s.record(0, t0, Ok(vec![a("10.0.0.2:1")]));
        let mut reports = 0;
        let mut waits = Vec::new();
        let mut now = t0;
        for _ in 0..6 {
            let u = s.record(0, now, Err("NXDOMAIN".to_owned()));
            assert!(u.failed);
            assert_eq!(u.seeds, None, "its last addresses are kept");
            reports += usize::from(matches!(u.report, Some(Report::Unresolved(_))));
            let (_, due) = s.next().unwrap();
            waits.push((due - now).as_secs());
            now = due;
        }
        assert_eq!(reports, 1);
        assert_eq!(waits, vec![5, 10, 20, 30, 30, 30]);
        // Resolving again ends the run: the next failure is reported again.
        s.record(0, now, Ok(vec![a("10.0.0.2:1")]));
        let u = s.record(0, now, Ok(Vec::new()));
        assert!(u.failed, "no address is a failure");
        assert!(matches!(u.report, Some(Report::Unresolved(_))));
    }

    #[test]
    fn a_name_gives_at_most_its_bound_of_addresses() {
        let t0 = Instant::now();
        let mut s = Seeds::new(&["svc:1".to_owned()], Duration::from_secs(1), t0);
        let many: Vec<SocketAddr> = (0..200u16)
            .map(|i| SocketAddr::new([10, 1, (i >> 8) as u8, i as u8].into(), 1))
            .collect();
        let u = s.record(0, t0, Ok(many.clone()));
        assert_eq!(u.seeds.unwrap(), many[..MAX_ADDRS_PER_NAME].to_vec());
    }
}
