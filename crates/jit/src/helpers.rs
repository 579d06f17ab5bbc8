//! Scalar math the generated code calls (Cranelift has no exp/log/erf/sin/cos instructions).
//! Each computes in f64 and rounds once to f32, exactly as the interpreter's
//! `stepforge_tensor` unary ops do, so compiled and interpreted results agree bit for bit on
//! these functions.

use stepforge_tensor::erf as erf_mod;

fn f(x: f32, g: impl Fn(f64) -> f64) -> f32 {
    g(f64::from(x)) as f32
}

fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub extern "C" fn exp(x: f32) -> f32 {
    f(x, f64::exp)
}

pub extern "C" fn log(x: f32) -> f32 {
    f(x, f64::ln)
}

pub extern "C" fn sin(x: f32) -> f32 {
    f(x, f64::sin)
}

pub extern "C" fn cos(x: f32) -> f32 {
    f(x, f64::cos)
}

pub extern "C" fn tanh(x: f32) -> f32 {
    f(x, f64::tanh)
}

pub extern "C" fn sigmoid(x: f32) -> f32 {
    f(x, sigmoid64)
}

pub extern "C" fn silu(x: f32) -> f32 {
    f(x, |x| x * sigmoid64(x))
}

pub extern "C" fn gelu(x: f32) -> f32 {
    f(x, |x| {
        0.5 * x * (1.0 + erf_mod::erf(x / std::f64::consts::SQRT_2))
    })
}

pub extern "C" fn gelu_tanh(x: f32) -> f32 {
    f(x, |x| {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
    })
}

pub extern "C" fn erf(x: f32) -> f32 {
    f(x, erf_mod::erf)
}

pub extern "C" fn rsqrt(x: f32) -> f32 {
    f(x, |x| 1.0 / x.sqrt())
}

pub extern "C" fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
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
