//! The broker's CPU time over a run, so the report can say what each GB
//! moved cost the broker (CPU-seconds per GB), the figure that compares
//! brokers on one box.
//!
//! Owns: reading it from wherever the broker is: a separate broker's
//! `process_cpu_seconds_total` on its `/metrics` endpoint (`--broker-http`),
//! or, for a broker spawned in this process, the process's CPU time less
//! what this tool's own threads used (each actor reports its thread's CPU
//! time when it ends; io_uring's worker threads count as the broker's).
//!
//! Must never: fail a run: a broker whose CPU cannot be read gets no figure
//! and a note saying why.

use std::time::Duration;

/// Where the broker's CPU time is read.
#[derive(Debug, Clone)]
pub enum Source {
    /// `process_cpu_seconds_total` from `http://ADDR/metrics`.
    Metrics(String),
    /// This process, less this tool's threads.
    ThisProcess,
    /// A process on this host, read from /proc/PID/stat (`--broker-pid`).
    Pid(u32),
}

/// CPU-seconds this thread has used (CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu_s() -> f64 {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU-seconds every thread of this process has used, the exited ones too.
pub fn process_cpu_s() -> f64 {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

impl Source {
    /// The reading now: the broker's CPU-seconds so far (for `ThisProcess`,
    /// the whole process: the caller subtracts its threads), or why not.
    pub fn read(&self) -> Result<f64, String> {
        match self {
            Source::ThisProcess => Ok(process_cpu_s()),
            Source::Metrics(addr) => scrape(addr),
            Source::Pid(pid) => proc_cpu_s(*pid),
        }
    }
}

/// `process_cpu_seconds_total` from a Prometheus text page at
/// `addr/metrics` (`IP:PORT`, or `https://IP:PORT` with --tls-ca), within
/// a second.
fn scrape(addr: &str) -> Result<f64, String> {
    let (status, page) = shardlog::http::get(addr, "/metrics", Duration::from_secs(1))
        .map_err(|e| format!("--broker-http {addr}: {e}"))?;
    if status != 200 {
        return Err(format!("--broker-http {addr}: /metrics answered {status}"));
    }
    parse_cpu(&page).ok_or_else(|| format!("no process_cpu_seconds_total at {addr}/metrics"))
}

/// User plus system CPU seconds of process `pid` (/proc/PID/stat fields 14
/// and 15, in clock ticks; the command name before them may hold spaces).
fn proc_cpu_s(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("--broker-pid {pid}: {e}"))?;
    parse_stat(&stat).ok_or_else(|| format!("--broker-pid {pid}: unreadable /proc/{pid}/stat"))
}

fn parse_stat(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) is index 11 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| (utime + stime) / hz as f64)
}

fn parse_cpu(page: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
        .and_then(|v| v.trim().parse().ok())
}

/// What the broker's CPU did over a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Usage {
    /// CPU-seconds the broker used during the run.
    Seconds(f64),
    /// Not known, and why.
    Unknown(String),
}

impl Usage {
    /// CPU-seconds per GB (10^9 bytes) of `bytes`.
    pub fn per_gb(&self, bytes: u64) -> Option<f64> {
        match self {
            Usage::Seconds(s) if bytes > 0 => Some(s / (bytes as f64 / 1e9)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_counter_is_found_among_other_series() {
        let page =
            "# HELP process_cpu_seconds_total Total.\n# TYPE process_cpu_seconds_total counter\n\
                    process_cpu_seconds_total 12.75\nprocess_resident_memory_bytes 1\n";
        assert_eq!(parse_cpu(page), Some(12.75));
        assert_eq!(parse_cpu("shardlog_requests_total 3\n"), None);
    }

    #[test]
    fn proc_stat_cpu_is_user_plus_system_ticks() {
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        // A command name with spaces and a parenthesis, as the kernel allows.
        let stat =
            "4242 (java (kafka) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 80 0";
        assert_eq!(parse_stat(stat), Some(300.0 / hz));
        assert!(Source::Pid(std::process::id()).read().unwrap() >= 0.0);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn a_broker_without_metrics_is_an_explained_unknown() {
        // A port nothing listens on (bound then dropped).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = Source::Metrics(addr.to_string()).read().unwrap_err();
        assert!(e.contains(&addr.to_string()), "{e}");
        let e = Source::Metrics("nonsense".into()).read().unwrap_err();
        assert!(e.contains("--broker-http nonsense"), "{e}");
    }

    #[test]
    fn cpu_per_gb_needs_bytes_and_a_reading() {
        assert_eq!(Usage::Seconds(2.0).per_gb(4_000_000_000), Some(0.5));
        assert_eq!(Usage::Seconds(2.0).per_gb(0), None);
        assert_eq!(Usage::Unknown("x".into()).per_gb(1), None);
    }
}
