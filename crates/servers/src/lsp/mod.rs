//! `stepforge lsp`: a language server over stdio for task files (`*.yaml`) and `.step` programs,
//! on rust-analyzer's `lsp-server` plumbing (synchronous, crossbeam channels).
//!
//! Threads: the main loop owns the open documents and never computes anything itself. Requests
//! (hover, definition, completion, code actions, inlay hints, the `stepforge.verify` command)
//! run on a pool of workers against a snapshot of their document, so a slow one never delays
//! the others; replies go out as they finish. Diagnostics are computed by one debouncing thread:
//! a change after a quiet spell (of [`DEBOUNCE`], or of the last analysis pass's length when
//! that is shorter) is analysed at once, a burst of faster changes once it has been quiet for
//! [`DEBOUNCE`] (newest version only); the analysis is cached per version so the requests
//! that follow reuse it (and wait for it rather than repeat it).
//! Positions are UTF-16 (the LSP default).

mod analysis;
mod features;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{
    CodeActionRequest, Completion, ExecuteCommand, GotoDefinition, HoverRequest, InlayHintRequest,
    Request as _,
};
use lsp_types::{
    CodeActionKind, CodeActionOptions, CodeActionProviderCapability, CompletionOptions,
    DidChangeTextDocumentParams, DidCloseTextDocumentParams, DidOpenTextDocumentParams,
    ExecuteCommandOptions, HoverProviderCapability, InitializeResult, OneOf, PositionEncodingKind,
    PublishDiagnosticsParams, ServerCapabilities, ServerInfo, TextDocumentSyncCapability,
    TextDocumentSyncKind,
};
use serde_json::Value;

pub use analysis::{Analysis, Doc, find_task};

use crate::text::{LineIndex, Pos};
use crate::toolchain::Sessions;

/// Quiet time before a changed document is re-analysed.
pub const DEBOUNCE: Duration = Duration::from_millis(20);
/// The command that verifies the document (arguments: `[{"uri", "dims"?, "seeds"?}]`).
pub const VERIFY_COMMAND: &str = "stepforge.verify";
/// The largest document analysed (larger ones get one diagnostic saying so).
pub const MAX_DOC_BYTES: usize = 8 << 20;

#[derive(Debug, Clone)]
pub struct LspConfig {
    pub workers: usize,
}

impl Default for LspConfig {
    fn default() -> LspConfig {
        LspConfig { workers: 4 }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// State shared by the workers.
#[derive(Debug, Default)]
struct Shared {
    sessions: Sessions,
    analyses: analysis::Analyses,
    /// Requests queued or running, and those the client cancelled (`$/cancelRequest`) before
    /// a worker took them: those are answered with `RequestCancelled` without running.
    requests: Mutex<Requests>,
}

#[derive(Debug, Default)]
struct Requests {
    in_flight: BTreeSet<String>,
    cancelled: BTreeSet<String>,
}

impl Shared {
    fn requests(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs the server on `conn` until `exit` (or the client goes away).
pub fn serve(conn: &Connection, cfg: &LspConfig) -> Result<(), String> {
    let caps = capabilities();
    let init = serde_json::to_value(InitializeResult {
        capabilities: caps,
        server_info: Some(ServerInfo {
            name: "stepforge".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
    })
    .map_err(|e| e.to_string())?;
    let (id, _params) = conn.initialize_start().map_err(|e| e.to_string())?;
    conn.initialize_finish(id, init)
        .map_err(|e| e.to_string())?;

    let shared = Arc::new(Shared::default());
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded::<Job>();
    for _ in 0..cfg.workers.max(1) {
        let rx = jobs_rx.clone();
        thread::spawn(move || {
            for job in rx {
                // A panicking request must not take the worker down with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        });
    }
    let (diag_tx, diag_rx) = crossbeam_channel::unbounded::<DiagEvent>();
    {
        let (shared, out, jobs) = (shared.clone(), conn.sender.clone(), jobs_tx.clone());
        thread::spawn(move || diagnostics_loop(&diag_rx, &shared, &out, &jobs));
    }

    let mut docs: BTreeMap<String, Doc> = BTreeMap::new();
    for msg in &conn.receiver {
        match msg {
            Message::Request(req) => {
                if conn.handle_shutdown(&req).map_err(|e| e.to_string())? {
                    return Ok(());
                }
                dispatch(req, &docs, &shared, &jobs_tx, &conn.sender);
            }
            Message::Notification(n) => {
                if n.method == "exit" {
                    return Ok(());
                }
                if n.method == "$/cancelRequest" {
                    if let Some(id) = n.params.get("id") {
                        let key = id.to_string();
                        let mut r = shared.requests();
                        if r.in_flight.contains(&key) {
                            r.cancelled.insert(key);
                        }
                    }
                    continue;
                }
                on_notification(n, &mut docs, &diag_tx);
            }
            Message::Response(_) => {}
        }
    }
    Ok(())
}

fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(PositionEncodingKind::UTF16),
        text_document_sync: Some(TextDocumentSyncCapability::Kind(
            TextDocumentSyncKind::INCREMENTAL,
        )),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), "=".into(), "(".into(), ",".into()]),
            ..Default::default()
        }),
        code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
            code_action_kinds: Some(vec![
                CodeActionKind::QUICKFIX,
                CodeActionKind::new("source.fixAll.stepforge"),
            ]),
            ..Default::default()
        })),
        inlay_hint_provider: Some(OneOf::Left(true)),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: vec![VERIFY_COMMAND.into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

enum DiagEvent {
    Changed(Doc),
    Closed(String),
}

fn on_notification(n: Notification, docs: &mut BTreeMap<String, Doc>, diag: &Sender<DiagEvent>) {
    match n.method.as_str() {
        DidOpenTextDocument::METHOD => {
            if let Ok(p) = serde_json::from_value::<DidOpenTextDocumentParams>(n.params) {
                let d = p.text_document;
                let doc = Doc {
                    uri: d.uri.as_str().to_string(),
                    version: d.version,
                    text: Arc::from(d.text),
                };
                docs.insert(doc.uri.clone(), doc.clone());
                let _ = diag.send(DiagEvent::Changed(doc));
            }
        }
        DidChangeTextDocument::METHOD => {
            if let Ok(p) = serde_json::from_value::<DidChangeTextDocumentParams>(n.params) {
                let uri = p.text_document.uri.as_str().to_string();
                let Some(old) = docs.get(&uri) else { return };
                let mut text = old.text.to_string();
                for ch in p.content_changes {
                    match ch.range {
                        Some(r) => {
                            let idx = LineIndex::new(&text);
                            let at = |p: lsp_types::Position| {
                                idx.offset(
                                    &text,
                                    Pos {
                                        line: p.line,
                                        character: p.character,
                                    },
                                )
                            };
                            let (lo, hi) = (at(r.start), at(r.end));
                            if lo <= hi {
                                text.replace_range(lo..hi, &ch.text);
                            }
                        }
                        None => text = ch.text,
                    }
                }
                let doc = Doc {
                    uri: uri.clone(),
                    version: p.text_document.version,
                    text: Arc::from(text),
                };
                docs.insert(uri, doc.clone());
                let _ = diag.send(DiagEvent::Changed(doc));
            }
        }
        DidCloseTextDocument::METHOD => {
            if let Ok(p) = serde_json::from_value::<DidCloseTextDocumentParams>(n.params) {
                let uri = p.text_document.uri.as_str().to_string();
                docs.remove(&uri);
                let _ = diag.send(DiagEvent::Closed(uri));
            }
        }
        _ => {}
    }
}

/// Debounces changes per document and publishes diagnostics for the newest version. The
/// debounce has a leading edge: a change after a quiet spell is analysed at once (a single
/// edit gets its diagnostics without waiting), while the changes of a burst of typing wait
/// until the document has been quiet for [`DEBOUNCE`] and are analysed once.
fn diagnostics_loop(
    rx: &Receiver<DiagEvent>,
    shared: &Shared,
    out: &Sender<Message>,
    jobs: &Sender<Job>,
) {
    let mut pending: BTreeMap<String, Doc> = BTreeMap::new();
    let mut quiet_since = Instant::now();
    let mut last_change: Option<Instant> = None;
    // How long the last analysis pass took: changes spaced at least that far apart are ones
    // the analyser keeps up with, so each is analysed at once even when the pass is shorter
    // than the debounce (waiting would only add latency, not save work).
    let mut last_pass = DEBOUNCE;
    loop {
        let ev = if pending.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(DEBOUNCE.saturating_sub(quiet_since.elapsed()))
        };
        match ev {
            Ok(ev) => {
                let leading = matches!(ev, DiagEvent::Changed(_))
                    && pending.is_empty()
                    && last_change.is_none_or(|t| t.elapsed() >= DEBOUNCE.min(last_pass));
                if matches!(ev, DiagEvent::Changed(_)) {
                    last_change = Some(Instant::now());
                }
                on_diag_event(ev, &mut pending, shared, out);
                quiet_since = Instant::now();
                if leading {
                    // Whatever else is already queued joins this analysis.
                    while let Ok(ev) = rx.try_recv() {
                        on_diag_event(ev, &mut pending, shared, out);
                    }
                    last_pass = flush(&mut pending, shared, out, jobs);
                }
            }
            Err(RecvTimeoutError::Timeout) => last_pass = flush(&mut pending, shared, out, jobs),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn on_diag_event(
    ev: DiagEvent,
    pending: &mut BTreeMap<String, Doc>,
    shared: &Shared,
    out: &Sender<Message>,
) {
    match ev {
        DiagEvent::Changed(doc) => {
            pending.insert(doc.uri.clone(), doc);
        }
        DiagEvent::Closed(uri) => {
            pending.remove(&uri);
            shared.analyses.remove(&uri);
            publish(out, &uri, Vec::new(), None);
        }
    }
}

/// Analyses and publishes every pending document, then hands the analyses they replaced to a
/// worker to free (on a 10,000-line document that takes milliseconds the next change should
/// not wait for). Returns how long the pass took.
fn flush(
    pending: &mut BTreeMap<String, Doc>,
    shared: &Shared,
    out: &Sender<Message>,
    jobs: &Sender<Job>,
) -> Duration {
    let start = Instant::now();
    for (_, doc) in std::mem::take(pending) {
        let diags = if doc.text.len() > MAX_DOC_BYTES {
            vec![lsp_types::Diagnostic {
                message: format!(
                    "the document is {} bytes; stepforge analyses documents up to {MAX_DOC_BYTES} bytes",
                    doc.text.len()
                ),
                source: Some("stepforge".into()),
                ..Default::default()
            }]
        } else {
            shared
                .analyses
                .get(&doc, &shared.sessions)
                .lsp_diagnostics()
        };
        publish(out, &doc.uri, diags, Some(doc.version));
    }
    let retired = shared.analyses.take_retired();
    if !retired.is_empty() {
        let _ = jobs.send(Box::new(move || drop(retired)));
    }
    start.elapsed()
}

fn publish(
    out: &Sender<Message>,
    uri: &str,
    diagnostics: Vec<lsp_types::Diagnostic>,
    version: Option<i32>,
) {
    let Ok(uri) = uri.parse() else { return };
    let params = PublishDiagnosticsParams {
        uri,
        diagnostics,
        version,
    };
    let _ = out.send(Message::Notification(Notification::new(
        PublishDiagnostics::METHOD.into(),
        params,
    )));
}

/// The document a request names (`textDocument.uri`), as the client last sent it.
fn doc_of(params: &Value, docs: &BTreeMap<String, Doc>) -> Option<Doc> {
    let uri = params
        .pointer("/textDocument/uri")
        .or_else(|| params.pointer("/arguments/0/uri"))?
        .as_str()?;
    docs.get(uri)
        .filter(|d| d.text.len() <= MAX_DOC_BYTES)
        .cloned()
}

fn dispatch(
    req: Request,
    docs: &BTreeMap<String, Doc>,
    shared: &Arc<Shared>,
    jobs: &Sender<Job>,
    out: &Sender<Message>,
) {
    let Request { id, method, params } = req;
    let known = matches!(
        method.as_str(),
        HoverRequest::METHOD
            | GotoDefinition::METHOD
            | Completion::METHOD
            | CodeActionRequest::METHOD
            | InlayHintRequest::METHOD
            | ExecuteCommand::METHOD
    );
    if !known {
        let msg = format!("unsupported request `{method}`");
        let _ = out.send(Response::new_err(id, ErrorCode::MethodNotFound as i32, msg).into());
        return;
    }
    let doc = doc_of(&params, docs);
    let (shared, out) = (shared.clone(), out.clone());
    // The id as the client wrote it (`$/cancelRequest` names it the same way).
    let key = serde_json::to_string(&id).unwrap_or_default();
    shared.requests().in_flight.insert(key.clone());
    let job: Job = Box::new(move || {
        let cancelled = {
            let mut r = shared.requests();
            r.cancelled.remove(&key)
        };
        if cancelled {
            shared.requests().in_flight.remove(&key);
            let msg = "cancelled by the client".to_string();
            let _ = out.send(Response::new_err(id, ErrorCode::RequestCanceled as i32, msg).into());
            return;
        }
        let result = handle(&method, &params, doc, &shared);
        {
            // Cancelled while running: the result is still sent (LSP allows it).
            let mut r = shared.requests();
            r.in_flight.remove(&key);
            r.cancelled.remove(&key);
        }
        let resp = match result {
            Ok(v) => Response::new_ok(id, v),
            Err((code, msg)) => Response::new_err(id, code as i32, msg),
        };
        let _ = out.send(resp.into());
    });
    // Fails only when every worker is gone, and then there is nothing left to answer with.
    let _ = jobs.send(job);
}

fn handle(
    method: &str,
    params: &Value,
    doc: Option<Doc>,
    shared: &Shared,
) -> Result<Value, (ErrorCode, String)> {
    let invalid = |e: serde_json::Error| (ErrorCode::InvalidParams, e.to_string());
    let Some(doc) = doc else {
        // A request about a document the client never opened (or too large): no answer.
        return Ok(Value::Null);
    };
    let a = shared.analyses.get(&doc, &shared.sessions);
    let json = |v: Result<Value, serde_json::Error>| v.map_err(invalid);
    match method {
        HoverRequest::METHOD => {
            let p: lsp_types::HoverParams =
                serde_json::from_value(params.clone()).map_err(invalid)?;
            json(serde_json::to_value(features::hover(
                &a,
                p.text_document_position_params.position,
            )))
        }
        GotoDefinition::METHOD => {
            let p: lsp_types::GotoDefinitionParams =
                serde_json::from_value(params.clone()).map_err(invalid)?;
            json(serde_json::to_value(features::definition(
                &a,
                p.text_document_position_params.position,
            )))
        }
        Completion::METHOD => {
            let p: lsp_types::CompletionParams =
                serde_json::from_value(params.clone()).map_err(invalid)?;
            json(serde_json::to_value(features::completion(
                &a,
                p.text_document_position.position,
            )))
        }
        CodeActionRequest::METHOD => {
            let p: lsp_types::CodeActionParams =
                serde_json::from_value(params.clone()).map_err(invalid)?;
            json(serde_json::to_value(features::code_actions(&a, p.range)))
        }
        InlayHintRequest::METHOD => {
            let p: lsp_types::InlayHintParams =
                serde_json::from_value(params.clone()).map_err(invalid)?;
            json(serde_json::to_value(features::inlay_hints(&a, p.range)))
        }
        ExecuteCommand::METHOD => verify_command(&a, params),
        _ => Err((
            ErrorCode::MethodNotFound,
            format!("unsupported request `{method}`"),
        )),
    }
}

/// `stepforge.verify`: verifies the document (a program, or a task file's own `impl`) and
/// returns the verify JSON.
fn verify_command(a: &Analysis, params: &Value) -> Result<Value, (ErrorCode, String)> {
    if params.get("command").and_then(Value::as_str) != Some(VERIFY_COMMAND) {
        return Err((
            ErrorCode::InvalidParams,
            format!("the only command is `{VERIFY_COMMAND}`"),
        ));
    }
    let arg = params
        .pointer("/arguments/0")
        .cloned()
        .unwrap_or(Value::Null);
    let mut opts_args = serde_json::Map::new();
    for k in ["dims", "seeds", "time_limit_ms"] {
        if let Some(v) = arg.get(k) {
            opts_args.insert(k.into(), v.clone());
        }
    }
    let opts = crate::mcp::verify_options(&Value::Object(opts_args))
        .map_err(|e| (ErrorCode::InvalidParams, e.message))?;
    let Some(task) = &a.task else {
        return Err((
            ErrorCode::InvalidParams,
            "the document has no task to verify against".into(),
        ));
    };
    let program = match a.kind {
        analysis::Kind::Task => None,
        analysis::Kind::Program => Some(&*a.doc.text),
    };
    Ok(task.session.verify(program, &opts).to_json())
}
