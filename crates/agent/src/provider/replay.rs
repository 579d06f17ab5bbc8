//! Transcripts: every live run appends one JSON line per finished call (answer or final
//! failure), keyed by the sample-turn key and the hash of the request. The replay provider
//! serves them back; a request whose key is missing or whose hash differs (the prompt changed)
//! stops the run with a clear error instead of silently diverging.

use std::collections::BTreeMap;
use std::io::{BufRead, Read, Write};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{CallError, ChatRequest, Completion, Failure, Usage};

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    pub request_sha: String,
    pub provider: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

/// Appends entries to a transcript file (one flushed line per call, so a killed run keeps
/// everything it was answered).
pub struct TranscriptWriter {
    file: Mutex<std::fs::File>,
    provider: String,
    model: String,
}

impl TranscriptWriter {
    pub fn open(path: &str, provider: &str, model: &str) -> Result<TranscriptWriter, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open transcript {path}: {e}"))?;
        Ok(TranscriptWriter {
            file: Mutex::new(file),
            provider: provider.into(),
            model: model.into(),
        })
    }

    pub fn record(&self, req: &ChatRequest, r: Result<&Completion, &Failure>) {
        let e = match r {
            Ok(c) => Entry {
                key: req.key.clone(),
                request_sha: req.request_hash(),
                provider: c.provider.clone(),
                model: c.model.clone(),
                text: Some(c.text.clone()),
                usage: c.usage,
                error: None,
            },
            Err(f) => Entry {
                key: req.key.clone(),
                request_sha: req.request_hash(),
                provider: self.provider.clone(),
                model: self.model.clone(),
                text: None,
                usage: Usage::default(),
                error: Some(f.clone()),
            },
        };
        if let (Ok(mut line), Ok(mut f)) = (serde_json::to_string(&e), self.file.lock()) {
            // One write per entry: the file is unbuffered, and a line must not be split.
            line.push('\n');
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// A loaded transcript. The last entry for a key wins (a call repeated after a kill).
#[derive(Debug, Default)]
pub struct ReplayBook {
    entries: BTreeMap<String, Entry>,
}

/// Longest transcript line accepted (one answer plus its metadata).
const MAX_LINE: usize = 16 << 20;

impl ReplayBook {
    pub fn load(path: &str) -> Result<ReplayBook, String> {
        let f =
            std::fs::File::open(path).map_err(|e| format!("cannot read transcript {path}: {e}"))?;
        let mut book = ReplayBook::default();
        let mut reader = std::io::BufReader::new(f);
        let mut line = String::new();
        let mut n = 0usize;
        loop {
            line.clear();
            let read = Read::by_ref(&mut reader)
                .take(MAX_LINE as u64 + 1)
                .read_line(&mut line)
                .map_err(|e| format!("{path}: {e}"))?;
            if read == 0 {
                break;
            }
            n += 1;
            if line.len() > MAX_LINE {
                return Err(format!("{path}:{n}: line longer than {MAX_LINE} bytes"));
            }
            if line.trim().is_empty() {
                continue;
            }
            let e: Entry = serde_json::from_str(&line)
                .map_err(|e| format!("{path}:{n}: not a transcript entry: {e}"))?;
            book.entries.insert(e.key.clone(), e);
        }
        Ok(book)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, req: &ChatRequest) -> Result<Completion, CallError> {
        let e = self.entries.get(&req.key).ok_or_else(|| {
            CallError::Fatal(format!(
                "the transcript has no answer for `{}`: it was recorded with other settings (tasks, samples, iterations) or is incomplete",
                req.key
            ))
        })?;
        if e.request_sha != req.request_hash() {
            return Err(CallError::Fatal(format!(
                "the transcript's answer for `{}` was given to a different prompt (the manual, demonstrations or task changed)",
                req.key
            )));
        }
        match (&e.text, &e.error) {
            (_, Some(f)) => Err(CallError::Failed(f.clone())),
            (Some(t), None) => Ok(Completion {
                text: t.clone(),
                usage: e.usage,
                provider: e.provider.clone(),
                model: e.model.clone(),
            }),
            (None, None) => Err(CallError::Fatal(format!(
                "the transcript entry for `{}` has neither text nor error",
                req.key
            ))),
        }
    }
}
