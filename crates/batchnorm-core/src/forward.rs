//! The forward pass: normalize with batch statistics (training), with given statistics
//! (merged across workers), or with running statistics (inference), then scale, shift
//! and optionally ReLU. Per channel the hot loop is one fused
//! `(x - mean) * (gamma * invStd) + beta`.

use std::ops::Range;

use crate::checks::{check_count, check_eps, check_len, check_momentum, check_var_correction, group_layout};
use crate::coefficients::Coefficients;
use crate::element::Element;
use crate::error::Result;
use crate::fingerprint::{fingerprint, Fold};
use crate::io::Io;
use crate::layout::Layout;
use crate::pass::Inputs;
use crate::path::Path;
use crate::pool;
use crate::stats::{channel_moments_in, update_running_stats, Moments};
use crate::store::streams;

/// What follows the normalization in the same pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    None,
    /// `max(0, y)`: the BN -> ReLU of a conv block, fused so no second pass or array.
    Relu,
}

/// How to normalize: learned scale (gamma) and shift (beta), `None` meaning ones / zeros;
/// the variance epsilon; a residual added before the activation (the `+ z` of a ResNet
/// block, same shape as x); the fused activation. Parameters are `T::Param` (f32 for the
/// 16-bit formats), the residual is a tensor of T.
#[derive(Debug, Clone, Copy)]
pub struct Norm<'a, T: Element> {
    pub gamma: Option<&'a [T::Param]>,
    pub beta: Option<&'a [T::Param]>,
    pub eps: f64,
    pub residual: Option<&'a [T]>,
    pub activation: Activation,
}

/// Running statistics updated in place by a training step.
#[derive(Debug)]
pub struct RunningStats<'a, T> {
    pub mean: &'a mut [T],
    pub var: &'a mut [T],
    pub momentum: f64,
    /// Subtracted from the count when the batch variance enters the running one: 1 is
    /// Bessel's correction (PyTorch), 0 the population variance (Keras, TensorFlow, ONNX).
    pub var_correction: f64,
}

/// Where a training step writes the statistics it normalized with (saved for backward),
/// and, when asked, the fingerprint of x as the step read it (see `fingerprint`).
#[derive(Debug)]
pub struct SavedStats<'a, T> {
    pub mean: &'a mut [T],
    pub inv_std: &'a mut [T],
    pub x_fingerprint: Option<&'a mut u32>,
}

fn check_io<T: Element>(io: &Io<'_, T>, layout: &Layout) -> Result<()> {
    check_len("x", io.src_len(), layout.len())?;
    check_len("out", io.dst_len(), layout.len())
}

fn check_norm<T: Element>(norm: &Norm<'_, T>, layout: &Layout) -> Result<()> {
    if let Some(g) = norm.gamma {
        check_len("gamma", g.len(), layout.channels)?;
    }
    if let Some(b) = norm.beta {
        check_len("beta", b.len(), layout.channels)?;
    }
    if let Some(z) = norm.residual {
        check_len("residual", z.len(), layout.len())?;
    }
    check_eps(norm.eps)
}

/// Saved statistics are per group and channel (groups × C), running ones per channel.
fn check_train_outputs<T>(
    running: &Option<RunningStats<'_, T>>,
    saved: &SavedStats<'_, T>,
    channels: usize,
    groups: usize,
) -> Result<()> {
    check_len("mean", saved.mean.len(), groups * channels)?;
    check_len("invStd", saved.inv_std.len(), groups * channels)?;
    if let Some(r) = running {
        check_len("runningMean", r.mean.len(), channels)?;
        check_len("runningVar", r.var.len(), channels)?;
        check_momentum(r.momentum)?;
        check_var_correction(r.var_correction)?;
    }
    Ok(())
}

impl<T: Element> Norm<'_, T> {
    /// Coefficients of `y = (x - mean) * gamma * invStd + beta` for channel c.
    fn coefficients(&self, c: usize, mean: f64, inv_std: f64) -> Coefficients {
        let gamma = self.gamma.map_or(1.0, |g| g[c].to_f64());
        let beta = self.beta.map_or(0.0, |b| b[c].to_f64());
        // The residual is the pass's second input, added as it is.
        let scale_other = if self.residual.is_some() { 1.0 } else { 0.0 };
        Coefficients { scale: gamma * inv_std, center: mean, shift: beta, scale_other, center_other: 0.0 }
    }

    fn inputs(&self) -> Inputs<'_, T> {
        Inputs { other: self.residual, mask: None, relu_result: self.activation == Activation::Relu }
    }

    /// The normalization of the elements `range`: one group of a ghost batch.
    fn part(&self, range: Range<usize>) -> Self {
        Norm { residual: self.residual.map(|z| &z[range]), ..*self }
    }

    fn inv_std(&self, m: &Moments) -> f64 {
        1.0 / (m.biased_var() + self.eps).sqrt()
    }
}

/// Training forward: batch statistics, normalization, optional running-stat update.
/// Everything is checked before anything is written.
pub fn train<T: Element>(
    io: Io<'_, T>,
    layout: &Layout,
    norm: Norm<'_, T>,
    running: Option<RunningStats<'_, T::Param>>,
    saved: SavedStats<'_, T::Param>,
) -> Result<()> {
    train_in_groups(io, layout, 1, norm, running, saved)
}

/// Ghost batch normalization (Hoffer et al. 2017; Keras `virtual_batch_size`): the batch cut
/// along `outer` into `groups` equal runs, each normalized with its own statistics, in one
/// call. Per group a statistics sweep (the fingerprint folded in) and the pass, so the groups
/// together read and write memory as one batch does. `saved` takes groups × C statistics,
/// group-major; the running statistics move by the groups' average (`update_running_stats`).
/// One group is `train`.
pub fn train_in_groups<T: Element>(
    io: Io<'_, T>,
    layout: &Layout,
    groups: usize,
    norm: Norm<'_, T>,
    running: Option<RunningStats<'_, T::Param>>,
    saved: SavedStats<'_, T::Param>,
) -> Result<()> {
    let group = group_layout(layout, groups)?;
    check_train(&io, layout, groups, &norm, &running, &saved)?;
    check_count(group.count_per_channel() as f64)?;
    let mut saved = saved;
    let mut io = io;
    let path = Path::of(&group);
    let (size, streaming) = (group.len(), streams::<T>(layout.len()));
    let (moments, print) = pool::run(layout.len(), |exec| {
        // The fingerprint rides on the statistics sweeps, which read x anyway.
        let mut fold = saved.x_fingerprint.is_some().then(Fold::new);
        let mut moments = Vec::with_capacity(groups * layout.channels);
        // No channels: nothing to loop over, however many groups the batch has.
        let runs = if layout.is_empty() { 0 } else { groups };
        for g in 0..runs {
            let range = g * size..(g + 1) * size;
            if let Some(f) = fold.as_mut() {
                f.starting_at(range.start);
            }
            let part = io.part(range.clone());
            let m = channel_moments_in(exec, path, part.src(), &group, fold.as_ref());
            let k = coefficients(&norm, &m);
            path.apply_storing(exec, part, &group, norm.part(range).inputs(), &k, streaming);
            moments.extend(m);
        }
        (moments, fold.map(|f| f.total()))
    });
    if let (Some(out), Some(print)) = (saved.x_fingerprint.as_deref_mut(), print) {
        *out = print;
    }
    save_stats(&norm, &moments, running, saved);
    Ok(())
}

/// Per-channel moments of `x` (count, mean, M2): one shard's part of the batch statistics.
pub fn channel_moments<T: Element>(x: &[T], layout: &Layout) -> Result<Vec<Moments>> {
    check_len("x", x.len(), layout.len())?;
    Ok(pool::run(layout.len(), |exec| channel_moments_in(exec, Path::of(layout), x, layout, None)))
}

/// Training forward with statistics given by the caller (e.g. merged over every worker's
/// shard): normalizes, saves mean/invStd, and updates running stats with their count.
pub fn train_with_moments<T: Element>(
    io: Io<'_, T>,
    layout: &Layout,
    norm: Norm<'_, T>,
    moments: &[Moments],
    running: Option<RunningStats<'_, T::Param>>,
    saved: SavedStats<'_, T::Param>,
) -> Result<()> {
    check_train(&io, layout, 1, &norm, &running, &saved)?;
    check_len("stats", moments.len(), layout.channels)?;
    for m in moments {
        check_count(m.count)?;
    }
    let mut saved = saved;
    // No statistics sweep here to ride on: the fingerprint takes a pass of its own.
    if let Some(out) = saved.x_fingerprint.as_deref_mut() {
        *out = fingerprint(io.src());
    }
    let k = coefficients(&norm, moments);
    pool::run(layout.len(), |exec| Path::of(layout).apply(exec, io, layout, norm.inputs(), &k));
    save_stats(&norm, moments, running, saved);
    Ok(())
}

/// What both training forms check before anything is written.
fn check_train<T: Element>(
    io: &Io<'_, T>,
    layout: &Layout,
    groups: usize,
    norm: &Norm<'_, T>,
    running: &Option<RunningStats<'_, T::Param>>,
    saved: &SavedStats<'_, T::Param>,
) -> Result<()> {
    check_io(io, layout)?;
    check_norm(norm, layout)?;
    check_train_outputs(running, saved, layout.channels, groups)
}

/// The pass's coefficients of each channel, from the statistics it normalizes with.
fn coefficients<T: Element>(norm: &Norm<'_, T>, moments: &[Moments]) -> Vec<Coefficients> {
    moments.iter().enumerate().map(|(c, m)| norm.coefficients(c, m.mean, norm.inv_std(m))).collect()
}

/// Writes the statistics a step normalized with (groups × C), and updates the running ones.
fn save_stats<T: Element>(
    norm: &Norm<'_, T>,
    moments: &[Moments],
    running: Option<RunningStats<'_, T::Param>>,
    saved: SavedStats<'_, T::Param>,
) {
    for (c, m) in moments.iter().enumerate() {
        saved.mean[c] = T::Param::from_f64(m.mean);
        saved.inv_std[c] = T::Param::from_f64(norm.inv_std(m));
    }
    if let Some(r) = running {
        update_running_stats(r.mean, r.var, moments, r.momentum, r.var_correction);
    }
}

/// Inference forward: normalize with the running statistics.
pub fn eval<T: Element>(
    io: Io<'_, T>,
    layout: &Layout,
    norm: Norm<'_, T>,
    running_mean: &[T::Param],
    running_var: &[T::Param],
) -> Result<()> {
    check_io(&io, layout)?;
    check_norm(&norm, layout)?;
    check_len("runningMean", running_mean.len(), layout.channels)?;
    check_len("runningVar", running_var.len(), layout.channels)?;
    let k: Vec<Coefficients> = (0..layout.channels)
        .map(|c| norm.coefficients(c, running_mean[c].to_f64(), 1.0 / (running_var[c].to_f64() + norm.eps).sqrt()))
        .collect();
    let path = Path::of(layout);
    pool::run(layout.len(), |exec| path.apply(exec, io, layout, norm.inputs(), &k));
    Ok(())
}
