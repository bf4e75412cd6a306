//! `DEBUG=espial` logs, the Node.js convention: readable lines on stderr from the Rust core,
//! off unless asked for. The check is made once per node, at start.

use std::borrow::Cow;
use std::fmt;

use crate::core::node::{is_unsafe_char, NodeId};

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

    /// Writes one line; the arguments are only formatted when logging is on. Whatever
    /// they hold (a peer's host name or cluster name among them) stays on this one line:
    /// see [`render`].
    pub fn line(&self, args: fmt::Arguments<'_>) {
        if let Some(n) = self.node {
            eprintln!("{}", render(n, args));
        }
    }
}

/// One log line: the prefix, then `args` with every control character and bidirectional
/// override escaped, so text from a peer can neither start a forged line nor send escape
/// sequences to a terminal.
fn render(node: [u8; 4], args: fmt::Arguments<'_>) -> String {
    let [a, b, c, d] = node;
    format!(
        "espial {a:02x}{b:02x}{c:02x}{d:02x} {}",
        escape(&args.to_string())
    )
}

/// `text` with each [`is_unsafe_char`] character written as a Rust escape (`\n`,
/// `\u{1b}`). Backslashes are left as they are: text that merely looks like an escape
/// stays on its line all the same.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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
    use super::{escape, render, wants_espial};

    #[test]
    fn peer_text_cannot_break_a_line_or_reach_the_terminal() {
        let host = "evil\nespial 00000000 added forged\r\x1b[2J\u{7f}\u{9b}\u{202e}\\n";
        let line = render([0xab, 0, 0, 1], format_args!("added x ({host} 10.0.0.1:1)"));
        assert_eq!(
            line,
            "espial ab000001 added x (evil\\nespial 00000000 added forged\\r\\u{1b}[2J\\u{7f}\\u{9b}\\u{202e}\\n 10.0.0.1:1)"
        );
        assert!(!line.chars().any(|c| c.is_control()));
        assert_eq!(escape("web-1.example"), "web-1.example");
        assert_eq!(
            escape("caf\u{e9} \u{1F600}"),
            "caf\u{e9} \u{1F600}",
            "printable Unicode stays"
        );
    }

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
