//! A shard's front door: routes each request to the shards that own its
//! partitions over the channel mesh and joins their replies; on shard 0 it
//! is also the controller, the one writer of topic metadata.
//!
//! Owns: splitting produce / fetch / list-offsets by owner (record batches
//! cross shards as `Bytes`: reference-counted, never copied), keeping a
//! connection's order (remote parts are handed to the mesh, in order, before
//! the connection's next request is read), waking the other parts of a
//! fetch split over shards once one part has data, describe fan-out, and
//! topic create/delete: owners assigned, metadata written, every shard told
//! and answered before the admin call returns.
//!
//! Must never: touch a partition (the shard does), or block the executor
//! waiting for a peer: everything is async, and the mesh channels are
//! bounded, so a shard that falls behind slows the shards sending to it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::coordinator_host::{KafkaGroupCall, KafkaGroupReply};
use crate::errors::ToWire;
use crate::group::TopicPartition;
use crate::protocol::*;
use crate::rt;
use crate::security::acl::{AclChange, AclChanged, Acls};
use crate::security::quota::{QuotaChange, Quotas};
use crate::security::users::{UserChange, Users};
use crate::shard::{ResponseFuture, Shard};
use crate::storage::meta::{self, TopicMeta};
use crate::txn_host::{TxnAction, TxnCall, TxnPeers, TxnReply};

/// Topics one Metadata request may auto-create (see `Router::auto_create`).
const MAX_AUTO_CREATE_PER_REQUEST: usize = 64;

/// Whose answer a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The broker's: routed to the owners and joined (`Router::admit`).
    Broker,
    /// This shard's alone (Kafka's ListGroups on a shard's own port: each
    /// Kafka broker lists the groups it coordinates).
    ThisShard,
}

/// What one shard asks another.
pub enum Call {
    /// A client request narrowed to partitions the receiver owns (produce,
    /// list offsets, describe).
    Part(Request),
    /// A fetch part; `WakeFetch(wait_id)` ends its wait early.
    FetchPart {
        req: FetchRequest,
        wait_id: u64,
    },
    WakeFetch(u64),
    /// Controller -> every shard: learn this topic, open your partitions.
    Open(TopicMeta),
    /// Controller -> every shard: forget this topic, close your partitions.
    Drop(String),
    /// Any shard -> controller: create or delete topics.
    Admin(Request),
    /// A Kafka-only group call, to the group's coordinator shard.
    KafkaGroup(KafkaGroupCall),
    /// A transaction call, to the transactional id's coordinator shard.
    Txn(TxnCall),
    /// A transaction coordinator -> a partition owner: open a producer's
    /// transaction on these partitions, or write its markers.
    TxnPart {
        action: TxnAction,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TopicPartition>,
    },
    /// Any shard -> controller: change the SCRAM users.
    AlterUsers(Vec<UserChange>),
    /// Controller -> every shard: the SCRAM users now (durable already).
    SetUsers(Users),
    /// Any shard -> controller: create or delete ACLs.
    AlterAcls(AclChange),
    /// Controller -> every shard: the ACLs now (durable already).
    SetAcls(Acls),
    /// Any shard -> controller: change client quotas (validate only: true).
    AlterQuotas(Vec<QuotaChange>, bool),
    /// Controller -> every shard: the quotas now (durable already).
    SetQuotas(Quotas),
}

/// Each user's result of a users change, in request order.
pub type UsersAltered = Vec<(String, Option<WireError>)>;

pub enum Reply {
    Resp(Result<Response, WireError>),
    Done(Result<(), String>),
    KafkaGroup(KafkaGroupReply),
    Txn(TxnReply),
    TxnPart(Vec<(TopicPartition, Option<WireError>)>),
    UsersAltered(Result<UsersAltered, WireError>),
    AclsAltered(Result<AclChanged, WireError>),
    QuotasAltered(Result<Vec<Option<WireError>>, WireError>),
}

pub enum Msg {
    Call { from: u16, id: u64, call: Call },
    Reply { id: u64, reply: Reply },
}

/// Messages in flight per ordered pair of shards before senders wait.
pub const MESH_CAPACITY: usize = 1024;

/// Counters of cross-shard traffic (the proof that data is not copied:
/// forwarded batches are counted by bytes, moved as `Bytes`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forwarded {
    pub requests: u64,
    pub record_bytes: u64,
}

pub struct Router {
    shard: Rc<Shard>,
    id: u16,
    mesh: rt::mesh::Mesh<Msg>,
    next_id: Cell<u64>,
    pending: RefCell<HashMap<u64, rt::channel::Sender<Reply>>>,
    /// Fetch parts waiting here for other shards, by (origin, wait id).
    waits: RefCell<HashMap<(u16, u64), Rc<rt::Event>>>,
    forwarded: Cell<Forwarded>,
    /// This router, for calls made through `&self` (`TxnPeers`).
    me: std::rc::Weak<Router>,
}

/// A transaction call's answer, not yet received.
type TxnWait = Pin<Box<dyn Future<Output = Result<TxnReply, WireError>>>>;

/// A reply not yet received.
type PendingReply = Pin<Box<dyn Future<Output = Result<Reply, WireError>>>>;

fn unavailable(to: u16) -> WireError {
    WireError::new(
        ErrorCode::ShuttingDown,
        format!("shard {to} is not answering (stopping)"),
    )
}

impl Router {
    /// Connects this shard's end of the mesh and starts serving peers.
    pub async fn start(shard: Rc<Shard>, end: rt::mesh::MeshEnd<Msg>) -> Rc<Router> {
        let (mesh, inboxes) = end.connect().await;
        let router = Rc::new_cyclic(|me| Router {
            id: shard.id(),
            shard,
            mesh,
            next_id: Cell::new(1),
            pending: RefCell::default(),
            waits: RefCell::default(),
            forwarded: Cell::default(),
            me: me.clone(),
        });
        for inbox in inboxes {
            let r = router.clone();
            rt::spawn(async move {
                while let Some(msg) = inbox.recv().await {
                    if let Msg::Call {
                        call: Call::Part(Request::Produce(_)),
                        ..
                    } = &msg
                    {
                        // Backpressure across shards: while this shard holds
                        // its budget of unwritten bytes it stops draining
                        // produce parts; the channel fills, and the sending
                        // shard's connection reader waits in turn.
                        r.shard.memory().wait_below().await;
                    }
                    r.on_msg(inbox.from as u16, msg);
                }
            })
            .detach();
        }
        router
    }

    pub fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    pub fn forwarded(&self) -> Forwarded {
        self.forwarded.get()
    }

    fn count_forward(&self, record_bytes: u64) {
        self.shard.metrics().forwarded(record_bytes);
        let mut f = self.forwarded.get();
        f.requests += 1;
        f.record_bytes += record_bytes;
        self.forwarded.set(f);
    }

    fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Hands a call to the mesh now (in order with earlier calls to `to`);
    /// the returned future waits for the reply.
    async fn send_call(self: &Rc<Self>, to: u16, call: Call) -> PendingReply {
        let id = self.next_id();
        let (tx, rx) = rt::channel::bounded(1);
        self.pending.borrow_mut().insert(id, tx);
        let msg = Msg::Call {
            from: self.id,
            id,
            call,
        };
        tracing::trace!(shard = self.id, to, id, "mesh call");
        if self.mesh.send(to as usize, msg).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Box::pin(async move { Err(unavailable(to)) });
        }
        Box::pin(async move { rx.recv().await.ok_or_else(|| unavailable(to)) })
    }

    async fn call(self: &Rc<Self>, to: u16, call: Call) -> Result<Reply, WireError> {
        self.send_call(to, call).await.await
    }

    fn reply(self: &Rc<Self>, to: u16, id: u64, reply: Reply) {
        let this = self.clone();
        rt::spawn(async move {
            let _ = this.mesh.send(to as usize, Msg::Reply { id, reply }).await;
        })
        .detach();
    }

    /// Runs on the inbox task, in the order the peer sent: appends of
    /// produce parts happen here, synchronously, so they keep that order.
    fn on_msg(self: &Rc<Self>, from: u16, msg: Msg) {
        tracing::trace!(
            shard = self.id,
            from,
            reply = matches!(msg, Msg::Reply { .. }),
            "mesh message"
        );
        let (id, call) = match msg {
            Msg::Reply { id, reply } => {
                if let Some(tx) = self.pending.borrow_mut().remove(&id) {
                    let _ = tx.try_send(reply);
                }
                return;
            }
            Msg::Call { id, call, .. } => (id, call),
        };
        match call {
            Call::Part(request) => {
                let fut = self.shard.dispatch(RequestFrame {
                    version: PROTOCOL_VERSION,
                    correlation_id: 0,
                    client_id: None,
                    request,
                });
                let this = self.clone();
                rt::spawn(async move {
                    let r = fut.await.result;
                    this.reply(from, id, Reply::Resp(r));
                })
                .detach();
            }
            Call::FetchPart { req, wait_id } => {
                let wake = Rc::new(rt::Event::default());
                self.waits
                    .borrow_mut()
                    .insert((from, wait_id), wake.clone());
                let this = self.clone();
                rt::spawn(async move {
                    let r = this.shard.fetch_waking(req, Some(wake)).await;
                    this.waits.borrow_mut().remove(&(from, wait_id));
                    this.reply(from, id, Reply::Resp(Ok(Response::Fetch(r))));
                })
                .detach();
            }
            Call::WakeFetch(wait_id) => {
                if let Some(w) = self.waits.borrow().get(&(from, wait_id)) {
                    w.notify_all();
                }
            }
            Call::Open(m) => {
                let this = self.clone();
                rt::spawn(async move {
                    let r = this.shard.open_topic(m).await;
                    this.reply(from, id, Reply::Done(r));
                })
                .detach();
            }
            Call::Drop(name) => {
                let this = self.clone();
                rt::spawn(async move {
                    let r = this.shard.drop_topic(&name).await;
                    this.reply(from, id, Reply::Done(r));
                })
                .detach();
            }
            Call::Admin(req) => {
                let this = self.clone();
                rt::spawn(async move {
                    let r = this.admin(req).await;
                    this.reply(from, id, Reply::Resp(r));
                })
                .detach();
            }
            Call::KafkaGroup(call) => {
                let fut = self.shard.kafka_group_call(call);
                let this = self.clone();
                rt::spawn(async move {
                    let r = fut.await;
                    this.reply(from, id, Reply::KafkaGroup(r));
                })
                .detach();
            }
            Call::Txn(call) => {
                let fut = self.shard.txns().call(call);
                let this = self.clone();
                rt::spawn(async move {
                    let r = fut.await;
                    this.reply(from, id, Reply::Txn(r));
                })
                .detach();
            }
            Call::TxnPart {
                action,
                producer_id,
                epoch,
                partitions,
            } => {
                let this = self.clone();
                rt::spawn(async move {
                    let r = this
                        .shard
                        .txn_apply(action, producer_id, epoch, partitions)
                        .await;
                    this.reply(from, id, Reply::TxnPart(r));
                })
                .detach();
            }
            Call::AlterUsers(changes) => {
                let this = self.clone();
                rt::spawn(async move {
                    let r = this.alter_users(changes).await;
                    this.reply(from, id, Reply::UsersAltered(r));
                })
                .detach();
            }
            Call::SetUsers(users) => {
                self.shard.set_users(users);
                self.reply(from, id, Reply::Done(Ok(())));
            }
            Call::AlterAcls(change) => {
                let this = self.clone();
                rt::spawn(async move {
                    let r = this.alter_acls(change).await;
                    this.reply(from, id, Reply::AclsAltered(r));
                })
                .detach();
            }
            Call::SetAcls(acls) => {
                self.shard.set_acls(acls);
                self.reply(from, id, Reply::Done(Ok(())));
            }
            Call::AlterQuotas(changes, validate_only) => {
                let this = self.clone();
                rt::spawn(async move {
                    let r = this.alter_quotas(changes, validate_only).await;
                    this.reply(from, id, Reply::QuotasAltered(r));
                })
                .detach();
            }
            Call::SetQuotas(quotas) => {
                self.shard.set_quotas(quotas);
                self.reply(from, id, Reply::Done(Ok(())));
            }
        }
    }

    /// Changes the SCRAM users (Kafka's AlterUserScramCredentials,
    /// `shardlog user`): on the controller, the new table is written to
    /// `DATA/users.scram` (atomically, durable) before any shard uses it,
    /// then every shard gets a copy. Each user's result, in request order.
    pub async fn alter_users(
        self: &Rc<Self>,
        changes: Vec<UserChange>,
    ) -> Result<UsersAltered, WireError> {
        if self.id != 0 {
            return match self.call(0, Call::AlterUsers(changes)).await? {
                Reply::UsersAltered(r) => r,
                _ => Err(WireError::new(ErrorCode::Unknown, "unexpected reply")),
            };
        }
        // Read, change, write and take the new table with no await in
        // between: two changes at once cannot lose one another.
        let mut users = (*self.shard.users()).clone();
        let (results, changed) = users.apply(&changes);
        if changed {
            crate::storage::store_users(self.shard.data_dir(), &users)
                .map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))?;
            self.shard.set_users(users.clone());
            self.copy_to_shards(|| Call::SetUsers(users.clone())).await;
            tracing::info!(users = users.len(), "SCRAM users changed");
        }
        Ok(results
            .into_iter()
            .map(|(user, r)| (user, r.err().map(|e| e.to_wire())))
            .collect())
    }

    /// The controller's copy of metadata it just made durable, to every
    /// other shard; returns when each has it.
    async fn copy_to_shards(self: &Rc<Self>, call: impl Fn() -> Call) {
        let mut waits = Vec::new();
        for o in 1..self.shard.shard_count() {
            waits.push(self.send_call(o, call()).await);
        }
        for w in waits {
            // A shard that is stopping misses it; it reads the file when
            // it starts again.
            let _ = w.await;
        }
    }

    /// Creates or deletes ACLs (Kafka's CreateAcls and DeleteAcls,
    /// `shardlog acl`): on the controller, the new set is written to
    /// `DATA/acls` (atomically, durable) before any shard checks against
    /// it, then every shard gets a copy. Each binding's or filter's result.
    pub async fn alter_acls(self: &Rc<Self>, change: AclChange) -> Result<AclChanged, WireError> {
        if self.id != 0 {
            return match self.call(0, Call::AlterAcls(change)).await? {
                Reply::AclsAltered(r) => r,
                _ => Err(WireError::new(ErrorCode::Unknown, "unexpected reply")),
            };
        }
        // Read, change, write and take the new set with no await in
        // between: two changes at once cannot lose one another.
        let mut acls = (*self.shard.acls()).clone();
        let (results, changed) = acls.apply(&change);
        if changed {
            crate::storage::store_acls(self.shard.data_dir(), &acls)
                .map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))?;
            self.shard.set_acls(acls.clone());
            self.copy_to_shards(|| Call::SetAcls(acls.clone())).await;
            tracing::info!(acls = acls.len(), "ACLs changed");
        }
        Ok(results)
    }

    /// Changes client quotas (Kafka's AlterClientQuotas): on the
    /// controller, written to `DATA/quotas` before any shard enforces them,
    /// then every shard gets a copy. Each entry's result, in order.
    pub async fn alter_quotas(
        self: &Rc<Self>,
        changes: Vec<QuotaChange>,
        validate_only: bool,
    ) -> Result<Vec<Option<WireError>>, WireError> {
        if self.id != 0 {
            return match self
                .call(0, Call::AlterQuotas(changes, validate_only))
                .await?
            {
                Reply::QuotasAltered(r) => r,
                _ => Err(WireError::new(ErrorCode::Unknown, "unexpected reply")),
            };
        }
        let mut quotas = (*self.shard.quotas()).clone();
        let (results, changed) = quotas.apply(&changes, validate_only);
        if changed {
            crate::storage::store_quotas(self.shard.data_dir(), &quotas)
                .map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))?;
            self.shard.set_quotas(quotas.clone());
            self.copy_to_shards(|| Call::SetQuotas(quotas.clone()))
                .await;
            tracing::info!("client quotas changed");
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.err()
                    .map(|e| WireError::new(ErrorCode::InvalidRequest, e.to_string()))
            })
            .collect())
    }

    /// The native AlterAcls: the creations, then the deletions, each
    /// through the controller.
    async fn alter_acls_both(
        self: &Rc<Self>,
        create: Vec<crate::security::acl::AclBinding>,
        delete: Vec<crate::security::acl::AclFilter>,
    ) -> Result<Response, WireError> {
        let invalid = |e: crate::security::acl::AclError| {
            Some(WireError::new(ErrorCode::InvalidRequest, e.to_string()))
        };
        let created = match create.is_empty() {
            true => vec![],
            false => match self.alter_acls(AclChange::Create(create)).await? {
                AclChanged::Created(rs) => {
                    rs.into_iter().map(|r| r.err().and_then(invalid)).collect()
                }
                AclChanged::Deleted(_) => vec![],
            },
        };
        let deleted = match delete.is_empty() {
            true => vec![],
            false => match self.alter_acls(AclChange::Delete(delete)).await? {
                AclChanged::Deleted(gone) => gone,
                AclChanged::Created(_) => vec![],
            },
        };
        Ok(Response::AlterAcls { created, deleted })
    }

    /// Starts one client request, as both front doors do: a produce first
    /// waits while the shard holds its budget of unwritten bytes
    /// (backpressure: the connection is not read meanwhile, so TCP slows
    /// the producer); the request is counted; then `admit` (or, for
    /// `Scope::ThisShard`, this shard alone answers). The returned future
    /// is the answer, counted when it completes.
    pub async fn begin(
        self: &Rc<Self>,
        frame: RequestFrame,
        scope: Scope,
    ) -> impl Future<Output = ResponseFrame> + 'static {
        if matches!(frame.request, Request::Produce(_)) {
            self.shard.memory().wait_below().await;
        }
        let m = self.shard.metrics().clone();
        let api = crate::metrics::Api::of(&frame.request);
        let started = m.request_started(api);
        let answer = match scope {
            Scope::Broker => self.admit(frame).await,
            Scope::ThisShard => self.shard.dispatch(frame),
        };
        async move {
            let r = answer.await;
            m.request_done(api, started, &r);
            r
        }
    }

    /// Takes a client request: work that must keep the connection's order
    /// (local appends, handing remote parts to the mesh) is done when this
    /// returns; the returned future waits for the answer.
    pub async fn admit(self: &Rc<Self>, frame: RequestFrame) -> ResponseFuture {
        let cid = frame.correlation_id;
        if frame.version == 0 || frame.version > PROTOCOL_VERSION {
            return self.shard.dispatch(frame);
        }
        let done = move |r: Result<Response, WireError>| ResponseFrame {
            correlation_id: cid,
            result: r,
        };
        match frame.request {
            req @ (Request::CreateTopics(_)
            | Request::DeleteTopics(_)
            | Request::CreatePartitions(_)
            | Request::AlterConfigs { .. }) => {
                let this = self.clone();
                Box::pin(async move {
                    let r = if this.id == 0 {
                        this.admin(req).await
                    } else {
                        match this.call(0, Call::Admin(req)).await {
                            Ok(Reply::Resp(r)) => r,
                            Ok(_) => Err(WireError::new(ErrorCode::Unknown, "bad reply")),
                            Err(e) => Err(e),
                        }
                    };
                    done(r)
                })
            }
            Request::Metadata {
                topics: Some(names),
                auto_create: true,
                ..
            } if self.shard.auto_create_partitions().is_some() => {
                let this = self.clone();
                let (version, client_id) = (frame.version, frame.client_id);
                Box::pin(async move {
                    this.auto_create(&names).await;
                    let frame = RequestFrame {
                        version,
                        correlation_id: cid,
                        client_id,
                        request: Request::Metadata {
                            topics: Some(names),
                            auto_create: false,
                            include_internal: false,
                        },
                    };
                    this.shard.dispatch(frame).await
                })
            }
            Request::Produce(p) => self.route_produce(cid, p).await,
            Request::ListOffsets(l) => self.route_list_offsets(cid, l).await,
            Request::DeleteRecords(d) => self.route_delete_records(cid, d).await,
            Request::DescribeProducers(d) => self.route_describe_producers(cid, d).await,
            Request::ListTransactions {
                states,
                producer_ids,
            } => {
                let mut filter = Vec::new();
                for name in &states {
                    match crate::txn::TxnState::from_name(name) {
                        Some(s) => filter.push(s),
                        None => {
                            let e = WireError::new(
                                ErrorCode::InvalidRequest,
                                format!("no transaction state is called {name:?}"),
                            );
                            return Box::pin(async move { done(Err(e)) });
                        }
                    }
                }
                let w = self
                    .txn_call(TxnCall::List {
                        states: filter,
                        producer_ids,
                        min_duration_ms: -1,
                    })
                    .await;
                Box::pin(async move {
                    done(match w.await {
                        Ok(TxnReply::Listed(l)) => Ok(Response::ListTransactions(
                            l.into_iter()
                                .map(|t| TransactionListing {
                                    transactional_id: t.transactional_id,
                                    producer_id: t.producer_id,
                                    state: t.state.name().to_owned(),
                                })
                                .collect(),
                        )),
                        Ok(_) => Err(WireError::new(ErrorCode::Unknown, "unexpected reply")),
                        Err(e) => Err(e),
                    })
                })
            }
            Request::DescribeUsers(names) => {
                let users = self.shard.users();
                let out = users
                    .describe(names.as_deref())
                    .into_iter()
                    .map(|(name, r)| match r {
                        Ok(creds) => UserDescription {
                            name,
                            error: None,
                            credentials: creds
                                .iter()
                                .map(|c| (c.mechanism.kafka_type(), c.iterations as i32))
                                .collect(),
                        },
                        Err(e) => UserDescription {
                            name,
                            error: Some(e.to_wire()),
                            credentials: vec![],
                        },
                    })
                    .collect();
                let r = done(Ok(Response::DescribeUsers(out)));
                Box::pin(async move { r })
            }
            Request::AlterUsers(changes) => {
                // Awaited here, as an admin change: the connection's next
                // request sees it.
                let r = self.alter_users(changes).await.map(|rows| {
                    Response::AlterUsers(
                        rows.into_iter()
                            .map(|(name, error)| UserResult { name, error })
                            .collect(),
                    )
                });
                let r = done(r);
                Box::pin(async move { r })
            }
            Request::DescribeAcls(filter) => {
                let r = done(Ok(Response::DescribeAcls(
                    self.shard.acls().describe(&filter),
                )));
                Box::pin(async move { r })
            }
            Request::DescribeQuotas => {
                let quotas = self.shard.quotas();
                let all = quotas
                    .entries()
                    .map(|(e, keys)| {
                        let vs = keys.iter().map(|(k, v)| (k.clone(), *v)).collect();
                        (e.clone(), vs)
                    })
                    .collect();
                let r = done(Ok(Response::DescribeQuotas(all)));
                Box::pin(async move { r })
            }
            Request::AlterQuotas {
                changes,
                validate_only,
            } => {
                // Awaited here, as an admin change.
                let r = self
                    .alter_quotas(changes, validate_only)
                    .await
                    .map(Response::AlterQuotas);
                let r = done(r);
                Box::pin(async move { r })
            }
            Request::AlterAcls { create, delete } => {
                // Awaited here, as an admin change: the connection's next
                // request sees it.
                let r = self.alter_acls_both(create, delete).await;
                let r = done(r);
                Box::pin(async move { r })
            }
            Request::DescribeTransactions(ids) => {
                // Each id from its own coordinator, answers in request order.
                let mut waits = Vec::with_capacity(ids.len());
                for id in ids {
                    let w = self.txn_call(TxnCall::Describe(id.clone())).await;
                    waits.push((id, w));
                }
                Box::pin(async move {
                    let mut out = Vec::with_capacity(waits.len());
                    for (id, w) in waits {
                        out.push(transaction_description(id, w.await));
                    }
                    done(Ok(Response::DescribeTransactions(out)))
                })
            }
            Request::Fetch(f) => self.route_fetch(cid, f).await,
            Request::DescribeTopics { topics } if self.shard.shard_count() > 1 => {
                let this = self.clone();
                Box::pin(async move { done(Ok(this.describe_all(topics).await)) })
            }
            Request::GroupHeartbeat(mut h) => {
                if h.client_id.is_none() {
                    h.client_id = frame.client_id;
                }
                let owner = self.coordinator_of(&h.group);
                let w = self
                    .send_part(cid, owner, Request::GroupHeartbeat(h), 0)
                    .await;
                Box::pin(async move { done(reply_response(w.await)) })
            }
            req @ (Request::LeaveGroup(_) | Request::OffsetCommit(_) | Request::OffsetFetch(_)) => {
                let owner = self.coordinator_of(req.group().expect("a group request"));
                let w = self.send_part(cid, owner, req, 0).await;
                Box::pin(async move { done(reply_response(w.await)) })
            }
            Request::ListGroups if self.shard.shard_count() > 1 => {
                let this = self.clone();
                Box::pin(async move { done(Ok(this.list_groups_all().await)) })
            }
            // Each group from its own coordinator, answers in request order.
            Request::DescribeGroups(groups) => {
                let waits = self
                    .per_group(cid, groups, |g| Request::DescribeGroups(vec![g]))
                    .await;
                Box::pin(async move {
                    done(
                        merge_groups(waits, |r| match r {
                            Response::DescribeGroups(gs) => Some(gs),
                            _ => None,
                        })
                        .await
                        .map(Response::DescribeGroups),
                    )
                })
            }
            request => self.shard.dispatch(RequestFrame { request, ..frame }),
        }
    }

    /// A Kafka-only group call, to the group's coordinator shard: started
    /// here (handed to the mesh in order with this connection's earlier
    /// calls), answered by the returned future.
    pub async fn kafka_group(
        self: &Rc<Self>,
        call: KafkaGroupCall,
    ) -> Pin<Box<dyn Future<Output = Result<KafkaGroupReply, WireError>>>> {
        let owner = self.coordinator_of(call.group());
        if owner == self.id {
            let fut = self.shard.kafka_group_call(call);
            return Box::pin(async move { Ok(fut.await) });
        }
        let w = self.send_call(owner, Call::KafkaGroup(call)).await;
        Box::pin(async move {
            match w.await? {
                Reply::KafkaGroup(r) => Ok(r),
                _ => Err(WireError::new(ErrorCode::Unknown, "unexpected reply")),
            }
        })
    }

    /// The shard coordinating transactional id `id`: the owner of its
    /// partition of the transaction log.
    pub fn txn_coordinator_of(&self, id: &str) -> u16 {
        let p = crate::txn::log::partition_for_txn(id, crate::storage::TXN_PARTITIONS);
        self.owner_of(crate::storage::TXN_TOPIC, p)
    }

    /// A transaction call, to its coordinator shard (List: to every shard,
    /// merged by id): started here in order with the connection's earlier
    /// calls, answered by the returned future.
    pub async fn txn_call(self: &Rc<Self>, call: TxnCall) -> TxnWait {
        let owners: Vec<u16> = match call.id() {
            Some(id) => vec![self.txn_coordinator_of(id)],
            None => (0..self.shard.shard_count()).collect(),
        };
        let mut waits: Vec<TxnWait> = Vec::new();
        for owner in owners {
            if owner == self.id {
                let fut = self.shard.txns().call(call.clone());
                waits.push(Box::pin(async move { Ok(fut.await) }));
            } else {
                let w = self.send_call(owner, Call::Txn(call.clone())).await;
                waits.push(Box::pin(async move {
                    match w.await? {
                        Reply::Txn(r) => Ok(r),
                        _ => Err(WireError::new(ErrorCode::Unknown, "unexpected reply")),
                    }
                }));
            }
        }
        Box::pin(async move {
            let mut listed = Vec::new();
            let mut last = None;
            for w in waits {
                match w.await? {
                    TxnReply::Listed(l) => listed.extend(l),
                    other => last = Some(other),
                }
            }
            Ok(match last {
                Some(r) => r,
                None => {
                    listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
                    TxnReply::Listed(listed)
                }
            })
        })
    }

    fn local_frame(cid: u32, request: Request) -> RequestFrame {
        RequestFrame {
            version: PROTOCOL_VERSION,
            correlation_id: cid,
            client_id: None,
            request,
        }
    }

    /// Hands one owner's part of a request on: to the local shard (appends
    /// happen now) or over the mesh (in order with earlier parts to it).
    async fn send_part(
        self: &Rc<Self>,
        cid: u32,
        owner: u16,
        req: Request,
        record_bytes: u64,
    ) -> PendingReply {
        if owner == self.id {
            let fut = self.shard.dispatch(Self::local_frame(cid, req));
            return Box::pin(async move { Ok(Reply::Resp(fut.await.result)) });
        }
        self.count_forward(record_bytes);
        self.send_call(owner, Call::Part(req)).await
    }

    /// Whether every partition named is owned here (or unknown: answered here).
    fn all_here(&self, topic: &str, mut partitions: impl Iterator<Item = u32>) -> bool {
        partitions.all(|p| self.owner_of(topic, p) == self.id)
    }

    /// Owner of each partition; unknown topics and partitions stay here (the
    /// local shard answers them with the right error).
    fn owner_of(&self, topic: &str, p: u32) -> u16 {
        self.shard.owner(topic, p).unwrap_or(self.id)
    }

    async fn route_produce(self: &Rc<Self>, cid: u32, p: ProduceRequest) -> ResponseFuture {
        // hot path: a shard-aware client only names this shard's partitions;
        // hand the request over as it is, nothing split or rebuilt.
        if p.topics
            .iter()
            .all(|t| self.all_here(&t.name, t.partitions.iter().map(|pp| pp.partition)))
        {
            return self
                .shard
                .dispatch(Self::local_frame(cid, Request::Produce(p)));
        }
        let acks = p.acks;
        let timeout_ms = p.timeout_ms;
        let topics: Vec<(String, Vec<ProducePartition>)> = p
            .topics
            .into_iter()
            .map(|t| (t.name, t.partitions))
            .collect();
        let (parts, routes) = split(topics, |t, pp| self.owner_of(t, pp.partition));
        let mut waits: Vec<(u16, PendingReply)> = Vec::new();
        for (owner, topics) in parts {
            let req = Request::Produce(ProduceRequest {
                acks,
                timeout_ms,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| ProduceTopic { name, partitions })
                    .collect(),
            });
            let bytes = match &req {
                Request::Produce(r) => r
                    .topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .map(|p| p.records.len() as u64)
                    .sum(),
                _ => 0,
            };
            waits.push((owner, self.send_part(cid, owner, req, bytes).await));
        }
        Box::pin(async move {
            let results = gather(waits, |r| match r {
                Response::Produce(ts) => {
                    Some(ts.into_iter().map(|t| (t.name, t.partitions)).collect())
                }
                _ => None,
            })
            .await;
            let joined = join(&routes, results, |partition, e| ProducePartitionResult {
                partition,
                error: Some(e.clone()),
                base_offset: -1,
                high_watermark: -1,
                invalid_records: vec![],
            });
            ResponseFrame {
                correlation_id: cid,
                result: Ok(Response::Produce(
                    joined
                        .into_iter()
                        .map(|(name, partitions)| ProduceTopicResult { name, partitions })
                        .collect(),
                )),
            }
        })
    }

    /// A request whose partitions each go to their owner shard and whose
    /// answers join back in the request's order (ListOffsets,
    /// DeleteRecords, DescribeProducers): `request` rebuilds one owner's
    /// part, `take` reads its answer, `failed` stands in for a partition
    /// whose owner failed, `response` builds the joined answer.
    #[allow(clippy::too_many_arguments)]
    async fn route_by_owner<P: HasPartition + 'static, R: 'static>(
        self: &Rc<Self>,
        cid: u32,
        topics: ByTopic<P>,
        request: fn(ByTopic<P>) -> Request,
        take: fn(Response) -> Option<ByTopic<R>>,
        failed: fn(u32, &WireError) -> R,
        response: fn(ByTopic<R>) -> Response,
    ) -> ResponseFuture {
        if topics
            .iter()
            .all(|(name, ps)| self.all_here(name, ps.iter().map(HasPartition::partition_id)))
        {
            return self.shard.dispatch(Self::local_frame(cid, request(topics)));
        }
        let (parts, routes) = split(topics, |t, p| self.owner_of(t, p.partition_id()));
        let mut waits: Vec<(u16, PendingReply)> = Vec::new();
        for (owner, topics) in parts {
            waits.push((owner, self.send_part(cid, owner, request(topics), 0).await));
        }
        Box::pin(async move {
            let results = gather(waits, take).await;
            ResponseFrame {
                correlation_id: cid,
                result: Ok(response(join(&routes, results, failed))),
            }
        })
    }

    async fn route_list_offsets(
        self: &Rc<Self>,
        cid: u32,
        l: Vec<ListOffsetsTopic>,
    ) -> ResponseFuture {
        self.route_by_owner(
            cid,
            l.into_iter().map(|t| (t.name, t.partitions)).collect(),
            |ts| {
                Request::ListOffsets(
                    ts.into_iter()
                        .map(|(name, partitions)| ListOffsetsTopic { name, partitions })
                        .collect(),
                )
            },
            |r| match r {
                Response::ListOffsets(ts) => {
                    Some(ts.into_iter().map(|t| (t.name, t.partitions)).collect())
                }
                _ => None,
            },
            |partition, e| ListOffsetsPartitionResult {
                partition,
                error: Some(e.clone()),
                offset: -1,
                timestamp: -1,
            },
            |ts| {
                Response::ListOffsets(
                    ts.into_iter()
                        .map(|(name, partitions)| ListOffsetsTopicResult { name, partitions })
                        .collect(),
                )
            },
        )
        .await
    }

    /// DeleteRecords: each partition's part goes to its owner, like
    /// ListOffsets.
    async fn route_delete_records(
        self: &Rc<Self>,
        cid: u32,
        d: Vec<DeleteRecordsTopic>,
    ) -> ResponseFuture {
        self.route_by_owner(
            cid,
            d.into_iter().map(|t| (t.name, t.partitions)).collect(),
            |ts| {
                Request::DeleteRecords(
                    ts.into_iter()
                        .map(|(name, partitions)| DeleteRecordsTopic { name, partitions })
                        .collect(),
                )
            },
            |r| match r {
                Response::DeleteRecords(ts) => {
                    Some(ts.into_iter().map(|t| (t.name, t.partitions)).collect())
                }
                _ => None,
            },
            |partition, e| DeleteRecordsPartitionResult {
                partition,
                error: Some(e.clone()),
                low_watermark: -1,
            },
            |ts| {
                Response::DeleteRecords(
                    ts.into_iter()
                        .map(|(name, partitions)| DeleteRecordsTopicResult { name, partitions })
                        .collect(),
                )
            },
        )
        .await
    }

    /// DescribeProducers: each partition's producers come from its owner.
    async fn route_describe_producers(
        self: &Rc<Self>,
        cid: u32,
        d: Vec<TopicPartitions>,
    ) -> ResponseFuture {
        self.route_by_owner(
            cid,
            d.into_iter().map(|t| (t.topic, t.partitions)).collect(),
            |ts| {
                Request::DescribeProducers(
                    ts.into_iter()
                        .map(|(topic, partitions)| TopicPartitions { topic, partitions })
                        .collect(),
                )
            },
            |r| match r {
                Response::DescribeProducers(ts) => {
                    Some(ts.into_iter().map(|t| (t.name, t.partitions)).collect())
                }
                _ => None,
            },
            |partition, e| DescribeProducersPartitionResult {
                partition,
                error: Some(e.clone()),
                producers: Vec::new(),
            },
            |ts| {
                Response::DescribeProducers(
                    ts.into_iter()
                        .map(|(name, partitions)| DescribeProducersTopicResult { name, partitions })
                        .collect(),
                )
            },
        )
        .await
    }

    /// A fetch over several shards: every part waits (long polling) on its
    /// own shard; the first part that has its `min_bytes` (or an error)
    /// wakes the others, which answer with what they have.
    async fn route_fetch(self: &Rc<Self>, cid: u32, f: FetchRequest) -> ResponseFuture {
        if f.topics
            .iter()
            .all(|t| self.all_here(&t.name, t.partitions.iter().map(|p| p.partition)))
        {
            return self
                .shard
                .dispatch(Self::local_frame(cid, Request::Fetch(f)));
        }
        let (max_wait_ms, min_bytes, max_bytes) = (f.max_wait_ms, f.min_bytes, f.max_bytes);
        let topics: Vec<(String, Vec<FetchPartition>)> = f
            .topics
            .into_iter()
            .map(|t| (t.name, t.partitions))
            .collect();
        let (parts, routes) = split(topics, |t, p| self.owner_of(t, p.partition));
        let read_committed = f.read_committed;
        let sub = |topics: Vec<(String, Vec<FetchPartition>)>| FetchRequest {
            read_committed,
            max_wait_ms,
            min_bytes,
            max_bytes,
            topics: topics
                .into_iter()
                .map(|(name, partitions)| FetchTopic { name, partitions })
                .collect(),
        };
        let wait_id = self.next_id();
        let local_wake = Rc::new(rt::Event::default());
        let remote: Vec<u16> = parts.keys().copied().filter(|&o| o != self.id).collect();
        let (tx, rx) = rt::channel::bounded(parts.len());
        let tx = Rc::new(tx);
        let n = parts.len();
        for (owner, topics) in parts {
            self.start_fetch_part(owner, sub(topics), wait_id, &local_wake, tx.clone())
                .await;
        }
        drop(tx);
        let this = self.clone();
        Box::pin(async move {
            let mut results = BTreeMap::new();
            let mut woken = false;
            while results.len() < n {
                let Some((owner, r)) = rx.recv().await else {
                    break;
                };
                let enough = fetch_part_is_enough(&r, min_bytes);
                if enough && !woken {
                    woken = true;
                    local_wake.notify_all();
                    this.wake_fetch_parts(&remote, owner, wait_id).await;
                }
                results.insert(
                    owner,
                    r.map(|ts| ts.into_iter().map(|t| (t.name, t.partitions)).collect()),
                );
            }
            let mut joined = join(&routes, results, |partition, e| FetchPartitionResult {
                partition,
                error: Some(e.clone()),
                high_watermark: -1,
                log_start_offset: -1,
                records: Default::default(),
                last_stable_offset: -1,
                aborted: Vec::new(),
            });
            trim_to_max_bytes(&mut joined, max_bytes);
            ResponseFrame {
                correlation_id: cid,
                result: Ok(Response::Fetch(
                    joined
                        .into_iter()
                        .map(|(name, partitions)| FetchTopicResult { name, partitions })
                        .collect(),
                )),
            }
        })
    }

    /// Starts one owner's part of a split fetch; its result arrives on `tx`.
    /// The local part waits on `local_wake`, remote parts under `wait_id`.
    async fn start_fetch_part(
        self: &Rc<Self>,
        owner: u16,
        req: FetchRequest,
        wait_id: u64,
        local_wake: &Rc<rt::Event>,
        tx: Rc<FetchPartSender>,
    ) {
        if owner == self.id {
            let shard = self.shard.clone();
            let wake = local_wake.clone();
            rt::spawn(async move {
                let r = shard.fetch_waking(req, Some(wake)).await;
                let _ = tx.send((owner, Ok(r))).await;
            })
            .detach();
            return;
        }
        self.count_forward(0);
        let w = self
            .send_call(owner, Call::FetchPart { req, wait_id })
            .await;
        rt::spawn(async move {
            let r = match w.await {
                Ok(Reply::Resp(Ok(Response::Fetch(ts)))) => Ok(ts),
                Ok(Reply::Resp(Err(e))) | Err(e) => Err(e),
                Ok(_) => Err(WireError::new(ErrorCode::Unknown, "unexpected reply")),
            };
            let _ = tx.send((owner, r)).await;
        })
        .detach();
    }

    /// Ends the wait of every remote part of fetch `wait_id` but `answered`'s.
    async fn wake_fetch_parts(&self, remote: &[u16], answered: u16, wait_id: u64) {
        for &o in remote.iter().filter(|&&o| o != answered) {
            let _ = self
                .mesh
                .send(
                    o as usize,
                    Msg::Call {
                        from: self.id,
                        id: 0,
                        call: Call::WakeFetch(wait_id),
                    },
                )
                .await;
        }
    }

    /// Describe over every shard: each fills in the partitions it owns.
    async fn describe_all(self: &Rc<Self>, topics: Option<Vec<String>>) -> Response {
        let local = self.shard.dispatch(Self::local_frame(
            0,
            Request::DescribeTopics {
                topics: topics.clone(),
            },
        ));
        let mut waits = Vec::new();
        for o in 0..self.shard.shard_count() {
            if o != self.id {
                waits.push(
                    self.send_call(
                        o,
                        Call::Part(Request::DescribeTopics {
                            topics: topics.clone(),
                        }),
                    )
                    .await,
                );
            }
        }
        let mut merged = match local.await.result {
            Ok(Response::DescribeTopics(ts)) => ts,
            _ => Vec::new(),
        };
        for w in waits {
            if let Ok(Reply::Resp(Ok(Response::DescribeTopics(ts)))) = w.await {
                for t in ts {
                    if let Some(m) = merged.iter_mut().find(|m| m.name == t.name) {
                        m.partitions.extend(t.partitions);
                    }
                }
            }
        }
        for m in &mut merged {
            m.partitions.sort_by_key(|p| p.partition);
        }
        Response::DescribeTopics(merged)
    }

    /// The shard coordinating `group`: the owner of the group's partition of
    /// the offsets topic (so the coordinator moves with that partition when
    /// the shard count changes, and its commits are local appends).
    /// One request per group, each to its group's coordinator shard.
    async fn per_group(
        self: &Rc<Self>,
        cid: u32,
        groups: Vec<String>,
        request: impl Fn(String) -> Request,
    ) -> Vec<PendingReply> {
        let mut waits = Vec::with_capacity(groups.len());
        for g in groups {
            let owner = self.coordinator_of(&g);
            waits.push(self.send_part(cid, owner, request(g), 0).await);
        }
        waits
    }

    /// The shard that coordinates `group` (owns its offsets partition).
    pub fn coordinator_of(&self, group: &str) -> u16 {
        let p =
            crate::group::offsets::partition_for_group(group, crate::storage::OFFSETS_PARTITIONS);
        self.owner_of(crate::storage::OFFSETS_TOPIC, p)
    }

    /// ListGroups over every shard's coordinator, merged by group id.
    async fn list_groups_all(self: &Rc<Self>) -> Response {
        let local = self
            .shard
            .dispatch(Self::local_frame(0, Request::ListGroups));
        let mut waits = Vec::new();
        for o in 0..self.shard.shard_count() {
            if o != self.id {
                waits.push(self.send_call(o, Call::Part(Request::ListGroups)).await);
            }
        }
        let mut all = match local.await.result {
            Ok(Response::ListGroups(gs)) => gs,
            _ => Vec::new(),
        };
        for w in waits {
            if let Ok(Reply::Resp(Ok(Response::ListGroups(gs)))) = w.await {
                all.extend(gs);
            }
        }
        all.sort_by(|a, b| a.group.cmp(&b.group));
        Response::ListGroups(all)
    }

    /// Creates, through the controller, each of `names` that does not exist
    /// and could (a valid name, not an internal topic), with the broker's
    /// `num-partitions` and default settings: Kafka's
    /// `auto.create.topics.enable`. A name another request is creating
    /// meanwhile is left to it; failures are logged and the Metadata answer
    /// then says what the client must know (unknown or invalid topic).
    async fn auto_create(self: &Rc<Self>, names: &[String]) {
        let Some(partitions) = self.shard.auto_create_partitions() else {
            return;
        };
        let missing: Vec<CreateTopic> = names
            .iter()
            .filter(|n| {
                !self.shard.topic_exists(n)
                    && !crate::storage::is_internal_topic(n)
                    && crate::storage::validate_topic_name(n).is_ok()
            })
            // One request creates a bounded number: a client naming
            // thousands of topics (by mistake or on purpose) does not hold
            // the controller for minutes; the rest stay unknown (a retriable
            // error) and the client's next Metadata creates more.
            .take(MAX_AUTO_CREATE_PER_REQUEST)
            .map(|n| CreateTopic {
                name: n.clone(),
                partitions,
                configs: vec![],
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        let req = Request::CreateTopics(missing);
        let r = if self.id == 0 {
            self.admin(req).await
        } else {
            match self.call(0, Call::Admin(req)).await {
                Ok(Reply::Resp(r)) => r,
                Ok(_) => Err(WireError::new(ErrorCode::Unknown, "bad reply")),
                Err(e) => Err(e),
            }
        };
        match r {
            Ok(Response::CreateTopics(rs)) => {
                for t in rs {
                    match t.error {
                        None => tracing::info!(topic = %t.name, partitions, "topic auto-created"),
                        Some(e) if e.code == ErrorCode::TopicAlreadyExists => {}
                        Some(e) => tracing::warn!(topic = %t.name, "auto-creating: {}", e.message),
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("auto-creating topics: {}", e.message),
        }
    }

    /// Topic administration; runs on the controller (shard 0) only.
    async fn admin(self: &Rc<Self>, req: Request) -> Result<Response, WireError> {
        debug_assert_eq!(self.id, 0, "the controller is shard 0");
        match req {
            Request::CreateTopics(topics) => {
                let mut out = Vec::with_capacity(topics.len());
                for t in topics {
                    let error = self.create_topic(&t).await.err();
                    if error.is_none() {
                        tracing::info!(topic = %t.name, partitions = t.partitions, "topic created");
                    }
                    out.push(TopicResult {
                        name: t.name,
                        error,
                    });
                }
                Ok(Response::CreateTopics(out))
            }
            Request::CreatePartitions(topics) => {
                let mut out = Vec::with_capacity(topics.len());
                for t in topics {
                    let error = self.create_partitions(&t).await.err();
                    if error.is_none() {
                        tracing::info!(topic = %t.name, partitions = t.count, "partitions added");
                    }
                    out.push(TopicResult {
                        name: t.name,
                        error,
                    });
                }
                Ok(Response::CreatePartitions(out))
            }
            Request::AlterConfigs {
                topics,
                validate_only,
            } => {
                let mut out = Vec::with_capacity(topics.len());
                for t in topics {
                    let error = self.alter_configs(&t, validate_only).await.err();
                    if error.is_none() && !validate_only {
                        tracing::info!(topic = %t.name, "topic settings changed");
                    }
                    out.push(TopicResult {
                        name: t.name,
                        error,
                    });
                }
                Ok(Response::AlterConfigs(out))
            }
            Request::DeleteTopics(names) => {
                let mut out = Vec::with_capacity(names.len());
                for name in names {
                    let error = self.delete_topic(&name).await.err();
                    if error.is_none() {
                        tracing::info!(topic = %name, "topic deleted");
                    }
                    out.push(TopicResult { name, error });
                }
                Ok(Response::DeleteTopics(out))
            }
            _ => Err(WireError::new(
                ErrorCode::InvalidRequest,
                "not an admin request",
            )),
        }
    }

    /// Tells every shard (this one included) and waits for all of them.
    async fn broadcast(self: &Rc<Self>, make: impl Fn() -> Call) -> Result<(), String> {
        let mut waits = Vec::new();
        for o in 0..self.shard.shard_count() {
            if o != self.id {
                waits.push((o, self.send_call(o, make()).await));
            }
        }
        let mut first_err = match make() {
            Call::Open(m) => self.shard.open_topic(m).await.err(),
            Call::Drop(name) => self.shard.drop_topic(&name).await.err(),
            _ => None,
        };
        for (o, w) in waits {
            let r = match w.await {
                Ok(Reply::Done(r)) => r,
                Ok(_) => Err("unexpected reply".to_owned()),
                Err(e) => Err(e.message),
            };
            if let Err(e) = r {
                first_err.get_or_insert(format!("shard {o}: {e}"));
            }
        }
        match first_err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Metadata first (owners assigned), then every shard opens its
    /// partitions; the call returns once all have.
    async fn create_topic(self: &Rc<Self>, t: &CreateTopic) -> Result<(), WireError> {
        // 0: no count given (Kafka's -1): the broker's num-partitions.
        let defaulted;
        let t = if t.partitions == 0 {
            defaulted = CreateTopic {
                partitions: self.shard.num_partitions(),
                ..t.clone()
            };
            &defaulted
        } else {
            t
        };
        let configs = self.shard.begin_create(t)?;
        let result = async {
            let owners = self.shard.assign_owners(t.partitions)?;
            let m = TopicMeta {
                name: t.name.clone(),
                owners,
                configs,
                shards: self.shard.shard_count(),
                id: meta::new_topic_id()
                    .map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))?,
                offset_holes: false,
            };
            meta::store(self.shard.data_dir(), &m)
                .map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))?;
            self.broadcast(|| Call::Open(m.clone()))
                .await
                .map_err(|e| WireError::new(ErrorCode::StorageError, e))
        }
        .await;
        self.shard.creation_done(&t.name);
        result
    }

    /// Kafka's CreatePartitions: the topic's metadata grows (new partitions
    /// to the least-loaded shards), then every shard opens its new ones;
    /// the call returns once all have. Never shrinks.
    async fn create_partitions(
        self: &Rc<Self>,
        t: &CreatePartitionsTopic,
    ) -> Result<(), WireError> {
        let Some(m) = self.shard.topic_meta(&t.name) else {
            return Err(WireError::new(
                ErrorCode::UnknownTopic,
                format!("unknown topic '{}'", t.name),
            ));
        };
        if crate::storage::is_internal_topic(&t.name) {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!("topic '{}' is internal: its partitions are fixed", t.name),
            ));
        }
        let have = m.owners.len() as u32;
        if t.count <= have || t.count > meta::MAX_PARTITIONS {
            return Err(WireError::new(
                ErrorCode::InvalidPartitions,
                format!(
                    "topic '{}' has {have} partitions: ask for more, up to {} (partitions are never removed)",
                    t.name,
                    meta::MAX_PARTITIONS
                ),
            ));
        }
        if !self.shard.lock_name(&t.name) {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "topic '{}' is being created, deleted or grown; retry",
                    t.name
                ),
            ));
        }
        let result = async {
            let mut grown = m.clone();
            grown
                .owners
                .extend(self.shard.assign_owners(t.count - have)?);
            meta::store(self.shard.data_dir(), &grown)
                .map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))?;
            self.broadcast(|| Call::Open(grown.clone()))
                .await
                .map_err(|e| WireError::new(ErrorCode::StorageError, e))
        }
        .await;
        self.shard.creation_done(&t.name);
        result
    }

    /// Kafka's IncrementalAlterConfigs and AlterConfigs: the topic's new
    /// settings are checked whole, stored, then applied by every shard (the
    /// owners change their partitions live); the call returns once all
    /// have. `validate_only`: checked, nothing changed.
    async fn alter_configs(
        self: &Rc<Self>,
        t: &AlterConfigsTopic,
        validate_only: bool,
    ) -> Result<(), WireError> {
        let changes: Vec<meta::ConfigChange> = t
            .ops
            .iter()
            .map(|o| {
                let (k, v) = (o.key.clone(), o.value.clone());
                match o.op {
                    ConfigOpKind::Set => meta::ConfigChange::Set(k, v),
                    ConfigOpKind::Delete => meta::ConfigChange::Delete(k),
                    ConfigOpKind::Append => meta::ConfigChange::Append(k, v),
                    ConfigOpKind::Subtract => meta::ConfigChange::Subtract(k, v),
                }
            })
            .collect();
        if !self.shard.lock_name(&t.name) {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "topic '{}' is being created, deleted or changed; retry",
                    t.name
                ),
            ));
        }
        let result = async {
            let m = self.shard.altered_topic(&t.name, &changes, t.replace)?;
            if validate_only {
                return Ok(());
            }
            meta::store(self.shard.data_dir(), &m)
                .map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))?;
            self.broadcast(|| Call::Open(m.clone()))
                .await
                .map_err(|e| WireError::new(ErrorCode::StorageError, e))
        }
        .await;
        self.shard.creation_done(&t.name);
        result
    }

    /// Every shard forgets the topic (and closes its partitions) first; then
    /// the files go.
    async fn delete_topic(self: &Rc<Self>, name: &str) -> Result<(), WireError> {
        if crate::storage::is_internal_topic(name) && self.shard.topic_exists(name) {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!("topic '{name}' is internal: it cannot be deleted"),
            ));
        }
        if !self.shard.topic_exists(name) {
            return Err(WireError::new(
                ErrorCode::UnknownTopic,
                format!("unknown topic '{name}'"),
            ));
        }
        if !self.shard.lock_name(name) {
            return Err(WireError::new(
                ErrorCode::InvalidRequest,
                format!("topic '{name}' is being created or deleted; retry"),
            ));
        }
        let result = async {
            let name = name.to_owned();
            self.broadcast(|| Call::Drop(name.clone()))
                .await
                .map_err(|e| WireError::new(ErrorCode::StorageError, e))?;
            meta::remove(self.shard.data_dir(), &name)
                .map_err(|e| WireError::new(ErrorCode::StorageError, e.to_string()))
        }
        .await;
        self.shard.creation_done(name);
        result
    }
}

/// The response inside a reply from a part (local or over the mesh).
/// Joins per-group answers (`per_group`) in request order; `pick` takes the
/// list out of the expected response kind.
async fn merge_groups<T>(
    waits: Vec<PendingReply>,
    pick: impl Fn(Response) -> Option<Vec<T>>,
) -> Result<Vec<T>, WireError> {
    let mut out = Vec::with_capacity(waits.len());
    for w in waits {
        match pick(reply_response(w.await)?) {
            Some(gs) => out.extend(gs),
            None => return Err(WireError::new(ErrorCode::Unknown, "bad reply")),
        }
    }
    Ok(out)
}

fn reply_response(r: Result<Reply, WireError>) -> Result<Response, WireError> {
    match r {
        Ok(Reply::Resp(r)) => r,
        Ok(_) => Err(WireError::new(ErrorCode::Unknown, "unexpected reply")),
        Err(e) => Err(e),
    }
}

/// Waits for every owner's answer and takes its (topic, partitions) list
/// out (`take`: None if the answer is of another kind).
async fn gather<R>(
    waits: Vec<(u16, PendingReply)>,
    take: impl Fn(Response) -> Option<Vec<(String, Vec<R>)>>,
) -> Answers<R> {
    let mut results = BTreeMap::new();
    for (owner, w) in waits {
        let r = match w.await {
            Ok(Reply::Resp(Ok(resp))) => {
                take(resp).ok_or_else(|| WireError::new(ErrorCode::Unknown, "unexpected reply"))
            }
            Ok(Reply::Resp(Err(e))) | Err(e) => Err(e),
            Ok(_) => Err(WireError::new(ErrorCode::Unknown, "unexpected reply")),
        };
        results.insert(owner, r);
    }
    results
}

/// Where each partition of a request went: for original (topic i, partition
/// j), the owner and the (topic, partition) position in the owner's part.
struct Routes {
    names: Vec<String>,
    slots: Vec<Vec<(u16, usize, usize, u32)>>,
}

trait HasPartition {
    fn partition_id(&self) -> u32;
}

impl HasPartition for ProducePartition {
    fn partition_id(&self) -> u32 {
        self.partition
    }
}

impl HasPartition for FetchPartition {
    fn partition_id(&self) -> u32 {
        self.partition
    }
}

impl HasPartition for ListOffsetsPartition {
    fn partition_id(&self) -> u32 {
        self.partition
    }
}

/// A bare partition id (DescribeProducers).
impl HasPartition for u32 {
    fn partition_id(&self) -> u32 {
        *self
    }
}

impl HasPartition for DeleteRecordsPartition {
    fn partition_id(&self) -> u32 {
        self.partition
    }
}

/// A request's or answer's (topic, per-partition items) list.
type ByTopic<T> = Vec<(String, Vec<T>)>;
type Parts<P> = BTreeMap<u16, Vec<(String, Vec<P>)>>;
/// Each owner's answer: (topic, partition results) in its part's order.
type Answers<R> = BTreeMap<u16, Result<Vec<(String, Vec<R>)>, WireError>>;
type Slots<R> = BTreeMap<u16, Result<Vec<Vec<Option<R>>>, WireError>>;

/// Splits a request's (topic, partitions) list by owner, keeping the order
/// of topics and partitions within each owner's part.
fn split<P: HasPartition>(
    topics: Vec<(String, Vec<P>)>,
    owner: impl Fn(&str, &P) -> u16,
) -> (Parts<P>, Routes) {
    let mut parts: Parts<P> = BTreeMap::new();
    let mut routes = Routes {
        names: Vec::with_capacity(topics.len()),
        slots: Vec::with_capacity(topics.len()),
    };
    for (name, partitions) in topics {
        let mut slots = Vec::with_capacity(partitions.len());
        // topic index within each owner's part, for this topic
        let mut topic_at: BTreeMap<u16, usize> = BTreeMap::new();
        for p in partitions {
            let o = owner(&name, &p);
            let part = parts.entry(o).or_default();
            let ti = *topic_at.entry(o).or_insert_with(|| {
                part.push((name.clone(), Vec::new()));
                part.len() - 1
            });
            let id = p.partition_id();
            part[ti].1.push(p);
            slots.push((o, ti, part[ti].1.len() - 1, id));
        }
        routes.names.push(name);
        routes.slots.push(slots);
    }
    (parts, routes)
}

/// Puts the owners' answers back in the request's order; a part that failed
/// (or a missing answer) becomes that partition's error.
fn join<R>(
    routes: &Routes,
    results: Answers<R>,
    error: impl Fn(u32, &WireError) -> R,
) -> Vec<(String, Vec<R>)> {
    let mut slots: Slots<R> = results
        .into_iter()
        .map(|(o, r)| {
            (
                o,
                r.map(|ts| {
                    ts.into_iter()
                        .map(|(_, ps)| ps.into_iter().map(Some).collect())
                        .collect()
                }),
            )
        })
        .collect();
    let missing = WireError::new(ErrorCode::Unknown, "no answer for this partition");
    let out = routes
        .names
        .iter()
        .zip(&routes.slots)
        .map(|(name, ps)| {
            let out = ps
                .iter()
                .map(|&(o, ti, pi, id)| match slots.get_mut(&o) {
                    Some(Ok(ts)) => ts
                        .get_mut(ti)
                        .and_then(|t| t.get_mut(pi))
                        .and_then(Option::take)
                        .unwrap_or_else(|| error(id, &missing)),
                    Some(Err(e)) => error(id, e),
                    None => error(id, &missing),
                })
                .collect();
            (name.clone(), out)
        })
        .collect();
    // Every answer went to a partition that asked: an owner that answers
    // more than its part is a bug that would drop results silently.
    debug_assert!(
        slots.values().all(|r| r
            .as_ref()
            .map_or(true, |ts| ts.iter().flatten().all(Option::is_none))),
        "an owner answered a partition it was not asked for"
    );
    out
}

/// Where one owner's part of a split fetch is sent back to the joiner.
type FetchPartSender = rt::channel::Sender<(u16, Result<Vec<FetchTopicResult>, WireError>)>;

/// Whether one part's answer lets the whole split fetch answer now: it
/// brought `min_bytes` on its own, or an error the client must see.
fn fetch_part_is_enough(r: &Result<Vec<FetchTopicResult>, WireError>, min_bytes: u32) -> bool {
    let Ok(ts) = r else { return true };
    let parts = || ts.iter().flat_map(|t| &t.partitions);
    let bytes: usize = parts().map(|p| p.records.len()).sum();
    bytes >= min_bytes as usize || parts().any(|p| p.error.is_some())
}

/// Each part of a split fetch had the whole response budget; keep the
/// response within it as a single shard would: the first batches in request
/// order always, the rest only while they fit (those dropped are fetched
/// again next time).
fn trim_to_max_bytes(joined: &mut [(String, Vec<FetchPartitionResult>)], max_bytes: u32) {
    let mut total = 0usize;
    for p in joined.iter_mut().flat_map(|(_, ps)| ps.iter_mut()) {
        let n = p.records.len();
        if n > 0 && total > 0 && total + n > max_bytes as usize {
            p.records = Default::default();
        } else {
            total += n;
        }
    }
}

impl TxnPeers for Router {
    fn exists(&self, tp: &TopicPartition) -> bool {
        self.shard.owner(&tp.topic, tp.partition).is_some()
    }

    fn apply(
        &self,
        action: TxnAction,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<TopicPartition>,
    ) -> Pin<Box<dyn Future<Output = Vec<(TopicPartition, Option<WireError>)>>>> {
        let mut by_owner: BTreeMap<u16, Vec<TopicPartition>> = BTreeMap::new();
        for tp in partitions {
            let owner = self.owner_of(&tp.topic, tp.partition);
            by_owner.entry(owner).or_default().push(tp);
        }
        let Some(this) = self.me.upgrade() else {
            let e = WireError::new(ErrorCode::ShuttingDown, "the broker is stopping");
            let all: Vec<_> = by_owner.into_values().flatten().collect();
            return Box::pin(async move { failed(all, e) });
        };
        Box::pin(async move {
            let mut waits = Vec::new();
            for (owner, parts) in by_owner {
                if owner == this.id {
                    let shard = this.shard.clone();
                    waits.push(Box::pin(async move {
                        shard.txn_apply(action, producer_id, epoch, parts).await
                    }) as Pin<Box<dyn Future<Output = _>>>);
                } else {
                    let w = this
                        .send_call(
                            owner,
                            Call::TxnPart {
                                action,
                                producer_id,
                                epoch,
                                partitions: parts.clone(),
                            },
                        )
                        .await;
                    waits.push(Box::pin(async move {
                        match w.await {
                            Ok(Reply::TxnPart(r)) => r,
                            Ok(_) => failed(
                                parts,
                                WireError::new(ErrorCode::Unknown, "unexpected reply"),
                            ),
                            Err(e) => failed(parts, e),
                        }
                    }));
                }
            }
            let mut out = Vec::new();
            for w in waits {
                out.extend(w.await);
            }
            out
        })
    }
}

fn failed(parts: Vec<TopicPartition>, e: WireError) -> Vec<(TopicPartition, Option<WireError>)> {
    parts.into_iter().map(|tp| (tp, Some(e.clone()))).collect()
}

/// DescribeTransactions' answer for one id from its coordinator's reply.
fn transaction_description(
    id: String,
    reply: Result<TxnReply, WireError>,
) -> TransactionDescription {
    let mut d = TransactionDescription {
        transactional_id: id,
        error: None,
        state: String::new(),
        producer_id: -1,
        producer_epoch: -1,
        timeout_ms: 0,
        start_time_ms: -1,
        topics: Vec::new(),
    };
    match reply {
        Ok(TxnReply::Described(Ok(m))) => {
            d.state = m.state.name().to_owned();
            d.producer_id = m.producer_id;
            d.producer_epoch = m.producer_epoch;
            d.timeout_ms = m.timeout_ms;
            d.start_time_ms = m.start_ms;
            // The set is ordered by topic: one entry per run.
            for tp in &m.partitions {
                match d.topics.last_mut() {
                    Some(t) if t.topic == tp.topic => t.partitions.push(tp.partition),
                    _ => d.topics.push(TopicPartitions {
                        topic: tp.topic.clone(),
                        partitions: vec![tp.partition],
                    }),
                }
            }
        }
        Ok(TxnReply::Described(Err(e))) | Err(e) => d.error = Some(e),
        Ok(_) => d.error = Some(WireError::new(ErrorCode::Unknown, "unexpected reply")),
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_keep_the_request_order() {
        let topics = vec![
            (
                "a".to_owned(),
                vec![
                    ListOffsetsPartition {
                        partition: 0,
                        timestamp: -1,
                    },
                    ListOffsetsPartition {
                        partition: 1,
                        timestamp: -1,
                    },
                    ListOffsetsPartition {
                        partition: 2,
                        timestamp: -1,
                    },
                ],
            ),
            (
                "b".to_owned(),
                vec![ListOffsetsPartition {
                    partition: 5,
                    timestamp: -2,
                }],
            ),
        ];
        // owner = partition % 2
        let (parts, routes) = split(topics, |_, p| (p.partition % 2) as u16);
        assert_eq!(parts[&0].len(), 1, "b/5 is odd: only a on shard 0");
        assert_eq!(parts[&0][0].1.len(), 2);
        assert_eq!(parts[&1].len(), 2);
        // each owner answers with offset = partition * 10
        let mut results = BTreeMap::new();
        for (o, ts) in parts {
            let r = ts
                .into_iter()
                .map(|(n, ps)| {
                    (
                        n,
                        ps.into_iter()
                            .map(|p| (p.partition, p.partition as i64 * 10))
                            .collect(),
                    )
                })
                .collect();
            results.insert(o, Ok(r));
        }
        let joined = join(&routes, results, |p, _| (p, -1));
        assert_eq!(
            joined,
            vec![
                ("a".to_owned(), vec![(0, 0), (1, 10), (2, 20)]),
                ("b".to_owned(), vec![(5, 50)]),
            ]
        );
        // a shard that failed turns into errors for its partitions only
        let (_, routes) = split(
            vec![(
                "a".to_owned(),
                vec![ListOffsetsPartition {
                    partition: 1,
                    timestamp: 0,
                }],
            )],
            |_, _| 3,
        );
        let mut results: Answers<(u32, i64)> = BTreeMap::new();
        results.insert(3, Err(WireError::new(ErrorCode::ShuttingDown, "gone")));
        assert_eq!(
            join(&routes, results, |p, _| (p, -1)),
            vec![("a".to_owned(), vec![(1, -1)])]
        );
    }
}
