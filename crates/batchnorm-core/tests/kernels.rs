//! The kernels against a direct, obviously-correct f64 reference, across layouts that take
//! every code path (channels-last, short and long channel runs, tiled and parallel sizes).

use batchnorm_core::{
    backward, eval, train, Affine, Io, Layout, ParamGrads, RunningStats, Saved, SavedStats,
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
        var[c] = vals
            .map(|(o, i)| (x[index(l, o, c, i)] - mean[c]).powi(2))
            .sum::<f64>()
            / m;
    }
    (mean, var)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
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
];

#[test]
fn train_matches_reference_on_every_path() {
    let mut rng = Rng(42);
    for &(shape, axis) in SHAPES {
        let l = Layout::from_shape(shape, axis).unwrap();
        let x = rng.vec(l.len(), 3.0, 2.0);
        let gamma = rng.vec(l.channels, 1.0, 0.5);
        let beta = rng.vec(l.channels, 0.0, 1.0);
        let (mut y, mut mean, mut inv_std) = (
            vec![0.0; l.len()],
            vec![0.0; l.channels],
            vec![0.0; l.channels],
        );
        let (mut rm, mut rv) = (vec![0.5; l.channels], vec![2.0; l.channels]);
        let eps = 1e-3;
        train(
            Io::Separate {
                src: &x,
                dst: &mut y,
            },
            &l,
            Affine {
                gamma: Some(&gamma),
                beta: Some(&beta),
            },
            eps,
            Some(RunningStats {
                mean: &mut rm,
                var: &mut rv,
                momentum: 0.25,
            }),
            SavedStats {
                mean: &mut mean,
                inv_std: &mut inv_std,
            },
        )
        .unwrap();
        let (want_mean, want_var) = reference_stats(&x, &l);
        let what = format!("{shape:?} axis {axis}");
        assert_close(&mean, &want_mean, 1e-12, &format!("{what} mean"));
        let want_inv: Vec<f64> = want_var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        assert_close(&inv_std, &want_inv, 1e-12, &format!("{what} invStd"));
        let m = l.count_per_channel() as f64;
        let want_rv: Vec<f64> = want_var
            .iter()
            .map(|v| 0.75 * 2.0 + 0.25 * v * m / (m - 1.0))
            .collect();
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
        let mut x_in_place = x.clone();
        let (mut m2, mut s2) = (vec![0.0; l.channels], vec![0.0; l.channels]);
        train(
            Io::InPlace(&mut x_in_place),
            &l,
            Affine {
                gamma: Some(&gamma),
                beta: Some(&beta),
            },
            eps,
            None,
            SavedStats {
                mean: &mut m2,
                inv_std: &mut s2,
            },
        )
        .unwrap();
        assert_eq!(x_in_place, y, "{what}: in place");
    }
}

#[test]
fn f32_offset_data_is_stable() {
    // mean 1e4, std ~1 in f32: the batch statistics must still be accurate to f32 rounding.
    let mut rng = Rng(7);
    let l = Layout::from_shape(&[64, 4, 32, 32], 1).unwrap();
    let x: Vec<f32> = rng
        .vec(l.len(), 1.0e4, 1.7)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let (want_mean, want_var) = reference_stats(&x64, &l);
    let (mut y, mut mean, mut inv_std) = (vec![0f32; l.len()], vec![0f32; 4], vec![0f32; 4]);
    train(
        Io::Separate {
            src: &x,
            dst: &mut y,
        },
        &l,
        Affine {
            gamma: None,
            beta: None,
        },
        1e-5,
        None,
        SavedStats {
            mean: &mut mean,
            inv_std: &mut inv_std,
        },
    )
    .unwrap();
    for c in 0..4 {
        assert!(((mean[c] as f64) - want_mean[c]).abs() < 1e-3, "mean {c}");
        let want = 1.0 / (want_var[c] + 1e-5).sqrt();
        assert!(
            ((inv_std[c] as f64) - want).abs() < 1e-6 * want,
            "invStd {c}"
        );
    }
}

#[test]
fn eval_uses_running_stats() {
    let l = Layout::from_shape(&[2, 2, 3], 1).unwrap();
    let x: Vec<f64> = (0..12).map(|v| v as f64).collect();
    let mut y = vec![0.0; 12];
    eval(
        Io::Separate {
            src: &x,
            dst: &mut y,
        },
        &l,
        Affine {
            gamma: Some(&[2.0, 1.0]),
            beta: Some(&[0.0, -1.0]),
        },
        1e-5,
        &[1.0, 2.0],
        &[4.0, 0.25],
    )
    .unwrap();
    let s0 = 2.0 / (4.0f64 + 1e-5).sqrt();
    let s1 = 1.0 / (0.25f64 + 1e-5).sqrt();
    assert!((y[0] - (0.0 - 1.0) * s0).abs() < 1e-12);
    assert!((y[3] - ((3.0 - 2.0) * s1 - 1.0)).abs() < 1e-12);
    assert!((y[11] - ((11.0 - 2.0) * s1 - 1.0)).abs() < 1e-12);
}

/// Loss = sum(w * y) so that dy = w; the finite difference of the loss in x_k is dx_k.
fn loss(
    x: &[f64],
    w: &[f64],
    l: &Layout,
    gamma: &[f64],
    beta: &[f64],
    frozen: Option<(&[f64], &[f64])>,
) -> f64 {
    let mut y = vec![0.0; x.len()];
    let affine = Affine {
        gamma: Some(gamma),
        beta: Some(beta),
    };
    match frozen {
        None => {
            let (mut m, mut s) = (vec![0.0; l.channels], vec![0.0; l.channels]);
            train(
                Io::Separate {
                    src: x,
                    dst: &mut y,
                },
                l,
                affine,
                1e-3,
                None,
                SavedStats {
                    mean: &mut m,
                    inv_std: &mut s,
                },
            )
            .unwrap();
        }
        Some((rm, rv)) => eval(
            Io::Separate {
                src: x,
                dst: &mut y,
            },
            l,
            affine,
            1e-3,
            rm,
            rv,
        )
        .unwrap(),
    }
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
        for training in [true, false] {
            let (mut mean, mut inv_std) = (vec![0.0; l.channels], vec![0.0; l.channels]);
            if training {
                let mut y = vec![0.0; l.len()];
                train(
                    Io::Separate {
                        src: &x,
                        dst: &mut y,
                    },
                    &l,
                    Affine {
                        gamma: Some(&gamma),
                        beta: Some(&beta),
                    },
                    1e-3,
                    None,
                    SavedStats {
                        mean: &mut mean,
                        inv_std: &mut inv_std,
                    },
                )
                .unwrap();
            } else {
                mean.copy_from_slice(&rm);
                inv_std = rv.iter().map(|v| 1.0 / (v + 1e-3f64).sqrt()).collect();
            }
            let (mut dx, mut dg, mut db) = (
                vec![0.0; l.len()],
                vec![0.0; l.channels],
                vec![0.0; l.channels],
            );
            backward(
                Io::Separate {
                    src: &dy,
                    dst: &mut dx,
                },
                &x,
                &l,
                Some(&gamma),
                Saved {
                    mean: &mean,
                    inv_std: &inv_std,
                },
                training,
                ParamGrads {
                    d_gamma: &mut dg,
                    d_beta: &mut db,
                },
            )
            .unwrap();
            let frozen = if training {
                None
            } else {
                Some((&rm[..], &rv[..]))
            };
            let h = 1e-6;
            let what = format!("{shape:?} axis {axis} training {training}");
            let step = (l.len() / 7).max(1);
            for k in (0..l.len()).step_by(step) {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[k] += h;
                xm[k] -= h;
                let fd = (loss(&xp, &dy, &l, &gamma, &beta, frozen)
                    - loss(&xm, &dy, &l, &gamma, &beta, frozen))
                    / (2.0 * h);
                assert!(
                    (fd - dx[k]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{what} dx[{k}]: fd {fd}, got {}",
                    dx[k]
                );
            }
            for c in 0..l.channels {
                let (mut gp, mut gm) = (gamma.clone(), gamma.clone());
                gp[c] += h;
                gm[c] -= h;
                let fd = (loss(&x, &dy, &l, &gp, &beta, frozen)
                    - loss(&x, &dy, &l, &gm, &beta, frozen))
                    / (2.0 * h);
                assert!(
                    (fd - dg[c]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{what} dGamma[{c}]: fd {fd}, got {}",
                    dg[c]
                );
                let (mut bp, mut bm) = (beta.clone(), beta.clone());
                bp[c] += h;
                bm[c] -= h;
                let fd = (loss(&x, &dy, &l, &gamma, &bp, frozen)
                    - loss(&x, &dy, &l, &gamma, &bm, frozen))
                    / (2.0 * h);
                assert!(
                    (fd - db[c]).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{what} dBeta[{c}]"
                );
            }
            // dx in place over dy gives the same values.
            let mut dy_in_place = dy.clone();
            let (mut dg2, mut db2) = (vec![0.0; l.channels], vec![0.0; l.channels]);
            backward(
                Io::InPlace(&mut dy_in_place),
                &x,
                &l,
                Some(&gamma),
                Saved {
                    mean: &mean,
                    inv_std: &inv_std,
                },
                training,
                ParamGrads {
                    d_gamma: &mut dg2,
                    d_beta: &mut db2,
                },
            )
            .unwrap();
            assert_eq!(dy_in_place, dx, "{what}: in place");
        }
    }
}

#[test]
fn bad_arguments_are_errors_and_write_nothing() {
    let l = Layout::from_shape(&[2, 3], 1).unwrap();
    let x = [1.0f64; 6];
    let mut y = [7.0f64; 6];
    let (mut m, mut s) = ([0.0; 3], [0.0; 3]);
    let (mut rm, mut rv) = ([5.0; 3], [5.0; 3]);
    let bad_gamma = [1.0; 2];
    let err = train(
        Io::Separate {
            src: &x,
            dst: &mut y,
        },
        &l,
        Affine {
            gamma: Some(&bad_gamma),
            beta: None,
        },
        1e-5,
        Some(RunningStats {
            mean: &mut rm,
            var: &mut rv,
            momentum: 0.1,
        }),
        SavedStats {
            mean: &mut m,
            inv_std: &mut s,
        },
    )
    .unwrap_err();
    assert!(err.message.contains("gamma"), "{}", err.message);
    let err = train(
        Io::Separate {
            src: &x,
            dst: &mut y,
        },
        &l,
        Affine {
            gamma: None,
            beta: None,
        },
        1e-5,
        Some(RunningStats {
            mean: &mut rm,
            var: &mut rv,
            momentum: 1.5,
        }),
        SavedStats {
            mean: &mut m,
            inv_std: &mut s,
        },
    )
    .unwrap_err();
    assert!(err.message.contains("momentum"));
    let one = Layout::from_shape(&[1, 3], 1).unwrap();
    let err = train(
        Io::Separate {
            src: &x[..3],
            dst: &mut y[..3],
        },
        &one,
        Affine {
            gamma: None,
            beta: None,
        },
        1e-5,
        None,
        SavedStats {
            mean: &mut m,
            inv_std: &mut s,
        },
    )
    .unwrap_err();
    assert!(err.message.contains("more than 1 value per channel"));
    let err = eval(
        Io::Separate {
            src: &x,
            dst: &mut y,
        },
        &l,
        Affine {
            gamma: None,
            beta: None,
        },
        0.0,
        &rm,
        &rv,
    )
    .unwrap_err();
    assert!(err.message.contains("eps"));
    assert_eq!(y, [7.0; 6]);
    assert_eq!(rm, [5.0; 3]);
    assert_eq!(rv, [5.0; 3]);
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let mut rng = Rng(11);
    let l = Layout::from_shape(&[16, 8, 40, 40], 1).unwrap();
    let x = rng.vec(l.len(), 0.0, 1.0);
    let run = |threads| {
        batchnorm_core::set_num_threads(threads).unwrap();
        let (mut y, mut m, mut s) = (vec![0.0; l.len()], vec![0.0; 8], vec![0.0; 8]);
        train(
            Io::Separate {
                src: &x,
                dst: &mut y,
            },
            &l,
            Affine {
                gamma: None,
                beta: None,
            },
            1e-5,
            None,
            SavedStats {
                mean: &mut m,
                inv_std: &mut s,
            },
        )
        .unwrap();
        (y, m, s)
    };
    let one = run(1);
    let four = run(4);
    assert_eq!(one, four);
    assert_eq!(batchnorm_core::num_threads(), 4);
    assert!(batchnorm_core::set_num_threads(0).is_err());
}
