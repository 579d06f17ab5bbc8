//! Workspace-level integration tests: the whole toolchain (loader → parser → checker →
//! executor → verification) over the operator library (`operators/`), the sample tasks
//! (`tests/tasks/`) and the known-wrong programs (`operators/wrong/`), through the library API.
//! CLI end-to-end tests live beside the binary, in `crates/cli/tests/`.
// Tests and benches may unwrap: a failure there is a test failure, not a user-facing panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod operators;
mod wrong;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stepforge_exec::VerifyReport;
use stepforge_task::Task;

/// The workspace root (this package sits in its `tests/` directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A path relative to the workspace root, with `/` separators (stable in snapshots).
pub fn rel(path: &Path) -> String {
    let r = path.strip_prefix(root()).unwrap_or(path);
    r.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// Files directly in `dir` with extension `ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    out.sort();
    out
}

/// The operator library: group name → its task files, sorted (the `wrong/` directory holds
/// programs, not tasks).
pub fn operator_groups() -> BTreeMap<String, Vec<PathBuf>> {
    let dir = root().join("operators");
    let mut groups = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "wrong" {
            continue;
        }
        groups.insert(name, files_with_ext(&path, "yaml"));
    }
    groups
}

/// The sample tasks of `tests/tasks/`.
pub fn sample_tasks() -> Vec<PathBuf> {
    files_with_ext(&root().join("tests/tasks"), "yaml")
}

/// Loads a task file that must load without errors.
pub fn load_task(path: &Path) -> Task {
    let loaded = stepforge_task::load_file(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let rendered: String = loaded
        .diagnostics
        .iter()
        .map(|d| d.render_human(&loaded.source, false))
        .collect();
    assert!(
        !loaded.has_errors(),
        "{} does not load:\n{rendered}",
        rel(path)
    );
    loaded
        .task
        .unwrap_or_else(|| panic!("{} built no task:\n{rendered}", rel(path)))
}

/// Every diagnostic of a report, rendered without colour (for assertion messages).
pub fn rendered(r: &VerifyReport) -> String {
    r.render_human(false)
}
