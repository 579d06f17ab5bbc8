//! Evaluation of compiled code.

use std::collections::BTreeMap;
use std::sync::Arc;

use stepforge_diag::Span;
use stepforge_diag::codes::Code as DiagCode;
use stepforge_ir::func::{
    Attr, BinOp, CmpOp, Expr, ExprId, FPart, Index as CIndex, Key, Mode, Slot, Stmt,
    Target as CTarget, UnOp,
};
use stepforge_tensor::{BinaryOp, Index, Tensor};

use super::budget::{Budget, MAX_LIST};
use super::compile::{Compiled, INPUT_SLOT, STATE_SLOT};
use super::funcs::{self, Args, as_int, to_tensor};
use super::value::Value;
use super::{Env, EvalError};

struct Interp<'e> {
    env: &'e Env,
    body: &'e stepforge_ir::func::Body,
    /// Constants, globals and dimension values, by node.
    values: &'e [Option<Value>],
    /// Fuel, memory and the deadline (one budget for tensors and lists).
    b: Budget,
    /// Set while evaluating a tie-aware comparison's perturbed reference (see `ties`).
    ties: Option<super::ties::TieOrder>,
    /// Set while evaluating a rounding draw of the reference: (seed, relative size).
    rounding: Option<(u64, f64)>,
    /// Ops perturbed so far (varies the rounding noise from op to op).
    perturbed_ops: u64,
    slots: Vec<Option<Value>>,
    slot_names: &'e [String],
    /// Dimensions being defined by a `global` block (None elsewhere: `env.dims` is used).
    dims: Option<BTreeMap<String, i64>>,
}

fn tensor_values(ts: Vec<Tensor>) -> Value {
    Value::list(ts.into_iter().map(Value::tensor).collect())
}

pub(crate) fn run(
    code: &Compiled,
    env: &Env,
    inputs: Option<Vec<Tensor>>,
    state: Option<Vec<Tensor>>,
) -> Result<Value, EvalError> {
    let mut it = Interp::new(code, env);
    if code.mode() == Mode::Function {
        it.slots[INPUT_SLOT as usize] = inputs.map(tensor_values);
        it.slots[STATE_SLOT as usize] = state.map(tensor_values);
    }
    it.block(code)
}

pub(crate) fn run_shared(
    code: &Compiled,
    env: &Env,
    inputs: Vec<Arc<Tensor>>,
    state: Option<Vec<Arc<Tensor>>>,
) -> Result<Value, EvalError> {
    let mut it = Interp::new(code, env);
    let wrap = |ts: Vec<Arc<Tensor>>| Value::list(ts.into_iter().map(Value::Tensor).collect());
    if code.mode() == Mode::Function {
        it.slots[INPUT_SLOT as usize] = Some(wrap(inputs));
        it.slots[STATE_SLOT as usize] = state.map(wrap);
    }
    it.block(code)
}

/// Runs the statement ranges `parts` of a snippet body in one frame, in order; the value of
/// each is its last line (or its `return`).
pub(crate) fn run_parts(
    code: &Compiled,
    env: &Env,
    parts: &[std::ops::Range<usize>],
) -> Result<Vec<Value>, EvalError> {
    let mut it = Interp::new(code, env);
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        let stmts = code.body.stmts.get(p.clone()).unwrap_or(&[]);
        out.push(it.stmts(stmts)?);
    }
    Ok(out)
}

pub(crate) type GlobalResult = (BTreeMap<String, Value>, BTreeMap<String, i64>);

pub(crate) fn run_global(code: &Compiled, env: &Env) -> Result<GlobalResult, EvalError> {
    let mut it = Interp::new(code, env);
    it.dims = Some(env.dims.clone());
    it.block(code)?;
    let mut names = BTreeMap::new();
    for (name, v) in code.body.slot_names.iter().zip(it.slots) {
        if let Some(v) = v {
            names.insert(name.clone(), v);
        }
    }
    Ok((names, it.dims.unwrap_or_default()))
}

impl<'e> Interp<'e> {
    fn new(code: &'e Compiled, env: &'e Env) -> Interp<'e> {
        Interp {
            env,
            body: &code.body,
            values: &code.values,
            b: Budget::new(&env.limits),
            ties: super::ties::current(),
            rounding: super::ties::rounding(),
            perturbed_ops: 0,
            slots: vec![None; code.body.slot_names.len()],
            slot_names: &code.body.slot_names,
            dims: None,
        }
    }

    #[inline]
    fn tick(&mut self, n: u64, span: Span) -> Result<(), EvalError> {
        self.b.tick(n, span)
    }

    fn dims(&self) -> &BTreeMap<String, i64> {
        self.dims.as_ref().unwrap_or(&self.env.dims)
    }

    fn block(&mut self, code: &Compiled) -> Result<Value, EvalError> {
        self.stmts(&code.body.stmts)
    }

    /// Runs statements; the value is a `return`'s, else the last line's.
    fn stmts(&mut self, stmts: &[Stmt]) -> Result<Value, EvalError> {
        let mut last = Value::None;
        for s in stmts {
            match s {
                Stmt::Assign(t, e) => {
                    let v = self.expr(*e)?;
                    self.assign(t, v.clone())?;
                    last = v;
                }
                Stmt::Expr(e) => last = self.expr(*e)?,
                Stmt::Return(e) => return self.expr(*e),
            }
        }
        Ok(last)
    }

    fn assign(&mut self, t: &CTarget, v: Value) -> Result<(), EvalError> {
        match t {
            CTarget::Slot(s) => {
                self.slots[*s as usize] = Some(v);
                Ok(())
            }
            CTarget::DimName { slot, dim } => {
                let dims = self.dims.get_or_insert_with(BTreeMap::new);
                let v = match dims.get(&**dim) {
                    // Task-file literals and `--dims` overrides win over the block.
                    Some(&known) => Value::Int(known),
                    None => {
                        if let Some(i) = as_int(&v) {
                            dims.insert(dim.to_string(), i);
                        }
                        v
                    }
                };
                self.slots[*slot as usize] = Some(v);
                Ok(())
            }
            CTarget::Tuple(targets, span) => {
                let items = match &v {
                    Value::List(l) | Value::Tuple(l) => {
                        self.b.work(l.len() as u64, *span)?;
                        l.to_vec()
                    }
                    Value::Tensor(_) | Value::Range(..) => {
                        funcs::iter_items(&v, *span, &mut self.b)?
                    }
                    other => {
                        return Err(EvalError::eval(
                            format!("cannot unpack {}", other.type_name()),
                            *span,
                        ));
                    }
                };
                if items.len() != targets.len() {
                    return Err(EvalError::eval(
                        format!(
                            "cannot unpack {} values into {} names",
                            items.len(),
                            targets.len()
                        ),
                        *span,
                    ));
                }
                for (t, v) in targets.iter().zip(items) {
                    self.assign(t, v)?;
                }
                Ok(())
            }
            CTarget::Ctx(key, span) => {
                let k = self.key(key)?;
                let Some(dims) = self.dims.as_mut() else {
                    return Err(EvalError::eval(
                        "ctx can only be assigned in the global block",
                        *span,
                    ));
                };
                if !dims.contains_key(&*k) {
                    let i = as_int(&v).ok_or_else(|| {
                        EvalError::eval(
                            format!("ctx[{k}] must be an int, not {}", v.type_name()),
                            *span,
                        )
                    })?;
                    dims.insert(k.to_string(), i);
                }
                Ok(())
            }
            CTarget::Item { slot, index, span } => {
                let idx = self.indices(index)?;
                let span = *span;
                let name = self
                    .slot_names
                    .get(*slot as usize)
                    .cloned()
                    .unwrap_or_default();
                let Some(cur) = self.slots[*slot as usize].as_mut() else {
                    return Err(EvalError::eval(
                        format!("name `{name}` is not defined"),
                        span,
                    ));
                };
                match cur {
                    Value::Tensor(t) => {
                        let src = to_tensor(&v).ok_or_else(|| {
                            EvalError::eval(
                                format!("cannot assign {} into a tensor", v.type_name()),
                                span,
                            )
                        })?;
                        Arc::make_mut(t)
                            .index_put(&idx.tensor, &src)
                            .map_err(|e| EvalError::from_tensor(e, span))
                    }
                    Value::List(l) => {
                        let i = match idx.tensor.as_slice() {
                            [Index::Int(i)] => *i,
                            _ => {
                                return Err(EvalError::eval("list indices must be integers", span));
                            }
                        };
                        let n = l.len() as i64;
                        let j = if i < 0 { i + n } else { i };
                        match Arc::make_mut(l).get_mut(usize::try_from(j).unwrap_or(usize::MAX)) {
                            Some(slot) => {
                                check_nesting(std::slice::from_ref(&v), span, &mut self.b)?;
                                *slot = v;
                                Ok(())
                            }
                            None => {
                                Err(EvalError::eval("list assignment index out of range", span))
                            }
                        }
                    }
                    other => Err(EvalError::eval(
                        format!("{} does not support item assignment", other.type_name()),
                        span,
                    )),
                }
            }
        }
    }

    fn key(&mut self, key: &Key) -> Result<Arc<str>, EvalError> {
        match key {
            Key::Const(k) => Ok(k.clone()),
            Key::Dyn(e) => match self.expr(*e)? {
                Value::Str(s) => Ok(s),
                other => Err(EvalError::eval(
                    format!("keys must be strings, not {}", other.type_name()),
                    self.body.span(*e),
                )),
            },
        }
    }

    fn indices(&mut self, items: &[CIndex]) -> Result<Indices, EvalError> {
        let mut out = Vec::with_capacity(items.len());
        for it in items {
            out.push(match it {
                CIndex::Ellipsis => Index::Ellipsis,
                CIndex::Index(e) => {
                    let v = self.expr(*e)?;
                    index_of(&v, self.body.span(*e), &mut self.b)?
                }
                CIndex::Slice(lo, hi, st) => {
                    let body = self.body;
                    let mut part = |e: &Option<ExprId>| -> Result<Option<i64>, EvalError> {
                        match e {
                            None => Ok(None),
                            Some(e) => match self.expr(*e)? {
                                Value::None => Ok(None),
                                v => as_int(&v).map(Some).ok_or_else(|| {
                                    EvalError::eval(
                                        format!(
                                            "slice indices must be integers, not {}",
                                            v.type_name()
                                        ),
                                        body.span(*e),
                                    )
                                }),
                            },
                        }
                    };
                    Index::Slice {
                        start: part(lo)?,
                        stop: part(hi)?,
                        step: part(st)?,
                    }
                }
            });
        }
        Ok(Indices { tensor: out })
    }

    // A plain loop: iterator adapters add several frames per nesting level in debug builds.
    #[inline(never)]
    fn exprs(&mut self, es: &[ExprId]) -> Result<Vec<Value>, EvalError> {
        let mut out = Vec::with_capacity(es.len());
        for e in es {
            out.push(self.expr(*e)?);
        }
        Ok(out)
    }

    // `expr` recurses once per nesting level, so it only dispatches: every arm with locals
    // lives in its own non-inlined method, which keeps the recursive frame small (the parser
    // admits 200 levels, and evaluation may run on 2 MiB thread stacks in debug builds).
    fn expr(&mut self, id: ExprId) -> Result<Value, EvalError> {
        let body = self.body;
        let span = body.span(id);
        self.tick(1, span)?;
        match body.expr(id) {
            Expr::Const(_) | Expr::Global(_) | Expr::DimValue(_) => {
                Ok(self.values[id.0 as usize].clone().unwrap_or(Value::None))
            }
            Expr::Slot(s) => match &self.slots[*s as usize] {
                Some(v) => Ok(v.clone()),
                None => Err(self.unbound(*s, span)),
            },
            Expr::CtxGet(k) => self.ctx_get(k, span),
            Expr::DataGet(k) => self.data_get(k, span),
            Expr::Attr(v, a) => self.attr_expr(*v, *a, span),
            Expr::Call {
                func,
                recv,
                args,
                kwargs,
                inplace,
            } => self.call_expr(*func, *recv, args, kwargs, *inplace, span),
            Expr::CallValue { func, args, kwargs } => self.call_value(*func, args, kwargs, span),
            Expr::Subscript(base, items) => self.subscript_expr(*base, items, span),
            Expr::Binary(op, l, r) => self.binary_expr(*op, *l, *r, span),
            Expr::Unary(op, x) => self.unary_expr(*op, *x, span),
            Expr::Compare(first, rest) => self.compare_expr(*first, rest, span),
            Expr::IfElse { cond, then, orelse } => self.if_expr(*cond, *then, *orelse),
            Expr::List(items) => self.sequence(items, span, false),
            Expr::Tuple(items) => self.sequence(items, span, true),
            Expr::ListComp { elt, target, iter } => self.list_comp(*elt, target, *iter, span),
            Expr::FString(parts) => self.fstring(parts, span),
        }
    }

    #[inline(never)]
    fn sequence(&mut self, items: &[ExprId], span: Span, tuple: bool) -> Result<Value, EvalError> {
        let v = self.exprs(items)?;
        self.b.list(v.len(), span)?;
        check_nesting(&v, span, &mut self.b)?;
        Ok(if tuple {
            Value::tuple(v)
        } else {
            Value::list(v)
        })
    }

    #[inline(never)]
    fn unbound(&self, s: Slot, span: Span) -> EvalError {
        let name = self.slot_names.get(s as usize).map_or("?", String::as_str);
        let msg = match name {
            "state" => "`state` is only defined in reducers (fns with `init`)".to_string(),
            "input" => "`input` is only defined in element functions".to_string(),
            _ => format!("name `{name}` is used before it is assigned"),
        };
        EvalError::eval(msg, span)
    }

    #[inline(never)]
    fn ctx_get(&mut self, k: &Key, span: Span) -> Result<Value, EvalError> {
        let k = self.key(k)?;
        // `ctx["E_value"]` (a key built as f"{E}_value") means dimension E.
        let found = self
            .dims()
            .get(&*k)
            .or_else(|| k.strip_suffix("_value").and_then(|d| self.dims().get(d)));
        match found {
            Some(&v) => Ok(Value::Int(v)),
            None => Err(EvalError::new(
                DiagCode::E0602,
                format!("dimension `{k}` has no value"),
                span,
            )),
        }
    }

    #[inline(never)]
    fn data_get(&mut self, k: &Key, span: Span) -> Result<Value, EvalError> {
        let k = self.key(k)?;
        match self.env.data.get(&*k) {
            Some(t) => Ok(Value::Tensor(t.clone())),
            None => {
                let names = self.env.data.keys().map(String::as_str);
                let hint = stepforge_diag::suggest::closest(&k, names);
                let e = EvalError::new(
                    DiagCode::E0602,
                    format!("input_data has no tensor named '{k}'"),
                    span,
                );
                Err(match hint {
                    Some(c) => e.with_help(format!("did you mean `input_data['{c}']`?")),
                    None => e,
                })
            }
        }
    }

    #[inline(never)]
    fn attr_expr(&mut self, v: ExprId, a: Attr, span: Span) -> Result<Value, EvalError> {
        let v = self.expr(v)?;
        attr(v, a, span)
    }

    #[inline(never)]
    fn call_expr(
        &mut self,
        func: funcs::Func,
        recv: Option<ExprId>,
        args: &[ExprId],
        kwargs: &[(&'static str, ExprId)],
        inplace: Option<Slot>,
        span: Span,
    ) -> Result<Value, EvalError> {
        let mut pos = Vec::with_capacity(args.len() + 1);
        if let Some(r) = recv {
            pos.push(self.expr(r)?);
        }
        for a in args {
            pos.push(self.expr(*a)?);
        }
        let kw = self.kwargs(kwargs)?;
        let out = call_builtin(func, pos, kw, span, &mut self.b)?;
        let out = self.split_ties(super::ties::computes(func), out);
        self.b.result(&out, true, span)?;
        if let Some(s) = inplace {
            self.slots[s as usize] = Some(out.clone());
        }
        Ok(out)
    }

    #[inline(never)]
    fn call_value(
        &mut self,
        func: ExprId,
        args: &[ExprId],
        kwargs: &[(&'static str, ExprId)],
        span: Span,
    ) -> Result<Value, EvalError> {
        let f = self.expr(func)?;
        let pos = self.exprs(args)?;
        let kw = self.kwargs(kwargs)?;
        let computes = match &f {
            Value::Func(func) => super::ties::computes(*func),
            Value::Module(m) => !matches!(m, super::Module::Relu | super::Module::Identity),
            _ => false,
        };
        let out = match f {
            Value::Func(func) => call_builtin(func, pos, kw, span, &mut self.b)?,
            Value::Module(m) => match pos.as_slice() {
                [x] => {
                    let t = to_tensor(x).ok_or_else(|| {
                        EvalError::eval(
                            format!("{}() expects a tensor, not {}", m.name(), x.type_name()),
                            span,
                        )
                    })?;
                    funcs::apply_module(m, &t, span)?
                }
                _ => {
                    return Err(EvalError::eval(
                        format!("{}() takes exactly one tensor", m.name()),
                        span,
                    ));
                }
            },
            other => {
                return Err(EvalError::eval(
                    format!("{} is not callable", other.type_name()),
                    span,
                ));
            }
        };
        let out = self.split_ties(computes, out);
        self.b.result(&out, true, span)?;
        Ok(out)
    }

    #[inline(never)]
    fn subscript_expr(
        &mut self,
        base: ExprId,
        items: &[CIndex],
        span: Span,
    ) -> Result<Value, EvalError> {
        let b = self.expr(base)?;
        // Fast path for `input[0]` / `state[1]`: no index vector.
        if let (Value::List(l) | Value::Tuple(l), [CIndex::Index(ie)]) = (&b, items) {
            let iv = self.expr(*ie)?;
            if let Value::Int(i) = iv {
                return seq_item(l, i, span);
            }
            let idx = Indices {
                tensor: vec![index_of(&iv, self.body.span(*ie), &mut self.b)?],
            };
            let out = subscript(b, idx, span, &mut self.b)?;
            self.charge_tensor(&out, span)?;
            return Ok(out);
        }
        match b {
            Value::Ctx | Value::InputData => {
                let key = match items {
                    [CIndex::Index(k)] => match self.expr(*k)? {
                        Value::Str(s) => s,
                        other => {
                            return Err(EvalError::eval(
                                format!("keys must be strings, not {}", other.type_name()),
                                self.body.span(*k),
                            ));
                        }
                    },
                    _ => return Err(EvalError::eval("expected one key", span)),
                };
                let k = Key::Const(key);
                self.tick(1, span)?;
                if matches!(b, Value::Ctx) {
                    self.ctx_get(&k, span)
                } else {
                    self.data_get(&k, span)
                }
            }
            _ => {
                let idx = self.indices(items)?;
                let out = subscript(b, idx, span, &mut self.b)?;
                self.charge_tensor(&out, span)?;
                Ok(out)
            }
        }
    }

    #[inline(never)]
    fn binary_expr(
        &mut self,
        op: BinOp,
        l: ExprId,
        r: ExprId,
        span: Span,
    ) -> Result<Value, EvalError> {
        let a = self.expr(l)?;
        let b = self.expr(r)?;
        let out = binop(op, a, b, span, &mut self.b)?;
        let out = self.split_ties(true, out);
        self.charge_tensor(&out, span)?;
        Ok(out)
    }

    #[inline(never)]
    fn unary_expr(&mut self, op: UnOp, x: ExprId, span: Span) -> Result<Value, EvalError> {
        let v = self.expr(x)?;
        unop(op, v, span)
    }

    #[inline(never)]
    fn compare_expr(
        &mut self,
        first: ExprId,
        rest: &[(CmpOp, ExprId)],
        span: Span,
    ) -> Result<Value, EvalError> {
        let mut left = self.expr(first)?;
        for (op, e) in rest {
            let right = self.expr(*e)?;
            let r = compare(*op, &left, &right, span, &mut self.b)?;
            if rest.len() == 1 {
                return Ok(r);
            }
            // A chain `a < b < c` is `a < b and b < c`.
            if !py_truthy(&r, span)? {
                return Ok(Value::Bool(false));
            }
            left = right;
        }
        Ok(Value::Bool(true))
    }

    #[inline(never)]
    fn if_expr(&mut self, c: ExprId, a: ExprId, b: ExprId) -> Result<Value, EvalError> {
        let cv = self.expr(c)?;
        if py_truthy(&cv, self.body.span(c))? {
            self.expr(a)
        } else {
            self.expr(b)
        }
    }

    #[inline(never)]
    fn list_comp(
        &mut self,
        elt: ExprId,
        target: &CTarget,
        iter: ExprId,
        span: Span,
    ) -> Result<Value, EvalError> {
        let it = self.expr(iter)?;
        let mut out = Vec::new();
        if let Value::Range(a, b, s) = it {
            let n = funcs::range_len(a, b, s);
            // Fail before looping when the budget cannot cover the iterations.
            if n > self.b.fuel() {
                return self.tick(n, span).map(|()| Value::None);
            }
            if n > MAX_LIST as u64 {
                return Err(EvalError::new(
                    DiagCode::E0701,
                    format!("list comprehension of {n} items exceeds the limit of {MAX_LIST}"),
                    span,
                ));
            }
            self.b.list(n as usize, span)?;
            for i in 0..n {
                self.tick(1, span)?;
                self.assign(target, Value::Int(a + (i as i64) * s))?;
                out.push(self.expr(elt)?);
            }
        } else {
            let items = funcs::iter_items(&it, self.body.span(iter), &mut self.b)?;
            self.b.list(items.len(), span)?;
            for item in items {
                self.tick(1, span)?;
                self.assign(target, item)?;
                out.push(self.expr(elt)?);
            }
        }
        check_nesting(&out, span, &mut self.b)?;
        Ok(Value::list(out))
    }

    #[inline(never)]
    fn fstring(&mut self, parts: &[FPart], span: Span) -> Result<Value, EvalError> {
        let mut s = String::new();
        for p in parts {
            match p {
                FPart::Lit(l) => s.push_str(l),
                FPart::Expr(e) => {
                    let v = self.expr(*e)?;
                    // Bounded rendering: a list shared many times over (`a = [a, a]` 30
                    // times) has 2^30 leaves; stop at the string limit.
                    v.write_py_str(&mut s, MAX_LIST + 1);
                }
            }
            if s.len() > MAX_LIST {
                return Err(EvalError::new(
                    DiagCode::E0701,
                    format!(
                        "a string of {} bytes exceeds the limit of {MAX_LIST}",
                        s.len()
                    ),
                    span,
                ));
            }
        }
        self.b.result(&Value::Str(Arc::from("")), false, span)?;
        self.b.work(s.len() as u64, span)?;
        Ok(Value::Str(Arc::from(s)))
    }

    fn kwargs(
        &mut self,
        kwargs: &[(&'static str, ExprId)],
    ) -> Result<Vec<(&'static str, Value)>, EvalError> {
        kwargs
            .iter()
            .map(|(k, e)| Ok((*k, self.expr(*e)?)))
            .collect()
    }

    /// `out` with its exact ties split when a perturbed reference is being evaluated and the
    /// op computed new values (`computes`).
    fn split_ties(&mut self, computes: bool, out: Value) -> Value {
        if !computes {
            return out;
        }
        let out = match (self.ties, &out) {
            (Some(order), Value::Tensor(t)) => super::ties::split(t, order)
                .map(Value::tensor)
                .unwrap_or(out),
            _ => out,
        };
        match (self.rounding, &out) {
            (Some((seed, rel)), Value::Tensor(t)) => {
                self.perturbed_ops += 1;
                super::ties::round_noise(t, seed, rel, self.perturbed_ops)
                    .map(Value::tensor)
                    .unwrap_or(out)
            }
            _ => out,
        }
    }

    /// Tensor work costs fuel too (one step per 1024 elements produced) and counts in the
    /// memory budget. Lists built by operators and slicing were reserved where they were built.
    fn charge_tensor(&mut self, v: &Value, span: Span) -> Result<(), EvalError> {
        if matches!(v, Value::Tensor(_)) {
            self.b.result(v, false, span)?;
        }
        Ok(())
    }
}

/// How deeply lists and tuples may nest at run time. `x = [x]` repeated over many statements
/// would otherwise build a value whose recursive drop or printing overflows the stack.
const MAX_VALUE_NEST: usize = 64;

/// Calls a torch function (or method) with evaluated arguments.
fn call_builtin(
    func: funcs::Func,
    pos: Vec<Value>,
    kw: Vec<(&'static str, Value)>,
    span: Span,
    b: &mut Budget,
) -> Result<Value, EvalError> {
    funcs::call(
        func,
        Args {
            pos,
            kw,
            span,
            func,
        },
        b,
    )
}

/// The nesting depth of `v` (capped at `cap`), visiting each distinct list once: lists are
/// shared (`a = [a, a]` thirty times is a DAG of 31 lists with 2^30 paths), so the depth of a
/// list already seen comes from `memo` (keyed by address; every list is alive for the whole
/// walk, so addresses are not reused). Visiting an item costs list work.
fn nest_depth(
    v: &Value,
    cap: usize,
    memo: &mut std::collections::HashMap<usize, usize>,
    b: &mut Budget,
    span: Span,
) -> Result<usize, EvalError> {
    let (Value::List(l) | Value::Tuple(l)) = v else {
        return Ok(0);
    };
    let key = Arc::as_ptr(l) as usize;
    if let Some(&d) = memo.get(&key) {
        return Ok(d);
    }
    let d = if cap == 0 {
        1
    } else {
        b.work(l.len() as u64, span)?;
        let mut deepest = 0;
        for x in l.iter() {
            if matches!(x, Value::List(_) | Value::Tuple(_)) {
                deepest = deepest.max(nest_depth(x, cap - 1, memo, b, span)?);
            }
        }
        1 + deepest
    };
    memo.insert(key, d);
    Ok(d)
}

fn check_nesting(items: &[Value], span: Span, b: &mut Budget) -> Result<(), EvalError> {
    let mut memo = std::collections::HashMap::new();
    let mut deepest = 0;
    for v in items {
        if matches!(v, Value::List(_) | Value::Tuple(_)) {
            deepest = deepest.max(nest_depth(v, MAX_VALUE_NEST, &mut memo, b, span)?);
        }
    }
    if deepest >= MAX_VALUE_NEST {
        return Err(EvalError::eval(
            format!("lists nest more than {MAX_VALUE_NEST} levels deep"),
            span,
        ));
    }
    Ok(())
}

pub(crate) struct Indices {
    tensor: Vec<Index>,
}

fn index_of(v: &Value, span: Span, b: &mut Budget) -> Result<Index, EvalError> {
    Ok(match v {
        Value::Int(i) => Index::Int(*i),
        Value::Bool(b) => Index::Tensor(Tensor::scalar_bool(*b)),
        Value::None => Index::NewAxis,
        Value::Tensor(t) => {
            if t.ndim() == 0 && t.dtype() == stepforge_tensor::DType::I64 {
                Index::Int(as_int(v).unwrap_or(0))
            } else if t.dtype() == stepforge_tensor::DType::F32 {
                return Err(EvalError::eval(
                    "tensors used as indices must be long, int or bool",
                    span,
                ));
            } else {
                Index::Tensor((**t).clone())
            }
        }
        Value::List(_) | Value::Tuple(_) => {
            let t = funcs::tensor_from_value(v, None, span, b)?;
            if t.dtype() == stepforge_tensor::DType::F32 {
                return Err(EvalError::eval("list indices must be integers", span));
            }
            Index::Tensor(t)
        }
        other => {
            return Err(EvalError::eval(
                format!("cannot index with {}", other.type_name()),
                span,
            ));
        }
    })
}

/// `l[i]` of a Python list or tuple (negative `i` counts from the end).
fn seq_item(l: &[Value], i: i64, span: Span) -> Result<Value, EvalError> {
    let n = l.len() as i64;
    let j = if i < 0 { i + n } else { i };
    usize::try_from(j)
        .ok()
        .and_then(|j| l.get(j))
        .cloned()
        .ok_or_else(|| {
            EvalError::eval(
                format!("index {i} is out of range for a sequence of length {n}"),
                span,
            )
        })
}

fn subscript(base: Value, idx: Indices, span: Span, b: &mut Budget) -> Result<Value, EvalError> {
    match base {
        Value::Tensor(t) => t
            .index(&idx.tensor)
            .map(Value::tensor)
            .map_err(|e| EvalError::from_tensor(e, span)),
        Value::List(l) | Value::Tuple(l) => {
            let n = l.len();
            match idx.tensor.as_slice() {
                [Index::Int(i)] => seq_item(&l, *i, span),
                [Index::Slice { start, stop, step }] => {
                    // Reuse the tensor crate's slice rules on the positions.
                    let pos = Tensor::from_i64(vec![n], (0..n as i64).collect())
                        .and_then(|p| {
                            p.index(&[Index::Slice {
                                start: *start,
                                stop: *stop,
                                step: *step,
                            }])
                        })
                        .map_err(|e| EvalError::from_tensor(e, span))?;
                    b.list(pos.numel(), span)?;
                    let picked = pos
                        .as_i64()
                        .unwrap_or(&[])
                        .iter()
                        .filter_map(|&i| l.get(i as usize).cloned())
                        .collect();
                    Ok(Value::list(picked))
                }
                _ => Err(EvalError::eval(
                    "sequence indices must be an int or a slice",
                    span,
                )),
            }
        }
        other => Err(EvalError::eval(
            format!("{} is not subscriptable", other.type_name()),
            span,
        )),
    }
}

fn attr(v: Value, a: Attr, span: Span) -> Result<Value, EvalError> {
    let te = |e| EvalError::from_tensor(e, span);
    match (a, &v) {
        (Attr::Values | Attr::Indices, Value::Tuple(items)) if items.len() == 2 => {
            Ok(items[usize::from(matches!(a, Attr::Indices))].clone())
        }
        (_, Value::Tensor(t)) => match a {
            Attr::T => t.t_all().map(Value::tensor).map_err(te),
            Attr::MT => t.transpose(-2, -1).map(Value::tensor).map_err(te),
            Attr::Shape => Ok(funcs::shape_value(t.shape())),
            Attr::Dtype => Ok(Value::DType(t.dtype())),
            Attr::Ndim => Ok(Value::Int(t.ndim() as i64)),
            Attr::Data => Ok(v.clone()),
            Attr::Values | Attr::Indices => Err(EvalError::eval(
                "`.values`/`.indices` exist only on the results of topk, max and sort",
                span,
            )),
        },
        _ => Err(EvalError::eval(
            format!("{} has no such attribute", v.type_name()),
            span,
        )),
    }
}

pub(crate) fn py_truthy(v: &Value, span: Span) -> Result<bool, EvalError> {
    Ok(match v {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(x) => *x != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::List(l) | Value::Tuple(l) => !l.is_empty(),
        Value::Range(a, b, s) => funcs::range_len(*a, *b, *s) > 0,
        Value::Tensor(t) => t.truthy().map_err(|e| EvalError::from_tensor(e, span))?,
        _ => true,
    })
}

fn tensor_binop(op: BinOp) -> Option<BinaryOp> {
    Some(match op {
        BinOp::Add => BinaryOp::Add,
        BinOp::Sub => BinaryOp::Sub,
        BinOp::Mul => BinaryOp::Mul,
        BinOp::Div => BinaryOp::Div,
        BinOp::FloorDiv => BinaryOp::FloorDiv,
        BinOp::Mod => BinaryOp::Rem,
        BinOp::Pow => BinaryOp::Pow,
        BinOp::MatMul => return None,
    })
}

fn op_str(op: BinOp) -> &'static str {
    op.as_str()
}

enum Num {
    I(i64),
    F(f64),
}

fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::I(i64::from(*b))),
        Value::Int(i) => Some(Num::I(*i)),
        Value::Float(x) => Some(Num::F(*x)),
        _ => None,
    }
}

fn py_arith(op: BinOp, a: Num, b: Num, span: Span) -> Result<Value, EvalError> {
    let overflow = || EvalError::eval(format!("integer overflow in `{}`", op_str(op)), span);
    let zero = || EvalError::eval("division by zero", span);
    match (a, b) {
        (Num::I(x), Num::I(y)) => Ok(match op {
            BinOp::Add => Value::Int(x.checked_add(y).ok_or_else(overflow)?),
            BinOp::Sub => Value::Int(x.checked_sub(y).ok_or_else(overflow)?),
            BinOp::Mul => Value::Int(x.checked_mul(y).ok_or_else(overflow)?),
            BinOp::Div => {
                if y == 0 {
                    return Err(zero());
                }
                Value::Float(x as f64 / y as f64)
            }
            BinOp::FloorDiv | BinOp::Mod => {
                if y == 0 {
                    return Err(zero());
                }
                let q = x.checked_div(y).ok_or_else(overflow)?;
                let r = x - q * y;
                let (q, r) = if r != 0 && ((r < 0) != (y < 0)) {
                    (q - 1, r + y)
                } else {
                    (q, r)
                };
                Value::Int(if op == BinOp::FloorDiv { q } else { r })
            }
            BinOp::Pow => {
                if y >= 0 {
                    let e = u32::try_from(y).map_err(|_| overflow())?;
                    Value::Int(x.checked_pow(e).ok_or_else(overflow)?)
                } else {
                    Value::Float((x as f64).powf(y as f64))
                }
            }
            BinOp::MatMul => {
                return Err(EvalError::eval("`@` needs tensors, not numbers", span));
            }
        }),
        (a, b) => {
            let x = match a {
                Num::I(i) => i as f64,
                Num::F(f) => f,
            };
            let y = match b {
                Num::I(i) => i as f64,
                Num::F(f) => f,
            };
            Ok(Value::Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => {
                    if y == 0.0 {
                        return Err(zero());
                    }
                    x / y
                }
                BinOp::FloorDiv => {
                    if y == 0.0 {
                        return Err(zero());
                    }
                    (x / y).floor()
                }
                BinOp::Mod => {
                    if y == 0.0 {
                        return Err(zero());
                    }
                    let r = x % y;
                    if r != 0.0 && ((r < 0.0) != (y < 0.0)) {
                        r + y
                    } else {
                        r
                    }
                }
                BinOp::Pow => x.powf(y),
                BinOp::MatMul => {
                    return Err(EvalError::eval("`@` needs tensors, not numbers", span));
                }
            }))
        }
    }
}

/// A binary operator on two values with Python/torch semantics.
pub(crate) fn binop(
    op: BinOp,
    a: Value,
    b: Value,
    span: Span,
    bud: &mut Budget,
) -> Result<Value, EvalError> {
    if let (Some(x), Some(y)) = (num(&a), num(&b)) {
        return py_arith(op, x, y, span);
    }
    let te = |e| EvalError::from_tensor(e, span);
    if (matches!(a, Value::Tensor(_)) || matches!(b, Value::Tensor(_)))
        && let (Some(x), Some(y)) = (to_tensor(&a), to_tensor(&b))
    {
        return match tensor_binop(op) {
            Some(bop) => x.binary(bop, &y).map(Value::tensor).map_err(te),
            None => x.matmul(&y).map(Value::tensor).map_err(te),
        };
    }
    // Reserve a new list or string before building it (the cap, its memory, the copying).
    match (op, &a, &b) {
        (BinOp::Add, Value::List(x), Value::List(y))
        | (BinOp::Add, Value::Tuple(x), Value::Tuple(y)) => {
            bud.list(x.len().saturating_add(y.len()), span)?;
        }
        (BinOp::Add, Value::Str(x), Value::Str(y)) => {
            bud.list(x.len().saturating_add(y.len()) / 8, span)?;
            if x.len() + y.len() > MAX_LIST {
                return Err(EvalError::new(
                    DiagCode::E0701,
                    format!(
                        "a string of {} bytes exceeds the limit of {MAX_LIST}",
                        x.len() + y.len()
                    ),
                    span,
                ));
            }
        }
        (BinOp::Mul, Value::List(l), Value::Int(n))
        | (BinOp::Mul, Value::Int(n), Value::List(l)) => {
            bud.list(
                l.len().saturating_mul(usize::try_from(*n).unwrap_or(0)),
                span,
            )?;
        }
        _ => {}
    }
    match (op, &a, &b) {
        (BinOp::Add, Value::List(x), Value::List(y)) => {
            Ok(Value::list(x.iter().chain(y.iter()).cloned().collect()))
        }
        (BinOp::Add, Value::Tuple(x), Value::Tuple(y)) => {
            Ok(Value::tuple(x.iter().chain(y.iter()).cloned().collect()))
        }
        (BinOp::Add, Value::Str(x), Value::Str(y)) => Ok(Value::Str(Arc::from(format!("{x}{y}")))),
        (BinOp::Mul, Value::List(l), Value::Int(n))
        | (BinOp::Mul, Value::Int(n), Value::List(l)) => {
            let n = usize::try_from(*n).unwrap_or(0);
            Ok(Value::list(
                std::iter::repeat_n(l.iter(), n)
                    .flatten()
                    .cloned()
                    .collect(),
            ))
        }
        _ => {
            let e = EvalError::eval(
                format!(
                    "unsupported operand types for {}: {} and {}",
                    op_str(op),
                    a.type_name(),
                    b.type_name()
                ),
                span,
            );
            let sym = [&a, &b].into_iter().find_map(|v| match v {
                Value::Str(s) if s.chars().all(|c| c.is_alphanumeric() || c == '_') => Some(s),
                _ => None,
            });
            Err(match sym {
                Some(s) => e.with_help(format!(
                    "a bare dimension name is a symbol; its value is `{s}_value` or `ctx[{s}]`"
                )),
                None => e,
            })
        }
    }
}

fn unop(op: UnOp, v: Value, span: Span) -> Result<Value, EvalError> {
    match (op, &v) {
        (UnOp::Not, _) => Ok(Value::Bool(!py_truthy(&v, span)?)),
        (UnOp::Pos, Value::Int(_) | Value::Float(_) | Value::Tensor(_)) => Ok(v),
        (UnOp::Pos, Value::Bool(b)) => Ok(Value::Int(i64::from(*b))),
        (UnOp::Neg, Value::Int(i)) => i
            .checked_neg()
            .map(Value::Int)
            .ok_or_else(|| EvalError::eval("integer overflow in `-`", span)),
        (UnOp::Neg, Value::Bool(b)) => Ok(Value::Int(-i64::from(*b))),
        (UnOp::Neg, Value::Float(x)) => Ok(Value::Float(-x)),
        (UnOp::Neg, Value::Tensor(t)) => t
            .neg()
            .map(Value::tensor)
            .map_err(|e| EvalError::from_tensor(e, span)),
        _ => Err(EvalError::eval(
            format!("bad operand type for unary operator: {}", v.type_name()),
            span,
        )),
    }
}

fn tensor_cmp(op: CmpOp) -> stepforge_tensor::CmpOp {
    match op {
        CmpOp::Lt => stepforge_tensor::CmpOp::Lt,
        CmpOp::Le => stepforge_tensor::CmpOp::Le,
        CmpOp::Gt => stepforge_tensor::CmpOp::Gt,
        CmpOp::Ge => stepforge_tensor::CmpOp::Ge,
        CmpOp::Eq => stepforge_tensor::CmpOp::Eq,
        CmpOp::Ne => stepforge_tensor::CmpOp::Ne,
    }
}

/// A comparison with Python/torch semantics (tensors compare elementwise to bool tensors).
pub(crate) fn compare(
    op: CmpOp,
    a: &Value,
    b: &Value,
    span: Span,
    bud: &mut Budget,
) -> Result<Value, EvalError> {
    if (matches!(a, Value::Tensor(_)) || matches!(b, Value::Tensor(_)))
        && let (Some(x), Some(y)) = (to_tensor(a), to_tensor(b))
    {
        return x
            .compare(tensor_cmp(op), &y)
            .map(Value::tensor)
            .map_err(|e| EvalError::from_tensor(e, span));
    }
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        let ord = match (x, y) {
            (Num::I(x), Num::I(y)) => x.partial_cmp(&y),
            (x, y) => {
                let f = |n: Num| match n {
                    Num::I(i) => i as f64,
                    Num::F(f) => f,
                };
                f(x).partial_cmp(&f(y))
            }
        };
        use std::cmp::Ordering::*;
        return Ok(Value::Bool(match op {
            CmpOp::Lt => ord == Some(Less),
            CmpOp::Le => matches!(ord, Some(Less | Equal)),
            CmpOp::Gt => ord == Some(Greater),
            CmpOp::Ge => matches!(ord, Some(Greater | Equal)),
            CmpOp::Eq => ord == Some(Equal),
            CmpOp::Ne => ord != Some(Equal),
        }));
    }
    let eq = py_eq(a, b, bud, span)?;
    match (op, eq) {
        (CmpOp::Eq, Some(e)) => Ok(Value::Bool(e)),
        (CmpOp::Ne, Some(e)) => Ok(Value::Bool(!e)),
        (CmpOp::Eq, None) => Ok(Value::Bool(false)),
        (CmpOp::Ne, None) => Ok(Value::Bool(true)),
        _ => Err(EvalError::eval(
            format!("cannot order {} and {}", a.type_name(), b.type_name()),
            span,
        )),
    }
}

/// Python `==` on non-tensor values (sequences compare element by element; the nesting of
/// values is bounded, so the recursion is too). Every item compared is list work: comparing
/// `[[0]*10**6]*10**6` with a copy of itself runs out of fuel instead of taking hours.
fn py_eq(a: &Value, b: &Value, bud: &mut Budget, span: Span) -> Result<Option<bool>, EvalError> {
    let f = |n: Num| match n {
        Num::I(i) => i as f64,
        Num::F(f) => f,
    };
    Ok(Some(match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Str(x), Value::Str(y)) => {
            bud.work(x.len().min(y.len()) as u64 / 8, span)?;
            x == y
        }
        (Value::DType(x), Value::DType(y)) => x == y,
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            if x.len() != y.len() {
                return Ok(Some(false));
            }
            for (p, q) in x.iter().zip(y.iter()) {
                bud.work(1, span)?;
                let same = match (num(p), num(q)) {
                    (Some(Num::I(i)), Some(Num::I(j))) => i == j,
                    (Some(m), Some(n)) => f(m) == f(n),
                    _ => py_eq(p, q, bud, span)?.unwrap_or(false),
                };
                if !same {
                    return Ok(Some(false));
                }
            }
            true
        }
        _ => return Ok(None),
    }))
}
