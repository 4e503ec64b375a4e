//! The producer against the real broker binary: order per partition and
//! acknowledged records across a kill -9 and restart, backpressure when the
//! broker is gone, every partitioner delivering what it acknowledged.
//! Every wait has a deadline; the broker guard kills the process on drop.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use shardlog::batch::{split_batches, Records};
use shardlog::client::producer::{
    DeliveryToken, Partitioner, Producer, ProducerConfig, ProducerError,
};
use shardlog::client::Client;
use shardlog::protocol::{Acks, FetchPartition};

const WAIT: Duration = Duration::from_secs(60);

/// Every record of a partition, as (offset, value).
fn read_partition(addr: &str, topic: &str, partition: u32) -> Vec<(i64, Vec<u8>)> {
    let mut c = Client::connect(addr).unwrap();
    let mut out = Vec::new();
    let mut next = 0i64;
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < WAIT,
            "reading partition {partition} took too long"
        );
        let r = c
            .fetch(
                topic,
                &[FetchPartition {
                    partition,
                    fetch_offset: next,
                    max_bytes: 1 << 20,
                }],
                1 << 20,
            )
            .unwrap()
            .pop()
            .unwrap();
        assert!(r.error.is_none(), "{:?}", r.error);
        for b in split_batches(&r.records.to_bytes()).unwrap() {
            for rec in Records::new(b).unwrap() {
                let rec = rec.unwrap();
                if rec.offset >= next {
                    out.push((rec.offset, rec.value.unwrap().to_vec()));
                    next = rec.offset + 1;
                }
            }
        }
        if next >= r.high_watermark {
            return out;
        }
    }
}

fn create_topic(addr: &str, topic: &str, partitions: u32) {
    Client::connect(addr)
        .unwrap()
        .create_topic(topic, partitions)
        .unwrap();
}

/// Checks the records each acknowledged token points at hold its value.
fn check_acked(addr: &str, topic: &str, partitions: u32, sent: &[(DeliveryToken, Vec<u8>)]) {
    let logs: Vec<HashMap<i64, Vec<u8>>> = (0..partitions)
        .map(|p| read_partition(addr, topic, p).into_iter().collect())
        .collect();
    for (t, v) in sent {
        let m = t.wait(WAIT).expect("delivered");
        assert_eq!(
            logs[m.partition as usize].get(&m.offset),
            Some(v),
            "partition {} offset {}",
            m.partition,
            m.offset
        );
    }
}

#[test]
fn order_per_partition_and_acked_records_survive_a_kill_9_and_restart() {
    let dir = data_dir();
    let mut broker = Broker::start(dir.path(), &["--fsync", "always"]);
    let addr = broker.broker_arg();
    const P: u32 = 3;
    create_topic(&addr, "orders", P);
    let producer = Arc::new(
        Producer::new(
            &addr,
            ProducerConfig {
                batch_bytes: 8 * 1024,
                linger: Duration::from_millis(2),
                acks: Acks::Durable,
                retry_backoff: Duration::from_millis(50),
                delivery_timeout: Duration::from_secs(60),
                max_block: Duration::from_secs(30),
                max_in_flight: 5,
                ..ProducerConfig::default()
            },
        )
        .unwrap(),
    );
    // A thread sends "partition:seq" to every partition in turn until told
    // to stop, across the crash.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (producer, stop) = (producer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) && seq < 200_000 {
                for p in 0..P {
                    let v = format!("{p}:{seq:010}:{}", "x".repeat(64)).into_bytes();
                    let t = producer.send_to("orders", p, None, &v, &[]).unwrap();
                    sent.push((t, v));
                }
                seq += 1;
                if seq.is_multiple_of(200) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(400));
    broker.kill();
    std::thread::sleep(Duration::from_millis(300));
    let broker = Broker::start_on(dir.path(), addr.parse().unwrap(), &["--fsync", "always"]);
    std::thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap();
    producer
        .flush(WAIT)
        .expect("everything delivered after the restart");
    assert!(
        sent.len() > 3 * 200,
        "the sender ran ({} records)",
        sent.len()
    );

    // Every record acknowledged, and found where its token says.
    check_acked(&broker.broker_arg(), "orders", P, &sent);
    // Per partition: first occurrences in send order, none missing (a
    // retry may duplicate a batch whose ack was lost, never reorder).
    for p in 0..P {
        let mut last: Option<u64> = None;
        let mut seen = std::collections::HashSet::new();
        for (_, v) in read_partition(&broker.broker_arg(), "orders", p) {
            let s = String::from_utf8(v).unwrap();
            let mut f = s.split(':');
            assert_eq!(f.next(), Some(p.to_string().as_str()));
            let seq: u64 = f.next().unwrap().parse().unwrap();
            if seen.insert(seq) {
                assert!(
                    last.is_none_or(|l| seq == l + 1),
                    "partition {p}: {seq} after {last:?}"
                );
                last = Some(seq);
            }
        }
        assert_eq!(seen.len() as u64, last.unwrap() + 1);
    }
    producer.close(WAIT).unwrap();
}

#[test]
fn a_full_buffer_blocks_send_for_max_block_then_fails_when_the_broker_is_gone() {
    let dir = data_dir();
    let mut broker = Broker::start(dir.path(), &[]);
    let addr = broker.broker_arg();
    create_topic(&addr, "bp", 2);
    let producer = Producer::new(
        &addr,
        ProducerConfig {
            batch_bytes: 16 * 1024,
            buffer_bytes: 64 * 1024,
            max_block: Duration::from_millis(500),
            delivery_timeout: Duration::from_secs(30),
            ..ProducerConfig::default()
        },
    )
    .unwrap();
    producer.send("bp", Some(b"k"), b"first", &[]).unwrap();
    producer.flush(WAIT).unwrap();
    broker.kill();

    let start = Instant::now();
    let value = vec![7u8; 1000];
    let mut tokens = Vec::new();
    let err = loop {
        assert!(start.elapsed() < WAIT, "send never blocked");
        let before = Instant::now();
        match producer.send("bp", None, &value, &[]) {
            Ok(t) => tokens.push(t),
            Err(e) => break (e, before.elapsed()),
        }
    };
    assert!(
        matches!(err.0, ProducerError::BufferFull { .. }),
        "{}",
        err.0
    );
    assert!(err.0.to_string().contains("max_block"), "{}", err.0);
    assert!(
        err.1 >= Duration::from_millis(450) && err.1 < Duration::from_secs(5),
        "blocked for {:?}",
        err.1
    );
    assert!(tokens.len() < 64, "the buffer bound held: {}", tokens.len());

    // Closing does not wait for a broker that is gone past its timeout, and
    // reports what was not delivered; every token hears about it.
    let start = Instant::now();
    let closed = producer.close(Duration::from_secs(1));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    match closed {
        Err(ProducerError::NotDelivered { failed_records, .. }) => {
            assert_eq!(failed_records, tokens.len() as u64)
        }
        other => panic!("close: {other:?}"),
    }
    for t in &tokens {
        assert!(t.wait(Duration::from_secs(1)).is_err());
    }
}

#[test]
fn every_partitioner_delivers_what_it_acknowledged() {
    let dir = data_dir();
    let broker = Broker::start(dir.path(), &["--fsync", "never"]);
    let addr = broker.broker_arg();
    for (i, partitioner) in [
        Partitioner::KeyHash,
        Partitioner::RoundRobin,
        Partitioner::Sticky,
    ]
    .into_iter()
    .enumerate()
    {
        let topic = format!("part-{i}");
        create_topic(&addr, &topic, 4);
        let producer = Producer::new(
            &addr,
            ProducerConfig {
                partitioner,
                batch_bytes: 4096,
                acks: Acks::Leader,
                ..ProducerConfig::default()
            },
        )
        .unwrap();
        let mut sent = Vec::new();
        let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        for n in 0..3000u32 {
            let key = format!("key-{}", n % 10);
            let v = format!("{n}-{}", "v".repeat(n as usize % 200)).into_bytes();
            if n % 2 == 0 {
                let t = producer
                    .send(&topic, Some(key.as_bytes()), &v, &[])
                    .unwrap();
                if partitioner == Partitioner::KeyHash {
                    assert_eq!(
                        t.partition(),
                        shardlog::client::partition_for_key(key.as_bytes(), 4)
                    );
                }
                sent.push((t, v));
            } else {
                let d = delivered.clone();
                producer
                    .send_with_callback(
                        &topic,
                        Some(key.as_bytes()),
                        &v,
                        &[],
                        Box::new(move |r| {
                            if r.is_ok() {
                                d.fetch_add(1, Ordering::Relaxed);
                            }
                        }),
                    )
                    .unwrap();
            }
        }
        producer.close(WAIT).unwrap();
        assert_eq!(delivered.load(Ordering::Relaxed), 1500, "{partitioner:?}");
        check_acked(&addr, &topic, 4, &sent);
        let per: Vec<usize> = (0..4)
            .map(|p| read_partition(&addr, &topic, p).len())
            .collect();
        assert_eq!(per.iter().sum::<usize>(), 3000, "{partitioner:?}");
        assert!(per.iter().all(|&n| n > 0), "{partitioner:?}: {per:?}");
    }
    let producer = Producer::new(&addr, ProducerConfig::default()).unwrap();
    let e = producer.send("no-such-topic", None, b"x", &[]).unwrap_err();
    assert!(matches!(e, ProducerError::Topic { .. }), "{e}");
}
