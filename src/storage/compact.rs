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
//!
//! Transactions, as Kafka's cleaner treats them: nothing at or past the
//! first unstable offset is cleanable (an open transaction may still
//! commit or abort); an aborted transaction's batches neither enter the key
//! map nor survive a cleaning (but for a producer's last batch, kept
//! empty); a marker stays while any batch of its transaction is left, then
//! gets a delete horizon, and goes once that has passed (`TxnWalk`, Kafka's
//! CleanedTransactionMetadata).
//!
//! Must never: do I/O, touch a batch at or past the cleanable end, renumber
//! an offset (a consumer sees the survivors at their own offsets, with
//! holes between), keep an older value of a key than the newest one the
//! map saw, let an aborted record supersede a committed one, or drop a
//! marker while a batch of its transaction is left.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;

use crate::batch::{self, BatchError, BatchHeader, Marker, Record, Records, ATTR_DELETE_HORIZON};
use crate::storage::meta::LogConfig;
use crate::storage::txnindex::AbortedTxn;

/// A cleaning's walk through the transactions of the range it covers, in
/// offset order (Kafka's CleanedTransactionMetadata): which data batches
/// belong to aborted transactions, and which markers have no batch of
/// their transaction left before them. Each pass of a cleaning walks with
/// its own.
#[derive(Debug, Default)]
pub struct TxnWalk {
    /// Aborted transactions not reached yet, by first offset.
    ahead: VecDeque<AbortedTxn>,
    /// Aborted transactions reached and not yet ended by their marker, per
    /// producer, with whether a batch of theirs was seen.
    aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers with a batch of a committed transaction seen since their
    /// last marker.
    committed: HashSet<i64>,
    /// Aborted transactions whose marker came with no batch of theirs
    /// before it: their entries in the aborted index serve nobody.
    emptied: Vec<AbortedTxn>,
    /// Some batches of the range were not walked (a segment went away
    /// meanwhile): no marker is judged empty.
    blind: bool,
}

impl TxnWalk {
    /// `aborted`: the partition's aborted transactions (any order).
    pub fn new(aborted: &[AbortedTxn]) -> TxnWalk {
        let mut ahead: Vec<AbortedTxn> = aborted.to_vec();
        ahead.sort_by_key(|t| t.first_offset);
        TxnWalk {
            ahead: ahead.into(),
            ..TxnWalk::default()
        }
    }

    fn reach(&mut self, offset: i64) {
        while self.ahead.front().is_some_and(|t| t.first_offset <= offset) {
            let t = self.ahead.pop_front().expect("a front");
            self.aborted.entry(t.producer_id).or_insert((t, false));
        }
    }

    /// A data batch: true when it belongs to an aborted transaction.
    pub fn on_data(&mut self, h: &BatchHeader) -> bool {
        self.reach(h.last_offset());
        if !h.is_transactional() {
            return false;
        }
        match self.aborted.get_mut(&h.producer_id) {
            Some((_, seen)) => {
                *seen = true;
                true
            }
            None => {
                self.committed.insert(h.producer_id);
                false
            }
        }
    }

    /// A control batch (`marker`: what it says, None when unreadable):
    /// true when no batch of its transaction was left before it, so that
    /// the marker may go once its delete horizon has passed.
    pub fn on_marker(&mut self, h: &BatchHeader, marker: Option<Marker>) -> bool {
        self.reach(h.last_offset());
        let empty = match marker {
            Some(Marker::Abort) => match self.aborted.remove(&h.producer_id) {
                Some((t, seen)) => {
                    if !seen {
                        self.emptied.push(t);
                    }
                    !seen
                }
                None => true,
            },
            Some(Marker::Commit) => !self.committed.remove(&h.producer_id),
            None => false,
        };
        empty && !self.blind
    }

    /// Batches were skipped: from now on no marker counts as empty.
    pub fn blind(&mut self) {
        self.blind = true;
    }

    /// The aborted transactions found without data, unless the walk was
    /// blind somewhere.
    pub fn emptied(&self) -> Vec<AbortedTxn> {
        if self.blind {
            Vec::new()
        } else {
            self.emptied.clone()
        }
    }
}

/// The key-map pass over one batch: walks it through `walk` and, when
/// `add_keys` and it is not aborted data, adds its keys.
pub fn map_batch(
    keys: &mut KeyMap,
    walk: &mut TxnWalk,
    b: &Bytes,
    h: &BatchHeader,
    add_keys: bool,
) -> Result<(), BatchError> {
    if h.is_control() {
        walk.on_marker(h, batch::marker_of(b.clone()));
        Ok(())
    } else if !walk.on_data(h) && add_keys {
        keys.add(b)
    } else {
        Ok(())
    }
}

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
    /// Records of aborted transactions removed.
    pub aborted_dropped: u64,
    /// Transaction markers removed (their data gone, their horizon passed).
    pub markers_dropped: u64,
    pub bytes_written: u64,
}

/// Cleans one batch of the range a cleaning covers against `keys` (built
/// over at least everything up to the cleanable end). A record stays when
/// it has a key, no newer record of that key is in the map, it is not a
/// tombstone past its batch's delete horizon, and its transaction did not
/// abort. A marker stays while its transaction has data left, and until
/// its delete horizon after that. `last_of_producer`: this is its
/// producer's newest batch in the log (kept, empty if need be, so the
/// producer's state survives). `walk`: this pass's walk, every batch
/// before this one handed to it.
pub fn clean_batch(
    b: &Bytes,
    keys: &KeyMap,
    c: &Cleaning,
    last_of_producer: bool,
    walk: &mut TxnWalk,
    stats: &mut Stats,
) -> Result<Outcome, BatchError> {
    let records = Records::new(b.clone())?;
    let h = *records.header();
    stats.batches_read += 1;
    stats.bytes_read += h.total_bytes() as u64;
    stats.records_read += h.record_count as u64;
    let horizon_passed = h.delete_horizon().is_some_and(|t| c.now_ms >= t);
    if h.is_control() {
        let empty = walk.on_marker(&h, batch::marker_of(b.clone()));
        let outcome = if !empty || (horizon_passed && last_of_producer) {
            Outcome::Keep
        } else if horizon_passed {
            stats.markers_dropped += 1;
            Outcome::Drop
        } else if h.delete_horizon().is_none() {
            // Its transaction's data is gone: the marker goes after
            // delete.retention.ms, so that a consumer that read part of the
            // transaction before this cleaning still finds its end.
            let records: Vec<Record> = records.collect::<Result<_, _>>()?;
            let mut nh = h;
            nh.attributes |= ATTR_DELETE_HORIZON;
            nh.base_timestamp = c.now_ms.saturating_add(c.delete_retention_ms);
            Outcome::Rewrite(batch::encode_batch(&nh, &records)?)
        } else {
            Outcome::Keep
        };
        if !matches!(outcome, Outcome::Drop) {
            stats.records_kept += h.record_count as u64;
        }
        stats.bytes_written += match &outcome {
            Outcome::Keep => h.total_bytes() as u64,
            Outcome::Drop => 0,
            Outcome::Rewrite(n) => n.len() as u64,
        };
        return Ok(outcome);
    }
    let aborted = walk.on_data(&h);
    if aborted {
        stats.aborted_dropped += h.record_count as u64;
    }
    let mut kept: Vec<Record> = Vec::with_capacity(h.record_count as usize);
    let mut tombstone_kept = false;
    for r in records.take(if aborted { 0 } else { usize::MAX }) {
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
/// time, in one function the property tests hold to a model. `aborted`:
/// the log's aborted transactions.
pub fn clean_log(
    batches: &[Bytes],
    cleanable_end: i64,
    c: &Cleaning,
    aborted: &[AbortedTxn],
) -> Result<(Vec<Bytes>, Stats), BatchError> {
    let headers: Vec<BatchHeader> = batches
        .iter()
        .map(|b| batch::validate(b))
        .collect::<Result<_, _>>()?;
    let mut keys = KeyMap::default();
    let mut walk = TxnWalk::new(aborted);
    for (b, h) in batches.iter().zip(&headers) {
        if h.last_offset() < cleanable_end {
            map_batch(&mut keys, &mut walk, b, h, true)?;
        }
    }
    let mut walk = TxnWalk::new(aborted);
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
        match clean_batch(b, &keys, c, last, &mut walk, &mut stats)? {
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
/// `first_unstable`: the first offset of the oldest open transaction (the
/// segment holding it, and every later one, is not cleanable).
pub fn assess(
    segments: &[SegmentSummary],
    checkpoint: Option<i64>,
    config: &LogConfig,
    now_ms: i64,
    first_unstable: Option<i64>,
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
        .find(|s| {
            !s.sealed_and_synced
                || first_unstable.is_some_and(|u| s.next_offset > u)
                || (s.next_offset > first_dirty && young(s))
        })
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
    first_unstable: Option<i64>,
) -> Option<Plan> {
    assess(segments, checkpoint, config, now_ms, first_unstable)
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
            let (cleaned, stats) = clean_log(&log, end, &c, &[]).unwrap();
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
            let (again, _) = clean_log(&cleaned, end, &c, &[]).unwrap();
            same_records(&read(&again), &model(&before, end, false));
            // ... and once delete.retention.ms has passed the tombstones go.
            let later = Cleaning { now_ms: c.now_ms + c.delete_retention_ms, ..c };
            let (expired, st) = clean_log(&again, end, &later, &[]).unwrap();
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
                &[],
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
        let p = plan(&log, None, &compact_config(0.5, 0, i64::MAX), now, None).unwrap();
        assert_eq!(
            (p.first_dirty, p.end, p.clean_bytes, p.dirty_bytes),
            (0, 300, 0, 3000)
        );
        assert!(!p.forced && p.dirty_ratio == 1.0);
        // Cleaned up to 200: a third dirty, under a ratio of 0.5 ...
        assert_eq!(
            plan(
                &log,
                Some(200),
                &compact_config(0.5, 0, i64::MAX),
                now,
                None
            ),
            None
        );
        // ... over 0.3.
        let p = plan(
            &log,
            Some(200),
            &compact_config(0.3, 0, i64::MAX),
            now,
            None,
        )
        .unwrap();
        assert_eq!(
            (p.first_dirty, p.end, p.clean_bytes, p.dirty_bytes),
            (200, 300, 2000, 1000)
        );
        // min.compaction.lag.ms: the segment written 100 ms ago stays out.
        let p = plan(&log, None, &compact_config(0.5, 1000, i64::MAX), now, None).unwrap();
        assert_eq!(p.end, 200);
        assert_eq!(
            plan(
                &log,
                Some(200),
                &compact_config(0.0, 1000, i64::MAX),
                now,
                None
            ),
            None
        );
        // max.compaction.lag.ms forces a cleaning the ratio would not start.
        let p = plan(&log, Some(100), &compact_config(0.99, 0, 3000), now, None).unwrap();
        assert!(p.forced && p.dirty_ratio < 0.99);
        // A sealed segment not yet synced ends the range.
        let mut unsynced = log;
        unsynced[1].sealed_and_synced = false;
        assert_eq!(
            plan(
                &unsynced,
                None,
                &compact_config(0.5, 0, i64::MAX),
                now,
                None
            )
            .unwrap()
            .end,
            100
        );
        // An open transaction from offset 150 on: its segment and every
        // later one stay out (it may still abort).
        assert_eq!(
            plan(
                &log,
                None,
                &compact_config(0.5, 0, i64::MAX),
                now,
                Some(150)
            )
            .unwrap()
            .end,
            100
        );
        assert_eq!(
            plan(&log, None, &compact_config(0.5, 0, i64::MAX), now, Some(0)),
            None
        );
        // A checkpoint outside the log counts from the log start; delete
        // topics never plan.
        assert_eq!(
            plan(
                &log,
                Some(9999),
                &compact_config(0.5, 0, i64::MAX),
                now,
                None
            )
            .unwrap()
            .first_dirty,
            0
        );
        assert_eq!(plan(&log, None, &LogConfig::default(), now, None), None);
        assert_eq!(
            plan(
                &log[3..],
                None,
                &compact_config(0.0, 0, i64::MAX),
                now,
                None
            ),
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
            &[],
        )
        .unwrap();
        assert_eq!(cleaned.len(), 2);
        let h = batch::validate(&cleaned[0]).unwrap();
        assert_eq!((h.producer_id, h.record_count, h.base_offset), (7, 0, 0));
        assert_eq!(read(&cleaned).len(), 1);
    }

    /// `plain` moved to `offset` (its records renumbered from there).
    fn placed(plain: Bytes, offset: i64) -> Bytes {
        let mut h = batch::validate(&plain).unwrap();
        h.base_offset = offset;
        let records: Vec<Record> = Records::new(plain)
            .unwrap()
            .map(|r| {
                let mut r = r.unwrap();
                r.offset += offset;
                r
            })
            .collect();
        batch::encode_batch(&h, &records).unwrap()
    }

    fn txn_batch(pid: i64, seq: i32, kvs: &[(&str, &str)], offset: i64) -> Bytes {
        let mut b = BatchBuilder::new(500)
            .idempotent(pid, 0, seq)
            .transactional();
        for (k, v) in kvs {
            b.push(500, Some(k.as_bytes()), Some(v.as_bytes()), &[]);
        }
        placed(b.finish(), offset)
    }

    fn plain_batch(kvs: &[(&str, &str)], offset: i64) -> Bytes {
        let mut b = BatchBuilder::new(500);
        for (k, v) in kvs {
            b.push(500, Some(k.as_bytes()), Some(v.as_bytes()), &[]);
        }
        placed(b.finish(), offset)
    }

    fn marker(pid: i64, m: Marker, offset: i64) -> Bytes {
        placed(batch::control_batch(pid, 0, m, 0, 500), offset)
    }

    /// (offset, key, value) of the data records, and the markers' offsets.
    fn view(log: &[Bytes]) -> (Vec<(i64, String, String)>, Vec<i64>) {
        let (mut data, mut markers) = (Vec::new(), Vec::new());
        for b in log {
            let h = batch::validate(b).unwrap();
            for r in Records::new(b.clone()).unwrap() {
                let r = r.unwrap();
                if h.is_control() {
                    markers.push(r.offset);
                } else {
                    let s =
                        |v: &Option<Bytes>| String::from_utf8(v.clone().unwrap().to_vec()).unwrap();
                    data.push((r.offset, s(&r.key), s(&r.value)));
                }
            }
        }
        (data, markers)
    }

    #[test]
    fn aborted_data_goes_and_markers_outlive_their_data_by_the_delete_retention() {
        // 0 e=v0; 1 pid 11 e=x (aborted at 2); 3-4 pid 12 a,b (committed
        // at 5), superseded at 6-7; 8 pid 11 c (committed at 9); 10 pid 12
        // d (committed at 11).
        let log = vec![
            plain_batch(&[("e", "v0")], 0),
            txn_batch(11, 0, &[("e", "x")], 1),
            marker(11, Marker::Abort, 2),
            txn_batch(12, 0, &[("a", "c3"), ("b", "c4")], 3),
            marker(12, Marker::Commit, 5),
            plain_batch(&[("a", "v6"), ("b", "v7")], 6),
            txn_batch(11, 1, &[("c", "y")], 8),
            marker(11, Marker::Commit, 9),
            txn_batch(12, 2, &[("d", "z")], 10),
            marker(12, Marker::Commit, 11),
        ];
        let aborted = [AbortedTxn {
            producer_id: 11,
            first_offset: 1,
            last_offset: 2,
            last_stable_offset: 3,
        }];
        let c = Cleaning {
            now_ms: 1000,
            delete_retention_ms: 100,
        };
        let kv = |o: i64, k: &str, v: &str| (o, k.to_string(), v.to_string());
        let survivors = vec![
            kv(0, "e", "v0"),
            kv(6, "a", "v6"),
            kv(7, "b", "v7"),
            kv(8, "c", "y"),
            kv(10, "d", "z"),
        ];
        // The aborted e=x neither survives nor supersedes e=v0; every
        // marker stays (each one's data was there when this cleaning began).
        let (once, st) = clean_log(&log, 12, &c, &aborted).unwrap();
        assert_eq!(view(&once), (survivors.clone(), vec![2, 5, 9, 11]));
        assert_eq!((st.aborted_dropped, st.markers_dropped), (1, 0));
        let horizons = |l: &[Bytes]| -> Vec<(i64, Option<i64>)> {
            l.iter()
                .map(|b| batch::validate(b).unwrap())
                .filter(|h| h.is_control())
                .map(|h| (h.base_offset, h.delete_horizon()))
                .collect()
        };
        assert!(horizons(&once).iter().all(|(_, t)| t.is_none()));
        // The next cleaning finds the markers at 2 and 5 without data:
        // they get a horizon, and the abort's index entry serves nobody.
        let mut walk = TxnWalk::new(&aborted);
        let mut keys = KeyMap::default();
        for b in &once {
            let h = batch::validate(b).unwrap();
            map_batch(&mut keys, &mut walk, b, &h, true).unwrap();
        }
        assert_eq!(walk.emptied(), aborted.to_vec());
        let (twice, st) = clean_log(&once, 12, &c, &aborted).unwrap();
        assert_eq!(view(&twice), (survivors.clone(), vec![2, 5, 9, 11]));
        assert_eq!(st.markers_dropped, 0);
        assert_eq!(
            horizons(&twice),
            vec![(2, Some(1100)), (5, Some(1100)), (9, None), (11, None)]
        );
        // Past the horizon they go; markers with data (and each producer's
        // last batch) stay.
        let later = Cleaning { now_ms: 1100, ..c };
        let (thrice, st) = clean_log(&twice, 12, &later, &aborted).unwrap();
        assert_eq!(view(&thrice), (survivors, vec![9, 11]));
        assert_eq!(st.markers_dropped, 2);
        // A blind walk judges no marker empty.
        let mut blind = TxnWalk::new(&aborted);
        blind.blind();
        let h = batch::validate(&once[1]).unwrap();
        assert!(!blind.on_marker(&h, Some(Marker::Abort)));
        assert!(blind.emptied().is_empty());
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
