//! The data path's APIs over Kafka: Produce, Fetch and ListOffsets,
//! decoded into native requests and answered from native responses.
//!
//! Owns: their translation both ways (record batches pass as `Bytes`
//! slices of the request frame; fetched batches as stored).
//!
//! Must never: decode or re-encode a record batch, or do I/O.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest,
    ProduceResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

use super::wire::{name_of, non_negative, partition_u32, topic_name, Shape, Work};
use crate::errors::kafka_code;
use crate::protocol::{self, Acks, ListOffsetsPartition, ListOffsetsTopic, Request, RequestFrame};

/// Produce: what the request asks for.
pub(super) fn decode_produce(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = ProduceRequest::decode(body, version)?;
    let shape: Shape = r
        .topic_data
        .iter()
        .map(|t| {
            (
                name_of(&t.name),
                t.partition_data.iter().map(|p| p.index).collect(),
            )
        })
        .collect();
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
}

/// Fetch: what the request asks for.
pub(super) fn decode_fetch(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = FetchRequest::decode(body, version)?;
    let shape = r
        .topics
        .iter()
        .map(|t| {
            (
                name_of(&t.topic),
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
                .map(|t| protocol::FetchTopic {
                    name: name_of(&t.topic),
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
                .collect(),
        })),
        shape,
        respond: true,
        refused: vec![],
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
    Ok(Work::Native {
        frame: native(Request::ListOffsets(
            r.topics
                .into_iter()
                .map(|t| ListOffsetsTopic {
                    name: name_of(&t.name),
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| ListOffsetsPartition {
                            partition: partition_u32(p.partition_index),
                            timestamp: p.timestamp,
                        })
                        .collect(),
                })
                .collect(),
        )),
        shape,
        respond: true,
        refused: vec![],
        describe_configs: vec![],
    })
}

/// The Produce answer, from the native one.
pub(super) fn produce_response(topics: Vec<protocol::ProduceTopicResult>) -> ProduceResponse {
    let mut r = ProduceResponse::default();
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
                    pr
                })
                .collect();
            tr
        })
        .collect();
    r
}

/// The Fetch answer, from the native one.
pub(super) fn fetch_response(topics: Vec<protocol::FetchTopicResult>) -> FetchResponse {
    let mut r = FetchResponse::default();
    r.responses = topics
        .into_iter()
        .map(|t| {
            let mut tr = FetchableTopicResponse::default();
            tr.topic = topic_name(&t.name);
            tr.partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut pd = PartitionData::default();
                    pd.partition_index = p.partition as i32;
                    pd.error_code = kafka_code(p.error.as_ref());
                    pd.high_watermark = p.high_watermark;
                    // No transactions: everything below the high
                    // watermark is stable.
                    pd.last_stable_offset = p.high_watermark;
                    pd.log_start_offset = p.log_start_offset;
                    pd.aborted_transactions = Some(vec![]);
                    // Whole batches as stored (the crate copies them
                    // once into the response buffer).
                    pd.records = Some(p.records.to_bytes());
                    pd
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
