//! What the verify targets share: options small enough that every input, however hostile,
//! reaches a verdict in well under a second.

use std::time::Duration;

use stepforge_exec::{ExecLimits, VerifyOptions};

pub fn small_verify_options() -> VerifyOptions {
    VerifyOptions {
        seeds: vec![0],
        limits: ExecLimits {
            max_tensor_elements: 1 << 16,
            max_live_bytes: 1 << 20,
            max_ops: 200,
            time_limit: Duration::from_millis(500),
            check_every: 64,
            fuel: 100_000,
            // Tiny sizes: `auto` interprets (native code is fuzzed by the jit proptests).
            ..ExecLimits::default()
        },
        ..VerifyOptions::default()
    }
}
