//! One shard: the state one executor owns, and the request handlers over it.
//!
//! Owns: the shard's topics and partitions (opened, created, closed here),
//! turning typed requests into typed responses, and the mapping of library
//! errors to wire error codes (through `errors`, the one place it happens).
//!
//! Every shard knows every topic (its `TopicMeta`: partitions, owners,
//! settings) but opens only the partitions it owns; requests reaching
//! `dispatch` name only those (the router splits the rest off to their
//! owners). Topic creation and deletion are driven by the router's
//! controller (shard 0), which calls `open_topic`/`drop_topic` on every shard.
//!
//! Must never: do socket I/O (the server does), touch another shard's
//! partitions, or share its state with another thread: everything here is
//! `Rc`, reached only from its executor.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;

use crate::errors::ToWire;
use crate::partition::{Appended, FsyncPolicy, Level, Partition, PartitionConfig};
use crate::protocol::*;
use crate::rt;
use crate::storage::meta::{self, TopicMeta, MAX_PARTITIONS};
use crate::storage::{
    is_internal_topic, validate_topic_name, StorageError, OFFSETS_PARTITIONS, OFFSETS_TOPIC,
    TXN_PARTITIONS, TXN_TOPIC,
};

#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub shard_id: u16,
    pub data_dir: PathBuf,
    /// Broker-wide partition settings; `partition.log` holds the defaults
    /// each topic's overrides apply to.
    pub partition: PartitionConfig,
    /// How often retention looks for segments to delete.
    pub retention_check: std::time::Duration,
    /// Compaction's budget on this shard, and how often it looks for logs
    /// due for a cleaning.
    pub cleaner_limits: crate::storage::cleaner::Limits,
    pub cleaner_check: std::time::Duration,
    /// Metadata requests that allow it create the topics they name that do
    /// not exist, with this many partitions (Kafka's
    /// `auto.create.topics.enable` and `num.partitions`); None: off.
    pub auto_create_partitions: Option<u32>,
    /// Partitions of a topic created without a count (`num.partitions`).
    pub num_partitions: u32,
    /// Kafka's group.initial.rebalance.delay.ms, for classic groups.
    pub group_initial_rebalance_delay: std::time::Duration,
    /// Memory for tail buffers (half of it) and unwritten bytes (the other
    /// half, `partition.memory`).
    pub memory_budget: u64,
    /// Shards in this broker.
    pub shard_count: u16,
    /// Every shard as clients reach it (Metadata answers with these).
    pub nodes: Vec<NodeInfo>,
}

struct Topic {
    meta: TopicMeta,
    /// By partition id: Some for the partitions this shard owns.
    partitions: Vec<Option<Rc<Partition>>>,
}

pub struct Shard {
    config: ShardConfig,
    /// Set by `close`: the background loops end.
    stopping: std::cell::Cell<bool>,
    topics: RefCell<BTreeMap<String, Topic>>,
    /// Topic id -> name, for the requests that name topics by id (Kafka's
    /// Fetch v13+); kept with `topics`.
    topic_ids: RefCell<HashMap<[u8; 16], String>>,
    /// Topics whose creation is under way (files being opened).
    creating: RefCell<HashSet<String>>,
    /// The consumer groups this shard coordinates (those whose offsets
    /// partition it owns).
    groups: crate::coordinator_host::CoordinatorHost,
    /// The transactional ids this shard coordinates (those whose partition
    /// of the transaction log it owns).
    txns: Rc<crate::txn_host::TxnHost>,
    /// This shard's producer ids: InitProducerId without a transactional
    /// id (answered where it arrives) and the coordinator's new ids alike.
    producer_ids: Rc<RefCell<crate::producer_state::ProducerIds>>,
    /// The broker's SCRAM users, this shard's copy: read at open, replaced
    /// whole when the controller changes them (`set_users`).
    users: RefCell<Rc<crate::security::users::Users>>,
    /// The broker's ACLs, this shard's copy (checked here without a lock:
    /// the controller writes them, then replaces every shard's copy whole).
    acls: RefCell<Rc<crate::security::acl::Acls>>,
    /// The broker's client quotas, this shard's copy (as the ACLs).
    quotas: RefCell<Rc<crate::security::quota::Quotas>>,
}

/// The log cleaner's CPU shares against the data path's 1000: when both
/// have work, a cleaning gets about a tenth of the shard's CPU.
const CLEANER_SHARES: usize = 100;

/// Longest a fetch may wait for data (Kafka caps it by its request timeout).
pub const MAX_FETCH_WAIT_MS: u32 = 60_000;

pub type ResponseFuture = Pin<Box<dyn Future<Output = ResponseFrame>>>;

fn unknown_topic(name: &str) -> WireError {
    WireError::new(ErrorCode::UnknownTopic, format!("unknown topic '{name}'"))
}

fn unknown_partition(name: &str, p: u32, count: usize) -> WireError {
    WireError::new(
        ErrorCode::UnknownPartition,
        format!(
            "topic '{name}' has no partition {p} (it has {count}: 0..{})",
            count.saturating_sub(1)
        ),
    )
}

impl Shard {
    /// Opens the shard: the polled-I/O probe first (before any segment), then
    /// the partitions it owns of every topic in `metas` (the broker loaded
    /// and, for a new shard count, reassigned them before the shards started).
    pub async fn open(
        config: ShardConfig,
        metas: Vec<TopicMeta>,
    ) -> Result<Rc<Shard>, StorageError> {
        std::fs::create_dir_all(crate::storage::topics_dir(&config.data_dir))
            .map_err(|e| StorageError::io("create dir", &config.data_dir, e))?;
        rt::probe_polled_io(&config.data_dir)
            .await
            .map_err(|e| StorageError::io("polled-I/O probe in", &config.data_dir, e))?;
        let producer_ids = Rc::new(RefCell::new(crate::producer_state::ProducerIds::new(
            config.shard_id,
        )));
        let users = crate::storage::load_users(&config.data_dir)?;
        let acls = crate::storage::load_acls(&config.data_dir)?;
        let quotas = crate::storage::load_quotas(&config.data_dir)?;
        let shard = Rc::new(Shard {
            users: RefCell::new(Rc::new(users)),
            acls: RefCell::new(Rc::new(acls)),
            quotas: RefCell::new(Rc::new(quotas)),
            txns: Rc::new(crate::txn_host::TxnHost::new(
                config.shard_id,
                TXN_PARTITIONS,
                crate::txn::coordinator::DEFAULT_MAX_TIMEOUT_MS,
                producer_ids.clone(),
            )),
            producer_ids,
            config: config.clone(),
            stopping: std::cell::Cell::new(false),
            topics: RefCell::new(BTreeMap::new()),
            topic_ids: RefCell::new(HashMap::new()),
            creating: RefCell::new(HashSet::new()),
            groups: crate::coordinator_host::CoordinatorHost::new(
                config.shard_id,
                config.group_initial_rebalance_delay,
            ),
        });
        let id = shard.config.shard_id;
        let count: u64 = metas
            .iter()
            .filter(|m| !is_internal_topic(&m.name))
            .map(|m| m.owners.iter().filter(|&&o| o == id).count() as u64)
            .sum();
        if count * MIN_TAIL_BUFFER_BYTES as u64 > shard.config.memory_budget / 2 {
            tracing::warn!(
                shard = id,
                partitions = count,
                budget = shard.config.memory_budget,
                "the memory budget is too small for this many partitions at the smallest tail buffer; \
                 tail buffers may exceed it (raise --memory-budget)"
            );
        }
        for m in metas {
            let name = m.name.clone();
            shard
                .open_topic(m)
                .await
                .map_err(|detail| StorageError::Corrupt {
                    path: crate::storage::topic_dir(&shard.config.data_dir, &name),
                    detail,
                })?;
        }
        // Committed offsets of the groups and the transactions coordinated
        // here, before any client can ask for them.
        for topic in [OFFSETS_TOPIC, TXN_TOPIC] {
            let logs: Vec<Rc<Partition>> = shard
                .topics
                .borrow()
                .get(topic)
                .map(|t| t.partitions.iter().flatten().cloned().collect())
                .unwrap_or_default();
            for log in logs {
                let n = if topic == OFFSETS_TOPIC {
                    shard.groups.replay(&log).await
                } else {
                    shard.txns.replay(&log).await
                }
                .map_err(|detail| StorageError::Corrupt {
                    path: log.dir().to_path_buf(),
                    detail,
                })?;
                if n > 0 {
                    tracing::info!(
                        shard = id,
                        topic,
                        partition = log.id(),
                        records = n,
                        "coordinator state loaded"
                    );
                }
            }
        }
        Ok(shard)
    }

    pub fn txns(&self) -> &Rc<crate::txn_host::TxnHost> {
        &self.txns
    }

    pub fn producer_ids(&self) -> &Rc<RefCell<crate::producer_state::ProducerIds>> {
        &self.producer_ids
    }

    /// The SCRAM users as this shard knows them.
    pub fn users(&self) -> Rc<crate::security::users::Users> {
        self.users.borrow().clone()
    }

    /// The controller changed the users: this shard's copy is replaced.
    pub fn set_users(&self, users: crate::security::users::Users) {
        *self.users.borrow_mut() = Rc::new(users);
    }

    /// The ACLs as this shard knows them.
    pub fn acls(&self) -> Rc<crate::security::acl::Acls> {
        self.acls.borrow().clone()
    }

    /// The controller changed the ACLs: this shard's copy is replaced.
    pub fn set_acls(&self, acls: crate::security::acl::Acls) {
        *self.acls.borrow_mut() = Rc::new(acls);
    }

    /// The client quotas as this shard knows them.
    pub fn quotas(&self) -> Rc<crate::security::quota::Quotas> {
        self.quotas.borrow().clone()
    }

    /// The controller changed the quotas: this shard's copy is replaced.
    pub fn set_quotas(&self, quotas: crate::security::quota::Quotas) {
        *self.quotas.borrow_mut() = Rc::new(quotas);
    }

    /// Applies a transaction coordinator's action on partitions this shard
    /// owns: opens the producer's transaction, or writes its marker and
    /// waits until the marker is as durable as a produce.
    pub async fn txn_apply(
        &self,
        action: crate::txn_host::TxnAction,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<crate::group::TopicPartition>,
    ) -> Vec<(crate::group::TopicPartition, Option<WireError>)> {
        use crate::txn_host::TxnAction;
        let mut out = Vec::with_capacity(partitions.len());
        for tp in partitions {
            let part = match self.partition(&tp.topic, tp.partition) {
                Ok(p) => p,
                Err(e) => {
                    out.push((tp, Some(e)));
                    continue;
                }
            };
            if tp.topic == OFFSETS_TOPIC {
                // A group's offsets partition (AddOffsetsToTxn): the
                // transaction's held commits are the group coordinator's,
                // here; no marker goes into the offsets log.
                let r = match action {
                    TxnAction::Open => Ok(()),
                    TxnAction::End(outcome) => {
                        self.groups
                            .end_txn(&part, producer_id, outcome == crate::txn::Outcome::Commit)
                            .await
                    }
                };
                out.push((tp, r.err()));
                continue;
            }
            let r = match action {
                TxnAction::Open => {
                    part.open_txn(producer_id, epoch);
                    Ok(())
                }
                TxnAction::End(outcome) => {
                    let marker = match outcome {
                        crate::txn::Outcome::Commit => crate::batch::Marker::Commit,
                        crate::txn::Outcome::Abort => crate::batch::Marker::Abort,
                    };
                    part.write_marker(producer_id, epoch, marker, 0)
                        .await
                        .map_err(|e| e.to_wire())
                }
            };
            out.push((tp, r.err()));
        }
        out
    }

    /// Registers a topic and opens the partitions this shard owns of it.
    /// A topic already open with fewer partitions (CreatePartitions grew it)
    /// keeps the ones it has and opens the new ones.
    pub async fn open_topic(&self, m: TopicMeta) -> Result<(), String> {
        let have = self
            .topics
            .borrow()
            .get(&m.name)
            .map(|t| t.partitions.len());
        if let Some(have) = have {
            return self.grow_topic(m, have).await;
        }
        let id = self.config.shard_id;
        let mut pc = topic_config(&self.config.partition, &m.configs, m.offset_holes)?;
        let owned_before: u64 = self
            .topics
            .borrow()
            .values()
            .filter(|t| !is_internal_topic(&t.meta.name))
            .map(|t| t.partitions.iter().flatten().count() as u64)
            .sum();
        let mine = m.owners.iter().filter(|&&o| o == id).count() as u64;
        pc.tail_buffer_bytes = if is_internal_topic(&m.name) {
            // Offset commits are small records: the smallest tail buffer,
            // not counted against the partition room of `--memory-budget`
            // (OFFSETS_PARTITIONS x 64 KiB per broker in all).
            MIN_TAIL_BUFFER_BYTES
        } else {
            tail_buffer_for(self.config.memory_budget, owned_before + mine)
        };
        let mut partitions = Vec::with_capacity(m.owners.len());
        for (p, &owner) in m.owners.iter().enumerate() {
            partitions.push(if owner == id {
                Some(
                    Partition::open(&self.config.data_dir, &m.name, p as u32, pc.clone())
                        .await
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            });
        }
        if mine > 0 {
            tracing::info!(shard = id, topic = %m.name, partitions = mine, "partitions opened");
        }
        self.topic_ids.borrow_mut().insert(m.id, m.name.clone());
        self.topics.borrow_mut().insert(
            m.name.clone(),
            Topic {
                meta: m,
                partitions,
            },
        );
        self.topics_changed();
        Ok(())
    }

    /// Opens this shard's partitions among the new ones of a grown topic,
    /// applies changed settings to the ones it has (IncrementalAlterConfigs
    /// sends the same partition count), then takes its new metadata.
    async fn grow_topic(&self, m: TopicMeta, have: usize) -> Result<(), String> {
        if m.owners.len() < have {
            return Err(format!(
                "topic '{}' cannot shrink from {have} to {} partitions",
                m.name,
                m.owners.len()
            ));
        }
        let id = self.config.shard_id;
        let mut pc = topic_config(&self.config.partition, &m.configs, m.offset_holes)?;
        let owned: u64 = self
            .topics
            .borrow()
            .values()
            .filter(|t| !is_internal_topic(&t.meta.name))
            .map(|t| t.partitions.iter().flatten().count() as u64)
            .sum();
        let mine = m.owners[have..].iter().filter(|&&o| o == id).count() as u64;
        pc.tail_buffer_bytes = tail_buffer_for(self.config.memory_budget, owned + mine);
        let mut opened = Vec::with_capacity(m.owners.len() - have);
        for (p, &owner) in m.owners.iter().enumerate().skip(have) {
            opened.push(if owner == id {
                Some(
                    Partition::open(&self.config.data_dir, &m.name, p as u32, pc.clone())
                        .await
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            });
        }
        {
            let mut topics = self.topics.borrow_mut();
            let t = topics
                .get_mut(&m.name)
                .ok_or_else(|| format!("topic '{}' went away while growing", m.name))?;
            if t.meta.configs != m.configs {
                for p in t.partitions.iter().flatten() {
                    p.set_topic_config(pc.log, pc.max_batch_bytes);
                }
                tracing::info!(shard = id, topic = %m.name, "topic settings changed: {:?}", m.configs);
            }
            t.partitions.extend(opened);
            t.meta = m;
        }
        if mine > 0 {
            tracing::info!(shard = id, "new partitions opened: {mine}");
        }
        self.topics_changed();
        Ok(())
    }

    /// The name of the topic with this id, if one has it.
    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<String> {
        self.topic_ids.borrow().get(id).cloned()
    }

    /// A topic's id, if the topic exists.
    pub fn topic_id(&self, name: &str) -> Option<[u8; 16]> {
        self.topics.borrow().get(name).map(|t| t.meta.id)
    }

    /// The metadata of a topic, if it exists.
    pub fn topic_meta(&self, name: &str) -> Option<TopicMeta> {
        self.topics.borrow().get(name).map(|t| t.meta.clone())
    }

    /// Tells the group coordinator the topics groups may subscribe to (so
    /// topics created later reach matching subscriptions): the users'
    /// topics (groups are never given the offsets topic).
    fn topics_changed(&self) {
        let topics = self
            .topics
            .borrow()
            .iter()
            .filter(|(n, _)| !is_internal_topic(n))
            .map(|(n, t)| (n.clone(), t.meta.owners.len() as u32))
            .collect();
        self.groups.metadata_changed(topics);
    }

    /// Unregisters a topic (new requests get UnknownTopic at once) and
    /// closes the partitions this shard owns of it (appends already accepted
    /// are written first). The controller removes the files afterwards.
    pub async fn drop_topic(&self, name: &str) -> Result<(), String> {
        let topic = self.topics.borrow_mut().remove(name);
        if let Some(t) = &topic {
            self.topic_ids.borrow_mut().remove(&t.meta.id);
        }
        let Some(topic) = topic else {
            return Ok(());
        };
        self.topics_changed();
        for p in topic.partitions.iter().flatten() {
            if let Err(e) = p.close().await {
                tracing::warn!(topic = name, partition = p.id(), "close before delete: {e}");
            }
        }
        Ok(())
    }

    /// Owner shard of a partition, if the topic and partition exist.
    pub fn owner(&self, topic: &str, p: u32) -> Option<u16> {
        self.topics
            .borrow()
            .get(topic)
            .and_then(|t| t.meta.owners.get(p as usize).copied())
    }

    pub fn topic_exists(&self, name: &str) -> bool {
        self.topics.borrow().contains_key(name)
    }

    /// Partitions of an auto-created topic; None: auto-creation is off.
    pub fn auto_create_partitions(&self) -> Option<u32> {
        self.config.auto_create_partitions
    }

    /// Partitions of a topic created without a count (Kafka's -1).
    pub fn num_partitions(&self) -> u32 {
        self.config.num_partitions
    }

    pub fn shard_count(&self) -> u16 {
        self.config.shard_count
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.config.data_dir
    }

    pub fn id(&self) -> u16 {
        self.config.shard_id
    }

    /// The shard's metrics.
    pub fn metrics(&self) -> &std::sync::Arc<crate::metrics::ShardMetrics> {
        &self.config.partition.metrics
    }

    /// The gauge of unwritten bytes producers wait on.
    pub fn memory(&self) -> &crate::memory::MemoryGauge {
        &self.config.partition.memory
    }

    fn all_partitions(&self) -> Vec<Rc<Partition>> {
        self.topics
            .borrow()
            .values()
            .flat_map(|t| t.partitions.iter().flatten().cloned())
            .collect()
    }

    /// Starts the shard's background loops: the fsync timer of
    /// `--fsync interval:MS` and the retention check. Both end at `close`.
    pub fn start_background(self: &Rc<Self>) {
        if let FsyncPolicy::Interval(every) = self.config.partition.fsync {
            let shard = self.clone();
            rt::spawn(async move {
                while !shard.stopping.get() {
                    rt::sleep(every).await;
                    for p in shard.all_partitions() {
                        if let Err(e) = p.sync_now().await {
                            tracing::error!(
                                topic = p.topic(),
                                partition = p.id(),
                                "interval fsync: {e}"
                            );
                        }
                    }
                }
            })
            .detach();
        }
        let shard = self.clone();
        rt::spawn(async move {
            let every = std::time::Duration::from_millis(crate::txn_host::TIMEOUT_CHECK_MS);
            while !shard.stopping.get() {
                rt::sleep(every).await;
                shard.txns.check_timeouts().await;
            }
        })
        .detach();
        let shard = self.clone();
        rt::spawn(async move {
            let every = std::time::Duration::from_millis(crate::coordinator_host::EXPIRY_CHECK_MS);
            while !shard.stopping.get() {
                rt::sleep(every).await;
                for (group, image) in shard.groups.expire() {
                    if let Ok(log) = shard.offsets_log(&group) {
                        shard.groups.store_image(&log, &group, image).await;
                    }
                }
            }
        })
        .detach();
        let shard = self.clone();
        rt::spawn(async move {
            while !shard.stopping.get() {
                rt::sleep(shard.config.retention_check).await;
                if shard.stopping.get() {
                    break;
                }
                let now = rt::now_ms();
                for p in shard.all_partitions() {
                    if let Err(e) = p.enforce_retention(now).await {
                        tracing::error!(topic = p.topic(), partition = p.id(), "retention: {e}");
                    }
                }
            }
        })
        .detach();
        let shard = self.clone();
        rt::spawn_background("cleaner", CLEANER_SHARES, async move {
            while !shard.stopping.get() {
                rt::sleep(shard.config.cleaner_check).await;
                shard.clean_due_logs().await;
            }
        })
        .detach();
    }

    /// One round of the shard's log cleaner: every compacted partition due
    /// for a cleaning, dirtiest first (Kafka's order), one at a time, within
    /// the shard's I/O budget, in a task queue of low CPU shares so the
    /// data path keeps its latency.
    async fn clean_due_logs(&self) {
        let now = rt::now_ms();
        let mut due: Vec<_> = self
            .all_partitions()
            .into_iter()
            .filter(|p| p.config().log.cleanup_policy.compact)
            .collect();
        // Refresh every dirty ratio, then clean the dirtiest first.
        for p in &due {
            p.assess_cleaning(now);
        }
        due.sort_by(|a, b| {
            b.cleaner_status()
                .dirty_ratio
                .total_cmp(&a.cleaner_status().dirty_ratio)
        });
        for p in due {
            if self.stopping.get() {
                return;
            }
            match p.clean(rt::now_ms(), &self.config.cleaner_limits).await {
                Ok(None) => {}
                Ok(Some(r)) => {
                    self.config.partition.metrics.cleaned(
                        r.stats.bytes_read,
                        r.stats.bytes_written,
                        r.stats.records_read - r.stats.records_kept,
                        r.stats.tombstones_dropped,
                    );
                    tracing::info!(
                        topic = p.topic(),
                        partition = p.id(),
                        "cleaned offsets up to {}: {} of {} records kept, {} -> {} bytes, {} -> {} segments, {} tombstones removed, in {:?} ({:.0} MB/s of log)",
                        r.end,
                        r.stats.records_kept,
                        r.stats.records_read,
                        r.bytes_before,
                        r.bytes_after,
                        r.segments_before,
                        r.segments_after,
                        r.stats.tombstones_dropped,
                        r.elapsed,
                        r.stats.bytes_read as f64 / r.elapsed.as_secs_f64().max(1e-9) / 1e6
                    );
                }
                Err(e) => {
                    self.config.partition.metrics.cleaner_failed();
                    tracing::error!(topic = p.topic(), partition = p.id(), "cleaning: {e}");
                }
            }
        }
    }

    /// The offsets partition holding `group`'s commits; the router sends a
    /// group's requests to the shard that owns it.
    fn offsets_log(&self, group: &str) -> Result<Rc<Partition>, WireError> {
        let p = crate::group::offsets::partition_for_group(group, OFFSETS_PARTITIONS);
        self.partition(OFFSETS_TOPIC, p)
    }

    fn partition(&self, topic: &str, p: u32) -> Result<Rc<Partition>, WireError> {
        let topics = self.topics.borrow();
        let t = topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        // Every partition of a known topic has an owner, and this shard holds
        // exactly the partitions the metadata says it owns.
        assert_eq!(t.partitions.len(), t.meta.owners.len(), "topic '{topic}'");
        match t.partitions.get(p as usize) {
            None => Err(unknown_partition(topic, p, t.partitions.len())),
            Some(Some(part)) => {
                debug_assert_eq!(t.meta.owners[p as usize], self.config.shard_id);
                Ok(part.clone())
            }
            // The router sends a shard only its own partitions.
            Some(None) => Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "partition {p} of '{topic}' is owned by shard {}, not {}",
                    t.meta.owners[p as usize], self.config.shard_id
                ),
            )),
        }
    }

    /// Serves a Kafka-only group call of a group this shard coordinates;
    /// the returned future is the answer.
    pub fn kafka_group_call(
        self: &Rc<Self>,
        call: crate::coordinator_host::KafkaGroupCall,
    ) -> Pin<Box<dyn Future<Output = crate::coordinator_host::KafkaGroupReply>>> {
        use crate::coordinator_host::{KafkaGroupCall, KafkaGroupReply};
        let shard = self.clone();
        match call {
            KafkaGroupCall::Classic(c) => {
                let c = *c;
                Box::pin(async move {
                    let log = shard.offsets_log(c.group()).ok();
                    KafkaGroupReply::Classic(shard.groups.classic(c, log).await)
                })
            }
            KafkaGroupCall::Describe(g) => {
                let r = KafkaGroupReply::Describe(self.groups.describe_kafka(&g));
                Box::pin(async move { r })
            }
            KafkaGroupCall::Delete(g) => Box::pin(async move {
                KafkaGroupReply::Delete(match shard.offsets_log(&g) {
                    Ok(log) => shard.groups.delete(&log, &g).await,
                    Err(e) => Some(e),
                })
            }),
            KafkaGroupCall::TxnOffsetCommit {
                request,
                producer_id,
            } => Box::pin(async move {
                let log = match shard.offsets_log(&request.group) {
                    Ok(log) => log,
                    Err(e) => {
                        return KafkaGroupReply::TxnOffsetCommit(
                            request
                                .topics
                                .iter()
                                .map(|t| TopicPartitionErrors {
                                    name: t.name.clone(),
                                    partitions: t
                                        .partitions
                                        .iter()
                                        .map(|p| PartitionError {
                                            partition: p.partition,
                                            error: Some(e.clone()),
                                        })
                                        .collect(),
                                })
                                .collect(),
                        )
                    }
                };
                let exists = |t: &str, p: u32| shard.owner(t, p).is_some();
                match shard
                    .groups
                    .commit(&log, request, exists, Some(producer_id))
                    .await
                {
                    Response::OffsetCommit(r) => KafkaGroupReply::TxnOffsetCommit(r),
                    other => unreachable!("a commit answers OffsetCommit, not {other:?}"),
                }
            }),
            KafkaGroupCall::OffsetDelete { group, topics } => Box::pin(async move {
                let log = match shard.offsets_log(&group) {
                    Ok(log) => log,
                    Err(e) => return KafkaGroupReply::OffsetDelete(Err(e)),
                };
                let exists =
                    |t: &str, p: i32| u32::try_from(p).is_ok_and(|p| shard.owner(t, p).is_some());
                KafkaGroupReply::OffsetDelete(
                    shard
                        .groups
                        .delete_offsets(&log, &group, &topics, exists)
                        .await,
                )
            }),
        }
    }

    /// Handles one request. Work that must keep arrival order (appends) runs
    /// now, before this returns; the returned future does the waiting
    /// (flushes, reads), so requests of one connection overlap.
    pub fn dispatch(self: &Rc<Self>, req: RequestFrame) -> ResponseFuture {
        let correlation_id = req.correlation_id;
        if req.version == 0 || req.version > PROTOCOL_VERSION {
            let e = WireError::new(
                ErrorCode::UnsupportedVersion,
                format!("protocol version {} is not supported (this broker speaks 1..={PROTOCOL_VERSION})", req.version),
            );
            return Box::pin(async move {
                ResponseFrame {
                    correlation_id,
                    result: Err(e),
                }
            });
        }
        let done = move |r: Response| ResponseFrame {
            correlation_id,
            result: Ok(r),
        };
        match req.request {
            Request::ApiVersions => {
                let r = done(Response::ApiVersions(supported_apis()));
                Box::pin(async move { r })
            }
            Request::Metadata {
                topics,
                include_internal,
                ..
            } => {
                let r = done(Response::Metadata(self.metadata(topics, include_internal)));
                Box::pin(async move { r })
            }
            Request::ListTransactions { .. }
            | Request::DescribeTransactions(_)
            | Request::DescribeUsers(_)
            | Request::AlterUsers(_)
            | Request::DescribeAcls(_)
            | Request::AlterAcls { .. }
            | Request::DescribeQuotas
            | Request::AlterQuotas { .. }
            | Request::SaslAuthenticate { .. } => {
                // The router asks each id's coordinator, or the controller;
                // a SASL step is the door's.
                let r = ResponseFrame {
                    correlation_id,
                    result: Err(WireError::new(
                        ErrorCode::InvalidRequest,
                        "transaction, user, ACL, quota and SASL requests go through the router or the door",
                    )),
                };
                Box::pin(async move { r })
            }
            Request::CreateTopics(_)
            | Request::DeleteTopics(_)
            | Request::CreatePartitions(_)
            | Request::AlterConfigs { .. } => {
                // The router's controller handles these (one metadata writer).
                let r = ResponseFrame {
                    correlation_id,
                    result: Err(WireError::new(
                        ErrorCode::InvalidRequest,
                        "topic administration goes through the router's controller",
                    )),
                };
                Box::pin(async move { r })
            }
            Request::Produce(p) => {
                let pending = self.append_all(&p);
                Box::pin(
                    async move { done(Response::Produce(complete_produce(p.acks, pending).await)) },
                )
            }
            Request::Fetch(f) => {
                let shard = self.clone();
                Box::pin(async move { done(Response::Fetch(shard.fetch(f).await)) })
            }
            Request::ListOffsets(l) => {
                let shard = self.clone();
                Box::pin(async move { done(Response::ListOffsets(shard.list_offsets(l).await)) })
            }
            Request::DeleteRecords(d) => {
                let shard = self.clone();
                Box::pin(
                    async move { done(Response::DeleteRecords(shard.delete_records(d).await)) },
                )
            }
            Request::DescribeProducers(topics) => {
                let r = done(Response::DescribeProducers(self.describe_producers(topics)));
                Box::pin(async move { r })
            }
            Request::DescribeTopics { topics } => {
                let r = done(Response::DescribeTopics(self.describe_topics(topics)));
                Box::pin(async move { r })
            }
            Request::GroupHeartbeat(h) => {
                let r = ResponseFrame {
                    correlation_id,
                    result: self.groups.heartbeat(req.client_id.as_deref(), h),
                };
                Box::pin(async move { r })
            }
            Request::LeaveGroup(l) => {
                let r = ResponseFrame {
                    correlation_id,
                    result: self.groups.leave(l),
                };
                Box::pin(async move { r })
            }
            Request::OffsetCommit(c) => {
                let shard = self.clone();
                Box::pin(async move {
                    let result = match shard.offsets_log(&c.group) {
                        Ok(log) => {
                            let exists = |t: &str, p: u32| shard.owner(t, p).is_some();
                            Ok(shard.groups.commit(&log, c, exists, None).await)
                        }
                        Err(e) => Err(e),
                    };
                    ResponseFrame {
                        correlation_id,
                        result,
                    }
                })
            }
            Request::OffsetFetch(f) => {
                let r = done(self.groups.offset_fetch(f));
                Box::pin(async move { r })
            }
            Request::ListGroups => {
                let r = done(Response::ListGroups(self.groups.list()));
                Box::pin(async move { r })
            }
            Request::DescribeGroups(gs) => {
                let r = done(Response::DescribeGroups(
                    gs.iter().map(|g| self.groups.describe(g)).collect(),
                ));
                Box::pin(async move { r })
            }
        }
    }

    fn metadata(&self, wanted: Option<Vec<String>>, include_internal: bool) -> MetadataResponse {
        let topics = self.topics.borrow();
        let info = |name: &str, t: &Topic| TopicInfo {
            name: name.to_owned(),
            id: t.meta.id,
            error: None,
            partitions: t
                .meta
                .owners
                .iter()
                .enumerate()
                .map(|(p, &owner)| PartitionInfo {
                    partition: p as u32,
                    owner_shard: owner,
                    leader_node: owner as u32,
                })
                .collect(),
        };
        let topics = match wanted {
            // Like Kafka clients' `exclude.internal.topics`: "every topic"
            // means the users' topics; internal ones are listed when named.
            None => topics
                .iter()
                .filter(|(n, _)| include_internal || !is_internal_topic(n))
                .map(|(n, t)| info(n, t))
                .collect(),
            Some(names) => names
                .iter()
                .map(|n| match topics.get(n) {
                    Some(t) => info(n, t),
                    None => TopicInfo {
                        name: n.clone(),
                        id: [0; 16],
                        // A name no topic can have fails at once (Kafka's
                        // INVALID_TOPIC_EXCEPTION), instead of being waited
                        // for as a topic that may yet appear.
                        error: Some(match validate_topic_name(n) {
                            Ok(()) => unknown_topic(n),
                            Err(e) => WireError::new(ErrorCode::InvalidTopicName, e.to_string()),
                        }),
                        partitions: vec![],
                    },
                })
                .collect(),
        };
        MetadataResponse {
            nodes: self.config.nodes.clone(),
            topics,
        }
    }

    /// Checks a topic to create (name, partitions, settings, not existing)
    /// and marks it as being created; `creation_done` unmarks it.
    pub fn begin_create(&self, t: &CreateTopic) -> Result<BTreeMap<String, String>, WireError> {
        validate_topic_name(&t.name)
            .map_err(|e| WireError::new(ErrorCode::InvalidTopicName, e.to_string()))?;
        if is_internal_topic(&t.name) {
            return Err(WireError::new(
                ErrorCode::InvalidTopicName,
                format!(
                    "invalid topic name {:?}: names starting with '__' are reserved for the broker's internal topics",
                    t.name
                ),
            ));
        }
        if t.partitions == 0 || t.partitions > MAX_PARTITIONS {
            return Err(WireError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "a topic has 1 to {MAX_PARTITIONS} partitions, not {}",
                    t.partitions
                ),
            ));
        }
        let mut configs = BTreeMap::new();
        for (k, v) in &t.configs {
            if configs.insert(k.clone(), v.clone()).is_some() {
                return Err(WireError::new(
                    ErrorCode::InvalidConfig,
                    format!("topic config {k:?} given twice"),
                ));
            }
        }
        topic_config(&self.config.partition, &configs, false)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e))?;
        if self.topics.borrow().contains_key(&t.name)
            || !self.creating.borrow_mut().insert(t.name.clone())
        {
            return Err(WireError::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic '{}' already exists", t.name),
            ));
        }
        Ok(configs)
    }

    /// A topic's metadata with its settings changed (the controller stores
    /// and broadcasts it): all of the changes or none, checked against the
    /// broker's defaults as at creation. A topic compacted before or after
    /// is marked as possibly holding offset holes.
    pub fn altered_topic(
        &self,
        name: &str,
        changes: &[meta::ConfigChange],
        replace: bool,
    ) -> Result<TopicMeta, WireError> {
        let Some(mut m) = self.topic_meta(name) else {
            return Err(WireError::new(
                ErrorCode::UnknownTopic,
                format!("unknown topic '{name}'"),
            ));
        };
        let defaults = &self.config.partition.log;
        let configs = meta::alter_overrides(&m.configs, defaults, changes, replace)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e))?;
        let before = topic_config(&self.config.partition, &m.configs, m.offset_holes)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e))?;
        let after = topic_config(&self.config.partition, &configs, m.offset_holes)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e))?;
        if is_internal_topic(name) && !after.log.cleanup_policy.compact {
            return Err(WireError::new(
                ErrorCode::InvalidConfig,
                format!("topic '{name}' is internal: it stays compacted (it holds the newest commit per key)"),
            ));
        }
        m.offset_holes |= before.log.cleanup_policy.compact || after.log.cleanup_policy.compact;
        m.configs = configs;
        Ok(m)
    }

    /// Marks a topic name as busy (being created or deleted); false if it is.
    pub fn lock_name(&self, name: &str) -> bool {
        self.creating.borrow_mut().insert(name.to_owned())
    }

    pub fn creation_done(&self, name: &str) {
        self.creating.borrow_mut().remove(name);
    }

    pub fn is_creating(&self, name: &str) -> bool {
        self.creating.borrow().contains(name)
    }

    /// Owners for a new topic's partitions: each to the shard with the
    /// fewest partitions so far (ties: the lowest id), so shards carry about
    /// the same number. Refused when a shard's memory budget cannot hold its
    /// share (tail buffers at their floor).
    pub fn assign_owners(&self, partitions: u32) -> Result<Vec<u16>, WireError> {
        let n = self.config.shard_count.max(1) as usize;
        let mut load = vec![0u64; n];
        // The internal offsets log has its own small buffers, outside the
        // budget's partition room (see `open_topic`).
        for t in self
            .topics
            .borrow()
            .values()
            .filter(|t| !is_internal_topic(&t.meta.name))
        {
            for &o in &t.meta.owners {
                if (o as usize) < n {
                    load[o as usize] += 1;
                }
            }
        }
        let mut owners = Vec::with_capacity(partitions as usize);
        for _ in 0..partitions {
            owners.push(crate::storage::meta::take_least_loaded(&mut load));
        }
        let room = self.config.memory_budget / 2 / MIN_TAIL_BUFFER_BYTES as u64;
        if let Some((s, &l)) = load.iter().enumerate().find(|&(_, &l)| l > room) {
            return Err(WireError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "{partitions} more partitions would make {l} on shard {s}; its memory budget of {} bytes \
                     (--memory-budget) holds at most {room} ({} KiB tail buffer each)",
                    self.config.memory_budget,
                    MIN_TAIL_BUFFER_BYTES >> 10
                ),
            ));
        }
        Ok(owners)
    }

    /// The synchronous half of a produce: validate and append every
    /// partition's batches, in request order.
    fn append_all(&self, req: &ProduceRequest) -> Vec<(String, Vec<PendingAppend>)> {
        req.topics
            .iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|pp| match self.partition(&t.name, pp.partition) {
                        Ok(_) if is_internal_topic(&t.name) => PendingAppend {
                            partition: pp.partition,
                            result: Err(WireError::new(
                                ErrorCode::InvalidRequest,
                                format!(
                                    "topic '{}' is internal: only the broker writes it",
                                    t.name
                                ),
                            )),
                            invalid_records: vec![],
                        },
                        Err(e) => PendingAppend {
                            partition: pp.partition,
                            result: Err(e),
                            invalid_records: vec![],
                        },
                        Ok(part) => match part.append(&pp.records) {
                            Ok(a) => PendingAppend {
                                partition: pp.partition,
                                result: Ok((part, a)),
                                invalid_records: vec![],
                            },
                            Err(e) => PendingAppend {
                                partition: pp.partition,
                                result: Err(e.to_wire()),
                                invalid_records: match e {
                                    crate::partition::PartitionError::KeylessRecord { records } => {
                                        records
                                    }
                                    _ => vec![],
                                },
                            },
                        },
                    })
                    .collect();
                (t.name.clone(), parts)
            })
            .collect()
    }

    /// Long polling: answers at once when `min_bytes` are there (or the
    /// request asks not to wait, or a partition has an error); otherwise
    /// waits until a write makes new data visible in one of its partitions
    /// (then reads again) or `max_wait_ms` passed. Never a busy loop: a
    /// waiting fetch costs nothing until a write wakes it.
    async fn fetch(&self, req: FetchRequest) -> Vec<FetchTopicResult> {
        self.fetch_waking(req, None).await
    }

    /// A fetch that also ends its wait when `wake` is notified: the router
    /// wakes the other parts of a fetch split over shards once one part has
    /// its data.
    pub async fn fetch_waking(
        &self,
        req: FetchRequest,
        wake: Option<Rc<rt::Event>>,
    ) -> Vec<FetchTopicResult> {
        let woken_at = wake.as_ref().map(|w| w.generation());
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_millis(req.max_wait_ms.min(MAX_FETCH_WAIT_MS) as u64);
        loop {
            let (out, bytes, errors) = self.fetch_once(&req).await;
            let now = std::time::Instant::now();
            if bytes >= req.min_bytes as usize
                || req.max_wait_ms == 0
                || errors
                || now >= deadline
                || self.stopping.get()
                || wake
                    .as_ref()
                    .is_some_and(|w| Some(w.generation()) != woken_at)
            {
                return self.count_fetched(out);
            }
            let mut events: Vec<_> = req
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (&t.name, p.partition)))
                .filter_map(|(t, p)| self.partition(t, p).ok())
                .filter(|p| !p.is_closing())
                .map(|p| p.data_event())
                .collect();
            if events.is_empty() {
                return self.count_fetched(out);
            }
            events.extend(wake.iter().cloned());
            rt::timeout(deadline - now, rt::any_notified(events)).await;
        }
    }

    /// Counts what a fetch returns (once, not per long-poll pass).
    fn count_fetched(&self, out: Vec<FetchTopicResult>) -> Vec<FetchTopicResult> {
        let m = self.metrics();
        for t in &out {
            for p in t.partitions.iter().filter(|p| !p.records.is_empty()) {
                let part = self.partition(&t.name, p.partition).ok();
                m.fetched(part.as_ref().and_then(|p| p.labelled()), &p.records);
            }
        }
        out
    }

    /// One pass over the fetch's partitions: results, record bytes, and
    /// whether any partition answered an error.
    async fn fetch_once(&self, req: &FetchRequest) -> (Vec<FetchTopicResult>, usize, bool) {
        let mut budget = req.max_bytes as usize;
        let mut total = 0;
        let mut errors = false;
        let mut out = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let mut r = FetchPartitionResult {
                    partition: p.partition,
                    error: None,
                    high_watermark: -1,
                    log_start_offset: -1,
                    records: Default::default(),
                    last_stable_offset: -1,
                    aborted: Vec::new(),
                };
                match self.partition(&t.name, p.partition) {
                    Err(e) => r.error = Some(e),
                    Ok(part) if budget == 0 => {
                        // The response is full: report where the partition stands.
                        r.high_watermark = part.high_watermark();
                        r.log_start_offset = part.log_start_offset();
                        r.last_stable_offset = part.last_stable_offset();
                    }
                    Ok(part) => {
                        // At least one whole batch even past max_bytes, so a
                        // consumer never stalls on a batch larger than its limit.
                        let max = (p.max_bytes as usize).min(budget).max(1);
                        match part
                            .read_isolated(p.fetch_offset, max, req.read_committed)
                            .await
                        {
                            Ok(o) => {
                                assert!(
                                    o.log_start_offset <= o.high_watermark,
                                    "'{}' {}: log start {} above high watermark {}",
                                    t.name,
                                    p.partition,
                                    o.log_start_offset,
                                    o.high_watermark
                                );
                                budget = budget.saturating_sub(o.records.len());
                                total += o.records.len();
                                r.high_watermark = o.high_watermark;
                                r.log_start_offset = o.log_start_offset;
                                r.records = o.records;
                                r.last_stable_offset = o.last_stable_offset;
                                r.aborted = o.aborted;
                            }
                            Err(e) => {
                                r.high_watermark = part.high_watermark();
                                r.log_start_offset = part.log_start_offset();
                                r.last_stable_offset = part.last_stable_offset();
                                r.error = Some(e.to_wire());
                            }
                        }
                    }
                }
                errors |= r.error.is_some();
                parts.push(r);
            }
            out.push(FetchTopicResult {
                name: t.name.clone(),
                partitions: parts,
            });
        }
        (out, total, errors)
    }

    fn describe_topics(&self, wanted: Option<Vec<String>>) -> Vec<TopicDescription> {
        let topics = self.topics.borrow();
        let describe = |name: &str, t: &Topic| TopicDescription {
            name: name.to_owned(),
            id: t.meta.id,
            error: None,
            configs: t
                .meta
                .configs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            partitions: t
                .partitions
                .iter()
                .zip(&t.meta.owners)
                .filter_map(|(p, &owner)| Some((p.as_ref()?, owner)))
                .map(|(p, owner)| PartitionDescription {
                    partition: p.id(),
                    owner_shard: owner,
                    log_start_offset: p.log_start_offset(),
                    high_watermark: p.high_watermark(),
                    size_bytes: p.size_bytes(),
                    segments: p.segment_count() as u32,
                    cleaner: p.config().log.cleanup_policy.compact.then(|| {
                        let c = p.cleaner_status();
                        CleanerProgress {
                            checkpoint: c.checkpoint.unwrap_or(-1),
                            dirty_permille: (c.dirty_ratio * 1000.0).round() as u32,
                            runs: c.runs,
                            read_bytes: c.bytes_read,
                            written_bytes: c.bytes_written,
                            last_run_ms: c.last_run_ms,
                        }
                    }),
                })
                .collect(),
        };
        match wanted {
            None => topics
                .iter()
                .filter(|(n, _)| !is_internal_topic(n))
                .map(|(n, t)| describe(n, t))
                .collect(),
            Some(names) => names
                .iter()
                .map(|n| match topics.get(n) {
                    Some(t) => describe(n, t),
                    None => TopicDescription {
                        name: n.clone(),
                        id: [0; 16],
                        error: Some(unknown_topic(n)),
                        configs: vec![],
                        partitions: vec![],
                    },
                })
                .collect(),
        }
    }

    async fn list_offsets(&self, topics: Vec<ListOffsetsTopic>) -> Vec<ListOffsetsTopicResult> {
        let mut out = Vec::with_capacity(topics.len());
        for t in topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let mut r = ListOffsetsPartitionResult {
                    partition: p.partition,
                    error: None,
                    offset: -1,
                    timestamp: -1,
                };
                match self.partition(&t.name, p.partition) {
                    Err(e) => r.error = Some(e),
                    Ok(part) => match p.timestamp {
                        LIST_EARLIEST | LIST_EARLIEST_LOCAL => r.offset = part.log_start_offset(),
                        LIST_LATEST => r.offset = part.high_watermark(),
                        LIST_LATEST_TIERED => {}
                        LIST_MAX_TIMESTAMP => match part.max_timestamp_offset().await {
                            Ok(Some((offset, at))) => {
                                r.offset = offset;
                                r.timestamp = at;
                            }
                            Ok(None) => {}
                            Err(e) => r.error = Some(e.to_wire()),
                        },
                        ts if ts < 0 => {
                            r.error = Some(WireError::new(
                                ErrorCode::InvalidRequest,
                                format!(
                                "timestamp {ts}: use -2 (earliest), -1 (latest), -3 (max timestamp), -4 (earliest local), -5 (latest tiered) or a time in ms"
                            ),
                            ))
                        }
                        ts => match part.offset_for_timestamp(ts).await {
                            Ok(Some((offset, at))) => {
                                r.offset = offset;
                                r.timestamp = at;
                            }
                            Ok(None) => {}
                            Err(e) => r.error = Some(e.to_wire()),
                        },
                    },
                }
                partitions.push(r);
            }
            out.push(ListOffsetsTopicResult {
                name: t.name,
                partitions,
            });
        }
        out
    }

    /// Kafka's DeleteRecords on this shard's partitions.
    async fn delete_records(
        &self,
        topics: Vec<DeleteRecordsTopic>,
    ) -> Vec<DeleteRecordsTopicResult> {
        let mut out = Vec::with_capacity(topics.len());
        for t in topics {
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let (error, low_watermark) = match self.partition(&t.name, p.partition) {
                    Err(e) => (Some(e), -1),
                    Ok(part) => match part.delete_records(p.offset).await {
                        Ok(start) => (None, start),
                        Err(e) => (Some(e.to_wire()), -1),
                    },
                };
                partitions.push(DeleteRecordsPartitionResult {
                    partition: p.partition,
                    error,
                    low_watermark,
                });
            }
            out.push(DeleteRecordsTopicResult {
                name: t.name,
                partitions,
            });
        }
        out
    }

    /// Kafka's DescribeProducers on this shard's partitions.
    fn describe_producers(
        &self,
        topics: Vec<TopicPartitions>,
    ) -> Vec<DescribeProducersTopicResult> {
        topics
            .into_iter()
            .map(|t| DescribeProducersTopicResult {
                partitions: t
                    .partitions
                    .iter()
                    .map(|&p| match self.partition(&t.topic, p) {
                        Err(e) => DescribeProducersPartitionResult {
                            partition: p,
                            error: Some(e),
                            producers: Vec::new(),
                        },
                        Ok(part) => DescribeProducersPartitionResult {
                            partition: p,
                            error: None,
                            producers: part
                                .producers()
                                .into_iter()
                                .map(|s| ActiveProducer {
                                    producer_id: s.producer_id,
                                    producer_epoch: s.epoch,
                                    last_sequence: s.last_sequence,
                                    last_timestamp: s.last_timestamp,
                                    current_txn_start_offset: s.txn_start_offset,
                                })
                                .collect(),
                        },
                    })
                    .collect(),
                name: t.topic,
            })
            .collect()
    }

    /// The first step of a clean stop: background loops end and fetches
    /// waiting for data answer now with what they have.
    pub fn begin_stop(&self) {
        self.stopping.set(true);
        self.groups.stop();
        self.txns.stop();
        for p in self.all_partitions() {
            p.data_event().notify_all();
        }
    }

    /// Flushes and closes every partition (clean shutdown).
    pub async fn close(&self) -> Result<(), String> {
        self.stopping.set(true);
        let mut failed = None;
        for p in self.all_partitions() {
            if let Err(e) = p.close().await {
                tracing::error!(topic = p.topic(), partition = p.id(), "close failed: {e}");
                failed.get_or_insert(format!("{}/{}: {e}", p.topic(), p.id()));
            }
        }
        match failed {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }
}

struct PendingAppend {
    partition: u32,
    result: Result<(Rc<Partition>, Appended), WireError>,
    /// With a refusal for records without keys: their positions.
    invalid_records: Vec<u32>,
}

/// The waiting half of a produce: flushes per the acks, then the results.
async fn complete_produce(
    acks: Acks,
    pending: Vec<(String, Vec<PendingAppend>)>,
) -> Vec<ProduceTopicResult> {
    // Start every partition's flush at once: they run concurrently on this
    // executor, so a produce over P partitions waits for the slowest, not the sum.
    let mut out = Vec::with_capacity(pending.len());
    let mut waits = Vec::new();
    for (name, parts) in pending {
        let mut results = Vec::with_capacity(parts.len());
        for pa in parts {
            let mut r = ProducePartitionResult {
                partition: pa.partition,
                error: None,
                base_offset: -1,
                high_watermark: -1,
                invalid_records: pa.invalid_records,
            };
            match pa.result {
                Err(e) => r.error = Some(e),
                Ok((part, a)) => {
                    // An accepted append holds at least one record.
                    assert!(a.base_offset < a.next_offset, "{a:?}");
                    r.base_offset = a.base_offset;
                    r.high_watermark = a.next_offset;
                    let level = match acks {
                        Acks::None | Acks::Leader => Level::Written,
                        Acks::Durable => part.durable_level(),
                    };
                    let flush = rt::spawn(async move { part.flush_to(a.next_offset, level).await });
                    if acks == Acks::None {
                        // Nobody waits, but the bytes must still reach the file
                        // to become visible: let the flush run on its own.
                        flush.detach();
                    } else {
                        waits.push((out.len(), results.len(), flush));
                    }
                }
            }
            results.push(r);
        }
        out.push(ProduceTopicResult {
            name,
            partitions: results,
        });
    }
    for (t, p, flush) in waits {
        if let Err(e) = flush.await {
            let r = &mut out[t].partitions[p];
            r.error = Some(e.to_wire());
            r.base_offset = -1;
        }
    }
    out
}

/// The broker's partition settings with a topic's overrides applied.
fn topic_config(
    broker: &PartitionConfig,
    overrides: &std::collections::BTreeMap<String, String>,
    offset_holes: bool,
) -> Result<PartitionConfig, String> {
    let log = broker.log.with_overrides(overrides)?;
    // A topic's max.message.bytes lowers the broker's batch limit for it.
    let max_batch_bytes = match usize::try_from(log.max_message_bytes) {
        Ok(m) => m.min(broker.max_batch_bytes),
        Err(_) => broker.max_batch_bytes,
    };
    Ok(PartitionConfig {
        log,
        max_batch_bytes,
        offset_holes,
        ..broker.clone()
    })
}

/// Smallest tail buffer a partition gets however many share the budget.
pub const MIN_TAIL_BUFFER_BYTES: usize = 64 << 10;

/// Tail buffer size when `partitions` share half of `budget`: the full 1 MiB
/// when they fit, smaller (whole pages, at least the floor) when not.
pub fn tail_buffer_for(budget: u64, partitions: u64) -> usize {
    let share = budget / 2 / partitions.max(1);
    let b = (share as usize).clamp(
        MIN_TAIL_BUFFER_BYTES,
        crate::storage::segment::TAIL_BUFFER_BYTES,
    );
    b / crate::rt::PAGE_BYTES * crate::rt::PAGE_BYTES
}
