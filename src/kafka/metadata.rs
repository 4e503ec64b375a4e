//! Metadata over Kafka: which topics and partitions exist and which
//! advertised broker (shard) leads each.
//!
//! Owns: the Metadata request's translation and its answer (brokers, the
//! cluster id, the controller, leaders and the leader epoch shardlog
//! reports). Pure.
//!
//! Must never: advertise a broker that does not serve the partition.

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeTopicPartitionsRequest,
    DescribeTopicPartitionsResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::wire::{
    id_of_unknown_name, name_of, topic_name, unknown_id_name, Refused, Shape, TopicIds, Work,
};
use crate::errors::kafka_code;
use crate::protocol::{self, NodeInfo, Request, RequestFrame};
use kafka_protocol::ResponseError;

/// Metadata: what the request asks for. From v10 a topic may be named by
/// id alone: an id no topic has is answered UNKNOWN_TOPIC_ID (refused
/// under a stand-in name, `wire::unknown_id_name`).
pub(super) fn decode_metadata(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
    ids: &dyn TopicIds,
) -> anyhow::Result<Work> {
    let r = MetadataRequest::decode(body, version)?;
    let mut refused = Refused::new();
    let topics = r.topics.map(|ts| {
        ts.iter()
            .filter_map(|t| match &t.name {
                Some(n) => Some(name_of(n)),
                None => {
                    let id = *t.topic_id.as_bytes();
                    let name = ids.name_of_id(&id);
                    if name.is_none() {
                        refused.push((
                            unknown_id_name(&id),
                            ResponseError::UnknownTopicId.code(),
                            String::new(),
                        ));
                    }
                    name
                }
            })
            .collect::<Vec<_>>()
    });
    let shape = topics
        .iter()
        .flatten()
        .map(|n| (n.clone(), vec![]))
        .collect();
    Ok(Work::Native {
        // Before v4 every Metadata request may create (Kafka's rule).
        frame: native(Request::Metadata {
            topics,
            auto_create: version < 4 || r.allow_auto_topic_creation,
            // Kafka lists its internal topics among "every topic" (marked
            // internal; clients skip them themselves).
            include_internal: true,
        }),
        shape,
        respond: true,
        refused,
        describe_configs: vec![],
    })
}

/// Every operation Kafka defines on a topic (READ, WRITE, CREATE, DELETE,
/// ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS), as the bit field
/// Metadata v8+ reports: shardlog has no authorizer, and Kafka without one
/// allows everything.
pub const TOPIC_OPERATIONS_ALL: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// Every operation Kafka defines on the cluster (CREATE, ALTER, DESCRIBE,
/// CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE).
pub const CLUSTER_OPERATIONS_ALL: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// DescribeCluster: the brokers (shards) and the cluster, from a native
/// Metadata of no topic. `shape` carries the endpoint type asked for.
pub(super) fn decode_describe_cluster(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = DescribeClusterRequest::decode(body, version)?;
    Ok(Work::Native {
        frame: native(Request::Metadata {
            topics: Some(vec![]),
            auto_create: false,
            include_internal: false,
        }),
        // The endpoint type rides in the shape (no topics here).
        shape: vec![(String::new(), vec![i32::from(r.endpoint_type)])],
        respond: true,
        refused: vec![],
        describe_configs: vec![],
    })
}

/// The DescribeCluster answer: every advertised broker, the cluster id,
/// shard 0 as controller, every cluster operation allowed (no
/// authorizer). Controller endpoints (type 2) are not served by a broker:
/// MISMATCHED_ENDPOINT_TYPE, as Kafka's brokers answer.
pub(super) fn describe_cluster_response(
    shape: &Shape,
    nodes: &[NodeInfo],
    error: i16,
) -> DescribeClusterResponse {
    let endpoint_type = shape
        .first()
        .and_then(|(_, v)| v.first())
        .map_or(1, |&t| t as i8);
    let mut r = DescribeClusterResponse::default();
    r.endpoint_type = endpoint_type;
    r.cluster_id = StrBytes::from_static_str("shardlog");
    r.controller_id = BrokerId(0);
    r.cluster_authorized_operations = CLUSTER_OPERATIONS_ALL;
    if error != 0 {
        r.error_code = error;
        return r;
    }
    if endpoint_type == 2 {
        r.error_code = kafka_protocol::ResponseError::MismatchedEndpointType.code();
        r.error_message = Some(StrBytes::from_static_str(
            "shardlog has no separate controller endpoints: ask for brokers",
        ));
        return r;
    }
    r.brokers = nodes
        .iter()
        .map(|n| {
            let mut b = DescribeClusterBroker::default();
            b.broker_id = BrokerId(n.node_id as i32);
            b.host = StrBytes::from_string(n.host.clone());
            b.port = i32::from(n.port);
            b
        })
        .collect();
    r
}

/// The broker that leads a partition: its owner shard's; node 0 when only
/// one is advertised (no per-shard ports: any shard serves).
fn leader_of(nodes: &[NodeInfo], owner_shard: u16) -> BrokerId {
    let owner = u32::from(owner_shard);
    match nodes.iter().find(|n| n.node_id == owner) {
        Some(n) => BrokerId(n.node_id as i32),
        None => BrokerId(nodes.first().map_or(0, |n| n.node_id as i32)),
    }
}

/// Kafka's broker-side cap on partitions per DescribeTopicPartitions
/// answer (`max.request.partition.size.limit`).
const DESCRIBE_PARTITIONS_LIMIT: i32 = 2000;

/// DescribeTopicPartitions (KIP-966; the Java Admin's describeTopics): the
/// topics named (none: every topic, internal ones too), from a native
/// Metadata. The shape's first entry carries the cursor (its topic, and
/// the partition limit and cursor partition); the names follow.
pub(super) fn decode_describe_topic_partitions(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = DescribeTopicPartitionsRequest::decode(body, version)?;
    let limit = r
        .response_partition_limit
        .clamp(1, DESCRIBE_PARTITIONS_LIMIT);
    let (cursor_topic, cursor_partition) = match &r.cursor {
        Some(c) => (name_of(&c.topic_name), c.partition_index.max(0)),
        None => (String::new(), -1),
    };
    let names: Vec<String> = r.topics.iter().map(|t| name_of(&t.name)).collect();
    let mut shape: Shape = vec![(cursor_topic, vec![limit, cursor_partition])];
    shape.extend(names.iter().map(|n| (n.clone(), vec![])));
    Ok(Work::native(
        native(Request::Metadata {
            topics: (!names.is_empty()).then_some(names),
            auto_create: false,
            include_internal: true,
        }),
        shape,
    ))
}

/// The DescribeTopicPartitions answer: topics in name order from the
/// cursor on, at most the limit's partitions, and where to go on.
pub(super) fn describe_topic_partitions_response(
    shape: &Shape,
    topics: Vec<protocol::TopicInfo>,
    nodes: &[NodeInfo],
    error: i16,
) -> DescribeTopicPartitionsResponse {
    use kafka_protocol::messages::describe_topic_partitions_response::{
        Cursor, DescribeTopicPartitionsResponsePartition as P,
        DescribeTopicPartitionsResponseTopic as T,
    };
    let (cursor_topic, limit, cursor_partition) = match shape.first() {
        Some((t, v)) => (
            t.as_str(),
            v.first().copied().unwrap_or(DESCRIBE_PARTITIONS_LIMIT),
            v.get(1).copied().unwrap_or(-1),
        ),
        None => ("", DESCRIBE_PARTITIONS_LIMIT, -1),
    };
    let mut r = DescribeTopicPartitionsResponse::default();
    let mut topics = topics;
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    let mut left = limit.max(1) as usize;
    for t in topics {
        if !cursor_topic.is_empty() && t.name.as_str() < cursor_topic {
            continue;
        }
        let mut x = T::default();
        x.name = Some(topic_name(&t.name));
        x.is_internal = t.name.starts_with("__");
        x.error_code = if error != 0 {
            error
        } else {
            kafka_code(t.error.as_ref())
        };
        if x.error_code != 0 {
            r.topics.push(x);
            continue;
        }
        x.topic_id = uuid::Uuid::from_bytes(t.id);
        x.topic_authorized_operations = TOPIC_OPERATIONS_ALL;
        let from = if t.name == cursor_topic {
            cursor_partition.max(0) as u32
        } else {
            0
        };
        let mut parts: Vec<_> = t
            .partitions
            .iter()
            .filter(|p| p.partition >= from)
            .collect();
        parts.sort_by_key(|p| p.partition);
        for p in parts {
            if left == 0 {
                let mut c = Cursor::default();
                c.topic_name = topic_name(&t.name);
                c.partition_index = p.partition as i32;
                r.next_cursor = Some(c);
                break;
            }
            left -= 1;
            let leader = leader_of(nodes, p.owner_shard);
            let mut y = P::default();
            y.partition_index = p.partition as i32;
            y.leader_id = leader;
            y.leader_epoch = -1;
            y.replica_nodes = vec![leader];
            y.isr_nodes = vec![leader];
            y.eligible_leader_replicas = Some(vec![]);
            y.last_known_elr = Some(vec![]);
            x.partitions.push(y);
        }
        r.topics.push(x);
        if r.next_cursor.is_some() {
            break;
        }
    }
    r
}

/// `Err(code)`: every topic of `shape` with that error. From v8 each topic
/// (and, v8-10, the cluster) reports every operation as authorized: no
/// authorizer, as Kafka without one (clients that did not ask ignore it).
pub(super) fn metadata_response(
    version: i16,
    result: Result<Vec<protocol::TopicInfo>, i16>,
    shape: &Shape,
    refused: &Refused,
    nodes: &[NodeInfo],
) -> MetadataResponse {
    let mut r = MetadataResponse::default();
    if (8..=10).contains(&version) {
        r.cluster_authorized_operations = CLUSTER_OPERATIONS_ALL;
    }
    r.brokers = nodes
        .iter()
        .map(|n| {
            let mut b = MetadataResponseBroker::default();
            b.node_id = BrokerId(n.node_id as i32);
            b.host = StrBytes::from_string(n.host.clone());
            b.port = i32::from(n.port);
            b
        })
        .collect();
    r.cluster_id = Some(StrBytes::from_static_str("shardlog"));
    // Shard 0 writes the metadata (the controller).
    r.controller_id = BrokerId(0);
    let (topics, error) = match result {
        Ok(topics) => (topics, None),
        Err(code) => {
            let failed = shape
                .iter()
                .map(|(n, _)| protocol::TopicInfo {
                    name: n.clone(),
                    id: [0; 16],
                    error: None,
                    partitions: vec![],
                })
                .collect();
            (failed, Some(code))
        }
    };
    r.topics = topics
        .into_iter()
        .map(|t| {
            let mut tr = MetadataResponseTopic::default();
            tr.error_code = error.unwrap_or_else(|| kafka_code(t.error.as_ref()));
            tr.is_internal = t.name.starts_with("__");
            tr.name = Some(topic_name(&t.name));
            tr.topic_id = uuid::Uuid::from_bytes(t.id);
            if version >= 8 && tr.error_code == 0 {
                tr.topic_authorized_operations = TOPIC_OPERATIONS_ALL;
            }
            tr.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let leader = leader_of(nodes, p.owner_shard);
                    let mut pr = MetadataResponsePartition::default();
                    pr.partition_index = p.partition as i32;
                    pr.leader_id = leader;
                    // Unknown epoch: clients then skip leader-epoch
                    // validation (OffsetForLeaderEpoch is not offered).
                    pr.leader_epoch = -1;
                    pr.replica_nodes = vec![leader];
                    pr.isr_nodes = vec![leader];
                    pr
                })
                .collect();
            tr
        })
        .collect();
    // Topics asked for by an id no topic has: no name, the id, the error.
    for (name, code, _) in refused {
        let mut tr = MetadataResponseTopic::default();
        tr.error_code = *code;
        tr.topic_id = uuid::Uuid::from_bytes(id_of_unknown_name(name).unwrap_or([0; 16]));
        // Names are nullable in answers from v12 (ids alone before: v10-11).
        tr.name = (version < 12).then(|| topic_name(""));
        r.topics.push(tr);
    }
    r
}
