//! The HTTP side of facd (SPEC §5, §6): the axum router with PortSIP's REST
//! API under `/api/`, the WebSocket `/wsi` and `/openapi.json`; bearer
//! tokens (static ones of `[[api_users]]`, or from a login) and PortSIP's
//! error shape `{"errors":[{"code","message"}]}`.
//!
//! It owns no agent state: every read and change goes to the core task
//! through [`CoreHandle`] (`query`/`apply`), and a change is durable before
//! its 200 leaves (SPEC §7) because `apply` resolves only then.

mod auth;
mod ids;
mod openapi;
pub mod reports;
mod rest;
mod wallboard;
pub mod wsi;

use std::collections::BTreeMap;

use ahash::AHashMap as HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::config::{ApiRole, Config};
use crate::engine::{QueueId, ReasonName, Rejection};
use crate::events::{CoreHandle, HandleError};
use crate::sip::auth::{digest, Algorithm, Secret};
use crate::uas::ApplyError;
use wsi::Wsi;

pub use auth::{ACCESS_SECS, MAX_SESSIONS as MAX_LOGINS, REFRESH_SECS};
pub use openapi::document as openapi_document;

/// Largest request body accepted (bodies here are a few dozen bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Who a request (or a WebSocket session) acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An `admin` API user: everything.
    Admin,
    /// An agent (an `agent` API user, or an agent logged in to `/wsi` with
    /// its SIP password): its own extension only.
    Agent(String),
}

impl Principal {
    /// May this principal read or change `agent`?
    pub fn may_act_on(&self, agent: &str) -> bool {
        match self {
            Self::Admin => true,
            Self::Agent(own) => own == agent,
        }
    }
}

struct ApiUser {
    name: String,
    token: Option<String>,
    password: Option<String>,
    principal: Principal,
}

/// A configured queue as the API shows it.
#[derive(Debug, Clone)]
pub(crate) struct QueueInfo {
    /// The opaque PortSIP-style id.
    pub(crate) id: String,
    pub(crate) number: QueueId,
    pub(crate) name: String,
    pub(crate) auto_ready: bool,
    pub(crate) wrap_up_secs: u64,
    pub(crate) not_ready_after_other_call: bool,
}

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The API's configuration as the handlers read it: replaced whole by a
/// configuration reload, so a request sees one configuration throughout.
pub struct SharedConfig(RwLock<Arc<ApiConfig>>);

impl SharedConfig {
    /// The configuration now.
    pub fn get(&self) -> Arc<ApiConfig> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes a reloaded configuration (the realm, `sip.domain`, needs a
    /// restart).
    pub fn replace(&self, new: ApiConfig) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
    }
}

impl From<ApiConfig> for SharedConfig {
    fn from(c: ApiConfig) -> Self {
        Self(RwLock::new(Arc::new(c)))
    }
}

/// What the API needs from the configuration, taken before the server
/// drops the agent list.
pub struct ApiConfig {
    users: Vec<ApiUser>,
    /// Agents' SIP secrets, for `/wsi` logins with extension + password.
    agents: HashMap<String, Secret>,
    realm: String,
    /// Every queue number, in configuration order.
    pub(crate) queues: Vec<String>,
    /// Every queue with its id, in configuration order.
    pub(crate) queue_info: Vec<QueueInfo>,
    queue_by_id: HashMap<String, usize>,
    /// Configured not-ready reasons: code and name (upper-case).
    pub(crate) reasons: Vec<(u32, ReasonName)>,
    /// Extension ids.
    pub(crate) ext_ids: ids::LazyIds,
    /// The id of facd's one tenant.
    pub(crate) tenant_id: String,
}

impl ApiConfig {
    /// Takes the API users, agent secrets, queues and reasons.
    pub fn from_config(cfg: &Config) -> Self {
        let users = cfg
            .settings()
            .api_users
            .iter()
            .map(|u| ApiUser {
                name: u.name.clone(),
                token: u.token.clone(),
                password: u.password.clone(),
                principal: match &u.role {
                    ApiRole::Agent(ext) => Principal::Agent(ext.clone()),
                    ApiRole::Admin => Principal::Admin,
                },
            })
            .collect();
        let agents = cfg
            .agents
            .iter()
            .filter_map(|a| {
                let secret = match (&a.password, &a.ha1, &a.ha1_sha256) {
                    (Some(p), _, _) => Secret::Password(p.clone()),
                    (_, Some(h), _) => Secret::Ha1Md5(h.to_ascii_lowercase()),
                    (_, _, Some(h)) => Secret::Ha1Sha256(h.to_ascii_lowercase()),
                    _ => return None,
                };
                Some((a.extension.clone(), secret))
            })
            .collect();
        let queue_info: Vec<QueueInfo> = cfg
            .queues
            .iter()
            .map(|q| QueueInfo {
                id: ids::queue_id(&q.number),
                number: q.number.as_str().into(),
                name: q.name.clone(),
                auto_ready: q.auto_ready,
                wrap_up_secs: q.wrap_up_secs,
                not_ready_after_other_call: q.not_ready_after_other_call,
            })
            .collect();
        Self {
            users,
            agents,
            realm: cfg.sip.domain.clone(),
            queues: cfg.queues.iter().map(|q| q.number.clone()).collect(),
            queue_by_id: queue_info
                .iter()
                .enumerate()
                .map(|(i, q)| (q.id.clone(), i))
                .collect(),
            queue_info,
            reasons: cfg
                .reasons
                .iter()
                .map(|r| (r.code, r.name.as_str().into()))
                .collect(),
            ext_ids: ids::LazyIds::build(cfg.agents.iter().map(|a| a.extension.clone()).collect()),
            tenant_id: ids::tenant_id(&cfg.sip.domain),
        }
    }

    /// The queue whose id is `id`.
    pub(crate) fn queue_by_id(&self, id: &str) -> Option<&QueueInfo> {
        self.queue_by_id.get(id).map(|&i| &self.queue_info[i])
    }

    /// The queue whose number is `number`.
    pub(crate) fn queue_by_number(&self, number: &str) -> Option<&QueueInfo> {
        self.queue_info.iter().find(|q| q.number == number)
    }

    /// The principal whose bearer token this is.
    pub fn by_token(&self, token: &str) -> Option<Principal> {
        // Compare with every token (constant time each) so timing tells
        // nothing about which one nearly matched.
        let mut found = None;
        for u in &self.users {
            let hit = u.token.as_deref().is_some_and(|t| ct_eq(t, token));
            if hit && found.is_none() {
                found = Some(u.principal.clone());
            }
        }
        found
    }

    /// A login (`POST /api/login`, `/wsi` auth): an API user's name and
    /// password (or static token), or an agent's extension and SIP password
    /// (checked against its HA1 when only that is configured). A `domain`,
    /// when given, must be facd's SIP domain (PortSIP's tenant domain).
    pub fn login(&self, username: &str, password: &str, domain: Option<&str>) -> Option<Principal> {
        if domain.is_some_and(|d| !d.eq_ignore_ascii_case(&self.realm)) {
            return None;
        }
        if let Some(u) = self.users.iter().find(|u| u.name == username) {
            let by_password = u.password.as_deref().is_some_and(|p| ct_eq(p, password));
            let by_token = u.token.as_deref().is_some_and(|t| ct_eq(t, password));
            if by_password | by_token {
                return Some(u.principal.clone());
            }
        }
        let ok = match self.agents.get(username)? {
            Secret::Password(p) => ct_eq(p, password),
            Secret::Ha1Md5(h) => {
                let mine = digest::ha1(Algorithm::Md5, username, &self.realm, password);
                bool::from(mine.as_bytes().ct_eq(h.as_bytes()))
            }
            Secret::Ha1Sha256(h) => {
                let mine = digest::ha1(Algorithm::Sha256, username, &self.realm, password);
                bool::from(mine.as_bytes().ct_eq(h.as_bytes()))
            }
        };
        ok.then(|| Principal::Agent(username.to_string()))
    }
}

/// Shared by every handler.
pub(crate) struct AppState {
    pub(crate) core: CoreHandle,
    pub(crate) config: SharedConfig,
    pub(crate) wsi: Wsi,
    /// Tokens handed out by logins.
    pub(crate) tokens: auth::Tokens,
    /// Cancelled when facd stops accepting (WebSocket sessions close).
    pub(crate) stop: CancellationToken,
    /// Reason names and the change history (reports).
    pub(crate) reports: reports::ReportsState,
}

pub(crate) type Shared = Arc<AppState>;

/// Why a request failed; the body is PortSIP's
/// `{"errors": [{"code": "<CODE>", "message": "<message>"}]}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No bearer token, or not a known one.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// A login's access token that has expired.
    #[error("the access token has expired; refresh it or log in again")]
    Expired,
    /// Wrong credentials or refresh token (`POST /api/login` and friends).
    #[error("{0}")]
    LoginFailed(String),
    /// The same, on `/api/login/oauth/token`, which PortSIP answers 400.
    #[error("{0}")]
    LoginFailedForm(String),
    /// An agent's token on something that is not its own.
    #[error("{0}")]
    Forbidden(String),
    /// A field, path segment or body that does not validate.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing by that name.
    #[error("{0}")]
    NotFound(String),
    /// The body is too large.
    #[error("the request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// The engine refused the change; nothing changed.
    #[error("{0}")]
    Rejected(Rejection),
    /// The journal write failed; the change was undone.
    #[error("the change could not be saved; nothing changed")]
    NotSaved,
    /// facd is shutting down.
    #[error("facd is shutting down")]
    Stopped,
    /// Too many sessions (WebSocket).
    #[error("{0}")]
    Busy(String),
    /// No such route.
    #[error("no such endpoint (see /openapi.json)")]
    NoRoute,
    /// The route exists, the method does not.
    #[error("method not allowed on this endpoint (see /openapi.json)")]
    BadMethod,
    /// The change history could not be read.
    #[error("the history could not be read")]
    HistoryUnreadable,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized | Self::Expired | Self::LoginFailed(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) | Self::LoginFailedForm(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Rejected(r) => {
                StatusCode::from_u16(r.http_status()).unwrap_or(StatusCode::CONFLICT)
            }
            Self::NotSaved | Self::HistoryUnreadable => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Stopped | Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadMethod => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The error `code`: PortSIP's `VALIDATE_FAILED`, `UNAUTHORIZED` and
    /// `UNKNOWN` where they fit, otherwise facd's own in the same style
    /// (PortSIP: clients treat unknown codes as `UNKNOWN`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized
            | Self::Expired
            | Self::LoginFailed(_)
            | Self::LoginFailedForm(_) => "UNAUTHORIZED",
            Self::Forbidden(_) => "PERMISSION_DENIED",
            Self::BadRequest(_) | Self::TooLarge => "VALIDATE_FAILED",
            Self::NotFound(_) | Self::NoRoute => "NOT_FOUND",
            Self::Rejected(r) => match r {
                Rejection::UnknownReason => "VALIDATE_FAILED",
                Rejection::UnknownAgent | Rejection::UnknownQueue | Rejection::UnknownCall => {
                    "NOT_FOUND"
                }
                Rejection::NotAMember => "AGENT_NOT_MEMBER",
                Rejection::NotLoggedIn => "AGENT_NOT_LOGGED_IN",
                Rejection::NotReadyInQueue => "AGENT_NOT_READY",
                Rejection::DuplicateCall => "CALL_EXISTS",
            },
            Self::NotSaved | Self::HistoryUnreadable => "UNKNOWN",
            Self::Stopped | Self::Busy(_) => "SERVICE_UNAVAILABLE",
            Self::BadMethod => "METHOD_NOT_ALLOWED",
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Rejected(r) => Self::Rejected(r),
            ApplyError::NotSaved => Self::NotSaved,
        }
    }
}

impl From<HandleError> for ApiError {
    fn from(HandleError::Stopped: HandleError) -> Self {
        Self::Stopped
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "api request failed");
        }
        let body = serde_json::json!({
            "errors": [{ "code": self.code(), "message": self.to_string() }]
        });
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, Self::Unauthorized | Self::Expired) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"facd\""),
            );
        }
        resp
    }
}

/// The caller, from `Authorization: Bearer <token>` (RFC 6750 §2.1).
pub(crate) struct Caller(pub(crate) Principal);

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        if let Some(p) = state.config.get().by_token(token) {
            return Ok(Self(p));
        }
        state
            .tokens
            .principal(token)?
            .map(Self)
            .ok_or(ApiError::Unauthorized)
    }
}

/// The token of `Authorization: Bearer <token>`; the scheme is
/// case-insensitive (RFC 7235 §2.1).
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A JSON body whose every error is a 400 (or 413) with a message.
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge
                } else {
                    ApiError::BadRequest(format!("cannot read the body: {e}"))
                }
            })?;
        if bytes.is_empty() {
            return Err(ApiError::BadRequest("a JSON body is required".into()));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// The routes, recorded as they are added so that the OpenAPI document can
/// be checked against exactly what is served.
struct Routes {
    map: BTreeMap<&'static str, MethodRouter<Shared>>,
    list: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Self {
        Self {
            map: BTreeMap::new(),
            list: Vec::new(),
        }
    }

    fn on<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: axum::handler::Handler<T, Shared>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        let mr = self.map.remove(path).unwrap_or_default();
        self.map.insert(path, mr.on(filter, handler));
        self.list.push((method, path));
        self
    }
}

fn routes() -> Routes {
    use Method as M;
    Routes::new()
        .on(M::GET, "/openapi.json", openapi::serve)
        .on(M::GET, "/wsi", wsi::upgrade)
        .on(M::POST, "/api/login", auth::login)
        .on(M::GET, "/api/login", auth::login_status)
        .on(M::POST, "/api/login/oauth/token", auth::oauth_token)
        .on(M::POST, "/api/auth/sign_in", auth::sign_in)
        .on(M::POST, "/api/auth/refresh_token", auth::refresh)
        .on(M::POST, "/api/auth/sign_out", auth::sign_out)
        .on(M::GET, "/api/call_queues", rest::list_queues)
        .on(M::GET, "/api/call_queues/{id}", rest::show_queue)
        .on(M::GET, "/api/call_queues/{id}/agents", rest::queue_agents)
        .on(
            M::POST,
            "/api/call_queues/{id}/agents",
            rest::set_queue_agents,
        )
        .on(
            M::GET,
            "/api/call_queues/{id}/agents/{agent_number}",
            rest::queue_agent,
        )
        .on(
            M::POST,
            "/api/call_queues/{id}/agents/{agent_number}",
            rest::set_queue_agent,
        )
        .on(
            M::POST,
            "/api/call_queues/{id}/agents/status/get_many",
            rest::get_many,
        )
        .on(
            M::GET,
            "/api/call_queues/{id}/ready_agents",
            rest::ready_agents,
        )
        .on(M::GET, "/api/user/call_queues", rest::user_queues)
        .on(M::GET, "/api/user/call_queues/{id}/agent", rest::user_agent)
        .on(
            M::POST,
            "/api/user/call_queues/{id}/agent",
            rest::set_user_agent,
        )
        .on(M::GET, "/api/users", rest::list_users)
        .on(M::GET, "/api/users/{id}/call_queues", rest::users_queues)
        .on(
            M::GET,
            "/api/users/{id}/call_queues/{queue_id}/agent",
            rest::users_agent,
        )
        .on(
            M::POST,
            "/api/users/{id}/call_queues/{queue_id}/agent",
            rest::set_users_agent,
        )
        .on(M::GET, "/api/not_ready_codes", rest::not_ready_codes)
        .on(
            M::POST,
            "/api/agents/{agent_number}/calls",
            rest::call_start,
        )
        .on(
            M::POST,
            "/api/agents/{agent_number}/calls/{call_id}/destroy",
            rest::call_end,
        )
        .on(M::GET, "/api/reports/agent_states", reports::agent_states)
        .on(
            M::GET,
            "/api/agents/{agent_number}/history",
            reports::agent_history,
        )
        .on(M::GET, "/api/wallboard/state", wallboard::state)
}

/// Every `(method, path)` the router serves, in axum's `{param}` syntax.
pub fn served_routes() -> Vec<(Method, &'static str)> {
    routes().list
}

/// The router with its state.
pub(crate) fn router(state: Shared) -> Router {
    state.wsi.set_naming(wsi::Naming::new(&state.config.get()));
    let mut router = Router::new();
    for (path, mr) in routes().map {
        router = router.route(path, mr);
    }
    router
        .merge(wallboard::pages())
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::BadMethod })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
