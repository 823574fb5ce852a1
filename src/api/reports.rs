//! facd's report additions to the PortSIP API, computed from the change
//! history (`crate::history`): `GET /api/reports/agent_states`, time in
//! each state (and per not-ready reason) per agent × queue over a range,
//! logins, ACD calls and wrap-ups, as JSON or CSV (`Accept: text/csv` or
//! `?format=csv`); and `GET /api/agents/{agent_number}/history`, the
//! changes of one agent, paged. Bearer tokens as everywhere under `/api/`
//! (a static token, or an `access_token` from `POST /api/login`); an
//! extension's login sees only itself.
//!
//! History files are read on the blocking pool, never on the async threads.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::{ids, ApiError, Caller, Principal, QueueInfo, Shared};
use crate::config::Config;
use crate::engine::{AgentId, AgentState, Event, Millis, QueueId};
use crate::history::day::{parse_time, rfc3339, DAY_MS};
use crate::history::{self, HistoryError, Reader, Totals};

/// Longest report range.
pub const MAX_RANGE_DAYS: u64 = 366;
/// Changes per history page at most (and by default).
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// What the reports need of the configuration (the queues, with their
/// ids, are in [`super::ApiConfig`]).
pub struct ReportsState {
    /// Configured not-ready reason names.
    pub(crate) reasons: Vec<String>,
    /// The change history.
    pub(crate) history: Reader,
}

impl ReportsState {
    /// From the configuration (before the server drops its agents).
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            reasons: cfg.reasons.iter().map(|r| r.name.clone()).collect(),
            history: Reader::new(cfg.storage.dir.join("history")),
        }
    }
}

/// Query parameters, each at most once, only the known ones.
fn params(
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(pairs) = q.map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))?;
    let mut m = HashMap::new();
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter {k:?}; known: {}",
                known.join(", ")
            )));
        }
        if m.insert(k.clone(), v).is_some() {
            return Err(ApiError::BadRequest(format!("parameter {k:?} given twice")));
        }
    }
    Ok(m)
}

fn time_param(m: &HashMap<String, String>, name: &str) -> Result<Option<Millis>, ApiError> {
    m.get(name)
        .map(|v| {
            parse_time(v).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name}={v:?} is not a time: use Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z] (UTC)"
                ))
            })
        })
        .transpose()
}

/// `[from, to)` checked: from before to, at most [`MAX_RANGE_DAYS`], not in
/// the future; `to` is cut to now.
fn range(from: Millis, to: Millis, now: Millis) -> Result<(Millis, Millis), ApiError> {
    if from >= to {
        return Err(ApiError::BadRequest(format!(
            "from ({}) must be before to ({})",
            rfc3339(from),
            rfc3339(to)
        )));
    }
    if to - from > MAX_RANGE_DAYS * DAY_MS {
        return Err(ApiError::BadRequest(format!(
            "the range is longer than {MAX_RANGE_DAYS} days"
        )));
    }
    if from >= now {
        return Err(ApiError::BadRequest(format!(
            "from ({}) is in the future",
            rfc3339(from)
        )));
    }
    Ok((from, to.min(now)))
}

fn wants_csv(m: &HashMap<String, String>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match m.get("format").map(String::as_str) {
        Some("csv") => return Ok(true),
        Some("json") => return Ok(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format={other:?}: use json or csv"
            )))
        }
        None => {}
    }
    Ok(headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').any(|t| t.trim().starts_with("text/csv"))))
}

/// The queue named by `queue_id` or `queue_number` (at most one of them).
fn queue_param(st: &Shared, m: &HashMap<String, String>) -> Result<Option<QueueInfo>, ApiError> {
    match (m.get("queue_id"), m.get("queue_number")) {
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "give queue_id or queue_number, not both".into(),
        )),
        (Some(id), None) => {
            if id.len() != 18 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::BadRequest(format!(
                    "queue_id {id:?} must be 18 digits (an id of GET /api/call_queues)"
                )));
            }
            st.config
                .get()
                .queue_by_id(id)
                .cloned()
                .map(Some)
                .ok_or_else(|| ApiError::NotFound(format!("no call queue has the id {id:?}")))
        }
        (None, Some(n)) => {
            if !(1..=10).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ApiError::BadRequest(format!(
                    "queue_number {n:?} must be 1 to 10 digits"
                )));
            }
            st.config
                .get()
                .queue_by_number(n)
                .cloned()
                .map(Some)
                .ok_or_else(|| ApiError::NotFound(format!("unknown queue_number {n:?}")))
        }
        (None, None) => Ok(None),
    }
}

fn check_agent(s: &str) -> Result<(), ApiError> {
    if (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "extension_number {s:?} must be 1 to 32 letters, digits, '-', '_' or '.'"
        )))
    }
}

fn own_only(who: &Principal, agent: &str) -> Result<(), ApiError> {
    if who.may_act_on(agent) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this login may only see its own extension, not {agent:?}"
        )))
    }
}

/// Runs a history read on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::HistoryUnreadable)?
        .map_err(ApiError::from)
}

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        match e {
            HistoryError::BeforeRetention { .. } | HistoryError::BadCursor(_) => {
                Self::BadRequest(e.to_string())
            }
            HistoryError::Empty => Self::NotFound(e.to_string()),
            HistoryError::Io { .. } => {
                tracing::warn!(error = %e, "history read failed");
                Self::HistoryUnreadable
            }
        }
    }
}

/// One agent × queue row of a report.
#[derive(Serialize)]
struct Row {
    extension_number: AgentId,
    display_name: String,
    queue_id: String,
    queue_number: QueueId,
    queue_name: String,
    logins: u32,
    acd_calls: u32,
    wrap_ups: u32,
    /// Milliseconds per state; they add up to the range.
    state_ms: serde_json::Map<String, Value>,
    /// Milliseconds NOT_READY per reason (`""`: no reason).
    not_ready_ms: serde_json::Map<String, Value>,
}

fn row(ext: AgentId, name: String, queue: QueueId, queue_name: String, t: &Totals) -> Row {
    Row {
        extension_number: ext,
        display_name: name,
        queue_id: ids::queue_id(&queue),
        queue_number: queue,
        queue_name,
        logins: t.logins,
        acd_calls: t.acd_calls,
        wrap_ups: t.wrap_ups,
        state_ms: AgentState::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), json!(t.ms(*s))))
            .collect(),
        not_ready_ms: t
            .reason_ms
            .iter()
            .map(|(r, ms)| (r.clone(), json!(ms)))
            .collect(),
    }
}

/// Milliseconds as seconds with three decimals, exactly.
fn secs3(ms: Millis) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(['=', '+', '-', '@']) {
        // Quoted; a leading formula character is defused for spreadsheets.
        let s = if s.starts_with(['=', '+', '-', '@']) {
            format!("'{s}")
        } else {
            s.to_string()
        };
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_response(name: &str, body: String) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// The report's range: `from` and `to` as given (`to` cut to now), or by
/// default the last 24 hours, starting no earlier than the history kept
/// (the answer's `from` says where it starts).
async fn report_range(
    st: &Shared,
    m: &HashMap<String, String>,
) -> Result<(Millis, Millis), ApiError> {
    let now = history::wall_ms();
    let to = time_param(m, "to")?.unwrap_or(now);
    let from = match time_param(m, "from")? {
        Some(f) => f,
        None => {
            let reader = st.reports.history.clone();
            let first = blocking(move || reader.first()).await?.unwrap_or(0);
            to.saturating_sub(DAY_MS).max(first)
        }
    };
    range(from, to, now)
}

/// `GET /api/reports/agent_states?[from=][&to=][&queue_id=|&queue_number=][&extension_number=][&format=csv]`.
pub(crate) async fn agent_states(
    State(st): State<Shared>,
    Caller(who): Caller,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let m = params(
        q,
        &[
            "from",
            "to",
            "queue_id",
            "queue_number",
            "extension_number",
            "format",
        ],
    )?;
    let csv = wants_csv(&m, &headers)?;
    let queue = queue_param(&st, &m)?;
    let agent = match (m.get("extension_number").cloned(), &who) {
        (Some(a), _) => {
            check_agent(&a)?;
            own_only(&who, &a)?;
            Some(a)
        }
        (None, Principal::Agent(own)) => Some(own.clone()),
        (None, Principal::Admin) => None,
    };
    let (from, to) = report_range(&st, &m).await?;
    // The memberships in scope, with names.
    let config = st.config.get();
    let queues: Vec<&QueueInfo> = config
        .queue_info
        .iter()
        .filter(|q| queue.as_ref().is_none_or(|x| x.id == q.id))
        .collect();
    let numbers: Vec<QueueId> = queues.iter().map(|q| q.number.clone()).collect();
    let a = agent.clone();
    let (known_agent, members) = st
        .core
        .query(move |e| {
            let known = a.as_deref().is_none_or(|x| e.has_agent(x));
            let mut out = Vec::new();
            for q in &numbers {
                for (ext, name, v) in e.queue_agents(q).into_iter().flatten() {
                    if a.as_deref().is_none_or(|x| ext == x) {
                        out.push((ext, name, v.queue));
                    }
                }
            }
            (known, out)
        })
        .await?;
    if !known_agent {
        return Err(ApiError::NotFound(format!(
            "unknown agent {:?}",
            agent.unwrap_or_default()
        )));
    }
    if let (Some(a), Some(q)) = (&agent, queue) {
        if members.is_empty() {
            return Err(ApiError::NotFound(format!(
                "agent {a:?} is not a member of queue {}",
                q.number
            )));
        }
    }
    let wanted: Vec<(AgentId, QueueId)> = members
        .iter()
        .map(|(a, _, q)| (a.clone(), q.clone()))
        .collect();
    let reader = st.reports.history.clone();
    let totals = blocking(move || reader.report(from, to, wanted)).await?;
    let qname = |q: &str| {
        queues
            .iter()
            .find(|x| x.number == q)
            .map(|x| x.name.clone())
            .unwrap_or_default()
    };
    let empty = Totals::default();
    let rows: Vec<Row> = members
        .into_iter()
        .map(|(ext, name, q)| {
            let t = totals.get(&(ext.clone(), q.clone())).unwrap_or(&empty);
            let qn = qname(&q);
            row(ext, name, q, qn, t)
        })
        .collect();
    if csv {
        let mut reasons: Vec<String> = vec![String::new()];
        reasons.extend(st.reports.reasons.iter().cloned());
        for r in &rows {
            for k in r.not_ready_ms.keys() {
                if !reasons.contains(k) {
                    reasons.push(k.clone());
                }
            }
        }
        let mut out = String::from(
            "extension_number,display_name,queue_number,queue_id,queue_name,from,to,logins,acd_calls,wrap_ups",
        );
        for s in AgentState::ALL {
            out.push_str(&format!(",{}_s", s.as_str()));
        }
        for r in &reasons {
            let r = if r.is_empty() { "no reason" } else { r };
            out.push_str(&format!(",{}", csv_field(&format!("NOT_READY {r}_s"))));
        }
        out.push_str(",total_s\r\n");
        for r in &rows {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}",
                csv_field(&r.extension_number),
                csv_field(&r.display_name),
                r.queue_number,
                r.queue_id,
                csv_field(&r.queue_name),
                rfc3339(from),
                rfc3339(to),
                r.logins,
                r.acd_calls,
                r.wrap_ups
            ));
            let ms = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
            let mut total = 0;
            for s in AgentState::ALL {
                let v = ms(r.state_ms.get(s.as_str()));
                total += v;
                out.push_str(&format!(",{}", secs3(v)));
            }
            for reason in &reasons {
                out.push_str(&format!(",{}", secs3(ms(r.not_ready_ms.get(reason)))));
            }
            out.push_str(&format!(",{}\r\n", secs3(total)));
        }
        let name = format!(
            "agent-states-{}-{}.csv",
            rfc3339(from).replace(':', ""),
            rfc3339(to).replace(':', "")
        );
        return Ok(csv_response(&name, out));
    }
    Ok(Json(json!({
        "from": rfc3339(from),
        "to": rfc3339(to),
        "from_ms": from,
        "to_ms": to,
        "range_ms": to - from,
        "count": rows.len(),
        "items": rows,
    }))
    .into_response())
}

#[derive(Serialize)]
struct Change {
    time: String,
    at_ms: Millis,
    queue_id: String,
    queue_number: QueueId,
    from: AgentState,
    to: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<crate::engine::ReasonName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<AgentState>,
    cause: &'static str,
    /// The agent left the queue (REST membership).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
}

impl From<Event> for Change {
    fn from(e: Event) -> Self {
        Self {
            time: rfc3339(e.at),
            at_ms: e.at,
            queue_id: ids::queue_id(&e.queue),
            queue_number: e.queue,
            from: e.from,
            to: e.to,
            reason: e.reason,
            pending: e.pending,
            cause: e.cause.as_str(),
            removed: e.removed,
        }
    }
}

/// `GET /api/agents/{agent_number}/history?[from=][&to=][&limit=][&cursor=][&format=csv]`:
/// the agent's changes, oldest first; `next_cursor` fetches the next page.
/// By default the last 24 hours.
pub(crate) async fn agent_history(
    State(st): State<Shared>,
    Caller(who): Caller,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(agent) = p.map_err(|e| ApiError::BadRequest(format!("bad path: {e}")))?;
    check_agent(&agent)?;
    own_only(&who, &agent)?;
    let m = params(q, &["from", "to", "limit", "cursor", "format"])?;
    let csv = wants_csv(&m, &headers)?;
    let now = history::wall_ms();
    let to = time_param(&m, "to")?.unwrap_or(now);
    let from = time_param(&m, "from")?.unwrap_or(to.saturating_sub(DAY_MS));
    let (from, to) = range(from, to, now)?;
    let limit = match m.get("limit") {
        None => DEFAULT_PAGE,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit={v:?} must be 1 to {MAX_PAGE}")))?,
    };
    let a = agent.clone();
    if !st.core.query(move |e| e.has_agent(&a)).await? {
        return Err(ApiError::NotFound(format!("unknown agent {agent:?}")));
    }
    let reader = st.reports.history.clone();
    let cursor = m.get("cursor").cloned();
    let a = agent.clone();
    let (events, next) =
        blocking(move || reader.changes(&a, from, to, cursor.as_deref(), limit)).await?;
    let items: Vec<Change> = events.into_iter().map(Change::from).collect();
    if csv {
        let mut out =
            String::from("time,queue_number,queue_id,from,to,reason,pending,cause,removed\r\n");
        for c in &items {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\r\n",
                c.time,
                c.queue_number,
                c.queue_id,
                c.from.as_str(),
                c.to.as_str(),
                csv_field(c.reason.as_deref().unwrap_or("")),
                c.pending.map_or("", AgentState::as_str),
                c.cause,
                c.removed
            ));
        }
        let mut resp = csv_response(&format!("history-{agent}.csv"), out);
        if let Some(n) = next.as_deref().and_then(|n| HeaderValue::from_str(n).ok()) {
            resp.headers_mut().insert("x-next-cursor", n);
        }
        return Ok(resp);
    }
    let mut v = json!({
        "extension_number": agent,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "count": items.len(),
        "items": items,
    });
    if let Some(n) = next {
        v["next_cursor"] = json!(n);
    }
    Ok(Json(v).into_response())
}

/// The OpenAPI paths and schemas of the reports, the history and the
/// wallboard snapshot (facd's additions), merged into `/openapi.json`.
pub(crate) fn extend_openapi(doc: &mut Value) {
    let err = |what: &str| {
        json!({"description": what,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    };
    let errors = json!({
        "400": err("a bad time, range (from must be before to, at most 366 days, not in the future), parameter or cursor, or a range before the history kept (VALIDATE_FAILED)"),
        "401": err("missing, wrong or expired bearer token (UNAUTHORIZED)"),
        "403": err("an extension's login asking about another extension (PERMISSION_DENIED)"),
        "404": err("unknown agent or queue, or an agent not in the queue (NOT_FOUND)"),
        "500": err("the history could not be read (UNKNOWN)"),
        "503": err("facd is shutting down")
    });
    let q = |name: &str, what: &str| json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": "string"}});
    let with_ok = |ok: Value| {
        let mut e = errors.clone();
        e["200"] = ok;
        e
    };
    let state = json!({"$ref": "#/components/schemas/State"});
    let paths = json!({
        "/api/reports/agent_states": {"get": {
            "operationId": "getAgentStateReport",
            "summary": "facd: time in each state and per not-ready reason per agent per queue over [from, to), logins, ACD calls, wrap-ups; JSON, or CSV with Accept: text/csv or format=csv (seconds, three decimals). An extension's login: its own rows",
            "parameters": [
                q("from", "Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z], UTC; default to minus 24 hours, or the start of the history kept if later"),
                q("to", "as from; cut to now; default now"),
                q("queue_id", "only this queue (an id of GET /api/call_queues)"),
                q("queue_number", "only this queue, by number (instead of queue_id)"),
                q("extension_number", "only this extension"),
                q("format", "json (default) or csv")],
            "responses": with_ok(json!({"description": "OK", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AgentStateReport"}},
                "text/csv": {"schema": {"type": "string"}}}}))
        }},
        "/api/agents/{agent_number}/history": {"get": {
            "operationId": "listAgentHistory",
            "summary": "facd: the agent's state changes, oldest first, paged (default: the last 24 hours, 100 a page)",
            "parameters": [
                {"name": "agent_number", "in": "path", "required": true, "description": "the agent's extension number",
                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,32}$"}},
                q("from", "as in the report; default to minus 24 hours"), q("to", "default now"),
                q("limit", "1 to 1000, default 100"), q("cursor", "next_cursor of the previous page"),
                q("format", "json (default) or csv (the next cursor in X-Next-Cursor)")],
            "responses": with_ok(json!({"description": "OK", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AgentHistory"}},
                "text/csv": {"schema": {"type": "string"}}}}))
        }},
        "/api/wallboard/state": {"get": {
            "operationId": "getWallboardState",
            "summary": "facd: every agent × queue the login may see, with status, reason, pending status and since (ms), and the server's clock: the wallboard's snapshot",
            "responses": with_ok(json!({"description": "OK", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/WallboardState"}}}}))
        }}
    });
    let schemas = json!({
        "AgentStateReport": {"type": "object", "required": ["from", "to", "from_ms", "to_ms", "range_ms", "count", "items"],
            "properties": {"from": {"type": "string", "format": "date-time"},
                "to": {"type": "string", "format": "date-time", "description": "the requested end, cut to now"},
                "from_ms": {"type": "integer"}, "to_ms": {"type": "integer"}, "range_ms": {"type": "integer"}, "count": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "object",
                    "required": ["extension_number", "display_name", "queue_id", "queue_number", "queue_name", "logins", "acd_calls", "wrap_ups", "state_ms", "not_ready_ms"],
                    "properties": {"extension_number": {"type": "string"}, "display_name": {"type": "string"},
                        "queue_id": {"type": "string"}, "queue_number": {"type": "string"}, "queue_name": {"type": "string"},
                        "logins": {"type": "integer"}, "acd_calls": {"type": "integer"}, "wrap_ups": {"type": "integer"},
                        "state_ms": {"type": "object", "description": "milliseconds per state; they add up to range_ms", "additionalProperties": {"type": "integer"}},
                        "not_ready_ms": {"type": "object", "description": "milliseconds NOT_READY per reason (\"\" = none)", "additionalProperties": {"type": "integer"}}}}}}},
        "AgentHistory": {"type": "object", "required": ["extension_number", "from", "to", "count", "items"],
            "properties": {"extension_number": {"type": "string"}, "from": {"type": "string", "format": "date-time"},
                "to": {"type": "string", "format": "date-time"},
                "count": {"type": "integer"}, "next_cursor": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object", "required": ["time", "at_ms", "queue_id", "queue_number", "from", "to", "cause"],
                    "properties": {"time": {"type": "string", "format": "date-time"}, "at_ms": {"type": "integer"},
                        "queue_id": {"type": "string"}, "queue_number": {"type": "string"},
                        "from": state, "to": state,
                        "reason": {"type": "string"}, "pending": state,
                        "cause": {"type": "string", "enum": ["fac", "api", "call", "timer", "feature-sync"]},
                        "removed": {"type": "boolean", "description": "present (true) when the agent left the queue (membership)"}}}}}},
        "WallboardState": {"type": "object", "required": ["now_ms", "queues", "agents"],
            "properties": {"now_ms": {"type": "integer"},
                "queues": {"type": "array", "items": {"$ref": "#/components/schemas/QueueItem"}},
                "agents": {"type": "array", "items": {"type": "object",
                    "required": ["extension_number", "display_name", "queues"],
                    "properties": {
                    "extension_number": {"type": "string"}, "display_name": {"type": "string"},
                    "queues": {"type": "array", "items": {"type": "object",
                        "required": ["queue_id", "queue_number", "status", "since_ms"],
                        "properties": {
                        "queue_id": {"type": "string"}, "queue_number": {"type": "string"}, "status": state,
                        "reason": {"type": "string"}, "pending": state,
                        "since_ms": {"type": "integer"}}}}}}}}}
    });
    if let (Some(p), Some(add)) = (doc["paths"].as_object_mut(), paths.as_object()) {
        p.extend(add.clone());
    }
    if let (Some(s), Some(add)) = (
        doc["components"]["schemas"].as_object_mut(),
        schemas.as_object(),
    ) {
        s.extend(add.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        let now = 100 * DAY_MS;
        assert!(range(10, 10, now).is_err());
        assert!(range(20, 10, now).is_err());
        assert!(range(0, (MAX_RANGE_DAYS + 1) * DAY_MS, now).is_err());
        assert!(range(now + 1, now + 2, now).is_err());
        assert_eq!(range(now - 5, now + 5, now).unwrap(), (now - 5, now));
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("Alice"), "Alice");
        assert_eq!(csv_field("Smith, Al"), "\"Smith, Al\"");
        assert_eq!(csv_field("=HYPERLINK()"), "\"'=HYPERLINK()\"");
        assert_eq!(secs3(1234), "1.234");
        assert_eq!(secs3(5), "0.005");
    }
}
