//! The load: producer and consumer threads, each with its own
//! connections (`Wire`: shardlog's `RoutedClient`, so every partition's
//! requests go to its owner shard's port, or with `--kafka` a Kafka
//! client, one connection per node), closed-loop with up to
//! `--max-in-flight` produce requests pipelined per producer.
//!
//! Owns: what a message holds (its first 8 bytes are the send time, u64
//! little-endian nanoseconds since the run's shared `Instant`, so consumers
//! in this process can compute end-to-end latency), when actors stop, and
//! what they count.
//!
//! Must never: allocate or take a lock per message on the hot paths; a batch
//! is built into one buffer from one reused value buffer.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use shardlog::batch::{split_batches, BatchBuilder, Records};
use shardlog::client::{partition_for_key, produce_request, RoutedClient, Ticket};
use shardlog::protocol::{Acks, FetchPartition, FetchRequest, FetchTopic, Request, Response};

use crate::kafka::{KTicket, KafkaClient};

use crate::args::{KeyMode, Params, Stop, STAMP_BYTES};
use crate::stats::{flush_interval, record, ActorResult, Live};

/// Bytes a consumer asks for per partition and fetch.
const FETCH_MAX_BYTES: u32 = 1 << 20;
/// Longest a fetch waits at the broker for new data (long polling): short
/// enough that consumers notice the end of a run promptly.
const FETCH_MAX_WAIT_MS: u32 = 100;
/// Per record framing the batch adds to a value (length, attributes,
/// deltas, key, headers), for sizing the batch buffer once.
const RECORD_OVERHEAD_BYTES: usize = 24;

/// One actor's connections: shardlog's native wire or the Kafka wire.
pub enum Wire {
    Native(RoutedClient),
    Kafka(KafkaClient),
}

/// A request in flight on a `Wire`.
pub enum WireTicket {
    Native(Ticket),
    Kafka(KTicket),
}

impl Wire {
    pub fn connect(broker: &str, kafka: bool) -> Result<Wire> {
        Ok(if kafka {
            Wire::Kafka(KafkaClient::connect(broker)?)
        } else {
            Wire::Native(RoutedClient::connect(broker)?)
        })
    }

    /// The topic's partition count (its routes loaded).
    pub fn topic(&mut self, topic: &str) -> Result<u32> {
        Ok(match self {
            Wire::Native(rc) => rc.topic(topic)?,
            Wire::Kafka(k) => match k.topic(topic)? {
                0 => bail!("topic {topic} does not exist"),
                n => n,
            },
        })
    }

    fn send_produce(
        &mut self,
        topic: &str,
        partition: u32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<WireTicket> {
        Ok(match self {
            Wire::Native(rc) => {
                let req = produce_request(topic, partition, batch, acks);
                WireTicket::Native(rc.send_for(topic, partition, req)?)
            }
            Wire::Kafka(k) => {
                let acks = match acks {
                    Acks::None => 0,
                    Acks::Leader => 1,
                    Acks::Durable => -1,
                };
                WireTicket::Kafka(k.send_produce(partition, batch, acks)?)
            }
        })
    }

    fn recv_produce(&mut self, t: WireTicket) -> Result<()> {
        match (self, t) {
            (Wire::Native(rc), WireTicket::Native(t)) => rc.recv_produce(t).map(drop)?,
            (Wire::Kafka(k), WireTicket::Kafka(t)) => k.recv_produce(t)?,
            _ => bail!("a ticket of the other wire"),
        }
        Ok(())
    }

    fn send_fetch(&mut self, topic: &str, partition: u32, offset: i64) -> Result<WireTicket> {
        Ok(match self {
            Wire::Native(rc) => {
                let req = Request::Fetch(FetchRequest {
                    read_committed: false,
                    max_wait_ms: FETCH_MAX_WAIT_MS,
                    min_bytes: 1,
                    max_bytes: FETCH_MAX_BYTES,
                    topics: vec![FetchTopic {
                        name: topic.to_owned(),
                        partitions: vec![FetchPartition {
                            partition,
                            fetch_offset: offset,
                            max_bytes: FETCH_MAX_BYTES,
                        }],
                    }],
                });
                WireTicket::Native(rc.send_for(topic, partition, req)?)
            }
            Wire::Kafka(k) => WireTicket::Kafka(k.send_fetch(
                partition,
                offset,
                FETCH_MAX_WAIT_MS,
                FETCH_MAX_BYTES,
            )?),
        })
    }

    /// A fetch's records as stored (whole batches, maybe a partial last).
    fn recv_fetch(&mut self, t: WireTicket, partition: u32) -> Result<Bytes> {
        match (self, t) {
            (Wire::Native(rc), WireTicket::Native(t)) => {
                let r = match rc.recv(t)? {
                    Response::Fetch(ts) => ts
                        .into_iter()
                        .flat_map(|t| t.partitions)
                        .find(|r| r.partition == partition)
                        .ok_or_else(|| anyhow!("no answer for it in the fetch"))?,
                    _ => bail!("the broker answered a fetch with something else"),
                };
                if let Some(e) = r.error {
                    bail!("{}", e.message);
                }
                Ok(r.records.to_bytes())
            }
            (Wire::Kafka(k), WireTicket::Kafka(t)) => k.recv_fetch(t, partition),
            _ => bail!("a ticket of the other wire"),
        }
    }
}

/// What every actor shares: the parameters, the clock, the counters.
pub struct Shared<'a> {
    pub params: &'a Params,
    pub broker: &'a str,
    /// `--kafka`: the broker speaks the Kafka protocol.
    pub kafka: bool,
    /// Time zero of the run; send stamps and windows are relative to it.
    pub t0: Instant,
    pub live: &'a Live,
    /// Messages left to produce (`--messages`), claimed a batch at a time.
    pub remaining: AtomicU64,
    /// Messages acknowledged per partition (consumers' targets).
    pub produced: Vec<AtomicU64>,
    /// Next sequential key (`--key-mode sequential`), run-wide.
    pub key_seq: AtomicU64,
}

impl Shared<'_> {
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.t0).as_nanos() as u64
    }

    /// Claims up to `want` messages (of `bytes` value bytes in all) to
    /// produce; 0 when the run is over. `--total-bytes` grants the whole
    /// claim while anything is left, so the last batch may go over.
    fn claim(&self, want: u64, bytes: u64, now: Instant) -> u64 {
        if self.live.aborted() || crate::signals::stop_requested() {
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
            Stop::Bytes(_) => self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                    (r > 0).then(|| r.saturating_sub(bytes))
                })
                .map_or(0, |_| want),
        }
    }
}

/// A small, fast PRNG (splitmix64) for sizes and random keys: no
/// dependency, no lock, one per producer.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is below 2^-40 for any size
    /// this tool allows).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(lo <= hi);
        lo + (self.next_u64() % ((hi - lo) as u64 + 1)) as usize
    }
}

struct InFlight {
    ticket: WireTicket,
    partition: u32,
    /// When each message was due, in ns since t0: its send time (closed
    /// loop) or its scheduled time (open loop, `--rate`), so latency counts
    /// from when a message should have gone out even if the producer fell
    /// behind (coordinated-omission correction).
    due_ns: Vec<u64>,
    bytes: u64,
}

/// A batch being built for one partition.
struct Pending {
    builder: BatchBuilder,
    due_ns: Vec<u64>,
    bytes: u64,
}

/// Longest key a producer makes (sequential keys are u64 in decimal).
const KEY_MAX_BYTES: usize = 20;
/// Longest an open-loop producer sleeps at once, so it notices the end.
const PACE_SLEEP_MAX: Duration = Duration::from_millis(10);

/// One producer. Closed loop: `--batch-size` messages per request as fast
/// as the pipeline allows. Open loop (`--rate`): message k is due at
/// start + k / (rate / producers); each request carries what is due (at
/// most a batch). Without keys, requests go round-robin over the partitions
/// (starting at the producer's id, so producers spread); with keys, each
/// message goes to `partition_for_key` and a claim becomes one request per
/// partition it touched (so up to `partitions - 1` requests above
/// `--max-in-flight` may be in flight).
///
/// Known limit of the open loop: the client has no non-blocking receive, so
/// a producer with requests in flight and nothing due waits for the oldest
/// acknowledgement before sending what fell due meanwhile. Latency still
/// counts from the due time (nothing is hidden), but when acknowledgements
/// take longer than a producer's interval the tool adds to it: use more
/// `--producers` so that each one's interval exceeds the ack latency.
pub fn produce(id: usize, sh: &Shared) -> Result<ActorResult> {
    let p = sh.params;
    let mut rc = Wire::connect(sh.broker, sh.kafka)?;
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
    let sizes_cfg = p.message_size;
    let keyed = p.key_mode != KeyMode::None;
    // The value of every message: filler, its first 8 bytes overwritten
    // with its due time; a message of size s is the first s bytes.
    let mut value = vec![b'x'; sizes_cfg.max];
    let key_bytes = if keyed { KEY_MAX_BYTES } else { 0 };
    let mut batch_bytes = p.batch_size * (sizes_cfg.max + key_bytes + RECORD_OVERHEAD_BYTES) + 128;
    if let Some(cap) = p.batch_bytes {
        batch_bytes = batch_bytes.min(cap + 128);
    }
    // Open loop with --linger-ms: a batch that is not full waits this long
    // after its first message fell due.
    let linger_ns = p.linger.as_nanos() as u64;
    // How many messages fill a batch at most (count and byte caps), for
    // the open loop's sleep.
    let fill_count = match p.batch_bytes {
        Some(cap) => (cap.saturating_sub(crate::args::BATCH_HEADER_BYTES)
            / (sizes_cfg.max + key_bytes + RECORD_OVERHEAD_BYTES))
            .clamp(1, p.batch_size),
        None => p.batch_size,
    } as u64;
    let warmup_ns = p.warmup.as_nanos() as u64;
    let mut rng = Rng::new((id as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ unix_ms() as u64);
    // Open loop: ns between this producer's messages.
    let interval_ns: Option<f64> = p.rate.map(|r| 1e9 * p.producers as f64 / r as f64);
    let start_ns = sh.nanos(Instant::now());
    let mut scheduled: u64 = 0;
    let mut next_partition = id as u32 % partitions;
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(p.max_in_flight);
    // Reused buffers: due-time vectors come back here after their ack.
    let mut free_dues: Vec<Vec<u64>> = Vec::new();
    let mut sizes: Vec<usize> = Vec::with_capacity(p.batch_size);
    let mut pending: Vec<Option<Pending>> = if keyed {
        (0..partitions).map(|_| None).collect()
    } else {
        Vec::new()
    };
    let mut touched: Vec<u32> = Vec::new();
    let mut key = Vec::with_capacity(KEY_MAX_BYTES);
    let mut finished = false;
    loop {
        // Open loop: a batch held back by --linger-ms until this time.
        let mut lingering: Option<u64> = None;
        // Fill the pipeline with what is due.
        while !finished && in_flight.len() < p.max_in_flight {
            let now = Instant::now();
            let now_ns = sh.nanos(now);
            let want = match interval_ns {
                None => p.batch_size as u64,
                Some(iv) => {
                    let due = (now_ns.saturating_sub(start_ns) as f64 / iv) as u64 + 1;
                    due.saturating_sub(scheduled).min(p.batch_size as u64)
                }
            };
            if want == 0 {
                break;
            }
            sizes.clear();
            let mut sum = 0u64;
            // --batch-bytes: stop before the message that would take the
            // batch over (an estimate from above: full framing per record).
            let mut encoded = crate::args::BATCH_HEADER_BYTES;
            let mut byte_capped = false;
            for _ in 0..want {
                let s = if sizes_cfg.fixed() {
                    sizes_cfg.min
                } else {
                    rng.range(sizes_cfg.min, sizes_cfg.max)
                };
                let rec = s + key_bytes + RECORD_OVERHEAD_BYTES;
                if let Some(cap) = p.batch_bytes {
                    if !sizes.is_empty() && encoded + rec > cap {
                        byte_capped = true;
                        break;
                    }
                }
                encoded += rec;
                sizes.push(s);
                sum += s as u64;
            }
            let want = sizes.len() as u64;
            if let Some(iv) = interval_ns {
                let full = byte_capped || want >= p.batch_size as u64;
                let first_due = start_ns + (scheduled as f64 * iv) as u64;
                if linger_ns > 0 && !full && now_ns < first_due + linger_ns {
                    lingering = Some(first_due + linger_ns);
                    break;
                }
            }
            let n = sh.claim(want, sum, now);
            if n == 0 {
                finished = true;
                break;
            }
            let due_of = |j: u64| match interval_ns {
                None => now_ns,
                Some(iv) => start_ns + ((scheduled + j) as f64 * iv) as u64,
            };
            let ts_ms = unix_ms();
            let key_base = if p.key_mode == KeyMode::Sequential {
                sh.key_seq.fetch_add(n, Ordering::Relaxed)
            } else {
                0
            };
            let mut take_dues = || {
                let mut v = free_dues.pop().unwrap_or_default();
                v.clear();
                v
            };
            // hot path: one push per message into its batch's one buffer.
            for j in 0..n {
                let due = due_of(j);
                if value.len() >= STAMP_BYTES {
                    value[..STAMP_BYTES].copy_from_slice(&due.to_le_bytes());
                }
                let size = sizes[j as usize];
                let partition = match p.key_mode {
                    KeyMode::None => next_partition,
                    KeyMode::Random => {
                        key.clear();
                        match p.key_space {
                            Some(n) => {
                                let _ = write!(key, "{}", rng.next_u64() % n);
                            }
                            None => key.extend_from_slice(&rng.next_u64().to_le_bytes()),
                        }
                        partition_for_key(&key, partitions)
                    }
                    KeyMode::Sequential => {
                        key.clear();
                        let k = key_base + j;
                        let _ = write!(key, "{}", p.key_space.map_or(k, |n| k % n));
                        partition_for_key(&key, partitions)
                    }
                };
                let slot = if keyed {
                    &mut pending[partition as usize]
                } else {
                    if pending.is_empty() {
                        pending.push(None);
                    }
                    &mut pending[0]
                };
                let pb = slot.get_or_insert_with(|| {
                    touched.push(partition);
                    Pending {
                        builder: BatchBuilder::with_capacity(
                            ts_ms,
                            if keyed {
                                batch_bytes / (partitions as usize).min(n as usize) + 128
                            } else {
                                batch_bytes
                            },
                        ),
                        due_ns: take_dues(),
                        bytes: 0,
                    }
                });
                let k = if keyed { Some(&key[..]) } else { None };
                pb.builder.push(ts_ms, k, Some(&value[..size]), &[]);
                pb.due_ns.push(due);
                pb.bytes += size as u64;
            }
            scheduled += n;
            if !keyed {
                next_partition = (next_partition + 1) % partitions;
            }
            for partition in touched.drain(..) {
                let slot = if keyed {
                    &mut pending[partition as usize]
                } else {
                    &mut pending[0]
                };
                let Some(pb) = slot.take() else { continue };
                let ticket = rc
                    .send_produce(&p.topic, partition, pb.builder.finish(), p.acks)
                    .with_context(|| format!("producer {id}: sending to partition {partition}"))?;
                in_flight.push_back(InFlight {
                    ticket,
                    partition,
                    due_ns: pb.due_ns,
                    bytes: pb.bytes,
                });
            }
        }
        let Some(f) = in_flight.pop_front() else {
            if finished {
                break;
            }
            // Open loop, nothing due and nothing in flight: wait for the
            // next message's time.
            if let Some(iv) = interval_ns {
                let next_ns = match lingering {
                    // Until the linger ends or enough fell due to fill it.
                    Some(end) => {
                        end.min(start_ns + ((scheduled + fill_count - 1) as f64 * iv) as u64)
                    }
                    None => start_ns + (scheduled as f64 * iv) as u64,
                };
                let now_ns = sh.nanos(Instant::now());
                let wait = Duration::from_nanos(next_ns.saturating_sub(now_ns));
                std::thread::sleep(wait.min(PACE_SLEEP_MAX));
            }
            continue;
        };
        rc.recv_produce(f.ticket)
            .with_context(|| format!("producer {id}: producing to partition {}", f.partition))?;
        let acked = Instant::now();
        let acked_ns = sh.nanos(acked);
        let messages = f.due_ns.len() as u64;
        res.messages += messages;
        res.bytes += f.bytes;
        sh.produced[f.partition as usize].fetch_add(messages, Ordering::Relaxed);
        sh.live.produced_msgs.fetch_add(messages, Ordering::Relaxed);
        sh.live.produced_bytes.fetch_add(f.bytes, Ordering::Relaxed);
        let (first, last) = (f.due_ns[0], f.due_ns[f.due_ns.len() - 1]);
        let measured = first >= warmup_ns;
        if first == last {
            // Closed loop: every message of the request waited as long.
            let ns = acked_ns.saturating_sub(first);
            record(&mut recent, ns, messages);
            if measured {
                record(&mut res.latency, ns, messages);
            }
        } else {
            for &d in &f.due_ns {
                let ns = acked_ns.saturating_sub(d);
                record(&mut recent, ns, 1);
                if measured {
                    record(&mut res.latency, ns, 1);
                }
            }
        }
        flush_interval(&sh.live.produce_interval, &mut recent);
        if measured {
            res.measured_messages += messages;
            res.measured_bytes += f.bytes;
            res.end = acked.saturating_duration_since(sh.t0);
        }
        free_dues.push(f.due_ns);
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
    let mut rc = Wire::connect(sh.broker, sh.kafka)?;
    rc.topic(&p.topic)?;
    let mut res = ActorResult::new(id);
    let mut recent = crate::stats::new_histogram();
    let e2e = p.end_to_end();
    let warmup_ns = p.warmup.as_nanos() as u64;
    let start: Vec<i64> = parts.iter().map(|&(_, o)| o).collect();
    let mut next = start.clone();
    let mut last_data = Instant::now();
    let mut tickets: Vec<(usize, WireTicket)> = Vec::with_capacity(parts.len());
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
        if p.producers == 0 && sh.consume_only_over(now) {
            break;
        }
        sh.check_drain(id, now, last_data, producers_done, res.messages)?;
        // One long-polling fetch per open partition, all in flight at once.
        tickets.clear();
        for &i in &open {
            let (partition, _) = parts[i];
            let t = rc
                .send_fetch(&p.topic, partition, next[i])
                .with_context(|| format!("consumer {id}: fetching partition {partition}"))?;
            tickets.push((i, t));
        }
        for (i, t) in tickets.drain(..) {
            let partition = parts[i].0;
            let ctx = || format!("consumer {id}: partition {partition}");
            let records = rc.recv_fetch(t, partition).with_context(ctx)?;
            let got = Instant::now();
            let got_ns = sh.nanos(got);
            let measured = got_ns >= warmup_ns;
            let (mut n, mut bytes) = (0u64, 0u64);
            for b in split_batches(&records).with_context(ctx)? {
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
                    let v = rec.value.as_deref().unwrap_or_default();
                    if p.producers == 0 && !sh.claim_consumed(v.len() as u64) {
                        break;
                    }
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
    /// Consume-only runs (no producers): whether the run is over (its
    /// duration passed, `--messages`/`--total-bytes` were read, or a signal).
    pub fn consume_only_over(&self, now: Instant) -> bool {
        let p = self.params;
        (match p.stop {
            Stop::After(d) => now.saturating_duration_since(self.t0) >= p.warmup + d,
            Stop::Messages(_) | Stop::Bytes(_) => self.remaining.load(Ordering::Relaxed) == 0,
        }) || crate::signals::stop_requested()
    }

    /// Fails a consumer that saw nothing new for `--drain-timeout` once
    /// nothing more is coming (producers done, or none).
    pub fn check_drain(
        &self,
        id: usize,
        now: Instant,
        last_data: Instant,
        producers_done: bool,
        read: u64,
    ) -> Result<()> {
        let idle = now.saturating_duration_since(last_data);
        if idle > self.params.drain_timeout && (producers_done || self.params.producers == 0) {
            bail!(
                "consumer {id}: nothing new for {} s (read {read} messages; --drain-timeout)",
                idle.as_secs()
            );
        }
        Ok(())
    }

    /// Consume-only runs with `--messages` or `--total-bytes`: claims one
    /// message of `bytes`; false when the consumers together have read
    /// enough.
    pub(crate) fn claim_consumed(&self, bytes: u64) -> bool {
        match self.params.stop {
            Stop::After(_) => true,
            Stop::Messages(_) => self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                .is_ok(),
            Stop::Bytes(_) => self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                    (r > 0).then(|| r.saturating_sub(bytes))
                })
                .is_ok(),
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

    #[test]
    fn random_sizes_stay_in_range_and_cover_it() {
        let mut r = Rng::new(7);
        let (mut lo, mut hi) = (usize::MAX, 0);
        for _ in 0..10_000 {
            let s = r.range(8, 16);
            assert!((8..=16).contains(&s));
            lo = lo.min(s);
            hi = hi.max(s);
        }
        assert_eq!((lo, hi), (8, 16));
    }
}
