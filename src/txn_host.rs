//! A shard's transaction coordinator: the transactional ids whose
//! partition of `__transaction_state` this shard owns, served from the
//! pure state machine in `txn`, every transition made durable in that
//! partition before it is applied or answered.
//!
//! Owns: turning transaction calls (InitProducerId, AddPartitionsToTxn,
//! EndTxn, Describe, List) into `txn::TxnCoordinator` steps and back; the
//! write of a transition (one record, appended and flushed to the level a
//! durable produce waits for); finishing a transaction (markers on every
//! partition through `TxnPeers`, retried until they are all written, then
//! the Complete transition); the replay of the log at start, the recovery
//! after it (open transactions opened again on their partitions, prepared
//! ones finished), and the timeout and expiry checks.
//!
//! Must never: answer a call before its transition is durable; apply a
//! transition whose write failed; or reach other shards except through
//! `TxnPeers` (the router implements it: this module sits below it).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::batch::BatchBuilder;
use crate::errors::ToWire;
use crate::group::offsets::partition_for_group;
use crate::group::TopicPartition;
use crate::partition::Partition;
use crate::producer_state::ProducerIds;
use crate::protocol::{ErrorCode, WireError};
use crate::rt;
use crate::storage::{OFFSETS_PARTITIONS, OFFSETS_TOPIC};
use crate::txn::coordinator::{TxnListing, DEFAULT_ID_EXPIRATION_MS};
use crate::txn::{log as txn_log, Outcome, TxnCoordinator, TxnError, TxnMeta, TxnState, TxnStep};

/// How often open transactions are checked against their timeout (Kafka's
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` is 10 s;
/// a shorter check aborts closer to the timeout).
pub const TIMEOUT_CHECK_MS: u64 = 1_000;
/// Between attempts to write markers a partition refused.
const MARKER_RETRY_MS: u64 = 100;
/// How long a call for a transactional id whose last transaction is still
/// writing its markers waits for them before it is answered
/// CONCURRENT_TRANSACTIONS. Kafka answers at once and the client retries
/// after a backoff (librdkafka's and Java's: tens of ms); the markers
/// usually take a couple of ms, so waiting here saves the client that
/// backoff, which was the tail of a small transaction's commit.
const FINISH_WAIT_MS: u64 = 200;

/// A transaction call, served by the id's coordinator shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnCall {
    Init {
        id: String,
        timeout_ms: i32,
        /// KIP-360: the producer id and epoch the client has.
        expected: Option<(i64, i16)>,
    },
    /// AddPartitionsToTxn (`txn_version` 1), or the implicit add of a
    /// Produce v12+ (2: KIP-890 part 2).
    Add {
        id: String,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TopicPartition>,
        txn_version: u8,
    },
    /// AddOffsetsToTxn: the group's offsets partition joins the
    /// transaction (its TxnOffsetCommits take effect with it); at
    /// `txn_version` 2 the implicit add of a TxnOffsetCommit v5+.
    AddOffsets {
        id: String,
        producer_id: i64,
        epoch: i16,
        group: String,
        txn_version: u8,
    },
    /// EndTxn; at `txn_version` 2 (v5+) the epoch is bumped.
    End {
        id: String,
        producer_id: i64,
        epoch: i16,
        outcome: Outcome,
        txn_version: u8,
    },
    Describe(String),
    /// Served by every shard for its own ids; the caller merges.
    List {
        states: Vec<TxnState>,
        producer_ids: Vec<i64>,
        min_duration_ms: i64,
    },
}

impl TxnCall {
    /// The transactional id whose coordinator serves the call; None: every
    /// coordinator (List).
    pub fn id(&self) -> Option<&str> {
        match self {
            TxnCall::Init { id, .. }
            | TxnCall::Add { id, .. }
            | TxnCall::AddOffsets { id, .. }
            | TxnCall::End { id, .. }
            | TxnCall::Describe(id) => Some(id),
            TxnCall::List { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnReply {
    /// InitProducerId: the producer id and epoch.
    Init(Result<(i64, i16), WireError>),
    /// AddPartitionsToTxn: each partition's result, in request order.
    Added(Vec<(TopicPartition, Option<WireError>)>),
    /// EndTxn: at transaction version 2 the producer id and epoch to go on
    /// with; (-1, -1) at version 1.
    Ended(Result<(i64, i16), WireError>),
    OffsetsAdded(Result<(), WireError>),
    Described(Result<TxnMeta, WireError>),
    Listed(Vec<TxnListing>),
}

/// What a coordinator asks of a partition's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnAction {
    /// AddPartitionsToTxn: take this producer's transactional batches.
    Open,
    /// Write the marker that ends its transaction.
    End(Outcome),
}

/// The partitions' owners, as the coordinator reaches them (the router,
/// over the mesh).
pub trait TxnPeers {
    /// Does the partition exist?
    fn exists(&self, tp: &TopicPartition) -> bool;
    /// Applies `action` for the producer on every partition at its owner;
    /// each partition's result, the marker durable when it is Ok.
    #[allow(clippy::type_complexity)]
    fn apply(
        &self,
        action: TxnAction,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TopicPartition>,
    ) -> Pin<Box<dyn Future<Output = Vec<(TopicPartition, Option<WireError>)>>>>;
}

pub struct TxnHost {
    shard_id: u16,
    partitions: u32,
    coordinator: RefCell<TxnCoordinator>,
    /// This shard's partitions of the transaction log, by partition id.
    logs: RefCell<BTreeMap<u32, Rc<Partition>>>,
    ids: Rc<RefCell<ProducerIds>>,
    peers: RefCell<Option<Weak<dyn TxnPeers>>>,
    stopping: Cell<bool>,
    /// Notified whenever a transaction completes (its markers written).
    completed: Rc<rt::Event>,
}

fn storage_error(e: impl std::fmt::Display) -> WireError {
    // Retriable for clients: they look the coordinator up again and retry.
    WireError::new(
        ErrorCode::CoordinatorNotAvailable,
        format!("the transaction log refused a write: {e}"),
    )
}

impl TxnHost {
    pub fn new(
        shard_id: u16,
        partitions: u32,
        max_timeout_ms: i32,
        ids: Rc<RefCell<ProducerIds>>,
    ) -> TxnHost {
        TxnHost {
            shard_id,
            partitions,
            coordinator: RefCell::new(TxnCoordinator::new(max_timeout_ms)),
            logs: RefCell::new(BTreeMap::new()),
            ids,
            peers: RefCell::new(None),
            stopping: Cell::new(false),
            completed: Rc::default(),
        }
    }

    pub fn set_peers(&self, peers: Weak<dyn TxnPeers>) {
        *self.peers.borrow_mut() = Some(peers);
    }

    fn peers(&self) -> Option<Rc<dyn TxnPeers>> {
        self.peers.borrow().as_ref().and_then(Weak::upgrade)
    }

    pub fn stop(&self) {
        self.stopping.set(true);
    }

    /// Replays one transaction log partition this shard owns, and keeps it
    /// for writes. Returns the records applied.
    pub async fn replay(&self, part: &Rc<Partition>) -> Result<u64, String> {
        self.logs.borrow_mut().insert(part.id(), part.clone());
        let mut applied = 0u64;
        part.for_each_keyed_record(|key, value, offset| match txn_log::decode(key, value) {
            Ok((id, meta)) => {
                self.coordinator.borrow_mut().apply(&id, meta);
                applied += 1;
            }
            Err(e) => tracing::warn!(
                shard = self.shard_id,
                partition = part.id(),
                offset,
                "skipping a transaction record that does not decode: {e}"
            ),
        })
        .await?;
        Ok(applied)
    }

    /// After the replay, once the mesh is up: open transactions are opened
    /// again on their partitions (one that wrote is open there already,
    /// from the log; one that has not must be, or its first batch is
    /// refused), and prepared ones get their markers and complete.
    pub async fn recover(self: &Rc<Self>) {
        let (open, unfinished): (Vec<(String, TxnMeta)>, Vec<String>) = {
            let c = self.coordinator.borrow();
            let open = c
                .list(&[TxnState::Ongoing], &[], -1, 0)
                .into_iter()
                .filter_map(|l| {
                    c.get(&l.transactional_id)
                        .map(|m| (l.transactional_id.clone(), m.clone()))
                })
                .collect();
            (open, c.unfinished())
        };
        if let Some(peers) = self.peers() {
            for (id, m) in open {
                let parts: Vec<TopicPartition> = m.partitions.iter().cloned().collect();
                for (tp, e) in peers
                    .apply(TxnAction::Open, m.producer_id, m.producer_epoch, parts)
                    .await
                {
                    if let Some(e) = e {
                        tracing::warn!(
                            id,
                            topic = tp.topic,
                            partition = tp.partition,
                            "reopening a transaction: {e}"
                        );
                    }
                }
            }
        }
        for id in unfinished {
            tracing::info!(
                shard = self.shard_id,
                id,
                "finishing a transaction prepared before the restart"
            );
            let this = self.clone();
            rt::spawn(async move { this.finish(&id).await }).detach();
        }
    }

    /// Serves one call; the future is the answer.
    pub fn call(self: &Rc<Self>, call: TxnCall) -> Pin<Box<dyn Future<Output = TxnReply>>> {
        let this = self.clone();
        Box::pin(async move { this.serve(call).await })
    }

    async fn serve(self: &Rc<Self>, call: TxnCall) -> TxnReply {
        if let Some(id) = call.id() {
            if !matches!(call, TxnCall::Describe(_)) {
                self.await_finished(id).await;
            }
        }
        let now = rt::now_ms();
        match call {
            TxnCall::Init {
                id,
                timeout_ms,
                expected,
            } => {
                let ids = self.ids.clone();
                let step = self.coordinator.borrow_mut().init_producer_id(
                    &id,
                    timeout_ms,
                    expected,
                    now,
                    &mut || ids.borrow_mut().next(now),
                );
                let r = match step {
                    Err(e) => Err(e.to_wire()),
                    Ok(TxnStep::Done) => unreachable!("InitProducerId always writes"),
                    Ok(TxnStep::Write(m)) => self
                        .write(&id, &m)
                        .await
                        .map(|()| (m.producer_id, m.producer_epoch)),
                    Ok(TxnStep::FenceAndAbort(m)) => match self.write(&id, &m).await {
                        Ok(()) => {
                            let this = self.clone();
                            let id2 = id.clone();
                            rt::spawn(async move { this.finish(&id2).await }).detach();
                            Err(TxnError::Concurrent(id).to_wire())
                        }
                        Err(e) => Err(e),
                    },
                };
                TxnReply::Init(r)
            }
            TxnCall::Add {
                id,
                producer_id,
                epoch,
                partitions,
                txn_version,
            } => TxnReply::Added(
                self.add(&id, (producer_id, epoch), partitions, txn_version, now)
                    .await,
            ),
            TxnCall::AddOffsets {
                id,
                producer_id,
                epoch,
                group,
                txn_version,
            } => {
                let tp = TopicPartition::new(
                    OFFSETS_TOPIC,
                    partition_for_group(&group, OFFSETS_PARTITIONS),
                );
                let r = self
                    .add(&id, (producer_id, epoch), vec![tp], txn_version, now)
                    .await;
                TxnReply::OffsetsAdded(match r.into_iter().next() {
                    Some((_, Some(e))) => Err(e),
                    _ => Ok(()),
                })
            }
            TxnCall::End {
                id,
                producer_id,
                epoch,
                outcome,
                txn_version,
            } => {
                let v2 = txn_version >= 2;
                let step = if v2 {
                    let ids = self.ids.clone();
                    self.coordinator.borrow_mut().end_txn_v2(
                        &id,
                        producer_id,
                        epoch,
                        outcome,
                        now,
                        &mut || ids.borrow_mut().next(now),
                    )
                } else {
                    self.coordinator
                        .borrow_mut()
                        .end_txn(&id, producer_id, epoch, outcome, now)
                };
                // Version 1 answers no producer.
                let answer = |m: &TxnMeta| if v2 { m.next_producer() } else { (-1, -1) };
                TxnReply::Ended(match step {
                    Err(e) => Err(e.to_wire()),
                    Ok(TxnStep::Done) => {
                        Ok(self.coordinator.borrow().get(&id).map_or((-1, -1), answer))
                    }
                    Ok(TxnStep::Write(m) | TxnStep::FenceAndAbort(m)) => {
                        match self.write(&id, &m).await {
                            Ok(()) => {
                                // Kafka answers once the decision is
                                // durable; the markers follow.
                                let this = self.clone();
                                rt::spawn(async move { this.finish(&id).await }).detach();
                                Ok(answer(&m))
                            }
                            Err(e) => Err(e),
                        }
                    }
                })
            }
            TxnCall::Describe(id) => TxnReply::Described(
                self.coordinator
                    .borrow()
                    .describe(&id)
                    .cloned()
                    .map_err(|e| e.to_wire()),
            ),
            TxnCall::List {
                states,
                producer_ids,
                min_duration_ms,
            } => TxnReply::Listed(self.coordinator.borrow().list(
                &states,
                &producer_ids,
                min_duration_ms,
                now,
            )),
        }
    }

    /// AddPartitionsToTxn: every partition must exist (else the unknown
    /// ones fail and the rest are not attempted, as Kafka answers); the
    /// transition is written, then the partitions' owners open the
    /// transaction before the client hears of it.
    async fn add(
        self: &Rc<Self>,
        id: &str,
        (producer_id, epoch): (i64, i16),
        partitions: Vec<TopicPartition>,
        txn_version: u8,
        now: i64,
    ) -> Vec<(TopicPartition, Option<WireError>)> {
        let all = |e: &WireError, parts: &[TopicPartition]| {
            parts
                .iter()
                .map(|tp| (tp.clone(), Some(e.clone())))
                .collect()
        };
        let Some(peers) = self.peers() else {
            return all(&storage_error("the broker is stopping"), &partitions);
        };
        let unknown: Vec<bool> = partitions.iter().map(|tp| !peers.exists(tp)).collect();
        if unknown.iter().any(|&u| u) {
            return partitions
                .into_iter()
                .zip(unknown)
                .map(|(tp, u)| {
                    let e = if u {
                        WireError::new(
                            ErrorCode::UnknownPartition,
                            format!("no partition {}/{}", tp.topic, tp.partition),
                        )
                    } else {
                        WireError::new(
                            ErrorCode::OperationNotAttempted,
                            "another partition of the request failed",
                        )
                    };
                    (tp, Some(e))
                })
                .collect();
        }
        let step = self.coordinator.borrow_mut().add_partitions(
            id,
            producer_id,
            epoch,
            &partitions,
            txn_version,
            now,
        );
        match step {
            Err(e) => all(&e.to_wire(), &partitions),
            Ok(TxnStep::Done) => partitions.into_iter().map(|tp| (tp, None)).collect(),
            Ok(TxnStep::Write(m) | TxnStep::FenceAndAbort(m)) => {
                if let Err(e) = self.write(id, &m).await {
                    return all(&e, &partitions);
                }
                peers
                    .apply(TxnAction::Open, producer_id, epoch, partitions)
                    .await
            }
        }
    }

    /// Writes `meta` as `id`'s next transition and applies it; on a failed
    /// write the id is as it was.
    async fn write(&self, id: &str, meta: &TxnMeta) -> Result<(), WireError> {
        let r = self.append(id, Some(meta)).await;
        match &r {
            Ok(()) => self.coordinator.borrow_mut().apply(id, Some(meta.clone())),
            Err(_) => self.coordinator.borrow_mut().cancel(id),
        }
        r
    }

    /// Appends one record of `id` (a tombstone for `None`) to its log
    /// partition and waits until it is as durable as a produce.
    async fn append(&self, id: &str, meta: Option<&TxnMeta>) -> Result<(), WireError> {
        let p = txn_log::partition_for_txn(id, self.partitions);
        let log = self.logs.borrow().get(&p).cloned().ok_or_else(|| {
            WireError::new(
                ErrorCode::NotCoordinator,
                format!(
                    "transactional id '{id}' is not coordinated by shard {}",
                    self.shard_id
                ),
            )
        })?;
        let key = txn_log::encode_key(id)
            .map_err(|e| WireError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        let value = meta
            .map(txn_log::encode_value)
            .transpose()
            .map_err(|e| WireError::new(ErrorCode::InvalidRequest, e.to_string()))?;
        let ts = rt::now_ms();
        let mut b = BatchBuilder::with_capacity(
            ts,
            128 + key.len() + value.as_ref().map_or(0, |v| v.len()),
        );
        b.push(ts, Some(&key), value.as_deref(), &[]);
        let appended = log
            .append(&b.finish())
            .map_err(|e| storage_error(e.to_wire().message))?;
        log.flush_to(appended.next_offset, log.durable_level())
            .await
            .map_err(|e| storage_error(e.to_wire().message))
    }

    /// Waits (at most `FINISH_WAIT_MS`) while `id`'s last transaction is
    /// still writing its markers.
    async fn await_finished(&self, id: &str) {
        let finishing = || {
            self.coordinator.borrow().get(id).is_some_and(|m| {
                matches!(
                    m.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
                )
            })
        };
        let until = rt::monotonic_ms() + FINISH_WAIT_MS;
        while finishing() && !self.stopping.get() {
            let now = rt::monotonic_ms();
            if now >= until {
                return;
            }
            let done = rt::any_notified(vec![self.completed.clone()]);
            rt::timeout(Duration::from_millis(until - now), done).await;
        }
    }

    /// Writes the markers of `id`'s prepared transaction on every
    /// partition (retrying those that fail; a partition gone with its
    /// topic is skipped), then completes it.
    async fn finish(self: &Rc<Self>, id: &str) {
        loop {
            if self.stopping.get() {
                return;
            }
            let Some(m) = self.coordinator.borrow().get(id).cloned() else {
                return;
            };
            let outcome = match m.state {
                TxnState::PrepareCommit => Outcome::Commit,
                TxnState::PrepareAbort => Outcome::Abort,
                _ => return,
            };
            let Some(peers) = self.peers() else { return };
            let mut left: Vec<TopicPartition> = m.partitions.iter().cloned().collect();
            while !left.is_empty() {
                let results = peers
                    .apply(
                        TxnAction::End(outcome),
                        m.producer_id,
                        m.producer_epoch,
                        left,
                    )
                    .await;
                left = Vec::new();
                for (tp, e) in results {
                    match e {
                        None => {}
                        Some(e)
                            if matches!(
                                e.code,
                                ErrorCode::UnknownTopic | ErrorCode::UnknownPartition
                            ) =>
                        {
                            tracing::warn!(
                                id,
                                topic = tp.topic,
                                partition = tp.partition,
                                "no marker for a partition that is gone"
                            );
                        }
                        Some(e) => {
                            tracing::warn!(
                                id,
                                topic = tp.topic,
                                partition = tp.partition,
                                "a marker was refused (retrying): {e}"
                            );
                            left.push(tp);
                        }
                    }
                }
                if !left.is_empty() {
                    if self.stopping.get() {
                        return;
                    }
                    rt::sleep(Duration::from_millis(MARKER_RETRY_MS)).await;
                }
            }
            let Some(done) = self.coordinator.borrow_mut().complete(id, rt::now_ms()) else {
                return;
            };
            match self.write(id, &done).await {
                Ok(()) => {
                    self.completed.notify_all();
                    return;
                }
                Err(e) => {
                    tracing::warn!(id, "completing a transaction: {e} (retrying)");
                    rt::sleep(Duration::from_millis(MARKER_RETRY_MS)).await;
                }
            }
        }
    }

    /// Aborts transactions past their timeout (fencing their producers)
    /// and forgets ids idle past Kafka's `transactional.id.expiration.ms`.
    pub async fn check_timeouts(self: &Rc<Self>) {
        let now = rt::now_ms();
        let timed_out = self.coordinator.borrow().timed_out(now);
        for id in timed_out {
            let Some(m) = self.coordinator.borrow_mut().abort_timed_out(&id, now) else {
                continue;
            };
            tracing::info!(
                id,
                producer_id = m.producer_id,
                "aborting a transaction past its timeout"
            );
            if self.write(&id, &m).await.is_ok() {
                let this = self.clone();
                rt::spawn(async move { this.finish(&id).await }).detach();
            }
        }
        let expired = self
            .coordinator
            .borrow()
            .expired(now, DEFAULT_ID_EXPIRATION_MS);
        for id in expired {
            if !self
                .coordinator
                .borrow_mut()
                .begin_expire(&id, now, DEFAULT_ID_EXPIRATION_MS)
            {
                continue; // used since
            }
            match self.append(&id, None).await {
                Ok(()) => self.coordinator.borrow_mut().apply(&id, None),
                Err(_) => self.coordinator.borrow_mut().cancel(&id),
            }
        }
    }
}
