//! Shared helpers for tests that start the real `shardlog` binary.
//!
//! Every process started here has a deadline and is killed when its guard is
//! dropped, also when the test fails or panics: a test never hangs CI.

#![allow(dead_code)]

pub mod kafka;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shardlog");

/// A data directory on a real disk under target/ (O_DIRECT needs one).
pub fn data_dir() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix("it-")
        .tempdir_in(base)
        .unwrap()
}

/// A port nobody listens on now, never handed out before in this process.
/// Tests in one binary run in parallel and each binds its port only when
/// its broker starts: two tests given the same released port would race
/// for it, and the loser's broker exits while the test talks to the
/// winner's (CI saw a Kafka listener "not up" for a minute that way).
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A running `shardlog serve`; killed on drop.
pub struct Broker {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl Broker {
    pub fn start(data_dir: &Path, extra: &[&str]) -> Broker {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_on(data_dir, addr, extra)
    }

    pub fn start_on(data_dir: &Path, addr: SocketAddr, extra: &[&str]) -> Broker {
        let mut b = Self::spawn_on(data_dir, addr, extra);
        b.wait_ready(Duration::from_secs(30));
        b
    }

    /// Starts the broker without waiting for it to listen (it may be
    /// recovering); still killed on drop.
    pub fn spawn_on(data_dir: &Path, addr: SocketAddr, extra: &[&str]) -> Broker {
        let log = data_dir.with_extension(format!("{}.log", addr.port()));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args([
                "serve",
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--listen",
                &addr.to_string(),
            ])
            .args(extra)
            // Per-shard ports (listen port + 1 + id by default) could collide
            // with another test's free port: off unless a test asks for them.
            .args(if extra.contains(&"--shard-port-base") {
                &[][..]
            } else {
                &["--shard-port-base", "0"][..]
            })
            // The Kafka listener's default port (9092, and 9093.. per
            // shard) is one for the whole host: off unless a test asks.
            .args(if extra.contains(&"--kafka-listen") {
                &[][..]
            } else {
                &["--kafka-listen", "off"][..]
            })
            .args(if extra.contains(&"--kafka-port-base") {
                &[][..]
            } else {
                &["--kafka-port-base", "0"][..]
            })
            // Kafka's 3 s initial rebalance delay would add 3 s to each
            // group a test forms: none unless a test asks for it.
            .args(if extra.contains(&"--group-initial-rebalance-delay-ms") {
                &[][..]
            } else {
                &["--group-initial-rebalance-delay-ms", "0"][..]
            })
            // The metrics endpoint's default port is one for the whole host:
            // off unless a test asks for it.
            .args(if extra.contains(&"--http-listen") {
                &[][..]
            } else {
                &["--http-listen", "off"][..]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start shardlog serve");
        Broker {
            child: Some(child),
            addr,
            data_dir: data_dir.to_owned(),
            log,
        }
    }

    /// Waits (bounded) until the broker accepts connections.
    pub fn wait_ready(&mut self, deadline: Duration) {
        let start = Instant::now();
        loop {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("broker exited early with {status}; log:\n{}", self.log());
            }
            if start.elapsed() > deadline {
                panic!("broker not ready within {deadline:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (bounded) until this broker's Kafka listener at `addr`
    /// accepts connections; fails at once, with the log, if it exited.
    pub fn wait_kafka(&mut self, addr: SocketAddr) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("broker exited early with {status}; log:\n{}", self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "kafka listener {addr} not up within 60 s; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn broker_arg(&self) -> String {
        self.addr.to_string()
    }

    /// Sends `sig` (SIGHUP: reload the TLS files).
    pub fn signal(&self, sig: i32) {
        let child = self.child.as_ref().expect("broker running");
        unsafe { libc::kill(child.id() as i32, sig) };
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("broker running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        match wait_deadline(&mut child, deadline) {
            Some(s) => s,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "broker did not stop within {deadline:?} after SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// SIGKILL, as a crash. Returns once the address refuses connections:
    /// the kernel tears a dead process's io_uring down (and with it the
    /// listening sockets its pending accepts hold) a moment after the exit,
    /// and a test that connects meanwhile would reach the dead broker's
    /// backlog instead of the next one.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            let start = Instant::now();
            while TcpStream::connect_timeout(&self.addr, Duration::from_millis(100)).is_ok()
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("KEEP_BROKER_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Waits for `child` to exit, up to `deadline`; None if it is still running.
pub fn wait_deadline(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// Runs a `shardlog` command with `stdin`, killing it after `deadline`.
pub fn run(args: &[&str], stdin: &[u8], deadline: Duration) -> Output {
    run_env(args, &[], stdin, deadline)
}

/// `run` with environment variables set.
pub fn run_env(args: &[&str], env: &[(&str, &str)], stdin: &[u8], deadline: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shardlog");
    let mut sin = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    let mut sout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = sout.read_to_end(&mut v);
        v
    });
    let mut serr = child.stderr.take().unwrap();
    let ereader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = serr.read_to_string(&mut s);
        s
    });
    let status = match wait_deadline(&mut child, deadline) {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("shardlog {args:?} did not finish within {deadline:?}");
        }
    };
    let _ = writer.join();
    Output {
        status,
        stdout: reader.join().unwrap(),
        stderr: ereader.join().unwrap(),
    }
}

/// The log text without ANSI colour codes (a broker logging to a terminal
/// colours its levels; to a file it does not, but tests read either).
pub fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            // CSI: ESC [ parameters... final byte in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// One scrape of `/metrics` at `http`, parsed.
pub fn scrape(http: &str) -> shardlog::top::Samples {
    let (status, body) =
        shardlog::http::get(http, "/metrics", Duration::from_secs(5)).expect("scrape /metrics");
    assert_eq!(status, 200, "{body}");
    shardlog::top::parse(&body)
}

/// Sum of a metric over every series whose labels include `with`.
pub fn total(s: &shardlog::top::Samples, name: &str, with: &[(&str, &str)]) -> f64 {
    s.iter()
        .filter(|((n, l), _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// What a bounded run of an outside program printed, and how it ended.
pub struct Bounded {
    /// None: still running at the deadline, and killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (stdin closed, both pipes drained on threads so a full pipe
/// never stalls it) until it exits or `deadline` passes, then kills it.
/// `tick` runs every 100 ms while it runs (a test's side of a protocol
/// with the program, e.g. restarting the broker when asked).
pub fn run_bounded(cmd: &mut Command, deadline: Duration, mut tick: impl FnMut()) -> Bounded {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tick();
        std::thread::sleep(Duration::from_millis(100));
    };
    Bounded {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}
