//! The group coordinator: membership and incremental rebalancing of consumer
//! groups, KIP-848 style.
//!
//! Owns: `Group`, the state machine of one group, and `Coordinator`, every
//! group of a broker plus the committed offsets table. One call,
//! `heartbeat`, joins (member epoch 0), keeps alive and reports progress
//! (epoch > 0) and leaves (epoch -1). The broker computes the target
//! assignment (`assign`) whenever membership, subscriptions or topic
//! metadata change, and bumps the group epoch. Members converge to the
//! target incrementally: partitions to give up leave a member's assignment
//! at once but stay held by it ("revoking") until a heartbeat reports them
//! no longer owned; a partition joins its new owner's assignment only once
//! no other member holds it (its old owner released it, left or expired).
//!
//! Must never: let two members hold a partition at once (held = assigned or
//! revoking; checked after every change in debug builds), read a clock
//! (times come in as `now_ms`), or do I/O (commits are checked here and
//! written to the log by the caller).
//!
//! Member epochs: a member's epoch changes only in its own heartbeat, to the
//! group epoch, once it has nothing left to release. So a member always
//! knows its current epoch, or the previous one if a response was lost (both
//! are accepted on heartbeats). Commits need the current epoch exactly.
//!
//! Subscriptions are explicit topic lists, a topic-name prefix (the
//! native protocol's), or a regular expression matched against whole topic
//! names (KIP-848's, RE2 syntax; compiled with size limits). Internal topics
//! (`__` names) are never assigned, whatever matches them (Kafka lets a
//! name or a regex take `__consumer_offsets`; a group reading the offsets
//! topic is not something shardlog offers).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use super::assign::{target_assignment, Strategy};
use super::ids::{MemberId, TopicPartition, MAX_ID_BYTES, MAX_TOPIC_BYTES};
use super::offsets::{encode_key, CommittedOffset, OffsetCommit, OffsetError, OffsetTable};

/// Bounds on a member's session timeout (Kafka's broker-side defaults are
/// 45 s within 45..60 s; we allow the wider range the client may ask for).
pub const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<u32> = 1_000..=300_000;
/// Bounds on `max_poll_interval_ms`, the rebalance timeout.
pub const MAX_POLL_INTERVAL_MS: std::ops::RangeInclusive<u32> = 1_000..=3_600_000;
/// Kafka's `session.timeout.ms` default.
pub const DEFAULT_SESSION_TIMEOUT_MS: u32 = 45_000;
/// Kafka's `max.poll.interval.ms` default.
pub const DEFAULT_MAX_POLL_INTERVAL_MS: u32 = 300_000;

/// Heartbeats are asked for this often at most: session / 3, capped here.
/// Kafka's `group.consumer.heartbeat.interval.ms` is 5 s; members learn of a
/// new assignment only by heartbeating, and a heartbeat is one small request
/// to one shard, so shardlog asks often enough for a rebalance to settle
/// within a second.
pub const MAX_HEARTBEAT_INTERVAL_MS: u32 = 500;
/// Members per group (Kafka's `group.consumer.max.size` is unbounded by
/// default; an assignment over more members is not something we test).
pub const MAX_MEMBERS: usize = 1_000;
/// Groups one coordinator holds (each needs a live member or committed
/// offsets; empty ones without offsets are dropped by `expire_all`).
pub const MAX_GROUPS: usize = 100_000;
/// Topics in an explicit subscription.
pub const MAX_SUBSCRIBED_TOPICS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GroupError {
    #[error("unknown member {member_id:?}")]
    UnknownMember { member_id: String },
    #[error("stale member epoch {given}: the member's current epoch is {current} (on a heartbeat: rejoin with epoch 0)")]
    StaleMemberEpoch { given: i32, current: i32 },
    #[error("partition {tp} is not assigned to member {member_id:?}")]
    NotAssigned {
        member_id: String,
        tp: TopicPartition,
    },
    #[error("group has {members} active members: a commit without a member id is only allowed when it has none")]
    GroupNotEmpty { members: usize },
    #[error("invalid subscription regex: {reason}")]
    InvalidRegex { reason: String },
    #[error("the group uses strategy {group}; a member asked for {requested}")]
    InconsistentStrategy {
        group: Strategy,
        requested: Strategy,
    },
    #[error("unsupported assignment strategy {name:?} (range, roundrobin or sticky)")]
    UnsupportedStrategy { name: String },
    #[error("{which} of {value_ms} ms is outside {min_ms}..={max_ms}")]
    InvalidSessionTimeout {
        which: &'static str,
        value_ms: u32,
        min_ms: u32,
        max_ms: u32,
    },
    #[error("invalid subscription: {reason}")]
    InvalidSubscription { reason: String },
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    #[error("the group has the maximum of {max} members")]
    GroupMaxSizeReached { max: usize },
    #[error("this broker already coordinates the maximum of {max} groups")]
    TooManyGroups { max: usize },
    #[error("unknown group {group_id:?}")]
    UnknownGroup { group_id: String },
    /// OffsetDelete of a topic the group consumes (its members would
    /// commit again, or lose their place).
    #[error("the group consumes topic {topic:?}: its offsets stay")]
    SubscribedToTopic { topic: String },
    #[error(transparent)]
    Offset(#[from] OffsetError),
}

impl GroupError {
    /// Stable name for the wire layer to map to its error codes.
    pub fn code(&self) -> &'static str {
        match self {
            GroupError::UnknownMember { .. } => "UnknownMember",
            GroupError::StaleMemberEpoch { .. } => "StaleMemberEpoch",
            GroupError::NotAssigned { .. } => "NotAssigned",
            GroupError::GroupNotEmpty { .. } => "GroupNotEmpty",
            GroupError::InconsistentStrategy { .. } => "InconsistentStrategy",
            GroupError::UnsupportedStrategy { .. } => "UnsupportedStrategy",
            GroupError::InvalidSessionTimeout { .. } => "InvalidSessionTimeout",
            GroupError::InvalidSubscription { .. } => "InvalidSubscription",
            GroupError::InvalidRequest { .. } => "InvalidRequest",
            GroupError::GroupMaxSizeReached { .. } => "GroupMaxSizeReached",
            GroupError::TooManyGroups { .. } => "TooManyGroups",
            GroupError::UnknownGroup { .. } => "UnknownGroup",
            GroupError::InvalidRegex { .. } => "InvalidRegex",
            GroupError::SubscribedToTopic { .. } => "SubscribedToTopic",
            GroupError::Offset(e) => e.code(),
        }
    }
}

/// For the wire layer: `"sticky".parse::<Strategy>()?` gives the error to
/// send back for an unknown name.
impl std::str::FromStr for Strategy {
    type Err = GroupError;

    fn from_str(name: &str) -> Result<Strategy, GroupError> {
        Strategy::parse(name).ok_or_else(|| GroupError::UnsupportedStrategy {
            name: name.to_string(),
        })
    }
}

fn invalid_request(reason: impl Into<String>) -> GroupError {
    GroupError::InvalidRequest {
        reason: reason.into(),
    }
}

fn check_id(what: &str, id: &str) -> Result<(), GroupError> {
    if id.len() > MAX_ID_BYTES {
        return Err(invalid_request(format!(
            "{what} is {} bytes, more than {MAX_ID_BYTES}",
            id.len()
        )));
    }
    Ok(())
}

/// A subscription's regular expression: RE2 syntax (Kafka's RE2J),
/// matched against whole topic names. Compiled once, with limits, so a
/// hostile pattern costs bounded memory and time.
#[derive(Clone)]
pub struct TopicRegex {
    source: String,
    re: regex::Regex,
}

impl TopicRegex {
    /// Longest pattern taken.
    pub const MAX_BYTES: usize = 4096;

    pub fn new(source: &str) -> Result<TopicRegex, GroupError> {
        let bad = |reason: String| GroupError::InvalidRegex { reason };
        if source.is_empty() || source.len() > Self::MAX_BYTES {
            return Err(bad(format!(
                "a topic regex has 1 to {} bytes, not {}",
                Self::MAX_BYTES,
                source.len()
            )));
        }
        let re = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map_err(|e| bad(format!("topic regex {source:?}: {e}")))?;
        Ok(TopicRegex {
            source: source.to_owned(),
            re,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, topic: &str) -> bool {
        self.re.is_match(topic)
    }
}

impl PartialEq for TopicRegex {
    fn eq(&self, other: &TopicRegex) -> bool {
        self.source == other.source
    }
}

impl Eq for TopicRegex {}

impl std::fmt::Debug for TopicRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicRegex({:?})", self.source)
    }
}

/// Internal topics (the offsets topic): named `__...`, Kafka's convention.
fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
}

/// What a member wants to consume, resolved against the topic metadata
/// every time it changes (so topics created later, and partitions added
/// later, reach the group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// These topics (those that exist).
    Topics(BTreeSet<String>),
    /// Every user topic whose name starts with this (non-empty) prefix.
    Prefix(String),
    /// Every topic whose whole name the regex matches.
    Regex(TopicRegex),
}

impl Subscription {
    pub fn topics<S: Into<String>>(topics: impl IntoIterator<Item = S>) -> Subscription {
        Subscription::Topics(topics.into_iter().map(Into::into).collect())
    }

    fn validate(&self) -> Result<(), GroupError> {
        let bad = |reason: String| Err(GroupError::InvalidSubscription { reason });
        match self {
            Subscription::Topics(ts) => {
                if ts.len() > MAX_SUBSCRIBED_TOPICS {
                    return bad(format!(
                        "{} topics, more than {MAX_SUBSCRIBED_TOPICS}",
                        ts.len()
                    ));
                }
                if let Some(t) = ts
                    .iter()
                    .find(|t| t.is_empty() || t.len() > MAX_TOPIC_BYTES)
                {
                    return bad(format!("topic name {t:?} is empty or too long"));
                }
            }
            Subscription::Prefix(p) => {
                // An empty prefix would subscribe to every topic, internal
                // ones included: refused rather than guessed at.
                if p.is_empty() || p.len() > MAX_TOPIC_BYTES {
                    return bad(format!("prefix {p:?} is empty or too long"));
                }
            }
            // Checked when it was built.
            Subscription::Regex(_) => {}
        }
        Ok(())
    }

    fn resolve(&self, topics: &BTreeMap<String, u32>) -> BTreeSet<String> {
        match self {
            Subscription::Topics(ts) => ts
                .iter()
                .filter(|t| topics.contains_key(*t) && !is_internal(t))
                .cloned()
                .collect(),
            Subscription::Prefix(p) => topics
                .range(p.clone()..)
                .take_while(|(t, _)| t.starts_with(p.as_str()))
                .filter(|(t, _)| !is_internal(t))
                .map(|(t, _)| t.clone())
                .collect(),
            Subscription::Regex(re) => topics
                .keys()
                .filter(|t| re.is_match(t) && !is_internal(t))
                .cloned()
                .collect(),
        }
    }
}

/// One call of the group protocol (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    /// None (or empty) on a first join: the broker makes one up.
    pub member_id: Option<String>,
    /// 0 = join (or rejoin after being fenced), -1 = leave, else the epoch
    /// of the last response.
    pub member_epoch: i32,
    pub client_id: String,
    /// Required on join; Some later only to change it.
    pub subscription: Option<Subscription>,
    /// None: the group's (or, for its first member, the default).
    pub strategy: Option<Strategy>,
    /// 0: on join the default (45 s, Kafka's), later unchanged (KIP-848
    /// uses a sentinel the same way; the wire field stays a plain u32).
    pub session_timeout_ms: u32,
    /// The rebalance timeout. 0: on join the default (5 min, Kafka's),
    /// later unchanged.
    pub max_poll_interval_ms: u32,
    /// The partitions the member consumes now; None = unchanged since the
    /// last heartbeat. Ignored on join.
    pub owned: Option<Vec<TopicPartition>>,
    /// Whether the application polled since the last heartbeat.
    pub polled: bool,
}

impl HeartbeatRequest {
    /// A first join with default timeouts and the group's strategy.
    pub fn join(client_id: &str, subscription: Subscription) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: None,
            member_epoch: 0,
            client_id: client_id.to_string(),
            subscription: Some(subscription),
            strategy: None,
            session_timeout_ms: 0,
            max_poll_interval_ms: 0,
            owned: None,
            polled: true,
        }
    }

    /// A steady heartbeat after a poll, reporting what the member owns;
    /// everything else unchanged.
    pub fn beat(
        member_id: &str,
        member_epoch: i32,
        owned: Vec<TopicPartition>,
    ) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: Some(member_id.to_string()),
            member_epoch,
            subscription: None,
            owned: Some(owned),
            ..HeartbeatRequest::join("", Subscription::Topics(BTreeSet::new()))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    /// -1 after a leave.
    pub member_epoch: i32,
    pub heartbeat_interval_ms: u32,
    /// What the member may consume now, sorted. Partitions it owns that are
    /// missing here must be committed and released (reported in the next
    /// heartbeat's `owned`).
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryReason {
    /// No heartbeat for longer than the session timeout.
    SessionTimeout,
    /// No poll reported for longer than `max_poll_interval_ms`.
    PollTimeout,
    /// Partitions taken away were not reported released within
    /// `max_poll_interval_ms` (the rebalance timeout): the member would
    /// otherwise keep their new owner waiting forever.
    RevocationTimeout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (there may be committed offsets). KIP-848's `Assigning`
    /// does not occur: targets are computed synchronously.
    Empty,
    /// Some member's assignment, owned set or epoch is not yet the target's.
    Reconciling,
    /// Every member consumes exactly its target at the group epoch.
    Stable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub member_epoch: i32,
    pub subscription: Subscription,
    /// What the member may consume now.
    pub assignment: Vec<TopicPartition>,
    /// What the member last reported consuming.
    pub owned: Vec<TopicPartition>,
    /// Taken away, not yet reported released: nobody else gets these yet.
    pub revoking: Vec<TopicPartition>,
    /// What it will have once reconciled.
    pub target: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub group_epoch: u32,
    /// None while the group is empty.
    pub strategy: Option<Strategy>,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
struct Member {
    client_id: String,
    member_epoch: i32,
    /// The epoch before the last change; accepted on heartbeats (a lost
    /// response leaves the member one behind).
    previous_epoch: i32,
    subscription: Subscription,
    /// The subscription resolved against the current metadata.
    topics: BTreeSet<String>,
    session_timeout_ms: u32,
    max_poll_interval_ms: u32,
    last_heartbeat_ms: u64,
    last_poll_ms: u64,
    /// What it last reported consuming (only what it holds is kept).
    owned: BTreeSet<TopicPartition>,
    /// What it may consume: always a subset of its target.
    assigned: BTreeSet<TopicPartition>,
    /// Taken from `assigned` but maybe still consumed: held until a
    /// heartbeat's `owned` lacks them. Never overlaps `assigned`.
    revoking: BTreeSet<TopicPartition>,
    /// When `revoking` was first seen non-empty (by a heartbeat or `expire`;
    /// a revocation caused by `leave` or new metadata is stamped by the next
    /// of those, the only calls that know the time).
    revoking_since_ms: Option<u64>,
}

impl Member {
    fn holds(&self, tp: &TopicPartition) -> bool {
        self.assigned.contains(tp) || self.revoking.contains(tp)
    }
}

/// Each member's resolved topics; the partition count of each topic read.
type AssignmentInputs = (Vec<(MemberId, BTreeSet<String>)>, Vec<(String, u32)>);

/// One consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    group_epoch: u32,
    strategy: Option<Strategy>,
    members: BTreeMap<MemberId, Member>,
    topics: Arc<BTreeMap<String, u32>>,
    target: BTreeMap<MemberId, BTreeSet<TopicPartition>>,
    /// Member ids are "<client id>-<16 hex digits>" from this and a counter.
    seed: u64,
    next_member: u64,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn sorted(s: &BTreeSet<TopicPartition>) -> Vec<TopicPartition> {
    s.iter().cloned().collect()
}

/// `value`, or `default` when the request left it at 0.
fn or_default(value: u32, default: u32) -> u32 {
    if value == 0 {
        default
    } else {
        value
    }
}

fn validate_timeouts(req: &HeartbeatRequest) -> Result<(), GroupError> {
    let given = [
        (
            "session timeout",
            req.session_timeout_ms,
            &SESSION_TIMEOUT_MS,
        ),
        (
            "max poll interval",
            req.max_poll_interval_ms,
            &MAX_POLL_INTERVAL_MS,
        ),
    ];
    for (which, v, range) in given {
        if v == 0 {
            continue; // default or unchanged
        }
        if !range.contains(&v) {
            return Err(GroupError::InvalidSessionTimeout {
                which,
                value_ms: v,
                min_ms: *range.start(),
                max_ms: *range.end(),
            });
        }
    }
    Ok(())
}

impl Group {
    /// An empty group; `seed` makes its member ids differ from other
    /// groups' and other broker runs'.
    pub fn new(id: &str, topics: Arc<BTreeMap<String, u32>>, seed: u64) -> Group {
        Group {
            id: id.to_string(),
            group_epoch: 0,
            strategy: None,
            members: BTreeMap::new(),
            topics,
            target: BTreeMap::new(),
            seed: splitmix64(seed ^ id.bytes().fold(0u64, |h, b| h.wrapping_mul(131) ^ b as u64)),
            next_member: 0,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn group_epoch(&self) -> u32 {
        self.group_epoch
    }

    /// Whether a member's subscription, resolved against the current
    /// topics, takes `topic` (Kafka's isSubscribedToTopic).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.members.values().any(|m| m.topics.contains(topic))
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Joins, heartbeats or leaves, by `req.member_epoch` (module doc). On
    /// error nothing changed.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, GroupError> {
        check_id("client id", &req.client_id)?;
        let member_id = req.member_id.clone().filter(|m| !m.is_empty());
        if let Some(m) = &member_id {
            check_id("member id", m)?;
        }
        match req.member_epoch {
            -1 => {
                let id = member_id.ok_or_else(|| invalid_request("a leave needs the member id"))?;
                self.leave(&id, -1)?;
                Ok(HeartbeatResponse {
                    member_id: id,
                    member_epoch: -1,
                    heartbeat_interval_ms: 0,
                    assignment: Vec::new(),
                })
            }
            0 => self.join(now_ms, member_id, req),
            e if e > 0 => self.beat(now_ms, member_id, req),
            e => Err(invalid_request(format!(
                "member epoch {e}: must be -1, 0 or positive"
            ))),
        }
    }

    fn join(
        &mut self,
        now_ms: u64,
        member_id: Option<String>,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, GroupError> {
        validate_timeouts(&req)?;
        let subscription = req
            .subscription
            .ok_or_else(|| GroupError::InvalidSubscription {
                reason: "a joining member must send its subscription".into(),
            })?;
        subscription.validate()?;
        let rejoin = member_id
            .as_ref()
            .is_some_and(|m| self.members.contains_key(m));
        let others = self.members.len() - usize::from(rejoin);
        let strategy = match (self.strategy.filter(|_| others > 0), req.strategy) {
            (Some(g), Some(r)) if g != r => {
                return Err(GroupError::InconsistentStrategy {
                    group: g,
                    requested: r,
                })
            }
            (Some(g), _) => g,
            // Alone in the group: it may pick; naming none keeps the current.
            (None, r) => r.or(self.strategy).unwrap_or(Strategy::DEFAULT),
        };
        if !rejoin && self.members.len() >= MAX_MEMBERS {
            return Err(GroupError::GroupMaxSizeReached { max: MAX_MEMBERS });
        }

        let id = match member_id {
            Some(id) => id,
            None => self.new_member_id(&req.client_id),
        };
        let topics = subscription.resolve(&self.topics);
        // A rejoin starts over: the member lost its partitions when it was
        // fenced or restarted, so it owns nothing now.
        self.members.insert(
            id.clone(),
            Member {
                client_id: req.client_id,
                member_epoch: 0,
                previous_epoch: 0,
                subscription,
                topics,
                session_timeout_ms: or_default(req.session_timeout_ms, DEFAULT_SESSION_TIMEOUT_MS),
                max_poll_interval_ms: or_default(
                    req.max_poll_interval_ms,
                    DEFAULT_MAX_POLL_INTERVAL_MS,
                ),
                last_heartbeat_ms: now_ms,
                last_poll_ms: now_ms,
                owned: BTreeSet::new(),
                assigned: BTreeSet::new(),
                revoking: BTreeSet::new(),
                revoking_since_ms: None,
            },
        );
        self.strategy = Some(strategy);
        self.retarget();
        self.stamp_revocations(now_ms);
        Ok(self.respond(&id))
    }

    fn beat(
        &mut self,
        now_ms: u64,
        member_id: Option<String>,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, GroupError> {
        validate_timeouts(&req)?;
        let id = member_id.ok_or_else(|| GroupError::UnknownMember {
            member_id: String::new(),
        })?;
        let m = self.member(&id)?;
        if req.member_epoch != m.member_epoch && req.member_epoch != m.previous_epoch {
            return Err(GroupError::StaleMemberEpoch {
                given: req.member_epoch,
                current: m.member_epoch,
            });
        }
        if let (Some(g), Some(r)) = (self.strategy, req.strategy) {
            if g != r {
                return Err(GroupError::InconsistentStrategy {
                    group: g,
                    requested: r,
                });
            }
        }
        if let Some(s) = &req.subscription {
            s.validate()?;
        }

        let m = self.members.get_mut(&id).expect("checked above");
        m.last_heartbeat_ms = now_ms;
        if req.polled {
            m.last_poll_ms = now_ms;
        }
        m.session_timeout_ms = or_default(req.session_timeout_ms, m.session_timeout_ms);
        m.max_poll_interval_ms = or_default(req.max_poll_interval_ms, m.max_poll_interval_ms);
        if let Some(owned) = req.owned {
            // A member can release anything but claim only what it holds: a
            // confused client must not block others' partitions.
            m.owned = owned.into_iter().filter(|tp| m.holds(tp)).collect();
            m.revoking.retain(|tp| m.owned.contains(tp));
        }
        let resubscribed = req.subscription.filter(|s| *s != m.subscription);
        if let Some(s) = resubscribed {
            m.topics = s.resolve(&self.topics);
            m.subscription = s;
            self.retarget();
        } else {
            self.reconcile();
        }
        self.stamp_revocations(now_ms);
        Ok(self.respond(&id))
    }

    /// Removes a member now and gives its partitions to others. `member_epoch`
    /// -1 leaves unconditionally (KIP-848's leave heartbeat); otherwise it must
    /// be the member's current or previous epoch, so a zombie cannot remove
    /// its own successor.
    pub fn leave(&mut self, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        let m = self.member(member_id)?;
        if member_epoch != -1 && member_epoch != m.member_epoch && member_epoch != m.previous_epoch
        {
            return Err(GroupError::StaleMemberEpoch {
                given: member_epoch,
                current: m.member_epoch,
            });
        }
        self.members.remove(member_id);
        self.retarget();
        Ok(())
    }

    /// Removes the members whose session timed out (no heartbeat for more
    /// than `session_timeout_ms`), who did not poll for more than
    /// `max_poll_interval_ms`, or who did not release revoked partitions
    /// within it; their partitions are free at once.
    pub fn expire(&mut self, now_ms: u64) -> Vec<(MemberId, ExpiryReason)> {
        self.stamp_revocations(now_ms);
        let over = |since: u64, limit_ms: u32| now_ms.saturating_sub(since) > limit_ms as u64;
        let expired: Vec<(MemberId, ExpiryReason)> = self
            .members
            .iter()
            .filter_map(|(id, m)| {
                let reason = if over(m.last_heartbeat_ms, m.session_timeout_ms) {
                    ExpiryReason::SessionTimeout
                } else if over(m.last_poll_ms, m.max_poll_interval_ms) {
                    ExpiryReason::PollTimeout
                } else if m
                    .revoking_since_ms
                    .is_some_and(|t| over(t, m.max_poll_interval_ms))
                {
                    ExpiryReason::RevocationTimeout
                } else {
                    return None;
                };
                Some((id.clone(), reason))
            })
            .collect();
        if !expired.is_empty() {
            for (id, _) in &expired {
                self.members.remove(id);
            }
            self.retarget();
        }
        expired
    }

    /// New topic metadata: subscriptions are resolved again, and if what the
    /// group consumes changed (topics appeared or went, partitions were
    /// added), the target is recomputed.
    pub fn metadata_changed(&mut self, topics: Arc<BTreeMap<String, u32>>) {
        let before = self.assignment_inputs();
        self.topics = topics;
        for m in self.members.values_mut() {
            m.topics = m.subscription.resolve(&self.topics);
        }
        if self.assignment_inputs() != before {
            self.retarget();
        }
    }

    /// Whether `member_id` at `member_epoch` may commit `tp` now. An empty
    /// `member_id` is a "simple" commit (standalone consumer, offset reset),
    /// allowed only while the group has no members.
    pub fn check_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        tp: &TopicPartition,
    ) -> Result<(), GroupError> {
        if member_id.is_empty() {
            if !self.members.is_empty() {
                return Err(GroupError::GroupNotEmpty {
                    members: self.members.len(),
                });
            }
            return Ok(());
        }
        let m = self.member(member_id)?;
        // One epoch behind is the member's own view while the answer that
        // bumped it is still on its way (the heartbeat and the commit travel
        // on different connections): still the owner of what it holds, so
        // its commit of a held partition stands (Kafka relaxes the same way,
        // KIP-1251). Older epochs are fenced.
        let current = member_epoch == m.member_epoch
            || (member_epoch > 0 && member_epoch == m.previous_epoch);
        if !current {
            return Err(GroupError::StaleMemberEpoch {
                given: member_epoch,
                current: m.member_epoch,
            });
        }
        // A partition being revoked is still held: the member commits its
        // position before it releases it.
        if !m.holds(tp) {
            return Err(GroupError::NotAssigned {
                member_id: member_id.to_string(),
                tp: tp.clone(),
            });
        }
        Ok(())
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            return GroupState::Empty;
        }
        let settled = self.members.iter().all(|(id, m)| {
            m.member_epoch == self.group_epoch as i32
                && m.revoking.is_empty()
                && m.owned == m.assigned
                && Some(&m.assigned) == self.target.get(id)
        });
        if settled {
            GroupState::Stable
        } else {
            GroupState::Reconciling
        }
    }

    pub fn describe(&self) -> GroupDescription {
        GroupDescription {
            group_id: self.id.clone(),
            state: self.state(),
            group_epoch: self.group_epoch,
            strategy: self.strategy,
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    member_epoch: m.member_epoch,
                    subscription: m.subscription.clone(),
                    assignment: sorted(&m.assigned),
                    owned: sorted(&m.owned),
                    revoking: sorted(&m.revoking),
                    target: self.target.get(id).map(sorted).unwrap_or_default(),
                })
                .collect(),
        }
    }

    fn member(&self, member_id: &str) -> Result<&Member, GroupError> {
        self.members
            .get(member_id)
            .ok_or_else(|| GroupError::UnknownMember {
                member_id: member_id.to_string(),
            })
    }

    fn new_member_id(&mut self, client_id: &str) -> MemberId {
        let mut prefix = if client_id.is_empty() {
            "member"
        } else {
            client_id
        };
        // Room for "-" and 16 hex digits within MAX_ID_BYTES, cut on a char
        // boundary, so the id passes `check_id` when the member sends it back.
        let mut cut = prefix.len().min(MAX_ID_BYTES - 17);
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix = &prefix[..cut];
        loop {
            self.next_member += 1;
            let id = format!("{prefix}-{:016x}", splitmix64(self.seed ^ self.next_member));
            if !self.members.contains_key(&id) {
                return id;
            }
        }
    }

    /// What the target depends on besides the strategy: each member's
    /// resolved topics, and the partition counts of those topics.
    fn assignment_inputs(&self) -> AssignmentInputs {
        let members = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.topics.clone()))
            .collect();
        let used: BTreeSet<&String> = self.members.values().flat_map(|m| &m.topics).collect();
        let counts = used
            .into_iter()
            .map(|t| (t.clone(), self.topics[t]))
            .collect();
        (members, counts)
    }

    /// Membership, a subscription or metadata changed: new group epoch, new
    /// target, then reconcile.
    fn retarget(&mut self) {
        // 2^31 membership changes of one group would take decades of churn;
        // the wire carries epochs as i32.
        assert!(self.group_epoch < i32::MAX as u32, "group epoch overflow");
        self.group_epoch += 1;
        if self.members.is_empty() {
            // The next first member may pick another strategy.
            self.strategy = None;
        }
        let members: BTreeMap<MemberId, BTreeSet<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.topics.clone()))
            .collect();
        self.target = target_assignment(
            self.strategy.unwrap_or(Strategy::DEFAULT),
            &members,
            &self.topics,
            &self.target,
        );
        self.reconcile();
    }

    /// Moves every member's assignment towards its target: revocations at
    /// once (into `revoking`), additions once no other member holds the
    /// partition.
    fn reconcile(&mut self) {
        let empty = BTreeSet::new();
        for (id, m) in self.members.iter_mut() {
            let target = self.target.get(id).unwrap_or(&empty);
            let revoked: Vec<TopicPartition> = m.assigned.difference(target).cloned().collect();
            for tp in revoked {
                m.assigned.remove(&tp);
                m.revoking.insert(tp);
            }
        }
        let mut holder: BTreeMap<TopicPartition, MemberId> = BTreeMap::new();
        for (id, m) in &self.members {
            for tp in m.revoking.iter().chain(&m.assigned) {
                holder.insert(tp.clone(), id.clone());
            }
        }
        for (id, m) in self.members.iter_mut() {
            for tp in self.target.get(id).unwrap_or(&empty) {
                if !m.assigned.contains(tp) && holder.get(tp).is_none_or(|h| h == id) {
                    // Back to a member still releasing it: it just keeps it.
                    m.revoking.remove(tp);
                    m.assigned.insert(tp.clone());
                    holder.insert(tp.clone(), id.clone());
                }
            }
        }
        #[cfg(debug_assertions)]
        if let Err(e) = self.check_invariants() {
            panic!("group {}: {e}", self.id);
        }
    }

    /// Starts (or stops) each member's revocation clock.
    fn stamp_revocations(&mut self, now_ms: u64) {
        for m in self.members.values_mut() {
            if m.revoking.is_empty() {
                m.revoking_since_ms = None;
            } else {
                m.revoking_since_ms.get_or_insert(now_ms);
            }
        }
    }

    /// The member's view after its own heartbeat: it moves to the group epoch
    /// once it has nothing left to release.
    fn respond(&mut self, id: &str) -> HeartbeatResponse {
        let group_epoch = self.group_epoch as i32;
        let m = self.members.get_mut(id).expect("the member heartbeating");
        if m.member_epoch != group_epoch && m.revoking.is_empty() {
            m.previous_epoch = m.member_epoch;
            m.member_epoch = group_epoch;
        }
        HeartbeatResponse {
            member_id: id.to_string(),
            member_epoch: m.member_epoch,
            heartbeat_interval_ms: (m.session_timeout_ms / 3).min(MAX_HEARTBEAT_INTERVAL_MS),
            assignment: sorted(&m.assigned),
        }
    }

    /// The rules that keep consumers apart; Err says which broke.
    pub fn check_invariants(&self) -> Result<(), String> {
        if !self.members.keys().eq(self.target.keys()) {
            return Err("target members differ from the group's".into());
        }
        let mut holder: BTreeMap<&TopicPartition, &MemberId> = BTreeMap::new();
        for (id, m) in &self.members {
            if !m.assigned.is_subset(&self.target[id]) {
                return Err(format!("{id} is assigned partitions outside its target"));
            }
            if m.member_epoch > self.group_epoch as i32 {
                return Err(format!("{id} is ahead of the group epoch"));
            }
            if !m.assigned.is_disjoint(&m.revoking) {
                return Err(format!("{id} has partitions both assigned and revoking"));
            }
            for tp in m.revoking.union(&m.assigned) {
                if let Some(other) = holder.insert(tp, id) {
                    return Err(format!("{tp} is held by {other} and {id}"));
                }
            }
        }
        Ok(())
    }
}

/// A broker's groups (those hosted here) and their committed offsets.
#[derive(Debug, Clone)]
pub struct Coordinator {
    groups: BTreeMap<String, Group>,
    topics: Arc<BTreeMap<String, u32>>,
    offsets: OffsetTable,
    seed: u64,
    /// MAX_GROUPS (a field so tests can reach the bound cheaply).
    max_groups: usize,
}

/// One line of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub state: GroupState,
    pub members: usize,
}

fn check_group_id(group_id: &str) -> Result<(), GroupError> {
    if group_id.is_empty() {
        return Err(invalid_request("empty group id"));
    }
    check_id("group id", group_id)
}

impl Coordinator {
    /// `seed` should differ between broker runs (e.g. the start time) so
    /// member ids are not reused after a restart.
    pub fn new(seed: u64) -> Coordinator {
        Coordinator {
            groups: BTreeMap::new(),
            topics: Arc::default(),
            offsets: OffsetTable::default(),
            seed,
            max_groups: MAX_GROUPS,
        }
    }

    /// `Group::heartbeat` on `group_id`; a join creates the group.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        now_ms: u64,
        req: HeartbeatRequest,
    ) -> Result<HeartbeatResponse, GroupError> {
        check_group_id(group_id)?;
        if req.member_epoch == 0 && !self.groups.contains_key(group_id) {
            if self.groups.len() >= self.max_groups {
                return Err(GroupError::TooManyGroups {
                    max: self.max_groups,
                });
            }
            let g = Group::new(group_id, self.topics.clone(), self.seed);
            let r = self
                .groups
                .entry(group_id.to_string())
                .or_insert(g)
                .heartbeat(now_ms, req);
            if r.is_err() {
                self.groups.remove(group_id);
            }
            return r;
        }
        match self.groups.get_mut(group_id) {
            Some(g) => g.heartbeat(now_ms, req),
            None => Err(GroupError::UnknownMember {
                member_id: req.member_id.unwrap_or_default(),
            }),
        }
    }

    pub fn leave(
        &mut self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), GroupError> {
        match self.groups.get_mut(group_id) {
            Some(g) => g.leave(member_id, member_epoch),
            None => Err(GroupError::UnknownMember {
                member_id: member_id.to_string(),
            }),
        }
    }

    /// Expires members of every group (`Group::expire`), and forgets groups
    /// left with no members and no committed offsets (so made-up group ids
    /// do not pile up). Returns (group, member, reason).
    pub fn expire_all(&mut self, now_ms: u64) -> Vec<(String, MemberId, ExpiryReason)> {
        let mut out = Vec::new();
        for (gid, g) in self.groups.iter_mut() {
            out.extend(
                g.expire(now_ms)
                    .into_iter()
                    .map(|(m, r)| (gid.clone(), m, r)),
            );
        }
        let offsets = &self.offsets;
        self.groups
            .retain(|gid, g| !g.is_empty() || offsets.has_group(gid));
        out
    }

    /// The topics and partition counts of the cluster; call on every change.
    pub fn metadata_changed(&mut self, topics: BTreeMap<String, u32>) {
        self.topics = Arc::new(topics);
        for g in self.groups.values_mut() {
            g.metadata_changed(self.topics.clone());
        }
    }

    /// Groups with members or committed offsets, by id.
    pub fn list(&self) -> Vec<GroupListing> {
        let ids: BTreeSet<&str> = self
            .groups
            .keys()
            .map(String::as_str)
            .chain(self.offsets.groups())
            .collect();
        ids.into_iter()
            .map(|id| match self.groups.get(id) {
                Some(g) => GroupListing {
                    group_id: id.to_string(),
                    state: g.state(),
                    members: g.members.len(),
                },
                None => GroupListing {
                    group_id: id.to_string(),
                    state: GroupState::Empty,
                    members: 0,
                },
            })
            .collect()
    }

    /// None for a group with neither members nor offsets.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        match self.groups.get(group_id) {
            Some(g) => Some(g.describe()),
            None if self.offsets.has_group(group_id) => Some(GroupDescription {
                group_id: group_id.to_string(),
                state: GroupState::Empty,
                group_epoch: 0,
                strategy: None,
                members: Vec::new(),
            }),
            None => None,
        }
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    /// `Group::check_commit`; a group never seen has no members, so only a
    /// simple commit (empty member id) passes.
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        tp: &TopicPartition,
    ) -> Result<(), GroupError> {
        match self.groups.get(group_id) {
            Some(g) => g.check_commit(member_id, member_epoch, tp),
            None if member_id.is_empty() => Ok(()),
            None => Err(GroupError::UnknownMember {
                member_id: member_id.to_string(),
            }),
        }
    }

    /// Checks a commit and returns the (key, value) record to append to the
    /// offsets log. Nothing changes here: once the record is durable, pass
    /// it to `apply` (the same call that replays the log on start).
    pub fn prepare_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
        commit: &OffsetCommit,
    ) -> Result<(Bytes, Bytes), GroupError> {
        check_group_id(&commit.group)?;
        let tp = TopicPartition::new(commit.topic.as_str(), commit.partition);
        self.check_commit(&commit.group, member_id, member_epoch, &tp)?;
        Ok(commit.record()?)
    }

    /// Applies one record of the offsets log (value None: tombstone).
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), OffsetError> {
        self.offsets.apply_record(key, value)
    }

    pub fn committed(&self, group_id: &str, tp: &TopicPartition) -> Option<&CommittedOffset> {
        self.offsets.get(group_id, tp)
    }

    pub fn offsets(&self) -> &OffsetTable {
        &self.offsets
    }

    /// Deletes a group with no members: its state and its offsets. Returns
    /// the keys to append as tombstones so the deletion survives a restart.
    pub fn delete_group(&mut self, group_id: &str) -> Result<Vec<Bytes>, GroupError> {
        let known = self.groups.contains_key(group_id) || self.offsets.has_group(group_id);
        if !known {
            return Err(GroupError::UnknownGroup {
                group_id: group_id.to_string(),
            });
        }
        if let Some(g) = self.groups.get(group_id) {
            if !g.is_empty() {
                return Err(GroupError::GroupNotEmpty {
                    members: g.members.len(),
                });
            }
        }
        self.groups.remove(group_id);
        let keys = self.offsets.remove_group(group_id);
        // Keys in the table passed `decode`'s bounds, so they encode.
        Ok(keys.iter().filter_map(|k| encode_key(k).ok()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::Strategy as _;

    fn topics(spec: &[(&str, u32)]) -> Arc<BTreeMap<String, u32>> {
        Arc::new(spec.iter().map(|(t, n)| (t.to_string(), *n)).collect())
    }

    fn tp(t: &str, p: u32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    /// A well-behaved consumer: consumes what its last response said and
    /// reports that as owned on the next heartbeat.
    #[derive(Debug, Clone)]
    struct Client {
        id: String,
        epoch: i32,
        have: Vec<TopicPartition>,
    }

    fn join(g: &mut Group, now_ms: u64, name: &str, sub: Subscription) -> Client {
        let r = g
            .heartbeat(now_ms, HeartbeatRequest::join(name, sub))
            .unwrap();
        Client {
            id: r.member_id,
            epoch: r.member_epoch,
            have: r.assignment,
        }
    }

    fn beat(g: &mut Group, now_ms: u64, c: &mut Client) {
        let r = g
            .heartbeat(
                now_ms,
                HeartbeatRequest::beat(&c.id, c.epoch, c.have.clone()),
            )
            .unwrap();
        c.epoch = r.member_epoch;
        c.have = r.assignment;
    }

    fn settle(g: &mut Group, now_ms: u64, clients: &mut [Client]) {
        for _ in 0..4 {
            for c in clients.iter_mut() {
                beat(g, now_ms, c);
            }
        }
        assert_eq!(g.state(), GroupState::Stable, "{:#?}", g.describe());
    }

    fn sticky_group(t: &[(&str, u32)]) -> Group {
        Group::new("g", topics(t), 1)
    }

    fn sub_t() -> Subscription {
        Subscription::topics(["t"])
    }

    #[test]
    fn three_members_over_six_partitions_get_two_each() {
        let mut g = sticky_group(&[("t", 6)]);
        let mut cs = vec![join(&mut g, 0, "a", sub_t())];
        assert_eq!(cs[0].have.len(), 6);
        cs.push(join(&mut g, 0, "b", sub_t()));
        // b must wait: a still holds everything.
        assert!(cs[1].have.is_empty());
        cs.push(join(&mut g, 0, "c", sub_t()));
        settle(&mut g, 0, &mut cs);
        for c in &cs {
            assert_eq!(c.have.len(), 2, "{c:?}");
        }
        let d = g.describe();
        assert_eq!(d.group_epoch, 3);
        assert!(d.members.iter().all(|m| m.member_epoch == 3));
    }

    #[test]
    fn a_leaving_members_partitions_go_to_the_others_once_they_report() {
        let mut g = sticky_group(&[("t", 6)]);
        let mut cs: Vec<Client> = ["a", "b", "c"]
            .iter()
            .map(|n| join(&mut g, 0, n, sub_t()))
            .collect();
        settle(&mut g, 0, &mut cs);
        let gone = cs.remove(1);
        g.heartbeat(
            0,
            HeartbeatRequest {
                member_epoch: -1,
                ..HeartbeatRequest::beat(&gone.id, gone.epoch, vec![])
            },
        )
        .unwrap();
        assert_eq!(
            g.check_commit(&gone.id, gone.epoch, &gone.have[0])
                .unwrap_err()
                .code(),
            "UnknownMember"
        );
        settle(&mut g, 0, &mut cs);
        assert_eq!(cs[0].have.len() + cs[1].have.len(), 6);
        assert_eq!(cs[0].have.len(), 3);
    }

    #[test]
    fn a_member_that_stops_heartbeating_expires_and_its_partitions_move() {
        let mut g = sticky_group(&[("t", 6)]);
        let mut cs: Vec<Client> = ["a", "b"]
            .iter()
            .map(|n| join(&mut g, 0, n, sub_t()))
            .collect();
        settle(&mut g, 0, &mut cs);
        // Only "a" heartbeats from now on.
        beat(&mut g, 40_000, &mut cs[0]);
        assert!(
            g.expire(45_000).is_empty(),
            "b's 45 s session has not passed"
        );
        let expired = g.expire(45_001);
        assert_eq!(
            expired,
            vec![(cs[1].id.clone(), ExpiryReason::SessionTimeout)]
        );
        cs.truncate(1);
        settle(&mut g, 45_001, &mut cs);
        assert_eq!(cs[0].have.len(), 6);
    }

    #[test]
    fn timeouts_set_on_join_hold_until_changed() {
        let mut g = sticky_group(&[("t", 1)]);
        let mut req = HeartbeatRequest::join("a", sub_t());
        req.session_timeout_ms = 10_000;
        let r = g.heartbeat(0, req).unwrap();
        assert_eq!(
            r.heartbeat_interval_ms,
            (10_000 / 3).min(MAX_HEARTBEAT_INTERVAL_MS)
        );
        let mut c = Client {
            id: r.member_id,
            epoch: r.member_epoch,
            have: r.assignment,
        };
        // beat() leaves the timeouts at 0: unchanged, not reset to defaults.
        let r = g.heartbeat(
            5_000,
            HeartbeatRequest::beat(&c.id, c.epoch, c.have.clone()),
        );
        assert_eq!(
            r.unwrap().heartbeat_interval_ms,
            (10_000 / 3).min(MAX_HEARTBEAT_INTERVAL_MS)
        );
        beat(&mut g, 5_000, &mut c);
        assert!(g.expire(15_000).is_empty());
        let mut req = HeartbeatRequest::beat(&c.id, c.epoch, c.have.clone());
        req.session_timeout_ms = 20_000;
        g.heartbeat(15_000, req).unwrap();
        assert!(g.expire(35_000).is_empty());
        assert_eq!(g.expire(35_001), vec![(c.id, ExpiryReason::SessionTimeout)]);
    }

    #[test]
    fn a_member_that_heartbeats_but_never_polls_expires() {
        let mut g = sticky_group(&[("t", 2)]);
        let mut c = join(&mut g, 0, "a", sub_t());
        for now in (10_000..=300_000).step_by(10_000) {
            let mut req = HeartbeatRequest::beat(&c.id, c.epoch, c.have.clone());
            req.polled = false;
            c.epoch = g.heartbeat(now, req).unwrap().member_epoch;
        }
        assert!(g.expire(300_000).is_empty());
        assert_eq!(g.expire(300_001), vec![(c.id, ExpiryReason::PollTimeout)]);
        assert!(g.is_empty());
        assert_eq!(g.state(), GroupState::Empty);
    }

    #[test]
    fn a_member_that_never_releases_a_revoked_partition_is_removed() {
        let mut g = sticky_group(&[("t", 2)]);
        let mut a = join(&mut g, 0, "a", sub_t());
        let mut b = join(&mut g, 0, "b", sub_t());
        // a keeps heartbeating and polling but always claims both partitions.
        for now in (10_000..=300_000).step_by(10_000) {
            let r = g
                .heartbeat(now, HeartbeatRequest::beat(&a.id, a.epoch, a.have.clone()))
                .unwrap();
            a.epoch = r.member_epoch;
            beat(&mut g, now, &mut b);
            assert!(b.have.is_empty());
        }
        assert!(g.expire(300_000).is_empty());
        assert_eq!(
            g.expire(300_001),
            vec![(a.id, ExpiryReason::RevocationTimeout)]
        );
        beat(&mut g, 300_001, &mut b);
        assert_eq!(b.have.len(), 2);
    }

    #[test]
    fn sticky_joiner_takes_only_what_balance_requires_after_the_owner_releases() {
        let mut g = sticky_group(&[("t", 6)]);
        let mut cs: Vec<Client> = ["a", "b"]
            .iter()
            .map(|n| join(&mut g, 0, n, sub_t()))
            .collect();
        settle(&mut g, 0, &mut cs);
        let before: Vec<Vec<TopicPartition>> = cs.iter().map(|c| c.have.clone()).collect();
        let mut c = join(&mut g, 1, "c", sub_t());
        assert!(c.have.is_empty(), "a and b still hold its partitions");
        // a is told at once to give one up, and keeps the rest.
        beat(&mut g, 2, &mut cs[0]);
        assert_eq!(cs[0].have.len(), 2);
        assert!(cs[0].have.iter().all(|p| before[0].contains(p)));
        let released: Vec<_> = before[0]
            .iter()
            .filter(|p| !cs[0].have.contains(p))
            .cloned()
            .collect();
        // Until a reports the release, c cannot get it.
        beat(&mut g, 3, &mut c);
        assert!(c.have.is_empty());
        beat(&mut g, 4, &mut cs[0]); // reports owned without it
        beat(&mut g, 5, &mut c);
        assert_eq!(c.have, released);
        cs.push(c);
        settle(&mut g, 6, &mut cs);
        for (c, b) in cs.iter().zip(&before) {
            assert!(
                c.have.iter().all(|p| b.contains(p)),
                "an old member gained a partition"
            );
        }
        assert!(cs.iter().all(|c| c.have.len() == 2));
    }

    #[test]
    fn commits_are_fenced_by_member_epoch_and_assignment() {
        let mut g = sticky_group(&[("t", 2)]);
        let mut a = join(&mut g, 0, "a", sub_t());
        let old_epoch = a.epoch;
        assert_eq!(g.check_commit(&a.id, a.epoch, &tp("t", 0)), Ok(()));
        let mut b = join(&mut g, 0, "b", sub_t());
        beat(&mut g, 0, &mut a);
        beat(&mut g, 0, &mut a);
        beat(&mut g, 0, &mut b);
        assert!(a.epoch > old_epoch);
        // One epoch behind: the member's view while the answer that bumped
        // it is on its way (commits and heartbeats travel apart). Accepted
        // for a partition it holds; any other epoch is fenced.
        let prev = g.member(&a.id).unwrap().previous_epoch;
        assert!(prev > 0 && prev < a.epoch);
        assert_eq!(g.check_commit(&a.id, prev, &a.have[0]), Ok(()));
        for stale in [prev - 1, a.epoch + 1] {
            assert_eq!(
                g.check_commit(&a.id, stale, &a.have[0]),
                Err(GroupError::StaleMemberEpoch {
                    given: stale,
                    current: a.epoch
                })
            );
        }
        assert_eq!(g.check_commit(&a.id, a.epoch, &a.have[0]), Ok(()));
        assert_eq!(
            g.check_commit(&a.id, a.epoch, &b.have[0])
                .unwrap_err()
                .code(),
            "NotAssigned"
        );
        assert_eq!(
            g.check_commit("nobody", 1, &b.have[0]).unwrap_err().code(),
            "UnknownMember"
        );
        // Simple commits (no member) only while the group is empty.
        assert_eq!(
            g.check_commit("", -1, &tp("t", 0)),
            Err(GroupError::GroupNotEmpty { members: 2 })
        );
        g.leave(&a.id, a.epoch).unwrap();
        g.leave(&b.id, -1).unwrap();
        assert_eq!(g.check_commit("", -1, &tp("t", 0)), Ok(()));
    }

    #[test]
    fn a_revoking_member_may_commit_what_it_still_holds() {
        let mut g = sticky_group(&[("t", 2)]);
        let mut a = join(&mut g, 0, "a", sub_t());
        let _b = join(&mut g, 0, "b", sub_t());
        let epoch = a.epoch;
        // a still holds both; its epoch stays until it releases.
        for p in &a.have {
            assert_eq!(g.check_commit(&a.id, epoch, p), Ok(()));
        }
        beat(&mut g, 0, &mut a);
        assert_eq!(
            a.epoch, epoch,
            "epoch moves only once the release is reported"
        );
        beat(&mut g, 0, &mut a);
        assert!(a.epoch > epoch);
    }

    #[test]
    fn a_stale_heartbeat_is_fenced_and_a_rejoin_starts_over() {
        let mut g = sticky_group(&[("t", 2)]);
        let mut a = join(&mut g, 0, "a", sub_t());
        assert_eq!(a.epoch, 1);
        let _b = join(&mut g, 0, "b", sub_t());
        beat(&mut g, 0, &mut a); // told to give one up; still epoch 1
        assert_eq!((a.epoch, a.have.len()), (1, 1));
        beat(&mut g, 0, &mut a); // released: epoch 2
        assert_eq!(a.epoch, 2);
        let _c = join(&mut g, 0, "c", sub_t());
        beat(&mut g, 0, &mut a);
        assert_eq!(a.epoch, 3);
        // The previous epoch is accepted (a lost response), older is not.
        let r = g.heartbeat(1, HeartbeatRequest::beat(&a.id, 2, a.have.clone()));
        assert_eq!(r.unwrap().member_epoch, 3);
        let err = g
            .heartbeat(1, HeartbeatRequest::beat(&a.id, 1, a.have.clone()))
            .unwrap_err();
        assert_eq!(
            err,
            GroupError::StaleMemberEpoch {
                given: 1,
                current: 3
            }
        );
        // A rejoin with the same id owns nothing and gets a fresh epoch.
        let mut rejoin = HeartbeatRequest::join("a", sub_t());
        rejoin.member_id = Some(a.id.clone());
        let r = g.heartbeat(2, rejoin).unwrap();
        assert_eq!(r.member_id, a.id);
        assert_eq!(r.member_epoch, g.group_epoch() as i32);
        assert_eq!(g.describe().members.len(), 3);
    }

    #[test]
    fn the_first_member_fixes_the_strategy() {
        let mut g = sticky_group(&[("t", 2)]);
        let mut req = HeartbeatRequest::join("a", sub_t());
        req.strategy = Some(Strategy::Range);
        let a = g.heartbeat(0, req.clone()).unwrap();
        // The sole member rejoining without naming one keeps the strategy.
        let mut rejoin = HeartbeatRequest::join("a", sub_t());
        rejoin.member_id = Some(a.member_id.clone());
        let a = g.heartbeat(0, rejoin).unwrap();
        assert_eq!(g.describe().strategy, Some(Strategy::Range));
        req.strategy = Some(Strategy::RoundRobin);
        let before = g.describe();
        assert_eq!(
            g.heartbeat(0, req.clone()),
            Err(GroupError::InconsistentStrategy {
                group: Strategy::Range,
                requested: Strategy::RoundRobin
            })
        );
        assert_eq!(g.describe(), before, "a refused join changes nothing");
        g.leave(&a.member_id, a.member_epoch).unwrap();
        assert_eq!(
            g.heartbeat(0, req).unwrap().member_epoch,
            g.group_epoch() as i32
        );
        assert_eq!(g.describe().strategy, Some(Strategy::RoundRobin));
    }

    #[test]
    fn bad_requests_are_refused_with_their_codes() {
        let mut g = sticky_group(&[("t", 2)]);
        let mut req = HeartbeatRequest::join("a", sub_t());
        req.session_timeout_ms = 999;
        assert_eq!(
            g.heartbeat(0, req).unwrap_err().code(),
            "InvalidSessionTimeout"
        );
        let mut req = HeartbeatRequest::join("a", sub_t());
        req.max_poll_interval_ms = 3_600_001;
        assert_eq!(
            g.heartbeat(0, req).unwrap_err().code(),
            "InvalidSessionTimeout"
        );
        let mut req = HeartbeatRequest::join("a", sub_t());
        req.subscription = None;
        assert_eq!(
            g.heartbeat(0, req).unwrap_err().code(),
            "InvalidSubscription"
        );
        let req = HeartbeatRequest::join("a", Subscription::Prefix(String::new()));
        assert_eq!(
            g.heartbeat(0, req).unwrap_err().code(),
            "InvalidSubscription"
        );
        let req = HeartbeatRequest::beat("who", 3, vec![]);
        assert_eq!(g.heartbeat(0, req).unwrap_err().code(), "UnknownMember");
        assert_eq!(
            "uniform".parse::<Strategy>().unwrap_err().code(),
            "UnsupportedStrategy"
        );
        assert_eq!("range".parse::<Strategy>(), Ok(Strategy::Range));
        let mut req = HeartbeatRequest::join("a", sub_t());
        req.member_epoch = -2;
        assert_eq!(g.heartbeat(0, req).unwrap_err().code(), "InvalidRequest");
        assert!(g.is_empty());
        assert_eq!(g.group_epoch(), 0);
    }

    #[test]
    fn topics_created_later_reach_prefix_and_explicit_subscribers() {
        let mut g = sticky_group(&[("other", 3)]);
        let mut a = join(&mut g, 0, "a", Subscription::Prefix("ev.".into()));
        let mut b = join(&mut g, 0, "b", Subscription::topics(["later"]));
        assert!(a.have.is_empty() && b.have.is_empty());
        let epoch = g.group_epoch();
        g.metadata_changed(topics(&[("other", 3), ("zzz", 1)]));
        assert_eq!(g.group_epoch(), epoch, "nothing the group reads changed");
        g.metadata_changed(topics(&[("other", 3), ("ev.clicks", 2), ("later", 1)]));
        assert_eq!(g.group_epoch(), epoch + 1);
        beat(&mut g, 0, &mut a);
        beat(&mut g, 0, &mut b);
        assert_eq!(a.have, vec![tp("ev.clicks", 0), tp("ev.clicks", 1)]);
        assert_eq!(b.have, vec![tp("later", 0)]);
        // Partitions added later too.
        g.metadata_changed(topics(&[("other", 3), ("ev.clicks", 3), ("later", 1)]));
        beat(&mut g, 0, &mut a);
        assert_eq!(a.have.len(), 3);
    }

    #[test]
    fn regex_subscriptions_match_whole_names_and_never_internal_topics() {
        let re = |s: &str| Subscription::Regex(TopicRegex::new(s).unwrap());
        let meta = topics(&[
            ("ev.a", 1),
            ("ev.b", 1),
            ("xev.c", 1),
            ("__consumer_offsets", 2),
        ]);
        let names = |s: &Subscription| s.resolve(&meta).into_iter().collect::<Vec<_>>();
        // Whole names: `ev\..*` does not match `xev.c`.
        assert_eq!(names(&re("ev\\..*")), vec!["ev.a", "ev.b"]);
        assert_eq!(names(&re(".*ev.*")), vec!["ev.a", "ev.b", "xev.c"]);
        // The offsets topic is never assigned, whatever names it.
        assert_eq!(names(&re("__consumer_offsets|ev.a")), vec!["ev.a"]);
        assert!(names(&Subscription::Prefix("_".into())).is_empty());
        assert!(names(&Subscription::topics(["__consumer_offsets"])).is_empty());
        // Bad or hostile patterns are refused, not compiled without bound.
        for bad in ["(", "a{99999}{99999}", ""] {
            assert_eq!(
                TopicRegex::new(bad).unwrap_err().code(),
                "InvalidRegex",
                "{bad:?}"
            );
        }
        let long = "a".repeat(TopicRegex::MAX_BYTES + 1);
        assert!(TopicRegex::new(&long).is_err());
        // Members join with one and follow topics made later.
        let mut g = sticky_group(&[("ev.a", 2)]);
        let mut a = join(&mut g, 0, "a", re("ev\\..*"));
        beat(&mut g, 0, &mut a);
        assert_eq!(a.have, vec![tp("ev.a", 0), tp("ev.a", 1)]);
        g.metadata_changed(topics(&[("ev.a", 2), ("ev.new", 1), ("other", 1)]));
        beat(&mut g, 0, &mut a);
        assert_eq!(a.have, vec![tp("ev.a", 0), tp("ev.a", 1), tp("ev.new", 0)]);
    }

    #[test]
    fn coordinator_lists_describes_and_deletes_only_empty_groups() {
        let mut c = Coordinator::new(9);
        c.metadata_changed(BTreeMap::from([("t".to_string(), 4)]));
        let r = c
            .heartbeat("g1", 0, HeartbeatRequest::join("a", sub_t()))
            .unwrap();
        assert!(r.member_id.starts_with("a-"));
        assert_eq!(
            c.list()[0].state,
            GroupState::Reconciling,
            "not yet acknowledged"
        );
        let beat = HeartbeatRequest::beat(&r.member_id, r.member_epoch, r.assignment.clone());
        assert_eq!(c.heartbeat("g1", 0, beat).unwrap(), r);
        assert_eq!(r.heartbeat_interval_ms, MAX_HEARTBEAT_INTERVAL_MS);
        assert_eq!(
            c.heartbeat("nope", 0, HeartbeatRequest::beat("x", 1, vec![]))
                .unwrap_err()
                .code(),
            "UnknownMember"
        );
        assert!(
            c.describe("nope").is_none(),
            "a failed heartbeat creates no group"
        );
        // A commit by the member, then a simple commit to another group.
        let commit = OffsetCommit {
            group: "g1".into(),
            topic: "t".into(),
            partition: 0,
            offset: 10,
            metadata: "m".into(),
            commit_ts_ms: 5,
            leader_epoch: -1,
        };
        let (k, v) = c
            .prepare_commit(&r.member_id, r.member_epoch, &commit)
            .unwrap();
        assert_eq!(
            c.committed("g1", &tp("t", 0)),
            None,
            "not applied before it is durable"
        );
        c.apply(&k, Some(&v)).unwrap();
        assert_eq!(c.committed("g1", &tp("t", 0)).unwrap().offset, 10);
        let standalone = OffsetCommit {
            group: "g2".into(),
            ..commit.clone()
        };
        assert_eq!(
            c.prepare_commit(&r.member_id, r.member_epoch, &standalone)
                .unwrap_err()
                .code(),
            "UnknownMember"
        );
        let (k2, v2) = c.prepare_commit("", -1, &standalone).unwrap();
        c.apply(&k2, Some(&v2)).unwrap();
        assert_eq!(
            c.prepare_commit("", -1, &commit).unwrap_err().code(),
            "GroupNotEmpty"
        );
        let list: Vec<(String, GroupState, usize)> = c
            .list()
            .into_iter()
            .map(|l| (l.group_id, l.state, l.members))
            .collect();
        assert_eq!(
            list,
            vec![
                ("g1".into(), GroupState::Stable, 1),
                ("g2".into(), GroupState::Empty, 0)
            ]
        );
        assert_eq!(c.delete_group("g1").unwrap_err().code(), "GroupNotEmpty");
        assert_eq!(c.delete_group("g3").unwrap_err().code(), "UnknownGroup");
        // The member expires; the group then deletes, giving tombstones.
        assert_eq!(c.expire_all(45_001).len(), 1);
        assert_eq!(c.describe("g1").unwrap().state, GroupState::Empty);
        assert_eq!(c.delete_group("g1").unwrap(), vec![k.clone()]);
        assert!(c.describe("g1").is_none());
        // Replaying the log (commit then tombstone) ends without the group.
        let mut replay = Coordinator::new(1);
        replay.apply(&k, Some(&v)).unwrap();
        replay.apply(&k, None).unwrap();
        assert!(replay.list().is_empty());
    }

    #[test]
    fn a_new_group_past_the_bound_is_refused_and_existing_ones_go_on() {
        let mut c = Coordinator::new(9);
        c.max_groups = 2;
        let r = c
            .heartbeat("g1", 0, HeartbeatRequest::join("a", sub_t()))
            .unwrap();
        c.heartbeat("g2", 0, HeartbeatRequest::join("a", sub_t()))
            .unwrap();
        let err = c.heartbeat("g3", 0, HeartbeatRequest::join("a", sub_t()));
        assert_eq!(err.unwrap_err(), GroupError::TooManyGroups { max: 2 });
        c.heartbeat("g1", 0, HeartbeatRequest::join("b", sub_t()))
            .unwrap();
        c.leave("g1", &r.member_id, -1).unwrap();
        assert_eq!(c.list().len(), 2);
    }

    #[test]
    fn expire_all_forgets_groups_with_no_members_and_no_offsets() {
        let mut c = Coordinator::new(9);
        let r = c
            .heartbeat("g", 0, HeartbeatRequest::join("a", sub_t()))
            .unwrap();
        c.leave("g", &r.member_id, r.member_epoch).unwrap();
        assert_eq!(c.list().len(), 1);
        assert!(c.expire_all(1).is_empty());
        assert!(c.list().is_empty());
    }

    #[test]
    fn a_generated_member_id_fits_the_id_bound_for_any_client_id() {
        let mut g = sticky_group(&[("t", 1)]);
        let mut c = join(&mut g, 0, &"\u{e9}".repeat(MAX_ID_BYTES / 2), sub_t());
        assert!(c.id.len() <= MAX_ID_BYTES);
        beat(&mut g, 0, &mut c);
        assert_eq!(c.have, vec![tp("t", 0)]);
    }

    #[test]
    fn member_ids_are_unique_and_differ_between_seeds() {
        let mut g = Group::new("g", topics(&[]), 1);
        let ids: BTreeSet<String> = (0..50).map(|_| join(&mut g, 0, "c", sub_t()).id).collect();
        assert_eq!(ids.len(), 50);
        let mut h = Group::new("g", topics(&[]), 2);
        assert!(!ids.contains(&join(&mut h, 0, "c", sub_t()).id));
    }

    /// One step of a random history.
    #[derive(Debug, Clone)]
    enum Op {
        Join {
            sub: u8,
        },
        Beat {
            who: usize,
            report: bool,
            lose_response: bool,
        },
        Resubscribe {
            who: usize,
            sub: u8,
        },
        Leave {
            who: usize,
        },
        /// Time passes with only these clients heartbeating; then expiry.
        Stall {
            ms: u64,
            silent: usize,
        },
        Metadata {
            counts: [u32; 3],
        },
    }

    fn arb_op() -> impl proptest::strategy::Strategy<Value = Op> {
        prop_oneof![
            2 => (0..4u8).prop_map(|sub| Op::Join { sub }),
            6 => (0..8usize, any::<bool>(), proptest::bool::weighted(0.1))
                .prop_map(|(who, report, lose_response)| Op::Beat { who, report, lose_response }),
            1 => (0..8usize, 0..4u8).prop_map(|(who, sub)| Op::Resubscribe { who, sub }),
            1 => (0..8usize).prop_map(|who| Op::Leave { who }),
            1 => (1..60_000u64, 0..8usize).prop_map(|(ms, silent)| Op::Stall { ms, silent }),
            1 => [0..6u32, 0..6u32, 0..6u32].prop_map(|counts| Op::Metadata { counts }),
        ]
    }

    fn subscription(n: u8) -> Subscription {
        match n {
            0 => Subscription::topics(["a"]),
            1 => Subscription::topics(["a", "b"]),
            2 => Subscription::Prefix("c".into()),
            _ => Subscription::topics(["b", "c1", "missing"]),
        }
    }

    fn meta(counts: [u32; 3]) -> Arc<BTreeMap<String, u32>> {
        topics(&[("a", counts[0]), ("b", counts[1]), ("c1", counts[2])])
    }

    /// Clients never consume the same partition at once: what a client was
    /// last told it may consume (it stops consuming what a response drops).
    fn assert_clients_disjoint(clients: &[Client]) {
        let mut seen = BTreeSet::new();
        for c in clients {
            for p in &c.have {
                assert!(seen.insert(p.clone()), "{p} consumed twice: {clients:#?}");
            }
        }
    }

    /// A heartbeat as a real client does it; on a stale epoch (two lost
    /// responses in a row) it drops everything and rejoins under its id.
    fn model_beat(g: &mut Group, now: u64, c: &mut Client, report: bool, lose_response: bool) {
        let mut req = HeartbeatRequest::beat(&c.id, c.epoch, c.have.clone());
        if !report {
            req.owned = None;
        }
        match g.heartbeat(now, req) {
            Ok(r) if !lose_response => {
                c.epoch = r.member_epoch;
                c.have = r.assignment;
            }
            Ok(_) => {}
            Err(GroupError::StaleMemberEpoch { .. }) => {
                c.have.clear();
                let mut req = HeartbeatRequest::join("c", subscription(0));
                req.member_id = Some(c.id.clone());
                let r = g.heartbeat(now, req).unwrap();
                c.epoch = r.member_epoch;
                c.have = r.assignment;
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn run(strategy: Strategy, ops: Vec<Op>) {
        let mut g = Group::new("g", meta([3, 4, 2]), 5);
        let mut clients: Vec<Client> = Vec::new();
        let mut now = 0u64;
        for op in ops {
            match op {
                Op::Join { sub } => {
                    let mut req = HeartbeatRequest::join("c", subscription(sub));
                    req.strategy = Some(strategy);
                    let r = g.heartbeat(now, req).unwrap();
                    clients.push(Client {
                        id: r.member_id,
                        epoch: r.member_epoch,
                        have: r.assignment,
                    });
                }
                Op::Beat {
                    who,
                    report,
                    lose_response,
                } if !clients.is_empty() => {
                    let n = clients.len();
                    model_beat(&mut g, now, &mut clients[who % n], report, lose_response);
                }
                Op::Resubscribe { who, sub } if !clients.is_empty() => {
                    let n = clients.len();
                    let c = &mut clients[who % n];
                    let mut req = HeartbeatRequest::beat(&c.id, c.epoch, c.have.clone());
                    req.subscription = Some(subscription(sub));
                    if let Ok(r) = g.heartbeat(now, req) {
                        c.epoch = r.member_epoch;
                        c.have = r.assignment;
                    }
                }
                Op::Leave { who } if !clients.is_empty() => {
                    let c = clients.remove(who % clients.len());
                    // Two lost responses leave the client's epoch too old to
                    // leave with; the leave heartbeat (-1) always works.
                    match g.leave(&c.id, c.epoch) {
                        Err(GroupError::StaleMemberEpoch { .. }) => g.leave(&c.id, -1).unwrap(),
                        r => r.unwrap(),
                    }
                }
                Op::Stall { ms, silent } => {
                    now += ms;
                    let silent = if clients.is_empty() {
                        usize::MAX
                    } else {
                        silent % clients.len()
                    };
                    for (i, c) in clients.iter_mut().enumerate() {
                        if i != silent {
                            model_beat(&mut g, now, c, true, false);
                        }
                    }
                    let expired: BTreeSet<MemberId> =
                        g.expire(now).into_iter().map(|(m, _)| m).collect();
                    // An expired client learns it on its next call; until then
                    // it is a zombie (fenced on commit), out of our check.
                    for m in &expired {
                        let c = clients.iter().find(|c| &c.id == m).unwrap();
                        assert_eq!(
                            g.check_commit(&c.id, c.epoch, &tp("a", 0))
                                .unwrap_err()
                                .code(),
                            "UnknownMember"
                        );
                    }
                    clients.retain(|c| !expired.contains(&c.id));
                }
                Op::Metadata { counts } => g.metadata_changed(meta(counts)),
                _ => {}
            }
            g.check_invariants().unwrap();
            assert_clients_disjoint(&clients);
        }
        // Catch up: a client two lost responses behind is fenced and rejoins
        // here, which changes the target; after this round none is behind.
        for c in clients.iter_mut() {
            model_beat(&mut g, now, c, true, false);
        }
        // Settle: twice each, reporting what they have -> target reached.
        let epoch = g.group_epoch();
        for _ in 0..2 {
            for c in clients.iter_mut() {
                model_beat(&mut g, now, c, true, false);
            }
            assert_clients_disjoint(&clients);
        }
        assert_eq!(g.group_epoch(), epoch, "no rejoin while settling");
        let d = g.describe();
        for m in &d.members {
            assert_eq!(m.assignment, m.target, "{d:#?}");
            assert_eq!(m.member_epoch, d.group_epoch as i32);
        }
        for _ in 0..2 {
            for c in clients.iter_mut() {
                model_beat(&mut g, now, c, true, false);
            }
        }
        assert_clients_disjoint(&clients);
        assert_eq!(
            g.state(),
            if clients.is_empty() {
                GroupState::Empty
            } else {
                GroupState::Stable
            }
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn random_histories_never_share_a_partition_and_converge(
            strategy in prop_oneof![Just(Strategy::Range), Just(Strategy::RoundRobin), Just(Strategy::Sticky)],
            ops in proptest::collection::vec(arb_op(), 1..60),
        ) {
            run(strategy, ops);
        }
    }
}
