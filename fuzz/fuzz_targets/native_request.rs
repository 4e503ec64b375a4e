//! One native (flatbuffers) request frame, decoded as the listener does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shardlog::protocol::codec::decode_request(&bytes::Bytes::copy_from_slice(data));
});
