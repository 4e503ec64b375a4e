//! `shardlog-bench` run as a user runs it: the built binary against a broker
//! it spawns itself, its JSON checked for sane values, its temporary data
//! directory checked to be gone, and bad arguments refused with one line.
//! Every run is under a deadline: a hung child is killed and the test fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(60);

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the bench with `args`, killing it if it outlives the deadline.
fn bench(args: &[&str]) -> Output {
    bench_env(args, &[])
}

/// `bench` with environment variables set.
fn bench_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardlog-bench"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shardlog-bench");
    let out_t = read_all(child.stdout.take().expect("stdout"));
    let err_t = read_all(child.stderr.take().expect("stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shardlog-bench {args:?} ran over {DEADLINE:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        code: status.code(),
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    }
}

/// Reads a pipe to its end on a thread (so a full pipe never blocks the child).
fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// A fresh directory under cargo's per-target temp dir (a real disk, not
/// tmpfs: the broker writes with O_DIRECT).
fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

fn f(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for k in path.split('.') {
        cur = &cur[k];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

fn assert_ordered_latency(j: &Value, section: &str) {
    let l = |q: &str| f(j, &format!("{section}.latency_us.{q}"));
    let (p50, p90, p99, p999, p9999, max) = (
        l("p50"),
        l("p90"),
        l("p99"),
        l("p999"),
        l("p9999"),
        l("max"),
    );
    assert!(p50 > 0.0, "{section}: p50 {p50}");
    assert!(
        p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= p9999 && p9999 <= max,
        "{section}: percentiles out of order: {p50} {p90} {p99} {p999} {p9999} {max}"
    );
}

/// Runs a spawned-broker bench writing JSON; checks the directory it used
/// is gone afterwards and returns the parsed report.
fn run_json(name: &str, extra: &[&str]) -> (Value, Output) {
    let dir = scratch(name);
    let json = dir.join("report.json");
    let tmp = dir.join("brokers");
    let mut args = vec![
        "--spawn-broker",
        "--tmp-dir",
        tmp.to_str().expect("utf-8 path"),
        "--json",
        json.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let out = bench(&args);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid JSON");
    let data_dir = j["params"]["data_dir"].as_str().expect("params.data_dir");
    assert!(
        !Path::new(data_dir).exists(),
        "broker data dir {data_dir} left behind"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).expect("tmp dir").count(),
        0,
        "something left in {}",
        tmp.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    (j, out)
}

#[test]
fn spawned_run_consumes_exactly_what_it_produced_and_reports_sane_figures() {
    let (j, out) = run_json(
        "basic",
        &[
            "--shards",
            "2",
            "--messages",
            "20000",
            "--message-size",
            "100",
        ],
    );
    for section in ["produce", "consume", "end_to_end"] {
        assert_eq!(f(&j, &format!("{section}.messages")), 20000.0, "{section}");
        assert!(f(&j, &format!("{section}.msgs_per_s")) > 0.0, "{section}");
        assert!(f(&j, &format!("{section}.mb_per_s")) > 0.0, "{section}");
    }
    assert_eq!(f(&j, "produce.bytes"), 2_000_000.0);
    assert_eq!(f(&j, "consume.bytes"), 2_000_000.0);
    assert_ordered_latency(&j, "produce");
    assert_ordered_latency(&j, "end_to_end");
    assert_eq!(f(&j, "params.shards"), 2.0);
    assert_eq!(j["params"]["fsync"], "always");
    assert_eq!(j["params"]["acks"], "durable");
    assert!(f(&j, "machine.cores") >= 1.0);
    assert!(j["machine"]["kernel"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
    assert!(j["machine"]["cpu_model"].is_string());
    assert!(j["series"].is_array());
    // The table: a header and one row per section.
    for row in ["produce", "consume", "end-to-end", "p99.9 us"] {
        assert!(out.stdout.contains(row), "no {row:?} in:\n{}", out.stdout);
    }
    // The spawned broker's CPU, apart from this tool's threads: some, and
    // per GB moved (4 MB in and out) the division of the two.
    let cpu = f(&j, "broker_cpu.seconds");
    assert!(cpu > 0.0, "{}", j["broker_cpu"]);
    let per_gb = f(&j, "broker_cpu.per_gb_moved");
    // (the JSON rounds to 3 decimals)
    assert!(
        (per_gb - cpu / 0.004).abs() <= 0.01 * per_gb + 0.3,
        "{}",
        j["broker_cpu"]
    );
    assert!(j["broker_cpu"]["per_gb_produced"].is_null());
    assert!(out.stdout.contains("CPU-s per GB moved"), "{}", out.stdout);
}

#[test]
fn several_producers_and_consumers_with_partial_batches_lose_nothing() {
    // 10_001 is not a multiple of the batch size: the last batch is short.
    let (j, _) = run_json(
        "many",
        &[
            "--shards",
            "2",
            "--producers",
            "3",
            "--consumers",
            "2",
            "--partitions",
            "3",
            "--messages",
            "10001",
            "--batch-size",
            "7",
            "--message-size",
            "64",
            "--acks",
            "none",
            "--fsync",
            "never",
            "--max-in-flight",
            "4",
        ],
    );
    assert_eq!(f(&j, "produce.messages"), 10001.0);
    assert_eq!(f(&j, "consume.messages"), 10001.0);
    let actors = j["produce"]["actors"].as_array().expect("produce.actors");
    assert_eq!(actors.len(), 3);
    let sum: f64 = actors
        .iter()
        .map(|a| a["messages"].as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(sum, 10001.0);
    assert_eq!(j["consume"]["actors"].as_array().map(Vec::len), Some(2));
    assert_ordered_latency(&j, "end_to_end");
}

#[test]
fn timed_produce_only_run_reports_a_series_and_no_consume_section() {
    let (j, out) = run_json(
        "timed",
        &[
            "--consumers",
            "0",
            "--duration",
            "1500ms",
            "--warmup",
            "500ms",
            "--fsync",
            "never",
            "--acks",
            "leader",
            "--message-size",
            "200",
        ],
    );
    assert!(f(&j, "produce.messages") > 0.0);
    assert!(f(&j, "produce.measured_messages") <= f(&j, "produce.messages"));
    assert!(f(&j, "produce.msgs_per_s") > 0.0);
    assert_ordered_latency(&j, "produce");
    assert!(j.get("consume").is_none() && j.get("end_to_end").is_none());
    assert!(
        f(&j, "broker_cpu.per_gb_produced") > 0.0,
        "{}",
        j["broker_cpu"]
    );
    assert!(
        out.stdout.contains("CPU-s per GB produced"),
        "{}",
        out.stdout
    );
    let series = j["series"].as_array().expect("series");
    assert!(series.len() >= 2, "series: {series:?}");
    assert!(series.iter().all(|s| s["produce_msgs_per_s"].is_number()));
    // The progress line, once a second, on stderr.
    assert!(out.stderr.contains("msg/s"), "stderr: {}", out.stderr);
}

#[test]
fn a_failed_run_still_removes_the_broker_directory() {
    let dir = scratch("fail");
    let tmp = dir.join("brokers");
    // The broker refuses this topic name after it started.
    let out = bench(&[
        "--spawn-broker",
        "--tmp-dir",
        tmp.to_str().expect("utf-8 path"),
        "--topic",
        "no/slashes",
        "--messages",
        "10",
    ]);
    assert_ne!(out.code, Some(0), "stdout: {}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {}", out.stderr);
    assert!(lines[0].contains("topic"), "{}", lines[0]);
    assert_eq!(std::fs::read_dir(&tmp).expect("tmp dir").count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn html_report_is_one_offline_page_with_charts_and_the_runs_numbers() {
    let dir = scratch("html");
    let html = dir.join("report.html");
    let (j, _) = run_json(
        "html-run",
        &[
            "--messages",
            "5000",
            "--message-size",
            "64",
            "--key-mode",
            "random",
            "--partitions",
            "3",
            "--fsync",
            "never",
            "--html",
            html.to_str().expect("utf-8 path"),
        ],
    );
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(page.starts_with("<!DOCTYPE html>"), "{}", &page[..80]);
    assert_eq!(page.matches("<svg").count(), 3, "three charts");
    // The results are a table of the page, not preformatted text that runs
    // out of its box.
    assert!(page.contains("<table>") && page.contains("<th>p99 µs</th>"));
    assert!(
        page.contains("broker CPU:"),
        "no broker CPU figure in the page"
    );
    assert!(page.contains("<polyline"), "the charts have lines");
    for banned in ["<script", "http://", "https://", "src=", "<link", "@import"] {
        assert!(
            !page.contains(banned),
            "the page has {banned:?}: it must open offline"
        );
    }
    // The run's numbers, its parameters and the machine.
    assert_eq!(f(&j, "produce.messages"), 5000.0);
    assert!(page.contains("5000"), "no message count in the page");
    assert!(page.contains("end-to-end") && page.contains("produce-ack"));
    assert!(page.contains("&quot;key_mode&quot;: &quot;random&quot;"));
    assert!(page.contains(&format!("cores: {}", f(&j, "machine.cores"))));
    let curve = j["end_to_end"]["latency_curve_us"]
        .as_array()
        .expect("curve");
    assert!(curve.len() > 10, "{curve:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn open_loop_rate_is_kept_and_recorded() {
    let (j, _) = run_json(
        "rate",
        &[
            "--rate",
            "2000",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--fsync",
            "never",
            "--message-size",
            "100",
        ],
    );
    assert_eq!(f(&j, "params.rate"), 2000.0);
    assert_eq!(j["params"]["mode"], "open-loop");
    let rate = f(&j, "produce.msgs_per_s");
    // Generous: the test must not be timing-flaky on a busy machine.
    assert!((1000.0..=3000.0).contains(&rate), "produced {rate} msg/s");
    let total = f(&j, "produce.messages");
    assert!((2500.0..=7500.0).contains(&total), "produced {total}");
    assert_eq!(f(&j, "consume.messages"), total);
    assert_ordered_latency(&j, "produce");
    assert_ordered_latency(&j, "end_to_end");
}

#[test]
fn sized_keyed_runs_stop_at_total_bytes_and_lose_nothing() {
    let (j, _) = run_json(
        "bytes",
        &[
            "--producers",
            "2",
            "--consumers",
            "2",
            "--partitions",
            "3",
            "--message-size",
            "8..200",
            "--key-mode",
            "sequential",
            "--total-bytes",
            "1MiB",
            "--batch-size",
            "50",
            "--fsync",
            "never",
            "--acks",
            "leader",
        ],
    );
    let bytes = f(&j, "produce.bytes");
    // The last batch of each producer may go over: at most 2 x 50 x 200.
    assert!(
        bytes >= (1 << 20) as f64 && bytes <= ((1 << 20) + 2 * 50 * 200) as f64,
        "{bytes}"
    );
    assert_eq!(f(&j, "consume.bytes"), bytes);
    let msgs = f(&j, "produce.messages");
    assert_eq!(f(&j, "consume.messages"), msgs);
    // Sizes were drawn from 8..=200, not all the same.
    let mean = bytes / msgs;
    assert!((60.0..150.0).contains(&mean), "mean size {mean}");
    assert_eq!(j["params"]["key_mode"], "sequential");
    assert_eq!(j["params"]["message_size"], "8..200");
    assert_eq!(f(&j, "params.total_bytes"), (1 << 20) as f64);
}

#[test]
fn sigint_stops_the_run_prints_a_partial_report_and_removes_the_broker_dir() {
    let dir = scratch("sigint");
    let tmp = dir.join("brokers");
    let json = dir.join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardlog-bench"))
        .args([
            "--spawn-broker",
            "--tmp-dir",
            tmp.to_str().expect("utf-8 path"),
            "--json",
            json.to_str().expect("utf-8 path"),
            "--duration",
            "60s",
            "--warmup",
            "0s",
            "--fsync",
            "never",
            "--message-size",
            "100",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shardlog-bench");
    let out_t = read_all(child.stdout.take().expect("stdout"));
    let err_t = read_all(child.stderr.take().expect("stderr"));
    std::thread::sleep(Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shardlog-bench did not stop within 20 s of SIGINT; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().expect("stdout reader");
    let stderr = err_t.join().expect("stderr reader");
    // 128 + SIGINT, documented in main.rs and --help.
    assert_eq!(status.code(), Some(130), "stderr: {stderr}");
    assert!(stdout.contains("stopped early by SIGINT"), "{stdout}");
    assert!(stdout.contains("produce"), "{stdout}");
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid JSON");
    assert_eq!(j["stopped_by"], "SIGINT");
    assert!(f(&j, "produce.messages") > 0.0);
    assert_eq!(f(&j, "consume.messages"), f(&j, "produce.messages"));
    let data_dir = j["params"]["data_dir"].as_str().expect("params.data_dir");
    assert!(!Path::new(data_dir).exists(), "{data_dir} left behind");
    assert_eq!(std::fs::read_dir(&tmp).expect("tmp dir").count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_exit_non_zero_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--spawn-broker", "--producers", "0", "--consumers", "0"],
            "nothing to do",
        ),
        (&["--spawn-broker", "--message-size", "0"], "--message-size"),
        (
            &["--spawn-broker", "--duration", "1s", "--messages", "5"],
            "exclude each other",
        ),
        (&["--spawn-broker", "--messages", "0"], "--messages"),
        (&["--spawn-broker", "--fsync", "sometimes"], "fsync"),
        (
            &["--spawn-broker", "--partitions", "1", "--consumers", "2"],
            "--consumers",
        ),
        (
            &["--broker", "127.0.0.1:1", "--spawn-broker"],
            "exclude each other",
        ),
        (&[], "--spawn-broker"),
        (&["--kafka", "127.0.0.1:1", "--spawn-broker"], "--kafka"),
        (&["--kafka", "nohost"], "--kafka"),
        (
            &["--kafka", "127.0.0.1:1", "--consumer-group", "g"],
            "--consumer-group",
        ),
        (&["--spawn-broker", "--acks", "maybe"], "maybe"),
        (
            &["--spawn-broker", "--duration", "5 fortnights"],
            "duration",
        ),
        (&["--spawn-broker", "--no-such-flag"], "--no-such-flag"),
        (
            &["--spawn-broker", "--message-size", "9..3"],
            "--message-size",
        ),
        (&["--spawn-broker", "--rate", "0"], "--rate"),
        (&["--spawn-broker", "--total-bytes", "lots"], "lots"),
        (
            &["--spawn-broker", "--key-mode", "alphabetical"],
            "alphabetical",
        ),
        (&["--spawn-broker", "--batch-bytes", "64"], "--batch-bytes"),
        (&["--spawn-broker", "--batch-bytes", "a lot"], "a lot"),
        (
            &["--spawn-broker", "--linger-ms", "99999999"],
            "--linger-ms",
        ),
        (
            &["--spawn-broker", "--consumer-group", ""],
            "--consumer-group",
        ),
        (
            &[
                "--spawn-broker",
                "--consumers",
                "0",
                "--consumer-group",
                "g",
            ],
            "--consumer-group",
        ),
        (&["--spawn-broker", "--pin-cpus", "maybe"], "maybe"),
    ];
    for (args, needle) in cases {
        let out = bench(args);
        assert_eq!(out.code, Some(2), "{args:?}: stderr {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: stderr {:?}", out.stderr);
        assert!(
            lines[0].starts_with("shardlog-bench: error: ") && lines[0].contains(needle),
            "{args:?}: {}",
            lines[0]
        );
        assert!(out.stdout.is_empty(), "{args:?}: stdout {}", out.stdout);
    }
}

#[test]
fn an_unreachable_broker_is_one_line_not_a_hang() {
    // Port 1 on loopback: nothing listens there.
    let out = bench(&["--broker", "127.0.0.1:1", "--messages", "10"]);
    assert_eq!(out.code, Some(1), "stderr: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "stderr: {}", out.stderr);
    assert!(out.stderr.contains("connect"), "{}", out.stderr);
}

#[test]
fn group_consumers_read_exactly_what_was_produced() {
    let (j, out) = run_json(
        "group",
        &[
            "--shards",
            "2",
            "--partitions",
            "4",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--consumer-group",
            "bench-g",
            "--messages",
            "20000",
            "--message-size",
            "64..256",
            "--batch-bytes",
            "8KiB",
            "--fsync",
            "never",
        ],
    );
    assert_eq!(f(&j, "produce.messages"), 20000.0);
    assert_eq!(f(&j, "consume.messages"), 20000.0);
    assert_eq!(f(&j, "end_to_end.messages"), 20000.0);
    assert_eq!(f(&j, "produce.bytes"), f(&j, "consume.bytes"));
    assert_ordered_latency(&j, "end_to_end");
    assert_eq!(j["params"]["consumer_group"], "bench-g");
    assert_eq!(f(&j, "params.batch_bytes"), 8192.0);
    assert!(out.stdout.contains("in group bench-g"), "{}", out.stdout);
}

#[test]
fn open_loop_with_linger_and_batch_bytes_keeps_the_rate_and_loses_nothing() {
    let (j, _) = run_json(
        "linger",
        &[
            "--rate",
            "4000",
            "--linger-ms",
            "5",
            "--batch-bytes",
            "4KiB",
            "--message-size",
            "100",
            "--messages",
            "4000",
            "--pin-cpus",
            "on",
        ],
    );
    assert_eq!(f(&j, "produce.messages"), 4000.0);
    assert_eq!(f(&j, "consume.messages"), 4000.0);
    assert_eq!(f(&j, "params.linger_ms"), 5.0);
    assert_eq!(j["params"]["pin_cpus"], "on");
    // 4000 msg/s for 4000 messages: about a second, not a burst.
    let rate = f(&j, "produce.msgs_per_s");
    assert!(rate < 6000.0 && rate > 2000.0, "rate {rate}");
}

/// `--kafka`: the same workload over the Kafka protocol, here against
/// shardlog's own Kafka listener (a 2-shard broker in this process, each
/// shard its own Kafka node, so partitions' leaders differ): everything
/// produced is consumed, and the report says which wire it used.
#[test]
fn kafka_wire_run_consumes_exactly_what_it_produced() {
    use shardlog::server::{Broker, BrokerConfig};
    let dir = scratch("kafka-wire");
    let free = free_addr;
    let (native, kafka) = (free(), free());
    let base = loop {
        // Two consecutive free ports for the shards' own Kafka ports.
        let p = free().port();
        if p < 65000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            break p;
        }
    };
    let mut cfg = BrokerConfig::new(dir.join("data"), native);
    cfg.shards = 2;
    cfg.shard_port_base = None;
    cfg.kafka_listen = Some(kafka);
    cfg.kafka_port_base = Some(base);
    let broker = Broker::start(cfg).expect("broker starts");
    let json = dir.join("report.json");
    let out = bench(&[
        "--kafka",
        &kafka.to_string(),
        "--broker-pid",
        &std::process::id().to_string(),
        "--partitions",
        "4",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--messages",
        "20000",
        "--message-size",
        "100",
        "--json",
        json.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json written"))
        .expect("valid JSON");
    for section in ["produce", "consume", "end_to_end"] {
        assert_eq!(f(&j, &format!("{section}.messages")), 20000.0, "{section}");
    }
    assert_eq!(f(&j, "consume.bytes"), 2_000_000.0);
    assert_ordered_latency(&j, "produce");
    assert_eq!(j["params"]["protocol"], "kafka");
    assert!(out.stdout.contains("Kafka protocol"), "{}", out.stdout);
    // This process hosts the broker: its CPU was read from /proc.
    assert!(f(&j, "broker_cpu.seconds") > 0.0, "{}", j["broker_cpu"]);
    broker
        .stop_flag()
        .store(true, std::sync::atomic::Ordering::SeqCst);
    broker.join().expect("the broker stops cleanly");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loopback address nothing listens on (bound, then let go).
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem,
/// key.pem) in `dir`.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let files = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, cert.pem()).unwrap();
    std::fs::write(&files.2, key.serialize_pem()).unwrap();
    files
}

/// `--kafka` over SASL_SSL: TLS trusting the broker's CA and a SCRAM-SHA-512
/// login on every connection; everything produced is consumed. A wrong
/// password, or no `--tls-ca`, fails in one line instead.
#[test]
fn kafka_wire_over_tls_with_scram_logs_in_and_loses_nothing() {
    use shardlog::security::sasl::SaslMechanism;
    use shardlog::security::scram::{Credential, Mechanism};
    use shardlog::server::{Broker, BrokerConfig};
    let dir = scratch("kafka-sasl-ssl");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let (ca, cert, key) = certificates(&dir);
    let mut users = shardlog::security::users::Users::default();
    let cred =
        Credential::from_password(Mechanism::Sha512, b"bench-pw", b"bench-salt".to_vec(), 4096)
            .unwrap();
    users.upsert("bench", cred).unwrap();
    shardlog::storage::store_users(&dir.join("data"), &users).unwrap();
    let free = free_addr;
    let (native, kafka) = (free(), free());
    let mut cfg = BrokerConfig::new(dir.join("data"), native);
    cfg.shards = 1;
    cfg.shard_port_base = None;
    cfg.kafka_listen = Some(kafka);
    cfg.kafka_port_base = None;
    cfg.kafka_tls = true;
    cfg.tls_files = Some(shardlog::tls::TlsFiles {
        cert,
        key,
        client_ca: None,
    });
    cfg.sasl_enabled_mechanisms = vec![SaslMechanism::Scram(Mechanism::Sha512)];
    let broker = Broker::start(cfg).expect("broker starts");
    let (k, ca_s) = (kafka.to_string(), ca.display().to_string());
    let args = [
        "--kafka",
        &k,
        "--tls-ca",
        &ca_s,
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        "bench",
        "--broker-http",
        "off",
        "--partitions",
        "2",
        "--producers",
        "1",
        "--consumers",
        "1",
        "--messages",
        "5000",
        "--message-size",
        "100",
        "--quiet",
    ];
    let out = bench_env(&args, &[("SHARDLOG_BENCH_SASL_PASSWORD", "bench-pw")]);
    assert_eq!(out.code, Some(0), "stderr: {}", out.stderr);
    assert!(out.stdout.contains("5000"), "{}", out.stdout);
    let bad = bench_env(&args, &[("SHARDLOG_BENCH_SASL_PASSWORD", "wrong")]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(bad.stderr.contains("SASL"), "{}", bad.stderr);
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{}", bad.stderr);
    // Plaintext to the TLS listener.
    let no_tls: Vec<&str> = args[..2].iter().chain(&args[4..]).copied().collect();
    let plain = bench_env(&no_tls, &[("SHARDLOG_BENCH_SASL_PASSWORD", "bench-pw")]);
    assert_eq!(plain.code, Some(1), "{}", plain.stderr);
    broker
        .stop_flag()
        .store(true, std::sync::atomic::Ordering::SeqCst);
    broker.join().expect("the broker stops cleanly");
    let _ = std::fs::remove_dir_all(&dir);
}
