//! Lint W0801: the classic bounded-FIFO deadlock shape, found statically.
//!
//! A `Copy` whose two branches meet again at one op (a Map of several streams, a Zip, …)
//! where one branch passes a reduction (`Accum`) or a `Bufferize` that must see `k` elements
//! before it emits anything, while the other branch reaches the join through plain FIFOs
//! holding fewer than `k` elements (depth [`FIFO_DEPTH`] per stream, the hardware default).
//! The direct branch's FIFOs fill, the Copy stops, the reduction never completes: a hang on
//! the chip that functional verification cannot see (`stepforge sim` confirms it as E0801).
//!
//! The fix is machine-applicable and keeps the program's meaning: Bufferize the direct path
//! just before the join (one tile per reduction group, a single FIFO element) and Streamify
//! it again. Counts are evaluated with the task's dimension values; a count that has no value
//! (a Partition branch's dynamic dim) is not linted.

use stepforge_ir::{DimEnv, Graph, OpId, OpKind, StreamId};
use stepforge_syntax::codes::Code;
use stepforge_syntax::diag::{Applicability, Edit, Fix};
use stepforge_syntax::span::line_start_at;
use stepforge_syntax::{Diagnostic, Span};

/// The FIFO depth the lint assumes (DESIGN §12 default).
pub const FIFO_DEPTH: u64 = 2;

/// One branch of a Copy up to the op where it meets another stream.
struct Branch {
    /// Ops passed on the way (single-input, single-output ops).
    ops: Vec<OpId>,
    /// The stream entering the join.
    last: StreamId,
    join: Option<OpId>,
    /// Elements the first reduction or Bufferize on the way waits for, with that op.
    wait: Option<(u64, OpId)>,
}

fn walk(g: &Graph, start: StreamId, env: &DimEnv) -> Branch {
    let mut b = Branch {
        ops: Vec::new(),
        last: start,
        join: None,
        wait: None,
    };
    let mut s = start;
    for _ in 0..g.op_count() {
        let Some(c) = g.consumers(s).first() else {
            return b;
        };
        let op = g.op(c.op);
        let (ins, outs) = (g.inputs_of(op.id), g.outputs_of(op.id));
        if ins.len() != 1 || outs.len() != 1 {
            if ins.len() > 1 {
                b.join = Some(op.id);
            }
            return b;
        }
        let group = match &op.kind {
            OpKind::Accum { b: k, .. } => Some(*k),
            OpKind::Bufferize { a } => Some(*a),
            _ => None,
        };
        if let (Some(k), None) = (group, b.wait) {
            match elements(g, ins[0], k, env) {
                Some(n) => b.wait = Some((at_copy(g, start, ins[0], n, env), op.id)),
                None => return Branch { join: None, ..b },
            }
        }
        b.ops.push(op.id);
        s = outs[0];
        b.last = s;
    }
    b
}

/// Elements in the outer `k` dims of stream `s` (`None` when a dim has no value).
fn elements(g: &Graph, s: StreamId, k: usize, env: &DimEnv) -> Option<u64> {
    g.stream(s).ty.dims.iter().take(k).try_fold(1u64, |acc, d| {
        d.eval(env)
            .and_then(|v| u64::try_from(v).ok())
            .and_then(|v| acc.checked_mul(v))
    })
}

/// `need` elements of `at` expressed in elements leaving the Copy on `start`: an op on the way
/// that multiplies elements (a Repeat, a Streamify) makes many of them from one Copy element,
/// and only Copy elements are held up by the direct path's FIFOs. Ops that keep or shrink the
/// count leave `need` as it is (the lint stays as strict as before for them).
fn at_copy(g: &Graph, start: StreamId, at: StreamId, need: u64, env: &DimEnv) -> u64 {
    let all = |s: StreamId| elements(g, s, g.stream(s).ty.rank(), env);
    match (all(start), all(at)) {
        (Some(from), Some(to)) if to > from && from > 0 => {
            need.saturating_mul(from).div_ceil(to).max(1)
        }
        _ => need,
    }
}

/// `Map(scale)`, `Accum(add)`, `Zip`.
fn label(g: &Graph, o: OpId) -> String {
    let op = g.op(o);
    match op.kind.fn_id() {
        Some(f) => format!("{}({})", op.kind.name(), g.fn_sig(f).name),
        None => op.kind.name().to_string(),
    }
}

fn name(g: &Graph, s: StreamId) -> String {
    g.stream(s).name.clone().unwrap_or_else(|| format!("{s}"))
}

fn fresh(g: &Graph, base: &str) -> String {
    let taken = |n: &str| g.streams().iter().any(|s| s.name.as_deref() == Some(n));
    (0..)
        .map(|i| {
            if i == 0 {
                base.to_string()
            } else {
                format!("{base}{i}")
            }
        })
        .find(|n| !taken(n))
        .unwrap_or_else(|| base.to_string())
}

/// The fix: `Bufferize(a)` + `Streamify` of `s` inserted before the join's statement, and the
/// join reading the streamified name.
fn fix(g: &Graph, text: &str, join: OpId, s: StreamId, group: u64, env: &DimEnv) -> Option<Fix> {
    let ty = &g.stream(s).ty;
    let mut prod = 1u64;
    let mut a = None;
    for (i, d) in ty.dims.iter().enumerate().take(ty.rank()) {
        prod = prod.checked_mul(u64::try_from(d.eval(env)?).ok()?)?;
        if prod >= group {
            a = Some(i + 1);
            break;
        }
    }
    let a = a?;
    let n = name(g, s);
    let span = g.op(join).span;
    let call = text.get(span.range())?;
    let args = call.find(".apply(")? + ".apply(".len();
    let bytes = call.as_bytes();
    let is_id = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let at = call[args..]
        .match_indices(n.as_str())
        .map(|(i, _)| args + i)
        .find(|&i| {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + n.len()).copied();
            !before.is_some_and(is_id) && !after.is_some_and(is_id)
        })?;
    let line = line_start_at(text, span.lo as usize);
    let indent: String = text[line..].chars().take_while(|c| *c == ' ').collect();
    let buf = fresh(g, &format!("{n}_buf"));
    let streamed = fresh(g, &format!("{n}_s"));
    let lo = span.lo as usize + at;
    Some(Fix {
        message: format!("Bufferize `{n}` (a={a}) and Streamify it before the join"),
        applicability: Applicability::Safe,
        edits: vec![
            Edit {
                span: Span::new(line, line),
                replacement: format!(
                    "{indent}{buf} = step.Bufferize(a={a}).apply({n})\n{indent}{streamed} = step.Streamify().apply({buf})\n"
                ),
            },
            Edit {
                span: Span::new(lo, lo + n.len()),
                replacement: streamed,
            },
        ],
    })
}

/// W0801 for every Copy of `g` whose branches rejoin in the deadlocking shape.
pub(crate) fn lint(g: &Graph, env: &DimEnv, text: Option<&str>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for op in g.ops().filter(|o| matches!(o.kind, OpKind::Copy)) {
        let [o0, o1] = g.outputs_of(op.id)[..] else {
            continue;
        };
        let (b0, b1) = (walk(g, o0, env), walk(g, o1, env));
        let (Some(j0), Some(j1)) = (b0.join, b1.join) else {
            continue;
        };
        if j0 != j1 {
            continue;
        }
        let (slow, direct) = match (b0.wait, b1.wait) {
            (Some(_), None) => (&b0, &b1),
            (None, Some(_)) => (&b1, &b0),
            _ => continue,
        };
        let Some((need, red)) = slow.wait else {
            continue;
        };
        let cap = FIFO_DEPTH * (direct.ops.len() as u64 + 1);
        if need <= cap {
            continue;
        }
        let join = g.op(j0);
        let dn = name(g, direct.last);
        let mut d = Diagnostic::new(
            Code::W0801,
            format!(
                "the copies of `{}` rejoin at {} after {} waits for {need} elements, but the direct path holds only {cap}: this deadlocks on FIFOs of depth {FIFO_DEPTH}",
                name(g, g.inputs_of(op.id)[0]),
                label(g, j0),
                label(g, red),
            ),
        )
        .at(op.span);
        for &o in &slow.ops {
            let msg = if o == red {
                format!("reducing path: waits for {need} elements before it emits one")
            } else {
                "reducing path".to_string()
            };
            d = d.label(g.op(o).span, msg);
        }
        for &o in &direct.ops {
            d = d.label(g.op(o).span, "direct path");
        }
        d = d.label(
            join.span,
            format!("direct path: `{dn}` waits here in FIFOs holding {cap} elements"),
        );
        d = d.help(format!(
            "Bufferize the direct path (`{dn}`) and Streamify it before the join, so it waits in on-chip memory instead of a FIFO"
        ));
        if let Some(f) = text.and_then(|t| fix(g, t, j0, direct.last, need, env)) {
            d = d.fix(f);
        }
        out.push(d);
    }
    out
}
