//! `shardlog serve`: the broker in the foreground until SIGTERM or SIGINT
//! (SIGHUP reloads the TLS certificate and key).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use shardlog::config::{Resolved, ServeArgs};
use shardlog::server::Broker;

pub(super) fn serve(a: ServeArgs) -> Result<()> {
    let resolved = Resolved::resolve(a.config.as_deref(), std::env::vars(), &a.flags())?;
    if a.print_config {
        print!("{}", resolved.to_toml());
        return Ok(());
    }
    let settings = resolved.settings()?;
    let filter = resolved.log_filter(std::env::var("RUST_LOG").ok());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colors only on a terminal: log files and pipes get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let shards = settings
        .shards
        .unwrap_or_else(|| shardlog::rt::allowed_cpus().len().clamp(1, 256) as u16);
    let mut config = settings.broker_config(shards)?;
    config.hold_recovery_until = a.hold_recovery_until.clone();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("cannot create {}", settings.data_dir.display()))?;
    // Block SIGTERM/SIGINT before any thread starts, so every thread inherits
    // the mask and only the waiter thread below receives them.
    let signals = block_stop_signals()?;
    // The HTTP endpoint comes up first: /healthz answers 503 while the shards
    // recover their logs.
    let http = match settings.http_listen {
        None => None,
        Some(addr) => {
            let tls = match (&settings.tls_files, settings.http_tls) {
                (Some(files), true) => Some(
                    shardlog::http::HttpTls::new(files.clone(), config.tls_reload.clone())
                        .context("http-tls")?,
                ),
                _ => None,
            };
            Some(
                shardlog::http::serve(addr, config.metrics.clone(), tls)
                    .with_context(|| format!("cannot listen on {addr} (http-listen)"))?,
            )
        }
    };
    // The signal thread runs from the start: a SIGTERM during recovery of a
    // large log stops the broker too.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let reload = config.tls_reload.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let sig = wait_for_signal(&signals);
            if sig == libc::SIGHUP {
                // Each shard reads the TLS files again at its next handshake;
                // connections already open keep theirs.
                tracing::info!("SIGHUP: reloading the TLS certificate and key");
                reload.bump();
                continue;
            }
            tracing::info!(signal = sig, "stop requested");
            stop2.store(true, Ordering::Relaxed);
            return;
        })?;
    let shard_ports = config.shard_port_base.map_or("off".to_owned(), |b| {
        format!("{b}..={}", b as u32 + shards as u32 - 1)
    });
    let kafka = config
        .kafka_listen
        .map_or("off".to_owned(), |a| a.to_string());
    let kafka_ports = config.kafka_port_base.map_or("off".to_owned(), |b| {
        format!("{b}..={}", b as u32 + shards as u32 - 1)
    });
    let fsync = format!("{:?}", config.fsync);
    let cpus = format!("{:?}", shardlog::rt::allowed_cpus());
    let metrics_on = config.metrics.enabled();
    if config.authorizer && !config.native_authenticates() {
        tracing::warn!(
            "--authorizer acl checks the Kafka listener only: the native listener authenticates \
             no one (no --native-sasl-enabled-mechanisms, no mTLS), so it is not checked; keep it \
             on a trusted address"
        );
    }
    let broker = Broker::start_with_stop(config, stop)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        shards,
        cpus = %cpus,
        data_dir = %settings.data_dir.display(),
        fsync = %fsync,
        listen = %broker.local_addr,
        shard_ports = %shard_ports,
        kafka = %kafka,
        kafka_ports = %kafka_ports,
        http = %http.map_or("off".to_owned(), |a| a.to_string()),
        metrics = metrics_on,
        "shardlog listening"
    );
    broker.join().context("broker stopped with an error")?;
    tracing::info!("shardlog stopped cleanly");
    Ok(())
}

fn block_stop_signals() -> Result<libc::sigset_t> {
    // SAFETY: plain libc calls on a sigset we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!("pthread_sigmask failed: {rc}");
        }
        Ok(set)
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> i32 {
    let mut sig = 0;
    // SAFETY: sigwait on a set of blocked signals.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}
