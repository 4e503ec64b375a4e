//! Measurements: latency histograms (hdrhistogram, nanoseconds), what each
//! producer and consumer counted, the counters the progress line reads, and
//! the summaries the reports print.
//!
//! Owns: units (histograms hold ns; reports say µs; MB means MiB, 2^20
//! bytes, as in OpenMessaging Benchmark and Kafka's perf tools) and the
//! measured window (after the warmup).
//!
//! Must never: take a lock per message (actors add to the shared interval
//! histograms once per request or fetch).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Largest latency kept exactly; longer ones are recorded as this (a run
/// with a minute-long latency is broken anyway, and says so in `max`).
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;
pub const MIB: f64 = (1 << 20) as f64;

pub fn new_histogram() -> Histogram<u64> {
    // 3 significant digits: 0.1% resolution at every magnitude.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant bounds are valid")
}

/// Records `count` samples of `ns`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, ns: u64, count: u64) {
    let v = ns.clamp(1, MAX_LATENCY_NS);
    // In range by the clamp, so this cannot fail.
    let _ = h.record_n(v, count);
}

/// Counters shared by all actors and read by the progress thread.
pub struct Live {
    pub produced_msgs: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub consumed_msgs: AtomicU64,
    pub consumed_bytes: AtomicU64,
    /// Produce-acknowledge latencies since the progress thread last looked.
    pub produce_interval: Mutex<Histogram<u64>>,
    /// End-to-end latencies since the progress thread last looked.
    pub e2e_interval: Mutex<Histogram<u64>>,
    /// Set when an actor failed: everyone stops.
    pub abort: AtomicBool,
    /// Set when every producer finished (consumers then know their targets).
    pub producers_done: AtomicBool,
}

impl Live {
    pub fn new() -> Live {
        Live {
            produced_msgs: AtomicU64::new(0),
            produced_bytes: AtomicU64::new(0),
            consumed_msgs: AtomicU64::new(0),
            consumed_bytes: AtomicU64::new(0),
            produce_interval: Mutex::new(new_histogram()),
            e2e_interval: Mutex::new(new_histogram()),
            abort: AtomicBool::new(false),
            producers_done: AtomicBool::new(false),
        }
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed) || crate::signals::abort_requested()
    }
}

/// How often an actor hands its recent latencies to the progress line.
/// Per acknowledgement, adding and clearing a whole histogram (ns, 3
/// digits: hundreds of KB of counters) was 19% of a producer's CPU (perf,
/// BENCHMARKS.md 2026-11-25).
pub const INTERVAL_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

thread_local! {
    /// When this actor thread last flushed its recent latencies.
    static LAST_FLUSH: std::cell::Cell<Option<std::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// Adds `recent` into a shared interval histogram and clears it, at most
/// every `INTERVAL_FLUSH_EVERY` per thread (the progress line is per
/// second; the run's own histograms are separate and complete).
pub fn flush_interval(shared: &Mutex<Histogram<u64>>, recent: &mut Histogram<u64>) {
    if recent.is_empty() {
        return;
    }
    let now = std::time::Instant::now();
    let due = LAST_FLUSH.with(|l| match l.get() {
        Some(t) if now.saturating_duration_since(t) < INTERVAL_FLUSH_EVERY => false,
        _ => {
            l.set(Some(now));
            true
        }
    });
    if !due {
        return;
    }
    // A poisoned lock means another actor panicked; the run fails anyway.
    if let Ok(mut h) = shared.lock() {
        let _ = h.add(&*recent);
    }
    recent.reset();
}

/// What one producer or consumer measured.
pub struct ActorResult {
    pub id: usize,
    /// Everything, warmup included (what the broker received / returned).
    pub messages: u64,
    pub bytes: u64,
    /// After the warmup only.
    pub measured_messages: u64,
    pub measured_bytes: u64,
    /// Produce-acknowledge (producers) or end-to-end (consumers), after the
    /// warmup, in ns.
    pub latency: Histogram<u64>,
    /// When this actor finished its last measured message, since the start.
    pub end: Duration,
    /// CPU-seconds this actor's thread used (set when it ends).
    pub cpu_s: f64,
}

impl ActorResult {
    pub fn new(id: usize) -> ActorResult {
        ActorResult {
            id,
            messages: 0,
            bytes: 0,
            measured_messages: 0,
            measured_bytes: 0,
            latency: new_histogram(),
            end: Duration::ZERO,
            cpu_s: 0.0,
        }
    }
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p75: us(h.value_at_quantile(0.75)),
            p90: us(h.value_at_quantile(0.90)),
            p95: us(h.value_at_quantile(0.95)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// Totals over one kind of actor.
pub struct Summary {
    pub messages: u64,
    pub bytes: u64,
    pub measured_messages: u64,
    pub measured_bytes: u64,
    /// Seconds of the measured window (warmup end to the last actor's end).
    pub window_s: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub latency: Percentiles,
    /// (percentile, µs) from p50 to p99.999, evenly on a log scale of
    /// 1/(1 - q): the latency percentile curve.
    pub curve: Vec<(f64, f64)>,
    pub per_actor: Vec<ActorSummary>,
}

/// Points of the percentile curve per decade of 1/(1 - q).
const CURVE_POINTS_PER_DECADE: u32 = 10;

/// The percentile curve of `h`: (percentile in %, µs) at q = 1 - 10^-x for
/// x from log10(2) (p50) to 5 (p99.999).
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let x0 = 2f64.log10();
    let steps = (5.0 - x0) * CURVE_POINTS_PER_DECADE as f64;
    let n = steps.ceil() as u32;
    (0..=n)
        .map(|i| {
            let x = (x0 + i as f64 / CURVE_POINTS_PER_DECADE as f64).min(5.0);
            let q = 1.0 - 10f64.powf(-x);
            (q * 100.0, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

pub struct ActorSummary {
    pub id: usize,
    pub messages: u64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub latency: Percentiles,
}

fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Merges the actors' histograms and counts; rates are over the measured
/// window, which starts at `warmup` and ends when the last actor finished.
pub fn summarize(actors: &[ActorResult], warmup: Duration) -> Summary {
    let mut total = new_histogram();
    let end = actors.iter().map(|a| a.end).max().unwrap_or_default();
    let window_s = end.saturating_sub(warmup).as_secs_f64();
    let mut s = Summary {
        messages: 0,
        bytes: 0,
        measured_messages: 0,
        measured_bytes: 0,
        window_s,
        msgs_per_s: 0.0,
        mb_per_s: 0.0,
        latency: Percentiles::default(),
        curve: Vec::new(),
        per_actor: Vec::new(),
    };
    for a in actors {
        let _ = total.add(&a.latency);
        s.messages += a.messages;
        s.bytes += a.bytes;
        s.measured_messages += a.measured_messages;
        s.measured_bytes += a.measured_bytes;
        let w = a.end.saturating_sub(warmup).as_secs_f64();
        s.per_actor.push(ActorSummary {
            id: a.id,
            messages: a.messages,
            msgs_per_s: rate(a.measured_messages, w),
            mb_per_s: rate(a.measured_bytes, w) / MIB,
            latency: Percentiles::of(&a.latency),
        });
    }
    s.msgs_per_s = rate(s.measured_messages, window_s);
    s.mb_per_s = rate(s.measured_bytes, window_s) / MIB;
    s.latency = Percentiles::of(&total);
    s.curve = curve(&total);
    s
}

/// One second of the run, as the progress thread saw it.
#[derive(Debug, Clone, Copy)]
pub struct Second {
    pub t_s: f64,
    /// The second began before the warmup ended (left out of the totals).
    pub warmup: bool,
    pub produce_msgs_per_s: f64,
    pub produce_mb_per_s: f64,
    pub produce_p99_us: f64,
    pub consume_msgs_per_s: f64,
    pub consume_mb_per_s: f64,
    pub end_to_end_p99_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ordered_and_in_microseconds() {
        let mut h = new_histogram();
        for ns in 1..=100_000u64 {
            record(&mut h, ns * 10, 1);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 100_000);
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999);
        assert!(p.p999 <= p.p9999 && p.p9999 <= p.max);
        assert!((p.max - 1000.0).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn the_curve_runs_from_p50_to_p99999_and_never_falls() {
        let mut h = new_histogram();
        for ns in 1..=100_000u64 {
            record(&mut h, ns * 10, 1);
        }
        let c = curve(&h);
        assert!((c[0].0 - 50.0).abs() < 1e-9, "{:?}", c[0]);
        assert!((c[c.len() - 1].0 - 99.999).abs() < 1e-9);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert!(curve(&new_histogram()).is_empty());
    }

    #[test]
    fn out_of_range_latencies_are_clamped_not_lost() {
        let mut h = new_histogram();
        record(&mut h, 0, 1);
        record(&mut h, u64::MAX, 2);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn rates_use_the_window_after_warmup() {
        let mut a = ActorResult::new(0);
        a.messages = 300;
        a.measured_messages = 200;
        a.measured_bytes = 200 << 20;
        a.end = Duration::from_secs(3);
        let s = summarize(&[a], Duration::from_secs(1));
        assert_eq!(s.messages, 300);
        assert!((s.msgs_per_s - 100.0).abs() < 1e-9);
        assert!((s.mb_per_s - 100.0).abs() < 1e-9);
    }
}
