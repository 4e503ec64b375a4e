//! Log compaction end to end, through the real binary: a keyed topic with
//! `cleanup.policy=compact` shrinks to each key's newest record, which a
//! consumer from offset 0 reads in offset order; `__consumer_offsets` keeps
//! each group's newest commit. Both across a restart.

mod common;

use common::*;
use shardlog::client::Client;
use shardlog::protocol::{
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitTopic, TopicDescription,
};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(120);
const KEYS: usize = 1_000;
const UPDATES: usize = 1_000_000;
const PARTITIONS: u32 = 2;

fn describe(b: &Broker, topic: &str) -> TopicDescription {
    Client::connect(&b.broker_arg())
        .unwrap()
        .describe_topic(topic)
        .unwrap()
}

/// Waits until every partition's cleaner checkpoint reaches its last
/// offset (the active segment holds only the marker written last).
fn wait_cleaned(b: &Broker, topic: &str) -> TopicDescription {
    let start = Instant::now();
    loop {
        let d = describe(b, topic);
        let done = d.partitions.iter().all(|p| {
            p.cleaner
                .is_some_and(|c| c.checkpoint == p.high_watermark - 1 && c.runs > 0)
        });
        if done {
            return d;
        }
        assert!(
            start.elapsed() < T,
            "not cleaned in time: {d:?}\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn consume_values(b: &Broker, topic: &str, p: u32) -> Vec<String> {
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
    assert!(out.status.success(), "consume: {}", out.stderr);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_compacted_topic_of_a_million_updates_shrinks_to_each_keys_latest_value() {
    let dir = data_dir();
    let extra = ["--cleaner-check-ms", "200", "--shards", "2"];
    let mut b = Broker::start(dir.path(), &extra);
    let ba = b.broker_arg();
    let out = run(
        &[
            "topic",
            "create",
            "state",
            "--partitions",
            &PARTITIONS.to_string(),
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.bytes=1048576",
            "--config",
            "segment.ms=2000",
            "--broker",
            &ba,
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    // Update i sets key i % KEYS to "k<key>-u<i>": the last KEYS updates
    // hold every key's final value.
    let mut input = String::with_capacity(UPDATES * 24);
    for i in 0..UPDATES {
        let k = i % KEYS;
        input.push_str(&format!("key-{k:04}|k{k:04}-u{i:07}\n"));
    }
    let out = run(
        &["produce", "state", "--key-separator", "|", "--broker", &ba],
        input.as_bytes(),
        T,
    );
    assert!(out.status.success(), "produce: {}", out.stderr);
    drop(input);
    // One marker per partition once segment.ms passed: the active segment
    // rolls, and everything before the marker becomes cleanable.
    std::thread::sleep(Duration::from_millis(2_100));
    for p in 0..PARTITIONS {
        let out = run(
            &[
                "produce",
                "state",
                "--partition",
                &p.to_string(),
                "--key-separator",
                "|",
                "--broker",
                &ba,
            ],
            format!("marker|end-{p}\n").as_bytes(),
            T,
        );
        assert!(out.status.success(), "{}", out.stderr);
    }
    let d = wait_cleaned(&b, "state");
    let size: u64 = d.partitions.iter().map(|p| p.size_bytes).sum();
    assert!(
        size < 200 << 10,
        "a million updates of a thousand keys keep about a thousand records: {d:?}"
    );
    // The final value of each key, in key order (they were produced so),
    // then the marker; nothing older.
    let check = |b: &Broker| {
        let mut all = 0;
        for p in 0..PARTITIONS {
            let got = consume_values(b, "state", p);
            let (marker, values) = got.split_last().expect("at least the marker");
            assert_eq!(marker, &format!("end-{p}"));
            let mut last_key = None;
            for v in values {
                let (k, u) = v.split_once("-u").unwrap();
                let k: usize = k[1..].parse().unwrap();
                let u: usize = u.parse().unwrap();
                assert_eq!(u, UPDATES - KEYS + k, "key {k}: an older value {v}");
                assert!(last_key < Some(k), "partition {p}: out of order at {v}");
                last_key = Some(k);
            }
            all += values.len();
        }
        assert_eq!(all, KEYS, "every key exactly once");
    };
    check(&b);
    // Offsets keep their holes: the survivors sit at their own offsets and
    // the log's end is where it was.
    let hw: Vec<i64> = d.partitions.iter().map(|p| p.high_watermark).collect();
    assert_eq!(hw.iter().sum::<i64>(), (UPDATES + 2) as i64);
    let status = b.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", b.log());
    let b = Broker::start_on(dir.path(), b.addr, &extra);
    check(&b);
    let d2 = describe(&b, "state");
    for (p, q) in d.partitions.iter().zip(&d2.partitions) {
        assert_eq!(
            (p.log_start_offset, p.high_watermark),
            (q.log_start_offset, q.high_watermark)
        );
        assert_eq!(q.cleaner.unwrap().checkpoint, p.cleaner.unwrap().checkpoint);
    }
}

#[test]
fn consumer_offsets_keep_each_groups_newest_commit() {
    let dir = data_dir();
    // segment.ms applies to the offsets topic too: its active segment
    // rolls, so the commits before become cleanable.
    let extra = ["--cleaner-check-ms", "200", "--segment-ms", "1000"];
    let mut b = Broker::start(dir.path(), &extra);
    let ba = b.broker_arg();
    let out = run(
        &["topic", "create", "t", "--partitions", "2", "--broker", &ba],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let mut c = Client::connect(&ba).unwrap();
    let commit = |c: &mut Client, group: &str, offset: i64| {
        c.commit_offsets(OffsetCommitRequest {
            group: group.to_owned(),
            member_id: String::new(),
            member_epoch: -1,
            topics: vec![OffsetCommitTopic {
                name: "t".into(),
                partitions: (0..2)
                    .map(|p| OffsetCommitPartition {
                        partition: p,
                        offset: offset + p as i64,
                        metadata: "m".repeat(100),
                        leader_epoch: -1,
                    })
                    .collect(),
            }],
        })
        .unwrap()
    };
    let offsets_size = |b: &Broker| -> u64 {
        describe(b, "__consumer_offsets")
            .partitions
            .iter()
            .map(|p| p.size_bytes)
            .sum()
    };
    for i in 0..3_000 {
        commit(&mut c, "g", i);
    }
    std::thread::sleep(Duration::from_millis(1_100));
    commit(&mut c, "g", 5_000); // rolls the group's offsets partition
                                // 6,002 commit records take over 200 KB uncleaned; cleaned, the group's
                                // partition holds its two newest (and the marker commit's segment).
    let start = Instant::now();
    loop {
        let d = describe(&b, "__consumer_offsets");
        let cleaned = d
            .partitions
            .iter()
            .filter(|p| p.high_watermark > 0)
            .all(|p| {
                p.cleaner
                    .is_some_and(|c| c.runs > 0 && c.checkpoint == p.high_watermark - 2)
            });
        if cleaned {
            break;
        }
        assert!(
            start.elapsed() < T,
            "offsets not compacted: {d:?}\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = offsets_size(&b);
    assert!(after < 20_000, "{after}");
    let committed = |b: &Broker| -> Vec<i64> {
        Client::connect(&b.broker_arg())
            .unwrap()
            .fetch_offsets("g", None)
            .unwrap()
            .into_iter()
            .flat_map(|t| t.partitions)
            .map(|p| p.offset)
            .collect()
    };
    assert_eq!(committed(&b), vec![5_000, 5_001]);
    let status = b.terminate(Duration::from_secs(30));
    assert!(status.success(), "{}", b.log());
    let b = Broker::start_on(dir.path(), b.addr, &extra);
    assert_eq!(
        committed(&b),
        vec![5_000, 5_001],
        "replayed from the compacted log"
    );
    assert_eq!(offsets_size(&b), after);
}

/// splitmix64, seeded: the moments of the kills.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Every record of partition 0 as (offset, key, update index), checking on
/// the way that batches are whole and offsets only grow.
fn read_compacted(b: &Broker, topic: &str) -> (Vec<(i64, String, usize)>, i64) {
    use shardlog::batch::{split_batches, Records};
    use shardlog::protocol::FetchPartition;
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    let mut out: Vec<(i64, String, usize)> = Vec::new();
    let mut next = 0i64;
    loop {
        let r = c
            .fetch(
                topic,
                &[FetchPartition {
                    partition: 0,
                    fetch_offset: next,
                    max_bytes: 1 << 20,
                }],
                1 << 20,
            )
            .unwrap();
        let r = &r[0];
        assert_eq!(r.error, None, "fetch at {next}");
        let batches = split_batches(&r.records.to_bytes()).unwrap();
        if batches.is_empty() {
            assert_eq!(next.max(r.log_start_offset), r.high_watermark);
            return (out, r.high_watermark);
        }
        for batch in batches {
            for rec in Records::new(batch).unwrap() {
                let rec = rec.unwrap();
                assert!(
                    out.last().is_none_or(|l| l.0 < rec.offset),
                    "offsets only grow"
                );
                let key = String::from_utf8(rec.key.unwrap().to_vec()).unwrap();
                let value = String::from_utf8(rec.value.unwrap().to_vec()).unwrap();
                let (k, u) = value.split_once("-u").unwrap();
                assert_eq!(
                    format!("key-{}", &k[1..]),
                    key,
                    "value {value} under key {key}"
                );
                out.push((rec.offset, key, u.parse().unwrap()));
                next = rec.offset + 1;
            }
        }
    }
}

#[test]
fn kill_9_while_cleaning_leaves_the_compacted_view_of_every_acknowledged_update() {
    let seed = match std::env::var("CRASH_TEST_SEED") {
        Ok(s) => s.parse().expect("CRASH_TEST_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("seed {seed} (replay with CRASH_TEST_SEED={seed})");
    let mut rng = Rng(seed);
    const ROUNDS: usize = 16;
    const PER_ROUND: usize = 20_000;
    const KEYS: usize = 300;
    let dir = data_dir();
    // A budget of 8 MB/s stretches a round's cleaning over a few hundred ms.
    let extra = [
        "--cleaner-check-ms",
        "20",
        "--cleaner-io-bytes-per-sec",
        "8000000",
    ];
    let mut b = Broker::start(dir.path(), &extra);
    let out = run(
        &[
            "topic",
            "create",
            "kv",
            "--partitions",
            "1",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.bytes=65536",
            "--config",
            "min.cleanable.dirty.ratio=0.1",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    // The model: each key's newest update (every update is acknowledged
    // before the kill: `produce` exits 0 only then).
    let mut latest = std::collections::BTreeMap::new();
    let mut produced = 0usize;
    let mut recovered = 0usize;
    for round in 0..ROUNDS {
        let mut input = String::new();
        for i in produced..produced + PER_ROUND {
            let k = (i * 7 + round) % KEYS;
            input.push_str(&format!("key-{k:04}|k{k:04}-u{i:08}\n"));
            latest.insert(format!("key-{k:04}"), i);
        }
        let out = run(
            &[
                "produce",
                "kv",
                "--key-separator",
                "|",
                "--broker",
                &b.broker_arg(),
            ],
            input.as_bytes(),
            T,
        );
        assert!(out.status.success(), "round {round}: {}", out.stderr);
        produced += PER_ROUND;
        // The cleaner looks every 20 ms and, at its budget, cleans a round's
        // segments in a few hundred ms: a kill in the next 500 ms lands
        // before, inside or after a cleaning.
        std::thread::sleep(Duration::from_millis(rng.next() % 500));
        b.kill();
        let addr = b.addr;
        drop(b);
        b = Broker::start_on(dir.path(), addr, &extra);
        let log = b.log();
        recovered += log.matches("uncommitted compaction").count();
        let (records, hw) = read_compacted(&b, "kv");
        assert_eq!(
            hw, produced as i64,
            "round {round}: an acknowledged update was lost"
        );
        // Each key's newest record is its newest acknowledged update, and
        // every record is at the offset it was given (update i at offset i).
        let mut newest = std::collections::BTreeMap::new();
        for (offset, key, u) in &records {
            assert_eq!(*offset, *u as i64, "round {round}: update {u} moved");
            newest.insert(key.clone(), *u);
        }
        assert_eq!(newest, latest, "round {round}: the compacted view differs");
        eprintln!("round {round}: {} records of {produced}", records.len());
    }
    // Left alone, the cleaner catches up.
    let start = Instant::now();
    loop {
        let (records, _) = read_compacted(&b, "kv");
        if records.len() < produced / 4 {
            break;
        }
        assert!(
            start.elapsed() < T,
            "the cleaner did not catch up: {} records of {produced} left",
            records.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("{recovered} restarts found a cleaning cut midway");
}
