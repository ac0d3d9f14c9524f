//! `gemm` on the GPU through both paths, cuBLAS and the crate's kernel, against the reference in
//! every element type, over the layouts cuBLAS takes (row- and column-major operands, batch
//! broadcast with stride 0, offsets) and one it does not. Skips without a GPU.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_precision_loss
)]

mod support;

use seq_accel_cuda::CudaBackend;
use seqcore::{Backend, DType, Element, Layout, Reference, View, ViewMut, bf16, f16};
use support::{down, gpu, up};

/// Deterministic values in [-2, 2), exact in every element type (multiples of 1/16).
fn vals(n: usize, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 64) as f64 / 16.0 - 2.0)
        .collect()
}

/// A layout of `shape` over storage of `numel + offset` elements: row-major, or stored with
/// its last two axes swapped (a transposed view).
fn layout(shape: [usize; 3], transposed: bool, offset: usize) -> Layout {
    let [bt, r, c] = shape;
    let l = if transposed {
        Layout::contiguous(&[bt, c, r])
            .unwrap()
            .transpose(1, 2)
            .unwrap()
    } else {
        Layout::contiguous(&[bt, r, c]).unwrap()
    };
    Layout::new(offset, l.shape(), l.strides()).unwrap()
}

struct Case {
    bt: usize,
    m: usize,
    n: usize,
    k: usize,
    at: bool,
    bt_t: bool,
    ct: bool,
    /// `b` shared by every batch entry (batch stride 0).
    b_broadcast: bool,
    alpha: f64,
    beta: f64,
}

fn run<T: Element>(g: &CudaBackend, c: &Case) {
    let (bt, m, n, k) = (c.bt, c.m, c.n, c.k);
    let la = layout([bt, m, k], c.at, 3);
    let lb = if c.b_broadcast {
        let one = layout([1, k, n], c.bt_t, 5);
        let s = one.strides();
        Layout::new(one.offset(), &[bt, k, n], &[0, s[1], s[2]]).unwrap()
    } else {
        layout([bt, k, n], c.bt_t, 5)
    };
    let lc = layout([bt, m, n], c.ct, 1);
    let cast = |v: Vec<f64>| -> Vec<T> { v.into_iter().map(T::from_f64).collect() };
    let a = cast(vals(bt * m * k + 3, 1));
    let b = cast(vals(
        if c.b_broadcast {
            k * n + 5
        } else {
            bt * k * n + 5
        },
        2,
    ));
    // `beta = 0` must not read `c`: fill it with NaN then.
    let c0: Vec<T> = if c.beta == 0.0 {
        vec![T::from_f64(f64::NAN); bt * m * n + 1]
    } else {
        cast(vals(bt * m * n + 1, 3))
    };
    let mut want = c0.clone();
    let r = Reference;
    r.gemm(
        c.alpha,
        View::new(a.as_slice(), la).unwrap(),
        View::new(b.as_slice(), lb).unwrap(),
        c.beta,
        ViewMut::new(want.as_mut_slice(), lc).unwrap(),
    )
    .unwrap();
    let (ad, bd) = (up(g, &a), up(g, &b));
    for cublas in [true, false] {
        g.use_cublas(cublas);
        let mut cd = up(g, &c0);
        g.gemm(
            c.alpha,
            View::new(&ad, la).unwrap(),
            View::new(&bd, lb).unwrap(),
            c.beta,
            ViewMut::new(&mut cd, lc).unwrap(),
        )
        .unwrap();
        let got = down(g, &cd);
        // |a|, |b| <= 2: the two sums of k products differ by at most 2 k eps_acc (4 k) (each
        // is within k eps_acc of the exact one); the results then round to T, which may land
        // on the two sides of a rounding boundary: one unit in the last place of T, eps_T |w|.
        let (eps_acc, eps_t) = match T::DTYPE {
            DType::F64 => (f64::EPSILON, f64::EPSILON),
            DType::F32 => (f64::from(f32::EPSILON), f64::from(f32::EPSILON)),
            DType::F16 => (f64::from(f32::EPSILON), 2f64.powi(-10)),
            _ => (f64::from(f32::EPSILON), 2f64.powi(-7)),
        };
        for (idx, (x, w)) in got.iter().zip(&want).enumerate() {
            let (x, w) = (x.to_f64(), w.to_f64());
            let bound = 2.0 * k as f64 * eps_acc * 4.0 * k as f64 * c.alpha.abs() + eps_t * w.abs();
            assert!(
                (x - w).abs() <= bound || (x.is_nan() && w.is_nan()),
                "{} cublas={cublas} bt={bt} m={m} n={n} k={k} at={} bt_t={} ct={} bcast={} alpha={} beta={}: [{idx}] {x} vs {w}",
                T::NAME,
                c.at,
                c.bt_t,
                c.ct,
                c.b_broadcast,
                c.alpha,
                c.beta
            );
        }
    }
    g.use_cublas(true);
}

#[test]
fn gemm_on_cublas_and_on_the_kernel_match_the_reference() {
    let Some(g) = gpu() else { return };
    println!("cuBLAS loaded: {}", g.has_cublas());
    let mut cases = Vec::new();
    for (bt, m, n, k) in [
        (1, 1, 1, 1),
        (1, 70, 65, 33),
        (3, 17, 129, 64),
        (2, 64, 1, 200),
        (1, 1, 96, 7),
    ] {
        for flags in 0..16u32 {
            let bit = |i: u32| flags & (1 << i) != 0;
            cases.push(Case {
                bt,
                m,
                n,
                k,
                at: bit(0),
                bt_t: bit(1),
                ct: bit(2),
                b_broadcast: bit(3),
                alpha: if bit(0) ^ bit(2) { 0.5 } else { 1.0 },
                beta: if bit(1) { 2.0 } else { 0.0 },
            });
        }
    }
    // alpha = 0 (the crate's kernel: NaN of `a` reaches `c` as in the reference) and k = 0.
    cases.push(Case {
        bt: 2,
        m: 5,
        n: 6,
        k: 4,
        at: false,
        bt_t: false,
        ct: false,
        b_broadcast: false,
        alpha: 0.0,
        beta: 2.0,
    });
    cases.push(Case {
        bt: 2,
        m: 5,
        n: 6,
        k: 0,
        at: false,
        bt_t: false,
        ct: false,
        b_broadcast: false,
        alpha: 1.0,
        beta: 2.0,
    });
    for c in &cases {
        run::<f64>(g, c);
        run::<f32>(g, c);
        run::<f16>(g, c);
        run::<bf16>(g, c);
    }
}
