//! A partition's aborted transactions on disk: `aborted.txnindex` in its
//! directory, Kafka's 34-byte `.txnindex` entries (`txnindex::AbortedTxn`)
//! in marker order, zero padding after the last one (direct I/O writes
//! whole pages).
//!
//! Owns: the entries in memory (a read_committed fetch reads them; an abort
//! adds its entry in the same step as its marker, before the marker is
//! visible), and making them durable (`sync`: the pages holding the
//! entries not yet written are rewritten from memory, then fdatasync), one
//! writer at a time; loading the file at open (entries up to the first
//! zero or damaged one: what a crash left out the partition rebuilds from
//! its log's tail).
//!
//! Must never: report an entry durable before its fdatasync returned, or
//! trust the file's bytes (a damaged entry ends the load).

use std::cell::{Cell, Ref, RefCell};
use std::path::{Path, PathBuf};

use super::txnindex::{decode_index, AbortedTxn, ENTRY_BYTES};
use super::StorageError;
use crate::rt::{self, DirectFile, LocalLock};

/// The file's name in a partition directory.
pub const FILE_NAME: &str = "aborted.txnindex";

pub struct AbortedLog {
    path: PathBuf,
    /// Opened at the first write (a partition without transactions has no
    /// file).
    file: RefCell<Option<std::rc::Rc<DirectFile>>>,
    entries: RefCell<Vec<AbortedTxn>>,
    /// Entries written and fdatasynced (a prefix of `entries`).
    durable: Cell<usize>,
    writer: LocalLock,
}

impl AbortedLog {
    /// Loads the file of partition directory `dir` if it exists.
    pub async fn open(dir: &Path) -> Result<AbortedLog, StorageError> {
        let path = dir.join(FILE_NAME);
        let mut entries = Vec::new();
        if path.exists() {
            let file = DirectFile::open_ro(&path)
                .await
                .map_err(|e| StorageError::io("open", &path, e))?;
            let size = file
                .file_size()
                .await
                .map_err(|e| StorageError::io("stat", &path, e))?;
            let bytes = file
                .read_at(0, size as usize)
                .await
                .map_err(|e| StorageError::io("read", &path, e))?;
            let _ = file.close().await;
            for chunk in bytes[..].chunks_exact(ENTRY_BYTES) {
                if chunk.iter().all(|&b| b == 0) {
                    break; // the padding after the last entry
                }
                match decode_index(chunk) {
                    Ok(mut one)
                        if entries
                            .last()
                            .is_none_or(|l: &AbortedTxn| l.last_offset < one[0].last_offset) =>
                    {
                        entries.push(one.remove(0))
                    }
                    _ => {
                        tracing::warn!(path = %path.display(), entries = entries.len(), "a damaged aborted-transactions entry ends the file here");
                        break;
                    }
                }
            }
        }
        let durable = entries.len();
        Ok(AbortedLog {
            path,
            file: RefCell::new(None),
            entries: RefCell::new(entries),
            durable: Cell::new(durable),
            writer: LocalLock::default(),
        })
    }

    /// Every aborted transaction, in marker order.
    pub fn entries(&self) -> Ref<'_, Vec<AbortedTxn>> {
        self.entries.borrow()
    }

    /// Adds an abort (its marker is the newest): read_committed fetches
    /// skip its range from now on; `sync` makes it durable. An abort
    /// already held (the same marker offset) is not added again.
    pub fn push(&self, t: AbortedTxn) {
        let mut e = self.entries.borrow_mut();
        match e.last() {
            Some(l) if l.last_offset == t.last_offset => {}
            Some(l) => {
                assert!(l.last_offset < t.last_offset, "aborts come in marker order");
                e.push(t)
            }
            None => e.push(t),
        }
    }

    /// Writes every entry not yet durable and fdatasyncs the file.
    pub async fn sync(&self) -> Result<(), StorageError> {
        let _w = self.writer.lock().await;
        let (from, to) = (self.durable.get(), self.entries.borrow().len());
        if from == to {
            return Ok(());
        }
        let file = self.file().await?;
        // The pages holding entries from..to, rebuilt from memory: the
        // earlier entries that share the first page are written again as
        // they are.
        let start = rt::align_down((from * ENTRY_BYTES) as u64);
        let end = rt::align_up((to * ENTRY_BYTES) as u64);
        let first = start as usize / ENTRY_BYTES;
        let mut bytes = Vec::with_capacity((to - first) * ENTRY_BYTES);
        for t in &self.entries.borrow()[first..to] {
            t.encode_into(&mut bytes);
        }
        let skip = start as usize - first * ENTRY_BYTES;
        let mut buf = file.alloc((end - start) as usize);
        let out = buf.as_bytes_mut();
        let body = &bytes[skip..];
        out[..body.len()].copy_from_slice(body);
        out[body.len()..].fill(0);
        file.write_all_at(buf, start)
            .await
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| StorageError::io("fdatasync", &self.path, e))?;
        self.durable.set(self.durable.get().max(to));
        Ok(())
    }

    /// Keeps only the entries `keep` holds to, durably: the whole file
    /// written anew beside the old one (whole pages, zero padded), synced,
    /// renamed over it, the directory synced. Rare (a cleaning found
    /// aborted data gone, or the log start passed entries) and a few KiB:
    /// plain file calls, no await between the new list and its write, so
    /// an abort pushed meanwhile is written by the next `sync`.
    pub async fn retain(&self, keep: impl Fn(&AbortedTxn) -> bool) -> Result<(), StorageError> {
        use std::io::Write;
        let _w = self.writer.lock().await;
        let kept: Vec<AbortedTxn> = {
            let mut e = self.entries.borrow_mut();
            let before = e.len();
            e.retain(|t| keep(t));
            if e.len() == before {
                return Ok(());
            }
            e.clone()
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = self.path.with_extension("txnindex.tmp");
        let mut bytes = Vec::with_capacity(kept.len() * ENTRY_BYTES);
        for t in &kept {
            t.encode_into(&mut bytes);
        }
        bytes.resize(rt::align_up(bytes.len() as u64) as usize, 0);
        let mut f = std::fs::File::create(&tmp).map_err(|e| StorageError::io("create", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| StorageError::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| StorageError::io("rename", &tmp, e))?;
        super::sync_dir(dir)?;
        self.durable.set(kept.len());
        // The old handle points at the replaced file.
        let old = self.file.borrow_mut().take();
        if let Some(f) = old.and_then(|f| std::rc::Rc::try_unwrap(f).ok()) {
            let _ = f.close().await;
        }
        Ok(())
    }

    async fn file(&self) -> Result<std::rc::Rc<DirectFile>, StorageError> {
        super::side_file(&self.file, &self.path).await
    }

    pub async fn close(&self) {
        let f = self.file.borrow_mut().take();
        if let Some(f) = f.and_then(|f| std::rc::Rc::try_unwrap(f).ok()) {
            let _ = f.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::testkit::on_fresh_dir;

    fn entry(i: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: 100 + i,
            first_offset: 10 * i,
            last_offset: 10 * i + 5,
            last_stable_offset: 10 * i + 6,
        }
    }

    #[test]
    fn entries_survive_a_reopen_a_retain_and_a_damaged_tail() {
        on_fresh_dir(|dir| async move {
            let log = AbortedLog::open(&dir).await.unwrap();
            assert!(log.entries().is_empty());
            // More than a page of entries, synced in two steps.
            for i in 0..150 {
                log.push(entry(i));
            }
            log.sync().await.unwrap();
            for i in 150..200 {
                log.push(entry(i));
            }
            log.push(entry(199)); // the same marker again: not added twice
            log.sync().await.unwrap();
            log.close().await;
            let want: Vec<AbortedTxn> = (0..200).map(entry).collect();
            let log = AbortedLog::open(&dir).await.unwrap();
            assert_eq!(*log.entries(), want);

            // Retain keeps the rest durably; a later push and sync append.
            log.retain(|t| t.producer_id % 2 == 0).await.unwrap();
            log.push(entry(200));
            log.sync().await.unwrap();
            log.close().await;
            let want: Vec<AbortedTxn> = (0..=200).filter(|i| i % 2 == 0).map(entry).collect();
            let log = AbortedLog::open(&dir).await.unwrap();
            assert_eq!(*log.entries(), want);
            log.close().await;
            assert!(!dir.join("aborted.txnindex.tmp").exists());

            // A damaged entry (a bit flipped in its version) ends the load
            // there; what it held the partition restores from its log.
            let path = dir.join(FILE_NAME);
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[40 * ENTRY_BYTES] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
            let log = AbortedLog::open(&dir).await.unwrap();
            assert_eq!(*log.entries(), want[..40].to_vec());
            // An entry out of marker order ends it too: the 6th and 7th
            // swapped, the load stops after the (now) 6th.
            let mut bytes = std::fs::read(&path).unwrap();
            bytes[40 * ENTRY_BYTES] ^= 0x40;
            let (a, b) = (5 * ENTRY_BYTES, 6 * ENTRY_BYTES);
            let first: Vec<u8> = bytes[a..b].to_vec();
            bytes.copy_within(b..b + ENTRY_BYTES, a);
            bytes[b..b + ENTRY_BYTES].copy_from_slice(&first);
            log.close().await;
            std::fs::write(&path, &bytes).unwrap();
            let log = AbortedLog::open(&dir).await.unwrap();
            let mut head = want[..5].to_vec();
            head.push(want[6]);
            assert_eq!(*log.entries(), head);
            log.close().await;
        });
    }
}
