//! One shard: the state one executor owns, and the request handlers over it.
//!
//! Owns: the shard's topics and partitions (opened, created, closed here),
//! turning typed requests into typed responses, and the mapping of library
//! errors to wire error codes (`wire_error`: the one place it happens).
//!
//! Must never: do socket I/O (the server does), or share its state with
//! another thread: everything here is `Rc`, reached only from its executor.
//! Today one shard owns every partition; the thread-per-core issue adds the
//! channel mesh that routes requests to the owning shard.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;

use crate::partition::{
    self as part, Appended, FsyncPolicy, Level, Partition, PartitionConfig, PartitionError,
};
use crate::protocol::*;
use crate::rt;
use crate::storage::meta::{self, TopicMeta, MAX_PARTITIONS};
use crate::storage::{validate_topic_name, StorageError};

#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub shard_id: u16,
    pub data_dir: PathBuf,
    /// Broker-wide partition settings; `partition.log` holds the defaults
    /// each topic's overrides apply to.
    pub partition: PartitionConfig,
    /// How often retention looks for segments to delete.
    pub retention_check: std::time::Duration,
    /// Memory for tail buffers (half of it) and unwritten bytes (the other
    /// half, `partition.memory`).
    pub memory_budget: u64,
    /// Host and port clients should use to reach this shard.
    pub advertised_host: String,
    pub advertised_port: u16,
}

struct Topic {
    meta: TopicMeta,
    partitions: Vec<Rc<Partition>>,
}

pub struct Shard {
    config: ShardConfig,
    /// Set by `close`: the background loops end.
    stopping: std::cell::Cell<bool>,
    topics: RefCell<BTreeMap<String, Topic>>,
    /// Topics whose creation is under way (files being opened).
    creating: RefCell<HashSet<String>>,
}

/// Longest a fetch may wait for data (Kafka caps it by its request timeout).
pub const MAX_FETCH_WAIT_MS: u32 = 60_000;

pub type ResponseFuture = Pin<Box<dyn Future<Output = ResponseFrame>>>;

/// Maps a partition error to its wire form. The one place this happens.
pub fn wire_error(e: &PartitionError) -> WireError {
    let code = match e {
        PartitionError::Batch(_) => ErrorCode::CorruptBatch,
        PartitionError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        PartitionError::Storage(_) => ErrorCode::StorageError,
        PartitionError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        PartitionError::Empty => ErrorCode::InvalidRequest,
        PartitionError::Closed => ErrorCode::ShuttingDown,
    };
    WireError::new(code, e.to_string())
}

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
    /// every topic found under the data directory.
    pub async fn open(config: ShardConfig) -> Result<Rc<Shard>, StorageError> {
        std::fs::create_dir_all(crate::storage::topics_dir(&config.data_dir))
            .map_err(|e| StorageError::io("create dir", &config.data_dir, e))?;
        rt::probe_polled_io(&config.data_dir)
            .await
            .map_err(|e| StorageError::io("polled-I/O probe in", &config.data_dir, e))?;
        let mut topics = BTreeMap::new();
        meta::empty_trash(&config.data_dir)?;
        let metas = meta::load_all(&config.data_dir)?;
        let count: u64 = metas.iter().map(|m| m.partitions() as u64).sum();
        let tail = tail_buffer_for(config.memory_budget, count);
        if count * MIN_TAIL_BUFFER_BYTES as u64 > config.memory_budget / 2 {
            tracing::warn!(
                partitions = count,
                budget = config.memory_budget,
                "the memory budget is too small for this many partitions at the smallest tail buffer; \
                 tail buffers may exceed it (raise --memory-budget)"
            );
        }
        for m in metas {
            let mut pc = topic_config(&config.partition, &m.configs).map_err(|detail| {
                StorageError::Corrupt {
                    path: crate::storage::topic_dir(&config.data_dir, &m.name),
                    detail,
                }
            })?;
            pc.tail_buffer_bytes = tail;
            let mut partitions = Vec::with_capacity(m.owners.len());
            for p in 0..m.partitions() {
                partitions.push(Partition::open(&config.data_dir, &m.name, p, pc.clone()).await?);
            }
            tracing::info!(topic = %m.name, partitions = m.partitions(), "topic loaded");
            topics.insert(
                m.name.clone(),
                Topic {
                    meta: m,
                    partitions,
                },
            );
        }
        Ok(Rc::new(Shard {
            config,
            stopping: std::cell::Cell::new(false),
            topics: RefCell::new(topics),
            creating: RefCell::new(HashSet::new()),
        }))
    }

    pub fn id(&self) -> u16 {
        self.config.shard_id
    }

    /// The gauge of unwritten bytes producers wait on.
    pub fn memory(&self) -> &crate::partition::MemoryGauge {
        &self.config.partition.memory
    }

    fn all_partitions(&self) -> Vec<Rc<Partition>> {
        self.topics
            .borrow()
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
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
            while !shard.stopping.get() {
                rt::sleep(shard.config.retention_check).await;
                if shard.stopping.get() {
                    break;
                }
                let now = part::now_ms();
                for p in shard.all_partitions() {
                    if let Err(e) = p.enforce_retention(now).await {
                        tracing::error!(topic = p.topic(), partition = p.id(), "retention: {e}");
                    }
                }
            }
        })
        .detach();
    }

    fn partition(&self, topic: &str, p: u32) -> Result<Rc<Partition>, WireError> {
        let topics = self.topics.borrow();
        let t = topics.get(topic).ok_or_else(|| unknown_topic(topic))?;
        t.partitions
            .get(p as usize)
            .cloned()
            .ok_or_else(|| unknown_partition(topic, p, t.partitions.len()))
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
            Request::Metadata { topics } => {
                let r = done(Response::Metadata(self.metadata(topics)));
                Box::pin(async move { r })
            }
            Request::CreateTopics(topics) => {
                let shard = self.clone();
                Box::pin(
                    async move { done(Response::CreateTopics(shard.create_topics(topics).await)) },
                )
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
            Request::DeleteTopics(names) => {
                let shard = self.clone();
                Box::pin(
                    async move { done(Response::DeleteTopics(shard.delete_topics(names).await)) },
                )
            }
            Request::DescribeTopics { topics } => {
                let r = done(Response::DescribeTopics(self.describe_topics(topics)));
                Box::pin(async move { r })
            }
        }
    }

    fn metadata(&self, wanted: Option<Vec<String>>) -> MetadataResponse {
        let topics = self.topics.borrow();
        let info = |name: &str, t: &Topic| TopicInfo {
            name: name.to_owned(),
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
            None => topics.iter().map(|(n, t)| info(n, t)).collect(),
            Some(names) => names
                .iter()
                .map(|n| match topics.get(n) {
                    Some(t) => info(n, t),
                    None => TopicInfo {
                        name: n.clone(),
                        error: Some(unknown_topic(n)),
                        partitions: vec![],
                    },
                })
                .collect(),
        };
        MetadataResponse {
            nodes: vec![NodeInfo {
                node_id: self.config.shard_id as u32,
                host: self.config.advertised_host.clone(),
                port: self.config.advertised_port,
                shard: self.config.shard_id,
            }],
            topics,
        }
    }

    async fn create_topics(&self, topics: Vec<CreateTopic>) -> Vec<TopicResult> {
        let mut out = Vec::with_capacity(topics.len());
        for t in topics {
            let error = self.create_topic(&t).await.err();
            if error.is_none() {
                tracing::info!(topic = %t.name, partitions = t.partitions, "topic created");
            }
            out.push(TopicResult {
                name: t.name,
                error,
            });
        }
        out
    }

    async fn create_topic(&self, t: &CreateTopic) -> Result<(), WireError> {
        validate_topic_name(&t.name)
            .map_err(|e| WireError::new(ErrorCode::InvalidTopicName, e.to_string()))?;
        let mut configs = std::collections::BTreeMap::new();
        for (k, v) in &t.configs {
            if configs.insert(k.clone(), v.clone()).is_some() {
                return Err(WireError::new(
                    ErrorCode::InvalidConfig,
                    format!("topic config {k:?} given twice"),
                ));
            }
        }
        let mut pc = topic_config(&self.config.partition, &configs)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e))?;
        // Tail buffers share half the memory budget: more partitions get
        // smaller buffers, down to a floor; past that the topic is refused.
        let have: u64 = self
            .topics
            .borrow()
            .values()
            .map(|t| t.partitions.len() as u64)
            .sum();
        let total = have + t.partitions as u64;
        let room = self.config.memory_budget / 2 / MIN_TAIL_BUFFER_BYTES as u64;
        if total > room {
            return Err(WireError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "{} more partitions would make {total} on this shard; its memory budget of {} bytes \
                     (--memory-budget) holds at most {room} ({} KiB tail buffer each)",
                    t.partitions,
                    self.config.memory_budget,
                    MIN_TAIL_BUFFER_BYTES >> 10
                ),
            ));
        }
        pc.tail_buffer_bytes = tail_buffer_for(self.config.memory_budget, total);
        if t.partitions == 0 || t.partitions > MAX_PARTITIONS {
            return Err(WireError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "a topic has 1 to {MAX_PARTITIONS} partitions, not {}",
                    t.partitions
                ),
            ));
        }
        if self.topics.borrow().contains_key(&t.name)
            || !self.creating.borrow_mut().insert(t.name.clone())
        {
            return Err(WireError::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic '{}' already exists", t.name),
            ));
        }
        let result = self.create_topic_files(t, configs, pc).await;
        self.creating.borrow_mut().remove(&t.name);
        let topic = result.map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))?;
        self.topics.borrow_mut().insert(t.name.clone(), topic);
        Ok(())
    }

    /// Metadata first, then the partitions: a crash in between leaves a topic
    /// whose missing partition directories are created on the next start.
    async fn create_topic_files(
        &self,
        t: &CreateTopic,
        configs: std::collections::BTreeMap<String, String>,
        pc: PartitionConfig,
    ) -> Result<Topic, StorageError> {
        let m = TopicMeta {
            name: t.name.clone(),
            owners: vec![self.config.shard_id; t.partitions as usize],
            configs,
        };
        meta::store(&self.config.data_dir, &m)?;
        let mut partitions = Vec::with_capacity(t.partitions as usize);
        for p in 0..t.partitions {
            partitions.push(Partition::open(&self.config.data_dir, &t.name, p, pc.clone()).await?);
        }
        Ok(Topic {
            meta: m,
            partitions,
        })
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
                        Err(e) => PendingAppend {
                            partition: pp.partition,
                            result: Err(e),
                        },
                        Ok(part) => match part.append(&pp.records) {
                            Ok(a) => PendingAppend {
                                partition: pp.partition,
                                result: Ok((part, a)),
                            },
                            Err(e) => PendingAppend {
                                partition: pp.partition,
                                result: Err(wire_error(&e)),
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
            {
                return out;
            }
            let events: Vec<_> = req
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (&t.name, p.partition)))
                .filter_map(|(t, p)| self.partition(t, p).ok())
                .filter(|p| !p.is_closing())
                .map(|p| p.data_event())
                .collect();
            if events.is_empty() {
                return out;
            }
            rt::timeout(deadline - now, rt::any_notified(events)).await;
        }
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
                    records: bytes::Bytes::new(),
                };
                match self.partition(&t.name, p.partition) {
                    Err(e) => r.error = Some(e),
                    Ok(part) if budget == 0 => {
                        // The response is full: report where the partition stands.
                        r.high_watermark = part.high_watermark();
                        r.log_start_offset = part.log_start_offset();
                    }
                    Ok(part) => {
                        // At least one whole batch even past max_bytes, so a
                        // consumer never stalls on a batch larger than its limit.
                        let max = (p.max_bytes as usize).min(budget).max(1);
                        match part.read(p.fetch_offset, max).await {
                            Ok(o) => {
                                budget = budget.saturating_sub(o.records.len());
                                total += o.records.len();
                                r.high_watermark = o.high_watermark;
                                r.log_start_offset = o.log_start_offset;
                                r.records = o.records;
                            }
                            Err(e) => {
                                r.high_watermark = part.high_watermark();
                                r.log_start_offset = part.log_start_offset();
                                r.error = Some(wire_error(&e));
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

    /// Deletes topics: gone from every lookup at once (new requests get
    /// UnknownTopic), partitions flushed and closed, files removed.
    async fn delete_topics(&self, names: Vec<String>) -> Vec<TopicResult> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let error = self.delete_topic(&name).await.err();
            if error.is_none() {
                tracing::info!(topic = %name, "topic deleted");
            }
            out.push(TopicResult { name, error });
        }
        out
    }

    async fn delete_topic(&self, name: &str) -> Result<(), WireError> {
        if self.creating.borrow().contains(name) {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!("topic '{name}' is being created; retry"),
            ));
        }
        let topic = self
            .topics
            .borrow_mut()
            .remove(name)
            .ok_or_else(|| unknown_topic(name))?;
        for p in &topic.partitions {
            // Appends already accepted are written before the files go; a
            // failure here cannot lose anything the delete does not remove.
            if let Err(e) = p.close().await {
                tracing::warn!(topic = name, partition = p.id(), "close before delete: {e}");
            }
        }
        meta::remove(&self.config.data_dir, name)
            .map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))
    }

    fn describe_topics(&self, wanted: Option<Vec<String>>) -> Vec<TopicDescription> {
        let topics = self.topics.borrow();
        let describe = |name: &str, t: &Topic| TopicDescription {
            name: name.to_owned(),
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
                .map(|(p, &owner)| PartitionDescription {
                    partition: p.id(),
                    owner_shard: owner,
                    log_start_offset: p.log_start_offset(),
                    high_watermark: p.high_watermark(),
                    size_bytes: p.size_bytes(),
                    segments: p.segment_count() as u32,
                })
                .collect(),
        };
        match wanted {
            None => topics.iter().map(|(n, t)| describe(n, t)).collect(),
            Some(names) => names
                .iter()
                .map(|n| match topics.get(n) {
                    Some(t) => describe(n, t),
                    None => TopicDescription {
                        name: n.clone(),
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
                        LIST_EARLIEST => r.offset = part.log_start_offset(),
                        LIST_LATEST => r.offset = part.high_watermark(),
                        ts if ts < 0 => {
                            r.error = Some(WireError::new(
                                ErrorCode::InvalidRequest,
                                format!(
                                "timestamp {ts}: use -2 (earliest), -1 (latest) or a time in ms"
                            ),
                            ))
                        }
                        ts => match part.offset_for_timestamp(ts).await {
                            Ok(Some((offset, at))) => {
                                r.offset = offset;
                                r.timestamp = at;
                            }
                            Ok(None) => {}
                            Err(e) => r.error = Some(wire_error(&e)),
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

    /// The first step of a clean stop: background loops end and fetches
    /// waiting for data answer now with what they have.
    pub fn begin_stop(&self) {
        self.stopping.set(true);
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
            };
            match pa.result {
                Err(e) => r.error = Some(e),
                Ok((part, a)) => {
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
            r.error = Some(wire_error(&e));
            r.base_offset = -1;
        }
    }
    out
}

/// The broker's partition settings with a topic's overrides applied.
fn topic_config(
    broker: &PartitionConfig,
    overrides: &std::collections::BTreeMap<String, String>,
) -> Result<PartitionConfig, String> {
    Ok(PartitionConfig {
        log: broker.log.with_overrides(overrides)?,
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
