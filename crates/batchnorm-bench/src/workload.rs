//! The arrays of one benchmark call and the call itself: the only file that touches the
//! batchnorm-core API, so an API change is mended here alone.

use batchnorm_core::{
    backward, eval, train, Activation, Element, GradPath, Io, Layout, Norm, ParamGrads, RunningStats, Saved, SavedStats,
};

use crate::options::Op;

const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

/// Inputs and preallocated outputs for one op on one shape; outputs are written once
/// before timing so page faults stay out of the measurement.
/// Tensors hold T; parameters and statistics `T::Param` (f32 for the 16-bit formats).
pub struct Workload<T: Element> {
    op: Op,
    layout: Layout,
    x: Vec<T>,
    dy: Vec<T>,
    out: Vec<T>,
    gamma: Vec<T::Param>,
    beta: Vec<T::Param>,
    running_mean: Vec<T::Param>,
    running_var: Vec<T::Param>,
    mean: Vec<T::Param>,
    inv_std: Vec<T::Param>,
    d_gamma: Vec<T::Param>,
    d_beta: Vec<T::Param>,
}

/// Deterministic values in [-1, 1) (xorshift64*), so every run sees the same data.
fn pseudo_random<T: Element>(len: usize, seed: u64) -> Vec<T> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
            T::from_f64(bits as f64 / (1u64 << 52) as f64 - 1.0)
        })
        .collect()
}

/// Normalization with learned scale and shift, as in a training network.
fn norm<'a, T: Element>(gamma: &'a [T::Param], beta: &'a [T::Param]) -> Norm<'a, T> {
    Norm { gamma: Some(gamma), beta: Some(beta), eps: EPS, residual: None, activation: Activation::None }
}

impl<T: Element> Workload<T> {
    pub fn new(op: Op, layout: Layout) -> Result<Self, String> {
        let len = layout.len();
        let channels = layout.channels;
        let ones = |n: usize| vec![T::Param::from_f64(1.0); n];
        let mut workload = Workload {
            op,
            layout,
            x: pseudo_random(len, 1),
            dy: if op == Op::Backward { pseudo_random(len, 2) } else { Vec::new() },
            out: vec![T::from_f64(1.0); len],
            gamma: pseudo_random(channels, 3),
            beta: pseudo_random(channels, 4),
            running_mean: vec![T::Param::default(); channels],
            running_var: ones(channels),
            mean: vec![T::Param::default(); channels],
            inv_std: vec![T::Param::default(); channels],
            d_gamma: vec![T::Param::default(); channels],
            d_beta: vec![T::Param::default(); channels],
        };
        // Backward needs the statistics a training forward saved; eval reuses them as the
        // running statistics. One training call also checks the shape before any timing.
        workload.train()?;
        workload.running_mean.copy_from_slice(&workload.mean);
        workload.running_var =
            workload.inv_std.iter().map(|s| T::Param::from_f64(1.0 / (s.to_f64() * s.to_f64()) - EPS)).collect();
        Ok(workload)
    }

    /// Bytes one call moves at least once: x + y, or x + dy + dx for backward.
    pub fn bytes_moved(&self) -> usize {
        let arrays = if self.op == Op::Backward { 3 } else { 2 };
        arrays * self.layout.len() * std::mem::size_of::<T>()
    }

    /// The bytes of x, for the memcpy baseline.
    pub fn x(&self) -> &[T] {
        &self.x
    }

    pub fn run(&mut self) -> Result<(), String> {
        match self.op {
            Op::Train => self.train(),
            Op::Eval => self.eval(),
            Op::Backward => self.backward(),
        }
    }

    fn train(&mut self) -> Result<(), String> {
        train(
            Io::Separate { src: &self.x, dst: &mut self.out },
            &self.layout,
            norm(&self.gamma, &self.beta),
            Some(RunningStats {
                mean: &mut self.running_mean,
                var: &mut self.running_var,
                momentum: MOMENTUM,
                var_correction: 1.0,
            }),
            SavedStats { mean: &mut self.mean, inv_std: &mut self.inv_std, x_fingerprint: None },
        )
        .map_err(|e| e.to_string())
    }

    fn eval(&mut self) -> Result<(), String> {
        eval(
            Io::Separate { src: &self.x, dst: &mut self.out },
            &self.layout,
            norm(&self.gamma, &self.beta),
            &self.running_mean,
            &self.running_var,
        )
        .map_err(|e| e.to_string())
    }

    fn backward(&mut self) -> Result<(), String> {
        backward(
            Io::Separate { src: &self.dy, dst: &mut self.out },
            &self.x,
            &self.layout,
            Some(&self.gamma),
            Saved { mean: &self.mean, inv_std: &self.inv_std },
            GradPath { training: true, relu_output: None },
            ParamGrads { d_gamma: &mut self.d_gamma, d_beta: &mut self.d_beta, d_residual: None, x_fingerprint: None },
        )
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_runs_and_counts_its_bytes() {
        let layout = Layout::from_shape(&[4, 3, 5], 1).unwrap();
        for (op, arrays) in [(Op::Train, 2), (Op::Eval, 2), (Op::Backward, 3)] {
            let mut w = Workload::<f32>::new(op, layout).unwrap();
            w.run().unwrap();
            assert_eq!(w.bytes_moved(), arrays * 60 * 4);
            assert!(w.out.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn eval_with_the_batch_statistics_matches_train() {
        let layout = Layout::from_shape(&[6, 4, 3], 1).unwrap();
        let mut w = Workload::<f64>::new(Op::Eval, layout).unwrap();
        let trained = w.out.clone();
        w.run().unwrap();
        for (a, b) in trained.iter().zip(&w.out) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }

    #[test]
    fn pseudo_random_values_lie_in_minus_one_to_one() {
        let v: Vec<f64> = pseudo_random(1000, 7);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(v.iter().any(|&x| x < -0.5) && v.iter().any(|&x| x > 0.5));
    }
}
