//! The load: producer and consumer threads, each with its own
//! `RoutedClient` (so every partition's requests go to its owner shard's
//! port), closed-loop with up to `--max-in-flight` produce requests
//! pipelined per producer.
//!
//! Owns: what a message holds (its first 8 bytes are the send time, u64
//! little-endian nanoseconds since the run's shared `Instant`, so consumers
//! in this process can compute end-to-end latency), when actors stop, and
//! what they count.
//!
//! Must never: allocate or take a lock per message on the hot paths; a batch
//! is built into one buffer from one reused value buffer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use shardlog::batch::{split_batches, BatchBuilder, Records};
use shardlog::client::{produce_request, RoutedClient, Ticket};
use shardlog::protocol::{FetchPartition, FetchRequest, FetchTopic, Request, Response};

use crate::args::{Params, Stop, STAMP_BYTES};
use crate::stats::{flush_interval, record, ActorResult, Live};

/// Bytes a consumer asks for per partition and fetch.
const FETCH_MAX_BYTES: u32 = 1 << 20;
/// Longest a fetch waits at the broker for new data (long polling): short
/// enough that consumers notice the end of a run promptly.
const FETCH_MAX_WAIT_MS: u32 = 100;
/// Per record framing the batch adds to a value (length, attributes,
/// deltas, key, headers), for sizing the batch buffer once.
const RECORD_OVERHEAD_BYTES: usize = 24;

/// What every actor shares: the parameters, the clock, the counters.
pub struct Shared<'a> {
    pub params: &'a Params,
    pub broker: &'a str,
    /// Time zero of the run; send stamps and windows are relative to it.
    pub t0: Instant,
    pub live: &'a Live,
    /// Messages left to produce (`--messages`), claimed a batch at a time.
    pub remaining: AtomicU64,
    /// Messages acknowledged per partition (consumers' targets).
    pub produced: Vec<AtomicU64>,
}

impl Shared<'_> {
    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_nanos() as u64
    }

    /// Claims up to `want` messages to produce; 0 when the run is over.
    fn claim(&self, want: u64, now: Instant) -> u64 {
        if self.live.aborted() {
            return 0;
        }
        match self.params.stop {
            Stop::After(d) => {
                if now.saturating_duration_since(self.t0) >= self.params.warmup + d {
                    0
                } else {
                    want
                }
            }
            Stop::Messages(_) => self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                    (r > 0).then(|| r - r.min(want))
                })
                .map_or(0, |r| r.min(want)),
        }
    }
}

struct InFlight {
    ticket: Ticket,
    sent: Instant,
    partition: u32,
    messages: u64,
}

/// One producer: round-robin over the partitions (starting at its own id, so
/// producers spread), one batch of `--batch-size` messages per request.
pub fn produce(id: usize, sh: &Shared) -> Result<ActorResult> {
    let p = sh.params;
    let mut rc = RoutedClient::connect(sh.broker)?;
    let partitions = rc.topic(&p.topic)?;
    if partitions != p.partitions {
        bail!(
            "topic {} has {partitions} partitions, not {}",
            p.topic,
            p.partitions
        );
    }
    let mut res = ActorResult::new(id);
    let mut recent = crate::stats::new_histogram();
    // The value of every message: filler, its first 8 bytes overwritten
    // with the send time per batch.
    let mut value = vec![b'x'; p.message_size];
    let batch_bytes = p.batch_size * (p.message_size + RECORD_OVERHEAD_BYTES) + 128;
    let warmup_ns = p.warmup.as_nanos() as u64;
    let mut next_partition = id as u32 % partitions;
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(p.max_in_flight);
    loop {
        // Fill the pipeline.
        while in_flight.len() < p.max_in_flight {
            let now = Instant::now();
            let n = sh.claim(p.batch_size as u64, now);
            if n == 0 {
                break;
            }
            let stamp = sh.nanos(now);
            if value.len() >= STAMP_BYTES {
                value[..STAMP_BYTES].copy_from_slice(&stamp.to_le_bytes());
            }
            let ts_ms = unix_ms();
            let mut b = BatchBuilder::with_capacity(ts_ms, batch_bytes);
            // hot path: one push per message into the batch's one buffer.
            for _ in 0..n {
                b.push(ts_ms, None, Some(&value), &[]);
            }
            let partition = next_partition;
            next_partition = (next_partition + 1) % partitions;
            let req = produce_request(&p.topic, partition, b.finish(), p.acks);
            let ticket = rc
                .send_for(&p.topic, partition, req)
                .with_context(|| format!("producer {id}: sending to partition {partition}"))?;
            in_flight.push_back(InFlight {
                ticket,
                sent: now,
                partition,
                messages: n,
            });
        }
        let Some(f) = in_flight.pop_front() else {
            break;
        };
        rc.recv_produce(f.ticket)
            .with_context(|| format!("producer {id}: producing to partition {}", f.partition))?;
        let acked = Instant::now();
        let bytes = f.messages * p.message_size as u64;
        res.messages += f.messages;
        res.bytes += bytes;
        sh.produced[f.partition as usize].fetch_add(f.messages, Ordering::Relaxed);
        sh.live
            .produced_msgs
            .fetch_add(f.messages, Ordering::Relaxed);
        sh.live.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
        // Every message of the request waited as long as the request.
        let ns = acked.saturating_duration_since(f.sent).as_nanos() as u64;
        record(&mut recent, ns, f.messages);
        flush_interval(&sh.live.produce_interval, &mut recent);
        if sh.nanos(f.sent) >= warmup_ns {
            record(&mut res.latency, ns, f.messages);
            res.measured_messages += f.messages;
            res.measured_bytes += bytes;
            res.end = acked.saturating_duration_since(sh.t0);
        }
    }
    if sh.live.aborted() {
        bail!("producer {id}: stopped because another actor failed");
    }
    Ok(res)
}

/// One consumer of `parts` (partition, first offset to read). With
/// producers it reads until it has what they acknowledged; without, until
/// the duration ends or `--messages` were read by all consumers together.
pub fn consume(id: usize, parts: Vec<(u32, i64)>, sh: &Shared) -> Result<ActorResult> {
    let p = sh.params;
    let mut rc = RoutedClient::connect(sh.broker)?;
    rc.topic(&p.topic)?;
    let mut res = ActorResult::new(id);
    let mut recent = crate::stats::new_histogram();
    let e2e = p.end_to_end();
    let warmup_ns = p.warmup.as_nanos() as u64;
    let start: Vec<i64> = parts.iter().map(|&(_, o)| o).collect();
    let mut next = start.clone();
    let mut last_data = Instant::now();
    let mut tickets: Vec<(usize, Ticket)> = Vec::with_capacity(parts.len());
    loop {
        if sh.live.aborted() {
            bail!("consumer {id}: stopped because another actor failed");
        }
        let now = Instant::now();
        // Which partitions still have something to read, and is it over?
        let producers_done = sh.live.producers_done.load(Ordering::Acquire);
        let want = |i: usize| -> bool {
            if p.producers == 0 {
                return true;
            }
            !producers_done
                || next[i]
                    < start[i] + sh.produced[parts[i].0 as usize].load(Ordering::Relaxed) as i64
        };
        let open: Vec<usize> = (0..parts.len()).filter(|&i| want(i)).collect();
        if p.producers > 0 && open.is_empty() {
            break;
        }
        if p.producers == 0 {
            let over = match p.stop {
                Stop::After(d) => now.saturating_duration_since(sh.t0) >= p.warmup + d,
                Stop::Messages(_) => sh.remaining.load(Ordering::Relaxed) == 0,
            };
            if over {
                break;
            }
        }
        let idle = now.saturating_duration_since(last_data);
        if idle > p.drain_timeout && (producers_done || p.producers == 0) {
            bail!(
                "consumer {id}: nothing new for {} s (read {} messages; --drain-timeout)",
                idle.as_secs(),
                res.messages
            );
        }
        // One long-polling fetch per open partition, all in flight at once.
        tickets.clear();
        for &i in &open {
            let (partition, _) = parts[i];
            let req = Request::Fetch(FetchRequest {
                max_wait_ms: FETCH_MAX_WAIT_MS,
                min_bytes: 1,
                max_bytes: FETCH_MAX_BYTES,
                topics: vec![FetchTopic {
                    name: p.topic.clone(),
                    partitions: vec![FetchPartition {
                        partition,
                        fetch_offset: next[i],
                        max_bytes: FETCH_MAX_BYTES,
                    }],
                }],
            });
            let t = rc
                .send_for(&p.topic, partition, req)
                .with_context(|| format!("consumer {id}: fetching partition {partition}"))?;
            tickets.push((i, t));
        }
        for &(i, t) in &tickets {
            let partition = parts[i].0;
            let ctx = || format!("consumer {id}: partition {partition}");
            let r = match rc.recv(t).with_context(ctx)? {
                Response::Fetch(ts) => ts
                    .into_iter()
                    .flat_map(|t| t.partitions)
                    .find(|r| r.partition == partition)
                    .ok_or_else(|| anyhow!("{}: no answer for it in the fetch", ctx()))?,
                _ => bail!("{}: the broker answered a fetch with something else", ctx()),
            };
            if let Some(e) = r.error {
                bail!("{}: {}", ctx(), e.message);
            }
            let got = Instant::now();
            let got_ns = sh.nanos(got);
            let measured = got_ns >= warmup_ns;
            let (mut n, mut bytes) = (0u64, 0u64);
            for b in split_batches(&r.records).with_context(ctx)? {
                let records = Records::new(b).with_context(ctx)?;
                let last = records.header().last_offset();
                if last < next[i] {
                    continue;
                }
                // hot path: values are slices of the fetched buffer.
                for rec in records {
                    let rec = rec.with_context(ctx)?;
                    if rec.offset < next[i] {
                        continue;
                    }
                    if p.producers == 0 && sh.claim_consumed() == 0 {
                        break;
                    }
                    let v = rec.value.as_deref().unwrap_or_default();
                    n += 1;
                    bytes += v.len() as u64;
                    next[i] = rec.offset + 1;
                    if e2e && v.len() >= STAMP_BYTES {
                        let mut stamp = [0u8; STAMP_BYTES];
                        stamp.copy_from_slice(&v[..STAMP_BYTES]);
                        let sent_ns = u64::from_le_bytes(stamp);
                        let ns = got_ns.saturating_sub(sent_ns);
                        record(&mut recent, ns, 1);
                        if measured {
                            record(&mut res.latency, ns, 1);
                        }
                    }
                }
                next[i] = next[i].max(last + 1);
            }
            if n > 0 {
                last_data = got;
                res.messages += n;
                res.bytes += bytes;
                sh.live.consumed_msgs.fetch_add(n, Ordering::Relaxed);
                sh.live.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
                if measured {
                    res.measured_messages += n;
                    res.measured_bytes += bytes;
                    res.end = got.saturating_duration_since(sh.t0);
                }
                flush_interval(&sh.live.e2e_interval, &mut recent);
            }
        }
    }
    Ok(res)
}

impl Shared<'_> {
    /// Consume-only runs with `--messages`: claims one message; 0 when the
    /// consumers together have read enough.
    fn claim_consumed(&self) -> u64 {
        match self.params.stop {
            Stop::After(_) => 1,
            Stop::Messages(_) => self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                .map_or(0, |_| 1),
        }
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Deals partitions out to consumers: consumer c reads p where p % n == c.
pub fn assign(partitions: u32, consumers: usize) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new(); consumers];
    if consumers == 0 {
        return out;
    }
    for p in 0..partitions {
        out[p as usize % consumers].push(p);
    }
    out
}

/// How long to sleep between progress lines.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_out_evenly() {
        assert_eq!(assign(5, 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(assign(1, 1), vec![vec![0]]);
        assert!(assign(3, 0).is_empty());
    }
}
