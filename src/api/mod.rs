//! The HTTP side of facd (SPEC §5, §6): the axum router with the REST API,
//! the WebSocket `/wsi` and `/openapi.json`, bearer-token authentication
//! per `[[api_users]]`, and JSON errors.
//!
//! It owns no agent state: every read and change goes to the core task
//! through [`CoreHandle`] (`query`/`apply`), and a change is durable before
//! its 200 leaves (SPEC §7) because `apply` resolves only then.

mod openapi;
pub mod reports;
mod rest;
mod wallboard;
pub mod wsi;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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
use crate::engine::{ReasonName, Rejection};
use crate::events::{CoreHandle, HandleError};
use crate::sip::auth::{digest, Algorithm, Secret};
use crate::uas::ApplyError;
use wsi::Wsi;

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
    token: String,
    principal: Principal,
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
    /// Configured not-ready reason names (upper-case).
    pub(crate) reasons: Vec<ReasonName>,
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
        Self {
            users,
            agents,
            realm: cfg.sip.domain.clone(),
            queues: cfg.queues.iter().map(|q| q.number.clone()).collect(),
            reasons: cfg.reasons.iter().map(|r| r.name.as_str().into()).collect(),
        }
    }

    /// The principal whose bearer token this is.
    pub fn by_token(&self, token: &str) -> Option<Principal> {
        // Compare with every token (constant time each) so timing tells
        // nothing about which one nearly matched.
        let mut found = None;
        for u in &self.users {
            if bool::from(u.token.as_bytes().ct_eq(token.as_bytes())) && found.is_none() {
                found = Some(u.principal.clone());
            }
        }
        found
    }

    /// A `/wsi` login: an API user's name and token, or an agent's
    /// extension and SIP password (checked against its HA1 when only that
    /// is configured).
    pub fn login(&self, username: &str, password: &str) -> Option<Principal> {
        if let Some(u) = self.users.iter().find(|u| u.name == username) {
            if bool::from(u.token.as_bytes().ct_eq(password.as_bytes())) {
                return Some(u.principal.clone());
            }
        }
        let ok = match self.agents.get(username)? {
            Secret::Password(p) => bool::from(p.as_bytes().ct_eq(password.as_bytes())),
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
    pub(crate) config: ApiConfig,
    pub(crate) wsi: Wsi,
    /// Cancelled when facd stops accepting (WebSocket sessions close).
    pub(crate) stop: CancellationToken,
    /// Queue names and the change history (reports, wallboard).
    pub(crate) reports: reports::ReportsState,
}

pub(crate) type Shared = Arc<AppState>;

/// Why a request failed; the body is `{"error": "<message>"}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No bearer token, or not one of `[[api_users]]`.
    #[error("missing or wrong bearer token")]
    Unauthorized,
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
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
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
        let mut resp = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if matches!(self, Self::Unauthorized) {
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
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized)?;
        // The scheme is case-insensitive (RFC 7235 §2.1).
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::Unauthorized);
        }
        state
            .config
            .by_token(token.trim())
            .map(Self)
            .ok_or(ApiError::Unauthorized)
    }
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
    Routes::new()
        .on(Method::GET, "/openapi.json", openapi::serve)
        .on(Method::GET, "/wsi", wsi::upgrade)
        .on(
            Method::GET,
            "/call_queues/{queue}/agents",
            rest::queue_agents,
        )
        .on(
            Method::GET,
            "/call_queues/{queue}/agents/{agent}",
            rest::queue_agent,
        )
        .on(
            Method::POST,
            "/call_queues/{queue}/agents/{agent}",
            rest::set_status,
        )
        .on(
            Method::GET,
            "/call_queues/{queue}/ready_agents",
            rest::ready_agents,
        )
        .on(Method::GET, "/agents/{agent}", rest::agent)
        .on(Method::POST, "/agents/{agent}/calls", rest::call_start)
        .on(
            Method::DELETE,
            "/agents/{agent}/calls/{call_id}",
            rest::call_end,
        )
        .on(Method::GET, "/reports/agent_states", reports::agent_states)
        .on(
            Method::GET,
            "/agents/{agent}/history",
            reports::agent_history,
        )
        .on(Method::GET, "/wallboard/state", wallboard::state)
}

/// Every `(method, path)` the router serves, in axum's `{param}` syntax.
pub fn served_routes() -> Vec<(Method, &'static str)> {
    routes().list
}

/// The router with its state.
pub(crate) fn router(state: Shared) -> Router {
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
