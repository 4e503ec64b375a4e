//! The HTTP endpoint: `GET /metrics` (Prometheus text) and `GET /healthz`
//! (200 once every shard recovered and serves, 503 before and while
//! stopping), on one small std thread of its own; HTTPS with `--http-tls
//! on` (the listeners' certificate, reloaded on SIGHUP; with a client CA the
//! scraper must present a certificate, as on the other listeners).
//!
//! Owns: its listener and the minimal HTTP/1.1 it speaks (one request per
//! connection, `Connection: close`); `get`, the client side (`https://`
//! addresses over the process's TLS, `client::tls`). Reads the shards'
//! metrics through the shared `Arc<Metrics>`, never a shard's own state.
//!
//! Must never: block or slow a shard. It runs off the executors, a scrape
//! only loads atomics, and each connection is bounded in time (2 s per
//! read or write, 5 s in all, TLS handshake included) and size (8 KiB of
//! request head), one at a time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::tls::{ReloadGeneration, ReloadingConfig, TlsError, TlsFiles};

/// Largest request head read; longer requests get 431.
const MAX_REQUEST_BYTES: usize = 8 << 10;
/// How long one client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one connection may hold the endpoint, whatever it sends: a
/// client dripping a byte per second would otherwise keep every scrape out.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

/// HTTPS: the TLS listeners' files, reloaded when SIGHUP bumps the
/// generation.
pub struct HttpTls(ReloadingConfig);

impl HttpTls {
    /// Reads the files now: a bad one fails the start.
    pub fn new(files: TlsFiles, generation: Arc<ReloadGeneration>) -> Result<HttpTls, TlsError> {
        Ok(HttpTls(ReloadingConfig::new(files, generation)?))
    }
}

/// Binds `addr` now (so a taken address fails the start) and serves on a
/// thread named `http` for the rest of the process. Returns the bound address.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    mut tls: Option<HttpTls>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => {
                        let s = Deadlined {
                            s,
                            until: Instant::now() + CONNECTION_DEADLINE,
                        };
                        let done = match &mut tls {
                            None => handle(&mut { s }, &metrics),
                            Some(HttpTls(config)) => {
                                match rustls::ServerConnection::new(config.current()) {
                                    Ok(conn) => {
                                        let mut t = rustls::StreamOwned::new(conn, s);
                                        handle(&mut t, &metrics).and_then(|()| {
                                            // close_notify: the answer ends
                                            // here, not cut off.
                                            t.conn.send_close_notify();
                                            t.conn.complete_io(&mut t.sock).map(drop)
                                        })
                                    }
                                    Err(e) => Err(std::io::Error::other(e)),
                                }
                            }
                        };
                        if let Err(e) = done {
                            tracing::debug!("http connection: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("http accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        })?;
    Ok(local)
}

/// A socket whose every read and write fails once the connection's
/// deadline passed (each one also bounded by `IO_TIMEOUT`): rustls's
/// handshake loops read through it too.
struct Deadlined {
    s: TcpStream,
    until: Instant,
}

impl Deadlined {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the connection's deadline passed",
            ));
        }
        Ok(left.min(IO_TIMEOUT))
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.s.set_read_timeout(Some(left))?;
        self.s.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.s.set_write_timeout(Some(left))?;
        self.s.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

/// What a request asks for (pure: the request head in, status and body out).
pub fn respond(head: &[u8], metrics: &Arc<Metrics>) -> (u16, &'static str, String) {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    const TEXT: &str = "text/plain; charset=utf-8";
    match (method, path) {
        ("GET", "/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.encode_text(),
        ),
        ("GET", "/healthz") if metrics.is_ready() => (200, TEXT, "ok\n".into()),
        ("GET", "/healthz") => (503, TEXT, "not ready: recovering or stopping\n".into()),
        ("GET", _) => (404, TEXT, "not found: try /metrics or /healthz\n".into()),
        _ => (405, TEXT, "only GET\n".into()),
    }
}

fn handle(s: &mut (impl Read + Write), metrics: &Arc<Metrics>) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let (status, ctype, body) = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break respond(&head, metrics);
        }
        if head.len() > MAX_REQUEST_BYTES {
            break (431, "text/plain", "request head too large\n".into());
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(msg.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}

/// A blocking `GET` of `path` from `addr` (`host:port`, or
/// `https://host:port` over the TLS this process chose with
/// `client::tls::use_tls`): (status, body). For `top` and tests; bounded
/// by `timeout` per connect, read and write.
pub fn get(addr: &str, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    use std::net::ToSocketAddrs;
    let (https, addr) = match addr.strip_prefix("https://") {
        Some(a) => (true, a),
        None => (false, addr.strip_prefix("http://").unwrap_or(addr)),
    };
    let addr = addr.trim_end_matches('/');
    let sa = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr}: no address")))?;
    let s = TcpStream::connect_timeout(&sa, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let mut s = if https {
        if !crate::client::tls::chosen() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an https:// address needs the CA to trust (--tls-ca)",
            ));
        }
        crate::client::tls::Transport::wrap(s, host)?
    } else {
        crate::client::tls::Transport::Plain(s)
    };
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.take(64 << 20).read_to_end(&mut resp)?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("truncated HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad HTTP status line"))?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthz_follows_readiness_and_metrics_are_text() {
        let m = Metrics::new(1, true);
        assert_eq!(respond(b"GET /healthz HTTP/1.1\r\n\r\n", &m).0, 503);
        m.set_ready(true);
        assert_eq!(respond(b"GET /healthz HTTP/1.1\r\n\r\n", &m).0, 200);
        let (code, _, body) = respond(b"GET /metrics HTTP/1.1\r\n\r\n", &m);
        assert_eq!(code, 200);
        assert!(
            body.contains("# TYPE shardlog_produce_messages_total counter"),
            "{body}"
        );
        assert_eq!(respond(b"GET /x HTTP/1.1\r\n\r\n", &m).0, 404);
        assert_eq!(respond(b"POST /metrics HTTP/1.1\r\n\r\n", &m).0, 405);
    }

    #[test]
    fn serves_over_tcp() {
        let m = Metrics::new(2, true);
        m.set_ready(true);
        let addr = serve("127.0.0.1:0".parse().unwrap(), m, None).unwrap();
        let (code, body) = get(&addr.to_string(), "/healthz", Duration::from_secs(5)).unwrap();
        assert_eq!((code, body.as_str()), (200, "ok\n"));
        let (code, body) = get(&addr.to_string(), "/metrics", Duration::from_secs(5)).unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("shard=\"1\""));
        let url = format!("http://{addr}/");
        assert_eq!(
            get(&url, "/healthz", Duration::from_secs(5)).unwrap().0,
            200
        );
        let e = get(
            &format!("https://{addr}"),
            "/healthz",
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.to_string().contains("--tls-ca"), "{e}");
    }

    #[test]
    fn a_client_dripping_its_request_is_cut_off_and_the_next_is_served() {
        let m = Metrics::new(1, true);
        m.set_ready(true);
        let addr = serve("127.0.0.1:0".parse().unwrap(), m, None).unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        let mut closed = false;
        // A byte every 0.5 s never ends a request head; each read is within
        // the 2 s per-read timeout, so only the connection deadline ends it.
        while !closed && started.elapsed() < Duration::from_secs(20) {
            if slow.write_all(b"G").is_err() {
                closed = true;
                break;
            }
            let mut b = [0u8; 64];
            closed = match slow.read(&mut b) {
                Ok(n) => n == 0,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
            std::thread::sleep(Duration::from_millis(400));
        }
        assert!(closed, "the dripping client was cut off");
        assert!(started.elapsed() < Duration::from_secs(20));
        let (code, _) = get(&addr.to_string(), "/healthz", Duration::from_secs(5)).unwrap();
        assert_eq!(code, 200);
    }
}
