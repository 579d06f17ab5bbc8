//! The batch provider: requests without an answer are queued as lines of the OpenAI Batch
//! input format (`{"custom_id","method","url","body"}`) and the run stops; answers come back
//! from a Batch output file (`{"custom_id","response":{"status_code","body"},"error"}`)
//! that `agent resume --responses FILE` loads into the store.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

use super::{CallError, ChatRequest, Completion, Failure};
use crate::config::ProviderConfig;

/// Answers known so far (from the store) and the requests still waiting.
#[derive(Debug, Default)]
pub struct BatchBook {
    /// custom_id → the output line's `response` (or error) object.
    answers: BTreeMap<String, Value>,
    pending: Mutex<Vec<Value>>,
}

impl BatchBook {
    pub fn new(answers: BTreeMap<String, Value>) -> BatchBook {
        BatchBook {
            answers,
            pending: Mutex::new(Vec::new()),
        }
    }

    pub fn get(&self, cfg: &ProviderConfig, req: &ChatRequest) -> Result<Completion, CallError> {
        match self.answers.get(&req.key) {
            Some(line) => parse_output_line(cfg, line),
            None => {
                let line = serde_json::json!({
                    "custom_id": req.key,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": super::openai_body(cfg, req),
                });
                if let Ok(mut p) = self.pending.lock() {
                    p.push(line);
                }
                Err(CallError::Pending)
            }
        }
    }

    /// The queued request lines, sorted by `custom_id` (deterministic files).
    pub fn take_pending(&self) -> Vec<Value> {
        let mut v = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        v.sort_by(|a, b| a["custom_id"].as_str().cmp(&b["custom_id"].as_str()));
        v
    }
}

/// Reads a Batch output JSONL text into `custom_id → line`. Lines are validated here so a bad
/// file is rejected before anything is stored.
pub fn read_output(text: &str) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        let id = v
            .get("custom_id")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("line {}: no `custom_id`", i + 1))?
            .to_string();
        if v.get("response").is_none() && v.get("error").is_none() {
            return Err(format!("line {}: neither `response` nor `error`", i + 1));
        }
        out.insert(id, v);
    }
    Ok(out)
}

fn parse_output_line(cfg: &ProviderConfig, line: &Value) -> Result<Completion, CallError> {
    if let Some(err) = line.get("error").filter(|e| !e.is_null()) {
        return Err(CallError::Failed(Failure {
            kind: "batch_error".into(),
            message: crate::util::truncate(&err.to_string(), 500).to_string(),
        }));
    }
    let resp = line.get("response").cloned().unwrap_or(Value::Null);
    let status = resp.get("status_code").and_then(Value::as_u64).unwrap_or(0);
    if status != 200 {
        return Err(CallError::Failed(Failure {
            kind: format!("batch_http_{status}"),
            message: crate::util::truncate(&resp.to_string(), 500).to_string(),
        }));
    }
    let body = resp.get("body").cloned().unwrap_or(Value::Null);
    let mut c = super::parse_openai(&body, cfg).map_err(CallError::Failed)?;
    c.provider = "batch".into();
    Ok(c)
}

/// Checks that `line` has the OpenAI Batch input shape for chat completions.
pub fn validate_input_line(line: &Value) -> Result<(), String> {
    let o = line.as_object().ok_or("not an object")?;
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    if keys != ["body", "custom_id", "method", "url"] {
        return Err(format!(
            "keys must be exactly body, custom_id, method, url; found {keys:?}"
        ));
    }
    let id = o["custom_id"]
        .as_str()
        .ok_or("custom_id must be a string")?;
    if id.is_empty() || id.len() > 512 {
        return Err("custom_id must be 1..=512 characters".into());
    }
    if o["method"] != "POST" || o["url"] != "/v1/chat/completions" {
        return Err("method must be POST and url /v1/chat/completions".into());
    }
    let body = o["body"].as_object().ok_or("body must be an object")?;
    if !body.get("model").is_some_and(Value::is_string) {
        return Err("body.model must be a string".into());
    }
    let msgs = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("body.messages must be an array")?;
    for m in msgs {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or("message without role")?;
        if !["system", "developer", "user", "assistant"].contains(&role) {
            return Err(format!("unknown role {role}"));
        }
        if !m.get("content").is_some_and(Value::is_string) {
            return Err("message content must be a string".into());
        }
    }
    Ok(())
}
