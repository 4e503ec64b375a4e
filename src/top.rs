//! `shardlog top`: a live per-shard view of a broker, computed from two
//! scrapes of its `/metrics` (the same numbers Prometheus sees).
//!
//! Owns: parsing Prometheus text (the subset the broker writes), rates
//! between two scrapes, the p99 from histogram bucket deltas, and the table
//! and JSON views.
//!
//! Must never: talk to the broker's native port; it reads `/metrics` only.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

#[derive(Args, Debug)]
pub struct TopArgs {
    /// The broker's HTTP endpoint (its `--http-listen`); `https://ADDR`
    /// when it serves `--http-tls on` (with `shardlog --tls-ca FILE`).
    #[arg(long, default_value = "127.0.0.1:9480", value_name = "ADDR")]
    pub http: String,
    /// Milliseconds between refreshes (and between the two scrapes of `--once`).
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Print one snapshot and exit.
    #[arg(long)]
    pub once: bool,
    /// Print the snapshot as one JSON object (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// One scrape: (metric name, labels) -> value.
pub type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

/// Parses Prometheus text exposition (no escapes inside label values other
/// than \" and \\, which is what the broker writes).
pub fn parse(text: &str) -> Samples {
    let mut out = Samples::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), Vec::new()),
            Some((name, rest)) => (name.to_owned(), parse_labels(rest.trim_end_matches('}'))),
        };
        out.insert((name, labels), value);
    }
    out
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key, value));
    }
    out
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Sum of `name` over the series of one shard.
fn shard_sum(s: &Samples, name: &str, shard: &str) -> f64 {
    s.iter()
        .filter(|((n, l), _)| n == name && label(l, "shard") == Some(shard))
        .map(|(_, v)| v)
        .sum()
}

/// A histogram's cumulative buckets for one shard: (le, count), sorted.
fn buckets(s: &Samples, name: &str, shard: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let mut b: Vec<(f64, f64)> = s
        .iter()
        .filter(|((n, l), _)| *n == bucket && label(l, "shard") == Some(shard))
        .filter_map(|((_, l), v)| {
            let le = label(l, "le")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    b
}

/// The q-quantile of what a histogram recorded between two scrapes: the
/// upper bound of the bucket it falls in (None without observations).
pub fn quantile_between(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            let b = before.iter().find(|(l, _)| *l == le).map_or(0.0, |x| x.1);
            (le, (n - b).max(0.0))
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|&(le, _)| le)
}

/// One shard's numbers over one interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ShardView {
    pub shard: u32,
    pub produce_msgs_per_s: f64,
    pub produce_mb_per_s: f64,
    pub fetch_msgs_per_s: f64,
    pub fetch_mb_per_s: f64,
    /// Upper bound of the bucket holding the p99 (log2 buckets), ms; None
    /// when nothing was produced in the interval.
    pub produce_ack_p99_ms: Option<f64>,
    pub fsyncs_per_s: f64,
    pub connections: u64,
    pub inflight_requests: u64,
    pub memory_unwritten_bytes: u64,
    pub memory_tail_buffer_bytes: u64,
    pub memory_budget_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub http: String,
    pub interval_ms: u64,
    pub shards: Vec<ShardView>,
}

/// Per-shard rates between two scrapes `dt` apart.
pub fn compute(before: &Samples, after: &Samples, dt: Duration) -> Vec<ShardView> {
    let mut shards: Vec<String> = after
        .keys()
        .filter(|(n, _)| n == "shardlog_connections")
        .filter_map(|(_, l)| label(l, "shard").map(str::to_owned))
        .collect();
    shards.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
    shards.dedup();
    let secs = dt.as_secs_f64().max(1e-3);
    let rate = |name: &str, sh: &str| {
        ((shard_sum(after, name, sh) - shard_sum(before, name, sh)) / secs).max(0.0)
    };
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    shards
        .iter()
        .map(|sh| {
            let lat = "shardlog_produce_ack_latency_seconds";
            ShardView {
                shard: sh.parse().unwrap_or(0),
                produce_msgs_per_s: round(rate("shardlog_produce_messages_total", sh)),
                produce_mb_per_s: round(rate("shardlog_produce_bytes_total", sh) / 1e6),
                fetch_msgs_per_s: round(rate("shardlog_fetch_messages_total", sh)),
                fetch_mb_per_s: round(rate("shardlog_fetch_bytes_total", sh) / 1e6),
                produce_ack_p99_ms: quantile_between(
                    &buckets(before, lat, sh),
                    &buckets(after, lat, sh),
                    0.99,
                )
                .map(|s| {
                    if s.is_finite() {
                        round(s * 1e3)
                    } else {
                        f64::MAX
                    }
                }),
                fsyncs_per_s: round(rate("shardlog_fsyncs_total", sh)),
                connections: shard_sum(after, "shardlog_connections", sh) as u64,
                inflight_requests: shard_sum(after, "shardlog_inflight_requests", sh) as u64,
                memory_unwritten_bytes: shard_sum(after, "shardlog_memory_unwritten_bytes", sh)
                    as u64,
                memory_tail_buffer_bytes: shard_sum(after, "shardlog_memory_tail_buffer_bytes", sh)
                    as u64,
                memory_budget_bytes: shard_sum(after, "shardlog_memory_budget_bytes", sh) as u64,
            }
        })
        .collect()
}

/// The table view.
pub fn table(s: &Snapshot) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut out = format!(
        "shardlog top  {}  every {} ms\n{:>5} {:>10} {:>9} {:>10} {:>9} {:>10} {:>8} {:>6} {:>6} {:>22}\n",
        s.http,
        s.interval_ms,
        "shard",
        "in msg/s",
        "in MB/s",
        "out msg/s",
        "out MB/s",
        "p99 ack",
        "fsync/s",
        "conns",
        "infl",
        "memory MiB (unwr/tail/budget)"
    );
    for v in &s.shards {
        let p99 = v
            .produce_ack_p99_ms
            .map_or("-".to_owned(), |ms| format!("{ms:.3}ms"));
        out.push_str(&format!(
            "{:>5} {:>10.0} {:>9.2} {:>10.0} {:>9.2} {:>10} {:>8.0} {:>6} {:>6} {:>8.1}/{:.1}/{:.0}\n",
            v.shard,
            v.produce_msgs_per_s,
            v.produce_mb_per_s,
            v.fetch_msgs_per_s,
            v.fetch_mb_per_s,
            p99,
            v.fsyncs_per_s,
            v.connections,
            v.inflight_requests,
            mib(v.memory_unwritten_bytes),
            mib(v.memory_tail_buffer_bytes),
            mib(v.memory_budget_bytes),
        ));
    }
    out
}

fn scrape(http: &str) -> Result<(Samples, Instant), String> {
    let (status, body) = crate::http::get(http, "/metrics", Duration::from_secs(5))
        .map_err(|e| format!("cannot scrape {http} /metrics: {e}"))?;
    if status != 200 {
        return Err(format!("{http} /metrics answered {status}"));
    }
    Ok((parse(&body), Instant::now()))
}

/// Runs `top`: a refreshing table, or one snapshot with `--once`.
pub fn run(a: &TopArgs) -> Result<(), String> {
    let interval = Duration::from_millis(a.interval_ms.max(100));
    let mut before = scrape(&a.http)?;
    loop {
        std::thread::sleep(interval);
        let after = scrape(&a.http)?;
        let snap = Snapshot {
            http: a.http.clone(),
            interval_ms: interval.as_millis() as u64,
            shards: compute(&before.0, &after.0, after.1 - before.1),
        };
        if a.json {
            println!(
                "{}",
                serde_json::to_string(&snap).map_err(|e| e.to_string())?
            );
        } else {
            if !a.once {
                // Home and clear: redraw in place.
                print!("\x1b[H\x1b[2J");
            }
            print!("{}", table(&snap));
        }
        if a.once {
            return Ok(());
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn rates_and_p99_from_two_scrapes_of_real_metrics_text() {
        let m = Metrics::new(2, true);
        let before = parse(&m.encode_text());
        let s1 = m.shard(1);
        s1.produced(None, 1000, 2_000_000);
        s1.connections.set(3);
        s1.fsynced(Instant::now());
        let frame = crate::protocol::ResponseFrame {
            correlation_id: 0,
            result: Ok(crate::protocol::Response::Produce(vec![])),
        };
        for _ in 0..100 {
            let t = s1.request_started(crate::metrics::Api::Produce);
            s1.request_done(crate::metrics::Api::Produce, t, &frame);
        }
        let after = parse(&m.encode_text());
        let v = compute(&before, &after, Duration::from_secs(2));
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].produce_msgs_per_s, 0.0);
        assert_eq!(v[0].produce_ack_p99_ms, None);
        assert_eq!(v[1].produce_msgs_per_s, 500.0);
        assert_eq!(v[1].produce_mb_per_s, 1.0);
        assert_eq!(v[1].fsyncs_per_s, 0.5);
        assert_eq!(v[1].connections, 3);
        let p99 = v[1].produce_ack_p99_ms.unwrap();
        assert!(p99 > 0.0 && p99 < 1000.0, "{p99}");
        let snap = Snapshot {
            http: "x".into(),
            interval_ms: 1,
            shards: v,
        };
        assert!(table(&snap).lines().count() == 4);
    }

    #[test]
    fn labels_with_escapes_parse() {
        let s = parse("a_total{shard=\"0\",topic=\"x\\\"y\"} 5\n# HELP x\nb 1.5\n");
        assert_eq!(
            s[&(
                "a_total".to_owned(),
                vec![
                    ("shard".to_owned(), "0".to_owned()),
                    ("topic".to_owned(), "x\"y".to_owned())
                ]
            )],
            5.0
        );
        assert_eq!(s[&("b".to_owned(), vec![])], 1.5);
    }

    #[test]
    fn quantile_picks_the_bucket_bound() {
        let before = vec![(0.001, 0.0), (0.002, 0.0), (f64::INFINITY, 0.0)];
        let after = vec![(0.001, 98.0), (0.002, 99.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile_between(&before, &after, 0.99), Some(0.002));
        assert_eq!(quantile_between(&before, &after, 0.5), Some(0.001));
        assert_eq!(quantile_between(&after, &after, 0.99), None);
    }
}
