//! TLS for the bundled clients (the CLI, the bench tool, `Client`):
//! rustls with *ring* over a blocking socket, trusting the CA file the
//! user names, optionally presenting a client certificate (mTLS).
//!
//! Owns: `ClientTls` (what the user gives: `--tls-ca-file`, and
//! `--tls-cert-file`/`--tls-key-file` for a client certificate), the
//! process-wide choice (`use_tls`: every connection the process opens
//! after it speaks TLS), and `Transport`, a socket with or without TLS.
//!
//! Must never: connect without verifying the server's certificate when
//! TLS was asked for.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// What a TLS connection trusts and presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM: the CAs the server's certificate must chain to.
    pub ca: PathBuf,
    /// PEM certificate chain and key to present (mTLS).
    pub cert_key: Option<(PathBuf, PathBuf)>,
}

static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// *ring*'s suites (see `tls::provider` on the broker's side for why not
/// aws-lc-rs).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClientTls {
    /// The rustls configuration (the files read now).
    pub fn config(&self) -> io::Result<Arc<rustls::ClientConfig>> {
        let bad = |what: &str, p: &std::path::Path, e: &dyn std::fmt::Display| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} {}: {e}", p.display()),
            )
        };
        let mut roots = rustls::RootCertStore::empty();
        for c in
            CertificateDer::pem_file_iter(&self.ca).map_err(|e| bad("CA file", &self.ca, &e))?
        {
            let c = c.map_err(|e| bad("CA file", &self.ca, &e))?;
            roots.add(c).map_err(|e| bad("CA file", &self.ca, &e))?;
        }
        let b = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", &self.ca, &e))?
            .with_root_certificates(roots);
        let config = match &self.cert_key {
            None => b.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| bad("certificate", cert, &e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("certificate", cert, &e))?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
                b.with_client_auth_cert(chain, key)
                    .map_err(|e| bad("certificate", cert, &e))?
            }
        };
        Ok(Arc::new(config))
    }
}

/// Every connection this process opens from now on speaks TLS with
/// `tls` (the CLI's and the bench tool's `--tls-ca-file`). Once.
pub fn use_tls(tls: &ClientTls) -> io::Result<()> {
    let config = tls.config()?;
    CONFIG
        .set(config)
        .map_err(|_| io::Error::other("TLS is chosen once per process"))
}

/// Whether this process chose TLS (`use_tls`).
pub fn chosen() -> bool {
    CONFIG.get().is_some()
}

/// A connected socket, under TLS when the process chose it.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    /// `stream` as the process speaks: TLS (the handshake done now,
    /// verifying the server's certificate for `host`) or plain.
    pub fn wrap(stream: TcpStream, host: &str) -> io::Result<Transport> {
        let Some(config) = CONFIG.get() else {
            return Ok(Transport::Plain(stream));
        };
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = rustls::ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, stream);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(Transport::Tls(Box::new(s)))
    }

    /// The plain socket (for reads straight into a buffer's spare room).
    pub fn plain(&self) -> Option<&TcpStream> {
        match self {
            Transport::Plain(s) => Some(s),
            Transport::Tls(_) => None,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}
