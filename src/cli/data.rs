//! `shardlog produce` and `shardlog consume`: lines of stdin in, values
//! out, one per line.

use std::io::{BufRead, BufWriter};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};

use shardlog::batch::{self, BatchBuilder};
use shardlog::client::{self, RoutedClient};
use shardlog::protocol::{Acks, FetchPartition, LIST_EARLIEST, LIST_LATEST};

use super::common::{flush_or_quit, write_or_quit, BrokerArg};

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum AcksArg {
    None,
    Leader,
    Durable,
}

#[derive(Args)]
pub(super) struct ProduceArgs {
    topic: String,
    /// Send every line to this partition (default: by key, else spread evenly).
    #[arg(long)]
    partition: Option<u32>,
    /// Split each line at the first SEP into key and value; the key picks the
    /// partition as Kafka's default partitioner does.
    #[arg(long)]
    key_separator: Option<String>,
    #[arg(long, default_value = "durable")]
    acks: AcksArg,
    /// Close a batch at this many bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    batch_bytes: usize,
    /// Produce requests in flight at once.
    #[arg(long, default_value_t = 16)]
    max_inflight: usize,
    #[command(flatten)]
    broker: BrokerArg,
}

#[derive(Args)]
pub(super) struct ConsumeArgs {
    topic: String,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<u32>,
    /// earliest, latest, or an offset.
    #[arg(long, default_value = "earliest")]
    from: String,
    /// Exit after this many messages.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when nothing new arrived for this many milliseconds.
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// Consume as a member of this consumer group: the group's members
    /// share the topic's partitions, and what is printed is committed.
    #[arg(long)]
    group: Option<String>,
    /// With --group: how long the broker waits for a heartbeat before it
    /// gives this member's partitions to the others.
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u32,
    /// With --group, for the group's first member: range, roundrobin or sticky.
    #[arg(long)]
    strategy: Option<String>,
    /// read_uncommitted (every record but transaction markers) or
    /// read_committed (committed transactions only, up to the last stable
    /// offset), as Kafka's `isolation.level`.
    #[arg(long, default_value = "read_uncommitted", value_parser = ["read_uncommitted", "read_committed"])]
    isolation: String,
    #[command(flatten)]
    broker: BrokerArg,
}

pub(super) fn produce(a: ProduceArgs) -> Result<()> {
    // Each partition's batches go straight to the shard that owns it.
    let mut c = RoutedClient::connect(&a.broker.broker)?;
    let partitions = c.topic(&a.topic)?;
    if let Some(p) = a.partition {
        if p >= partitions {
            bail!(
                "topic '{}' has no partition {p} (it has {partitions})",
                a.topic
            );
        }
    }
    if a.key_separator.as_deref() == Some("") {
        bail!("--key-separator must not be empty");
    }
    let acks = match a.acks {
        AcksArg::None => Acks::None,
        AcksArg::Leader => Acks::Leader,
        AcksArg::Durable => Acks::Durable,
    };
    let mut builders: Vec<Option<BatchBuilder>> = (0..partitions).map(|_| None).collect();
    let mut inflight = std::collections::VecDeque::new();
    let send = |c: &mut RoutedClient,
                p: u32,
                b: BatchBuilder,
                inflight: &mut std::collections::VecDeque<client::Ticket>|
     -> Result<()> {
        while inflight.len() >= a.max_inflight.max(1) {
            let t = inflight.pop_front().expect("non-empty");
            c.recv_produce(t)?;
        }
        let req = client::produce_request(&a.topic, p, b.finish(), acks);
        inflight.push_back(c.send_for(&a.topic, p, req)?);
        Ok(())
    };
    let stdin = std::io::stdin();
    let mut input = std::io::BufReader::with_capacity(1 << 20, stdin.lock());
    let mut line = Vec::new();
    let mut next_rr = 0u32;
    let mut line_no = 0u64;
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        line_no += 1;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let (key, value) = match &a.key_separator {
            None => (None, &line[..]),
            Some(sep) => match find(&line, sep.as_bytes()) {
                Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
                None => bail!("line {line_no} has no key separator {sep:?}"),
            },
        };
        let p = match (a.partition, key) {
            (Some(p), _) => p,
            (None, Some(k)) => client::partition_for_key(k, partitions),
            (None, None) => {
                next_rr = (next_rr + 1) % partitions;
                next_rr
            }
        };
        let ts = shardlog::rt::now_ms();
        let b = builders[p as usize]
            .get_or_insert_with(|| BatchBuilder::with_capacity(ts, a.batch_bytes + 4096));
        b.push(ts, key, Some(value), &[]);
        if b.size_bytes() >= a.batch_bytes {
            let full = builders[p as usize].take().expect("just pushed");
            send(&mut c, p, full, &mut inflight)?;
        }
    }
    for (p, b) in builders.iter_mut().enumerate() {
        if let Some(b) = b.take() {
            send(&mut c, p as u32, b, &mut inflight)?;
        }
    }
    while let Some(t) = inflight.pop_front() {
        c.recv_produce(t)?;
    }
    Ok(())
}

/// One fetch per owner shard, each on that shard's own connection, sent
/// together and then collected. With several owners each waits less, so one
/// idle shard does not hold back another's data for long.
fn routed_fetch(
    rc: &mut RoutedClient,
    topic: &str,
    parts: &[FetchPartition],
    wait: u32,
    read_committed: bool,
) -> Result<Vec<shardlog::protocol::FetchPartitionResult>> {
    let mut groups: std::collections::BTreeMap<Option<u16>, Vec<FetchPartition>> =
        Default::default();
    for p in parts {
        groups
            .entry(rc.owner(topic, p.partition))
            .or_default()
            .push(*p);
    }
    let wait = if groups.len() > 1 {
        wait.min(100)
    } else {
        wait
    };
    let mut tickets = Vec::with_capacity(groups.len());
    for ps in groups.into_values() {
        let first = ps[0].partition;
        let req = shardlog::protocol::Request::Fetch(shardlog::protocol::FetchRequest {
            read_committed,
            max_wait_ms: wait,
            min_bytes: 1,
            max_bytes: 8 << 20,
            topics: vec![shardlog::protocol::FetchTopic {
                name: topic.to_owned(),
                partitions: ps,
            }],
        });
        tickets.push(rc.send_for(topic, first, req)?);
    }
    let mut out = Vec::new();
    for t in tickets {
        match rc.recv(t)? {
            shardlog::protocol::Response::Fetch(ts) => {
                out.extend(ts.into_iter().flat_map(|t| t.partitions))
            }
            _ => bail!("the broker answered a fetch with something else"),
        }
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub(super) fn consume(a: ConsumeArgs) -> Result<()> {
    if let Some(group) = &a.group {
        if a.partition.is_some() {
            bail!("--partition and --group exclude each other: the group assigns partitions");
        }
        return super::group::consume(super::group::GroupConsume {
            broker: &a.broker.broker,
            topic: &a.topic,
            group,
            from: &a.from,
            max_messages: a.max_messages,
            idle_timeout_ms: a.idle_timeout_ms,
            session_timeout_ms: a.session_timeout_ms,
            strategy: a.strategy.clone(),
            read_committed: a.isolation == "read_committed",
        });
    }
    let read_committed = a.isolation == "read_committed";
    let mut rc = RoutedClient::connect(&a.broker.broker)?;
    let count = rc.topic(&a.topic)?;
    let parts: Vec<u32> = match a.partition {
        Some(p) if p >= count => bail!("topic '{}' has no partition {p} (it has {count})", a.topic),
        Some(p) => vec![p],
        None => (0..count).collect(),
    };
    let mut next: Vec<i64> = Vec::with_capacity(parts.len());
    for &p in &parts {
        next.push(match a.from.as_str() {
            "earliest" => rc.list_offset(&a.topic, p, LIST_EARLIEST)?,
            "latest" => rc.list_offset(&a.topic, p, LIST_LATEST)?,
            n => n.parse::<i64>().ok().filter(|&o| o >= 0).ok_or_else(|| {
                anyhow!("--from must be earliest, latest or a non-negative offset, not {n:?}")
            })?,
        });
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut printed = 0u64;
    let mut last_data = Instant::now();
    let limit = a.max_messages.unwrap_or(u64::MAX);
    while printed < limit {
        let req: Vec<FetchPartition> = parts
            .iter()
            .zip(&next)
            .map(|(&p, &o)| FetchPartition {
                partition: p,
                fetch_offset: o,
                max_bytes: 1 << 20,
            })
            .collect();
        // Long polling: the broker answers as soon as there is data, or
        // after the wait; no client-side sleeping or busy polling.
        let wait = a
            .idle_timeout_ms
            .map_or(1000, |t| {
                t.saturating_sub(last_data.elapsed().as_millis() as u64)
            })
            .clamp(1, 1000) as u32;
        let results = routed_fetch(&mut rc, &a.topic, &req, wait, read_committed)?;
        let mut got_any = false;
        for r in results {
            if let Some(e) = r.error {
                bail!("partition {}: {}", r.partition, e.message);
            }
            let i = parts
                .iter()
                .position(|&p| p == r.partition)
                .ok_or_else(|| anyhow!("answer for unasked partition"))?;
            let mut filter = batch::TxnFilter::new(r.aborted.clone());
            for b in batch::split_batches(&r.records.to_bytes())
                .with_context(|| format!("partition {}", r.partition))?
            {
                let h = batch::BatchHeader::parse(&b)
                    .with_context(|| format!("partition {}", r.partition))?;
                if !filter.keep(&h) {
                    // A transaction marker, or an aborted transaction's batch.
                    if printed < limit {
                        next[i] = next[i].max(h.last_offset() + 1);
                    }
                    continue;
                }
                // Batches from Kafka clients may be compressed: shown decompressed.
                let records = batch::decompress(b)
                    .and_then(batch::Records::new)
                    .with_context(|| format!("partition {}", r.partition))?;
                let last = records.header().last_offset();
                for rec in records {
                    let rec = rec.with_context(|| format!("partition {}", r.partition))?;
                    if rec.offset < next[i] || printed >= limit {
                        continue;
                    }
                    if let Some(v) = &rec.value {
                        write_or_quit(&mut out, v)?;
                    }
                    write_or_quit(&mut out, b"\n")?;
                    printed += 1;
                    got_any = true;
                    next[i] = rec.offset + 1;
                }
                if printed < limit {
                    next[i] = next[i].max(last + 1);
                }
            }
        }
        flush_or_quit(&mut out)?;
        if got_any {
            last_data = Instant::now();
        } else {
            if a.idle_timeout_ms
                .is_some_and(|t| last_data.elapsed() >= Duration::from_millis(t))
            {
                break;
            }
        }
    }
    flush_or_quit(&mut out)
}
