//! The Kafka listener: a second front door to the same partitions. Kafka
//! clients (kcat, librdkafka, kafka-python, the Java client) connect here
//! unchanged; every shard is advertised as its own Kafka broker (node id =
//! shard id) so Metadata leads them to the partition's owner shard.
//!
//! Owns: one Kafka connection's life (frames in, requests handed to the
//! shard's `Router` in arrival order, responses out in that order; none for
//! a produce with acks=0) and the Kafka codec (`codec`, pure).
//!
//! Must never: interpret requests itself beyond translation (routing,
//! forwarding, long polling and storage are the router's and the shard's,
//! shared with the native protocol), decode or re-encode record batches, or
//! let one connection's bad input affect another: an unknown API, an
//! unsupported version or an undecodable request closes that connection.

pub mod codec;
#[cfg(test)]
mod fuzz;
pub mod groups;

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;

use crate::conn::{Activity, CloseReason, FrameReader};
use crate::group::classic::ClassicCall;
use crate::metrics::Api;
use crate::producer_state::ProducerIds;
use crate::protocol::{NodeInfo, Request};
use crate::router::Router;
use crate::rt;
use codec::{Decoded, Work};

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
    pub defaults: codec::TopicDefaults,
}

/// A response being prepared; `None` when the request gets no answer.
type Pending = rt::Task<Option<Bytes>>;

/// Serves one Kafka connection until the client hangs up, framing is lost,
/// a timeout closes it, or the broker stops (`stop` notified). Returns why
/// it ended, with a line for the log.
pub async fn serve_connection(
    router: Rc<Router>,
    ctx: Rc<KafkaContext>,
    stream: rt::TcpStream,
    mut reader: FrameReader,
    stop: &Rc<rt::Event>,
) -> (CloseReason, String) {
    if let Err(e) = stream.set_nodelay(true) {
        return (CloseReason::IoError, format!("cannot set TCP_NODELAY: {e}"));
    }
    let peer = stream.peer_addr().ok();
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let (tx, rx) = rt::channel::bounded::<Pending>(ctx.max_inflight.max(1));
    let activity = Activity::new();
    let writer_activity = activity.clone();
    let writer = rt::spawn(async move {
        while let Some(task) = rx.recv().await {
            let answer = task.await;
            let written = match answer {
                Some(bytes) => wr.write_all(&bytes).await,
                None => Ok(()),
            };
            writer_activity.answered();
            written?;
        }
        wr.flush().await?;
        wr.close().await
    });
    let (reason, detail) = 'conn: loop {
        loop {
            let body = match codec::next_frame(reader.buf(), ctx.max_frame_bytes) {
                Ok(None) => break,
                Ok(Some(body)) => body,
                Err(e) => break 'conn (CloseReason::FrameTooLarge, e.to_string()),
            };
            let decoded = match codec::decode_request(body, ctx.max_control_request_bytes) {
                Ok(d) => d,
                // Kafka closes the connection too: the client cannot be
                // answered in a form it expects.
                Err(e) => break 'conn (CloseReason::BadRequest, e.to_string()),
            };
            let task = start(&router, &ctx, decoded, peer).await;
            activity.started();
            if tx.send(task).await.is_err() {
                // The writer is gone: the client went away.
                break 'conn (CloseReason::IoError, "write failed".to_owned());
            }
        }
        reader.settle();
        if let Err(reason) = reader.fill(&mut rd, stop, &activity).await {
            // EOF, stop, a timeout or a failed read: requests already
            // started still get answers.
            break (
                reason,
                crate::conn::close_detail(reason, &reader.timeouts()),
            );
        }
    };
    drop(reader); // its budget goes back before the answers are awaited
    drop(tx);
    crate::conn::with_writer_result(reason, detail, writer.await)
}

/// Starts one request: appends and hand-offs to other shards happen here,
/// before the next request is read (order), as on the native listener.
async fn start(
    router: &Rc<Router>,
    ctx: &Rc<KafkaContext>,
    d: Decoded,
    peer: Option<std::net::SocketAddr>,
) -> Pending {
    let Decoded {
        api,
        version,
        correlation_id,
        work,
    } = d;
    let encoded = move |r: Result<Bytes, anyhow::Error>| match r {
        Ok(b) => Some(b),
        Err(e) => {
            // Our own response failed to encode: a bug, not the client's.
            tracing::error!("kafka: cannot encode {api:?} v{version} response: {e}");
            None
        }
    };
    match work {
        Work::ApiVersions { error } => {
            let r = codec::encode_frame(
                api,
                version,
                correlation_id,
                &codec::api_versions_response(error),
            );
            rt::spawn(async move { encoded(r) })
        }
        Work::InitProducerId { transactional_id } => {
            let result = match transactional_id {
                Some(t) => {
                    tracing::warn!(
                        "kafka: InitProducerId for transactional id {t:?} refused: \
                         shardlog does not support transactions (idempotence only)"
                    );
                    Err(codec::TRANSACTIONS_UNSUPPORTED.code())
                }
                None => Ok(ctx.producer_ids.borrow_mut().next(rt::now_ms())),
            };
            let r = codec::encode_frame(
                api,
                version,
                correlation_id,
                &codec::init_producer_id_response(result),
            );
            rt::spawn(async move { encoded(r) })
        }
        Work::FindCoordinator { keys, key_type } => {
            let r = codec::encode_frame(
                api,
                version,
                correlation_id,
                &groups::find_coordinator_response(version, &keys, key_type, |group| {
                    let shard = router.coordinator_of(group);
                    // One advertised broker (per-shard ports off): that one.
                    ctx.nodes
                        .iter()
                        .find(|n| n.shard == shard)
                        .unwrap_or(&ctx.nodes[0])
                        .clone()
                }),
            );
            rt::spawn(async move { encoded(r) })
        }
        Work::Refuse { shape, error } => {
            let r = codec::refuse_response(api, version, correlation_id, &shape, error);
            rt::spawn(async move { encoded(r) })
        }
        Work::Native {
            mut frame,
            shape,
            respond,
            refused,
            describe_configs,
        } => {
            if let Request::Classic(ClassicCall::Join(j)) = &mut frame.request {
                // Kafka shows members' hosts as "/ip".
                j.client_host = peer.map_or_else(String::new, |p| format!("/{}", p.ip()));
            }
            if matches!(frame.request, crate::protocol::Request::Produce(_)) {
                // Backpressure, as on the native listener.
                router.shard().memory().wait_below().await;
            }
            let m = router.shard().metrics().clone();
            let metric = Api::of(&frame.request);
            let started = m.request_started(metric);
            let answer = if ctx.shard_node && matches!(frame.request, Request::ListGroups) {
                router.shard().dispatch(*frame)
            } else {
                router.admit(*frame).await
            };
            let ctx = ctx.clone();
            rt::spawn(async move {
                let r = answer.await;
                m.request_done(metric, started, &r);
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
                ))
            })
        }
    }
}
