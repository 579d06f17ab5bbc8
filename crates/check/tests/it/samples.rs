//! The sample tasks (`tests/tasks/`): their reference impls check clean; with their Copy ops
//! removed they need exactly the copies the README counted by hand, and the Copy fix restores a
//! clean linear program with that many Copy ops.

use std::collections::BTreeMap;

use stepforge_syntax::diag::apply_fixes;

use crate::common::*;

/// `copies_needed` per file, from the README's table (counted by hand by the task author).
fn readme_counts() -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(tasks_dir().join("README.md")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 4
            && let Some(file) = cells[1]
                .strip_prefix('`')
                .and_then(|c| c.strip_suffix(".yaml`"))
            && let Ok(n) = cells[3].parse::<usize>()
        {
            out.insert(format!("{file}.yaml"), n);
        }
    }
    out
}

#[test]
fn sample_reference_impls_check_clean_and_need_the_hand_counted_copies() {
    let counts = readme_counts();
    assert!(counts.len() >= 5, "README table not found: {counts:?}");
    for (file, expected) in &counts {
        let path = tasks_dir().join(file);
        let task = load_task(&path);
        let out = stepforge_check::check_task(&task).expect("sample has an impl");
        assert!(
            out.ok,
            "{file}:\n{}",
            render_all(&task.source, &out.diagnostics)
        );
        assert!(
            out.diagnostics.is_empty(),
            "{file}:\n{}",
            render_all(&task.source, &out.diagnostics)
        );
        assert!(
            out.is_linear() && out.linear_compat.unwrap_or(false),
            "{file}"
        );
        assert_eq!(out.copies_needed, 0, "{file}");
        let g = out.graph.expect("graph");
        assert!(g.is_linear());

        // Without its Copy ops the program needs exactly the hand-counted copies.
        let program = stepforge_task::parse_impl(&task).ok().unwrap();
        let stripped = strip_copies(&program);
        let text = stepforge_syntax::print::program(&stripped);
        let (src, out) = stepforge_check::check_answer(&task, &text);
        assert_eq!(out.is_linear(), *expected == 0, "{file}\n{text}");
        assert!(
            out.well_typed(),
            "{file}:\n{}",
            render_all(&src, &out.diagnostics)
        );
        assert_eq!(
            out.copies_needed,
            *expected,
            "{file}:\n{text}\n{}",
            render_all(&src, &out.diagnostics)
        );

        // Applying every fix gives a clean, linear program with that many Copy ops.
        let fixed = apply_fixes(&text, &out.diagnostics, true);
        let (src2, out2) = stepforge_check::check_answer(&task, &fixed);
        assert!(
            out2.ok && out2.is_linear(),
            "{file}:\n{fixed}\n{}",
            render_all(&src2, &out2.diagnostics)
        );
        let p2 = stepforge_syntax::parse_answer(&fixed).ok().unwrap();
        assert_eq!(
            count_copies(&p2),
            count_copies(&stripped) + expected,
            "{file}"
        );

        // The same inside the task file: the fix edits the YAML `impl:` block in place and
        // keeps its indentation, so the fixed file loads and checks clean.
        let yaml = replace_impl(&task.source.text, &text);
        let t2 = load_task_text(file, &yaml);
        let out = stepforge_check::check_task(&t2).unwrap();
        assert_eq!(out.copies_needed, *expected, "{file}");
        let fixed_yaml = apply_fixes(&yaml, &out.diagnostics, true);
        let t3 = load_task_text(file, &fixed_yaml);
        let out3 = stepforge_check::check_task(&t3).unwrap();
        assert!(
            out3.ok && out3.is_linear() && out3.diagnostics.is_empty(),
            "{file}:\n{fixed_yaml}\n{}",
            render_all(&t3.source, &out3.diagnostics)
        );
    }
}

/// The task file with its `impl: |` block replaced by `program`.
fn replace_impl(yaml: &str, program: &str) -> String {
    let mut out = String::new();
    let mut lines = yaml.lines().peekable();
    while let Some(l) = lines.next() {
        if l.starts_with("impl:") {
            out.push_str("impl: |\n");
            for p in program.lines() {
                out.push_str("  ");
                out.push_str(p);
                out.push('\n');
            }
            while lines
                .peek()
                .is_some_and(|n| n.starts_with(' ') || n.is_empty())
            {
                lines.next();
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}
