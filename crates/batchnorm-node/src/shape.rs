//! Shape and axis arrive as JS numbers: check they are exact non-negative integers
//! before the core sees them as sizes.

use batchnorm_core::Layout;
use napi::{Error, Result, Status};

/// Largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

pub fn layout(shape: &[f64], axis: f64) -> Result<Layout> {
    let mut dims = Vec::with_capacity(shape.len());
    for (i, &d) in shape.iter().enumerate() {
        if !(d.is_finite() && d >= 0.0 && d.fract() == 0.0 && d <= MAX_SAFE_INTEGER) {
            return Err(Error::new(Status::InvalidArg, format!("shape[{i}] must be a non-negative integer, got {d}")));
        }
        dims.push(d as usize);
    }
    if !(axis.is_finite() && axis.fract() == 0.0) {
        return Err(Error::new(Status::InvalidArg, format!("axis must be an integer, got {axis}")));
    }
    Layout::from_shape(&dims, axis.clamp(i64::MIN as f64, i64::MAX as f64) as i64).map_err(core_error)
}

/// A count of values per channel given by the caller (merged statistics, reduced sums):
/// an exact non-negative integer, like a dimension. NaN, Infinity and fractions would
/// otherwise pass the core's `count < 2` check and poison the running statistics.
pub fn count(name: &str, count: f64) -> Result<f64> {
    if count.is_finite() && count >= 0.0 && count.fract() == 0.0 && count <= MAX_SAFE_INTEGER {
        Ok(count)
    } else {
        Err(Error::new(Status::InvalidArg, format!("{name} must be a non-negative integer, got {count}")))
    }
}

pub fn core_error(e: batchnorm_core::Error) -> Error {
    Error::new(Status::InvalidArg, e.message)
}
