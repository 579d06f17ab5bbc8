//! Every sample task's reference impl verifies: pass and linear.

use std::path::Path;

use stepforge_driver::verify_loaded;
use stepforge_exec::{Verdict, VerifyOptions};

#[test]
fn every_sample_task_passes_and_is_linear() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/tasks");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 7,
        "sample tasks missing in {}",
        dir.display()
    );
    for f in files {
        let loaded = stepforge_task::load_file(&f).unwrap();
        let r = verify_loaded(&loaded, None, &VerifyOptions::default());
        let errors: Vec<_> = r.errors().map(|d| d.diagnostic.message.clone()).collect();
        assert_eq!(r.verdict, Verdict::Pass, "{}: {errors:#?}", f.display());
        assert_eq!(r.linear, Some(true), "{}", f.display());
        assert_eq!(r.seeds, vec![0, 1, 2]);
        assert!(!r.outputs.is_empty());
        for o in &r.outputs {
            assert!(o.first_mismatch.is_none());
            assert!(
                o.max_abs_err.is_some_and(|e| e <= 1e-4),
                "{}: {o:?}",
                f.display()
            );
        }
    }
}
