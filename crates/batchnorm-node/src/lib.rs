//! The napi-rs binding of `batchnorm-core`. Thin by design: it borrows the caller's typed
//! arrays, proves they cannot alias in a harmful way, and calls the core; every output
//! array is allocated by the TypeScript side and passed in. No math lives here.
//!
//! Each op exists as f32/f64 and sync/Async (the Async forms run on libuv's pool, so the
//! event loop stays free while rayon works).

mod arrays;
mod jobs;
mod shape;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use jobs::{BackwardJob, EvalJob, TrainJob};

macro_rules! dtype_functions {
    ($owned:ident, $slice:ident, $train:ident, $train_async:ident, $eval:ident, $eval_async:ident, $backward:ident, $backward_async:ident) => {
        #[napi]
        #[allow(clippy::too_many_arguments)]
        pub fn $train(
            x: $slice,
            shape: Vec<f64>,
            axis: f64,
            eps: f64,
            gamma: Option<$slice>,
            beta: Option<$slice>,
            running_mean: Option<$slice>,
            running_var: Option<$slice>,
            momentum: f64,
            out: $slice,
            mean: $slice,
            inv_std: $slice,
        ) -> Result<()> {
            TrainJob {
                x,
                shape,
                axis,
                eps,
                gamma,
                beta,
                running_mean,
                running_var,
                momentum,
                out,
                mean,
                inv_std,
            }
            .run()
        }

        #[napi]
        #[allow(clippy::too_many_arguments)]
        pub fn $train_async(
            x: $owned,
            shape: Vec<f64>,
            axis: f64,
            eps: f64,
            gamma: Option<$owned>,
            beta: Option<$owned>,
            running_mean: Option<$owned>,
            running_var: Option<$owned>,
            momentum: f64,
            out: $owned,
            mean: $owned,
            inv_std: $owned,
        ) -> AsyncTask<TrainJob<$owned>> {
            AsyncTask::new(TrainJob {
                x,
                shape,
                axis,
                eps,
                gamma,
                beta,
                running_mean,
                running_var,
                momentum,
                out,
                mean,
                inv_std,
            })
        }

        #[napi]
        #[allow(clippy::too_many_arguments)]
        pub fn $eval(
            x: $slice,
            shape: Vec<f64>,
            axis: f64,
            eps: f64,
            gamma: Option<$slice>,
            beta: Option<$slice>,
            running_mean: $slice,
            running_var: $slice,
            out: $slice,
        ) -> Result<()> {
            EvalJob {
                x,
                shape,
                axis,
                eps,
                gamma,
                beta,
                running_mean,
                running_var,
                out,
            }
            .run()
        }

        #[napi]
        #[allow(clippy::too_many_arguments)]
        pub fn $eval_async(
            x: $owned,
            shape: Vec<f64>,
            axis: f64,
            eps: f64,
            gamma: Option<$owned>,
            beta: Option<$owned>,
            running_mean: $owned,
            running_var: $owned,
            out: $owned,
        ) -> AsyncTask<EvalJob<$owned>> {
            AsyncTask::new(EvalJob {
                x,
                shape,
                axis,
                eps,
                gamma,
                beta,
                running_mean,
                running_var,
                out,
            })
        }

        #[napi]
        #[allow(clippy::too_many_arguments)]
        pub fn $backward(
            dy: $slice,
            x: $slice,
            shape: Vec<f64>,
            axis: f64,
            gamma: Option<$slice>,
            mean: $slice,
            inv_std: $slice,
            training: bool,
            out: $slice,
            d_gamma: $slice,
            d_beta: $slice,
        ) -> Result<()> {
            BackwardJob {
                dy,
                x,
                shape,
                axis,
                gamma,
                mean,
                inv_std,
                training,
                out,
                d_gamma,
                d_beta,
            }
            .run()
        }

        #[napi]
        #[allow(clippy::too_many_arguments)]
        pub fn $backward_async(
            dy: $owned,
            x: $owned,
            shape: Vec<f64>,
            axis: f64,
            gamma: Option<$owned>,
            mean: $owned,
            inv_std: $owned,
            training: bool,
            out: $owned,
            d_gamma: $owned,
            d_beta: $owned,
        ) -> AsyncTask<BackwardJob<$owned>> {
            AsyncTask::new(BackwardJob {
                dy,
                x,
                shape,
                axis,
                gamma,
                mean,
                inv_std,
                training,
                out,
                d_gamma,
                d_beta,
            })
        }
    };
}

dtype_functions!(
    Float32Array,
    Float32ArraySlice,
    train_f32,
    train_f32_async,
    eval_f32,
    eval_f32_async,
    backward_f32,
    backward_f32_async
);
dtype_functions!(
    Float64Array,
    Float64ArraySlice,
    train_f64,
    train_f64_async,
    eval_f64,
    eval_f64_async,
    backward_f64,
    backward_f64_async
);

/// Resizes the native thread pool (work already running finishes on the old one).
#[napi]
pub fn set_num_threads(threads: f64) -> Result<()> {
    if !(threads.is_finite() && threads.fract() == 0.0 && threads >= 1.0 && threads <= 1024.0) {
        return Err(Error::new(
            Status::InvalidArg,
            format!("threads must be an integer in [1, 1024], got {threads}"),
        ));
    }
    batchnorm_core::set_num_threads(threads as usize).map_err(shape::core_error)
}

/// Threads the native pool uses.
#[napi]
pub fn get_num_threads() -> u32 {
    batchnorm_core::num_threads() as u32
}
