//! The backward pass: dGamma = sum(dy * xhat), dBeta = sum(dy) per channel, and dx,
//! either through the batch statistics (training) or with them frozen (inference).

use crate::element::Element;
use crate::elementwise::{apply_channel_affine, ChannelAffine};
use crate::error::{check_len, Result};
use crate::forward::check_count;
use crate::io::Io;
use crate::layout::Layout;
use crate::pool::{self, Exec};
use crate::tiles::reduce_channels;

/// Per-channel sums the backward pass needs: sum(dy) and sum(dy * (x - mean)).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GradSums {
    pub sum_dy: f64,
    pub sum_dy_xmu: f64,
}

/// Where the parameter gradients go.
#[derive(Debug)]
pub struct ParamGrads<'a, T> {
    pub d_gamma: &'a mut [T],
    pub d_beta: &'a mut [T],
}

/// The statistics the forward pass normalized with.
#[derive(Debug, Clone, Copy)]
pub struct Saved<'a, T> {
    pub mean: &'a [T],
    pub inv_std: &'a [T],
}

pub(crate) fn grad_sums_in<T: Element>(
    exec: Exec,
    dy: &[T],
    x: &[T],
    layout: &Layout,
    mean: &[f64],
) -> Vec<GradSums> {
    let width = layout.channels * layout.inner;
    reduce_channels(
        exec,
        layout,
        |tile, runs| {
            let cols = tile.columns.clone();
            let mut column_mean = vec![0.0f64; cols.len()];
            for run in runs {
                column_mean[run.columns.clone()].fill(mean[run.channel]);
            }
            let mut sum_dy = vec![0.0f64; cols.len()];
            let mut sum_dy_xmu = vec![0.0f64; cols.len()];
            for r in tile.rows.clone() {
                let span = r * width + cols.start..r * width + cols.end;
                for (((s, sx), mu), (g, v)) in sum_dy
                    .iter_mut()
                    .zip(sum_dy_xmu.iter_mut())
                    .zip(&column_mean)
                    .zip(dy[span.clone()].iter().zip(&x[span]))
                {
                    let g = g.to_f64();
                    *s += g;
                    *sx += g * (v.to_f64() - mu);
                }
            }
            runs.iter()
                .map(|run| GradSums {
                    sum_dy: sum_dy[run.columns.clone()].iter().sum(),
                    sum_dy_xmu: sum_dy_xmu[run.columns.clone()].iter().sum(),
                })
                .collect()
        },
        |total, part| {
            total.sum_dy += part.sum_dy;
            total.sum_dy_xmu += part.sum_dy_xmu;
        },
    )
}

/// dx, dGamma and dBeta. `grad` reads dy and writes dx (the same array when in place).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Element>(
    grad: Io<'_, T>,
    x: &[T],
    layout: &Layout,
    gamma: Option<&[T]>,
    saved: Saved<'_, T>,
    training: bool,
    params: ParamGrads<'_, T>,
) -> Result<()> {
    let channels = layout.channels;
    check_len("dy", grad.src_len(), layout.len())?;
    check_len("x", x.len(), layout.len())?;
    check_len("out", grad.dst_len(), layout.len())?;
    if let Some(g) = gamma {
        check_len("gamma", g.len(), channels)?;
    }
    check_len("mean", saved.mean.len(), channels)?;
    check_len("invStd", saved.inv_std.len(), channels)?;
    check_len("dGamma", params.d_gamma.len(), channels)?;
    check_len("dBeta", params.d_beta.len(), channels)?;
    if training {
        check_count(layout)?;
    }
    pool::run(layout.len(), |exec| {
        let mean: Vec<f64> = saved.mean.iter().map(|v| v.to_f64()).collect();
        let sums = grad_sums_in(exec, grad.src(), x, layout, &mean);
        finish_backward_in(
            exec,
            grad,
            x,
            layout,
            gamma,
            saved,
            training,
            &sums,
            layout.count_per_channel() as f64,
            params,
        );
    });
    Ok(())
}

/// Writes dx and the parameter gradients from (possibly all-reduced) sums over `count` values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_backward_in<T: Element>(
    exec: Exec,
    grad: Io<'_, T>,
    x: &[T],
    layout: &Layout,
    gamma: Option<&[T]>,
    saved: Saved<'_, T>,
    training: bool,
    sums: &[GradSums],
    count: f64,
    params: ParamGrads<'_, T>,
) {
    let channels = layout.channels;
    let gamma_at = |c: usize| gamma.map_or(1.0, |g| g[c].to_f64());
    let mut k = ChannelAffine::default();
    for c in 0..channels {
        let inv_std = saved.inv_std[c].to_f64();
        let d_gamma = sums[c].sum_dy_xmu * inv_std;
        let dy_scale = gamma_at(c) * inv_std;
        k.scale.push(dy_scale);
        k.center.push(0.0);
        k.center_other.push(saved.mean[c].to_f64());
        if training {
            // dx = g*invStd/m * (m*dy - sum(dy) - xhat*sum(dy*xhat))
            k.scale_other.push(-dy_scale * inv_std * d_gamma / count);
            k.shift.push(-dy_scale * sums[c].sum_dy / count);
        } else {
            k.scale_other.push(0.0);
            k.shift.push(0.0);
        }
        params.d_gamma[c] = T::from_f64(d_gamma);
        params.d_beta[c] = T::from_f64(sums[c].sum_dy);
    }
    let other = if training { Some(x) } else { None };
    apply_channel_affine(exec, grad, other, layout, &k);
}
