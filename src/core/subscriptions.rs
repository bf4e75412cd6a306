//! Custom event subscriptions: the events this node joined, which decide what it delivers,
//! and each peer's, which decide what is sent to that peer.
//!
//! A set holds at most [`MAX_JOINED`] names of at most [`MAX_JOINED_BYTES`] in all, ours and
//! each peer's alike: what we may join is what every peer accepts from us. A peer's
//! `Subscribe` or `Subscriptions` past either bound breaks the protocol (its connection is
//! closed) and changes nothing, so a member can make us hold at most that much for it.

use std::collections::BTreeSet;

use super::error::{ConnectionError, SubscribeError};
use super::message::{MAX_EVENT_NAME, MAX_JOINED};

/// Most bytes of event names one set may hold, summed: 64 KiB, 16 bytes a name at the most
/// events. (A set also costs its entries: about 56 bytes each, so a full one is under
/// 300 KiB.)
pub const MAX_JOINED_BYTES: usize = 64 * 1024;

/// True for a name the protocol can carry: 1 to [`MAX_EVENT_NAME`] bytes.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_EVENT_NAME
}

/// A set of custom event names, at most [`MAX_JOINED`] of them and [`MAX_JOINED_BYTES`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Subscriptions {
    names: BTreeSet<String>,
    /// The names' bytes, summed.
    bytes: usize,
}

/// A peer's subscriptions past the bounds: the rule its message broke.
const TOO_MANY: &str = "more joined events than any node may join";
const TOO_LONG: &str = "joined events' names over 64 KiB in all";

impl Subscriptions {
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.names.iter().cloned().collect()
    }

    /// Whether `name`, not held yet, fits under both bounds.
    fn room_for(&self, name: &str) -> Result<(), SubscribeError> {
        if self.names.len() >= MAX_JOINED {
            return Err(SubscribeError::TooMany { max: MAX_JOINED });
        }
        if self.bytes + name.len() > MAX_JOINED_BYTES {
            return Err(SubscribeError::TooManyBytes {
                max: MAX_JOINED_BYTES,
            });
        }
        Ok(())
    }

    fn insert(&mut self, name: String) {
        self.bytes += name.len();
        self.names.insert(name);
    }

    /// This node joins `name`. `Ok(true)` if that is news the members must hear.
    pub fn subscribe(&mut self, name: &str) -> Result<bool, SubscribeError> {
        if !is_valid_name(name) {
            return Err(SubscribeError::InvalidName);
        }
        if self.names.contains(name) {
            return Ok(false);
        }
        self.room_for(name)?;
        self.insert(name.to_owned());
        Ok(true)
    }

    /// `true` if `name` was joined.
    pub fn unsubscribe(&mut self, name: &str) -> bool {
        let removed = self.names.remove(name);
        if removed {
            self.bytes -= name.len();
        }
        removed
    }

    /// A peer joined `name`; past the bounds that breaks the protocol and nothing changes.
    pub fn peer_subscribed(&mut self, name: String) -> Result<(), ConnectionError> {
        if self.names.contains(&name) {
            return Ok(());
        }
        self.room_for(&name).map_err(|e| match e {
            SubscribeError::TooManyBytes { .. } => ConnectionError::Protocol(TOO_LONG),
            _ => ConnectionError::Protocol(TOO_MANY),
        })?;
        self.insert(name);
        Ok(())
    }

    /// A peer's whole list, as sent once to each new member; past the bounds that breaks
    /// the protocol and nothing changes. (Its count was bounded when it was decoded.)
    pub fn replace(&mut self, names: Vec<String>) -> Result<(), ConnectionError> {
        let mut next = Subscriptions::default();
        for name in names {
            next.peer_subscribed(name)?;
        }
        *self = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribing_is_bounded_and_idempotent() {
        let mut s = Subscriptions::default();
        assert_eq!(s.subscribe(""), Err(SubscribeError::InvalidName));
        assert_eq!(
            s.subscribe(&"x".repeat(MAX_EVENT_NAME + 1)),
            Err(SubscribeError::InvalidName)
        );
        assert_eq!(s.subscribe(&"x".repeat(MAX_EVENT_NAME)), Ok(true));
        for i in 1..MAX_JOINED {
            assert_eq!(s.subscribe(&i.to_string()), Ok(true));
        }
        assert_eq!(
            s.subscribe("one more"),
            Err(SubscribeError::TooMany { max: MAX_JOINED })
        );
        // Joining again what is joined already is no news, even when full.
        assert_eq!(s.subscribe("1"), Ok(false));
        assert!(s.unsubscribe("1"));
        assert!(!s.unsubscribe("1"));
        assert_eq!(s.subscribe("one more"), Ok(true));
        assert!(s.contains("one more") && !s.contains("1"));
    }

    #[test]
    fn a_peer_cannot_claim_more_than_any_node_may_join() {
        let mut peer = Subscriptions::default();
        peer.replace((0..MAX_JOINED).map(|i| i.to_string()).collect())
            .unwrap();
        assert_eq!(
            peer.peer_subscribed("one more".into()),
            Err(ConnectionError::Protocol(TOO_MANY))
        );
        assert_eq!(peer.peer_subscribed("1".into()), Ok(()), "held already");
        peer.replace(vec!["a".into()]).unwrap();
        assert_eq!(peer.names(), vec!["a".to_owned()]);
        assert_eq!(peer.peer_subscribed("b".into()), Ok(()));
        assert!(peer.contains("b"));
    }

    #[test]
    fn names_are_bounded_in_bytes_ours_and_a_peers_alike() {
        let name = |i: usize| format!("{i:0>255}");
        let fit = MAX_JOINED_BYTES / MAX_EVENT_NAME;
        let mut ours = Subscriptions::default();
        for i in 0..fit {
            assert_eq!(ours.subscribe(&name(i)), Ok(true));
        }
        let over = Err(SubscribeError::TooManyBytes {
            max: MAX_JOINED_BYTES,
        });
        assert_eq!(ours.subscribe(&name(fit)), over);
        // What is left fits a shorter name exactly.
        let left = MAX_JOINED_BYTES - fit * MAX_EVENT_NAME;
        assert_eq!(ours.subscribe(&"x".repeat(left + 1)), over);
        assert_eq!(ours.subscribe(&"x".repeat(left)), Ok(true));
        assert!(ours.unsubscribe(&name(0)));
        assert_eq!(ours.subscribe(&name(fit)), Ok(true), "room again");

        let mut peer = Subscriptions::default();
        for i in 0..fit {
            assert_eq!(peer.peer_subscribed(name(i)), Ok(()));
        }
        let refused = Err(ConnectionError::Protocol(TOO_LONG));
        assert_eq!(peer.peer_subscribed(name(fit)), refused);
        assert!(!peer.contains(&name(fit)), "nothing changes");
        let before = peer.clone();
        assert_eq!(peer.replace((0..=fit).map(name).collect()), refused);
        assert_eq!(peer, before, "a whole list over the bound changes nothing");
        assert_eq!(peer.replace(vec!["a".into()]), Ok(()));
        assert_eq!(peer.names(), vec!["a".to_owned()]);
    }
}
