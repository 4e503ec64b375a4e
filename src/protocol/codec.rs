//! Typed messages <-> flatbuffers. Pure functions over bytes.
//!
//! Decoding verifies the flatbuffer (bounded depth and table count) before
//! reading it, so hostile bytes yield `DecodeError`, never a panic. Record
//! batches come out as `Bytes::slice_ref` of the frame: no copy.

pub use super::fb::DecodeError;
use super::fb::{err_code, err_of, strings};
use super::generated as fb;
use super::*;
use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

/// Limits for the flatbuffers verifier: a frame is hostile until verified.
fn verifier_opts() -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        max_depth: 16,
        max_tables: 1_000_000,
        max_apparent_size: 1 << 31,
        ignore_missing_null_terminator: false,
    }
}

/// Prepends the frame length to a finished builder's data.
fn framed(fbb: &FlatBufferBuilder) -> Vec<u8> {
    let data = fbb.finished_data();
    let mut out = Vec::with_capacity(frame::LEN_BYTES + data.len());
    out.extend_from_slice(&frame::prefix(data.len()));
    out.extend_from_slice(data);
    out
}

fn records<'a>(fbb: &mut FlatBufferBuilder<'a>, data: &[u8]) -> WIPOffset<fb::RecordBatches<'a>> {
    let v = fbb.create_vector(data);
    fb::RecordBatches::create(fbb, &fb::RecordBatchesArgs { data: Some(v) })
}

fn opt_str<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    e: &Option<WireError>,
) -> Option<WIPOffset<&'a str>> {
    e.as_ref().map(|e| fbb.create_string(&e.message))
}

/// Topic tables of partition tables, the shape of the produce, fetch and
/// list-offsets answers: `partition` builds one partition's table, `topic`
/// one topic's from its name and partitions (partitions first, as the
/// builder wants children before parents).
fn topic_tables<'a, T, P, PT: 'a, TT: 'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    topics: &[T],
    split: impl Fn(&T) -> (&str, &[P]),
    mut partition: impl FnMut(&mut FlatBufferBuilder<'a>, &P) -> WIPOffset<PT>,
    mut topic: impl FnMut(
        &mut FlatBufferBuilder<'a>,
        WIPOffset<&'a str>,
        WIPOffset<Vector<'a, ForwardsUOffset<PT>>>,
    ) -> WIPOffset<TT>,
) -> WIPOffset<Vector<'a, ForwardsUOffset<TT>>> {
    let ts: Vec<_> = topics
        .iter()
        .map(|t| {
            let (name, partitions) = split(t);
            let ps: Vec<_> = partitions.iter().map(|p| partition(fbb, p)).collect();
            let ps = fbb.create_vector(&ps);
            let name = fbb.create_string(name);
            topic(fbb, name, ps)
        })
        .collect();
    fbb.create_vector(&ts)
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

/// Encodes a request as a whole frame (length prefix included).
pub fn encode_request(req: &RequestFrame) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let (kind, body) = match &req.request {
        r if r.group().is_some()
            || matches!(r, Request::ListGroups | Request::DescribeGroups(_)) =>
        {
            super::group_codec::encode_request(&mut fbb, r).expect("a group request")
        }
        Request::ApiVersions => (
            fb::Request::ApiVersionsRequest,
            fb::ApiVersionsRequest::create(&mut fbb, &fb::ApiVersionsRequestArgs {})
                .as_union_value(),
        ),
        Request::Metadata { topics } => {
            let t = topics.as_ref().map(|t| strings(&mut fbb, t));
            (
                fb::Request::MetadataRequest,
                fb::MetadataRequest::create(&mut fbb, &fb::MetadataRequestArgs { topics: t })
                    .as_union_value(),
            )
        }
        Request::CreateTopics(topics) => {
            let offs: Vec<_> = topics
                .iter()
                .map(|t| {
                    let name = fbb.create_string(&t.name);
                    let configs = config_entries(&mut fbb, &t.configs);
                    fb::CreateTopic::create(
                        &mut fbb,
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
                    &mut fbb,
                    &fb::CreateTopicsRequestArgs { topics: Some(v) },
                )
                .as_union_value(),
            )
        }
        Request::Produce(p) => {
            let topics: Vec<_> = p
                .topics
                .iter()
                .map(|t| {
                    let parts: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|pp| {
                            let r = records(&mut fbb, &pp.records);
                            fb::ProducePartition::create(
                                &mut fbb,
                                &fb::ProducePartitionArgs {
                                    partition: pp.partition,
                                    records: Some(r),
                                },
                            )
                        })
                        .collect();
                    let parts = fbb.create_vector(&parts);
                    let name = fbb.create_string(&t.name);
                    fb::ProduceTopic::create(
                        &mut fbb,
                        &fb::ProduceTopicArgs {
                            name: Some(name),
                            partitions: Some(parts),
                        },
                    )
                })
                .collect();
            let topics = fbb.create_vector(&topics);
            let acks = match p.acks {
                Acks::None => fb::Acks::None,
                Acks::Leader => fb::Acks::Leader,
                Acks::Durable => fb::Acks::Durable,
            };
            (
                fb::Request::ProduceRequest,
                fb::ProduceRequest::create(
                    &mut fbb,
                    &fb::ProduceRequestArgs {
                        acks,
                        timeout_ms: p.timeout_ms,
                        topics: Some(topics),
                    },
                )
                .as_union_value(),
            )
        }
        Request::Fetch(f) => {
            let topics: Vec<_> = f
                .topics
                .iter()
                .map(|t| {
                    let parts: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| {
                            fb::FetchPartition::create(
                                &mut fbb,
                                &fb::FetchPartitionArgs {
                                    partition: p.partition,
                                    fetch_offset: p.fetch_offset,
                                    max_bytes: p.max_bytes,
                                },
                            )
                        })
                        .collect();
                    let parts = fbb.create_vector(&parts);
                    let name = fbb.create_string(&t.name);
                    fb::FetchTopic::create(
                        &mut fbb,
                        &fb::FetchTopicArgs {
                            name: Some(name),
                            partitions: Some(parts),
                        },
                    )
                })
                .collect();
            let topics = fbb.create_vector(&topics);
            (
                fb::Request::FetchRequest,
                fb::FetchRequest::create(
                    &mut fbb,
                    &fb::FetchRequestArgs {
                        max_wait_ms: f.max_wait_ms,
                        min_bytes: f.min_bytes,
                        max_bytes: f.max_bytes,
                        topics: Some(topics),
                    },
                )
                .as_union_value(),
            )
        }
        Request::ListOffsets(topics) => {
            let topics: Vec<_> = topics
                .iter()
                .map(|t| {
                    let parts: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| {
                            fb::ListOffsetsPartition::create(
                                &mut fbb,
                                &fb::ListOffsetsPartitionArgs {
                                    partition: p.partition,
                                    timestamp: p.timestamp,
                                },
                            )
                        })
                        .collect();
                    let parts = fbb.create_vector(&parts);
                    let name = fbb.create_string(&t.name);
                    fb::ListOffsetsTopic::create(
                        &mut fbb,
                        &fb::ListOffsetsTopicArgs {
                            name: Some(name),
                            partitions: Some(parts),
                        },
                    )
                })
                .collect();
            let topics = fbb.create_vector(&topics);
            (
                fb::Request::ListOffsetsRequest,
                fb::ListOffsetsRequest::create(
                    &mut fbb,
                    &fb::ListOffsetsRequestArgs {
                        topics: Some(topics),
                    },
                )
                .as_union_value(),
            )
        }
        Request::DeleteTopics(names) => {
            let t = strings(&mut fbb, names);
            (
                fb::Request::DeleteTopicsRequest,
                fb::DeleteTopicsRequest::create(
                    &mut fbb,
                    &fb::DeleteTopicsRequestArgs { topics: Some(t) },
                )
                .as_union_value(),
            )
        }
        Request::DescribeTopics { topics } => {
            let t = topics.as_ref().map(|t| strings(&mut fbb, t));
            (
                fb::Request::DescribeTopicsRequest,
                fb::DescribeTopicsRequest::create(
                    &mut fbb,
                    &fb::DescribeTopicsRequestArgs { topics: t },
                )
                .as_union_value(),
            )
        }
        Request::GroupHeartbeat(_)
        | Request::LeaveGroup(_)
        | Request::OffsetCommit(_)
        | Request::OffsetFetch(_)
        | Request::ListGroups
        | Request::DescribeGroups(_) => unreachable!("encoded by group_codec above"),
    };
    let client_id = req.client_id.as_ref().map(|c| fbb.create_string(c));
    let env = fb::RequestEnvelope::create(
        &mut fbb,
        &fb::RequestEnvelopeArgs {
            version: req.version,
            correlation_id: req.correlation_id,
            client_id,
            request_type: kind,
            request: Some(body),
        },
    );
    fbb.finish(env, None);
    framed(&fbb)
}

/// What could be read of a request that failed to decode: enough to answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// Present when the envelope itself verified.
    pub correlation_id: Option<u32>,
    pub error: DecodeError,
}

fn name_of(s: Option<&str>) -> Result<String, DecodeError> {
    s.map(str::to_owned)
        .ok_or(DecodeError::MissingField("name"))
}

/// Decodes one frame body (without the length prefix) into a request.
/// Record batches in a produce request are slices of `frame`.
pub fn decode_request(frame: &Bytes) -> Result<RequestFrame, BadRequest> {
    let env = fb::root_as_request_envelope_with_opts(&verifier_opts(), frame).map_err(|e| {
        BadRequest {
            correlation_id: None,
            error: DecodeError::Invalid(e.to_string()),
        }
    })?;
    let correlation_id = env.correlation_id();
    let bad = |error| BadRequest {
        correlation_id: Some(correlation_id),
        error,
    };
    let request = match env.request_type() {
        fb::Request::ApiVersionsRequest => Request::ApiVersions,
        fb::Request::MetadataRequest => {
            let m = env
                .request_as_metadata_request()
                .ok_or_else(|| bad(DecodeError::MissingRequest))?;
            let topics = m
                .topics()
                .map(|t| t.iter().map(str::to_owned).collect::<Vec<_>>());
            Request::Metadata {
                topics: topics.filter(|t| !t.is_empty()),
            }
        }
        fb::Request::CreateTopicsRequest => {
            let c = env
                .request_as_create_topics_request()
                .ok_or_else(|| bad(DecodeError::MissingRequest))?;
            let mut out = Vec::new();
            for t in c.topics().iter().flatten() {
                let configs = configs_of(t.configs());
                out.push(CreateTopic {
                    name: name_of(t.name()).map_err(bad)?,
                    partitions: t.partitions(),
                    configs,
                });
            }
            Request::CreateTopics(out)
        }
        fb::Request::ProduceRequest => {
            let p = env
                .request_as_produce_request()
                .ok_or_else(|| bad(DecodeError::MissingRequest))?;
            let acks = match p.acks() {
                fb::Acks::None => Acks::None,
                fb::Acks::Leader => Acks::Leader,
                _ => Acks::Durable,
            };
            let mut topics = Vec::new();
            for t in p.topics().iter().flatten() {
                let mut partitions = Vec::new();
                for pp in t.partitions().iter().flatten() {
                    let data = pp
                        .records()
                        .and_then(|r| r.data())
                        .map(|d| d.bytes())
                        .unwrap_or(&[]);
                    // hot path: a slice of the frame, not a copy
                    let records = if data.is_empty() {
                        Bytes::new()
                    } else {
                        frame.slice_ref(data)
                    };
                    partitions.push(ProducePartition {
                        partition: pp.partition(),
                        records,
                    });
                }
                topics.push(ProduceTopic {
                    name: name_of(t.name()).map_err(bad)?,
                    partitions,
                });
            }
            Request::Produce(ProduceRequest {
                acks,
                timeout_ms: p.timeout_ms(),
                topics,
            })
        }
        fb::Request::FetchRequest => {
            let f = env
                .request_as_fetch_request()
                .ok_or_else(|| bad(DecodeError::MissingRequest))?;
            let mut topics = Vec::new();
            for t in f.topics().iter().flatten() {
                let partitions = t
                    .partitions()
                    .iter()
                    .flatten()
                    .map(|p| FetchPartition {
                        partition: p.partition(),
                        fetch_offset: p.fetch_offset(),
                        max_bytes: p.max_bytes(),
                    })
                    .collect();
                topics.push(FetchTopic {
                    name: name_of(t.name()).map_err(bad)?,
                    partitions,
                });
            }
            Request::Fetch(FetchRequest {
                max_wait_ms: f.max_wait_ms(),
                min_bytes: f.min_bytes(),
                max_bytes: f.max_bytes(),
                topics,
            })
        }
        fb::Request::ListOffsetsRequest => {
            let l = env
                .request_as_list_offsets_request()
                .ok_or_else(|| bad(DecodeError::MissingRequest))?;
            let mut topics = Vec::new();
            for t in l.topics().iter().flatten() {
                let partitions = t
                    .partitions()
                    .iter()
                    .flatten()
                    .map(|p| ListOffsetsPartition {
                        partition: p.partition(),
                        timestamp: p.timestamp(),
                    })
                    .collect();
                topics.push(ListOffsetsTopic {
                    name: name_of(t.name()).map_err(bad)?,
                    partitions,
                });
            }
            Request::ListOffsets(topics)
        }
        fb::Request::DeleteTopicsRequest => {
            let d = env
                .request_as_delete_topics_request()
                .ok_or_else(|| bad(DecodeError::MissingRequest))?;
            Request::DeleteTopics(d.topics().iter().flatten().map(str::to_owned).collect())
        }
        fb::Request::DescribeTopicsRequest => {
            let d = env
                .request_as_describe_topics_request()
                .ok_or_else(|| bad(DecodeError::MissingRequest))?;
            let topics = d
                .topics()
                .map(|t| t.iter().map(str::to_owned).collect::<Vec<_>>());
            Request::DescribeTopics {
                topics: topics.filter(|t| !t.is_empty()),
            }
        }
        fb::Request::NONE => return Err(bad(DecodeError::MissingRequest)),
        other => match super::group_codec::decode_request(&env).map_err(bad)? {
            Some(r) => r,
            None => return Err(bad(DecodeError::UnknownKind(other.0))),
        },
    };
    Ok(RequestFrame {
        version: env.version(),
        correlation_id,
        client_id: env.client_id().map(str::to_owned),
        request,
    })
}

/// Encodes a response as a whole frame (length prefix included).
pub fn encode_response(resp: &ResponseFrame) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(match &resp.result {
        Ok(Response::Fetch(t)) => {
            256 + t
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.len() + 64)
                .sum::<usize>()
        }
        _ => 256,
    });
    let (kind, body, error) = match &resp.result {
        Err(e) => (fb::Response::NONE, None, Some(e.clone())),
        Ok(r) => {
            let (k, b) = encode_response_body(&mut fbb, r);
            (k, Some(b), None)
        }
    };
    let msg = opt_str(&mut fbb, &error);
    let env = fb::ResponseEnvelope::create(
        &mut fbb,
        &fb::ResponseEnvelopeArgs {
            correlation_id: resp.correlation_id,
            error_code: err_code(&error),
            error_message: msg,
            response_type: kind,
            response: body,
        },
    );
    fbb.finish(env, None);
    framed(&fbb)
}

fn encode_response_body<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    r: &Response,
) -> (fb::Response, WIPOffset<flatbuffers::UnionWIPOffset>) {
    if let Some(body) = super::group_codec::encode_response(fbb, r) {
        return body;
    }
    match r {
        Response::GroupHeartbeat(_)
        | Response::LeaveGroup
        | Response::OffsetCommit(_)
        | Response::OffsetFetch(_)
        | Response::ListGroups(_)
        | Response::DescribeGroups(_) => unreachable!("encoded by group_codec above"),
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
                            fb::PartitionDescription::create(
                                fbb,
                                &fb::PartitionDescriptionArgs {
                                    partition: p.partition,
                                    owner_shard: p.owner_shard,
                                    log_start_offset: p.log_start_offset,
                                    high_watermark: p.high_watermark,
                                    size_bytes: p.size_bytes,
                                    segments: p.segments,
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
        Response::Produce(topics) => {
            let ts = topic_tables(
                fbb,
                topics,
                |t| (&t.name, &t.partitions),
                |fbb, p| {
                    let msg = opt_str(fbb, &p.error);
                    fb::ProducePartitionResult::create(
                        fbb,
                        &fb::ProducePartitionResultArgs {
                            partition: p.partition,
                            error_code: err_code(&p.error),
                            error_message: msg,
                            base_offset: p.base_offset,
                            high_watermark: p.high_watermark,
                        },
                    )
                },
                |fbb, name, ps| {
                    fb::ProduceTopicResult::create(
                        fbb,
                        &fb::ProduceTopicResultArgs {
                            name: Some(name),
                            partitions: Some(ps),
                        },
                    )
                },
            );
            (
                fb::Response::ProduceResponse,
                fb::ProduceResponse::create(fbb, &fb::ProduceResponseArgs { topics: Some(ts) })
                    .as_union_value(),
            )
        }
        Response::Fetch(topics) => {
            let ts = topic_tables(
                fbb,
                topics,
                |t| (&t.name, &t.partitions),
                |fbb, p| {
                    // The stored bytes go into the frame as they are: one
                    // memcpy into the builder, no re-encoding.
                    let r = records(fbb, &p.records);
                    let msg = opt_str(fbb, &p.error);
                    fb::FetchPartitionResult::create(
                        fbb,
                        &fb::FetchPartitionResultArgs {
                            partition: p.partition,
                            error_code: err_code(&p.error),
                            error_message: msg,
                            high_watermark: p.high_watermark,
                            log_start_offset: p.log_start_offset,
                            records: Some(r),
                        },
                    )
                },
                |fbb, name, ps| {
                    fb::FetchTopicResult::create(
                        fbb,
                        &fb::FetchTopicResultArgs {
                            name: Some(name),
                            partitions: Some(ps),
                        },
                    )
                },
            );
            (
                fb::Response::FetchResponse,
                fb::FetchResponse::create(fbb, &fb::FetchResponseArgs { topics: Some(ts) })
                    .as_union_value(),
            )
        }
        Response::ListOffsets(topics) => {
            let ts = topic_tables(
                fbb,
                topics,
                |t| (&t.name, &t.partitions),
                |fbb, p| {
                    let msg = opt_str(fbb, &p.error);
                    fb::ListOffsetsPartitionResult::create(
                        fbb,
                        &fb::ListOffsetsPartitionResultArgs {
                            partition: p.partition,
                            error_code: err_code(&p.error),
                            error_message: msg,
                            offset: p.offset,
                            timestamp: p.timestamp,
                        },
                    )
                },
                |fbb, name, ps| {
                    fb::ListOffsetsTopicResult::create(
                        fbb,
                        &fb::ListOffsetsTopicResultArgs {
                            name: Some(name),
                            partitions: Some(ps),
                        },
                    )
                },
            );
            (
                fb::Response::ListOffsetsResponse,
                fb::ListOffsetsResponse::create(
                    fbb,
                    &fb::ListOffsetsResponseArgs { topics: Some(ts) },
                )
                .as_union_value(),
            )
        }
    }
}

/// Decodes one response frame body. Fetched records are slices of `frame`.
pub fn decode_response(frame: &Bytes) -> Result<ResponseFrame, DecodeError> {
    let env = flatbuffers::root_with_opts::<fb::ResponseEnvelope>(&verifier_opts(), frame)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let correlation_id = env.correlation_id();
    if let Some(e) = err_of(env.error_code(), env.error_message()) {
        return Ok(ResponseFrame {
            correlation_id,
            result: Err(e),
        });
    }
    let missing = DecodeError::MissingRequest;
    let resp = match env.response_type() {
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
        fb::Response::DescribeTopicsResponse => {
            let d = env.response_as_describe_topics_response().ok_or(missing)?;
            let mut ts = Vec::new();
            for t in d.topics().iter().flatten() {
                ts.push(TopicDescription {
                    name: name_of(t.name())?,
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
                        })
                        .collect(),
                });
            }
            Response::DescribeTopics(ts)
        }
        fb::Response::ProduceResponse => {
            let p = env.response_as_produce_response().ok_or(missing)?;
            let mut ts = Vec::new();
            for t in p.topics().iter().flatten() {
                ts.push(ProduceTopicResult {
                    name: name_of(t.name())?,
                    partitions: t
                        .partitions()
                        .iter()
                        .flatten()
                        .map(|p| ProducePartitionResult {
                            partition: p.partition(),
                            error: err_of(p.error_code(), p.error_message()),
                            base_offset: p.base_offset(),
                            high_watermark: p.high_watermark(),
                        })
                        .collect(),
                });
            }
            Response::Produce(ts)
        }
        fb::Response::FetchResponse => {
            let f = env.response_as_fetch_response().ok_or(missing)?;
            let mut ts = Vec::new();
            for t in f.topics().iter().flatten() {
                ts.push(FetchTopicResult {
                    name: name_of(t.name())?,
                    partitions: t
                        .partitions()
                        .iter()
                        .flatten()
                        .map(|p| {
                            let data = p
                                .records()
                                .and_then(|r| r.data())
                                .map(|d| d.bytes())
                                .unwrap_or(&[]);
                            FetchPartitionResult {
                                partition: p.partition(),
                                error: err_of(p.error_code(), p.error_message()),
                                high_watermark: p.high_watermark(),
                                log_start_offset: p.log_start_offset(),
                                records: if data.is_empty() {
                                    Bytes::new()
                                } else {
                                    frame.slice_ref(data)
                                },
                            }
                        })
                        .collect(),
                });
            }
            Response::Fetch(ts)
        }
        fb::Response::ListOffsetsResponse => {
            let l = env.response_as_list_offsets_response().ok_or(missing)?;
            let mut ts = Vec::new();
            for t in l.topics().iter().flatten() {
                ts.push(ListOffsetsTopicResult {
                    name: name_of(t.name())?,
                    partitions: t
                        .partitions()
                        .iter()
                        .flatten()
                        .map(|p| ListOffsetsPartitionResult {
                            partition: p.partition(),
                            error: err_of(p.error_code(), p.error_message()),
                            offset: p.offset(),
                            timestamp: p.timestamp(),
                        })
                        .collect(),
                });
            }
            Response::ListOffsets(ts)
        }
        fb::Response::NONE => return Err(DecodeError::MissingRequest),
        other => match super::group_codec::decode_response(&env)? {
            Some(r) => r,
            None => return Err(DecodeError::UnknownKind(other.0)),
        },
    };
    Ok(ResponseFrame {
        correlation_id,
        result: Ok(resp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(framed: Vec<u8>) -> Bytes {
        Bytes::from(framed).slice(frame::LEN_BYTES..)
    }

    fn round_trip_request(r: RequestFrame) {
        let b = body(encode_request(&r));
        assert_eq!(decode_request(&b).unwrap(), r);
    }

    fn round_trip_response(r: ResponseFrame) {
        let b = body(encode_response(&r));
        assert_eq!(decode_response(&b).unwrap(), r);
    }

    #[test]
    fn every_request_kind_round_trips() {
        let reqs = vec![
            Request::ApiVersions,
            Request::Metadata { topics: None },
            Request::Metadata {
                topics: Some(vec!["a".into(), "b".into()]),
            },
            Request::CreateTopics(vec![CreateTopic {
                name: "t".into(),
                partitions: 3,
                configs: vec![("retention.ms".into(), "1000".into())],
            }]),
            Request::DeleteTopics(vec!["a".into(), "b".into()]),
            Request::DescribeTopics { topics: None },
            Request::DescribeTopics {
                topics: Some(vec!["x".into()]),
            },
            Request::Produce(ProduceRequest {
                acks: Acks::Leader,
                timeout_ms: 500,
                topics: vec![ProduceTopic {
                    name: "t".into(),
                    partitions: vec![ProducePartition {
                        partition: 2,
                        records: Bytes::from_static(b"batchbytes"),
                    }],
                }],
            }),
            Request::Fetch(FetchRequest {
                max_wait_ms: 10,
                min_bytes: 1,
                max_bytes: 1000,
                topics: vec![FetchTopic {
                    name: "t".into(),
                    partitions: vec![FetchPartition {
                        partition: 0,
                        fetch_offset: 42,
                        max_bytes: 77,
                    }],
                }],
            }),
            Request::ListOffsets(vec![ListOffsetsTopic {
                name: "t".into(),
                partitions: vec![ListOffsetsPartition {
                    partition: 1,
                    timestamp: LIST_EARLIEST,
                }],
            }]),
        ];
        for (i, request) in reqs.into_iter().enumerate() {
            round_trip_request(RequestFrame {
                version: PROTOCOL_VERSION,
                correlation_id: i as u32,
                client_id: Some("test".into()),
                request,
            });
        }
    }

    #[test]
    fn produce_records_are_slices_of_the_frame() {
        let r = RequestFrame {
            version: 1,
            correlation_id: 9,
            client_id: None,
            request: Request::Produce(ProduceRequest {
                acks: Acks::Durable,
                timeout_ms: 1,
                topics: vec![ProduceTopic {
                    name: "t".into(),
                    partitions: vec![ProducePartition {
                        partition: 0,
                        records: Bytes::from(vec![7u8; 1000]),
                    }],
                }],
            }),
        };
        let b = body(encode_request(&r));
        let range = b.as_ptr() as usize..b.as_ptr() as usize + b.len();
        match decode_request(&b).unwrap().request {
            Request::Produce(p) => {
                let rec = &p.topics[0].partitions[0].records;
                assert!(
                    range.contains(&(rec.as_ptr() as usize)),
                    "records were copied"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_response_kind_round_trips() {
        let err = Some(WireError::new(ErrorCode::UnknownTopic, "no such topic"));
        let resps = vec![
            Ok(Response::ApiVersions(supported_apis())),
            Ok(Response::Metadata(MetadataResponse {
                nodes: vec![NodeInfo {
                    node_id: 0,
                    host: "127.0.0.1".into(),
                    port: 9400,
                    shard: 0,
                }],
                topics: vec![
                    TopicInfo {
                        name: "t".into(),
                        error: None,
                        partitions: vec![PartitionInfo {
                            partition: 0,
                            owner_shard: 0,
                            leader_node: 0,
                        }],
                    },
                    TopicInfo {
                        name: "x".into(),
                        error: err.clone(),
                        partitions: vec![],
                    },
                ],
            })),
            Ok(Response::CreateTopics(vec![TopicResult {
                name: "t".into(),
                error: err.clone(),
            }])),
            Ok(Response::DeleteTopics(vec![
                TopicResult {
                    name: "t".into(),
                    error: None,
                },
                TopicResult {
                    name: "u".into(),
                    error: err.clone(),
                },
            ])),
            Ok(Response::DescribeTopics(vec![
                TopicDescription {
                    name: "t".into(),
                    error: None,
                    configs: vec![("retention.bytes".into(), "100".into())],
                    partitions: vec![PartitionDescription {
                        partition: 1,
                        owner_shard: 0,
                        log_start_offset: 10,
                        high_watermark: 99,
                        size_bytes: 1 << 40,
                        segments: 3,
                    }],
                },
                TopicDescription {
                    name: "nope".into(),
                    error: err.clone(),
                    configs: vec![],
                    partitions: vec![],
                },
            ])),
            Ok(Response::Produce(vec![ProduceTopicResult {
                name: "t".into(),
                partitions: vec![ProducePartitionResult {
                    partition: 0,
                    error: None,
                    base_offset: 5,
                    high_watermark: 9,
                }],
            }])),
            Ok(Response::Fetch(vec![FetchTopicResult {
                name: "t".into(),
                partitions: vec![FetchPartitionResult {
                    partition: 0,
                    error: None,
                    high_watermark: 3,
                    log_start_offset: 0,
                    records: Bytes::from_static(b"stored"),
                }],
            }])),
            Ok(Response::ListOffsets(vec![ListOffsetsTopicResult {
                name: "t".into(),
                partitions: vec![ListOffsetsPartitionResult {
                    partition: 0,
                    error: err,
                    offset: -1,
                    timestamp: -1,
                }],
            }])),
            Err(WireError::new(ErrorCode::UnsupportedVersion, "version 9")),
        ];
        for (i, result) in resps.into_iter().enumerate() {
            round_trip_response(ResponseFrame {
                correlation_id: i as u32,
                result,
            });
        }
    }

    #[test]
    fn many_small_elements_decode_within_the_allocation_bound() {
        // The native protocol's cheapest elements: empty topic names, about
        // 8 bytes each in a flatbuffer (offset, length, terminator, padding).
        let r = RequestFrame {
            version: 1,
            correlation_id: 1,
            client_id: None,
            request: Request::Metadata {
                topics: Some(vec![String::new(); 100_000]),
            },
        };
        let b = body(encode_request(&r));
        let (decoded, peak) = crate::alloc_count::peak_bytes(|| decode_request(&b));
        assert!(decoded.is_ok());
        assert!(
            peak <= crate::alloc_count::decode_bound(b.len()),
            "{} bytes: {peak}",
            b.len()
        );
    }

    proptest! {
        #[test]
        fn fuzz_decoders_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let b = Bytes::from(bytes);
            let (_, peak) = crate::alloc_count::peak_bytes(|| {
                let _ = decode_request(&b);
                let _ = decode_response(&b);
            });
            prop_assert!(peak <= crate::alloc_count::decode_bound(b.len()), "{} bytes: {}", b.len(), peak);
        }

        /// Valid produce and fetch frames with several bytes changed: the
        /// flatbuffers verifier must catch every lie about offsets and
        /// lengths before the decoder reads.
        #[test]
        fn fuzz_decoders_never_panic_on_mutated_produce(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let r = RequestFrame {
                version: 1, correlation_id: 7, client_id: Some("fuzz".into()),
                request: Request::Produce(ProduceRequest { acks: Acks::Durable, timeout_ms: 100,
                    topics: vec![ProduceTopic { name: "t".into(), partitions: vec![
                        ProducePartition { partition: 1, records: Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8]) },
                        ProducePartition { partition: 2, records: Bytes::from_static(&[9; 40]) }] }] }),
            };
            let mut b = body(encode_request(&r)).to_vec();
            for (at, val) in edits {
                let i = at % b.len();
                b[i] = val;
            }
            let frame = Bytes::from(b.clone());
            let (decoded, peak) = crate::alloc_count::peak_bytes(|| decode_request(&frame));
            prop_assert!(peak <= crate::alloc_count::decode_bound(b.len()), "{} bytes: {}", b.len(), peak);
            if let Ok(RequestFrame { request: Request::Produce(p), .. }) = decoded {
                for t in &p.topics {
                    for pp in &t.partitions {
                        prop_assert!(pp.records.len() <= b.len());
                    }
                }
            }
            let _ = decode_response(&Bytes::from(b));
        }

        #[test]
        fn fuzz_decoders_never_panic_on_mutated_requests(pos in 0usize..4096, val in any::<u8>()) {
            let r = RequestFrame {
                version: 1, correlation_id: 1, client_id: Some("c".into()),
                request: Request::Fetch(FetchRequest { max_wait_ms: 0, min_bytes: 0, max_bytes: 10,
                    topics: vec![FetchTopic { name: "topic".into(),
                        partitions: vec![FetchPartition { partition: 0, fetch_offset: 0, max_bytes: 5 }] }] }),
            };
            let mut b = body(encode_request(&r)).to_vec();
            let i = pos % b.len();
            b[i] = val;
            let b = Bytes::from(b);
            let (_, peak) = crate::alloc_count::peak_bytes(|| decode_request(&b).is_ok());
            prop_assert!(peak <= crate::alloc_count::decode_bound(b.len()), "{} bytes: {}", b.len(), peak);
        }
    }
}
