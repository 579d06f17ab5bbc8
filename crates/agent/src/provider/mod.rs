//! LLM providers: thin clients for OpenAI-compatible chat completions and the Anthropic
//! Messages API, a replay provider over recorded transcripts, and a batch provider that writes
//! OpenAI Batch input files. Every response is untrusted: bodies are size-bounded, parsed
//! defensively, and every failure is a [`Failure`] with a kind the loop counts.

pub mod batch;
pub mod caps;
mod http;
pub mod replay;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::config::{ProviderConfig, ProviderKind};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Message {
        Message {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// What every sample of one prompt shares: the system message, the conversation and the
/// temperature, with their hash and the serialized HTTP body computed once. A round's k samples
/// of a task hold one `Arc` of it, so they cost one copy of the prompt (the op manual is tens of
/// kilobytes), one hash and one body serialization instead of k (the overhead bench measured
/// them on the path between one reply and the next request).
#[derive(Debug)]
pub struct Conversation {
    pub system: Arc<str>,
    pub messages: Vec<Message>,
    pub temperature: f64,
    hash: OnceLock<String>,
    /// The request body as the run's HTTP client sends it. A run has one provider, so every
    /// sample of a conversation sends the same bytes: each attempt shares them (a reference
    /// count, not a copy of the prompt).
    wire: OnceLock<bytes::Bytes>,
}

impl Conversation {
    pub fn new(system: Arc<str>, messages: Vec<Message>, temperature: f64) -> Arc<Conversation> {
        Arc::new(Conversation {
            system,
            messages,
            temperature,
            hash: OnceLock::new(),
            wire: OnceLock::new(),
        })
    }

    /// Hash of what was asked (system, messages, temperature): a transcript entry must match
    /// it. The JSON `{"messages":[{"content","role"}..],"system","temperature"}` (keys
    /// sorted), streamed into the hash without building it.
    pub fn hash(&self) -> &str {
        self.hash.get_or_init(|| {
            let h = Hashed {
                messages: self
                    .messages
                    .iter()
                    .map(|m| HashedMessage {
                        content: &m.content,
                        role: &m.role,
                    })
                    .collect(),
                system: &self.system,
                temperature: self.temperature,
            };
            crate::util::sha256_json(&h)
        })
    }

    /// The serialized request body, made by `make` on first use.
    pub(crate) fn wire(&self, make: impl FnOnce() -> Vec<u8>) -> bytes::Bytes {
        self.wire.get_or_init(|| bytes::Bytes::from(make())).clone()
    }
}

/// A request, provider-neutral. `key` names the sample turn; it is the transcript and batch
/// `custom_id` key, so a replay finds exactly the answer this request got.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub key: String,
    pub conv: Arc<Conversation>,
}

#[derive(Serialize)]
struct Hashed<'a> {
    messages: Vec<HashedMessage<'a>>,
    system: &'a str,
    temperature: f64,
}

#[derive(Serialize)]
struct HashedMessage<'a> {
    content: &'a str,
    role: &'a str,
}

impl ChatRequest {
    pub fn new(key: String, conv: Arc<Conversation>) -> Self {
        ChatRequest { key, conv }
    }

    /// See [`Conversation::hash`].
    pub fn request_hash(&self) -> String {
        self.conv.hash().to_string()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub text: String,
    pub usage: Usage,
    /// Provider and model that produced it (a replay reports the recorded ones).
    pub provider: String,
    pub model: String,
}

/// Why a call gave no answer, after retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// `http_429`, `http_5xx`, `http_4xx`, `timeout`, `connection`, `truncated`, `malformed`,
    /// `too_large`.
    pub kind: String,
    pub message: String,
}

/// The outcome of [`Provider::complete`] when there is no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The call failed for good: recorded on the sample and counted.
    Failed(Failure),
    /// The batch provider queued the request; the answer arrives by file.
    Pending,
    /// The run must stop (replay without a recorded answer, budget exhausted, missing key).
    Fatal(String),
}

/// Counters of everything that went wrong, by kind (retried or final).
#[derive(Debug, Default)]
pub struct Stats {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl Stats {
    pub fn bump(&self, kind: &str) {
        if let Ok(mut m) = self.counts.lock() {
            *m.entry(kind.to_string()).or_insert(0) += 1;
        }
    }
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

enum Backend {
    Http(http::HttpClient),
    Replay(replay::ReplayBook),
    Batch(batch::BatchBook),
}

/// A provider with its concurrency limit, failure counters and transcript recorder.
pub struct Provider {
    backend: Backend,
    cfg: ProviderConfig,
    sem: Semaphore,
    pub stats: Stats,
    transcript: Option<replay::TranscriptWriter>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("kind", &self.cfg.kind)
            .finish()
    }
}

impl Provider {
    /// A live HTTP provider (OpenAI-compatible or Anthropic).
    pub fn http(
        cfg: &ProviderConfig,
        concurrency: usize,
        transcript: Option<replay::TranscriptWriter>,
    ) -> Result<Provider, String> {
        let client = http::HttpClient::new(cfg)?;
        Ok(Provider::with(
            Backend::Http(client),
            cfg,
            concurrency,
            transcript,
        ))
    }

    pub fn replay(cfg: &ProviderConfig, concurrency: usize, book: replay::ReplayBook) -> Provider {
        Provider::with(Backend::Replay(book), cfg, concurrency, None)
    }

    pub fn batch(cfg: &ProviderConfig, concurrency: usize, book: batch::BatchBook) -> Provider {
        Provider::with(Backend::Batch(book), cfg, concurrency, None)
    }

    fn with(
        backend: Backend,
        cfg: &ProviderConfig,
        concurrency: usize,
        transcript: Option<replay::TranscriptWriter>,
    ) -> Provider {
        Provider {
            backend,
            cfg: cfg.clone(),
            sem: Semaphore::new(concurrency.max(1)),
            stats: Stats::default(),
            transcript,
        }
    }

    pub fn kind(&self) -> ProviderKind {
        self.cfg.kind
    }

    /// The batch requests queued so far (batch provider only).
    pub fn take_pending(&self) -> Vec<Value> {
        match &self.backend {
            Backend::Batch(b) => b.take_pending(),
            _ => Vec::new(),
        }
    }

    /// Asks for one answer, under the concurrency limit.
    pub async fn complete(&self, req: &ChatRequest) -> Result<Completion, CallError> {
        let _permit = self
            .sem
            .acquire()
            .await
            .map_err(|_| CallError::Fatal("provider closed".into()))?;
        let r = match &self.backend {
            Backend::Http(c) => c.complete(&self.cfg, req, &self.stats).await,
            Backend::Replay(b) => b.get(req),
            Backend::Batch(b) => b.get(&self.cfg, req),
        };
        if let Err(CallError::Failed(f)) = &r {
            self.stats.bump(&format!("failed_{}", f.kind));
        }
        if let Some(t) = &self.transcript {
            match &r {
                Ok(c) => t.record(req, Ok(c)),
                Err(CallError::Failed(f)) => t.record(req, Err(f)),
                Err(_) => {}
            }
        }
        r
    }
}

/// The OpenAI chat-completions body for `req` (also the Batch API's `body`).
pub fn openai_body(cfg: &ProviderConfig, req: &ChatRequest) -> Value {
    let cap = caps::lookup(&cfg.model);
    let c = &req.conv;
    let mut messages = Vec::with_capacity(c.messages.len() + 1);
    if !c.system.is_empty() {
        messages.push(serde_json::json!({"role": cap.system_role, "content": &*c.system}));
    }
    for m in &c.messages {
        messages.push(serde_json::json!({"role": m.role, "content": m.content}));
    }
    let mut body = serde_json::json!({"model": cfg.model, "messages": messages});
    if cap.temperature {
        body["temperature"] = serde_json::json!(c.temperature);
    }
    body[cap.max_tokens_field] = serde_json::json!(cfg.max_tokens);
    body
}

/// Parses an OpenAI chat-completions response body.
pub fn parse_openai(v: &Value, cfg: &ProviderConfig) -> Result<Completion, Failure> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| malformed("no `choices[0]` in the response"))?;
    let content = choice
        .get("message")
        .and_then(|m| m.get("content"))
        .ok_or_else(|| malformed("no `choices[0].message.content` in the response"))?;
    let text = match content {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => return Err(malformed("`message.content` is neither text nor null")),
    };
    let u = v.get("usage");
    let n = |k: &str| {
        u.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(Completion {
        text: caps::strip_thinking(&text),
        usage: Usage {
            prompt_tokens: n("prompt_tokens"),
            completion_tokens: n("completion_tokens"),
        },
        provider: cfg.kind.as_str().to_string(),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(&cfg.model)
            .chars()
            .take(200)
            .collect(),
    })
}

/// The Anthropic Messages body for `req`.
pub fn anthropic_body(cfg: &ProviderConfig, req: &ChatRequest) -> Value {
    let c = &req.conv;
    let messages: Vec<Value> = c
        .messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
        .collect();
    let mut body = serde_json::json!({
        "model": cfg.model, "max_tokens": cfg.max_tokens, "messages": messages,
    });
    if !c.system.is_empty() {
        body["system"] = serde_json::json!(&*c.system);
    }
    match cfg.thinking_budget {
        // Extended thinking fixes the temperature; the budget must stay below max_tokens.
        Some(b) => {
            body["thinking"] = serde_json::json!({"type": "enabled", "budget_tokens": b});
        }
        None if caps::lookup(&cfg.model).temperature => {
            body["temperature"] = serde_json::json!(c.temperature.min(1.0));
        }
        None => {}
    }
    body
}

/// Parses an Anthropic Messages response: text blocks joined, thinking blocks dropped.
pub fn parse_anthropic(v: &Value, cfg: &ProviderConfig) -> Result<Completion, Failure> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no `content` array in the response"))?;
    let text = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("");
    let u = v.get("usage");
    let n = |k: &str| {
        u.and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(Completion {
        text,
        usage: Usage {
            prompt_tokens: n("input_tokens"),
            completion_tokens: n("output_tokens"),
        },
        provider: "anthropic".into(),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(&cfg.model)
            .chars()
            .take(200)
            .collect(),
    })
}

pub(crate) fn malformed(msg: &str) -> Failure {
    Failure {
        kind: "malformed".into(),
        message: msg.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ChatRequest {
        ChatRequest::new(
            "k".into(),
            Conversation::new("sys".into(), vec![Message::user("hi")], 0.4),
        )
    }

    #[test]
    fn the_streamed_hash_is_the_hash_of_the_request_json() {
        for temperature in [0.4, 1.0, 0.7] {
            let r = ChatRequest::new(
                "k".into(),
                Conversation::new(
                    "sys \"quoted\"\n".into(),
                    vec![Message::user("hi ü"), Message::assistant("a\tb")],
                    temperature,
                ),
            );
            let c = &r.conv;
            let v = serde_json::json!({
                "system": &*c.system, "messages": c.messages, "temperature": c.temperature,
            });
            assert_eq!(r.request_hash(), crate::util::sha256_hex(&v.to_string()));
        }
    }

    #[test]
    fn bodies_follow_the_capability_table() {
        let mut cfg = ProviderConfig {
            model: "gpt-4o".into(),
            ..ProviderConfig::default()
        };
        let b = openai_body(&cfg, &req());
        assert_eq!(b["temperature"], 0.4);
        assert_eq!(b["max_tokens"], 4096);
        assert_eq!(b["messages"][0]["role"], "system");
        cfg.model = "o3-mini".into();
        let b = openai_body(&cfg, &req());
        assert!(b.get("temperature").is_none());
        assert_eq!(b["max_completion_tokens"], 4096);
        assert_eq!(b["messages"][0]["role"], "developer");
        cfg.model = "claude-sonnet-4".into();
        cfg.thinking_budget = Some(1024);
        let a = anthropic_body(&cfg, &req());
        assert!(a.get("temperature").is_none());
        assert_eq!(a["thinking"]["budget_tokens"], 1024);
        assert_eq!(a["system"], "sys");
    }

    #[test]
    fn parses_and_rejects() {
        let cfg = ProviderConfig::default();
        let ok = serde_json::json!({"choices":[{"message":{"content":"<think>hm</think>answer"}}],"usage":{"prompt_tokens":3,"completion_tokens":4}});
        let c = parse_openai(&ok, &cfg).unwrap();
        assert_eq!(c.text, "answer");
        assert_eq!(c.usage.completion_tokens, 4);
        assert_eq!(
            parse_openai(&serde_json::json!({"x":1}), &cfg)
                .unwrap_err()
                .kind,
            "malformed"
        );
        let an = serde_json::json!({"content":[{"type":"thinking","thinking":"..."},{"type":"text","text":"A"}],"usage":{"input_tokens":1,"output_tokens":2}});
        assert_eq!(parse_anthropic(&an, &cfg).unwrap().text, "A");
        assert!(parse_anthropic(&serde_json::json!({"content":"x"}), &cfg).is_err());
    }
}
