//! Every task file in the repository loads with zero errors, and its embedded reference program
//! parses.

use std::path::{Path, PathBuf};

use stepforge_task::{GenLimits, check_dims, dim_values, generate, load_file, parse_impl};

use crate::workspace_root;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn check_all(files: &[PathBuf]) {
    let mut failures = Vec::new();
    for path in files {
        let loaded = load_file(path).unwrap();
        let mut diags = loaded.diagnostics.clone();
        if let Some(task) = &loaded.task {
            if task.reference_impl.is_some() {
                diags.extend(parse_impl(task).diagnostics);
            }
            match dim_values(task, &[]) {
                Ok(dims) => {
                    diags.extend(check_dims(task, &dims));
                    if let Err(d) = generate(task, &dims, 1, &GenLimits::default()) {
                        diags.push(d);
                    }
                }
                Err(d) => diags.push(d),
            }
        } else {
            failures.push(format!("{}: no task built", path.display()));
        }
        for d in diags.iter().filter(|d| d.is_error()) {
            failures.push(d.render_human(&loaded.source, false));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The sample tasks under `tests/tasks/` and, once it exists, the operator library under
/// `operators/` (searched recursively).
#[test]
fn every_task_file_loads_without_errors() {
    let root = workspace_root();
    let mut files = Vec::new();
    yaml_files(&root.join("tests/tasks"), &mut files);
    assert!(!files.is_empty(), "no sample tasks found under tests/tasks");
    yaml_files(&root.join("operators"), &mut files);
    check_all(&files);
}
