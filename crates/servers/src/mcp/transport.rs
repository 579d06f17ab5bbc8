//! The MCP stdio transport: newline-delimited JSON-RPC 2.0 messages. Lines are read with a
//! hard size bound (an over-long line is skipped without being buffered, and reported), and
//! replies are written one line at a time under a lock so concurrent workers never interleave.

use std::io::{self, BufRead, Write};
use std::sync::{Arc, Mutex};

/// One line read from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(String),
    /// The line exceeded the bound; its bytes were discarded.
    TooLong(usize),
    /// Not UTF-8.
    Invalid,
}

/// Reads the next line (without its newline), at most `max` bytes of it kept. `None` at EOF.
pub fn read_line(input: &mut impl BufRead, max: usize) -> io::Result<Option<Line>> {
    let mut buf = Vec::new();
    let mut total = 0usize;
    let mut saw_any = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            if !saw_any {
                return Ok(None);
            }
            break;
        }
        saw_any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if total + take <= max {
            buf.extend_from_slice(&chunk[..take]);
        }
        total += take;
        input.consume(if done { take + 1 } else { take });
        if done {
            break;
        }
    }
    if total > max {
        return Ok(Some(Line::TooLong(total)));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(match String::from_utf8(buf) {
        Ok(s) => Line::Text(s),
        Err(_) => Line::Invalid,
    }))
}

/// The shared reply channel: one JSON value per line.
#[derive(Clone)]
pub struct Outgoing {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outgoing")
    }
}

impl Outgoing {
    pub fn new(w: impl Write + Send + 'static) -> Outgoing {
        Outgoing {
            out: Arc::new(Mutex::new(Box::new(w))),
        }
    }

    /// Writes one message. A closed output (the client went away) is not an error worth
    /// crashing for: the reader sees EOF next and the server stops.
    pub fn send(&self, msg: &serde_json::Value) {
        let mut line = msg.to_string();
        line.push('\n');
        let mut w = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.write_all(line.as_bytes()).and_then(|()| w.flush());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded() {
        let data = format!("short\r\n{}\nafter\nlast", "x".repeat(100));
        let mut r = io::BufReader::with_capacity(8, data.as_bytes());
        let mut got = Vec::new();
        while let Some(l) = read_line(&mut r, 10).ok().flatten() {
            got.push(l);
        }
        assert_eq!(
            got,
            vec![
                Line::Text("short".into()),
                Line::TooLong(100),
                Line::Text("after".into()),
                Line::Text("last".into())
            ]
        );
    }
}
