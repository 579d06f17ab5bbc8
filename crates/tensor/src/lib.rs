//! `stepforge-tensor`: dense f32/i64/bool tensors with torch semantics.
