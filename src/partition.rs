//! One partition: what its log means. The bytes live in a
//! `storage::log::Log`; this room decides what they are and when they
//! count.
//!
//! Owns: produce validation (all batches of a run checked before any is
//! appended), offset assignment (patching each batch's base offset in
//! place), idempotent producers' sequence state, the levels a produce waits
//! for, the high watermark (what consumers may see: written, and fsynced
//! under `--fsync always`), group commit (one write stage covers every
//! batch appended while the previous one ran, one fdatasync stage every
//! batch written while the previous one ran), and the refusal of writes
//! after a failed stage.
//!
//! Must never: be touched by a shard that does not own it (it is `!Send`:
//! `Rc` + `RefCell`, no locks), acknowledge a batch before the write (and
//! fdatasync, when the caller asked for durability under `always`) covering
//! it returned, or decode records on the produce path (work is per batch).

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::batch::{self, BatchError, OffsetChain, Records};
use crate::cache::{BatchCache, CacheBudget, Lookup};
use crate::chain::Chain;
use crate::memory::MemoryGauge;
use crate::metrics::{PartitionMetrics, ShardMetrics};
use crate::producer_state::{self, Check, EndedTxn, ProducerStates, SequenceError};
use crate::rt;
use crate::storage::aborted::AbortedLog;
pub use crate::storage::log::{IoCounts, Retained};
use crate::storage::log::{Log, StageError, Visible};
use crate::storage::meta::LogConfig;
use crate::storage::txnindex::{self, AbortedTxn, OpenTxns};
use crate::storage::txnopen::TxnSnapshots;
use crate::storage::{cleaner, compact};
use crate::storage::{partition_dir, segment, StorageError};

/// When appended bytes are fdatasync'ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before a durable produce is acknowledged (group commit).
    Always,
    /// Every this often, for whatever was written since (Kafka's `flush.ms`).
    /// A durable produce is acknowledged once written: a crash of the broker
    /// loses nothing (O_DIRECT writes reach the device), a power loss at most
    /// the last interval.
    Interval(Duration),
    /// Never explicitly: the kernel writes O_DIRECT data to the device at
    /// once, but the device cache and file metadata are flushed only when a
    /// segment is sealed and on shutdown.
    Never,
}

impl FsyncPolicy {
    /// Parses `always`, `never` or `interval:MS`.
    pub fn parse(s: &str) -> Result<FsyncPolicy, String> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::Interval(Duration::from_millis(ms))),
                _ => Err(format!(
                    "{s:?} is not an fsync policy: use always, never or interval:MS (MS > 0)"
                )),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct PartitionConfig {
    pub fsync: FsyncPolicy,
    pub tail_buffer_bytes: usize,
    /// The shard's gauge of unwritten bytes (unlimited by default).
    pub memory: Rc<MemoryGauge>,
    /// Largest record-batch run accepted in one produce for one partition.
    pub max_batch_bytes: usize,
    /// Roll and retention (the topic's overrides already applied); the
    /// value at open: `Partition::set_topic_config` changes it live.
    pub log: LogConfig,
    /// The topic was ever compacted: its log may have offset holes
    /// (`TopicMeta::offset_holes`).
    pub offset_holes: bool,
    /// The shard's metrics (detached by default).
    pub metrics: Arc<ShardMetrics>,
    /// The shard's batch cache limit, shared by its partitions.
    pub cache: Rc<CacheBudget>,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            fsync: FsyncPolicy::Always,
            tail_buffer_bytes: segment::TAIL_BUFFER_BYTES,
            memory: MemoryGauge::new(u64::MAX),
            max_batch_bytes: 16 << 20,
            log: LogConfig::default(),
            offset_holes: false,
            metrics: ShardMetrics::detached(),
            cache: CacheBudget::new(64 << 20, ShardMetrics::detached()),
        }
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PartitionError {
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),
    #[error("offset {offset} is out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        high_watermark: i64,
    },
    /// The message of the storage error; after a failed write or fdatasync the
    /// partition refuses writes (reads up to the high watermark go on) until
    /// the broker restarts and recovers the log.
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("{bytes} bytes of batches exceed the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    #[error("produce carries no record batch")]
    Empty,
    /// Kafka's rule for cleanup.policy=compact: the cleaner keeps the newest
    /// record per key, so a record without one has no place in the log.
    /// `records`: the positions (0-based, over every record of the
    /// produce) of each record without a key, so a client can tell the
    /// refused records from those refused only for sharing their batch.
    #[error(
        "compacted topic cannot accept a record without a key ({} without one, the first at record {})",
        records.len(),
        records[0]
    )]
    KeylessRecord { records: Vec<u32> },
    #[error("partition is closed: the broker is shutting down or the topic was deleted")]
    Closed,
    /// Idempotent produce: a sequence gap, a stale epoch, or a batch kind
    /// shardlog does not take (transactional).
    #[error("{0}")]
    Sequence(#[from] SequenceError),
}

impl From<StorageError> for PartitionError {
    fn from(e: StorageError) -> Self {
        PartitionError::Storage(e.to_string())
    }
}

/// Every record of a produce to a compacted topic has a key. Decodes the
/// records (decompressing within `batch::MAX_DECOMPRESSED_BYTES`), which
/// only compacted topics pay for.
fn check_keys(records: &Bytes, headers: &[batch::BatchHeader]) -> Result<(), PartitionError> {
    let mut at = 0;
    let mut position = 0u32;
    let mut keyless = Vec::new();
    for h in headers {
        let one = records.slice(at..at + h.total_bytes());
        at += h.total_bytes();
        for r in Records::new(one)? {
            if r?.key.is_none() {
                keyless.push(position);
            }
            position += 1;
        }
    }
    if keyless.is_empty() {
        Ok(())
    } else {
        Err(PartitionError::KeylessRecord { records: keyless })
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    /// One past the last offset appended: what a flush must cover.
    pub next_offset: i64,
}

/// How far a flush must get before the caller goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Written to the segment file (O_DIRECT: on the device, maybe in its cache).
    Written,
    /// Covered by a returned fdatasync.
    Synced,
}

/// What a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutput {
    /// Whole batches, exactly as stored, in fragments (see `chain`).
    pub records: Chain,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub last_stable_offset: i64,
    /// read_committed: (producer id, first offset) of the aborted
    /// transactions from the read offset up to the last stable offset.
    pub aborted: Vec<(i64, i64)>,
}

/// Bytes at the end of a partition's log whose batch headers rebuild the
/// idempotent producers' state when it opens (ARCHITECTURE.md: a retry
/// after a restart is recognised if its original lies in this window).
pub const PRODUCER_REBUILD_BYTES: u64 = 16 << 20;

/// Appended bytes between two records of the open transactions (while any
/// are open): half the replay window, so that a transaction older than the
/// window was recorded at an offset inside it.
pub const TXN_RECORD_EVERY: u64 = PRODUCER_REBUILD_BYTES / 2;

/// Bytes of a batch the broker rewrites: base offset and leader epoch.
const PATCHED_PREFIX_BYTES: usize = 16;

/// The whole batches of `run` whose base offset is below `upper`.
fn below(run: Bytes, upper: i64) -> Bytes {
    let mut pos = 0;
    while run.len() - pos >= batch::LOG_OVERHEAD {
        let b = &run[pos..];
        let base = i64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
        let len = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
        let total = batch::LOG_OVERHEAD + len.max(0) as usize;
        if base >= upper || total > b.len() {
            break;
        }
        pos += total;
    }
    run.slice(..pos)
}

fn closed() -> PartitionError {
    PartitionError::Closed
}

struct State {
    next_offset: i64,
    /// Offsets below this are written to their segment files.
    written_offset: i64,
    /// Offsets below this are covered by an fdatasync.
    synced_offset: i64,
    high_watermark: i64,
    failed: Option<String>,
    /// Set by `close`: appends are refused from then on.
    closing: bool,
    /// Idempotent producers' last batches: checked and updated in the same
    /// synchronous step as the append (`append`).
    producers: ProducerStates,
    /// Bytes appended since the last open-transactions check point.
    since_txn_record: u64,
    /// The open transactions at a check point, waiting for what lies
    /// below it to be durable before `txn_records` writes them.
    txn_record: Option<OpenTxns>,
}

impl State {
    fn check_writable(&self) -> Result<(), PartitionError> {
        if let Some(f) = &self.failed {
            return Err(PartitionError::Storage(f.clone()));
        }
        if self.closing {
            return Err(closed());
        }
        Ok(())
    }
}

pub struct Partition {
    topic: String,
    id: u32,
    /// Its `log` and `max_batch_bytes` are the values at open; the live
    /// ones are `settings` (IncrementalAlterConfigs changes them).
    config: PartitionConfig,
    settings: Cell<Settings>,
    log: Log,
    state: RefCell<State>,
    /// Bytes this partition holds in the shard's memory gauge.
    counted: Cell<u64>,
    /// Notified when the high watermark moves (and on close): long-polling
    /// fetches wait on it.
    data: Rc<rt::Event>,
    /// This partition's own labelled series, if it got a slot.
    labelled: Option<Arc<PartitionMetrics>>,
    /// Recent batches as they arrived: what caught-up consumers read.
    cache: BatchCache,
    /// Compaction's progress (compacted topics only).
    cleaner: Cell<CleanerStatus>,
    /// Aborted transactions in marker order, for read_committed fetches
    /// (Kafka's `.txnindex` entries, in memory and in one file).
    aborted: AbortedLog,
    /// The open transactions every `TXN_RECORD_EVERY` bytes, so that a
    /// restart knows those older than the tail it replays.
    txn_records: TxnSnapshots,
}

/// The topic settings a partition applies now: changed live by
/// `Partition::set_topic_config` (the owner shard, after the controller
/// stored them).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Settings {
    log: LogConfig,
    max_batch_bytes: usize,
}

/// Where compaction stands on one partition, for `/metrics` and `topic
/// describe`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CleanerStatus {
    /// Where the part no cleaning covered starts (the checkpoint).
    pub checkpoint: Option<i64>,
    /// Dirty bytes over cleanable bytes at the last look (0 when nothing
    /// is cleanable).
    pub dirty_ratio: f64,
    /// Cleanings done since the partition opened, and their totals.
    pub runs: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Wall-clock ms when the last cleaning ended (-1: none yet).
    pub last_run_ms: i64,
}

impl Partition {
    /// Opens (or creates) the partition's log and recovers it (see
    /// `Log::open`), then rebuilds its idempotent producers from the tail.
    pub async fn open(
        data_dir: &Path,
        topic: &str,
        id: u32,
        config: PartitionConfig,
    ) -> Result<Rc<Partition>, StorageError> {
        let visible = match config.fsync {
            FsyncPolicy::Always => Visible::Synced,
            FsyncPolicy::Never | FsyncPolicy::Interval(_) => Visible::Written,
        };
        let log = Log::open(
            partition_dir(data_dir, topic, id),
            format!("{topic}/{id}"),
            config.tail_buffer_bytes,
            visible,
            // A compacted log has holes where cleanings dropped records.
            if config.log.cleanup_policy.compact || config.offset_holes {
                OffsetChain::Increasing
            } else {
                OffsetChain::Contiguous
            },
            &config.metrics,
        )
        .await?;
        let next = log.next_offset();
        let mut producers = ProducerStates::default();
        // Transactions open at the newest record seed the state, and the
        // replay starts at or below the record's offset: it ends those that
        // ended since and sees every one begun since.
        let (txn_records, record) = TxnSnapshots::load(log.dir()).await?;
        let mut window = PRODUCER_REBUILD_BYTES;
        match record {
            Some(r) if r.at > next => tracing::warn!(
                "{topic}/{id}: the open-transactions record at {} is past the log's end {next}; not used",
                r.at
            ),
            Some(r) if !r.txns.is_empty() => {
                for &(pid, epoch, first) in &r.txns {
                    producers.seed_open(pid, epoch, first);
                }
                window = window.max(log.bytes_from(r.at));
            }
            _ => {}
        }
        // Transactions the log's tail ends (with what stayed open after
        // each): an abort among them that its file lacks (a crash between
        // the marker's fdatasync and its entry's) is added below.
        let mut ended: Vec<(EndedTxn, i64)> = Vec::new();
        log.replay_tail_headers(window, |h| {
            if h.is_control() && h.producer_id >= 0 {
                if let Some(e) = producers.end_txn(h.producer_id, h.producer_epoch, h.base_offset) {
                    let lso = producers
                        .first_unstable_offset()
                        .unwrap_or(e.last_offset + 1);
                    ended.push((e, lso));
                }
            } else {
                producers.record(h, h.base_offset)
            }
        })
        .await?;
        let aborted = AbortedLog::open(log.dir()).await?;
        let known = aborted.entries().last().map_or(-1, |t| t.last_offset);
        for (e, lso) in ended.into_iter().filter(|(e, _)| e.last_offset > known) {
            let marker = log.read(e.last_offset, batch::HEADER_BYTES + 64).await?;
            let marker = batch::split_batches(&marker)
                .ok()
                .and_then(|b| b.into_iter().next())
                .and_then(batch::marker_of);
            if marker == Some(batch::Marker::Abort) {
                tracing::info!(
                    "{topic}/{id}: an abort of producer {} at {} restored to the aborted transactions",
                    e.producer_id,
                    e.last_offset
                );
                aborted.push(AbortedTxn {
                    producer_id: e.producer_id,
                    first_offset: e.first_offset,
                    last_offset: e.last_offset,
                    last_stable_offset: lso,
                });
            }
        }
        aborted.sync().await?;
        let open = producers.open_txns();
        if txn_records.due(open.len()) {
            // From here a later restart replays no further back than now.
            txn_records
                .write(&OpenTxns {
                    at: next,
                    txns: open,
                })
                .await?;
        }
        if !producers.is_empty() {
            tracing::debug!(
                "{topic}/{id}: {} idempotent producers rebuilt from the last {} bytes",
                producers.len(),
                PRODUCER_REBUILD_BYTES
            );
        }
        let labelled = config.metrics.partition(topic, id);
        (config.metrics.tail_buffer_bytes).add(config.tail_buffer_bytes as u64);
        let cache = BatchCache::new(config.cache.clone());
        let cleaner = Cell::new(CleanerStatus {
            checkpoint: cleaner::read_checkpoint(log.dir()),
            last_run_ms: -1,
            ..CleanerStatus::default()
        });
        Ok(Rc::new(Partition {
            topic: topic.to_owned(),
            id,
            settings: Cell::new(Settings {
                log: config.log,
                max_batch_bytes: config.max_batch_bytes,
            }),
            config,
            log,
            state: RefCell::new(State {
                next_offset: next,
                written_offset: next,
                synced_offset: next,
                high_watermark: next,
                failed: None,
                closing: false,
                producers,
                since_txn_record: 0,
                txn_record: None,
            }),
            counted: Cell::default(),
            data: Rc::default(),
            labelled,
            cache,
            cleaner,
            aborted,
            txn_records,
        }))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn dir(&self) -> &Path {
        self.log.dir()
    }
    /// This partition's labelled metrics, if it has a slot.
    pub fn labelled(&self) -> Option<&PartitionMetrics> {
        self.labelled.as_deref()
    }

    /// The settings it runs with now (the topic's live settings).
    pub fn config(&self) -> PartitionConfig {
        let s = self.settings.get();
        PartitionConfig {
            log: s.log,
            max_batch_bytes: s.max_batch_bytes,
            ..self.config.clone()
        }
    }

    /// The topic's settings changed (IncrementalAlterConfigs): appends,
    /// rolls, retention and the cleaner follow them from now on. A log
    /// that becomes compacted may get holes from here on.
    pub fn set_topic_config(&self, log: LogConfig, max_batch_bytes: usize) {
        if log.cleanup_policy.compact {
            self.log.allow_offset_holes();
        }
        self.settings.set(Settings {
            log,
            max_batch_bytes,
        });
    }

    fn log_config(&self) -> LogConfig {
        self.settings.get().log
    }

    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    /// The idempotent producers this partition tracks (DescribeProducers).
    pub fn producers(&self) -> Vec<producer_state::ProducerSummary> {
        self.state.borrow().producers.summaries()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start()
    }

    /// Notified whenever new data becomes visible, and when the partition closes.
    pub fn data_event(&self) -> Rc<rt::Event> {
        self.data.clone()
    }

    pub fn is_closing(&self) -> bool {
        self.state.borrow().closing
    }

    pub fn io_counts(&self) -> IoCounts {
        self.log.io_counts()
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.log.segment_count()
    }

    /// Bytes of all segments (appended, whether written yet or not).
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// The level a durable produce waits for under this partition's policy.
    pub fn durable_level(&self) -> Level {
        match self.config.fsync {
            FsyncPolicy::Always => Level::Synced,
            FsyncPolicy::Never | FsyncPolicy::Interval(_) => Level::Written,
        }
    }

    /// Validates and appends a run of batches, assigning offsets. Synchronous
    /// (no await): appends are atomic and keep the order of the calls, which
    /// is the order requests arrived on a connection. The bytes are visible
    /// to readers only after a flush covered them. Rolls the active segment
    /// first when it is full or old; a run never spans two segments.
    // hot path: one CRC pass and one copy into the tail buffer per batch.
    pub fn append(&self, records: &Bytes) -> Result<Appended, PartitionError> {
        if records.is_empty() {
            return Err(PartitionError::Empty);
        }
        let max_batch_bytes = self.settings.get().max_batch_bytes;
        if records.len() > max_batch_bytes {
            return Err(PartitionError::TooLarge {
                bytes: records.len(),
                max: max_batch_bytes,
            });
        }
        // Validate everything before appending anything: all or nothing.
        let headers = batch::validate_all(records)?;
        // Offsets are assigned from the header alone (records are never
        // decoded here), so a produced batch must say exactly what it holds:
        // one offset per record. Otherwise one request could claim billions
        // of offsets (last offset delta i32::MAX over one record).
        if let Some(h) = headers
            .iter()
            .find(|h| h.record_count <= 0 || h.last_offset_delta != h.record_count - 1)
        {
            return Err(PartitionError::Batch(BatchError::BadHeader(
                if h.record_count <= 0 {
                    "a produced batch holds no record"
                } else {
                    "a produced batch's last offset delta must be its record count - 1"
                },
            )));
        }
        for h in &headers {
            producer_state::check_header(h)?;
        }
        if self.log_config().cleanup_policy.compact {
            check_keys(records, &headers)?;
        }
        let idempotent = headers.iter().any(|h| h.producer_id >= 0);
        if idempotent && headers.len() > 1 {
            // Kafka's rule for produce v3+: the sequence checks (and a
            // duplicate's answer) are per batch, so one batch per partition.
            return Err(SequenceError::Invalid(
                "an idempotent produce carries exactly one batch per partition",
            )
            .into());
        }
        let mut st = self.state.borrow_mut();
        st.check_writable()?;
        if idempotent {
            if let Check::Duplicate(m) = st.producers.check(&headers[0])? {
                // A retry of a batch in the log: its original offsets; the
                // caller's flush then waits until the original is durable.
                return Ok(Appended {
                    base_offset: m.base_offset,
                    next_offset: m.last_offset + 1,
                });
            }
        }
        let now = rt::now_ms();
        Ok(self.append_checked(&mut st, records, &headers, now))
    }

    /// Appends a run of batches that passed every check, as one step with
    /// the checks (`st` stays borrowed from the check to here).
    fn append_checked(
        &self,
        st: &mut State,
        records: &Bytes,
        headers: &[batch::BatchHeader],
        now: i64,
    ) -> Appended {
        self.log
            .roll_if_due(&self.log_config(), records.len() as u64, now);
        let base_offset = st.next_offset;
        // Only the first 16 bytes of a batch change (base offset, leader
        // epoch): patch copies of them, in one buffer for the whole run, and
        // take the rest straight from the request, into the log's tail
        // buffer and (as slices, no copy) into the batch cache.
        let mut prefixes = BytesMut::with_capacity(headers.len() * PATCHED_PREFIX_BYTES);
        let mut pos = 0;
        for h in headers {
            let offset = st.next_offset;
            prefixes.extend_from_slice(&records[pos..pos + PATCHED_PREFIX_BYTES]);
            let at = prefixes.len() - PATCHED_PREFIX_BYTES;
            batch::patch_base_offset(&mut prefixes[at..], offset, 0);
            st.next_offset = offset + h.offset_count();
            pos += h.total_bytes();
        }
        let mut prefixes = prefixes.freeze();
        let (mut pos, mut offset) = (0, base_offset);
        for h in headers {
            let total = h.total_bytes();
            let prefix = prefixes.split_to(PATCHED_PREFIX_BYTES);
            let rest = records.slice(pos + PATCHED_PREFIX_BYTES..pos + total);
            self.log.append(h, offset, &[&prefix, &rest], now);
            st.producers.record(h, offset);
            let next = offset + h.offset_count();
            self.cache.insert(offset, next, prefix, rest);
            offset = next;
            pos += total;
        }
        assert_eq!(offset, st.next_offset, "offsets follow the headers");
        assert_eq!(pos, records.len(), "every validated byte is appended");
        st.since_txn_record += pos as u64;
        if st.since_txn_record >= TXN_RECORD_EVERY {
            st.since_txn_record = 0;
            let open = st.producers.open_txns();
            if self.txn_records.due(open.len()) {
                // Written by the flush stage that makes this offset durable.
                st.txn_record = Some(OpenTxns {
                    at: st.next_offset,
                    txns: open,
                });
            }
        }
        self.config.memory.add(pos as u64);
        self.counted.set(self.counted.get() + pos as u64);
        let messages = (st.next_offset - base_offset) as u64;
        (self.config.metrics).produced(self.labelled.as_deref(), messages, pos as u64);
        debug_assert_eq!(st.next_offset, self.log.next_offset());
        Appended {
            base_offset,
            next_offset: st.next_offset,
        }
    }

    /// The transaction coordinator opened `producer_id`'s transaction at
    /// `epoch` on this partition (AddPartitionsToTxn): its transactional
    /// batches are taken from now on.
    pub fn open_txn(&self, producer_id: i64, epoch: i16) {
        self.state
            .borrow_mut()
            .producers
            .open_txn(producer_id, epoch);
    }

    /// Appends the marker that ends `producer_id`'s transaction here
    /// (written by the broker, never by a client): its offset, and the
    /// transaction's range when it wrote here. The caller waits for the
    /// marker's durability like a produce's.
    pub fn append_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        marker: batch::Marker,
        coordinator_epoch: i32,
    ) -> Result<(Appended, Option<EndedTxn>), PartitionError> {
        let now = rt::now_ms();
        let records = batch::control_batch(producer_id, epoch, marker, coordinator_epoch, now);
        let headers = batch::validate_all(&records)?;
        let mut st = self.state.borrow_mut();
        st.check_writable()?;
        let first_offset = st.producers.txn_start(producer_id);
        // Recording the marker (in the append) ends the transaction.
        let appended = self.append_checked(&mut st, &records, &headers, now);
        debug_assert_eq!(st.producers.txn_start(producer_id), None);
        let ended = first_offset.map(|first_offset| EndedTxn {
            producer_id,
            first_offset,
            last_offset: appended.base_offset,
        });
        if let (Some(e), batch::Marker::Abort) = (ended, marker) {
            // Before the marker is visible: no read_committed fetch may see
            // the aborted batches below a stable offset without this.
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset: e.first_offset,
                last_offset: e.last_offset,
                last_stable_offset: st
                    .producers
                    .first_unstable_offset()
                    .unwrap_or(e.last_offset + 1),
            });
        }
        Ok((appended, ended))
    }

    /// Writes the marker that ends `producer_id`'s transaction here and
    /// waits until it (and for an abort, its aborted-transactions entry) is
    /// as durable as a produce: what the coordinator waits for before it
    /// completes the transaction.
    pub async fn write_marker(
        self: &Rc<Self>,
        producer_id: i64,
        epoch: i16,
        marker: batch::Marker,
        coordinator_epoch: i32,
    ) -> Result<(), PartitionError> {
        let (appended, ended) =
            self.append_marker(producer_id, epoch, marker, coordinator_epoch)?;
        self.flush_to(appended.next_offset, self.durable_level())
            .await?;
        if ended.is_some() && marker == batch::Marker::Abort {
            self.aborted.sync().await?;
        }
        Ok(())
    }

    /// Kafka's last stable offset: below it every transaction has ended
    /// (read_committed reads stop here); the high watermark when none is
    /// open.
    pub fn last_stable_offset(&self) -> i64 {
        let st = self.state.borrow();
        match st.producers.first_unstable_offset() {
            Some(first) => first.min(st.high_watermark),
            None => st.high_watermark,
        }
    }

    /// Returns once every offset below `next_offset` reached `level`.
    /// Group commit: whoever holds the write lock writes everything appended
    /// so far, and whoever holds the sync lock syncs everything written so
    /// far, so waiters queued behind usually find their offsets covered.
    /// Under `always` a sync follows every write even when the caller waits
    /// only for the write: the high watermark moves only once synced.
    pub async fn flush_to(
        self: &Rc<Self>,
        next_offset: i64,
        level: Level,
    ) -> Result<(), PartitionError> {
        if self.reached(next_offset, level)? {
            return Ok(());
        }
        // Flushes run as detached tasks: once a write took the tail buffers it
        // must run to its end even if the waiting request is dropped (client
        // gone), or those bytes would be lost and leave a hole in the file.
        let this = self.clone();
        rt::spawn_detached(async move { this.write_stage(next_offset).await })
            .await
            .unwrap_or_else(|| Err(PartitionError::Storage("write task was cancelled".into())))?;
        if self.config.fsync != FsyncPolicy::Always {
            return Ok(());
        }
        let this = self.clone();
        let sync = rt::spawn_detached(async move { this.sync_stage(next_offset).await });
        if level == Level::Synced {
            sync.await.unwrap_or_else(|| {
                Err(PartitionError::Storage("sync task was cancelled".into()))
            })?;
        }
        Ok(())
    }

    /// fdatasyncs whatever is written and not yet synced (the interval
    /// policy's timer, and shutdown).
    pub async fn sync_now(self: &Rc<Self>) -> Result<(), PartitionError> {
        let target = self.state.borrow().written_offset;
        if self.reached(target, Level::Synced)? {
            return Ok(());
        }
        let this = self.clone();
        rt::spawn_detached(async move { this.sync_stage(target).await })
            .await
            .unwrap_or_else(|| Err(PartitionError::Storage("sync task was cancelled".into())))
    }

    fn reached(&self, next_offset: i64, level: Level) -> Result<bool, PartitionError> {
        let st = self.state.borrow();
        let at = match level {
            Level::Written => st.written_offset,
            Level::Synced => st.synced_offset,
        };
        if at >= next_offset {
            return Ok(true);
        }
        match &st.failed {
            Some(f) => Err(PartitionError::Storage(f.clone())),
            None => Ok(false),
        }
    }

    /// A failed stage: the partition refuses writes from now on.
    fn fail(&self, e: StageError) -> PartitionError {
        // Nothing more will be written: release what the gauge holds for us,
        // or producers to other partitions would wait forever.
        self.config.memory.sub(self.counted.replace(0));
        let msg = format!(
            "{} of {}/{} failed: {}",
            e.what, self.topic, self.id, e.error
        );
        tracing::error!("{msg}; the partition refuses writes until restart (reads go on)");
        self.state.borrow_mut().failed = Some(msg.clone());
        PartitionError::Storage(msg)
    }

    /// One write stage: everything appended when it starts.
    async fn write_stage(self: &Rc<Self>, target: i64) -> Result<(), PartitionError> {
        let w = self.log.lock_writes().await;
        if self.reached(target, Level::Written)? {
            return Ok(());
        }
        // The writes taken and the offset they reach, in one step.
        let (pending, next_offset) = (
            self.log.take_writes(&w, &self.log_config()),
            self.state.borrow().next_offset,
        );
        debug_assert!(!pending.is_empty(), "unwritten offsets imply a write");
        let bytes = pending.bytes;
        self.log
            .write(&w, pending)
            .await
            .map_err(|e| self.fail(e))?;
        self.counted.set(self.counted.get() - bytes);
        self.config.memory.sub(bytes);
        {
            let mut st = self.state.borrow_mut();
            assert!(
                next_offset >= st.written_offset,
                "the written offset only grows"
            );
            st.written_offset = next_offset;
            if self.config.fsync != FsyncPolicy::Always {
                st.high_watermark = next_offset;
                self.data.notify_all();
            }
        }
        self.record_txns_if_due();
        self.log.run_seals(&w).await;
        Ok(())
    }

    /// Writes the pending open-transactions record once everything below
    /// its offset is as durable as a produce (it must never speak of
    /// offsets a crash could take back), as a task of its own: no produce
    /// waits for it.
    fn record_txns_if_due(self: &Rc<Self>) {
        let record = {
            let mut st = self.state.borrow_mut();
            let durable = match self.durable_level() {
                Level::Written => st.written_offset,
                Level::Synced => st.synced_offset,
            };
            match &st.txn_record {
                Some(r) if r.at <= durable && !st.closing => st.txn_record.take(),
                _ => None,
            }
        };
        if let Some(r) = record {
            let this = self.clone();
            rt::spawn(async move {
                if let Err(e) = this.txn_records.write(&r).await {
                    // The older record stays, true of its own offset; a
                    // restart replays further back.
                    tracing::warn!(
                        "{}/{}: recording open transactions: {e}",
                        this.topic,
                        this.id
                    );
                }
            })
            .detach();
        }
    }

    /// One fdatasync stage: everything written when it starts.
    async fn sync_stage(self: &Rc<Self>, target: i64) -> Result<(), PartitionError> {
        let s = self.log.lock_syncs().await;
        if self.reached(target, Level::Synced)? {
            return Ok(());
        }
        // Group commit in time, not only in space: batches appended but not
        // yet written belong to requests whose write stages already wait on
        // the write lock (it is first come, first served). Waiting for them
        // lets this fdatasync cover them too, instead of each paying its own
        // (an fdatasync costs the filesystem's metadata writes and two
        // context switches; this shortens no one's wait under load, as
        // theirs would queue behind this sync anyway). Nothing waits when
        // nothing is queued.
        let (appended, written) = {
            let st = self.state.borrow();
            (st.next_offset, st.written_offset)
        };
        if appended > written {
            drop(self.log.lock_writes().await);
        }
        let (pending, offset, synced) = {
            let st = self.state.borrow();
            (self.log.take_syncs(&s), st.written_offset, st.synced_offset)
        };
        let any = !pending.is_empty();
        self.log
            .sync(&s, pending, &self.config.metrics)
            .await
            .map_err(|e| self.fail(e))?;
        if any {
            (self.config.metrics).group_commit((offset - synced).max(0) as u64);
        }
        let mut st = self.state.borrow_mut();
        st.synced_offset = st.synced_offset.max(offset);
        if self.config.fsync == FsyncPolicy::Always {
            assert!(offset >= st.high_watermark, "the high watermark only grows");
            st.high_watermark = offset;
            self.data.notify_all();
        }
        drop(st);
        self.record_txns_if_due();
        Ok(())
    }

    /// Reads whole batches from the one holding `offset`, up to `max_bytes`
    /// (at least one batch), from one segment. Empty at the high watermark.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadOutput, PartitionError> {
        self.read_isolated(offset, max_bytes, false).await
    }

    /// `read`, and with `committed` (Kafka's read_committed) only up to the
    /// last stable offset, naming the aborted transactions from `offset`
    /// on (the consumer skips their batches).
    pub async fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        committed: bool,
    ) -> Result<ReadOutput, PartitionError> {
        let hw = self.state.borrow().high_watermark;
        let lso = self.last_stable_offset();
        // Batches never straddle the last stable offset: it is the base of
        // an open transaction's first batch, or the high watermark.
        let upper = if committed { lso } else { hw };
        let log_start = self.log.log_start();
        if offset < log_start || offset > hw {
            return Err(PartitionError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        let records = if offset >= upper {
            Chain::new()
        } else if let Lookup::Hit(records) = self.cache.read(offset, upper, max_bytes) {
            records
        } else {
            let mut records = self.log.read(offset, max_bytes).await?;
            if committed {
                records = below(records, upper);
            }
            // What a consumer relies on: below the high watermark a read
            // returns at least one whole batch, and the first one holds
            // `offset` (or, past a gap, starts after it).
            let first = batch::BatchHeader::parse(&records)
                .map_err(|e| PartitionError::Storage(format!("read at {offset}: {e}")))?;
            assert!(
                first.last_offset() >= offset && first.total_bytes() <= records.len(),
                "a read at {offset} returned a batch ending at {} ({} of {} bytes)",
                first.last_offset(),
                first.total_bytes(),
                records.len()
            );
            Chain::from(records)
        };
        let aborted = if committed && !records.is_empty() {
            txnindex::collect(&self.aborted.entries(), offset, upper)
                .into_iter()
                .map(|t| (t.producer_id, t.first_offset))
                .collect()
        } else {
            Vec::new()
        };
        Ok(ReadOutput {
            records,
            high_watermark: hw,
            log_start_offset: log_start,
            last_stable_offset: lso,
            aborted,
        })
    }

    /// Every keyed record from the log start to the high watermark, in log
    /// order, as (key, value, offset): what a coordinator replays its
    /// internal log with. Reads 1 MiB at a time.
    pub async fn for_each_keyed_record(
        &self,
        mut f: impl FnMut(&[u8], Option<&[u8]>, i64),
    ) -> Result<(), String> {
        let mut offset = self.log_start_offset();
        loop {
            let out = self
                .read(offset, 1 << 20)
                .await
                .map_err(|e| e.to_string())?;
            if out.records.is_empty() {
                return Ok(());
            }
            for b in batch::split_batches(&out.records.to_bytes()).map_err(|e| e.to_string())? {
                let records = Records::new(b).map_err(|e| e.to_string())?;
                let last = records.header().last_offset();
                for rec in records {
                    let rec = rec.map_err(|e| e.to_string())?;
                    if let Some(key) = &rec.key {
                        f(key, rec.value.as_deref(), rec.offset);
                    }
                }
                offset = last + 1;
            }
        }
    }

    /// The first offset whose record timestamp is at or after `target`, with
    /// that timestamp (Kafka's ListOffsets by time); None when every visible
    /// record is older.
    pub async fn offset_for_timestamp(
        &self,
        target: i64,
    ) -> Result<Option<(i64, i64)>, PartitionError> {
        Ok(self.log.offset_for_timestamp(target).await?)
    }

    /// Kafka's DeleteRecords: moves the log start to `offset` (-1: the high
    /// watermark); records below it are gone for consumers, whole segments
    /// below it are deleted. Returns the new log start (the low watermark).
    pub async fn delete_records(&self, offset: i64) -> Result<i64, PartitionError> {
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(PartitionError::OffsetOutOfRange {
                offset,
                log_start: self.log.log_start(),
                high_watermark: hw,
            });
        }
        let start = self.log.delete_records_before(target).await?;
        self.cache.trim_below(start);
        self.prune_aborted().await?;
        Ok(start)
    }

    /// The first record with the log's largest timestamp, with it (Kafka's
    /// ListOffsets MAX_TIMESTAMP); None when the log holds no visible
    /// record with a timestamp.
    pub async fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, PartitionError> {
        let newest = self.log.max_timestamp();
        if newest < 0 {
            return Ok(None);
        }
        Ok(self.log.offset_for_timestamp(newest).await?)
    }

    /// Retention of whole old segments by the topic's `retention.bytes`
    /// and `retention.ms` (see `Log::enforce_retention`).
    pub async fn enforce_retention(&self, now: i64) -> Result<Retained, PartitionError> {
        let r = self.log.enforce_retention(&self.log_config(), now).await?;
        self.cache.trim_below(self.log.log_start());
        self.prune_aborted().await?;
        Ok(r)
    }

    /// Drops the aborted transactions whose marker is below the log start:
    /// no fetch reaches them any more.
    async fn prune_aborted(&self) -> Result<(), PartitionError> {
        let start = self.log.log_start();
        if self
            .aborted
            .entries()
            .first()
            .is_some_and(|t| t.last_offset < start)
        {
            self.aborted.retain(|t| t.last_offset >= start).await?;
        }
        Ok(())
    }

    /// Compaction's progress here.
    pub fn cleaner_status(&self) -> CleanerStatus {
        self.cleaner.get()
    }

    /// Looks at how dirty the log is now (compacted topics only) and keeps
    /// the figure for `cleaner_status`.
    pub fn assess_cleaning(&self, now: i64) -> CleanerStatus {
        let mut st = self.cleaner.get();
        st.dirty_ratio = compact::assess(
            &self.log.summaries(),
            st.checkpoint,
            &self.log_config(),
            now,
            self.state.borrow().producers.first_unstable_offset(),
        )
        .map_or(0.0, |p| p.dirty_ratio);
        self.cleaner.set(st);
        if let Some(l) = &self.labelled {
            l.cleaner_dirty_permille
                .set((st.dirty_ratio * 1000.0) as u64);
        }
        st
    }

    /// Runs a compaction cleaning if one is due (see `storage::cleaner`),
    /// on this shard, within `limits`; records its progress and checkpoint.
    /// Ok(None): not a compacted topic, or nothing due.
    pub async fn clean(
        &self,
        now: i64,
        limits: &cleaner::Limits,
    ) -> Result<Option<cleaner::Report>, PartitionError> {
        if !self.log_config().cleanup_policy.compact || self.state.borrow().closing {
            return Ok(None);
        }
        let st = self.assess_cleaning(now);
        let txns = cleaner::Txns {
            first_unstable: self.state.borrow().producers.first_unstable_offset(),
            aborted: self.aborted.entries().clone(),
        };
        let report = cleaner::clean(
            &self.log,
            &self.log_config(),
            st.checkpoint,
            now,
            limits,
            &txns,
        )
        .await?;
        let Some(r) = report else {
            return Ok(None);
        };
        if !r.emptied.is_empty() {
            // Their data is gone: read_committed fetches need not skip it.
            self.aborted.retain(|t| !r.emptied.contains(t)).await?;
        }
        // Cached batches below the end hold what the cleaning dropped.
        self.cache.trim_below(r.end);
        let mut st = self.cleaner.get();
        st.checkpoint = Some(r.end);
        st.runs += 1;
        st.bytes_read += r.stats.bytes_read;
        st.bytes_written += r.stats.bytes_written;
        st.last_run_ms = rt::now_ms();
        self.cleaner.set(st);
        self.assess_cleaning(now);
        if !self.state.borrow().closing {
            // A partition being closed (or its topic deleted) keeps its
            // directory as the close leaves it.
            cleaner::write_checkpoint(self.log.dir(), r.end)?;
        }
        Ok(Some(r))
    }

    /// Writes, syncs, seals the index files of and closes every segment. Used
    /// on clean shutdown.
    pub async fn close(self: &Rc<Self>) -> Result<(), PartitionError> {
        // Refuse appends first, so the end below is final.
        let next = {
            let mut st = self.state.borrow_mut();
            st.closing = true;
            st.next_offset
        };
        // Waiting fetches answer now instead of at their deadline.
        self.data.notify_all();
        self.flush_to(next, Level::Written).await?;
        self.sync_now().await?;
        self.aborted.close().await;
        self.txn_records.close().await;
        self.log.close().await?;
        self.cache.clear();
        if let Some(l) = &self.labelled {
            self.config.metrics.forget(l);
        }
        (self.config.metrics.tail_buffer_bytes).sub(self.config.tail_buffer_bytes as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Records};
    use crate::rt::now_ms;
    use crate::rt::testkit::on_fresh_dir;
    use crate::storage::segment::Segment;
    use std::time::Duration;

    fn make_batch(seed: usize, records: usize, value_bytes: usize) -> Bytes {
        let mut b = BatchBuilder::new(1_000 + seed as i64);
        for r in 0..records {
            let v: Vec<u8> = (0..value_bytes)
                .map(|i| ((seed * 31 + r * 7 + i) % 251) as u8)
                .collect();
            b.push(
                1_000 + seed as i64,
                Some(format!("k{seed}").as_bytes()),
                Some(&v),
                &[],
            );
        }
        b.finish()
    }

    /// Reads the whole partition back, batch by batch, from offset 0.
    async fn read_all(p: &Rc<Partition>) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < p.high_watermark() {
            let r = p.read(offset, 1).await.unwrap();
            let b = batch::split_batches(&r.records.to_bytes()).unwrap();
            assert_eq!(
                b.len(),
                1,
                "max_bytes 1 still returns exactly one whole batch"
            );
            offset = batch::validate(&b[0]).unwrap().last_offset() + 1;
            out.push(b[0].clone());
        }
        out
    }

    /// The batch as stored: the sent bytes with the base offset patched in.
    fn as_stored(sent: &Bytes, base_offset: i64) -> Vec<u8> {
        let mut v = sent.to_vec();
        batch::patch_base_offset(&mut v, base_offset, 0);
        v
    }

    #[test]
    fn fresh_data_dir_appends_and_reads_back_across_pages_and_buffers() {
        // A fresh directory: the probe runs before the first segment.
        on_fresh_dir(|path| async move {
            // A small tail buffer, so appends cross buffer ends as well as pages.
            let cfg = PartitionConfig {
                tail_buffer_bytes: 8192,
                ..Default::default()
            };
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            let mut sent = Vec::new();
            for i in 0..60 {
                // sizes from ~70 bytes to ~13 KiB: under, across and over pages
                let b = make_batch(i, 1 + i % 4, (i * 997) % 3300);
                let a = p.append(&b).unwrap();
                sent.push((b, a.base_offset));
                if i % 7 == 0 {
                    p.flush_to(a.next_offset, Level::Synced).await.unwrap();
                }
            }
            let end = p.state.borrow().next_offset;
            p.flush_to(end, Level::Synced).await.unwrap();
            let got = read_all(&p).await;
            assert_eq!(got.len(), sent.len());
            for (g, (s, base)) in got.iter().zip(&sent) {
                assert_eq!(&g[..], &as_stored(s, *base)[..]);
            }
            // Records come back with consecutive offsets.
            let offs: Vec<i64> = got
                .iter()
                .flat_map(|b| Records::new(b.clone()).unwrap().map(|r| r.unwrap().offset))
                .collect();
            assert_eq!(offs, (0..offs.len() as i64).collect::<Vec<_>>());
            let hw = p.high_watermark();
            p.close().await.unwrap();

            // Reopen: recovery finds every batch, and appends continue the offsets.
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            assert_eq!(p.high_watermark(), hw);
            let again = read_all(&p).await;
            assert_eq!(again, got);
            let b = make_batch(999, 2, 10);
            let a = p.append(&b).unwrap();
            assert_eq!(a.base_offset, hw);
            p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            assert_eq!(p.high_watermark(), hw + 2);
            p.close().await.unwrap();
        });
    }

    #[test]
    fn caught_up_reads_come_from_the_batch_cache_and_match_the_disk() {
        on_fresh_dir(|path| async move {
            let budget = CacheBudget::new(40_000, ShardMetrics::detached());
            let cfg = PartitionConfig {
                cache: budget.clone(),
                ..Default::default()
            };
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            let mut sent = Vec::new();
            for i in 0..40 {
                // ~3 KB each: 120 KB in all, three times the cache
                let b = make_batch(i, 3, 1000);
                let a = p.append(&b).unwrap();
                p.flush_to(a.next_offset, Level::Synced).await.unwrap();
                // A consumer that keeps up reads each batch once acknowledged.
                let before = p.io_counts().disk_reads;
                let r = p.read(a.base_offset, 1 << 20).await.unwrap();
                assert_eq!(p.io_counts().disk_reads, before, "batch {i} read the disk");
                assert_eq!(&r.records.to_bytes()[..], &as_stored(&b, a.base_offset)[..]);
                sent.push((b, a.base_offset));
            }
            assert!(budget.used() <= 40_000, "{}", budget.used());
            // The oldest were evicted: the disk serves them, the same bytes.
            let before = p.io_counts().disk_reads;
            let got = read_all(&p).await;
            assert!(p.io_counts().disk_reads > before);
            assert_eq!(got.len(), sent.len());
            for (g, (s, base)) in got.iter().zip(&sent) {
                assert_eq!(&g[..], &as_stored(s, *base)[..]);
            }
            // Not yet visible (not synced): not served, from memory or not.
            let a = p.append(&make_batch(99, 1, 10)).unwrap();
            assert!(p
                .read(a.base_offset, 1 << 20)
                .await
                .unwrap()
                .records
                .is_empty());
            p.close().await.unwrap();
            assert_eq!(budget.used(), 0, "a closed partition holds no cache");
        });
    }

    #[test]
    fn torn_tail_is_truncated_to_last_whole_batch() {
        on_fresh_dir(|path| async move {
            let p = Partition::open(&path, "t", 0, PartitionConfig::default())
                .await
                .unwrap();
            for i in 0..5 {
                let a = p.append(&make_batch(i, 3, 500)).unwrap();
                p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            }
            let before = read_all(&p).await;
            p.close().await.unwrap();
            // A torn write: the first half of another batch, then a crash.
            let seg = partition_dir(&path, "t", 0).join(segment::file_name(0));
            let whole = std::fs::metadata(&seg).unwrap().len();
            let extra = make_batch(9, 3, 500);
            let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
            std::io::Write::write_all(&mut f, &extra[..extra.len() / 2]).unwrap();
            drop(f);
            let p = Partition::open(&path, "t", 0, PartitionConfig::default())
                .await
                .unwrap();
            assert_eq!(
                std::fs::metadata(&seg).unwrap().len(),
                whole,
                "torn bytes cut off"
            );
            assert_eq!(p.high_watermark(), 15);
            assert_eq!(read_all(&p).await, before);
            p.close().await.unwrap();
        });
    }

    #[test]
    fn recovery_tells_zero_padding_from_a_torn_tail() {
        on_fresh_dir(|path| async move {
            let p = Partition::open(&path, "t", 0, PartitionConfig::default())
                .await
                .unwrap();
            let a = p.append(&make_batch(1, 2, 100)).unwrap();
            p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            drop(p); // a crash: no close, the last page keeps its zero padding
            let pdir = partition_dir(&path, "t", 0);
            let (seg, rec) = Segment::open(&pdir, 0, 8192, now_ms(), OffsetChain::Contiguous)
                .await
                .unwrap();
            assert!(rec.truncated_bytes > 0 && !rec.torn, "{rec:?}");
            assert_eq!(rec.next_offset, 2);
            seg.close().await.unwrap();
            let file = pdir.join(segment::file_name(0));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .unwrap();
            std::io::Write::write_all(&mut f, b"\0\0garbage").unwrap();
            drop(f);
            let (seg, rec) = Segment::open(&pdir, 0, 8192, now_ms(), OffsetChain::Contiguous)
                .await
                .unwrap();
            assert!(rec.torn, "{rec:?}");
            assert_eq!(rec.truncated_bytes, 9);
            assert_eq!(rec.next_offset, 2);
            seg.close().await.unwrap();
        });
    }

    #[test]
    fn segment_files_grow_ahead_of_their_data_and_a_crash_cuts_only_zeros() {
        on_fresh_dir(|path| async move {
            let p = Partition::open(&path, "t", 0, PartitionConfig::default())
                .await
                .unwrap();
            let mut sent = Vec::new();
            for i in 0..4 {
                let b = make_batch(i, 2, 3000);
                let a = p.append(&b).unwrap();
                p.flush_to(a.next_offset, Level::Synced).await.unwrap();
                sent.push((b, a.base_offset));
            }
            let data_end: u64 = sent.iter().map(|(b, _)| b.len() as u64).sum();
            let seg = partition_dir(&path, "t", 0).join(segment::file_name(0));
            let len = std::fs::metadata(&seg).unwrap().len();
            // One step of preallocation: the default segment.bytes is larger.
            assert_eq!(
                len,
                crate::storage::log::PREALLOC_MAX_BYTES,
                "data ends at {data_end}"
            );
            drop(p); // a crash: the preallocated zeros stay in the file

            let pdir = partition_dir(&path, "t", 0);
            let (s, rec) = Segment::open(&pdir, 0, 8192, now_ms(), OffsetChain::Contiguous)
                .await
                .unwrap();
            assert!(
                !rec.torn,
                "zeros past the data are not a torn tail: {rec:?}"
            );
            assert_eq!(rec.end_pos, data_end);
            assert_eq!(rec.truncated_bytes, len - data_end);
            assert_eq!(rec.next_offset, 8);
            s.close().await.unwrap();
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), data_end);

            let p = Partition::open(&path, "t", 0, PartitionConfig::default())
                .await
                .unwrap();
            let got = read_all(&p).await;
            assert_eq!(got.len(), sent.len());
            for (g, (s, base)) in got.iter().zip(&sent) {
                assert_eq!(&g[..], &as_stored(s, *base)[..]);
            }
            // Appends after recovery grow the file again (the recovered
            // segment, or a new one when the test batches' old timestamps
            // make it roll) and stay readable.
            let b = make_batch(9, 1, 100);
            let a = p.append(&b).unwrap();
            p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            assert_eq!(a.base_offset, 8);
            let active = p.log.segments().back().unwrap().path().to_owned();
            let grown = std::fs::metadata(&active).unwrap().len();
            assert_eq!(grown, crate::storage::log::PREALLOC_MAX_BYTES);
            assert_eq!(read_all(&p).await.last().unwrap()[..], as_stored(&b, 8)[..]);
            p.close().await.unwrap();
            // A clean close trims every file to its data.
            let on_disk: u64 = std::fs::read_dir(&pdir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|f| f.extension().is_some_and(|x| x == "log"))
                .map(|f| std::fs::metadata(f).unwrap().len())
                .sum();
            assert_eq!(on_disk, data_end + b.len() as u64);
        });
    }

    #[test]
    fn a_compacted_topic_refuses_records_without_a_key_and_keeps_nothing_of_them() {
        on_fresh_dir(|path| async move {
            let mut cfg = PartitionConfig::default();
            cfg.log.cleanup_policy = crate::storage::meta::CleanupPolicy::parse("compact").unwrap();
            let p = Partition::open(&path, "c", 0, cfg).await.unwrap();
            let keyed = make_batch(1, 3, 10);
            let a = p.append(&keyed).unwrap();
            p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            // A run of two batches whose second has one keyless record.
            let mut b = BatchBuilder::new(5);
            b.push(5, Some(b"k"), Some(b"v"), &[]);
            b.push(5, None, Some(b"no key"), &[]);
            let mut run = make_batch(2, 1, 10).to_vec();
            run.extend_from_slice(&b.finish());
            match p.append(&Bytes::from(run)) {
                // One record in the first batch: the keyless one is the
                // third of the produce.
                Err(PartitionError::KeylessRecord { records }) if records == [2] => {}
                other => panic!("{other:?}"),
            }
            assert_eq!(
                p.high_watermark(),
                3,
                "nothing of the refused run was appended"
            );
            // A batch whose records cannot be decoded (gzip claimed, not
            // gzip inside, CRC made to agree) is refused as corrupt.
            let mut bad = make_batch(3, 2, 10).to_vec();
            bad[22] |= 1; // attributes' low byte: codec 1
            let crc = crc32c::crc32c(&bad[21..]);
            bad[17..21].copy_from_slice(&crc.to_be_bytes());
            assert!(matches!(
                p.append(&Bytes::from(bad)),
                Err(PartitionError::Batch(BatchError::Decompress {
                    codec: 1,
                    ..
                }))
            ));
            assert_eq!(p.high_watermark(), 3);
            // A delete topic takes the same batch.
            let d = Partition::open(&path, "d", 0, PartitionConfig::default())
                .await
                .unwrap();
            let mut b = BatchBuilder::new(5);
            b.push(5, None, Some(b"no key"), &[]);
            d.append(&b.finish()).unwrap();
            p.close().await.unwrap();
            d.close().await.unwrap();
        });
    }

    #[test]
    fn a_compacted_log_with_holes_recovers_and_reads_back_the_survivors() {
        on_fresh_dir(|path| async move {
            let mut cfg = small_segments(8 << 10);
            cfg.log.cleanup_policy = crate::storage::meta::CleanupPolicy::parse("compact").unwrap();
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            // 40 updates of 4 keys, one 1 KiB record each: several segments.
            for i in 0..40u8 {
                let mut b = BatchBuilder::new(1_000 + i as i64);
                let key = format!("key-{}", i % 4);
                b.push(
                    1_000 + i as i64,
                    Some(key.as_bytes()),
                    Some(&[i; 1000]),
                    &[],
                );
                let a = p.append(&b.finish()).unwrap();
                p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            }
            let before = read_all(&p).await;
            p.close().await.unwrap();
            // Clean the first two sealed segments the way the cleaner will:
            // batches rewritten in place of the old file, index files gone.
            let dir = partition_dir(&path, "t", 0);
            let logs = files_of(&path, "log");
            assert!(logs.len() >= 4, "{logs:?}");
            let base_of = |f: &str| f.trim_end_matches(".log").parse::<i64>().unwrap();
            let end = base_of(&logs[2]);
            let mut old = Vec::new();
            for f in &logs[..2] {
                old.extend(
                    batch::split_batches(&Bytes::from(std::fs::read(dir.join(f)).unwrap()))
                        .unwrap(),
                );
            }
            let c = crate::storage::compact::Cleaning {
                now_ms: 0,
                delete_retention_ms: 0,
            };
            let (cleaned, stats) = crate::storage::compact::clean_log(&old, end, &c, &[]).unwrap();
            assert!(stats.records_kept < stats.records_read);
            // The survivors of both go into the first file (the cleaner
            // merges a group into its first segment, so no segment is left
            // empty and the log start stays); the second goes.
            let bytes: Vec<u8> = cleaned
                .iter()
                .filter(|b| batch::validate(b).unwrap().base_offset < end)
                .flat_map(|b| b.iter().copied())
                .collect();
            std::fs::write(dir.join(&logs[0]), &bytes).unwrap();
            segment::remove_index_files(&dir, 0).unwrap();
            std::fs::remove_file(dir.join(&logs[1])).unwrap();
            segment::remove_index_files(&dir, base_of(&logs[1])).unwrap();
            // Reopened: the holes are not damage, every survivor reads back
            // at its own offset, and what was past the cleaning is whole.
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            assert_eq!((p.log_start_offset(), p.high_watermark()), (0, 40));
            let got = read_all(&p).await;
            let offsets = |v: &[Bytes]| -> Vec<i64> {
                v.iter()
                    .flat_map(|b| Records::new(b.clone()).unwrap().map(|r| r.unwrap().offset))
                    .collect()
            };
            let want: Vec<i64> = offsets(&before)
                .into_iter()
                .filter(|&o| o >= end || o + 4 >= end)
                .collect();
            assert_eq!(
                offsets(&got),
                want,
                "the newest of each key below {end}, all above"
            );
            let a = p.append(&make_batch(1, 1, 10)).unwrap();
            assert_eq!(a.base_offset, 40);
            p.close().await.unwrap();
        });
    }

    /// (offset, key, value) of every record, in log order.
    fn records_of(batches: &[Bytes]) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
        batches
            .iter()
            .flat_map(|b| Records::new(b.clone()).unwrap().map(|r| r.unwrap()))
            .map(|r| (r.offset, r.key, r.value))
            .collect()
    }

    /// The compacted view of `all` below `end`: each key's newest record
    /// (tombstones too, unless `tombstones_gone`), everything from `end` on.
    fn compacted(
        all: &[(i64, Option<Bytes>, Option<Bytes>)],
        end: i64,
        tombstones_gone: bool,
    ) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
        let mut newest = std::collections::HashMap::new();
        for (o, k, _) in all.iter().filter(|r| r.0 < end) {
            newest.insert(k.clone(), *o);
        }
        all.iter()
            .filter(|(o, k, v)| *o >= end || (newest[k] == *o && !(tombstones_gone && v.is_none())))
            .cloned()
            .collect()
    }

    #[test]
    fn the_cleaner_keeps_each_keys_newest_record_at_its_offset_and_survives_a_restart() {
        on_fresh_dir(|path| async move {
            let mut cfg = small_segments(8 << 10);
            cfg.log.cleanup_policy = crate::storage::meta::CleanupPolicy::parse("compact").unwrap();
            cfg.log.delete_retention_ms = 1_000;
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            // 400 updates of 10 keys in batches of 1-3 records, 300 bytes
            // each, some compressed; keys 0 and 1 end with a tombstone.
            let produce = |p: Rc<Partition>, from: usize, to: usize, prefix: &'static str| async move {
                let mut i = from;
                while i < to {
                    let n = (i % 3 + 1).min(to - i);
                    let mut b = BatchBuilder::new(1_000 + i as i64);
                    for j in i..i + n {
                        let key = format!("{prefix}-{}", j % 10);
                        let tomb = prefix == "key" && j + 10 >= to && j % 10 < 2;
                        let value = vec![(j % 251) as u8; 300];
                        b.push(
                            1_000 + j as i64,
                            Some(key.as_bytes()),
                            (!tomb).then_some(&value[..]),
                            &[],
                        );
                    }
                    let mut b = b.finish();
                    if i.is_multiple_of(5) {
                        // Snappy: the cleaner compresses its rewrite again.
                        let mut h = batch::validate(&b).unwrap();
                        h.attributes |= 2;
                        let rs: Vec<_> = Records::new(b).unwrap().map(|r| r.unwrap()).collect();
                        b = batch::encode_batch(&h, &rs).unwrap();
                    }
                    let a = p.append(&b).unwrap();
                    p.flush_to(a.next_offset, Level::Synced).await.unwrap();
                    i += n;
                }
            };
            produce(p.clone(), 0, 400, "key").await;
            let all = records_of(&read_all(&p).await);
            let logs_before = files_of(&path, "log").len();
            let limits = cleaner::Limits::default();
            let now = rt::now_ms();
            let r = p
                .clean(now, &limits)
                .await
                .unwrap()
                .expect("a cleaning is due");
            assert!(r.end > 300 && r.end < 400, "{r:?}");
            assert!(r.groups >= 1 && r.groups_skipped == 0, "{r:?}");
            assert!(r.stats.records_kept < r.stats.records_read / 4, "{r:?}");
            let want = compacted(&all, r.end, false);
            assert_eq!(records_of(&read_all(&p).await), want);
            assert!(files_of(&path, "log").len() < logs_before);
            assert_eq!(p.cleaner_status().checkpoint, Some(r.end));
            // Nothing new is dirty: nothing is due.
            assert_eq!(p.clean(now, &limits).await.unwrap(), None);
            // A restart reads the same and remembers where it got to.
            p.close().await.unwrap();
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            assert_eq!(records_of(&read_all(&p).await), want);
            assert_eq!(p.cleaner_status().checkpoint, Some(r.end));
            assert_eq!(p.append(&make_batch(1, 1, 10)).unwrap().base_offset, 400);
            // More updates, and a cleaning past the tombstones' horizon:
            // they go; before it they stay.
            produce(p.clone(), 401, 800, "key").await;
            let all = records_of(&read_all(&p).await);
            let r2 = p
                .clean(now + 500, &limits)
                .await
                .unwrap()
                .expect("due again");
            let tombstones = |v: &[(i64, Option<Bytes>, Option<Bytes>)]| {
                v.iter().filter(|r| r.2.is_none() && r.0 < 400).count()
            };
            let got = records_of(&read_all(&p).await);
            assert_eq!(got, compacted(&all, r2.end, false));
            assert_eq!(tombstones(&got), 0, "superseded by the later updates");
            let kept = got.iter().filter(|r| r.2.is_none() && r.0 < r2.end).count();
            assert_eq!(kept, 2, "the new tombstones stay until their horizon");
            // Other keys only, and a cleaning before the horizon (stamped
            // at now + 500 + delete.retention.ms): they stay; after: gone.
            produce(p.clone(), 800, 1000, "other").await;
            let r3 = p.clean(now + 1_400, &limits).await.unwrap().expect("due");
            let got = records_of(&read_all(&p).await);
            assert_eq!(got.iter().filter(|r| r.2.is_none()).count(), 2, "{r3:?}");
            produce(p.clone(), 1000, 1200, "other").await;
            let all = records_of(&read_all(&p).await);
            let r4 = p.clean(now + 1_501, &limits).await.unwrap().expect("due");
            let got = records_of(&read_all(&p).await);
            assert_eq!(got, compacted(&all, r4.end, true));
            assert_eq!(got.iter().filter(|r| r.2.is_none()).count(), 0, "{r4:?}");
            assert_eq!(r4.stats.tombstones_dropped, 2);
            p.close().await.unwrap();
        });
    }

    #[test]
    fn the_cleaner_removes_aborted_data_keeps_markers_and_stops_at_an_open_transaction() {
        on_fresh_dir(|path| async move {
            let mut cfg = small_segments(8 << 10);
            cfg.log.cleanup_policy = crate::storage::meta::CleanupPolicy::parse("compact").unwrap();
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            let keyed = |pid: i64, seq: i32, key: &str, fill: u8| {
                let mut b = BatchBuilder::new(1_000);
                if pid >= 0 {
                    b = b.idempotent(pid, 0, seq).transactional();
                }
                b.push(1_000, Some(key.as_bytes()), Some(&[fill; 500]), &[]);
                b.finish()
            };
            let put = |p: Rc<Partition>, b: Bytes| async move {
                let a = p.append(&b).unwrap();
                p.flush_to(a.next_offset, Level::Synced).await.unwrap();
                a.base_offset
            };
            put(p.clone(), keyed(-1, 0, "a", 1)).await; // 0: a=1
                                                        // 7 writes a=7 twice and aborts; 8 writes a=8 and commits.
            p.open_txn(7, 0);
            let first7 = put(p.clone(), keyed(7, 0, "a", 7)).await;
            put(p.clone(), keyed(7, 1, "a", 7)).await;
            p.write_marker(7, 0, batch::Marker::Abort, 0).await.unwrap();
            for i in 0..30 {
                put(p.clone(), keyed(-1, 0, &format!("b{}", i % 3), 2)).await;
            }
            p.open_txn(8, 0);
            put(p.clone(), keyed(8, 0, "c", 8)).await;
            p.write_marker(8, 0, batch::Marker::Commit, 0)
                .await
                .unwrap();
            // 9 stays open from here: nothing from its segment on is cleaned.
            for i in 0..20 {
                put(p.clone(), keyed(-1, 0, &format!("b{}", i % 3), 3)).await;
            }
            p.open_txn(9, 0);
            let first9 = put(p.clone(), keyed(9, 0, "a", 9)).await;
            for i in 0..20 {
                put(p.clone(), keyed(-1, 0, &format!("b{}", i % 3), 4)).await;
            }
            let limits = cleaner::Limits::default();
            let r = p.clean(rt::now_ms(), &limits).await.unwrap().expect("due");
            assert!(r.end <= first9 && r.end > first7 + 3, "{r:?} {first9}");
            assert_eq!(r.stats.aborted_dropped, 2, "{r:?}");
            // The aborted a=7 went without superseding a=1; every marker
            // stays (their data was there when the cleaning began).
            let got = read_all(&p).await;
            let values_of = |key: &str| -> Vec<(i64, u8)> {
                records_of(&got)
                    .into_iter()
                    .filter(|(_, k, _)| k.as_deref() == Some(key.as_bytes()))
                    .map(|(o, _, v)| (o, v.unwrap()[0]))
                    .collect()
            };
            assert_eq!(values_of("a"), vec![(0, 1), (first9, 9)]);
            assert_eq!(values_of("c").len(), 1);
            let markers = got
                .iter()
                .filter(|b| batch::marker_of((*b).clone()).is_some())
                .count();
            assert_eq!(markers, 2);
            // read_committed still names 7's abort (its marker is there) and
            // stops at 9's first batch.
            let o = p.read_isolated(0, 1 << 20, true).await.unwrap();
            assert_eq!(o.aborted, vec![(7, first7)]);
            assert_eq!(o.last_stable_offset, first9);

            // 9 commits; the next cleaning finds 7's marker without data: it
            // gets a horizon and the abort leaves the index, durably.
            p.write_marker(9, 0, batch::Marker::Commit, 0)
                .await
                .unwrap();
            for i in 0..40 {
                put(p.clone(), keyed(-1, 0, &format!("b{}", i % 3), 5)).await;
            }
            let r = p.clean(rt::now_ms(), &limits).await.unwrap().expect("due");
            assert!(r.end > first9, "{r:?}");
            assert_eq!(r.emptied.len(), 1, "{r:?}");
            assert!(p
                .read_isolated(0, 1 << 20, true)
                .await
                .unwrap()
                .aborted
                .is_empty());
            p.close().await.unwrap();
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            assert!(p
                .read_isolated(0, 1 << 20, true)
                .await
                .unwrap()
                .aborted
                .is_empty());
            assert_eq!(p.last_stable_offset(), p.high_watermark());
            p.close().await.unwrap();
        });
    }

    #[test]
    fn a_cleaning_that_meets_a_corrupt_segment_fails_clearly_and_changes_nothing() {
        on_fresh_dir(|path| async move {
            let mut cfg = small_segments(8 << 10);
            cfg.log.cleanup_policy = crate::storage::meta::CleanupPolicy::parse("compact").unwrap();
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            for i in 0..60u8 {
                let mut b = BatchBuilder::new(1_000 + i as i64);
                let key = format!("key-{}", i % 4);
                b.push(1_000 + i as i64, Some(key.as_bytes()), Some(&[i; 500]), &[]);
                let a = p.append(&b.finish()).unwrap();
                p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            }
            let before = read_all(&p).await;
            let logs = files_of(&path, "log");
            // Flip a byte inside a record of the second (sealed) segment:
            // its CRC no longer holds.
            let victim = partition_dir(&path, "t", 0).join(&logs[1]);
            let mut bytes = std::fs::read(&victim).unwrap();
            bytes[200] ^= 0xff;
            std::fs::write(&victim, &bytes).unwrap();
            let e = p
                .clean(rt::now_ms(), &cleaner::Limits::default())
                .await
                .unwrap_err();
            assert!(e.to_string().contains(&logs[1]), "names the file: {e}");
            // Nothing was replaced or left behind; the other segments read
            // as before (the cache serves what it holds).
            assert_eq!(files_of(&path, "log"), logs);
            assert!(files_of(&path, "cleaned").is_empty());
            assert!(files_of(&path, "swap").is_empty());
            assert_eq!(p.cleaner_status().checkpoint, None);
            assert_eq!(read_all(&p).await.len(), before.len());
            p.close().await.unwrap();
        });
    }

    #[test]
    fn delete_records_moves_the_log_start_drops_whole_segments_and_survives_a_restart() {
        on_fresh_dir(|path| async move {
            let cfg = small_segments(8 << 10);
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            for i in 0..40 {
                let a = p.append(&make_batch(i, 1, 1000)).unwrap();
                p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            }
            let segments = p.segment_count();
            assert!(segments >= 4, "{segments}");
            // Past the high watermark: refused, nothing moves.
            assert!(matches!(
                p.delete_records(41).await,
                Err(PartitionError::OffsetOutOfRange { .. })
            ));
            assert_eq!(p.log_start_offset(), 0);
            // Into the middle of a segment: the start moves there, the
            // segments wholly below it go, the one holding it stays.
            assert_eq!(p.delete_records(25).await.unwrap(), 25);
            assert_eq!(p.log_start_offset(), 25);
            assert!(p.segment_count() < segments);
            assert!(matches!(
                p.read(24, 1).await,
                Err(PartitionError::OffsetOutOfRange { .. })
            ));
            let r = p.read(25, 1).await.unwrap();
            let first = batch::split_batches(&r.records.to_bytes()).unwrap();
            assert!(batch::validate(&first[0]).unwrap().last_offset() >= 25);
            // The start never moves back.
            assert_eq!(p.delete_records(10).await.unwrap(), 25);
            p.close().await.unwrap();
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            assert_eq!(p.log_start_offset(), 25, "the moved start is durable");
            // -1: up to the high watermark; appends go on at the end.
            assert_eq!(p.delete_records(-1).await.unwrap(), 40);
            assert_eq!(p.append(&make_batch(1, 1, 10)).unwrap().base_offset, 40);
            p.close().await.unwrap();
        });
    }

    #[test]
    fn close_refuses_later_appends_and_keeps_everything_appended() {
        on_fresh_dir(|path| async move {
            let p = Partition::open(&path, "t", 0, PartitionConfig::default())
                .await
                .unwrap();
            p.append(&make_batch(1, 3, 100)).unwrap(); // never flushed by a produce
            p.close().await.unwrap();
            assert!(matches!(
                p.append(&make_batch(2, 1, 1)),
                Err(PartitionError::Closed)
            ));
            let p = Partition::open(&path, "t", 0, PartitionConfig::default())
                .await
                .unwrap();
            assert_eq!(p.high_watermark(), 3, "close flushed what was appended");
            p.close().await.unwrap();
        });
    }

    #[test]
    fn bad_batches_are_rejected_and_leave_the_log_untouched() {
        on_fresh_dir(|path| async move {
            let p = Partition::open(&path, "t", 0, PartitionConfig::default())
                .await
                .unwrap();
            let good = make_batch(1, 2, 100);
            let mut corrupt = good.to_vec();
            let n = corrupt.len();
            corrupt[n - 1] ^= 1;
            // A good batch followed by a corrupt one: all or nothing.
            let mut run = good.to_vec();
            run.extend_from_slice(&corrupt);
            assert!(matches!(
                p.append(&Bytes::from(run)),
                Err(PartitionError::Batch(_))
            ));
            assert!(matches!(
                p.append(&Bytes::from(corrupt)),
                Err(PartitionError::Batch(_))
            ));
            assert!(matches!(
                p.append(&good.slice(..good.len() - 3)),
                Err(PartitionError::Batch(_))
            ));
            assert!(matches!(
                p.append(&Bytes::new()),
                Err(PartitionError::Empty)
            ));
            // A CRC-valid header claiming more offsets than it has records
            // (or none at all) would let one produce take billions of offsets.
            for (count, delta) in [(2i32, i32::MAX), (2, 5), (0, 0)] {
                let mut lying = good.to_vec();
                lying[23..27].copy_from_slice(&delta.to_be_bytes()); // last offset delta
                lying[57..61].copy_from_slice(&count.to_be_bytes()); // record count
                let crc = crc32c::crc32c(&lying[21..]);
                lying[17..21].copy_from_slice(&crc.to_be_bytes());
                let e = p.append(&Bytes::from(lying)).unwrap_err();
                assert!(e.to_string().contains("produced batch"), "{e}");
            }
            assert_eq!(p.high_watermark(), 0);
            let a = p.append(&good).unwrap();
            assert_eq!(a.base_offset, 0);
            p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            assert!(matches!(
                p.read(3, 100).await,
                Err(PartitionError::OffsetOutOfRange { .. })
            ));
            assert!(p.read(2, 100).await.unwrap().records.is_empty());
            p.close().await.unwrap();
        });
    }

    /// A batch whose records carry the given timestamps.
    fn batch_at(seed: usize, stamps: &[i64], value_bytes: usize) -> Bytes {
        let mut b = BatchBuilder::new(stamps[0]);
        for (r, &ts) in stamps.iter().enumerate() {
            let v = vec![((seed + r) % 251) as u8; value_bytes];
            b.push(ts, None, Some(&v), &[]);
        }
        b.finish()
    }

    fn small_segments(segment_bytes: u64) -> PartitionConfig {
        let mut c = PartitionConfig {
            tail_buffer_bytes: 8192,
            ..Default::default()
        };
        c.log.segment_bytes = segment_bytes;
        c.log.retention_ms = -1;
        c
    }

    fn files_of(path: &Path, ext: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(partition_dir(path, "t", 0))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(ext))
            .collect();
        v.sort();
        v
    }

    fn idem_batch(seed: usize, records: usize, pid: i64, epoch: i16, seq: i32) -> Bytes {
        let mut b = BatchBuilder::new(1_000).idempotent(pid, epoch, seq);
        for r in 0..records {
            let v = format!("v{seed}.{r}:{}", "x".repeat(200));
            b.push(1_000, None, Some(v.as_bytes()), &[]);
        }
        b.finish()
    }

    fn txn_batch(seed: usize, pid: i64, epoch: i16, seq: i32) -> Bytes {
        let mut b = BatchBuilder::new(1_000)
            .idempotent(pid, epoch, seq)
            .transactional();
        b.push(1_000, None, Some(format!("t{seed}").as_bytes()), &[]);
        b.finish()
    }

    #[test]
    fn a_transaction_older_than_the_replayed_tail_holds_the_stable_offset_after_a_crash() {
        on_fresh_dir(|path| async move {
            let cfg = PartitionConfig::default();
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            p.open_txn(7, 0);
            p.append(&txn_batch(0, 7, 0, 0)).unwrap(); // 0
                                                       // Then more than the replayed tail of other data (1 MiB
                                                       // batches): 7's batch lies far before the window.
            let mut next = 1;
            while (next as u64) < PRODUCER_REBUILD_BYTES / (1 << 20) + 10 {
                let a = p.append(&make_batch(next as usize, 1, 1 << 20)).unwrap();
                p.flush_to(a.next_offset, p.durable_level()).await.unwrap();
                next = a.next_offset;
            }
            assert_eq!(p.last_stable_offset(), 0);
            // The record is written by a task of its own: wait for one at
            // or past the last check point.
            let check_point = next - (TXN_RECORD_EVERY >> 20) as i64 - 1;
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let (_, r) = TxnSnapshots::load(p.log.dir()).await.unwrap();
                if r.as_ref().is_some_and(|r| r.at >= check_point) {
                    assert_eq!(r.unwrap().txns, vec![(7, 0, 0)]);
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "no record: {r:?}");
                rt::sleep(Duration::from_millis(10)).await;
            }
            drop(p); // a crash: no close

            // Reopened: 7's transaction is still open from offset 0 (the
            // tail alone shows nothing of it), and its abort covers it all.
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            assert_eq!(p.high_watermark(), next);
            assert_eq!(p.last_stable_offset(), 0);
            p.write_marker(7, 0, batch::Marker::Abort, 0).await.unwrap();
            assert_eq!(p.last_stable_offset(), p.high_watermark());
            let o = p.read_isolated(0, 1 << 10, true).await.unwrap();
            assert_eq!(o.aborted, vec![(7, 0)]);
            p.close().await.unwrap();
            // Nothing open any more: a reopen replays only the tail.
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            assert_eq!(p.last_stable_offset(), p.high_watermark());
            let (_, r) = TxnSnapshots::load(p.log.dir()).await.unwrap();
            assert_eq!(
                r.map(|r| r.txns),
                Some(vec![]),
                "an empty record after the last"
            );
            p.close().await.unwrap();
        });
    }

    #[test]
    fn transactions_hold_the_last_stable_offset_until_their_markers() {
        on_fresh_dir(|path| async move {
            let cfg = PartitionConfig::default();
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            // Not opened by a coordinator: refused, nothing written.
            assert!(matches!(
                p.append(&txn_batch(0, 7, 0, 0)),
                Err(PartitionError::Sequence(SequenceError::Transactional(_)))
            ));
            p.open_txn(7, 0);
            p.open_txn(8, 0);
            p.append(&make_batch(1, 1, 10)).unwrap(); // 0
            p.append(&txn_batch(2, 7, 0, 0)).unwrap(); // 1
            p.append(&txn_batch(3, 8, 0, 0)).unwrap(); // 2
            let a = p.append(&make_batch(4, 1, 10)).unwrap(); // 3
            p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            assert_eq!(p.high_watermark(), 4);
            assert_eq!(p.last_stable_offset(), 1, "7's transaction is open");
            // Clients never write markers.
            let forged = batch::control_batch(7, 0, batch::Marker::Commit, 0, 1_000);
            assert!(p.append(&forged).is_err());
            let (m, ended) = p.append_marker(7, 0, batch::Marker::Abort, 0).unwrap();
            assert_eq!(m.base_offset, 4);
            assert_eq!(
                ended,
                Some(EndedTxn {
                    producer_id: 7,
                    first_offset: 1,
                    last_offset: 4
                })
            );
            p.flush_to(m.next_offset, Level::Synced).await.unwrap();
            assert_eq!(p.last_stable_offset(), 2, "8's transaction is open");

            // read_committed: up to the stable offset, 7's abort named.
            let o = p.read_isolated(0, 1 << 20, true).await.unwrap();
            assert_eq!((o.last_stable_offset, o.aborted.clone()), (2, vec![(7, 1)]));
            let offsets: Vec<i64> = batch::split_batches(&o.records.to_bytes())
                .unwrap()
                .iter()
                .map(|b| batch::BatchHeader::parse(b).unwrap().base_offset)
                .collect();
            assert_eq!(offsets, vec![0, 1], "nothing at or past the stable offset");
            p.close().await.unwrap();

            // Reopen: 8's transaction is open again (its batch and no
            // marker); 7's abort, whose entry was never synced (as after a
            // crash between the marker and its entry), comes back from the
            // log's tail.
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            assert_eq!(p.last_stable_offset(), 2);
            let o = p.read_isolated(0, 1 << 20, true).await.unwrap();
            assert_eq!(o.aborted, vec![(7, 1)]);
            p.write_marker(8, 0, batch::Marker::Commit, 0)
                .await
                .unwrap();
            assert_eq!(p.last_stable_offset(), p.high_watermark());
            // A second abort through write_marker: durable in the file.
            p.open_txn(9, 0);
            p.append(&txn_batch(5, 9, 0, 0)).unwrap(); // 6
            p.write_marker(9, 0, batch::Marker::Abort, 0).await.unwrap(); // 7
            let stored = read_all(&p).await;
            assert_eq!(
                batch::marker_of(stored[4].clone()),
                Some(batch::Marker::Abort)
            );
            assert_eq!(
                batch::marker_of(stored[5].clone()),
                Some(batch::Marker::Commit)
            );
            p.close().await.unwrap();
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            let o = p.read_isolated(0, 1 << 20, true).await.unwrap();
            assert_eq!(o.aborted, vec![(7, 1), (9, 6)]);
            assert_eq!(o.last_stable_offset, 8);
        });
    }

    #[test]
    fn idempotent_retries_get_the_original_offsets_and_survive_reopen() {
        on_fresh_dir(|path| async move {
            // Small segments: the rebuild on reopen spans several of them.
            let cfg = small_segments(4 << 10);
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            let mut acked = Vec::new();
            for i in 0..40usize {
                let pid = (i % 2) as i64;
                let seq = (i / 2 * 3) as i32;
                let b = idem_batch(i, 3, pid, 0, seq);
                let a = p.append(&b).unwrap();
                acked.push((b, a));
            }
            let end = p.state.borrow().next_offset;
            assert_eq!(end, 120);
            // Retries of the last five batches of producer 1: same offsets,
            // nothing appended; the flush they wait for is the original's.
            for (b, a) in &acked[30..] {
                assert_eq!(p.append(b).unwrap(), *a);
            }
            assert_eq!(p.state.borrow().next_offset, end);
            p.flush_to(end, Level::Synced).await.unwrap();
            // A gap: refused, nothing written.
            let gap = idem_batch(99, 1, 0, 0, 1_000);
            assert!(matches!(
                p.append(&gap),
                Err(PartitionError::Sequence(SequenceError::OutOfOrder {
                    expected: 60,
                    ..
                }))
            ));
            // A stale epoch after a bump.
            p.append(&idem_batch(100, 1, 1, 1, 0)).unwrap();
            assert!(matches!(
                p.append(&idem_batch(101, 1, 1, 0, 60)),
                Err(PartitionError::Sequence(SequenceError::StaleEpoch { .. }))
            ));
            // Two idempotent batches in one run: refused.
            let mut two = idem_batch(102, 1, 0, 0, 60).to_vec();
            two.extend_from_slice(&idem_batch(103, 1, 0, 0, 61));
            assert!(matches!(
                p.append(&Bytes::from(two)),
                Err(PartitionError::Sequence(SequenceError::Invalid(_)))
            ));
            let end = p.state.borrow().next_offset;
            assert_eq!(end, 121);
            p.flush_to(end, Level::Synced).await.unwrap();
            p.close().await.unwrap();

            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            assert!(p.segment_count() > 2);
            for (b, a) in acked[30..].iter().step_by(2) {
                assert_eq!(p.append(b).unwrap(), *a, "rebuilt from the log");
            }
            // Producer 1 moved to epoch 1 before the restart.
            assert!(matches!(
                p.append(&acked[39].0),
                Err(PartitionError::Sequence(SequenceError::StaleEpoch { .. }))
            ));
            assert!(matches!(
                p.append(&idem_batch(104, 1, 1, 0, 1)),
                Err(PartitionError::Sequence(SequenceError::StaleEpoch { .. }))
            ));
            assert_eq!(
                p.append(&idem_batch(105, 1, 0, 0, 60)).unwrap().base_offset,
                121
            );
            p.close().await.unwrap();
        });
    }

    #[test]
    fn segments_roll_by_size_and_reopen_from_their_index_files() {
        on_fresh_dir(|path| async move {
            let cfg = small_segments(16 << 10);
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            let mut sent = Vec::new();
            for i in 0..80 {
                let b = make_batch(i, 1 + i % 3, 300 + (i * 131) % 2500);
                let a = p.append(&b).unwrap();
                sent.push((b, a.base_offset));
                if i % 5 == 0 {
                    p.flush_to(a.next_offset, Level::Synced).await.unwrap();
                }
            }
            let next = p.state.borrow().next_offset;
            p.flush_to(next, Level::Synced).await.unwrap();
            let segs = p.segment_count();
            assert!(segs >= 5, "{segs} segments");
            // Every sealed segment holds at most segment.bytes plus one run.
            for s in p.log.segments().iter() {
                assert!(s.end_pos() <= (16 << 10) + 8192, "{}", s.end_pos());
            }
            // Sealed segments got their index files at the roll.
            assert_eq!(files_of(&path, ".index").len(), segs - 1);
            assert_eq!(files_of(&path, ".timeindex").len(), segs - 1);
            let got = read_all(&p).await;
            let want: Vec<Vec<u8>> = sent.iter().map(|(b, o)| as_stored(b, *o)).collect();
            assert_eq!(got.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), want);
            p.close().await.unwrap();
            assert_eq!(files_of(&path, ".log").len(), segs);
            assert_eq!(
                files_of(&path, ".index").len(),
                segs,
                "close writes the active segment's index"
            );

            // Reopen: each segment's scan starts at its last index entry.
            let dir = partition_dir(&path, "t", 0);
            for name in files_of(&path, ".log") {
                let base: i64 = name.trim_end_matches(".log").parse().unwrap();
                let (seg, rec) = Segment::open(&dir, base, 8192, now_ms(), OffsetChain::Contiguous)
                    .await
                    .unwrap();
                assert!(rec.index_rebuilt.is_none(), "{name}: {rec:?}");
                assert!(rec.batches_scanned <= 4, "{name}: {rec:?}");
                seg.close().await.unwrap();
            }
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            assert_eq!(p.segment_count(), segs);
            assert_eq!(read_all(&p).await, got);
            p.close().await.unwrap();

            // A missing and a damaged index are rebuilt from the log.
            let idx = files_of(&path, ".index");
            std::fs::remove_file(dir.join(&idx[1])).unwrap();
            std::fs::write(dir.join(&idx[2]), b"not an index").unwrap();
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            assert_eq!(read_all(&p).await, got);
            assert_eq!(
                files_of(&path, ".index").len(),
                segs,
                "rebuilt indexes written back"
            );
            // Appends continue at the right offset after all that.
            let a = p.append(&make_batch(7, 2, 10)).unwrap();
            assert_eq!(a.base_offset, next);
            p.close().await.unwrap();
        });
    }

    #[test]
    fn segments_roll_by_age() {
        on_fresh_dir(|path| async move {
            let mut cfg = small_segments(1 << 30);
            cfg.log.segment_ms = 30;
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            let a = p.append(&make_batch(1, 1, 10)).unwrap();
            let b = p.append(&make_batch(2, 1, 10)).unwrap();
            assert_eq!(p.segment_count(), 1, "young segment keeps taking appends");
            rt::sleep(Duration::from_millis(40)).await;
            let c = p.append(&make_batch(3, 1, 10)).unwrap();
            assert_eq!(p.segment_count(), 2);
            assert_eq!(p.log.segments()[1].base_offset(), c.base_offset);
            p.flush_to(c.next_offset, Level::Synced).await.unwrap();
            assert_eq!((a.base_offset, b.base_offset, c.base_offset), (0, 1, 2));
            assert_eq!(read_all(&p).await.len(), 3);
            p.close().await.unwrap();
        });
    }

    /// Reads batches from `offset` to the high watermark.
    async fn read_from(p: &Rc<Partition>, mut offset: i64) -> Vec<Bytes> {
        let mut out = Vec::new();
        while offset < p.high_watermark() {
            let r = p.read(offset, 1 << 20).await.unwrap();
            for b in batch::split_batches(&r.records.to_bytes()).unwrap() {
                offset = batch::validate(&b).unwrap().last_offset() + 1;
                out.push(b);
            }
        }
        out
    }

    #[test]
    fn retention_deletes_whole_old_segments_by_size_and_by_age_never_the_active() {
        on_fresh_dir(|path| async move {
            let mut cfg = small_segments(8 << 10);
            cfg.log.retention_bytes = 24 << 10;
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            let now = now_ms();
            let mut next = 0;
            for i in 0..60 {
                // ~2 KiB batches, the first 30 stamped a day ago
                let ts = if i < 30 { now - 86_400_000 } else { now };
                next = p.append(&batch_at(i, &[ts, ts], 1000)).unwrap().next_offset;
            }
            p.flush_to(next, Level::Synced).await.unwrap();
            let before = p.segment_count();
            let total = p.size_bytes();
            assert!(before >= 10, "{before}");
            let r = p.enforce_retention(now).await.unwrap();
            assert!(r.segments > 0);
            // Kafka's rule: delete the oldest while the rest still holds
            // retention.bytes; so what is left exceeds it by less than one segment.
            let first = p.log.segments()[0].end_pos();
            assert!(
                p.size_bytes() - first < 24 << 10,
                "{} bytes left",
                p.size_bytes()
            );
            assert!(p.size_bytes() >= 24 << 10);
            assert_eq!(total - r.bytes, p.size_bytes());
            assert_eq!(files_of(&path, ".log").len(), p.segment_count());
            let start = p.log_start_offset();
            assert!(start > 0);
            assert!(matches!(
                p.read(0, 100).await,
                Err(PartitionError::OffsetOutOfRange { .. })
            ));
            let rest = read_from(&p, start).await;
            assert_eq!(batch::validate(&rest[0]).unwrap().base_offset, start);
            assert_eq!(
                batch::validate(rest.last().unwrap()).unwrap().last_offset() + 1,
                next
            );

            // By age: nothing is older than a week...
            let mut p_cfg = p.config().clone();
            assert_eq!(p.enforce_retention(now).await.unwrap(), Retained::default());
            p.close().await.unwrap();
            // ...but with retention.ms of an hour, the day-old segments go,
            // and with 0 everything but the active segment.
            p_cfg.log.retention_bytes = -1;
            p_cfg.log.retention_ms = 3_600_000;
            let p = Partition::open(&path, "t", 0, p_cfg.clone()).await.unwrap();
            p.enforce_retention(now).await.unwrap();
            let old_gone = read_from(&p, p.log_start_offset()).await;
            let first_ts = batch::validate(&old_gone[0]).unwrap().max_timestamp;
            assert!(p
                .log
                .segments()
                .iter()
                .all(|s| s.max_timestamp() >= now - 3_600_000));
            assert!(first_ts >= now - 86_400_000);
            p.close().await.unwrap();
            p_cfg.log.retention_ms = 0;
            // cleanup.policy=compact alone: retention deletes nothing.
            let mut compact_only = p_cfg.clone();
            compact_only.log.cleanup_policy =
                crate::storage::meta::CleanupPolicy::parse("compact").unwrap();
            let p = Partition::open(&path, "t", 0, compact_only).await.unwrap();
            let segments = p.segment_count();
            p.enforce_retention(now + 1).await.unwrap();
            assert_eq!(p.segment_count(), segments);
            assert!(segments > 1);
            p.close().await.unwrap();
            let p = Partition::open(&path, "t", 0, p_cfg).await.unwrap();
            p.enforce_retention(now + 1).await.unwrap();
            assert_eq!(p.segment_count(), 1, "the active segment stays");
            assert_eq!(p.high_watermark(), next);
            let a = p.append(&make_batch(1, 1, 10)).unwrap();
            assert_eq!(a.base_offset, next);
            p.close().await.unwrap();
        });
    }

    #[test]
    fn timestamp_lookup_matches_a_linear_scan_across_segments() {
        on_fresh_dir(|path| async move {
            let p = Partition::open(&path, "t", 0, small_segments(6 << 10))
                .await
                .unwrap();
            let mut records = Vec::new(); // (offset, timestamp)
            let mut next = 0;
            let mut x: u64 = 7;
            for i in 0..120 {
                // mostly rising, sometimes stepping back (clients' clocks differ)
                let n = 1 + i % 4;
                let stamps: Vec<i64> = (0..n)
                    .map(|r| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        1_000 + (i * 100 + r * 10) as i64 - ((x >> 60) as i64) * 40
                    })
                    .collect();
                let a = p.append(&batch_at(i, &stamps, 200)).unwrap();
                for (k, &ts) in stamps.iter().enumerate() {
                    records.push((a.base_offset + k as i64, ts));
                }
                next = a.next_offset;
            }
            p.flush_to(next, Level::Synced).await.unwrap();
            assert!(p.segment_count() > 3);
            for target in (0..13_500).step_by(37) {
                let want = records.iter().find(|&&(_, ts)| ts >= target).copied();
                let got = p.offset_for_timestamp(target).await.unwrap();
                assert_eq!(got, want, "target {target}");
            }
            p.close().await.unwrap();
            // The same answers from the index files after a restart.
            let p = Partition::open(&path, "t", 0, small_segments(6 << 10))
                .await
                .unwrap();
            for target in (0..13_500).step_by(101) {
                let want = records.iter().find(|&&(_, ts)| ts >= target).copied();
                assert_eq!(
                    p.offset_for_timestamp(target).await.unwrap(),
                    want,
                    "target {target}"
                );
            }
            p.close().await.unwrap();
        });
    }

    #[test]
    fn acks_levels_and_fsync_policies_move_the_high_watermark_as_documented() {
        on_fresh_dir(|path| async move {
            for (policy, topic) in [
                (FsyncPolicy::Never, "never"),
                (FsyncPolicy::Interval(Duration::from_millis(5)), "interval"),
                (FsyncPolicy::Always, "always"),
            ] {
                let cfg = PartitionConfig {
                    fsync: policy,
                    ..Default::default()
                };
                let p = Partition::open(&path, topic, 0, cfg).await.unwrap();
                let a = p.append(&make_batch(1, 3, 100)).unwrap();
                assert_eq!(p.high_watermark(), 0, "nothing visible before a write");
                p.flush_to(a.next_offset, Level::Written).await.unwrap();
                if policy == FsyncPolicy::Always {
                    // visible once the sync that follows the write returned
                    p.sync_now().await.unwrap();
                    assert_eq!(p.state.borrow().synced_offset, 3);
                } else {
                    assert_eq!(
                        p.state.borrow().synced_offset,
                        0,
                        "{topic}: written, not synced"
                    );
                    p.sync_now().await.unwrap();
                    assert_eq!(p.state.borrow().synced_offset, 3);
                }
                assert_eq!(p.high_watermark(), 3, "{topic}");
                p.close().await.unwrap();
            }
        });
    }

    use crate::rt::faults::{self, Fault};

    /// Appends and durably flushes `n` batches; returns them as stored.
    async fn acked(p: &Rc<Partition>, seeds: std::ops::Range<usize>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for i in seeds {
            let b = make_batch(i, 2, 700);
            let a = p.append(&b).unwrap();
            p.flush_to(a.next_offset, Level::Synced).await.unwrap();
            out.push(as_stored(&b, a.base_offset));
        }
        out
    }

    fn stored(batches: Vec<Bytes>) -> Vec<Vec<u8>> {
        batches.iter().map(|b| b.to_vec()).collect()
    }

    #[test]
    fn a_full_disk_fails_the_produce_and_keeps_the_log_readable() {
        on_fresh_dir(|path| async move {
            let cfg = small_segments(1 << 20);
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            let good = acked(&p, 0..5).await;
            let hw = p.high_watermark();
            faults::inject(
                &partition_dir(&path, "t", 0),
                Fault::FailWrite(libc::ENOSPC),
            );
            let a = p.append(&make_batch(9, 2, 700)).unwrap();
            let e = p.flush_to(a.next_offset, Level::Synced).await.unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("No space left on device") && msg.contains("write to"),
                "{msg}"
            );
            // Refused from now on, with the same clear reason...
            let e = p.append(&make_batch(10, 1, 10)).unwrap_err();
            assert!(e.to_string().contains("No space left"), "{e}");
            // ...while reads go on up to the last acknowledged batch.
            assert_eq!(p.high_watermark(), hw);
            assert_eq!(stored(read_all(&p).await), good);
            assert!(p.close().await.is_err(), "close reports the failure");
            faults::clear();
            // After a restart (space freed) the log is the acknowledged one
            // and takes appends again.
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            assert_eq!(p.high_watermark(), hw);
            assert_eq!(stored(read_all(&p).await), good);
            let more = acked(&p, 20..22).await;
            assert_eq!(stored(read_all(&p).await), [good, more].concat());
            p.close().await.unwrap();
        });
    }

    #[test]
    fn a_torn_write_is_cut_to_the_last_whole_batch_on_restart() {
        on_fresh_dir(|path| async move {
            let cfg = small_segments(1 << 20);
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            let good = acked(&p, 0..3).await;
            // Three more batches (~4.5 KiB) in one flush; only its first page lands.
            faults::inject(
                &partition_dir(&path, "t", 0),
                Fault::TearWrite { keep_pages: 1 },
            );
            let mut unacked = Vec::new();
            let mut last = None;
            for i in 3..6 {
                let b = make_batch(i, 2, 700);
                let a = p.append(&b).unwrap();
                unacked.push(as_stored(&b, a.base_offset));
                last = Some(a);
            }
            let e = p
                .flush_to(last.unwrap().next_offset, Level::Synced)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("Input/output error"), "{e}");
            assert!(stored(read_all(&p).await) == good);
            drop(p); // a crash: no close
            faults::clear();
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            // The acknowledged batches, then whichever unacknowledged ones the
            // torn page held whole; the one it cut is gone.
            let after = stored(read_all(&p).await);
            let kept = after.len() - good.len();
            assert!(after.len() >= good.len() && kept < unacked.len(), "{kept}");
            assert!(
                after[..good.len()] == good[..],
                "acknowledged batches intact"
            );
            assert!(after[good.len()..] == unacked[..kept]);
            let more = acked(&p, 30..31).await;
            assert!(stored(read_all(&p).await) == [after, more].concat());
            p.close().await.unwrap();
        });
    }

    #[test]
    fn a_failed_fdatasync_fails_the_produce_and_hides_what_it_did_not_cover() {
        on_fresh_dir(|path| async move {
            let cfg = small_segments(1 << 20);
            let p = Partition::open(&path, "t", 0, cfg.clone()).await.unwrap();
            let good = acked(&p, 0..4).await;
            let hw = p.high_watermark();
            faults::inject(&partition_dir(&path, "t", 0), Fault::FailSync(libc::EIO));
            let a = p.append(&make_batch(8, 2, 700)).unwrap();
            let e = p.flush_to(a.next_offset, Level::Synced).await.unwrap_err();
            assert!(e.to_string().contains("fdatasync"), "{e}");
            // Under `always` readers never see what no fdatasync covered.
            assert_eq!(p.high_watermark(), hw);
            assert_eq!(stored(read_all(&p).await), good);
            drop(p);
            faults::clear();
            // The written but unacknowledged batch may survive; the
            // acknowledged ones must, in order.
            let p = Partition::open(&path, "t", 0, cfg).await.unwrap();
            let after = stored(read_all(&p).await);
            assert_eq!(after[..good.len()], good[..]);
            assert!(after.len() <= good.len() + 1);
            p.close().await.unwrap();
        });
    }

    #[test]
    fn group_commit_covers_concurrent_durable_produces_with_few_fdatasyncs() {
        on_fresh_dir(|path| async move {
            let p = Partition::open(&path, "t", 0, PartitionConfig::default())
                .await
                .unwrap();
            // 200 produces arrive while nothing is flushing yet, then 200 more
            // while the first flush runs: every one waits for its fdatasync.
            let mut waits = Vec::new();
            for round in 0..2 {
                for i in 0..200 {
                    let a = p.append(&make_batch(round * 1000 + i, 1, 100)).unwrap();
                    let p = p.clone();
                    waits.push(rt::spawn(async move {
                        p.flush_to(a.next_offset, Level::Synced).await
                    }));
                }
                rt::sleep(Duration::from_millis(1)).await;
            }
            for w in waits {
                w.await.unwrap();
            }
            let io = p.io_counts();
            assert_eq!(p.high_watermark(), 400);
            assert!(
                io.fdatasyncs >= 1 && io.fdatasyncs <= 6,
                "{io:?}: not grouped"
            );
            assert!(io.write_stages <= 6, "{io:?}");
            p.close().await.unwrap();
        });
    }

    #[test]
    fn unwritten_bytes_count_against_the_shard_memory_gauge() {
        on_fresh_dir(|path| async move {
            let gauge = MemoryGauge::new(64 << 10);
            let cfg = PartitionConfig {
                memory: gauge.clone(),
                ..small_segments(1 << 20)
            };
            let a = Partition::open(&path, "a", 0, cfg.clone()).await.unwrap();
            let b = Partition::open(&path, "b", 0, cfg).await.unwrap();
            let mut next = (0, 0);
            for i in 0..20 {
                next.0 = a.append(&make_batch(i, 2, 2000)).unwrap().next_offset;
                next.1 = b.append(&make_batch(i, 2, 2000)).unwrap().next_offset;
            }
            let held = gauge.used();
            assert!(held > 128 << 10 && gauge.is_over(), "{gauge:?}");
            a.flush_to(next.0, Level::Written).await.unwrap();
            assert!(gauge.used() < held && gauge.used() > 0, "{gauge:?}");
            // A producer waiting for room is let in once b's bytes are written.
            let waiter = rt::spawn({
                let gauge = gauge.clone();
                async move { gauge.wait_below().await }
            });
            b.flush_to(next.1, Level::Written).await.unwrap();
            waiter.await;
            assert_eq!(gauge.used(), 0);
            // A failed write releases what it held.
            faults::inject(&partition_dir(&path, "a", 0), Fault::FailWrite(libc::EIO));
            let n = a.append(&make_batch(99, 2, 2000)).unwrap().next_offset;
            assert!(gauge.used() > 0);
            assert!(a.flush_to(n, Level::Written).await.is_err());
            assert_eq!(gauge.used(), 0);
            faults::clear();
            b.close().await.unwrap();
        });
    }
}
