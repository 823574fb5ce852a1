//! The wallboard (`GET /wallboard`) and report (`GET /reports`) pages,
//! served from assets built into the binary (`src/api/assets/`: plain
//! HTML, CSS and JavaScript modules, no build step), and the wallboard's
//! snapshot `GET /api/wallboard/state` (a bearer token, as all of `/api/`).
//! The pages log in with `POST /api/login` and follow `/wsi` live;
//! `assets/wsi.js` holds all of the WSI protocol the browser speaks.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{ids, ApiError, Caller, Principal, Shared};
use crate::engine::{AgentId, AgentState, Millis, QueueId, ReasonName};

/// The built-in assets: path, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/wallboard",
        "text/html; charset=utf-8",
        include_str!("assets/wallboard.html"),
    ),
    (
        "/reports",
        "text/html; charset=utf-8",
        include_str!("assets/reports.html"),
    ),
    (
        "/assets/board.css",
        "text/css; charset=utf-8",
        include_str!("assets/board.css"),
    ),
    (
        "/assets/common.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/common.js"),
    ),
    (
        "/assets/wsi.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/wsi.js"),
    ),
    (
        "/assets/wallboard.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/wallboard.js"),
    ),
    (
        "/assets/reports.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/reports.js"),
    ),
];

/// Same-origin everything; the WebSocket back to this server.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                   style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'";

fn asset(ctype: &'static str, body: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

/// The pages and their assets (no login needed to load them; the data they
/// fetch needs one).
pub(crate) fn pages() -> Router<Shared> {
    let mut r = Router::new();
    for &(path, ctype, body) in ASSETS {
        r = r.route(path, get(move || async move { asset(ctype, body) }));
    }
    r
}

#[derive(Serialize)]
pub(crate) struct Snapshot {
    now_ms: Millis,
    queues: Vec<QueueItem>,
    agents: Vec<AgentInfo>,
}

/// A queue as `GET /api/call_queues` lists it.
#[derive(Serialize)]
struct QueueItem {
    id: String,
    name: String,
    extension_number: String,
}

#[derive(Serialize)]
struct AgentInfo {
    extension_number: AgentId,
    display_name: String,
    queues: Vec<Cell>,
}

#[derive(Serialize)]
struct Cell {
    queue_id: String,
    queue_number: QueueId,
    status: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<AgentState>,
    since_ms: Millis,
}

/// `GET /api/wallboard/state`: what the login may see (an admin: every
/// agent of every queue; an extension: itself), with the server's clock.
pub(crate) async fn state(
    State(st): State<Shared>,
    Caller(who): Caller,
) -> Result<Json<Snapshot>, ApiError> {
    let numbers: Vec<QueueId> = st
        .config
        .get()
        .queue_info
        .iter()
        .map(|q| q.number.clone())
        .collect();
    let who2 = who.clone();
    let agents = st
        .core
        .query(move |e| {
            let exts: Vec<AgentId> = match &who2 {
                Principal::Agent(own) => {
                    e.agent(own).map(|v| vec![v.extension]).unwrap_or_default()
                }
                Principal::Admin => {
                    let mut seen = std::collections::BTreeSet::new();
                    let mut order = Vec::new();
                    for q in &numbers {
                        for (ext, _, _) in e.queue_agents(q).into_iter().flatten() {
                            if seen.insert(ext.clone()) {
                                order.push(ext);
                            }
                        }
                    }
                    order
                }
            };
            exts.iter()
                .filter_map(|x| e.agent(x))
                .map(|v| AgentInfo {
                    extension_number: v.extension,
                    display_name: v.name,
                    queues: v
                        .queues
                        .into_iter()
                        .map(|q| Cell {
                            queue_id: ids::queue_id(&q.queue),
                            queue_number: q.queue,
                            status: q.state,
                            reason: q.reason,
                            pending: q.pending,
                            since_ms: q.since,
                        })
                        .collect(),
                })
                .collect::<Vec<_>>()
        })
        .await?;
    let visible: std::collections::BTreeSet<&str> = agents
        .iter()
        .flat_map(|a| a.queues.iter().map(|c| c.queue_number.as_str()))
        .collect();
    let config = st.config.get();
    let queues = config
        .queue_info
        .iter()
        .filter(|q| matches!(who, Principal::Admin) || visible.contains(q.number.as_str()))
        .map(|q| QueueItem {
            id: q.id.clone(),
            name: q.name.clone(),
            extension_number: q.number.to_string(),
        })
        .collect();
    Ok(Json(Snapshot {
        now_ms: crate::history::wall_ms(),
        queues,
        agents,
    }))
}
