//! A profiling driver for the language server's analysis of the latency bench's 10,000-line
//! program: `ROUNDS` analyses (check + LSP conversion) of the clean program and of the version
//! with an undefined name, so `valgrind --tool=callgrind` (or `perf`) sees only that path.
//! Run: `cargo build --release --example lsp_profile -p stepforge-servers` and then
//! `valgrind --tool=callgrind target/release/examples/lsp_profile 2`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use stepforge_servers::{lsp, toolchain::Sessions};

// The same allocator as the `stepforge` binary, so the numbers are the shipped server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../benches/common/mod.rs"]
mod common;
use common::long_program;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let task = root.join("operators/norm/rmsnorm.yaml");
    let dir = std::env::temp_dir().join(format!("stepforge-lsp-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("long.step");
    let text = long_program(task.to_str().unwrap(), 10_000);
    let broken = text.replacen("apply(S1600)", "apply(Q1600)", 1);
    let uri = format!("file://{}", path.display());
    let sessions = Sessions::default();
    for (what, t) in [("clean", &text), ("undefined name", &broken)] {
        let start = Instant::now();
        let mut n = 0;
        for version in 0..rounds as i32 {
            let doc = lsp::Doc {
                uri: uri.clone(),
                version,
                text: Arc::from(t.as_str()),
            };
            n = lsp::Analysis::new(doc, &sessions).lsp_diagnostics().len();
        }
        println!(
            "{what}: {n} diagnostics, {:?} per analysis",
            start.elapsed() / rounds.max(1) as u32
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
