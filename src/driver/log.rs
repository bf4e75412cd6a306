//! `DEBUG=espial` logs, the Node.js convention: readable lines on stderr from the Rust core,
//! off unless asked for. The check is made once per node, at start.

use std::fmt;

use crate::core::node::NodeId;

/// Where a node's log lines go: nowhere unless `DEBUG` names espial.
#[derive(Debug, Clone, Copy)]
pub struct Log {
    /// The first 8 hex digits of the node id, to tell nodes in one process apart.
    node: Option<[u8; 4]>,
}

impl Log {
    /// A logger for node `id`, enabled if `DEBUG` asks for espial.
    pub fn for_node(id: NodeId) -> Self {
        let on = std::env::var("DEBUG").is_ok_and(|v| wants_espial(&v));
        Log {
            node: on.then(|| id.0[..4].try_into().unwrap()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.node.is_some()
    }

    /// Writes one line; the arguments are only formatted when logging is on.
    pub fn line(&self, args: fmt::Arguments<'_>) {
        if let Some(n) = self.node {
            eprintln!(
                "espial {:02x}{:02x}{:02x}{:02x} {args}",
                n[0], n[1], n[2], n[3]
            );
        }
    }
}

/// The `debug` package's syntax: comma or space separated names, `*` wildcards, and `-name`
/// exclusions.
fn wants_espial(value: &str) -> bool {
    let mut wanted = false;
    for pattern in value.split([',', ' ']).filter(|p| !p.is_empty()) {
        let (exclude, pattern) = match pattern.strip_prefix('-') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if matches_espial(pattern) {
            if exclude {
                return false;
            }
            wanted = true;
        }
    }
    wanted
}

fn matches_espial(pattern: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == "espial",
        Some((prefix, _)) => "espial".starts_with(prefix) || prefix.starts_with("espial"),
    }
}

#[cfg(test)]
mod tests {
    use super::wants_espial;

    #[test]
    fn debug_patterns_follow_the_node_convention() {
        for on in [
            "espial",
            "espial*",
            "espial:*",
            "*",
            "express,espial",
            "foo espial",
        ] {
            assert!(wants_espial(on), "{on}");
        }
        for off in ["", "express", "esp", "espialx", "*,-espial", "-espial"] {
            assert!(!wants_espial(off), "{off}");
        }
    }
}
