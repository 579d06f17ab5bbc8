//! Lowering of the tensor IR ([`crate::tir`]) to one Cranelift function.
//!
//! The function has the signature `fn(ptrs: *const *mut f32, lane_strides: *const i64,
//! lanes: i64, scratch: *mut f32)`: `ptrs` holds the base of every input, state, output and
//! `input_data` buffer (in that order), `lane_strides` how far apart (in f32s) consecutive
//! lanes of the inputs, states and outputs are, and `scratch` the intermediates. Every node
//! that is not folded into its consumer becomes one loop nest over `lanes × shape`:
//!
//! - elementwise nodes fuse: a chain of single-use elementwise nodes is one loop with no
//!   intermediate buffer; the innermost loop runs on 4-lane f32 vectors when every operand is
//!   unit-stride or broadcast and no operand needs a helper call;
//! - reductions accumulate sums in f64 (like the interpreter) over their fused operand tree;
//! - products call the GEMM helper once for all lanes when the right operand is lane-invariant.
//!
//! Transcendental functions call the Rust helpers of [`crate::helpers`]. Nothing here is
//! `unsafe`: the generated code is only run by [`crate::runtime`].

use cranelift_codegen::Context;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, F64, F64X2, I8X16, I64};
use cranelift_codegen::ir::{AbiParam, Endianness, InstBuilder, MemFlagsData, Signature, Value};
use cranelift_codegen::isa::CallConv;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, default_libcall_names};

mod select;

use crate::helpers;
use crate::tir::{
    Bin, Graph, NodeKind, Param, R, Red, Un, Unsupported, View, contiguous_strides, numel,
    use_counts,
};

/// Where a node's buffer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    /// Entry of the pointer table.
    Param(usize),
    /// Offset (f32s) in the lane-invariant part of scratch.
    Fixed(usize),
    /// Offset (f32s per lane) in the per-lane part of scratch.
    Lane(usize),
    /// An immediate (constants) or folded into its consumer.
    None,
}

/// The memory layout a compiled function expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub n_in: usize,
    pub n_state: usize,
    pub n_out: usize,
    pub n_data: usize,
    /// Constant tables ([`Param::Table`]), passed after the `input_data` buffers.
    pub n_table: usize,
    /// Scratch f32s independent of the lane count.
    pub scratch_fixed: usize,
    /// Scratch f32s per lane.
    pub scratch_per_lane: usize,
}

pub struct Compiled {
    pub module: JITModule,
    pub func: *const u8,
    pub layout: Layout,
}

/// A read of a buffer (or an immediate) inside a fused loop, with strides over the loop's
/// iteration shape.
#[derive(Debug, Clone)]
enum Tree {
    Imm(f32),
    Leaf {
        node: usize,
        offset: usize,
        strides: Vec<isize>,
    },
    Un(Un, Box<Tree>),
    Bin(Bin, Box<Tree>, Box<Tree>),
    Sel(Box<Tree>, Box<Tree>, Box<Tree>),
}

impl Tree {
    fn leaves<'a>(&'a self, out: &mut Vec<&'a Vec<isize>>) {
        match self {
            Tree::Imm(_) => {}
            Tree::Leaf { strides, .. } => out.push(strides),
            Tree::Un(_, a) => a.leaves(out),
            Tree::Bin(_, a, b) => {
                a.leaves(out);
                b.leaves(out);
            }
            Tree::Sel(c, a, b) => {
                c.leaves(out);
                a.leaves(out);
                b.leaves(out);
            }
        }
    }

    fn leaves_mut(&mut self, f: &mut dyn FnMut(&mut Vec<isize>)) {
        match self {
            Tree::Imm(_) => {}
            Tree::Leaf { strides, .. } => f(strides),
            Tree::Un(_, a) => a.leaves_mut(f),
            Tree::Bin(_, a, b) => {
                a.leaves_mut(f);
                b.leaves_mut(f);
            }
            Tree::Sel(c, a, b) => {
                c.leaves_mut(f);
                a.leaves_mut(f);
                b.leaves_mut(f);
            }
        }
    }

    /// Every operation has a 4-lane vector form.
    fn vectorisable(&self) -> bool {
        match self {
            Tree::Imm(_) | Tree::Leaf { .. } => true,
            Tree::Un(u, a) => vector_un(*u) && a.vectorisable(),
            Tree::Bin(b, x, y) => vector_bin(*b) && x.vectorisable() && y.vectorisable(),
            Tree::Sel(..) => false,
        }
    }

    /// Whether this subtree reads nothing that varies along loop level `d` (every leaf's
    /// stride there is 0) and is more than an immediate: such a subtree is evaluated once per
    /// iteration of the enclosing loops, on scalars, and splat (see `Emit::hoist`).
    fn invariant_at(&self, d: usize) -> bool {
        if matches!(self, Tree::Imm(_)) {
            return false;
        }
        let mut ls = Vec::new();
        self.leaves(&mut ls);
        ls.iter().all(|s| s.get(d).copied().unwrap_or(0) == 0)
    }

    /// Like [`Tree::vectorisable`], but operations without a vector form (helper calls,
    /// selects) are fine inside subtrees invariant along `d`, which are hoisted.
    fn vectorisable_at(&self, d: usize) -> bool {
        if self.invariant_at(d) {
            return true;
        }
        match self {
            Tree::Imm(_) | Tree::Leaf { .. } => true,
            Tree::Un(u, a) => vector_un(*u) && a.vectorisable_at(d),
            Tree::Bin(b, x, y) => vector_bin(*b) && x.vectorisable_at(d) && y.vectorisable_at(d),
            Tree::Sel(..) => false,
        }
    }

    fn leaf_count(&self) -> usize {
        let mut ls = Vec::new();
        self.leaves(&mut ls);
        ls.len()
    }
}

/// The unary operations with a 4-lane vector form.
fn vector_un(u: Un) -> bool {
    matches!(
        u,
        Un::Neg
            | Un::Abs
            | Un::Sqrt
            | Un::Square
            | Un::Reciprocal
            | Un::Identity
            | Un::Floor
            | Un::Ceil
            | Un::Round
    )
}

/// The binary operations with a 4-lane vector form.
fn vector_bin(b: Bin) -> bool {
    matches!(
        b,
        Bin::Add | Bin::Sub | Bin::Mul | Bin::Div | Bin::Max | Bin::Min
    )
}

fn flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

/// Compiles `g` with the Cranelift verifier on when `verify`.
pub fn compile(g: &Graph, n_in: usize, n_state: usize, verify: bool) -> R<Compiled> {
    let fail = |what: &str, e: String| Unsupported(format!("cranelift {what}: {e}"));
    let mut fb = cranelift_codegen::settings::builder();
    use cranelift_codegen::settings::Configurable;
    fb.set("opt_level", "speed")
        .map_err(|e| fail("flags", e.to_string()))?;
    fb.set("enable_verifier", if verify { "true" } else { "false" })
        .map_err(|e| fail("flags", e.to_string()))?;
    let isa = cranelift_native::builder()
        .map_err(|e| fail("host", e.to_string()))?
        .finish(cranelift_codegen::settings::Flags::new(fb))
        .map_err(|e| fail("isa", e.to_string()))?;
    let mut module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let tcfg = module.target_config();
    let ptr = tcfg.pointer_type();
    let mut sig = module.make_signature();
    for _ in 0..4 {
        sig.params.push(AbiParam::new(I64));
    }
    let id = module
        .declare_function("kernel", Linkage::Local, &sig)
        .map_err(|e| fail("declare", e.to_string()))?;
    let mut ctx = module.make_context();
    ctx.func.signature = sig;
    let mut fctx = FunctionBuilderContext::new();
    let layout = {
        let b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let mut cg = Gen::new(b, g, n_in, n_state, ptr)?;
        cg.body()?;
        cg.b.seal_all_blocks();
        cg.b.finalize(tcfg);
        cg.layout
    };
    define(&mut module, id, &mut ctx).map_err(|e| fail("codegen", e))?;
    module
        .finalize_definitions()
        .map_err(|e| fail("finalize", e.to_string()))?;
    let func = module.get_finalized_function(id);
    Ok(Compiled {
        module,
        func,
        layout,
    })
}

fn define(
    module: &mut JITModule,
    id: cranelift_module::FuncId,
    ctx: &mut Context,
) -> Result<(), String> {
    module
        .define_function(id, ctx)
        .map_err(|e| format!("{e:?}"))
}

struct Gen<'a, 'g> {
    b: FunctionBuilder<'a>,
    g: &'g Graph,
    layout: Layout,
    loc: Vec<Loc>,
    inline: Vec<bool>,
    ptrs: Value,
    lstrides: Value,
    lanes: Value,
    scratch: Value,
    ptr_ty: cranelift_codegen::ir::Type,
}

impl<'a, 'g> Gen<'a, 'g> {
    fn new(
        mut b: FunctionBuilder<'a>,
        g: &'g Graph,
        n_in: usize,
        n_state: usize,
        ptr_ty: cranelift_codegen::ir::Type,
    ) -> R<Gen<'a, 'g>> {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let p = b.block_params(entry).to_vec();
        let uses = use_counts(g);
        // A single-use elementwise node read whole by an elementwise node, a reduction or an
        // output folds into that consumer's loop.
        let mut inline = vec![false; g.nodes.len()];
        let mut mark = |v: &View| {
            let n = &g.nodes[v.node];
            if n.kind.is_elementwise() && uses[v.node] == 1 && v.is_identity(&n.shape) {
                inline[v.node] = true;
            }
        };
        for n in &g.nodes {
            if n.kind.is_elementwise()
                || matches!(n.kind, NodeKind::Reduce { .. } | NodeKind::Cat { .. })
            {
                for v in n.kind.operands() {
                    mark(v);
                }
            }
        }
        for v in &g.outputs {
            mark(v);
        }
        let n_out = g.outputs.len();
        let mut layout = Layout {
            n_in,
            n_state,
            n_out,
            n_data: g.data.len(),
            n_table: g.tables.len(),
            scratch_fixed: 0,
            scratch_per_lane: 0,
        };
        let mut loc = Vec::with_capacity(g.nodes.len());
        for (i, n) in g.nodes.iter().enumerate() {
            loc.push(match n.kind {
                NodeKind::Param(Param::Input(k)) => Loc::Param(k),
                NodeKind::Param(Param::State(k)) => Loc::Param(n_in + k),
                NodeKind::Param(Param::Data(k)) => Loc::Param(n_in + n_state + n_out + k),
                NodeKind::Param(Param::Table(k)) => {
                    Loc::Param(n_in + n_state + n_out + g.data.len() + k)
                }
                NodeKind::Const(_) => Loc::None,
                _ if inline[i] => Loc::None,
                _ => {
                    let len = numel(&n.shape).max(1);
                    if n.batched {
                        layout.scratch_per_lane += len;
                        Loc::Lane(layout.scratch_per_lane - len)
                    } else {
                        layout.scratch_fixed += len;
                        Loc::Fixed(layout.scratch_fixed - len)
                    }
                }
            });
        }
        Ok(Gen {
            b,
            g,
            layout,
            loc,
            inline,
            ptrs: p[0],
            lstrides: p[1],
            lanes: p[2],
            scratch: p[3],
            ptr_ty,
        })
    }

    /// The base address and lane stride (in f32s) of node `n`'s buffer.
    fn buffer(&mut self, n: usize) -> (Value, Value) {
        match self.loc[n] {
            Loc::Param(k) => {
                let base = self
                    .b
                    .ins()
                    .load(self.ptr_ty, flags(), self.ptrs, (8 * k) as i32);
                let ls = if k < self.layout.n_in + self.layout.n_state + self.layout.n_out {
                    self.b
                        .ins()
                        .load(I64, flags(), self.lstrides, (8 * k) as i32)
                } else {
                    self.b.ins().iconst(I64, 0)
                };
                (base, ls)
            }
            Loc::Fixed(off) => {
                let base = self.b.ins().iadd_imm_s(self.scratch, (off * 4) as i64);
                let z = self.b.ins().iconst(I64, 0);
                (base, z)
            }
            Loc::Lane(off) => {
                let fixed = self.layout.scratch_fixed as i64;
                // scratch + (fixed + lanes * off) * 4
                let lo = self.b.ins().imul_imm_s(self.lanes, (off * 4) as i64);
                let a = self.b.ins().iadd_imm_s(self.scratch, fixed * 4);
                let base = self.b.ins().iadd(a, lo);
                let ls = self
                    .b
                    .ins()
                    .iconst(I64, numel(&self.g.nodes[n].shape).max(1) as i64);
                (base, ls)
            }
            Loc::None => {
                let z = self.b.ins().iconst(I64, 0);
                (z, z)
            }
        }
    }

    /// The fused expression reading `v` (in `v`'s iteration shape).
    fn tree(&self, v: &View) -> Tree {
        let n = &self.g.nodes[v.node];
        if let NodeKind::Const(c) = n.kind {
            return Tree::Imm(c);
        }
        if self.inline[v.node] {
            match &n.kind {
                NodeKind::Unary(u, a) => return Tree::Un(*u, Box::new(self.tree(a))),
                NodeKind::Binary(op, a, b) => {
                    return Tree::Bin(*op, Box::new(self.tree(a)), Box::new(self.tree(b)));
                }
                NodeKind::Select(c, a, b) => {
                    return Tree::Sel(
                        Box::new(self.tree(c)),
                        Box::new(self.tree(a)),
                        Box::new(self.tree(b)),
                    );
                }
                _ => {}
            }
        }
        Tree::Leaf {
            node: v.node,
            offset: v.offset,
            strides: v.strides.clone(),
        }
    }

    fn body(&mut self) -> R<()> {
        let g = self.g;
        for (i, n) in g.nodes.iter().enumerate() {
            if self.loc[i] == Loc::None || matches!(self.loc[i], Loc::Param(_)) {
                continue;
            }
            let lanes = if n.batched {
                self.lanes
            } else {
                self.b.ins().iconst(I64, 1)
            };
            let (dst, dls) = self.buffer(i);
            match &n.kind {
                NodeKind::Unary(..) | NodeKind::Binary(..) | NodeKind::Select(..) => {
                    // The node's own expression with its operands' trees.
                    let t = match &n.kind {
                        NodeKind::Unary(u, a) => Tree::Un(*u, Box::new(self.tree(a))),
                        NodeKind::Binary(op, a, b) => {
                            Tree::Bin(*op, Box::new(self.tree(a)), Box::new(self.tree(b)))
                        }
                        NodeKind::Select(c, a, b) => Tree::Sel(
                            Box::new(self.tree(c)),
                            Box::new(self.tree(a)),
                            Box::new(self.tree(b)),
                        ),
                        _ => return Err(Unsupported("internal: node kind".into())),
                    };
                    self.elementwise(&t, &n.shape, dst, dls, lanes);
                }
                NodeKind::Reduce { op, src, axes } => {
                    let t = self.tree(src);
                    self.reduce(*op, &t, &src.shape, axes, dst, dls, lanes);
                }
                NodeKind::MatMul(a, b) => self.matmul(a, b, dst, dls, lanes),
                NodeKind::Cat { parts, dim } => self.cat(parts, *dim, &n.shape, dst, dls, lanes),
                NodeKind::TopK {
                    src,
                    dim,
                    k,
                    largest,
                } => self.topk(src, *dim, *k, *largest, dst, dls, lanes),
                NodeKind::Scatter {
                    base,
                    index,
                    src,
                    dim,
                } => {
                    let t = Tree::Un(Un::Identity, Box::new(self.tree(base)));
                    self.elementwise(&t, &n.shape, dst, dls, lanes);
                    self.scatter(index, src, *dim, &n.shape, dst, dls, lanes);
                }
                NodeKind::Param(_) | NodeKind::Const(_) => {}
            }
        }
        let n_in = self.layout.n_in + self.layout.n_state;
        for (j, v) in g.outputs.iter().enumerate() {
            let k = n_in + j;
            let base = self
                .b
                .ins()
                .load(self.ptr_ty, flags(), self.ptrs, (8 * k) as i32);
            let ls = self
                .b
                .ins()
                .load(I64, flags(), self.lstrides, (8 * k) as i32);
            let t = match self.tree(v) {
                leaf @ Tree::Leaf { .. } => Tree::Un(Un::Identity, Box::new(leaf)),
                t => t,
            };
            let lanes = self.lanes;
            self.elementwise(&t, &v.shape, base, ls, lanes);
        }
        self.b.ins().return_(&[]);
        Ok(())
    }

    /// A counted loop `for i in (start..end).step_by(step)` while `i + step <= end`; returns
    /// the first index not run (for a tail loop).
    fn for_loop(
        &mut self,
        start: Value,
        end: Value,
        step: i64,
        mut f: impl FnMut(&mut Self, Value),
    ) -> Value {
        let var: Variable = self.b.declare_var(I64);
        self.b.def_var(var, start);
        let header = self.b.create_block();
        let body = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(var);
        let next = self.b.ins().iadd_imm_s(i, step);
        let c = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, next, end);
        self.b.ins().brif(c, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        self.b.seal_block(body);
        f(self, i);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(var, next);
        self.b.ins().jump(header, &[]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        self.b.use_var(var)
    }

    /// Loads the leaves' lane bases for lane `l`: one (address, strides) per leaf node read.
    fn lane_bases(&mut self, t: &Tree, l: Value, out: &mut Vec<Value>) {
        match t {
            Tree::Imm(_) => {}
            Tree::Leaf { node, offset, .. } => {
                let (base, ls) = self.buffer(*node);
                let lo = self.b.ins().imul(l, ls);
                let lo = self.b.ins().iadd_imm_s(lo, *offset as i64);
                let lo = self.b.ins().ishl_imm_s(lo, 2);
                out.push(self.b.ins().iadd(base, lo));
            }
            Tree::Un(_, a) => self.lane_bases(a, l, out),
            Tree::Bin(_, a, b) => {
                self.lane_bases(a, l, out);
                self.lane_bases(b, l, out);
            }
            Tree::Sel(c, a, b) => {
                self.lane_bases(c, l, out);
                self.lane_bases(a, l, out);
                self.lane_bases(b, l, out);
            }
        }
    }

    /// `dst[lane, ..shape] = t` for every lane.
    fn elementwise(&mut self, t: &Tree, shape: &[usize], dst: Value, dls: Value, lanes: Value) {
        let dstr = contiguous_strides(shape);
        self.elementwise_to(t, shape, dst, dstr, dls, lanes);
    }

    /// `dst[lane, i] = t[i]` for every lane and index `i` of `shape`, `dst` strided by `dstr`.
    fn elementwise_to(
        &mut self,
        t: &Tree,
        shape: &[usize],
        dst: Value,
        mut dstr: Vec<isize>,
        dls: Value,
        lanes: Value,
    ) {
        if numel(shape) == 0 {
            return;
        }
        let mut t = t.clone();
        let ext = merge_dims(shape, &mut t, &mut [&mut dstr]);
        let zero = self.b.ins().iconst(I64, 0);
        self.for_loop(zero, lanes, 1, |s, l| {
            let mut bases = Vec::new();
            s.lane_bases(&t, l, &mut bases);
            let dl = s.b.ins().imul(l, dls);
            let dl = s.b.ins().ishl_imm_s(dl, 2);
            let dbase = s.b.ins().iadd(dst, dl);
            s.nest(&t, &ext, &dstr, &bases, dbase, Vec::new());
        });
    }

    /// Loop level `idx.len()` of a fused elementwise nest.
    fn nest(
        &mut self,
        t: &Tree,
        ext: &[usize],
        dstr: &[isize],
        bases: &[Value],
        dbase: Value,
        idx: Vec<Value>,
    ) {
        let d = idx.len();
        if ext.is_empty() {
            let v = self.eval(t, bases, &[], false);
            self.b.ins().store(flags(), v, dbase, 0);
            return;
        }
        let n = ext[d];
        let end = self.b.ins().iconst(I64, n as i64);
        let zero = self.b.ins().iconst(I64, 0);
        if d + 1 < ext.len() {
            self.for_loop(zero, end, 1, |s, i| {
                let mut idx2 = idx.clone();
                idx2.push(i);
                s.nest(t, ext, dstr, bases, dbase, idx2);
            });
            return;
        }
        let mut leaves = Vec::new();
        t.leaves(&mut leaves);
        let unit = leaves.iter().all(|s| matches!(s[d], 0 | 1)) && dstr[d] == 1;
        let mut start = zero;
        if unit && n >= 4 && t.vectorisable_at(d) {
            // Loop-invariant subtrees (per-lane scalars such as a softmax's running max, and
            // any helper calls on them) are computed once here, not per vector.
            let mut hoisted = Vec::new();
            self.hoist(t, d, bases, &idx, &mut 0, &mut hoisted);
            start = self.for_loop(zero, end, 4, |s, i| {
                let mut all = idx.clone();
                all.push(i);
                let v = s.eval_vector(t, d, bases, &all, &mut 0, &mut hoisted.iter());
                let a = s.addr(dbase, dstr, &all);
                s.b.ins().store(flags(), v, a, 0);
            });
        }
        self.for_loop(start, end, 1, |s, i| {
            let mut all = idx.clone();
            all.push(i);
            let v = s.eval(t, bases, &all, false);
            let a = s.addr(dbase, dstr, &all);
            s.b.ins().store(flags(), v, a, 0);
        });
    }

    /// Evaluates, on scalars, every maximal subtree of `t` invariant along level `d` (in
    /// [`Tree::leaves`] order) and splats each to 4 lanes, for [`Self::eval_vector`].
    /// `idx` holds the indices of the levels before `d`.
    fn hoist(
        &mut self,
        t: &Tree,
        d: usize,
        bases: &[Value],
        idx: &[Value],
        leaf: &mut usize,
        out: &mut Vec<Value>,
    ) {
        if t.invariant_at(d) {
            let x = self.eval_at(t, bases, idx, leaf, false);
            out.push(self.b.ins().splat(F32X4, x));
            return;
        }
        match t {
            Tree::Imm(_) => {}
            Tree::Leaf { .. } => *leaf += 1,
            Tree::Un(_, a) => self.hoist(a, d, bases, idx, leaf, out),
            Tree::Bin(_, a, b) => {
                self.hoist(a, d, bases, idx, leaf, out);
                self.hoist(b, d, bases, idx, leaf, out);
            }
            Tree::Sel(c, a, b) => {
                self.hoist(c, d, bases, idx, leaf, out);
                self.hoist(a, d, bases, idx, leaf, out);
                self.hoist(b, d, bases, idx, leaf, out);
            }
        }
    }

    /// Evaluates `t` on 4 lanes at `idx` (its last index at level `d`), taking the subtrees
    /// invariant along `d` from `hoisted` (made by [`Self::hoist`], same traversal order).
    fn eval_vector<'h>(
        &mut self,
        t: &Tree,
        d: usize,
        bases: &[Value],
        idx: &[Value],
        leaf: &mut usize,
        hoisted: &mut impl Iterator<Item = &'h Value>,
    ) -> Value {
        if t.invariant_at(d) {
            // `hoist` made one value per invariant subtree, in this order; were one missing,
            // evaluating the subtree here gives the same value.
            if let Some(&v) = hoisted.next() {
                *leaf += t.leaf_count();
                return v;
            }
            let x = self.eval_at(t, bases, idx, leaf, false);
            return self.b.ins().splat(F32X4, x);
        }
        match t {
            Tree::Un(u, a) => {
                let x = self.eval_vector(a, d, bases, idx, leaf, hoisted);
                self.unary(*u, x)
            }
            Tree::Bin(op, a, b) => {
                let x = self.eval_vector(a, d, bases, idx, leaf, hoisted);
                let y = self.eval_vector(b, d, bases, idx, leaf, hoisted);
                self.binary(*op, x, y)
            }
            _ => self.eval_at(t, bases, idx, leaf, true),
        }
    }

    /// `base + 4 * Σ idx[d] * strides[d]`.
    fn addr(&mut self, base: Value, strides: &[isize], idx: &[Value]) -> Value {
        let mut a = base;
        for (&s, &i) in strides.iter().zip(idx) {
            if s == 0 {
                continue;
            }
            let o = self.b.ins().imul_imm_s(i, (s * 4) as i64);
            a = self.b.ins().iadd(a, o);
        }
        a
    }

    /// Evaluates `t` at `idx`; `leaf` numbers the leaves in [`Tree::leaves`] order.
    fn eval(&mut self, t: &Tree, bases: &[Value], idx: &[Value], vec: bool) -> Value {
        let mut leaf = 0;
        self.eval_at(t, bases, idx, &mut leaf, vec)
    }

    fn eval_at(
        &mut self,
        t: &Tree,
        bases: &[Value],
        idx: &[Value],
        leaf: &mut usize,
        vec: bool,
    ) -> Value {
        match t {
            Tree::Imm(c) => {
                let x = self.b.ins().f32const(*c);
                if vec { self.b.ins().splat(F32X4, x) } else { x }
            }
            Tree::Leaf { strides, .. } => {
                let base = bases[*leaf];
                *leaf += 1;
                let a = self.addr(base, strides, idx);
                let inner = strides.get(idx.len().wrapping_sub(1)).copied().unwrap_or(0);
                if vec && inner == 1 {
                    self.b.ins().load(F32X4, flags(), a, 0)
                } else {
                    let x = self.b.ins().load(F32, flags(), a, 0);
                    if vec { self.b.ins().splat(F32X4, x) } else { x }
                }
            }
            Tree::Un(u, a) => {
                let x = self.eval_at(a, bases, idx, leaf, vec);
                self.unary(*u, x)
            }
            Tree::Bin(op, a, b) => {
                let x = self.eval_at(a, bases, idx, leaf, vec);
                let y = self.eval_at(b, bases, idx, leaf, vec);
                self.binary(*op, x, y)
            }
            Tree::Sel(c, a, b) => {
                let c = self.eval_at(c, bases, idx, leaf, false);
                let x = self.eval_at(a, bases, idx, leaf, false);
                let y = self.eval_at(b, bases, idx, leaf, false);
                let z = self.b.ins().f32const(0.0);
                let m = self.b.ins().fcmp(FloatCC::NotEqual, c, z);
                self.b.ins().select(m, x, y)
            }
        }
    }

    fn call1(&mut self, f: extern "C" fn(f32) -> f32, x: Value) -> Value {
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params.push(AbiParam::new(F32));
        sig.returns.push(AbiParam::new(F32));
        let sr = self.b.import_signature(sig);
        let callee = self.b.ins().iconst(self.ptr_ty, f as usize as i64);
        let call = self.b.ins().call_indirect(sr, callee, &[x]);
        self.b.inst_results(call)[0]
    }

    fn call2(&mut self, f: extern "C" fn(f32, f32) -> f32, x: Value, y: Value) -> Value {
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params.push(AbiParam::new(F32));
        sig.params.push(AbiParam::new(F32));
        sig.returns.push(AbiParam::new(F32));
        let sr = self.b.import_signature(sig);
        let callee = self.b.ins().iconst(self.ptr_ty, f as usize as i64);
        let call = self.b.ins().call_indirect(sr, callee, &[x, y]);
        self.b.inst_results(call)[0]
    }

    fn unary(&mut self, u: Un, x: Value) -> Value {
        let i = self.b.ins();
        match u {
            Un::Neg => i.fneg(x),
            Un::Abs => i.fabs(x),
            Un::Sqrt => i.sqrt(x),
            Un::Floor => i.floor(x),
            Un::Ceil => i.ceil(x),
            Un::Round => i.nearest(x),
            Un::Identity => x,
            Un::Square => i.fmul(x, x),
            Un::Reciprocal => {
                let ty = self.b.func.dfg.value_type(x);
                let one = self.b.ins().f32const(1.0);
                let one = if ty == F32X4 {
                    self.b.ins().splat(F32X4, one)
                } else {
                    one
                };
                self.b.ins().fdiv(one, x)
            }
            Un::Relu => {
                let z = i.f32const(0.0);
                let c = self.b.ins().fcmp(FloatCC::GreaterThan, x, z);
                self.b.ins().select(c, x, z)
            }
            Un::LogicalNot => {
                let z = i.f32const(0.0);
                let one = self.b.ins().f32const(1.0);
                let c = self.b.ins().fcmp(FloatCC::Equal, x, z);
                self.b.ins().select(c, one, z)
            }
            op => match helpers::unary(op) {
                Some(h) => self.call1(h, x),
                // Unreachable: every op without a helper has its own arm above.
                None => x,
            },
        }
    }

    fn binary(&mut self, op: Bin, x: Value, y: Value) -> Value {
        let cmp = |s: &mut Self, cc: FloatCC| {
            let c = s.b.ins().fcmp(cc, x, y);
            let one = s.b.ins().f32const(1.0);
            let z = s.b.ins().f32const(0.0);
            s.b.ins().select(c, one, z)
        };
        match op {
            Bin::Add => self.b.ins().fadd(x, y),
            Bin::Sub => self.b.ins().fsub(x, y),
            Bin::Mul => self.b.ins().fmul(x, y),
            Bin::Div => self.b.ins().fdiv(x, y),
            Bin::Max => self.b.ins().fmax(x, y),
            Bin::Min => self.b.ins().fmin(x, y),
            Bin::Pow => self.call2(helpers::pow, x, y),
            Bin::Lt => cmp(self, FloatCC::LessThan),
            Bin::Le => cmp(self, FloatCC::LessThanOrEqual),
            Bin::Gt => cmp(self, FloatCC::GreaterThan),
            Bin::Ge => cmp(self, FloatCC::GreaterThanOrEqual),
            Bin::Eq => cmp(self, FloatCC::Equal),
            Bin::Ne => cmp(self, FloatCC::NotEqual),
        }
    }

    /// `dst[lane, kept..] = op over axes of t` (sums accumulate in f64).
    #[allow(clippy::too_many_arguments)]
    fn reduce(
        &mut self,
        op: Red,
        t: &Tree,
        shape: &[usize],
        axes: &[usize],
        dst: Value,
        dls: Value,
        lanes: Value,
    ) {
        // Iteration order: kept dims, then reduced dims.
        let kept: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
        let order: Vec<usize> = kept.iter().chain(axes).copied().collect();
        let mut t = t.clone();
        t.leaves_mut(&mut |s| *s = order.iter().map(|&d| s[d]).collect());
        let kshape: Vec<usize> = kept.iter().map(|&d| shape[d]).collect();
        let rshape: Vec<usize> = axes.iter().map(|&d| shape[d]).collect();
        let count = numel(&rshape).max(1);
        let mut dstr = contiguous_strides(&kshape);
        // Merge within each group; the destination only moves over the kept dims.
        let mut kt = t.clone();
        kt.leaves_mut(&mut |s| s.truncate(kshape.len()));
        let kext = merge_dims(&kshape, &mut kt, &mut [&mut dstr]);
        let mut rt = t.clone();
        rt.leaves_mut(&mut |s| {
            s.drain(..kshape.len());
        });
        let rext = merge_dims(&rshape, &mut rt, &mut []);
        // Recombine: leaf strides = kept (merged) ++ reduced (merged).
        let mut kl = Vec::new();
        collect_strides(&kt, &mut kl);
        let mut rl = Vec::new();
        collect_strides(&rt, &mut rl);
        let mut it = kl.into_iter().zip(rl);
        let mut full = t;
        full.leaves_mut(&mut |s| {
            if let Some((k, r)) = it.next() {
                *s = k.into_iter().chain(r).collect();
            }
        });
        let zero = self.b.ins().iconst(I64, 0);
        self.for_loop(zero, lanes, 1, |s, l| {
            let mut bases = Vec::new();
            s.lane_bases(&full, l, &mut bases);
            let dl = s.b.ins().imul(l, dls);
            let dl = s.b.ins().ishl_imm_s(dl, 2);
            let dbase = s.b.ins().iadd(dst, dl);
            s.reduce_kept(
                op,
                &full,
                &kext,
                &rext,
                &dstr,
                &bases,
                dbase,
                count,
                Vec::new(),
            );
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn reduce_kept(
        &mut self,
        op: Red,
        t: &Tree,
        kext: &[usize],
        rext: &[usize],
        dstr: &[isize],
        bases: &[Value],
        dbase: Value,
        count: usize,
        idx: Vec<Value>,
    ) {
        if idx.len() < kext.len() {
            let zero = self.b.ins().iconst(I64, 0);
            let end = self.b.ins().iconst(I64, kext[idx.len()] as i64);
            self.for_loop(zero, end, 1, |s, i| {
                let mut idx2 = idx.clone();
                idx2.push(i);
                s.reduce_kept(op, t, kext, rext, dstr, bases, dbase, count, idx2);
            });
            return;
        }
        let (ty, init) = match op {
            Red::Sum | Red::Mean => (F64, self.b.ins().f64const(0.0)),
            Red::Max => (F32, self.b.ins().f32const(f32::NEG_INFINITY)),
            Red::Min => (F32, self.b.ins().f32const(f32::INFINITY)),
        };
        let acc = self.b.declare_var(ty);
        self.b.def_var(acc, init);
        self.reduce_inner(op, t, kext.len(), rext, bases, acc, idx.clone());
        let mut r = self.b.use_var(acc);
        if op == Red::Mean {
            let c = self.b.ins().f64const(count as f64);
            r = self.b.ins().fdiv(r, c);
        }
        if ty == F64 {
            r = self.b.ins().fdemote(F32, r);
        }
        let a = self.addr(dbase, dstr, &idx);
        self.b.ins().store(flags(), r, a, 0);
    }

    #[allow(clippy::too_many_arguments)]
    fn reduce_inner(
        &mut self,
        op: Red,
        t: &Tree,
        klen: usize,
        rext: &[usize],
        bases: &[Value],
        acc: Variable,
        idx: Vec<Value>,
    ) {
        let r = idx.len() - klen;
        if r >= rext.len() {
            let x = self.eval(t, bases, &idx, false);
            let a = self.b.use_var(acc);
            let v = match op {
                Red::Sum | Red::Mean => {
                    let x = self.b.ins().fpromote(F64, x);
                    self.b.ins().fadd(a, x)
                }
                Red::Max => self.b.ins().fmax(a, x),
                Red::Min => self.b.ins().fmin(a, x),
            };
            self.b.def_var(acc, v);
            return;
        }
        let zero = self.b.ins().iconst(I64, 0);
        let end = self.b.ins().iconst(I64, rext[r] as i64);
        let mut start = zero;
        if r + 1 == rext.len() && matches!(op, Red::Sum | Red::Mean) && rext[r] >= 8 {
            let mut leaves = Vec::new();
            t.leaves(&mut leaves);
            let d = idx.len();
            if t.vectorisable() && leaves.iter().all(|s| matches!(s.get(d), Some(0 | 1))) {
                start = self.sum_vector(t, bases, acc, &idx, end);
            }
        }
        self.for_loop(start, end, 1, |s, i| {
            let mut idx2 = idx.clone();
            idx2.push(i);
            s.reduce_inner(op, t, klen, rext, bases, acc, idx2);
        });
    }

    /// The innermost reduced loop of a sum on f32x4 values (every leaf unit-stride or
    /// broadcast along it): each vector's four f32 values are widened to two f64x2 and added
    /// to two f64x2 partial sums, which are added into `acc` after the loop. Sums stay f64 like
    /// the interpreter's, only in another order (four interleaved partial sums), so results
    /// agree within f64 rounding. Returns the first index left for the scalar tail.
    fn sum_vector(
        &mut self,
        t: &Tree,
        bases: &[Value],
        acc: Variable,
        idx: &[Value],
        end: Value,
    ) -> Value {
        let zero = self.b.ins().f64const(0.0);
        let z2 = self.b.ins().splat(F64X2, zero);
        let (p0, p1) = (self.b.declare_var(F64X2), self.b.declare_var(F64X2));
        self.b.def_var(p0, z2);
        self.b.def_var(p1, z2);
        // Bytes 8..16 then 0..8: the upper two f32 lanes moved down.
        let mask: Vec<u8> = (8..16).chain(0..8).collect();
        let mask = self.b.func.dfg.immediates.push(mask.into());
        let le = MemFlagsData::new().with_endianness(Endianness::Little);
        let i0 = self.b.ins().iconst(I64, 0);
        let next = self.for_loop(i0, end, 4, |s, i| {
            let mut all = idx.to_vec();
            all.push(i);
            let x = s.eval(t, bases, &all, true);
            let lo = s.b.ins().fvpromote_low(x);
            let xb = s.b.ins().bitcast(I8X16, le, x);
            let hb = s.b.ins().shuffle(xb, xb, mask);
            let h = s.b.ins().bitcast(F32X4, le, hb);
            let hi = s.b.ins().fvpromote_low(h);
            let a0 = s.b.use_var(p0);
            let a0 = s.b.ins().fadd(a0, lo);
            s.b.def_var(p0, a0);
            let a1 = s.b.use_var(p1);
            let a1 = s.b.ins().fadd(a1, hi);
            s.b.def_var(p1, a1);
        });
        let (a0, a1) = (self.b.use_var(p0), self.b.use_var(p1));
        let v = self.b.ins().fadd(a0, a1);
        let l0 = self.b.ins().extractlane(v, 0);
        let l1 = self.b.ins().extractlane(v, 1);
        let part = self.b.ins().fadd(l0, l1);
        let a = self.b.use_var(acc);
        let a = self.b.ins().fadd(a, part);
        self.b.def_var(acc, a);
        next
    }

    /// `dst = a @ b` through the GEMM helper; lanes with a lane-invariant `b` become rows of
    /// one product.
    fn matmul(&mut self, a: &View, b: &View, dst: Value, dls: Value, lanes: Value) {
        let (abase, als) = self.buffer(a.node);
        let (bbase, bls) = self.buffer(b.node);
        let abase = self.b.ins().iadd_imm_s(abase, (a.offset * 4) as i64);
        let bbase = self.b.ins().iadd_imm_s(bbase, (b.offset * 4) as i64);
        let (m, rsa, csa) = match a.shape.len() {
            1 => (1, 0, a.strides[0]),
            _ => (a.shape[0], a.strides[0], a.strides[1]),
        };
        let k = a.shape[a.shape.len() - 1];
        let (n, rsb, csb) = match b.shape.len() {
            1 => (1, b.strides[0], 0),
            _ => (b.shape[1], b.strides[0], b.strides[1]),
        };
        let c = |s: &mut Self, x: i64| s.b.ins().iconst(I64, x);
        let vals = [
            lanes,
            c(self, m as i64),
            c(self, k as i64),
            c(self, n as i64),
            abase,
            als,
            c(self, rsa as i64),
            c(self, csa as i64),
            bbase,
            bls,
            c(self, rsb as i64),
            c(self, csb as i64),
            dst,
            dls,
            c(self, n as i64),
            c(self, 1),
        ];
        self.call_desc(&vals, crate::runtime::gemm_helper);
    }
}

fn collect_strides(t: &Tree, out: &mut Vec<Vec<isize>>) {
    let mut l = Vec::new();
    t.leaves(&mut l);
    out.extend(l.into_iter().cloned());
}

/// Drops size-1 dims and merges adjacent dims that every operand walks contiguously (so a
/// contiguous tensor is one loop); rewrites the strides in place and returns the extents.
fn merge_dims(shape: &[usize], t: &mut Tree, extra: &mut [&mut Vec<isize>]) -> Vec<usize> {
    let mut all: Vec<Vec<isize>> = Vec::new();
    collect_strides(t, &mut all);
    for e in extra.iter() {
        all.push((*e).clone());
    }
    let keep: Vec<usize> = (0..shape.len()).filter(|&d| shape[d] != 1).collect();
    let mut ext: Vec<usize> = Vec::new();
    let mut strides: Vec<Vec<isize>> = vec![Vec::new(); all.len()];
    for &d in &keep {
        let mergeable = !ext.is_empty()
            && all
                .iter()
                .zip(&strides)
                .all(|(s, cur)| cur.last().copied() == Some(s[d] * shape[d] as isize));
        if mergeable {
            if let Some(last) = ext.last_mut() {
                *last *= shape[d];
            }
            for (s, cur) in all.iter().zip(strides.iter_mut()) {
                if let Some(l) = cur.last_mut() {
                    *l = s[d];
                }
            }
        } else {
            ext.push(shape[d]);
            for (s, cur) in all.iter().zip(strides.iter_mut()) {
                cur.push(s[d]);
            }
        }
    }
    let mut it = strides.into_iter();
    t.leaves_mut(&mut |s| {
        if let Some(n) = it.next() {
            *s = n;
        }
    });
    for e in extra.iter_mut() {
        if let Some(n) = it.next() {
            **e = n;
        }
    }
    ext
}
