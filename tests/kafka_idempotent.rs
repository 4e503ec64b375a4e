//! Idempotent produce over the Kafka listener, with the `kafka-protocol`
//! crate as the client: InitProducerId, retries acknowledged with their
//! original offsets and written once (also when forwarded to the owner
//! shard, and after a kill -9 and restart), sequence gaps and stale epochs
//! refused with nothing written; transactional ids at their coordinator,
//! and transaction version 2's implicit adds and epoch bumps.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::kafka::*;
use common::*;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ApiVersionsRequest,
    ApiVersionsResponse, EndTxnRequest, EndTxnResponse, FetchResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProduceResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use shardlog::batch::BatchBuilder;
use shardlog::client::Client;

const T: Duration = Duration::from_secs(60);
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

/// What these tests ask of a Kafka connection beyond `call`.
trait Idempotent {
    fn init_producer_id(&mut self, version: i16, txn: Option<&str>) -> InitProducerIdResponse;
    fn produce(&mut self, topic: &str, partition: i32, batch: &Bytes) -> (i16, i64);
    fn read_all(&mut self, topic: &str, partition: i32) -> Vec<(i64, Vec<u8>)>;
}

impl Idempotent for Kafka {
    fn init_producer_id(&mut self, version: i16, txn: Option<&str>) -> InitProducerIdResponse {
        let mut r = InitProducerIdRequest::default();
        r.transactional_id = txn.map(|t| TransactionalId(StrBytes::from_string(t.to_owned())));
        r.transaction_timeout_ms = 60_000;
        r.producer_id = ProducerId(-1);
        r.producer_epoch = -1;
        self.call(ApiKey::InitProducerId, version, &r)
    }

    /// Produces one batch with acks=-1: (error code, base offset).
    fn produce(&mut self, topic: &str, partition: i32, batch: &Bytes) -> (i16, i64) {
        let r = produce_request(topic, partition, -1, batch.clone());
        let resp: ProduceResponse = self.call(ApiKey::Produce, 8, &r);
        let p = &resp.responses[0].partition_responses[0];
        (p.error_code, p.base_offset)
    }

    /// Every value of the partition from offset 0, with its offset (fetches
    /// until one returns nothing: a fetch may stop at a segment's end).
    fn read_all(&mut self, topic: &str, partition: i32) -> Vec<(i64, Vec<u8>)> {
        let mut out: Vec<(i64, Vec<u8>)> = Vec::new();
        loop {
            let from = out.last().map_or(0, |(o, _)| o + 1);
            let mut r = fetch_request(topic, partition, from, 0);
            r.topics[0].partitions[0].partition_max_bytes = 4 << 20;
            let resp: FetchResponse = self.call(ApiKey::Fetch, 11, &r);
            let pd = &resp.responses[0].partitions[0];
            assert_eq!(pd.error_code, 0);
            let mut buf = pd.records.clone().unwrap_or_default();
            let before = out.len();
            for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
                for r in set.records {
                    if r.offset >= from {
                        out.push((r.offset, r.value.unwrap().to_vec()));
                    }
                }
            }
            if out.len() == before {
                return out;
            }
        }
    }
}

fn batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(1_000).idempotent(pid, epoch, seq);
    for v in values {
        b.push(1_000, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

fn start(dir: &std::path::Path, addr: SocketAddr, kafka: SocketAddr, shards: &str) -> Broker {
    let k = kafka.to_string();
    let b = Broker::start_on(
        dir,
        addr,
        &[
            "--kafka-listen",
            &k,
            "--kafka-port-base",
            "0",
            "--shards",
            shards,
        ],
    );
    let t0 = Instant::now();
    while TcpStream::connect_timeout(&kafka, Duration::from_millis(200)).is_err() {
        assert!(t0.elapsed() < T, "kafka listener {kafka} not up");
        std::thread::sleep(Duration::from_millis(20));
    }
    b
}

fn addrs() -> (SocketAddr, SocketAddr) {
    let a = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let k = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    (a, k)
}

fn values(log: &[(i64, Vec<u8>)]) -> Vec<(i64, String)> {
    log.iter()
        .map(|(o, v)| (*o, String::from_utf8(v.clone()).unwrap()))
        .collect()
}

#[test]
fn retried_batches_get_their_original_offsets_and_are_written_once_on_every_shard() {
    let dir = data_dir();
    let (addr, kafka) = addrs();
    // Two shards, per-shard Kafka ports off: one of the two partitions is
    // owned by a shard the connection is not on, so its produces are
    // forwarded and checked on the owner.
    let _b = start(dir.path(), addr, kafka, "2");
    Client::connect(&addr.to_string())
        .unwrap()
        .create_topic("idem", 2)
        .unwrap();
    let mut k = Kafka::connect(kafka);
    let init = k.init_producer_id(4, None);
    assert_eq!((init.error_code, init.producer_epoch), (0, 0));
    let pid = init.producer_id.0;
    assert!(pid >= 0);
    let other = k.init_producer_id(0, None);
    assert_eq!(other.error_code, 0);
    assert_ne!(other.producer_id.0, pid, "producer ids do not repeat");

    for partition in 0..2 {
        let first = batch(pid, 0, 0, &["a", "b", "c"]);
        let second = batch(pid, 0, 3, &["d", "e"]);
        assert_eq!(k.produce("idem", partition, &first), (0, 0));
        assert_eq!(k.produce("idem", partition, &second), (0, 3));
        // Retries: acknowledged (no error) with the original offsets.
        assert_eq!(k.produce("idem", partition, &first), (0, 0));
        assert_eq!(k.produce("idem", partition, &second), (0, 3));
        // A gap: refused, nothing written.
        let gap = batch(pid, 0, 9, &["gap"]);
        assert_eq!(
            k.produce("idem", partition, &gap).0,
            OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        // A newer epoch must start at 0; then the old epoch is fenced.
        assert_eq!(
            k.produce("idem", partition, &batch(pid, 1, 5, &["x"])).0,
            OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        assert_eq!(
            k.produce("idem", partition, &batch(pid, 1, 0, &["f"])),
            (0, 5)
        );
        assert_eq!(
            k.produce("idem", partition, &batch(pid, 0, 5, &["stale"]))
                .0,
            INVALID_PRODUCER_EPOCH
        );
        let want: Vec<(i64, String)> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v.to_string()))
            .collect();
        assert_eq!(values(&k.read_all("idem", partition)), want, "p{partition}");
    }
}

/// InitProducerId with a transactional id goes to its coordinator: the
/// same producer id each time with the epoch bumped (fencing the previous
/// holder), durable across a kill -9; a timeout past Kafka's 15-minute
/// maximum is INVALID_TRANSACTION_TIMEOUT.
#[test]
fn transactional_ids_keep_their_producer_id_and_bump_the_epoch() {
    let dir = data_dir();
    let (addr, kafka) = addrs();
    let mut b = start(dir.path(), addr, kafka, "2");
    let mut k = Kafka::connect(kafka);
    let first = k.init_producer_id(3, Some("tx-1"));
    assert_eq!((first.error_code, first.producer_epoch), (0, 0));
    let pid = first.producer_id.0;
    assert!(pid > 0);
    for (v, epoch) in [(0, 1), (3, 2), (5, 3)] {
        let r = k.init_producer_id(v, Some("tx-1"));
        assert_eq!(
            (r.error_code, r.producer_id.0, r.producer_epoch),
            (0, pid, epoch),
            "v{v}"
        );
    }
    let other = k.init_producer_id(5, Some("tx-2"));
    assert_eq!(other.error_code, 0);
    assert_ne!(other.producer_id.0, pid, "another id, another producer");
    let mut long = InitProducerIdRequest::default();
    long.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx-3")));
    long.transaction_timeout_ms = 900_001;
    long.producer_id = ProducerId(-1);
    long.producer_epoch = -1;
    let r: InitProducerIdResponse = k.call(ApiKey::InitProducerId, 4, &long);
    assert_eq!(r.error_code, 50, "INVALID_TRANSACTION_TIMEOUT");
    drop(k);
    b.kill();
    let b = start(dir.path(), addr, kafka, "2");
    let mut k = Kafka::connect(kafka);
    let r = k.init_producer_id(5, Some("tx-1"));
    assert_eq!(
        (r.error_code, r.producer_id.0, r.producer_epoch),
        (0, pid, 4),
        "the coordinator's log outlived the kill"
    );

    // AddPartitionsToTxn with a partition that does not exist: nothing is
    // added (the others get OPERATION_NOT_ATTEMPTED); then the two that do.
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("tx-topic", 2)
        .unwrap();
    let add = |k: &mut Kafka, topics: &[(&str, &[i32])]| -> Vec<(String, i32, i16)> {
        let mut r = AddPartitionsToTxnRequest::default();
        r.v3_and_below_transactional_id = TransactionalId(StrBytes::from_static_str("tx-1"));
        r.v3_and_below_producer_id = ProducerId(pid);
        r.v3_and_below_producer_epoch = 4;
        r.v3_and_below_topics = topics
            .iter()
            .map(|(t, ps)| {
                let mut topic = AddPartitionsToTxnTopic::default();
                topic.name = TopicName(StrBytes::from_string(t.to_string()));
                topic.partitions = ps.to_vec();
                topic
            })
            .collect();
        let resp: AddPartitionsToTxnResponse = k.call(ApiKey::AddPartitionsToTxn, 3, &r);
        let mut out: Vec<(String, i32, i16)> = resp
            .results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition.iter().map(|p| {
                    (
                        t.name.0.to_string(),
                        p.partition_index,
                        p.partition_error_code,
                    )
                })
            })
            .collect();
        out.sort();
        out
    };
    assert_eq!(
        add(&mut k, &[("tx-topic", &[0, 1]), ("no-such-topic", &[0])]),
        vec![
            ("no-such-topic".into(), 0, 3), // UNKNOWN_TOPIC_OR_PARTITION
            ("tx-topic".into(), 0, 55),     // OPERATION_NOT_ATTEMPTED
            ("tx-topic".into(), 1, 55),
        ]
    );
    assert_eq!(
        add(&mut k, &[("tx-topic", &[0, 1])]),
        vec![("tx-topic".into(), 0, 0), ("tx-topic".into(), 1, 0)]
    );

    // The operator's view: `shardlog txn list|describe`.
    struct Ran {
        ok: bool,
        stdout: String,
        stderr: String,
    }
    let cli = |args: &[&str]| {
        let mut a = args.to_vec();
        let broker = b.broker_arg();
        a.extend(["--broker", &broker]);
        let out = run(&a, b"", T);
        Ran {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: out.stderr.to_string(),
        }
    };
    let out = cli(&["txn", "list"]);
    assert!(out.ok, "{}", out.stderr);
    let rows: Vec<Vec<String>> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["tx-1".to_string(), pid.to_string(), "Ongoing".into()],
            vec![
                "tx-2".to_string(),
                other.producer_id.0.to_string(),
                "Empty".into()
            ],
        ],
        "{}",
        out.stdout
    );
    let out = cli(&["txn", "list", "--state", "Empty", "--json"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("\"tx-2\"") && !out.stdout.contains("\"tx-1\""),
        "{}",
        out.stdout
    );
    let out = cli(&["txn", "describe", "tx-1"]);
    assert!(out.ok, "{}", out.stderr);
    for want in [
        "state\tOngoing".to_string(),
        format!("producer_id\t{pid}"),
        "producer_epoch\t4".into(),
        "timeout_ms\t60000".into(),
        "partitions\ttx-topic-0,tx-topic-1".into(),
    ] {
        assert!(
            out.stdout.lines().any(|l| l == want),
            "{want:?} in:\n{}",
            out.stdout
        );
    }
    let out = cli(&["txn", "describe", "tx-nobody"]);
    assert!(!out.ok);
    assert!(
        out.stderr.to_lowercase().contains("transactional"),
        "{}",
        out.stderr
    );
    let out = cli(&["txn", "list", "--state", "Sleeping"]);
    assert!(!out.ok);
    assert!(out.stderr.contains("Sleeping"), "{}", out.stderr);

    // The next transaction's first AddPartitionsToTxn, sent right after
    // EndTxn while the markers are still being written, waits for them
    // instead of being refused with CONCURRENT_TRANSACTIONS (which costs
    // the client a retry backoff).
    for round in 0..5 {
        let mut end = EndTxnRequest::default();
        end.transactional_id = TransactionalId(StrBytes::from_static_str("tx-1"));
        end.producer_id = ProducerId(pid);
        end.producer_epoch = 4;
        end.committed = round % 2 == 0;
        let r: EndTxnResponse = k.call(ApiKey::EndTxn, 3, &end);
        assert_eq!(r.error_code, 0, "round {round}");
        assert_eq!(
            add(&mut k, &[("tx-topic", &[0, 1])]),
            vec![("tx-topic".into(), 0, 0), ("tx-topic".into(), 1, 0)],
            "round {round}"
        );
    }
}

/// Transaction version 2 (KIP-890 part 2), as Kafka 4 clients speak it
/// when ApiVersions finalizes it: Produce v12 adds its partitions to the
/// transaction itself (no AddPartitionsToTxn), EndTxn v5 bumps the epoch
/// and names it, so a late batch of the ended transaction is fenced
/// instead of opening a hanging one; a retried EndTxn is recognised; the
/// read_committed view is exactly the committed transactions.
#[test]
fn transaction_version_2_adds_on_produce_and_fences_what_an_end_left_behind() {
    let dir = data_dir();
    let (addr, kafka) = addrs();
    let b = start(dir.path(), addr, kafka, "2");
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("tv2", 2)
        .unwrap();
    let mut k = Kafka::connect(kafka);
    let versions: ApiVersionsResponse =
        k.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert!(
        versions
            .finalized_features
            .iter()
            .any(|f| f.name.as_str() == "transaction.version" && f.max_version_level == 2),
        "{:?}",
        versions.finalized_features
    );
    let init = k.init_producer_id(5, Some("tv2-app"));
    assert_eq!(init.error_code, 0);
    let pid = init.producer_id.0;
    let txn_batch = |epoch: i16, seq: i32, value: &str| {
        let mut b = BatchBuilder::new(1_000)
            .idempotent(pid, epoch, seq)
            .transactional();
        b.push(1_000, None, Some(value.as_bytes()), &[]);
        b.finish()
    };
    let produce = |k: &mut Kafka, partition: i32, batch: Bytes| -> i16 {
        let mut r = produce_request("tv2", partition, -1, batch);
        r.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tv2-app")));
        let resp: ProduceResponse = k.call(ApiKey::Produce, 12, &r);
        resp.responses[0].partition_responses[0].error_code
    };
    let end = |k: &mut Kafka, epoch: i16, commit: bool| -> (i16, i64, i16) {
        let mut e = EndTxnRequest::default();
        e.transactional_id = TransactionalId(StrBytes::from_static_str("tv2-app"));
        e.producer_id = ProducerId(pid);
        e.producer_epoch = epoch;
        e.committed = commit;
        let r: EndTxnResponse = k.call(ApiKey::EndTxn, 5, &e);
        (r.error_code, r.producer_id.0, r.producer_epoch)
    };
    // A request naming a partition that does not exist: that one is
    // UNKNOWN_TOPIC_OR_PARTITION, the other goes into the transaction
    // (the implicit add leaves the missing one out instead of failing all).
    {
        let mut r = produce_request("tv2", 7, -1, txn_batch(0, 0, "nowhere"));
        r.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tv2-app")));
        let mut other = r.topic_data[0].partition_data[0].clone();
        other.index = 1;
        other.records = Some(txn_batch(0, 0, "c1"));
        r.topic_data[0].partition_data.push(other);
        let resp: ProduceResponse = k.call(ApiKey::Produce, 12, &r);
        let mut codes: Vec<(i32, i16)> = resp.responses[0]
            .partition_responses
            .iter()
            .map(|p| (p.index, p.error_code))
            .collect();
        codes.sort();
        assert_eq!(codes, [(1, 0), (7, 3)]);
    }
    // The first transaction, on both partitions (one of each shard's),
    // without AddPartitionsToTxn.
    assert_eq!(produce(&mut k, 0, txn_batch(0, 0, "c0")), 0);
    assert_eq!(produce(&mut k, 0, txn_batch(0, 1, "c2")), 0);
    assert_eq!(
        end(&mut k, 0, true),
        (0, pid, 1),
        "commit: go on at epoch 1"
    );
    // A late batch of the committed transaction, from this connection and
    // from a fresh one: fenced by the markers' epoch, nothing written.
    assert_eq!(
        produce(&mut k, 0, txn_batch(0, 2, "late")),
        INVALID_PRODUCER_EPOCH
    );
    let mut k2 = Kafka::connect(kafka);
    assert_eq!(
        produce(&mut k2, 1, txn_batch(0, 1, "late")),
        INVALID_PRODUCER_EPOCH
    );
    // The next transaction at epoch 1 starts at sequence 0, and aborts.
    assert_eq!(produce(&mut k, 0, txn_batch(1, 0, "a0")), 0);
    assert_eq!(end(&mut k, 1, false), (0, pid, 2));
    assert_eq!(end(&mut k, 1, false), (0, pid, 2), "a retry of the abort");
    assert_eq!(end(&mut k, 0, false).0, 90, "PRODUCER_FENCED");
    // An abort with nothing added: success, one more epoch.
    assert_eq!(end(&mut k, 2, false), (0, pid, 3));
    let committed = |k: &mut Kafka, partition: i32| -> (Vec<String>, usize) {
        let mut r = fetch_request("tv2", partition, 0, 0);
        r.isolation_level = 1;
        let resp: FetchResponse = k.call(ApiKey::Fetch, 11, &r);
        let pd = &resp.responses[0].partitions[0];
        assert_eq!(pd.error_code, 0);
        let aborted: Vec<i64> = pd
            .aborted_transactions
            .iter()
            .flatten()
            .map(|a| a.first_offset)
            .collect();
        let mut buf = pd.records.clone().unwrap_or_default();
        let mut out = Vec::new();
        for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
            for r in set.records {
                let in_aborted = aborted.contains(&r.offset);
                if !r.control && !in_aborted {
                    out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
                }
            }
        }
        (out, aborted.len())
    };
    assert_eq!(committed(&mut k, 0), (vec!["c0".into(), "c2".into()], 1));
    assert_eq!(committed(&mut k, 1), (vec!["c1".into()], 0));
}

#[test]
fn retry_after_kill_9_and_restart_is_still_a_duplicate() {
    let dir = data_dir();
    let (addr, kafka) = addrs();
    let mut b = start(dir.path(), addr, kafka, "1");
    Client::connect(&addr.to_string())
        .unwrap()
        .create_topic("crash", 1)
        .unwrap();
    let mut k = Kafka::connect(kafka);
    let pid = k.init_producer_id(4, None).producer_id.0;
    let batches: Vec<Bytes> = (0..4)
        .map(|i| {
            batch(
                pid,
                0,
                i * 2,
                &[&format!("m{}", i * 2), &format!("m{}", i * 2 + 1)],
            )
        })
        .collect();
    for (i, b) in batches.iter().enumerate() {
        assert_eq!(k.produce("crash", 0, b), (0, i as i64 * 2));
    }
    drop(k);
    // acks=-1 under --fsync always: acknowledged means on disk.
    b.kill();
    let _b = start(dir.path(), addr, kafka, "1");
    let mut k = Kafka::connect(kafka);
    // The client never saw the last ack (say) and retries it.
    assert_eq!(k.produce("crash", 0, &batches[3]), (0, 6));
    assert_eq!(k.produce("crash", 0, &batches[2]), (0, 4));
    // The next batch continues the sequence; a gap is still a gap.
    assert_eq!(
        k.produce("crash", 0, &batch(pid, 0, 9, &["gap"])).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(k.produce("crash", 0, &batch(pid, 0, 8, &["m8"])), (0, 8));
    let got = values(&k.read_all("crash", 0));
    let want: Vec<(i64, String)> = (0..9).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(got, want, "each message once");
}
