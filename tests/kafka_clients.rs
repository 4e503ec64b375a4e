//! Real Kafka clients, unchanged, against the Kafka listener: confluent-kafka
//! (librdkafka) and kafka-python, driven by the small scripts in
//! `tests/kafka_clients/` (one per role, JSON lines out; see `_util.py`).
//! Every test runs a 2-shard broker with per-shard Kafka and native ports, so
//! Metadata advertises one broker per shard and the shardlog CLI, too, talks
//! to each partition's owner; each test ends by checking that no request was
//! forwarded between shards.
//!
//! Needs python3 with `confluent-kafka kafka-python lz4 zstandard
//! python-snappy` (`.ci/run` installs them). Without them every test prints
//! SKIPPED, or fails when `KAFKA_CLIENT_TESTS=required` (as `.ci/run` sets).
//!
//! The harness ([`Py`], [`run_py`], [`Cluster`], [`Msg`]) is meant for more
//! tests of this kind (consumer groups, idempotent retries).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::kafka::two_free_ports;
use common::*;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::RecordBatchDecoder;
use shardlog::client::RoutedClient;
use shardlog::protocol::FetchPartition;

/// The longest one step (a script, a CLI run, a start-up) may take. The
/// scripts give up by themselves after 60 s (exit 124).
const STEP: Duration = Duration::from_secs(90);

// ---- python processes -------------------------------------------------------

/// The scripts' directory.
fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kafka_clients")
}

/// What a finished script left.
pub struct PyOutput {
    pub script: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl PyOutput {
    /// Panics with the script's stderr unless it exited 0.
    pub fn ok(self) -> PyOutput {
        assert!(
            self.status.success(),
            "{} failed ({}):\n{}",
            self.script,
            self.status,
            self.stderr
        );
        self
    }

    /// The JSON lines on stdout, as messages.
    pub fn messages(&self) -> Vec<Msg> {
        self.stdout.lines().map(Msg::from_json).collect()
    }
}

/// A running python script: stdout and stderr are collected by threads (a
/// full pipe never blocks it), and it is killed on drop, also when the test
/// panics while it runs.
pub struct Py {
    script: String,
    child: Option<Child>,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

impl Py {
    /// Starts `python3 tests/kafka_clients/SCRIPT ARGS...` with `stdin` fed
    /// to it (and closed).
    pub fn spawn(script: &str, args: &[&str], stdin: &[u8]) -> Py {
        let mut child = Command::new("python3")
            .arg(scripts().join(script))
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3");
        let mut sin = child.stdin.take().unwrap();
        let input = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = sin.write_all(&input);
        });
        let mut sout = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = sout.read_to_string(&mut s);
            s
        });
        let mut serr = child.stderr.take().unwrap();
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = serr.read_to_string(&mut s);
            s
        });
        Py {
            script: script.to_owned(),
            child: Some(child),
            out: Some(out),
            err: Some(err),
        }
    }

    /// Waits up to `deadline` for the script to exit; kills it and panics
    /// (with what it printed) if it does not.
    pub fn wait(mut self, deadline: Duration) -> PyOutput {
        let mut child = self.child.take().unwrap();
        let status = wait_deadline(&mut child, deadline);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let stdout = self.out.take().unwrap().join().unwrap_or_default();
        let stderr = self.err.take().unwrap().join().unwrap_or_default();
        match status {
            Some(status) => PyOutput {
                script: self.script.clone(),
                status,
                stdout,
                stderr,
            },
            None => panic!(
                "{} did not finish within {deadline:?}; stderr:\n{stderr}",
                self.script
            ),
        }
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a script to the end (bounded by `deadline`).
pub fn run_py(script: &str, args: &[&str], stdin: &[u8], deadline: Duration) -> PyOutput {
    Py::spawn(script, args, stdin).wait(deadline)
}

/// True when python3 has both clients. Without them: panics if
/// `KAFKA_CLIENT_TESTS=required`, else prints SKIPPED and returns false.
fn have_clients() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import confluent_kafka, kafka"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let why = match probe {
        Err(e) => format!("cannot run python3: {e}"),
        Ok(mut child) => match wait_deadline(&mut child, Duration::from_secs(30)) {
            Some(s) if s.success() => return true,
            Some(_) => {
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                err.lines().last().unwrap_or("").to_owned()
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                "python3 did not answer within 30 s".to_owned()
            }
        },
    };
    if std::env::var("KAFKA_CLIENT_TESTS").as_deref() == Ok("required") {
        panic!(
            "KAFKA_CLIENT_TESTS=required, but python3 cannot import confluent_kafka and kafka \
             ({why}); pip install confluent-kafka kafka-python lz4 zstandard python-snappy"
        );
    }
    println!("SKIPPED: python3 cannot import confluent_kafka and kafka ({why})");
    false
}

// ---- messages ---------------------------------------------------------------

/// One message as the scripts read and print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: i64,
}

fn hex(b: &Option<Vec<u8>>) -> serde_json::Value {
    match b {
        None => serde_json::Value::Null,
        Some(b) => b
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
            .into(),
    }
}

fn unhex(v: &serde_json::Value) -> Option<Vec<u8>> {
    let s = v.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

impl Msg {
    /// A message to produce to `partition` (offset unknown yet).
    pub fn new(partition: i32, key: Option<&[u8]>, value: &[u8]) -> Msg {
        Msg {
            partition,
            offset: -1,
            key: key.map(<[u8]>::to_vec),
            value: Some(value.to_vec()),
            headers: Vec::new(),
            timestamp_ms: -1,
        }
    }

    pub fn to_json(&self) -> String {
        let mut m = serde_json::json!({
            "p": self.partition,
            "k": hex(&self.key),
            "v": hex(&self.value),
            "h": self.headers.iter().map(|(k, v)| serde_json::json!([k, hex(v)])).collect::<Vec<_>>(),
        });
        if self.timestamp_ms >= 0 {
            m["ts"] = self.timestamp_ms.into();
        }
        m.to_string()
    }

    pub fn from_json(line: &str) -> Msg {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        Msg {
            partition: v["p"].as_i64().expect("p") as i32,
            offset: v["o"].as_i64().unwrap_or(-1),
            key: unhex(&v["k"]),
            value: unhex(&v["v"]),
            headers: v["h"]
                .as_array()
                .map(|hs| {
                    hs.iter()
                        .map(|h| (h[0].as_str().unwrap().to_owned(), unhex(&h[1])))
                        .collect()
                })
                .unwrap_or_default(),
            timestamp_ms: v["ts"].as_i64().unwrap_or(-1),
        }
    }
}

/// Messages as a producer script's stdin.
pub fn json_lines(msgs: &[Msg]) -> Vec<u8> {
    let mut s = String::new();
    for m in msgs {
        s.push_str(&m.to_json());
        s.push('\n');
    }
    s.into_bytes()
}

/// `msgs` by partition, each in the order given (offsets, for read-back).
fn by_partition(msgs: &[Msg], partitions: i32) -> Vec<Vec<Msg>> {
    let mut out = vec![Vec::new(); partitions as usize];
    for m in msgs {
        out[m.partition as usize].push(m.clone());
    }
    out
}

/// Asserts that `got` (as read, any interleaving of partitions) holds
/// exactly `sent`, partition by partition in order at offsets 0, 1, ...:
/// keys, values, headers and timestamps.
fn assert_same(sent: &[Msg], got: &[Msg], partitions: i32) {
    assert_eq!(got.len(), sent.len(), "message count");
    for (p, (s, g)) in by_partition(sent, partitions)
        .iter()
        .zip(by_partition(got, partitions))
        .enumerate()
    {
        assert_eq!(g.len(), s.len(), "partition {p}");
        for (i, (s, g)) in s.iter().zip(&g).enumerate() {
            assert_eq!(g.offset, i as i64, "partition {p}: offsets in order");
            assert_eq!(
                (&g.key, &g.value, &g.headers),
                (&s.key, &s.value, &s.headers),
                "partition {p} offset {i}"
            );
            if s.timestamp_ms >= 0 {
                assert_eq!(g.timestamp_ms, s.timestamp_ms, "partition {p} offset {i}");
            }
        }
    }
}

/// `n` messages over `partitions` partitions with binary keys and values
/// (every byte but '\n', which the CLI prints between values), headers
/// (one with a null value) and timestamps.
fn sample(n: usize, partitions: i32) -> Vec<Msg> {
    (0..n)
        .map(|i| {
            let p = (i % partitions as usize) as i32;
            let mut value = format!("value {i} \u{e9}\t").into_bytes();
            value.extend(
                (0..=255u8)
                    .filter(|&b| b != b'\n')
                    .cycle()
                    .skip(i)
                    .take(i % 40),
            );
            let mut m = Msg::new(p, Some(format!("key-{i}\x00\u{ff}").as_bytes()), &value);
            if i % 3 != 0 {
                m.headers = vec![
                    ("trace".to_owned(), Some(vec![0, 1, 2, i as u8])),
                    ("empty".to_owned(), None),
                ];
            }
            m.timestamp_ms = 1_700_000_000_000 + i as i64 * 1000;
            m
        })
        .collect()
}

// ---- the broker -------------------------------------------------------------

/// A 2-shard broker with the Kafka listener, per-shard Kafka ports (one
/// advertised broker per shard), per-shard native ports (the CLI reaches
/// owners too) and /metrics; killed on drop.
pub struct Cluster {
    pub broker: Broker,
    pub kafka: SocketAddr,
    /// Shard i's own Kafka port is `kafka_port_base + i`.
    pub kafka_port_base: u16,
    pub http: String,
    /// The broker's flags, for a restart.
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// A cluster whose broker also gets `extra` flags.
    pub fn start_with(extra: &[&str]) -> Cluster {
        let dir = data_dir();
        let kafka: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http = format!("127.0.0.1:{}", free_port());
        let kafka_port_base = two_free_ports();
        let (k, kbase, nbase) = (
            kafka.to_string(),
            kafka_port_base.to_string(),
            two_free_ports().to_string(),
        );
        let mut args = vec![
            "--shards",
            "2",
            "--kafka-listen",
            &k,
            "--kafka-port-base",
            &kbase,
            "--shard-port-base",
            &nbase,
            "--http-listen",
            &http,
        ];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let flags: Vec<&str> = args.iter().map(String::as_str).collect();
        let broker = Broker::start(dir.path(), &flags);
        let start = Instant::now();
        while TcpStream::connect_timeout(&kafka, Duration::from_millis(200)).is_err() {
            assert!(start.elapsed() < STEP, "kafka listener {kafka} not up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Cluster {
            broker,
            kafka,
            kafka_port_base,
            http,
            args,
            _dir: dir,
        }
    }

    /// kill -9 of the broker, and a restart on the same ports and data
    /// (returns once its Kafka listener is up again).
    pub fn kill_and_restart(&mut self) {
        self.broker.kill();
        let flags: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.broker = Broker::start_on(&self.broker.data_dir.clone(), self.broker.addr, &flags);
        self.broker.wait_kafka(self.kafka);
    }

    /// The clients' bootstrap.servers.
    pub fn bootstrap(&self) -> String {
        self.kafka.to_string()
    }

    /// Runs the shardlog CLI against this broker.
    pub fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut a = args.to_vec();
        let b = self.broker.broker_arg();
        a.extend(["--broker", &b]);
        let out = run(&a, stdin, STEP);
        assert!(out.status.success(), "shardlog {args:?}: {}", out.stderr);
        out
    }

    /// Every value of `topic` as `shardlog consume --isolation ISOLATION`
    /// prints them (until 1 s without data), sorted.
    pub fn sorted_values(&self, topic: &str, isolation: &str) -> Vec<String> {
        let out = self.cli(
            &[
                "consume",
                topic,
                "--isolation",
                isolation,
                "--idle-timeout-ms",
                "1000",
            ],
            b"",
        );
        let mut v: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }

    /// Creates `topic` with partitions owned by both shards.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        self.cli(
            &[
                "topic",
                "create",
                topic,
                "--partitions",
                &partitions.to_string(),
            ],
            b"",
        );
    }

    /// The values of partition `p`'s first `n` messages as `shardlog
    /// consume` prints them (one a line).
    pub fn cli_values(&self, topic: &str, p: i32, n: usize) -> Vec<u8> {
        self.cli(
            &[
                "consume",
                topic,
                "--partition",
                &p.to_string(),
                "--max-messages",
                &n.to_string(),
                // From `earliest` (the default): ListOffsets goes to the
                // owner too (assert_no_forwarding).
            ],
            b"",
        )
        .stdout
    }

    /// Partition `p` as stored, through the native protocol at its owner:
    /// the compression codec of every batch and the records, decoded (and
    /// decompressed) by the `kafka-protocol` crate.
    pub fn stored(&self, topic: &str, p: i32) -> (Vec<i16>, Vec<Msg>) {
        let mut rc = RoutedClient::connect(&self.broker.broker_arg()).unwrap();
        rc.topic(topic).unwrap();
        let mut codecs = Vec::new();
        let mut msgs = Vec::new();
        let mut offset = 0;
        loop {
            let r = rc
                .fetch(
                    topic,
                    FetchPartition {
                        partition: p as u32,
                        fetch_offset: offset,
                        max_bytes: 1 << 20,
                    },
                    0,
                    0,
                )
                .unwrap();
            assert!(r.error.is_none(), "{:?}", r.error);
            if r.records.is_empty() {
                return (codecs, msgs);
            }
            for h in shardlog::batch::validate_all(&r.records.to_bytes()).unwrap() {
                codecs.push(h.compression());
                offset = h.last_offset() + 1;
            }
            let mut buf: Bytes = r.records.to_bytes();
            for set in RecordBatchDecoder::decode_all(&mut buf).unwrap() {
                for rec in set.records {
                    msgs.push(Msg {
                        partition: p,
                        offset: rec.offset,
                        key: rec.key.map(|b| b.to_vec()),
                        value: rec.value.map(|b| b.to_vec()),
                        headers: rec
                            .headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.as_ref().map(|b| b.to_vec())))
                            .collect(),
                        timestamp_ms: rec.timestamp,
                    });
                }
            }
        }
    }

    /// The owner shard of each partition of `topic`, by partition.
    pub fn owners(&self, topic: &str) -> Vec<i64> {
        shardlog::client::Client::connect(&self.broker.broker_arg())
            .unwrap()
            .describe_topic(topic)
            .unwrap()
            .partitions
            .iter()
            .map(|p| i64::from(p.owner_shard))
            .collect()
    }

    /// Asserts `shardlog_forwards_total` is 0 on both shards: every request
    /// reached the shard that owns its partition.
    pub fn assert_no_forwarding(&self) {
        let (status, body) = shardlog::http::get(&self.http, "/metrics", STEP).expect("/metrics");
        assert_eq!(status, 200, "{body}");
        let f: Vec<_> = shardlog::top::parse(&body)
            .into_iter()
            .filter(|((n, _), _)| n == "shardlog_forwards_total")
            .collect();
        assert_eq!(f.len(), 2, "one series per shard: {f:?}");
        assert!(f.iter().all(|(_, v)| *v == 0.0), "forwarded: {f:?}");
    }
}

/// Whether the broker's ApiVersions (v0, over the Kafka listener) offers
/// `version` of `api`.
fn offers(kafka: SocketAddr, api: ApiKey, version: i16) -> bool {
    let mut s = TcpStream::connect_timeout(&kafka, STEP).unwrap();
    s.set_read_timeout(Some(STEP)).unwrap();
    let mut h = RequestHeader::default();
    h.request_api_key = ApiKey::ApiVersions as i16;
    h.correlation_id = 1;
    let mut body = BytesMut::new();
    h.encode(&mut body, 1).unwrap();
    ApiVersionsRequest::default().encode(&mut body, 0).unwrap();
    s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut frame).unwrap();
    let mut frame = Bytes::from(frame);
    ResponseHeader::decode(&mut frame, 0).unwrap();
    ApiVersionsResponse::decode(&mut frame, 0)
        .unwrap()
        .api_keys
        .iter()
        .any(|a| a.api_key == api as i16 && (a.min_version..=a.max_version).contains(&version))
}

/// The CLI's output for `msgs` (already in one partition's order).
fn cli_lines(msgs: &[Msg]) -> Vec<u8> {
    let mut want = Vec::new();
    for m in msgs {
        want.extend_from_slice(m.value.as_deref().unwrap_or_default());
        want.push(b'\n');
    }
    want
}

/// Checks a producer's report: every message delivered, offsets 0, 1, ...
/// per partition in the order sent.
fn assert_delivered(sent: &[Msg], report: &PyOutput, partitions: i32) {
    let mut got = report.messages();
    assert_eq!(got.len(), sent.len(), "{}: delivery reports", report.script);
    got.sort_by_key(|m| (m.partition, m.offset));
    for (p, g) in by_partition(&got, partitions).iter().enumerate() {
        let offsets: Vec<i64> = g.iter().map(|m| m.offset).collect();
        let want: Vec<i64> = (0..by_partition(sent, partitions)[p].len() as i64).collect();
        assert_eq!(offsets, want, "{}: partition {p}", report.script);
    }
}

// ---- tests ------------------------------------------------------------------

#[test]
fn confluent_kafka_sees_a_broker_per_shard_and_its_produce_is_read_by_the_cli() {
    if !have_clients() {
        return;
    }
    let c = Cluster::start();
    c.create_topic("ck", 4);
    // librdkafka sees one broker per shard, at the shard's own port, each
    // leading the partitions its shard owns.
    let md = run_py("ck_metadata.py", &[&c.bootstrap(), "ck"], b"", STEP).ok();
    let md: serde_json::Value = serde_json::from_str(md.stdout.trim()).unwrap();
    let base = i64::from(c.kafka_port_base);
    assert_eq!(
        md["brokers"],
        serde_json::json!([[0, "127.0.0.1", base], [1, "127.0.0.1", base + 1]])
    );
    let owners = c.owners("ck");
    assert!(owners.contains(&0) && owners.contains(&1), "{owners:?}");
    let leaders: Vec<serde_json::Value> = owners
        .iter()
        .enumerate()
        .map(|(p, o)| serde_json::json!([p, o]))
        .collect();
    assert_eq!(md["leaders"], serde_json::Value::from(leaders));
    let sent = sample(200, 4);
    let report = run_py(
        "ck_produce.py",
        &[&c.bootstrap(), "ck"],
        &json_lines(&sent),
        STEP,
    )
    .ok();
    assert_delivered(&sent, &report, 4);
    for (p, msgs) in by_partition(&sent, 4).iter().enumerate() {
        let p = p as i32;
        // The CLI prints every value byte for byte, in order.
        assert_eq!(
            c.cli_values("ck", p, msgs.len()),
            cli_lines(msgs),
            "partition {p}"
        );
        // Keys, headers (null values too) and timestamps are stored as sent.
        let (codecs, stored) = c.stored("ck", p);
        assert!(codecs.iter().all(|&c| c == 0), "{codecs:?}");
        assert_same(msgs, &stored, 4);
    }
    c.assert_no_forwarding();
}

#[test]
fn cli_produce_is_read_by_confluent_kafka() {
    if !have_clients() {
        return;
    }
    let c = Cluster::start();
    c.create_topic("cli", 4);
    let n = 300;
    let lines: String = (0..n)
        .map(|i| format!("user{}=event {i}\n", i % 17))
        .collect();
    c.cli(
        &["produce", "cli", "--key-separator", "="],
        lines.as_bytes(),
    );
    let got = run_py(
        "ck_consume.py",
        &[&c.bootstrap(), "cli", "4", &n.to_string()],
        b"",
        STEP,
    )
    .ok()
    .messages();
    assert_eq!(got.len(), n);
    // Every message once, with its key; per partition in the order produced
    // (a key's events keep their order), at the key's murmur2 partition.
    let mut seen: Vec<usize> = Vec::new();
    for p in 0..4 {
        let mut last = None;
        for (o, m) in got.iter().filter(|m| m.partition == p).enumerate() {
            assert_eq!(m.offset, o as i64);
            let v = String::from_utf8(m.value.clone().unwrap()).unwrap();
            let i: usize = v.strip_prefix("event ").unwrap().parse().unwrap();
            let key = format!("user{}", i % 17).into_bytes();
            assert_eq!(m.key.as_deref(), Some(&key[..]));
            let want_p = (shardlog::client::murmur2(&key) & 0x7fff_ffff) % 4;
            assert_eq!(p, want_p, "{v}");
            assert!(last < Some(i), "partition {p}: {v} after {last:?}");
            last = Some(i);
            seen.push(i);
        }
    }
    seen.sort();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    c.assert_no_forwarding();
}

#[test]
fn kafka_python_and_confluent_kafka_read_each_other() {
    if !have_clients() {
        return;
    }
    let c = Cluster::start();
    // kafka-python produces, confluent-kafka consumes.
    c.create_topic("kp", 4);
    let mut sent = sample(120, 4);
    // kafka-python cannot send a null header value.
    for m in &mut sent {
        for h in &mut m.headers {
            h.1.get_or_insert_with(Vec::new);
        }
    }
    let report = run_py(
        "kp_produce.py",
        &[&c.bootstrap(), "kp"],
        &json_lines(&sent),
        STEP,
    )
    .ok();
    assert_delivered(&sent, &report, 4);
    let got = run_py(
        "ck_consume.py",
        &[&c.bootstrap(), "kp", "4", "120"],
        b"",
        STEP,
    )
    .ok()
    .messages();
    assert_same(&sent, &got, 4);
    // confluent-kafka produces, kafka-python consumes.
    c.create_topic("ck", 4);
    let report = run_py(
        "ck_produce.py",
        &[&c.bootstrap(), "ck"],
        &json_lines(&sent),
        STEP,
    )
    .ok();
    assert_delivered(&sent, &report, 4);
    let got = run_py(
        "kp_consume.py",
        &[&c.bootstrap(), "ck", "4", "120"],
        b"",
        STEP,
    )
    .ok()
    .messages();
    assert_same(&sent, &got, 4);
    c.assert_no_forwarding();
}

/// Kafka's codec ids (the low 3 bits of a batch's attributes).
const CODECS: [(&str, i16); 4] = [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)];

#[test]
fn compressed_batches_round_trip_between_clients_and_the_cli() {
    if !have_clients() {
        return;
    }
    let c = Cluster::start();
    // Compressible values, many to a batch (librdkafka sends a batch
    // uncompressed when compressing does not make it smaller).
    let sent: Vec<Msg> = (0..400)
        .map(|i| {
            let v = format!("compressible record {i:04} ").repeat(8);
            Msg::new(i % 2, Some(format!("k{i}").as_bytes()), v.as_bytes())
        })
        .collect();
    // librdkafka compresses with lz4 only for a broker it believes is Kafka
    // 0.8.2 or later, which it tells by FindCoordinator v0 in ApiVersions
    // (its feature map); until the broker offers that API, lz4 batches go
    // uncompressed. kafka-python's lz4 below is compressed either way.
    let librdkafka_lz4 = offers(c.kafka, ApiKey::FindCoordinator, 0);
    for (codec, id) in CODECS {
        let id = if id == 3 && !librdkafka_lz4 {
            println!("note: librdkafka sends lz4 uncompressed (no FindCoordinator v0)");
            0
        } else {
            id
        };
        // confluent-kafka compresses; stored as sent (still compressed);
        // kafka-python and the CLI decompress.
        let topic = format!("z-{codec}");
        c.create_topic(&topic, 2);
        let ct = format!("compression.type={codec}");
        let report = run_py(
            "ck_produce.py",
            &[&c.bootstrap(), &topic, &ct, "linger.ms=100"],
            &json_lines(&sent),
            STEP,
        )
        .ok();
        assert_delivered(&sent, &report, 2);
        for p in 0..2 {
            let (codecs, stored) = c.stored(&topic, p);
            assert!(
                !codecs.is_empty() && codecs.iter().all(|&c| c == id),
                "{codec}: stored batch codecs {codecs:?}"
            );
            let msgs = &by_partition(&sent, 2)[p as usize];
            assert_same(msgs, &stored, 2);
            assert_eq!(
                c.cli_values(&topic, p, msgs.len()),
                cli_lines(msgs),
                "{codec}: CLI, partition {p}"
            );
        }
        let got = run_py(
            "kp_consume.py",
            &[&c.bootstrap(), &topic, "2", "400"],
            b"",
            STEP,
        )
        .ok()
        .messages();
        assert_same(&sent, &got, 2);
    }
    // kafka-python compresses (its own codec libraries), confluent-kafka
    // decompresses.
    for (codec, id) in CODECS {
        let topic = format!("kz-{codec}");
        c.create_topic(&topic, 2);
        let ct = format!("compression_type={codec}");
        let report = run_py(
            "kp_produce.py",
            &[
                &c.bootstrap(),
                &topic,
                &ct,
                "linger_ms=100",
                "batch_size=1048576",
            ],
            &json_lines(&sent),
            STEP,
        )
        .ok();
        assert_delivered(&sent, &report, 2);
        for p in 0..2 {
            let (codecs, _) = c.stored(&topic, p);
            assert!(codecs.iter().all(|&c| c == id), "{codec}: {codecs:?}");
        }
        let got = run_py(
            "ck_consume.py",
            &[&c.bootstrap(), &topic, "2", "400"],
            b"",
            STEP,
        )
        .ok()
        .messages();
        assert_same(&sent, &got, 2);
    }
    c.assert_no_forwarding();
}

#[test]
fn a_compacted_topic_produced_by_confluent_kafka_reads_back_each_keys_latest_value() {
    if !have_clients() {
        return;
    }
    const KEYS: usize = 1_000;
    const UPDATES: usize = 1_000_000;
    let c = Cluster::start_with(&["--cleaner-check-ms", "200"]);
    c.cli(
        &[
            "topic",
            "create",
            "cdc",
            "--partitions",
            "2",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.bytes=1048576",
            "--config",
            "segment.ms=2000",
        ],
        b"",
    );
    // Idempotent and lz4: the cleaner decompresses, filters and compresses
    // again, and keeps each producer's last batch (maybe empty).
    let out = run_py(
        "ck_compact_produce.py",
        &[
            &c.bootstrap(),
            "cdc",
            &KEYS.to_string(),
            &UPDATES.to_string(),
        ],
        b"",
        STEP,
    )
    .ok();
    assert_eq!(out.stdout.trim(), format!("{{\"delivered\": {UPDATES}}}"));
    // Once segment.ms passed, one marker per partition rolls its active
    // segment: everything before it becomes cleanable.
    std::thread::sleep(Duration::from_millis(2_100));
    let markers: Vec<Msg> = (0..2)
        .map(|p| Msg {
            partition: p,
            offset: -1,
            key: Some(b"marker".to_vec()),
            value: Some(format!("end-{p}").into_bytes()),
            headers: vec![],
            timestamp_ms: -1,
        })
        .collect();
    run_py(
        "ck_produce.py",
        &[&c.bootstrap(), "cdc"],
        &json_lines(&markers),
        STEP,
    )
    .ok();
    let start = Instant::now();
    loop {
        let d = shardlog::client::Client::connect(&c.broker.broker_arg())
            .unwrap()
            .describe_topic("cdc")
            .unwrap();
        if d.partitions.iter().all(|p| {
            p.cleaner
                .is_some_and(|cl| cl.runs > 0 && cl.checkpoint == p.high_watermark - 1)
        }) {
            break;
        }
        assert!(start.elapsed() < STEP, "not cleaned: {d:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // librdkafka from the beginning: every key once with its final value,
    // in key order, at increasing offsets with holes, then the marker.
    let got = run_py(
        "ck_consume.py",
        &[&c.bootstrap(), "cdc", "2", &(KEYS + 2).to_string()],
        b"",
        STEP,
    )
    .ok()
    .messages();
    let mut keys = 0;
    for p in 0..2 {
        let msgs: Vec<&Msg> = got.iter().filter(|m| m.partition == p).collect();
        let (marker, values) = msgs.split_last().expect("the marker at least");
        assert_eq!(marker.value.as_deref(), Some(format!("end-{p}").as_bytes()));
        let mut last: Option<(i64, usize)> = None;
        for m in values {
            let v = String::from_utf8(m.value.clone().unwrap()).unwrap();
            let (k, u) = v.split_once("-u").unwrap();
            let (k, u): (usize, usize) = (k[1..].parse().unwrap(), u.parse().unwrap());
            assert_eq!(u, UPDATES - KEYS + k, "key {k}: an older value {v}");
            assert_eq!(m.key.as_deref(), Some(format!("key-{k:04}").as_bytes()));
            assert!(
                last.is_none_or(|(o, lk)| o < m.offset && lk < k),
                "{v} at {}",
                m.offset
            );
            last = Some((m.offset, k));
        }
        keys += values.len();
    }
    assert_eq!(keys, KEYS);
    c.assert_no_forwarding();
}

#[test]
fn confluent_kafka_produces_to_a_topic_nobody_created() {
    if !have_clients() {
        return;
    }
    // Kafka's defaults: auto.create.topics.enable=true, num.partitions=1.
    let c = Cluster::start();
    let sent = sample(50, 1);
    let report = run_py(
        "ck_produce.py",
        &[&c.bootstrap(), "fresh"],
        &json_lines(&sent),
        STEP,
    )
    .ok();
    assert_delivered(&sent, &report, 1);
    let d = shardlog::client::Client::connect(&c.broker.broker_arg())
        .unwrap()
        .describe_topic("fresh")
        .unwrap();
    assert_eq!(d.partitions.len(), 1);
    let got = run_py(
        "ck_consume.py",
        &[&c.bootstrap(), "fresh", "1", "50"],
        b"",
        STEP,
    )
    .ok()
    .messages();
    assert_same(&sent, &got, 1);
}

/// Transactions with librdkafka's transactional producer (commit and abort
/// in turns, every batch sent before the end): a read_committed consumer
/// (librdkafka, and `shardlog consume --isolation read_committed`) gets
/// exactly the committed records, a read_uncommitted one every record, and
/// nobody sees a transaction marker.
#[test]
fn confluent_kafka_transactions_commit_and_abort_for_read_committed_consumers() {
    if !have_clients() {
        return;
    }
    let c = Cluster::start();
    c.create_topic("txn", 2);
    let (txns, per) = (6, 10);
    let report = run_py(
        "ck_txn_produce.py",
        &[
            &c.bootstrap(),
            "txn",
            "app-1",
            &txns.to_string(),
            &per.to_string(),
        ],
        b"",
        Duration::from_secs(120),
    )
    .ok();
    assert_eq!(report.stdout.lines().count(), txns);
    let values = |committed_only: bool| -> Vec<String> {
        let mut v: Vec<String> = (0..txns)
            .filter(|i| !committed_only || i % 2 == 0)
            .flat_map(|i| (0..per).map(move |j| format!("t{i}-{j}")))
            .collect();
        v.sort();
        v
    };
    let sorted = |msgs: Vec<Msg>| -> Vec<String> {
        let mut v: Vec<String> = msgs
            .into_iter()
            .map(|m| String::from_utf8(m.value.unwrap()).unwrap())
            .collect();
        v.sort();
        v
    };
    let committed = values(true);
    let got = run_py(
        "ck_consume.py",
        &[
            &c.bootstrap(),
            "txn",
            "2",
            &committed.len().to_string(),
            "isolation.level=read_committed",
        ],
        b"",
        STEP,
    )
    .ok()
    .messages();
    assert_eq!(sorted(got), committed, "read_committed");
    let all = values(false);
    let got = run_py(
        "ck_consume.py",
        &[
            &c.bootstrap(),
            "txn",
            "2",
            &all.len().to_string(),
            "isolation.level=read_uncommitted",
        ],
        b"",
        STEP,
    )
    .ok()
    .messages();
    assert_eq!(sorted(got), all, "read_uncommitted");
    for (isolation, want) in [("read_committed", &committed), ("read_uncommitted", &all)] {
        let out = c.cli(
            &[
                "consume",
                "txn",
                "--isolation",
                isolation,
                "--idle-timeout-ms",
                "1000",
            ],
            b"",
        );
        let mut lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        assert_eq!(&lines, want, "shardlog consume --isolation {isolation}");
    }
}

/// Exactly once, consume-transform-produce: librdkafka reads an input
/// topic read_committed and writes each record's result to an output topic
/// in a transaction that also commits its input position
/// (AddOffsetsToTxn, TxnOffsetCommit); every third transaction aborts and
/// rewinds. The output, read read_committed, holds each input's result
/// exactly once; the aborted attempts are in the log (read_uncommitted
/// sees them); the group's committed position is the input's end.
/// The consume-transform-produce loop killed (-9) and restarted, and the
/// broker killed (-9) and restarted under it, in turns: the output read
/// read_committed holds each input record's result exactly once, and the
/// group's committed position is the input's end.
#[test]
fn consume_transform_produce_stays_exactly_once_across_kill_9_of_app_and_broker() {
    if !have_clients() {
        return;
    }
    let mut c = Cluster::start();
    c.create_topic("ctpk-in", 1);
    c.create_topic("ctpk-out", 1);
    let n = 400;
    let input: Vec<u8> = (0..n).flat_map(|i| format!("{i}\n").into_bytes()).collect();
    c.cli(&["produce", "ctpk-in"], &input);
    let args = |b: &str| -> Vec<String> {
        [
            b,
            "ctpk-in",
            "ctpk-out",
            "ctpk-group",
            "ctpk-1",
            &n.to_string(),
            "0.05",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let spawn = |c: &Cluster| {
        let a = args(&c.bootstrap());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Py::spawn("ck_txn_ctp.py", &a, b"")
    };
    let mut app = spawn(&c);
    let mut kills = (0, 0);
    for round in 0..6 {
        std::thread::sleep(Duration::from_millis(1500 + 250 * round));
        if round % 2 == 0 {
            drop(app); // kill -9 of the app, mid-transaction most likely
            kills.0 += 1;
        } else {
            c.kill_and_restart(); // the app lives on (or fails and is replaced)
            kills.1 += 1;
            std::thread::sleep(Duration::from_millis(1000));
            drop(app);
        }
        app = spawn(&c);
    }
    let out = app.wait(Duration::from_secs(100));
    assert!(
        out.status.success(),
        "the last run finished: {}",
        out.stderr
    );
    assert_eq!(kills, (3, 3));
    let lines = |isolation: &str| c.sorted_values("ctpk-out", isolation);
    let mut want: Vec<String> = (0..n).map(|i| format!("out-{i}")).collect();
    want.sort();
    let got = lines("read_committed");
    if got != want {
        let dup: Vec<&String> = got
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| &w[0])
            .collect();
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
        panic!(
            "each result exactly once: {} read, twice: {dup:?}, missing: {missing:?}\nbroker log:\n{}",
            got.len(),
            c.broker.log()
        );
    }
    assert!(
        lines("read_uncommitted").len() > n,
        "aborted attempts are in the log"
    );
    let offsets = c.cli(&["group", "describe", "ctpk-group"], b"");
    let text = String::from_utf8(offsets.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("ctpk-in") && l.split_whitespace().any(|w| w == n.to_string())),
        "the group's committed position is the input's end:\n{text}"
    );
}

#[test]
fn confluent_kafka_consume_transform_produce_is_exactly_once() {
    if !have_clients() {
        return;
    }
    let c = Cluster::start();
    c.create_topic("ctp-in", 1);
    c.create_topic("ctp-out", 1);
    let n = 30;
    let input: Vec<u8> = (0..n).flat_map(|i| format!("{i}\n").into_bytes()).collect();
    c.cli(&["produce", "ctp-in"], &input);
    let report = run_py(
        "ck_txn_ctp.py",
        &[
            &c.bootstrap(),
            "ctp-in",
            "ctp-out",
            "ctp-group",
            "ctp-1",
            &n.to_string(),
        ],
        b"",
        Duration::from_secs(120),
    )
    .ok();
    let summary: serde_json::Value = serde_json::from_str(report.stdout.trim()).unwrap();
    assert!(summary["aborted"].as_u64().unwrap() > 0, "{summary}");
    let lines = |isolation: &str| c.sorted_values("ctp-out", isolation);
    let mut want: Vec<String> = (0..n).map(|i| format!("out-{i}")).collect();
    want.sort();
    assert_eq!(lines("read_committed"), want, "each result exactly once");
    assert!(
        lines("read_uncommitted").len() > n,
        "the aborted attempts are in the log"
    );
    let offsets = c.cli(&["group", "describe", "ctp-group"], b"");
    let text = String::from_utf8(offsets.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains("ctp-in") && l.split_whitespace().any(|w| w == n.to_string())),
        "the group's committed position is the input's end:\n{text}"
    );
}

/// SASL on the Kafka listener (issue 23), with the clients people use and
/// their own SASL settings: confluent-kafka and kafka-python authenticate
/// with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 (one user store: PLAIN checks
/// the SCRAM credential) and read back what they wrote; a wrong password
/// and an unknown user are refused alike and counted, and the good clients
/// go on; before authenticating nothing but ApiVersions and SASL is served;
/// a user added with Kafka's AlterUserScramCredentials logs in at once and
/// after a kill -9.
#[test]
fn sasl_clients_authenticate_and_bad_credentials_are_refused() {
    use kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
    use kafka_protocol::messages::{
        AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
        DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, MetadataRequest,
        SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
        SaslHandshakeResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    use shardlog::security::scram::Mechanism;
    if !have_clients() {
        return;
    }
    let mut c = Cluster::start_with(&[
        "--sasl-enabled-mechanisms",
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
    ]);
    c.create_topic("sasl", 1);
    // The operator adds alice: the password on stdin, salted by the CLI.
    let native = c.broker.broker_arg();
    let out = run(
        &["user", "add", "alice", "--broker", &native],
        b"alice-secret\n",
        STEP,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let out = run(&["user", "list", "--broker", &native], b"", STEP);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "user\tmechanism\titerations\nalice\tSCRAM-SHA-256\t8192\nalice\tSCRAM-SHA-512\t8192\n"
    );
    let out = run(
        &[
            "user",
            "add",
            "eve",
            "--iterations",
            "5",
            "--broker",
            &native,
        ],
        b"pw\n",
        STEP,
    );
    assert!(
        !out.status.success() && out.stderr.contains("iterations"),
        "{}",
        out.stderr
    );
    let k = c.kafka.to_string();
    let roundtrip = |lib: &str, mech: &str, user: &str, pw: &str, n: usize| {
        let n_s = n.to_string();
        run_py(
            "sasl_roundtrip.py",
            &[lib, &k, mech, user, pw, "sasl", &n_s],
            b"",
            STEP,
        )
    };
    let mut total_read = 0;
    for (lib, mech) in [
        ("ck", "SCRAM-SHA-512"),
        ("ck", "PLAIN"),
        ("kp", "SCRAM-SHA-256"),
        ("kp", "PLAIN"),
    ] {
        let out = roundtrip(lib, mech, "alice", "alice-secret", 5).ok();
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(v["produced"], 5, "{lib} {mech}");
        // Everything written so far, in order: this client's five last.
        total_read += 5;
        let read: Vec<String> = v["read"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(read.len(), 5.min(total_read), "{lib} {mech}: {read:?}");
    }
    // A wrong password and an unknown user: refused, the same way
    // (librdkafka says so; kafka-python only retries its bootstrap until
    // it times out, so it is left out here).
    for (lib, mech, user, pw) in [
        ("ck", "SCRAM-SHA-512", "alice", "guess"),
        ("ck", "PLAIN", "mallory", "alice-secret"),
        ("ck", "SCRAM-SHA-256", "mallory", "x"),
    ] {
        let out = roundtrip(lib, mech, user, pw, 1);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{lib} {mech} {user}: {}{}",
            out.stdout,
            out.stderr
        );
        assert!(out.stdout.contains("auth_error"), "{}", out.stdout);
    }
    let failed = total(
        &scrape(&c.http),
        "shardlog_connections_closed_total",
        &[("listener", "kafka"), ("reason", "auth_failed")],
    );
    assert!(failed >= 3.0, "auth failures counted: {failed}");
    // The good clients go on.
    roundtrip("ck", "SCRAM-SHA-256", "alice", "alice-secret", 1).ok();

    // On the wire: a Metadata request before authenticating ends the
    // connection; a mechanism that is not enabled is answered with the
    // enabled ones, then the connection ends.
    let mut raw = common::kafka::Kafka::connect(c.kafka);
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(
        raw.is_closed(),
        "unauthenticated Metadata closes the connection"
    );
    let mut raw = common::kafka::Kafka::connect(c.kafka);
    let mut h = SaslHandshakeRequest::default();
    h.mechanism = StrBytes::from_static_str("GSSAPI");
    let r: SaslHandshakeResponse = raw.call(ApiKey::SaslHandshake, 1, &h);
    assert_eq!(r.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    let mut names: Vec<String> = r.mechanisms.iter().map(|m| m.to_string()).collect();
    names.sort();
    assert_eq!(names, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(raw.is_closed());

    // SaslHandshake v0 (the tokens bare, as clients before KIP-152 send
    // them): PLAIN's token alone in a frame, an empty frame back, then
    // requests are served; a wrong password closes the connection.
    let mut v0 = common::kafka::Kafka::connect(c.kafka);
    h.mechanism = StrBytes::from_static_str("PLAIN");
    let r: SaslHandshakeResponse = v0.call(ApiKey::SaslHandshake, 0, &h);
    assert_eq!(r.error_code, 0);
    v0.send_raw(b"\0alice\0alice-secret");
    assert_eq!(v0.read_frame().expect("PLAIN's empty answer").len(), 0);
    let m: kafka_protocol::messages::MetadataResponse = v0.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    assert!(m
        .topics
        .iter()
        .any(|t| t.name.as_ref().unwrap().as_str() == "sasl"));
    let mut v0 = common::kafka::Kafka::connect(c.kafka);
    let r: SaslHandshakeResponse = v0.call(ApiKey::SaslHandshake, 0, &h);
    assert_eq!(r.error_code, 0);
    v0.send_raw(b"\0alice\0guess");
    assert!(v0.is_closed(), "a bad v0 token closes the connection");

    // Kafka's AlterUserScramCredentials (after PLAIN as alice): bob, from
    // the salted password only; he logs in at once, and after a kill -9.
    let mut admin = common::kafka::Kafka::connect(c.kafka);
    h.mechanism = StrBytes::from_static_str("PLAIN");
    let r: SaslHandshakeResponse = admin.call(ApiKey::SaslHandshake, 1, &h);
    assert_eq!(r.error_code, 0);
    let mut a = SaslAuthenticateRequest::default();
    a.auth_bytes = Bytes::from_static(b"\0alice\0alice-secret");
    let r: SaslAuthenticateResponse = admin.call(ApiKey::SaslAuthenticate, 2, &a);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let salt = b"bob-salt-bob-salt".to_vec();
    let mut up = ScramCredentialUpsertion::default();
    up.name = StrBytes::from_static_str("bob");
    up.mechanism = Mechanism::Sha256.kafka_type();
    up.iterations = 4096;
    up.salt = Bytes::from(salt.clone());
    up.salted_password = Bytes::from(Mechanism::Sha256.salted_password(b"bob-pw", &salt, 4096));
    let mut bad = up.clone();
    bad.name = StrBytes::from_static_str("carol");
    bad.iterations = 10;
    let mut alter = AlterUserScramCredentialsRequest::default();
    alter.upsertions = vec![up, bad];
    let r: AlterUserScramCredentialsResponse =
        admin.call(ApiKey::AlterUserScramCredentials, 0, &alter);
    let codes: Vec<(String, i16)> = r
        .results
        .iter()
        .map(|x| (x.user.to_string(), x.error_code))
        .collect();
    assert_eq!(codes, [("bob".to_string(), 0), ("carol".to_string(), 93)]);
    let r: DescribeUserScramCredentialsResponse = admin.call(
        ApiKey::DescribeUserScramCredentials,
        0,
        &DescribeUserScramCredentialsRequest::default(),
    );
    let listed: Vec<(String, usize)> = r
        .results
        .iter()
        .map(|x| (x.user.to_string(), x.credential_infos.len()))
        .collect();
    assert_eq!(listed, [("alice".to_string(), 2), ("bob".to_string(), 1)]);
    drop(admin);
    roundtrip("ck", "SCRAM-SHA-256", "bob", "bob-pw", 1).ok();
    c.kill_and_restart();
    roundtrip("kp", "PLAIN", "bob", "bob-pw", 1).ok();
    let out = roundtrip("ck", "SCRAM-SHA-256", "bob", "wrong", 1);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
    // Deleted, bob is refused.
    let out = run(
        &["user", "delete", "bob", "--broker", &c.broker.broker_arg()],
        b"",
        STEP,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let out = roundtrip("ck", "SCRAM-SHA-256", "bob", "bob-pw", 1);
    assert_eq!(out.status.code(), Some(3), "{}", out.stderr);
}

/// ACLs with Kafka's authorizer (`--authorizer acl`), as confluent-kafka
/// meets them over SASL: a super user creates topics and ACLs through
/// Kafka's CreateAcls; alice may write and read topics prefixed `alice-`
/// and read in group g-alice, with a literal deny on `alice-secret`. Her
/// produce to bob-b gets TOPIC_AUTHORIZATION_FAILED and writes nothing;
/// Metadata hides bob-b; group g-bob is GROUP_AUTHORIZATION_FAILED; the
/// deny wins over the prefixed allow; she may not create ACLs. Denials are
/// counted; the ACLs survive a kill -9; a deleted ACL stops granting.
#[test]
fn acls_decide_what_each_principal_may_do() {
    if !have_clients() {
        return;
    }
    let mut c = Cluster::start_with(&[
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-256",
        "--authorizer",
        "acl",
        "--super-users",
        "User:admin;User:ops",
    ]);
    c.cli(&["user", "add", "admin"], b"admin-pw\n");
    c.cli(&["user", "add", "alice"], b"alice-pw\n");
    let k = c.kafka.to_string();
    let step = |user: &str, pw: &str, step: &str| -> serde_json::Value {
        let out = run_py("acl_check.py", &[&k, user, pw, step], b"", STEP).ok();
        serde_json::from_str(out.stdout.trim()).unwrap()
    };
    let v = step("admin", "admin-pw", "grant");
    assert_eq!(
        v["created"],
        serde_json::json!(["ok", "ok", "ok", "ok", "ok"])
    );
    assert_eq!(v["described"], 5);
    let probe = step("alice", "alice-pw", "probe");
    assert_eq!(probe["produce alice-a"], "ok", "{probe}");
    assert_eq!(
        probe["produce bob-b"], "TOPIC_AUTHORIZATION_FAILED",
        "{probe}"
    );
    assert_eq!(
        probe["topics"],
        serde_json::json!(["alice-a", "alice-secret"])
    );
    assert_eq!(probe["consume alice-a g-alice"], "ok 5", "{probe}");
    assert_eq!(
        probe["consume alice-a g-bob"], "GROUP_AUTHORIZATION_FAILED",
        "{probe}"
    );
    assert_eq!(
        probe["consume alice-secret g-alice"], "TOPIC_AUTHORIZATION_FAILED",
        "{probe}"
    );
    assert_eq!(
        probe["create acl"], "CLUSTER_AUTHORIZATION_FAILED",
        "{probe}"
    );
    // Resource by resource: what alice may describe is described beside
    // what she may not; a broker's settings need the cluster's
    // DescribeConfigs.
    for (what, outcome) in [
        ("configs alice-a", "ok"),
        ("configs bob-b", "TOPIC_AUTHORIZATION_FAILED"),
        ("configs 0", "CLUSTER_AUTHORIZATION_FAILED"),
        ("describe g-alice", "ok"),
        ("describe g-bob", "GROUP_AUTHORIZATION_FAILED"),
    ] {
        assert_eq!(probe[what], outcome, "{what}: {probe}");
    }
    // Nothing of alice's reached bob-b.
    let marks = step("admin", "admin-pw", "offsets");
    assert_eq!(
        marks,
        serde_json::json!({"alice-a": 5, "alice-secret": 0, "bob-b": 0})
    );
    let denied = total(&scrape(&c.http), "shardlog_authorization_denied_total", &[]);
    assert!(denied >= 4.0, "denials counted: {denied}");

    // The ACLs are durable: after kill -9 they still grant and deny.
    c.kill_and_restart();
    assert_eq!(step("admin", "admin-pw", "acls")["described"], 5);
    assert_eq!(step("admin", "admin-pw", "revoke")["deleted"], 1);
    let probe = step("alice", "alice-pw", "probe");
    assert_eq!(
        probe["produce alice-a"], "TOPIC_AUTHORIZATION_FAILED",
        "{probe}"
    );
    // Read on alice-* still implies Describe: Metadata still shows them.
    assert_eq!(
        probe["topics"],
        serde_json::json!(["alice-a", "alice-secret"])
    );
    let marks = step("admin", "admin-pw", "offsets");
    assert_eq!(marks["alice-a"], 5);
}

/// Test certificates: a CA, and a leaf for 127.0.0.1 and localhost signed
/// by it, as PEM files in `dir` (`{name}-ca.pem`, `{name}-cert.pem`,
/// `{name}-key.pem`).
fn make_certs(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, format!("shardlog test CA {name}"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    leaf.distinguished_name.push(DnType::CommonName, "shardlog");
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    // A client certificate from the same CA (mTLS): CN=client-{name}.
    let ckey = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name = rcgen::DistinguishedName::new();
    client
        .distinguished_name
        .push(DnType::OrganizationName, "shardlog tests");
    client
        .distinguished_name
        .push(DnType::CommonName, format!("client-{name}"));
    let ccert = client.signed_by(&ckey, &ca_cert, &ca_key).unwrap();
    std::fs::write(dir.join(format!("{name}-client-cert.pem")), ccert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}-client-key.pem")),
        ckey.serialize_pem(),
    )
    .unwrap();
    paths
}

/// A TLS connection trusting `ca`, as a Kafka client opens one (rustls).
fn tls_connect(
    addr: SocketAddr,
    ca: &std::path::Path,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    tls_connect_as(addr, ca, None)
}

/// The same, presenting the client certificate `{prefix}-client-cert.pem`
/// (with its key) when `client` names a prefix.
fn tls_connect_as(
    addr: SocketAddr,
    ca: &std::path::Path,
    client: Option<&std::path::Path>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = shardlog::tls::provider();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => config.with_no_client_auth(),
        Some(prefix) => {
            let p = prefix.display();
            let cert = CertificateDer::from_pem_file(format!("{p}-client-cert.pem")).unwrap();
            let key = PrivateKeyDer::from_pem_file(format!("{p}-client-key.pem")).unwrap();
            config.with_client_auth_cert(vec![cert], key).unwrap()
        }
    };
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // The handshake, now: an untrusted certificate fails here.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// One Kafka request and its answer over any stream (a TLS one here).
fn kafka_call_over<S: Read + Write, Q: Encodable, R: Decodable>(
    s: &mut S,
    api: ApiKey,
    version: i16,
    req: &Q,
) -> std::io::Result<R> {
    let mut h = RequestHeader::default();
    h.request_api_key = api as i16;
    h.request_api_version = version;
    h.correlation_id = 9;
    let mut body = BytesMut::new();
    h.encode(&mut body, api.request_header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    s.write_all(&frame)?;
    s.flush()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut resp)?;
    let mut resp = Bytes::from(resp);
    ResponseHeader::decode(&mut resp, api.response_header_version(version)).unwrap();
    Ok(R::decode(&mut resp, version).unwrap())
}

/// ApiVersions v0 over any stream: the answer's correlation id.
fn api_versions_over<S: Read + Write>(s: &mut S, cid: i32) -> std::io::Result<i32> {
    let mut req = Vec::new();
    req.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    req.extend_from_slice(&0i16.to_be_bytes());
    req.extend_from_slice(&cid.to_be_bytes());
    req.extend_from_slice(&(-1i16).to_be_bytes()); // no client id
    let mut frame = (req.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&req);
    s.write_all(&frame)?;
    s.flush()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body)?;
    Ok(i32::from_be_bytes(body[..4].try_into().unwrap()))
}

/// TLS on the Kafka listener (`--kafka-tls on`) with SASL (SASL_SSL):
/// confluent-kafka, kafka-python and kcat (librdkafka 2.0) with SCRAM-SHA-512
/// write and read back; a client trusting another CA, plaintext to the TLS
/// port and TLS garbage are refused (counted as tls_failed) while the good
/// clients go on; SIGHUP loads a new certificate for new connections while
/// a connection opened before it keeps working.
#[test]
fn tls_clients_connect_and_bad_peers_are_refused() {
    if !have_clients() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path(), "one");
    let (other_ca, cert2, key2) = make_certs(certs.path(), "two");
    let live_cert = certs.path().join("live-cert.pem");
    let live_key = certs.path().join("live-key.pem");
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    let (lc, lk) = (
        live_cert.display().to_string(),
        live_key.display().to_string(),
    );
    let c = Cluster::start_with(&[
        "--kafka-tls",
        "on",
        "--tls-cert-file",
        &lc,
        "--tls-key-file",
        &lk,
        "--sasl-enabled-mechanisms",
        "SCRAM-SHA-256,SCRAM-SHA-512",
    ]);
    c.create_topic("tls", 1);
    c.cli(&["user", "add", "alice"], b"alice-pw\n");
    let k = c.kafka.to_string();
    let ca_s = ca.display().to_string();
    let roundtrip = |lib: &str, mech: &str, ca: &str, n: usize| {
        let n_s = n.to_string();
        run_py(
            "sasl_roundtrip.py",
            &[lib, &k, mech, "alice", "alice-pw", "tls", &n_s, ca],
            b"",
            STEP,
        )
    };
    let mut total_read = 0;
    for (lib, mech) in [("ck", "SCRAM-SHA-512"), ("kp", "SCRAM-SHA-512")] {
        let out = roundtrip(lib, mech, &ca_s, 5).ok();
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(v["produced"], 5, "{lib}");
        total_read += 5;
        assert_eq!(
            v["read"].as_array().unwrap().len(),
            5.min(total_read),
            "{lib}: {v}"
        );
    }
    // kcat (Debian's: librdkafka 2.0) over SASL_SSL with SCRAM-SHA-512.
    let kcat = |args: &[&str], stdin: &[u8]| -> Option<std::process::Output> {
        let mut all = vec![
            "-b",
            &k,
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
            "-X",
            "sasl.username=alice",
            "-X",
            "sasl.password=alice-pw",
            "-X",
        ];
        let ca_opt = format!("ssl.ca.location={ca_s}");
        all.push(&ca_opt);
        all.extend_from_slice(args);
        let mut child = match Command::new("kcat")
            .args(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("cannot run kcat: {e}"),
        };
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        if wait_deadline(&mut child, STEP).is_none() {
            let _ = child.kill();
        }
        Some(child.wait_with_output().unwrap())
    };
    if let Some(out) = kcat(&["-t", "tls", "-p", "0", "-P"], b"kcat one\nkcat two\n") {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = kcat(&["-t", "tls", "-p", "0", "-C", "-o", "-2", "-e", "-q"], b"").unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "kcat one\nkcat two\n");
    } else {
        println!("kcat is not installed: its SASL_SSL check is skipped");
    }
    // A client that trusts another CA refuses the broker's certificate.
    let out = roundtrip("ck", "SCRAM-SHA-512", &other_ca.display().to_string(), 1);
    assert_eq!(out.status.code(), Some(4), "{}{}", out.stdout, out.stderr);
    // Plaintext Kafka to the TLS port, and garbage: the handshake fails,
    // the connection closes, nothing else notices.
    let mut plain = TcpStream::connect(c.kafka).unwrap();
    plain.set_read_timeout(Some(STEP)).unwrap();
    assert!(
        api_versions_over(&mut plain, 7).is_err(),
        "plaintext is not served"
    );
    let mut junk = TcpStream::connect(c.kafka).unwrap();
    junk.set_read_timeout(Some(STEP)).unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5])
        .unwrap();
    let mut buf = [0u8; 64];
    // An alert at most, then the end of the stream.
    let mut got = 0;
    while let Ok(n) = junk.read(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
        assert!(got < 64, "a refusal is short");
    }
    let failed = total(
        &scrape(&c.http),
        "shardlog_connections_closed_total",
        &[("listener", "kafka"), ("reason", "tls_failed")],
    );
    assert!(failed >= 3.0, "TLS refusals counted: {failed}");

    // A connection opened with the first certificate...
    let mut before = tls_connect(c.kafka, &ca).unwrap();
    assert_eq!(api_versions_over(&mut before, 1).unwrap(), 1);
    // ...the files replaced (atomically, by rename) and SIGHUP sent.
    std::fs::copy(&cert2, certs.path().join("new-cert.pem")).unwrap();
    std::fs::copy(&key2, certs.path().join("new-key.pem")).unwrap();
    std::fs::rename(certs.path().join("new-key.pem"), &live_key).unwrap();
    std::fs::rename(certs.path().join("new-cert.pem"), &live_cert).unwrap();
    c.broker.signal(libc::SIGHUP);
    // New connections get the new certificate (each shard reloads at its
    // next handshake: every connection here may land on either shard).
    let deadline = Instant::now() + STEP;
    loop {
        let mut ok = 0;
        for _ in 0..4 {
            if let Ok(mut s) = tls_connect(c.kafka, &other_ca) {
                assert_eq!(api_versions_over(&mut s, 2).unwrap(), 2);
                ok += 1;
            }
        }
        if ok == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the new certificate is served");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        tls_connect(c.kafka, &ca).is_err(),
        "the old CA no longer verifies"
    );
    // The connection from before goes on.
    assert_eq!(api_versions_over(&mut before, 3).unwrap(), 3);
    let out = roundtrip("ck", "SCRAM-SHA-512", &other_ca.display().to_string(), 1);
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
}

/// mTLS (`--tls-client-ca-file`): a client without a certificate, or with
/// one from another CA, is refused in the handshake; one with a
/// certificate from the CA is `User:` + its subject (RFC 2253, as Kafka's
/// SSL principal), which ACLs then name: DescribeAcls is
/// CLUSTER_AUTHORIZATION_FAILED until `shardlog acl add` grants that
/// principal Describe on the cluster.
#[test]
fn mtls_client_certificates_are_required_and_name_the_principal() {
    use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certs(certs.path(), "one");
    make_certs(certs.path(), "two");
    let (ca_s, cert_s, key_s) = (
        ca.display().to_string(),
        cert.display().to_string(),
        key.display().to_string(),
    );
    let c = Cluster::start_with(&[
        "--kafka-tls",
        "on",
        "--tls-cert-file",
        &cert_s,
        "--tls-key-file",
        &key_s,
        "--tls-client-ca-file",
        &ca_s,
        "--authorizer",
        "acl",
    ]);
    let one = certs.path().join("one");
    let two = certs.path().join("two");
    // No certificate, or one the CA did not sign: refused.
    let refused = |client: Option<&std::path::Path>| match tls_connect_as(c.kafka, &ca, client) {
        // TLS 1.3: the client finishes its side before the server's
        // verdict arrives; the refusal shows at the first exchange.
        Ok(mut s) => api_versions_over(&mut s, 1).is_err(),
        Err(_) => true,
    };
    assert!(refused(None), "a client without a certificate");
    assert!(refused(Some(&two)), "a certificate from another CA");
    let describe = DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1);
    let mut s = tls_connect_as(c.kafka, &ca, Some(&one)).unwrap();
    let r: DescribeAclsResponse =
        kafka_call_over(&mut s, ApiKey::DescribeAcls, 3, &describe).unwrap();
    assert_eq!(r.error_code, 31, "CLUSTER_AUTHORIZATION_FAILED");
    c.cli(
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:CN=client-one,O=shardlog tests",
            "--operation",
            "Describe",
            "--cluster",
        ],
        b"",
    );
    let r: DescribeAclsResponse =
        kafka_call_over(&mut s, ApiKey::DescribeAcls, 3, &describe).unwrap();
    assert_eq!(r.error_code, 0, "{:?}: {}", r.error_message, c.broker.log());
    assert_eq!(
        r.resources[0].acls[0].principal.as_str(),
        "User:CN=client-one,O=shardlog tests"
    );
    let failed = total(
        &scrape(&c.http),
        "shardlog_connections_closed_total",
        &[("listener", "kafka"), ("reason", "tls_failed")],
    );
    assert!(failed >= 2.0, "refused handshakes counted: {failed}");
}

/// Client quotas (KIP-13, KIP-219): a producer_byte_rate of 1 MiB/s on
/// client id `slow`, set with Kafka's AlterClientQuotas and read back with
/// DescribeClientQuotas. Two confluent-kafka producers go flat out at
/// once: over 10 s after a 5 s warm-up (the first burst Kafka's 11-sample
/// window admits), `slow` is held to within 10% of its quota (the broker
/// answers throttle_time_ms and mutes the connection), `fast` (no quota)
/// is not held to it.
#[test]
fn a_producer_over_its_quota_is_throttled_to_it_and_another_is_not() {
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    use kafka_protocol::messages::{
        AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
        DescribeClientQuotasResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    if !have_clients() {
        return;
    }
    const QUOTA: f64 = 1_048_576.0;
    let c = Cluster::start();
    c.create_topic("q", 1);
    let mut k = common::kafka::Kafka::connect(c.kafka);
    let alter = AlterClientQuotasRequest::default().with_entries(vec![EntryData::default()
        .with_entity(vec![EntityData::default()
            .with_entity_type(StrBytes::from_static_str("client-id"))
            .with_entity_name(Some(StrBytes::from_static_str("slow")))])
        .with_ops(vec![OpData::default()
            .with_key(StrBytes::from_static_str("producer_byte_rate"))
            .with_value(QUOTA)])]);
    let r: AlterClientQuotasResponse = k.call(ApiKey::AlterClientQuotas, 1, &alter);
    assert_eq!(
        r.entries[0].error_code, 0,
        "{:?}",
        r.entries[0].error_message
    );
    let describe =
        DescribeClientQuotasRequest::default().with_components(vec![ComponentData::default()
            .with_entity_type(StrBytes::from_static_str("client-id"))
            .with_match_type(2)
            .with_match(None)]);
    let r: DescribeClientQuotasResponse = k.call(ApiKey::DescribeClientQuotas, 1, &describe);
    let entries = r.entries.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].entity[0].entity_name.as_ref().unwrap().as_str(),
        "slow"
    );
    assert_eq!(entries[0].values[0].value, QUOTA);
    // The same through `shardlog quota`.
    let out = c.cli(&["quota", "list", "--json"], b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"quotas":[{"user":null,"client_id":"slow","quotas":{"producer_byte_rate":1048576}}]}"#
    );
    let run = |client: &'static str| {
        let k = c.kafka.to_string();
        std::thread::spawn(move || {
            let out = run_py("quota_produce.py", &[&k, "q", client, "10", "5"], b"", STEP).ok();
            serde_json::from_str::<serde_json::Value>(out.stdout.trim()).unwrap()
        })
    };
    let (slow, fast) = (run("slow"), run("fast"));
    let (slow, fast) = (slow.join().unwrap(), fast.join().unwrap());
    let rate =
        |v: &serde_json::Value| v["bytes"].as_f64().unwrap() / v["seconds"].as_f64().unwrap();
    let (slow_rate, fast_rate) = (rate(&slow), rate(&fast));
    eprintln!("quota {QUOTA} B/s: slow {slow_rate:.0} B/s {slow}; fast {fast_rate:.0} B/s {fast}");
    assert!(
        (0.9 * QUOTA..=1.1 * QUOTA).contains(&slow_rate),
        "slow: {slow_rate:.0} B/s against a quota of {QUOTA} ({slow})"
    );
    assert!(
        slow["throttle_ms_max"].as_i64().unwrap() > 0,
        "the broker told the client to back off: {slow}"
    );
    assert!(
        fast_rate > 3.0 * QUOTA,
        "fast is not held to the other's quota: {fast_rate:.0} B/s ({fast})"
    );
    assert_eq!(fast["throttle_ms_max"], 0, "{fast}");
    // Removed, the quota is gone.
    c.cli(
        &[
            "quota",
            "set",
            "--client-id",
            "slow",
            "--remove",
            "producer_byte_rate",
        ],
        b"",
    );
    let out = c.cli(&["quota", "list"], b"");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "user\tclient-id\tkey\tvalue\n"
    );
}

/// `shardlog consume` of the first two messages of `topic`'s partition 1.
fn first_two_of_partition_1(topic: &str) -> [&str; 8] {
    [
        "consume",
        topic,
        "--partition",
        "1",
        "--from",
        "earliest",
        "--max-messages",
        "2",
    ]
}

/// A broker with `flag on` and a certificate from CA "one" in `dir`:
/// (it, CA one, another CA "two").
fn tls_cluster(dir: &std::path::Path, flag: &str) -> (Cluster, PathBuf, PathBuf) {
    let (ca, cert, key) = make_certs(dir, "one");
    let (other_ca, _, _) = make_certs(dir, "two");
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let c = Cluster::start_with(&[
        flag,
        "on",
        "--tls-cert-file",
        &cert_s,
        "--tls-key-file",
        &key_s,
    ]);
    (c, ca, other_ca)
}

/// TLS on the native listener (`--native-tls on`): the CLI connects with
/// `--tls-ca` (topic create, produce through the per-shard ports, consume)
/// and reads back what it wrote; without TLS, or trusting another CA, it
/// fails with an error (no hang), counted as tls_failed.
#[test]
fn the_native_listener_speaks_tls_to_the_cli() {
    let certs = tempfile::tempdir().unwrap();
    let (c, ca, other_ca) = tls_cluster(certs.path(), "--native-tls");
    let b = c.broker.broker_arg();
    let ca_s = ca.display().to_string();
    let tls = |args: &[&str], stdin: &[u8]| {
        let mut a = args.to_vec();
        a.extend(["--broker", &b, "--tls-ca", &ca_s]);
        run(&a, stdin, STEP)
    };
    let out = tls(&["topic", "create", "nt", "--partitions", "2"], b"");
    assert!(out.status.success(), "{}", out.stderr);
    let out = tls(
        &["produce", "nt", "--partition", "1"],
        b"over tls\nsecond\n",
    );
    assert!(out.status.success(), "{}", out.stderr);
    let out = tls(&first_two_of_partition_1("nt"), b"");
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "over tls\nsecond\n");
    // Plaintext to the TLS port, and a client trusting another CA: errors.
    let out = run(&["topic", "list", "--broker", &b], b"", STEP);
    assert!(!out.status.success());
    let other = other_ca.display().to_string();
    let out = run(
        &["topic", "list", "--broker", &b, "--tls-ca", &other],
        b"",
        STEP,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    let failed = total(
        &scrape(&c.http),
        "shardlog_connections_closed_total",
        &[("listener", "native"), ("reason", "tls_failed")],
    );
    assert!(failed >= 2.0, "refused handshakes counted: {failed}");
}

/// SASL on the native listener (`--native-sasl-enabled-mechanisms`): the
/// first user written into the stopped broker's data directory (`user add
/// --data-dir`), then the CLI logs in with SCRAM-SHA-512 or PLAIN through
/// the public and the per-shard ports (topic create, produce, consume);
/// no login, a wrong password, an unknown user and a mechanism the
/// listener does not take are each refused with an error, and the good
/// clients go on.
#[test]
fn the_native_listener_requires_a_sasl_login() {
    let dir = data_dir();
    let d = dir.path().display().to_string();
    let out = run(
        &["user", "add", "alice", "--data-dir", &d],
        b"s3cret\n",
        STEP,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let b = Broker::start(
        dir.path(),
        &[
            "--shards",
            "2",
            "--shard-port-base",
            &two_free_ports().to_string(),
            "--native-sasl-enabled-mechanisms",
            "SCRAM-SHA-512,PLAIN",
            "--kafka-listen",
            "off",
        ],
    );
    let broker = b.broker_arg();
    let as_user = |mechanism: &str, user: &str, password: &str, args: &[&str], stdin: &[u8]| {
        let mut a = args.to_vec();
        a.extend([
            "--broker",
            &broker,
            "--sasl-mechanism",
            mechanism,
            "--sasl-username",
            user,
        ]);
        run_env(&a, &[("SHARDLOG_SASL_PASSWORD", password)], stdin, STEP)
    };
    let alice =
        |args: &[&str], stdin: &[u8]| as_user("SCRAM-SHA-512", "alice", "s3cret", args, stdin);
    let out = alice(&["topic", "create", "st", "--partitions", "2"], b"");
    assert!(out.status.success(), "{}", out.stderr);
    let out = alice(&["produce", "st", "--partition", "1"], b"one\ntwo\n");
    assert!(out.status.success(), "{}", out.stderr);
    let out = as_user(
        "PLAIN",
        "alice",
        "s3cret",
        &first_two_of_partition_1("st"),
        b"",
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");
    // Refused: no login, a wrong password, an unknown user, SCRAM-SHA-256
    // (not enabled here).
    let out = run(&["topic", "list", "--broker", &broker], b"", STEP);
    assert!(!out.status.success());
    assert!(out.stderr.contains("SASL"), "{}", out.stderr);
    for (m, user, pw) in [
        ("SCRAM-SHA-512", "alice", "wrong"),
        ("PLAIN", "alice", "wrong"),
        ("SCRAM-SHA-512", "mallory", "s3cret"),
        ("SCRAM-SHA-256", "alice", "s3cret"),
    ] {
        let out = as_user(m, user, pw, &["topic", "list"], b"");
        assert!(!out.status.success(), "{m} {user} {pw}");
        assert!(
            out.stderr.contains("authentication failed") || out.stderr.contains("not enabled"),
            "{m} {user}: {}",
            out.stderr
        );
    }
    // And the good client goes on.
    let out = alice(&["topic", "list"], b"");
    assert!(out.status.success(), "{}", out.stderr);
    assert!(String::from_utf8_lossy(&out.stdout).contains("st"));
}

/// `--authorizer acl` on a native listener that authenticates (SASL): the
/// operator (a super user) creates topics and grants alice a prefixed
/// ACL over the CLI; alice may write and read what it names and nothing
/// else (a produce elsewhere is TopicAuthorizationFailed and writes
/// nothing, the listing hides the topic, ACLs are the cluster's), and the
/// denials are counted.
#[test]
fn the_authorizer_checks_the_native_listener_once_it_authenticates() {
    let dir = data_dir();
    let d = dir.path().display().to_string();
    for (user, pw) in [("admin", b"adminpw\n"), ("alice", b"alicepw\n")] {
        let out = run(&["user", "add", user, "--data-dir", &d], pw, STEP);
        assert!(out.status.success(), "{}", out.stderr);
    }
    let http = format!("127.0.0.1:{}", free_port());
    let b = Broker::start(
        dir.path(),
        &[
            "--native-sasl-enabled-mechanisms",
            "SCRAM-SHA-256",
            "--authorizer",
            "acl",
            "--super-users",
            "User:admin",
            "--kafka-listen",
            "off",
            "--http-listen",
            &http,
        ],
    );
    let broker = b.broker_arg();
    let as_user = |user: &str, args: &[&str], stdin: &[u8]| {
        let mut a = args.to_vec();
        a.extend([
            "--broker",
            &broker,
            "--sasl-mechanism",
            "SCRAM-SHA-256",
            "--sasl-username",
            user,
        ]);
        let pw = format!("{user}pw");
        run_env(&a, &[("SHARDLOG_SASL_PASSWORD", &pw)], stdin, STEP)
    };
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", out.stderr);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(as_user(
        "admin",
        &["topic", "create", "app-orders", "--partitions", "1"],
        b"",
    ));
    ok(as_user(
        "admin",
        &["topic", "create", "payroll", "--partitions", "1"],
        b"",
    ));
    ok(as_user(
        "admin",
        &[
            "acl",
            "add",
            "--allow-principal",
            "User:alice",
            "--operation",
            "All",
            "--topic",
            "app-",
            "--resource-pattern-type",
            "prefixed",
        ],
        b"",
    ));
    ok(as_user(
        "alice",
        &["produce", "app-orders", "--partition", "0"],
        b"mine\n",
    ));
    let out = as_user(
        "alice",
        &["produce", "payroll", "--partition", "0"],
        b"raise\n",
    );
    assert!(!out.status.success(), "alice wrote to payroll");
    assert!(out.stderr.contains("not authorized"), "{}", out.stderr);
    let listed = ok(as_user("alice", &["topic", "list"], b""));
    assert!(
        listed.contains("app-orders") && !listed.contains("payroll"),
        "{listed}"
    );
    let out = as_user("alice", &["acl", "list"], b"");
    assert!(!out.status.success(), "alice read the ACLs");
    assert!(out.stderr.contains("may not"), "{}", out.stderr);
    let got = ok(as_user(
        "alice",
        &[
            "consume",
            "app-orders",
            "--partition",
            "0",
            "--from",
            "earliest",
            "--max-messages",
            "1",
        ],
        b"",
    ));
    assert_eq!(got, "mine\n");
    // Nothing reached payroll: partition 0 still ends at offset 0.
    let described = ok(as_user("admin", &["topic", "describe", "payroll"], b""));
    assert!(
        described.lines().any(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f.len() == 6 && f[0] == "0" && f[3] == "0"
        }),
        "{described}"
    );
    let denied = total(&scrape(&http), "shardlog_authorization_denied_total", &[]);
    // The produce (its topic lookup) and the ACL listing.
    assert!(denied >= 2.0, "denials counted: {denied}");
}

/// `--http-tls on`: /metrics and /healthz over HTTPS with the listeners'
/// certificate, read by Python's urllib (as a scraper would) and by
/// `shardlog top`; plaintext HTTP and a client trusting another CA get
/// nothing, and the endpoint serves the next client.
#[test]
fn the_http_endpoint_speaks_https() {
    let certs = tempfile::tempdir().unwrap();
    let (c, ca, other_ca) = tls_cluster(certs.path(), "--http-tls");
    let url = format!("https://{}", c.http);
    let urllib = |ca: &std::path::Path, path: &str| {
        let script = "import ssl, sys, urllib.request\n\
            ctx = ssl.create_default_context(cafile=sys.argv[1])\n\
            r = urllib.request.urlopen(sys.argv[2], context=ctx, timeout=5)\n\
            sys.stdout.write(str(r.status) + '\\n' + r.read().decode())\n";
        let mut cmd = Command::new("python3");
        cmd.args(["-c", script])
            .arg(ca)
            .arg(format!("{url}{path}"))
            .stdin(Stdio::null());
        run_bounded(&mut cmd, STEP, || {})
    };
    // The shards may still be recovering: /healthz is 503 until they serve.
    let start = Instant::now();
    loop {
        let got = urllib(&ca, "/healthz");
        if got.status.is_some_and(|s| s.success()) {
            assert_eq!(got.stdout, "200\nok\n");
            break;
        }
        assert!(start.elapsed() < STEP, "no HTTPS /healthz: {}", got.stderr);
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = urllib(&ca, "/metrics");
    assert!(got.status.is_some_and(|s| s.success()), "{}", got.stderr);
    assert!(got.stdout.contains("shardlog_"), "{}", got.stdout);
    // shardlog top over HTTPS.
    let ca_s = ca.display().to_string();
    let out = run(
        &[
            "--tls-ca",
            &ca_s,
            "top",
            "--http",
            &url,
            "--once",
            "--json",
            "--interval-ms",
            "100",
        ],
        b"",
        STEP,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.starts_with('{'), "{json}");
    // Plaintext HTTP to it, and a client trusting another CA: nothing.
    assert!(
        shardlog::http::get(&c.http, "/metrics", STEP).is_err(),
        "plaintext answered"
    );
    let got = urllib(&other_ca, "/healthz");
    assert!(!got.status.is_some_and(|s| s.success()));
    assert!(
        got.stderr.contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        got.stderr
    );
    let out = run(&["top", "--http", &url, "--once"], b"", STEP);
    assert!(!out.status.success(), "https without --tls-ca");
    assert!(out.stderr.contains("--tls-ca"), "{}", out.stderr);
    // And it goes on serving.
    let got = urllib(&ca, "/healthz");
    assert_eq!(got.stdout, "200\nok\n", "{}", got.stderr);
}

/// consumer_byte_rate: a consumer with a 1 MiB/s quota reading a full
/// partition is held to within 10% of it over 10 s after a warm-up (the
/// Fetch answers carry throttle_time_ms and the connection is muted),
/// while another client id reads freely.
#[test]
fn a_consumer_over_its_quota_is_throttled_to_it() {
    if !have_clients() {
        return;
    }
    const QUOTA: f64 = 1_048_576.0;
    let c = Cluster::start();
    c.create_topic("cq", 1);
    // About 28 MB to read (more than the quota allows in the test's
    // 13 s), written at a producer quota of 4 MiB/s so the amount does not
    // depend on the machine.
    c.cli(
        &[
            "quota",
            "set",
            "--client-id",
            "filler",
            "--producer-byte-rate",
            "4194304",
        ],
        b"",
    );
    let k = c.kafka.to_string();
    let out = run_py(
        "quota_produce.py",
        &[&k, "cq", "filler", "6", "0"],
        b"",
        STEP,
    )
    .ok();
    let filled: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert!(filled["bytes"].as_f64().unwrap() > 20e6, "{filled}");
    c.cli(
        &[
            "quota",
            "set",
            "--client-id",
            "slow-reader",
            "--consumer-byte-rate",
            "1048576",
        ],
        b"",
    );
    let read = |client: &'static str| {
        let k = c.kafka.to_string();
        std::thread::spawn(move || {
            let out = run_py(
                "quota_consume.py",
                &[&k, "cq", client, "10", "3"],
                b"",
                STEP,
            )
            .ok();
            serde_json::from_str::<serde_json::Value>(out.stdout.trim()).unwrap()
        })
    };
    let (slow, fast) = (read("slow-reader"), read("fast-reader"));
    let (slow, fast) = (slow.join().unwrap(), fast.join().unwrap());
    let rate =
        |v: &serde_json::Value| v["bytes"].as_f64().unwrap() / v["seconds"].as_f64().unwrap();
    let slow_rate = rate(&slow);
    eprintln!("consumer quota {QUOTA} B/s: slow {slow_rate:.0} B/s {slow}; fast {fast}");
    assert!(
        (0.9 * QUOTA..=1.1 * QUOTA).contains(&slow_rate),
        "slow: {slow_rate:.0} B/s against a quota of {QUOTA} ({slow})"
    );
    assert!(slow["throttle_ms_max"].as_i64().unwrap() > 0, "{slow}");
    assert_eq!(fast["throttle_ms_max"], 0, "{fast}");
}

/// KIP-368: with `--connections-max-reauth-ms`, SaslAuthenticate tells the
/// client its session's lifetime. confluent-kafka re-authenticates on its
/// connections before each session ends and produces through several
/// lifetimes without a failure; a raw client that does not is closed at
/// its next request after the expiry, and one that re-authenticates in
/// time goes on past it.
#[test]
fn sasl_sessions_expire_unless_the_client_re_authenticates() {
    use kafka_protocol::messages::{
        MetadataRequest, MetadataResponse, SaslAuthenticateRequest, SaslAuthenticateResponse,
        SaslHandshakeRequest, SaslHandshakeResponse,
    };
    use kafka_protocol::protocol::StrBytes;
    if !have_clients() {
        return;
    }
    const LIFETIME_MS: u64 = 2_000;
    let lifetime = LIFETIME_MS.to_string();
    let c = Cluster::start_with(&[
        "--sasl-enabled-mechanisms",
        "PLAIN,SCRAM-SHA-512",
        "--connections-max-reauth-ms",
        &lifetime,
    ]);
    c.create_topic("reauth", 1);
    let out = run(
        &["user", "add", "alice", "--broker", &c.broker.broker_arg()],
        b"alice-secret\n",
        STEP,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let expired = || {
        total(
            &scrape(&c.http),
            "shardlog_connections_closed_total",
            &[("listener", "kafka"), ("reason", "session_expired")],
        )
    };

    // A raw client logs in with PLAIN and is told the lifetime.
    let login = |k: &mut common::kafka::Kafka| {
        let mut h = SaslHandshakeRequest::default();
        h.mechanism = StrBytes::from_static_str("PLAIN");
        let r: SaslHandshakeResponse = k.call(ApiKey::SaslHandshake, 1, &h);
        assert_eq!(r.error_code, 0);
        let mut a = SaslAuthenticateRequest::default();
        a.auth_bytes = Bytes::from_static(b"\0alice\0alice-secret");
        let r: SaslAuthenticateResponse = k.call(ApiKey::SaslAuthenticate, 2, &a);
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        r.session_lifetime_ms
    };
    let metadata = |k: &mut common::kafka::Kafka| {
        let _: MetadataResponse = k.call(ApiKey::Metadata, 12, &MetadataRequest::default());
    };
    let mut lapses = common::kafka::Kafka::connect(c.kafka);
    let mut renews = common::kafka::Kafka::connect(c.kafka);
    assert_eq!(login(&mut lapses), LIFETIME_MS as i64);
    assert_eq!(login(&mut renews), LIFETIME_MS as i64);
    metadata(&mut lapses);
    std::thread::sleep(Duration::from_millis(LIFETIME_MS * 3 / 4));
    // Renewed before the end (as alice: the same principal).
    assert_eq!(login(&mut renews), LIFETIME_MS as i64);
    std::thread::sleep(Duration::from_millis(LIFETIME_MS / 2));
    // Past the first session's end: the renewed connection is served, the
    // other is closed at its request, unanswered.
    metadata(&mut renews);
    lapses.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(
        lapses.read_frame().is_none(),
        "an expired session was served"
    );
    assert_eq!(expired(), 1.0);

    // confluent-kafka over three lifetimes, on its connections: every
    // message delivered, in order, no error, and no session lapsed.
    let out = run_py(
        "sasl_reauth.py",
        &[
            &c.kafka.to_string(),
            "SCRAM-SHA-512",
            "alice",
            "alice-secret",
            "reauth",
            "7",
        ],
        b"",
        STEP,
    )
    .ok();
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert!(v["produced"].as_u64().unwrap() > 30, "{v}");
    assert_eq!(v["delivered"], v["produced"], "{v}");
    assert_eq!(v["in_order"], true, "{v}");
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    let m = scrape(&c.http);
    let renewed = total(&m, "shardlog_sasl_reauthentications_total", &[]);
    assert!(renewed >= 3.0, "re-authentications: {renewed}");
    assert_eq!(expired(), 1.0, "a client's session lapsed");
}
