//! The SIMD RoPE kernel against the Reference backend (the portable kernel): both layouts,
//! partial rotary, in place and out of place, offset and explicit positions (past 2^20 and 2^24),
//! head-major, token-major and strided storage, every element type, and bad inputs (same `Err`).
//! The SIMD kernel does the portable arithmetic (f64 angles, separate roundings), so results
//! must be identical, bit for bit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    missing_docs
)]

use proptest::prelude::*;
use seq_accel_simd::Simd;
use seqcore::portable::rope::{RopeLayout, RopePositions};
use seqcore::{Backend, Element, Error, Layout, Reference, View, ViewMut, bf16, f16};

#[derive(Clone, Debug)]
struct Case {
    shape: [usize; 4],
    pairs: usize,
    interleaved: bool,
    in_place: bool,
    /// 0 head-major, 1 token-major `[B, L, H, D]`, 2 feature stride 2.
    storage: u8,
    start: u64,
    ids: Option<Vec<u32>>,
    factor: f64,
    x: Vec<f64>,
}

fn layout(shape: [usize; 4], storage: u8) -> (usize, Layout) {
    let [b, h, l, d] = shape;
    match storage {
        1 => (
            b * h * l * d,
            Layout::contiguous(&[b, l, h, d])
                .unwrap()
                .transpose(1, 2)
                .unwrap(),
        ),
        2 => (
            2 * b * h * l * d,
            Layout::new(0, &shape, &[2 * h * l * d, 2 * l * d, 2 * d, 2]).unwrap(),
        ),
        _ => (b * h * l * d, Layout::contiguous(&shape).unwrap()),
    }
}

/// Runs the case on `backend` at `T`; the whole of `y`'s memory, as bits-comparable f64.
fn run<B, T>(backend: &B, c: &Case) -> Result<Vec<f64>, Error>
where
    B: Backend<Mem<T> = [T]> + Backend<Mem<u32> = [u32]>,
    T: Element,
{
    let (n, l) = layout(c.shape, c.storage);
    let mut xm = vec![T::from_f64(f64::NAN); n];
    for (i, off) in l.offsets().enumerate() {
        xm[off] = T::from_f64(c.x[i]);
    }
    let inv: Vec<f64> = (0..c.pairs)
        .map(|i| 10000f64.powf(-2.0 * i as f64 / (2 * c.pairs.max(1)) as f64))
        .collect();
    let lay = if c.interleaved {
        RopeLayout::Interleaved
    } else {
        RopeLayout::Half
    };
    let ids_layout = c.ids.as_ref().map(|ids| {
        if ids.len() == c.shape[2] {
            Layout::contiguous(&[c.shape[2]]).unwrap()
        } else {
            Layout::contiguous(&[c.shape[0], c.shape[2]]).unwrap()
        }
    });
    let positions = match (&c.ids, ids_layout) {
        (Some(ids), Some(il)) => RopePositions::<B>::Ids(View::<B, u32>::new(ids.as_slice(), il)?),
        _ => RopePositions::<B>::Offset(c.start),
    };
    if c.in_place {
        backend.rope(
            lay,
            &inv,
            c.factor,
            positions,
            None,
            ViewMut::<B, T>::new(xm.as_mut_slice(), l)?,
        )?;
        return Ok(xm.iter().map(|x| x.to_f64()).collect());
    }
    let mut ym = vec![T::from_f64(-3.0); n];
    backend.rope(
        lay,
        &inv,
        c.factor,
        positions,
        Some(View::<B, T>::new(xm.as_slice(), l)?),
        ViewMut::<B, T>::new(ym.as_mut_slice(), l)?,
    )?;
    Ok(ym.iter().map(|x| x.to_f64()).collect())
}

fn same<T: Element>(c: &Case) -> Result<(), TestCaseError>
where
    Simd: Backend<Mem<T> = [T]> + Backend<Mem<u32> = [u32]>,
{
    let Ok(s) = Simd::new() else { return Ok(()) };
    let want = run::<Reference, T>(&Reference, c);
    let got = run::<Simd, T>(&s, c);
    match (got, want) {
        (Ok(g), Ok(w)) => {
            prop_assert_eq!(g.len(), w.len());
            for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                prop_assert!(
                    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                    "y[{}]: simd {} reference {}",
                    i,
                    a,
                    b
                );
            }
        }
        (g, w) => prop_assert_eq!(g.err(), w.err()),
    }
    Ok(())
}

prop_compose! {
    fn case()(
        b in 1usize..3,
        h in 1usize..4,
        l in 0usize..12,
        half_d in 0usize..40,
        rot in 0usize..=100,
    )(
        x in proptest::collection::vec(-4.0f64..4.0, b * h * l * 2 * half_d),
        ids in proptest::collection::vec(prop::sample::select(vec![0u32, 1, 7, 1 << 20, (1 << 20) + 1, 1 << 24, (1 << 24) + 3, u32::MAX]), b * l),
        use_ids in 0u8..3,
        start in prop::sample::select(vec![0u64, 5, (1 << 20) - 1, 1 << 24, (1 << 24) + 1, 1 << 40]),
        interleaved in any::<bool>(),
        in_place in any::<bool>(),
        storage in 0u8..3,
        factor in prop::sample::select(vec![1.0f64, 0.7, 1.3]),
        b in Just(b), h in Just(h), l in Just(l), half_d in Just(half_d), rot in Just(rot),
    ) -> Case {
        let ids = match use_ids {
            0 => None,
            1 => Some(ids[..l].to_vec()),
            _ => Some(ids),
        };
        Case {
            shape: [b, h, l, 2 * half_d],
            pairs: half_d * rot / 100,
            interleaved, in_place, storage, start, ids, factor, x,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn f32_identical(c in case()) { same::<f32>(&c)?; }

    #[test]
    fn f64_identical(c in case()) { same::<f64>(&c)?; }

    #[test]
    fn f16_identical(c in case()) { same::<f16>(&c)?; }

    #[test]
    fn bf16_identical(c in case()) { same::<bf16>(&c)?; }
}

fn plain(shape: [usize; 4], pairs: usize) -> Case {
    let n: usize = shape.iter().product();
    Case {
        shape,
        pairs,
        interleaved: false,
        in_place: false,
        storage: 0,
        start: 0,
        ids: None,
        factor: 1.0,
        x: (0..n)
            .map(|i| ((i * 37 % 101) as f64 - 50.0) / 20.0)
            .collect(),
    }
}

#[test]
fn every_pair_count_around_the_lanes_and_the_table() {
    for pairs in (0..=3 * 16 + 1).chain([63, 64, 65, 129]) {
        for interleaved in [false, true] {
            for in_place in [false, true] {
                let mut c = plain([1, 2, 3, 2 * pairs + 2], pairs);
                c.interleaved = interleaved;
                c.in_place = in_place;
                c.start = (1 << 24) + 5;
                same::<f32>(&c).unwrap();
                same::<f64>(&c).unwrap();
                same::<f16>(&c).unwrap();
            }
        }
    }
}

#[test]
fn bad_inputs_give_the_same_error() {
    let Ok(s) = Simd::new() else { return };
    let x = [0.0f32; 2 * 3 * 8];
    let mut y = [0.0f32; 2 * 3 * 8];
    let l = Layout::contiguous(&[1, 2, 3, 8]).unwrap();
    let l3 = Layout::contiguous(&[2, 3, 8]).unwrap();
    let lx = Layout::contiguous(&[1, 2, 3, 4]).unwrap();
    let ids = [1u32, 2];
    let cases: Vec<(Vec<f64>, f64, bool, bool, bool, u64)> = vec![
        (vec![1.0; 5], 1.0, false, false, false, 0), // more than D/2 frequencies
        (vec![f64::NAN], 1.0, false, false, false, 0),
        (vec![1.0], f64::INFINITY, false, false, false, 0),
        (vec![1.0], 1.0, true, false, false, 0), // y of rank 3
        (vec![1.0], 1.0, false, true, false, 0), // x of another shape
        (vec![1.0], 1.0, false, false, true, 0), // positions of the wrong length
        (vec![1.0], 1.0, false, false, false, u64::MAX - 1), // start + L overflows
    ];
    for (inv, factor, rank3, xshape, badids, start) in cases {
        let xl = Some(if xshape { lx } else { l });
        let yl = if rank3 { l3 } else { l };
        let xv = xl.map(|xl| &x[..xl.numel()]);
        let r = Reference.rope(
            RopeLayout::Half,
            &inv,
            factor,
            if badids {
                RopePositions::Ids(View::new(&ids[..], Layout::contiguous(&[2]).unwrap()).unwrap())
            } else {
                RopePositions::Offset(start)
            },
            xv.zip(xl).map(|(m, l)| View::new(m, l).unwrap()),
            ViewMut::new(&mut y[..yl.numel()], yl).unwrap(),
        );
        let g = s.rope(
            RopeLayout::Half,
            &inv,
            factor,
            if badids {
                RopePositions::Ids(View::new(&ids[..], Layout::contiguous(&[2]).unwrap()).unwrap())
            } else {
                RopePositions::Offset(start)
            },
            xv.zip(xl).map(|(m, l)| View::new(m, l).unwrap()),
            ViewMut::new(&mut y[..yl.numel()], yl).unwrap(),
        );
        assert!(
            r.is_err(),
            "{inv:?} {factor} {rank3} {xshape} {badids} {start}"
        );
        assert_eq!(g, r);
    }
}
