//! Thread-per-core through the real binary: partitions spread over shards,
//! any connection reaching any partition, topic admin racing produces, and
//! restarts with another shard count.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use shardlog::batch::{self, BatchBuilder, Records};
use shardlog::client::{produce_request, Client};
use shardlog::protocol::*;

const T: Duration = Duration::from_secs(60);

fn batch_of(values: &[String]) -> Bytes {
    let mut b = BatchBuilder::new(1_700_000_000_000);
    for v in values {
        b.push(1_700_000_000_000, None, Some(v.as_bytes()), &[]);
    }
    b.finish()
}

/// Every value of a partition, from offset 0, in order.
fn read_partition(c: &mut Client, topic: &str, p: u32) -> Vec<String> {
    let mut out = Vec::new();
    let mut offset = 0;
    let end = c.list_offset(topic, p, LIST_LATEST).unwrap();
    while offset < end {
        let r = c
            .fetch(
                topic,
                &[FetchPartition {
                    partition: p,
                    fetch_offset: offset,
                    max_bytes: 1 << 20,
                }],
                1 << 20,
            )
            .unwrap();
        assert_eq!(r[0].error, None, "partition {p}");
        for b in batch::split_batches(&r[0].records.to_bytes()).unwrap() {
            for rec in Records::new(b).unwrap() {
                let rec = rec.unwrap();
                if rec.offset >= offset {
                    out.push(String::from_utf8(rec.value.unwrap().to_vec()).unwrap());
                    offset = rec.offset + 1;
                }
            }
        }
    }
    out
}

/// Owners per partition, as `topic describe` reports them.
fn owners(c: &mut Client, topic: &str) -> Vec<u16> {
    c.describe_topic(topic)
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.owner_shard)
        .collect()
}

/// Many connections (the kernel spreads them over the shards' listeners),
/// each producing to every partition; then every partition read back through
/// yet other connections: all values there, each connection's in its order.
fn produce_everywhere(
    b: &Broker,
    topic: &str,
    partitions: u32,
    conns: usize,
    rounds: usize,
) -> BTreeMap<u32, Vec<String>> {
    let mut want: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut clients: Vec<Client> = (0..conns)
        .map(|_| Client::connect(&b.broker_arg()).unwrap())
        .collect();
    for r in 0..rounds {
        for (k, c) in clients.iter_mut().enumerate() {
            // one request naming every partition: split over the shards
            let ids: Vec<(u32, u32)> = (0..partitions)
                .map(|p| {
                    let v = vec![format!("c{k}-r{r}-p{p}-a"), format!("c{k}-r{r}-p{p}-b")];
                    want.entry(p).or_default().extend(v.iter().cloned());
                    (
                        p,
                        c.send(produce_request(topic, p, batch_of(&v), Acks::Durable))
                            .unwrap(),
                    )
                })
                .collect();
            for (p, id) in ids {
                c.recv_produce(id)
                    .unwrap_or_else(|e| panic!("produce to {p}: {e}"));
            }
        }
    }
    want
}

fn check(b: &Broker, topic: &str, want: &BTreeMap<u32, Vec<String>>) {
    for (i, (&p, values)) in want.iter().enumerate() {
        // a fresh connection per partition: some land on a non-owner shard
        let _ = i;
        let mut c = Client::connect(&b.broker_arg()).unwrap();
        let got = read_partition(&mut c, topic, p);
        assert_eq!(got.len(), values.len(), "partition {p}");
        let mut sorted_got = got.clone();
        let mut sorted_want = values.clone();
        sorted_got.sort();
        sorted_want.sort();
        assert!(
            sorted_got == sorted_want,
            "partition {p} holds other values"
        );
        // per connection, the order of sending
        for k in 0..16 {
            let prefix = format!("c{k}-");
            let mine: Vec<&String> = got.iter().filter(|v| v.starts_with(&prefix)).collect();
            let sent: Vec<&String> = values.iter().filter(|v| v.starts_with(&prefix)).collect();
            assert_eq!(mine, sent, "partition {p}: order of connection {k}");
        }
    }
}

#[test]
fn partitions_spread_over_two_shards_serve_through_any_connection() {
    let dir = data_dir();
    let b = Broker::start(dir.path(), &["--shards", "2"]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("spread", 6).unwrap();
    let o = owners(&mut c, "spread");
    assert_eq!(o.iter().filter(|&&s| s == 0).count(), 3, "{o:?}");
    assert_eq!(o.iter().filter(|&&s| s == 1).count(), 3, "{o:?}");
    let want = produce_everywhere(&b, "spread", 6, 8, 5);
    check(&b, "spread", &want);
    // Metadata names every shard as a node, and each partition's owner.
    let m = c.metadata(Some(vec!["spread".into()])).unwrap();
    assert_eq!(m.nodes.len(), 2);
    assert_eq!(
        m.topics[0]
            .partitions
            .iter()
            .map(|p| p.owner_shard)
            .collect::<Vec<_>>(),
        o
    );
    // The log says which CPU each shard is pinned to.
    let log = b.log();
    assert!(
        log.contains("shard pinned") && log.contains("cpu="),
        "{log}"
    );
    // The CLI reads a topic spread over shards, all partitions at once.
    let out = run(
        &[
            "consume",
            "spread",
            "--idle-timeout-ms",
            "500",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    let lines = out.stdout.iter().filter(|&&c| c == b'\n').count();
    assert_eq!(lines, want.values().map(Vec::len).sum::<usize>());
}

#[test]
fn more_shards_than_cores_work_unpinned_with_a_warning() {
    let dir = data_dir();
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let n = (cpus + 1).to_string();
    let b = Broker::start(dir.path(), &["--shards", &n]);
    assert!(b.log().contains("more shards than CPUs"), "{}", b.log());
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("many", (cpus + 1) as u32).unwrap();
    let o = owners(&mut c, "many");
    let mut sorted = o.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..(cpus + 1) as u16).collect::<Vec<_>>(),
        "one partition per shard"
    );
    let want = produce_everywhere(&b, "many", (cpus + 1) as u32, 4, 3);
    check(&b, "many", &want);
}

#[test]
fn a_restart_with_another_shard_count_keeps_every_message() {
    let dir = data_dir();
    let mut b = Broker::start(dir.path(), &["--shards", "2"]);
    let mut c = Client::connect(&b.broker_arg()).unwrap();
    c.create_topic("keep", 5).unwrap();
    let mut want = produce_everywhere(&b, "keep", 5, 3, 3);
    drop(c);
    assert!(b.terminate(T).success());

    for shards in ["3", "1", "2"] {
        let b2 = Broker::start(dir.path(), &["--shards", shards]);
        let log = b2.log();
        assert!(
            log.contains("partitions reassigned"),
            "{shards} shards: {log}"
        );
        let mut c = Client::connect(&b2.broker_arg()).unwrap();
        let o = owners(&mut c, "keep");
        let n: u16 = shards.parse().unwrap();
        assert!(o.iter().all(|&s| s < n), "{o:?}");
        check(&b2, "keep", &want);
        // and the log takes more, where it left off
        let more = produce_everywhere(&b2, "keep", 5, 2, 1);
        for (p, v) in more {
            want.entry(p).or_default().extend(v);
        }
        check(&b2, "keep", &want);
        drop(c);
        let mut b2 = b2;
        assert!(b2.terminate(T).success());
    }
    let _ = &mut b;
}

#[test]
fn topic_create_and_delete_racing_produces_never_serve_a_deleted_topic() {
    let dir = data_dir();
    let b = Broker::start(dir.path(), &["--shards", "2"]);
    let addr = b.broker_arg();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Producers hammer the topic through several connections while it is
    // created and deleted; they may see UnknownTopic, nothing else.
    let producers: Vec<_> = (0..3)
        .map(|k| {
            let (addr, stop) = (addr.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(&addr).unwrap();
                let mut ok = 0u64;
                let start = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && start.elapsed() < T {
                    let p = (ok % 4) as u32;
                    match c.produce("race", p, batch_of(&[format!("k{k}")]), Acks::Durable) {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            let code = e.code();
                            assert!(
                                matches!(
                                    code,
                                    Some(ErrorCode::UnknownTopic)
                                        | Some(ErrorCode::UnknownPartition)
                                        | Some(ErrorCode::ShuttingDown)
                                ),
                                "producer {k}: {e}"
                            );
                        }
                    }
                }
                ok
            })
        })
        .collect();
    let mut admin = Client::connect(&addr).unwrap();
    for round in 0..8 {
        admin.create_topic("race", 4).unwrap();
        // Created means created on every shard: a fresh connection (either
        // shard) can produce to every partition at once.
        for p in 0..4 {
            let mut c = Client::connect(&addr).unwrap();
            c.produce(
                "race",
                p,
                batch_of(&[format!("round{round}")]),
                Acks::Durable,
            )
            .unwrap_or_else(|e| panic!("round {round}, partition {p} after create: {e}"));
        }
        std::thread::sleep(Duration::from_millis(20));
        admin.delete_topic("race").unwrap();
        // Deleted means gone on every shard.
        for p in 0..4 {
            let mut c = Client::connect(&addr).unwrap();
            let e = c
                .produce("race", p, batch_of(&["late".to_owned()]), Acks::Durable)
                .unwrap_err();
            assert_eq!(
                e.code(),
                Some(ErrorCode::UnknownTopic),
                "round {round}: {e}"
            );
        }
        assert!(!dir.path().join("topics").join("race").exists());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0, "producers never got through");
    // The broker is healthy afterwards.
    admin.create_topic("race", 2).unwrap();
    assert_eq!(
        admin
            .produce("race", 1, batch_of(&["end".to_owned()]), Acks::Durable)
            .unwrap(),
        0
    );
}

/// A port p with p and p + 1 free (for two shard ports).
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < 65_000 && std::net::TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

#[test]
fn a_shard_aware_client_and_a_plain_one_read_the_same_data() {
    use shardlog::client::RoutedClient;
    let dir = data_dir();
    let base = free_port_pair();
    let b = Broker::start(
        dir.path(),
        &["--shards", "2", "--shard-port-base", &base.to_string()],
    );
    let mut plain = Client::connect(&b.broker_arg()).unwrap();
    plain.create_topic("aware", 4).unwrap();
    // Metadata advertises each shard at its own port.
    let m = plain.metadata(None).unwrap();
    let mut ports: Vec<u16> = m.nodes.iter().map(|n| n.port).collect();
    ports.sort();
    assert_eq!(ports, vec![base, base + 1]);

    let mut routed = RoutedClient::connect(&b.broker_arg()).unwrap();
    assert_eq!(routed.topic("aware").unwrap(), 4);
    let mut want: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for i in 0..40u32 {
        let p = i % 4;
        let v = vec![format!("routed-{i}")];
        routed
            .produce("aware", p, batch_of(&v), Acks::Durable)
            .unwrap();
        want.entry(p).or_default().extend(v);
    }
    // It connected straight to both shards' own ports.
    assert_eq!(routed.connected_shards(), vec![0, 1]);
    // A plain client (public port, any shard) reads the same, in order.
    for (&p, values) in &want {
        assert_eq!(
            &read_partition(&mut plain, "aware", p),
            values,
            "partition {p}"
        );
    }
    // And the routed client reads from the owners.
    for (&p, values) in &want {
        let r = routed
            .fetch(
                "aware",
                FetchPartition {
                    partition: p,
                    fetch_offset: 0,
                    max_bytes: 1 << 20,
                },
                0,
                0,
            )
            .unwrap();
        let got: Vec<String> = batch::split_batches(&r.records.to_bytes())
            .unwrap()
            .into_iter()
            .flat_map(|b| {
                Records::new(b)
                    .unwrap()
                    .map(|r| String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap())
            })
            .collect();
        assert_eq!(&got, values);
    }
    // The CLI (shard-aware) consumes it all.
    let out = run(
        &[
            "consume",
            "aware",
            "--idle-timeout-ms",
            "300",
            "--broker",
            &b.broker_arg(),
        ],
        b"",
        T,
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout.iter().filter(|&&c| c == b'\n').count(), 40);

    // Without per-shard ports the routed client falls back to the public one.
    let dir2 = data_dir();
    let b2 = Broker::start(dir2.path(), &["--shards", "2"]);
    Client::connect(&b2.broker_arg())
        .unwrap()
        .create_topic("aware", 2)
        .unwrap();
    let mut r2 = RoutedClient::connect(&b2.broker_arg()).unwrap();
    r2.topic("aware").unwrap();
    assert_eq!(
        r2.produce("aware", 1, batch_of(&["x".to_owned()]), Acks::Durable)
            .unwrap(),
        0
    );
    assert!(r2.connected_shards().is_empty());
}

#[test]
fn a_shard_over_its_memory_budget_slows_the_shards_forwarding_to_it() {
    let dir = data_dir();
    let base = free_port_pair();
    let b = Broker::start(
        dir.path(),
        &[
            "--shards",
            "2",
            "--shard-port-base",
            &base.to_string(),
            "--memory-budget",
            "1048576",
            "--max-batch-bytes",
            "262144",
        ],
    );
    let mut admin = Client::connect(&b.broker_arg()).unwrap();
    admin.create_topic("bp", 2).unwrap();
    let o = owners(&mut admin, "bp");
    let p = o.iter().position(|&s| s == 1).unwrap() as u32;
    // Everything through shard 0's own port to shard 1's partition: 20 MB,
    // far over shard 1's 512 KiB of unwritten bytes, acks=none, 64 in flight.
    let mut c = Client::connect(&format!("127.0.0.1:{base}")).unwrap();
    let big = |i: usize| batch_of(&[format!("{i:06}{}", "z".repeat(200_000))]);
    let mut inflight = std::collections::VecDeque::new();
    for i in 0..100 {
        if inflight.len() == 64 {
            c.recv_produce(inflight.pop_front().unwrap()).unwrap();
        }
        inflight.push_back(
            c.send(produce_request("bp", p, big(i), Acks::None))
                .unwrap(),
        );
    }
    while let Some(id) = inflight.pop_front() {
        c.recv_produce(id).unwrap();
    }
    // Nothing lost, in order.
    let start = Instant::now();
    while admin.list_offset("bp", p, LIST_LATEST).unwrap() < 100 {
        assert!(start.elapsed() < T, "not all written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = read_partition(&mut admin, "bp", p);
    assert_eq!(got.len(), 100);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, v)| v.starts_with(&format!("{i:06}"))));
}
