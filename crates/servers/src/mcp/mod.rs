//! `stepforge mcp`: a Model Context Protocol server over stdio (newline-delimited JSON-RPC 2.0,
//! protocol revisions 2024-11-05 to 2025-06-18).
//!
//! Why not the `rmcp` SDK: it builds here, but brings ~80 crates (tokio, schemars, proc macros)
//! for the dozen messages we speak, and its stdio codec drops an over-long line silently, where
//! we owe the client an error reply. The protocol surface is small enough to own.
//!
//! Concurrency: the reader thread answers cheap requests inline and hands `tools/call` to a pool
//! of worker threads, which reply when done — out of order, so a long `verify` never stalls a
//! `check` or a `tools/list` sent after it. `notifications/cancelled` is honoured: a cancelled
//! call still waiting for a worker never runs, and a running one is not answered (MCP: the
//! receiver should not respond to a cancelled request; the toolchain's own time limits bound
//! the work already started). At EOF the server stops reading, lets in-flight calls finish and
//! reply, and returns.

mod resources;
mod tools;
pub mod transport;

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{Value, json};

use crate::toolchain::Sessions;
use transport::{Line, Outgoing};

pub use tools::{TOOLS, Tool, ToolError, verify_options_json as verify_options};

/// Protocol revisions we speak, newest first; a client asking for another gets the newest.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];

/// Bounds and settings of one server.
#[derive(Debug, Clone)]
pub struct McpConfig {
    /// Task paths and `list_tasks` directories are relative to this; resources list its tasks.
    pub root: PathBuf,
    /// Threads running tool calls.
    pub workers: usize,
    /// Tool calls waiting for a worker before new ones are refused as busy.
    pub max_queue: usize,
    /// One JSON-RPC message (one line), in bytes.
    pub max_line: usize,
}

impl Default for McpConfig {
    fn default() -> McpConfig {
        McpConfig {
            root: PathBuf::from("."),
            workers: 4,
            max_queue: 64,
            max_line: 4 << 20,
        }
    }
}

/// What every request handler sees.
#[derive(Debug)]
pub struct Ctx {
    pub root: PathBuf,
    pub sessions: Sessions,
    calls: Calls,
}

/// Tool calls queued or running, and which of them the client cancelled (ids as JSON text).
#[derive(Debug, Default)]
struct Calls {
    inner: Mutex<CallSets>,
}

#[derive(Debug, Default)]
struct CallSets {
    in_flight: BTreeSet<String>,
    cancelled: BTreeSet<String>,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, CallSets> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn start(&self, id: &Value) {
        self.lock().in_flight.insert(id.to_string());
    }
    /// Marks an in-flight call cancelled; ids we do not know (finished, never sent) are
    /// ignored, so the set stays bounded by the calls in flight.
    fn cancel(&self, id: &Value) {
        let key = id.to_string();
        let mut c = self.lock();
        if c.in_flight.contains(&key) {
            c.cancelled.insert(key);
        }
    }
    fn is_cancelled(&self, id: &Value) -> bool {
        self.lock().cancelled.contains(&id.to_string())
    }
    /// The call is done; true if it was cancelled (then it gets no reply).
    fn finish(&self, id: &Value) -> bool {
        let key = id.to_string();
        let mut c = self.lock();
        c.in_flight.remove(&key);
        c.cancelled.remove(&key)
    }
}

struct Job {
    id: Value,
    tool: &'static Tool,
    args: Value,
}

// JSON-RPC 2.0 error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// Serves one client until `input` ends.
pub fn serve(
    mut input: impl BufRead,
    output: impl Write + Send + 'static,
    cfg: &McpConfig,
) -> io::Result<()> {
    let out = Outgoing::new(output);
    let ctx = Arc::new(Ctx {
        root: cfg.root.clone(),
        sessions: Sessions::default(),
        calls: Calls::default(),
    });
    let (tx, rx) = crossbeam_channel::bounded::<Job>(cfg.max_queue.max(1));
    let workers: Vec<_> = (0..cfg.workers.max(1))
        .map(|_| {
            let (rx, out, ctx) = (rx.clone(), out.clone(), ctx.clone());
            thread::spawn(move || {
                for job in rx.iter() {
                    if ctx.calls.is_cancelled(&job.id) {
                        ctx.calls.finish(&job.id);
                        continue;
                    }
                    let result = tools::call(&ctx, job.tool, &job.args);
                    if !ctx.calls.finish(&job.id) {
                        out.send(&json!({"jsonrpc": "2.0", "id": job.id, "result": result}));
                    }
                }
            })
        })
        .collect();
    let res = read_loop(&mut input, &out, &ctx, &tx, cfg.max_line);
    drop(tx);
    for w in workers {
        // A worker only ends by its channel closing; a panic inside a tool is caught there.
        let _ = w.join();
    }
    res
}

fn read_loop(
    input: &mut impl BufRead,
    out: &Outgoing,
    ctx: &Ctx,
    tx: &crossbeam_channel::Sender<Job>,
    max_line: usize,
) -> io::Result<()> {
    while let Some(line) = transport::read_line(input, max_line)? {
        let text = match line {
            Line::Text(t) if t.trim().is_empty() => continue,
            Line::Text(t) => t,
            Line::TooLong(n) => {
                out.send(&error(
                    Value::Null,
                    INVALID_REQUEST,
                    &format!("message of {n} bytes exceeds the limit of {max_line} bytes"),
                ));
                continue;
            }
            Line::Invalid => {
                out.send(&error(Value::Null, PARSE_ERROR, "message is not UTF-8"));
                continue;
            }
        };
        let msg: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                out.send(&error(
                    Value::Null,
                    PARSE_ERROR,
                    &format!("invalid JSON: {e}"),
                ));
                continue;
            }
        };
        if let Some(reply) = dispatch(msg, ctx, tx) {
            out.send(&reply);
        }
    }
    Ok(())
}

/// Handles one message; `Some` is the reply to send now (`None`: a notification, a response,
/// or a call handed to a worker, which replies itself).
fn dispatch(msg: Value, ctx: &Ctx, tx: &crossbeam_channel::Sender<Job>) -> Option<Value> {
    let Value::Object(mut m) = msg else {
        let what = if msg.is_array() {
            "batches are not supported"
        } else {
            "a message must be a JSON object"
        };
        return Some(error(Value::Null, INVALID_REQUEST, what));
    };
    let id = m.remove("id");
    let method = m.get("method").and_then(Value::as_str).map(str::to_string);
    let is_response = m.contains_key("result") || m.contains_key("error");
    let (method, id) = match (method, id) {
        (Some(method), Some(id)) => (method, id),
        (Some(method), None) => {
            if method == "notifications/cancelled"
                && let Some(id) = m.get("params").and_then(|p| p.get("requestId"))
            {
                ctx.calls.cancel(id);
            }
            // Notifications (initialized, cancelled, ...) get no answer.
            return None;
        }
        // A response to a request of ours (we send none): ignore.
        (None, Some(_)) if is_response => return None,
        (None, id) => {
            let id = id.unwrap_or(Value::Null);
            return Some(error(
                id,
                INVALID_REQUEST,
                "a request needs a string `method`",
            ));
        }
    };
    if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(error(id, INVALID_REQUEST, "`jsonrpc` must be \"2.0\""));
    }
    let params = m.remove("params").unwrap_or(Value::Null);
    let result = match method.as_str() {
        "initialize" => Ok(initialize(&params)),
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": TOOLS.iter().map(Tool::describe).collect::<Vec<_>>()})),
        "tools/call" => return call(id, &params, ctx, tx),
        "resources/list" => Ok(resources::list(ctx)),
        "resources/read" => resources::read(ctx, &params),
        "resources/templates/list" => Ok(json!({"resourceTemplates": []})),
        other => Err((METHOD_NOT_FOUND, format!("unknown method `{other}`"))),
    };
    Some(match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err((code, msg)) => error(id, code, &msg),
    })
}

fn call(
    id: Value,
    params: &Value,
    ctx: &Ctx,
    tx: &crossbeam_channel::Sender<Job>,
) -> Option<Value> {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Some(error(
            id,
            INVALID_PARAMS,
            "tools/call needs a string `name`",
        ));
    };
    let Some(tool) = TOOLS.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
        return Some(error(
            id,
            INVALID_PARAMS,
            &format!("unknown tool `{name}`; the tools are: {}", names.join(", ")),
        ));
    };
    let args = params.get("arguments").cloned().unwrap_or(json!({}));
    ctx.calls.start(&id);
    match tx.try_send(Job {
        id: id.clone(),
        tool,
        args,
    }) {
        Ok(()) => None,
        Err(_) => {
            ctx.calls.finish(&id);
            Some(json!({"jsonrpc": "2.0", "id": id, "result": ToolError::new(
            "busy",
            "too many tool calls are in progress; retry when earlier ones have answered",
        ).to_result()}))
        }
    }
}

fn initialize(params: &Value) -> Value {
    let asked = params.get("protocolVersion").and_then(Value::as_str);
    let version = asked
        .and_then(|a| PROTOCOL_VERSIONS.iter().find(|v| **v == a))
        .unwrap_or(&PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": {"listChanged": false},
            "resources": {"listChanged": false, "subscribe": false},
        },
        "serverInfo": {"name": "stepforge", "title": "stepforge (STeP kernels)", "version": env!("CARGO_PKG_VERSION")},
        "instructions": "Tools for writing STeP (Streaming Tensor Programs) kernels. Call `manual` \
            once to learn the language, `show_task` to read a task, then `check` your program, \
            `fix` to insert missing Copy ops, and `verify` until the verdict is `pass`; then \
            `simulate` for cycles and deadlocks, and make it faster.",
    })
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}
