//! The transaction coordinator's state machine: every transactional id one
//! shard coordinates, as Kafka's `TransactionCoordinator` and
//! `TransactionMetadata` define its transitions: transaction version 1
//! (KIP-98, KIP-360's epoch bumps for recovery, KIP-447's offsets
//! partitions) and version 2 (KIP-890 part 2: partitions join implicitly,
//! and every EndTxn bumps the epoch, so that a late write of an ended
//! transaction is fenced instead of opening a hanging one).
//!
//! Owns: the table of transactional ids, each a `TxnMeta` plus at most one
//! transition in flight; what each request may do in each state and the
//! error it gets otherwise; the epoch and producer id rules (bump, retry,
//! fence, rotate when the epoch is exhausted); which transactions the
//! timeout aborts and which ids expire.
//!
//! Must never: change a `TxnMeta` except through `apply` (the caller makes
//! the transition durable first: a transition not written is never seen),
//! start a second transition of one id while one is in flight (the caller
//! gets CONCURRENT_TRANSACTIONS and retries), or read a clock.
//!
//! How a caller drives it: a request method returns a `TxnStep`; for
//! `Write(meta)` the caller appends `meta` to the log, then `apply`s it (or
//! `cancel`s on a failed write) and answers; for a meta in PrepareCommit or
//! PrepareAbort it then writes the markers to every partition and calls
//! `complete`, whose CompleteCommit/CompleteAbort meta it writes and
//! applies the same way.

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::group::TopicPartition;

pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Kafka's `transaction.max.timeout.ms` default: 15 minutes.
pub const DEFAULT_MAX_TIMEOUT_MS: i32 = 900_000;
/// Kafka's `transactional.id.expiration.ms` default: 7 days.
pub const DEFAULT_ID_EXPIRATION_MS: i64 = 7 * 24 * 3600 * 1000;

/// Kafka's transaction states, with the ids its log uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn from_id(id: u8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| *s as u8 == id)
    }

    /// No transaction is open or finishing: a new one may begin.
    fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Commit,
    Abort,
}

/// One transactional id's state, as its log record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    /// The producer id before the last rotation (KIP-360: a retry of the
    /// call that rotated it is recognised); -1: none.
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump by InitProducerId (a retry of that
    /// call gets the same epoch back); -1: none.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions written in the open transaction (offsets partitions
    /// of groups included, KIP-447), in order.
    pub partitions: BTreeSet<TopicPartition>,
    /// Wall-clock ms the open transaction began; -1: none.
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// The producer id a Prepare state of version 2 rotates to when it
    /// completes (its bumped epoch was the last one: Kafka's
    /// nextProducerId, durable so a restart keeps what EndTxn answered);
    /// -1: none.
    pub next_producer_id: i64,
    /// Kafka's ClientTransactionVersion of the last transaction (0 in a
    /// record from before it was kept; 1 or 2).
    pub txn_version: u8,
}

impl TxnMeta {
    /// The producer id and epoch the client goes on with once this
    /// transition completes (what EndTxn v5 answers).
    pub fn next_producer(&self) -> (i64, i16) {
        if self.next_producer_id >= 0 {
            (self.next_producer_id, 0)
        } else {
            (self.producer_id, self.producer_epoch)
        }
    }

    /// The epoch can go no higher: the next InitProducerId rotates the id.
    pub fn epoch_exhausted(&self) -> bool {
        epoch_exhausted(self.producer_epoch)
    }
}

fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// What a request asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnStep {
    /// Nothing to write: answer success now (a retry of something done).
    Done,
    /// Append this meta to the log, `apply` it, then answer (a Prepare
    /// state: write the markers next, then `complete`).
    Write(TxnMeta),
    /// InitProducerId found a transaction open: write this PrepareAbort
    /// (the epoch bumped, fencing the old producer), answer
    /// CONCURRENT_TRANSACTIONS (the client retries and gets its epoch once
    /// the abort completed), and finish the abort as for `Write`.
    FenceAndAbort(TxnMeta),
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxnError {
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("transaction timeout {got} ms is not in 1..={max} ms")]
    InvalidTimeout { got: i32, max: i32 },
    #[error("another change of transactional id '{0}' is in progress: retry")]
    Concurrent(String),
    #[error("producer {producer_id} epoch {got} is fenced by epoch {current}")]
    Fenced {
        producer_id: i64,
        got: i16,
        current: i16,
    },
    #[error("transactional id '{id}' belongs to producer {current}, not {got}")]
    ProducerIdMapping { id: String, current: i64, got: i64 },
    #[error("transactional id '{id}' is {state:?}: cannot {wanted:?}")]
    InvalidState {
        id: String,
        state: TxnState,
        wanted: Outcome,
    },
    #[error("transactional id '{0}' not found")]
    NotFound(String),
}

impl TxnError {
    /// Stable name for the wire layer.
    pub fn code(&self) -> &'static str {
        match self {
            TxnError::InvalidRequest(_) => "InvalidRequest",
            TxnError::InvalidTimeout { .. } => "InvalidTransactionTimeout",
            TxnError::Concurrent(_) => "ConcurrentTransactions",
            TxnError::Fenced { .. } => "ProducerFenced",
            TxnError::ProducerIdMapping { .. } => "InvalidProducerIdMapping",
            TxnError::InvalidState { .. } => "InvalidTxnState",
            TxnError::NotFound(_) => "TransactionalIdNotFound",
        }
    }
}

struct Entry {
    meta: TxnMeta,
    /// A transition handed out and not yet applied or cancelled.
    pending: bool,
}

/// One row of ListTransactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

/// Every transactional id one shard coordinates.
pub struct TxnCoordinator {
    txns: BTreeMap<String, Entry>,
    max_timeout_ms: i32,
}

impl TxnCoordinator {
    pub fn new(max_timeout_ms: i32) -> TxnCoordinator {
        assert!(max_timeout_ms > 0, "a positive maximum timeout");
        TxnCoordinator {
            txns: BTreeMap::new(),
            max_timeout_ms,
        }
    }

    pub fn len(&self) -> usize {
        self.txns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txns.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&TxnMeta> {
        self.txns.get(id).map(|e| &e.meta)
    }

    /// Starts a transition of `id` (none may be in flight).
    fn begin(&mut self, id: &str, meta: TxnMeta) -> TxnMeta {
        let e = self.txns.get_mut(id).expect("a known id");
        debug_assert!(!e.pending, "one transition at a time");
        e.pending = true;
        meta
    }

    fn entry(&self, id: &str) -> Result<&Entry, TxnError> {
        let e = self
            .txns
            .get(id)
            .ok_or_else(|| TxnError::ProducerIdMapping {
                id: id.to_string(),
                current: NO_PRODUCER_ID,
                got: NO_PRODUCER_ID,
            })?;
        if e.pending {
            return Err(TxnError::Concurrent(id.to_string()));
        }
        Ok(e)
    }

    /// The producer of a request must be the current one at its epoch.
    fn check_producer(id: &str, m: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
        if m.producer_id != producer_id {
            return Err(TxnError::ProducerIdMapping {
                id: id.to_string(),
                current: m.producer_id,
                got: producer_id,
            });
        }
        if m.producer_epoch != epoch {
            return Err(TxnError::Fenced {
                producer_id,
                got: epoch,
                current: m.producer_epoch,
            });
        }
        Ok(())
    }

    /// InitProducerId with a transactional id. `expected`: the producer id
    /// and epoch the client has (KIP-360, after an abortable error); `new_id`
    /// hands out a fresh producer id when one is needed.
    pub fn init_producer_id(
        &mut self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
        new_id: &mut dyn FnMut() -> i64,
    ) -> Result<TxnStep, TxnError> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest("an empty transactional id"));
        }
        if timeout_ms <= 0 || timeout_ms > self.max_timeout_ms {
            return Err(TxnError::InvalidTimeout {
                got: timeout_ms,
                max: self.max_timeout_ms,
            });
        }
        if !self.txns.contains_key(id) {
            self.txns.insert(
                id.to_string(),
                Entry {
                    meta: TxnMeta {
                        producer_id: new_id(),
                        last_producer_id: NO_PRODUCER_ID,
                        producer_epoch: NO_PRODUCER_EPOCH,
                        last_producer_epoch: NO_PRODUCER_EPOCH,
                        timeout_ms,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        start_ms: -1,
                        last_update_ms: now_ms,
                        next_producer_id: NO_PRODUCER_ID,
                        txn_version: 0,
                    },
                    pending: false,
                },
            );
        }
        let m = self.entry(id)?.meta.clone();
        if let Some((pid, epoch)) = expected {
            // Kafka's isValidProducerId: a new id (no epoch yet), the
            // current id, or the previous one whose epoch ran out (a retry
            // of the call that rotated it).
            let valid = m.producer_epoch == NO_PRODUCER_EPOCH
                || pid == m.producer_id
                || (pid == m.last_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(TxnError::Fenced {
                    producer_id: pid,
                    got: epoch,
                    current: m.producer_epoch,
                });
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::Concurrent(id.to_string()))
            }
            TxnState::Ongoing => {
                // Abort what the old producer left open, with the epoch
                // bumped so it is fenced; the client retries and then gets
                // an epoch past this one.
                let fenced = fence_abort(&m, now_ms);
                Ok(TxnStep::FenceAndAbort(self.begin(id, fenced)))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut next = TxnMeta {
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    start_ms: -1,
                    last_update_ms: now_ms,
                    ..m.clone()
                };
                if m.epoch_exhausted() && expected.is_none_or(|(_, e)| e == m.producer_epoch) {
                    next.last_producer_id = m.producer_id;
                    next.producer_id = new_id();
                    next.producer_epoch = 0;
                    next.last_producer_epoch = if expected.is_some() {
                        m.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                } else {
                    match expected {
                        None => {
                            next.producer_epoch = m.producer_epoch + 1;
                            next.last_producer_epoch = NO_PRODUCER_EPOCH;
                        }
                        Some((_, e))
                            if m.producer_epoch == NO_PRODUCER_EPOCH || e == m.producer_epoch =>
                        {
                            next.producer_epoch = m.producer_epoch + 1;
                            next.last_producer_epoch = m.producer_epoch;
                        }
                        // A retry of a bump whose answer was lost: the
                        // same epoch again.
                        Some((_, e)) if e == m.last_producer_epoch => {}
                        Some((pid, e)) => {
                            return Err(TxnError::Fenced {
                                producer_id: pid,
                                got: e,
                                current: m.producer_epoch,
                            })
                        }
                    }
                }
                Ok(TxnStep::Write(self.begin(id, next)))
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                unreachable!("never stored: {:?}", m.state)
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets
    /// partition); at `txn_version` 2 the implicit add of a Produce or a
    /// TxnOffsetCommit, which Kafka checks the same way.
    pub fn add_partitions(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
        txn_version: u8,
        now_ms: i64,
    ) -> Result<TxnStep, TxnError> {
        let m = self.entry(id)?.meta.clone();
        Self::check_producer(id, &m, producer_id, epoch)?;
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::Concurrent(id.to_string()))
            }
            TxnState::Ongoing if partitions.iter().all(|p| m.partitions.contains(p)) => {
                Ok(TxnStep::Done)
            }
            _ => {
                let start_ms = if m.state.is_idle() {
                    now_ms
                } else {
                    m.start_ms
                };
                let mut next = TxnMeta {
                    state: TxnState::Ongoing,
                    start_ms,
                    last_update_ms: now_ms,
                    txn_version,
                    ..m
                };
                next.partitions.extend(partitions.iter().cloned());
                Ok(TxnStep::Write(self.begin(id, next)))
            }
        }
    }

    /// EndTxn from the client, transaction version 1 (EndTxn v0-4): the
    /// epoch stays.
    pub fn end_txn(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        outcome: Outcome,
        now_ms: i64,
    ) -> Result<TxnStep, TxnError> {
        let m = self.entry(id)?.meta.clone();
        Self::check_producer(id, &m, producer_id, epoch)?;
        let invalid = || TxnError::InvalidState {
            id: id.to_string(),
            state: m.state,
            wanted: outcome,
        };
        match (m.state, outcome) {
            (TxnState::Ongoing, _) => {
                let state = match outcome {
                    Outcome::Commit => TxnState::PrepareCommit,
                    Outcome::Abort => TxnState::PrepareAbort,
                };
                let next = TxnMeta {
                    state,
                    last_update_ms: now_ms,
                    ..m.clone()
                };
                Ok(TxnStep::Write(self.begin(id, next)))
            }
            // A retry of an end that completed.
            (TxnState::CompleteCommit, Outcome::Commit)
            | (TxnState::CompleteAbort, Outcome::Abort) => Ok(TxnStep::Done),
            // A retry of an end still writing its markers.
            (TxnState::PrepareCommit, Outcome::Commit)
            | (TxnState::PrepareAbort, Outcome::Abort) => Err(TxnError::Concurrent(id.to_string())),
            _ => Err(invalid()),
        }
    }

    /// EndTxn v5+, transaction version 2 (Kafka's `endTransaction`): the
    /// Prepare state bumps the epoch, so its markers fence whatever the
    /// ended transaction's producer still sends at the old one; the client
    /// goes on at the bumped epoch (`TxnMeta::next_producer`), or with a
    /// new producer id at epoch 0 when the epoch is exhausted (`new_id`).
    /// A retry is recognised by its epoch being one below the stored one.
    /// Kafka's table for the idle states (PF: PRODUCER_FENCED, ITS:
    /// INVALID_TXN_STATE, Done: success, nothing written, EB: a Prepare
    /// with the epoch bumped):
    ///
    /// | state          | Abort retry | Abort current | Commit retry | Commit current |
    /// |----------------|-------------|---------------|--------------|----------------|
    /// | Empty          | PF          | EB            | PF           | ITS            |
    /// | CompleteAbort  | Done        | EB            | ITS          | ITS            |
    /// | CompleteCommit | ITS         | EB            | Done         | ITS            |
    pub fn end_txn_v2(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        outcome: Outcome,
        now_ms: i64,
        new_id: &mut dyn FnMut() -> i64,
    ) -> Result<TxnStep, TxnError> {
        let m = self.entry(id)?.meta.clone();
        // The client retried an end whose answer rotated the producer id.
        let retry_on_overflow =
            m.last_producer_id == producer_id && epoch == i16::MAX - 1 && m.producer_epoch == 0;
        // The client retried an end whose answer bumped the epoch.
        let retry_on_bump = i32::from(m.producer_epoch) == i32::from(epoch) + 1;
        let valid_epoch = match m.state {
            TxnState::Ongoing | TxnState::Empty => epoch == m.producer_epoch,
            TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
            TxnState::CompleteCommit | TxnState::CompleteAbort => {
                retry_on_bump || retry_on_overflow || epoch == m.producer_epoch
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                unreachable!("never stored: {:?}", m.state)
            }
        };
        if m.producer_id != producer_id && !retry_on_overflow {
            return Err(TxnError::ProducerIdMapping {
                id: id.to_string(),
                current: m.producer_id,
                got: producer_id,
            });
        }
        if !valid_epoch {
            return Err(TxnError::Fenced {
                producer_id,
                got: epoch,
                current: m.producer_epoch,
            });
        }
        let retry = retry_on_bump || retry_on_overflow;
        let invalid = || TxnError::InvalidState {
            id: id.to_string(),
            state: m.state,
            wanted: outcome,
        };
        // The Prepare state: epoch bumped; an abort of nothing (no partition
        // was added: the client aborts after a failed first send) starts
        // and ends now.
        let mut prepare = |state: TxnState, nothing_added: bool| {
            if m.producer_epoch == i16::MAX {
                // Only a fencing abort reaches the last epoch: the
                // producer must InitProducerId (which rotates the id).
                return Err(TxnError::Fenced {
                    producer_id,
                    got: epoch,
                    current: m.producer_epoch,
                });
            }
            let next = TxnMeta {
                state,
                producer_epoch: m.producer_epoch + 1,
                last_producer_epoch: m.producer_epoch,
                next_producer_id: if m.epoch_exhausted() {
                    new_id()
                } else {
                    NO_PRODUCER_ID
                },
                start_ms: if nothing_added { now_ms } else { m.start_ms },
                partitions: if nothing_added {
                    BTreeSet::new()
                } else {
                    m.partitions.clone()
                },
                last_update_ms: now_ms,
                txn_version: 2,
                ..m.clone()
            };
            Ok(TxnStep::Write(self.begin(id, next)))
        };
        match (m.state, outcome) {
            (TxnState::Ongoing, Outcome::Commit) => prepare(TxnState::PrepareCommit, false),
            (TxnState::Ongoing, Outcome::Abort) => prepare(TxnState::PrepareAbort, false),
            (TxnState::CompleteCommit, Outcome::Commit)
            | (TxnState::CompleteAbort, Outcome::Abort)
                if retry =>
            {
                Ok(TxnStep::Done)
            }
            (
                TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Empty,
                Outcome::Abort,
            ) if !retry => prepare(TxnState::PrepareAbort, true),
            (TxnState::PrepareCommit, Outcome::Commit)
            | (TxnState::PrepareAbort, Outcome::Abort) => Err(TxnError::Concurrent(id.to_string())),
            _ => Err(invalid()),
        }
    }

    /// The markers of `id`'s PrepareCommit/PrepareAbort are all written:
    /// the Complete meta to write and apply.
    pub fn complete(&mut self, id: &str, now_ms: i64) -> Option<TxnMeta> {
        let e = self.txns.get(id)?;
        if e.pending {
            return None;
        }
        let state = match e.meta.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        let mut next = TxnMeta {
            state,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            next_producer_id: NO_PRODUCER_ID,
            ..e.meta.clone()
        };
        if e.meta.next_producer_id >= 0 {
            // The bumped epoch was the last: the producer goes on with the
            // new id at epoch 0 (the client heard so from EndTxn); the old
            // id is kept to recognise a retry of that EndTxn.
            next.last_producer_id = e.meta.producer_id;
            next.producer_id = e.meta.next_producer_id;
            next.producer_epoch = 0;
        }
        Some(self.begin(id, next))
    }

    /// Ongoing transactions past their timeout at `now_ms`.
    pub fn timed_out(&self, now_ms: i64) -> Vec<String> {
        self.txns
            .iter()
            .filter(|(_, e)| {
                !e.pending
                    && e.meta.state == TxnState::Ongoing
                    && e.meta.start_ms.saturating_add(i64::from(e.meta.timeout_ms)) < now_ms
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The coordinator aborts a transaction past its timeout, fencing its
    /// producer (Kafka bumps the epoch so a zombie cannot go on writing).
    pub fn abort_timed_out(&mut self, id: &str, now_ms: i64) -> Option<TxnMeta> {
        let e = self.txns.get(id)?;
        if e.pending || e.meta.state != TxnState::Ongoing {
            return None;
        }
        let next = fence_abort(&e.meta, now_ms);
        Some(self.begin(id, next))
    }

    /// Idle ids unused for `expiration_ms` (Kafka's
    /// `transactional.id.expiration.ms`): the caller writes a tombstone,
    /// then `remove`s them.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> Vec<String> {
        self.txns
            .iter()
            .filter(|(_, e)| {
                !e.pending
                    && e.meta.state.is_idle()
                    && e.meta.last_update_ms.saturating_add(expiration_ms) < now_ms
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Starts removing an id `expired` named: its tombstone is on the way,
    /// and calls for it get CONCURRENT_TRANSACTIONS until `apply(id, None)`
    /// (or `cancel`), so that an InitProducerId cannot slip in between the
    /// decision and the tombstone and then be forgotten. False when the id
    /// is no longer idle past `expiration_ms` (it was used meanwhile).
    pub fn begin_expire(&mut self, id: &str, now_ms: i64, expiration_ms: i64) -> bool {
        match self.txns.get_mut(id) {
            Some(e)
                if !e.pending
                    && e.meta.state.is_idle()
                    && e.meta.last_update_ms.saturating_add(expiration_ms) < now_ms =>
            {
                e.pending = true;
                true
            }
            _ => false,
        }
    }

    /// After a durable write of a transition (or while replaying the log:
    /// `None` is a tombstone).
    pub fn apply(&mut self, id: &str, meta: Option<TxnMeta>) {
        match meta {
            Some(meta) => {
                debug_assert!(
                    !matches!(meta.state, TxnState::Dead | TxnState::PrepareEpochFence),
                    "never stored"
                );
                self.txns.insert(
                    id.to_string(),
                    Entry {
                        meta,
                        pending: false,
                    },
                );
            }
            None => {
                self.txns.remove(id);
            }
        }
    }

    /// The write of a transition failed: the id is as it was. An id that
    /// was created for it and never written goes again.
    pub fn cancel(&mut self, id: &str) {
        if let Some(e) = self.txns.get_mut(id) {
            e.pending = false;
            if e.meta.producer_epoch == NO_PRODUCER_EPOCH {
                self.txns.remove(id);
            }
        }
    }

    /// Ids in PrepareCommit/PrepareAbort with no transition in flight: after
    /// a replay, the ones whose markers must be written (again).
    pub fn unfinished(&self) -> Vec<String> {
        self.txns
            .iter()
            .filter(|(_, e)| {
                !e.pending
                    && matches!(
                        e.meta.state,
                        TxnState::PrepareCommit | TxnState::PrepareAbort
                    )
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// DescribeTransactions of one id.
    pub fn describe(&self, id: &str) -> Result<&TxnMeta, TxnError> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest("an empty transactional id"));
        }
        self.txns
            .get(id)
            .map(|e| &e.meta)
            .filter(|m| m.producer_epoch != NO_PRODUCER_EPOCH)
            .ok_or_else(|| TxnError::NotFound(id.to_string()))
    }

    /// ListTransactions: every id whose state is among `states` and whose
    /// producer among `producer_ids` (empty filters match all), open for at
    /// least `min_duration_ms` when that is >= 0 (KIP-994).
    pub fn list(
        &self,
        states: &[TxnState],
        producer_ids: &[i64],
        min_duration_ms: i64,
        now_ms: i64,
    ) -> Vec<TxnListing> {
        self.txns
            .iter()
            .filter(|(_, e)| e.meta.producer_epoch != NO_PRODUCER_EPOCH)
            .filter(|(_, e)| states.is_empty() || states.contains(&e.meta.state))
            .filter(|(_, e)| producer_ids.is_empty() || producer_ids.contains(&e.meta.producer_id))
            .filter(|(_, e)| {
                min_duration_ms < 0
                    || (e.meta.start_ms >= 0
                        && !e.meta.state.is_idle()
                        && now_ms - e.meta.start_ms >= min_duration_ms)
            })
            .map(|(id, e)| TxnListing {
                transactional_id: id.clone(),
                producer_id: e.meta.producer_id,
                state: e.meta.state,
            })
            .collect()
    }
}

/// PrepareAbort of `m`'s open transaction with the epoch bumped (unless it
/// is at the maximum already): the old producer is fenced.
fn fence_abort(m: &TxnMeta, now_ms: i64) -> TxnMeta {
    let epoch = if m.producer_epoch == i16::MAX {
        m.producer_epoch
    } else {
        m.producer_epoch + 1
    };
    TxnMeta {
        producer_epoch: epoch,
        last_producer_epoch: NO_PRODUCER_EPOCH,
        state: TxnState::PrepareAbort,
        last_update_ms: now_ms,
        ..m.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i32 = 60_000;

    fn ids() -> impl FnMut() -> i64 {
        let mut next = 1000;
        move || {
            next += 1;
            next
        }
    }

    fn tp(t: &str, p: u32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    /// Runs a step to its end as a caller whose writes succeed: applies the
    /// written meta, and for a Prepare state completes it.
    fn run(c: &mut TxnCoordinator, id: &str, step: TxnStep, now: i64) -> TxnStep {
        match &step {
            TxnStep::Done => {}
            TxnStep::Write(m) | TxnStep::FenceAndAbort(m) => {
                c.apply(id, Some(m.clone()));
                if let Some(done) = c.complete(id, now) {
                    c.apply(id, Some(done));
                }
            }
        }
        step
    }

    fn init(
        c: &mut TxnCoordinator,
        id: &str,
        now: i64,
        new_id: &mut dyn FnMut() -> i64,
    ) -> TxnMeta {
        match c.init_producer_id(id, T, None, now, new_id).unwrap() {
            TxnStep::Write(m) => {
                c.apply(id, Some(m.clone()));
                m
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_transaction_commits_through_its_states() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        let m = init(&mut c, "t", 10, &mut new_id);
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.state),
            (1001, 0, TxnState::Empty)
        );
        let add = c
            .add_partitions("t", 1001, 0, &[tp("a", 0), tp("b", 1)], 1, 20)
            .unwrap();
        let TxnStep::Write(on) = add else { panic!() };
        assert_eq!(
            (on.state, on.start_ms, on.partitions.len()),
            (TxnState::Ongoing, 20, 2)
        );
        // Nothing can start while the write is in flight.
        assert_eq!(
            c.add_partitions("t", 1001, 0, &[tp("c", 0)], 1, 21)
                .unwrap_err()
                .code(),
            "ConcurrentTransactions"
        );
        c.apply("t", Some(on));
        // Partitions already in: nothing to write.
        assert_eq!(
            c.add_partitions("t", 1001, 0, &[tp("a", 0)], 1, 22)
                .unwrap(),
            TxnStep::Done
        );
        let TxnStep::Write(prep) = c.end_txn("t", 1001, 0, Outcome::Commit, 30).unwrap() else {
            panic!()
        };
        assert_eq!(prep.state, TxnState::PrepareCommit);
        assert_eq!(prep.partitions.len(), 2, "the markers go to these");
        c.apply("t", Some(prep));
        // Retrying while the markers are written: retriable; the other
        // outcome: invalid.
        assert_eq!(
            c.end_txn("t", 1001, 0, Outcome::Commit, 31)
                .unwrap_err()
                .code(),
            "ConcurrentTransactions"
        );
        assert_eq!(
            c.end_txn("t", 1001, 0, Outcome::Abort, 31)
                .unwrap_err()
                .code(),
            "InvalidTxnState"
        );
        assert_eq!(c.unfinished(), vec!["t".to_string()]);
        let done = c.complete("t", 40).unwrap();
        assert_eq!(
            (done.state, done.partitions.len()),
            (TxnState::CompleteCommit, 0)
        );
        c.apply("t", Some(done));
        assert!(c.unfinished().is_empty());
        assert_eq!(
            c.end_txn("t", 1001, 0, Outcome::Commit, 41).unwrap(),
            TxnStep::Done,
            "a retry of a finished commit"
        );
        assert_eq!(
            c.end_txn("t", 1001, 0, Outcome::Abort, 41)
                .unwrap_err()
                .code(),
            "InvalidTxnState"
        );
        // The next transaction starts its own clock.
        let TxnStep::Write(next) = c
            .add_partitions("t", 1001, 0, &[tp("a", 0)], 1, 50)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((next.start_ms, next.partitions.len()), (50, 1));
    }

    #[test]
    fn init_bumps_the_epoch_and_fences_the_old_producer() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        init(&mut c, "t", 0, &mut new_id);
        let m = init(&mut c, "t", 1, &mut new_id);
        assert_eq!(
            (m.producer_id, m.producer_epoch),
            (1001, 1),
            "same id, next epoch"
        );
        for (what, r) in [
            ("add", c.add_partitions("t", 1001, 0, &[tp("a", 0)], 1, 2)),
            ("end", c.end_txn("t", 1001, 0, Outcome::Commit, 2)),
        ] {
            assert_eq!(r.unwrap_err().code(), "ProducerFenced", "{what}");
        }
        assert_eq!(
            c.add_partitions("t", 77, 1, &[tp("a", 0)], 1, 2)
                .unwrap_err()
                .code(),
            "InvalidProducerIdMapping"
        );
        assert_eq!(
            c.add_partitions("nope", 1001, 1, &[tp("a", 0)], 1, 2)
                .unwrap_err()
                .code(),
            "InvalidProducerIdMapping"
        );
    }

    #[test]
    fn init_over_an_open_transaction_aborts_it_with_a_fencing_epoch() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        init(&mut c, "t", 0, &mut new_id);
        let s = c.add_partitions("t", 1001, 0, &[tp("a", 0)], 1, 1).unwrap();
        run(&mut c, "t", s, 1);
        let TxnStep::FenceAndAbort(abort) =
            c.init_producer_id("t", T, None, 5, &mut new_id).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (abort.state, abort.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
        assert_eq!(
            abort.partitions.len(),
            1,
            "markers go to the open partitions"
        );
        c.apply("t", Some(abort));
        // The old producer is fenced; the new one retries while the abort
        // finishes, then gets the epoch after the fencing one.
        assert_eq!(
            c.end_txn("t", 1001, 0, Outcome::Commit, 6)
                .unwrap_err()
                .code(),
            "ProducerFenced"
        );
        assert_eq!(
            c.init_producer_id("t", T, None, 6, &mut new_id)
                .unwrap_err()
                .code(),
            "ConcurrentTransactions"
        );
        let done = c.complete("t", 7).unwrap();
        assert_eq!(done.state, TxnState::CompleteAbort);
        c.apply("t", Some(done));
        let m = init(&mut c, "t", 8, &mut new_id);
        assert_eq!((m.producer_id, m.producer_epoch), (1001, 2));
    }

    #[test]
    fn kip_360_recovery_bumps_or_repeats_and_fences_strangers() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        init(&mut c, "t", 0, &mut new_id);
        // The producer at (1001, 0) recovers: epoch 1, last epoch 0.
        let TxnStep::Write(m) = c
            .init_producer_id("t", T, Some((1001, 0)), 1, &mut new_id)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((m.producer_epoch, m.last_producer_epoch), (1, 0));
        c.apply("t", Some(m));
        // Its retry (the answer was lost) gets epoch 1 again.
        let TxnStep::Write(m) = c
            .init_producer_id("t", T, Some((1001, 0)), 2, &mut new_id)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(m.producer_epoch, 1);
        c.apply("t", Some(m));
        // An epoch that is neither current nor last: fenced.
        assert_eq!(
            c.init_producer_id("t", T, Some((1001, 7)), 3, &mut new_id)
                .unwrap_err()
                .code(),
            "ProducerFenced"
        );
        // Another producer id: fenced.
        assert_eq!(
            c.init_producer_id("t", T, Some((5, 0)), 3, &mut new_id)
                .unwrap_err()
                .code(),
            "ProducerFenced"
        );
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        let mut m = init(&mut c, "t", 0, &mut new_id);
        m.producer_epoch = i16::MAX - 1;
        c.apply("t", Some(m));
        let TxnStep::Write(r) = c
            .init_producer_id("t", T, Some((1001, i16::MAX - 1)), 1, &mut new_id)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((r.producer_id, r.producer_epoch), (1002, 0));
        assert_eq!(
            (r.last_producer_id, r.last_producer_epoch),
            (1001, i16::MAX - 1)
        );
        c.apply("t", Some(r));
        // A retry naming the old id with its exhausted epoch is valid.
        assert!(c
            .init_producer_id("t", T, Some((1001, i16::MAX - 1)), 2, &mut new_id)
            .is_ok());
    }

    #[test]
    fn bad_ids_and_timeouts_are_refused() {
        let mut c = TxnCoordinator::new(1_000);
        let mut new_id = ids();
        assert_eq!(
            c.init_producer_id("", T, None, 0, &mut new_id)
                .unwrap_err()
                .code(),
            "InvalidRequest"
        );
        for t in [0, -1, 1_001] {
            assert_eq!(
                c.init_producer_id("t", t, None, 0, &mut new_id)
                    .unwrap_err()
                    .code(),
                "InvalidTransactionTimeout"
            );
        }
        assert!(c.is_empty(), "nothing created by a refused call");
        // A created id whose first write failed is gone again.
        let TxnStep::Write(_) = c
            .init_producer_id("t", 1_000, None, 0, &mut new_id)
            .unwrap()
        else {
            panic!()
        };
        c.cancel("t");
        assert!(c.is_empty());
        assert_eq!(
            c.describe("t").unwrap_err().code(),
            "TransactionalIdNotFound"
        );
    }

    #[test]
    fn the_timeout_aborts_and_fences_and_idle_ids_expire() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        init(&mut c, "t", 0, &mut new_id);
        init(&mut c, "idle", 0, &mut new_id);
        let s = c
            .add_partitions("t", 1001, 0, &[tp("a", 0)], 1, 100)
            .unwrap();
        run(&mut c, "t", s, 100);
        assert!(
            c.timed_out(100 + i64::from(T)).is_empty(),
            "not past it yet"
        );
        assert_eq!(c.timed_out(101 + i64::from(T)), vec!["t".to_string()]);
        let abort = c.abort_timed_out("t", 101 + i64::from(T)).unwrap();
        assert_eq!(
            (abort.state, abort.producer_epoch),
            (TxnState::PrepareAbort, 1)
        );
        assert!(c.timed_out(200_000).is_empty(), "in flight");
        c.apply("t", Some(abort));
        assert_eq!(
            c.add_partitions("t", 1001, 0, &[tp("a", 0)], 1, 200_000)
                .unwrap_err()
                .code(),
            "ProducerFenced",
            "the zombie"
        );
        let done = c.complete("t", 200_001).unwrap();
        c.apply("t", Some(done));
        let exp = 1_000;
        // Both are idle now; "t" was used later.
        assert_eq!(c.expired(1_001, exp), vec!["idle".to_string()]);
        let mut both = c.expired(200_001 + exp + 1, exp);
        both.sort();
        assert_eq!(both, vec!["idle".to_string(), "t".to_string()]);
        c.apply("idle", None);
        assert!(c.get("idle").is_none());
        // Expiring "t": while its tombstone is on the way, an
        // InitProducerId for it waits (CONCURRENT_TRANSACTIONS) instead of
        // being forgotten when the removal lands; a failed write gives the
        // id back.
        let later = 200_001 + exp + 1;
        assert!(c.begin_expire("t", later, exp));
        assert!(!c.begin_expire("t", later, exp), "already on its way");
        assert_eq!(c.expired(later, exp), Vec::<String>::new());
        let e = c
            .init_producer_id("t", T, None, later, &mut new_id)
            .unwrap_err();
        assert_eq!(e.code(), "ConcurrentTransactions");
        c.cancel("t");
        assert!(c.get("t").is_some(), "the write failed: still there");
        assert!(c.begin_expire("t", later, exp));
        c.apply("t", None);
        assert!(c.get("t").is_none());
        assert!(!c.begin_expire("t", later, exp), "gone");
    }

    #[test]
    fn describe_and_list_filter_by_state_producer_and_duration() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        init(&mut c, "a", 0, &mut new_id);
        init(&mut c, "b", 0, &mut new_id);
        let s = c
            .add_partitions("b", 1002, 0, &[tp("x", 0)], 1, 10)
            .unwrap();
        run(&mut c, "b", s, 10);
        let d = c.describe("b").unwrap();
        assert_eq!(
            (d.state, d.start_ms, d.timeout_ms),
            (TxnState::Ongoing, 10, T)
        );
        let names = |v: Vec<TxnListing>| {
            v.into_iter()
                .map(|l| l.transactional_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(c.list(&[], &[], -1, 0)), vec!["a", "b"]);
        assert_eq!(names(c.list(&[TxnState::Ongoing], &[], -1, 0)), vec!["b"]);
        assert_eq!(names(c.list(&[], &[1001], -1, 0)), vec!["a"]);
        assert_eq!(names(c.list(&[], &[], 100, 109)), Vec::<String>::new());
        assert_eq!(names(c.list(&[], &[], 100, 110)), vec!["b"]);
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_name(s.name()), Some(s));
            assert_eq!(TxnState::from_id(s as u8), Some(s));
        }
    }

    /// Applies a written step, and completes a Prepare one as the caller
    /// does once the markers are written.
    fn apply_and_complete(c: &mut TxnCoordinator, id: &str, step: &TxnStep, now: i64) {
        if let TxnStep::Write(m) = step {
            c.apply(id, Some(m.clone()));
            if let Some(done) = c.complete(id, now) {
                c.apply(id, Some(done));
            }
        }
    }

    #[test]
    fn version_2_bumps_the_epoch_at_every_end_and_knows_its_retries() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        init(&mut c, "t", 0, &mut new_id);
        // Produce v12's implicit add opens the transaction at version 2.
        let s = c.add_partitions("t", 1001, 0, &[tp("a", 0)], 2, 5).unwrap();
        run(&mut c, "t", s, 5);
        assert_eq!(c.get("t").unwrap().txn_version, 2);
        let s = c
            .end_txn_v2("t", 1001, 0, Outcome::Commit, 10, &mut new_id)
            .unwrap();
        let TxnStep::Write(prep) = &s else {
            panic!("{s:?}")
        };
        // The markers go out at the bumped epoch: a late batch at epoch 0
        // is fenced on every partition of the transaction.
        assert_eq!(
            (prep.state, prep.producer_epoch, prep.last_producer_epoch),
            (TxnState::PrepareCommit, 1, 0)
        );
        assert_eq!(prep.next_producer(), (1001, 1), "what EndTxn v5 answers");
        assert_eq!(prep.partitions.len(), 1);
        c.apply("t", Some(prep.clone()));
        // The same end again while the markers are written: wait.
        assert_eq!(
            c.end_txn_v2("t", 1001, 0, Outcome::Commit, 11, &mut new_id)
                .unwrap_err()
                .code(),
            "ConcurrentTransactions"
        );
        let done = c.complete("t", 12).unwrap();
        assert_eq!(
            (done.state, done.producer_epoch),
            (TxnState::CompleteCommit, 1)
        );
        c.apply("t", Some(done));
        // A retry (the epoch one below): success, nothing written; the
        // other outcome at that epoch is no retry of it.
        assert_eq!(
            c.end_txn_v2("t", 1001, 0, Outcome::Commit, 13, &mut new_id),
            Ok(TxnStep::Done)
        );
        assert_eq!(
            c.end_txn_v2("t", 1001, 0, Outcome::Abort, 13, &mut new_id)
                .unwrap_err()
                .code(),
            "InvalidTxnState"
        );
        // A commit with nothing added is no transaction; an abort of
        // nothing bumps the epoch (franz-go and Java abort after a failed
        // first send).
        assert_eq!(
            c.end_txn_v2("t", 1001, 1, Outcome::Commit, 14, &mut new_id)
                .unwrap_err()
                .code(),
            "InvalidTxnState"
        );
        let s = c
            .end_txn_v2("t", 1001, 1, Outcome::Abort, 15, &mut new_id)
            .unwrap();
        let TxnStep::Write(prep) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(
            (
                prep.state,
                prep.producer_epoch,
                prep.partitions.len(),
                prep.start_ms
            ),
            (TxnState::PrepareAbort, 2, 0, 15)
        );
        apply_and_complete(&mut c, "t", &s, 15);
        assert_eq!(
            c.end_txn_v2("t", 1001, 1, Outcome::Abort, 16, &mut new_id),
            Ok(TxnStep::Done),
            "a retry of that abort"
        );
        // Epochs other than the current one and the one before are
        // fenced; another producer id is no mapping.
        for stale in [0, 3] {
            assert_eq!(
                c.end_txn_v2("t", 1001, stale, Outcome::Abort, 17, &mut new_id)
                    .unwrap_err()
                    .code(),
                "ProducerFenced",
                "epoch {stale}"
            );
        }
        assert_eq!(
            c.end_txn_v2("t", 77, 2, Outcome::Abort, 17, &mut new_id)
                .unwrap_err()
                .code(),
            "InvalidProducerIdMapping"
        );
        // A version-1 client at the old epoch is fenced by the new one.
        let s = c
            .add_partitions("t", 1001, 1, &[tp("a", 0)], 1, 18)
            .unwrap_err();
        assert_eq!(s.code(), "ProducerFenced");
    }

    #[test]
    fn version_2_rotates_the_producer_id_when_the_epoch_runs_out() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        let mut m = init(&mut c, "t", 0, &mut new_id);
        m.producer_epoch = i16::MAX - 1;
        m.state = TxnState::Ongoing;
        m.partitions = [tp("a", 0)].into_iter().collect();
        c.apply("t", Some(m));
        let s = c
            .end_txn_v2("t", 1001, i16::MAX - 1, Outcome::Commit, 10, &mut new_id)
            .unwrap();
        let TxnStep::Write(prep) = &s else {
            panic!("{s:?}")
        };
        // The markers at the last epoch; the client goes on with a new id.
        assert_eq!((prep.producer_id, prep.producer_epoch), (1001, i16::MAX));
        assert_eq!(prep.next_producer(), (1002, 0));
        apply_and_complete(&mut c, "t", &s, 11);
        let now = c.get("t").unwrap().clone();
        assert_eq!(
            (
                now.producer_id,
                now.producer_epoch,
                now.last_producer_id,
                now.next_producer_id
            ),
            (1002, 0, 1001, -1)
        );
        // A retry of that EndTxn, with the old id at its last epoch: done.
        assert_eq!(
            c.end_txn_v2("t", 1001, i16::MAX - 1, Outcome::Commit, 12, &mut new_id),
            Ok(TxnStep::Done)
        );
        // The new id works.
        let s = c
            .add_partitions("t", 1002, 0, &[tp("a", 0)], 2, 13)
            .unwrap();
        assert!(matches!(s, TxnStep::Write(_)));
    }

    #[test]
    fn version_2_after_a_timeout_abort_the_producer_may_abort_but_not_commit() {
        let mut c = TxnCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
        let mut new_id = ids();
        init(&mut c, "t", 0, &mut new_id);
        let s = c.add_partitions("t", 1001, 0, &[tp("a", 0)], 2, 0).unwrap();
        run(&mut c, "t", s, 0);
        let fenced = c.abort_timed_out("t", i64::from(T) + 1).unwrap();
        assert_eq!(fenced.producer_epoch, 1);
        c.apply("t", Some(fenced));
        let done = c.complete("t", i64::from(T) + 2).unwrap();
        c.apply("t", Some(done));
        // The producer, still at epoch 0, commits: its transaction is gone.
        assert_eq!(
            c.end_txn_v2("t", 1001, 0, Outcome::Commit, i64::from(T) + 3, &mut new_id)
                .unwrap_err()
                .code(),
            "InvalidTxnState"
        );
        // Aborting is what it meant anyway: success, and it goes on at 1.
        assert_eq!(
            c.end_txn_v2("t", 1001, 0, Outcome::Abort, i64::from(T) + 3, &mut new_id),
            Ok(TxnStep::Done)
        );
        assert_eq!(c.get("t").unwrap().next_producer(), (1001, 1));
    }
}
