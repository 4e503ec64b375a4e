//! Topic administration and producer ids over Kafka: CreateTopics,
//! CreatePartitions, DeleteTopics and InitProducerId.
//!
//! Owns: their translation both ways, and the Kafka-only rules checked
//! before a request reaches the controller (replication factor,
//! manual assignment, validate_only) answered per topic. Pure.
//!
//! Must never: fake what shardlog does not do (a dry run, replicas): such
//! requests are refused with Kafka's code for it.

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, InitProducerIdResponse, ProducerId,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

use super::wire::{name_of, non_negative, topic_name, Refused, Shape, Work};
use crate::protocol::{self, Request, RequestFrame};

/// CreateTopics: what the request asks for.
pub(super) fn decode_create_topics(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = CreateTopicsRequest::decode(body, version)?;
    let shape: Shape = r
        .topics
        .iter()
        .map(|t| (name_of(&t.name), vec![]))
        .collect();
    let mut refused = Refused::new();
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = name_of(&t.name);
        if r.validate_only {
            // No dry run in the native protocol: refused, not faked.
            refused.push((
                name,
                ResponseError::InvalidRequest.code(),
                "validate_only is not supported: shardlog has no dry-run topic creation".to_owned(),
            ));
            continue;
        }
        if !matches!(t.replication_factor, -1 | 1) {
            refused.push((
                name,
                ResponseError::InvalidReplicationFactor.code(),
                format!(
                    "replication factor {} is not supported: shardlog is one node and keeps one \
                     copy; ask for 1 or -1 (Kafka Connect: config.storage.replication.factor, \
                     offset.storage.replication.factor, status.storage.replication.factor; Kafka \
                     Streams: replication.factor; the Admin client: NewTopic's replicationFactor)",
                    t.replication_factor
                ),
            ));
            continue;
        }
        if !t.assignments.is_empty() {
            refused.push((
                name,
                ResponseError::InvalidReplicaAssignment.code(),
                "manual replica assignment is not supported: partitions go to shards".to_owned(),
            ));
            continue;
        }
        topics.push(protocol::CreateTopic {
            name,
            // -1: the broker's default (`--num-partitions`, Kafka's
            // num.partitions), sent as 0; other negatives are refused.
            partitions: match t.num_partitions {
                -1 => 0,
                n => u32::try_from(n).ok().filter(|&n| n > 0).unwrap_or(u32::MAX),
            },
            // A null value means "the default": left out.
            configs: t
                .configs
                .into_iter()
                .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
                .collect(),
        });
    }
    Ok(Work::Native {
        frame: native(Request::CreateTopics(topics)),
        shape,
        respond: true,
        refused,
        describe_configs: vec![],
    })
}

/// DeleteTopics: what the request asks for.
pub(super) fn decode_delete_topics(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = DeleteTopicsRequest::decode(body, version)?;
    let names: Vec<String> = r.topic_names.iter().map(name_of).collect();
    Ok(Work::Native {
        shape: names.iter().map(|n| (n.clone(), vec![])).collect(),
        frame: native(Request::DeleteTopics(names)),
        respond: true,
        refused: vec![],
        describe_configs: vec![],
    })
}

/// InitProducerId's answer: a producer id at epoch 0, or `Err(code)`.
pub fn init_producer_id_response(result: Result<i64, i16>) -> InitProducerIdResponse {
    let mut r = InitProducerIdResponse::default();
    match result {
        Ok(id) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = 0;
        }
        Err(code) => {
            r.error_code = code;
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
        }
    }
    r
}

pub(super) fn create_topics_response(
    topics: impl Iterator<Item = (String, i16, Option<String>)>,
) -> CreateTopicsResponse {
    let mut r = CreateTopicsResponse::default();
    r.topics = topics
        .map(|(n, code, message)| {
            let mut t = CreatableTopicResult::default();
            t.name = topic_name(&n);
            t.error_code = code;
            t.error_message = message.map(StrBytes::from_string);
            t
        })
        .collect();
    r
}

/// CreatePartitions: what the request asks for. Manual assignments and
/// dry runs are refused per topic, as CreateTopics refuses them.
pub(super) fn decode_create_partitions(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = CreatePartitionsRequest::decode(body, version)?;
    let shape: Shape = r
        .topics
        .iter()
        .map(|t| (name_of(&t.name), vec![]))
        .collect();
    let mut refused = Refused::new();
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = name_of(&t.name);
        if r.validate_only {
            refused.push((
                name,
                ResponseError::InvalidRequest.code(),
                "validate_only is not supported: shardlog has no dry run".to_owned(),
            ));
        } else if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            refused.push((
                name,
                ResponseError::InvalidReplicaAssignment.code(),
                "manual replica assignment is not supported: partitions go to shards".to_owned(),
            ));
        } else {
            topics.push(protocol::CreatePartitionsTopic {
                name,
                count: non_negative(t.count),
            });
        }
    }
    Ok(Work::Native {
        frame: native(Request::CreatePartitions(topics)),
        shape,
        respond: true,
        refused,
        describe_configs: vec![],
    })
}

/// The CreatePartitions answer: each topic's result.
pub(super) fn create_partitions_response(
    topics: impl Iterator<Item = (String, i16, Option<String>)>,
) -> CreatePartitionsResponse {
    let mut r = CreatePartitionsResponse::default();
    r.results = topics
        .map(|(n, code, message)| {
            let mut t = CreatePartitionsTopicResult::default();
            t.name = topic_name(&n);
            t.error_code = code;
            t.error_message = message.map(StrBytes::from_string);
            t
        })
        .collect();
    r
}

pub(super) fn delete_topics_response(
    topics: impl Iterator<Item = (String, i16, Option<String>)>,
) -> DeleteTopicsResponse {
    let mut r = DeleteTopicsResponse::default();
    r.responses = topics
        .map(|(n, code, message)| {
            let mut t = DeletableTopicResult::default();
            t.name = Some(topic_name(&n));
            t.error_code = code;
            t.error_message = message.map(StrBytes::from_string);
            t
        })
        .collect();
    r
}
