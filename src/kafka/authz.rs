//! Kafka's authorization of each request (KIP-11; the checks of Kafka's
//! KafkaApis): which operation on which resources an API needs, what a
//! principal without it gets (Kafka's *_AUTHORIZATION_FAILED codes), and
//! what listings hide (Metadata, ListGroups, ListTransactions show only
//! what the principal may describe).
//!
//! Owns: the mapping from a decoded request (`Work`) to its checks; taking
//! denied topics out of a request and answering them beside the rest;
//! filtering listings. Pure: the ACLs and the principal come in `Access`.
//!
//! Must never: let a denied topic's data be read or written (it is taken
//! out of the request before the router sees it), or tell a principal
//! about a topic it may not describe beyond TOPIC_AUTHORIZATION_FAILED for
//! a name it asked for.

use std::rc::Rc;

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;

use super::configs::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_TOPIC};
use super::wire::{
    AclsWork, ConfigResource, KafkaGroupKind, QuotasWork, Refused, Shape, UsersWork, Work,
};
use crate::coordinator_host::{KafkaGroupCall, KafkaGroupDescription, KafkaGroupReply};
use crate::group::classic::ClassicCall;
use crate::protocol::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult, DescribeProducersPartitionResult,
    DescribeProducersTopicResult, ErrorCode, FetchPartitionResult, FetchTopicResult,
    GroupDescription, ListOffsetsPartitionResult, ListOffsetsTopicResult, PartitionError,
    ProducePartitionResult, ProduceTopicResult, Request, Response, TopicInfo, TopicPartitionErrors,
    TopicResult, WireError,
};
use crate::security::acl::{Acls, Operation, ResourceType};
use crate::txn_host::{TxnCall, TxnReply};

/// Kafka's name of the one cluster resource.
pub const CLUSTER: &str = "kafka-cluster";
/// The principal of a connection that did not authenticate (Kafka's).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Who asks, from where, against which ACLs.
#[derive(Debug, Clone)]
pub struct Access {
    pub acls: Rc<Acls>,
    pub super_users: Rc<Vec<String>>,
    pub principal: String,
    /// The client's address as ACL hosts name it (an IP).
    pub host: String,
}

impl Access {
    /// `principal` connected from `peer` (an ACL host is its IP), checked
    /// against `acls` with `super_users` allowed everything.
    pub fn new(
        acls: Rc<Acls>,
        super_users: Rc<Vec<String>>,
        principal: String,
        peer: Option<std::net::SocketAddr>,
    ) -> Access {
        Access {
            acls,
            super_users,
            principal,
            host: peer.map(|p| p.ip().to_string()).unwrap_or_default(),
        }
    }

    pub fn may(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        self.acls
            .authorize(&self.super_users, &self.principal, &self.host, op, rt, name)
    }

    fn may_cluster(&self, op: Operation) -> bool {
        self.may(op, ResourceType::Cluster, CLUSTER)
    }

    fn may_topic(&self, op: Operation, topic: &str) -> bool {
        self.may(op, ResourceType::Topic, topic)
    }
}

/// One refused check, for the log and the counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub operation: Operation,
    pub resource: ResourceType,
    pub name: String,
}

/// What a listing shows only where the principal may describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Topics,
    Groups,
    Transactions,
}

/// What authorization did to a request.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Topics taken out of the request: answered with this error on
    /// these partitions beside what the router returns.
    pub topics: Vec<(String, Vec<u32>, ErrorCode)>,
    /// A listing to filter when it comes back.
    pub listing: Option<Listing>,
    /// Every refused check (the request may still go on without them).
    pub denials: Vec<Denial>,
    /// The whole request refused with this Kafka code, for work the door
    /// answers itself with what it asked (client quotas).
    pub refused: Option<i16>,
    /// Groups (DescribeGroups, DeleteGroups) or coordinator keys
    /// (FindCoordinator) answered with their authorization error beside
    /// the others, which go on.
    pub denied_keys: Vec<String>,
}

impl Verdict {
    fn deny(&mut self, operation: Operation, resource: ResourceType, name: &str) {
        self.denials.push(Denial {
            operation,
            resource,
            name: name.to_owned(),
        });
    }
}

fn refuse(shape: Shape, e: ResponseError) -> Work {
    Work::Refuse {
        shape,
        error: e.code(),
    }
}

/// The checks of Kafka's KafkaApis for one request: `work` as it may go
/// on (a `Work::Refuse` when a whole-request check failed) and what was
/// taken out of it.
pub fn authorize(api: ApiKey, work: Work, a: &Access) -> (Work, Verdict) {
    let mut v = Verdict::default();
    let work = check(api, work, a, &mut v);
    (work, v)
}

fn check(api: ApiKey, work: Work, a: &Access, v: &mut Verdict) -> Work {
    use Operation::*;
    use ResourceType as R;
    match work {
        Work::ApiVersions { .. } | Work::Sasl(_) | Work::Refuse { .. } | Work::RefuseAdd { .. } => {
            work
        }
        Work::Users(u) => {
            let op = match u {
                UsersWork::Describe(_) => Describe,
                UsersWork::Alter(_) => Alter,
            };
            if a.may_cluster(op) {
                Work::Users(u)
            } else {
                v.deny(op, R::Cluster, CLUSTER);
                refuse(vec![], ResponseError::ClusterAuthorizationFailed)
            }
        }
        Work::Quotas(w) => {
            // Answered by the door with each entry's entity: the refusal
            // goes in the verdict.
            let op = match w {
                QuotasWork::Describe { .. } => DescribeConfigs,
                QuotasWork::Alter { .. } => AlterConfigs,
            };
            if !a.may_cluster(op) {
                v.deny(op, R::Cluster, CLUSTER);
                v.refused = Some(ResponseError::ClusterAuthorizationFailed.code());
            }
            Work::Quotas(w)
        }
        Work::Acls(w) => {
            let op = match w {
                AclsWork::Describe(_) => Describe,
                AclsWork::Create(_) | AclsWork::Delete(_) => Alter,
            };
            if a.may_cluster(op) {
                Work::Acls(w)
            } else {
                v.deny(op, R::Cluster, CLUSTER);
                refuse(w.shape(), ResponseError::ClusterAuthorizationFailed)
            }
        }
        Work::InitProducerId => {
            // KIP-679: IdempotentWrite on the cluster, or Write on any topic.
            if a.may_cluster(IdempotentWrite)
                || a.acls
                    .allows_any(&a.super_users, &a.principal, &a.host, Write, R::Topic)
            {
                Work::InitProducerId
            } else {
                v.deny(IdempotentWrite, R::Cluster, CLUSTER);
                refuse(vec![], ResponseError::ClusterAuthorizationFailed)
            }
        }
        Work::FindCoordinator { keys, key_type } => {
            // Key by key (v4 batches them): a denied one is answered with
            // its error (`coordinator_denied`), the others are found.
            let rt = if key_type == 1 {
                R::TransactionalId
            } else {
                R::Group
            };
            for k in keys.iter().filter(|k| !a.may(Describe, rt, k)) {
                v.deny(Describe, rt, k);
                v.denied_keys.push(k.clone());
            }
            Work::FindCoordinator { keys, key_type }
        }
        Work::Txn {
            calls,
            unknown_states,
        } => {
            for c in &calls {
                if let Some((op, rt, name, e)) = txn_denied(c, a) {
                    v.deny(op, rt, &name);
                    if e != ResponseError::TopicAuthorizationFailed {
                        return refuse(txn_shape(&calls), e);
                    }
                    // An add with topics it may not write: as Kafka, each
                    // denied topic is named, the others not attempted.
                    let shape = txn_shape(&calls);
                    let errors = shape
                        .iter()
                        .map(|(t, _)| {
                            if a.may_topic(Write, t) {
                                ResponseError::OperationNotAttempted.code()
                            } else {
                                if *t != name {
                                    v.deny(Write, R::Topic, t);
                                }
                                ResponseError::TopicAuthorizationFailed.code()
                            }
                        })
                        .collect();
                    return Work::RefuseAdd { shape, errors };
                }
                if matches!(c, TxnCall::List { .. }) {
                    v.listing = Some(Listing::Transactions);
                }
            }
            Work::Txn {
                calls,
                unknown_states,
            }
        }
        Work::TxnAdd { add, then } => {
            if let Some((op, rt, name, e)) = txn_denied(&add, a) {
                v.deny(op, rt, &name);
                let shape = match *then {
                    Work::Native { shape, .. } | Work::KafkaGroups { shape, .. } => shape,
                    _ => vec![],
                };
                return refuse(shape, e);
            }
            let then = check(api, *then, a, v);
            Work::TxnAdd {
                add,
                then: Box::new(then),
            }
        }
        Work::KafkaGroups {
            kind: kind @ (KafkaGroupKind::Describe | KafkaGroupKind::Delete),
            shape,
        } => {
            // Group by group, as Kafka: a denied group is answered with
            // GROUP_AUTHORIZATION_FAILED (`denied_group_reply`), the
            // others are described or deleted.
            let op = match kind {
                KafkaGroupKind::Describe => Describe,
                _ => Delete,
            };
            for (g, _) in shape.iter().filter(|(g, _)| !a.may(op, R::Group, g)) {
                v.deny(op, R::Group, g);
                v.denied_keys.push(g.clone());
            }
            Work::KafkaGroups { kind, shape }
        }
        Work::KafkaGroups { kind, shape } => {
            let (op, groups): (Operation, Vec<&str>) = match &kind {
                KafkaGroupKind::Classic(c) => (Read, vec![classic_group(c)]),
                KafkaGroupKind::Describe | KafkaGroupKind::Delete => {
                    unreachable!("checked group by group above")
                }
                KafkaGroupKind::OffsetDelete => (
                    Delete,
                    shape.first().map(|(g, _)| &g[..]).into_iter().collect(),
                ),
                KafkaGroupKind::TxnOffsetCommit(c) => (Read, vec![&c.0.group[..]]),
            };
            if let Some(g) = groups.into_iter().find(|g| !a.may(op, R::Group, g)) {
                v.deny(op, R::Group, g);
                return refuse(shape, ResponseError::GroupAuthorizationFailed);
            }
            // The topics of an offset commit or delete: Read on each.
            let topics: Vec<String> = match &kind {
                KafkaGroupKind::TxnOffsetCommit(c) => {
                    c.0.topics.iter().map(|t| t.name.clone()).collect()
                }
                KafkaGroupKind::OffsetDelete => {
                    shape.iter().skip(1).map(|(t, _)| t.clone()).collect()
                }
                _ => vec![],
            };
            if let Some(t) = topics.iter().find(|t| !a.may_topic(Read, t)) {
                v.deny(Read, R::Topic, t);
                return refuse(shape, ResponseError::TopicAuthorizationFailed);
            }
            Work::KafkaGroups { kind, shape }
        }
        Work::Native {
            mut frame,
            mut shape,
            respond,
            mut refused,
            mut describe_configs,
        } => {
            if let Some(op) = cluster_api(api) {
                if !a.may_cluster(op) {
                    v.deny(op, R::Cluster, CLUSTER);
                    return refuse(shape, ResponseError::ClusterAuthorizationFailed);
                }
            } else if api == ApiKey::DescribeConfigs {
                describe_configs_each(&mut describe_configs, &mut frame.request, a, v);
            } else if matches!(api, ApiKey::AlterConfigs | ApiKey::IncrementalAlterConfigs) {
                alter_configs_each(&mut shape, &mut refused, &mut frame.request, a, v);
            } else if let Some(e) = native(&mut frame.request, a, v) {
                return refuse(shape, e);
            }
            Work::Native {
                frame,
                shape,
                respond,
                refused,
                describe_configs,
            }
        }
    }
}

/// FindCoordinator's error for a key the principal may not describe
/// (`Verdict::denied_keys`); None: found as usual.
pub fn coordinator_denied(v: &Verdict, key_type: i8, key: &str) -> Option<i16> {
    v.denied_keys.iter().any(|k| k == key).then(|| {
        if key_type == 1 {
            ResponseError::TransactionalIdAuthorizationFailed.code()
        } else {
            ResponseError::GroupAuthorizationFailed.code()
        }
    })
}

/// The answer for a group call the principal may not make
/// (`Verdict::denied_keys`), in place of the coordinator's; None: the call
/// goes to its coordinator.
pub fn denied_group_reply(
    v: &Verdict,
    call: &KafkaGroupCall,
) -> Option<Result<KafkaGroupReply, WireError>> {
    let group = call.group();
    if !v.denied_keys.iter().any(|k| k == group) {
        return None;
    }
    let e = WireError::new(
        ErrorCode::GroupAuthorizationFailed,
        format!("not authorized to access group {group:?}"),
    );
    Some(Ok(match call {
        KafkaGroupCall::Describe(_) => {
            KafkaGroupReply::Describe(KafkaGroupDescription::Native(GroupDescription {
                group: group.to_owned(),
                error: Some(e),
                state: String::new(),
                group_epoch: 0,
                strategy: String::new(),
                coordinator_shard: 0,
                members: vec![],
                offsets: vec![],
            }))
        }
        _ => KafkaGroupReply::Delete(Some(e)),
    }))
}

/// DescribeConfigs resource by resource, as Kafka: a topic needs
/// DescribeConfigs on it, a broker (or its loggers) DescribeConfigs on the
/// cluster; a denied resource is answered with its error and not looked
/// up (its topic leaves the request), the others are described.
fn describe_configs_each(
    resources: &mut [ConfigResource],
    request: &mut Request,
    a: &Access,
    v: &mut Verdict,
) {
    use Operation::DescribeConfigs;
    let mut denied_topics = Vec::new();
    for r in resources.iter_mut() {
        r.denied = match r.resource_type {
            RESOURCE_TOPIC if !a.may_topic(DescribeConfigs, &r.name) => {
                v.deny(DescribeConfigs, ResourceType::Topic, &r.name);
                denied_topics.push(r.name.clone());
                Some(ResponseError::TopicAuthorizationFailed.code())
            }
            RESOURCE_BROKER | RESOURCE_BROKER_LOGGER if !a.may_cluster(DescribeConfigs) => {
                v.deny(DescribeConfigs, ResourceType::Cluster, CLUSTER);
                Some(ResponseError::ClusterAuthorizationFailed.code())
            }
            _ => None,
        };
    }
    if let Request::DescribeTopics {
        topics: Some(names),
    } = request
    {
        names.retain(|n| !denied_topics.contains(n));
    }
}

/// (Incremental)AlterConfigs resource by resource, as Kafka: a topic needs
/// AlterConfigs on it, a broker AlterConfigs on the cluster; a denied
/// resource is refused in its place among the decoder's refusals (the
/// shape's flag, `configs::alter_configs_results`) and its topic leaves
/// the request; the others go on.
fn alter_configs_each(
    shape: &mut Shape,
    refused: &mut Refused,
    request: &mut Request,
    a: &Access,
    v: &mut Verdict,
) {
    use Operation::AlterConfigs;
    let mut decoded = std::mem::take(refused).into_iter();
    let mut denied_topics = Vec::new();
    for (name, flags) in shape.iter_mut() {
        if flags.get(1) == Some(&1) {
            refused.extend(decoded.next()); // refused at decode
            continue;
        }
        let rtype = flags.first().map_or(RESOURCE_TOPIC, |&t| t as i8);
        let denied = match rtype {
            RESOURCE_TOPIC if !a.may_topic(AlterConfigs, name) => {
                v.deny(AlterConfigs, ResourceType::Topic, name);
                denied_topics.push(name.clone());
                Some(ResponseError::TopicAuthorizationFailed)
            }
            RESOURCE_BROKER | RESOURCE_BROKER_LOGGER if !a.may_cluster(AlterConfigs) => {
                v.deny(AlterConfigs, ResourceType::Cluster, CLUSTER);
                Some(ResponseError::ClusterAuthorizationFailed)
            }
            _ => None,
        };
        if let Some(e) = denied {
            flags.resize(flags.len().max(2), 0);
            flags[1] = 1;
            let why = format!("not authorized to alter the configs of {name:?}");
            refused.push((name.clone(), e.code(), why));
        }
    }
    if let Request::AlterConfigs { topics, .. } = request {
        topics.retain(|t| !denied_topics.contains(&t.name));
    }
}

/// What a refused transaction request names in its answer: an add's
/// partitions by topic, or the ids described.
fn txn_shape(calls: &[TxnCall]) -> Shape {
    let mut shape: Shape = Vec::new();
    for c in calls {
        match c {
            TxnCall::Add { partitions, .. } => {
                for tp in partitions {
                    let p = tp.partition as i32;
                    match shape.iter_mut().find(|(t, _)| *t == tp.topic) {
                        Some((_, ps)) => ps.push(p),
                        None => shape.push((tp.topic.clone(), vec![p])),
                    }
                }
            }
            TxnCall::Describe(id) => shape.push((id.clone(), vec![])),
            _ => {}
        }
    }
    shape
}

/// APIs about the cluster as a whole: the operation they need on it.
fn cluster_api(api: ApiKey) -> Option<Operation> {
    match api {
        ApiKey::DescribeCluster
        | ApiKey::DescribeLogDirs
        | ApiKey::DescribeQuorum
        | ApiKey::ListPartitionReassignments => Some(Operation::Describe),
        ApiKey::ElectLeaders
        | ApiKey::AlterReplicaLogDirs
        | ApiKey::AlterPartitionReassignments => Some(Operation::Alter),
        _ => None,
    }
}

fn classic_group(c: &ClassicCall) -> &str {
    c.group()
}

/// A transaction call's check: Write on its transactional id (Describe to
/// describe it), and for an add Write on the topics or Read on the group.
fn txn_denied(c: &TxnCall, a: &Access) -> Option<(Operation, ResourceType, String, ResponseError)> {
    use Operation::*;
    use ResourceType as R;
    let id_op = match c {
        TxnCall::List { .. } => return None,
        TxnCall::Describe(_) => Describe,
        _ => Write,
    };
    let id = c.id().unwrap_or_default();
    if !a.may(id_op, R::TransactionalId, id) {
        return Some((
            id_op,
            R::TransactionalId,
            id.to_owned(),
            ResponseError::TransactionalIdAuthorizationFailed,
        ));
    }
    match c {
        TxnCall::Add { partitions, .. } => partitions
            .iter()
            .find(|tp| !a.may_topic(Write, &tp.topic))
            .map(|tp| {
                (
                    Write,
                    R::Topic,
                    tp.topic.clone(),
                    ResponseError::TopicAuthorizationFailed,
                )
            }),
        TxnCall::AddOffsets { group, .. } if !a.may(Read, R::Group, group) => Some((
            Read,
            R::Group,
            group.clone(),
            ResponseError::GroupAuthorizationFailed,
        )),
        _ => None,
    }
}

/// Takes the topics the principal may not `op` out of `topics` (each with
/// its partitions), answered with TOPIC_AUTHORIZATION_FAILED.
fn take_topics<T>(
    topics: &mut Vec<T>,
    op: Operation,
    a: &Access,
    v: &mut Verdict,
    name: impl Fn(&T) -> &str,
    partitions: impl Fn(&T) -> Vec<u32>,
) {
    topics.retain(|t| {
        if a.may_topic(op, name(t)) {
            return true;
        }
        v.deny(op, ResourceType::Topic, name(t));
        v.topics.push((
            name(t).to_owned(),
            partitions(t),
            ErrorCode::TopicAuthorizationFailed,
        ));
        false
    });
}

/// The checks of a request the router serves: denied topics taken out,
/// or a whole-request refusal.
fn native(r: &mut Request, a: &Access, v: &mut Verdict) -> Option<ResponseError> {
    use Operation::*;
    use ResourceType as R;
    let group = |op: Operation, g: &str, v: &mut Verdict| {
        if a.may(op, R::Group, g) {
            None
        } else {
            v.deny(op, R::Group, g);
            Some(ResponseError::GroupAuthorizationFailed)
        }
    };
    match r {
        // Not decoded from Kafka requests (the door's own work).
        Request::ApiVersions
        | Request::DescribeUsers(_)
        | Request::AlterUsers(_)
        | Request::DescribeAcls(_)
        | Request::AlterAcls { .. }
        | Request::DescribeQuotas
        | Request::AlterQuotas { .. }
        | Request::SaslAuthenticate { .. } => None,
        Request::Metadata { topics: None, .. } => {
            v.listing = Some(Listing::Topics);
            None
        }
        Request::Metadata {
            topics: Some(names),
            auto_create,
            ..
        } => {
            take_topics(names, Describe, a, v, |n| n, |_| vec![]);
            // Creating a topic by asking for it needs Create (on the
            // cluster or the topic); without it a missing topic is
            // UNKNOWN_TOPIC_OR_PARTITION.
            if *auto_create
                && !a.may_cluster(Create)
                && !names.iter().all(|n| a.may_topic(Create, n))
            {
                *auto_create = false;
            }
            None
        }
        Request::DescribeTopics { topics } => {
            // DescribeConfigs: DescribeConfigs on each topic asked for.
            match topics {
                None => v.listing = Some(Listing::Topics),
                Some(names) => {
                    if let Some(n) = names.iter().find(|n| !a.may_topic(DescribeConfigs, n)) {
                        v.deny(DescribeConfigs, R::Topic, n);
                        return Some(ResponseError::TopicAuthorizationFailed);
                    }
                }
            }
            None
        }
        Request::AlterConfigs { topics, .. } => {
            match topics.iter().find(|t| !a.may_topic(AlterConfigs, &t.name)) {
                Some(t) => {
                    v.deny(AlterConfigs, R::Topic, &t.name);
                    Some(ResponseError::TopicAuthorizationFailed)
                }
                None => None,
            }
        }
        Request::Produce(p) => {
            take_topics(
                &mut p.topics,
                Write,
                a,
                v,
                |t| &t.name,
                |t| t.partitions.iter().map(|p| p.partition).collect(),
            );
            None
        }
        Request::Fetch(f) => {
            take_topics(
                &mut f.topics,
                Read,
                a,
                v,
                |t| &t.name,
                |t| t.partitions.iter().map(|p| p.partition).collect(),
            );
            None
        }
        Request::ListOffsets(ts) => {
            take_topics(
                ts,
                Describe,
                a,
                v,
                |t| &t.name,
                |t| t.partitions.iter().map(|p| p.partition).collect(),
            );
            None
        }
        Request::DeleteRecords(ts) => {
            take_topics(
                ts,
                Delete,
                a,
                v,
                |t| &t.name,
                |t| t.partitions.iter().map(|p| p.partition).collect(),
            );
            None
        }
        Request::DescribeProducers(ts) => {
            take_topics(ts, Read, a, v, |t| &t.topic, |t| t.partitions.clone());
            None
        }
        Request::CreateTopics(ts) => {
            if !a.may_cluster(Create) {
                take_topics(ts, Create, a, v, |t| &t.name, |_| vec![]);
            }
            None
        }
        Request::DeleteTopics(ts) => {
            take_topics(ts, Delete, a, v, |t| t, |_| vec![]);
            None
        }
        Request::CreatePartitions(ts) => {
            take_topics(ts, Alter, a, v, |t| &t.name, |_| vec![]);
            None
        }
        Request::GroupHeartbeat(h) => group(Read, &h.group, v),
        Request::LeaveGroup(l) => group(Read, &l.group, v),
        Request::OffsetCommit(c) => {
            let e = group(Read, &c.group, v);
            if e.is_none() {
                take_topics(
                    &mut c.topics,
                    Read,
                    a,
                    v,
                    |t| &t.name,
                    |t| t.partitions.iter().map(|p| p.partition).collect(),
                );
            }
            e
        }
        Request::OffsetFetch(f) => group(Describe, &f.group, v),
        Request::ListGroups => {
            if !a.may_cluster(Describe) {
                v.listing = Some(Listing::Groups);
            }
            None
        }
        Request::DescribeGroups(gs) => {
            let denied = gs.iter().find(|g| !a.may(Describe, R::Group, g)).cloned();
            denied.and_then(|g| group(Describe, &g, v))
        }
        Request::ListTransactions { .. } => {
            v.listing = Some(Listing::Transactions);
            None
        }
        Request::DescribeTransactions(ids) => {
            match ids.iter().find(|i| !a.may(Describe, R::TransactionalId, i)) {
                Some(i) => {
                    v.deny(Describe, R::TransactionalId, i);
                    Some(ResponseError::TransactionalIdAuthorizationFailed)
                }
                None => None,
            }
        }
    }
}

/// The native door's checks (`--authorizer acl` on a native listener that
/// authenticates): Kafka's rules on the same requests, and for the
/// operators' requests Kafka's own (users and ACLs: Describe/Alter on the
/// cluster; quotas: DescribeConfigs/AlterConfigs on the cluster). `Err`:
/// the whole request refused, with its native code; `Ok`: what was taken
/// out (answer with `emptied`/`answer` as the Kafka door does).
pub fn check_native(r: &mut Request, a: &Access) -> Result<Verdict, (WireError, Verdict)> {
    use Operation::*;
    let mut v = Verdict::default();
    let cluster = match r {
        Request::DescribeUsers(_) | Request::DescribeAcls(_) => Some(Describe),
        Request::AlterUsers(_) | Request::AlterAcls { .. } => Some(Alter),
        Request::DescribeQuotas => Some(DescribeConfigs),
        Request::AlterQuotas { .. } => Some(AlterConfigs),
        _ => None,
    };
    let refused = match cluster {
        Some(op) if !a.may_cluster(op) => {
            v.deny(op, ResourceType::Cluster, CLUSTER);
            Some(ErrorCode::ClusterAuthorizationFailed)
        }
        Some(_) => None,
        None => native(r, a, &mut v).map(|e| match e {
            ResponseError::GroupAuthorizationFailed => ErrorCode::GroupAuthorizationFailed,
            ResponseError::TransactionalIdAuthorizationFailed => {
                ErrorCode::TransactionalIdAuthorizationFailed
            }
            ResponseError::ClusterAuthorizationFailed => ErrorCode::ClusterAuthorizationFailed,
            _ => ErrorCode::TopicAuthorizationFailed,
        }),
    };
    match refused {
        Some(code) => {
            let what = v
                .denials
                .first()
                .map(|d| format!("{} on {:?} {:?}", d.operation.name(), d.resource, d.name))
                .unwrap_or_default();
            let w = WireError::new(code, format!("{} may not {what}", a.principal));
            Err((w, v))
        }
        None => Ok(v),
    }
}

/// A request every topic of which was taken out: its (empty) answer,
/// without going to the router (a Fetch would otherwise wait its max
/// wait for nothing).
pub fn emptied(r: &Request, v: &Verdict) -> Option<Response> {
    if v.topics.is_empty() {
        return None;
    }
    Some(match r {
        Request::Produce(p) if p.topics.is_empty() => Response::Produce(vec![]),
        Request::Fetch(f) if f.topics.is_empty() => Response::Fetch(vec![]),
        Request::ListOffsets(t) if t.is_empty() => Response::ListOffsets(vec![]),
        Request::DeleteRecords(t) if t.is_empty() => Response::DeleteRecords(vec![]),
        Request::DescribeProducers(t) if t.is_empty() => Response::DescribeProducers(vec![]),
        Request::CreateTopics(t) if t.is_empty() => Response::CreateTopics(vec![]),
        Request::DeleteTopics(t) if t.is_empty() => Response::DeleteTopics(vec![]),
        Request::CreatePartitions(t) if t.is_empty() => Response::CreatePartitions(vec![]),
        Request::OffsetCommit(c) if c.topics.is_empty() => Response::OffsetCommit(vec![]),
        _ => return None,
    })
}

/// The topics taken out of a request, answered beside the router's
/// results with their error; listings filtered to what the principal may
/// describe.
pub fn answer(result: &mut Result<Response, WireError>, v: &Verdict, a: &Access) {
    let Ok(resp) = result else { return };
    let err = |code: ErrorCode, t: &str| {
        Some(WireError::new(
            code,
            format!("not authorized to access topic {t:?}"),
        ))
    };
    for (t, parts, code) in &v.topics {
        let error = err(*code, t);
        match resp {
            Response::Produce(ts) => ts.push(ProduceTopicResult {
                name: t.clone(),
                partitions: parts
                    .iter()
                    .map(|&partition| ProducePartitionResult {
                        partition,
                        error: error.clone(),
                        base_offset: -1,
                        high_watermark: -1,
                        invalid_records: vec![],
                    })
                    .collect(),
            }),
            Response::Fetch(ts) => ts.push(FetchTopicResult {
                name: t.clone(),
                partitions: parts
                    .iter()
                    .map(|&partition| FetchPartitionResult {
                        partition,
                        error: error.clone(),
                        high_watermark: -1,
                        log_start_offset: -1,
                        records: crate::chain::Chain::new(),
                        last_stable_offset: -1,
                        aborted: vec![],
                    })
                    .collect(),
            }),
            Response::ListOffsets(ts) => ts.push(ListOffsetsTopicResult {
                name: t.clone(),
                partitions: parts
                    .iter()
                    .map(|&partition| ListOffsetsPartitionResult {
                        partition,
                        error: error.clone(),
                        offset: -1,
                        timestamp: -1,
                    })
                    .collect(),
            }),
            Response::DeleteRecords(ts) => ts.push(DeleteRecordsTopicResult {
                name: t.clone(),
                partitions: parts
                    .iter()
                    .map(|&partition| DeleteRecordsPartitionResult {
                        partition,
                        error: error.clone(),
                        low_watermark: -1,
                    })
                    .collect(),
            }),
            Response::DescribeProducers(ts) => ts.push(DescribeProducersTopicResult {
                name: t.clone(),
                partitions: parts
                    .iter()
                    .map(|&partition| DescribeProducersPartitionResult {
                        partition,
                        error: error.clone(),
                        producers: vec![],
                    })
                    .collect(),
            }),
            Response::OffsetCommit(ts) => ts.push(TopicPartitionErrors {
                name: t.clone(),
                partitions: parts
                    .iter()
                    .map(|&partition| PartitionError {
                        partition,
                        error: error.clone(),
                    })
                    .collect(),
            }),
            Response::CreateTopics(ts)
            | Response::DeleteTopics(ts)
            | Response::CreatePartitions(ts) => ts.push(TopicResult {
                name: t.clone(),
                error,
            }),
            Response::Metadata(m) => m.topics.push(TopicInfo {
                name: t.clone(),
                error,
                partitions: vec![],
                id: [0; 16],
            }),
            _ => {}
        }
    }
    match (v.listing, resp) {
        (Some(Listing::Topics), Response::Metadata(m)) => m
            .topics
            .retain(|t| a.may_topic(Operation::Describe, &t.name)),
        (Some(Listing::Topics), Response::DescribeTopics(ts)) => {
            ts.retain(|t| a.may_topic(Operation::DescribeConfigs, &t.name))
        }
        (Some(Listing::Groups), Response::ListGroups(gs)) => {
            gs.retain(|g| a.may(Operation::Describe, ResourceType::Group, &g.group))
        }
        (Some(Listing::Transactions), Response::ListTransactions(ts)) => ts.retain(|t| {
            a.may(
                Operation::Describe,
                ResourceType::TransactionalId,
                &t.transactional_id,
            )
        }),
        _ => {}
    }
}

/// ListTransactions over the coordinators: only the ids the principal may
/// describe.
pub fn filter_txn_reply(reply: &mut TxnReply, a: &Access) {
    if let TxnReply::Listed(ls) = reply {
        ls.retain(|l| {
            a.may(
                Operation::Describe,
                ResourceType::TransactionalId,
                &l.transactional_id,
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::TopicPartition;
    use crate::protocol::{
        Acks, FetchPartition, FetchRequest, FetchTopic, MetadataResponse, ProducePartition,
        ProduceRequest, ProduceTopic, RequestFrame,
    };
    use crate::security::acl::{AclBinding, PatternType, Permission};

    fn access(bindings: &[(ResourceType, &str, PatternType, Operation, Permission)]) -> Access {
        let mut acls = Acls::default();
        for &(resource_type, name, pattern, operation, permission) in bindings {
            acls.add(AclBinding {
                resource_type,
                name: name.into(),
                pattern,
                principal: "User:alice".into(),
                host: "*".into(),
                operation,
                permission,
            })
            .unwrap();
        }
        Access {
            acls: Rc::new(acls),
            super_users: Rc::new(vec!["User:admin".into()]),
            principal: "User:alice".into(),
            host: "10.0.0.9".into(),
        }
    }

    #[test]
    fn the_native_door_checks_operators_requests_on_the_cluster_and_topics_as_kafka() {
        use Operation::*;
        use PatternType::Literal;
        use Permission::Allow;
        let a = access(&[(ResourceType::Topic, "mine", Literal, Write, Allow)]);
        // Users, ACLs, quotas: the cluster's, refused whole.
        for mut r in [
            Request::DescribeAcls(crate::security::acl::AclFilter::any()),
            Request::DescribeQuotas,
            Request::DescribeUsers(None),
        ] {
            let (w, v) = check_native(&mut r, &a).unwrap_err();
            assert_eq!(w.code, ErrorCode::ClusterAuthorizationFailed);
            assert!(w.message.contains("User:alice"), "{}", w.message);
            assert_eq!(v.denials[0].resource, ResourceType::Cluster);
        }
        // A produce keeps what it may write; the rest is answered beside.
        let mut r = produce(&[("mine", &[0]), ("theirs", &[0, 1])]);
        let v = check_native(&mut r, &a).unwrap();
        let Request::Produce(p) = &r else {
            unreachable!()
        };
        assert_eq!(p.topics.len(), 1);
        assert_eq!(p.topics[0].name, "mine");
        assert_eq!(v.topics.len(), 1);
        assert_eq!(v.topics[0].2, ErrorCode::TopicAuthorizationFailed);
        // A super user may do anything.
        let mut admin = access(&[]);
        admin.principal = "User:admin".into();
        let mut r = Request::DescribeQuotas;
        assert!(check_native(&mut r, &admin).unwrap().denials.is_empty());
    }

    fn native(request: Request) -> Work {
        Work::native(
            Box::new(RequestFrame {
                version: 1,
                correlation_id: 1,
                client_id: None,
                request,
            }),
            vec![],
        )
    }

    fn request(w: &Work) -> &Request {
        match w {
            Work::Native { frame, .. } => &frame.request,
            other => panic!("not native: {other:?}"),
        }
    }

    fn refused(w: &Work) -> i16 {
        match w {
            Work::Refuse { error, .. } => *error,
            other => panic!("not refused: {other:?}"),
        }
    }

    fn produce(topics: &[(&str, &[u32])]) -> Request {
        Request::Produce(ProduceRequest {
            acks: Acks::Durable,
            timeout_ms: 1000,
            topics: topics
                .iter()
                .map(|(t, ps)| ProduceTopic {
                    name: (*t).into(),
                    partitions: ps
                        .iter()
                        .map(|&partition| ProducePartition {
                            partition,
                            records: bytes::Bytes::from_static(b"batch"),
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    #[test]
    fn a_denied_topic_is_taken_out_of_a_produce_and_answered_beside_the_rest() {
        use Operation::*;
        let a = access(&[(
            ResourceType::Topic,
            "mine-",
            PatternType::Prefixed,
            Write,
            Permission::Allow,
        )]);
        let (w, v) = authorize(
            ApiKey::Produce,
            native(produce(&[("mine-1", &[0]), ("theirs", &[0, 1])])),
            &a,
        );
        let Request::Produce(p) = request(&w) else {
            panic!()
        };
        assert_eq!(p.topics.len(), 1);
        assert_eq!(p.topics[0].name, "mine-1");
        assert_eq!(
            v.topics,
            [(
                "theirs".to_string(),
                vec![0, 1],
                ErrorCode::TopicAuthorizationFailed
            )]
        );
        assert_eq!(v.denials.len(), 1);
        assert!(emptied(request(&w), &v).is_none(), "mine-1 still goes");
        let mut r = Ok(Response::Produce(vec![]));
        answer(&mut r, &v, &a);
        let Ok(Response::Produce(ts)) = r else {
            panic!()
        };
        let codes: Vec<_> = ts[0]
            .partitions
            .iter()
            .map(|p| (p.partition, p.error.as_ref().map(|e| e.code)))
            .collect();
        assert_eq!(
            codes,
            [
                (0, Some(ErrorCode::TopicAuthorizationFailed)),
                (1, Some(ErrorCode::TopicAuthorizationFailed))
            ]
        );
        // A super user is never refused.
        let mut admin = a.clone();
        admin.principal = "User:admin".into();
        let (_, v) = authorize(
            ApiKey::Produce,
            native(produce(&[("theirs", &[0])])),
            &admin,
        );
        assert!(v.topics.is_empty() && v.denials.is_empty());
    }

    #[test]
    fn a_fetch_of_only_denied_topics_is_answered_without_the_router() {
        let a = access(&[]);
        let f = Request::Fetch(FetchRequest {
            max_wait_ms: 30_000,
            min_bytes: 1,
            max_bytes: 1 << 20,
            topics: vec![FetchTopic {
                name: "t".into(),
                partitions: vec![FetchPartition {
                    partition: 3,
                    fetch_offset: 0,
                    max_bytes: 1 << 20,
                }],
            }],
            read_committed: false,
        });
        let (w, v) = authorize(ApiKey::Fetch, native(f), &a);
        let mut r = Ok(emptied(request(&w), &v).expect("nothing left to fetch"));
        answer(&mut r, &v, &a);
        let Ok(Response::Fetch(ts)) = r else { panic!() };
        assert_eq!(ts[0].partitions[0].partition, 3);
        assert_eq!(
            ts[0].partitions[0].error.as_ref().unwrap().code,
            ErrorCode::TopicAuthorizationFailed
        );
    }

    #[test]
    fn metadata_lists_only_what_the_principal_may_describe() {
        use Operation::*;
        let a = access(&[
            (
                ResourceType::Topic,
                "logs",
                PatternType::Literal,
                Read,
                Permission::Allow,
            ),
            (
                ResourceType::Topic,
                "audit",
                PatternType::Literal,
                Describe,
                Permission::Deny,
            ),
            (
                ResourceType::Topic,
                "audit",
                PatternType::Literal,
                All,
                Permission::Allow,
            ),
        ]);
        let all = Request::Metadata {
            topics: None,
            auto_create: true,
            include_internal: false,
        };
        let (_, v) = authorize(ApiKey::Metadata, native(all), &a);
        let topic = |name: &str| TopicInfo {
            name: name.into(),
            error: None,
            partitions: vec![],
            id: [1; 16],
        };
        let mut r = Ok(Response::Metadata(MetadataResponse {
            nodes: vec![],
            topics: vec![topic("logs"), topic("audit"), topic("secret")],
        }));
        answer(&mut r, &v, &a);
        let Ok(Response::Metadata(m)) = r else {
            panic!()
        };
        let names: Vec<_> = m.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["logs"], "a deny of Describe wins over All");
        // Named: the denied one is answered, not looked up; no Create: no
        // auto-creation.
        let named = Request::Metadata {
            topics: Some(vec!["logs".into(), "secret".into()]),
            auto_create: true,
            include_internal: false,
        };
        let (w, v) = authorize(ApiKey::Metadata, native(named), &a);
        assert_eq!(
            request(&w),
            &Request::Metadata {
                topics: Some(vec!["logs".into()]),
                auto_create: false,
                include_internal: false,
            }
        );
        assert_eq!(v.topics[0].0, "secret");
    }

    #[test]
    fn cluster_transaction_and_producer_id_checks() {
        use Operation::*;
        let none = access(&[]);
        let users = Work::Users(UsersWork::Alter(vec![]));
        let (w, v) = authorize(ApiKey::AlterUserScramCredentials, users, &none);
        assert_eq!(refused(&w), 31, "CLUSTER_AUTHORIZATION_FAILED");
        assert_eq!(v.denials[0].operation, Alter);
        let (w, _) = authorize(ApiKey::InitProducerId, Work::InitProducerId, &none);
        assert_eq!(refused(&w), 31);
        // KIP-679: Write on any topic is enough to be idempotent.
        let writer = access(&[(
            ResourceType::Topic,
            "x-",
            PatternType::Prefixed,
            Write,
            Permission::Allow,
        )]);
        let (w, _) = authorize(ApiKey::InitProducerId, Work::InitProducerId, &writer);
        assert!(matches!(w, Work::InitProducerId));
        // A transactional add: Write on the id, then on every topic.
        let add = |topic: &str| {
            Work::txn(vec![TxnCall::Add {
                id: "app".into(),
                producer_id: 1,
                epoch: 0,
                partitions: vec![TopicPartition::new(topic, 2)],
                txn_version: 1,
            }])
        };
        let (w, _) = authorize(ApiKey::AddPartitionsToTxn, add("x-1"), &writer);
        assert_eq!(refused(&w), 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED");
        let txn_writer = access(&[
            (
                ResourceType::Topic,
                "x-",
                PatternType::Prefixed,
                Write,
                Permission::Allow,
            ),
            (
                ResourceType::TransactionalId,
                "app",
                PatternType::Literal,
                Write,
                Permission::Allow,
            ),
        ]);
        let (w, _) = authorize(ApiKey::AddPartitionsToTxn, add("x-1"), &txn_writer);
        assert!(matches!(w, Work::Txn { .. }));
        let (w, _) = authorize(ApiKey::AddPartitionsToTxn, add("y"), &txn_writer);
        match w {
            Work::RefuseAdd { shape, errors } => {
                assert_eq!(errors, [29]);
                assert_eq!(shape, [("y".to_string(), vec![2])]);
            }
            other => panic!("{other:?}"),
        }
        // With a topic it may write beside: that one is not attempted
        // (OPERATION_NOT_ATTEMPTED), only the denied one is named.
        let both = Work::txn(vec![TxnCall::Add {
            id: "app".into(),
            producer_id: 1,
            epoch: 0,
            partitions: vec![TopicPartition::new("x-1", 0), TopicPartition::new("y", 1)],
            txn_version: 1,
        }]);
        let (w, v) = authorize(ApiKey::AddPartitionsToTxn, both, &txn_writer);
        match w {
            Work::RefuseAdd { shape, errors } => {
                assert_eq!(
                    shape,
                    [("x-1".to_string(), vec![0]), ("y".to_string(), vec![1])]
                );
                assert_eq!(errors, [55, 29]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(v.denials.len(), 1);
    }

    /// DescribeConfigs, AlterConfigs, FindCoordinator, DescribeGroups and
    /// DeleteGroups answer each resource on its own, as Kafka: a denied
    /// one gets its error, the others go on.
    #[test]
    fn resource_by_resource_apis_refuse_only_the_denied_resources() {
        use crate::protocol::{AlterConfigsTopic, ConfigOp, ConfigOpKind};
        use Operation::*;
        use PatternType::Literal;
        use Permission::Allow;
        let a = access(&[
            (ResourceType::Topic, "mine", Literal, DescribeConfigs, Allow),
            (ResourceType::Topic, "mine", Literal, AlterConfigs, Allow),
            (ResourceType::Group, "g-mine", Literal, Describe, Allow),
        ]);
        let res = |t: i8, n: &str| ConfigResource {
            resource_type: t,
            name: n.into(),
            keys: None,
            denied: None,
        };
        let describe = Work::Native {
            frame: Box::new(RequestFrame {
                version: 1,
                correlation_id: 1,
                client_id: None,
                request: Request::DescribeTopics {
                    topics: Some(vec!["mine".into(), "theirs".into()]),
                },
            }),
            shape: vec![],
            respond: true,
            refused: vec![],
            describe_configs: vec![
                res(RESOURCE_TOPIC, "mine"),
                res(RESOURCE_TOPIC, "theirs"),
                res(RESOURCE_BROKER, "0"),
            ],
        };
        let (w, v) = authorize(ApiKey::DescribeConfigs, describe, &a);
        let Work::Native {
            frame,
            describe_configs,
            ..
        } = w
        else {
            panic!("refused whole")
        };
        let denied: Vec<Option<i16>> = describe_configs.iter().map(|r| r.denied).collect();
        assert_eq!(denied, [None, Some(29), Some(31)]);
        assert_eq!(
            frame.request,
            Request::DescribeTopics {
                topics: Some(vec!["mine".into()])
            },
            "the denied topic is not looked up"
        );
        assert_eq!(v.denials.len(), 2);

        // AlterConfigs: a resource the decoder refused keeps its refusal
        // in order; the denied ones join it; the allowed topic goes on.
        let topic = |n: &str| AlterConfigsTopic {
            name: n.into(),
            ops: vec![ConfigOp {
                key: "retention.ms".into(),
                op: ConfigOpKind::Set,
                value: "1".into(),
            }],
            replace: false,
        };
        let t = i32::from(RESOURCE_TOPIC);
        let alter = Work::Native {
            frame: Box::new(RequestFrame {
                version: 1,
                correlation_id: 1,
                client_id: None,
                request: Request::AlterConfigs {
                    topics: vec![topic("theirs"), topic("mine")],
                    validate_only: false,
                },
            }),
            shape: vec![
                ("bad".into(), vec![t, 1]),
                ("theirs".into(), vec![t, 0]),
                ("mine".into(), vec![t, 0]),
                ("0".into(), vec![i32::from(RESOURCE_BROKER), 0]),
            ],
            respond: true,
            refused: vec![("bad".into(), 42, "decoder".into())],
            describe_configs: vec![],
        };
        let (w, _) = authorize(ApiKey::IncrementalAlterConfigs, alter, &a);
        let Work::Native {
            frame,
            shape,
            refused,
            ..
        } = w
        else {
            panic!("refused whole")
        };
        let flags: Vec<i32> = shape.iter().map(|(_, f)| f[1]).collect();
        assert_eq!(flags, [1, 1, 0, 1]);
        let codes: Vec<(&str, i16)> = refused.iter().map(|(n, c, _)| (&n[..], *c)).collect();
        assert_eq!(codes, [("bad", 42), ("theirs", 29), ("0", 31)]);
        let Request::AlterConfigs { topics, .. } = &frame.request else {
            unreachable!()
        };
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].name, "mine");

        // FindCoordinator and DescribeGroups: key by key, group by group.
        let find = Work::FindCoordinator {
            keys: vec!["g-mine".into(), "g-theirs".into()],
            key_type: 0,
        };
        let (w, v) = authorize(ApiKey::FindCoordinator, find, &a);
        assert!(matches!(w, Work::FindCoordinator { .. }));
        assert_eq!(coordinator_denied(&v, 0, "g-mine"), None);
        assert_eq!(coordinator_denied(&v, 0, "g-theirs"), Some(30));
        let describe = Work::KafkaGroups {
            kind: KafkaGroupKind::Describe,
            shape: vec![("g-mine".into(), vec![]), ("g-theirs".into(), vec![])],
        };
        let (w, v) = authorize(ApiKey::DescribeGroups, describe, &a);
        assert!(matches!(w, Work::KafkaGroups { .. }));
        assert!(denied_group_reply(&v, &KafkaGroupCall::Describe("g-mine".into())).is_none());
        match denied_group_reply(&v, &KafkaGroupCall::Describe("g-theirs".into())) {
            Some(Ok(KafkaGroupReply::Describe(KafkaGroupDescription::Native(d)))) => {
                assert_eq!(d.error.unwrap().code, ErrorCode::GroupAuthorizationFailed)
            }
            other => panic!("{other:?}"),
        }
        // Deleting needs Delete: both refused, each on its own.
        let delete = Work::KafkaGroups {
            kind: KafkaGroupKind::Delete,
            shape: vec![("g-mine".into(), vec![]), ("g-theirs".into(), vec![])],
        };
        let (_, v) = authorize(ApiKey::DeleteGroups, delete, &a);
        assert_eq!(v.denied_keys, ["g-mine", "g-theirs"]);
    }
}
