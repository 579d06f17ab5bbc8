//! The one module that runs compiled code (and the GEMM helper that compiled code calls with
//! raw pointers). Everything `unsafe` in the backend is here.
//!
//! Invariants the calls rely on, established by [`Kernel::run`] before every call:
//! - every input, state and output buffer holds `offset + (lanes-1)·lane_stride + len`
//!   elements, where `len` is the element length the kernel was compiled for; every
//!   `input_data` buffer holds exactly the compiled shape's element count; the constant tables
//!   are the kernel's own, built with their nodes' element counts and never written;
//! - scratch holds `scratch_fixed + lanes · scratch_per_lane` elements;
//! - outputs are `&mut` slices, so they alias neither each other nor any input, state or
//!   `input_data` slice (Rust's borrow rules), and generated code stores only to outputs and
//!   scratch (see `codegen.rs`), never to inputs;
//! - every view the analysis (`tir.rs`) builds lies inside its node's buffer (indices and
//!   slices are bounds-checked at compile time), so the generated loops stay in bounds; a
//!   scatter's store address uses an index read at run time, clamped into its dim first;
//! - the GEMM and topk helpers receive only descriptors the generated code built from those
//!   buffers; a topk's destination is a scratch node of its own, so it never overlaps its
//!   source.

#![allow(unsafe_code)]

use cranelift_jit::JITModule;

use crate::codegen::Layout;

/// The JIT memory of one compiled function; freed when the kernel is dropped.
struct Code(Option<JITModule>);

// SAFETY: the module is never used after compilation except to free its memory in `Drop`,
// which has exclusive access; the finalized code itself is immutable and reentrant (all state
// lives in the caller's buffers).
unsafe impl Send for Code {}
// SAFETY: as above: shared references never touch the module.
unsafe impl Sync for Code {}

impl Drop for Code {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            // SAFETY: the function pointer into this memory is owned by the same `Kernel` and
            // dropped with it; no call can be running (calls borrow the kernel).
            unsafe { m.free_memory() };
        }
    }
}

/// A stream field read by a call: lane `l` is `data[offset + l·lane_stride ..][..len]`.
#[derive(Debug, Clone, Copy)]
pub struct In<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub lane_stride: usize,
}

/// A stream field written by a call (same addressing as [`In`]).
#[derive(Debug)]
pub struct Out<'a> {
    pub data: &'a mut [f32],
    pub offset: usize,
    pub lane_stride: usize,
}

/// A compiled element function.
pub struct Kernel {
    code: Code,
    func: usize,
    pub(crate) layout: Layout,
    pub(crate) in_lens: Vec<usize>,
    pub(crate) state_lens: Vec<usize>,
    pub(crate) out_lens: Vec<usize>,
    pub(crate) data_lens: Vec<usize>,
    /// Constant tables (`arange`), passed after the `input_data` buffers.
    tables: Vec<Vec<f32>>,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// A call's buffers do not fit what the kernel was compiled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

fn fits(
    what: &str,
    i: usize,
    offset: usize,
    ls: usize,
    len: usize,
    lanes: usize,
    have: usize,
) -> Result<(), RunError> {
    let need = lanes
        .checked_sub(1)
        .and_then(|l| l.checked_mul(ls))
        .and_then(|x| x.checked_add(offset))
        .and_then(|x| x.checked_add(len));
    match need {
        Some(n) if n <= have => Ok(()),
        _ => Err(RunError(format!(
            "{what} {i}: {lanes} lanes of {len} (stride {ls}, offset {offset}) do not fit {have} elements"
        ))),
    }
}

type Entry = extern "C" fn(*const *mut f32, *const i64, i64, *mut f32);

impl Kernel {
    pub(crate) fn new(
        module: JITModule,
        func: *const u8,
        layout: Layout,
        lens: [Vec<usize>; 4],
        tables: Vec<Vec<f32>>,
    ) -> Kernel {
        let [in_lens, state_lens, out_lens, data_lens] = lens;
        Kernel {
            code: Code(Some(module)),
            func: func as usize,
            layout,
            in_lens,
            state_lens,
            out_lens,
            data_lens,
            tables,
        }
    }

    /// Scratch f32s each lane needs (callers size their chunks by it).
    pub fn scratch_per_lane(&self) -> usize {
        self.layout.scratch_per_lane
    }

    /// Runs the function on `lanes` stream elements at once. `scratch` is reused between
    /// calls. Every buffer is checked against the compiled shapes first.
    pub fn run(
        &self,
        lanes: usize,
        ins: &[In<'_>],
        state: &[In<'_>],
        outs: &mut [Out<'_>],
        data: &[&[f32]],
        scratch: &mut Vec<f32>,
    ) -> Result<(), RunError> {
        let l = &self.layout;
        if ins.len() != l.n_in
            || state.len() != l.n_state
            || outs.len() != l.n_out
            || data.len() != l.n_data
        {
            return Err(RunError("wrong number of buffers".into()));
        }
        if lanes == 0 {
            return Ok(());
        }
        if self.tables.len() != l.n_table {
            return Err(RunError("wrong number of constant tables".into()));
        }
        let mut ptrs: Vec<*mut f32> = Vec::with_capacity(
            ins.len() + state.len() + outs.len() + data.len() + self.tables.len(),
        );
        let mut strides: Vec<i64> = Vec::with_capacity(ins.len() + state.len() + outs.len());
        for (kind, args, lens) in [
            ("input", ins, &self.in_lens),
            ("state", state, &self.state_lens),
        ] {
            for (i, (a, &len)) in args.iter().zip(lens).enumerate() {
                fits(kind, i, a.offset, a.lane_stride, len, lanes, a.data.len())?;
                // The pointer is only read through (see the module invariants).
                ptrs.push(a.data.as_ptr().wrapping_add(a.offset).cast_mut());
                strides.push(i64::try_from(a.lane_stride).map_err(|_| RunError("stride".into()))?);
            }
        }
        for (i, (o, &len)) in outs.iter_mut().zip(&self.out_lens).enumerate() {
            fits(
                "output",
                i,
                o.offset,
                o.lane_stride,
                len,
                lanes,
                o.data.len(),
            )?;
            if lanes > 1 && o.lane_stride < len {
                return Err(RunError(format!("output {i}: lanes overlap")));
            }
            ptrs.push(o.data.as_mut_ptr().wrapping_add(o.offset));
            strides.push(i64::try_from(o.lane_stride).map_err(|_| RunError("stride".into()))?);
        }
        for (i, (d, &len)) in data.iter().zip(&self.data_lens).enumerate() {
            if d.len() != len {
                return Err(RunError(format!(
                    "input_data {i}: {} elements, compiled for {len}",
                    d.len()
                )));
            }
            ptrs.push(d.as_ptr().cast_mut());
        }
        for t in &self.tables {
            // Only read through, like the inputs.
            ptrs.push(t.as_ptr().cast_mut());
        }
        let need = lanes
            .checked_mul(l.scratch_per_lane)
            .and_then(|x| x.checked_add(l.scratch_fixed))
            .ok_or_else(|| RunError("scratch size overflow".into()))?;
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        let lanes_i = i64::try_from(lanes).map_err(|_| RunError("lanes".into()))?;
        // SAFETY: `func` is the finalized entry of `self.code` (alive while `self` is), with the
        // signature `Entry` declared by `codegen::compile`; the buffers satisfy the module
        // invariants checked above.
        let f: Entry = unsafe { std::mem::transmute::<usize, Entry>(self.func) };
        let _keep = &self.code;
        f(
            ptrs.as_ptr(),
            strides.as_ptr(),
            lanes_i,
            scratch.as_mut_ptr(),
        );
        Ok(())
    }
}

/// `c[l] = a[l] · b[l]` for every lane, called by generated code with a descriptor of 16
/// i64s: lanes, m, k, n, a, a_lane_stride, rsa, csa, b, b_lane_stride, rsb, csb, c,
/// c_lane_stride, rsc, csc (pointers as integers, strides in f32 elements).
pub(crate) extern "C" fn gemm_helper(desc: *const i64) {
    // SAFETY: generated code passes a pointer to 16 initialised i64s on its stack.
    let d = unsafe { std::slice::from_raw_parts(desc, 16) };
    let [
        lanes,
        m,
        k,
        n,
        a,
        als,
        rsa,
        csa,
        b,
        bls,
        rsb,
        csb,
        c,
        cls,
        rsc,
        csc,
    ] = <[i64; 16]>::try_from(d).unwrap_or([0; 16]);
    let (a, b, c) = (
        a as usize as *const f32,
        b as usize as *const f32,
        c as usize as *mut f32,
    );
    let us = |x: i64| usize::try_from(x).unwrap_or(0);
    let (lanes, m, k, n) = (us(lanes), us(m), us(k), us(n));
    if lanes == 0 || m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for l in 0..lanes {
            for i in 0..m {
                for j in 0..n {
                    let o = l as isize * cls as isize
                        + i as isize * rsc as isize
                        + j as isize * csc as isize;
                    // SAFETY: inside the output buffer (module invariants).
                    unsafe { *c.offset(o) = 0.0 };
                }
            }
        }
        return;
    }
    // A lane-invariant right operand and one row per lane: one product with a row per lane.
    if bls == 0 && m == 1 {
        // SAFETY: rows l·als of a and l·cls of c are inside their buffers for l < lanes.
        unsafe {
            matrixmultiply::sgemm(
                lanes,
                k,
                n,
                1.0,
                a,
                als as isize,
                csa as isize,
                b,
                rsb as isize,
                csb as isize,
                0.0,
                c,
                cls as isize,
                csc as isize,
            );
        }
        return;
    }
    for l in 0..lanes {
        let li = l as isize;
        // SAFETY: lane l of each operand is inside its buffer (module invariants).
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.offset(li * als as isize),
                rsa as isize,
                csa as isize,
                b.offset(li * bls as isize),
                rsb as isize,
                csb as isize,
                0.0,
                c.offset(li * cls as isize),
                rsc as isize,
                csc as isize,
            );
        }
    }
}

/// `topk` of every lane, called by generated code with a descriptor of 10 i64s: lanes, src,
/// src_lane_stride, outer, n, inner, k, largest, dst, dst_lane_stride (pointers as integers,
/// strides in f32 elements). Lane `l` reads `outer·n·inner` values from
/// `src + l·src_lane_stride` and writes `2·outer·k·inner` (values, then indices) to
/// `dst + l·dst_lane_stride`; [`crate::helpers::topk`] does the work on slices.
pub(crate) extern "C" fn topk_helper(desc: *const i64) {
    // SAFETY: generated code passes a pointer to 10 initialised i64s on its stack.
    let d = unsafe { std::slice::from_raw_parts(desc, 10) };
    let [lanes, src, sls, outer, n, inner, k, largest, dst, dls] =
        <[i64; 10]>::try_from(d).unwrap_or([0; 10]);
    let us = |x: i64| usize::try_from(x).unwrap_or(0);
    let (lanes, outer, n, inner, k) = (us(lanes), us(outer), us(n), us(inner), us(k));
    let (Some(src_len), Some(dst_len)) = (
        outer.checked_mul(n).and_then(|x| x.checked_mul(inner)),
        outer
            .checked_mul(k)
            .and_then(|x| x.checked_mul(inner))
            .and_then(|x| x.checked_mul(2)),
    ) else {
        return;
    };
    if src_len == 0 || dst_len == 0 {
        return;
    }
    let (src, dst) = (src as usize as *const f32, dst as usize as *mut f32);
    let mut order = Vec::with_capacity(n);
    for l in 0..lanes as isize {
        // SAFETY: lane l of the source and of the destination lie inside their buffers (module
        // invariants: the analysis sized both nodes for these shapes, and `Kernel::run` checked
        // the caller's buffers); the destination is a scratch node distinct from the source.
        let (x, out) = unsafe {
            (
                std::slice::from_raw_parts(src.offset(l * sls as isize), src_len),
                std::slice::from_raw_parts_mut(dst.offset(l * dls as isize), dst_len),
            )
        };
        crate::helpers::topk(x, [outer, n, inner], k, largest != 0, out, &mut order);
    }
}
