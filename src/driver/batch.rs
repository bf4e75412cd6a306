//! A batch of custom events to send, in the shape they cross from JavaScript: event names
//! and target lists once each, payloads back to back in one buffer. One allocation per
//! batch instead of several per message. The payload bytes are borrowed from the caller
//! (the JavaScript Buffer, for the whole synchronous send), not copied.

use std::borrow::Cow;
use std::fmt;

use crate::core::error::SendError;
use crate::core::node::NodeId;

/// Where a message goes: `None` is every member that joined the event. An error (a target
/// that is no node id, say) is the outcome of every message naming this list.
pub type Targets = Result<Option<Vec<NodeId>>, SendError>;

#[derive(Debug, Clone, Copy)]
struct Entry {
    name: u32,
    targets: u32,
    binary: bool,
    end: usize,
}

/// Custom events to send, in order.
#[derive(Debug, Clone, Default)]
pub struct SendBatch<'a> {
    names: Vec<String>,
    targets: Vec<Targets>,
    entries: Vec<Entry>,
    payload: Cow<'a, [u8]>,
}

/// A message refers to a name, a target list or payload bytes the batch does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError(&'static str);

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for BatchError {}

/// One custom event of a batch.
pub struct BatchEntry<'a> {
    pub name: &'a str,
    pub binary: bool,
    pub payload: &'a [u8],
    pub targets: &'a Targets,
}

impl<'a> SendBatch<'a> {
    /// A batch whose messages will use these names and target lists, and whose payloads
    /// are `payload`, in order.
    pub fn new(
        names: Vec<String>,
        targets: Vec<Targets>,
        payload: impl Into<Cow<'a, [u8]>>,
    ) -> Self {
        SendBatch {
            names,
            targets,
            entries: Vec::new(),
            payload: payload.into(),
        }
    }

    /// One message to send: the event `names[name]` to `targets[targets]`, with the next
    /// `len` bytes of the payload buffer.
    pub fn push(
        &mut self,
        name: u32,
        targets: u32,
        binary: bool,
        len: usize,
    ) -> Result<(), BatchError> {
        if name as usize >= self.names.len() {
            return Err(BatchError(
                "a message names an event the batch does not list",
            ));
        }
        if targets as usize >= self.targets.len() {
            return Err(BatchError(
                "a message names targets the batch does not list",
            ));
        }
        let start = self.entries.last().map_or(0, |e| e.end);
        let end = start
            .checked_add(len)
            .filter(|&end| end <= self.payload.len())
            .ok_or(BatchError(
                "the payload lengths add up to more than the payload bytes",
            ))?;
        self.entries.push(Entry {
            name,
            targets,
            binary,
            end,
        });
        Ok(())
    }

    /// Appends a message with its own name, targets and payload.
    #[cfg(test)]
    pub fn add(&mut self, name: &str, binary: bool, payload: &[u8], targets: Targets) {
        let name_at = match self.names.iter().position(|n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_owned());
                self.names.len() - 1
            }
        };
        self.targets.push(targets);
        self.payload.to_mut().extend_from_slice(payload);
        let targets_at = self.targets.len() - 1;
        self.push(name_at as u32, targets_at as u32, binary, payload.len())
            .expect("indexes and length were just added");
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The messages, in order.
    pub fn iter(&self) -> impl Iterator<Item = BatchEntry<'_>> + '_ {
        let mut start = 0;
        self.entries.iter().map(move |e| {
            let payload = &self.payload[start..e.end];
            start = e.end;
            BatchEntry {
                name: &self.names[e.name as usize],
                binary: e.binary,
                payload,
                targets: &self.targets[e.targets as usize],
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_come_back_in_order_with_their_names_targets_and_bytes() {
        let id = NodeId([7; 16]);
        let mut b = SendBatch::new(
            vec!["a".into(), "b".into()],
            vec![Ok(None), Ok(Some(vec![id]))],
            b"onetwothree".to_vec(),
        );
        b.push(0, 1, false, 3).unwrap();
        b.push(1, 0, true, 3).unwrap();
        b.push(0, 0, false, 5).unwrap();
        let got: Vec<_> = b
            .iter()
            .map(|m| (m.name, m.binary, m.payload, m.targets.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", false, &b"one"[..], Ok(Some(vec![id]))),
                ("b", true, &b"two"[..], Ok(None)),
                ("a", false, &b"three"[..], Ok(None)),
            ]
        );
    }

    #[test]
    fn indexes_and_lengths_beyond_the_batch_are_refused() {
        let mut b = SendBatch::new(vec!["a".into()], vec![Ok(None)], vec![0; 4]);
        assert!(b.push(1, 0, false, 1).is_err());
        assert!(b.push(0, 1, false, 1).is_err());
        assert!(b.push(0, 0, false, 5).is_err());
        b.push(0, 0, false, 3).unwrap();
        assert!(b.push(0, 0, false, 2).is_err());
        assert!(b.push(0, 0, false, usize::MAX).is_err());
        b.push(0, 0, false, 1).unwrap();
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn messages_added_one_by_one_share_names() {
        let mut b = SendBatch::default();
        b.add("x", false, b"1", Ok(None));
        b.add("x", true, b"22", Err(SendError::NotRunning));
        let got: Vec<_> = b.iter().map(|m| (m.name, m.payload.len())).collect();
        assert_eq!(got, vec![("x", 1), ("x", 2)]);
        assert_eq!(b.names.len(), 1);
    }
}
