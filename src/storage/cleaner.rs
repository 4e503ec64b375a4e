//! One compaction cleaning of one log, on the shard that owns it: what
//! compact.rs decides, done with the segment files.
//!
//! Owns: the cleaning's passes over the files (read in large chunks, whole
//! batches cut out of them), the key map's memory cap, the write of each
//! group's survivors into `<base>.log.cleaned` through O_DIRECT (aligned
//! chunks, zero padding, fdatasync) with the new segment's indexes built on
//! the way, the I/O budget (bytes per second read and written), and the
//! cleaner checkpoint file (where the part never cleaned starts).
//!
//! Must never: touch the active segment or any segment the planner did not
//! hand it, put a group's replacement in place except through
//! `Log::swap_in` (under the write lock, crash-safe by swap.rs), or leave a
//! `.cleaned` file behind on an error it returns.
//!
//! A cleaning: plan (compact::plan, below the first unstable offset) -> key
//! map pass over `[log start, end)` (keys only from the dirty part
//! `[first dirty, end)` and not from aborted transactions; every batch's
//! producer, for "last batch of its producer") -> per group: clean each
//! batch (compact::clean_batch, walking the transactions again), write the
//! survivors, fdatasync, swap in -> checkpoint `end`; the aborted
//! transactions found without data are reported for the aborted index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::batch::{BatchHeader, HEADER_BYTES};
use crate::rt::{self, align_up, AlignedBuf, DirectFile};
use crate::storage::compact::{self, Cleaning, KeyMap, Outcome, Plan, Stats, TxnWalk};
use crate::storage::log::Log;
use crate::storage::meta::LogConfig;
use crate::storage::segment::Written;
use crate::storage::swap;
use crate::storage::txnindex::AbortedTxn;
use crate::storage::StorageError;

/// Where the part of a log no cleaning covered yet starts, per partition.
pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// Reads and writes go in chunks of this size: large enough that the
/// cleaner issues few I/Os, small enough to hold several per shard.
const CHUNK_BYTES: usize = 1 << 20;

/// What one cleaning may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Memory for the key map. When the dirty part holds more keys, the
    /// cleaning ends at the segment where the map filled; the next one
    /// goes on from there (Kafka's dedupe buffer does the same).
    pub map_bytes: usize,
    /// Bytes per second read and written together; 0: no limit.
    pub io_bytes_per_sec: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            map_bytes: 64 << 20,
            io_bytes_per_sec: 0,
        }
    }
}

/// What a cleaning did.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub plan: Plan,
    /// Where this cleaning ended (`plan.end`, or less when the key map
    /// filled): the next checkpoint.
    pub end: i64,
    pub stats: Stats,
    /// Groups replaced, and groups left as they were because retention
    /// removed some of their segments meanwhile.
    pub groups: usize,
    pub groups_skipped: usize,
    pub segments_before: usize,
    pub segments_after: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Wall time, throttling included.
    pub elapsed: Duration,
    /// Aborted transactions found with no data left: their entries in the
    /// partition's aborted index can go.
    pub emptied: Vec<AbortedTxn>,
}

/// What a cleaning needs of the partition's transactions.
#[derive(Debug, Clone, Default)]
pub struct Txns {
    /// The first offset of the oldest open transaction: nothing from its
    /// segment on is cleaned.
    pub first_unstable: Option<i64>,
    /// Every aborted transaction of the partition.
    pub aborted: Vec<AbortedTxn>,
}

/// The checkpoint of a partition directory; None when missing or unreadable
/// (the next cleaning starts from the log's start, which is only slower).
pub fn read_checkpoint(dir: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(CHECKPOINT_FILE)).ok()?;
    text.trim().parse().ok().filter(|&o: &i64| o >= 0)
}

/// Replaces the checkpoint (a temp file renamed over it). Not synced: a
/// checkpoint lost or left older by a crash only makes the next cleaning
/// start earlier, and it is written only after the swaps it covers are
/// durable, so it is never ahead of the log.
pub fn write_checkpoint(dir: &Path, offset: i64) -> Result<(), StorageError> {
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    std::fs::write(&tmp, format!("{offset}\n")).map_err(|e| StorageError::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| StorageError::io("rename", &tmp, e))
}

/// Runs a cleaning of `log` if the planner says one is due. `checkpoint`:
/// where the last one ended. Ok(None): nothing due.
pub async fn clean(
    log: &Log,
    config: &LogConfig,
    checkpoint: Option<i64>,
    now_ms: i64,
    limits: &Limits,
    txns: &Txns,
) -> Result<Option<Report>, StorageError> {
    let started = Instant::now();
    let summaries = log.summaries();
    let Some(plan) = compact::plan(&summaries, checkpoint, config, now_ms, txns.first_unstable)
    else {
        return Ok(None);
    };
    let mut io = Throttle::new(limits.io_bytes_per_sec);
    let cleaning = Cleaning {
        now_ms,
        delete_retention_ms: config.delete_retention_ms,
    };

    // Pass 1: the key map over the dirty part (aborted data left out), each
    // producer's last batch over everything cleaned.
    let mut keys = KeyMap::default();
    let mut walk = TxnWalk::new(&txns.aborted);
    let mut last_of: HashMap<i64, i64> = HashMap::new();
    let mut end = plan.end;
    for s in summaries.iter().take_while(|s| s.next_offset <= plan.end) {
        let dirty = s.next_offset > plan.first_dirty;
        if dirty && s.base_offset > plan.first_dirty && keys.memory_bytes() >= limits.map_bytes {
            end = s.base_offset;
            break;
        }
        let Some(mut batches) = Batches::open(log, s.base_offset) else {
            return Ok(None); // retention took it meanwhile: plan again later
        };
        while let Some((b, h)) = batches.next(&mut io).await? {
            if h.producer_id >= 0 {
                last_of.insert(h.producer_id, h.base_offset);
            }
            let add_keys = dirty && h.base_offset >= plan.first_dirty;
            compact::map_batch(&mut keys, &mut walk, &b, &h, add_keys)
                .map_err(|e| batches.corrupt(&h, e))?;
            rt::yield_if_needed().await;
        }
    }

    // Pass 2: each group's survivors into its replacement.
    let mut stats = Stats::default();
    let mut report = Report {
        plan,
        end,
        stats: Stats::default(),
        groups: 0,
        groups_skipped: 0,
        segments_before: summaries.len(),
        segments_after: 0,
        bytes_before: summaries.iter().map(|s| s.bytes).sum(),
        bytes_after: 0,
        elapsed: Duration::ZERO,
        emptied: Vec::new(),
    };
    let mut walk = TxnWalk::new(&txns.aborted);
    for g in compact::groups(&summaries, end, config.segment_bytes) {
        let bases: Vec<i64> = summaries[g].iter().map(|s| s.base_offset).collect();
        let path = log.dir().join(swap::cleaned_name(bases[0]));
        let result = clean_group(
            log, &bases, &path, &keys, &last_of, &cleaning, &mut walk, &mut stats, &mut io, now_ms,
        )
        .await;
        let replaced = match result {
            Ok(Some((file, out))) => {
                let w = log.lock_writes().await;
                log.swap_in(&w, &bases, file, out).await
            }
            Ok(None) => {
                walk.blind(); // batches of this group were not walked
                Ok(false)
            }
            Err(e) => Err(e),
        };
        match replaced {
            Ok(true) => report.groups += 1,
            Ok(false) => {
                report.groups_skipped += 1;
                remove_quietly(&path);
            }
            Err(e) => {
                remove_quietly(&path);
                return Err(e);
            }
        }
    }
    let after = log.summaries();
    report.stats = stats;
    report.emptied = walk.emptied();
    report.segments_after = after.len();
    report.bytes_after = after.iter().map(|s| s.bytes).sum();
    report.elapsed = started.elapsed();
    Ok(Some(report))
}

/// Cleans one group into `path`; None when one of its segments went away.
#[allow(clippy::too_many_arguments)]
async fn clean_group(
    log: &Log,
    bases: &[i64],
    path: &Path,
    keys: &KeyMap,
    last_of: &HashMap<i64, i64>,
    cleaning: &Cleaning,
    walk: &mut TxnWalk,
    stats: &mut Stats,
    io: &mut Throttle,
    now_ms: i64,
) -> Result<Option<(Rc<DirectFile>, Written)>, StorageError> {
    let file = DirectFile::open_rw(path)
        .await
        .map_err(|e| StorageError::io("create", path, e))?;
    file.truncate(0)
        .await
        .map_err(|e| StorageError::io("truncate", path, e))?;
    let mut out = Output::new(file, path, now_ms);
    for &base in bases {
        let Some(mut batches) = Batches::open(log, base) else {
            out.close().await;
            return Ok(None);
        };
        while let Some((b, h)) = batches.next(io).await? {
            let last = h.producer_id >= 0 && last_of.get(&h.producer_id) == Some(&h.base_offset);
            let outcome = compact::clean_batch(&b, keys, cleaning, last, walk, stats)
                .map_err(|e| batches.corrupt(&h, e))?;
            match outcome {
                Outcome::Keep => out.push(&b, &h, io).await?,
                Outcome::Rewrite(n) => {
                    let nh = BatchHeader::parse(&n).expect("encode_batch writes a header");
                    debug_assert_eq!(
                        (nh.base_offset, nh.last_offset()),
                        (h.base_offset, h.last_offset()),
                        "a rewritten batch keeps its offsets"
                    );
                    out.push(&n, &nh, io).await?
                }
                Outcome::Drop => {}
            }
            rt::yield_if_needed().await;
        }
    }
    out.finish(io).await.map(Some)
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // Left for recovery, which drops every `.cleaned` file.
        Err(e) => tracing::warn!("removing {}: {e}", path.display()),
    }
}

/// Keeps reads and writes under a rate: after each, sleeps until the bytes
/// so far are within `bytes_per_sec` of the time since the start.
struct Throttle {
    bytes_per_sec: u64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(bytes_per_sec: u64) -> Throttle {
        Throttle {
            bytes_per_sec,
            started: Instant::now(),
            bytes: 0,
        }
    }

    async fn account(&mut self, n: usize) {
        self.bytes += n as u64;
        if self.bytes_per_sec == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec as f64);
        let spent = self.started.elapsed();
        if due > spent {
            rt::sleep(due - spent).await;
        }
    }
}

/// The batches of one settled segment, in order, cut out of chunked reads.
struct Batches {
    file: Rc<DirectFile>,
    path: PathBuf,
    len: u64,
    /// Where the next read starts.
    pos: u64,
    /// Read and not yet handed out; starts at a batch boundary.
    buf: Bytes,
}

impl Batches {
    fn open(log: &Log, base: i64) -> Option<Batches> {
        let (file, len, path) = log.settled_file(base)?;
        Some(Batches {
            file,
            path,
            len,
            pos: 0,
            buf: Bytes::new(),
        })
    }

    fn corrupt(&self, h: &BatchHeader, e: impl std::fmt::Display) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            detail: format!(
                "batch at offset {} in a settled segment: {e}",
                h.base_offset
            ),
        }
    }

    fn damaged(&self, detail: String) -> StorageError {
        StorageError::Corrupt {
            path: self.path.clone(),
            detail,
        }
    }

    async fn next(
        &mut self,
        io: &mut Throttle,
    ) -> Result<Option<(Bytes, BatchHeader)>, StorageError> {
        loop {
            let mut need = HEADER_BYTES;
            if self.buf.len() >= HEADER_BYTES {
                let h = BatchHeader::parse(&self.buf).expect("a whole header");
                if h.batch_length < (HEADER_BYTES - crate::batch::LOG_OVERHEAD) as i32
                    || h.total_bytes() as u64 > self.buf.len() as u64 + (self.len - self.pos)
                {
                    return Err(self.damaged(format!(
                        "batch length {} at offset {} runs past the segment's end",
                        h.batch_length, h.base_offset
                    )));
                }
                need = h.total_bytes();
                if self.buf.len() >= need {
                    return Ok(Some((self.buf.split_to(need), h)));
                }
            }
            if self.pos >= self.len {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(self.damaged(format!(
                    "{} bytes after the last whole batch",
                    self.buf.len()
                )));
            }
            let want = CHUNK_BYTES.max(need - self.buf.len());
            let want = want.min((self.len - self.pos) as usize);
            let read = self
                .file
                .read_at(self.pos, want)
                .await
                .map_err(|e| StorageError::io("read", &self.path, e))?;
            if read.len() < want {
                return Err(self.damaged(format!(
                    "read {} of {want} bytes at position {} below the settled end {}",
                    read.len(),
                    self.pos,
                    self.len
                )));
            }
            io.account(want).await;
            self.pos += want as u64;
            let mut joined = BytesMut::with_capacity(self.buf.len() + want);
            joined.extend_from_slice(&self.buf);
            joined.extend_from_slice(&read);
            self.buf = joined.freeze();
        }
    }
}

/// A group's replacement file being written: whole batches laid end to end
/// into aligned chunks, each written once full.
struct Output {
    file: DirectFile,
    path: PathBuf,
    chunk: AlignedBuf,
    fill: usize,
    /// File position of `chunk`.
    at: u64,
    written: Written,
}

impl Output {
    fn new(file: DirectFile, path: &Path, now_ms: i64) -> Output {
        let chunk = file.alloc(CHUNK_BYTES);
        Output {
            file,
            path: path.to_owned(),
            chunk,
            fill: 0,
            at: 0,
            written: Written {
                now_ms,
                ..Written::default()
            },
        }
    }

    async fn push(
        &mut self,
        b: &[u8],
        h: &BatchHeader,
        io: &mut Throttle,
    ) -> Result<(), StorageError> {
        debug_assert_eq!(b.len(), h.total_bytes());
        self.written.on_batch(h);
        let mut data = b;
        while !data.is_empty() {
            let n = (CHUNK_BYTES - self.fill).min(data.len());
            self.chunk.as_bytes_mut()[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == CHUNK_BYTES {
                let full = std::mem::replace(&mut self.chunk, self.file.alloc(CHUNK_BYTES));
                self.write(full, io).await?;
                self.at += CHUNK_BYTES as u64;
                self.fill = 0;
            }
        }
        Ok(())
    }

    async fn write(&self, buf: AlignedBuf, io: &mut Throttle) -> Result<(), StorageError> {
        let n = buf.len();
        self.file
            .write_all_at(buf, self.at)
            .await
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        io.account(n).await;
        Ok(())
    }

    /// Writes the last chunk (zero padded to a page: recovery and the
    /// seal's trim cut the padding), fdatasyncs, and hands out the file.
    async fn finish(self, io: &mut Throttle) -> Result<(Rc<DirectFile>, Written), StorageError> {
        let Output {
            file,
            path,
            mut chunk,
            fill,
            at,
            written,
        } = self;
        if fill > 0 {
            let len = align_up(fill as u64) as usize;
            chunk.as_bytes_mut()[fill..len].fill(0);
            chunk.trim_to_size(len);
            file.write_all_at(chunk, at)
                .await
                .map_err(|e| StorageError::io("write", &path, e))?;
            io.account(len).await;
        }
        debug_assert_eq!(at + fill as u64, written.end_pos);
        file.fdatasync()
            .await
            .map_err(|e| StorageError::io("fdatasync", &path, e))?;
        Ok((Rc::new(file), written))
    }

    async fn close(self) {
        if let Err(e) = self.file.close().await {
            tracing::debug!("closing {}: {e}", self.path.display());
        }
    }
}
