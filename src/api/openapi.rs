//! The OpenAPI 3.1 document served at `/openapi.json`. Its paths and methods
//! are checked against the router's own route list by a test
//! (`tests/api.rs`), and each documented operation is called there.

use axum::Json;
use serde_json::{json, Value};

/// `GET /openapi.json` (no token needed).
pub(crate) async fn serve() -> Json<Value> {
    Json(document())
}

fn error_responses(codes: &[&str]) -> Value {
    let text = |c: &str| {
        match c {
        "400" => "a path segment, field or body that does not validate (the message says which)",
        "401" => "missing or wrong bearer token",
        "403" => "an agent token on another agent, or on a list",
        "404" => "unknown queue, agent, membership or call",
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

fn ok(schema: &str, mut errors: Value) -> Value {
    let m = errors.as_object_mut().expect("an object");
    m.insert(
        "200".into(),
        json!({"description": "OK",
               "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
    );
    errors
}

fn param(name: &str, what: &str, pattern: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": what,
           "schema": {"type": "string", "pattern": pattern}})
}

/// The document.
pub fn document() -> Value {
    let queue = param("queue", "queue number", "^[0-9]{1,10}$");
    let agent = param("agent", "the agent's extension", "^[A-Za-z0-9._-]{1,32}$");
    let call = param("call_id", "the PBX's call id", "^[!-~]{1,128}$");
    let read = ["400", "401", "403", "404", "503"];
    let write = ["400", "401", "403", "404", "409", "413", "500", "503"];
    let state = json!({"type": "string",
        "enum": ["LOGGED_OUT", "NOT_READY", "READY", "QUEUE_CALL", "OTHER_CALL", "WRAP_UP"]});
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "facd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Agent states per call queue (PortSIP v22 shaped). Every change is durable before its 200. WebSocket pub/sub at /wsi (PortSIP WSI protocol, see README)."
        },
        "security": [{"bearer": []}],
        "paths": {
            "/openapi.json": {"get": {
                "summary": "this document", "security": [],
                "responses": {"200": {"description": "OK", "content": {"application/json": {}}}}
            }},
            "/wsi": {"get": {
                "summary": "WebSocket pub/sub (PortSIP WSI); authentication is the first message, not a bearer token",
                "security": [],
                "responses": {
                    "101": {"description": "switching to WebSocket"},
                    "400": {"description": "not a WebSocket upgrade",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                    "503": {"description": "too many WebSocket sessions, or shutting down",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                }
            }},
            "/call_queues/{queue}/agents": {"get": {
                "summary": "every member of a queue with its state (admin)",
                "parameters": [queue],
                "responses": ok("QueueAgentList", error_responses(&read))
            }},
            "/call_queues/{queue}/agents/{agent}": {
                "get": {
                    "summary": "an agent's state in a queue",
                    "parameters": [queue, agent],
                    "responses": ok("QueueAgent", error_responses(&read))
                },
                "post": {
                    "summary": "change an agent's state in a queue",
                    "parameters": [queue, agent],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StatusRequest"}}}},
                    "responses": ok("Changed", error_responses(&write))
                }
            },
            "/call_queues/{queue}/ready_agents": {"get": {
                "summary": "READY agents of a queue, longest idle first (admin)",
                "parameters": [queue],
                "responses": ok("ReadyAgentList", error_responses(&read))
            }},
            "/agents/{agent}": {"get": {
                "summary": "an agent's state in each of its queues",
                "parameters": [agent],
                "responses": ok("Agent", error_responses(&read))
            }},
            "/agents/{agent}/calls": {"post": {
                "summary": "call report: a call started (QUEUE_CALL / OTHER_CALL)",
                "parameters": [agent],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallRequest"}}}},
                "responses": ok("Changed", error_responses(&write))
            }},
            "/agents/{agent}/calls/{call_id}": {"delete": {
                "summary": "call report: the call ended (WRAP_UP or back)",
                "parameters": [agent, call],
                "responses": ok("Changed", error_responses(&write))
            }}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "a token of [[api_users]]"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}}},
                "State": state,
                "StatusRequest": {"type": "object", "required": ["status"], "additionalProperties": false,
                    "properties": {"status": {"type": "string",
                        "description": "READY, NOT_READY, WRAP_UP, LOGGED_IN, LOGGED_OUT, or a configured not-ready reason name (NOT_READY with that reason)"}}},
                "CallRequest": {"type": "object", "required": ["call_id", "kind"], "additionalProperties": false,
                    "properties": {
                        "call_id": {"type": "string", "pattern": "^[!-~]{1,128}$"},
                        "kind": {"type": "string", "enum": ["acd", "other"]},
                        "queue": {"type": "string", "pattern": "^[0-9]{1,10}$",
                                  "description": "required for acd, absent for other"}}},
                "QueueAgent": {"type": "object",
                    "required": ["extension_number", "display_name", "queue_number", "status", "since"],
                    "properties": {
                        "extension_number": {"type": "string"},
                        "display_name": {"type": "string"},
                        "queue_number": {"type": "string"},
                        "status": {"$ref": "#/components/schemas/State"},
                        "reason": {"type": "string"},
                        "pending": {"$ref": "#/components/schemas/State"},
                        "since": {"type": "string", "description": "Unix seconds"}}},
                "QueueAgentList": {"type": "object", "required": ["queue_number", "count", "items"],
                    "properties": {"queue_number": {"type": "string"}, "count": {"type": "integer"},
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/QueueAgent"}}}},
                "ReadyAgent": {"type": "object", "required": ["extension_number", "display_name", "since"],
                    "properties": {"extension_number": {"type": "string"}, "display_name": {"type": "string"},
                        "since": {"type": "string", "description": "READY since, Unix seconds"}}},
                "ReadyAgentList": {"type": "object", "required": ["queue_number", "count", "items"],
                    "properties": {"queue_number": {"type": "string"}, "count": {"type": "integer"},
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/ReadyAgent"}}}},
                "Agent": {"type": "object", "required": ["extension_number", "display_name", "queues"],
                    "properties": {"extension_number": {"type": "string"}, "display_name": {"type": "string"},
                        "queues": {"type": "array", "items": {"type": "object",
                            "required": ["queue_number", "status", "since"],
                            "properties": {"queue_number": {"type": "string"},
                                "status": {"$ref": "#/components/schemas/State"},
                                "reason": {"type": "string"},
                                "pending": {"$ref": "#/components/schemas/State"},
                                "since": {"type": "string"}}}}}},
                "Changed": {"type": "object", "required": ["extension_number", "queues"],
                    "properties": {"extension_number": {"type": "string"},
                        "call_id": {"type": "string"},
                        "queues": {"type": "array", "items": {"type": "object",
                            "required": ["queue_number", "status"],
                            "properties": {"queue_number": {"type": "string"},
                                "status": {"$ref": "#/components/schemas/State"},
                                "reason": {"type": "string"},
                                "pending": {"$ref": "#/components/schemas/State"}}}}}}
            }
        }
    });
    super::reports::extend_openapi(&mut doc);
    doc
}
