//! Tests that drive the real `stepforge` binary over stdio, as a coding agent or an editor would.
//!
//! These files live with the servers crate but are compiled into the CLI's integration-test
//! binary (`crates/cli/tests/it/main.rs` includes this module by path), because only a test of
//! the package that owns the binary gets `CARGO_BIN_EXE_stepforge`, which guarantees the binary
//! is built and current.

mod client;
mod lsp;
mod mcp;

use std::path::PathBuf;

/// The workspace root (task paths in tests are relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stepforge"))
}

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "stepforge-servers-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// split_num_den's reference program with its `Copy` removed: `S` is consumed twice (E0401),
/// and the safe fix (insert the Copy) makes it pass again.
pub const CONSUME_TWICE: &str = "\
Qb = step.Bufferize(a=1).apply(Q)
Qr = step.Repeat(n=N).apply(Qb)
Kb = step.Bufferize(a=1).apply(K)
S = step.Map(fn=fn_score).apply((Kb, Qr))
Vb = step.Bufferize(a=1).apply(V)
SV = step.Zip().apply((S, Vb))
Num = step.Accum(fn=fn_num, b=1).apply(SV)
Den = step.Accum(fn=fn_den, b=1).apply(S)
Ob = step.Map(fn=fn_div).apply((Num, Den))
O = step.Streamify().apply(Ob)
return O
";

pub const SPLIT_TASK: &str = "operators/attention/split_num_den.yaml";
pub const RMS_TASK: &str = "operators/norm/rmsnorm.yaml";
pub const RMS_PROGRAM: &str = "\
Xb = step.Bufferize(a=1).apply(X)
Yb = step.Map(fn=fn_rms).apply(Xb)
Y = step.Streamify().apply(Yb)
return Y
";
