//! One Kafka request body (length prefix removed), decoded as the
//! listener does, then the consumer-protocol bytes the broker decodes
//! later. Run with `-malloc_limit_mb` to catch an allocation out of
//! proportion to the input (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlog::group::classic::{consumer_assignment, ClassicCall};
use shardlog::kafka::codec::{decode_request, DEFAULT_MAX_CONTROL_REQUEST_BYTES};
use shardlog::kafka::wire::Work;
use shardlog::protocol::Request;

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    if let Ok(d) = decode_request(body, DEFAULT_MAX_CONTROL_REQUEST_BYTES) {
        if let Work::Native { frame, .. } = d.work {
            if let Request::Classic(ClassicCall::Sync(s)) = frame.request {
                for a in &s.assignments {
                    let _ = consumer_assignment(&a.1);
                }
            }
        }
    }
});
