//! The native listener's door: its framing (`u32` LE length), its
//! flatbuffers requests, and its answers, for the shared connection loop
//! (`conn::serve`).
//!
//! Owns: turning framing and decoding failures into the native protocol's
//! error answers (a frame over the limit: MessageTooLarge, then close; a
//! request that decodes badly but has a correlation id: InvalidRequest,
//! connection kept; no envelope at all: InvalidRequest with id 0, close).
//!
//! Must never: interpret a request (the router and shards do) or let one
//! connection's bad input affect another.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::chain::Chain;
use crate::conn::{Answer, CloseReason, Door, Step};
use crate::protocol::codec::{decode_request, encode_response, encode_response_for, BadRequest};
use crate::protocol::frame::{self, FrameError};
use crate::protocol::{ErrorCode, ResponseFrame, WireError};
use crate::router::{Router, Scope};
use crate::rt;

/// One native connection's door.
pub struct NativeDoor {
    pub router: Rc<Router>,
}

/// An error answer to `correlation_id`.
pub fn error_frame(correlation_id: u32, code: ErrorCode, message: String) -> ResponseFrame {
    ResponseFrame {
        correlation_id,
        result: Err(WireError::new(code, message)),
    }
}

impl NativeDoor {
    /// An error answer that needs no work, counted like any other.
    fn error_answer(&self, correlation_id: u32, code: ErrorCode, message: String) -> Chain {
        let r = error_frame(correlation_id, code, message);
        self.router.shard().metrics().count_errors(&r);
        Chain::from(encode_response(&r))
    }
}

impl Door for NativeDoor {
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
        match decode_request(&frame) {
            Ok(req) => {
                // The answer's layout is the request's version's.
                let version = req.version;
                let answer = self.router.begin(req, Scope::Broker).await;
                Step::Answer(Answer::Later(rt::spawn(async move {
                    Some(encode_response_for(&answer.await, version))
                })))
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
