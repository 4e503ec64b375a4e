//! franz-go's own integration tests (`pkg/kgo`, from the Go module proxy,
//! pinned) against the Kafka listener of a 2-shard broker started here:
//! the client library's test suite run unchanged (`KGO_SEEDS`, one replica
//! with `KGO_TEST_RF=1`). Every test of the package runs but the ones left
//! out below, each with its reason; every one that runs must pass (a test
//! the suite skips itself, such as the share-group ones Kafka 4.2 added,
//! is counted as skipped).
//!
//! Needs `go` (1.26); `.ci/run` downloads the module first. Without Go the
//! test prints SKIPPED, or fails when `KAFKA_CLIENT_TESTS=required`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The franz-go release whose tests run (go.mod of this version asks for
/// Go 1.26).
pub const FRANZ_GO: &str = "github.com/twmb/franz-go@v1.22.3";

/// Tests left out, with why. Grow the suite by shrinking this list.
const LEFT_OUT: &[(&str, &str)] = &[
    (
        "Test848RegexBrokerResolves",
        "expects the broker to assign __consumer_offsets to a KIP-848 regex member; shardlog never gives a group the offsets topic",
    ),
];

/// Building the test binary and running the package; its own waits are
/// shorter.
const DEADLINE: Duration = Duration::from_secs(900);

/// Records per ETL test (the suite's default is 500,000; a smaller run
/// covers the same paths within CI's time).
const RECORDS: &str = "20000";

fn go_available() -> bool {
    let ok = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var("KAFKA_CLIENT_TESTS").as_deref() == Ok("required") {
        panic!("KAFKA_CLIENT_TESTS=required, but `go` does not run (install Go 1.26)");
    }
    println!("SKIPPED: go does not run");
    false
}

/// The module's source in Go's module cache (downloaded if missing).
fn module_dir() -> PathBuf {
    let out = Command::new("go")
        .args(["mod", "download", "-json", FRANZ_GO])
        .stderr(Stdio::inherit())
        .output()
        .expect("go mod download");
    assert!(out.status.success(), "go mod download {FRANZ_GO} failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("go's JSON");
    PathBuf::from(v["Dir"].as_str().expect("the module's Dir"))
}

/// Top-level test results in `go test -v` output: (passed, failed,
/// skipped) names.
fn results(log: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut pass, mut fail, mut skip) = (Vec::new(), Vec::new(), Vec::new());
    for line in log.lines() {
        // Subtests are indented; only a test's own line starts the line.
        let Some(rest) = line.strip_prefix("--- ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(verdict), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        match verdict {
            "PASS:" => pass.push(name.to_owned()),
            "FAIL:" => fail.push(name.to_owned()),
            "SKIP:" => skip.push(name.to_owned()),
            _ => {}
        }
    }
    (pass, fail, skip)
}

/// What failed tests said: their `--- FAIL` lines, panics, and the
/// suite's `file_test.go:N:` messages (not its cleanup chatter), at most
/// 150 lines.
fn failure_lines(log: &str, failed: &[String]) -> String {
    log.lines()
        .filter(|l| {
            let t = l.trim_start();
            (t.starts_with("--- FAIL") && failed.iter().any(|f| t.contains(f.as_str())))
                || t.starts_with("panic:")
                || (t.contains("_test.go:")
                    && !t.contains("deleting")
                    && !t.contains("completed in"))
        })
        .take(150)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn franz_go_kgo_suite_passes_against_shardlog() {
    if !go_available() {
        return;
    }
    let dir = module_dir();
    let data = data_dir();
    let (b, kafka, _) = common::kafka::suite_broker(data.path(), "2", &[]);
    let start = Instant::now();
    let skip = LEFT_OUT
        .iter()
        .map(|(t, _)| format!("^{t}$"))
        .collect::<Vec<_>>()
        .join("|");
    let go_test = |selection: &[&str]| {
        run_bounded(
            Command::new("go")
                .args(["test", "-count=1", "-v", "-timeout", "800s"])
                .args(selection)
                .arg("./pkg/kgo")
                .current_dir(&dir)
                .env("KGO_SEEDS", kafka.to_string())
                .env("KGO_TEST_RF", "1")
                .env("KGO_TEST_RECORDS", RECORDS)
                .env("KGO_LOG_LEVEL", "none"),
            DEADLINE.saturating_sub(start.elapsed()),
            || {},
        )
    };
    let Bounded {
        mut status,
        stdout,
        stderr,
    } = go_test(&["-skip", &skip]);
    let (pass, mut fail, skipped) = results(&stdout);
    // The suite's ETL and group tests race rebalances against 20,000
    // records on CI's two cores: one or two that fail are run once more,
    // alone, and must pass then. Their first failure is printed either
    // way (a flake is a finding, not noise).
    let mut flaky = Vec::new();
    if (1..=2).contains(&fail.len()) && status.is_some() {
        println!(
            "franz-go: {fail:?} failed in the whole suite; what they said:\n{}",
            failure_lines(&stdout, &fail)
        );
        let again = go_test(&["-run", &format!("^({})$", fail.join("|"))]);
        let (passed_again, failed_again, _) = results(&again.stdout);
        if failed_again.is_empty() && fail.iter().all(|f| passed_again.contains(f)) {
            println!("franz-go: {fail:?} passed when run again (FLAKY)");
            flaky = std::mem::take(&mut fail);
            status = again.status;
        } else {
            println!(
                "franz-go: {failed_again:?} failed again:\n{}",
                failure_lines(&again.stdout, &failed_again)
            );
        }
    }
    println!(
        "franz-go {FRANZ_GO} pkg/kgo: {} passed, {} failed, {} flaky (passed when run again: {flaky:?}), {} skipped by the suite, {} left out ({})",
        pass.len(),
        fail.len(),
        flaky.len(),
        skipped.len(),
        LEFT_OUT.len(),
        LEFT_OUT
            .iter()
            .map(|(t, why)| format!("{t}: {why}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let tail: String = {
        let lines: Vec<&str> = stdout.lines().collect();
        lines[lines.len().saturating_sub(200)..].join("\n")
    };
    assert!(
        fail.is_empty() && status.is_some_and(|s| s.success()),
        "franz-go tests failed: {fail:?} (status {status:?})\n{}\n{tail}\n{stderr}\nbroker log:\n{}",
        failure_lines(&stdout, &fail),
        b.log()
    );
    // The suite really ran against the broker: its producing and group
    // tests are among the passes.
    for must in ["TestGroupETL", "TestClient_Produce", "TestConsumeRegex"] {
        assert!(
            pass.iter().any(|p| p == must),
            "{must} did not pass:\n{tail}"
        );
    }
}
