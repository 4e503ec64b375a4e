//! The data path's APIs over Kafka: Produce, Fetch, ListOffsets,
//! DeleteRecords, OffsetForLeaderEpoch and DescribeProducers, decoded into
//! native requests and answered from native responses.
//!
//! Owns: their translation both ways (record batches pass as `Bytes`
//! slices of the request frame; fetched batches as stored).
//!
//! Must never: decode or re-encode a record batch, or do I/O.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse as ProducersPartition, ProducerState, TopicResponse as ProducersTopic,
};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    ApiKey, DeleteRecordsRequest, DeleteRecordsResponse, DescribeProducersRequest,
    DescribeProducersResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProduceRequest,
    ProduceResponse, ProducerId,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

use super::wire::{
    answer_id, encode_frame, name_of, non_negative, partition_u32, topic_name, unknown_id_name,
    Refused, Shape, TopicIds, Work,
};
use crate::batch::BatchHeader;
use crate::chain::Chain;
use crate::errors::kafka_code;
use crate::group::TopicPartition;
use crate::protocol::{self, Acks, ListOffsetsPartition, ListOffsetsTopic, Request, RequestFrame};
use crate::txn_host::TxnCall;

/// Produce: what the request asks for.
pub(super) fn decode_produce(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = ProduceRequest::decode(body, version)?;
    let implicit_add = if version >= 12 {
        match transactional_writer(&r) {
            Ok(add) => add,
            Err(error) => {
                return Ok(Work::Refuse {
                    shape: produce_shape(&r),
                    error,
                })
            }
        }
    } else {
        None
    };
    let shape = produce_shape(&r);
    let acks = match r.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::Durable),
        _ => None,
    };
    Ok(match acks {
        None => Work::Refuse {
            shape,
            error: ResponseError::InvalidRequiredAcks.code(),
        },
        Some(acks) => Work::Native {
            frame: native(Request::Produce(protocol::ProduceRequest {
                acks,
                timeout_ms: non_negative(r.timeout_ms),
                topics: r
                    .topic_data
                    .into_iter()
                    .map(|t| protocol::ProduceTopic {
                        name: name_of(&t.name),
                        partitions: t
                            .partition_data
                            .into_iter()
                            .map(|p| protocol::ProducePartition {
                                partition: partition_u32(p.index),
                                // A slice of the frame: not copied.
                                records: p.records.unwrap_or_default(),
                            })
                            .collect(),
                    })
                    .collect(),
            })),
            shape,
            respond: acks != Acks::None,
            refused: vec![],
            describe_configs: vec![],
        },
    })
    .map(|work| match implicit_add {
        Some(add) => Work::TxnAdd {
            add,
            then: Box::new(work),
        },
        None => work,
    })
}

fn produce_shape(r: &ProduceRequest) -> Shape {
    r.topic_data
        .iter()
        .map(|t| {
            (
                name_of(&t.name),
                t.partition_data.iter().map(|p| p.index).collect(),
            )
        })
        .collect()
}

/// Produce v12+ from a transactional producer (KIP-890 part 2): the add
/// of every partition whose records are transactional, for the producer
/// id and epoch of their batches (read from the first batch's header;
/// the batch itself is validated where it is appended). Err: Kafka's code
/// for a request that mixes producers.
fn transactional_writer(r: &ProduceRequest) -> Result<Option<TxnCall>, i16> {
    let Some(id) = r.transactional_id.as_ref().filter(|t| !t.0.is_empty()) else {
        return Ok(None);
    };
    let mut writer: Option<(i64, i16)> = None;
    let mut partitions = Vec::new();
    for t in &r.topic_data {
        for p in &t.partition_data {
            let Some(h) = p
                .records
                .as_deref()
                .and_then(|b| BatchHeader::parse(b).ok())
                .filter(|h| h.is_transactional() && h.producer_id >= 0)
            else {
                continue;
            };
            match writer {
                None => writer = Some((h.producer_id, h.producer_epoch)),
                Some(w) if w == (h.producer_id, h.producer_epoch) => {}
                Some(_) => return Err(ResponseError::InvalidProducerIdMapping.code()),
            }
            partitions.push(TopicPartition::new(
                name_of(&t.name).as_str(),
                partition_u32(p.index),
            ));
        }
    }
    Ok(writer.map(|(producer_id, epoch)| TxnCall::Add {
        id: id.0.as_str().to_owned(),
        producer_id,
        epoch,
        partitions,
        txn_version: 2,
    }))
}

/// Fetch: what the request asks for (v4+: with its isolation level, 1
/// for read_committed). From v13 topics are named by id: an
/// id no topic has is refused (UNKNOWN_TOPIC_ID) under a stand-in name
/// (`wire::unknown_id_name`) and answered beside the fetched topics.
pub(super) fn decode_fetch(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
    ids: &dyn TopicIds,
) -> anyhow::Result<Work> {
    let r = FetchRequest::decode(body, version)?;
    let read_committed = r.isolation_level == 1;
    let mut refused = Refused::new();
    let names: Vec<Option<String>> = r
        .topics
        .iter()
        .map(|t| {
            if version < 13 {
                return Some(name_of(&t.topic));
            }
            let id = *t.topic_id.as_bytes();
            let name = ids.name_of_id(&id);
            if name.is_none() {
                refused.push((
                    unknown_id_name(&id),
                    ResponseError::UnknownTopicId.code(),
                    format!("no topic has id {}", uuid::Uuid::from_bytes(id)),
                ));
            }
            name
        })
        .collect();
    let shape = r
        .topics
        .iter()
        .zip(&names)
        .map(|(t, n)| {
            (
                n.clone()
                    .unwrap_or_else(|| unknown_id_name(t.topic_id.as_bytes())),
                t.partitions.iter().map(|p| p.partition).collect(),
            )
        })
        .collect();
    Ok(Work::Native {
        frame: native(Request::Fetch(protocol::FetchRequest {
            max_wait_ms: non_negative(r.max_wait_ms),
            min_bytes: non_negative(r.min_bytes),
            max_bytes: non_negative(r.max_bytes),
            topics: r
                .topics
                .into_iter()
                .zip(names)
                .filter_map(|(t, name)| {
                    Some(protocol::FetchTopic {
                        name: name?,
                        partitions: t
                            .partitions
                            .into_iter()
                            .map(|p| protocol::FetchPartition {
                                partition: partition_u32(p.partition),
                                fetch_offset: p.fetch_offset,
                                max_bytes: non_negative(p.partition_max_bytes),
                            })
                            .collect(),
                    })
                })
                .collect(),
            read_committed,
        })),
        shape,
        respond: true,
        refused,
        describe_configs: vec![],
    })
}

/// ListOffsets: what the request asks for.
pub(super) fn decode_list_offsets(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = ListOffsetsRequest::decode(body, version)?;
    let shape = r
        .topics
        .iter()
        .map(|t| {
            (
                name_of(&t.name),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let topics = r.topics.into_iter().map(|t| {
        let ps = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.timestamp));
        (name_of(&t.name), ps.collect())
    });
    Ok(Work::native(native(list_offsets(topics)), shape))
}

/// A native ListOffsets of (topic, [(partition index, timestamp)]).
fn list_offsets(topics: impl Iterator<Item = (String, Vec<(i32, i64)>)>) -> Request {
    Request::ListOffsets(
        topics
            .map(|(name, ps)| ListOffsetsTopic {
                name,
                partitions: ps
                    .into_iter()
                    .map(|(p, timestamp)| ListOffsetsPartition {
                        partition: partition_u32(p),
                        timestamp,
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// The Produce answer, from the native one.
/// Produce's answer; `throttle_ms`: the client's quota throttle (KIP-219).
pub(super) fn produce_response(
    topics: Vec<protocol::ProduceTopicResult>,
    throttle_ms: i32,
) -> ProduceResponse {
    let mut r = ProduceResponse::default();
    r.throttle_time_ms = throttle_ms;
    r.responses = topics
        .into_iter()
        .map(|t| {
            let mut tr = TopicProduceResponse::default();
            tr.name = topic_name(&t.name);
            tr.partition_responses = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pr = PartitionProduceResponse::default();
                    pr.index = p.partition as i32;
                    pr.error_code = kafka_code(p.error.as_ref());
                    pr.base_offset = p.base_offset;
                    if let Some(e) = &p.error {
                        pr.error_message = Some(StrBytes::from_string(e.message.clone()));
                    }
                    // KIP-467 (v8+): which records were refused. A client
                    // fails those with INVALID_RECORD and the rest of the
                    // batch with its own "invalid different record" error,
                    // instead of blaming every record.
                    pr.record_errors = p
                        .invalid_records
                        .iter()
                        .map(|&i| {
                            let mut e = BatchIndexAndErrorMessage::default();
                            e.batch_index = i as i32;
                            e.batch_index_error_message = Some(StrBytes::from_static_str(
                                "Compacted topic cannot accept message without key.",
                            ));
                            e
                        })
                        .collect();
                    pr
                })
                .collect();
            tr
        })
        .collect();
    r
}

/// The Fetch answer, from the native one.
pub(super) fn fetch_response(
    topics: Vec<protocol::FetchTopicResult>,
    ids: &dyn TopicIds,
) -> FetchResponse {
    let mut r = FetchResponse::default();
    r.responses = topics
        .into_iter()
        .map(|t| {
            let mut tr = FetchableTopicResponse::default();
            tr.topic_id = uuid::Uuid::from_bytes(answer_id(ids, &t.name));
            tr.topic = topic_name(&t.name);
            tr.partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pd = PartitionData::default();
                    pd.partition_index = p.partition as i32;
                    pd.error_code = kafka_code(p.error.as_ref());
                    pd.high_watermark = p.high_watermark;
                    pd.last_stable_offset = p.last_stable_offset;
                    pd.log_start_offset = p.log_start_offset;
                    pd.aborted_transactions = Some(
                        p.aborted
                            .iter()
                            .map(|&(pid, first)| {
                                let mut a = AbortedTransaction::default();
                                a.producer_id = ProducerId(pid);
                                a.first_offset = first;
                                a
                            })
                            .collect(),
                    );
                    // Whole batches as stored (the crate copies them into
                    // the response buffer: versions `fetch_frame` does not
                    // assemble itself, and its tests).
                    pd.records = Some(p.records.to_bytes());
                    pd
                })
                .collect();
            tr
        })
        .collect();
    r
}

/// Fetch versions whose answer `fetch_frame` assembles around the records:
/// 4-11 with fixed-width fields and classic arrays and strings, 12-17
/// flexible (compact arrays, strings and bytes, empty tagged fields; topic
/// ids from 13); each partition's records its last field but the tags.
const ASSEMBLED_FETCH_VERSIONS: std::ops::RangeInclusive<i16> = 4..=17;

/// Kafka's unsigned varint (the lengths of flexible versions).
fn put_uvarint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

/// The Fetch answer as a whole frame in fragments: every field encoded
/// here, between them each partition's records as the log holds them (the
/// crate's encoder would copy them into one buffer), so they go to the
/// socket as stored. Byte for byte what `fetch_response` encodes (tested
/// for every version); versions outside `ASSEMBLED_FETCH_VERSIONS` go
/// through the crate.
pub(super) fn fetch_frame(
    version: i16,
    correlation_id: i32,
    topics: Vec<protocol::FetchTopicResult>,
    ids: &dyn TopicIds,
    throttle_ms: i32,
) -> anyhow::Result<Chain> {
    if !ASSEMBLED_FETCH_VERSIONS.contains(&version) {
        let mut r = fetch_response(topics, ids);
        r.throttle_time_ms = throttle_ms;
        return Ok(encode_frame(ApiKey::Fetch, version, correlation_id, &r)?.into());
    }
    let flexible = version >= 12;
    debug_assert_eq!(
        ApiKey::Fetch.response_header_version(version),
        i16::from(flexible)
    );
    let records: usize = topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.records.len())
        .sum();
    // An array's or a string's length: classic i32/i16, or compact (n + 1).
    let count = |b: &mut BytesMut, n: usize| -> anyhow::Result<()> {
        if flexible {
            put_uvarint(b, n as u64 + 1);
        } else {
            b.put_i32(i32::try_from(n)?);
        }
        Ok(())
    };
    let mut fields = BytesMut::with_capacity(64 + 64 * topics.len());
    let mut body = Chain::with_capacity(2 + 2 * topics.len());
    fields.put_i32(0); // the frame's size, set below
    fields.put_i32(correlation_id);
    if flexible {
        fields.put_u8(0); // header tagged fields: none
    }
    fields.put_i32(throttle_ms);
    if version >= 7 {
        fields.put_i16(0); // error_code
        fields.put_i32(0); // session_id: no fetch sessions
    }
    count(&mut fields, topics.len())?;
    for t in &topics {
        if version >= 13 {
            fields.put_slice(&answer_id(ids, &t.name));
        } else if flexible {
            put_uvarint(&mut fields, t.name.len() as u64 + 1);
            fields.put_slice(t.name.as_bytes());
        } else {
            fields.put_i16(i16::try_from(t.name.len())?);
            fields.put_slice(t.name.as_bytes());
        }
        count(&mut fields, t.partitions.len())?;
        for p in &t.partitions {
            fields.put_i32(p.partition as i32);
            fields.put_i16(kafka_code(p.error.as_ref()));
            fields.put_i64(p.high_watermark);
            fields.put_i64(p.last_stable_offset);
            if version >= 5 {
                fields.put_i64(p.log_start_offset);
            }
            count(&mut fields, p.aborted.len())?;
            for &(pid, first) in &p.aborted {
                fields.put_i64(pid);
                fields.put_i64(first);
                if flexible {
                    fields.put_u8(0); // aborted transaction tagged fields: none
                }
            }
            if version >= 11 {
                fields.put_i32(-1); // preferred_read_replica: none
            }
            count(&mut fields, p.records.len())?;
            if !p.records.is_empty() {
                body.push(fields.split().freeze());
                body.extend(p.records.clone());
            }
            if flexible {
                fields.put_u8(0); // partition tagged fields: none
            }
        }
        if flexible {
            fields.put_u8(0); // topic tagged fields: none
        }
    }
    if flexible {
        fields.put_u8(0); // body tagged fields: none (no node endpoints)
    }
    body.push(fields.freeze());
    // The size goes first; patch it into the first fragment's copy.
    let size = i32::try_from(body.len() - 4)?;
    let mut out = Chain::with_capacity(body.fragments().len());
    for (i, f) in body.fragments().iter().enumerate() {
        if i == 0 {
            let mut first = BytesMut::from(&f[..]);
            first[..4].copy_from_slice(&size.to_be_bytes());
            out.push(first.freeze());
        } else {
            out.push(f.clone());
        }
    }
    debug_assert!(out.len() >= records);
    Ok(out)
}

/// DeleteRecords: what the request asks for (the log start of each
/// partition moves; routed to owners like ListOffsets).
pub(super) fn decode_delete_records(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = DeleteRecordsRequest::decode(body, version)?;
    let shape = r
        .topics
        .iter()
        .map(|t| {
            (
                name_of(&t.name),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    Ok(Work::native(
        native(Request::DeleteRecords(
            r.topics
                .into_iter()
                .map(|t| protocol::DeleteRecordsTopic {
                    name: name_of(&t.name),
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| protocol::DeleteRecordsPartition {
                            partition: partition_u32(p.partition_index),
                            offset: p.offset,
                        })
                        .collect(),
                })
                .collect(),
        )),
        shape,
    ))
}

/// DescribeProducers (the Java Admin's describeProducers, Kafka's
/// `kafka-transactions.sh describe-producers`): each partition's producers
/// come from its owner shard.
pub(super) fn decode_describe_producers(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = DescribeProducersRequest::decode(body, version)?;
    let shape = r
        .topics
        .iter()
        .map(|t| (name_of(&t.name), t.partition_indexes.clone()))
        .collect();
    Ok(Work::native(
        native(Request::DescribeProducers(
            r.topics
                .into_iter()
                .map(|t| protocol::TopicPartitions {
                    topic: name_of(&t.name),
                    partitions: t.partition_indexes.into_iter().map(partition_u32).collect(),
                })
                .collect(),
        )),
        shape,
    ))
}

/// The DescribeProducers answer, from the native one (errors carry their
/// message: Kafka's answer has the field).
pub(super) fn describe_producers_response(
    topics: Vec<protocol::DescribeProducersTopicResult>,
) -> DescribeProducersResponse {
    let mut r = DescribeProducersResponse::default();
    r.topics = topics
        .into_iter()
        .map(|t| {
            let mut tr = ProducersTopic::default();
            tr.name = topic_name(&t.name);
            tr.partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pr = ProducersPartition::default();
                    pr.partition_index = p.partition as i32;
                    pr.error_code = kafka_code(p.error.as_ref());
                    pr.error_message = p.error.as_ref().map(|e| StrBytes::from(e.message.clone()));
                    pr.active_producers = p
                        .producers
                        .iter()
                        .map(|a| {
                            let mut s = ProducerState::default();
                            s.producer_id = ProducerId(a.producer_id);
                            s.producer_epoch = i32::from(a.producer_epoch);
                            s.last_sequence = a.last_sequence;
                            s.last_timestamp = a.last_timestamp;
                            // No transaction coordinator yet: Kafka's -1.
                            s.coordinator_epoch = -1;
                            s.current_txn_start_offset = a.current_txn_start_offset;
                            s
                        })
                        .collect();
                    pr
                })
                .collect();
            tr
        })
        .collect();
    r
}

/// The DeleteRecords answer, from the native one.
pub(super) fn delete_records_response(
    topics: Vec<protocol::DeleteRecordsTopicResult>,
) -> DeleteRecordsResponse {
    let mut r = DeleteRecordsResponse::default();
    r.topics = topics
        .into_iter()
        .map(|t| {
            let mut tr = DeleteRecordsTopicResult::default();
            tr.name = topic_name(&t.name);
            tr.partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pr = DeleteRecordsPartitionResult::default();
                    pr.partition_index = p.partition as i32;
                    pr.error_code = kafka_code(p.error.as_ref());
                    pr.low_watermark = p.low_watermark;
                    pr
                })
                .collect();
            tr
        })
        .collect();
    r
}

/// The ListOffsets answer, from the native one.
pub(super) fn list_offsets_response(
    topics: Vec<protocol::ListOffsetsTopicResult>,
) -> ListOffsetsResponse {
    let mut r = ListOffsetsResponse::default();
    r.topics = topics
        .into_iter()
        .map(|t| {
            let mut tr = ListOffsetsTopicResponse::default();
            tr.name = topic_name(&t.name);
            tr.partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pr = ListOffsetsPartitionResponse::default();
                    pr.partition_index = p.partition as i32;
                    pr.error_code = kafka_code(p.error.as_ref());
                    pr.offset = p.offset;
                    pr.timestamp = p.timestamp;
                    pr
                })
                .collect();
            tr
        })
        .collect();
    r
}

/// The one leader epoch every partition has: its one replica leads it
/// from creation on and never changes. (Metadata reports -1, "unknown", so
/// clients skip the truncation checks that could never find anything.)
const LEADER_EPOCH: i32 = 0;

/// OffsetForLeaderEpoch (KIP-101/KIP-320): each partition's
/// (partition, wanted epoch, current epoch) ride in the shape as triples;
/// the log end offsets come from a native ListOffsets (latest).
pub(super) fn decode_offset_for_leader_epoch(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = OffsetForLeaderEpochRequest::decode(body, version)?;
    let shape: Shape = r
        .topics
        .iter()
        .map(|t| {
            (
                name_of(&t.topic),
                t.partitions
                    .iter()
                    .flat_map(|p| [p.partition, p.leader_epoch, p.current_leader_epoch])
                    .collect(),
            )
        })
        .collect();
    // Every epoch asked for ends where the log ends (the one epoch, 0).
    let topics = r.topics.iter().map(|t| {
        let ps = t
            .partitions
            .iter()
            .map(|p| (p.partition, protocol::LIST_LATEST));
        (name_of(&t.topic), ps.collect())
    });
    Ok(Work::native(native(list_offsets(topics)), shape))
}

/// Kafka's answer for one epoch: the wanted epoch is the one there is:
/// (0, the log end offset); a later one: unknown (-1, -1), as Kafka answers
/// an epoch past its newest; a current epoch past 0: UNKNOWN_LEADER_EPOCH
/// (the client knows a newer leader than this one: it refreshes).
pub(super) fn offset_for_leader_epoch_response(
    shape: &Shape,
    topics: &[protocol::ListOffsetsTopicResult],
    error: i16,
) -> OffsetForLeaderEpochResponse {
    let mut r = OffsetForLeaderEpochResponse::default();
    r.topics = shape
        .iter()
        .map(|(name, triples)| {
            let mut t = OffsetForLeaderTopicResult::default();
            t.topic = topic_name(name);
            t.partitions = triples
                .chunks_exact(3)
                .map(|x| {
                    let (partition, wanted, current) = (x[0], x[1], x[2]);
                    let mut e = EpochEndOffset::default();
                    e.partition = partition;
                    e.leader_epoch = -1;
                    e.end_offset = -1;
                    let found = topics
                        .iter()
                        .filter(|t| t.name == *name)
                        .flat_map(|t| &t.partitions)
                        .find(|p| p.partition as i32 == partition);
                    e.error_code = match found {
                        _ if error != 0 => error,
                        None => ResponseError::UnknownTopicOrPartition.code(),
                        Some(p) if p.error.is_some() => kafka_code(p.error.as_ref()),
                        Some(_) if current > LEADER_EPOCH => {
                            ResponseError::UnknownLeaderEpoch.code()
                        }
                        Some(p) => {
                            if wanted == LEADER_EPOCH {
                                e.leader_epoch = LEADER_EPOCH;
                                e.end_offset = p.offset;
                            }
                            0
                        }
                    };
                    e
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
    use crate::protocol::{ErrorCode, FetchPartitionResult, FetchTopicResult, WireError};

    fn answer() -> (Vec<FetchTopicResult>, Vec<Bytes>) {
        let held = vec![
            Bytes::from(vec![1u8; 300]),
            Bytes::from(vec![2u8; 16]),
            Bytes::from(vec![3u8; 5000]),
        ];
        let mut two = Chain::from(held[1].clone());
        two.push(held[2].clone());
        let part = |partition, records: Chain, error: Option<WireError>| FetchPartitionResult {
            partition,
            error,
            high_watermark: 77,
            log_start_offset: 3,
            records,
            last_stable_offset: 77,
            aborted: vec![],
        };
        let topics = vec![
            FetchTopicResult {
                name: "first".into(),
                partitions: vec![
                    part(0, Chain::from(held[0].clone()), None),
                    part(1, Chain::new(), None),
                    part(
                        2,
                        Chain::new(),
                        Some(WireError::new(ErrorCode::OffsetOutOfRange, "x")),
                    ),
                ],
            },
            FetchTopicResult {
                name: "second-topic".into(),
                partitions: vec![part(5, two, None)],
            },
            FetchTopicResult {
                name: "empty".into(),
                partitions: vec![],
            },
        ];
        (topics, held)
    }

    /// Topic ids for the test answer's topics, and the stand-in of an
    /// unknown one.
    struct Ids;
    impl TopicIds for Ids {
        fn name_of_id(&self, id: &[u8; 16]) -> Option<String> {
            (id[0] == 7).then(|| "first".to_owned())
        }
        fn id_of_name(&self, name: &str) -> Option<[u8; 16]> {
            (name == "first").then_some([7; 16])
        }
    }

    #[test]
    fn the_assembled_fetch_answer_is_what_kafkas_encoder_writes_with_the_records_unjoined() {
        for version in ASSEMBLED_FETCH_VERSIONS {
            let (mut topics, held) = answer();
            topics.push(FetchTopicResult {
                name: super::super::wire::unknown_id_name(&[9; 16]),
                partitions: vec![FetchPartitionResult {
                    partition: 0,
                    error: Some(WireError::new(ErrorCode::UnknownTopicId, "no")),
                    high_watermark: -1,
                    log_start_offset: -1,
                    records: Chain::new(),
                    last_stable_offset: -1,
                    aborted: vec![],
                }],
            });
            // A read_committed answer names aborted transactions.
            topics[0].partitions[0].aborted = vec![(7, 3), (1 << 40, 9)];
            topics[0].partitions[0].last_stable_offset = 12;
            let ours = fetch_frame(version, 42, topics.clone(), &Ids, 0).unwrap();
            let theirs =
                encode_frame(ApiKey::Fetch, version, 42, &fetch_response(topics, &Ids)).unwrap();
            assert_eq!(ours.to_bytes(), theirs, "version {version}");
            // The records are the held Bytes themselves, not copies.
            for h in &held {
                assert!(
                    ours.fragments()
                        .iter()
                        .any(|f| f.as_ptr() == h.as_ptr() && f.len() == h.len()),
                    "version {version}: a held fragment was copied"
                );
            }
        }
    }

    #[test]
    fn versions_past_the_assembled_ones_still_encode_through_the_crate() {
        let (topics, _) = answer();
        let v = *ASSEMBLED_FETCH_VERSIONS.end() + 1;
        let ours = fetch_frame(v, 1, topics.clone(), &Ids, 0).unwrap();
        let theirs = encode_frame(ApiKey::Fetch, v, 1, &fetch_response(topics, &Ids)).unwrap();
        assert_eq!(ours.to_bytes(), theirs);
    }
}
