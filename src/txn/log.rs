//! The record format of the transaction log (`__transaction_state`): one
//! record per transition of a transactional id, last write wins on replay,
//! a record without a value (a tombstone) removes an expired id.
//!
//! Owns: the key/value encoding of a `TxnMeta` and `partition_for_txn`,
//! which picks the log partition (and so the coordinator) of an id.
//!
//! Must never: panic on bytes read back from the log (every length,
//! version, state and string is checked; counts are never trusted for an
//! allocation), or change the meaning of an encoded version.
//!
//! Key, version 1 (big-endian): `u16 version | u16 len | transactional id`.
//! Value, version 2: `u16 version | i64 producer_id | i64 last_producer_id
//! | i16 producer_epoch | i16 last_producer_epoch | i32 timeout_ms | u8
//! state | i64 start_ms | i64 last_update_ms | u32 topics | per topic (u16
//! len | name | u32 partitions | u32 each) | i64 next_producer_id | u8
//! txn_version`, topics and partitions in order. Version 1 (before
//! transaction version 2) ends after the topics and still decodes: no next
//! producer id, version 0.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use super::coordinator::{TxnMeta, TxnState};
use crate::group::reader::{Malformed, Reader};
use crate::group::{offsets::partition_for_group, TopicPartition, MAX_ID_BYTES, MAX_TOPIC_BYTES};

pub const KEY_VERSION: u16 = 1;
pub const VALUE_VERSION: u16 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxnLogError {
    #[error("transactional id of {bytes} bytes: at most {max}")]
    IdTooLong { bytes: usize, max: usize },
    #[error("a {0:?} transaction is never written")]
    NotStored(TxnState),
    #[error("corrupt transaction record: {0}")]
    Corrupt(String),
}

impl From<Malformed> for TxnLogError {
    fn from(m: Malformed) -> TxnLogError {
        corrupt(m.0)
    }
}

fn corrupt(detail: impl Into<String>) -> TxnLogError {
    TxnLogError::Corrupt(detail.into())
}

/// The log partition of `id`: Kafka's rule (the same as a group's offsets
/// partition: `abs(hashCode) % partitions` with Java's `String.hashCode`).
pub fn partition_for_txn(id: &str, partitions: u32) -> u32 {
    partition_for_group(id, partitions)
}

pub fn encode_key(id: &str) -> Result<Bytes, TxnLogError> {
    if id.len() > MAX_ID_BYTES {
        return Err(TxnLogError::IdTooLong {
            bytes: id.len(),
            max: MAX_ID_BYTES,
        });
    }
    let mut b = BytesMut::with_capacity(4 + id.len());
    b.put_u16(KEY_VERSION);
    b.put_u16(id.len() as u16);
    b.put_slice(id.as_bytes());
    Ok(b.freeze())
}

pub fn encode_value(m: &TxnMeta) -> Result<Bytes, TxnLogError> {
    if matches!(m.state, TxnState::Dead | TxnState::PrepareEpochFence) {
        return Err(TxnLogError::NotStored(m.state));
    }
    let mut b = BytesMut::with_capacity(64 + m.partitions.len() * 8);
    b.put_u16(VALUE_VERSION);
    b.put_i64(m.producer_id);
    b.put_i64(m.last_producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i16(m.last_producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_u8(m.state as u8);
    b.put_i64(m.start_ms);
    b.put_i64(m.last_update_ms);
    // Partitions grouped by topic (the set is in topic order).
    let mut topics: Vec<(&str, Vec<u32>)> = Vec::new();
    for tp in &m.partitions {
        match topics.last_mut() {
            Some((t, ps)) if *t == tp.topic => ps.push(tp.partition),
            _ => topics.push((&tp.topic, vec![tp.partition])),
        }
    }
    b.put_u32(topics.len() as u32);
    for (t, ps) in topics {
        // Topic names are bounded by the topic rules; a longer one is no
        // topic (it could not be added).
        assert!(t.len() <= MAX_TOPIC_BYTES, "topic name bound");
        b.put_u16(t.len() as u16);
        b.put_slice(t.as_bytes());
        b.put_u32(ps.len() as u32);
        for p in ps {
            b.put_u32(p);
        }
    }
    b.put_i64(m.next_producer_id);
    b.put_u8(m.txn_version);
    Ok(b.freeze())
}

/// Decodes one record; `None` value: a tombstone.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<(String, Option<TxnMeta>), TxnLogError> {
    let mut r = Reader::new(key);
    let version = r.u16("key version")?;
    if version != KEY_VERSION {
        return Err(corrupt(format!("unknown key version {version}")));
    }
    let id = r.string("transactional id", MAX_ID_BYTES)?;
    r.finish()?;
    let Some(value) = value else {
        return Ok((id, None));
    };
    let mut r = Reader::new(value);
    let version = r.u16("value version")?;
    if !(1..=VALUE_VERSION).contains(&version) {
        return Err(corrupt(format!("unknown value version {version}")));
    }
    let producer_id = r.i64("producer id")?;
    let last_producer_id = r.i64("last producer id")?;
    let producer_epoch = r.i16("producer epoch")?;
    let last_producer_epoch = r.i16("last producer epoch")?;
    let timeout_ms = r.i32("timeout")?;
    let state_id = r.u8("state")?;
    let state = TxnState::from_id(state_id)
        .filter(|s| !matches!(s, TxnState::Dead | TxnState::PrepareEpochFence))
        .ok_or_else(|| corrupt(format!("state {state_id}")))?;
    let start_ms = r.i64("start")?;
    let last_update_ms = r.i64("last update")?;
    if producer_id < 0 || producer_epoch < 0 || timeout_ms <= 0 {
        return Err(corrupt(format!(
            "producer {producer_id} epoch {producer_epoch} timeout {timeout_ms}"
        )));
    }
    let topics = r.u32("topic count")?;
    let mut partitions = BTreeSet::new();
    for _ in 0..topics {
        let topic = r.string("topic", MAX_TOPIC_BYTES)?;
        let n = r.u32("partition count")?;
        for _ in 0..n {
            partitions.insert(TopicPartition::new(topic.as_str(), r.u32("partition")?));
        }
    }
    let (next_producer_id, txn_version) = if version >= 2 {
        (r.i64("next producer id")?, r.u8("transaction version")?)
    } else {
        (-1, 0)
    };
    if next_producer_id < -1 || txn_version > 2 {
        return Err(corrupt(format!(
            "next producer {next_producer_id} transaction version {txn_version}"
        )));
    }
    r.finish()?;
    Ok((
        id,
        Some(TxnMeta {
            producer_id,
            last_producer_id,
            producer_epoch,
            last_producer_epoch,
            timeout_ms,
            state,
            partitions,
            start_ms,
            last_update_ms,
            next_producer_id,
            txn_version,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(state: TxnState, parts: &[(&str, u32)]) -> TxnMeta {
        TxnMeta {
            producer_id: 1 << 40,
            last_producer_id: -1,
            producer_epoch: 3,
            last_producer_epoch: 2,
            timeout_ms: 60_000,
            state,
            partitions: parts
                .iter()
                .map(|&(t, p)| TopicPartition::new(t, p))
                .collect(),
            start_ms: 1_700_000_000_000,
            last_update_ms: 1_700_000_000_500,
            next_producer_id: 1 << 41,
            txn_version: 2,
        }
    }

    #[test]
    fn a_version_1_record_decodes_without_the_version_2_fields() {
        let mut m = meta(TxnState::CompleteCommit, &[]);
        let v2 = encode_value(&m).unwrap();
        // Version 1: the same bytes up to the topics, no tail.
        let mut v1 = v2[..v2.len() - 9].to_vec();
        v1[..2].copy_from_slice(&1u16.to_be_bytes());
        m.next_producer_id = -1;
        m.txn_version = 0;
        let k = encode_key("t").unwrap();
        assert_eq!(decode(&k, Some(&v1)).unwrap(), ("t".to_string(), Some(m)));
        let mut v3 = v2.to_vec();
        v3[..2].copy_from_slice(&3u16.to_be_bytes());
        assert!(decode(&k, Some(&v3)).is_err(), "an unknown version");
    }

    #[test]
    fn records_round_trip_and_tombstones_decode() {
        let m = meta(TxnState::Ongoing, &[("a", 0), ("a", 7), ("b", 1)]);
        let k = encode_key("app-1").unwrap();
        let v = encode_value(&m).unwrap();
        assert_eq!(
            decode(&k, Some(&v)).unwrap(),
            ("app-1".to_string(), Some(m))
        );
        assert_eq!(decode(&k, None).unwrap(), ("app-1".to_string(), None));
    }

    #[test]
    fn what_is_never_stored_is_refused_and_damage_is_corrupt() {
        assert_eq!(
            encode_value(&meta(TxnState::Dead, &[])).unwrap_err(),
            TxnLogError::NotStored(TxnState::Dead)
        );
        assert!(matches!(
            encode_key(&"x".repeat(MAX_ID_BYTES + 1)),
            Err(TxnLogError::IdTooLong { .. })
        ));
        let k = encode_key("t").unwrap();
        let v = encode_value(&meta(TxnState::Empty, &[])).unwrap();
        // Every truncation is an error, as is a trailing byte or an unknown
        // state.
        for n in 0..v.len() {
            assert!(decode(&k, Some(&v[..n])).is_err(), "cut at {n}");
        }
        let mut long = v.to_vec();
        long.push(0);
        assert!(decode(&k, Some(&long)).is_err());
        let mut bad = v.to_vec();
        bad[2 + 8 + 8 + 2 + 2 + 4] = TxnState::Dead as u8;
        assert!(decode(&k, Some(&bad)).is_err());
    }

    #[test]
    fn the_partition_is_kafkas() {
        // Java's String.hashCode, then abs % partitions.
        let h = "my-txn"
            .encode_utf16()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(partition_for_txn("my-txn", 50), h.unsigned_abs() % 50);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn encode_then_decode_round_trips(
            id in "[a-zA-Z0-9._-]{1,40}",
            pid in 0..i64::MAX,
            epoch in 0..i16::MAX,
            state in 0u8..6,
            parts in proptest::collection::btree_set(("[a-z]{1,5}", 0..64u32), 0..20),
        ) {
            let mut m = meta(TxnState::from_id(state).unwrap(), &[]);
            m.producer_id = pid;
            m.producer_epoch = epoch;
            m.partitions = parts.into_iter().map(|(t, p)| TopicPartition::new(t, p)).collect();
            let (k, v) = (encode_key(&id).unwrap(), encode_value(&m).unwrap());
            prop_assert_eq!(decode(&k, Some(&v)).unwrap(), (id, Some(m)));
        }

        #[test]
        fn fuzz_decode_never_panics(
            key in proptest::collection::vec(any::<u8>(), 0..40),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..120)),
        ) {
            let _ = decode(&key, value.as_deref());
        }

        #[test]
        fn fuzz_damaged_records_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..5),
        ) {
            let k = encode_key("txn").unwrap();
            let mut v = encode_value(&meta(TxnState::Ongoing, &[("a", 1), ("b", 2)])).unwrap().to_vec();
            for (i, b) in edits {
                let n = v.len();
                v[i % n] = b;
            }
            let _ = decode(&k, Some(&v));
        }
    }
}
