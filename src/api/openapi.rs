//! The OpenAPI 3.1 document served at `/openapi.json`: PortSIP's paths,
//! `operationId`s and field names for the operations facd implements, and
//! facd's own additions. A test (`tests/api.rs`) checks its paths and
//! methods against the router's own route list; `tests/contract.rs` checks
//! every operation's fields against `tests/fixtures/portsip-contract.json`.

use axum::Json;
use serde_json::{json, Value};

/// `GET /openapi.json` (no token needed).
pub(crate) async fn serve() -> Json<Value> {
    Json(document())
}

fn error_responses(codes: &[&str]) -> Value {
    let text = |c: &str| {
        match c {
        "400" => "a path segment, field or body that does not validate (VALIDATE_FAILED; the message says which)",
        "401" => "missing, wrong or expired bearer token, or wrong credentials (UNAUTHORIZED)",
        "403" => "an extension's login on another extension, or on an admin operation",
        "404" => "unknown queue id, user id, agent, membership or call",
        "409" => "refused by the state rules: not logged in, not a member, not ready in the queue, duplicate call",
        "413" => "body too large",
        "500" => "the change could not be saved; nothing changed",
        "503" => "facd is shutting down",
        _ => "error",
    }
    };
    let mut m = serde_json::Map::new();
    for c in codes {
        m.insert(
            (*c).to_string(),
            json!({"description": text(c),
                   "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(m)
}

fn ok(schema: Value, mut errors: Value) -> Value {
    let m = errors.as_object_mut().expect("an object");
    m.insert(
        "200".into(),
        json!({"description": "OK", "content": {"application/json": {"schema": schema}}}),
    );
    errors
}

fn param(name: &str, what: &str, pattern: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": what,
           "schema": {"type": "string", "pattern": pattern}})
}

fn obj(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "required": required, "properties": props})
}

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn list(item: &str, counted: bool) -> Value {
    let mut props = json!({"items": {"type": "array", "items": r(item)}});
    if counted {
        props["count"] = json!({"type": "integer"});
    }
    obj(props, &["items"])
}

fn body(schema: Value) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema}}})
}

/// The document.
pub fn document() -> Value {
    let id = param(
        "id",
        "the call queue's id (from GET /api/call_queues)",
        "^[0-9]{18}$",
    );
    let agent_number = param(
        "agent_number",
        "the agent's extension number",
        "^[A-Za-z0-9._-]{1,32}$",
    );
    let user_id = param("id", "the user's id (from GET /api/users)", "^[0-9]{18}$");
    let queue_id = param("queue_id", "the call queue's id", "^[0-9]{18}$");
    let call = param("call_id", "the PBX's call id", "^[!-~]{1,128}$");
    let read = ["400", "401", "403", "404", "503"];
    let write = ["400", "401", "403", "404", "409", "413", "500", "503"];
    let login_errors = ["400", "401", "413", "503"];
    let state = json!({"type": "string",
        "enum": ["LOGGED_OUT", "NOT_READY", "READY", "QUEUE_CALL", "OTHER_CALL", "WRAP_UP"]});
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "facd (PortSIP PBX Rest API 22 compatible)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The call-queue agent operations of PortSIP PBX's REST API (22.0 OpenAPI document, 22.3 change notes), served by facd, plus facd's call reports, ready agents, agent-state reports, per-agent history and the wallboard snapshot. Every change is durable before its 200. Errors: {\"errors\":[{\"code\",\"message\"}]}. WebSocket pub/sub at /wsi (PortSIP WSI 22.3, see README)."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "this document", "security": [],
                "responses": {"200": {"description": "OK", "content": {"application/json": {}}}}
            }},
            "/wsi": {"get": {
                "operationId": "wsi",
                "summary": "WebSocket pub/sub (PortSIP WSI 22.3); authentication is the first message, not a bearer token",
                "security": [],
                "responses": {
                    "101": {"description": "switching to WebSocket"},
                    "400": {"description": "not a WebSocket upgrade",
                            "content": {"application/json": {"schema": r("Error")}}},
                    "503": {"description": "too many WebSocket sessions, or shutting down",
                            "content": {"application/json": {"schema": r("Error")}}}
                }
            }},
            "/api/login": {
                "post": {
                    "operationId": "login", "summary": "log in: an [[api_users]] name and password (or token), or an extension and its SIP password",
                    "security": [], "requestBody": body(r("LoginRequest")),
                    "responses": ok(r("Token"), error_responses(&login_errors))
                },
                "get": {
                    "operationId": "getLoginStatus", "summary": "the session of the bearer token",
                    "responses": ok(r("LoginStatus"), error_responses(&["401", "503"]))
                }
            },
            "/api/login/oauth/token": {"post": {
                "operationId": "oauthToken",
                "summary": "grant_type=password (username, password, domain) or grant_type=refresh_token (refresh_token); wrong credentials are 400 UNAUTHORIZED",
                "security": [],
                "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": r("OauthRequest")}}},
                "responses": ok(r("Token"), error_responses(&["400", "413", "503"]))
            }},
            "/api/auth/sign_in": {"post": {
                "operationId": "signInWithCredentials", "summary": "as POST /api/login",
                "security": [], "requestBody": body(r("LoginRequest")),
                "responses": ok(r("Token"), error_responses(&login_errors))
            }},
            "/api/auth/refresh_token": {"post": {
                "operationId": "refreshToken", "summary": "a new token pair; the old pair stops working",
                "security": [],
                "requestBody": body(obj(json!({"refresh_token": {"type": "string"}}), &["refresh_token"])),
                "responses": ok(r("Token"), error_responses(&login_errors))
            }},
            "/api/auth/sign_out": {"post": {
                "operationId": "signOut", "summary": "the bearer token and its refresh token stop working",
                "responses": ok(json!({"type": "object"}), error_responses(&["401", "503"]))
            }},
            "/api/call_queues": {"get": {
                "operationId": "listQueues", "summary": "list call queues (admin)",
                "responses": ok(list("QueueItem", true), error_responses(&read))
            }},
            "/api/call_queues/{id}": {"get": {
                "operationId": "showQueue", "summary": "retrieve a call queue (admin)",
                "parameters": [id],
                "responses": ok(r("Queue"), error_responses(&read))
            }},
            "/api/call_queues/{id}/agents": {
                "get": {
                    "operationId": "listQueueAgents", "summary": "list call queue agents (admin)",
                    "parameters": [id],
                    "responses": ok(list("QueueMember", false), error_responses(&read))
                },
                "post": {
                    "operationId": "updateQueueAgentList",
                    "summary": "the queue's agents become exactly `items` (admin); each agent's change is durable before the 200",
                    "parameters": [id],
                    "requestBody": body(obj(json!({"items": {"type": "array", "items": r("QueueMemberRequest")}}), &["items"])),
                    "responses": ok(json!({"type": "object"}), error_responses(&write))
                }
            },
            "/api/call_queues/{id}/agents/{agent_number}": {
                "get": {
                    "operationId": "showQueueAgent", "summary": "retrieve call queue agent",
                    "parameters": [id, agent_number],
                    "responses": ok(r("QueueAgent"), error_responses(&read))
                },
                "post": {
                    "operationId": "setQueueAgentStatus", "summary": "set call queue agent status; answers the agent as it is afterwards",
                    "parameters": [id, agent_number],
                    "requestBody": body(r("StatusRequest")),
                    "responses": ok(r("QueueAgent"), error_responses(&write))
                }
            },
            "/api/call_queues/{id}/agents/status/get_many": {"post": {
                "operationId": "getManyQueueAgentStatus",
                "summary": "the status of several agents of a queue (admin; 22.3 names the operation without publishing its schema)",
                "parameters": [id],
                "requestBody": body(obj(json!({"extension_numbers": {"type": "array", "items": {"type": "string"}}}), &["extension_numbers"])),
                "responses": ok(list("AgentStatus", false), error_responses(&write))
            }},
            "/api/call_queues/{id}/ready_agents": {"get": {
                "operationId": "listQueueReadyAgents", "summary": "facd: READY agents of a queue, longest idle first (admin)",
                "parameters": [id],
                "responses": ok(list("ReadyAgent", true), error_responses(&read))
            }},
            "/api/user/call_queues": {"get": {
                "operationId": "listCurrentUserBelongedCallQueues", "summary": "the call queues of the logged-in extension",
                "responses": ok(list("QueueItem", false), error_responses(&read))
            }},
            "/api/user/call_queues/{id}/agent": {
                "get": {
                    "operationId": "getCurrentUserCallQueueAgentStatus", "summary": "the logged-in extension in a queue",
                    "parameters": [id],
                    "responses": ok(r("QueueAgent"), error_responses(&read))
                },
                "post": {
                    "operationId": "setCurrentUserCallQueueAgentStatus", "summary": "set the logged-in extension's status in a queue",
                    "parameters": [id],
                    "requestBody": body(r("StatusRequest")),
                    "responses": ok(r("QueueAgent"), error_responses(&write))
                }
            },
            "/api/users": {"get": {
                "operationId": "listUsers", "summary": "the agents with their user ids (admin; the fields facd has)",
                "responses": ok(list("User", true), error_responses(&read))
            }},
            "/api/users/{id}/call_queues": {"get": {
                "operationId": "listUserBelongedCallQueues", "summary": "the call queues of a user",
                "parameters": [user_id],
                "responses": ok(list("QueueItem", false), error_responses(&read))
            }},
            "/api/users/{id}/call_queues/{queue_id}/agent": {
                "get": {
                    "operationId": "getUserCallQueueAgentStatus", "summary": "a user in a queue",
                    "parameters": [user_id, queue_id],
                    "responses": ok(r("QueueAgent"), error_responses(&read))
                },
                "post": {
                    "operationId": "setUserCallQueueAgentStatus", "summary": "set a user's status in a queue",
                    "parameters": [user_id, queue_id],
                    "requestBody": body(r("StatusRequest")),
                    "responses": ok(r("QueueAgent"), error_responses(&write))
                }
            },
            "/api/not_ready_codes": {"get": {
                "operationId": "listNotReadyCodes", "summary": "the not-ready codes ([[reasons]]; 22.3 names the operation without publishing its schema)",
                "responses": ok(list("NotReadyCode", true), error_responses(&["401", "503"]))
            }},
            "/api/agents/{agent_number}/calls": {"post": {
                "operationId": "createAgentCall", "summary": "facd call report: a call started (QUEUE_CALL / OTHER_CALL)",
                "parameters": [agent_number],
                "requestBody": body(r("CallRequest")),
                "responses": ok(r("CallAnswer"), error_responses(&write))
            }},
            "/api/agents/{agent_number}/calls/{call_id}/destroy": {"post": {
                "operationId": "deleteAgentCall", "summary": "facd call report: the call ended (WRAP_UP or back)",
                "parameters": [agent_number, call],
                "responses": ok(r("CallAnswer"), error_responses(&write))
            }}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "an access_token from POST /api/login, or a static token of [[api_users]]"}},
            "schemas": {
                "Error": obj(json!({"errors": {"type": "array", "items": obj(json!({
                    "code": {"type": "string", "description": "VALIDATE_FAILED, UNAUTHORIZED, PERMISSION_DENIED, NOT_FOUND, AGENT_NOT_LOGGED_IN, AGENT_NOT_MEMBER, AGENT_NOT_READY, CALL_EXISTS, METHOD_NOT_ALLOWED, SERVICE_UNAVAILABLE, UNKNOWN"},
                    "message": {"type": "string"}}), &["code", "message"])}}), &["errors"]),
                "State": state,
                "LoginRequest": obj(json!({
                    "username": {"type": "string", "minLength": 1, "maxLength": 64},
                    "password": {"type": "string"},
                    "domain": {"type": "string", "description": "facd's sip.domain, if sent"}}), &["username", "password"]),
                "OauthRequest": obj(json!({
                    "grant_type": {"type": "string", "enum": ["password", "refresh_token"]},
                    "username": {"type": "string"}, "password": {"type": "string"},
                    "domain": {"type": "string"}, "refresh_token": {"type": "string"},
                    "scope": {"type": "string"}, "client_id": {"type": "string"}}), &["grant_type"]),
                "Token": obj(json!({
                    "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
                    "token_type": {"type": "string", "enum": ["Bearer"]},
                    "expires_in": {"type": "integer"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "role": {"type": "string", "enum": ["Admin", "StandardUser"]}}),
                    &["access_token", "refresh_token", "token_type", "expires_in"]),
                "LoginStatus": obj(json!({
                    "access_token": {"type": "string"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "expires_in": {"type": "integer"},
                    "role": {"type": "string"}}), &["access_token", "expires_at", "expires_in", "role"]),
                "QueueItem": obj(json!({
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "extension_number": {"type": "string"}}), &["id", "name", "extension_number"]),
                "Queue": obj(json!({
                    "id": {"type": "string"}, "name": {"type": "string"},
                    "extension_number": {"type": "string"},
                    "agent_auto_ready": {"type": "boolean"},
                    "agent_auto_not_ready_after_non_acd_call": {"type": "boolean"},
                    "enable_wrap_up": {"type": "boolean"},
                    "wrap_up_time": {"type": "integer", "description": "seconds"}}),
                    &["id", "name", "extension_number"]),
                "QueueMember": obj(json!({
                    "extension_number": {"type": "string"}, "display_name": {"type": "string"},
                    "skill_level": {"type": "integer", "minimum": 1, "maximum": 100}}),
                    &["extension_number", "display_name", "skill_level"]),
                "QueueMemberRequest": {"type": "object", "required": ["extension_number"], "additionalProperties": false,
                    "properties": {"extension_number": {"type": "string"},
                        "skill_level": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1}}},
                "QueueAgent": obj(json!({
                    "extension_number": {"type": "string"},
                    "display_name": {"type": "string"},
                    "skill_level": {"type": "integer"},
                    "status": r("State"),
                    "reason": {"type": "string", "description": "the not-ready code's name, when NOT_READY with one"},
                    "pending": r("State")}), &["extension_number", "display_name", "skill_level", "status"]),
                "StatusRequest": {"type": "object", "required": ["status"], "additionalProperties": false,
                    "properties": {
                        "status": {"type": "string", "description": "READY, NOT_READY, WRAP_UP, LOGGED_IN, LOGGED_OUT; a not-ready code's name (22.0–22.2's BREAK, LUNCH) is NOT_READY with it"},
                        "reason": {"type": "string", "description": "22.3: with NOT_READY, a not-ready code's name (or code)"}}},
                "AgentStatus": obj(json!({
                    "extension_number": {"type": "string"}, "status": r("State"),
                    "reason": {"type": "string"}}), &["extension_number", "status"]),
                "User": obj(json!({
                    "id": {"type": "string"}, "extension_number": {"type": "string"},
                    "display_name": {"type": "string"}}), &["id", "extension_number", "display_name"]),
                "NotReadyCode": obj(json!({"code": {"type": "integer"}, "name": {"type": "string"}}), &["code", "name"]),
                "ReadyAgent": obj(json!({
                    "extension_number": {"type": "string"}, "display_name": {"type": "string"},
                    "ready_since": {"type": "string", "format": "date-time"}}),
                    &["extension_number", "display_name", "ready_since"]),
                "CallRequest": {"type": "object", "required": ["call_id", "type"], "additionalProperties": false,
                    "properties": {
                        "call_id": {"type": "string", "pattern": "^[!-~]{1,128}$"},
                        "type": {"type": "string", "enum": ["ACD", "OTHER"]},
                        "queue_number": {"type": "string", "pattern": "^[0-9]{1,10}$",
                                  "description": "required for ACD, absent for OTHER"}}},
                "CallAnswer": obj(json!({
                    "extension_number": {"type": "string"}, "call_id": {"type": "string"},
                    "agent_status": {"type": "array", "items": obj(json!({
                        "queue_id": {"type": "string"}, "queue_number": {"type": "string"},
                        "status": r("State"), "reason": {"type": "string"},
                        "pending": r("State")}), &["queue_id", "queue_number", "status"])}}),
                    &["extension_number", "call_id", "agent_status"])
            }
        }
    });
    super::reports::extend_openapi(&mut doc);
    doc
}
