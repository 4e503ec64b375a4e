//! This process's CPU time and memory, read from `/proc/self`, for the
//! Prometheus process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, ...) that `/metrics` exports beside the
//! broker's own, so a scrape gives the broker's CPU per byte moved.
//!
//! Owns: parsing `/proc/self/stat`, `/proc/self/statm` and `/proc/self/fd`,
//! and the text of the standard process series.
//!
//! Must never: be called on the data path (it reads files; `/metrics` calls
//! it on the HTTP thread, once per scrape).

use std::fmt::Write as _;

/// One reading of the process's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStat {
    /// User plus system CPU time of every thread, in seconds.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    /// Seconds since the Unix epoch at which the process started.
    pub start_time_seconds: f64,
    pub threads: u64,
    pub open_fds: u64,
}

/// Reads the current process's counters; None where /proc is unreadable
/// (the series are then left out, not reported as zero).
pub fn read() -> Option<ProcStat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    // SAFETY: sysconf only reads a constant of the running system.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    parse(
        &stat,
        &statm,
        &uptime,
        ticks as u64,
        page as u64,
        now,
        open_fds,
    )
}

/// The pure half of `read`: `stat`, `statm` and `uptime` are the files'
/// contents; `now` is the wall clock in seconds since the epoch.
fn parse(
    stat: &str,
    statm: &str,
    uptime: &str,
    ticks_per_second: u64,
    page_bytes: u64,
    now: f64,
    open_fds: u64,
) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may hold spaces and
    // parentheses itself: the fields that follow start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is f[0]: field n is f[n - 3].
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let utime = field(14)?;
    let stime = field(15)?;
    let threads = field(20)?;
    let start_ticks = field(22)?;
    let virtual_bytes = field(23)?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let uptime_s: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    let tps = ticks_per_second as f64;
    Some(ProcStat {
        cpu_seconds: (utime + stime) as f64 / tps,
        resident_bytes: resident_pages * page_bytes,
        virtual_bytes,
        start_time_seconds: now - uptime_s + start_ticks as f64 / tps,
        threads,
        open_fds,
    })
}

/// The standard process series in Prometheus text format (no prefix: the
/// names every dashboard and `rate(process_cpu_seconds_total[1m])` expect).
pub fn encode(p: &ProcStat) -> String {
    let series: [(&str, &str, &str, String); 6] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            format!("{:.2}", p.cpu_seconds),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            p.resident_bytes.to_string(),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            p.virtual_bytes.to_string(),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            format!("{:.2}", p.start_time_seconds),
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            p.threads.to_string(),
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            p.open_fds.to_string(),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line from a broker, its command name made hostile.
    const STAT: &str = "4242 (shard) 0 (x)) S 1 4242 4242 0 -1 4194560 9713 0 0 0 \
        1250 375 0 0 20 0 3 0 100 1234567168 51200 18446744073709551615 1 1 0 0 0 0 0 \
        4096 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn cpu_memory_and_start_come_from_the_right_fields() {
        let p = parse(
            STAT,
            "301490 51200 2000 1 0 60000 0\n",
            "1000.00 1900.00\n",
            100,
            4096,
            1_700_000_000.0,
            12,
        )
        .unwrap();
        assert_eq!(p.cpu_seconds, 16.25); // (1250 + 375) ticks at 100 Hz
        assert_eq!(p.resident_bytes, 51200 * 4096);
        assert_eq!(p.virtual_bytes, 1234567168);
        assert_eq!(p.threads, 3);
        // Booted 1000 s ago, started 1 s (100 ticks) after boot.
        assert_eq!(p.start_time_seconds, 1_700_000_000.0 - 1000.0 + 1.0);
        assert_eq!(p.open_fds, 12);
        let text = encode(&p);
        assert!(
            text.contains("\nprocess_cpu_seconds_total 16.25\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn a_truncated_stat_is_no_reading() {
        assert_eq!(
            parse("4242 (shard) S 1 2", "1 2", "1 1", 100, 4096, 0.0, 0),
            None
        );
        assert_eq!(parse("garbage", "1 2", "1 1", 100, 4096, 0.0, 0), None);
    }

    #[test]
    fn this_process_reads() {
        let p = read().expect("/proc/self is readable on Linux");
        assert!(
            p.resident_bytes > 0 && p.threads >= 1 && p.open_fds >= 1,
            "{p:?}"
        );
    }
}
