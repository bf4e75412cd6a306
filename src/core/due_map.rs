//! A map whose entries each fall due at an instant, with those instants indexed, so that
//! the earliest and the overdue are found in O(log N) rather than by a walk over every
//! entry (discovery's nodes heard of and waiting for a dial: up to `MAX_HEARD`, read on
//! every input while a cluster of hundreds forms). The index holds one entry per entry of
//! the map: the map's own bound.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

#[derive(Debug)]
pub struct DueMap<K, V> {
    entries: BTreeMap<K, (Instant, V)>,
    by_due: BTreeSet<(Instant, K)>,
}

impl<K, V> Default for DueMap<K, V> {
    fn default() -> Self {
        DueMap {
            entries: BTreeMap::new(),
            by_due: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Copy, V> DueMap<K, V> {
    pub fn get(&self, k: &K) -> Option<&(Instant, V)> {
        self.entries.get(k)
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.entries.contains_key(k)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, k: K, entry: (Instant, V)) -> Option<(Instant, V)> {
        self.by_due.insert((entry.0, k));
        let old = self.entries.insert(k, entry);
        if let Some((due, _)) = &old {
            if *due != self.entries[&k].0 {
                self.by_due.remove(&(*due, k));
            }
        }
        old
    }

    pub fn remove(&mut self, k: &K) -> Option<(Instant, V)> {
        let old = self.entries.remove(k)?;
        self.by_due.remove(&(old.0, *k));
        Some(old)
    }

    /// Makes `k`'s entry, if any, due at `due`.
    pub fn set_due(&mut self, k: &K, due: Instant) {
        if let Some(entry) = self.entries.get_mut(k) {
            self.by_due.remove(&(entry.0, *k));
            entry.0 = due;
            self.by_due.insert((due, *k));
        }
    }

    /// The earliest instant an entry falls due.
    pub fn earliest(&self) -> Option<Instant> {
        self.by_due.first().map(|&(t, _)| t)
    }

    /// The keys due at or before `now`, in key order.
    pub fn due(&self, now: Instant) -> Vec<K> {
        let due = self.by_due.iter().take_while(|&&(t, _)| t <= now);
        let mut keys: Vec<K> = due.map(|&(_, k)| k).collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_index_follows_inserts_changes_and_removals() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut m: DueMap<u8, ()> = DueMap::default();
        m.insert(3, (at(30), ()));
        m.insert(1, (at(10), ()));
        m.insert(2, (at(10), ()));
        assert_eq!(m.earliest(), Some(at(10)));
        assert_eq!(m.due(at(10)), vec![1, 2]);
        // Replaced, moved, removed: the old instants go with them.
        m.insert(1, (at(50), ()));
        m.set_due(&2, at(40));
        assert_eq!(m.due(at(35)), vec![3]);
        m.insert(3, (at(30), ()));
        assert_eq!(m.remove(&3).map(|e| e.0), Some(at(30)));
        assert_eq!(m.earliest(), Some(at(40)));
        assert_eq!(m.due(at(60)), vec![1, 2]);
        assert_eq!(m.by_due.len(), m.len(), "one instant per entry");
        m.set_due(&9, at(0));
        assert_eq!(m.len(), 2, "a missing key is left missing");
    }
}
