//! MCP resources: the task files under the server's root, read-only, as `file://` URIs.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::Ctx;
use crate::text::{file_uri, uri_path};

/// Directory levels searched below a directory.
const MAX_DEPTH: usize = 8;
/// Task files listed at most (the listing says when it stopped early).
const MAX_FILES: usize = 2000;
/// The largest task file served.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// MCP's "resource not found" error code.
const NOT_FOUND: i64 = -32002;

pub fn is_task_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Task files under `dir`, sorted, and whether the bound cut the walk short. Hidden
/// directories and `target/` are skipped.
pub fn task_files(dir: &Path) -> (Vec<PathBuf>, bool) {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    let mut truncated = false;
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let name = entry.file_name();
            let hidden = name
                .to_str()
                .is_none_or(|n| n.starts_with('.') || n == "target");
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() && !hidden {
                if depth < MAX_DEPTH {
                    stack.push((p, depth + 1));
                }
            } else if ft.is_file() && is_task_file(&p) {
                if out.len() >= MAX_FILES {
                    truncated = true;
                    break;
                }
                out.push(p);
            }
        }
    }
    out.sort();
    (out, truncated)
}

pub fn list(ctx: &Ctx) -> Value {
    let (files, _) = task_files(&ctx.root);
    json!({"resources": files.iter().map(|f| json!({
        "uri": file_uri(f),
        "name": f.strip_prefix(&ctx.root).unwrap_or(f).display().to_string(),
        "mimeType": "application/yaml",
        "description": "A STeP task file",
    })).collect::<Vec<_>>()})
}

/// `resources/read`: only task files under the root are served.
pub fn read(ctx: &Ctx, params: &Value) -> Result<Value, (i64, String)> {
    let Some(u) = params.get("uri").and_then(Value::as_str) else {
        return Err((-32602, "resources/read needs a string `uri`".into()));
    };
    let not_found = || {
        (
            NOT_FOUND,
            format!(
                "no task file at `{}`",
                u.get(..u.len().min(200)).unwrap_or("")
            ),
        )
    };
    let path = uri_path(u).ok_or_else(not_found)?;
    let root = ctx.root.canonicalize().map_err(|_| not_found())?;
    let canon = path.canonicalize().map_err(|_| not_found())?;
    if !canon.starts_with(&root) || !is_task_file(&canon) {
        return Err(not_found());
    }
    let len = std::fs::metadata(&canon).map_err(|_| not_found())?.len();
    if len > MAX_FILE_BYTES {
        return Err((
            -32603,
            format!("the file is {len} bytes; the limit is {MAX_FILE_BYTES}"),
        ));
    }
    let text = std::fs::read_to_string(&canon).map_err(|_| not_found())?;
    Ok(json!({"contents": [{"uri": u, "mimeType": "application/yaml", "text": text}]}))
}
