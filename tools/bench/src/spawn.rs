//! `--spawn-broker`: an in-process broker on a temporary data directory,
//! held by a guard that stops it and removes the directory when dropped, so
//! an error anywhere in the run (or a panic) still cleans up.
//!
//! Owns: choosing the directory (never tmpfs: the broker writes with
//! O_DIRECT) and free ports, starting and stopping the broker.
//!
//! Must never: remove a directory it did not create.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use shardlog::partition::FsyncPolicy;
use shardlog::server::{Broker, BrokerConfig, ServerError};

use crate::machine;

/// Tries at finding free ports before giving up (another process may take a
/// port between our check and the broker's bind).
const PORT_ATTEMPTS: usize = 10;

pub struct SpawnedBroker {
    broker: Option<Broker>,
    pub addr: String,
    pub data_dir: PathBuf,
    /// Filesystem type and device under the data directory.
    pub filesystem: (String, String),
}

impl SpawnedBroker {
    pub fn start(
        shards: u16,
        fsync: FsyncPolicy,
        tmp_dir: Option<&Path>,
        metrics: bool,
    ) -> Result<SpawnedBroker> {
        let base = match tmp_dir {
            Some(d) => d.to_path_buf(),
            None => default_base()?,
        };
        std::fs::create_dir_all(&base)
            .with_context(|| format!("cannot create {}", base.display()))?;
        // Absolute, so reports name the directory unambiguously.
        let base = std::fs::canonicalize(&base)
            .with_context(|| format!("cannot resolve {}", base.display()))?;
        let fs = machine::filesystem_of(&base);
        if fs.0 == "tmpfs" || fs.0 == "ramfs" {
            bail!(
                "{} is on {}, which cannot do O_DIRECT: give --tmp-dir on a real disk",
                base.display(),
                fs.0
            );
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let data_dir = base.join(format!("shardlog-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        // From here on the guard owns the directory: any failure removes it.
        let mut guard = SpawnedBroker {
            broker: None,
            addr: String::new(),
            data_dir,
            filesystem: fs,
        };
        let mut last_err = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_ports(shards)?;
            let listen = SocketAddr::from(([127, 0, 0, 1], port));
            let mut cfg = BrokerConfig::new(guard.data_dir.clone(), listen);
            cfg.shards = shards;
            cfg.fsync = fsync;
            cfg.shard_port_base = Some(port + 1);
            cfg.metrics = shardlog::metrics::Metrics::new(shards, metrics);
            match Broker::start(cfg) {
                Ok(b) => {
                    guard.addr = b.local_addr.to_string();
                    guard.broker = Some(b);
                    return Ok(guard);
                }
                Err(e @ ServerError::Listen { .. }) => last_err = Some(e),
                Err(e) => return Err(e).context("cannot start the broker"),
            }
        }
        Err(last_err.map_or_else(|| anyhow::anyhow!("no free ports"), Into::into))
            .context("cannot start the broker")
    }

    /// Stops the broker and removes its directory, reporting failures
    /// (`Drop` does the same silently).
    pub fn stop(mut self) -> Result<()> {
        let r = self.shutdown();
        let rm = std::fs::remove_dir_all(&self.data_dir)
            .with_context(|| format!("cannot remove {}", self.data_dir.display()));
        r.and(rm)
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(b) = self.broker.take() {
            b.stop_flag().store(true, Ordering::SeqCst);
            b.join().context("the broker did not stop cleanly")?;
        }
        Ok(())
    }
}

impl Drop for SpawnedBroker {
    fn drop(&mut self) {
        let _ = self.shutdown();
        if self.data_dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.data_dir) {
                eprintln!("cannot remove {}: {e}", self.data_dir.display());
            }
        }
    }
}

/// The OS temp dir, unless it is tmpfs; then `./target/bench-tmp`.
fn default_base() -> Result<PathBuf> {
    let tmp = std::env::temp_dir();
    let (fs, _) = machine::filesystem_of(&tmp);
    if fs != "tmpfs" && fs != "ramfs" {
        return Ok(tmp);
    }
    Ok(std::env::current_dir()
        .context("no current directory")?
        .join("target")
        .join("bench-tmp"))
}

/// A port P such that P and P+1..=P+shards are free on 127.0.0.1 (the
/// public listener and one per shard).
fn free_ports(shards: u16) -> Result<u16> {
    for _ in 0..100 {
        let p = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if p as u32 + shards as u32 >= 65_000 {
            continue;
        }
        if (1..=shards).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return Ok(p);
        }
    }
    bail!(
        "found no {} consecutive free ports on 127.0.0.1",
        shards + 1
    )
}
