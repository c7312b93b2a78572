//! One struct per op holding the borrowed arrays of a call. `run` checks memory and calls
//! the core; sync functions run it at once, Async ones hand it to libuv as a `Task`.

use batchnorm_core::{
    Activation, Element, GradPath, GradSums, Io, Layout, Moments, Norm, ParamGrads, RunningStats, Saved, SavedStats,
};
use napi::bindgen_prelude::{Env, Task};
use napi::{Error, Result, Status};

use crate::arrays::{check_disjoint, RawArray, Region, Span};
use crate::dtype::{RunAs, Storage, StoredAs};
use crate::options::{given_count, groups, BackwardOptions, EvalOptions, ReduceOptions, TrainOptions};
use crate::shape::{core_error, count, layout};

/// Statistics merged by the caller (e.g. across workers): mean and M2 per channel (their
/// count is `options.stats.count`).
pub struct GivenStats<F> {
    pub mean: F,
    pub m2: F,
}

/// Backward sums reduced by the caller (over `options.sums.count` values per channel).
pub struct GivenSums<F> {
    pub sum_dy: F,
    pub sum_dy_xhat: F,
}

/// Tensors (x, out, residual) are A; parameters and statistics P, whose storage goes with A's
/// (`dtype::Storage::Param`).
pub struct TrainJob<A, P, F> {
    pub x: A,
    pub gamma: Option<P>,
    pub beta: Option<P>,
    pub running_mean: Option<P>,
    pub running_var: Option<P>,
    pub residual: Option<A>,
    pub given: Option<GivenStats<F>>,
    pub out: A,
    pub mean: P,
    pub inv_std: P,
    /// Length 1: receives x's fingerprint as the step read it.
    pub x_fingerprint: Option<F>,
    pub shape: Vec<f64>,
    pub options: TrainOptions,
}

pub struct EvalJob<A, P> {
    pub x: A,
    pub gamma: Option<P>,
    pub beta: Option<P>,
    pub running_mean: P,
    pub running_var: P,
    pub residual: Option<A>,
    pub out: A,
    pub shape: Vec<f64>,
    pub options: EvalOptions,
}

pub struct BackwardJob<A, P, F> {
    pub dy: A,
    pub x: A,
    pub gamma: Option<P>,
    pub mean: P,
    pub inv_std: P,
    pub y: Option<A>,
    pub given: Option<GivenSums<F>>,
    pub out: A,
    pub d_gamma: P,
    pub d_beta: P,
    pub d_residual: Option<A>,
    /// Length 1: receives x's fingerprint as the backward read it.
    pub x_fingerprint: Option<F>,
    pub shape: Vec<f64>,
    pub options: BackwardOptions,
}

pub struct MomentsJob<A, F> {
    pub x: A,
    pub mean: F,
    pub m2: F,
    pub shape: Vec<f64>,
    pub options: ReduceOptions,
}

pub struct GradSumsJob<A, P, F> {
    pub dy: A,
    pub x: A,
    pub mean: P,
    pub inv_std: P,
    pub y: Option<A>,
    pub sum_dy: F,
    pub sum_dy_xhat: F,
    pub shape: Vec<f64>,
    pub options: ReduceOptions,
}

/// An optional array the call reads (a tensor or a parameter), as elements of U.
fn read<U: StoredAs<A::Elem>, A: RawArray>(name: &'static str, a: &Option<A>) -> Option<Region<U>> {
    a.as_ref().map(|a| Region::read(name, a).cast())
}

/// The spans of a call's regions (of whichever element types), the absent ones left out.
fn spans(regions: &[Option<Span>]) -> impl Iterator<Item = Span> + '_ {
    regions.iter().flatten().cloned()
}

/// A per-channel f64 array the caller passes in or out: its length must be C.
fn channel_f64<F: RawArray<Elem = f64>>(
    name: &'static str,
    a: &F,
    layout: &Layout,
    written: bool,
) -> Result<Region<f64>> {
    let r = if written { Region::write(name, a) } else { Region::read(name, a) };
    if r.len != layout.channels {
        return Err(Error::new(
            Status::InvalidArg,
            format!("{name} must have length {}, got {}", layout.channels, r.len),
        ));
    }
    Ok(r)
}

/// The one-element f64 array a fingerprint is written to.
fn fingerprint_out<F: RawArray<Elem = f64>>(a: &Option<F>) -> Result<Option<Region<f64>>> {
    let Some(a) = a else { return Ok(None) };
    let r = Region::write("xFingerprint", a);
    if r.len != 1 {
        return Err(Error::new(Status::InvalidArg, format!("xFingerprint must have length 1, got {}", r.len)));
    }
    Ok(Some(r))
}

/// Where the kernel puts the fingerprint, and its copy into the caller's array after.
fn store_fingerprint(region: Option<Region<f64>>, value: u32) {
    if let Some(r) = region {
        // SAFETY: a live, written argument of this call that overlaps nothing (checked).
        unsafe { r.slice_mut()[0] = f64::from(value) };
    }
}

fn activation(relu: bool) -> Activation {
    if relu {
        Activation::Relu
    } else {
        Activation::None
    }
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
            Io::Separate { src: src.slice(), dst: dst.slice_mut() }
        }
    }
}

impl<A: RawArray, P: RawArray, F: RawArray<Elem = f64>> RunAs<A::Elem> for TrainJob<A, P, F>
where
    A::Elem: Storage<Param = P::Elem>,
{
    fn run_as<T>(&self) -> Result<()>
    where
        T: Element + StoredAs<A::Elem>,
        T::Param: StoredAs<P::Elem>,
    {
        let layout = layout(&self.shape, self.options.axis)?;
        let x = Region::read("x", &self.x).cast::<T>();
        let out = Region::write("out", &self.out).cast::<T>();
        let mean = Region::write("mean", &self.mean).cast::<T::Param>();
        let inv_std = Region::write("invStd", &self.inv_std).cast::<T::Param>();
        let (gamma, beta) = (read::<T::Param, _>("gamma", &self.gamma), read::<T::Param, _>("beta", &self.beta));
        let residual = read::<T, _>("residual", &self.residual);
        let running_mean = self.running_mean.as_ref().map(|a| Region::write("runningMean", a).cast::<T::Param>());
        let running_var = self.running_var.as_ref().map(|a| Region::write("runningVar", a).cast::<T::Param>());
        let given = match &self.given {
            Some(g) => Some((
                count("stats.count", given_count("stats", &self.options.stats)?)?,
                channel_f64("stats.mean", &g.mean, &layout, false)?,
                channel_f64("stats.m2", &g.m2, &layout, false)?,
            )),
            None => None,
        };
        let print = fingerprint_out(&self.x_fingerprint)?;
        let groups = groups(self.options.groups, given.is_some())?;
        let (eps, activation) = (self.options.eps, activation(self.options.relu));
        let (momentum, var_correction) = (self.options.momentum, self.options.running_var_correction);
        let mut all: Vec<Span> = spans(&[
            Some(x.span()),
            Some(out.span()),
            Some(mean.span()),
            Some(inv_std.span()),
            gamma.map(|r| r.span()),
            beta.map(|r| r.span()),
            residual.map(|r| r.span()),
            running_mean.map(|r| r.span()),
            running_var.map(|r| r.span()),
        ])
        .collect();
        if let Some((_, m, m2)) = &given {
            all.extend([m.span(), m2.span()]);
        }
        all.extend(print.map(|p| p.span()));
        check_disjoint(&all, ("x", "out"))?;
        let mut value = 0u32;
        // SAFETY: every region is a live argument of this call, and check_disjoint proved
        // that written regions overlap nothing (out may equal x: handled by `io`).
        unsafe {
            let running = match (running_mean, running_var) {
                (Some(m), Some(v)) => {
                    Some(RunningStats { mean: m.slice_mut(), var: v.slice_mut(), momentum, var_correction })
                }
                _ => None,
            };
            let norm = Norm {
                gamma: gamma.map(|g| g.slice()),
                beta: beta.map(|b| b.slice()),
                eps,
                residual: residual.map(|z| z.slice()),
                activation,
            };
            let saved = SavedStats {
                mean: mean.slice_mut(),
                inv_std: inv_std.slice_mut(),
                x_fingerprint: print.is_some().then_some(&mut value),
            };
            match given {
                None => batchnorm_core::train_in_groups(io(&x, &out), &layout, groups, norm, running, saved),
                Some((count, m, m2)) => {
                    let moments: Vec<Moments> =
                        m.slice().iter().zip(m2.slice()).map(|(&mean, &m2)| Moments { count, mean, m2 }).collect();
                    batchnorm_core::train_with_moments(io(&x, &out), &layout, norm, &moments, running, saved)
                }
            }
        }
        .map_err(core_error)?;
        store_fingerprint(print, value);
        Ok(())
    }
}

impl<A: RawArray, P: RawArray> RunAs<A::Elem> for EvalJob<A, P>
where
    A::Elem: Storage<Param = P::Elem>,
{
    fn run_as<T>(&self) -> Result<()>
    where
        T: Element + StoredAs<A::Elem>,
        T::Param: StoredAs<P::Elem>,
    {
        let layout = layout(&self.shape, self.options.axis)?;
        let x = Region::read("x", &self.x).cast::<T>();
        let out = Region::write("out", &self.out).cast::<T>();
        let running_mean = Region::read("runningMean", &self.running_mean).cast::<T::Param>();
        let running_var = Region::read("runningVar", &self.running_var).cast::<T::Param>();
        let (gamma, beta) = (read::<T::Param, _>("gamma", &self.gamma), read::<T::Param, _>("beta", &self.beta));
        let residual = read::<T, _>("residual", &self.residual);
        let (eps, activation) = (self.options.eps, activation(self.options.relu));
        let all: Vec<Span> = spans(&[
            Some(x.span()),
            Some(out.span()),
            Some(running_mean.span()),
            Some(running_var.span()),
            gamma.map(|r| r.span()),
            beta.map(|r| r.span()),
            residual.map(|r| r.span()),
        ])
        .collect();
        check_disjoint(&all, ("x", "out"))?;
        // SAFETY: as in TrainJob::run; only `out` is written.
        unsafe {
            let norm = Norm {
                gamma: gamma.map(|g| g.slice()),
                beta: beta.map(|b| b.slice()),
                eps,
                residual: residual.map(|z| z.slice()),
                activation,
            };
            batchnorm_core::eval(io(&x, &out), &layout, norm, running_mean.slice(), running_var.slice())
        }
        .map_err(core_error)
    }
}

impl<A: RawArray, P: RawArray, F: RawArray<Elem = f64>> RunAs<A::Elem> for BackwardJob<A, P, F>
where
    A::Elem: Storage<Param = P::Elem>,
{
    fn run_as<T>(&self) -> Result<()>
    where
        T: Element + StoredAs<A::Elem>,
        T::Param: StoredAs<P::Elem>,
    {
        let layout = layout(&self.shape, self.options.axis)?;
        let dy = Region::read("dy", &self.dy).cast::<T>();
        let x = Region::read("x", &self.x).cast::<T>();
        let out = Region::write("out", &self.out).cast::<T>();
        let mean = Region::read("mean", &self.mean).cast::<T::Param>();
        let inv_std = Region::read("invStd", &self.inv_std).cast::<T::Param>();
        let d_gamma = Region::write("dGamma", &self.d_gamma).cast::<T::Param>();
        let d_beta = Region::write("dBeta", &self.d_beta).cast::<T::Param>();
        let (gamma, y) = (read::<T::Param, _>("gamma", &self.gamma), read::<T, _>("y", &self.y));
        let d_residual = self.d_residual.as_ref().map(|a| Region::write("outResidual", a).cast::<T>());
        let given = match &self.given {
            Some(g) => Some((
                count("sums.count", given_count("sums", &self.options.sums)?)?,
                channel_f64("sums.sumDy", &g.sum_dy, &layout, false)?,
                channel_f64("sums.sumDyXhat", &g.sum_dy_xhat, &layout, false)?,
            )),
            None => None,
        };
        let mut all: Vec<Span> = spans(&[
            Some(dy.span()),
            Some(x.span()),
            Some(out.span()),
            Some(mean.span()),
            Some(inv_std.span()),
            Some(d_gamma.span()),
            Some(d_beta.span()),
            gamma.map(|r| r.span()),
            y.map(|r| r.span()),
            d_residual.map(|r| r.span()),
        ])
        .collect();
        if let Some((_, s, sx)) = &given {
            all.extend([s.span(), sx.span()]);
        }
        let print = fingerprint_out(&self.x_fingerprint)?;
        all.extend(print.map(|p| p.span()));
        check_disjoint(&all, ("dy", "out"))?;
        let training = self.options.training;
        let groups = groups(self.options.groups, given.is_some())?;
        let mut value = 0u32;
        // SAFETY: as in TrainJob::run; out may equal dy (handled by `io`), nothing else aliases a write.
        unsafe {
            let saved = Saved { mean: mean.slice(), inv_std: inv_std.slice() };
            let path = GradPath { training, relu_output: y.map(|y| y.slice()) };
            let params = ParamGrads {
                d_gamma: d_gamma.slice_mut(),
                d_beta: d_beta.slice_mut(),
                d_residual: d_residual.map(|d| d.slice_mut()),
                x_fingerprint: print.is_some().then_some(&mut value),
            };
            let gamma = gamma.map(|g| g.slice());
            match given {
                None => batchnorm_core::backward_in_groups(
                    io(&dy, &out),
                    x.slice(),
                    &layout,
                    groups,
                    gamma,
                    saved,
                    path,
                    params,
                ),
                Some((count, s, sx)) => {
                    let sums: Vec<GradSums> = s
                        .slice()
                        .iter()
                        .zip(sx.slice())
                        .map(|(&sum_dy, &sum_dy_xhat)| GradSums { sum_dy, sum_dy_xhat })
                        .collect();
                    batchnorm_core::backward_with_sums(
                        io(&dy, &out),
                        x.slice(),
                        &layout,
                        gamma,
                        saved,
                        path,
                        &sums,
                        count,
                        params,
                    )
                }
            }
        }
        .map_err(core_error)?;
        store_fingerprint(print, value);
        Ok(())
    }
}

impl<A: RawArray, F: RawArray<Elem = f64>> RunAs<A::Elem> for MomentsJob<A, F>
where
    A::Elem: Storage,
{
    fn run_as<T>(&self) -> Result<()>
    where
        T: Element + StoredAs<A::Elem>,
        T::Param: StoredAs<<A::Elem as Storage>::Param>,
    {
        let layout = layout(&self.shape, self.options.axis)?;
        let x = Region::read("x", &self.x).cast::<T>();
        let mean = channel_f64("mean", &self.mean, &layout, true)?;
        let m2 = channel_f64("m2", &self.m2, &layout, true)?;
        check_disjoint(&[x.span(), mean.span(), m2.span()], ("", ""))?;
        // SAFETY: x is only read; mean and m2 are written and overlap nothing (checked).
        unsafe {
            let moments = batchnorm_core::channel_moments(x.slice(), &layout).map_err(core_error)?;
            for (m, (mean, m2)) in moments.iter().zip(mean.slice_mut().iter_mut().zip(m2.slice_mut())) {
                *mean = m.mean;
                *m2 = m.m2;
            }
        }
        Ok(())
    }
}

impl<A: RawArray, P: RawArray, F: RawArray<Elem = f64>> RunAs<A::Elem> for GradSumsJob<A, P, F>
where
    A::Elem: Storage<Param = P::Elem>,
{
    fn run_as<T>(&self) -> Result<()>
    where
        T: Element + StoredAs<A::Elem>,
        T::Param: StoredAs<P::Elem>,
    {
        let layout = layout(&self.shape, self.options.axis)?;
        let dy = Region::read("dy", &self.dy).cast::<T>();
        let x = Region::read("x", &self.x).cast::<T>();
        let mean = Region::read("mean", &self.mean).cast::<T::Param>();
        let inv_std = Region::read("invStd", &self.inv_std).cast::<T::Param>();
        let y = read::<T, _>("y", &self.y);
        let sum_dy = channel_f64("sumDy", &self.sum_dy, &layout, true)?;
        let sum_dy_xhat = channel_f64("sumDyXhat", &self.sum_dy_xhat, &layout, true)?;
        let mut all: Vec<Span> =
            spans(&[Some(dy.span()), Some(x.span()), Some(mean.span()), Some(inv_std.span()), y.map(|r| r.span())])
                .collect();
        all.extend([sum_dy.span(), sum_dy_xhat.span()]);
        check_disjoint(&all, ("", ""))?;
        // SAFETY: inputs are only read; the two sums are written and overlap nothing (checked).
        unsafe {
            let saved = Saved { mean: mean.slice(), inv_std: inv_std.slice() };
            let sums = batchnorm_core::grad_sums(dy.slice(), x.slice(), &layout, saved, y.map(|y| y.slice()))
                .map_err(core_error)?;
            for (s, (d, dx)) in sums.iter().zip(sum_dy.slice_mut().iter_mut().zip(sum_dy_xhat.slice_mut())) {
                *d = s.sum_dy;
                *dx = s.sum_dy_xhat;
            }
        }
        Ok(())
    }
}

/// Each job's `run` (its element type picked once, from `options.dtype`) and its Async `Task`.
macro_rules! task {
    ($job:ident < A $(, $p:ident)? $(; $f:ident)? >) => {
        impl<A: RawArray $(, $p: RawArray)? $(, $f: RawArray<Elem = f64>)?> $job<A $(, $p)? $(, $f)?>
        where
            A::Elem: Storage$(<Param = $p::Elem>)?,
        {
            pub fn run(&self) -> Result<()> {
                A::Elem::dispatch(self, self.options.dtype.as_deref())
            }
        }

        impl<A: RawArray + Send $(, $p: RawArray + Send)? $(, $f: RawArray<Elem = f64> + Send)?> Task for $job<A $(, $p)? $(, $f)?>
        where
            A::Elem: Storage$(<Param = $p::Elem>)?,
        {
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
task!(TrainJob<A, P; F>);
task!(EvalJob<A, P>);
task!(BackwardJob<A, P; F>);
task!(MomentsJob<A; F>);
task!(GradSumsJob<A, P; F>);
