//! Run-time stream values (DESIGN §3 data layout).
//!
//! A stream `[s0, .., sr]` (innermost first) of element type T is one flat f32 buffer per tuple
//! field holding the tensor `(sr, .., s0, element dims..)`, outermost first. The stream dims
//! and the per-field element shape are kept beside the buffer, so the shape-only operators
//! (Bufferize, Streamify, Promote, Flatten, Reshape) change only those small vectors and Copy
//! shares the buffers.

use std::sync::Arc;

/// One tuple field of a stream: the flat data and the shape of one element of that field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldData {
    pub data: Arc<Vec<f32>>,
    /// Outermost first: `()` for fp32, `(X)` for Multihot, `(bj, .., b0)` for a buffer.
    pub elem_shape: Vec<usize>,
}

impl FieldData {
    pub fn new(data: Vec<f32>, elem_shape: Vec<usize>) -> FieldData {
        FieldData {
            data: Arc::new(data),
            elem_shape,
        }
    }

    /// Elements of the field's scalar data per stream element.
    pub fn elem_len(&self) -> usize {
        self.elem_shape.iter().product()
    }
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
