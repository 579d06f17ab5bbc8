//! Generates the parser from the workspace's top-level `grammar/` directory into `OUT_DIR`.

#[allow(clippy::expect_used)] // a build script's only recourse is to fail the build
fn main() {
    let grammar_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../grammar");
    println!("cargo:rerun-if-changed={}", grammar_dir.display());
    if let Err(e) = lalrpop::Configuration::new()
        .set_in_dir(&grammar_dir)
        .set_out_dir(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .process()
    {
        panic!("lalrpop failed on grammar/: {e}");
    }
}
