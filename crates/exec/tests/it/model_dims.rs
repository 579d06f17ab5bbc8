//! Issue 11's model-dims check, for the tasks whose top-k choice meets exact f32 ties there
//! (a softmax over logits of standard deviation ~32 saturates, so several tokens have
//! probability exactly 1.0): the library's kernels pass at `D=K=1024` and the operators/wrong
//! programs for them are still rejected. The whole library at model dims is a release run:
//! `cargo run --release -p stepforge-cli -- verify operators/ --dims D=1024,K=1024` (and
//! `--dims N=1024`), with `operators/wrong/` rejected at both.

use std::path::Path;

use stepforge_driver::verify_loaded;
use stepforge_exec::{ExecLimits, Verdict, VerifyOptions};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn run(task: &str, program: Option<&str>, dims: &[(&str, i64)]) -> (Verdict, Vec<String>) {
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
            ..ExecLimits::default()
        },
        ..VerifyOptions::default()
    };
    let r = verify_loaded(&loaded, impl_text.as_deref(), &opts);
    let errors = r.errors().map(|d| d.diagnostic.message.clone()).collect();
    (r.verdict, errors)
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
