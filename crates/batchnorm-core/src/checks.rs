//! The checks every op makes on its arguments before anything is written, in one place so
//! the forward and backward passes say the same thing about the same mistake.

use crate::error::{Error, Result};
use crate::layout::Layout;

/// Checks that a per-element or per-channel array has the expected length.
pub(crate) fn check_len(name: &str, actual: usize, expected: usize) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::range(format!("{name} must have length {expected}, got {actual}")))
    }
}

pub(crate) fn check_eps(eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(Error::range(format!("eps must be a finite number > 0, got {eps}")))
    }
}

pub(crate) fn check_var_correction(correction: f64) -> Result<()> {
    if correction == 0.0 || correction == 1.0 {
        Ok(())
    } else {
        Err(Error::range(format!("runningVarCorrection must be 0 or 1, got {correction}")))
    }
}

pub(crate) fn check_momentum(momentum: f64) -> Result<()> {
    if (0.0..=1.0).contains(&momentum) {
        Ok(())
    } else {
        Err(Error::range(format!("momentum must be in [0, 1], got {momentum}")))
    }
}

/// The values per channel a training step normalizes over; NaN fails too: a count that is
/// not a number cannot allow training.
pub(crate) fn check_count(count: f64) -> Result<()> {
    if count.is_nan() || count < 2.0 {
        return Err(Error::range(format!("x must have more than 1 value per channel when training, got {count}")));
    }
    Ok(())
}

/// The layout of one group when a batch of `layout.outer` rows is cut into `groups` equal
/// runs (ghost batches); one group is the whole layout.
pub(crate) fn group_layout(layout: &Layout, groups: usize) -> Result<Layout> {
    if groups == 0 || !layout.outer.is_multiple_of(groups) {
        return Err(Error::range(format!(
            "groups must be >= 1 and divide the {} rows before the channel axis, got {groups}",
            layout.outer
        )));
    }
    Ok(Layout { outer: layout.outer / groups, ..*layout })
}
