//! Operator documentation for hover, completion and the fallback manual: each operator's input,
//! output type and shape rule (DESIGN §4).
//! Parameters come from the one op table (`stepforge_syntax::ops`); only the prose lives here,
//! and a test keeps the two covering the same operators.

use stepforge_syntax::ops;

/// (op, input, output type and shape, meaning). `S = [s0, …, sr]` is the input shape
/// (innermost first, rank r), `T` its element type.
const RULES: &[(&str, &str, &str, &str)] = &[
    (
        "Map",
        "a stream, or a tuple of equal-shape streams (implicitly zipped); `fn.input == T`",
        "`fn.output`, shape `S`",
        "apply fn to every element",
    ),
    (
        "Accum",
        "`1 ≤ b ≤ r`, `fn.input == T`, fn a reducer (has `init`)",
        "`fn.output`, shape `S[b:]`",
        "fold the innermost b dims with fn from `fn.init`",
    ),
    (
        "Scan",
        "as Accum",
        "`fn.output`, shape `S`",
        "like Accum but emit the state after every element; the state restarts every b innermost dims",
    ),
    (
        "Zip",
        "two streams of equal shape",
        "tuple of both element types (flattened), shape `S`",
        "pair elements",
    ),
    (
        "Copy",
        "one stream",
        "two streams, both `T`, shape `S`",
        "duplicate: the only way to use a stream twice",
    ),
    (
        "Bufferize",
        "`1 ≤ a ≤ r`",
        "`Buffer(T, S[:a])` (extends an existing buffer's dims), shape `S[a:]`",
        "gather the innermost a dims into one on-chip tile",
    ),
    (
        "Streamify",
        "`T = Buffer(U, B)`",
        "`U`, shape `B + S`",
        "stream a tile's elements out again",
    ),
    (
        "Promote",
        "`0 ≤ b ≤ r+1`",
        "`T`, shape `S[:b] + [1] + S[b:]`",
        "insert a size-1 dim at position b",
    ),
    (
        "Flatten",
        "L consecutive indices, `L[0] ≥ 1`, `L[-1] ≤ r`",
        "`T`, shape `S[:L0-1] + [S[L0-1]·Π S[L]] + S[L_last+1:]`",
        "merge dims L into dim `L[0]-1`",
    ),
    (
        "Reshape",
        "each `S[i]`, i in L, divisible by the chunk size `S`",
        "`T`, each listed dim i replaced by `[c, S[i]/c]`",
        "split a dim (rank grows by len(L))",
    ),
    (
        "Repeat",
        "any stream",
        "`T`, shape `[n] + S`",
        "repeat each element n times as a new innermost dim",
    ),
    (
        "RepeatRef",
        "`(data, ref)` with `ref.rank == data.rank + 1`, `ref.S[1:] == data.S`",
        "data's `T`, ref's shape",
        "repeat each data element as often as ref's innermost dim",
    ),
    (
        "Partition",
        "`(data, sel)`: sel a `Multihot(fp32, X)` stream whose shape equals data's outermost `len(sel.S)` dims; `N == X`",
        "a list of N streams, each `T` with shape `data.S[:r+1-len(sel.S)] + [P_i]`, `P_i` fresh dynamic",
        "send each data chunk to every branch whose bit is 1, in stream order",
    ),
    (
        "Merge",
        "`(branches, sel)`: N branches of element type `fn.input`, equal shape except their dynamic outer dim",
        "`fn.output`, shape `branch.S[:-1] + sel.S`",
        "for each selector element, fold the next chunk of every selected branch with fn (branch order); no bit set yields zeros",
    ),
];

/// `step.Op(k=…, …).apply(…)`: the signature line of an operator.
pub fn signature(op: &ops::OpInfo) -> String {
    let params: Vec<String> = op.params.iter().map(|p| format!("{p}=…")).collect();
    format!("step.{}({}).apply(…)", op.name, params.join(", "))
}

/// Markdown hover for the operator called `name`.
pub fn hover(name: &str) -> Option<String> {
    let op = ops::lookup(name)?;
    let (_, input, output, meaning) = RULES.iter().find(|r| r.0 == name)?;
    Some(format!(
        "```python\n{}\n```\n{meaning}.\n\n- input: {input}\n- output: {output}\n\nShapes are innermost first: `S = [s0, …, sr]`, rank r.",
        signature(op)
    ))
}

/// One line for completion details.
pub fn summary(name: &str) -> Option<&'static str> {
    RULES.iter().find(|r| r.0 == name).map(|r| r.3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_has_a_rule_and_no_more() {
        for op in ops::OPS {
            assert!(hover(op.name).is_some(), "{} has no rule", op.name);
        }
        assert_eq!(RULES.len(), ops::OPS.len());
        assert_eq!(
            signature(ops::lookup("Accum").unwrap()),
            "step.Accum(fn=…, b=…).apply(…)"
        );
    }
}
