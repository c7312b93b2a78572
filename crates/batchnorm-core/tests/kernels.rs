//! The kernels against a direct, obviously-correct f64 reference, across layouts that take
//! every code path (channels-last, short and long channel runs, tiled and parallel sizes).

use batchnorm_core::{
    backward, backward_with_sums, channel_moments, eval, fingerprint, grad_sums, train, train_with_moments, Activation,
    GradPath, Io, Layout, Moments, Norm, ParamGrads, RunningStats, Saved, SavedStats,
};

/// Deterministic pseudo-random values (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, offset: f64, spread: f64) -> Vec<f64> {
        (0..n).map(|_| offset + spread * self.next()).collect()
    }
}

fn norm<'a>(gamma: Option<&'a [f64]>, beta: Option<&'a [f64]>, eps: f64, activation: Activation) -> Norm<'a, f64> {
    Norm { gamma, beta, eps, residual: None, activation }
}

/// Training forward into fresh arrays: (y, mean, invStd).
fn train_fresh(x: &[f64], l: &Layout, n: Norm<'_, f64>) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut mean, mut inv_std) = (vec![0.0; l.len()], vec![0.0; l.channels], vec![0.0; l.channels]);
    let saved = SavedStats { mean: &mut mean, inv_std: &mut inv_std, x_fingerprint: None };
    train(Io::Separate { src: x, dst: &mut y }, l, n, None, saved).unwrap();
    (y, mean, inv_std)
}

/// Backward into fresh arrays: (dx, dGamma, dBeta).
fn backward_fresh(
    dy: &[f64],
    x: &[f64],
    l: &Layout,
    gamma: &[f64],
    saved: Saved<'_, f64>,
    path: GradPath<'_, f64>,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut dx, mut dg, mut db) = (vec![0.0; l.len()], vec![0.0; l.channels], vec![0.0; l.channels]);
    let params = ParamGrads { d_gamma: &mut dg, d_beta: &mut db, d_residual: None, x_fingerprint: None };
    backward(Io::Separate { src: dy, dst: &mut dx }, x, l, Some(gamma), saved, path, params).unwrap();
    (dx, dg, db)
}

fn index(l: &Layout, o: usize, c: usize, i: usize) -> usize {
    (o * l.channels + c) * l.inner + i
}

/// Mean and biased variance of each channel, straight from the definition.
fn reference_stats(x: &[f64], l: &Layout) -> (Vec<f64>, Vec<f64>) {
    let m = l.count_per_channel() as f64;
    let mut mean = vec![0.0; l.channels];
    let mut var = vec![0.0; l.channels];
    for c in 0..l.channels {
        let vals = (0..l.outer).flat_map(|o| (0..l.inner).map(move |i| (o, i)));
        mean[c] = vals.clone().map(|(o, i)| x[index(l, o, c, i)]).sum::<f64>() / m;
        var[c] = vals.map(|(o, i)| (x[index(l, o, c, i)] - mean[c]).powi(2)).sum::<f64>() / m;
    }
    (mean, var)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, want {w}");
    }
}

const SHAPES: &[(&[usize], i64)] = &[
    (&[4, 3], 1),
    (&[4, 3], 0),
    (&[2, 3, 5], 1),
    (&[3, 2, 17], 1),
    (&[2, 4, 5, 3], -1),
    (&[2, 3, 4, 5, 2], 2),
    (&[8, 16, 33, 31], 1),
    (&[64, 7, 9, 24], -1),
    (&[2, 3, 70_000], 1),
    (&[40_000, 3], 1),
    (&[3, 2100, 2, 3], 1),
    (&[3, 300, 7, 7], 1),
    (&[5, 260, 8], 1),
    (&[3, 100, 32], 1),
    (&[4, 40, 7, 7], 1),
];

#[test]
fn train_matches_reference_on_every_path() {
    let mut rng = Rng(42);
    for &(shape, axis) in SHAPES {
        let l = Layout::from_shape(shape, axis).unwrap();
        let x = rng.vec(l.len(), 3.0, 2.0);
        let gamma = rng.vec(l.channels, 1.0, 0.5);
        let beta = rng.vec(l.channels, 0.0, 1.0);
        let (mut y, mut mean, mut inv_std) = (vec![0.0; l.len()], vec![0.0; l.channels], vec![0.0; l.channels]);
        let (mut rm, mut rv) = (vec![0.5; l.channels], vec![2.0; l.channels]);
        let eps = 1e-3;
        let n = norm(Some(&gamma), Some(&beta), eps, Activation::None);
        let running = Some(RunningStats { mean: &mut rm, var: &mut rv, momentum: 0.25, var_correction: 1.0 });
        let saved = SavedStats { mean: &mut mean, inv_std: &mut inv_std, x_fingerprint: None };
        train(Io::Separate { src: &x, dst: &mut y }, &l, n, running, saved).unwrap();
        let (want_mean, want_var) = reference_stats(&x, &l);
        let what = format!("{shape:?} axis {axis}");
        assert_close(&mean, &want_mean, 1e-12, &format!("{what} mean"));
        let want_inv: Vec<f64> = want_var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        assert_close(&inv_std, &want_inv, 1e-12, &format!("{what} invStd"));
        let m = l.count_per_channel() as f64;
        let want_rv: Vec<f64> = want_var.iter().map(|v| 0.75 * 2.0 + 0.25 * v * m / (m - 1.0)).collect();
        let want_rm: Vec<f64> = want_mean.iter().map(|v| 0.75 * 0.5 + 0.25 * v).collect();
        assert_close(&rm, &want_rm, 1e-12, &format!("{what} runningMean"));
        assert_close(&rv, &want_rv, 1e-12, &format!("{what} runningVar"));
        let mut want_y = vec![0.0; l.len()];
        for o in 0..l.outer {
            for c in 0..l.channels {
                for i in 0..l.inner {
                    let k = index(&l, o, c, i);
                    want_y[k] = gamma[c] * (x[k] - want_mean[c]) * want_inv[c] + beta[c];
                }
            }
        }
        assert_close(&y, &want_y, 1e-11, &format!("{what} y"));

        // In place gives the same bits as out-of-place.
        let mut in_place = x.clone();
        let (mut m2, mut s2) = (vec![0.0; l.channels], vec![0.0; l.channels]);
        let saved = SavedStats { mean: &mut m2, inv_std: &mut s2, x_fingerprint: None };
        train(Io::InPlace(&mut in_place), &l, n, None, saved).unwrap();
        assert_eq!(in_place, y, "{what}: in place");

        // Fused ReLU is max(0, y), NaN-preserving.
        let (relu_y, _, _) = train_fresh(&x, &l, norm(Some(&gamma), Some(&beta), eps, Activation::Relu));
        let want_relu: Vec<f64> = y.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(relu_y, want_relu, "{what}: relu");
    }
}

#[test]
fn f32_offset_data_is_stable() {
    // mean 1e4, std ~1 in f32: the batch statistics must still be accurate to f32 rounding.
    let mut rng = Rng(7);
    let l = Layout::from_shape(&[64, 4, 32, 32], 1).unwrap();
    let x: Vec<f32> = rng.vec(l.len(), 1.0e4, 1.7).into_iter().map(|v| v as f32).collect();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (want_mean, want_var) = reference_stats(&x64, &l);
    let (mut y, mut mean, mut inv_std) = (vec![0f32; l.len()], vec![0f32; 4], vec![0f32; 4]);
    let n = Norm { gamma: None, beta: None, eps: 1e-5, residual: None, activation: Activation::None };
    let saved = SavedStats { mean: &mut mean, inv_std: &mut inv_std, x_fingerprint: None };
    train(Io::Separate { src: &x, dst: &mut y }, &l, n, None, saved).unwrap();
    for c in 0..4 {
        assert!(((mean[c] as f64) - want_mean[c]).abs() < 1e-3, "mean {c}");
        let want = 1.0 / (want_var[c] + 1e-5).sqrt();
        assert!(((inv_std[c] as f64) - want).abs() < 1e-6 * want, "invStd {c}");
    }
}

#[test]
fn eval_uses_running_stats() {
    let l = Layout::from_shape(&[2, 2, 3], 1).unwrap();
    let x: Vec<f64> = (0..12).map(|v| v as f64).collect();
    let mut y = vec![0.0; 12];
    let n = norm(Some(&[2.0, 1.0]), Some(&[0.0, -1.0]), 1e-5, Activation::None);
    eval(Io::Separate { src: &x, dst: &mut y }, &l, n, &[1.0, 2.0], &[4.0, 0.25]).unwrap();
    let s0 = 2.0 / (4.0f64 + 1e-5).sqrt();
    let s1 = 1.0 / (0.25f64 + 1e-5).sqrt();
    assert!((y[0] - (0.0 - 1.0) * s0).abs() < 1e-12);
    assert!((y[3] - ((3.0 - 2.0) * s1 - 1.0)).abs() < 1e-12);
    assert!((y[11] - ((11.0 - 2.0) * s1 - 1.0)).abs() < 1e-12);
}

struct Case<'a> {
    l: &'a Layout,
    gamma: &'a [f64],
    beta: &'a [f64],
    frozen: Option<(&'a [f64], &'a [f64])>,
    activation: Activation,
}

/// Loss = sum(w * y) so that dy = w; the finite difference of the loss in x_k is dx_k.
fn loss(x: &[f64], w: &[f64], case: &Case<'_>, gamma: &[f64], beta: &[f64]) -> f64 {
    let n = norm(Some(gamma), Some(beta), 1e-3, case.activation);
    let y = match case.frozen {
        None => train_fresh(x, case.l, n).0,
        Some((rm, rv)) => {
            let mut y = vec![0.0; x.len()];
            eval(Io::Separate { src: x, dst: &mut y }, case.l, n, rm, rv).unwrap();
            y
        }
    };
    y.iter().zip(w).map(|(a, b)| a * b).sum()
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = Rng(3);
    for &(shape, axis) in &SHAPES[..8] {
        let l = Layout::from_shape(shape, axis).unwrap();
        let x = rng.vec(l.len(), 1.0, 1.0);
        let dy = rng.vec(l.len(), 0.0, 1.0);
        let gamma = rng.vec(l.channels, 1.0, 0.5);
        let beta = rng.vec(l.channels, 0.0, 1.0);
        let rm = rng.vec(l.channels, 0.5, 0.5);
        let rv = rng.vec(l.channels, 1.5, 0.5);
        for (training, activation) in
            [(true, Activation::None), (false, Activation::None), (true, Activation::Relu), (false, Activation::Relu)]
        {
            let n = norm(Some(&gamma), Some(&beta), 1e-3, activation);
            let (y, mean, inv_std) = if training {
                train_fresh(&x, &l, n)
            } else {
                let mut y = vec![0.0; l.len()];
                eval(Io::Separate { src: &x, dst: &mut y }, &l, n, &rm, &rv).unwrap();
                (y, rm.clone(), rv.iter().map(|v| 1.0 / (v + 1e-3f64).sqrt()).collect())
            };
            let relu_output = (activation == Activation::Relu).then_some(&y[..]);
            let path = GradPath { training, relu_output };
            let saved = Saved { mean: &mean, inv_std: &inv_std };
            let (dx, dg, db) = backward_fresh(&dy, &x, &l, &gamma, saved, path);
            let frozen = if training { None } else { Some((&rm[..], &rv[..])) };
            let case = Case { l: &l, gamma: &gamma, beta: &beta, frozen, activation };
            let h = 1e-6;
            let what = format!("{shape:?} axis {axis} training {training} {activation:?}");
            let close = |fd: f64, got: f64| (fd - got).abs() < 1e-5 * (1.0 + fd.abs());
            let step = (l.len() / 7).max(1);
            for k in (0..l.len()).step_by(step) {
                // A ReLU kink within h of the output would make the difference meaningless.
                if relu_output.is_some_and(|y| y[k].abs() < 1e-4) {
                    continue;
                }
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[k] += h;
                xm[k] -= h;
                let fd = (loss(&xp, &dy, &case, case.gamma, case.beta) - loss(&xm, &dy, &case, case.gamma, case.beta))
                    / (2.0 * h);
                assert!(close(fd, dx[k]), "{what} dx[{k}]: fd {fd}, got {}", dx[k]);
            }
            for c in 0..l.channels {
                let (mut gp, mut gm) = (gamma.clone(), gamma.clone());
                gp[c] += h;
                gm[c] -= h;
                let fd = (loss(&x, &dy, &case, &gp, &beta) - loss(&x, &dy, &case, &gm, &beta)) / (2.0 * h);
                assert!(close(fd, dg[c]), "{what} dGamma[{c}]: fd {fd}, got {}", dg[c]);
                let (mut bp, mut bm) = (beta.clone(), beta.clone());
                bp[c] += h;
                bm[c] -= h;
                let fd = (loss(&x, &dy, &case, &gamma, &bp) - loss(&x, &dy, &case, &gamma, &bm)) / (2.0 * h);
                assert!(close(fd, db[c]), "{what} dBeta[{c}]: fd {fd}, got {}", db[c]);
            }
            // dx in place over dy gives the same values.
            let mut in_place = dy.clone();
            let (mut dg2, mut db2) = (vec![0.0; l.channels], vec![0.0; l.channels]);
            let params = ParamGrads { d_gamma: &mut dg2, d_beta: &mut db2, d_residual: None, x_fingerprint: None };
            backward(Io::InPlace(&mut in_place), &x, &l, Some(&gamma), saved, path, params).unwrap();
            assert_eq!(in_place, dx, "{what}: in place");
        }
    }
}

#[test]
fn sharded_statistics_and_sums_reproduce_the_whole_batch() {
    // Three shards of unequal size (including a single row) along the outer axis.
    let mut rng = Rng(5);
    let rows = [5usize, 1, 9];
    let (c, inner) = (3, 4);
    let total: usize = rows.iter().sum();
    let whole_l = Layout { outer: total, channels: c, inner };
    let x = rng.vec(whole_l.len(), 2.0, 3.0);
    let dy = rng.vec(whole_l.len(), 0.0, 1.0);
    let gamma = rng.vec(c, 1.0, 0.5);
    let n = norm(Some(&gamma), None, 1e-5, Activation::None);
    let (y, mean, inv_std) = train_fresh(&x, &whole_l, n);
    let (dx, dg, db) = backward_fresh(
        &dy,
        &x,
        &whole_l,
        &gamma,
        Saved { mean: &mean, inv_std: &inv_std },
        GradPath { training: true, relu_output: None },
    );

    let shards: Vec<(Layout, std::ops::Range<usize>)> = rows
        .iter()
        .scan(0, |start, &r| {
            let l = Layout { outer: r, channels: c, inner };
            let range = *start..*start + l.len();
            *start += l.len();
            Some((l, range))
        })
        .collect();
    let mut merged = vec![Moments::default(); c];
    for (l, range) in &shards {
        for (m, part) in merged.iter_mut().zip(channel_moments(&x[range.clone()], l).unwrap()) {
            *m = m.merge(&part);
        }
    }
    let mut sums = vec![Default::default(); c];
    let mut shard_y = Vec::new();
    let (mut m_s, mut s_s) = (vec![0.0; c], vec![0.0; c]);
    for (l, range) in &shards {
        let mut part_y = vec![0.0; l.len()];
        let saved = SavedStats { mean: &mut m_s, inv_std: &mut s_s, x_fingerprint: None };
        train_with_moments(Io::Separate { src: &x[range.clone()], dst: &mut part_y }, l, n, &merged, None, saved)
            .unwrap();
        shard_y.extend(part_y);
        let saved = Saved { mean: &m_s, inv_std: &s_s };
        for (s, part) in sums.iter_mut().zip(grad_sums(&dy[range.clone()], &x[range.clone()], l, saved, None).unwrap())
        {
            let s: &mut batchnorm_core::GradSums = s;
            s.sum_dy += part.sum_dy;
            s.sum_dy_xhat += part.sum_dy_xhat;
        }
    }
    assert_close(&shard_y, &y, 1e-12, "sharded y");
    assert_close(&m_s, &mean, 1e-12, "sharded mean");
    let mut shard_dx = Vec::new();
    for (l, range) in &shards {
        let (mut part_dx, mut dg_s, mut db_s) = (vec![0.0; l.len()], vec![0.0; c], vec![0.0; c]);
        let params = ParamGrads { d_gamma: &mut dg_s, d_beta: &mut db_s, d_residual: None, x_fingerprint: None };
        let saved = Saved { mean: &m_s, inv_std: &s_s };
        let path = GradPath { training: true, relu_output: None };
        backward_with_sums(
            Io::Separate { src: &dy[range.clone()], dst: &mut part_dx },
            &x[range.clone()],
            l,
            Some(&gamma),
            saved,
            path,
            &sums,
            total as f64 * inner as f64,
            params,
        )
        .unwrap();
        shard_dx.extend(part_dx);
        assert_close(&dg_s, &dg, 1e-12, "sharded dGamma");
        assert_close(&db_s, &db, 1e-12, "sharded dBeta");
    }
    assert_close(&shard_dx, &dx, 1e-12, "sharded dx");
}

#[test]
fn bad_arguments_are_errors_and_write_nothing() {
    let l = Layout::from_shape(&[2, 3], 1).unwrap();
    let x = [1.0f64; 6];
    let mut y = [7.0f64; 6];
    let (mut m, mut s) = ([0.0; 3], [0.0; 3]);
    let (mut rm, mut rv) = ([5.0; 3], [5.0; 3]);
    let plain = norm(None, None, 1e-5, Activation::None);
    let bad_gamma = [1.0; 2];
    let err = train(
        Io::Separate { src: &x, dst: &mut y },
        &l,
        norm(Some(&bad_gamma), None, 1e-5, Activation::None),
        Some(RunningStats { mean: &mut rm, var: &mut rv, momentum: 0.1, var_correction: 1.0 }),
        SavedStats { mean: &mut m, inv_std: &mut s, x_fingerprint: None },
    )
    .unwrap_err();
    assert!(err.message.contains("gamma"), "{}", err.message);
    let err = train(
        Io::Separate { src: &x, dst: &mut y },
        &l,
        plain,
        Some(RunningStats { mean: &mut rm, var: &mut rv, momentum: 1.5, var_correction: 1.0 }),
        SavedStats { mean: &mut m, inv_std: &mut s, x_fingerprint: None },
    )
    .unwrap_err();
    assert!(err.message.contains("momentum"));
    let one = Layout::from_shape(&[1, 3], 1).unwrap();
    let saved = SavedStats { mean: &mut m, inv_std: &mut s, x_fingerprint: None };
    let err = train(Io::Separate { src: &x[..3], dst: &mut y[..3] }, &one, plain, None, saved).unwrap_err();
    assert!(err.message.contains("more than 1 value per channel"));
    let zero_eps = norm(None, None, 0.0, Activation::None);
    let err = eval(Io::Separate { src: &x, dst: &mut y }, &l, zero_eps, &rm, &rv).unwrap_err();
    assert!(err.message.contains("eps"));
    assert_eq!(y, [7.0; 6]);
    assert_eq!(rm, [5.0; 3]);
    assert_eq!(rv, [5.0; 3]);
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let mut rng = Rng(11);
    // Channel-major and channels-last, both big enough to run on the pool.
    for (shape, axis) in [([16, 8, 48, 48], 1), ([16, 48, 48, 8], 3)] {
        let l = Layout::from_shape(&shape, axis).unwrap();
        assert!(l.len() >= batchnorm_core::PARALLEL_MIN_ELEMENTS);
        let x = rng.vec(l.len(), 0.0, 1.0);
        let run = |threads| {
            batchnorm_core::set_num_threads(threads).unwrap();
            train_fresh(&x, &l, norm(None, None, 1e-5, Activation::None))
        };
        let one = run(1);
        let four = run(4);
        assert_eq!(one, four);
    }
    assert_eq!(batchnorm_core::num_threads(), 4);
    assert!(batchnorm_core::set_num_threads(0).is_err());
}

#[test]
fn a_residual_is_added_before_the_activation_on_every_path() {
    let mut rng = Rng(11);
    for &(shape, axis) in SHAPES {
        let l = Layout::from_shape(shape, axis).unwrap();
        let what = format!("{shape:?} axis {axis}");
        let x = rng.vec(l.len(), 1.0, 2.0);
        let z = rng.vec(l.len(), 0.0, 1.5);
        let gamma = rng.vec(l.channels, 1.0, 0.5);
        let beta = rng.vec(l.channels, 0.0, 1.0);
        let (plain, _, _) = train_fresh(&x, &l, norm(Some(&gamma), Some(&beta), 1e-5, Activation::None));
        for activation in [Activation::None, Activation::Relu] {
            let n = Norm { gamma: Some(&gamma), beta: Some(&beta), eps: 1e-5, residual: Some(&z), activation };
            let (y, _, _) = train_fresh(&x, &l, n);
            let want: Vec<f64> = plain
                .iter()
                .zip(&z)
                .map(|(p, z)| if activation == Activation::Relu { (p + z).max(0.0) } else { p + z })
                .collect();
            assert_close(&y, &want, 1e-12, &format!("{what} {activation:?}: train"));
            let (rm, rv) = (rng.vec(l.channels, 0.0, 1.0), rng.vec(l.channels, 2.0, 1.0));
            let mut evaluated = vec![0.0; l.len()];
            eval(Io::Separate { src: &x, dst: &mut evaluated }, &l, n, &rm, &rv).unwrap();
            let mut plain_eval = vec![0.0; l.len()];
            let plain_norm = norm(Some(&gamma), Some(&beta), 1e-5, Activation::None);
            eval(Io::Separate { src: &x, dst: &mut plain_eval }, &l, plain_norm, &rm, &rv).unwrap();
            for (i, (&e, &p)) in evaluated.iter().zip(&plain_eval).enumerate() {
                let v = p + z[i];
                let want = if activation == Activation::Relu { v.max(0.0) } else { v };
                assert!((e - want).abs() <= 1e-12 * (1.0 + want.abs()), "{what} {activation:?}: eval [{i}]");
            }
        }
    }
}

#[test]
fn the_residual_gradient_is_dy_through_the_relu_mask_even_with_dx_in_place() {
    let mut rng = Rng(12);
    for &(shape, axis) in SHAPES {
        let l = Layout::from_shape(shape, axis).unwrap();
        let x = rng.vec(l.len(), 0.0, 1.0);
        let dy = rng.vec(l.len(), 0.0, 1.0);
        let y = rng.vec(l.len(), 0.0, 1.0);
        let gamma = rng.vec(l.channels, 1.0, 0.5);
        let (mean, inv_std) = (rng.vec(l.channels, 0.0, 0.1), rng.vec(l.channels, 1.0, 0.1));
        for relu_output in [None, Some(y.as_slice())] {
            let saved = Saved { mean: &mean, inv_std: &inv_std };
            let path = GradPath { training: true, relu_output };
            let (dx, _, _) = backward_fresh(&dy, &x, &l, &gamma, saved, path);
            let mut in_place = dy.clone();
            let (mut dg, mut db, mut d_residual) = (vec![0.0; l.channels], vec![0.0; l.channels], vec![0.0; l.len()]);
            let params = ParamGrads {
                d_gamma: &mut dg,
                d_beta: &mut db,
                d_residual: Some(&mut d_residual),
                x_fingerprint: None,
            };
            backward(Io::InPlace(&mut in_place), &x, &l, Some(&gamma), saved, path, params).unwrap();
            assert_eq!(in_place, dx, "{shape:?}: dx in place");
            let want: Vec<f64> = dy
                .iter()
                .enumerate()
                .map(|(i, &g)| if relu_output.is_none() || y[i] > 0.0 { g } else { 0.0 })
                .collect();
            assert_eq!(d_residual, want, "{shape:?}: dResidual");
        }
    }
}

#[test]
fn the_sweeps_fold_the_same_fingerprint_as_a_pass_of_its_own() {
    let mut rng = Rng(13);
    for &(shape, axis) in SHAPES {
        let l = Layout::from_shape(shape, axis).unwrap();
        let x = rng.vec(l.len(), 0.5, 2.0);
        let dy = rng.vec(l.len(), 0.0, 1.0);
        let want = fingerprint(&x);
        let (mut y, mut mean, mut inv_std, mut print) =
            (vec![0.0; l.len()], vec![0.0; l.channels], vec![0.0; l.channels], 0);
        let saved = SavedStats { mean: &mut mean, inv_std: &mut inv_std, x_fingerprint: Some(&mut print) };
        train(Io::Separate { src: &x, dst: &mut y }, &l, norm(None, None, 1e-5, Activation::None), None, saved)
            .unwrap();
        assert_eq!(print, want, "{shape:?} axis {axis}: train");
        // In place, the fingerprint is of x as the step read it, before y overwrote it.
        let mut in_place = x.clone();
        let (mut m2, mut s2, mut print2) = (vec![0.0; l.channels], vec![0.0; l.channels], 0);
        let saved = SavedStats { mean: &mut m2, inv_std: &mut s2, x_fingerprint: Some(&mut print2) };
        train(Io::InPlace(&mut in_place), &l, norm(None, None, 1e-5, Activation::None), None, saved).unwrap();
        assert_eq!(print2, want, "{shape:?} axis {axis}: train in place");
        let (mut dx, mut dg, mut db, mut print3) =
            (vec![0.0; l.len()], vec![0.0; l.channels], vec![0.0; l.channels], 0);
        let params =
            ParamGrads { d_gamma: &mut dg, d_beta: &mut db, d_residual: None, x_fingerprint: Some(&mut print3) };
        let saved = Saved { mean: &mean, inv_std: &inv_std };
        let path = GradPath { training: true, relu_output: None };
        backward(Io::Separate { src: &dy, dst: &mut dx }, &x, &l, None, saved, path, params).unwrap();
        assert_eq!(print3, want, "{shape:?} axis {axis}: backward");
    }
}

/// The 16-bit formats on every path: statistics as the f64 reference's of the widened values
/// (to f32 precision), y within one 16-bit unit of the f64 answer rounded to 16 bits, in place
/// the same bits, and backward's dx likewise against the f64 kernel on the widened values.
fn half_matches_reference<T: batchnorm_core::Element<Param = f32>>(name: &str) {
    let mut rng = Rng(7);
    let ulps = |a: T, b: T| {
        let ordered = |v: T| {
            let w = v.word() as i32;
            if w & 0x8000 != 0 {
                -(w & 0x7fff)
            } else {
                w
            }
        };
        (ordered(a) - ordered(b)).abs()
    };
    for &(shape, axis) in SHAPES {
        let l = Layout::from_shape(shape, axis).unwrap();
        let what = format!("{name} {shape:?} axis {axis}");
        let x: Vec<T> = rng.vec(l.len(), 3.0, 2.0).into_iter().map(T::from_f64).collect();
        let wide: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
        let gamma: Vec<f32> = rng.vec(l.channels, 1.0, 0.5).into_iter().map(|v| v as f32).collect();
        let beta: Vec<f32> = rng.vec(l.channels, 0.0, 1.0).into_iter().map(|v| v as f32).collect();
        let (g64, b64): (Vec<f64>, Vec<f64>) =
            (gamma.iter().map(|&v| v.into()).collect(), beta.iter().map(|&v| v.into()).collect());
        let (mut y, mut mean, mut inv_std) =
            (vec![T::default(); l.len()], vec![0f32; l.channels], vec![0f32; l.channels]);
        let n = Norm {
            gamma: Some(&gamma[..]),
            beta: Some(&beta[..]),
            eps: 1e-3,
            residual: None,
            activation: Activation::None,
        };
        let saved = SavedStats { mean: &mut mean, inv_std: &mut inv_std, x_fingerprint: None };
        train(Io::Separate { src: &x, dst: &mut y }, &l, n, None, saved).unwrap();
        let (want_y, want_mean, want_inv) =
            train_fresh(&wide, &l, norm(Some(&g64), Some(&b64), 1e-3, Activation::None));
        let (mean64, inv64): (Vec<f64>, Vec<f64>) =
            (mean.iter().map(|&v| v.into()).collect(), inv_std.iter().map(|&v| v.into()).collect());
        assert_close(&mean64, &want_mean, 1e-6, &format!("{what} mean"));
        assert_close(&inv64, &want_inv, 1e-6, &format!("{what} invStd"));
        for (k, (&got, &want)) in y.iter().zip(&want_y).enumerate() {
            assert!(ulps(got, T::from_f64(want)) <= 1, "{what} y[{k}]: {got:?} vs {want}");
        }
        let mut in_place = x.clone();
        let (mut m2, mut s2) = (vec![0f32; l.channels], vec![0f32; l.channels]);
        let saved = SavedStats { mean: &mut m2, inv_std: &mut s2, x_fingerprint: None };
        train(Io::InPlace(&mut in_place), &l, n, None, saved).unwrap();
        assert_eq!(in_place, y, "{what}: in place");

        let dy: Vec<T> = rng.vec(l.len(), 0.0, 1.0).into_iter().map(T::from_f64).collect();
        let dy64: Vec<f64> = dy.iter().map(|v| v.to_f64()).collect();
        let (mut dx, mut dg, mut db) = (vec![T::default(); l.len()], vec![0f32; l.channels], vec![0f32; l.channels]);
        let params = ParamGrads { d_gamma: &mut dg, d_beta: &mut db, d_residual: None, x_fingerprint: None };
        let saved = Saved { mean: &mean, inv_std: &inv_std };
        let flow = GradPath { training: true, relu_output: None };
        backward(Io::Separate { src: &dy, dst: &mut dx }, &x, &l, Some(&gamma), saved, flow, params).unwrap();
        let saved64 = Saved { mean: &mean64, inv_std: &inv64 };
        let (want_dx, _, want_db) =
            backward_fresh(&dy64, &wide, &l, &g64, saved64, GradPath { training: true, relu_output: None });
        let db64: Vec<f64> = db.iter().map(|&v| v.into()).collect();
        assert_close(&db64, &want_db, 1e-5, &format!("{what} dBeta"));
        let dy_term = |k: usize| {
            let c = (k / l.inner) % l.channels;
            (dy64[k] * g64[c] * inv64[c]).abs()
        };
        for (k, (&got, &want)) in dx.iter().zip(&want_dx).enumerate() {
            // A dx whose terms cancel keeps their float32 rounding (see docs/half-precision.md).
            let allowed = if want.abs() * 64.0 < dy_term(k) { 4 } else { 1 };
            assert!(ulps(got, T::from_f64(want)) <= allowed, "{what} dx[{k}]: {got:?} vs {want}");
        }
    }
}

#[test]
fn bfloat16_matches_reference_on_every_path() {
    half_matches_reference::<batchnorm_core::Bf16>("bfloat16");
}

#[test]
fn float16_matches_reference_on_every_path() {
    half_matches_reference::<batchnorm_core::F16>("float16");
}
