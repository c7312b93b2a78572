//! The backward pass: dGamma = sum(dy * xhat), dBeta = sum(dy) per channel, and dx,
//! either through the batch statistics (training) or with them frozen (inference),
//! optionally through a fused ReLU (dy masked where its output was <= 0).

use crate::element::Element;
use crate::elementwise::{apply_channel_affine, ChannelAffine};
use crate::error::{check_len, Result};
use crate::forward::check_count;
use crate::io::Io;
use crate::layout::Layout;
use crate::pool::{self, Exec};
use crate::tiles::reduce_channels;

/// Per-channel sums the backward pass needs: sum(dy) and sum(dy * xhat).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GradSums {
    pub sum_dy: f64,
    pub sum_dy_xhat: f64,
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

/// How the gradient flows back through the forward pass.
#[derive(Debug, Clone, Copy)]
pub struct GradPath<'a, T> {
    /// Through the batch statistics (true) or with them frozen (false).
    pub training: bool,
    /// The forward output when the forward pass fused a ReLU: dy counts only where it is > 0.
    pub relu_output: Option<&'a [T]>,
}

#[inline(always)]
fn masked(dy: f64, relu_output: f64) -> f64 {
    if relu_output > 0.0 {
        dy
    } else {
        0.0
    }
}

fn grad_sums_in<T: Element>(
    exec: Exec,
    dy: &[T],
    x: &[T],
    relu_output: Option<&[T]>,
    layout: &Layout,
    saved: Saved<'_, T>,
) -> Vec<GradSums> {
    let width = layout.channels * layout.inner;
    let mut sums = reduce_channels(
        exec,
        layout,
        |tile, runs| {
            let cols = tile.columns.clone();
            let mut column_mean = vec![0.0f64; cols.len()];
            for run in runs {
                column_mean[run.columns.clone()].fill(saved.mean[run.channel].to_f64());
            }
            let mut sum_dy = vec![0.0f64; cols.len()];
            let mut sum_dy_xmu = vec![0.0f64; cols.len()];
            for r in tile.rows.clone() {
                let span = r * width + cols.start..r * width + cols.end;
                let accumulate = |j: usize, g: f64, v: f64, s: &mut [f64], sx: &mut [f64]| {
                    s[j] += g;
                    sx[j] += g * (v - column_mean[j]);
                };
                let (dys, xs) = (&dy[span.clone()], &x[span.clone()]);
                match relu_output {
                    None => {
                        for (j, (g, v)) in dys.iter().zip(xs).enumerate() {
                            accumulate(j, g.to_f64(), v.to_f64(), &mut sum_dy, &mut sum_dy_xmu);
                        }
                    }
                    Some(y) => {
                        for (j, ((g, v), o)) in dys.iter().zip(xs).zip(&y[span.clone()]).enumerate()
                        {
                            let g = masked(g.to_f64(), o.to_f64());
                            accumulate(j, g, v.to_f64(), &mut sum_dy, &mut sum_dy_xmu);
                        }
                    }
                }
            }
            runs.iter()
                .map(|run| GradSums {
                    sum_dy: sum_dy[run.columns.clone()].iter().sum(),
                    sum_dy_xhat: sum_dy_xmu[run.columns.clone()].iter().sum(),
                })
                .collect()
        },
        |total, part| {
            total.sum_dy += part.sum_dy;
            total.sum_dy_xhat += part.sum_dy_xhat;
        },
    );
    // Accumulated as sum(dy * (x - mean)); one multiply per channel turns it into xhat's.
    for (s, inv_std) in sums.iter_mut().zip(saved.inv_std) {
        s.sum_dy_xhat *= inv_std.to_f64();
    }
    sums
}

#[allow(clippy::too_many_arguments)]
fn check_backward<T>(
    dy_len: usize,
    dx_len: usize,
    x: &[T],
    layout: &Layout,
    gamma: Option<&[T]>,
    saved: &Saved<'_, T>,
    relu_output: Option<&[T]>,
) -> Result<()> {
    let channels = layout.channels;
    check_len("dy", dy_len, layout.len())?;
    check_len("x", x.len(), layout.len())?;
    check_len("out", dx_len, layout.len())?;
    if let Some(g) = gamma {
        check_len("gamma", g.len(), channels)?;
    }
    if let Some(y) = relu_output {
        check_len("y", y.len(), layout.len())?;
    }
    check_len("mean", saved.mean.len(), channels)?;
    check_len("invStd", saved.inv_std.len(), channels)
}

fn check_params<T>(params: &ParamGrads<'_, T>, channels: usize) -> Result<()> {
    check_len("dGamma", params.d_gamma.len(), channels)?;
    check_len("dBeta", params.d_beta.len(), channels)
}

/// Per-channel sum(dy) and sum(dy * xhat): one shard's part of the backward reduction.
pub fn grad_sums<T: Element>(
    dy: &[T],
    x: &[T],
    layout: &Layout,
    saved: Saved<'_, T>,
    relu_output: Option<&[T]>,
) -> Result<Vec<GradSums>> {
    check_backward(dy.len(), dy.len(), x, layout, None, &saved, relu_output)?;
    Ok(pool::run(layout.len(), |exec| {
        grad_sums_in(exec, dy, x, relu_output, layout, saved)
    }))
}

/// dx, dGamma and dBeta. `grad` reads dy and writes dx (the same array when in place).
pub fn backward<T: Element>(
    grad: Io<'_, T>,
    x: &[T],
    layout: &Layout,
    gamma: Option<&[T]>,
    saved: Saved<'_, T>,
    path: GradPath<'_, T>,
    params: ParamGrads<'_, T>,
) -> Result<()> {
    check_backward(
        grad.src_len(),
        grad.dst_len(),
        x,
        layout,
        gamma,
        &saved,
        path.relu_output,
    )?;
    check_params(&params, layout.channels)?;
    if path.training {
        check_count(layout.count_per_channel() as f64)?;
    }
    pool::run(layout.len(), |exec| {
        let sums = grad_sums_in(exec, grad.src(), x, path.relu_output, layout, saved);
        let count = layout.count_per_channel() as f64;
        finish_backward_in(
            exec, grad, x, layout, gamma, saved, path, &sums, count, params,
        );
    });
    Ok(())
}

/// dx and the parameter gradients from sums over `count` values (e.g. all-reduced over
/// every worker's shard, each worker passing its own dy and x).
#[allow(clippy::too_many_arguments)]
pub fn backward_with_sums<T: Element>(
    grad: Io<'_, T>,
    x: &[T],
    layout: &Layout,
    gamma: Option<&[T]>,
    saved: Saved<'_, T>,
    path: GradPath<'_, T>,
    sums: &[GradSums],
    count: f64,
    params: ParamGrads<'_, T>,
) -> Result<()> {
    check_backward(
        grad.src_len(),
        grad.dst_len(),
        x,
        layout,
        gamma,
        &saved,
        path.relu_output,
    )?;
    check_params(&params, layout.channels)?;
    check_len("sums", sums.len(), layout.channels)?;
    if path.training {
        check_count(count)?;
    }
    pool::run(layout.len(), |exec| {
        finish_backward_in(
            exec, grad, x, layout, gamma, saved, path, sums, count, params,
        )
    });
    Ok(())
}

/// dx = dy masked by the ReLU's output, written into dx: the later passes run in place on it.
fn mask_relu_into_dst<'a, T: Element>(
    exec: Exec,
    grad: Io<'a, T>,
    relu_output: &[T],
) -> &'a mut [T] {
    let chunk = 1 << 15;
    match grad {
        Io::Separate { src, dst } => {
            exec.for_each_chunk_mut(dst, chunk, |start, d| {
                for ((d, g), o) in d.iter_mut().zip(&src[start..]).zip(&relu_output[start..]) {
                    *d = T::from_f64(masked(g.to_f64(), o.to_f64()));
                }
            });
            dst
        }
        Io::InPlace(dst) => {
            exec.for_each_chunk_mut(dst, chunk, |start, d| {
                for (d, o) in d.iter_mut().zip(&relu_output[start..]) {
                    *d = T::from_f64(masked(d.to_f64(), o.to_f64()));
                }
            });
            dst
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn finish_backward_in<T: Element>(
    exec: Exec,
    grad: Io<'_, T>,
    x: &[T],
    layout: &Layout,
    gamma: Option<&[T]>,
    saved: Saved<'_, T>,
    path: GradPath<'_, T>,
    sums: &[GradSums],
    count: f64,
    params: ParamGrads<'_, T>,
) {
    let gamma_at = |c: usize| gamma.map_or(1.0, |g| g[c].to_f64());
    let mut k = ChannelAffine::default();
    for (c, s) in sums.iter().enumerate() {
        let inv_std = saved.inv_std[c].to_f64();
        let dy_scale = gamma_at(c) * inv_std;
        k.scale.push(dy_scale);
        k.center.push(0.0);
        k.center_other.push(saved.mean[c].to_f64());
        if path.training {
            // dx = g*invStd/m * (m*dy - sum(dy) - xhat*sum(dy*xhat))
            k.scale_other
                .push(-dy_scale * inv_std * s.sum_dy_xhat / count);
            k.shift.push(-dy_scale * s.sum_dy / count);
        } else {
            k.scale_other.push(0.0);
            k.shift.push(0.0);
        }
        params.d_gamma[c] = T::from_f64(s.sum_dy_xhat);
        params.d_beta[c] = T::from_f64(s.sum_dy);
    }
    let grad = match path.relu_output {
        Some(y) => Io::InPlace(mask_relu_into_dst(exec, grad, y)),
        None => grad,
    };
    let other = if path.training { Some(x) } else { None };
    apply_channel_affine(exec, grad, other, layout, &k);
}
