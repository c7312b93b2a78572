//! The elementwise pass every op ends with, on either layout path: per channel c,
//! `dst = act((src - center) * scale + (other - center_other) * scale_other + shift)`.
//! Centering before scaling keeps data with a large offset exact.

use crate::channel_major::{self, MIN_INNER};
use crate::channels_last;
use crate::element::Element;
use crate::io::Io;
use crate::layout::Layout;
use crate::loops::Coefficients;
use crate::pool::Exec;

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
    if layout.is_empty() {
        return;
    }
    if layout.inner >= MIN_INNER {
        channel_major::apply(exec, io, layout, inputs, k);
    } else {
        channels_last::apply(exec, io, layout, inputs.other, inputs.mask, inputs.relu_result, k);
    }
}
