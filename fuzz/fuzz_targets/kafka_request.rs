//! One Kafka request body (length prefix removed), decoded as the
//! listener does, then the consumer-protocol bytes the broker decodes
//! later. Run with `-malloc_limit_mb` to catch an allocation out of
//! proportion to the input (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlog::kafka::codec::{decode_request, DEFAULT_MAX_CONTROL_REQUEST_BYTES};

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    // The consumer-protocol bytes of a SyncGroup are decoded when the
    // group's assignments are described: `classic_assignments` decodes
    // every one the request carries, as the broker would.
    let ids = shardlog::kafka::wire::NoTopicIds;
    if let Ok(d) = decode_request(body, DEFAULT_MAX_CONTROL_REQUEST_BYTES, &ids) {
        shardlog::kafka::wire::classic_assignments(&d.work);
    }
});
