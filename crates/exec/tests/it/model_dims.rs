//! Issue 11's model-dims check, for the tasks whose top-k choice meets exact f32 ties there
//! (a softmax over logits of standard deviation ~32 saturates, so several tokens have
//! probability exactly 1.0): the library's kernels pass at `D=K=1024` and the operators/wrong
//! programs for them are still rejected. The whole library at model dims is a release run:
//! `cargo run --release -p stepforge-cli -- verify operators/ --dims D=1024,K=1024` (and
//! `--dims N=1024`), with `operators/wrong/` rejected at both.

use std::path::Path;

use stepforge_driver::verify_loaded;
use stepforge_exec::{ExecLimits, JitFnReport, JitMode, Verdict, VerifyOptions};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn run(task: &str, program: Option<&str>, dims: &[(&str, i64)]) -> (Verdict, Vec<String>) {
    run_jit(task, program, dims, JitMode::Auto)
}

fn run_jit(
    task: &str,
    program: Option<&str>,
    dims: &[(&str, i64)],
    jit: JitMode,
) -> (Verdict, Vec<String>) {
    let (v, errors, _) = verify(task, program, dims, jit);
    (v, errors)
}

/// The verdict, the error messages and what the native backend did per function.
fn verify(
    task: &str,
    program: Option<&str>,
    dims: &[(&str, i64)],
    jit: JitMode,
) -> (Verdict, Vec<String>, Vec<JitFnReport>) {
    let loaded = stepforge_task::load_file(&root().join(task)).unwrap();
    let impl_text = program.map(|p| std::fs::read_to_string(root().join(p)).unwrap());
    let known = stepforge_task::used_symbols(loaded.task.as_ref().unwrap());
    let opts = VerifyOptions {
        dims: dims
            .iter()
            .filter(|(k, _)| known.contains(*k))
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect(),
        // A debug build on a loaded 2-core machine: the time limit is not what is tested.
        limits: ExecLimits {
            time_limit: std::time::Duration::from_secs(600),
            jit,
            ..ExecLimits::default()
        },
        ..VerifyOptions::default()
    };
    let r = verify_loaded(&loaded, impl_text.as_deref(), &opts);
    let errors = r.errors().map(|d| d.diagnostic.message.clone()).collect();
    (r.verdict, errors, r.jit)
}

/// RoPE at N=1024: angles near 1000 rad, where the program's and the reference's f32 roundings
/// of the angle differ by 1e-4 in `sin`/`cos` (the rounding draws widen the tolerance there).
#[test]
fn rope_passes_at_long_sequences_and_its_wrong_programs_fail() {
    let task = "operators/rope/gptj_interleaved.yaml";
    let (v, errors) = run(task, None, &[("N", 1024)]);
    assert_eq!(v, Verdict::Pass, "{task}: {errors:#?}");
    for wrong in std::fs::read_dir(root().join("operators/wrong")).unwrap() {
        let wrong = wrong.unwrap().path();
        let name = wrong.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("rope__gptj_interleaved__") {
            continue;
        }
        let rel = format!("operators/wrong/{name}");
        let (v, _) = run(task, Some(&rel), &[("N", 1024)]);
        assert_ne!(v, Verdict::Pass, "{rel} passed at N=1024");
    }
}

#[test]
fn saturated_topk_choices_pass_and_wrong_programs_fail_at_model_dims() {
    for (task, wrong) in [
        (
            "operators/moe-index/expert_choice_topk.yaml",
            "operators/wrong/moe-index__expert_choice_topk__off_by_one.step",
        ),
        (
            "operators/moe-e2e/capacity_token_selection.yaml",
            "operators/wrong/moe-e2e__capacity_token_selection__off_by_one.step",
        ),
    ] {
        for dims in [&[("D", 1024), ("K", 1024)][..], &[("D", 1024)][..]] {
            let (v, errors) = run(task, None, dims);
            assert_eq!(v, Verdict::Pass, "{task} {dims:?}: {errors:#?}");
            let (v, _) = run(task, Some(wrong), dims);
            assert_ne!(v, Verdict::Pass, "{wrong} {dims:?} passed");
        }
    }
}

/// The library's tasks (`operators/<group>/<task>.yaml`), sorted.
fn library_tasks() -> Vec<String> {
    let mut out = Vec::new();
    for group in std::fs::read_dir(root().join("operators")).unwrap() {
        let group = group.unwrap().path();
        if !group.is_dir() || group.ends_with("wrong") {
            continue;
        }
        for f in std::fs::read_dir(&group).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "yaml") {
                let rel = f.strip_prefix(root()).unwrap();
                out.push(rel.to_string_lossy().to_string());
            }
        }
    }
    out.sort();
    out
}

/// `(task, program)` for every `operators/wrong/<group>__<task>__<kind>.step`.
fn wrong_programs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in std::fs::read_dir(root().join("operators/wrong")).unwrap() {
        let name = f.unwrap().file_name().to_string_lossy().to_string();
        let parts: Vec<&str> = name.split("__").collect();
        if let [group, task, _] = parts[..] {
            out.push((
                format!("operators/{group}/{task}.yaml"),
                format!("operators/wrong/{name}"),
            ));
        }
    }
    out.sort();
    out
}

/// Every library task passes with the native backend forced on and off (3 seeds, default
/// dims), and every `operators/wrong` program is rejected both ways.
#[test]
fn the_library_passes_native_and_interpreted_and_wrong_programs_fail() {
    let tasks = library_tasks();
    assert!(tasks.len() >= 26, "{tasks:?}");
    let wrong = wrong_programs();
    assert!(wrong.len() >= 24, "{wrong:?}");
    for jit in [JitMode::Always, JitMode::Never] {
        let mut interpreted = Vec::new();
        for task in &tasks {
            let (v, errors, jit_report) = verify(task, None, &[], jit);
            assert_eq!(v, Verdict::Pass, "{task} {jit:?}: {errors:#?}");
            interpreted.extend(
                jit_report
                    .into_iter()
                    .filter(|f| !f.compiled)
                    .map(|f| format!("{task} {}: {:?}", f.name, f.fallback)),
            );
        }
        // Forced on, every function of the library compiles (topk, scatter, Merge, size,
        // dtype= included); forced off, none does.
        if jit == JitMode::Always {
            assert!(interpreted.is_empty(), "{interpreted:#?}");
        } else {
            assert!(!interpreted.is_empty());
        }
        for (task, program) in &wrong {
            let (v, _) = run_jit(task, Some(program), &[], jit);
            assert_ne!(v, Verdict::Pass, "{program} passed with {jit:?}");
        }
    }
}

/// The tasks whose functions the native topk, scatter, Merge and shape builtins now compile
/// (rope, MoE), at `D=K=1024` with the native backend forced on. Minutes in a debug build, so
/// a release run: `cargo test --release -p stepforge-exec --test it -- --ignored`.
#[test]
#[ignore = "model dims: run in release"]
fn rope_and_moe_pass_natively_at_model_dims() {
    let dims = [("D", 1024), ("K", 1024)];
    for task in library_tasks() {
        if !(task.contains("/rope/") || task.contains("/moe-")) {
            continue;
        }
        let (v, errors) = run_jit(&task, None, &dims, JitMode::Always);
        assert_eq!(v, Verdict::Pass, "{task}: {errors:#?}");
    }
    for (task, program) in wrong_programs() {
        if task.contains("/rope/") || task.contains("/moe-") {
            let (v, _) = run_jit(&task, Some(&program), &dims, JitMode::Always);
            assert_ne!(v, Verdict::Pass, "{program} passed at model dims");
        }
    }
}
