//! Kafka's classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup), as a pure state machine, for the Kafka listener's clients
//! (librdkafka, kafka-python, the Java client with `group.protocol=classic`).
//!
//! Owns: the classic groups of one coordinator: members, generations, the
//! join barrier (a rebalance completes when every known member has rejoined,
//! or at the rebalance deadline without those that did not), the leader,
//! and the relay of the leader's assignment to every member at SyncGroup.
//! The broker never looks inside the protocol metadata or the assignments:
//! in the classic protocol the leader's client computes the assignment.
//!
//! Must never: answer a waiting join or sync twice or not at all (every
//! waiter is answered exactly once: by completion, by an error, or when its
//! member leaves or expires), hand out a generation twice, or read a clock
//! or do I/O (times come in as `now_ms`; answers to requests that wait go
//! out as `Completion`s the caller delivers).
//!
//! Static membership (KIP-345, `group.instance.id`): a restarted static
//! member joins with an empty member id and takes its instance's place
//! under a new id (the old incarnation is fenced: FENCED_INSTANCE_ID);
//! in a stable group, unless it leads or its subscription changed, it gets
//! the current generation and its old assignment back with no rebalance.
//!
//! The first rebalance of an empty group waits for more members (Kafka's
//! group.initial.rebalance.delay.ms, `with_initial_rebalance_delay`): the
//! delay again after each newcomer, never past the rebalance timeout.
//!
//! Differences from Kafka, on purpose: offset commits are accepted during
//! CompletingRebalance when the generation matches (and fenced by member
//! id, not instance id).

use std::collections::BTreeMap;

use bytes::Bytes;
use thiserror::Error;

use super::ids::{MAX_ID_BYTES, MAX_TOPIC_BYTES};
use super::snapshot::{GroupImage, MemberImage};

/// Identifies a request that waits for its answer (a join or a sync).
pub type Waiter = u64;

pub use super::ids::{
    CLASSIC_MAX_MEMBERS as MAX_MEMBERS, CLASSIC_SESSION_TIMEOUT_MS as SESSION_TIMEOUT_MS,
    MAX_BLOB_BYTES,
};
/// Classic groups per coordinator.
pub const MAX_GROUPS: usize = 100_000;
/// Protocols (assignors) one member may offer.
pub const MAX_PROTOCOLS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClassicError {
    #[error("unknown member id {0:?} (rejoin with an empty member id)")]
    UnknownMember(String),
    #[error("generation {given} is not the group's current generation {current}")]
    IllegalGeneration { given: i32, current: i32 },
    #[error("the group is rebalancing: rejoin")]
    RebalanceInProgress,
    #[error("inconsistent group protocol: {0}")]
    InconsistentProtocol(String),
    #[error("member id required: rejoin with the member id in this answer")]
    MemberIdRequired,
    #[error("session timeout of {0} ms is outside 1000..=1800000")]
    InvalidSessionTimeout(u32),
    #[error("the group has the maximum of {MAX_MEMBERS} members")]
    GroupMaxSizeReached,
    #[error("invalid group id: {0}")]
    InvalidGroupId(String),
    #[error("this coordinator already holds the maximum of {MAX_GROUPS} classic groups")]
    TooManyGroups,
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the coordinator is stopping: find the coordinator again and retry")]
    CoordinatorUnavailable,
    #[error("static member {0:?} has a newer incarnation: this one is fenced")]
    FencedInstance(String),
}

/// One assignor a member offers, with its subscription metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub group: String,
    /// Empty: a new member.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    pub protocol_type: String,
    pub protocols: Vec<Protocol>,
    /// JoinGroup v4+ (KIP-394): a new member first gets its id with
    /// MEMBER_ID_REQUIRED and joins again with it.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinResponse {
    pub error: Option<ClassicError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol: the leader's
    /// answer only.
    pub members: Vec<JoinedMember>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub group: String,
    pub member_id: String,
    /// Static membership (KIP-345): checked against the member id.
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, (member id, opaque bytes); empty from others.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncResponse {
    pub error: Option<ClassicError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub group: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRequest {
    pub group: String,
    /// (member id, static instance id); an empty member id with an
    /// instance id means that instance's current member.
    pub members: Vec<(String, Option<String>)>,
}

/// A classic-protocol request, as the Kafka listener hands it to the group's
/// coordinator shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassicCall {
    Join(JoinRequest),
    Sync(SyncRequest),
    Heartbeat(HeartbeatRequest),
    Leave(LeaveRequest),
}

impl ClassicCall {
    /// The answer this call gets when it cannot be served at all (`error`
    /// wherever the reply has an error code).
    pub fn refused(&self, error: ClassicError) -> ClassicReply {
        match self {
            ClassicCall::Join(r) => join_error(&r.member_id, error),
            ClassicCall::Sync(_) => sync_error(error),
            ClassicCall::Heartbeat(_) => ClassicReply::Heartbeat(Some(error)),
            ClassicCall::Leave(_) => ClassicReply::Leave {
                error: Some(error),
                members: Vec::new(),
            },
        }
    }

    pub fn group(&self) -> &str {
        match self {
            ClassicCall::Join(r) => &r.group,
            ClassicCall::Sync(r) => &r.group,
            ClassicCall::Heartbeat(r) => &r.group,
            ClassicCall::Leave(r) => &r.group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassicReply {
    Join(JoinResponse),
    Sync(SyncResponse),
    Heartbeat(Option<ClassicError>),
    /// Request-level error, and one result per member asked to leave.
    Leave {
        error: Option<ClassicError>,
        members: Vec<(String, Option<ClassicError>)>,
    },
}

/// An answer to a request that waited.
pub type Completion = (Waiter, ClassicReply);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl ClassicState {
    /// Kafka's names (DescribeGroups, ListGroups).
    pub fn kafka_name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    protocols: Vec<Protocol>,
    assignment: Bytes,
    /// Session deadline; not enforced while a join or sync waits (Kafka
    /// keeps those members alive too).
    deadline: u64,
    awaiting_join: Option<Waiter>,
    awaiting_sync: Option<Waiter>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn offers(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }
}

#[derive(Debug, Clone)]
struct Group {
    state: ClassicState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// In join order (the first becomes leader when the old one is gone).
    members: Vec<Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, with their deadline.
    pending: Vec<(String, u64)>,
    rebalance_deadline: u64,
    /// While the first rebalance of a group that was empty waits for more
    /// members (Kafka's group.initial.rebalance.delay.ms).
    initial: Option<InitialJoin>,
    /// What a restart must see changed: the group became Stable (a new
    /// generation's assignment), Empty, or a static member took its place
    /// under a new id. `ClassicGroups::take_changed` collects it.
    changed: bool,
}

/// The initial delayed join: it completes at `until` (pushed back by each
/// newcomer), never after `end` (the rebalance timeout from its start).
#[derive(Debug, Clone, Copy)]
struct InitialJoin {
    until: u64,
    end: u64,
}

impl Group {
    /// Its image if it changed since the last call (None inside: Empty),
    /// clearing the mark; a group mid-rebalance is left out.
    fn take_changed(&mut self) -> Option<Option<GroupImage>> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        match self.state {
            ClassicState::Empty => Some(None),
            ClassicState::Stable => Some(Some(self.image())),
            ClassicState::PreparingRebalance | ClassicState::CompletingRebalance => None,
        }
    }

    fn new() -> Group {
        Group {
            state: ClassicState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: Vec::new(),
            rebalance_deadline: 0,
            initial: None,
            changed: false,
        }
    }

    fn member(&self, id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// The member that holds static instance `instance` now.
    fn instance(&self, instance: &str) -> Option<usize> {
        self.members
            .iter()
            .position(|m| m.instance_id.as_deref() == Some(instance))
    }

    /// An older incarnation of a static member (its instance is held by
    /// another member id now).
    fn fenced(&self, member_id: &str, instance: Option<&str>) -> Option<ClassicError> {
        let i = self.instance(instance?)?;
        (self.members[i].id != member_id)
            .then(|| ClassicError::FencedInstance(instance.unwrap_or_default().to_owned()))
    }

    /// Whether `protocols` could be used together with every member but
    /// `except` (the member itself, when it rejoins).
    fn compatible(&self, protocol_type: &str, protocols: &[Protocol], except: &str) -> bool {
        if self.members.iter().all(|m| m.id == except) {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|p| {
            self.members
                .iter()
                .filter(|m| m.id != except)
                .all(|m| m.offers(&p.name))
        })
    }

    /// Every member's waiting join and sync, answered with `error`.
    fn fail_waiting_syncs(&mut self, out: &mut Vec<Completion>, error: ClassicError) {
        for m in &mut self.members {
            if let Some(w) = m.awaiting_sync.take() {
                out.push((
                    w,
                    ClassicReply::Sync(SyncResponse {
                        error: Some(error.clone()),
                        ..SyncResponse::default()
                    }),
                ));
            }
        }
    }

    fn prepare_rebalance(&mut self, now: u64, out: &mut Vec<Completion>) {
        if self.state == ClassicState::CompletingRebalance {
            // The leader's assignment for this generation will not come.
            self.fail_waiting_syncs(out, ClassicError::RebalanceInProgress);
        }
        for m in &mut self.members {
            m.assignment = Bytes::new();
        }
        let timeout = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.state = ClassicState::PreparingRebalance;
        self.rebalance_deadline = now + u64::from(timeout);
    }

    /// Completes the join phase if every member has rejoined, or
    /// (`deadline_passed`) without those that have not.
    fn maybe_complete_join(&mut self, now: u64, deadline_passed: bool, out: &mut Vec<Completion>) {
        if self.state != ClassicState::PreparingRebalance {
            return;
        }
        if let Some(initial) = self.initial {
            if now < initial.until && !deadline_passed && !self.members.is_empty() {
                // The initial delay: more members may be on their way.
                return;
            }
            self.initial = None;
        }
        if !self.members.iter().all(|m| m.awaiting_join.is_some()) {
            if !deadline_passed {
                return;
            }
            // Members that did not rejoin in time are out.
            self.members.retain(|m| m.awaiting_join.is_some());
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.state = ClassicState::Empty;
            self.changed = true;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        let protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.iter().any(|m| &m.id == l))
        {
            self.leader = Some(self.members[0].id.clone());
        }
        let leader = self.leader.clone().expect("set above");
        let everyone: Vec<JoinedMember> = self
            .members
            .iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect();
        for m in &mut self.members {
            m.deadline = now + u64::from(m.session_timeout_ms);
            let w = m.awaiting_join.take().expect("every member rejoined");
            out.push((
                w,
                ClassicReply::Join(JoinResponse {
                    error: None,
                    generation_id: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        everyone.clone()
                    } else {
                        Vec::new()
                    },
                }),
            ));
        }
        self.protocol = Some(protocol);
        self.state = ClassicState::CompletingRebalance;
    }

    /// Kafka's rule: among the protocols every member offers, each member
    /// votes for its most preferred; most votes wins (ties: the leader's
    /// order, then the name).
    fn select_protocol(&self) -> String {
        let first = &self.members[0];
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|n| self.members.iter().all(|m| m.offers(n)))
            .collect();
        assert!(
            !candidates.is_empty(),
            "members are only admitted with a protocol in common"
        );
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &self.members {
            if let Some(p) = m
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name.as_str()))
            {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let best = candidates
            .iter()
            .max_by_key(|c| {
                (
                    votes.get(*c).copied().unwrap_or(0),
                    std::cmp::Reverse(candidates.iter().position(|x| x == *c)),
                )
            })
            .expect("not empty");
        best.to_string()
    }

    /// Removes a member, answering whatever it waits for, and rebalances
    /// the rest.
    fn remove_member(&mut self, idx: usize, now: u64, out: &mut Vec<Completion>) {
        let m = self.members.remove(idx);
        let gone = ClassicError::UnknownMember(m.id.clone());
        if let Some(w) = m.awaiting_join {
            out.push((
                w,
                ClassicReply::Join(JoinResponse {
                    error: Some(gone.clone()),
                    member_id: m.id.clone(),
                    ..JoinResponse::default()
                }),
            ));
        }
        if let Some(w) = m.awaiting_sync {
            out.push((
                w,
                ClassicReply::Sync(SyncResponse {
                    error: Some(gone),
                    ..SyncResponse::default()
                }),
            ));
        }
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(now, out);
                self.maybe_complete_join(now, false, out);
            }
            ClassicState::PreparingRebalance => self.maybe_complete_join(now, false, out),
            ClassicState::Empty => {}
        }
    }

    /// The stored image of a Stable group.
    fn image(&self) -> GroupImage {
        assert_eq!(
            self.state,
            ClassicState::Stable,
            "only stable groups are stored"
        );
        let protocol = self
            .protocol
            .clone()
            .expect("a stable group has a protocol");
        GroupImage {
            generation: self.generation,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            leader: self.leader.clone().expect("a stable group has a leader"),
            members: self
                .members
                .iter()
                .map(|m| MemberImage {
                    id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
            protocol,
        }
    }

    fn check_invariants(&self) {
        let mut ids: Vec<&str> = self.members.iter().map(|m| m.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), self.members.len(), "member ids are unique");
        match self.state {
            ClassicState::Empty => assert!(self.members.is_empty()),
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                assert!(!self.members.is_empty());
                assert!(self.protocol.is_some());
                let leader = self.leader.as_deref().expect("a leader");
                assert!(self.member(leader).is_some(), "the leader is a member");
                assert!(self.members.iter().all(|m| m.awaiting_join.is_none()));
            }
            ClassicState::PreparingRebalance => {
                assert!(self.members.iter().all(|m| m.awaiting_sync.is_none()));
            }
        }
        if self.state != ClassicState::CompletingRebalance {
            assert!(self.members.iter().all(|m| m.awaiting_sync.is_none()));
        }
    }
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata for the group's protocol (empty while none is chosen).
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicDescription {
    pub state: ClassicState,
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<ClassicMemberDescription>,
}

/// Every classic group of one coordinator.
#[derive(Debug)]
pub struct ClassicGroups {
    groups: BTreeMap<String, Group>,
    rng: u64,
    /// Kafka's group.initial.rebalance.delay.ms (0: none).
    initial_delay_ms: u32,
}

fn join_error(member_id: &str, e: ClassicError) -> ClassicReply {
    ClassicReply::Join(JoinResponse {
        error: Some(e),
        generation_id: -1,
        member_id: member_id.to_owned(),
        ..JoinResponse::default()
    })
}

fn sync_error(e: ClassicError) -> ClassicReply {
    ClassicReply::Sync(SyncResponse {
        error: Some(e),
        ..SyncResponse::default()
    })
}

fn check_group_id(group: &str) -> Result<(), ClassicError> {
    if group.is_empty() || group.len() > MAX_ID_BYTES {
        return Err(ClassicError::InvalidGroupId(format!(
            "group ids are 1..={MAX_ID_BYTES} bytes, got {}",
            group.len()
        )));
    }
    Ok(())
}

fn check_join(r: &JoinRequest) -> Result<(), ClassicError> {
    check_group_id(&r.group)?;
    if !SESSION_TIMEOUT_MS.contains(&r.session_timeout_ms) {
        return Err(ClassicError::InvalidSessionTimeout(r.session_timeout_ms));
    }
    if r.protocol_type.is_empty() || r.protocols.is_empty() {
        return Err(ClassicError::InconsistentProtocol(
            "a join names a protocol type and at least one protocol".into(),
        ));
    }
    if r.protocols.len() > MAX_PROTOCOLS {
        return Err(ClassicError::InvalidRequest(format!(
            "{} protocols offered, at most {MAX_PROTOCOLS}",
            r.protocols.len()
        )));
    }
    for p in &r.protocols {
        if p.name.is_empty() || p.name.len() > MAX_TOPIC_BYTES || p.metadata.len() > MAX_BLOB_BYTES
        {
            return Err(ClassicError::InvalidRequest(format!(
                "protocol {:?}: name or metadata out of bounds",
                p.name
            )));
        }
    }
    for id in [&r.member_id, &r.client_id, &r.client_host]
        .into_iter()
        .chain(r.group_instance_id.as_ref())
    {
        if id.len() > MAX_ID_BYTES {
            return Err(ClassicError::InvalidRequest(format!(
                "an id of {} bytes, more than {MAX_ID_BYTES}",
                id.len()
            )));
        }
    }
    Ok(())
}

impl ClassicGroups {
    /// `seed` makes member ids differ between broker runs.
    pub fn new(seed: u64) -> ClassicGroups {
        ClassicGroups {
            groups: BTreeMap::new(),
            rng: seed | 1,
            initial_delay_ms: 0,
        }
    }

    /// The first rebalance of an empty group waits `ms` for more members,
    /// `ms` more after each newcomer, at most its rebalance timeout
    /// (Kafka's group.initial.rebalance.delay.ms, 3000 there by default):
    /// a fleet of consumers starting together forms one generation instead
    /// of rebalancing once per member.
    pub fn with_initial_rebalance_delay(mut self, ms: u32) -> ClassicGroups {
        self.initial_delay_ms = ms;
        self
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        // xorshift64*: ids need to be unique, not secret.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let prefix: String = client_id.chars().take(64).collect();
        let prefix = if prefix.is_empty() {
            "member".to_owned()
        } else {
            prefix
        };
        format!("{prefix}-{r:016x}")
    }

    /// Whether `group` is a classic group with members (a shardlog-native
    /// group of that name must not form meanwhile, and the other way round).
    pub fn has_members(&self, group: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| !g.members.is_empty())
    }

    /// JoinGroup. The answer (for `waiter`) may come at once, later from
    /// another call or `tick`, or both for other waiters: deliver every
    /// completion returned.
    pub fn join(&mut self, now: u64, r: JoinRequest, waiter: Waiter) -> Vec<Completion> {
        let mut out = Vec::new();
        if let Err(e) = check_join(&r) {
            out.push((waiter, join_error(&r.member_id, e)));
            return out;
        }
        if !self.groups.contains_key(&r.group) {
            if !r.member_id.is_empty() {
                // Kafka: a member id for a group that does not exist.
                out.push((
                    waiter,
                    join_error(
                        &r.member_id,
                        ClassicError::UnknownMember(r.member_id.clone()),
                    ),
                ));
                return out;
            }
            if self.groups.len() >= MAX_GROUPS {
                out.push((waiter, join_error("", ClassicError::TooManyGroups)));
                return out;
            }
            self.groups.insert(r.group.clone(), Group::new());
        }
        let new_id = r
            .member_id
            .is_empty()
            .then(|| self.new_member_id(&r.client_id));
        let delay = self.initial_delay_ms;
        let g = self.groups.get_mut(&r.group).expect("present");
        if !g.compatible(&r.protocol_type, &r.protocols, &r.member_id) {
            out.push((
                waiter,
                join_error(
                    &r.member_id,
                    ClassicError::InconsistentProtocol(format!(
                        "protocol type {:?} with {:?} has nothing in common with the group's members",
                        r.protocol_type,
                        r.protocols.iter().map(|p| &p.name).collect::<Vec<_>>()
                    )),
                ),
            ));
            return out;
        }
        if let Some(instance) = r.group_instance_id.clone() {
            match (new_id, g.instance(&instance)) {
                (Some(id), Some(idx)) => Self::replace_static(g, now, idx, r, id, waiter, &mut out),
                (Some(id), None) if g.members.len() < MAX_MEMBERS => {
                    // A new static member: no KIP-394 round (its instance id
                    // already names it).
                    Self::add_member(g, now, r, id, waiter, delay, &mut out);
                }
                (Some(_), None) => {
                    out.push((waiter, join_error("", ClassicError::GroupMaxSizeReached)));
                }
                (None, Some(idx)) if g.members[idx].id != r.member_id => {
                    out.push((
                        waiter,
                        join_error(&r.member_id, ClassicError::FencedInstance(instance)),
                    ));
                }
                (None, Some(idx)) => Self::rejoin(g, now, idx, r, waiter, &mut out),
                (None, None) => out.push((
                    waiter,
                    join_error(
                        &r.member_id,
                        ClassicError::UnknownMember(r.member_id.clone()),
                    ),
                )),
            }
            g.check_invariants();
            return out;
        }
        if let Some(id) = new_id {
            if g.members.len() >= MAX_MEMBERS {
                out.push((waiter, join_error("", ClassicError::GroupMaxSizeReached)));
                return out;
            }
            if r.require_known_member_id {
                g.pending
                    .push((id.clone(), now + u64::from(r.session_timeout_ms)));
                out.push((waiter, join_error(&id, ClassicError::MemberIdRequired)));
                return out;
            }
            Self::add_member(g, now, r, id, waiter, delay, &mut out);
        } else if let Some(pos) = g.pending.iter().position(|(id, _)| *id == r.member_id) {
            g.pending.remove(pos);
            let id = r.member_id.clone();
            if g.members.len() >= MAX_MEMBERS {
                out.push((waiter, join_error(&id, ClassicError::GroupMaxSizeReached)));
                return out;
            }
            Self::add_member(g, now, r, id, waiter, delay, &mut out);
        } else if let Some(idx) = g.member(&r.member_id) {
            Self::rejoin(g, now, idx, r, waiter, &mut out);
        } else {
            out.push((
                waiter,
                join_error(
                    &r.member_id,
                    ClassicError::UnknownMember(r.member_id.clone()),
                ),
            ));
        }
        g.check_invariants();
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn add_member(
        g: &mut Group,
        now: u64,
        r: JoinRequest,
        id: String,
        waiter: Waiter,
        initial_delay_ms: u32,
        out: &mut Vec<Completion>,
    ) {
        let was_empty = g.state == ClassicState::Empty;
        if g.members.is_empty() {
            g.protocol_type = Some(r.protocol_type.clone());
        }
        g.members.push(Member {
            id,
            instance_id: r.group_instance_id,
            client_id: r.client_id,
            client_host: r.client_host,
            session_timeout_ms: r.session_timeout_ms,
            rebalance_timeout_ms: r.rebalance_timeout_ms.max(r.session_timeout_ms),
            protocols: r.protocols,
            assignment: Bytes::new(),
            deadline: now + u64::from(r.session_timeout_ms),
            awaiting_join: Some(waiter),
            awaiting_sync: None,
        });
        if g.state != ClassicState::PreparingRebalance {
            g.prepare_rebalance(now, out);
            if was_empty && initial_delay_ms > 0 {
                let delay = u64::from(initial_delay_ms);
                let end = g.rebalance_deadline;
                g.initial = Some(InitialJoin {
                    until: (now + delay).min(end),
                    end,
                });
            }
        } else {
            // A longer rebalance timeout of a newcomer extends the wait.
            let t = g.members.last().expect("pushed").rebalance_timeout_ms;
            g.rebalance_deadline = g.rebalance_deadline.max(now + u64::from(t));
            if let Some(i) = &mut g.initial {
                // Another newcomer: wait the delay again, within the bound.
                i.until = (now + u64::from(initial_delay_ms)).min(i.end);
            }
        }
        g.maybe_complete_join(now, false, out);
    }

    /// A static member's new incarnation takes its place under `id`; the
    /// old one's waiting calls are answered FENCED_INSTANCE_ID.
    fn replace_static(
        g: &mut Group,
        now: u64,
        idx: usize,
        mut r: JoinRequest,
        id: String,
        waiter: Waiter,
        out: &mut Vec<Completion>,
    ) {
        let instance = r.group_instance_id.clone().unwrap_or_default();
        let m = &mut g.members[idx];
        let old = std::mem::replace(&mut m.id, id.clone());
        let fenced = ClassicError::FencedInstance(instance);
        if let Some(w) = m.awaiting_join.take() {
            out.push((w, join_error(&old, fenced.clone())));
        }
        if let Some(w) = m.awaiting_sync.take() {
            out.push((w, sync_error(fenced)));
        }
        if g.leader.as_deref() == Some(old.as_str()) {
            g.leader = Some(id.clone());
        }
        g.changed = true;
        r.member_id = id;
        Self::rejoin(g, now, idx, r, waiter, out);
    }

    fn rejoin(
        g: &mut Group,
        now: u64,
        idx: usize,
        r: JoinRequest,
        waiter: Waiter,
        out: &mut Vec<Completion>,
    ) {
        let m = &mut g.members[idx];
        let changed = m.protocols != r.protocols;
        m.protocols = r.protocols;
        m.session_timeout_ms = r.session_timeout_ms;
        m.rebalance_timeout_ms = r.rebalance_timeout_ms.max(r.session_timeout_ms);
        m.client_id = r.client_id;
        m.client_host = r.client_host;
        m.deadline = now + u64::from(m.session_timeout_ms);
        if let Some(old) = m.awaiting_join.replace(waiter) {
            // A retried join: the earlier request is answered, not dropped.
            out.push((old, join_error(&m.id, ClassicError::RebalanceInProgress)));
        }
        let is_leader = g.leader.as_deref() == Some(m.id.as_str());
        match g.state {
            ClassicState::PreparingRebalance => g.maybe_complete_join(now, false, out),
            ClassicState::CompletingRebalance | ClassicState::Stable
                if !(changed || is_leader && g.state == ClassicState::Stable) =>
            {
                // Nothing changed: answer with the current generation (the
                // member may have missed the first answer).
                let m = &mut g.members[idx];
                let w = m.awaiting_join.take().expect("set above");
                let protocol = g.protocol.clone().expect("chosen");
                let leader = g.leader.clone().expect("chosen");
                let members = if m.id == leader {
                    g.members
                        .iter()
                        .map(|x| JoinedMember {
                            member_id: x.id.clone(),
                            group_instance_id: x.instance_id.clone(),
                            metadata: x.metadata_for(&protocol),
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let m = &g.members[idx];
                out.push((
                    w,
                    ClassicReply::Join(JoinResponse {
                        error: None,
                        generation_id: g.generation,
                        protocol_type: g.protocol_type.clone(),
                        protocol_name: Some(protocol),
                        leader,
                        member_id: m.id.clone(),
                        members,
                    }),
                ));
            }
            _ => {
                // New metadata, or the leader rejoining a stable group (it
                // does so when the topics it watches change): rebalance.
                g.prepare_rebalance(now, out);
                g.maybe_complete_join(now, false, out);
            }
        }
    }

    /// SyncGroup: the leader hands in the assignment; everyone waits for it.
    pub fn sync(&mut self, now: u64, r: SyncRequest, waiter: Waiter) -> Vec<Completion> {
        let mut out = Vec::new();
        let Some(g) = self.groups.get_mut(&r.group) else {
            out.push((waiter, sync_error(ClassicError::UnknownMember(r.member_id))));
            return out;
        };
        if let Some(e) = g.fenced(&r.member_id, r.group_instance_id.as_deref()) {
            out.push((waiter, sync_error(e)));
            return out;
        }
        let Some(idx) = g.member(&r.member_id) else {
            out.push((waiter, sync_error(ClassicError::UnknownMember(r.member_id))));
            return out;
        };
        if r.generation_id != g.generation {
            out.push((
                waiter,
                sync_error(ClassicError::IllegalGeneration {
                    given: r.generation_id,
                    current: g.generation,
                }),
            ));
            return out;
        }
        let mismatch = |given: &Option<String>, ours: &Option<String>| {
            given.as_ref().is_some_and(|x| Some(x) != ours.as_ref())
        };
        if mismatch(&r.protocol_type, &g.protocol_type) || mismatch(&r.protocol_name, &g.protocol) {
            out.push((
                waiter,
                sync_error(ClassicError::InconsistentProtocol(
                    "protocol type or name differs from the group's".into(),
                )),
            ));
            return out;
        }
        match g.state {
            ClassicState::PreparingRebalance => {
                out.push((waiter, sync_error(ClassicError::RebalanceInProgress)));
            }
            ClassicState::Empty => {
                out.push((waiter, sync_error(ClassicError::UnknownMember(r.member_id))));
            }
            ClassicState::Stable => {
                let m = &mut g.members[idx];
                m.deadline = now + u64::from(m.session_timeout_ms);
                out.push((
                    waiter,
                    ClassicReply::Sync(SyncResponse {
                        error: None,
                        protocol_type: g.protocol_type.clone(),
                        protocol_name: g.protocol.clone(),
                        assignment: m.assignment.clone(),
                    }),
                ));
            }
            ClassicState::CompletingRebalance => {
                {
                    let m = &mut g.members[idx];
                    m.deadline = now + u64::from(m.session_timeout_ms);
                    if let Some(old) = m.awaiting_sync.replace(waiter) {
                        out.push((old, sync_error(ClassicError::RebalanceInProgress)));
                    }
                }
                if g.leader.as_deref() == Some(r.member_id.as_str()) {
                    if r.assignments.iter().any(|(_, a)| a.len() > MAX_BLOB_BYTES) {
                        // Refuse the whole generation's assignment: rebalance.
                        g.prepare_rebalance(now, &mut out);
                        g.check_invariants();
                        return out;
                    }
                    for m in &mut g.members {
                        m.assignment = r
                            .assignments
                            .iter()
                            .find(|(id, _)| *id == m.id)
                            .map(|(_, a)| a.clone())
                            .unwrap_or_default();
                    }
                    g.state = ClassicState::Stable;
                    g.changed = true;
                    for m in &mut g.members {
                        if let Some(w) = m.awaiting_sync.take() {
                            out.push((
                                w,
                                ClassicReply::Sync(SyncResponse {
                                    error: None,
                                    protocol_type: g.protocol_type.clone(),
                                    protocol_name: g.protocol.clone(),
                                    assignment: m.assignment.clone(),
                                }),
                            ));
                        }
                    }
                }
            }
        }
        g.check_invariants();
        out
    }

    /// Heartbeat: keeps a member alive; tells it to rejoin while the group
    /// rebalances.
    pub fn heartbeat(&mut self, now: u64, r: &HeartbeatRequest) -> Option<ClassicError> {
        let Some(g) = self.groups.get_mut(&r.group) else {
            return Some(ClassicError::UnknownMember(r.member_id.clone()));
        };
        if let Some(e) = g.fenced(&r.member_id, r.group_instance_id.as_deref()) {
            return Some(e);
        }
        let Some(idx) = g.member(&r.member_id) else {
            return Some(ClassicError::UnknownMember(r.member_id.clone()));
        };
        let m = &mut g.members[idx];
        m.deadline = now + u64::from(m.session_timeout_ms);
        if g.state == ClassicState::PreparingRebalance {
            return Some(ClassicError::RebalanceInProgress);
        }
        if r.generation_id != g.generation {
            return Some(ClassicError::IllegalGeneration {
                given: r.generation_id,
                current: g.generation,
            });
        }
        None
    }

    /// LeaveGroup (v3+ names several members).
    pub fn leave(&mut self, now: u64, r: &LeaveRequest) -> (ClassicReply, Vec<Completion>) {
        let mut out = Vec::new();
        let Some(g) = self.groups.get_mut(&r.group) else {
            let members = r
                .members
                .iter()
                .map(|(id, _)| (id.clone(), Some(ClassicError::UnknownMember(id.clone()))))
                .collect();
            return (
                ClassicReply::Leave {
                    error: None,
                    members,
                },
                out,
            );
        };
        let mut results = Vec::with_capacity(r.members.len());
        for (id, instance) in &r.members {
            if let Some(e) = g.fenced(id, instance.as_deref()).filter(|_| !id.is_empty()) {
                results.push((id.clone(), Some(e)));
                continue;
            }
            let idx = match (id.is_empty(), instance) {
                (true, Some(i)) => g.instance(i),
                _ => g.member(id),
            };
            match idx {
                Some(idx) => {
                    let gone = g.members[idx].id.clone();
                    g.remove_member(idx, now, &mut out);
                    results.push((gone, None));
                }
                None => results.push((id.clone(), Some(ClassicError::UnknownMember(id.clone())))),
            }
        }
        g.check_invariants();
        let error = (r.members.len() == 1)
            .then(|| results[0].1.clone())
            .flatten();
        (
            ClassicReply::Leave {
                error,
                members: results,
            },
            out,
        )
    }

    /// Expires sessions and ends rebalances whose deadline passed. Call it
    /// every ~100 ms.
    pub fn tick(&mut self, now: u64) -> Vec<Completion> {
        let mut out = Vec::new();
        for g in self.groups.values_mut() {
            g.pending.retain(|(_, deadline)| *deadline > now);
            while let Some(idx) = g.members.iter().position(|m| {
                m.awaiting_join.is_none() && m.awaiting_sync.is_none() && m.deadline <= now
            }) {
                g.remove_member(idx, now, &mut out);
            }
            if g.state == ClassicState::PreparingRebalance && g.rebalance_deadline <= now {
                g.maybe_complete_join(now, true, &mut out);
            } else if g.initial.is_some_and(|i| i.until <= now) {
                g.maybe_complete_join(now, false, &mut out);
            }
            g.check_invariants();
        }
        out
    }

    /// Checks an offset commit against the group's generation (Kafka's
    /// rules): a simple commit (no member, generation < 0) only while the
    /// group has no members; otherwise the member and its generation.
    /// `Ok(false)`: not a classic group at all (the caller checks its other
    /// coordinator).
    pub fn check_commit(
        &self,
        group: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<bool, ClassicError> {
        let Some(g) = self.groups.get(group) else {
            return Ok(false);
        };
        if g.members.is_empty() {
            if member_id.is_empty() && generation < 0 {
                return Ok(true);
            }
            return Err(ClassicError::UnknownMember(member_id.to_owned()));
        }
        if g.member(member_id).is_none() {
            return Err(ClassicError::UnknownMember(member_id.to_owned()));
        }
        if generation != g.generation {
            return Err(ClassicError::IllegalGeneration {
                given: generation,
                current: g.generation,
            });
        }
        Ok(true)
    }

    /// Drops empty groups (their offsets live in the offsets table, not
    /// here). Returns how many remain.
    pub fn prune(&mut self) -> usize {
        self.groups
            .retain(|_, g| !g.members.is_empty() || !g.pending.is_empty());
        self.groups.len()
    }

    pub fn describe(&self, group: &str) -> Option<ClassicDescription> {
        let g = self.groups.get(group)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(ClassicDescription {
            state: g.state,
            generation: g.generation,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members
                .iter()
                .map(|m| ClassicMemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// The groups whose durable image changed since the last call, each
    /// with its image now (`None`: it has no members; a tombstone). Groups
    /// caught mid-rebalance are left out: their next Stable or Empty state
    /// is what a restart should see, and it marks them again. Call it after
    /// every request and `tick`, before `prune`.
    pub fn take_changed(&mut self) -> Vec<(String, Option<GroupImage>)> {
        self.groups
            .iter_mut()
            .filter_map(|(id, g)| g.take_changed().map(|image| (id.clone(), image)))
            .collect()
    }

    /// `take_changed` for one group, after a request to it (no other
    /// group can have changed): Some(image, or None for Empty) when it
    /// must be stored.
    pub fn take_changed_in(&mut self, group: &str) -> Option<Option<GroupImage>> {
        self.groups.get_mut(group)?.take_changed()
    }

    /// Restores a group from its stored image as the offsets log is
    /// replayed (`None`: the group is gone). Its members come back Stable
    /// in their generation with their assignments, each with a whole
    /// session from `now` to heartbeat again, as after Kafka's coordinator
    /// loads a group: a broker restart costs no rebalance.
    pub fn restore(&mut self, now: u64, group: &str, image: Option<GroupImage>) {
        let Some(image) = image else {
            self.groups.remove(group);
            return;
        };
        let mut g = Group::new();
        g.state = ClassicState::Stable;
        g.generation = image.generation;
        g.protocol_type = Some(image.protocol_type);
        g.leader = Some(image.leader);
        g.members = image
            .members
            .into_iter()
            .map(|m| Member {
                id: m.id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms.max(m.session_timeout_ms),
                protocols: vec![Protocol {
                    name: image.protocol.clone(),
                    metadata: m.subscription,
                }],
                assignment: m.assignment,
                deadline: now + u64::from(m.session_timeout_ms),
                awaiting_join: None,
                awaiting_sync: None,
            })
            .collect();
        g.protocol = Some(image.protocol);
        g.check_invariants();
        self.groups.insert(group.to_owned(), g);
    }

    /// (group, state, protocol, members) of every classic group.
    pub fn list(&self) -> Vec<(String, ClassicState, String, usize)> {
        self.groups
            .iter()
            .map(|(id, g)| {
                (
                    id.clone(),
                    g.state,
                    g.protocol.clone().unwrap_or_default(),
                    g.members.len(),
                )
            })
            .collect()
    }
}

/// The topics in a consumer-protocol subscription (a classic consumer's
/// JoinGroup metadata), for OffsetDelete's "does the group consume this
/// topic"; `None` when the bytes are not one.
pub fn consumer_subscription(bytes: &[u8]) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    if bytes.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut rest = Bytes::copy_from_slice(&bytes[2..]);
    let s = ConsumerProtocolSubscription::decode(&mut rest, version.clamp(0, 3)).ok()?;
    Some(s.topics.iter().map(|t| t.as_str().to_owned()).collect())
}

/// The partitions in a consumer-protocol assignment (what Kafka's consumer
/// leaders hand out), for shardlog's own `group describe`; `None` when the
/// bytes are not one (another protocol type, or garbage).
pub fn consumer_assignment(bytes: &[u8]) -> Option<Vec<super::ids::TopicPartition>> {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable;
    if bytes.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let mut rest = Bytes::copy_from_slice(&bytes[2..]);
    let a = ConsumerProtocolAssignment::decode(&mut rest, version.clamp(0, 3)).ok()?;
    Some(
        a.assigned_partitions
            .iter()
            .flat_map(|t| {
                t.partitions.iter().filter_map(move |&p| {
                    Some(super::ids::TopicPartition::new(
                        t.topic.0.as_str(),
                        u32::try_from(p).ok()?,
                    ))
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(group: &str, member: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            group: group.into(),
            member_id: member.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|n| Protocol {
                    name: n.to_string(),
                    metadata: Bytes::from(format!("meta-{member}-{n}")),
                })
                .collect(),
            require_known_member_id: false,
        }
    }

    fn joined(c: &[Completion], w: Waiter) -> JoinResponse {
        match c.iter().find(|(x, _)| *x == w) {
            Some((_, ClassicReply::Join(j))) => j.clone(),
            other => panic!("no join answer for {w}: {other:?}"),
        }
    }

    fn synced(c: &[Completion], w: Waiter) -> SyncResponse {
        match c.iter().find(|(x, _)| *x == w) {
            Some((_, ClassicReply::Sync(s))) => s.clone(),
            other => panic!("no sync answer for {w}: {other:?}"),
        }
    }

    fn sync(member: &str, generation: i32, a: &[(&str, &str)]) -> SyncRequest {
        SyncRequest {
            group: "g".into(),
            member_id: member.into(),
            group_instance_id: None,
            generation_id: generation,
            protocol_type: Some("consumer".into()),
            protocol_name: None,
            assignments: a
                .iter()
                .map(|(m, x)| (m.to_string(), Bytes::from(x.to_string())))
                .collect(),
        }
    }

    fn hb(member: &str, generation: i32) -> HeartbeatRequest {
        HeartbeatRequest {
            group: "g".into(),
            member_id: member.into(),
            group_instance_id: None,
            generation_id: generation,
        }
    }

    /// Two members form generation 2 of group "g"; returns (leader, other).
    fn two_members(c: &mut ClassicGroups) -> (String, String) {
        let out = c.join(0, join("g", "", &["range"]), 1);
        let a = joined(&out, 1);
        assert_eq!((a.error.clone(), a.generation_id), (None, 1));
        assert_eq!(a.leader, a.member_id);
        let out = c.sync(1, sync(&a.member_id, 1, &[(&a.member_id, "all")]), 2);
        assert_eq!(synced(&out, 2).assignment, Bytes::from("all"));
        // The second member starts a rebalance; the first hears of it.
        let out = c.join(2, join("g", "", &["range"]), 3);
        assert!(out.is_empty(), "waits for the first member to rejoin");
        assert_eq!(
            c.heartbeat(3, &hb(&a.member_id, 1)),
            Some(ClassicError::RebalanceInProgress)
        );
        let out = c.join(4, join("g", &a.member_id, &["range"]), 4);
        let ja = joined(&out, 4);
        let jb = joined(&out, 3);
        assert_eq!((ja.generation_id, jb.generation_id), (2, 2));
        assert_eq!(ja.leader, a.member_id, "the leader stays");
        assert_eq!(ja.members.len(), 2, "the leader sees every member");
        assert!(jb.members.is_empty(), "followers see none");
        assert_eq!(ja.members[1].metadata, Bytes::from("meta--range"));
        (a.member_id, jb.member_id)
    }

    #[test]
    fn a_stable_group_survives_a_restart_through_its_stored_image() {
        let mut c = ClassicGroups::new(7);
        let (a, b) = two_members(&mut c);
        assert!(
            c.join(3, join("g", &b, &["range", "x"]), 9).is_empty(),
            "metadata changed: a rebalance"
        );
        assert!(
            c.take_changed().is_empty(),
            "mid-rebalance: nothing to store"
        );
        let out = c.join(4, join("g", &a, &["range"]), 10);
        assert_eq!(joined(&out, 10).generation_id, 3);
        assert!(c.take_changed().is_empty(), "still completing");
        // The leader's assignment makes it stable: stored once.
        c.sync(5, sync(&a, 3, &[(&a, "p0"), (&b, "p1")]), 5);
        let changed = c.take_changed();
        assert_eq!(changed.len(), 1, "stable: stored once");
        let out = c.sync(6, sync(&b, 3, &[]), 6);
        assert_eq!(synced(&out, 6).assignment, Bytes::from("p1"));
        assert!(c.take_changed().is_empty(), "and not again");
        let (group, image) = changed.into_iter().next().unwrap();
        let image = image.expect("members to store");
        assert_eq!((group.as_str(), image.generation), ("g", 3));

        // What the offsets log hands back after the restart, byte for byte.
        let key = super::super::snapshot::encode_key(&group);
        let (group, image) = super::super::snapshot::decode(&key, Some(&image.encode())).unwrap();
        let mut r = ClassicGroups::new(99);
        r.restore(1_000_000, &group, image);
        let d = r.describe("g").unwrap();
        assert_eq!((d.state, d.generation), (ClassicState::Stable, 3));
        assert_eq!(d.members.len(), 2);
        assert_eq!(d.members[1].assignment, Bytes::from("p1"));
        assert_eq!(
            d.members[0].metadata,
            Bytes::from(format!("meta-{a}-range"))
        );
        // Members carry on where they were: heartbeats, commits and a
        // re-sync of the same generation, no rebalance.
        assert_eq!(r.heartbeat(1_000_001, &hb(&a, 3)), None);
        assert_eq!(r.check_commit("g", &b, 3), Ok(true));
        let out = r.sync(1_000_002, sync(&b, 3, &[]), 1);
        assert_eq!(synced(&out, 1).assignment, Bytes::from("p1"));
        // A follower rejoining with the same metadata keeps the generation.
        let out = r.join(1_000_003, join("g", &b, &["range"]), 3);
        assert_eq!(joined(&out, 3).generation_id, 3);
        // Each has a whole session from its last word: b heartbeats, a
        // falls silent and is dropped.
        assert_eq!(r.heartbeat(1_008_000, &hb(&b, 3)), None);
        assert!(r.tick(1_010_000).is_empty());
        r.tick(1_010_001);
        let d = r.describe("g").unwrap();
        assert_eq!(d.state, ClassicState::PreparingRebalance, "a expired");
        // b leaves too: the group is empty and its image goes (a tombstone).
        r.take_changed();
        let (_, done) = r.leave(
            1_010_002,
            &LeaveRequest {
                group: "g".into(),
                members: vec![(b.clone(), None)],
            },
        );
        let _ = done;
        assert_eq!(r.take_changed(), vec![("g".to_string(), None)]);
        r.restore(1_010_003, "g", None);
        assert!(r.describe("g").is_none(), "a tombstone removes the group");
    }

    #[test]
    fn the_first_rebalance_waits_the_initial_delay_for_more_members() {
        let mut c = ClassicGroups::new(7).with_initial_rebalance_delay(3_000);
        assert!(c.join(0, join("g", "", &["range"]), 1).is_empty());
        assert!(c.tick(2_999).is_empty(), "still within the delay");
        // A newcomer at 2 s pushes the end to 5 s.
        assert!(c.join(2_000, join("g", "", &["range"]), 2).is_empty());
        assert!(c.tick(4_999).is_empty());
        let out = c.tick(5_000);
        let (a, b) = (joined(&out, 1), joined(&out, 2));
        assert_eq!((a.generation_id, b.generation_id), (1, 1), "one generation");
        assert_eq!(a.members.len(), 2, "the leader sees both");
        // A later newcomer rebalances at once when everyone rejoins: the
        // delay is for a group that was empty.
        assert!(c
            .sync(5_001, sync(&a.member_id, 1, &[(&a.member_id, "x")]), 3)
            .iter()
            .any(|(w, _)| *w == 3));
        assert!(c.join(5_002, join("g", "", &["range"]), 4).is_empty());
        c.join(5_003, join("g", &a.member_id, &["range"]), 5);
        let out = c.join(5_004, join("g", &b.member_id, &["range"]), 6);
        assert_eq!(joined(&out, 4).generation_id, 2);
    }

    #[test]
    fn the_initial_delay_never_outlasts_the_rebalance_timeout() {
        let mut c = ClassicGroups::new(7).with_initial_rebalance_delay(3_000);
        let mut r = join("g", "", &["range"]);
        r.rebalance_timeout_ms = 10_000;
        assert!(c.join(0, r.clone(), 1).is_empty());
        // A newcomer every 2 s would hold it forever without the bound.
        for (i, t) in [2_000u64, 4_000, 6_000, 8_000].into_iter().enumerate() {
            assert!(c.join(t, r.clone(), 2 + i as u64).is_empty());
            assert!(c.tick(t + 1).is_empty());
        }
        let out = c.tick(10_000);
        assert_eq!(out.len(), 5, "all five answered at the rebalance timeout");
        assert!(out.iter().all(|(_, a)| matches!(a,
            ClassicReply::Join(j) if j.error.is_none() && j.generation_id == 1)));
    }

    #[test]
    fn join_sync_relays_the_leaders_assignment() {
        let mut c = ClassicGroups::new(7);
        let (a, b) = two_members(&mut c);
        let out = c.sync(5, sync(&b, 2, &[]), 5);
        assert!(out.is_empty(), "a follower waits for the leader");
        let out = c.sync(6, sync(&a, 2, &[(&a, "p0,p1"), (&b, "p2,p3")]), 6);
        assert_eq!(synced(&out, 6).assignment, Bytes::from("p0,p1"));
        assert_eq!(synced(&out, 5).assignment, Bytes::from("p2,p3"));
        assert_eq!(c.heartbeat(7, &hb(&b, 2)), None);
        assert_eq!(
            c.heartbeat(7, &hb(&b, 1)),
            Some(ClassicError::IllegalGeneration {
                given: 1,
                current: 2
            })
        );
        assert_eq!(c.check_commit("g", &a, 2), Ok(true));
        assert!(c.check_commit("g", &a, 1).is_err());
        assert!(c.check_commit("g", "", -1).is_err(), "group has members");
        assert_eq!(c.check_commit("other", "", -1), Ok(false));
        let d = c.describe("g").unwrap();
        assert_eq!(d.state, ClassicState::Stable);
        assert_eq!(d.members.len(), 2);
    }

    #[test]
    fn kip394_new_members_get_an_id_first() {
        let mut c = ClassicGroups::new(1);
        let mut r = join("g", "", &["range"]);
        r.require_known_member_id = true;
        let out = c.join(0, r.clone(), 1);
        let first = joined(&out, 1);
        assert_eq!(first.error, Some(ClassicError::MemberIdRequired));
        assert!(!first.member_id.is_empty());
        assert!(!c.has_members("g"), "not a member until it joins again");
        r.member_id = first.member_id.clone();
        let out = c.join(1, r.clone(), 2);
        let j = joined(&out, 2);
        assert_eq!((j.error, j.generation_id), (None, 1));
        assert_eq!(j.member_id, first.member_id);
        // An id never handed out is refused.
        r.member_id = "made-up".into();
        let out = c.join(2, r, 3);
        assert!(matches!(
            joined(&out, 3).error,
            Some(ClassicError::UnknownMember(_))
        ));
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_deadline() {
        let mut c = ClassicGroups::new(2);
        let (a, b) = two_members(&mut c);
        let out = c.sync(5, sync(&a, 2, &[(&a, "x"), (&b, "y")]), 5);
        assert_eq!(synced(&out, 5).assignment, Bytes::from("x"));
        // A third member joins; b never rejoins.
        let out = c.join(10, join("g", "", &["range"]), 6);
        assert!(out.is_empty());
        let out = c.join(11, join("g", &a, &["range"]), 7);
        assert!(out.is_empty(), "b has not rejoined yet");
        // b stays alive (heartbeats tell it to rejoin) but never does.
        for t in [9_000, 18_000, 27_000] {
            assert_eq!(
                c.heartbeat(t, &hb(&b, 2)),
                Some(ClassicError::RebalanceInProgress)
            );
            assert!(c.tick(t + 1).is_empty(), "before the deadline");
        }
        let out = c.tick(10 + 30_000);
        let ja = joined(&out, 7);
        assert_eq!(ja.generation_id, 3);
        assert_eq!(ja.members.len(), 2, "b is gone");
        assert!(ja.members.iter().all(|m| m.member_id != b));
    }

    #[test]
    fn session_expiry_and_leave_rebalance_the_rest() {
        let mut c = ClassicGroups::new(3);
        let (a, b) = two_members(&mut c);
        c.sync(5, sync(&b, 2, &[]), 5);
        c.sync(6, sync(&a, 2, &[(&a, "x"), (&b, "y")]), 6);
        // b heartbeats, a does not: a expires, b must rejoin and leads.
        assert_eq!(c.heartbeat(9_000, &hb(&b, 2)), None);
        assert!(c.tick(10_006).is_empty());
        assert_eq!(
            c.heartbeat(10_007, &hb(&b, 2)),
            Some(ClassicError::RebalanceInProgress)
        );
        let out = c.join(10_008, join("g", &b, &["range"]), 9);
        let jb = joined(&out, 9);
        assert_eq!((jb.generation_id, jb.leader.as_str()), (3, b.as_str()));
        // The last member leaves: the group is empty, offsets commit simply.
        let (reply, out) = c.leave(
            10_009,
            &LeaveRequest {
                group: "g".into(),
                members: vec![(b.clone(), None), ("ghost".into(), None)],
            },
        );
        assert!(out.is_empty());
        match reply {
            ClassicReply::Leave { members, .. } => {
                assert_eq!(members[0].1, None);
                assert!(members[1].1.is_some());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.describe("g").unwrap().state, ClassicState::Empty);
        assert_eq!(c.check_commit("g", "", -1), Ok(true));
        assert_eq!(c.prune(), 0);
    }

    #[test]
    fn a_leaving_member_answers_its_waiting_sync_and_others_rejoin() {
        let mut c = ClassicGroups::new(4);
        let (a, b) = two_members(&mut c);
        assert!(c.sync(5, sync(&b, 2, &[]), 5).is_empty());
        // The leader leaves before sending the assignment.
        let (_, out) = c.leave(
            6,
            &LeaveRequest {
                group: "g".into(),
                members: vec![(a, None)],
            },
        );
        assert_eq!(
            synced(&out, 5).error,
            Some(ClassicError::RebalanceInProgress)
        );
    }

    #[test]
    fn protocols_must_overlap_and_the_common_favourite_wins() {
        let mut c = ClassicGroups::new(5);
        let out = c.join(0, join("g", "", &["cooperative-sticky", "range"]), 1);
        let a = joined(&out, 1);
        assert_eq!(a.protocol_name.as_deref(), Some("cooperative-sticky"));
        let out = c.join(1, join("g", "", &["roundrobin"]), 2);
        assert!(matches!(
            joined(&out, 2).error,
            Some(ClassicError::InconsistentProtocol(_))
        ));
        let out = c.join(2, join("g", "", &["range", "cooperative-sticky"]), 3);
        assert!(out.is_empty());
        let out = c.join(
            3,
            join("g", &a.member_id, &["cooperative-sticky", "range"]),
            4,
        );
        // One vote each; the leader's order breaks the tie.
        assert_eq!(
            joined(&out, 4).protocol_name.as_deref(),
            Some("cooperative-sticky")
        );
        let mut bad = join("g2", "", &["range"]);
        bad.session_timeout_ms = 10;
        let out = c.join(4, bad, 5);
        assert_eq!(
            joined(&out, 5).error,
            Some(ClassicError::InvalidSessionTimeout(10))
        );
    }

    #[test]
    fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
        let mut c = ClassicGroups::new(8);
        let stat = |member: &str| {
            let mut r = join("g", member, &["range"]);
            r.group_instance_id = Some("pod-1".into());
            r
        };
        let (a, _) = two_members(&mut c);
        // A static member joins (no MEMBER_ID_REQUIRED round for it).
        let mut r = stat("");
        r.require_known_member_id = true;
        assert!(c.join(10, r, 20).is_empty(), "waits for the others");
        let b = c.describe("g").unwrap().members[1].member_id.clone();
        let rejoin = |c: &mut ClassicGroups, t, m: &str, w| c.join(t, join("g", m, &["range"]), w);
        let out = rejoin(&mut c, 11, &a, 21);
        assert!(out.is_empty());
        let out = rejoin(&mut c, 12, &b, 22);
        let s1 = joined(&out, 20);
        assert_eq!(s1.generation_id, 3);
        let leader = joined(&out, 21).leader;
        let mut assign: Vec<(String, Bytes)> = Vec::new();
        for m in [&a, &b, &s1.member_id] {
            assign.push((m.clone(), Bytes::from(format!("for {m}"))));
        }
        let sync_all = |c: &mut ClassicGroups, t| {
            let mut req = sync(&leader, 3, &[]);
            req.assignments = assign.clone();
            c.sync(t, req, 30)
        };
        assert!(c.sync(13, sync(&s1.member_id, 3, &[]), 23).is_empty());
        let out = sync_all(&mut c, 14);
        assert_eq!(
            synced(&out, 23).assignment,
            Bytes::from(format!("for {}", s1.member_id))
        );
        // The static member's process restarts: a new id, same place, no
        // rebalance for the others.
        let out = c.join(15, stat(""), 24);
        let s2 = joined(&out, 24);
        assert_eq!(s2.error, None);
        assert_eq!(s2.generation_id, 3, "no new generation");
        assert_ne!(s2.member_id, s1.member_id);
        let out = c.sync(16, sync(&s2.member_id, 3, &[]), 25);
        assert_eq!(
            synced(&out, 25).assignment,
            Bytes::from(format!("for {}", s1.member_id)),
            "its assignment back"
        );
        assert_eq!(c.heartbeat(17, &hb(&a, 3)), None, "others carry on");
        // The old incarnation is fenced.
        let mut old = hb(&s1.member_id, 3);
        old.group_instance_id = Some("pod-1".into());
        assert_eq!(
            c.heartbeat(18, &old),
            Some(ClassicError::FencedInstance("pod-1".into()))
        );
        // It leaves by instance id.
        let (reply, _) = c.leave(
            19,
            &LeaveRequest {
                group: "g".into(),
                members: vec![(String::new(), Some("pod-1".into()))],
            },
        );
        assert!(
            matches!(reply, ClassicReply::Leave { ref members, .. } if members[0] == (s2.member_id.clone(), None))
        );
        assert_eq!(c.describe("g").unwrap().members.len(), 2);
    }

    #[test]
    fn a_retried_join_answers_the_earlier_request() {
        let mut c = ClassicGroups::new(6);
        let (a, b) = two_members(&mut c);
        c.sync(5, sync(&a, 2, &[(&a, "x"), (&b, "y")]), 5);
        let out = c.join(6, join("g", &b, &["range", "roundrobin"]), 6);
        assert!(out.is_empty(), "new metadata: a rebalance waits for a");
        let out = c.join(7, join("g", &b, &["range", "roundrobin"]), 7);
        assert_eq!(
            joined(&out, 6).error,
            Some(ClassicError::RebalanceInProgress)
        );
        let out = c.join(8, join("g", &a, &["range"]), 8);
        assert_eq!(joined(&out, 7).generation_id, 3);
        assert_eq!(joined(&out, 8).generation_id, 3);
    }
}
