//! Shape + channel axis -> the `[outer, C, inner]` view every kernel works on.

use crate::error::{Error, Result};

/// A row-major tensor seen as `[outer, channels, inner]`: the channel axis in the middle,
/// everything before it folded into `outer`, everything after it into `inner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl Layout {
    /// Builds the view; `axis` may be negative (counted from the end). Sizes are
    /// overflow-checked so a hostile shape cannot wrap around to a small length.
    pub fn from_shape(shape: &[usize], axis: i64) -> Result<Self> {
        let rank = shape.len();
        if rank < 2 {
            return Err(Error::range(format!("shape must have rank >= 2, got rank {rank}")));
        }
        let rank_i = rank as i64;
        if axis < -rank_i || axis >= rank_i {
            return Err(Error::range(format!(
                "axis must be in [{}, {}] for a rank-{rank} shape, got {axis}",
                -rank_i,
                rank_i - 1
            )));
        }
        let axis = if axis < 0 { axis + rank_i } else { axis } as usize;
        let product = |dims: &[usize]| {
            dims.iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| Error::range("shape has too many elements"))
        };
        let layout =
            Self { outer: product(&shape[..axis])?, channels: shape[axis], inner: product(&shape[axis + 1..])? };
        layout
            .outer
            .checked_mul(layout.channels)
            .and_then(|v| v.checked_mul(layout.inner))
            .ok_or_else(|| Error::range("shape has too many elements"))?;
        Ok(layout)
    }

    /// Number of elements of the whole tensor.
    pub fn len(&self) -> usize {
        self.outer * self.channels * self.inner
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of values each channel's statistics are taken over (`m`).
    pub fn count_per_channel(&self) -> usize {
        self.outer * self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchw_on_axis_one() {
        let l = Layout::from_shape(&[2, 3, 4, 5], 1).unwrap();
        assert_eq!(l, Layout { outer: 2, channels: 3, inner: 20 });
    }

    #[test]
    fn negative_axis_counts_from_the_end() {
        let l = Layout::from_shape(&[2, 4, 5, 3], -1).unwrap();
        assert_eq!(l, Layout { outer: 40, channels: 3, inner: 1 });
    }

    #[test]
    fn rejects_bad_rank_axis_and_overflow() {
        assert!(Layout::from_shape(&[5], 0).is_err());
        assert!(Layout::from_shape(&[2, 3], 2).is_err());
        assert!(Layout::from_shape(&[2, 3], -3).is_err());
        assert!(Layout::from_shape(&[usize::MAX, 2, 2], 1).is_err());
        assert!(Layout::from_shape(&[1 << 40, 1 << 30, 1], 1).is_err());
    }
}
