//! Kafka's group APIs <-> shardlog's group coordinator: FindCoordinator,
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! ListGroups, DescribeGroups and DeleteGroups.
//!
//! Owns: decoding those requests (the classic protocol, DescribeGroups and
//! DeleteGroups as in-process `KafkaGroupCall`s, served by the group's
//! coordinator shard; commits and offset fetches as the native requests,
//! so both protocols share one durable offsets log), and encoding the
//! answers.
//!
//! Must never: do I/O or encode Kafka by hand (the kafka-protocol crate
//! does every byte), or look inside the classic protocol's opaque member
//! metadata and assignments (the leader's client owns their meaning); only
//! DescribeGroups of a shardlog-native group builds consumer-protocol bytes,
//! so Kafka tools can show what its members hold.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;

use super::wire::{topic_name, EncodeDyn, KafkaGroupKind, Shape, TopicIds, Work};
use crate::coordinator_host::{KafkaGroupDescription, KafkaGroupReply};
use crate::errors::{kafka_classic_code, kafka_code, kafka_consumer_group_code};
use crate::group::classic::{self, ClassicCall, ClassicReply};
use crate::protocol::{
    self, GroupDescription, NodeInfo, Request, RequestFrame, Response, TopicPartitions, WireError,
};

/// The group APIs and the versions spoken (see `codec::SUPPORTED`): what
/// librdkafka 2.x, kafka-python and the Java client's classic protocol
/// negotiate. JoinGroup stops at 7 (v8 adds a reason, v9 KIP-814's
/// skip_assignment), OffsetFetch at 7 (v8 batches groups), OffsetCommit at
/// 8 (v9 is KIP-848's), ListGroups at 4 (v5 filters by group type).
/// ConsumerGroupHeartbeat and ConsumerGroupDescribe 0-1: KIP-848 over the
/// Kafka wire, served by the native coordinator (which is KIP-848-style);
/// the Java client 4.x and librdkafka 2.12+ use them with
/// `group.protocol=consumer`.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::TxnOffsetCommit, 0, 5),
    (ApiKey::ConsumerGroupHeartbeat, 0, 1),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

pub fn is_group_api(api: ApiKey) -> bool {
    SUPPORTED.iter().any(|(k, _, _)| *k == api)
}

fn s(v: &StrBytes) -> String {
    v.as_str().to_owned()
}

fn str_bytes(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn group_id(v: &str) -> GroupId {
    GroupId(str_bytes(v))
}

/// Timeouts arrive as i32; a negative one is as bad as zero.
fn ms(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// Decodes one group request; `native` wraps a native request in its frame.
pub fn decode(
    api: ApiKey,
    version: i16,
    body: &mut Bytes,
    client_id: Option<String>,
    native: impl Fn(Request) -> Box<RequestFrame>,
    ids: &dyn TopicIds,
) -> Result<Work, anyhow::Error> {
    let in_process = |call: ClassicCall| Work::KafkaGroups {
        kind: KafkaGroupKind::Classic(Box::new(call)),
        shape: vec![],
    };
    let routed = |request: Request, shape: Shape| Work::native(native(request), shape);
    Ok(match api {
        ApiKey::FindCoordinator => {
            let r = FindCoordinatorRequest::decode(body, version)?;
            let keys = if version >= 4 {
                r.coordinator_keys.iter().map(s).collect()
            } else {
                vec![s(&r.key)]
            };
            Work::FindCoordinator {
                keys,
                key_type: r.key_type,
            }
        }
        ApiKey::JoinGroup => {
            let r = JoinGroupRequest::decode(body, version)?;
            let session = ms(r.session_timeout_ms);
            in_process(ClassicCall::Join(classic::JoinRequest {
                group: s(&r.group_id.0),
                member_id: s(&r.member_id),
                group_instance_id: r.group_instance_id.as_ref().map(s),
                client_id: client_id.unwrap_or_default(),
                // Filled in by the listener, which knows the peer.
                client_host: String::new(),
                session_timeout_ms: session,
                // v0 has none: the session timeout serves (as in Kafka).
                rebalance_timeout_ms: if version >= 1 {
                    ms(r.rebalance_timeout_ms)
                } else {
                    session
                },
                protocol_type: s(&r.protocol_type),
                protocols: r
                    .protocols
                    .iter()
                    .map(|p| classic::Protocol {
                        name: s(&p.name),
                        metadata: p.metadata.clone(),
                    })
                    .collect(),
                require_known_member_id: version >= 4,
            }))
        }
        ApiKey::SyncGroup => {
            let r = SyncGroupRequest::decode(body, version)?;
            in_process(ClassicCall::Sync(classic::SyncRequest {
                group: s(&r.group_id.0),
                member_id: s(&r.member_id),
                group_instance_id: r.group_instance_id.as_ref().map(s),
                generation_id: r.generation_id,
                protocol_type: r.protocol_type.as_ref().map(s),
                protocol_name: r.protocol_name.as_ref().map(s),
                assignments: r
                    .assignments
                    .iter()
                    .map(|a| (s(&a.member_id), a.assignment.clone()))
                    .collect(),
            }))
        }
        ApiKey::Heartbeat => {
            let r = HeartbeatRequest::decode(body, version)?;
            in_process(ClassicCall::Heartbeat(classic::HeartbeatRequest {
                group: s(&r.group_id.0),
                member_id: s(&r.member_id),
                group_instance_id: r.group_instance_id.as_ref().map(s),
                generation_id: r.generation_id,
            }))
        }
        ApiKey::LeaveGroup => {
            let r = LeaveGroupRequest::decode(body, version)?;
            let members = if version >= 3 {
                r.members
                    .iter()
                    .map(|m| (s(&m.member_id), m.group_instance_id.as_ref().map(s)))
                    .collect()
            } else {
                vec![(s(&r.member_id), None)]
            };
            in_process(ClassicCall::Leave(classic::LeaveRequest {
                group: s(&r.group_id.0),
                members,
            }))
        }
        ApiKey::OffsetCommit => {
            let r = OffsetCommitRequest::decode(body, version)?;
            let shape: Shape = r
                .topics
                .iter()
                .map(|t| {
                    (
                        t.name.0.as_str().to_owned(),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect();
            let topics = r
                .topics
                .iter()
                .map(|t| protocol::OffsetCommitTopic {
                    name: t.name.0.as_str().to_owned(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| protocol::OffsetCommitPartition {
                            // A negative partition exists nowhere.
                            partition: u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                            offset: p.committed_offset,
                            metadata: p.committed_metadata.as_ref().map(s).unwrap_or_default(),
                            // Absent before v6: the default -1.
                            leader_epoch: p.committed_leader_epoch,
                        })
                        .collect(),
                })
                .collect();
            routed(
                Request::OffsetCommit(protocol::OffsetCommitRequest {
                    group: s(&r.group_id.0),
                    member_id: s(&r.member_id),
                    member_epoch: r.generation_id_or_member_epoch,
                    topics,
                }),
                shape,
            )
        }
        ApiKey::OffsetFetch => {
            let r = OffsetFetchRequest::decode(body, version)?;
            let topics = r.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| TopicPartitions {
                        topic: t.name.0.as_str().to_owned(),
                        partitions: t
                            .partition_indexes
                            .iter()
                            .map(|&p| u32::try_from(p).unwrap_or(u32::MAX))
                            .collect(),
                    })
                    .collect()
            });
            let shape = r
                .topics
                .iter()
                .flatten()
                .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
                .collect();
            routed(
                Request::OffsetFetch(protocol::OffsetFetchRequest {
                    group: s(&r.group_id.0),
                    topics,
                    // v7+ (KIP-447); false before.
                    require_stable: r.require_stable,
                }),
                shape,
            )
        }
        ApiKey::ListGroups => {
            let r = ListGroupsRequest::decode(body, version)?;
            // The states filter travels in the shape (it is applied to the
            // merged answer).
            let shape = r.states_filter.iter().map(|f| (s(f), vec![])).collect();
            routed(Request::ListGroups, shape)
        }
        ApiKey::DescribeGroups => {
            let r = DescribeGroupsRequest::decode(body, version)?;
            let shape = r.groups.iter().map(|g| (s(&g.0), vec![])).collect();
            Work::KafkaGroups {
                kind: KafkaGroupKind::Describe,
                shape,
            }
        }
        ApiKey::DeleteGroups => {
            let r = DeleteGroupsRequest::decode(body, version)?;
            let shape = r.groups_names.iter().map(|g| (s(&g.0), vec![])).collect();
            Work::KafkaGroups {
                kind: KafkaGroupKind::Delete,
                shape,
            }
        }
        ApiKey::OffsetDelete => {
            let r = OffsetDeleteRequest::decode(body, version)?;
            let mut shape: Shape = vec![(s(&r.group_id.0), vec![])];
            shape.extend(r.topics.iter().map(|t| {
                (
                    s(&t.name.0),
                    t.partitions.iter().map(|p| p.partition_index).collect(),
                )
            }));
            Work::KafkaGroups {
                kind: KafkaGroupKind::OffsetDelete,
                shape,
            }
        }
        ApiKey::TxnOffsetCommit => {
            let r = kafka_protocol::messages::TxnOffsetCommitRequest::decode(body, version)?;
            let shape: Shape = r
                .topics
                .iter()
                .map(|t| {
                    (
                        s(&t.name.0),
                        t.partitions.iter().map(|p| p.partition_index).collect(),
                    )
                })
                .collect();
            let request = protocol::OffsetCommitRequest {
                group: s(&r.group_id.0),
                // v3+ (KIP-447): the member, checked like OffsetCommit's;
                // before, nobody is checked, as in Kafka.
                member_id: s(&r.member_id),
                member_epoch: r.generation_id,
                topics: r
                    .topics
                    .iter()
                    .map(|t| protocol::OffsetCommitTopic {
                        name: s(&t.name.0),
                        partitions: t
                            .partitions
                            .iter()
                            .map(|p| protocol::OffsetCommitPartition {
                                partition: u32::try_from(p.partition_index).unwrap_or(u32::MAX),
                                offset: p.committed_offset,
                                metadata: p.committed_metadata.as_ref().map(s).unwrap_or_default(),
                                leader_epoch: p.committed_leader_epoch,
                            })
                            .collect(),
                    })
                    .collect(),
            };
            let commit = Work::KafkaGroups {
                kind: KafkaGroupKind::TxnOffsetCommit(Box::new((request, r.producer_id.0))),
                shape,
            };
            if version >= 5 {
                // KIP-890 part 2: no AddOffsetsToTxn first; the commit adds
                // the group's offsets partition to the transaction itself.
                Work::TxnAdd {
                    add: crate::txn_host::TxnCall::AddOffsets {
                        id: s(&r.transactional_id.0),
                        producer_id: r.producer_id.0,
                        epoch: r.producer_epoch,
                        group: s(&r.group_id.0),
                        txn_version: 2,
                    },
                    then: Box::new(commit),
                }
            } else {
                commit
            }
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let r = ConsumerGroupHeartbeatRequest::decode(body, version)?;
            decode_consumer_heartbeat(r, client_id, &routed, ids)?
        }
        ApiKey::ConsumerGroupDescribe => {
            let r = ConsumerGroupDescribeRequest::decode(body, version)?;
            let groups: Vec<String> = r.group_ids.iter().map(|g| s(&g.0)).collect();
            let shape = groups.iter().map(|g| (g.clone(), vec![])).collect();
            routed(Request::DescribeGroups(groups), shape)
        }
        _ => unreachable!("decode is called for group APIs only"),
    })
}

/// Kafka's default `group.consumer.session.timeout.ms` (a broker setting in
/// KIP-848: the client does not send one).
const CONSUMER_SESSION_TIMEOUT_MS: u32 = 45_000;

/// ConsumerGroupHeartbeat: joins (epoch 0, with the member id the client
/// made up, v1, or none, v0), beats, or leaves (-1, or -2 for a static
/// member) through the native coordinator. Owned partitions come by topic
/// id (unknown ids are dropped: those topics are gone). The shape carries
/// the member id and, for a leave, the epoch to answer with.
fn decode_consumer_heartbeat(
    r: ConsumerGroupHeartbeatRequest,
    client_id: Option<String>,
    routed: &dyn Fn(Request, Shape) -> Work,
    ids: &dyn TopicIds,
) -> Result<Work, anyhow::Error> {
    let group = s(&r.group_id.0);
    let member_id = s(&r.member_id);
    if r.member_epoch < 0 {
        let shape = vec![(member_id.clone(), vec![r.member_epoch])];
        return Ok(routed(
            Request::LeaveGroup(protocol::LeaveGroupRequest {
                group,
                member_id,
                member_epoch: -1,
            }),
            shape,
        ));
    }
    let shape = vec![(member_id.clone(), vec![])];
    let refuse = |error: ResponseError| Work::Refuse {
        shape: shape.clone(),
        error: error.code(),
    };
    let strategy = match r.server_assignor.as_ref().map(s).as_deref() {
        None => None,
        // Kafka's server-side assignors: `uniform` is sticky, as ours.
        Some("uniform") => Some("sticky".to_owned()),
        Some("range") => Some("range".to_owned()),
        Some(_) => return Ok(refuse(ResponseError::UnsupportedAssignor)),
    };
    // Compiled by the coordinator (a bad one: INVALID_REGULAR_EXPRESSION).
    let topic_regex = r
        .subscribed_topic_regex
        .as_ref()
        .map(s)
        .filter(|re| !re.is_empty());
    let owned = r.topic_partitions.map(|tps| {
        tps.iter()
            .filter_map(|t| {
                Some(TopicPartitions {
                    topic: ids.name_of_id(t.topic_id.as_bytes())?,
                    partitions: t
                        .partitions
                        .iter()
                        .map(|&p| u32::try_from(p).unwrap_or(u32::MAX))
                        .collect(),
                })
            })
            .collect()
    });
    Ok(routed(
        Request::GroupHeartbeat(protocol::GroupHeartbeatRequest {
            group,
            member_id,
            member_epoch: r.member_epoch,
            topics: r
                .subscribed_topic_names
                .map(|ts| ts.iter().map(|t| s(&t.0)).collect()),
            topic_prefix: None,
            topic_regex,
            strategy,
            // Sent on join only; the coordinator keeps it (0: unchanged).
            session_timeout_ms: if r.member_epoch == 0 {
                CONSUMER_SESSION_TIMEOUT_MS
            } else {
                0
            },
            max_poll_interval_ms: ms(r.rebalance_timeout_ms),
            owned,
            // KIP-848 clients leave the group themselves when they stop
            // polling; every heartbeat counts as progress.
            polled: true,
            client_id,
        }),
        shape,
    ))
}

/// FindCoordinator: `node_of(key)` is the Kafka broker (shard) that
/// coordinates the group (key type 0) or the transactional id (1); other
/// key types (share groups, KIP-932) are refused.
pub fn find_coordinator_response(
    version: i16,
    keys: &[String],
    key_type: i8,
    node_of: impl Fn(&str) -> Result<NodeInfo, i16>,
) -> FindCoordinatorResponse {
    let one = |key: &str| {
        let mut c = Coordinator::default();
        c.key = str_bytes(key);
        if key_type != 0 && key_type != 1 {
            // Not COORDINATOR_NOT_AVAILABLE: clients retry that until their
            // timeout; this one fails them at once.
            c.error_code = kafka_protocol::ResponseError::InvalidRequest.code();
            c.error_message = Some(str_bytes(
                "shardlog coordinates groups (key type 0) and transactions (1) only",
            ));
            c.node_id = BrokerId(-1);
            c.port = -1;
        } else {
            match node_of(key) {
                Ok(n) => {
                    c.node_id = BrokerId(n.node_id as i32);
                    c.host = str_bytes(&n.host);
                    c.port = i32::from(n.port);
                }
                // Not found for this key alone (the authorizer's code).
                Err(code) => {
                    c.error_code = code;
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                }
            }
        }
        c
    };
    let mut r = FindCoordinatorResponse::default();
    if version >= 4 {
        r.coordinators = keys.iter().map(|k| one(k)).collect();
    } else {
        let c = one(keys.first().map_or("", String::as_str));
        r.error_code = c.error_code;
        r.error_message = c.error_message;
        r.node_id = c.node_id;
        r.host = c.host;
        r.port = c.port;
    }
    r
}

/// Consumer-protocol assignment bytes (version 0) for `tps`.
pub fn assignment_bytes(tps: &[TopicPartitions]) -> Result<Bytes, anyhow::Error> {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = tps
        .iter()
        .map(|t| {
            let mut x = AssignedTopic::default();
            x.topic = topic_name(&t.topic);
            x.partitions = t.partitions.iter().map(|&p| p as i32).collect();
            x
        })
        .collect();
    versioned(&a)
}

fn subscription_bytes(topics: &[String]) -> Result<Bytes, anyhow::Error> {
    let mut sub = ConsumerProtocolSubscription::default();
    sub.topics = topics.iter().map(|t| str_bytes(t)).collect();
    versioned(&sub)
}

/// Consumer-protocol messages carry their version (0) in front.
fn versioned<M: Encodable>(m: &M) -> Result<Bytes, anyhow::Error> {
    let mut b = BytesMut::with_capacity(2 + m.compute_size(0)?);
    b.put_i16(0);
    m.encode(&mut b, 0)?;
    Ok(b.freeze())
}

/// Kafka's group state names for the native listing's.
fn kafka_state(native: &str) -> &'static str {
    match native {
        "stable" => "Stable",
        "empty" => "Empty",
        "reconciling" => "Reconciling",
        "preparing-rebalance" => "PreparingRebalance",
        "completing-rebalance" => "CompletingRebalance",
        _ => "Unknown",
    }
}

fn join_response(j: classic::JoinResponse) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = kafka_classic_code(j.error.as_ref());
    r.generation_id = j.generation_id;
    r.protocol_type = j.protocol_type.as_deref().map(str_bytes);
    // Before v7 the name is not nullable: empty stands for none.
    r.protocol_name = Some(str_bytes(j.protocol_name.as_deref().unwrap_or("")));
    r.leader = str_bytes(&j.leader);
    r.member_id = str_bytes(&j.member_id);
    r.members = j
        .members
        .into_iter()
        .map(|m| {
            let mut x = JoinGroupResponseMember::default();
            x.member_id = str_bytes(&m.member_id);
            x.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
            x.metadata = m.metadata;
            x
        })
        .collect();
    r
}

fn describe_response(
    groups: Vec<KafkaGroupDescription>,
) -> Result<DescribeGroupsResponse, anyhow::Error> {
    let mut r = DescribeGroupsResponse::default();
    for g in groups {
        let mut d = DescribedGroup::default();
        d.authorized_operations = i32::MIN;
        match g {
            KafkaGroupDescription::Classic { group, description } => {
                d.group_id = group_id(&group);
                d.group_state = str_bytes(description.state.kafka_name());
                d.protocol_type = str_bytes(&description.protocol_type);
                d.protocol_data = str_bytes(&description.protocol);
                d.members = description
                    .members
                    .into_iter()
                    .map(|m| {
                        let mut x = DescribedGroupMember::default();
                        x.member_id = str_bytes(&m.member_id);
                        x.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
                        x.client_id = str_bytes(&m.client_id);
                        x.client_host = str_bytes(&m.client_host);
                        x.member_metadata = m.metadata;
                        x.member_assignment = m.assignment;
                        x
                    })
                    .collect();
            }
            KafkaGroupDescription::Native(GroupDescription {
                group,
                error,
                state,
                strategy,
                members,
                ..
            }) => {
                d.group_id = group_id(&group);
                if let Some(e) = error
                    .as_ref()
                    .filter(|e| e.code == protocol::ErrorCode::GroupAuthorizationFailed)
                {
                    // The authorizer's answer for this group alone.
                    d.error_code = kafka_code(Some(e));
                } else if error.is_some() {
                    // Kafka (before DescribeGroups v6): an unknown group is
                    // "Dead", without an error.
                    d.group_state = str_bytes("Dead");
                } else {
                    d.group_state = str_bytes(kafka_state(&state));
                    d.protocol_type = str_bytes("consumer");
                    d.protocol_data = str_bytes(&strategy);
                    for m in members {
                        let mut x = DescribedGroupMember::default();
                        x.member_id = str_bytes(&m.member_id);
                        x.client_id = str_bytes(&m.client_id);
                        x.member_metadata = subscription_bytes(&m.subscribed_topics)?;
                        x.member_assignment = assignment_bytes(&m.assignment)?;
                        d.members.push(x);
                    }
                }
            }
        }
        r.groups.push(d);
    }
    Ok(r)
}

/// Encodes the answer to a group request. `shape`: the request's topics and
/// partitions (OffsetCommit, OffsetFetch), group ids (DescribeGroups) or
/// state filter (ListGroups).
pub fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    result: Result<Response, WireError>,
    shape: &Shape,
    ids: &dyn TopicIds,
) -> Result<Bytes, anyhow::Error> {
    let frame = |body: &dyn EncodeDyn| body.frame(api, version, correlation_id);
    let result = match result {
        Ok(r) => r,
        Err(e) if api == ApiKey::ConsumerGroupHeartbeat => {
            let mut r = ConsumerGroupHeartbeatResponse::default();
            r.error_code = kafka_consumer_group_code(Some(&e));
            r.error_message = Some(str_bytes(&e.message));
            r.member_epoch = -1;
            return frame(&r);
        }
        Err(e) => return refuse(api, version, correlation_id, shape, kafka_code(Some(&e))),
    };
    match (api, result) {
        (ApiKey::ConsumerGroupHeartbeat, Response::GroupHeartbeat(h)) => {
            use kafka_protocol::messages::consumer_group_heartbeat_response::{
                Assignment, TopicPartitions as Assigned,
            };
            let mut r = ConsumerGroupHeartbeatResponse::default();
            r.member_id = Some(str_bytes(&h.member_id));
            r.member_epoch = h.member_epoch;
            r.heartbeat_interval_ms = i32::try_from(h.heartbeat_interval_ms).unwrap_or(i32::MAX);
            // The whole assignment every time (KIP-848 allows sending it
            // unchanged; the client reconciles to it).
            let mut a = Assignment::default();
            a.topic_partitions = h
                .assignment
                .iter()
                .filter_map(|t| {
                    let mut x = Assigned::default();
                    x.topic_id = uuid::Uuid::from_bytes(ids.id_of_name(&t.topic)?);
                    x.partitions = t.partitions.iter().map(|&p| p as i32).collect();
                    Some(x)
                })
                .collect();
            r.assignment = Some(a);
            frame(&r)
        }
        (ApiKey::ConsumerGroupHeartbeat, Response::LeaveGroup) => {
            let mut r = ConsumerGroupHeartbeatResponse::default();
            let (member, epoch) = shape.first().map_or((String::new(), -1), |(m, e)| {
                (m.clone(), e.first().copied().unwrap_or(-1))
            });
            r.member_id = Some(str_bytes(&member));
            r.member_epoch = epoch;
            frame(&r)
        }
        (ApiKey::ConsumerGroupDescribe, Response::DescribeGroups(groups)) => {
            frame(&consumer_group_describe_response(&groups, ids))
        }
        (ApiKey::OffsetCommit, Response::OffsetCommit(topics)) => {
            let mut r = OffsetCommitResponse::default();
            r.topics = topics
                .into_iter()
                .map(|t| {
                    let mut x = OffsetCommitResponseTopic::default();
                    x.name = topic_name(&t.name);
                    x.partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut y = OffsetCommitResponsePartition::default();
                            y.partition_index = p.partition as i32;
                            y.error_code = kafka_code(p.error.as_ref());
                            y
                        })
                        .collect();
                    x
                })
                .collect();
            frame(&r)
        }
        (ApiKey::OffsetFetch, Response::OffsetFetch(topics)) => {
            let mut r = OffsetFetchResponse::default();
            r.topics = topics
                .into_iter()
                .map(|t| {
                    let mut x = OffsetFetchResponseTopic::default();
                    x.name = topic_name(&t.name);
                    x.partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let mut y = OffsetFetchResponsePartition::default();
                            y.partition_index = p.partition as i32;
                            y.committed_offset = p.offset;
                            y.committed_leader_epoch = p.leader_epoch;
                            if p.unstable {
                                y.error_code = ResponseError::UnstableOffsetCommit.code();
                            }
                            y.metadata = Some(str_bytes(&p.metadata));
                            y
                        })
                        .collect();
                    x
                })
                .collect();
            frame(&r)
        }
        (ApiKey::ListGroups, Response::ListGroups(groups)) => {
            let mut r = ListGroupsResponse::default();
            r.groups = groups
                .iter()
                .map(|g| (g, kafka_state(&g.state)))
                .filter(|(_, state)| {
                    shape.is_empty() || shape.iter().any(|(f, _)| f.eq_ignore_ascii_case(state))
                })
                .map(|(g, state)| {
                    let mut x = ListedGroup::default();
                    x.group_id = group_id(&g.group);
                    x.protocol_type = str_bytes("consumer");
                    x.group_state = str_bytes(state);
                    x
                })
                .collect();
            frame(&r)
        }
        (api, other) => anyhow::bail!("{api:?}: unexpected native answer {other:?}"),
    }
}

/// Encodes the answer to Kafka-only group calls (`Work::KafkaGroups`):
/// one reply per call, in call order. `shape`: the group ids asked for
/// (DescribeGroups, DeleteGroups).
pub fn encode_kafka_groups(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    replies: Vec<Result<KafkaGroupReply, WireError>>,
    shape: &Shape,
) -> Result<Bytes, anyhow::Error> {
    let frame = |body: &dyn EncodeDyn| body.frame(api, version, correlation_id);
    match api {
        ApiKey::DescribeGroups => {
            let mut groups = Vec::with_capacity(replies.len());
            for r in replies {
                match r {
                    Ok(KafkaGroupReply::Describe(d)) => groups.push(d),
                    // A coordinator that did not answer: the request fails
                    // as a whole, retriably.
                    Err(e) => {
                        return refuse(api, version, correlation_id, shape, kafka_code(Some(&e)))
                    }
                    Ok(other) => anyhow::bail!("{api:?}: unexpected group reply {other:?}"),
                }
            }
            frame(&describe_response(groups)?)
        }
        ApiKey::DeleteGroups => {
            let codes: Vec<i16> = replies
                .iter()
                .map(|r| match r {
                    Ok(KafkaGroupReply::Delete(e)) => match e.as_ref().map(|e| e.code) {
                        // Kafka's own codes for a group with members and
                        // for one that does not exist.
                        Some(protocol::ErrorCode::GroupNotEmpty) => {
                            ResponseError::NonEmptyGroup.code()
                        }
                        Some(protocol::ErrorCode::UnknownGroup) => {
                            ResponseError::GroupIdNotFound.code()
                        }
                        _ => kafka_code(e.as_ref()),
                    },
                    Err(e) => kafka_code(Some(e)),
                    Ok(_) => ResponseError::UnknownServerError.code(),
                })
                .collect();
            frame(&delete_groups_response(
                shape.iter().map(|(g, _)| g.as_str()).zip(codes),
            ))
        }
        ApiKey::TxnOffsetCommit => match replies.into_iter().next() {
            Some(Ok(KafkaGroupReply::TxnOffsetCommit(topics))) => {
                frame(&txn_offset_commit_response(
                    topics
                        .iter()
                        .map(|t| {
                            (
                                t.name.as_str(),
                                t.partitions
                                    .iter()
                                    .map(|p| (p.partition as i32, kafka_code(p.error.as_ref())))
                                    .collect(),
                            )
                        })
                        .collect(),
                ))
            }
            Some(Ok(other)) => anyhow::bail!("{api:?}: unexpected group reply {other:?}"),
            Some(Err(e)) => refuse(api, version, correlation_id, shape, kafka_code(Some(&e))),
            None => anyhow::bail!("{api:?}: no reply"),
        },
        ApiKey::OffsetDelete => {
            let result = match replies.into_iter().next() {
                Some(Ok(KafkaGroupReply::OffsetDelete(r))) => r,
                Some(Ok(other)) => anyhow::bail!("{api:?}: unexpected group reply {other:?}"),
                Some(Err(e)) => Err(e),
                None => anyhow::bail!("{api:?}: no reply"),
            };
            match result {
                Ok(partitions) => frame(&offset_delete_response(shape, 0, &partitions)),
                Err(e) => {
                    let code = match e.code {
                        // Kafka's codes for a group whose members cannot
                        // be told apart from consumers of the topic, and
                        // for one that does not exist.
                        protocol::ErrorCode::GroupNotEmpty => ResponseError::NonEmptyGroup.code(),
                        protocol::ErrorCode::UnknownGroup => ResponseError::GroupIdNotFound.code(),
                        _ => kafka_code(Some(&e)),
                    };
                    frame(&offset_delete_response(shape, code, &[]))
                }
            }
        }
        _ => {
            let reply = match replies.into_iter().next() {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    return refuse(api, version, correlation_id, shape, kafka_code(Some(&e)))
                }
                None => anyhow::bail!("{api:?}: no reply"),
            };
            match (api, reply) {
                (ApiKey::JoinGroup, KafkaGroupReply::Classic(ClassicReply::Join(j))) => {
                    frame(&join_response(j))
                }
                (ApiKey::SyncGroup, KafkaGroupReply::Classic(ClassicReply::Sync(x))) => {
                    let mut r = SyncGroupResponse::default();
                    r.error_code = kafka_classic_code(x.error.as_ref());
                    r.protocol_type = x.protocol_type.as_deref().map(str_bytes);
                    r.protocol_name = x.protocol_name.as_deref().map(str_bytes);
                    r.assignment = x.assignment;
                    frame(&r)
                }
                (ApiKey::Heartbeat, KafkaGroupReply::Classic(ClassicReply::Heartbeat(e))) => {
                    let mut r = HeartbeatResponse::default();
                    r.error_code = kafka_classic_code(e.as_ref());
                    frame(&r)
                }
                (
                    ApiKey::LeaveGroup,
                    KafkaGroupReply::Classic(ClassicReply::Leave { error, members }),
                ) => {
                    let mut r = LeaveGroupResponse::default();
                    r.error_code = kafka_classic_code(error.as_ref());
                    if version >= 3 {
                        r.members = members
                            .iter()
                            .map(|(id, e)| {
                                let mut m = MemberResponse::default();
                                m.member_id = str_bytes(id);
                                m.error_code = kafka_classic_code(e.as_ref());
                                m
                            })
                            .collect();
                    }
                    frame(&r)
                }
                (api, other) => anyhow::bail!("{api:?}: unexpected group reply {other:?}"),
            }
        }
    }
}

/// The OffsetDelete answer: the group's error, or each partition's.
fn offset_delete_response(
    shape: &Shape,
    error: i16,
    partitions: &[(String, i32, Option<WireError>)],
) -> OffsetDeleteResponse {
    let mut r = OffsetDeleteResponse::default();
    r.error_code = error;
    if error != 0 {
        return r;
    }
    r.topics = shape
        .iter()
        .skip(1)
        .map(|(topic, _)| {
            let mut t = OffsetDeleteResponseTopic::default();
            t.name = topic_name(topic);
            t.partitions = partitions
                .iter()
                .filter(|(n, _, _)| n == topic)
                .map(|(_, p, e)| {
                    let mut x = OffsetDeleteResponsePartition::default();
                    x.partition_index = *p;
                    x.error_code = kafka_code(e.as_ref());
                    x
                })
                .collect();
            t
        })
        .collect();
    r
}

fn delete_groups_response<'a>(
    groups: impl Iterator<Item = (&'a str, i16)>,
) -> DeleteGroupsResponse {
    let mut r = DeleteGroupsResponse::default();
    r.results = groups
        .map(|(g, code)| {
            let mut x = DeletableGroupResult::default();
            x.group_id = group_id(g);
            x.error_code = code;
            x
        })
        .collect();
    r
}

/// ConsumerGroupDescribe: each group as its coordinator describes it, its
/// members' assignments and targets by topic id and name (the native
/// coordinator converges to the target through the assignment: what a
/// member may consume now is its assignment, the target its assignment
/// plus what it waits for).
fn consumer_group_describe_response(
    groups: &[GroupDescription],
    ids: &dyn TopicIds,
) -> ConsumerGroupDescribeResponse {
    use kafka_protocol::messages::consumer_group_describe_response::{
        Assignment, DescribedGroup as D, Member, TopicPartitions as Tp,
    };
    let assignment = |tps: &[TopicPartitions]| {
        let mut a = Assignment::default();
        a.topic_partitions = tps
            .iter()
            .map(|t| {
                let mut x = Tp::default();
                x.topic_id = uuid::Uuid::from_bytes(ids.id_of_name(&t.topic).unwrap_or([0; 16]));
                x.topic_name = topic_name(&t.topic);
                x.partitions = t.partitions.iter().map(|&p| p as i32).collect();
                x
            })
            .collect();
        a
    };
    let mut r = ConsumerGroupDescribeResponse::default();
    r.groups = groups
        .iter()
        .map(|g| {
            let mut d = D::default();
            d.group_id = group_id(&g.group);
            d.authorized_operations = i32::MIN;
            if let Some(e) = &g.error {
                d.error_code = kafka_consumer_group_code(Some(e));
                d.error_message = Some(str_bytes(&e.message));
                return d;
            }
            d.group_state = str_bytes(kafka_state(&g.state));
            d.group_epoch = i32::try_from(g.group_epoch).unwrap_or(i32::MAX);
            d.assignment_epoch = d.group_epoch;
            d.assignor_name = str_bytes(match g.strategy.as_str() {
                "sticky" => "uniform",
                other => other,
            });
            d.members = g
                .members
                .iter()
                .map(|m| {
                    let mut x = Member::default();
                    x.member_id = str_bytes(&m.member_id);
                    x.member_epoch = m.member_epoch;
                    x.client_id = str_bytes(&m.client_id);
                    x.client_host = str_bytes("/127.0.0.1");
                    x.subscribed_topic_names =
                        m.subscribed_topics.iter().map(|t| topic_name(t)).collect();
                    x.subscribed_topic_regex =
                        m.topic_regex.as_deref().map(str_bytes).or_else(|| {
                            m.topic_prefix
                                .as_ref()
                                .map(|p| str_bytes(&format!("{}.*", p.replace('.', "\\."))))
                        });
                    x.assignment = assignment(&m.assignment);
                    x.target_assignment = assignment(&m.assignment);
                    // 1: a consumer-protocol member (v1).
                    x.member_type = 1;
                    x
                })
                .collect();
            d
        })
        .collect();
    r
}

/// The answer to a group request that failed as a whole: `error` wherever
/// the response has an error code.
pub fn refuse(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    shape: &Shape,
    error: i16,
) -> Result<Bytes, anyhow::Error> {
    let frame = |body: &dyn EncodeDyn| body.frame(api, version, correlation_id);
    match api {
        ApiKey::ConsumerGroupHeartbeat => {
            let mut r = ConsumerGroupHeartbeatResponse::default();
            r.error_code = error;
            r.member_epoch = -1;
            frame(&r)
        }
        ApiKey::ConsumerGroupDescribe => {
            use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;
            let mut r = ConsumerGroupDescribeResponse::default();
            r.groups = shape
                .iter()
                .map(|(g, _)| {
                    let mut d = DescribedGroup::default();
                    d.group_id = group_id(g);
                    d.error_code = error;
                    d
                })
                .collect();
            frame(&r)
        }
        ApiKey::FindCoordinator => {
            let mut r = FindCoordinatorResponse::default();
            r.error_code = error;
            r.node_id = BrokerId(-1);
            frame(&r)
        }
        ApiKey::JoinGroup => {
            let mut r = JoinGroupResponse::default();
            r.error_code = error;
            r.generation_id = -1;
            r.protocol_name = Some(StrBytes::default());
            frame(&r)
        }
        ApiKey::SyncGroup => {
            let mut r = SyncGroupResponse::default();
            r.error_code = error;
            frame(&r)
        }
        ApiKey::Heartbeat => {
            let mut r = HeartbeatResponse::default();
            r.error_code = error;
            frame(&r)
        }
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupResponse::default();
            r.error_code = error;
            frame(&r)
        }
        ApiKey::OffsetCommit => {
            let mut r = OffsetCommitResponse::default();
            r.topics = shape
                .iter()
                .map(|(n, ps)| {
                    let mut x = OffsetCommitResponseTopic::default();
                    x.name = topic_name(n);
                    x.partitions = ps
                        .iter()
                        .map(|&p| {
                            let mut y = OffsetCommitResponsePartition::default();
                            y.partition_index = p;
                            y.error_code = error;
                            y
                        })
                        .collect();
                    x
                })
                .collect();
            frame(&r)
        }
        ApiKey::OffsetFetch => {
            let mut r = OffsetFetchResponse::default();
            r.error_code = error;
            frame(&r)
        }
        ApiKey::ListGroups => {
            let mut r = ListGroupsResponse::default();
            r.error_code = error;
            frame(&r)
        }
        ApiKey::DescribeGroups => {
            let mut r = DescribeGroupsResponse::default();
            r.groups = shape
                .iter()
                .map(|(g, _)| {
                    let mut d = DescribedGroup::default();
                    d.group_id = group_id(g);
                    d.error_code = error;
                    d.authorized_operations = i32::MIN;
                    d
                })
                .collect();
            frame(&r)
        }
        ApiKey::DeleteGroups => frame(&delete_groups_response(
            shape.iter().map(|(g, _)| (g.as_str(), error)),
        )),
        ApiKey::OffsetDelete => frame(&offset_delete_response(shape, error, &[])),
        ApiKey::TxnOffsetCommit => frame(&txn_offset_commit_response(
            shape
                .iter()
                .map(|(t, ps)| (t.as_str(), ps.iter().map(|&p| (p, error)).collect()))
                .collect(),
        )),
        _ => anyhow::bail!("{api:?} is not a group API"),
    }
}

/// TxnOffsetCommit's answer: each topic's partitions with their codes.
fn txn_offset_commit_response(
    topics: Vec<(&str, Vec<(i32, i16)>)>,
) -> kafka_protocol::messages::TxnOffsetCommitResponse {
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    let mut r = kafka_protocol::messages::TxnOffsetCommitResponse::default();
    r.topics = topics
        .into_iter()
        .map(|(name, parts)| {
            let mut t = TxnOffsetCommitResponseTopic::default();
            t.name = topic_name(name);
            t.partitions = parts
                .into_iter()
                .map(|(p, code)| {
                    let mut x = TxnOffsetCommitResponsePartition::default();
                    x.partition_index = p;
                    x.error_code = code;
                    x
                })
                .collect();
            t
        })
        .collect();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;

    fn body<M: Encodable>(api: ApiKey, version: i16, m: &M) -> Bytes {
        super::super::codec::tests::request_body(api, version, 9, m)
    }

    #[test]
    fn join_group_decodes_to_a_classic_join_with_kip394_from_v4() {
        for (version, known) in [(3, false), (4, true), (7, true)] {
            let mut r = JoinGroupRequest::default();
            r.group_id = group_id("g");
            r.session_timeout_ms = 10_000;
            r.rebalance_timeout_ms = 60_000;
            r.protocol_type = str_bytes("consumer");
            let mut p = JoinGroupRequestProtocol::default();
            p.name = str_bytes("range");
            p.metadata = Bytes::from_static(b"\x00\x01meta");
            r.protocols = vec![p];
            let d = super::super::codec::decode_request(
                body(ApiKey::JoinGroup, version, &r),
                super::super::codec::DEFAULT_MAX_CONTROL_REQUEST_BYTES,
                &super::super::wire::NoTopicIds,
            )
            .unwrap();
            let Work::KafkaGroups {
                kind: KafkaGroupKind::Classic(call),
                ..
            } = d.work
            else {
                panic!("not a classic call")
            };
            let ClassicCall::Join(j) = *call else {
                panic!("not a join")
            };
            assert_eq!(j.require_known_member_id, known, "v{version}");
            assert_eq!(j.client_id, "tester");
            assert_eq!(
                (j.session_timeout_ms, j.rebalance_timeout_ms),
                (10_000, 60_000)
            );
            assert_eq!(j.protocols[0].metadata, Bytes::from_static(b"\x00\x01meta"));
        }
    }

    #[test]
    fn native_assignments_encode_as_consumer_protocol_bytes() {
        let b = assignment_bytes(&[TopicPartitions {
            topic: "t".into(),
            partitions: vec![0, 3],
        }])
        .unwrap();
        let mut rest = b.slice(2..);
        assert_eq!(&b[..2], &[0, 0], "version 0 in front");
        let a = ConsumerProtocolAssignment::decode(&mut rest, 0).unwrap();
        assert_eq!(a.assigned_partitions[0].topic.0.as_str(), "t");
        assert_eq!(a.assigned_partitions[0].partitions, vec![0, 3]);
    }

    #[test]
    fn find_coordinator_answers_each_key_from_its_shard() {
        let node = |k: &str| {
            Ok(NodeInfo {
                node_id: k.len() as u32,
                host: "127.0.0.1".into(),
                port: 9093 + k.len() as u16,
                shard: k.len() as u16,
            })
        };
        let r = find_coordinator_response(3, &["ab".into()], 0, node);
        assert_eq!((r.error_code, r.node_id.0, r.port), (0, 2, 9095));
        let r = find_coordinator_response(4, &["a".into(), "abc".into()], 0, node);
        assert_eq!(r.coordinators.len(), 2);
        assert_eq!(r.coordinators[1].node_id.0, 3);
        // Transactional ids (key type 1) alike; share groups (2) are
        // refused with a code clients do not retry.
        let r = find_coordinator_response(3, &["txn".into()], 1, node);
        assert_eq!((r.error_code, r.node_id.0), (0, 3));
        let r = find_coordinator_response(4, &["tx".into()], 2, node);
        assert_eq!(r.coordinators[0].error_code, 42, "INVALID_REQUEST");
        // A key the authorizer refused: its error alone, no node.
        let some = |k: &str| if k == "no" { Err(30) } else { node(k) };
        let r = find_coordinator_response(4, &["no".into(), "yes".into()], 0, some);
        let got: Vec<(i16, i32)> = r
            .coordinators
            .iter()
            .map(|c| (c.error_code, c.node_id.0))
            .collect();
        assert_eq!(got, [(30, -1), (0, 3)]);
    }
}
