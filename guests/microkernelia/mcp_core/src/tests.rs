extern crate std;

use super::*;
use ai_runtime::{make_disk, MemDisk};

struct FakePlatform {
    disk: Option<MemDisk>,
}

impl Platform for FakePlatform {
    fn uptime_ns(&self) -> u64 { 5_000_000 }
    fn heap(&self) -> (usize, usize) { (1000, 1 << 20) }
    fn disk(&mut self) -> Option<&mut dyn BlockRead> { self.disk.as_mut().map(|d| d as &mut dyn BlockRead) }
    fn connections(&self) -> usize { 1 }
    fn transport(&self) -> String { "test".into() }
}

const MODEL: &[u8] = b"@name tiny\nhello\tHi!\n";

fn setup() -> (Server, FakePlatform, Session) {
    let disk = MemDisk(make_disk(&[("model.kv", MODEL)]));
    (Server::new(), FakePlatform { disk: Some(disk) }, Session::default())
}

/// A session after a 2025-11-25 initialize.
fn setup_legacy() -> (Server, FakePlatform, Session) {
    let (mut s, mut p, mut sess) = setup();
    call(&mut s, &mut p, &mut sess,
         r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}"#).unwrap();
    (s, p, sess)
}

/// The 2026-07-28 per-request envelope (basic/index "_meta").
const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

fn call(s: &mut Server, p: &mut FakePlatform, sess: &mut Session, req: &str) -> Option<Value> {
    s.handle_frame(p, sess, req.as_bytes()).map(|b| serde_json::from_slice(&b).unwrap())
}

fn code(v: &Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or_else(|| panic!("not an error: {v}"))
}

#[test]
fn initialize_negotiates_the_version() {
    let (mut s, mut p, mut sess) = setup();
    let r = call(&mut s, &mut p, &mut sess,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#).unwrap();
    assert_eq!(r["id"], 1);
    assert_eq!(r["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(r["result"]["serverInfo"]["name"], "microkernelia");
    assert!(r["result"]["capabilities"]["tools"].is_object());
    let r = call(&mut s, &mut p, &mut sess,
        r#"{"jsonrpc":"2.0","id":"a","method":"initialize","params":{"protocolVersion":"2024-11-05"}}"#).unwrap();
    assert_eq!(r["result"]["protocolVersion"], "2024-11-05");
    assert_eq!(r["id"], "a");
    let r = call(&mut s, &mut p, &mut sess,
        r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#).unwrap();
    assert_eq!(r["result"]["protocolVersion"], LEGACY_VERSIONS[0]);
    // initialize never negotiates a stateless revision: its answer is the newest legacy one.
    let r = call(&mut s, &mut p, &mut sess,
        r#"{"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2026-07-28"}}"#).unwrap();
    assert_eq!(r["result"]["protocolVersion"], "2025-11-25");
    let r = call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{}}"#).unwrap();
    assert_eq!(code(&r), INVALID_PARAMS);
    assert!(call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_none());
    assert!(sess.initialized);
}

#[test]
fn ping_and_tools_list() {
    let (mut s, mut p, mut sess) = setup_legacy();
    let r = call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).unwrap();
    assert_eq!(r, json!({"jsonrpc":"2.0","id":7,"result":{}}));
    let r = call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","id":8,"method":"tools/list","params":{}}"#).unwrap();
    let tools = r["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["infer", "health", "metadata", "load_model", "logs", "test_simple_text", "test_error_handling"]);
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object");
    }
}

#[test]
fn every_error_code() {
    let (mut s, mut p, mut sess) = setup_legacy();
    let cases: &[(&[u8], i64)] = &[
        (b"{not json", PARSE_ERROR),
        (b"", PARSE_ERROR),
        (b"\xff\xfe{}", PARSE_ERROR),
        (b"[1,2]", INVALID_REQUEST),
        (b"42", INVALID_REQUEST),
        (br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, INVALID_REQUEST),
        (br#"{"jsonrpc":"2.0","id":1}"#, INVALID_REQUEST),
        (br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, INVALID_REQUEST),
        (br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, INVALID_REQUEST),
        (br#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#, METHOD_NOT_FOUND),
        (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#, INVALID_PARAMS),
        (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}"#, INVALID_PARAMS),
        (br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"health","arguments":[]}}"#, INVALID_PARAMS),
        (br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#, INVALID_PARAMS),
    ];
    for (frame, want) in cases {
        let r: Value = serde_json::from_slice(&s.handle_frame(&mut p, &mut sess, frame).unwrap()).unwrap();
        assert_eq!(code(&r), *want, "frame {:?} gave {r}", String::from_utf8_lossy(frame));
        assert_eq!(r["jsonrpc"], "2.0");
    }
    // -32603: a reply that cannot be framed (infer echoes the prompt in structuredContent).
    call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"load_model","arguments":{}}}"#);
    let head = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"infer","arguments":{"prompt":""#;
    let tail = r#""}}}"#;
    let fill = MAX_FRAME - head.len() - tail.len();
    let mut req = String::from(head);
    req.extend(core::iter::repeat('a').take(fill));
    req.push_str(tail);
    assert_eq!(req.len(), MAX_FRAME);
    let r = call(&mut s, &mut p, &mut sess, &req).unwrap();
    assert_eq!(code(&r), INTERNAL_ERROR);
    assert_eq!(r["id"], 9);
}

#[test]
fn deep_nesting_is_a_parse_error_not_a_crash() {
    let (mut s, mut p, mut sess) = setup();
    let deep = "[".repeat(100_000);
    let r = call(&mut s, &mut p, &mut sess, &deep).unwrap();
    assert_eq!(code(&r), PARSE_ERROR);
}

#[test]
fn notifications_get_no_reply_even_when_bad() {
    let (mut s, mut p, mut sess) = setup();
    for n in [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
        r#"{"jsonrpc":"2.0","method":"no/such"}"#,
        r#"{"jsonrpc":"2.0","method":"ping","params":[7]}"#,
        r#"{"jsonrpc":"2.0","id":4,"result":{}}"#,
    ] {
        assert!(call(&mut s, &mut p, &mut sess, n).is_none(), "{n} was answered");
    }
    // Scalar params make it no Request object, so no notification either: -32600, id null.
    let r = call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","method":"ping","params":7}"#).unwrap();
    assert_eq!(code(&r), INVALID_REQUEST);
    assert!(r["id"].is_null());
}

#[test]
fn tools_work_and_failures_are_is_error() {
    let (mut s, mut p, mut sess) = setup_legacy();
    let c = |s: &mut Server, p: &mut FakePlatform, sess: &mut Session, name: &str, args: &str| {
        call(s, p, sess, &std::format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{args}}}}}"#)).unwrap()
    };
    let r = c(&mut s, &mut p, &mut sess, "infer", r#"{"prompt":"hello"}"#);
    assert_eq!(r["result"]["isError"], true);
    assert!(r["result"]["content"][0]["text"].as_str().unwrap().contains("load_model"));
    let r = c(&mut s, &mut p, &mut sess, "load_model", r#"{"path":"missing"}"#);
    assert_eq!(r["result"]["isError"], true);
    let r = c(&mut s, &mut p, &mut sess, "load_model", "{}");
    assert_eq!(r["result"]["isError"], false, "{r}");
    assert_eq!(r["result"]["structuredContent"]["name"], "tiny");
    let r = c(&mut s, &mut p, &mut sess, "infer", r#"{"prompt":"Hello"}"#);
    assert_eq!(r["result"]["content"][0]["text"], "Hi!");
    assert_eq!(r["result"]["structuredContent"]["score"], 1.0);
    let r = c(&mut s, &mut p, &mut sess, "infer", r#"{}"#);
    assert_eq!(r["result"]["isError"], true);
    let r = c(&mut s, &mut p, &mut sess, "infer", r#"{"prompt":"x","bogus":1}"#);
    assert_eq!(r["result"]["isError"], true);
    let r = c(&mut s, &mut p, &mut sess, "health", "{}");
    assert_eq!(r["result"]["structuredContent"]["status"], "ok");
    assert_eq!(r["result"]["structuredContent"]["model_loaded"], true);
    let r = c(&mut s, &mut p, &mut sess, "metadata", "{}");
    assert_eq!(r["result"]["structuredContent"]["model"]["rows"], 1);
    logging::serial_println!("marker-for-logs-tool");
    let r = c(&mut s, &mut p, &mut sess, "logs", r#"{"max_bytes":65536}"#);
    assert!(r["result"]["structuredContent"]["text"].as_str().unwrap().contains("marker-for-logs-tool"));
    let r = c(&mut s, &mut p, &mut sess, "logs", r#"{"max_bytes":0}"#);
    assert_eq!(r["result"]["isError"], true);
    // No disk: load_model fails as a tool, not as the protocol.
    p.disk = None;
    let r = c(&mut s, &mut p, &mut sess, "load_model", "{}");
    assert_eq!(r["result"]["isError"], true);
}

#[test]
fn frame_too_large_reply() {
    let (mut s, _, _) = setup();
    let r: Value = serde_json::from_slice(&s.frame_too_large(u32::MAX)).unwrap();
    assert_eq!(code(&r), INVALID_REQUEST);
    assert_eq!(r["error"]["data"]["length"], u32::MAX);
    assert!(r["id"].is_null());
}

#[test]
fn requests_before_initialize_need_the_modern_envelope() {
    let (mut s, mut p, mut sess) = setup();
    let r = call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
    assert_eq!(code(&r), INVALID_PARAMS, "{r}");
    // ping is allowed before initialize; unknown methods are unknown in every era.
    let r = call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#).unwrap();
    assert_eq!(r["result"], json!({}));
    let r = call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","id":3,"method":"nope"}"#).unwrap();
    assert_eq!(code(&r), METHOD_NOT_FOUND);
    assert!(sess.protocol_version.is_none());
}

#[test]
fn modern_requests_are_served_statelessly() {
    let (mut s, mut p, mut sess) = setup();
    let r = call(&mut s, &mut p, &mut sess, &std::format!(r#"{{"jsonrpc":"2.0","id":"d","method":"server/discover","params":{{{META}}}}}"#)).unwrap();
    assert_eq!(r["result"]["resultType"], "complete");
    assert_eq!(r["result"]["supportedVersions"], json!(PROTOCOL_VERSIONS));
    assert_eq!(r["result"]["serverInfo"]["name"], "microkernelia");
    assert!(r["result"]["capabilities"]["tools"].is_object());
    let r = call(&mut s, &mut p, &mut sess, &std::format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META}}}}}"#)).unwrap();
    assert_eq!(r["result"]["resultType"], "complete");
    assert_eq!(r["result"]["tools"].as_array().unwrap().len(), 7);
    assert_eq!(r["result"]["cacheScope"], "public");
    assert_eq!(r["result"]["_meta"][META_SERVER_INFO]["name"], "microkernelia");
    let r = call(&mut s, &mut p, &mut sess, &std::format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"health","arguments":{{}},{META}}}}}"#)).unwrap();
    assert_eq!(r["result"]["structuredContent"]["status"], "ok", "{r}");
    let r = call(&mut s, &mut p, &mut sess, &std::format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"infer","arguments":{{}},{META}}}}}"#)).unwrap();
    assert_eq!(r["result"]["isError"], true);
    assert_eq!(r["result"]["resultType"], "complete");
    // Nothing of the connection changed: a legacy request still needs initialize.
    assert!(sess.protocol_version.is_none());
    // ping and initialize are gone from 2026-07-28.
    for m in ["ping", "initialize"] {
        let r = call(&mut s, &mut p, &mut sess, &std::format!(r#"{{"jsonrpc":"2.0","id":4,"method":"{m}","params":{{{META}}}}}"#)).unwrap();
        assert_eq!(code(&r), METHOD_NOT_FOUND, "{m}: {r}");
    }
}

#[test]
fn modern_envelope_errors() {
    let (mut s, mut p, mut sess) = setup();
    let r = call(&mut s, &mut p, &mut sess,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"1900-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}"#).unwrap();
    assert_eq!(code(&r), UNSUPPORTED_PROTOCOL_VERSION);
    assert_eq!(r["error"]["data"]["requested"], "1900-01-01");
    assert_eq!(r["error"]["data"]["supported"], json!(PROTOCOL_VERSIONS));
    let r = call(&mut s, &mut p, &mut sess,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#).unwrap();
    assert_eq!(code(&r), INVALID_PARAMS, "clientCapabilities is required: {r}");
    let r = call(&mut s, &mut p, &mut sess,
        r#"{"jsonrpc":"2.0","id":3,"method":"server/discover"}"#).unwrap();
    assert_eq!(code(&r), INVALID_PARAMS, "server/discover without _meta: {r}");
}

#[test]
fn both_eras_on_one_connection() {
    let (mut s, mut p, mut sess) = setup_legacy();
    let r = call(&mut s, &mut p, &mut sess, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
    assert!(r["result"].get("resultType").is_none(), "a legacy result carries no resultType: {r}");
    let r = call(&mut s, &mut p, &mut sess, &std::format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{{{META}}}}}"#)).unwrap();
    assert_eq!(r["result"]["resultType"], "complete");
}
