//! One struct per op holding the borrowed arrays of a call. `run` checks memory and calls
//! the core; sync functions run it at once, Async ones hand it to libuv as a `Task`.

use batchnorm_core::{Affine, Io, ParamGrads, RunningStats, Saved, SavedStats};
use napi::bindgen_prelude::{Env, Task};
use napi::Result;

use crate::arrays::{check_disjoint, RawArray, Region};
use crate::shape::{core_error, layout};

pub struct TrainJob<A> {
    pub x: A,
    pub shape: Vec<f64>,
    pub axis: f64,
    pub eps: f64,
    pub gamma: Option<A>,
    pub beta: Option<A>,
    pub running_mean: Option<A>,
    pub running_var: Option<A>,
    pub momentum: f64,
    pub out: A,
    pub mean: A,
    pub inv_std: A,
}

pub struct EvalJob<A> {
    pub x: A,
    pub shape: Vec<f64>,
    pub axis: f64,
    pub eps: f64,
    pub gamma: Option<A>,
    pub beta: Option<A>,
    pub running_mean: A,
    pub running_var: A,
    pub out: A,
}

pub struct BackwardJob<A> {
    pub dy: A,
    pub x: A,
    pub shape: Vec<f64>,
    pub axis: f64,
    pub gamma: Option<A>,
    pub mean: A,
    pub inv_std: A,
    pub training: bool,
    pub out: A,
    pub d_gamma: A,
    pub d_beta: A,
}

fn optional<A: RawArray>(
    name: &'static str,
    a: &Option<A>,
    written: bool,
) -> Option<Region<A::Elem>> {
    a.as_ref().map(|a| {
        if written {
            Region::write(name, a)
        } else {
            Region::read(name, a)
        }
    })
}

/// The source/destination pair of an elementwise pass, in place when they are the same.
///
/// # Safety
/// Both regions must have passed `check_disjoint`.
unsafe fn io<'a, T>(src: &Region<T>, dst: &Region<T>) -> Io<'a, T> {
    // SAFETY: disjoint unless identical (checked), so one &mut or one & + one &mut.
    unsafe {
        if src.is_same(dst) {
            Io::InPlace(dst.slice_mut())
        } else {
            Io::Separate {
                src: src.slice(),
                dst: dst.slice_mut(),
            }
        }
    }
}

impl<A: RawArray> TrainJob<A> {
    pub fn run(&self) -> Result<()> {
        let layout = layout(&self.shape, self.axis)?;
        let x = Region::read("x", &self.x);
        let out = Region::write("out", &self.out);
        let mean = Region::write("mean", &self.mean);
        let inv_std = Region::write("invStd", &self.inv_std);
        let gamma = optional("gamma", &self.gamma, false);
        let beta = optional("beta", &self.beta, false);
        let running_mean = optional("runningMean", &self.running_mean, true);
        let running_var = optional("runningVar", &self.running_var, true);
        let regions: Vec<_> = [
            Some(x),
            Some(out),
            Some(mean),
            Some(inv_std),
            gamma,
            beta,
            running_mean,
            running_var,
        ]
        .into_iter()
        .flatten()
        .collect();
        check_disjoint(&regions, &[("x", "out")])?;
        // SAFETY: every region is a live argument of this call, and check_disjoint proved
        // that written regions overlap nothing (out may equal x: handled by `io`).
        unsafe {
            let running = match (running_mean, running_var) {
                (Some(m), Some(v)) => Some(RunningStats {
                    mean: m.slice_mut(),
                    var: v.slice_mut(),
                    momentum: self.momentum,
                }),
                _ => None,
            };
            batchnorm_core::train(
                io(&x, &out),
                &layout,
                Affine {
                    gamma: gamma.map(|g| g.slice()),
                    beta: beta.map(|b| b.slice()),
                },
                self.eps,
                running,
                SavedStats {
                    mean: mean.slice_mut(),
                    inv_std: inv_std.slice_mut(),
                },
            )
        }
        .map_err(core_error)
    }
}

impl<A: RawArray> EvalJob<A> {
    pub fn run(&self) -> Result<()> {
        let layout = layout(&self.shape, self.axis)?;
        let x = Region::read("x", &self.x);
        let out = Region::write("out", &self.out);
        let running_mean = Region::read("runningMean", &self.running_mean);
        let running_var = Region::read("runningVar", &self.running_var);
        let gamma = optional("gamma", &self.gamma, false);
        let beta = optional("beta", &self.beta, false);
        let regions: Vec<_> = [
            Some(x),
            Some(out),
            Some(running_mean),
            Some(running_var),
            gamma,
            beta,
        ]
        .into_iter()
        .flatten()
        .collect();
        check_disjoint(&regions, &[("x", "out")])?;
        // SAFETY: as in TrainJob::run; only `out` is written.
        unsafe {
            batchnorm_core::eval(
                io(&x, &out),
                &layout,
                Affine {
                    gamma: gamma.map(|g| g.slice()),
                    beta: beta.map(|b| b.slice()),
                },
                self.eps,
                running_mean.slice(),
                running_var.slice(),
            )
        }
        .map_err(core_error)
    }
}

impl<A: RawArray> BackwardJob<A> {
    pub fn run(&self) -> Result<()> {
        let layout = layout(&self.shape, self.axis)?;
        let dy = Region::read("dy", &self.dy);
        let x = Region::read("x", &self.x);
        let out = Region::write("out", &self.out);
        let mean = Region::read("mean", &self.mean);
        let inv_std = Region::read("invStd", &self.inv_std);
        let d_gamma = Region::write("dGamma", &self.d_gamma);
        let d_beta = Region::write("dBeta", &self.d_beta);
        let gamma = optional("gamma", &self.gamma, false);
        let regions: Vec<_> = [
            Some(dy),
            Some(x),
            Some(out),
            Some(mean),
            Some(inv_std),
            Some(d_gamma),
            Some(d_beta),
            gamma,
        ]
        .into_iter()
        .flatten()
        .collect();
        check_disjoint(&regions, &[("dy", "out")])?;
        // SAFETY: as in TrainJob::run; out may equal dy (handled by `io`), nothing else aliases a write.
        unsafe {
            batchnorm_core::backward(
                io(&dy, &out),
                x.slice(),
                &layout,
                gamma.map(|g| g.slice()),
                Saved {
                    mean: mean.slice(),
                    inv_std: inv_std.slice(),
                },
                self.training,
                ParamGrads {
                    d_gamma: d_gamma.slice_mut(),
                    d_beta: d_beta.slice_mut(),
                },
            )
        }
        .map_err(core_error)
    }
}

macro_rules! task {
    ($job:ident) => {
        impl<A: RawArray + Send> Task for $job<A> {
            type Output = ();
            type JsValue = ();
            fn compute(&mut self) -> Result<()> {
                self.run()
            }
            fn resolve(&mut self, _env: Env, _output: ()) -> Result<()> {
                Ok(())
            }
        }
    };
}
task!(TrainJob);
task!(EvalJob);
task!(BackwardJob);
