//! Adaptive Computation Time halting, as the Universal Transformer applies it per position
//! (Graves 2016, "Adaptive Computation Time for Recurrent Neural Networks", section 2; Dehghani et
//! al. 2019, "Universal Transformers", section 2.2 and appendix C, whose reference code is
//! tensor2tensor's `universal_transformer_util.py`, `ut_function` / `should_continue`).
//!
//! At step `t` every position `p` still running gets a halting probability `p_t` from the step
//! function, then, exactly as tensor2tensor (`h` the accumulated halting probability, `R` the
//! remainders, `N` the update counts, threshold `1 - eps`):
//!
//! ```text
//! running    = h < 1
//! new_halted = (h + p_t running >  threshold) running
//! running    = (h + p_t running <= threshold) running
//! h += p_t running
//! R += new_halted (1 - h)
//! h += new_halted R
//! N += running + new_halted
//! w  = p_t running + new_halted R
//! s_t   = step(s_{t-1})
//! out   = s_t w + out (1 - w)          (out starts at 0)
//! ```
//!
//! while some position has `h < threshold` and `N < max_steps`. The ponder cost (Graves eq. 11,
//! `rho = N + R`) is `mean(N + R)` over positions, tensor2tensor's `act_loss` before its weight.
//!
//! The combination is tensor2tensor's running interpolation, not Graves' sum `sum_t p_t s_t`: the
//! update weights `w` of a position that halted sum to 1 (they are `p_1 .. p_{N-1}, R`), and its
//! output is `sum_t w_t prod_{u > t} (1 - w_u) s_t`. A position that reaches `max_steps` without
//! crossing the threshold keeps `R = 0` and weights summing to `h < 1`, as in tensor2tensor.

use seqcore::{Backend, Binary, Element, Error, Real, Result, View, ViewMut};

use crate::set_encoder::ops::{check_workspace, mul, vm, vw};

/// The Universal Transformer's default `act_epsilon` (threshold `1 - 0.01 = 0.99`).
pub const UT_EPSILON: f64 = 0.01;

/// One step of the recurrent transformation: from `state [P, D]` (step `step`, counted from 0),
/// write the next state `next [P, D]` and each position's halting probability `halting [P]`
/// (in `[0, 1]`; tensor2tensor's `sigmoid(dense(state))`).
///
/// Closures `FnMut(usize, View, ViewMut, ViewMut) -> Result<()>` implement it.
pub trait HaltingStep<B: Backend + ?Sized, T: Element> {
    /// Runs step `step`.
    ///
    /// # Errors
    /// Whatever the step reports; the controller stops and returns it.
    fn step(
        &mut self,
        step: usize,
        state: View<'_, B, T>,
        next: ViewMut<'_, B, T>,
        halting: ViewMut<'_, B, T>,
    ) -> Result<()>;
}

impl<B, T, F> HaltingStep<B, T> for F
where
    B: Backend + ?Sized,
    T: Element,
    F: FnMut(usize, View<'_, B, T>, ViewMut<'_, B, T>, ViewMut<'_, B, T>) -> Result<()>,
{
    fn step(
        &mut self,
        step: usize,
        state: View<'_, B, T>,
        next: ViewMut<'_, B, T>,
        halting: ViewMut<'_, B, T>,
    ) -> Result<()> {
        self(step, state, next, halting)
    }
}

/// The per-position bookkeeping of a run, in the accumulation type: the accumulated halting
/// probability `h`, the remainders `R` and the update counts `N` (tensor2tensor's
/// `halting_probability`, `remainders`, `n_updates`), one entry per position.
#[derive(Debug)]
pub struct Ponder<'a, R> {
    /// Accumulated halting probability (1 for a position that halted).
    pub halting: &'a mut [R],
    /// Remainders `R`.
    pub remainders: &'a mut [R],
    /// Update counts `N` (how many steps changed the position's output).
    pub updates: &'a mut [R],
}

/// The halting controller (Universal Transformers, section 2.2): threshold and step limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Act {
    threshold: f64,
    max_steps: usize,
}

impl Act {
    /// Backend buffers [`Act::run`] takes (their sizes: [`Act::workspace_lens`]).
    pub const BUFFERS: usize = 5;

    /// A controller halting a position once its accumulated probability passes `threshold`
    /// (`1 - eps`), after at most `max_steps` steps.
    ///
    /// # Errors
    /// [`Error::Param`] naming `threshold` unless it is in `(0, 1]`, naming `max_steps` when it
    /// is 0.
    pub fn new(threshold: f64, max_steps: usize) -> Result<Self> {
        if !(threshold > 0.0 && threshold <= 1.0) {
            return Err(Error::Param {
                arg: "threshold",
                reason: "must be in (0, 1]",
            });
        }
        if max_steps == 0 {
            return Err(Error::Param {
                arg: "max_steps",
                reason: "must be at least 1",
            });
        }
        Ok(Act {
            threshold,
            max_steps,
        })
    }

    /// The Universal Transformer's setting: threshold `1 - 0.01 = 0.99` ([`UT_EPSILON`]).
    ///
    /// # Errors
    /// As [`Act::new`].
    pub fn universal_transformer(max_steps: usize) -> Result<Self> {
        Act::new(1.0 - UT_EPSILON, max_steps)
    }

    /// The halting threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The step limit.
    pub fn max_steps(&self) -> usize {
        self.max_steps
    }

    /// Elements of each backend buffer for `positions x dim` states: three states of `P D`
    /// (two for the step's input and output, one scratch), the halting probabilities (`P`) and
    /// the update weights with their complements (`2 P`). Exact sizes let a device backend move
    /// the last two with one transfer each.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `workspace`.
    pub fn workspace_lens(positions: usize, dim: usize) -> Result<[usize; Self::BUFFERS]> {
        let pd = mul("workspace", positions, dim)?;
        Ok([pd, pd, pd, positions, mul("workspace", positions, 2)?])
    }

    /// Runs `step` from `state [P, D]` until every position halted or ran `max_steps` steps,
    /// writing the halting-weighted state into `out [P, D]` and the bookkeeping into `ponder`
    /// (each of `P` entries). `ws` holds [`Act::BUFFERS`] backend buffers of at least
    /// [`Act::workspace_lens`] elements; `host` is host scratch of `3 P` elements. Returns the
    /// number of steps run and the ponder cost `mean(N + R)` (0 for no positions).
    ///
    /// # Errors
    /// Shape errors naming `state`, `out`, `ponder` or `host`; [`Error::Capacity`] naming
    /// `workspace`; [`Error::Param`] naming `halting` when the step returns a probability that is
    /// NaN or outside `[0, 1]`; the step's own errors.
    #[allow(clippy::too_many_arguments)]
    pub fn run<B: Backend + ?Sized, T: Element, S: HaltingStep<B, T>>(
        &self,
        b: &B,
        step: &mut S,
        state: View<'_, B, T>,
        mut out: ViewMut<'_, B, T>,
        ponder: Ponder<'_, T::Acc>,
        ws: &mut [&mut B::Mem<T>],
        host: &mut [T],
    ) -> Result<(usize, f64)> {
        let (p, d) = match *state.shape() {
            [p, d] => (p, d),
            _ => {
                return Err(Error::Rank {
                    arg: "state",
                    got: state.shape().len(),
                    min: 2,
                    max: 2,
                });
            }
        };
        let pd = [p, d];
        seqcore::check::shape("out", out.layout(), &pd)?;
        let Ponder {
            halting,
            remainders,
            updates,
        } = ponder;
        for s in [&*halting, &*remainders, &*updates] {
            if s.len() != p {
                return Err(Error::Shape {
                    arg: "ponder",
                    axis: 0,
                    got: s.len(),
                    expected: p,
                    shape: seqcore::Dims::new(&[s.len()]),
                });
            }
        }
        let p3 = mul("host", p, 3)?;
        if host.len() != p3 {
            return Err(Error::Shape {
                arg: "host",
                axis: 0,
                got: host.len(),
                expected: p3,
                shape: seqcore::Dims::new(&[host.len()]),
            });
        }
        check_workspace::<B, T>(ws, Self::BUFFERS, 0)?;
        for (m, need) in ws.iter().zip(Self::workspace_lens(p, d)?) {
            let have = B::mem_len::<T>(m);
            if have < need {
                return Err(Error::Capacity {
                    arg: "workspace",
                    needed: need,
                    capacity: have,
                });
            }
        }
        let [sa, sb, t1, hp, wb, ..] = ws else {
            return Err(Error::Capacity {
                arg: "workspace",
                needed: Self::BUFFERS,
                capacity: ws.len(),
            });
        };
        let (sa, sb, t1, hp, wb) = (&mut **sa, &mut **sb, &mut **t1, &mut **hp, &mut **wb);
        let zero = T::Acc::zero();
        let one = T::Acc::one();
        let threshold = T::Acc::lit(self.threshold);
        let max_steps = T::Acc::lit(self.max_steps as f64);
        halting.fill(zero);
        remainders.fill(zero);
        updates.fill(zero);
        let (p_host, w_host) = host.split_at_mut(p);
        // The step reads `cur` and writes `nxt`; the first step reads the caller's state.
        let (mut cur, mut nxt): (&mut B::Mem<T>, &mut B::Mem<T>) = (sa, sb);
        let mut t = 0usize;
        while halting
            .iter()
            .zip(updates.iter())
            .any(|(&h, &n)| h < threshold && n < max_steps)
        {
            // Halting probabilities of this step, read back to the host.
            {
                let src = if t == 0 { state } else { vw(cur, &pd)? };
                step.step(t, src, vm(nxt, &pd)?, vm(hp, &[p])?)?;
            }
            read_prefix::<B, T>(b, hp, p_host)?;
            for (i, pv) in p_host.iter().enumerate() {
                let pr = pv.to_acc();
                if pr.is_nan() || pr < zero || pr > one {
                    return Err(Error::Param {
                        arg: "halting",
                        reason: "must be a probability in [0, 1]",
                    });
                }
                let (Some(h), Some(r), Some(n)) = (
                    halting.get_mut(i),
                    remainders.get_mut(i),
                    updates.get_mut(i),
                ) else {
                    continue;
                };
                let running = if *h < one { one } else { zero };
                let reach = *h + pr * running;
                let new_halted = if reach > threshold { running } else { zero };
                let still = if reach <= threshold { running } else { zero };
                *h += pr * still;
                *r += new_halted * (one - *h);
                *h += new_halted * *r;
                *n += still + new_halted;
                let w = pr * still + new_halted * *r;
                if let Some(slot) = w_host.get_mut(i) {
                    *slot = T::from_acc(w);
                }
                if let Some(slot) = w_host.get_mut(p + i) {
                    *slot = T::from_acc(one - w);
                }
            }
            write_prefix::<B, T>(b, w_host, wb)?;
            let w = vw::<B, T>(wb, &[p, 1])?.expand(&pd)?;
            let w1 = vw::<B, T>(wb, &[2, p, 1])?.select(0, 1)?.expand(&pd)?;
            // out = s_t w + out (1 - w); out starts at 0, so the first step is s_t w alone.
            if t == 0 {
                b.binary(Binary::Mul, vw(nxt, &pd)?, w, out.reborrow())?;
            } else {
                b.binary(Binary::Mul, vw(nxt, &pd)?, w, vm(t1, &pd)?)?;
                b.binary(Binary::Mul, out.as_view(), w1, vm(cur, &pd)?)?;
                b.binary(Binary::Add, vw(t1, &pd)?, vw(cur, &pd)?, out.reborrow())?;
            }
            core::mem::swap(&mut cur, &mut nxt);
            t += 1;
        }
        let total = remainders
            .iter()
            .zip(updates.iter())
            .fold(0.0f64, |acc, (&r, &n)| acc + r.to_f64() + n.to_f64());
        let cost = if p == 0 { 0.0 } else { total / p as f64 };
        Ok((t, cost))
    }
}

/// Reads the first `dst.len()` elements of `src` (a backend buffer at least that long).
fn read_prefix<B: Backend + ?Sized, T: Element>(
    b: &B,
    src: &B::Mem<T>,
    dst: &mut [T],
) -> Result<()> {
    if B::mem_len::<T>(src) == dst.len() {
        return b.read(src, dst);
    }
    match B::host(src) {
        Some(h) => {
            let part = h.get(..dst.len()).ok_or(Error::Capacity {
                arg: "workspace",
                needed: dst.len(),
                capacity: h.len(),
            })?;
            dst.copy_from_slice(part);
            Ok(())
        }
        None => Err(Error::Param {
            arg: "workspace",
            reason: "the halting buffer must hold exactly P elements off the host",
        }),
    }
}

/// Writes `src` into the first `src.len()` elements of `dst`.
fn write_prefix<B: Backend + ?Sized, T: Element>(
    b: &B,
    src: &[T],
    dst: &mut B::Mem<T>,
) -> Result<()> {
    if B::mem_len::<T>(dst) == src.len() {
        return b.write(src, dst);
    }
    match B::host_mut(dst) {
        Some(h) => {
            let cap = h.len();
            let part = h.get_mut(..src.len()).ok_or(Error::Capacity {
                arg: "workspace",
                needed: src.len(),
                capacity: cap,
            })?;
            part.copy_from_slice(src);
            Ok(())
        }
        None => Err(Error::Param {
            arg: "workspace",
            reason: "the weight buffer must hold exactly 2P elements off the host",
        }),
    }
}
