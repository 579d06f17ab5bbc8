//! Arbitrary text verified as an implementation of a fixed sample task (Partition/Merge, lists,
//! Multihot) under small limits: verification never panics, always reaches a verdict within
//! its limits, and every program diagnostic's span lies inside the text.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use stepforge_driver::verify;
use stepforge_exec::Origin;

const TASK: &str = include_str!("../../tests/tasks/moe_top1_lists.yaml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = stepforge_task::load_str("moe_top1_lists.yaml", TASK);
    let Some(task) = loaded.task else { return };
    let opts = common::small_verify_options();
    let r = verify(&task, Some(text), &opts);
    for d in r.diagnostics.iter().filter(|d| d.origin == Origin::Program) {
        if let Some(s) = d.diagnostic.span {
            assert!(
                s.lo <= s.hi && s.hi as usize <= text.len(),
                "span {s:?} outside the text"
            );
        }
    }
    let j = r.to_json();
    assert!(j["verdict"].is_string());
});
