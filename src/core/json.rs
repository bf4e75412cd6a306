//! The two JSON rules a peer's data must keep before it may reach JavaScript: metadata is a
//! JSON object, and a custom event's text payload is JSON text. Checked with `serde_json`
//! without building a tree ([`IgnoredAny`] skips every value), so the cost is one pass over
//! the bytes and no allocation. Skipping is iterative in serde_json, so deep nesting costs
//! no stack; `JSON.parse` takes deep nesting too, so it is not refused.

use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Whether `bytes` are UTF-8 text of one JSON value (any kind), as `JSON.parse` takes it.
pub fn is_json(bytes: &[u8]) -> bool {
    // serde_json skips the inside of strings without checking UTF-8; JSON text is Unicode.
    std::str::from_utf8(bytes).is_ok_and(|text| serde_json::from_str::<IgnoredAny>(text).is_ok())
}

/// Whether `text` is one JSON object, as node metadata must be.
pub fn is_json_object(text: &str) -> bool {
    serde_json::from_str::<Object>(text).is_ok()
}

/// A JSON object, skipped entry by entry; any other kind of value is refused.
struct Object;

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_only_for_metadata() {
        for ok in [
            "{}",
            " {\"a\": [1, {\"b\": null}], \"c\": \"\\u00e9\"} ",
            "{\"n\": 1e400}",
            // JSON.stringify writes a lone surrogate as an escape; JSON.parse takes it.
            "{\"s\": \"\\ud800\"}",
        ] {
            assert!(is_json_object(ok), "{ok}");
        }
        for bad in [
            "", "{", "not json", "[1]", "\"str\"", "1", "null", "{}{}", "{} x", "{'a':1}",
            "{\"a\":}",
        ] {
            assert!(!is_json_object(bad), "{bad}");
        }
        // As deep as 64 KiB allows: no stack overflow here, and JSON.parse takes it.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(30_000), "]".repeat(30_000));
        assert!(is_json_object(&deep));
        assert!(!is_json_object(&deep[..deep.len() - 2]));
    }

    #[test]
    fn any_value_for_payloads() {
        for ok in ["1", "null", "\"x\"", "[1,2]", "{\"a\":1}", " true "] {
            assert!(is_json(ok.as_bytes()), "{ok}");
        }
        for bad in [&b""[..], b"{", b"not json", b"1 2", b"\"\xff\"", b"[1,]"] {
            assert!(!is_json(bad), "{bad:?}");
        }
    }
}
