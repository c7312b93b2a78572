//! The forward pass: normalize with batch statistics (training) or running statistics
//! (inference), then scale and shift. Per channel the hot loop is one fused
//! `(x - mean) * (gamma * invStd) + beta`.

use crate::element::Element;
use crate::elementwise::{apply_channel_affine, ChannelAffine};
use crate::error::{check_len, Error, Result};
use crate::io::Io;
use crate::layout::Layout;
use crate::pool;
use crate::stats::{channel_moments_in, update_running_stats, Moments};

/// The learned per-channel scale (gamma) and shift (beta); `None` means ones / zeros.
#[derive(Debug, Clone, Copy)]
pub struct Affine<'a, T> {
    pub gamma: Option<&'a [T]>,
    pub beta: Option<&'a [T]>,
}

/// Running statistics updated in place by a training step.
#[derive(Debug)]
pub struct RunningStats<'a, T> {
    pub mean: &'a mut [T],
    pub var: &'a mut [T],
    pub momentum: f64,
}

/// Where a training step writes the statistics it normalized with (saved for backward).
#[derive(Debug)]
pub struct SavedStats<'a, T> {
    pub mean: &'a mut [T],
    pub inv_std: &'a mut [T],
}

pub(crate) fn check_eps(eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(Error::range(format!(
            "eps must be a finite number > 0, got {eps}"
        )))
    }
}

fn check_io<T: Element>(io: &Io<'_, T>, layout: &Layout) -> Result<()> {
    check_len("x", io.src_len(), layout.len())?;
    check_len("out", io.dst_len(), layout.len())
}

fn check_affine<T>(affine: &Affine<'_, T>, channels: usize) -> Result<()> {
    if let Some(g) = affine.gamma {
        check_len("gamma", g.len(), channels)?;
    }
    if let Some(b) = affine.beta {
        check_len("beta", b.len(), channels)?;
    }
    Ok(())
}

/// Coefficients of `y = (x - mean) * gamma * invStd + beta` for each channel.
fn normalize_coefficients<T: Element>(
    mean: &[f64],
    inv_std: &[f64],
    affine: &Affine<'_, T>,
) -> ChannelAffine {
    let gamma = |c: usize| affine.gamma.map_or(1.0, |g| g[c].to_f64());
    let beta = |c: usize| affine.beta.map_or(0.0, |b| b[c].to_f64());
    let channels = mean.len();
    ChannelAffine::single(
        (0..channels).map(|c| gamma(c) * inv_std[c]).collect(),
        mean.to_vec(),
        (0..channels).map(beta).collect(),
    )
}

/// Training forward: batch statistics, normalization, optional running-stat update.
/// Everything is checked before anything is written.
pub fn train<T: Element>(
    io: Io<'_, T>,
    layout: &Layout,
    affine: Affine<'_, T>,
    eps: f64,
    running: Option<RunningStats<'_, T>>,
    saved: SavedStats<'_, T>,
) -> Result<()> {
    check_io(&io, layout)?;
    check_affine(&affine, layout.channels)?;
    check_eps(eps)?;
    check_len("mean", saved.mean.len(), layout.channels)?;
    check_len("invStd", saved.inv_std.len(), layout.channels)?;
    if let Some(r) = &running {
        check_len("runningMean", r.mean.len(), layout.channels)?;
        check_len("runningVar", r.var.len(), layout.channels)?;
        check_momentum(r.momentum)?;
    }
    check_count(layout)?;
    pool::run(layout.len(), |exec| {
        let moments = channel_moments_in(exec, io.src(), layout);
        normalize_with_moments_in(exec, io, layout, &affine, eps, &moments, running, saved);
    });
    Ok(())
}

pub(crate) fn check_momentum(momentum: f64) -> Result<()> {
    if (0.0..=1.0).contains(&momentum) {
        Ok(())
    } else {
        Err(Error::range(format!(
            "momentum must be in [0, 1], got {momentum}"
        )))
    }
}

pub(crate) fn check_count(layout: &Layout) -> Result<()> {
    let m = layout.count_per_channel();
    if m < 2 {
        return Err(Error::range(format!(
            "x must have more than 1 value per channel when training, got {m}"
        )));
    }
    Ok(())
}

/// Normalizes with given per-channel moments (the batch's, or merged across workers).
#[allow(clippy::too_many_arguments)]
pub(crate) fn normalize_with_moments_in<T: Element>(
    exec: pool::Exec,
    io: Io<'_, T>,
    layout: &Layout,
    affine: &Affine<'_, T>,
    eps: f64,
    moments: &[Moments],
    running: Option<RunningStats<'_, T>>,
    saved: SavedStats<'_, T>,
) {
    let mean: Vec<f64> = moments.iter().map(|m| m.mean).collect();
    let inv_std: Vec<f64> = moments
        .iter()
        .map(|m| 1.0 / (m.biased_var() + eps).sqrt())
        .collect();
    let k = normalize_coefficients(&mean, &inv_std, affine);
    apply_channel_affine(exec, io, None, layout, &k);
    for c in 0..layout.channels {
        saved.mean[c] = T::from_f64(mean[c]);
        saved.inv_std[c] = T::from_f64(inv_std[c]);
    }
    if let Some(r) = running {
        update_running_stats(r.mean, r.var, moments, r.momentum);
    }
}

/// Inference forward: normalize with the running statistics.
pub fn eval<T: Element>(
    io: Io<'_, T>,
    layout: &Layout,
    affine: Affine<'_, T>,
    eps: f64,
    running_mean: &[T],
    running_var: &[T],
) -> Result<()> {
    check_io(&io, layout)?;
    check_affine(&affine, layout.channels)?;
    check_eps(eps)?;
    check_len("runningMean", running_mean.len(), layout.channels)?;
    check_len("runningVar", running_var.len(), layout.channels)?;
    let mean: Vec<f64> = running_mean.iter().map(|v| v.to_f64()).collect();
    let inv_std: Vec<f64> = running_var
        .iter()
        .map(|v| 1.0 / (v.to_f64() + eps).sqrt())
        .collect();
    let k = normalize_coefficients(&mean, &inv_std, &affine);
    pool::run(layout.len(), |exec| {
        apply_channel_affine(exec, io, None, layout, &k)
    });
    Ok(())
}
