//! The innermost loops, each compiled for AVX-512, AVX2+FMA+F16C (and NEON) besides the baseline
//! and picked at run time (`multiversion`): one binary runs on any x86-64 and still uses
//! the widest vectors the CPU has. `sums` holds the reductions (f64 accumulators split into
//! independent lanes so the additions vectorize), `affine` the elementwise pass.

pub(crate) mod affine;
pub(crate) mod sums;

/// `(v < 0) ? 0 : v`, written so that NaN passes through like PyTorch's relu.
#[inline(always)]
pub(crate) fn relu(v: f64) -> f64 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// dy where the fused ReLU's output was > 0, else 0.
#[inline(always)]
pub(crate) fn through_relu(dy: f64, output: f64) -> f64 {
    if output > 0.0 {
        dy
    } else {
        0.0
    }
}

/// Whether the selected target has fused multiply-add (aarch64 always does).
macro_rules! has_fma {
    () => {
        cfg!(target_arch = "aarch64") || target_cfg_f!(target_feature = "fma")
    };
}

/// The selected target's vector conversions for the 16-bit formats (`Simd`): every x86 target
/// of the kernels with F16C also has AVX2 and FMA, and the one with AVX-512 BW has all three.
macro_rules! simd {
    () => {
        if target_cfg_f!(target_feature = "avx512bw") {
            $crate::element::Simd::Avx512
        } else if target_cfg_f!(target_feature = "f16c") {
            $crate::element::Simd::Avx2
        } else {
            $crate::element::Simd::Portable
        }
    };
}

/// The selected target's widest non-temporal stores when `streaming`, else plain stores.
macro_rules! stores {
    ($streaming:expr) => {
        if !$streaming {
            Stores::Cached
        } else if target_cfg_f!(target_feature = "avx512f") {
            Stores::StreamAvx512
        } else if target_cfg_f!(target_feature = "avx2") {
            Stores::StreamAvx
        } else {
            Stores::StreamSse
        }
    };
}
pub(crate) use {has_fma, simd, stores};

/// The channels of consecutive rows from row `first` on (row r holds channel r % C), counted
/// without a division per row.
pub(crate) struct RowChannels {
    next: usize,
    channels: usize,
}

impl Iterator for RowChannels {
    type Item = usize;

    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        let c = self.next;
        self.next = if c + 1 == self.channels { 0 } else { c + 1 };
        Some(c)
    }
}

#[inline(always)]
pub(crate) fn row_channels(first: usize, channels: usize) -> RowChannels {
    RowChannels { next: first % channels.max(1), channels }
}
