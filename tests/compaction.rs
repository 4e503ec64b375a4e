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
