//! Kafka's cluster-administration APIs, answered truthfully for one node
//! whose partitions each have one replica on their owner shard:
//! DescribeLogDirs (one log directory, the data directory, with every
//! partition's size), ElectLeaders (no election is ever needed),
//! ListPartitionReassignments (none is ever in progress) and
//! AlterPartitionReassignments (only the assignment a partition already
//! has), DescribeQuorum (one voter, node 0, always the leader) and
//! AlterReplicaLogDirs (only to the one directory there is).
//!
//! Owns: their translation both ways and the shapes that carry what the
//! answer needs. Pure.
//!
//! Must never: claim a change it did not make (a reassignment or an
//! election is refused with the reason, not acknowledged).

use bytes::Bytes;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, BrokerId, DescribeLogDirsRequest,
    DescribeLogDirsResponse, DescribeQuorumRequest, DescribeQuorumResponse, ElectLeadersRequest,
    ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

use super::wire::{name_of, topic_name, Shape, Work};
use crate::protocol::{self, NodeInfo, Request, RequestFrame};

/// The shape's marks for a requested replica list that is absent (cancel)
/// or not one replica.
const NO_REPLICAS: i32 = -1;
const NOT_ONE_REPLICA: i32 = -2;

/// DescribeLogDirs: the partitions asked for (none: every one), described
/// by their owners. The shape names what was asked (empty: everything).
pub(super) fn decode_describe_log_dirs(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = DescribeLogDirsRequest::decode(body, version)?;
    let shape: Shape = r
        .topics
        .iter()
        .flatten()
        .map(|t| (name_of(&t.topic), t.partitions.clone()))
        .collect();
    let topics = r
        .topics
        .map(|ts| ts.iter().map(|t| name_of(&t.topic)).collect());
    Ok(Work::native(
        native(Request::DescribeTopics { topics }),
        shape,
    ))
}

/// The one log directory (`log_dir`, the data directory) with the sizes of
/// the partitions asked for that exist; its volume's sizes are not looked
/// up (-1, Kafka's "unknown").
pub(super) fn describe_log_dirs_response(
    shape: &Shape,
    topics: &[protocol::TopicDescription],
    log_dir: &str,
    error: i16,
) -> DescribeLogDirsResponse {
    let mut dir = DescribeLogDirsResult::default();
    dir.error_code = error;
    dir.log_dir = StrBytes::from_string(log_dir.to_owned());
    dir.total_bytes = -1;
    dir.usable_bytes = -1;
    dir.topics = topics
        .iter()
        .filter(|t| t.error.is_none())
        .map(|t| {
            let wanted = shape.iter().find(|(n, _)| *n == t.name).map(|(_, ps)| ps);
            let mut x = DescribeLogDirsTopic::default();
            x.name = topic_name(&t.name);
            x.partitions = t
                .partitions
                .iter()
                .filter(|p| wanted.is_none_or(|w| w.contains(&(p.partition as i32))))
                .map(|p| {
                    let mut y = DescribeLogDirsPartition::default();
                    y.partition_index = p.partition as i32;
                    y.partition_size = i64::try_from(p.size_bytes).unwrap_or(i64::MAX);
                    y
                })
                .collect();
            x
        })
        .filter(|x| !x.partitions.is_empty())
        .collect();
    let mut r = DescribeLogDirsResponse::default();
    r.results = vec![dir];
    r
}

/// ElectLeaders: the partitions named (none: every one, which needs no
/// election and gets no entries, as Kafka answers when nothing was
/// elected), checked against the topics' metadata.
pub(super) fn decode_elect_leaders(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = ElectLeadersRequest::decode(body, version)?;
    let shape: Shape = r
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| (name_of(&t.topic), t.partitions.clone()))
        .collect();
    let topics = shape.iter().map(|(n, _)| n.clone()).collect();
    Ok(Work::native(
        native(Request::Metadata {
            topics: Some(topics),
            auto_create: false,
            include_internal: false,
        }),
        shape,
    ))
}

/// Whether `topic` has `partition`, and its leader's node.
fn leader_of(topics: &[protocol::TopicInfo], topic: &str, partition: i32) -> Option<u32> {
    let t = topics
        .iter()
        .find(|t| t.name == topic && t.error.is_none())?;
    let p = u32::try_from(partition).ok()?;
    t.partitions
        .iter()
        .find(|x| x.partition == p)
        .map(|x| x.leader_node)
}

/// Every partition named: ELECTION_NOT_NEEDED (its one replica leads), or
/// UNKNOWN_TOPIC_OR_PARTITION.
pub(super) fn elect_leaders_response(
    shape: &Shape,
    topics: &[protocol::TopicInfo],
    error: i16,
) -> ElectLeadersResponse {
    let mut r = ElectLeadersResponse::default();
    r.error_code = error;
    if error != 0 {
        return r;
    }
    r.replica_election_results = shape
        .iter()
        .map(|(name, ps)| {
            let mut t = ReplicaElectionResult::default();
            t.topic = topic_name(name);
            t.partition_result = ps
                .iter()
                .map(|&p| {
                    let mut x = PartitionResult::default();
                    x.partition_id = p;
                    match leader_of(topics, name, p) {
                        Some(node) => {
                            x.error_code = ResponseError::ElectionNotNeeded.code();
                            x.error_message = Some(StrBytes::from_string(format!(
                                "partition {p} has one replica, on node {node}, which leads it"
                            )));
                        }
                        None => {
                            x.error_code = ResponseError::UnknownTopicOrPartition.code();
                        }
                    }
                    x
                })
                .collect();
            t
        })
        .collect();
    r
}

/// ListPartitionReassignments: never any in progress; answered by the
/// listener (`refuse_response` with no error).
pub(super) fn decode_list_partition_reassignments(
    body: &mut Bytes,
    version: i16,
) -> anyhow::Result<Work> {
    ListPartitionReassignmentsRequest::decode(body, version)?;
    Ok(Work::Refuse {
        shape: vec![],
        error: 0,
    })
}

pub(super) fn list_partition_reassignments_response(
    error: i16,
) -> ListPartitionReassignmentsResponse {
    let mut r = ListPartitionReassignmentsResponse::default();
    r.error_code = error;
    r
}

/// AlterPartitionReassignments: each partition's wanted replicas ride in
/// the shape as (partition, node) pairs (`NO_REPLICAS`: a cancellation,
/// `NOT_ONE_REPLICA`: any other count), checked against the metadata.
pub(super) fn decode_alter_partition_reassignments(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = AlterPartitionReassignmentsRequest::decode(body, version)?;
    let shape: Shape = r
        .topics
        .iter()
        .map(|t| {
            let pairs = t
                .partitions
                .iter()
                .flat_map(|p| {
                    let node = match p.replicas.as_deref() {
                        None => NO_REPLICAS,
                        // A negative id names no node.
                        Some([one]) if one.0 >= 0 => one.0,
                        Some([_]) => i32::MAX,
                        Some(_) => NOT_ONE_REPLICA,
                    };
                    [p.partition_index, node]
                })
                .collect();
            (name_of(&t.name), pairs)
        })
        .collect();
    let topics = shape.iter().map(|(n, _)| n.clone()).collect();
    Ok(Work::native(
        native(Request::Metadata {
            topics: Some(topics),
            auto_create: false,
            include_internal: false,
        }),
        shape,
    ))
}

/// A partition may be "reassigned" only to where it is: done (nothing
/// moves). Anything else is refused with the reason.
pub(super) fn alter_partition_reassignments_response(
    shape: &Shape,
    topics: &[protocol::TopicInfo],
    nodes: &[NodeInfo],
    error: i16,
) -> AlterPartitionReassignmentsResponse {
    let mut r = AlterPartitionReassignmentsResponse::default();
    r.error_code = error;
    if error != 0 {
        return r;
    }
    r.responses = shape
        .iter()
        .map(|(name, pairs)| {
            let mut t = ReassignableTopicResponse::default();
            t.name = topic_name(name);
            t.partitions = pairs
                .chunks_exact(2)
                .map(|pair| {
                    let (p, want) = (pair[0], pair[1]);
                    let mut x = ReassignablePartitionResponse::default();
                    x.partition_index = p;
                    let refuse = |x: &mut ReassignablePartitionResponse, e: ResponseError, m: String| {
                        x.error_code = e.code();
                        x.error_message = Some(StrBytes::from_string(m));
                    };
                    match leader_of(topics, name, p) {
                        None => refuse(
                            &mut x,
                            ResponseError::UnknownTopicOrPartition,
                            format!("no partition {p} of topic '{name}'"),
                        ),
                        Some(_) if want == NO_REPLICAS => refuse(
                            &mut x,
                            ResponseError::NoReassignmentInProgress,
                            "no reassignment is ever in progress on shardlog".to_owned(),
                        ),
                        Some(_) if want == NOT_ONE_REPLICA => refuse(
                            &mut x,
                            ResponseError::InvalidReplicationFactor,
                            "shardlog keeps one replica per partition".to_owned(),
                        ),
                        Some(leader) if want as u32 == leader => {}
                        Some(leader) if !nodes.iter().any(|n| n.node_id == want as u32) => refuse(
                            &mut x,
                            ResponseError::InvalidReplicaAssignment,
                            format!("node {want} does not exist (partition {p} is on node {leader})"),
                        ),
                        Some(leader) => refuse(
                            &mut x,
                            ResponseError::InvalidReplicaAssignment,
                            format!(
                                "partition {p} stays on node {leader}, its owner shard: partitions move between shards only when the broker starts with another shard count"
                            ),
                        ),
                    }
                    x
                })
                .collect();
            t
        })
        .collect();
    r
}

/// The metadata log's name in KRaft: the one partition DescribeQuorum
/// describes.
const CLUSTER_METADATA: &str = "__cluster_metadata";

/// DescribeQuorum: the (topic, partitions) asked for ride in the shape;
/// the nodes come with the answer of an empty Metadata request.
pub(super) fn decode_describe_quorum(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = DescribeQuorumRequest::decode(body, version)?;
    let shape: Shape = r
        .topics
        .iter()
        .map(|t| {
            (
                name_of(&t.topic_name),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    Ok(Work::native(
        native(Request::Metadata {
            topics: Some(vec![]),
            auto_create: false,
            include_internal: false,
        }),
        shape,
    ))
}

/// The quorum of a single node: node 0 (the controller DescribeCluster
/// and Metadata name) is the only voter and always the leader, at epoch 0
/// (never an election); the other shards' nodes are observers. shardlog
/// keeps no metadata log (topic metadata is one file per topic), so its
/// offsets are 0 and no fetch times are known (-1). Anything other than
/// `__cluster_metadata` partition 0: UNKNOWN_TOPIC_OR_PARTITION.
pub(super) fn describe_quorum_response(
    version: i16,
    shape: &Shape,
    nodes: &[NodeInfo],
    error: i16,
) -> DescribeQuorumResponse {
    let mut r = DescribeQuorumResponse::default();
    r.error_code = error;
    if error != 0 {
        return r;
    }
    let replica = |id: u32| {
        let mut s = ReplicaState::default();
        s.replica_id = BrokerId(id as i32);
        s.log_end_offset = 0;
        s.last_fetch_timestamp = -1;
        s.last_caught_up_timestamp = -1;
        s
    };
    r.topics = shape
        .iter()
        .map(|(topic, partitions)| {
            let mut t = TopicData::default();
            t.topic_name = topic_name(topic);
            t.partitions = partitions
                .iter()
                .map(|&p| {
                    let mut x = PartitionData::default();
                    x.partition_index = p;
                    if topic != CLUSTER_METADATA || p != 0 {
                        // (No message: v0-1 have no field for one.)
                        x.error_code = ResponseError::UnknownTopicOrPartition.code();
                        x.leader_id = BrokerId(-1);
                        x.leader_epoch = -1;
                        x.high_watermark = -1;
                        return x;
                    }
                    x.leader_id = BrokerId(0);
                    x.leader_epoch = 0;
                    x.high_watermark = 0;
                    x.current_voters = vec![replica(0)];
                    x.observers = nodes
                        .iter()
                        .filter(|n| n.node_id != 0)
                        .map(|n| replica(n.node_id))
                        .collect();
                    x
                })
                .collect();
            t
        })
        .collect();
    // v2: the voters' endpoints.
    r.nodes = nodes
        .iter()
        .filter(|n| version >= 2 && n.node_id == 0)
        .map(|n| {
            let mut l = Listener::default();
            l.name = StrBytes::from_static_str("PLAINTEXT");
            l.host = StrBytes::from_string(n.host.clone());
            l.port = n.port;
            let mut node = Node::default();
            node.node_id = BrokerId(0);
            node.listeners = vec![l];
            node
        })
        .collect();
    r
}

/// AlterReplicaLogDirs: the partitions to move, each with the directory
/// it should move to, ride in the shape as (topic, [partition]) with the
/// wanted directory's index in `dirs` (returned beside the work).
pub(super) fn decode_alter_replica_log_dirs(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = AlterReplicaLogDirsRequest::decode(body, version)?;
    // (topic, [partition, dir index, partition, dir index, ...]): the
    // shape carries i32s only, so each partition is followed by the index
    // of the directory it asks for; the directories follow as a last
    // entry per directory named `\0` + path (no topic name has a NUL).
    let mut shape: Shape = Vec::new();
    for (d, dir) in r.dirs.iter().enumerate() {
        for t in &dir.topics {
            let name = name_of(&t.name);
            let mut pairs = Vec::with_capacity(t.partitions.len() * 2);
            for &p in &t.partitions {
                pairs.push(p);
                pairs.push(d as i32);
            }
            shape.push((name, pairs));
        }
    }
    for dir in &r.dirs {
        shape.push((format!("\0{}", dir.path.as_str()), vec![]));
    }
    let topics: Vec<String> = shape
        .iter()
        .filter(|(n, _)| !n.starts_with('\0'))
        .map(|(n, _)| n.clone())
        .collect();
    Ok(Work::native(
        native(Request::DescribeTopics {
            topics: Some(topics),
        }),
        shape,
    ))
}

/// Each partition stays in the one log directory there is: asked to move
/// there, it is done (NONE, as Kafka answers a move to where a replica
/// already is); any other path is LOG_DIR_NOT_FOUND; a partition that does
/// not exist, UNKNOWN_TOPIC_OR_PARTITION.
pub(super) fn alter_replica_log_dirs_response(
    shape: &Shape,
    topics: &[protocol::TopicDescription],
    log_dir: &str,
    error: i16,
) -> AlterReplicaLogDirsResponse {
    let dirs: Vec<&str> = shape
        .iter()
        .filter_map(|(n, _)| n.strip_prefix('\0'))
        .collect();
    let same_dir = |path: &str| {
        path == log_dir
            || (std::fs::canonicalize(path).ok())
                .zip(std::fs::canonicalize(log_dir).ok())
                .is_some_and(|(a, b)| a == b)
    };
    let mut r = AlterReplicaLogDirsResponse::default();
    r.results = shape
        .iter()
        .filter(|(n, _)| !n.starts_with('\0'))
        .map(|(name, pairs)| {
            let known = topics.iter().find(|t| t.name == *name && t.error.is_none());
            let mut t = AlterReplicaLogDirTopicResult::default();
            t.topic_name = topic_name(name);
            t.partitions = pairs
                .chunks_exact(2)
                .map(|pd| {
                    let (p, d) = (pd[0], pd[1]);
                    let mut x = AlterReplicaLogDirPartitionResult::default();
                    x.partition_index = p;
                    x.error_code = if error != 0 {
                        error
                    } else if !known
                        .is_some_and(|t| t.partitions.iter().any(|q| q.partition as i32 == p))
                    {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if dirs.get(d as usize).is_some_and(|path| same_dir(path)) {
                        0
                    } else {
                        ResponseError::LogDirNotFound.code()
                    };
                    x
                })
                .collect();
            t
        })
        .collect();
    r
}
