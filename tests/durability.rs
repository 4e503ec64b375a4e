//! Durability settings through the real binary: segment roll, retention,
//! per-topic configs, ListOffsets by timestamp, and `--fsync interval:MS`.
//! (Crash recovery is in crash.rs; storage faults in the partition's unit
//! tests, which can inject them.)

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use shardlog::batch::BatchBuilder;
use shardlog::client::Client;
use shardlog::protocol::*;

const T: Duration = Duration::from_secs(60);

fn segment_files(data_dir: &Path, topic: &str, p: u32) -> Vec<String> {
    let dir = data_dir.join("topics").join(topic).join(p.to_string());
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".log"))
        .collect();
    v.sort();
    v
}

/// A batch of `n` 1 KiB records stamped `ts`.
fn batch(ts: i64, n: usize, tag: u8) -> bytes::Bytes {
    let mut b = BatchBuilder::new(ts);
    for i in 0..n {
        b.push(ts, None, Some(&vec![tag.wrapping_add(i as u8); 1024]), &[]);
    }
    b.finish()
}

#[test]
fn topics_roll_and_retention_deletes_old_segments_while_serving() {
    let dir = data_dir();
    let b = Broker::start(
        dir.path(),
        &[
            "--fsync",
            "interval:20",
            "--segment-bytes",
            "65536",
            "--retention-check-ms",
            "50",
        ],
    );
    let ba = b.broker_arg();
    // The topic keeps ~256 KiB per partition; the broker default is unlimited.
    let out = run(
        &[
            "topic",
            "create",
            "logs",
            "--partitions",
            "1",
            "--config",
            "retention.bytes=262144",
            "--broker",
            &ba,
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let out = run(
        &[
            "topic",
            "create",
            "keep",
            "--partitions",
            "1",
            "--broker",
            &ba,
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let mut c = Client::connect(&ba).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // 1 MiB into each topic: 64 batches of 16 records, stamped 1 s apart.
    for i in 0..64i64 {
        for t in ["logs", "keep"] {
            let off = c
                .produce(t, 0, batch(now + i * 1000, 16, i as u8), Acks::Durable)
                .unwrap();
            assert_eq!(off, i * 16);
        }
    }
    // Retention runs in the background: wait (bounded) until it kept
    // retention.bytes (Kafka's rule: whole segments, the rest holds the limit).
    let start = Instant::now();
    let files = loop {
        let files = segment_files(dir.path(), "logs", 0);
        let sizes: Vec<u64> = files
            .iter()
            .map(|f| {
                let p = dir.path().join("topics/logs/0").join(f);
                std::fs::metadata(p).map_or(0, |m| m.len())
            })
            .collect();
        // The active segment's file is preallocated ahead of its data (up to
        // segment.bytes), so only the sealed, trimmed files are counted
        // (without retention they would be ~1 MiB); the active one holds
        // less than a segment.
        let sealed: u64 = sizes[..sizes.len() - 1].iter().sum();
        assert!(sizes[sizes.len() - 1] <= 65_536, "{sizes:?}");
        // (log start moves before the deleted file is unlinked: wait for both)
        let earliest = c.list_offset("logs", 0, LIST_EARLIEST).unwrap();
        if sealed - sizes[0] < 262_144 && files[0] == format!("{earliest:020}.log") {
            // The active segment counts toward retention.bytes too, and its
            // file size is not its data: settled once six more retention
            // checks (50 ms each) leave the log start where it is.
            std::thread::sleep(Duration::from_millis(300));
            if c.list_offset("logs", 0, LIST_EARLIEST).unwrap() == earliest {
                break files;
            }
        }
        assert!(start.elapsed() < T, "retention never ran: {files:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let first = c.list_offset("logs", 0, LIST_EARLIEST).unwrap();
    // The oldest kept segment's name is the log start offset.
    assert_eq!(files[0], format!("{first:020}.log"));
    assert!(
        segment_files(dir.path(), "keep", 0).len() >= 16,
        "no override: nothing deleted"
    );
    assert_eq!(c.list_offset("keep", 0, LIST_EARLIEST).unwrap(), 0);

    // ListOffsets by timestamp: the first record at or after the time.
    assert_eq!(c.list_offset("keep", 0, now + 10_500).unwrap(), 11 * 16);
    assert_eq!(c.list_offset("keep", 0, now).unwrap(), 0);
    assert_eq!(
        c.list_offset("keep", 0, now + 100_000).unwrap(),
        -1,
        "nothing that new"
    );
    // In the trimmed topic, a time before the log start answers the log start.
    assert_eq!(c.list_offset("logs", 0, now).unwrap(), first);

    // Consumers starting below the log start get a clear error; from it, data.
    let r = c
        .fetch(
            "logs",
            &[FetchPartition {
                partition: 0,
                fetch_offset: 0,
                max_bytes: 1 << 20,
            }],
            1 << 20,
        )
        .unwrap();
    assert_eq!(
        r[0].error.as_ref().map(|e| e.code),
        Some(ErrorCode::OffsetOutOfRange)
    );
    let out = run(
        &[
            "consume",
            "logs",
            "--from",
            "earliest",
            "--max-messages",
            "3",
            "--broker",
            &ba,
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.iter().filter(|&&c| c == b'\n').count(), 3);

    // After a clean restart the segments, offsets and configs are the same.
    let hw = c.list_offset("logs", 0, LIST_LATEST).unwrap();
    drop(c);
    let mut b = b;
    assert!(b.terminate(T).success());
    let b = Broker::start(
        dir.path(),
        &["--segment-bytes", "65536", "--retention-check-ms", "50"],
    );
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    assert_eq!(c.list_offset("logs", 0, LIST_EARLIEST).unwrap(), first);
    assert_eq!(c.list_offset("logs", 0, LIST_LATEST).unwrap(), hw);
    assert_eq!(c.list_offset("keep", 0, now + 10_500).unwrap(), 11 * 16);
    assert_eq!(
        c.produce("logs", 0, batch(now, 1, 0), Acks::Durable)
            .unwrap(),
        hw
    );
    assert!(
        !b.log().contains("torn"),
        "a clean stop leaves nothing to cut: {}",
        b.log()
    );
}
