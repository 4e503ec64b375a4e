//! Why a connection ended, for both front doors: the reason (a
//! `/metrics` label), the line for the log, and the rate limit that keeps
//! a flood of bad clients from filling the disk with warnings.
//!
//! Owns: `Listener`, `CloseReason`, `WarnLimit` and the per-shard limits.
//!
//! Must never: log a warning per connection without a bound.

use std::cell::RefCell;

use crate::rt;

/// Which front door a connection came in on (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Listener {
    Native,
    Kafka,
}

impl Listener {
    #[cfg(test)]
    pub const ALL: [Listener; 2] = [Listener::Native, Listener::Kafka];

    pub fn as_str(self) -> &'static str {
        crate::metrics::LISTENERS[self as usize]
    }
}

/// Why a connection ended (a metrics label and the log line's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum CloseReason {
    /// The client hung up (EOF) after its requests were answered.
    ClientClosed,
    /// No request for `connections.max.idle.ms` and nothing in flight.
    Idle,
    /// A frame was started and then no byte came for the read timeout.
    ReadTimeout,
    /// A length prefix over the frame limit (or negative/zero).
    FrameTooLarge,
    /// A frame that does not decode as a request (or an unknown API).
    BadRequest,
    /// The socket failed (reset, broken pipe).
    IoError,
    /// The broker is stopping.
    Stopping,
    /// Refused at accept: the shard is at `--max-connections`.
    ConnectionLimit,
    /// SASL authentication failed (wrong password, unknown user, a broken
    /// exchange): answered, then closed, as Kafka does.
    AuthFailed,
    /// A request other than ApiVersions and SASL's before authenticating
    /// on a listener that requires it.
    Unauthenticated,
    /// The TLS handshake failed (plaintext to a TLS port, an unknown CA, a
    /// client certificate missing or refused, garbage) or stalled past
    /// its deadline.
    TlsFailed,
    /// A request other than SASL's on a connection whose SASL session
    /// expired without re-authentication (`connections.max.reauth.ms`,
    /// KIP-368), as Kafka closes it.
    SessionExpired,
}

impl CloseReason {
    pub const ALL: [CloseReason; 12] = [
        CloseReason::ClientClosed,
        CloseReason::Idle,
        CloseReason::ReadTimeout,
        CloseReason::FrameTooLarge,
        CloseReason::BadRequest,
        CloseReason::IoError,
        CloseReason::Stopping,
        CloseReason::ConnectionLimit,
        CloseReason::AuthFailed,
        CloseReason::Unauthenticated,
        CloseReason::TlsFailed,
        CloseReason::SessionExpired,
    ];

    pub fn as_str(self) -> &'static str {
        crate::metrics::CLOSE_REASONS[self as usize]
    }

    /// Whether the close points at a misbehaving or hostile client (logged
    /// as a warning, rate-limited) rather than ordinary life.
    pub fn is_warning(self) -> bool {
        matches!(
            self,
            CloseReason::ReadTimeout
                | CloseReason::FrameTooLarge
                | CloseReason::BadRequest
                | CloseReason::ConnectionLimit
                | CloseReason::AuthFailed
                | CloseReason::Unauthenticated
                | CloseReason::TlsFailed
        )
    }
}

/// Why a connection ended, once its writer finished too: a client that
/// hung up before its answers were written ended with a failed write.
pub fn with_writer_result(
    reason: CloseReason,
    detail: String,
    written: std::io::Result<()>,
) -> (CloseReason, String) {
    match written {
        Err(e) if reason == CloseReason::ClientClosed => {
            (CloseReason::IoError, format!("write failed: {e}"))
        }
        _ => (reason, detail),
    }
}

/// How many warnings of one reason are logged per second before the rest
/// are only counted.
pub const WARNINGS_PER_SECOND: u32 = 5;

/// Rate limit for warnings of one kind: the first `WARNINGS_PER_SECOND`
/// in each second are logged, the rest counted and reported in one line
/// when the next one is logged. Pure: time comes as an argument.
#[derive(Debug, Default)]
pub struct WarnLimit {
    second: u64,
    logged: u32,
    suppressed: u64,
}

/// What to do with one warning.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` warnings like it were dropped since the last.
    Log { suppressed: u64 },
    /// Drop it (counted).
    Drop,
}

impl WarnLimit {
    pub fn check(&mut self, now_ms: u64) -> Verdict {
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.logged = 0;
        }
        if self.logged < WARNINGS_PER_SECOND {
            self.logged += 1;
            let suppressed = std::mem::take(&mut self.suppressed);
            Verdict::Log { suppressed }
        } else {
            self.suppressed += 1;
            Verdict::Drop
        }
    }
}

thread_local! {
    /// One limit per close reason, per shard thread.
    static CLOSE_WARNINGS: RefCell<[WarnLimit; CloseReason::ALL.len()]> = RefCell::default();
}

/// Logs why a connection closed: a warning (rate-limited per reason) for
/// a misbehaving client, a debug line for ordinary closes.
pub fn log_close(
    listener: Listener,
    reason: CloseReason,
    peer: Option<std::net::SocketAddr>,
    detail: &str,
) {
    if !reason.is_warning() {
        tracing::debug!(
            ?peer,
            listener = listener.as_str(),
            reason = reason.as_str(),
            "{detail}"
        );
        return;
    }
    let i = CloseReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0);
    let verdict = CLOSE_WARNINGS.with(|w| w.borrow_mut()[i].check(rt::monotonic_ms()));
    if let Verdict::Log { suppressed } = verdict {
        if suppressed > 0 {
            tracing::warn!(
                ?peer,
                listener = listener.as_str(),
                reason = reason.as_str(),
                suppressed,
                "{detail}; closing connection ({suppressed} more like it not logged)"
            );
        } else {
            tracing::warn!(
                ?peer,
                listener = listener.as_str(),
                reason = reason.as_str(),
                "{detail}; closing connection"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn warnings_past_the_rate_are_counted_and_reported_with_the_next_logged_one() {
        let mut w = WarnLimit::default();
        for _ in 0..WARNINGS_PER_SECOND {
            assert_eq!(w.check(10_000), Verdict::Log { suppressed: 0 });
        }
        for _ in 0..1000 {
            assert_eq!(w.check(10_500), Verdict::Drop);
        }
        assert_eq!(w.check(11_000), Verdict::Log { suppressed: 1000 });
        assert_eq!(w.check(11_001), Verdict::Log { suppressed: 0 });
    }
    #[test]
    fn labels_follow_the_enums() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        assert_eq!(CloseReason::ALL.len(), crate::metrics::CLOSE_REASONS.len());
        assert_eq!(CloseReason::ConnectionLimit.as_str(), "connection_limit");
        for (i, l) in Listener::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i);
        }
        assert_eq!(Listener::Kafka.as_str(), "kafka");
    }
}
