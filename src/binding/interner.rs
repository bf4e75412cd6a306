//! The strings of a packed run (custom event deliveries in `packed.rs`, requests and answers
//! in `calls.rs`): each name and each sender id once, referred to by index from the run's
//! trailer, so that JavaScript makes one string per distinct value, not one per entry.

use std::collections::HashMap;

use crate::core::node::NodeId;

/// A run's strings, in the order they were first met. Names and sender ids are interned
/// apart: a name that reads like an id is still its own entry.
#[derive(Default)]
pub struct Interner {
    strings: Vec<String>,
    names: HashMap<String, u32>,
    senders: HashMap<NodeId, u32>,
}

impl Interner {
    /// The index of event or handler name `name`.
    pub fn name(&mut self, name: String) -> u32 {
        if let Some(&i) = self.names.get(&name) {
            return i;
        }
        let i = self.add(name.clone());
        self.names.insert(name, i);
        i
    }

    /// The index of sender `from`'s id. Formatting an id costs more than the rest of a
    /// small message: once per sender.
    pub fn sender(&mut self, from: NodeId) -> u32 {
        if let Some(&i) = self.senders.get(&from) {
            return i;
        }
        let i = self.add(from.to_string());
        self.senders.insert(from, i);
        i
    }

    fn add(&mut self, s: String) -> u32 {
        self.strings.push(s);
        self.strings.len() as u32 - 1
    }

    /// The strings, each at its index.
    pub fn into_strings(self) -> Vec<String> {
        self.strings
    }
}
