//! The native protocol against a real broker, through the client library:
//! pipelining, error answers, and bad input that must not hurt the log.

mod common;

use bytes::Bytes;
use common::*;
use shardlog::batch::{self, BatchBuilder, Records};
use shardlog::client::{produce_request, Client, ClientError};
use shardlog::protocol::*;

fn batch_of(values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for v in values {
        b.push(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

fn fetch_values(c: &mut Client, topic: &str, partition: u32, offset: i64) -> Vec<String> {
    let r = c
        .fetch(
            topic,
            &[FetchPartition {
                partition,
                fetch_offset: offset,
                max_bytes: 1 << 20,
            }],
            1 << 20,
        )
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].error, None);
    let mut out = Vec::new();
    for b in batch::split_batches(&r[0].records).unwrap() {
        for rec in Records::new(b).unwrap() {
            let rec = rec.unwrap();
            if rec.offset >= offset {
                out.push(String::from_utf8(rec.value.unwrap().to_vec()).unwrap());
            }
        }
    }
    out
}

#[test]
fn pipelined_requests_are_answered_in_order_with_their_ids() {
    let dir = data_dir();
    let b = Broker::start(dir.path(), &[]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    let apis = c.api_versions().unwrap();
    for api in [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
    ] {
        assert!(
            apis.iter().any(|a| a.api == api),
            "{api:?} missing from ApiVersions"
        );
    }
    c.create_topic("p", 2).unwrap();
    // 100 produces and fetches in flight before reading any answer.
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(
            c.send(produce_request(
                "p",
                i % 2,
                batch_of(&[&format!("m{i}")]),
                Acks::Durable,
            ))
            .unwrap(),
        );
        ids.push(c.send(Request::Metadata { topics: None }).unwrap());
    }
    let mut next_offset = [0i64; 2];
    for (k, id) in ids.into_iter().enumerate() {
        let r = c.recv().unwrap();
        assert_eq!(r.correlation_id, id, "responses come back in request order");
        if k % 2 == 0 {
            let Ok(Response::Produce(t)) = r.result else {
                panic!("{:?}", r.result)
            };
            let p = &t[0].partitions[0];
            assert_eq!(p.error, None);
            assert_eq!(p.base_offset, next_offset[p.partition as usize]);
            next_offset[p.partition as usize] += 1;
        }
    }
    let got = fetch_values(&mut c, "p", 1, 0);
    assert_eq!(
        got,
        (0..100)
            .filter(|i| i % 2 == 1)
            .map(|i| format!("m{i}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(c.list_offset("p", 0, LIST_LATEST).unwrap(), 50);
    // A response limit of 1 byte: the first partition still gets one whole
    // batch (a consumer never stalls), the second nothing but its position.
    let both = [0, 1].map(|partition| FetchPartition {
        partition,
        fetch_offset: 0,
        max_bytes: 1 << 20,
    });
    let r = c.fetch("p", &both, 1).unwrap();
    assert_eq!(batch::split_batches(&r[0].records).unwrap().len(), 1);
    assert!(r[1].records.is_empty());
    assert_eq!((r[1].error.clone(), r[1].high_watermark), (None, 50));
    assert_eq!(c.list_offset("p", 0, LIST_EARLIEST).unwrap(), 0);
}

#[test]
fn bad_requests_get_clear_errors_and_leave_the_log_intact() {
    let dir = data_dir();
    let b = Broker::start(dir.path(), &[]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("t", 1).unwrap();
    assert_eq!(
        c.produce("t", 0, batch_of(&["a", "b"]), Acks::Durable)
            .unwrap(),
        0
    );

    let err = |r: Result<i64, ClientError>| r.unwrap_err().code();
    assert_eq!(
        err(c.produce("nope", 0, batch_of(&["x"]), Acks::Durable)),
        Some(ErrorCode::UnknownTopic)
    );
    assert_eq!(
        err(c.produce("t", 7, batch_of(&["x"]), Acks::Durable)),
        Some(ErrorCode::UnknownPartition)
    );
    let mut corrupt = batch_of(&["x"]).to_vec();
    let n = corrupt.len();
    corrupt[n - 2] ^= 0xff;
    assert_eq!(
        err(c.produce("t", 0, Bytes::from(corrupt), Acks::Durable)),
        Some(ErrorCode::CorruptBatch)
    );
    // A header that lies about its length.
    let mut lying = batch_of(&["x"]).to_vec();
    lying[8..12].copy_from_slice(&(1_000_000i32).to_be_bytes());
    assert_eq!(
        err(c.produce("t", 0, Bytes::from(lying), Acks::Durable)),
        Some(ErrorCode::CorruptBatch)
    );
    assert_eq!(
        err(c.produce("t", 0, Bytes::new(), Acks::Durable)),
        Some(ErrorCode::InvalidRequest)
    );
    assert_eq!(
        err(c.list_offset("t", 0, -7)),
        Some(ErrorCode::InvalidRequest)
    );
    let r = c
        .fetch(
            "t",
            &[FetchPartition {
                partition: 0,
                fetch_offset: 99,
                max_bytes: 100,
            }],
            100,
        )
        .unwrap();
    assert_eq!(
        r[0].error.as_ref().map(|e| e.code),
        Some(ErrorCode::OffsetOutOfRange)
    );

    // A request in a protocol version this broker does not speak.
    let frame = codec::encode_request(&RequestFrame {
        version: 99,
        correlation_id: 4242,
        client_id: None,
        request: Request::ApiVersions,
    });
    c.send_raw(&frame).unwrap();
    let r = c.recv().unwrap();
    assert_eq!(r.correlation_id, 4242);
    assert_eq!(r.result.unwrap_err().code, ErrorCode::UnsupportedVersion);

    // Garbage in a well-formed frame: an error answer, then the broker hangs up.
    let mut other = Client::connect(&b.broker_arg()).unwrap();
    other.send_raw(&[5, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    let r = other.recv().unwrap();
    assert_eq!(r.result.unwrap_err().code, ErrorCode::InvalidRequest);
    assert!(matches!(
        other.recv(),
        Err(ClientError::Closed) | Err(ClientError::Io(_))
    ));
    // An oversized frame header: refused without reading 4 GiB.
    let mut big = Client::connect(&b.broker_arg()).unwrap();
    big.send_raw(&u32::MAX.to_le_bytes()).unwrap();
    assert_eq!(
        big.recv().unwrap().result.unwrap_err().code,
        ErrorCode::MessageTooLarge
    );
    // A client that vanishes mid-frame.
    let mut gone = Client::connect(&b.broker_arg()).unwrap();
    gone.send_raw(&[100, 0, 0, 0, 1, 2]).unwrap();
    drop(gone);

    // The first connection is unharmed and the log holds exactly a, b.
    assert_eq!(fetch_values(&mut c, "t", 0, 0), vec!["a", "b"]);
    assert_eq!(
        c.produce("t", 0, batch_of(&["c"]), Acks::Durable).unwrap(),
        2
    );
    assert_eq!(fetch_values(&mut c, "t", 0, 1), vec!["b", "c"]);
}

#[test]
fn every_acks_mode_makes_data_readable() {
    let dir = data_dir();
    let b = Broker::start(dir.path(), &["--fsync", "never"]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("a", 1).unwrap();
    assert_eq!(c.produce("a", 0, batch_of(&["n"]), Acks::None).unwrap(), 0);
    assert_eq!(
        c.produce("a", 0, batch_of(&["l"]), Acks::Leader).unwrap(),
        1
    );
    assert_eq!(
        c.produce("a", 0, batch_of(&["d"]), Acks::Durable).unwrap(),
        2
    );
    assert_eq!(fetch_values(&mut c, "a", 0, 0), vec!["n", "l", "d"]);
}
