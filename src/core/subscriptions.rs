//! Custom event subscriptions: the events this node joined, which decide what it delivers,
//! and each peer's, which decide what is sent to that peer.

use std::collections::BTreeSet;

use super::error::{ConnectionError, SubscribeError};
use super::message::{MAX_EVENT_NAME, MAX_JOINED};

/// True for a name the protocol can carry: 1 to [`MAX_EVENT_NAME`] bytes.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_EVENT_NAME
}

/// A set of custom event names, at most [`MAX_JOINED`] of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Subscriptions(BTreeSet<String>);

impl Subscriptions {
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }

    /// This node joins `name`. `Ok(true)` if that is news the members must hear.
    pub fn subscribe(&mut self, name: &str) -> Result<bool, SubscribeError> {
        if !is_valid_name(name) {
            return Err(SubscribeError::InvalidName);
        }
        if self.0.contains(name) {
            return Ok(false);
        }
        if self.0.len() >= MAX_JOINED {
            return Err(SubscribeError::TooMany { max: MAX_JOINED });
        }
        Ok(self.0.insert(name.to_owned()))
    }

    /// `true` if `name` was joined.
    pub fn unsubscribe(&mut self, name: &str) -> bool {
        self.0.remove(name)
    }

    /// A peer joined `name`; a peer claiming more than any node may join breaks the
    /// protocol.
    pub fn peer_subscribed(&mut self, name: String) -> Result<(), ConnectionError> {
        if self.0.len() >= MAX_JOINED {
            return Err(ConnectionError::Protocol("too many joined events"));
        }
        self.0.insert(name);
        Ok(())
    }

    /// A peer's whole list, as sent once to each new member.
    pub fn replace(&mut self, names: Vec<String>) {
        self.0 = names.into_iter().collect();
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
        peer.replace((0..MAX_JOINED).map(|i| i.to_string()).collect());
        assert_eq!(
            peer.peer_subscribed("one more".into()),
            Err(ConnectionError::Protocol("too many joined events"))
        );
        peer.replace(vec!["a".into()]);
        assert_eq!(peer.names(), vec!["a".to_owned()]);
        assert_eq!(peer.peer_subscribed("b".into()), Ok(()));
        assert!(peer.contains("b"));
    }
}
