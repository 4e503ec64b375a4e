//! Kafka frames and messages <-> shardlog's native typed requests.
//!
//! Owns: the Kafka frame (`i32` big-endian length + body), request header
//! decoding, the table of APIs and versions the Kafka listener speaks
//! (`SUPPORTED`), the translation of Kafka requests into native `Request`s
//! and of native responses back into Kafka responses, and the one mapping of
//! native error codes to Kafka error codes (`errors::kafka_code`).
//!
//! Must never: do I/O, or encode Kafka by hand: every Kafka byte comes from
//! the `kafka-protocol` crate. Record batches pass through as `Bytes`
//! slices of the request frame (produce) and as stored (fetch).

use crate::chain::Chain;
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeConfigsResponse, FetchResponse, ListOffsetsResponse,
    ProduceResponse, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;
use thiserror::Error;

use super::configs::{describe_configs_response, TopicDefaults};
use super::wire::{
    encode_frame, partition_u32, topic_name, ConfigResource, Decoded, EncodeDyn, Refused, Shape,
    TopicIds, Work,
};
use super::{admin, cluster, configs, data, metadata};
use crate::errors::kafka_code;
use crate::protocol::{
    ErrorCode, NodeInfo, Request, RequestFrame, Response, WireError, PROTOCOL_VERSION,
};

/// The APIs the Kafka listener implements, with the versions it speaks;
/// ApiVersions lists exactly these, so clients call nothing else. Ranges
/// cover what librdkafka 2.x, kafka-python and the Java client 4.x
/// negotiate. Fetch 4-17: v12 is flexible (assembled zero-copy like the
/// rest), v13 names topics by id, v15-17 change only replica fields and
/// tags we leave empty (no fetch sessions, no leader changes to announce).
/// Metadata 1-13: topic ids from v10, nullable names v12, a top-level
/// error code v13 (always none).
/// CreateTopics 2-4 and DeleteTopics 1-4: what the crate encodes (Kafka 4
/// dropped the older ones too); librdkafka 2.x asks for at most 4 and
/// kafka-python 3; v5+ answers with topic configs, v6 deletes by topic id.
/// InitProducerId 0-5: all the crate encodes (librdkafka 2.x asks for up
/// to 4); only idempotence, no transactions. DescribeConfigs 1-4: what
/// the crate encodes (v0 is gone from Kafka 4 too; kafka-python then
/// uses v1-2, the Java admin and librdkafka up to 4). ListOffsets 1-10, as
/// Kafka 4: v7 asks for the max timestamp (-3), v8 the earliest local
/// offset (-4), v9 the latest tiered one (-5), v10 adds a timeout for
/// remote storage (none here); kafka-python reads the broker's version
/// from this range (v10: Kafka 4). SaslHandshake 0-1 (as Kafka 4): after
/// v0 the tokens travel bare, without Kafka's framing (the door handles
/// them); librdkafka 2.0 (Debian's kcat) will not use SASL unless v0 is
/// in the range, even though it then uses v1. CreateAcls, DescribeAcls, DeleteAcls 1-3: v0 (no
/// pattern types) is gone from Kafka 4.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::Metadata, 1, 13),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 4),
    (ApiKey::DeleteTopics, 1, 4),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 5),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::AlterPartitionReassignments, 0, 1),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::AlterReplicaLogDirs, 1, 2),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

/// The default largest request body of any API but Produce
/// (`--max-control-request-bytes`). Decoded structures can be
/// far larger than their wire form (up to ~114 bytes per byte: a one-byte
/// empty compact string becomes a `StrBytes`, then a `String`; see
/// `fuzz::alloc_bound`), so only Produce, whose bulk is record bytes kept
/// as slices of the frame, may use the whole frame limit. 4 MiB holds a
/// group leader's SyncGroup for 100 members of 2,000 partitions each, or an
/// OffsetCommit of 100,000 partitions.
pub const DEFAULT_MAX_CONTROL_REQUEST_BYTES: usize = 4 << 20;

/// Every API and version range the listener speaks: `SUPPORTED` and the
/// group APIs (`groups::SUPPORTED`).
pub(crate) fn all_supported() -> impl Iterator<Item = &'static (ApiKey, i16, i16)> {
    SUPPORTED.iter().chain(super::groups::SUPPORTED)
}

/// The version range this listener speaks for `api`, if it implements it.
pub fn supported_range(api: ApiKey) -> Option<(i16, i16)> {
    all_supported()
        .find(|(k, _, _)| *k == api)
        .map(|&(_, lo, hi)| (lo, hi))
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("kafka frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("kafka frame with negative length {0}")]
    Negative(i32),
}

/// Splits one whole frame's body off the front of `buf` (`None`: not all
/// of it has arrived yet). A length over `max_frame_bytes` is an error
/// before its body is read: framing cannot be trusted past it.
pub fn next_frame(buf: &mut BytesMut, max_frame_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = usize::try_from(len).map_err(|_| FrameError::Negative(len))?;
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    if buf.len() < 4 + len {
        // Nothing reserved from the prefix: the reader grows the buffer
        // with the bytes that arrive (`conn::FrameReader`).
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The whole size (prefix included) of the Kafka frame at the front of
/// `buf`, once its prefix is in; `None` before, and for a negative length
/// (which `next_frame` refuses).
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    usize::try_from(i32::from_be_bytes(prefix))
        .ok()
        .map(|len| 4 + len)
}

/// Why a Kafka request cannot be served: the connection is closed (Kafka
/// does the same: the client cannot be told in a response it will parse).
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("frame too short for a request header ({0} bytes)")]
    Short(usize),
    #[error(
        "{api:?} request of {len} bytes is over the limit of {max} for requests other than Produce"
    )]
    ControlTooLarge { api: ApiKey, len: usize, max: usize },
    #[error("unknown or unsupported api key {0}")]
    UnknownApi(i16),
    #[error("{api:?} version {version} is not supported")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("undecodable {api:?} v{version} request: {message}")]
    Malformed {
        api: ApiKey,
        version: i16,
        message: String,
    },
}

/// Decodes one request frame's body (length prefix removed); a body over
/// `max_control` bytes is refused unless it is a Produce.
pub fn decode_request(
    mut body: Bytes,
    max_control: usize,
    ids: &dyn TopicIds,
) -> Result<Decoded, DecodeError> {
    if body.len() < 8 {
        return Err(DecodeError::Short(body.len()));
    }
    let key = i16::from_be_bytes([body[0], body[1]]);
    let version = i16::from_be_bytes([body[2], body[3]]);
    let api = ApiKey::try_from(key).map_err(|_| DecodeError::UnknownApi(key))?;
    let (lo, hi) = supported_range(api).ok_or(DecodeError::UnknownApi(key))?;
    if api != ApiKey::Produce && body.len() > max_control {
        return Err(DecodeError::ControlTooLarge {
            api,
            len: body.len(),
            max: max_control,
        });
    }
    let malformed = |e: anyhow::Error| DecodeError::Malformed {
        api,
        version,
        message: e.to_string(),
    };
    if api == ApiKey::ApiVersions && !(lo..=hi).contains(&version) {
        // KIP-511: a newer client's body may not decode; header v1 (api,
        // version, correlation id, client id) is a prefix of every header.
        let header = RequestHeader::decode(&mut body, 1).map_err(malformed)?;
        return Ok(Decoded {
            api,
            version: 0,
            correlation_id: header.correlation_id,
            client_id: None,
            work: Work::ApiVersions {
                error: ResponseError::UnsupportedVersion.code(),
            },
        });
    }
    if !(lo..=hi).contains(&version) {
        return Err(DecodeError::UnsupportedVersion { api, version });
    }
    let header =
        RequestHeader::decode(&mut body, api.request_header_version(version)).map_err(malformed)?;
    let native = |request: Request| {
        Box::new(RequestFrame {
            version: PROTOCOL_VERSION,
            correlation_id: header.correlation_id as u32,
            client_id: header.client_id.as_ref().map(|c| c.as_str().to_owned()),
            request,
        })
    };
    let work = match api {
        ApiKey::ApiVersions => Work::ApiVersions { error: 0 },
        ApiKey::Metadata => {
            metadata::decode_metadata(&mut body, version, &native, ids).map_err(malformed)?
        }
        ApiKey::Produce => data::decode_produce(&mut body, version, &native).map_err(malformed)?,
        ApiKey::Fetch => data::decode_fetch(&mut body, version, &native, ids).map_err(malformed)?,
        ApiKey::ListOffsets => {
            data::decode_list_offsets(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::DeleteRecords => {
            data::decode_delete_records(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::DescribeProducers => {
            data::decode_describe_producers(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::CreateTopics => {
            admin::decode_create_topics(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::DeleteTopics => {
            admin::decode_delete_topics(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::CreatePartitions => {
            admin::decode_create_partitions(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::DescribeCluster => {
            metadata::decode_describe_cluster(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::DescribeConfigs => {
            configs::decode_describe_configs(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::AlterConfigs => {
            configs::decode_alter_configs(&mut body, version, &native, false).map_err(malformed)?
        }
        ApiKey::IncrementalAlterConfigs => {
            configs::decode_alter_configs(&mut body, version, &native, true).map_err(malformed)?
        }
        ApiKey::InitProducerId => {
            super::txn::decode_init_producer_id(&mut body, version).map_err(malformed)?
        }
        ApiKey::AddPartitionsToTxn => {
            super::txn::decode_add_partitions(&mut body, version).map_err(malformed)?
        }
        ApiKey::EndTxn => super::txn::decode_end_txn(&mut body, version).map_err(malformed)?,
        ApiKey::AddOffsetsToTxn => {
            super::txn::decode_add_offsets(&mut body, version).map_err(malformed)?
        }
        ApiKey::DescribeTransactions => {
            super::txn::decode_describe_transactions(&mut body, version).map_err(malformed)?
        }
        ApiKey::ListTransactions => {
            super::txn::decode_list_transactions(&mut body, version).map_err(malformed)?
        }
        ApiKey::SaslHandshake => {
            super::sasl::decode_handshake(&mut body, version).map_err(malformed)?
        }
        ApiKey::SaslAuthenticate => {
            super::sasl::decode_authenticate(&mut body, version).map_err(malformed)?
        }
        ApiKey::DescribeUserScramCredentials => {
            super::sasl::decode_describe_users(&mut body, version).map_err(malformed)?
        }
        ApiKey::AlterUserScramCredentials => {
            super::sasl::decode_alter_users(&mut body, version).map_err(malformed)?
        }
        ApiKey::CreateAcls => super::acls::decode_create(&mut body, version).map_err(malformed)?,
        ApiKey::DescribeAcls => {
            super::acls::decode_describe(&mut body, version).map_err(malformed)?
        }
        ApiKey::DeleteAcls => super::acls::decode_delete(&mut body, version).map_err(malformed)?,
        ApiKey::DescribeClientQuotas => {
            super::quotas::decode_describe(&mut body, version).map_err(malformed)?
        }
        ApiKey::AlterClientQuotas => {
            super::quotas::decode_alter(&mut body, version).map_err(malformed)?
        }
        ApiKey::DescribeTopicPartitions => {
            metadata::decode_describe_topic_partitions(&mut body, version, &native)
                .map_err(malformed)?
        }
        ApiKey::DescribeLogDirs => {
            cluster::decode_describe_log_dirs(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::ElectLeaders => {
            cluster::decode_elect_leaders(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::DescribeQuorum => {
            cluster::decode_describe_quorum(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::OffsetForLeaderEpoch => {
            data::decode_offset_for_leader_epoch(&mut body, version, &native).map_err(malformed)?
        }
        ApiKey::AlterReplicaLogDirs => {
            cluster::decode_alter_replica_log_dirs(&mut body, version, &native)
                .map_err(malformed)?
        }
        ApiKey::ListPartitionReassignments => {
            cluster::decode_list_partition_reassignments(&mut body, version).map_err(malformed)?
        }
        ApiKey::AlterPartitionReassignments => {
            cluster::decode_alter_partition_reassignments(&mut body, version, &native)
                .map_err(malformed)?
        }
        api if super::groups::is_group_api(api) => super::groups::decode(
            api,
            version,
            &mut body,
            header.client_id.as_ref().map(|c| c.as_str().to_owned()),
            native,
            ids,
        )
        .map_err(malformed)?,
        _ => return Err(DecodeError::UnknownApi(key)),
    };
    Ok(Decoded {
        api,
        version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.clone(),
        work,
    })
}

/// The ApiVersions answer: exactly the implemented APIs. Tagged fields
/// keep their defaults, so the crate leaves them out (Debian's kcat,
/// librdkafka 2.0.2, misreads them: ARCHITECTURE.md, "Facts the code
/// relies on").
pub fn api_versions_response(error: i16, transaction_version: i16) -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.error_code = error;
    r.api_keys = all_supported()
        .map(|&(k, lo, hi)| {
            let mut v = ApiVersion::default();
            v.api_key = k as i16;
            v.min_version = lo;
            v.max_version = hi;
            v
        })
        .collect();
    // KIP-584 features (v3+, tagged): at transaction version 2 (KIP-890
    // part 2, the default) Kafka 4 clients add partitions implicitly on
    // Produce v12+ and TxnOffsetCommit v5+, and read their next epoch from
    // EndTxn v5; at 1 they stay on the older protocol (capping those
    // APIs' versions themselves, as against Kafka). The features epoch
    // never changes: the level is fixed while the broker runs.
    let mut supported = SupportedFeatureKey::default();
    supported.name = StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    supported.min_version = 0;
    supported.max_version = TRANSACTION_VERSION;
    r.supported_features = vec![supported];
    let mut finalized = FinalizedFeatureKey::default();
    finalized.name = StrBytes::from_static_str(TRANSACTION_VERSION_FEATURE);
    finalized.min_version_level = transaction_version;
    finalized.max_version_level = transaction_version;
    r.finalized_features = vec![finalized];
    r.finalized_features_epoch = 1;
    r
}

/// Kafka's feature name for the transaction protocol's version.
pub const TRANSACTION_VERSION_FEATURE: &str = "transaction.version";
/// The highest transaction version the listener supports (KIP-890 part
/// 2), and what it finalizes unless `--transaction-version` says 1.
pub const TRANSACTION_VERSION: i16 = 2;

/// Translates a native answer into the Kafka response for `api`/`version`
/// and encodes it. `nodes` are the Kafka brokers (one per shard) Metadata
/// advertises; `shape` names the partitions a request-level error goes on;
/// `describe_configs` and `defaults` serve DescribeConfigs; `throttle_ms`
/// is the client quota's throttle a Produce or Fetch answer carries.
// Each argument is one piece of the request's context; a struct holding
// them would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    result: Result<Response, WireError>,
    shape: &Shape,
    refused: &Refused,
    describe_configs: &[ConfigResource],
    nodes: &[NodeInfo],
    defaults: &TopicDefaults,
    ids: &dyn TopicIds,
    throttle_ms: i32,
) -> Result<Chain, anyhow::Error> {
    if super::groups::is_group_api(api) {
        return super::groups::encode(api, version, correlation_id, result, shape, ids)
            .map(Chain::from);
    }
    let result = match (api, result) {
        // The records go out as the log holds them, between the fields.
        (ApiKey::Fetch, Ok(Response::Fetch(mut topics))) => {
            // Topics named by an id no topic has (v13+), beside the rest.
            for (name, _, message) in refused {
                let partitions = shape
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(&[][..], |(_, ps)| ps.as_slice());
                topics.push(crate::protocol::FetchTopicResult {
                    name: name.clone(),
                    partitions: partitions
                        .iter()
                        .map(|&p| crate::protocol::FetchPartitionResult {
                            partition: partition_u32(p),
                            error: Some(WireError::new(ErrorCode::UnknownTopicId, message.clone())),
                            high_watermark: -1,
                            log_start_offset: -1,
                            records: Chain::new(),
                            last_stable_offset: -1,
                            aborted: vec![],
                        })
                        .collect(),
                });
            }
            return data::fetch_frame(version, correlation_id, topics, ids, throttle_ms);
        }
        (_, r) => r,
    };
    let frame = |body: &dyn EncodeDyn| body.frame(api, version, correlation_id);
    let local = || {
        refused
            .iter()
            .map(|(n, code, msg)| (n.clone(), *code, Some(msg.clone())))
    };
    let framed = match (api, result) {
        (ApiKey::CreateTopics, Ok(Response::CreateTopics(results))) => {
            let all = results
                .into_iter()
                .map(|t| {
                    let code = kafka_code(t.error.as_ref());
                    (t.name, code, t.error.map(|e| e.message))
                })
                .chain(local());
            frame(&admin::create_topics_response(all))
        }
        (ApiKey::CreatePartitions, Ok(Response::CreatePartitions(results))) => {
            let all = results
                .into_iter()
                .map(|t| {
                    let code = kafka_code(t.error.as_ref());
                    (t.name, code, t.error.map(|e| e.message))
                })
                .chain(local());
            frame(&admin::create_partitions_response(all))
        }
        (ApiKey::DeleteTopics, Ok(Response::DeleteTopics(results))) => {
            let all = results.into_iter().map(|t| {
                let code = kafka_code(t.error.as_ref());
                (t.name, code, t.error.map(|e| e.message))
            });
            frame(&admin::delete_topics_response(all))
        }
        (ApiKey::AlterConfigs, Ok(Response::AlterConfigs(rs))) => {
            frame(&configs::alter_configs_response(
                configs::alter_configs_results(shape, refused, &rs, None),
            ))
        }
        (ApiKey::IncrementalAlterConfigs, Ok(Response::AlterConfigs(rs))) => {
            frame(&configs::incremental_alter_configs_response(
                configs::alter_configs_results(shape, refused, &rs, None),
            ))
        }
        (ApiKey::AlterConfigs | ApiKey::IncrementalAlterConfigs, Err(e)) => {
            let rs = configs::alter_configs_results(
                shape,
                refused,
                &[],
                Some((kafka_code(Some(&e)), e.message)),
            );
            if api == ApiKey::AlterConfigs {
                frame(&configs::alter_configs_response(rs))
            } else {
                frame(&configs::incremental_alter_configs_response(rs))
            }
        }
        (ApiKey::DescribeLogDirs, Ok(Response::DescribeTopics(ts))) => frame(
            &cluster::describe_log_dirs_response(shape, &ts, &defaults.log_dir, 0),
        ),
        (ApiKey::DescribeTopicPartitions, Ok(Response::Metadata(m))) => frame(
            &metadata::describe_topic_partitions_response(shape, m.topics, nodes, 0),
        ),
        (ApiKey::ElectLeaders, Ok(Response::Metadata(m))) => {
            frame(&cluster::elect_leaders_response(shape, &m.topics, 0))
        }
        (ApiKey::DescribeQuorum, Ok(Response::Metadata(_))) => {
            frame(&cluster::describe_quorum_response(version, shape, nodes, 0))
        }
        (ApiKey::AlterReplicaLogDirs, Ok(Response::DescribeTopics(ts))) => frame(
            &cluster::alter_replica_log_dirs_response(shape, &ts, &defaults.log_dir, 0),
        ),
        (ApiKey::AlterPartitionReassignments, Ok(Response::Metadata(m))) => frame(
            &cluster::alter_partition_reassignments_response(shape, &m.topics, nodes, 0),
        ),
        (ApiKey::DescribeConfigs, Ok(Response::DescribeTopics(ts))) => frame(
            &describe_configs_response(describe_configs, &ts, nodes, defaults),
        ),
        (ApiKey::DescribeCluster, Ok(Response::Metadata(_))) => {
            frame(&metadata::describe_cluster_response(shape, nodes, 0))
        }
        (ApiKey::Metadata, Ok(Response::Metadata(m))) => frame(&metadata::metadata_response(
            version,
            Ok(m.topics),
            shape,
            refused,
            nodes,
        )),
        (ApiKey::Produce, Ok(Response::Produce(topics))) => {
            frame(&data::produce_response(topics, throttle_ms))
        }
        (ApiKey::ListOffsets, Ok(Response::ListOffsets(topics))) => {
            frame(&data::list_offsets_response(topics))
        }
        (ApiKey::OffsetForLeaderEpoch, Ok(Response::ListOffsets(topics))) => {
            frame(&data::offset_for_leader_epoch_response(shape, &topics, 0))
        }
        (ApiKey::DeleteRecords, Ok(Response::DeleteRecords(topics))) => {
            frame(&data::delete_records_response(topics))
        }
        (ApiKey::DescribeProducers, Ok(Response::DescribeProducers(topics))) => {
            frame(&data::describe_producers_response(topics))
        }
        (_, Ok(other)) => {
            let e = WireError::new(
                ErrorCode::Unknown,
                format!("unexpected answer {:?}", api_of(&other)),
            );
            refuse_response(api, version, correlation_id, shape, kafka_code(Some(&e)))
        }
        (_, Err(e)) => refuse_response(api, version, correlation_id, shape, kafka_code(Some(&e))),
    };
    framed.map(Chain::from)
}

fn api_of(r: &Response) -> &'static str {
    match r {
        Response::Produce(_) => "produce",
        Response::Fetch(_) => "fetch",
        Response::ListOffsets(_) => "list offsets",
        Response::Metadata(_) => "metadata",
        Response::CreateTopics(_) => "create topics",
        Response::DeleteTopics(_) => "delete topics",
        _ => "other",
    }
}

/// A response with `error` on every partition of `shape`.
pub fn refuse_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    shape: &Shape,
    error: i16,
) -> Result<Bytes, anyhow::Error> {
    if super::groups::is_group_api(api) {
        return super::groups::refuse(api, version, correlation_id, shape, error);
    }
    if super::txn::is_txn_api(api) {
        return super::txn::refuse(api, version, correlation_id, shape, error);
    }
    if super::sasl::is_sasl_api(api) {
        return super::sasl::refuse(api, version, correlation_id, error);
    }
    if super::acls::is_acl_api(api) {
        return super::acls::refuse(api, version, correlation_id, shape, error);
    }
    match api {
        ApiKey::Produce => {
            let mut r = ProduceResponse::default();
            r.responses = shape
                .iter()
                .map(|(n, ps)| {
                    let mut tr = TopicProduceResponse::default();
                    tr.name = topic_name(n);
                    tr.partition_responses = ps
                        .iter()
                        .map(|&p| {
                            let mut pr = PartitionProduceResponse::default();
                            pr.index = p;
                            pr.error_code = error;
                            pr.base_offset = -1;
                            pr
                        })
                        .collect();
                    tr
                })
                .collect();
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::Fetch => {
            let mut r = FetchResponse::default();
            r.error_code = if version >= 7 { error } else { 0 };
            r.responses = shape
                .iter()
                .map(|(n, ps)| {
                    let mut tr = FetchableTopicResponse::default();
                    tr.topic = topic_name(n);
                    tr.partitions = ps
                        .iter()
                        .map(|&p| {
                            let mut pd = PartitionData::default();
                            pd.partition_index = p;
                            pd.error_code = error;
                            pd.high_watermark = -1;
                            pd.last_stable_offset = -1;
                            pd.log_start_offset = -1;
                            pd.aborted_transactions = Some(vec![]);
                            pd
                        })
                        .collect();
                    tr
                })
                .collect();
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::DeleteRecords => {
            let r = data::delete_records_response(
                shape
                    .iter()
                    .map(|(n, ps)| crate::protocol::DeleteRecordsTopicResult {
                        name: n.clone(),
                        partitions: ps
                            .iter()
                            .map(|&p| crate::protocol::DeleteRecordsPartitionResult {
                                partition: p as u32,
                                error: None,
                                low_watermark: -1,
                            })
                            .collect(),
                    })
                    .collect(),
            );
            let mut r = r;
            for t in &mut r.topics {
                for p in &mut t.partitions {
                    p.error_code = error;
                }
            }
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::ListOffsets => {
            let mut r = ListOffsetsResponse::default();
            r.topics = shape
                .iter()
                .map(|(n, ps)| {
                    let mut tr = ListOffsetsTopicResponse::default();
                    tr.name = topic_name(n);
                    tr.partitions = ps
                        .iter()
                        .map(|&p| {
                            let mut pr = ListOffsetsPartitionResponse::default();
                            pr.partition_index = p;
                            pr.error_code = error;
                            pr.offset = -1;
                            pr.timestamp = -1;
                            pr
                        })
                        .collect();
                    tr
                })
                .collect();
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::CreateTopics => encode_frame(
            api,
            version,
            correlation_id,
            &admin::create_topics_response(shape.iter().map(|(n, _)| (n.clone(), error, None))),
        ),
        ApiKey::DescribeCluster => encode_frame(
            api,
            version,
            correlation_id,
            &metadata::describe_cluster_response(shape, &[], error),
        ),
        ApiKey::AlterConfigs => encode_frame(
            api,
            version,
            correlation_id,
            &configs::alter_configs_response(configs::alter_configs_results(
                shape,
                &Refused::new(),
                &[],
                Some((error, String::new())),
            )),
        ),
        ApiKey::IncrementalAlterConfigs => encode_frame(
            api,
            version,
            correlation_id,
            &configs::incremental_alter_configs_response(configs::alter_configs_results(
                shape,
                &Refused::new(),
                &[],
                Some((error, String::new())),
            )),
        ),
        ApiKey::DescribeTopicPartitions => {
            // Every named topic with the error.
            let topics = shape
                .iter()
                .skip(1)
                .map(|(n, _)| crate::protocol::TopicInfo {
                    name: n.clone(),
                    id: [0; 16],
                    error: None,
                    partitions: vec![],
                })
                .collect();
            encode_frame(
                api,
                version,
                correlation_id,
                &metadata::describe_topic_partitions_response(shape, topics, &[], error),
            )
        }
        ApiKey::DescribeLogDirs => encode_frame(
            api,
            version,
            correlation_id,
            &cluster::describe_log_dirs_response(shape, &[], "", error),
        ),
        ApiKey::ElectLeaders => encode_frame(
            api,
            version,
            correlation_id,
            &cluster::elect_leaders_response(shape, &[], error),
        ),
        ApiKey::ListPartitionReassignments => encode_frame(
            api,
            version,
            correlation_id,
            &cluster::list_partition_reassignments_response(error),
        ),
        ApiKey::DescribeQuorum => encode_frame(
            api,
            version,
            correlation_id,
            &cluster::describe_quorum_response(version, shape, &[], error),
        ),
        ApiKey::OffsetForLeaderEpoch => encode_frame(
            api,
            version,
            correlation_id,
            &data::offset_for_leader_epoch_response(shape, &[], error),
        ),
        ApiKey::DescribeProducers => {
            let mut r = data::describe_producers_response(
                shape
                    .iter()
                    .map(|(n, ps)| crate::protocol::DescribeProducersTopicResult {
                        name: n.clone(),
                        partitions: ps
                            .iter()
                            .map(|&p| crate::protocol::DescribeProducersPartitionResult {
                                partition: p as u32,
                                error: None,
                                producers: vec![],
                            })
                            .collect(),
                    })
                    .collect(),
            );
            for p in r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                p.error_code = error;
            }
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::AlterReplicaLogDirs => encode_frame(
            api,
            version,
            correlation_id,
            &cluster::alter_replica_log_dirs_response(shape, &[], "", error),
        ),
        ApiKey::AlterPartitionReassignments => encode_frame(
            api,
            version,
            correlation_id,
            &cluster::alter_partition_reassignments_response(shape, &[], &[], error),
        ),
        ApiKey::CreatePartitions => encode_frame(
            api,
            version,
            correlation_id,
            &admin::create_partitions_response(shape.iter().map(|(n, _)| (n.clone(), error, None))),
        ),
        ApiKey::DeleteTopics => encode_frame(
            api,
            version,
            correlation_id,
            &admin::delete_topics_response(shape.iter().map(|(n, _)| (n.clone(), error, None))),
        ),
        ApiKey::DescribeConfigs => {
            let mut r = DescribeConfigsResponse::default();
            r.results = shape
                .iter()
                .map(|(n, ty)| {
                    let mut res = DescribeConfigsResult::default();
                    res.error_code = error;
                    res.resource_type = ty.first().map_or(0, |&t| t as i8);
                    res.resource_name = StrBytes::from_string(n.clone());
                    res
                })
                .collect();
            encode_frame(api, version, correlation_id, &r)
        }
        _ => encode_frame(
            api,
            version,
            correlation_id,
            &metadata::metadata_response(version, Err(error), shape, &Refused::new(), &[]),
        ),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::admin::init_producer_id_response;
    use super::super::configs::{RESOURCE_BROKER, RESOURCE_TOPIC, SOURCE_DEFAULT, SOURCE_TOPIC};
    use super::*;
    use crate::protocol::Acks;
    use crate::protocol::TopicDescription;
    use crate::storage::meta::LogConfig;
    use kafka_protocol::messages::ProduceRequest;
    use kafka_protocol::messages::{
        CreateTopicsRequest, DescribeConfigsRequest, InitProducerIdRequest, ProducerId,
    };

    /// A request decoded under the default limits.
    pub(crate) fn decode(body: Bytes) -> Result<Decoded, DecodeError> {
        decode_request(
            body,
            DEFAULT_MAX_CONTROL_REQUEST_BYTES,
            &super::super::wire::NoTopicIds,
        )
    }
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::Encodable;

    /// A request's body as the listener gets it (header, client id
    /// "tester", message); shared with the other Kafka modules' tests.
    pub(crate) fn request_body<M: Encodable>(api: ApiKey, version: i16, cid: i32, m: &M) -> Bytes {
        let mut h = RequestHeader::default();
        h.request_api_key = api as i16;
        h.request_api_version = version;
        h.correlation_id = cid;
        h.client_id = Some(StrBytes::from_static_str("tester"));
        let mut b = BytesMut::new();
        h.encode(&mut b, api.request_header_version(version))
            .unwrap();
        m.encode(&mut b, version).unwrap();
        b.freeze()
    }

    #[test]
    fn describe_configs_answers_topics_and_brokers_in_request_order() {
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        let res = |ty: i8, n: &str, keys: Option<&[&str]>| {
            let mut r = DescribeConfigsResource::default();
            r.resource_type = ty;
            r.resource_name = StrBytes::from_string(n.to_owned());
            r.configuration_keys = keys.map(|ks| {
                ks.iter()
                    .map(|k| StrBytes::from_string(k.to_string()))
                    .collect()
            });
            r
        };
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![
            res(RESOURCE_TOPIC, "t", None),
            res(RESOURCE_BROKER, "1", Some(&["log.retention.ms", "nope"])),
            res(RESOURCE_TOPIC, "missing", None),
            res(RESOURCE_BROKER, "7", None),
            res(8, "0", None),
        ];
        let d = decode(request_body(ApiKey::DescribeConfigs, 4, 9, &req)).unwrap();
        let Work::Native {
            frame,
            shape,
            describe_configs,
            ..
        } = d.work
        else {
            panic!("native work")
        };
        let Request::DescribeTopics { topics: Some(ts) } = frame.request else {
            panic!("describe topics")
        };
        assert_eq!(ts, vec!["t".to_owned(), "missing".to_owned()]);
        assert_eq!(shape[1], ("1".to_owned(), vec![4]));
        let topics = vec![
            TopicDescription {
                id: [0; 16],
                name: "t".into(),
                error: None,
                configs: vec![
                    ("retention.ms".into(), "1000".into()),
                    ("cleanup.policy".into(), "compact,delete".into()),
                    ("min.cleanable.dirty.ratio".into(), "0.25".into()),
                ],
                partitions: vec![],
            },
            TopicDescription {
                id: [0; 16],
                name: "missing".into(),
                error: Some(WireError::new(ErrorCode::UnknownTopic, "unknown topic")),
                configs: vec![],
                partitions: vec![],
            },
        ];
        let nodes: Vec<NodeInfo> = (0..2)
            .map(|i| NodeInfo {
                node_id: i,
                host: "h".into(),
                port: 1,
                shard: i as u16,
            })
            .collect();
        let defaults = TopicDefaults {
            log: LogConfig::default(),
            max_batch_bytes: 1 << 20,
            ..TopicDefaults::default()
        };
        let r = describe_configs_response(&describe_configs, &topics, &nodes, &defaults);
        let names: Vec<_> = r.results.iter().map(|x| x.resource_name.as_str()).collect();
        assert_eq!(names, ["t", "1", "missing", "7", "0"]);
        let codes: Vec<_> = r.results.iter().map(|x| x.error_code).collect();
        assert_eq!(codes, [0, 0, 3, 42, 42]);
        let get = |i: usize, k: &str| {
            r.results[i]
                .configs
                .iter()
                .find(|c| c.name.as_str() == k)
                .map(|c| {
                    (
                        c.value.as_ref().unwrap().to_string(),
                        c.config_source,
                        c.read_only,
                    )
                })
        };
        assert_eq!(
            get(0, "retention.ms"),
            Some(("1000".into(), SOURCE_TOPIC, false))
        );
        assert_eq!(
            get(0, "segment.bytes"),
            Some(((1u64 << 30).to_string(), SOURCE_DEFAULT, false))
        );
        // Compaction settings: as set, or Kafka's defaults.
        assert_eq!(
            get(0, "cleanup.policy"),
            Some(("compact,delete".into(), SOURCE_TOPIC, false))
        );
        assert_eq!(
            get(0, "min.cleanable.dirty.ratio"),
            Some(("0.25".into(), SOURCE_TOPIC, false))
        );
        assert_eq!(
            get(0, "delete.retention.ms"),
            Some(("86400000".into(), SOURCE_DEFAULT, false))
        );
        assert_eq!(
            get(0, "max.compaction.lag.ms"),
            Some((i64::MAX.to_string(), SOURCE_DEFAULT, false))
        );
        assert_eq!(get(0, "min.compaction.lag.ms").unwrap().0, "0");
        assert_eq!(get(0, "max.message.bytes").unwrap().0, "1048576");
        assert_eq!(r.results[1].configs.len(), 1, "only the keys asked for");
        assert_eq!(
            get(1, "log.retention.ms").unwrap().0,
            (7 * 24 * 3600 * 1000).to_string()
        );
        for v in 1..=4 {
            encode_frame(ApiKey::DescribeConfigs, v, 9, &r).unwrap();
            refuse_response(ApiKey::DescribeConfigs, v, 9, &shape, 35).unwrap();
        }
    }

    #[test]
    fn the_compatibility_page_lists_exactly_the_offered_apis() {
        // COMPATIBILITY.md's first table: "| Name (key) | lo-hi | notes |".
        let page = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/COMPATIBILITY.md"));
        let table = page
            .split("## Offered APIs")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("an Offered APIs section");
        let mut listed: Vec<(i16, i16, i16)> = table
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let key = cells.get(1)?.rsplit_once('(')?.1.strip_suffix(')')?;
                let (lo, hi) = cells.get(2)?.split_once('-')?;
                Some((key.parse().ok()?, lo.parse().ok()?, hi.parse().ok()?))
            })
            .collect();
        listed.sort();
        let mut offered: Vec<(i16, i16, i16)> = all_supported()
            .map(|&(api, lo, hi)| (api as i16, lo, hi))
            .collect();
        offered.sort();
        assert_eq!(listed, offered, "COMPATIBILITY.md is out of date");
    }

    #[test]
    fn frames_split_whole_and_refuse_bad_lengths() {
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 2][..]);
        assert_eq!(next_frame(&mut buf, 10), Ok(None));
        buf.extend_from_slice(&[3, 0, 0]);
        assert_eq!(next_frame(&mut buf, 10).unwrap().unwrap(), &[1, 2, 3][..]);
        assert_eq!(buf.len(), 2);
        let mut big = BytesMut::from(&[0, 0, 0, 11][..]);
        assert_eq!(
            next_frame(&mut big, 10),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
        let mut neg = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(next_frame(&mut neg, 10), Err(FrameError::Negative(-1)));
    }

    #[test]
    fn api_versions_v3_finalizes_transaction_version_2_in_its_tagged_fields() {
        let b = encode_frame(
            ApiKey::ApiVersions,
            3,
            7,
            &api_versions_response(0, TRANSACTION_VERSION),
        )
        .unwrap();
        // length, correlation id (header v0 always), error, compact array
        // (one length byte), each key/min/max + empty tags (7 bytes),
        // throttle, then the tagged fields: the features.
        let apis = all_supported().count();
        assert!(apis < 127, "the array length fits one byte");
        let fixed = 4 + 4 + 2 + 1 + apis * 7 + 4;
        assert_eq!(
            b[fixed], 3,
            "three tagged fields: supported, epoch, finalized"
        );
        let mut body = b.slice(8..);
        let r = ApiVersionsResponse::decode(&mut body, 3).unwrap();
        let f: Vec<(String, i16, i16)> = r
            .finalized_features
            .iter()
            .map(|f| (f.name.to_string(), f.min_version_level, f.max_version_level))
            .collect();
        assert_eq!(f, vec![("transaction.version".to_string(), 2, 2)]);
        assert_eq!(r.finalized_features_epoch, 1);
        assert_eq!(r.supported_features[0].max_version, 2);
        // `--transaction-version 1`: finalized at 1, Kafka 4 clients stay
        // on the older protocol.
        let one = api_versions_response(0, 1);
        assert_eq!(
            (
                one.finalized_features[0].min_version_level,
                one.finalized_features[0].max_version_level
            ),
            (1, 1)
        );
        // v0-2 carry no features: the same fixed part, nothing after it.
        let b2 = encode_frame(
            ApiKey::ApiVersions,
            2,
            7,
            &api_versions_response(0, TRANSACTION_VERSION),
        )
        .unwrap();
        assert!(b2.len() < b.len());
    }

    #[test]
    fn unknown_apis_and_versions_are_refused_and_kip511_is_answered() {
        let body = request_body(
            ApiKey::DescribeDelegationToken,
            0,
            1,
            &ApiVersionsRequest::default(),
        );
        assert!(matches!(decode(body), Err(DecodeError::UnknownApi(41))));
        let mut junk = BytesMut::from(
            &request_body(ApiKey::ApiVersions, 0, 1, &ApiVersionsRequest::default())[..],
        );
        junk[0..2].copy_from_slice(&999i16.to_be_bytes());
        assert!(matches!(
            decode(junk.freeze()),
            Err(DecodeError::UnknownApi(999))
        ));
        let mut v9 = BytesMut::from(
            &request_body(ApiKey::ApiVersions, 3, 5, &ApiVersionsRequest::default())[..],
        );
        v9[2..4].copy_from_slice(&9i16.to_be_bytes());
        let d = decode(v9.freeze()).unwrap();
        assert_eq!((d.version, d.correlation_id), (0, 5));
        assert!(matches!(d.work, Work::ApiVersions { error: 35 }));
        assert!(matches!(
            decode(Bytes::from_static(&[0, 3])),
            Err(DecodeError::Short(2))
        ));
    }

    #[test]
    fn produce_acks_map_and_records_are_not_copied() {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        let records = Bytes::from_static(b"opaque batch bytes");
        for (acks, want, respond) in [
            (0, Acks::None, false),
            (1, Acks::Leader, true),
            (-1, Acks::Durable, true),
        ] {
            let mut p = PartitionProduceData::default();
            p.index = 2;
            p.records = Some(records.clone());
            let mut t = TopicProduceData::default();
            t.name = topic_name("t");
            t.partition_data = vec![p];
            let mut r = ProduceRequest::default();
            r.acks = acks;
            r.topic_data = vec![t];
            let body = request_body(ApiKey::Produce, 8, 1, &r);
            let d = decode(body.clone()).unwrap();
            let Work::Native {
                frame,
                shape,
                respond: resp,
                ..
            } = d.work
            else {
                panic!("native work")
            };
            assert_eq!(resp, respond);
            assert_eq!(shape, vec![("t".to_owned(), vec![2])]);
            let Request::Produce(p) = frame.request else {
                panic!("produce")
            };
            assert_eq!(p.acks, want);
            let got = &p.topics[0].partitions[0].records;
            assert_eq!(got, &records);
            // A slice of the frame, not a copy.
            let start = body.as_ptr() as usize;
            let at = got.as_ptr() as usize;
            assert!(at >= start && at < start + body.len());
        }
    }

    #[test]
    fn transaction_version_2_requests_add_their_partitions_implicitly() {
        use crate::batch::BatchBuilder;
        use crate::group::TopicPartition;
        use crate::txn_host::TxnCall;
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{
            EndTxnRequest, GroupId, ProduceRequest, TopicName, TransactionalId,
            TxnOffsetCommitRequest,
        };
        let txn_batch = |pid: i64, epoch: i16| {
            let mut b = BatchBuilder::new(1)
                .idempotent(pid, epoch, 0)
                .transactional();
            b.push(1, None, Some(&b"v"[..]), &[]);
            b.finish()
        };
        let mut plain = BatchBuilder::new(1);
        plain.push(1, None, Some(&b"v"[..]), &[]);
        let part = |i: i32, records: Bytes| {
            PartitionProduceData::default()
                .with_index(i)
                .with_records(Some(records))
        };
        let produce = |parts: Vec<PartitionProduceData>| {
            ProduceRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
                .with_acks(-1)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_data(parts)])
        };
        let r = produce(vec![
            part(0, txn_batch(9, 4)),
            part(1, plain.finish()),
            part(2, txn_batch(9, 4)),
        ]);
        // v12: the transactional partitions join the producer's
        // transaction first; the produce itself follows unchanged.
        let d = decode(request_body(ApiKey::Produce, 12, 3, &r)).unwrap();
        let Work::TxnAdd { add, then } = d.work else {
            panic!("{:?}", d.work)
        };
        assert_eq!(
            add,
            TxnCall::Add {
                id: "tx".into(),
                producer_id: 9,
                epoch: 4,
                partitions: vec![TopicPartition::new("t", 0), TopicPartition::new("t", 2)],
                txn_version: 2,
            }
        );
        assert!(matches!(*then, Work::Native { .. }));
        // v11 and below: transaction version 1, the client added them.
        let d = decode(request_body(ApiKey::Produce, 11, 3, &r)).unwrap();
        assert!(matches!(d.work, Work::Native { .. }));
        // Two producers in one transactional request: refused whole.
        let mixed = produce(vec![part(0, txn_batch(9, 4)), part(1, txn_batch(9, 5))]);
        let d = decode(request_body(ApiKey::Produce, 12, 3, &mixed)).unwrap();
        assert!(matches!(
            d.work,
            Work::Refuse { error, .. } if error == ResponseError::InvalidProducerIdMapping.code()
        ));
        // TxnOffsetCommit v5: the group's offsets partition, no
        // AddOffsetsToTxn; v4 as before.
        let mut c = TxnOffsetCommitRequest::default();
        c.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
        c.group_id = GroupId(StrBytes::from_static_str("g"));
        c.producer_id = ProducerId(9);
        c.producer_epoch = 4;
        let d = decode(request_body(ApiKey::TxnOffsetCommit, 5, 3, &c)).unwrap();
        let Work::TxnAdd { add, then } = d.work else {
            panic!("{:?}", d.work)
        };
        assert_eq!(
            add,
            TxnCall::AddOffsets {
                id: "tx".into(),
                producer_id: 9,
                epoch: 4,
                group: "g".into(),
                txn_version: 2,
            }
        );
        assert!(matches!(*then, Work::KafkaGroups { .. }));
        let d = decode(request_body(ApiKey::TxnOffsetCommit, 4, 3, &c)).unwrap();
        assert!(matches!(d.work, Work::KafkaGroups { .. }));
        // EndTxn v5 is version 2's.
        let mut e = EndTxnRequest::default();
        e.transactional_id = TransactionalId(StrBytes::from_static_str("tx"));
        for (v, want) in [(4, 1), (5, 2)] {
            let d = decode(request_body(ApiKey::EndTxn, v, 3, &e)).unwrap();
            assert!(matches!(&d.work, Work::Txn { calls, .. }
                if matches!(&calls[0], TxnCall::End { txn_version, .. } if *txn_version == want)));
        }
    }

    #[test]
    fn init_producer_id_goes_to_the_transaction_coordinator_with_an_id() {
        use crate::txn_host::TxnCall;
        use kafka_protocol::messages::TransactionalId;
        let mut r = InitProducerIdRequest::default();
        r.transactional_id = None;
        r.producer_id = ProducerId(-1);
        r.producer_epoch = -1;
        for v in 0..=5 {
            let d = decode(request_body(ApiKey::InitProducerId, v, 3, &r)).unwrap();
            assert!(matches!(d.work, Work::InitProducerId));
        }
        r.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx")));
        r.transaction_timeout_ms = 30_000;
        let d = decode(request_body(ApiKey::InitProducerId, 4, 3, &r)).unwrap();
        let want = TxnCall::Init {
            id: "tx".into(),
            timeout_ms: 30_000,
            expected: None,
        };
        assert!(matches!(&d.work, Work::Txn { calls, .. } if calls == &vec![want]));
        // KIP-360: a producer recovering names its id and epoch.
        r.producer_id = ProducerId(77);
        r.producer_epoch = 3;
        let d = decode(request_body(ApiKey::InitProducerId, 4, 3, &r)).unwrap();
        assert!(matches!(&d.work, Work::Txn { calls, .. }
            if matches!(&calls[0], TxnCall::Init { expected: Some((77, 3)), .. })));
        let ok = init_producer_id_response(Ok(42));
        assert_eq!(
            (ok.error_code, ok.producer_id.0, ok.producer_epoch),
            (0, 42, 0)
        );
        for v in 0..=5 {
            encode_frame(ApiKey::InitProducerId, v, 3, &ok).unwrap();
        }
    }

    #[test]
    fn create_topics_checks_replication_and_refuses_validate_only() {
        use kafka_protocol::messages::create_topics_request::{
            CreatableTopic, CreatableTopicConfig,
        };
        let topic = |n: &str, partitions, rf| {
            let mut t = CreatableTopic::default();
            t.name = topic_name(n);
            t.num_partitions = partitions;
            t.replication_factor = rf;
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_static_str("retention.ms");
            c.value = Some(StrBytes::from_static_str("1000"));
            let mut null = CreatableTopicConfig::default();
            null.name = StrBytes::from_static_str("segment.bytes");
            null.value = None;
            t.configs = vec![c, null];
            t
        };
        let mut r = CreateTopicsRequest::default();
        r.topics = vec![topic("a", -1, -1), topic("b", 3, 1), topic("c", 1, 3)];
        let d = decode(request_body(ApiKey::CreateTopics, 4, 1, &r)).unwrap();
        let Work::Native {
            frame,
            shape,
            refused,
            ..
        } = d.work
        else {
            panic!("native work")
        };
        assert_eq!(shape.len(), 3);
        let Request::CreateTopics(ts) = frame.request else {
            panic!("create topics")
        };
        let got: Vec<_> = ts.iter().map(|t| (t.name.as_str(), t.partitions)).collect();
        // -1 partitions: 0 on the native side, the broker's num-partitions.
        assert_eq!(got, vec![("a", 0), ("b", 3)]);
        assert_eq!(
            ts[0].configs,
            vec![("retention.ms".to_owned(), "1000".to_owned())]
        );
        assert_eq!(refused.len(), 1);
        assert_eq!(
            (refused[0].0.as_str(), refused[0].1),
            ("c", ResponseError::InvalidReplicationFactor.code())
        );
        r.validate_only = true;
        let d = decode(request_body(ApiKey::CreateTopics, 4, 2, &r)).unwrap();
        let Work::Native { frame, refused, .. } = d.work else {
            panic!("native work")
        };
        assert!(matches!(frame.request, Request::CreateTopics(ts) if ts.is_empty()));
        assert_eq!(refused.len(), 3);
        assert!(refused
            .iter()
            .all(|r| r.1 == 42 && r.2.contains("validate_only")));
    }
}
