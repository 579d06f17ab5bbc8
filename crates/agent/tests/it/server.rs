//! A loopback HTTP/1.1 server for the agent tests, on 127.0.0.1 only. It speaks the OpenAI
//! chat-completions and Anthropic Messages APIs well enough for the clients, and misbehaves on
//! purpose when the script says so. Every loop is bounded: header and body sizes, requests per
//! connection, and the server stops accepting when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

/// What the server does with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A well-formed completion carrying this text.
    Answer(String),
    /// A status with a raw body and an optional `retry-after`.
    Status(u16, String, Option<String>),
    /// Sleep this long, then answer (slower than the client's timeout).
    Slow(Duration, String),
    /// 200 with a body that is not JSON.
    Malformed,
    /// 200 whose body stops before its Content-Length.
    Truncated,
}

pub type Script = dyn Fn(Api, &Value, usize) -> Reply + Send + Sync;

#[derive(Default)]
pub struct Span(Mutex<(Option<Instant>, Option<Instant>)>);

impl Span {
    fn request(&self) {
        let mut s = self.0.lock().unwrap();
        s.0.get_or_insert_with(Instant::now);
    }
    fn replied(&self) {
        self.0.lock().unwrap().1 = Some(Instant::now());
    }
    /// Forgets what was recorded (between bench repetitions).
    pub fn reset(&self) {
        *self.0.lock().unwrap() = (None, None);
    }
    /// (first request, last reply), if any request was answered.
    pub fn get(&self) -> Option<(Instant, Instant)> {
        let s = self.0.lock().unwrap();
        s.0.zip(s.1)
    }
}

pub struct Server {
    pub base: String,
    pub requests: Arc<AtomicUsize>,
    /// When the first request arrived and the last reply was written (the bench tells the
    /// client's setup and teardown from its sampling this way).
    pub span: Arc<Span>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

const MAX_HEADER: usize = 64 << 10;
const MAX_BODY: usize = 32 << 20;
const MAX_REQUESTS_PER_CONN: usize = 10_000;

impl Server {
    /// Starts the server; `latency` is added to every answer.
    pub fn start(script: Arc<Script>, latency: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let span = Arc::new(Span::default());
        let (st, rq, sp) = (Arc::clone(&stop), Arc::clone(&requests), Arc::clone(&span));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (script, rq, st, sp) = (
                    Arc::clone(&script),
                    Arc::clone(&rq),
                    Arc::clone(&st),
                    Arc::clone(&sp),
                );
                std::thread::spawn(move || serve(conn, &*script, &rq, &sp, &st, latency));
            }
        });
        Server {
            base: format!("http://127.0.0.1:{port}/v1"),
            requests,
            span,
            stop,
            port,
        }
    }
}

fn serve(
    conn: TcpStream,
    script: &Script,
    count: &AtomicUsize,
    span: &Span,
    stop: &AtomicBool,
    latency: Duration,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    // Replies are written in one piece and without Nagle's algorithm: a reply split in two
    // writes (head, then body) held the body until the client's delayed ACK, 40 ms later,
    // which made every call ~91 ms instead of the configured 50 (measured by the overhead
    // bench's sequential probe).
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    for _ in 0..MAX_REQUESTS_PER_CONN {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // Request line and headers.
        let mut head = String::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            match reader.by_ref().take(MAX_HEADER as u64).read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if head.len() + line.len() > MAX_HEADER {
                return;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                content_length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        if content_length > MAX_BODY {
            return;
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let api = if head.starts_with("POST /v1/messages") {
            Api::Anthropic
        } else {
            Api::OpenAi
        };
        span.request();
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let n = count.fetch_add(1, Ordering::SeqCst);
        let reply = script(api, &req, n);
        std::thread::sleep(latency);
        let keep = match reply {
            Reply::Answer(text) => write_json(&mut out, 200, &completion(api, &text), None),
            Reply::Slow(d, text) => {
                std::thread::sleep(d);
                write_json(&mut out, 200, &completion(api, &text), None)
            }
            Reply::Status(code, raw, ra) => {
                write_raw(&mut out, code, raw.as_bytes(), ra.as_deref(), None)
            }
            Reply::Malformed => write_raw(
                &mut out,
                200,
                b"{\"choices\": [ this is not json",
                None,
                None,
            ),
            Reply::Truncated => {
                let full = completion(api, "never arrives").to_string();
                let _ = write_raw(
                    &mut out,
                    200,
                    &full.as_bytes()[..full.len() / 2],
                    None,
                    Some(full.len()),
                );
                false
            }
        };
        span.replied();
        if !keep {
            let _ = out.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// A completion body in the API's shape; tokens are counted as words so totals are exact.
pub fn completion(api: Api, text: &str) -> Value {
    let out_tokens = text.split_whitespace().count();
    match api {
        Api::OpenAi => json!({
            "id": "cmpl-1", "object": "chat.completion", "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": out_tokens, "total_tokens": 100 + out_tokens},
        }),
        Api::Anthropic => json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "scripted",
            "content": [{"type": "thinking", "thinking": "let me think"}, {"type": "text", "text": text}],
            "usage": {"input_tokens": 100, "output_tokens": out_tokens},
        }),
    }
}

fn write_json(out: &mut TcpStream, code: u16, v: &Value, ra: Option<&str>) -> bool {
    write_raw(out, code, v.to_string().as_bytes(), ra, None)
}

fn write_raw(
    out: &mut TcpStream,
    code: u16,
    body: &[u8],
    ra: Option<&str>,
    claimed_len: Option<usize>,
) -> bool {
    let reason = match code {
        200 => "OK",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        claimed_len.unwrap_or(body.len())
    );
    if let Some(ra) = ra {
        head.push_str(&format!("retry-after: {ra}\r\n"));
    }
    head.push_str("\r\n");
    let mut msg = head.into_bytes();
    msg.extend_from_slice(body);
    out.write_all(&msg).is_ok() && out.flush().is_ok()
}

/// The text of the first user message (the proposer prompt) of an API request.
pub fn first_user_text(req: &Value) -> String {
    req["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The task a proposer prompt is about: the last `test_name:` in it (the task comes last).
pub fn prompt_task(prompt: &str) -> String {
    prompt
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("test_name:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn has_demonstration(prompt: &str) -> bool {
    prompt.contains("## Demonstration")
}
