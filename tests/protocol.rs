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
    for b in batch::split_batches(&r[0].records.to_bytes()).unwrap() {
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
        ids.push(
            c.send(Request::Metadata {
                topics: None,
                auto_create: false,
                include_internal: false,
            })
            .unwrap(),
        );
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
    assert_eq!(
        batch::split_batches(&r[0].records.to_bytes())
            .unwrap()
            .len(),
        1
    );
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

    // A request kind this broker does not know (a newer client): a clear
    // answer for that request, and the connection goes on.
    {
        use shardlog::protocol::generated as fb;
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let body = fb::ApiVersionsRequest::create(&mut fbb, &fb::ApiVersionsRequestArgs {});
        let env = fb::RequestEnvelope::create(
            &mut fbb,
            &fb::RequestEnvelopeArgs {
                version: 1,
                correlation_id: 777,
                client_id: None,
                request_type: fb::Request(200),
                request: Some(body.as_union_value()),
            },
        );
        fbb.finish(env, None);
        let data = fbb.finished_data();
        let mut frame = (data.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(data);
        c.send_raw(&frame).unwrap();
        let r = c.recv().unwrap();
        assert_eq!(r.correlation_id, 777);
        let e = r.result.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.contains("200"), "{e}");
        assert_eq!(c.api_versions().unwrap().len(), ApiKey::ALL.len());
    }
    // A frame too short to hold any envelope: an error, then the hang-up.
    let mut short = Client::connect(&b.broker_arg()).unwrap();
    short.send_raw(&[2, 0, 0, 0, 7, 7]).unwrap();
    assert_eq!(
        short.recv().unwrap().result.unwrap_err().code,
        ErrorCode::InvalidRequest
    );
    assert!(short.recv().is_err());

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

fn part(partition: u32, fetch_offset: i64) -> FetchPartition {
    FetchPartition {
        partition,
        fetch_offset,
        max_bytes: 1 << 20,
    }
}

#[test]
fn a_waiting_fetch_is_woken_by_the_produce_that_brings_data() {
    long_poll("always");
}

/// Under `never` (and `interval`) data becomes visible at the write, not the
/// fdatasync: the wake-up comes from there.
#[test]
fn a_waiting_fetch_is_woken_under_fsync_never_too() {
    long_poll("never");
}

fn long_poll(fsync: &str) {
    use std::time::{Duration, Instant};
    let dir = data_dir();
    let b = Broker::start(dir.path(), &["--fsync", fsync]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("lp", 2).unwrap();

    // Nothing arrives: the fetch waits its max_wait (not less), then answers empty.
    let t0 = Instant::now();
    let r = c
        .fetch_wait("lp", &[part(0, 0), part(1, 0)], 1 << 20, 300, 1)
        .unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    assert!(r.iter().all(|p| p.records.is_empty() && p.error.is_none()));

    // A fetch waiting 20 s is answered as soon as a produce to one of its
    // partitions becomes visible, with that data.
    let addr = b.broker_arg();
    let waiter = std::thread::spawn(move || {
        let mut w = Client::connect(&addr).unwrap();
        let t0 = Instant::now();
        let r = w
            .fetch_wait("lp", &[part(0, 0), part(1, 0)], 1 << 20, 20_000, 1)
            .unwrap();
        (t0.elapsed(), r)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        c.produce("lp", 1, batch_of(&["wake"]), Acks::Durable)
            .unwrap(),
        0
    );
    let (waited, r) = waiter.join().unwrap();
    assert!(waited < Duration::from_secs(15), "not woken: {waited:?}");
    assert!(r[0].records.is_empty());
    let got: Vec<_> = Records::new(r[1].records.to_bytes())
        .unwrap()
        .map(|r| r.unwrap().value.unwrap())
        .collect();
    assert_eq!(got, vec![Bytes::from_static(b"wake")]);

    // min_bytes counts: one small batch does not satisfy 1 MiB, so the
    // fetch waits out its time and returns what there is.
    let t0 = Instant::now();
    let r = c
        .fetch_wait("lp", &[part(1, 0)], 1 << 20, 250, 1 << 20)
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert!(!r[0].records.is_empty());
    // An error (unknown partition) answers at once.
    let t0 = Instant::now();
    let r = c
        .fetch_wait("lp", &[part(9, 0)], 1 << 20, 20_000, 1)
        .unwrap();
    assert!(t0.elapsed() < Duration::from_secs(15));
    assert_eq!(
        r[0].error.as_ref().map(|e| e.code),
        Some(ErrorCode::UnknownPartition)
    );
}

#[test]
fn topics_are_described_and_deleted_for_good() {
    let dir = data_dir();
    let mut b = Broker::start(dir.path(), &[]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic_with("d", 2, &[("retention.ms".into(), "60000".into())])
        .unwrap();
    c.create_topic("keep", 1).unwrap();
    for v in ["a", "b", "c"] {
        c.produce("d", 1, batch_of(&[v, v]), Acks::Durable).unwrap();
    }
    let t = c.describe_topic("d").unwrap();
    assert_eq!(
        t.configs,
        vec![("retention.ms".to_owned(), "60000".to_owned())]
    );
    assert_eq!(t.partitions.len(), 2);
    let p1 = &t.partitions[1];
    assert_eq!(
        (p1.log_start_offset, p1.high_watermark, p1.segments),
        (0, 6, 1)
    );
    assert!(p1.size_bytes > 0);
    assert_eq!(
        (t.partitions[0].high_watermark, t.partitions[0].size_bytes),
        (0, 0)
    );

    // The CLI shows the same, also as JSON.
    let ba = b.broker_arg();
    let t = std::time::Duration::from_secs(30);
    let out = run(
        &["topic", "describe", "d", "--json", "--broker", &ba],
        b"",
        t,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let json = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        json.starts_with("{\"name\":\"d\",\"configs\":{\"retention.ms\":\"60000\"}"),
        "{json}"
    );
    assert!(
        json.contains(",\"earliest_offset\":0,\"latest_offset\":6,"),
        "{json}"
    );
    let out = run(&["topic", "list", "--json", "--broker", &ba], b"", t);
    assert_eq!(
        String::from_utf8(out.stdout.clone()).unwrap().trim(),
        "{\"topics\":[{\"name\":\"d\",\"partitions\":2},{\"name\":\"keep\",\"partitions\":1}]}"
    );
    let out = run(&["topic", "describe", "nope", "--broker", &ba], b"", t);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("unknown topic 'nope'"),
        "{}",
        out.stderr
    );

    // Delete: gone at once for every request kind, files removed.
    let out = run(&["topic", "delete", "d", "--broker", &ba], b"", t);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(!dir.path().join("topics").join("d").exists());
    let err = |r: Result<i64, ClientError>| r.unwrap_err().code();
    assert_eq!(
        err(c.produce("d", 0, batch_of(&["x"]), Acks::Durable)),
        Some(ErrorCode::UnknownTopic)
    );
    assert_eq!(
        c.describe_topic("d").unwrap_err().code(),
        Some(ErrorCode::UnknownTopic)
    );
    assert_eq!(
        c.delete_topic("d").unwrap_err().code(),
        Some(ErrorCode::UnknownTopic)
    );
    // Recreated under the same name, it starts empty; and stays so across a restart.
    c.create_topic("d", 1).unwrap();
    assert_eq!(
        c.produce("d", 0, batch_of(&["new"]), Acks::Durable)
            .unwrap(),
        0
    );
    drop(c);
    assert!(b.terminate(std::time::Duration::from_secs(30)).success());
    let b = Broker::start(dir.path(), &[]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    assert_eq!(fetch_values(&mut c, "d", 0, 0), vec!["new"]);
    assert_eq!(c.describe_topics(None).unwrap().len(), 2);
    assert_eq!(c.list_offset("keep", 0, LIST_LATEST).unwrap(), 0);
}

#[test]
fn limits_hold_at_their_bounds() {
    use std::time::{Duration, Instant};
    let dir = data_dir();
    let b = Broker::start(
        dir.path(),
        &[
            // limits are per shard: one shard makes the bound exact
            "--shards",
            "1",
            "--max-connections",
            "2",
            "--max-batch-bytes",
            "4096",
            "--max-frame-bytes",
            "65536",
            "--max-inflight-per-connection",
            "2",
        ],
    );
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("l", 1).unwrap();

    // Batch bytes: a run of exactly the limit is taken, one byte more is not.
    let sized = |n: usize| {
        let mut v = 0;
        loop {
            let b = batch_of(&[&"x".repeat(v)]);
            if b.len() >= n {
                assert_eq!(b.len(), n, "batch size steps by one byte here");
                return b;
            }
            v += 1;
        }
    };
    assert_eq!(c.produce("l", 0, sized(4096), Acks::Durable).unwrap(), 0);
    let e = c.produce("l", 0, sized(4097), Acks::Durable).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MessageTooLarge), "{e}");
    assert!(e.to_string().contains("4097 bytes"), "{e}");

    // In flight: 2 per connection; 50 pipelined requests all get answers, in order.
    let ids: Vec<u32> = (0..50)
        .map(|i| {
            c.send(produce_request(
                "l",
                0,
                batch_of(&[&i.to_string()]),
                Acks::Durable,
            ))
            .unwrap()
        })
        .collect();
    for (i, id) in ids.into_iter().enumerate() {
        assert_eq!(c.recv_produce(id).unwrap(), 1 + i as i64);
    }

    // Frame bytes: a frame of exactly the limit is read (and found to be
    // garbage), one byte more is refused before it is read.
    let mut at = Client::connect(&b.broker_arg()).unwrap();
    let mut frame = 65536u32.to_le_bytes().to_vec();
    frame.extend(std::iter::repeat_n(0xab, 65536));
    at.send_raw(&frame).unwrap();
    assert_eq!(
        at.recv().unwrap().result.unwrap_err().code,
        ErrorCode::InvalidRequest
    );
    drop(at);
    let mut over = loop {
        // (the connection above may not be counted out yet)
        let mut o = Client::connect(&b.broker_arg()).unwrap();
        o.send_raw(&65537u32.to_le_bytes()).unwrap();
        let r = o.recv().unwrap().result.unwrap_err();
        if r.code != ErrorCode::TooManyConnections {
            assert_eq!(r.code, ErrorCode::MessageTooLarge, "{r}");
            break o;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(over.recv().is_err(), "closed after a frame over the limit");
    drop(over);

    // Connections: c plus one more; the third is told why and closed.
    let start = Instant::now();
    let mut second = loop {
        let mut s = Client::connect(&b.broker_arg()).unwrap();
        match s.api_versions() {
            Ok(_) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("second connection refused: {e}"),
        }
    };
    let mut third = Client::connect(&b.broker_arg()).unwrap();
    let e = third.api_versions().unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TooManyConnections), "{e}");
    assert!(e.to_string().contains("limit of 2 connections"), "{e}");
    // The CLI says the same in one line.
    let out = run(
        &["topic", "list", "--broker", &b.broker_arg()],
        b"",
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("limit of 2 connections"),
        "{}",
        out.stderr
    );
    // Served connections are unharmed; a freed slot is taken again.
    second.api_versions().unwrap();
    drop(second);
    let start = Instant::now();
    loop {
        let mut again = Client::connect(&b.broker_arg()).unwrap();
        if again.api_versions().is_ok() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "slot never freed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fetch_values(&mut c, "l", 0, 1).len(), 50);
}

#[test]
fn memory_budget_bounds_partitions_and_holds_under_load() {
    let dir = data_dir();
    // 1 MiB per shard: 512 KiB of tail buffers (8 partitions at the 64 KiB
    // floor) and 512 KiB of unwritten bytes.
    let b = Broker::start(
        dir.path(),
        &[
            "--shards",
            "1",
            "--memory-budget",
            "1048576",
            "--max-batch-bytes",
            "262144",
        ],
    );
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("m", 8).unwrap();
    let e = c.create_topic("one-more", 1).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidPartitions), "{e}");
    assert!(e.to_string().contains("holds at most 8"), "{e}");

    // Far more than the budget in flight at once, from two connections: the
    // broker slows them instead of holding it all, and loses nothing.
    let big = |i: usize| batch_of(&[&format!("{i:06}{}", "z".repeat(200_000))]);
    let addr = b.broker_arg();
    let other = std::thread::spawn(move || {
        let mut c2 = Client::connect(&addr).unwrap();
        let ids: Vec<u32> = (0..40)
            .map(|i| {
                c2.send(produce_request("m", (i % 8) as u32, big(i), Acks::None))
                    .unwrap()
            })
            .collect();
        for id in ids {
            c2.recv_produce(id).unwrap();
        }
    });
    let ids: Vec<u32> = (0..40)
        .map(|i| {
            c.send(produce_request(
                "m",
                (i % 8) as u32,
                big(100 + i),
                Acks::Durable,
            ))
            .unwrap()
        })
        .collect();
    for id in ids {
        c.recv_produce(id).unwrap();
    }
    other.join().unwrap();
    // (acks=none ones become visible once written: wait for them, bounded)
    let start = std::time::Instant::now();
    loop {
        let total: i64 = (0..8)
            .map(|p| c.list_offset("m", p, LIST_LATEST).unwrap())
            .sum();
        if total == 80 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{total} of 80"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Client quotas hold on the native listener too: a producer whose client
/// id has a producer_byte_rate of 1 MiB/s is held to it (its connection
/// reads nothing while throttled), while a producer beside it that no
/// quota names is not slowed.
#[test]
fn a_native_producer_over_its_quota_is_held_to_it_and_another_is_not() {
    use std::time::{Duration, Instant};
    const QUOTA: f64 = 1_048_576.0;
    let t = Duration::from_secs(30);
    let dir = data_dir();
    let b = Broker::start(dir.path(), &[]);
    let addr = b.broker_arg();
    Client::connect(&addr)
        .unwrap()
        .create_topic("nq", 1)
        .unwrap();
    let set = [
        "quota",
        "set",
        "--client-id",
        "slow-native",
        "--producer-byte-rate",
        "1048576",
        "--broker",
        &addr,
    ];
    let out = run(&set, b"", t);
    assert!(out.status.success(), "{}", out.stderr);
    // About 64 KiB per request.
    let value = "x".repeat(16 * 1024);
    let batch = batch_of(&[&value, &value, &value, &value]);
    let produce = |id: Option<&'static str>| {
        let (addr, batch) = (addr.clone(), batch.clone());
        std::thread::spawn(move || {
            let mut c = Client::connect(&addr).unwrap();
            if let Some(id) = id {
                c.set_client_id(id);
            }
            let start = Instant::now();
            let mut acked = Vec::new();
            while start.elapsed() < Duration::from_secs(8) {
                c.produce("nq", 0, batch.clone(), Acks::Leader).unwrap();
                acked.push((start.elapsed(), batch.len()));
            }
            acked
        })
    };
    let slow = produce(Some("slow-native"));
    let fast = produce(None);
    // The rate over 5 s once the first second's burst is spent.
    let rate = |acked: &[(Duration, usize)]| {
        let from = Duration::from_secs(3);
        let bytes: usize = acked
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|(_, n)| n)
            .sum();
        bytes as f64 / 5.0
    };
    let (slow, fast) = (rate(&slow.join().unwrap()), rate(&fast.join().unwrap()));
    eprintln!("slow-native {slow:.0} B/s, the other {fast:.0} B/s (quota {QUOTA})");
    assert!(
        (0.9..=1.1).contains(&(slow / QUOTA)),
        "the throttled producer ran at {slow:.0} B/s against a quota of {QUOTA}"
    );
    assert!(
        fast > 3.0 * QUOTA,
        "the producer no quota names ran at {fast:.0} B/s"
    );
}
