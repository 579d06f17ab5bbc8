//! The op manual of the proposer prompt (and of the MCP `manual` tool): generated from the
//! operator table the parser and checker use (`stepforge_syntax::ops::OPS`, which fixes the
//! operators, their order and their keyword parameters) plus, per operator, the checker's
//! shape rule and one example. A test keeps the per-operator rows and the table in step, so
//! an operator added to the checker cannot be missing from the manual.

use std::fmt::Write;

/// The checker's rule for one operator, as the proposer needs it (and the editors' hover and
/// completion show: one text for both).
#[derive(Debug)]
pub struct OpDoc {
    pub name: &'static str,
    /// The input the operator takes (after `.apply`).
    pub input: &'static str,
    /// Output type and shape, `S = [s0, .., sr]` innermost first, `T` the element type.
    pub output: &'static str,
    pub meaning: &'static str,
    pub example: &'static str,
}

/// The manual's entry for the operator called `name`.
pub fn op_doc(name: &str) -> Option<&'static OpDoc> {
    DOCS.iter().find(|d| d.name == name)
}

const DOCS: &[OpDoc] = &[
    OpDoc {
        name: "Map",
        input: "a stream, or a tuple of equal-shape streams (implicitly zipped); `fn.input_dtype` must equal T exactly; fn must be stateless (no `init`)",
        output: "`fn.output_dtype`, shape S",
        meaning: "apply fn to every element",
        example: "Yb = step.Map(fn=fn_rms).apply(Xb)            # [N, M] Buffer(fp32, [D]) -> same shape",
    },
    OpDoc {
        name: "Accum",
        input: "a stream with `1 <= b <= rank`; fn is a reducer (has `init`) with `fn.input_dtype == T`",
        output: "`fn.output_dtype`, shape `S[b:]` (the innermost b dims folded away)",
        meaning: "fold the innermost b dims with fn, starting from `fn.init`",
        example: "S = step.Accum(fn=fn_sum, b=1).apply(X)         # [D, N] fp32 -> [N] fp32",
    },
    OpDoc {
        name: "Scan",
        input: "as Accum",
        output: "`fn.output_dtype`, shape S",
        meaning: "like Accum but emits the state after every element; the state restarts every b innermost dims",
        example: "P = step.Scan(fn=fn_add, b=1).apply(Ones)        # [N, M] fp32 -> [N, M] prefix sums",
    },
    OpDoc {
        name: "Zip",
        input: "a tuple of two streams of equal shape",
        output: "the tuple of both element types (flattened, tuples never nest), shape S",
        meaning: "pair elements",
        example: "Z = step.Zip().apply((A, B))                     # [N] fp32, [N] fp32 -> [N] [fp32, fp32]",
    },
    OpDoc {
        name: "Copy",
        input: "one stream",
        output: "two streams, both T with shape S",
        meaning: "duplicate a stream: the only way to use a stream twice",
        example: "R1, R2 = step.Copy().apply(R)                    # [N] Multihot(fp32, E) twice",
    },
    OpDoc {
        name: "Bufferize",
        input: "a stream with `1 <= a <= rank`",
        output: "`Buffer(T, S[:a])` (extends an existing buffer's dims), shape `S[a:]`",
        meaning: "gather the innermost a dims into one on-chip tile",
        example: "Xb = step.Bufferize(a=1).apply(X)                # [D, N, M] fp32 -> [N, M] Buffer(fp32, [D])",
    },
    OpDoc {
        name: "Streamify",
        input: "a stream of `Buffer(U, B)`",
        output: "U, shape `B + S`",
        meaning: "stream a tile's elements out again",
        example: "Y = step.Streamify().apply(Yb)                   # [N, M] Buffer(fp32, [D]) -> [D, N, M] fp32",
    },
    OpDoc {
        name: "Promote",
        input: "a stream with `0 <= b <= rank + 1`",
        output: "T, shape `S[:b] + [1] + S[b:]`",
        meaning: "insert a size-1 dim at position b (the placeholder idiom)",
        example: "Pp = step.Promote(b=1).apply(Pb)                 # [K] Buffer(fp32, [D, N]) -> [K, 1]",
    },
    OpDoc {
        name: "Flatten",
        input: "L = consecutive dim indices with `L[0] >= 1` and `L[-1] <= rank`",
        output: "T, shape `S[:L0-1] + [S[L0-1] * prod(S[L])] + S[L_last+1:]`",
        meaning: "merge dims L into dim `L[0]-1`",
        example: "C = step.Flatten(L=[2]).apply(Cs)                # [D, N, 1] -> [D, N]",
    },
    OpDoc {
        name: "Reshape",
        input: "L = dim indices, each `S[i]` divisible by the chunk size S=c",
        output: "T, each listed dim i replaced by `[c, S[i]/c]` (rank grows by len(L))",
        meaning: "split a dim",
        example: "Y = step.Reshape(L=[0], S=2).apply(X)            # [D, N] -> [2, D/2, N]",
    },
    OpDoc {
        name: "Repeat",
        input: "any stream",
        output: "T, shape `[n] + S`",
        meaning: "repeat each element n times as a new innermost dim",
        example: "Xr = step.Repeat(n=N).apply(Xb)                  # [M] Buffer(fp32, [D]) -> [N, M]",
    },
    OpDoc {
        name: "RepeatRef",
        input: "a tuple (data, ref) with `ref.rank == data.rank + 1` and `ref.S[1:] == data.S`",
        output: "data's T, ref's shape",
        meaning: "repeat each data element as often as ref's innermost dim",
        example: "Pr = step.RepeatRef().apply((Pos, H))            # [N] fp32 with H [M, N] -> [M, N] fp32",
    },
    OpDoc {
        name: "Partition",
        input: "a tuple (data, sel): sel is a `Multihot(fp32, X)` stream whose shape equals data's outermost len(sel.S) dims; `N == X`",
        output: "a list of N streams, each T with shape `data.S[:r+1-len(sel.S)] + [P_i]`, `P_i` a fresh dynamic dim",
        meaning: "send each data chunk to every branch whose selector bit is 1, in stream order",
        example: "Ps = step.Partition(N=E).apply((Xb, R1))         # [N] Buffer(fp32, [D]) -> E streams [P_e]",
    },
    OpDoc {
        name: "Merge",
        input: "a tuple (branches, sel): N branch streams of element type `fn.input_dtype`, equal shape except their dynamic outer dim; fn is a reducer",
        output: "`fn.output_dtype`, shape `branch.S[:-1] + sel.S`",
        meaning: "for each selector element take the next chunk of every selected branch and fold them with fn in branch order; a selector with no bit set yields zeros",
        example: "Yb = step.Merge(fn=fn_add).apply((Ys, R2))       # E branches + [N] selector -> [N] Buffer(fp32, [D])",
    },
];

const INTRO: &str = "\
# STeP operator manual

A STeP program is a dataflow graph of stream operators. Every stream has an element type and a
shape.

Element types: `fp32`; `Multihot(fp32, X)` (a 0/1 routing vector of length X); `Buffer(T, [b0, ..])`
(an on-chip tile; T is fp32 or Multihot); a tuple `[T1, T2, ..]` of these (tuples never nest).

Shapes are written innermost first: `dims: [D, N, M]` means D varies fastest. The outermost entry
counts the tensors in the stream, so a stream's rank is `len(dims) - 1` (`[M]` has rank 0).
Element functions see a `Buffer(fp32, [D, N])` element as an N x D matrix (outermost first).

Program syntax: statements `X = step.Op(key=value, ..).apply(arg)` where arg is a stream name or
a tuple `(A, B)`; `A, B = step.Copy().apply(X)` destructures; `Ys = [step.Map(fn=f).apply(p) for
p, f in zip(Ps, Fs)]` is the only loop; `Fs = [fn_a, fn_b]` binds a list of function names;
the last line is `return Y` (or `return Y, Z`). Parameters are keyword arguments named as below.
Element functions are the task's `func_name`s; a reducer (with `init`) serves Accum, Scan and
Merge, a function without `init` serves Map.

Consume once: every stream (inputs, op results, list elements) may be consumed at most once,
because on hardware a stream is a FIFO with one reader. Returning a stream consumes it. To use a
stream twice, `Copy` it first. A stream never consumed is a warning.
";

const IDIOMS: &str = "\
## Idioms

1. The dimension placeholder (Promote / Flatten). Accum, Scan and Bufferize act only on inner
dims of a stream of rank >= 1; the outermost dim only counts elements. To reduce or gather over
the outermost dim, add a size-1 dim outside it first and merge it away afterwards:

    Pb = step.Bufferize(a=2).apply(P)                # [K] Buffer(fp32, [D, N])   rank 0
    Pp = step.Promote(b=1).apply(Pb)                 # [K, 1]                     rank 1
    Cb = step.Accum(fn=fn_add_tile, b=1).apply(Pp)   # [1] Buffer(fp32, [D, N])
    Cs = step.Streamify().apply(Cb)                  # [D, N, 1] fp32
    C = step.Flatten(L=[2]).apply(Cs)                # [D, N]

2. Stashing a dim (Bufferize / Repeat / Streamify). When one operand is reused across a dim the
other operand iterates, gather it once into a tile, Repeat the tile and Streamify it back into
the other operand's iteration order:

    Xb = step.Bufferize(a=1).apply(X)     # [M] Buffer(fp32, [D])
    Xr = step.Repeat(n=N).apply(Xb)       # [N, M] Buffer(fp32, [D])
    Xs = step.Streamify().apply(Xr)       # [D, N, M] fp32, aligned with A

3. Routing (Partition / Merge). A `Multihot(fp32, E)` stream decides which of E branches get each
chunk; each branch is processed on its own; Merge reads the selector again, so it is copied:

    R1, R2 = step.Copy().apply(R)
    Ps = step.Partition(N=E).apply((XW, R1))
    Ys = [step.Map(fn=f).apply(p) for p, f in zip(Ps, Fs)]
    Yb = step.Merge(fn=fn_add).apply((Ys, R2))

Anything an expert needs per token travels with the token: Zip it in before the Partition, or
apply it after the Merge.
";

/// The manual as markdown text.
pub fn manual() -> String {
    let mut s = String::from(INTRO);
    s.push_str("\n## Operators\n\n");
    for op in stepforge_syntax::ops::OPS {
        let Some(d) = DOCS.iter().find(|d| d.name == op.name) else {
            continue;
        };
        let params = op
            .params
            .iter()
            .map(|p| format!("{p}=.."))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            s,
            "### {name}\n`step.{name}({params}).apply(..)`\n- input: {input}\n- output: {output}\n- {meaning}\n- example: `{example}`\n\n",
            name = op.name,
            input = d.input,
            output = d.output,
            meaning = d.meaning,
            example = d.example,
        );
    }
    s.push_str(IDIOMS);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operator_is_documented_once() {
        let ops: Vec<&str> = stepforge_syntax::ops::names().collect();
        let docs: Vec<&str> = DOCS.iter().map(|d| d.name).collect();
        assert_eq!(
            ops, docs,
            "the manual's rows must follow the operator table"
        );
        let m = manual();
        for op in stepforge_syntax::ops::OPS {
            assert!(m.contains(&format!("### {}\n", op.name)));
            for p in op.params {
                assert!(m.contains(&format!("{p}=")), "{} lacks {p}", op.name);
            }
        }
        // Every example uses its operator with the table's keyword parameters.
        for d in DOCS {
            assert!(d.example.contains(&format!("step.{}(", d.name)));
        }
    }
}
