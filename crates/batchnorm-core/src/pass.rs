//! What the elementwise pass every op ends with is given besides its coefficients (the second
//! input, the ReLU mask, the clamp, the store kind), and its chunk loop, shared by both paths:
//! per channel c, `dst = act((src - center) * scale + (other - center_other) * scale_other + shift)`.
//! Centering before scaling keeps data with a large offset exact.

use std::ops::Range;

use crate::element::Element;
use crate::io::{Chunk, Io};
use crate::pool::Exec;
use crate::store;

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

impl<'a, T> Inputs<'a, T> {
    /// The inputs of the elements `range`: one group of a ghost batch.
    pub(crate) fn part(&self, range: Range<usize>) -> Inputs<'a, T> {
        Inputs {
            other: self.other.map(|v| &v[range.clone()]),
            mask: self.mask.map(|v| &v[range]),
            relu_result: self.relu_result,
        }
    }
}

/// The chunk loop of the pass: `pass(start, chunk, other, mask)` over chunks of `chunk_len`
/// elements (in parallel when allowed), the extra inputs cut to the chunk. A task that
/// streamed fences its stores before it ends, so no other thread reads them unordered.
pub(crate) fn for_each_chunk<T: Element>(
    exec: Exec,
    io: Io<'_, T>,
    chunk_len: usize,
    inputs: Inputs<'_, T>,
    streaming: bool,
    pass: impl Fn(usize, Chunk<'_, T>, Option<&[T]>, Option<&[T]>) + Sync + Send,
) {
    let Inputs { other, mask, .. } = inputs;
    io.for_each_chunk(exec, chunk_len, |start, chunk| {
        let span = start..start + chunk.len();
        pass(start, chunk, other.map(|v| &v[span.clone()]), mask.map(|v| &v[span]));
        store::fence(streaming);
    });
}
