//! Message decoding on arbitrary plaintext (what an authenticated but hostile peer could
//! send): never panics, honours the metadata bound, and whatever decodes re-encodes to the
//! same bytes.
#![no_main]

use espial::core::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let max_metadata = 1024;
    if let Ok(msg) = Message::decode(data, max_metadata) {
        if let Message::Profile { metadata, .. } | Message::Update { metadata } = &msg {
            assert!(metadata.len() <= max_metadata);
        }
        assert_eq!(msg.encode(), data, "decode then encode changed {msg:?}");
        assert_eq!(
            Message::decode(&msg.encode(), max_metadata).as_ref(),
            Ok(&msg)
        );
    }
});
