//! A produced run of record batches, checked as the broker checks it
//! before appending (framing, CRC, counts), then split and decompressed as
//! a reader of the stored batches would.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let run = bytes::Bytes::copy_from_slice(data);
    if shardlog::batch::validate_all(&run).is_ok() {
        if let Ok(batches) = shardlog::batch::split_batches(&run) {
            for b in batches {
                let _ = shardlog::batch::decompress(b);
            }
        }
    }
});
