//! Per-channel batch statistics: count, mean and sum of squared deviations (M2), taken
//! two-pass per cached sub-block and merged with Chan et al.'s formula, so data whose
//! mean is large against its spread keeps its precision. And the running-stat update.

use crate::element::Element;
use crate::layout::Layout;
use crate::pool::Exec;
use crate::tiles::reduce_channels;

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

    /// Population variance: what normalizes the batch.
    pub fn biased_var(&self) -> f64 {
        self.m2 / self.count
    }

    /// Sample variance: what the running estimate tracks (PyTorch's convention).
    pub fn unbiased_var(&self) -> f64 {
        self.m2 / (self.count - 1.0)
    }
}

/// Per-channel moments of `x` viewed through `layout`.
pub(crate) fn channel_moments_in<T: Element>(exec: Exec, x: &[T], layout: &Layout) -> Vec<Moments> {
    let width = layout.channels * layout.inner;
    reduce_channels(
        exec,
        layout,
        |tile, runs| {
            let cols = tile.columns.clone();
            let mut column_sum = vec![0.0f64; cols.len()];
            let mut column_mean = vec![0.0f64; cols.len()];
            let mut column_m2 = vec![0.0f64; cols.len()];
            let mut totals = vec![Moments::default(); runs.len()];
            for block in tile.sub_blocks() {
                let rows = || {
                    block
                        .clone()
                        .map(|r| &x[r * width + cols.start..r * width + cols.end])
                };
                // Pass 1: the block's mean per channel.
                column_sum.fill(0.0);
                for row in rows() {
                    for (s, v) in column_sum.iter_mut().zip(row) {
                        *s += v.to_f64();
                    }
                }
                let mut block_moments = Vec::with_capacity(runs.len());
                for run in runs {
                    let count = (run.columns.len() * block.len()) as f64;
                    let mean = column_sum[run.columns.clone()].iter().sum::<f64>() / count;
                    column_mean[run.columns.clone()].fill(mean);
                    block_moments.push(Moments {
                        count,
                        mean,
                        m2: 0.0,
                    });
                }
                // Pass 2: deviations from that mean, while the block is cached. Their sum
                // corrects the rounding of the pass-1 mean (the "corrected two-pass" form).
                column_sum.fill(0.0);
                column_m2.fill(0.0);
                for row in rows() {
                    for (((s, m2), mean), v) in column_sum
                        .iter_mut()
                        .zip(column_m2.iter_mut())
                        .zip(&column_mean)
                        .zip(row)
                    {
                        let d = v.to_f64() - mean;
                        *s += d;
                        *m2 += d * d;
                    }
                }
                for ((run, moments), total) in runs.iter().zip(&mut block_moments).zip(&mut totals)
                {
                    let deviation: f64 = column_sum[run.columns.clone()].iter().sum();
                    let squares: f64 = column_m2[run.columns.clone()].iter().sum();
                    moments.mean += deviation / moments.count;
                    moments.m2 = squares - deviation * deviation / moments.count;
                    *total = total.merge(moments);
                }
            }
            totals
        },
        |total, part| *total = total.merge(part),
    )
}

/// `running = (1 - momentum) * running + momentum * batch`, with the unbiased batch variance.
pub fn update_running_stats<T: Element>(
    running_mean: &mut [T],
    running_var: &mut [T],
    moments: &[Moments],
    momentum: f64,
) {
    for ((rm, rv), m) in running_mean
        .iter_mut()
        .zip(running_var.iter_mut())
        .zip(moments)
    {
        *rm = T::from_f64((1.0 - momentum) * rm.to_f64() + momentum * m.mean);
        *rv = T::from_f64((1.0 - momentum) * rv.to_f64() + momentum * m.unbiased_var());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool;

    fn moments_of(x: &[f64], layout: &Layout) -> Vec<Moments> {
        pool::run(x.len(), |exec| channel_moments_in(exec, x, layout))
    }

    #[test]
    fn merge_matches_direct_for_unequal_sets() {
        let a = [1.0, 2.0, 4.0];
        let b = [10.0, -3.0];
        let l = |n| Layout {
            outer: n,
            channels: 1,
            inner: 1,
        };
        let all: Vec<f64> = a.iter().chain(&b).copied().collect();
        let merged = moments_of(&a, &l(3))[0].merge(&moments_of(&b, &l(2))[0]);
        let direct = moments_of(&all, &l(5))[0];
        assert_eq!(merged.count, 5.0);
        assert!((merged.mean - direct.mean).abs() < 1e-12);
        assert!((merged.m2 - direct.m2).abs() < 1e-10);
    }

    #[test]
    fn nchw_channel_stats() {
        // [2, 2, 3]: channel 0 holds 1..3 and 7..9, channel 1 holds 4..6 and 10..12.
        let x: Vec<f64> = (1..=12).map(|v| v as f64).collect();
        let m = moments_of(
            &x,
            &Layout {
                outer: 2,
                channels: 2,
                inner: 3,
            },
        );
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
        let x: Vec<f32> = (0..n)
            .map(|i| 1.0e4 + if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let layout = Layout {
            outer: n,
            channels: 1,
            inner: 1,
        };
        let m = pool::run(x.len(), |exec| channel_moments_in(exec, &x, &layout));
        assert!((m[0].mean - 1.0e4).abs() < 1e-9);
        assert!((m[0].biased_var() - 1.0).abs() < 1e-9);
    }
}
