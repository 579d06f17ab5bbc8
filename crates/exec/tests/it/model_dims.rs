//! Issue 11's model-dims check, for the tasks whose top-k choice meets exact f32 ties there
//! (a softmax over logits of standard deviation ~32 saturates, so several tokens have
//! probability exactly 1.0): the library's kernels pass at `D=K=1024` and the operators/wrong
//! programs for them are still rejected. The whole library at model dims is a release run:
//! `cargo run --release -p stepforge-cli -- verify operators/ --dims D=1024,K=1024` (and
//! `--dims N=1024`), with `operators/wrong/` rejected at both.

use std::path::Path;

use stepforge_exec::{Verdict, VerifyOptions, verify_loaded};

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
        ..VerifyOptions::default()
    };
    let r = verify_loaded(&loaded, impl_text.as_deref(), &opts);
    let errors = r.errors().map(|d| d.diagnostic.message.clone()).collect();
    (r.verdict, errors)
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
