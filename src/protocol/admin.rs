//! The admin messages <-> flatbuffers: ApiVersions, Metadata, CreateTopics,
//! DeleteTopics, DescribeTopics, CreatePartitions, AlterConfigs, the
//! operators' transaction requests (ListTransactions, DescribeTransactions)
//! and SCRAM users (DescribeUsers, AlterUsers).
//!
//! Must never: panic on a verified buffer whose optional fields are absent.

use super::fb::{err_code, err_of, name_of, opt_str, strings, DecodeError, ReqBody, RespBody};
use super::generated as fb;
use super::*;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

/// A topic id as two big-endian halves (the schema's `id_hi`, `id_lo`).
fn id_halves(id: &[u8; 16]) -> (u64, u64) {
    let (hi, lo) = id.split_at(8);
    (
        u64::from_be_bytes(hi.try_into().expect("8 bytes")),
        u64::from_be_bytes(lo.try_into().expect("8 bytes")),
    )
}

fn id_of(hi: u64, lo: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&hi.to_be_bytes());
    id[8..].copy_from_slice(&lo.to_be_bytes());
    id
}

fn topic_results<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    results: &[TopicResult],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::CreateTopicResult<'a>>>> {
    let rs: Vec<_> = results
        .iter()
        .map(|r| {
            let name = fbb.create_string(&r.name);
            let msg = opt_str(fbb, &r.error);
            fb::CreateTopicResult::create(
                fbb,
                &fb::CreateTopicResultArgs {
                    name: Some(name),
                    error_code: err_code(&r.error),
                    error_message: msg,
                },
            )
        })
        .collect();
    fbb.create_vector(&rs)
}

fn config_entries<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    configs: &[(String, String)],
) -> Option<WIPOffset<Vector<'a, ForwardsUOffset<fb::ConfigEntry<'a>>>>> {
    if configs.is_empty() {
        return None;
    }
    let cs: Vec<_> = configs
        .iter()
        .map(|(k, v)| {
            let key = fbb.create_string(k);
            let value = fbb.create_string(v);
            fb::ConfigEntry::create(
                fbb,
                &fb::ConfigEntryArgs {
                    key: Some(key),
                    value: Some(value),
                },
            )
        })
        .collect();
    Some(fbb.create_vector(&cs))
}

fn configs_of(
    v: Option<Vector<'_, ForwardsUOffset<fb::ConfigEntry<'_>>>>,
) -> Vec<(String, String)> {
    v.iter()
        .flatten()
        .map(|c| {
            (
                c.key().unwrap_or("").to_owned(),
                c.value().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn topic_results_of(
    v: Option<Vector<'_, ForwardsUOffset<fb::CreateTopicResult<'_>>>>,
) -> Result<Vec<TopicResult>, DecodeError> {
    let mut rs = Vec::new();
    for r in v.iter().flatten() {
        rs.push(TopicResult {
            name: name_of(r.name())?,
            error: err_of(r.error_code(), r.error_message()),
        });
    }
    Ok(rs)
}

/// Encodes a request body of this family; `None` for other kinds.
pub(super) fn encode_request(fbb: &mut FlatBufferBuilder<'_>, req: &Request) -> Option<ReqBody> {
    Some(match req {
        Request::ApiVersions => (
            fb::Request::ApiVersionsRequest,
            fb::ApiVersionsRequest::create(fbb, &fb::ApiVersionsRequestArgs {}).as_union_value(),
        ),
        Request::Metadata {
            topics,
            auto_create,
            include_internal,
        } => {
            let t = topics.as_ref().map(|t| strings(fbb, t));
            (
                fb::Request::MetadataRequest,
                fb::MetadataRequest::create(
                    fbb,
                    &fb::MetadataRequestArgs {
                        topics: t,
                        allow_auto_topic_creation: *auto_create,
                        include_internal: *include_internal,
                    },
                )
                .as_union_value(),
            )
        }
        Request::CreateTopics(topics) => {
            let offs: Vec<_> = topics
                .iter()
                .map(|t| {
                    let name = fbb.create_string(&t.name);
                    let configs = config_entries(fbb, &t.configs);
                    fb::CreateTopic::create(
                        fbb,
                        &fb::CreateTopicArgs {
                            name: Some(name),
                            partitions: t.partitions,
                            configs,
                        },
                    )
                })
                .collect();
            let v = fbb.create_vector(&offs);
            (
                fb::Request::CreateTopicsRequest,
                fb::CreateTopicsRequest::create(
                    fbb,
                    &fb::CreateTopicsRequestArgs { topics: Some(v) },
                )
                .as_union_value(),
            )
        }
        Request::DeleteTopics(names) => {
            let t = strings(fbb, names);
            (
                fb::Request::DeleteTopicsRequest,
                fb::DeleteTopicsRequest::create(
                    fbb,
                    &fb::DeleteTopicsRequestArgs { topics: Some(t) },
                )
                .as_union_value(),
            )
        }
        Request::CreatePartitions(topics) => {
            let ts: Vec<_> = topics
                .iter()
                .map(|t| {
                    let name = fbb.create_string(&t.name);
                    fb::CreatePartitionsTopic::create(
                        fbb,
                        &fb::CreatePartitionsTopicArgs {
                            name: Some(name),
                            count: t.count,
                        },
                    )
                })
                .collect();
            let ts = fbb.create_vector(&ts);
            (
                fb::Request::CreatePartitionsRequest,
                fb::CreatePartitionsRequest::create(
                    fbb,
                    &fb::CreatePartitionsRequestArgs { topics: Some(ts) },
                )
                .as_union_value(),
            )
        }
        Request::AlterConfigs {
            topics,
            validate_only,
        } => {
            let ts: Vec<_> = topics
                .iter()
                .map(|t| {
                    let ops: Vec<_> = t
                        .ops
                        .iter()
                        .map(|o| {
                            let key = fbb.create_string(&o.key);
                            let value = fbb.create_string(&o.value);
                            fb::ConfigOp::create(
                                fbb,
                                &fb::ConfigOpArgs {
                                    key: Some(key),
                                    op: fb::ConfigOpKind(o.op as i8),
                                    value: Some(value),
                                },
                            )
                        })
                        .collect();
                    let ops = fbb.create_vector(&ops);
                    let name = fbb.create_string(&t.name);
                    fb::AlterConfigsTopic::create(
                        fbb,
                        &fb::AlterConfigsTopicArgs {
                            name: Some(name),
                            ops: Some(ops),
                            replace: t.replace,
                        },
                    )
                })
                .collect();
            let ts = fbb.create_vector(&ts);
            (
                fb::Request::AlterConfigsRequest,
                fb::AlterConfigsRequest::create(
                    fbb,
                    &fb::AlterConfigsRequestArgs {
                        topics: Some(ts),
                        validate_only: *validate_only,
                    },
                )
                .as_union_value(),
            )
        }
        Request::DescribeTopics { topics } => {
            let t = topics.as_ref().map(|t| strings(fbb, t));
            (
                fb::Request::DescribeTopicsRequest,
                fb::DescribeTopicsRequest::create(
                    fbb,
                    &fb::DescribeTopicsRequestArgs { topics: t },
                )
                .as_union_value(),
            )
        }
        Request::ListTransactions {
            states,
            producer_ids,
        } => {
            let states = strings(fbb, states);
            let producer_ids = fbb.create_vector(producer_ids);
            (
                fb::Request::ListTransactionsRequest,
                fb::ListTransactionsRequest::create(
                    fbb,
                    &fb::ListTransactionsRequestArgs {
                        states: Some(states),
                        producer_ids: Some(producer_ids),
                    },
                )
                .as_union_value(),
            )
        }
        Request::DescribeTransactions(ids) => {
            let ids = strings(fbb, ids);
            (
                fb::Request::DescribeTransactionsRequest,
                fb::DescribeTransactionsRequest::create(
                    fbb,
                    &fb::DescribeTransactionsRequestArgs {
                        transactional_ids: Some(ids),
                    },
                )
                .as_union_value(),
            )
        }
        Request::DescribeUsers(names) => {
            let names = names.as_ref().map(|n| strings(fbb, n));
            (
                fb::Request::DescribeUsersRequest,
                fb::DescribeUsersRequest::create(fbb, &fb::DescribeUsersRequestArgs { names })
                    .as_union_value(),
            )
        }
        Request::AlterUsers(changes) => {
            use crate::security::users::UserChange;
            let mut deletions = Vec::new();
            let mut upsertions = Vec::new();
            for c in changes {
                match c {
                    UserChange::Delete { user, mechanism } => {
                        let name = fbb.create_string(user);
                        deletions.push(fb::UserDeletion::create(
                            fbb,
                            &fb::UserDeletionArgs {
                                name: Some(name),
                                mechanism: *mechanism,
                            },
                        ));
                    }
                    UserChange::Upsert {
                        user,
                        mechanism,
                        iterations,
                        salt,
                        salted_password,
                    } => {
                        let name = fbb.create_string(user);
                        let salt = fbb.create_vector(salt);
                        let salted = fbb.create_vector(salted_password);
                        upsertions.push(fb::UserUpsertion::create(
                            fbb,
                            &fb::UserUpsertionArgs {
                                name: Some(name),
                                mechanism: *mechanism,
                                iterations: *iterations,
                                salt: Some(salt),
                                salted_password: Some(salted),
                            },
                        ));
                    }
                }
            }
            let deletions = fbb.create_vector(&deletions);
            let upsertions = fbb.create_vector(&upsertions);
            (
                fb::Request::AlterUsersRequest,
                fb::AlterUsersRequest::create(
                    fbb,
                    &fb::AlterUsersRequestArgs {
                        deletions: Some(deletions),
                        upsertions: Some(upsertions),
                    },
                )
                .as_union_value(),
            )
        }
        _ => return None,
    })
}

/// Decodes a request of this family; `Ok(None)` for other kinds.
pub(super) fn decode_request(
    env: &fb::RequestEnvelope<'_>,
) -> Result<Option<Request>, DecodeError> {
    let missing = DecodeError::MissingRequest;
    Ok(Some(match env.request_type() {
        fb::Request::ApiVersionsRequest => Request::ApiVersions,
        fb::Request::MetadataRequest => {
            let m = env.request_as_metadata_request().ok_or(missing)?;
            let topics = m
                .topics()
                .map(|t| t.iter().map(str::to_owned).collect::<Vec<_>>());
            Request::Metadata {
                topics: topics.filter(|t| !t.is_empty()),
                auto_create: m.allow_auto_topic_creation(),
                include_internal: m.include_internal(),
            }
        }
        fb::Request::CreateTopicsRequest => {
            let c = env.request_as_create_topics_request().ok_or(missing)?;
            let mut out = Vec::new();
            for t in c.topics().iter().flatten() {
                let configs = configs_of(t.configs());
                out.push(CreateTopic {
                    name: name_of(t.name())?,
                    partitions: t.partitions(),
                    configs,
                });
            }
            Request::CreateTopics(out)
        }
        fb::Request::DeleteTopicsRequest => {
            let d = env.request_as_delete_topics_request().ok_or(missing)?;
            Request::DeleteTopics(d.topics().iter().flatten().map(str::to_owned).collect())
        }
        fb::Request::CreatePartitionsRequest => {
            let c = env.request_as_create_partitions_request().ok_or(missing)?;
            let mut out = Vec::new();
            for t in c.topics().iter().flatten() {
                out.push(CreatePartitionsTopic {
                    name: name_of(t.name())?,
                    count: t.count(),
                });
            }
            Request::CreatePartitions(out)
        }
        fb::Request::AlterConfigsRequest => {
            let a = env.request_as_alter_configs_request().ok_or(missing)?;
            let mut topics = Vec::new();
            for t in a.topics().iter().flatten() {
                let mut ops = Vec::new();
                for o in t.ops().iter().flatten() {
                    let op = match o.op() {
                        fb::ConfigOpKind::Set => ConfigOpKind::Set,
                        fb::ConfigOpKind::Delete => ConfigOpKind::Delete,
                        fb::ConfigOpKind::Append => ConfigOpKind::Append,
                        fb::ConfigOpKind::Subtract => ConfigOpKind::Subtract,
                        _ => return Err(DecodeError::MissingField("op")),
                    };
                    ops.push(ConfigOp {
                        key: o.key().ok_or(DecodeError::MissingField("key"))?.to_owned(),
                        op,
                        value: o.value().unwrap_or_default().to_owned(),
                    });
                }
                topics.push(AlterConfigsTopic {
                    name: name_of(t.name())?,
                    ops,
                    replace: t.replace(),
                });
            }
            Request::AlterConfigs {
                topics,
                validate_only: a.validate_only(),
            }
        }
        fb::Request::DescribeTopicsRequest => {
            let d = env.request_as_describe_topics_request().ok_or(missing)?;
            let topics = d
                .topics()
                .map(|t| t.iter().map(str::to_owned).collect::<Vec<_>>());
            Request::DescribeTopics {
                topics: topics.filter(|t| !t.is_empty()),
            }
        }
        fb::Request::ListTransactionsRequest => {
            let l = env.request_as_list_transactions_request().ok_or(missing)?;
            Request::ListTransactions {
                states: l
                    .states()
                    .map(|v| v.iter().map(str::to_owned).collect())
                    .unwrap_or_default(),
                producer_ids: l
                    .producer_ids()
                    .map(|v| v.iter().collect())
                    .unwrap_or_default(),
            }
        }
        fb::Request::DescribeTransactionsRequest => {
            let d = env
                .request_as_describe_transactions_request()
                .ok_or(missing)?;
            Request::DescribeTransactions(
                d.transactional_ids()
                    .map(|v| v.iter().map(str::to_owned).collect())
                    .unwrap_or_default(),
            )
        }
        fb::Request::DescribeUsersRequest => {
            let d = env.request_as_describe_users_request().ok_or(missing)?;
            Request::DescribeUsers(d.names().map(|v| v.iter().map(str::to_owned).collect()))
        }
        fb::Request::AlterUsersRequest => {
            use crate::security::users::UserChange;
            let a = env.request_as_alter_users_request().ok_or(missing)?;
            let mut changes = Vec::new();
            for d in a.deletions().iter().flatten() {
                changes.push(UserChange::Delete {
                    user: d
                        .name()
                        .ok_or(DecodeError::MissingField("name"))?
                        .to_owned(),
                    mechanism: d.mechanism(),
                });
            }
            for u in a.upsertions().iter().flatten() {
                changes.push(UserChange::Upsert {
                    user: u
                        .name()
                        .ok_or(DecodeError::MissingField("name"))?
                        .to_owned(),
                    mechanism: u.mechanism(),
                    iterations: u.iterations(),
                    salt: u.salt().map(|v| v.bytes().to_vec()).unwrap_or_default(),
                    salted_password: u
                        .salted_password()
                        .map(|v| v.bytes().to_vec())
                        .unwrap_or_default(),
                });
            }
            Request::AlterUsers(changes)
        }
        _ => return Ok(None),
    }))
}

/// Encodes a response body of this family; `None` for other kinds.
pub(super) fn encode_response(
    fbb: &mut FlatBufferBuilder<'_>,
    resp: &Response,
) -> Option<RespBody> {
    Some(match resp {
        Response::ApiVersions(apis) => {
            let ranges: Vec<_> = apis
                .iter()
                .map(|a| {
                    fb::ApiVersionRange::new(fb::ApiKey(a.api as u16), a.min_version, a.max_version)
                })
                .collect();
            let v = fbb.create_vector(&ranges);
            (
                fb::Response::ApiVersionsResponse,
                fb::ApiVersionsResponse::create(
                    fbb,
                    &fb::ApiVersionsResponseArgs { apis: Some(v) },
                )
                .as_union_value(),
            )
        }
        Response::Metadata(m) => {
            let nodes: Vec<_> = m
                .nodes
                .iter()
                .map(|n| {
                    let host = fbb.create_string(&n.host);
                    fb::NodeInfo::create(
                        fbb,
                        &fb::NodeInfoArgs {
                            node_id: n.node_id,
                            host: Some(host),
                            port: n.port,
                            shard: n.shard,
                        },
                    )
                })
                .collect();
            let nodes = fbb.create_vector(&nodes);
            let topics: Vec<_> = m
                .topics
                .iter()
                .map(|t| {
                    let parts: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| {
                            fb::PartitionInfo::create(
                                fbb,
                                &fb::PartitionInfoArgs {
                                    partition: p.partition,
                                    owner_shard: p.owner_shard,
                                    leader_node: p.leader_node,
                                },
                            )
                        })
                        .collect();
                    let parts = fbb.create_vector(&parts);
                    let name = fbb.create_string(&t.name);
                    let msg = opt_str(fbb, &t.error);
                    fb::TopicInfo::create(
                        fbb,
                        &fb::TopicInfoArgs {
                            name: Some(name),
                            error_code: err_code(&t.error),
                            error_message: msg,
                            partitions: Some(parts),
                            id_hi: id_halves(&t.id).0,
                            id_lo: id_halves(&t.id).1,
                        },
                    )
                })
                .collect();
            let topics = fbb.create_vector(&topics);
            (
                fb::Response::MetadataResponse,
                fb::MetadataResponse::create(
                    fbb,
                    &fb::MetadataResponseArgs {
                        nodes: Some(nodes),
                        topics: Some(topics),
                    },
                )
                .as_union_value(),
            )
        }
        Response::CreateTopics(results) => {
            let rs = topic_results(fbb, results);
            (
                fb::Response::CreateTopicsResponse,
                fb::CreateTopicsResponse::create(
                    fbb,
                    &fb::CreateTopicsResponseArgs { results: Some(rs) },
                )
                .as_union_value(),
            )
        }
        Response::DeleteTopics(results) => {
            let rs = topic_results(fbb, results);
            (
                fb::Response::DeleteTopicsResponse,
                fb::DeleteTopicsResponse::create(
                    fbb,
                    &fb::DeleteTopicsResponseArgs { results: Some(rs) },
                )
                .as_union_value(),
            )
        }
        Response::CreatePartitions(results) => {
            let rs = topic_results(fbb, results);
            (
                fb::Response::CreatePartitionsResponse,
                fb::CreatePartitionsResponse::create(
                    fbb,
                    &fb::CreatePartitionsResponseArgs { results: Some(rs) },
                )
                .as_union_value(),
            )
        }
        Response::AlterConfigs(results) => {
            let rs = topic_results(fbb, results);
            (
                fb::Response::AlterConfigsResponse,
                fb::AlterConfigsResponse::create(
                    fbb,
                    &fb::AlterConfigsResponseArgs { results: Some(rs) },
                )
                .as_union_value(),
            )
        }
        Response::DescribeTopics(topics) => {
            let ts: Vec<_> = topics
                .iter()
                .map(|t| {
                    let name = fbb.create_string(&t.name);
                    let msg = opt_str(fbb, &t.error);
                    let configs = config_entries(fbb, &t.configs);
                    let ps: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let cleaner = p.cleaner.map(|c| {
                                fb::CleanerProgress::create(
                                    fbb,
                                    &fb::CleanerProgressArgs {
                                        checkpoint: c.checkpoint,
                                        dirty_permille: c.dirty_permille,
                                        runs: c.runs,
                                        read_bytes: c.read_bytes,
                                        written_bytes: c.written_bytes,
                                        last_run_ms: c.last_run_ms,
                                    },
                                )
                            });
                            fb::PartitionDescription::create(
                                fbb,
                                &fb::PartitionDescriptionArgs {
                                    partition: p.partition,
                                    owner_shard: p.owner_shard,
                                    log_start_offset: p.log_start_offset,
                                    high_watermark: p.high_watermark,
                                    size_bytes: p.size_bytes,
                                    segments: p.segments,
                                    cleaner,
                                },
                            )
                        })
                        .collect();
                    let ps = fbb.create_vector(&ps);
                    fb::TopicDescription::create(
                        fbb,
                        &fb::TopicDescriptionArgs {
                            name: Some(name),
                            error_code: err_code(&t.error),
                            error_message: msg,
                            configs,
                            partitions: Some(ps),
                            id_hi: id_halves(&t.id).0,
                            id_lo: id_halves(&t.id).1,
                        },
                    )
                })
                .collect();
            let ts = fbb.create_vector(&ts);
            (
                fb::Response::DescribeTopicsResponse,
                fb::DescribeTopicsResponse::create(
                    fbb,
                    &fb::DescribeTopicsResponseArgs { topics: Some(ts) },
                )
                .as_union_value(),
            )
        }
        Response::ListTransactions(list) => {
            let ts: Vec<_> = list
                .iter()
                .map(|t| {
                    let id = fbb.create_string(&t.transactional_id);
                    let state = fbb.create_string(&t.state);
                    fb::TransactionListing::create(
                        fbb,
                        &fb::TransactionListingArgs {
                            transactional_id: Some(id),
                            producer_id: t.producer_id,
                            state: Some(state),
                        },
                    )
                })
                .collect();
            let ts = fbb.create_vector(&ts);
            (
                fb::Response::ListTransactionsResponse,
                fb::ListTransactionsResponse::create(
                    fbb,
                    &fb::ListTransactionsResponseArgs {
                        transactions: Some(ts),
                    },
                )
                .as_union_value(),
            )
        }
        Response::DescribeTransactions(list) => {
            let ts: Vec<_> = list
                .iter()
                .map(|t| {
                    let topics: Vec<_> = t
                        .topics
                        .iter()
                        .map(|tp| {
                            let name = fbb.create_string(&tp.topic);
                            let partitions = fbb.create_vector(&tp.partitions);
                            fb::TransactionTopic::create(
                                fbb,
                                &fb::TransactionTopicArgs {
                                    name: Some(name),
                                    partitions: Some(partitions),
                                },
                            )
                        })
                        .collect();
                    let topics = fbb.create_vector(&topics);
                    let id = fbb.create_string(&t.transactional_id);
                    let state = fbb.create_string(&t.state);
                    let msg = opt_str(fbb, &t.error);
                    fb::TransactionDescription::create(
                        fbb,
                        &fb::TransactionDescriptionArgs {
                            transactional_id: Some(id),
                            error_code: err_code(&t.error),
                            error_message: msg,
                            state: Some(state),
                            producer_id: t.producer_id,
                            producer_epoch: t.producer_epoch,
                            timeout_ms: t.timeout_ms,
                            start_time_ms: t.start_time_ms,
                            topics: Some(topics),
                        },
                    )
                })
                .collect();
            let ts = fbb.create_vector(&ts);
            (
                fb::Response::DescribeTransactionsResponse,
                fb::DescribeTransactionsResponse::create(
                    fbb,
                    &fb::DescribeTransactionsResponseArgs {
                        transactions: Some(ts),
                    },
                )
                .as_union_value(),
            )
        }
        Response::DescribeUsers(users) => {
            let us: Vec<_> = users
                .iter()
                .map(|u| {
                    let creds: Vec<_> = u
                        .credentials
                        .iter()
                        .map(|&(mechanism, iterations)| {
                            fb::UserCredentialInfo::create(
                                fbb,
                                &fb::UserCredentialInfoArgs {
                                    mechanism,
                                    iterations,
                                },
                            )
                        })
                        .collect();
                    let creds = fbb.create_vector(&creds);
                    let name = fbb.create_string(&u.name);
                    let msg = opt_str(fbb, &u.error);
                    fb::UserDescription::create(
                        fbb,
                        &fb::UserDescriptionArgs {
                            name: Some(name),
                            error_code: err_code(&u.error),
                            error_message: msg,
                            credentials: Some(creds),
                        },
                    )
                })
                .collect();
            let us = fbb.create_vector(&us);
            (
                fb::Response::DescribeUsersResponse,
                fb::DescribeUsersResponse::create(
                    fbb,
                    &fb::DescribeUsersResponseArgs { users: Some(us) },
                )
                .as_union_value(),
            )
        }
        Response::AlterUsers(results) => {
            let rs: Vec<_> = results
                .iter()
                .map(|r| {
                    let name = fbb.create_string(&r.name);
                    let msg = opt_str(fbb, &r.error);
                    fb::UserResult::create(
                        fbb,
                        &fb::UserResultArgs {
                            name: Some(name),
                            error_code: err_code(&r.error),
                            error_message: msg,
                        },
                    )
                })
                .collect();
            let rs = fbb.create_vector(&rs);
            (
                fb::Response::AlterUsersResponse,
                fb::AlterUsersResponse::create(
                    fbb,
                    &fb::AlterUsersResponseArgs { results: Some(rs) },
                )
                .as_union_value(),
            )
        }
        _ => return None,
    })
}

/// Decodes a response of this family; `Ok(None)` for other kinds.
pub(super) fn decode_response(
    env: &fb::ResponseEnvelope<'_>,
) -> Result<Option<Response>, DecodeError> {
    let missing = DecodeError::MissingRequest;
    Ok(Some(match env.response_type() {
        fb::Response::ApiVersionsResponse => {
            let a = env.response_as_api_versions_response().ok_or(missing)?;
            let apis = a
                .apis()
                .iter()
                .flatten()
                .filter_map(|r| {
                    // An API this client does not know is left out.
                    let api = ApiKey::from_u16(r.api().0)?;
                    Some(ApiVersionRange {
                        api,
                        min_version: r.min_version(),
                        max_version: r.max_version(),
                    })
                })
                .collect();
            Response::ApiVersions(apis)
        }
        fb::Response::MetadataResponse => {
            let m = env.response_as_metadata_response().ok_or(missing)?;
            let nodes = m
                .nodes()
                .iter()
                .flatten()
                .map(|n| NodeInfo {
                    node_id: n.node_id(),
                    host: n.host().unwrap_or("").to_owned(),
                    port: n.port(),
                    shard: n.shard(),
                })
                .collect();
            let mut topics = Vec::new();
            for t in m.topics().iter().flatten() {
                topics.push(TopicInfo {
                    name: name_of(t.name())?,
                    id: id_of(t.id_hi(), t.id_lo()),
                    error: err_of(t.error_code(), t.error_message()),
                    partitions: t
                        .partitions()
                        .iter()
                        .flatten()
                        .map(|p| PartitionInfo {
                            partition: p.partition(),
                            owner_shard: p.owner_shard(),
                            leader_node: p.leader_node(),
                        })
                        .collect(),
                });
            }
            Response::Metadata(MetadataResponse { nodes, topics })
        }
        fb::Response::CreateTopicsResponse => {
            let c = env.response_as_create_topics_response().ok_or(missing)?;
            Response::CreateTopics(topic_results_of(c.results())?)
        }
        fb::Response::DeleteTopicsResponse => {
            let d = env.response_as_delete_topics_response().ok_or(missing)?;
            Response::DeleteTopics(topic_results_of(d.results())?)
        }
        fb::Response::CreatePartitionsResponse => {
            let d = env
                .response_as_create_partitions_response()
                .ok_or(missing)?;
            Response::CreatePartitions(topic_results_of(d.results())?)
        }
        fb::Response::AlterConfigsResponse => {
            let d = env.response_as_alter_configs_response().ok_or(missing)?;
            Response::AlterConfigs(topic_results_of(d.results())?)
        }
        fb::Response::DescribeTopicsResponse => {
            let d = env.response_as_describe_topics_response().ok_or(missing)?;
            let mut ts = Vec::new();
            for t in d.topics().iter().flatten() {
                ts.push(TopicDescription {
                    name: name_of(t.name())?,
                    id: id_of(t.id_hi(), t.id_lo()),
                    error: err_of(t.error_code(), t.error_message()),
                    configs: configs_of(t.configs()),
                    partitions: t
                        .partitions()
                        .iter()
                        .flatten()
                        .map(|p| PartitionDescription {
                            partition: p.partition(),
                            owner_shard: p.owner_shard(),
                            log_start_offset: p.log_start_offset(),
                            high_watermark: p.high_watermark(),
                            size_bytes: p.size_bytes(),
                            segments: p.segments(),
                            cleaner: p.cleaner().map(|c| CleanerProgress {
                                checkpoint: c.checkpoint(),
                                dirty_permille: c.dirty_permille(),
                                runs: c.runs(),
                                read_bytes: c.read_bytes(),
                                written_bytes: c.written_bytes(),
                                last_run_ms: c.last_run_ms(),
                            }),
                        })
                        .collect(),
                });
            }
            Response::DescribeTopics(ts)
        }
        fb::Response::ListTransactionsResponse => {
            let l = env
                .response_as_list_transactions_response()
                .ok_or(missing)?;
            let mut out = Vec::new();
            for t in l.transactions().iter().flatten() {
                out.push(TransactionListing {
                    transactional_id: t
                        .transactional_id()
                        .ok_or(DecodeError::MissingField("transactional_id"))?
                        .to_owned(),
                    producer_id: t.producer_id(),
                    state: t.state().unwrap_or_default().to_owned(),
                });
            }
            Response::ListTransactions(out)
        }
        fb::Response::DescribeTransactionsResponse => {
            let d = env
                .response_as_describe_transactions_response()
                .ok_or(missing)?;
            let mut out = Vec::new();
            for t in d.transactions().iter().flatten() {
                let mut topics = Vec::new();
                for tp in t.topics().iter().flatten() {
                    topics.push(TopicPartitions {
                        topic: name_of(tp.name())?,
                        partitions: tp
                            .partitions()
                            .map(|v| v.iter().collect())
                            .unwrap_or_default(),
                    });
                }
                out.push(TransactionDescription {
                    transactional_id: t
                        .transactional_id()
                        .ok_or(DecodeError::MissingField("transactional_id"))?
                        .to_owned(),
                    error: err_of(t.error_code(), t.error_message()),
                    state: t.state().unwrap_or_default().to_owned(),
                    producer_id: t.producer_id(),
                    producer_epoch: t.producer_epoch(),
                    timeout_ms: t.timeout_ms(),
                    start_time_ms: t.start_time_ms(),
                    topics,
                });
            }
            Response::DescribeTransactions(out)
        }
        fb::Response::DescribeUsersResponse => {
            let d = env.response_as_describe_users_response().ok_or(missing)?;
            let mut out = Vec::new();
            for u in d.users().iter().flatten() {
                out.push(UserDescription {
                    name: u
                        .name()
                        .ok_or(DecodeError::MissingField("name"))?
                        .to_owned(),
                    error: err_of(u.error_code(), u.error_message()),
                    credentials: u
                        .credentials()
                        .iter()
                        .flatten()
                        .map(|c| (c.mechanism(), c.iterations()))
                        .collect(),
                });
            }
            Response::DescribeUsers(out)
        }
        fb::Response::AlterUsersResponse => {
            let a = env.response_as_alter_users_response().ok_or(missing)?;
            let mut out = Vec::new();
            for r in a.results().iter().flatten() {
                out.push(UserResult {
                    name: r
                        .name()
                        .ok_or(DecodeError::MissingField("name"))?
                        .to_owned(),
                    error: err_of(r.error_code(), r.error_message()),
                });
            }
            Response::AlterUsers(out)
        }
        _ => return Ok(None),
    }))
}
