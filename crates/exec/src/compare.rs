//! Comparing a program's output with the reference (DESIGN §9): exact shape, then
//! `|found - expected| <= atol + rtol * |expected|` element by element.

use stepforge_task::Tolerance;

/// The first element that failed the tolerance test.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mismatch {
    /// Multi-index into the output tensor, outermost first.
    pub index: Vec<usize>,
    pub expected: f64,
    pub found: f64,
}

/// Error statistics of one output field (over all seeds compared so far).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldStats {
    pub max_abs_err: f64,
    /// Largest `|found - expected| / |expected|` over elements with a nonzero expected value.
    pub max_rel_err: f64,
    pub first_mismatch: Option<Mismatch>,
}

impl FieldStats {
    pub fn merge(&mut self, other: FieldStats) {
        self.max_abs_err = self.max_abs_err.max(other.max_abs_err);
        self.max_rel_err = self.max_rel_err.max(other.max_rel_err);
        if self.first_mismatch.is_none() {
            self.first_mismatch = other.first_mismatch;
        }
    }
}

/// Multi-index of flat position `flat` in a row-major tensor of `shape`.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (slot, &d) in idx.iter_mut().zip(shape).rev() {
        if d > 0 {
            *slot = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Compares values of equal shape. Equal values (infinities of one sign included) always
/// match; a NaN on either side never does (torch's `allclose` with `equal_nan=False`).
pub fn compare_values(
    found: &[f32],
    expected: &[f64],
    shape: &[usize],
    tol: Tolerance,
) -> FieldStats {
    let mut st = FieldStats::default();
    for (i, (&f, &e)) in found.iter().zip(expected).enumerate() {
        let f = f64::from(f);
        let ok = if f == e {
            true
        } else if !f.is_finite() || !e.is_finite() {
            false
        } else {
            let d = (f - e).abs();
            st.max_abs_err = st.max_abs_err.max(d);
            if e != 0.0 {
                st.max_rel_err = st.max_rel_err.max(d / e.abs());
            }
            d <= tol.atol + tol.rtol * e.abs()
        };
        if !ok {
            if !f.is_finite() || !e.is_finite() {
                st.max_abs_err = f64::INFINITY;
                st.max_rel_err = f64::INFINITY;
            }
            if st.first_mismatch.is_none() {
                st.first_mismatch = Some(Mismatch {
                    index: unravel(i, shape),
                    expected: e,
                    found: f,
                });
            }
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(0, &[2, 3]), vec![0, 0]);
        assert_eq!(unravel(4, &[2, 3]), vec![1, 1]);
        assert_eq!(unravel(5, &[2, 3, 1]), vec![1, 2, 0]);
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
    }

    #[test]
    fn tolerance_is_atol_plus_rtol() {
        let tol = Tolerance {
            rtol: 0.1,
            atol: 0.01,
        };
        let st = compare_values(&[1.0, 2.05, 0.0], &[1.0, 2.0, 0.005], &[3], tol);
        assert!(st.first_mismatch.is_none());
        let st = compare_values(&[1.0, 2.5, 0.0], &[1.0, 2.0, 0.5], &[3], tol);
        let m = st.first_mismatch.unwrap();
        assert_eq!(m.index, vec![1]);
        assert_eq!((m.expected, m.found), (2.0, 2.5));
        assert!((st.max_abs_err - 0.5).abs() < 1e-12);
        assert!((st.max_rel_err - 1.0).abs() < 1e-12);
    }

    #[test]
    fn nan_never_matches_but_equal_infinities_do() {
        let tol = Tolerance::default();
        let st = compare_values(&[f32::INFINITY, 1.0], &[f64::INFINITY, 1.0], &[2], tol);
        assert!(st.first_mismatch.is_none());
        let st = compare_values(&[f32::NAN], &[f64::NAN], &[1], tol);
        assert!(st.first_mismatch.is_some());
    }
}
