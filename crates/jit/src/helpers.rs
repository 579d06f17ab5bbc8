//! Scalar math the generated code calls (Cranelift has no exp/log/erf/sin/cos instructions).
//! Each computes the tensor crate's [`UnaryOp::f64_fn`] in f64 and rounds once to f32, exactly
//! as the interpreter's `Tensor::unary` does, so compiled and interpreted results agree bit for
//! bit on these functions.

use stepforge_tensor::UnaryOp;

macro_rules! helpers {
    ($($name:ident = $op:ident),* $(,)?) => {
        $(
            extern "C" fn $name(x: f32) -> f32 {
                (UnaryOp::$op.f64_fn())(f64::from(x)) as f32
            }
        )*

        /// The helper that computes `op`, if it needs one (see `tir::needs_helper`).
        pub fn unary(op: UnaryOp) -> Option<extern "C" fn(f32) -> f32> {
            match op {
                $(UnaryOp::$op => Some($name),)*
                _ => None,
            }
        }
    };
}

helpers! {
    exp = Exp,
    log = Log,
    sin = Sin,
    cos = Cos,
    tanh = Tanh,
    sigmoid = Sigmoid,
    silu = Silu,
    gelu = Gelu,
    gelu_tanh = GeluTanh,
    erf = Erf,
    rsqrt = Rsqrt,
    sign = Sign,
}

pub extern "C" fn pow(x: f32, y: f32) -> f32 {
    f64::from(x).powf(f64::from(y)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_match_f64_math() {
        assert_eq!(exp(1.0), std::f64::consts::E as f32);
        assert_eq!(sign(-3.0), -1.0);
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert_eq!(pow(2.0, 10.0), 1024.0);
    }
}
