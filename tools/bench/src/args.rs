//! Command-line arguments and their validation into `Params`, the one value
//! the rest of the tool reads.
//!
//! Owns: flag names, defaults, limits, and every "this combination makes no
//! sense" check, each failing with one readable line.
//!
//! Must never: touch the network or the disk (pure, tested below).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use shardlog::partition::FsyncPolicy;
use shardlog::protocol::Acks;

/// Bytes a message needs to carry its send time (u64 nanoseconds).
pub const STAMP_BYTES: usize = 8;
/// Limits: a typo should fail fast rather than exhaust the machine.
pub const MAX_ACTORS: usize = 1024;
pub const MAX_PARTITIONS: u32 = 10_000;
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
pub const MAX_BATCH_MESSAGES: usize = 1 << 20;
/// One produce request carries one batch; keep it under the broker's
/// default `max_batch_bytes` (16 MiB).
pub const MAX_BATCH_BYTES: usize = 15 << 20;
pub const MAX_IN_FLIGHT: usize = 1024;
pub const MAX_SHARDS: u16 = 256;
pub const DEFAULT_BATCH_MESSAGES: usize = 100;
/// Closed-loop runs' batch size when none is asked for.
pub const DEFAULT_BATCH_BYTES: u64 = 256 << 10;
pub const MAX_LINGER_MS: u64 = 60_000;
pub const MAX_GROUP_NAME_BYTES: usize = 255;
/// RecordBatch v2 header.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Upper bound of what a record adds to its value: varint lengths and
/// deltas, attributes, a key of up to 20 bytes, the header count.
pub const RECORD_FRAMING_BYTES: usize = 48;

/// One shard per CPU the process may use, capped at `MAX_SHARDS`.
fn default_shards() -> u16 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_SHARDS as usize) as u16)
}

#[derive(Debug, Parser)]
#[command(
    name = "shardlog-bench",
    version,
    about = "Load generator and benchmark for shardlog",
    long_about = "Produces and/or consumes against a shardlog broker (one given with --broker, \
                  or one started in-process with --spawn-broker) and reports throughput and \
                  latency percentiles (produce acknowledge, end to end).\n\nExit status: 0 done, 1 failed, 2 bad arguments, 130/143 stopped by SIGINT/SIGTERM (the partial report is still printed and a spawned broker's directory removed)."
)]
pub struct Args {
    /// Broker to load (host:port of its public listener).
    #[arg(long, value_name = "ADDR")]
    pub broker: Option<String>,
    /// Start a broker in this process on a temporary data directory; it is
    /// stopped and the directory removed at the end.
    #[arg(long)]
    pub spawn_broker: bool,
    /// Shards of the spawned broker (default: one per CPU this process may
    /// use, as `shardlog serve`).
    #[arg(long, value_name = "N")]
    pub shards: Option<u16>,
    /// fsync policy of the spawned broker: always, never or interval:MS.
    #[arg(long, default_value = "always", value_name = "POLICY")]
    pub fsync: String,
    /// Where the spawned broker's temporary directory goes (default: the OS
    /// temp dir, or ./target/bench-tmp when that is tmpfs: O_DIRECT needs a
    /// real disk).
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,
    /// Metrics collection in the spawned broker: on or off (off only to
    /// measure what collecting them costs).
    #[arg(long, default_value = "on", value_name = "on|off", value_parser = ["on", "off"])]
    pub broker_metrics: String,
    /// Where a separate broker (--broker) serves /metrics (its
    /// --http-listen), to read the CPU it used: the report gives its
    /// CPU-seconds per GB. Default: the broker's host, port 9480; off: none.
    #[arg(long, value_name = "IP:PORT|off")]
    pub broker_http: Option<String>,
    /// Load any Kafka-compatible broker (Apache Kafka, Redpanda, shardlog's
    /// --kafka-listen) over the Kafka protocol instead: its bootstrap
    /// address. One workload against Kafka and shardlog in one sitting.
    #[arg(long, value_name = "ADDR")]
    pub kafka: Option<String>,
    /// Read the broker's CPU time from /proc/PID (a broker on this host,
    /// of any kind: Kafka's JVM too) instead of its /metrics.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,

    /// Producer threads (each with its own connections). Default: one per
    /// shard of a spawned broker, else one per CPU this process may use.
    #[arg(long, value_name = "N")]
    pub producers: Option<usize>,
    /// Consumer threads; partitions are dealt out among them. Default: as
    /// producers, at most one per partition.
    #[arg(long, value_name = "N")]
    pub consumers: Option<usize>,
    /// Topic to use; created with --partitions if it does not exist.
    #[arg(long, default_value = "bench", value_name = "NAME")]
    pub topic: String,
    #[arg(long, default_value_t = 4, value_name = "P")]
    pub partitions: u32,
    /// Value bytes per message, or a range MIN..MAX: each message then gets
    /// a uniformly random size in it.
    #[arg(long, default_value = "1024", value_name = "BYTES|MIN..MAX")]
    pub message_size: String,
    /// Message keys: none, random (8 random bytes) or sequential (a run-wide
    /// counter in decimal). With keys, a message's partition is
    /// `partition_for_key` (Kafka's murmur2) instead of round-robin.
    #[arg(long, value_enum, default_value_t = KeyMode::None)]
    pub key_mode: KeyMode,
    /// With keys: only this many distinct keys (0..N in decimal: sequential
    /// cycles through them, random picks one each time), as a compacted
    /// topic's updates. Default: every key new.
    #[arg(long, value_name = "N")]
    pub key_space: Option<u64>,
    /// Open loop: produce this many messages per second in all, spread
    /// evenly over the producers; latency counts from when each message was
    /// due (coordinated-omission correction). Default: closed loop, as fast
    /// as acknowledgements allow.
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<u64>,
    /// Messages per batch (one batch per produce request). Default 100, or
    /// as many as --batch-bytes allows when that is given.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Bytes per batch (encoded, header included): a batch is sent once the
    /// next message would take it over this (or it holds --batch-size).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub batch_bytes: Option<u64>,
    /// With --rate: how long a producer holds a batch that is not full,
    /// waiting for more messages to fall due (Kafka's linger.ms). Closed
    /// loop producers always send full batches, so it changes nothing there.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub linger_ms: u64,
    /// Produce requests each producer keeps in flight.
    #[arg(long, default_value_t = 8, value_name = "K")]
    pub max_in_flight: usize,
    #[arg(long, value_enum, default_value_t = AcksArg::Durable)]
    pub acks: AcksArg,
    /// Run this long after the warmup (e.g. 10s, 500ms, 2m). Default 10s
    /// when --messages is not given.
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Produce (or, with no producers, consume) this many messages in all.
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Stop after producing (or, with no producers, consuming) this many
    /// value bytes, e.g. 10MiB, 1GiB, 500KB; the last batch may go over.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub total_bytes: Option<u64>,
    /// Leading time left out of rates and histograms (default 1s with
    /// --duration, 0 with --messages).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Consumers join this consumer group (shardlog's `GroupConsumer`: the
    /// broker's coordinator assigns the partitions) instead of reading a
    /// fixed share of the partitions each.
    #[arg(long, value_name = "GROUP")]
    pub consumer_group: Option<String>,
    /// Pin each producer and consumer thread to its own CPU, as the broker
    /// pins its shards: auto pins when there are at least as many CPUs as
    /// actors.
    #[arg(long, value_enum, default_value_t = PinMode::Auto)]
    pub pin_cpus: PinMode,
    /// Where consumers start: latest (what this run produces) or earliest.
    /// Default: latest when producing, earliest when only consuming.
    #[arg(long, value_enum, value_name = "FROM")]
    pub from: Option<FromArg>,
    /// How long consumers may take, after the producers finished, to read
    /// what was produced.
    #[arg(long, default_value = "30s", value_name = "TIME", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one self-contained HTML page (inline SVG charts, no scripts) to
    /// FILE: throughput over time and the latency percentile curves.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,

    /// Speak TLS to the broker (--broker: its `--native-tls on` listener;
    /// --kafka: security.protocol SSL), trusting the CAs in this PEM file;
    /// an `https://` --broker-http too.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate to present when the broker asks for one (mTLS).
    #[arg(long, value_name = "FILE", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// PEM key of --tls-client-cert.
    #[arg(long, value_name = "FILE", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// Log in with SASL (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) as
    /// --sasl-username, before anything else on every connection: --kafka
    /// (Kafka's sasl.mechanism) or --broker (`--native-sasl-enabled-mechanisms`).
    #[arg(long, value_name = "MECHANISM")]
    pub sasl_mechanism: Option<String>,
    #[arg(long, value_name = "USER")]
    pub sasl_username: Option<String>,
    /// The password; better given in the environment as
    /// SHARDLOG_BENCH_SASL_PASSWORD (a flag shows in the process list).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "SHARDLOG_BENCH_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    None,
    Leader,
    Durable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PinMode {
    Auto,
    On,
    Off,
}

impl PinMode {
    pub fn name(self) -> &'static str {
        match self {
            PinMode::Auto => "auto",
            PinMode::On => "on",
            PinMode::Off => "off",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyMode {
    None,
    Random,
    Sequential,
}

impl KeyMode {
    pub fn name(self) -> &'static str {
        match self {
            KeyMode::None => "none",
            KeyMode::Random => "random",
            KeyMode::Sequential => "sequential",
        }
    }
}

/// Value sizes: every message `min` bytes, or uniform in `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    pub min: usize,
    pub max: usize,
}

impl SizeRange {
    pub fn fixed(&self) -> bool {
        self.min == self.max
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FromArg {
    Earliest,
    Latest,
}

/// How long the run lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    After(Duration),
    Messages(u64),
    /// Value bytes in all (`--total-bytes`).
    Bytes(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Broker(String),
    /// A Kafka-protocol broker's bootstrap address (`--kafka`).
    Kafka(String),
    Spawn {
        shards: u16,
        fsync: FsyncPolicy,
        fsync_text: String,
        tmp_dir: Option<PathBuf>,
        metrics: bool,
    },
}

/// Validated parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub target: Target,
    pub producers: usize,
    pub consumers: usize,
    pub topic: String,
    pub partitions: u32,
    pub message_size: SizeRange,
    pub key_mode: KeyMode,
    /// Distinct keys (`--key-space`); None: unbounded.
    pub key_space: Option<u64>,
    /// Open-loop total rate (`--rate`); None is closed loop.
    pub rate: Option<u64>,
    pub batch_size: usize,
    /// Cap on a batch's encoded bytes (`--batch-bytes`).
    pub batch_bytes: Option<usize>,
    /// Open loop: longest a non-full batch waits (`--linger-ms`).
    pub linger: Duration,
    pub max_in_flight: usize,
    pub acks: Acks,
    pub consumer_group: Option<String>,
    pub pin_cpus: PinMode,
    pub stop: Stop,
    pub warmup: Duration,
    pub from: FromArg,
    pub drain_timeout: Duration,
    pub json: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub quiet: bool,
    /// Where the broker's CPU time is read; None: nowhere (`--broker-http off`).
    pub broker_cpu: Option<crate::brokercpu::Source>,
    /// TLS to the broker (`--tls-ca`).
    pub tls: Option<shardlog::client::tls::ClientTls>,
    /// SASL login (`--sasl-mechanism`).
    pub sasl: Option<shardlog::client::sasl::Login>,
}

impl Params {
    /// Producing and consuming in one run: messages carry their send time.
    pub fn end_to_end(&self) -> bool {
        self.producers > 0 && self.consumers > 0
    }
}

pub fn acks_name(a: Acks) -> &'static str {
    match a {
        Acks::None => "none",
        Acks::Leader => "leader",
        Acks::Durable => "durable",
    }
}

/// Checks the arguments; the error is one line, ready to print.
pub fn validate(a: Args) -> Result<Params, String> {
    let broker_cpu = match (&a.broker, a.spawn_broker, a.broker_http.as_deref()) {
        _ if a.broker_pid.is_some() => a.broker_pid.map(crate::brokercpu::Source::Pid),
        (_, _, Some("off")) => None,
        (_, true, _) => Some(crate::brokercpu::Source::ThisProcess),
        (_, false, Some(h)) => Some(crate::brokercpu::Source::Metrics(h.to_owned())),
        (Some(b), false, None) => b
            .rsplit_once(':')
            .map(|(host, _)| crate::brokercpu::Source::Metrics(format!("{host}:9480"))),
        (None, false, None) => None,
    };
    if a.kafka.is_some() && (a.broker.is_some() || a.spawn_broker) {
        return Err("--kafka excludes --broker and --spawn-broker".into());
    }
    if a.kafka.is_some() && a.consumer_group.is_some() {
        return Err(
            "--consumer-group uses shardlog's native group protocol: not with --kafka".into(),
        );
    }
    let target = match (a.broker, a.spawn_broker) {
        (None, false) if a.kafka.is_some() => {
            let k = a.kafka.clone().unwrap_or_default();
            if k.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(format!("--kafka {k:?} is not HOST:PORT"));
            }
            Target::Kafka(k)
        }
        (Some(b), false) => {
            if b.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(format!("--broker {b:?} is not HOST:PORT"));
            }
            Target::Broker(b)
        }
        (None, true) => {
            let shards = a.shards.unwrap_or_else(default_shards);
            if shards == 0 || shards > MAX_SHARDS {
                return Err(format!("--shards must be 1..={MAX_SHARDS}, not {}", shards));
            }
            Target::Spawn {
                shards,
                fsync: FsyncPolicy::parse(&a.fsync)?,
                fsync_text: a.fsync.clone(),
                tmp_dir: a.tmp_dir,
                metrics: a.broker_metrics == "on",
            }
        }
        (None, false) => {
            return Err("say which broker: --broker HOST:PORT or --spawn-broker".into())
        }
        (Some(_), true) => return Err("--broker and --spawn-broker exclude each other".into()),
    };
    // What the host can do: a producer and a consumer per shard.
    let per_shard = match &target {
        Target::Spawn { shards, .. } => *shards as usize,
        Target::Broker(_) | Target::Kafka(_) => default_shards() as usize,
    };
    let producers = a.producers.unwrap_or(per_shard);
    let consumers = a
        .consumers
        .unwrap_or_else(|| per_shard.min(a.partitions.max(1) as usize));
    if producers == 0 && consumers == 0 {
        return Err("nothing to do: --producers and --consumers are both 0".into());
    }
    if producers > MAX_ACTORS || consumers > MAX_ACTORS {
        return Err(format!(
            "--producers and --consumers must be at most {MAX_ACTORS}"
        ));
    }
    if a.topic.is_empty() {
        return Err("--topic must not be empty".into());
    }
    if a.partitions == 0 || a.partitions > MAX_PARTITIONS {
        return Err(format!(
            "--partitions must be 1..={MAX_PARTITIONS}, not {}",
            a.partitions
        ));
    }
    if let Some(g) = &a.consumer_group {
        if g.is_empty() || g.len() > MAX_GROUP_NAME_BYTES {
            return Err(format!(
                "--consumer-group must be 1..={MAX_GROUP_NAME_BYTES} bytes"
            ));
        }
        if consumers == 0 {
            return Err("--consumer-group needs --consumers of at least 1".into());
        }
    }
    if consumers as u64 > a.partitions as u64 {
        return Err(format!(
            "--consumers ({}) must not exceed --partitions ({}): each partition is read by one consumer",
            consumers, a.partitions
        ));
    }
    let message_size = parse_size_range(&a.message_size)?;
    if message_size.min == 0 || message_size.max > MAX_MESSAGE_BYTES {
        return Err(format!(
            "--message-size must be within 1..={MAX_MESSAGE_BYTES} bytes, not {}",
            a.message_size
        ));
    }
    if producers > 0 && consumers > 0 && message_size.min < STAMP_BYTES {
        return Err(format!(
            "--message-size must be at least {STAMP_BYTES} when producing and consuming: each message carries its send time"
        ));
    }
    if a.rate == Some(0) {
        return Err("--rate must be more than 0 messages per second".into());
    }
    if a.rate.is_some() && producers == 0 {
        return Err("--rate paces producers: it needs --producers of at least 1".into());
    }
    // Closed loop with no batch asked for: batches big enough that the
    // run measures the host, not the per-request cost.
    let batch_bytes_arg = match (a.batch_bytes, a.batch_size, a.rate) {
        (None, None, None) => Some(
            DEFAULT_BATCH_BYTES
                .max((BATCH_HEADER_BYTES + message_size.max + RECORD_FRAMING_BYTES) as u64),
        ),
        (b, _, _) => b,
    };
    let batch_bytes_cap = match batch_bytes_arg {
        None => None,
        Some(b) => {
            // One message (with a key and its framing) must always fit.
            let least = BATCH_HEADER_BYTES + message_size.max + RECORD_FRAMING_BYTES;
            if b < least as u64 || b > MAX_BATCH_BYTES as u64 {
                return Err(format!(
                    "--batch-bytes must be {least}..={MAX_BATCH_BYTES} (a batch holds at least one {}-byte message), not {b}",
                    message_size.max
                ));
            }
            Some(b as usize)
        }
    };
    let batch_size = match (a.batch_size, batch_bytes_cap) {
        (Some(n), _) => n,
        (None, None) => DEFAULT_BATCH_MESSAGES,
        // As many of the smallest messages as the bytes allow.
        (None, Some(b)) => ((b - BATCH_HEADER_BYTES) / (message_size.min + 7)).max(1),
    };
    if batch_size == 0 || batch_size > MAX_BATCH_MESSAGES {
        return Err(format!(
            "--batch-size must be 1..={MAX_BATCH_MESSAGES} messages, not {batch_size}"
        ));
    }
    if a.linger_ms > MAX_LINGER_MS {
        return Err(format!(
            "--linger-ms must be at most {MAX_LINGER_MS}, not {}",
            a.linger_ms
        ));
    }
    // Each record adds at most ~20 bytes of framing to its value.
    let batch_bytes = batch_size.saturating_mul(message_size.max.saturating_add(20));
    if batch_bytes_cap.is_none() && batch_bytes > MAX_BATCH_BYTES {
        return Err(format!(
            "--batch-size x --message-size is about {batch_bytes} bytes a batch; at most {MAX_BATCH_BYTES} fit in one produce request"
        ));
    }
    if a.max_in_flight == 0 || a.max_in_flight > MAX_IN_FLIGHT {
        return Err(format!(
            "--max-in-flight must be 1..={MAX_IN_FLIGHT}, not {}",
            a.max_in_flight
        ));
    }
    let stop = match (a.duration, a.messages, a.total_bytes) {
        (Some(d), None, None) if d.is_zero() => return Err("--duration must be more than 0".into()),
        (Some(d), None, None) => Stop::After(d),
        (None, Some(0), None) => return Err("--messages must be more than 0".into()),
        (None, Some(n), None) => Stop::Messages(n),
        (None, None, Some(0)) => return Err("--total-bytes must be more than 0".into()),
        (None, None, Some(b)) => Stop::Bytes(b),
        (None, None, None) => Stop::After(Duration::from_secs(10)),
        _ => {
            return Err(
                "--duration, --messages and --total-bytes exclude each other: give one".into(),
            )
        }
    };
    let warmup = a.warmup.unwrap_or(match stop {
        Stop::After(_) => Duration::from_secs(1),
        Stop::Messages(_) | Stop::Bytes(_) => Duration::ZERO,
    });
    let from = a.from.unwrap_or(if producers > 0 {
        FromArg::Latest
    } else {
        FromArg::Earliest
    });
    if producers > 0 && consumers > 0 && from == FromArg::Earliest {
        return Err(
            "--from earliest with producers would mix older messages into end-to-end latency: use it with --producers 0".into(),
        );
    }
    if a.key_space == Some(0) {
        return Err("--key-space must be at least 1".into());
    }
    if a.key_space.is_some() && a.key_mode == KeyMode::None {
        return Err("--key-space needs --key-mode random or sequential".into());
    }
    if a.tls_client_cert.is_some() && a.tls_ca.is_none() {
        return Err("--tls-client-cert needs --tls-ca".into());
    }
    if a.tls_ca.is_some() && matches!(target, Target::Spawn { .. }) {
        return Err("--tls-ca is for a separate broker (--broker or --kafka): the spawned one speaks plaintext".into());
    }
    let tls = a.tls_ca.map(|ca| shardlog::client::tls::ClientTls {
        ca,
        cert_key: a.tls_client_cert.zip(a.tls_client_key),
    });
    let sasl = match (a.sasl_mechanism, a.sasl_username, a.sasl_password) {
        (None, None, _) => None,
        (Some(m), Some(username), Some(password)) => {
            let mechanism =
                shardlog::security::sasl::SaslMechanism::from_name(&m.to_ascii_uppercase())
                    .ok_or_else(|| {
                        format!("--sasl-mechanism {m:?}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
                    })?;
            if matches!(target, Target::Spawn { .. }) {
                return Err("--sasl-mechanism is for a separate broker (--broker or --kafka): the spawned one asks for no login".into());
            }
            Some(shardlog::client::sasl::Login {
                mechanism,
                username,
                password,
            })
        }
        (Some(_), None, _) | (None, Some(_), _) => {
            return Err("--sasl-mechanism and --sasl-username go together".into())
        }
        (Some(_), Some(_), None) => {
            return Err(
                "SASL needs a password: SHARDLOG_BENCH_SASL_PASSWORD or --sasl-password".into(),
            )
        }
    };
    Ok(Params {
        target,
        producers,
        consumers,
        topic: a.topic,
        partitions: a.partitions,
        message_size,
        key_mode: a.key_mode,
        key_space: a.key_space,
        rate: a.rate,
        batch_size,
        batch_bytes: batch_bytes_cap,
        linger: Duration::from_millis(a.linger_ms),
        max_in_flight: a.max_in_flight,
        consumer_group: a.consumer_group,
        pin_cpus: a.pin_cpus,
        acks: match a.acks {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
            AcksArg::Durable => Acks::Durable,
        },
        stop,
        warmup,
        from,
        drain_timeout: a.drain_timeout,
        json: a.json,
        html: a.html,
        quiet: a.quiet,
        broker_cpu,
        tls,
        sasl,
    })
}

/// Parses `10s`, `500ms`, `2m`, `1h`, or plain seconds (`10`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 10s, 500ms, 2m)");
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.checked_mul(1000).ok_or_else(bad)?,
        "m" => n.checked_mul(60_000).ok_or_else(bad)?,
        "h" => n.checked_mul(3_600_000).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}

/// Parses `1024` or `64..4096` (inclusive).
pub fn parse_size_range(s: &str) -> Result<SizeRange, String> {
    let bad = || format!("--message-size {s:?} is not BYTES or MIN..MAX");
    let num = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
    let r = match s.split_once("..") {
        Some((lo, hi)) => SizeRange {
            min: num(lo)?,
            max: num(hi.trim_start_matches('='))?,
        },
        None => {
            let n = num(s)?;
            SizeRange { min: n, max: n }
        }
    };
    if r.min > r.max {
        return Err(format!("--message-size {s:?}: MIN is above MAX"));
    }
    Ok(r)
}

/// Parses `10MiB`, `1GiB`, `500KB`, `4096B` or plain bytes (`4096`).
/// KiB/MiB/GiB/TiB are powers of 1024, KB/MB/GB/TB powers of 1000.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a byte count (e.g. 4096, 10MiB, 1GiB, 500KB)");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mul).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Params, String> {
        let mut argv = vec!["shardlog-bench"];
        argv.extend_from_slice(extra);
        validate(Args::try_parse_from(argv).map_err(|e| e.to_string())?)
    }

    #[test]
    fn tls_and_sasl_options_are_checked() {
        let p = parse(&["--kafka", "h:9092", "--tls-ca", "ca.pem"]).unwrap();
        assert_eq!(p.tls.unwrap().ca, PathBuf::from("ca.pem"));
        assert!(parse(&["--spawn-broker", "--tls-ca", "ca.pem"])
            .unwrap_err()
            .contains("spawned"));
        assert!(parse(&["--broker", "h:1", "--tls-client-cert", "c.pem"]).is_err());
        let p = parse(&[
            "--kafka",
            "h:9092",
            "--sasl-mechanism",
            "scram-sha-512",
            "--sasl-username",
            "bench",
            "--sasl-password",
            "pw",
        ])
        .unwrap();
        let login = p.sasl.unwrap();
        assert_eq!(login.mechanism.name(), "SCRAM-SHA-512");
        assert!(
            !format!("{login:?}").contains("pw"),
            "no password in debug output"
        );
        for bad in [
            &[
                "--kafka",
                "h:9092",
                "--sasl-mechanism",
                "GSSAPI",
                "--sasl-username",
                "u",
                "--sasl-password",
                "p",
            ][..],
            &[
                "--spawn-broker",
                "--sasl-mechanism",
                "PLAIN",
                "--sasl-username",
                "u",
                "--sasl-password",
                "p",
            ],
            &["--kafka", "h:9092", "--sasl-mechanism", "PLAIN"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
    }

    #[test]
    fn defaults_are_a_ten_second_durable_run_with_warmup() {
        let p = parse(&["--spawn-broker"]).unwrap();
        assert_eq!(p.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(p.warmup, Duration::from_secs(1));
        assert_eq!(p.acks, Acks::Durable);
        assert_eq!(p.from, FromArg::Latest);
        assert!(p.end_to_end());
    }

    #[test]
    fn sizes_and_byte_counts_parse() {
        assert_eq!(
            parse_size_range("100"),
            Ok(SizeRange { min: 100, max: 100 })
        );
        assert_eq!(parse_size_range("8..64"), Ok(SizeRange { min: 8, max: 64 }));
        assert!(parse_size_range("64..8").is_err());
        assert!(parse_size_range("a..b").is_err());
        assert_eq!(parse_bytes("10MiB"), Ok(10 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("500KB"), Ok(500_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("10 furlongs").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
    }

    #[test]
    fn rate_keys_and_total_bytes_are_validated() {
        let p = parse(&[
            "--spawn-broker",
            "--rate",
            "2000",
            "--key-mode",
            "sequential",
            "--total-bytes",
            "1MiB",
            "--message-size",
            "8..100",
        ])
        .unwrap();
        assert_eq!(p.rate, Some(2000));
        assert_eq!(p.key_mode, KeyMode::Sequential);
        assert_eq!(p.key_space, None);
        assert_eq!(p.stop, Stop::Bytes(1 << 20));
        let q = parse(&[
            "--spawn-broker",
            "--key-mode",
            "random",
            "--key-space",
            "1000",
        ])
        .unwrap();
        assert_eq!(q.key_space, Some(1000));
        assert!(parse(&["--spawn-broker", "--key-space", "1000"]).is_err());
        assert!(parse(&["--spawn-broker", "--key-mode", "random", "--key-space", "0"]).is_err());
        assert_eq!(p.message_size, SizeRange { min: 8, max: 100 });
        assert_eq!(p.warmup, Duration::ZERO);
    }

    #[test]
    fn batch_bytes_sets_the_count_cap_unless_batch_size_is_given() {
        let p = parse(&["--spawn-broker", "--batch-bytes", "64KiB"]).unwrap();
        assert_eq!(p.batch_bytes, Some(64 << 10));
        assert_eq!(p.batch_size, ((64 << 10) - 61) / (1024 + 7));
        let p = parse(&[
            "--spawn-broker",
            "--batch-bytes",
            "1MiB",
            "--batch-size",
            "10",
            "--linger-ms",
            "5",
            "--consumer-group",
            "g1",
        ])
        .unwrap();
        assert_eq!((p.batch_size, p.batch_bytes), (10, Some(1 << 20)));
        assert_eq!(p.linger, Duration::from_millis(5));
        assert_eq!(p.consumer_group.as_deref(), Some("g1"));
        // Closed loop by default: 256 KiB batches of as many messages as fit.
        let p = parse(&["--spawn-broker"]).unwrap();
        assert_eq!((p.batch_size, p.batch_bytes), (254, Some(256 << 10)));
        assert_eq!(p.pin_cpus, PinMode::Auto);
        // Open loop keeps 100-message batches (latency, not throughput).
        let p = parse(&["--spawn-broker", "--rate", "1000"]).unwrap();
        assert_eq!((p.batch_size, p.batch_bytes), (100, None));
        // A producer and a consumer per shard, consumers at most one per partition.
        let p = parse(&["--spawn-broker", "--shards", "3"]).unwrap();
        assert_eq!((p.producers, p.consumers), (3, 3));
        let p = parse(&["--spawn-broker", "--shards", "6", "--partitions", "4"]).unwrap();
        assert_eq!((p.producers, p.consumers), (6, 4));
    }

    #[test]
    fn message_count_runs_have_no_warmup_by_default() {
        let p = parse(&["--spawn-broker", "--messages", "10"]).unwrap();
        assert_eq!(p.stop, Stop::Messages(10));
        assert_eq!(p.warmup, Duration::ZERO);
    }

    #[test]
    fn consume_only_reads_from_earliest() {
        let p = parse(&["--broker", "h:1", "--producers", "0"]).unwrap();
        assert_eq!(p.from, FromArg::Earliest);
        assert!(!p.end_to_end());
    }

    #[test]
    fn nonsense_is_refused_with_one_line() {
        for bad in [
            &["--spawn-broker", "--producers", "0", "--consumers", "0"][..],
            &["--spawn-broker", "--message-size", "0"],
            &["--spawn-broker", "--duration", "1s", "--messages", "5"],
            &["--spawn-broker", "--messages", "0"],
            &["--spawn-broker", "--batch-size", "0"],
            &["--spawn-broker", "--max-in-flight", "0"],
            &["--spawn-broker", "--partitions", "2", "--consumers", "3"],
            &["--spawn-broker", "--message-size", "4"],
            &["--spawn-broker", "--fsync", "sometimes"],
            &["--spawn-broker", "--shards", "0"],
            &[
                "--spawn-broker",
                "--batch-size",
                "100000",
                "--message-size",
                "1000",
            ],
            &["--broker", "nohost"],
            &["--spawn-broker", "--message-size", "4..100"],
            &["--spawn-broker", "--message-size", "100..10"],
            &["--spawn-broker", "--rate", "0"],
            &["--spawn-broker", "--batch-bytes", "100"],
            &["--spawn-broker", "--batch-bytes", "1GiB"],
            &["--spawn-broker", "--linger-ms", "3600000"],
            &["--spawn-broker", "--consumer-group", ""],
            &[
                "--spawn-broker",
                "--consumers",
                "0",
                "--consumer-group",
                "g",
            ],
            &["--broker", "h:1", "--producers", "0", "--rate", "10"],
            &["--spawn-broker", "--total-bytes", "0"],
            &["--spawn-broker", "--total-bytes", "1MiB", "--messages", "3"],
            &[],
        ] {
            let e = parse(bad).expect_err(&format!("{bad:?} accepted"));
            assert!(
                !e.trim().is_empty() && !e.trim().contains('\n'),
                "{bad:?}: {e}"
            );
        }
    }
}
