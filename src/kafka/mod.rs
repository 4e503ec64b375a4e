//! The Kafka listener: a second front door to the same partitions. Kafka
//! clients (kcat, librdkafka, kafka-python, the Java client) connect here
//! unchanged; every shard is advertised as its own Kafka broker (node id =
//! shard id) so Metadata leads them to the partition's owner shard.
//!
//! Owns: the Kafka door of the shared connection loop (`KafkaDoor`:
//! framing, decoding, each request started through the shard's `Router`;
//! no answer for a produce with acks=0) and the Kafka codec (`codec`,
//! pure).
//!
//! Must never: interpret requests itself beyond translation (routing,
//! forwarding, long polling and storage are the router's and the shard's,
//! shared with the native protocol), decode or re-encode record batches, or
//! let one connection's bad input affect another: an unknown API, an
//! unsupported version or an undecodable request closes that connection.

mod acls;
mod admin;
pub mod authz;
mod cluster;
pub mod codec;
pub mod configs;
mod data;
#[cfg(test)]
mod fuzz;
pub mod groups;
mod metadata;
mod quotas;
mod sasl;
pub mod throttle;
mod txn;
pub mod wire;

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

use crate::chain::Chain;
use crate::conn::{Answer, CloseReason, Door, Step};
use crate::errors::ToWire;
use crate::group::classic::ClassicCall;
use crate::group::TopicPartition;
use crate::metrics::Api;
use crate::producer_state::ProducerIds;
use crate::protocol::{
    ErrorCode, NodeInfo, ProducePartitionResult, ProduceTopicResult, Request, RequestFrame,
    Response, WireError,
};
use crate::router::{Router, Scope};
use crate::rt;
use crate::security::sasl::{Authenticator, SaslError, SaslMechanism, Step as SaslStep};
use crate::txn_host::{TxnCall, TxnReply};
use authz::{Access, Verdict};
use throttle::Charge;
use wire::{
    AclsWork, ConfigResource, Decoded, KafkaGroupKind, QuotasWork, Refused, SaslWork, Shape,
    UsersWork, Work,
};

/// What every Kafka connection of a shard shares.
pub struct KafkaContext {
    /// The Kafka brokers Metadata advertises: one per shard, at its Kafka
    /// port (or the Kafka listen port when per-shard ports are off).
    pub nodes: Vec<NodeInfo>,
    pub max_frame_bytes: usize,
    /// Largest request body other than Produce (`codec::decode_request`).
    pub max_control_request_bytes: usize,
    pub max_inflight: usize,
    /// Connections came in on this shard's own Kafka port, the broker
    /// Metadata advertises for it: broker-scoped answers (ListGroups) cover
    /// this shard only, as each Kafka broker lists the groups it
    /// coordinates (clients ask every broker and merge). On the shared
    /// address they cover every shard.
    pub shard_node: bool,
    /// This shard's producer ids (InitProducerId is answered where it
    /// arrives: the shard id in the low bits keeps ids apart).
    pub producer_ids: Rc<RefCell<ProducerIds>>,
    /// Kafka's `transaction.version` finalized in ApiVersions (1 or 2).
    pub transaction_version: i16,
    /// The SASL mechanisms this listener accepts (Kafka's
    /// `sasl.enabled.mechanisms`); empty: no SASL, every connection is
    /// served as it comes. Otherwise a connection must authenticate before
    /// anything but ApiVersions and SASL's own requests.
    pub sasl: Vec<SaslMechanism>,
    /// How long a SASL session lasts (`connections.max.reauth.ms`,
    /// KIP-368); 0: for ever.
    pub reauth_ms: u64,
    /// The authorizer (`--authorizer acl`) with its super users; None: no
    /// checks, and the ACL APIs answer SECURITY_DISABLED (as Kafka without
    /// an authorizer).
    pub authorizer: Option<Rc<Vec<String>>>,
    /// The shard's client-quota sensors (shared by its Kafka listeners:
    /// one shard is one Kafka broker).
    pub throttle: Rc<throttle::Throttle>,
    /// What DescribeConfigs reports for a topic setting that the topic
    /// does not override, and for the broker.
    pub defaults: configs::TopicDefaults,
}

/// One Kafka connection's door: Kafka framing (`i32` BE length), requests
/// decoded by `codec`, each started through the router like a native one.
/// An unknown API, an unoffered version, an undecodable request or a bad
/// length closes the connection without an answer, as Kafka does: the
/// client cannot be answered in a form it expects.
pub struct KafkaDoor {
    pub router: Rc<Router>,
    pub ctx: Rc<KafkaContext>,
    pub peer: Option<std::net::SocketAddr>,
    pub txn_added: RefCell<TxnAdded>,
    /// This connection's SASL authentication.
    pub auth: RefCell<Authenticator>,
    /// The principal of the client's TLS certificate (mTLS), when it
    /// presented one: the principal without SASL (Kafka's SSL listener).
    pub tls_principal: Option<String>,
    /// SaslHandshake v0 succeeded: the next frames are the mechanism's bare
    /// tokens (no Kafka header), answered bare, until authentication ends.
    pub sasl_v0: std::cell::Cell<bool>,
    /// Until when (monotonic ms) the connection reads no request: a
    /// client quota's throttle (KIP-219 mutes the channel that long).
    pub muted_until: Rc<std::cell::Cell<u64>>,
    /// When (monotonic ms) this connection's SASL session expires, if it
    /// does; a request other than SASL's after it closes the connection.
    pub session_expires: std::cell::Cell<Option<u64>>,
}

thread_local! {
    /// Denied-operation warnings, rate-limited per shard thread (both
    /// doors).
    static DENIED_WARNINGS: RefCell<crate::conn::WarnLimit> = RefCell::default();
}

/// Counts what the authorizer refused (`shardlog_authorization_denied_total`)
/// and logs it: a rate-limited WARN with the principal, the peer and what
/// was asked (`what`: the API, formatted only when logged). For both
/// doors.
pub(crate) fn note_denials(
    router: &Router,
    peer: Option<std::net::SocketAddr>,
    what: impl Fn() -> String,
    v: &Verdict,
    a: &Access,
) {
    let Some(d) = v.denials.first() else { return };
    router
        .shard()
        .metrics()
        .authorization_denied
        .add(v.denials.len() as u64);
    let verdict = DENIED_WARNINGS.with(|w| w.borrow_mut().check(rt::monotonic_ms()));
    if let crate::conn::WarnVerdict::Log { suppressed } = verdict {
        tracing::warn!(
            principal = a.principal,
            peer = ?peer,
            suppressed,
            "denied {}: {} on {:?} {:?}{}",
            what(),
            d.operation.name(),
            d.resource,
            d.name,
            if v.denials.len() > 1 {
                format!(" and {} more", v.denials.len() - 1)
            } else {
                String::new()
            }
        );
    }
}

impl KafkaDoor {
    /// Who this connection is to the authorizer, if one runs: its SASL
    /// principal (`User:ANONYMOUS` before or without SASL, as Kafka's), its
    /// address, and this shard's copy of the ACLs.
    fn access(&self) -> Option<Access> {
        let super_users = self.ctx.authorizer.clone()?;
        let acls = self.router.shard().acls();
        Some(Access::new(acls, super_users, self.principal(), self.peer))
    }

    /// Who the connection is: SASL's user first (SASL_SSL), then the
    /// certificate's (SSL), else anonymous, as Kafka's principal builder.
    fn principal(&self) -> String {
        self.auth
            .borrow()
            .principal()
            .or(self.tls_principal.as_deref())
            .unwrap_or(authz::ANONYMOUS)
            .to_owned()
    }

    /// The client quotas that apply to this request, if any quota is set:
    /// a Produce's bytes are recorded now (the throttle goes in its answer
    /// and mutes the connection); a Fetch's when its answer is ready; the
    /// request's time (a request_percentage quota) when its answer is.
    fn quota(&self, d: &Decoded, frame_len: usize) -> Option<Charge> {
        use crate::security::quota::PRODUCER_BYTE_RATE;
        let quotas = self.router.shard().quotas();
        if quotas.is_empty() {
            return None;
        }
        let client_id = d
            .client_id
            .as_ref()
            .map_or_else(String::new, |c| c.as_str().to_owned());
        let client = throttle::Client::of(&self.principal(), client_id);
        let moves_bytes = matches!(d.api, ApiKey::Produce | ApiKey::Fetch);
        let mut q = Charge::new(
            &self.ctx.throttle,
            quotas,
            client,
            &self.muted_until,
            moves_bytes,
        )?;
        if d.api == ApiKey::Produce {
            q.throttle_ms = q.record(PRODUCER_BYTE_RATE, frame_len as u64, rt::monotonic_ms());
        }
        Some(q)
    }

    pub fn new(
        router: Rc<Router>,
        ctx: Rc<KafkaContext>,
        peer: Option<std::net::SocketAddr>,
    ) -> KafkaDoor {
        let auth = RefCell::new(Authenticator::new(ctx.sasl.clone()));
        KafkaDoor {
            router,
            ctx,
            peer,
            txn_added: RefCell::default(),
            auth,
            tls_principal: None,
            sasl_v0: std::cell::Cell::new(false),
            muted_until: Rc::default(),
            session_expires: std::cell::Cell::new(None),
        }
    }

    /// One SASL token through this connection's authenticator, against
    /// the shard's users.
    fn authenticate(&self, token: &[u8]) -> Result<SaslStep, SaslError> {
        let users = self.router.shard().users();
        let mut random = |b: &mut [u8]| {
            getrandom::getrandom(b).expect("the OS's random source");
        };
        self.auth.borrow_mut().authenticate(
            token,
            &|user, m| users.credential(user, m),
            &mut random,
        )
    }

    /// A session begins (or is renewed, KIP-368): it lasts
    /// `connections.max.reauth.ms` from now. Returns its lifetime in ms for
    /// SaslAuthenticate's answer (0: it does not expire).
    fn session_started(&self, renewing: bool) -> i64 {
        if renewing {
            self.router.shard().metrics().sasl_reauthentications.add(1);
        }
        let ms = self.ctx.reauth_ms;
        self.session_expires
            .set((ms > 0).then(|| rt::monotonic_ms().saturating_add(ms)));
        i64::try_from(ms).unwrap_or(i64::MAX)
    }

    /// A bare SASL token after SaslHandshake v0, answered bare (a 4-byte
    /// length and the mechanism's bytes; PLAIN's success is an empty
    /// answer). A failure closes the connection unanswered: v0 has no way
    /// to carry an error (Kafka closes too).
    fn bare_token(&self, frame: Bytes) -> Step {
        match self.authenticate(&frame) {
            Ok(SaslStep::Continue(bytes)) => Step::Answer(Answer::Ready(Some(bare(bytes)))),
            Ok(SaslStep::Done { principal, reply }) => {
                tracing::debug!(principal, peer = ?self.peer, "authenticated (SaslHandshake v0)");
                self.sasl_v0.set(false);
                self.session_started(false);
                Step::Answer(Answer::Ready(Some(bare(reply))))
            }
            Err(e) => {
                let user = self
                    .auth
                    .borrow()
                    .attempted_user()
                    .unwrap_or("?")
                    .to_owned();
                Step::Close {
                    last: None,
                    reason: CloseReason::AuthFailed,
                    detail: format!("SASL authentication as {user:?} failed: {e}"),
                }
            }
        }
    }

    /// SaslHandshake and SaslAuthenticate, against this connection's
    /// authenticator. A failure is answered, then the connection closes
    /// (as Kafka's): the client starts over on a new one.
    fn sasl(&self, version: i16, correlation_id: i32, work: SaslWork) -> Step {
        let close = |bytes: anyhow::Result<Bytes>, detail: String| Step::Close {
            last: bytes.ok().map(Chain::from),
            reason: CloseReason::AuthFailed,
            detail,
        };
        let off = self.ctx.sasl.is_empty();
        match work {
            SaslWork::Handshake(mechanism) => {
                let r = if off {
                    Err(SaslError::IllegalState(
                        "SASL is not enabled on this listener",
                    ))
                } else {
                    self.auth.borrow_mut().handshake(&mechanism)
                };
                let names = self.auth.borrow().enabled_names();
                match r {
                    Ok(()) => {
                        // v0: the tokens follow bare (Kafka's original
                        // framing; librdkafka 2.0 looks for v0 in the
                        // range before it will use SASL at all).
                        self.sasl_v0.set(version == 0);
                        Step::Answer(Answer::Ready(encoded(
                            ApiKey::SaslHandshake,
                            version,
                            sasl::handshake_response(version, correlation_id, None, &names),
                        )))
                    }
                    Err(e) => {
                        let w = e.to_wire();
                        close(
                            sasl::handshake_response(version, correlation_id, Some(&w), &names),
                            format!("SASL handshake for {mechanism:?}: {e}"),
                        )
                    }
                }
            }
            SaslWork::Authenticate(token) => {
                let renewing = self.auth.borrow().principal().is_some();
                let r = if off {
                    Err(SaslError::IllegalState(
                        "SASL is not enabled on this listener",
                    ))
                } else {
                    self.authenticate(&token)
                };
                match r {
                    Ok(SaslStep::Continue(bytes)) => Step::Answer(Answer::Ready(encoded(
                        ApiKey::SaslAuthenticate,
                        version,
                        sasl::authenticate_response(version, correlation_id, Ok((bytes, 0))),
                    ))),
                    Ok(SaslStep::Done { principal, reply }) => {
                        tracing::debug!(principal, peer = ?self.peer, renewing, "authenticated");
                        let lifetime = self.session_started(renewing);
                        Step::Answer(Answer::Ready(encoded(
                            ApiKey::SaslAuthenticate,
                            version,
                            sasl::authenticate_response(
                                version,
                                correlation_id,
                                Ok((reply, lifetime)),
                            ),
                        )))
                    }
                    Err(e) => {
                        let w = e.to_wire();
                        let user = self
                            .auth
                            .borrow()
                            .attempted_user()
                            .unwrap_or("?")
                            .to_owned();
                        close(
                            sasl::authenticate_response(version, correlation_id, Err(&w)),
                            format!("SASL authentication as {user:?} failed: {e}"),
                        )
                    }
                }
            }
        }
    }
}

/// A bare SASL token frame (SaslHandshake v0's framing).
fn bare(bytes: Vec<u8>) -> Chain {
    let mut b = BytesMut::with_capacity(4 + bytes.len());
    b.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    b.extend_from_slice(&bytes);
    Chain::from(b.freeze())
}

/// KIP-890 part 2: the partitions this connection's transactional
/// producer has added to its current transaction. Under transaction
/// version 2 every transaction has its own epoch, so a producer id and
/// epoch name one transaction, and a partition added once needs no second
/// trip to the coordinator. It only saves trips: a partition refuses a
/// batch of a transaction that is not open there (ended, or fenced by a
/// newer epoch), whatever this says.
#[derive(Debug, Default)]
pub struct TxnAdded {
    producer: (i64, i16),
    partitions: HashSet<TopicPartition>,
}

impl TxnAdded {
    /// Of `partitions`, those not yet added for `producer`'s transaction.
    fn missing(
        &mut self,
        producer: (i64, i16),
        partitions: &[TopicPartition],
    ) -> Vec<TopicPartition> {
        if self.producer != producer {
            self.producer = producer;
            self.partitions.clear();
        }
        partitions
            .iter()
            .filter(|tp| !self.partitions.contains(*tp))
            .cloned()
            .collect()
    }

    fn added(&mut self, producer: (i64, i16), tp: TopicPartition) {
        if self.producer == producer {
            self.partitions.insert(tp);
        }
    }
}

impl Door for KafkaDoor {
    fn frame_len(buf: &[u8]) -> Option<usize> {
        codec::frame_len(buf)
    }

    fn pause(&self) -> Option<std::time::Duration> {
        let until = self.muted_until.get();
        let now = rt::monotonic_ms();
        (until > now).then(|| std::time::Duration::from_millis(until - now))
    }

    fn next_frame(
        &self,
        buf: &mut BytesMut,
        max_frame_bytes: usize,
    ) -> Result<Option<Bytes>, Step> {
        codec::next_frame(buf, max_frame_bytes).map_err(|e| Step::Close {
            last: None,
            reason: CloseReason::FrameTooLarge,
            detail: e.to_string(),
        })
    }

    async fn start(&self, frame: Bytes) -> Step {
        if self.sasl_v0.get() {
            return self.bare_token(frame);
        }
        if let Some(expired) = self.session_expires.get() {
            let now = rt::monotonic_ms();
            let api = frame.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
            let renewing = [
                ApiKey::SaslHandshake as i16,
                ApiKey::SaslAuthenticate as i16,
            ];
            if now >= expired && !api.is_some_and(|a| renewing.contains(&a)) {
                // Kafka closes such a connection at its next request: the
                // client knew the lifetime (SaslAuthenticate v1+) and did
                // not re-authenticate in time, or cannot (v0).
                return Step::Close {
                    last: None,
                    reason: CloseReason::SessionExpired,
                    detail: format!(
                        "the SASL session of {} expired {} ms ago without re-authentication (connections.max.reauth.ms)",
                        self.principal(),
                        now - expired
                    ),
                };
            }
        }
        if !self.ctx.sasl.is_empty() && self.auth.borrow().principal().is_none() {
            // Before authenticating only ApiVersions and SASL's requests
            // (Kafka closes such a connection the same way).
            let api = frame.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]]));
            let allowed = [
                ApiKey::ApiVersions as i16,
                ApiKey::SaslHandshake as i16,
                ApiKey::SaslAuthenticate as i16,
            ];
            if !api.is_some_and(|a| allowed.contains(&a)) {
                return Step::Close {
                    last: None,
                    reason: CloseReason::Unauthenticated,
                    detail: format!(
                        "a request (API key {}) before authenticating on a listener that requires SASL",
                        api.unwrap_or(-1)
                    ),
                };
            }
        }
        let frame_len = frame.len();
        match codec::decode_request(
            frame,
            self.ctx.max_control_request_bytes,
            self.router.as_ref(),
        ) {
            Ok(Decoded {
                version,
                correlation_id,
                work: Work::Sasl(w),
                ..
            }) => self.sasl(version, correlation_id, w),
            Ok(mut d) => {
                let (api, version) = (d.api, d.version);
                let quota = self.quota(&d, frame_len);
                let meter = quota.as_ref().and_then(|q| q.meter.clone());
                // Produce's and Fetch's request time joins their byte-rate
                // throttle where their answers are encoded; the others'
                // is recorded here once their answers are ready.
                let settling = quota
                    .as_ref()
                    .filter(|q| q.meter.is_some())
                    .filter(|_| !matches!(api, ApiKey::Produce | ApiKey::Fetch))
                    .cloned();
                let access = self.access();
                let mut verdict = Verdict::default();
                if let Some(a) = &access {
                    let (work, v) = authz::authorize(d.api, d.work, a);
                    let api = d.api;
                    note_denials(&self.router, self.peer, || format!("{api:?}"), &v, a);
                    d.work = work;
                    verdict = v;
                }
                let conn = Conn {
                    peer: self.peer,
                    txn_added: &self.txn_added,
                    access,
                    verdict,
                    quota,
                };
                let started = start(&self.router, &self.ctx, d, conn);
                let answer = match &meter {
                    Some(m) => rt::timed(m, started).await,
                    None => started.await,
                };
                Step::Answer(match settling {
                    Some(q) => settle(q, api, version, answer),
                    None => answer,
                })
            }
            Err(e) => Step::Close {
                last: None,
                reason: CloseReason::BadRequest,
                detail: e.to_string(),
            },
        }
    }
}

impl wire::TopicIds for Router {
    fn name_of_id(&self, id: &[u8; 16]) -> Option<String> {
        self.shard().topic_by_id(id)
    }
    fn id_of_name(&self, name: &str) -> Option<[u8; 16]> {
        self.shard().topic_id(name)
    }
}

/// What one request brings from its connection.
struct Conn<'a> {
    peer: Option<std::net::SocketAddr>,
    txn_added: &'a RefCell<TxnAdded>,
    /// The authorizer's view of the connection (None: no authorizer).
    access: Option<Access>,
    /// What the authorizer took out of the request.
    verdict: Verdict,
    /// The client quota this request counts against (Produce, Fetch).
    quota: Option<Charge>,
}

/// Records a request's time once its answer is ready, and writes the
/// throttle it earns into the answer where the response opens with one
/// (`throttle::put_throttle`; elsewhere only the mute holds the client).
fn settle(mut charge: Charge, api: ApiKey, version: i16, answer: Answer) -> Answer {
    let stamp = move |chain: Chain| {
        let ms = charge.record_time(rt::monotonic_ms());
        if ms == 0 {
            return chain;
        }
        // Copied only when throttled: control answers are small.
        let mut frame = chain.to_bytes().to_vec();
        let ms = i32::try_from(ms).unwrap_or(i32::MAX);
        if throttle::put_throttle(&mut frame, api, version, ms) {
            Chain::from(Bytes::from(frame))
        } else {
            chain
        }
    };
    match answer {
        Answer::Ready(c) => Answer::Ready(c.map(stamp)),
        Answer::Later(task) => Answer::Later(rt::spawn(async move { task.await.map(stamp) })),
    }
}

/// Starts one request: appends and hand-offs to other shards happen here,
/// before the next request is read (order), as on the native listener.
async fn start(router: &Rc<Router>, ctx: &Rc<KafkaContext>, d: Decoded, conn: Conn<'_>) -> Answer {
    let Conn {
        peer,
        txn_added,
        access,
        verdict,
        quota,
    } = conn;
    let Decoded {
        api,
        version,
        correlation_id,
        mut work,
        ..
    } = d;
    let encoded = move |r| encoded(api, version, r);
    let meter = quota.as_ref().and_then(|q| q.meter.clone());
    // Awaited here, before the next request is read: the append that
    // follows keeps the connection's order.
    let mut add_failed = Vec::new();
    if let Work::TxnAdd { add, then } = work {
        add_failed = implicit_add(router, txn_added, add).await;
        work = without_failed(*then, &add_failed);
    }
    match work {
        Work::ApiVersions { error } => {
            let r = wire::encode_frame(
                api,
                version,
                correlation_id,
                &codec::api_versions_response(error, ctx.transaction_version),
            );
            Answer::Ready(encoded(r))
        }
        Work::InitProducerId => {
            let id = ctx.producer_ids.borrow_mut().next(rt::now_ms());
            let r = wire::encode_frame(
                api,
                version,
                correlation_id,
                &admin::init_producer_id_response(Ok(id)),
            );
            Answer::Ready(encoded(r))
        }
        Work::Txn {
            calls,
            unknown_states,
        } => {
            let m = router.shard().metrics().clone();
            let started = m.request_started(Api::Group);
            let mut waits = Vec::with_capacity(calls.len());
            for call in &calls {
                waits.push(router.txn_call(call.clone()).await);
            }
            Answer::Later(rt::spawn_metered(meter.as_ref(), async move {
                let mut replies = Vec::with_capacity(waits.len());
                for w in waits {
                    let mut reply = w.await;
                    if let (Ok(r), Some(a)) = (&mut reply, &access) {
                        authz::filter_txn_reply(r, a);
                    }
                    replies.push(reply);
                }
                m.request_finished(Api::Group, started);
                encoded(txn::encode_txn(
                    api,
                    version,
                    correlation_id,
                    &calls,
                    replies,
                    &unknown_states,
                ))
            }))
        }
        Work::FindCoordinator { keys, key_type } => {
            let r = wire::encode_frame(
                api,
                version,
                correlation_id,
                &groups::find_coordinator_response(version, &keys, key_type, |key| {
                    if let Some(code) = authz::coordinator_denied(&verdict, key_type, key) {
                        return Err(code);
                    }
                    // Key type 1: a transactional id's coordinator.
                    let shard = if key_type == 1 {
                        router.txn_coordinator_of(key)
                    } else {
                        router.coordinator_of(key)
                    };
                    // One advertised broker (per-shard ports off): that one.
                    Ok(ctx
                        .nodes
                        .iter()
                        .find(|n| n.shard == shard)
                        .unwrap_or(&ctx.nodes[0])
                        .clone())
                }),
            );
            Answer::Ready(encoded(r))
        }
        Work::Refuse { shape, error } => {
            let r = codec::refuse_response(api, version, correlation_id, &shape, error);
            Answer::Ready(encoded(r))
        }
        Work::RefuseAdd { shape, errors } => {
            let r = txn::add_partitions_refused(version, correlation_id, &shape, &errors);
            Answer::Ready(encoded(r))
        }
        Work::KafkaGroups { kind, shape } => {
            let call = (api, version, correlation_id);
            let denied = verdict;
            start_group_calls(router, call, kind, shape, (peer, meter, denied)).await
        }
        Work::Native {
            frame,
            shape,
            respond,
            refused,
            describe_configs,
        } => {
            let native = NativeWork {
                frame,
                shape,
                respond,
                refused,
                describe_configs,
                add_failed,
                verdict,
                access,
                quota,
            };
            start_native(router, ctx, (api, version, correlation_id), native).await
        }
        Work::TxnAdd { .. } => unreachable!("taken apart above"),
        Work::Sasl(_) => unreachable!("answered by the door"),
        Work::Users(UsersWork::Describe(names)) => {
            let users = router.shard().users();
            Answer::Ready(encoded(sasl::describe_users_response(
                version,
                correlation_id,
                &users,
                names.as_deref(),
            )))
        }
        Work::Acls(w) => acls_work(router, ctx, (api, version, correlation_id), w).await,
        Work::Quotas(w) => {
            let r = quotas_work(router, (version, correlation_id), w, verdict.refused).await;
            Answer::Ready(encoded(r))
        }
        Work::Users(UsersWork::Alter(changes)) => {
            // Awaited here: the next request on this connection sees the
            // change (describing right after altering).
            let r = router.alter_users(changes.clone()).await;
            Answer::Ready(encoded(sasl::alter_users_response(
                version,
                correlation_id,
                r,
                &changes,
            )))
        }
    }
}

/// CreateAcls, DescribeAcls, DeleteAcls: invalid bindings and filters
/// refused on their own, the rest through the controller (changes) or
/// from this shard's copy (describe). Without an authorizer there are no
/// ACLs to manage: SECURITY_DISABLED, as Kafka.
async fn acls_work(
    router: &Rc<Router>,
    ctx: &Rc<KafkaContext>,
    (api, version, correlation_id): (ApiKey, i16, i32),
    w: AclsWork,
) -> Answer {
    use crate::security::acl::{AclChange, AclChanged};
    let encoded = move |r| encoded(api, version, r);
    if ctx.authorizer.is_none() {
        let error = kafka_protocol::ResponseError::SecurityDisabled.code();
        return Answer::Ready(encoded(acls::refuse(
            api,
            version,
            correlation_id,
            &w.shape(),
            error,
        )));
    }
    let failed = |e: &WireError| acls::kafka_error(e);
    match w {
        AclsWork::Describe(f) => {
            let r = f
                .map(|f| router.shard().acls().describe(&f))
                .map_err(|why| acls::invalid(&why));
            Answer::Ready(encoded(acls::describe_response(version, correlation_id, r)))
        }
        AclsWork::Create(creations) => {
            let valid: Vec<_> = creations.iter().filter_map(|c| c.clone().ok()).collect();
            let mut done = if valid.is_empty() {
                Ok(AclChanged::Created(vec![]))
            } else {
                // Awaited here: the next request on this connection sees
                // the change.
                router.alter_acls(AclChange::Create(valid)).await
            };
            let mut results = match &mut done {
                Ok(AclChanged::Created(rs)) => std::mem::take(rs).into_iter(),
                _ => Vec::new().into_iter(),
            };
            let answers: Vec<_> = creations
                .iter()
                .map(|c| match (c, &done) {
                    (Err(why), _) => Err(acls::invalid(why)),
                    (Ok(_), Err(e)) => Err(failed(e)),
                    (Ok(_), Ok(_)) => match results.next() {
                        Some(Ok(())) => Ok(()),
                        Some(Err(e)) => Err(acls::invalid(&e.to_string())),
                        None => Err(acls::invalid("no result")),
                    },
                })
                .collect();
            Answer::Ready(encoded(acls::create_response(
                version,
                correlation_id,
                &answers,
            )))
        }
        AclsWork::Delete(filters) => {
            let valid: Vec<_> = filters.iter().filter_map(|f| f.clone().ok()).collect();
            let mut done = if valid.is_empty() {
                Ok(AclChanged::Deleted(vec![]))
            } else {
                router.alter_acls(AclChange::Delete(valid)).await
            };
            let mut results = match &mut done {
                Ok(AclChanged::Deleted(rs)) => std::mem::take(rs).into_iter(),
                _ => Vec::new().into_iter(),
            };
            let answers: Vec<_> = filters
                .iter()
                .map(|f| match (f, &done) {
                    (Err(why), _) => Err(acls::invalid(why)),
                    (Ok(_), Err(e)) => Err(failed(e)),
                    (Ok(_), Ok(_)) => Ok(results.next().unwrap_or_default()),
                })
                .collect();
            Answer::Ready(encoded(acls::delete_response(
                version,
                correlation_id,
                &answers,
            )))
        }
    }
}

/// DescribeClientQuotas from this shard's copy; AlterClientQuotas through
/// the controller, each entry on its own (an invalid one refused, the
/// others applied). `refused`: the authorizer's code for the whole request.
async fn quotas_work(
    router: &Rc<Router>,
    (version, correlation_id): (i16, i32),
    w: QuotasWork,
    refused: Option<i16>,
) -> anyhow::Result<Bytes> {
    let denied = refused.map(|code| (code, "not authorized".to_owned()));
    match w {
        QuotasWork::Describe { components, strict } => {
            let r = match (denied, components) {
                (Some(e), _) => Err(e),
                (None, Err(why)) => Err(quotas::invalid(&why)),
                (None, Ok(cs)) => Ok(router
                    .shard()
                    .quotas()
                    .describe(&cs, strict)
                    .into_iter()
                    .map(|(e, keys)| {
                        let values = keys.iter().map(|(k, v)| (k.clone(), *v)).collect();
                        (e.clone(), values)
                    })
                    .collect()),
            };
            quotas::describe_response(version, correlation_id, r)
        }
        QuotasWork::Alter {
            entries,
            validate_only,
        } => {
            if let Some(e) = denied {
                let all: Vec<_> = entries
                    .into_iter()
                    .map(|(raw, _)| (raw, Some(e.clone())))
                    .collect();
                return quotas::alter_response(version, correlation_id, &all);
            }
            let valid: Vec<_> = entries
                .iter()
                .filter_map(|(_, c)| c.as_ref().ok().cloned())
                .collect();
            let done = if valid.is_empty() {
                Ok(vec![])
            } else {
                // Awaited here: the next request on this connection sees it.
                router.alter_quotas(valid, validate_only).await
            };
            let mut results = done.as_ref().map(|r| r.iter()).ok();
            let answers: Vec<_> = entries
                .into_iter()
                .map(|(raw, c)| {
                    let err = match (c, &done) {
                        (Err(why), _) => Some(quotas::invalid(&why)),
                        (Ok(_), Err(e)) => Some(acls::kafka_error(e)),
                        (Ok(_), Ok(_)) => results
                            .as_mut()
                            .and_then(|r| r.next())
                            .and_then(|e| e.as_ref().map(acls::kafka_error)),
                    };
                    (raw, err)
                })
                .collect();
            quotas::alter_response(version, correlation_id, &answers)
        }
    }
}

/// KIP-890 part 2's implicit add (`Work::TxnAdd`): the partitions this
/// connection has not added to the producer's transaction yet go to the
/// coordinator. Returns the partitions whose add failed, with the error
/// their request answers (a Produce's as Kafka's partition leader maps
/// the coordinator's: a fenced producer is INVALID_PRODUCER_EPOCH, which
/// a producer knows from a send).
async fn implicit_add(
    router: &Rc<Router>,
    txn_added: &RefCell<TxnAdded>,
    mut add: TxnCall,
) -> Vec<(TopicPartition, WireError)> {
    let producer = match &mut add {
        TxnCall::Add {
            producer_id,
            epoch,
            partitions,
            ..
        } => {
            let p = (*producer_id, *epoch);
            // A partition that does not exist is not added (the produce
            // answers it UNKNOWN_TOPIC_OR_PARTITION itself, as Kafka's
            // leader does before any verification); the coordinator would
            // otherwise refuse the whole add and fail the others with it.
            let shard = router.shard();
            partitions.retain(|tp| shard.owner(&tp.topic, tp.partition).is_some());
            *partitions = txn_added.borrow_mut().missing(p, partitions);
            if partitions.is_empty() {
                return vec![];
            }
            Some(p)
        }
        _ => None,
    };
    let asked: Vec<TopicPartition> = match &add {
        TxnCall::Add { partitions, .. } => partitions.clone(),
        _ => vec![],
    };
    let reply = router.txn_call(add).await.await;
    let fenced_as_epoch = |e: WireError| {
        if producer.is_some() && e.code == ErrorCode::ProducerFenced {
            WireError::new(ErrorCode::InvalidProducerEpoch, e.message)
        } else {
            e
        }
    };
    match reply {
        Ok(TxnReply::Added(results)) => results
            .into_iter()
            .filter_map(|(tp, e)| match e {
                None => {
                    if let Some(p) = producer {
                        txn_added.borrow_mut().added(p, tp);
                    }
                    None
                }
                Some(e) => Some((tp, fenced_as_epoch(e))),
            })
            .collect(),
        // AddOffsets: the offsets partition stands for the whole commit.
        Ok(TxnReply::OffsetsAdded(Ok(()))) => vec![],
        Ok(TxnReply::OffsetsAdded(Err(e))) | Err(e) => {
            let e = fenced_as_epoch(e);
            if asked.is_empty() {
                vec![(TopicPartition::new("", 0), e)]
            } else {
                asked.into_iter().map(|tp| (tp, e.clone())).collect()
            }
        }
        Ok(other) => {
            let e = WireError::new(ErrorCode::Unknown, format!("unexpected reply {other:?}"));
            vec![(TopicPartition::new("", 0), e)]
        }
    }
}

/// The request that follows an implicit add, without what failed: a
/// Produce leaves out the failed partitions (answered beside the rest by
/// `start_native`); a TxnOffsetCommit is refused whole with the error.
fn without_failed(work: Work, failed: &[(TopicPartition, WireError)]) -> Work {
    let Some((_, first)) = failed.first() else {
        return work;
    };
    match work {
        Work::Native {
            mut frame,
            shape,
            respond,
            refused,
            describe_configs,
        } => {
            if let Request::Produce(p) = &mut frame.request {
                for t in &mut p.topics {
                    t.partitions.retain(|part| {
                        !failed
                            .iter()
                            .any(|(tp, _)| tp.topic == t.name && tp.partition == part.partition)
                    });
                }
                p.topics.retain(|t| !t.partitions.is_empty());
            }
            Work::Native {
                frame,
                shape,
                respond,
                refused,
                describe_configs,
            }
        }
        Work::KafkaGroups { shape, .. } => Work::Refuse {
            shape,
            error: crate::errors::kafka_code(Some(first)),
        },
        other => other,
    }
}

/// Our own response failed to encode: a bug, not the client's. Logged, and
/// the request goes unanswered (the client times out and retries).
fn encoded(api: ApiKey, version: i16, r: Result<impl Into<Chain>, anyhow::Error>) -> Option<Chain> {
    match r {
        Ok(b) => Some(b.into()),
        Err(e) => {
            tracing::error!("kafka: cannot encode {api:?} v{version} response: {e}");
            None
        }
    }
}

/// Starts the coordinator calls of a group API request: each reaches its
/// coordinator before the next request is read (order); the answers are
/// awaited in call order and encoded together.
async fn start_group_calls(
    router: &Rc<Router>,
    (api, version, correlation_id): (ApiKey, i16, i32),
    mut kind: KafkaGroupKind,
    shape: Shape,
    (peer, meter, verdict): (Option<std::net::SocketAddr>, Option<rt::Meter>, Verdict),
) -> Answer {
    let encoded = move |r| encoded(api, version, r);
    if let KafkaGroupKind::Classic(c) = &mut kind {
        if let ClassicCall::Join(j) = c.as_mut() {
            // Kafka shows members' hosts as "/ip".
            j.client_host = peer.map_or_else(String::new, |p| format!("/{}", p.ip()));
        }
    }
    let m = router.shard().metrics().clone();
    let started = m.request_started(Api::Group);
    let calls = kind.into_calls(&shape);
    let mut waits = Vec::with_capacity(calls.len());
    for call in calls {
        waits.push(match authz::denied_group_reply(&verdict, &call) {
            Some(reply) => Box::pin(std::future::ready(reply)),
            None => router.kafka_group(call).await,
        });
    }
    Answer::Later(rt::spawn_metered(meter.as_ref(), async move {
        let mut replies = Vec::with_capacity(waits.len());
        for w in waits {
            replies.push(w.await);
        }
        m.request_finished(Api::Group, started);
        encoded(groups::encode_kafka_groups(
            api,
            version,
            correlation_id,
            replies,
            &shape,
        ))
    }))
}

/// A request the shards answer through the native data path.
struct NativeWork {
    frame: Box<RequestFrame>,
    shape: Shape,
    respond: bool,
    refused: Refused,
    describe_configs: Vec<ConfigResource>,
    /// A Produce's partitions whose implicit add failed (`implicit_add`):
    /// answered with their error beside the rest.
    add_failed: Vec<(TopicPartition, WireError)>,
    /// Topics the authorizer took out (answered beside the rest) and the
    /// listing it filters.
    verdict: Verdict,
    access: Option<Access>,
    quota: Option<Charge>,
}

/// Starts a request the shards answer through the native data path.
async fn start_native(
    router: &Rc<Router>,
    ctx: &Rc<KafkaContext>,
    (api, version, correlation_id): (ApiKey, i16, i32),
    w: NativeWork,
) -> Answer {
    let encoded = move |r| encoded(api, version, r);
    let NativeWork {
        frame,
        shape,
        respond,
        refused,
        describe_configs,
        add_failed,
        verdict,
        access,
        mut quota,
    } = w;
    let scope = if ctx.shard_node && matches!(frame.request, Request::ListGroups) {
        Scope::ThisShard
    } else {
        Scope::Broker
    };
    // A Produce whose every partition failed its implicit add (nothing to
    // append), or a request every topic of which the authorizer took out:
    // answered without the router.
    let emptied = authz::emptied(&frame.request, &verdict);
    let nothing =
        emptied.is_some() || matches!(&frame.request, Request::Produce(p) if p.topics.is_empty());
    let answer = if nothing {
        None
    } else {
        Some(router.begin(*frame, scope).await)
    };
    let ctx = ctx.clone();
    let router = router.clone();
    let meter = quota.as_ref().and_then(|q| q.meter.clone());
    Answer::Later(rt::spawn_metered(meter.as_ref(), async move {
        let mut result = match answer {
            Some(answer) => answer.await.result,
            None => Ok(emptied.unwrap_or(Response::Produce(vec![]))),
        };
        if let Some(a) = &access {
            authz::answer(&mut result, &verdict, a);
        }
        // A Fetch counts what it returns (Kafka records the response size).
        if let (Some(q), Ok(Response::Fetch(topics))) = (&mut quota, &result) {
            let bytes: usize = topics
                .iter()
                .flat_map(|t| &t.partitions)
                .map(|p| p.records.len())
                .sum();
            let (key, now) = (
                crate::security::quota::CONSUMER_BYTE_RATE,
                rt::monotonic_ms(),
            );
            q.throttle_ms = q.record(key, bytes as u64, now);
        }
        // Their request time too (the door records the other APIs'): the
        // answer carries the longer throttle, as Kafka's. This poll's time
        // so far is not in yet (the meter counts whole polls).
        if let Some(q) = quota
            .as_mut()
            .filter(|_| matches!(api, ApiKey::Produce | ApiKey::Fetch))
        {
            q.throttle_ms = q.throttle_ms.max(q.record_time(rt::monotonic_ms()));
        }
        let throttle_ms = quota.map_or(0, |q| q.throttle_ms.min(i32::MAX as u64) as i32);
        if !respond {
            return None; // acks=0: Kafka sends no response
        }
        if let Ok(Response::Produce(topics)) = &mut result {
            for (tp, e) in add_failed {
                let failed = ProducePartitionResult {
                    partition: tp.partition,
                    error: Some(e),
                    base_offset: -1,
                    high_watermark: -1,
                    invalid_records: vec![],
                };
                match topics.iter_mut().find(|t| t.name == tp.topic) {
                    Some(t) => t.partitions.push(failed),
                    None => topics.push(ProduceTopicResult {
                        name: tp.topic,
                        partitions: vec![failed],
                    }),
                }
            }
        }
        encoded(codec::encode_response(
            api,
            version,
            correlation_id,
            result,
            &shape,
            &refused,
            &describe_configs,
            &ctx.nodes,
            &ctx.defaults,
            router.as_ref(),
            throttle_ms,
        ))
    }))
}
