//! The native wire protocol: frames and typed requests/responses, converted
//! to and from the flatbuffers of `schema/shardlog.fbs`.
//!
//! Owns: framing (`frame`), the typed messages below, their flatbuffers codec
//! (`codec`), and the error codes of the wire (`ErrorCode`, mapped from the
//! library's typed errors in exactly one place: `error_code_of`).
//!
//! Must never: do I/O. Record batches pass through as `Bytes` slices of the
//! frame they arrived in (no copy, no decoding: see `batch`).

mod access;
mod admin;
pub mod codec;
mod data;
mod fb;
pub mod frame;
pub mod generated;
mod groups;

use bytes::Bytes;

/// The protocol version this build speaks (and sends). Version 2: a
/// fetch answer's records follow the flatbuffer (schema/shardlog.fbs).
pub const PROTOCOL_VERSION: u16 = 2;

/// Wire error codes (0 = success). Mirrors `ErrorCode` in the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    None = 0,
    Unknown = 1,
    InvalidRequest = 2,
    UnsupportedVersion = 3,
    UnknownTopic = 4,
    UnknownPartition = 5,
    TopicAlreadyExists = 6,
    InvalidTopicName = 7,
    InvalidPartitions = 8,
    CorruptBatch = 9,
    OffsetOutOfRange = 10,
    StorageError = 11,
    MessageTooLarge = 12,
    ShuttingDown = 13,
    InvalidConfig = 14,
    TooManyConnections = 15,
    UnknownMember = 16,
    StaleMemberEpoch = 17,
    NotAssigned = 18,
    GroupNotEmpty = 19,
    InconsistentStrategy = 20,
    InvalidSessionTimeout = 21,
    UnknownGroup = 22,
    OutOfOrderSequence = 23,
    InvalidProducerEpoch = 24,
    InvalidRecord = 25,
    UnknownTopicId = 26,
    InvalidRegex = 27,
    IllegalGeneration = 28,
    GroupSubscribedToTopic = 29,
    /// Retriable: the coordinator could not write (clients look it up again
    /// and retry).
    CoordinatorNotAvailable = 30,
    /// The call reached a shard that does not coordinate its key.
    NotCoordinator = 31,
    /// Not tried: another part of the same request failed.
    OperationNotAttempted = 32,
    /// Retriable: another change of the transactional id is in progress.
    ConcurrentTransactions = 33,
    /// A newer producer with the same transactional id took over.
    ProducerFenced = 34,
    /// The transactional id belongs to another producer id (or to none).
    InvalidProducerIdMapping = 35,
    /// The transaction cannot do that in its state.
    InvalidTxnState = 36,
    InvalidTransactionTimeout = 37,
    TransactionalIdNotFound = 38,
    /// SASL: a mechanism the listener does not accept (or not SCRAM's).
    UnsupportedSaslMechanism = 39,
    /// A named resource (a SCRAM user or credential) does not exist.
    ResourceNotFound = 40,
    /// The same resource twice in one request.
    DuplicateResource = 41,
    /// A credential that does not meet the rules (iterations, salt, name).
    UnacceptableCredential = 42,
    /// SASL authentication failed (the connection closes after).
    SaslAuthenticationFailed = 43,
    /// A SASL request out of order.
    IllegalSaslState = 44,
    /// The principal may not do that to the topic (ACLs).
    TopicAuthorizationFailed = 45,
    /// The principal may not do that to the group (ACLs).
    GroupAuthorizationFailed = 46,
    /// The principal may not do that to the cluster (ACLs).
    ClusterAuthorizationFailed = 47,
    /// The principal may not use the transactional id (ACLs).
    TransactionalIdAuthorizationFailed = 48,
    /// ACLs asked of a broker that runs no authorizer.
    SecurityDisabled = 49,
}

impl ErrorCode {
    pub fn from_i16(v: i16) -> ErrorCode {
        use ErrorCode::*;
        match v {
            0 => None,
            2 => InvalidRequest,
            3 => UnsupportedVersion,
            4 => UnknownTopic,
            5 => UnknownPartition,
            6 => TopicAlreadyExists,
            7 => InvalidTopicName,
            8 => InvalidPartitions,
            9 => CorruptBatch,
            10 => OffsetOutOfRange,
            11 => StorageError,
            12 => MessageTooLarge,
            13 => ShuttingDown,
            14 => InvalidConfig,
            15 => TooManyConnections,
            16 => UnknownMember,
            17 => StaleMemberEpoch,
            18 => NotAssigned,
            19 => GroupNotEmpty,
            20 => InconsistentStrategy,
            21 => InvalidSessionTimeout,
            22 => UnknownGroup,
            23 => OutOfOrderSequence,
            24 => InvalidProducerEpoch,
            25 => InvalidRecord,
            26 => UnknownTopicId,
            27 => InvalidRegex,
            28 => IllegalGeneration,
            29 => GroupSubscribedToTopic,
            30 => CoordinatorNotAvailable,
            31 => NotCoordinator,
            32 => OperationNotAttempted,
            33 => ConcurrentTransactions,
            34 => ProducerFenced,
            35 => InvalidProducerIdMapping,
            36 => InvalidTxnState,
            37 => InvalidTransactionTimeout,
            38 => TransactionalIdNotFound,
            39 => UnsupportedSaslMechanism,
            40 => ResourceNotFound,
            41 => DuplicateResource,
            42 => UnacceptableCredential,
            43 => SaslAuthenticationFailed,
            44 => IllegalSaslState,
            45 => TopicAuthorizationFailed,
            46 => GroupAuthorizationFailed,
            47 => ClusterAuthorizationFailed,
            48 => TransactionalIdAuthorizationFailed,
            49 => SecurityDisabled,
            _ => Unknown,
        }
    }
}

/// An error as it travels: a code and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for WireError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKey {
    ApiVersions = 0,
    Metadata = 1,
    CreateTopics = 2,
    Produce = 3,
    Fetch = 4,
    ListOffsets = 5,
    DeleteTopics = 6,
    DescribeTopics = 7,
    GroupHeartbeat = 8,
    LeaveGroup = 9,
    OffsetCommit = 10,
    OffsetFetch = 11,
    ListGroups = 12,
    DescribeGroups = 13,
    DeleteRecords = 14,
    CreatePartitions = 15,
    AlterConfigs = 16,
    DescribeProducers = 17,
    ListTransactions = 18,
    DescribeTransactions = 19,
    DescribeUsers = 20,
    AlterUsers = 21,
    DescribeAcls = 22,
    AlterAcls = 23,
    DescribeQuotas = 24,
    AlterQuotas = 25,
    SaslAuthenticate = 26,
}

impl ApiKey {
    pub const ALL: [ApiKey; 27] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::DeleteTopics,
        ApiKey::DescribeTopics,
        ApiKey::GroupHeartbeat,
        ApiKey::LeaveGroup,
        ApiKey::OffsetCommit,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
        ApiKey::DescribeGroups,
        ApiKey::DeleteRecords,
        ApiKey::CreatePartitions,
        ApiKey::AlterConfigs,
        ApiKey::DescribeProducers,
        ApiKey::ListTransactions,
        ApiKey::DescribeTransactions,
        ApiKey::DescribeUsers,
        ApiKey::AlterUsers,
        ApiKey::DescribeAcls,
        ApiKey::AlterAcls,
        ApiKey::DescribeQuotas,
        ApiKey::AlterQuotas,
        ApiKey::SaslAuthenticate,
    ];

    pub fn from_u16(v: u16) -> Option<ApiKey> {
        ApiKey::ALL.into_iter().find(|k| *k as u16 == v)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiVersionRange {
    pub api: ApiKey,
    pub min_version: u16,
    pub max_version: u16,
}

/// What this broker supports, as ApiVersions reports it.
pub fn supported_apis() -> Vec<ApiVersionRange> {
    ApiKey::ALL
        .into_iter()
        .map(|api| ApiVersionRange {
            api,
            min_version: 1,
            max_version: PROTOCOL_VERSION,
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    Durable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopic {
    pub name: String,
    /// 0: the broker's `--num-partitions`.
    pub partitions: u32,
    /// Topic settings overriding the broker's defaults, as (key, value).
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    pub partition: u32,
    /// One or more RecordBatch v2, concatenated; a slice of the request frame.
    pub records: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopic {
    pub name: String,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    pub acks: Acks,
    pub timeout_ms: u32,
    pub topics: Vec<ProduceTopic>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition: u32,
    pub fetch_offset: i64,
    pub max_bytes: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    pub name: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub max_wait_ms: u32,
    pub min_bytes: u32,
    pub max_bytes: u32,
    pub topics: Vec<FetchTopic>,
    /// Kafka's read_committed: records up to each partition's last stable
    /// offset, with the aborted transactions among them named.
    pub read_committed: bool,
}

/// Kafka's special timestamps for ListOffsets.
pub const LIST_EARLIEST: i64 = -2;
/// ListOffsets: the first record with the largest timestamp (KIP-734).
pub const LIST_MAX_TIMESTAMP: i64 = -3;
/// ListOffsets: the first offset on local storage (KIP-405): the log start
/// here, where all storage is local.
pub const LIST_EARLIEST_LOCAL: i64 = -4;
/// ListOffsets: the last offset in tiered storage (KIP-1005): none here
/// (offset -1, as Kafka without remote storage answers).
pub const LIST_LATEST_TIERED: i64 = -5;
pub const LIST_LATEST: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub partition: u32,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopic {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePartitionsTopic {
    pub name: String,
    /// The partition count wanted (more than the topic has).
    pub count: u32,
}

/// Kafka's IncrementalAlterConfigs operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOpKind {
    Set = 0,
    Delete = 1,
    /// List settings only: items added.
    Append = 2,
    /// List settings only: items removed.
    Subtract = 3,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigOp {
    pub key: String,
    pub op: ConfigOpKind,
    /// Empty for `Delete`.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterConfigsTopic {
    pub name: String,
    pub ops: Vec<ConfigOp>,
    /// The ops (all `Set`) are the topic's whole new set of overrides
    /// (Kafka's AlterConfigs); else they change the ones it has.
    pub replace: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteRecordsPartition {
    pub partition: u32,
    /// The new log start; -1: the high watermark.
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRecordsTopic {
    pub name: String,
    pub partitions: Vec<DeleteRecordsPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRecordsPartitionResult {
    pub partition: u32,
    pub error: Option<WireError>,
    /// The log start offset after the call (-1 with an error).
    pub low_watermark: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRecordsTopicResult {
    pub name: String,
    pub partitions: Vec<DeleteRecordsPartitionResult>,
}

/// One idempotent (or transactional) producer a partition tracks, as
/// Kafka's DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The sequence of the last record appended.
    pub last_sequence: i32,
    /// The max timestamp of the last batch appended.
    pub last_timestamp: i64,
    /// The first offset of the producer's open transaction; -1: none.
    pub current_txn_start_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeProducersPartitionResult {
    pub partition: u32,
    pub error: Option<WireError>,
    /// By producer id.
    pub producers: Vec<ActiveProducer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeProducersTopicResult {
    pub name: String,
    pub partitions: Vec<DescribeProducersPartitionResult>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    ApiVersions,
    /// `None`: every topic.
    Metadata {
        topics: Option<Vec<String>>,
        /// Create the named topics that do not exist, if the broker's
        /// `auto-create-topics-enable` is on (Kafka's semantics).
        auto_create: bool,
        /// With `topics: None`, list the broker's internal topics too (Kafka
        /// does; the native answer is the users' topics).
        include_internal: bool,
    },
    CreateTopics(Vec<CreateTopic>),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(Vec<ListOffsetsTopic>),
    /// Kafka's DeleteRecords: moves each partition's log start.
    DeleteRecords(Vec<DeleteRecordsTopic>),
    /// Kafka's DescribeProducers: each partition's active producers.
    DescribeProducers(Vec<TopicPartitions>),
    /// Grows each topic to its partition count.
    CreatePartitions(Vec<CreatePartitionsTopic>),
    /// Changes topics' settings live (applied by their owner shards).
    AlterConfigs {
        topics: Vec<AlterConfigsTopic>,
        validate_only: bool,
    },
    DeleteTopics(Vec<String>),
    /// `None`: every topic.
    DescribeTopics {
        topics: Option<Vec<String>>,
    },
    GroupHeartbeat(GroupHeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups,
    DescribeGroups(Vec<String>),
    /// Kafka's ListTransactions: every coordinator's transactional ids in
    /// one of `states` (Kafka's names; empty: any) and of one of
    /// `producer_ids` (empty: any).
    ListTransactions {
        states: Vec<String>,
        producer_ids: Vec<i64>,
    },
    /// Kafka's DescribeTransactions: each id's state at its coordinator.
    DescribeTransactions(Vec<String>),
    /// Kafka's DescribeUserScramCredentials: every SCRAM user (None) or
    /// the named ones.
    DescribeUsers(Option<Vec<String>>),
    /// Kafka's AlterUserScramCredentials (through the controller).
    AlterUsers(Vec<crate::security::users::UserChange>),
    /// Kafka's DescribeAcls.
    DescribeAcls(crate::security::acl::AclFilter),
    /// Kafka's CreateAcls and DeleteAcls (through the controller): the
    /// creations, then the deletions.
    AlterAcls {
        create: Vec<crate::security::acl::AclBinding>,
        delete: Vec<crate::security::acl::AclFilter>,
    },
    /// Kafka's DescribeClientQuotas without filters.
    DescribeQuotas,
    /// Kafka's AlterClientQuotas (through the controller).
    AlterQuotas {
        changes: Vec<crate::security::quota::QuotaChange>,
        validate_only: bool,
    },
    /// One step of a SASL login; the first names the mechanism. Served by
    /// the native door itself, never routed.
    SaslAuthenticate {
        mechanism: Option<String>,
        token: Bytes,
    },
}

impl Request {
    /// The consumer group a group request is for (it is served by that
    /// group's coordinator shard).
    pub fn group(&self) -> Option<&str> {
        match self {
            Request::GroupHeartbeat(r) => Some(&r.group),
            Request::LeaveGroup(r) => Some(&r.group),
            Request::OffsetCommit(r) => Some(&r.group),
            Request::OffsetFetch(r) => Some(&r.group),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequestFrame {
    pub version: u16,
    pub correlation_id: u32,
    pub client_id: Option<String>,
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: u32,
    pub host: String,
    pub port: u16,
    pub shard: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: u32,
    pub owner_shard: u16,
    pub leader_node: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub error: Option<WireError>,
    pub partitions: Vec<PartitionInfo>,
    /// The topic id (Kafka's topic UUID); all zero: none (unknown topic).
    pub id: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataResponse {
    pub nodes: Vec<NodeInfo>,
    pub topics: Vec<TopicInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub error: Option<WireError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartitionResult {
    pub partition: u32,
    pub error: Option<WireError>,
    pub base_offset: i64,
    pub high_watermark: i64,
    /// With `InvalidRecord`: which records (0-based, over this partition's
    /// records in the produce) were refused themselves; the rest only
    /// shared their batch (Kafka's `record_errors`, KIP-467).
    pub invalid_records: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceTopicResult {
    pub name: String,
    pub partitions: Vec<ProducePartitionResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartitionResult {
    pub partition: u32,
    pub error: Option<WireError>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Whole batches, exactly as stored, in fragments (a broker's answer
    /// holds slices of its batch cache; a decoded one is one slice).
    pub records: crate::chain::Chain,
    /// Below it every transaction has ended (-1 with an error).
    pub last_stable_offset: i64,
    /// read_committed: (producer id, first offset) of each aborted
    /// transaction the records overlap; the consumer skips that producer's
    /// batches from there to its abort marker.
    pub aborted: Vec<(i64, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopicResult {
    pub name: String,
    pub partitions: Vec<FetchPartitionResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsPartitionResult {
    pub partition: u32,
    pub error: Option<WireError>,
    pub offset: i64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOffsetsTopicResult {
    pub name: String,
    pub partitions: Vec<ListOffsetsPartitionResult>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    ApiVersions(Vec<ApiVersionRange>),
    Metadata(MetadataResponse),
    CreateTopics(Vec<TopicResult>),
    Produce(Vec<ProduceTopicResult>),
    Fetch(Vec<FetchTopicResult>),
    ListOffsets(Vec<ListOffsetsTopicResult>),
    DeleteRecords(Vec<DeleteRecordsTopicResult>),
    DescribeProducers(Vec<DescribeProducersTopicResult>),
    CreatePartitions(Vec<TopicResult>),
    AlterConfigs(Vec<TopicResult>),
    DeleteTopics(Vec<TopicResult>),
    DescribeTopics(Vec<TopicDescription>),
    GroupHeartbeat(GroupHeartbeatResponse),
    LeaveGroup,
    OffsetCommit(Vec<TopicPartitionErrors>),
    OffsetFetch(Vec<CommittedTopic>),
    ListGroups(Vec<GroupListing>),
    DescribeGroups(Vec<GroupDescription>),
    ListTransactions(Vec<TransactionListing>),
    DescribeTransactions(Vec<TransactionDescription>),
    DescribeUsers(Vec<UserDescription>),
    /// Each user's result, in request order.
    AlterUsers(Vec<UserResult>),
    DescribeAcls(Vec<crate::security::acl::AclBinding>),
    /// Each creation's result, and the bindings each deletion removed, in
    /// request order.
    AlterAcls {
        created: Vec<Option<WireError>>,
        deleted: Vec<Vec<crate::security::acl::AclBinding>>,
    },
    /// Every quota entity with its keys and values.
    DescribeQuotas(crate::security::quota::QuotaEntries),
    /// Each entry's result, in request order.
    AlterQuotas(Vec<Option<WireError>>),
    /// The server's token; `done` once the login is complete.
    SaslAuthenticate {
        token: Bytes,
        done: bool,
    },
}

/// One SCRAM user as DescribeUsers shows it: its credentials' mechanisms
/// (Kafka's type: 1 SCRAM-SHA-256, 2 SCRAM-SHA-512) and iterations only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDescription {
    pub name: String,
    /// RESOURCE_NOT_FOUND for a named user that does not exist.
    pub error: Option<WireError>,
    pub credentials: Vec<(i8, i32)>,
}

/// One user's result of AlterUsers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserResult {
    pub name: String,
    pub error: Option<WireError>,
}

/// One transactional id as ListTransactions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    pub transactional_id: String,
    pub producer_id: i64,
    /// Kafka's state name (`Ongoing`, `CompleteCommit`, ...).
    pub state: String,
}

/// One transactional id as DescribeTransactions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    /// TRANSACTIONAL_ID_NOT_FOUND for an id no coordinator knows.
    pub error: Option<WireError>,
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the open transaction began (ms since the epoch); -1: none.
    pub start_time_ms: i64,
    /// The partitions in the open transaction, by topic.
    pub topics: Vec<TopicPartitions>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: u32,
    pub owner_shard: u16,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub segments: u32,
    /// Compacted topics only.
    pub cleaner: Option<CleanerProgress>,
}

/// Compaction's progress on one partition (see `partition::CleanerStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanerProgress {
    /// Where the part no cleaning covered starts; -1: no cleaning yet.
    pub checkpoint: i64,
    /// Dirty bytes over cleanable bytes at the last look, x1000.
    pub dirty_permille: u32,
    pub runs: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    /// Wall-clock ms the last cleaning ended; -1: none since the start.
    pub last_run_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    /// The topic id; all zero: none.
    pub id: [u8; 16],
    pub error: Option<WireError>,
    pub configs: Vec<(String, String)>,
    pub partitions: Vec<PartitionDescription>,
}

/// A response, or an error for the request as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseFrame {
    pub correlation_id: u32,
    pub result: Result<Response, WireError>,
}

// ---- Consumer groups -------------------------------------------------------

/// Partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicPartitions {
    pub topic: String,
    pub partitions: Vec<u32>,
}

/// Joins (`member_epoch` 0), heartbeats, and reports what the member owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHeartbeatRequest {
    pub group: String,
    /// Empty on join.
    pub member_id: String,
    pub member_epoch: i32,
    /// The subscription; `None` = unchanged.
    pub topics: Option<Vec<String>>,
    pub topic_prefix: Option<String>,
    /// A regular expression (RE2 syntax) matched against whole topic names.
    pub topic_regex: Option<String>,
    pub strategy: Option<String>,
    pub session_timeout_ms: u32,
    pub max_poll_interval_ms: u32,
    /// `None` = unchanged since the last heartbeat.
    pub owned: Option<Vec<TopicPartitions>>,
    /// The application polled since the last heartbeat.
    pub polled: bool,
    /// `None`: the request envelope's client id (the router fills it in,
    /// so it survives forwarding to the coordinator shard).
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: u32,
    /// What the member may consume now.
    pub assignment: Vec<TopicPartitions>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveGroupRequest {
    pub group: String,
    pub member_id: String,
    pub member_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub partition: u32,
    pub offset: i64,
    pub metadata: String,
    /// The leader epoch of the last record consumed (Kafka's
    /// `committed_leader_epoch`); -1: unknown.
    pub leader_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitTopic {
    pub name: String,
    pub partitions: Vec<OffsetCommitPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group: String,
    /// Empty with epoch -1: a commit from outside the group (allowed only
    /// while it has no members).
    pub member_id: String,
    pub member_epoch: i32,
    pub topics: Vec<OffsetCommitTopic>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionError {
    pub partition: u32,
    pub error: Option<WireError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitionErrors {
    pub name: String,
    pub partitions: Vec<PartitionError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchRequest {
    pub group: String,
    /// `None`: everything the group committed.
    pub topics: Option<Vec<TopicPartitions>>,
    /// KIP-447: partitions with a transaction's commit pending answer
    /// `unstable` (the consumer retries) instead of the older offset.
    pub require_stable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub partition: u32,
    /// -1: nothing committed.
    pub offset: i64,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// The leader epoch committed with the offset; -1: none.
    pub leader_epoch: i32,
    /// Asked with `require_stable` while a transaction's commit of this
    /// partition is pending: retry.
    pub unstable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTopic {
    pub name: String,
    pub partitions: Vec<CommittedOffset>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group: String,
    pub state: String,
    pub members: u32,
    pub strategy: String,
    pub coordinator_shard: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub member_epoch: i32,
    pub assignment: Vec<TopicPartitions>,
    pub owned: Vec<TopicPartitions>,
    pub subscribed_topics: Vec<String>,
    pub topic_prefix: Option<String>,
    pub topic_regex: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group: String,
    pub error: Option<WireError>,
    pub state: String,
    pub group_epoch: u32,
    pub strategy: String,
    pub coordinator_shard: u16,
    pub members: Vec<GroupMember>,
    pub offsets: Vec<CommittedTopic>,
}
