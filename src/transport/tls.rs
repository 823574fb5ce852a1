//! TLS for SIP (RFC 3261 §26.2, RFC 5630) and for HTTPS/WSS: certificates
//! and keys read from PEM files into rustls configurations (TLS 1.2 and
//! 1.3 only, the `ring` provider), re-read on demand ([`TlsContext::reload`],
//! SIGHUP) without touching open connections, and a once-per-interval log
//! of failed handshakes. It opens no sockets: the TCP code runs its
//! handshakes.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, warn};

use super::LOG_INTERVAL;

/// Why a certificate configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{key} = {path:?}: {why}")]
    File {
        /// The configuration key naming the file.
        key: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the certificate, key or CA (e.g. key and
    /// certificate do not match, unsupported key type).
    #[error("{key}: {0}", key = .1)]
    Rustls(rustls::Error, String),
}

/// Where one TLS configuration's files are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The configuration section, for messages: `sip` or `http`.
    pub section: &'static str,
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates of clients (SIP only): when set, TLS clients
    /// must present a certificate they issued, and peers facd connects to
    /// are verified against them.
    pub client_ca: Option<PathBuf>,
    /// ALPN protocols offered by the server side (`http/1.1` for HTTPS).
    pub alpn: Vec<Vec<u8>>,
}

/// The configurations built from one set of files.
#[derive(Debug)]
struct Loaded {
    server: Arc<ServerConfig>,
    /// For connections facd opens; None without a CA to verify peers against.
    client: Option<Arc<ClientConfig>>,
}

/// One TLS configuration, swapped whole on [`TlsContext::reload`]:
/// handshakes after a reload use the new files, connections already open
/// keep theirs.
#[derive(Debug)]
pub struct TlsContext {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
    /// Handshakes that failed (bad or missing certificate, plaintext on
    /// the TLS port, a handshake that never finished).
    pub failed: AtomicU64,
    log: Mutex<(Option<Instant>, u64)>,
}

impl TlsContext {
    /// Reads `files` (an error names the key and the file).
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let loaded = build(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(loaded)),
            failed: AtomicU64::new(0),
            log: Mutex::new((None, 0)),
        }))
    }

    /// Re-reads the files; on an error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = build(&self.files)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
        Ok(())
    }

    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The server side, with the certificate in use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current().server.clone())
    }

    /// The client side for a connection to a peer at `to`, or why there is
    /// none. facd dials only literal addresses (see
    /// [`crate::sip::build::next_hop`]), so the name verified is the IP
    /// address: the peer's certificate must chain to `tls_client_ca` and
    /// carry that address as an iPAddress subjectAltName (RFC 5922 §7.1
    /// leaves IP identities to local policy; this is ours).
    pub fn connector(&self, to: IpAddr) -> Result<(TlsConnector, ServerName<'static>), String> {
        let client = self.current().client.clone().ok_or_else(|| {
            "no sip.tls_client_ca to verify the peer's certificate against".to_string()
        })?;
        Ok((TlsConnector::from(client), ServerName::IpAddress(to.into())))
    }

    /// Counts a failed handshake and logs it, at most once per
    /// [`LOG_INTERVAL`] with the number since the last line, so a scanner
    /// or a flood of plaintext clients cannot flood the log.
    pub fn handshake_failed(&self, peer: SocketAddr, transport: &'static str, why: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        debug!(%peer, transport, error = %why, "tls handshake failed");
        let mut log = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        log.1 += 1;
        let now = Instant::now();
        if log.0.is_none_or(|t| now.duration_since(t) >= LOG_INTERVAL) {
            warn!(%peer, transport, error = %why, failed = log.1, "tls handshake failed: connection closed");
            *log = (Some(now), 0);
        }
    }

    /// Runs the server handshake on `stream` within `limit`; a failure is
    /// counted, logged ([`Self::handshake_failed`]) and closes the stream.
    pub async fn accept<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        transport: &'static str,
        limit: std::time::Duration,
    ) -> Option<tokio_rustls::server::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match tokio::time::timeout(limit, self.acceptor().accept(stream)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                self.handshake_failed(peer, transport, &e.to_string());
                None
            }
            Err(_) => {
                let why = format!("handshake unfinished after {} s", limit.as_secs());
                self.handshake_failed(peer, transport, &why);
                None
            }
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.2 and 1.3 only (rustls offers nothing older, and no weak suites).
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn file_err(files: &TlsFiles, key: &str, path: &std::path::Path, why: String) -> TlsError {
    TlsError::File {
        key: format!("{}.{key}", files.section),
        path: path.to_path_buf(),
        why,
    }
}

fn certs(
    files: &TlsFiles,
    key: &str,
    path: &std::path::Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| file_err(files, key, path, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(files, key, path, "no CERTIFICATE in it".into()));
    }
    Ok(certs)
}

fn build(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let chain = certs(files, "tls_cert", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| file_err(files, "tls_key", &files.key, e.to_string()))?;
    let rustls_err = |key: &str| {
        let key = format!("{}.{key}", files.section);
        move |e: rustls::Error| TlsError::Rustls(e, key)
    };
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(rustls_err("tls_cert"))?;
    let roots = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certs(files, "tls_client_ca", path)? {
                roots.add(ca).map_err(rustls_err("tls_client_ca"))?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let builder = match &roots {
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| TlsError::File {
                    key: format!("{}.tls_client_ca", files.section),
                    path: files.client_ca.clone().unwrap_or_default(),
                    why: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(rustls_err("tls_key"))?;
    server.alpn_protocols.clone_from(&files.alpn);
    let client = match roots {
        Some(roots) => {
            let client = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(VERSIONS)
                .map_err(rustls_err("tls_cert"))?
                .with_root_certificates(roots)
                // Peers that ask for a client certificate get ours.
                .with_client_auth_cert(chain, key)
                .map_err(rustls_err("tls_key"))?;
            Some(Arc::new(client))
        }
        None => None,
    };
    Ok(Loaded {
        server: Arc::new(server),
        client,
    })
}
