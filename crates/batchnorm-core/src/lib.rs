//! Batch normalization kernels on `[outer, C, inner]` views of row-major tensors,
//! parallel with rayon on a pool this crate owns. No JS types here: the napi binding
//! (`batchnorm-node`) borrows typed arrays and calls these functions.
//!
//! Statistics are per channel over every other axis, accumulated in f64 whatever the
//! element type; the variance that normalizes is the biased one.

// The ops, top of the module graph: each checks its arguments, chooses the path once and
// runs it. Nothing below imports anything above it.
mod backward;
mod forward;
mod stats;
// Argument checks shared by the ops.
mod checks;
// The layout path, chosen once per call, and the two paths.
mod channel_major;
mod channels_last;
mod path;
// What both paths are built from: the elementwise pass's chunk loop, its coefficients, the
// innermost loops, the reduction tiles, the streaming stores, the fingerprint fold.
mod coefficients;
mod fingerprint;
mod kernels;
mod pass;
mod store;
mod tiles;
// The ground floor: element types, tensor views, in/out arrays, the thread pool, errors.
mod element;
mod error;
mod half;
mod io;
mod layout;
mod pool;

pub use backward::{
    backward, backward_in_groups, backward_with_sums, grad_sums, GradPath, GradSums, ParamGrads, Saved,
};
pub use element::Element;
pub use error::{Error, Result};
pub use fingerprint::fingerprint;
pub use forward::{
    channel_moments, eval, train, train_in_groups, train_with_moments, Activation, Norm, RunningStats, SavedStats,
};
pub use half::{Bf16, F16};
pub use io::Io;
pub use layout::Layout;
pub use pool::{num_threads, set_num_threads, MAX_THREADS, PARALLEL_MIN_ELEMENTS};
pub use stats::Moments;
pub use store::STREAM_MIN_BYTES;
