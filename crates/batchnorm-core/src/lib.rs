//! Batch normalization kernels on `[outer, C, inner]` views of row-major tensors,
//! parallel with rayon on a pool this crate owns. No JS types here: the napi binding
//! (`batchnorm-node`) borrows typed arrays and calls these functions.
//!
//! Statistics are per channel over every other axis, accumulated in f64 whatever the
//! element type; the variance that normalizes is the biased one.

mod backward;
mod channel_major;
mod channels_last;
mod element;
mod elementwise;
mod error;
mod fingerprint;
mod forward;
mod io;
mod layout;
mod loops;
mod pool;
mod stats;
mod store;
mod tiles;

pub use backward::{backward, backward_with_sums, grad_sums, GradPath, GradSums, ParamGrads, Saved};
pub use element::Element;
pub use error::{Error, ErrorKind, Result};
pub use fingerprint::fingerprint;
pub use forward::{channel_moments, eval, train, train_with_moments, Activation, Norm, RunningStats, SavedStats};
pub use io::Io;
pub use layout::Layout;
pub use pool::{num_threads, set_num_threads, MAX_THREADS, PARALLEL_MIN_ELEMENTS};
pub use stats::Moments;
pub use store::STREAM_MIN_BYTES;
