//! `--html FILE`: one self-contained page (it must open offline: no
//! scripts, no fonts, no external anything) with the final table, the
//! throughput over time (msgs/s and MiB/s, produce and consume), the latency
//! percentile curves (produce-acknowledge and end-to-end, percentile on a
//! log scale of 1/(1 - q) from p50 to p99.999) and the parameters and
//! machine. Charts are inline SVG drawn here.
//!
//! Must never: reference anything outside the page.

use std::fmt::Write as _;

use crate::report::{broker_cpu_line, params_json, run_line, Results, RunInfo};
use crate::stats::{Percentiles, Summary};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
/// Plot margins: left (y labels), right, top (title, then the legend's
/// row: a legend never sits on the data), bottom (x labels).
const MARGIN: (f64, f64, f64, f64) = (70.0, 20.0, 50.0, 45.0);
const PRODUCE: Style = Style {
    color: "#1f77b4",
    dash: None,
};
/// Dashed and in another colour: produce and consume at the same rate draw
/// on top of each other, and both must still show.
const CONSUME: Style = Style {
    color: "#d62728",
    dash: Some("7 4"),
};

#[derive(Clone, Copy)]
struct Style {
    color: &'static str,
    /// An SVG stroke-dasharray; None: solid.
    dash: Option<&'static str>,
}

struct Line<'a> {
    name: &'a str,
    style: Style,
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
    let mut legend_x = ml;
    for l in lines {
        if l.points.is_empty() {
            continue;
        }
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y.min(y_max))))
            .collect();
        let dash = l
            .style
            .dash
            .map_or(String::new(), |d| format!(r#" stroke-dasharray="{d}""#));
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" stroke-opacity="0.85"{dash} points="{p}"/>"#,
            c = l.style.color,
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
                c = l.style.color
            );
        }
        // The legend: a line sample in the row between title and plot.
        let ly = mt - 12.0;
        let _ = write!(
            s,
            r#"<line x1="{lx}" x2="{lx2}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"{dash}/><text x="{tx}" y="{ty}" font-size="12">{n}</text>"#,
            lx = legend_x,
            lx2 = legend_x + 28.0,
            tx = legend_x + 34.0,
            ty = ly + 4.0,
            c = l.style.color,
            n = escape(l.name)
        );
        legend_x += 34.0 + 7.0 * l.name.chars().count() as f64 + 24.0;
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

/// The results as an HTML table (the text table is wider than a page):
/// the run's line, one row per direction, the broker's CPU per GB.
fn results(info: &RunInfo, r: &Results) -> String {
    let mut h = String::from("<h2>Results</h2>\n");
    let _ = writeln!(h, "<p>{}</p>", escape(&run_line(info)));
    h.push_str(
        "<div class=\"wide\"><table><tr><th></th><th>messages</th><th>msgs/s</th><th>MiB/s</th>\
         <th>p50 µs</th><th>p90 µs</th><th>p99 µs</th><th>p99.9 µs</th><th>p99.99 µs</th>\
         <th>max µs</th><th>window s</th></tr>\n",
    );
    let row = |h: &mut String, name: &str, s: &Summary, l: Option<&Percentiles>| {
        let lat = match l {
            Some(l) => [l.p50, l.p90, l.p99, l.p999, l.p9999, l.max]
                .iter()
                .map(|v| format!("<td>{v:.1}</td>"))
                .collect::<String>(),
            None => "<td></td>".repeat(6),
        };
        let _ = writeln!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{:.0}</td><td>{:.1}</td>{lat}<td>{:.2}</td></tr>",
            s.messages, s.msgs_per_s, s.mb_per_s, s.window_s
        );
    };
    if let Some(s) = r.produce {
        row(&mut h, "produce", s, Some(&s.latency));
    }
    if let Some(s) = r.consume {
        row(&mut h, "consume", s, None);
        if info.params.end_to_end() {
            row(&mut h, "end-to-end", s, Some(&s.latency));
        }
    }
    h.push_str("</table></div>\n");
    if let Some(line) = broker_cpu_line(r) {
        let _ = writeln!(h, "<p><b>{}</b></p>", escape(&line));
    }
    h
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
    let series_line = |name, style, f: &dyn Fn(&crate::stats::Second) -> f64| Line {
        name,
        style,
        points: series.iter().map(|s| (s.t_s, f(s))).collect(),
    };
    let mut msgs = Vec::new();
    let mut mib = Vec::new();
    if p.producers > 0 {
        msgs.push(series_line("produce msgs/s", PRODUCE, &|s| {
            s.produce_msgs_per_s
        }));
        mib.push(series_line("produce MiB/s", PRODUCE, &|s| {
            s.produce_mb_per_s
        }));
    }
    if p.consumers > 0 {
        msgs.push(series_line("consume msgs/s", CONSUME, &|s| {
            s.consume_msgs_per_s
        }));
        mib.push(series_line("consume MiB/s", CONSUME, &|s| {
            s.consume_mb_per_s
        }));
    }
    let mut lat = Vec::new();
    let curve = |c: &[(f64, f64)]| c.iter().map(|&(q, us)| (pct_x(q), us)).collect();
    if let Some(s) = r.produce {
        lat.push(Line {
            name: "produce-ack",
            style: PRODUCE,
            points: curve(&s.curve),
        });
    }
    if let (Some(s), true) = (r.consume, p.end_to_end()) {
        lat.push(Line {
            name: "end-to-end",
            style: CONSUME,
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
         .wide{overflow-x:auto}table{border-collapse:collapse;font-size:14px}\
         th,td{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}\
         th:first-child,td:first-child{text-align:left}\
         svg{display:block;margin:1em 0;font-family:sans-serif;max-width:100%;height:auto}.warn{color:#b00}</style></head><body>\n",
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
    h.push_str(&results(info, r));
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
                style: PRODUCE,
                points: vec![(0.0, 1.0), (1.0, 3.0)],
            }],
            &vec![(0.0, "0".into()), (1.0, "1".into())],
        );
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("<polyline") && s.contains("a&lt;b"));
    }

    #[test]
    fn equal_lines_both_show_and_legends_sit_above_the_plot() {
        let pts = vec![(0.0, 5.0), (1.0, 5.0)];
        let s = chart(
            "t",
            "x",
            "y",
            &[
                Line {
                    name: "produce",
                    style: PRODUCE,
                    points: pts.clone(),
                },
                Line {
                    name: "consume",
                    style: CONSUME,
                    points: pts,
                },
            ],
            &vec![(0.0, "0".into()), (1.0, "1".into())],
        );
        let polylines: Vec<&str> = s.split("<polyline").skip(1).collect();
        assert_eq!(polylines.len(), 2);
        // The same points: only a dash and a colour tell them apart.
        assert!(!polylines[0]
            .split("/>")
            .next()
            .unwrap()
            .contains("dasharray"));
        assert!(polylines[1]
            .split("/>")
            .next()
            .unwrap()
            .contains("dasharray"));
        assert_ne!(PRODUCE.color, CONSUME.color);
        // Every legend sample sits above the plot's top edge.
        let plot_top = MARGIN.2;
        let legends: Vec<f64> = s
            .split("<line ")
            .skip(1)
            .map(|l| &l[..l.find("/>").unwrap()])
            .filter(|l| l.contains("stroke-width=\"2\""))
            .map(|l| {
                let y = l.split("y1=\"").nth(1).unwrap();
                y[..y.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert_eq!(legends.len(), 2, "{s}");
        assert!(legends.iter().all(|&y| y < plot_top), "{legends:?}");
    }
}
