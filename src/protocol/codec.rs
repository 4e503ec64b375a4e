//! Typed messages <-> flatbuffers. Pure functions over bytes.
//!
//! Decoding verifies the flatbuffer (bounded depth and table count) before
//! reading it, so hostile bytes yield `DecodeError`, never a panic. Record
//! batches come out as `Bytes::slice_ref` of the frame: no copy.

pub use super::fb::DecodeError;
use super::fb::{err_code, err_of, opt_str, RespBody};
use super::generated as fb;
use super::{admin, data, groups, *};
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
            None => groups::encode_request(&mut fbb, r)
                .expect("every request kind belongs to one family"),
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
                    None => groups::decode_request(&env).map_err(bad)?,
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

fn encode_response_body<'a>(fbb: &mut FlatBufferBuilder<'a>, r: &Response) -> RespBody {
    match data::encode_response(fbb, r) {
        Some(b) => b,
        None => match admin::encode_response(fbb, r) {
            Some(b) => b,
            None => {
                groups::encode_response(fbb, r).expect("every response kind belongs to one family")
            }
        },
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
    let resp = match env.response_type() {
        fb::Response::NONE => return Err(DecodeError::MissingRequest),
        other => {
            let decoded = match data::decode_response(&env, frame)? {
                Some(r) => Some(r),
                None => match admin::decode_response(&env)? {
                    Some(r) => Some(r),
                    None => groups::decode_response(&env)?,
                },
            };
            decoded.ok_or(DecodeError::UnknownKind(other.0))?
        }
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
                    records: Bytes::from_static(b"stored").into(),
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
