//! The `shardlog` command line: `serve`, `topic`, `produce`, `consume`.
//!
//! The edge of the program: the only place with `anyhow` and process exit.
//! Every command exits 0 on success and non-zero with one line on stderr.

use std::io::{BufRead, BufWriter, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

use clap::{Args, Parser, Subcommand, ValueEnum};

use shardlog::batch::{self, BatchBuilder};
use shardlog::client::{self, Client, RoutedClient};
use shardlog::config::{Resolved, ServeArgs};
use shardlog::protocol::{Acks, FetchPartition, LIST_EARLIEST, LIST_LATEST};
use shardlog::server::Broker;

mod group_cli;

#[derive(Parser)]
#[command(
    name = "shardlog",
    version,
    about = "A Kafka-style log broker for one Linux host, thread-per-core on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct BrokerArg {
    /// Broker address (host:port).
    #[arg(long, default_value = "127.0.0.1:9400", global = true)]
    broker: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker.
    Serve(Box<ServeArgs>),
    /// Create and list topics.
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// Produce one message per line of stdin.
    Produce(ProduceArgs),
    /// Print one message value per line.
    Consume(ConsumeArgs),
    /// Consumer groups: list, describe (members, offsets, lag), reset offsets.
    Group {
        #[command(subcommand)]
        command: group_cli::GroupCommand,
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// Live per-shard view of a broker, from its /metrics.
    Top(shardlog::top::TopArgs),
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long)]
        partitions: u32,
        /// A topic setting overriding the broker default, KEY=VALUE
        /// (segment.bytes, segment.ms, retention.bytes, retention.ms); repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition counts.
    List {
        /// One JSON object per run: {"topics":[{"name":..,"partitions":..}]}.
        #[arg(long)]
        json: bool,
    },
    /// Show each partition's owner shard, earliest and latest offset, bytes
    /// on disk and segments, and the topic's own settings.
    Describe {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a topic and its data.
    Delete { name: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum AcksArg {
    None,
    Leader,
    Durable,
}

#[derive(Args)]
struct ProduceArgs {
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
struct ConsumeArgs {
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
    #[command(flatten)]
    broker: BrokerArg,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            // One line, as for every other failure.
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            std::process::exit(2);
        }
    };
    let result = match cli.command {
        Command::Serve(a) => serve(*a),
        Command::Topic { command, broker } => topic(command, &broker.broker),
        Command::Produce(a) => produce(a),
        Command::Consume(a) => consume(a),
        Command::Group { command, broker } => group_cli::run(command, &broker.broker),
        Command::Top(a) => shardlog::top::run(&a).map_err(|e| anyhow!(e)),
    };
    if let Err(e) = result {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn serve(a: ServeArgs) -> Result<()> {
    let resolved = Resolved::resolve(a.config.as_deref(), std::env::vars(), &a.flags())?;
    if a.print_config {
        print!("{}", resolved.to_toml());
        return Ok(());
    }
    let settings = resolved.settings()?;
    let filter = resolved.log_filter(std::env::var("RUST_LOG").ok());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colors only on a terminal: log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let shards = settings
        .shards
        .unwrap_or_else(|| shardlog::rt::allowed_cpus().len().clamp(1, 256) as u16);
    let mut config = settings.broker_config(shards)?;
    config.hold_recovery_until = a.hold_recovery_until.clone();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create {}", settings.data_dir.display()))?;
    // Block SIGTERM/SIGINT before any thread starts, so every thread inherits
    // the mask and only the waiter thread below receives them.
    let signals = block_stop_signals()?;
    // The HTTP endpoint comes up first: /healthz answers 503 while the shards
    // recover their logs.
    let http = match settings.http_listen {
        None => None,
        Some(addr) => Some(
            shardlog::http::serve(addr, config.metrics.clone())
                .with_context(|| format!("cannot listen on {addr} (http-listen)"))?,
        ),
    };
    // The signal thread runs from the start: a SIGTERM during recovery of a
    // large log stops the broker too.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let sig = wait_for_signal(&signals);
            tracing::info!(signal = sig, "stop requested");
            stop2.store(true, Ordering::Relaxed);
        })?;
    let shard_ports = config.shard_port_base.map_or("off".to_owned(), |b| {
        format!("{b}..={}", b as u32 + shards as u32 - 1)
    });
    let kafka = config
        .kafka_listen
        .map_or("off".to_owned(), |a| a.to_string());
    let kafka_ports = config.kafka_port_base.map_or("off".to_owned(), |b| {
        format!("{b}..={}", b as u32 + shards as u32 - 1)
    });
    let fsync = format!("{:?}", config.fsync);
    let cpus = format!("{:?}", shardlog::rt::allowed_cpus());
    let metrics_on = config.metrics.enabled();
    let broker = Broker::start_with_stop(config, stop)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        shards,
        cpus = %cpus,
        data_dir = %settings.data_dir.display(),
        fsync = %fsync,
        listen = %broker.local_addr,
        shard_ports = %shard_ports,
        kafka = %kafka,
        kafka_ports = %kafka_ports,
        http = %http.map_or("off".to_owned(), |a| a.to_string()),
        metrics = metrics_on,
        "shardlog listening"
    );
    broker.join().context("broker stopped with an error")?;
    tracing::info!("shardlog stopped cleanly");
    Ok(())
}

fn block_stop_signals() -> Result<libc::sigset_t> {
    // SAFETY: plain libc calls on a sigset we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!("pthread_sigmask failed: {rc}");
        }
        Ok(set)
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: sigwait on a set of blocked signals.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn topic(cmd: TopicCommand, broker: &str) -> Result<()> {
    let mut c = Client::connect(broker)?;
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            configs,
        } => {
            c.create_topic_with(&name, partitions, &configs)?;
            println!("created topic {name} with {partitions} partitions");
        }
        TopicCommand::List { json } => {
            let m = c.metadata(None)?;
            if json {
                let items: Vec<String> = m
                    .topics
                    .iter()
                    .map(|t| {
                        format!(
                            "{{\"name\":{},\"partitions\":{}}}",
                            json_str(&t.name),
                            t.partitions.len()
                        )
                    })
                    .collect();
                println!("{{\"topics\":[{}]}}", items.join(","));
            } else {
                for t in m.topics {
                    println!("{}\t{}", t.name, t.partitions.len());
                }
            }
        }
        TopicCommand::Describe { name, json } => {
            let t = c.describe_topic(&name)?;
            if json {
                println!("{}", describe_json(&t));
            } else {
                let configs: Vec<String> =
                    t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "topic {}  partitions {}  configs {}",
                    t.name,
                    t.partitions.len(),
                    if configs.is_empty() {
                        "(broker defaults)".to_owned()
                    } else {
                        configs.join(",")
                    }
                );
                println!("partition\towner_shard\tearliest\tlatest\tbytes\tsegments");
                for p in &t.partitions {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        p.partition,
                        p.owner_shard,
                        p.log_start_offset,
                        p.high_watermark,
                        p.size_bytes,
                        p.segments
                    );
                }
            }
        }
        TopicCommand::Delete { name } => {
            c.delete_topic(&name)?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

/// A JSON string literal (names and settings are ASCII, but escape anyway).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn describe_json(t: &shardlog::protocol::TopicDescription) -> String {
    let configs: Vec<String> = t
        .configs
        .iter()
        .map(|(k, v)| format!("{}:{}", json_str(k), json_str(v)))
        .collect();
    let parts: Vec<String> = t
        .partitions
        .iter()
        .map(|p| {
            format!(
                "{{\"partition\":{},\"owner_shard\":{},\"earliest_offset\":{},\"latest_offset\":{},\"size_bytes\":{},\"segments\":{}}}",
                p.partition, p.owner_shard, p.log_start_offset, p.high_watermark, p.size_bytes, p.segments
            )
        })
        .collect();
    format!(
        "{{\"name\":{},\"configs\":{{{}}},\"partitions\":[{}]}}",
        json_str(&t.name),
        configs.join(","),
        parts.join(",")
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn produce(a: ProduceArgs) -> Result<()> {
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
        let ts = now_ms();
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

fn consume(a: ConsumeArgs) -> Result<()> {
    if let Some(group) = &a.group {
        if a.partition.is_some() {
            bail!("--partition and --group exclude each other: the group assigns partitions");
        }
        return group_cli::consume(group_cli::GroupConsume {
            broker: &a.broker.broker,
            topic: &a.topic,
            group,
            from: &a.from,
            max_messages: a.max_messages,
            idle_timeout_ms: a.idle_timeout_ms,
            session_timeout_ms: a.session_timeout_ms,
            strategy: a.strategy.clone(),
        });
    }
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
        let results = routed_fetch(&mut rc, &a.topic, &req, wait)?;
        let mut got_any = false;
        for r in results {
            if let Some(e) = r.error {
                bail!("partition {}: {}", r.partition, e.message);
            }
            let i = parts
                .iter()
                .position(|&p| p == r.partition)
                .ok_or_else(|| anyhow!("answer for unasked partition"))?;
            for b in batch::split_batches(&r.records)
                .with_context(|| format!("partition {}", r.partition))?
            {
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

/// A closed stdout (`| head`) ends the consumer quietly, as with `cat`.
fn write_or_quit(out: &mut impl Write, b: &[u8]) -> Result<()> {
    match out.write_all(b) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => Ok(r?),
    }
}

fn flush_or_quit(out: &mut impl Write) -> Result<()> {
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => Ok(r?),
    }
}

fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}
