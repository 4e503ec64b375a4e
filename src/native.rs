//! The native listener's door: its framing (`u32` LE length), its
//! flatbuffers requests, and its answers, for the shared connection loop
//! (`conn::serve`).
//!
//! Owns: turning framing and decoding failures into the native protocol's
//! error answers (a frame over the limit: MessageTooLarge, then close; a
//! request that decodes badly but has a correlation id: InvalidRequest,
//! connection kept; no envelope at all: InvalidRequest with id 0, close).
//!
//! SASL (`--native-sasl-enabled-mechanisms`): the door runs the login
//! itself (SaslAuthenticate steps against the shard's copy of the users,
//! the Kafka door's `Authenticator`); until it succeeds only ApiVersions
//! and SaslAuthenticate are served, anything else is answered
//! IllegalSaslState and the connection closed, as is a failed step
//! (SaslAuthenticationFailed: one answer for an unknown user and a wrong
//! password).
//!
//! Must never: interpret a request (the router and shards do) or let one
//! connection's bad input affect another.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::chain::Chain;
use crate::conn::{Answer, CloseReason, Door, Step};
use crate::kafka::authz::{self, Access, Verdict};
use crate::kafka::throttle::{self, Charge, Throttle};
use crate::protocol::codec::{decode_request, encode_response, encode_response_for, BadRequest};
use crate::protocol::frame::{self, FrameError};
use crate::protocol::{ErrorCode, Request, RequestFrame, Response, ResponseFrame, WireError};
use crate::router::{Router, Scope};
use crate::rt;
use crate::security::quota::{CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE};
use crate::security::sasl::{Authenticator, SaslError, SaslMechanism, Step as SaslStep};

/// One native connection's door.
pub struct NativeDoor {
    pub router: Rc<Router>,
    /// The login, when the listener requires SASL.
    auth: Option<RefCell<Authenticator>>,
    /// The super users, when the authorizer checks this listener
    /// (`--authorizer acl` and the listener authenticates: SASL or mTLS).
    pub authorizer: Option<Rc<Vec<String>>>,
    /// The client certificate's principal (mTLS).
    pub tls_principal: Option<String>,
    pub peer: Option<std::net::SocketAddr>,
    /// The shard's client-quota sensors, shared with its Kafka listeners:
    /// a user's quota holds across both doors.
    throttle: Rc<Throttle>,
    /// Until when (monotonic ms) the connection reads no request: a client
    /// quota's throttle. The native answers carry no throttle time; the
    /// client simply waits.
    muted_until: Rc<Cell<u64>>,
}

/// An error answer to `correlation_id`.
pub fn error_frame(correlation_id: u32, code: ErrorCode, message: String) -> ResponseFrame {
    ResponseFrame {
        correlation_id,
        result: Err(WireError::new(code, message)),
    }
}

impl NativeDoor {
    /// A door for one connection; `sasl`: the mechanisms the listener
    /// requires (empty: no login).
    pub fn new(router: Rc<Router>, sasl: &[SaslMechanism], throttle: Rc<Throttle>) -> NativeDoor {
        NativeDoor {
            router,
            auth: (!sasl.is_empty()).then(|| RefCell::new(Authenticator::new(sasl.to_vec()))),
            authorizer: None,
            tls_principal: None,
            peer: None,
            throttle,
            muted_until: Rc::default(),
        }
    }

    /// Who this connection is: the SASL user, else the certificate's
    /// subject, else anonymous (as the Kafka door).
    fn principal(&self) -> String {
        let sasl = self
            .auth
            .as_ref()
            .and_then(|a| a.borrow().principal().map(str::to_owned));
        sasl.or_else(|| self.tls_principal.clone())
            .unwrap_or_else(|| authz::ANONYMOUS.to_owned())
    }

    /// The client quotas this request counts against, if any quota is set
    /// (as on the Kafka door: the principal's user and the request's
    /// client id). A Produce's bytes are recorded now.
    fn charge(&self, req: &RequestFrame, frame_len: usize) -> Option<Charge> {
        let quotas = self.router.shard().quotas();
        if quotas.is_empty() {
            return None;
        }
        let client_id = req.client_id.clone().unwrap_or_default();
        let client = throttle::Client::of(&self.principal(), client_id);
        let moves_bytes = matches!(req.request, Request::Produce(_) | Request::Fetch(_));
        let mut c = Charge::new(
            &self.throttle,
            quotas,
            client,
            &self.muted_until,
            moves_bytes,
        )?;
        if matches!(req.request, Request::Produce(_)) {
            c.record(PRODUCER_BYTE_RATE, frame_len as u64, rt::monotonic_ms());
        }
        Some(c)
    }

    /// Who this connection is to the authorizer, if it checks this
    /// listener.
    fn access(&self) -> Option<Access> {
        let super_users = self.authorizer.clone()?;
        let acls = self.router.shard().acls();
        Some(Access::new(acls, super_users, self.principal(), self.peer))
    }

    /// Whether the listener requires a login this connection has not made.
    fn must_log_in(&self) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| a.borrow().principal().is_none())
    }

    /// One SASL step: the first names the mechanism. A failure is
    /// answered, then the connection closes (the client starts over).
    fn sasl_step(
        &self,
        correlation_id: u32,
        version: u16,
        mechanism: Option<&str>,
        token: &[u8],
    ) -> Step {
        let Some(auth) = &self.auth else {
            return self.refuse(
                correlation_id,
                SaslError::IllegalState("SASL is not enabled on this listener"),
                "SaslAuthenticate on a listener without SASL".into(),
            );
        };
        if let Some(m) = mechanism {
            if let Err(e) = auth.borrow_mut().handshake(m) {
                let detail = format!("SASL handshake for {m:?}: {e}");
                return self.refuse(correlation_id, e, detail);
            }
        }
        let users = self.router.shard().users();
        let step =
            auth.borrow_mut()
                .authenticate(token, &|user, m| users.credential(user, m), &mut |b| {
                    getrandom::getrandom(b).expect("the OS's random source")
                });
        let (token, done) = match step {
            Ok(SaslStep::Continue(bytes)) => (bytes, false),
            Ok(SaslStep::Done { principal, reply }) => {
                tracing::debug!(principal, "authenticated on the native listener");
                (reply, true)
            }
            Err(e) => {
                let user = auth.borrow().attempted_user().unwrap_or("?").to_owned();
                let detail = format!("SASL authentication as {user:?} failed: {e}");
                return self.refuse(correlation_id, e, detail);
            }
        };
        let r = ResponseFrame {
            correlation_id,
            result: Ok(Response::SaslAuthenticate {
                token: Bytes::from(token),
                done,
            }),
        };
        Step::Answer(Answer::Ready(Some(encode_response_for(&r, version))))
    }

    /// Answers a SASL failure and closes.
    fn refuse(&self, correlation_id: u32, e: SaslError, detail: String) -> Step {
        let w = crate::errors::ToWire::to_wire(&e);
        Step::Close {
            last: Some(self.error_answer(correlation_id, w.code, w.message)),
            reason: CloseReason::AuthFailed,
            detail,
        }
    }

    /// An error answer that needs no work, counted like any other.
    fn error_answer(&self, correlation_id: u32, code: ErrorCode, message: String) -> Chain {
        let r = error_frame(correlation_id, code, message);
        self.router.shard().metrics().count_errors(&r);
        Chain::from(encode_response(&r))
    }
}

/// Records what a Fetch answer returns and the request's time, once the
/// answer is ready (the throttle mutes the connection).
fn settle(charge: Option<Charge>, r: &ResponseFrame) {
    let Some(mut c) = charge else { return };
    let now = rt::monotonic_ms();
    if let Ok(Response::Fetch(topics)) = &r.result {
        let bytes: usize = topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.records.len())
            .sum();
        c.record(CONSUMER_BYTE_RATE, bytes as u64, now);
    }
    c.record_time(now);
}

impl Door for NativeDoor {
    fn pause(&self) -> Option<std::time::Duration> {
        let until = self.muted_until.get();
        let now = rt::monotonic_ms();
        (until > now).then(|| std::time::Duration::from_millis(until - now))
    }

    fn frame_len(buf: &[u8]) -> Option<usize> {
        frame::frame_len(buf)
    }

    fn next_frame(
        &self,
        buf: &mut BytesMut,
        max_frame_bytes: usize,
    ) -> Result<Option<Bytes>, Step> {
        frame::next_frame(buf, max_frame_bytes).map_err(|e| {
            let (code, reason) = match e {
                FrameError::TooLarge { .. } => {
                    (ErrorCode::MessageTooLarge, CloseReason::FrameTooLarge)
                }
                FrameError::Empty => (ErrorCode::InvalidRequest, CloseReason::BadRequest),
            };
            Step::Close {
                last: Some(self.error_answer(0, code, format!("{e}; closing connection"))),
                reason,
                detail: e.to_string(),
            }
        })
    }

    async fn start(&self, frame: Bytes) -> Step {
        let frame_len = frame.len();
        match decode_request(&frame) {
            Ok(req) => {
                if let Request::SaslAuthenticate { mechanism, token } = &req.request {
                    return self.sasl_step(
                        req.correlation_id,
                        req.version,
                        mechanism.as_deref(),
                        token,
                    );
                }
                if self.must_log_in() && !matches!(req.request, Request::ApiVersions) {
                    return Step::Close {
                        last: Some(self.error_answer(
                            req.correlation_id,
                            ErrorCode::IllegalSaslState,
                            "this listener requires a SASL login first (SaslAuthenticate)".into(),
                        )),
                        reason: CloseReason::Unauthenticated,
                        detail: "a request before the SASL login on a listener that requires it"
                            .into(),
                    };
                }
                // The answer's layout is the request's version's.
                let version = req.version;
                let charge = self.charge(&req, frame_len);
                let meter = charge.as_ref().and_then(|c| c.meter.clone());
                let Some(access) = self.access() else {
                    let begun = self.router.begin(req, Scope::Broker);
                    let answer = match &meter {
                        Some(m) => rt::timed(m, begun).await,
                        None => begun.await,
                    };
                    return Step::Answer(Answer::Later(rt::spawn_metered(
                        meter.as_ref(),
                        async move {
                            let r = answer.await;
                            settle(charge, &r);
                            Some(encode_response_for(&r, version))
                        },
                    )));
                };
                let mut req = req;
                let api = crate::metrics::Api::of(&req.request);
                let note = |v: &Verdict, a: &Access| {
                    let what = || format!("native {api:?}");
                    crate::kafka::note_denials(&self.router, self.peer, what, v, a)
                };
                let verdict = match authz::check_native(&mut req.request, &access) {
                    Ok(v) => v,
                    Err((w, v)) => {
                        note(&v, &access);
                        return Step::Answer(Answer::Ready(Some(self.error_answer(
                            req.correlation_id,
                            w.code,
                            w.message,
                        ))));
                    }
                };
                note(&verdict, &access);
                if let Some(empty) = authz::emptied(&req.request, &verdict) {
                    // Every topic was denied: nothing for the router.
                    let mut result = Ok(empty);
                    authz::answer(&mut result, &verdict, &access);
                    let r = ResponseFrame {
                        correlation_id: req.correlation_id,
                        result,
                    };
                    return Step::Answer(Answer::Ready(Some(encode_response_for(&r, version))));
                }
                let begun = self.router.begin(req, Scope::Broker);
                let answer = match &meter {
                    Some(m) => rt::timed(m, begun).await,
                    None => begun.await,
                };
                Step::Answer(Answer::Later(rt::spawn_metered(
                    meter.as_ref(),
                    async move {
                        let mut r = answer.await;
                        authz::answer(&mut r.result, &verdict, &access);
                        settle(charge, &r);
                        Some(encode_response_for(&r, version))
                    },
                )))
            }
            Err(BadRequest {
                correlation_id: Some(c),
                error,
            }) => Step::Answer(Answer::Ready(Some(self.error_answer(
                c,
                ErrorCode::InvalidRequest,
                format!("bad request: {error}"),
            )))),
            Err(BadRequest {
                correlation_id: None,
                error,
            }) => Step::Close {
                // Not even the envelope decodes: nothing to correlate an
                // answer with, so answer with id 0 and hang up.
                last: Some(self.error_answer(
                    0,
                    ErrorCode::InvalidRequest,
                    format!("bad frame: {error}"),
                )),
                reason: CloseReason::BadRequest,
                detail: format!("bad frame: {error}"),
            },
        }
    }
}
