//! Reports: the final table (stdout), the progress line (stderr) and the
//! JSON file. JSON is written by hand (a small value tree), so the tool
//! needs no serde.
//!
//! Owns: the JSON keys. The bench issue's keys (`produce.msgs_per_s`,
//! `produce.latency_us.p99`, ... and the same under `consume` and
//! `end_to_end`) plus OpenMessaging Benchmark's result names at the top
//! level (`publishRate`, `aggregatedPublishLatency99pct`, ... in ms, as OMB
//! writes them) so existing plotting scripts can read a run.

use crate::brokercpu::Usage;
use std::fmt::Write as _;

use crate::args::{acks_name, FromArg, Params, Stop, Target};
use crate::machine::Machine;
use crate::stats::{Percentiles, Second, Summary};

/// A JSON value.
pub enum J {
    Null,
    Bool(bool),
    Int(u64),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, indent: usize) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(n) => {
                let _ = write!(out, "{n}");
            }
            J::Num(x) if x.is_finite() => {
                // Three decimals: nanosecond resolution for µs values.
                let r = (x * 1000.0).round() / 1000.0;
                let _ = write!(out, "{r}");
            }
            J::Num(_) => out.push_str("null"),
            J::Str(s) => write_str(out, s),
            J::Arr(v) if v.is_empty() => out.push_str("[]"),
            J::Arr(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, indent + 1);
                    x.write(out, indent + 1);
                }
                newline(out, indent);
                out.push(']');
            }
            J::Obj(v) if v.is_empty() => out.push_str("{}"),
            J::Obj(v) => {
                out.push('{');
                for (i, (k, x)) in v.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    newline(out, indent + 1);
                    write_str(out, k);
                    out.push_str(": ");
                    x.write(out, indent + 1);
                }
                newline(out, indent);
                out.push('}');
            }
        }
    }
}

fn newline(out: &mut String, indent: usize) {
    out.push('\n');
    for _ in 0..indent {
        out.push_str("  ");
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Facts about the run that are not measurements.
pub struct RunInfo<'a> {
    pub params: &'a Params,
    pub broker_addr: &'a str,
    pub data_dir: Option<String>,
    /// (filesystem, device) under the spawned broker's data directory.
    pub filesystem: Option<(String, String)>,
    pub machine: &'a Machine,
    pub elapsed_s: f64,
    /// The signal that stopped the run early ("SIGINT"), if one did.
    pub stopped_by: Option<&'static str>,
}

pub struct Results<'a> {
    pub produce: Option<&'a Summary>,
    pub consume: Option<&'a Summary>,
    pub series: &'a [Second],
    /// The broker's CPU over the run.
    pub broker_cpu: &'a Usage,
}

/// The broker's CPU against the bytes it moved: (CPU-seconds, per GB
/// produced, per GB consumed, per GB moved). "Moved" counts a byte once
/// in and once out: a run that does both divides one CPU total by both.
pub fn broker_cpu_figures(r: &Results) -> Option<(f64, Option<f64>, Option<f64>, f64)> {
    let Usage::Seconds(s) = r.broker_cpu else {
        return None;
    };
    let produced = r.produce.map_or(0, |p| p.bytes);
    let consumed = r.consume.map_or(0, |c| c.bytes);
    let moved = r.broker_cpu.per_gb(produced + consumed)?;
    let only = |mine: u64, other: u64| (other == 0).then(|| r.broker_cpu.per_gb(mine)).flatten();
    Some((
        *s,
        only(produced, consumed),
        only(consumed, produced),
        moved,
    ))
}

fn latency_json(p: &Percentiles) -> J {
    J::Obj(vec![
        ("count", J::Int(p.count)),
        ("mean", J::Num(p.mean)),
        ("p50", J::Num(p.p50)),
        ("p75", J::Num(p.p75)),
        ("p90", J::Num(p.p90)),
        ("p95", J::Num(p.p95)),
        ("p99", J::Num(p.p99)),
        ("p999", J::Num(p.p999)),
        ("p9999", J::Num(p.p9999)),
        ("max", J::Num(p.max)),
    ])
}

/// The percentile curve as [[percentile, µs], ...].
fn curve_json(c: &[(f64, f64)]) -> J {
    J::Arr(
        c.iter()
            .map(|&(q, us)| J::Arr(vec![J::Num(q), J::Num(us)]))
            .collect(),
    )
}

fn summary_json(s: &Summary, latency: bool) -> J {
    let mut v = vec![
        ("messages", J::Int(s.messages)),
        ("bytes", J::Int(s.bytes)),
        ("measured_messages", J::Int(s.measured_messages)),
        ("measured_bytes", J::Int(s.measured_bytes)),
        ("window_s", J::Num(s.window_s)),
        ("msgs_per_s", J::Num(s.msgs_per_s)),
        ("mb_per_s", J::Num(s.mb_per_s)),
    ];
    if latency {
        v.push(("latency_us", latency_json(&s.latency)));
        v.push(("latency_curve_us", curve_json(&s.curve)));
    }
    v.push((
        "actors",
        J::Arr(
            s.per_actor
                .iter()
                .map(|a| {
                    let mut o = vec![
                        ("id", J::Int(a.id as u64)),
                        ("messages", J::Int(a.messages)),
                        ("msgs_per_s", J::Num(a.msgs_per_s)),
                        ("mb_per_s", J::Num(a.mb_per_s)),
                    ];
                    if latency {
                        o.push(("latency_us", latency_json(&a.latency)));
                    }
                    J::Obj(o)
                })
                .collect(),
        ),
    ));
    J::Obj(v)
}

pub fn params_json(info: &RunInfo) -> J {
    let p = info.params;
    let mut v = vec![("broker", J::Str(info.broker_addr.to_owned()))];
    match &p.target {
        Target::Broker(_) => v.push(("spawn_broker", J::Bool(false))),
        Target::Kafka(_) => {
            v.push(("spawn_broker", J::Bool(false)));
            v.push(("protocol", J::Str("kafka".to_owned())));
        }
        Target::Spawn {
            shards,
            fsync_text,
            metrics,
            ..
        } => {
            v.push(("spawn_broker", J::Bool(true)));
            v.push(("shards", J::Int(*shards as u64)));
            v.push(("fsync", J::Str(fsync_text.clone())));
            v.push(("broker_metrics", J::Bool(*metrics)));
        }
    }
    if let Some(d) = &info.data_dir {
        v.push(("data_dir", J::Str(d.clone())));
    }
    if let Some((fs, dev)) = &info.filesystem {
        v.push(("filesystem", J::Str(fs.clone())));
        v.push(("device", J::Str(dev.clone())));
    }
    v.extend([
        ("producers", J::Int(p.producers as u64)),
        ("consumers", J::Int(p.consumers as u64)),
        ("topic", J::Str(p.topic.clone())),
        ("partitions", J::Int(p.partitions as u64)),
        (
            "message_size",
            if p.message_size.fixed() {
                J::Int(p.message_size.min as u64)
            } else {
                J::Str(format!("{}..{}", p.message_size.min, p.message_size.max))
            },
        ),
        ("message_size_min", J::Int(p.message_size.min as u64)),
        ("message_size_max", J::Int(p.message_size.max as u64)),
        ("key_mode", J::Str(p.key_mode.name().into())),
        ("key_space", p.key_space.map_or(J::Null, J::Int)),
        ("rate", p.rate.map_or(J::Null, J::Int)),
        ("batch_size", J::Int(p.batch_size as u64)),
        (
            "batch_bytes",
            p.batch_bytes.map_or(J::Null, |b| J::Int(b as u64)),
        ),
        ("linger_ms", J::Int(p.linger.as_millis() as u64)),
        (
            "consumer_group",
            p.consumer_group.clone().map_or(J::Null, J::Str),
        ),
        ("pin_cpus", J::Str(p.pin_cpus.name().into())),
        ("max_in_flight", J::Int(p.max_in_flight as u64)),
        ("acks", J::Str(acks_name(p.acks).into())),
        (
            "duration_s",
            match p.stop {
                Stop::After(d) => J::Num(d.as_secs_f64()),
                _ => J::Null,
            },
        ),
        (
            "messages",
            match p.stop {
                Stop::Messages(n) => J::Int(n),
                _ => J::Null,
            },
        ),
        (
            "total_bytes",
            match p.stop {
                Stop::Bytes(n) => J::Int(n),
                _ => J::Null,
            },
        ),
        ("warmup_s", J::Num(p.warmup.as_secs_f64())),
        (
            "from",
            J::Str(
                match p.from {
                    FromArg::Earliest => "earliest",
                    FromArg::Latest => "latest",
                }
                .into(),
            ),
        ),
        (
            "mode",
            J::Str(
                if p.rate.is_some() {
                    "open-loop"
                } else {
                    "closed-loop"
                }
                .into(),
            ),
        ),
        ("argv", J::Arr(std::env::args().map(J::Str).collect())),
    ]);
    J::Obj(v)
}

/// The whole JSON report.
pub fn json(info: &RunInfo, r: &Results) -> String {
    let m = info.machine;
    let mut top = vec![
        ("params", params_json(info)),
        (
            "machine",
            J::Obj(vec![
                ("cpu_model", J::Str(m.cpu_model.clone())),
                ("cores", J::Int(m.cores as u64)),
                ("kernel", J::Str(m.kernel.clone())),
            ]),
        ),
        ("elapsed_s", J::Num(info.elapsed_s)),
        (
            "stopped_by",
            info.stopped_by.map_or(J::Null, |s| J::Str(s.into())),
        ),
    ];
    if let Some(p) = r.produce {
        top.push(("produce", summary_json(p, true)));
    }
    if let Some(c) = r.consume {
        top.push(("consume", summary_json(c, false)));
        if info.params.end_to_end() {
            top.push((
                "end_to_end",
                J::Obj(vec![
                    ("messages", J::Int(c.measured_messages)),
                    ("msgs_per_s", J::Num(c.msgs_per_s)),
                    ("mb_per_s", J::Num(c.mb_per_s)),
                    ("latency_us", latency_json(&c.latency)),
                    ("latency_curve_us", curve_json(&c.curve)),
                ]),
            ));
        }
    }
    top.push((
        "series",
        J::Arr(
            r.series
                .iter()
                .map(|s| {
                    J::Obj(vec![
                        ("t_s", J::Num(s.t_s)),
                        ("warmup", J::Bool(s.warmup)),
                        ("produce_msgs_per_s", J::Num(s.produce_msgs_per_s)),
                        ("produce_mb_per_s", J::Num(s.produce_mb_per_s)),
                        ("produce_p99_us", J::Num(s.produce_p99_us)),
                        ("consume_msgs_per_s", J::Num(s.consume_msgs_per_s)),
                        ("consume_mb_per_s", J::Num(s.consume_mb_per_s)),
                        ("end_to_end_p99_us", J::Num(s.end_to_end_p99_us)),
                    ])
                })
                .collect(),
        ),
    ));
    // OpenMessaging Benchmark's names (rates per second of the series,
    // latencies in ms).
    let ms = |x: f64| J::Num(x / 1000.0);
    top.push((
        "publishRate",
        J::Arr(
            r.series
                .iter()
                .map(|s| J::Num(s.produce_msgs_per_s))
                .collect(),
        ),
    ));
    top.push((
        "consumeRate",
        J::Arr(
            r.series
                .iter()
                .map(|s| J::Num(s.consume_msgs_per_s))
                .collect(),
        ),
    ));
    if let Some(p) = r.produce {
        let l = &p.latency;
        top.extend([
            ("aggregatedPublishLatencyAvg", ms(l.mean)),
            ("aggregatedPublishLatency50pct", ms(l.p50)),
            ("aggregatedPublishLatency75pct", ms(l.p75)),
            ("aggregatedPublishLatency95pct", ms(l.p95)),
            ("aggregatedPublishLatency99pct", ms(l.p99)),
            ("aggregatedPublishLatency999pct", ms(l.p999)),
            ("aggregatedPublishLatency9999pct", ms(l.p9999)),
            ("aggregatedPublishLatencyMax", ms(l.max)),
        ]);
    }
    if let (Some(c), true) = (r.consume, info.params.end_to_end()) {
        let l = &c.latency;
        top.extend([
            ("aggregatedEndToEndLatencyAvg", ms(l.mean)),
            ("aggregatedEndToEndLatency50pct", ms(l.p50)),
            ("aggregatedEndToEndLatency75pct", ms(l.p75)),
            ("aggregatedEndToEndLatency95pct", ms(l.p95)),
            ("aggregatedEndToEndLatency99pct", ms(l.p99)),
            ("aggregatedEndToEndLatency999pct", ms(l.p999)),
            ("aggregatedEndToEndLatency9999pct", ms(l.p9999)),
            ("aggregatedEndToEndLatencyMax", ms(l.max)),
        ]);
    }
    top.push((
        "broker_cpu",
        match (r.broker_cpu, broker_cpu_figures(r)) {
            (_, Some((s, produced, consumed, moved))) => J::Obj(vec![
                ("seconds", J::Num(s)),
                ("per_gb_produced", produced.map_or(J::Null, J::Num)),
                ("per_gb_consumed", consumed.map_or(J::Null, J::Num)),
                ("per_gb_moved", J::Num(moved)),
            ]),
            (Usage::Unknown(why), None) => J::Obj(vec![("unknown", J::Str(why.clone()))]),
            (Usage::Seconds(_), None) => J::Obj(vec![("unknown", J::Str("no bytes moved".into()))]),
        },
    ));
    J::Obj(top).render()
}

/// The run in one line: who, how many, what size, what pace, what durability.
pub fn run_line(info: &RunInfo) -> String {
    let p = info.params;
    let durability = match &p.target {
        Target::Spawn { fsync_text, .. } => {
            format!("fsync {fsync_text}, acks {}", acks_name(p.acks))
        }
        Target::Broker(_) => format!("fsync (broker's own), acks {}", acks_name(p.acks)),
        Target::Kafka(_) => format!(
            "Kafka protocol, fsync (broker's own), acks {}",
            acks_name(p.acks)
        ),
    };
    let size = if p.message_size.fixed() {
        format!("{} B", p.message_size.min)
    } else {
        format!("{}..{} B", p.message_size.min, p.message_size.max)
    };
    let pace = match p.rate {
        Some(r) if !p.linger.is_zero() => {
            format!("open loop at {r} msg/s, linger {} ms", p.linger.as_millis())
        }
        Some(r) => format!("open loop at {r} msg/s"),
        None => "closed loop".into(),
    };
    let per_batch = match p.batch_bytes {
        Some(b) => format!("{} (at most {b} bytes)", p.batch_size),
        None => p.batch_size.to_string(),
    };
    let group = match &p.consumer_group {
        Some(g) => format!(" in group {g}"),
        None => String::new(),
    };
    format!(
        "shardlog-bench: {} producers, {} consumers{group}, {} partitions, {size} messages, keys {}, {per_batch} per batch, {} in flight, {pace}; {durability}",
        p.producers,
        p.consumers,
        p.partitions,
        match p.key_space {
            Some(n) => format!("{} of {n}", p.key_mode.name()),
            None => p.key_mode.name().to_owned(),
        },
        p.max_in_flight
    )
}

/// The final table, as printed on stdout.
pub fn table(info: &RunInfo, r: &Results) -> String {
    let p = info.params;
    let mut out = String::new();
    let _ = writeln!(out, "{}", run_line(info));
    if let Some(sig) = info.stopped_by {
        let _ = writeln!(
            out,
            "stopped early by {sig} after {:.1} s: partial results",
            info.elapsed_s
        );
    }
    let m = info.machine;
    let _ = writeln!(
        out,
        "machine: {} ({} cores), {}",
        m.cpu_model, m.cores, m.kernel
    );
    let _ = writeln!(
        out,
        "{:<11} {:>11} {:>12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "",
        "messages",
        "msgs/s",
        "MiB/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "p99.99 us",
        "max us",
        "window s"
    );
    let mut row = |name: &str, s: &Summary, l: Option<&Percentiles>| {
        let f = |x: f64| format!("{x:.1}");
        let (a, b, c, d, e, g) = match l {
            Some(l) => (
                f(l.p50),
                f(l.p90),
                f(l.p99),
                f(l.p999),
                f(l.p9999),
                f(l.max),
            ),
            None => Default::default(),
        };
        let _ = writeln!(
            out,
            "{name:<11} {:>11} {:>12.0} {:>9.1} {a:>10} {b:>10} {c:>10} {d:>10} {e:>10} {g:>10} {:>10.2}",
            s.messages, s.msgs_per_s, s.mb_per_s, s.window_s
        );
    };
    if let Some(s) = r.produce {
        row("produce", s, Some(&s.latency));
    }
    if let Some(s) = r.consume {
        row("consume", s, None);
        if p.end_to_end() {
            row("end-to-end", s, Some(&s.latency));
        }
    }
    if let Some(line) = broker_cpu_line(r) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// The broker's CPU against the bytes, in words: None when the run did not
/// ask for it.
pub fn broker_cpu_line(r: &Results) -> Option<String> {
    match (r.broker_cpu, broker_cpu_figures(r)) {
        (_, Some((s, Some(g), None, _))) => Some(format!(
            "broker CPU: {s:.2} s, {g:.3} CPU-s per GB produced"
        )),
        (_, Some((s, None, Some(g), _))) => Some(format!(
            "broker CPU: {s:.2} s, {g:.3} CPU-s per GB consumed"
        )),
        (_, Some((s, _, _, g))) => Some(format!(
            "broker CPU: {s:.2} s, {g:.3} CPU-s per GB moved (produced + consumed)"
        )),
        (Usage::Unknown(why), None) => Some(format!("broker CPU: unknown ({why})")),
        (Usage::Seconds(_), None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped_and_numbers_finite() {
        let j = J::Obj(vec![
            ("s", J::Str("a\"b\\c\n\u{1}".into())),
            ("x", J::Num(f64::NAN)),
            ("y", J::Num(1.23456)),
            ("a", J::Arr(vec![])),
        ]);
        let s = j.render();
        assert!(s.contains(r#""s": "a\"b\\c\n\u0001""#), "{s}");
        assert!(s.contains(r#""x": null"#), "{s}");
        assert!(s.contains(r#""y": 1.235"#), "{s}");
        assert!(s.contains(r#""a": []"#), "{s}");
    }
}
