//! The record layer of an established session on arbitrary records, interleaved with
//! genuine ones, opened in place as the core opens them: never panics; a genuine record
//! opens to its plaintext; a fuzzer-made record is accepted only if it is byte for byte the
//! genuine record due next (the fuzzer cannot forge AES-GCM), and nothing is accepted twice.
#![no_main]

use espial::core::crypto::{Handshake, Identity, Role, Session};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn pair() -> (Session, Session) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let (a, a_hello) = Handshake::start(Role::Initiator, "espial", None, &mut rng);
    let (b, b_hello) = Handshake::start(Role::Responder, "espial", None, &mut rng);
    let (ia, ib) = (Identity::generate(&mut rng), Identity::generate(&mut rng));
    let (ca, a_fin) = a.finish(&b_hello, &ia).unwrap();
    let (cb, _) = b.finish(&a_hello, &ib).unwrap();
    let b_done = cb.verify(&mut a_fin.unwrap()[4..]).unwrap();
    let mut b_fin = b_done.confirmation.unwrap();
    let a_done = ca.verify(&mut b_fin[4..]).unwrap();
    (a_done.session, b_done.session)
}

fuzz_target!(|data: &[u8]| {
    let (mut a, mut b) = pair();
    let mut rest = data;
    let mut n = 0u32;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        n += 1;
        if op & 0x80 == 0 {
            // A genuine record from a.
            let plain = n.to_be_bytes();
            let mut frame = a.seal(&plain).unwrap();
            match b.open_in_place(&mut frame[4..]) {
                Ok(got) => assert_eq!(got, plain),
                // Once b refused something the connection is dead; nothing more is checked.
                Err(_) => return,
            }
        } else {
            // A made-up record, `op & 0x7f` bytes of the data.
            let len = usize::from(op & 0x7f).min(rest.len());
            let mut record = rest[..len].to_vec();
            if let Ok(got) = b.open_in_place(&mut record) {
                panic!("a made-up record was accepted: {got:?}");
            }
            return;
        }
    }
});
