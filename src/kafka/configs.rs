//! Kafka's topic and broker settings as DescribeConfigs reports them:
//! every setting Kafka lists for a topic, with its value, source and
//! read-only flag, over the broker's defaults (the `serve` flags); and
//! their changes by AlterConfigs and IncrementalAlterConfigs.
//!
//! Owns: the names, types and sources Kafka gives each setting, the
//! DescribeConfigs answer, and the translation of the two alter APIs
//! (which resources may change). Pure.
//!
//! Must never: invent a setting Kafka does not have, or report a value
//! other than the one the broker applies.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use bytes::Bytes;
use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::protocol::Decodable;

use super::wire::{ConfigResource, Refused, Shape, Work};
use crate::errors::kafka_code;
use crate::protocol;
use crate::protocol::{NodeInfo, TopicDescription};
use crate::protocol::{Request, RequestFrame};
use crate::storage::meta::LogConfig;

/// Kafka's resource types (`ConfigResource.Type`).
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's config sources (`DescribeConfigsResponse.ConfigSource`).
pub(crate) const SOURCE_TOPIC: i8 = 1;
pub(crate) const SOURCE_STATIC_BROKER: i8 = 4;
pub(crate) const SOURCE_DEFAULT: i8 = 5;
/// Kafka's config types (`ConfigDef.Type` as DescribeConfigs v3+ numbers them).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

/// What DescribeConfigs reports for a topic setting the topic does not
/// override: the broker's flags.
#[derive(Debug, Clone, Default)]
pub struct TopicDefaults {
    pub log: LogConfig,
    /// `--max-batch-bytes`: Kafka's `max.message.bytes` (largest batch run).
    pub max_batch_bytes: usize,
    /// `--auto-create-topics-enable` (Some: on, with this many partitions).
    pub auto_create_partitions: Option<u32>,
    /// `--num-partitions`.
    pub num_partitions: u32,
    /// The cleaner's budget and backoff (`--cleaner-*`).
    pub cleaner: crate::storage::cleaner::Limits,
    pub cleaner_check_ms: u64,
    /// The data directory: Kafka's one log directory (`log.dirs`).
    pub log_dir: String,
}

/// (name, value, source, read only, type).
type ConfigEntry = (&'static str, String, i8, bool, i8);

/// A topic's settings as Kafka names them: what the topic overrides
/// (source TOPIC_CONFIG; settable at creation), the rest from the broker
/// (DEFAULT_CONFIG). Settings with one possible value here (no
/// recompression, one replica, CreateTime) take only that value
/// (`meta::FIXED_CONFIGS`).
pub fn topic_configs(overrides: &[(String, String)], d: &TopicDefaults) -> Vec<ConfigEntry> {
    let set: std::collections::BTreeMap<String, String> = overrides.iter().cloned().collect();
    // Overrides were validated when the topic was created; a bad one
    // would not have loaded.
    let eff = d.log.with_overrides(&set).unwrap_or(d.log);
    // A setting the topic may override: its value as the topic set it (so
    // a list or a number reads back as written), else the effective one.
    let own = |n: &'static str, effective: String, t| match set.get(n) {
        Some(v) => (n, v.clone(), SOURCE_TOPIC, false, t),
        None => (n, effective, SOURCE_DEFAULT, false, t),
    };
    vec![
        own(
            "cleanup.policy",
            eff.cleanup_policy.name().to_owned(),
            TYPE_LIST,
        ),
        own("compression.type", "producer".to_owned(), TYPE_STRING),
        own(
            "delete.retention.ms",
            eff.delete_retention_ms.to_string(),
            TYPE_LONG,
        ),
        own(
            "max.compaction.lag.ms",
            eff.max_compaction_lag_ms.to_string(),
            TYPE_LONG,
        ),
        own(
            "max.message.bytes",
            match usize::try_from(eff.max_message_bytes) {
                Ok(m) => m.min(d.max_batch_bytes),
                Err(_) => d.max_batch_bytes,
            }
            .to_string(),
            TYPE_INT,
        ),
        own(
            "message.timestamp.type",
            "CreateTime".to_owned(),
            TYPE_STRING,
        ),
        own(
            "min.cleanable.dirty.ratio",
            eff.min_cleanable_dirty_ratio.to_string(),
            TYPE_DOUBLE,
        ),
        own(
            "min.compaction.lag.ms",
            eff.min_compaction_lag_ms.to_string(),
            TYPE_LONG,
        ),
        own("min.insync.replicas", "1".to_owned(), TYPE_INT),
        own(
            "retention.bytes",
            eff.retention_bytes.to_string(),
            TYPE_LONG,
        ),
        own("retention.ms", eff.retention_ms.to_string(), TYPE_LONG),
        own("segment.bytes", eff.segment_bytes.to_string(), TYPE_INT),
        own("segment.ms", eff.segment_ms.to_string(), TYPE_LONG),
        own(
            "unclean.leader.election.enable",
            "false".to_owned(),
            TYPE_BOOLEAN,
        ),
    ]
}

/// The broker's settings under Kafka's broker names; all read only (no
/// AlterConfigs), from its start flags.
pub fn broker_configs(node: &NodeInfo, d: &TopicDefaults) -> Vec<ConfigEntry> {
    let b = |n, v: String, t| (n, v, SOURCE_STATIC_BROKER, true, t);
    let listener = format!("PLAINTEXT://{}:{}", node.host, node.port);
    vec![
        b("advertised.listeners", listener.clone(), TYPE_LIST),
        b(
            "auto.create.topics.enable",
            d.auto_create_partitions.is_some().to_string(),
            TYPE_BOOLEAN,
        ),
        b("broker.id", node.node_id.to_string(), TYPE_INT),
        b("listeners", listener, TYPE_LIST),
        b("node.id", node.node_id.to_string(), TYPE_INT),
        b("offsets.topic.replication.factor", "1".into(), TYPE_INT),
        b(
            "transaction.state.log.replication.factor",
            "1".into(),
            TYPE_INT,
        ),
        b("compression.type", "producer".into(), TYPE_STRING),
        b("default.replication.factor", "1".into(), TYPE_INT),
        b(
            "log.cleaner.backoff.ms",
            d.cleaner_check_ms.to_string(),
            TYPE_LONG,
        ),
        b(
            "log.cleaner.dedupe.buffer.size",
            d.cleaner.map_bytes.to_string(),
            TYPE_LONG,
        ),
        b(
            "log.cleaner.io.max.bytes.per.second",
            // 0 is "no limit": Kafka's own unlimited value.
            if d.cleaner.io_bytes_per_sec == 0 {
                f64::MAX.to_string()
            } else {
                (d.cleaner.io_bytes_per_sec as f64).to_string()
            },
            TYPE_DOUBLE,
        ),
        b(
            "log.cleaner.delete.retention.ms",
            d.log.delete_retention_ms.to_string(),
            TYPE_LONG,
        ),
        b(
            "log.cleaner.min.cleanable.ratio",
            d.log.min_cleanable_dirty_ratio.to_string(),
            TYPE_DOUBLE,
        ),
        b(
            "log.cleaner.min.compaction.lag.ms",
            d.log.min_compaction_lag_ms.to_string(),
            TYPE_LONG,
        ),
        b(
            "log.cleaner.max.compaction.lag.ms",
            d.log.max_compaction_lag_ms.to_string(),
            TYPE_LONG,
        ),
        b(
            "log.cleanup.policy",
            d.log.cleanup_policy.name().into(),
            TYPE_LIST,
        ),
        b(
            "log.retention.bytes",
            d.log.retention_bytes.to_string(),
            TYPE_LONG,
        ),
        b(
            "log.retention.ms",
            d.log.retention_ms.to_string(),
            TYPE_LONG,
        ),
        b("log.roll.ms", d.log.segment_ms.to_string(), TYPE_LONG),
        b(
            "log.segment.bytes",
            d.log.segment_bytes.to_string(),
            TYPE_INT,
        ),
        b("message.max.bytes", d.max_batch_bytes.to_string(), TYPE_INT),
        b("min.insync.replicas", "1".into(), TYPE_INT),
        b(
            "num.partitions",
            d.num_partitions.max(1).to_string(),
            TYPE_INT,
        ),
        b("log.dirs", d.log_dir.clone(), TYPE_STRING),
    ]
}

pub(crate) fn describe_configs_response(
    ask: &[ConfigResource],
    topics: &[TopicDescription],
    nodes: &[NodeInfo],
    defaults: &TopicDefaults,
) -> DescribeConfigsResponse {
    let mut r = DescribeConfigsResponse::default();
    r.results = ask
        .iter()
        .map(|a| {
            let mut res = DescribeConfigsResult::default();
            res.resource_type = a.resource_type;
            res.resource_name = StrBytes::from_string(a.name.clone());
            let entries = match (a.denied, a.resource_type) {
                (Some(code), _) => Err((
                    code,
                    Some(format!("not authorized to describe the configs of {:?}", a.name)),
                )),
                (None, RESOURCE_TOPIC) => match topics.iter().find(|t| t.name == a.name) {
                    Some(t) if t.error.is_none() => Ok(topic_configs(&t.configs, defaults)),
                    Some(t) => Err((
                        kafka_code(t.error.as_ref()),
                        t.error.as_ref().map(|e| e.message.clone()),
                    )),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        Some(format!("unknown topic '{}'", a.name)),
                    )),
                },
                (None, RESOURCE_BROKER) => {
                    // "" is the cluster-wide default; otherwise one of the
                    // advertised nodes (shards).
                    let node = if a.name.is_empty() {
                        nodes.first()
                    } else {
                        a.name
                            .parse::<u32>()
                            .ok()
                            .and_then(|id| nodes.iter().find(|n| n.node_id == id))
                    };
                    match node {
                        Some(n) => Ok(broker_configs(n, defaults)),
                        None => Err((
                            ResponseError::InvalidRequest.code(),
                            Some(format!("broker '{}' is not a node of this cluster", a.name)),
                        )),
                    }
                }
                (None, other) => Err((
                    ResponseError::InvalidRequest.code(),
                    Some(format!(
                        "resource type {other} is not supported (topics {RESOURCE_TOPIC} and brokers {RESOURCE_BROKER} are)"
                    )),
                )),
            };
            match entries {
                Ok(entries) => {
                    res.configs = entries
                        .into_iter()
                        .filter(|(n, ..)| a.keys.as_ref().is_none_or(|ks| ks.iter().any(|k| k == n)))
                        .map(|(n, v, source, read_only, ty)| {
                            let mut c = DescribeConfigsResourceResult::default();
                            c.name = StrBytes::from_static_str(n);
                            c.value = Some(StrBytes::from_string(v));
                            c.read_only = read_only;
                            c.config_source = source;
                            c.config_type = ty;
                            c
                        })
                        .collect();
                }
                Err((code, message)) => {
                    res.error_code = code;
                    res.error_message = message.map(StrBytes::from_string);
                }
            }
            res
        })
        .collect();
    r
}

/// DescribeConfigs: what the request asks for.
pub(super) fn decode_describe_configs(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
) -> anyhow::Result<Work> {
    let r = DescribeConfigsRequest::decode(body, version)?;
    let ask: Vec<ConfigResource> = r
        .resources
        .into_iter()
        .map(|res| ConfigResource {
            resource_type: res.resource_type,
            name: res.resource_name.as_str().to_owned(),
            keys: res
                .configuration_keys
                .map(|ks| ks.iter().map(|k| k.as_str().to_owned()).collect()),
            denied: None,
        })
        .collect();
    let topics = ask
        .iter()
        .filter(|a| a.resource_type == RESOURCE_TOPIC)
        .map(|a| a.name.clone())
        .collect();
    Ok(Work::Native {
        frame: native(Request::DescribeTopics {
            topics: Some(topics),
        }),
        // The resource type rides in the shape: a request-level
        // error answers every resource with its type.
        shape: ask
            .iter()
            .map(|a| (a.name.clone(), vec![i32::from(a.resource_type)]))
            .collect(),
        respond: true,
        refused: vec![],
        describe_configs: ask,
    })
}

/// Kafka's resource type for broker loggers (log levels).
pub(super) const RESOURCE_BROKER_LOGGER: i8 = 8;

/// One resource of an (Incremental)AlterConfigs request, as decoded:
/// (type, name, operations (key, Kafka operation code, value)).
type AlterResource = (i8, String, Vec<(String, i8, Option<String>)>);

/// AlterConfigs (`incremental` false: the resource's settings become the
/// ones given) and IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT
/// on single settings): the topic resources go to the controller as one
/// native AlterConfigs; what cannot be changed is refused per resource.
/// The shape keeps every resource in request order as (name, [type,
/// refused]), the refusals in `refused` in the same order.
pub(super) fn decode_alter_configs(
    body: &mut Bytes,
    version: i16,
    native: &dyn Fn(Request) -> Box<RequestFrame>,
    incremental: bool,
) -> anyhow::Result<Work> {
    let (resources, validate_only): (Vec<AlterResource>, bool) = if incremental {
        let r = IncrementalAlterConfigsRequest::decode(body, version)?;
        let rs = r
            .resources
            .into_iter()
            .map(|res| {
                let ops = res
                    .configs
                    .into_iter()
                    .map(|c| {
                        (
                            c.name.as_str().to_owned(),
                            c.config_operation,
                            c.value.map(|v| v.as_str().to_owned()),
                        )
                    })
                    .collect();
                (
                    res.resource_type,
                    res.resource_name.as_str().to_owned(),
                    ops,
                )
            })
            .collect();
        (rs, r.validate_only)
    } else {
        let r = AlterConfigsRequest::decode(body, version)?;
        let rs = r
            .resources
            .into_iter()
            .map(|res| {
                let ops = res
                    .configs
                    .into_iter()
                    .map(|c| {
                        (
                            c.name.as_str().to_owned(),
                            OP_SET,
                            c.value.map(|v| v.as_str().to_owned()),
                        )
                    })
                    .collect();
                (
                    res.resource_type,
                    res.resource_name.as_str().to_owned(),
                    ops,
                )
            })
            .collect();
        (rs, r.validate_only)
    };
    let mut shape = Vec::with_capacity(resources.len());
    let mut refused = Refused::new();
    let mut topics = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (rtype, name, ops) in resources {
        let refusal = if !seen.insert((rtype, name.clone())) {
            Some((
                ResponseError::InvalidRequest.code(),
                format!("resource {name:?} is named twice in one request"),
            ))
        } else {
            match rtype {
                RESOURCE_TOPIC => match alter_ops(ops) {
                    Ok(ops) => {
                        topics.push(protocol::AlterConfigsTopic {
                            name: name.clone(),
                            ops,
                            replace: !incremental,
                        });
                        None
                    }
                    Err(e) => Some(e),
                },
                RESOURCE_BROKER if ops.is_empty() => None,
                RESOURCE_BROKER => Some((
                    ResponseError::InvalidRequest.code(),
                    "broker settings are `shardlog serve` flags (or its config file): change them there and restart; they cannot be changed live".to_owned(),
                )),
                RESOURCE_BROKER_LOGGER => Some((
                    ResponseError::InvalidRequest.code(),
                    "log levels are set by RUST_LOG at start; they cannot be changed live".to_owned(),
                )),
                other => Some((
                    ResponseError::InvalidRequest.code(),
                    format!("resource type {other} has no settings that can be changed here"),
                )),
            }
        };
        let flag = match refusal {
            Some((code, message)) => {
                refused.push((name.clone(), code, message));
                1
            }
            None => 0,
        };
        shape.push((name, vec![i32::from(rtype), flag]));
    }
    Ok(Work::Native {
        frame: native(Request::AlterConfigs {
            topics,
            validate_only,
        }),
        shape,
        respond: true,
        refused,
        describe_configs: vec![],
    })
}

/// Kafka's `AlterConfigOp.OpType` codes.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// A resource's operations as native ones; Err: (Kafka code, message).
fn alter_ops(
    ops: Vec<(String, i8, Option<String>)>,
) -> Result<Vec<protocol::ConfigOp>, (i16, String)> {
    use protocol::ConfigOpKind as K;
    ops.into_iter()
        .map(|(key, op, value)| {
            let op = match op {
                OP_SET => K::Set,
                OP_DELETE => K::Delete,
                OP_APPEND => K::Append,
                OP_SUBTRACT => K::Subtract,
                other => {
                    return Err((
                        ResponseError::InvalidRequest.code(),
                        format!("{key}: unknown config operation {other}"),
                    ))
                }
            };
            let value = match (op, value) {
                (K::Delete, _) => String::new(),
                (_, Some(v)) => v,
                (_, None) => {
                    return Err((
                        ResponseError::InvalidRequest.code(),
                        format!("{key}: a null value is only allowed with DELETE"),
                    ))
                }
            };
            Ok(protocol::ConfigOp { key, op, value })
        })
        .collect()
}

/// The (Incremental)AlterConfigs answer, every resource in request order:
/// topics from the controller's `results` (in the order they were sent),
/// refusals from `refused`, a broker resource without changes as done.
/// `error` (a request-level failure) goes on every topic not refused.
pub(crate) fn alter_configs_results(
    shape: &Shape,
    refused: &Refused,
    results: &[crate::protocol::TopicResult],
    error: Option<(i16, String)>,
) -> Vec<(i8, String, i16, Option<String>)> {
    let mut refusals = refused.iter();
    let mut answers = results.iter();
    shape
        .iter()
        .map(|(name, v)| {
            let rtype = v.first().map_or(RESOURCE_TOPIC, |&t| t as i8);
            let (code, message) = if v.get(1) == Some(&1) {
                match (refusals.next(), &error) {
                    (Some((_, c, m)), _) => (*c, Some(m.clone())),
                    (None, Some((c, m))) => (*c, Some(m.clone()).filter(|m| !m.is_empty())),
                    (None, None) => (ResponseError::UnknownServerError.code(), None),
                }
            } else if rtype != RESOURCE_TOPIC {
                (0, None)
            } else if let Some((c, m)) = &error {
                (*c, Some(m.clone()).filter(|m| !m.is_empty()))
            } else {
                match answers.next() {
                    Some(r) => (
                        kafka_code(r.error.as_ref()),
                        r.error.as_ref().map(|e| e.message.clone()),
                    ),
                    None => (ResponseError::UnknownServerError.code(), None),
                }
            };
            (rtype, name.clone(), code, message)
        })
        .collect()
}

/// The AlterConfigs answer from `alter_configs_results`.
pub(crate) fn alter_configs_response(
    rs: Vec<(i8, String, i16, Option<String>)>,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut r = AlterConfigsResponse::default();
    r.responses = rs
        .into_iter()
        .map(|(t, n, code, msg)| {
            let mut x = AlterConfigsResourceResponse::default();
            x.resource_type = t;
            x.resource_name = StrBytes::from_string(n);
            x.error_code = code;
            x.error_message = msg.map(StrBytes::from_string);
            x
        })
        .collect();
    r
}

/// The IncrementalAlterConfigs answer from `alter_configs_results`.
pub(crate) fn incremental_alter_configs_response(
    rs: Vec<(i8, String, i16, Option<String>)>,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut r = IncrementalAlterConfigsResponse::default();
    r.responses = rs
        .into_iter()
        .map(|(t, n, code, msg)| {
            let mut x = AlterConfigsResourceResponse::default();
            x.resource_type = t;
            x.resource_name = StrBytes::from_string(n);
            x.error_code = code;
            x.error_message = msg.map(StrBytes::from_string);
            x
        })
        .collect();
    r
}
