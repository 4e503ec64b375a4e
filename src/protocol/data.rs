//! The data-path messages <-> flatbuffers: Produce, Fetch, ListOffsets,
//! DeleteRecords and DescribeProducers (each partition's part answered by
//! its owner).
//!
//! Record batches pass as they are: produce and fetch records decode as
//! `Bytes::slice_ref` of the frame (no copy). Produce records encode as one
//! byte vector; a version 2 fetch answer leaves its records out of the
//! flatbuffer (`records_bytes` says how long each is) and they follow it
//! in the frame, as the broker holds them (see `codec::encode_response_for`).
//!
//! Must never: panic on a verified buffer whose optional fields are absent.

use super::fb::{err_code, err_of, name_of, opt_str, topic_tables, DecodeError, ReqBody, RespBody};
use super::generated as fb;
use super::*;
use crate::chain::Chain;
use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, WIPOffset};

fn records<'a>(fbb: &mut FlatBufferBuilder<'a>, data: &[u8]) -> WIPOffset<fb::RecordBatches<'a>> {
    let v = fbb.create_vector(data);
    fb::RecordBatches::create(fbb, &fb::RecordBatchesArgs { data: Some(v) })
}

/// The bytes of a `RecordBatches` table (empty when absent): a slice of
/// the verified frame.
fn bytes_of<'a>(r: Option<fb::RecordBatches<'a>>) -> &'a [u8] {
    r.and_then(|r| r.data()).map(|d| d.bytes()).unwrap_or(&[])
}

/// Encodes a request body of this family; `None` for other kinds.
pub(super) fn encode_request(fbb: &mut FlatBufferBuilder<'_>, req: &Request) -> Option<ReqBody> {
    Some(match req {
        Request::Produce(p) => {
            let topics: Vec<_> = p
                .topics
                .iter()
                .map(|t| {
                    let parts: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|pp| {
                            let r = records(fbb, &pp.records);
                            fb::ProducePartition::create(
                                fbb,
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
                        fbb,
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
                    fbb,
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
                                fbb,
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
                        fbb,
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
                    fbb,
                    &fb::FetchRequestArgs {
                        max_wait_ms: f.max_wait_ms,
                        min_bytes: f.min_bytes,
                        max_bytes: f.max_bytes,
                        topics: Some(topics),
                        read_committed: f.read_committed,
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
                                fbb,
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
                        fbb,
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
                    fbb,
                    &fb::ListOffsetsRequestArgs {
                        topics: Some(topics),
                    },
                )
                .as_union_value(),
            )
        }
        Request::DeleteRecords(topics) => {
            let topics: Vec<_> = topics
                .iter()
                .map(|t| {
                    let parts: Vec<_> = t
                        .partitions
                        .iter()
                        .map(|p| {
                            fb::DeleteRecordsPartition::create(
                                fbb,
                                &fb::DeleteRecordsPartitionArgs {
                                    partition: p.partition,
                                    offset: p.offset,
                                },
                            )
                        })
                        .collect();
                    let parts = fbb.create_vector(&parts);
                    let name = fbb.create_string(&t.name);
                    fb::DeleteRecordsTopic::create(
                        fbb,
                        &fb::DeleteRecordsTopicArgs {
                            name: Some(name),
                            partitions: Some(parts),
                        },
                    )
                })
                .collect();
            let topics = fbb.create_vector(&topics);
            (
                fb::Request::DeleteRecordsRequest,
                fb::DeleteRecordsRequest::create(
                    fbb,
                    &fb::DeleteRecordsRequestArgs {
                        topics: Some(topics),
                    },
                )
                .as_union_value(),
            )
        }
        Request::DescribeProducers(topics) => {
            let topics: Vec<_> = topics
                .iter()
                .map(|t| {
                    let parts = fbb.create_vector(&t.partitions);
                    let name = fbb.create_string(&t.topic);
                    fb::DescribeProducersTopic::create(
                        fbb,
                        &fb::DescribeProducersTopicArgs {
                            name: Some(name),
                            partitions: Some(parts),
                        },
                    )
                })
                .collect();
            let topics = fbb.create_vector(&topics);
            (
                fb::Request::DescribeProducersRequest,
                fb::DescribeProducersRequest::create(
                    fbb,
                    &fb::DescribeProducersRequestArgs {
                        topics: Some(topics),
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
    frame: &Bytes,
) -> Result<Option<Request>, DecodeError> {
    let missing = DecodeError::MissingRequest;
    Ok(Some(match env.request_type() {
        fb::Request::ProduceRequest => {
            let p = env.request_as_produce_request().ok_or(missing)?;
            let acks = match p.acks() {
                fb::Acks::None => Acks::None,
                fb::Acks::Leader => Acks::Leader,
                _ => Acks::Durable,
            };
            let mut topics = Vec::new();
            for t in p.topics().iter().flatten() {
                let mut partitions = Vec::new();
                for pp in t.partitions().iter().flatten() {
                    let data = bytes_of(pp.records());
                    // hot path: a slice of the frame, not a copy
                    let records = if data.is_empty() {
                        Bytes::new()
                    } else {
                        // slice_ref panics on a foreign slice; the verifier
                        // has bounded `data` inside the frame.
                        debug_assert!(frame.as_ptr_range().contains(&data.as_ptr()));
                        frame.slice_ref(data)
                    };
                    partitions.push(ProducePartition {
                        partition: pp.partition(),
                        records,
                    });
                }
                topics.push(ProduceTopic {
                    name: name_of(t.name())?,
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
            let f = env.request_as_fetch_request().ok_or(missing)?;
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
                    name: name_of(t.name())?,
                    partitions,
                });
            }
            Request::Fetch(FetchRequest {
                max_wait_ms: f.max_wait_ms(),
                min_bytes: f.min_bytes(),
                max_bytes: f.max_bytes(),
                topics,
                read_committed: f.read_committed(),
            })
        }
        fb::Request::ListOffsetsRequest => {
            let l = env.request_as_list_offsets_request().ok_or(missing)?;
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
                    name: name_of(t.name())?,
                    partitions,
                });
            }
            Request::ListOffsets(topics)
        }
        fb::Request::DeleteRecordsRequest => {
            let d = env.request_as_delete_records_request().ok_or(missing)?;
            let mut topics = Vec::new();
            for t in d.topics().iter().flatten() {
                let partitions = t
                    .partitions()
                    .iter()
                    .flatten()
                    .map(|p| DeleteRecordsPartition {
                        partition: p.partition(),
                        offset: p.offset(),
                    })
                    .collect();
                topics.push(DeleteRecordsTopic {
                    name: name_of(t.name())?,
                    partitions,
                });
            }
            Request::DeleteRecords(topics)
        }
        fb::Request::DescribeProducersRequest => {
            let d = env.request_as_describe_producers_request().ok_or(missing)?;
            let mut topics = Vec::new();
            for t in d.topics().iter().flatten() {
                topics.push(TopicPartitions {
                    topic: name_of(t.name())?,
                    partitions: t.partitions().iter().flatten().collect(),
                });
            }
            Request::DescribeProducers(topics)
        }
        _ => return Ok(None),
    }))
}

/// Encodes a response body of this family; `None` for other kinds.
/// With `records_after`, a fetch answer's records are left for the frame's
/// trailer.
pub(super) fn encode_response(
    fbb: &mut FlatBufferBuilder<'_>,
    resp: &Response,
    records_after: bool,
) -> Option<RespBody> {
    Some(match resp {
        Response::Produce(topics) => {
            let ts = topic_tables(
                fbb,
                topics,
                |t| (&t.name, &t.partitions),
                |fbb, p| {
                    let msg = opt_str(fbb, &p.error);
                    let invalid = (!p.invalid_records.is_empty())
                        .then(|| fbb.create_vector(&p.invalid_records));
                    fb::ProducePartitionResult::create(
                        fbb,
                        &fb::ProducePartitionResultArgs {
                            partition: p.partition,
                            error_code: err_code(&p.error),
                            error_message: msg,
                            base_offset: p.base_offset,
                            high_watermark: p.high_watermark,
                            invalid_records: invalid,
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
                    // Version 1: the stored bytes go into the builder as they
                    // are (a copy, no re-encoding); version 2: after it.
                    let r = (!records_after).then(|| records(fbb, &p.records.to_bytes()));
                    let msg = opt_str(fbb, &p.error);
                    let aborted: Vec<fb::AbortedTxn> = p
                        .aborted
                        .iter()
                        .map(|&(pid, first)| fb::AbortedTxn::new(pid, first))
                        .collect();
                    let aborted = (!aborted.is_empty()).then(|| fbb.create_vector(&aborted));
                    fb::FetchPartitionResult::create(
                        fbb,
                        &fb::FetchPartitionResultArgs {
                            partition: p.partition,
                            error_code: err_code(&p.error),
                            error_message: msg,
                            high_watermark: p.high_watermark,
                            log_start_offset: p.log_start_offset,
                            records: r,
                            records_bytes: if records_after {
                                u32::try_from(p.records.len()).expect("records under 4 GiB")
                            } else {
                                0
                            },
                            last_stable_offset: p.last_stable_offset,
                            aborted,
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
        Response::DeleteRecords(topics) => {
            let ts = topic_tables(
                fbb,
                topics,
                |t| (&t.name, &t.partitions),
                |fbb, p| {
                    let msg = opt_str(fbb, &p.error);
                    fb::DeleteRecordsPartitionResult::create(
                        fbb,
                        &fb::DeleteRecordsPartitionResultArgs {
                            partition: p.partition,
                            error_code: err_code(&p.error),
                            error_message: msg,
                            low_watermark: p.low_watermark,
                        },
                    )
                },
                |fbb, name, ps| {
                    fb::DeleteRecordsTopicResult::create(
                        fbb,
                        &fb::DeleteRecordsTopicResultArgs {
                            name: Some(name),
                            partitions: Some(ps),
                        },
                    )
                },
            );
            (
                fb::Response::DeleteRecordsResponse,
                fb::DeleteRecordsResponse::create(
                    fbb,
                    &fb::DeleteRecordsResponseArgs { topics: Some(ts) },
                )
                .as_union_value(),
            )
        }
        Response::DescribeProducers(topics) => {
            let ts = topic_tables(
                fbb,
                topics,
                |t| (&t.name, &t.partitions),
                |fbb, p| {
                    let msg = opt_str(fbb, &p.error);
                    let producers: Vec<_> = p
                        .producers
                        .iter()
                        .map(|a| {
                            fb::ActiveProducer::create(
                                fbb,
                                &fb::ActiveProducerArgs {
                                    producer_id: a.producer_id,
                                    producer_epoch: a.producer_epoch,
                                    last_sequence: a.last_sequence,
                                    last_timestamp: a.last_timestamp,
                                    current_txn_start_offset: a.current_txn_start_offset,
                                },
                            )
                        })
                        .collect();
                    let producers = fbb.create_vector(&producers);
                    fb::DescribeProducersPartitionResult::create(
                        fbb,
                        &fb::DescribeProducersPartitionResultArgs {
                            partition: p.partition,
                            error_code: err_code(&p.error),
                            error_message: msg,
                            producers: Some(producers),
                        },
                    )
                },
                |fbb, name, ps| {
                    fb::DescribeProducersTopicResult::create(
                        fbb,
                        &fb::DescribeProducersTopicResultArgs {
                            name: Some(name),
                            partitions: Some(ps),
                        },
                    )
                },
            );
            (
                fb::Response::DescribeProducersResponse,
                fb::DescribeProducersResponse::create(
                    fbb,
                    &fb::DescribeProducersResponseArgs { topics: Some(ts) },
                )
                .as_union_value(),
            )
        }
        _ => return None,
    })
}

/// Decodes a response of this family; `Ok(None)` for other kinds.
/// A version 2 fetch answer's records come off the front of `trailer` (the
/// bytes after the flatbuffer; `frame` is the flatbuffer).
pub(super) fn decode_response(
    env: &fb::ResponseEnvelope<'_>,
    frame: &Bytes,
    trailer: &mut Bytes,
) -> Result<Option<Response>, DecodeError> {
    let missing = DecodeError::MissingRequest;
    Ok(Some(match env.response_type() {
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
                            invalid_records: p
                                .invalid_records()
                                .map(|v| v.iter().collect())
                                .unwrap_or_default(),
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
                let mut partitions = Vec::new();
                for p in t.partitions().iter().flatten() {
                    let inside = bytes_of(p.records());
                    let after = p.records_bytes() as usize;
                    let records = match (inside.is_empty(), after) {
                        (true, 0) => Chain::new(),
                        (false, 0) => Chain::from(frame.slice_ref(inside)),
                        (true, n) if n <= trailer.len() => Chain::from(trailer.split_to(n)),
                        (true, n) => {
                            return Err(DecodeError::Invalid(format!(
                                "a partition's {n} record bytes overrun the {} left in the frame",
                                trailer.len()
                            )))
                        }
                        (false, _) => {
                            return Err(DecodeError::Invalid(
                                "a partition has records both inside and after the answer".into(),
                            ))
                        }
                    };
                    partitions.push(FetchPartitionResult {
                        partition: p.partition(),
                        error: err_of(p.error_code(), p.error_message()),
                        high_watermark: p.high_watermark(),
                        log_start_offset: p.log_start_offset(),
                        records,
                        last_stable_offset: p.last_stable_offset(),
                        aborted: p
                            .aborted()
                            .iter()
                            .flatten()
                            .map(|a| (a.producer_id(), a.first_offset()))
                            .collect(),
                    });
                }
                ts.push(FetchTopicResult {
                    name: name_of(t.name())?,
                    partitions,
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
        fb::Response::DeleteRecordsResponse => {
            let d = env.response_as_delete_records_response().ok_or(missing)?;
            let mut ts = Vec::new();
            for t in d.topics().iter().flatten() {
                ts.push(DeleteRecordsTopicResult {
                    name: name_of(t.name())?,
                    partitions: t
                        .partitions()
                        .iter()
                        .flatten()
                        .map(|p| DeleteRecordsPartitionResult {
                            partition: p.partition(),
                            error: err_of(p.error_code(), p.error_message()),
                            low_watermark: p.low_watermark(),
                        })
                        .collect(),
                });
            }
            Response::DeleteRecords(ts)
        }
        fb::Response::DescribeProducersResponse => {
            let d = env
                .response_as_describe_producers_response()
                .ok_or(missing)?;
            let mut ts = Vec::new();
            for t in d.topics().iter().flatten() {
                ts.push(DescribeProducersTopicResult {
                    name: name_of(t.name())?,
                    partitions: t
                        .partitions()
                        .iter()
                        .flatten()
                        .map(|p| DescribeProducersPartitionResult {
                            partition: p.partition(),
                            error: err_of(p.error_code(), p.error_message()),
                            producers: p
                                .producers()
                                .iter()
                                .flatten()
                                .map(|a| ActiveProducer {
                                    producer_id: a.producer_id(),
                                    producer_epoch: a.producer_epoch(),
                                    last_sequence: a.last_sequence(),
                                    last_timestamp: a.last_timestamp(),
                                    current_txn_start_offset: a.current_txn_start_offset(),
                                })
                                .collect(),
                        })
                        .collect(),
                });
            }
            Response::DescribeProducers(ts)
        }
        _ => return Ok(None),
    }))
}
