//! Committed offsets: the in-memory table and its durable record format.
//!
//! Owns: `OffsetTable` (group -> partition -> last committed offset) and the
//! key/value encoding of one commit as a record of the internal offsets log
//! (last write wins on replay; a record without a value is a tombstone that
//! deletes the entry). Also `partition_for_group`, which picks the offsets log
//! partition of a group.
//!
//! Must never: panic on bytes read back from the log (`decode` checks every
//! length, version and UTF-8 string), or change the meaning of an encoded
//! version (a new layout gets a new version number; old ones stay readable).
//!
//! Key, version 1 (big-endian, as Kafka's own `__consumer_offsets` records):
//! `u16 version | u16 len | group | u16 len | topic | u32 partition`.
//! Key, version 2: a transaction's pending commit (TxnOffsetCommit), the
//! version 1 key followed by `i64 producer_id`; its value is a committed
//! offset's; it takes effect when the transaction commits (the caller then
//! appends the version 1 record) and is deleted by a tombstone either way.
//! Value, version 1: `u16 version | i64 offset | u64 commit_ts_ms | u16 len |
//! metadata`. Version 2 (written since the Kafka door returns Kafka's
//! `committed_leader_epoch`): version 1 followed by `i32 leader_epoch`
//! (-1: none); version 1 records read back with epoch -1.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::ids::{TopicPartition, MAX_ID_BYTES, MAX_TOPIC_BYTES};
use super::reader::{Malformed, Reader};

pub const KEY_VERSION: u16 = 1;
/// Keys of a transaction's pending commits.
pub const PENDING_KEY_VERSION: u16 = 2;
pub const VALUE_VERSION: u16 = 2;
/// Kafka's `offset.metadata.max.bytes` default.
pub const MAX_METADATA_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OffsetError {
    #[error("offset metadata is {bytes} bytes, more than the {max} allowed")]
    MetadataTooLarge { bytes: usize, max: usize },
    #[error("offset {offset} is negative")]
    NegativeOffset { offset: i64 },
    #[error("{field} is {bytes} bytes, more than the {max} allowed")]
    NameTooLong {
        field: &'static str,
        bytes: usize,
        max: usize,
    },
    #[error("corrupt offset record: {detail}")]
    Corrupt { detail: String },
}

impl OffsetError {
    /// Stable name for the wire layer.
    pub fn code(&self) -> &'static str {
        match self {
            OffsetError::MetadataTooLarge { .. } => "OffsetMetadataTooLarge",
            OffsetError::NegativeOffset { .. } => "InvalidOffset",
            OffsetError::NameTooLong { .. } => "InvalidRequest",
            OffsetError::Corrupt { .. } => "CorruptOffsetRecord",
        }
    }
}

impl From<Malformed> for OffsetError {
    fn from(m: Malformed) -> OffsetError {
        corrupt(m.0)
    }
}

fn corrupt(detail: impl Into<String>) -> OffsetError {
    OffsetError::Corrupt {
        detail: detail.into(),
    }
}

/// What a record is about: one group's position in one partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OffsetKey {
    pub group: String,
    pub tp: TopicPartition,
}

/// The committed position: the next offset the group will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub metadata: String,
    pub commit_ts_ms: u64,
    /// The leader epoch of the last record the committer consumed, which
    /// Kafka clients use to detect log truncation on resume; -1: none.
    pub leader_epoch: i32,
}

/// One commit as a client asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group: String,
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
    pub commit_ts_ms: u64,
    pub leader_epoch: i32,
}

impl OffsetCommit {
    pub fn key(&self) -> OffsetKey {
        OffsetKey {
            group: self.group.clone(),
            tp: TopicPartition::new(self.topic.as_str(), self.partition),
        }
    }

    pub fn value(&self) -> CommittedOffset {
        CommittedOffset {
            offset: self.offset,
            metadata: self.metadata.clone(),
            commit_ts_ms: self.commit_ts_ms,
            leader_epoch: self.leader_epoch,
        }
    }

    /// The (key, value) record to append to the offsets log; Err if the
    /// commit breaks a bound.
    pub fn record(&self) -> Result<(Bytes, Bytes), OffsetError> {
        Ok((encode_key(&self.key())?, encode_value(&self.value())?))
    }
}

fn check_name(field: &'static str, s: &str, max: usize) -> Result<(), OffsetError> {
    if s.len() > max {
        return Err(OffsetError::NameTooLong {
            field,
            bytes: s.len(),
            max,
        });
    }
    Ok(())
}

pub fn encode_key(key: &OffsetKey) -> Result<Bytes, OffsetError> {
    check_name("group id", &key.group, MAX_ID_BYTES)?;
    check_name("topic", &key.tp.topic, MAX_TOPIC_BYTES)?;
    let mut b = BytesMut::with_capacity(2 + 2 + key.group.len() + 2 + key.tp.topic.len() + 4);
    b.put_u16(KEY_VERSION);
    // Lengths fit u16: bounded above.
    b.put_u16(key.group.len() as u16);
    b.put_slice(key.group.as_bytes());
    b.put_u16(key.tp.topic.len() as u16);
    b.put_slice(key.tp.topic.as_bytes());
    b.put_u32(key.tp.partition);
    Ok(b.freeze())
}

pub fn encode_value(v: &CommittedOffset) -> Result<Bytes, OffsetError> {
    if v.metadata.len() > MAX_METADATA_BYTES {
        return Err(OffsetError::MetadataTooLarge {
            bytes: v.metadata.len(),
            max: MAX_METADATA_BYTES,
        });
    }
    if v.offset < 0 {
        return Err(OffsetError::NegativeOffset { offset: v.offset });
    }
    let mut b = BytesMut::with_capacity(2 + 8 + 8 + 2 + v.metadata.len() + 4);
    b.put_u16(VALUE_VERSION);
    b.put_i64(v.offset);
    b.put_u64(v.commit_ts_ms);
    b.put_u16(v.metadata.len() as u16);
    b.put_slice(v.metadata.as_bytes());
    b.put_i32(v.leader_epoch);
    Ok(b.freeze())
}

/// Decodes one record of the offsets log; `value: None` is a tombstone.
pub fn decode(
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(OffsetKey, Option<CommittedOffset>), OffsetError> {
    let mut r = Reader::new(key);
    let version = r.u16("key version")?;
    if version != KEY_VERSION {
        return Err(corrupt(format!("unknown key version {version}")));
    }
    let group = r.string("group id", MAX_ID_BYTES)?;
    let topic = r.string("topic", MAX_TOPIC_BYTES)?;
    let partition = r.u32("partition")?;
    r.finish()?;
    let key = OffsetKey {
        group,
        tp: TopicPartition::new(topic, partition),
    };
    let Some(value) = value else {
        return Ok((key, None));
    };
    let mut r = Reader::new(value);
    let version = r.u16("value version")?;
    if !(1..=VALUE_VERSION).contains(&version) {
        return Err(corrupt(format!("unknown value version {version}")));
    }
    let offset = r.u64("offset")? as i64;
    if offset < 0 {
        return Err(corrupt(format!("negative offset {offset}")));
    }
    let commit_ts_ms = r.u64("commit timestamp")?;
    let metadata = r.string("metadata", MAX_METADATA_BYTES)?;
    let leader_epoch = if version >= 2 {
        let epoch = r.u32("leader epoch")? as i32;
        if epoch < -1 {
            return Err(corrupt(format!("leader epoch {epoch}")));
        }
        epoch
    } else {
        -1
    };
    r.finish()?;
    Ok((
        key,
        Some(CommittedOffset {
            offset,
            metadata,
            commit_ts_ms,
            leader_epoch,
        }),
    ))
}

/// The offsets log partition that holds `group`'s commits: Kafka's rule,
/// `Utils.abs(groupId.hashCode()) % partitions` with Java's `String.hashCode`
/// (over UTF-16 code units), so a group lands where Kafka would put it.
/// `Utils.abs` maps `i32::MIN` to 0.
pub fn partition_for_group(group: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "the offsets log has partitions");
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs as u32 % partitions
}

/// The key of a transaction's pending commit of `key`.
pub fn encode_pending_key(key: &OffsetKey, producer_id: i64) -> Result<Bytes, OffsetError> {
    let plain = encode_key(key)?;
    let mut b = BytesMut::with_capacity(plain.len() + 8);
    b.put_u16(PENDING_KEY_VERSION);
    b.put_slice(&plain[2..]);
    b.put_i64(producer_id);
    Ok(b.freeze())
}

/// Committed offsets of every group, as replayed from the offsets log, and
/// the transactions' pending ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetTable {
    groups: BTreeMap<String, BTreeMap<TopicPartition, CommittedOffset>>,
    /// By producer id: what its open transaction committed (TxnOffsetCommit).
    pending: BTreeMap<i64, BTreeMap<OffsetKey, CommittedOffset>>,
}

impl OffsetTable {
    /// Last write wins; a tombstone removes the entry (and the group once it
    /// has none left).
    pub fn apply(&mut self, key: OffsetKey, value: Option<CommittedOffset>) {
        match value {
            Some(v) => {
                self.groups.entry(key.group).or_default().insert(key.tp, v);
            }
            None => {
                if let Some(g) = self.groups.get_mut(&key.group) {
                    g.remove(&key.tp);
                    if g.is_empty() {
                        self.groups.remove(&key.group);
                    }
                }
            }
        }
    }

    /// Decodes and applies one record read from the offsets log.
    pub fn apply_record(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), OffsetError> {
        if key.len() >= 2 && u16::from_be_bytes([key[0], key[1]]) == PENDING_KEY_VERSION {
            if key.len() < 10 {
                return Err(corrupt("a pending key without its producer id"));
            }
            let (plain, pid) = key.split_at(key.len() - 8);
            let mut k = plain.to_vec();
            k[..2].copy_from_slice(&KEY_VERSION.to_be_bytes());
            let (k, v) = decode(&k, value)?;
            let pid = i64::from_be_bytes(pid.try_into().expect("8 bytes"));
            self.apply_pending(pid, k, v);
            return Ok(());
        }
        let (k, v) = decode(key, value)?;
        self.apply(k, v);
        Ok(())
    }

    /// A transaction's pending commit (None: its tombstone).
    pub fn apply_pending(
        &mut self,
        producer_id: i64,
        key: OffsetKey,
        value: Option<CommittedOffset>,
    ) {
        match value {
            Some(v) => {
                self.pending.entry(producer_id).or_default().insert(key, v);
            }
            None => {
                if let Some(p) = self.pending.get_mut(&producer_id) {
                    p.remove(&key);
                    if p.is_empty() {
                        self.pending.remove(&producer_id);
                    }
                }
            }
        }
    }

    /// The records that end `producer_id`'s transaction here: for a commit
    /// its pending offsets as committed ones, then (either way) a
    /// tombstone for each pending key. Appended in this order and applied,
    /// they leave no pending commit of the producer.
    pub fn end_txn_records(
        &self,
        producer_id: i64,
        commit: bool,
    ) -> Result<Vec<(Bytes, Option<Bytes>)>, OffsetError> {
        let Some(p) = self.pending.get(&producer_id) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(p.len() * 2);
        if commit {
            for (k, v) in p {
                out.push((encode_key(k)?, Some(encode_value(v)?)));
            }
        }
        for k in p.keys() {
            out.push((encode_pending_key(k, producer_id)?, None));
        }
        Ok(out)
    }

    /// Whether a transaction's commit of the group's partition is pending
    /// (KIP-447's unstable offset).
    pub fn is_pending(&self, group: &str, tp: &TopicPartition) -> bool {
        let key = OffsetKey {
            group: group.to_string(),
            tp: tp.clone(),
        };
        self.pending.values().any(|p| p.contains_key(&key))
    }

    /// The offsets `producer_id`'s open transaction committed here.
    pub fn pending_of(
        &self,
        producer_id: i64,
    ) -> impl Iterator<Item = (&OffsetKey, &CommittedOffset)> + '_ {
        self.pending.get(&producer_id).into_iter().flatten()
    }

    pub fn get(&self, group: &str, tp: &TopicPartition) -> Option<&CommittedOffset> {
        self.groups.get(group)?.get(tp)
    }

    /// Every committed partition of `group`, in (topic, partition) order.
    pub fn for_group(
        &self,
        group: &str,
    ) -> impl Iterator<Item = (&TopicPartition, &CommittedOffset)> + '_ {
        self.groups.get(group).into_iter().flatten()
    }

    /// Groups with at least one committed offset, in order.
    pub fn groups(&self) -> impl Iterator<Item = &str> + '_ {
        self.groups.keys().map(String::as_str)
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    /// Removes every entry of `group`; returns their keys, for the caller to
    /// append as tombstones.
    pub fn remove_group(&mut self, group: &str) -> Vec<OffsetKey> {
        self.groups
            .remove(group)
            .into_iter()
            .flat_map(|m| m.into_keys())
            .map(|tp| OffsetKey {
                group: group.to_string(),
                tp,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn commit(group: &str, topic: &str, partition: u32, offset: i64) -> OffsetCommit {
        OffsetCommit {
            group: group.into(),
            topic: topic.into(),
            partition,
            offset,
            metadata: String::new(),
            commit_ts_ms: 1,
            leader_epoch: -1,
        }
    }

    #[test]
    fn a_transactions_pending_commits_apply_only_when_it_commits() {
        let mut t = OffsetTable::default();
        let c = commit("g", "t", 0, 40);
        let pending = |pid: i64, offset: i64| {
            let mut c = commit("g", "t", 0, offset);
            c.metadata = format!("p{pid}");
            (
                encode_pending_key(&c.key(), pid).unwrap(),
                encode_value(&c.value()).unwrap(),
            )
        };
        let (k, v) = c.record().unwrap();
        t.apply_record(&k, Some(&v)).unwrap();
        for (pid, offset) in [(7, 50), (8, 60)] {
            let (k, v) = pending(pid, offset);
            t.apply_record(&k, Some(&v)).unwrap();
        }
        let tp = TopicPartition::new("t", 0);
        assert_eq!(
            t.get("g", &tp).unwrap().offset,
            40,
            "pending is not committed"
        );
        assert_eq!(t.pending_of(7).count(), 1);
        // 7 commits: its offset, then its tombstone.
        for (k, v) in t.end_txn_records(7, true).unwrap() {
            t.apply_record(&k, v.as_deref()).unwrap();
        }
        assert_eq!(t.get("g", &tp).unwrap().offset, 50);
        assert_eq!(t.pending_of(7).count(), 0);
        // 8 aborts: only the tombstone.
        let recs = t.end_txn_records(8, false).unwrap();
        assert_eq!(recs.len(), 1);
        for (k, v) in recs {
            t.apply_record(&k, v.as_deref()).unwrap();
        }
        assert_eq!(t.get("g", &tp).unwrap().offset, 50);
        assert_eq!(t.pending_of(8).count(), 0);
        assert!(t.end_txn_records(9, true).unwrap().is_empty());
        // A damaged pending key is an error, not a panic.
        assert!(t.apply_record(&[0, 2, 0], None).is_err());
    }

    #[test]
    fn version_1_values_read_back_without_a_leader_epoch() {
        // A value written before version 2, byte for byte.
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&42i64.to_be_bytes());
        v1.extend_from_slice(&7u64.to_be_bytes());
        v1.extend_from_slice(&[0, 2, b'h', b'i']);
        let c = commit("g", "t", 0, 42);
        let k = encode_key(&c.key()).unwrap();
        let (_, v) = decode(&k, Some(&v1)).unwrap();
        let v = v.unwrap();
        assert_eq!(
            (v.offset, v.commit_ts_ms, v.metadata.as_str()),
            (42, 7, "hi")
        );
        assert_eq!(v.leader_epoch, -1);
        let mut with_epoch = c.clone();
        with_epoch.leader_epoch = 6;
        let (_, v) = with_epoch.record().unwrap();
        assert_eq!(decode(&k, Some(&v)).unwrap().1.unwrap().leader_epoch, 6);
    }

    #[test]
    fn java_string_hash_code_picks_the_partition() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(partition_for_group("hello", 1 << 30), 99162322);
        assert_eq!(partition_for_group("hello", 50), 99162322 % 50);
        assert_eq!(partition_for_group("", 50), 0);
        // Negative hashes use the absolute value: "polygenelubricants".hashCode()
        // == i32::MIN in Java, which Kafka's Utils.abs maps to 0.
        assert_eq!(partition_for_group("polygenelubricants", 7), 0);
        // Non-ASCII hashes UTF-16 code units (surrogate pairs for U+1F600).
        let h = "\u{1F600}"
            .encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(
            partition_for_group("\u{1F600}", 1 << 30),
            h.unsigned_abs() % (1 << 30)
        );
    }

    #[test]
    fn last_write_wins_and_tombstone_deletes() {
        let mut t = OffsetTable::default();
        for c in [
            commit("g", "t", 0, 5),
            commit("g", "t", 0, 9),
            commit("g", "t", 1, 3),
        ] {
            let (k, v) = c.record().unwrap();
            t.apply_record(&k, Some(&v)).unwrap();
        }
        let tp0 = TopicPartition::new("t", 0);
        assert_eq!(t.get("g", &tp0).unwrap().offset, 9);
        assert_eq!(t.for_group("g").count(), 2);
        let k0 = encode_key(&commit("g", "t", 0, 0).key()).unwrap();
        t.apply_record(&k0, None).unwrap();
        assert_eq!(t.get("g", &tp0), None);
        assert_eq!(t.groups().collect::<Vec<_>>(), vec!["g"]);
        let keys = t.remove_group("g");
        assert_eq!(keys, vec![commit("g", "t", 1, 0).key()]);
        assert_eq!(t.groups().count(), 0);
    }

    #[test]
    fn bounds_are_enforced_on_encode() {
        let mut c = commit("g", "t", 0, 1);
        c.metadata = "x".repeat(MAX_METADATA_BYTES);
        assert!(c.record().is_ok());
        c.metadata.push('x');
        assert_eq!(
            c.record().unwrap_err(),
            OffsetError::MetadataTooLarge {
                bytes: MAX_METADATA_BYTES + 1,
                max: MAX_METADATA_BYTES
            }
        );
        assert_eq!(
            commit("g", "t", 0, -1).record().unwrap_err().code(),
            "InvalidOffset"
        );
        assert!(matches!(
            commit(&"g".repeat(MAX_ID_BYTES + 1), "t", 0, 1).record(),
            Err(OffsetError::NameTooLong { .. })
        ));
    }

    #[test]
    fn decode_rejects_unknown_versions_and_trailing_bytes() {
        let (k, v) = commit("g", "t", 0, 1).record().unwrap();
        let mut k2 = k.to_vec();
        k2[1] = 9;
        assert!(matches!(
            decode(&k2, None),
            Err(OffsetError::Corrupt { .. })
        ));
        let mut v2 = v.to_vec();
        v2.push(0);
        assert!(matches!(
            decode(&k, Some(&v2)),
            Err(OffsetError::Corrupt { .. })
        ));
        assert!(matches!(
            decode(&k[..k.len() - 1], None),
            Err(OffsetError::Corrupt { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn encode_then_decode_round_trips(
            group in "[a-z.\u{e9}-]{0,40}",
            topic in "[a-zA-Z0-9._-]{1,40}",
            partition in any::<u32>(),
            offset in 0..i64::MAX,
            metadata in ".{0,60}",
            commit_ts_ms in any::<u64>(),
            leader_epoch in -1..i32::MAX,
        ) {
            let c = OffsetCommit { group, topic, partition, offset, metadata, commit_ts_ms, leader_epoch };
            let (k, v) = c.record().unwrap();
            prop_assert_eq!(decode(&k, Some(&v)).unwrap(), (c.key(), Some(c.value())));
            prop_assert_eq!(decode(&k, None).unwrap(), (c.key(), None));
        }

        #[test]
        fn replaying_records_keeps_the_last_write_of_each_key(
            writes in proptest::collection::vec((0..3u8, 0..2u8, 0..3u32, proptest::option::of(0..1000i64)), 0..40),
        ) {
            let mut table = OffsetTable::default();
            let mut model: BTreeMap<OffsetKey, i64> = BTreeMap::new();
            for (g, t, p, offset) in writes {
                let c = commit(&format!("g{g}"), &format!("t{t}"), p, offset.unwrap_or(0));
                let key = encode_key(&c.key()).unwrap();
                let value = offset.map(|_| encode_value(&c.value()).unwrap());
                table.apply_record(&key, value.as_deref()).unwrap();
                match offset {
                    Some(o) => model.insert(c.key(), o),
                    None => model.remove(&c.key()),
                };
            }
            let got: BTreeMap<OffsetKey, i64> = table
                .groups()
                .flat_map(|g| table.for_group(g).map(move |(tp, v)| {
                    (OffsetKey { group: g.to_string(), tp: tp.clone() }, v.offset)
                }))
                .collect();
            prop_assert_eq!(got, model);
        }

        #[test]
        fn fuzz_decode_never_panics_on_garbage(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        ) {
            let _ = decode(&key, value.as_deref());
        }

        #[test]
        fn fuzz_decode_never_panics_on_damaged_records(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
            cut in proptest::option::of(any::<usize>()),
        ) {
            let (k, v) = commit("group-1", "orders", 3, 42).record().unwrap();
            let (mut k, mut v) = (k.to_vec(), v.to_vec());
            for (i, b) in edits {
                if i % 2 == 0 { let n = k.len(); k[i / 2 % n] = b } else { let n = v.len(); v[i / 2 % n] = b }
            }
            if let Some(c) = cut { v.truncate(c % (v.len() + 1)) }
            let _ = decode(&k, Some(&v));
        }
    }
}
