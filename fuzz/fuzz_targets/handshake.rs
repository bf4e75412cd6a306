//! The handshake on an arbitrary peer hello, then an arbitrary record as the peer's key
//! confirmation: never panics, and nothing is confirmed, since the fuzzer holds no session
//! key (the confirmation must authenticate) nor any identity key it could prove.
#![no_main]

use espial::core::crypto::{ClusterKey, Handshake, Identity, Role};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(control));
    let key = ClusterKey::new(b"fuzzing cluster key material", "fuzz");
    let role = if control & 1 == 0 {
        Role::Initiator
    } else {
        Role::Responder
    };
    let key = (control & 2 != 0).then_some(&key);
    // The hello's length from the data: first byte (up to 255 bytes), then records.
    let Some((&hello_len, rest)) = rest.split_first() else {
        return;
    };
    let hello_len = usize::from(hello_len).min(rest.len());
    let (hello, records) = rest.split_at(hello_len);
    let (hs, _our_hello) = Handshake::start(role, "espial", key, &mut rng);
    let me = Identity::generate(&mut rng);
    let Ok((confirming, _confirmation)) = hs.finish(hello, &me) else {
        return;
    };
    // The first record must be the peer's key confirmation: the fuzzer cannot make one.
    let Some((&len, tail)) = records.split_first() else {
        return;
    };
    let len = usize::from(len).min(tail.len());
    let mut record = tail[..len].to_vec();
    if let Ok(done) = confirming.verify(&mut record) {
        panic!("a confirmation from nowhere was accepted: {:?}", done.peer);
    }
});
