//! Binds the listeners, spawns the transports, the HTTP API and the WSI
//! dispatcher, runs the core loop, and stops in order: stop accepting (SIP
//! TCP and HTTP; WebSocket sessions get a close frame), hang up open calls,
//! let answers in flight go out, exit (SPEC §8).
//!
//! The caller chooses the shutdown trigger (`run(…, shutdown)`), so tests
//! stop a server with a oneshot and `main` with SIGTERM/SIGINT.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::reports::ReportsState;
use crate::api::wsi::Wsi;
use crate::api::{ApiConfig, AppState};
use crate::config::{Config, DigestAlgorithm, ListenProto};
use crate::engine::{Applied, Engine};
use crate::events::{CoreHandle, CoreRequest, Hub};
use crate::history;
use crate::limits::{AuthGuard, AuthLimits, RateLimits};
use crate::media;
use crate::sip::auth::{Algorithm, Authenticator, Secret};
use crate::sip::blf::ToggleCodes;
use crate::sip::star_code::StarCodeParser;
use crate::store::{Store, StoreError};
use crate::transaction::TimerConfig;
use crate::transport::{self, Flows, Inbound, Link, SourceLimits, Stats, TransportConfig};
use crate::uas::subscription::ExpiryBounds;
use crate::uas::{ApplyError, Identity, JournalOrder, KeySettings, Now, Transport, Uas, UasConfig};

mod clock;
mod cluster;
mod metrics;
mod recover;
mod reload;
mod tls;

use cluster::Storage;
use recover::{agent_secrets, recover};
pub use recover::{codes, model};
pub use reload::{LogHook, ReloadError, ReloadHandle, ReloadReport};

/// The UAS as the shell runs it: flows are transport links, and commands
/// from the API wait on a oneshot.
type ShellUas = Uas<Link, Waiter>;
/// Who waits for a command from the API.
type Waiter = tokio::sync::oneshot::Sender<Result<Applied, ApplyError>>;
/// Journal snapshots are written when the journal grows past this.
const CHECKPOINT_BYTES: u64 = 8 << 20;

/// How long a graceful stop waits for open calls to end.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// How long HTTP requests still open at exit are waited for.
const HTTP_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// SO_SNDBUF of HTTP/WebSocket connections.
const HTTP_SEND_BUFFER: usize = 64 * 1024;
/// How many queued messages the core handles before it flushes.
const BATCH: usize = 64;
/// Tone orders queued for the media sender before new ones are dropped.
const MEDIA_QUEUE: usize = 8192;
/// Sources tracked for failed authentications.
const AUTH_SOURCES: usize = 100_000;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The storage directory could not be opened or recovered.
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The change history (`storage.dir/history`) could not be opened.
    #[error("history {0}: {1}")]
    History(std::path::PathBuf, std::io::Error),
    /// `http.listen` is not an address (check-config refuses it first).
    #[error("http.listen: {0:?} is not an address")]
    HttpAddress(String),
    /// A certificate, key or CA file could not be loaded.
    #[error("tls: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {proto}:{addr}: {source}")]
    Bind {
        /// udp, tcp or http.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A server with its sockets bound, ready to [`Server::run`].
pub struct Server {
    /// The configuration, without its agents (the engine has them).
    config: Config,
    /// Each agent's password or HA1, when `auth.required`.
    secrets: Option<ahash::AHashMap<String, Secret>>,
    engine: Engine,
    store: Storage,
    udp: Vec<Arc<UdpSocket>>,
    tcp: Vec<TcpListener>,
    /// `tls:`, `ws:` and `wss:` listeners.
    streams: Vec<(Transport, TcpListener)>,
    /// `[sip] tls_cert` etc., `[http] tls_cert` etc.
    sip_tls: Option<Arc<transport::TlsContext>>,
    http_tls: Option<Arc<transport::TlsContext>>,
    rtp: Vec<Arc<UdpSocket>>,
    stats: Arc<Stats>,
    handle: CoreHandle,
    requests: mpsc::Receiver<CoreRequest>,
    hub: Hub,
    http: TcpListener,
    api: ApiConfig,
    wsi: Wsi,
    /// The file a reload reads, and how it sets the log filter.
    reload_from: Option<(std::path::PathBuf, Option<LogHook>)>,
    reloads: (
        mpsc::Sender<reload::Request>,
        mpsc::Receiver<reload::Request>,
    ),
    history: history::Sink,
    reports: ReportsState,
}

impl Server {
    /// Binds every `[sip] listen` entry. A UDP and a TCP listener on the same
    /// `ip:0` share one ephemeral port, so tests get "the same port" too.
    pub async fn bind(mut config: Config) -> Result<Self, ServerError> {
        // What the API and authentication need of the agents first: the
        // engine takes the agents out of the configuration.
        let api = ApiConfig::from_config(&config);
        let secrets = config.auth.required.then(|| agent_secrets(&config));
        let reports = ReportsState::from_config(&config);
        let (engine, store) = if config.storage.backend == crate::config::Backend::Postgres {
            cluster::recover(&mut config).await?
        } else {
            let (engine, store) = recover(&mut config)?;
            (engine, Storage::Local(store))
        };
        let history = open_history(&config, &engine)?;
        let listeners = config.listeners();
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut chosen: Vec<SocketAddr> = Vec::new();
        for l in listeners.iter().filter(|l| l.proto == ListenProto::Udp) {
            let sock = transport::bind_udp(l.addr, config.sip.udp_recv_buffer_bytes).map_err(
                |source| ServerError::Bind {
                    proto: "udp",
                    addr: l.addr,
                    source,
                },
            )?;
            if let Ok(a) = sock.local_addr() {
                if l.addr.port() == 0 {
                    chosen.push(a);
                }
            }
            udp.push(Arc::new(sock));
        }
        for l in listeners.iter().filter(|l| l.proto == ListenProto::Tcp) {
            let mut addr = l.addr;
            if addr.port() == 0 {
                if let Some(a) = chosen.iter().find(|a| a.ip() == addr.ip()) {
                    addr = *a;
                }
            }
            let listener = match transport::bind_tcp(addr) {
                // The UDP port may be taken for TCP; any free port will do.
                Err(_) if addr != l.addr => transport::bind_tcp(l.addr),
                other => other,
            }
            .map_err(|source| ServerError::Bind {
                proto: "tcp",
                addr: l.addr,
                source,
            })?;
            tcp.push(listener);
        }
        let sip_tls = tls::sip_context(&config)?;
        let http_tls = tls::http_context(&config)?;
        let mut streams = Vec::new();
        for l in &listeners {
            let transport = match l.proto {
                ListenProto::Udp | ListenProto::Tcp => continue,
                ListenProto::Tls => Transport::Tls,
                ListenProto::Ws => Transport::Ws,
                ListenProto::Wss => Transport::Wss,
            };
            let listener = transport::bind_tcp(l.addr).map_err(|source| ServerError::Bind {
                proto: l.proto.as_str(),
                addr: l.addr,
                source,
            })?;
            streams.push((transport, listener));
        }
        // One RTP socket per address family, on the first listener address of
        // that family: SDP answers name it, the confirmation tone is sent
        // from it, and what callers send to it is swallowed.
        let mut rtp = Vec::new();
        for v6 in [false, true] {
            if let Some(l) = listeners.iter().find(|l| l.addr.is_ipv6() == v6) {
                let addr = SocketAddr::new(l.addr.ip(), 0);
                let sock =
                    transport::bind_udp(addr, 1 << 16).map_err(|source| ServerError::Bind {
                        proto: "udp",
                        addr,
                        source,
                    })?;
                rtp.push(Arc::new(sock));
            }
        }
        let http_addr = config
            .settings()
            .http_listen
            .ok_or_else(|| ServerError::HttpAddress(config.http.listen.clone()))?;
        let http = transport::bind_tcp(http_addr).map_err(|source| ServerError::Bind {
            proto: "http",
            addr: http_addr,
            source,
        })?;
        let (handle, requests) = CoreHandle::channel();
        let hub = Hub::default();
        let wsi = Wsi::for_hub(&hub);
        Ok(Self {
            config,
            secrets,
            engine,
            store,
            udp,
            tcp,
            streams,
            sip_tls,
            http_tls,
            rtp,
            stats: Arc::new(Stats::default()),
            handle,
            requests,
            hub,
            http,
            api,
            wsi,
            reload_from: None,
            reloads: mpsc::channel(4),
            history,
            reports,
        })
    }

    /// Lets [`ReloadHandle::reload`] (SIGHUP, `POST /admin/reload`) read
    /// `path` again; `log` sets the log filter.
    pub fn reload_from(mut self, path: std::path::PathBuf, log: Option<LogHook>) -> Self {
        self.reload_from = Some((path, log));
        self
    }

    /// A handle that reloads the configuration of the running server.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(self.reloads.0.clone())
    }

    /// The bound HTTP listener (REST API and WebSocket `/wsi`).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.local_addr().ok()
    }

    /// The WebSocket registry (sessions connected, lags), for tests and stats.
    pub fn wsi(&self) -> Wsi {
        self.wsi.clone()
    }

    /// The bound SIP listeners as `("udp" | "tcp" | "tls" | "ws" | "wss", address)`.
    pub fn local_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        let udp = self
            .udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| ("udp", a));
        let tcp = self
            .tcp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .map(|a| ("tcp", a));
        let streams = self.streams.iter().filter_map(|(t, s)| {
            let proto = match t {
                Transport::Tls => "tls",
                Transport::Ws => "ws",
                _ => "wss",
            };
            s.local_addr().ok().map(|a| (proto, a))
        });
        udp.chain(tcp).chain(streams).collect()
    }

    /// A handle on the core task (commands and queries), for the API.
    pub fn core_handle(&self) -> CoreHandle {
        self.handle.clone()
    }

    /// The SIP and HTTP certificates in use, if configured (their
    /// `failed` counts handshakes that did not finish).
    pub fn tls_contexts(
        &self,
    ) -> (
        Option<Arc<transport::TlsContext>>,
        Option<Arc<transport::TlsContext>>,
    ) {
        (self.sip_tls.clone(), self.http_tls.clone())
    }

    /// The transports' counters (messages, malformed, rate-limited, refused).
    pub fn transport_stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The hub every durable event is published on.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// Runs until `shutdown` resolves, then stops gracefully.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let cfg = &self.config;
        let tcfg = TransportConfig {
            max_message_bytes: cfg.sip.max_message_bytes,
            tcp_idle: Duration::from_secs(cfg.sip.tcp_idle_secs),
            tcp_message: Duration::from_secs(cfg.sip.tcp_message_secs),
            max_tcp_connections: cfg.sip.max_tcp_connections,
            udp_recv_buffer: cfg.sip.udp_recv_buffer_bytes,
            limits: Arc::new(SourceLimits::new(
                RateLimits {
                    per_sec: cfg.limits.requests_per_sec,
                    burst: cfg.limits.request_burst,
                    max_sources: transport::RATE_SOURCES,
                    log_interval: transport::LOG_INTERVAL,
                },
                cfg.limits.tcp_connections_per_ip,
                exempt(cfg),
            )),
            tls: self.sip_tls.clone(),
        };
        let rtp_addr = |v6: bool| {
            self.rtp
                .iter()
                .filter_map(|s| s.local_addr().ok())
                .find(|a| a.is_ipv6() == v6)
        };
        let uas_cfg = UasConfig {
            domain: cfg.sip.domain.clone(),
            confirm: Duration::from_millis(cfg.sip.confirm_ms),
            timers: TimerConfig {
                t1: Duration::from_millis(cfg.sip.t1_ms),
                ..TimerConfig::default()
            },
            rtp_v4: rtp_addr(false),
            rtp_v6: rtp_addr(true),
            max_transactions: cfg.limits.max_transactions,
            max_dialogs: cfg.limits.max_dialogs,
            subscribe: ExpiryBounds {
                min: cfg.subscribe.min_expires,
                max: cfg.subscribe.max_expires,
                default: cfg.subscribe.default_expires,
                per_agent: cfg.subscribe.max_per_agent,
            },
            max_subscriptions: cfg.subscribe.max_subscriptions,
            journal: true,
            seed: rand::random(),
        };
        let codes = StarCodeParser::new(codes(cfg));
        let (probe, mut probe_rx) = mpsc::channel(16);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, Result<(), StoreError>)>();
        let mut store = self.store;
        let store_stats = store.shared_stats();
        let identity = self.secrets.take().map(|secrets| Identity {
            authenticator: Authenticator::new(&cfg.sip.domain, rand::random(), 300),
            algorithms: cfg
                .settings()
                .algorithms
                .iter()
                .map(|a| match a {
                    DigestAlgorithm::Md5 => Algorithm::Md5,
                    DigestAlgorithm::Sha256 => Algorithm::Sha256,
                })
                .collect(),
            guard: AuthGuard::new(AuthLimits {
                max_failures: cfg.limits.auth_failures,
                window: Duration::from_secs(cfg.limits.auth_window_secs),
                ban: Duration::from_secs(cfg.limits.auth_ban_secs),
                max_sources: AUTH_SOURCES,
            }),
            secrets,
        });
        let keys = KeySettings {
            toggles: ToggleCodes {
                login: cfg.codes.toggle_login.clone(),
                ready: cfg.codes.toggle_ready.clone(),
            },
            dnd_reason: cfg.feature_keys.dnd_reason.as_deref().map(Into::into),
        };
        let mut uas: ShellUas = Uas::new(uas_cfg, self.engine, codes, identity).with_keys(keys);
        uas.set_trusted_proxies(cfg.settings().trusted_proxies.clone());
        if store.is_shared() {
            uas.set_shared_store(true);
        }

        // Give what start-up freed (the configuration's agents, the TOML
        // parser's garbage) back to the OS: with 100,000 agents that is most
        // of the process's memory.
        release_free_memory();

        let (tx, mut rx) = mpsc::channel::<Inbound>(8192);
        let stop_accept = CancellationToken::new();
        let stop_all = CancellationToken::new();
        let mut tasks = JoinSet::new();
        // The core loop reads the UDP sockets itself (see `transport::udp`).
        let mut udp = transport::UdpReaders::new(&self.udp, &tcfg, &self.stats);
        // Accepted TCP connections and those facd opens for in-dialog
        // requests once a dialog's connection has closed (SPEC §4); a
        // request no connection could be opened for comes back as `Unsent`.
        let (unsent_tx, mut unsent_rx) = mpsc::unbounded_channel();
        let connector = transport::Connector::new(
            tcfg.clone(),
            &tx,
            unsent_tx,
            self.stats.clone(),
            stop_all.clone(),
            transport::dial_timeout(Duration::from_millis(self.config.sip.t1_ms)),
        );
        for listener in self.tcp {
            tasks.spawn(transport::run_tcp(
                listener,
                connector.clone(),
                stop_accept.clone(),
            ));
        }
        for (transport, listener) in self.streams {
            tasks.spawn(transport::run_stream(
                listener,
                connector.clone(),
                stop_accept.clone(),
                transport,
            ));
        }
        let contexts: Vec<_> = self.sip_tls.iter().chain(&self.http_tls).cloned().collect();
        if !contexts.is_empty() {
            tasks.spawn(tls::reload_on_hangup(contexts, stop_all.clone()));
        }
        let mut flows = Flows::new(connector);
        tasks.spawn(tcfg.limits.clone().report_every_interval(stop_all.clone()));
        for sock in &self.rtp {
            tasks.spawn(rtp_sink(sock.clone(), stop_all.clone()));
        }
        let (media_tx, media_rx) = mpsc::channel(MEDIA_QUEUE);
        tasks.spawn(media::sender::run(
            self.rtp.clone(),
            media_rx,
            stop_all.clone(),
        ));
        drop(tx);
        tasks.spawn(
            self.wsi
                .clone()
                .dispatch(self.hub.subscribe_on_demand(), stop_all.clone()),
        );
        let app_state = Arc::new(AppState {
            core: self.handle.clone(),
            config: self.api.into(),
            wsi: self.wsi.clone(),
            tokens: Default::default(),
            stop: stop_accept.clone(),
            reports: self.reports,
        });
        let (core_reload_tx, mut core_reload_rx) = mpsc::channel(1);
        let (path, log) = self.reload_from.unzip();
        let log_level = self.config.log_level();
        let reloader = reload::Reloader {
            path,
            // Moved, not copied: with a million agents a copy is 100 MB.
            started: self.config,
            limits: tcfg.limits.clone(),
            api: app_state.clone(),
            log: log.flatten(),
            log_level,
            core: core_reload_tx,
        };
        let (reload_tx, reload_rx) = self.reloads;
        tasks.spawn(reloader.run(reload_rx, stop_all.clone()));
        let app = crate::api::router(app_state.clone())
            .merge(reload::router(app_state, ReloadHandle(reload_tx)))
            .merge(metrics::router(Arc::new(metrics::Exporter {
                probe,
                transport: self.stats.clone(),
                store: store_stats,
                wsi: self.wsi.clone(),
            })));
        tasks.spawn(serve_http(
            self.http,
            self.http_tls.clone(),
            app,
            stop_accept.clone(),
            stop_all.clone(),
        ));

        tokio::pin!(shutdown);
        let sleep = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut drain_until = None;
        // The deadline the sleep is armed for (None: an hour away, nothing
        // due). Re-arming a tokio timer costs a wheel update, so it is done
        // only when the deadline changes, not on every message.
        let mut armed: Option<std::time::Instant> = None;
        loop {
            let now = clock::now();
            // While draining, wake at the drain limit even if no timer is due.
            let want = match (uas.poll_timeout(now), drain_until) {
                (t, None) => t,
                (t, Some(u)) => {
                    let u: std::time::Instant = tokio::time::Instant::into_std(u);
                    Some(t.map_or(u, |t| t.min(u)))
                }
            };
            if want != armed {
                let at = want.unwrap_or(now.mono + Duration::from_secs(3600));
                sleep.as_mut().reset(at.into());
                armed = want;
            }
            tokio::select! {
                biased;
                () = &mut shutdown, if drain_until.is_none() => {
                    info!("shutting down: refusing new calls, hanging up open ones");
                    stop_accept.cancel();
                    uas.begin_drain(clock::now());
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_LIMIT);
                }
                msg = rx.recv() => {
                    let Some(first) = msg else { break };
                    let now = clock::now();
                    uas.handle(now, first);
                    for _ in 1..BATCH {
                        match rx.try_recv() {
                            Ok(m) => uas.handle(now, m),
                            Err(_) => break,
                        }
                    }
                }
                Some((ticket, result)) = done_rx.recv() => {
                    let now = clock::now();
                    uas.on_durable(now, ticket, result);
                    while let Ok((ticket, result)) = done_rx.try_recv() {
                        uas.on_durable(now, ticket, result);
                    }
                    maybe_checkpoint(&uas, &store);
                }
                () = std::future::poll_fn(|cx| udp.poll_ready(cx)) => {
                    let now = clock::now();
                    udp.drain(BATCH, |m| uas.handle(now, m));
                }
                Some(ev) = store.next_event() => {
                    let now = clock::now();
                    store.on_event(&mut uas, now, ev);
                    while let Some(ev) = store.try_event() {
                        store.on_event(&mut uas, now, ev);
                    }
                }
                Some(req) = self.requests.recv() => {
                    let now = clock::now();
                    on_core_request(&mut uas, now, req);
                    while let Ok(req) = self.requests.try_recv() {
                        on_core_request(&mut uas, now, req);
                    }
                }
                Some(unsent) = unsent_rx.recv() => {
                    let now = clock::now();
                    let mut unsent = Some(unsent);
                    while let Some(u) = unsent.take().or_else(|| unsent_rx.try_recv().ok()) {
                        debug!(to = ?u.to, error = %u.error, "in-dialog request not sent");
                        uas.on_unsent(now, u.request);
                    }
                }
                Some(r) = core_reload_rx.recv() => {
                    reload::apply(&mut uas, clock::now(), r);
                    // Drop what the journal holds of removed memberships.
                    checkpoint(&uas, &store, Box::new(|r| {
                        if let Err(e) = r {
                            warn!(error = %e, "snapshot after a reload failed; the journal is intact");
                        }
                    }));
                }
                Some(reply) = probe_rx.recv() => {
                    let _ = reply.send(metrics::sample(&uas));
                }
                () = &mut sleep => {
                    // Fired: an hour away until the next loop arms it for
                    // whatever is due next (a fired sleep stays ready).
                    let now = clock::now();
                    sleep.as_mut().reset((now.mono + Duration::from_secs(3600)).into());
                    armed = None;
                    uas.handle_timeout(now);
                }
            }
            drive(
                &mut uas,
                &mut flows,
                &mut store,
                &done_tx,
                &media_tx,
                &self.hub,
                &mut self.history,
            );
            if let Some(until) = drain_until {
                if uas.drained() && uas.pending_writes() == 0 {
                    break;
                }
                if tokio::time::Instant::now() >= until {
                    warn!("shutdown: calls still open after {DRAIN_LIMIT:?}; leaving them");
                    break;
                }
            }
        }
        drive(
            &mut uas,
            &mut flows,
            &mut store,
            &done_tx,
            &media_tx,
            &self.hub,
            &mut self.history,
        );
        drop(flows);
        let history = self.history;
        let _ = tokio::task::spawn_blocking(move || history.close()).await;
        // Requests the UAS will not run any more get "shutting down".
        self.requests.close();
        while self.requests.try_recv().is_ok() {}
        stop_all.cancel();
        while tasks.join_next().await.is_some() {}
        // Flush the store: a last snapshot, then close (SPEC §8).
        let (snap_tx, snap_rx) = tokio::sync::oneshot::channel();
        checkpoint(
            &uas,
            &store,
            Box::new(move |r| {
                let _ = snap_tx.send(r);
            }),
        );
        match snap_rx.await {
            Ok(Err(e)) => warn!(error = %e, "final snapshot failed; the journal is intact"),
            Err(_) => warn!("final snapshot was not written"),
            Ok(Ok(())) => {}
        }
        store.close().await;
        let s = &uas.stats;
        let t = &self.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        info!(
            requests = s.requests,
            applied = s.applied,
            refused = s.refused,
            retransmissions = s.retransmissions,
            malformed = load(&t.malformed),
            rate_limited = load(&t.rate_limited),
            tcp_refused = load(&t.tcp_refused) + load(&t.tcp_refused_per_ip),
            tcp_dialed = load(&t.tcp_dialed),
            tcp_dial_failed = load(&t.tcp_dial_failed),
            overloaded = s.overloaded,
            banned_drops = s.banned_drops,
            "stopped"
        );
    }
}

/// The sources exempt from the per-source limits: `limits.exempt_sources`,
/// the trusted proxies, and loopback unless `limits.exempt_loopback = false`.
fn exempt(cfg: &Config) -> transport::Exempt {
    let s = cfg.settings();
    transport::Exempt {
        nets: [&s.exempt_sources[..], &s.trusted_proxies[..]].concat(),
        loopback: cfg.limits.exempt_loopback,
    }
}

/// Serves the REST API and `/wsi` (over HTTPS only when `tls` is set)
/// until facd stops accepting, then lets the requests in flight finish (at
/// most [`HTTP_DRAIN_LIMIT`] after `stop_all`).
async fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<transport::TlsContext>>,
    app: axum::Router,
    stop_accept: CancellationToken,
    stop_all: CancellationToken,
) {
    use axum::serve::ListenerExt;
    use futures_util::future::{BoxFuture, FutureExt};
    use std::future::IntoFuture;
    fn tune(tcp: &tokio::net::TcpStream) {
        // Events are small and latency matters: no Nagle delay. A fixed
        // send buffer bounds what the kernel holds for a client that stops
        // reading (autotuning would let it grow to tcp_wmem's maximum).
        let _ = tcp.set_nodelay(true);
        let _ = socket2::SockRef::from(tcp).set_send_buffer_size(HTTP_SEND_BUFFER);
    }
    let graceful = stop_accept.clone().cancelled_owned();
    let serve: BoxFuture<'static, std::io::Result<()>> = match tls {
        None => axum::serve(listener.tap_io(|tcp| tune(tcp)), app)
            .with_graceful_shutdown(graceful)
            .into_future()
            .boxed(),
        Some(ctx) => match tls::HttpsListener::new(listener, ctx, stop_accept, tune) {
            Ok(l) => axum::serve(l, app)
                .with_graceful_shutdown(graceful)
                .into_future()
                .boxed(),
            Err(e) => {
                warn!(error = %e, "https listener failed");
                return;
            }
        },
    };
    tokio::select! {
        r = serve => if let Err(e) = r { warn!(error = %e, "http server failed") },
        () = async {
            stop_all.cancelled().await;
            tokio::time::sleep(HTTP_DRAIN_LIMIT).await;
        } => warn!("http: requests still open at exit; leaving them"),
    }
}

/// Hands out what the UAS produced: messages to the flows, journal
/// writes to the store (their completions come back on `done`), tone
/// orders to the media sender, finished API commands to their waiters,
/// durable events to the hub.
fn drive(
    uas: &mut ShellUas,
    flows: &mut Flows,
    store: &mut Storage,
    done: &mpsc::UnboundedSender<(u64, Result<(), StoreError>)>,
    media: &mpsc::Sender<media::MediaOrder>,
    hub: &Hub,
    history: &mut history::Sink,
) {
    // The local journal takes every append of this turn as one batch (one
    // hand-over to its thread); each ticket is reported on `done`.
    let mut tickets = Vec::new();
    let mut records = Vec::new();
    let hand_over = |store: &Store, tickets: &mut Vec<u64>, records: &mut Vec<Vec<u8>>| {
        if tickets.is_empty() {
            return;
        }
        let (tickets, done) = (std::mem::take(tickets), done.clone());
        store.append(
            std::mem::take(records),
            Box::new(move |r| {
                for t in tickets {
                    let _ = done.send((t, r.clone()));
                }
            }),
        );
    };
    while let Some(order) = uas.poll_journal() {
        match (order, &mut *store) {
            (JournalOrder::Append { ticket, record }, Storage::Local(_)) => {
                tickets.push(ticket);
                records.push(record);
            }
            (JournalOrder::Reset, Storage::Local(store)) => {
                hand_over(store, &mut tickets, &mut records);
                store.reset();
            }
            (JournalOrder::Append { ticket, record }, Storage::Pg(c)) => {
                // Refused before reaching the database: undone and answered
                // at once (the loop then takes the UAS's next orders).
                if let Err(e) = c.append(ticket, &record) {
                    uas.on_durable(clock::now(), ticket, Err(e));
                }
            }
            // The database keeps no half-written change to drop.
            (JournalOrder::Reset, Storage::Pg(_)) => {}
        }
    }
    if let Storage::Local(store) = store {
        hand_over(store, &mut tickets, &mut records);
    }
    while let Some(t) = uas.poll_transmit() {
        flows.send(t);
    }
    while let Some(order) = uas.poll_media() {
        if media.try_send(order).is_err() {
            warn!("media sender behind: a tone order was dropped");
        }
    }
    while let Some((waiter, outcome)) = uas.poll_finished() {
        let _ = waiter.send(outcome);
    }
    while let Some(ev) = uas.poll_event() {
        history.record(&ev);
        hub.publish(ev);
    }
    history.flush();
}

/// Writes a snapshot once the journal has grown past [`CHECKPOINT_BYTES`].
fn maybe_checkpoint(uas: &ShellUas, store: &Storage) {
    let Storage::Local(store) = store else { return };
    if store.journal_len() < CHECKPOINT_BYTES {
        return;
    }
    checkpoint_local(
        uas,
        store,
        Box::new(|r| {
            if let Err(e) = r {
                warn!(error = %e, "snapshot failed; the journal keeps growing");
            }
        }),
    );
}

/// Writes a snapshot of every state (ordered after all journaled changes).
/// Nothing to do on a shared store: PostgreSQL holds every agent's rows.
fn checkpoint(uas: &ShellUas, store: &Storage, done: crate::store::Done) {
    match store {
        Storage::Local(store) => checkpoint_local(uas, store, done),
        Storage::Pg(_) => done(Ok(())),
    }
}

/// See [`checkpoint`].
fn checkpoint_local(uas: &ShellUas, store: &Store, done: crate::store::Done) {
    match crate::engine::record::encode(&uas.engine().export()) {
        Ok(snap) => store.checkpoint(snap, done),
        Err(e) => warn!(error = %e, "cannot encode a snapshot"),
    }
}

/// One request from the API side, run on the UAS.
fn on_core_request(uas: &mut ShellUas, now: Now, req: CoreRequest) {
    match req {
        CoreRequest::Apply { cmd, cause, done } => uas.apply_command(now, cmd, cause, done),
        CoreRequest::Query(job) => job(uas.engine()),
    }
}

/// Returns freed heap pages to the OS (glibc keeps them otherwise).
fn release_free_memory() {
    // The binary's allocator is mimalloc: return its free pages at once.
    // SAFETY: mi_collect only walks mimalloc's own heaps.
    unsafe { libmimalloc_sys::mi_collect(true) };
    // Whatever glibc's malloc still holds (C libraries, tests' processes).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Swallows RTP sent to the address our SDP names, so callers see no ICMP.
async fn rtp_sink(sock: Arc<UdpSocket>, stop: CancellationToken) {
    let mut buf = [0u8; 2048];
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => if let Err(e) = r { debug!(error = %e, "rtp sink") },
            () = stop.cancelled() => return,
        }
    }
}

/// Opens the change history beside the journal and starts its writer with
/// the states just recovered (a checkpoint; see `history`).
fn open_history(config: &Config, engine: &Engine) -> Result<history::Sink, ServerError> {
    let dir = history_dir(config);
    let initial = engine
        .export()
        .into_iter()
        .filter_map(|c| match c {
            crate::engine::Change::Cell { agent, queue, cell } => Some(history::StateAt {
                at: 0,
                agent,
                queue,
                state: cell.state,
                reason: cell.reason,
                pending: cell.pending.map(|p| p.state),
                since: cell.since,
            }),
            // Calls and membership lists are not states: a pair that is
            // no longer a membership has no cell, so it is LOGGED_OUT here.
            crate::engine::Change::Calls { .. } | crate::engine::Change::Membership { .. } => None,
        })
        .filter(|s| s.state != crate::engine::AgentState::LoggedOut)
        .collect();
    history::Sink::start(
        &dir,
        config.storage.history_days,
        config.storage.sync,
        initial,
    )
    .map_err(|e| ServerError::History(dir, e))
}

/// `storage.dir/history`.
pub(crate) fn history_dir(config: &Config) -> std::path::PathBuf {
    config.storage.dir.join("history")
}
