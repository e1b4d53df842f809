//! MCP server core: JSON-RPC 2.0 dispatch and the tools, for a dual-era server (MCP spec
//! 2026-07-28, basic/versioning "Backward Compatibility": a request carrying the modern
//! per-request `_meta` is served statelessly; an `initialize` selects a legacy revision,
//! 2025-11-25 or older, for the rest of the connection).
//!
//! Transport-agnostic: `Server::handle_frame` takes one frame body and returns the reply body
//! (or nothing for a notification). The kernel owns the platform (clock, heap, block device)
//! and passes it in as `&mut dyn Platform`; host tests use a fake one.
#![no_std]
extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use ai_runtime::{BlockRead, Model};
use serde_json::{json, Map, Value};

pub const SERVER_NAME: &str = "microkernelia";
pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// vsock port the MCP server listens on (pytest_vmm/mcp.py has the host's copy; a test keeps
/// the two equal).
pub const MCP_PORT: u32 = 5000;
/// Largest frame body either way: 1 MiB (the transport's decoder is built with it).
pub const MAX_FRAME: usize = 1 << 20;
/// Revisions served statelessly from per-request `_meta` (no handshake).
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// Revisions negotiated with `initialize`, newest first: the first is the answer to an
/// `initialize` naming a version we do not negotiate that way.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
/// Every revision served, newest first (`UnsupportedProtocolVersionError.data.supported`,
/// `server/discover`'s `supportedVersions`).
pub const PROTOCOL_VERSIONS: &[&str] = &["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
pub const DEFAULT_MODEL_PATH: &str = "model.kv";

/// `_meta` keys of the 2026-07-28 per-request protocol fields (basic/index, "_meta").
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
/// How long a client may cache tools/list and server/discover (2026-07-28 CacheableResult):
/// the tool set is fixed at build time, but a new image may change it.
pub const LIST_TTL_MS: u64 = 60_000;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// 2026-07-28 basic/index "Error Codes".
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// What the kernel provides to the tools.
pub trait Platform {
    fn uptime_ns(&self) -> u64;
    /// (bytes in use, heap size)
    fn heap(&self) -> (usize, usize);
    /// The model disk, if a virtio-blk device was found.
    fn disk(&mut self) -> Option<&mut dyn BlockRead>;
    /// Open MCP connections right now.
    fn connections(&self) -> usize;
    /// Short description of the transport ("virtio-vsock cid 3 port 5000").
    fn transport(&self) -> String;
}

/// Per-connection MCP state of a legacy (initialize) client; modern requests never read or
/// write it.
#[derive(Default, Debug)]
pub struct Session {
    pub protocol_version: Option<String>,
    pub initialized: bool,
    pub client_name: Option<String>,
}

#[derive(Default)]
pub struct Server {
    pub model: Option<Model>,
    pub requests: u64,
    pub notifications: u64,
    pub errors: u64,
    pub tool_calls: u64,
}

fn error_body(id: &Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut err = json!({ "code": code, "message": message });
    if let Some(d) = data {
        err["data"] = d;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": err })
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,\"message\":\"Internal error\"}}".to_vec())
}

/// Why a request failed: a JSON-RPC error, an unsupported per-request protocol version (the
/// version asked for), or a tool error (isError result).
enum Failure {
    Rpc(i64, String),
    Unsupported(Value),
    Tool(String),
}

/// Methods this server answers in some era (anything else is -32601 in every era).
const KNOWN_METHODS: &[&str] = &["initialize", "ping", "tools/list", "tools/call", "server/discover"];
const INSTRUCTIONS: &str = "Call load_model, then infer with a prompt. health, metadata and logs describe the kernel.";

fn server_info() -> Value {
    json!({ "name": SERVER_NAME, "title": "microkernelia MCP unikernel", "version": SERVER_VERSION })
}

/// The protocol version a request declares in its 2026-07-28 `_meta`: `None` for a legacy
/// request (no such key, or a revision that is negotiated with initialize), `Some(Ok)` for a
/// modern revision we serve, `Some(Err(requested))` for anything else.
fn modern_version(params: &Map<String, Value>) -> Option<Result<&str, Value>> {
    let declared = params.get("_meta")?.as_object()?.get(META_PROTOCOL_VERSION)?;
    match declared.as_str() {
        Some(v) if MODERN_VERSIONS.contains(&v) => Some(Ok(v)),
        Some(v) if LEGACY_VERSIONS.contains(&v) => None,
        _ => Some(Err(declared.clone())),
    }
}

/// Every 2026-07-28 result carries `resultType` (basic/index "ResultType") and, as servers
/// SHOULD, identifies the server in its `_meta`.
fn stamp_modern(result: &mut Value) {
    if let Value::Object(r) = result {
        r.insert("resultType".to_owned(), json!("complete"));
        let meta = r.entry("_meta").or_insert_with(|| json!({}));
        if let Value::Object(m) = meta {
            m.insert(META_SERVER_INFO.to_owned(), json!({ "name": SERVER_NAME, "version": SERVER_VERSION }));
        }
    }
}

fn rpc(code: i64, msg: impl Into<String>) -> Failure {
    Failure::Rpc(code, msg.into())
}

fn tool_err(msg: impl Into<String>) -> Failure {
    Failure::Tool(msg.into())
}

fn tool_result(text: String, structured: Value) -> Value {
    json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": structured,
        "isError": false,
    })
}

/// Tool descriptions for tools/list (name, title, description, input schema).
pub fn tool_list() -> Value {
    json!([
        {
            "name": "infer",
            "title": "Infer",
            "description": "Answer a prompt from the loaded key/value model (call load_model first).",
            "inputSchema": {
                "type": "object",
                "properties": { "prompt": { "type": "string", "description": "the question" } },
                "required": ["prompt"],
                "additionalProperties": false
            }
        },
        {
            "name": "health",
            "title": "Health",
            "description": "Liveness and resource figures of the unikernel.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false }
        },
        {
            "name": "metadata",
            "title": "Metadata",
            "description": "Server, protocol, transport and model metadata.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false }
        },
        {
            "name": "load_model",
            "title": "Load model",
            "description": "Read a key/value model file from the virtio-blk model disk into memory.",
            "inputSchema": {
                "type": "object",
                "properties": { "path": { "type": "string", "description": "file name on the model disk", "default": DEFAULT_MODEL_PATH } },
                "additionalProperties": false
            }
        },
        {
            "name": "logs",
            "title": "Kernel log",
            "description": "Read the kernel log ring buffer (what serial_println! wrote).",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "since": { "type": "integer", "minimum": 0, "description": "absolute log position to start at (from a previous call's next)" },
                    "max_bytes": { "type": "integer", "minimum": 1, "maximum": 65536, "default": 4096 }
                },
                "additionalProperties": false
            }
        },
        // The fixtures the official conformance tool (@modelcontextprotocol/conformance)
        // calls by name for its tools-call-simple-text and tools-call-error scenarios.
        {
            "name": "test_simple_text",
            "title": "Conformance: simple text",
            "description": "Conformance fixture: returns one text content block.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false }
        },
        {
            "name": "test_error_handling",
            "title": "Conformance: tool error",
            "description": "Conformance fixture: always fails as a tool (isError), never as the protocol.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false }
        }
    ])
}

fn check_args(args: &Map<String, Value>, allowed: &[&str]) -> Result<(), Failure> {
    for key in args.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(tool_err(format!("unknown argument {key:?} (allowed: {})", allowed.join(", "))));
        }
    }
    Ok(())
}

fn opt_u64(args: &Map<String, Value>, key: &str) -> Result<Option<u64>, Failure> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| tool_err(format!("argument {key} must be a non-negative integer"))),
    }
}

impl Server {
    pub fn new() -> Self {
        Self::default()
    }

    /// The reply to a frame whose header announced more than MAX_FRAME bytes (sent just
    /// before the connection is closed).
    pub fn frame_too_large(&mut self, len: u32) -> Vec<u8> {
        self.errors += 1;
        to_bytes(&error_body(
            &Value::Null,
            INVALID_REQUEST,
            "Invalid Request: frame too large",
            Some(json!({ "length": len, "max": MAX_FRAME })),
        ))
    }

    /// Handle one frame body; `None` when nothing must be sent back (notifications).
    pub fn handle_frame(&mut self, plat: &mut dyn Platform, session: &mut Session, frame: &[u8]) -> Option<Vec<u8>> {
        let reply = self.handle_value(plat, session, frame)?;
        let bytes = to_bytes(&reply);
        if bytes.len() > MAX_FRAME {
            self.errors += 1;
            let id = reply.get("id").cloned().unwrap_or(Value::Null);
            return Some(to_bytes(&error_body(
                &id,
                INTERNAL_ERROR,
                "Internal error: response too large",
                Some(json!({ "length": bytes.len(), "max": MAX_FRAME })),
            )));
        }
        Some(bytes)
    }

    fn handle_value(&mut self, plat: &mut dyn Platform, session: &mut Session, frame: &[u8]) -> Option<Value> {
        let text = match core::str::from_utf8(frame) {
            Ok(t) => t,
            Err(e) => {
                self.errors += 1;
                return Some(error_body(&Value::Null, PARSE_ERROR, "Parse error: invalid UTF-8",
                                       Some(json!({ "offset": e.valid_up_to() }))));
            }
        };
        let msg: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.errors += 1;
                return Some(error_body(&Value::Null, PARSE_ERROR, "Parse error",
                                       Some(json!({ "detail": e.to_string() }))));
            }
        };
        let obj = match msg {
            Value::Object(o) => o,
            Value::Array(_) => {
                self.errors += 1;
                return Some(error_body(&Value::Null, INVALID_REQUEST,
                                       "Invalid Request: batches are not supported (MCP 2025-06-18 and later)", None));
            }
            _ => {
                self.errors += 1;
                return Some(error_body(&Value::Null, INVALID_REQUEST, "Invalid Request: not an object", None));
            }
        };
        let id = obj.get("id").cloned();
        // A valid id is a string or an integer (MCP: never null).
        let id_ok = matches!(&id, Some(Value::String(_))) || id.as_ref().map_or(false, |v| v.is_i64() || v.is_u64());
        let method = obj.get("method");
        if method.is_none() && id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) {
            // A response from the client: we never send requests, so there is nothing to match.
            return None;
        }
        let reply_id = if id_ok { id.clone().unwrap() } else { Value::Null };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            self.errors += 1;
            return Some(error_body(&reply_id, INVALID_REQUEST, "Invalid Request: jsonrpc must be \"2.0\"", None));
        }
        let method = match method {
            Some(Value::String(m)) => m.clone(),
            _ => {
                self.errors += 1;
                return Some(error_body(&reply_id, INVALID_REQUEST, "Invalid Request: method must be a string", None));
            }
        };
        if id.is_some() && !id_ok {
            self.errors += 1;
            return Some(error_body(&Value::Null, INVALID_REQUEST, "Invalid Request: id must be a string or an integer", None));
        }
        let empty = Map::new();
        let params = match obj.get("params") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(p)) => p,
            // A structured value (JSON-RPC 2.0 section 4.2), but MCP's params are objects: a
            // notification with it is still a notification (never answered).
            Some(Value::Array(_)) => {
                if id.is_none() {
                    return None;
                }
                self.errors += 1;
                return Some(error_body(&reply_id, INVALID_PARAMS, "Invalid params: params must be an object", None));
            }
            // Not a structured value: not a Request object at all, answered even without an id.
            Some(_) => {
                self.errors += 1;
                return Some(error_body(&reply_id, INVALID_REQUEST, "Invalid Request: params must be an object or an array", None));
            }
        };
        if id.is_none() {
            // Notification: never answered, whatever it is.
            self.notifications += 1;
            if method == "notifications/initialized" && modern_version(params).is_none() {
                session.initialized = true;
            }
            return None;
        }
        self.requests += 1;
        let outcome = match modern_version(params) {
            Some(version) => self.modern(plat, version, &method, params),
            None => self.dispatch(plat, session, &method, params),
        };
        let modern = matches!(modern_version(params), Some(Ok(_)));
        match outcome {
            Ok(mut result) => {
                if modern {
                    stamp_modern(&mut result);
                }
                Some(json!({ "jsonrpc": "2.0", "id": reply_id, "result": result }))
            }
            Err(Failure::Rpc(code, message)) => {
                self.errors += 1;
                Some(error_body(&reply_id, code, &message, None))
            }
            Err(Failure::Unsupported(requested)) => {
                self.errors += 1;
                Some(error_body(&reply_id, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                                Some(json!({ "supported": PROTOCOL_VERSIONS, "requested": requested }))))
            }
            Err(Failure::Tool(message)) => {
                self.errors += 1;
                let mut result = json!({ "content": [{ "type": "text", "text": message }], "isError": true });
                if modern {
                    stamp_modern(&mut result);
                }
                Some(json!({ "jsonrpc": "2.0", "id": reply_id, "result": result }))
            }
        }
    }

    /// A request carrying the 2026-07-28 envelope: served from the request alone
    /// (basic/index "Statelessness"), the connection's Session is not consulted.
    fn modern(&mut self, plat: &mut dyn Platform, version: Result<&str, Value>, method: &str,
              params: &Map<String, Value>) -> Result<Value, Failure> {
        let version = version.map_err(Failure::Unsupported)?;
        debug_assert!(MODERN_VERSIONS.contains(&version));
        let meta = params.get("_meta").and_then(Value::as_object).ok_or_else(|| rpc(INVALID_PARAMS, "Invalid params"))?;
        // basic/index "_meta": clientCapabilities is required; a request without it is malformed.
        match meta.get(META_CLIENT_CAPABILITIES) {
            Some(Value::Object(_)) => {}
            Some(_) => return Err(rpc(INVALID_PARAMS, format!("Invalid params: _meta {META_CLIENT_CAPABILITIES} must be an object"))),
            None => return Err(rpc(INVALID_PARAMS, format!("Invalid params: _meta {META_CLIENT_CAPABILITIES} is required"))),
        }
        match meta.get(META_CLIENT_INFO) {
            None | Some(Value::Object(_)) => {}
            Some(_) => return Err(rpc(INVALID_PARAMS, format!("Invalid params: _meta {META_CLIENT_INFO} must be an object"))),
        }
        match method {
            "server/discover" => Ok(json!({
                "supportedVersions": PROTOCOL_VERSIONS,
                "capabilities": { "tools": {} },
                "serverInfo": server_info(),
                "instructions": INSTRUCTIONS,
                "ttlMs": LIST_TTL_MS,
                "cacheScope": "public",
            })),
            "tools/list" => {
                let mut r = self.tools_list(params)?;
                r["ttlMs"] = json!(LIST_TTL_MS);
                r["cacheScope"] = json!("public");
                Ok(r)
            }
            "tools/call" => self.tools_call(plat, params),
            // initialize, notifications/initialized and ping are gone in 2026-07-28 (changelog 2, 5).
            _ => Err(rpc(METHOD_NOT_FOUND, format!("Method not found: {} (protocol {version})", truncate(method, 64)))),
        }
    }

    fn tools_list(&self, params: &Map<String, Value>) -> Result<Value, Failure> {
        match params.get("cursor") {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(rpc(INVALID_PARAMS, "Invalid params: cursor must be a string")),
        }
        Ok(json!({ "tools": tool_list() }))
    }

    fn tools_call(&mut self, plat: &mut dyn Platform, params: &Map<String, Value>) -> Result<Value, Failure> {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| rpc(INVALID_PARAMS, "Invalid params: name (string) is required"))?;
        let empty = Map::new();
        let args = match params.get("arguments") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(a)) => a,
            Some(_) => return Err(rpc(INVALID_PARAMS, "Invalid params: arguments must be an object")),
        };
        self.tool_calls += 1;
        self.call_tool(plat, name, args)
    }

    /// A request without the modern envelope: the legacy lifecycle (2025-11-25
    /// basic/lifecycle), negotiated per connection by `initialize`.
    fn dispatch(&mut self, plat: &mut dyn Platform, session: &mut Session, method: &str,
                params: &Map<String, Value>) -> Result<Value, Failure> {
        if !KNOWN_METHODS.contains(&method) {
            return Err(rpc(METHOD_NOT_FOUND, format!("Method not found: {}", truncate(method, 64))));
        }
        // Before initialize only ping is expected of a legacy client (2025-11-25
        // basic/lifecycle "Initialization"); anything else lacks both eras' context: no
        // negotiated version and no per-request _meta (2026-07-28 basic/index: a request
        // missing the required fields is malformed, -32602).
        if session.protocol_version.is_none() && method != "initialize" && method != "ping" {
            return Err(rpc(INVALID_PARAMS, format!(
                "Invalid params: {method} before initialize and without _meta {META_PROTOCOL_VERSION}: \
                 initialize first (2025-11-25) or send the per-request _meta (2026-07-28)")));
        }
        match method {
            "initialize" => {
                let requested = params
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .ok_or_else(|| rpc(INVALID_PARAMS, "Invalid params: protocolVersion (string) is required"))?;
                match params.get("capabilities") {
                    None | Some(Value::Object(_)) => {}
                    Some(_) => return Err(rpc(INVALID_PARAMS, "Invalid params: capabilities must be an object")),
                }
                // The handshake only ever negotiates a legacy revision: 2026-07-28 has no
                // initialize, so a client asking for it gets our newest legacy one.
                let version = if LEGACY_VERSIONS.contains(&requested) { requested } else { LEGACY_VERSIONS[0] };
                session.protocol_version = Some(version.to_string());
                session.client_name = params
                    .get("clientInfo")
                    .and_then(|c| c.get("name"))
                    .and_then(Value::as_str)
                    .map(|s| s.chars().take(64).collect());
                Ok(json!({
                    "protocolVersion": version,
                    "capabilities": { "tools": { "listChanged": false } },
                    "serverInfo": server_info(),
                    "instructions": INSTRUCTIONS,
                }))
            }
            "ping" => Ok(json!({})),
            "tools/list" => self.tools_list(params),
            "tools/call" => self.tools_call(plat, params),
            // server/discover exists only in 2026-07-28, where _meta is required.
            _ => Err(rpc(INVALID_PARAMS, format!(
                "Invalid params: {method} needs _meta {META_PROTOCOL_VERSION} (protocol 2026-07-28)"))),
        }
    }

    fn call_tool(&mut self, plat: &mut dyn Platform, name: &str, args: &Map<String, Value>) -> Result<Value, Failure> {
        match name {
            "health" => {
                check_args(args, &[])?;
                let (used, size) = plat.heap();
                let s = json!({
                    "status": "ok",
                    "uptime_ms": plat.uptime_ns() / 1_000_000,
                    "heap_used": used,
                    "heap_size": size,
                    "connections": plat.connections(),
                    "requests": self.requests,
                    "errors": self.errors,
                    "model_loaded": self.model.is_some(),
                });
                Ok(tool_result("ok".to_string(), s))
            }
            "metadata" => {
                check_args(args, &[])?;
                let model = self.model.as_ref().map(|m| json!({
                    "path": m.path, "name": m.name, "version": m.version, "rows": m.rows.len(), "bytes": m.bytes,
                }));
                let names: Vec<Value> = tool_list().as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
                let s = json!({
                    "name": SERVER_NAME,
                    "version": SERVER_VERSION,
                    "arch": "x86_64",
                    "protocolVersions": PROTOCOL_VERSIONS,
                    "transport": plat.transport(),
                    "maxFrame": MAX_FRAME,
                    "tools": names,
                    "model": model,
                });
                let text = serde_json::to_string(&s).unwrap_or_default();
                Ok(tool_result(text, s))
            }
            "load_model" => {
                check_args(args, &["path"])?;
                let path = match args.get("path") {
                    None | Some(Value::Null) => DEFAULT_MODEL_PATH,
                    Some(Value::String(p)) => p.as_str(),
                    Some(_) => return Err(tool_err("argument path must be a string")),
                };
                let disk = plat.disk().ok_or_else(|| tool_err("no virtio-blk model disk attached"))?;
                let model = ai_runtime::load_model(disk, path).map_err(|e| tool_err(format!("load_model({path}): {e}")))?;
                let s = json!({ "path": model.path, "name": model.name, "version": model.version,
                                "rows": model.rows.len(), "bytes": model.bytes });
                let text = format!("loaded {} ({} rows, {} bytes)", model.name, model.rows.len(), model.bytes);
                logging::serial_println!("microkernelia: model {} loaded from {}", model.name, path);
                self.model = Some(model);
                Ok(tool_result(text, s))
            }
            "infer" => {
                check_args(args, &["prompt"])?;
                let prompt = match args.get("prompt") {
                    Some(Value::String(p)) => p,
                    Some(_) => return Err(tool_err("argument prompt must be a string")),
                    None => return Err(tool_err("argument prompt is required")),
                };
                let model = self.model.as_ref().ok_or_else(|| tool_err("no model loaded: call load_model first"))?;
                let r = model.infer(prompt);
                let s = json!({
                    "prompt": prompt,
                    "answer": r.answer,
                    "score": r.score_milli as f64 / 1000.0,
                    "matched": r.matched,
                    "model": model.name,
                    "usage": { "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens },
                });
                Ok(tool_result(r.answer, s))
            }
            "logs" => {
                check_args(args, &["since", "max_bytes"])?;
                let since = opt_u64(args, "since")?;
                let max = opt_u64(args, "max_bytes")?.unwrap_or(4096);
                if max == 0 || max > 65536 {
                    return Err(tool_err("max_bytes must be within 1..65536"));
                }
                let mut buf = vec![0u8; max as usize];
                let (start, n) = logging::log_read(since, &mut buf);
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let s = json!({ "start": start, "next": start + n as u64, "text": text });
                Ok(tool_result(text, s))
            }
            "test_simple_text" => {
                check_args(args, &[])?;
                Ok(json!({ "content": [{ "type": "text", "text": "This is a simple text response for testing." }], "isError": false }))
            }
            "test_error_handling" => {
                check_args(args, &[])?;
                Err(tool_err("This tool always fails: a tool error is an isError result (server/tools \"Error Handling\")"))
            }
            other => Err(rpc(INVALID_PARAMS, format!("Unknown tool: {}", truncate(other, 64)))),
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n).collect::<String>() + "…" }
}

#[cfg(test)]
mod tests;
