//! `stepforge lsp` over stdio, as an editor drives it: diagnostics with UTF-16 ranges, the Copy
//! code action, hover, definition, completion, inlay hints, edits, a 10,000-line file, and a slow
//! verify that must not stall hover, and `$/cancelRequest`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use super::client::{Client, Framing};
use super::{CONSUME_TWICE, RMS_TASK, SPLIT_TASK, root, temp_dir};

fn start() -> Client {
    let mut c = Client::spawn(&["lsp"], Framing::ContentLength);
    let init = c.call(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {}}),
    );
    let caps = &init["result"]["capabilities"];
    assert_eq!(caps["positionEncoding"], "utf-16", "{init}");
    assert_eq!(caps["hoverProvider"], true);
    c.notify("initialized", json!({}));
    c
}

fn shutdown(mut c: Client) {
    let r = c.call("shutdown", Value::Null);
    assert_eq!(r["result"], Value::Null);
    c.notify("exit", Value::Null);
    assert!(c.close().success());
}

fn uri(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// Writes `text` as a `.step` program next to nothing, pointing at `task` by a first-line comment.
fn program_file(tag: &str, task: &str, body: &str) -> (PathBuf, String) {
    let dir = temp_dir(tag);
    let p = dir.join("kernel.step");
    let text = format!("# task: {}\n{body}", root().join(task).display());
    std::fs::write(&p, &text).unwrap();
    (p, text)
}

fn open(c: &mut Client, uri: &str, text: &str) {
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "step", "version": 1, "text": text}}),
    );
}

/// The next publishDiagnostics for `uri` at `version`.
fn diagnostics(c: &mut Client, uri: &str, version: i64) -> (Instant, Vec<Value>) {
    let (t, m) = c.wait_for("publishDiagnostics", |m| {
        m["method"] == "textDocument/publishDiagnostics"
            && m["params"]["uri"] == uri
            && m["params"]["version"] == version
    });
    (t, m["params"]["diagnostics"].as_array().unwrap().clone())
}

/// Applies LSP text edits (UTF-16 positions) to `text`, independently of the server's code.
fn apply_edits(text: &str, edits: &[Value]) -> String {
    let offset = |pos: &Value| -> usize {
        let (line, ch) = (
            pos["line"].as_u64().unwrap() as usize,
            pos["character"].as_u64().unwrap() as usize,
        );
        let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
        let mut units = 0;
        for (i, c) in text[start..].char_indices() {
            if units >= ch || c == '\n' {
                return start + i;
            }
            units += c.len_utf16();
        }
        text.len()
    };
    let mut spans: Vec<(usize, usize, &str)> = edits
        .iter()
        .map(|e| {
            (
                offset(&e["range"]["start"]),
                offset(&e["range"]["end"]),
                e["newText"].as_str().unwrap(),
            )
        })
        .collect();
    spans.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut out = text.to_string();
    for (lo, hi, t) in spans {
        out.replace_range(lo..hi, t);
    }
    out
}

/// The range of `len` UTF-16 units starting `skip` units after the first `needle` (same line).
fn range_after(text: &str, needle: &str, skip: u64, len: u64) -> Value {
    let p = pos_of(text, needle, 0);
    let ch = p["character"].as_u64().unwrap() + skip;
    json!({"start": {"line": p["line"], "character": ch}, "end": {"line": p["line"], "character": ch + len}})
}

fn pos_of(text: &str, needle: &str, nth: usize) -> Value {
    let at = text.match_indices(needle).nth(nth).unwrap().0;
    let line = text[..at].matches('\n').count();
    let col: usize = text[text[..at].rfind('\n').map_or(0, |i| i + 1)..at]
        .chars()
        .map(char::len_utf16)
        .sum();
    json!({"line": line, "character": col})
}

#[test]
fn diagnostics_code_action_hover_definition_and_edits() {
    let mut c = start();
    let (path, text) = program_file("main", SPLIT_TASK, CONSUME_TWICE);
    let u = uri(&path);
    open(&mut c, &u, &text);
    let (_, diags) = diagnostics(&mut c, &u, 1);
    let e = diags
        .iter()
        .find(|d| d["code"] == "E0401")
        .unwrap_or_else(|| panic!("{diags:?}"));
    // `S` in `.apply(S)` on line 9 (0-based 8, after the task comment).
    assert_eq!(e["range"], range_after(&text, "apply(S)", 6, 1));
    assert_eq!(e["severity"], 1);
    assert_eq!(e["source"], "stepforge");
    let related = e["relatedInformation"].as_array().unwrap();
    assert!(
        related
            .iter()
            .any(|r| r["message"].as_str().unwrap().contains("first consumed")),
        "{e}"
    );

    // Code action: the Copy insertion, applied, clears the diagnostics.
    let r = c.call(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": u}, "range": e["range"], "context": {"diagnostics": [e]}}),
    );
    let actions = r["result"].as_array().unwrap();
    let fix = actions
        .iter()
        .find(|a| a["kind"] == "quickfix" && a["isPreferred"] == true)
        .unwrap_or_else(|| panic!("{r}"));
    let edits = fix["edit"]["changes"][&u].as_array().unwrap();
    let fixed = apply_edits(&text, edits);
    assert!(fixed.contains("step.Copy().apply(S)"), "{fixed}");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 2}, "contentChanges": [{"text": fixed}]}),
    );
    let (_, diags) = diagnostics(&mut c, &u, 2);
    assert!(diags.is_empty(), "{diags:?}");

    // Hover over a stream and over an op.
    let h = c.call(
        "textDocument/hover",
        json!({"textDocument": {"uri": u}, "position": pos_of(&fixed, "SV =", 0)}),
    );
    let v = h["result"]["contents"]["value"].as_str().unwrap();
    assert!(
        v.contains("**SV**") && v.contains("[N, M]") && v.contains("consumed on line"),
        "{v}"
    );
    let mut p = pos_of(&fixed, "Accum", 0);
    p["character"] = json!(p["character"].as_u64().unwrap() + 1);
    let h = c.call(
        "textDocument/hover",
        json!({"textDocument": {"uri": u}, "position": p}),
    );
    let v = h["result"]["contents"]["value"].as_str().unwrap();
    assert!(
        v.contains("step.Accum(fn=…, b=…)") && v.contains("S[b:]"),
        "{v}"
    );

    // Definition: a stream (in the program), an element function and a task input (in the task).
    let sv_use = range_after(&fixed, "(SV)", 1, 2)["start"].clone();
    let d = c.call(
        "textDocument/definition",
        json!({"textDocument": {"uri": u}, "position": sv_use}),
    );
    let d = d["result"].clone();
    assert_eq!(d["uri"], u);
    assert_eq!(d["range"]["start"], pos_of(&fixed, "SV =", 0));
    let task_uri = uri(&root().join(SPLIT_TASK));
    let task_text = std::fs::read_to_string(root().join(SPLIT_TASK)).unwrap();
    let d = c.call(
        "textDocument/definition",
        json!({"textDocument": {"uri": u}, "position": pos_of(&fixed, "fn_score", 0)}),
    );
    assert_eq!(d["result"]["uri"], task_uri);
    assert_eq!(
        d["result"]["range"]["start"],
        pos_of(&task_text, "fn_score", 0)
    );
    let q = range_after(&fixed, "apply(Q)", 6, 1)["start"].clone();
    let d = c.call(
        "textDocument/definition",
        json!({"textDocument": {"uri": u}, "position": q}),
    );
    assert_eq!(d["result"]["uri"], task_uri, "{d}");
    assert_eq!(
        d["result"]["range"]["start"]["line"],
        pos_of(&task_text, "name: Q", 0)["line"]
    );

    // Completion: ops after `step.`, task functions after `fn=`.
    // Typed on a new line before `return O`.
    let line = fixed.lines().position(|l| l.starts_with("return")).unwrap();
    let edit = "X2 = step.";
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 3}, "contentChanges": [{"range": {"start": {"line": line, "character": 0}, "end": {"line": line, "character": 0}}, "text": format!("{edit}\n")}]}),
    );
    let r = c.call(
        "textDocument/completion",
        json!({"textDocument": {"uri": u}, "position": {"line": line, "character": edit.len()}}),
    );
    let labels: Vec<&str> = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels.len(), 14, "{labels:?}");
    assert!(labels.contains(&"Bufferize"));
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 4}, "contentChanges": [{"range": {"start": {"line": line, "character": edit.len()}, "end": {"line": line, "character": edit.len()}}, "text": "Map(fn="}]}),
    );
    let r = c.call("textDocument/completion", json!({"textDocument": {"uri": u}, "position": {"line": line, "character": edit.len() + 7}}));
    let labels: Vec<&str> = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["fn_score", "fn_num", "fn_den", "fn_div"]);

    // didChange keeps diagnostics current: the half-typed line is now a syntax error.
    let (_, diags) = diagnostics(&mut c, &u, 4);
    assert!(
        diags.iter().any(|d| d["range"]["start"]["line"] == line),
        "{diags:?}"
    );

    shutdown(c);
}

#[test]
fn inlay_hints_and_utf16_columns() {
    let mut c = start();
    let body = "Xb = step.Bufferize(a=1).apply(X)\nYb = step.Map(fn=fn_rms).apply(Xb)\nY = step.Streamify().apply(Yb)\nreturn Y\n";
    let (path, text) = program_file("hints", RMS_TASK, body);
    let u = uri(&path);
    open(&mut c, &u, &text);
    let (_, diags) = diagnostics(&mut c, &u, 1);
    assert!(diags.is_empty(), "{diags:?}");
    let r = c.call(
        "textDocument/inlayHint",
        json!({"textDocument": {"uri": u}, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 9, "character": 0}}}),
    );
    let hints: Vec<(u64, String)> = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["position"]["line"].as_u64().unwrap(),
                h["label"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        hints,
        [
            (1, ": [N, M] Buffer(fp32, [D])".to_string()),
            (2, ": [N, M] Buffer(fp32, [D])".to_string()),
            (3, ": [D, N, M] fp32".to_string())
        ]
    );

    // An emoji is two UTF-16 units (and four bytes, one char): its range must span two units.
    let bad = text.replace("return Y", "Z = step.Streamify().apply(😀)\nreturn Y");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 2}, "contentChanges": [{"text": bad}]}),
    );
    let (_, diags) = diagnostics(&mut c, &u, 2);
    let line = bad.lines().count() - 2;
    let emoji = diags
        .iter()
        .find(|d| d["message"].as_str().unwrap().contains('😀'))
        .unwrap_or_else(|| panic!("{diags:?}"));
    let col = "Z = step.Streamify().apply(".encode_utf16().count() as u64;
    assert_eq!(
        emoji["range"],
        json!({"start": {"line": line, "character": col}, "end": {"line": line, "character": col + 2}})
    );
    shutdown(c);
}

#[test]
fn task_files_are_checked_in_place() {
    let mut c = start();
    let dir = temp_dir("task");
    let text = std::fs::read_to_string(root().join(SPLIT_TASK))
        .unwrap()
        .replace(
            "  S1, S2 = step.Copy().apply(S)                  # [N, M] fp32 x2\n",
            "",
        )
        .replace("(S1, Vb)", "(S, Vb)")
        .replace("apply(S2)", "apply(S)");
    let p = dir.join("split.yaml");
    std::fs::write(&p, &text).unwrap();
    let u = uri(&p);
    open(&mut c, &u, &text);
    let (_, diags) = diagnostics(&mut c, &u, 1);
    let e = diags
        .iter()
        .find(|d| d["code"] == "E0401")
        .unwrap_or_else(|| panic!("{diags:?}"));
    let s = pos_of(&text, "apply(S)", 0);
    assert_eq!(e["range"]["start"]["line"], s["line"]);
    assert_eq!(
        e["range"]["start"]["character"],
        s["character"].as_u64().unwrap() + 6
    );
    shutdown(c);
}

/// A program of `n` lines: a chain of Bufferize → Map → Streamify over rmsnorm's X.
pub fn long_program(n: usize) -> String {
    let mut s = String::from("S0 = step.Bufferize(a=1).apply(X)\n");
    let mut i = 0;
    while s.lines().count() + 4 < n {
        s.push_str(&format!(
            "M{i} = step.Map(fn=fn_rms).apply(S{i})\nT{i} = step.Streamify().apply(M{i})\nS{} = step.Bufferize(a=1).apply(T{i})\n",
            i + 1
        ));
        i += 1;
    }
    s.push_str(&format!(
        "Y0 = step.Map(fn=fn_rms).apply(S{i})\nY = step.Streamify().apply(Y0)\nreturn Y\n"
    ));
    s
}

#[test]
fn ten_thousand_lines_answer_after_a_change() {
    let mut c = start();
    let body = long_program(10_000);
    let (path, text) = program_file("long", RMS_TASK, &body);
    assert!(text.lines().count() >= 9_990);
    let u = uri(&path);
    open(&mut c, &u, &text);
    let (_, diags) = diagnostics(&mut c, &u, 1);
    assert!(diags.is_empty(), "{:?}", &diags[..diags.len().min(3)]);
    // Rename one use: an undefined-name error (E0201) appears at that line.
    let at = pos_of(&text, "apply(S1600)", 0);
    let mut times = Vec::new();
    for version in 2..7 {
        let start = json!({"line": at["line"], "character": at["character"].as_u64().unwrap() + 6});
        let end = json!({"line": at["line"], "character": at["character"].as_u64().unwrap() + 11});
        let name = if version % 2 == 0 { "Q1600" } else { "S1600" };
        let sent = Instant::now();
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": u, "version": version}, "contentChanges": [{"range": {"start": start, "end": end}, "text": name}]}),
        );
        let (t, diags) = diagnostics(&mut c, &u, version);
        times.push(t - sent);
        if version % 2 == 0 {
            assert!(
                diags
                    .iter()
                    .any(|d| d["code"] == "E0201" && d["range"]["start"]["line"] == at["line"]),
                "{diags:?}"
            );
        } else {
            assert!(diags.is_empty());
        }
    }
    times.sort();
    // The 100 ms target is measured (release) by `cargo bench -p stepforge-servers`; here the
    // number is reported, not asserted (debug build, shared machine).
    eprintln!(
        "lsp: 10,000-line change → diagnostics: median {:?}, max {:?} (debug build)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
    shutdown(c);
}

#[test]
fn a_long_verify_does_not_stall_hover() {
    let mut c = start();
    let body = "Xb = step.Bufferize(a=1).apply(X)\nYb = step.Map(fn=fn_rms).apply(Xb)\nY = step.Streamify().apply(Yb)\nreturn Y\n";
    let (path, text) = program_file("slow", RMS_TASK, body);
    let u = uri(&path);
    open(&mut c, &u, &text);
    diagnostics(&mut c, &u, 1);
    let sent = Instant::now();
    let slow = c.request(
        "workspace/executeCommand",
        json!({"command": "stepforge.verify", "arguments": [{"uri": u, "dims": {"D": 128, "N": 128, "M": 128}, "seeds": 2, "time_limit_ms": 4000}]}),
    );
    let hover = c.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": u}, "position": pos_of(&text, "Yb =", 0)}),
    );
    let (t_hover, h) = c.response_at(hover);
    let (t_slow, v) = c.response_at(slow);
    assert!(
        h["result"]["contents"]["value"]
            .as_str()
            .unwrap()
            .contains("**Yb**")
    );
    assert!(v["result"]["verdict"].is_string(), "{v}");
    assert!(t_hover < t_slow, "hover waited for the verify");
    eprintln!(
        "lsp: hover answered after {:?}, verify after {:?}",
        t_hover - sent,
        t_slow - sent
    );
    // A small verify of the same document passes.
    let r = c.call(
        "workspace/executeCommand",
        json!({"command": "stepforge.verify", "arguments": [{"uri": u, "seeds": 1}]}),
    );
    assert_eq!(r["result"]["verdict"], "pass", "{r}");
    shutdown(c);
}

#[test]
fn a_cancelled_request_is_answered_with_request_cancelled() {
    let mut c = start();
    let body = "Xb = step.Bufferize(a=1).apply(X)\nYb = step.Map(fn=fn_rms).apply(Xb)\nY = step.Streamify().apply(Yb)\nreturn Y\n";
    let (path, text) = program_file("cancel", RMS_TASK, body);
    let u = uri(&path);
    open(&mut c, &u, &text);
    diagnostics(&mut c, &u, 1);
    // Occupy the four workers with slow verifies; a hover queued behind them is cancelled.
    let slow: Vec<i64> = (0..4)
        .map(|_| {
            c.request(
                "workspace/executeCommand",
                json!({"command": "stepforge.verify", "arguments": [{"uri": u, "dims": {"D": 128, "N": 128, "M": 64}, "seeds": 1, "time_limit_ms": 3000}]}),
            )
        })
        .collect();
    let hover = c.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": u}, "position": pos_of(&text, "Yb =", 0)}),
    );
    c.notify("$/cancelRequest", json!({"id": hover}));
    let r = c.response(hover);
    assert_eq!(r["error"]["code"], -32800, "{r}");
    for id in slow {
        assert!(c.response(id)["result"]["verdict"].is_string());
    }
    // The same hover, not cancelled, is answered.
    let r = c.call(
        "textDocument/hover",
        json!({"textDocument": {"uri": u}, "position": pos_of(&text, "Yb =", 0)}),
    );
    assert!(r["result"]["contents"]["value"].is_string(), "{r}");
    shutdown(c);
}
