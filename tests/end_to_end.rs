//! End to end through the real binaries: `shardlog serve`, `topic`,
//! `produce` and `consume`, as a user runs them.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(120);

/// 20,000 lines of 0 to 2,000 bytes of UTF-8 (multi-byte characters
/// included). Every non-empty line starts with its index, so order per
/// partition can be checked; every 97th line is empty.
fn lines() -> Vec<Vec<u8>> {
    let alphabet: Vec<char> = "abcdefghijklmnopqrstuvwxyz ABC0123456789éß漢字🚀,.;:\t\"'\\{}"
        .chars()
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..20_000)
        .map(|i| {
            if i % 97 == 0 {
                return Vec::new();
            }
            let target = (next() % 2001) as usize;
            let mut s = format!("{i:05}|");
            while s.len() < target {
                let c = alphabet[(next() % alphabet.len() as u64) as usize];
                if s.len() + c.len_utf8() > target {
                    break;
                }
                s.push(c);
            }
            s.into_bytes()
        })
        .collect()
}

fn consume_partition(b: &Broker, topic: &str, p: u32) -> Vec<Vec<u8>> {
    let out = run(
        &[
            "consume",
            topic,
            "--partition",
            &p.to_string(),
            "--idle-timeout-ms",
            "1000",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "consume failed: {}", out.stderr);
    let mut v: Vec<Vec<u8>> = out
        .stdout
        .split(|&c| c == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(v.pop(), Some(Vec::new()), "output ends with a newline");
    v
}

/// Checks the partitions hold exactly `input` (as a multiset, byte for byte)
/// and that each partition keeps the input order.
fn check_all(b: &Broker, topic: &str, input: &[Vec<u8>]) {
    let mut all = Vec::new();
    for p in 0..3 {
        let got = consume_partition(b, topic, p);
        assert!(!got.is_empty(), "partition {p} got no lines: not spread");
        let idx: Vec<usize> = got
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| std::str::from_utf8(&l[..5]).unwrap().parse().unwrap())
            .collect();
        assert!(
            idx.windows(2).all(|w| w[0] < w[1]),
            "partition {p} is out of order"
        );
        all.extend(got);
    }
    let mut want = input.to_vec();
    want.sort();
    all.sort();
    assert_eq!(all.len(), want.len(), "line count");
    assert!(all == want, "consumed lines differ from produced lines");
}

#[test]
fn produce_then_consume_byte_for_byte_across_restart() {
    let dir = data_dir();
    let mut b = Broker::start(dir.path(), &[]);
    let ba = b.broker_arg();
    let out = run(
        &[
            "topic",
            "create",
            "lines",
            "--partitions",
            "3",
            "--broker",
            &ba,
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);

    let input = lines();
    let mut stdin = Vec::new();
    for l in &input {
        stdin.extend_from_slice(l);
        stdin.push(b'\n');
    }
    let out = run(&["produce", "lines", "--broker", &ba], &stdin, T);
    assert!(out.status.success(), "produce failed: {}", out.stderr);

    let out = run(&["topic", "list", "--broker", &ba], b"", T);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "lines\t3\n");
    check_all(&b, "lines", &input);

    let status = b.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "SIGTERM must stop the broker cleanly, got {status}; log:\n{}",
        b.log()
    );
    let b = Broker::start_on(dir.path(), b.addr, &[]);
    check_all(&b, "lines", &input);
}

#[test]
fn keys_pick_partitions_like_kafka_and_offsets_resume() {
    let dir = data_dir();
    let b = Broker::start(dir.path(), &["--fsync", "never"]);
    let ba = b.broker_arg();
    assert!(run(
        &["topic", "create", "k", "--partitions", "3", "--broker", &ba],
        b"",
        T
    )
    .status
    .success());
    // Every line with key "21" goes to one partition: murmur2("21") decides.
    let input: String = (0..100).map(|i| format!("21=v{i}\n")).collect();
    let out = run(
        &["produce", "k", "--key-separator", "=", "--broker", &ba],
        input.as_bytes(),
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let p = shardlog::client::partition_for_key(b"21", 3);
    let got = consume_partition(&b, "k", p);
    assert_eq!(got.len(), 100);
    assert_eq!(got[99], b"v99");
    // --from OFFSET and --max-messages
    let out = run(
        &[
            "consume",
            "k",
            "--partition",
            &p.to_string(),
            "--from",
            "40",
            "--max-messages",
            "3",
            "--broker",
            &ba,
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v40\nv41\nv42\n");
    // A line without the separator is refused with a clear error.
    let out = run(
        &["produce", "k", "--key-separator", "=", "--broker", &ba],
        b"nokey\n",
        T,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("no key separator"), "{}", out.stderr);
}

#[test]
fn cli_errors_are_one_line_and_nonzero() {
    let dir = data_dir();
    let b = Broker::start(dir.path(), &[]);
    let ba = b.broker_arg();
    let mut cases: BTreeMap<&str, (Vec<&str>, &str)> = BTreeMap::new();
    cases.insert(
        "unknown topic (consume)",
        (
            vec!["consume", "nope", "--broker", &ba],
            "unknown topic 'nope'",
        ),
    );
    cases.insert(
        "unknown topic (produce)",
        (
            vec!["produce", "nope", "--broker", &ba],
            "unknown topic 'nope'",
        ),
    );
    cases.insert(
        "bad topic name",
        (
            vec![
                "topic",
                "create",
                "a/b",
                "--partitions",
                "1",
                "--broker",
                &ba,
            ],
            "invalid topic name",
        ),
    );
    cases.insert(
        "zero partitions",
        (
            vec!["topic", "create", "z", "--partitions", "0", "--broker", &ba],
            "partitions",
        ),
    );
    cases.insert(
        "unreachable broker",
        (
            vec!["topic", "list", "--broker", "127.0.0.1:1"],
            "cannot connect to broker",
        ),
    );
    cases.insert("bad flag", (vec!["consume", "x", "--bogus"], "--bogus"));
    cases.insert(
        "bad topic config value",
        (
            vec![
                "topic",
                "create",
                "c1",
                "--partitions",
                "1",
                "--config",
                "retention.ms=-9",
                "--broker",
                &ba,
            ],
            "retention.ms: -9",
        ),
    );
    cases.insert(
        "a setting with one possible value, set to another",
        (
            vec![
                "topic",
                "create",
                "x2",
                "--partitions",
                "1",
                "--config",
                "compression.type=zstd",
                "--broker",
                &ba,
            ],
            "compression.type: only producer is supported",
        ),
    );
    cases.insert(
        "unknown topic config",
        (
            vec![
                "topic",
                "create",
                "c2",
                "--partitions",
                "1",
                "--config",
                "flush.messages=1",
                "--broker",
                &ba,
            ],
            "unknown topic config \"flush.messages\"",
        ),
    );
    let dd = dir.path().join("other");
    let dd = dd.to_str().unwrap().to_owned();
    cases.insert(
        "bad fsync policy",
        (
            vec!["serve", "--data-dir", &dd, "--fsync", "sometimes"],
            "interval:MS",
        ),
    );
    cases.insert(
        "bad segment size",
        (
            vec!["serve", "--data-dir", &dd, "--segment-bytes", "100"],
            "setting 'segment-bytes' (from the command line): segment.bytes: 100 is outside",
        ),
    );
    for (name, (args, want)) in &cases {
        let out = run(args, b"", T);
        assert!(!out.status.success(), "{name}: expected failure");
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "{name}: one line, got {:?}",
            out.stderr
        );
        assert!(
            out.stderr.contains(want),
            "{name}: {:?} lacks {want:?}",
            out.stderr
        );
    }
    let out = run(
        &[
            "topic",
            "create",
            "dup",
            "--partitions",
            "1",
            "--broker",
            &ba,
        ],
        b"",
        T,
    );
    assert!(out.status.success());
    let out = run(
        &["consume", "dup", "--from", "yesterday", "--broker", &ba],
        b"",
        T,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("--from must be"), "{}", out.stderr);
    let out = run(
        &[
            "topic",
            "create",
            "dup",
            "--partitions",
            "1",
            "--broker",
            &ba,
        ],
        b"",
        T,
    );
    assert!(!out.status.success());
    assert!(out.stderr.contains("already exists"), "{}", out.stderr);
}

/// `shardlog consume ... | head`: when the reader stops, the command ends
/// quietly by SIGPIPE, as Unix tools do, instead of panicking on the
/// broken pipe with a backtrace on stderr.
#[test]
fn consume_into_a_reader_that_stops_ends_quietly() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    let dir = data_dir();
    let b = Broker::start(dir.path(), &[]);
    let ba = b.broker_arg();
    let out = run(
        &[
            "topic",
            "create",
            "many",
            "--partitions",
            "1",
            "--broker",
            &ba,
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    // Far more than a pipe holds (64 KiB).
    let mut stdin = Vec::new();
    for i in 0..20_000 {
        stdin.extend_from_slice(format!("line {i:06} {}\n", "x".repeat(40)).as_bytes());
    }
    let out = run(&["produce", "many", "--broker", &ba], &stdin, T);
    assert!(out.status.success(), "{}", out.stderr);
    let mut child = Command::new(BIN)
        .args([
            "consume",
            "many",
            "--idle-timeout-ms",
            "5000",
            "--broker",
            &ba,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shardlog");
    let mut first = [0u8; 12];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"line 000000 ");
    // The reader is gone (the pipe's read end dropped above).
    let status = wait_deadline(&mut child, T).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("consume did not end after its reader went");
    });
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}
