//! Comparing a program's output with the reference (DESIGN §9): exact shape, then
//! `|found - expected| <= atol + rtol * |expected|` element by element.
//!
//! At model dims two more pieces keep the comparison sound (both documented in DESIGN §9):
//! - [`effective_tolerance`]: the tolerance widens with the reduction depth feeding the output
//!   (f32 rounding grows like `eps32 * sqrt(depth)`), unless the user fixed it by flag.
//! - [`compare_tie_aware`]: output positions where the *reference itself* is ill-conditioned
//!   (it moves beyond tolerance when its inputs are perturbed by noise of the size of the
//!   tolerance, e.g. a token whose top-k choice is a near-tie) are excused rather than counted
//!   as mismatches, up to a capped fraction of the output.
//!
//! This module only compares numbers; evaluating the perturbed reference is the caller's job
//! ([`perturb_f32`] makes the noise deterministically).

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
    /// Elements that failed the tolerance but were excused as ill-conditioned in the reference
    /// ([`compare_tie_aware`]); 0 for a plain comparison.
    pub excused: usize,
    /// Elements compared.
    pub compared: usize,
}

impl FieldStats {
    pub fn merge(&mut self, other: FieldStats) {
        self.max_abs_err = self.max_abs_err.max(other.max_abs_err);
        self.max_rel_err = self.max_rel_err.max(other.max_rel_err);
        if self.first_mismatch.is_none() {
            self.first_mismatch = other.first_mismatch;
        }
        self.excused += other.excused;
        self.compared += other.compared;
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
    // `compare_with(.., within)` fused into one pass: every candidate of a session compares
    // its outputs here, and the closure's second look at each pair (equality, finiteness,
    // the difference) was a fifth of the comparison. Same statistics, same first mismatch.
    let mut st = FieldStats {
        compared: found.len().min(expected.len()),
        ..FieldStats::default()
    };
    let mut first: Option<(usize, f64, f64)> = None;
    for (i, (&f, &e)) in found.iter().zip(expected).enumerate() {
        let f = f64::from(f);
        if f == e {
            continue;
        }
        let bad = if f.is_finite() && e.is_finite() {
            let d = (f - e).abs();
            st.max_abs_err = st.max_abs_err.max(d);
            if e != 0.0 {
                st.max_rel_err = st.max_rel_err.max(d / e.abs());
            }
            // `<=` as in `within`: a NaN tolerance matches nothing
            let ok = d <= tol.atol + tol.rtol * e.abs();
            !ok
        } else {
            st.max_abs_err = f64::INFINITY;
            st.max_rel_err = f64::INFINITY;
            true
        };
        if bad && first.is_none() {
            first = Some((i, f, e));
        }
    }
    st.first_mismatch = first.map(|(i, found, expected)| Mismatch {
        index: unravel(i, shape),
        expected,
        found,
    });
    st
}

/// `f` matches `e` under `tol`: equal values (infinities of one sign included) always do, a
/// NaN on either side never does.
fn within(f: f64, e: f64, tol: Tolerance) -> bool {
    f == e || (f.is_finite() && e.is_finite() && (f - e).abs() <= tol.atol + tol.rtol * e.abs())
}

/// The one comparison loop: error statistics over every element, the first element `ok`
/// rejects as the mismatch.
fn compare_with(
    found: &[f32],
    expected: &[f64],
    shape: &[usize],
    mut ok: impl FnMut(usize, f64, f64) -> bool,
) -> FieldStats {
    let mut st = FieldStats {
        compared: found.len().min(expected.len()),
        ..FieldStats::default()
    };
    for (i, (&f, &e)) in found.iter().zip(expected).enumerate() {
        let f = f64::from(f);
        if f != e {
            if f.is_finite() && e.is_finite() {
                let d = (f - e).abs();
                st.max_abs_err = st.max_abs_err.max(d);
                if e != 0.0 {
                    st.max_rel_err = st.max_rel_err.max(d / e.abs());
                }
            } else {
                st.max_abs_err = f64::INFINITY;
                st.max_rel_err = f64::INFINITY;
            }
        }
        if !ok(i, f, e) && st.first_mismatch.is_none() {
            st.first_mismatch = Some(Mismatch {
                index: unravel(i, shape),
                expected: e,
                found: f,
            });
        }
    }
    st
}

/// Machine epsilon of program values (f32), the unit of the depth term.
pub const EPS_F32: f64 = f32::EPSILON as f64;

/// The depth constant `c` of [`effective_tolerance`]. Sequential or blocked f32 summation of
/// `depth` terms has an error with standard deviation about `0.35 * eps32 * sqrt(depth)` times
/// the result's magnitude (each partial sum rounds once, relative error `eps32 / 2`); `c = 4`
/// keeps the largest of a million such errors (≈ 5 standard deviations) inside the bound with a
/// factor of two to spare.
pub const DEPTH_C: f64 = 4.0;

/// How the tolerance of one output field is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToleranceRule {
    /// The task's `tolerance:` (or the defaults), or the `--rtol/--atol` flags.
    pub base: Tolerance,
    /// The longest chain of reduction (summed) elements feeding the output, e.g. `K` for a
    /// matmul over `K`; at least 1. Computed by the caller from the IR and the instance.
    pub depth: u64,
    /// The user fixed the tolerance with `--rtol/--atol`: use `base` exactly.
    pub exact: bool,
}

/// The tolerance an output field is compared with (DESIGN §9):
///
/// ```text
/// g        = DEPTH_C * EPS_F32 * sqrt(max(depth, 1))
/// rtol_eff = max(rtol, g)
/// atol_eff = max(atol, g * rms(expected))
/// ```
///
/// The `rms` term is there because a reduction's rounding error scales with the magnitude of
/// its terms, not of its result: an element that cancels to nearly zero keeps the absolute
/// error of its neighbours. Non-finite expected values don't count towards the rms. With
/// `rule.exact` the base tolerance is returned unchanged.
pub fn effective_tolerance(rule: ToleranceRule, expected: &[f64]) -> Tolerance {
    tolerance_with_rms(rule, expected_rms(expected))
}

/// The rms of the finite values of `expected` (0 when there are none): the magnitude term of
/// [`effective_tolerance`]. It depends only on the reference's output, so a verification
/// cache computes it once per seed and field ([`crate::cache::SeedData`]).
pub fn expected_rms(expected: &[f64]) -> f64 {
    let (sum_sq, n) = expected
        .iter()
        .filter(|e| e.is_finite())
        .fold((0.0f64, 0usize), |(s, n), e| (s + e * e, n + 1));
    if n == 0 {
        0.0
    } else {
        (sum_sq / n as f64).sqrt()
    }
}

/// [`effective_tolerance`] given the expected values' rms ([`expected_rms`]).
pub fn tolerance_with_rms(rule: ToleranceRule, rms: f64) -> Tolerance {
    if rule.exact {
        return rule.base;
    }
    let g = DEPTH_C * EPS_F32 * (rule.depth.max(1) as f64).sqrt();
    Tolerance {
        rtol: rule.base.rtol.max(g),
        atol: rule.base.atol.max(g * rms),
    }
}

/// Default cap on the fraction of an output's elements [`compare_tie_aware`] may excuse by
/// the looser rule (the program no farther from the reference than the draws).
pub const MAX_EXCUSED_FRACTION: f64 = 0.1;

/// Cap on the fraction of elements excused because the program agrees with one perturbed
/// draw (one consistent resolution of the reference's ties).
pub const MAX_MATCHED_FRACTION: f64 = 0.5;

/// Tie-aware comparison (DESIGN §9). `perturbed` are the reference's values for the same seed
/// with its floating-point inputs perturbed by a relative noise of about the tolerance (see
/// [`perturb_f32`]); one or more draws, each of `expected`'s length (others are ignored).
///
/// An element that fails `tol` is *excused* when the reference itself is ill-conditioned
/// there: some perturbed draw moved it beyond `tol` (`!within(p, e)`), and the program's value
/// is no farther from the reference than the farthest draw plus `tol`
/// (`|f - e| <= atol + rtol*|e| + max_draw |p - e|`). So a near-tie that the program decides the
/// other way (a flipped top-k choice and everything downstream of it) is not a mismatch, while a
/// program that is wrong where the reference is stable still is. An element where the program
/// is within `tol` of the draw it agrees with most is excused by agreement (it is the
/// reference's own answer for nearby inputs or f32 tie resolutions), up to
/// [`MAX_MATCHED_FRACTION`] of the elements. When more than `max_excused_fraction` of the
/// elements would need the looser excuse, or more than the matched cap agreement, the excuse is
/// withdrawn: the first failing element is the mismatch (a mostly ill-conditioned output says
/// nothing).
pub fn compare_tie_aware(
    found: &[f32],
    expected: &[f64],
    perturbed: &[&[f64]],
    shape: &[usize],
    tol: Tolerance,
    max_excused_fraction: f64,
) -> FieldStats {
    compare_rounding_aware(
        found,
        expected,
        perturbed,
        &[],
        shape,
        tol,
        max_excused_fraction,
    )
}

/// [`compare_tie_aware`] with a per-element tolerance widened by the reference's own f32
/// rounding sensitivity: `rounding` are draws of the reference with every value an arithmetic
/// builtin computes multiplied by `1 + u·k·eps32` (a model of evaluating the same math in
/// another order, see `eval::ties`), and element `i` may differ from the reference by
/// `tol + max_draw |r_i - e_i|` before it counts as failing. This is a tolerance, not an
/// excuse (uncapped): `sin` of an angle near 1000 moves by 1e-4 when the angle is rounded
/// differently, which no f32 program can avoid, while a wrong program differs by far more.
pub fn compare_rounding_aware(
    found: &[f32],
    expected: &[f64],
    perturbed: &[&[f64]],
    rounding: &[&[f64]],
    shape: &[usize],
    tol: Tolerance,
    max_excused_fraction: f64,
) -> FieldStats {
    let rounding: Vec<&[f64]> = rounding
        .iter()
        .copied()
        .filter(|p| p.len() == expected.len())
        .collect();
    let widen = |i: usize, e: f64| -> Tolerance {
        let w = rounding
            .iter()
            .map(|r| (r[i] - e).abs())
            .filter(|d| d.is_finite())
            .fold(0.0f64, f64::max);
        Tolerance {
            atol: tol.atol + w,
            rtol: tol.rtol,
        }
    };
    let draws: Vec<&[f64]> = perturbed
        .iter()
        .copied()
        .filter(|p| p.len() == expected.len())
        .collect();
    let sensitivity = |i: usize, e: f64| -> Option<f64> {
        let mut moved = false;
        let mut s = 0.0f64;
        for p in &draws {
            let v = p[i];
            if !within(v, e, tol) {
                moved = true;
            }
            s = s.max(if v.is_finite() && e.is_finite() {
                (v - e).abs()
            } else {
                f64::INFINITY
            });
        }
        moved.then_some(s)
    };
    // The draw the program agrees with most where it fails the plain test: one consistent
    // resolution of the ties (a program that takes each tie its own way matches no single
    // draw everywhere).
    let best = (0..draws.len()).max_by_key(|&d| {
        (0..expected.len().min(found.len()))
            .filter(|&i| {
                let (f, e) = (f64::from(found[i]), expected[i]);
                !within(f, e, tol) && within(f, draws[d][i], tol)
            })
            .count()
    });
    // Within the tolerance once widened by how far splitting exact f32 ties moves the
    // reference there (also an excused near-tie, counted as one).
    let tie_rounding = |i: usize, f: f64, e: f64| !rounding.is_empty() && within(f, e, widen(i, e));
    let mut excused = 0usize;
    let mut loose = 0usize;
    let mut matched = 0usize;
    let mut st = compare_with(found, expected, shape, |i, f, e| {
        if within(f, e, tol) {
            return true;
        }
        if tie_rounding(i, f, e) {
            excused += 1;
            return true;
        }
        if !(f.is_finite() && e.is_finite()) {
            return false;
        }
        let Some(s) = sensitivity(i, e) else {
            return false;
        };
        excused += 1;
        // The program agrees with the best draw there: it computed the reference's own
        // answer for inputs (or f32 tie resolutions) within the noise.
        if best.is_some_and(|d| within(f, draws[d][i], tol)) {
            matched += 1;
            return true;
        }
        let ok = (f - e).abs() <= tol.atol + tol.rtol * e.abs() + s;
        loose += usize::from(ok);
        excused -= usize::from(!ok);
        ok
    });
    // A tie decides a whole row downstream (one token of N = 7 is 14% of the output), so
    // agreement with one consistent draw has its own, wider cap.
    let cap = (max_excused_fraction.clamp(0.0, 1.0) * st.compared as f64).floor() as usize;
    let matched_cap =
        (MAX_MATCHED_FRACTION.max(max_excused_fraction) * st.compared as f64).floor() as usize;
    if loose > cap || matched > matched_cap {
        // Too much of the output leans on the excuse: compare plainly (rounding widening
        // still applies).
        let mut widened = 0usize;
        st = compare_with(found, expected, shape, |i, f, e| {
            let rounded = !within(f, e, tol) && tie_rounding(i, f, e);
            widened += usize::from(rounded);
            within(f, e, tol) || rounded
        });
        st.excused = widened;
    } else {
        st.excused = excused;
    }
    st
}

/// Multiplies each value by `1 + rel * u` with `u` uniform in `[-1, 1)` from a fixed
/// generator (xorshift64*): the input noise for [`compare_tie_aware`]'s perturbed reference.
/// Draws come in antithetic pairs: seeds `2j` and `2j + 1` use the same `u` with opposite
/// signs, so a near-tie between two inputs flips in one of the pair unless their noise happens
/// to be equal to within the tie's margin. Use both seeds of a pair. Non-finite values and
/// zeros stay as they are.
pub fn perturb_f32(values: &mut [f32], rel: f64, seed: u64) {
    let mut s = (seed >> 1) ^ 0x9E37_79B9_7F4A_7C15;
    let sign = if seed & 1 == 0 { 1.0 } else { -1.0 };
    for v in values.iter_mut() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        let r = s.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let u = (r >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        if v.is_finite() {
            *v = (f64::from(*v) * (1.0 + sign * rel * u)) as f32;
        }
    }
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

    #[test]
    fn effective_tolerance_follows_depth_unless_exact() {
        let base = Tolerance::default();
        let e = [3.0, -4.0];
        let shallow = effective_tolerance(
            ToleranceRule {
                base,
                depth: 1,
                exact: false,
            },
            &e,
        );
        assert_eq!(shallow.rtol, base.rtol);
        assert_eq!(shallow.atol, base.atol);
        let deep = effective_tolerance(
            ToleranceRule {
                base,
                depth: 1024,
                exact: false,
            },
            &e,
        );
        let g = DEPTH_C * EPS_F32 * 32.0;
        assert!((deep.rtol - g).abs() < 1e-18);
        // rms of [3, -4] is sqrt(12.5).
        assert!((deep.atol - g * 12.5f64.sqrt()).abs() < 1e-15);
        let exact = effective_tolerance(
            ToleranceRule {
                base,
                depth: 1 << 20,
                exact: true,
            },
            &e,
        );
        assert_eq!(exact, base);
        let nan_only = effective_tolerance(
            ToleranceRule {
                base,
                depth: 4,
                exact: false,
            },
            &[f64::NAN],
        );
        assert_eq!(nan_only.atol, base.atol);
    }

    /// Top-1 routing: token t's output is `table[argmax(logits[t])]` (first maximum wins).
    fn route(logits: &[f32], experts: usize, table: &[f64]) -> Vec<f64> {
        logits
            .chunks(experts)
            .map(|row| {
                let mut best = 0;
                for (j, &x) in row.iter().enumerate() {
                    if x > row[best] {
                        best = j;
                    }
                }
                table[best]
            })
            .collect()
    }

    /// 100 tokens over 4 experts; tokens 0..near are near-ties between experts 0 and 1 (one f32
    /// ulp apart).
    fn logits(near: usize) -> Vec<f32> {
        let mut l = Vec::new();
        for t in 0..100 {
            let base = (t % 7) as f32 * 0.1;
            if t < near {
                let top = base + 1.0;
                l.extend([top, f32::from_bits(top.to_bits() + 1), base, base - 0.5]);
            } else {
                l.extend([base + 1.0, base + 0.5, base, base - 0.5]);
            }
        }
        l
    }

    fn draws(l: &[f32], table: &[f64], n: u64) -> Vec<Vec<f64>> {
        (0..n)
            .map(|seed| {
                let mut p = l.to_vec();
                perturb_f32(&mut p, 1e-4, seed);
                route(&p, 4, table)
            })
            .collect()
    }

    #[test]
    fn exact_tie_splits_count_as_excused() {
        // A one-element routing flip on an exact tie: only the tie-splitting ("rounding")
        // draw moves the reference there, and the program took that side.
        let expected = vec![1.0, 2.0, 3.0, 4.0];
        let found = [1.0f32, 2.0, 9.0, 4.0];
        let split = vec![1.0, 2.0, 9.0, 4.0];
        let tol = Tolerance::default();
        let st = compare_rounding_aware(&found, &expected, &[], &[&split], &[4], tol, 0.1);
        assert!(st.first_mismatch.is_none(), "{st:?}");
        assert_eq!(st.excused, 1);
        assert_eq!(st.max_abs_err, 6.0);
        // Where no draw moved the reference, the same error is a mismatch.
        let st = compare_rounding_aware(&found, &expected, &[], &[&expected], &[4], tol, 0.1);
        assert_eq!(st.first_mismatch.map(|m| m.index), Some(vec![2]));
        assert_eq!(st.excused, 0);
    }

    #[test]
    fn near_tie_flips_are_excused_but_wrong_programs_are_not() {
        let table = [10.0, 20.0, 30.0, 40.0];
        let l = logits(5);
        let expected = route(&l, 4, &table);
        let perturbed = draws(&l, &table, 4);
        let pr: Vec<&[f64]> = perturbed.iter().map(Vec::as_slice).collect();
        let tol = Tolerance::default();
        // The program decides every near-tie the other way (as an f32 program may).
        let mut found: Vec<f32> = expected.iter().map(|&e| e as f32).collect();
        for (t, f) in found.iter_mut().enumerate().take(5) {
            *f = if expected[t] == 10.0 { 20.0 } else { 10.0 };
        }
        assert!(
            compare_values(&found, &expected, &[100], tol)
                .first_mismatch
                .is_some()
        );
        let st = compare_tie_aware(&found, &expected, &pr, &[100], tol, MAX_EXCUSED_FRACTION);
        assert!(st.first_mismatch.is_none(), "{st:?}");
        assert_eq!(st.excused, 5);
        // Also wrong at one stable token: rejected there.
        let mut wrong = found.clone();
        wrong[50] = 30.0;
        let st = compare_tie_aware(&wrong, &expected, &pr, &[100], tol, MAX_EXCUSED_FRACTION);
        assert_eq!(st.first_mismatch.map(|m| m.index), Some(vec![50]));
        // A program routing every token to the last expert: rejected.
        let argmin: Vec<f32> = vec![40.0; 100];
        let st = compare_tie_aware(&argmin, &expected, &pr, &[100], tol, MAX_EXCUSED_FRACTION);
        assert!(st.first_mismatch.is_some());
        // At a near-tie the program may pick either side of the tie, not a third expert.
        let mut third = found.clone();
        third[0] = 40.0;
        let st = compare_tie_aware(&third, &expected, &pr, &[100], tol, MAX_EXCUSED_FRACTION);
        assert_eq!(st.first_mismatch.map(|m| m.index), Some(vec![0]));
    }

    #[test]
    fn excuses_are_capped() {
        let table = [10.0, 20.0, 30.0, 40.0];
        let l = logits(60);
        let expected = route(&l, 4, &table);
        let perturbed = draws(&l, &table, 4);
        let pr: Vec<&[f64]> = perturbed.iter().map(Vec::as_slice).collect();
        let found: Vec<f32> = expected
            .iter()
            .enumerate()
            .map(|(t, &e)| match (t < 60, e == 10.0) {
                (false, _) => e as f32,
                (true, true) => 20.0,
                (true, false) => 10.0,
            })
            .collect();
        let tol = Tolerance::default();
        let st = compare_tie_aware(&found, &expected, &pr, &[100], tol, MAX_EXCUSED_FRACTION);
        assert_eq!(st.first_mismatch.map(|m| m.index), Some(vec![0]));
        assert_eq!(st.excused, 0);
        let st = compare_tie_aware(&found, &expected, &pr, &[100], tol, 0.9);
        assert!(st.first_mismatch.is_none());
        assert_eq!(st.excused, 60);
    }

    /// A tie that decides a whole row (14% of a 7-row output) is excused when the program
    /// agrees with one draw there, beyond the 10% cap of the looser excuse; a program that
    /// agrees with no draw is still capped, and one wrong where the reference is stable fails.
    #[test]
    fn agreement_with_one_draw_has_its_own_cap() {
        let expected = vec![1.0; 70];
        let mut tie_low = expected.clone();
        let mut tie_high = expected.clone();
        for i in 0..10 {
            tie_low[60 + i] = 0.0; // draw A drops row 6
            tie_high[50 + i] = 0.0; // draw B drops row 5
        }
        let draws: Vec<&[f64]> = vec![&tie_low, &tie_high];
        let tol = Tolerance::default();
        let found: Vec<f32> = tie_low.iter().map(|&x| x as f32).collect();
        let st = compare_tie_aware(
            &found,
            &expected,
            &draws,
            &[7, 10],
            tol,
            MAX_EXCUSED_FRACTION,
        );
        assert!(st.first_mismatch.is_none(), "{st:?}");
        assert_eq!(st.excused, 10);
        // Row 6 halved: no draw says 0.5, and 14% is over the looser cap.
        let half: Vec<f32> = (0..70).map(|i| if i >= 60 { 0.5 } else { 1.0 }).collect();
        let st = compare_tie_aware(
            &half,
            &expected,
            &draws,
            &[7, 10],
            tol,
            MAX_EXCUSED_FRACTION,
        );
        assert_eq!(st.first_mismatch.map(|m| m.index), Some(vec![6, 0]));
        // Wrong in row 0, where no draw moved.
        let mut wrong = found.clone();
        wrong[0] = 0.0;
        let st = compare_tie_aware(
            &wrong,
            &expected,
            &draws,
            &[7, 10],
            tol,
            MAX_EXCUSED_FRACTION,
        );
        assert_eq!(st.first_mismatch.map(|m| m.index), Some(vec![0, 0]));
    }

    #[test]
    fn perturbation_is_deterministic_and_relative() {
        let mut a = vec![1.0f32, -2.0, 0.0, f32::INFINITY, 1e-3];
        let mut b = a.clone();
        perturb_f32(&mut a, 1e-3, 7);
        perturb_f32(&mut b, 1e-3, 7);
        assert_eq!(a, b);
        assert_eq!(a[2], 0.0);
        assert_eq!(a[3], f32::INFINITY);
        for (x, y) in a.iter().zip([1.0f32, -2.0, 0.0, 1.0, 1e-3]) {
            if x.is_finite() {
                assert!((x - y).abs() <= 1.001e-3 * y.abs());
            }
        }
        assert_ne!(a[0], 1.0);
        // Seeds 6 and 7 are an antithetic pair.
        let mut c = vec![1.0f32, -2.0];
        perturb_f32(&mut c, 1e-3, 6);
        assert!(((c[0] - 1.0) + (a[0] - 1.0)).abs() < 1e-6);
    }
}

#[cfg(test)]
mod fused {
    //! `compare_values` is `compare_with(.., within)` fused by hand: same statistics and the
    //! same first mismatch on any data, including NaN, infinities, exact ties and NaN
    //! tolerances.
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -4.0f64..4.0,
            1 => Just(0.0),
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
        ]
    }

    proptest! {
        #[test]
        fn equals_the_closure_form(
            pairs in prop::collection::vec((value(), -0.01f64..0.01, any::<bool>()), 0..40),
            rtol in prop_oneof![Just(f64::NAN), 0.0f64..0.1],
            atol in 0.0f64..0.1,
        ) {
            let expected: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            // found: equal to expected (as f32), or nearby
            let found: Vec<f32> = pairs
                .iter()
                .map(|&(e, d, same)| if same { e as f32 } else { (e + d) as f32 })
                .collect();
            let expected: Vec<f64> = expected
                .iter()
                .zip(&pairs)
                .map(|(&e, p)| if p.2 { f64::from(e as f32) } else { e })
                .collect();
            let shape = [found.len()];
            let tol = Tolerance { rtol, atol };
            let a = compare_values(&found, &expected, &shape, tol);
            let b = compare_with(&found, &expected, &shape, |_, f, e| within(f, e, tol));
            prop_assert_eq!(a.compared, b.compared);
            prop_assert_eq!(a.max_abs_err.to_bits(), b.max_abs_err.to_bits());
            prop_assert_eq!(a.max_rel_err.to_bits(), b.max_rel_err.to_bits());
            let key = |m: &Option<Mismatch>| {
                m.as_ref().map(|m| (m.index.clone(), m.expected.to_bits(), m.found.to_bits()))
            };
            prop_assert_eq!(key(&a.first_mismatch), key(&b.first_mismatch));
        }
    }
}
