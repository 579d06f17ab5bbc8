//! Snapshots of the typed graph (`--emit ir` text) of every sample task's reference impl.

use crate::common::*;

#[test]
fn sample_ir_dumps() {
    let mut files: Vec<_> = std::fs::read_dir(tasks_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    for path in files {
        let task = load_task(&path);
        let out = stepforge_check::check_task(&task).unwrap();
        let g = out.graph.unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        insta::assert_snapshot!(format!("ir_{stem}"), g.dump());
    }
}

#[test]
fn dot_of_a_partition_merge_graph() {
    let task = load_task(&tasks_dir().join("moe_top1_lists.yaml"));
    let g = stepforge_check::check_task(&task).unwrap().graph.unwrap();
    insta::assert_snapshot!(g.to_dot());
}
