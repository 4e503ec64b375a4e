//! Durable storage of partition logs and topic metadata. No network.
//!
//! Owns: the on-disk layout `DATA/topics/<topic>/<partition>/<base offset>.log`,
//! segment files (`segment`), topic metadata files (`meta`), and recovery of
//! both on start.
//!
//! Must never: touch a socket, assign offsets, or be used from a shard that
//! does not own the partition (one writer per file, no locks).

pub mod aborted;
pub mod cleaner;
pub mod compact;
pub mod index;
pub mod log;
pub mod meta;
pub mod recovery;
pub mod segment;
pub mod swap;
pub mod txnindex;
pub mod txnopen;

use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt {path}: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("invalid topic name {name:?}: {why}")]
    InvalidTopicName { name: String, why: &'static str },
}

impl StorageError {
    pub fn io(op: &'static str, path: &Path, source: io::Error) -> StorageError {
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// `DATA/topics`.
pub fn topics_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("topics")
}

/// `DATA/topics/<topic>`.
pub fn topic_dir(data_dir: &Path, topic: &str) -> PathBuf {
    topics_dir(data_dir).join(topic)
}

/// `DATA/topics/<topic>/<partition>`.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: u32) -> PathBuf {
    topic_dir(data_dir, topic).join(partition.to_string())
}

/// Longest topic name; Kafka allows 249 so names map to file names safely.
pub const MAX_TOPIC_NAME_BYTES: usize = 249;

/// Topic names become directory names: only `[A-Za-z0-9._-]`, as in Kafka.
pub fn validate_topic_name(name: &str) -> Result<(), StorageError> {
    let bad = |why| {
        Err(StorageError::InvalidTopicName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_TOPIC_NAME_BYTES {
        return bad("longer than 249 bytes");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not topic names");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// The internal log of committed consumer-group offsets (Kafka's name): one
/// record per commit, keyed by (group, topic, partition). A group's
/// coordinator is the shard that owns partition
/// `group::offsets::partition_for_group(group, OFFSETS_PARTITIONS)` of it.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Partitions of `OFFSETS_TOPIC`, fixed when a data directory is first used
/// (groups spread over at most this many shards). Kafka's default is 50;
/// each partition here costs a tail buffer on its shard.
pub const OFFSETS_PARTITIONS: u32 = 16;

/// The internal log of transactions (Kafka's name): one record per
/// transition of a transactional id. An id's coordinator is the shard that
/// owns partition `txn::log::partition_for_txn(id, TXN_PARTITIONS)` of it.
pub const TXN_TOPIC: &str = "__transaction_state";
/// Partitions of `TXN_TOPIC`, fixed when a data directory first has it
/// (Kafka's default is 50).
pub const TXN_PARTITIONS: u32 = 16;

/// Names starting with `__` belong to the broker: clients cannot create,
/// delete or produce to them (they can read them, as in Kafka).
pub fn is_internal_topic(name: &str) -> bool {
    name.starts_with("__")
}

/// Replaces `dir/name` with `bytes` so a crash leaves the old file or the
/// new one, never a mix: a temporary file written and fsynced, renamed over
/// the old, the directory fsynced. Blocking (small, rare files: the
/// broker's users).
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| StorageError::io("write", &path, e))?;
    sync_dir(dir)
}

/// A table of the broker's metadata kept whole in `DATA/name` (users,
/// ACLs, quotas); empty when there is no file yet. A file that does not
/// decode is an error: starting without it would lock every client out,
/// or open what it closed, without saying why.
fn load_table<T: Default, E: std::fmt::Display>(
    data_dir: &Path,
    name: &str,
    decode: impl Fn(&[u8]) -> Result<T, E>,
) -> Result<T, StorageError> {
    let path = data_dir.join(name);
    match read_optional(&path)? {
        None => Ok(T::default()),
        Some(b) => decode(&b).map_err(|e| StorageError::Corrupt {
            path,
            detail: e.to_string(),
        }),
    }
}

/// The broker's SCRAM users (`DATA/users.scram`).
pub fn load_users(data_dir: &Path) -> Result<crate::security::users::Users, StorageError> {
    use crate::security::users::{Users, FILE_NAME};
    load_table(data_dir, FILE_NAME, Users::decode)
}

/// Writes the users table whole, atomically (`replace_file`).
pub fn store_users(
    data_dir: &Path,
    users: &crate::security::users::Users,
) -> Result<(), StorageError> {
    replace_file(data_dir, crate::security::users::FILE_NAME, &users.encode())
}

/// The broker's ACLs (`DATA/acls`).
pub fn load_acls(data_dir: &Path) -> Result<crate::security::acl::Acls, StorageError> {
    use crate::security::acl::{Acls, FILE_NAME};
    load_table(data_dir, FILE_NAME, Acls::decode)
}

/// Writes the ACLs whole, atomically (`replace_file`).
pub fn store_acls(data_dir: &Path, acls: &crate::security::acl::Acls) -> Result<(), StorageError> {
    replace_file(data_dir, crate::security::acl::FILE_NAME, &acls.encode())
}

/// The broker's client quotas (`DATA/quotas`).
pub fn load_quotas(data_dir: &Path) -> Result<crate::security::quota::Quotas, StorageError> {
    use crate::security::quota::{Quotas, FILE_NAME};
    load_table(data_dir, FILE_NAME, Quotas::decode)
}

/// Writes the quotas whole, atomically (`replace_file`).
pub fn store_quotas(
    data_dir: &Path,
    quotas: &crate::security::quota::Quotas,
) -> Result<(), StorageError> {
    replace_file(
        data_dir,
        crate::security::quota::FILE_NAME,
        &quotas.encode(),
    )
}

/// The whole of a small file, or None when there is none.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("read", path, e)),
    }
}

/// fsyncs a directory so a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io("fsync dir", dir, e))
}

/// A small side file of a partition (`aborted.txnindex`,
/// `txnopen.snapshot`) for direct I/O, opened once and kept in `slot`;
/// created if missing, and then its name is made to outlive a crash too.
pub(crate) async fn side_file(
    slot: &std::cell::RefCell<Option<std::rc::Rc<crate::rt::DirectFile>>>,
    path: &Path,
) -> Result<std::rc::Rc<crate::rt::DirectFile>, StorageError> {
    if let Some(f) = slot.borrow().as_ref() {
        return Ok(f.clone());
    }
    let created = !path.exists();
    let f = std::rc::Rc::new(
        crate::rt::DirectFile::open_rw(path)
            .await
            .map_err(|e| StorageError::io("open", path, e))?,
    );
    if created {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    *slot.borrow_mut() = Some(f.clone());
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_cannot_escape_the_data_dir() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "orders.v2", "clicks_2026-11", &"x".repeat(249)] {
            assert!(validate_topic_name(good).is_ok(), "{good:?}");
        }
    }
}
