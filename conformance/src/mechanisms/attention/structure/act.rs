//! `act`: the ACT halting controller ([`seq_attention::Act`], Universal Transformers section 2.2,
//! tensor2tensor's loop) driving the step `s_t = tanh(s_{t-1} + c_t)` with halting probabilities
//! from a table, on the backend in `T` against the reference at f64.
//!
//! The probabilities are multiples of 1/64 and the thresholds sit between such multiples, so
//! every sum of the bookkeeping is exact in every accumulation type and the halting decisions do
//! not depend on `T`: the step count, the update counts `N` and the remainders `R` must match the
//! reference exactly, and a case whose first probabilities pass the threshold must take exactly
//! one step.
//!
//! Bound on the output, per element, for `t` steps (`u`, `ua` as in [`crate::tolerance`]): the
//! state after step `t` is off by at most `8 (u + ua) t` (the add of `|s| + |c| <= 3` and the tanh,
//! 1-Lipschitz), and each combination `s w + out (1 - w)` adds at most `12 (u + ua)` (three stores,
//! `w` and `1 - w` rounded to `T`) to a convex combination of earlier errors; in all
//! `floor + 20 t (u + ua)`.

use proptest::prelude::*;
use seq_attention::act::Ponder;
use seq_attention::{Act, HaltingStep};
use seqcore::{Allocate, Binary, Element, Reference, Unary, View, ViewMut};

use super::{refs, upload, values, workspace};
use crate::compare::{Agreement, Bound, compare};
use crate::harness::{Input, Output, round, widen};
use crate::properties::{Bench, Work};
use crate::{Failure, tolerance};

/// One ACT run.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Positions.
    pub p: usize,
    /// State size.
    pub dim: usize,
    /// Step limit.
    pub max_steps: usize,
    /// Threshold as `(k + 1/2) / 64`, or `None` for the Universal Transformer's 0.99.
    pub threshold_64ths: Option<u8>,
    /// Halting probabilities in 64ths, `[max_steps][p]` read cyclically.
    pub table: Vec<u8>,
    /// Seed of the state and of `c_t`.
    pub seed: u64,
}

impl Case {
    fn threshold(&self) -> f64 {
        match self.threshold_64ths {
            Some(k) => (f64::from(k.min(63)) + 0.5) / 64.0,
            None => 0.99,
        }
    }

    fn probs(&self) -> Vec<f64> {
        (0..self.max_steps * self.p)
            .map(|i| {
                let k = if self.table.is_empty() {
                    0
                } else {
                    self.table.get(i % self.table.len()).copied().unwrap_or(0)
                };
                f64::from(k.min(64)) / 64.0
            })
            .collect()
    }
}

/// The step: `next = tanh(state + c_t)`, `halting = probs[t]`.
struct TableStep<'a, B: Allocate, T: Element> {
    b: &'a B,
    c: &'a Input<B, T>,
    probs: &'a Input<B, T>,
    scratch: B::Buffer<T>,
    p: usize,
    dim: usize,
}

impl<B: Allocate, T: Element> HaltingStep<B, T> for TableStep<'_, B, T> {
    fn step(
        &mut self,
        t: usize,
        state: View<'_, B, T>,
        next: ViewMut<'_, B, T>,
        halting: ViewMut<'_, B, T>,
    ) -> seqcore::Result<()> {
        let b = self.b;
        let pd = [self.p, self.dim];
        let c = self
            .c
            .view()
            .map_err(|_| seqcore::Error::Param {
                arg: "c",
                reason: "upload",
            })?
            .narrow(0, t, 1)?
            .map_layout(|l| l.unsqueeze(1))?
            .expand(&pd)?;
        let mem = core::borrow::BorrowMut::borrow_mut(&mut self.scratch);
        b.binary(Binary::Add, state, c, b.view_mut(mem, &pd)?)?;
        b.unary(Unary::Tanh, b.view(mem, &pd)?, next)?;
        let pr = self
            .probs
            .view()
            .map_err(|_| seqcore::Error::Param {
                arg: "probs",
                reason: "upload",
            })?
            .select(0, t)?;
        b.unary(Unary::Scale(1.0), pr, halting)
    }
}

/// What one run gives: output, update counts, remainders, steps, ponder cost.
struct Ran {
    out: Vec<f64>,
    n: Vec<f64>,
    r: Vec<f64>,
    steps: usize,
}

fn run<B: Allocate, T: Element, R: Element>(b: &B, c: &Case) -> Result<Ran, Failure> {
    let (p, dim, ms) = (c.p, c.dim, c.max_steps);
    let rnd = |v: Vec<f64>| -> Vec<f64> { v.into_iter().map(round::<R>).collect() };
    let s0 = upload::<B, T>(b, &[p, dim], &rnd(values(c.seed, p * dim, 2.0)))?;
    let cv = upload::<B, T>(b, &[ms], &rnd(values(c.seed ^ 1, ms, 1.0)))?;
    let probs = upload::<B, T>(b, &[ms, p], &c.probs())?;
    let act = Act::new(c.threshold(), ms).map_err(Failure::Kernel)?;
    let mut step = TableStep {
        b,
        c: &cv,
        probs: &probs,
        scratch: b.alloc::<T>(p * dim).map_err(Failure::setup)?,
        p,
        dim,
    };
    let lens = Act::workspace_lens(p, dim).map_err(Failure::Kernel)?;
    let mut ws = Vec::new();
    for len in lens {
        ws.extend(workspace::<B, T>(b, 1, len)?);
    }
    let mut host = vec![T::default(); 3 * p];
    let zero = <T::Acc as seqcore::Real>::zero();
    let (mut h, mut r, mut n) = (vec![zero; p], vec![zero; p], vec![zero; p]);
    let mut out = Output::<B, T>::new(
        b,
        &seqcore::Layout::contiguous(&[p, dim]).map_err(Failure::setup)?,
        None,
    )?;
    let (steps, _cost) = act
        .run(
            b,
            &mut step,
            s0.view()?,
            out.view()?,
            Ponder {
                halting: &mut h,
                remainders: &mut r,
                updates: &mut n,
            },
            &mut refs::<B, T>(&mut ws),
            &mut host,
        )
        .map_err(Failure::Kernel)?;
    let wide = |v: &[T::Acc]| v.iter().map(|x| x.to_f64()).collect::<Vec<_>>();
    Ok(Ran {
        out: widen(&out.finish(b, "out")?),
        n: wide(&n),
        r: wide(&r),
        steps,
    })
}

/// Runs `c` on `b` in `T` and holds it against the reference at f64.
///
/// # Errors
/// The first [`Failure`].
pub fn check<B: Allocate, T: Element>(b: &B, c: &Case) -> Result<Agreement, Failure> {
    let got = run::<B, T, T>(b, c)?;
    let want = run::<Reference, f64, T>(&Reference, c)?;
    if got.steps != want.steps {
        return Err(Failure::Discrete {
            arg: "steps",
            index: 0,
            got: u32::try_from(got.steps).unwrap_or(u32::MAX),
            expected: u32::try_from(want.steps).unwrap_or(u32::MAX),
        });
    }
    let first_halts = c.probs().iter().take(c.p).all(|&x| x > c.threshold());
    if c.p > 0 && first_halts && got.steps != 1 {
        return Err(Failure::Discrete {
            arg: "steps",
            index: 0,
            got: u32::try_from(got.steps).unwrap_or(u32::MAX),
            expected: 1,
        });
    }
    compare("updates", &got.n, &want.n, |_| Bound::EXACT)?;
    compare("remainders", &got.r, &want.r, |_| Bound::EXACT)?;
    let uu = tolerance::u::<T>() + tolerance::ua::<T>();
    let steps = want.steps as f64;
    let bound = Bound {
        atol: tolerance::floor::<T>() + 20.0 * steps * uu,
        rtol: 0.0,
    };
    let expected: Vec<f64> = want.out.iter().map(|&v| round::<T>(v)).collect();
    compare("out", &got.out, &expected, |_| bound)
}

/// Random cases.
pub fn cases() -> impl Strategy<Value = Case> {
    (
        0usize..9,
        1usize..6,
        1usize..8,
        proptest::option::of(0u8..64),
        proptest::collection::vec(0u8..=64, 1..40),
        any::<u64>(),
    )
        .prop_map(|(p, dim, max_steps, threshold_64ths, table, seed)| Case {
            p,
            dim,
            max_steps,
            threshold_64ths,
            table,
            seed,
        })
}

/// Edge cases: no positions; one position and one step; every position halting at step 1 (one
/// step); threshold 1 (63.5/64 .. below 1 is the largest expressible here) with probabilities
/// that never get there (the step limit decides); a position that never halts beside ones that do.
///
/// # Errors
/// Never.
pub fn edge_cases() -> Result<Vec<Case>, Failure> {
    let c = |p: usize, max_steps: usize, th: Option<u8>, table: Vec<u8>| Case {
        p,
        dim: 3,
        max_steps,
        threshold_64ths: th,
        table,
        seed: 3,
    };
    Ok(vec![
        c(0, 3, None, vec![10]),
        c(1, 1, None, vec![5]),
        c(4, 5, None, vec![64]),
        c(3, 6, Some(63), vec![1]),
        c(3, 4, Some(31), vec![0, 40, 20, 0, 40, 20]),
    ])
}

/// Timing: `p` positions of `dim` features, probabilities 1/steps (so `steps` steps run).
///
/// # Errors
/// Setup failures.
pub fn bench<B: Allocate, T: Element>(
    b: &B,
    p: usize,
    dim: usize,
    steps: usize,
) -> Result<Bench<'_>, Failure> {
    let k = u8::try_from(64 / steps.max(1)).unwrap_or(8);
    let case = Case {
        p,
        dim,
        max_steps: steps,
        threshold_64ths: None,
        table: vec![k],
        seed: 1,
    };
    let flops = (steps * p * dim * 6) as f64;
    Ok(Bench {
        run: Box::new(move || run::<B, T, T>(b, &case).map(|_| ())),
        work: Work::Flops(flops),
        size: format!("{p}x{dim}, {steps} steps"),
    })
}
