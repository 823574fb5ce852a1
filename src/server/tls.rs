//! The shell side of TLS: loading `[sip]` and `[http]` certificates at
//! start, HTTPS/WSS for the API (an axum listener that hands over only
//! connections whose handshake finished), and re-reading the certificates
//! on SIGHUP (connections already open keep theirs).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::transport::tls::TlsError;
use crate::transport::{TlsContext, TlsFiles};

/// How long an HTTPS client has to finish its handshake.
const HTTPS_HANDSHAKE: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for axum to take them.
const HTTPS_BACKLOG: usize = 64;

/// The SIP certificates (`[sip] tls_cert`, `tls_key`, `tls_client_ca`),
/// if configured.
pub(super) fn sip_context(config: &Config) -> Result<Option<Arc<TlsContext>>, TlsError> {
    let sip = &config.sip;
    let (Some(cert), Some(key)) = (&sip.tls_cert, &sip.tls_key) else {
        return Ok(None);
    };
    TlsContext::load(TlsFiles {
        section: "sip",
        cert: PathBuf::from(cert),
        key: PathBuf::from(key),
        client_ca: sip.tls_client_ca.as_ref().map(PathBuf::from),
        alpn: Vec::new(),
    })
    .map(Some)
}

/// The HTTPS certificates (`[http] tls_cert`, `tls_key`), if configured.
pub(super) fn http_context(config: &Config) -> Result<Option<Arc<TlsContext>>, TlsError> {
    let http = &config.http;
    let (Some(cert), Some(key)) = (&http.tls_cert, &http.tls_key) else {
        return Ok(None);
    };
    TlsContext::load(TlsFiles {
        section: "http",
        cert: PathBuf::from(cert),
        key: PathBuf::from(key),
        client_ca: None,
        alpn: vec![b"http/1.1".to_vec()],
    })
    .map(Some)
}

/// Re-reads every context's files on SIGHUP until `stop`; a file that no
/// longer loads is logged and the certificate in use stays.
pub(super) async fn reload_on_hangup(contexts: Vec<Arc<TlsContext>>, stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "cannot watch SIGHUP: certificates will not be re-read");
            return;
        }
    };
    loop {
        tokio::select! {
            r = hup.recv() => if r.is_none() { return },
            () = stop.cancelled() => return,
        }
        for ctx in &contexts {
            match ctx.reload() {
                Ok(()) => info!("SIGHUP: certificates re-read"),
                Err(e) => {
                    warn!(error = %e, "SIGHUP: certificates not re-read; keeping the ones in use")
                }
            }
        }
    }
}

/// An axum listener serving HTTPS: TCP connections are accepted and their
/// handshakes run on their own tasks (a slow or stalled client holds up no
/// one; it is closed after [`HTTPS_HANDSHAKE`], counted and logged), and
/// axum gets only those that finished.
pub(super) struct HttpsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl HttpsListener {
    /// Accepts on `listener` until `stop`, tuning each TCP connection with `tune`.
    pub(super) fn new(
        listener: TcpListener,
        ctx: Arc<TlsContext>,
        stop: CancellationToken,
        tune: fn(&TcpStream),
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(HTTPS_BACKLOG);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    () = stop.cancelled() => return,
                };
                let (tcp, addr) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "https accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                tune(&tcp);
                let (ctx, tx) = (ctx.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Some(tls) = ctx.accept(tcp, addr, "HTTPS", HTTPS_HANDSHAKE).await {
                        let _ = tx.send((tls, addr)).await;
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // Accepting has stopped: axum's graceful shutdown ends the loop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
