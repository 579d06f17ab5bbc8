//! Run-time stream values (DESIGN §3 data layout).
//!
//! A stream `[s0, .., sr]` (innermost first) of element type T is one flat f32 buffer per tuple
//! field holding the tensor `(sr, .., s0, element dims..)`, outermost first. The stream dims
//! and the per-field element shape are kept beside the buffer, so the shape-only operators
//! (Bufferize, Streamify, Promote, Flatten, Reshape) change only those small vectors and Copy
//! shares the buffers.
//!
//! Repeat and RepeatRef do not copy either: a field may be a *repeat view* of its buffer
//! ([`FieldData::reps`]). Views live in the flat scalar order, which the shape-only operators
//! never change, so they pass through them untouched. The native Map/Accum/Scan loops read
//! views in place (element offsets from [`FieldData::elem_offset`]); every other consumer gets
//! the materialised buffer ([`FieldData::materialised`]), so a view is never observable.

use std::sync::Arc;

/// One tuple field of a stream: the flat data and the shape of one element of that field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldData {
    pub data: Arc<Vec<f32>>,
    /// Outermost first: `()` for fp32, `(X)` for Multihot, `(bj, .., b0)` for a buffer.
    pub elem_shape: Vec<usize>,
    /// Lazy repeats over the flat scalar order, the first applied to `data` first: `(b, n)`
    /// shows every block of `b` scalars `n` times in a row. Empty: `data` is the value.
    pub reps: Vec<(usize, usize)>,
}

impl FieldData {
    pub fn new(data: Vec<f32>, elem_shape: Vec<usize>) -> FieldData {
        FieldData {
            data: Arc::new(data),
            elem_shape,
            reps: Vec::new(),
        }
    }

    /// Elements of the field's scalar data per stream element.
    pub fn elem_len(&self) -> usize {
        self.elem_shape.iter().product()
    }

    /// Scalars in the field's value (a view counts every repeat).
    pub fn len(&self) -> u64 {
        self.reps.iter().fold(self.data.len() as u64, |a, &(_, n)| {
            a.saturating_mul(n as u64)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The field with each block of `block` scalars shown `n` times in a row (no copy).
    pub fn repeated(mut self, block: usize, n: usize) -> FieldData {
        self.reps.push((block, n));
        self
    }

    /// Where scalar `x` of the value lives in `data`.
    fn source(&self, mut x: usize) -> usize {
        for &(b, n) in self.reps.iter().rev() {
            let span = b.saturating_mul(n).max(1);
            x = (x / span) * b + x % b.max(1);
        }
        x
    }

    /// Where stream element `e` of `len` scalars starts in `data`, when it is contiguous
    /// there (always without a view; with one when every repeated block is a whole number
    /// of elements).
    pub fn elem_offset(&self, e: usize, len: usize) -> Option<usize> {
        if self.reps.is_empty() {
            return e.checked_mul(len);
        }
        if len == 0 || self.reps.iter().any(|&(b, _)| b % len != 0) {
            return None;
        }
        e.checked_mul(len).map(|x| self.source(x))
    }

    /// The longest run of the elements `e0 + k·step` (k < `max`) whose offsets in `data` step
    /// by a constant stride: `(offset of e0, stride, run length ≥ 1)`. `None` when an element
    /// is not contiguous in `data`.
    pub fn affine_run(
        &self,
        e0: usize,
        step: usize,
        len: usize,
        max: usize,
    ) -> Option<(usize, usize, usize)> {
        let o0 = self.elem_offset(e0, len)?;
        if self.reps.is_empty() {
            return Some((o0, step.checked_mul(len)?, max.max(1)));
        }
        if max <= 1 {
            return Some((o0, 0, 1));
        }
        let o1 = self.elem_offset(e0 + step, len)?;
        let Some(stride) = o1.checked_sub(o0) else {
            return Some((o0, 0, 1));
        };
        // One repeat (the common case): whole linear pieces at a time, so the cost grows with
        // the number of pieces the run crosses, not with its lanes.
        let piece = |e: usize| match self.reps.as_slice() {
            [(b, n)] => single_repeat_piece(e, step, b / len, *n).filter(|p| p.0 * len == stride),
            _ => None,
        };
        let mut k = 1;
        while k < max {
            let e = e0 + k * step;
            if self.elem_offset(e, len) != Some(o0 + k * stride) {
                break;
            }
            k = match piece(e) {
                Some((_, run)) => k.saturating_add(run),
                None => k + 1,
            };
        }
        Some((o0, stride, k.min(max)))
    }

    /// The field without a view    /// The field without a view (a copy only when it is one).
    pub fn materialised(&self) -> FieldData {
        if self.reps.is_empty() {
            return self.clone();
        }
        let mut data = self.data.as_ref().clone();
        for &(b, n) in &self.reps {
            let b = b.max(1);
            let mut d = Vec::with_capacity(data.len().saturating_mul(n));
            for chunk in data.chunks(b) {
                for _ in 0..n {
                    d.extend_from_slice(chunk);
                }
            }
            data = d;
        }
        FieldData::new(data, self.elem_shape.clone())
    }
}

/// Under one repeat that shows each block of `b` elements `n` times, a run of the elements
/// `e + k·step` that is linear in the source elements for sure: `(stride in elements, run
/// length ≥ 2)`, or `None` when no such run of two is evident. Source element of `e`:
/// `⌊e / (b·n)⌋·b + e mod b`, linear with slope 1 inside a block and constant across the
/// copies of one period when `step` is a multiple of `b`.
fn single_repeat_piece(e: usize, step: usize, b: usize, n: usize) -> Option<(usize, usize)> {
    let period = b.checked_mul(n)?;
    if b == 0 || step == 0 {
        return None;
    }
    if n <= 1 {
        return Some((step, usize::MAX));
    }
    if step.is_multiple_of(period) {
        return Some(((step / period).checked_mul(b)?, usize::MAX));
    }
    // inside the block holding `e`: slope 1
    let block_end = (e / b + 1).checked_mul(b)?;
    if e + step < block_end {
        return Some((step, (block_end - 1 - e) / step + 1));
    }
    // copies of one block within the period holding `e`: stride 0
    let period_end = (e / period + 1).checked_mul(period)?;
    if step.is_multiple_of(b) && e + step < period_end {
        return Some((0, (period_end - 1 - e) / step + 1));
    }
    None
}

/// The value of one stream: its concrete dims and one [`FieldData`] per tuple field.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamData {
    /// Innermost first, like the stream type.
    pub dims: Vec<usize>,
    pub fields: Vec<FieldData>,
}

impl StreamData {
    /// Number of stream elements (product of the stream dims).
    pub fn count(&self) -> usize {
        self.dims.iter().product()
    }

    /// The full tensor shape of field `i`, outermost first.
    pub fn field_shape(&self, i: usize) -> Vec<usize> {
        let mut s: Vec<usize> = self.dims.iter().rev().copied().collect();
        if let Some(f) = self.fields.get(i) {
            s.extend_from_slice(&f.elem_shape);
        }
        s
    }

    /// Bytes of data this value refers to (shared buffers counted once per field).
    pub fn bytes(&self) -> u64 {
        self.fields
            .iter()
            .map(|f| (f.data.len() as u64).saturating_mul(4))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    /// The value of a view, element by element through `elem_offset`.
    fn through_offsets(f: &FieldData, len: usize) -> Option<Vec<f32>> {
        let count = usize::try_from(f.len()).unwrap() / len;
        let mut out = Vec::new();
        for e in 0..count {
            let o = f.elem_offset(e, len)?;
            out.extend_from_slice(&f.data[o..o + len]);
        }
        Some(out)
    }

    /// The longest affine run found lane by lane (the reference for `affine_run`).
    fn longest_run(f: &FieldData, e0: usize, step: usize, len: usize, max: usize) -> usize {
        let o0 = f.elem_offset(e0, len).unwrap();
        if max <= 1 {
            return 1;
        }
        let Some(s) = f.elem_offset(e0 + step, len).unwrap().checked_sub(o0) else {
            return 1;
        };
        let mut k = 1;
        while k < max && f.elem_offset(e0 + k * step, len) == Some(o0 + k * s) {
            k += 1;
        }
        k
    }

    #[test]
    fn a_repeat_view_reads_like_the_copy() {
        // [a b][c d] with each element twice, then the whole thing three times
        let f = FieldData::new(vec![1.0, 2.0, 3.0, 4.0], vec![2])
            .repeated(2, 2)
            .repeated(8, 3);
        assert_eq!(f.len(), 24);
        let m = f.materialised();
        assert!(m.reps.is_empty());
        assert_eq!(&m.data[..8], &[1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]);
        assert_eq!(through_offsets(&f, 2).unwrap(), *m.data);
        // an element of 4 scalars straddles the inner repeat's blocks of 2: not contiguous
        assert_eq!(f.elem_offset(0, 4), None);
        // element 1 repeats element 0 (stride 0), element 2 starts the next block
        assert_eq!(f.affine_run(0, 1, 2, 10), Some((0, 0, 2)));
        assert_eq!(f.affine_run(2, 1, 2, 10), Some((2, 0, 2)));
    }

    proptest! {
        #[test]
        fn views_agree_with_their_materialisation(
            n_elems in 1usize..6,
            len in 1usize..4,
            reps in proptest::collection::vec((1usize..3, 1usize..4), 1..3),
            step in 1usize..4,
        ) {
            let data: Vec<f32> = (0..n_elems * len).map(|i| i as f32).collect();
            let mut f = FieldData::new(data, vec![len]);
            let mut total = n_elems * len;
            for (blocks, n) in reps {
                // a block of whole elements that divides the current value
                let b = len * blocks;
                if total % b != 0 {
                    continue;
                }
                f = f.repeated(b, n);
                total *= n;
            }
            let m = f.materialised();
            prop_assert_eq!(m.data.len() as u64, f.len());
            prop_assert_eq!(through_offsets(&f, len).unwrap(), m.data.to_vec());
            // every affine run really is affine, and the longest one
            let count = total / len;
            for start in 0..count.min(step * 2) {
                let mut e = start;
                while e < count {
                    let max = (count - e).div_ceil(step);
                    let (o, s, run) = f.affine_run(e, step, len, max).unwrap();
                    prop_assert!(run >= 1 && run <= max);
                    for k in 0..run {
                        prop_assert_eq!(f.elem_offset(e + k * step, len), Some(o + k * s));
                    }
                    prop_assert_eq!(run, longest_run(&f, e, step, len, max));
                    e += run * step;
                }
            }
        }

        /// One repeat, the arithmetic path: larger blocks, counts and steps than above.
        #[test]
        fn single_repeat_runs_are_the_longest_affine_runs(
            n_blocks in 1usize..5,
            blocks in 1usize..7,
            len in 1usize..3,
            n in 1usize..6,
            step in 1usize..13,
        ) {
            let b = blocks * len;
            let data: Vec<f32> = (0..n_blocks * b).map(|i| i as f32).collect();
            let f = FieldData::new(data, vec![len]).repeated(b, n);
            let m = f.materialised();
            prop_assert_eq!(through_offsets(&f, len).unwrap(), m.data.to_vec());
            let count = n_blocks * blocks * n;
            for start in 0..count.min(step + 1) {
                let mut e = start;
                while e < count {
                    let max = (count - e).div_ceil(step);
                    let (o, s, run) = f.affine_run(e, step, len, max).unwrap();
                    prop_assert!(run >= 1 && run <= max);
                    for k in 0..run {
                        let at = o + k * s;
                        prop_assert_eq!(&m.data[(e + k * step) * len..][..len], &f.data[at..at + len]);
                    }
                    prop_assert_eq!(run, longest_run(&f, e, step, len, max));
                    e += run * step;
                }
            }
        }
    }
}
