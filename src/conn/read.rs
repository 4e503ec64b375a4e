//! Reading one client connection: request bytes into a buffer that
//! grows with what arrives, inside the shard's budget for requests being
//! read, with the idle and stall timeouts and the broker's stop.
//!
//! Owns: `ReadBudget` (per shard, Kafka's `queued.max.request.bytes`),
//! `FrameReader` (one connection's read buffer and its deadlines),
//! `StopSignal`, `Activity`.
//!
//! Must never: decode a frame (the codecs do), allocate for a frame before
//! its bytes arrive, or wait without a bound: every wait (for bytes, for
//! the budget) ends at a deadline or at the broker's stop.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::AsyncReadExt;

use crate::metrics::ShardMetrics;
use crate::rt;

use super::close::CloseReason;

/// Bytes each connection may buffer outside the shard's budget: enough
/// for the small requests (metadata, fetch, heartbeats, commits) that
/// must keep flowing while large frames wait for the budget.
pub const FREE_READ_BYTES: usize = 16 * 1024;

/// Smallest read: several small pipelined requests fit in one read.
const MIN_READ_BYTES: usize = 16 * 1024;

/// Largest single read.
const MAX_READ_BYTES: usize = 1 << 20;

/// Each read may at most quadruple what a frame's buffer holds: it grows
/// with the bytes that arrived, not with the length prefix, and the copies
/// when it grows cost at most a third of a pass over the frame.
const GROWTH_FACTOR: usize = 4;

/// Most a read that had to wait takes (its window is zeroed first).
const WAIT_READ_BYTES: usize = 64 * 1024;

/// The shard's budget for bytes of requests being read (Kafka's
/// `queued.max.request.bytes`, per shard here). A connection draws on it
/// as its buffer grows past `FREE_READ_BYTES` (with the bytes that arrive,
/// never with a length prefix) and gives it back as frames are handed on.
/// While it is used up, connections that need more stop reading (TCP
/// pushes back on their clients).
///
/// Progress: readers of large frames could each hold part of the budget
/// and wait for more, none finishing. So one reader at a time, the
/// "finisher", may go past the limit to finish its frame: the bound is the
/// budget plus one frame (`max_frame_bytes`). A reader that waits for the
/// budget longer than the read timeout is closed like a stalled one.
pub struct ReadBudget {
    used: Cell<usize>,
    limit: usize,
    finisher_taken: Cell<bool>,
    freed: Rc<rt::Event>,
    metrics: Arc<ShardMetrics>,
}

impl ReadBudget {
    pub fn new(limit: usize, metrics: Arc<ShardMetrics>) -> Rc<ReadBudget> {
        metrics.read_budget_limit_bytes.set(limit as u64);
        Rc::new(ReadBudget {
            used: Cell::new(0),
            limit,
            finisher_taken: Cell::new(false),
            freed: Rc::default(),
            metrics,
        })
    }

    fn set_used(&self, used: usize) {
        self.used.set(used);
        self.metrics.read_budget_bytes.set(used as u64);
    }

    #[cfg(test)]
    pub fn used(&self) -> usize {
        self.used.get()
    }

    /// Takes `n` bytes if they fit now, or past the limit for the finisher
    /// (`finisher` says whether the caller is it, and becomes true when the
    /// caller takes the free finisher's place).
    fn try_take(&self, n: usize, finisher: &mut bool) -> bool {
        let used = self.used.get();
        if used + n > self.limit && !*finisher {
            if self.finisher_taken.get() {
                return false;
            }
            self.finisher_taken.set(true);
            *finisher = true;
        }
        self.set_used(used + n);
        true
    }

    /// Waits until `n` bytes can be taken, then takes them. Gives up when
    /// `stop` is notified (`Stopping`) or after `limit` (`ReadTimeout`).
    async fn take(
        &self,
        n: usize,
        finisher: &mut bool,
        stop: &Rc<rt::Event>,
        limit: Duration,
    ) -> Result<(), CloseReason> {
        if self.try_take(n, finisher) {
            return Ok(());
        }
        self.metrics.read_budget_waits.add(1);
        let deadline = Instant::now() + limit;
        loop {
            let stop_seen = stop.generation();
            let freed = rt::any_notified(vec![self.freed.clone(), stop.clone()]);
            if self.try_take(n, finisher) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CloseReason::ReadTimeout);
            }
            rt::timeout(left, freed).await;
            if stop.generation() != stop_seen {
                return Err(CloseReason::Stopping);
            }
        }
    }

    /// Gives `n` bytes back; `finisher` is the caller's flag, cleared (and
    /// the place freed) once it holds nothing.
    fn give_back(&self, n: usize, left: usize, finisher: &mut bool) {
        let used = self.used.get();
        assert!(n <= used, "read budget: giving back {n} of {used} bytes");
        self.set_used(used - n);
        if *finisher && left == 0 {
            *finisher = false;
            self.finisher_taken.set(false);
        }
        if n > 0 || !*finisher {
            self.freed.notify_all();
        }
    }
}

/// The broker's stop, told to every connection of a shard. Each
/// connection waits on an event of its own, dropped with it: a shared
/// event would keep a waker (and with it the task's memory) of every
/// connection that ever waited on it until the stop.
#[derive(Default)]
pub struct StopSignal {
    stopped: Cell<bool>,
    next_id: Cell<u64>,
    events: RefCell<std::collections::HashMap<u64, Rc<rt::Event>>>,
}

impl StopSignal {
    /// A connection's own stop event (already notified after the stop).
    pub fn subscribe(self: &Rc<Self>) -> StopSubscription {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let event = Rc::new(rt::Event::default());
        if self.stopped.get() {
            event.notify_all();
        }
        self.events.borrow_mut().insert(id, event.clone());
        StopSubscription {
            id,
            event,
            signal: self.clone(),
        }
    }

    pub fn stop(&self) {
        self.stopped.set(true);
        for e in self.events.borrow().values() {
            e.notify_all();
        }
    }

    /// Connections subscribed now.
    #[cfg(test)]
    pub fn subscribers(&self) -> usize {
        self.events.borrow().len()
    }
}

/// One connection's view of the stop; unsubscribes when dropped.
pub struct StopSubscription {
    id: u64,
    pub event: Rc<rt::Event>,
    signal: Rc<StopSignal>,
}

impl Drop for StopSubscription {
    fn drop(&mut self) {
        self.signal.events.borrow_mut().remove(&self.id);
    }
}

/// A connection's deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Kafka's `connections.max.idle.ms`: closed after this long with no
    /// request read and nothing in flight.
    pub idle: Duration,
    /// A frame that has started must keep arriving: closed when no byte
    /// comes for this long.
    pub read: Duration,
}

/// What the reader knows of the writer's side: requests in flight and the
/// last time a response went out (a connection waiting for its answers is
/// not idle).
#[derive(Debug)]
pub struct Activity {
    pub inflight: Cell<usize>,
    pub last: Cell<Instant>,
}

impl Activity {
    pub fn new() -> Rc<Activity> {
        Rc::new(Activity {
            inflight: Cell::new(0),
            last: Cell::new(Instant::now()),
        })
    }

    pub fn started(&self) {
        self.inflight.set(self.inflight.get() + 1);
    }

    pub fn answered(&self) {
        let n = self.inflight.get();
        debug_assert!(n > 0, "answered more requests than started");
        self.inflight.set(n.saturating_sub(1));
        self.last.set(Instant::now());
    }
}

/// Reads frames of one connection: the buffer, what it holds of the
/// shard's budget, and the deadlines.
pub struct FrameReader {
    buf: BytesMut,
    /// Bytes of the budget this connection holds.
    held: usize,
    /// This connection holds the budget's finisher place.
    finisher: bool,
    budget: Rc<ReadBudget>,
    /// The whole size (prefix included) of the frame at the front of
    /// `buf`, once its prefix has arrived; `None` before, or when the
    /// prefix is invalid (the codec's framing refuses it).
    frame_len: fn(&[u8]) -> Option<usize>,
    max_frame_bytes: usize,
    timeouts: Timeouts,
    /// The largest frame this connection sent whole: its buffer for a
    /// frame up to this size is allocated at once.
    proven: usize,
}

impl FrameReader {
    pub fn new(
        budget: Rc<ReadBudget>,
        frame_len: fn(&[u8]) -> Option<usize>,
        max_frame_bytes: usize,
        timeouts: Timeouts,
    ) -> FrameReader {
        FrameReader {
            buf: BytesMut::new(),
            held: 0,
            finisher: false,
            budget,
            frame_len,
            max_frame_bytes,
            timeouts,
            proven: 0,
        }
    }

    /// The bytes read and not yet taken as frames; the codec's framing
    /// splits whole frames off the front.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The frame at the front's whole size, if its prefix is in.
    fn front_frame(&self) -> Option<usize> {
        (self.frame_len)(&self.buf).map(|n| n.min(self.max_frame_bytes + 4))
    }

    /// Budget a buffer of `capacity` bytes needs, beyond the allowance.
    fn needed(capacity: usize) -> usize {
        capacity.saturating_sub(FREE_READ_BYTES)
    }

    fn release_to(&mut self, need: usize) {
        if need < self.held {
            self.budget
                .give_back(self.held - need, need, &mut self.finisher);
            self.held = need;
        }
    }

    /// Gives back what the frames taken off the front no longer need;
    /// call after taking frames. An emptied buffer that grew past the
    /// allowance is dropped (its frames keep their own bytes alive).
    pub fn settle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > FREE_READ_BYTES {
            self.buf = BytesMut::new();
        }
        self.release_to(Self::needed(self.buf.capacity()));
    }

    /// Reads once more into the buffer: `Ok(n)` with `n > 0` bytes added,
    /// or why the connection ends. Waits for the budget first when the
    /// frame being read needs more than this connection holds.
    pub async fn fill<R: futures_lite::AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        fd: Option<std::os::fd::RawFd>,
        stop: &Rc<rt::Event>,
        activity: &Activity,
    ) -> Result<usize, CloseReason> {
        if stop.generation() > 0 {
            // The stop event fires once: a reader started after it stops too.
            return Err(CloseReason::Stopping);
        }
        let len = self.buf.len();
        let front = self.front_frame();
        // What the frame at the front still lacks (a small read's worth
        // when its prefix is not in yet), growing the buffer at most
        // GROWTH_FACTOR-fold per read; any room already allocated is used
        // too (several small requests per read).
        let want = match front {
            Some(total) if total > len => total - len,
            _ => MIN_READ_BYTES,
        };
        let grown = want
            .min(MAX_READ_BYTES)
            .min(len.max(MIN_READ_BYTES) * (GROWTH_FACTOR - 1));
        let spare = self.buf.capacity() - len;
        let mut room = grown.max(spare.min(MAX_READ_BYTES));
        // A frame no larger than one this connection already sent whole
        // gets its whole buffer at once: growing step by step copies what
        // arrived so far at every step (a third of every 100 KiB produce).
        // A length prefix alone still earns no more than GROWTH_FACTOR.
        let whole = match front {
            Some(total) if total > len && total <= self.proven => (total - len).max(room),
            _ => room,
        };
        let need = Self::needed(self.buf.capacity().max(len + whole));
        if need > self.held {
            // Waiting for the budget is a stall like a silent client's:
            // bounded by the read timeout.
            self.budget
                .take(
                    need - self.held,
                    &mut self.finisher,
                    stop,
                    self.timeouts.read,
                )
                .await?;
            self.held = need;
        }
        if self.buf.capacity() < len + whole {
            // Grow to exactly what was budgeted; the bytes move once.
            let mut grown = BytesMut::with_capacity(len + whole);
            grown.extend_from_slice(&self.buf);
            self.buf = grown;
            room = room.max(whole.min(MAX_READ_BYTES));
        }
        // Bytes already waiting go straight into the spare capacity: no
        // zeroing of the buffer first (it cost more than the copy out of
        // the socket), no trip through the ring.
        if let Some(fd) = fd {
            match rt::recv_now(fd, &mut self.buf.spare_capacity_mut()[..room]) {
                Ok(Some(0)) => return Err(CloseReason::ClientClosed),
                Ok(Some(n)) => {
                    // SAFETY: recv initialized the n bytes after len.
                    unsafe { self.buf.set_len(len + n) };
                    self.prove(front, len + n);
                    return Ok(n);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!("read failed: {e}");
                    return Err(CloseReason::IoError);
                }
            }
        }
        // Nothing there (or no socket of our own: TLS): read through the
        // stream, into a zeroed window that stays small (zeroing is per
        // read here, not per byte: a TLS stream hands over a few records
        // per read, so a large window would be zeroed over and over).
        let room = room.min(WAIT_READ_BYTES);
        self.buf.resize(len + room, 0);
        let r = self.read_within_deadline(rd, stop, activity, len).await;
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n);
        self.prove(front, len + n);
        r
    }

    /// A frame of `front` bytes fully arrived (the buffer holds `held`):
    /// frames up to its size get their whole buffer at once from now on.
    fn prove(&mut self, front: Option<usize>, held: usize) {
        if let Some(total) = front.filter(|&t| t <= held) {
            self.proven = self.proven.max(total);
        }
    }

    async fn read_within_deadline<R: futures_lite::AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        stop: &Rc<rt::Event>,
        activity: &Activity,
        len: usize,
    ) -> Result<usize, CloseReason> {
        // Created before the first await: a stop notified from here on
        // wakes the read.
        let stopped = rt::any_notified(vec![stop.clone()]);
        futures_lite::pin!(stopped);
        let mut waited = Duration::ZERO;
        loop {
            let (limit, reason) = if len > 0 {
                (self.timeouts.read, CloseReason::ReadTimeout)
            } else {
                (self.timeouts.idle, CloseReason::Idle)
            };
            let wait = limit.saturating_sub(waited).max(Duration::from_millis(1));
            let started = Instant::now();
            let buf = &mut self.buf[len..];
            let outcome = futures_lite::future::or(
                async { Some(Some(rd.read(buf).await)) },
                futures_lite::future::or(
                    async {
                        (&mut stopped).await;
                        Some(None)
                    },
                    async {
                        rt::sleep(wait).await;
                        None
                    },
                ),
            )
            .await;
            match outcome {
                Some(Some(Ok(0))) => return Err(CloseReason::ClientClosed),
                Some(Some(Ok(n))) => return Ok(n),
                Some(Some(Err(e))) => {
                    tracing::debug!("read failed: {e}");
                    return Err(CloseReason::IoError);
                }
                Some(None) => return Err(CloseReason::Stopping),
                None => {
                    waited += started.elapsed();
                    if reason == CloseReason::Idle {
                        // Not idle while answers are owed or just went out.
                        let quiet = activity.last.get().elapsed();
                        if activity.inflight.get() > 0 || quiet < self.timeouts.idle {
                            waited = if activity.inflight.get() > 0 {
                                Duration::ZERO
                            } else {
                                quiet
                            };
                            continue;
                        }
                    }
                    if waited >= limit {
                        return Err(reason);
                    }
                }
            }
        }
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.release_to(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the buffers `fill` allocates while reading the frame at the
    /// front until it is whole, then takes it off.
    async fn read_one(
        r: &mut FrameReader,
        rd: &mut futures_lite::io::Cursor<Vec<u8>>,
        stop: &Rc<rt::Event>,
        activity: &Activity,
    ) -> usize {
        let mut buffers = 0;
        let mut at = r.buf().as_ptr();
        loop {
            if let Ok(Some(_)) = crate::protocol::frame::next_frame(r.buf(), 1 << 20) {
                r.settle();
                return buffers;
            }
            r.fill(rd, None, stop, activity).await.unwrap();
            if r.buf().as_ptr() != at {
                buffers += 1;
                at = r.buf().as_ptr();
            }
        }
    }

    #[test]
    fn a_frame_no_larger_than_one_already_sent_whole_gets_its_buffer_at_once() {
        rt::testkit::run(Duration::from_secs(30), || async {
            let frame = |n: usize| {
                let mut v = (n as u32).to_le_bytes().to_vec();
                v.extend(std::iter::repeat_n(7u8, n));
                v
            };
            let mut data = frame(100_000);
            data.extend(frame(100_000));
            data.extend(frame(300_000));
            let mut rd = futures_lite::io::Cursor::new(data);
            let timeouts = Timeouts {
                idle: Duration::from_secs(10),
                read: Duration::from_secs(10),
            };
            let budget = ReadBudget::new(1 << 30, ShardMetrics::detached());
            let mut r =
                FrameReader::new(budget, crate::protocol::frame::frame_len, 1 << 20, timeouts);
            let (stop, activity) = (Rc::new(rt::Event::default()), Activity::new());
            // The first frame: its prefix earns GROWTH_FACTOR per read.
            assert!(read_one(&mut r, &mut rd, &stop, &activity).await > 2);
            // The same size again: its first read (which learns the size),
            // then one buffer for the rest: no step-by-step growth.
            assert!(read_one(&mut r, &mut rd, &stop, &activity).await <= 2);
            // Larger than any before: step by step again.
            assert!(read_one(&mut r, &mut rd, &stop, &activity).await > 1);
        });
    }
    #[test]
    fn past_its_limit_the_budget_lets_one_finisher_through_and_frees_its_place_when_it_is_done() {
        let b = ReadBudget::new(100, ShardMetrics::detached());
        let (mut one, mut two, mut three) = (false, false, false);
        assert!(b.try_take(60, &mut one));
        assert!(b.try_take(30, &mut two));
        assert!(!one && !two, "within the limit nobody is the finisher");
        assert!(
            b.try_take(50, &mut one),
            "the first past the limit finishes"
        );
        assert!(one);
        assert!(!b.try_take(50, &mut three), "one finisher at a time");
        assert!(b.try_take(500, &mut one), "the finisher may grow");
        b.give_back(610, 0, &mut one);
        assert!(!one, "a finisher that holds nothing gives its place up");
        assert!(b.try_take(50, &mut three));
        assert!(!three, "it fits under the limit again");
        b.give_back(50, 0, &mut three);
        b.give_back(30, 0, &mut two);
        assert_eq!(b.used(), 0);
    }
    #[test]
    fn a_stop_reaches_every_subscriber_and_ended_connections_leave_nothing_behind() {
        let signal = Rc::new(StopSignal::default());
        let a = signal.subscribe();
        let b = signal.subscribe();
        drop(b);
        assert_eq!(signal.subscribers(), 1);
        signal.stop();
        assert_eq!(a.event.generation(), 1);
        let late = signal.subscribe();
        assert_eq!(
            late.event.generation(),
            1,
            "a connection after the stop sees it"
        );
        drop((a, late));
        assert_eq!(signal.subscribers(), 0);
    }
}
