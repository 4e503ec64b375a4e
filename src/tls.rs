//! TLS on the listeners (rustls with the ring provider; no OpenSSL): the
//! server configuration from PEM files, its reload (SIGHUP), the
//! handshake on the shard's executor within a deadline, and the encrypted
//! stream the connection loop reads and writes like a socket.
//!
//! Owns: `TlsFiles` -> `rustls::ServerConfig` (certificate chain, key,
//! optional client CA: mTLS, a client without a certificate signed by it
//! is refused in the handshake); `Acceptor` (one per shard: the current
//! configuration, replaced when the reload generation moves); `TlsStream`
//! (rustls driven over the glommio socket by hand: ciphertext in, plaintext
//! out, and the reverse).
//!
//! Must never: block the executor on the network (every socket operation
//! is a poll), keep a connection whose handshake stalls past its deadline,
//! or let a bad certificate file take the broker down after it started (a
//! reload that fails keeps the configuration in use and says why).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use thiserror::Error;

use crate::rt;

/// Where a listener's certificate, key and (mTLS) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: the CAs a client certificate must chain to; None: no client
    /// certificates asked for.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("TLS files: {0}")]
    Files(String),
    #[error("TLS handshake: {0}")]
    Handshake(String),
    #[error("TLS handshake not done within {0:?}")]
    Timeout(Duration),
    #[error("TLS: {0}")]
    Io(#[from] io::Error),
}

fn files_error(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Files(format!("{what} {}: {e}", path.display()))
}

/// The crypto provider: *ring*'s suites and key exchanges (TLS 1.3 and
/// 1.2, X25519, P-256, P-384). rustls 0.23.48 deprecates it for lacking
/// post-quantum key exchange (X25519MLKEM768, aws-lc-rs only); aws-lc-rs
/// needs CMake and a C toolchain to build, and no Kafka client offers
/// ML-KEM yet, so *ring* stays until one does.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration the files describe (read now, whole).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| files_error("certificate", &files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| files_error("certificate", &files.cert, e))?;
    if certs.is_empty() {
        return Err(files_error(
            "certificate",
            &files.cert,
            "no CERTIFICATE in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| files_error("private key", &files.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Files(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| files_error("client CA", ca, e))?
            {
                let c = c.map_err(|e| files_error("client CA", ca, e))?;
                roots.add(c).map_err(|e| files_error("client CA", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| files_error("client CA", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| files_error("certificate and key", &files.cert, e))?;
    Ok(Arc::new(config))
}

/// Bumped by the signal thread on SIGHUP; every shard's acceptor reloads
/// its files at its next handshake after it moves.
#[derive(Debug, Default)]
pub struct ReloadGeneration(AtomicU64);

impl ReloadGeneration {
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A server configuration kept current with its files: read again when the
/// reload generation moved since the last use. A reload that fails keeps
/// the configuration in use (and says why): connections go on with the old
/// certificate rather than none. Plain data (`Send`): the shards' acceptors
/// and the HTTP thread each hold one.
pub struct ReloadingConfig {
    files: TlsFiles,
    config: Arc<ServerConfig>,
    generation: Arc<ReloadGeneration>,
    loaded: u64,
}

impl ReloadingConfig {
    pub fn new(
        files: TlsFiles,
        generation: Arc<ReloadGeneration>,
    ) -> Result<ReloadingConfig, TlsError> {
        Ok(ReloadingConfig {
            config: server_config(&files)?,
            files,
            loaded: generation.get(),
            generation,
        })
    }

    /// The configuration for a new connection.
    pub fn current(&mut self) -> Arc<ServerConfig> {
        let g = self.generation.get();
        if g != self.loaded {
            self.loaded = g;
            match server_config(&self.files) {
                Ok(c) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    self.config = c;
                }
                Err(e) => tracing::warn!("TLS reload failed, the previous certificate stays: {e}"),
            }
        }
        self.config.clone()
    }
}

/// One shard's TLS side of its listeners: the configuration in use.
pub struct Acceptor {
    config: RefCell<ReloadingConfig>,
    /// How long a handshake may take.
    pub deadline: Duration,
}

impl Acceptor {
    pub fn new(
        files: TlsFiles,
        generation: Arc<ReloadGeneration>,
        deadline: Duration,
    ) -> Result<Acceptor, TlsError> {
        Ok(Acceptor {
            config: RefCell::new(ReloadingConfig::new(files, generation)?),
            deadline,
        })
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.config.borrow_mut().current()
    }

    /// The server side of a handshake on `tcp`, within the deadline.
    pub async fn accept(&self, tcp: rt::TcpStream) -> Result<TlsStream, TlsError> {
        let mut conn = ServerConnection::new(self.current())
            .map_err(|e| TlsError::Handshake(e.to_string()))?;
        // Plaintext accepted before it must be sent: a fetch answer goes
        // out in a few vectored sends rather than 64 KiB at a time.
        conn.set_buffer_limit(Some(SEND_BUFFER_BYTES));
        let mut s = TlsStream { tcp, conn };
        match rt::timeout(self.deadline, s.handshake()).await {
            Some(Ok(())) => Ok(s),
            Some(Err(e)) => Err(e),
            None => Err(TlsError::Timeout(self.deadline)),
        }
    }
}

/// Ciphertext a connection may hold unsent.
const SEND_BUFFER_BYTES: usize = 512 * 1024;

/// A socket under TLS: `AsyncRead` gives plaintext, `AsyncWrite` takes
/// plaintext; rustls does the rest over the socket.
pub struct TlsStream {
    tcp: rt::TcpStream,
    conn: ServerConnection,
}

/// The socket as blocking `Read`/`Write` for rustls, within one poll: a
/// Pending poll is `WouldBlock` (the waker is registered).
struct Sync<'a, 'b> {
    tcp: &'a mut rt::TcpStream,
    cx: &'a mut Context<'b>,
}

/// Most records one send takes (rustls hands over at most 64 chunks).
const MAX_IOVECS: usize = 64;

fn ready<T>(p: Poll<io::Result<T>>) -> io::Result<T> {
    match p {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}

impl Read for Sync<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        ready(Pin::new(&mut *self.tcp).poll_read(self.cx, buf))
    }
}

impl Write for Sync<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        ready(Pin::new(&mut *self.tcp).poll_write(self.cx, buf))
    }

    /// Every queued record in one `sendmsg` when the socket has room
    /// (rustls writes one record per call otherwise: a syscall per 16
    /// KiB); when it is full, glommio's write waits (the waker is set).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let bufs = &bufs[..bufs.len().min(MAX_IOVECS)];
        loop {
            // SAFETY: IoSlice is ABI-compatible with iovec on Unix; the
            // slices outlive the call; sendmsg only reads them.
            let sent = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len() as _;
                libc::sendmsg(
                    self.tcp.as_raw_fd(),
                    &msg,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if sent >= 0 {
                return Ok(sent as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
                    return self.write(first);
                }
                _ => return Err(e),
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        ready(Pin::new(&mut *self.tcp).poll_flush(self.cx))
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// The client's certificate chain (mTLS), leaf first.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }

    /// Writes out what rustls has to send; Pending while the socket is full.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut io = Sync {
                tcp: &mut self.tcp,
                cx,
            };
            match self.conn.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads ciphertext once and processes it: Ok(false) at the end of the
    /// stream. A TLS error is answered with rustls's alert (best effort).
    fn poll_read_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut io = Sync {
            tcp: &mut self.tcp,
            cx,
        };
        match self.conn.read_tls(&mut io) {
            Ok(0) => return Poll::Ready(Ok(false)),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
        if let Err(e) = self.conn.process_new_packets() {
            // The alert rustls queued tells the client why.
            let _ = self.poll_flush_tls(cx);
            return Poll::Ready(Err(tls_error(e)));
        }
        Poll::Ready(Ok(true))
    }

    async fn handshake(&mut self) -> Result<(), TlsError> {
        let hs = |e: io::Error| TlsError::Handshake(e.to_string());
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                futures_lite::future::poll_fn(|cx| self.poll_flush_tls(cx))
                    .await
                    .map_err(hs)?;
            } else if self.conn.wants_read() {
                let more = futures_lite::future::poll_fn(|cx| self.poll_read_tls(cx))
                    .await
                    .map_err(hs)?;
                if !more {
                    return Err(TlsError::Handshake(
                        "the client closed the connection".into(),
                    ));
                }
            }
        }
        // The last flight (and TLS 1.3's session tickets).
        futures_lite::future::poll_fn(|cx| self.poll_flush_tls(cx))
            .await
            .map_err(hs)
    }
}

impl AsyncRead for TlsStream {
    /// As much plaintext as is ready, up to `buf.len()`: records are
    /// decrypted until the buffer is full or the socket has no more for
    /// now (one record per read would cost the caller a read each).
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut filled = 0;
        loop {
            match this.conn.reader().read(&mut buf[filled..]) {
                // The end of the stream (close_notify) or a full buffer.
                Ok(0) => return Poll::Ready(Ok(filled)),
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Poll::Ready(Ok(filled));
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: the end of the stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(filled))
                }
                Err(e) if filled > 0 => {
                    // Hand over what came first; the error comes again.
                    let _ = e;
                    return Poll::Ready(Ok(filled));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            // What reading made rustls want to say (a key update's
            // answer, an alert) goes out when the socket has room; the
            // writer side flushes it otherwise.
            let _ = this.poll_flush_tls(cx);
            match this.poll_read_tls(cx) {
                Poll::Ready(Ok(true)) => continue,
                Poll::Ready(Ok(false)) => return Poll::Ready(Ok(filled)),
                Poll::Ready(Err(_)) if filled > 0 => return Poll::Ready(Ok(filled)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if filled > 0 => return Poll::Ready(Ok(filled)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Earlier records out first: rustls's buffer is bounded, and an
        // answer must not sit encrypted behind a full socket unflushed.
        match this.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let n = this.conn.writer().write(buf)?;
        // Start sending now; what the socket does not take yet goes with
        // the next write or the flush.
        match this.poll_flush_tls(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(n)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_flush(cx),
            other => other,
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.send_close_notify();
        match this.poll_flush_tls(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_close(cx),
            other => other,
        }
    }
}
