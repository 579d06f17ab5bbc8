//! Neural-network helpers with torch's exact formulas: `native_layer_norm`.

use crate::{Data, Result, Tensor, TensorError, fmt_shape};

impl Tensor {
    /// `torch.ops.aten.native_layer_norm.default(x, normalized_shape, weight, bias, eps)`:
    /// returns `(out, mean, rstd)`; mean and rstd have x's leading dims followed by one size-1
    /// dim per normalised dim. The variance is biased, as in torch.
    pub fn native_layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let nd = self.ndim();
        let k = normalized_shape.len();
        if k > nd || self.shape[nd - k..] != *normalized_shape {
            return Err(TensorError::invalid(format!(
                "native_layer_norm: normalized_shape {} does not match the trailing dims of input {}",
                fmt_shape(normalized_shape),
                fmt_shape(&self.shape)
            )));
        }
        for (name, t) in [("weight", weight), ("bias", bias)] {
            if let Some(t) = t
                && t.shape != normalized_shape
            {
                return Err(TensorError::invalid(format!(
                    "native_layer_norm: {name} of shape {} does not match normalized_shape {}",
                    fmt_shape(&t.shape),
                    fmt_shape(normalized_shape)
                )));
            }
        }
        let n: usize = normalized_shape.iter().product();
        // Leading dims, not numel / n: with an empty normalised shape every row still has
        // its (NaN) statistics.
        let rows: usize = self.shape[..nd - k].iter().product();
        let x = self.to_f64_vec();
        let w = weight.map(Tensor::to_f64_vec);
        let b = bias.map(Tensor::to_f64_vec);
        let mut out = vec![0f32; x.len()];
        let mut means = Vec::with_capacity(rows);
        let mut rstds = Vec::with_capacity(rows);
        for r in 0..rows {
            let row = &x[r * n..(r + 1) * n];
            let mean = row.iter().sum::<f64>() / n as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            for j in 0..n {
                let mut y = (row[j] - mean) * rstd;
                if let Some(w) = &w {
                    y *= w[j];
                }
                if let Some(b) = &b {
                    y += b[j];
                }
                out[r * n + j] = y as f32;
            }
            means.push(mean as f32);
            rstds.push(rstd as f32);
        }
        let mut stat_shape = self.shape[..nd - k].to_vec();
        stat_shape.extend(std::iter::repeat_n(1, k));
        Ok((
            Tensor::raw(self.shape.clone(), Data::F32(out.into())),
            Tensor::raw(stat_shape.clone(), Data::F32(means.into())),
            Tensor::raw(stat_shape, Data::F32(rstds.into())),
        ))
    }
}
