//! Reload without restart: on SIGHUP (`main`) or `POST /admin/reload` (an
//! admin API token), the configuration file is read and validated again
//! off the core task. A file that does not validate is refused whole, with
//! every problem, and nothing changes. A valid one is applied in place:
//! agents, queues, memberships, reasons and codes (the UAS and engine, every
//! agent keeping its state; removed memberships and agents are logged out,
//! an event each), agents' secrets, trusted proxies, API users, the
//! per-source and authentication limits, `limits.max_transactions` and the
//! log level. What needs a restart (listen addresses, storage, the digest
//! realm and algorithms, timers, table sizes) is named in the answer and the
//! log, and keeps its running value.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::recover::{agent_secrets, codes, model};
use super::{exempt, ShellUas};
use crate::api::{AppState, Principal};
use crate::config::Config;
use crate::engine::Reloaded;
use crate::limits::AuthLimits;
use crate::sip::star_code::StarCodeParser;
use crate::transport::SourceLimits;
use crate::uas::Reload;

/// Sets the log filter (an `EnvFilter` directive such as `"info"` or
/// `"facd=debug,warn"`); given by `main`, which owns the subscriber.
pub type LogHook = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Agents added.
    pub agents_added: usize,
    /// Agents removed (logged out of every queue).
    pub agents_removed: usize,
    /// Agent × queue memberships added.
    pub memberships_added: usize,
    /// Memberships removed (logged out there).
    pub memberships_removed: usize,
    /// Logout events the removals caused.
    pub logged_out: usize,
    /// Keys that changed but need a restart; their running values stay.
    pub restart_needed: Vec<String>,
}

/// Why a reload was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The server was started without a configuration file.
    #[error("facd was not started from a configuration file")]
    NoFile,
    /// The file does not validate: every problem, one per line.
    #[error("the configuration is not valid, nothing was changed:\n{0}")]
    Invalid(String),
    /// Shutting down.
    #[error("facd is shutting down")]
    Stopped,
}

pub(super) type Request = oneshot::Sender<Result<ReloadReport, ReloadError>>;

/// Asks the running server to reload its configuration.
#[derive(Clone, Debug)]
pub struct ReloadHandle(pub(super) mpsc::Sender<Request>);

impl ReloadHandle {
    /// Reloads and waits for the outcome.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let (tx, rx) = oneshot::channel();
        self.0.send(tx).await.map_err(|_| ReloadError::Stopped)?;
        rx.await.unwrap_or(Err(ReloadError::Stopped))
    }
}

/// A reload for the core task, and where its outcome goes.
pub(super) type CoreReload = (Box<Reload>, oneshot::Sender<Reloaded>);

/// Applies a reload on the core task.
pub(super) fn apply(uas: &mut ShellUas, now: crate::uas::Now, r: CoreReload) {
    let (reload, done) = r;
    let _ = done.send(uas.reload(now, *reload));
}

/// The reload task's state.
pub(super) struct Reloader {
    pub(super) path: Option<PathBuf>,
    /// The configuration the server started with (what needs a restart is
    /// compared with it).
    pub(super) started: Config,
    pub(super) limits: Arc<SourceLimits>,
    pub(super) api: Arc<AppState>,
    pub(super) log: Option<LogHook>,
    /// The log filter in force.
    pub(super) log_level: String,
    pub(super) core: mpsc::Sender<CoreReload>,
}

impl Reloader {
    /// Serves reload requests until `stop`.
    pub(super) async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        stop: CancellationToken,
    ) {
        loop {
            let req = tokio::select! {
                r = requests.recv() => match r { Some(r) => r, None => return },
                () = stop.cancelled() => return,
            };
            let outcome = self.reload().await;
            match &outcome {
                Ok(r) => {
                    info!(
                        agents_added = r.agents_added,
                        agents_removed = r.agents_removed,
                        memberships_added = r.memberships_added,
                        memberships_removed = r.memberships_removed,
                        logged_out = r.logged_out,
                        "configuration reloaded"
                    );
                    if !r.restart_needed.is_empty() {
                        warn!(keys = %r.restart_needed.join(", "), "configuration changes that need a restart were not applied");
                    }
                }
                Err(e) => warn!(error = %e, "configuration reload refused"),
            }
            let _ = req.send(outcome);
        }
    }

    async fn reload(&mut self) -> Result<ReloadReport, ReloadError> {
        let path = self.path.clone().ok_or(ReloadError::NoFile)?;
        let cfg = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|_| ReloadError::Stopped)?
            .map_err(|e| ReloadError::Invalid(e.to_string()))?;
        let level = cfg.log_level();
        let restart_needed = restart_needed(&self.started, &cfg);
        let reload = Reload {
            model: model(&cfg),
            codes: StarCodeParser::new(codes(&cfg)),
            secrets: agent_secrets(&cfg),
            proxies: cfg.settings().trusted_proxies.clone(),
            auth: AuthLimits {
                max_failures: cfg.limits.auth_failures,
                window: Duration::from_secs(cfg.limits.auth_window_secs),
                ban: Duration::from_secs(cfg.limits.auth_ban_secs),
                max_sources: super::AUTH_SOURCES,
            },
            max_transactions: cfg.limits.max_transactions,
        };
        let (tx, rx) = oneshot::channel();
        self.core
            .send((Box::new(reload), tx))
            .await
            .map_err(|_| ReloadError::Stopped)?;
        let done = rx.await.map_err(|_| ReloadError::Stopped)?;
        self.limits.update(
            cfg.limits.requests_per_sec,
            cfg.limits.request_burst,
            cfg.limits.tcp_connections_per_ip,
            exempt(&cfg),
        );
        self.api
            .config
            .replace(crate::api::ApiConfig::from_config(&cfg));
        // Queue and extension ids of what the reload added, for WSI events.
        self.api
            .wsi
            .set_naming(crate::api::wsi::Naming::new(&self.api.config.get()));
        if let Some(hook) = &self.log {
            if level != self.log_level {
                // Validated with the file; a refusal here is only logged.
                match hook(&level) {
                    Ok(()) => self.log_level = level,
                    Err(e) => warn!(error = %e, "log level not changed"),
                }
            }
        }
        Ok(ReloadReport {
            agents_added: done.agents_added,
            agents_removed: done.agents_removed,
            memberships_added: done.memberships_added,
            memberships_removed: done.memberships_removed,
            logged_out: done.events.len(),
            restart_needed,
        })
    }
}

/// The keys whose new value differs from the running one and that only a
/// restart applies.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    // Each key's value in both configurations, compared by its Debug form
    // (a changed value prints differently).
    macro_rules! changed {
        ($($key:literal => $($field:ident).+,)*) => {
            [$(($key, format!("{:?}", old.$($field).+) != format!("{:?}", new.$($field).+))),*]
        };
    }
    changed! {
        "sip.listen" => sip.listen,
        "sip.domain" => sip.domain,
        "sip.confirm_ms" => sip.confirm_ms,
        "sip.max_message_bytes" => sip.max_message_bytes,
        "sip.max_tcp_connections" => sip.max_tcp_connections,
        "sip.tcp_idle_secs" => sip.tcp_idle_secs,
        "sip.tcp_message_secs" => sip.tcp_message_secs,
        "sip.udp_recv_buffer_bytes" => sip.udp_recv_buffer_bytes,
        "sip.t1_ms" => sip.t1_ms,
        "auth.required" => auth.required,
        "auth.algorithms" => auth.algorithms,
        "storage" => storage,
        "http.listen" => http.listen,
        "limits.max_dialogs" => limits.max_dialogs,
        "subscribe" => subscribe,
    }
    .into_iter()
    .filter(|(_, differs)| *differs)
    .map(|(key, _)| key.to_string())
    .collect()
}

/// `POST /admin/reload` (an admin bearer token): 200 with the
/// [`ReloadReport`], 400 with every problem, 401/403, 503 while stopping.
pub(super) fn router(api: Arc<AppState>, handle: ReloadHandle) -> Router {
    Router::new()
        .route("/admin/reload", post(reload_endpoint))
        .with_state((api, handle))
}

async fn reload_endpoint(
    State((api, handle)): State<(Arc<AppState>, ReloadHandle)>,
    headers: HeaderMap,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let error = |status: StatusCode, msg: String| {
        (status, Json(serde_json::json!({ "error": msg }))).into_response()
    };
    match token.and_then(|t| api.config.get().by_token(&t)) {
        None => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
            return r;
        }
        Some(Principal::Agent(_)) => {
            return error(StatusCode::FORBIDDEN, "only an admin may reload".into())
        }
        Some(Principal::Admin) => {}
    }
    match handle.reload().await {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(e @ ReloadError::Invalid(_)) | Err(e @ ReloadError::NoFile) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e @ ReloadError::Stopped) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
