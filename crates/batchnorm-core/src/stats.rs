//! Per-channel batch statistics. Each channel's values are summed after subtracting a shift
//! K (the channel's first value): `Σ(x - K)` and `Σ(x - K)²` in f64 lose nothing to a mean
//! that is large against the spread, in one read of x. Mergeable moments (count, mean,
//! M2) combine shards exactly (Chan et al.). And the running-stat update.

use crate::element::Element;
use crate::fingerprint::Fold;
use crate::layout::Layout;
use crate::path::Path;
use crate::pool::Exec;

/// Statistics of a set of values, mergeable exactly with another set's.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub count: f64,
    pub mean: f64,
    /// Sum of squared deviations from `mean`.
    pub m2: f64,
}

impl Moments {
    /// The statistics of the union of two sets (Chan, Golub & LeVeque's pairwise update).
    pub fn merge(&self, other: &Moments) -> Moments {
        if other.count == 0.0 {
            return *self;
        }
        if self.count == 0.0 {
            return *other;
        }
        let count = self.count + other.count;
        let delta = other.mean - self.mean;
        Moments {
            count,
            mean: self.mean + delta * (other.count / count),
            m2: self.m2 + other.m2 + delta * delta * (self.count * other.count / count),
        }
    }

    /// From `s1 = Σ(x - k)` and `s2 = Σ(x - k)²` over `count` values. M2 is clamped at 0
    /// (rounding), but NaN stays NaN so bad data shows. No values: count, mean, M2 all 0.
    pub(crate) fn from_shifted_sums(count: f64, k: f64, (s1, s2): (f64, f64)) -> Moments {
        if count == 0.0 {
            return Moments::default();
        }
        let m2 = s2 - s1 * s1 / count;
        Moments { count, mean: k + s1 / count, m2: if m2 < 0.0 { 0.0 } else { m2 } }
    }

    /// Population variance: what normalizes the batch.
    pub fn biased_var(&self) -> f64 {
        self.m2 / self.count
    }

    /// Sample variance: what the running estimate tracks (PyTorch's convention).
    pub fn unbiased_var(&self) -> f64 {
        self.corrected_var(1.0)
    }

    /// `M2 / (count - correction)`: 1 gives the sample variance, 0 the population one.
    pub fn corrected_var(&self, correction: f64) -> f64 {
        self.m2 / (self.count - correction)
    }
}

/// Each channel's shift: its first value, or 0 when that is not finite (then an infinite
/// value still gives an infinite mean and a NaN variance, as PyTorch's do).
pub(crate) fn channel_shifts<T: Element>(x: &[T], layout: &Layout) -> Vec<f64> {
    if layout.count_per_channel() == 0 {
        return vec![0.0; layout.channels];
    }
    (0..layout.channels).map(|c| x[c * layout.inner].to_f64()).map(|k| if k.is_finite() { k } else { 0.0 }).collect()
}

/// The moments of every channel of `x` (on `path`, the layout's); with `fold`, x's
/// fingerprint too, from the same sweep.
pub(crate) fn channel_moments_in<T: Element>(
    exec: Exec,
    path: Path,
    x: &[T],
    layout: &Layout,
    fold: Option<&Fold>,
) -> Vec<Moments> {
    let shifts = channel_shifts(x, layout);
    let sums = path.shifted_sums(exec, x, layout, &shifts, fold);
    let count = layout.count_per_channel() as f64;
    let moments = sums.into_iter().zip(&shifts).map(|(s, &k)| Moments::from_shifted_sums(count, k, s));
    moments.enumerate().map(|(c, m)| unless_overflowed(x, layout, c, m)).collect()
}

/// Channel c's moments `m`, or, when its shifted sums overflowed, its rescaled ones (as
/// `channelMomentsFromSums` in src/js/stats.ts).
fn unless_overflowed<T: Element>(x: &[T], layout: &Layout, c: usize, m: Moments) -> Moments {
    if m.mean.is_finite() && m.m2.is_finite() {
        return m;
    }
    rescaled_moments(x, layout, c).unwrap_or(m)
}

/// Values are scaled by 2^-SCALE_BITS (exactly) when their shifted sums overflowed.
const SCALE_BITS: i32 = 600;

/// 2^e for a normal exponent, from its bits: exact on every target (and under Miri, which
/// perturbs `powi`), so both backends scale by the very same number.
fn power_of_two(e: i32) -> f64 {
    f64::from_bits(((1023 + e) as u64) << 52)
}

/// Channel c's moments when its shifted sums overflowed although every value is finite
/// (f64 data near ±1.8e308, where x - K or its square leaves the range): again from the
/// values times 2^-600, exact, in two passes. The mean scales back finite; M2 scales back to
/// infinity when it truly exceeds the range (invStd is then 0, as PyTorch's). None when a
/// value is not finite: NaN and infinity propagate as before. Rare, so one thread, in the
/// order of `rescaledMoments` in src/js/stats.ts, so the backends agree.
fn rescaled_moments<T: Element>(x: &[T], layout: &Layout, c: usize) -> Option<Moments> {
    let rows = (0..layout.outer).map(|o| &x[(o * layout.channels + c) * layout.inner..][..layout.inner]);
    let down = power_of_two(-SCALE_BITS);
    let mut sum = 0.0;
    for row in rows.clone() {
        for v in row.iter().map(|v| v.to_f64()) {
            if !v.is_finite() {
                return None;
            }
            sum += v * down;
        }
    }
    let count = layout.count_per_channel() as f64;
    let scaled_mean = sum / count;
    let mut m2 = 0.0;
    for row in rows {
        for v in row {
            let d = v.to_f64() * down - scaled_mean;
            m2 += d * d;
        }
    }
    let up = power_of_two(SCALE_BITS);
    Some(Moments { count, mean: scaled_mean * up, m2: m2 * up * up })
}

/// `running = (1 - momentum) * running + momentum * batch`, with the batch variance taken as
/// `M2 / (count - var_correction)` (1: unbiased, PyTorch; 0: biased, Keras/TF/ONNX). A ghost
/// batch gives G groups of moments (group-major, G × C): its batch mean and variance are the
/// groups' averages, as Keras keeps them.
pub fn update_running_stats<T: Element>(
    running_mean: &mut [T],
    running_var: &mut [T],
    moments: &[Moments],
    momentum: f64,
    var_correction: f64,
) {
    let channels = running_mean.len();
    let groups = moments.len().checked_div(channels).unwrap_or(0);
    for (c, (rm, rv)) in running_mean.iter_mut().zip(running_var.iter_mut()).enumerate() {
        // From the first group on (not from 0.0), so one group is its own value, -0.0 included.
        let (mut mean, mut var) = (moments[c].mean, moments[c].corrected_var(var_correction));
        for m in moments[c..].iter().step_by(channels).skip(1) {
            mean += m.mean;
            var += m.corrected_var(var_correction);
        }
        let (mean, var) = (mean / groups as f64, var / groups as f64);
        *rm = T::from_f64((1.0 - momentum) * rm.to_f64() + momentum * mean);
        *rv = T::from_f64((1.0 - momentum) * rv.to_f64() + momentum * var);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool;

    fn moments_of(x: &[f64], layout: &Layout) -> Vec<Moments> {
        pool::run(x.len(), |exec| channel_moments_in(exec, Path::of(layout), x, layout, None))
    }

    #[test]
    fn merge_matches_direct_for_unequal_sets() {
        let a = [1.0, 2.0, 4.0];
        let b = [10.0, -3.0];
        let l = |n| Layout { outer: n, channels: 1, inner: 1 };
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let merged = moments_of(&a, &l(3))[0].merge(&moments_of(&b, &l(2))[0]);
        let direct = moments_of(&all, &l(5))[0];
        assert_eq!(merged.count, 5.0);
        assert!((merged.mean - direct.mean).abs() < 1e-12);
        assert!((merged.m2 - direct.m2).abs() < 1e-10);
    }

    #[test]
    fn finite_values_near_the_range_give_a_finite_mean() {
        // ±1e308: x - K overflows the shifted sums; the rescaled pass gives PyTorch's mean 0
        // and an infinite M2 (the variance ~1e616 is past the range). Both layouts.
        for (outer, inner) in [(4, 16), (64, 1)] {
            let layout = Layout { outer, channels: 1, inner };
            let x: Vec<f64> = (0..outer * inner).map(|i| if i % 2 == 0 { 1e308 } else { -1e308 }).collect();
            let m = moments_of(&x, &layout)[0];
            assert_eq!((m.mean, m.m2), (0.0, f64::INFINITY), "inner {inner}");
            let mut bad = x.clone();
            bad[1] = f64::NAN;
            assert!(moments_of(&bad, &layout)[0].mean.is_nan(), "NaN still propagates");
        }
    }

    #[test]
    fn nchw_channel_stats() {
        // [2, 2, 3]: channel 0 holds 1..3 and 7..9, channel 1 holds 4..6 and 10..12.
        let x: Vec<f64> = (1..=12).map(|v| v as f64).collect();
        let m = moments_of(&x, &Layout { outer: 2, channels: 2, inner: 3 });
        assert_eq!(m[0].mean, 5.0);
        assert_eq!(m[1].mean, 8.0);
        // Deviations from 5 are -4, -3, -2, 2, 3, 4.
        assert!((m[0].biased_var() - 58.0 / 6.0).abs() < 1e-12);
        assert!((m[0].unbiased_var() - 58.0 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn large_offset_f32_keeps_precision() {
        // mean 1e4, spread 1: a naive E[x^2] - E[x]^2 in f32 loses every digit here.
        let n = 200_000;
        let x: Vec<f32> = (0..n).map(|i| 1.0e4 + if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let layout = Layout { outer: n, channels: 1, inner: 1 };
        let m = pool::run(x.len(), |exec| channel_moments_in(exec, Path::of(&layout), &x, &layout, None));
        assert!((m[0].mean - 1.0e4).abs() < 1e-9);
        assert!((m[0].biased_var() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn infinity_gives_infinite_mean_and_nan_variance() {
        let x = [1.0, f64::INFINITY, 2.0, 3.0];
        let m = moments_of(&x, &Layout { outer: 4, channels: 1, inner: 1 });
        assert_eq!(m[0].mean, f64::INFINITY);
        assert!(m[0].m2.is_nan());
    }
}
