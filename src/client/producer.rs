//! The producer: what users expect of a Kafka producer, over the blocking
//! client. `send` appends a record to its partition's open batch and returns
//! at once with a `DeliveryToken` (or calls a callback later); a background
//! sender thread ships batches when they are full (`batch_bytes`) or have
//! waited `linger`, each to its partition's owner shard (`RoutedClient`),
//! with up to `max_in_flight` requests pipelined per connection.
//!
//! Owns: the accumulator (per-partition open batch and queue of sealed ones,
//! a pure data structure tested without sockets), the partitioners (key hash
//! = Kafka's murmur2, round-robin, sticky per KIP-480), the bound on buffered
//! bytes (`buffer_bytes`: `send` blocks while full, up to `max_block`, then
//! fails with `BufferFull`), retries of retriable failures (connection lost,
//! `ShuttingDown`, `TooManyConnections`) until `delivery_timeout`, and
//! `flush`/`close`.
//!
//! Ordering: a partition's batches carry a sequence number; a batch that
//! must be retried goes back into its partition's queue in sequence order
//! (behind nothing that came after it), and until a retried batch succeeds
//! its partition has one batch in flight at a time. The broker answers a
//! connection's requests in order, and once a connection fails or a shard
//! says `ShuttingDown` every later request on it fails too, so no later
//! batch of the partition can land before the retried one. Without
//! idempotence on the broker a retry may duplicate a batch whose ack was
//! lost (at least once), never reorder first occurrences.
//!
//! Must never: block `send` longer than `max_block`, keep a record past
//! `delivery_timeout` without failing it, hold the state lock across I/O or
//! a user callback, or drop a record silently: every record ends as a
//! delivery (partition, offset) or an error on its token or callback.
//!
//! Known limits: a batch already in flight waits for its answer (at most
//! `client::RESPONSE_TIMEOUT`, the socket's) before its deadline is looked
//! at again; the sender receives answers in send order on one thread, so a
//! slow shard delays the acknowledgements of the others (not their sends).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use thiserror::Error;

use super::blocking::{
    partition_for_key, produce_request, Client, ClientError, RoutedClient, Ticket,
};
use crate::batch::{BatchBuilder, Header, HEADER_BYTES};
use crate::protocol::{Acks, ErrorCode};

/// Largest batch (and so record) the producer builds: under the broker's
/// default `max_batch_bytes` (16 MiB) with room for the request around it.
pub const MAX_BATCH_BYTES: usize = 15 << 20;
/// Upper bound of the framing a record adds to its key, value and headers
/// (length, attributes, timestamp and offset deltas, lengths: varints).
pub const RECORD_OVERHEAD_BYTES: usize = 40;
/// Failures kept for `flush` to report (the count is always exact).
pub const MAX_REPORTED_FAILURES: usize = 64;
/// Longest the sender sleeps without looking at its state (a missed wakeup
/// costs at most this).
const SENDER_IDLE_MAX: Duration = Duration::from_millis(100);
/// Reconnect backoff grows from `retry_backoff` up to this.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Where a record without an explicit partition goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// Kafka's default: a keyed record goes to `murmur2(key) % partitions`
    /// (`client::partition_for_key`); a record without a key is sticky.
    KeyHash,
    /// Every record to the next partition in turn (keys ignored).
    RoundRobin,
    /// KIP-480: stick to one partition until its batch is sealed, then
    /// move to another (keys ignored), so batches fill up.
    Sticky,
}

/// The producer's settings; `ProducerConfig::default()` matches Kafka's
/// defaults where they exist.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// A batch is sealed (and ready to go) once it holds this many bytes.
    pub batch_bytes: usize,
    /// How long a non-full batch waits for more records before it goes.
    pub linger: Duration,
    /// Bound on bytes buffered (accepted by `send`, not yet acknowledged).
    pub buffer_bytes: usize,
    /// How long `send` blocks while the buffer is full (or while the
    /// topic's metadata cannot be fetched) before it fails.
    pub max_block: Duration,
    /// How long a record may take, from `send` to acknowledgement,
    /// retries included, before it fails with `DeliveryTimeout`.
    pub delivery_timeout: Duration,
    /// Pause before a retry and before the first reconnect attempt.
    pub retry_backoff: Duration,
    pub partitioner: Partitioner,
    pub acks: Acks,
    /// Produce requests pipelined per connection (per owner shard).
    pub max_in_flight: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            batch_bytes: 64 * 1024,
            linger: Duration::from_millis(5),
            buffer_bytes: 32 << 20,
            max_block: Duration::from_secs(60),
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            partitioner: Partitioner::KeyHash,
            acks: Acks::Durable,
            max_in_flight: 5,
        }
    }
}

impl ProducerConfig {
    /// Checks the bounds; the error names the setting.
    pub fn validate(&self) -> Result<(), ProducerError> {
        let bad = |m: String| Err(ProducerError::Config(m));
        if self.batch_bytes <= HEADER_BYTES || self.batch_bytes > MAX_BATCH_BYTES {
            return bad(format!(
                "batch_bytes must be {}..={MAX_BATCH_BYTES}, not {}",
                HEADER_BYTES + 1,
                self.batch_bytes
            ));
        }
        if self.buffer_bytes < self.batch_bytes {
            return bad(format!(
                "buffer_bytes ({}) must be at least batch_bytes ({})",
                self.buffer_bytes, self.batch_bytes
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 1024 {
            return bad(format!(
                "max_in_flight must be 1..=1024, not {}",
                self.max_in_flight
            ));
        }
        if self.delivery_timeout.is_zero() {
            return bad("delivery_timeout must be more than 0".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProducerError {
    #[error("invalid producer config: {0}")]
    Config(String),
    #[error("cannot reach the broker: {0}")]
    Connect(String),
    #[error("topic {topic}: {message}")]
    Topic { topic: String, message: String },
    #[error("record of {bytes} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge { bytes: usize, limit: usize },
    #[error("buffer full: {buffered_bytes} of {buffer_bytes} bytes wait for the broker; gave up after max_block ({max_block_ms} ms)")]
    BufferFull {
        buffered_bytes: usize,
        buffer_bytes: usize,
        max_block_ms: u64,
    },
    #[error("partition {partition} of {topic}: not delivered within delivery_timeout ({timeout_ms} ms); last error: {last_error}")]
    DeliveryTimeout {
        topic: String,
        partition: u32,
        timeout_ms: u64,
        last_error: String,
    },
    #[error("partition {partition} of {topic}: the broker refused the batch: {message}")]
    Broker {
        topic: String,
        partition: u32,
        code: ErrorCode,
        message: String,
    },
    #[error("the producer is closed")]
    Closed,
    #[error("no answer within {0} ms")]
    WaitTimeout(u64),
    #[error(
        "{failed_records} records in {failed_batches} batches were not delivered; first: {first}"
    )]
    NotDelivered {
        failed_records: u64,
        failed_batches: u64,
        first: Box<ProducerError>,
    },
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
}

/// Called once per record, on the sender thread, with its outcome. Keep it
/// short: the sender waits for it.
pub type Callback = Box<dyn FnOnce(Result<RecordMetadata, ProducerError>) + Send>;

/// The outcome of one batch, shared by the tokens of its records.
#[derive(Default)]
struct Delivery {
    /// The batch's base offset, or why it failed.
    result: Mutex<Option<Result<i64, ProducerError>>>,
    done: Condvar,
}

impl Delivery {
    fn set(&self, r: Result<i64, ProducerError>) {
        let mut g = lock(&self.result);
        debug_assert!(g.is_none(), "a batch completes once");
        *g = Some(r);
        self.done.notify_all();
    }
}

/// A claim on one record's outcome.
#[derive(Clone)]
pub struct DeliveryToken {
    delivery: Arc<Delivery>,
    topic: Arc<str>,
    partition: u32,
    /// The record's place in its batch (offset = base offset + index).
    index: u32,
}

impl std::fmt::Debug for DeliveryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryToken")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("index", &self.index)
            .finish()
    }
}

impl DeliveryToken {
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The outcome if it is known.
    pub fn try_result(&self) -> Option<Result<RecordMetadata, ProducerError>> {
        let g = lock(&self.delivery.result);
        g.as_ref().map(|r| self.meta(r))
    }

    /// Waits (up to `timeout`) for the record's outcome.
    pub fn wait(&self, timeout: Duration) -> Result<RecordMetadata, ProducerError> {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.delivery.result);
        loop {
            if let Some(r) = g.as_ref() {
                return self.meta(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProducerError::WaitTimeout(timeout.as_millis() as u64));
            }
            g = self
                .delivery
                .done
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn meta(&self, r: &Result<i64, ProducerError>) -> Result<RecordMetadata, ProducerError> {
        match r {
            Ok(base) => Ok(RecordMetadata {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: base + self.index as i64,
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not wedge delivery: the state stays usable
    // (every update below leaves it consistent between statements that
    // can panic).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- the accumulator (pure) ---------------------------------------------------

/// A sealed batch on its way.
pub(crate) struct Batch {
    /// Producer-wide creation order (flush waits for ids below a mark).
    id: u64,
    /// Order within its partition (retries go back in this order).
    seq: u64,
    topic: Arc<str>,
    partition: u32,
    records: Bytes,
    count: u32,
    /// Bytes charged to the buffer.
    charged: usize,
    created: Instant,
    /// Not before this (retry backoff).
    not_before: Option<Instant>,
    attempts: u32,
    last_error: Option<String>,
    delivery: Arc<Delivery>,
    callbacks: Vec<(u32, Callback)>,
}

struct OpenBatch {
    id: u64,
    seq: u64,
    builder: BatchBuilder,
    charged: usize,
    created: Instant,
    delivery: Arc<Delivery>,
    callbacks: Vec<(u32, Callback)>,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    /// Sealed batches, in `seq` order.
    queued: VecDeque<Batch>,
    in_flight: u32,
    /// A batch of this partition is being retried: one in flight at a time
    /// until it succeeds.
    retrying: bool,
    next_seq: u64,
}

struct TopicState {
    name: Arc<str>,
    partitions: Vec<PartitionQueue>,
    /// Sticky partitioner: the current partition.
    sticky: Option<u32>,
    round_robin: u32,
}

/// Every buffered record, by topic and partition; the one piece of state
/// `send` and the sender share (behind one mutex).
pub(crate) struct Accumulator {
    cfg: ProducerConfig,
    topics: HashMap<Arc<str>, TopicState>,
    pub(crate) buffered_bytes: usize,
    next_batch_id: u64,
    /// Ids of batches not yet completed (open, queued or in flight).
    outstanding: BTreeSet<u64>,
    /// Batches below this id go without waiting for `linger` (flush).
    flush_below: u64,
    failures: VecDeque<(u64, u32, ProducerError)>,
    failed_batches: u64,
    failed_records: u64,
    rng: u64,
}

impl Accumulator {
    pub(crate) fn new(cfg: ProducerConfig) -> Accumulator {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        Accumulator {
            cfg,
            topics: HashMap::new(),
            buffered_bytes: 0,
            next_batch_id: 0,
            outstanding: BTreeSet::new(),
            flush_below: 0,
            failures: VecDeque::new(),
            failed_batches: 0,
            failed_records: 0,
            rng: seed,
        }
    }

    /// Partition count of a known topic.
    pub(crate) fn partitions(&self, topic: &str) -> Option<u32> {
        self.topics.get(topic).map(|t| t.partitions.len() as u32)
    }

    pub(crate) fn add_topic(&mut self, topic: &str, partitions: u32) {
        assert!(partitions > 0);
        self.topics
            .entry(Arc::from(topic))
            .or_insert_with(|| TopicState {
                name: Arc::from(topic),
                partitions: (0..partitions).map(|_| PartitionQueue::default()).collect(),
                sticky: None,
                round_robin: 0,
            });
    }

    fn random(&mut self) -> u64 {
        // xorshift64: cheap, good enough to pick a partition.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Bytes a record charges to the buffer.
    pub(crate) fn record_bytes(key: Option<&[u8]>, value: &[u8], headers: &[Header]) -> usize {
        let h: usize = headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 10)
            .sum();
        key.map_or(0, <[u8]>::len) + value.len() + h + RECORD_OVERHEAD_BYTES
    }

    /// The partition a record goes to (the topic must be known).
    pub(crate) fn choose_partition(&mut self, topic: &str, key: Option<&[u8]>) -> u32 {
        let partitioner = self.cfg.partitioner;
        let r = self.random();
        let t = self.topics.get_mut(topic).expect("topic known");
        let n = t.partitions.len() as u32;
        match (partitioner, key) {
            (Partitioner::KeyHash, Some(k)) => partition_for_key(k, n),
            (Partitioner::RoundRobin, _) => {
                let p = t.round_robin % n;
                t.round_robin = t.round_robin.wrapping_add(1);
                p
            }
            (Partitioner::KeyHash | Partitioner::Sticky, _) => {
                *t.sticky.get_or_insert((r % n as u64) as u32)
            }
        }
    }

    /// Whether a record of `bytes` fits in the buffer now.
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.buffered_bytes + bytes <= self.cfg.buffer_bytes
    }

    /// Appends a record to its partition's open batch (sealing the batch
    /// first if the record would overflow it). The caller checked room.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &mut self,
        topic: &str,
        partition: u32,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[Header],
        now: Instant,
        callback: Option<Callback>,
    ) -> DeliveryToken {
        let bytes = Self::record_bytes(key, value, headers);
        let batch_bytes = self.cfg.batch_bytes;
        let ts = unix_ms();
        let t = self.topics.get_mut(topic).expect("topic known");
        let name = t.name.clone();
        let q = &mut t.partitions[partition as usize];
        let full = q
            .open
            .as_ref()
            .is_some_and(|o| !o.builder.is_empty() && o.builder.size_bytes() + bytes > batch_bytes);
        let mut sealed = false;
        if full {
            Self::seal(q, &name, partition);
            sealed = true;
        }
        if q.open.is_none() {
            let id = self.next_batch_id;
            self.next_batch_id += 1;
            self.outstanding.insert(id);
            let seq = q.next_seq;
            q.next_seq += 1;
            q.open = Some(OpenBatch {
                id,
                seq,
                // One allocation per batch (a record larger than a batch
                // gets a batch of its own size).
                builder: BatchBuilder::with_capacity(ts, batch_bytes.max(HEADER_BYTES + bytes)),
                charged: 0,
                created: now,
                delivery: Arc::new(Delivery::default()),
                callbacks: Vec::new(),
            });
        }
        let o = q.open.as_mut().expect("opened above");
        let index = o.builder.len() as u32;
        o.builder.push(ts, key, Some(value), headers);
        o.charged += bytes;
        if let Some(cb) = callback {
            o.callbacks.push((index, cb));
        }
        let token = DeliveryToken {
            delivery: o.delivery.clone(),
            topic: name.clone(),
            partition,
            index,
        };
        if o.builder.size_bytes() >= batch_bytes {
            Self::seal(q, &name, partition);
            sealed = true;
        }
        self.buffered_bytes += bytes;
        // KIP-480: a new batch, a new sticky partition.
        if sealed {
            let n = t.partitions.len() as u64;
            if t.sticky == Some(partition) && n > 1 {
                let r = self.random();
                let t = self.topics.get_mut(topic).expect("topic known");
                let next = (partition as u64 + 1 + r % (n - 1)) % n;
                t.sticky = Some(next as u32);
            }
        }
        token
    }

    fn seal(q: &mut PartitionQueue, topic: &Arc<str>, partition: u32) {
        let Some(o) = q.open.take() else { return };
        let count = o.builder.len() as u32;
        debug_assert!(count > 0);
        let b = Batch {
            id: o.id,
            seq: o.seq,
            topic: topic.clone(),
            partition,
            records: o.builder.finish(),
            count,
            charged: o.charged,
            created: o.created,
            not_before: None,
            attempts: 0,
            last_error: None,
            delivery: o.delivery,
            callbacks: o.callbacks,
        };
        debug_assert!(q.queued.back().is_none_or(|l| l.seq < b.seq));
        q.queued.push_back(b);
    }

    /// Marks everything created so far as due now (flush).
    pub(crate) fn flush_mark(&mut self) -> u64 {
        self.flush_below = self.next_batch_id;
        self.flush_below
    }

    /// Whether every batch below `mark` has completed.
    pub(crate) fn done_below(&self, mark: u64) -> bool {
        self.outstanding.first().is_none_or(|&id| id >= mark)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }

    /// Takes what may be sent now: sealed batches, and open ones whose
    /// linger passed (or that a flush covers), in partition order, at most
    /// one in flight per partition while it retries, and only where
    /// `may_send(topic, partition)` agrees (the sender's per-connection
    /// bound). Batches past `delivery_timeout` come back in `expired`.
    pub(crate) fn ready(
        &mut self,
        now: Instant,
        closing: bool,
        mut may_send: impl FnMut(&str, u32) -> bool,
        out: &mut Vec<Batch>,
        expired: &mut Vec<Batch>,
    ) {
        let linger = self.cfg.linger;
        let timeout = self.cfg.delivery_timeout;
        let flush_below = self.flush_below;
        for t in self.topics.values_mut() {
            for (p, q) in t.partitions.iter_mut().enumerate() {
                let p = p as u32;
                if let Some(o) = &q.open {
                    if closing
                        || o.id < flush_below
                        || now.saturating_duration_since(o.created) >= linger
                    {
                        Self::seal(q, &t.name, p);
                        if t.sticky == Some(p) {
                            t.sticky = None;
                        }
                    }
                }
                // Expire from the front only: a batch behind an unexpired
                // one waits its turn (its own clock still runs).
                while q
                    .queued
                    .front()
                    .is_some_and(|b| now.saturating_duration_since(b.created) >= timeout)
                {
                    let b = q.queued.pop_front().expect("checked");
                    expired.push(b);
                }
                loop {
                    if q.retrying && q.in_flight > 0 {
                        break;
                    }
                    let Some(b) = q.queued.front() else { break };
                    if b.not_before.is_some_and(|nb| nb > now) {
                        break;
                    }
                    if !may_send(&t.name, p) {
                        break;
                    }
                    let b = q.queued.pop_front().expect("checked");
                    q.in_flight += 1;
                    out.push(b);
                }
            }
        }
    }

    /// The earliest time something becomes ready by itself (a linger or a
    /// backoff ending), if anything is waiting.
    pub(crate) fn next_due(&self, now: Instant) -> Option<Instant> {
        let mut due: Option<Instant> = None;
        // Only future times: a batch already due but held back (no
        // connection, a full pipeline) is woken by what holds it back.
        let mut at = |i: Instant| {
            if i > now {
                due = Some(due.map_or(i, |d| d.min(i)));
            }
        };
        for t in self.topics.values() {
            for q in &t.partitions {
                if let Some(o) = &q.open {
                    at(o.created + self.cfg.linger);
                }
                if let Some(b) = q.queued.front() {
                    if let Some(nb) = b.not_before {
                        at(nb);
                    }
                    at(b.created + self.cfg.delivery_timeout);
                }
            }
        }
        due
    }

    /// Puts a batch that failed retriably back in its partition's queue,
    /// in sequence order, to go after `backoff`.
    pub(crate) fn requeue(&mut self, mut b: Batch, error: String, now: Instant, backoff: Duration) {
        let t = self.topics.get_mut(&b.topic).expect("topic of a batch");
        let q = &mut t.partitions[b.partition as usize];
        assert!(q.in_flight > 0, "only a batch in flight is requeued");
        q.in_flight -= 1;
        q.retrying = true;
        b.last_error = Some(error);
        b.not_before = Some(now + backoff);
        let at = q.queued.partition_point(|x| x.seq < b.seq);
        q.queued.insert(at, b);
        // Invariant: the queue stays in sequence order.
        debug_assert!(q
            .queued
            .iter()
            .zip(q.queued.iter().skip(1))
            .all(|(a, b)| a.seq < b.seq));
    }

    /// Ends a batch: success (`Ok(base offset)`) or final failure. Returns
    /// it for the caller to notify outside the lock.
    pub(crate) fn complete(
        &mut self,
        b: &Batch,
        result: &Result<i64, ProducerError>,
        was_in_flight: bool,
    ) {
        if let Some(t) = self.topics.get_mut(&b.topic) {
            let q = &mut t.partitions[b.partition as usize];
            if was_in_flight {
                assert!(q.in_flight > 0);
                q.in_flight -= 1;
            }
            if result.is_ok() {
                q.retrying = false;
            }
        }
        assert!(self.buffered_bytes >= b.charged, "buffer accounting");
        self.buffered_bytes -= b.charged;
        self.outstanding.remove(&b.id);
        if let Err(e) = result {
            self.failed_batches += 1;
            self.failed_records += b.count as u64;
            if self.failures.len() == MAX_REPORTED_FAILURES {
                self.failures.pop_front();
            }
            self.failures.push_back((b.id, b.count, e.clone()));
        }
    }

    /// Takes every batch not in flight (open ones sealed): closing without
    /// waiting.
    pub(crate) fn drain(&mut self) -> Vec<Batch> {
        let mut out = Vec::new();
        for t in self.topics.values_mut() {
            for (p, q) in t.partitions.iter_mut().enumerate() {
                Self::seal(q, &t.name, p as u32);
                out.extend(q.queued.drain(..));
            }
        }
        out
    }

    /// The failures not yet reported, as one error (then forgotten).
    pub(crate) fn take_failures(&mut self) -> Option<ProducerError> {
        if self.failed_batches == 0 {
            return None;
        }
        let first = self
            .failures
            .front()
            .map(|f| f.2.clone())
            .unwrap_or(ProducerError::Closed);
        let e = ProducerError::NotDelivered {
            failed_records: self.failed_records,
            failed_batches: self.failed_batches,
            first: Box::new(first),
        };
        self.failures.clear();
        self.failed_batches = 0;
        self.failed_records = 0;
        Some(e)
    }
}

/// Tells a batch's tokens and callbacks how it ended.
fn notify(b: Batch, result: Result<i64, ProducerError>) {
    for (index, cb) in b.callbacks {
        let r = match &result {
            Ok(base) => Ok(RecordMetadata {
                topic: b.topic.clone(),
                partition: b.partition,
                offset: base + index as i64,
            }),
            Err(e) => Err(e.clone()),
        };
        cb(r);
    }
    b.delivery.set(result);
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Errors worth retrying: the request may succeed on another attempt.
fn retriable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::ShuttingDown | ErrorCode::TooManyConnections
    )
}

// ---- the producer and its sender thread -------------------------------------------

struct Shared {
    acc: Mutex<State>,
    /// The sender has work (a record, a flush, a close).
    work: Condvar,
    /// Buffer space freed, or a batch completed (flush waits on it too).
    space: Condvar,
}

struct State {
    acc: Accumulator,
    /// No more sends; the sender exits once everything completed.
    closing: bool,
    /// Give up on what is left now (close past its timeout).
    abort: bool,
    sender_exited: bool,
}

/// A Kafka-style producer; `send` may be called from many threads at once.
pub struct Producer {
    shared: Arc<Shared>,
    cfg: ProducerConfig,
    addr: String,
    /// Metadata for `send` (partition counts), on its own connection.
    meta: Mutex<Option<Client>>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl Producer {
    /// Starts a producer for the broker at `addr` (its public listener);
    /// the first connection is made here so a wrong address fails at once.
    pub fn new(addr: &str, cfg: ProducerConfig) -> Result<Producer, ProducerError> {
        cfg.validate()?;
        let meta = Client::connect(addr).map_err(|e| ProducerError::Connect(e.to_string()))?;
        let shared = Arc::new(Shared {
            acc: Mutex::new(State {
                acc: Accumulator::new(cfg.clone()),
                closing: false,
                abort: false,
                sender_exited: false,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
        });
        let mut sender = Sender {
            shared: shared.clone(),
            addr: addr.to_owned(),
            cfg: cfg.clone(),
            rc: None,
            known: HashMap::new(),
            in_flight: VecDeque::new(),
            per_conn: HashMap::new(),
            reconnect_at: None,
            reconnect_backoff: cfg.retry_backoff,
        };
        let handle = std::thread::Builder::new()
            .name("shardlog-producer".into())
            .spawn(move || sender.run())
            .map_err(|e| ProducerError::Connect(format!("cannot start the sender thread: {e}")))?;
        Ok(Producer {
            shared,
            cfg,
            addr: addr.to_owned(),
            meta: Mutex::new(Some(meta)),
            sender: Mutex::new(Some(handle)),
        })
    }

    /// Queues a record; returns once it is in a batch (or fails: the topic
    /// is unknown, the record too large, or the buffer stayed full for
    /// `max_block`). The token tells where it landed.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[Header],
    ) -> Result<DeliveryToken, ProducerError> {
        self.send_inner(topic, None, key, value, headers, None)
    }

    /// As `send`, to a given partition.
    pub fn send_to(
        &self,
        topic: &str,
        partition: u32,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[Header],
    ) -> Result<DeliveryToken, ProducerError> {
        self.send_inner(topic, Some(partition), key, value, headers, None)
    }

    /// As `send`; `callback` runs on the sender thread with the outcome.
    pub fn send_with_callback(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[Header],
        callback: Callback,
    ) -> Result<(), ProducerError> {
        self.send_inner(topic, None, key, value, headers, Some(callback))
            .map(|_| ())
    }

    fn send_inner(
        &self,
        topic: &str,
        partition: Option<u32>,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[Header],
        callback: Option<Callback>,
    ) -> Result<DeliveryToken, ProducerError> {
        let start = Instant::now();
        let deadline = start + self.cfg.max_block;
        let bytes = Accumulator::record_bytes(key, value, headers);
        let limit = (MAX_BATCH_BYTES - HEADER_BYTES).min(self.cfg.buffer_bytes);
        if bytes > limit {
            return Err(ProducerError::RecordTooLarge { bytes, limit });
        }
        let partitions = self.partitions_of(topic, deadline)?;
        if let Some(p) = partition {
            if p >= partitions {
                return Err(ProducerError::Topic {
                    topic: topic.to_owned(),
                    message: format!("no partition {p} (it has {partitions})"),
                });
            }
        }
        let mut st = lock(&self.shared.acc);
        loop {
            if st.closing {
                return Err(ProducerError::Closed);
            }
            if st.acc.has_room(bytes) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProducerError::BufferFull {
                    buffered_bytes: st.acc.buffered_bytes,
                    buffer_bytes: self.cfg.buffer_bytes,
                    max_block_ms: self.cfg.max_block.as_millis() as u64,
                });
            }
            st = self
                .shared
                .space
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let p = match partition {
            Some(p) => p,
            None => st.acc.choose_partition(topic, key),
        };
        let token = st
            .acc
            .append(topic, p, key, value, headers, Instant::now(), callback);
        drop(st);
        // A new open batch sets a linger deadline, a sealed one is ready:
        // wake the sender (cheap when it is not waiting).
        self.shared.work.notify_one();
        Ok(token)
    }

    /// The topic's partition count, fetched once (retried until `deadline`
    /// while the broker cannot be reached).
    fn partitions_of(&self, topic: &str, deadline: Instant) -> Result<u32, ProducerError> {
        if let Some(n) = lock(&self.shared.acc).acc.partitions(topic) {
            return Ok(n);
        }
        let mut meta = lock(&self.meta);
        loop {
            let last = match meta.as_mut() {
                None => match Client::connect(&self.addr) {
                    Ok(c) => {
                        *meta = Some(c);
                        continue;
                    }
                    Err(e) => e.to_string(),
                },
                Some(c) => match c.topic(topic) {
                    Ok(info) if info.partitions.is_empty() => {
                        return Err(ProducerError::Topic {
                            topic: topic.to_owned(),
                            message: "it has no partitions".into(),
                        })
                    }
                    Ok(info) => {
                        let n = info.partitions.len() as u32;
                        let mut st = lock(&self.shared.acc);
                        st.acc.add_topic(topic, n);
                        return Ok(st.acc.partitions(topic).unwrap_or(n));
                    }
                    Err(e) if e.code().is_some_and(|c| !retriable(c)) => {
                        return Err(ProducerError::Topic {
                            topic: topic.to_owned(),
                            message: e.to_string(),
                        })
                    }
                    Err(e) => {
                        *meta = None;
                        e.to_string()
                    }
                },
            };
            if Instant::now() >= deadline {
                return Err(ProducerError::Connect(format!(
                    "no metadata for topic {topic} within max_block ({} ms): {last}",
                    self.cfg.max_block.as_millis()
                )));
            }
            std::thread::sleep(self.cfg.retry_backoff.min(Duration::from_millis(100)));
        }
    }

    /// Sends everything queued so far without waiting for linger, and waits
    /// (up to `timeout`) until each of those records is delivered or
    /// failed. Failures since the last report come back as one
    /// `NotDelivered` error.
    pub fn flush(&self, timeout: Duration) -> Result<(), ProducerError> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.acc);
        let mark = st.acc.flush_mark();
        self.shared.work.notify_one();
        while !st.acc.done_below(mark) {
            if st.sender_exited {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ProducerError::WaitTimeout(timeout.as_millis() as u64));
            }
            st = self
                .shared
                .space
                .wait_timeout(st, left.min(SENDER_IDLE_MAX))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        match st.acc.take_failures() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Delivers what is buffered (up to `timeout`), fails the rest with
    /// `Closed`, and stops the sender. Reports what failed.
    pub fn close(&self, timeout: Duration) -> Result<(), ProducerError> {
        let deadline = Instant::now() + timeout;
        let flushed = self.flush(timeout);
        // What is still queued fails here and now; what is in flight the
        // sender fails as soon as it sees `abort`.
        let drained = {
            let mut st = lock(&self.shared.acc);
            st.closing = true;
            if st.acc.is_empty() {
                Vec::new()
            } else {
                st.abort = true;
                let left = st.acc.drain();
                for b in &left {
                    st.acc.complete(b, &Err(ProducerError::Closed), false);
                }
                left
            }
        };
        for b in drained {
            notify(b, Err(ProducerError::Closed));
        }
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        // The sender may sit in a blocking receive (bounded by the client's
        // response timeout): wait for it only until the deadline.
        let mut st = lock(&self.shared.acc);
        while !st.sender_exited {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .shared
                .space
                .wait_timeout(st, left.min(SENDER_IDLE_MAX))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let exited = st.sender_exited;
        let late = st.acc.take_failures();
        drop(st);
        if exited {
            if let Some(h) = lock(&self.sender).take() {
                let _ = h.join();
            }
        }
        match (flushed, late) {
            (Err(ProducerError::NotDelivered { .. }), Some(e)) => Err(e),
            (Err(e), None) => Err(e),
            (_, Some(e)) => Err(e),
            (Ok(()), None) => Ok(()),
        }
    }
}

impl Drop for Producer {
    /// Not closed explicitly: give it a short while to deliver, then fail
    /// what is left (tokens and callbacks still hear about it).
    fn drop(&mut self) {
        let _ = self.close(Duration::from_secs(5));
    }
}

struct InFlight {
    ticket: Ticket,
    conn: Option<u16>,
    batch: Batch,
}

struct Sender {
    shared: Arc<Shared>,
    addr: String,
    cfg: ProducerConfig,
    rc: Option<RoutedClient>,
    /// Topics this connection knows, with each partition's owner
    /// connection (None: the public one).
    known: HashMap<Arc<str>, Vec<Option<u16>>>,
    in_flight: VecDeque<InFlight>,
    per_conn: HashMap<Option<u16>, usize>,
    reconnect_at: Option<Instant>,
    reconnect_backoff: Duration,
}

impl Sender {
    fn run(&mut self) {
        let mut ready = Vec::new();
        let mut expired = Vec::new();
        loop {
            let now = Instant::now();
            if self.rc.is_none() && self.reconnect_at.is_none_or(|t| t <= now) {
                self.connect();
            }
            let mut st = lock(&self.shared.acc);
            if st.abort {
                let mut left = st.acc.drain();
                left.extend(self.in_flight.drain(..).map(|f| f.batch));
                for b in &left {
                    st.acc.complete(b, &Err(ProducerError::Closed), false);
                }
                st.sender_exited = true;
                drop(st);
                for b in left {
                    notify(b, Err(ProducerError::Closed));
                }
                self.shared.space.notify_all();
                return;
            }
            if st.closing && st.acc.is_empty() && self.in_flight.is_empty() {
                st.sender_exited = true;
                drop(st);
                self.shared.space.notify_all();
                return;
            }
            let closing = st.closing;
            if self.rc.is_some() {
                let (known, per_conn, max) =
                    (&self.known, &mut self.per_conn, self.cfg.max_in_flight);
                st.acc.ready(
                    now,
                    closing,
                    |t, p| {
                        let conn = known
                            .get(t)
                            .and_then(|o| o.get(p as usize).copied())
                            .flatten();
                        let c = per_conn.entry(conn).or_default();
                        if *c < max {
                            *c += 1;
                            true
                        } else {
                            false
                        }
                    },
                    &mut ready,
                    &mut expired,
                );
            } else {
                st.acc
                    .ready(now, closing, |_, _| false, &mut ready, &mut expired);
            }
            for b in &expired {
                let e = timeout_error(b, &self.cfg);
                st.acc.complete(b, &Err(e), false);
            }
            if ready.is_empty() && self.in_flight.is_empty() && expired.is_empty() {
                let mut wait = SENDER_IDLE_MAX;
                if let Some(d) = st.acc.next_due(now) {
                    wait = wait.min(d.saturating_duration_since(now));
                }
                if let Some(r) = self.reconnect_at {
                    wait = wait.min(r.saturating_duration_since(now));
                }
                if !wait.is_zero() {
                    let _ = self.shared.work.wait_timeout(st, wait);
                }
                continue;
            }
            drop(st);
            if !expired.is_empty() {
                for b in expired.drain(..) {
                    let e = timeout_error(&b, &self.cfg);
                    notify(b, Err(e));
                }
                self.shared.space.notify_all();
            }
            self.send_all(&mut ready);
            if let Some(f) = self.in_flight.pop_front() {
                self.receive(f);
            }
        }
    }

    fn connect(&mut self) {
        match RoutedClient::connect(&self.addr) {
            Ok(rc) => {
                self.rc = Some(rc);
                self.reconnect_at = None;
                self.reconnect_backoff = self.cfg.retry_backoff;
            }
            Err(_) => {
                self.reconnect_at = Some(Instant::now() + self.reconnect_backoff);
                self.reconnect_backoff = (self.reconnect_backoff * 2).min(RECONNECT_BACKOFF_MAX);
            }
        }
    }

    /// Sends the ready batches in order; on a connection failure every batch
    /// not acknowledged goes back to its queue.
    fn send_all(&mut self, ready: &mut Vec<Batch>) {
        let mut it = std::mem::take(ready).into_iter();
        while let Some(mut b) = it.next() {
            // The pipeline slot `ready` counted, under the owner known then
            // (None while the topic was not known yet).
            let slot = self
                .known
                .get(&b.topic)
                .and_then(|o| o.get(b.partition as usize).copied())
                .flatten();
            let Some(rc) = self.rc.as_mut() else {
                let mut rest = vec![b];
                rest.extend(it);
                self.connection_lost(rest, "not connected".into());
                return;
            };
            if !self.known.contains_key(&b.topic) {
                match rc.topic(&b.topic) {
                    Ok(n) => {
                        let owners = (0..n).map(|p| rc.owner(&b.topic, p)).collect();
                        self.known.insert(b.topic.clone(), owners);
                    }
                    Err(e) if e.code().is_some() => {
                        let err = ProducerError::Topic {
                            topic: b.topic.to_string(),
                            message: e.to_string(),
                        };
                        self.release_slot(slot);
                        self.finish(b, Err(err), true);
                        continue;
                    }
                    Err(e) => {
                        let mut rest = vec![b];
                        rest.extend(it);
                        self.connection_lost(rest, e.to_string());
                        return;
                    }
                }
            }
            let conn = slot;
            b.attempts += 1;
            let req = produce_request(&b.topic, b.partition, b.records.clone(), self.cfg.acks);
            match rc.send_for(&b.topic, b.partition, req) {
                Ok(ticket) => self.in_flight.push_back(InFlight {
                    ticket,
                    conn,
                    batch: b,
                }),
                Err(e) => {
                    let mut rest = vec![b];
                    rest.extend(it);
                    self.connection_lost(rest, e.to_string());
                    return;
                }
            }
        }
    }

    fn receive(&mut self, f: InFlight) {
        let Some(rc) = self.rc.as_mut() else {
            self.connection_lost(vec![f.batch], "not connected".into());
            return;
        };
        let r = rc.recv_produce(f.ticket);
        self.release_slot(f.conn);
        match r {
            Ok(base) => self.finish(f.batch, Ok(base), true),
            Err(ClientError::Broker(e)) if retriable(e.code) => {
                let now = Instant::now();
                let mut st = lock(&self.shared.acc);
                st.acc
                    .requeue(f.batch, e.message, now, self.cfg.retry_backoff);
            }
            Err(ClientError::Broker(e)) => {
                let err = ProducerError::Broker {
                    topic: f.batch.topic.to_string(),
                    partition: f.batch.partition,
                    code: e.code,
                    message: e.message,
                };
                self.finish(f.batch, Err(err), true);
            }
            // The connection is broken or out of step: nothing more will
            // come back on it.
            Err(e) => self.connection_lost(vec![f.batch], e.to_string()),
        }
    }

    fn release_slot(&mut self, conn: Option<u16>) {
        if let Some(c) = self.per_conn.get_mut(&conn) {
            *c = c.saturating_sub(1);
        }
    }

    fn finish(&mut self, b: Batch, result: Result<i64, ProducerError>, in_flight: bool) {
        lock(&self.shared.acc).acc.complete(&b, &result, in_flight);
        self.shared.space.notify_all();
        notify(b, result);
    }

    /// Drops the connections; `first` (batches taken from their queues but
    /// not acknowledged) and everything in flight go back to their queues
    /// in sequence order, to be resent after a reconnect.
    fn connection_lost(&mut self, first: Vec<Batch>, error: String) {
        self.rc = None;
        self.known.clear();
        self.per_conn.clear();
        let now = Instant::now();
        self.reconnect_at = Some(now + self.reconnect_backoff);
        let mut st = lock(&self.shared.acc);
        for b in first
            .into_iter()
            .chain(self.in_flight.drain(..).map(|f| f.batch))
        {
            st.acc
                .requeue(b, error.clone(), now, self.cfg.retry_backoff);
        }
    }
}

fn timeout_error(b: &Batch, cfg: &ProducerConfig) -> ProducerError {
    ProducerError::DeliveryTimeout {
        topic: b.topic.to_string(),
        partition: b.partition,
        timeout_ms: cfg.delivery_timeout.as_millis() as u64,
        last_error: b.last_error.clone().unwrap_or_else(|| "none".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Records;

    fn cfg() -> ProducerConfig {
        ProducerConfig {
            batch_bytes: 1024,
            linger: Duration::from_millis(50),
            buffer_bytes: 8 * 1024,
            ..ProducerConfig::default()
        }
    }

    fn acc(c: ProducerConfig, partitions: u32) -> Accumulator {
        let mut a = Accumulator::new(c);
        a.add_topic("t", partitions);
        a
    }

    fn take(a: &mut Accumulator, now: Instant) -> Vec<Batch> {
        let (mut out, mut exp) = (Vec::new(), Vec::new());
        a.ready(now, false, |_, _| true, &mut out, &mut exp);
        assert!(exp.is_empty());
        out
    }

    fn values(b: &Batch) -> Vec<Vec<u8>> {
        Records::new(b.records.clone())
            .unwrap()
            .map(|r| r.unwrap().value.unwrap().to_vec())
            .collect()
    }

    #[test]
    fn a_batch_is_sealed_when_the_next_record_would_overflow_batch_bytes() {
        let mut a = acc(cfg(), 1);
        let now = Instant::now();
        for i in 0..10u8 {
            a.append("t", 0, None, &[i; 200], &[], now, None);
        }
        // 200-byte values: four fit in 1024 bytes with the header, the
        // fifth opens a new batch. Before linger only full ones are ready.
        let ready = take(&mut a, now);
        assert_eq!(ready.len(), 2);
        assert!(ready.iter().all(|b| b.records.len() <= 1024));
        assert_eq!(values(&ready[0]).len(), 4);
        assert_eq!(values(&ready[1])[0], vec![4u8; 200]);
        assert!(ready[0].seq < ready[1].seq);
    }

    #[test]
    fn an_open_batch_goes_after_linger_or_at_a_flush() {
        let mut a = acc(cfg(), 1);
        let now = Instant::now();
        a.append("t", 0, None, b"x", &[], now, None);
        assert!(take(&mut a, now).is_empty());
        assert_eq!(a.next_due(now), Some(now + Duration::from_millis(50)));
        assert_eq!(take(&mut a, now + Duration::from_millis(50)).len(), 1);

        a.append("t", 0, None, b"y", &[], now, None);
        let mark = a.flush_mark();
        let b = take(&mut a, now);
        assert_eq!(b.len(), 1);
        assert!(!a.done_below(mark));
        a.complete(&b[0], &Ok(7), true);
        assert!(!a.done_below(mark), "the first batch is still out");
    }

    #[test]
    fn buffer_bytes_are_charged_on_append_and_released_on_completion() {
        let mut a = acc(cfg(), 1);
        let now = Instant::now();
        let per = Accumulator::record_bytes(None, &[0; 1000], &[]);
        let mut n = 0;
        while a.has_room(per) {
            a.append("t", 0, None, &[0; 1000], &[], now, None);
            n += 1;
        }
        assert_eq!(n, 8 * 1024 / per);
        assert_eq!(a.buffered_bytes, n * per);
        let batches = take(&mut a, now + Duration::from_secs(1));
        for b in &batches {
            a.complete(b, &Ok(0), true);
        }
        assert_eq!(a.buffered_bytes, 0);
        assert!(a.is_empty());
    }

    #[test]
    fn retried_batches_go_back_in_sequence_order_one_in_flight_at_a_time() {
        let mut a = acc(cfg(), 1);
        let now = Instant::now();
        for i in 0..12u8 {
            a.append("t", 0, None, &[i; 300], &[], now, None);
        }
        let later = now + Duration::from_secs(1);
        let mut sent = take(&mut a, later);
        assert_eq!(sent.len(), 4);
        let seqs: Vec<u64> = sent.iter().map(|b| b.seq).collect();
        // The connection fails: they come back in reverse completion order
        // of no particular kind; the queue puts them in sequence order.
        let b3 = sent.pop().unwrap();
        let b0 = sent.remove(0);
        a.requeue(b3, "lost".into(), now, Duration::ZERO);
        a.requeue(b0, "lost".into(), now, Duration::ZERO);
        for b in sent.into_iter().rev() {
            a.requeue(b, "lost".into(), now, Duration::ZERO);
        }
        // Retrying: the first alone; once it succeeded, the rest in order.
        let first = take(&mut a, later);
        assert_eq!(first.len(), 1, "one in flight while retrying");
        assert!(take(&mut a, later).is_empty());
        a.complete(&first[0], &Ok(0), true);
        let rest = take(&mut a, later);
        let got: Vec<u64> = first.iter().chain(&rest).map(|b| b.seq).collect();
        assert_eq!(got, seqs);
    }

    #[test]
    fn retry_waits_for_its_backoff() {
        let mut a = acc(cfg(), 1);
        let now = Instant::now();
        a.append("t", 0, None, b"x", &[], now, None);
        let b = take(&mut a, now + Duration::from_secs(1)).pop().unwrap();
        a.requeue(b, "ShuttingDown".into(), now, Duration::from_secs(5));
        assert!(take(&mut a, now + Duration::from_secs(4)).is_empty());
        assert_eq!(take(&mut a, now + Duration::from_secs(5)).len(), 1);
    }

    #[test]
    fn batches_past_delivery_timeout_expire_with_their_last_error() {
        let c = ProducerConfig {
            delivery_timeout: Duration::from_secs(2),
            ..cfg()
        };
        let mut a = acc(c.clone(), 1);
        let now = Instant::now();
        a.append("t", 0, None, b"x", &[], now, None);
        let b = take(&mut a, now + Duration::from_secs(1)).pop().unwrap();
        a.requeue(b, "connection refused".into(), now, Duration::ZERO);
        let (mut out, mut exp) = (Vec::new(), Vec::new());
        a.ready(
            now + Duration::from_secs(2),
            false,
            |_, _| true,
            &mut out,
            &mut exp,
        );
        assert!(out.is_empty());
        assert_eq!(exp.len(), 1);
        let e = timeout_error(&exp[0], &c);
        assert!(e.to_string().contains("connection refused"), "{e}");
        a.complete(&exp[0], &Err(e), false);
        assert_eq!(a.buffered_bytes, 0);
        match a.take_failures() {
            Some(ProducerError::NotDelivered { failed_records, .. }) => {
                assert_eq!(failed_records, 1)
            }
            other => panic!("{other:?}"),
        }
        assert!(a.take_failures().is_none(), "reported once");
    }

    #[test]
    fn key_hash_matches_kafka_and_keyless_records_stick() {
        let mut a = acc(cfg(), 7);
        for k in [&b"a"[..], b"user-42", b"zzz"] {
            assert_eq!(a.choose_partition("t", Some(k)), partition_for_key(k, 7));
        }
        let p = a.choose_partition("t", None);
        for _ in 0..10 {
            assert_eq!(a.choose_partition("t", None), p);
        }
    }

    #[test]
    fn sticky_moves_to_another_partition_when_its_batch_seals() {
        let c = ProducerConfig {
            partitioner: Partitioner::Sticky,
            buffer_bytes: 1 << 20,
            ..cfg()
        };
        let mut a = acc(c, 4);
        let now = Instant::now();
        let mut seen = Vec::new();
        for _ in 0..40 {
            let p = a.choose_partition("t", Some(b"ignored"));
            a.append("t", p, None, &[0; 300], &[], now, None);
            if seen.last() != Some(&p) {
                seen.push(p);
            }
        }
        // 3 records per batch: it changed partition after every batch,
        // never to the same one.
        assert!(seen.len() >= 8, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] != w[1]));
    }

    #[test]
    fn round_robin_cycles_over_every_partition() {
        let c = ProducerConfig {
            partitioner: Partitioner::RoundRobin,
            ..cfg()
        };
        let mut a = acc(c, 3);
        let got: Vec<u32> = (0..6)
            .map(|_| a.choose_partition("t", Some(b"k")))
            .collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn tokens_and_callbacks_get_offsets_from_the_batch_base() {
        let mut a = acc(cfg(), 1);
        let now = Instant::now();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let t0 = a.append("t", 0, None, b"a", &[], now, None);
        let cb: Callback = Box::new(move |r| s.lock().unwrap().push(r.unwrap().offset));
        a.append("t", 0, None, b"b", &[], now, Some(cb));
        let b = take(&mut a, now + Duration::from_secs(1)).pop().unwrap();
        assert!(t0.try_result().is_none());
        a.complete(&b, &Ok(100), true);
        notify(b, Ok(100));
        assert_eq!(t0.wait(Duration::ZERO).unwrap().offset, 100);
        assert_eq!(*seen.lock().unwrap(), vec![101]);
    }

    #[test]
    fn bad_configs_are_refused_by_name() {
        let e = |c: ProducerConfig| c.validate().unwrap_err().to_string();
        assert!(e(ProducerConfig {
            batch_bytes: 10,
            ..cfg()
        })
        .contains("batch_bytes"));
        assert!(e(ProducerConfig {
            buffer_bytes: 100,
            ..cfg()
        })
        .contains("buffer_bytes"));
        assert!(e(ProducerConfig {
            max_in_flight: 0,
            ..cfg()
        })
        .contains("max_in_flight"));
    }
}
