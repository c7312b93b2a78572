//! The scalars and flags of a call, by name: one struct per op (as node-rs's argon2 has one
//! options struct per task), so adding an option touches that struct and the TypeScript plan
//! that carries it, not an argument list per op and dtype. The TypeScript side passes its
//! validated plan itself; fields an op does not declare are never read. Each struct holds
//! only what its op needs: every field costs a property lookup per call (~0.1 µs).

use napi::{Error, Result, Status};
use napi_derive::napi;

use crate::arrays::settled_as_is;
use crate::shape::count;

/// The count per channel of statistics or sums the caller gives (a plan's `stats` / `sums`;
/// their arrays arrive positionally).
#[napi(object)]
pub struct Counted {
    pub count: f64,
}

/// Training forward (`train`, `trainWithStats`).
#[napi(object)]
pub struct TrainOptions {
    /// What a Uint16Array holds: 'bfloat16' or 'float16' (absent for f32 and f64 arrays).
    pub dtype: Option<String>,
    pub axis: f64,
    pub eps: f64,
    /// Weight of the batch statistics in the running ones (read when those are given).
    pub momentum: f64,
    /// 1: the running variance takes the unbiased batch variance; 0: the biased one.
    pub running_var_correction: f64,
    /// A ReLU fused after the normalization.
    pub relu: bool,
    /// Ghost batches: the batch is cut into this many groups, each normalized on its own
    /// (absent or 1: the whole batch; `train` only).
    pub groups: Option<f64>,
    /// `trainWithStats` only: the given statistics' count.
    pub stats: Option<Counted>,
}

/// Inference forward (`eval`).
#[napi(object)]
pub struct EvalOptions {
    /// What a Uint16Array holds: 'bfloat16' or 'float16' (absent for f32 and f64 arrays).
    pub dtype: Option<String>,
    pub axis: f64,
    pub eps: f64,
    pub relu: bool,
}

/// Backward (`backward`, `backwardWithSums`).
#[napi(object)]
pub struct BackwardOptions {
    /// What a Uint16Array holds: 'bfloat16' or 'float16' (absent for f32 and f64 arrays).
    pub dtype: Option<String>,
    pub axis: f64,
    /// Through the batch statistics (true) or with them frozen.
    pub training: bool,
    /// Ghost batches: the groups the forward normalized separately (1: the whole batch;
    /// `backward` only; absent: 1).
    pub groups: Option<f64>,
    /// `backwardWithSums` only: the given sums' count.
    pub sums: Option<Counted>,
}

/// The sync pieces' reductions (`moments`, `gradSums`).
#[napi(object)]
pub struct ReduceOptions {
    /// What a Uint16Array holds: 'bfloat16' or 'float16' (absent for f32 and f64 arrays).
    pub dtype: Option<String>,
    pub axis: f64,
}

/// The groups of a ghost batch: what the ops with given statistics or sums (one set for the
/// whole batch) must be given as 1.
pub fn groups(options_groups: Option<f64>, given: bool) -> Result<usize> {
    let groups = count("options.groups", options_groups.unwrap_or(1.0))? as usize;
    if given && groups != 1 {
        return Err(Error::new(Status::InvalidArg, "options.groups must be 1 with given statistics or sums"));
    }
    Ok(groups)
}

/// The count of `given`, required by the ops that take given statistics or sums.
pub fn given_count(name: &str, given: &Option<Counted>) -> Result<f64> {
    given.as_ref().map(|g| g.count).ok_or_else(|| Error::new(Status::InvalidArg, format!("options.{name} is required")))
}

// Options hold no array, so nothing in them can go stale (see `arrays::Settled`).
settled_as_is!(TrainOptions, EvalOptions, BackwardOptions, ReduceOptions);
