//! Consumer groups: how long a rebalance takes with 1, 10 and 50 members
//! (all joining at once; one leaving cleanly), and how fast a group reads
//! against plain partition consumers over the same data.
//!
//! An in-process broker (2 shards, `--fsync never`), `GroupConsumer`s each
//! polled by its own thread, as applications do. Times are wall clock from
//! the event to the moment every partition is owned again, balanced.
//!
//! Run: `cargo bench --bench groups` (about a minute). Prints tables; the
//! figures go to BENCHMARKS.md with the date and machine.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardlog::batch::{split_batches, BatchBuilder, Records};
use shardlog::client::consumer::{GroupConfig, GroupConsumer, OffsetReset};
use shardlog::client::{Client, RoutedClient};
use shardlog::partition::FsyncPolicy;
use shardlog::protocol::*;
use shardlog::server::{Broker, BrokerConfig};

const DEADLINE: Duration = Duration::from_secs(120);

fn free_port_triple() -> u16 {
    loop {
        let p = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if p < 60_000
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 2)).is_ok()
        {
            return p;
        }
    }
}

fn start_broker() -> (Broker, tempfile::TempDir, String) {
    let base = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("groups-")
        .tempdir_in(base)
        .unwrap();
    let port = free_port_triple();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cfg = BrokerConfig::new(dir.path().to_owned(), listen);
    cfg.fsync = FsyncPolicy::Never;
    cfg.shards = 2;
    cfg.shard_port_base = Some(port + 1);
    let b = Broker::start(cfg).expect("broker starts");
    (b, dir, listen.to_string())
}

/// A member polled by its own thread; publishes how many partitions it owns.
struct Member {
    owned: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Member {
    fn start(broker: &str, group: &str, topic: &str) -> Member {
        let owned = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut cfg = GroupConfig::new(group, &[topic]);
        cfg.auto_commit = None;
        cfg.offset_reset = OffsetReset::Earliest;
        cfg.session_timeout_ms = 10_000;
        let (o, s, b) = (owned.clone(), stop.clone(), broker.to_owned());
        let thread = std::thread::spawn(move || {
            let mut c = GroupConsumer::new(&b, cfg).unwrap();
            let mut read = 0u64;
            while !s.load(Ordering::Relaxed) {
                read += c.poll(Duration::from_millis(20)).unwrap().len() as u64;
                o.store(c.assignment().len(), Ordering::Relaxed);
            }
            c.close().unwrap();
            read
        });
        Member {
            owned,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap())
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the members own every partition, balanced (max - min <= 1).
fn wait_balanced(members: &[Member], partitions: usize) -> Duration {
    let start = Instant::now();
    loop {
        let counts: Vec<usize> = members
            .iter()
            .map(|m| m.owned.load(Ordering::Relaxed))
            .collect();
        let sum: usize = counts.iter().sum();
        let (lo, hi) = (
            counts.iter().min().copied().unwrap_or(0),
            counts.iter().max().copied().unwrap_or(0),
        );
        if sum == partitions && hi - lo <= 1 {
            return start.elapsed();
        }
        assert!(start.elapsed() < DEADLINE, "not balanced: {counts:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn rebalance_times(broker: &str) {
    const PARTITIONS: u32 = 100;
    let mut admin = Client::connect(broker).unwrap();
    admin.create_topic("rb", PARTITIONS).unwrap();
    println!("members | all join: balanced after | one leaves: others own all after");
    for n in [1usize, 10, 50] {
        let group = format!("rb-{n}");
        let start = Instant::now();
        let mut members: Vec<Member> = (0..n)
            .map(|_| Member::start(broker, &group, "rb"))
            .collect();
        wait_balanced(&members, PARTITIONS as usize);
        let join = start.elapsed();
        let leave = if n > 1 {
            let mut gone = members.remove(0);
            let t = Instant::now();
            gone.stop();
            wait_balanced(&members, PARTITIONS as usize);
            format!("{:.0} ms", t.elapsed().as_secs_f64() * 1e3)
        } else {
            "-".to_owned()
        };
        println!("{n:>7} | {:>8.0} ms | {leave}", join.as_secs_f64() * 1e3);
        for mut m in members {
            m.stop();
        }
    }
}

fn fill(broker: &str, topic: &str, partitions: u32, per_partition: usize, size: usize) {
    let mut c = Client::connect(broker).unwrap();
    c.create_topic(topic, partitions).unwrap();
    let v = vec![b'x'; size];
    for p in 0..partitions {
        let mut left = per_partition;
        while left > 0 {
            let n = left.min(1000);
            let mut b = BatchBuilder::with_capacity(1, n * (size + 16));
            for _ in 0..n {
                b.push(1_700_000_000_000, None, Some(&v), &[]);
            }
            c.produce(topic, p, b.finish(), Acks::Leader).unwrap();
            left -= n;
        }
    }
}

/// Plain consumers: `readers` threads, each reading its partitions from 0
/// to the end through the shard-aware client. Returns msgs/s.
fn plain_read(broker: &str, topic: &str, partitions: u32, readers: usize, total: u64) -> f64 {
    let start = Instant::now();
    let threads: Vec<_> = (0..readers)
        .map(|r| {
            let (b, t) = (broker.to_owned(), topic.to_owned());
            std::thread::spawn(move || {
                let mut rc = RoutedClient::connect(&b).unwrap();
                rc.topic(&t).unwrap();
                let mine: Vec<u32> = (0..partitions)
                    .filter(|p| *p as usize % readers == r)
                    .collect();
                let mut read = 0u64;
                for p in mine {
                    let end = rc.public().list_offset(&t, p, LIST_LATEST).unwrap();
                    let mut next = 0i64;
                    while next < end {
                        let r = rc
                            .fetch(
                                &t,
                                FetchPartition {
                                    partition: p,
                                    fetch_offset: next,
                                    max_bytes: 1 << 20,
                                },
                                100,
                                1,
                            )
                            .unwrap();
                        for batch in split_batches(&r.records.to_bytes()).unwrap() {
                            let recs = Records::new(batch).unwrap();
                            let last = recs.header().last_offset();
                            for rec in recs {
                                let rec = rec.unwrap();
                                if rec.offset >= next {
                                    read += 1;
                                }
                            }
                            next = next.max(last + 1);
                        }
                    }
                }
                read
            })
        })
        .collect();
    let read: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(read, total);
    total as f64 / start.elapsed().as_secs_f64()
}

/// Plain partition consumers through the same consumer API as the group
/// (`GroupConsumer::assign`: fixed partitions, no membership): `readers`
/// threads, partition p to reader p % readers. Returns msgs/s.
fn assigned_read(broker: &str, topic: &str, partitions: u32, readers: usize, total: u64) -> f64 {
    let start = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..readers)
        .map(|r| {
            let (b, t, done) = (broker.to_owned(), topic.to_owned(), done.clone());
            std::thread::spawn(move || {
                let mine: Vec<(String, u32)> = (0..partitions)
                    .filter(|p| *p as usize % readers == r)
                    .map(|p| (t.clone(), p))
                    .collect();
                let mut cfg = GroupConfig::new("assigned-readers", &[&t]);
                cfg.offset_reset = OffsetReset::Earliest;
                cfg.auto_commit = None;
                let mut c = GroupConsumer::assign(&b, cfg, &mine).unwrap();
                let mut read = 0u64;
                while (done.load(Ordering::Relaxed) as u64) < total {
                    let n = c.poll(Duration::from_millis(50)).unwrap().len();
                    read += n as u64;
                    done.fetch_add(n, Ordering::Relaxed);
                    assert!(start.elapsed() < DEADLINE);
                }
                read
            })
        })
        .collect();
    let read: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(read, total);
    total as f64 / start.elapsed().as_secs_f64()
}

/// The same data read by a group of `readers` members. Returns (msgs/s
/// from the start, including the join and first rebalance; msgs/s once
/// every member owns its share, the steady state plain readers start in).
fn group_read(
    broker: &str,
    topic: &str,
    partitions: u32,
    readers: usize,
    total: u64,
) -> (f64, f64) {
    let start = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let after = Arc::new(AtomicUsize::new(0));
    let owned: Arc<Vec<AtomicUsize>> =
        Arc::new((0..readers).map(|_| AtomicUsize::new(0)).collect());
    let balanced_at: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let threads: Vec<_> = (0..readers)
        .map(|i| {
            let (b, t) = (broker.to_owned(), topic.to_owned());
            let (done, after, owned, balanced_at) = (
                done.clone(),
                after.clone(),
                owned.clone(),
                balanced_at.clone(),
            );
            std::thread::spawn(move || {
                let mut cfg = GroupConfig::new("throughput", &[&t]);
                cfg.offset_reset = OffsetReset::Earliest;
                cfg.auto_commit = Some(Duration::from_secs(1));
                let mut c = GroupConsumer::new(&b, cfg).unwrap();
                let mut read = 0u64;
                while (done.load(Ordering::Relaxed) as u64) < total {
                    let n = c.poll(Duration::from_millis(50)).unwrap().len();
                    owned[i].store(c.assignment().len(), Ordering::Relaxed);
                    if balanced_at.get().is_none()
                        && owned
                            .iter()
                            .all(|o| o.load(Ordering::Relaxed) == partitions as usize / owned.len())
                    {
                        let _ = balanced_at.set(Instant::now());
                    } else if balanced_at.get().is_some() {
                        after.fetch_add(n, Ordering::Relaxed);
                    }
                    read += n as u64;
                    done.fetch_add(n, Ordering::Relaxed);
                    assert!(start.elapsed() < DEADLINE);
                }
                c.close().unwrap();
                read
            })
        })
        .collect();
    let read: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let end = Instant::now();
    assert_eq!(read, total, "a group reads every message once");
    let whole = total as f64 / (end - start).as_secs_f64();
    let steady = balanced_at.get().map_or(0.0, |b| {
        after.load(Ordering::Relaxed) as f64 / (end - *b).as_secs_f64()
    });
    (whole, steady)
}

fn main() {
    // `cargo test --benches` runs bench targets too: stay quick there.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let (b, _dir, broker) = start_broker();
    rebalance_times(&broker);
    const PARTS: u32 = 8;
    const PER: usize = 1_000_000;
    const SIZE: usize = 100;
    fill(&broker, "data", PARTS, PER, SIZE);
    let total = PARTS as u64 * PER as u64;
    println!("\nconsume {total} x {SIZE} B from {PARTS} partitions, 2 readers");
    // Alternating which goes first: run-to-run noise on 2 shared vCPUs is
    // large, so compare within a round and look at the spread. "raw" reads
    // records straight from the fetched bytes (no consumer API); "assigned"
    // is the consumer API on fixed partitions; "group" the same API in a
    // group (with its join and first rebalance, and once balanced).
    for round in 1..=4 {
        let run_plain = || {
            (
                plain_read(&broker, "data", PARTS, 2, total),
                assigned_read(&broker, "data", PARTS, 2, total),
            )
        };
        let ((raw, assigned), (group, steady)) = if round % 2 == 1 {
            let p = run_plain();
            (p, group_read(&broker, "data", PARTS, 2, total))
        } else {
            let g = group_read(&broker, "data", PARTS, 2, total);
            (run_plain(), g)
        };
        println!(
            "round {round}: raw {raw:.0} | assigned {assigned:.0} | group {group:.0} with the join, \
             {steady:.0} once balanced (msgs/s) | group/assigned {:.2} with the join, {:.2} once balanced",
            group / assigned,
            steady / assigned
        );
        // The next round's group starts from its commits: reset them.
        let mut c = Client::connect(&broker).unwrap();
        c.commit_offsets(OffsetCommitRequest {
            group: "throughput".into(),
            member_id: String::new(),
            member_epoch: -1,
            topics: vec![OffsetCommitTopic {
                name: "data".into(),
                partitions: (0..PARTS)
                    .map(|p| OffsetCommitPartition {
                        partition: p,
                        offset: 0,
                        metadata: String::new(),
                        leader_epoch: -1,
                    })
                    .collect(),
            }],
        })
        .unwrap();
    }
    b.stop_flag().store(true, Ordering::Relaxed);
    b.join().expect("clean stop");
}
