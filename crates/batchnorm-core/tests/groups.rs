//! Ghost batches (`train_in_groups`, `backward_in_groups`): one call gives, bit for bit, what
//! one plain call per group gives, with the fingerprint of the whole x folded into the sweeps
//! and the running statistics moved by the groups' average.

use batchnorm_core::{
    backward, backward_in_groups, fingerprint, train, train_in_groups, Activation, GradPath, Io, Layout, Norm,
    ParamGrads, RunningStats, Saved, SavedStats,
};

struct Rng(u64);
impl Rng {
    fn vec(&mut self, n: usize, offset: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                offset + (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
            })
            .collect()
    }
}

/// (shape, channel axis, samples per group); the batch is axis 0.
const CASES: &[(&[usize], i64, usize)] = &[
    (&[8, 3, 70], 1, 2),      // channel-major rows
    (&[6, 4, 5, 3], -1, 3),   // channels-last
    (&[12, 5], 1, 4),         // [N, C]
    (&[4, 7, 9, 33], 1, 1),   // groups of one sample
    (&[16, 8, 64, 64], 1, 4), // large enough to run in parallel and stream
    (&[9, 2, 3, 4, 2], 2, 9), // one group: the plain op
];

fn part(a: &[f64], g: usize, size: usize) -> &[f64] {
    &a[g * size..(g + 1) * size]
}

#[test]
fn one_call_per_batch_gives_what_one_call_per_group_gives() {
    let mut rng = Rng(7);
    for &(shape, axis, k) in CASES {
        let l = Layout::from_shape(shape, axis).unwrap();
        let groups = shape[0] / k;
        let group = Layout { outer: l.outer / groups, ..l };
        let (size, c) = (group.len(), l.channels);
        let x = rng.vec(l.len(), 3.0);
        let z = rng.vec(l.len(), 0.0);
        let dy = rng.vec(l.len(), 0.0);
        let gamma = rng.vec(c, 1.0);
        let beta = rng.vec(c, 0.0);
        fn norm<'a>(gamma: &'a [f64], beta: &'a [f64], residual: &'a [f64]) -> Norm<'a, f64> {
            Norm {
                gamma: Some(gamma),
                beta: Some(beta),
                eps: 1e-5,
                residual: Some(residual),
                activation: Activation::Relu,
            }
        }
        let what = format!("{shape:?} axis {axis} k {k}");

        // One call for the batch, y in place.
        let mut y = x.clone();
        let (mut mean, mut inv_std, mut print) = (vec![0.0; groups * c], vec![0.0; groups * c], 0);
        let (mut rm, mut rv) = (vec![0.5; c], vec![2.0; c]);
        let running = RunningStats { mean: &mut rm, var: &mut rv, momentum: 0.25, var_correction: 1.0 };
        let saved = SavedStats { mean: &mut mean, inv_std: &mut inv_std, x_fingerprint: Some(&mut print) };
        train_in_groups(Io::InPlace(&mut y), &l, groups, norm(&gamma, &beta, &z), Some(running), saved).unwrap();
        assert_eq!(print, fingerprint(&x), "{what}: fingerprint of the train");

        // One call per group.
        let mut want_y = vec![0.0; l.len()];
        let (mut want_mean, mut want_inv_std) = (vec![0.0; groups * c], vec![0.0; groups * c]);
        let (mut mean_sum, mut var_sum) = (vec![0.0; c], vec![0.0; c]);
        for g in 0..groups {
            let (mut gm, mut gv) = (vec![0.0; c], vec![0.0; c]);
            let running = RunningStats { mean: &mut gm, var: &mut gv, momentum: 1.0, var_correction: 1.0 };
            let saved = SavedStats {
                mean: &mut want_mean[g * c..(g + 1) * c],
                inv_std: &mut want_inv_std[g * c..(g + 1) * c],
                x_fingerprint: None,
            };
            let io = Io::Separate { src: part(&x, g, size), dst: &mut want_y[g * size..(g + 1) * size] };
            train(io, &group, norm(&gamma, &beta, part(&z, g, size)), Some(running), saved).unwrap();
            for j in 0..c {
                mean_sum[j] += gm[j];
                var_sum[j] += gv[j];
            }
        }
        assert_eq!(y, want_y, "{what}: y");
        assert_eq!((&mean, &inv_std), (&want_mean, &want_inv_std), "{what}: saved statistics");
        for j in 0..c {
            let (want_m, want_v) =
                (0.75 * 0.5 + 0.25 * (mean_sum[j] / groups as f64), 0.75 * 2.0 + 0.25 * (var_sum[j] / groups as f64));
            assert!((rm[j] - want_m).abs() <= 1e-14 * want_m.abs().max(1.0), "{what}: running mean {j}");
            assert!((rv[j] - want_v).abs() <= 1e-14 * want_v.abs().max(1.0), "{what}: running var {j}");
        }

        // Backward: one call (dx in place over dy) against one per group.
        let mut dx = dy.clone();
        let (mut dg, mut db, mut dz, mut print) = (vec![0.0; c], vec![0.0; c], vec![0.0; l.len()], 0);
        let params = ParamGrads {
            d_gamma: &mut dg,
            d_beta: &mut db,
            d_residual: Some(&mut dz),
            x_fingerprint: Some(&mut print),
        };
        let saved = Saved { mean: &mean, inv_std: &inv_std };
        let flow = GradPath { training: true, relu_output: Some(&y) };
        backward_in_groups(Io::InPlace(&mut dx), &x, &l, groups, Some(&gamma), saved, flow, params).unwrap();
        assert_eq!(print, fingerprint(&x), "{what}: fingerprint of the backward");
        let mut want_dx = vec![0.0; l.len()];
        let mut want_dz = vec![0.0; l.len()];
        let (mut want_dg, mut want_db) = (vec![0.0; c], vec![0.0; c]);
        for g in 0..groups {
            let (mut gg, mut gb) = (vec![0.0; c], vec![0.0; c]);
            let params = ParamGrads {
                d_gamma: &mut gg,
                d_beta: &mut gb,
                d_residual: Some(&mut want_dz[g * size..(g + 1) * size]),
                x_fingerprint: None,
            };
            let saved = Saved { mean: &mean[g * c..(g + 1) * c], inv_std: &inv_std[g * c..(g + 1) * c] };
            let flow = GradPath { training: true, relu_output: Some(part(&y, g, size)) };
            let io = Io::Separate { src: part(&dy, g, size), dst: &mut want_dx[g * size..(g + 1) * size] };
            backward(io, part(&x, g, size), &group, Some(&gamma), saved, flow, params).unwrap();
            for j in 0..c {
                want_dg[j] = if g == 0 { gg[j] } else { want_dg[j] + gg[j] };
                want_db[j] = if g == 0 { gb[j] } else { want_db[j] + gb[j] };
            }
        }
        assert_eq!(dx, want_dx, "{what}: dx");
        assert_eq!(dz, want_dz, "{what}: dResidual");
        assert_eq!((&dg, &db), (&want_dg, &want_db), "{what}: dGamma, dBeta");
    }
}

#[test]
fn groups_that_do_not_divide_the_batch_are_errors_and_write_nothing() {
    let l = Layout::from_shape(&[6, 2, 3], 1).unwrap();
    let x = vec![1.0; l.len()];
    for (groups, saved_len) in [(0, 0), (4, 8), (3, 2)] {
        let mut y = vec![7.0; l.len()];
        let (mut mean, mut inv_std) = (vec![7.0; saved_len], vec![7.0; saved_len]);
        let saved = SavedStats { mean: &mut mean, inv_std: &mut inv_std, x_fingerprint: None };
        let n = Norm { gamma: None, beta: None, eps: 1e-5, residual: None, activation: Activation::None };
        let e = train_in_groups(Io::Separate { src: &x, dst: &mut y }, &l, groups, n, None, saved).unwrap_err();
        assert!(e.message.contains("groups") || e.message.contains("length"), "groups {groups}: {e}");
        assert!(y.iter().chain(&mean).chain(&inv_std).all(|&v| v == 7.0), "groups {groups}: nothing written");
    }
    // Groups of one sample with one value per channel cannot train.
    let l = Layout::from_shape(&[4, 3], 1).unwrap();
    let (mut y, mut mean, mut inv_std) = (vec![0.0; 12], vec![0.0; 12], vec![0.0; 12]);
    let saved = SavedStats { mean: &mut mean, inv_std: &mut inv_std, x_fingerprint: None };
    let n = Norm { gamma: None, beta: None, eps: 1e-5, residual: None, activation: Activation::None };
    assert!(train_in_groups(Io::Separate { src: &[1.0; 12], dst: &mut y }, &l, 4, n, None, saved).is_err());
}
