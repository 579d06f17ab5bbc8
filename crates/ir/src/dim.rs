//! Symbolic dimensions (DESIGN §3).
//!
//! Every dimension the checker can produce is a *monomial*: a rational coefficient times a
//! product of symbols raised to integer powers. Literals are monomials without symbols, Flatten
//! multiplies, Reshape divides, Partition introduces fresh dynamic symbols. Keeping one normal
//! form (reduced coefficient, symbols sorted, zero powers dropped) makes structural equality the
//! symbolic equality the design asks for: `M*1 == M`, `N*M == M*N`, `(N*M)/M == N`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::graph::OpId;

/// A fresh dynamic dimension: the number of chunks Partition `op` routed to `branch`.
/// Known only when the program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DynDim {
    pub op: OpId,
    pub branch: u32,
}

/// A dimension symbol: a static name from the task (`M`, `E`) or a dynamic one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sym {
    Static(Arc<str>),
    Dynamic(DynDim),
}

impl fmt::Display for Sym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sym::Static(s) => f.write_str(s),
            // '.' cannot occur in an identifier, so a dynamic symbol never reads like a task's.
            Sym::Dynamic(d) => write!(f, "P{}.{}", d.op.index(), d.branch),
        }
    }
}

/// A normalised symbolic dimension. Construct with [`Dim::lit`], [`Dim::sym`],
/// [`Dim::dynamic`], combine with [`Dim::mul`] / [`Dim::div`]; compare with `==`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dim {
    /// Coefficient numerator; the sign lives here.
    num: i64,
    /// Coefficient denominator, always ≥ 1 and coprime with `num`.
    den: i64,
    /// Sorted by symbol, no zero exponents.
    factors: Factors,
}

/// Symbol powers. Nearly every dimension has at most one symbol; keeping that case inline
/// makes cloning a dimension allocation-free. Normal form: `Few` holds 0 or 1 factor, `Many`
/// holds 2 or more, so derived equality is symbolic equality.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Factors {
    Few(Option<(Sym, i32)>),
    Many(Vec<(Sym, i32)>),
}

impl Factors {
    fn from_vec(mut v: Vec<(Sym, i32)>) -> Factors {
        if v.len() <= 1 {
            Factors::Few(v.pop())
        } else {
            Factors::Many(v)
        }
    }

    fn as_slice(&self) -> &[(Sym, i32)] {
        match self {
            Factors::Few(None) => &[],
            Factors::Few(Some(x)) => std::slice::from_ref(x),
            Factors::Many(v) => v,
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    fn iter(&self) -> std::slice::Iter<'_, (Sym, i32)> {
        self.as_slice().iter()
    }
}

impl<'a> IntoIterator for &'a Factors {
    type Item = &'a (Sym, i32);
    type IntoIter = std::slice::Iter<'a, (Sym, i32)>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    a = a.checked_abs().unwrap_or(i64::MAX);
    b = b.checked_abs().unwrap_or(i64::MAX);
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

impl Dim {
    /// The literal 1.
    pub const ONE: Dim = Dim {
        num: 1,
        den: 1,
        factors: Factors::Few(None),
    };

    pub fn lit(v: i64) -> Dim {
        Dim {
            num: v,
            den: 1,
            factors: Factors::Few(None),
        }
    }

    pub fn sym(name: &str) -> Dim {
        Dim {
            num: 1,
            den: 1,
            factors: Factors::Few(Some((Sym::Static(Arc::from(name)), 1))),
        }
    }

    pub fn dynamic(d: DynDim) -> Dim {
        Dim {
            num: 1,
            den: 1,
            factors: Factors::Few(Some((Sym::Dynamic(d), 1))),
        }
    }

    fn normalised(num: i64, den: i64, factors: Vec<(Sym, i32)>) -> Option<Dim> {
        if den == 0 {
            return None;
        }
        let (mut num, mut den) = if den < 0 {
            (num.checked_neg()?, den.checked_neg()?)
        } else {
            (num, den)
        };
        if num == 0 {
            return Some(Dim::lit(0));
        }
        let g = gcd(num, den);
        if g > 1 {
            num /= g;
            den /= g;
        }
        let factors = factors.into_iter().filter(|(_, e)| *e != 0).collect();
        Some(Dim {
            num,
            den,
            factors: Factors::from_vec(factors),
        })
    }

    fn combine(&self, other: &Dim, sign: i32) -> Option<Dim> {
        let (num, den) = if sign > 0 {
            (
                self.num.checked_mul(other.num)?,
                self.den.checked_mul(other.den)?,
            )
        } else {
            (
                self.num.checked_mul(other.den)?,
                self.den.checked_mul(other.num)?,
            )
        };
        let mut map: BTreeMap<&Sym, i32> = BTreeMap::new();
        for (s, e) in &self.factors {
            *map.entry(s).or_insert(0) += *e;
        }
        for (s, e) in &other.factors {
            let slot = map.entry(s).or_insert(0);
            *slot = slot.checked_add(e.checked_mul(sign)?)?;
        }
        let factors = map.into_iter().map(|(s, e)| (s.clone(), e)).collect();
        Dim::normalised(num, den, factors)
    }

    /// `self * other`; `None` on coefficient overflow.
    pub fn mul(&self, other: &Dim) -> Option<Dim> {
        self.combine(other, 1)
    }

    /// `self / other`; `None` on division by zero or overflow. The result may be non-integral
    /// (see [`Dim::is_integral`]).
    pub fn div(&self, other: &Dim) -> Option<Dim> {
        self.combine(other, -1)
    }

    /// The value if the dimension is a plain integer literal.
    pub fn as_int(&self) -> Option<i64> {
        (self.factors.is_empty() && self.den == 1).then_some(self.num)
    }

    /// True when the dimension is an integer for every positive value of its symbols
    /// (integer coefficient, no negative powers).
    pub fn is_integral(&self) -> bool {
        self.den == 1 && self.factors.iter().all(|(_, e)| *e > 0)
    }

    /// True when no dynamic symbol occurs.
    pub fn is_static(&self) -> bool {
        !self
            .factors
            .iter()
            .any(|(s, _)| matches!(s, Sym::Dynamic(_)))
    }

    /// The coefficient as `(numerator, denominator)`, reduced, denominator ≥ 1.
    pub fn coefficient(&self) -> (i64, i64) {
        (self.num, self.den)
    }

    /// The symbol powers, sorted by symbol, no zero exponents.
    pub fn factors(&self) -> &[(Sym, i32)] {
        self.factors.as_slice()
    }

    /// The symbols occurring, sorted.
    pub fn symbols(&self) -> impl Iterator<Item = &Sym> {
        self.factors.iter().map(|(s, _)| s)
    }

    /// The value under `env`; `None` when a symbol has no value, the result is not an integer,
    /// or it overflows `i64`.
    pub fn eval(&self, env: &DimEnv) -> Option<i64> {
        let mut num = i128::from(self.num);
        let mut den = i128::from(self.den);
        for (s, e) in &self.factors {
            let v = i128::from(match s {
                Sym::Static(name) => env.get_static(name)?,
                Sym::Dynamic(d) => env.get_dynamic(*d)?,
            });
            for _ in 0..e.unsigned_abs() {
                if *e > 0 {
                    num = num.checked_mul(v)?;
                } else {
                    den = den.checked_mul(v)?;
                }
            }
        }
        if den == 0 || num % den != 0 {
            return None;
        }
        i64::try_from(num / den).ok()
    }
}

/// `N_value` names the same dimension as `N` (the benchmark uses both spellings).
pub fn strip_value_suffix(name: &str) -> &str {
    match name.strip_suffix("_value") {
        Some(base) if !base.is_empty() => base,
        _ => name,
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fast paths: almost every dimension is one symbol or one literal.
        if self.den == 1 {
            match self.factors.as_slice() {
                [] => return write!(f, "{}", self.num),
                [(s, 1)] if self.num == 1 => return write!(f, "{s}"),
                _ => {}
            }
        }
        // Powers print as repeated factors so the text parses back as a task dimension.
        let pow = |s: &Sym, e: u32| vec![s.to_string(); e as usize].join("*");
        let mut top: Vec<String> = Vec::new();
        let mut bottom: Vec<String> = Vec::new();
        if self.num != 1 || self.factors.iter().all(|(_, e)| *e < 0) {
            top.push(self.num.to_string());
        }
        if self.den != 1 {
            bottom.push(self.den.to_string());
        }
        for (s, e) in &self.factors {
            if *e > 0 {
                top.push(pow(s, e.unsigned_abs()));
            } else {
                bottom.push(pow(s, e.unsigned_abs()));
            }
        }
        f.write_str(&top.join("*"))?;
        match bottom.len() {
            0 => Ok(()),
            1 => write!(f, "/{}", bottom[0]),
            _ => write!(f, "/({})", bottom.join("*")),
        }
    }
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `[D, N, M]`
pub fn dims_to_string(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(Dim::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// Values for dimension symbols: static ones from the task (defaults, `global`, `--dims`) and,
/// at run time, dynamic ones as Partition ops produce them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DimEnv {
    statics: BTreeMap<String, i64>,
    dynamics: BTreeMap<DynDim, i64>,
}

impl DimEnv {
    pub fn new() -> DimEnv {
        DimEnv::default()
    }

    pub fn from_statics<I, S>(values: I) -> DimEnv
    where
        I: IntoIterator<Item = (S, i64)>,
        S: Into<String>,
    {
        DimEnv {
            statics: values.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            dynamics: BTreeMap::new(),
        }
    }

    pub fn set_static(&mut self, name: impl Into<String>, value: i64) {
        self.statics.insert(name.into(), value);
    }

    pub fn set_dynamic(&mut self, d: DynDim, value: i64) {
        self.dynamics.insert(d, value);
    }

    /// Accepts `N` and `N_value`.
    pub fn get_static(&self, name: &str) -> Option<i64> {
        self.statics
            .get(name)
            .or_else(|| self.statics.get(strip_value_suffix(name)))
            .copied()
    }

    pub fn get_dynamic(&self, d: DynDim) -> Option<i64> {
        self.dynamics.get(&d).copied()
    }

    pub fn statics(&self) -> &BTreeMap<String, i64> {
        &self.statics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &str) -> Dim {
        Dim::sym(n)
    }

    #[test]
    fn normalisation_laws() {
        let m = s("M");
        let n = s("N");
        assert_eq!(m.mul(&Dim::ONE).unwrap(), m);
        assert_eq!(m.mul(&n).unwrap(), n.mul(&m).unwrap());
        assert_eq!(n.mul(&m).unwrap().div(&m).unwrap(), n);
        assert_eq!(Dim::lit(8).div(&Dim::lit(4)).unwrap(), Dim::lit(2));
        assert_eq!(Dim::lit(4).mul(&n).unwrap().div(&Dim::lit(4)).unwrap(), n);
        assert!(!n.div(&Dim::lit(4)).unwrap().is_integral());
        assert!(Dim::lit(1).div(&Dim::lit(0)).is_none());
        assert!(Dim::lit(i64::MAX).mul(&Dim::lit(2)).is_none());
    }

    #[test]
    fn display_forms() {
        let mn = s("N").mul(&s("M")).unwrap();
        assert_eq!(mn.to_string(), "M*N");
        assert_eq!(s("N").div(&Dim::lit(4)).unwrap().to_string(), "N/4");
        assert_eq!(Dim::lit(3).mul(&s("D")).unwrap().to_string(), "3*D");
        assert_eq!(Dim::ONE.div(&mn).unwrap().to_string(), "1/(M*N)");
        assert_eq!(s("N").mul(&s("N")).unwrap().to_string(), "N*N");
        let d = Dim::dynamic(DynDim {
            op: OpId::new(3),
            branch: 1,
        });
        assert_eq!(d.to_string(), "P3.1");
        assert!(!d.is_static());
        assert_eq!(dims_to_string(&[s("D"), Dim::ONE]), "[D, 1]");
    }

    #[test]
    fn eval_with_static_and_dynamic_values() {
        let mut env = DimEnv::from_statics([("N", 8), ("M", 5)]);
        let dd = DynDim {
            op: OpId::new(2),
            branch: 0,
        };
        let e = s("N")
            .mul(&Dim::dynamic(dd))
            .unwrap()
            .div(&Dim::lit(4))
            .unwrap();
        assert_eq!(e.eval(&env), None);
        env.set_dynamic(dd, 3);
        assert_eq!(e.eval(&env), Some(6));
        assert_eq!(s("M").div(&Dim::lit(2)).unwrap().eval(&env), None);
        assert_eq!(Dim::sym("N_value").eval(&env), Some(8));
        assert_eq!(s("K").eval(&env), None);
    }
}
