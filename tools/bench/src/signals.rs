//! Ctrl-C and SIGTERM: the first one asks the run to stop gracefully
//! (producers stop claiming, consumers drain what was acknowledged, the
//! partial report is printed, the spawned broker stopped and its directory
//! removed); a second one makes every actor abort at once (still cleaning up).
//!
//! How: SIGINT and SIGTERM are blocked in `main` before any thread starts
//! (every thread inherits the mask), and one waiter thread takes them with
//! `sigwait`, as the broker's own binary does. Nothing runs in a signal
//! handler.
//!
//! Must never: exit the process itself (cleanup belongs to `main`).

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// Signals received so far.
static RECEIVED: AtomicU32 = AtomicU32::new(0);
/// The first signal's number (0: none).
static FIRST: AtomicI32 = AtomicI32::new(0);

/// A stop was asked for: finish gracefully.
pub fn stop_requested() -> bool {
    RECEIVED.load(Ordering::Relaxed) >= 1
}

/// Asked twice: abort now.
pub fn abort_requested() -> bool {
    RECEIVED.load(Ordering::Relaxed) >= 2
}

/// The signal that stopped the run, if any (libc::SIGINT or SIGTERM).
pub fn stopped_by() -> Option<i32> {
    match FIRST.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Blocks SIGINT and SIGTERM in this thread (call before starting any
/// other) and starts the waiter thread.
pub fn install() -> std::io::Result<()> {
    // SAFETY: plain sigset manipulation on a zeroed, owned set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: sigwait on a set of signals blocked in every thread.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc != 0 {
                continue;
            }
            let _ = FIRST.compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
            let n = RECEIVED.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 {
                eprintln!(
                    "shardlog-bench: {}: stopping; the report covers what ran (again to abort)",
                    name(sig)
                );
            }
        })?;
    Ok(())
}
