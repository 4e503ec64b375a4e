//! The Kafka listener through the real binary, with the `kafka-protocol`
//! crate as the client over a plain TcpStream: ApiVersions, Metadata (one
//! broker per shard, leaders = owner shards), Produce (acks -1/0), Fetch
//! (long polling), ListOffsets, CreateTopics/DeleteTopics, and bad input
//! closing only its connection.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::kafka::*;
use common::*;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceResponse, RequestHeader,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use shardlog::batch::BatchBuilder;
use shardlog::client::Client;

const T: Duration = Duration::from_secs(60);

/// A 2-shard broker's Kafka addresses with per-shard Kafka ports on (shard i
/// is Kafka node i at `base + i`), so it can be restarted on the same ones.
struct ShardPorts {
    kafka: SocketAddr,
    base: u16,
    /// `--http-listen`, when asked for (metrics).
    http: Option<String>,
    args: Vec<String>,
}

impl ShardPorts {
    fn new(http: bool) -> ShardPorts {
        let kafka: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let base = two_free_ports();
        let http = http.then(|| format!("127.0.0.1:{}", free_port()));
        let mut args: Vec<String> = [
            "--kafka-listen",
            &kafka.to_string(),
            "--kafka-port-base",
            &base.to_string(),
            "--shards",
            "2",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        if let Some(h) = &http {
            args.extend(["--http-listen".to_owned(), h.clone()]);
        }
        ShardPorts {
            kafka,
            base,
            http,
            args,
        }
    }

    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    /// Starts the broker and waits for its Kafka listener.
    fn start(&self, dir: &std::path::Path) -> Broker {
        let mut b = Broker::start(dir, &self.args());
        b.wait_kafka(self.kafka);
        b
    }

    /// Starts it again on the same addresses (after `kill`).
    fn restart(&self, dir: &std::path::Path, addr: SocketAddr) -> Broker {
        let mut b = Broker::start_on(dir, addr, &self.args());
        b.wait_kafka(self.kafka);
        b
    }
}

/// A broker with the Kafka listener on a free port, per-shard Kafka ports off.
/// A broker with its Kafka listener, topic auto-creation off (these tests
/// ask for topics that must stay unknown).
fn broker(dir: &std::path::Path, shards: &str) -> (Broker, SocketAddr) {
    broker_with(dir, shards, &["--auto-create-topics-enable", "false"])
}

fn broker_with(dir: &std::path::Path, shards: &str, extra: &[&str]) -> (Broker, SocketAddr) {
    let kafka: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let k = kafka.to_string();
    let mut args = vec![
        "--kafka-listen",
        &k,
        "--kafka-port-base",
        "0",
        "--shards",
        shards,
    ];
    args.extend_from_slice(extra);
    let mut b = Broker::start(dir, &args);
    b.wait_kafka(kafka);
    (b, kafka)
}

fn api_versions(k: &mut Kafka, version: i16) -> ApiVersionsResponse {
    let mut req = ApiVersionsRequest::default();
    if version >= 3 {
        req.client_software_name = StrBytes::from_static_str("shardlog-test");
        req.client_software_version = StrBytes::from_static_str("1");
    }
    k.call(ApiKey::ApiVersions, version, &req)
}

fn metadata(k: &mut Kafka, version: i16, topics: Option<&[&str]>) -> MetadataResponse {
    let mut req = MetadataRequest::default();
    req.topics = topics.map(|ts| {
        ts.iter()
            .map(|t| {
                let mut m = MetadataRequestTopic::default();
                m.name = Some(name(t));
                m
            })
            .collect()
    });
    k.call(ApiKey::Metadata, version, &req)
}

fn list_offset(k: &mut Kafka, version: i16, topic: &str, partition: i32, ts: i64) -> (i16, i64) {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = partition;
    p.timestamp = ts;
    let mut t = ListOffsetsTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.topics = vec![t];
    let r: ListOffsetsResponse = k.call(ApiKey::ListOffsets, version, &req);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset)
}

fn batch_of(base_ts: i64, values: &[&[u8]]) -> Bytes {
    let mut b = BatchBuilder::new(base_ts);
    for (i, v) in values.iter().enumerate() {
        b.push(base_ts + i as i64, None, Some(v), &[]);
    }
    b.finish()
}

fn values_of(records: &Bytes) -> Vec<Vec<u8>> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
        for r in set.records {
            out.push(r.value.unwrap().to_vec());
        }
    }
    out
}

#[test]
fn api_versions_lists_exactly_the_implemented_apis() {
    let dir = data_dir();
    let (_b, kafka) = broker(dir.path(), "1");
    let mut k = Kafka::connect(kafka);
    let want = [
        (ApiKey::Produce as i16, 3, 12),
        (ApiKey::Fetch as i16, 4, 17),
        (ApiKey::ListOffsets as i16, 1, 10),
        (ApiKey::DeleteRecords as i16, 0, 2),
        (ApiKey::Metadata as i16, 1, 13),
        (ApiKey::ApiVersions as i16, 0, 3),
        (ApiKey::CreateTopics as i16, 2, 4),
        (ApiKey::CreatePartitions as i16, 0, 3),
        (ApiKey::DescribeCluster as i16, 0, 2),
        (ApiKey::DeleteTopics as i16, 1, 4),
        (ApiKey::OffsetCommit as i16, 2, 8),
        (ApiKey::OffsetFetch as i16, 1, 7),
        (ApiKey::FindCoordinator as i16, 0, 4),
        (ApiKey::JoinGroup as i16, 0, 7),
        (ApiKey::Heartbeat as i16, 0, 4),
        (ApiKey::LeaveGroup as i16, 0, 4),
        (ApiKey::SyncGroup as i16, 0, 5),
        (ApiKey::DescribeGroups as i16, 0, 5),
        (ApiKey::ListGroups as i16, 0, 4),
        (ApiKey::DeleteGroups as i16, 0, 2),
        (ApiKey::OffsetDelete as i16, 0, 0),
        (ApiKey::InitProducerId as i16, 0, 5),
        (ApiKey::DescribeConfigs as i16, 1, 4),
        (ApiKey::AlterConfigs as i16, 0, 2),
        (ApiKey::ConsumerGroupHeartbeat as i16, 0, 1),
        (ApiKey::DescribeLogDirs as i16, 1, 4),
        (ApiKey::ElectLeaders as i16, 0, 2),
        (ApiKey::ListPartitionReassignments as i16, 0, 0),
        (ApiKey::AlterPartitionReassignments as i16, 0, 1),
        (ApiKey::DescribeTopicPartitions as i16, 0, 0),
        (ApiKey::DescribeQuorum as i16, 0, 2),
        (ApiKey::OffsetForLeaderEpoch as i16, 2, 4),
        (ApiKey::AlterReplicaLogDirs as i16, 1, 2),
        (ApiKey::ConsumerGroupDescribe as i16, 0, 1),
        (ApiKey::IncrementalAlterConfigs as i16, 0, 1),
        (ApiKey::DescribeProducers as i16, 0, 0),
        (ApiKey::AddPartitionsToTxn as i16, 0, 3),
        (ApiKey::EndTxn as i16, 0, 5),
        (ApiKey::AddOffsetsToTxn as i16, 0, 4),
        (ApiKey::TxnOffsetCommit as i16, 0, 5),
        (ApiKey::DescribeTransactions as i16, 0, 0),
        (ApiKey::ListTransactions as i16, 0, 1),
        (ApiKey::SaslHandshake as i16, 0, 1),
        (ApiKey::SaslAuthenticate as i16, 0, 2),
        (ApiKey::DescribeUserScramCredentials as i16, 0, 0),
        (ApiKey::AlterUserScramCredentials as i16, 0, 0),
        (ApiKey::DescribeAcls as i16, 1, 3),
        (ApiKey::CreateAcls as i16, 1, 3),
        (ApiKey::DeleteAcls as i16, 1, 3),
        (ApiKey::DescribeClientQuotas as i16, 0, 1),
        (ApiKey::AlterClientQuotas as i16, 0, 1),
    ];
    for version in 0..=3 {
        let r = api_versions(&mut k, version);
        assert_eq!(r.error_code, 0);
        let mut got: Vec<_> = r
            .api_keys
            .iter()
            .map(|a| (a.api_key, a.min_version, a.max_version))
            .collect();
        got.sort();
        let mut w = want.to_vec();
        w.sort();
        assert_eq!(got, w, "v{version}");
        if version >= 3 {
            // KIP-584 features: transaction version 2 finalized (Kafka 4
            // clients speak KIP-890 part 2); no other tagged field.
            let f: Vec<(String, i16, i16)> = r
                .finalized_features
                .iter()
                .map(|f| (f.name.to_string(), f.min_version_level, f.max_version_level))
                .collect();
            assert_eq!(f, vec![("transaction.version".to_string(), 2, 2)]);
            assert_eq!(r.finalized_features_epoch, 1);
            assert!(!r.zk_migration_ready);
        }
    }
    // KIP-511: a version the broker does not know is answered with v0 and
    // UNSUPPORTED_VERSION, listing what it does support.
    // (The body is a v3 one: the crate cannot encode v9.)
    let mut h = RequestHeader::default();
    h.request_api_key = ApiKey::ApiVersions as i16;
    h.request_api_version = 9;
    h.correlation_id = 4242;
    let mut body = BytesMut::new();
    h.encode(&mut body, 2).unwrap();
    ApiVersionsRequest::default().encode(&mut body, 3).unwrap();
    k.send_raw(&body);
    let r: ApiVersionsResponse = k.recv(ApiKey::ApiVersions, 0, 4242);
    assert_eq!(r.error_code, 35);
    assert_eq!(r.api_keys.len(), want.len());
    // The connection stays usable.
    assert_eq!(api_versions(&mut k, 3).error_code, 0);
}

/// The owner shard of each partition of `topic`, by partition.
fn owners(b: &Broker, topic: &str) -> Vec<i32> {
    Client::connect(&b.broker_arg())
        .unwrap()
        .describe_topic(topic)
        .unwrap()
        .partitions
        .iter()
        .map(|p| i32::from(p.owner_shard))
        .collect()
}

#[test]
fn metadata_without_shard_ports_names_one_broker_that_leads_everything() {
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("m", 4)
        .unwrap();
    let o = owners(&b, "m");
    assert!(o.contains(&0) && o.contains(&1), "{o:?}");
    let mut k = Kafka::connect(kafka);
    for version in [1, 4, 7, 9] {
        let r = metadata(&mut k, version, Some(&["m", "nope"]));
        let nodes: Vec<_> = r
            .brokers
            .iter()
            .map(|n| (n.node_id.0, n.host.to_string(), n.port))
            .collect();
        // Clients know brokers by address: one address, one broker (any
        // shard behind it serves any partition, forwarding to the owner).
        let host = kafka.ip().to_string();
        assert_eq!(nodes, vec![(0, host, i32::from(kafka.port()))]);
        assert_eq!(r.topics.len(), 2);
        let m = &r.topics[0];
        assert_eq!(m.name.as_ref().unwrap().0.as_str(), "m");
        assert_eq!(m.error_code, 0);
        let mut leaders: Vec<_> = m
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        leaders.sort();
        assert_eq!(leaders, (0..4).map(|p| (p, 0)).collect::<Vec<_>>());
        // No authorizer: every topic operation is allowed (Kafka's answer
        // without one), from v8.
        if version >= 8 {
            assert_eq!(m.topic_authorized_operations, 3576, "v{version}");
        }
        // Auto-create is off: an unknown topic is UNKNOWN_TOPIC_OR_PARTITION.
        assert_eq!(r.topics[1].error_code, 3, "v{version}");
        assert!(r.topics[1].partitions.is_empty());
    }
    // DescribeCluster: the same broker, the cluster id, every operation.
    for version in 0..=2 {
        let r: kafka_protocol::messages::DescribeClusterResponse = k.call(
            ApiKey::DescribeCluster,
            version,
            &kafka_protocol::messages::DescribeClusterRequest::default(),
        );
        assert_eq!((r.error_code, r.cluster_id.as_str()), (0, "shardlog"));
        let brokers: Vec<_> = r.brokers.iter().map(|b| (b.broker_id.0, b.port)).collect();
        assert_eq!(brokers, vec![(0, i32::from(kafka.port()))]);
        assert_eq!(r.cluster_authorized_operations, 8096);
    }
    let mut controllers = kafka_protocol::messages::DescribeClusterRequest::default();
    controllers.endpoint_type = 2;
    let r: kafka_protocol::messages::DescribeClusterResponse =
        k.call(ApiKey::DescribeCluster, 1, &controllers);
    assert_eq!(r.error_code, 114, "MISMATCHED_ENDPOINT_TYPE");
    // "Every topic" (null) lists the users' topics and, as Kafka does, the
    // internal offsets and transaction topics marked internal (clients skip
    // them themselves).
    let all = metadata(&mut k, 9, None);
    let mut names: Vec<_> = all
        .topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.is_internal))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("__consumer_offsets".to_owned(), true),
            ("__transaction_state".to_owned(), true),
            ("m".to_owned(), false)
        ]
    );
}

#[test]
fn metadata_creates_missing_topics_when_allowed_and_fails_invalid_names_at_once() {
    const INVALID_TOPIC_EXCEPTION: i16 = 17;
    let dir = data_dir();
    let (b, kafka) = broker_with(dir.path(), "2", &["--num-partitions", "3"]);
    // The CLI without --partitions takes num-partitions as well.
    let out = run(
        &["topic", "create", "cli-dflt", "--broker", &b.broker_arg()],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "created topic cli-dflt with 3 partitions\n"
    );
    let mut k = Kafka::connect(kafka);
    let ask = |k: &mut Kafka, version: i16, topic: &str, allow: bool| -> (i16, usize) {
        let mut req = MetadataRequest::default();
        let mut t = MetadataRequestTopic::default();
        t.name = Some(name(topic));
        req.topics = Some(vec![t]);
        if version >= 4 {
            req.allow_auto_topic_creation = allow;
        }
        let r: MetadataResponse = k.call(ApiKey::Metadata, version, &req);
        (r.topics[0].error_code, r.topics[0].partitions.len())
    };
    // Not allowed by the request: still unknown, and not created.
    assert_eq!(ask(&mut k, 9, "auto1", false), (3, 0));
    assert_eq!(ask(&mut k, 9, "auto1", false), (3, 0));
    // Allowed: created with num-partitions, answered at once.
    assert_eq!(ask(&mut k, 9, "auto1", true), (0, 3));
    assert_eq!(ask(&mut k, 9, "auto1", false), (0, 3));
    // Before v4 every Metadata request may create (Kafka's rule).
    assert_eq!(ask(&mut k, 1, "auto2", false), (0, 3));
    // A name no topic can have fails now instead of after a timeout.
    for v in [1, 9] {
        assert_eq!(
            ask(&mut k, v, "bad name!", true),
            (INVALID_TOPIC_EXCEPTION, 0)
        );
        assert_eq!(
            ask(&mut k, v, &"x".repeat(250), true),
            (INVALID_TOPIC_EXCEPTION, 0)
        );
    }
    // CreateTopics without a count (-1) takes num-partitions too.
    assert_eq!(
        create_topics(&mut k, 4, &[("dflt", -1, -1)], &[]),
        vec![("dflt".to_owned(), 0)]
    );
    assert_eq!(ask(&mut k, 9, "dflt", false), (0, 3));
    // Off on the broker: nothing is created whatever the request says.
    let dir2 = data_dir();
    let (_b2, kafka2) = broker(dir2.path(), "1");
    let mut k2 = Kafka::connect(kafka2);
    assert_eq!(ask(&mut k2, 9, "auto3", true), (3, 0));
    assert_eq!(ask(&mut k2, 1, "auto3", true), (3, 0));
}

#[test]
fn produce_acks_all_is_read_back_by_the_cli_and_by_kafka_fetch() {
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("p", 1).unwrap();
    let values: [&[u8]; 3] = [b"first", b"\x00binary\xff\tvalue", b"third one"];
    let batch = batch_of(1_700_000_000_000, &values);
    let mut k = Kafka::connect(kafka);
    let r: ProduceResponse = k.call(
        ApiKey::Produce,
        8,
        &produce_request("p", 0, -1, batch.clone()),
    );
    let pr = &r.responses[0].partition_responses[0];
    assert_eq!((pr.error_code, pr.base_offset), (0, 0));
    // Older clients' version, same path.
    let second = batch_of(1_700_000_001_000, &[b"fourth"]);
    let r: ProduceResponse = k.call(ApiKey::Produce, 3, &produce_request("p", 0, 1, second));
    let pr = &r.responses[0].partition_responses[0];
    assert_eq!((pr.error_code, pr.base_offset), (0, 3));

    // The shardlog CLI reads exactly the values.
    let out = run(
        &[
            "consume",
            "p",
            "--partition",
            "0",
            "--max-messages",
            "4",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let mut want = Vec::new();
    for v in values.iter().chain([&b"fourth"[..]].iter()) {
        want.extend_from_slice(v);
        want.push(b'\n');
    }
    assert_eq!(out.stdout, want);

    // Kafka Fetch serves the batches as stored: the first is the produced
    // batch byte for byte (base offset 0, leader epoch 0).
    for version in [4, 11] {
        let r: FetchResponse = k.call(ApiKey::Fetch, version, &fetch_request("p", 0, 0, 500));
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.high_watermark, 4);
        let records = p.records.clone().unwrap();
        assert_eq!(&records[16..batch.len()], &batch[16..]);
        let got = values_of(&records);
        assert_eq!(got[..3], values.map(<[u8]>::to_vec));
        assert_eq!(got[3], b"fourth");
    }
    // From the middle: whole batches from the one holding the offset.
    let r: FetchResponse = k.call(ApiKey::Fetch, 11, &fetch_request("p", 0, 3, 500));
    assert_eq!(
        values_of(r.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![b"fourth".to_vec()]
    );
    // Past the end: OFFSET_OUT_OF_RANGE.
    let r: FetchResponse = k.call(ApiKey::Fetch, 11, &fetch_request("p", 0, 99, 0));
    assert_eq!(r.responses[0].partitions[0].error_code, 1);
}

#[test]
fn fetch_long_polls_until_data_or_max_wait() {
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("w", 1)
        .unwrap();
    let mut k = Kafka::connect(kafka);
    // Nothing there: answered empty after about max_wait_ms.
    let start = Instant::now();
    let r: FetchResponse = k.call(ApiKey::Fetch, 11, &fetch_request("w", 0, 0, 400));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
    // A produce from another connection wakes a waiting fetch at once.
    let cid = k.send(ApiKey::Fetch, 11, &fetch_request("w", 0, 0, 20_000));
    std::thread::sleep(Duration::from_millis(200));
    let mut other = Kafka::connect(kafka);
    let start = Instant::now();
    let _: ProduceResponse = other.call(
        ApiKey::Produce,
        8,
        &produce_request("w", 0, -1, batch_of(1_700_000_000_000, &[b"wake"])),
    );
    let r: FetchResponse = k.recv(ApiKey::Fetch, 11, cid);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(
        values_of(r.responses[0].partitions[0].records.as_ref().unwrap()),
        vec![b"wake".to_vec()]
    );
}

#[test]
fn acks_zero_gets_no_response_and_list_offsets_sees_it() {
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "1");
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("z", 1)
        .unwrap();
    let mut k = Kafka::connect(kafka);
    let base = 1_700_000_000_000;
    k.send(
        ApiKey::Produce,
        8,
        &produce_request("z", 0, 0, batch_of(base, &[b"a", b"b"])),
    );
    k.send(
        ApiKey::Produce,
        8,
        &produce_request("z", 0, 0, batch_of(base + 10_000, &[b"c"])),
    );
    // The next answer on this connection is the ApiVersions one: no
    // response was sent for the acks=0 produces.
    assert_eq!(api_versions(&mut k, 3).error_code, 0);
    let start = Instant::now();
    loop {
        let (e, latest) = list_offset(&mut k, 5, "z", 0, -1);
        assert_eq!(e, 0);
        if latest == 3 {
            break;
        }
        assert!(start.elapsed() < T, "latest stuck at {latest}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for version in [1, 5, 6, 7, 8, 9, 10] {
        assert_eq!(list_offset(&mut k, version, "z", 0, -2), (0, 0));
        assert_eq!(list_offset(&mut k, version, "z", 0, -1), (0, 3));
        // By timestamp: the first record at or after it.
        assert_eq!(list_offset(&mut k, version, "z", 0, base + 1), (0, 1));
        assert_eq!(list_offset(&mut k, version, "z", 0, base + 5_000), (0, 2));
        assert_eq!(list_offset(&mut k, version, "z", 0, base + 99_000).1, -1);
    }
    for version in [7, 10] {
        // The max timestamp (-3): the first record holding it, offset 2.
        assert_eq!(list_offset(&mut k, version, "z", 0, -3), (0, 2));
    }
    for version in [8, 10] {
        // Earliest local (-4): everything is local, the log start.
        assert_eq!(list_offset(&mut k, version, "z", 0, -4), (0, 0));
    }
    // Latest tiered (-5): no tiered storage, no offset (as Kafka without it).
    assert_eq!(list_offset(&mut k, 9, "z", 0, -5), (0, -1));
    // Unknown partition and topic.
    assert_eq!(list_offset(&mut k, 5, "z", 7, -1).0, 3);
    assert_eq!(list_offset(&mut k, 5, "nope", 0, -1).0, 3);
}

#[test]
fn create_partitions_grows_a_live_topic_across_shards_and_a_restart() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
    let dir = data_dir();
    let (mut b, kafka) = broker(dir.path(), "2");
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("grow", 2).unwrap();
    let mut k = Kafka::connect(kafka);
    let grow = |k: &mut Kafka, version: i16, topic: &str, count: i32| -> i16 {
        let mut t = CreatePartitionsTopic::default();
        t.name = name(topic);
        t.count = count;
        let mut req = CreatePartitionsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = 5000;
        let r: CreatePartitionsResponse = k.call(ApiKey::CreatePartitions, version, &req);
        r.results[0].error_code
    };
    assert_eq!(grow(&mut k, 3, "grow", 5), 0);
    let m = metadata(&mut k, 9, Some(&["grow"]));
    assert_eq!(m.topics[0].partitions.len(), 5);
    // The new partitions are spread over both shards and take data.
    let o = owners(&b, "grow");
    assert_eq!(o.len(), 5);
    assert!(o[2..].contains(&0) && o[2..].contains(&1), "{o:?}");
    let r: ProduceResponse = k.call(
        ApiKey::Produce,
        8,
        &produce_request("grow", 4, -1, batch_of(1_700_000_000_000, &[b"new"])),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // Never shrinks, nor stays the same (INVALID_PARTITIONS, 37); unknown
    // topics are UNKNOWN_TOPIC_OR_PARTITION.
    assert_eq!(grow(&mut k, 0, "grow", 3), 37);
    assert_eq!(grow(&mut k, 1, "grow", 5), 37);
    assert_eq!(grow(&mut k, 2, "nope", 9), 3);
    // The CLI grows it too, and refuses to shrink it.
    let out = run(
        &[
            "topic",
            "alter",
            "grow",
            "--partitions",
            "6",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "topic grow now has 6 partitions\n"
    );
    let out = run(
        &[
            "topic",
            "alter",
            "grow",
            "--partitions",
            "2",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("never removed"), "{}", out.stderr);
    // A restart keeps the grown topic.
    drop(c);
    assert!(b.terminate(T).success());
    let mut b = Broker::start_on(
        dir.path(),
        b.addr,
        &[
            "--kafka-listen",
            &kafka.to_string(),
            "--kafka-port-base",
            "0",
            "--shards",
            "2",
            "--auto-create-topics-enable",
            "false",
        ],
    );
    b.wait_kafka(kafka);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    assert_eq!(c.describe_topic("grow").unwrap().partitions.len(), 6);
    assert_eq!(
        c.list_offset("grow", 4, shardlog::protocol::LIST_LATEST)
            .unwrap(),
        1
    );
}

#[test]
fn delete_records_moves_the_log_start_on_every_owner() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("dr", 2).unwrap();
    let o = owners(&b, "dr");
    assert!(o.contains(&0) && o.contains(&1), "{o:?}");
    let mut k = Kafka::connect(kafka);
    for p in 0..2 {
        for i in 0..5 {
            let r: ProduceResponse = k.call(
                ApiKey::Produce,
                8,
                &produce_request("dr", p, -1, batch_of(1_700_000_000_000 + i, &[b"x"])),
            );
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        }
    }
    let delete = |k: &mut Kafka, version: i16, parts: &[(i32, i64)]| -> Vec<(i32, i16, i64)> {
        let mut t = DeleteRecordsTopic::default();
        t.name = name("dr");
        t.partitions = parts
            .iter()
            .map(|&(p, o)| {
                let mut x = DeleteRecordsPartition::default();
                x.partition_index = p;
                x.offset = o;
                x
            })
            .collect();
        let mut req = DeleteRecordsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = 5_000;
        let r: DeleteRecordsResponse = k.call(ApiKey::DeleteRecords, version, &req);
        let mut v: Vec<_> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.error_code, p.low_watermark))
            .collect();
        v.sort();
        v
    };
    // Both owners in one request: partition 0 to offset 3, partition 1 to
    // its high watermark (-1); a partition past the end is unknown (3),
    // an offset past the high watermark out of range (1).
    assert_eq!(
        delete(&mut k, 2, &[(0, 3), (1, -1), (7, 0)]),
        vec![(0, 0, 3), (1, 0, 5), (7, 3, -1)]
    );
    assert_eq!(delete(&mut k, 0, &[(0, 99)]), vec![(0, 1, -1)]);
    assert_eq!(
        delete(&mut k, 1, &[(0, 1)]),
        vec![(0, 0, 3)],
        "never moves back"
    );
    assert_eq!(list_offset(&mut k, 5, "dr", 0, -2), (0, 3));
    assert_eq!(list_offset(&mut k, 5, "dr", 1, -2), (0, 5));
    assert_eq!(
        c.list_offset("dr", 0, shardlog::protocol::LIST_EARLIEST)
            .unwrap(),
        3
    );
}

/// DescribeProducers (the Java Admin's describeProducers): each partition
/// names its idempotent producers with their epoch, last sequence and last
/// timestamp, answered by its owner shard; the state outlives a restart
/// (rebuilt from the log's tail); a plain producer is not listed; an
/// unknown partition gets UNKNOWN_TOPIC_OR_PARTITION.
#[test]
fn describe_producers_lists_each_partitions_idempotent_producers() {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
    let dir = data_dir();
    let (mut b, kafka) = broker(dir.path(), "2");
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("dp", 2)
        .unwrap();
    let o = owners(&b, "dp");
    assert!(o.contains(&0) && o.contains(&1), "{o:?}");
    let idempotent = |pid: i64, epoch: i16, seq: i32, ts: i64, n: usize| {
        let mut bb = BatchBuilder::new(ts).idempotent(pid, epoch, seq);
        for i in 0..n {
            bb.push(ts + i as i64, None, Some(b"v"), &[]);
        }
        bb.finish()
    };
    let mut k = Kafka::connect(kafka);
    let produce = |k: &mut Kafka, p: i32, records: Bytes| {
        let r: ProduceResponse = k.call(ApiKey::Produce, 8, &produce_request("dp", p, -1, records));
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    };
    // Partition 0: producer 7 twice (sequences 0-2 then 3-4), producer 5
    // at epoch 2; partition 1: only a plain batch.
    produce(&mut k, 0, idempotent(7, 0, 0, 1_700_000_000_000, 3));
    produce(&mut k, 0, idempotent(5, 2, 0, 1_700_000_001_000, 1));
    produce(&mut k, 0, idempotent(7, 0, 3, 1_700_000_002_000, 2));
    produce(&mut k, 1, batch_of(1_700_000_003_000, &[b"plain"]));
    // (id, epoch, last sequence, last timestamp, coordinator epoch, txn start)
    type Producer = (i64, i32, i32, i64, i32, i64);
    let describe = |k: &mut Kafka| -> Vec<(i32, i16, Vec<Producer>)> {
        let mut t = TopicRequest::default();
        t.name = name("dp");
        t.partition_indexes = vec![0, 1, 9];
        let mut req = DescribeProducersRequest::default();
        req.topics = vec![t];
        let r: DescribeProducersResponse = k.call(ApiKey::DescribeProducers, 0, &req);
        assert_eq!(r.topics.len(), 1);
        r.topics[0]
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.error_code,
                    p.active_producers
                        .iter()
                        .map(|s| {
                            (
                                s.producer_id.0,
                                s.producer_epoch,
                                s.last_sequence,
                                s.last_timestamp,
                                s.coordinator_epoch,
                                s.current_txn_start_offset,
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    };
    let want = vec![
        (
            0,
            0,
            vec![
                (5, 2, 0, 1_700_000_001_000, -1, -1),
                (7, 0, 4, 1_700_000_002_001, -1, -1),
            ],
        ),
        (1, 0, vec![]),
        (9, 3, vec![]),
    ];
    assert_eq!(describe(&mut k), want);
    b.kill();
    let (_b, kafka) = broker(dir.path(), "2");
    let mut k = Kafka::connect(kafka);
    assert_eq!(
        describe(&mut k),
        want,
        "rebuilt from the log after a restart"
    );
}

#[test]
fn bad_frames_and_unknown_apis_close_only_their_connection() {
    let dir = data_dir();
    let (_b, kafka) = broker(dir.path(), "2");
    let mut good = Kafka::connect(kafka);
    assert_eq!(api_versions(&mut good, 3).error_code, 0);

    // An API the listener does not implement (JoinGroup) and one nobody
    // knows: the connection is closed, as Kafka does.
    for key in [ApiKey::DescribeAcls as i16, 999] {
        let mut k = Kafka::connect(kafka);
        let mut body = BytesMut::new();
        body.put_i16(key);
        body.put_i16(0);
        body.put_i32(7);
        body.put_i16(-1); // null client id
        k.send_raw(&body);
        assert!(k.is_closed(), "api key {key}");
    }
    // A version of Produce outside what ApiVersions offered.
    let mut k = Kafka::connect(kafka);
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Produce as i16);
    body.put_i16(99);
    body.put_i32(8);
    body.put_i16(-1);
    k.send_raw(&body);
    assert!(k.is_closed());
    // A negative length, and a body that does not decode.
    let mut k = Kafka::connect(kafka);
    k.s.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(k.is_closed());
    let mut k = Kafka::connect(kafka);
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(9);
    body.put_i32(9);
    body.put_slice(&[0xff; 3]);
    k.send_raw(&body);
    assert!(k.is_closed());
    // A frame over --max-frame-bytes (64 MiB default), refused before its
    // body is read.
    let mut k = Kafka::connect(kafka);
    k.s.write_all(&(1i32 << 30).to_be_bytes()).unwrap();
    assert!(k.is_closed());

    // The other connection never noticed.
    assert_eq!(api_versions(&mut good, 3).error_code, 0);
    assert_eq!(metadata(&mut good, 9, None).brokers.len(), 1);
}

/// Two free ports in a row (per-shard Kafka ports for two shards).

#[test]
fn every_shard_is_its_own_kafka_broker_on_its_own_port() {
    let dir = data_dir();
    let ports = ShardPorts::new(false);
    let (kafka, base) = (ports.kafka, ports.base);
    let b = ports.start(dir.path());
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("s", 4).unwrap();
    let o = owners(&b, "s");
    assert!(o.contains(&0) && o.contains(&1), "{o:?}");
    let mut k = Kafka::connect(kafka);
    let r = metadata(&mut k, 9, Some(&["s"]));
    let mut nodes: Vec<_> = r.brokers.iter().map(|n| (n.node_id.0, n.port)).collect();
    nodes.sort();
    // One broker per shard, each partition led by its owner shard.
    let mut leaders: Vec<_> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    leaders.sort();
    let want: Vec<_> = o.iter().enumerate().map(|(i, &s)| (i as i32, s)).collect();
    assert_eq!(leaders, want);
    assert_eq!(nodes, vec![(0, i32::from(base)), (1, i32::from(base) + 1)]);
    // Each shard's port serves Kafka: produce to each partition at its
    // leader's port, read back there.
    for p in &r.topics[0].partitions {
        let port = base + p.leader_id.0 as u16;
        let mut at = Kafka::connect(SocketAddr::new(kafka.ip(), port));
        let r: ProduceResponse = at.call(
            ApiKey::Produce,
            8,
            &produce_request(
                "s",
                p.partition_index,
                -1,
                batch_of(1_700_000_000_000, &[b"owner"]),
            ),
        );
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        let f: FetchResponse = at.call(
            ApiKey::Fetch,
            11,
            &fetch_request("s", p.partition_index, 0, 500),
        );
        assert_eq!(
            values_of(f.responses[0].partitions[0].records.as_ref().unwrap()),
            vec![b"owner".to_vec()]
        );
    }
}

/// Runs `kcat` with `stdin`, killed after a deadline; None if kcat is not
/// installed (`.ci/run` installs Debian's, librdkafka 2.0.2).
fn kcat(args: &[&str], stdin: &[u8]) -> Option<(bool, String, String)> {
    use std::process::{Command, Stdio};
    let mut child = match Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run kcat: {e}"),
    };
    let mut sin = child.stdin.take().unwrap();
    sin.write_all(stdin).unwrap();
    drop(sin);
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut err = child.stderr.take().unwrap();
    let ereader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = match wait_deadline(&mut child, T) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kcat {args:?} did not finish within {T:?}");
        }
    };
    Some((
        status.success(),
        reader.join().unwrap(),
        ereader.join().unwrap(),
    ))
}

#[test]
fn kcat_produces_and_consumes_unchanged() {
    if kcat(&["-V"], b"").is_none() {
        println!("SKIPPED: kcat is not installed (apt-get install kcat)");
        return;
    }
    let dir = data_dir();
    // Per-shard Kafka ports on: kcat goes to each partition's owner shard.
    let kafka: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let base = two_free_ports().to_string();
    let k_arg = kafka.to_string();
    let mut b = Broker::start(
        dir.path(),
        &[
            "--kafka-listen",
            &k_arg,
            "--kafka-port-base",
            &base,
            "--shards",
            "2",
        ],
    );
    b.wait_kafka(kafka);
    let broker_arg = b.broker_arg();
    Client::connect(&broker_arg)
        .unwrap()
        .create_topic("kc", 2)
        .unwrap();
    let k = kafka.to_string();
    // Metadata through librdkafka 2.0.2 (the ApiVersions v3 tagged-field trap).
    let (ok, out, err) = kcat(&["-b", &k, "-L", "-t", "kc"], b"").unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("2 brokers"), "{out}");
    assert!(out.contains("topic \"kc\" with 2 partitions"), "{out}");
    // kcat produces (acks=all, and lz4: batches are stored as sent) ...
    let (ok, _, err) = kcat(
        &["-b", &k, "-P", "-t", "kc", "-p", "0", "-X", "acks=all"],
        b"alpha\nbeta\n",
    )
    .unwrap();
    assert!(ok, "{err}");
    let (ok, _, err) = kcat(
        &["-b", &k, "-P", "-t", "kc", "-p", "0", "-z", "lz4"],
        b"gamma\n",
    )
    .unwrap();
    assert!(ok, "{err}");
    // ... the shardlog CLI reads it ...
    let got = run(
        &[
            "consume",
            "kc",
            "--partition",
            "0",
            "--max-messages",
            "3",
            "--broker",
            &broker_arg,
        ],
        b"",
        T,
    );
    assert!(got.status.success(), "{}", got.stderr);
    assert_eq!(got.stdout, b"alpha\nbeta\ngamma\n");
    // ... and the other way round: shardlog produces, kcat consumes.
    let put = run(
        &["produce", "kc", "--partition", "1", "--broker", &broker_arg],
        b"one\ntwo\n",
        T,
    );
    assert!(put.status.success(), "{}", put.stderr);
    let (ok, out, err) = kcat(
        &[
            "-b",
            &k,
            "-C",
            "-t",
            "kc",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p:%s\n",
        ],
        b"",
    )
    .unwrap();
    assert!(ok, "{err}");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["0:alpha", "0:beta", "0:gamma", "1:one", "1:two"]);
}

fn create_topics(
    k: &mut Kafka,
    version: i16,
    topics: &[(&str, i32, i16)],
    configs: &[(&str, &str)],
) -> Vec<(String, i16)> {
    let mut req = CreateTopicsRequest::default();
    req.timeout_ms = 10_000;
    req.topics = topics
        .iter()
        .map(|&(n, partitions, rf)| {
            let mut t = CreatableTopic::default();
            t.name = name(n);
            t.num_partitions = partitions;
            t.replication_factor = rf;
            t.configs = configs
                .iter()
                .map(|&(k, v)| {
                    let mut c = CreatableTopicConfig::default();
                    c.name = StrBytes::from_string(k.to_owned());
                    c.value = Some(StrBytes::from_string(v.to_owned()));
                    c
                })
                .collect();
            t
        })
        .collect();
    let r: CreateTopicsResponse = k.call(ApiKey::CreateTopics, version, &req);
    r.topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.error_code))
        .collect()
}

fn delete_topics(k: &mut Kafka, version: i16, topics: &[&str]) -> Vec<(String, i16)> {
    let mut req = DeleteTopicsRequest::default();
    req.timeout_ms = 10_000;
    req.topic_names = topics.iter().map(|t| name(t)).collect();
    let r: DeleteTopicsResponse = k.call(ApiKey::DeleteTopics, version, &req);
    r.responses
        .iter()
        .map(|t| (t.name.as_ref().unwrap().0.to_string(), t.error_code))
        .collect()
}

#[test]
fn create_and_delete_topics_over_kafka() {
    const TOPIC_ALREADY_EXISTS: i16 = 36;
    const INVALID_TOPIC_EXCEPTION: i16 = 17;
    const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    const INVALID_REPLICATION_FACTOR: i16 = 38;
    const INVALID_PARTITIONS: i16 = 37;
    const INVALID_REQUEST: i16 = 42;
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    let ba = b.broker_arg();
    let mut k = Kafka::connect(kafka);
    // Created over Kafka with a config: the CLI sees it.
    assert_eq!(
        create_topics(&mut k, 4, &[("k1", 3, -1)], &[("retention.ms", "60000")]),
        vec![("k1".to_owned(), 0)]
    );
    let out = run(
        &["topic", "describe", "k1", "--json", "--broker", &ba],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let json = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        json.starts_with("{\"name\":\"k1\",\"configs\":{\"retention.ms\":\"60000\"}"),
        "{json}"
    );
    assert_eq!(owners(&b, "k1").len(), 3);
    // Every version, replication factor 1, default partitions (-1 = 1).
    for v in 2..=4i16 {
        let n = format!("v{v}");
        assert_eq!(
            create_topics(&mut k, v, &[(&n, -1, 1)], &[]),
            vec![(n.clone(), 0)]
        );
        assert_eq!(owners(&b, &n).len(), 1);
    }
    // Errors, per topic, in one request.
    let mut got = create_topics(
        &mut k,
        4,
        &[
            ("k1", 1, 1),
            ("bad/name", 1, 1),
            ("__x", 1, 1),
            ("rf3", 1, 3),
            ("zero", 0, 1),
        ],
        &[],
    );
    got.sort();
    let mut want = vec![
        ("k1".to_owned(), TOPIC_ALREADY_EXISTS),
        ("bad/name".to_owned(), INVALID_TOPIC_EXCEPTION),
        ("__x".to_owned(), INVALID_TOPIC_EXCEPTION),
        ("rf3".to_owned(), INVALID_REPLICATION_FACTOR),
        ("zero".to_owned(), INVALID_PARTITIONS),
    ];
    want.sort();
    assert_eq!(got, want);
    // validate_only is refused (with a message saying so), and creates nothing.
    let mut req = CreateTopicsRequest::default();
    req.validate_only = true;
    let mut t = CreatableTopic::default();
    t.name = name("dry");
    t.num_partitions = 1;
    t.replication_factor = 1;
    req.topics = vec![t];
    let r: CreateTopicsResponse = k.call(ApiKey::CreateTopics, 4, &req);
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].name.0.as_str(), "dry");
    assert_eq!(r.topics[0].error_code, INVALID_REQUEST);
    let msg = r.topics[0].error_message.as_ref().unwrap();
    assert!(msg.contains("validate_only"), "{msg}");
    let m = metadata(&mut k, 9, Some(&["dry", "rf3", "__x"]));
    assert!(m.topics.iter().all(|t| t.error_code == 3), "{m:?}");
    // Delete: gone for Kafka and for the CLI; unknown topics are reported.
    for v in [2i16, 3, 4] {
        let n = format!("v{v}");
        assert_eq!(delete_topics(&mut k, v, &[&n]), vec![(n.clone(), 0)]);
        let m = metadata(&mut k, 9, Some(&[&n]));
        assert_eq!(m.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION);
    }
    assert_eq!(
        delete_topics(&mut k, 4, &["k1", "nope"]),
        vec![
            ("k1".to_owned(), 0),
            ("nope".to_owned(), UNKNOWN_TOPIC_OR_PARTITION)
        ]
    );
    let out = run(&["topic", "describe", "k1", "--broker", &ba], b"", T);
    assert!(!out.status.success());
    assert!(out.stderr.contains("unknown topic 'k1'"), "{}", out.stderr);
    // The name is free again.
    assert_eq!(
        create_topics(&mut k, 2, &[("k1", 2, -1)], &[]),
        vec![("k1".to_owned(), 0)]
    );
}

/// The broker's `shardlog_forwards_total` series, by shard, from /metrics.
fn forwards(http: &str) -> Vec<(String, f64)> {
    let (status, body) =
        shardlog::http::get(http, "/metrics", READ_DEADLINE).expect("scrape /metrics");
    assert_eq!(status, 200, "{body}");
    shardlog::top::parse(&body)
        .into_iter()
        .filter(|((n, _), _)| n == "shardlog_forwards_total")
        .map(|((_, labels), v)| {
            let shard = labels
                .iter()
                .find(|(k, _)| k == "shard")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            (shard, v)
        })
        .collect()
}

#[test]
fn clients_that_follow_metadata_cause_no_cross_shard_forwarding() {
    let dir = data_dir();
    let ports = ShardPorts::new(true);
    let (kafka, base) = (ports.kafka, ports.base);
    let http = ports.http.clone().expect("asked for");
    let _b = ports.start(dir.path());
    let mut k = Kafka::connect(kafka);
    assert_eq!(
        create_topics(&mut k, 4, &[("f", 8, -1)], &[]),
        vec![("f".to_owned(), 0)]
    );
    let r = metadata(&mut k, 9, Some(&["f"]));
    let parts: Vec<(i32, u16)> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, base + p.leader_id.0 as u16))
        .collect();
    assert_eq!(parts.len(), 8);
    assert!(parts.iter().any(|p| p.1 == base) && parts.iter().any(|p| p.1 == base + 1));
    // Each partition's produce, fetch and list offsets go to its leader.
    for round in 0..3 {
        for &(p, port) in &parts {
            let mut at = Kafka::connect(SocketAddr::new(kafka.ip(), port));
            let value = format!("p{p}r{round}");
            let r: ProduceResponse = at.call(
                ApiKey::Produce,
                8,
                &produce_request("f", p, -1, batch_of(1_700_000_000_000, &[value.as_bytes()])),
            );
            let pr = &r.responses[0].partition_responses[0];
            assert_eq!((pr.error_code, pr.base_offset), (0, round));
            let f: FetchResponse = at.call(ApiKey::Fetch, 11, &fetch_request("f", p, round, 500));
            assert_eq!(
                values_of(f.responses[0].partitions[0].records.as_ref().unwrap()),
                vec![value.into_bytes()]
            );
            assert_eq!(list_offset(&mut at, 5, "f", p, -1), (0, round + 1));
        }
    }
    let f = forwards(&http);
    assert_eq!(f.len(), 2, "one series per shard: {f:?}");
    assert!(f.iter().all(|(_, v)| *v == 0.0), "forwarded: {f:?}");
    // The counter is the right one: a produce sent to the wrong shard is
    // served (forwarded) and counted.
    let &(p, port) = parts.iter().find(|(_, port)| *port == base).unwrap();
    let mut wrong = Kafka::connect(SocketAddr::new(kafka.ip(), port + 1));
    let r: ProduceResponse = wrong.call(
        ApiKey::Produce,
        8,
        &produce_request("f", p, -1, batch_of(1_700_000_000_000, &[b"stale"])),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let f = forwards(&http);
    assert!(
        f.iter().any(|(s, v)| s == "1" && *v == 1.0),
        "forwarded: {f:?}"
    );
}

// ---- Consumer groups over Kafka (the classic protocol) ---------------------

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};

fn sb(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn join_request(group: &str, member: &str) -> JoinGroupRequest {
    let mut r = JoinGroupRequest::default();
    r.group_id = GroupId(sb(group));
    r.session_timeout_ms = 10_000;
    r.rebalance_timeout_ms = 20_000;
    r.member_id = sb(member);
    r.protocol_type = sb("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = sb("range");
    p.metadata = Bytes::from(format!("subscription of {member}"));
    r.protocols = vec![p];
    r
}

fn heartbeat(k: &mut Kafka, group: &str, member: &str, generation: i32) -> i16 {
    let mut r = HeartbeatRequest::default();
    r.group_id = GroupId(sb(group));
    r.member_id = sb(member);
    r.generation_id = generation;
    let h: HeartbeatResponse = k.call(ApiKey::Heartbeat, 3, &r);
    h.error_code
}

/// LeaveGroup v3 of one member.
fn leave(k: &mut Kafka, group: &str, member: &str) -> LeaveGroupResponse {
    let mut lv = LeaveGroupRequest::default();
    lv.group_id = GroupId(sb(group));
    let mut who = MemberIdentity::default();
    who.member_id = sb(member);
    lv.members = vec![who];
    k.call(ApiKey::LeaveGroup, 3, &lv)
}

fn sync_request(
    group: &str,
    member: &str,
    generation: i32,
    a: &[(&str, &[u8])],
) -> SyncGroupRequest {
    let mut r = SyncGroupRequest::default();
    r.group_id = GroupId(sb(group));
    r.member_id = sb(member);
    r.generation_id = generation;
    r.assignments = a
        .iter()
        .map(|(m, bytes)| {
            let mut x = SyncGroupRequestAssignment::default();
            x.member_id = sb(m);
            x.assignment = Bytes::copy_from_slice(bytes);
            x
        })
        .collect();
    r
}

fn commit(k: &mut Kafka, group: &str, member: &str, generation: i32, offset: i64) -> i16 {
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(sb(group));
    r.member_id = sb(member);
    r.generation_id_or_member_epoch = generation;
    let mut t = OffsetCommitRequestTopic::default();
    t.name = name("gt");
    let mut p = OffsetCommitRequestPartition::default();
    p.partition_index = 1;
    p.committed_offset = offset;
    p.committed_metadata = Some(sb("m"));
    // The epoch of the last record consumed, which OffsetFetch must return.
    p.committed_leader_epoch = COMMITTED_EPOCH;
    t.partitions = vec![p];
    r.topics = vec![t];
    let c: OffsetCommitResponse = k.call(ApiKey::OffsetCommit, 7, &r);
    c.topics[0].partitions[0].error_code
}

fn fetch_committed(k: &mut Kafka, group: &str) -> i64 {
    let mut r = OffsetFetchRequest::default();
    r.group_id = GroupId(sb(group));
    let mut t = OffsetFetchRequestTopic::default();
    t.name = name("gt");
    t.partition_indexes = vec![1];
    r.topics = Some(vec![t]);
    let f: OffsetFetchResponse = k.call(ApiKey::OffsetFetch, 5, &r);
    assert_eq!(f.error_code, 0);
    let p = &f.topics[0].partitions[0];
    let epoch = if p.committed_offset < 0 {
        -1
    } else {
        COMMITTED_EPOCH
    };
    assert_eq!(
        p.committed_leader_epoch, epoch,
        "the committed leader epoch"
    );
    p.committed_offset
}

const COMMITTED_EPOCH: i32 = 4;

/// The classic protocol step by step, on the wire: FindCoordinator leads to
/// the coordinator shard's own port; KIP-394's member id round; the join
/// barrier (the first member learns of the second by heartbeat and rejoins);
/// the leader's assignment relayed at SyncGroup; commits fenced by
/// generation and member; DescribeGroups; LeaveGroup; commits survive a
/// restart.
#[test]
fn classic_group_protocol_on_the_wire() {
    let dir = data_dir();
    let ports = ShardPorts::new(false);
    let (kafka, base) = (ports.kafka, ports.base);
    let mut b = ports.start(dir.path());
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("gt", 4)
        .unwrap();
    let mut boot = Kafka::connect(kafka);
    let mut fc = FindCoordinatorRequest::default();
    fc.key = sb("grp");
    let c: FindCoordinatorResponse = boot.call(ApiKey::FindCoordinator, 3, &fc);
    assert_eq!(c.error_code, 0);
    assert!(c.node_id.0 == 0 || c.node_id.0 == 1);
    assert_eq!(
        c.port,
        i32::from(base) + c.node_id.0,
        "the coordinator shard's own port"
    );
    let coord = SocketAddr::new(kafka.ip(), c.port as u16);
    // v4 (KIP-699) batches keys.
    let mut fc4 = FindCoordinatorRequest::default();
    fc4.coordinator_keys = vec![sb("grp"), sb("other")];
    let c4: FindCoordinatorResponse = boot.call(ApiKey::FindCoordinator, 4, &fc4);
    assert_eq!(c4.coordinators.len(), 2);
    assert_eq!(c4.coordinators[0].node_id, c.node_id);

    let (mut a, mut bk) = (Kafka::connect(coord), Kafka::connect(coord));
    // KIP-394: the first join only hands out the member id.
    let j: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request("grp", ""));
    assert_eq!(j.error_code, 79, "MEMBER_ID_REQUIRED");
    let ma = j.member_id.as_str().to_owned();
    let j: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request("grp", &ma));
    assert_eq!((j.error_code, j.generation_id), (0, 1));
    assert_eq!(j.leader.as_str(), ma);
    let s: SyncGroupResponse = a.call(
        ApiKey::SyncGroup,
        3,
        &sync_request("grp", &ma, 1, &[(&ma, b"all four")]),
    );
    assert_eq!((s.error_code, &s.assignment[..]), (0, &b"all four"[..]));
    assert_eq!(heartbeat(&mut a, "grp", &ma, 1), 0);
    assert_eq!(commit(&mut a, "grp", &ma, 1, 7), 0);

    // A second member: its join waits until the first rejoins.
    let j: JoinGroupResponse = bk.call(ApiKey::JoinGroup, 5, &join_request("grp", ""));
    let mb = j.member_id.as_str().to_owned();
    let pending_b = bk.send(ApiKey::JoinGroup, 5, &join_request("grp", &mb));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        heartbeat(&mut a, "grp", &ma, 1),
        27,
        "REBALANCE_IN_PROGRESS"
    );
    let ja: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request("grp", &ma));
    let jb: JoinGroupResponse = bk.recv(ApiKey::JoinGroup, 5, pending_b);
    assert_eq!((ja.generation_id, jb.generation_id), (2, 2));
    assert_eq!(ja.leader.as_str(), ma, "the leader stays");
    let mut seen: Vec<(String, Bytes)> = ja
        .members
        .iter()
        .map(|m| (m.member_id.as_str().to_owned(), m.metadata.clone()))
        .collect();
    seen.sort();
    let mut want = vec![
        (ma.clone(), Bytes::from(format!("subscription of {ma}"))),
        (mb.clone(), Bytes::from(format!("subscription of {mb}"))),
    ];
    want.sort();
    assert_eq!(seen, want, "the leader sees every member's metadata");
    assert!(jb.members.is_empty());

    // The follower's sync waits for the leader's assignment.
    let pending_sync = bk.send(ApiKey::SyncGroup, 3, &sync_request("grp", &mb, 2, &[]));
    let sa: SyncGroupResponse = a.call(
        ApiKey::SyncGroup,
        3,
        &sync_request("grp", &ma, 2, &[(&ma, b"p0 p1"), (&mb, b"p2 p3")]),
    );
    let sb_: SyncGroupResponse = bk.recv(ApiKey::SyncGroup, 3, pending_sync);
    assert_eq!(&sa.assignment[..], b"p0 p1");
    assert_eq!(&sb_.assignment[..], b"p2 p3");

    // Commits are fenced by generation and member.
    assert_eq!(commit(&mut bk, "grp", &mb, 2, 42), 0);
    assert_eq!(commit(&mut a, "grp", &ma, 1, 9), 22, "ILLEGAL_GENERATION");
    assert_eq!(
        commit(&mut a, "grp", "stranger", 2, 9),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    assert_eq!(
        commit(&mut a, "grp", "", -1, 9),
        25,
        "no simple commit while members are in"
    );
    assert_eq!(fetch_committed(&mut a, "grp"), 42);

    let mut dg = DescribeGroupsRequest::default();
    dg.groups = vec![GroupId(sb("grp")), GroupId(sb("nobody"))];
    let d: DescribeGroupsResponse = boot.call(ApiKey::DescribeGroups, 4, &dg);
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].protocol_data.as_str(), "range");
    let mut held: Vec<Vec<u8>> = d.groups[0]
        .members
        .iter()
        .map(|m| m.member_assignment.to_vec())
        .collect();
    held.sort();
    assert_eq!(held, vec![b"p0 p1".to_vec(), b"p2 p3".to_vec()]);
    assert_eq!(d.groups[1].group_state.as_str(), "Dead");

    // b leaves; a is told to rejoin and leads alone.
    let l = leave(&mut bk, "grp", &mb);
    assert_eq!((l.error_code, l.members[0].error_code), (0, 0));
    assert_eq!(heartbeat(&mut a, "grp", &ma, 2), 27);
    let j: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request("grp", &ma));
    assert_eq!((j.generation_id, j.members.len()), (3, 1));
    let s: SyncGroupResponse = a.call(
        ApiKey::SyncGroup,
        3,
        &sync_request("grp", &ma, 3, &[(&ma, b"all four")]),
    );
    assert_eq!(s.error_code, 0);

    // Committed offsets are durable, and so is the stable group (Kafka's
    // coordinator reloads it too): after a restart its member heartbeats
    // and commits in its generation with no rebalance.
    drop((a, bk, boot));
    b.terminate(T);
    let mut b = ports.restart(dir.path(), b.addr);
    let mut k = Kafka::connect(kafka);
    assert_eq!(fetch_committed(&mut k, "grp"), 42);
    let mut a = Kafka::connect(coord);
    assert_eq!(heartbeat(&mut a, "grp", &ma, 3), 0, "still a member");
    assert_eq!(commit(&mut a, "grp", &ma, 3, 43), 0, "in generation 3");
    let d: DescribeGroupsResponse = k.call(ApiKey::DescribeGroups, 4, &dg);
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].members.len(), 1);
    assert_eq!(&d.groups[0].members[0].member_assignment[..], b"all four");
    // Once it leaves, the group is gone from the log as well: a restart
    // finds it empty.
    let l = leave(&mut a, "grp", &ma);
    assert_eq!(l.error_code, 0);
    drop((a, k));
    b.kill();
    let b = ports.restart(dir.path(), b.addr);
    let mut k = Kafka::connect(kafka);
    let d: DescribeGroupsResponse = k.call(ApiKey::DescribeGroups, 4, &dg);
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    assert_eq!(fetch_committed(&mut k, "grp"), 43);
    drop(b);
}

/// A Python script of tests/kafka_clients, its stdout read line by line as
/// it runs; killed on drop (and after its deadline).
struct Py {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Py {
    /// None (the test skips) when python3 or confluent-kafka is missing and
    /// KAFKA_CLIENT_TESTS is not `required`; with it, missing clients fail.
    fn start(script: &str, args: &[&str]) -> Option<Py> {
        use std::process::{Command, Stdio};
        let have = Command::new("python3")
            .args(["-c", "import confluent_kafka, kafka"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !have {
            assert!(
                std::env::var("KAFKA_CLIENT_TESTS").as_deref() != Ok("required"),
                "python3 with confluent-kafka and kafka-python is required (pip install confluent-kafka kafka-python)"
            );
            eprintln!("SKIPPED: python3 with confluent-kafka and kafka-python is not installed");
            return None;
        }
        let path = format!(
            "{}/tests/kafka_clients/{script}",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut child = Command::new("python3")
            .arg(&path)
            .args(args)
            // Open while the test runs: scripts that run until told stop
            // when it closes.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start python3");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Some(Py {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Reads lines until one satisfies `done` (true) or the deadline passes
    /// or the script's output ends (false).
    fn until(&mut self, deadline: Duration, done: impl Fn(&[String]) -> bool) -> bool {
        let end = Instant::now() + deadline;
        while !done(&self.seen) {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => return false,
            }
        }
        true
    }

    /// Tells a script that runs until stdin closes to stop.
    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Lines read so far, without waiting.
    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// The partitions this script's member "0" holds now (its last
    /// `assigned` line).
    fn held(&self) -> Vec<i64> {
        self.seen
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| {
                v.get("assigned")
                    .and_then(|a| a.get("0"))
                    .and_then(|a| a.as_array())
                    .map(|a| a.iter().filter_map(|p| p.as_i64()).collect())
            })
            .unwrap_or_default()
    }

    /// Values of the messages this script printed.
    fn values(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| Some(v.get("value")?.as_str()?.to_owned()))
            .collect()
    }

    fn wait(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let s = wait_deadline(&mut self.child, deadline);
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(l);
        }
        s
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 10's group test with librdkafka: two confluent-kafka consumers in
/// one group over four partitions share them (two each) and read every
/// message once; the broker is killed (-9) and restarted under them, and
/// they carry on from their committed offsets: nothing read twice, nothing
/// lost.
#[test]
fn confluent_kafka_group_shares_partitions_and_resumes_after_a_broker_kill() {
    let dir = data_dir();
    let ports = ShardPorts::new(true);
    let k_arg = ports.kafka.to_string();
    let http = ports.http.clone().expect("asked for");
    let mut b = ports.start(dir.path());
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("orders", 4)
        .unwrap();
    let Some(mut py) = Py::start(
        "group_consume.py",
        &[&k_arg, "orders", "billing", "2", "400", "100"],
    ) else {
        return;
    };
    let has = |lines: &[String], what: &str| lines.iter().any(|l| l.contains(what));
    assert!(
        py.until(T, |l| has(l, "\"ready\"")),
        "the two members never shared the partitions: {:?}\n{}",
        py.seen,
        b.log()
    );
    let produce = |b: &Broker, from: usize, n: usize| {
        let lines: String = (from..from + n).map(|i| format!("k{i}:v{i}\n")).collect();
        let out = run(
            &[
                "produce",
                "orders",
                "--key-separator",
                ":",
                "--broker",
                &b.broker_arg(),
            ],
            lines.as_bytes(),
            T,
        );
        assert!(out.status.success(), "produce: {}", out.stderr);
    };
    let read = |lines: &[String]| lines.iter().filter(|l| l.contains("\"value\"")).count();
    produce(&b, 0, 200);
    assert!(
        py.until(T, |l| read(l) >= 200),
        "first 200 not read: {:?}",
        py.seen
    );
    b.kill();
    let b = ports.restart(dir.path(), b.addr);
    produce(&b, 200, 200);
    let status = py.wait(Duration::from_secs(110));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the group did not finish: {:?}\n{}",
        py.seen,
        b.log()
    );
    // Every value once; a commit that failed around the kill may leave its
    // message unprinted only if it is reported as uncertain.
    let mut values = std::collections::BTreeMap::<String, usize>::new();
    let mut uncertain = 0;
    let mut members = std::collections::BTreeSet::new();
    for l in &py.seen {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"));
        if let Some(x) = v.get("value").and_then(|x| x.as_str()) {
            *values.entry(x.to_owned()).or_default() += 1;
            members.insert(v["member"].as_i64().unwrap());
        }
        if v.get("uncertain").is_some() {
            uncertain += 1;
        }
    }
    let dups: Vec<_> = values.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        dups.is_empty(),
        "read twice after being committed: {dups:?}"
    );
    assert!(
        values.len() + uncertain >= 400,
        "lost: read {} of 400 ({uncertain} uncertain)",
        values.len()
    );
    assert_eq!(members.len(), 2, "both members read");
    drop(py);

    // A new process of the same group, after another kill -9 and restart,
    // starts exactly at the committed offsets: only the new messages.
    let mut b = b;
    b.kill();
    let b = ports.restart(dir.path(), b.addr);
    produce(&b, 400, 100);
    let before = forwards(&http);
    assert_eq!(
        before.len(),
        2,
        "one forwards counter per shard: {before:?}"
    );
    let mut again = Py::start(
        "group_consume.py",
        &[&k_arg, "orders", "billing", "2", "100", "60"],
    )
    .expect("installed: it ran above");
    let status = again.wait(Duration::from_secs(70));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{:?}", again.seen);
    let mut got: Vec<String> = again
        .seen
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some(v.get("value")?.as_str()?.to_owned())
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = (400..500).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(got, want, "resumed at the committed offsets");
    // librdkafka followed Metadata and FindCoordinator: its fetches, joins,
    // heartbeats and commits all reached the owning shard directly.
    assert_eq!(forwards(&http), before, "no request was forwarded");
}

/// kafka-python's own group implementation (JoinGroup/SyncGroup with its
/// range assignor, commits): two members, one per process, over four
/// partitions share them and read every message exactly once.
#[test]
fn kafka_python_group_shares_partitions_and_reads_everything_once() {
    let dir = data_dir();
    let ports = ShardPorts::new(false);
    let k_arg = ports.kafka.to_string();
    let b = ports.start(dir.path());
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("events", 4)
        .unwrap();
    let member = || {
        Py::start(
            "kp_group_consume.py",
            &[&k_arg, "events", "kp", "1", "-1", "90"],
        )
    };
    let Some(mut m0) = member() else {
        return;
    };
    let mut m1 = member().expect("installed: the first one started");
    split_two_and_two(&mut m0, &mut m1, &b);
    let lines: String = (0..300).map(|i| format!("k{i}:v{i}\n")).collect();
    let out = run(
        &[
            "produce",
            "events",
            "--key-separator",
            ":",
            "--broker",
            &b.broker_arg(),
        ],
        lines.as_bytes(),
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let start = Instant::now();
    while m0.values().len() + m1.values().len() < 300 && start.elapsed() < T {
        m0.drain();
        m1.drain();
        std::thread::sleep(Duration::from_millis(50));
    }
    for m in [&mut m0, &mut m1] {
        m.close_stdin();
        let status = m.wait(Duration::from_secs(20));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{:?}", m.seen);
    }
    assert!(
        !m0.values().is_empty() && !m1.values().is_empty(),
        "both members read: {:?}\n{:?}",
        m0.seen
            .iter()
            .filter(|l| !l.contains("\"value\""))
            .collect::<Vec<_>>(),
        m1.seen
            .iter()
            .filter(|l| !l.contains("\"value\""))
            .collect::<Vec<_>>()
    );
    let mut got: Vec<String> = m0.values().into_iter().chain(m1.values()).collect();
    got.sort();
    let mut want: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(got, want, "every message exactly once");
}

/// Waits until two single-member scripts hold two partitions each, none
/// twice (four partitions shared); returns what each holds.
fn split_two_and_two(one: &mut Py, two: &mut Py, b: &Broker) -> (Vec<i64>, Vec<i64>) {
    let start = Instant::now();
    loop {
        one.drain();
        two.drain();
        let (a, c) = (one.held(), two.held());
        if a.len() == 2 && c.len() == 2 && a.iter().all(|p| !c.contains(p)) {
            return (a, c);
        }
        assert!(
            start.elapsed() < T,
            "the two members never shared the partitions: {:?} {:?}\n{}",
            one.seen,
            two.seen,
            b.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// kcat's balanced consumer (`-G`, librdkafka 2.0.2): it reads the topic,
/// commits on the way out, and a second run reads only what came after.
#[test]
fn kcat_balanced_consumer_commits_and_resumes() {
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    let k = kafka.to_string();
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("kg", 3)
        .unwrap();
    let produce = |from: usize, n: usize| {
        let lines: String = (from..from + n).map(|i| format!("line-{i}\n")).collect();
        let out = run(
            &["produce", "kg", "--broker", &b.broker_arg()],
            lines.as_bytes(),
            T,
        );
        assert!(out.status.success(), "{}", out.stderr);
    };
    let consume = || {
        kcat(
            // No -o: with it kcat starts there, not at the committed offset.
            &[
                "-b",
                &k,
                "-G",
                "kcat-group",
                "kg",
                "-X",
                "auto.offset.reset=earliest",
                "-e",
                "-q",
            ],
            b"",
        )
    };
    produce(0, 90);
    let Some((ok, out, err)) = consume() else {
        eprintln!("SKIPPED: kcat is not installed");
        return;
    };
    assert!(ok, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..90).map(|i| format!("line-{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    // Its commits are the group's, seen by shardlog's own CLI.
    let d = run(
        &[
            "group",
            "describe",
            "kcat-group",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(d.status.success(), "{}", d.stderr);
    let text = String::from_utf8_lossy(&d.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("kg\t")).count(),
        3,
        "a committed offset per partition: {text}"
    );
    produce(90, 30);
    let (ok, out, err) = consume().unwrap();
    assert!(ok, "{err}");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want: Vec<String> = (90..120).map(|i| format!("line-{i}")).collect();
    want.sort();
    assert_eq!(got, want, "the second run resumed at the committed offsets");
}

#[test]
fn describe_configs_reports_topic_settings_broker_settings_and_unknown_topics() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
    let dir = data_dir();
    // Two shards: the topic descriptions are gathered from both.
    let (b, kafka) = broker(dir.path(), "2");
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic_with(
            "cfg",
            3,
            &[
                ("retention.ms".into(), "60000".into()),
                ("max.message.bytes".into(), "2000".into()),
                ("message.timestamp.type".into(), "CreateTime".into()),
            ],
        )
        .unwrap();
    let mut k = Kafka::connect(kafka);
    // A batch over the topic's max.message.bytes: MESSAGE_TOO_LARGE (10).
    let big = batch_of(1_700_000_000_000, &[&[7u8; 3000]]);
    let r: ProduceResponse = k.call(ApiKey::Produce, 8, &produce_request("cfg", 0, -1, big));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 10);
    let small = batch_of(1_700_000_000_000, &[&[7u8; 1000]]);
    let r: ProduceResponse = k.call(ApiKey::Produce, 8, &produce_request("cfg", 0, -1, small));
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let res = |ty: i8, n: &str| {
        let mut r = DescribeConfigsResource::default();
        r.resource_type = ty;
        r.resource_name = StrBytes::from_string(n.to_owned());
        r.configuration_keys = None;
        r
    };
    for version in 1..=4 {
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![res(2, "cfg"), res(2, "nope"), res(4, "0")];
        let r: DescribeConfigsResponse = k.call(ApiKey::DescribeConfigs, version, &req);
        assert_eq!(r.results.len(), 3);
        let cfg = |i: usize, key: &str| {
            r.results[i]
                .configs
                .iter()
                .find(|c| c.name.as_str() == key)
                .map(|c| (c.value.as_ref().unwrap().to_string(), c.config_source))
        };
        assert_eq!(r.results[0].error_code, 0);
        assert_eq!(
            cfg(0, "retention.ms"),
            Some(("60000".into(), 1)),
            "override"
        );
        assert_eq!(
            cfg(0, "segment.bytes"),
            Some(((1u64 << 30).to_string(), 5)),
            "broker default"
        );
        assert_eq!(cfg(0, "cleanup.policy").unwrap().0, "delete");
        assert_eq!(cfg(0, "max.message.bytes"), Some(("2000".into(), 1)));
        assert_eq!(
            cfg(0, "message.timestamp.type"),
            Some(("CreateTime".into(), 1))
        );
        assert_eq!(cfg(0, "min.insync.replicas"), Some(("1".into(), 5)));
        assert_eq!(r.results[1].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(r.results[2].error_code, 0);
        assert_eq!(cfg(2, "log.retention.ms").unwrap().0, "604800000");
        // The broker test runs with auto-creation off; Kafka's names.
        assert_eq!(cfg(2, "auto.create.topics.enable").unwrap().0, "false");
        assert_eq!(cfg(2, "num.partitions").unwrap().0, "1");
        let listener = cfg(2, "advertised.listeners").unwrap().0;
        assert_eq!(listener, format!("PLAINTEXT://127.0.0.1:{}", kafka.port()));
        assert_eq!(cfg(2, "log.cleaner.backoff.ms").unwrap().0, "15000");
    }
}

/// Issue 10's idempotence test with librdkafka: an idempotent confluent-kafka
/// producer is cut off mid-run (the broker is killed with -9 and restarted
/// on the same ports), retries what was in flight with the same producer id
/// and sequences, and the log holds every message exactly once, in order.
#[test]
fn idempotent_librdkafka_producer_retries_across_a_broker_kill_without_duplicates() {
    let dir = data_dir();
    let ports = ShardPorts::new(false);
    let k_arg = ports.kafka.to_string();
    let mut b = ports.start(dir.path());
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("idem", 1)
        .unwrap();
    const N: usize = 6000;
    let Some(mut py) = Py::start(
        "idempotent_retry.py",
        &[&k_arg, "idem", &N.to_string(), "25"],
    ) else {
        return;
    };
    // Kill once part of the run is acknowledged, while the rest is in flight.
    let start = Instant::now();
    loop {
        let hw = Client::connect(&b.broker_arg())
            .and_then(|mut c| c.list_offset("idem", 0, -1))
            .unwrap_or(0);
        if hw >= 1000 {
            break;
        }
        assert!(
            start.elapsed() < T,
            "the producer never got going: {:?}",
            py.seen
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    b.kill();
    let b = ports.restart(dir.path(), b.addr);
    let status = py.wait(Duration::from_secs(100));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the producer did not deliver everything: {:?}\n{}",
        py.seen,
        b.log()
    );
    let out = run(
        &[
            "consume",
            "idem",
            "--partition",
            "0",
            "--from",
            "earliest",
            "--idle-timeout-ms",
            "2000",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(got.len(), N, "every message once (duplicates or losses)");
    assert!(got == want, "in order, each once");
}

/// A clean stop does not wait for a rebalance: a JoinGroup waiting for the
/// rest of its group is answered at once with COORDINATOR_NOT_AVAILABLE (the
/// client looks for the coordinator again), and the broker exits promptly
/// (well inside its 10 s drain limit, which a waiting join would use up).
#[test]
fn a_clean_stop_answers_a_waiting_join_at_once() {
    let dir = data_dir();
    let ports = ShardPorts::new(false);
    let mut b = ports.start(dir.path());
    let mut boot = Kafka::connect(ports.kafka);
    let mut fc = FindCoordinatorRequest::default();
    fc.key = sb("stopping");
    let c: FindCoordinatorResponse = boot.call(ApiKey::FindCoordinator, 3, &fc);
    let coord = SocketAddr::new(ports.kafka.ip(), c.port as u16);
    let (mut a, mut w) = (Kafka::connect(coord), Kafka::connect(coord));
    let j: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request("stopping", ""));
    let ma = j.member_id.as_str().to_owned();
    let j: JoinGroupResponse = a.call(ApiKey::JoinGroup, 5, &join_request("stopping", &ma));
    assert_eq!((j.error_code, j.generation_id), (0, 1));
    // A second member's join waits for the first to rejoin, which it won't.
    let j: JoinGroupResponse = w.call(ApiKey::JoinGroup, 5, &join_request("stopping", ""));
    let mw = j.member_id.as_str().to_owned();
    let pending = w.send(ApiKey::JoinGroup, 5, &join_request("stopping", &mw));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let status = b.terminate(Duration::from_secs(8));
    assert!(status.success(), "clean exit: {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "the stop waited {:?}",
        started.elapsed()
    );
    let r: JoinGroupResponse = w.recv(ApiKey::JoinGroup, 5, pending);
    assert_eq!(r.error_code, 15, "COORDINATOR_NOT_AVAILABLE");
}

fn delete_groups(k: &mut Kafka, groups: &[&str]) -> Vec<(String, i16)> {
    use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
    let mut r = DeleteGroupsRequest::default();
    r.groups_names = groups.iter().map(|g| GroupId(sb(g))).collect();
    let d: DeleteGroupsResponse = k.call(ApiKey::DeleteGroups, 2, &r);
    d.results
        .iter()
        .map(|x| (x.group_id.0.as_str().to_owned(), x.error_code))
        .collect()
}

/// DeleteGroups (`kafka-consumer-groups --delete`, AdminClient
/// delete_consumer_groups): refused while the group has members, unknown
/// groups say so, and a deletion removes the committed offsets durably.
#[test]
fn delete_groups_over_kafka() {
    let dir = data_dir();
    let ports = ShardPorts::new(false);
    let mut b = ports.start(dir.path());
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("gt", 4)
        .unwrap();
    let mut k = Kafka::connect(ports.kafka);
    // "busy" has a member; "done" only committed offsets.
    let j: JoinGroupResponse = k.call(ApiKey::JoinGroup, 3, &join_request("busy", ""));
    assert_eq!((j.error_code, j.generation_id), (0, 1));
    assert_eq!(commit(&mut k, "done", "", -1, 11), 0);
    assert_eq!(fetch_committed(&mut k, "done"), 11);
    let mut r = delete_groups(&mut k, &["busy", "done", "never"]);
    r.sort();
    assert_eq!(
        r,
        vec![
            ("busy".to_owned(), 68), // NON_EMPTY_GROUP
            ("done".to_owned(), 0),
            ("never".to_owned(), 69), // GROUP_ID_NOT_FOUND
        ]
    );
    assert_eq!(fetch_committed(&mut k, "done"), -1, "offsets gone");
    // The deletion is durable: offsets stay gone after a restart.
    drop(k);
    b.terminate(T);
    let b = ports.restart(dir.path(), b.addr);
    let mut k = Kafka::connect(ports.kafka);
    assert_eq!(
        fetch_committed(&mut k, "done"),
        -1,
        "still gone after a restart"
    );
    assert_eq!(
        delete_groups(&mut k, &["done"]),
        vec![("done".to_owned(), 69)]
    );
    drop(b);
}

/// Static membership with librdkafka (KIP-345): of two static members over
/// four partitions, one is killed (-9) and restarted with the same
/// `group.instance.id`; it gets its two partitions back and the other member
/// is never revoked (no rebalance).
#[test]
fn a_restarted_static_librdkafka_member_rejoins_without_a_rebalance() {
    let dir = data_dir();
    let ports = ShardPorts::new(false);
    let b = ports.start(dir.path());
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("st", 4)
        .unwrap();
    let k = ports.kafka.to_string();
    let member =
        |instance: &str| Py::start("static_member.py", &[&k, "st", "static", instance, "90"]);
    let Some(mut one) = member("pod-1") else {
        return;
    };
    let mut two = member("pod-2").expect("installed: the first one started");
    let (held_one, held_two) = split_two_and_two(&mut one, &mut two, &b);
    let revokes = |p: &Py| p.seen.iter().filter(|l| l.contains("revoked")).count();
    let before = revokes(&one);
    drop(two); // kill -9: a static member's crash, no LeaveGroup
    let mut again = member("pod-2").expect("installed");
    let (still_one, back) = split_two_and_two(&mut one, &mut again, &b);
    assert_eq!(
        back, held_two,
        "the restarted member got its partitions back"
    );
    assert_eq!(still_one, held_one);
    std::thread::sleep(Duration::from_millis(1500)); // a few heartbeats
    one.drain();
    assert_eq!(
        revokes(&one),
        before,
        "the other member was not rebalanced: {:?}",
        one.seen
    );
    for p in [&mut one, &mut again] {
        p.close_stdin();
        assert_eq!(
            p.wait(Duration::from_secs(20)).and_then(|s| s.code()),
            Some(0)
        );
    }
}

#[test]
fn a_compacted_topic_over_kafka_refuses_records_without_a_key_with_invalid_record() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
    let dir = data_dir();
    let (_b, kafka) = broker(dir.path(), "1");
    let mut k = Kafka::connect(kafka);
    let made = create_topics(
        &mut k,
        4,
        &[("changelog", 1, 1)],
        &[
            ("cleanup.policy", "compact"),
            ("delete.retention.ms", "1000"),
        ],
    );
    assert_eq!(made, vec![("changelog".to_owned(), 0)]);
    // Kafka's rule: INVALID_RECORD (87), nothing written.
    let r: ProduceResponse = k.call(
        ApiKey::Produce,
        8,
        &produce_request(
            "changelog",
            0,
            -1,
            batch_of(1_700_000_000_000, &[b"no key"]),
        ),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 87);
    // A batch of five with two keyless records: KIP-467's record_errors
    // name exactly those two (by index in the batch), so a client fails
    // them with INVALID_RECORD and the other three as refused for their
    // batch, not for themselves.
    let mut mixed = BatchBuilder::new(1_700_000_000_000);
    for (i, key) in [Some(&b"a"[..]), None, Some(b"c"), Some(b"d"), None]
        .into_iter()
        .enumerate()
    {
        mixed.push(1_700_000_000_000 + i as i64, key, Some(b"v"), &[]);
    }
    let r: ProduceResponse = k.call(
        ApiKey::Produce,
        8,
        &produce_request("changelog", 0, -1, mixed.finish()),
    );
    let pr = &r.responses[0].partition_responses[0];
    assert_eq!(pr.error_code, 87);
    assert_eq!(
        pr.record_errors
            .iter()
            .map(|e| e.batch_index)
            .collect::<Vec<_>>(),
        vec![1, 4]
    );
    let mut keyed = BatchBuilder::new(1_700_000_000_000);
    keyed.push(1_700_000_000_000, Some(b"user-1"), Some(b"v1"), &[]);
    let r: ProduceResponse = k.call(
        ApiKey::Produce,
        8,
        &produce_request("changelog", 0, -1, keyed.finish()),
    );
    let pr = &r.responses[0].partition_responses[0];
    assert_eq!((pr.error_code, pr.base_offset), (0, 0));
    // DescribeConfigs reports the settings as set (source TOPIC_CONFIG).
    let mut res = DescribeConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_string("changelog".into());
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let r: DescribeConfigsResponse = k.call(ApiKey::DescribeConfigs, 4, &req);
    let cfg = |key: &str| {
        r.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == key)
            .map(|c| (c.value.as_ref().unwrap().to_string(), c.config_source))
    };
    assert_eq!(cfg("cleanup.policy"), Some(("compact".into(), 1)));
    assert_eq!(cfg("delete.retention.ms"), Some(("1000".into(), 1)));
    assert_eq!(cfg("min.cleanable.dirty.ratio"), Some(("0.5".into(), 5)));
    // A bad value is Kafka's INVALID_CONFIG (40).
    let bad = create_topics(&mut k, 4, &[("bad", 1, 1)], &[("cleanup.policy", "shrink")]);
    assert_eq!(bad, vec![("bad".to_owned(), 40)]);
}

/// DescribeConfigs of one topic as (name -> (value, source)).
fn topic_settings(k: &mut Kafka, topic: &str) -> std::collections::BTreeMap<String, (String, i8)> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
    let mut res = DescribeConfigsResource::default();
    res.resource_type = 2;
    res.resource_name = StrBytes::from_string(topic.into());
    res.configuration_keys = None;
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![res];
    let r: DescribeConfigsResponse = k.call(ApiKey::DescribeConfigs, 4, &req);
    assert_eq!(r.results[0].error_code, 0);
    r.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                (c.value.as_ref().unwrap().to_string(), c.config_source),
            )
        })
        .collect()
}

/// IncrementalAlterConfigs and AlterConfigs change a live topic's settings
/// on every owner shard at once (a batch limit, the compaction policy),
/// all of a resource's changes or none, and the change survives a restart;
/// broker settings are refused with the reason; the CLI does the same.
#[test]
fn alter_configs_change_live_topics_on_every_owner_and_survive_a_restart() {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
        IncrementalAlterConfigsResponse,
    };
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic_with("live", 2, &[("max.message.bytes".into(), "2000".into())])
        .unwrap();
    assert_ne!(owners(&b, "live")[0], owners(&b, "live")[1]);
    let mut k = Kafka::connect(kafka);
    let produce = |k: &mut Kafka, p: i32, batch: Bytes| -> i16 {
        let r: ProduceResponse = k.call(ApiKey::Produce, 8, &produce_request("live", p, -1, batch));
        r.responses[0].partition_responses[0].error_code
    };
    let mut big = BatchBuilder::new(1_700_000_000_000);
    big.push(1_700_000_000_000, Some(b"k"), Some(&[7u8; 3000]), &[]);
    let big = big.finish();
    assert_eq!(produce(&mut k, 0, big.clone()), 10, "MESSAGE_TOO_LARGE");
    let op = |key: &str, op: i8, value: Option<&str>| {
        let mut c = AlterableConfig::default();
        c.name = StrBytes::from_string(key.into());
        c.config_operation = op;
        c.value = value.map(|v| StrBytes::from_string(v.into()));
        c
    };
    let res = |ty: i8, name: &str, configs: Vec<AlterableConfig>| {
        let mut r = AlterConfigsResource::default();
        r.resource_type = ty;
        r.resource_name = StrBytes::from_string(name.into());
        r.configs = configs;
        r
    };
    let incremental =
        |k: &mut Kafka, version: i16, resources, validate_only| -> Vec<(i8, String, i16)> {
            let mut req = IncrementalAlterConfigsRequest::default();
            req.resources = resources;
            req.validate_only = validate_only;
            let r: IncrementalAlterConfigsResponse =
                k.call(ApiKey::IncrementalAlterConfigs, version, &req);
            r.responses
                .iter()
                .map(|x| (x.resource_type, x.resource_name.to_string(), x.error_code))
                .collect()
        };
    // SET a larger limit and APPEND compact to cleanup.policy; a broker
    // resource without changes is fine, an unknown topic is 3.
    let got = incremental(
        &mut k,
        1,
        vec![
            res(
                2,
                "live",
                vec![
                    op("max.message.bytes", 0, Some("5000")),
                    op("cleanup.policy", 2, Some("compact")),
                ],
            ),
            res(4, "0", vec![]),
            res(2, "nope", vec![op("retention.ms", 0, Some("1"))]),
        ],
        false,
    );
    assert_eq!(
        got,
        vec![
            (2, "live".into(), 0),
            (4, "0".into(), 0),
            (2, "nope".into(), 3)
        ]
    );
    // Both owner shards apply it at once: the batch now fits on both
    // partitions, and records without a key are refused (compacted).
    assert_eq!(produce(&mut k, 0, big.clone()), 0);
    assert_eq!(produce(&mut k, 1, big.clone()), 0);
    assert_eq!(
        produce(&mut k, 1, batch_of(1_700_000_000_000, &[b"no key"])),
        87,
        "INVALID_RECORD"
    );
    let s = topic_settings(&mut k, "live");
    assert_eq!(s["max.message.bytes"], ("5000".into(), 1));
    assert_eq!(s["cleanup.policy"], ("delete,compact".into(), 1));
    let meta = std::fs::read_to_string(dir.path().join("topics/live/topic.meta")).unwrap();
    assert!(meta.contains("offset_holes=1"), "{meta}");
    // All or nothing: a bad value fails the resource (INVALID_CONFIG, 40)
    // and its good change is not made; APPEND on a non-list setting, an
    // unknown setting and broker settings are refused.
    let got = incremental(
        &mut k,
        0,
        vec![
            res(
                2,
                "live",
                vec![
                    op("segment.ms", 0, Some("5000")),
                    op("retention.ms", 0, Some("soon")),
                ],
            ),
            res(4, "1", vec![op("log.retention.ms", 0, Some("1"))]),
        ],
        false,
    );
    assert_eq!(got, vec![(2, "live".into(), 40), (4, "1".into(), 42)]);
    assert_eq!(
        incremental(
            &mut k,
            1,
            vec![res(2, "live", vec![op("retention.ms", 2, Some("1"))])],
            false
        ),
        vec![(2, "live".into(), 40)]
    );
    assert_eq!(
        incremental(
            &mut k,
            1,
            vec![res(2, "live", vec![op("no.such.setting", 0, Some("1"))])],
            false
        ),
        vec![(2, "live".into(), 40)]
    );
    // validate_only checks and changes nothing.
    assert_eq!(
        incremental(
            &mut k,
            1,
            vec![res(2, "live", vec![op("segment.ms", 0, Some("5000"))])],
            true
        ),
        vec![(2, "live".into(), 0)]
    );
    let s = topic_settings(&mut k, "live");
    assert_eq!(s["segment.ms"].1, 5, "unchanged: {:?}", s["segment.ms"]);
    // SUBTRACT compact and DELETE the limit: back to the broker's.
    assert_eq!(
        incremental(
            &mut k,
            1,
            vec![res(
                2,
                "live",
                vec![
                    op("cleanup.policy", 3, Some("compact")),
                    op("max.message.bytes", 1, None)
                ]
            )],
            false
        ),
        vec![(2, "live".into(), 0)]
    );
    let s = topic_settings(&mut k, "live");
    assert_eq!(s["cleanup.policy"], ("delete".into(), 1));
    assert_eq!(s["max.message.bytes"].1, 5);
    assert_eq!(
        produce(&mut k, 0, batch_of(1_700_000_000_000, &[b"keyless again"])),
        0
    );
    // AlterConfigs (the legacy API) replaces the whole set of overrides.
    {
        use kafka_protocol::messages::alter_configs_request::{
            AlterConfigsResource as R, AlterableConfig as C,
        };
        let mut c = C::default();
        c.name = StrBytes::from_string("retention.ms".into());
        c.value = Some(StrBytes::from_string("123456".into()));
        let mut r = R::default();
        r.resource_type = 2;
        r.resource_name = StrBytes::from_string("live".into());
        r.configs = vec![c];
        let mut req = AlterConfigsRequest::default();
        req.resources = vec![r];
        for version in [0, 2] {
            let resp: AlterConfigsResponse = k.call(ApiKey::AlterConfigs, version, &req);
            assert_eq!(resp.responses[0].error_code, 0, "v{version}");
        }
    }
    let s = topic_settings(&mut k, "live");
    assert_eq!(s["retention.ms"], ("123456".into(), 1));
    assert_eq!(
        s["cleanup.policy"],
        ("delete".into(), 5),
        "not in the new set"
    );
    // The CLI sets and deletes settings the same way.
    let out = run(
        &[
            "topic",
            "alter",
            "live",
            "--config",
            "segment.ms=7000",
            "--delete-config",
            "retention.ms",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let out = run(
        &[
            "topic",
            "alter",
            "live",
            "--config",
            "segment.ms=soon",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("segment.ms"), "{}", out.stderr);
    // A restart keeps what was changed.
    drop(k);
    let mut b = b;
    assert!(b.terminate(T).success());
    let mut b = Broker::start_on(
        dir.path(),
        b.addr,
        &[
            "--kafka-listen",
            &kafka.to_string(),
            "--kafka-port-base",
            "0",
            "--shards",
            "2",
            "--auto-create-topics-enable",
            "false",
        ],
    );
    b.wait_kafka(kafka);
    let mut k = Kafka::connect(kafka);
    let s = topic_settings(&mut k, "live");
    assert_eq!(s["segment.ms"], ("7000".into(), 1));
    assert_eq!(s["retention.ms"].1, 5);
    drop(b);
}

/// Kafka's topic ids: every topic has a stable random id, the same on
/// every shard and across restarts, new for a topic deleted and created
/// again; Metadata v10+ reports it and finds a topic by it; Fetch v13+
/// reads by it (zero-copy, flexible versions), an unknown id answered
/// UNKNOWN_TOPIC_ID (100); `topic describe` prints it as Kafka does.
#[test]
fn topic_ids_are_stable_and_name_topics_in_metadata_and_fetch() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{FetchResponse, MetadataRequest};
    let dir = data_dir();
    let (mut b, kafka) = broker(dir.path(), "2");
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("ids", 2).unwrap();
    c.create_topic("other", 1).unwrap();
    let mut k = Kafka::connect(kafka);
    let id_of = |k: &mut Kafka, version: i16, topic: &str| -> uuid::Uuid {
        let m = metadata(k, version, Some(&[topic]));
        assert_eq!(m.topics[0].error_code, 0);
        m.topics[0].topic_id
    };
    let id = id_of(&mut k, 12, "ids");
    assert!(!id.is_nil());
    assert_ne!(id, id_of(&mut k, 12, "other"));
    for v in [10, 11, 13] {
        assert_eq!(id_of(&mut k, v, "ids"), id, "v{v}");
    }
    // Found by id alone (v12: no name).
    let by_id = |k: &mut Kafka, topic_id: uuid::Uuid| {
        let mut t = MetadataRequestTopic::default();
        t.topic_id = topic_id;
        t.name = None;
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        let m: MetadataResponse = k.call(ApiKey::Metadata, 12, &req);
        (
            m.topics[0].error_code,
            m.topics[0].name.as_ref().map(|n| n.to_string()),
            m.topics[0].topic_id,
        )
    };
    assert_eq!(by_id(&mut k, id), (0, Some("ids".into()), id));
    let nobody = uuid::Uuid::from_bytes([5; 16]);
    assert_eq!(by_id(&mut k, nobody), (100, None, nobody));
    // Fetch: by name at v12, by id at v13-17, records as produced.
    for p in 0..2 {
        let r: ProduceResponse = k.call(
            ApiKey::Produce,
            8,
            &produce_request("ids", p, -1, batch_of(1_700_000_000_000, &[b"a", b"b"])),
        );
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let fetch = |k: &mut Kafka, version: i16, topic_id: uuid::Uuid, partition: i32| {
        let mut req = fetch_request(if version < 13 { "ids" } else { "" }, partition, 0, 0);
        req.topics[0].topic_id = topic_id;
        let r: FetchResponse = k.call(ApiKey::Fetch, version, &req);
        let t = &r.responses[0];
        let p = &t.partitions[0];
        (
            t.topic_id,
            p.error_code,
            p.records.clone().unwrap_or_default(),
        )
    };
    for version in 12..=17 {
        for p in 0..2 {
            let (tid, code, records) = fetch(&mut k, version, id, p);
            assert_eq!(code, 0, "v{version} p{p}");
            assert_eq!(
                values_of(&records),
                vec![b"a".to_vec(), b"b".to_vec()],
                "v{version} p{p}"
            );
            if version >= 13 {
                assert_eq!(tid, id);
            }
        }
    }
    let (tid, code, _) = fetch(&mut k, 13, nobody, 0);
    assert_eq!((tid, code), (nobody, 100), "UNKNOWN_TOPIC_ID");
    // The CLI prints it as Kafka's tools do (URL-safe base64).
    let out = run(
        &["topic", "describe", "ids", "--broker", &b.broker_arg()],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("id {} ", kafka_id_string(id))),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Stable across a restart; a topic deleted and made again gets a new one.
    drop(k);
    drop(c);
    assert!(b.terminate(T).success());
    let mut b = Broker::start_on(
        dir.path(),
        b.addr,
        &[
            "--kafka-listen",
            &kafka.to_string(),
            "--kafka-port-base",
            "0",
            "--shards",
            "2",
            "--auto-create-topics-enable",
            "false",
        ],
    );
    b.wait_kafka(kafka);
    let mut k = Kafka::connect(kafka);
    assert_eq!(id_of(&mut k, 12, "ids"), id);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.delete_topic("ids").unwrap();
    c.create_topic("ids", 2).unwrap();
    let again = id_of(&mut k, 12, "ids");
    assert!(!again.is_nil() && again != id);
    assert_eq!(fetch(&mut k, 13, id, 0).1, 100, "the old id names nothing");
}

/// Kafka's `Uuid.toString`: URL-safe base64 without padding.
fn kafka_id_string(id: uuid::Uuid) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits: String = id.as_bytes().iter().map(|b| format!("{b:08b}")).collect();
    bits.as_bytes()
        .chunks(6)
        .map(|c| {
            let s = std::str::from_utf8(c).unwrap();
            let v = u8::from_str_radix(&format!("{s:0<6}"), 2).unwrap();
            A[v as usize] as char
        })
        .collect()
}

/// KIP-848 over the Kafka wire: ConsumerGroupHeartbeat joins with the
/// member id the client made up, gets partitions by topic id, shares them
/// incrementally with a second member (a partition moves only once its
/// owner reports it released), fences a stale epoch (FENCED_MEMBER_EPOCH),
/// refuses unknown assignors and non-prefix regexes, takes a prefix regex,
/// and leaves with epoch -1; ConsumerGroupDescribe shows the members.
#[test]
fn consumer_group_heartbeat_shares_partitions_incrementally_over_the_kafka_wire() {
    use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as Owned;
    use kafka_protocol::messages::{
        ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
        ConsumerGroupHeartbeatResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    };
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("feed", 4).unwrap();
    c.create_topic("feed-extra", 2).unwrap();
    let mut k = Kafka::connect(kafka);
    let topic_id = metadata(&mut k, 12, Some(&["feed"])).topics[0].topic_id;
    // The coordinator (any shard answers on the shared address).
    let mut fc = FindCoordinatorRequest::default();
    fc.key = sb("kip848");
    let r: FindCoordinatorResponse = k.call(ApiKey::FindCoordinator, 3, &fc);
    assert_eq!(r.error_code, 0);
    let beat = |k: &mut Kafka,
                member: &str,
                epoch: i32,
                subscribe: Option<(&[&str], Option<&str>)>,
                owned: Option<Vec<i32>>,
                assignor: Option<&str>|
     -> ConsumerGroupHeartbeatResponse {
        let mut r = ConsumerGroupHeartbeatRequest::default();
        r.group_id = GroupId(sb("kip848"));
        r.member_id = sb(member);
        r.member_epoch = epoch;
        r.rebalance_timeout_ms = 60_000;
        if let Some((topics, regex)) = subscribe {
            r.subscribed_topic_names = Some(topics.iter().map(|t| name(t)).collect());
            r.subscribed_topic_regex = regex.map(sb);
        }
        r.server_assignor = assignor.map(sb);
        r.topic_partitions = owned.map(|ps| {
            let mut o = Owned::default();
            o.topic_id = topic_id;
            o.partitions = ps;
            vec![o]
        });
        k.call(ApiKey::ConsumerGroupHeartbeat, 1, &r)
    };
    let parts = |r: &ConsumerGroupHeartbeatResponse| -> Vec<i32> {
        let a = r.assignment.as_ref().expect("an assignment");
        let mut ps: Vec<i32> = a
            .topic_partitions
            .iter()
            .inspect(|t| assert_eq!(t.topic_id, topic_id))
            .flat_map(|t| t.partitions.clone())
            .collect();
        ps.sort();
        ps
    };
    // Refusals: an assignor the broker lacks (UNSUPPORTED_ASSIGNOR, 112), a
    // regex that does not compile (INVALID_REGULAR_EXPRESSION, 128).
    let r = beat(&mut k, "a", 0, Some((&["feed"], None)), None, Some("fancy"));
    assert_eq!(r.error_code, 112);
    let r = beat(&mut k, "a", 0, Some((&[], Some("fe(d"))), None, None);
    assert_eq!(r.error_code, 128);
    // Member a joins alone: all four partitions, epoch 1 or more.
    let r = beat(
        &mut k,
        "a",
        0,
        Some((&["feed"], None)),
        None,
        Some("uniform"),
    );
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert_eq!(r.member_id.as_ref().unwrap().as_str(), "a");
    assert!(r.heartbeat_interval_ms > 0);
    assert_eq!(parts(&r), vec![0, 1, 2, 3]);
    let a_epoch = r.member_epoch;
    assert!(a_epoch > 0);
    let r = beat(&mut k, "a", a_epoch, None, Some(vec![0, 1, 2, 3]), None);
    assert_eq!((r.error_code, parts(&r)), (0, vec![0, 1, 2, 3]));
    // Member b joins: a must give up two first; b gets them only after a
    // reports them released.
    let r = beat(&mut k, "b", 0, Some((&["feed"], None)), None, None);
    assert_eq!(r.error_code, 0);
    assert!(parts(&r).is_empty(), "b waits: {:?}", parts(&r));
    let r = beat(&mut k, "a", a_epoch, None, Some(vec![0, 1, 2, 3]), None);
    let a_now = parts(&r);
    assert_eq!(a_now.len(), 2, "a keeps two: {a_now:?}");
    let r = beat(&mut k, "a", a_epoch, None, Some(a_now.clone()), None);
    assert_eq!(r.error_code, 0);
    let a_epoch = r.member_epoch;
    // b's current epoch, as ConsumerGroupDescribe reports it.
    let d = {
        let mut q = ConsumerGroupDescribeRequest::default();
        q.group_ids = vec![GroupId(sb("kip848"))];
        let r: ConsumerGroupDescribeResponse = k.call(ApiKey::ConsumerGroupDescribe, 1, &q);
        r
    };
    let g = &d.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert_eq!(g.members.len(), 2);
    let b_epoch = g
        .members
        .iter()
        .find(|m| m.member_id.as_str() == "b")
        .unwrap()
        .member_epoch;
    let r = beat(&mut k, "b", b_epoch, None, Some(vec![]), None);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let b_now = parts(&r);
    let mut all: Vec<i32> = a_now.iter().chain(&b_now).copied().collect();
    all.sort();
    assert_eq!(all, vec![0, 1, 2, 3], "a {a_now:?} b {b_now:?}");
    // A stale epoch is fenced (FENCED_MEMBER_EPOCH, 110).
    let r = beat(&mut k, "a", a_epoch + 100, None, None, None);
    assert_eq!(r.error_code, 110);
    // a leaves (-1): its answer carries epoch -1; b gets everything once
    // it heartbeats.
    let r = beat(&mut k, "a", -1, None, None, None);
    assert_eq!((r.error_code, r.member_epoch), (0, -1));
    let r = beat(&mut k, "b", b_epoch, None, Some(b_now.clone()), None);
    assert_eq!(r.error_code, 0);
    let r = beat(&mut k, "b", r.member_epoch, None, Some(parts(&r)), None);
    assert_eq!(parts(&r), vec![0, 1, 2, 3]);
    // A regex subscription (RE2, matched against whole names, as franz-go
    // and the Java client send them) takes both topics: c's target holds
    // partitions of feed-extra, which nobody else wants, at once.
    let r = beat(
        &mut k,
        "c",
        0,
        Some((&[], Some(".*(?:(?:feed-e.tra)|(?:feed)).*"))),
        None,
        None,
    );
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let extra = metadata(&mut k, 12, Some(&["feed-extra"])).topics[0].topic_id;
    let got: Vec<_> = r
        .assignment
        .as_ref()
        .unwrap()
        .topic_partitions
        .iter()
        .filter(|t| t.topic_id == extra)
        .flat_map(|t| t.partitions.clone())
        .collect();
    assert_eq!(got, vec![0, 1]);
    let mut q = ConsumerGroupDescribeRequest::default();
    q.group_ids = vec![GroupId(sb("kip848"))];
    let d: ConsumerGroupDescribeResponse = k.call(ApiKey::ConsumerGroupDescribe, 0, &q);
    let cm = d.groups[0]
        .members
        .iter()
        .find(|m| m.member_id.as_str() == "c")
        .unwrap();
    assert_eq!(
        cm.subscribed_topic_regex.as_ref().unwrap().as_str(),
        ".*(?:(?:feed-e.tra)|(?:feed)).*"
    );
}

/// The cluster-administration APIs tools call, answered for one node:
/// DescribeLogDirs (the data directory, each partition's size, gathered
/// from both shards), ElectLeaders (ELECTION_NOT_NEEDED: one replica leads
/// each partition), ListPartitionReassignments (none) and
/// AlterPartitionReassignments (only to where a partition already is;
/// anything else refused with the reason).
#[test]
fn cluster_admin_apis_answer_truthfully_for_one_node() {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions as ElectTps;
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
        DescribeLogDirsRequest, DescribeLogDirsResponse, ElectLeadersRequest, ElectLeadersResponse,
        ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    };
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("dirs", 2).unwrap();
    let mut k = Kafka::connect(kafka);
    let r: ProduceResponse = k.call(
        ApiKey::Produce,
        8,
        &produce_request("dirs", 1, -1, batch_of(1_700_000_000_000, &[&[9u8; 5000]])),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    // DescribeLogDirs: one directory, the data directory; partition 1 holds
    // the batch (sizes from its owner shard), partition 0 less.
    for version in 1..=4 {
        let mut t = DescribableLogDirTopic::default();
        t.topic = name("dirs");
        t.partitions = vec![0, 1];
        let mut req = DescribeLogDirsRequest::default();
        req.topics = Some(vec![t]);
        let r: DescribeLogDirsResponse = k.call(ApiKey::DescribeLogDirs, version, &req);
        assert_eq!(r.results.len(), 1);
        let d = &r.results[0];
        assert_eq!(d.error_code, 0);
        assert_eq!(d.log_dir.as_str(), dir.path().display().to_string());
        let sizes: Vec<(i32, i64)> = d.topics[0]
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.partition_size))
            .collect();
        assert_eq!(sizes.len(), 2, "{sizes:?}");
        let size = |p: i32| sizes.iter().find(|s| s.0 == p).unwrap().1;
        assert!(size(1) >= 5000 && size(1) > size(0), "{sizes:?}");
    }
    // Every partition (null): users' topics, both listed.
    let mut all = DescribeLogDirsRequest::default();
    all.topics = None;
    let r: DescribeLogDirsResponse = k.call(ApiKey::DescribeLogDirs, 4, &all);
    assert!(r.results[0]
        .topics
        .iter()
        .any(|t| t.name.0.as_str() == "dirs"));
    // ElectLeaders: not needed (84) for real partitions, 3 for others.
    let mut t = ElectTps::default();
    t.topic = name("dirs");
    t.partitions = vec![0, 1, 7];
    let mut req = ElectLeadersRequest::default();
    req.topic_partitions = Some(vec![t]);
    for version in 0..=2 {
        let r: ElectLeadersResponse = k.call(ApiKey::ElectLeaders, version, &req);
        let codes: Vec<(i32, i16)> = r.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| (p.partition_id, p.error_code))
            .collect();
        assert_eq!(codes, vec![(0, 84), (1, 84), (7, 3)], "v{version}");
    }
    // No reassignment is ever in progress.
    let r: ListPartitionReassignmentsResponse = k.call(
        ApiKey::ListPartitionReassignments,
        0,
        &ListPartitionReassignmentsRequest::default(),
    );
    assert_eq!((r.error_code, r.topics.len()), (0, 0));
    // A partition may be "moved" only to where it is.
    let owner0 = owners(&b, "dirs")[0];
    let other = 1 - owner0;
    let part = |p: i32, replicas: Option<Vec<i32>>| {
        let mut x = ReassignablePartition::default();
        x.partition_index = p;
        x.replicas = replicas.map(|rs| rs.into_iter().map(BrokerId).collect());
        x
    };
    let mut t = ReassignableTopic::default();
    t.name = name("dirs");
    t.partitions = vec![
        part(0, Some(vec![owner0])),
        part(0, Some(vec![other])),
        part(0, Some(vec![0, 1])),
        part(0, None),
        part(9, Some(vec![0])),
        part(0, Some(vec![42])),
    ];
    let mut req = AlterPartitionReassignmentsRequest::default();
    req.topics = vec![t];
    let r: AlterPartitionReassignmentsResponse =
        k.call(ApiKey::AlterPartitionReassignments, 0, &req);
    let codes: Vec<i16> = r.responses[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    // 0 (already there), 39 INVALID_REPLICA_ASSIGNMENT, 38
    // INVALID_REPLICATION_FACTOR, 85 NO_REASSIGNMENT_IN_PROGRESS, 3, 39.
    assert_eq!(codes, vec![0, 39, 38, 85, 3, 39]);
    assert_eq!(c.describe_topic("dirs").unwrap().partitions.len(), 2);
    // DescribeQuorum: one voter, node 0, the leader; no observers (per-shard
    // Kafka ports are off here: one node); v2 with the voter's endpoint.
    // Another partition: 3.
    {
        use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
        use kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};
        let mut t = TopicData::default();
        t.topic_name = name("__cluster_metadata");
        t.partitions = [0, 1]
            .map(|p| {
                let mut x = PartitionData::default();
                x.partition_index = p;
                x
            })
            .to_vec();
        let mut req = DescribeQuorumRequest::default();
        req.topics = vec![t];
        for version in 0..=2 {
            let r: DescribeQuorumResponse = k.call(ApiKey::DescribeQuorum, version, &req);
            assert_eq!(r.error_code, 0);
            let ps = &r.topics[0].partitions;
            assert_eq!((ps[0].error_code, ps[0].leader_id.0), (0, 0));
            assert_eq!(ps[0].current_voters.len(), 1);
            assert_eq!(ps[0].current_voters[0].replica_id.0, 0);
            assert!(ps[0].observers.is_empty());
            assert_eq!(ps[1].error_code, 3);
            if version >= 2 {
                assert_eq!(r.nodes.len(), 1);
                assert_eq!(r.nodes[0].listeners[0].port, kafka.port());
            }
        }
    }
    // AlterReplicaLogDirs: to the data directory, done; elsewhere,
    // LOG_DIR_NOT_FOUND (57); an unknown partition, 3.
    {
        use kafka_protocol::messages::alter_replica_log_dirs_request::{
            AlterReplicaLogDir, AlterReplicaLogDirTopic,
        };
        use kafka_protocol::messages::{AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse};
        let to = |path: String, parts: Vec<i32>| {
            let mut t = AlterReplicaLogDirTopic::default();
            t.name = name("dirs");
            t.partitions = parts;
            let mut d = AlterReplicaLogDir::default();
            d.path = StrBytes::from_string(path);
            d.topics = vec![t];
            d
        };
        let mut req = AlterReplicaLogDirsRequest::default();
        req.dirs = vec![
            to(dir.path().display().to_string(), vec![0, 5]),
            to("/elsewhere".into(), vec![1]),
        ];
        for version in 1..=2 {
            let r: AlterReplicaLogDirsResponse = k.call(ApiKey::AlterReplicaLogDirs, version, &req);
            let codes: Vec<(i32, i16)> = r
                .results
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (p.partition_index, p.error_code))
                })
                .collect();
            assert_eq!(codes, vec![(0, 0), (5, 3), (1, 57)], "v{version}");
        }
    }
}

/// DescribeTopicPartitions (KIP-966, what the Java Admin's describeTopics
/// uses): topics by name with ids and leaders, paged by the partition
/// limit with a cursor that resumes exactly where the last page stopped;
/// an unknown topic is UNKNOWN_TOPIC_OR_PARTITION.
#[test]
fn describe_topic_partitions_pages_through_topics_with_a_cursor() {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    use kafka_protocol::messages::{
        DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
    };
    let dir = data_dir();
    let (_b, kafka) = broker(dir.path(), "2");
    let mut k = Kafka::connect(kafka);
    assert_eq!(
        create_topics(&mut k, 4, &[("pa", 3, 1), ("pb", 4, 1)], &[]),
        vec![("pa".to_owned(), 0), ("pb".to_owned(), 0)]
    );
    let ids: Vec<uuid::Uuid> = ["pa", "pb"]
        .iter()
        .map(|t| metadata(&mut k, 12, Some(&[t])).topics[0].topic_id)
        .collect();
    let page = |k: &mut Kafka, names: &[&str], limit: i32, cursor: Option<(&str, i32)>| {
        let mut req = DescribeTopicPartitionsRequest::default();
        req.topics = names
            .iter()
            .map(|n| {
                let mut t = TopicRequest::default();
                t.name = name(n);
                t
            })
            .collect();
        req.response_partition_limit = limit;
        req.cursor = cursor.map(|(t, p)| {
            let mut c = Cursor::default();
            c.topic_name = name(t);
            c.partition_index = p;
            c
        });
        let r: DescribeTopicPartitionsResponse = k.call(ApiKey::DescribeTopicPartitions, 0, &req);
        r
    };
    // Pages of 3 partitions through pa (3) and pb (4): 3, 3, 1.
    let mut seen = Vec::new();
    let mut cursor: Option<(String, i32)> = None;
    for _ in 0..5 {
        let r = page(
            &mut k,
            &["pb", "pa"],
            3,
            cursor.as_ref().map(|(t, p)| (t.as_str(), *p)),
        );
        for t in &r.topics {
            assert_eq!(t.error_code, 0);
            let n = t.name.as_ref().unwrap().to_string();
            assert_eq!(t.topic_id, ids[usize::from(n == "pb")]);
            for p in &t.partitions {
                assert_eq!(p.replica_nodes, vec![p.leader_id]);
                seen.push((n.clone(), p.partition_index));
            }
        }
        match r.next_cursor {
            Some(c) => cursor = Some((c.topic_name.to_string(), c.partition_index)),
            None => break,
        }
    }
    let want: Vec<(String, i32)> = (0..3)
        .map(|p| ("pa".to_owned(), p))
        .chain((0..4).map(|p| ("pb".to_owned(), p)))
        .collect();
    assert_eq!(seen, want);
    // An unknown topic; no names: every topic (the offsets topic too).
    let r = page(&mut k, &["nope"], 100, None);
    assert_eq!(r.topics[0].error_code, 3);
    let r = page(&mut k, &[], 2000, None);
    let names: Vec<String> = r
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().to_string())
        .collect();
    assert!(names.contains(&"__consumer_offsets".to_owned()) && names.contains(&"pa".to_owned()));
}

/// OffsetDelete (`kafka-consumer-groups --delete-offsets`, the Admin's
/// deleteConsumerGroupOffsets): a group's committed offsets of partitions
/// it does not consume go, durably; those of a topic a member subscribes
/// to stay (GROUP_SUBSCRIBED_TO_TOPIC), for a classic consumer (from its
/// subscription bytes) and a KIP-848 member alike; unknown partitions get
/// UNKNOWN_TOPIC_OR_PARTITION and an unknown group GROUP_ID_NOT_FOUND.
#[test]
fn offset_delete_drops_offsets_of_topics_the_group_does_not_consume() {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::{
        ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
        ConsumerProtocolSubscription, OffsetDeleteRequest, OffsetDeleteResponse,
    };
    use kafka_protocol::protocol::Encodable;
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("od", 2).unwrap();
    c.create_topic("kept", 1).unwrap();
    let mut k = Kafka::connect(kafka);
    let commit_all = |k: &mut Kafka, group: &str, member: &str, generation: i32| {
        let mut r = OffsetCommitRequest::default();
        r.group_id = GroupId(sb(group));
        r.member_id = sb(member);
        r.generation_id_or_member_epoch = generation;
        r.topics = [("od", vec![0, 1]), ("kept", vec![0])]
            .into_iter()
            .map(|(topic, ps)| {
                let mut t = OffsetCommitRequestTopic::default();
                t.name = name(topic);
                t.partitions = ps
                    .into_iter()
                    .map(|p| {
                        let mut x = OffsetCommitRequestPartition::default();
                        x.partition_index = p;
                        x.committed_offset = 10 + i64::from(p);
                        x
                    })
                    .collect();
                t
            })
            .collect();
        let r: OffsetCommitResponse = k.call(ApiKey::OffsetCommit, 8, &r);
        for t in &r.topics {
            for p in &t.partitions {
                assert_eq!(p.error_code, 0, "commit {group} {:?}", t.name);
            }
        }
    };
    let committed = |k: &mut Kafka, group: &str, topic: &str, p: i32| -> i64 {
        let mut r = OffsetFetchRequest::default();
        r.group_id = GroupId(sb(group));
        let mut t = OffsetFetchRequestTopic::default();
        t.name = name(topic);
        t.partition_indexes = vec![p];
        r.topics = Some(vec![t]);
        let f: OffsetFetchResponse = k.call(ApiKey::OffsetFetch, 5, &r);
        f.topics[0].partitions[0].committed_offset
    };
    let delete = |k: &mut Kafka, group: &str, asks: &[(&str, &[i32])]| {
        let mut r = OffsetDeleteRequest::default();
        r.group_id = GroupId(sb(group));
        r.topics = asks
            .iter()
            .map(|(topic, ps)| {
                let mut t = OffsetDeleteRequestTopic::default();
                t.name = name(topic);
                t.partitions = ps
                    .iter()
                    .map(|&p| {
                        let mut x = OffsetDeleteRequestPartition::default();
                        x.partition_index = p;
                        x
                    })
                    .collect();
                t
            })
            .collect();
        let r: OffsetDeleteResponse = k.call(ApiKey::OffsetDelete, 0, &r);
        let codes: Vec<(String, i32, i16)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index, p.error_code))
            })
            .collect();
        (r.error_code, codes)
    };
    // A group with no members: offsets of named partitions go, others stay.
    commit_all(&mut k, "idle", "", -1);
    let (e, codes) = delete(&mut k, "idle", &[("od", &[0, 9]), ("nosuch", &[0])]);
    assert_eq!(e, 0);
    assert_eq!(
        codes,
        vec![
            ("od".to_owned(), 0, 0),
            ("od".to_owned(), 9, 3),
            ("nosuch".to_owned(), 0, 3)
        ]
    );
    assert_eq!(committed(&mut k, "idle", "od", 0), -1);
    assert_eq!(committed(&mut k, "idle", "od", 1), 11);
    assert_eq!(committed(&mut k, "idle", "kept", 0), 10);
    // No such group at all.
    assert_eq!(delete(&mut k, "nobody", &[("od", &[0])]).0, 69);

    // A classic consumer subscribed to "od": its offsets of "od" stay,
    // those of "kept" go.
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = vec![sb("od")];
    let mut metadata = bytes::BytesMut::new();
    metadata.extend_from_slice(&1i16.to_be_bytes());
    sub.encode(&mut metadata, 1).unwrap();
    let mut join = join_request("classic-od", "");
    join.protocols[0].metadata = metadata.freeze();
    let j: JoinGroupResponse = k.call(ApiKey::JoinGroup, 3, &join);
    assert_eq!(j.error_code, 0, "v3 joins without a member id round");
    let member = j.member_id.to_string();
    let s: SyncGroupResponse = k.call(
        ApiKey::SyncGroup,
        3,
        &sync_request("classic-od", &member, j.generation_id, &[(&member, b"")]),
    );
    assert_eq!(s.error_code, 0);
    commit_all(&mut k, "classic-od", &member, j.generation_id);
    let (e, codes) = delete(&mut k, "classic-od", &[("od", &[0, 1]), ("kept", &[0])]);
    assert_eq!(e, 0);
    assert_eq!(
        codes,
        vec![
            ("od".to_owned(), 0, 86),
            ("od".to_owned(), 1, 86),
            ("kept".to_owned(), 0, 0)
        ]
    );
    assert_eq!(committed(&mut k, "classic-od", "od", 1), 11);
    assert_eq!(committed(&mut k, "classic-od", "kept", 0), -1);

    // A KIP-848 member subscribed to "kept": the same, the other way round.
    let mut hb = ConsumerGroupHeartbeatRequest::default();
    hb.group_id = GroupId(sb("kip848-od"));
    hb.member_id = sb("m-1");
    hb.member_epoch = 0;
    hb.rebalance_timeout_ms = 60_000;
    hb.subscribed_topic_names = Some(vec![name("kept")]);
    hb.topic_partitions = Some(vec![]);
    let h: ConsumerGroupHeartbeatResponse = k.call(ApiKey::ConsumerGroupHeartbeat, 1, &hb);
    assert_eq!(h.error_code, 0);
    let (_, codes) = delete(&mut k, "kip848-od", &[("kept", &[0]), ("od", &[0])]);
    assert_eq!(
        codes,
        vec![("kept".to_owned(), 0, 86), ("od".to_owned(), 0, 0)]
    );

    // What was deleted stays deleted across a restart.
    drop(k);
    let mut b = b;
    b.kill();
    let mut b2 = Broker::start_on(
        dir.path(),
        b.addr,
        &[
            "--kafka-listen",
            &kafka.to_string(),
            "--kafka-port-base",
            "0",
            "--shards",
            "2",
            "--auto-create-topics-enable",
            "false",
        ],
    );
    b2.wait_kafka(kafka);
    let mut k = Kafka::connect(kafka);
    assert_eq!(committed(&mut k, "idle", "od", 0), -1);
    assert_eq!(committed(&mut k, "idle", "od", 1), 11);
    assert_eq!(committed(&mut k, "classic-od", "kept", 0), -1);
}

/// OffsetForLeaderEpoch (what a Kafka consumer asks to detect a log
/// truncated under it): every partition has one epoch, 0; asked for it,
/// the log end offset; a later epoch is unknown (-1, -1); a client that
/// knows a newer current epoch than 0 gets UNKNOWN_LEADER_EPOCH (75);
/// partitions that do not exist, UNKNOWN_TOPIC_OR_PARTITION.
#[test]
fn offset_for_leader_epoch_answers_the_one_epoch_with_the_log_end() {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic("ep", 2)
        .unwrap();
    let mut k = Kafka::connect(kafka);
    let r: ProduceResponse = k.call(
        ApiKey::Produce,
        8,
        &produce_request(
            "ep",
            1,
            -1,
            batch_of(1_700_000_000_000, &[b"a", b"b", b"c"]),
        ),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let ask = |k: &mut Kafka, version: i16, topic: &str, p: i32, wanted: i32, current: i32| {
        let mut x = OffsetForLeaderPartition::default();
        x.partition = p;
        x.leader_epoch = wanted;
        x.current_leader_epoch = current;
        let mut t = OffsetForLeaderTopic::default();
        t.topic = name(topic);
        t.partitions = vec![x];
        let mut req = OffsetForLeaderEpochRequest::default();
        req.replica_id = kafka_protocol::messages::BrokerId(-1);
        req.topics = vec![t];
        let r: OffsetForLeaderEpochResponse = k.call(ApiKey::OffsetForLeaderEpoch, version, &req);
        let e = &r.topics[0].partitions[0];
        (e.error_code, e.leader_epoch, e.end_offset)
    };
    for version in 2..=4 {
        assert_eq!(
            ask(&mut k, version, "ep", 0, 0, -1),
            (0, 0, 0),
            "v{version}"
        );
        assert_eq!(ask(&mut k, version, "ep", 1, 0, 0), (0, 0, 3), "v{version}");
        assert_eq!(
            ask(&mut k, version, "ep", 1, 5, -1),
            (0, -1, -1),
            "v{version}"
        );
        assert_eq!(
            ask(&mut k, version, "ep", 1, 0, 3),
            (75, -1, -1),
            "v{version}"
        );
        assert_eq!(ask(&mut k, version, "ep", 9, 0, -1).0, 3, "v{version}");
        assert_eq!(ask(&mut k, version, "nosuch", 0, 0, -1).0, 3, "v{version}");
    }
}

/// Without an authorizer the ACL APIs answer SECURITY_DISABLED (Kafka's
/// answer with no authorizer configured). With `--authorizer acl` and no
/// SASL every Kafka client is User:ANONYMOUS: with no ACL it may do
/// nothing: Metadata lists no topic and names the asked one
/// TOPIC_AUTHORIZATION_FAILED, a produce is refused and writes nothing, a
/// fetch is refused at once, an idempotent producer gets no id, and it
/// may not manage ACLs. An ACL granting User:* Write on a prefix opens
/// exactly that.
#[test]
fn the_authorizer_refuses_what_no_acl_allows() {
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::{
        CreateAclsRequest, CreateAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
        InitProducerIdRequest, InitProducerIdResponse,
    };
    let idempotent = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
        .with_producer_epoch(-1);
    let describe_all = DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1);
    {
        let dir = data_dir();
        let (_b, kafka) = broker(dir.path(), "1");
        let mut k = Kafka::connect(kafka);
        let r: DescribeAclsResponse = k.call(ApiKey::DescribeAcls, 3, &describe_all);
        assert_eq!(r.error_code, 54, "SECURITY_DISABLED");
    }
    let dir = data_dir();
    let (b, kafka) = broker_with(
        dir.path(),
        "2",
        &[
            "--auto-create-topics-enable",
            "false",
            "--authorizer",
            "acl",
        ],
    );
    // The native listener is the operator's (no SASL there yet).
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("open-t", 1).unwrap();
    c.create_topic("closed", 1).unwrap();
    let mut k = Kafka::connect(kafka);
    let m = metadata(&mut k, 12, None);
    assert!(m.topics.is_empty(), "{:?}", m.topics);
    let m = metadata(&mut k, 12, Some(&["closed"]));
    assert_eq!(m.topics[0].error_code, 29, "TOPIC_AUTHORIZATION_FAILED");
    let batch = batch_of(1_700_000_000_000, &[b"x"]);
    let r: ProduceResponse = k.call(
        ApiKey::Produce,
        9,
        &produce_request("closed", 0, -1, batch.clone()),
    );
    assert_eq!(r.responses[0].partition_responses[0].error_code, 29);
    assert_eq!(
        c.list_offset("closed", 0, -1).unwrap(),
        0,
        "nothing written"
    );
    let r: FetchResponse = k.call(ApiKey::Fetch, 12, &fetch_request("closed", 0, 0, 30_000));
    assert_eq!(r.responses[0].partitions[0].error_code, 29);
    let r: InitProducerIdResponse = k.call(ApiKey::InitProducerId, 4, &idempotent);
    assert_eq!(r.error_code, 31, "CLUSTER_AUTHORIZATION_FAILED");
    let grant = CreateAclsRequest::default().with_creations(vec![AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(StrBytes::from_static_str("open-"))
        .with_resource_pattern_type(4)
        .with_principal(StrBytes::from_static_str("User:*"))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(4)
        .with_permission_type(3)]);
    let r: CreateAclsResponse = k.call(ApiKey::CreateAcls, 3, &grant);
    assert_eq!(r.results[0].error_code, 31);
    let r: DescribeAclsResponse = k.call(ApiKey::DescribeAcls, 3, &describe_all);
    assert_eq!(r.error_code, 31);

    // The operator's `shardlog acl` (native listener) opens `open-*` for
    // writes, lists it, and removes it again.
    let acl = |args: &[&str]| {
        let mut a = vec!["acl"];
        a.extend_from_slice(args);
        let broker = b.broker_arg();
        a.extend(["--broker", &broker]);
        run(&a, b"", T)
    };
    let grant_args = [
        "add",
        "--allow-principal",
        "User:*",
        "--operation",
        "write",
        "--topic",
        "open-",
        "--resource-pattern-type",
        "prefixed",
    ];
    let out = acl(&grant_args);
    assert!(out.status.success(), "{}", out.stderr);
    let out = acl(&["list", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"acls":[{"resource_type":"Topic","pattern":"Prefixed","name":"open-","principal":"User:*","host":"*","operation":"Write","permission":"Allow"}]}"#
    );
    let write_open = |k: &mut Kafka| -> i16 {
        let batch = batch_of(1_700_000_000_000, &[b"y"]);
        let r: ProduceResponse =
            k.call(ApiKey::Produce, 9, &produce_request("open-t", 0, -1, batch));
        r.responses[0].partition_responses[0].error_code
    };
    assert_eq!(write_open(&mut k), 0);
    let out = acl(&[
        "remove",
        "--topic",
        "open-",
        "--resource-pattern-type",
        "prefixed",
    ]);
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(write_open(&mut k), 29);
    let out = acl(&[
        "remove",
        "--topic",
        "open-",
        "--resource-pattern-type",
        "prefixed",
    ]);
    assert!(!out.status.success() && out.stderr.contains("no ACL matched"));
    let out = acl(&[
        "add",
        "--allow-principal",
        "alice",
        "--operation",
        "Read",
        "--topic",
        "t",
    ]);
    assert!(!out.status.success() && out.stderr.contains("not a principal"));
    drop(k);

    // A super user grants Write on `open-*` to everyone.
    let dir2 = data_dir();
    drop(b);
    let (b, kafka) = broker_with(
        dir2.path(),
        "2",
        &[
            "--auto-create-topics-enable",
            "false",
            "--authorizer",
            "acl",
            "--super-users",
            "User:ANONYMOUS",
        ],
    );
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("open-t", 1).unwrap();
    let mut k = Kafka::connect(kafka);
    let r: CreateAclsResponse = k.call(ApiKey::CreateAcls, 3, &grant);
    assert_eq!(r.results[0].error_code, 0);
    let r: DescribeAclsResponse = k.call(ApiKey::DescribeAcls, 3, &describe_all);
    assert_eq!(r.resources.len(), 1);
    assert_eq!(r.resources[0].resource_name.as_str(), "open-");
    assert_eq!(r.resources[0].acls[0].principal.as_str(), "User:*");
    drop(k);
    drop(b);
    // The same data, no super user: the ACL (durable) now grants it.
    let (_b, kafka) = broker_with(
        dir2.path(),
        "2",
        &[
            "--auto-create-topics-enable",
            "false",
            "--authorizer",
            "acl",
        ],
    );
    let mut k = Kafka::connect(kafka);
    let m = metadata(&mut k, 12, None);
    let names: Vec<&str> = m
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().as_str())
        .collect();
    assert_eq!(names, ["open-t"]);
    let owner = m.topics[0].partitions[0].leader_id.0;
    assert!(owner >= 0);
    let r: ProduceResponse = k.call(ApiKey::Produce, 9, &produce_request("open-t", 0, -1, batch));
    // Per-shard ports are off: the one listener forwards to the owner.
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let r: InitProducerIdResponse = k.call(ApiKey::InitProducerId, 4, &idempotent);
    assert_eq!(
        r.error_code, 0,
        "Write on a topic lets a producer be idempotent"
    );
}

/// A request_percentage quota (KIP-124): a client whose requests take more
/// of a shard's time than its share gets throttle_time_ms in its answers
/// and its connection muted, so it is answered far less often than a
/// client beside it that no quota names, which is never throttled.
#[test]
fn a_client_over_its_request_time_share_is_throttled_and_another_is_not() {
    let dir = data_dir();
    let (b, kafka) = broker(dir.path(), "2");
    let mut admin = Kafka::connect(kafka);
    let topics: Vec<String> = (0..20).map(|i| format!("rq{i}")).collect();
    let specs: Vec<(&str, i32, i16)> = topics.iter().map(|t| (t.as_str(), 4, 1)).collect();
    for (_, code) in create_topics(&mut admin, 4, &specs, &[]) {
        assert_eq!(code, 0);
    }
    // 1% of one thread: 10 ms of the shard's time per second.
    let ba = b.addr.to_string();
    let set = [
        "quota",
        "set",
        "--client-id",
        "greedy",
        "--request-percentage",
        "1",
        "--broker",
        &ba,
    ];
    assert!(run(&set, b"", T).status.success());
    // Both clients ask for every topic's metadata as fast as they are
    // answered, at the same time, for the same while.
    let hammer = move |client_id: &'static str| {
        std::thread::spawn(move || {
            let mut k = Kafka::connect_as(kafka, client_id);
            let (mut answered, mut throttled, mut longest) = (0u64, 0u64, 0i32);
            let until = Instant::now() + Duration::from_secs(4);
            while Instant::now() < until {
                let r = metadata(&mut k, 12, None);
                assert!(r.topics.len() >= 20); // and the internal topics
                answered += 1;
                if r.throttle_time_ms > 0 {
                    throttled += 1;
                    longest = longest.max(r.throttle_time_ms);
                }
            }
            // Produce answers carry it too (the longer of its byte-rate and
            // request-time throttles).
            let mut produce_throttled = 0;
            let until = Instant::now() + Duration::from_secs(1);
            while Instant::now() < until {
                let req = produce_request("rq0", 0, 1, batch_of(1, &[b"v"]));
                let r: ProduceResponse = k.call(ApiKey::Produce, 9, &req);
                let p = &r.responses[0].partition_responses[0];
                assert_eq!(p.error_code, 0);
                produce_throttled += u64::from(r.throttle_time_ms > 0);
            }
            (
                answered,
                throttled + produce_throttled,
                longest,
                produce_throttled,
            )
        })
    };
    let greedy = hammer("greedy");
    let free = hammer("free");
    let (g, g_throttled, g_longest, g_produce) = greedy.join().unwrap();
    let (f, f_throttled, _, _) = free.join().unwrap();
    eprintln!("greedy: {g} answers, {g_throttled} throttled (longest {g_longest} ms); free: {f}");
    assert!(g_throttled > 0, "the greedy client was never told to wait");
    assert!(g_produce > 0, "no Produce answer carried the throttle");
    assert!(
        g_longest <= 11_000,
        "a throttle over Kafka's cap: {g_longest}"
    );
    assert_eq!(f_throttled, 0, "a client no quota names was throttled");
    assert!(
        g * 4 < f,
        "the greedy client was answered {g} times, the free one {f}"
    );
}
