//! The coefficients of the elementwise pass: one set per channel (`Coefficients`), and spread
//! out per column of a row of channels (`ColumnCoefficients`, in a buffer kept per thread),
//! with the spread of any per-channel value (`spread_columns`).

/// Per-channel coefficients of `dst = act((src - center) * scale + (other - center_other) * scale_other + shift)`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Coefficients {
    pub scale: f64,
    pub center: f64,
    pub scale_other: f64,
    pub center_other: f64,
    pub shift: f64,
}

/// Coefficients spread out per column of a row (channel of column j = j / inner): the five
/// fields of `Coefficients`, each an array of `width` values, one after another a cache line
/// apart (so at widths of a multiple of 4 KiB they do not fall in the same L1 sets). The
/// buffer is kept per thread between calls: a fresh one of over 128 KiB is a fresh mapping
/// from the allocator, and its page faults doubled a `[64,4096]` inference.
#[derive(Debug, Default)]
pub(crate) struct ColumnCoefficients {
    values: Vec<f64>,
    pub(crate) width: usize,
}

/// f64 values between two fields' arrays: one cache line.
const FIELD_GAP: usize = 8;
/// Kept buffers up to this many values (8 MiB); a larger one is freed after its call.
const KEPT_VALUES: usize = 1 << 20;

thread_local! {
    static KEPT: std::cell::Cell<Vec<f64>> = const { std::cell::Cell::new(Vec::new()) };
}

impl ColumnCoefficients {
    pub(crate) fn spread(per_channel: &[Coefficients], inner: usize) -> Self {
        Self::spread_range(per_channel, inner, 0, per_channel.len() * inner)
    }

    /// The coefficients of the `len` columns from `first` on only (column j of the result is
    /// column `first + j` of the row), for a task that covers part of a very wide row.
    pub(crate) fn spread_range(per_channel: &[Coefficients], inner: usize, first: usize, len: usize) -> Self {
        let width = len;
        let stride = width + FIELD_GAP;
        let mut values = KEPT.with(|kept| kept.take());
        values.clear();
        values.resize(5 * stride, 0.0);
        if len > 0 {
            let inner = inner.max(1);
            let channels = first / inner..=(first + len - 1) / inner;
            for (c, k) in channels.clone().zip(&per_channel[channels]) {
                // The channel's columns, cut to the range, counted from `first`.
                let run = (c * inner).max(first) - first..((c + 1) * inner).min(first + len) - first;
                for (i, v) in [k.scale, k.center, k.scale_other, k.center_other, k.shift].into_iter().enumerate() {
                    values[i * stride + run.start..i * stride + run.end].fill(v);
                }
            }
        }
        ColumnCoefficients { values, width }
    }

    /// Field i (in `Coefficients` order) for every column.
    pub(crate) fn field(&self, i: usize) -> &[f64] {
        let start = i * (self.width + FIELD_GAP);
        &self.values[start..start + self.width]
    }
}

impl Drop for ColumnCoefficients {
    fn drop(&mut self) {
        if self.values.capacity() <= KEPT_VALUES {
            let values = std::mem::take(&mut self.values);
            // try_with: during thread teardown the slot may be gone; the buffer is freed then.
            let _ = KEPT.try_with(|kept| kept.set(values));
        }
    }
}

/// A per-channel value spread out over every column of a row (`inner` columns per channel),
/// in one allocation of the final size: this runs on every channels-last call. With one column
/// per channel it is the per-channel values themselves (no copy: with millions of channels the
/// copy was a fresh allocation per call).
pub(crate) fn spread_columns(per_channel: &[f64], inner: usize) -> std::borrow::Cow<'_, [f64]> {
    if inner == 1 {
        return std::borrow::Cow::Borrowed(per_channel);
    }
    let mut columns = Vec::with_capacity(per_channel.len() * inner);
    for &v in per_channel {
        columns.extend(std::iter::repeat_n(v, inner));
    }
    std::borrow::Cow::Owned(columns)
}
