//! The group consumer: consumers sharing a group id share the partitions of
//! the topics they subscribe to; the broker's coordinator assigns them
//! (KIP-848 style), this side follows.
//!
//! Owns: a heartbeat thread (its own connection: a slow application does not
//! miss heartbeats; it reports what the consumer owns and brings back what
//! it may own), reconciliation on the application's thread at each `poll`
//! (revoked partitions: commit if auto-commit, tell the rebalance callback,
//! stop owning; assigned ones: start from the committed offset or the reset
//! policy), positions, pause/resume, seeks, and commits (sync, async, auto).
//!
//! Must never: consume a partition the coordinator did not give it, keep a
//! partition it was told to release past the next `poll`, or commit for a
//! partition it does not own. When the coordinator fences it (session lost),
//! every partition is dropped at once without a commit: another member may
//! already own them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::blocking::{Client, ClientError, RoutedClient, Ticket};
use crate::batch::{decompress, split_batches, BatchHeader, Header, Records, TxnFilter};
use crate::protocol::*;

/// A partition of a topic.
pub type Tp = (String, u32);

/// Where a partition with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group: String,
    /// Subscribed topics (those that exist; topics created later join).
    pub topics: Vec<String>,
    /// Or every topic whose name starts with this.
    pub topic_prefix: Option<String>,
    /// range | roundrobin | sticky (None: the group's, or the broker's default).
    pub strategy: Option<String>,
    pub session_timeout_ms: u32,
    pub max_poll_interval_ms: u32,
    /// Commit positions this often from `poll` (None: only explicit commits).
    pub auto_commit: Option<Duration>,
    pub offset_reset: OffsetReset,
    pub client_id: String,
    /// Per partition and fetch.
    pub max_partition_fetch_bytes: u32,
    /// How long `poll` and commits keep reconnecting to a broker they lost
    /// (a restart) before they give up with the connection error.
    pub reconnect_timeout: Duration,
    /// Kafka's `isolation.level=read_committed`: only records of committed
    /// transactions (and of no transaction), up to the last stable offset.
    pub read_committed: bool,
}

impl GroupConfig {
    /// Kafka's defaults: 45 s session, 5 min max poll interval, auto-commit
    /// every 5 s, start at the latest offset.
    pub fn new(group: &str, topics: &[&str]) -> GroupConfig {
        GroupConfig {
            group: group.to_owned(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            topic_prefix: None,
            strategy: None,
            session_timeout_ms: 45_000,
            max_poll_interval_ms: 300_000,
            auto_commit: Some(Duration::from_secs(5)),
            offset_reset: OffsetReset::Latest,
            client_id: format!("shardlog-consumer-{}", std::process::id()),
            max_partition_fetch_bytes: 1 << 20,
            reconnect_timeout: Duration::from_secs(60),
            read_committed: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Shared by every message of the topic (no allocation per message).
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// What the rebalance callback is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    /// These are now this consumer's (positions set).
    Assigned(Vec<Tp>),
    /// These are being taken away; their positions were committed first
    /// when auto-commit is on. The callback may commit them itself.
    Revoked(Vec<Tp>),
    /// These were lost without a commit (the member was fenced).
    Lost(Vec<Tp>),
}

impl ConsumerError {
    /// The broker went away (restart, network): worth reconnecting.
    pub fn is_connection(&self) -> bool {
        match self {
            ConsumerError::Client(
                ClientError::Io(_) | ClientError::Closed | ClientError::Connect { .. },
            ) => true,
            ConsumerError::Client(ClientError::Broker(e)) => e.code == ErrorCode::ShuttingDown,
            _ => false,
        }
    }

    /// The coordinator no longer counts this member (session lost, broker
    /// restarted): its partitions may be someone else's now.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            ConsumerError::Client(ClientError::Broker(e))
                if matches!(e.code, ErrorCode::UnknownMember | ErrorCode::StaleMemberEpoch | ErrorCode::NotAssigned)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("heartbeat: {0}")]
    Heartbeat(String),
    #[error("partition {0}-{1} is not assigned to this consumer")]
    NotOwned(String, u32),
    #[error("the consumer is closed")]
    Closed,
}

/// Told of every assignment change, from `poll`.
pub type RebalanceCallback = Box<dyn FnMut(&Rebalance) + Send>;

/// Shared between the application's thread and the heartbeat thread.
#[derive(Default)]
struct HbState {
    member_id: String,
    member_epoch: i32,
    /// The latest assignment from the coordinator (None until joined).
    assignment: Option<BTreeSet<Tp>>,
    /// What the application side owns now (reported on each heartbeat).
    owned: BTreeSet<Tp>,
    owned_changed: bool,
    polled: bool,
    /// Set when the coordinator fenced the member: drop everything.
    fenced: bool,
    /// Heartbeats answered so far (the member was known at that moment).
    beats: u64,
    /// A fatal error (bad config, ...) to return from `poll`.
    fatal: Option<String>,
    stop: bool,
}

struct Hb {
    state: Mutex<HbState>,
    wake: Condvar,
}

struct PartState {
    /// Next offset to hand to the application: what commits commit.
    position: i64,
    /// Next offset to fetch (ahead of `position` by what is buffered).
    fetch_pos: i64,
    paused: bool,
}

pub struct GroupConsumer {
    cfg: GroupConfig,
    broker: String,
    data: RoutedClient,
    coord: Client,
    hb: Arc<Hb>,
    hb_thread: Option<JoinHandle<()>>,
    owned: BTreeMap<Tp, PartState>,
    /// Partition counts of the topics seen (for routing fetches).
    known_topics: BTreeSet<String>,
    /// Fetched, not yet delivered; for each partition, exactly the
    /// messages between its `position` and its `fetch_pos`.
    buffered: Vec<Message>,
    last_commit: Instant,
    /// Async commits sent on `coord` and not yet answered.
    pending_commits: Vec<u32>,
    /// After a reconnect: no fetching until a heartbeat newer than this was
    /// answered (the broker may have restarted and forgotten the member; its
    /// partitions may be someone else's by then).
    hold_until_beat: Option<u64>,
    /// Fetches sent and not yet received (fetch-ahead: the next fetch is on
    /// its way while the application works on what `poll` returned), with
    /// the offset each asked for: an answer for a partition that was since
    /// revoked, paused or sought is dropped.
    inflight: Vec<(Ticket, Vec<(Tp, i64)>)>,
    on_rebalance: Option<RebalanceCallback>,
    closed: bool,
}

fn to_wire(tps: &BTreeSet<Tp>) -> Vec<TopicPartitions> {
    let mut by: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in tps {
        by.entry(t).or_default().push(*p);
    }
    by.into_iter()
        .map(|(t, ps)| TopicPartitions {
            topic: t.to_owned(),
            partitions: ps,
        })
        .collect()
}

fn from_wire(v: &[TopicPartitions]) -> BTreeSet<Tp> {
    v.iter()
        .flat_map(|t| t.partitions.iter().map(move |&p| (t.topic.clone(), p)))
        .collect()
}

/// How long the heartbeat thread waits between attempts when the broker
/// cannot be reached.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);

fn heartbeat_loop(broker: String, cfg: GroupConfig, hb: Arc<Hb>) {
    let mut conn: Option<Client> = None;
    let mut interval = Duration::from_millis(500);
    let mut last_ok = Instant::now();
    let mut joined_subscription = false;
    loop {
        {
            let st = hb.state.lock().expect("heartbeat state");
            if !st.stop && st.member_epoch == 0 && st.fenced {
                // Fenced: rejoin only once the application has polled and
                // dropped what it owned. A member removed for not polling
                // must not come back (and take partitions) while its
                // application still is not polling.
                let _ = hb
                    .wake
                    .wait_timeout_while(st, interval, |s| !s.stop && s.fenced)
                    .expect("heartbeat state");
                continue;
            }
        }
        let (req, stopping) = {
            let mut st = hb.state.lock().expect("heartbeat state");
            if st.stop {
                (None, true)
            } else {
                let join = st.member_epoch == 0;
                let req = GroupHeartbeatRequest {
                    group: cfg.group.clone(),
                    member_id: st.member_id.clone(),
                    member_epoch: st.member_epoch,
                    topics: (join || !joined_subscription).then(|| cfg.topics.clone()),
                    topic_prefix: if join || !joined_subscription {
                        cfg.topic_prefix.clone()
                    } else {
                        None
                    },
                    topic_regex: None,
                    strategy: cfg.strategy.clone(),
                    session_timeout_ms: cfg.session_timeout_ms,
                    max_poll_interval_ms: cfg.max_poll_interval_ms,
                    owned: Some(to_wire(&st.owned)),
                    polled: std::mem::take(&mut st.polled) || join,
                    client_id: Some(cfg.client_id.clone()),
                };
                st.owned_changed = false;
                (Some(req), false)
            }
        };
        if stopping {
            let st = hb.state.lock().expect("heartbeat state");
            if st.member_epoch > 0 {
                if let Some(c) = conn.as_mut() {
                    let _ = c.leave_group(&cfg.group, &st.member_id, st.member_epoch);
                } else if let Ok(mut c) = Client::connect(&broker) {
                    let _ = c.leave_group(&cfg.group, &st.member_id, st.member_epoch);
                }
            }
            return;
        }
        let req = req.expect("not stopping");
        if conn.is_none() {
            match Client::connect(&broker) {
                Ok(mut c) => {
                    c.set_client_id(&cfg.client_id);
                    conn = Some(c);
                }
                Err(_) => {
                    std::thread::sleep(RECONNECT_BACKOFF);
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        match c.group_heartbeat(req) {
            Ok(r) => {
                last_ok = Instant::now();
                joined_subscription = true;
                interval = Duration::from_millis(r.heartbeat_interval_ms.clamp(50, 5_000) as u64);
                let mut st = hb.state.lock().expect("heartbeat state");
                st.member_id = r.member_id;
                st.member_epoch = r.member_epoch;
                st.assignment = Some(from_wire(&r.assignment));
                st.beats += 1;
            }
            Err(ClientError::Broker(e))
                if matches!(
                    e.code,
                    ErrorCode::UnknownMember | ErrorCode::StaleMemberEpoch
                ) =>
            {
                // Fenced: everything we own may belong to someone else now.
                // Rejoin as a new member once the application dropped it.
                let mut st = hb.state.lock().expect("heartbeat state");
                st.fenced = true;
                st.member_epoch = 0;
                st.member_id.clear();
                st.assignment = None;
                joined_subscription = false;
            }
            Err(ClientError::Broker(e)) => {
                let mut st = hb.state.lock().expect("heartbeat state");
                st.fatal = Some(e.message);
                return;
            }
            Err(_) => {
                // Connection trouble: reconnect and retry; after a whole
                // session without an answer the member is gone anyway.
                conn = None;
                if last_ok.elapsed() > Duration::from_millis(cfg.session_timeout_ms as u64) {
                    let mut st = hb.state.lock().expect("heartbeat state");
                    st.fenced = true;
                    st.member_epoch = 0;
                    st.member_id.clear();
                    st.assignment = None;
                    joined_subscription = false;
                }
                std::thread::sleep(RECONNECT_BACKOFF);
                continue;
            }
        }
        // Wait for the interval, or less when the owned set changed (a
        // rebalance completes as fast as both sides report).
        let st = hb.state.lock().expect("heartbeat state");
        let _ = hb
            .wake
            .wait_timeout_while(st, interval, |s| !s.stop && !s.owned_changed)
            .expect("heartbeat state");
    }
}

impl GroupConsumer {
    /// Connects and joins the group (the first assignment arrives with a
    /// following `poll`).
    pub fn new(broker: &str, cfg: GroupConfig) -> Result<GroupConsumer, ConsumerError> {
        let data = RoutedClient::connect(broker)?;
        let mut coord = Client::connect(broker)?;
        coord.set_client_id(&cfg.client_id);
        let hb = Arc::new(Hb {
            state: Mutex::new(HbState::default()),
            wake: Condvar::new(),
        });
        let thread = {
            let (broker, cfg, hb) = (broker.to_owned(), cfg.clone(), hb.clone());
            std::thread::Builder::new()
                .name("shardlog-heartbeat".into())
                .spawn(move || heartbeat_loop(broker, cfg, hb))
                .map_err(|e| ConsumerError::Heartbeat(e.to_string()))?
        };
        Ok(Self::with(broker, cfg, data, coord, hb, Some(thread)))
    }

    fn with(
        broker: &str,
        cfg: GroupConfig,
        data: RoutedClient,
        coord: Client,
        hb: Arc<Hb>,
        hb_thread: Option<JoinHandle<()>>,
    ) -> GroupConsumer {
        GroupConsumer {
            cfg,
            broker: broker.to_owned(),
            data,
            coord,
            hb,
            hb_thread,
            owned: BTreeMap::new(),
            known_topics: BTreeSet::new(),
            buffered: Vec::new(),
            last_commit: Instant::now(),
            pending_commits: Vec::new(),
            hold_until_beat: None,
            inflight: Vec::new(),
            on_rebalance: None,
            closed: false,
        }
    }

    /// A consumer of fixed partitions (Kafka's `assign`): no membership, no
    /// heartbeats; commits go to `cfg.group` as commits from outside the
    /// group (allowed while the group has no members), and each partition
    /// starts at the group's committed offset or the reset policy.
    pub fn assign(
        broker: &str,
        cfg: GroupConfig,
        partitions: &[Tp],
    ) -> Result<GroupConsumer, ConsumerError> {
        let data = RoutedClient::connect(broker)?;
        let mut coord = Client::connect(broker)?;
        coord.set_client_id(&cfg.client_id);
        let hb = Arc::new(Hb {
            state: Mutex::new(HbState {
                member_epoch: -1,
                assignment: Some(partitions.iter().cloned().collect()),
                ..HbState::default()
            }),
            wake: Condvar::new(),
        });
        Ok(Self::with(broker, cfg, data, coord, hb, None))
    }

    /// Called on every assignment change, from `poll`.
    pub fn on_rebalance(&mut self, f: impl FnMut(&Rebalance) + Send + 'static) {
        self.on_rebalance = Some(Box::new(f));
    }

    /// The partitions this consumer owns now.
    pub fn assignment(&self) -> Vec<Tp> {
        self.owned.keys().cloned().collect()
    }

    /// The member id the coordinator gave (empty before the first join).
    pub fn member(&self) -> (String, i32) {
        let st = self.hb.state.lock().expect("heartbeat state");
        (st.member_id.clone(), st.member_epoch)
    }

    pub fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.owned
            .get(&(topic.to_owned(), partition))
            .map(|s| s.position)
    }

    fn notify(&mut self, r: Rebalance) {
        if let Some(f) = self.on_rebalance.as_mut() {
            f(&r);
        }
    }

    /// Follows the coordinator: drops what was taken, adds what was given.
    fn reconcile(&mut self) -> Result<(), ConsumerError> {
        let (fenced, target, fatal) = {
            let mut st = self.hb.state.lock().expect("heartbeat state");
            st.polled = true;
            if st.fenced {
                // The heartbeat thread waits for this poll to rejoin.
                self.hb.wake.notify_all();
            }
            (
                std::mem::take(&mut st.fenced),
                st.assignment.clone(),
                st.fatal.clone(),
            )
        };
        if let Some(f) = fatal {
            return Err(ConsumerError::Heartbeat(f));
        }
        if fenced && !self.owned.is_empty() {
            let lost: Vec<Tp> = self.owned.keys().cloned().collect();
            self.owned.clear();
            self.buffered.clear();
            self.report_owned();
            self.notify(Rebalance::Lost(lost));
        }
        let Some(target) = target else {
            return Ok(());
        };
        let revoked: Vec<Tp> = self
            .owned
            .keys()
            .filter(|tp| !target.contains(*tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            if self.cfg.auto_commit.is_some() {
                // Best effort: a failed commit (already fenced) means the
                // next owner re-reads from the last commit.
                let _ = self.commit_partitions(&revoked);
            }
            self.notify(Rebalance::Revoked(revoked.clone()));
            for tp in &revoked {
                self.owned.remove(tp);
            }
            self.buffered.retain(|m| {
                !revoked
                    .iter()
                    .any(|(t, p)| t.as_str() == &*m.topic && *p == m.partition)
            });
        }
        let added: Vec<Tp> = target
            .iter()
            .filter(|tp| !self.owned.contains_key(*tp))
            .cloned()
            .collect();
        if !added.is_empty() {
            // start_offsets asks on the data connections: no fetch may be
            // pending there (its answer would come first).
            self.recv_fetches()?;
            let starts = self.start_offsets(&added)?;
            for (tp, start) in added.iter().zip(starts) {
                self.owned.insert(
                    tp.clone(),
                    PartState {
                        position: start,
                        fetch_pos: start,
                        paused: false,
                    },
                );
            }
            self.notify(Rebalance::Assigned(added.clone()));
        }
        if !revoked.is_empty() || !added.is_empty() {
            self.report_owned();
        }
        Ok(())
    }

    fn report_owned(&self) {
        let mut st = self.hb.state.lock().expect("heartbeat state");
        st.owned = self.owned.keys().cloned().collect();
        st.owned_changed = true;
        self.hb.wake.notify_all();
    }

    /// Committed offset of each partition, or the reset policy's offset.
    fn start_offsets(&mut self, tps: &[Tp]) -> Result<Vec<i64>, ConsumerError> {
        let set: BTreeSet<Tp> = tps.iter().cloned().collect();
        let committed = self
            .coord
            .fetch_offsets(&self.cfg.group, Some(to_wire(&set)))?;
        let mut out = Vec::with_capacity(tps.len());
        for (t, p) in tps {
            let c = committed
                .iter()
                .filter(|c| c.name == *t)
                .flat_map(|c| &c.partitions)
                .find(|c| c.partition == *p)
                .map_or(-1, |c| c.offset);
            out.push(if c >= 0 {
                c
            } else {
                let ts = match self.cfg.offset_reset {
                    OffsetReset::Earliest => LIST_EARLIEST,
                    OffsetReset::Latest => LIST_LATEST,
                };
                self.data.list_offset(t, *p, ts)?
            });
        }
        Ok(out)
    }

    /// Fetches from the owned, unpaused partitions; waits up to `timeout`
    /// for something (long polling at the broker, never a busy loop).
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Message>, ConsumerError> {
        if self.closed {
            return Err(ConsumerError::Closed);
        }
        let deadline = Instant::now() + timeout;
        let mut lost: Option<Instant> = None;
        loop {
            match self.poll_step(deadline) {
                Ok(Some(msgs)) => return Ok(msgs),
                Ok(None) => lost = None,
                Err(e) if e.is_connection() => {
                    let since = *lost.get_or_insert_with(Instant::now);
                    self.reconnect(since, e)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// New connections to the broker, retried until `reconnect_timeout`
    /// after `since`. Answers to async commits in flight are lost with the
    /// old connection (their partitions' next commit supersedes them).
    fn reconnect(&mut self, since: Instant, cause: ConsumerError) -> Result<(), ConsumerError> {
        loop {
            if since.elapsed() > self.cfg.reconnect_timeout {
                return Err(cause);
            }
            match (
                RoutedClient::connect(&self.broker),
                Client::connect(&self.broker),
            ) {
                (Ok(data), Ok(mut coord)) => {
                    coord.set_client_id(&self.cfg.client_id);
                    self.data = data;
                    self.coord = coord;
                    self.known_topics.clear();
                    self.pending_commits.clear();
                    self.inflight.clear();
                    // A group member may have been forgotten by a restarted
                    // broker; a fixed assignment (`assign`) has no membership.
                    if self.hb_thread.is_some() {
                        self.hold_until_beat =
                            Some(self.hb.state.lock().expect("heartbeat state").beats);
                    }
                    return Ok(());
                }
                _ => std::thread::sleep(RECONNECT_BACKOFF),
            }
        }
    }

    /// One round of `poll`: Some(messages) when it should return.
    fn poll_step(&mut self, deadline: Instant) -> Result<Option<Vec<Message>>, ConsumerError> {
        self.drain_async_commits()?;
        {
            self.reconcile()?;
            if let Some(every) = self.cfg.auto_commit {
                if self.last_commit.elapsed() >= every {
                    self.commit_async()?;
                }
            }
            if !self.buffered.is_empty() {
                // Delivered now: only now do positions (what commits
                // commit) move past these messages. A revocation between
                // fetch and delivery drops the buffer and commits what was
                // delivered, so the next owner reads the rest.
                // hot path: no work per message; the buffer holds, per
                // partition, exactly what lies between the two positions.
                for st in self.owned.values_mut() {
                    st.position = st.fetch_pos;
                }
                return Ok(Some(std::mem::take(&mut self.buffered)));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Some(Vec::new()));
            }
            // Short broker-side waits so an assignment change is seen soon.
            let wait = (deadline - now).min(Duration::from_millis(200));
            let active: Vec<(Tp, i64)> = self
                .owned
                .iter()
                .filter(|(_, s)| !s.paused)
                .map(|(tp, s)| (tp.clone(), s.fetch_pos))
                .collect();
            if let Some(b) = self.hold_until_beat {
                if self.hb.state.lock().expect("heartbeat state").beats <= b {
                    std::thread::sleep(wait.min(Duration::from_millis(20)));
                    return Ok(None);
                }
                self.hold_until_beat = None;
            }
            if self.inflight.is_empty() {
                if active.is_empty() {
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                    return Ok(None);
                }
                self.send_fetches(&active, wait.as_millis() as u32)?;
            }
            self.recv_fetches()?;
            if !self.buffered.is_empty() {
                // Fetch-ahead: the next round is requested now, from where
                // this one ended, and answered while the caller works.
                let next: Vec<(Tp, i64)> = self
                    .owned
                    .iter()
                    .filter(|(_, s)| !s.paused)
                    .map(|(tp, s)| (tp.clone(), s.fetch_pos))
                    .collect();
                if !next.is_empty() {
                    self.send_fetches(&next, wait.as_millis() as u32)?;
                }
            }
            Ok(None)
        }
    }

    /// Commits, reconnecting (until `reconnect_timeout`) if the broker went
    /// away. Retrying is safe: a commit sets offsets, it does not add.
    fn send_commit(&mut self, req: OffsetCommitRequest) -> Result<(), ConsumerError> {
        let start = Instant::now();
        loop {
            match self.coord.commit_offsets(req.clone()) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let e = ConsumerError::from(e);
                    if !e.is_connection() {
                        return Err(e);
                    }
                    self.reconnect(start, e)?;
                }
            }
        }
    }

    /// Sends one fetch per owner shard for `active` (partition, offset).
    fn send_fetches(&mut self, active: &[(Tp, i64)], wait_ms: u32) -> Result<(), ConsumerError> {
        for ((t, _), _) in active {
            if !self.known_topics.contains(t) {
                self.data.topic(t)?;
                self.known_topics.insert(t.clone());
            }
        }
        // One request per owner shard.
        let mut by_owner: BTreeMap<Option<u16>, BTreeMap<&str, Vec<FetchPartition>>> =
            BTreeMap::new();
        for ((t, p), pos) in active {
            by_owner
                .entry(self.data.owner(t, *p))
                .or_default()
                .entry(t.as_str())
                .or_default()
                .push(FetchPartition {
                    partition: *p,
                    fetch_offset: *pos,
                    max_bytes: self.cfg.max_partition_fetch_bytes,
                });
        }
        let wait_ms = if by_owner.len() > 1 {
            wait_ms.min(50)
        } else {
            wait_ms
        };
        for topics in by_owner.into_values() {
            let asked: Vec<(Tp, i64)> = topics
                .iter()
                .flat_map(|(t, ps)| {
                    ps.iter()
                        .map(move |p| ((t.to_string(), p.partition), p.fetch_offset))
                })
                .collect();
            let (first_t, first_p) = topics
                .iter()
                .next()
                .map(|(t, ps)| (t.to_string(), ps[0].partition))
                .expect("non-empty");
            let req = Request::Fetch(FetchRequest {
                read_committed: self.cfg.read_committed,
                max_wait_ms: wait_ms,
                min_bytes: 1,
                max_bytes: 8 << 20,
                topics: topics
                    .into_iter()
                    .map(|(t, ps)| FetchTopic {
                        name: t.to_owned(),
                        partitions: ps,
                    })
                    .collect(),
            });
            let tk = self.data.send_for(&first_t, first_p, req)?;
            self.inflight.push((tk, asked));
        }
        Ok(())
    }

    /// Receives every fetch in flight, keeping what still applies.
    fn recv_fetches(&mut self) -> Result<(), ConsumerError> {
        let mut resets: Vec<Tp> = Vec::new();
        for (tk, asked) in std::mem::take(&mut self.inflight) {
            let ts = match self.data.recv(tk)? {
                Response::Fetch(ts) => ts,
                _ => return Err(ClientError::WrongKind("Fetch").into()),
            };
            for t in ts {
                let topic: Arc<str> = Arc::from(t.name.as_str());
                for r in t.partitions {
                    let key = (t.name.clone(), r.partition);
                    let Some(state) = self.owned.get_mut(&key) else {
                        continue;
                    };
                    let wanted = asked.iter().find(|(tp, _)| *tp == key).map(|(_, o)| *o);
                    if state.paused || wanted != Some(state.fetch_pos) {
                        // Revoked and given back, sought or paused since
                        // this was asked: not what the consumer wants now.
                        continue;
                    }
                    if let Some(e) = r.error {
                        if e.code == ErrorCode::OffsetOutOfRange {
                            // Retention passed our position: reset, once
                            // no other answer is pending on the connection.
                            resets.push(key);
                            continue;
                        }
                        return Err(ClientError::Broker(e).into());
                    }
                    let mut pos = state.fetch_pos;
                    let mut filter = TxnFilter::new(r.aborted);
                    for b in split_batches(&r.records.to_bytes()).map_err(|e| {
                        ClientError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                    })? {
                        let h = BatchHeader::parse(&b).map_err(|e| {
                            ClientError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                        })?;
                        if !filter.keep(&h) {
                            // A marker, or an aborted transaction's batch.
                            pos = pos.max(h.last_offset() + 1);
                            continue;
                        }
                        // Batches from Kafka clients may be compressed.
                        let records = decompress(b).and_then(Records::new).map_err(|e| {
                            ClientError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                        })?;
                        let last = records.header().last_offset();
                        // One allocation per batch, not a doubling per message.
                        self.buffered
                            .reserve(records.header().record_count.max(0) as usize);
                        for rec in records {
                            let rec = rec.map_err(|e| {
                                ClientError::Io(std::io::Error::new(
                                    std::io::ErrorKind::InvalidData,
                                    e,
                                ))
                            })?;
                            if rec.offset < pos {
                                continue;
                            }
                            pos = rec.offset + 1;
                            self.buffered.push(Message {
                                topic: topic.clone(),
                                partition: r.partition,
                                offset: rec.offset,
                                timestamp_ms: rec.timestamp_ms,
                                key: rec.key,
                                value: rec.value,
                                headers: rec.headers,
                            });
                        }
                        pos = pos.max(last + 1);
                    }
                    state.fetch_pos = pos;
                }
            }
        }
        let ts = match self.cfg.offset_reset {
            OffsetReset::Earliest => LIST_EARLIEST,
            OffsetReset::Latest => LIST_LATEST,
        };
        for (t, p) in resets {
            let o = self.data.list_offset(&t, p, ts)?;
            if let Some(state) = self.owned.get_mut(&(t, p)) {
                state.fetch_pos = o;
                state.position = o;
            }
        }
        Ok(())
    }

    fn commit_request(&self, offsets: &[(Tp, i64)]) -> OffsetCommitRequest {
        let (member_id, member_epoch) = self.member();
        let mut by: BTreeMap<&str, Vec<OffsetCommitPartition>> = BTreeMap::new();
        for ((t, p), o) in offsets {
            by.entry(t).or_default().push(OffsetCommitPartition {
                partition: *p,
                offset: *o,
                metadata: String::new(),
                leader_epoch: -1,
            });
        }
        OffsetCommitRequest {
            group: self.cfg.group.clone(),
            member_id,
            member_epoch,
            topics: by
                .into_iter()
                .map(|(t, ps)| OffsetCommitTopic {
                    name: t.to_owned(),
                    partitions: ps,
                })
                .collect(),
        }
    }

    fn positions(&self, tps: &[Tp]) -> Vec<(Tp, i64)> {
        tps.iter()
            .filter_map(|tp| self.owned.get(tp).map(|s| (tp.clone(), s.position)))
            .collect()
    }

    fn commit_partitions(&mut self, tps: &[Tp]) -> Result<(), ConsumerError> {
        let offsets = self.positions(tps);
        if offsets.is_empty() {
            return Ok(());
        }
        self.drain_async_commits()?;
        let req = self.commit_request(&offsets);
        self.send_commit(req)
    }

    /// Commits the position of every owned partition (what `poll` returned
    /// so far) and waits until the broker made it durable.
    pub fn commit_sync(&mut self) -> Result<(), ConsumerError> {
        let all: Vec<Tp> = self.owned.keys().cloned().collect();
        self.last_commit = Instant::now();
        self.commit_partitions(&all)
    }

    /// Commits explicit offsets (the next offset to read, per partition),
    /// e.g. only what the application finished with.
    pub fn commit_offsets(&mut self, offsets: &[(Tp, i64)]) -> Result<(), ConsumerError> {
        if let Some(((t, p), _)) = offsets.iter().find(|(tp, _)| !self.owned.contains_key(tp)) {
            return Err(ConsumerError::NotOwned(t.clone(), *p));
        }
        self.drain_async_commits()?;
        let req = self.commit_request(offsets);
        self.send_commit(req)
    }

    /// Sends a commit of every owned partition's position without waiting;
    /// its answer is checked at the next `poll` or commit.
    pub fn commit_async(&mut self) -> Result<(), ConsumerError> {
        self.last_commit = Instant::now();
        let all: Vec<Tp> = self.owned.keys().cloned().collect();
        let offsets = self.positions(&all);
        if offsets.is_empty() {
            return Ok(());
        }
        let req = self.commit_request(&offsets);
        let id = self.coord.send(Request::OffsetCommit(req))?;
        self.pending_commits.push(id);
        Ok(())
    }

    fn drain_async_commits(&mut self) -> Result<(), ConsumerError> {
        for id in std::mem::take(&mut self.pending_commits) {
            match self.coord.recv_commit(id) {
                Ok(()) => {}
                // A commit fenced by a rebalance is not fatal: the partition
                // moved on, and its new owner starts from the last commit.
                Err(ClientError::Broker(e))
                    if matches!(
                        e.code,
                        ErrorCode::UnknownMember
                            | ErrorCode::StaleMemberEpoch
                            | ErrorCode::NotAssigned
                    ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads `partition` from `offset` on (it must be owned).
    pub fn seek(&mut self, topic: &str, partition: u32, offset: i64) -> Result<(), ConsumerError> {
        let s = self
            .owned
            .get_mut(&(topic.to_owned(), partition))
            .ok_or_else(|| ConsumerError::NotOwned(topic.to_owned(), partition))?;
        s.position = offset;
        s.fetch_pos = offset;
        self.buffered
            .retain(|m| !(&*m.topic == topic && m.partition == partition));
        Ok(())
    }

    /// Reads `partition` from the first record at or after `timestamp_ms`.
    pub fn seek_to_time(
        &mut self,
        topic: &str,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<(), ConsumerError> {
        self.recv_fetches()?;
        let mut o = self
            .data
            .public()
            .list_offset(topic, partition, timestamp_ms)?;
        if o < 0 {
            o = self
                .data
                .public()
                .list_offset(topic, partition, LIST_LATEST)?;
        }
        self.seek(topic, partition, o)
    }

    pub fn pause(&mut self, topic: &str, partition: u32) -> Result<(), ConsumerError> {
        self.set_paused(topic, partition, true)
    }

    pub fn resume(&mut self, topic: &str, partition: u32) -> Result<(), ConsumerError> {
        self.set_paused(topic, partition, false)
    }

    fn set_paused(
        &mut self,
        topic: &str,
        partition: u32,
        paused: bool,
    ) -> Result<(), ConsumerError> {
        let s = self
            .owned
            .get_mut(&(topic.to_owned(), partition))
            .ok_or_else(|| ConsumerError::NotOwned(topic.to_owned(), partition))?;
        s.paused = paused;
        if paused {
            // What was fetched and not delivered is fetched again on resume.
            s.fetch_pos = s.position;
            self.buffered
                .retain(|m| !(&*m.topic == topic && m.partition == partition));
        }
        Ok(())
    }

    /// Commits (when auto-commit is on), leaves the group (its partitions
    /// go to the others at once) and stops the heartbeat thread.
    pub fn close(mut self) -> Result<(), ConsumerError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), ConsumerError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let committed = if self.cfg.auto_commit.is_some() {
            self.commit_sync()
        } else {
            self.drain_async_commits()
        };
        {
            let mut st = self.hb.state.lock().expect("heartbeat state");
            st.stop = true;
            self.hb.wake.notify_all();
        }
        if let Some(t) = self.hb_thread.take() {
            let _ = t.join();
        }
        committed
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
