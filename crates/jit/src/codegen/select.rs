//! Code for the nodes that move data rather than compute it: `cat` (a fused copy per part
//! into its slice of the result), `topk` (a call to the runtime's topk entry, which ranks
//! with the tensor crate's order), and `scatter` (a copy of the base, then one store per
//! index position at an address computed from the index, clamped into the dim).

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, I64};
use cranelift_codegen::ir::{
    AbiParam, InstBuilder, Signature, StackSlotData, StackSlotKind, Value,
};
use cranelift_codegen::isa::CallConv;

use super::{Gen, Tree, flags};
use crate::tir::{Un, View, contiguous_strides, numel};

impl Gen<'_, '_> {
    /// Calls `f(desc)` with `vals` stored in a stack descriptor of i64s.
    pub(super) fn call_desc(&mut self, vals: &[Value], f: extern "C" fn(*const i64)) {
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            (vals.len() * 8) as u32,
            3,
        ));
        for (i, &v) in vals.iter().enumerate() {
            self.b
                .ins()
                .stack_store(self.ptr_ty, v, slot, (i * 8) as i32);
        }
        let desc = self.b.ins().stack_addr(self.ptr_ty, slot, 0);
        let mut sig = Signature::new(CallConv::SystemV);
        sig.params.push(AbiParam::new(self.ptr_ty));
        let sr = self.b.import_signature(sig);
        let callee = self.b.ins().iconst(self.ptr_ty, f as usize as i64);
        self.b.ins().call_indirect(sr, callee, &[desc]);
    }

    /// `dst = cat(parts, dim)`: each part is one fused copy into its slice of `dst`.
    pub(super) fn cat(
        &mut self,
        parts: &[View],
        dim: usize,
        shape: &[usize],
        dst: Value,
        dls: Value,
        lanes: Value,
    ) {
        let dstr = contiguous_strides(shape);
        let mut at = 0isize;
        for p in parts {
            let t = match self.tree(p) {
                leaf @ Tree::Leaf { .. } => Tree::Un(Un::Identity, Box::new(leaf)),
                t => t,
            };
            let base = self.b.ins().iadd_imm_s(dst, (at * dstr[dim] * 4) as i64);
            self.elementwise_to(&t, &p.shape, base, dstr.clone(), dls, lanes);
            at += p.shape[dim] as isize;
        }
    }

    /// `dst = [values, indices]` of `topk(src, k, dim)` for every lane, through
    /// `runtime::topk_helper`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn topk(
        &mut self,
        src: &View,
        dim: usize,
        k: usize,
        largest: bool,
        dst: Value,
        dls: Value,
        lanes: Value,
    ) {
        let (base, sls) = self.buffer(src.node);
        let base = self.b.ins().iadd_imm_s(base, (src.offset * 4) as i64);
        let outer = numel(&src.shape[..dim]);
        let inner = numel(&src.shape[dim + 1..]);
        let c = |s: &mut Self, x: usize| s.b.ins().iconst(I64, x as i64);
        let vals = [
            lanes,
            base,
            sls,
            c(self, outer),
            c(self, src.shape[dim]),
            c(self, inner),
            c(self, k),
            c(self, usize::from(largest)),
            dst,
            dls,
        ];
        self.call_desc(&vals, crate::runtime::topk_helper);
    }

    /// `dst[q with q[dim] = index[q]] = src[q]` for every position `q` of the index shape, in
    /// row-major order (`dst` already holds the base). The index is clamped into the dim, so
    /// no store leaves `dst` whatever the index holds (the analysis admits only indices
    /// that fit, so the clamp never changes one).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn scatter(
        &mut self,
        index: &View,
        src: &View,
        dim: usize,
        shape: &[usize],
        dst: Value,
        dls: Value,
        lanes: Value,
    ) {
        let it = Tree::Leaf {
            node: index.node,
            offset: index.offset,
            strides: index.strides.clone(),
        };
        let st = self.tree(src);
        let dstr = contiguous_strides(shape);
        let zero = self.b.ins().iconst(I64, 0);
        self.for_loop(zero, lanes, 1, |s, l| {
            let (mut ib, mut sb) = (Vec::new(), Vec::new());
            s.lane_bases(&it, l, &mut ib);
            s.lane_bases(&st, l, &mut sb);
            let dl = s.b.ins().imul(l, dls);
            let dl = s.b.ins().ishl_imm_s(dl, 2);
            let dbase = s.b.ins().iadd(dst, dl);
            let at = Scatter {
                it: &it,
                st: &st,
                ib: &ib,
                sb: &sb,
                dbase,
                dstr: &dstr,
                dim,
                size: shape[dim],
                ishape: &index.shape,
            };
            s.scatter_nest(&at, Vec::new());
        });
    }

    fn scatter_nest(&mut self, at: &Scatter<'_>, idx: Vec<Value>) {
        if idx.len() < at.ishape.len() {
            let zero = self.b.ins().iconst(I64, 0);
            let end = self.b.ins().iconst(I64, at.ishape[idx.len()] as i64);
            self.for_loop(zero, end, 1, |s, i| {
                let mut idx2 = idx.clone();
                idx2.push(i);
                s.scatter_nest(at, idx2);
            });
            return;
        }
        let iv = self.eval(at.it, at.ib, &idx, false);
        let j = self.b.ins().fcvt_to_sint_sat(I64, iv);
        let lo = self.b.ins().iconst(I64, 0);
        let hi = self.b.ins().iconst(I64, at.size.saturating_sub(1) as i64);
        let below = self.b.ins().icmp(IntCC::SignedLessThan, j, lo);
        let j = self.b.ins().select(below, lo, j);
        let above = self.b.ins().icmp(IntCC::SignedGreaterThan, j, hi);
        let j = self.b.ins().select(above, hi, j);
        let v = self.eval(at.st, at.sb, &idx, false);
        debug_assert_eq!(self.b.func.dfg.value_type(v), F32);
        let mut strides = at.dstr.to_vec();
        strides[at.dim] = 0;
        let a = self.addr(at.dbase, &strides, &idx);
        let o = self.b.ins().imul_imm_s(j, (at.dstr[at.dim] * 4) as i64);
        let a = self.b.ins().iadd(a, o);
        self.b.ins().store(flags(), v, a, 0);
    }
}

/// What every level of a scatter's loop nest reads.
struct Scatter<'a> {
    it: &'a Tree,
    st: &'a Tree,
    ib: &'a [Value],
    sb: &'a [Value],
    dbase: Value,
    dstr: &'a [isize],
    dim: usize,
    size: usize,
    ishape: &'a [usize],
}
