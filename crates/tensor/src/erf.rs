//! The error function in f64, accurate to about 1e-15 (far beyond what f32 GELU needs).
//!
//! Two classical expansions, each used where it converges fast and without cancellation:
//! - `|x| < 3`: erf(x) = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)), a series of positive
//!   terms (no cancellation, unlike the alternating Taylor series);
//! - `3 ≤ |x| < 6.5`: erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))), the
//!   Laplace continued fraction evaluated bottom-up;
//! - beyond, erf is ±1 to f64 precision.

const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let a = x.abs();
    let r = if a < 3.0 {
        erf_series(a)
    } else if a < 6.5 {
        1.0 - erfc_cf(a)
    } else {
        1.0
    };
    if x < 0.0 { -r } else { r }
}

/// Complementary error function for x ≥ 0 (used by tests and by `erf`).
pub fn erfc(x: f64) -> f64 {
    if x < 3.0 {
        1.0 - erf(x)
    } else if x < 27.0 {
        erfc_cf(x)
    } else {
        0.0
    }
}

fn erf_series(a: f64) -> f64 {
    let x2 = a * a;
    let mut term = a;
    let mut sum = a;
    let mut n = 0.0;
    // Terms grow until n ≈ x² and then shrink geometrically; 200 is far more than |x| < 3 needs.
    for _ in 0..200 {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    FRAC_2_SQRT_PI * (-x2).exp() * sum
}

fn erfc_cf(a: f64) -> f64 {
    // K = a + (1/2)/(a + (2/2)/(a + (3/2)/(a + ...))); 60 levels give full precision for a ≥ 3.
    let mut k = a;
    for n in (1..=60).rev() {
        k = a + (f64::from(n) / 2.0) / k;
    }
    (-a * a).exp() / (std::f64::consts::PI.sqrt() * k)
}
