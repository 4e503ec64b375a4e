//! The Kafka listener's own types, shared by its codecs (`codec`: data
//! and admin APIs; `groups`: the group APIs), so neither imports the other
//! for them.
//!
//! Owns: what a decoded request asks for (`Work`, `Decoded`), the shapes
//! answers are built from, and response framing (`encode_frame`).
//!
//! Must never: decode or translate a request (the codecs do).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::coordinator_host::KafkaGroupCall;
use crate::group::classic::ClassicCall;
use crate::protocol::RequestFrame;

/// The shard's topic ids both ways: Metadata v10+ and Fetch v13+ name
/// topics by id, the rest of shardlog by name.
pub trait TopicIds {
    fn name_of_id(&self, id: &[u8; 16]) -> Option<String>;
    fn id_of_name(&self, name: &str) -> Option<[u8; 16]>;
}

/// No topics at all (decoders under test and fuzzing).
pub struct NoTopicIds;

impl TopicIds for NoTopicIds {
    fn name_of_id(&self, _: &[u8; 16]) -> Option<String> {
        None
    }
    fn id_of_name(&self, _: &str) -> Option<[u8; 16]> {
        None
    }
}

/// A request named a topic id no topic has: the stand-in name its refusal
/// carries through the shape ('?' is in no topic name), and back.
pub(crate) fn unknown_id_name(id: &[u8; 16]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("?{hex}")
}

pub(crate) fn id_of_unknown_name(name: &str) -> Option<[u8; 16]> {
    let hex = name.strip_prefix('?')?;
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// The id to answer for a topic: its own, or the unknown one a request
/// named (all zero when neither).
pub(crate) fn answer_id(ids: &dyn TopicIds, name: &str) -> [u8; 16] {
    ids.id_of_name(name)
        .or_else(|| id_of_unknown_name(name))
        .unwrap_or([0; 16])
}

/// One resource of a DescribeConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigResource {
    pub resource_type: i8,
    pub name: String,
    /// `None`: every setting.
    pub keys: Option<Vec<String>>,
    /// The authorizer refused it: answered with this Kafka code, nothing
    /// of it described.
    pub denied: Option<i16>,
}

/// Which Kafka-only group calls a request makes. DescribeGroups and
/// DeleteGroups name their groups in the shape: the calls are built when
/// they are sent, not at decode (what a decode allocates stays small per
/// wire byte).
#[derive(Debug)]
pub enum KafkaGroupKind {
    Classic(Box<ClassicCall>),
    Describe,
    Delete,
    /// OffsetDelete: the shape's first entry names the group, the rest
    /// are the topics with their partitions.
    OffsetDelete,
    /// TxnOffsetCommit: the commits and the producer id whose transaction
    /// holds them.
    TxnOffsetCommit(Box<(crate::protocol::OffsetCommitRequest, i64)>),
}

impl KafkaGroupKind {
    /// The calls, one per group for DescribeGroups and DeleteGroups.
    pub fn into_calls(self, shape: &Shape) -> Vec<KafkaGroupCall> {
        match self {
            KafkaGroupKind::Classic(c) => vec![KafkaGroupCall::Classic(c)],
            KafkaGroupKind::Describe => shape
                .iter()
                .map(|(g, _)| KafkaGroupCall::Describe(g.clone()))
                .collect(),
            KafkaGroupKind::Delete => shape
                .iter()
                .map(|(g, _)| KafkaGroupCall::Delete(g.clone()))
                .collect(),
            KafkaGroupKind::TxnOffsetCommit(c) => {
                let (request, producer_id) = *c;
                vec![KafkaGroupCall::TxnOffsetCommit {
                    request,
                    producer_id,
                }]
            }
            KafkaGroupKind::OffsetDelete => match shape.split_first() {
                Some(((group, _), topics)) => vec![KafkaGroupCall::OffsetDelete {
                    group: group.clone(),
                    topics: topics.to_vec(),
                }],
                None => vec![],
            },
        }
    }
}

/// Topics and partitions of a request, in request order: what a response
/// names when the whole request failed (Kafka has no request-level error
/// for most APIs, so the error goes on every partition).
pub type Shape = Vec<(String, Vec<i32>)>;

/// Topics refused by the listener: (name, Kafka error code, message).
pub type Refused = Vec<(String, i16, String)>;

/// What one Kafka request asks for.
#[derive(Debug)]
pub enum Work {
    /// Answered by the listener itself; `error` set for an unknown
    /// ApiVersions version (KIP-511: answer v0 with UNSUPPORTED_VERSION).
    ApiVersions { error: i16 },
    /// Go through the router; `respond` false for a produce with acks=0.
    Native {
        /// Boxed: far larger than the other variants.
        frame: Box<RequestFrame>,
        shape: Shape,
        respond: bool,
        /// Topics the listener refused itself (a Kafka-only rule, such as
        /// the replication factor): (name, Kafka error, message), answered
        /// beside the router's results.
        refused: Refused,
        /// DescribeConfigs: the resources asked for, in request order
        /// (the native request describes the topics among them); empty
        /// for every other API.
        describe_configs: Vec<ConfigResource>,
    },
    /// Kafka-only group calls (the classic protocol, DescribeGroups,
    /// DeleteGroups), each served in-process by its group's coordinator
    /// shard; answered in call order. `shape`: the group ids asked for.
    KafkaGroups { kind: KafkaGroupKind, shape: Shape },
    /// Answered at once with this Kafka error on every partition.
    Refuse { shape: Shape, error: i16 },
    /// AddPartitionsToTxn answered at once, each topic of the shape with
    /// its own error (the authorizer's: the denied topics
    /// TOPIC_AUTHORIZATION_FAILED, the others OPERATION_NOT_ATTEMPTED, as
    /// Kafka).
    RefuseAdd { shape: Shape, errors: Vec<i16> },
    /// Answered by the listener from the router's coordinator map.
    FindCoordinator { keys: Vec<String>, key_type: i8 },
    /// A new producer id from this shard (`producer_state::ProducerIds`):
    /// InitProducerId without a transactional id.
    InitProducerId,
    /// KIP-890 part 2 (transaction version 2): `add` (a `TxnCall::Add` or
    /// `AddOffsets` at version 2) joins the request's partitions to its
    /// transaction at the coordinator before `then` starts: Produce v12+
    /// adds the partitions it writes transactionally, TxnOffsetCommit v5+
    /// its group's offsets partition. A partition whose add failed is
    /// answered with that error and left out of `then`.
    TxnAdd {
        add: crate::txn_host::TxnCall,
        then: Box<Work>,
    },
    /// SASL (KIP-43, KIP-152): answered by the connection's authenticator.
    Sasl(SaslWork),
    /// SCRAM users (KIP-554): described from this shard's copy, altered
    /// through the controller.
    Users(UsersWork),
    /// ACLs (KIP-11): described from this shard's copy, created and
    /// deleted through the controller.
    Acls(AclsWork),
    /// Client quotas (KIP-546): described from this shard's copy, altered
    /// through the controller.
    Quotas(QuotasWork),
    /// Transaction calls, each to its transactional id's coordinator shard
    /// (ListTransactions: to every shard), answered in call order.
    Txn {
        calls: Vec<crate::txn_host::TxnCall>,
        /// ListTransactions' state names that are none of Kafka's.
        unknown_states: Vec<String>,
    },
}

#[derive(Debug)]
pub enum SaslWork {
    /// SaslHandshake: the mechanism the client wants.
    Handshake(String),
    /// SaslAuthenticate: the mechanism's next token.
    Authenticate(bytes::Bytes),
}

#[derive(Debug)]
pub enum UsersWork {
    /// DescribeUserScramCredentials: these users, or (None) all.
    Describe(Option<Vec<String>>),
    /// AlterUserScramCredentials.
    Alter(Vec<crate::security::users::UserChange>),
}

/// A binding or filter off the wire the ACL model cannot hold: why.
pub type InvalidAcl = String;

#[derive(Debug)]
pub enum AclsWork {
    /// CreateAcls: each creation, or why it is invalid.
    Create(Vec<Result<crate::security::acl::AclBinding, InvalidAcl>>),
    /// DescribeAcls: the filter, or why it is invalid.
    Describe(Result<crate::security::acl::AclFilter, InvalidAcl>),
    /// DeleteAcls: each filter, or why it is invalid.
    Delete(Vec<Result<crate::security::acl::AclFilter, InvalidAcl>>),
}

/// An entity as a request names it: (entity type, name; None: default).
pub type RawEntity = Vec<(String, Option<String>)>;

#[derive(Debug)]
pub enum QuotasWork {
    /// DescribeClientQuotas: the components (or why they are invalid),
    /// strict or not.
    Describe {
        components: Result<Vec<(String, crate::security::quota::Match)>, String>,
        strict: bool,
    },
    /// AlterClientQuotas: each entry as asked, with its change (or why it
    /// is invalid).
    Alter {
        entries: Vec<(
            RawEntity,
            Result<crate::security::quota::QuotaChange, String>,
        )>,
        validate_only: bool,
    },
}

impl Work {
    pub fn txn(calls: Vec<crate::txn_host::TxnCall>) -> Work {
        Work::Txn {
            calls,
            unknown_states: vec![],
        }
    }

    /// The common case: through the router, answered, nothing refused by
    /// the listener, not a DescribeConfigs.
    pub fn native(frame: Box<RequestFrame>, shape: Shape) -> Work {
        Work::Native {
            frame,
            shape,
            respond: true,
            refused: vec![],
            describe_configs: vec![],
        }
    }
}

/// A decoded Kafka request.
#[derive(Debug)]
pub struct Decoded {
    pub api: ApiKey,
    /// The version the answer is encoded with.
    pub version: i16,
    pub correlation_id: i32,
    /// The request header's client id (quotas are per client id): the
    /// frame's own bytes, no copy on the data path.
    pub client_id: Option<kafka_protocol::protocol::StrBytes>,
    pub work: Work,
}

/// A topic name off the wire, as shardlog names it.
pub(crate) fn name_of(t: &TopicName) -> String {
    t.0.as_str().to_owned()
}

pub(crate) fn partition_u32(p: i32) -> u32 {
    // A negative partition cannot exist; u32::MAX is unknown to every topic.
    u32::try_from(p).unwrap_or(u32::MAX)
}

/// A count or duration off the wire; a negative one is 0.
pub(crate) fn non_negative(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

pub(crate) fn topic_name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_owned()))
}

/// A whole response frame: length, header (its version from the API and
/// version), body.
pub fn encode_frame<M: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<Bytes, anyhow::Error> {
    let header_version = api.response_header_version(version);
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let size = header.compute_size(header_version)? + body.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(i32::try_from(size)?);
    header.encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    debug_assert_eq!(buf.len(), 4 + size);
    Ok(buf.freeze())
}

/// `encode_frame` behind a trait object, so one closure encodes any body.
pub(crate) trait EncodeDyn {
    fn frame(&self, api: ApiKey, version: i16, cid: i32) -> Result<Bytes, anyhow::Error>;
}

impl<M: Encodable> EncodeDyn for M {
    fn frame(&self, api: ApiKey, version: i16, cid: i32) -> Result<Bytes, anyhow::Error> {
        encode_frame(api, version, cid, self)
    }
}

/// Decodes the consumer-protocol assignments a SyncGroup in `work`
/// carries, as describing its group later does; returns how many decode.
/// For the fuzz targets (in-crate and cargo-fuzz): every decoder that sees
/// network bytes runs under them.
pub fn classic_assignments(work: &Work) -> usize {
    let Work::KafkaGroups {
        kind: KafkaGroupKind::Classic(call),
        ..
    } = work
    else {
        return 0;
    };
    let ClassicCall::Sync(s) = call.as_ref() else {
        return 0;
    };
    s.assignments
        .iter()
        .filter(|(_, bytes)| crate::group::classic::consumer_assignment(bytes).is_some())
        .count()
}
