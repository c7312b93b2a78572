//! The elementwise pass every op ends with, on either layout path: per channel c,
//! `dst = act((src - center) * scale + (other - center_other) * scale_other + shift)`.
//! Centering before scaling keeps data with a large offset exact.

use crate::channel_major::{self, Inputs, MIN_INNER};
use crate::channels_last;
use crate::element::Element;
use crate::io::Io;
use crate::layout::Layout;
use crate::loops::Coefficients;
use crate::pool::Exec;

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
