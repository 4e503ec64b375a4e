//! `--html FILE`: one self-contained page (it must open offline: no
//! scripts, no fonts, no external anything) with the final table, the
//! throughput over time (msgs/s and MiB/s, produce and consume), the latency
//! percentile curves (produce-acknowledge and end-to-end, percentile on a
//! log scale of 1/(1 - q) from p50 to p99.999) and the parameters and
//! machine. Charts are inline SVG drawn here.
//!
//! Must never: reference anything outside the page.

use std::fmt::Write as _;

use crate::report::{params_json, table, Results, RunInfo};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
/// Plot margins: left (y labels), right, top (title), bottom (x labels).
const MARGIN: (f64, f64, f64, f64) = (70.0, 20.0, 30.0, 45.0);
const PRODUCE_COLOR: &str = "#1f77b4";
const CONSUME_COLOR: &str = "#d62728";

struct Line<'a> {
    name: &'a str,
    color: &'a str,
    /// (x, y) in data units (x already transformed for log axes).
    points: Vec<(f64, f64)>,
}

/// x axis ticks: (position in data units, label).
type Ticks = Vec<(f64, String)>;

/// Escapes text for HTML and SVG.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A "nice" upper bound and step for a y axis reaching `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    if max <= 0.0 || !max.is_finite() {
        return (1.0, 0.25);
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 || x == 0.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// One line chart as an `<svg>` element.
fn chart(title: &str, x_label: &str, y_label: &str, lines: &[Line], x_ticks: &Ticks) -> String {
    let (ml, mr, mt, mb) = MARGIN;
    let (pw, ph) = (WIDTH - ml - mr, HEIGHT - mt - mb);
    let all = || lines.iter().flat_map(|l| l.points.iter());
    let x_min = all()
        .map(|p| p.0)
        .chain(x_ticks.iter().map(|t| t.0))
        .fold(f64::INFINITY, f64::min);
    let x_max = all()
        .map(|p| p.0)
        .chain(x_ticks.iter().map(|t| t.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
        (x_min, x_max)
    } else {
        (0.0, 1.0)
    };
    let (y_max, y_step) = nice_axis(all().map(|p| p.1).fold(0.0, f64::max));
    let sx = |x: f64| ml + (x - x_min) / (x_max - x_min) * pw;
    let sy = |y: f64| mt + ph - y / y_max * ph;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{t}"><text x="{cx}" y="18" text-anchor="middle" font-weight="bold">{t}</text>"#,
        t = escape(title),
        cx = WIDTH / 2.0
    );
    // y grid and labels.
    let mut y = 0.0;
    while y <= y_max + y_step / 2.0 {
        let py = sy(y);
        let _ = write!(
            s,
            r##"<line x1="{ml}" x2="{x2}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="11">{l}</text>"##,
            x2 = ml + pw,
            tx = ml - 6.0,
            ty = py + 4.0,
            l = fmt_num(y)
        );
        y += y_step;
    }
    for (x, label) in x_ticks {
        let px = sx(*x);
        let _ = write!(
            s,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{mt}" y2="{y2}" stroke="#eee"/><text x="{px:.1}" y="{ty}" text-anchor="middle" font-size="11">{l}</text>"##,
            y2 = mt + ph,
            ty = mt + ph + 15.0,
            l = escape(label)
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#888"/><text x="{cx}" y="{ly}" text-anchor="middle" font-size="12">{xl}</text><text transform="translate(14 {cy}) rotate(-90)" text-anchor="middle" font-size="12">{yl}</text>"##,
        cx = ml + pw / 2.0,
        ly = HEIGHT - 8.0,
        cy = mt + ph / 2.0,
        xl = escape(x_label),
        yl = escape(y_label)
    );
    for (i, l) in lines.iter().enumerate() {
        if l.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y.min(y_max))))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{p}"/>"#,
            c = l.color,
            p = pts.join(" ")
        );
        for &(x, y) in &l.points {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{c}"><title>{}: {} at {}</title></circle>"#,
                sx(x),
                sy(y.min(y_max)),
                escape(l.name),
                fmt_num(y),
                fmt_num(x),
                c = l.color
            );
        }
        let lx = ml + 10.0 + i as f64 * 170.0;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{ry}" width="12" height="12" fill="{c}"/><text x="{tx}" y="{ty}" font-size="12">{n}</text>"#,
            ry = mt + 6.0,
            tx = lx + 16.0,
            ty = mt + 16.0,
            c = l.color,
            n = escape(l.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// x position of percentile `pct` (in %): log10 of 1/(1 - q).
fn pct_x(pct: f64) -> f64 {
    -(1.0 - pct / 100.0).max(1e-12).log10()
}

/// The seconds a chart draws: all but a last, partial one. Its rate is
/// over a fraction of a second in which actors were already stopping, so
/// drawn it is a cliff to zero that the run never had (the JSON keeps it).
fn drawn(series: &[crate::stats::Second]) -> &[crate::stats::Second] {
    let full = crate::workload::PROGRESS_EVERY.as_secs_f64() * 0.9;
    match series {
        [.., a, b] if b.t_s - a.t_s < full => &series[..series.len() - 1],
        [only] if only.t_s < full => &[],
        _ => series,
    }
}

/// The whole page.
pub fn page(info: &RunInfo, r: &Results) -> String {
    let p = info.params;
    let series = drawn(r.series);
    let time_ticks: Ticks = {
        let end = series.last().map_or(1.0, |s| s.t_s.ceil().max(1.0));
        let step = (end / 10.0).ceil().max(1.0);
        let mut v = Vec::new();
        let mut t = 0.0;
        while t <= end {
            v.push((t, format!("{t:.0}")));
            t += step;
        }
        v
    };
    let series_line = |name, color, f: &dyn Fn(&crate::stats::Second) -> f64| Line {
        name,
        color,
        points: series.iter().map(|s| (s.t_s, f(s))).collect(),
    };
    let mut msgs = Vec::new();
    let mut mib = Vec::new();
    if p.producers > 0 {
        msgs.push(series_line("produce msgs/s", PRODUCE_COLOR, &|s| {
            s.produce_msgs_per_s
        }));
        mib.push(series_line("produce MiB/s", PRODUCE_COLOR, &|s| {
            s.produce_mb_per_s
        }));
    }
    if p.consumers > 0 {
        msgs.push(series_line("consume msgs/s", CONSUME_COLOR, &|s| {
            s.consume_msgs_per_s
        }));
        mib.push(series_line("consume MiB/s", CONSUME_COLOR, &|s| {
            s.consume_mb_per_s
        }));
    }
    let mut lat = Vec::new();
    let curve = |c: &[(f64, f64)]| c.iter().map(|&(q, us)| (pct_x(q), us)).collect();
    if let Some(s) = r.produce {
        lat.push(Line {
            name: "produce-ack",
            color: PRODUCE_COLOR,
            points: curve(&s.curve),
        });
    }
    if let (Some(s), true) = (r.consume, p.end_to_end()) {
        lat.push(Line {
            name: "end-to-end",
            color: CONSUME_COLOR,
            points: curve(&s.curve),
        });
    }
    let pct_ticks: Ticks = [50.0, 90.0, 99.0, 99.9, 99.99, 99.999]
        .iter()
        .map(|&q| (pct_x(q), format!("p{q}")))
        .collect();

    let mut h = String::new();
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>shardlog-bench report</title>\n\
         <style>body{font-family:sans-serif;margin:2em;max-width:1100px}pre{background:#f6f6f6;padding:1em;overflow-x:auto}\
         svg{display:block;margin:1em 0;font-family:sans-serif}.warn{color:#b00}</style></head><body>\n",
    );
    h.push_str("<h1>shardlog-bench</h1>\n");
    if let Some(sig) = info.stopped_by {
        let _ = writeln!(
            h,
            "<p class=\"warn\">Stopped early by {} after {:.1} s: partial results.</p>",
            escape(sig),
            info.elapsed_s
        );
    }
    let _ = writeln!(
        h,
        "<h2>Results</h2>\n<pre>{}</pre>",
        escape(&table(info, r))
    );
    h.push_str("<h2>Throughput over time</h2>\n");
    if series.is_empty() {
        h.push_str("<p>The run was shorter than one progress interval: no time series.</p>\n");
    }
    h.push_str(&chart(
        "Messages per second",
        "seconds since start",
        "msgs/s",
        &msgs,
        &time_ticks,
    ));
    h.push_str(&chart(
        "MiB per second",
        "seconds since start",
        "MiB/s",
        &mib,
        &time_ticks,
    ));
    h.push_str("<h2>Latency percentiles</h2>\n");
    h.push_str(&chart(
        "Latency by percentile (after warmup)",
        "percentile (log scale of 1/(1-q))",
        "µs",
        &lat,
        &pct_ticks,
    ));
    let m = info.machine;
    let _ = writeln!(
        h,
        "<h2>Machine</h2>\n<pre>CPU: {}\ncores: {}\nkernel: {}</pre>",
        escape(&m.cpu_model),
        m.cores,
        escape(&m.kernel)
    );
    let _ = writeln!(
        h,
        "<h2>Parameters</h2>\n<pre>{}</pre>",
        escape(&params_json(info).render())
    );
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_partial_second_is_not_drawn() {
        let at = |t_s| crate::stats::Second {
            t_s,
            warmup: false,
            produce_msgs_per_s: 1.0,
            produce_mb_per_s: 1.0,
            produce_p99_us: 1.0,
            consume_msgs_per_s: 1.0,
            consume_mb_per_s: 1.0,
            end_to_end_p99_us: 1.0,
        };
        let s = [at(1.0), at(2.0), at(2.3)];
        assert_eq!(drawn(&s).len(), 2);
        let whole = [at(1.0), at(2.0), at(3.0)];
        assert_eq!(drawn(&whole).len(), 3);
        assert!(drawn(&[at(0.4)]).is_empty());
        assert_eq!(drawn(&[at(1.0)]).len(), 1);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn axes_are_nice_and_cover_the_data() {
        let (max, step) = nice_axis(873.0);
        assert!((873.0..=1000.0).contains(&max), "{max}");
        assert!((max / step).round() >= 3.0);
        assert_eq!(nice_axis(0.0), (1.0, 0.25));
    }

    #[test]
    fn percentiles_map_to_decades() {
        assert!((pct_x(99.0) - 2.0).abs() < 1e-9);
        assert!((pct_x(99.999) - 5.0).abs() < 1e-6);
        assert!(pct_x(50.0) < pct_x(90.0));
    }

    #[test]
    fn a_chart_is_one_svg_with_its_lines() {
        let s = chart(
            "t",
            "x",
            "y",
            &[Line {
                name: "a<b",
                color: "#000",
                points: vec![(0.0, 1.0), (1.0, 3.0)],
            }],
            &vec![(0.0, "0".into()), (1.0, "1".into())],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("<polyline") && s.contains("a&lt;b"));
    }
}
