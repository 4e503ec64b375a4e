//! kafka-python's own integration tests (3.0.12, `test/integration` of its
//! PyPI sdist: producer, consumer and admin) against the Kafka listener of
//! a broker started here, in the suite's external-broker mode (`KAFKA_URI`).
//! They run twice: against one shard (the single-broker cluster the suite
//! is written for) and against two (two Kafka nodes). Every test that is
//! not left out must pass; those left out are named in `LEFT_OUT` with why.
//!
//! `tools/kafka-python-suite.sh fetch` unpacks the suite (`.ci/run` does);
//! without it the test prints SKIPPED, or fails when
//! `KAFKA_CLIENT_TESTS=required`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The broker version the suite is told it talks to: it skips what needs
/// a newer one, and picks its API versions from the broker's answer.
const KAFKA_VERSION: &str = "4.0.0";

/// The suite's files that talk to a broker without authentication (the
/// SASL and SSL files need issue 23).
const FILES: &[&str] = &[
    "test/integration/test_producer_integration.py",
    "test/integration/test_consumer_integration.py",
    "test/integration/test_admin_integration.py",
];

/// Tests left out on every broker, with why.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "test_admin_integration.py::test_create_describe_delete_acls",
        "ACLs (issue 23)",
    ),
    (
        "test_admin_integration.py::test_create_partitions",
        "asks for manual replica assignments ([[0], [0]]), which shardlog refuses: a shard owns each partition",
    ),
];

/// Left out only where the broker has two Kafka nodes.
const LEFT_OUT_TWO_NODES: &[(&str, &str)] = &[
    (
        "test_admin_integration.py::test_alter_partition_reassignments",
        "reassigns a partition to every broker, i.e. two replicas on a two-node shardlog: refused (one copy)",
    ),
    (
        "test_admin_integration.py::test_delete_records",
        "expects one poll() to return all six partitions' records, which holds when one node leads them all; \
         with two, the poll returns once either node's fetch is in (seen: 150 or 230 of 380)",
    ),
];

const DEADLINE: Duration = Duration::from_secs(600);

/// The unpacked sdist, if it is there.
fn suite_dir() -> Option<PathBuf> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/kafka-python/kafka_python-3.0.12");
    if dir.join("test/service.py").exists() {
        return Some(dir);
    }
    if std::env::var("KAFKA_CLIENT_TESTS").as_deref() == Ok("required") {
        panic!(
            "KAFKA_CLIENT_TESTS=required, but kafka-python's suite is not unpacked (run tools/kafka-python-suite.sh fetch)"
        );
    }
    println!("SKIPPED: kafka-python's suite is not unpacked (tools/kafka-python-suite.sh fetch)");
    None
}

/// (passed, failed, skipped) node ids from pytest's `-v` lines
/// (`test/integration/x.py::test_y[param] PASSED [ 10%]`).
fn results(log: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut pass, mut fail, mut skip) = (Vec::new(), Vec::new(), Vec::new());
    for line in log.lines() {
        let mut words = line.split_whitespace();
        let (Some(id), Some(verdict)) = (words.next(), words.next()) else {
            continue;
        };
        if !id.starts_with("test/") || !id.contains("::") {
            continue;
        }
        match verdict {
            "PASSED" => pass.push(id.to_owned()),
            "FAILED" | "ERROR" => fail.push(id.to_owned()),
            "SKIPPED" => skip.push(id.to_owned()),
            _ => {}
        }
    }
    (pass, fail, skip)
}

/// Runs the suite against a broker with `shards` shards; returns how many
/// passed.
fn run_against(dir: &std::path::Path, shards: &str, left_out: &[(&str, &str)]) -> usize {
    let data = data_dir();
    // Kafka's test fixture creates topics with 4 partitions
    // (`num.partitions`); the offsets test commits to partition 1 of an
    // auto-created topic.
    let (b, kafka, _) =
        common::kafka::suite_broker(data.path(), shards, &["--num-partitions", "4"]);
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pytest", "-v", "-p", "no:cacheprovider", "--tb=short"])
        .args(["--timeout", "120", "-o", "log_level=WARNING"])
        .args(FILES)
        .current_dir(dir)
        .env("KAFKA_URI", format!("tcp://{kafka}"))
        .env("KAFKA_VERSION", KAFKA_VERSION)
        // The fixtures want a Kafka distribution's directory to exist even
        // when they never start one (the external-broker mode).
        .env("KAFKA_ROOT", data.path());
    for (t, _) in left_out {
        cmd.arg("--deselect").arg(format!("test/integration/{t}"));
    }
    let Bounded {
        status,
        stdout,
        stderr,
    } = run_bounded(&mut cmd, DEADLINE, || {});
    let (pass, fail, skipped) = results(&stdout);
    println!(
        "kafka-python 3.0.12 integration tests, {shards} shard(s): {} passed, {} failed, {} skipped by the suite, {} left out ({})",
        pass.len(),
        fail.len(),
        skipped.len(),
        left_out.len(),
        left_out
            .iter()
            .map(|(t, why)| format!("{t}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let tail: String = {
        let lines: Vec<&str> = stdout.lines().collect();
        lines[lines.len().saturating_sub(300)..].join("\n")
    };
    assert!(
        fail.is_empty() && status.is_some_and(|s| s.success()),
        "kafka-python tests failed on {shards} shard(s): {fail:?} (status {status:?})\n{tail}\n{stderr}\nbroker log:\n{}",
        b.log()
    );
    // Nothing silently vanished: a broken import or fixture would collect
    // nothing and "pass".
    assert!(
        pass.len() >= 40,
        "only {} kafka-python tests passed:\n{tail}",
        pass.len()
    );
    pass.len()
}

#[test]
fn kafka_python_suite_passes_against_one_and_two_shards() {
    let Some(dir) = suite_dir() else {
        return;
    };
    run_against(&dir, "1", LEFT_OUT);
    let both: Vec<(&str, &str)> = LEFT_OUT.iter().chain(LEFT_OUT_TWO_NODES).copied().collect();
    run_against(&dir, "2", &both);
}
