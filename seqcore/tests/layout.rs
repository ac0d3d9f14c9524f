//! Layout arithmetic and view construction.

// Helpers of a test crate unwrap and index as freely as the tests themselves (clippy.toml
// allows it inside `#[test]` functions only).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use proptest::prelude::*;
use proptest::test_runner::Config;
use seqcore::{Backend, Dims, Error, Layout, MAX_RANK, Reference, View, ViewMut};

type V<'a> = View<'a, Reference, f32>;
type VM<'a> = ViewMut<'a, Reference, f32>;

fn l(offset: usize, shape: &[usize], strides: &[usize]) -> Layout {
    Layout::new(offset, shape, strides).unwrap()
}

fn c(shape: &[usize]) -> Layout {
    Layout::contiguous(shape).unwrap()
}

fn parts(x: &Layout) -> (usize, Vec<usize>, Vec<usize>) {
    (x.offset(), x.shape().to_vec(), x.strides().to_vec())
}

fn addrs(x: &Layout) -> Vec<usize> {
    x.offsets().collect()
}

/// The addresses `offset + sum_k i_k stride_k` in row-major order of the indices, by plain
/// nested iteration over the multi-indices (computed in u128 so nothing can wrap).
fn naive(offset: usize, shape: &[usize], strides: &[usize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        let a: u128 = u128::try_from(offset).unwrap()
            + idx
                .iter()
                .zip(strides)
                .map(|(&i, &s)| u128::try_from(i * s).unwrap())
                .sum::<u128>();
        out.push(usize::try_from(a).unwrap());
        // Increment the multi-index, last axis fastest.
        for ax in (0..shape.len()).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

#[test]
fn contiguous_strides() {
    assert_eq!(parts(&c(&[2, 3, 4])), (0, vec![2, 3, 4], vec![12, 4, 1]));
    assert_eq!(parts(&c(&[5])), (0, vec![5], vec![1]));
    assert_eq!(parts(&c(&[])), (0, vec![], vec![]));
    // Empty layouts keep their shape; their strides are zero (they address nothing).
    assert_eq!(parts(&c(&[0, 3])), (0, vec![0, 3], vec![0, 0]));
    assert_eq!(parts(&c(&[3, 0, 2])), (0, vec![3, 0, 2], vec![0, 0, 0]));
    assert_eq!(
        parts(&c(&[1, 2, 1, 3, 1, 2])),
        (0, vec![1, 2, 1, 3, 1, 2], vec![12, 6, 6, 2, 2, 1])
    );
    let at = Layout::contiguous_at(7, &[2, 3]).unwrap();
    assert_eq!(parts(&at), (7, vec![2, 3], vec![3, 1]));
    assert_eq!(at.end(), 13);
    assert_eq!(at.rank(), 2);
    assert_eq!(at.dims(), Dims::new(&[2, 3]));
    assert_eq!(at.dims().as_slice(), &[2, 3]);
    assert_eq!(at.extent(1), Ok(3));
    assert_eq!(
        at.extent(2),
        Err(Error::Axis {
            arg: "axis",
            axis: 2,
            rank: 2
        })
    );
    assert!(at.is_contiguous());
    assert_eq!(addrs(&at), (7..13).collect::<Vec<_>>());
}

#[test]
fn rank_limits() {
    let seven = [1usize; MAX_RANK + 1];
    let rank_err = Error::Rank {
        arg: "shape",
        got: MAX_RANK + 1,
        min: 0,
        max: MAX_RANK,
    };
    assert_eq!(Layout::contiguous(&seven), Err(rank_err));
    assert_eq!(Layout::contiguous_at(3, &seven), Err(rank_err));
    assert_eq!(Layout::new(0, &seven, &seven), Err(rank_err));
    assert!(Layout::contiguous(&[1; MAX_RANK]).is_ok());
    assert_eq!(
        Layout::new(0, &[2, 3], &[3]),
        Err(Error::Rank {
            arg: "strides",
            got: 1,
            min: 2,
            max: 2
        })
    );
    assert_eq!(
        Layout::new(0, &[], &[1]),
        Err(Error::Rank {
            arg: "strides",
            got: 1,
            min: 0,
            max: 0
        })
    );
    assert!(matches!(
        Layout::new(0, &[2], &[1, 1]),
        Err(Error::Rank { arg: "strides", .. })
    ));
}

#[test]
fn overflow_is_an_error() {
    let ovf = |r: Result<Layout, Error>| matches!(r, Err(Error::Overflow { .. }));
    let m = usize::MAX;
    // Element counts.
    assert!(ovf(Layout::contiguous(&[m, 2])));
    assert!(ovf(Layout::contiguous(&[1 << 32, 1 << 32])));
    assert!(ovf(Layout::contiguous(&[2, 2, m / 3])));
    assert!(ovf(Layout::new(0, &[m, 2], &[0, 0])));
    // Reach.
    assert!(ovf(Layout::new(0, &[2], &[m])));
    assert!(ovf(Layout::new(0, &[3], &[m / 2 + 1])));
    assert!(ovf(Layout::new(0, &[m, m], &[1, 1])));
    assert!(ovf(Layout::new(0, &[2, 2, 2], &[m / 2, m / 2, m / 2])));
    // Offset.
    assert!(ovf(Layout::new(m, &[], &[])));
    assert!(ovf(Layout::new(m, &[1], &[5])));
    assert!(ovf(Layout::new(1, &[m], &[1])));
    assert!(ovf(Layout::contiguous_at(m, &[2])));
    assert!(ovf(Layout::contiguous_at(m - 1, &[2])));
    // Right at the edge: the last address is usize::MAX - 1.
    assert_eq!(Layout::new(m - 1, &[], &[]).unwrap().end(), m);
    assert_eq!(Layout::new(0, &[m], &[1]).unwrap().end(), m);
    assert_eq!(Layout::new(0, &[2], &[m - 1]).unwrap().end(), m);
    assert_eq!(Layout::new(0, &[m], &[0]).unwrap().end(), 1);
    assert_eq!(Layout::new(0, &[m], &[0]).unwrap().numel(), m);
    // Empty layouts reach nothing, whatever their strides or offset.
    assert_eq!(Layout::new(m, &[0], &[m]).unwrap().end(), 0);
    assert_eq!(Layout::new(0, &[0, m], &[m, m]).unwrap().end(), 0);
    assert_eq!(Layout::new(0, &[m, m, 0], &[m, m, m]).unwrap().numel(), 0);
    // Cuts and broadcasts that would overflow.
    assert!(ovf(c(&[1]).expand(&[m, 2])));
    assert!(ovf(c(&[]).expand(&[1 << 33, 1 << 33])));
    assert!(ovf(c(&[4]).reshape(&[m, 2, 2])));
    assert!(ovf(c(&[4]).reshape(&[m / 2 + 1, 2])));
    assert!(matches!(
        c(&[3]).narrow(0, m, 2),
        Err(Error::Index {
            end: usize::MAX,
            len: 3,
            ..
        })
    ));
    // The layout never panics on any of these.
    for shape in [[m, m], [m, 0], [0, m], [1, m], [m, 1]] {
        for strides in [[m, m], [0, 0], [1, m], [m, 1], [0, 1]] {
            for off in [0, 1, m - 1, m] {
                let _ = Layout::new(off, &shape, &strides);
                let _ = Layout::contiguous_at(off, &shape);
            }
        }
    }
}

#[test]
fn end_and_numel() {
    let scalar = c(&[]);
    assert_eq!((scalar.numel(), scalar.end(), scalar.rank()), (1, 1, 0));
    assert_eq!(addrs(&scalar), [0]);
    let s7 = Layout::contiguous_at(7, &[]).unwrap();
    assert_eq!((s7.numel(), s7.end()), (1, 8));
    assert_eq!(addrs(&s7), [7]);
    for shape in [&[0][..], &[3, 0, 2], &[0, 0], &[1, 0]] {
        let e = Layout::contiguous_at(5, shape).unwrap();
        assert_eq!((e.numel(), e.end()), (0, 0), "{shape:?}");
        assert!(addrs(&e).is_empty());
        assert_eq!(e.offsets().len(), 0);
    }
    let x = l(7, &[2, 3], &[10, 1]);
    assert_eq!((x.numel(), x.end()), (6, 7 + 10 + 2 + 1));
    let b = l(3, &[4, 5], &[0, 0]);
    assert_eq!((b.numel(), b.end()), (20, 4));
    assert_eq!(l(0, &[1], &[1_000_000]).end(), 1);
}

#[test]
fn select_and_narrow() {
    let x = c(&[2, 3, 4]);
    assert_eq!(
        parts(&x.select(1, 2).unwrap()),
        (8, vec![2, 4], vec![12, 1])
    );
    assert_eq!(
        parts(&x.select(0, 1).unwrap()),
        (12, vec![3, 4], vec![4, 1])
    );
    assert_eq!(
        parts(&x.select(2, 3).unwrap()),
        (3, vec![2, 3], vec![12, 4])
    );
    let s = x
        .select(0, 1)
        .unwrap()
        .select(0, 2)
        .unwrap()
        .select(0, 3)
        .unwrap();
    assert_eq!(parts(&s), (23, vec![], vec![]));
    assert_eq!(addrs(&s), [23]);
    assert_eq!(
        x.select(3, 0),
        Err(Error::Axis {
            arg: "axis",
            axis: 3,
            rank: 3
        })
    );
    assert_eq!(
        x.select(1, 3),
        Err(Error::Index {
            arg: "start",
            end: 4,
            len: 3
        })
    );
    assert_eq!(
        x.select(1, usize::MAX),
        Err(Error::Index {
            arg: "start",
            end: usize::MAX,
            len: 3
        }),
        "an index far past the extent is an Index error"
    );
    assert!(c(&[]).select(0, 0).is_err());

    assert_eq!(
        parts(&x.narrow(2, 1, 2).unwrap()),
        (1, vec![2, 3, 2], vec![12, 4, 1])
    );
    assert_eq!(
        parts(&x.narrow(0, 1, 1).unwrap()),
        (12, vec![1, 3, 4], vec![12, 4, 1])
    );
    let empty = x.narrow(1, 3, 0).unwrap();
    assert_eq!(empty.shape(), &[2, 0, 4]);
    assert_eq!((empty.numel(), empty.end()), (0, 0));
    assert_eq!(x.narrow(1, 0, 3).unwrap(), x);
    assert_eq!(
        x.narrow(1, 2, 2),
        Err(Error::Index {
            arg: "start",
            end: 4,
            len: 3
        })
    );
    assert!(matches!(x.narrow(1, 4, 0), Err(Error::Index { .. })));
    assert!(matches!(x.narrow(5, 0, 0), Err(Error::Axis { .. })));
    assert!(x.narrow(1, usize::MAX, usize::MAX).is_err());
    // A narrowed chunk visits the right addresses.
    let n = x.narrow(1, 1, 2).unwrap().select(0, 1).unwrap();
    assert_eq!(addrs(&n), (16..24).collect::<Vec<_>>());
}

#[test]
fn transpose_and_permute() {
    let x = c(&[2, 3, 4]);
    assert_eq!(
        parts(&x.transpose(0, 2).unwrap()),
        (0, vec![4, 3, 2], vec![1, 4, 12])
    );
    assert_eq!(x.transpose(1, 1).unwrap(), x);
    assert_eq!(x.transpose(0, 1).unwrap().transpose(0, 1).unwrap(), x);
    assert!(matches!(
        x.transpose(0, 3),
        Err(Error::Axis {
            arg: "b",
            axis: 3,
            rank: 3
        })
    ));
    assert!(matches!(
        x.transpose(9, 0),
        Err(Error::Axis {
            arg: "a",
            axis: 9,
            rank: 3
        })
    ));
    let t = c(&[2, 3]).transpose(0, 1).unwrap();
    assert_eq!(addrs(&t), [0, 3, 1, 4, 2, 5]);

    assert_eq!(
        parts(&x.permute(&[2, 0, 1]).unwrap()),
        (0, vec![4, 2, 3], vec![1, 12, 4])
    );
    assert_eq!(x.permute(&[0, 1, 2]).unwrap(), x);
    assert_eq!(x.permute(&[2, 1, 0]).unwrap(), x.transpose(0, 2).unwrap());
    assert!(matches!(
        x.permute(&[0, 0, 1]),
        Err(Error::Param { arg: "order", .. })
    ));
    assert!(matches!(
        x.permute(&[0, 1, 3]),
        Err(Error::Param { arg: "order", .. })
    ));
    assert!(matches!(
        x.permute(&[0, 1, usize::MAX]),
        Err(Error::Param { arg: "order", .. })
    ));
    assert_eq!(
        x.permute(&[0, 1]),
        Err(Error::Rank {
            arg: "order",
            got: 2,
            min: 3,
            max: 3
        })
    );
    assert!(x.permute(&[0, 1, 2, 3, 4, 5, 6, 7]).is_err());
    assert_eq!(c(&[]).permute(&[]).unwrap(), c(&[]));
}

#[test]
fn unsqueeze_and_expand() {
    let x = c(&[2, 3]);
    assert_eq!(
        parts(&x.unsqueeze(0).unwrap()),
        (0, vec![1, 2, 3], vec![0, 3, 1])
    );
    assert_eq!(
        parts(&x.unsqueeze(1).unwrap()),
        (0, vec![2, 1, 3], vec![3, 0, 1])
    );
    assert_eq!(
        parts(&x.unsqueeze(2).unwrap()),
        (0, vec![2, 3, 1], vec![3, 1, 0])
    );
    assert!(x.unsqueeze(0).unwrap().is_contiguous());
    assert_eq!(addrs(&x.unsqueeze(1).unwrap()), addrs(&x));
    assert_eq!(
        x.unsqueeze(3),
        Err(Error::Axis {
            arg: "axis",
            axis: 3,
            rank: 2
        })
    );
    assert!(matches!(
        c(&[1; MAX_RANK]).unsqueeze(0),
        Err(Error::Rank { got: 7, .. })
    ));
    assert_eq!(parts(&c(&[]).unsqueeze(0).unwrap()), (0, vec![1], vec![0]));

    // Broadcast a column [3, 1] to [2, 3, 4].
    let col = l(5, &[3, 1], &[1, 1]);
    let e = col.expand(&[2, 3, 4]).unwrap();
    assert_eq!(parts(&e), (5, vec![2, 3, 4], vec![0, 1, 0]));
    assert_eq!(e.end(), 8);
    assert!(!e.is_non_overlapping());
    assert_eq!(
        addrs(&e.select(0, 1).unwrap()),
        [5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7]
    );
    assert_eq!(col.expand(&[3, 1]).unwrap(), col);
    assert_eq!(
        parts(&col.expand(&[3, 0]).unwrap()),
        (0, vec![3, 0], vec![0, 0])
    );
    assert_eq!(
        col.expand(&[4, 1]),
        Err(Error::Shape {
            arg: "shape",
            axis: 0,
            got: 4,
            expected: 3,
            shape: Dims::new(&[3, 1])
        })
    );
    assert!(matches!(
        col.expand(&[2, 4, 1]),
        Err(Error::Shape { axis: 1, .. })
    ));
    assert_eq!(
        col.expand(&[3]),
        Err(Error::Rank {
            arg: "shape",
            got: 1,
            min: 2,
            max: MAX_RANK
        })
    );
    assert!(matches!(
        col.expand(&[1; MAX_RANK + 1]),
        Err(Error::Rank { got: 7, .. })
    ));
    // A scalar broadcast anywhere.
    let s = Layout::contiguous_at(9, &[])
        .unwrap()
        .expand(&[2, 2])
        .unwrap();
    assert_eq!(parts(&s), (9, vec![2, 2], vec![0, 0]));
    assert_eq!(addrs(&s), [9, 9, 9, 9]);
}

#[test]
fn reshape() {
    let x = Layout::contiguous_at(4, &[2, 3, 4]).unwrap();
    assert_eq!(
        parts(&x.reshape(&[6, 4]).unwrap()),
        (4, vec![6, 4], vec![4, 1])
    );
    assert_eq!(parts(&x.reshape(&[24]).unwrap()), (4, vec![24], vec![1]));
    assert_eq!(
        parts(&x.reshape(&[1, 24, 1]).unwrap()),
        (4, vec![1, 24, 1], vec![24, 1, 1])
    );
    assert_eq!(addrs(&x.reshape(&[4, 6]).unwrap()), addrs(&x));
    assert!(matches!(
        x.transpose(0, 1).unwrap().reshape(&[24]),
        Err(Error::Param { arg: "layout", .. })
    ));
    assert!(matches!(
        x.narrow(2, 0, 2).unwrap().reshape(&[12]),
        Err(Error::Param { .. })
    ));
    assert_eq!(
        x.reshape(&[5, 5]),
        Err(Error::Shape {
            arg: "shape",
            axis: 0,
            got: 25,
            expected: 24,
            shape: Dims::new(&[5, 5])
        })
    );
    assert!(matches!(x.reshape(&[1; 7]), Err(Error::Rank { .. })));
    assert_eq!(c(&[]).reshape(&[1, 1]).unwrap().shape(), &[1, 1]);
    assert_eq!(c(&[0, 3]).reshape(&[3, 0]).unwrap().numel(), 0);
    // A row of a contiguous matrix is contiguous and may be reshaped.
    let row = c(&[4, 6]).select(0, 2).unwrap();
    assert_eq!(
        parts(&row.reshape(&[2, 3]).unwrap()),
        (12, vec![2, 3], vec![3, 1])
    );
}

#[test]
fn split_last() {
    let x = l(2, &[2, 3, 4], &[20, 5, 1]);
    let (rows, len, stride) = x.split_last();
    assert_eq!(parts(&rows), (2, vec![2, 3], vec![20, 5]));
    assert_eq!((len, stride), (4, 1));
    let t = c(&[3, 4]).transpose(0, 1).unwrap();
    let (rows, len, stride) = t.split_last();
    assert_eq!((parts(&rows), len, stride), ((0, vec![4], vec![1]), 3, 4));
    let (rows, len, stride) = Layout::contiguous_at(3, &[]).unwrap().split_last();
    assert_eq!((parts(&rows), len, stride), ((3, vec![], vec![]), 1, 0));
    let (rows, len, stride) = c(&[5]).split_last();
    assert_eq!((parts(&rows), len, stride), ((0, vec![], vec![]), 5, 1));
    let (rows, len, _) = c(&[0, 5]).split_last();
    assert_eq!((rows.numel(), len), (0, 5));
    let (rows, len, _) = c(&[5, 0]).split_last();
    assert_eq!((rows.numel(), len), (5, 0));
}

#[test]
fn contiguity_and_overlap() {
    let x = c(&[2, 3, 4]);
    assert!(x.is_contiguous() && x.is_non_overlapping());
    // A transposed contiguous layout is not contiguous but does not overlap.
    let t = x.transpose(0, 2).unwrap();
    assert!(!t.is_contiguous());
    assert!(t.is_non_overlapping());
    assert!(x.permute(&[1, 2, 0]).unwrap().is_non_overlapping());
    // Size-1 axes may have any stride.
    assert!(l(0, &[1, 3], &[99, 1]).is_contiguous());
    assert!(l(0, &[3, 1], &[1, 7]).is_contiguous());
    assert!(l(0, &[1, 3], &[0, 1]).is_non_overlapping());
    assert!(l(0, &[3, 1], &[1, 0]).is_non_overlapping());
    assert!(l(0, &[1, 1, 1], &[0, 0, 0]).is_non_overlapping());
    assert!(l(4, &[], &[]).is_contiguous());
    assert!(l(4, &[], &[]).is_non_overlapping());
    // Zero strides on a real axis overlap.
    assert!(!l(0, &[3], &[0]).is_non_overlapping());
    assert!(!l(0, &[2, 3], &[0, 1]).is_non_overlapping());
    assert!(!l(0, &[2, 3], &[3, 0]).is_non_overlapping());
    // Overlapping strides: [2, 2] with strides [1, 1] hits address 1 twice.
    assert!(!l(0, &[2, 2], &[1, 1]).is_non_overlapping());
    assert!(!l(0, &[2, 3], &[2, 1]).is_non_overlapping());
    assert!(!l(0, &[3, 3], &[1, 2]).is_non_overlapping());
    // Gaps are fine.
    assert!(l(0, &[2, 3], &[10, 2]).is_non_overlapping());
    assert!(!l(0, &[2, 3], &[10, 2]).is_contiguous());
    // Empty layouts overlap nothing.
    assert!(l(0, &[0, 3], &[0, 0]).is_non_overlapping());
    // Narrowing the innermost axis breaks contiguity, the outermost does not.
    assert!(!x.narrow(2, 0, 2).unwrap().is_contiguous());
    assert!(x.narrow(0, 1, 1).unwrap().is_contiguous());
    assert!(x.select(0, 1).unwrap().is_contiguous());
    assert!(!x.select(2, 1).unwrap().is_contiguous());
    assert!(x.select(2, 1).unwrap().is_non_overlapping());
}

fn strategy_layout() -> impl Strategy<Value = (usize, Vec<usize>, Vec<usize>)> {
    (0usize..=4)
        .prop_flat_map(|r| {
            (
                0usize..50,
                prop::collection::vec(0usize..=5, r),
                prop::collection::vec(0usize..=40, r),
            )
        })
        .boxed()
}

fn config() -> Config {
    Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// `offsets()` visits exactly `offset + sum(i_k * stride_k)`, row-major.
    #[test]
    fn offsets_match_nested_loops((offset, shape, strides) in strategy_layout()) {
        let x = Layout::new(offset, &shape, &strides).unwrap();
        let got: Vec<usize> = x.offsets().collect();
        let want = naive(offset, &shape, &strides);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(x.offsets().len(), want.len());
        prop_assert_eq!(x.numel(), want.len());
        // `end` is one past the largest address (0 when empty).
        let end = want.iter().max().map_or(0, |m| m + 1);
        prop_assert_eq!(x.end(), end);
        // Non-overlap is never claimed for a layout that repeats an address.
        let mut sorted = want.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if x.is_non_overlapping() {
            prop_assert_eq!(sorted.len(), want.len());
        }
        // Contiguous: the addresses are offset, offset + 1, ... in order.
        if x.is_contiguous() && !want.is_empty() {
            prop_assert_eq!(&want, &(offset..offset + want.len()).collect::<Vec<_>>());
        }
        // Split: rows x row elements give the same addresses.
        let (rows, len, stride) = x.split_last();
        let split: Vec<usize> = rows
            .offsets()
            .flat_map(|o| (0..len).map(move |j| o + j * stride))
            .collect();
        if x.rank() > 0 {
            prop_assert_eq!(&split, &want);
        }
        // Permutations visit the same multiset of addresses, in the permuted order.
        if x.rank() >= 2 {
            let t = x.transpose(0, x.rank() - 1).unwrap();
            let mut ts: Vec<usize> = t.offsets().collect();
            let mut ws = want.clone();
            ts.sort_unstable();
            ws.sort_unstable();
            prop_assert_eq!(ts, ws);
        }
    }

    /// Contiguous layouts of any small shape: addresses 0..numel, reshape keeps them.
    #[test]
    fn contiguous_layouts(shape in prop::collection::vec(0usize..=5, 0..=MAX_RANK), off in 0usize..10) {
        let x = Layout::contiguous_at(off, &shape).unwrap();
        let n: usize = shape.iter().product();
        prop_assert_eq!(x.numel(), n);
        prop_assert!(x.is_contiguous());
        prop_assert!(x.is_non_overlapping());
        let got: Vec<usize> = x.offsets().collect();
        prop_assert_eq!(got, (off..off + n).collect::<Vec<_>>());
        let flat = x.reshape(&[n]).unwrap();
        prop_assert_eq!(flat.offsets().collect::<Vec<_>>(), x.offsets().collect::<Vec<_>>());
    }

    /// Cutting a layout gives the sub-array of the naive addresses.
    #[test]
    fn cuts_match_naive((offset, shape, strides) in strategy_layout(), a in 0usize..4, i in 0usize..6, n in 0usize..6) {
        let x = Layout::new(offset, &shape, &strides).unwrap();
        if a < x.rank() && i < shape[a] {
            let s = x.select(a, i).unwrap();
            let mut sh = shape.clone();
            let mut st = strides.clone();
            sh.remove(a);
            st.remove(a);
            prop_assert_eq!(
                s.offsets().collect::<Vec<_>>(),
                naive(offset + i * strides[a], &sh, &st)
            );
            prop_assert!(s.end() <= x.end().max(1));
        } else {
            prop_assert!(x.select(a, i).is_err());
        }
        if a < x.rank() && i + n <= shape[a] {
            let nr = x.narrow(a, i, n).unwrap();
            let mut sh = shape.clone();
            sh[a] = n;
            prop_assert_eq!(
                nr.offsets().collect::<Vec<_>>(),
                naive(offset + i * strides[a], &sh, &strides)
            );
            prop_assert!(nr.end() <= x.end());
        } else {
            prop_assert!(x.narrow(a, i, n).is_err());
        }
    }
}

#[test]
fn views_check_bounds() {
    let buf = [0.0f32; 12];
    let v = V::new(&buf[..], c(&[3, 4])).unwrap();
    assert_eq!(v.shape(), &[3, 4]);
    assert_eq!(v.mem().len(), 12);
    assert_eq!(*v.layout(), c(&[3, 4]));
    assert_eq!(
        V::new(&buf[..], c(&[13])).unwrap_err(),
        Error::OutOfBounds {
            arg: "view",
            end: 13,
            len: 12
        }
    );
    assert_eq!(
        V::new(&buf[..], Layout::contiguous_at(1, &[3, 4]).unwrap()).unwrap_err(),
        Error::OutOfBounds {
            arg: "view",
            end: 13,
            len: 12
        }
    );
    assert!(matches!(
        V::new(&buf[..], l(0, &[2], &[12])),
        Err(Error::OutOfBounds { end: 13, .. })
    ));
    assert!(matches!(
        V::contiguous(&buf[..], &[2, 7]),
        Err(Error::OutOfBounds {
            end: 14,
            len: 12,
            ..
        })
    ));
    assert!(matches!(
        V::contiguous(&buf[..], &[1; 7]),
        Err(Error::Rank { .. })
    ));
    // Empty layouts fit any buffer, even an empty one, at any offset.
    let none: [f32; 0] = [];
    assert!(V::new(&none[..], Layout::new(100, &[0, 4], &[4, 1]).unwrap()).is_ok());
    assert!(matches!(
        V::contiguous(&none[..], &[]),
        Err(Error::OutOfBounds { end: 1, len: 0, .. })
    ));
    // Broadcast views may read one element many times.
    let e = V::new(&buf[..], l(11, &[1000, 1000], &[0, 0])).unwrap();
    assert_eq!(e.layout().numel(), 1_000_000);
    // Cuts keep the memory and check again.
    let v = Reference.view(&buf[..], &[3, 4]).unwrap();
    assert_eq!(v.select(0, 2).unwrap().layout().offset(), 8);
    assert_eq!(v.narrow(1, 1, 2).unwrap().shape(), &[3, 2]);
    assert_eq!(v.transpose(0, 1).unwrap().shape(), &[4, 3]);
    assert_eq!(
        v.select(1, 0).unwrap().expand(&[2, 3]).unwrap().shape(),
        &[2, 3]
    );
    assert!(matches!(v.select(0, 3), Err(Error::Index { .. })));
    assert!(matches!(v.expand(&[4, 4]), Err(Error::Shape { .. })));
    assert!(matches!(
        v.map_layout(|_| Ok(c(&[20]))),
        Err(Error::OutOfBounds { end: 20, .. })
    ));
    assert!(matches!(
        v.map_layout(|x| x.permute(&[1, 0])),
        Ok(t) if t.shape() == [4, 3]
    ));
    let dbg = format!("{v:?}");
    assert!(dbg.contains("f32") && dbg.contains("[3, 4]"), "{dbg}");
}

#[test]
fn writable_views_check_bounds_and_overlap() {
    let mut buf = [0.0f32; 12];
    assert!(matches!(
        VM::new(&mut buf[..], c(&[13])),
        Err(Error::OutOfBounds {
            arg: "view",
            end: 13,
            len: 12
        })
    ));
    assert_eq!(
        VM::new(&mut buf[..], l(0, &[3, 4], &[0, 1])).unwrap_err(),
        Error::Overlap {
            arg: "view",
            shape: Dims::new(&[3, 4])
        }
    );
    assert!(matches!(
        VM::new(&mut buf[..], l(0, &[2, 2], &[1, 1])),
        Err(Error::Overlap { .. })
    ));
    assert!(matches!(
        VM::new(&mut buf[..], l(0, &[3], &[0])),
        Err(Error::Overlap { .. })
    ));
    // Broadcast in bounds is an overlap; out of bounds is reported first.
    assert!(matches!(
        VM::new(&mut buf[..], l(0, &[20], &[0])),
        Err(Error::Overlap { .. })
    ));
    assert!(matches!(
        VM::new(&mut buf[..], l(11, &[20, 2], &[0, 1])),
        Err(Error::OutOfBounds { end: 13, .. })
    ));
    // Transposed and gapped layouts are writable; size-1 axes with zero stride too.
    assert!(VM::new(&mut buf[..], c(&[3, 4]).transpose(0, 1).unwrap()).is_ok());
    assert!(VM::new(&mut buf[..], l(0, &[2, 3], &[6, 2])).is_ok());
    assert!(VM::new(&mut buf[..], l(0, &[1, 3], &[0, 1])).is_ok());
    assert!(VM::new(&mut buf[..], l(0, &[0, 3], &[0, 0])).is_ok());
    // Cuts.
    let mut v = Reference.view_mut(&mut buf[..], &[3, 4]).unwrap();
    assert_eq!(v.shape(), &[3, 4]);
    assert_eq!(v.as_view().shape(), &[3, 4]);
    assert_eq!(v.reborrow().select(0, 1).unwrap().layout().offset(), 4);
    assert_eq!(v.reborrow().narrow(1, 2, 2).unwrap().shape(), &[3, 2]);
    assert_eq!(v.reborrow().transpose(1, 0).unwrap().shape(), &[4, 3]);
    assert!(matches!(v.reborrow().select(2, 0), Err(Error::Axis { .. })));
    assert!(matches!(
        v.reborrow()
            .map_layout(|x| x.select(1, 0)?.unsqueeze(1)?.expand(&[3, 2])),
        Err(Error::Overlap { .. })
    ));
    {
        let (mem, layout) = v.parts();
        assert_eq!(mem.len(), 12);
        assert_eq!(layout.shape(), &[3, 4]);
    }
    v.mem_mut()[5] = 1.0;
    let mut row = v.select(0, 1).unwrap();
    let (mem, layout) = row.parts();
    for o in layout.offsets() {
        mem[o] += 2.0;
    }
    assert_eq!(buf, [0., 0., 0., 0., 2., 3., 2., 2., 0., 0., 0., 0.]);
    let mut one = [0.0f32; 1];
    assert!(matches!(
        Reference.view_mut(&mut one[..], &[2]),
        Err(Error::OutOfBounds { end: 2, len: 1, .. })
    ));
}

/// An empty layout addresses nothing: whatever offset and strides it is made with (up to
/// `usize::MAX`, which only an empty layout can carry), or cut down to, it is offset 0 with zero
/// strides, so a kernel that computes a row's start before it sees the row is empty cannot
/// overflow; it is contiguous and non-overlapping, and a view of it needs no memory.
#[test]
fn empty_layouts_are_canonical() {
    let m = usize::MAX;
    for (off, shape, strides) in [
        (m, vec![0usize], vec![1usize]),
        (m, vec![2, 0, 3], vec![m, 1, 7]),
        (7, vec![4, 3, 0], vec![1, m, m]),
        (0, vec![0, 0], vec![0, 0]),
    ] {
        let e = Layout::new(off, &shape, &strides).unwrap();
        assert_eq!(parts(&e), (0, shape.clone(), vec![0; shape.len()]));
        assert_eq!((e.numel(), e.end()), (0, 0));
        assert!(e.is_contiguous() && e.is_non_overlapping());
        assert!(addrs(&e).is_empty());
        let mem: [f32; 0] = [];
        assert!(View::<Reference, f32>::new(&mem[..], e).is_ok());
    }
    // Cut to nothing: the same form.
    let n = l(5, &[3, 4], &[4, 1]).narrow(1, 2, 0).unwrap();
    assert_eq!(parts(&n), (0, vec![3, 0], vec![0, 0]));
    // A non-empty layout keeps what it was given.
    assert_eq!(parts(&l(m - 1, &[1], &[m])), (m - 1, vec![1], vec![m]));
}
