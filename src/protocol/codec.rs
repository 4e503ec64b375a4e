//! Typed messages <-> flatbuffers. Pure functions over bytes.
//!
//! Decoding verifies the flatbuffer (bounded depth and table count) before
//! reading it, so hostile bytes yield `DecodeError`, never a panic. Record
//! batches come out as `Bytes::slice_ref` of the frame: no copy.

pub use super::fb::DecodeError;
use super::fb::{err_code, err_of, opt_str, RespBody};
use super::generated as fb;
use super::{access, admin, data, groups, *};
use crate::chain::Chain;
use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

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

/// Encodes a request as a whole frame (length prefix included).
pub fn encode_request(req: &RequestFrame) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let r = &req.request;
    let (kind, body) = match data::encode_request(&mut fbb, r) {
        Some(b) => b,
        None => match admin::encode_request(&mut fbb, r) {
            Some(b) => b,
            None => match access::encode_request(&mut fbb, r) {
                Some(b) => b,
                None => groups::encode_request(&mut fbb, r)
                    .expect("every request kind belongs to one family"),
            },
        },
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
        fb::Request::NONE => return Err(bad(DecodeError::MissingRequest)),
        other => {
            let decoded = match data::decode_request(&env, frame).map_err(bad)? {
                Some(r) => Some(r),
                None => match admin::decode_request(&env).map_err(bad)? {
                    Some(r) => Some(r),
                    None => match access::decode_request(&env).map_err(bad)? {
                        Some(r) => Some(r),
                        None => groups::decode_request(&env).map_err(bad)?,
                    },
                },
            };
            decoded.ok_or_else(|| bad(DecodeError::UnknownKind(other.0)))?
        }
    };
    Ok(RequestFrame {
        version: env.version(),
        correlation_id,
        client_id: env.client_id().map(str::to_owned),
        request,
    })
}

/// Encodes a response as a whole frame (length prefix included), in
/// version 1's layout (a fetch's records inside the flatbuffer).
pub fn encode_response(resp: &ResponseFrame) -> Vec<u8> {
    let (fbb, _) = encode_envelope(resp, false);
    framed(&fbb)
}

/// Encodes a response as a whole frame in fragments, in the layout of the
/// request's `version`. From version 2 a fetch's records follow the
/// flatbuffer as the log's own `Bytes`: the frame is the prefix and the
/// flatbuffer in one small buffer, then the records, never copied.
pub fn encode_response_for(resp: &ResponseFrame, version: u16) -> Chain {
    let topics = match &resp.result {
        Ok(Response::Fetch(topics)) if version >= 2 => topics,
        _ => return Chain::from(encode_response(resp)),
    };
    let (fbb, trailer) = encode_envelope(resp, true);
    let data = fbb.finished_data();
    let mut head = Vec::with_capacity(frame::LEN_BYTES + 8 + data.len());
    head.extend_from_slice(&frame::prefix(8 + data.len() + trailer));
    head.extend_from_slice(&TRAILER_MARK);
    head.extend_from_slice(
        &u32::try_from(data.len())
            .expect("a small head")
            .to_le_bytes(),
    );
    head.extend_from_slice(data);
    let mut out =
        Chain::with_capacity(1 + 2 * topics.iter().map(|t| t.partitions.len()).sum::<usize>());
    out.push(Bytes::from(head));
    // In the order the answer lists them (`topic_tables` keeps it).
    for p in topics.iter().flat_map(|t| &t.partitions) {
        out.extend(p.records.clone());
    }
    debug_assert_eq!(out.len(), frame::LEN_BYTES + 8 + data.len() + trailer);
    out
}

/// The envelope of an answer; with `records_after`, a fetch's records are
/// left out for the trailer, whose length comes back too.
fn encode_envelope(
    resp: &ResponseFrame,
    records_after: bool,
) -> (FlatBufferBuilder<'static>, usize) {
    let (capacity, trailer) = match &resp.result {
        Ok(Response::Fetch(t)) => {
            let parts = t.iter().flat_map(|t| &t.partitions);
            let records: usize = parts.clone().map(|p| p.records.len()).sum();
            let tables = 256 + 64 * parts.count();
            if records_after {
                (tables, records)
            } else {
                (tables + records, 0)
            }
        }
        _ => (256, 0),
    };
    let mut fbb = FlatBufferBuilder::with_capacity(capacity);
    let (kind, body, error) = match &resp.result {
        Err(e) => (fb::Response::NONE, None, Some(e.clone())),
        Ok(r) => {
            let (k, b) = encode_response_body(&mut fbb, r, records_after);
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
    (fbb, trailer)
}

fn encode_response_body<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    r: &Response,
    records_after: bool,
) -> RespBody {
    match data::encode_response(fbb, r, records_after) {
        Some(b) => b,
        None => match admin::encode_response(fbb, r) {
            Some(b) => b,
            None => match access::encode_response(fbb, r) {
                Some(b) => b,
                None => groups::encode_response(fbb, r)
                    .expect("every response kind belongs to one family"),
            },
        },
    }
}

/// Marks a frame body with a trailer: no flatbuffer starts so (its root
/// offset would point 4 GiB in).
const TRAILER_MARK: [u8; 4] = [0xff; 4];

/// A body `TRAILER_MARK, u32 LE flatbuffer length, flatbuffer, trailer`
/// splits into the flatbuffer and the trailer; any other body is all
/// flatbuffer.
fn split_trailer(frame: &Bytes) -> Result<(Bytes, Bytes), DecodeError> {
    if frame.get(..4) != Some(&TRAILER_MARK[..]) {
        return Ok((frame.clone(), Bytes::new()));
    }
    let len = frame
        .get(4..8)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| DecodeError::Invalid("a trailer mark without a length".into()))?;
    if len > frame.len() - 8 {
        return Err(DecodeError::Invalid(format!(
            "a flatbuffer of {len} bytes in a frame of {}",
            frame.len()
        )));
    }
    Ok((frame.slice(8..8 + len), frame.slice(8 + len..)))
}

/// Decodes one response frame body, of either version. Fetched records are
/// slices of `frame`.
pub fn decode_response(frame: &Bytes) -> Result<ResponseFrame, DecodeError> {
    let (head, mut trailer) = split_trailer(frame)?;
    let frame = &head;
    let env = flatbuffers::root_with_opts::<fb::ResponseEnvelope>(&verifier_opts(), frame)
        .map_err(|e| DecodeError::Invalid(e.to_string()))?;
    let correlation_id = env.correlation_id();
    if let Some(e) = err_of(env.error_code(), env.error_message()) {
        return Ok(ResponseFrame {
            correlation_id,
            result: Err(e),
        });
    }
    let resp = match env.response_type() {
        fb::Response::NONE => return Err(DecodeError::MissingRequest),
        other => {
            let decoded = match data::decode_response(&env, frame, &mut trailer)? {
                Some(r) => Some(r),
                None => match admin::decode_response(&env)? {
                    Some(r) => Some(r),
                    None => match access::decode_response(&env)? {
                        Some(r) => Some(r),
                        None => groups::decode_response(&env)?,
                    },
                },
            };
            decoded.ok_or(DecodeError::UnknownKind(other.0))?
        }
    };
    if !trailer.is_empty() {
        return Err(DecodeError::Invalid(format!(
            "{} trailer bytes no partition claims",
            trailer.len()
        )));
    }
    Ok(ResponseFrame {
        correlation_id,
        result: Ok(resp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_acl() -> crate::security::acl::AclFilter {
        crate::security::acl::AclFilter::any()
    }

    fn quota_change() -> crate::security::quota::QuotaChange {
        use crate::security::quota::*;
        QuotaChange {
            entity: Entity {
                user: Some(Name::Named("alice".into())),
                client_id: Some(Name::Default),
            },
            ops: vec![
                ("producer_byte_rate".into(), Some(1048576.0)),
                ("consumer_byte_rate".into(), None),
            ],
        }
    }

    fn acl_binding() -> crate::security::acl::AclBinding {
        use crate::security::acl::*;
        AclBinding {
            resource_type: ResourceType::Topic,
            name: "orders-".into(),
            pattern: PatternType::Prefixed,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Write,
            permission: Permission::Allow,
        }
    }
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
        // Version 2 (a fetch's records after the flatbuffer) reads back the
        // same, whatever the kind.
        let b = body(encode_response_for(&r, 2).to_bytes().to_vec());
        assert_eq!(decode_response(&b).unwrap(), r);
    }

    /// A version 2 fetch answer over `records`, one partition each.
    fn fetch_answer(records: Vec<Chain>) -> ResponseFrame {
        ResponseFrame {
            correlation_id: 9,
            result: Ok(Response::Fetch(vec![FetchTopicResult {
                name: "t".into(),
                partitions: records
                    .into_iter()
                    .enumerate()
                    .map(|(i, records)| FetchPartitionResult {
                        partition: i as u32,
                        error: None,
                        high_watermark: 100,
                        log_start_offset: 0,
                        records,
                        last_stable_offset: 90,
                        aborted: vec![(7, 80)],
                    })
                    .collect(),
            }])),
        }
    }

    #[test]
    fn a_version_2_fetch_answer_sends_the_records_as_they_are_held() {
        let a = Bytes::from(vec![1u8; 5000]);
        let (b1, b2) = (Bytes::from(vec![2u8; 16]), Bytes::from(vec![3u8; 700]));
        let mut two = Chain::from(b1.clone());
        two.push(b2.clone());
        let r = fetch_answer(vec![Chain::from(a.clone()), Chain::new(), two]);
        let out = encode_response_for(&r, 2);
        // Prefix and flatbuffer in one fragment, then the held fragments
        // themselves: the same memory, not copies.
        let f = out.fragments();
        assert_eq!(f.len(), 4);
        assert!(f[0].len() < 400, "the head is small: {}", f[0].len());
        for (sent, held) in f[1..].iter().zip([&a, &b1, &b2]) {
            assert_eq!(sent.as_ptr(), held.as_ptr());
        }
        // The length prefix covers the whole frame.
        let whole = out.to_bytes();
        let mut buf = bytes::BytesMut::from(&whole[..]);
        let frame = frame::next_frame(&mut buf, 1 << 20).unwrap().unwrap();
        assert!(buf.is_empty());
        let back = decode_response(&frame).unwrap();
        assert_eq!(back, r);
        // The client's records are slices of the frame, not copies.
        let Ok(Response::Fetch(t)) = &back.result else {
            panic!()
        };
        let got = &t[0].partitions[0].records.fragments()[0];
        assert!(frame.as_ptr_range().contains(&got.as_ptr()));
    }

    #[test]
    fn version_2_trailers_that_lie_are_refused() {
        let r = fetch_answer(vec![
            Chain::from(vec![7u8; 100]),
            Chain::from(vec![8u8; 50]),
        ]);
        let good = body(encode_response_for(&r, 2).to_bytes().to_vec()).to_vec();
        assert!(decode_response(&Bytes::from(good.clone())).is_ok());
        // A frame cut short: the flatbuffer no longer fits before the trailer.
        let short = Bytes::from(good[..good.len() - 51].to_vec());
        assert!(decode_response(&short).is_err());
        // Bytes after the trailer that nothing claims.
        let mut long = good.clone();
        long.extend_from_slice(&[0; 3]);
        let e = decode_response(&Bytes::from(long)).unwrap_err();
        assert!(e.to_string().contains("trailer"), "{e}");
        // The flatbuffer's length lies: past the frame, or into the trailer.
        for len in [u32::MAX, good.len() as u32 - 8, good.len() as u32 - 60] {
            let mut lie = good.clone();
            lie[4..8].copy_from_slice(&len.to_le_bytes());
            assert!(decode_response(&Bytes::from(lie)).is_err(), "{len}");
        }
        assert!(decode_response(&Bytes::from_static(&[0xff; 6])).is_err());
    }

    #[test]
    fn every_request_kind_round_trips() {
        let reqs = vec![
            Request::ApiVersions,
            Request::Metadata {
                topics: None,
                auto_create: false,
                include_internal: true,
            },
            Request::Metadata {
                topics: Some(vec!["a".into(), "b".into()]),
                auto_create: true,
                include_internal: false,
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
                read_committed: true,
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
            Request::AlterConfigs {
                topics: vec![
                    AlterConfigsTopic {
                        name: "t".into(),
                        ops: vec![
                            ConfigOp {
                                key: "retention.ms".into(),
                                op: ConfigOpKind::Set,
                                value: "1000".into(),
                            },
                            ConfigOp {
                                key: "segment.ms".into(),
                                op: ConfigOpKind::Delete,
                                value: String::new(),
                            },
                            ConfigOp {
                                key: "cleanup.policy".into(),
                                op: ConfigOpKind::Append,
                                value: "compact".into(),
                            },
                            ConfigOp {
                                key: "cleanup.policy".into(),
                                op: ConfigOpKind::Subtract,
                                value: "delete".into(),
                            },
                        ],
                        replace: false,
                    },
                    AlterConfigsTopic {
                        name: "u".into(),
                        ops: vec![],
                        replace: true,
                    },
                ],
                validate_only: true,
            },
            Request::CreatePartitions(vec![
                CreatePartitionsTopic {
                    name: "t".into(),
                    count: 12,
                },
                CreatePartitionsTopic {
                    name: "u".into(),
                    count: 1,
                },
            ]),
            Request::DeleteRecords(vec![DeleteRecordsTopic {
                name: "t".into(),
                partitions: vec![
                    DeleteRecordsPartition {
                        partition: 1,
                        offset: 42,
                    },
                    DeleteRecordsPartition {
                        partition: 2,
                        offset: -1,
                    },
                ],
            }]),
            Request::DescribeProducers(vec![TopicPartitions {
                topic: "t".into(),
                partitions: vec![0, 7],
            }]),
            Request::ListTransactions {
                states: vec!["Ongoing".into(), "PrepareCommit".into()],
                producer_ids: vec![1 << 40, 7],
            },
            Request::ListTransactions {
                states: vec![],
                producer_ids: vec![],
            },
            Request::DescribeTransactions(vec!["app-1".into(), "app-2".into()]),
            Request::DescribeUsers(None),
            Request::DescribeUsers(Some(vec!["alice".into(), "bob".into()])),
            Request::AlterUsers(vec![
                crate::security::users::UserChange::Delete {
                    user: "bob".into(),
                    mechanism: 1,
                },
                crate::security::users::UserChange::Upsert {
                    user: "alice".into(),
                    mechanism: 2,
                    iterations: 8192,
                    salt: vec![1, 2, 3],
                    salted_password: vec![9; 64],
                },
            ]),
            Request::DescribeAcls(any_acl()),
            Request::DescribeAcls(crate::security::acl::AclFilter {
                name: Some("orders".into()),
                principal: Some("User:alice".into()),
                pattern: crate::security::acl::PatternType::Match,
                ..any_acl()
            }),
            Request::AlterAcls {
                create: vec![acl_binding()],
                delete: vec![any_acl()],
            },
            Request::DescribeQuotas,
            Request::AlterQuotas {
                changes: vec![quota_change()],
                validate_only: true,
            },
            Request::SaslAuthenticate {
                mechanism: Some("SCRAM-SHA-512".into()),
                token: Bytes::from_static(b"n,,n=alice,r=abc"),
            },
            Request::SaslAuthenticate {
                mechanism: None,
                token: Bytes::from_static(b"c=biws,r=abcdef,p=cHJvb2Y="),
            },
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
                        id: [0x5a; 16],
                        name: "t".into(),
                        error: None,
                        partitions: vec![PartitionInfo {
                            partition: 0,
                            owner_shard: 0,
                            leader_node: 0,
                        }],
                    },
                    TopicInfo {
                        id: [0x5a; 16],
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
                    id: [0; 16],
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
                        cleaner: Some(CleanerProgress {
                            checkpoint: 7,
                            dirty_permille: 420,
                            runs: 2,
                            read_bytes: 1 << 33,
                            written_bytes: 5,
                            last_run_ms: 1_700_000_000_000,
                        }),
                    }],
                },
                TopicDescription {
                    id: [0; 16],
                    name: "nope".into(),
                    error: err.clone(),
                    configs: vec![],
                    partitions: vec![],
                },
            ])),
            Ok(Response::Produce(vec![ProduceTopicResult {
                name: "t".into(),
                partitions: vec![
                    ProducePartitionResult {
                        partition: 0,
                        error: None,
                        base_offset: 5,
                        high_watermark: 9,
                        invalid_records: vec![],
                    },
                    ProducePartitionResult {
                        partition: 1,
                        error: Some(WireError::new(ErrorCode::InvalidRecord, "keyless")),
                        base_offset: -1,
                        high_watermark: -1,
                        invalid_records: vec![0, 10, 20],
                    },
                ],
            }])),
            Ok(Response::Fetch(vec![FetchTopicResult {
                name: "t".into(),
                partitions: vec![FetchPartitionResult {
                    partition: 0,
                    error: None,
                    high_watermark: 3,
                    log_start_offset: 0,
                    records: Bytes::from_static(b"stored").into(),
                    last_stable_offset: 3,
                    aborted: vec![],
                }],
            }])),
            Ok(Response::ListOffsets(vec![ListOffsetsTopicResult {
                name: "t".into(),
                partitions: vec![ListOffsetsPartitionResult {
                    partition: 0,
                    error: err.clone(),
                    offset: -1,
                    timestamp: -1,
                }],
            }])),
            Ok(Response::AlterConfigs(vec![
                TopicResult {
                    name: "t".into(),
                    error: Some(WireError::new(ErrorCode::InvalidConfig, "retention.ms: x")),
                },
                TopicResult {
                    name: "u".into(),
                    error: None,
                },
            ])),
            Ok(Response::CreatePartitions(vec![TopicResult {
                name: "t".into(),
                error: Some(WireError::new(
                    ErrorCode::InvalidPartitions,
                    "never shrinks",
                )),
            }])),
            Ok(Response::DeleteRecords(vec![DeleteRecordsTopicResult {
                name: "t".into(),
                partitions: vec![
                    DeleteRecordsPartitionResult {
                        partition: 0,
                        error: None,
                        low_watermark: 42,
                    },
                    DeleteRecordsPartitionResult {
                        partition: 9,
                        error: err.clone(),
                        low_watermark: -1,
                    },
                ],
            }])),
            Ok(Response::DescribeProducers(vec![
                DescribeProducersTopicResult {
                    name: "t".into(),
                    partitions: vec![
                        DescribeProducersPartitionResult {
                            partition: 0,
                            error: None,
                            producers: vec![ActiveProducer {
                                producer_id: 1 << 40,
                                producer_epoch: 3,
                                last_sequence: 99,
                                last_timestamp: 1_700_000_000_000,
                                current_txn_start_offset: -1,
                            }],
                        },
                        DescribeProducersPartitionResult {
                            partition: 9,
                            error: err.clone(),
                            producers: vec![],
                        },
                    ],
                },
            ])),
            Ok(Response::ListTransactions(vec![TransactionListing {
                transactional_id: "app-1".into(),
                producer_id: 1 << 40,
                state: "Ongoing".into(),
            }])),
            Ok(Response::DescribeTransactions(vec![
                TransactionDescription {
                    transactional_id: "app-1".into(),
                    error: None,
                    state: "Ongoing".into(),
                    producer_id: 1 << 40,
                    producer_epoch: 3,
                    timeout_ms: 60_000,
                    start_time_ms: 1_700_000_000_000,
                    topics: vec![TopicPartitions {
                        topic: "t".into(),
                        partitions: vec![0, 2],
                    }],
                },
                TransactionDescription {
                    transactional_id: "nobody".into(),
                    error: err,
                    state: String::new(),
                    producer_id: -1,
                    producer_epoch: -1,
                    timeout_ms: 0,
                    start_time_ms: -1,
                    topics: vec![],
                },
            ])),
            Ok(Response::DescribeUsers(vec![
                UserDescription {
                    name: "alice".into(),
                    error: None,
                    credentials: vec![(1, 4096), (2, 8192)],
                },
                UserDescription {
                    name: "nobody".into(),
                    error: Some(WireError::new(ErrorCode::ResourceNotFound, "no user")),
                    credentials: vec![],
                },
            ])),
            Ok(Response::AlterUsers(vec![
                UserResult {
                    name: "alice".into(),
                    error: None,
                },
                UserResult {
                    name: "carol".into(),
                    error: Some(WireError::new(
                        ErrorCode::UnacceptableCredential,
                        "iterations",
                    )),
                },
            ])),
            Ok(Response::DescribeAcls(vec![acl_binding(), acl_binding()])),
            Ok(Response::AlterAcls {
                created: vec![
                    None,
                    Some(WireError::new(ErrorCode::InvalidRequest, "pattern")),
                ],
                deleted: vec![vec![acl_binding()], vec![]],
            }),
            Ok(Response::DescribeQuotas(vec![(
                quota_change().entity,
                vec![("producer_byte_rate".into(), 1048576.0)],
            )])),
            Ok(Response::AlterQuotas(vec![
                None,
                Some(WireError::new(ErrorCode::InvalidRequest, "unknown key")),
            ])),
            Ok(Response::SaslAuthenticate {
                token: Bytes::from_static(b"r=abcdef,s=c2FsdA==,i=4096"),
                done: false,
            }),
            Ok(Response::SaslAuthenticate {
                token: Bytes::new(),
                done: true,
            }),
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
                auto_create: false,
                include_internal: false,
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

        /// Version 2 fetch answers with bytes changed: every lie about the
        /// trailer is an error, never a panic or a read out of the frame.
        #[test]
        fn fuzz_decoders_never_panic_on_mutated_v2_fetch_answers(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let r = fetch_answer(vec![Chain::from(vec![7u8; 100]), Chain::new(), Chain::from(vec![8u8; 50])]);
            let mut b = body(encode_response_for(&r, 2).to_bytes().to_vec()).to_vec();
            for (at, val) in edits {
                let i = at % b.len();
                b[i] = val;
            }
            let frame = Bytes::from(b);
            let (decoded, peak) = crate::alloc_count::peak_bytes(|| decode_response(&frame));
            prop_assert!(peak <= crate::alloc_count::decode_bound(frame.len()), "{} bytes: {}", frame.len(), peak);
            if let Ok(ResponseFrame { result: Ok(Response::Fetch(t)), .. }) = decoded {
                let n: usize = t.iter().flat_map(|t| &t.partitions).map(|p| p.records.len()).sum();
                prop_assert!(n <= frame.len());
            }
        }

        /// The operators' transaction answers (what `shardlog txn` decodes
        /// from the network) with bytes changed: errors, never a panic, and
        /// memory bounded by the frame.
        #[test]
        fn fuzz_decoders_never_panic_on_mutated_transaction_answers(
            kind in 0usize..8,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let result = if kind == 7 {
                // Every SASL client reads this one.
                Ok(Response::SaslAuthenticate { token: Bytes::from_static(b"r=abc,s=c2FsdA==,i=4096"), done: false })
            } else if kind == 0 {
                Ok(Response::ListTransactions(vec![TransactionListing {
                    transactional_id: "app".into(), producer_id: 7, state: "Ongoing".into() }]))
            } else if kind == 2 {
                // `shardlog user list` decodes this one.
                Ok(Response::DescribeUsers(vec![UserDescription {
                    name: "alice".into(), error: None, credentials: vec![(1, 4096), (2, 8192)] }]))
            } else if kind == 3 {
                Ok(Response::AlterUsers(vec![UserResult { name: "alice".into(), error: None }]))
            } else if kind == 4 {
                // `shardlog acl list` decodes this one.
                Ok(Response::DescribeAcls(vec![acl_binding()]))
            } else if kind == 6 {
                // `shardlog quota list` decodes this one.
                Ok(Response::DescribeQuotas(vec![(quota_change().entity, vec![("producer_byte_rate".into(), 1e6)])]))
            } else if kind == 5 {
                Ok(Response::AlterAcls { created: vec![None], deleted: vec![vec![acl_binding()]] })
            } else {
                Ok(Response::DescribeTransactions(vec![TransactionDescription {
                    transactional_id: "app".into(), error: None, state: "Ongoing".into(),
                    producer_id: 7, producer_epoch: 1, timeout_ms: 1000, start_time_ms: 5,
                    topics: vec![TopicPartitions { topic: "t".into(), partitions: vec![0, 1] }] }]))
            };
            let r = ResponseFrame { correlation_id: 3, result };
            let mut b = body(encode_response_for(&r, 1).to_bytes().to_vec()).to_vec();
            for (at, val) in edits {
                let i = at % b.len();
                b[i] = val;
            }
            let frame = Bytes::from(b);
            let (_, peak) = crate::alloc_count::peak_bytes(|| decode_response(&frame).is_ok());
            prop_assert!(peak <= crate::alloc_count::decode_bound(frame.len()), "{} bytes: {}", frame.len(), peak);
        }

        #[test]
        fn fuzz_decoders_never_panic_on_mutated_requests(
            kind in 0usize..12, pos in 0usize..4096, val in any::<u8>()
        ) {
            // One request of each shape with nested tables: Fetch, and the
            // admin requests that carry per-partition and per-topic lists.
            let request = match kind {
                0 => Request::Fetch(FetchRequest { max_wait_ms: 0, min_bytes: 0, max_bytes: 10, read_committed: true,
                    topics: vec![FetchTopic { name: "topic".into(),
                        partitions: vec![FetchPartition { partition: 0, fetch_offset: 0, max_bytes: 5 }] }] }),
                1 => Request::DeleteRecords(vec![DeleteRecordsTopic { name: "topic".into(),
                    partitions: vec![DeleteRecordsPartition { partition: 3, offset: 99 }] }]),
                2 => Request::CreatePartitions(vec![CreatePartitionsTopic { name: "topic".into(), count: 8 }]),
                3 => Request::AlterConfigs { topics: vec![AlterConfigsTopic { name: "topic".into(),
                    ops: vec![ConfigOp { key: "retention.ms".into(), op: ConfigOpKind::Set, value: "1".into() }],
                    replace: false }], validate_only: false },
                4 => Request::DescribeProducers(vec![TopicPartitions { topic: "topic".into(), partitions: vec![0, 3] }]),
                5 => Request::ListTransactions { states: vec!["Ongoing".into()], producer_ids: vec![7, 9] },
                6 => Request::DescribeTransactions(vec!["a".into(), "b".into()]),
                9 => Request::AlterQuotas { changes: vec![quota_change()], validate_only: false },
                11 => Request::SaslAuthenticate { mechanism: Some("PLAIN".into()), token: Bytes::from_static(b"\0alice\0pw") },
                8 => Request::AlterAcls { create: vec![acl_binding()], delete: vec![any_acl()] },
                7 => Request::AlterUsers(vec![crate::security::users::UserChange::Upsert {
                    user: "alice".into(), mechanism: 2, iterations: 8192,
                    salt: vec![1, 2, 3], salted_password: vec![9; 64] }]),
                _ => Request::Metadata { topics: Some(vec!["a".into(), "b".into()]), auto_create: true, include_internal: false },
            };
            let r = RequestFrame { version: 1, correlation_id: 1, client_id: Some("c".into()), request };
            let mut b = body(encode_request(&r)).to_vec();
            let i = pos % b.len();
            b[i] = val;
            let b = Bytes::from(b);
            let (_, peak) = crate::alloc_count::peak_bytes(|| decode_request(&b).is_ok());
            prop_assert!(peak <= crate::alloc_count::decode_bound(b.len()), "{} bytes: {}", b.len(), peak);
        }
    }
}
