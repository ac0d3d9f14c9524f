//! aTLAS: knowledge composition with task vectors and learned anisotropic scaling (Zhang et al.
//! 2024, "Knowledge Composition using Task Vectors with Learned Anisotropic Scaling", eq. 3):
//!
//! `theta_b = theta0_b + sum_t lambda_{t,b} tau_{t,b}`
//!
//! for every parameter block `b` (a weight matrix, a bias, a norm's scale), with one learnable
//! coefficient per task vector `t` and per block. The gradient of a loss `L` with respect to the
//! coefficients is `dL/dlambda_{t,b} = <dL/dtheta_b, tau_{t,b}>` (eq. 4 by the chain rule), so a
//! training loop needs only the gradient with respect to the composed parameters.
//!
//! Blocks that no coefficient touches (every `lambda_{t,b} = 0`) are never copied: building an
//! [`Atlas`] borrows everything, [`Atlas::apply`] writes only the touched blocks, and
//! [`Atlas::block`] / [`Atlas::export`] hand out the base block itself for the others.
//!
//! Parameter sets are host memory (`&[T]` per block): composition is an update of the weights a
//! training loop owns, done once per step, not a per-token kernel. Sums accumulate in f64.

use seqcore::{Dims, Element, Error, Result};

/// A composition `theta0 + sum_t lambda_{t,b} tau_{t,b}` over borrowed blocks (aTLAS, Zhang et al.
/// 2024, eq. 3).
#[derive(Clone, Copy, Debug)]
pub struct Atlas<'a, T: Element> {
    base: &'a [&'a [T]],
    tasks: &'a [&'a [&'a [T]]],
    coefficients: &'a [f64],
}

fn shape_err(arg: &'static str, axis: usize, got: usize, expected: usize) -> Error {
    Error::Shape {
        arg,
        axis,
        got,
        expected,
        shape: Dims::new(&[got]),
    }
}

impl<'a, T: Element> Atlas<'a, T> {
    /// The composition of the pre-trained blocks `base` (`theta0`), the task vectors `tasks`
    /// (`tasks[t][b]` is block `b` of task vector `t`, `tau = theta_t - theta0`) and the
    /// coefficients `coefficients[t * blocks + b] = lambda_{t,b}`.
    ///
    /// ```
    /// use seq_distill::Atlas;
    ///
    /// let (w, bias) = ([1.0f32, 2.0], [0.5f32]);
    /// let (tw, tb) = ([0.1f32, -0.1], [1.0f32]);
    /// let base: [&[f32]; 2] = [&w, &bias];
    /// let task: [&[f32]; 2] = [&tw, &tb];
    /// let tasks = [&task[..]];
    /// let lambda = [2.0, 0.0]; // the bias block is untouched
    /// let atlas = Atlas::new(&base, &tasks, &lambda)?;
    /// let mut scratch = [0.0f32; 2];
    /// assert_eq!(atlas.block(0, &mut scratch)?, &[1.2, 1.8]);
    /// let mut small = [0.0f32; 1];
    /// assert!(core::ptr::eq(atlas.block(1, &mut small)?, &bias[..])); // no copy
    /// # Ok::<(), seqcore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Shape`] naming `tasks` when a task vector's block count or a block's length
    /// differs from `base`, `coefficients` when there are not `tasks * blocks` of them;
    /// [`Error::Param`] naming `coefficients` when one is not finite.
    pub fn new(
        base: &'a [&'a [T]],
        tasks: &'a [&'a [&'a [T]]],
        coefficients: &'a [f64],
    ) -> Result<Self> {
        for task in tasks {
            if task.len() != base.len() {
                return Err(shape_err("tasks", 1, task.len(), base.len()));
            }
            for (tb, bb) in task.iter().zip(base) {
                if tb.len() != bb.len() {
                    return Err(shape_err("tasks", 2, tb.len(), bb.len()));
                }
            }
        }
        let want = tasks.len().checked_mul(base.len()).ok_or(Error::Overflow {
            arg: "coefficients",
        })?;
        if coefficients.len() != want {
            return Err(shape_err("coefficients", 0, coefficients.len(), want));
        }
        if coefficients.iter().any(|c| !c.is_finite()) {
            return Err(Error::Param {
                arg: "coefficients",
                reason: "must be finite",
            });
        }
        Ok(Atlas {
            base,
            tasks,
            coefficients,
        })
    }

    /// Parameter blocks.
    pub fn blocks(&self) -> usize {
        self.base.len()
    }

    /// Task vectors.
    pub fn tasks(&self) -> usize {
        self.tasks.len()
    }

    /// `lambda_{t,b}` (0 outside the ranges).
    pub fn coefficient(&self, t: usize, b: usize) -> f64 {
        self.coefficients
            .get(t * self.blocks() + b)
            .copied()
            .unwrap_or(0.0)
    }

    /// True when some coefficient of block `b` is nonzero (the block differs from `theta0`).
    pub fn touched(&self, b: usize) -> bool {
        (0..self.tasks()).any(|t| self.coefficient(t, b) != 0.0)
    }

    fn base_block(&self, b: usize) -> Result<&'a [T]> {
        self.base.get(b).copied().ok_or(Error::Index {
            arg: "block",
            end: b.saturating_add(1),
            len: self.blocks(),
        })
    }

    /// Writes the composed block `b` into `out` (of the block's length).
    fn compose(&self, b: usize, out: &mut [T]) -> Result<()> {
        let base = self.base_block(b)?;
        if out.len() != base.len() {
            return Err(shape_err("out", 0, out.len(), base.len()));
        }
        for (i, (o, &x)) in out.iter_mut().zip(base).enumerate() {
            let mut acc = x.to_f64();
            for (t, task) in self.tasks.iter().enumerate() {
                let l = self.coefficient(t, b);
                if l != 0.0 {
                    let tau = task.get(b).and_then(|blk| blk.get(i)).copied();
                    acc += l * tau.map_or(f64::NAN, Element::to_f64);
                }
            }
            *o = T::from_f64(acc);
        }
        Ok(())
    }

    /// Composed block `b`: the base block itself when no coefficient touches it (no copy), else
    /// the composition written into `scratch` (at least the block's length; the prefix is used).
    ///
    /// # Errors
    /// [`Error::Index`] naming `block` when `b` is out of range; [`Error::Capacity`] naming
    /// `scratch` when it is too short for a touched block.
    pub fn block<'s>(&self, b: usize, scratch: &'s mut [T]) -> Result<&'s [T]>
    where
        'a: 's,
    {
        let base = self.base_block(b)?;
        if !self.touched(b) {
            return Ok(base);
        }
        let cap = scratch.len();
        let out = scratch.get_mut(..base.len()).ok_or(Error::Capacity {
            arg: "scratch",
            needed: base.len(),
            capacity: cap,
        })?;
        self.compose(b, out)?;
        Ok(out)
    }

    /// Applies the composition to a live parameter set `theta` (same blocks as `theta0`),
    /// writing only the touched blocks: the others must already hold `theta0` (as a model
    /// loaded from the pre-trained weights does). Returns the number of blocks written.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `theta` when its blocks differ from `theta0`'s.
    pub fn apply(&self, theta: &mut [&mut [T]]) -> Result<usize> {
        if theta.len() != self.blocks() {
            return Err(shape_err("theta", 0, theta.len(), self.blocks()));
        }
        for (blk, base) in theta.iter().zip(self.base) {
            if blk.len() != base.len() {
                return Err(shape_err("theta", 1, blk.len(), base.len()));
            }
        }
        let mut written = 0;
        for (b, blk) in theta.iter_mut().enumerate() {
            if self.touched(b) {
                self.compose(b, blk)?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// The composed parameter set: untouched blocks borrowed from `theta0`, touched ones owned.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when a block cannot be allocated.
    #[cfg(feature = "alloc")]
    pub fn export(&self) -> Result<alloc::vec::Vec<alloc::borrow::Cow<'a, [T]>>> {
        use alloc::borrow::Cow;
        use alloc::vec::Vec;
        let mut out = Vec::new();
        out.try_reserve_exact(self.blocks())
            .map_err(|_| Error::OutOfMemory {
                bytes: self.blocks().saturating_mul(size_of::<Cow<'a, [T]>>()),
            })?;
        for (b, &base) in self.base.iter().enumerate() {
            if self.touched(b) {
                let mut v = Vec::new();
                v.try_reserve_exact(base.len())
                    .map_err(|_| Error::OutOfMemory {
                        bytes: base.len().saturating_mul(size_of::<T>()),
                    })?;
                v.resize(base.len(), T::default());
                self.compose(b, &mut v)?;
                out.push(Cow::Owned(v));
            } else {
                out.push(Cow::Borrowed(base));
            }
        }
        Ok(out)
    }

    /// The gradient with respect to the coefficients, `out[t * blocks + b] =
    /// <dL/dtheta_b, tau_{t,b}>` (aTLAS eq. 4), from `grad[b] = dL/dtheta_b` (same blocks as
    /// `theta0`), summed in f64.
    ///
    /// # Errors
    /// [`Error::Shape`] naming `grad` when its blocks differ from `theta0`'s, `out` when it does
    /// not hold `tasks * blocks` values.
    pub fn coefficient_grad(&self, grad: &[&[T]], out: &mut [f64]) -> Result<()> {
        if grad.len() != self.blocks() {
            return Err(shape_err("grad", 0, grad.len(), self.blocks()));
        }
        for (g, base) in grad.iter().zip(self.base) {
            if g.len() != base.len() {
                return Err(shape_err("grad", 1, g.len(), base.len()));
            }
        }
        if out.len() != self.coefficients.len() {
            return Err(shape_err("out", 0, out.len(), self.coefficients.len()));
        }
        for (t, task) in self.tasks.iter().enumerate() {
            for (b, (g, tau)) in grad.iter().zip(task.iter()).enumerate() {
                let dot = g
                    .iter()
                    .zip(tau.iter())
                    .map(|(&x, &y)| x.to_f64() * y.to_f64())
                    .sum::<f64>();
                if let Some(o) = out.get_mut(t * self.blocks() + b) {
                    *o = dot;
                }
            }
        }
        Ok(())
    }
}
