//! The native wire protocol: frames and typed requests/responses, converted
//! to and from the flatbuffers of `schema/shardlog.fbs`.
//!
//! Owns: framing (`frame`), the typed messages below, their flatbuffers codec
//! (`codec`), and the error codes of the wire (`ErrorCode`, mapped from the
//! library's typed errors in exactly one place: `error_code_of`).
//!
//! Must never: do I/O. Record batches pass through as `Bytes` slices of the
//! frame they arrived in (no copy, no decoding: see `batch`).

pub mod codec;
pub mod frame;
pub mod generated;

use bytes::Bytes;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

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
}

impl ApiKey {
    pub const ALL: [ApiKey; 8] = [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::CreateTopics,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::DeleteTopics,
        ApiKey::DescribeTopics,
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
}

/// Kafka's special timestamps for ListOffsets.
pub const LIST_EARLIEST: i64 = -2;
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
pub enum Request {
    ApiVersions,
    /// `None`: every topic.
    Metadata {
        topics: Option<Vec<String>>,
    },
    CreateTopics(Vec<CreateTopic>),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(Vec<ListOffsetsTopic>),
    DeleteTopics(Vec<String>),
    /// `None`: every topic.
    DescribeTopics {
        topics: Option<Vec<String>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Whole batches, exactly as stored.
    pub records: Bytes,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    ApiVersions(Vec<ApiVersionRange>),
    Metadata(MetadataResponse),
    CreateTopics(Vec<TopicResult>),
    Produce(Vec<ProduceTopicResult>),
    Fetch(Vec<FetchTopicResult>),
    ListOffsets(Vec<ListOffsetsTopicResult>),
    DeleteTopics(Vec<TopicResult>),
    DescribeTopics(Vec<TopicDescription>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: u32,
    pub owner_shard: u16,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub segments: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    pub name: String,
    pub error: Option<WireError>,
    pub configs: Vec<(String, String)>,
    pub partitions: Vec<PartitionDescription>,
}

/// A response, or an error for the request as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    pub correlation_id: u32,
    pub result: Result<Response, WireError>,
}
