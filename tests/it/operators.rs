//! The operator library and the sample tasks, end to end through the library API: every task
//! verifies (pass and linear, 3 seeds), its reference impl checks clean, and removing its Copy
//! ops gives back exactly the documented `copies_needed`, which the checker's fix repairs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stepforge_driver::verify;
use stepforge_exec::{Verdict, VerifyOptions};
use stepforge_syntax::codes::Phase;
use stepforge_syntax::diag::apply_fixes;
use stepforge_task::Task;

use crate::{load_task, operator_groups, rel, rendered, root, sample_tasks};

/// DESIGN §15: 26 kernels in 8 groups.
const GROUPS: &[(&str, usize)] = &[
    ("attention", 3),
    ("bmm", 3),
    ("gemm", 3),
    ("moe-e2e", 4),
    ("moe-expert", 3),
    ("moe-index", 4),
    ("norm", 3),
    ("rope", 3),
];

fn all_operator_files() -> Vec<PathBuf> {
    operator_groups().into_values().flatten().collect()
}

#[test]
fn the_library_has_26_tasks_in_the_8_designed_groups() {
    let found: BTreeMap<String, usize> = operator_groups()
        .into_iter()
        .map(|(g, files)| (g, files.len()))
        .collect();
    let want: BTreeMap<String, usize> = GROUPS.iter().map(|&(g, n)| (g.to_string(), n)).collect();
    assert_eq!(found, want);
    assert_eq!(found.values().sum::<usize>(), 26);
    assert_eq!(sample_tasks().len(), 7);
}

#[test]
fn task_names_are_unique() {
    let mut seen = BTreeMap::new();
    for path in all_operator_files().into_iter().chain(sample_tasks()) {
        let t = load_task(&path);
        if let Some(prev) = seen.insert(t.name.clone(), rel(&path)) {
            panic!("task name {} used by {prev} and {}", t.name, rel(&path));
        }
    }
}

/// Verifies each file's reference impl on seeds 0, 1, 2; returns one line per failure.
fn verify_all(files: &[PathBuf]) -> Vec<String> {
    verify_all_with(files, &VerifyOptions::with_seed_count(3))
}

fn verify_all_with(files: &[PathBuf], opts: &VerifyOptions) -> Vec<String> {
    let mut failures = Vec::new();
    for path in files {
        let task = load_task(path);
        let r = verify(&task, None, opts);
        assert_eq!(r.seeds, opts.seeds, "{}", rel(path));
        if !(r.verdict == Verdict::Pass && r.linear == Some(true) && r.passed()) {
            failures.push(format!(
                "{}: verdict {}, linear {:?}\n{}",
                rel(path),
                r.verdict,
                r.linear,
                rendered(&r)
            ));
        }
        // a pass compared every output field on every seed
        let fields: usize = task.outputs.iter().map(|o| o.transforms.len()).sum();
        assert_eq!(r.outputs.len(), fields, "{}", rel(path));
        for o in &r.outputs {
            assert!(
                o.first_mismatch.is_none() && o.max_abs_err.is_some(),
                "{}: output {} {o:?}",
                rel(path),
                o.name
            );
        }
    }
    failures
}

#[test]
fn every_operator_passes_and_is_linear_on_3_seeds() {
    let files = all_operator_files();
    assert_eq!(files.len(), 26);
    let failures = verify_all(&files);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_sample_task_passes_and_is_linear_on_3_seeds() {
    let files = sample_tasks();
    assert_eq!(files.len(), 7);
    let failures = verify_all(&files);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Both READMEs promise more than the 3 default seeds: 50 seeds, and small dims.
#[test]
fn every_task_also_passes_on_50_seeds_and_at_small_dims() {
    let files: Vec<PathBuf> = all_operator_files()
        .into_iter()
        .chain(sample_tasks())
        .collect();
    let failures = verify_all_with(&files, &VerifyOptions::with_seed_count(50));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let small = VerifyOptions {
        dims: [("M", 3), ("N", 4), ("K", 5), ("D", 8)]
            .iter()
            .map(|&(k, v)| (k.to_string(), v))
            .collect(),
        ..VerifyOptions::with_seed_count(3)
    };
    let failures = verify_all_with(&files, &small);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_reference_impl_checks_clean_with_no_copies_needed() {
    let mut problems = Vec::new();
    for path in all_operator_files().into_iter().chain(sample_tasks()) {
        let task = load_task(&path);
        let out = stepforge_check::check_task(&task)
            .unwrap_or_else(|| panic!("{} has no reference impl", rel(&path)));
        let clean = out.ok
            && out.linear == Some(true)
            && out.linear_compat == Some(true)
            && out.copies_needed == 0
            && out.diagnostics.is_empty()
            && out.well_typed();
        if !clean {
            let diags: String = out
                .diagnostics
                .iter()
                .map(|d| d.render_human(&task.source, false))
                .collect();
            problems.push(format!(
                "{}: ok {}, linear {:?}, linear_compat {:?}, copies_needed {}\n{diags}",
                rel(&path),
                out.ok,
                out.linear,
                out.linear_compat,
                out.copies_needed
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// --- Copy stripping ------------------------------------------------------------------------

/// `A, B = step.Copy().apply(X)` → `(A, B, X)`.
fn parse_copy(code: &str) -> Option<(String, String, String)> {
    let (lhs, rhs) = code.split_once('=')?;
    let (a, b) = lhs.split_once(',')?;
    let rhs: String = rhs.chars().filter(|c| !c.is_whitespace()).collect();
    let x = rhs.strip_prefix("step.Copy().apply(")?.strip_suffix(')')?;
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.starts_with(|c: char| c.is_ascii_digit())
    };
    let (a, b) = (a.trim(), b.trim());
    (ident(a) && ident(b) && ident(x)).then(|| (a.to_string(), b.to_string(), x.to_string()))
}

/// Renames whole identifiers (not attributes after a `.`) through `alias`.
fn rename(code: &str, alias: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(code.len());
    let mut word = String::new();
    let mut prev = ' ';
    let flush = |word: &mut String, out: &mut String, after_dot: bool| {
        match alias.get(word.as_str()) {
            Some(to) if !after_dot => out.push_str(to),
            _ => out.push_str(word),
        }
        word.clear();
    };
    let mut word_after_dot = false;
    for c in code.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            if word.is_empty() {
                word_after_dot = prev == '.';
            }
            word.push(c);
        } else {
            flush(&mut word, &mut out, word_after_dot);
            out.push(c);
        }
        prev = c;
    }
    flush(&mut word, &mut out, word_after_dot);
    out
}

/// Removes every Copy op and renames the later uses back to the copied stream (through
/// chains); comments are dropped. Returns the program and the number of Copies removed.
fn strip_copies(program: &str) -> (String, usize) {
    let mut alias: BTreeMap<String, String> = BTreeMap::new();
    let mut out = String::new();
    let mut removed = 0;
    for line in program.lines() {
        let code = line.split('#').next().unwrap_or("").trim_end();
        if let Some((a, b, x)) = parse_copy(code) {
            let origin = alias.get(&x).cloned().unwrap_or(x);
            alias.insert(a, origin.clone());
            alias.insert(b, origin);
            removed += 1;
            continue;
        }
        out.push_str(&rename(code, &alias));
        out.push('\n');
    }
    (out, removed)
}

#[test]
fn strip_copies_renames_through_chains() {
    let p = "X1, X2 = step.Copy().apply(X)   # x2\nX3, X4 = step.Copy().apply(X2)\nY = step.Map(fn=fn_a).apply((X1, X3))\nZ = step.Streamify().apply(X4)\nreturn Y, Z\n";
    let (s, n) = strip_copies(p);
    assert_eq!(n, 2);
    assert_eq!(
        s,
        "Y = step.Map(fn=fn_a).apply((X, X))\nZ = step.Streamify().apply(X)\nreturn Y, Z\n"
    );
}

/// The `copies_needed` column of a README table: backticked file or kernel name → count.
/// `key_col` and `count_col` index the table's cells.
fn readme_counts(readme: &Path, key_col: usize, count_col: usize) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(readme).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let (Some(key), Some(count)) = (cells.get(key_col), cells.get(count_col)) else {
            continue;
        };
        let (Some(key), Ok(count)) = (
            key.strip_prefix('`').and_then(|k| k.strip_suffix('`')),
            count.parse::<usize>(),
        ) else {
            continue;
        };
        out.insert(key.to_string(), count);
    }
    out
}

/// Strips the Copies of `task`'s impl, checks that the checker asks for exactly `want`
/// Copies, applies its fixes and verifies the repaired program. Returns a problem, if any.
fn copies_round_trip(path: &Path, task: &Task, want: usize) -> Option<String> {
    let name = rel(path);
    let text = &task.reference_impl.as_ref()?.text;
    let (stripped, removed) = strip_copies(text);
    if removed != want {
        return Some(format!(
            "{name}: the impl has {removed} Copy ops, the README says {want}"
        ));
    }
    let (src, out) = stepforge_check::check_answer(task, &stripped);
    let diags: String = out
        .diagnostics
        .iter()
        .map(|d| d.render_human(&src, false))
        .collect();
    if out.copies_needed != want || !out.well_typed() || out.linear != Some(want == 0) {
        return Some(format!(
            "{name}: without Copies: copies_needed {} (want {want}), well typed {}, linear {:?}\n{stripped}\n{diags}",
            out.copies_needed,
            out.well_typed(),
            out.linear
        ));
    }
    if let Some(d) = out
        .diagnostics
        .iter()
        .find(|d| d.is_error() && d.code.phase() != Phase::Linearity)
    {
        return Some(format!(
            "{name}: without Copies, a non-linearity error {}: {}",
            d.code.as_str(),
            d.message
        ));
    }
    let fixed = apply_fixes(&stripped, &out.diagnostics, true);
    let (fsrc, fout) = stepforge_check::check_answer(task, &fixed);
    if !(fout.ok && fout.linear == Some(true) && fout.copies_needed == 0) {
        let diags: String = fout
            .diagnostics
            .iter()
            .map(|d| d.render_human(&fsrc, false))
            .collect();
        return Some(format!(
            "{name}: the fixed program does not check clean (linear {:?}, copies_needed {})\n{fixed}\n{diags}",
            fout.linear, fout.copies_needed
        ));
    }
    let r = verify(task, Some(&fixed), &VerifyOptions::with_seed_count(3));
    if !r.passed() {
        return Some(format!(
            "{name}: the fixed program verifies {} (linear {:?})\n{fixed}\n{}",
            r.verdict,
            r.linear,
            rendered(&r)
        ));
    }
    None
}

#[test]
fn sample_tasks_without_copies_need_the_documented_count_and_the_fix_repairs_them() {
    let counts = readme_counts(&root().join("tests/tasks/README.md"), 0, 2);
    let files = sample_tasks();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        counts.keys().cloned().collect::<Vec<_>>(),
        {
            let mut n = names.clone();
            n.sort();
            n
        },
        "the README table lists every sample task"
    );
    // Copies are exercised for real: several tasks need some, one needs 4.
    assert!(counts.values().filter(|&&n| n > 0).count() >= 4);
    let problems: Vec<String> = files
        .iter()
        .zip(&names)
        .filter_map(|(path, name)| copies_round_trip(path, &load_task(path), counts[name]))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn operators_without_copies_need_the_documented_count_and_the_fix_repairs_them() {
    // operators/README.md: | group | `kernel` | what | ops | Copies | pattern |
    let counts = readme_counts(&root().join("operators/README.md"), 1, 4);
    assert_eq!(
        counts.len(),
        26,
        "one README row per kernel, kernel names unique"
    );
    let mut problems = Vec::new();
    let mut seen = 0;
    for (group, files) in operator_groups() {
        for path in files {
            let kernel = path.file_stem().unwrap().to_string_lossy().into_owned();
            let Some(&want) = counts.get(&kernel) else {
                problems.push(format!(
                    "{group}/{kernel} is missing from operators/README.md"
                ));
                continue;
            };
            seen += 1;
            problems.extend(copies_round_trip(&path, &load_task(&path), want));
        }
    }
    assert_eq!(seen, 26);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// DESIGN §13: the native backend is a tier, not a semantics: every operator verifies with
/// every element function the backend supports compiled, and with none.
#[test]
fn every_operator_passes_with_jit_always_and_with_jit_never() {
    for mode in [
        stepforge_exec::JitMode::Always,
        stepforge_exec::JitMode::Never,
    ] {
        let mut opts = VerifyOptions::with_seed_count(3);
        opts.limits.jit = mode;
        let failures = verify_all_with(&all_operator_files(), &opts);
        assert!(
            failures.is_empty(),
            "--jit {}:\n{}",
            mode.as_str(),
            failures.join("\n")
        );
    }
}

/// `--jit always` really compiles: the library's Map/Accum functions are mostly native.
#[test]
fn jit_always_compiles_most_library_functions() {
    let mut opts = VerifyOptions::with_seed_count(1);
    opts.limits.jit = stepforge_exec::JitMode::Always;
    let (mut compiled, mut total) = (0, 0);
    for path in all_operator_files() {
        let r = verify(&load_task(&path), None, &opts);
        for j in &r.jit {
            total += 1;
            if j.compiled {
                compiled += 1;
                assert!(
                    j.native_calls > 0,
                    "{}: {} compiled but never run",
                    rel(&path),
                    j.name
                );
            } else {
                assert!(
                    j.fallback.is_some(),
                    "{}: {} has no reason",
                    rel(&path),
                    j.name
                );
            }
        }
    }
    assert!(
        compiled * 3 >= total * 2,
        "{compiled} of {total} functions compiled"
    );
}
