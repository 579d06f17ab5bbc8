//! LSP base protocol over stdio (`Content-Length` framing) with bounds. `lsp-server`'s own stdio
//! transport allocates whatever `Content-Length` says and stops the server on the first
//! malformed message; this one skips an over-long or malformed message (without buffering it)
//! and keeps serving. It produces an ordinary `lsp_server::Connection`.

use std::io::{self, BufRead, Read, Write};
use std::thread;

use crossbeam_channel::{Sender, unbounded};
use lsp_server::{Connection, Message};

/// The largest message body accepted (a 10,000-line program is well under 1 MiB).
pub const MAX_MESSAGE: usize = 32 << 20;
/// The longest header line.
const MAX_HEADER: usize = 1024;

/// A connection over the process's stdin/stdout, and the threads to join at the end.
pub fn stdio() -> (Connection, IoThreads) {
    connect(io::BufReader::new(io::stdin()), io::stdout())
}

/// A connection over any reader/writer pair (stdio in production, pipes in tests).
pub fn connect(
    input: impl BufRead + Send + 'static,
    output: impl Write + Send + 'static,
) -> (Connection, IoThreads) {
    let (in_tx, in_rx) = unbounded::<Message>();
    let (out_tx, out_rx) = unbounded::<Message>();
    let reader = thread::spawn(move || read_loop(input, &in_tx));
    let writer = thread::spawn(move || {
        let mut out = output;
        for msg in out_rx {
            msg.write(&mut out)?;
        }
        Ok(())
    });
    (
        Connection {
            sender: out_tx,
            receiver: in_rx,
        },
        IoThreads { reader, writer },
    )
}

#[derive(Debug)]
pub struct IoThreads {
    reader: thread::JoinHandle<io::Result<()>>,
    writer: thread::JoinHandle<io::Result<()>>,
}

impl IoThreads {
    /// Waits for the writer to flush everything (call after dropping the connection). The
    /// reader may still be blocked on stdin; it is not waited for.
    pub fn join(self) -> io::Result<()> {
        drop(self.reader);
        self.writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the LSP writer thread panicked")))
    }
}

fn read_loop(mut input: impl BufRead, tx: &Sender<Message>) -> io::Result<()> {
    loop {
        let Some(len) = read_header(&mut input)? else {
            return Ok(());
        };
        let Some(len) = len.filter(|l| *l <= MAX_MESSAGE) else {
            // Unknown or excessive length: skip what we can (a known length) and go on.
            if let Some(l) = len {
                io::copy(&mut (&mut input).take(l as u64), &mut io::sink())?;
            }
            continue;
        };
        let mut body = vec![0u8; len];
        input.read_exact(&mut body)?;
        let Ok(msg) = serde_json::from_slice::<Message>(&body) else {
            continue;
        };
        let exit = matches!(&msg, Message::Notification(n) if n.method == "exit");
        if tx.send(msg).is_err() || exit {
            return Ok(());
        }
    }
}

/// Reads one header block. `Ok(None)` at EOF; `Ok(Some(None))` when it had no valid length.
fn read_header(input: &mut impl BufRead) -> io::Result<Option<Option<usize>>> {
    let mut len = None;
    let mut any = false;
    loop {
        let mut line = Vec::new();
        let n = (&mut *input)
            .take(MAX_HEADER as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(if any { Some(len) } else { None });
        }
        any = true;
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return Ok(Some(len));
        }
        if let Some((k, v)) = text.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse::<usize>().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn skips_bad_messages_and_keeps_reading() {
        let good = r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#;
        let input = format!(
            "{}Content-Length: 999999999999\r\n\r\n{}{}",
            frame("{not json"),
            frame(good),
            frame(good)
        );
        let (tx, rx) = unbounded();
        // A huge length skips its body (here: everything after it); the malformed message
        // before it is dropped without stopping the reader.
        let _ = read_loop(io::Cursor::new(input.into_bytes()), &tx);
        let got: Vec<Message> = rx.try_iter().collect();
        assert_eq!(got.len(), 0, "the bad length swallowed the rest: {got:?}");
        let input = format!("{}{}", frame("{not json"), frame(good));
        let _ = read_loop(io::Cursor::new(input.into_bytes()), &tx);
        assert_eq!(rx.try_iter().count(), 1);
    }
}
