//! The backward pass: dGamma = sum(dy * xhat), dBeta = sum(dy) per channel, and dx,
//! either through the batch statistics (training) or with them frozen (inference),
//! optionally through a fused ReLU (dy counts only where its output was > 0).

use crate::checks::{check_count, check_len, group_layout};
use crate::coefficients::Coefficients;
use crate::element::Element;
use crate::error::Result;
use crate::fingerprint::{fingerprint, Fold};
use crate::io::Io;
use crate::kernels::through_relu;
use crate::layout::Layout;
use crate::pass::Inputs;
use crate::path::Path;
use crate::pool::{self, Exec};
use crate::store::streams;

/// Per-channel sums the backward pass needs: sum(dy) and sum(dy * xhat).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GradSums {
    pub sum_dy: f64,
    pub sum_dy_xhat: f64,
}

/// Where the parameter gradients go; the gradient of a residual the forward pass added
/// before its activation (`None`: there was none, or the caller does not want it); and, when
/// asked, the fingerprint of x as the backward read it (see `fingerprint`). The parameter
/// gradients are `T::Param` (f32 for the 16-bit formats), dResidual a tensor of T.
#[derive(Debug)]
pub struct ParamGrads<'a, T: Element> {
    pub d_gamma: &'a mut [T::Param],
    pub d_beta: &'a mut [T::Param],
    pub d_residual: Option<&'a mut [T]>,
    pub x_fingerprint: Option<&'a mut u32>,
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

impl<T: Element> Saved<'_, T> {
    /// `(Σg, Σg·(x - mean))` of channel c -> the sums with xhat.
    fn grad_sums(&self, c: usize, (sum_dy, sum_dy_xmu): (f64, f64)) -> GradSums {
        GradSums { sum_dy, sum_dy_xhat: sum_dy_xmu * self.inv_std[c].to_f64() }
    }
}

/// The dx pass's coefficients per channel: dx = g*invStd/m * (m*dy - Σdy - xhat*Σ(dy*xhat))
/// when training, dx = g*invStd*dy when frozen.
fn dx_coefficients<T: Element>(
    gamma: Option<&[T::Param]>,
    saved: &Saved<'_, T::Param>,
    training: bool,
    sums: &[GradSums],
    count: f64,
) -> Vec<Coefficients> {
    sums.iter()
        .enumerate()
        .map(|(c, s)| {
            let inv_std = saved.inv_std[c].to_f64();
            let dy_scale = gamma.map_or(1.0, |g| g[c].to_f64()) * inv_std;
            let mut k =
                Coefficients { scale: dy_scale, center_other: saved.mean[c].to_f64(), ..Coefficients::default() };
            if training {
                k.scale_other = -dy_scale * inv_std * s.sum_dy_xhat / count;
                k.shift = -dy_scale * s.sum_dy / count;
            }
            k
        })
        .collect()
}

/// The sums of every channel (on `path`, the layout's); with `fold`, x's fingerprint too,
/// from the same sweep.
#[allow(clippy::too_many_arguments)]
fn grad_sums_in<T: Element>(
    exec: Exec,
    path: Path,
    dy: &[T],
    x: &[T],
    relu_output: Option<&[T]>,
    layout: &Layout,
    saved: Saved<'_, T::Param>,
    fold: Option<&Fold>,
) -> Vec<GradSums> {
    let mean: Vec<f64> = saved.mean.iter().map(|v| v.to_f64()).collect();
    let sums = path.grad_sums(exec, dy, x, relu_output, layout, &mean, fold);
    sums.into_iter().enumerate().map(|(c, s)| saved.grad_sums(c, s)).collect()
}

/// The saved statistics are per group and channel (groups × C).
#[allow(clippy::too_many_arguments)]
fn check_backward<T: Element>(
    dy_len: usize,
    dx_len: usize,
    x: &[T],
    layout: &Layout,
    groups: usize,
    gamma: Option<&[T::Param]>,
    saved: &Saved<'_, T::Param>,
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
    check_len("mean", saved.mean.len(), groups * channels)?;
    check_len("invStd", saved.inv_std.len(), groups * channels)
}

fn check_params<T: Element>(params: &ParamGrads<'_, T>, layout: &Layout) -> Result<()> {
    check_len("dGamma", params.d_gamma.len(), layout.channels)?;
    check_len("dBeta", params.d_beta.len(), layout.channels)?;
    if let Some(d) = &params.d_residual {
        check_len("dResidual", d.len(), layout.len())?;
    }
    Ok(())
}

/// Elements per task of the residual-gradient pass.
const RESIDUAL_CHUNK: usize = 1 << 16;

/// What flows to the residual: dy itself, or dy where the fused ReLU's output was > 0. Runs
/// before the dx pass, which may overwrite dy in place.
fn residual_grad_in<T: Element>(exec: Exec, dy: &[T], relu_output: Option<&[T]>, dst: &mut [T]) {
    exec.for_each_chunk_mut(dst, RESIDUAL_CHUNK, |start, d| {
        let span = start..start + d.len();
        let g = &dy[span.clone()];
        match relu_output {
            None => d.copy_from_slice(g),
            Some(y) => {
                for ((d, g), y) in d.iter_mut().zip(g).zip(&y[span]) {
                    *d = T::from_f64(through_relu(g.to_f64(), y.to_f64()));
                }
            }
        }
    });
}

/// Per-channel sum(dy) and sum(dy * xhat): one shard's part of the backward reduction.
pub fn grad_sums<T: Element>(
    dy: &[T],
    x: &[T],
    layout: &Layout,
    saved: Saved<'_, T::Param>,
    relu_output: Option<&[T]>,
) -> Result<Vec<GradSums>> {
    check_backward(dy.len(), dy.len(), x, layout, 1, None, &saved, relu_output)?;
    Ok(pool::run(layout.len(), |exec| grad_sums_in(exec, Path::of(layout), dy, x, relu_output, layout, saved, None)))
}

/// What both dx forms check before anything is written; gives the dx pass's extra inputs
/// (x in training, for the x-hat term; the ReLU output as a mask).
#[allow(clippy::too_many_arguments)]
fn check_dx<'a, T: Element>(
    grad: &Io<'_, T>,
    x: &'a [T],
    layout: &Layout,
    groups: usize,
    gamma: Option<&[T::Param]>,
    saved: &Saved<'_, T::Param>,
    flow: &GradPath<'a, T>,
    params: &ParamGrads<'_, T>,
    count: f64,
) -> Result<Inputs<'a, T>> {
    check_backward(grad.src_len(), grad.dst_len(), x, layout, groups, gamma, saved, flow.relu_output)?;
    check_params(params, layout)?;
    if flow.training {
        check_count(count)?;
    }
    Ok(Inputs { other: flow.training.then_some(x), mask: flow.relu_output, relu_result: false })
}

fn write_params<T: Element>(sums: &[GradSums], params: &mut ParamGrads<'_, T>) {
    for (c, s) in sums.iter().enumerate() {
        params.d_gamma[c] = T::Param::from_f64(s.sum_dy_xhat);
        params.d_beta[c] = T::Param::from_f64(s.sum_dy);
    }
}

/// dx, dGamma and dBeta. `grad` reads dy and writes dx (the same array when in place).
pub fn backward<T: Element>(
    grad: Io<'_, T>,
    x: &[T],
    layout: &Layout,
    gamma: Option<&[T::Param]>,
    saved: Saved<'_, T::Param>,
    flow: GradPath<'_, T>,
    params: ParamGrads<'_, T>,
) -> Result<()> {
    backward_in_groups(grad, x, layout, 1, gamma, saved, flow, params)
}

/// The backward of `train_in_groups` (ghost batches): each of the `groups` runs of the batch
/// differentiated with its own statistics (`saved`: groups × C, group-major), in one call;
/// dGamma and dBeta are the sums over the groups. One group is `backward`.
#[allow(clippy::too_many_arguments)]
pub fn backward_in_groups<T: Element>(
    grad: Io<'_, T>,
    x: &[T],
    layout: &Layout,
    groups: usize,
    gamma: Option<&[T::Param]>,
    saved: Saved<'_, T::Param>,
    flow: GradPath<'_, T>,
    params: ParamGrads<'_, T>,
) -> Result<()> {
    let group = group_layout(layout, groups)?;
    let count = group.count_per_channel() as f64;
    let inputs = check_dx(&grad, x, layout, groups, gamma, &saved, &flow, &params, count)?;
    let mut params = params;
    let mut grad = grad;
    let d_residual = params.d_residual.take();
    let path = Path::of(&group);
    let (size, channels, streaming) = (group.len(), layout.channels, streams::<T>(layout.len()));
    let (sums, print) = pool::run(layout.len(), |exec| {
        if let Some(d) = d_residual {
            residual_grad_in(exec, grad.src(), flow.relu_output, d);
        }
        // The fingerprint rides on the sums sweeps, which read x anyway.
        let mut fold = params.x_fingerprint.is_some().then(Fold::new);
        let mut total: Vec<GradSums> = Vec::new();
        // No channels: nothing to loop over, however many groups the batch has.
        let runs = if layout.is_empty() { 0 } else { groups };
        for g in 0..runs {
            let (range, stats) = (g * size..(g + 1) * size, g * channels..(g + 1) * channels);
            if let Some(f) = fold.as_mut() {
                f.starting_at(range.start);
            }
            let saved = Saved { mean: &saved.mean[stats.clone()], inv_std: &saved.inv_std[stats] };
            let relu_output = flow.relu_output.map(|y| &y[range.clone()]);
            let part = grad.part(range.clone());
            let sums =
                grad_sums_in(exec, path, part.src(), &x[range.clone()], relu_output, &group, saved, fold.as_ref());
            let k = dx_coefficients::<T>(gamma, &saved, flow.training, &sums, count);
            path.apply_storing(exec, part, &group, inputs.part(range), &k, streaming);
            // The first group's sums as they are (one group is the plain backward, -0.0 included).
            if g == 0 {
                total = sums;
            } else {
                for (t, s) in total.iter_mut().zip(&sums) {
                    t.sum_dy += s.sum_dy;
                    t.sum_dy_xhat += s.sum_dy_xhat;
                }
            }
        }
        (total, fold.map(|f| f.total()))
    });
    if let (Some(out), Some(print)) = (params.x_fingerprint.as_deref_mut(), print) {
        *out = print;
    }
    write_params(&sums, &mut params);
    Ok(())
}

/// dx and the parameter gradients from sums over `count` values (e.g. all-reduced over
/// every worker's shard, each worker passing its own dy and x).
#[allow(clippy::too_many_arguments)]
pub fn backward_with_sums<T: Element>(
    grad: Io<'_, T>,
    x: &[T],
    layout: &Layout,
    gamma: Option<&[T::Param]>,
    saved: Saved<'_, T::Param>,
    flow: GradPath<'_, T>,
    sums: &[GradSums],
    count: f64,
    params: ParamGrads<'_, T>,
) -> Result<()> {
    check_len("sums", sums.len(), layout.channels)?;
    let inputs = check_dx(&grad, x, layout, 1, gamma, &saved, &flow, &params, count)?;
    let k = dx_coefficients::<T>(gamma, &saved, flow.training, sums, count);
    let mut params = params;
    let d_residual = params.d_residual.take();
    // No sums sweep here to ride on: the fingerprint takes a pass of its own.
    if let Some(out) = params.x_fingerprint.as_deref_mut() {
        *out = fingerprint(x);
    }
    let path = Path::of(layout);
    pool::run(layout.len(), |exec| {
        if let Some(d) = d_residual {
            residual_grad_in(exec, grad.src(), flow.relu_output, d);
        }
        path.apply(exec, grad, layout, inputs, &k)
    });
    write_params(sums, &mut params);
    Ok(())
}
