//! Minimal protocol clients over a child process: newline-delimited JSON (MCP) and
//! `Content-Length` framing (LSP). A reader thread queues every incoming message with its
//! arrival time; `wait_*` picks the one wanted and keeps the rest.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Lines,
    ContentLength,
}

pub struct Client {
    pub child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<(Instant, Value)>,
    /// Messages received but not yet asked for, with their arrival time.
    pub backlog: Vec<(Instant, Value)>,
    framing: Framing,
    next_id: i64,
}

impl Client {
    pub fn spawn(args: &[&str], framing: Framing) -> Client {
        let mut child = Command::new(super::bin())
            .args(args)
            .current_dir(super::root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stepforge");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let msg = match framing {
                    Framing::Lines => {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        serde_json::from_str::<Value>(&line).expect("server wrote a non-JSON line")
                    }
                    Framing::ContentLength => {
                        let mut len = 0usize;
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim();
                            if h.is_empty() {
                                break;
                            }
                            if let Some(v) = h.strip_prefix("Content-Length:") {
                                len = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).unwrap();
                        serde_json::from_slice(&body).unwrap()
                    }
                };
                if tx.send((Instant::now(), msg)).is_err() {
                    return;
                }
            }
        });
        Client {
            child,
            stdin,
            rx,
            backlog: Vec::new(),
            framing,
            next_id: 0,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }

    pub fn send(&mut self, msg: &Value) {
        let body = msg.to_string();
        match self.framing {
            Framing::Lines => self.send_raw(format!("{body}\n").as_bytes()),
            Framing::ContentLength => {
                self.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes())
            }
        }
    }

    /// Sends a request; returns its id.
    pub fn request(&mut self, method: &str, params: Value) -> i64 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// The first message satisfying `pred`, with its arrival time.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> (Instant, Value) {
        if let Some(i) = self.backlog.iter().position(|(_, m)| pred(m)) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok((t, m)) if pred(&m) => return (t, m),
                Ok(other) => self.backlog.push(other),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for {what}; got {:?}", self.backlog)
                }
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "server exited while waiting for {what}; got {:?}",
                    self.backlog
                ),
            }
        }
    }

    /// The response to request `id`.
    pub fn response(&mut self, id: i64) -> Value {
        self.response_at(id).1
    }

    pub fn response_at(&mut self, id: i64) -> (Instant, Value) {
        self.wait_for(&format!("the response to {id}"), |m| {
            m["id"] == json!(id) && m.get("method").is_none()
        })
    }

    /// The response to `id` if one arrived by now (waiting briefly for stragglers), without
    /// failing when none did.
    pub fn seen(&mut self, id: i64) -> Option<Value> {
        while let Ok(m) = self.rx.recv_timeout(Duration::from_millis(300)) {
            self.backlog.push(m);
        }
        self.backlog
            .iter()
            .find(|(_, m)| m["id"] == json!(id) && m.get("method").is_none())
            .map(|(_, m)| m.clone())
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params);
        self.response(id)
    }

    /// Closes stdin and waits for the process to exit.
    pub fn close(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after stdin closed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
