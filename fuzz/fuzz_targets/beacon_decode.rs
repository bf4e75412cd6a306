//! Beacon decoding on arbitrary datagrams: never panics; a keyed node accepts nothing the
//! fuzzer makes up (it cannot produce the MAC), and an accepted unkeyed beacon re-encodes
//! to the same bytes.
#![no_main]

use espial::core::beacon;
use espial::core::crypto::ClusterKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(b) = beacon::decode(data, "espial", None) {
        assert_eq!(beacon::encode("espial", None, b), data);
    }
    let key = ClusterKey::new(b"fuzzing cluster key material", "fuzz");
    if let Some(b) = beacon::decode(data, "espial", Some(&key)) {
        // Only possible if the input is exactly our own encoding.
        assert_eq!(beacon::encode("espial", Some(&key), b), data);
    }
});
