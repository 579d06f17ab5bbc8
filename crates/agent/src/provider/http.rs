//! The HTTP client shared by the OpenAI-compatible and Anthropic backends: timeouts, retries
//! with jittered exponential backoff on 429 / 5xx / connection errors / truncated or malformed
//! bodies (honouring `retry-after`), and a bound on the response size.

use std::time::Duration;

use serde_json::Value;

use super::{CallError, ChatRequest, Completion, Failure, Stats};
use crate::config::{ProviderConfig, ProviderKind};

pub struct HttpClient {
    client: reqwest::Client,
    key: Option<String>,
}

/// Installs the rustls crypto provider once per process (reqwest is built without one).
fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means another part of the process installed one already: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// One attempt's outcome.
enum Attempt {
    Done(Value),
    Retry(Failure, Option<Duration>),
    Fail(Failure),
}

impl HttpClient {
    pub fn new(cfg: &ProviderConfig) -> Result<HttpClient, String> {
        install_crypto();
        let client = reqwest::Client::builder()
            .timeout(secs(cfg.timeout_s))
            .connect_timeout(secs(cfg.connect_timeout_s))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let key = std::env::var(cfg.key_env()).ok().filter(|k| !k.is_empty());
        Ok(HttpClient { client, key })
    }

    pub async fn complete(
        &self,
        cfg: &ProviderConfig,
        req: &ChatRequest,
        stats: &Stats,
    ) -> Result<Completion, CallError> {
        let base = cfg.base_url_or_default();
        let url = match cfg.kind {
            ProviderKind::Anthropic => format!("{base}/messages"),
            _ => format!("{base}/chat/completions"),
        };
        // Serialized once per conversation: its k samples send the same bytes.
        let body = req.conv.wire(|| {
            let v = match cfg.kind {
                ProviderKind::Anthropic => super::anthropic_body(cfg, req),
                _ => super::openai_body(cfg, req),
            };
            // A `Value` always serializes.
            serde_json::to_vec(&v).unwrap_or_default()
        });
        let mut attempt = 0u32;
        loop {
            let outcome = self.attempt(cfg, &url, body.clone()).await;
            let outcome = match outcome {
                Attempt::Done(v) => {
                    let parsed = match cfg.kind {
                        ProviderKind::Anthropic => super::parse_anthropic(&v, cfg),
                        _ => super::parse_openai(&v, cfg),
                    };
                    match parsed {
                        Ok(c) => return Ok(c),
                        Err(f) => Attempt::Retry(f, None),
                    }
                }
                other => other,
            };
            match outcome {
                Attempt::Done(_) => {}
                Attempt::Fail(f) => return Err(CallError::Failed(f)),
                Attempt::Retry(f, after) => {
                    stats.bump(&f.kind);
                    if attempt >= cfg.max_retries {
                        return Err(CallError::Failed(f));
                    }
                    let backoff = cfg.backoff_base_s
                        * f64::from(1u32 << attempt.min(16))
                        * crate::util::jitter();
                    let wait = match after {
                        Some(a) => a.min(secs(cfg.retry_after_max_s)),
                        None => secs(backoff.min(cfg.backoff_max_s)),
                    };
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn attempt(&self, cfg: &ProviderConfig, url: &str, body: bytes::Bytes) -> Attempt {
        let mut rb = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(k) = &self.key {
            rb = match cfg.kind {
                ProviderKind::Anthropic => rb.header("x-api-key", k),
                _ => rb.bearer_auth(k),
            };
        }
        if cfg.kind == ProviderKind::Anthropic {
            rb = rb.header("anthropic-version", "2023-06-01");
        }
        let mut resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(transport_failure(&e), None),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        // Read the body in chunks so a huge or endless body is cut off at the bound.
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    if bytes.len() + c.len() > cfg.max_response_bytes {
                        let f = Failure {
                            kind: "too_large".into(),
                            message: format!(
                                "response body larger than {} bytes",
                                cfg.max_response_bytes
                            ),
                        };
                        return Attempt::Fail(f);
                    }
                    bytes.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => {
                    let f = if e.is_timeout() {
                        fail("timeout", &format!("reading the response timed out: {e}"))
                    } else {
                        fail("truncated", &format!("the response body broke off: {e}"))
                    };
                    return Attempt::Retry(f, None);
                }
            }
        }
        let snippet = || crate::util::truncate(&String::from_utf8_lossy(&bytes), 300).to_string();
        if status.as_u16() == 429 {
            return Attempt::Retry(
                fail("http_429", &format!("429 rate limited: {}", snippet())),
                retry_after,
            );
        }
        if status.is_server_error() {
            let f = fail("http_5xx", &format!("{status}: {}", snippet()));
            return Attempt::Retry(f, retry_after);
        }
        if !status.is_success() {
            return Attempt::Fail(fail("http_4xx", &format!("{status}: {}", snippet())));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => Attempt::Done(v),
            Err(e) => Attempt::Retry(
                fail(
                    "malformed",
                    &format!("the response is not JSON ({e}): {}", snippet()),
                ),
                None,
            ),
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() && s > 0.0 {
        s.min(86_400.0)
    } else {
        0.0
    })
}

fn fail(kind: &str, message: &str) -> Failure {
    Failure {
        kind: kind.into(),
        message: message.into(),
    }
}

fn transport_failure(e: &reqwest::Error) -> Failure {
    if e.is_timeout() {
        fail("timeout", &format!("request timed out: {e}"))
    } else {
        fail("connection", &format!("connection failed: {e}"))
    }
}
