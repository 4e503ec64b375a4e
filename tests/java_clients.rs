//! The Java Kafka ecosystem, unchanged, against the Kafka listener: the
//! Maven module in `tests/java` (kafka-clients 4.4: the producer with its
//! defaults, idempotent; the consumer in a classic group; Admin; a Kafka
//! Streams word count; a Kafka Connect distributed worker) runs its JUnit
//! tests against a 2-shard broker started here, which it finds in
//! `SHARDLOG_KAFKA`.
//!
//! Needs `mvn` and a JDK 17+; Maven fetches the pinned dependencies from
//! Maven Central into `target/m2` (`.ci/run` does it first). Without them
//! the test prints SKIPPED, or fails when `KAFKA_CLIENT_TESTS=required`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Maven, the JVM start and the tests together; the tests' own timeouts
/// are shorter.
const DEADLINE: Duration = Duration::from_secs(600);

fn module() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/java")
}

/// Maven's local repository: inside this clone's target directory, so CI
/// fetches once per clone and nothing is shared with the machine.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/m2")
}

fn have_maven() -> bool {
    let ok = Command::new("mvn")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var("KAFKA_CLIENT_TESTS").as_deref() == Ok("required") {
        panic!("KAFKA_CLIENT_TESTS=required, but mvn does not run (install Maven and a JDK 17+)");
    }
    println!("SKIPPED: mvn does not run");
    false
}

#[test]
fn the_java_client_and_admin_work_unchanged() {
    if !have_maven() {
        return;
    }
    let dir = data_dir();
    let (mut b, kafka, args) = common::kafka::suite_broker(dir.path(), "2", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The Java tests ask for a broker restart by creating `restart` here
    // (Kafka Connect must survive one), `restarted` answers; and for a
    // kill -9 and restart with `kill` (the transactional producer must
    // survive two), `killed` answers.
    let control = tempfile::tempdir().unwrap();
    let mut restarts = 0;
    let mut kills = 0;
    let Bounded {
        status,
        stdout,
        stderr,
    } = run_bounded(
        Command::new("mvn")
            .args(["-B", "-q", "test"])
            .arg(format!("-Dmaven.repo.local={}", repo().display()))
            .current_dir(module())
            .env("SHARDLOG_KAFKA", kafka.to_string())
            .env("SHARDLOG_CONTROL", control.path()),
        DEADLINE,
        || {
            let ask = control.path().join("restart");
            if ask.exists() {
                std::fs::remove_file(&ask).unwrap();
                assert!(
                    b.terminate(Duration::from_secs(30)).success(),
                    "{}",
                    b.log()
                );
                b = Broker::start_on(dir.path(), b.addr, &args);
                b.wait_kafka(kafka);
                restarts += 1;
                std::fs::write(control.path().join("restarted"), "yes").unwrap();
            }
            let ask = control.path().join("kill");
            if ask.exists() {
                std::fs::remove_file(&ask).unwrap();
                b.kill();
                b = Broker::start_on(dir.path(), b.addr, &args);
                b.wait_kafka(kafka);
                kills += 1;
                std::fs::write(control.path().join("killed"), "yes").unwrap();
            }
        },
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "mvn test failed ({status:?}):\n{stdout}\n{stderr}\nbroker log:\n{}",
        b.log()
    );
    assert_eq!(restarts, 1, "the Connect test asked for one broker restart");
    assert_eq!(
        kills, 3,
        "the transactions test asked for two kills, Streams for one"
    );
}
