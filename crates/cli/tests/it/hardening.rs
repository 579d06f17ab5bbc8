//! Regression tests for the hard bounds and CLI papercuts of issue 9: every reproduction runs
//! the real binary as a child with a wall-time bound and a peak-RSS bound measured from
//! `/proc/<pid>/status` (the child is killed if it exceeds either).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::root;

/// What a bounded run produced.
#[derive(Debug)]
pub struct Bounded {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub wall: Duration,
    /// Peak resident set size seen, in KiB (VmHWM).
    pub peak_kib: u64,
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `stepforge ARGS` from the workspace root; panics (after killing it) if it runs longer
/// than `max_wall` or its RSS goes above `max_rss_mib`.
pub fn run_bounded(args: &[&str], max_wall: Duration, max_rss_mib: u64) -> Bounded {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepforge"))
        .args(args)
        .current_dir(root())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the stepforge binary runs");
    let pid = child.id();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let mut peak = 0u64;
    let status = loop {
        if let Some(kib) = vm_hwm_kib(pid) {
            peak = peak.max(kib);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if peak > max_rss_mib * 1024 || start.elapsed() > max_wall {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "stepforge {args:?} exceeded its bounds: {:?} wall, {} MiB peak RSS (limits {max_wall:?}, {max_rss_mib} MiB)",
                start.elapsed(),
                peak / 1024
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Bounded {
        code: status.code(),
        stdout: String::from_utf8_lossy(&t_out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
        wall: start.elapsed(),
        peak_kib: peak,
    }
}

const T: &str = "operators/norm/rmsnorm.yaml";

/// A fresh scratch directory under the target dir (removed first if a previous run left it).
pub fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hardening-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn quick(args: &[&str]) -> Bounded {
    run_bounded(args, Duration::from_secs(20), 512)
}

#[test]
fn devices_fifos_and_directories_are_clear_errors_not_blocks() {
    let dir = scratch("fifo");
    let fifo = dir.join("answer.step");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let fifo = fifo.display().to_string();
    for args in [
        vec!["parse", "/dev/zero"],
        vec!["check", T, "--impl", "/dev/zero"],
        vec!["verify", T, "--impl", "/dev/zero"],
        vec!["verify", T, "--impl", fifo.as_str()],
        vec!["parse", fifo.as_str()],
        vec!["verify", "/dev/zero"],
        vec!["check", T, "--impl", "operators"],
    ] {
        let r = quick(&args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("is a device")
                || r.stderr.contains("is a FIFO")
                || r.stderr.contains("is a directory"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(r.wall < Duration::from_secs(5), "{args:?}: {:?}", r.wall);
    }
}

#[test]
fn oversized_answers_are_refused_by_a_bounded_reader() {
    let dir = scratch("big");
    let big = dir.join("big.step");
    let line = "E1 = step.Frobnicate(fn=f).apply(X)\n";
    std::fs::write(&big, line.repeat(3 * 1024 * 1024 / line.len())).unwrap();
    let big = big.display().to_string();
    for cmd in [
        vec!["parse", big.as_str()],
        vec!["check", T, "--impl", big.as_str()],
        vec!["verify", T, "--impl", big.as_str()],
    ] {
        let r = quick(&cmd);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(
            r.stderr
                .contains("larger than the input limit of 1048576 bytes"),
            "{}",
            r.stderr
        );
        assert!(r.peak_kib < 100 * 1024, "{} KiB", r.peak_kib);
    }
}

#[test]
fn many_diagnostics_are_capped_per_code_in_both_formats() {
    let dir = scratch("many");
    let f = dir.join("many.step");
    let body: String = (0..3000)
        .map(|i| format!("E{i} = step.Frobnicate(fn=f).apply(X)\n"))
        .collect();
    std::fs::write(&f, body).unwrap();
    let f = f.display().to_string();
    let r = quick(&["check", T, "--impl", &f]);
    assert_eq!(r.code, Some(1));
    assert_eq!(
        r.stderr.matches("error[E0112]").count(),
        100,
        "{}",
        &r.stderr[..500]
    );
    assert!(
        r.stderr
            .contains("note: and 2900 more E0112 diagnostic(s) not shown")
    );
    assert!(r.stderr.contains("linear: not checked"), "{}", r.stderr);
    let r = quick(&[
        "check",
        T,
        "--impl",
        &f,
        "--format",
        "json",
        "--max-diagnostics",
        "5",
    ]);
    let j: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        j["diagnostics"].as_array().unwrap().len(),
        6,
        "5 E0112 + the E0116"
    );
    assert_eq!(j["diagnostics_omitted"]["E0112"], 2995);
    assert!(j["linear"].is_null() && j["linear_compat"].is_null(), "{j}");
    let r = quick(&["verify", T, "--impl", &f, "--format", "json"]);
    assert_eq!(r.stderr, "", "JSON mode keeps stderr for real errors");
    let j: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(j["diagnostics_omitted"]["E0112"], 2900);
    assert!(j["linear"].is_null(), "{j}");
    assert_eq!(j["diagnostics"][0]["source"], "program");
}

#[test]
fn seeds_and_iters_are_bounded_usage_errors() {
    for (args, needle) in [
        (vec!["verify", T, "--seeds", "0"], "0 is not in 1..=1000"),
        (
            vec!["verify", T, "--seeds", "4294967295"],
            "is not in 1..=1000",
        ),
        (
            vec!["verify", T, "--seeds", "1000000000"],
            "is not in 1..=1000",
        ),
        (vec!["bench", T, "--iters", "0"], "0 is not in 1.."),
        (vec!["bench", T, "--seeds", "0"], "0 is not in 1..=1000"),
    ] {
        let r = quick(&args);
        assert_eq!(r.code, Some(2), "{args:?}");
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
    // The wrong program that `--seeds 0` used to pass.
    let r = quick(&[
        "verify",
        "operators/attention/scan_max_rescale.yaml",
        "--impl",
        "operators/wrong/attention__scan_max_rescale__swapped_operands.step",
        "--seeds",
        "1",
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stdout);
}

#[test]
fn directory_walks_skip_symlinked_directories_and_visit_each_file_once() {
    let dir = scratch("walk");
    let sub = dir.join("a");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::copy(root().join(T), sub.join("rmsnorm.yaml")).unwrap();
    std::os::unix::fs::symlink("..", sub.join("up")).unwrap();
    std::os::unix::fs::symlink(".", dir.join("self")).unwrap();
    std::os::unix::fs::symlink("rmsnorm.yaml", sub.join("again.yaml")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(dir.join("pipe.yaml"))
            .status()
            .unwrap()
            .success()
    );
    let d = dir.display().to_string();
    let r = quick(&["verify", &d, "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert_eq!(r.stderr, "");
    let r = quick(&["verify", &d]);
    assert!(
        r.stderr.contains("note: skipping symlinked directory"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("is a FIFO"), "{}", r.stderr);
}

#[test]
fn dims_names_are_checked_against_the_task() {
    for (dims, needle) in [
        ("d=128", "no dimension `d`; did you mean `D`?"),
        ("Q=4", "no dimension `Q`"),
        ("D=5,D=6", "`D` is given more than once"),
    ] {
        for cmd in ["verify", "check"] {
            let r = quick(&[cmd, T, "--dims", dims]);
            assert_eq!(r.code, Some(2), "{cmd} {dims}");
            assert!(r.stderr.contains(needle), "{cmd} {dims}: {}", r.stderr);
        }
    }
}

#[test]
fn non_tasks_and_prose_answers_get_one_clear_line() {
    let r = quick(&["verify", "README.md"]);
    assert_eq!(r.code, Some(2));
    assert_eq!(
        r.stderr.trim(),
        "error: README.md is not a task file (no `inputs:`, `outputs:` or `fns:` keys)"
    );
    let dir = scratch("prose");
    let f = dir.join("answer.md");
    std::fs::write(
        &f,
        "I would use a Map followed by an Accum.\nThat should do it.\n",
    )
    .unwrap();
    let r = quick(&["parse", &f.display().to_string()]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("error[E0118]"), "{}", r.stderr);
}

#[test]
fn help_lists_exit_codes_and_every_limit_flag() {
    let r = quick(&["verify", "--help"]);
    for flag in [
        "--time-limit-ms",
        "--fuel",
        "--max-tensor-elements",
        "--max-live-bytes",
        "--max-ops",
        "--max-input-bytes",
        "--max-diagnostics",
        "--seeds",
    ] {
        assert!(r.stdout.contains(flag), "{flag}");
    }
    assert!(r.stdout.contains("Exit codes:"));
    let r = quick(&["check", "--help"]);
    assert!(r.stdout.contains("The task file (YAML)"), "{}", r.stdout);
    assert!(r.stdout.contains("Output format"), "{}", r.stdout);
    let r = quick(&["--help"]);
    assert!(r.stdout.contains("2  usage error"), "{}", r.stdout);
}

#[test]
fn check_fix_emit_ir_shows_the_fixed_graph() {
    let task = "crates/cli/tests/it/fixtures/sub.yaml";
    let plain = quick(&[
        "check",
        task,
        "--impl",
        "crates/cli/tests/it/fixtures/sub_reused.step",
        "--emit",
        "ir",
    ]);
    let fixed = quick(&[
        "check",
        task,
        "--impl",
        "crates/cli/tests/it/fixtures/sub_reused.step",
        "--fix",
        "--emit",
        "ir",
    ]);
    assert!(!plain.stdout.contains("Copy"), "{}", plain.stdout);
    assert!(
        fixed.stdout.matches("Copy").count() >= 2,
        "program and IR: {}",
        fixed.stdout
    );
}
