//! The elementwise pass every op ends with, on either layout path: per channel c,
//! `dst = act((src - center) * scale + (other - center_other) * scale_other + shift)`.
//! Centering before scaling keeps data with a large offset exact.

use crate::channel_major;
use crate::channels_last;
use crate::element::Element;
use crate::io::{Chunk, Io};
use crate::layout::Layout;
use crate::loops::{Coefficients, Output};
use crate::pool::Exec;
use crate::store::{self, streams};

/// The inputs of the pass besides its source, and the clamp.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a, T> {
    /// The second input of the pass (x, when the source is dy).
    pub other: Option<&'a [T]>,
    /// The fused ReLU's output, through which the source (dy) flows.
    pub mask: Option<&'a [T]>,
    /// Clamp the pass's result at 0 (fused ReLU forward).
    pub relu_result: bool,
}

pub(crate) fn apply<T: Element>(exec: Exec, io: Io<'_, T>, layout: &Layout, inputs: Inputs<'_, T>, k: &[Coefficients]) {
    apply_storing(exec, io, layout, inputs, k, streams::<T>(layout.len()));
}

/// The pass, streaming its output or not as told (the size decides in `apply`).
fn apply_storing<T: Element>(
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
    if channel_major::suits(layout) {
        channel_major::apply(exec, io, layout, inputs.other, inputs.mask, output, k);
    } else {
        channels_last::apply(exec, io, layout, inputs.other, inputs.mask, output, k);
    }
}

/// The chunk loop of the pass on either path: `pass(start, chunk, other, mask)` over chunks of
/// `chunk_len` elements (in parallel when allowed), the extra inputs cut to the chunk. A task
/// that streamed fences its stores before it ends, so no other thread reads them unordered.
pub(crate) fn for_each_chunk<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    chunk_len: usize,
    other: Option<&[T]>,
    mask: Option<&[T]>,
    streaming: bool,
    pass: impl Fn(usize, Chunk<'_, T>, Option<&[T]>, Option<&[T]>) + Sync + Send,
) {
    io.for_each_chunk(exec, chunk_len, |start, chunk| {
        let span = start..start + chunk.len();
        pass(start, chunk, other.map(|v| &v[span.clone()]), mask.map(|v| &v[span]));
        store::fence(streaming);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Exec;

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
        apply_storing(Exec::SEQUENTIAL, io, layout, inputs, &k, streaming);
        dst
    }

    #[test]
    fn streamed_output_is_bit_identical_to_cached() {
        let layouts = [
            Layout { outer: 3, channels: 5, inner: 70 }, // channel-major rows
            Layout { outer: 37, channels: 6, inner: 1 }, // channels-last rows
            Layout { outer: 4, channels: 3, inner: 20 }, // channels-last, several columns per channel
        ];
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
