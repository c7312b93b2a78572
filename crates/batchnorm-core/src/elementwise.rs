//! The one elementwise pass every op ends with: per channel c,
//! `dst = scale * (src - center) + scale_other * (other - center_other) + shift`
//! (`other` is optional), in memory order. Centering before scaling keeps data with a
//! large offset exact: `x - mean` loses nothing, `x * scale + shift` would.

use crate::element::Element;
use crate::io::{Chunk, Io};
use crate::layout::Layout;
use crate::pool::Exec;

/// Per-channel coefficients of the pass. The `_other` ones are unused without a second input.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelAffine {
    pub scale: Vec<f64>,
    pub center: Vec<f64>,
    pub scale_other: Vec<f64>,
    pub center_other: Vec<f64>,
    pub shift: Vec<f64>,
    /// Clamp the result at 0 (fused ReLU). NaN stays NaN, as in PyTorch.
    pub relu: bool,
}

impl ChannelAffine {
    /// `dst = scale * (src - center) + shift`, with no second input.
    pub(crate) fn single(scale: Vec<f64>, center: Vec<f64>, shift: Vec<f64>) -> Self {
        let zeros = vec![0.0; scale.len()];
        Self {
            scale,
            center,
            scale_other: zeros.clone(),
            center_other: zeros,
            shift,
            relu: false,
        }
    }

    /// The coefficients of channel `c`, in field order.
    #[inline(always)]
    fn at(&self, c: usize) -> [f64; 5] {
        [
            self.scale[c],
            self.center[c],
            self.scale_other[c],
            self.center_other[c],
            self.shift[c],
        ]
    }

    /// The coefficients repeated `inner` times each: one entry per column of a row.
    fn spread(&self, inner: usize) -> Self {
        let spread = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .flat_map(|&c| std::iter::repeat_n(c, inner))
                .collect()
        };
        Self {
            scale: spread(&self.scale),
            center: spread(&self.center),
            scale_other: spread(&self.scale_other),
            center_other: spread(&self.center_other),
            shift: spread(&self.shift),
            relu: self.relu,
        }
    }
}

/// Elements per parallel chunk: big enough to amortize a task, small enough to balance.
const CHUNK_ELEMENTS: usize = 1 << 15;
/// Below this `inner`, channels change too often along a row to walk them run by run:
/// the coefficients are spread out per column instead.
const MIN_RUN: usize = 16;

pub(crate) fn apply_channel_affine<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    other: Option<&[T]>,
    layout: &Layout,
    k: &ChannelAffine,
) {
    if layout.is_empty() {
        return;
    }
    if k.relu {
        run_pass(exec, io, other, layout, k, relu);
    } else {
        run_pass(exec, io, other, layout, k, |v| v);
    }
}

/// `(v < 0) ? 0 : v`, written so that NaN passes through like PyTorch's relu.
#[inline(always)]
fn relu(v: f64) -> f64 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

fn run_pass<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    other: Option<&[T]>,
    layout: &Layout,
    k: &ChannelAffine,
    activation: impl Fn(f64) -> f64 + Copy + Sync + Send,
) {
    let inner = layout.inner;
    let width = layout.channels * inner;
    if inner >= MIN_RUN {
        io.for_each_chunk(exec, CHUNK_ELEMENTS, |start, chunk| {
            let mut chunk = chunk;
            let mut pos = start;
            while chunk.len() > 0 {
                let channel = (pos / inner) % layout.channels;
                let run = (inner - pos % inner).min(chunk.len());
                let (head, tail) = chunk.split_at(run);
                apply_run(
                    head,
                    other.map(|o| &o[pos..pos + run]),
                    k,
                    channel,
                    activation,
                );
                chunk = tail;
                pos += run;
            }
        });
    } else {
        let k = k.spread(inner);
        let rows_per_chunk = (CHUNK_ELEMENTS / width).max(1);
        io.for_each_chunk(exec, rows_per_chunk * width, |start, chunk| {
            for (r, row) in chunk.split(width).into_iter().enumerate() {
                let at = start + r * width;
                match other {
                    None => row.map(|j, v| activation((v - k.center[j]) * k.scale[j] + k.shift[j])),
                    Some(o) => row.map_with(&o[at..at + width], |j, v, w| {
                        activation(
                            (v - k.center[j]) * k.scale[j]
                                + (w - k.center_other[j]) * k.scale_other[j]
                                + k.shift[j],
                        )
                    }),
                }
            }
        });
    }
}

#[inline(always)]
fn apply_run<T: Element>(
    run: Chunk<'_, T>,
    other: Option<&[T]>,
    k: &ChannelAffine,
    c: usize,
    activation: impl Fn(f64) -> f64,
) {
    let [scale, center, scale_other, center_other, shift] = k.at(c);
    match other {
        None => run.map(|_, v| activation((v - center) * scale + shift)),
        Some(o) => run.map_with(o, |_, v, w| {
            activation((v - center) * scale + (w - center_other) * scale_other + shift)
        }),
    }
}
