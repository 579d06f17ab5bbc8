//! The long program shared by the LSP latency bench and the `lsp_profile` example, so both
//! measure the same text.

/// A linear RMSNorm-style chain of about `n` lines against `task` (built in linear time).
pub fn long_program(task: &str, n: usize) -> String {
    let mut s = format!("# task: {task}\nS0 = step.Bufferize(a=1).apply(X)\n");
    let (mut i, mut lines) = (0, 2);
    while lines + 4 < n {
        lines += 3;
        s.push_str(&format!(
            "M{i} = step.Map(fn=fn_rms).apply(S{i})\nT{i} = step.Streamify().apply(M{i})\nS{} = step.Bufferize(a=1).apply(T{i})\n",
            i + 1
        ));
        i += 1;
    }
    s.push_str(&format!(
        "Y0 = step.Map(fn=fn_rms).apply(S{i})\nY = step.Streamify().apply(Y0)\nreturn Y\n"
    ));
    s
}
