//! Crash recovery through the real binary: SIGKILL under load, and garbage
//! after the last batch of a segment. What a durable ack promised must be in
//! the log after the restart, byte for byte, at the offset the ack named, and
//! the log must go on taking produces where it ended.
//!
//! Sizes, partitions and the moment of each kill come from one seeded PRNG;
//! the seed is printed, and `CRASH_TEST_SEED=<seed>` replays a run (the
//! moment a SIGKILL lands within the broker's work still varies).

mod common;

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::*;
use shardlog::batch::{self, BatchBuilder, Header, Records};
use shardlog::client::{produce_request, Client};
use shardlog::protocol::*;

/// Time a SIGTERM'ed broker gets to stop.
const STOP: Duration = Duration::from_secs(30);
const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;
/// Smallest and largest batch the generator aims for; the smallest possible
/// batch (61-byte header plus one record) is a little above the low end.
const MIN_BATCH_BYTES: usize = 50;
const MAX_BATCH_BYTES: usize = 20 << 10;
const MAX_RECORDS_PER_BATCH: u64 = 8;

/// splitmix64: small and seedable; picks sizes, partitions and moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi);
        lo + self.next() % (hi - lo + 1)
    }

    /// Log-uniform batch size target: as many small batches as large ones.
    fn batch_bytes(&mut self) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let ratio = MAX_BATCH_BYTES as f64 / MIN_BATCH_BYTES as f64;
        (MIN_BATCH_BYTES as f64 * ratio.powf(u)) as usize
    }
}

fn seed(test: &str) -> u64 {
    let seed = match std::env::var("CRASH_TEST_SEED") {
        Ok(s) => s.parse().expect("CRASH_TEST_SEED must be a u64"),
        Err(_) => {
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            t.as_nanos() as u64 ^ ((std::process::id() as u64) << 32)
        }
    };
    eprintln!("{test}: seed {seed} (replay with CRASH_TEST_SEED={seed})");
    seed
}

/// One batch of 1..=8 records, about `target` bytes in all. Every key and
/// value names its round, partition, sequence number and record index, so no
/// two records of a test are alike; padding bytes come from `rng`. Some keys
/// are null, some records carry headers (one with a null value).
fn make_batch(rng: &mut Rng, target: usize, round: u32, partition: u32, seq: u64) -> Bytes {
    let n = rng
        .range(1, MAX_RECORDS_PER_BATCH)
        .min((target / 64).max(1) as u64) as usize;
    let pad_each = target.saturating_sub(batch::HEADER_BYTES + n * 40) / n;
    let mut b = BatchBuilder::with_capacity(BASE_TIMESTAMP_MS, target + 256);
    for i in 0..n {
        let key = format!("k/{round}/{partition}/{seq}/{i}");
        let mut value = format!("v/{round}/{partition}/{seq}/{i}|").into_bytes();
        let pad = pad_each / 2 + rng.range(0, pad_each as u64) as usize;
        while value.len() < pad {
            value.extend_from_slice(&rng.next().to_le_bytes());
        }
        let headers = match i % 3 {
            0 => vec![],
            1 => vec![Header {
                key: Bytes::from_static(b"seq"),
                value: Some(Bytes::copy_from_slice(&seq.to_be_bytes())),
            }],
            _ => vec![
                Header {
                    key: Bytes::from_static(b"round"),
                    value: Some(Bytes::copy_from_slice(&round.to_be_bytes())),
                },
                Header {
                    key: Bytes::from_static(b"nil"),
                    value: None,
                },
            ],
        };
        let key = (i % 4 != 3).then_some(key.as_bytes());
        b.push(BASE_TIMESTAMP_MS + seq as i64, key, Some(&value), &headers);
    }
    b.finish()
}

/// A batch sent to one partition, and what the broker said about it.
#[derive(Clone)]
struct Expected {
    /// As sent: base offset 0, leader epoch -1 (the broker rewrites both).
    batch: Bytes,
    /// The base offset of the acknowledgement; None if none arrived.
    ack: Option<i64>,
    round: u32,
    /// Position among the batches sent to this partition in this round.
    index: usize,
}

/// Whether `stored` is `sent` with only the broker's fields rewritten (base
/// offset and leader epoch, bytes 0..8 and 12..16, outside the CRC).
fn same_batch(stored: &[u8], sent: &[u8]) -> bool {
    stored.len() == sent.len() && stored[8..12] == sent[8..12] && stored[16..] == sent[16..]
}

fn offsets_of(b: &[u8]) -> i64 {
    batch::validate(b).expect("a batch we built").offset_count()
}

/// Reads a partition from offset 0 to its high watermark, checking on the
/// way that every batch is whole and CRC-valid, that offsets run contiguous
/// from 0 across batches and records, and that every record decodes.
/// Returns the stored batches and the next offset.
fn read_all(c: &mut Client, topic: &str, partition: u32) -> (Vec<Bytes>, i64) {
    let mut out = Vec::new();
    let mut next = 0i64;
    loop {
        let r = c
            .fetch(
                topic,
                &[FetchPartition {
                    partition,
                    fetch_offset: next,
                    max_bytes: 1 << 20,
                }],
                1 << 20,
            )
            .unwrap_or_else(|e| panic!("fetch {topic}/{partition} at {next}: {e}"));
        assert_eq!(r.len(), 1, "one answer for one partition");
        let r = &r[0];
        assert_eq!(r.error, None, "fetch {topic}/{partition} at {next}");
        assert_eq!(r.log_start_offset, 0, "{topic}/{partition} starts at 0");
        let batches = batch::split_batches(&r.records.to_bytes())
            .unwrap_or_else(|e| panic!("{topic}/{partition} at {next}: bad batch: {e}"));
        if batches.is_empty() {
            assert_eq!(
                next, r.high_watermark,
                "{topic}/{partition}: a fetch at {next}, below the high watermark, returned nothing"
            );
            let latest = c.list_offset(topic, partition, LIST_LATEST).unwrap();
            assert_eq!(latest, next, "{topic}/{partition}: latest offset");
            let earliest = c.list_offset(topic, partition, LIST_EARLIEST).unwrap();
            assert_eq!(earliest, 0, "{topic}/{partition}: earliest offset");
            return (out, next);
        }
        for b in batches {
            let records = Records::new(b.clone()).expect("split_batches validated it");
            let h = *records.header();
            assert_eq!(
                h.base_offset, next,
                "{topic}/{partition}: offsets are not contiguous"
            );
            let mut count = 0i64;
            for rec in records {
                let rec = rec.unwrap_or_else(|e| {
                    panic!("{topic}/{partition}: record in batch at {next}: {e}")
                });
                assert_eq!(
                    rec.offset,
                    next + count,
                    "{topic}/{partition}: record offset"
                );
                count += 1;
            }
            assert_eq!(
                count,
                h.offset_count(),
                "{topic}/{partition}: batch at {next}: records vs offsets"
            );
            next += count;
            out.push(b);
        }
    }
}

/// Checks a partition against what was sent to it, in send order. The log
/// must hold every acknowledged batch, at its acknowledged offset, byte for
/// byte, with nothing missing before it. After the acknowledged batches of a
/// round may follow any prefix of that round's unacknowledged ones (written
/// before the kill or not), but nothing else. Returns the next offset.
fn check_partition(c: &mut Client, topic: &str, partition: u32, expected: &[Expected]) -> i64 {
    let (stored, next) = read_all(c, topic, partition);
    let describe = |x: &Expected| {
        format!(
            "batch #{} of round {} ({} bytes, {} records, acked at {:?})",
            x.index,
            x.round,
            x.batch.len(),
            offsets_of(&x.batch),
            x.ack
        )
    };
    let mut e = 0;
    for s in &stored {
        let base = batch::validate(s)
            .expect("read_all validated it")
            .base_offset;
        loop {
            let Some(x) = expected.get(e) else {
                panic!(
                    "{topic}/{partition}: the batch at offset {base} ({} bytes) was never sent \
                     (or is a copy of one already matched)",
                    s.len()
                );
            };
            if same_batch(s, &x.batch) {
                break;
            }
            assert!(
                x.ack.is_none(),
                "{topic}/{partition}: acknowledged {} is missing or different: \
                 the log holds at offset {base} a batch of {} bytes",
                describe(x),
                s.len()
            );
            // An unacknowledged batch that did not survive: no later one of
            // its round may have survived either (the log is a prefix of what
            // was appended), so the rest of the round is skipped.
            let round = x.round;
            while expected
                .get(e)
                .is_some_and(|x| x.round == round && x.ack.is_none())
            {
                e += 1;
            }
        }
        if let Some(ack) = expected[e].ack {
            assert_eq!(
                base,
                ack,
                "{topic}/{partition}: {} is stored at another offset",
                describe(&expected[e])
            );
        }
        e += 1;
    }
    if let Some(x) = expected[e..].iter().find(|x| x.ack.is_some()) {
        panic!(
            "{topic}/{partition}: acknowledged {} is lost: the log ends at offset {next}",
            describe(x)
        );
    }
    next
}

/// What one producer connection did until the broker went away.
struct RoundLog {
    /// Per partition, every batch sent (or being sent), in send order, which
    /// is append order: one connection's requests are appended in order.
    sent: Vec<Vec<Bytes>>,
    /// Per partition, the acknowledged base offsets: `acked[p][k]` answers
    /// `sent[p][k]` (answers come in send order).
    acked: Vec<Vec<i64>>,
    /// Why the producer stopped.
    end: String,
    /// Whether the broker answered a produce with an error (not a crash).
    refused: bool,
}

/// Pipelines durable produces (`window` in flight) of random batches to
/// random partitions until the connection fails, or `deadline` passes.
fn produce_until_broken(
    addr: &str,
    topic: &str,
    partitions: u32,
    round: u32,
    seed: u64,
    window: usize,
    deadline: Duration,
) -> RoundLog {
    let mut rng = Rng(seed);
    let mut log = RoundLog {
        sent: vec![Vec::new(); partitions as usize],
        acked: vec![Vec::new(); partitions as usize],
        end: String::new(),
        refused: false,
    };
    let mut c = match Client::connect(addr) {
        Ok(c) => c,
        Err(e) => {
            log.end = format!("connect: {e}");
            return log;
        }
    };
    let start = Instant::now();
    let mut in_flight: VecDeque<(u32, usize)> = VecDeque::with_capacity(window);
    let mut seq = 0u64;
    loop {
        if start.elapsed() > deadline {
            log.end = format!("still producing after {deadline:?}: the broker was not killed");
            return log;
        }
        while in_flight.len() < window {
            let p = rng.range(0, partitions as u64 - 1) as usize;
            let target = rng.batch_bytes();
            let b = make_batch(&mut rng, target, round, p as u32, seq);
            seq += 1;
            // Recorded before sending: a request the broker read whole may be
            // in the log even if this side saw an error.
            log.sent[p].push(b.clone());
            match c.send(produce_request(topic, p as u32, b, Acks::Durable)) {
                Ok(id) => in_flight.push_back((id, p)),
                Err(e) => {
                    log.end = format!("send: {e}");
                    return log;
                }
            }
        }
        let (id, p) = in_flight.pop_front().expect("window > 0");
        match c.recv_produce(id) {
            Ok(base) => log.acked[p].push(base),
            Err(e) => {
                log.refused = e.code().is_some();
                log.end = format!("receive: {e}");
                return log;
            }
        }
    }
}

/// How each round ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: a crash.
    Kill,
    /// SIGTERM: a clean stop, which must exit 0 and lose nothing acknowledged.
    Term,
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_message() {
    kill_9_rounds(
        "kill_9_under_load_loses_no_acknowledged_message",
        "always",
        Stop::Kill,
    );
}

#[test]
fn sigterm_under_load_exits_0_and_loses_no_acknowledged_message() {
    kill_9_rounds(
        "sigterm_under_load_exits_0_and_loses_no_acknowledged_message",
        "always",
        Stop::Term,
    );
}

/// Under `interval:MS` a durable ack means written (O_DIRECT: on the device),
/// so a crash of the broker process alone must not lose it either.
#[test]
fn kill_9_under_fsync_interval_loses_no_acknowledged_message() {
    kill_9_rounds(
        "kill_9_under_fsync_interval_loses_no_acknowledged_message",
        "interval:50",
        Stop::Kill,
    );
}

fn kill_9_rounds(name: &str, fsync: &str, stop: Stop) {
    const TOPIC: &str = "crash";
    const PARTITIONS: u32 = 2;
    const ROUNDS: u32 = 4;
    const WINDOW: usize = 4;
    // Small segments, so kills land around rolls and seals too; no retention
    // by age (the records carry 2023 timestamps).
    let args: &[&str] = &[
        "--fsync",
        fsync,
        "--segment-bytes",
        "131072",
        "--retention-ms",
        "-1",
    ];
    let test_start = Instant::now();
    let mut rng = Rng(seed(name));
    let dir = data_dir();
    let mut b = Broker::start(dir.path(), args);
    Client::connect(&b.broker_arg())
        .unwrap()
        .create_topic(TOPIC, PARTITIONS)
        .unwrap();
    let mut expected: Vec<Vec<Expected>> = vec![Vec::new(); PARTITIONS as usize];
    let mut next = vec![0i64; PARTITIONS as usize];
    let mut total_acked = 0;
    for round in 0..ROUNDS {
        let delay = Duration::from_millis(rng.range(50, 400));
        let (tx, rx) = mpsc::channel();
        let addr = b.broker_arg();
        let producer_seed = rng.next();
        std::thread::spawn(move || {
            let log = produce_until_broken(
                &addr,
                TOPIC,
                PARTITIONS,
                round,
                producer_seed,
                WINDOW,
                Duration::from_secs(20),
            );
            let _ = tx.send(log);
        });
        std::thread::sleep(delay);
        match stop {
            Stop::Kill => b.kill(),
            Stop::Term => {
                let status = b.terminate(STOP);
                assert!(
                    status.success(),
                    "round {round}: SIGTERM exit {status:?}:\n{}",
                    b.log()
                );
            }
        }
        let log = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the producer stops once the broker is gone");
        // A stopping broker may refuse produces (with an error) before it
        // closes the connection; a crashing one has no time to.
        assert!(
            !log.refused || stop == Stop::Term,
            "round {round}: the broker refused a produce before the kill: {}",
            log.end
        );
        let mut summary = Vec::new();
        for p in 0..PARTITIONS as usize {
            let (sent, acked) = (&log.sent[p], &log.acked[p]);
            // The round's first append lands at the recovered end, and acks
            // of one partition on one connection follow each other.
            let mut at = next[p];
            for (k, &ack) in acked.iter().enumerate() {
                assert_eq!(ack, at, "round {round}, partition {p}: ack #{k}");
                at = ack + offsets_of(&sent[k]);
            }
            for (k, batch) in sent.iter().enumerate() {
                expected[p].push(Expected {
                    batch: batch.clone(),
                    ack: acked.get(k).copied(),
                    round,
                    index: k,
                });
            }
            total_acked += acked.len();
            summary.push(format!("p{p}: {} sent, {} acked", sent.len(), acked.len()));
        }
        eprintln!(
            "round {round}: {} after {delay:?}: {}; producer: {}",
            if stop == Stop::Kill {
                "SIGKILL"
            } else {
                "SIGTERM"
            },
            summary.join(", "),
            log.end
        );

        let next_before = next.clone();
        b = Broker::start(dir.path(), args);
        let mut c = Client::connect(&b.broker_arg()).unwrap();
        // Offsets past the round's last ack that survived (unacknowledged
        // batches written before the kill): allowed, shown to see they occur.
        let mut unacked_kept = Vec::new();
        for p in 0..PARTITIONS as usize {
            let acked_end = expected[p]
                .iter()
                .rev()
                .find_map(|x| x.ack.map(|a| a + offsets_of(&x.batch)))
                .unwrap_or(0);
            next[p] = check_partition(&mut c, TOPIC, p as u32, &expected[p]);
            unacked_kept.push(next[p] - acked_end.max(next_before[p]));
        }
        eprintln!(
            "round {round}: recovered, log ends at {next:?}, \
             unacknowledged offsets kept {unacked_kept:?}"
        );
        let log_text = b.log();
        if log_text.contains("torn") {
            eprintln!("round {round}: recovery cut a torn tail:\n{log_text}");
        }
    }
    assert!(total_acked > 0, "no produce was acknowledged in any round");

    // The recovered log takes produces at its end (earlier rounds showed it
    // under load; this is the last recovery's turn).
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    for p in 0..PARTITIONS {
        let target = rng.batch_bytes();
        let batch = make_batch(&mut rng, target, ROUNDS, p, 0);
        let base = c
            .produce(TOPIC, p, batch.clone(), Acks::Durable)
            .unwrap_or_else(|e| panic!("produce to {TOPIC}/{p} after recovery: {e}"));
        assert_eq!(
            base, next[p as usize],
            "{TOPIC}/{p}: produce after recovery"
        );
        expected[p as usize].push(Expected {
            batch,
            ack: Some(base),
            round: ROUNDS,
            index: 0,
        });
        check_partition(&mut c, TOPIC, p, &expected[p as usize]);
    }
    eprintln!(
        "kill_9: {total_acked} acknowledged batches checked in {:?}",
        test_start.elapsed()
    );
}

/// The `.log` file with the highest base offset in a partition's directory.
fn newest_segment(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    let dir = data_dir
        .join("topics")
        .join(topic)
        .join(partition.to_string());
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let base: u64 = p
                .file_name()?
                .to_str()?
                .strip_suffix(".log")?
                .parse()
                .ok()?;
            Some((base, p))
        })
        .max()
        .unwrap_or_else(|| panic!("no segment in {}", dir.display()))
        .1
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .len()
}

fn append_to(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

fn stop_cleanly(b: &mut Broker) {
    let status = b.terminate(STOP);
    assert!(
        status.success(),
        "SIGTERM must stop the broker cleanly, got {status}; log:\n{}",
        b.log()
    );
}

/// Produces `n` batches one by one, checking each lands at the end.
fn produce_batches(
    c: &mut Client,
    rng: &mut Rng,
    topic: &str,
    expected: &mut Vec<Expected>,
    next: &mut i64,
    round: u32,
    n: usize,
) {
    for k in 0..n {
        let target = rng.batch_bytes();
        let batch = make_batch(rng, target, round, 0, k as u64);
        let base = c.produce(topic, 0, batch.clone(), Acks::Durable).unwrap();
        assert_eq!(base, *next, "{topic}/0: batch {k} of round {round}");
        *next += offsets_of(&batch);
        expected.push(Expected {
            batch,
            ack: Some(base),
            round,
            index: k,
        });
    }
}

/// Restarts on `data_dir` after garbage was appended to `segment`, and checks
/// the recovery: the file is back to `clean_bytes`, the broker logged one
/// warning naming the cut, and the log holds exactly `expected`.
fn restart_and_check_cut(
    data_dir: &Path,
    topic: &str,
    segment: &Path,
    clean_bytes: u64,
    garbage_bytes: usize,
    expected: &[Expected],
    next: i64,
) -> Broker {
    let b = Broker::start(data_dir, &[]);
    // Recovery runs before the listener opens, and nothing was produced
    // since: the file must be exactly its clean length again.
    assert_eq!(
        file_bytes(segment),
        clean_bytes,
        "{}: {garbage_bytes} garbage bytes not cut exactly; log:\n{}",
        segment.display(),
        b.log()
    );
    let log = plain(&b.log());
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("torn") || l.contains(" cut "))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning line about the cut expected; log:\n{log}"
    );
    let w = warnings[0];
    for want in [
        "WARN".to_owned(),
        format!("recovery of {topic}/0"),
        format!("cut {garbage_bytes} bytes of a torn or corrupt tail at position {clean_bytes}"),
        segment.display().to_string(),
        format!("the log ends at offset {next}"),
    ] {
        assert!(w.contains(&want), "warning {w:?} lacks {want:?}");
    }
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    assert_eq!(check_partition(&mut c, topic, 0, expected), next);
    b
}

#[test]
fn garbage_appended_to_newest_segment_is_cut_exactly() {
    const TOPIC: &str = "garbage";
    let mut rng = Rng(seed("garbage_appended_to_newest_segment_is_cut_exactly"));
    let dir = data_dir();
    let mut b = Broker::start(dir.path(), &[]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic(TOPIC, 1).unwrap();
    let mut expected = Vec::new();
    let mut next = 0i64;
    produce_batches(&mut c, &mut rng, TOPIC, &mut expected, &mut next, 0, 30);
    drop(c);
    stop_cleanly(&mut b);

    // 1. Random non-zero bytes after the last batch.
    let segment = newest_segment(dir.path(), TOPIC, 0);
    let clean = file_bytes(&segment);
    let on_disk = std::fs::read(&segment).unwrap();
    assert_eq!(
        batch::scan(&on_disk, batch::OffsetChain::Contiguous, |_, _| {}).valid_bytes as u64,
        clean,
        "after a clean stop the segment holds whole batches only"
    );
    let garbage: Vec<u8> = (0..rng.range(1, 10_000))
        .map(|_| rng.range(1, 255) as u8)
        .collect();
    append_to(&segment, &garbage);
    assert_eq!(file_bytes(&segment), clean + garbage.len() as u64);
    b = restart_and_check_cut(
        dir.path(),
        TOPIC,
        &segment,
        clean,
        garbage.len(),
        &expected,
        next,
    );
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    produce_batches(&mut c, &mut rng, TOPIC, &mut expected, &mut next, 1, 5);
    assert_eq!(check_partition(&mut c, TOPIC, 0, &expected), next);
    drop(c);
    stop_cleanly(&mut b);

    // 2. Half a batch that looks like the next one: right base offset, valid
    //    header fields, body cut short (a torn write).
    let segment = newest_segment(dir.path(), TOPIC, 0);
    let clean = file_bytes(&segment);
    let mut half = make_batch(&mut rng, 8 << 10, 2, 0, 0).to_vec();
    batch::patch_base_offset(&mut half, next, 0);
    let whole = half.len();
    half.truncate(batch::HEADER_BYTES + (whole - batch::HEADER_BYTES) / 2);
    assert!(matches!(
        batch::validate(&half),
        Err(batch::BatchError::Truncated { .. })
    ));
    append_to(&segment, &half);
    b = restart_and_check_cut(
        dir.path(),
        TOPIC,
        &segment,
        clean,
        half.len(),
        &expected,
        next,
    );
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    produce_batches(&mut c, &mut rng, TOPIC, &mut expected, &mut next, 3, 5);
    drop(c);
    stop_cleanly(&mut b);

    // And all of it survives one more (clean) restart, with no warning.
    let b = Broker::start(dir.path(), &[]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    assert_eq!(check_partition(&mut c, TOPIC, 0, &expected), next);
    let log = plain(&b.log());
    assert!(
        !log.contains("torn"),
        "a clean stop leaves nothing to cut; log:\n{log}"
    );
}
