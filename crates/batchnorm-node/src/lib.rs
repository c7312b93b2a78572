//! The napi-rs binding of `batchnorm-core`. Thin by design: it borrows the caller's typed
//! arrays, proves they cannot alias in a harmful way, and calls the core; every output
//! array is allocated by the TypeScript side and passed in. No math lives here.
//!
//! Each op exists for f32, f64 and 16-bit (u16: bfloat16 or float16, `dtype.rs`) arrays, and
//! sync/Async (the Async forms run on libuv's pool, so the
//! event loop stays free while rayon works). Arrays are positional; the scalars and flags
//! come by name in one options object per op (`options.rs`), the last argument; `shape`
//! is an array and stays positional.
//! Per-channel statistics and sums exchanged between workers are always Float64Array.

mod arrays;
mod dtype;
mod jobs;
mod options;
pub mod recycled;
mod shape;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use arrays::Settled;
use jobs::{BackwardJob, EvalJob, GivenStats, GivenSums, GradSumsJob, MomentsJob, TrainJob};
use options::{BackwardOptions, EvalOptions, ReduceOptions, TrainOptions};

/// One `#[napi]` function: `sync` runs the job now, `async` returns it as a Promise. Both
/// first settle their arguments (see `arrays::Settled`): arrays converted before `options`
/// (always the last argument) are read again, since a getter in it may have detached them.
macro_rules! binding_fn {
    (sync $name:ident, $job:ty, ($($arg:ident: $ty:ty),*) => $ctor:expr) => {
        #[napi]
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) -> Result<()> {
            $(let $arg = Settled::reread($arg)?;)*
            $ctor.run()
        }
    };
    (async $name:ident, $job:ty, ($($arg:ident: $ty:ty),*) => $ctor:expr) => {
        #[napi]
        #[allow(clippy::too_many_arguments)]
        pub fn $name(env: Env, $($arg: $ty),*) -> Result<AsyncTask<$job>> {
            $(let $arg = Settled::retain($arg, &env)?;)*
            Ok(AsyncTask::new($ctor))
        }
    };
}

/// Every op for one array type: tensors arrive positionally as `$arg_a`, parameters and
/// statistics as `$arg_p` (the same type, except f32 for 16-bit tensors), the f64 per-channel
/// buffers as `$arg_f`; the scalars and flags by name in the last argument, `options`. The job
/// holds the arrays as `$a` / `$p` / `$f` (owned references for Async).
macro_rules! ops {
    ($mode:ident, $arg_a:ty => $a:ty, $arg_p:ty => $p:ty, $arg_f:ty => $f:ty, $train:ident, $train_with_stats:ident,
     $eval:ident, $backward:ident, $backward_with_sums:ident, $moments:ident, $grad_sums:ident) => {
        binding_fn!($mode $train, TrainJob<$a, $p, $f>, (
            x: $arg_a, shape: Vec<f64>, gamma: Option<$arg_p>, beta: Option<$arg_p>, running_mean: Option<$arg_p>,
            running_var: Option<$arg_p>, residual: Option<$arg_a>, out: $arg_a, mean: $arg_p, inv_std: $arg_p,
            x_fingerprint: Option<$arg_f>, options: TrainOptions
        ) => TrainJob::<$a, $p, $f> {
            x, shape, gamma, beta, running_mean, running_var, residual, given: None, out, mean, inv_std, x_fingerprint, options,
        });
        binding_fn!($mode $train_with_stats, TrainJob<$a, $p, $f>, (
            x: $arg_a, shape: Vec<f64>, gamma: Option<$arg_p>, beta: Option<$arg_p>, running_mean: Option<$arg_p>,
            running_var: Option<$arg_p>, residual: Option<$arg_a>, stats_mean: $arg_f, stats_m2: $arg_f,
            out: $arg_a, mean: $arg_p, inv_std: $arg_p, x_fingerprint: Option<$arg_f>, options: TrainOptions
        ) => TrainJob {
            x, shape, gamma, beta, running_mean, running_var, residual, given: Some(GivenStats { mean: stats_mean, m2: stats_m2 }),
            out, mean, inv_std, x_fingerprint, options,
        });
        binding_fn!($mode $eval, EvalJob<$a, $p>, (
            x: $arg_a, shape: Vec<f64>, gamma: Option<$arg_p>, beta: Option<$arg_p>, running_mean: $arg_p, running_var: $arg_p,
            residual: Option<$arg_a>, out: $arg_a, options: EvalOptions
        ) => EvalJob { x, shape, gamma, beta, running_mean, running_var, residual, out, options });
        binding_fn!($mode $backward, BackwardJob<$a, $p, $f>, (
            dy: $arg_a, x: $arg_a, shape: Vec<f64>, gamma: Option<$arg_p>, mean: $arg_p, inv_std: $arg_p, y: Option<$arg_a>,
            out: $arg_a, d_gamma: $arg_p, d_beta: $arg_p, d_residual: Option<$arg_a>, x_fingerprint: Option<$arg_f>, options: BackwardOptions
        ) => BackwardJob::<$a, $p, $f> {
            dy, x, shape, gamma, mean, inv_std, y, given: None, out, d_gamma, d_beta, d_residual, x_fingerprint, options,
        });
        binding_fn!($mode $backward_with_sums, BackwardJob<$a, $p, $f>, (
            dy: $arg_a, x: $arg_a, shape: Vec<f64>, gamma: Option<$arg_p>, mean: $arg_p, inv_std: $arg_p, y: Option<$arg_a>,
            sum_dy: $arg_f, sum_dy_xhat: $arg_f, out: $arg_a, d_gamma: $arg_p, d_beta: $arg_p,
            d_residual: Option<$arg_a>, x_fingerprint: Option<$arg_f>, options: BackwardOptions
        ) => BackwardJob {
            dy, x, shape, gamma, mean, inv_std, y, given: Some(GivenSums { sum_dy, sum_dy_xhat }), out, d_gamma, d_beta,
            d_residual, x_fingerprint, options,
        });
        binding_fn!($mode $moments, MomentsJob<$a, $f>, (
            x: $arg_a, shape: Vec<f64>, mean: $arg_f, m2: $arg_f, options: ReduceOptions
        ) => MomentsJob { x, shape, mean, m2, options });
        binding_fn!($mode $grad_sums, GradSumsJob<$a, $p, $f>, (
            dy: $arg_a, x: $arg_a, shape: Vec<f64>, mean: $arg_p, inv_std: $arg_p, y: Option<$arg_a>, sum_dy: $arg_f,
            sum_dy_xhat: $arg_f, options: ReduceOptions
        ) => GradSumsJob { dy, x, shape, mean, inv_std, y, sum_dy, sum_dy_xhat, options });
    };
}

ops!(sync, Float32ArraySlice => Float32ArraySlice, Float32ArraySlice => Float32ArraySlice, Float64ArraySlice => Float64ArraySlice,
     train_f32, train_with_stats_f32, eval_f32, backward_f32, backward_with_sums_f32, moments_f32, grad_sums_f32);
ops!(async, Float32ArraySlice => Float32Array, Float32ArraySlice => Float32Array, Float64ArraySlice => Float64Array,
     train_f32_async, train_with_stats_f32_async, eval_f32_async, backward_f32_async, backward_with_sums_f32_async,
     moments_f32_async, grad_sums_f32_async);
ops!(sync, Float64ArraySlice => Float64ArraySlice, Float64ArraySlice => Float64ArraySlice, Float64ArraySlice => Float64ArraySlice,
     train_f64, train_with_stats_f64, eval_f64, backward_f64, backward_with_sums_f64, moments_f64, grad_sums_f64);
ops!(async, Float64ArraySlice => Float64Array, Float64ArraySlice => Float64Array, Float64ArraySlice => Float64Array,
     train_f64_async, train_with_stats_f64_async, eval_f64_async, backward_f64_async, backward_with_sums_f64_async,
     moments_f64_async, grad_sums_f64_async);
// bfloat16 / float16 tensors (Uint16Array bits, `options.dtype` says which) with f32 parameters.
ops!(sync, Uint16ArraySlice => Uint16ArraySlice, Float32ArraySlice => Float32ArraySlice, Float64ArraySlice => Float64ArraySlice,
     train_u16, train_with_stats_u16, eval_u16, backward_u16, backward_with_sums_u16, moments_u16, grad_sums_u16);
ops!(async, Uint16ArraySlice => Uint16Array, Float32ArraySlice => Float32Array, Float64ArraySlice => Float64Array,
     train_u16_async, train_with_stats_u16_async, eval_u16_async, backward_u16_async, backward_with_sums_u16_async,
     moments_u16_async, grad_sums_u16_async);

/// The version of this binding's calling convention (argument lists, their order, the
/// options object's fields). The loader refuses an addon whose number differs from the one
/// it was written for: a stale binary would read arguments in the wrong places.
#[napi]
pub fn binding_interface() -> u32 {
    5
}

/// Resizes the native thread pool (work already running finishes on the old one).
#[napi]
pub fn set_num_threads(threads: f64) -> Result<()> {
    if !(threads.is_finite() && threads.fract() == 0.0 && (1.0..=1024.0).contains(&threads)) {
        return Err(Error::new(Status::InvalidArg, format!("threads must be an integer in [1, 1024], got {threads}")));
    }
    batchnorm_core::set_num_threads(threads as usize).map_err(shape::core_error)
}

/// Threads the native pool uses.
#[napi]
pub fn get_num_threads() -> u32 {
    batchnorm_core::num_threads() as u32
}

/// A checksum of x's bits (see `batchnorm_core::fingerprint`) and its Async form, which
/// holds x until it settles.
pub struct FingerprintJob<A> {
    x: A,
}

impl<A: arrays::RawArray> FingerprintJob<A>
where
    A::Elem: dtype::Storage,
{
    fn run(&self) -> u32 {
        let x = arrays::Region::read("x", &self.x).cast::<<A::Elem as dtype::Storage>::Bits>();
        // SAFETY: x is only read, and this call holds it (sync: the call's own argument;
        // Async: a reference the task keeps until it settles).
        batchnorm_core::fingerprint(unsafe { x.slice() })
    }
}

impl<A: arrays::RawArray + Send> Task for FingerprintJob<A>
where
    A::Elem: dtype::Storage,
{
    type Output = u32;
    type JsValue = u32;
    fn compute(&mut self) -> Result<u32> {
        Ok(self.run())
    }
    fn resolve(&mut self, _env: Env, output: u32) -> Result<u32> {
        Ok(output)
    }
}

#[napi]
pub fn fingerprint_f32(x: Float32ArraySlice) -> Result<u32> {
    Ok(FingerprintJob { x: Settled::reread(x)? }.run())
}

#[napi]
pub fn fingerprint_f64(x: Float64ArraySlice) -> Result<u32> {
    Ok(FingerprintJob { x: Settled::reread(x)? }.run())
}

/// The bits of 16-bit values, whichever format: the checksum reads bits, not values.
#[napi]
pub fn fingerprint_u16(x: Uint16ArraySlice) -> Result<u32> {
    Ok(FingerprintJob { x: Settled::reread(x)? }.run())
}

#[napi]
pub fn fingerprint_u16_async(env: Env, x: Uint16ArraySlice) -> Result<AsyncTask<FingerprintJob<Uint16Array>>> {
    Ok(AsyncTask::new(FingerprintJob { x: Settled::retain(x, &env)? }))
}

#[napi]
pub fn fingerprint_f32_async(env: Env, x: Float32ArraySlice) -> Result<AsyncTask<FingerprintJob<Float32Array>>> {
    Ok(AsyncTask::new(FingerprintJob { x: Settled::retain(x, &env)? }))
}

#[napi]
pub fn fingerprint_f64_async(env: Env, x: Float64ArraySlice) -> Result<AsyncTask<FingerprintJob<Float64Array>>> {
    Ok(AsyncTask::new(FingerprintJob { x: Settled::retain(x, &env)? }))
}
