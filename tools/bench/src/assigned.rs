//! `--consumer-group G`: consumers that join a consumer group with
//! shardlog's `GroupConsumer` and read what the coordinator assigns them,
//! instead of a fixed share of the partitions.
//!
//! Owns: where a partition newly assigned to a consumer starts (where this
//! run's reading of it stands, shared by all the run's consumers, so a
//! rebalance neither skips nor double-counts a message), and when a group
//! consumer stops (everything the producers had acknowledged was read by
//! the consumers together; or, consuming only, the duration or count).
//!
//! Must never: count a message twice or one below the run's start offset.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use shardlog::client::consumer::{GroupConfig, GroupConsumer, OffsetReset};

use crate::args::STAMP_BYTES;
use crate::stats::{flush_interval, record, ActorResult};
use crate::workload::Shared;

/// How long one `poll` waits for records (long polling at the broker).
const POLL_MS: u64 = 100;
/// Longest the group may take to hand out every partition before the run.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Joins `n` consumers to `group` and polls them until, together, they own
/// every partition of the topic, each some, so that the run (its clock, its warmup)
/// starts with a settled group instead of counting the join as latency.
/// Records returned meanwhile are dropped: `consume` seeks every partition
/// to the run's start when it takes over.
pub fn join(
    broker: &str,
    topic: &str,
    partitions: u32,
    group: &str,
    n: usize,
) -> Result<(Vec<GroupConsumer>, Duration)> {
    let start = Instant::now();
    let mut cs = Vec::with_capacity(n);
    for id in 0..n {
        let mut cfg = GroupConfig::new(group, &[topic]);
        // Where a partition starts is set in `consume` (seek); earliest is
        // only the fallback before that.
        cfg.offset_reset = OffsetReset::Earliest;
        cfg.client_id = format!("shardlog-bench-{}-{id}", std::process::id());
        cfg.auto_commit = Some(Duration::from_secs(1));
        cs.push(
            GroupConsumer::new(broker, cfg)
                .with_context(|| format!("consumer {id}: joining group {group}"))?,
        );
    }
    loop {
        let mut owned = BTreeSet::new();
        let (mut held, mut idle) = (0usize, 0usize);
        for (id, c) in cs.iter_mut().enumerate() {
            c.poll(Duration::from_millis(10))
                .with_context(|| format!("consumer {id}: joining group {group}"))?;
            let mine: Vec<_> = c
                .assignment()
                .into_iter()
                .filter(|(t, _)| t == topic)
                .collect();
            held += mine.len();
            idle += usize::from(mine.is_empty());
            owned.extend(mine);
        }
        // Settled: every partition owned once, and every consumer holding
        // some (there are no more consumers than partitions), so no
        // rebalance is still on its way to move partitions mid-run.
        if owned.len() as u32 >= partitions && held == owned.len() && idle == 0 {
            return Ok((cs, start.elapsed()));
        }
        if crate::signals::stop_requested() {
            bail!("stopped while group {group} was forming");
        }
        if start.elapsed() > JOIN_TIMEOUT {
            bail!(
                "group {group}: {n} consumers own {} of {partitions} partitions after {} s",
                owned.len(),
                JOIN_TIMEOUT.as_secs()
            );
        }
    }
}

/// One group consumer. `next[p]`: the offset after the last message of
/// partition p any consumer of this run counted (starts at the run's start
/// offsets).
pub fn consume(
    id: usize,
    sh: &Shared,
    mut c: GroupConsumer,
    group: &str,
    next: &[AtomicI64],
) -> Result<ActorResult> {
    let p = sh.params;
    let mut res = ActorResult::new(id);
    let mut recent = crate::stats::new_histogram();
    let e2e = p.end_to_end();
    let warmup_ns = p.warmup.as_nanos() as u64;
    let mut owned: BTreeSet<u32> = BTreeSet::new();
    let mut last_data = Instant::now();
    let mut seeked: HashSet<u32> = HashSet::new();
    loop {
        if sh.live.aborted() {
            bail!("consumer {id}: stopped because another actor failed");
        }
        let now = Instant::now();
        let producers_done = sh.live.producers_done.load(Ordering::Acquire);
        if p.producers > 0 {
            let produced: u64 = sh.produced.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            if producers_done && sh.live.consumed_msgs.load(Ordering::Relaxed) >= produced {
                break;
            }
        } else {
            if sh.consume_only_over(now) {
                break;
            }
        }
        sh.check_drain(id, now, last_data, producers_done, res.messages)?;
        let msgs = c
            .poll(Duration::from_millis(POLL_MS))
            .with_context(|| format!("consumer {id}: polling group {group}"))?;
        // Newly assigned partitions start where this run stands.
        seeked.clear();
        let now_owned: BTreeSet<u32> = c
            .assignment()
            .into_iter()
            .filter(|(t, _)| *t == p.topic)
            .map(|(_, q)| q)
            .collect();
        for &q in now_owned.difference(&owned) {
            let at = next[q as usize].load(Ordering::Acquire);
            c.seek(&p.topic, q, at)
                .with_context(|| format!("consumer {id}: seeking partition {q} to {at}"))?;
            seeked.insert(q);
        }
        owned = now_owned;
        let got_ns = sh.nanos(Instant::now());
        let measured = got_ns >= warmup_ns;
        let (mut n, mut bytes) = (0u64, 0u64);
        for m in msgs {
            if *m.topic != *p.topic {
                continue;
            }
            let q = m.partition as usize;
            let at = next[q].load(Ordering::Acquire);
            // Before this run's position (a replay after a rebalance), or
            // fetched before the seek above: the seek brings it back.
            if m.offset < at || (m.offset > at && seeked.contains(&m.partition)) {
                continue;
            }
            let v = m.value.as_deref().unwrap_or_default();
            if p.producers == 0 && !sh.claim_consumed(v.len() as u64) {
                break;
            }
            next[q].store(m.offset + 1, Ordering::Release);
            n += 1;
            bytes += v.len() as u64;
            if e2e && v.len() >= STAMP_BYTES {
                let mut stamp = [0u8; STAMP_BYTES];
                stamp.copy_from_slice(&v[..STAMP_BYTES]);
                let ns = got_ns.saturating_sub(u64::from_le_bytes(stamp));
                record(&mut recent, ns, 1);
                if measured {
                    record(&mut res.latency, ns, 1);
                }
            }
        }
        if n > 0 {
            last_data = Instant::now();
            res.messages += n;
            res.bytes += bytes;
            sh.live.consumed_msgs.fetch_add(n, Ordering::Relaxed);
            sh.live.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
            if measured {
                res.measured_messages += n;
                res.measured_bytes += bytes;
                res.end = last_data.saturating_duration_since(sh.t0);
            }
            flush_interval(&sh.live.e2e_interval, &mut recent);
        }
    }
    c.close()
        .with_context(|| format!("consumer {id}: leaving group {group}"))?;
    Ok(res)
}
