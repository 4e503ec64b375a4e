//! A partition's record of its open transactions: `txnopen.snapshot` in
//! its directory, so that a restart knows the transactions that began
//! before the log tail it replays (their first offset holds the last
//! stable offset, and an abort's range starts there).
//!
//! Owns: the file, two slots of `SLOT_BYTES` written in turn (an
//! `OpenTxns` each, zero padded, O_DIRECT, fdatasync), so that a write torn
//! by a crash leaves the other slot whole; at load, the valid slot with the
//! later offset. One writer at a time.
//!
//! Must never: trust the file's bytes (a damaged slot is skipped; with
//! neither valid the partition replays only its tail, as before this file
//! existed), or hold more open transactions than a slot takes (the writer
//! skips such a record and says so: the older one stays, which is still
//! true of its own offset).

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::txnindex::{OpenTxns, OPEN_ENTRY_BYTES};
use super::StorageError;
use crate::rt::{DirectFile, LocalLock};

/// The file's name in a partition directory.
pub const FILE_NAME: &str = "txnopen.snapshot";

/// One slot: room for about 3,600 open transactions on one partition.
pub const SLOT_BYTES: usize = 64 << 10;

/// Open transactions one slot holds.
pub const MAX_OPEN: usize = (SLOT_BYTES - 64) / OPEN_ENTRY_BYTES;

pub struct TxnSnapshots {
    path: PathBuf,
    /// Opened at the first write.
    file: RefCell<Option<Rc<DirectFile>>>,
    /// The slot the next write goes to (the one not holding the newest).
    next_slot: Cell<u64>,
    /// The newest record written or loaded held transactions: the next
    /// check point writes even when none are open, so that a stale record
    /// does not send a restart replaying from far back.
    last_had_txns: Cell<bool>,
    writer: LocalLock,
}

impl TxnSnapshots {
    /// Loads the newest valid record of partition directory `dir`, if any.
    pub async fn load(dir: &Path) -> Result<(TxnSnapshots, Option<OpenTxns>), StorageError> {
        let path = dir.join(FILE_NAME);
        let mut newest: Option<(u64, OpenTxns)> = None;
        if path.exists() {
            let file = DirectFile::open_ro(&path)
                .await
                .map_err(|e| StorageError::io("open", &path, e))?;
            let bytes = file
                .read_at(0, 2 * SLOT_BYTES)
                .await
                .map_err(|e| StorageError::io("read", &path, e))?;
            let _ = file.close().await;
            for slot in 0..2u64 {
                let from = slot as usize * SLOT_BYTES;
                let Some(b) = bytes.get(from..(from + SLOT_BYTES).min(bytes.len())) else {
                    continue;
                };
                if b.iter().all(|&x| x == 0) {
                    continue; // never written
                }
                match OpenTxns::decode(b) {
                    Ok(o) if newest.as_ref().is_none_or(|(_, n)| o.at > n.at) => {
                        newest = Some((slot, o))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(path = %path.display(), slot, "open transactions record skipped: {e}")
                    }
                }
            }
        }
        let s = TxnSnapshots {
            path,
            file: RefCell::new(None),
            next_slot: Cell::new(newest.as_ref().map_or(0, |(slot, _)| 1 - slot)),
            last_had_txns: Cell::new(newest.as_ref().is_some_and(|(_, o)| !o.txns.is_empty())),
            writer: LocalLock::default(),
        };
        Ok((s, newest.map(|(_, o)| o)))
    }

    /// Whether a check point with `open` transactions open should write a
    /// record: when any are, or the newest record had some.
    pub fn due(&self, open: usize) -> bool {
        open > 0 || self.last_had_txns.get()
    }

    /// Writes `o` into the older slot and fdatasyncs it. The caller makes
    /// sure everything below `o.at` is as durable as a produce first: the
    /// record must never speak of offsets a crash could take back.
    /// Ok(false): more open transactions than a slot holds; nothing written.
    pub async fn write(&self, o: &OpenTxns) -> Result<bool, StorageError> {
        if o.txns.len() > MAX_OPEN {
            tracing::warn!(
                path = %self.path.display(),
                open = o.txns.len(),
                "more open transactions than a record holds: not recorded (a restart replays only the log's tail)"
            );
            return Ok(false);
        }
        let _w = self.writer.lock().await;
        let file = self.file().await?;
        let bytes = o.encode();
        debug_assert!(bytes.len() <= SLOT_BYTES);
        let mut buf = file.alloc(SLOT_BYTES);
        let out = buf.as_bytes_mut();
        out[..bytes.len()].copy_from_slice(&bytes);
        out[bytes.len()..].fill(0);
        let slot = self.next_slot.get();
        file.write_all_at(buf, slot * SLOT_BYTES as u64)
            .await
            .map_err(|e| StorageError::io("write", &self.path, e))?;
        file.fdatasync()
            .await
            .map_err(|e| StorageError::io("fdatasync", &self.path, e))?;
        self.next_slot.set(1 - slot);
        self.last_had_txns.set(!o.txns.is_empty());
        Ok(true)
    }

    async fn file(&self) -> Result<Rc<DirectFile>, StorageError> {
        super::side_file(&self.file, &self.path).await
    }

    pub async fn close(&self) {
        let _w = self.writer.lock().await;
        let f = self.file.borrow_mut().take();
        if let Some(f) = f.and_then(|f| Rc::try_unwrap(f).ok()) {
            let _ = f.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rt::testkit::on_fresh_dir;

    fn rec(at: i64, n: i64) -> OpenTxns {
        OpenTxns {
            at,
            txns: (0..n).map(|i| (100 + i, 0, at - 1 - i)).collect(),
        }
    }

    #[test]
    fn the_newest_whole_record_survives_a_torn_or_damaged_one() {
        on_fresh_dir(|dir| async move {
            let (s, none) = TxnSnapshots::load(&dir).await.unwrap();
            assert!(none.is_none());
            assert!(!s.due(0) && s.due(1));
            assert!(s.write(&rec(50, 2)).await.unwrap());
            assert!(s.write(&rec(90, 3)).await.unwrap());
            assert!(s.write(&rec(120, 0)).await.unwrap());
            assert!(!s.due(0), "the newest held none");
            s.close().await;
            let (s, got) = TxnSnapshots::load(&dir).await.unwrap();
            assert_eq!(got, Some(rec(120, 0)));
            // The next write goes to the other slot (90's), then the older.
            assert!(s.write(&rec(150, 1)).await.unwrap());
            s.close().await;
            let (_, got) = TxnSnapshots::load(&dir).await.unwrap();
            assert_eq!(got, Some(rec(150, 1)));

            // Damage in the newest slot: the other one stands.
            let path = dir.join(FILE_NAME);
            let mut bytes = std::fs::read(&path).unwrap();
            let newest = (0..2)
                .find(|&i| OpenTxns::decode(&bytes[i * SLOT_BYTES..]).ok() == Some(rec(150, 1)))
                .unwrap();
            bytes[newest * SLOT_BYTES + 20] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            let (s, got) = TxnSnapshots::load(&dir).await.unwrap();
            assert_eq!(got, Some(rec(120, 0)));
            // Both damaged: nothing, and writing works again.
            let other = 1 - newest;
            bytes[other * SLOT_BYTES + 3] ^= 0x01;
            std::fs::write(&path, &bytes).unwrap();
            s.close().await;
            let (s, got) = TxnSnapshots::load(&dir).await.unwrap();
            assert_eq!(got, None);
            assert!(s.write(&rec(200, 1)).await.unwrap());
            // More than a slot holds is not written.
            let huge = OpenTxns {
                at: 1 << 40,
                txns: (0..MAX_OPEN as i64 + 1).map(|i| (i, 0, i)).collect(),
            };
            assert!(!s.write(&huge).await.unwrap());
            s.close().await;
            let (_, got) = TxnSnapshots::load(&dir).await.unwrap();
            assert_eq!(got, Some(rec(200, 1)));
        });
    }
}
