//! A raw Kafka client for tests of the Kafka listener: requests encoded and
//! responses decoded by the `kafka-protocol` crate over a plain TcpStream,
//! every read with a deadline; and the ports such tests need.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub const READ_DEADLINE: Duration = Duration::from_secs(10);
/// How long a Kafka listener may take to come up.
const UP_DEADLINE: Duration = Duration::from_secs(60);

/// One Kafka connection: requests encoded and responses decoded by the
/// `kafka-protocol` crate; every read has a deadline.
pub struct Kafka {
    /// The socket, for tests that write raw bytes.
    pub s: TcpStream,
    next_cid: i32,
    client_id: &'static str,
}

impl Kafka {
    pub fn connect(addr: SocketAddr) -> Kafka {
        Self::connect_as(addr, "shardlog-test")
    }

    /// A connection whose requests name `client_id`.
    pub fn connect_as(addr: SocketAddr, client_id: &'static str) -> Kafka {
        let s = TcpStream::connect_timeout(&addr, READ_DEADLINE).unwrap();
        s.set_read_timeout(Some(READ_DEADLINE)).unwrap();
        Kafka {
            s,
            next_cid: 1,
            client_id,
        }
    }

    pub fn send<R: Encodable>(&mut self, api: ApiKey, version: i16, req: &R) -> i32 {
        let cid = self.next_cid;
        self.next_cid += 1;
        let mut h = RequestHeader::default();
        h.request_api_key = api as i16;
        h.request_api_version = version;
        h.correlation_id = cid;
        h.client_id = Some(StrBytes::from_static_str(self.client_id));
        let mut body = BytesMut::new();
        h.encode(&mut body, api.request_header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        self.send_raw(&body);
        cid
    }

    pub fn send_raw(&mut self, body: &[u8]) {
        let mut f = BytesMut::new();
        f.put_i32(body.len() as i32);
        f.put_slice(body);
        self.s.write_all(&f).unwrap();
    }

    /// The next response frame's body, or None if the broker hung up.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        match self.s.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("read failed (deadline {READ_DEADLINE:?}?): {e}"),
        }
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.s.read_exact(&mut body).unwrap();
        Some(Bytes::from(body))
    }

    pub fn recv<R: Decodable>(&mut self, api: ApiKey, version: i16, cid: i32) -> R {
        let mut body = self.read_frame().expect("a response, not a hang-up");
        let h = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
        assert_eq!(h.correlation_id, cid);
        let r = R::decode(&mut body, version).unwrap();
        assert!(!body.has_remaining(), "{api:?} v{version}: trailing bytes");
        r
    }

    pub fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, req: &Q) -> R {
        let cid = self.send(api, version, req);
        self.recv(api, version, cid)
    }

    /// True once the broker closed the connection (EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        }
    }
}

pub fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_owned()))
}

/// Waits until the Kafka listener at `addr` accepts connections.
pub fn wait_port(addr: SocketAddr) {
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(
            start.elapsed() < UP_DEADLINE,
            "kafka listener {addr} not up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two consecutive free ports (per-shard Kafka ports of a 2-shard broker).
pub fn two_free_ports() -> u16 {
    for _ in 0..50 {
        let p = super::free_port();
        if p < 65_000
            && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no two free ports in a row");
}

/// A Produce of `records` to one partition, `acks` as Kafka spells it.
pub fn produce_request(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    let mut p = PartitionProduceData::default();
    p.index = partition;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = name(topic);
    t.partition_data = vec![p];
    let mut r = ProduceRequest::default();
    r.acks = acks;
    r.timeout_ms = 10_000;
    r.topic_data = vec![t];
    r
}

/// A Fetch of one partition from `offset`: up to 1 MiB of it, 4 MiB in
/// all, waiting at most `max_wait_ms` for data.
pub fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    let mut p = FetchPartition::default();
    p.partition = partition;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    let mut t = FetchTopic::default();
    t.topic = name(topic);
    t.partitions = vec![p];
    let mut r = FetchRequest::default();
    r.replica_id = kafka_protocol::messages::BrokerId(-1);
    r.max_wait_ms = max_wait_ms;
    r.min_bytes = 1;
    r.max_bytes = 4 << 20;
    r.session_epoch = -1;
    r.topics = vec![t];
    r
}

/// A broker for an outside client suite (librdkafka, franz-go,
/// kafka-python, the Java module): `shards` shards, a Kafka bootstrap
/// listener and per-shard Kafka ports, plus `extra` flags; up and answering
/// on the Kafka listener when this returns. Also the flags it was started
/// with, to restart it the same way.
pub fn suite_broker(
    dir: &std::path::Path,
    shards: &str,
    extra: &[&str],
) -> (super::Broker, SocketAddr, Vec<String>) {
    let kafka: SocketAddr = format!("127.0.0.1:{}", super::free_port()).parse().unwrap();
    let mut args: Vec<String> = [
        "--shards",
        shards,
        "--kafka-listen",
        &kafka.to_string(),
        "--kafka-port-base",
        &two_free_ports().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut b = super::Broker::start(dir, &refs);
    b.wait_kafka(kafka);
    (b, kafka, args)
}
