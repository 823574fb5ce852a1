//! Agent-state reports and the per-agent change history, computed from the
//! change history (`crate::history`): time in each state (and per not-ready
//! reason) per agent × queue over a range, logins, ACD calls and wrap-ups,
//! as JSON or CSV (`Accept: text/csv` or `?format=csv`); and the changes of
//! one agent, paged. Also the [`Viewer`] login the wallboard and report
//! pages use: a bearer token, or HTTP Basic with an API user's name and
//! token or an agent's extension and SIP password (as `/wsi` accepts).
//!
//! History files are read on the blocking pool, never on the async threads.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use super::{ApiError, Principal, Shared};
use crate::config::Config;
use crate::engine::{AgentId, AgentState, Event, Millis, QueueId};
use crate::history::day::{parse_time, rfc3339, DAY_MS};
use crate::history::{self, HistoryError, Reader, Totals};

/// Longest report range.
pub const MAX_RANGE_DAYS: u64 = 366;
/// Changes per history page at most (and by default).
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// What the reports and the wallboard need of the configuration.
pub struct ReportsState {
    /// Queue numbers and names, in configuration order.
    pub(crate) queues: Vec<(String, String)>,
    /// Configured not-ready reason names.
    pub(crate) reasons: Vec<String>,
    /// The change history.
    pub(crate) history: Reader,
}

impl ReportsState {
    /// From the configuration (before the server drops its agents).
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            queues: cfg
                .queues
                .iter()
                .map(|q| (q.number.clone(), q.name.clone()))
                .collect(),
            reasons: cfg.reasons.iter().map(|r| r.name.clone()).collect(),
            history: Reader::new(cfg.storage.dir.join("history")),
        }
    }
}

/// Who reads: `Authorization: Bearer <token>`, or `Basic` with an API
/// user's name and token or an agent's extension and SIP password.
pub(crate) struct Viewer(pub(crate) Principal);

impl FromRequestParts<Shared> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Shared) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let (scheme, cred) = value.trim().split_once(' ').ok_or(ApiError::Unauthorized)?;
        let cred = cred.trim();
        let who = if scheme.eq_ignore_ascii_case("bearer") {
            st.config.by_token(cred)
        } else if scheme.eq_ignore_ascii_case("basic") {
            let raw = base64_decode(cred).ok_or(ApiError::Unauthorized)?;
            let text = String::from_utf8(raw).map_err(|_| ApiError::Unauthorized)?;
            let (user, pass) = text.split_once(':').ok_or(ApiError::Unauthorized)?;
            st.config.login(user, pass)
        } else {
            None
        };
        who.map(Self).ok_or(ApiError::Unauthorized)
    }
}

/// Standard base64 (RFC 4648 §4), padding optional.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
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

fn check_queue(s: &str) -> Result<(), ApiError> {
    if (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "queue {s:?} must be 1 to 10 digits"
        )))
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
            "agent {s:?} must be 1 to 32 letters, digits, '-', '_' or '.'"
        )))
    }
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

/// `GET /reports/agent_states?from=&to=[&queue=][&agent=][&format=csv]`.
pub(crate) async fn agent_states(
    State(st): State<Shared>,
    Viewer(who): Viewer,
    headers: HeaderMap,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let m = params(q, &["from", "to", "queue", "agent", "format"])?;
    let csv = wants_csv(&m, &headers)?;
    let from =
        time_param(&m, "from")?.ok_or_else(|| ApiError::BadRequest("from is required".into()))?;
    let to = time_param(&m, "to")?.ok_or_else(|| ApiError::BadRequest("to is required".into()))?;
    let (from, to) = range(from, to, history::wall_ms())?;
    let queue = m.get("queue").cloned();
    if let Some(q) = &queue {
        check_queue(q)?;
        if !st.reports.queues.iter().any(|(n, _)| n == q) {
            return Err(ApiError::NotFound(format!("unknown queue {q:?}")));
        }
    }
    let agent = match (m.get("agent").cloned(), &who) {
        (Some(a), _) => {
            check_agent(&a)?;
            if !who.may_act_on(&a) {
                return Err(ApiError::Forbidden(format!(
                    "this login may only see its own extension, not {a:?}"
                )));
            }
            Some(a)
        }
        (None, Principal::Agent(own)) => Some(own.clone()),
        (None, Principal::Admin) => None,
    };
    // The configured memberships in scope, with names.
    let queues: Vec<(String, String)> = st
        .reports
        .queues
        .iter()
        .filter(|(n, _)| queue.as_ref().is_none_or(|q| q == n))
        .cloned()
        .collect();
    let numbers: Vec<String> = queues.iter().map(|(n, _)| n.clone()).collect();
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
    if let (Some(a), Some(q)) = (&agent, &queue) {
        if members.is_empty() {
            return Err(ApiError::NotFound(format!(
                "agent {a:?} is not a member of queue {q:?}"
            )));
        }
    }
    let wanted: Vec<(AgentId, QueueId)> = members
        .iter()
        .map(|(a, _, q)| (a.clone(), q.clone()))
        .collect();
    let reader = st.reports.history.clone();
    let totals = tokio::task::spawn_blocking(move || reader.report(from, to, wanted))
        .await
        .map_err(|_| ApiError::HistoryUnreadable)??;
    let qname = |q: &str| {
        queues
            .iter()
            .find(|(n, _)| n == q)
            .map(|(_, name)| name.clone())
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
            "extension_number,display_name,queue_number,queue_name,from,to,logins,acd_calls,wrap_ups",
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
                "{},{},{},{},{},{},{},{},{}",
                csv_field(&r.extension_number),
                csv_field(&r.display_name),
                r.queue_number,
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
    queue_number: QueueId,
    from: AgentState,
    to: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<crate::engine::ReasonName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<AgentState>,
    cause: &'static str,
}

impl From<Event> for Change {
    fn from(e: Event) -> Self {
        Self {
            time: rfc3339(e.at),
            at_ms: e.at,
            queue_number: e.queue,
            from: e.from,
            to: e.to,
            reason: e.reason,
            pending: e.pending,
            cause: e.cause.as_str(),
        }
    }
}

/// `GET /agents/{agent}/history?[from=][&to=][&limit=][&cursor=][&format=csv]`:
/// the agent's changes, oldest first; `next_cursor` fetches the next page.
/// By default the last 24 hours.
pub(crate) async fn agent_history(
    State(st): State<Shared>,
    Viewer(who): Viewer,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(agent) = p.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    check_agent(&agent)?;
    if !who.may_act_on(&agent) {
        return Err(ApiError::Forbidden(format!(
            "this login may only see its own extension, not {agent:?}"
        )));
    }
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
        tokio::task::spawn_blocking(move || reader.changes(&a, from, to, cursor.as_deref(), limit))
            .await
            .map_err(|_| ApiError::HistoryUnreadable)??;
    let items: Vec<Change> = events.into_iter().map(Change::from).collect();
    if csv {
        let mut out = String::from("time,queue_number,from,to,reason,pending,cause\r\n");
        for c in &items {
            out.push_str(&format!(
                "{},{},{},{},{},{},{}\r\n",
                c.time,
                c.queue_number,
                c.from.as_str(),
                c.to.as_str(),
                csv_field(c.reason.as_deref().unwrap_or("")),
                c.pending.map_or("", AgentState::as_str),
                c.cause
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
/// wallboard snapshot, merged into `/openapi.json`.
pub(crate) fn extend_openapi(doc: &mut Value) {
    let err = |what: &str| {
        json!({"description": what,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    };
    let errors = json!({
        "400": err("a bad time, range (from must be before to, at most 366 days, not in the future), parameter or cursor, or a range before the history kept"),
        "401": err("no or wrong credentials (Bearer token, or Basic with an API user or an agent's SIP password)"),
        "403": err("an agent login asking about another agent"),
        "404": err("unknown agent or queue, or an agent not in the queue"),
        "500": err("the history could not be read"),
        "503": err("facd is shutting down")
    });
    let q = |name: &str, what: &str| json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": "string"}});
    let with_ok = |ok: Value| {
        let mut e = errors.clone();
        e["200"] = ok;
        e
    };
    let paths = json!({
        "/reports/agent_states": {"get": {
            "summary": "time in each state and per not-ready reason per agent per queue over [from, to), logins, ACD calls, wrap-ups; JSON, or CSV with Accept: text/csv or format=csv (seconds, three decimals)",
            "parameters": [
                {"name": "from", "in": "query", "required": true, "description": "Unix seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z], UTC", "schema": {"type": "string"}},
                {"name": "to", "in": "query", "required": true, "description": "as from; cut to now", "schema": {"type": "string"}},
                q("queue", "only this queue"), q("agent", "only this extension (an agent login: its own)"),
                q("format", "json (default) or csv")],
            "responses": with_ok(json!({"description": "OK", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AgentStateReport"}},
                "text/csv": {"schema": {"type": "string"}}}}))
        }},
        "/agents/{agent}/history": {"get": {
            "summary": "the agent's state changes, oldest first, paged (default: the last 24 hours, 100 a page)",
            "parameters": [
                {"name": "agent", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,32}$"}},
                q("from", "as in the report; default to minus 24 hours"), q("to", "default now"),
                q("limit", "1 to 1000, default 100"), q("cursor", "next_cursor of the previous page"),
                q("format", "json (default) or csv (the next cursor in X-Next-Cursor)")],
            "responses": with_ok(json!({"description": "OK", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/AgentHistory"}},
                "text/csv": {"schema": {"type": "string"}}}}))
        }},
        "/wallboard/state": {"get": {
            "summary": "every agent × queue the login may see, with state, reason, pending state and since (ms): the wallboard's snapshot",
            "responses": with_ok(json!({"description": "OK", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/WallboardState"}}}}))
        }}
    });
    let schemas = json!({
        "AgentStateReport": {"type": "object", "required": ["from", "to", "from_ms", "to_ms", "range_ms", "count", "items"],
            "properties": {"from": {"type": "string"}, "to": {"type": "string", "description": "the requested end, cut to now"},
                "from_ms": {"type": "integer"}, "to_ms": {"type": "integer"}, "range_ms": {"type": "integer"}, "count": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "object",
                    "required": ["extension_number", "display_name", "queue_number", "queue_name", "logins", "acd_calls", "wrap_ups", "state_ms", "not_ready_ms"],
                    "properties": {"extension_number": {"type": "string"}, "display_name": {"type": "string"},
                        "queue_number": {"type": "string"}, "queue_name": {"type": "string"},
                        "logins": {"type": "integer"}, "acd_calls": {"type": "integer"}, "wrap_ups": {"type": "integer"},
                        "state_ms": {"type": "object", "description": "milliseconds per state; they add up to range_ms", "additionalProperties": {"type": "integer"}},
                        "not_ready_ms": {"type": "object", "description": "milliseconds NOT_READY per reason (\"\" = none)", "additionalProperties": {"type": "integer"}}}}}}},
        "AgentHistory": {"type": "object", "required": ["extension_number", "from", "to", "count", "items"],
            "properties": {"extension_number": {"type": "string"}, "from": {"type": "string"}, "to": {"type": "string"},
                "count": {"type": "integer"}, "next_cursor": {"type": "string"},
                "items": {"type": "array", "items": {"type": "object", "required": ["time", "at_ms", "queue_number", "from", "to", "cause"],
                    "properties": {"time": {"type": "string"}, "at_ms": {"type": "integer"}, "queue_number": {"type": "string"},
                        "from": {"$ref": "#/components/schemas/State"}, "to": {"$ref": "#/components/schemas/State"},
                        "reason": {"type": "string"}, "pending": {"$ref": "#/components/schemas/State"},
                        "cause": {"type": "string", "enum": ["fac", "api", "call", "timer", "feature-sync"]}}}}}},
        "WallboardState": {"type": "object", "required": ["now_ms", "queues", "agents"],
            "properties": {"now_ms": {"type": "integer"},
                "queues": {"type": "array", "items": {"type": "object", "properties": {"number": {"type": "string"}, "name": {"type": "string"}}}},
                "agents": {"type": "array", "items": {"type": "object", "properties": {
                    "extension": {"type": "string"}, "name": {"type": "string"},
                    "queues": {"type": "array", "items": {"type": "object", "properties": {
                        "queue": {"type": "string"}, "state": {"$ref": "#/components/schemas/State"},
                        "reason": {"type": "string"}, "pending": {"$ref": "#/components/schemas/State"},
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
    fn base64_decodes_basic_credentials() {
        assert_eq!(
            base64_decode("YWRtaW46Y2hhbmdlLW1lLW5vdw==").unwrap(),
            b"admin:change-me-now"
        );
        assert_eq!(base64_decode("MTAwMTpz").unwrap(), b"1001:s");
        assert_eq!(base64_decode("bad*"), None);
    }

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
