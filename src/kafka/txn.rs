//! The transaction APIs over Kafka: InitProducerId with a transactional
//! id, AddPartitionsToTxn, EndTxn, DescribeTransactions, ListTransactions;
//! decoded into `TxnCall`s for the ids' coordinators and answered from
//! their `TxnReply`s.
//!
//! Owns: their translation both ways, and KIP-588's rule that a client
//! too old to know PRODUCER_FENCED hears INVALID_PRODUCER_EPOCH.
//!
//! Must never: do I/O; a call's answer is built from its reply alone.

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::ResponseError;

use super::wire::{encode_frame, name_of, topic_name, Work};
use crate::errors::kafka_code;
use crate::group::TopicPartition;
use crate::protocol::{ErrorCode, WireError};
use crate::txn::{Outcome, TxnState};
use crate::txn_host::{TxnCall, TxnReply};

/// Kafka's code for `e` in answer to `api` at `version`: KIP-588 gave
/// PRODUCER_FENCED its own code from InitProducerId v4, AddPartitionsToTxn
/// v2 and EndTxn v2 on; older clients know it as INVALID_PRODUCER_EPOCH.
fn code(api: ApiKey, version: i16, e: Option<&WireError>) -> i16 {
    let fenced_since = match api {
        ApiKey::InitProducerId => 4,
        ApiKey::AddPartitionsToTxn | ApiKey::AddOffsetsToTxn | ApiKey::EndTxn => 2,
        _ => 0,
    };
    match e {
        Some(e) if e.code == ErrorCode::ProducerFenced && version < fenced_since => {
            ResponseError::InvalidProducerEpoch.code()
        }
        e => kafka_code(e),
    }
}

fn txn_id(t: &TransactionalId) -> String {
    t.0.as_str().to_owned()
}

/// InitProducerId: without a transactional id the listener answers it
/// (a new id at epoch 0, as Kafka); with one, its coordinator.
pub(super) fn decode_init_producer_id(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = InitProducerIdRequest::decode(body, version)?;
    Ok(match r.transactional_id {
        None => Work::InitProducerId,
        Some(t) => Work::txn(vec![TxnCall::Init {
            id: txn_id(&t),
            timeout_ms: r.transaction_timeout_ms,
            // KIP-360 (v3+): the id and epoch the producer has, if any.
            expected: (r.producer_id.0 >= 0).then_some((r.producer_id.0, r.producer_epoch)),
        }]),
    })
}

/// AddPartitionsToTxn v0-3 (a client's; v4+ batches transactions and is
/// for brokers).
pub(super) fn decode_add_partitions(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = AddPartitionsToTxnRequest::decode(body, version)?;
    let partitions = r
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            let name = name_of(&t.name);
            t.partitions
                .iter()
                // A negative partition exists nowhere: refused as unknown.
                .map(move |&p| {
                    TopicPartition::new(name.as_str(), u32::try_from(p).unwrap_or(u32::MAX))
                })
        })
        .collect();
    Ok(Work::txn(vec![TxnCall::Add {
        id: txn_id(&r.v3_and_below_transactional_id),
        producer_id: r.v3_and_below_producer_id.0,
        epoch: r.v3_and_below_producer_epoch,
        partitions,
        txn_version: 1,
    }]))
}

pub(super) fn decode_add_offsets(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = AddOffsetsToTxnRequest::decode(body, version)?;
    Ok(Work::txn(vec![TxnCall::AddOffsets {
        id: txn_id(&r.transactional_id),
        producer_id: r.producer_id.0,
        epoch: r.producer_epoch,
        group: r.group_id.0.as_str().to_owned(),
        txn_version: 1,
    }]))
}

pub(super) fn decode_end_txn(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = EndTxnRequest::decode(body, version)?;
    Ok(Work::txn(vec![TxnCall::End {
        id: txn_id(&r.transactional_id),
        producer_id: r.producer_id.0,
        epoch: r.producer_epoch,
        outcome: if r.committed {
            Outcome::Commit
        } else {
            Outcome::Abort
        },
        // KIP-890 part 2: a client sends v5+ only under transaction
        // version 2 (it caps at v4 otherwise).
        txn_version: if version >= 5 { 2 } else { 1 },
    }]))
}

/// DescribeTransactions: one call per id, each to its coordinator.
pub(super) fn decode_describe_transactions(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = DescribeTransactionsRequest::decode(body, version)?;
    Ok(Work::txn(
        r.transactional_ids
            .iter()
            .map(|t| TxnCall::Describe(txn_id(t)))
            .collect(),
    ))
}

/// ListTransactions: every coordinator's ids, filtered. Unknown state
/// names are answered back (Kafka's `unknown_state_filters`) and match
/// nothing.
pub(super) fn decode_list_transactions(body: &mut Bytes, version: i16) -> anyhow::Result<Work> {
    let r = ListTransactionsRequest::decode(body, version)?;
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for s in &r.state_filters {
        match TxnState::from_name(s.as_str()) {
            Some(s) => states.push(s),
            None => unknown.push(s.as_str().to_owned()),
        }
    }
    if !unknown.is_empty() && states.is_empty() {
        // Only unknown states: nothing can match (an empty filter would
        // match everything). Dead is never listed.
        states.push(TxnState::Dead);
    }
    Ok(Work::Txn {
        calls: vec![TxnCall::List {
            states,
            producer_ids: r.producer_id_filters.iter().map(|p| p.0).collect(),
            min_duration_ms: if version >= 1 { r.duration_filter } else { -1 },
        }],
        unknown_states: unknown,
    })
}

fn unexpected() -> WireError {
    WireError::new(ErrorCode::Unknown, "unexpected reply")
}

/// Encodes the answer to a transaction request from its calls' replies
/// (in call order); `unknown_states`: ListTransactions' state names that
/// are none of Kafka's, answered back.
pub(super) fn encode_txn(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    calls: &[TxnCall],
    replies: Vec<Result<TxnReply, WireError>>,
    unknown_states: &[String],
) -> anyhow::Result<Bytes> {
    match api {
        ApiKey::InitProducerId => {
            let result = match replies.into_iter().next() {
                Some(Ok(TxnReply::Init(r))) => r,
                Some(Ok(_)) | None => Err(unexpected()),
                Some(Err(e)) => Err(e),
            };
            let mut r = InitProducerIdResponse::default();
            match result {
                Ok((id, epoch)) => {
                    r.producer_id = ProducerId(id);
                    r.producer_epoch = epoch;
                }
                Err(e) => {
                    r.error_code = code(api, version, Some(&e));
                    r.producer_id = ProducerId(-1);
                    r.producer_epoch = -1;
                }
            }
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::AddPartitionsToTxn => {
            let Some(TxnCall::Add { partitions, .. }) = calls.first() else {
                anyhow::bail!("AddPartitionsToTxn without its call");
            };
            let results: Vec<(TopicPartition, Option<WireError>)> = match replies.into_iter().next()
            {
                Some(Ok(TxnReply::Added(r))) => r,
                Some(Err(e)) => partitions
                    .iter()
                    .map(|tp| (tp.clone(), Some(e.clone())))
                    .collect(),
                _ => partitions
                    .iter()
                    .map(|tp| (tp.clone(), Some(unexpected())))
                    .collect(),
            };
            let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
            for (tp, e) in results {
                let mut p = AddPartitionsToTxnPartitionResult::default();
                p.partition_index = tp.partition as i32;
                p.partition_error_code = code(api, version, e.as_ref());
                match topics.iter_mut().find(|t| t.name.0.as_str() == tp.topic) {
                    Some(t) => t.results_by_partition.push(p),
                    None => {
                        let mut t = AddPartitionsToTxnTopicResult::default();
                        t.name = topic_name(&tp.topic);
                        t.results_by_partition = vec![p];
                        topics.push(t);
                    }
                }
            }
            let mut r = AddPartitionsToTxnResponse::default();
            r.results_by_topic_v3_and_below = topics;
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::AddOffsetsToTxn => {
            let result = match replies.into_iter().next() {
                Some(Ok(TxnReply::OffsetsAdded(r))) => r,
                Some(Ok(_)) | None => Err(unexpected()),
                Some(Err(e)) => Err(e),
            };
            let mut r = AddOffsetsToTxnResponse::default();
            r.error_code = code(api, version, result.as_ref().err());
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::EndTxn => {
            let result = match replies.into_iter().next() {
                Some(Ok(TxnReply::Ended(r))) => r,
                Some(Ok(_)) | None => Err(unexpected()),
                Some(Err(e)) => Err(e),
            };
            let mut r = EndTxnResponse::default();
            r.error_code = code(api, version, result.as_ref().err());
            // v5+: the producer id and epoch to go on with.
            let (pid, epoch) = result.unwrap_or((-1, -1));
            r.producer_id = ProducerId(pid);
            r.producer_epoch = epoch;
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::DescribeTransactions => {
            let mut r = DescribeTransactionsResponse::default();
            r.transaction_states = calls
                .iter()
                .zip(replies)
                .map(|(call, reply)| {
                    let id = match call {
                        TxnCall::Describe(id) => id.as_str(),
                        _ => "",
                    };
                    let mut s = DescribedState::default();
                    s.transactional_id = TransactionalId(StrBytes::from_string(id.to_owned()));
                    s.producer_id = ProducerId(-1);
                    s.producer_epoch = -1;
                    s.transaction_start_time_ms = -1;
                    match reply {
                        Ok(TxnReply::Described(Ok(m))) => {
                            s.transaction_state = StrBytes::from_static_str(m.state.name());
                            s.transaction_timeout_ms = m.timeout_ms;
                            s.transaction_start_time_ms = m.start_ms;
                            s.producer_id = ProducerId(m.producer_id);
                            s.producer_epoch = m.producer_epoch;
                            let mut topics: Vec<TopicData> = Vec::new();
                            for tp in &m.partitions {
                                match topics.last_mut() {
                                    Some(t) if t.topic.0.as_str() == tp.topic => {
                                        t.partitions.push(tp.partition as i32)
                                    }
                                    _ => {
                                        let mut t = TopicData::default();
                                        t.topic = topic_name(&tp.topic);
                                        t.partitions = vec![tp.partition as i32];
                                        topics.push(t);
                                    }
                                }
                            }
                            s.topics = topics;
                        }
                        Ok(TxnReply::Described(Err(e))) | Err(e) => {
                            s.error_code = kafka_code(Some(&e));
                        }
                        Ok(_) => s.error_code = kafka_code(Some(&unexpected())),
                    }
                    s
                })
                .collect();
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::ListTransactions => {
            let mut r = ListTransactionsResponse::default();
            r.unknown_state_filters = unknown_states
                .iter()
                .map(|s| StrBytes::from_string(s.clone()))
                .collect();
            match replies.into_iter().next() {
                Some(Ok(TxnReply::Listed(l))) => {
                    r.transaction_states = l
                        .into_iter()
                        .map(|l| {
                            let mut s = ListedState::default();
                            s.transactional_id =
                                TransactionalId(StrBytes::from_string(l.transactional_id));
                            s.producer_id = ProducerId(l.producer_id);
                            s.transaction_state = StrBytes::from_static_str(l.state.name());
                            s
                        })
                        .collect();
                }
                Some(Err(e)) => r.error_code = kafka_code(Some(&e)),
                _ => r.error_code = kafka_code(Some(&unexpected())),
            }
            encode_frame(api, version, correlation_id, &r)
        }
        other => anyhow::bail!("{other:?} is not a transaction API"),
    }
}

/// A whole transaction request refused with Kafka's `error`.
/// The whole request refused with Kafka's `error`: AddPartitionsToTxn's
/// on every partition of `shape` (topic, partitions), DescribeTransactions'
/// on every id of `shape` (id, []).
/// AddPartitionsToTxn answered at once, each topic of `shape` with its
/// own error (`errors`, in the same order): v0-3 carry errors per
/// partition only.
pub(super) fn add_partitions_refused(
    version: i16,
    correlation_id: i32,
    shape: &super::wire::Shape,
    errors: &[i16],
) -> anyhow::Result<Bytes> {
    let mut r = AddPartitionsToTxnResponse::default();
    r.results_by_topic_v3_and_below = shape
        .iter()
        .zip(errors)
        .map(|((t, ps), &error)| {
            let mut tr = AddPartitionsToTxnTopicResult::default();
            tr.name = topic_name(t);
            tr.results_by_partition = ps
                .iter()
                .map(|&p| {
                    let mut pr = AddPartitionsToTxnPartitionResult::default();
                    pr.partition_index = p;
                    pr.partition_error_code = error;
                    pr
                })
                .collect();
            tr
        })
        .collect();
    encode_frame(ApiKey::AddPartitionsToTxn, version, correlation_id, &r)
}

pub(super) fn refuse(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    shape: &super::wire::Shape,
    error: i16,
) -> anyhow::Result<Bytes> {
    match api {
        ApiKey::InitProducerId => {
            let mut r = InitProducerIdResponse::default();
            r.error_code = error;
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::AddPartitionsToTxn => {
            let errors = vec![error; shape.len()];
            add_partitions_refused(version, correlation_id, shape, &errors)
        }
        ApiKey::EndTxn => {
            let mut r = EndTxnResponse::default();
            r.error_code = error;
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::AddOffsetsToTxn => {
            let mut r = AddOffsetsToTxnResponse::default();
            r.error_code = error;
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::DescribeTransactions => {
            let mut r = DescribeTransactionsResponse::default();
            r.transaction_states = shape
                .iter()
                .map(|(id, _)| {
                    let mut st = DescribedState::default();
                    st.transactional_id = TransactionalId(StrBytes::from_string(id.clone()));
                    st.error_code = error;
                    st.producer_id = ProducerId(-1);
                    st.producer_epoch = -1;
                    st.transaction_start_time_ms = -1;
                    st
                })
                .collect();
            encode_frame(api, version, correlation_id, &r)
        }
        ApiKey::ListTransactions => {
            let mut r = ListTransactionsResponse::default();
            r.error_code = error;
            encode_frame(api, version, correlation_id, &r)
        }
        other => anyhow::bail!("{other:?} is not a transaction API"),
    }
}

/// Is `api` one of this file's?
pub(super) fn is_txn_api(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::InitProducerId
            | ApiKey::AddPartitionsToTxn
            | ApiKey::AddOffsetsToTxn
            | ApiKey::EndTxn
            | ApiKey::DescribeTransactions
            | ApiKey::ListTransactions
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ResponseHeader;
    use kafka_protocol::protocol::Decodable;

    /// An add refused topic by topic carries each topic's own code on each
    /// of its partitions, in request order.
    #[test]
    fn an_add_refused_topic_by_topic_names_each_topics_error() {
        let shape = vec![("ok".to_string(), vec![0, 1]), ("no".to_string(), vec![2])];
        for version in 0..=3 {
            let mut frame = add_partitions_refused(version, 7, &shape, &[55, 29]).unwrap();
            let _len = frame.split_to(4);
            let hv = ApiKey::AddPartitionsToTxn.response_header_version(version);
            assert_eq!(
                ResponseHeader::decode(&mut frame, hv)
                    .unwrap()
                    .correlation_id,
                7
            );
            let r = AddPartitionsToTxnResponse::decode(&mut frame, version).unwrap();
            let got: Vec<(String, i32, i16)> = r
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| {
                    t.results_by_partition.iter().map(|p| {
                        (
                            t.name.to_string(),
                            p.partition_index,
                            p.partition_error_code,
                        )
                    })
                })
                .collect();
            assert_eq!(
                got,
                [
                    ("ok".to_string(), 0, 55),
                    ("ok".to_string(), 1, 55),
                    ("no".to_string(), 2, 29)
                ]
            );
        }
    }
}
