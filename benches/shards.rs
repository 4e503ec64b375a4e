//! The cost of crossing shards: the same produce and fetch load sent to the
//! partition's owner on its own port ("local") and sent to another shard's
//! port so every request is forwarded over the mesh ("cross"); and 1 shard
//! against 2. An in-process broker (`--fsync never`, acks=leader, so the
//! disk does not hide the routing cost), blocking clients in threads, one
//! request in flight per client: latency is service time.
//!
//! Run: `cargo bench --bench shards` (about 30 s). Prints a table; figures go
//! to BENCHMARKS.md with the date and machine.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shardlog::batch::BatchBuilder;
use shardlog::client::{produce_request, Client};
use shardlog::partition::FsyncPolicy;
use shardlog::protocol::*;
use shardlog::server::{Broker, BrokerConfig};

const RECORDS_PER_BATCH: usize = 16;
const RECORD_BYTES: usize = 1024;
const CLIENTS: usize = 4;
const RUN: Duration = Duration::from_secs(4);

fn free_port_pair() -> u16 {
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

fn batch() -> Bytes {
    let mut b = BatchBuilder::with_capacity(1, RECORDS_PER_BATCH * (RECORD_BYTES + 16));
    let v = vec![b'x'; RECORD_BYTES];
    for _ in 0..RECORDS_PER_BATCH {
        b.push(1_700_000_000_000, None, Some(&v), &[]);
    }
    b.finish()
}

struct Load {
    label: String,
    msgs_per_s: f64,
    mb_per_s: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `CLIENTS` threads, each on `addr`, each sending `make(i)` and waiting.
fn run_load(
    label: &str,
    addr: SocketAddr,
    bytes_per_req: usize,
    make: impl Fn(usize, u64) -> Request + Sync,
) -> Load {
    let start = Instant::now();
    let results: Vec<Vec<u64>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..CLIENTS)
            .map(|k| {
                let make = &make;
                s.spawn(move || {
                    let mut c = Client::connect(&addr.to_string()).unwrap();
                    let mut lat = Vec::with_capacity(100_000);
                    let mut i = 0u64;
                    while start.elapsed() < RUN {
                        let t = Instant::now();
                        match c.call(make(k, i)).unwrap() {
                            Response::Produce(ts) => {
                                let p = &ts[0].partitions[0];
                                assert!(p.error.is_none(), "{:?}", p.error);
                            }
                            Response::Fetch(ts) => {
                                let p = &ts[0].partitions[0];
                                assert!(p.error.is_none(), "{:?}", p.error);
                            }
                            _ => panic!("unexpected response"),
                        }
                        lat.push(t.elapsed().as_micros() as u64);
                        i += 1;
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut all: Vec<u64> = results.into_iter().flatten().collect();
    all.sort_unstable();
    let reqs = all.len() as f64;
    Load {
        label: label.to_owned(),
        msgs_per_s: reqs * RECORDS_PER_BATCH as f64 / secs,
        mb_per_s: reqs * bytes_per_req as f64 / secs / 1e6,
        p50_us: percentile(&all, 0.50),
        p99_us: percentile(&all, 0.99),
        p999_us: percentile(&all, 0.999),
    }
}

fn start_broker(shards: u16) -> (Broker, tempfile::TempDir, SocketAddr, u16) {
    let base = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("shards-")
        .tempdir_in(base)
        .unwrap();
    let port = free_port_pair();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cfg = BrokerConfig::new(dir.path().to_owned(), listen);
    cfg.fsync = FsyncPolicy::Never;
    cfg.shards = shards;
    cfg.shard_port_base = Some(port + 1);
    let b = Broker::start(cfg).expect("broker starts");
    (b, dir, listen, port + 1)
}

fn main() {
    // `cargo test --benches` runs bench targets too: stay quick there.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let payload = batch();
    let bytes = payload.len();
    let mut rows = Vec::new();
    for shards in [1u16, 2] {
        let (b, _dir, listen, base) = start_broker(shards);
        let mut admin = Client::connect(&listen.to_string()).unwrap();
        admin.create_topic("t", 2).unwrap();
        let owners: Vec<u16> = admin
            .describe_topic("t")
            .unwrap()
            .partitions
            .iter()
            .map(|p| p.owner_shard)
            .collect();
        // The partition owned by the last shard; "local" talks to its owner,
        // "cross" to shard 0 (another shard when there are two).
        let p = owners.iter().rposition(|&o| o == shards - 1).unwrap() as u32;
        let owner_addr: SocketAddr = format!("127.0.0.1:{}", base + shards - 1).parse().unwrap();
        let other_addr: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();
        let produce = |_: usize, _: u64| produce_request("t", p, payload.clone(), Acks::Leader);
        rows.push(run_load(
            &format!("{shards} shard(s), produce, owner's port"),
            owner_addr,
            bytes,
            produce,
        ));
        if shards > 1 {
            rows.push(run_load(
                &format!("{shards} shard(s), produce, forwarded"),
                other_addr,
                bytes,
                produce,
            ));
        }
        let fetch = |k: usize, i: u64| {
            // read the log from spread offsets: same work for both paths
            let offset =
                ((k as u64 * 7919 + i * 104_729) % 2_000) as i64 * RECORDS_PER_BATCH as i64;
            Request::Fetch(FetchRequest {
                read_committed: false,
                max_wait_ms: 0,
                min_bytes: 0,
                max_bytes: bytes as u32,
                topics: vec![FetchTopic {
                    name: "t".into(),
                    partitions: vec![FetchPartition {
                        partition: p,
                        fetch_offset: offset,
                        max_bytes: bytes as u32,
                    }],
                }],
            })
        };
        rows.push(run_load(
            &format!("{shards} shard(s), fetch, owner's port"),
            owner_addr,
            bytes,
            fetch,
        ));
        if shards > 1 {
            rows.push(run_load(
                &format!("{shards} shard(s), fetch, forwarded"),
                other_addr,
                bytes,
                fetch,
            ));
        }
        b.stop_flag().store(true, Ordering::Relaxed);
        b.join().unwrap();
    }
    println!(
        "{CLIENTS} clients, 1 request in flight each, {RECORDS_PER_BATCH} x {RECORD_BYTES} B per request, {}s each, fsync never, acks=leader",
        RUN.as_secs()
    );
    println!("| load | msgs/s | MB/s | p50 us | p99 us | p99.9 us |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} |",
            r.label, r.msgs_per_s, r.mb_per_s, r.p50_us, r.p99_us, r.p999_us
        );
    }
}
