//! PortSIP's login (REST API 22.0 `POST /login`, `GET /login`, and the later
//! `/auth/sign_in`, `/auth/refresh_token`, `/auth/sign_out`; the
//! `/login/oauth/token` form of PortSIP's Authentication page): expiring
//! access tokens and their refresh tokens, kept in memory.
//!
//! Credentials are an `[[api_users]]` name with its `password` (or its
//! static `token`), or an agent's extension with its SIP password; a
//! `domain`, when sent, must be facd's `sip.domain`. Tokens live
//! [`ACCESS_SECS`] (PortSIP's 1800 s) and refresh tokens [`REFRESH_SECS`];
//! a refresh hands out a new pair and retires the old one. They are lost at
//! a restart (clients log in again); static tokens are not.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::{Form, Json};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::ids::rfc3339;
use super::{ApiError, Body, Caller, Principal, Shared};

/// How long an access token is valid (PortSIP's `expires_in` example).
pub const ACCESS_SECS: u64 = 1800;
/// How long a refresh token is valid.
pub const REFRESH_SECS: u64 = 7 * 24 * 3600;
/// Live sessions at most (each login adds one until it expires).
pub const MAX_SESSIONS: usize = 100_000;

struct Access {
    principal: Principal,
    until: Instant,
    until_wall: u64,
}

struct Refresh {
    principal: Principal,
    until: Instant,
    access: String,
}

/// The tokens handed out by logins.
#[derive(Default)]
pub(crate) struct Tokens {
    inner: Mutex<TokenTables>,
}

#[derive(Default)]
struct TokenTables {
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
}

/// A fresh pair.
#[derive(Debug, Serialize)]
pub(crate) struct Issued {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
    /// RFC 3339 (`GET /login`'s field, also sent here).
    expires_at: String,
    /// PortSIP's built-in role name: `Admin` or `StandardUser`.
    role: &'static str,
}

fn role(p: &Principal) -> &'static str {
    match p {
        Principal::Admin => "Admin",
        Principal::Agent(_) => "StandardUser",
    }
}

fn new_token() -> String {
    let bytes: [u8; 24] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Tokens {
    fn tables(&self) -> MutexGuard<'_, TokenTables> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The principal of a live access token.
    pub(crate) fn principal(&self, token: &str) -> Result<Option<Principal>, ApiError> {
        let t = self.tables();
        match t.access.get(token) {
            None => Ok(None),
            Some(a) if a.until <= Instant::now() => Err(ApiError::Expired),
            Some(a) => Ok(Some(a.principal.clone())),
        }
    }

    fn issue(&self, principal: Principal) -> Result<Issued, ApiError> {
        let mut t = self.tables();
        let now = Instant::now();
        t.access.retain(|_, a| a.until > now);
        t.refresh.retain(|_, r| r.until > now);
        if t.access.len() >= MAX_SESSIONS || t.refresh.len() >= MAX_SESSIONS {
            return Err(ApiError::Busy(format!(
                "more than {MAX_SESSIONS} logins are live; try again later"
            )));
        }
        let (access, refresh) = (new_token(), new_token());
        let until_wall = now_ms() + ACCESS_SECS * 1000;
        t.access.insert(
            access.clone(),
            Access {
                principal: principal.clone(),
                until: now + Duration::from_secs(ACCESS_SECS),
                until_wall,
            },
        );
        t.refresh.insert(
            refresh.clone(),
            Refresh {
                principal: principal.clone(),
                until: now + Duration::from_secs(REFRESH_SECS),
                access: access.clone(),
            },
        );
        Ok(Issued {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer",
            expires_in: ACCESS_SECS,
            expires_at: rfc3339(until_wall),
            role: role(&principal),
        })
    }

    /// A new pair for a live refresh token; the old pair stops working.
    fn refresh(&self, token: &str) -> Result<Issued, ApiError> {
        let old = {
            let mut t = self.tables();
            let r = t.refresh.remove(token).ok_or(ApiError::LoginFailed(
                "unknown or expired refresh token".into(),
            ))?;
            t.access.remove(&r.access);
            r
        };
        if old.until <= Instant::now() {
            return Err(ApiError::LoginFailed(
                "unknown or expired refresh token".into(),
            ));
        }
        self.issue(old.principal)
    }

    fn revoke(&self, access: &str) {
        let mut t = self.tables();
        t.access.remove(access);
        t.refresh.retain(|_, r| r.access != access);
    }

    fn status(&self, access: &str) -> Option<(Principal, u64, u64)> {
        let t = self.tables();
        let a = t.access.get(access)?;
        let left = a.until.saturating_duration_since(Instant::now()).as_secs();
        Some((a.principal.clone(), a.until_wall, left))
    }
}

/// `POST /api/login` and `/api/auth/sign_in`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
    #[serde(default)]
    domain: Option<String>,
}

fn check(
    st: &Shared,
    user: &str,
    password: &str,
    domain: Option<&str>,
) -> Result<Principal, ApiError> {
    if user.is_empty() || user.len() > 64 {
        return Err(ApiError::BadRequest(
            "username must be 1 to 64 characters".into(),
        ));
    }
    st.config
        .get()
        .login(user, password, domain)
        .ok_or_else(|| ApiError::LoginFailed("Login failed, authentication error".into()))
}

/// `POST /api/login`: username, password, domain → tokens.
pub(crate) async fn login(
    State(st): State<Shared>,
    Body(b): Body<LoginBody>,
) -> Result<Json<Issued>, ApiError> {
    let who = check(&st, &b.username, &b.password, b.domain.as_deref())?;
    Ok(Json(st.tokens.issue(who)?))
}

/// `GET /api/login`'s answer.
#[derive(Debug, Serialize)]
pub(crate) struct LoginStatus {
    access_token: String,
    expires_at: String,
    expires_in: u64,
    role: &'static str,
}

/// `GET /api/login`: the session of the bearer token.
pub(crate) async fn login_status(
    State(st): State<Shared>,
    Caller(caller): Caller,
    headers: axum::http::HeaderMap,
) -> Result<Json<LoginStatus>, ApiError> {
    let token = super::bearer(&headers).unwrap_or_default();
    Ok(Json(match st.tokens.status(token) {
        Some((p, wall, left)) => LoginStatus {
            access_token: token.to_string(),
            expires_at: rfc3339(wall),
            expires_in: left,
            role: role(&p),
        },
        // A static token never expires: report it as valid for a session's length.
        None => LoginStatus {
            access_token: token.to_string(),
            expires_at: rfc3339(now_ms() + ACCESS_SECS * 1000),
            expires_in: ACCESS_SECS,
            role: role(&caller),
        },
    }))
}

/// `/api/auth/refresh_token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshBody {
    refresh_token: String,
}

/// `POST /api/auth/sign_in`: as `/api/login`.
pub(crate) async fn sign_in(
    st: State<Shared>,
    body: Body<LoginBody>,
) -> Result<Json<Issued>, ApiError> {
    login(st, body).await
}

/// `POST /api/auth/refresh_token`.
pub(crate) async fn refresh(
    State(st): State<Shared>,
    Body(b): Body<RefreshBody>,
) -> Result<Json<Issued>, ApiError> {
    Ok(Json(st.tokens.refresh(&b.refresh_token)?))
}

/// `POST /api/auth/sign_out`: the bearer token (and its refresh token)
/// stop working.
pub(crate) async fn sign_out(
    State(st): State<Shared>,
    Caller(_): Caller,
    headers: axum::http::HeaderMap,
) -> Json<serde_json::Value> {
    if let Some(t) = super::bearer(&headers) {
        st.tokens.revoke(t);
    }
    Json(serde_json::json!({}))
}

/// `POST /api/login/oauth/token` (form): PortSIP's Authentication page.
#[derive(Debug, Deserialize)]
pub(crate) struct OauthForm {
    grant_type: String,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    // `scope` and `client_id` are fixed values in PortSIP's page; ignored.
}

/// `POST /api/login/oauth/token`: `grant_type=password` or
/// `refresh_token`; failures are 400 `UNAUTHORIZED`, as on that page.
pub(crate) async fn oauth_token(
    State(st): State<Shared>,
    form: Result<Form<OauthForm>, FormRejection>,
) -> Result<Json<Issued>, ApiError> {
    let Form(f) = form.map_err(|e| ApiError::BadRequest(format!("invalid form body: {e}")))?;
    let issued = match (
        f.grant_type.as_str(),
        f.username,
        f.password,
        f.refresh_token,
    ) {
        ("password", Some(u), Some(p), _) => {
            check(&st, &u, &p, f.domain.as_deref()).and_then(|who| st.tokens.issue(who))
        }
        ("password", ..) => {
            return Err(ApiError::BadRequest(
                "grant_type=password needs username and password".into(),
            ))
        }
        ("refresh_token", _, _, Some(r)) => st.tokens.refresh(&r),
        ("refresh_token", ..) => {
            return Err(ApiError::BadRequest(
                "grant_type=refresh_token needs refresh_token".into(),
            ))
        }
        (g, ..) => {
            return Err(ApiError::BadRequest(format!(
                "grant_type {g:?} must be \"password\" or \"refresh_token\""
            )))
        }
    };
    issued.map(Json).map_err(|e| match e {
        ApiError::LoginFailed(m) => ApiError::LoginFailedForm(m),
        other => other,
    })
}
