//! Observability end to end: `/metrics` counts what a known workload sent,
//! `/healthz` says 503 while the shards recover and 200 once they serve,
//! settings resolve file < environment < flag and reject what they do not
//! know, and `shardlog top --once --json` prints JSON.
//!
//! Every broker is killed when its guard drops; every wait has a deadline.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, run, scrape, total, Broker, BIN};
use shardlog::top::Samples;

const T: Duration = Duration::from_secs(60);

fn http_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    shardlog::http::get(addr, path, Duration::from_secs(5))
}

#[test]
fn metrics_count_exactly_what_a_known_workload_sent_and_top_prints_json() {
    let dir = common::data_dir();
    let http = http_addr();
    let b = Broker::start(
        dir.path(),
        &["--shards", "2", "--http-listen", &http, "--fsync", "always"],
    );
    let broker = b.broker_arg();
    let out = run(
        &[
            "topic",
            "create",
            "t",
            "--partitions",
            "4",
            "--broker",
            &broker,
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    // A second create fails: one TopicAlreadyExists in the error counts.
    let out = run(
        &[
            "topic",
            "create",
            "t",
            "--partitions",
            "4",
            "--broker",
            &broker,
        ],
        b"",
        T,
    );
    assert!(!out.status.success());

    const N: u64 = 5000;
    let input: String = (0..N).map(|i| format!("message-{i:06}\n")).collect();
    let out = run(
        &["produce", "t", "--broker", &broker, "--batch-bytes", "4096"],
        input.as_bytes(),
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let out = run(
        &[
            "consume",
            "t",
            "--broker",
            &broker,
            "--max-messages",
            &N.to_string(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.iter().filter(|&&c| c == b'\n').count() as u64, N);

    let m = scrape(&http);
    // Durable produces were acknowledged, so every count is final.
    assert_eq!(total(&m, "shardlog_produce_messages_total", &[]), N as f64);
    let bytes = total(&m, "shardlog_produce_bytes_total", &[]);
    assert!(
        bytes > (N * 14) as f64,
        "{bytes}: less than the values alone"
    );
    // The four partitions are labelled (under the cap) and add up.
    assert_eq!(
        total(&m, "shardlog_partition_produce_messages_total", &[]),
        N as f64
    );
    assert_eq!(
        total(&m, "shardlog_partition_produce_bytes_total", &[]),
        bytes
    );
    for shard in ["0", "1"] {
        let mine = total(&m, "shardlog_produce_messages_total", &[("shard", shard)]);
        assert!(mine > 0.0, "shard {shard} owns two partitions: {mine}");
        assert!(total(&m, "shardlog_fsyncs_total", &[("shard", shard)]) >= 1.0);
        assert_eq!(
            total(&m, "shardlog_memory_budget_bytes", &[("shard", shard)]),
            (512u64 << 20) as f64
        );
    }
    // Whole batches go out, each once: the consumer asked from offset 0
    // and moved past every batch it got.
    assert_eq!(total(&m, "shardlog_fetch_messages_total", &[]), N as f64);
    assert_eq!(total(&m, "shardlog_fetch_bytes_total", &[]), bytes);
    let produces = total(&m, "shardlog_requests_total", &[("api", "produce")]);
    assert!(produces >= 4.0, "{produces} produce requests");
    assert_eq!(
        total(&m, "shardlog_produce_ack_latency_seconds_count", &[]),
        produces
    );
    assert_eq!(
        total(
            &m,
            "shardlog_produce_ack_latency_seconds_bucket",
            &[("le", "+Inf")]
        ),
        produces
    );
    assert_eq!(
        total(
            &m,
            "shardlog_errors_total",
            &[("code", "TopicAlreadyExists")]
        ),
        1.0
    );
    // Per-shard ports are off here (tests/common), so the client reaches a
    // random shard, which forwards the other shard's parts over the mesh.
    assert!(total(&m, "shardlog_forwards_total", &[]) >= 1.0);
    assert!(total(&m, "shardlog_forward_bytes_total", &[]) > 0.0);
    assert_eq!(total(&m, "shardlog_inflight_requests", &[]), 0.0);
    assert_eq!(total(&m, "shardlog_recovery_truncations_total", &[]), 0.0);

    let out = run(
        &[
            "top",
            "--http",
            &http,
            "--once",
            "--json",
            "--interval-ms",
            "200",
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("top --json is JSON");
    let shards = v["shards"].as_array().expect("shards array");
    assert_eq!(shards.len(), 2);
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s["shard"], i as u64);
        for key in [
            "produce_msgs_per_s",
            "produce_mb_per_s",
            "fetch_msgs_per_s",
            "fetch_mb_per_s",
            "fsyncs_per_s",
            "connections",
            "memory_unwritten_bytes",
            "memory_budget_bytes",
        ] {
            assert!(s[key].is_number(), "{key} in {s}");
        }
        assert!(s.get("produce_ack_p99_ms").is_some());
    }
    drop(b);
}

#[test]
fn healthz_is_503_while_shards_recover_then_200() {
    let dir = common::data_dir();
    let http = http_addr();
    let gate = dir.path().with_extension("go");
    let _ = std::fs::remove_file(&gate);
    let addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut b = Broker::spawn_on(
        dir.path(),
        addr,
        &[
            "--http-listen",
            &http,
            "--hold-recovery-until",
            gate.to_str().unwrap(),
        ],
    );
    // The endpoint comes up before recovery starts; recovery waits for the
    // gate, so this answer is deterministic.
    let deadline = Instant::now() + T;
    let first = loop {
        match get(&http, "/healthz") {
            Ok(r) => break r,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("no /healthz within {T:?}: {e}; log:\n{}", b.log()),
        }
    };
    assert_eq!(first.0, 503, "{first:?}");
    // Metrics are served during recovery too.
    assert_eq!(get(&http, "/metrics").unwrap().0, 200);
    assert_eq!(get(&http, "/healthz").unwrap().0, 503);
    std::fs::write(&gate, b"").unwrap();
    let deadline = Instant::now() + T;
    loop {
        let (code, _) = get(&http, "/healthz").expect("/healthz");
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready within {T:?}; log:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ready means serving.
    b.wait_ready(Duration::from_secs(5));
    let status = b.terminate(T);
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_file(&gate);
}

/// Runs `shardlog` with extra environment variables, bounded.
fn run_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start shardlog");
    // Output is small (a few KiB): the pipes never fill before the exit.
    let Some(status) = common::wait_deadline(&mut child, T) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("shardlog {args:?} did not finish within {T:?}");
    };
    let out = child.wait_with_output().expect("output");
    (
        status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn value_of(toml: &str, key: &str) -> String {
    toml.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{key} not in:\n{toml}"))
        .to_owned()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn settings_resolve_file_then_env_then_flag_and_reject_unknown_keys_and_bad_values() {
    let dir = common::data_dir();
    let file = dir.path().join("shardlog.toml");
    let f = file.to_str().unwrap();
    write(
        &file,
        "memory-budget = 67108864\nmax-connections = 11\nfsync = \"never\"\n",
    );
    let env = [
        ("SHARDLOG_MEMORY_BUDGET", "134217728"),
        ("SHARDLOG_FSYNC", "interval:50"),
    ];
    let (ok, printed, err) = run_env(
        &[
            "serve",
            "--config",
            f,
            "--fsync",
            "always",
            "--print-config",
        ],
        &env,
    );
    assert!(ok, "{err}");
    assert_eq!(value_of(&printed, "max-connections"), "11"); // file
    assert_eq!(value_of(&printed, "memory-budget"), "134217728"); // env over file
    assert_eq!(value_of(&printed, "fsync"), "\"always\""); // flag over env
    assert_eq!(value_of(&printed, "max-inflight-per-connection"), "64"); // default

    // What --print-config prints reads back as --config.
    let round = dir.path().join("printed.toml");
    write(&round, &printed);
    let (ok, again, err) = run_env(
        &[
            "serve",
            "--config",
            round.to_str().unwrap(),
            "--print-config",
        ],
        &[],
    );
    assert!(ok, "{err}");
    assert_eq!(again, printed);

    // The broker runs with what the file says.
    let http = http_addr();
    let data = dir.path().join("data");
    let b = Broker::start(&data, &["--config", f, "--http-listen", &http]);
    let m = scrape(&http);
    assert_eq!(
        total(&m, "shardlog_memory_budget_bytes", &[]) / total_shards(&m),
        67108864.0
    );
    drop(b);

    // Rejections: one line naming the key.
    write(&file, "memory-budget = 67108864\nbogus-key = 1\n");
    let d = data.to_str().unwrap();
    for (args, env, key) in [
        (
            vec!["serve", "--data-dir", d, "--config", f],
            vec![],
            "'bogus-key'",
        ),
        (
            vec!["serve", "--data-dir", d],
            vec![("SHARDLOG_MAX_CONNECTIONS", "0")],
            "'max-connections'",
        ),
        (
            // A misspelt variable must not leave the default in force.
            vec!["serve", "--data-dir", d],
            vec![("SHARDLOG_FSNYC", "never")],
            "SHARDLOG_FSNYC",
        ),
        (
            vec!["serve", "--data-dir", d, "--metrics", "maybe"],
            vec![],
            "'metrics'",
        ),
        (
            vec!["serve", "--data-dir", d, "--http-listen", "nowhere"],
            vec![],
            "'http-listen'",
        ),
    ] {
        let (ok, _, err) = run_env(&args, &env);
        assert!(!ok, "{args:?} {env:?} should fail");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
        assert!(err.contains(key), "{key} not named in {err:?}");
    }
}

fn total_shards(m: &Samples) -> f64 {
    m.keys()
        .filter(|(n, _)| n == "shardlog_memory_budget_bytes")
        .count() as f64
}
