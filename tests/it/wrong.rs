//! The known-wrong programs of `operators/wrong/`: each one gets the verdict class its header
//! promises, every group has at least one of each kind of mistake (a parameter off by one,
//! swapped operands, a wrong function), and the table of verdicts is a snapshot.
//!
//! A file is named `<group>__<kernel>__<kind>.step` and starts with a header:
//! `# task: operators/<group>/<kernel>.yaml`, `# kind: <kind>`, `# change: ...`,
//! `# expect: <verdict>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use stepforge_driver::verify;
use stepforge_exec::{Verdict, VerifyOptions, VerifyReport};

use crate::{files_with_ext, load_task, operator_groups, rel, rendered, root};

const KINDS: &[&str] = &["off_by_one", "swapped_operands", "wrong_function"];

#[derive(Debug)]
struct Wrong {
    path: PathBuf,
    file: String,
    group: String,
    kernel: String,
    kind: String,
    task: String,
    expect: String,
    text: String,
}

fn header(text: &str, key: &str) -> Option<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("# {key}:")))
        .map(|v| v.trim().to_string())
}

fn wrong_programs() -> Vec<Wrong> {
    let files = files_with_ext(&root().join("operators/wrong"), "step");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let stem = file.trim_end_matches(".step");
            let parts: Vec<&str> = stem.split("__").collect();
            let [group, kernel, kind] = parts[..] else {
                panic!("{file}: name is not <group>__<kernel>__<kind>.step");
            };
            let get = |key: &str| {
                header(&text, key).unwrap_or_else(|| panic!("{file}: no `# {key}:` header line"))
            };
            assert!(!get("change").is_empty(), "{file}: empty `# change:`");
            Wrong {
                group: group.to_string(),
                kernel: kernel.to_string(),
                kind: get("kind"),
                task: get("task"),
                expect: get("expect"),
                path: path.clone(),
                file: file.clone(),
                text,
            }
            .checked(kind)
        })
        .collect()
}

impl Wrong {
    /// The name, the header and the task agree.
    fn checked(self, kind_from_name: &str) -> Wrong {
        assert_eq!(
            self.kind, kind_from_name,
            "{}: kind header vs file name",
            self.file
        );
        assert!(
            KINDS.contains(&self.kind.as_str()),
            "{}: unknown kind {}",
            self.file,
            self.kind
        );
        assert_eq!(
            self.task,
            format!("operators/{}/{}.yaml", self.group, self.kernel),
            "{}: task header vs file name",
            self.file
        );
        assert!(
            root().join(&self.task).is_file(),
            "{}: task {} does not exist",
            self.file,
            self.task
        );
        self
    }
}

/// The verdict's key fact: the first error's code, or for a value mismatch the first
/// mismatching output and index (data are seeded, so the index is stable).
fn detail(r: &VerifyReport) -> String {
    if r.verdict == Verdict::ValueMismatch
        && let Some((name, m)) = r
            .outputs
            .iter()
            .find_map(|o| o.first_mismatch.as_ref().map(|m| (&o.name, m)))
    {
        return format!("{name} first mismatch at {:?}", m.index);
    }
    r.errors().next().map_or_else(
        || "-".to_string(),
        |d| d.diagnostic.code.as_str().to_string(),
    )
}

#[test]
fn every_group_has_each_kind_of_mistake() {
    let mut by_group: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for w in wrong_programs() {
        by_group
            .entry(w.group.clone())
            .or_default()
            .insert(w.kind.clone());
        *count.entry(w.group).or_default() += 1;
    }
    let all: BTreeSet<String> = KINDS.iter().map(ToString::to_string).collect();
    for group in operator_groups().keys() {
        assert!(
            count.get(group).copied().unwrap_or(0) >= 3,
            "group {group} has fewer than 3 wrong programs"
        );
        assert_eq!(
            by_group.get(group),
            Some(&all),
            "group {group} lacks a kind of mistake"
        );
    }
    assert_eq!(
        by_group.keys().collect::<Vec<_>>(),
        operator_groups().keys().collect::<Vec<_>>(),
        "every wrong program targets a library group"
    );
}

#[test]
fn every_wrong_program_gets_its_expected_verdict() {
    let opts = VerifyOptions::with_seed_count(3);
    let mut table = String::from("file | kind | verdict | detail\n");
    let mut problems = Vec::new();
    let mut tasks = BTreeMap::new();
    for w in wrong_programs() {
        let task = tasks
            .entry(w.task.clone())
            .or_insert_with(|| load_task(&root().join(&w.task)));
        // the program really is a variant, not the reference itself
        let reference = task
            .reference_impl
            .as_ref()
            .map(|e| e.text.as_str())
            .unwrap_or("");
        assert!(
            !w.text.contains(reference.trim()),
            "{}: identical to the reference impl",
            w.file
        );
        let r = verify(task, Some(&w.text), &opts);
        if r.verdict.as_str() != w.expect {
            problems.push(format!(
                "{}: expected {}, got {}\n{}",
                rel(&w.path),
                w.expect,
                r.verdict,
                rendered(&r)
            ));
        }
        assert_ne!(r.verdict, Verdict::Pass, "{}", w.file);
        assert!(
            r.errors().next().is_some(),
            "{}: a {} with no error diagnostic",
            w.file,
            r.verdict
        );
        table.push_str(&format!(
            "{} | {} | {} | {}\n",
            w.file,
            w.kind,
            r.verdict,
            detail(&r)
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    insta::assert_snapshot!("wrong_verdicts", table);
}

/// Native code changes no verdict: every wrong program is rejected with the same verdict
/// with `--jit always`.
#[test]
fn every_wrong_program_is_rejected_alike_with_jit_always() {
    let mut opts = VerifyOptions::with_seed_count(3);
    opts.limits.jit = stepforge_exec::JitMode::Always;
    let mut tasks = BTreeMap::new();
    let mut problems = Vec::new();
    for w in wrong_programs() {
        let task = tasks
            .entry(w.task.clone())
            .or_insert_with(|| load_task(&root().join(&w.task)));
        let r = verify(task, Some(&w.text), &opts);
        if r.verdict.as_str() != w.expect {
            problems.push(format!(
                "{}: expected {}, got {}",
                rel(&w.path),
                w.expect,
                r.verdict
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
