//! One partition's log on disk: the list of its segments and everything
//! done to them as a whole.
//!
//! Owns: the directory scan and recovery at open (segments in offset
//! order, empty leftovers of a roll removed, sealed segments' index files
//! rewritten when recovery rebuilt them), rolls, the executors of the
//! segments' flush jobs (the write stage: create the file of a rolled
//! segment, write the full tail buffers, then run seals) and of the
//! fdatasync stage, the read cursor that both fetches and time lookups
//! use, retention of whole old segments, and close.
//!
//! Must never: decide what an offset means or when a produce is answered
//! (the partition does: offsets, producers, levels, high watermark, group
//! commit), delete the active segment or one not fully written and sealed,
//! or let two write stages (or a write stage and retention) run at once:
//! stages and retention take `Writes`, which only `lock_writes` hands out.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, OffsetChain, Records};
use crate::metrics::ShardMetrics;
use crate::rt::{self, align_up, DirectFile, LocalLock, LocalLockGuard};
use crate::storage::compact::SegmentSummary;
use crate::storage::index::INDEX_INTERVAL_BYTES;
use crate::storage::meta::LogConfig;
use crate::storage::recovery::{Scanner, Step};
use crate::storage::segment::{self, FlushJob, Segment, Selection, Written};
use crate::storage::swap;
use crate::storage::{sync_dir, StorageError};

/// Which of a segment's bytes readers may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible {
    /// Bytes written to the file (`--fsync never` and `interval:`).
    Written,
    /// Bytes covered by a returned fdatasync (`--fsync always`).
    Synced,
}

/// I/O the log issued since it opened: group commit shows as far fewer
/// fdatasyncs than durable produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounts {
    /// Write stages run (each writes everything appended before it started).
    pub write_stages: u64,
    pub fdatasyncs: u64,
    /// Reads served from the segment files (the batch cache serves the rest).
    pub disk_reads: u64,
}

/// What retention removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub segments: usize,
    pub bytes: u64,
}

/// Proof that the caller holds the log's write lock.
pub struct Writes<'a>(#[allow(dead_code)] LocalLockGuard<'a>);

/// Proof that the caller holds the log's fdatasync lock.
pub struct Syncs<'a>(#[allow(dead_code)] LocalLockGuard<'a>);

/// A failed write or fdatasync stage: what was being done (for the
/// message the partition keeps and answers with) and why.
#[derive(Debug)]
pub struct StageError {
    pub what: String,
    pub error: StorageError,
}

/// The writes a stage took from the segments, taken in the same
/// synchronous step as the partition's snapshot of what they cover.
pub struct PendingWrites {
    jobs: Vec<FlushJob>,
    /// Bytes appended and not written before this stage: what it frees.
    pub bytes: u64,
}

impl PendingWrites {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

/// Files a sync stage covers: (segment base offset, file, written position).
pub struct PendingSyncs {
    files: Vec<(i64, Rc<DirectFile>, u64, PathBuf)>,
}

impl PendingSyncs {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Where a read looks in one segment, taken while no await is pending.
struct View {
    base: i64,
    file: Option<Rc<DirectFile>>,
    start: u64,
    end: u64,
    path: PathBuf,
}

/// The most a segment file grows ahead of its data in one step. Large
/// enough that the fallocate is rare (one per 16 MiB), small enough that a
/// crash leaves little to cut and a partition with a trickle of data does
/// not hold much unused disk.
pub const PREALLOC_MAX_BYTES: u64 = 16 << 20;

pub struct Log {
    dir: PathBuf,
    /// `topic/partition`, for messages.
    name: String,
    tail_buffer_bytes: usize,
    visible: Visible,
    /// Contiguous, or increasing with holes once compaction may have run.
    chain: Cell<OffsetChain>,
    /// Ascending by base offset; never empty; the last one is active.
    segments: RefCell<VecDeque<Segment>>,
    /// Serializes write stages, seals and retention: two writes of the same
    /// tail page are never in flight, and no segment is deleted mid-seal.
    writes: LocalLock,
    /// Serializes fdatasyncs: the group-commit point of `always`.
    syncs: LocalLock,
    io: Cell<IoCounts>,
    /// The start offset DeleteRecords moved the log to (0: never moved):
    /// offsets below it are gone for readers even where their segment
    /// stays. Persisted in `START_OFFSET_FILE`.
    start: Cell<i64>,
}

/// Where a partition's log start offset moved by DeleteRecords is kept
/// (Kafka's log-start-offset-checkpoint, per partition here).
pub const START_OFFSET_FILE: &str = "log-start-offset";

impl Log {
    /// Opens (or creates) the log in `dir` and recovers its segments (see
    /// `Segment::open`), logging what was cut and where.
    pub async fn open(
        dir: PathBuf,
        name: String,
        tail_buffer_bytes: usize,
        visible: Visible,
        chain: OffsetChain,
        metrics: &ShardMetrics,
    ) -> Result<Log, StorageError> {
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io("create dir", &dir, e))?;
        // A compaction cut by a crash: undone before its commit, finished
        // after it (swap.rs), before the segments are listed.
        let (dropped, finished) = swap::recover(&dir)?;
        if dropped + finished > 0 {
            tracing::warn!(
                "recovery of {name}: {dropped} uncommitted compaction(s) dropped, {finished} committed one(s) finished"
            );
        }
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| StorageError::io("list", &dir, e))? {
            let entry = entry.map_err(|e| StorageError::io("list", &dir, e))?;
            let file_name = entry.file_name();
            match file_name.to_str().and_then(segment::parse_file_name) {
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
        let now = rt::now_ms();
        let mut segments: VecDeque<Segment> = VecDeque::with_capacity(bases.len());
        let count = bases.len();
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == count;
            let (mut seg, rec) = Segment::open(&dir, base, tail_buffer_bytes, now, chain).await?;
            log_recovery(&name, &seg, &rec);
            metrics.recovered(rec.torn, rec.truncated_bytes, rec.index_rebuilt.is_some());
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
                if prev.next_offset() < base && chain == OffsetChain::Contiguous {
                    tracing::error!(
                        "recovery of {name}: offsets {}..{base} are missing between {} and {}",
                        prev.next_offset(),
                        prev.path().display(),
                        seg.path().display()
                    );
                }
            }
            if !last && seg.is_empty() && !segments.is_empty() {
                // An empty segment between others (a crash right after a roll
                // created it, or a cleaning that kept nothing of a group): it
                // holds nothing. An empty first one stays: a cleaning emptied
                // it and the log's start offset must not move.
                seg.close().await?;
                segment::remove_files(&dir, base)?;
                continue;
            }
            if !last {
                seg.seal_recovered();
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
        sync_dir(&dir)?;
        let start = read_start_offset(&dir)?;
        Ok(Log {
            start: Cell::new(start),
            dir,
            name,
            tail_buffer_bytes,
            visible,
            chain: Cell::new(chain),
            segments: RefCell::new(segments),
            writes: LocalLock::default(),
            syncs: LocalLock::default(),
            io: Cell::default(),
        })
    }

    /// The log may get holes from now on (it became compacted): scans
    /// read past them instead of stopping there.
    pub fn allow_offset_holes(&self) {
        self.chain.set(OffsetChain::Increasing);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One past the last offset appended.
    pub fn next_offset(&self) -> i64 {
        self.active_ref(|s| s.next_offset())
    }

    /// The first offset the log holds: its oldest segment's base, or
    /// where DeleteRecords moved the start, whichever is later.
    pub fn log_start(&self) -> i64 {
        let front = self
            .segments
            .borrow()
            .front()
            .expect("a log has a segment")
            .base_offset();
        front.max(self.start.get())
    }

    /// Kafka's DeleteRecords: the log starts at `offset` from now on (the
    /// caller checked it is at most the high watermark). The new start is
    /// made durable first; then whole segments below it are deleted (not
    /// the active one, nor one still being written: they stay, hidden).
    /// Returns the log start, which never moves back.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        if offset <= self.log_start() {
            return Ok(self.log_start());
        }
        write_start_offset(&self.dir, offset)?;
        self.start.set(offset);
        let _w = self.lock_writes().await;
        let mut removed = 0;
        loop {
            let victim = {
                let mut segments = self.segments.borrow_mut();
                let Some(front) = segments.front() else { break };
                let settled = front.is_sealed() && front.written_pos() == front.end_pos();
                if segments.len() < 2 || !settled || front.next_offset() > offset {
                    break;
                }
                segments.pop_front().expect("checked above")
            };
            let base = victim.base_offset();
            victim.close().await?;
            segment::remove_files(&self.dir, base)?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        tracing::info!(log = %self.name, start = offset, segments_deleted = removed, "log start moved (DeleteRecords)");
        Ok(self.log_start())
    }

    /// The newest record timestamp in the log (-1: none).
    pub fn max_timestamp(&self) -> i64 {
        self.segments
            .borrow()
            .iter()
            .map(|s| s.max_timestamp())
            .max()
            .unwrap_or(-1)
    }

    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.segments.borrow().len()
    }

    /// Bytes of all segments (appended, whether written yet or not).
    pub fn size_bytes(&self) -> u64 {
        self.segments.borrow().iter().map(|s| s.end_pos()).sum()
    }

    pub fn io_counts(&self) -> IoCounts {
        self.io.get()
    }

    /// The segments, for tests that look at their bounds.
    #[cfg(test)]
    pub(crate) fn segments(&self) -> std::cell::Ref<'_, VecDeque<Segment>> {
        self.segments.borrow()
    }

    fn active_ref<T>(&self, f: impl FnOnce(&Segment) -> T) -> T {
        f(self.segments.borrow().back().expect("a log has a segment"))
    }

    /// Replays the batch headers of the last `window` bytes of the log
    /// (across the newest segments; from the sparse index entry at or
    /// before the window's start), oldest first, with their base offsets.
    /// A `replay_tail_headers` window that starts at or before `offset`:
    /// the bytes from the sparse index entry at or before it to the end.
    pub fn bytes_from(&self, offset: i64) -> u64 {
        self.segments
            .borrow()
            .iter()
            .filter(|s| s.next_offset() > offset)
            .map(|s| {
                if s.base_offset() >= offset {
                    s.end_pos()
                } else {
                    s.end_pos() - s.locate(offset).min(s.end_pos())
                }
            })
            .sum()
    }

    pub async fn replay_tail_headers(
        &self,
        window: u64,
        mut f: impl FnMut(&BatchHeader),
    ) -> Result<(), StorageError> {
        let plan: Vec<_> = {
            let segments = self.segments.borrow();
            let mut plan = Vec::new();
            let mut left = window;
            for seg in segments.iter().rev() {
                if left == 0 {
                    break;
                }
                let end = seg.end_pos();
                let from = end.saturating_sub(left);
                left -= end - from;
                let Some(file) = seg.file() else { continue };
                let (offset, start) = seg.batch_at_or_before_pos(from);
                plan.push((file, seg.path().to_owned(), offset, start, end));
            }
            plan
        };
        for (file, path, offset, start, end) in plan.into_iter().rev() {
            let mut scan = Scanner::new(start, offset, end, self.chain.get());
            while let Step::Read { pos, len } = scan.step() {
                let buf = file
                    .read_at(pos, len)
                    .await
                    .map_err(|e| StorageError::io("read", &path, e))?;
                if buf.is_empty() {
                    break;
                }
                scan.feed(&buf, |_, h| f(h));
            }
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at `next_offset` when
    /// appending `incoming` bytes would pass `segment.bytes`, or the segment
    /// is older than `segment.ms`. An empty segment never rolls.
    pub fn roll_if_due(&self, config: &LogConfig, incoming: u64, now: i64) -> bool {
        let mut segments = self.segments.borrow_mut();
        let active = segments.back_mut().expect("a log has a segment");
        if active.is_empty() {
            return false;
        }
        let full = active.end_pos() + incoming > config.segment_bytes;
        let old = now - active.created_ms() >= config.segment_ms;
        if !(full || old) {
            return false;
        }
        let alloc = active.allocator();
        let next = active.next_offset();
        active.seal();
        tracing::debug!(log = %self.name, base = next, full, old, "segment rolled");
        let seg = Segment::rolled(&self.dir, next, self.tail_buffer_bytes, alloc, now);
        segments.push_back(seg);
        true
    }

    /// Appends one batch, already validated and given `offset`, to the
    /// active segment's tail: `parts` concatenated are its bytes.
    pub fn append(&self, h: &BatchHeader, offset: i64, parts: &[&[u8]], now: i64) {
        let mut segments = self.segments.borrow_mut();
        let active = segments.back_mut().expect("a log has a segment");
        debug_assert_eq!(offset, active.next_offset(), "offsets are contiguous");
        active.append(h, offset, parts, now);
    }

    pub async fn lock_writes(&self) -> Writes<'_> {
        Writes(self.writes.lock().await)
    }

    pub async fn lock_syncs(&self) -> Syncs<'_> {
        Syncs(self.syncs.lock().await)
    }

    /// Takes every segment's unwritten bytes for one write stage; files grow
    /// ahead of their writes in steps of `segment.bytes`, at most
    /// PREALLOC_MAX_BYTES (see `Segment::take_flush`).
    pub fn take_writes(&self, _w: &Writes<'_>, config: &LogConfig) -> PendingWrites {
        let step = config.segment_bytes.min(PREALLOC_MAX_BYTES);
        let step = align_up(step.max(1));
        let mut segments = self.segments.borrow_mut();
        let bytes = segments.iter().map(|s| s.end_pos() - s.written_pos()).sum();
        let jobs = segments
            .iter_mut()
            .filter_map(|s| s.take_flush(step))
            .collect();
        PendingWrites { jobs, bytes }
    }

    /// Runs a write stage: creates the files of rolled segments (their
    /// directory entry made durable first), writes in order, and records
    /// each segment's written end.
    pub async fn write(&self, w: &Writes<'_>, pending: PendingWrites) -> Result<(), StageError> {
        let mut io = self.io.get();
        io.write_stages += 1;
        self.io.set(io);
        for job in pending.jobs {
            let file = match job.file {
                Some(f) => f,
                None => {
                    let f =
                        self.create_segment_file(&job.path)
                            .await
                            .map_err(|error| StageError {
                                what: "creating a segment".into(),
                                error,
                            })?;
                    self.with_segment(w, job.base_offset, |s| s.set_file(f.clone()));
                    f
                }
            };
            if let Some(len) = job.preallocate {
                // Only a speed-up: on failure (a full disk, a filesystem
                // without fallocate) the writes extend the file as before and
                // report a full disk themselves.
                if let Err(e) = file.preallocate(len).await {
                    tracing::debug!("preallocating {} to {len} bytes: {e}", job.path.display());
                }
            }
            for (buf, pos) in job.writes {
                if let Err(e) = file.write_all_at(buf, pos).await {
                    return Err(StageError {
                        what: format!("write to {}", job.path.display()),
                        error: StorageError::io("write", &job.path, e),
                    });
                }
            }
            self.with_segment(w, job.base_offset, |s| s.complete_write(job.end_pos));
        }
        Ok(())
    }

    fn with_segment(&self, _w: &Writes<'_>, base: i64, f: impl FnOnce(&mut Segment)) {
        let mut segments = self.segments.borrow_mut();
        let seg = segments
            .iter_mut()
            .find(|s| s.base_offset() == base)
            .expect("segments are not removed while writes are locked");
        f(seg)
    }

    /// A sealed segment gets its index files and its trim once written,
    /// under the write lock, so retention never deletes it half-sealed.
    pub async fn run_seals(&self, _w: &Writes<'_>) {
        let seals: Vec<_> = {
            let mut segments = self.segments.borrow_mut();
            segments.iter_mut().filter_map(|s| s.take_seal()).collect()
        };
        for job in seals {
            let path = job.log_path.clone();
            if let Err(e) = job.run().await {
                // The data is written; only the index files or the trim
                // failed, and both are rebuilt from the log on the next start.
                tracing::warn!("sealing {} failed: {e}", path.display());
            }
        }
    }

    async fn create_segment_file(&self, path: &Path) -> Result<Rc<DirectFile>, StorageError> {
        let f = DirectFile::open_rw(path)
            .await
            .map_err(|e| StorageError::io("create", path, e))?;
        // The new file's directory entry must be durable before anything in
        // it is acknowledged as such.
        sync_dir(&self.dir)?;
        Ok(Rc::new(f))
    }

    /// The files with written bytes no fdatasync covers yet.
    pub fn take_syncs(&self, _s: &Syncs<'_>) -> PendingSyncs {
        let files = self
            .segments
            .borrow()
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
        PendingSyncs { files }
    }

    /// fdatasyncs each file, then records what each covered.
    pub async fn sync(
        &self,
        _s: &Syncs<'_>,
        pending: PendingSyncs,
        metrics: &ShardMetrics,
    ) -> Result<(), StageError> {
        for (_, file, _, path) in &pending.files {
            let mut io = self.io.get();
            io.fdatasyncs += 1;
            self.io.set(io);
            let started = std::time::Instant::now();
            if let Err(e) = file.fdatasync().await {
                return Err(StageError {
                    what: format!("fdatasync of {}", path.display()),
                    error: StorageError::io("fdatasync", path, e),
                });
            }
            metrics.fsynced(started);
        }
        let mut segments = self.segments.borrow_mut();
        for (base, file, pos, _) in pending.files {
            // Retention may have removed a segment meanwhile, or a cleaning
            // replaced it (same base, another file): nothing to record.
            if let Some(s) = segments.iter_mut().find(|s| {
                s.base_offset() == base && s.file().is_some_and(|f| Rc::ptr_eq(&f, &file))
            }) {
                s.complete_sync(pos);
            }
        }
        Ok(())
    }

    fn visible_end(&self, s: &Segment) -> u64 {
        match self.visible {
            Visible::Synced => s.synced_pos(),
            Visible::Written => s.written_pos(),
        }
    }

    fn view(&self, s: &Segment, start: u64) -> View {
        View {
            base: s.base_offset(),
            file: s.file(),
            start,
            end: self.visible_end(s),
            path: s.path().to_owned(),
        }
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (at
    /// least one batch), from one segment, as stored. The caller checked
    /// that `offset` is below the visible end (the high watermark).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, StorageError> {
        // From an index entry to the batch holding `offset` is under one
        // index interval plus that batch: read that much beyond max_bytes.
        let chunk = max_bytes.saturating_add(2 * INDEX_INTERVAL_BYTES as usize);
        let mut io = self.io.get();
        io.disk_reads += 1;
        self.io.set(io);
        // Segments may roll or be deleted across the awaits below: pick
        // them by base offset each time.
        let mut after: Option<i64> = None;
        loop {
            let view = {
                let segments = self.segments.borrow();
                let i = match after {
                    None => Some(
                        segments
                            .partition_point(|s| s.base_offset() <= offset)
                            .saturating_sub(1),
                    ),
                    Some(b) => segments.iter().position(|s| s.base_offset() > b),
                };
                i.map(|i| self.view(&segments[i], segments[i].locate(offset)))
            };
            let Some(view) = view else {
                return Err(StorageError::Corrupt {
                    path: self.dir.clone(),
                    detail: format!("no segment holds offset {offset} below the visible end"),
                });
            };
            after = Some(view.base);
            let found = select_in(&view, chunk, |buf| {
                segment::select_batches(buf, offset, max_bytes)
            })
            .await?;
            if let Some(records) = found {
                return Ok(records);
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
    ) -> Result<Option<(i64, i64)>, StorageError> {
        const CHUNK: usize = 256 << 10;
        let mut after: Option<i64> = None;
        loop {
            let view = {
                let segments = self.segments.borrow();
                segments
                    .iter()
                    .filter(|s| after.is_none_or(|b| s.base_offset() > b))
                    .find(|s| s.max_timestamp() >= target)
                    .map(|s| {
                        let from = s.time_index().start_for(target).unwrap_or(s.base_offset());
                        self.view(s, s.locate(from))
                    })
            };
            let Some(view) = view else {
                return Ok(None);
            };
            after = Some(view.base);
            let found = select_in(&view, CHUNK, |buf| segment::find_timestamp(buf, target)).await?;
            if let Some(b) = found {
                return first_record_at_or_after(b, target).map(Some).map_err(|e| {
                    StorageError::Corrupt {
                        path: view.path,
                        detail: format!("a batch below the visible end does not decode: {e}"),
                    }
                });
            }
        }
    }

    /// Deletes the oldest segments, whole, while the log is over
    /// `retention.bytes` by at least that segment, or the segment's newest
    /// timestamp is older than `retention.ms`. Never the active segment, nor
    /// one whose bytes are not all written and sealed.
    pub async fn enforce_retention(
        &self,
        config: &LogConfig,
        now: i64,
    ) -> Result<Retained, StorageError> {
        let mut done = Retained::default();
        if !config.cleanup_policy.delete {
            // compact alone: the cleaner, not age or size, bounds the log.
            return Ok(done);
        }
        let _w = self.lock_writes().await;
        loop {
            let victim = {
                let mut segments = self.segments.borrow_mut();
                if segments.len() < 2 {
                    break;
                }
                let total: u64 = segments.iter().map(|s| s.end_pos()).sum();
                let front = segments.front().expect("checked above");
                // Sealed and written: its seal ran under the write lock we hold.
                let settled = front.is_sealed() && front.written_pos() == front.end_pos();
                let by_size = config.retention_bytes >= 0
                    && total - front.end_pos() >= config.retention_bytes as u64;
                let newest = if front.max_timestamp() >= 0 {
                    front.max_timestamp()
                } else {
                    front.created_ms()
                };
                let by_age = config.retention_ms >= 0 && now - newest > config.retention_ms;
                if !(settled && (by_size || by_age)) {
                    break;
                }
                let seg = segments.pop_front().expect("checked above");
                tracing::info!(
                    log = %self.name,
                    segment = %seg.path().display(),
                    bytes = seg.end_pos(),
                    reason = if by_size { "retention.bytes" } else { "retention.ms" },
                    log_start = segments.front().expect("two or more").base_offset(),
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
            sync_dir(&self.dir)?;
        }
        Ok(done)
    }

    /// What the compaction planner needs of each segment, oldest first. A
    /// segment is settled once sealed and every byte is written (and synced,
    /// where readers see only synced bytes): only those may be cleaned.
    pub fn summaries(&self) -> Vec<SegmentSummary> {
        self.segments
            .borrow()
            .iter()
            .map(|s| SegmentSummary {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                bytes: s.end_pos(),
                max_timestamp: s.max_timestamp(),
                sealed_and_synced: s.is_sealed()
                    && s.written_pos() == s.end_pos()
                    && (self.visible == Visible::Written || s.synced_pos() == s.end_pos()),
            })
            .collect()
    }

    /// A settled segment's file and length, for the cleaner to read. None
    /// when retention or a cleaning removed it meanwhile.
    pub fn settled_file(&self, base: i64) -> Option<(Rc<DirectFile>, u64, PathBuf)> {
        let segments = self.segments.borrow();
        let s = segments.iter().find(|s| s.base_offset() == base)?;
        if !s.is_sealed() || s.written_pos() != s.end_pos() {
            return None;
        }
        Some((s.file()?, s.end_pos(), s.path().to_owned()))
    }

    /// Any DMA file of this log, to allocate aligned buffers through.
    pub fn allocator(&self) -> Rc<DirectFile> {
        self.active_ref(|s| s.allocator())
    }

    /// Replaces the segments with base offsets `group` (consecutive in the
    /// log, below the active segment) with the cleaning's output: the file
    /// `swap::cleaned_name(group[0])`, written and synced, laid out as `out`
    /// says. Commits and finishes the swap (swap.rs), then the log reads the
    /// new segment. An empty output replaces the group by nothing, except
    /// at the log's start (the start offset stays). Ok(false): the group is
    /// not there as it was (retention removed some of it), nothing changed;
    /// the caller removes its file.
    pub async fn swap_in(
        &self,
        w: &Writes<'_>,
        group: &[i64],
        file: Rc<DirectFile>,
        out: Written,
    ) -> Result<bool, StorageError> {
        let (at, end) = {
            let segments = self.segments.borrow();
            let Some(at) = segments.iter().position(|s| s.base_offset() == group[0]) else {
                return Ok(false);
            };
            let same = at + group.len() < segments.len()
                && group.iter().enumerate().all(|(k, &b)| {
                    let s = &segments[at + k];
                    s.base_offset() == b && s.is_sealed() && s.written_pos() == s.end_pos()
                });
            if !same {
                return Ok(false);
            }
            (at, segments[at + group.len()].base_offset())
        };
        let base = group[0];
        debug_assert!(out.last_batch_offset.is_none_or(|l| l < end));
        swap::commit(&self.dir, base, end)?;
        swap::finish(&self.dir, base, end)?;
        let keep_empty = at == 0;
        let old: Vec<Segment> = {
            let mut segments = self.segments.borrow_mut();
            let old = segments.drain(at..at + group.len()).collect();
            if out.end_pos > 0 || keep_empty {
                segments.insert(at, Segment::cleaned(&self.dir, base, file, out));
            }
            old
        };
        for seg in old {
            seg.discard().await;
        }
        if !(keep_empty
            || self
                .segments
                .borrow()
                .iter()
                .any(|s| s.base_offset() == base))
        {
            // Nothing survived: the empty file the swap put in place goes
            // (recovery would drop it too: an empty segment between others).
            segment::remove_files(&self.dir, base)?;
            sync_dir(&self.dir)?;
        }
        // The new segment's index files and the trim of its padding.
        self.run_seals(w).await;
        Ok(true)
    }

    /// Seals the index files of and closes every segment, once no stage
    /// runs. The caller wrote and synced everything first.
    pub async fn close(&self) -> Result<(), StorageError> {
        let _w = self.lock_writes().await;
        let _s = self.lock_syncs().await;
        let segments = std::mem::take(&mut *self.segments.borrow_mut());
        for seg in segments {
            seg.close().await?;
        }
        Ok(())
    }
}

/// The start offset DeleteRecords left (0 when it never ran).
fn read_start_offset(dir: &Path) -> Result<i64, StorageError> {
    let path = dir.join(START_OFFSET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|&o| o >= 0)
            .ok_or_else(|| StorageError::Corrupt {
                path,
                detail: format!("{text:?} is not an offset"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StorageError::io("read", &path, e)),
    }
}

/// Replaces the start offset file durably: a temp file, fsynced, renamed
/// over it, the directory fsynced (DeleteRecords is answered after this).
fn write_start_offset(dir: &Path, offset: i64) -> Result<(), StorageError> {
    use std::io::Write;
    let path = dir.join(START_OFFSET_FILE);
    let tmp = dir.join(format!("{START_OFFSET_FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
    f.write_all(format!("{offset}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| StorageError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &tmp, e))?;
    sync_dir(dir)
}

/// The read cursor: from `view.start`, reads chunks of the segment's
/// visible bytes and lets `select` pick whole batches out of each (both
/// selectors read from a batch boundary: `Skip` moves to the next one).
/// `None` when nothing in this segment is selected.
async fn select_in(
    view: &View,
    chunk: usize,
    select: impl Fn(&[u8]) -> Selection,
) -> Result<Option<Bytes>, StorageError> {
    let Some(file) = &view.file else {
        return Ok(None); // a rolled segment with nothing written yet
    };
    let mut pos = view.start;
    let mut want = chunk;
    while pos < view.end {
        let len = want.min((view.end - pos) as usize);
        let buf = file
            .read_at(pos, len)
            .await
            .map_err(|e| StorageError::io("read", &view.path, e))?;
        if buf.len() < len {
            // Below the visible end every byte is written: a short read is
            // a file cut behind our back, not the end of the log.
            return Err(StorageError::Corrupt {
                path: view.path.clone(),
                detail: format!(
                    "read {} of {len} bytes at position {pos} below the visible end {}",
                    buf.len(),
                    view.end
                ),
            });
        }
        match select(&buf) {
            Selection::Found { start, len } => {
                // One copy out of the DMA read buffer; a tail cache that
                // serves caught-up consumers from memory replaces it later.
                return Ok(Some(Bytes::copy_from_slice(&buf[start..start + len])));
            }
            Selection::Skip(n) => {
                assert!(n > 0, "a skip over a non-empty read moves on");
                pos += n as u64;
                want = chunk;
            }
            Selection::NeedBytes(n) if n > len && pos + n as u64 <= view.end => want = n,
            Selection::NeedBytes(_) | Selection::Corrupt { .. } => {
                return Err(StorageError::Corrupt {
                    path: view.path.clone(),
                    detail: format!(
                        "no whole batch at position {pos} below the visible end {}",
                        view.end
                    ),
                });
            }
        }
    }
    Ok(None)
}

/// The offset and timestamp of the first record at or after `target` in a
/// batch whose max timestamp reaches it.
fn first_record_at_or_after(b: Bytes, target: i64) -> Result<(i64, i64), batch::BatchError> {
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

fn log_recovery(name: &str, seg: &Segment, rec: &segment::Recovery) {
    if rec.torn {
        tracing::warn!(
            "recovery of {name}: cut {} bytes of a torn or corrupt tail at position {} of {}; \
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
            log = name,
            segment = %seg.path().display(),
            "index rebuilt from the log: {why}"
        );
    }
    tracing::debug!(
        log = name,
        segment = %seg.path().display(),
        scanned_from = rec.scanned_from,
        batches_scanned = rec.batches_scanned,
        end = rec.end_pos,
        zero_padding_cut = if rec.torn { 0 } else { rec.truncated_bytes },
        "segment recovered"
    );
}
