//! Flags and input handling shared by the commands: bounded input reading, the limits of
//! DESIGN §9 as flags, diagnostic capping and `--dims` validation against a task.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use stepforge_exec::ExecLimits;

use crate::{Status, output};

/// Default cap on a program, answer or task file read from disk (the task loader's limit).
pub const DEFAULT_MAX_INPUT_BYTES: u64 = stepforge_task::MAX_TASK_BYTES as u64;
/// Most seeds one verification may run (each seed regenerates all inputs).
pub const MAX_SEEDS: u32 = 1000;

/// Flags every command that reads files and reports diagnostics takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Largest program or answer file read, in bytes (task files are capped at 1 MiB by the
    /// loader whatever this says).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_INPUT_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_input_bytes: u64,
    /// Diagnostics reported per code; the rest are counted ("and N more E0202").
    #[arg(long, value_name = "N", default_value_t = stepforge_syntax::diag::DEFAULT_MAX_PER_CODE)]
    pub max_diagnostics: usize,
}

impl Default for CommonArgs {
    fn default() -> CommonArgs {
        CommonArgs {
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            max_diagnostics: stepforge_syntax::diag::DEFAULT_MAX_PER_CODE,
        }
    }
}

/// The verification limits of DESIGN §9; unset flags keep the defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LimitArgs {
    /// Wall-time limit per verification (all seeds), in milliseconds [default: 10000].
    #[arg(long = "time-limit-ms", value_name = "MS")]
    pub time_limit_ms: Option<u64>,
    /// Evaluation steps per element-function call or reference snippet [default: 1000000].
    #[arg(long, value_name = "STEPS")]
    pub fuel: Option<u64>,
    /// Elements of any one tensor [default: 67108864].
    #[arg(long, value_name = "N")]
    pub max_tensor_elements: Option<u64>,
    /// Bytes of stream data alive at once [default: 1073741824].
    #[arg(long, value_name = "BYTES")]
    pub max_live_bytes: Option<u64>,
    /// Operators in the program's graph [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_ops: Option<usize>,
}

impl LimitArgs {
    pub fn apply(&self, mut l: ExecLimits) -> ExecLimits {
        if let Some(ms) = self.time_limit_ms {
            l.time_limit = Duration::from_millis(ms);
        }
        if let Some(f) = self.fuel {
            l.fuel = f;
        }
        if let Some(n) = self.max_tensor_elements {
            l.max_tensor_elements = n;
        }
        if let Some(b) = self.max_live_bytes {
            l.max_live_bytes = b;
        }
        if let Some(n) = self.max_ops {
            l.max_ops = n;
        }
        l
    }
}

/// Why a path cannot be read as an input file, checked before opening it: opening a FIFO
/// blocks and reading a device (`/dev/zero`) never ends.
pub fn not_a_file(path: &Path) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
    };
    let ft = meta.file_type();
    let what = if ft.is_file() {
        return None;
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Some(format!(
        "{} is {what}; expected a regular file",
        path.display()
    ))
}

/// Reads a whole input file of at most `max` bytes as UTF-8; anything else is one clear error
/// line and a usage-class status (exit 2).
pub fn read_bounded(path: &Path, max: u64) -> Result<String, Status> {
    if let Some(msg) = not_a_file(path) {
        output::error(&msg);
        return Err(Status::Usage);
    }
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(max.saturating_add(1)).read_to_end(&mut bytes));
    if let Err(e) = read {
        output::error(&format!("cannot read {}: {e}", path.display()));
        return Err(Status::Usage);
    }
    if bytes.len() as u64 > max {
        output::error(&format!(
            "{} is larger than the input limit of {max} bytes (raise it with --max-input-bytes)",
            path.display()
        ));
        return Err(Status::Usage);
    }
    String::from_utf8(bytes).map_err(|e| {
        output::error(&format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ));
        Status::Usage
    })
}

/// Checks `--dims` names against the dimension symbols `known` (the task's): an unknown name
/// is an error with a did-you-mean, a name given twice is an error.
pub fn check_dim_names(
    dims: &[(String, i64)],
    raw: Option<&str>,
    known: &std::collections::BTreeSet<String>,
) -> Result<(), String> {
    if let Some(raw) = raw {
        let mut seen = std::collections::BTreeSet::new();
        for item in raw.split(',') {
            let Some((k, _)) = item.split_once('=') else {
                continue;
            };
            let k = k.trim();
            if !seen.insert(k) {
                return Err(format!("--dims: `{k}` is given more than once"));
            }
        }
    }
    for (k, _) in dims {
        if known.contains(k) {
            continue;
        }
        let list: Vec<&str> = known.iter().map(String::as_str).collect();
        let mut msg = format!("--dims: the task has no dimension `{k}`");
        let near = known
            .iter()
            .map(|c| {
                (
                    strsim::jaro_winkler(&c.to_lowercase(), &k.to_lowercase()),
                    c,
                )
            })
            .filter(|(s, _)| *s >= 0.7)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, c)) = near {
            msg.push_str(&format!("; did you mean `{c}`?"));
        }
        if list.is_empty() {
            msg.push_str(" (it uses no dimensions)");
        } else {
            msg.push_str(&format!(" (its dimensions: {})", list.join(", ")));
        }
        return Err(msg);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(names: &[&str]) -> std::collections::BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn unknown_and_duplicate_dims_are_errors() {
        let k = known(&["D", "M", "N"]);
        let d = vec![("d".to_string(), 128)];
        let e = check_dim_names(&d, Some("d=128"), &k).unwrap_err();
        assert!(e.contains("no dimension `d`; did you mean `D`?"), "{e}");
        assert!(e.contains("(its dimensions: D, M, N)"), "{e}");
        let e = check_dim_names(&[("Q".into(), 4)], Some("Q=4"), &k).unwrap_err();
        assert!(e.contains("no dimension `Q`"), "{e}");
        let e = check_dim_names(&[("D".into(), 6)], Some("D=5,D=6"), &k).unwrap_err();
        assert_eq!(e, "--dims: `D` is given more than once");
        assert!(check_dim_names(&[("D".into(), 6)], Some("D=6"), &k).is_ok());
    }

    #[test]
    fn devices_and_directories_are_not_files() {
        let m = not_a_file(Path::new("/dev/zero")).unwrap();
        assert_eq!(m, "/dev/zero is a device; expected a regular file");
        assert!(not_a_file(Path::new("/")).unwrap().contains("a directory"));
        assert!(
            not_a_file(Path::new("/no/such"))
                .unwrap()
                .contains("cannot read")
        );
    }
}
