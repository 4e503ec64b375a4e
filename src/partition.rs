//! One partition: an ordered, durable log of record batches over segments.
//!
//! Owns: offset assignment (patching each batch's base offset in place), the
//! segment list (roll by size and age, retention of whole old segments), the
//! high watermark (what consumers may see: written, and fsynced under
//! `--fsync always`), group commit (one write covers every batch appended
//! while the previous write ran, one fdatasync every batch written while the
//! previous fdatasync ran), and reads by offset and by timestamp.
//!
//! Must never: be touched by a shard that does not own it (it is `!Send`:
//! `Rc` + `RefCell`, no locks), acknowledge a batch before the write (and
//! fdatasync, when the caller asked for durability under `always`) covering
//! it returned, delete the active segment, or decode records on the produce
//! path (work is per batch).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use crate::batch::{self, BatchError, Records};
use crate::metrics::{PartitionMetrics, ShardMetrics};
use crate::producer_state::{self, Check, ProducerStates, SequenceError};
use crate::rt::{self, DirectFile, LocalLock};
use crate::storage::index::INDEX_INTERVAL_BYTES;
use crate::storage::meta::LogConfig;
use crate::storage::recovery::{Scanner, Step};
use crate::storage::segment::{self, Segment, Selection, TimeSelection};
use crate::storage::{partition_dir, StorageError};

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

/// Bytes appended but not yet written, summed over every partition of a
/// shard, against the part of the shard's memory budget that may hold them.
/// Producers are slowed (their connection is not read) while it is over, so
/// a disk slower than the producers never makes memory grow without bound.
pub struct MemoryGauge {
    used: std::cell::Cell<u64>,
    limit: u64,
    freed: Rc<rt::Event>,
    /// Where `used` is published for `/metrics`.
    metrics: Arc<ShardMetrics>,
}

impl std::fmt::Debug for MemoryGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryGauge({} of {})", self.used.get(), self.limit)
    }
}

impl MemoryGauge {
    pub fn new(limit: u64) -> Rc<MemoryGauge> {
        Self::with_metrics(limit, ShardMetrics::detached())
    }

    /// A gauge that also publishes its level in `metrics`.
    pub fn with_metrics(limit: u64, metrics: Arc<ShardMetrics>) -> Rc<MemoryGauge> {
        metrics.memory_unwritten_limit_bytes.set(limit);
        Rc::new(MemoryGauge {
            used: Default::default(),
            limit,
            freed: Rc::default(),
            metrics,
        })
    }

    pub fn used(&self) -> u64 {
        self.used.get()
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn is_over(&self) -> bool {
        self.used.get() > self.limit
    }

    fn add(&self, n: u64) {
        self.used.set(self.used.get() + n);
        self.metrics.memory_unwritten_bytes.set(self.used.get());
    }

    fn sub(&self, n: u64) {
        let used = self.used.get();
        assert!(n <= used, "memory gauge: freeing {n} of {used} bytes");
        self.used.set(used - n);
        self.metrics.memory_unwritten_bytes.set(used - n);
        self.freed.notify_all();
    }

    /// Waits until the unwritten bytes are back under the limit (writes in
    /// flight bring them down; a failed write releases its bytes too).
    pub async fn wait_below(&self) {
        if self.is_over() {
            tracing::debug!(
                used = self.used.get(),
                limit = self.limit,
                "producer waits for memory"
            );
        }
        while self.is_over() {
            rt::any_notified(vec![self.freed.clone()]).await;
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
    /// Roll and retention (the topic's overrides already applied).
    pub log: LogConfig,
    /// The shard's metrics (detached by default).
    pub metrics: Arc<ShardMetrics>,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            fsync: FsyncPolicy::Always,
            tail_buffer_bytes: segment::TAIL_BUFFER_BYTES,
            memory: MemoryGauge::new(u64::MAX),
            max_batch_bytes: 16 << 20,
            log: LogConfig::default(),
            metrics: ShardMetrics::detached(),
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
    /// Whole batches, exactly as stored.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// I/O the partition issued since it opened: group commit shows as far
/// fewer fdatasyncs than durable produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    /// Write stages run (each writes everything appended before it started).
    pub write_stages: u64,
    pub fdatasyncs: u64,
}

/// What retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub segments: usize,
    pub bytes: u64,
}

/// Bytes at the end of a partition's log whose batch headers rebuild the
/// idempotent producers' state when it opens (ARCHITECTURE.md: a retry
/// after a restart is recognised if its original lies in this window).
pub const PRODUCER_REBUILD_BYTES: u64 = 16 << 20;

/// Replays the batch headers of the last `PRODUCER_REBUILD_BYTES` of the
/// log (across the newest segments; from the sparse index entry at or
/// before the window's start) into a fresh `ProducerStates`.
async fn rebuild_producers(segments: &VecDeque<Segment>) -> Result<ProducerStates, StorageError> {
    let mut plan = Vec::new();
    let mut left = PRODUCER_REBUILD_BYTES;
    for seg in segments.iter().rev() {
        if left == 0 {
            break;
        }
        let end = seg.end_pos();
        let from = end.saturating_sub(left);
        left -= end - from;
        plan.push((seg, from));
    }
    let mut states = ProducerStates::default();
    for (seg, from) in plan.into_iter().rev() {
        let Some(file) = seg.file() else { continue };
        let (offset, start) = seg.batch_at_or_before_pos(from);
        let mut scan = Scanner::new(start, offset, seg.end_pos());
        while let Step::Read { pos, len } = scan.step() {
            let buf = file
                .read_at(pos, len)
                .await
                .map_err(|e| StorageError::io("read", seg.path(), e))?;
            if buf.is_empty() {
                break;
            }
            scan.feed(&buf, |_, h| states.record(h, h.base_offset));
        }
    }
    Ok(states)
}

/// Bytes of a batch the broker rewrites: base offset and leader epoch.
const PATCHED_PREFIX_BYTES: usize = 16;

fn closed() -> PartitionError {
    PartitionError::Closed
}

/// Wall-clock milliseconds: segment age and retention by time use the same
/// clock as record timestamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct State {
    /// Ascending by base offset; never empty; the last one is active.
    segments: VecDeque<Segment>,
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
}

impl State {
    fn active(&mut self) -> &mut Segment {
        self.segments.back_mut().expect("a partition has a segment")
    }

    fn log_start(&self) -> i64 {
        self.segments
            .front()
            .expect("a partition has a segment")
            .base_offset()
    }

    /// Index of the segment that holds `offset` (the last with base <= offset).
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset() <= offset)
            .saturating_sub(1)
    }

    fn segment_by_base(&mut self, base: i64) -> Option<&mut Segment> {
        self.segments.iter_mut().find(|s| s.base_offset() == base)
    }

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
    dir: PathBuf,
    config: PartitionConfig,
    state: RefCell<State>,
    /// Serializes writes (and seals, retention): two writes of the same tail
    /// page are never in flight, and no segment is deleted mid-seal.
    write_lock: LocalLock,
    /// Serializes fdatasyncs: the group-commit point of `always`.
    sync_lock: LocalLock,
    io: std::cell::Cell<IoCounts>,
    /// Bytes this partition holds in the shard's memory gauge.
    counted: std::cell::Cell<u64>,
    /// Notified when the high watermark moves (and on close): long-polling
    /// fetches wait on it.
    data: Rc<rt::Event>,
    /// This partition's own labelled series, if it got a slot.
    labelled: Option<Arc<PartitionMetrics>>,
}

impl Partition {
    /// Opens (or creates) the partition's directory and its segments, and
    /// recovers them (see `Segment::open`), logging what was cut and where.
    pub async fn open(
        data_dir: &Path,
        topic: &str,
        id: u32,
        config: PartitionConfig,
    ) -> Result<Rc<Partition>, StorageError> {
        let dir = partition_dir(data_dir, topic, id);
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io("create dir", &dir, e))?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| StorageError::io("list", &dir, e))? {
            let entry = entry.map_err(|e| StorageError::io("list", &dir, e))?;
            let name = entry.file_name();
            match name.to_str().and_then(segment::parse_file_name) {
                None => {}
                Some(Ok(base)) => bases.push(base),
                Some(Err(())) => {
                    return Err(StorageError::Corrupt {
                        path: entry.path(),
                        detail: "segment file name is not a 20-digit offset".into(),
                    })
                }
            }
        }
        bases.sort_unstable();
        if bases.is_empty() {
            bases.push(0);
        }
        let now = now_ms();
        let mut segments: VecDeque<Segment> = VecDeque::with_capacity(bases.len());
        let count = bases.len();
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == count;
            let (mut seg, rec) = Segment::open(&dir, base, config.tail_buffer_bytes, now).await?;
            log_recovery(topic, id, &seg, &rec);
            let rebuilt = rec.index_rebuilt.is_some();
            (config.metrics).recovered(rec.torn, rec.truncated_bytes, rebuilt);
            if let Some(prev) = segments.back() {
                if prev.next_offset() > base {
                    return Err(StorageError::Corrupt {
                        path: seg.path().to_owned(),
                        detail: format!(
                            "segment starts at offset {base} but the one before ends at {}",
                            prev.next_offset()
                        ),
                    });
                }
                if prev.next_offset() < base {
                    tracing::error!(
                        "recovery of {topic}/{id}: offsets {}..{base} are missing between {} and {}",
                        prev.next_offset(),
                        prev.path().display(),
                        seg.path().display()
                    );
                }
            }
            if !last && seg.is_empty() {
                // An empty segment before another (a crash right after a roll
                // created it): it holds nothing.
                seg.close().await?;
                segment::remove_files(&dir, base)?;
                continue;
            }
            if !last {
                seg.seal();
                if let Some(job) = seg.take_seal() {
                    if rec.index_rebuilt.is_some() || rec.truncated_bytes > 0 {
                        let path = job.log_path.clone();
                        if let Err(e) = job.run().await {
                            // As for a seal at run time: the log is whole and
                            // its index is in memory; the files are rebuilt on
                            // a later start. A full disk must not keep the
                            // broker from serving what it holds.
                            tracing::warn!("sealing {} failed: {e}", path.display());
                        }
                    }
                }
            }
            segments.push_back(seg);
        }
        let next = segments.back().expect("at least one segment").next_offset();
        let producers = rebuild_producers(&segments).await?;
        if !producers.is_empty() {
            tracing::debug!(
                "{topic}/{id}: {} idempotent producers rebuilt from the last {} bytes",
                producers.len(),
                PRODUCER_REBUILD_BYTES
            );
        }
        crate::storage::sync_dir(&dir)?;
        let labelled = config.metrics.partition(topic, id);
        (config.metrics.tail_buffer_bytes).add(config.tail_buffer_bytes as u64);
        Ok(Rc::new(Partition {
            topic: topic.to_owned(),
            id,
            dir,
            config,
            state: RefCell::new(State {
                segments,
                next_offset: next,
                written_offset: next,
                synced_offset: next,
                high_watermark: next,
                failed: None,
                closing: false,
                producers,
            }),
            write_lock: LocalLock::default(),
            sync_lock: LocalLock::default(),
            io: Default::default(),
            counted: Default::default(),
            data: Rc::default(),
            labelled,
        }))
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This partition's labelled metrics, if it has a slot.
    pub fn labelled(&self) -> Option<&PartitionMetrics> {
        self.labelled.as_deref()
    }

    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start()
    }

    /// Notified whenever new data becomes visible, and when the partition closes.
    pub fn data_event(&self) -> Rc<rt::Event> {
        self.data.clone()
    }

    pub fn is_closing(&self) -> bool {
        self.state.borrow().closing
    }

    pub fn io_counts(&self) -> IoCounts {
        self.io.get()
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.state.borrow().segments.len()
    }

    /// Bytes of all segments (appended, whether written yet or not).
    pub fn size_bytes(&self) -> u64 {
        self.state
            .borrow()
            .segments
            .iter()
            .map(|s| s.end_pos())
            .sum()
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
        if records.len() > self.config.max_batch_bytes {
            return Err(PartitionError::TooLarge {
                bytes: records.len(),
                max: self.config.max_batch_bytes,
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
        let now = now_ms();
        self.maybe_roll(&mut st, records.len() as u64, now);
        let base_offset = st.next_offset;
        let mut pos = 0;
        for h in &headers {
            let total = h.total_bytes();
            let offset = st.next_offset;
            // Only the first 16 bytes change (base offset, leader epoch): patch
            // a copy of them and append the rest straight from the request.
            let mut prefix = [0u8; PATCHED_PREFIX_BYTES];
            prefix.copy_from_slice(&records[pos..pos + PATCHED_PREFIX_BYTES]);
            batch::patch_base_offset(&mut prefix, offset, 0);
            st.active().append(
                h,
                offset,
                &[&prefix, &records[pos + PATCHED_PREFIX_BYTES..pos + total]],
                now,
            );
            st.next_offset = offset + h.offset_count();
            st.producers.record(h, offset);
            pos += total;
        }
        debug_assert_eq!(pos, records.len());
        self.config.memory.add(pos as u64);
        self.counted.set(self.counted.get() + pos as u64);
        let messages = (st.next_offset - base_offset) as u64;
        (self.config.metrics).produced(self.labelled.as_deref(), messages, pos as u64);
        let next = st.next_offset;
        debug_assert_eq!(next, st.active().next_offset());
        Ok(Appended {
            base_offset,
            next_offset: st.next_offset,
        })
    }

    /// Seals the active segment and starts a new one when appending `incoming`
    /// bytes would pass `segment.bytes`, or the segment is older than `segment.ms`.
    fn maybe_roll(&self, st: &mut State, incoming: u64, now: i64) {
        let log = &self.config.log;
        let active = st.active();
        if active.is_empty() {
            return;
        }
        let full = active.end_pos() + incoming > log.segment_bytes;
        let old = now - active.created_ms() >= log.segment_ms;
        if !(full || old) {
            return;
        }
        let alloc = active.allocator();
        active.seal();
        let next = st.next_offset;
        tracing::debug!(topic = %self.topic, partition = self.id, base = next, full, old, "segment rolled");
        let seg = Segment::rolled(&self.dir, next, self.config.tail_buffer_bytes, alloc, now);
        st.segments.push_back(seg);
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
        rt::spawn_detached(async move { this.write_phase(next_offset).await })
            .await
            .unwrap_or_else(|| Err(PartitionError::Storage("write task was cancelled".into())))?;
        if self.config.fsync != FsyncPolicy::Always {
            return Ok(());
        }
        let this = self.clone();
        let sync = rt::spawn_detached(async move { this.sync_phase(next_offset).await });
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
        rt::spawn_detached(async move { this.sync_phase(target).await })
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

    fn fail(&self, st: &mut State, what: &str, e: impl std::fmt::Display) -> PartitionError {
        // Nothing more will be written: release what the gauge holds for us,
        // or producers to other partitions would wait forever.
        self.config.memory.sub(self.counted.replace(0));
        let msg = format!("{what} of {}/{} failed: {e}", self.topic, self.id);
        tracing::error!("{msg}; the partition refuses writes until restart (reads go on)");
        st.failed = Some(msg.clone());
        PartitionError::Storage(msg)
    }

    async fn write_phase(&self, target: i64) -> Result<(), PartitionError> {
        let _guard = self.write_lock.lock().await;
        if self.reached(target, Level::Written)? {
            return Ok(());
        }
        let (jobs, next_offset, job_bytes) = {
            let mut st = self.state.borrow_mut();
            let job_bytes: u64 = st
                .segments
                .iter()
                .map(|s| s.end_pos() - s.written_pos())
                .sum();
            let jobs: Vec<_> = st
                .segments
                .iter_mut()
                .filter_map(|s| s.take_flush())
                .collect();
            (jobs, st.next_offset, job_bytes)
        };
        debug_assert!(!jobs.is_empty(), "unwritten offsets imply a flush job");
        let mut io = self.io.get();
        io.write_stages += 1;
        self.io.set(io);
        for job in jobs {
            let file = match job.file {
                Some(f) => f,
                None => match self.create_segment_file(&job.path).await {
                    Ok(f) => {
                        let mut st = self.state.borrow_mut();
                        st.segment_by_base(job.base_offset)
                            .expect("segments are not removed while writes are locked")
                            .set_file(f.clone());
                        f
                    }
                    Err(e) => {
                        return Err(self.fail(
                            &mut self.state.borrow_mut(),
                            "creating a segment",
                            e,
                        ))
                    }
                },
            };
            for (buf, pos) in job.writes {
                if let Err(e) = file.write_all_at(buf, pos).await {
                    let what = format!("write to {}", job.path.display());
                    return Err(self.fail(&mut self.state.borrow_mut(), &what, e));
                }
            }
            let mut st = self.state.borrow_mut();
            st.segment_by_base(job.base_offset)
                .expect("segments are not removed while writes are locked")
                .complete_write(job.end_pos);
        }
        self.counted.set(self.counted.get() - job_bytes);
        self.config.memory.sub(job_bytes);
        let seals: Vec<_> = {
            let mut st = self.state.borrow_mut();
            debug_assert!(
                next_offset >= st.written_offset,
                "written offset only grows"
            );
            st.written_offset = next_offset;
            if self.config.fsync != FsyncPolicy::Always {
                st.high_watermark = next_offset;
                self.data.notify_all();
            }
            st.segments
                .iter_mut()
                .filter_map(|s| s.take_seal())
                .collect()
        };
        // A sealed segment gets its index files and its trim now, under the
        // write lock, so retention never deletes it half-sealed.
        for job in seals {
            let path = job.log_path.clone();
            if let Err(e) = job.run().await {
                // The data is written; only the index files or the trim
                // failed, and both are rebuilt from the log on the next start.
                tracing::warn!("sealing {} failed: {e}", path.display());
            }
        }
        Ok(())
    }

    async fn create_segment_file(&self, path: &Path) -> Result<Rc<DirectFile>, StorageError> {
        let f = DirectFile::open_rw(path)
            .await
            .map_err(|e| StorageError::io("create", path, e))?;
        // The new file's directory entry must be durable before anything in
        // it is acknowledged as such.
        crate::storage::sync_dir(&self.dir)?;
        Ok(Rc::new(f))
    }

    async fn sync_phase(&self, target: i64) -> Result<(), PartitionError> {
        let _guard = self.sync_lock.lock().await;
        if self.reached(target, Level::Synced)? {
            return Ok(());
        }
        let (files, offset) = {
            let st = self.state.borrow();
            let files: Vec<_> = st
                .segments
                .iter()
                .filter(|s| s.synced_pos() < s.written_pos())
                .map(|s| {
                    (
                        s.base_offset(),
                        s.file().expect("written implies a file"),
                        s.written_pos(),
                        s.path().to_owned(),
                    )
                })
                .collect();
            (files, st.written_offset)
        };
        let covered = (offset - self.state.borrow().synced_offset).max(0) as u64;
        for (_, file, _, path) in &files {
            let mut io = self.io.get();
            io.fdatasyncs += 1;
            self.io.set(io);
            let started = std::time::Instant::now();
            if let Err(e) = file.fdatasync().await {
                let what = format!("fdatasync of {}", path.display());
                return Err(self.fail(&mut self.state.borrow_mut(), &what, e));
            }
            self.config.metrics.fsynced(started);
        }
        if !files.is_empty() {
            self.config.metrics.group_commit(covered);
        }
        let mut st = self.state.borrow_mut();
        for (base, _, pos, _) in files {
            // Retention may have removed a segment meanwhile: nothing to record.
            if let Some(s) = st.segment_by_base(base) {
                s.complete_sync(pos);
            }
        }
        st.synced_offset = st.synced_offset.max(offset);
        if self.config.fsync == FsyncPolicy::Always {
            debug_assert!(offset >= st.high_watermark, "high watermark only grows");
            st.high_watermark = st.high_watermark.max(offset);
            self.data.notify_all();
        }
        Ok(())
    }

    /// Where consumers may read up to in a segment: synced bytes under
    /// `always`, written bytes otherwise.
    fn visible_pos(&self, s: &Segment) -> u64 {
        match self.config.fsync {
            FsyncPolicy::Always => s.synced_pos(),
            _ => s.written_pos(),
        }
    }

    /// Reads whole batches from the one holding `offset`, up to `max_bytes`
    /// (at least one batch), from one segment. Empty at the high watermark.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadOutput, PartitionError> {
        let (hw, log_start) = {
            let st = self.state.borrow();
            (st.high_watermark, st.log_start())
        };
        if offset < log_start || offset > hw {
            return Err(PartitionError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hw,
            });
        }
        let empty = ReadOutput {
            records: Bytes::new(),
            high_watermark: hw,
            log_start_offset: log_start,
        };
        if offset == hw {
            return Ok(empty);
        }
        // Segments may roll or be deleted across the awaits below: pick them
        // by base offset each time.
        let mut after: Option<i64> = None;
        loop {
            let picked = {
                let st = self.state.borrow();
                let i = match after {
                    None => Some(st.segment_for(offset)),
                    Some(b) => st.segments.iter().position(|s| s.base_offset() > b),
                };
                i.map(|i| {
                    let s = &st.segments[i];
                    (
                        s.base_offset(),
                        s.file(),
                        s.locate(offset),
                        self.visible_pos(s),
                        s.path().to_owned(),
                    )
                })
            };
            let Some((base, file, start_pos, visible_end, path)) = picked else {
                return Err(PartitionError::Storage(format!(
                    "{}: no segment holds offset {offset} below the high watermark {hw}",
                    self.dir.display()
                )));
            };
            let (Some(file), true) = (file, visible_end > start_pos) else {
                after = Some(base);
                continue;
            };
            let mut pos = start_pos;
            // From an index entry to the batch holding `offset` is under one
            // index interval plus that batch; read that much beyond max_bytes.
            let first_try = |pos: u64| {
                max_bytes
                    .saturating_add(2 * INDEX_INTERVAL_BYTES as usize)
                    .min((visible_end - pos) as usize)
            };
            let mut want = first_try(pos);
            loop {
                let buf = file
                    .read_at(pos, want)
                    .await
                    .map_err(|e| StorageError::io("read", &path, e))?;
                match segment::select_batches(&buf, offset, max_bytes) {
                    Selection::Found { start, len } => {
                        // One copy out of the DMA read buffer; a tail cache that
                        // serves caught-up consumers from memory replaces it later.
                        let records = Bytes::copy_from_slice(&buf[start..start + len]);
                        return Ok(ReadOutput { records, ..empty });
                    }
                    Selection::Skip(n) => {
                        pos += n as u64;
                        if pos >= visible_end {
                            // Everything visible here is below `offset`: the next segment.
                            after = Some(base);
                            break;
                        }
                        want = first_try(pos);
                    }
                    Selection::NeedBytes(n) if n as u64 <= visible_end - pos && n > want => {
                        want = n
                    }
                    Selection::NeedBytes(_) | Selection::Corrupt { .. } => {
                        return Err(PartitionError::Storage(format!(
                            "{}: no whole batch holds offset {offset} at position {pos} below the high watermark {hw}",
                            path.display()
                        )));
                    }
                }
            }
        }
    }

    /// The first offset whose record timestamp is at or after `target`, with
    /// that timestamp (Kafka's ListOffsets by time); None when every visible
    /// record is older. Compressed batches answer with their base offset and
    /// max timestamp (records are not decompressed on the broker).
    pub async fn offset_for_timestamp(
        &self,
        target: i64,
    ) -> Result<Option<(i64, i64)>, PartitionError> {
        let mut after: Option<i64> = None;
        loop {
            let picked = {
                let st = self.state.borrow();
                st.segments
                    .iter()
                    .filter(|s| after.is_none_or(|b| s.base_offset() > b))
                    .find(|s| s.max_timestamp() >= target)
                    .map(|s| {
                        let from = s.time_index().start_for(target).unwrap_or(s.base_offset());
                        (
                            s.base_offset(),
                            s.file(),
                            s.locate(from),
                            self.visible_pos(s),
                            s.path().to_owned(),
                        )
                    })
            };
            let Some((base, file, mut pos, visible_end, path)) = picked else {
                return Ok(None);
            };
            after = Some(base);
            let Some(file) = file else { continue };
            let mut want = 256 << 10;
            while pos < visible_end {
                let len = want.min((visible_end - pos) as usize);
                let buf = file
                    .read_at(pos, len)
                    .await
                    .map_err(|e| StorageError::io("read", &path, e))?;
                match segment::find_timestamp(&buf, target) {
                    TimeSelection::Found { start, len } => {
                        let b = Bytes::copy_from_slice(&buf[start..start + len]);
                        return Ok(Some(first_record_at_or_after(b, target)?));
                    }
                    TimeSelection::Skip(n) => {
                        pos += n as u64;
                        want = 256 << 10;
                    }
                    TimeSelection::NeedBytes(n) if n > len && pos + n as u64 <= visible_end => {
                        want = n
                    }
                    TimeSelection::NeedBytes(_) | TimeSelection::Corrupt { .. } => {
                        return Err(PartitionError::Storage(format!(
                            "{}: unreadable batch at position {pos} below the high watermark",
                            path.display()
                        )));
                    }
                }
            }
        }
    }

    /// Deletes the oldest segments, whole, while the log is over
    /// `retention.bytes` by at least that segment, or the segment's newest
    /// timestamp is older than `retention.ms`. Never the active segment, nor
    /// one whose bytes are not all written and sealed.
    pub async fn enforce_retention(&self, now: i64) -> Result<Retained, PartitionError> {
        let _guard = self.write_lock.lock().await;
        let log = &self.config.log;
        let mut done = Retained::default();
        loop {
            let victim = {
                let mut st = self.state.borrow_mut();
                if st.segments.len() < 2 {
                    break;
                }
                let total: u64 = st.segments.iter().map(|s| s.end_pos()).sum();
                let front = st.segments.front().expect("checked above");
                // Sealed and written: its seal ran under the write lock we hold.
                let settled = front.is_sealed() && front.written_pos() == front.end_pos();
                let by_size = log.retention_bytes >= 0
                    && total - front.end_pos() >= log.retention_bytes as u64;
                let newest = if front.max_timestamp() >= 0 {
                    front.max_timestamp()
                } else {
                    front.created_ms()
                };
                let by_age = log.retention_ms >= 0 && now - newest > log.retention_ms;
                if !(settled && (by_size || by_age)) {
                    break;
                }
                let seg = st.segments.pop_front().expect("checked above");
                tracing::info!(
                    topic = %self.topic,
                    partition = self.id,
                    segment = %seg.path().display(),
                    bytes = seg.end_pos(),
                    reason = if by_size { "retention.bytes" } else { "retention.ms" },
                    log_start = st.log_start(),
                    "retention deleted a segment"
                );
                seg
            };
            done.segments += 1;
            done.bytes += victim.end_pos();
            let base = victim.base_offset();
            victim.close().await?;
            segment::remove_files(&self.dir, base)?;
        }
        if done.segments > 0 {
            crate::storage::sync_dir(&self.dir)?;
        }
        Ok(done)
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
        let _w = self.write_lock.lock().await;
        let _s = self.sync_lock.lock().await;
        let segments = std::mem::take(&mut self.state.borrow_mut().segments);
        for seg in segments {
            seg.close().await?;
        }
        if let Some(l) = &self.labelled {
            self.config.metrics.forget(l);
        }
        (self.config.metrics.tail_buffer_bytes).sub(self.config.tail_buffer_bytes as u64);
        Ok(())
    }
}

/// The offset and timestamp of the first record at or after `target` in a
/// batch whose max timestamp reaches it.
fn first_record_at_or_after(b: Bytes, target: i64) -> Result<(i64, i64), PartitionError> {
    let h = batch::validate(&b)?;
    if h.compression() != 0 {
        return Ok((h.base_offset, h.max_timestamp));
    }
    for r in Records::new(b)? {
        let r = r?;
        if r.timestamp_ms >= target {
            return Ok((r.offset, r.timestamp_ms));
        }
    }
    // The header's max timestamp says a record reaches target; trust it.
    Ok((h.base_offset, h.max_timestamp))
}

fn log_recovery(topic: &str, id: u32, seg: &Segment, rec: &segment::Recovery) {
    if rec.torn {
        tracing::warn!(
            "recovery of {topic}/{id}: cut {} bytes of a torn or corrupt tail at position {} of {}; \
             the log ends at offset {} after {} CRC-checked batches from position {}",
            rec.truncated_bytes,
            rec.end_pos,
            seg.path().display(),
            rec.next_offset,
            rec.batches_scanned,
            rec.scanned_from,
        );
    }
    if let Some(why) = &rec.index_rebuilt {
        tracing::info!(
            topic,
            partition = id,
            segment = %seg.path().display(),
            "index rebuilt from the log: {why}"
        );
    }
    tracing::debug!(
        topic,
        partition = id,
        segment = %seg.path().display(),
        scanned_from = rec.scanned_from,
        batches_scanned = rec.batches_scanned,
        end = rec.end_pos,
        zero_padding_cut = if rec.torn { 0 } else { rec.truncated_bytes },
        "segment recovered"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Records};
    use crate::rt::testkit;
    use std::time::Duration;

    /// Runs `body` on a test executor over a fresh data directory (on a real
    /// disk), after the polled-I/O probe, with a deadline.
    fn on_fresh_dir<G, F>(body: G)
    where
        G: FnOnce(PathBuf) -> F + Send + 'static,
        F: std::future::Future<Output = ()> + 'static,
    {
        let dir = testkit::data_dir();
        let path = dir.path().to_owned();
        testkit::run(Duration::from_secs(60), move || async move {
            crate::rt::probe_polled_io(&path).await.unwrap();
            body(path).await
        });
    }

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
            let b = batch::split_batches(&r.records).unwrap();
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
            let (seg, rec) = Segment::open(&pdir, 0, 8192, now_ms()).await.unwrap();
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
            let (seg, rec) = Segment::open(&pdir, 0, 8192, now_ms()).await.unwrap();
            assert!(rec.torn, "{rec:?}");
            assert_eq!(rec.truncated_bytes, 9);
            assert_eq!(rec.next_offset, 2);
            seg.close().await.unwrap();
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
            for s in p.state.borrow().segments.iter() {
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
                let (seg, rec) = Segment::open(&dir, base, 8192, now_ms()).await.unwrap();
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
            assert_eq!(p.state.borrow().segments[1].base_offset(), c.base_offset);
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
            for b in batch::split_batches(&r.records).unwrap() {
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
            let first = p.state.borrow().segments[0].end_pos();
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
                .state
                .borrow()
                .segments
                .iter()
                .all(|s| s.max_timestamp() >= now - 3_600_000));
            assert!(first_ts >= now - 86_400_000);
            p.close().await.unwrap();
            p_cfg.log.retention_ms = 0;
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
