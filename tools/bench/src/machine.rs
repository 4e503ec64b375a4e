//! What machine a run happened on (reports must say it): CPU model, cores,
//! kernel, and the filesystem under a path. Reads /proc and calls `uname`;
//! anything unreadable is reported as "unknown" rather than failing a run.

use std::path::Path;

pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
}

pub fn describe() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::process::Command::new("uname")
        .arg("-srm")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| format!("Linux {}", s.trim()))
        })
        .unwrap_or_else(|| "unknown".into());
    Machine {
        cpu_model,
        cores,
        kernel,
    }
}

/// (filesystem type, device) of the mount holding `path`: the longest mount
/// point in /proc/mounts that contains it.
pub fn filesystem_of(path: &Path) -> (String, String) {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String, String)> = None;
    for line in mounts.lines() {
        let mut f = line.split_whitespace();
        let (Some(dev), Some(point), Some(fs)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        // /proc/mounts escapes spaces as \040.
        let point = point.replace("\\040", " ");
        if path.starts_with(&point) && best.as_ref().is_none_or(|b| point.len() >= b.0) {
            best = Some((point.len(), fs.to_owned(), dev.to_owned()));
        }
    }
    best.map_or_else(
        || ("unknown".into(), "unknown".into()),
        |(_, fs, dev)| (fs, dev),
    )
}
