//! Which of the two layout paths a call takes, chosen once per call from its `Layout`, and
//! the three things every op asks of a path: the statistics' shifted sums, the backward
//! sums, and the elementwise pass. The ops (forward, backward, stats) call only this; the
//! path modules call only what lies below them (kernels, tiles, io, store).

use crate::channel_major;
use crate::channels_last;
use crate::coefficients::Coefficients;
use crate::element::Element;
use crate::fingerprint::Fold;
use crate::io::Io;
use crate::kernels::affine::Output;
use crate::layout::Layout;
use crate::pass::Inputs;
use crate::pool::Exec;
use crate::store::streams;

/// The two ways through a `[outer, C, inner]` tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Path {
    /// Rows of one channel (NCHW, NCL, NCDHW): sums per row, one coefficient set per row.
    ChannelMajor,
    /// Short rows holding every channel (NHWC, `[N, C]`, NLC): accumulators and coefficients
    /// per column.
    ChannelsLast,
}

/// Rows at least this long take the channel-major path; with shorter ones a row holds many
/// channels and the per-column accumulators of the channels-last path can do better.
const MIN_INNER: usize = 64;
/// Rows of at least this many values still take the channel-major path when a row of
/// channels is wider than `MAX_COLUMNS`: the channels-last path keeps arrays per column
/// (coefficients, accumulators) that then outgrow the L1 cache. Measured on a 2-vCPU EPYC, 2
/// threads: `[8,2048,7,7]` training 0.35 ms channel-major against 0.79 channels-last,
/// `[16,256,32]` 0.10 against 0.14; with rows of 16 the channels-last path mostly wins
/// (`[64,512,16]` 0.34 against 0.72), with 8 throughout (`[64,512,8]` 0.20 against 0.50), and
/// at 1024 columns it wins at any length.
const MIN_SHORT_INNER: usize = 32;
const MAX_COLUMNS: usize = 2048;

impl Path {
    pub(crate) fn of(layout: &Layout) -> Path {
        let long_rows = layout.inner >= MIN_INNER;
        let wide_short_rows =
            layout.inner >= MIN_SHORT_INNER && layout.channels.saturating_mul(layout.inner) > MAX_COLUMNS;
        if long_rows || wide_short_rows {
            Path::ChannelMajor
        } else {
            Path::ChannelsLast
        }
    }

    /// Per channel, `Σ(x - K)` and `Σ(x - K)²` with K = `shifts[c]`; with `fold`, x's
    /// fingerprint from the same sweep.
    pub(crate) fn shifted_sums<T: Element>(
        self,
        exec: Exec,
        x: &[T],
        layout: &Layout,
        shifts: &[f64],
        fold: Option<&Fold>,
    ) -> Vec<(f64, f64)> {
        match self {
            Path::ChannelMajor => channel_major::shifted_sums(exec, x, layout, shifts, fold),
            Path::ChannelsLast => channels_last::shifted_sums(exec, x, layout, shifts, fold),
        }
    }

    /// Per channel, `Σg` and `Σg·(x - mean[c])` with g = dy (through the ReLU mask if given);
    /// with `fold`, x's fingerprint from the same sweep.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grad_sums<T: Element>(
        self,
        exec: Exec,
        dy: &[T],
        x: &[T],
        relu_output: Option<&[T]>,
        layout: &Layout,
        mean: &[f64],
        fold: Option<&Fold>,
    ) -> Vec<(f64, f64)> {
        match self {
            Path::ChannelMajor => channel_major::grad_sums(exec, dy, x, relu_output, layout, mean, fold),
            Path::ChannelsLast => channels_last::grad_sums(exec, dy, x, relu_output, layout, mean, fold),
        }
    }

    /// The elementwise pass with per-channel coefficients `k`; the output streams past the
    /// caches when it is large (`store::streams`).
    pub(crate) fn apply<T: Element>(
        self,
        exec: Exec,
        io: Io<'_, T>,
        layout: &Layout,
        inputs: Inputs<'_, T>,
        k: &[Coefficients],
    ) {
        self.apply_storing(exec, io, layout, inputs, k, streams::<T>(layout.len()));
    }

    /// The pass, streaming its output or not as told (a ghost batch's group streams as its
    /// whole batch would).
    pub(crate) fn apply_storing<T: Element>(
        self,
        exec: Exec,
        io: Io<'_, T>,
        layout: &Layout,
        inputs: Inputs<'_, T>,
        k: &[Coefficients],
        streaming: bool,
    ) {
        if layout.is_empty() {
            return;
        }
        let output = Output { relu: inputs.relu_result, streaming };
        match self {
            Path::ChannelMajor => channel_major::apply(exec, io, layout, inputs, output, k),
            Path::ChannelsLast => channels_last::apply(exec, io, layout, inputs, output, k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pass with every input form, in place or not, from a misaligned start.
    fn pass(layout: &Layout, streaming: bool, other: bool, mask: bool, relu: bool, in_place: bool) -> Vec<f32> {
        let n = layout.len();
        // Values from integer arithmetic, not sin: Miri perturbs transcendental results at
        // random, so two calls of a sin-made input would differ there.
        let wave = |phase: usize| -> Vec<f32> {
            (0..n + 1).map(|i| ((i * 37 + phase * 11) % 101) as f32 / 50.0 - 1.0).collect()
        };
        let (src, other_input, mask_input) = (wave(0), wave(1), wave(2));
        let k: Vec<Coefficients> = (0..layout.channels)
            .map(|c| Coefficients {
                scale: 1.5 + c as f64,
                center: 0.1 * c as f64,
                scale_other: -0.5,
                center_other: 0.2,
                shift: 0.25,
            })
            .collect();
        let inputs =
            Inputs { other: other.then(|| &other_input[1..]), mask: mask.then(|| &mask_input[1..]), relu_result: relu };
        let mut dst = if in_place { src.clone() } else { vec![0.0f32; n + 1] };
        let io =
            if in_place { Io::InPlace(&mut dst[1..]) } else { Io::Separate { src: &src[1..], dst: &mut dst[1..] } };
        Path::of(layout).apply_storing(Exec::SEQUENTIAL, io, layout, inputs, &k, streaming);
        dst
    }

    #[test]
    fn streamed_output_is_bit_identical_to_cached() {
        let layouts = [
            Layout { outer: 3, channels: 5, inner: 70 }, // channel-major rows
            Layout { outer: 37, channels: 6, inner: 1 }, // channels-last rows
            Layout { outer: 4, channels: 3, inner: 20 }, // channels-last, several columns per channel
        ];
        assert_eq!(layouts.map(|l| Path::of(&l)), [Path::ChannelMajor, Path::ChannelsLast, Path::ChannelsLast]);
        for layout in &layouts {
            for form in 0..16 {
                let [other, mask, relu, in_place] = [form & 1, form & 2, form & 4, form & 8].map(|f| f != 0);
                assert_eq!(
                    pass(layout, true, other, mask, relu, in_place),
                    pass(layout, false, other, mask, relu, in_place),
                    "{layout:?} other {other} mask {mask} relu {relu} in place {in_place}"
                );
            }
        }
    }
}
