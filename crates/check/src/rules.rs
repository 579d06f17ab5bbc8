//! The type and shape rule of every operator (DESIGN §4), on IR types only.
//!
//! Each rule takes the checked operands and parameter values and returns the output stream
//! types or a [`RuleError`] that says what is wrong in the user's terms and which argument to
//! blame; the lowering turns that into a located diagnostic. Keeping the rules free of AST and
//! spans lets them be unit-tested directly on IR types.

use stepforge_ir::{Dim, DimEnv, DynDim, ElemType, FnSig, OpId, StreamType, dims_to_string};
use stepforge_syntax::codes::Code;

/// An operand as the rules see it: the name the program used and its type.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    pub name: &'a str,
    pub ty: &'a StreamType,
}

/// Which part of the call a rule error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The whole call.
    Op,
    /// A keyword parameter (`"fn"`, `"b"`, ...).
    Param(&'static str),
    /// The operand at this (flattened) position.
    Operand(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub code: Code,
    pub blame: Blame,
    pub message: String,
    pub notes: Vec<String>,
    pub help: Option<String>,
}

impl RuleError {
    fn new(code: Code, blame: Blame, message: String) -> RuleError {
        RuleError {
            code,
            blame,
            message,
            notes: Vec::new(),
            help: None,
        }
    }
    fn note(mut self, n: impl Into<String>) -> RuleError {
        self.notes.push(n.into());
        self
    }
    fn help(mut self, h: Option<String>) -> RuleError {
        self.help = h;
        self
    }
}

type R<T> = Result<T, RuleError>;

/// Symbolic equality, with one concession: a literal equals a symbol whose value under `env` is
/// that literal (a task may write `16` where the program derives `D`).
pub fn dim_eq(a: &Dim, b: &Dim, env: &DimEnv) -> bool {
    if a == b {
        return true;
    }
    if a.as_int().is_none() && b.as_int().is_none() {
        return false;
    }
    match (a.eval(env), b.eval(env)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

pub fn dims_eq(a: &[Dim], b: &[Dim], env: &DimEnv) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| dim_eq(x, y, env))
}

pub fn elem_eq(a: &ElemType, b: &ElemType, env: &DimEnv) -> bool {
    match (a, b) {
        (ElemType::Fp32, ElemType::Fp32) => true,
        (ElemType::Multihot(x), ElemType::Multihot(y)) => dim_eq(x, y, env),
        (ElemType::Buffer { elem: e1, dims: d1 }, ElemType::Buffer { elem: e2, dims: d2 }) => {
            elem_eq(&e1.to_elem(), &e2.to_elem(), env) && dims_eq(d1, d2, env)
        }
        (ElemType::Tuple(x), ElemType::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| elem_eq(p, q, env))
        }
        _ => false,
    }
}

fn desc(o: &Operand) -> String {
    format!(
        "{} has rank {} (dims {})",
        o.name,
        o.ty.rank(),
        o.ty.dims_string()
    )
}

fn found(o: &Operand) -> String {
    format!(
        "found {}: {} with dims {}",
        o.name,
        o.ty.elem,
        o.ty.dims_string()
    )
}

fn placeholder_help(op: &str, param: &str, v: i64, o: &Operand) -> Option<String> {
    let r = o.ty.rank() as i64;
    (v == r + 1).then(|| {
        let mut dims = o.ty.dims.clone();
        dims.push(Dim::ONE);
        format!(
            "{op} cannot reach the outermost dim of {}; add a size-1 outer placeholder first: \
             Promote(b={}) gives dims {}, then {op}({param}={v})",
            o.name,
            r + 1,
            dims_to_string(&dims)
        )
    })
}

/// Why `found` is not what `f` wants, as a pattern to apply.
pub fn elem_help(expected: &ElemType, o: &Operand, env: &DimEnv) -> Option<String> {
    let s = &o.ty.dims;
    match (expected, &o.ty.elem) {
        (ElemType::Buffer { dims: want, .. }, ElemType::Fp32 | ElemType::Multihot(_)) => {
            let k = want.len();
            if k <= o.ty.rank()
                && ElemType::buffer(&o.ty.elem, &s[..k]).is_some_and(|t| elem_eq(&t, expected, env))
            {
                Some(format!(
                    "Bufferize(a={k}) first to gather the innermost {k} dim(s) {} of {} into one tile",
                    dims_to_string(&s[..k]),
                    o.name
                ))
            } else {
                Some(format!(
                    "the function wants tiles {expected}; Bufferize(a=..) gathers a stream's innermost dims into a tile"
                ))
            }
        }
        (ElemType::Buffer { dims: want, .. }, ElemType::Buffer { dims: have, .. }) => {
            if want.len() > have.len() && dims_eq(&want[..have.len()], have, env) {
                let k = want.len() - have.len();
                if k <= o.ty.rank()
                    && ElemType::buffer(&o.ty.elem, &s[..k])
                        .is_some_and(|t| elem_eq(&t, expected, env))
                {
                    return Some(format!(
                        "Bufferize(a={k}) first to extend the tiles of {} with dims {}",
                        o.name,
                        dims_to_string(&s[..k])
                    ));
                }
            }
            None
        }
        (ElemType::Fp32 | ElemType::Multihot(_), ElemType::Buffer { .. }) => Some(format!(
            "{} carries tiles; Streamify() first to stream their elements out",
            o.name
        )),
        (ElemType::Tuple(want), ElemType::Tuple(have))
            if want.len() == have.len()
                && want.iter().all(|w| have.iter().any(|h| elem_eq(w, h, env))) =>
        {
            Some(format!(
                "{} has the right fields in another order; swap the operands where it was zipped",
                o.name
            ))
        }
        (ElemType::Tuple(fs), other) if !other.is_tuple() => Some(format!(
            "the function takes a {}-field tuple; pass the streams together, `.apply((a, b))`, \
             to zip them",
            fs.len()
        )),
        _ => None,
    }
}

/// When the zipped operands are right but in the wrong order, the order that type-checks.
fn reorder_help(ops: &[Operand], want: &ElemType, env: &DimEnv) -> Option<String> {
    if ops.len() > 4 {
        return None;
    }
    let n = ops.len();
    let mut perm: Vec<usize> = (0..n).collect();
    // Heap's algorithm, iteratively: at most 24 orders.
    let mut c = vec![0usize; n];
    let mut i = 0;
    while i < n {
        if c[i] < i {
            if i % 2 == 0 {
                perm.swap(0, i);
            } else {
                perm.swap(c[i], i);
            }
            let elem = ElemType::tuple(perm.iter().map(|&k| ops[k].ty.elem.clone()).collect());
            if elem_eq(&elem, want, env) {
                let names: Vec<&str> = perm.iter().map(|&k| ops[k].name).collect();
                return Some(format!(
                    "the streams are in the wrong order: `.apply(({}))` matches the function",
                    names.join(", ")
                ));
            }
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    None
}

/// Help for two shapes where `short` lacks one dim of `long`.
pub fn insert_dim_help(short: &Operand, long: &[Dim], env: &DimEnv) -> Option<String> {
    let s = &short.ty.dims;
    if long.len() != s.len() + 1 {
        return None;
    }
    let p = (0..long.len()).find(|&p| {
        let mut l = long.to_vec();
        l.remove(p);
        dims_eq(&l, s, env)
    })?;
    let x = &long[p];
    if p == 0 {
        Some(format!(
            "{} lacks the innermost dim {x}: Repeat(n={x}) adds it",
            short.name
        ))
    } else if p < s.len() {
        Some(format!(
            "{} lacks dim {x} at position {p}; Repeat only adds an innermost dim, so insert it \
             with Bufferize(a={p}), Repeat(n={x}), Streamify()",
            short.name
        ))
    } else {
        None
    }
}

fn check_fn_input(op: &str, f: &FnSig, o: &Operand, idx: usize, env: &DimEnv) -> R<()> {
    if elem_eq(&o.ty.elem, &f.input, env) {
        return Ok(());
    }
    Err(RuleError::new(
        Code::E0302,
        Blame::Operand(idx),
        format!(
            "{op}(fn={}) applies {} to elements of type {}, but {} carries {}",
            f.name, f.name, f.input, o.name, o.ty.elem
        ),
    )
    .note(format!("expected {}", f.input))
    .note(found(o))
    .help(elem_help(&f.input, o, env)))
}

fn need_kind(op: &str, f: &FnSig, reducer: bool) -> R<()> {
    if f.is_reducer() == reducer {
        return Ok(());
    }
    let (msg, help) = if reducer {
        (
            format!(
                "{op} needs a reducer (a function with `init`), but {} is stateless",
                f.name
            ),
            format!(
                "use Map(fn={}) for a stateless function, or a reducer here",
                f.name
            ),
        )
    } else {
        (
            format!(
                "{op} needs a stateless function, but {} is a reducer (it has `init`)",
                f.name
            ),
            format!("use Accum or Scan with the reducer {}", f.name),
        )
    };
    Err(RuleError::new(Code::E0301, Blame::Param("fn"), msg).help(Some(help)))
}

/// Help for a mismatch that Bufferize resolves: the longer operand's dims end with the
/// shorter's (`[D, N]` against `[N]`), so `Bufferize(a=k)` of the longer one makes them agree.
fn bufferize_help(a: &Operand, b: &Operand, env: &DimEnv) -> Option<String> {
    let (long, short) = if a.ty.dims.len() > b.ty.dims.len() {
        (a, b)
    } else {
        (b, a)
    };
    let k = long.ty.dims.len() - short.ty.dims.len();
    (k > 0 && dims_eq(&long.ty.dims[k..], &short.ty.dims, env)).then(|| {
        format!(
            "Bufferize(a={k}) of {} makes it {} with dims {}",
            long.name,
            ElemType::buffer(&long.ty.elem, &long.ty.dims[..k])
                .map_or_else(|| "a buffer".to_string(), |t| t.to_string()),
            short.ty.dims_string()
        )
    })
}

/// Help for a Map over several streams whose function takes buffers (its `input_dtype` is a
/// tuple with Buffer components): bufferize each operand by its component's rank, when that
/// makes the shapes agree.
fn map_buffer_help(f: &FnSig, ops: &[Operand], env: &DimEnv) -> Option<String> {
    let ElemType::Tuple(parts) = &f.input else {
        return None;
    };
    if parts.len() != ops.len() || !parts.iter().any(|p| matches!(p, ElemType::Buffer { .. })) {
        return None;
    }
    let mut outer: Option<&[Dim]> = None;
    let mut steps = Vec::new();
    for (p, o) in parts.iter().zip(ops) {
        let r = match p {
            ElemType::Buffer { dims, .. } => dims.len(),
            _ => 0,
        };
        let rest = o.ty.dims.get(r..)?;
        match outer {
            None => outer = Some(rest),
            Some(prev) if dims_eq(prev, rest, env) => {}
            Some(_) => return None,
        }
        if r > 0 {
            steps.push(format!("Bufferize(a={r}) of {}", o.name));
        }
    }
    Some(format!(
        "{} takes {} (its input_dtype): {} first, so the streams agree on dims {}",
        f.name,
        f.input,
        steps.join(", "),
        dims_to_string(outer.unwrap_or(&[]))
    ))
}

fn shape_mismatch(op: &str, a: &Operand, b: &Operand, idx: usize, env: &DimEnv) -> RuleError {
    let help = insert_dim_help(a, &b.ty.dims, env)
        .or_else(|| insert_dim_help(b, &a.ty.dims, env))
        .or_else(|| bufferize_help(a, b, env));
    RuleError::new(
        Code::E0305,
        Blame::Operand(idx),
        format!(
            "{op} needs streams of equal shape, but {} has dims {} and {} has dims {}",
            a.name,
            a.ty.dims_string(),
            b.name,
            b.ty.dims_string()
        ),
    )
    .note(format!("expected dims {}", a.ty.dims_string()))
    .note(format!("found {}: dims {}", b.name, b.ty.dims_string()))
    .help(help)
}

/// `Map(fn)` over one stream or several implicitly zipped streams.
pub fn map(f: &FnSig, ops: &[Operand], env: &DimEnv) -> R<StreamType> {
    need_kind("Map", f, false)?;
    let Some(first) = ops.first() else {
        return Err(RuleError::new(
            Code::E0309,
            Blame::Op,
            "Map needs a stream".into(),
        ));
    };
    for (i, o) in ops.iter().enumerate().skip(1) {
        if !dims_eq(&first.ty.dims, &o.ty.dims, env) {
            let e = shape_mismatch(
                "Map over several streams zips them, so it",
                first,
                o,
                i,
                env,
            );
            return Err(match map_buffer_help(f, ops, env) {
                Some(h) => e.help(Some(h)),
                None => e,
            });
        }
    }
    if ops.len() == 1 {
        check_fn_input("Map", f, first, 0, env)?;
    } else {
        let elem = ElemType::tuple(ops.iter().map(|o| o.ty.elem.clone()).collect());
        if !elem_eq(&elem, &f.input, env) {
            let names: Vec<&str> = ops.iter().map(|o| o.name).collect();
            return Err(RuleError::new(
                Code::E0302,
                Blame::Op,
                format!(
                    "Map(fn={}) applies {} to elements of type {}, but zipping ({}) gives {}",
                    f.name,
                    f.name,
                    f.input,
                    names.join(", "),
                    elem
                ),
            )
            .note(format!("expected {}", f.input))
            .note(format!("found {elem}"))
            .help(reorder_help(ops, &f.input, env)));
        }
    }
    Ok(StreamType::new(f.output.clone(), first.ty.dims.clone()))
}

fn fold_param(op: &str, b: i64, o: &Operand) -> R<usize> {
    let r = o.ty.rank();
    if b < 1 {
        return Err(RuleError::new(
            Code::E0304,
            Blame::Param("b"),
            format!("{op}(b={b}) must fold at least the innermost dim (b ≥ 1)"),
        ));
    }
    if b as u64 > r as u64 {
        return Err(RuleError::new(
            Code::E0303,
            Blame::Param("b"),
            format!("{op}(b={b}) needs a stream of rank ≥ {b}, but {}", desc(o)),
        )
        .note("rank = number of dims - 1: the outermost dim counts the tensors of the stream")
        .help(placeholder_help(op, "b", b, o)));
    }
    Ok(b as usize)
}

/// `Accum(fn, b)` (`scan == false`) and `Scan(fn, b)`.
pub fn accum(f: &FnSig, b: i64, o: &Operand, scan: bool, env: &DimEnv) -> R<StreamType> {
    let op = if scan { "Scan" } else { "Accum" };
    need_kind(op, f, true)?;
    let b = fold_param(op, b, o)?;
    check_fn_input(op, f, o, 0, env)?;
    let dims = if scan {
        o.ty.dims.clone()
    } else {
        o.ty.dims[b..].to_vec()
    };
    Ok(StreamType::new(f.output.clone(), dims))
}

pub fn zip(ops: &[Operand], env: &DimEnv) -> R<StreamType> {
    let [a, b] = ops else {
        return Err(RuleError::new(
            Code::E0309,
            Blame::Op,
            format!(
                "Zip() takes exactly two streams, `.apply((a, b))`, but got {}",
                ops.len()
            ),
        )
        .help(Some(
            "zip more streams by zipping pairs, or pass them all to Map as a tuple".into(),
        )));
    };
    if !dims_eq(&a.ty.dims, &b.ty.dims, env) {
        return Err(shape_mismatch("Zip()", a, b, 1, env));
    }
    Ok(StreamType::new(
        ElemType::tuple(vec![a.ty.elem.clone(), b.ty.elem.clone()]),
        a.ty.dims.clone(),
    ))
}

pub fn copy(o: &Operand) -> [StreamType; 2] {
    [o.ty.clone(), o.ty.clone()]
}

pub fn bufferize(a: i64, o: &Operand) -> R<StreamType> {
    if o.ty.elem.is_tuple() {
        return Err(RuleError::new(
            Code::E0307,
            Blame::Operand(0),
            format!(
                "Bufferize gathers fp32 or Multihot elements, but {} carries the tuple {}",
                o.name, o.ty.elem
            ),
        )
        .help(Some("Bufferize each stream before zipping them".into())));
    }
    if a < 1 {
        return Err(RuleError::new(
            Code::E0304,
            Blame::Param("a"),
            format!("Bufferize(a={a}) must gather at least the innermost dim (a ≥ 1)"),
        ));
    }
    let r = o.ty.rank();
    if a as u64 > r as u64 {
        return Err(RuleError::new(
            Code::E0303,
            Blame::Param("a"),
            format!(
                "Bufferize(a={a}) needs a stream of rank ≥ {a}, but {}",
                desc(o)
            ),
        )
        .note("rank = number of dims - 1: the outermost dim counts the tensors of the stream")
        .help(placeholder_help("Bufferize", "a", a, o)));
    }
    let a = a as usize;
    let elem = ElemType::buffer(&o.ty.elem, &o.ty.dims[..a]).ok_or_else(|| {
        RuleError::new(
            Code::E0307,
            Blame::Operand(0),
            "cannot bufferize a tuple".into(),
        )
    })?;
    Ok(StreamType::new(elem, o.ty.dims[a..].to_vec()))
}

pub fn streamify(o: &Operand) -> R<StreamType> {
    match &o.ty.elem {
        ElemType::Buffer { elem, dims } => {
            let mut out = dims.clone();
            out.extend(o.ty.dims.iter().cloned());
            Ok(StreamType::new(elem.to_elem(), out))
        }
        other => Err(RuleError::new(
            Code::E0306,
            Blame::Operand(0),
            format!(
                "Streamify() needs a stream of Buffer elements, but {} carries {other}",
                o.name
            ),
        )
        .note(found(o))
        .help(Some(
            "Bufferize(a=..) makes tiles; Streamify() turns them back into a stream".into(),
        ))),
    }
}

pub fn promote(b: i64, o: &Operand) -> R<StreamType> {
    let r = o.ty.rank();
    if b < 0 {
        return Err(RuleError::new(
            Code::E0304,
            Blame::Param("b"),
            format!("Promote(b={b}): the position must be ≥ 0"),
        ));
    }
    if b as u64 > r as u64 + 1 {
        return Err(RuleError::new(
            Code::E0303,
            Blame::Param("b"),
            format!(
                "Promote(b={b}) inserts a dim at positions 0..={}, but {}",
                r + 1,
                desc(o)
            ),
        ));
    }
    let b = b as usize;
    let mut dims = o.ty.dims[..b].to_vec();
    dims.push(Dim::ONE);
    dims.extend(o.ty.dims[b..].iter().cloned());
    Ok(StreamType::new(o.ty.elem.clone(), dims))
}

fn list_str(l: &[i64]) -> String {
    let parts: Vec<String> = l.iter().map(i64::to_string).collect();
    format!("[{}]", parts.join(", "))
}

pub fn flatten(l: &[i64], o: &Operand) -> R<(StreamType, Vec<usize>)> {
    let ls = list_str(l);
    let bad = |msg: String| Err(RuleError::new(Code::E0304, Blame::Param("L"), msg));
    let (Some(&first), Some(&last)) = (l.first(), l.last()) else {
        return bad("Flatten(L=[]) needs at least one dim index".into());
    };
    if l.windows(2).any(|w| w[1] != w[0] + 1) {
        return bad(format!(
            "Flatten(L={ls}) needs consecutive ascending dim indices such as [1, 2]"
        ));
    }
    if first < 1 {
        return bad(format!(
            "Flatten(L={ls}): L[0] must be ≥ 1, because the dims in L merge into dim L[0]-1"
        ));
    }
    let r = o.ty.rank();
    if last as u64 > r as u64 {
        return Err(RuleError::new(
            Code::E0303,
            Blame::Param("L"),
            format!(
                "Flatten(L={ls}) needs a stream of rank ≥ {last}, but {}",
                desc(o)
            ),
        )
        .help(placeholder_help("Flatten", "L", last, o).map(|_| {
            format!(
                "to merge the outermost dim of {} too, add a size-1 outer placeholder first \
                 with Promote(b={})",
                o.name,
                r + 1
            )
        })));
    }
    let (first, last) = (first as usize, last as usize);
    let mut merged = o.ty.dims[first - 1].clone();
    for d in &o.ty.dims[first..=last] {
        merged = merged.mul(d).ok_or_else(|| overflow(Blame::Param("L")))?;
    }
    let mut dims = o.ty.dims[..first - 1].to_vec();
    dims.push(merged);
    dims.extend(o.ty.dims[last + 1..].iter().cloned());
    Ok((
        StreamType::new(o.ty.elem.clone(), dims),
        (first..=last).collect(),
    ))
}

fn overflow(blame: Blame) -> RuleError {
    RuleError::new(
        Code::E0314,
        blame,
        "the resulting dimension overflows 64-bit arithmetic".into(),
    )
}

pub fn reshape(l: &[i64], c: &Dim, o: &Operand, env: &DimEnv) -> R<(StreamType, Vec<usize>)> {
    let ls = list_str(l);
    let bad = |msg: String, b| Err(RuleError::new(Code::E0304, b, msg));
    if l.is_empty() {
        return bad(
            "Reshape(L=[]) needs at least one dim index".into(),
            Blame::Param("L"),
        );
    }
    let mut sorted = l.to_vec();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) || sorted[0] < 0 {
        return bad(
            format!("Reshape(L={ls}) needs distinct, non-negative dim indices"),
            Blame::Param("L"),
        );
    }
    if let Some(v) = c.as_int()
        && v < 1
    {
        return bad(
            format!("Reshape(S={v}): the chunk size must be ≥ 1"),
            Blame::Param("S"),
        );
    }
    let r = o.ty.rank();
    if let Some(&i) = sorted.iter().find(|&&i| i as u64 > r as u64) {
        return Err(RuleError::new(
            Code::E0303,
            Blame::Param("L"),
            format!("Reshape(L={ls}) splits dim {i}, but {}", desc(o)),
        ));
    }
    let mut dims = Vec::with_capacity(o.ty.dims.len() + sorted.len());
    for (i, d) in o.ty.dims.iter().enumerate() {
        if sorted.contains(&(i as i64)) {
            let q = d.div(c).ok_or_else(|| overflow(Blame::Param("S")))?;
            let divisible = q.is_integral() || q.eval(env).is_some();
            if !divisible {
                let value = d.eval(env).map(|v| format!(" = {v}")).unwrap_or_default();
                return Err(RuleError::new(
                    Code::E0308,
                    Blame::Param("S"),
                    format!(
                        "Reshape(S={c}) splits dim {i} of {} into [{c}, {d}/{c}], but {c} does not divide {d}{value}",
                        o.name
                    ),
                )
                .note(format!("{} has dims {}", o.name, o.ty.dims_string())));
            }
            dims.push(c.clone());
            dims.push(q);
        } else {
            dims.push(d.clone());
        }
    }
    let l_usize = sorted.iter().map(|&i| i as usize).collect();
    Ok((StreamType::new(o.ty.elem.clone(), dims), l_usize))
}

pub fn repeat(n: &Dim, o: &Operand) -> R<StreamType> {
    if let Some(v) = n.as_int()
        && v < 1
    {
        return Err(RuleError::new(
            Code::E0304,
            Blame::Param("n"),
            format!("Repeat(n={v}): the repeat count must be ≥ 1"),
        ));
    }
    let mut dims = vec![n.clone()];
    dims.extend(o.ty.dims.iter().cloned());
    Ok(StreamType::new(o.ty.elem.clone(), dims))
}

pub fn repeat_ref(data: &Operand, rf: &Operand, env: &DimEnv) -> R<StreamType> {
    let ok =
        rf.ty.dims.len() == data.ty.dims.len() + 1 && dims_eq(&rf.ty.dims[1..], &data.ty.dims, env);
    if !ok {
        let mut want = vec![Dim::sym("X")];
        want.extend(data.ty.dims.iter().cloned());
        return Err(RuleError::new(
            Code::E0305,
            Blame::Operand(1),
            format!(
                "RepeatRef() needs ref's dims to be data's dims plus one innermost dim, but data {} has dims {} and ref {} has dims {}",
                data.name,
                data.ty.dims_string(),
                rf.name,
                rf.ty.dims_string()
            ),
        )
        .note(format!("expected ref dims {}", dims_to_string(&want)))
        .note(format!("found {}: dims {}", rf.name, rf.ty.dims_string())));
    }
    Ok(StreamType::new(data.ty.elem.clone(), rf.ty.dims.clone()))
}

fn selector_x<'a>(op: &str, sel: &'a Operand, idx: usize) -> R<&'a Dim> {
    match &sel.ty.elem {
        ElemType::Multihot(x) => Ok(x),
        other => Err(RuleError::new(
            Code::E0307,
            Blame::Operand(idx),
            format!(
                "{op} needs a selector stream of Multihot(fp32, X) elements, but {} carries {other}",
                sel.name
            ),
        )
        .note(found(sel))),
    }
}

/// ` (E = 2)` for a symbolic dim with a value, else nothing.
fn value_of(x: &Dim, env: &DimEnv) -> String {
    match (x.as_int(), x.eval(env)) {
        (None, Some(v)) => format!(" ({x} = {v})"),
        _ => String::new(),
    }
}

/// Largest branch count accepted (a Partition unrolls into that many streams).
pub const MAX_BRANCHES: i64 = 4096;

/// `Partition(N)` on `(data, sel)`; `op` is the Partition's id (provenance of the fresh dims).
pub fn partition(
    n: &Dim,
    data: &Operand,
    sel: &Operand,
    op: OpId,
    env: &DimEnv,
) -> R<Vec<StreamType>> {
    let x = selector_x("Partition", sel, 1)?;
    let k = sel.ty.dims.len();
    let len = data.ty.dims.len();
    if k > len || !dims_eq(&data.ty.dims[len - k..], &sel.ty.dims, env) {
        return Err(RuleError::new(
            Code::E0305,
            Blame::Operand(1),
            format!(
                "Partition needs the selector's dims {} to equal the outermost {k} dims of {} ({})",
                sel.ty.dims_string(),
                data.name,
                data.ty.dims_string()
            ),
        )
        .note(format!("found {}: dims {}", sel.name, sel.ty.dims_string())));
    }
    if !dim_eq(n, x, env) {
        return Err(RuleError::new(
            Code::E0313,
            Blame::Param("N"),
            format!(
                "Partition(N={n}) must have one branch per selector bit, but {} is Multihot(fp32, {x}){}",
                sel.name,
                value_of(x, env)
            ),
        )
        .help(Some(format!("use Partition(N={x})"))));
    }
    let count = branch_count(n, env, "N")?;
    let chunk = &data.ty.dims[..len - k];
    Ok((0..count)
        .map(|i| {
            let mut dims = chunk.to_vec();
            dims.push(Dim::dynamic(DynDim {
                op,
                branch: i as u32,
            }));
            StreamType::new(data.ty.elem.clone(), dims)
        })
        .collect())
}

/// The concrete number of branches `n` stands for.
pub fn branch_count(n: &Dim, env: &DimEnv, param: &'static str) -> R<usize> {
    match n.eval(env) {
        Some(v) if (1..=MAX_BRANCHES).contains(&v) => Ok(v as usize),
        Some(v) => Err(RuleError::new(
            Code::E0304,
            Blame::Param(param),
            format!("the number of branches must be between 1 and {MAX_BRANCHES}, but {n} = {v}"),
        )),
        None => Err(RuleError::new(
            Code::E0312,
            Blame::Param(param),
            format!("the number of branches {n} has no value in this task"),
        )),
    }
}

/// `Merge(fn)` on `(branches, sel)`; operands are the branches then the selector.
pub fn merge(f: &FnSig, branches: &[Operand], sel: &Operand, env: &DimEnv) -> R<StreamType> {
    need_kind("Merge", f, true)?;
    let n = branches.len();
    let x = selector_x("Merge", sel, n)?;
    let Some(first) = branches.first() else {
        return Err(RuleError::new(
            Code::E0309,
            Blame::Op,
            "Merge needs at least one branch".into(),
        ));
    };
    if x.eval(env) != Some(n as i64) && !dim_eq(x, &Dim::lit(n as i64), env) {
        return Err(RuleError::new(
            Code::E0313,
            Blame::Operand(0),
            format!(
                "Merge needs one branch per selector bit: {} is Multihot(fp32, {x}){}, but {n} branch(es) were given",
                sel.name,
                value_of(x, env)
            ),
        ));
    }
    for (i, b) in branches.iter().enumerate() {
        check_fn_input("Merge", f, b, i, env)?;
        let (d0, di) = (&first.ty.dims, &b.ty.dims);
        if d0.is_empty()
            || d0.len() != di.len()
            || !dims_eq(&d0[..d0.len() - 1], &di[..di.len() - 1], env)
        {
            return Err(RuleError::new(
                Code::E0305,
                Blame::Operand(i),
                format!(
                    "Merge needs branches of equal shape except their outer dim, but {} has dims {} and {} has dims {}",
                    first.name,
                    first.ty.dims_string(),
                    b.name,
                    b.ty.dims_string()
                ),
            ));
        }
    }
    let d0 = &first.ty.dims;
    let mut dims = d0[..d0.len().saturating_sub(1)].to_vec();
    dims.extend(sel.ty.dims.iter().cloned());
    Ok(StreamType::new(f.output.clone(), dims))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stepforge_ir::{FnId, FnKind};
    use stepforge_syntax::Span;

    fn d(s: &str) -> Dim {
        s.parse::<i64>()
            .map(Dim::lit)
            .unwrap_or_else(|_| Dim::sym(s))
    }
    fn st(elem: ElemType, dims: &[&str]) -> StreamType {
        StreamType::new(elem, dims.iter().map(|s| d(s)).collect())
    }
    fn env() -> DimEnv {
        DimEnv::from_statics([("M", 5), ("N", 7), ("K", 9), ("D", 16), ("E", 3)])
    }
    fn sig(input: ElemType, output: ElemType, reducer: bool) -> FnSig {
        FnSig {
            id: FnId::new(0),
            name: "f".into(),
            label: "f".into(),
            kind: if reducer {
                FnKind::Reducer { init: vec![0.0] }
            } else {
                FnKind::Stateless
            },
            input,
            output,
            span: Span::DUMMY,
        }
    }
    fn buf(dims: &[&str]) -> ElemType {
        ElemType::buffer(
            &ElemType::Fp32,
            &dims.iter().map(|s| d(s)).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn accum_scan_and_the_rank_message() {
        let t = st(ElemType::Fp32, &["N", "M"]);
        let o = Operand { name: "E4", ty: &t };
        let f = sig(ElemType::Fp32, ElemType::Fp32, true);
        assert_eq!(
            accum(&f, 1, &o, false, &env()).unwrap().to_string(),
            "fp32 [M]"
        );
        assert_eq!(
            accum(&f, 1, &o, true, &env()).unwrap().to_string(),
            "fp32 [N, M]"
        );
        let e = accum(&f, 2, &o, false, &env()).unwrap_err();
        assert_eq!(e.code, Code::E0303);
        assert_eq!(
            e.message,
            "Accum(b=2) needs a stream of rank ≥ 2, but E4 has rank 1 (dims [N, M])"
        );
        assert!(e.help.unwrap().contains("Promote(b=2)"));
        assert_eq!(
            accum(&f, 0, &o, false, &env()).unwrap_err().code,
            Code::E0304
        );
        let stateless = sig(ElemType::Fp32, ElemType::Fp32, false);
        assert_eq!(
            accum(&stateless, 1, &o, false, &env()).unwrap_err().code,
            Code::E0301
        );
    }

    #[test]
    fn map_wants_exact_input_and_suggests_bufferize() {
        let t = st(ElemType::Fp32, &["D", "N"]);
        let o = Operand { name: "E0", ty: &t };
        let f = sig(buf(&["D"]), ElemType::Fp32, false);
        let e = map(&f, &[o], &env()).unwrap_err();
        assert_eq!(e.code, Code::E0302);
        assert!(e.help.unwrap().starts_with("Bufferize(a=1)"));
        let b = bufferize(1, &o).unwrap();
        assert_eq!(b.to_string(), "Buffer(fp32, [D]) [N]");
        let ob = Operand { name: "B", ty: &b };
        assert_eq!(map(&f, &[ob], &env()).unwrap().to_string(), "fp32 [N]");
        let s = streamify(&ob).unwrap();
        assert_eq!(s, t);
        let t2 = st(ElemType::Fp32, &["D", "N"]);
        let two = [
            o,
            Operand {
                name: "E1",
                ty: &t2,
            },
        ];
        let pair = sig(
            ElemType::tuple(vec![ElemType::Fp32, ElemType::Fp32]),
            ElemType::Fp32,
            false,
        );
        assert!(map(&pair, &two, &env()).is_ok());
    }

    #[test]
    fn shape_ops() {
        let t = st(ElemType::Fp32, &["D", "N", "M"]);
        let o = Operand { name: "x", ty: &t };
        assert_eq!(promote(3, &o).unwrap().dims_string(), "[D, N, M, 1]");
        assert_eq!(promote(4, &o).unwrap_err().code, Code::E0303);
        let (f, l) = flatten(&[1, 2], &o).unwrap();
        assert_eq!(f.dims_string(), "[D*M*N]");
        assert_eq!(l, vec![1, 2]);
        assert_eq!(flatten(&[2, 1], &o).unwrap_err().code, Code::E0304);
        assert_eq!(flatten(&[0], &o).unwrap_err().code, Code::E0304);
        assert_eq!(flatten(&[3], &o).unwrap_err().code, Code::E0303);
        let (r, _) = reshape(&[0], &Dim::lit(4), &o, &env()).unwrap();
        assert_eq!(r.dims_string(), "[4, D/4, N, M]");
        assert_eq!(r.dims[1].eval(&env()), Some(4));
        assert_eq!(
            reshape(&[1], &Dim::lit(2), &o, &env()).unwrap_err().code,
            Code::E0308
        );
        assert_eq!(repeat(&d("K"), &o).unwrap().dims_string(), "[K, D, N, M]");
        assert_eq!(repeat(&Dim::lit(0), &o).unwrap_err().code, Code::E0304);
        assert_eq!(bufferize(3, &o).unwrap_err().code, Code::E0303);
        let b1 = bufferize(1, &o).unwrap();
        let ob = Operand { name: "b", ty: &b1 };
        assert_eq!(
            bufferize(1, &ob).unwrap().to_string(),
            "Buffer(fp32, [D, N]) [M]"
        );
        assert_eq!(streamify(&ob).unwrap(), t);
        assert_eq!(streamify(&o).unwrap_err().code, Code::E0306);
    }

    #[test]
    fn zip_repeatref_and_help_for_missing_dims() {
        let a = st(ElemType::Fp32, &["D", "M"]);
        let b = st(ElemType::Fp32, &["D", "K", "M"]);
        let oa = Operand { name: "A", ty: &a };
        let ob = Operand { name: "B", ty: &b };
        let e = zip(&[oa, ob], &env()).unwrap_err();
        assert_eq!(e.code, Code::E0305);
        assert!(
            e.help
                .unwrap()
                .contains("Bufferize(a=1), Repeat(n=K), Streamify()")
        );
        let r = st(ElemType::Fp32, &["K", "D", "M"]);
        let or = Operand { name: "R", ty: &r };
        assert_eq!(
            repeat_ref(&oa, &or, &env()).unwrap().dims_string(),
            "[K, D, M]"
        );
        assert_eq!(repeat_ref(&oa, &ob, &env()).unwrap_err().code, Code::E0305);
        let z = zip(&[oa, oa], &env()).unwrap();
        assert_eq!(z.elem.to_string(), "[fp32, fp32]");
        assert_eq!(
            bufferize(1, &Operand { name: "z", ty: &z })
                .unwrap_err()
                .code,
            Code::E0307
        );
    }

    #[test]
    fn partition_and_merge_with_dynamic_dims() {
        let data = st(buf(&["D"]), &["N"]);
        let sel = st(ElemType::Multihot(d("E")), &["N"]);
        let od = Operand {
            name: "x",
            ty: &data,
        };
        let os = Operand {
            name: "sel",
            ty: &sel,
        };
        let parts = partition(&d("E"), &od, &os, OpId::new(4), &env()).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].to_string(), "Buffer(fp32, [D]) [P4.2]");
        assert_eq!(
            partition(&Dim::lit(2), &od, &os, OpId::new(4), &env())
                .unwrap_err()
                .code,
            Code::E0313
        );
        assert_eq!(
            partition(&Dim::lit(3), &od, &os, OpId::new(4), &env())
                .unwrap()
                .len(),
            3
        );
        let f = sig(buf(&["D"]), buf(&["D"]), true);
        let ops: Vec<Operand> = parts.iter().map(|t| Operand { name: "p", ty: t }).collect();
        let m = merge(&f, &ops, &os, &env()).unwrap();
        assert_eq!(m.to_string(), "Buffer(fp32, [D]) [N]");
        assert_eq!(
            merge(&f, &ops[..2], &os, &env()).unwrap_err().code,
            Code::E0313
        );
        assert_eq!(
            partition(&d("E"), &od, &od, OpId::new(4), &env())
                .unwrap_err()
                .code,
            Code::E0307
        );
    }
}
