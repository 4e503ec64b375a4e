//! Per-shard metrics: counters, gauges and fixed-bucket histograms, written
//! by the shard that owns them and read by the `/metrics` endpoint.
//!
//! Owns: the numbers (`ShardMetrics`, one per shard, in one `Metrics` shared
//! by `Arc`), the bounded set of per-partition labels, and their encoding as
//! Prometheus text (prometheus-client, on the reader's thread).
//!
//! Must never: take a lock or make a shared cache line bounce on the data
//! path. Every value has exactly one writer, its shard's thread: an update is
//! a relaxed load and store of an `AtomicU64` (a plain `mov` on x86-64, no
//! `lock` prefix, no contention), and a reader on another thread sees each
//! value whole, possibly a moment old. The only `Mutex` guards the list of
//! labelled partitions and is taken when a partition opens or closes and at
//! scrape time, never per request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::protocol::{ErrorCode, Request, Response, ResponseFrame};

/// Partitions per shard that get their own `topic`/`partition` labels (the
/// first ones opened; the rest count only in the shard's totals). Bounds the
/// number of series a scrape returns: shards x 64 x 4.
pub const MAX_LABELLED_PARTITIONS: usize = 64;

/// The `listener` label of connection series, by `conn::Listener` index.
pub const LISTENERS: [&str; 2] = ["native", "kafka"];

/// The `reason` label of closed connections, by `conn::CloseReason` index.
pub const CLOSE_REASONS: [&str; 12] = [
    "client_closed",
    "idle",
    "read_timeout",
    "frame_too_large",
    "bad_request",
    "io_error",
    "stopping",
    "connection_limit",
    "auth_failed",
    "unauthenticated",
    "tls_failed",
    "session_expired",
];

/// A counter with one writer: relaxed load + store, no read-modify-write.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        // One writer (the owning shard's thread): no update can be lost.
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A gauge with one writer.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.set(self.get().wrapping_add(n));
    }

    #[inline]
    pub fn sub(&self, n: u64) {
        self.set(self.get().saturating_sub(n));
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Buckets of a histogram: bucket i holds values <= 2^i (i < BUCKETS - 1),
/// the last one everything above. In microseconds for latencies (1 us ..
/// 2^24 us = 16.8 s), in messages for batch sizes.
pub const BUCKETS: usize = 26;

/// A log2-bucketed histogram with one writer.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

/// The bucket a value falls in: the smallest i with v <= 2^i.
pub fn bucket_of(v: u64) -> usize {
    let i = if v <= 1 {
        0
    } else {
        (64 - (v - 1).leading_zeros()) as usize
    };
    i.min(BUCKETS - 1)
}

fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Relaxed).wrapping_add(n), Relaxed);
}

impl Histogram {
    #[inline]
    pub fn record(&self, v: u64) {
        bump(&self.buckets[bucket_of(v)], 1);
        bump(&self.sum, v);
        bump(&self.count, 1);
    }

    /// (upper bound, count) per bucket, not cumulative; the last bound is
    /// infinite.
    pub fn snapshot(&self) -> (Vec<u64>, u64, u64) {
        let b = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        (b, self.sum.load(Relaxed), self.count.load(Relaxed))
    }

    fn encode(&self, e: &mut MetricEncoder, scale: f64) -> Result<(), std::fmt::Error> {
        let (b, sum, _) = self.snapshot();
        // The encoder makes the counts cumulative; the count is the sum of
        // the buckets, so a scrape is self-consistent even when it races a
        // record.
        let mut count = 0;
        let mut buckets = Vec::with_capacity(BUCKETS);
        for (i, &n) in b.iter().enumerate() {
            count += n;
            let bound = if i + 1 == BUCKETS {
                f64::INFINITY
            } else {
                (1u64 << i) as f64 * scale
            };
            buckets.push((bound, n));
        }
        e.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            sum as f64 * scale,
            count,
            &buckets,
            None,
        )
    }
}

/// Request kinds, as the `api` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Produce = 0,
    Fetch = 1,
    ListOffsets = 2,
    Metadata = 3,
    Admin = 4,
    Group = 5,
    Other = 6,
}

const APIS: [&str; 7] = [
    "produce",
    "fetch",
    "list_offsets",
    "metadata",
    "admin",
    "group",
    "other",
];

impl Api {
    pub fn of(r: &Request) -> Api {
        match r {
            Request::Produce(_) => Api::Produce,
            Request::Fetch(_) => Api::Fetch,
            Request::ListOffsets(_) => Api::ListOffsets,
            Request::Metadata { .. } | Request::DescribeTopics { .. } => Api::Metadata,
            Request::CreateTopics(_)
            | Request::DeleteTopics(_)
            | Request::DeleteRecords(_)
            | Request::DescribeProducers(_)
            | Request::ListTransactions { .. }
            | Request::DescribeTransactions(_)
            | Request::DescribeUsers(_)
            | Request::AlterUsers(_)
            | Request::DescribeAcls(_)
            | Request::AlterAcls { .. }
            | Request::DescribeQuotas
            | Request::AlterQuotas { .. }
            | Request::SaslAuthenticate { .. }
            | Request::CreatePartitions(_)
            | Request::AlterConfigs { .. } => Api::Admin,
            Request::GroupHeartbeat(_)
            | Request::LeaveGroup(_)
            | Request::OffsetCommit(_)
            | Request::OffsetFetch(_)
            | Request::ListGroups
            | Request::DescribeGroups(_) => Api::Group,
            Request::ApiVersions => Api::Other,
        }
    }
}

/// Error codes counted (`ErrorCode` as index: 0 ..= SecurityDisabled;
/// anything larger is counted as the last one).
const ERROR_CODES: usize = ErrorCode::SecurityDisabled as usize + 1;

/// One partition's own series.
#[derive(Debug)]
pub struct PartitionMetrics {
    pub topic: String,
    pub partition: u32,
    pub produce_messages: Counter,
    pub produce_bytes: Counter,
    pub fetch_messages: Counter,
    pub fetch_bytes: Counter,
    /// Compaction: dirty bytes over cleanable bytes at the last look, x1000.
    pub cleaner_dirty_permille: Gauge,
}

/// One shard's numbers. Written only by that shard's thread.
#[derive(Debug)]
pub struct ShardMetrics {
    pub shard: u16,
    /// Off: every update is skipped (one predictable branch); for measuring
    /// what collection costs (BENCHMARKS.md).
    enabled: bool,
    requests: [Counter; APIS.len()],
    latency_us: [Histogram; 2],
    inflight: Gauge,
    pub connections: Gauge,
    /// Connections closed, by listener and reason (`CLOSE_REASONS`).
    closed: [[Counter; CLOSE_REASONS.len()]; LISTENERS.len()],
    /// Bytes of the read budget held by connections reading requests.
    pub read_budget_bytes: Gauge,
    pub read_budget_limit_bytes: Gauge,
    /// Times a connection waited for the read budget.
    pub read_budget_waits: Counter,
    /// Requests (or parts of them) the authorizer refused.
    pub authorization_denied: Counter,
    /// SASL sessions renewed on their connection (KIP-368).
    pub sasl_reauthentications: Counter,
    produce_messages: Counter,
    produce_bytes: Counter,
    fetch_messages: Counter,
    fetch_bytes: Counter,
    fsyncs: Counter,
    fsync_us: Histogram,
    group_commit_messages: Histogram,
    forwards: Counter,
    forward_bytes: Counter,
    pub memory_unwritten_bytes: Gauge,
    pub memory_unwritten_limit_bytes: Gauge,
    pub tail_buffer_bytes: Gauge,
    pub memory_budget_bytes: Gauge,
    /// The batch cache (`storage::cache`): reads it served, reads it could
    /// not (the disk served them), what it holds, its limit, what it evicted.
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_bytes: Gauge,
    pub cache_limit_bytes: Gauge,
    pub cache_evicted_batches: Counter,
    pub cache_evicted_bytes: Counter,
    recovery_truncations: Counter,
    recovery_truncated_bytes: Counter,
    index_rebuilds: Counter,
    cleaner_runs: Counter,
    cleaner_failures: Counter,
    cleaner_bytes_read: Counter,
    cleaner_bytes_written: Counter,
    cleaner_records_removed: Counter,
    cleaner_tombstones_removed: Counter,
    /// Unix time (s) the last cleaning on this shard ended; 0: none yet.
    cleaner_last_run: Gauge,
    errors: [Counter; ERROR_CODES],
    labelled: Mutex<Vec<Arc<PartitionMetrics>>>,
}

impl ShardMetrics {
    pub fn new(shard: u16, enabled: bool) -> ShardMetrics {
        ShardMetrics {
            shard,
            enabled,
            requests: Default::default(),
            latency_us: Default::default(),
            inflight: Gauge::default(),
            connections: Gauge::default(),
            closed: Default::default(),
            read_budget_bytes: Gauge::default(),
            read_budget_limit_bytes: Gauge::default(),
            read_budget_waits: Counter::default(),
            authorization_denied: Counter::default(),
            sasl_reauthentications: Counter::default(),
            produce_messages: Counter::default(),
            produce_bytes: Counter::default(),
            fetch_messages: Counter::default(),
            fetch_bytes: Counter::default(),
            fsyncs: Counter::default(),
            fsync_us: Histogram::default(),
            group_commit_messages: Histogram::default(),
            forwards: Counter::default(),
            forward_bytes: Counter::default(),
            memory_unwritten_bytes: Gauge::default(),
            memory_unwritten_limit_bytes: Gauge::default(),
            tail_buffer_bytes: Gauge::default(),
            memory_budget_bytes: Gauge::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_bytes: Gauge::default(),
            cache_limit_bytes: Gauge::default(),
            cache_evicted_batches: Counter::default(),
            cache_evicted_bytes: Counter::default(),
            recovery_truncations: Counter::default(),
            recovery_truncated_bytes: Counter::default(),
            index_rebuilds: Counter::default(),
            cleaner_runs: Counter::default(),
            cleaner_failures: Counter::default(),
            cleaner_bytes_read: Counter::default(),
            cleaner_bytes_written: Counter::default(),
            cleaner_records_removed: Counter::default(),
            cleaner_tombstones_removed: Counter::default(),
            cleaner_last_run: Gauge::default(),
            errors: std::array::from_fn(|_| Counter::default()),
            labelled: Mutex::new(Vec::new()),
        }
    }

    /// Metrics nobody reads (library users and tests without a broker).
    pub fn detached() -> Arc<ShardMetrics> {
        Arc::new(ShardMetrics::new(0, false))
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Counts one closed connection (`listener` and `reason` index
    /// `LISTENERS` and `CLOSE_REASONS`).
    pub fn connection_closed(&self, listener: usize, reason: usize) {
        self.closed[listener][reason].add(1);
    }

    pub fn connections_closed(&self, listener: usize, reason: usize) -> u64 {
        self.closed[listener][reason].get()
    }

    /// A partition's own series, if there is room among the labelled ones.
    /// Called when the partition opens (not on the data path).
    pub fn partition(&self, topic: &str, partition: u32) -> Option<Arc<PartitionMetrics>> {
        if !self.enabled {
            return None;
        }
        let mut l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        if l.len() >= MAX_LABELLED_PARTITIONS {
            return None;
        }
        let p = Arc::new(PartitionMetrics {
            topic: topic.to_owned(),
            partition,
            produce_messages: Counter::default(),
            produce_bytes: Counter::default(),
            fetch_messages: Counter::default(),
            fetch_bytes: Counter::default(),
            cleaner_dirty_permille: Gauge::default(),
        });
        l.push(p.clone());
        Some(p)
    }

    /// Frees a closed partition's label slot.
    pub fn forget(&self, p: &Arc<PartitionMetrics>) {
        let mut l = self.labelled.lock().unwrap_or_else(|e| e.into_inner());
        l.retain(|q| !Arc::ptr_eq(p, q));
    }

    // hot path: per produce run of one partition.
    #[inline]
    pub fn produced(&self, p: Option<&PartitionMetrics>, messages: u64, bytes: u64) {
        if !self.enabled {
            return;
        }
        self.produce_messages.add(messages);
        self.produce_bytes.add(bytes);
        if let Some(p) = p {
            p.produce_messages.add(messages);
            p.produce_bytes.add(bytes);
        }
    }

    // hot path: per fetched partition.
    #[inline]
    pub fn fetched(&self, p: Option<&PartitionMetrics>, records: &crate::chain::Chain) {
        if !self.enabled || records.is_empty() {
            return;
        }
        let messages = records.count_records();
        self.fetch_messages.add(messages);
        self.fetch_bytes.add(records.len() as u64);
        if let Some(p) = p {
            p.fetch_messages.add(messages);
            p.fetch_bytes.add(records.len() as u64);
        }
    }

    /// A request was read: returns when (if counting), for `request_done`.
    #[inline]
    pub fn request_started(&self, api: Api) -> Option<Instant> {
        if !self.enabled {
            return None;
        }
        self.requests[api as usize].add(1);
        self.inflight.add(1);
        Some(Instant::now())
    }

    /// A request's response is ready: its latency (produce: until the ack
    /// its acks level asked for) and its errors.
    pub fn request_done(&self, api: Api, started: Option<Instant>, r: &ResponseFrame) {
        if started.is_some() {
            self.request_finished(api, started);
            self.count_errors(r);
        }
    }

    /// A request that carries no native response is done (Kafka-only
    /// group calls: their errors are Kafka's codes, not the native ones).
    pub fn request_finished(&self, api: Api, started: Option<Instant>) {
        let Some(started) = started else {
            return;
        };
        self.inflight.sub(1);
        if let Api::Produce | Api::Fetch = api {
            self.latency_us[api as usize].record(started.elapsed().as_micros() as u64);
        }
    }

    /// Counts the error codes in a response (the whole request's, or each
    /// partition's).
    pub fn count_errors(&self, r: &ResponseFrame) {
        if !self.enabled {
            return;
        }
        let count = |c: ErrorCode| {
            if c != ErrorCode::None {
                self.errors[(c as usize).min(ERROR_CODES - 1)].add(1);
            }
        };
        match &r.result {
            Err(e) => count(e.code),
            Ok(Response::Produce(ts)) => ts
                .iter()
                .flat_map(|t| &t.partitions)
                .filter_map(|p| p.error.as_ref())
                .for_each(|e| count(e.code)),
            Ok(Response::Fetch(ts)) => ts
                .iter()
                .flat_map(|t| &t.partitions)
                .filter_map(|p| p.error.as_ref())
                .for_each(|e| count(e.code)),
            Ok(Response::ListOffsets(ts)) => ts
                .iter()
                .flat_map(|t| &t.partitions)
                .filter_map(|p| p.error.as_ref())
                .for_each(|e| count(e.code)),
            Ok(Response::CreateTopics(ts)) | Ok(Response::DeleteTopics(ts)) => ts
                .iter()
                .filter_map(|t| t.error.as_ref())
                .for_each(|e| count(e.code)),
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// One fdatasync and how long it took.
    pub fn fsynced(&self, started: Instant) {
        if self.enabled {
            self.fsyncs.add(1);
            self.fsync_us.record(started.elapsed().as_micros() as u64);
        }
    }

    /// Messages one group-commit fdatasync made durable.
    pub fn group_commit(&self, messages: u64) {
        if self.enabled {
            self.group_commit_messages.record(messages);
        }
    }

    /// A request part sent to another shard.
    pub fn forwarded(&self, record_bytes: u64) {
        if self.enabled {
            self.forwards.add(1);
            self.forward_bytes.add(record_bytes);
        }
    }

    /// One compaction cleaning done on this shard.
    pub fn cleaned(&self, read: u64, written: u64, records_removed: u64, tombstones_removed: u64) {
        self.cleaner_runs.add(1);
        self.cleaner_bytes_read.add(read);
        self.cleaner_bytes_written.add(written);
        self.cleaner_records_removed.add(records_removed);
        self.cleaner_tombstones_removed.add(tombstones_removed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.cleaner_last_run.set(now);
    }

    /// A cleaning that ended in an error (logged; the log is as it was).
    pub fn cleaner_failed(&self) {
        self.cleaner_failures.add(1);
    }

    /// What recovery did to one segment.
    pub fn recovered(&self, torn: bool, truncated_bytes: u64, index_rebuilt: bool) {
        if torn {
            self.recovery_truncations.add(1);
            self.recovery_truncated_bytes.add(truncated_bytes);
        }
        if index_rebuilt {
            self.index_rebuilds.add(1);
        }
    }
}

/// Every shard's metrics, plus whether the broker is ready (`/healthz`).
#[derive(Debug)]
pub struct Metrics {
    shards: Vec<Arc<ShardMetrics>>,
    ready: AtomicBool,
    enabled: bool,
}

impl Metrics {
    pub fn new(shards: u16, enabled: bool) -> Arc<Metrics> {
        Arc::new(Metrics {
            shards: (0..shards.max(1))
                .map(|i| Arc::new(ShardMetrics::new(i, enabled)))
                .collect(),
            ready: AtomicBool::new(false),
            enabled,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn shard(&self, id: u16) -> Arc<ShardMetrics> {
        self.shards[id as usize].clone()
    }

    /// Set once every shard recovered and serves; cleared when it stops.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    /// Prometheus text exposition (format 0.0.4) of every shard's metrics.
    pub fn encode_text(self: &Arc<Self>) -> String {
        let mut registry = prometheus_client::registry::Registry::with_prefix("shardlog");
        registry.register_collector(Box::new(Collect(self.clone())));
        // The standard process series first, unprefixed, so the broker's CPU
        // per byte is `rate(process_cpu_seconds_total)` over its byte counters.
        let mut out = crate::procstat::read()
            .map(|p| crate::procstat::encode(&p))
            .unwrap_or_default();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

#[derive(Debug)]
struct Collect(Arc<Metrics>);

type ShardLabel = [(&'static str, String); 1];

fn shard_label(s: &ShardMetrics) -> ShardLabel {
    [("shard", s.shard.to_string())]
}

impl prometheus_client::collector::Collector for Collect {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shards = &self.0.shards;
        let counter = |enc: &mut DescriptorEncoder,
                       name: &str,
                       help: &str,
                       get: &dyn Fn(&ShardMetrics) -> u64|
         -> Result<(), std::fmt::Error> {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in shards {
                let l = shard_label(s);
                ConstCounter::new(get(s)).encode(m.encode_family(&l)?)?;
            }
            Ok(())
        };
        let gauge = |enc: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     get: &dyn Fn(&ShardMetrics) -> u64|
         -> Result<(), std::fmt::Error> {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in shards {
                let l = shard_label(s);
                ConstGauge::new(get(s) as i64).encode(m.encode_family(&l)?)?;
            }
            Ok(())
        };
        {
            let mut m = enc.encode_descriptor(
                "requests",
                "Requests read from client connections, by the shard that read them",
                None,
                MetricType::Counter,
            )?;
            for s in shards {
                for (i, api) in APIS.iter().enumerate() {
                    let l = [("shard", s.shard.to_string()), ("api", (*api).to_owned())];
                    ConstCounter::new(s.requests[i].get()).encode(m.encode_family(&l)?)?;
                }
            }
        }
        gauge(
            &mut enc,
            "inflight_requests",
            "Requests read and not yet answered",
            &|s| s.inflight.get(),
        )?;
        gauge(&mut enc, "connections", "Open client connections", &|s| {
            s.connections.get()
        })?;
        {
            let mut m = enc.encode_descriptor(
                "connections_closed",
                "Client connections closed, by listener and reason",
                None,
                MetricType::Counter,
            )?;
            for s in shards {
                for (l, listener) in LISTENERS.iter().enumerate() {
                    for (r, reason) in CLOSE_REASONS.iter().enumerate() {
                        let labels = [
                            ("shard", s.shard.to_string()),
                            ("listener", (*listener).to_owned()),
                            ("reason", (*reason).to_owned()),
                        ];
                        ConstCounter::new(s.closed[l][r].get())
                            .encode(m.encode_family(&labels)?)?;
                    }
                }
            }
        }
        gauge(
            &mut enc,
            "read_budget_bytes",
            "Bytes of the request read budget held by connections reading requests",
            &|s| s.read_budget_bytes.get(),
        )?;
        gauge(
            &mut enc,
            "read_budget_limit_bytes",
            "The shard's request read budget (--queued-max-request-bytes)",
            &|s| s.read_budget_limit_bytes.get(),
        )?;
        counter(
            &mut enc,
            "read_budget_waits",
            "Times a connection stopped reading until the read budget had room",
            &|s| s.read_budget_waits.get(),
        )?;
        counter(
            &mut enc,
            "authorization_denied",
            "Operations the authorizer refused (ACLs): a topic, group, transactional id or the cluster",
            &|s| s.authorization_denied.get(),
        )?;
        counter(
            &mut enc,
            "sasl_reauthentications",
            "SASL sessions a client renewed on its connection before they expired (connections.max.reauth.ms, KIP-368)",
            &|s| s.sasl_reauthentications.get(),
        )?;
        for (i, name, help) in [
            (
                Api::Produce as usize,
                "produce_ack_latency_seconds",
                "From a produce request read to its response (the ack its acks level asked for)",
            ),
            (
                Api::Fetch as usize,
                "fetch_latency_seconds",
                "From a fetch request read to its response (long-poll waits included)",
            ),
        ] {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for s in shards {
                let l = shard_label(s);
                s.latency_us[i].encode(&mut m.encode_family(&l)?, 1e-6)?;
            }
        }
        counter(
            &mut enc,
            "produce_messages",
            "Messages appended, by owner shard",
            &|s| s.produce_messages.get(),
        )?;
        counter(
            &mut enc,
            "produce_bytes",
            "Record batch bytes appended, by owner shard",
            &|s| s.produce_bytes.get(),
        )?;
        counter(
            &mut enc,
            "fetch_messages",
            "Messages in fetched batches (whole batches), by owner shard",
            &|s| s.fetch_messages.get(),
        )?;
        counter(
            &mut enc,
            "fetch_bytes",
            "Record batch bytes fetched, by owner shard",
            &|s| s.fetch_bytes.get(),
        )?;
        counter(
            &mut enc,
            "fsyncs",
            "fdatasync calls on segment files",
            &|s| s.fsyncs.get(),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "fsync_latency_seconds",
                "Duration of one fdatasync of a segment file",
                None,
                MetricType::Histogram,
            )?;
            for s in shards {
                s.fsync_us
                    .encode(&mut m.encode_family(&shard_label(s))?, 1e-6)?;
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "group_commit_messages",
                "Messages made durable by one group-commit fdatasync of a partition",
                None,
                MetricType::Histogram,
            )?;
            for s in shards {
                s.group_commit_messages
                    .encode(&mut m.encode_family(&shard_label(s))?, 1.0)?;
            }
        }
        counter(
            &mut enc,
            "forwards",
            "Request parts sent to another shard over the mesh",
            &|s| s.forwards.get(),
        )?;
        counter(
            &mut enc,
            "forward_bytes",
            "Record batch bytes in request parts sent to another shard (moved, not copied)",
            &|s| s.forward_bytes.get(),
        )?;
        gauge(
            &mut enc,
            "memory_unwritten_bytes",
            "Bytes appended and not yet written",
            &|s| s.memory_unwritten_bytes.get(),
        )?;
        gauge(
            &mut enc,
            "memory_unwritten_limit_bytes",
            "Unwritten bytes at which producers wait (half the memory budget)",
            &|s| s.memory_unwritten_limit_bytes.get(),
        )?;
        gauge(
            &mut enc,
            "memory_tail_buffer_bytes",
            "Tail buffer bytes reserved by the open partitions",
            &|s| s.tail_buffer_bytes.get(),
        )?;
        gauge(
            &mut enc,
            "memory_budget_bytes",
            "The shard's memory budget (--memory-budget)",
            &|s| s.memory_budget_bytes.get(),
        )?;
        counter(
            &mut enc,
            "batch_cache_hits",
            "Partition reads served from the batch cache (no disk read, no copy)",
            &|s| s.cache_hits.get(),
        )?;
        counter(
            &mut enc,
            "batch_cache_misses",
            "Partition reads below the batch cache, served from the disk",
            &|s| s.cache_misses.get(),
        )?;
        gauge(
            &mut enc,
            "batch_cache_bytes",
            "Bytes of batches the batch cache holds",
            &|s| s.cache_bytes.get(),
        )?;
        gauge(
            &mut enc,
            "batch_cache_limit_bytes",
            "The batch cache's limit (--batch-cache-bytes)",
            &|s| s.cache_limit_bytes.get(),
        )?;
        counter(
            &mut enc,
            "batch_cache_evicted_batches",
            "Batches evicted from the batch cache to stay under its limit",
            &|s| s.cache_evicted_batches.get(),
        )?;
        counter(
            &mut enc,
            "batch_cache_evicted_bytes",
            "Bytes evicted from the batch cache to stay under its limit",
            &|s| s.cache_evicted_bytes.get(),
        )?;
        counter(
            &mut enc,
            "recovery_truncations",
            "Torn or corrupt segment tails cut by recovery",
            &|s| s.recovery_truncations.get(),
        )?;
        counter(
            &mut enc,
            "recovery_truncated_bytes",
            "Bytes cut from torn or corrupt tails by recovery",
            &|s| s.recovery_truncated_bytes.get(),
        )?;
        counter(
            &mut enc,
            "recovery_index_rebuilds",
            "Index files rebuilt from the log by recovery",
            &|s| s.index_rebuilds.get(),
        )?;
        counter(
            &mut enc,
            "cleaner_runs",
            "Compaction cleanings done",
            &|s| s.cleaner_runs.get(),
        )?;
        counter(
            &mut enc,
            "cleaner_failures",
            "Compaction cleanings that failed (the log stays as it was)",
            &|s| s.cleaner_failures.get(),
        )?;
        counter(
            &mut enc,
            "cleaner_read_bytes",
            "Batch bytes compaction cleanings read",
            &|s| s.cleaner_bytes_read.get(),
        )?;
        counter(
            &mut enc,
            "cleaner_written_bytes",
            "Batch bytes compaction cleanings wrote (what they kept)",
            &|s| s.cleaner_bytes_written.get(),
        )?;
        counter(
            &mut enc,
            "cleaner_removed_records",
            "Records compaction removed (superseded, keyless, expired tombstones)",
            &|s| s.cleaner_records_removed.get(),
        )?;
        counter(
            &mut enc,
            "cleaner_removed_tombstones",
            "Tombstones compaction removed past delete.retention.ms",
            &|s| s.cleaner_tombstones_removed.get(),
        )?;
        gauge(
            &mut enc,
            "cleaner_last_run_timestamp_seconds",
            "Unix time the shard's last compaction cleaning ended (0: none yet)",
            &|s| s.cleaner_last_run.get(),
        )?;
        {
            let mut m = enc.encode_descriptor(
                "partition_cleaner_dirty_ratio",
                "A compacted partition's dirty bytes over its cleanable bytes at the cleaner's last look (the first 64 per shard)",
                None,
                MetricType::Gauge,
            )?;
            for s in shards {
                let l = s.labelled.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for p in l {
                    let labels = [
                        ("shard", s.shard.to_string()),
                        ("topic", p.topic.clone()),
                        ("partition", p.partition.to_string()),
                    ];
                    let ratio = p.cleaner_dirty_permille.get() as f64 / 1000.0;
                    ConstGauge::new(ratio).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = enc.encode_descriptor(
                "errors",
                "Error codes answered (per request or per partition)",
                None,
                MetricType::Counter,
            )?;
            for s in shards {
                for (i, c) in s.errors.iter().enumerate() {
                    let n = c.get();
                    if n == 0 {
                        continue;
                    }
                    let code = format!("{:?}", ErrorCode::from_i16(i as i16));
                    let l = [("shard", s.shard.to_string()), ("code", code)];
                    ConstCounter::new(n).encode(m.encode_family(&l)?)?;
                }
            }
        }
        for (name, help, get) in [
            (
                "partition_produce_messages",
                "Messages appended to a partition (the first 64 per shard)",
                (|p: &PartitionMetrics| p.produce_messages.get()) as fn(&PartitionMetrics) -> u64,
            ),
            (
                "partition_produce_bytes",
                "Bytes appended to a partition (the first 64 per shard)",
                |p| p.produce_bytes.get(),
            ),
            (
                "partition_fetch_messages",
                "Messages fetched from a partition (the first 64 per shard)",
                |p| p.fetch_messages.get(),
            ),
            (
                "partition_fetch_bytes",
                "Bytes fetched from a partition (the first 64 per shard)",
                |p| p.fetch_bytes.get(),
            ),
        ] {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in shards {
                let l = s.labelled.lock().unwrap_or_else(|e| e.into_inner()).clone();
                for p in l {
                    let labels = [
                        ("shard", s.shard.to_string()),
                        ("topic", p.topic.clone()),
                        ("partition", p.partition.to_string()),
                    ];
                    ConstCounter::new(get(&p)).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_the_smallest_power_of_two_at_or_above() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 2);
        assert_eq!(bucket_of(5), 3);
        assert_eq!(bucket_of(1 << 20), 20);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn text_has_every_shard_and_cumulative_buckets() {
        let m = Metrics::new(2, true);
        let s1 = m.shard(1);
        s1.produced(None, 10, 1000);
        s1.fsync_us.record(3);
        s1.fsync_us.record(100);
        let p = s1.partition("t", 7).unwrap();
        s1.produced(Some(&p), 5, 50);
        let text = m.encode_text();
        assert!(
            text.contains("shardlog_produce_messages_total{shard=\"1\"} 15"),
            "{text}"
        );
        assert!(text.contains("shardlog_produce_messages_total{shard=\"0\"} 0"));
        assert!(text.contains(
            "shardlog_partition_produce_bytes_total{shard=\"1\",topic=\"t\",partition=\"7\"} 50"
        ));
        assert!(text.contains("shardlog_fsync_latency_seconds_count{shard=\"1\"} 2"));
        assert!(
            text.contains("shardlog_fsync_latency_seconds_bucket{le=\"+Inf\",shard=\"1\"} 2")
                || text
                    .contains("shardlog_fsync_latency_seconds_bucket{shard=\"1\",le=\"+Inf\"} 2")
        );
        s1.forget(&p);
        assert!(!m.encode_text().contains("topic=\"t\""));
    }

    #[test]
    fn labelled_partitions_are_bounded() {
        let s = ShardMetrics::new(0, true);
        let got = (0..100).filter_map(|i| s.partition("t", i)).count();
        assert_eq!(got, MAX_LABELLED_PARTITIONS);
    }

    #[test]
    fn disabled_metrics_count_nothing() {
        let s = ShardMetrics::new(0, false);
        s.produced(None, 1, 1);
        assert_eq!(s.produce_messages.get(), 0);
        assert!(s.partition("t", 0).is_none());
    }
}
