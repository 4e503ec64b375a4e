//! The Kafka wire for `--kafka ADDR`: the same workload against any
//! Kafka-compatible broker (Apache Kafka, Redpanda, shardlog's own Kafka
//! listener), so one run compares them in one sitting.
//!
//! Owns: one blocking connection per broker node (from Metadata), each
//! partition's requests sent to its leader, responses read in order per
//! connection (Kafka answers a connection's requests in order), and the
//! few requests a run needs: Metadata, CreateTopics, ListOffsets, Produce
//! (v8, one RecordBatch v2 per request, built by shardlog's `BatchBuilder`
//! as for the native wire) and Fetch (v11, one partition per request).
//!
//! With `--tls-ca` every connection speaks TLS (`shardlog::client::tls`),
//! with `--sasl-mechanism` it logs in first (SaslHandshake v1 and
//! SaslAuthenticate v2: PLAIN, or SCRAM with `security::scram`'s client
//! side, the server's signature checked), as Kafka's clients do.
//!
//! Must never: wait without a deadline (every read has one), or read a
//! response for another request (correlation ids are checked).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use shardlog::client::tls::Transport;
use shardlog::security::scram::ClientExchange;

use shardlog::client::sasl::Login as SaslLogin;
use shardlog::security::sasl::SaslMechanism;

/// Versions every Kafka 4.x broker and shardlog's listener speak.
const PRODUCE_V: i16 = 8;
const FETCH_V: i16 = 11;
const METADATA_V: i16 = 9;
const CREATE_TOPICS_V: i16 = 4;
const LIST_OFFSETS_V: i16 = 5;
/// A read waits at most this long (a fetch's own wait is far shorter).
const READ_DEADLINE: Duration = Duration::from_secs(30);
/// The largest response accepted (a fetch is at most ~1 MiB per partition).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A request in flight: which connection, which correlation id; `None` for
/// an acks=0 produce, which Kafka never answers.
#[derive(Debug, Clone, Copy)]
pub struct KTicket {
    conn: Option<usize>,
    cid: i32,
}

struct Conn {
    s: Transport,
    next_cid: i32,
}

static SASL: OnceLock<SaslLogin> = OnceLock::new();

/// Every connection this process opens from now on logs in as `login`.
pub fn use_sasl(login: SaslLogin) {
    let _ = SASL.set(login);
}

impl Conn {
    fn open(addr: &str) -> Result<Conn> {
        let sock = addr
            .to_socket_addrs()
            .with_context(|| format!("{addr}: not an address"))?
            .next()
            .ok_or_else(|| anyhow!("{addr}: no address"))?;
        let s = TcpStream::connect_timeout(&sock, Duration::from_secs(10))
            .with_context(|| format!("cannot connect to {addr}"))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(READ_DEADLINE))?;
        s.set_write_timeout(Some(READ_DEADLINE))?;
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let s = Transport::wrap(s, host).with_context(|| format!("TLS to {addr}"))?;
        let mut c = Conn { s, next_cid: 1 };
        if let Some(login) = SASL.get() {
            c.login(login)
                .with_context(|| format!("SASL {} to {addr}", login.mechanism.name()))?;
        }
        Ok(c)
    }

    /// SaslHandshake, then SaslAuthenticate until the mechanism is done.
    fn login(&mut self, login: &SaslLogin) -> Result<()> {
        let mut hs = SaslHandshakeRequest::default();
        hs.mechanism = StrBytes::from_static_str(login.mechanism.name());
        let r: SaslHandshakeResponse = self.call(ApiKey::SaslHandshake, 1, &hs)?;
        if let Some(e) = error_of(r.error_code) {
            let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
            bail!("the broker refused the mechanism: {e} (it offers {offered:?})");
        }
        let say = |c: &mut Conn, token: Vec<u8>| -> Result<Bytes> {
            let mut a = SaslAuthenticateRequest::default();
            a.auth_bytes = Bytes::from(token);
            let r: SaslAuthenticateResponse = c.call(ApiKey::SaslAuthenticate, 2, &a)?;
            if let Some(e) = error_of(r.error_code) {
                let why = r.error_message.as_ref().map_or("", |m| m.as_str());
                bail!("{e}: {why}");
            }
            Ok(r.auth_bytes)
        };
        let scram = match login.mechanism {
            SaslMechanism::Plain => {
                let token = format!("\0{}\0{}", login.username, login.password);
                say(self, token.into_bytes())?;
                return Ok(());
            }
            SaslMechanism::Scram(m) => m,
        };
        let (mut ex, first) =
            ClientExchange::start(scram, &login.username, &login.password, &mut |b| {
                getrandom::getrandom(b).expect("the OS's random source")
            });
        let server_first = say(self, first)?;
        let last = ex.respond(&server_first)?;
        let server_final = say(self, last)?;
        ex.verify(&server_final).context(
            "the broker's SCRAM signature is wrong: it does not hold this user's credential",
        )?;
        Ok(())
    }

    fn send<R: Encodable>(&mut self, api: ApiKey, version: i16, req: &R) -> Result<i32> {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        let mut h = RequestHeader::default();
        h.request_api_key = api as i16;
        h.request_api_version = version;
        h.correlation_id = cid;
        h.client_id = Some(StrBytes::from_static_str("shardlog-bench"));
        let mut f = BytesMut::with_capacity(256);
        f.put_i32(0);
        h.encode(&mut f, api.request_header_version(version))?;
        req.encode(&mut f, version)?;
        let len = (f.len() - 4) as i32;
        f[..4].copy_from_slice(&len.to_be_bytes());
        self.s.write_all(&f)?;
        Ok(cid)
    }

    fn recv<R: Decodable>(&mut self, api: ApiKey, version: i16, cid: i32) -> Result<R> {
        let mut len = [0u8; 4];
        self.s
            .read_exact(&mut len)
            .context("reading a response (the broker closed or stalled)")?;
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > MAX_RESPONSE_BYTES {
            bail!("a response of {len} bytes");
        }
        let mut body = vec![0u8; len as usize];
        self.s.read_exact(&mut body)?;
        decode_response(api, version, cid, Bytes::from(body))
    }

    fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Q,
    ) -> Result<R> {
        let cid = self.send(api, version, req)?;
        self.recv(api, version, cid)
    }
}

/// One response frame's body (after its length): the header's
/// correlation id must be `cid`, and the body must decode exactly.
fn decode_response<R: Decodable>(
    api: ApiKey,
    version: i16,
    cid: i32,
    mut body: Bytes,
) -> Result<R> {
    let h = ResponseHeader::decode(&mut body, api.response_header_version(version))?;
    if h.correlation_id != cid {
        bail!(
            "{api:?}: response for request {} while waiting for {cid}",
            h.correlation_id
        );
    }
    let r = R::decode(&mut body, version)?;
    if body.has_remaining() {
        bail!("{api:?} v{version}: {} trailing bytes", body.remaining());
    }
    Ok(r)
}

fn error_of(code: i16) -> Option<String> {
    (code != 0).then(|| match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?} ({code})"),
        None => format!("error {code}"),
    })
}

/// A client of one topic on a Kafka-protocol broker.
pub struct KafkaClient {
    bootstrap: String,
    /// Connections by node id, opened when first needed.
    conns: Vec<(i32, Conn)>,
    /// Node addresses from Metadata.
    nodes: HashMap<i32, String>,
    /// Leaders of the topic's partitions, by partition.
    leaders: Vec<i32>,
    topic: String,
}

impl KafkaClient {
    pub fn connect(bootstrap: &str) -> Result<KafkaClient> {
        let conn = Conn::open(bootstrap)?;
        Ok(KafkaClient {
            bootstrap: bootstrap.to_owned(),
            conns: vec![(-1, conn)],
            nodes: HashMap::new(),
            leaders: Vec::new(),
            topic: String::new(),
        })
    }

    fn bootstrap_conn(&mut self) -> &mut Conn {
        &mut self.conns[0].1
    }

    /// The connection to `node`, opened on first use.
    fn conn_index(&mut self, node: i32) -> Result<usize> {
        if let Some(i) = self.conns.iter().position(|(n, _)| *n == node) {
            return Ok(i);
        }
        let addr =
            self.nodes.get(&node).cloned().ok_or_else(|| {
                anyhow!("node {node} is not in the metadata of {}", self.bootstrap)
            })?;
        self.conns.push((node, Conn::open(&addr)?));
        Ok(self.conns.len() - 1)
    }

    /// Loads `topic`'s leaders; returns its partition count (0: it does
    /// not exist).
    pub fn topic(&mut self, topic: &str) -> Result<u32> {
        let mut t = MetadataRequestTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(topic.to_owned())));
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![t]);
        req.allow_auto_topic_creation = false;
        let r: MetadataResponse = self
            .bootstrap_conn()
            .call(ApiKey::Metadata, METADATA_V, &req)?;
        self.nodes = r
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let Some(t) = r.topics.first() else {
            bail!("no metadata for topic {topic}");
        };
        if t.error_code == ResponseError::UnknownTopicOrPartition.code() {
            return Ok(0);
        }
        if let Some(e) = error_of(t.error_code) {
            bail!("metadata of topic {topic}: {e}");
        }
        let mut leaders = vec![-1; t.partitions.len()];
        for p in &t.partitions {
            let i = p.partition_index as usize;
            if i >= leaders.len() {
                bail!("topic {topic}: partition {i} out of 0..{}", leaders.len());
            }
            leaders[i] = p.leader_id.0;
        }
        if let Some(p) = leaders.iter().position(|&l| l < 0) {
            bail!("topic {topic}: partition {p} has no leader");
        }
        self.leaders = leaders;
        self.topic = topic.to_owned();
        Ok(self.leaders.len() as u32)
    }

    /// CreateTopics with one copy; Ok(false) if it already exists.
    pub fn create_topic(&mut self, topic: &str, partitions: u32) -> Result<bool> {
        let mut t = CreatableTopic::default();
        t.name = TopicName(StrBytes::from_string(topic.to_owned()));
        t.num_partitions = partitions as i32;
        t.replication_factor = 1;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = 30_000;
        let r: CreateTopicsResponse =
            self.bootstrap_conn()
                .call(ApiKey::CreateTopics, CREATE_TOPICS_V, &req)?;
        let code = r.topics.first().map_or(0, |t| t.error_code);
        if code == ResponseError::TopicAlreadyExists.code() {
            return Ok(false);
        }
        if let Some(e) = error_of(code) {
            bail!("creating topic {topic}: {e}");
        }
        // Kafka creates asynchronously: wait (bounded) until every
        // partition has a leader.
        for _ in 0..100 {
            if self.topic(topic).unwrap_or(0) == partitions {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("topic {topic} has no leaders 10 s after its creation")
    }

    /// The offset at `at` (-2 earliest, -1 latest) of one partition. A
    /// topic Kafka just created answers NOT_LEADER_OR_FOLLOWER for a moment
    /// after its leaders show in Metadata: retried (bounded: 10 s) with the
    /// metadata read again.
    pub fn list_offset(&mut self, partition: u32, at: i64) -> Result<i64> {
        let retriable = [
            ResponseError::NotLeaderOrFollower.code(),
            ResponseError::LeaderNotAvailable.code(),
            ResponseError::UnknownTopicOrPartition.code(),
        ];
        let mut tries = 0;
        loop {
            match self.list_offset_once(partition, at)? {
                Ok(offset) => return Ok(offset),
                Err(code) if retriable.contains(&code) && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    let topic = self.topic.clone();
                    self.topic(&topic)?;
                }
                Err(code) => bail!(
                    "offsets of partition {partition}: {}",
                    error_of(code).unwrap_or_default()
                ),
            }
        }
    }

    /// One ListOffsets: the offset, or the partition's error code.
    fn list_offset_once(&mut self, partition: u32, at: i64) -> Result<Result<i64, i16>> {
        let node = self.leader(partition)?;
        let i = self.conn_index(node)?;
        let mut p = ListOffsetsPartition::default();
        p.partition_index = partition as i32;
        p.timestamp = at;
        let mut t = ListOffsetsTopic::default();
        t.name = TopicName(StrBytes::from_string(self.topic.clone()));
        t.partitions = vec![p];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = vec![t];
        let r: ListOffsetsResponse =
            self.conns[i]
                .1
                .call(ApiKey::ListOffsets, LIST_OFFSETS_V, &req)?;
        let p = r
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| anyhow!("no offsets answer for partition {partition}"))?;
        Ok(if p.error_code == 0 {
            Ok(p.offset)
        } else {
            Err(p.error_code)
        })
    }

    fn leader(&self, partition: u32) -> Result<i32> {
        self.leaders
            .get(partition as usize)
            .copied()
            .ok_or_else(|| anyhow!("partition {partition} of {} unknown", self.topic))
    }

    /// Sends one batch to a partition's leader; `acks` as Kafka spells it.
    pub fn send_produce(&mut self, partition: u32, batch: Bytes, acks: i16) -> Result<KTicket> {
        let node = self.leader(partition)?;
        let i = self.conn_index(node)?;
        let mut p = PartitionProduceData::default();
        p.index = partition as i32;
        p.records = Some(batch);
        let mut t = TopicProduceData::default();
        t.name = TopicName(StrBytes::from_string(self.topic.clone()));
        t.partition_data = vec![p];
        let mut req = ProduceRequest::default();
        req.acks = acks;
        req.timeout_ms = 30_000;
        req.topic_data = vec![t];
        let cid = self.conns[i].1.send(ApiKey::Produce, PRODUCE_V, &req)?;
        Ok(KTicket {
            conn: (acks != 0).then_some(i),
            cid,
        })
    }

    /// Waits for a produce's answer; an error names the partition's code.
    pub fn recv_produce(&mut self, t: KTicket) -> Result<()> {
        let Some(i) = t.conn else { return Ok(()) };
        let r: ProduceResponse = self.conns[i].1.recv(ApiKey::Produce, PRODUCE_V, t.cid)?;
        for tr in &r.responses {
            for p in &tr.partition_responses {
                if let Some(e) = error_of(p.error_code) {
                    bail!("produce to partition {}: {e}", p.index);
                }
            }
        }
        Ok(())
    }

    /// Sends a long-polling fetch of one partition from `offset`.
    pub fn send_fetch(
        &mut self,
        partition: u32,
        offset: i64,
        max_wait_ms: u32,
        max_bytes: u32,
    ) -> Result<KTicket> {
        let node = self.leader(partition)?;
        let i = self.conn_index(node)?;
        let mut p = FetchPartition::default();
        p.partition = partition as i32;
        p.fetch_offset = offset;
        p.partition_max_bytes = max_bytes as i32;
        let mut t = FetchTopic::default();
        t.topic = TopicName(StrBytes::from_string(self.topic.clone()));
        t.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = max_wait_ms as i32;
        req.min_bytes = 1;
        req.max_bytes = max_bytes as i32;
        // Sessionless (a full fetch every time), as the native wire is.
        req.session_epoch = -1;
        req.topics = vec![t];
        let cid = self.conns[i].1.send(ApiKey::Fetch, FETCH_V, &req)?;
        Ok(KTicket { conn: Some(i), cid })
    }

    /// A fetch's records (the stored batches, possibly with a partial one
    /// at the end, which the caller's batch splitter drops).
    pub fn recv_fetch(&mut self, t: KTicket, partition: u32) -> Result<Bytes> {
        let i = t.conn.expect("a fetch is always answered");
        let r: FetchResponse = self.conns[i].1.recv(ApiKey::Fetch, FETCH_V, t.cid)?;
        if let Some(e) = error_of(r.error_code) {
            bail!("fetch: {e}");
        }
        let p = r
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == partition as i32)
            .ok_or_else(|| anyhow!("no fetch answer for partition {partition}"))?;
        if let Some(e) = error_of(p.error_code) {
            bail!("fetch of partition {partition}: {e}");
        }
        Ok(p.records.clone().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use proptest::prelude::*;

    /// A response frame body as a broker sends it: header, then message.
    fn frame<R: Encodable>(api: ApiKey, version: i16, cid: i32, r: &R) -> Vec<u8> {
        let mut b = BytesMut::new();
        let mut h = ResponseHeader::default();
        h.correlation_id = cid;
        h.encode(&mut b, api.response_header_version(version))
            .unwrap();
        r.encode(&mut b, version).unwrap();
        b.to_vec()
    }

    fn metadata() -> Vec<u8> {
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(0);
        b.host = StrBytes::from_static_str("127.0.0.1");
        b.port = 9092;
        let mut p = MetadataResponsePartition::default();
        p.partition_index = 0;
        p.leader_id = BrokerId(0);
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(StrBytes::from_static_str("bench")));
        t.partitions = vec![p.clone(), p];
        let mut r = MetadataResponse::default();
        r.brokers = vec![b];
        r.topics = vec![t];
        frame(ApiKey::Metadata, METADATA_V, 7, &r)
    }

    fn fetch() -> Vec<u8> {
        let mut p = PartitionData::default();
        p.partition_index = 0;
        p.high_watermark = 10;
        p.records = Some(Bytes::from_static(&[0u8; 70]));
        let mut t = FetchableTopicResponse::default();
        t.topic = TopicName(StrBytes::from_static_str("bench"));
        t.partitions = vec![p];
        let mut r = FetchResponse::default();
        r.responses = vec![t];
        frame(ApiKey::Fetch, FETCH_V, 7, &r)
    }

    #[test]
    fn a_good_frame_decodes_and_a_wrong_correlation_id_or_extra_bytes_fail() {
        let m: MetadataResponse =
            decode_response(ApiKey::Metadata, METADATA_V, 7, Bytes::from(metadata())).unwrap();
        assert_eq!(m.topics[0].partitions.len(), 2);
        let e =
            decode_response::<MetadataResponse>(ApiKey::Metadata, METADATA_V, 8, metadata().into())
                .unwrap_err();
        assert!(e.to_string().contains("while waiting for 8"), "{e}");
        let mut long = metadata();
        long.push(0);
        let e = decode_response::<MetadataResponse>(ApiKey::Metadata, METADATA_V, 7, long.into())
            .unwrap_err();
        assert!(e.to_string().contains("trailing"), "{e}");
    }

    /// Decodes `body` as each response the bench reads; only errors, never
    /// a panic or a runaway allocation (kafka-protocol is vendored with
    /// bounded allocations).
    fn decode_all(body: &[u8]) {
        let b = || Bytes::copy_from_slice(body);
        let _ = decode_response::<MetadataResponse>(ApiKey::Metadata, METADATA_V, 7, b());
        let _ =
            decode_response::<CreateTopicsResponse>(ApiKey::CreateTopics, CREATE_TOPICS_V, 7, b());
        let _ = decode_response::<ListOffsetsResponse>(ApiKey::ListOffsets, LIST_OFFSETS_V, 7, b());
        let _ = decode_response::<ProduceResponse>(ApiKey::Produce, PRODUCE_V, 7, b());
        let _ = decode_response::<FetchResponse>(ApiKey::Fetch, FETCH_V, 7, b());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn fuzz_garbage_responses_are_errors(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            decode_all(&body);
        }

        #[test]
        fn fuzz_damaged_responses_are_errors(
            which in any::<bool>(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let mut body = if which { metadata() } else { fetch() };
            for (i, v) in edits {
                let n = body.len();
                body[i % n] = v;
            }
            if let Some(c) = cut {
                body.truncate(c % (body.len() + 1));
            }
            decode_all(&body);
        }
    }
}
