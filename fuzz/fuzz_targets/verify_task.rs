//! Arbitrary task files (seeded with the sample tasks and the operator library, so most inputs
//! are near-valid tasks with mutated element functions, references and dims) verified against
//! their own reference `impl` under small limits. This is the target that reaches the
//! executor's batching rewrite of element-function bodies, which is driven by the task rather
//! than by the program: verification never panics and always reaches a verdict.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use stepforge_driver::verify;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = stepforge_task::load_str("fuzz.yaml", text);
    let Some(task) = loaded.task else { return };
    let opts = common::small_verify_options();
    let r = verify(&task, None, &opts);
    let j = r.to_json();
    assert!(j["verdict"].is_string());
});
