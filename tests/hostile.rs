//! Hostile clients against a running 2-shard broker, on both listeners:
//! a slowloris (hundreds of connections that send a large length prefix
//! and part of a body, then stall) and a flood of mutated frames and
//! garbage, each while well-behaved clients produce and consume.
//!
//! Every broker is killed when its guard drops; every socket has a
//! deadline; the attack threads stop at a flag and are joined.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::kafka::{fetch_request, name, produce_request, Kafka};
use common::{free_port, run, scrape, total, Broker};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchResponse, MetadataRequest,
    ProduceResponse, RequestHeader,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use shardlog::batch::BatchBuilder;

const T: Duration = Duration::from_secs(60);

/// A broker with both listeners on free ports, /metrics on.
struct Target {
    b: Broker,
    kafka: SocketAddr,
    http: String,
}

fn start(dir: &std::path::Path, shards: &str, extra: &[&str]) -> Target {
    let kafka: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let k = kafka.to_string();
    let mut args = vec![
        "--shards",
        shards,
        "--kafka-listen",
        &k,
        "--kafka-port-base",
        "0",
        "--http-listen",
        &http,
    ];
    args.extend_from_slice(extra);
    let mut b = Broker::start(dir, &args);
    b.wait_kafka(kafka);
    Target { b, kafka, http }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn create_topic(b: &Broker, topic: &str, partitions: &str) {
    let out = run(
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            partitions,
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
}

/// A well-behaved Kafka producer: `rounds` acks=all produces of 10 records
/// to partition 0, each checked; returns the values sent.
fn kafka_produce(kafka: SocketAddr, topic: &str, rounds: usize, tag: &str) -> Vec<Vec<u8>> {
    let mut k = Kafka::connect(kafka);
    let mut sent = Vec::new();
    for r in 0..rounds {
        let values: Vec<Vec<u8>> = (0..10)
            .map(|i| format!("{tag}-{r:05}-{i}").into_bytes())
            .collect();
        let mut b = BatchBuilder::new(1_700_000_000_000);
        for v in &values {
            b.push(1_700_000_000_000, None, Some(v), &[]);
        }
        let resp: ProduceResponse = k.call(
            ApiKey::Produce,
            8,
            &produce_request(topic, 0, -1, b.finish()),
        );
        let code = resp.responses[0].partition_responses[0].error_code;
        assert_eq!(code, 0, "round {r}: produce error {code}");
        sent.extend(values);
    }
    sent
}

/// Everything in partition 0 of `topic`, read over Kafka.
fn kafka_fetch_all(kafka: SocketAddr, topic: &str) -> Vec<Vec<u8>> {
    let mut k = Kafka::connect(kafka);
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let resp: FetchResponse = k.call(ApiKey::Fetch, 11, &fetch_request(topic, 0, offset, 0));
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let Some(records) = p.records.clone().filter(|r| !r.is_empty()) else {
            return out;
        };
        let mut buf = records;
        for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
            for r in set.records {
                offset = r.offset + 1;
                out.push(r.value.unwrap().to_vec());
            }
        }
    }
}

/// A well-behaved native producer and consumer (the CLI).
fn native_produce(b: &Broker, topic: &str, lines: &[String]) {
    let mut stdin = lines.join("\n").into_bytes();
    stdin.push(b'\n');
    let out = run(
        &[
            "produce",
            topic,
            "--partition",
            "0",
            "--broker",
            &b.broker_arg(),
        ],
        &stdin,
        T,
    );
    assert!(
        out.status.success(),
        "native produce failed: {}",
        out.stderr
    );
}

fn native_consume(b: &Broker, topic: &str) -> Vec<String> {
    let out = run(
        &[
            "consume",
            topic,
            "--partition",
            "0",
            "--from",
            "earliest",
            "--idle-timeout-ms",
            "1000",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(
        out.status.success(),
        "native consume failed: {}",
        out.stderr
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A length prefix of `len` in the listener's framing.
fn prefix(kafka: bool, len: u32) -> [u8; 4] {
    if kafka {
        len.to_be_bytes()
    } else {
        len.to_le_bytes()
    }
}

#[test]
fn stalled_half_frames_are_bounded_in_memory_closed_after_the_read_timeout_and_never_block_a_good_client(
) {
    let dir = common::data_dir();
    const BUDGET: u64 = 16 << 20;
    let budget = BUDGET.to_string();
    let t = start(
        dir.path(),
        "2",
        &[
            "--queued-max-request-bytes",
            &budget,
            "--request-read-timeout-ms",
            "3000",
            "--fsync",
            "never",
        ],
    );
    create_topic(&t.b, "good", "1");
    let pid = t.b.child.as_ref().unwrap().id();
    // Warm up both paths once, then read the resting RSS.
    kafka_produce(t.kafka, "good", 1, "warm");
    native_produce(&t.b, "good", &["warm".to_owned()]);
    std::thread::sleep(Duration::from_millis(200));
    let rest = rss_bytes(pid);

    // 200 connections per listener: a 60 MiB length prefix, 256 KiB of
    // body, then nothing (the attack that took RSS from 16 MB to 783 MB).
    const PER_LISTENER: usize = 200;
    let body = vec![0x5a; 256 << 10];
    let mut stalled = Vec::new();
    let started = Instant::now();
    for kafka in [true, false] {
        let addr = if kafka { t.kafka } else { t.b.addr };
        for _ in 0..PER_LISTENER {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
            s.set_nonblocking(true).unwrap();
            let mut frame = prefix(kafka, 60 << 20).to_vec();
            frame.extend_from_slice(&body);
            // What fits in the socket buffers now; the rest would block
            // (the broker may have stopped reading: that is the point).
            let mut sent = 0;
            while sent < frame.len() {
                match s.write(&frame[sent..]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            stalled.push(s);
        }
    }
    // While they stall: the good clients are served, and RSS stays within
    // the two shards' budgets, their connections' free allowances (16 KiB
    // each) and one frame being finished per shard (256 KiB here), with
    // 48 MiB for the allocator's and the kernel's slack.
    let bound = rest + 2 * BUDGET + (2 * PER_LISTENER as u64) * (16 << 10) + (48 << 20);
    let mut peak = 0;
    let mut good_rounds = 0;
    while started.elapsed() < Duration::from_millis(2500) {
        kafka_produce(t.kafka, "good", 1, "during");
        good_rounds += 1;
        peak = peak.max(rss_bytes(pid));
    }
    native_produce(&t.b, "good", &["during-native".to_owned()]);
    peak = peak.max(rss_bytes(pid));
    assert!(good_rounds > 0);
    eprintln!(
        "RSS at rest {} MiB, peak while stalled {} MiB, bound {} MiB; {good_rounds} good produces",
        rest >> 20,
        peak >> 20,
        bound >> 20
    );
    assert!(
        peak <= bound,
        "RSS {} MiB while stalled, over the bound {} MiB (rest {} MiB)",
        peak >> 20,
        bound >> 20,
        rest >> 20
    );
    // After the read timeout every stalled connection is closed: those
    // that were read until they stalled, and those that waited for the
    // budget as long.
    let deadline = Instant::now() + Duration::from_secs(20);
    let closed = loop {
        let s = scrape(&t.http);
        let closed = total(
            &s,
            "shardlog_connections_closed_total",
            &[("reason", "read_timeout")],
        );
        if closed >= (2 * PER_LISTENER) as f64 || Instant::now() > deadline {
            break closed;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        closed,
        (2 * PER_LISTENER) as f64,
        "stalled connections closed for read_timeout; log:\n{}",
        t.b.log()
    );
    for s in stalled.iter_mut().take(5) {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 64];
        // Closed by the broker: EOF (native may get an error frame first),
        // or a reset because it closed with unread bytes.
        loop {
            match s.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
    let s = scrape(&t.http);
    assert_eq!(total(&s, "shardlog_read_budget_bytes", &[]), 0.0);
    // The log says why, rate-limited: at most 5 lines a second per reason
    // and shard, with a count of the rest.
    let log = common::plain(&t.b.log());
    let lines = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("reason=\"read_timeout\""))
        .count();
    let secs = started.elapsed().as_secs() + 2;
    assert!(lines >= 1, "no read_timeout warning in:\n{log}");
    assert!(
        lines as u64 <= 2 * 5 * secs,
        "{lines} read_timeout warnings in {secs} s:\n{log}"
    );
    assert!(
        log.contains("more like it not logged"),
        "no summary of suppressed warnings:\n{log}"
    );
    // Everything the good clients were acknowledged is there.
    let got = kafka_fetch_all(t.kafka, "good");
    assert_eq!(got.len(), 10 * (good_rounds + 1) + 2);
}

/// A small xorshift generator: repeatable attacks from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn kafka_seed(api: ApiKey, version: i16, m: &dyn Fn(&mut BytesMut)) -> Vec<u8> {
    let mut h = RequestHeader::default();
    h.request_api_key = api as i16;
    h.request_api_version = version;
    h.correlation_id = 1;
    h.client_id = Some(StrBytes::from_static_str("attacker"));
    let mut b = BytesMut::new();
    h.encode(&mut b, api.request_header_version(version))
        .unwrap();
    m(&mut b);
    b.to_vec()
}

fn kafka_seeds() -> Vec<Vec<u8>> {
    let mut batch = BatchBuilder::new(0);
    batch.push(0, Some(b"k"), Some(b"attack"), &[]);
    let records = batch.finish();
    let mut md = MetadataRequest::default();
    let mut t = MetadataRequestTopic::default();
    t.name = Some(name("attack"));
    md.topics = Some(vec![t]);
    vec![
        kafka_seed(ApiKey::ApiVersions, 3, &|b| {
            ApiVersionsRequest::default().encode(b, 3).unwrap()
        }),
        kafka_seed(ApiKey::Metadata, 9, &|b| md.encode(b, 9).unwrap()),
        kafka_seed(ApiKey::Produce, 8, &|b| {
            produce_request("attack", 0, -1, records.clone())
                .encode(b, 8)
                .unwrap()
        }),
        kafka_seed(ApiKey::Fetch, 11, &|b| {
            fetch_request("attack", 0, 0, 0).encode(b, 11).unwrap()
        }),
    ]
}

fn native_seeds() -> Vec<Vec<u8>> {
    use shardlog::protocol::*;
    let mut batch = BatchBuilder::new(0);
    batch.push(0, Some(b"k"), Some(b"attack"), &[]);
    let frame = |request| {
        // Without the length prefix: the attacker frames it.
        codec::encode_request(&RequestFrame {
            version: PROTOCOL_VERSION,
            correlation_id: 1,
            client_id: Some("attacker".into()),
            request,
        })[4..]
            .to_vec()
    };
    vec![
        frame(Request::Metadata {
            topics: Some(vec!["attack".into()]),
            auto_create: false,
            include_internal: false,
        }),
        frame(Request::Produce(ProduceRequest {
            acks: Acks::Durable,
            timeout_ms: 1000,
            topics: vec![ProduceTopic {
                name: "attack".into(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    records: batch.finish(),
                }],
            }],
        })),
    ]
}

/// One hostile frame: a seed mutated (flips, lying 32/16-bit lengths and
/// varints, truncation, splices) or plain garbage, framed with a length
/// that is usually true and sometimes a lie.
fn hostile_frame(rng: &mut Rng, seeds: &[Vec<u8>], kafka: bool) -> Vec<u8> {
    let mut body = if rng.below(8) == 0 {
        (0..rng.below(300)).map(|_| rng.next() as u8).collect()
    } else {
        seeds[rng.below(seeds.len())].clone()
    };
    for _ in 0..1 + rng.below(4) {
        if body.is_empty() {
            break;
        }
        let at = rng.below(body.len());
        match rng.below(6) {
            0 => body[at] ^= 1 << rng.below(8),
            1 => {
                let lie: i32 =
                    [-2, -1, i32::MAX, 1 << 30, 1_000_000, body.len() as i32][rng.below(6)];
                let end = (at + 4).min(body.len());
                body.splice(at..end, lie.to_be_bytes());
            }
            2 => {
                let end = (at + 2).min(body.len());
                body.splice(at..end, [0x7f, 0xff]);
            }
            3 => {
                let end = (at + 5).min(body.len());
                body.splice(at..end, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
            4 => body.truncate(at),
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                body.truncate(at);
                body.extend_from_slice(&other[from..]);
            }
        }
    }
    let len = if rng.below(10) == 0 {
        [0u32, u32::MAX, 1 << 31, 100 << 20][rng.below(4)]
    } else {
        body.len() as u32
    };
    let mut f = prefix(kafka, len).to_vec();
    f.extend_from_slice(&body);
    f
}

/// Fires hostile frames at `addr` until `stop`, reconnecting whenever the
/// broker hangs up; counts the frames sent.
fn attack(addr: SocketAddr, kafka: bool, seed: u64, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) {
    let mut rng = Rng(seed);
    let seeds = if kafka { kafka_seeds() } else { native_seeds() };
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        s.set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let f = hostile_frame(&mut rng, &seeds, kafka);
            if s.write_all(&f).is_err() {
                break;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            // Drain answers so the broker never waits on us.
            let mut sink = [0u8; 4096];
            let _ = s.read(&mut sink);
        }
    }
}

#[test]
fn a_flood_of_mutated_frames_and_garbage_on_both_listeners_harms_no_good_client_and_loses_nothing()
{
    let dir = common::data_dir();
    let mut t = start(dir.path(), "2", &["--fsync", "always"]);
    create_topic(&t.b, "goodk", "1");
    create_topic(&t.b, "goodn", "1");
    create_topic(&t.b, "attack", "2");
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let attackers: Vec<_> = [
        (t.kafka, true),
        (t.kafka, true),
        (t.b.addr, false),
        (t.b.addr, false),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (addr, kafka))| {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || attack(addr, kafka, 0x5eed + i as u64, stop, sent))
    })
    .collect();
    // The good clients, on their own connections, while the flood runs.
    let started = Instant::now();
    let mut kafka_sent = Vec::new();
    let mut native_sent = Vec::new();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(8) || sent.load(Ordering::Relaxed) < 3000 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the attack sent only {} frames in 40 s",
            sent.load(Ordering::Relaxed)
        );
        kafka_sent.extend(kafka_produce(t.kafka, "goodk", 5, &format!("k{round}")));
        let lines: Vec<String> = (0..50).map(|i| format!("n{round:04}-{i:03}")).collect();
        native_produce(&t.b, "goodn", &lines);
        native_sent.extend(lines);
        round += 1;
        assert!(
            t.b.child.as_mut().unwrap().try_wait().unwrap().is_none(),
            "the broker died; log:\n{}",
            t.b.log()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    let frames = sent.load(Ordering::Relaxed);
    assert!(frames >= 3000, "{frames}");
    // The refusals were counted per listener.
    let s = scrape(&t.http);
    for listener in ["kafka", "native"] {
        let refused = total(
            &s,
            "shardlog_connections_closed_total",
            &[("listener", listener), ("reason", "bad_request")],
        ) + total(
            &s,
            "shardlog_connections_closed_total",
            &[("listener", listener), ("reason", "frame_too_large")],
        );
        assert!(refused > 0.0, "no {listener} connection refused");
    }
    // Every acknowledged message is there, in order.
    assert_eq!(kafka_fetch_all(t.kafka, "goodk"), kafka_sent);
    assert_eq!(native_consume(&t.b, "goodn"), native_sent);
    // A clean stop, and a restart that finds nothing to cut.
    let status = t.b.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "SIGTERM exit {status}; log:\n{}",
        t.b.log()
    );
    let addr = t.b.addr;
    let k = t.kafka.to_string();
    let mut b = Broker::start_on(
        dir.path(),
        addr,
        &[
            "--shards",
            "2",
            "--kafka-listen",
            &k,
            "--kafka-port-base",
            "0",
        ],
    );
    b.wait_kafka(t.kafka);
    assert_eq!(kafka_fetch_all(t.kafka, "goodk"), kafka_sent);
    assert_eq!(native_consume(&b, "goodn"), native_sent);
    let log = b.log();
    assert!(
        !log.contains("torn or corrupt tail"),
        "the restart cut a log:\n{log}"
    );
}

/// A Kafka Produce frame (length prefix included) of `values`, one batch,
/// to partition 0 of `topic`, correlation id 1.
fn produce_frame(topic: &str, values: &[Vec<u8>]) -> Vec<u8> {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for v in values {
        b.push(1_700_000_000_000, None, Some(v), &[]);
    }
    let records = b.finish();
    let body = kafka_seed(ApiKey::Produce, 8, &|out| {
        produce_request(topic, 0, -1, records.clone())
            .encode(out, 8)
            .unwrap()
    });
    let mut frame = prefix(true, body.len() as u32).to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// `n` values of 64 KiB each that no codec could shrink.
fn bulky_values(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| (0..8192).flat_map(|_| rng.next().to_le_bytes()).collect())
        .collect()
}

/// Polls /metrics until `metric` (summed) passes `ok`, or panics.
fn wait_metric(t: &Target, metric: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = total(&scrape(&t.http), metric, &[]);
        if ok(v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{metric} stuck at {v}; log:\n{}",
            t.b.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn at_its_read_budget_a_shard_stops_reading_and_resumes_once_the_frame_past_it_is_handed_on() {
    let dir = common::data_dir();
    const BUDGET: usize = 1 << 20;
    let budget = BUDGET.to_string();
    let t = start(
        dir.path(),
        "1",
        &["--queued-max-request-bytes", &budget, "--fsync", "never"],
    );
    create_topic(&t.b, "big", "1");
    let mut rng = Rng(0xb0d9e7);
    let first = bulky_values(&mut rng, 48); // 3 MiB: three budgets
    let second = bulky_values(&mut rng, 8); // 512 KiB
    let frame_a = produce_frame("big", &first);
    let frame_b = produce_frame("big", &second);

    // A sends two of its three MiB and waits: it reads past the limit as
    // the shard's one "finisher".
    let mut a = Kafka::connect(t.kafka);
    a.s.set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    a.s.write_all(&frame_a[..2 << 20]).unwrap();
    wait_metric(&t, "shardlog_read_budget_bytes", |v| v > BUDGET as f64);

    // B's whole frame: the shard must not read it while A holds the budget.
    let mut b = Kafka::connect(t.kafka);
    let mut b_writer = b.s.try_clone().unwrap();
    b_writer
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let b_sent = std::thread::spawn(move || b_writer.write_all(&frame_b).is_ok());
    wait_metric(&t, "shardlog_read_budget_waits_total", |v| v >= 1.0);
    let held = total(&scrape(&t.http), "shardlog_read_budget_bytes", &[]);
    assert!(
        held <= (BUDGET + frame_a.len()) as f64,
        "{held} bytes held: over the budget plus one frame"
    );
    b.s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = b.s.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "B was answered (or closed) while the budget was full: {early:?}"
    );
    b.s.set_read_timeout(Some(common::kafka::READ_DEADLINE))
        .unwrap();
    // A small request fits in a connection's free allowance: still served.
    assert!(kafka_fetch_all(t.kafka, "big").is_empty());

    // A finishes: its frame is handed on, the budget frees, B is read.
    a.s.write_all(&frame_a[2 << 20..]).unwrap();
    let ra: ProduceResponse = a.recv(ApiKey::Produce, 8, 1);
    assert_eq!(ra.responses[0].partition_responses[0].error_code, 0);
    let rb: ProduceResponse = b.recv(ApiKey::Produce, 8, 1);
    assert_eq!(rb.responses[0].partition_responses[0].error_code, 0);
    assert!(b_sent.join().unwrap());
    assert_eq!(
        rb.responses[0].partition_responses[0].base_offset,
        first.len() as i64,
        "B's batch follows A's"
    );
    let mut all = first;
    all.extend(second);
    assert_eq!(kafka_fetch_all(t.kafka, "big"), all);
    drop((a, b));
    wait_metric(&t, "shardlog_read_budget_bytes", |v| v == 0.0);
}

#[test]
fn connections_idle_past_connections_max_idle_ms_are_closed_on_both_listeners_but_busy_ones_stay() {
    let dir = common::data_dir();
    const IDLE: Duration = Duration::from_millis(1500);
    let idle_ms = IDLE.as_millis().to_string();
    let t = start(dir.path(), "2", &["--connections-max-idle-ms", &idle_ms]);
    create_topic(&t.b, "quiet", "1");

    // One Kafka connection answered once, one native connection that never
    // says a word: each waits for the broker to hang up.
    let mut idle_kafka = Kafka::connect(t.kafka);
    let _: ApiVersionsResponse =
        idle_kafka.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    let kafka_closed = std::thread::spawn(move || {
        let quiet_since = Instant::now();
        assert!(idle_kafka.read_frame().is_none(), "an unasked-for frame");
        quiet_since.elapsed()
    });
    let mut idle_native = TcpStream::connect_timeout(&t.b.addr, Duration::from_secs(5)).unwrap();
    idle_native
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let native_closed = std::thread::spawn(move || {
        let quiet_since = Instant::now();
        let mut b = [0u8; 16];
        match idle_native.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the idle native connection: {other:?}"),
        }
        quiet_since.elapsed()
    });

    // Busy for twice the bound: one asks every 300 ms, one waits on a
    // fetch longer than the bound (in flight is not idle).
    let mut chatty = Kafka::connect(t.kafka);
    let mut waiting = Kafka::connect(t.kafka);
    let mut long = fetch_request("quiet", 0, 0, 0);
    long.max_wait_ms = 2 * IDLE.as_millis() as i32;
    let cid = waiting.send(ApiKey::Fetch, 11, &long);
    let busy = Instant::now();
    while busy.elapsed() < 2 * IDLE {
        let _: ApiVersionsResponse =
            chatty.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        std::thread::sleep(Duration::from_millis(300));
    }
    let fetched: FetchResponse = waiting.recv(ApiKey::Fetch, 11, cid);
    assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
    let _: ApiVersionsResponse =
        chatty.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());

    // The idle ones were closed at the bound, not before it (less the
    // answer's trip to the client).
    for (listener, closed) in [("kafka", kafka_closed), ("native", native_closed)] {
        let after = closed.join().unwrap();
        assert!(
            after + Duration::from_millis(100) >= IDLE,
            "{listener}: closed after {after:?}, before the {IDLE:?} bound"
        );
        // Counted as the connection's task ends, maybe just after the
        // client saw the close.
        let counted = || {
            total(
                &scrape(&t.http),
                "shardlog_connections_closed_total",
                &[("listener", listener), ("reason", "idle")],
            )
        };
        let since = Instant::now();
        while counted() < 1.0 && since.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(counted() >= 1.0, "{listener}: no idle close counted");
    }
    let log = common::plain(&t.b.log());
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains("idle")),
        "an idle close is routine, not a warning:\n{log}"
    );
}

#[test]
fn a_kafka_request_other_than_produce_over_max_control_request_bytes_closes_its_connection() {
    let dir = common::data_dir();
    let t = start(
        dir.path(),
        "1",
        &[
            "--max-control-request-bytes",
            "65536",
            "--fsync",
            "never",
            "--auto-create-topics-enable",
            "false",
        ],
    );
    create_topic(&t.b, "ctl", "1");
    let metadata = |topics: usize| {
        let mut md = MetadataRequest::default();
        md.topics = Some(
            (0..topics)
                .map(|i| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(name(&format!("t{i:07}")));
                    t
                })
                .collect(),
        );
        md
    };
    // ~40 KiB: under the limit, answered (every topic unknown).
    let mut k = Kafka::connect(t.kafka);
    let under: kafka_protocol::messages::MetadataResponse =
        k.call(ApiKey::Metadata, 9, &metadata(4000));
    assert_eq!(under.topics.len(), 4000);
    // ~100 KiB: over it, the connection is closed.
    k.send(ApiKey::Metadata, 9, &metadata(10_000));
    assert!(k.read_frame().is_none(), "answered over the limit");
    // The close is counted as the connection's task ends, which may be
    // just after the client saw the socket close.
    let closed = || {
        total(
            &scrape(&t.http),
            "shardlog_connections_closed_total",
            &[("listener", "kafka"), ("reason", "bad_request")],
        )
    };
    let since = Instant::now();
    while closed() < 1.0 && since.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(closed(), 1.0);
    // A Produce may use the whole frame limit: 1 MiB of records.
    let values = bulky_values(&mut Rng(7), 16);
    let mut p = Kafka::connect(t.kafka);
    p.s.write_all(&produce_frame("ctl", &values)).unwrap();
    let r: ProduceResponse = p.recv(ApiKey::Produce, 8, 1);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(kafka_fetch_all(t.kafka, "ctl"), values);
}
