//! Where a warm session's verification of one candidate spends its time, per task: the
//! check alone, then the whole verify with the report's phase timings (medians of N runs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use stepforge_driver::{Session, VerifyOptions};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "operators".into());
    let iters: usize = std::env::args().nth(2).map_or(30, |s| s.parse().unwrap());
    // `session`: only warm-session verifications (for a profiler).
    let only_session = std::env::args().nth(3).is_some_and(|m| m == "session");
    let mut files = Vec::new();
    for g in std::fs::read_dir(&root).unwrap() {
        let g = g.unwrap().path();
        if !g.is_dir() || g.ends_with("wrong") {
            continue;
        }
        for f in std::fs::read_dir(&g).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "yaml") {
                files.push(f);
            }
        }
    }
    files.sort();
    let opts = VerifyOptions::with_seed_count(3);
    let mut tot = [0.0f64; 6];
    println!("task check_us verify_us program_us compare_us per_call_us");
    for f in &files {
        let s = Session::open(f).unwrap();
        let Some(c) = s.reference_impl().map(str::to_string) else {
            continue;
        };
        s.verify(Some(&c), &opts);
        let mut check = Vec::new();
        let mut ver = Vec::new();
        let mut prog = Vec::new();
        let mut cmp = Vec::new();
        let mut per = Vec::new();
        if only_session {
            for _ in 0..iters {
                std::hint::black_box(s.verify(Some(&c), &opts));
            }
            continue;
        }
        for _ in 0..iters {
            let t = Instant::now();
            std::hint::black_box(s.check(&c));
            check.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            let r = s.verify(Some(&c), &opts);
            ver.push(t.elapsed().as_secs_f64() * 1e6);
            prog.push(r.timing.program_us as f64);
            cmp.push(r.timing.compare_us as f64);
            let t = Instant::now();
            std::hint::black_box(stepforge_driver::verify(s.task(), None, &opts));
            per.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let row = [
            median(check),
            median(ver),
            median(prog),
            median(cmp),
            median(per),
            0.0,
        ];
        for (t, r) in tot.iter_mut().zip(row) {
            *t += r;
        }
        println!(
            "{:40} {:8.0} {:8.0} {:8.0} {:8.0} {:8.0}",
            f.file_stem().unwrap().to_string_lossy(),
            row[0],
            row[1],
            row[2],
            row[3],
            row[4]
        );
    }
    println!(
        "TOTAL check {:.0} verify {:.0} program {:.0} compare {:.0} per_call {:.0}",
        tot[0], tot[1], tot[2], tot[3], tot[4]
    );
}
