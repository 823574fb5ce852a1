//! The REST endpoints of SPEC §6: agent state per queue, call reports, the
//! READY agents of a queue. Each handler validates its path and body, checks
//! the caller may act on the agent, and asks the core (never a lock).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{ApiError, Body, Caller, Principal, Shared};
use crate::engine::{
    AgentId, AgentState, Applied, CallKind, Cause, Command, Millis, QueueId, QueueStatus,
    QueueView, ReasonName, ReasonRef, Target,
};

/// Longest call id accepted (SIP Call-IDs are rarely over 100 bytes).
const MAX_CALL_ID: usize = 128;

/// A queue number: 1–10 digits (SPEC §3).
fn queue_number(s: &str) -> Result<&str, ApiError> {
    if (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s)
    } else {
        Err(ApiError::BadRequest(format!(
            "queue {s:?} must be 1 to 10 digits"
        )))
    }
}

/// An extension: 1–32 letters, digits, '-', '_' or '.' (as check-config).
fn extension(s: &str) -> Result<&str, ApiError> {
    if (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(s)
    } else {
        Err(ApiError::BadRequest(format!(
            "agent {s:?} must be 1 to 32 letters, digits, '-', '_' or '.'"
        )))
    }
}

/// A call id: 1–128 visible ASCII characters (RFC 3261 §25.1 `word`s fit).
fn call_id(s: &str) -> Result<&str, ApiError> {
    if (1..=MAX_CALL_ID).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(s)
    } else {
        Err(ApiError::BadRequest(format!(
            "call_id must be 1 to {MAX_CALL_ID} visible ASCII characters"
        )))
    }
}

fn allowed(caller: &Principal, agent: &str) -> Result<(), ApiError> {
    if caller.may_act_on(agent) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "this token may only act on its own extension, not {agent:?}"
        )))
    }
}

fn admin_only(caller: &Principal) -> Result<(), ApiError> {
    match caller {
        Principal::Admin => Ok(()),
        Principal::Agent(_) => Err(ApiError::Forbidden(
            "an agent token may only read its own extension".into(),
        )),
    }
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::BadRequest(format!("bad path: {e}")))
}

/// Unix seconds as a string, like the WSI events.
fn secs(ms: Millis) -> String {
    (ms / 1000).to_string()
}

/// One agent's state in one queue.
#[derive(Debug, Serialize)]
pub(crate) struct QueueAgent {
    extension_number: AgentId,
    display_name: String,
    queue_number: QueueId,
    status: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<AgentState>,
    /// When the state was entered, Unix seconds.
    since: String,
}

impl QueueAgent {
    fn new(ext: AgentId, name: String, v: QueueView) -> Self {
        Self {
            extension_number: ext,
            display_name: name,
            queue_number: v.queue,
            status: v.state,
            reason: v.reason,
            pending: v.pending,
            since: secs(v.since),
        }
    }
}

/// A list answer.
#[derive(Debug, Serialize)]
pub(crate) struct List<T> {
    queue_number: String,
    count: usize,
    items: Vec<T>,
}

/// `GET /call_queues/{queue}/agents` (admin).
pub(crate) async fn queue_agents(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<List<QueueAgent>>, ApiError> {
    let queue = path(p)?;
    queue_number(&queue)?;
    admin_only(&caller)?;
    let q = queue.clone();
    let items = st
        .core
        .query(move |e| e.queue_agents(&q))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown queue {queue:?}")))?
        .into_iter()
        .map(|(ext, name, v)| QueueAgent::new(ext, name, v))
        .collect::<Vec<_>>();
    Ok(Json(List {
        queue_number: queue,
        count: items.len(),
        items,
    }))
}

/// `GET /call_queues/{queue}/agents/{agent}`.
pub(crate) async fn queue_agent(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<QueueAgent>, ApiError> {
    let (queue, agent) = path(p)?;
    queue_number(&queue)?;
    extension(&agent)?;
    allowed(&caller, &agent)?;
    let (q, a) = (queue.clone(), agent.clone());
    let found = st
        .core
        .query(move |e| {
            let known_queue = e.queue_agents(&q).is_some();
            let view = e.agent(&a);
            (known_queue, view)
        })
        .await?;
    match found {
        (false, _) => Err(ApiError::NotFound(format!("unknown queue {queue:?}"))),
        (_, None) => Err(ApiError::NotFound(format!("unknown agent {agent:?}"))),
        (true, Some(view)) => view
            .queues
            .into_iter()
            .find(|v| v.queue == queue)
            .map(|v| Json(QueueAgent::new(view.extension, view.name, v)))
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "agent {agent:?} is not a member of queue {queue:?}"
                ))
            }),
    }
}

/// The body of `POST /call_queues/{queue}/agents/{agent}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusBody {
    status: String,
}

/// The answer to a change: the state of every queue it targeted.
#[derive(Debug, Serialize)]
pub(crate) struct Changed {
    extension_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    call_id: Option<String>,
    queues: Vec<QueueState>,
}

#[derive(Debug, Serialize)]
struct QueueState {
    queue_number: QueueId,
    status: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<AgentState>,
}

impl Changed {
    fn new(agent: String, call_id: Option<String>, applied: Applied) -> Self {
        Self {
            extension_number: agent,
            call_id,
            queues: applied
                .affected
                .into_iter()
                .map(
                    |QueueStatus {
                         queue,
                         state,
                         reason,
                         pending,
                     }| QueueState {
                        queue_number: queue,
                        status: state,
                        reason,
                        pending,
                    },
                )
                .collect(),
        }
    }
}

/// The command for a requested status (SPEC §6).
fn status_command(
    status: &str,
    agent: AgentId,
    queue: QueueId,
    reasons: &[ReasonName],
) -> Result<Command, ApiError> {
    let target = Target::Queue(queue);
    Ok(match status {
        "READY" => Command::Ready { agent, target },
        "NOT_READY" => Command::NotReady {
            agent,
            target,
            reason: None,
        },
        "WRAP_UP" => Command::WrapUp { agent, target },
        "LOGGED_IN" => Command::Login { agent, target },
        "LOGGED_OUT" => Command::Logout { agent, target },
        "QUEUE_CALL" | "OTHER_CALL" => {
            return Err(ApiError::BadRequest(format!(
                "{status} is set by call reports (POST /agents/{{agent}}/calls), not requested"
            )))
        }
        other => match reasons.iter().find(|r| r.eq_ignore_ascii_case(other)) {
            Some(r) => Command::NotReady {
                agent,
                target,
                reason: Some(ReasonRef::Name(r.clone())),
            },
            None => {
                return Err(ApiError::BadRequest(format!(
                    "unknown status {other:?}: expected READY, NOT_READY, WRAP_UP, LOGGED_IN, \
                     LOGGED_OUT or a not-ready reason ({})",
                    if reasons.is_empty() {
                        "none configured".to_string()
                    } else {
                        reasons.join(", ")
                    }
                )))
            }
        },
    })
}

/// `POST /call_queues/{queue}/agents/{agent}`: 200 once durable.
pub(crate) async fn set_status(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
    Body(body): Body<StatusBody>,
) -> Result<Json<Changed>, ApiError> {
    let (queue, agent) = path(p)?;
    queue_number(&queue)?;
    extension(&agent)?;
    allowed(&caller, &agent)?;
    let cmd = status_command(
        body.status.trim(),
        agent.as_str().into(),
        queue.into(),
        &st.config.reasons(),
    )?;
    let applied = st.core.apply(cmd, Cause::Api).await??;
    Ok(Json(Changed::new(agent, None, applied)))
}

/// `GET /agents/{agent}`.
#[derive(Debug, Serialize)]
pub(crate) struct AgentAnswer {
    extension_number: AgentId,
    display_name: String,
    queues: Vec<AgentQueue>,
}

#[derive(Debug, Serialize)]
struct AgentQueue {
    queue_number: QueueId,
    status: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<AgentState>,
    since: String,
}

pub(crate) async fn agent(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<AgentAnswer>, ApiError> {
    let agent = path(p)?;
    extension(&agent)?;
    allowed(&caller, &agent)?;
    let a = agent.clone();
    let view = st
        .core
        .query(move |e| e.agent(&a))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown agent {agent:?}")))?;
    Ok(Json(AgentAnswer {
        extension_number: view.extension,
        display_name: view.name,
        queues: view
            .queues
            .into_iter()
            .map(|v| AgentQueue {
                queue_number: v.queue,
                status: v.state,
                reason: v.reason,
                pending: v.pending,
                since: secs(v.since),
            })
            .collect(),
    }))
}

/// `kind` of a call report.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Acd,
    Other,
}

/// The body of `POST /agents/{agent}/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallBody {
    call_id: String,
    kind: Kind,
    #[serde(default)]
    queue: Option<String>,
}

/// `POST /agents/{agent}/calls`: a call started (QUEUE_CALL / OTHER_CALL).
pub(crate) async fn call_start(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
    Body(body): Body<CallBody>,
) -> Result<Json<Changed>, ApiError> {
    let agent = path(p)?;
    extension(&agent)?;
    call_id(&body.call_id)?;
    let kind = match (body.kind, body.queue) {
        (Kind::Acd, Some(q)) => {
            queue_number(&q)?;
            CallKind::Acd { queue: q.into() }
        }
        (Kind::Acd, None) => {
            return Err(ApiError::BadRequest(
                "an \"acd\" call needs the queue it was delivered from".into(),
            ))
        }
        (Kind::Other, None) => CallKind::Other,
        (Kind::Other, Some(_)) => {
            return Err(ApiError::BadRequest(
                "queue is only for \"acd\" calls".into(),
            ))
        }
    };
    allowed(&caller, &agent)?;
    let cmd = Command::CallStart {
        agent: agent.as_str().into(),
        call_id: body.call_id.clone(),
        kind,
    };
    let applied = st.core.apply(cmd, Cause::Call).await??;
    Ok(Json(Changed::new(agent, Some(body.call_id), applied)))
}

/// `DELETE /agents/{agent}/calls/{call_id}`: the call ended.
pub(crate) async fn call_end(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Changed>, ApiError> {
    let (agent, id) = path(p)?;
    extension(&agent)?;
    call_id(&id)?;
    allowed(&caller, &agent)?;
    let cmd = Command::CallEnd {
        agent: agent.as_str().into(),
        call_id: id.clone(),
    };
    let applied = st.core.apply(cmd, Cause::Call).await??;
    Ok(Json(Changed::new(agent, Some(id), applied)))
}

/// One READY agent.
#[derive(Debug, Serialize)]
pub(crate) struct ReadyAgent {
    extension_number: AgentId,
    display_name: String,
    /// READY since, Unix seconds.
    since: String,
}

/// `GET /call_queues/{queue}/ready_agents` (admin): longest idle first.
pub(crate) async fn ready_agents(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<List<ReadyAgent>>, ApiError> {
    let queue = path(p)?;
    queue_number(&queue)?;
    admin_only(&caller)?;
    let q = queue.clone();
    let items = st
        .core
        .query(move |e| {
            let order = e.ready_agents(&q)?;
            let members: std::collections::HashMap<AgentId, (String, Millis)> = e
                .queue_agents(&q)?
                .into_iter()
                .map(|(ext, name, v)| (ext, (name, v.since)))
                .collect();
            Some(
                order
                    .into_iter()
                    .filter_map(|ext| {
                        let (name, since) = members.get(&ext)?;
                        Some(ReadyAgent {
                            display_name: name.clone(),
                            since: secs(*since),
                            extension_number: ext,
                        })
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown queue {queue:?}")))?;
    Ok(Json(List {
        queue_number: queue,
        count: items.len(),
        items,
    }))
}
