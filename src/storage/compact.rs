//! Log compaction's pure core (cleanup.policy=compact): which records a
//! cleaning keeps and the batches it writes in their place.
//!
//! Owns: the key map (each key's newest offset in the range a cleaning
//! covers), the per-batch decision and its rewrite, tombstone expiry with
//! Kafka's delete horizon (KIP-534: the cleaning that first keeps a
//! tombstone stamps `now + delete.retention.ms` into its batch; a later
//! cleaning past that time drops it), and keeping each idempotent
//! producer's last batch (empty if need be) so its sequence state survives,
//! as Kafka's cleaner does.
//!
//! Must never: do I/O, touch a batch at or past the cleanable end, renumber
//! an offset (a consumer sees the survivors at their own offsets, with
//! holes between), or keep an older value of a key than the newest one the
//! map saw.

use std::collections::HashMap;

use bytes::Bytes;

use crate::batch::{self, BatchError, BatchHeader, Record, Records, ATTR_DELETE_HORIZON};
use crate::storage::meta::LogConfig;

/// Each key's newest offset among the batches added.
#[derive(Debug, Default)]
pub struct KeyMap {
    latest: HashMap<Bytes, i64>,
    /// Bytes of keys held (the map's own memory is about this plus 48 per key).
    key_bytes: usize,
}

impl KeyMap {
    /// Adds every keyed record of one batch; a later offset for a key
    /// replaces an earlier one. Control batches carry no data keys.
    pub fn add(&mut self, b: &Bytes) -> Result<(), BatchError> {
        let records = Records::new(b.clone())?;
        if records.header().is_control() {
            return Ok(());
        }
        for r in records {
            let r = r?;
            if let Some(k) = r.key {
                match self.latest.get_mut(&k) {
                    Some(prev) => {
                        debug_assert!(*prev < r.offset, "batches are added in offset order");
                        *prev = r.offset;
                    }
                    None => {
                        // A copy: the record's key is a slice of the whole
                        // read chunk, which it would otherwise keep alive.
                        self.key_bytes += k.len();
                        self.latest.insert(Bytes::copy_from_slice(&k), r.offset);
                    }
                }
            }
        }
        Ok(())
    }

    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// About what the map holds in memory.
    pub fn memory_bytes(&self) -> usize {
        self.key_bytes + self.latest.len() * 48
    }
}

/// When a cleaning runs and how long tombstones stay.
#[derive(Debug, Clone, Copy)]
pub struct Cleaning {
    pub now_ms: i64,
    /// `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

/// What happens to one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every record stays: the stored bytes are written again as they are.
    Keep,
    /// No record stays and no producer needs it: it goes.
    Drop,
    /// These bytes replace it (same base offset and last offset, fewer
    /// records, a fresh CRC; compressed again with its codec).
    Rewrite(Bytes),
}

/// What a cleaning did, for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub batches_read: u64,
    pub bytes_read: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub tombstones_dropped: u64,
    pub bytes_written: u64,
}

/// Cleans one batch of the range a cleaning covers against `keys` (built
/// over at least everything up to the cleanable end). A record stays when
/// it has a key, no newer record of that key is in the map, and it is not
/// a tombstone past its batch's delete horizon. `last_of_producer`: this
/// is its idempotent producer's newest batch in the log.
pub fn clean_batch(
    b: &Bytes,
    keys: &KeyMap,
    c: &Cleaning,
    last_of_producer: bool,
    stats: &mut Stats,
) -> Result<Outcome, BatchError> {
    let records = Records::new(b.clone())?;
    let h = *records.header();
    stats.batches_read += 1;
    stats.bytes_read += h.total_bytes() as u64;
    stats.records_read += h.record_count as u64;
    if h.is_control() {
        // Transaction markers: kept until transactions clean them.
        stats.records_kept += h.record_count as u64;
        stats.bytes_written += h.total_bytes() as u64;
        return Ok(Outcome::Keep);
    }
    let horizon_passed = h.delete_horizon().is_some_and(|t| c.now_ms >= t);
    let mut kept: Vec<Record> = Vec::with_capacity(h.record_count as usize);
    let mut tombstone_kept = false;
    for r in records {
        let r = r?;
        let Some(key) = &r.key else {
            continue; // a compacted log has no use for a record without a key
        };
        if keys.latest(key).is_some_and(|newest| newest > r.offset) {
            continue; // superseded
        }
        if r.value.is_none() {
            if horizon_passed {
                stats.tombstones_dropped += 1;
                continue;
            }
            tombstone_kept = true;
        }
        kept.push(r);
    }
    stats.records_kept += kept.len() as u64;
    let stamp = tombstone_kept && h.delete_horizon().is_none();
    let outcome = if kept.len() == h.record_count as usize && !stamp {
        Outcome::Keep
    } else if kept.is_empty() && !(last_of_producer && h.producer_id >= 0) {
        Outcome::Drop
    } else if kept.is_empty() && h.record_count == 0 {
        Outcome::Keep // already the producer's empty placeholder
    } else {
        let mut nh = h;
        if stamp {
            nh.attributes |= ATTR_DELETE_HORIZON;
            nh.base_timestamp = c.now_ms.saturating_add(c.delete_retention_ms);
        }
        Outcome::Rewrite(batch::encode_batch(&nh, &kept)?)
    };
    stats.bytes_written += match &outcome {
        Outcome::Keep => h.total_bytes() as u64,
        Outcome::Drop => 0,
        Outcome::Rewrite(n) => n.len() as u64,
    };
    Ok(outcome)
}

/// Cleans a whole log held in memory: the key map over every batch below
/// `cleanable_end`, then each of those batches cleaned; batches at or past
/// it come back untouched. What the segment cleaner does one segment at a
/// time, in one function the property tests hold to a model.
pub fn clean_log(
    batches: &[Bytes],
    cleanable_end: i64,
    c: &Cleaning,
) -> Result<(Vec<Bytes>, Stats), BatchError> {
    let headers: Vec<BatchHeader> = batches
        .iter()
        .map(|b| batch::validate(b))
        .collect::<Result<_, _>>()?;
    let mut keys = KeyMap::default();
    for (b, h) in batches.iter().zip(&headers) {
        if h.last_offset() < cleanable_end {
            keys.add(b)?;
        }
    }
    let mut last_of: HashMap<i64, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        if h.producer_id >= 0 {
            last_of.insert(h.producer_id, i);
        }
    }
    let mut stats = Stats::default();
    let mut out = Vec::with_capacity(batches.len());
    for (i, (b, h)) in batches.iter().zip(&headers).enumerate() {
        if h.last_offset() >= cleanable_end {
            out.push(b.clone());
            continue;
        }
        let last = last_of.get(&h.producer_id) == Some(&i);
        match clean_batch(b, &keys, c, last, &mut stats)? {
            Outcome::Keep => out.push(b.clone()),
            Outcome::Drop => {}
            Outcome::Rewrite(n) => out.push(n),
        }
    }
    Ok((out, stats))
}

/// What the planner needs of one segment, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: i64,
    /// One past its last offset.
    pub next_offset: i64,
    pub bytes: u64,
    /// Newest record timestamp in it (-1: none).
    pub max_timestamp: i64,
    /// Sealed, every byte written and synced: a cleaning may read and
    /// replace it. The active segment never is.
    pub sealed_and_synced: bool,
}

/// A cleaning the planner chose: rewrite the segments below `end`, with a
/// key map over `[first_dirty, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Where the part never cleaned starts (the cleaner's checkpoint).
    pub first_dirty: i64,
    /// The first offset a cleaning may not touch: the first segment that
    /// is not sealed and synced, or whose newest record is younger than
    /// `min.compaction.lag.ms`.
    pub end: i64,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// dirty / (clean + dirty): what `min.cleanable.dirty.ratio` compares.
    pub dirty_ratio: f64,
    /// Cleaning is due by `max.compaction.lag.ms`, whatever the ratio.
    pub forced: bool,
}

/// The cleanable range of one log and how dirty it is, due or not (what
/// `plan` decides on, and what the cleaner reports). None: the policy does
/// not compact, or nothing below the cleanable end is dirty.
pub fn assess(
    segments: &[SegmentSummary],
    checkpoint: Option<i64>,
    config: &LogConfig,
    now_ms: i64,
) -> Option<Plan> {
    if !config.cleanup_policy.compact || segments.is_empty() {
        return None;
    }
    let log_start = segments[0].base_offset;
    let log_end = segments[segments.len() - 1].next_offset;
    let first_dirty = checkpoint
        .filter(|&c| c >= log_start && c <= log_end)
        .unwrap_or(log_start);
    let young = |s: &SegmentSummary| {
        s.max_timestamp >= 0
            && now_ms.saturating_sub(s.max_timestamp) < config.min_compaction_lag_ms
    };
    let end = segments
        .iter()
        .find(|s| !s.sealed_and_synced || (s.next_offset > first_dirty && young(s)))
        .map_or(log_end, |s| s.base_offset);
    if end <= first_dirty {
        return None;
    }
    let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
    let mut oldest_dirty: Option<i64> = None;
    for s in segments.iter().take_while(|s| s.next_offset <= end) {
        if s.next_offset <= first_dirty {
            clean_bytes += s.bytes;
        } else {
            dirty_bytes += s.bytes;
            if oldest_dirty.is_none() && s.max_timestamp >= 0 {
                oldest_dirty = Some(s.max_timestamp);
            }
        }
    }
    if dirty_bytes == 0 {
        return None;
    }
    let dirty_ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes) as f64;
    let forced =
        oldest_dirty.is_some_and(|t| now_ms.saturating_sub(t) > config.max_compaction_lag_ms);
    Some(Plan {
        first_dirty,
        end,
        clean_bytes,
        dirty_bytes,
        dirty_ratio,
        forced,
    })
}

/// Kafka's LogCleanerManager rules for one log: the cleanable range ends
/// at the first segment a cleaning may not touch; the log is due when the
/// dirty share of what lies below that end reaches
/// `min.cleanable.dirty.ratio`, or when the oldest dirty segment's newest
/// record is older than `max.compaction.lag.ms`. None: nothing is due
/// (or the policy does not compact). `checkpoint`: where the last cleaning
/// ended (None, or outside the log: the log start).
pub fn plan(
    segments: &[SegmentSummary],
    checkpoint: Option<i64>,
    config: &LogConfig,
    now_ms: i64,
) -> Option<Plan> {
    assess(segments, checkpoint, config, now_ms)
        .filter(|p| p.dirty_ratio >= config.min_cleanable_dirty_ratio || p.forced)
}

/// The groups a cleaning of `[log start, end)` rewrites, as index ranges
/// into `segments`: consecutive segments below `end` whose bytes together
/// stay within `max_bytes` (a group's output is never larger than its
/// input, so it fits one segment), each at least one segment.
pub fn groups(
    segments: &[SegmentSummary],
    end: i64,
    max_bytes: u64,
) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < segments.len() && segments[i].next_offset <= end && segments[i].base_offset < end {
        let start = i;
        let mut bytes = segments[i].bytes;
        i += 1;
        while i < segments.len()
            && segments[i].next_offset <= end
            && segments[i].base_offset < end
            && bytes + segments[i].bytes <= max_bytes
        {
            bytes += segments[i].bytes;
            i += 1;
        }
        out.push(start..i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, Records};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// One produced record: key index (None: no key), value (None: tombstone).
    type Op = (Option<u8>, Option<u16>);

    fn key(k: u8) -> Vec<u8> {
        format!("key-{k}").into_bytes()
    }

    /// Batches as the broker stores them (offsets assigned in order), each
    /// compressed with its codec, some from an idempotent producer.
    fn build_log(ops: &[Op], splits: &[usize], codecs: &[i16], t0: i64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut offset = 0i64;
        let mut at = 0usize;
        let mut i = 0;
        while at < ops.len() {
            let n = splits[i % splits.len()].clamp(1, ops.len() - at);
            let mut b = BatchBuilder::new(t0 + at as i64);
            if i % 3 == 0 {
                b = b.idempotent(7, 0, offset as i32);
            }
            for (j, (k, v)) in ops[at..at + n].iter().enumerate() {
                let kb = k.map(key);
                let vb = v.map(|v| format!("value-{v}-{}", offset + j as i64).into_bytes());
                b.push(t0 + (at + j) as i64, kb.as_deref(), vb.as_deref(), &[]);
            }
            let plain = b.finish();
            let mut h = batch::validate(&plain).unwrap();
            h.base_offset = offset;
            h.attributes |= codecs[i % codecs.len()];
            let records: Vec<Record> = Records::new(plain)
                .unwrap()
                .map(|r| {
                    let mut r = r.unwrap();
                    r.offset += offset;
                    r
                })
                .collect();
            out.push(batch::encode_batch(&h, &records).unwrap());
            offset += n as i64;
            at += n;
            i += 1;
        }
        out
    }

    /// Every record of a log, in order, with the batch's horizon.
    fn read(log: &[Bytes]) -> Vec<Record> {
        let mut v = Vec::new();
        for b in log {
            for r in Records::new(b.clone()).expect("valid batch") {
                v.push(r.expect("valid record"));
            }
        }
        v
    }

    /// The model: below `end`, a record stays when it has a key, is that
    /// key's newest below `end`, and is not an expired tombstone.
    fn model(all: &[Record], end: i64, tombstones_expired: bool) -> Vec<Record> {
        let mut newest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for r in all.iter().filter(|r| r.offset < end) {
            if let Some(k) = &r.key {
                newest.insert(k.to_vec(), r.offset);
            }
        }
        all.iter()
            .filter(|r| {
                r.offset >= end
                    || r.key
                        .as_ref()
                        .is_some_and(|k| newest[&k.to_vec()] == r.offset)
                        && !(r.value.is_none() && tombstones_expired)
            })
            .cloned()
            .collect()
    }

    fn same_records(got: &[Record], want: &[Record]) {
        let view = |v: &[Record]| -> Vec<(i64, i64, Option<Bytes>, Option<Bytes>)> {
            v.iter()
                .map(|r| (r.offset, r.timestamp_ms, r.key.clone(), r.value.clone()))
                .collect()
        };
        assert_eq!(view(got), view(want));
    }

    fn op() -> impl Strategy<Value = Op> {
        (
            prop_oneof![1 => Just(None), 12 => (0u8..12).prop_map(Some)],
            prop_oneof![1 => Just(None), 5 => any::<u16>().prop_map(Some)],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn cleaning_keeps_the_newest_value_per_key_at_its_offset(
            ops in proptest::collection::vec(op(), 1..120),
            splits in proptest::collection::vec(1usize..9, 1..6),
            codecs in proptest::collection::vec(0i16..=4, 1..4),
            end_at in 0usize..40,
        ) {
            let log = build_log(&ops, &splits, &codecs, 1_000_000);
            // A batch boundary as the cleanable end (the active segment's base).
            let ends: Vec<i64> = log.iter().map(|b| batch::validate(b).unwrap().base_offset)
                .chain([ops.len() as i64]).collect();
            let end = ends[end_at % ends.len()];
            let before = read(&log);
            let c = Cleaning { now_ms: 5_000_000, delete_retention_ms: 1000 };
            let (cleaned, stats) = clean_log(&log, end, &c).unwrap();
            same_records(&read(&cleaned), &model(&before, end, false));
            // Nothing at or past the end is touched, byte for byte.
            let tail = |l: &[Bytes]| -> Vec<Bytes> { l.iter()
                .filter(|b| batch::validate(b).unwrap().last_offset() >= end).cloned().collect() };
            prop_assert_eq!(tail(&cleaned), tail(&log));
            // Offsets only grow, and every batch keeps its producer's last.
            let offs: Vec<i64> = read(&cleaned).iter().map(|r| r.offset).collect();
            prop_assert!(offs.windows(2).all(|w| w[0] < w[1]));
            let last_pid = |l: &[Bytes]| l.iter().map(|b| batch::validate(b).unwrap())
                .filter(|h| h.producer_id == 7).map(|h| (h.base_offset, h.last_offset())).last();
            prop_assert_eq!(last_pid(&cleaned), last_pid(&log));
            prop_assert!(stats.bytes_written <= stats.bytes_read + 64 * stats.batches_read);

            // Cleaning again at once changes nothing readable (the horizon is
            // stamped, not passed) ...
            let (again, _) = clean_log(&cleaned, end, &c).unwrap();
            same_records(&read(&again), &model(&before, end, false));
            // ... and once delete.retention.ms has passed the tombstones go.
            let later = Cleaning { now_ms: c.now_ms + c.delete_retention_ms, ..c };
            let (expired, st) = clean_log(&again, end, &later).unwrap();
            same_records(&read(&expired), &model(&before, end, true));
            let tombstones = model(&before, end, false).iter()
                .filter(|r| r.offset < end && r.value.is_none()).count() as u64;
            prop_assert_eq!(st.tombstones_dropped, tombstones);
        }
    }

    #[test]
    fn a_rewritten_batch_keeps_its_offsets_producer_and_codec() {
        let ops: Vec<Op> = vec![(Some(1), Some(1)), (Some(2), Some(2)), (Some(1), Some(3))];
        for codec in 0..=4 {
            let log = build_log(&ops, &[3], &[codec], 100);
            let (cleaned, stats) = clean_log(
                &log,
                3,
                &Cleaning {
                    now_ms: 0,
                    delete_retention_ms: 0,
                },
            )
            .unwrap();
            assert_eq!(cleaned.len(), 1);
            let (old, new) = (
                batch::validate(&log[0]).unwrap(),
                batch::validate(&cleaned[0]).unwrap(),
            );
            assert_eq!(new.compression(), codec);
            assert_eq!(
                (new.base_offset, new.last_offset()),
                (old.base_offset, old.last_offset())
            );
            assert_eq!(
                (new.producer_id, new.base_sequence),
                (old.producer_id, old.base_sequence)
            );
            assert_eq!(new.record_count, 2);
            let offs: Vec<i64> = read(&cleaned).iter().map(|r| r.offset).collect();
            assert_eq!(
                offs,
                vec![1, 2],
                "the survivors keep their offsets, a hole at 0"
            );
            assert_eq!((stats.records_read, stats.records_kept), (3, 2));
        }
    }

    fn seg(base: i64, next: i64, bytes: u64, ts: i64, done: bool) -> SegmentSummary {
        SegmentSummary {
            base_offset: base,
            next_offset: next,
            bytes,
            max_timestamp: ts,
            sealed_and_synced: done,
        }
    }

    fn compact_config(ratio: f64, min_lag: i64, max_lag: i64) -> LogConfig {
        LogConfig {
            cleanup_policy: crate::storage::meta::CleanupPolicy::parse("compact").unwrap(),
            min_cleanable_dirty_ratio: ratio,
            min_compaction_lag_ms: min_lag,
            max_compaction_lag_ms: max_lag,
            ..LogConfig::default()
        }
    }

    #[test]
    fn the_planner_follows_kafkas_ratio_and_lag_rules() {
        let now = 1_000_000;
        // Three sealed segments and the active one.
        let log = [
            seg(0, 100, 1000, now - 5000, true),
            seg(100, 200, 1000, now - 4000, true),
            seg(200, 300, 1000, now - 100, true),
            seg(300, 320, 200, now - 10, false),
        ];
        // Never cleaned: all three sealed are dirty; the active one is not.
        let p = plan(&log, None, &compact_config(0.5, 0, i64::MAX), now).unwrap();
        assert_eq!(
            (p.first_dirty, p.end, p.clean_bytes, p.dirty_bytes),
            (0, 300, 0, 3000)
        );
        assert!(!p.forced && p.dirty_ratio == 1.0);
        // Cleaned up to 200: a third dirty, under a ratio of 0.5 ...
        assert_eq!(
            plan(&log, Some(200), &compact_config(0.5, 0, i64::MAX), now),
            None
        );
        // ... over 0.3.
        let p = plan(&log, Some(200), &compact_config(0.3, 0, i64::MAX), now).unwrap();
        assert_eq!(
            (p.first_dirty, p.end, p.clean_bytes, p.dirty_bytes),
            (200, 300, 2000, 1000)
        );
        // min.compaction.lag.ms: the segment written 100 ms ago stays out.
        let p = plan(&log, None, &compact_config(0.5, 1000, i64::MAX), now).unwrap();
        assert_eq!(p.end, 200);
        assert_eq!(
            plan(&log, Some(200), &compact_config(0.0, 1000, i64::MAX), now),
            None
        );
        // max.compaction.lag.ms forces a cleaning the ratio would not start.
        let p = plan(&log, Some(100), &compact_config(0.99, 0, 3000), now).unwrap();
        assert!(p.forced && p.dirty_ratio < 0.99);
        // A sealed segment not yet synced ends the range.
        let mut unsynced = log;
        unsynced[1].sealed_and_synced = false;
        assert_eq!(
            plan(&unsynced, None, &compact_config(0.5, 0, i64::MAX), now)
                .unwrap()
                .end,
            100
        );
        // A checkpoint outside the log counts from the log start; delete
        // topics never plan.
        assert_eq!(
            plan(&log, Some(9999), &compact_config(0.5, 0, i64::MAX), now)
                .unwrap()
                .first_dirty,
            0
        );
        assert_eq!(plan(&log, None, &LogConfig::default(), now), None);
        assert_eq!(
            plan(&log[3..], None, &compact_config(0.0, 0, i64::MAX), now),
            None
        );
    }

    #[test]
    fn a_producers_last_batch_stays_even_when_empty() {
        // Batch 0 (idempotent, pid 7) has key 1 only, superseded by batch 1
        // (not idempotent): batch 0 is pid 7's last, so it stays, empty.
        let ops: Vec<Op> = vec![(Some(1), Some(1)), (Some(1), Some(2))];
        let log = build_log(&ops, &[1], &[0], 0);
        let (cleaned, _) = clean_log(
            &log,
            2,
            &Cleaning {
                now_ms: 0,
                delete_retention_ms: 0,
            },
        )
        .unwrap();
        assert_eq!(cleaned.len(), 2);
        let h = batch::validate(&cleaned[0]).unwrap();
        assert_eq!((h.producer_id, h.record_count, h.base_offset), (7, 0, 0));
        assert_eq!(read(&cleaned).len(), 1);
    }

    #[test]
    fn groups_are_consecutive_segments_below_the_end_within_a_segment_size() {
        let seg = |base: i64, next: i64, bytes: u64| SegmentSummary {
            base_offset: base,
            next_offset: next,
            bytes,
            max_timestamp: 0,
            sealed_and_synced: true,
        };
        let log = [
            seg(0, 10, 600),
            seg(10, 20, 300),
            seg(20, 30, 200),
            seg(30, 40, 900),
            seg(40, 50, 1200),
            seg(50, 60, 10),
            seg(60, 70, 10),
        ];
        assert_eq!(groups(&log, 60, 1000), vec![0..2, 2..3, 3..4, 4..5, 5..6]);
        assert_eq!(groups(&log, 30, 1000), vec![0..2, 2..3]);
        assert_eq!(groups(&log, 0, 1000), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(groups(&log, 70, 10_000), vec![0..7]);
    }
}
