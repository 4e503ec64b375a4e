//! One client connection, whichever front door it came in by: the loop
//! that reads frames, starts each request in arrival order, and writes the
//! answers in that same order while later requests are read.
//!
//! Owns: the connection loop (`serve`), generic over a `Door` (framing,
//! decoding, and what a request becomes: the native and Kafka listeners
//! each implement one); the ordered writer and its in-flight bound;
//! reading within the shard's budget and deadlines (`read`); why a
//! connection closed (`close`).
//!
//! Must never: decode a request or know a protocol (the doors do), reorder
//! answers, or leave a connection's task waiting without a bound (reads end
//! at a deadline or the stop; a closed socket ends the writer).

mod close;
mod read;

use std::future::Future;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncWriteExt;

pub use close::{log_close, CloseReason, Listener, Verdict as WarnVerdict, WarnLimit};
pub use read::{Activity, FrameReader, ReadBudget, StopSignal, Timeouts};

use crate::chain::Chain;
use crate::rt;

/// A request's answer, in the connection's order: a response frame in
/// fragments (a fetch's batches are the log's own `Bytes`), written with
/// vectored sends, never joined.
pub enum Answer {
    /// Bytes to write as soon as every earlier answer is out; `None`: the
    /// request gets no answer (a Kafka produce with acks=0).
    Ready(Option<Chain>),
    /// The same, once the task (the request at work) finishes.
    Later(rt::Task<Option<Chain>>),
}

/// What a front door made of one frame.
pub enum Step {
    Answer(Answer),
    /// The client can no longer be understood: the connection ends after
    /// the answers already queued and `last`, if any.
    Close {
        last: Option<Chain>,
        reason: CloseReason,
        detail: String,
    },
}

/// What differs between the front doors.
pub trait Door {
    /// How long to read no request before the next one (a client quota's
    /// throttle); None: go on.
    fn pause(&self) -> Option<std::time::Duration> {
        None
    }

    /// The whole size (prefix included) of the frame at the front of
    /// `buf`, once its prefix is in; `None` before, or when the prefix
    /// cannot be one (`next_frame` then says so).
    fn frame_len(buf: &[u8]) -> Option<usize>;

    /// Takes the next whole frame's body off the front of `buf`
    /// (`Ok(None)`: not all of it is in yet), or says how the connection
    /// ends (a frame over `max_frame_bytes`, a prefix that cannot be one).
    fn next_frame(&self, buf: &mut BytesMut, max_frame_bytes: usize)
        -> Result<Option<Bytes>, Step>;

    /// Decodes one frame and starts its request. Appends and hand-offs to
    /// other shards happen before the returned future completes, and the
    /// loop reads nothing meanwhile: one connection's requests keep their
    /// order.
    fn start(&self, frame: Bytes) -> impl Future<Output = Step>;
}

/// The log line for a close the reader saw.
pub fn close_detail(reason: CloseReason, t: &Timeouts) -> String {
    match reason {
        CloseReason::Idle => format!("idle for {:?} (connections.max.idle.ms)", t.idle),
        CloseReason::ReadTimeout => format!(
            "a request frame stalled for {:?} (request-read-timeout-ms)",
            t.read
        ),
        other => other.as_str().replace('_', " "),
    }
}

/// What bounds one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_frame_bytes: usize,
    /// Answers pending at once; past it the loop stops reading.
    pub max_inflight: usize,
    pub timeouts: Timeouts,
}

/// Serves one connection until the client hangs up, a frame cannot be
/// understood, a timeout closes it, or the broker stops (`stop`). Reads
/// frames, starts each request (so they overlap), and hands the answers,
/// in arrival order, to a writer that sends them in that order. Reads
/// within the shard's `budget` and `limits`. Returns why the connection
/// ended, with a line for the log.
pub async fn serve<D: Door>(
    door: &D,
    stream: rt::TcpStream,
    budget: Rc<ReadBudget>,
    limits: Limits,
    stop: &Rc<rt::Event>,
) -> (CloseReason, String) {
    if let Err(e) = stream.set_nodelay(true) {
        return (CloseReason::IoError, format!("cannot set TCP_NODELAY: {e}"));
    }
    // The writer sends vectored on the socket itself; the stream (held by
    // the halves until the writer ends) keeps the descriptor open.
    let fd = stream.as_raw_fd();
    serve_stream(door, stream, Some(fd), budget, limits, stop).await
}

/// The loop over any byte stream: `fd` is the plain socket's (answers go
/// out with vectored sends straight from their fragments, requests are
/// read straight from it), None for a TLS stream (every byte passes
/// through rustls: fragments are written one after another, then flushed).
pub async fn serve_stream<D, S>(
    door: &D,
    stream: S,
    fd: Option<std::os::fd::RawFd>,
    budget: Rc<ReadBudget>,
    limits: Limits,
    stop: &Rc<rt::Event>,
) -> (CloseReason, String)
where
    D: Door,
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin + 'static,
{
    let mut reader = FrameReader::new(
        budget,
        D::frame_len,
        limits.max_frame_bytes,
        limits.timeouts,
    );
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    let (tx, rx) = rt::channel::bounded::<Answer>(limits.max_inflight.max(1));
    let activity = Activity::new();
    let writer_activity = activity.clone();
    let writer = rt::spawn(async move {
        while let Some(answer) = rx.recv().await {
            let bytes = match answer {
                Answer::Ready(b) => b,
                Answer::Later(task) => task.await,
            };
            let written = match (bytes, fd) {
                (Some(b), Some(fd)) => rt::write_all_vectored(&mut wr, fd, b.fragments()).await,
                (Some(b), None) => write_fragments(&mut wr, b.fragments()).await,
                (None, _) => Ok(()),
            };
            writer_activity.answered();
            written?;
        }
        wr.flush().await?;
        wr.close().await
    });
    let (reason, detail) = 'conn: loop {
        loop {
            if let Some(d) = door.pause() {
                // Muted: no request is read meanwhile (the answers still
                // go out); the stop ends the wait, the next read sees it.
                let _ = rt::timeout(d, rt::any_notified(vec![stop.clone()])).await;
            }
            let step = match door.next_frame(reader.buf(), limits.max_frame_bytes) {
                Ok(None) => break,
                Ok(Some(frame)) => door.start(frame).await,
                Err(close) => close,
            };
            match step {
                Step::Answer(answer) => {
                    activity.started();
                    if tx.send(answer).await.is_err() {
                        // The writer is gone: the client went away.
                        break 'conn (CloseReason::IoError, "write failed".to_owned());
                    }
                }
                Step::Close {
                    last,
                    reason,
                    detail,
                } => {
                    if last.is_some() {
                        activity.started();
                        let _ = tx.send(Answer::Ready(last)).await;
                    }
                    break 'conn (reason, detail);
                }
            }
        }
        reader.settle();
        if let Err(reason) = reader.fill(&mut rd, fd, stop, &activity).await {
            // EOF, stop, a timeout or a failed read: requests already
            // started still get their answers.
            break (reason, close_detail(reason, &reader.timeouts()));
        }
    };
    drop(reader); // its budget goes back before the answers are awaited
    drop(tx);
    close::with_writer_result(reason, detail, writer.await)
}

/// An answer through a stream that is not a plain socket (TLS): each
/// fragment in turn, then flushed, so the answer leaves now rather than
/// with the next one.
async fn write_fragments<W: futures_lite::AsyncWrite + Unpin>(
    wr: &mut W,
    parts: &[Bytes],
) -> std::io::Result<()> {
    for p in parts {
        wr.write_all(p).await?;
    }
    wr.flush().await
}
