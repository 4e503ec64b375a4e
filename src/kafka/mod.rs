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

mod admin;
mod cluster;
pub mod codec;
pub mod configs;
mod data;
#[cfg(test)]
mod fuzz;
pub mod groups;
mod metadata;
mod txn;
pub mod wire;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;

use crate::chain::Chain;
use crate::conn::{Answer, CloseReason, Door, Step};
use crate::group::classic::ClassicCall;
use crate::metrics::Api;
use crate::producer_state::ProducerIds;
use crate::protocol::{NodeInfo, Request, RequestFrame};
use crate::router::{Router, Scope};
use crate::rt;
use wire::{ConfigResource, Decoded, KafkaGroupKind, Refused, Shape, Work};

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
}

impl Door for KafkaDoor {
    fn frame_len(buf: &[u8]) -> Option<usize> {
        codec::frame_len(buf)
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
        match codec::decode_request(
            frame,
            self.ctx.max_control_request_bytes,
            self.router.as_ref(),
        ) {
            Ok(d) => Step::Answer(start(&self.router, &self.ctx, d, self.peer).await),
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

/// Starts one request: appends and hand-offs to other shards happen here,
/// before the next request is read (order), as on the native listener.
async fn start(
    router: &Rc<Router>,
    ctx: &Rc<KafkaContext>,
    d: Decoded,
    peer: Option<std::net::SocketAddr>,
) -> Answer {
    let Decoded {
        api,
        version,
        correlation_id,
        work,
    } = d;
    let encoded = move |r| encoded(api, version, r);
    match work {
        Work::ApiVersions { error } => {
            let r = wire::encode_frame(
                api,
                version,
                correlation_id,
                &codec::api_versions_response(error),
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
            Answer::Later(rt::spawn(async move {
                let mut replies = Vec::with_capacity(waits.len());
                for w in waits {
                    replies.push(w.await);
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
                    // Key type 1: a transactional id's coordinator.
                    let shard = if key_type == 1 {
                        router.txn_coordinator_of(key)
                    } else {
                        router.coordinator_of(key)
                    };
                    // One advertised broker (per-shard ports off): that one.
                    ctx.nodes
                        .iter()
                        .find(|n| n.shard == shard)
                        .unwrap_or(&ctx.nodes[0])
                        .clone()
                }),
            );
            Answer::Ready(encoded(r))
        }
        Work::Refuse { shape, error } => {
            let r = codec::refuse_response(api, version, correlation_id, &shape, error);
            Answer::Ready(encoded(r))
        }
        Work::KafkaGroups { kind, shape } => {
            start_group_calls(router, (api, version, correlation_id), kind, shape, peer).await
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
            };
            start_native(router, ctx, (api, version, correlation_id), native).await
        }
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
    peer: Option<std::net::SocketAddr>,
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
        waits.push(router.kafka_group(call).await);
    }
    Answer::Later(rt::spawn(async move {
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
    } = w;
    let scope = if ctx.shard_node && matches!(frame.request, Request::ListGroups) {
        Scope::ThisShard
    } else {
        Scope::Broker
    };
    let answer = router.begin(*frame, scope).await;
    let ctx = ctx.clone();
    let router = router.clone();
    Answer::Later(rt::spawn(async move {
        let r = answer.await;
        if !respond {
            return None; // acks=0: Kafka sends no response
        }
        encoded(codec::encode_response(
            api,
            version,
            correlation_id,
            r.result,
            &shape,
            &refused,
            &describe_configs,
            &ctx.nodes,
            &ctx.defaults,
            router.as_ref(),
        ))
    }))
}
