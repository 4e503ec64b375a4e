//! The consumer-group messages <-> flatbuffers: the family of `codec` for
//! GroupHeartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups and
//! DescribeGroups.
//!
//! Must never: panic on a verified buffer whose optional fields are absent
//! (every absent string reads as empty, every absent vector as empty or
//! `None` where the message gives absence a meaning).

use super::fb::{err_code, err_of, strings, DecodeError, ReqBody, RespBody};
use super::generated as fb;
use super::*;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

fn topic_partitions<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    tps: &[TopicPartitions],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::TopicPartitions<'a>>>> {
    let v: Vec<_> = tps
        .iter()
        .map(|tp| {
            let topic = fbb.create_string(&tp.topic);
            let partitions = fbb.create_vector(&tp.partitions);
            fb::TopicPartitions::create(
                fbb,
                &fb::TopicPartitionsArgs {
                    topic: Some(topic),
                    partitions: Some(partitions),
                },
            )
        })
        .collect();
    fbb.create_vector(&v)
}

fn topic_partitions_of(
    v: Option<Vector<'_, ForwardsUOffset<fb::TopicPartitions<'_>>>>,
) -> Option<Vec<TopicPartitions>> {
    v.map(|v| {
        v.iter()
            .map(|tp| TopicPartitions {
                topic: tp.topic().unwrap_or("").to_owned(),
                partitions: tp.partitions().iter().flatten().collect(),
            })
            .collect()
    })
}

fn committed<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    topics: &[CommittedTopic],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::CommittedTopic<'a>>>> {
    let ts: Vec<_> = topics
        .iter()
        .map(|t| {
            let ps: Vec<_> = t
                .partitions
                .iter()
                .map(|p| {
                    let metadata = fbb.create_string(&p.metadata);
                    fb::CommittedOffset::create(
                        fbb,
                        &fb::CommittedOffsetArgs {
                            partition: p.partition,
                            offset: p.offset,
                            metadata: Some(metadata),
                            commit_timestamp: p.commit_timestamp,
                            leader_epoch: p.leader_epoch,
                            unstable: p.unstable,
                        },
                    )
                })
                .collect();
            let ps = fbb.create_vector(&ps);
            let name = fbb.create_string(&t.name);
            fb::CommittedTopic::create(
                fbb,
                &fb::CommittedTopicArgs {
                    name: Some(name),
                    partitions: Some(ps),
                },
            )
        })
        .collect();
    fbb.create_vector(&ts)
}

fn committed_of(
    v: Option<Vector<'_, ForwardsUOffset<fb::CommittedTopic<'_>>>>,
) -> Vec<CommittedTopic> {
    v.iter()
        .flatten()
        .map(|t| CommittedTopic {
            name: t.name().unwrap_or("").to_owned(),
            partitions: t
                .partitions()
                .iter()
                .flatten()
                .map(|p| CommittedOffset {
                    partition: p.partition(),
                    offset: p.offset(),
                    metadata: p.metadata().unwrap_or("").to_owned(),
                    commit_timestamp: p.commit_timestamp(),
                    leader_epoch: p.leader_epoch(),
                    unstable: p.unstable(),
                })
                .collect(),
        })
        .collect()
}

fn strings_of(v: Option<Vector<'_, ForwardsUOffset<&str>>>) -> Vec<String> {
    v.iter().flatten().map(str::to_owned).collect()
}

fn group_of(s: Option<&str>) -> Result<String, DecodeError> {
    s.map(str::to_owned)
        .ok_or(DecodeError::MissingField("group"))
}

/// Encodes a group request's body; `None` for other kinds.
pub(super) fn encode_request(fbb: &mut FlatBufferBuilder<'_>, req: &Request) -> Option<ReqBody> {
    Some(match req {
        Request::GroupHeartbeat(h) => {
            let group = fbb.create_string(&h.group);
            let member_id = fbb.create_string(&h.member_id);
            let topics = h.topics.as_ref().map(|t| strings(fbb, t));
            let topic_prefix = h.topic_prefix.as_ref().map(|p| fbb.create_string(p));
            let topic_regex = h.topic_regex.as_ref().map(|p| fbb.create_string(p));
            let strategy = h.strategy.as_ref().map(|s| fbb.create_string(s));
            let owned = h.owned.as_ref().map(|o| topic_partitions(fbb, o));
            let client_id = h.client_id.as_ref().map(|c| fbb.create_string(c));
            (
                fb::Request::GroupHeartbeatRequest,
                fb::GroupHeartbeatRequest::create(
                    fbb,
                    &fb::GroupHeartbeatRequestArgs {
                        group: Some(group),
                        member_id: Some(member_id),
                        member_epoch: h.member_epoch,
                        topics,
                        topic_prefix,
                        topic_regex,
                        strategy,
                        session_timeout_ms: h.session_timeout_ms,
                        max_poll_interval_ms: h.max_poll_interval_ms,
                        owned,
                        polled: h.polled,
                        client_id,
                    },
                )
                .as_union_value(),
            )
        }
        Request::LeaveGroup(l) => {
            let group = fbb.create_string(&l.group);
            let member_id = fbb.create_string(&l.member_id);
            (
                fb::Request::LeaveGroupRequest,
                fb::LeaveGroupRequest::create(
                    fbb,
                    &fb::LeaveGroupRequestArgs {
                        group: Some(group),
                        member_id: Some(member_id),
                        member_epoch: l.member_epoch,
                    },
                )
                .as_union_value(),
            )
        }
        Request::OffsetCommit(c) => {
            let topics: Vec<_> = c
                .topics
                .iter()
                .map(|t| {
                    let ps: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let metadata = fbb.create_string(&p.metadata);
                            fb::OffsetCommitPartition::create(
                                fbb,
                                &fb::OffsetCommitPartitionArgs {
                                    partition: p.partition,
                                    offset: p.offset,
                                    metadata: Some(metadata),
                                    leader_epoch: p.leader_epoch,
                                },
                            )
                        })
                        .collect();
                    let ps = fbb.create_vector(&ps);
                    let name = fbb.create_string(&t.name);
                    fb::OffsetCommitTopic::create(
                        fbb,
                        &fb::OffsetCommitTopicArgs {
                            name: Some(name),
                            partitions: Some(ps),
                        },
                    )
                })
                .collect();
            let topics = fbb.create_vector(&topics);
            let group = fbb.create_string(&c.group);
            let member_id = fbb.create_string(&c.member_id);
            (
                fb::Request::OffsetCommitRequest,
                fb::OffsetCommitRequest::create(
                    fbb,
                    &fb::OffsetCommitRequestArgs {
                        group: Some(group),
                        member_id: Some(member_id),
                        member_epoch: c.member_epoch,
                        topics: Some(topics),
                    },
                )
                .as_union_value(),
            )
        }
        Request::OffsetFetch(f) => {
            let group = fbb.create_string(&f.group);
            let topics = f.topics.as_ref().map(|t| topic_partitions(fbb, t));
            (
                fb::Request::OffsetFetchRequest,
                fb::OffsetFetchRequest::create(
                    fbb,
                    &fb::OffsetFetchRequestArgs {
                        group: Some(group),
                        topics,
                        require_stable: f.require_stable,
                    },
                )
                .as_union_value(),
            )
        }
        Request::ListGroups => (
            fb::Request::ListGroupsRequest,
            fb::ListGroupsRequest::create(fbb, &fb::ListGroupsRequestArgs {}).as_union_value(),
        ),
        Request::DescribeGroups(groups) => {
            let g = strings(fbb, groups);
            (
                fb::Request::DescribeGroupsRequest,
                fb::DescribeGroupsRequest::create(
                    fbb,
                    &fb::DescribeGroupsRequestArgs { groups: Some(g) },
                )
                .as_union_value(),
            )
        }
        _ => return None,
    })
}

/// Decodes a group request; `Ok(None)` for other kinds.
pub(super) fn decode_request(
    env: &fb::RequestEnvelope<'_>,
) -> Result<Option<Request>, DecodeError> {
    let missing = DecodeError::MissingRequest;
    Ok(Some(match env.request_type() {
        fb::Request::GroupHeartbeatRequest => {
            let h = env.request_as_group_heartbeat_request().ok_or(missing)?;
            Request::GroupHeartbeat(GroupHeartbeatRequest {
                group: group_of(h.group())?,
                member_id: h.member_id().unwrap_or("").to_owned(),
                member_epoch: h.member_epoch(),
                topics: h.topics().map(|t| t.iter().map(str::to_owned).collect()),
                topic_prefix: h.topic_prefix().map(str::to_owned),
                topic_regex: h.topic_regex().map(str::to_owned),
                strategy: h.strategy().map(str::to_owned),
                session_timeout_ms: h.session_timeout_ms(),
                max_poll_interval_ms: h.max_poll_interval_ms(),
                owned: topic_partitions_of(h.owned()),
                polled: h.polled(),
                client_id: h.client_id().map(str::to_owned),
            })
        }
        fb::Request::LeaveGroupRequest => {
            let l = env.request_as_leave_group_request().ok_or(missing)?;
            Request::LeaveGroup(LeaveGroupRequest {
                group: group_of(l.group())?,
                member_id: l.member_id().unwrap_or("").to_owned(),
                member_epoch: l.member_epoch(),
            })
        }
        fb::Request::OffsetCommitRequest => {
            let c = env.request_as_offset_commit_request().ok_or(missing)?;
            let mut topics = Vec::new();
            for t in c.topics().iter().flatten() {
                topics.push(OffsetCommitTopic {
                    name: t
                        .name()
                        .map(str::to_owned)
                        .ok_or(DecodeError::MissingField("name"))?,
                    partitions: t
                        .partitions()
                        .iter()
                        .flatten()
                        .map(|p| OffsetCommitPartition {
                            partition: p.partition(),
                            offset: p.offset(),
                            metadata: p.metadata().unwrap_or("").to_owned(),
                            leader_epoch: p.leader_epoch(),
                        })
                        .collect(),
                });
            }
            Request::OffsetCommit(OffsetCommitRequest {
                group: group_of(c.group())?,
                member_id: c.member_id().unwrap_or("").to_owned(),
                member_epoch: c.member_epoch(),
                topics,
            })
        }
        fb::Request::OffsetFetchRequest => {
            let f = env.request_as_offset_fetch_request().ok_or(missing)?;
            Request::OffsetFetch(OffsetFetchRequest {
                group: group_of(f.group())?,
                topics: topic_partitions_of(f.topics()),
                require_stable: f.require_stable(),
            })
        }
        fb::Request::ListGroupsRequest => Request::ListGroups,
        fb::Request::DescribeGroupsRequest => {
            let d = env.request_as_describe_groups_request().ok_or(missing)?;
            Request::DescribeGroups(strings_of(d.groups()))
        }
        _ => return Ok(None),
    }))
}

/// Encodes a group response's body; `None` for other kinds.
pub(super) fn encode_response(
    fbb: &mut FlatBufferBuilder<'_>,
    resp: &Response,
) -> Option<RespBody> {
    Some(match resp {
        Response::GroupHeartbeat(h) => {
            let member_id = fbb.create_string(&h.member_id);
            let assignment = topic_partitions(fbb, &h.assignment);
            (
                fb::Response::GroupHeartbeatResponse,
                fb::GroupHeartbeatResponse::create(
                    fbb,
                    &fb::GroupHeartbeatResponseArgs {
                        member_id: Some(member_id),
                        member_epoch: h.member_epoch,
                        heartbeat_interval_ms: h.heartbeat_interval_ms,
                        assignment: Some(assignment),
                    },
                )
                .as_union_value(),
            )
        }
        Response::LeaveGroup => (
            fb::Response::LeaveGroupResponse,
            fb::LeaveGroupResponse::create(fbb, &fb::LeaveGroupResponseArgs {}).as_union_value(),
        ),
        Response::OffsetCommit(topics) => {
            let ts: Vec<_> = topics
                .iter()
                .map(|t| {
                    let ps: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let msg = p.error.as_ref().map(|e| fbb.create_string(&e.message));
                            fb::PartitionError::create(
                                fbb,
                                &fb::PartitionErrorArgs {
                                    partition: p.partition,
                                    error_code: err_code(&p.error),
                                    error_message: msg,
                                },
                            )
                        })
                        .collect();
                    let ps = fbb.create_vector(&ps);
                    let name = fbb.create_string(&t.name);
                    fb::TopicPartitionErrors::create(
                        fbb,
                        &fb::TopicPartitionErrorsArgs {
                            name: Some(name),
                            partitions: Some(ps),
                        },
                    )
                })
                .collect();
            let ts = fbb.create_vector(&ts);
            (
                fb::Response::OffsetCommitResponse,
                fb::OffsetCommitResponse::create(
                    fbb,
                    &fb::OffsetCommitResponseArgs { topics: Some(ts) },
                )
                .as_union_value(),
            )
        }
        Response::OffsetFetch(topics) => {
            let ts = committed(fbb, topics);
            (
                fb::Response::OffsetFetchResponse,
                fb::OffsetFetchResponse::create(
                    fbb,
                    &fb::OffsetFetchResponseArgs { topics: Some(ts) },
                )
                .as_union_value(),
            )
        }
        Response::ListGroups(groups) => {
            let gs: Vec<_> = groups
                .iter()
                .map(|g| {
                    let group = fbb.create_string(&g.group);
                    let state = fbb.create_string(&g.state);
                    let strategy = fbb.create_string(&g.strategy);
                    fb::GroupListing::create(
                        fbb,
                        &fb::GroupListingArgs {
                            group: Some(group),
                            state: Some(state),
                            members: g.members,
                            strategy: Some(strategy),
                            coordinator_shard: g.coordinator_shard,
                        },
                    )
                })
                .collect();
            let gs = fbb.create_vector(&gs);
            (
                fb::Response::ListGroupsResponse,
                fb::ListGroupsResponse::create(
                    fbb,
                    &fb::ListGroupsResponseArgs { groups: Some(gs) },
                )
                .as_union_value(),
            )
        }
        Response::DescribeGroups(groups) => {
            let gs: Vec<_> = groups
                .iter()
                .map(|g| {
                    let members: Vec<_> = g
                        .members
                        .iter()
                        .map(|m| {
                            let member_id = fbb.create_string(&m.member_id);
                            let client_id = fbb.create_string(&m.client_id);
                            let assignment = topic_partitions(fbb, &m.assignment);
                            let owned = topic_partitions(fbb, &m.owned);
                            let subscribed = strings(fbb, &m.subscribed_topics);
                            let prefix = m.topic_prefix.as_ref().map(|p| fbb.create_string(p));
                            let regex = m.topic_regex.as_ref().map(|p| fbb.create_string(p));
                            fb::GroupMember::create(
                                fbb,
                                &fb::GroupMemberArgs {
                                    member_id: Some(member_id),
                                    client_id: Some(client_id),
                                    member_epoch: m.member_epoch,
                                    assignment: Some(assignment),
                                    owned: Some(owned),
                                    subscribed_topics: Some(subscribed),
                                    topic_prefix: prefix,
                                    topic_regex: regex,
                                },
                            )
                        })
                        .collect();
                    let members = fbb.create_vector(&members);
                    let offsets = committed(fbb, &g.offsets);
                    let group = fbb.create_string(&g.group);
                    let msg = g.error.as_ref().map(|e| fbb.create_string(&e.message));
                    let state = fbb.create_string(&g.state);
                    let strategy = fbb.create_string(&g.strategy);
                    fb::GroupDescription::create(
                        fbb,
                        &fb::GroupDescriptionArgs {
                            group: Some(group),
                            error_code: err_code(&g.error),
                            error_message: msg,
                            state: Some(state),
                            group_epoch: g.group_epoch,
                            strategy: Some(strategy),
                            coordinator_shard: g.coordinator_shard,
                            members: Some(members),
                            offsets: Some(offsets),
                        },
                    )
                })
                .collect();
            let gs = fbb.create_vector(&gs);
            (
                fb::Response::DescribeGroupsResponse,
                fb::DescribeGroupsResponse::create(
                    fbb,
                    &fb::DescribeGroupsResponseArgs { groups: Some(gs) },
                )
                .as_union_value(),
            )
        }
        _ => return None,
    })
}

/// Decodes a group response; `Ok(None)` for other kinds.
pub(super) fn decode_response(
    env: &fb::ResponseEnvelope<'_>,
) -> Result<Option<Response>, DecodeError> {
    let missing = DecodeError::MissingField("response");
    Ok(Some(match env.response_type() {
        fb::Response::GroupHeartbeatResponse => {
            let h = env.response_as_group_heartbeat_response().ok_or(missing)?;
            Response::GroupHeartbeat(GroupHeartbeatResponse {
                member_id: h.member_id().unwrap_or("").to_owned(),
                member_epoch: h.member_epoch(),
                heartbeat_interval_ms: h.heartbeat_interval_ms(),
                assignment: topic_partitions_of(h.assignment()).unwrap_or_default(),
            })
        }
        fb::Response::LeaveGroupResponse => Response::LeaveGroup,
        fb::Response::OffsetCommitResponse => {
            let c = env.response_as_offset_commit_response().ok_or(missing)?;
            Response::OffsetCommit(
                c.topics()
                    .iter()
                    .flatten()
                    .map(|t| TopicPartitionErrors {
                        name: t.name().unwrap_or("").to_owned(),
                        partitions: t
                            .partitions()
                            .iter()
                            .flatten()
                            .map(|p| PartitionError {
                                partition: p.partition(),
                                error: err_of(p.error_code(), p.error_message()),
                            })
                            .collect(),
                    })
                    .collect(),
            )
        }
        fb::Response::OffsetFetchResponse => {
            let f = env.response_as_offset_fetch_response().ok_or(missing)?;
            Response::OffsetFetch(committed_of(f.topics()))
        }
        fb::Response::ListGroupsResponse => {
            let l = env.response_as_list_groups_response().ok_or(missing)?;
            Response::ListGroups(
                l.groups()
                    .iter()
                    .flatten()
                    .map(|g| GroupListing {
                        group: g.group().unwrap_or("").to_owned(),
                        state: g.state().unwrap_or("").to_owned(),
                        members: g.members(),
                        strategy: g.strategy().unwrap_or("").to_owned(),
                        coordinator_shard: g.coordinator_shard(),
                    })
                    .collect(),
            )
        }
        fb::Response::DescribeGroupsResponse => {
            let d = env.response_as_describe_groups_response().ok_or(missing)?;
            Response::DescribeGroups(
                d.groups()
                    .iter()
                    .flatten()
                    .map(|g| GroupDescription {
                        group: g.group().unwrap_or("").to_owned(),
                        error: err_of(g.error_code(), g.error_message()),
                        state: g.state().unwrap_or("").to_owned(),
                        group_epoch: g.group_epoch(),
                        strategy: g.strategy().unwrap_or("").to_owned(),
                        coordinator_shard: g.coordinator_shard(),
                        members: g
                            .members()
                            .iter()
                            .flatten()
                            .map(|m| GroupMember {
                                member_id: m.member_id().unwrap_or("").to_owned(),
                                client_id: m.client_id().unwrap_or("").to_owned(),
                                member_epoch: m.member_epoch(),
                                assignment: topic_partitions_of(m.assignment()).unwrap_or_default(),
                                owned: topic_partitions_of(m.owned()).unwrap_or_default(),
                                subscribed_topics: strings_of(m.subscribed_topics()),
                                topic_prefix: m.topic_prefix().map(str::to_owned),
                                topic_regex: m.topic_regex().map(str::to_owned),
                            })
                            .collect(),
                        offsets: committed_of(g.offsets()),
                    })
                    .collect(),
            )
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::codec::{decode_request, decode_response, encode_request, encode_response};
    use super::*;
    use bytes::Bytes;

    fn body(framed: Vec<u8>) -> Bytes {
        Bytes::from(framed).slice(frame::LEN_BYTES..)
    }

    fn tps() -> Vec<TopicPartitions> {
        vec![TopicPartitions {
            topic: "t".into(),
            partitions: vec![0, 3],
        }]
    }

    #[test]
    fn every_group_request_round_trips() {
        let reqs = vec![
            Request::GroupHeartbeat(GroupHeartbeatRequest {
                group: "g".into(),
                member_id: String::new(),
                member_epoch: 0,
                topics: Some(vec!["t".into()]),
                topic_prefix: None,
                topic_regex: None,
                strategy: Some("sticky".into()),
                session_timeout_ms: 10_000,
                max_poll_interval_ms: 60_000,
                owned: None,
                polled: true,
                client_id: Some("app".into()),
            }),
            // Absent subscription and owned set mean "unchanged": they must
            // stay absent, not become empty lists.
            Request::GroupHeartbeat(GroupHeartbeatRequest {
                group: "g".into(),
                member_id: "m".into(),
                member_epoch: 3,
                topics: None,
                topic_prefix: Some("logs.".into()),
                topic_regex: Some("^logs\\..*$".into()),
                strategy: None,
                session_timeout_ms: 45_000,
                max_poll_interval_ms: 300_000,
                owned: Some(tps()),
                polled: false,
                client_id: None,
            }),
            Request::LeaveGroup(LeaveGroupRequest {
                group: "g".into(),
                member_id: "m".into(),
                member_epoch: 3,
            }),
            Request::OffsetCommit(OffsetCommitRequest {
                group: "g".into(),
                member_id: "m".into(),
                member_epoch: 3,
                topics: vec![OffsetCommitTopic {
                    name: "t".into(),
                    partitions: vec![OffsetCommitPartition {
                        partition: 3,
                        offset: 42,
                        metadata: "note".into(),
                        leader_epoch: 5,
                    }],
                }],
            }),
            Request::OffsetFetch(OffsetFetchRequest {
                group: "g".into(),
                topics: None,
                require_stable: false,
            }),
            Request::OffsetFetch(OffsetFetchRequest {
                group: "g".into(),
                topics: Some(tps()),
                require_stable: true,
            }),
            Request::ListGroups,
            Request::DescribeGroups(vec!["g".into(), "h".into()]),
        ];
        for (i, request) in reqs.into_iter().enumerate() {
            let r = RequestFrame {
                version: PROTOCOL_VERSION,
                correlation_id: i as u32,
                client_id: Some("c".into()),
                request,
            };
            assert_eq!(decode_request(&body(encode_request(&r))).unwrap(), r);
        }
    }

    #[test]
    fn every_group_response_round_trips() {
        let committed = vec![CommittedTopic {
            name: "t".into(),
            partitions: vec![CommittedOffset {
                partition: 0,
                offset: 7,
                metadata: "m".into(),
                commit_timestamp: 1_700_000_000_000,
                leader_epoch: 2,
                unstable: true,
            }],
        }];
        let resps = vec![
            Response::GroupHeartbeat(GroupHeartbeatResponse {
                member_id: "m".into(),
                member_epoch: 4,
                heartbeat_interval_ms: 3_000,
                assignment: tps(),
            }),
            Response::LeaveGroup,
            Response::OffsetCommit(vec![TopicPartitionErrors {
                name: "t".into(),
                partitions: vec![
                    PartitionError {
                        partition: 0,
                        error: None,
                    },
                    PartitionError {
                        partition: 1,
                        error: Some(WireError::new(ErrorCode::StaleMemberEpoch, "stale")),
                    },
                ],
            }]),
            Response::OffsetFetch(committed.clone()),
            Response::ListGroups(vec![GroupListing {
                group: "g".into(),
                state: "stable".into(),
                members: 2,
                strategy: "range".into(),
                coordinator_shard: 1,
            }]),
            Response::DescribeGroups(vec![GroupDescription {
                group: "g".into(),
                error: None,
                state: "stable".into(),
                group_epoch: 5,
                strategy: "sticky".into(),
                coordinator_shard: 1,
                members: vec![GroupMember {
                    member_id: "m".into(),
                    client_id: "app".into(),
                    member_epoch: 5,
                    assignment: tps(),
                    owned: tps(),
                    subscribed_topics: vec!["t".into()],
                    topic_prefix: None,
                    topic_regex: None,
                }],
                offsets: committed,
            }]),
        ];
        for (i, r) in resps.into_iter().enumerate() {
            let f = ResponseFrame {
                correlation_id: i as u32,
                result: Ok(r),
            };
            assert_eq!(decode_response(&body(encode_response(&f))).unwrap(), f);
        }
    }
}
