//! Idempotent produce: per partition, what each producer id appended last,
//! and the producer ids a shard hands out (Kafka's InitProducerId).
//!
//! Owns: the sequence rules of Kafka's idempotent producer for one
//! partition (`ProducerStates`: duplicate, in sequence, gap, stale or newer
//! epoch), the window of the last `DEDUPE_WINDOW` batches per producer that
//! a retry is recognised in, its rebuild from batch headers read back from
//! the log, and the layout of producer ids (`ProducerIds`).
//!
//! Must never: do I/O, read a clock (times are arguments), or decode
//! records: everything here comes from the 61-byte batch header
//! (`batch::BatchHeader`). Depends on `batch` only.

use std::collections::{BTreeSet, HashMap, VecDeque};

use thiserror::Error;

use crate::batch::BatchHeader;

/// Batches per producer and partition a retry is recognised in (Kafka's
/// `max.in.flight.requests.per.connection` limit for idempotence is 5, so a
/// retry is always one of the last 5).
pub const DEDUPE_WINDOW: usize = 5;

/// Producer ids one partition tracks; past it the one that appended least
/// recently is forgotten (a later batch of it is accepted as from an
/// unknown producer). Bounds memory per partition: about 300 bytes each.
pub const MAX_PRODUCERS_PER_PARTITION: usize = 10_000;

/// Attributes bit 4: part of a transaction; bit 5: a control batch.
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Where one idempotent batch landed: its sequence range and offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    epoch: i16,
    /// The max timestamp of the last batch appended (DescribeProducers).
    last_timestamp: i64,
    /// Oldest first; 1..=DEDUPE_WINDOW entries.
    batches: VecDeque<BatchMeta>,
}

/// What DescribeProducers reports of one producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// The first offset of its open transaction here; -1: none.
    pub txn_start_offset: i64,
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// No producer id (-1): not idempotent, nothing to check.
    Plain,
    /// In sequence (or from a producer this partition does not know): append.
    Append,
    /// A retry of a batch already in the log: answer with its offsets.
    Duplicate(BatchMeta),
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SequenceError {
    #[error("producer {producer_id}: sequence {got} out of order, expected {expected}")]
    OutOfOrder {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id}: epoch {got} is older than the current epoch {current}")]
    StaleEpoch {
        producer_id: i64,
        current: i16,
        got: i16,
    },
    #[error("producer {producer_id}: a new epoch {epoch} must start at sequence 0, not {got}")]
    NewEpochNotAtZero {
        producer_id: i64,
        epoch: i16,
        got: i32,
    },
    #[error("transactions are not supported: {0}")]
    Transactional(&'static str),
    #[error("invalid idempotent batch: {0}")]
    Invalid(&'static str),
}

/// The sequence of the last record of a batch (sequences wrap to 0 after
/// `i32::MAX`, as in Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn last_sequence(base_sequence: i32, record_count: i32) -> i32 {
    let span = i64::from(record_count.max(1)) - 1;
    ((i64::from(base_sequence) + span) % (1i64 << 31)) as i32
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// Refuses headers a producer cannot have sent: control batches (only the
/// broker writes transaction markers), a transactional batch without a
/// producer id, a producer id without an epoch or sequence.
pub fn check_header(h: &BatchHeader) -> Result<(), SequenceError> {
    if h.attributes & CONTROL_BIT != 0 {
        return Err(SequenceError::Transactional(
            "a control batch (only the broker writes transaction markers)",
        ));
    }
    if h.attributes & TRANSACTIONAL_BIT != 0 && h.producer_id < 0 {
        return Err(SequenceError::Invalid(
            "a transactional batch needs a producer id",
        ));
    }
    if h.producer_id >= 0 && (h.producer_epoch < 0 || h.base_sequence < 0) {
        return Err(SequenceError::Invalid(
            "a batch with a producer id needs an epoch and a base sequence >= 0",
        ));
    }
    Ok(())
}

/// The idempotence state of one partition. Single-threaded: the owner
/// shard checks and records in the same synchronous step as the append.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, Entry>,
    /// Producers with a transaction open on this partition: the
    /// coordinator opened it (AddPartitionsToTxn) or the log shows its
    /// batches without a marker after them.
    open: HashMap<i64, OpenTxn>,
    /// The open transactions that wrote here, by first offset: the first
    /// is where the last stable offset stops.
    unstable: BTreeSet<(i64, i64)>,
}

/// A transaction open on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenTxn {
    epoch: i16,
    /// Offset of its first batch here; None until it writes.
    first_offset: Option<i64>,
}

/// A transaction a marker ended on this partition, with data here: what an
/// abort adds to the aborted-transactions index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Every producer tracked, by id.
    pub fn summaries(&self) -> Vec<ProducerSummary> {
        let mut out: Vec<ProducerSummary> = self
            .producers
            .iter()
            .map(|(&producer_id, e)| ProducerSummary {
                producer_id,
                epoch: e.epoch,
                last_sequence: e.batches.back().expect("an entry holds a batch").last_seq,
                last_timestamp: e.last_timestamp,
                txn_start_offset: self.txn_start(producer_id).unwrap_or(-1),
            })
            .collect();
        out.sort_unstable_by_key(|s| s.producer_id);
        out
    }

    /// Judges a batch (already validated: CRC, `check_header`) against the
    /// state; changes nothing.
    pub fn check(&self, h: &BatchHeader) -> Result<Check, SequenceError> {
        if h.producer_id < 0 {
            return Ok(Check::Plain);
        }
        // A fenced epoch first, as Kafka checks it: a late batch of a
        // transaction that a marker at a newer epoch ended (transaction
        // version 2 bumps it at every end) is INVALID_PRODUCER_EPOCH, the
        // same answer the coordinator gives it.
        // One lookup: this runs for every idempotent batch.
        let entry = self.producers.get(&h.producer_id);
        if let Some(e) = entry {
            if h.producer_epoch < e.epoch {
                return Err(SequenceError::StaleEpoch {
                    producer_id: h.producer_id,
                    current: e.epoch,
                    got: h.producer_epoch,
                });
            }
        }
        let open = self.open.get(&h.producer_id);
        if h.attributes & TRANSACTIONAL_BIT != 0 {
            // KIP-890's verification: only a transaction the coordinator
            // opened here may write, so a late batch of an ended one never
            // leaves a transaction hanging.
            if open.is_none_or(|o| o.epoch != h.producer_epoch) {
                return Err(SequenceError::Transactional(
                    "no open transaction of this producer and epoch on this partition (AddPartitionsToTxn first)",
                ));
            }
        } else if open.is_some_and(|o| o.first_offset.is_some()) {
            return Err(SequenceError::Transactional(
                "a non-transactional batch inside the producer's open transaction",
            ));
        }
        let Some(e) = entry else {
            // Unknown producer (new, expired from the window, or older than
            // what a restart rebuilt): accepted and tracked from here.
            return Ok(Check::Append);
        };
        let first = h.base_sequence;
        if h.producer_epoch > e.epoch {
            if first != 0 {
                return Err(SequenceError::NewEpochNotAtZero {
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                    got: first,
                });
            }
            return Ok(Check::Append);
        }
        let last = last_sequence(first, h.record_count);
        if let Some(m) = e
            .batches
            .iter()
            .find(|m| m.first_seq == first && m.last_seq == last)
        {
            return Ok(Check::Duplicate(*m));
        }
        let newest = e.batches.back().expect("an entry holds a batch");
        let expected = next_sequence(newest.last_seq);
        if first != expected {
            return Err(SequenceError::OutOfOrder {
                producer_id: h.producer_id,
                expected,
                got: first,
            });
        }
        Ok(Check::Append)
    }

    /// Records an appended batch at `base_offset` (after `check` said
    /// `Append`, and when rebuilding from the log, in log order: there a
    /// transactional batch opens its transaction and a marker ends it).
    pub fn record(&mut self, h: &BatchHeader, base_offset: i64) {
        if h.producer_id < 0 {
            return;
        }
        if h.attributes & CONTROL_BIT != 0 {
            let _ = self.end_txn(h.producer_id, h.producer_epoch, base_offset);
            return;
        }
        if h.attributes & TRANSACTIONAL_BIT != 0 {
            let o = self.open.entry(h.producer_id).or_insert(OpenTxn {
                epoch: h.producer_epoch,
                first_offset: None,
            });
            if o.first_offset.is_none() {
                o.first_offset = Some(base_offset);
                self.unstable.insert((base_offset, h.producer_id));
            }
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: last_sequence(h.base_sequence, h.record_count),
            base_offset,
            last_offset: base_offset + i64::from(h.last_offset_delta),
        };
        if !self.producers.contains_key(&h.producer_id)
            && self.producers.len() >= MAX_PRODUCERS_PER_PARTITION
        {
            self.evict_least_recent();
        }
        let e = self.producers.entry(h.producer_id).or_insert(Entry {
            epoch: h.producer_epoch,
            last_timestamp: h.max_timestamp,
            batches: VecDeque::with_capacity(DEDUPE_WINDOW),
        });
        if h.producer_epoch < e.epoch {
            // Only reachable on rebuild from a log written by something
            // else: the newer epoch's state stands.
            return;
        }
        if h.producer_epoch > e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        if e.batches.len() == DEDUPE_WINDOW {
            e.batches.pop_front();
        }
        e.batches.push_back(meta);
        e.last_timestamp = h.max_timestamp;
        debug_assert!(e.batches.len() <= DEDUPE_WINDOW);
    }

    /// Rebuilds from batch headers as read from the log (in log order, base
    /// offsets as stored): what `Partition::open` does, one header at a time.
    #[cfg(test)]
    pub fn rebuild<'a>(headers: impl IntoIterator<Item = &'a BatchHeader>) -> ProducerStates {
        let mut s = ProducerStates::default();
        for h in headers {
            s.record(h, h.base_offset);
        }
        s
    }

    /// The coordinator opened a transaction of `producer_id` at `epoch` on
    /// this partition (AddPartitionsToTxn): its transactional batches are
    /// taken from now on. Again for the same transaction: nothing changes.
    pub fn open_txn(&mut self, producer_id: i64, epoch: i16) {
        let o = self.open.entry(producer_id).or_insert(OpenTxn {
            epoch,
            first_offset: None,
        });
        if o.first_offset.is_none() {
            o.epoch = epoch;
        }
    }

    /// A marker of `producer_id` at `epoch` was appended at `offset`: its
    /// transaction here ends; the producer's epoch is at least the
    /// marker's from now on (a fencing abort bumps it). The ended
    /// transaction, when it wrote here.
    pub fn end_txn(&mut self, producer_id: i64, epoch: i16, offset: i64) -> Option<EndedTxn> {
        if let Some(e) = self.producers.get_mut(&producer_id) {
            if epoch > e.epoch {
                e.epoch = epoch;
                // The next batch at a newer epoch starts at sequence 0;
                // nothing of the old epoch is a retry any more.
                let last = *e.batches.back().expect("an entry holds a batch");
                e.batches.clear();
                e.batches.push_back(BatchMeta {
                    first_seq: -1,
                    last_seq: -1,
                    ..last
                });
            }
        }
        let o = self.open.remove(&producer_id)?;
        let first_offset = o.first_offset?;
        let removed = self.unstable.remove(&(first_offset, producer_id));
        debug_assert!(removed, "an open transaction that wrote is unstable");
        Some(EndedTxn {
            producer_id,
            first_offset,
            last_offset: offset,
        })
    }

    /// Where the last stable offset stops: the first offset of the oldest
    /// open transaction that wrote here; None: nothing is open.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.unstable.first().map(|&(offset, _)| offset)
    }

    /// The open transactions that wrote here: (producer id, epoch, first
    /// offset), by producer id (what `storage::txnopen` records).
    pub fn open_txns(&self) -> Vec<(i64, i16, i64)> {
        let mut v: Vec<(i64, i16, i64)> = self
            .open
            .iter()
            .filter_map(|(&pid, o)| o.first_offset.map(|f| (pid, o.epoch, f)))
            .collect();
        v.sort_unstable();
        v
    }

    /// At open, before the log's tail is replayed from an offset at or
    /// below the record's: a transaction the record says was open, from
    /// `first_offset` on. The replay ends it if a marker follows; a later
    /// batch of it changes nothing.
    pub fn seed_open(&mut self, producer_id: i64, epoch: i16, first_offset: i64) {
        if self.open.contains_key(&producer_id) {
            return;
        }
        self.open.insert(
            producer_id,
            OpenTxn {
                epoch,
                first_offset: Some(first_offset),
            },
        );
        self.unstable.insert((first_offset, producer_id));
    }

    /// The first offset of `producer_id`'s open transaction here.
    pub fn txn_start(&self, producer_id: i64) -> Option<i64> {
        self.open.get(&producer_id).and_then(|o| o.first_offset)
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(_, e)| e.batches.back().map_or(i64::MIN, |m| m.last_offset))
            .map(|(&id, _)| id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }
}

/// Low bits of a producer id that hold the shard id.
pub const SHARD_BITS: u32 = 10;
/// Ids one shard can hand out per millisecond before it runs ahead of the
/// clock (it then borrows from the next milliseconds).
pub const IDS_PER_MS_BITS: u32 = 10;
/// Milliseconds since the Unix epoch of 2024-01-01T00:00:00Z: ids count
/// from there, so 43 bits of time last until about the year 2300.
pub const ID_EPOCH_MS: i64 = 1_704_067_200_000;

/// Hands out producer ids on one shard: `(time_ms - ID_EPOCH_MS) << 20 |
/// counter << 10 | shard`. Never the same id twice on one shard while it
/// runs (it only grows); never the same id on two shards (the shard is in
/// the low bits); across a restart distinct as long as the wall clock did
/// not step back by more than the time the broker was down.
#[derive(Debug, Clone)]
pub struct ProducerIds {
    shard: u16,
    /// Time-and-counter part of the last id handed out.
    last: i64,
}

impl ProducerIds {
    pub fn new(shard: u16) -> ProducerIds {
        assert!(u32::from(shard) < 1 << SHARD_BITS, "shard id fits its bits");
        ProducerIds { shard, last: -1 }
    }

    /// The next id at wall-clock `now_ms`.
    pub fn next(&mut self, now_ms: i64) -> i64 {
        let from_clock = (now_ms - ID_EPOCH_MS).max(0) << IDS_PER_MS_BITS;
        self.last = from_clock.max(self.last + 1);
        let id = (self.last << SHARD_BITS) | i64::from(self.shard);
        assert!(id >= 0, "producer ids are non-negative");
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    /// Checks and, when it says Append, records at `*next` (as the
    /// partition does); returns the check.
    fn produce(
        s: &mut ProducerStates,
        b: &BatchHeader,
        next: &mut i64,
    ) -> Result<Check, SequenceError> {
        let c = s.check(b)?;
        if c == Check::Append {
            s.record(b, *next);
            *next += i64::from(b.record_count);
        }
        Ok(c)
    }

    #[test]
    fn retry_of_an_appended_batch_is_a_duplicate_with_its_offsets() {
        let mut s = ProducerStates::default();
        let mut next = 100;
        assert_eq!(
            produce(&mut s, &h(7, 0, 0, 3), &mut next),
            Ok(Check::Append)
        );
        assert_eq!(
            produce(&mut s, &h(7, 0, 3, 2), &mut next),
            Ok(Check::Append)
        );
        let dup = produce(&mut s, &h(7, 0, 0, 3), &mut next).unwrap();
        assert_eq!(
            dup,
            Check::Duplicate(BatchMeta {
                first_seq: 0,
                last_seq: 2,
                base_offset: 100,
                last_offset: 102
            })
        );
        assert_eq!(next, 105, "a duplicate takes no offsets");
        // Same first sequence, other length: not the same batch.
        assert!(matches!(
            s.check(&h(7, 0, 0, 2)),
            Err(SequenceError::OutOfOrder { expected: 5, .. })
        ));
    }

    #[test]
    fn summaries_report_each_producers_last_batch() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        let mut b = h(9, 0, 0, 3);
        b.max_timestamp = 1_000;
        produce(&mut s, &b, &mut next).unwrap();
        let mut b = h(4, 2, 0, 1);
        b.max_timestamp = 2_000;
        produce(&mut s, &b, &mut next).unwrap();
        let mut b = h(9, 0, 3, 2);
        b.max_timestamp = 3_000;
        produce(&mut s, &b, &mut next).unwrap();
        produce(&mut s, &h(-1, -1, -1, 5), &mut next).unwrap();
        assert_eq!(
            s.summaries(),
            vec![
                ProducerSummary {
                    producer_id: 4,
                    epoch: 2,
                    last_sequence: 0,
                    last_timestamp: 2_000,
                    txn_start_offset: -1
                },
                ProducerSummary {
                    producer_id: 9,
                    epoch: 0,
                    last_sequence: 4,
                    last_timestamp: 3_000,
                    txn_start_offset: -1
                },
            ]
        );
    }

    #[test]
    fn a_gap_is_out_of_order_and_changes_nothing() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        produce(&mut s, &h(1, 0, 0, 1), &mut next).unwrap();
        let before = s.clone();
        assert_eq!(
            s.check(&h(1, 0, 2, 1)),
            Err(SequenceError::OutOfOrder {
                producer_id: 1,
                expected: 1,
                got: 2
            })
        );
        assert_eq!(s, before);
        assert_eq!(
            produce(&mut s, &h(1, 0, 1, 1), &mut next),
            Ok(Check::Append)
        );
    }

    #[test]
    fn newer_epoch_must_restart_at_zero_and_fences_the_old_one() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        produce(&mut s, &h(1, 0, 0, 5), &mut next).unwrap();
        assert!(matches!(
            s.check(&h(1, 1, 5, 1)),
            Err(SequenceError::NewEpochNotAtZero { got: 5, .. })
        ));
        assert_eq!(
            produce(&mut s, &h(1, 1, 0, 1), &mut next),
            Ok(Check::Append)
        );
        assert_eq!(
            s.check(&h(1, 0, 5, 1)),
            Err(SequenceError::StaleEpoch {
                producer_id: 1,
                current: 1,
                got: 0
            })
        );
        // The old epoch's batches are no longer duplicates of anything.
        assert!(s.check(&h(1, 1, 0, 1)).unwrap() != Check::Append);
        assert!(matches!(
            s.check(&h(1, 1, 0, 5)),
            Err(SequenceError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_recognised() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        for seq in 0..7 {
            produce(&mut s, &h(9, 0, seq, 1), &mut next).unwrap();
        }
        for seq in 2..7 {
            assert!(
                matches!(s.check(&h(9, 0, seq, 1)), Ok(Check::Duplicate(m)) if m.base_offset == i64::from(seq)),
                "seq {seq}"
            );
        }
        for seq in 0..2 {
            assert!(matches!(
                s.check(&h(9, 0, seq, 1)),
                Err(SequenceError::OutOfOrder { expected: 7, .. })
            ));
        }
    }

    #[test]
    fn unknown_producers_start_anywhere_and_plain_batches_pass() {
        let s = ProducerStates::default();
        assert_eq!(s.check(&h(3, 4, 1234, 1)), Ok(Check::Append));
        assert_eq!(s.check(&h(-1, -1, -1, 1)), Ok(Check::Plain));
    }

    #[test]
    fn sequences_wrap_after_i32_max() {
        assert_eq!(last_sequence(i32::MAX - 1, 4), 1);
        let mut s = ProducerStates::default();
        let mut next = 0;
        produce(&mut s, &h(1, 0, i32::MAX - 1, 2), &mut next).unwrap();
        assert_eq!(
            produce(&mut s, &h(1, 0, 0, 1), &mut next),
            Ok(Check::Append)
        );
    }

    #[test]
    fn rebuild_from_log_headers_recognises_retries() {
        let mut log = Vec::new();
        let mut offset = 0;
        for (pid, seq, n) in [(1, 0, 2), (2, 0, 1), (1, 2, 3), (-1, -1, 4), (2, 1, 1)] {
            let mut b = h(pid, 0, seq, n);
            b.base_offset = offset;
            offset += i64::from(n);
            log.push(b);
        }
        let s = ProducerStates::rebuild(&log);
        assert_eq!(s.len(), 2);
        assert!(
            matches!(s.check(&h(1, 0, 2, 3)), Ok(Check::Duplicate(m)) if m.base_offset == 3 && m.last_offset == 5)
        );
        assert!(matches!(s.check(&h(2, 0, 1, 1)), Ok(Check::Duplicate(m)) if m.base_offset == 10));
        assert_eq!(s.check(&h(1, 0, 5, 1)), Ok(Check::Append));
    }

    #[test]
    fn control_batches_and_bad_headers_are_refused() {
        let mut b = h(1, 0, 0, 1);
        assert_eq!(check_header(&b), Ok(()));
        b.attributes = TRANSACTIONAL_BIT;
        assert_eq!(check_header(&b), Ok(()), "judged against open transactions");
        b.attributes = CONTROL_BIT | TRANSACTIONAL_BIT;
        assert!(matches!(
            check_header(&b),
            Err(SequenceError::Transactional(_))
        ));
        let mut anonymous = h(-1, -1, -1, 1);
        anonymous.attributes = TRANSACTIONAL_BIT;
        assert!(matches!(
            check_header(&anonymous),
            Err(SequenceError::Invalid(_))
        ));
        assert!(matches!(
            check_header(&h(1, 0, -1, 1)),
            Err(SequenceError::Invalid(_))
        ));
        assert_eq!(check_header(&h(-1, -1, -1, 1)), Ok(()));
    }

    fn txn(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        let mut b = h(pid, epoch, seq, records);
        b.attributes = TRANSACTIONAL_BIT;
        b
    }

    fn marker(pid: i64, epoch: i16) -> BatchHeader {
        let mut b = h(pid, epoch, -1, 1);
        b.attributes = TRANSACTIONAL_BIT | CONTROL_BIT;
        b
    }

    #[test]
    fn only_an_opened_transaction_writes_and_the_oldest_open_one_holds_the_stable_offset() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        // Not opened by the coordinator: refused (KIP-890 verification).
        assert!(matches!(
            s.check(&txn(7, 0, 0, 2)),
            Err(SequenceError::Transactional(_))
        ));
        s.open_txn(7, 0);
        s.open_txn(8, 3);
        assert_eq!(s.first_unstable_offset(), None, "nothing written yet");
        // Another epoch than the one opened: refused.
        assert!(s.check(&txn(7, 1, 0, 1)).is_err());
        produce(&mut s, &h(1, 0, 0, 1), &mut next).unwrap(); // plain idempotent, offset 0
        produce(&mut s, &txn(7, 0, 0, 2), &mut next).unwrap(); // 1..=2
        produce(&mut s, &txn(8, 3, 0, 1), &mut next).unwrap(); // 3
        produce(&mut s, &txn(7, 0, 2, 1), &mut next).unwrap(); // 4
        assert_eq!(s.first_unstable_offset(), Some(1));
        assert_eq!(s.txn_start(8), Some(3));
        // Inside its open transaction a producer cannot write plainly.
        assert!(s.check(&h(7, 0, 3, 1)).is_err());
        // 7 aborts (marker at 5): the range it wrote ends there.
        assert_eq!(
            s.end_txn(7, 0, 5),
            Some(EndedTxn {
                producer_id: 7,
                first_offset: 1,
                last_offset: 5
            })
        );
        assert_eq!(s.first_unstable_offset(), Some(3));
        // Its next batch needs a new transaction; sequences go on (same
        // epoch).
        assert!(s.check(&txn(7, 0, 3, 1)).is_err());
        s.open_txn(7, 0);
        assert_eq!(s.check(&txn(7, 0, 3, 1)), Ok(Check::Append));
        // A transaction that wrote nothing here ends without a range.
        s.end_txn(7, 0, 6);
        assert_eq!(s.end_txn(8, 3, 7).map(|e| e.first_offset), Some(3));
        assert_eq!(s.first_unstable_offset(), None);
        assert_eq!(s.end_txn(8, 3, 8), None, "a repeated marker");
    }

    #[test]
    fn a_fencing_marker_bumps_the_epoch_and_fences_the_zombie() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        s.open_txn(7, 0);
        produce(&mut s, &txn(7, 0, 0, 1), &mut next).unwrap();
        // The coordinator aborted with epoch 1 (InitProducerId or timeout).
        assert!(s.end_txn(7, 1, 1).is_some());
        // Nothing is open now: a late batch at the ended epoch is a fenced
        // epoch (what transaction version 2's bumped markers promise), not
        // a missing transaction.
        assert!(matches!(
            s.check(&txn(7, 0, 1, 1)),
            Err(SequenceError::StaleEpoch { current: 1, .. })
        ));
        s.open_txn(7, 0);
        assert!(matches!(
            s.check(&txn(7, 0, 1, 1)),
            Err(SequenceError::StaleEpoch { current: 1, .. })
        ));
        // The new producer (epoch 2) starts at sequence 0.
        s.open_txn(7, 2);
        assert!(s.check(&txn(7, 2, 5, 1)).is_err());
        assert_eq!(s.check(&txn(7, 2, 0, 1)), Ok(Check::Append));
    }

    #[test]
    fn rebuild_from_the_log_reopens_unfinished_transactions() {
        let mut a = txn(7, 0, 0, 2);
        a.base_offset = 10;
        let mut b = txn(8, 0, 0, 1);
        b.base_offset = 12;
        let mut m = marker(7, 0);
        m.base_offset = 13;
        let s = ProducerStates::rebuild([&a, &b, &m]);
        assert_eq!(s.first_unstable_offset(), Some(12), "8 is still open");
        assert_eq!(s.txn_start(7), None);
        assert_eq!(s.check(&txn(8, 0, 1, 1)), Ok(Check::Append));
    }

    #[test]
    fn a_record_of_open_transactions_seeds_what_the_replayed_tail_cannot_show() {
        // Recorded open at offset 20: 7 from 3, 8 from 15, 9 from 18. The
        // replay starts at 16: 8's batch at 16, 7's marker at 17, then 7
        // again (a new transaction) from 19.
        let at = |mut b: BatchHeader, o: i64| {
            b.base_offset = o;
            b
        };
        let tail = [
            at(txn(8, 0, 3, 1), 16),
            at(marker(7, 0), 17),
            at(txn(9, 1, 0, 1), 18),
            at(txn(7, 0, 5, 1), 19),
        ];
        let mut s = ProducerStates::default();
        for (pid, epoch, first) in [(7, 0, 3), (8, 0, 15), (9, 1, 18)] {
            s.seed_open(pid, epoch, first);
        }
        for b in &tail {
            s.record(b, b.base_offset);
        }
        // 7's old transaction ended at 17 and its new one starts at 19;
        // 8 and 9 keep the first offsets the record gave.
        assert_eq!(s.open_txns(), vec![(7, 0, 19), (8, 0, 15), (9, 1, 18)]);
        assert_eq!(s.first_unstable_offset(), Some(15));
        // Without the record the tail alone starts 8 too late.
        let alone = ProducerStates::rebuild(tail.iter());
        assert_eq!(alone.txn_start(8), Some(16));
    }

    #[test]
    fn producers_past_the_limit_forget_the_least_recent() {
        let mut s = ProducerStates::default();
        let mut next = 0;
        for pid in 0..=MAX_PRODUCERS_PER_PARTITION as i64 {
            produce(&mut s, &h(pid, 0, 0, 1), &mut next).unwrap();
        }
        assert_eq!(s.len(), MAX_PRODUCERS_PER_PARTITION);
        // Producer 0 appended first: forgotten, so its retry is appended.
        assert_eq!(s.check(&h(0, 0, 0, 1)), Ok(Check::Append));
        assert!(matches!(s.check(&h(1, 0, 0, 1)), Ok(Check::Duplicate(_))));
    }

    #[test]
    fn producer_ids_grow_and_differ_per_shard() {
        let now = ID_EPOCH_MS + 1_000;
        let mut a = ProducerIds::new(0);
        let mut b = ProducerIds::new(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3000 {
            // Same millisecond: the counter, then the next milliseconds.
            assert!(seen.insert(a.next(now)));
            assert!(seen.insert(b.next(now)));
        }
        let x = a.next(now);
        assert!(a.next(now - 10) > x, "a clock step back does not repeat");
        assert_eq!(b.next(now) & ((1 << SHARD_BITS) - 1), 3);
        // A restart later in time starts above everything handed out
        // before, as long as the shard handed out < 1024 ids per ms.
        let mut restarted = ProducerIds::new(0);
        assert!(restarted.next(now + 10) > x);
    }
}
