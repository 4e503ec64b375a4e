//! A shard's consumer-group coordinator: the groups whose partition of the
//! offsets topic (`__consumer_offsets`) this shard owns, served from the
//! pure state machine in `group`, with committed offsets made durable in
//! that partition.
//!
//! Owns: turning wire requests into `group::Coordinator` calls and back;
//! the commit path (check every partition, append one batch of offset
//! records, apply them, wait until the batch is as durable as a produce
//! under the broker's fsync policy, then answer); replaying the offsets
//! partitions on start; the monotonic clock the coordinator runs on.
//!
//! Must never: acknowledge a commit before its record reached the durable
//! level (a crash must not lose it), or let commits to one key apply out of
//! the order they were appended in (they apply at append time, which is the
//! log order, so memory and the log agree after a restart).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use bytes::Bytes;

use crate::batch::BatchBuilder;
use crate::errors::ToWire;
use crate::group::classic::ClassicDescription;
use crate::group::classic::{
    ClassicCall, ClassicError, ClassicGroups, ClassicReply, ClassicState, Completion,
};
use crate::group::snapshot;
use crate::group::{
    Coordinator, GroupError, GroupState, HeartbeatRequest, OffsetCommit, Strategy, Subscription,
    TopicPartition, TopicRegex,
};
use crate::partition::Partition;
use crate::protocol::*;
use crate::rt;

/// How often members' sessions and poll intervals are checked.
pub const EXPIRY_CHECK_MS: u64 = 100;

/// A group call only the Kafka listener makes: served in-process by the
/// group's coordinator shard (over the mesh when that is another shard),
/// never carried by a wire protocol.
#[derive(Debug)]
pub enum KafkaGroupCall {
    /// JoinGroup, SyncGroup, Heartbeat, LeaveGroup of Kafka's classic
    /// protocol. Boxed: a DescribeGroups of many groups is a vector of the
    /// small variants (and its decoded size is bounded per wire byte).
    Classic(Box<ClassicCall>),
    /// DescribeGroups of one group: classic members with their opaque
    /// metadata and assignments.
    Describe(String),
    /// DeleteGroups of one group.
    Delete(String),
    /// OffsetDelete: a group's committed offsets of these partitions.
    OffsetDelete {
        group: String,
        topics: Vec<(String, Vec<i32>)>,
    },
    /// TxnOffsetCommit: commits held for the producer's transaction, made
    /// durable now and applied when its marker commits it.
    TxnOffsetCommit {
        request: OffsetCommitRequest,
        producer_id: i64,
    },
}

impl KafkaGroupCall {
    /// The group whose coordinator serves the call.
    pub fn group(&self) -> &str {
        match self {
            KafkaGroupCall::Classic(c) => c.group(),
            KafkaGroupCall::Describe(g) | KafkaGroupCall::Delete(g) => g,
            KafkaGroupCall::OffsetDelete { group, .. } => group,
            KafkaGroupCall::TxnOffsetCommit { request, .. } => &request.group,
        }
    }
}

/// The answer to a `KafkaGroupCall`, of the same kind.
#[derive(Debug)]
pub enum KafkaGroupReply {
    Classic(ClassicReply),
    Describe(KafkaGroupDescription),
    /// `None`: deleted.
    Delete(Option<WireError>),
    /// Each partition asked for with its error (`None`: its offset is
    /// gone, or there was none); `Err`: the group's own error.
    OffsetDelete(Result<Vec<(String, i32, Option<WireError>)>, WireError>),
    /// TxnOffsetCommit: each partition's error, as OffsetCommit's.
    TxnOffsetCommit(Vec<TopicPartitionErrors>),
}

/// One group as Kafka's DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaGroupDescription {
    Classic {
        group: String,
        description: ClassicDescription,
    },
    /// A shardlog-native group, or an unknown one (`error` set).
    Native(GroupDescription),
}

/// Classic states in the native listing's spelling (`group list`).
pub fn classic_state_name(s: ClassicState) -> &'static str {
    match s {
        ClassicState::Empty => "empty",
        ClassicState::PreparingRebalance => "preparing-rebalance",
        ClassicState::CompletingRebalance => "completing-rebalance",
        ClassicState::Stable => "stable",
    }
}

pub fn state_name(s: GroupState) -> &'static str {
    match s {
        GroupState::Empty => "empty",
        GroupState::Reconciling => "reconciling",
        GroupState::Stable => "stable",
    }
}

fn to_tps(v: &[TopicPartitions]) -> Vec<TopicPartition> {
    v.iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |&p| TopicPartition::new(t.topic.as_str(), p))
        })
        .collect()
}

/// Groups sorted (topic, partition) pairs into per-topic lists.
fn from_tps(v: &[TopicPartition]) -> Vec<TopicPartitions> {
    let mut by: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in v {
        by.entry(&tp.topic).or_default().push(tp.partition);
    }
    by.into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            TopicPartitions {
                topic: t.to_owned(),
                partitions: ps,
            }
        })
        .collect()
}

pub struct CoordinatorHost {
    shard_id: u16,
    coordinator: RefCell<Coordinator>,
    /// Kafka's classic groups (JoinGroup/SyncGroup), beside the native ones;
    /// a group id is one or the other while it has members.
    classic: RefCell<ClassicGroups>,
    /// Joins and syncs waiting for the rest of their group, by waiter id,
    /// with the answer each gets if the broker stops first.
    waiters: RefCell<HashMap<u64, (rt::channel::Sender<ClassicReply>, ClassicReply)>>,
    next_waiter: Cell<u64>,
    /// Set by a clean stop: waiting calls were answered, new ones are
    /// refused (the client finds the coordinator again after the restart).
    stopping: Cell<bool>,
}

impl CoordinatorHost {
    pub fn new(shard_id: u16, initial_rebalance_delay: std::time::Duration) -> CoordinatorHost {
        // Member ids must not repeat across broker runs: seed with the time.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((shard_id as u64) << 48);
        CoordinatorHost {
            shard_id,
            coordinator: RefCell::new(Coordinator::new(seed)),
            classic: RefCell::new(
                ClassicGroups::new(seed.rotate_left(17))
                    .with_initial_rebalance_delay(initial_rebalance_delay.as_millis() as u32),
            ),
            waiters: RefCell::new(HashMap::new()),
            next_waiter: Cell::new(1),
            stopping: Cell::new(false),
        }
    }

    /// The coordinator's clock: monotonic, so sessions do not expire
    /// because the wall clock jumped.
    fn now_ms(&self) -> u64 {
        rt::monotonic_ms()
    }

    /// Replays one offsets partition from its start: every commit and
    /// tombstone, in log order. A record that does not decode is skipped
    /// with a warning (the batch CRC passed, so it was written that way).
    pub async fn replay(&self, part: &Partition) -> Result<u64, String> {
        let mut applied = 0u64;
        let now = self.now_ms();
        part.for_each_keyed_record(|key, value, offset| {
            let done = if snapshot::is_image_key(key) {
                snapshot::decode(key, value)
                    .map(|(group, image)| self.classic.borrow_mut().restore(now, &group, image))
                    .map_err(|e| e.0)
            } else {
                self.coordinator
                    .borrow_mut()
                    .apply(key, value)
                    .map_err(|e| e.to_string())
            };
            match done {
                Ok(()) => applied += 1,
                Err(e) => tracing::warn!(
                    shard = self.shard_id,
                    partition = part.id(),
                    offset,
                    "skipping an offsets record that does not decode: {e}"
                ),
            }
        })
        .await?;
        Ok(applied)
    }

    /// The topics (and partition counts) groups may subscribe to.
    pub fn metadata_changed(&self, topics: BTreeMap<String, u32>) {
        self.coordinator.borrow_mut().metadata_changed(topics);
    }

    /// Removes members whose session or poll interval ran out. Returns the
    /// classic groups' changed images, for `store_images` on each group's
    /// offsets partition.
    pub fn expire(&self) -> Vec<(String, Option<snapshot::GroupImage>)> {
        let now = self.now_ms();
        for (group, member, reason) in self.coordinator.borrow_mut().expire_all(now) {
            tracing::info!(shard = self.shard_id, group = %group, member = %member, ?reason, "member removed from its group");
        }
        let (done, changed) = {
            let mut c = self.classic.borrow_mut();
            let done = c.tick(now);
            let changed = c.take_changed();
            c.prune();
            (done, changed)
        };
        self.deliver(done);
        changed
    }

    /// Writes a classic group's image (or its tombstone) to its offsets
    /// partition and waits until it is durable. A failure costs only the
    /// restart without a rebalance (members rejoin after one, as with no
    /// image), never a commit: it is logged, not answered.
    pub async fn store_image(
        &self,
        log: &Rc<Partition>,
        group: &str,
        image: Option<snapshot::GroupImage>,
    ) {
        let record = (snapshot::encode_key(group), image.map(|i| i.encode()));
        if let Err(e) = self.append(log, &[record]).await {
            tracing::warn!(
                shard = self.shard_id,
                group,
                "the group's membership was not stored (a restart will rebalance it): {}",
                e.message
            );
        }
    }

    /// Answers waiting classic joins and syncs. A waiter whose client went
    /// away has no receiver any more: its answer is dropped, harmlessly.
    fn deliver(&self, done: Vec<Completion>) {
        let mut waiters = self.waiters.borrow_mut();
        for (w, reply) in done {
            tracing::debug!(
                shard = self.shard_id,
                waiter = w,
                ?reply,
                "classic group answer"
            );
            let (tx, _) = waiters
                .remove(&w)
                .expect("every completion is for a registered waiter");
            let _ = tx.try_send(reply);
        }
    }

    /// A clean stop: every join and sync still waiting is answered now
    /// (COORDINATOR_NOT_AVAILABLE: the client finds the coordinator again),
    /// so no connection holds the stop up for a rebalance timeout.
    pub fn stop(&self) {
        self.stopping.set(true);
        for (_, (tx, refused)) in self.waiters.borrow_mut().drain() {
            let _ = tx.try_send(refused);
        }
    }

    /// Serves one request of Kafka's classic group protocol; joins and
    /// syncs wait here until their group completes the step. `log`: the
    /// group's offsets partition, where a change of its membership is
    /// stored (and durable) before anyone hears of it.
    pub async fn classic(&self, call: ClassicCall, log: Option<Rc<Partition>>) -> ClassicReply {
        if self.stopping.get() {
            return call.refused(ClassicError::CoordinatorUnavailable);
        }
        if let ClassicCall::Join(j) = &call {
            let native = self
                .coordinator
                .borrow()
                .group(&j.group)
                .is_some_and(|g| !g.is_empty());
            if native {
                return ClassicReply::Join(crate::group::classic::JoinResponse {
                    error: Some(ClassicError::InconsistentProtocol(format!(
                        "group '{}' is a shardlog consumer group with active members",
                        j.group
                    ))),
                    generation_id: -1,
                    member_id: j.member_id.clone(),
                    ..Default::default()
                });
            }
        }
        let now = self.now_ms();
        let group = call.group().to_owned();
        let waiter = self.next_waiter.get();
        tracing::debug!(
            shard = self.shard_id,
            waiter,
            ?call,
            "classic group request"
        );
        self.next_waiter.set(waiter + 1);
        let (tx, rx) = rt::channel::bounded(1);
        self.waiters.borrow_mut().insert(
            waiter,
            (tx, call.refused(ClassicError::CoordinatorUnavailable)),
        );
        let done = {
            let mut c = self.classic.borrow_mut();
            match call {
                ClassicCall::Join(r) => c.join(now, r, waiter),
                ClassicCall::Sync(r) => c.sync(now, r, waiter),
                ClassicCall::Heartbeat(r) => {
                    vec![(waiter, ClassicReply::Heartbeat(c.heartbeat(now, &r)))]
                }
                ClassicCall::Leave(r) => {
                    let (reply, mut done) = c.leave(now, &r);
                    done.push((waiter, reply));
                    done
                }
            }
        };
        // Only this call's group can have changed.
        let changed = self.classic.borrow_mut().take_changed_in(&group);
        if let (Some(log), Some(image)) = (&log, changed) {
            self.store_image(log, &group, image).await;
        }
        self.deliver(done);
        match rx.recv().await {
            Some(reply) => reply,
            // Unreachable while the shard runs: every waiter is answered.
            None => ClassicReply::Heartbeat(Some(ClassicError::RebalanceInProgress)),
        }
    }

    /// A Kafka classic group for `group describe`: assignments decoded when
    /// they are the consumer protocol's.
    fn describe_classic(
        &self,
        group: &str,
        d: crate::group::classic::ClassicDescription,
    ) -> GroupDescription {
        let c = self.coordinator.borrow();
        GroupDescription {
            group: group.to_owned(),
            error: None,
            state: classic_state_name(d.state).to_owned(),
            group_epoch: d.generation.max(0) as u32,
            strategy: d.protocol,
            coordinator_shard: self.shard_id,
            members: d
                .members
                .into_iter()
                .map(|m| {
                    let assignment = crate::group::classic::consumer_assignment(&m.assignment)
                        .map(|tps| from_tps(&tps))
                        .unwrap_or_default();
                    GroupMember {
                        member_id: m.member_id,
                        client_id: m.client_id,
                        member_epoch: d.generation,
                        owned: assignment.clone(),
                        assignment,
                        subscribed_topics: Vec::new(),
                        topic_prefix: None,
                        topic_regex: None,
                    }
                })
                .collect(),
            offsets: self.all_committed(&c, group, false),
        }
    }

    /// Kafka's OffsetDelete: the group's committed offsets of the given
    /// partitions go (tombstones appended and awaited like a commit), except
    /// for topics the group consumes (GROUP_SUBSCRIBED_TO_TOPIC: a member
    /// would lose its place). A classic group with members of another
    /// protocol type than "consumer" cannot tell what it consumes: refused
    /// as a whole (`GroupNotEmpty`); no such group: `UnknownGroup`.
    /// `exists` says whether a partition exists (else
    /// UNKNOWN_TOPIC_OR_PARTITION).
    pub async fn delete_offsets(
        &self,
        log: &Rc<Partition>,
        group: &str,
        topics: &[(String, Vec<i32>)],
        exists: impl Fn(&str, i32) -> bool,
    ) -> Result<Vec<(String, i32, Option<WireError>)>, WireError> {
        let classic = self.classic.borrow().describe(group);
        let mut results = Vec::new();
        let tombstones: Vec<(Bytes, Option<Bytes>)> = {
            let c = self.coordinator.borrow();
            let native = c.group(group);
            let has_offsets = c.offsets().for_group(group).next().is_some();
            if classic.is_none() && native.is_none() && !has_offsets {
                return Err(GroupError::UnknownGroup {
                    group_id: group.to_owned(),
                }
                .to_wire());
            }
            // What the classic members consume, from their subscriptions
            // (None: cannot tell, so every topic counts as consumed).
            let classic_topics: Option<Option<BTreeSet<String>>> =
                classic.as_ref().filter(|d| !d.members.is_empty()).map(|d| {
                    d.members
                        .iter()
                        .map(|m| crate::group::classic::consumer_subscription(&m.metadata))
                        .collect::<Option<Vec<Vec<String>>>>()
                        .map(|ts| ts.into_iter().flatten().collect())
                });
            if let Some(d) = classic.as_ref().filter(|d| !d.members.is_empty()) {
                if d.protocol_type != "consumer" {
                    return Err(GroupError::GroupNotEmpty {
                        members: d.members.len(),
                    }
                    .to_wire());
                }
            }
            let consumed = |topic: &str| {
                classic_topics
                    .as_ref()
                    .is_some_and(|ts| ts.as_ref().is_none_or(|ts| ts.contains(topic)))
                    || native.is_some_and(|g| g.is_subscribed_to(topic))
            };
            let mut keys = Vec::new();
            for (topic, partitions) in topics {
                for &p in partitions {
                    let error = if p < 0 || !exists(topic, p) {
                        Some(WireError::new(
                            crate::protocol::ErrorCode::UnknownPartition,
                            format!("no partition {p} of topic '{topic}'"),
                        ))
                    } else if consumed(topic) {
                        Some(
                            GroupError::SubscribedToTopic {
                                topic: topic.clone(),
                            }
                            .to_wire(),
                        )
                    } else {
                        let tp = crate::group::TopicPartition::new(topic.as_str(), p as u32);
                        if c.committed(group, &tp).is_some() {
                            if let Ok(k) =
                                crate::group::offsets::encode_key(&crate::group::OffsetKey {
                                    group: group.to_owned(),
                                    tp,
                                })
                            {
                                keys.push((k, None));
                            }
                        }
                        None
                    };
                    results.push((topic.clone(), p, error));
                }
            }
            keys
        };
        if !tombstones.is_empty() {
            self.append(log, &tombstones).await?;
        }
        tracing::info!(
            shard = self.shard_id,
            group,
            offsets = tombstones.len(),
            "committed offsets deleted"
        );
        Ok(results)
    }

    /// Kafka's DeleteGroups: a group without members loses its committed
    /// offsets (tombstones appended to its offsets partition and awaited
    /// like a commit, so the deletion survives a restart) and its state.
    /// Errors: `GroupNotEmpty` while it has members, `UnknownGroup`.
    pub async fn delete(&self, log: &Rc<Partition>, group: &str) -> Option<WireError> {
        let members = self
            .classic
            .borrow()
            .describe(group)
            .map_or(0, |d| d.members.len());
        let tombstones: Vec<(Bytes, Option<Bytes>)> = {
            let c = self.coordinator.borrow();
            let native = c.group(group).map_or(0, |g| g.describe().members.len());
            if members + native > 0 {
                return Some(
                    GroupError::GroupNotEmpty {
                        members: members + native,
                    }
                    .to_wire(),
                );
            }
            let keys: Vec<Bytes> = c
                .offsets()
                .for_group(group)
                .filter_map(|(tp, _)| {
                    crate::group::offsets::encode_key(&crate::group::OffsetKey {
                        group: group.to_owned(),
                        tp: tp.clone(),
                    })
                    .ok()
                })
                .collect();
            if keys.is_empty() && c.group(group).is_none() && !self.classic_known(group) {
                return Some(
                    GroupError::UnknownGroup {
                        group_id: group.to_owned(),
                    }
                    .to_wire(),
                );
            }
            keys.into_iter().map(|k| (k, None)).collect()
        };
        if !tombstones.is_empty() {
            if let Err(e) = self.append(log, &tombstones).await {
                return Some(e);
            }
        }
        // Offsets are gone (applied at append); the member-less states go too.
        let _ = self.coordinator.borrow_mut().delete_group(group);
        self.classic.borrow_mut().prune();
        tracing::info!(
            shard = self.shard_id,
            group,
            offsets = tombstones.len(),
            "group deleted"
        );
        None
    }

    fn classic_known(&self, group: &str) -> bool {
        self.classic.borrow().describe(group).is_some()
    }

    /// Kafka's DescribeGroups of one group: a classic group with its
    /// opaque member metadata and assignments; any other as the native
    /// describe.
    pub fn describe_kafka(&self, group: &str) -> KafkaGroupDescription {
        let classic = self.classic.borrow().describe(group);
        match classic {
            Some(description) => KafkaGroupDescription::Classic {
                group: group.to_owned(),
                description,
            },
            None => KafkaGroupDescription::Native(self.describe(group)),
        }
    }

    pub fn heartbeat(
        &self,
        client_id: Option<&str>,
        r: GroupHeartbeatRequest,
    ) -> Result<Response, WireError> {
        let strategy =
            match r.strategy.as_deref() {
                None | Some("") => None,
                Some(s) => Some(Strategy::parse(s).ok_or_else(|| {
                    GroupError::UnsupportedStrategy { name: s.to_owned() }.to_wire()
                })?),
            };
        let subscription = match (r.topics, r.topic_prefix, r.topic_regex) {
            (_, _, Some(re)) if !re.is_empty() => Some(Subscription::Regex(
                TopicRegex::new(&re).map_err(|e| e.to_wire())?,
            )),
            (_, Some(p), _) if !p.is_empty() => Some(Subscription::Prefix(p)),
            (Some(ts), _, _) => Some(Subscription::topics(ts)),
            (None, _, _) => None,
        };
        let req = HeartbeatRequest {
            member_id: (!r.member_id.is_empty()).then_some(r.member_id),
            member_epoch: r.member_epoch,
            client_id: r
                .client_id
                .as_deref()
                .or(client_id)
                .unwrap_or("")
                .to_owned(),
            subscription,
            strategy,
            session_timeout_ms: r.session_timeout_ms,
            max_poll_interval_ms: r.max_poll_interval_ms,
            owned: r.owned.as_deref().map(to_tps),
            polled: r.polled,
        };
        if self.classic.borrow().has_members(&r.group) {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "group '{}' is a Kafka classic-protocol group with active members",
                    r.group
                ),
            ));
        }
        let now = self.now_ms();
        let resp = self
            .coordinator
            .borrow_mut()
            .heartbeat(&r.group, now, req)
            .map_err(|e| e.to_wire())?;
        Ok(Response::GroupHeartbeat(GroupHeartbeatResponse {
            member_id: resp.member_id,
            member_epoch: resp.member_epoch,
            heartbeat_interval_ms: resp.heartbeat_interval_ms,
            assignment: from_tps(&resp.assignment),
        }))
    }

    pub fn leave(&self, r: LeaveGroupRequest) -> Result<Response, WireError> {
        self.coordinator
            .borrow_mut()
            .leave(&r.group, &r.member_id, r.member_epoch)
            .map_err(|e| e.to_wire())?;
        tracing::debug!(shard = self.shard_id, group = %r.group, member = %r.member_id, "member left");
        Ok(Response::LeaveGroup)
    }

    /// Checks each partition's commit, appends the accepted ones as one
    /// batch to `log` (the group's offsets partition), and answers once that
    /// batch is durable. Commits arriving together share the group commit's
    /// fdatasync, like produces: no fsync per commit. `exists`: whether a
    /// topic's partition exists (a commit to one that does not is refused
    /// with UnknownTopic, as Kafka does, instead of stored).
    ///
    /// `txn`: TxnOffsetCommit for this producer id: the commits are held
    /// for its transaction (`end_txn` applies or drops them); without a
    /// member id (TxnOffsetCommit before v3) nothing checks membership, as
    /// in Kafka.
    pub async fn commit(
        &self,
        log: &Rc<Partition>,
        r: OffsetCommitRequest,
        exists: impl Fn(&str, u32) -> bool,
        txn: Option<i64>,
    ) -> Response {
        let now_wall = rt::now_ms();
        let mut results: Vec<TopicPartitionErrors> = Vec::with_capacity(r.topics.len());
        let mut records: Vec<(Bytes, Bytes)> = Vec::new();
        {
            let c = self.coordinator.borrow();
            // A Kafka classic group checks generations itself; `Ok(false)`:
            // not one, the native coordinator checks.
            let classic = self
                .classic
                .borrow()
                .check_commit(&r.group, &r.member_id, r.member_epoch)
                .map_err(|e| e.to_wire());
            for t in &r.topics {
                let mut parts = Vec::with_capacity(t.partitions.len());
                for p in &t.partitions {
                    let commit = OffsetCommit {
                        group: r.group.clone(),
                        topic: t.name.clone(),
                        partition: p.partition,
                        offset: p.offset,
                        metadata: p.metadata.clone(),
                        commit_ts_ms: now_wall.max(0) as u64,
                        // Kafka stores what the client sent; below -1 means
                        // nothing.
                        leader_epoch: p.leader_epoch.max(-1),
                    };
                    let error = if !exists(&t.name, p.partition) {
                        Some(WireError::new(
                            ErrorCode::UnknownTopic,
                            format!("no partition {} of topic '{}'", p.partition, t.name),
                        ))
                    } else if p.offset < 0 {
                        Some(WireError::new(
                            ErrorCode::InvalidRequest,
                            format!("offset {} is negative", p.offset),
                        ))
                    } else {
                        let unchecked = txn.is_some() && r.member_id.is_empty();
                        let checked = match &classic {
                            _ if unchecked => {
                                commit.record().map_err(|e| GroupError::from(e).to_wire())
                            }
                            Err(e) => Err(e.clone()),
                            Ok(true) => commit.record().map_err(|e| GroupError::from(e).to_wire()),
                            Ok(false) => c
                                .prepare_commit(&r.member_id, r.member_epoch, &commit)
                                .map_err(|e| e.to_wire()),
                        };
                        let checked = match (checked, txn) {
                            (Ok((_, v)), Some(pid)) => {
                                crate::group::offsets::encode_pending_key(&commit.key(), pid)
                                    .map(|k| (k, v))
                                    .map_err(|e| GroupError::from(e).to_wire())
                            }
                            (other, _) => other,
                        };
                        match checked {
                            Ok(kv) => {
                                records.push(kv);
                                None
                            }
                            Err(e) => Some(e),
                        }
                    };
                    parts.push(PartitionError {
                        partition: p.partition,
                        error,
                    });
                }
                results.push(TopicPartitionErrors {
                    name: t.name.clone(),
                    partitions: parts,
                });
            }
        }
        if records.is_empty() {
            return Response::OffsetCommit(results);
        }
        let records: Vec<(Bytes, Option<Bytes>)> =
            records.into_iter().map(|(k, v)| (k, Some(v))).collect();
        if let Err(e) = self.append(log, &records).await {
            for t in &mut results {
                for p in &mut t.partitions {
                    if p.error.is_none() {
                        p.error = Some(e.clone());
                    }
                }
            }
        }
        Response::OffsetCommit(results)
    }

    /// Ends `producer_id`'s transaction on this offsets partition: its
    /// held commits become committed offsets (`commit`) or are dropped,
    /// durably, before the coordinator hears of it.
    pub async fn end_txn(
        &self,
        log: &Rc<Partition>,
        producer_id: i64,
        commit: bool,
    ) -> Result<(), WireError> {
        let records = self
            .coordinator
            .borrow()
            .offsets()
            .end_txn_records(producer_id, commit)
            .map_err(|e| GroupError::from(e).to_wire())?;
        if records.is_empty() {
            return Ok(());
        }
        self.append(log, &records).await
    }

    /// Appends commit records as one batch, applies them, and waits until
    /// the batch reached the level a durable produce waits for.
    async fn append(
        &self,
        log: &Rc<Partition>,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<(), WireError> {
        let ts = rt::now_ms();
        let mut b = BatchBuilder::with_capacity(
            ts,
            64 + records
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 16)
                .sum::<usize>(),
        );
        for (k, v) in records {
            b.push(ts, Some(k), v.as_deref(), &[]);
        }
        let batch = b.finish();
        let appended = log.append(&batch).map_err(|e| e.to_wire())?;
        // Applied now, in append (= log) order; the answer still waits for
        // durability below, so no client acts on a commit that could be lost.
        {
            let mut c = self.coordinator.borrow_mut();
            // Group images are the classic groups' own state, already
            // current in memory; only replay applies them.
            for (k, v) in records.iter().filter(|(k, _)| !snapshot::is_image_key(k)) {
                c.apply(k, v.as_deref())
                    .expect("a record the coordinator just encoded decodes");
            }
        }
        log.flush_to(appended.next_offset, log.durable_level())
            .await
            .map_err(|e| e.to_wire())
    }

    pub fn offset_fetch(&self, r: OffsetFetchRequest) -> Response {
        let c = self.coordinator.borrow();
        let committed = |topic: &str, p: u32| {
            let tp = TopicPartition::new(topic, p);
            let unstable = r.require_stable && c.offsets().is_pending(&r.group, &tp);
            let mut o = match c.committed(&r.group, &tp) {
                Some(v) => CommittedOffset {
                    partition: p,
                    offset: v.offset,
                    metadata: v.metadata.clone(),
                    commit_timestamp: v.commit_ts_ms as i64,
                    leader_epoch: v.leader_epoch,
                    unstable: false,
                },
                None => CommittedOffset {
                    partition: p,
                    offset: -1,
                    metadata: String::new(),
                    commit_timestamp: -1,
                    leader_epoch: -1,
                    unstable: false,
                },
            };
            o.unstable = unstable;
            o
        };
        let out = match r.topics {
            Some(ts) => ts
                .iter()
                .map(|t| CommittedTopic {
                    name: t.topic.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|&p| committed(&t.topic, p))
                        .collect(),
                })
                .collect(),
            None => self.all_committed(&c, &r.group, r.require_stable),
        };
        Response::OffsetFetch(out)
    }

    fn all_committed(&self, c: &Coordinator, group: &str, r_stable: bool) -> Vec<CommittedTopic> {
        let mut out: Vec<CommittedTopic> = Vec::new();
        for (tp, v) in c.offsets().for_group(group) {
            let o = CommittedOffset {
                partition: tp.partition,
                offset: v.offset,
                metadata: v.metadata.clone(),
                commit_timestamp: v.commit_ts_ms as i64,
                leader_epoch: v.leader_epoch,
                unstable: r_stable && c.offsets().is_pending(group, tp),
            };
            match out.last_mut() {
                Some(t) if t.name == tp.topic => t.partitions.push(o),
                _ => out.push(CommittedTopic {
                    name: tp.topic.clone(),
                    partitions: vec![o],
                }),
            }
        }
        out
    }

    pub fn list(&self) -> Vec<GroupListing> {
        let mut classic = self.classic.borrow_mut();
        classic.prune();
        let classic: Vec<GroupListing> = classic
            .list()
            .into_iter()
            .map(|(group, state, protocol, members)| GroupListing {
                group,
                state: classic_state_name(state).to_owned(),
                members: members as u32,
                strategy: protocol,
                coordinator_shard: self.shard_id,
            })
            .collect();
        let c = self.coordinator.borrow();
        let mut all: Vec<GroupListing> = c
            .list()
            .into_iter()
            .map(|g| GroupListing {
                strategy: c
                    .describe(&g.group_id)
                    .and_then(|d| d.strategy)
                    .map_or("", Strategy::as_str)
                    .to_owned(),
                group: g.group_id,
                state: state_name(g.state).to_owned(),
                members: g.members as u32,
                coordinator_shard: self.shard_id,
            })
            .filter(|g| !classic.iter().any(|x| x.group == g.group))
            .collect();
        all.extend(classic);
        all.sort_by(|a, b| a.group.cmp(&b.group));
        all
    }

    pub fn describe(&self, group: &str) -> GroupDescription {
        if let Some(d) = self
            .classic
            .borrow()
            .describe(group)
            .filter(|d| !d.members.is_empty())
        {
            return self.describe_classic(group, d);
        }
        let c = self.coordinator.borrow();
        let Some(d) = c.describe(group) else {
            return GroupDescription {
                group: group.to_owned(),
                error: Some(WireError::new(
                    ErrorCode::UnknownGroup,
                    format!("unknown group '{group}': no members and no committed offsets"),
                )),
                state: String::new(),
                group_epoch: 0,
                strategy: String::new(),
                coordinator_shard: self.shard_id,
                members: Vec::new(),
                offsets: Vec::new(),
            };
        };
        GroupDescription {
            group: group.to_owned(),
            error: None,
            state: state_name(d.state).to_owned(),
            group_epoch: d.group_epoch,
            strategy: d.strategy.map_or("", Strategy::as_str).to_owned(),
            coordinator_shard: self.shard_id,
            members: d
                .members
                .into_iter()
                .map(|m| {
                    let (subscribed_topics, topic_prefix, topic_regex) = match m.subscription {
                        Subscription::Topics(ts) => (ts.into_iter().collect(), None, None),
                        Subscription::Prefix(p) => (Vec::new(), Some(p), None),
                        Subscription::Regex(re) => (Vec::new(), None, Some(re.as_str().to_owned())),
                    };
                    GroupMember {
                        member_id: m.member_id,
                        client_id: m.client_id,
                        member_epoch: m.member_epoch,
                        assignment: from_tps(&m.assignment),
                        owned: from_tps(&m.owned),
                        subscribed_topics,
                        topic_prefix,
                        topic_regex,
                    }
                })
                .collect(),
            offsets: self.all_committed(&c, group, false),
        }
    }
}
