//! One partition: an ordered, durable log of record batches.
//!
//! Owns: offset assignment (patching each batch's base offset in place), the
//! high watermark (what consumers may see: written, and fsynced under
//! `--fsync always`), group commit (one flush covers every batch appended
//! while the previous flush ran), and reads by offset.
//!
//! Must never: be touched by a shard that does not own it (it is `!Send`:
//! `Rc` + `RefCell`, no locks), acknowledge a batch before the flush covering
//! it returned, or decode records (work is per batch).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use thiserror::Error;

use crate::batch::{self, BatchError};
use crate::rt::{self, LocalLock};
use crate::storage::segment::{self, Segment, Selection, INDEX_INTERVAL_BYTES};
use crate::storage::{partition_dir, StorageError};

/// When appended bytes are fdatasync'ed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before a durable produce is acknowledged (group commit).
    Always,
    /// Never explicitly: the kernel writes back O_DIRECT data at once, but the
    /// device cache and file metadata are flushed only on shutdown.
    Never,
}

#[derive(Debug, Clone)]
pub struct PartitionConfig {
    pub fsync: FsyncPolicy,
    pub tail_buffer_bytes: usize,
    /// Largest record-batch run accepted in one produce for one partition.
    pub max_batch_bytes: usize,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            fsync: FsyncPolicy::Always,
            tail_buffer_bytes: segment::TAIL_BUFFER_BYTES,
            max_batch_bytes: 16 << 20,
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
    /// The message of the storage error; the partition refuses writes after one
    /// (reads up to the high watermark go on) until the broker restarts and
    /// recovers the log.
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("{bytes} bytes of batches exceed the limit of {max} bytes")]
    TooLarge { bytes: usize, max: usize },
    #[error("produce carries no record batch")]
    Empty,
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
    /// One past the last offset appended.
    pub next_offset: i64,
    /// Log position the flush must reach for this append to be written.
    pub end_pos: u64,
}

/// What a read returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutput {
    /// Whole batches, exactly as stored.
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// Bytes of a batch the broker rewrites: base offset and leader epoch.
const PATCHED_PREFIX_BYTES: usize = 16;

fn closed() -> PartitionError {
    PartitionError::Storage("partition is closed (broker shutting down)".into())
}

struct State {
    segment: Option<Segment>,
    next_offset: i64,
    high_watermark: i64,
    log_start: i64,
    failed: Option<String>,
    /// Set by `close`: appends are refused from then on.
    closing: bool,
}

pub struct Partition {
    topic: String,
    id: u32,
    dir: PathBuf,
    config: PartitionConfig,
    state: RefCell<State>,
    /// Serializes flushes: two writes of the same tail page are never in flight.
    flush_lock: LocalLock,
}

impl Partition {
    /// Opens (or creates) the partition's directory and its segment, and
    /// recovers it (see `Segment::open`).
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
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
                continue;
            };
            let base: i64 = stem.parse().map_err(|_| StorageError::Corrupt {
                path: entry.path(),
                detail: "segment file name is not a 20-digit offset".into(),
            })?;
            bases.push(base);
        }
        bases.sort_unstable();
        // Segment roll arrives with the durability issue; until then one
        // segment per partition, and a second one means a layout we do not know.
        if bases.len() > 1 {
            return Err(StorageError::Corrupt {
                path: dir,
                detail: format!(
                    "{} segments found; this build reads exactly one",
                    bases.len()
                ),
            });
        }
        let base = bases.first().copied().unwrap_or(0);
        let (seg, rec) = Segment::open(&dir, base, config.tail_buffer_bytes).await?;
        if rec.torn {
            tracing::warn!(
                "recovery of {topic}/{id}: cut {} bytes of a torn or corrupt tail at position {} of {}; \
                 the log ends at offset {} after {} whole valid batches",
                rec.truncated_bytes,
                rec.end_pos,
                seg.path().display(),
                rec.next_offset.unwrap_or(base),
                rec.batches,
            );
        } else {
            tracing::debug!(
                topic,
                partition = id,
                batches = rec.batches,
                end = rec.end_pos,
                "segment recovered"
            );
        }
        let next = rec.next_offset.unwrap_or(base);
        crate::storage::sync_dir(&dir)?;
        Ok(Rc::new(Partition {
            topic: topic.to_owned(),
            id,
            dir,
            config,
            state: RefCell::new(State {
                segment: Some(seg),
                next_offset: next,
                high_watermark: next,
                log_start: base,
                failed: None,
                closing: false,
            }),
            flush_lock: LocalLock::default(),
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

    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start
    }

    /// Validates and appends a run of batches, assigning offsets. Synchronous
    /// (no await): appends are atomic and keep the order of the calls, which
    /// is the order requests arrived on a connection. The bytes are visible
    /// to readers only after `flush_to(end_pos)` returned.
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
        let mut st = self.state.borrow_mut();
        if let Some(f) = &st.failed {
            return Err(PartitionError::Storage(f.clone()));
        }
        if st.closing {
            return Err(closed());
        }
        let base_offset = st.next_offset;
        let mut pos = 0;
        let mut end_pos = 0;
        for h in &headers {
            let total = h.total_bytes();
            let offset = st.next_offset;
            // Only the first 16 bytes change (base offset, leader epoch): patch
            // a copy of them and append the rest straight from the request.
            let mut prefix = [0u8; PATCHED_PREFIX_BYTES];
            prefix.copy_from_slice(&records[pos..pos + PATCHED_PREFIX_BYTES]);
            batch::patch_base_offset(&mut prefix, offset, 0);
            let Some(seg) = st.segment.as_mut() else {
                return Err(closed());
            };
            end_pos = seg.append(
                offset,
                &[&prefix, &records[pos + PATCHED_PREFIX_BYTES..pos + total]],
            );
            st.next_offset = offset + h.offset_count();
            pos += total;
        }
        debug_assert_eq!(pos, records.len());
        Ok(Appended {
            base_offset,
            next_offset: st.next_offset,
            end_pos,
        })
    }

    /// Returns once everything up to `end_pos` is written (and fdatasync'ed
    /// under `FsyncPolicy::Always`). Group commit: whoever holds the flush lock
    /// writes everything appended so far, so waiters queued behind it usually
    /// find their bytes already covered and return without an fsync of their own.
    pub async fn flush_to(self: &Rc<Self>, end_pos: u64) -> Result<(), PartitionError> {
        if self.covered(end_pos)? {
            return Ok(());
        }
        // The flush runs as a detached task: once it took the tail buffers it
        // must run to its end even if the waiting request is dropped (client
        // gone), or those bytes would be lost and leave a hole in the file.
        let this = self.clone();
        match rt::spawn_detached(async move { this.flush_locked(end_pos).await }).await {
            Some(r) => r,
            None => Err(PartitionError::Storage("flush task was cancelled".into())),
        }
    }

    async fn flush_locked(&self, end_pos: u64) -> Result<(), PartitionError> {
        let _guard = self.flush_lock.lock().await;
        if self.covered(end_pos)? {
            return Ok(());
        }
        let (job, next_offset) = {
            let mut st = self.state.borrow_mut();
            let Some(seg) = st.segment.as_mut() else {
                return Err(closed());
            };
            let job = seg.take_flush().expect("unflushed bytes imply a flush job");
            (job, st.next_offset)
        };
        debug_assert!(job.end_pos >= end_pos);
        let result: std::io::Result<()> = async {
            for (buf, pos) in job.writes {
                job.file.write_all_at(buf, pos).await?;
            }
            if self.config.fsync == FsyncPolicy::Always {
                job.file.fdatasync().await?;
            }
            Ok(())
        }
        .await;
        let mut st = self.state.borrow_mut();
        match result {
            Ok(()) => {
                // close() takes the flush lock before the segment, so the
                // segment is still here while we hold the lock.
                st.segment
                    .as_mut()
                    .expect("segment outlives a held flush lock")
                    .complete_flush(job.end_pos);
                debug_assert!(
                    next_offset >= st.high_watermark,
                    "high watermark only grows"
                );
                st.high_watermark = next_offset;
                Ok(())
            }
            Err(e) => {
                let msg = format!("flush of {}/{} failed: {e}", self.topic, self.id);
                tracing::error!("{msg}; the partition refuses writes until restart");
                st.failed = Some(msg.clone());
                Err(PartitionError::Storage(msg))
            }
        }
    }

    fn covered(&self, end_pos: u64) -> Result<bool, PartitionError> {
        let st = self.state.borrow();
        match &st.segment {
            Some(s) if s.flushed_pos() >= end_pos => return Ok(true),
            Some(_) => {}
            None => return Err(closed()),
        }
        match &st.failed {
            Some(f) => Err(PartitionError::Storage(f.clone())),
            None => Ok(false),
        }
    }

    /// Reads whole batches from the one holding `offset`, up to `max_bytes`
    /// (at least one batch). Empty at the high watermark.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadOutput, PartitionError> {
        let (file, start_pos, visible_end, hw, log_start, path) = {
            let st = self.state.borrow();
            let Some(seg) = st.segment.as_ref() else {
                return Err(closed());
            };
            (
                seg.file(),
                seg.locate(offset),
                seg.flushed_pos(),
                st.high_watermark,
                st.log_start,
                seg.path().to_owned(),
            )
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
        let avail = (visible_end - start_pos) as usize;
        // From an index entry to the batch holding `offset` is under one index
        // interval plus that batch; read that much beyond max_bytes in one go.
        let mut want = max_bytes
            .saturating_add(2 * INDEX_INTERVAL_BYTES as usize)
            .min(avail);
        loop {
            let buf = file
                .read_at(start_pos, want)
                .await
                .map_err(|e| StorageError::io("read", &path, e))?;
            match segment::select_batches(&buf, offset, max_bytes) {
                Selection::Found { start, len } => {
                    // One copy out of the DMA read buffer; the tail cache that
                    // serves caught-up consumers from memory replaces it later.
                    let records = Bytes::copy_from_slice(&buf[start..start + len]);
                    return Ok(ReadOutput { records, ..empty });
                }
                Selection::NeedBytes(n) if n <= avail && n > want => want = n,
                Selection::NeedBytes(_) | Selection::NotFound | Selection::Corrupt { .. } => {
                    return Err(PartitionError::Storage(format!(
                        "{}: no whole batch holds offset {offset} below the high watermark {hw}",
                        path.display()
                    )));
                }
            }
        }
    }

    /// Flushes and syncs everything appended, trims the file to whole batches
    /// and closes it. Used on clean shutdown.
    pub async fn close(self: &Rc<Self>) -> Result<(), PartitionError> {
        // Refuse appends first, so the end position below is final.
        self.state.borrow_mut().closing = true;
        let end = self.state.borrow().segment.as_ref().map(|s| s.end_pos());
        let Some(end) = end else { return Ok(()) };
        self.flush_to(end).await?;
        let _guard = self.flush_lock.lock().await;
        let seg = self.state.borrow_mut().segment.take();
        if let Some(seg) = seg {
            seg.close().await?;
        }
        Ok(())
    }
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
                    p.flush_to(a.end_pos).await.unwrap();
                }
            }
            let end = p.state.borrow().segment.as_ref().unwrap().end_pos();
            p.flush_to(end).await.unwrap();
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
            p.flush_to(a.end_pos).await.unwrap();
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
                p.flush_to(a.end_pos).await.unwrap();
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
            p.flush_to(a.end_pos).await.unwrap();
            drop(p); // a crash: no close, the last page keeps its zero padding
            let pdir = partition_dir(&path, "t", 0);
            let (seg, rec) = Segment::open(&pdir, 0, 8192).await.unwrap();
            assert!(rec.truncated_bytes > 0 && !rec.torn, "{rec:?}");
            assert_eq!(rec.next_offset, Some(2));
            seg.close().await.unwrap();
            let file = pdir.join(segment::file_name(0));
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&file)
                .unwrap();
            std::io::Write::write_all(&mut f, b"\0\0garbage").unwrap();
            drop(f);
            let (seg, rec) = Segment::open(&pdir, 0, 8192).await.unwrap();
            assert!(rec.torn, "{rec:?}");
            assert_eq!(rec.truncated_bytes, 9);
            assert_eq!(rec.next_offset, Some(2));
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
                Err(PartitionError::Storage(_))
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
            assert_eq!(p.high_watermark(), 0);
            let a = p.append(&good).unwrap();
            assert_eq!(a.base_offset, 0);
            p.flush_to(a.end_pos).await.unwrap();
            assert!(matches!(
                p.read(3, 100).await,
                Err(PartitionError::OffsetOutOfRange { .. })
            ));
            assert!(p.read(2, 100).await.unwrap().records.is_empty());
            p.close().await.unwrap();
        });
    }
}
