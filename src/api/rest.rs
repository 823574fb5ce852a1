//! PortSIP's call-queue REST operations (REST API 22.0 OpenAPI document,
//! 22.3–22.5 change notes) for what facd holds: queues by opaque id, their
//! agents and agent status with `reason`, membership, the agent's own
//! (`/user/…`) and an admin's per-user (`/users/{id}/…`) endpoints,
//! `get_many`, not-ready codes; and facd's additions in the same style (call
//! reports, READY agents longest idle first). Each handler validates its
//! path and body, checks the caller may act on the agent, and asks the core
//! (never a lock).

use std::collections::{HashMap, HashSet};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::ids::rfc3339;
use super::{ApiError, Body, Caller, Principal, QueueInfo, Shared};
use crate::engine::{
    AgentId, AgentState, CallKind, Cause, Command, Millis, QueueView, ReasonName, ReasonRef, Target,
};

/// Longest call id accepted (SIP Call-IDs are rarely over 100 bytes).
const MAX_CALL_ID: usize = 128;
/// Most entries in a membership list or a `get_many`.
const MAX_ITEMS: usize = 10_000;

/// A queue number: 1–10 digits (SPEC §3).
fn queue_number(s: &str) -> Result<&str, ApiError> {
    if (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s)
    } else {
        Err(ApiError::BadRequest(format!(
            "queue_number {s:?} must be 1 to 10 digits"
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
            "extension_number {s:?} must be 1 to 32 letters, digits, '-', '_' or '.'"
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
            "this login may only act on its own extension, not {agent:?}"
        )))
    }
}

fn admin_only(caller: &Principal) -> Result<(), ApiError> {
    match caller {
        Principal::Admin => Ok(()),
        Principal::Agent(_) => Err(ApiError::Forbidden(
            "an extension's login may only use its own agent endpoints (/api/user/…)".into(),
        )),
    }
}

fn own_extension(caller: &Principal) -> Result<&str, ApiError> {
    match caller {
        Principal::Agent(ext) => Ok(ext),
        Principal::Admin => Err(ApiError::Forbidden(
            "/api/user/… is an extension's own view; an admin uses /api/users/{id}/…".into(),
        )),
    }
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::BadRequest(format!("bad path: {e}")))
}

fn queue(st: &Shared, id: &str) -> Result<QueueInfo, ApiError> {
    st.config
        .get()
        .queue_by_id(id)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("no call queue has the id {id:?}")))
}

/// The queue and agent of `/api/call_queues/{id}/agents/{agent_number}`,
/// when the caller may act on that agent.
fn queue_and_agent(
    st: &Shared,
    caller: &Principal,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<(QueueInfo, String), ApiError> {
    let (id, agent) = path(p)?;
    extension(&agent)?;
    allowed(caller, &agent)?;
    Ok((queue(st, &id)?, agent))
}

/// The queue and the user's extension of
/// `/api/users/{id}/call_queues/{queue_id}/agent`, when the caller may act
/// on that user.
fn user_and_queue(
    st: &Shared,
    caller: &Principal,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<(QueueInfo, String), ApiError> {
    let (id, queue_id) = path(p)?;
    let ext = user(st, &id)?;
    allowed(caller, &ext)?;
    Ok((queue(st, &queue_id)?, ext))
}

fn user(st: &Shared, id: &str) -> Result<String, ApiError> {
    st.config
        .get()
        .ext_ids
        .get()
        .ext(id)
        .map(str::to_string)
        .ok_or_else(|| ApiError::NotFound(format!("no user has the id {id:?}")))
}

/// A queue in a list (`GET /call_queues`, `/user/call_queues`).
#[derive(Debug, Serialize)]
pub(crate) struct QueueItem {
    id: String,
    name: String,
    extension_number: String,
}

impl QueueItem {
    fn new(q: &QueueInfo) -> Self {
        Self {
            id: q.id.clone(),
            name: q.name.clone(),
            extension_number: q.number.to_string(),
        }
    }
}

/// A list answer (`count` where PortSIP's list has one).
#[derive(Debug, Serialize)]
pub(crate) struct Items<T> {
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    items: Vec<T>,
}

impl<T> Items<T> {
    fn counted(items: Vec<T>) -> Json<Self> {
        Json(Self {
            count: Some(items.len()),
            items,
        })
    }

    fn plain(items: Vec<T>) -> Json<Self> {
        Json(Self { count: None, items })
    }
}

/// `GET /api/call_queues` (admin).
pub(crate) async fn list_queues(
    State(st): State<Shared>,
    Caller(caller): Caller,
) -> Result<Json<Items<QueueItem>>, ApiError> {
    admin_only(&caller)?;
    Ok(Items::counted(
        st.config
            .get()
            .queue_info
            .iter()
            .map(QueueItem::new)
            .collect(),
    ))
}

/// `GET /api/call_queues/{id}`: the fields of PortSIP's queue that facd has
/// (22.3's `enable_wrap_up`/`wrap_up_time` among them).
#[derive(Debug, Serialize)]
pub(crate) struct QueueDetail {
    id: String,
    name: String,
    extension_number: String,
    agent_auto_ready: bool,
    agent_auto_not_ready_after_non_acd_call: bool,
    enable_wrap_up: bool,
    wrap_up_time: u64,
}

pub(crate) async fn show_queue(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<QueueDetail>, ApiError> {
    let id = path(p)?;
    admin_only(&caller)?;
    let q = queue(&st, &id)?;
    Ok(Json(QueueDetail {
        id: q.id.clone(),
        name: q.name.clone(),
        extension_number: q.number.to_string(),
        agent_auto_ready: q.auto_ready,
        agent_auto_not_ready_after_non_acd_call: q.not_ready_after_other_call,
        enable_wrap_up: q.wrap_up_secs > 0,
        wrap_up_time: q.wrap_up_secs,
    }))
}

/// A member in `GET /api/call_queues/{id}/agents`.
#[derive(Debug, Serialize)]
pub(crate) struct Member {
    extension_number: AgentId,
    display_name: String,
    skill_level: u32,
}

/// `GET /api/call_queues/{id}/agents` (admin).
pub(crate) async fn queue_agents(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Items<Member>>, ApiError> {
    let id = path(p)?;
    admin_only(&caller)?;
    let number = queue(&st, &id)?.number.clone();
    let members = st
        .core
        .query(move |e| e.queue_agents(&number).unwrap_or_default())
        .await?;
    Ok(Items::plain(
        members
            .into_iter()
            .map(|(ext, name, v)| Member {
                extension_number: ext,
                display_name: name,
                skill_level: v.skill_level,
            })
            .collect(),
    ))
}

/// One entry of `POST /api/call_queues/{id}/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberItem {
    extension_number: String,
    #[serde(default)]
    skill_level: Option<u32>,
}

/// The body of `POST /api/call_queues/{id}/agents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembersBody {
    items: Vec<MemberItem>,
}

/// `POST /api/call_queues/{id}/agents` (admin): the queue's agent list
/// becomes `items` (PortSIP's "update call queue agent list"). Agents not in
/// it leave the queue, new ones join LOGGED_OUT, skill levels are updated;
/// each agent's change is durable before the 200.
pub(crate) async fn set_queue_agents(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
    Body(body): Body<MembersBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = path(p)?;
    admin_only(&caller)?;
    let number = queue(&st, &id)?.number.clone();
    if body.items.len() > MAX_ITEMS {
        return Err(ApiError::BadRequest(format!(
            "items may hold at most {MAX_ITEMS} agents"
        )));
    }
    let mut wanted: Vec<(String, u32)> = Vec::with_capacity(body.items.len());
    let mut seen = HashSet::new();
    for (i, m) in body.items.into_iter().enumerate() {
        extension(&m.extension_number)?;
        let skill = m.skill_level.unwrap_or(crate::engine::DEFAULT_SKILL);
        if !(1..=100).contains(&skill) {
            return Err(ApiError::BadRequest(format!(
                "items[{i}].skill_level must be 1 to 100"
            )));
        }
        if !seen.insert(m.extension_number.clone()) {
            return Err(ApiError::BadRequest(format!(
                "items[{i}]: extension_number {:?} is listed twice",
                m.extension_number
            )));
        }
        wanted.push((m.extension_number, skill));
    }
    let (q, names) = (number.clone(), wanted.clone());
    let (current, unknown) = st
        .core
        .query(move |e| {
            let current: HashMap<String, u32> = e
                .queue_agents(&q)
                .unwrap_or_default()
                .into_iter()
                .map(|(x, _, v)| (x.to_string(), v.skill_level))
                .collect();
            let unknown = names.into_iter().find(|(x, _)| !e.has_agent(x));
            (current, unknown)
        })
        .await?;
    if let Some((x, _)) = unknown {
        return Err(ApiError::BadRequest(format!(
            "extension_number {x:?} is not a configured agent"
        )));
    }
    let mut commands = Vec::new();
    for (ext, skill) in &wanted {
        if current.get(ext) != Some(skill) {
            commands.push(Command::Join {
                agent: ext.as_str().into(),
                queue: number.clone(),
                skill_level: *skill,
            });
        }
    }
    let mut leaving: Vec<&String> = current.keys().filter(|x| !seen.contains(*x)).collect();
    leaving.sort();
    for ext in leaving {
        commands.push(Command::Leave {
            agent: ext.as_str().into(),
            queue: number.clone(),
        });
    }
    for cmd in commands {
        st.core.apply(cmd, Cause::Api).await??;
    }
    Ok(Json(serde_json::json!({})))
}

/// An agent in a queue (`GET …/agents/{agent_number}`, `…/agent`):
/// PortSIP's fields, `reason` (22.5) when NOT_READY with one, and facd's
/// `pending` (the state a change during a call waits to apply).
#[derive(Debug, Serialize)]
pub(crate) struct QueueAgent {
    extension_number: AgentId,
    display_name: String,
    skill_level: u32,
    status: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<AgentState>,
}

impl QueueAgent {
    fn new(ext: AgentId, name: String, v: QueueView) -> Self {
        Self {
            extension_number: ext,
            display_name: name,
            skill_level: v.skill_level,
            status: v.state,
            reason: v.reason,
            pending: v.pending,
        }
    }
}

/// The agent `ext` in `q`: 404 if it is not a member.
async fn agent_in(st: &Shared, q: &QueueInfo, ext: &str) -> Result<QueueAgent, ApiError> {
    let a = ext.to_string();
    let view = st
        .core
        .query(move |e| e.agent(&a))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown agent {ext:?}")))?;
    view.queues
        .into_iter()
        .find(|v| v.queue == q.number)
        .map(|v| QueueAgent::new(view.extension, view.name, v))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "agent {ext:?} is not a member of call queue {}",
                q.number
            ))
        })
}

/// The body that sets an agent's status: PortSIP's `status` (22.0: READY,
/// NOT_READY, WRAP_UP, BREAK, LUNCH, LOGGED_IN, LOGGED_OUT) and 22.3's
/// `reason`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatusBody {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The command for a requested status. A status that names a configured
/// not-ready reason (`BREAK`, `LUNCH` of 22.0–22.2) is NOT_READY with it;
/// `reason` is a reason's name (or its code, as digits).
fn status_command(
    body: &StatusBody,
    agent: AgentId,
    queue: crate::engine::QueueId,
    reasons: &[(u32, ReasonName)],
) -> Result<Command, ApiError> {
    let target = Target::Queue(queue);
    let status = body.status.trim();
    let known = || {
        if reasons.is_empty() {
            "none are configured".to_string()
        } else {
            let names: Vec<&str> = reasons.iter().map(|(_, n)| n.as_str()).collect();
            names.join(", ")
        }
    };
    let find = |r: &str| -> Result<ReasonName, ApiError> {
        let r = r.trim();
        reasons
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(r))
            .or_else(|| {
                r.parse::<u32>()
                    .ok()
                    .and_then(|c| reasons.iter().find(|(code, _)| *code == c))
            })
            .map(|(_, n)| n.clone())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "unknown reason {r:?}: the not-ready codes are {} (GET /api/not_ready_codes)",
                    known()
                ))
            })
    };
    let no_reason = || match &body.reason {
        Some(_) => Err(ApiError::BadRequest(format!(
            "reason is only for status NOT_READY, not {status}"
        ))),
        None => Ok(()),
    };
    Ok(match status {
        "READY" => {
            no_reason()?;
            Command::Ready { agent, target }
        }
        "NOT_READY" => Command::NotReady {
            agent,
            target,
            reason: body
                .reason
                .as_deref()
                .map(find)
                .transpose()?
                .map(ReasonRef::Name),
        },
        "WRAP_UP" => {
            no_reason()?;
            Command::WrapUp { agent, target }
        }
        "LOGGED_IN" => {
            no_reason()?;
            Command::Login { agent, target }
        }
        "LOGGED_OUT" => {
            no_reason()?;
            Command::Logout { agent, target }
        }
        "QUEUE_CALL" | "OTHER_CALL" => {
            return Err(ApiError::BadRequest(format!(
                "{status} is set by call reports (POST /api/agents/{{agent_number}}/calls), not requested"
            )))
        }
        other => {
            let named = find(other).map_err(|_| {
                ApiError::BadRequest(format!(
                    "unknown status {other:?}: expected READY, NOT_READY, WRAP_UP, LOGGED_IN, \
                     LOGGED_OUT, or a not-ready code's name ({})",
                    known()
                ))
            })?;
            if let Some(r) = &body.reason {
                if find(r)? != named {
                    return Err(ApiError::BadRequest(format!(
                        "status {other:?} and reason {r:?} disagree"
                    )));
                }
            }
            Command::NotReady {
                agent,
                target,
                reason: Some(ReasonRef::Name(named)),
            }
        }
    })
}

/// Sets `ext`'s status in `q` and answers the agent as it is afterwards.
async fn set_agent(
    st: &Shared,
    q: &QueueInfo,
    ext: &str,
    body: &StatusBody,
) -> Result<Json<QueueAgent>, ApiError> {
    let cmd = status_command(body, ext.into(), q.number.clone(), &st.config.get().reasons)?;
    st.core.apply(cmd, Cause::Api).await??;
    Ok(Json(agent_in(st, q, ext).await?))
}

/// `GET /api/call_queues/{id}/agents/{agent_number}`.
pub(crate) async fn queue_agent(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<QueueAgent>, ApiError> {
    let (q, agent) = queue_and_agent(&st, &caller, p)?;
    Ok(Json(agent_in(&st, &q, &agent).await?))
}

/// `POST /api/call_queues/{id}/agents/{agent_number}`: 200 once durable.
pub(crate) async fn set_queue_agent(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
    Body(body): Body<StatusBody>,
) -> Result<Json<QueueAgent>, ApiError> {
    let (q, agent) = queue_and_agent(&st, &caller, p)?;
    set_agent(&st, &q, &agent, &body).await
}

/// The body of `POST /api/call_queues/{id}/agents/status/get_many` (22.3
/// names the operation; its schema is not published: facd takes the
/// extension numbers).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetManyBody {
    extension_numbers: Vec<String>,
}

/// One agent's status in a `get_many` answer.
#[derive(Debug, Serialize)]
pub(crate) struct AgentStatus {
    extension_number: AgentId,
    status: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonName>,
}

/// `POST /api/call_queues/{id}/agents/status/get_many` (admin): the status
/// of each listed member (extensions that are not members are left out).
pub(crate) async fn get_many(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
    Body(body): Body<GetManyBody>,
) -> Result<Json<Items<AgentStatus>>, ApiError> {
    let id = path(p)?;
    admin_only(&caller)?;
    let number = queue(&st, &id)?.number.clone();
    if body.extension_numbers.len() > MAX_ITEMS {
        return Err(ApiError::BadRequest(format!(
            "extension_numbers may hold at most {MAX_ITEMS} entries"
        )));
    }
    for x in &body.extension_numbers {
        extension(x)?;
    }
    let wanted = body.extension_numbers;
    let members = st
        .core
        .query(move |e| e.queue_agents(&number).unwrap_or_default())
        .await?;
    let by_ext: HashMap<&str, &QueueView> =
        members.iter().map(|(x, _, v)| (x.as_str(), v)).collect();
    Ok(Items::plain(
        wanted
            .iter()
            .filter_map(|x| {
                let v = by_ext.get(x.as_str())?;
                Some(AgentStatus {
                    extension_number: x.as_str().into(),
                    status: v.state,
                    reason: v.reason.clone(),
                })
            })
            .collect(),
    ))
}

/// The queues `ext` belongs to, as list items.
async fn queues_of(st: &Shared, ext: &str) -> Result<Json<Items<QueueItem>>, ApiError> {
    let a = ext.to_string();
    let view = st
        .core
        .query(move |e| e.agent(&a))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown agent {ext:?}")))?;
    Ok(Items::plain(
        view.queues
            .iter()
            .filter_map(|v| {
                st.config
                    .get()
                    .queue_by_number(&v.queue)
                    .map(QueueItem::new)
            })
            .collect(),
    ))
}

/// `GET /api/user/call_queues`: the caller's own queues.
pub(crate) async fn user_queues(
    State(st): State<Shared>,
    Caller(caller): Caller,
) -> Result<Json<Items<QueueItem>>, ApiError> {
    let me = own_extension(&caller)?;
    queues_of(&st, me).await
}

/// `GET /api/user/call_queues/{id}/agent`.
pub(crate) async fn user_agent(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<QueueAgent>, ApiError> {
    let id = path(p)?;
    let me = own_extension(&caller)?;
    let q = queue(&st, &id)?;
    Ok(Json(agent_in(&st, &q, me).await?))
}

/// `POST /api/user/call_queues/{id}/agent`.
pub(crate) async fn set_user_agent(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
    Body(body): Body<StatusBody>,
) -> Result<Json<QueueAgent>, ApiError> {
    let id = path(p)?;
    let me = own_extension(&caller)?;
    let q = queue(&st, &id)?;
    set_agent(&st, &q, me, &body).await
}

/// A user in `GET /api/users`: the fields facd has.
#[derive(Debug, Serialize)]
pub(crate) struct UserItem {
    id: String,
    extension_number: String,
    display_name: String,
}

/// `GET /api/users` (admin): every agent with its user id.
pub(crate) async fn list_users(
    State(st): State<Shared>,
    Caller(caller): Caller,
) -> Result<Json<Items<UserItem>>, ApiError> {
    admin_only(&caller)?;
    let users = st
        .core
        .query(|e| {
            e.agent_names()
                .map(|(x, n)| (x.to_string(), n.to_string()))
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Items::counted(
        users
            .into_iter()
            .filter_map(|(x, name)| {
                Some(UserItem {
                    id: st.config.get().ext_ids.get().id(&x)?,
                    extension_number: x,
                    display_name: name,
                })
            })
            .collect(),
    ))
}

/// `GET /api/users/{id}/call_queues`.
pub(crate) async fn users_queues(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Items<QueueItem>>, ApiError> {
    let id = path(p)?;
    let ext = user(&st, &id)?;
    allowed(&caller, &ext)?;
    queues_of(&st, &ext).await
}

/// `GET /api/users/{id}/call_queues/{queue_id}/agent`.
pub(crate) async fn users_agent(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<QueueAgent>, ApiError> {
    let (q, ext) = user_and_queue(&st, &caller, p)?;
    Ok(Json(agent_in(&st, &q, &ext).await?))
}

/// `POST /api/users/{id}/call_queues/{queue_id}/agent`.
pub(crate) async fn set_users_agent(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
    Body(body): Body<StatusBody>,
) -> Result<Json<QueueAgent>, ApiError> {
    let (q, ext) = user_and_queue(&st, &caller, p)?;
    set_agent(&st, &q, &ext, &body).await
}

/// A not-ready code (`[[reasons]]`).
#[derive(Debug, Serialize)]
pub(crate) struct NotReadyCode {
    code: u32,
    name: ReasonName,
}

/// `GET /api/not_ready_codes` (any login): facd's configured reasons.
pub(crate) async fn not_ready_codes(
    State(st): State<Shared>,
    Caller(_): Caller,
) -> Json<Items<NotReadyCode>> {
    Items::counted(
        st.config
            .get()
            .reasons
            .iter()
            .map(|(code, name)| NotReadyCode {
                code: *code,
                name: name.clone(),
            })
            .collect(),
    )
}

/// `type` of a call report.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum CallType {
    Acd,
    Other,
}

/// The body of `POST /api/agents/{agent_number}/calls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CallBody {
    call_id: String,
    #[serde(rename = "type")]
    kind: CallType,
    #[serde(default)]
    queue_number: Option<String>,
}

/// The answer to a call report: the agent's state in each of its queues.
#[derive(Debug, Serialize)]
pub(crate) struct CallAnswer {
    extension_number: String,
    call_id: String,
    agent_status: Vec<QueueStatusItem>,
}

#[derive(Debug, Serialize)]
struct QueueStatusItem {
    queue_id: String,
    queue_number: String,
    status: AgentState,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<ReasonName>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<AgentState>,
}

async fn call_answer(st: &Shared, agent: String, id: String) -> Result<Json<CallAnswer>, ApiError> {
    let a = agent.clone();
    let view = st
        .core
        .query(move |e| e.agent(&a))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("unknown agent {agent:?}")))?;
    Ok(Json(CallAnswer {
        extension_number: agent,
        call_id: id,
        agent_status: view
            .queues
            .into_iter()
            .map(|v| QueueStatusItem {
                queue_id: super::ids::queue_id(&v.queue),
                queue_number: v.queue.to_string(),
                status: v.state,
                reason: v.reason,
                pending: v.pending,
            })
            .collect(),
    }))
}

/// `POST /api/agents/{agent_number}/calls` (facd): a call started
/// (QUEUE_CALL / OTHER_CALL).
pub(crate) async fn call_start(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
    Body(body): Body<CallBody>,
) -> Result<Json<CallAnswer>, ApiError> {
    let agent = path(p)?;
    extension(&agent)?;
    call_id(&body.call_id)?;
    let kind = match (body.kind, body.queue_number) {
        (CallType::Acd, Some(q)) => {
            queue_number(&q)?;
            CallKind::Acd { queue: q.into() }
        }
        (CallType::Acd, None) => {
            return Err(ApiError::BadRequest(
                "an \"ACD\" call needs the queue_number it was delivered from".into(),
            ))
        }
        (CallType::Other, None) => CallKind::Other,
        (CallType::Other, Some(_)) => {
            return Err(ApiError::BadRequest(
                "queue_number is only for \"ACD\" calls".into(),
            ))
        }
    };
    allowed(&caller, &agent)?;
    let cmd = Command::CallStart {
        agent: agent.as_str().into(),
        call_id: body.call_id.clone(),
        kind,
    };
    st.core.apply(cmd, Cause::Call).await??;
    call_answer(&st, agent, body.call_id).await
}

/// `POST /api/agents/{agent_number}/calls/{call_id}/destroy` (facd): the
/// call ended.
pub(crate) async fn call_end(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<CallAnswer>, ApiError> {
    let (agent, id) = path(p)?;
    extension(&agent)?;
    call_id(&id)?;
    allowed(&caller, &agent)?;
    let cmd = Command::CallEnd {
        agent: agent.as_str().into(),
        call_id: id.clone(),
    };
    st.core.apply(cmd, Cause::Call).await??;
    call_answer(&st, agent, id).await
}

/// One READY agent.
#[derive(Debug, Serialize)]
pub(crate) struct ReadyAgent {
    extension_number: AgentId,
    display_name: String,
    /// READY since, RFC 3339.
    ready_since: String,
}

/// `GET /api/call_queues/{id}/ready_agents` (facd, admin): longest idle first.
pub(crate) async fn ready_agents(
    State(st): State<Shared>,
    Caller(caller): Caller,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<Items<ReadyAgent>>, ApiError> {
    let id = path(p)?;
    admin_only(&caller)?;
    let q = queue(&st, &id)?.number.clone();
    let items = st
        .core
        .query(move |e| {
            let order = e.ready_agents(&q).unwrap_or_default();
            let members: HashMap<AgentId, (String, Millis)> = e
                .queue_agents(&q)
                .unwrap_or_default()
                .into_iter()
                .map(|(ext, name, v)| (ext, (name, v.since)))
                .collect();
            order
                .into_iter()
                .filter_map(|ext| {
                    let (name, since) = members.get(&ext)?;
                    Some(ReadyAgent {
                        display_name: name.clone(),
                        ready_since: rfc3339(*since),
                        extension_number: ext,
                    })
                })
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Items::counted(items))
}
