//! S4D: the diagonal state-space model ("On the Parameterization and Initialization of Diagonal
//! State Space Models", Gu, Gupta, Goel & Re 2022), H channels of N complex modes each, standing
//! for a conjugate-symmetric real system of 2N states (the output is `2 Re(..)`).
//!
//! [`S4dParams`] holds the continuous parameters (borrowed from plain arrays, any element type);
//! [`S4d`] is the model discretised into one buffer of backend memory, with the three ways to run
//! it: the kernel ([`S4d::kernel`], S4D eq. 6), the convolution mode ([`S4d::conv`], S4 eq. 4-5)
//! and the recurrent mode ([`S4d::scan`], S4 eq. 3), plus a chunked mode ([`S4d::chunk`]) that runs
//! a chunk by convolution and carries the state onward.

use seqcore::{Backend, Binary, Element, Error, Layout, Real, Result, View, ViewMut};

use crate::complex::Complex;
use crate::discretization::{Discretization, Stability, discretize, dt_from_log};

/// The S4D initialisations of the state matrix's diagonal (S4D section 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum S4dInit {
    /// S4D-Lin: `a_n = -1/2 + i pi n`.
    Lin,
    /// S4D-Inv: `a_n = -1/2 + i (N/pi) (N/(2n + 1) - 1)`, `N = 2 * modes` the real state size.
    Inv,
}

/// Writes the diagonal of `init` for `out.len()` complex modes (`n = 0, 1, ..`).
pub fn init_a(init: S4dInit, out: &mut [Complex]) {
    #[allow(clippy::cast_precision_loss)] // mode counts far below 2^53
    let big_n = 2.0 * out.len() as f64;
    for (n, a) in out.iter_mut().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let nf = n as f64;
        let im = match init {
            S4dInit::Lin => core::f64::consts::PI * nf,
            S4dInit::Inv => big_n / core::f64::consts::PI * (big_n / (2.0 * nf + 1.0) - 1.0),
        };
        *a = Complex::new(-0.5, im);
    }
}

/// S4D-LegS: the diagonal of HiPPO-LegS's normal-plus-low-rank form (S4D section 4,
/// [`crate::hippo::nplr_legs`] with `N = 2 * out.len()` real states), `-1/2 + i omega`.
/// `ws_f` and `ws_c` are scratch of [`crate::hippo::nplr_workspace_len`]`(N)` f64 values and
/// `N + N^2/2` complex values.
///
/// # Errors
/// [`Error::Param`] naming `n` for an empty `out`; [`Error::Shape`] naming `ws_f` / `ws_c` when
/// too short.
pub fn init_a_legs(out: &mut [Complex], ws_f: &mut [f64], ws_c: &mut [Complex]) -> Result<()> {
    let half = out.len();
    let n = half.checked_mul(2).ok_or(Error::Overflow { arg: "n" })?;
    let need = n
        .checked_mul(half)
        .and_then(|x| x.checked_add(n))
        .ok_or(Error::Overflow { arg: "n" })?;
    let got = ws_c.len();
    let ws_c = ws_c.get_mut(..need).ok_or(Error::Shape {
        arg: "ws_c",
        axis: 0,
        got,
        expected: need,
        shape: seqcore::Dims::new(&[got]),
    })?;
    let (p, rest) = ws_c.split_at_mut(half);
    let (b, v) = rest.split_at_mut(half);
    crate::hippo::nplr_legs(n, out, p, b, v, ws_f)
}

/// `log_dt` drawn log-uniformly from `[dt_min, dt_max]` (the S4/S4D default is `[1e-3, 1e-1]`)
/// from a uniform sample `u01` in `[0, 1]`.
///
/// # Errors
/// [`Error::Param`] naming `dt_min` / `dt_max` unless `0 < dt_min <= dt_max` (finite), or `u01`
/// outside `[0, 1]`.
pub fn log_dt_from_uniform(u01: f64, dt_min: f64, dt_max: f64) -> Result<f64> {
    if !(dt_min > 0.0 && dt_min.is_finite()) {
        return Err(Error::Param {
            arg: "dt_min",
            reason: "must be positive and finite",
        });
    }
    if !(dt_max >= dt_min && dt_max.is_finite()) {
        return Err(Error::Param {
            arg: "dt_max",
            reason: "must be finite and at least dt_min",
        });
    }
    if !(0.0..=1.0).contains(&u01) {
        return Err(Error::Param {
            arg: "u01",
            reason: "must lie in [0, 1]",
        });
    }
    let (lo, hi) = (libm::log(dt_min), libm::log(dt_max));
    Ok(lo + u01 * (hi - lo))
}

/// Fills `log_dt` log-uniformly in `[dt_min, dt_max]` from a SplitMix64 stream seeded with `seed`
/// (deterministic; no `rand` dependency).
///
/// # Errors
/// As [`log_dt_from_uniform`].
pub fn init_log_dt(seed: u64, dt_min: f64, dt_max: f64, log_dt: &mut [f64]) -> Result<()> {
    let mut s = seed;
    for v in log_dt.iter_mut() {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        #[allow(clippy::cast_precision_loss)] // 53 bits, exact
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        *v = log_dt_from_uniform(u, dt_min, dt_max)?;
    }
    Ok(())
}

/// Continuous S4D parameters of `h` channels x `n` complex modes, borrowed from plain arrays in
/// any element type `P` (f32 weights from a checkpoint, f64 from an initialiser):
/// `log_dt [H]`, `a, b, c [H, N, 2]` (`[re, im]`), `d [H]`. `dt = exp(log_dt)` as in the
/// official code.
#[derive(Clone, Copy, Debug)]
pub struct S4dParams<'p, P: Element> {
    /// Channels `H`.
    pub h: usize,
    /// Complex modes `N` per channel (the real state size is `2N`).
    pub n: usize,
    /// `log dt`, `[H]`.
    pub log_dt: &'p [P],
    /// Continuous diagonal state matrix, `[H, N, 2]`.
    pub a: &'p [P],
    /// Input matrix, `[H, N, 2]`.
    pub b: &'p [P],
    /// Output matrix, `[H, N, 2]`.
    pub c: &'p [P],
    /// Skip term `D`, `[H]`.
    pub d: &'p [P],
}

fn len_check(arg: &'static str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::Shape {
            arg,
            axis: 0,
            got,
            expected: want,
            shape: seqcore::Dims::new(&[got]),
        })
    }
}

fn cplx<P: Element>(s: &[P], i: usize) -> Complex {
    let re = s.get(2 * i).map_or(f64::NAN, |v| v.to_f64());
    let im = s.get(2 * i + 1).map_or(f64::NAN, |v| v.to_f64());
    Complex::new(re, im)
}

impl<P: Element> S4dParams<'_, P> {
    /// Checks every length against `h` and `n`.
    ///
    /// # Errors
    /// [`Error::Shape`] naming the array at fault; [`Error::Overflow`] naming `n`.
    pub fn check(&self) -> Result<()> {
        let hn2 = self
            .h
            .checked_mul(self.n)
            .and_then(|x| x.checked_mul(2))
            .ok_or(Error::Overflow { arg: "n" })?;
        len_check("log_dt", self.log_dt.len(), self.h)?;
        len_check("a", self.a.len(), hn2)?;
        len_check("b", self.b.len(), hn2)?;
        len_check("c", self.c.len(), hn2)?;
        len_check("d", self.d.len(), self.h)
    }
}

/// Parts of an [`S4d`] buffer, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Abar = 0,
    Bbar = 1,
    C = 2,
    LogAbar = 3,
    /// `C Bbar`: the kernel's weights.
    W = 4,
    /// `C Abar`: the weights of a chunk's response to its initial state.
    CAbar = 5,
}

/// An S4D model discretised into backend memory (accumulation type `R`), ready for the kernels.
///
/// The buffer (length [`S4d::mem_len`]) holds `Abar`, `Bbar`, `C`, `ln Abar`, `C Bbar`,
/// `C Abar` (each `[H, N, 2]`) and `D [H]`.
pub struct S4d<'m, B: Backend + ?Sized, R: Real> {
    h: usize,
    n: usize,
    mem: &'m B::Mem<R>,
}

impl<B: Backend + ?Sized, R: Real> core::fmt::Debug for S4d<'_, B, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("S4d")
            .field("h", &self.h)
            .field("n", &self.n)
            .finish()
    }
}

impl<'m, B: Backend + ?Sized, R: Real> S4d<'m, B, R> {
    /// Elements of `R` the model's buffer (and the host staging slice of [`S4d::new`]) holds:
    /// `12 H N + H`.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `n`.
    pub fn mem_len(h: usize, n: usize) -> Result<usize> {
        h.checked_mul(n)
            .and_then(|x| x.checked_mul(12))
            .and_then(|x| x.checked_add(h))
            .ok_or(Error::Overflow { arg: "n" })
    }

    /// Discretises `params` with `method` into `mem`, staging the values in `host` (both of
    /// length [`S4d::mem_len`]; the staging slice is free again when this returns).
    ///
    /// # Errors
    /// [`Error::Shape`] naming a parameter array, `mem` or `host` of the wrong length;
    /// [`Error::Param`] naming `log_dt` (NaN, infinite), `a` (`Re(a) >= 0` under
    /// [`Stability::Strict`], not finite), `b`, `c` or `d` (not finite); backend errors of the
    /// upload.
    pub fn new<P: Element>(
        backend: &B,
        params: &S4dParams<'_, P>,
        method: Discretization,
        stability: Stability,
        mem: &'m mut B::Mem<R>,
        host: &mut [R],
    ) -> Result<Self> {
        params.check()?;
        let (h, n) = (params.h, params.n);
        let len = Self::mem_len(h, n)?;
        len_check("mem", B::mem_len(mem), len)?;
        len_check("host", host.len(), len)?;
        let hn2 = 2 * h * n;
        for hh in 0..h {
            let log_dt = params.log_dt.get(hh).map_or(f64::NAN, |v| v.to_f64());
            let dt = dt_from_log(log_dt)?;
            let dv = params.d.get(hh).map_or(f64::NAN, |v| v.to_f64());
            if !dv.is_finite() {
                return Err(Error::Param {
                    arg: "d",
                    reason: "must be finite",
                });
            }
            if let Some(slot) = host.get_mut(12 * h * n + hh) {
                *slot = R::lit(dv);
            }
            for nn in 0..n {
                let i = hh * n + nn;
                let mode = discretize(method, dt, cplx(params.a, i), cplx(params.b, i), stability)?;
                let c = cplx(params.c, i);
                if !c.is_finite() {
                    return Err(Error::Param {
                        arg: "c",
                        reason: "must be finite",
                    });
                }
                let values = [
                    (Part::Abar, mode.abar),
                    (Part::Bbar, mode.bbar),
                    (Part::C, c),
                    (Part::LogAbar, mode.log_abar),
                    (Part::W, c * mode.bbar),
                    (Part::CAbar, c * mode.abar),
                ];
                for (part, v) in values {
                    let at = part as usize * hn2 + 2 * i;
                    if let Some([re, im]) = host.get_mut(at..at + 2) {
                        *re = R::lit(v.re);
                        *im = R::lit(v.im);
                    }
                }
            }
        }
        backend.write(host, mem)?;
        Ok(S4d { h, n, mem })
    }

    /// A model over a buffer already holding discretised values in [`S4d`]'s layout (written by
    /// [`S4d::new`] earlier, or by the caller: `Abar`, `Bbar`, `C`, `ln Abar`, `C Bbar`, `C Abar`,
    /// each `[H, N, 2]`, then `D [H]`).
    ///
    /// # Errors
    /// [`Error::Shape`] naming `mem` when its length is not [`S4d::mem_len`].
    pub fn from_discretized(h: usize, n: usize, mem: &'m B::Mem<R>) -> Result<Self> {
        len_check("mem", B::mem_len(mem), Self::mem_len(h, n)?)?;
        Ok(S4d { h, n, mem })
    }

    /// Channels `H`.
    pub fn channels(&self) -> usize {
        self.h
    }

    /// Complex modes `N` per channel.
    pub fn modes(&self) -> usize {
        self.n
    }

    fn part(&self, p: Part) -> Result<View<'m, B, R>> {
        let off = p as usize * 2 * self.h * self.n;
        View::new(self.mem, Layout::contiguous_at(off, &[self.h, self.n, 2])?)
    }

    fn d(&self) -> Result<View<'m, B, R>> {
        View::new(
            self.mem,
            Layout::contiguous_at(12 * self.h * self.n, &[self.h])?,
        )
    }

    /// The convolution kernel `k[h, l] = 2 Re(sum_n C Bbar Abar^l)` for `l < L` into
    /// `k [H, L]` (S4D eq. 6, a Vandermonde product: [`Backend::ssm_vandermonde`]).
    ///
    /// # Errors
    /// Shape errors naming `k`.
    pub fn kernel<T: Element<Acc = R>>(&self, backend: &B, k: ViewMut<'_, B, T>) -> Result<()> {
        backend.ssm_vandermonde::<T>(self.part(Part::LogAbar)?, self.part(Part::W)?, None, k)
    }

    /// Recurrent mode over `u [L, H]`: one step per token on `state [H, N, 2]` (caller memory,
    /// updated in place), writing `y [L, H]` when given ([`Backend::ssm_scan`]). With `L = 1` this
    /// is the streaming step; it allocates nothing.
    ///
    /// # Errors
    /// Shape errors naming `u`, `state` or `y`.
    pub fn scan<T: Element<Acc = R>>(
        &self,
        backend: &B,
        u: View<'_, B, T>,
        state: ViewMut<'_, B, R>,
        y: Option<ViewMut<'_, B, T>>,
    ) -> Result<()> {
        backend.ssm_scan::<T>(
            self.part(Part::Abar)?,
            self.part(Part::Bbar)?,
            self.part(Part::C)?,
            self.d()?,
            u,
            state,
            y,
        )
    }

    /// Convolution mode: `y = k * u + D u` by FFT ([`Backend::ssm_conv`]) with a kernel from
    /// [`S4d::kernel`] (`k [H, L]`, `u, y [L, H]`); `workspace` as
    /// [`Backend::ssm_conv_workspace_len`] asks.
    ///
    /// # Errors
    /// Shape errors naming `k`, `u`, `y` or `workspace`.
    pub fn conv<T: Element<Acc = R>>(
        &self,
        backend: &B,
        k: View<'_, B, T>,
        u: View<'_, B, T>,
        y: ViewMut<'_, B, T>,
        workspace: ViewMut<'_, B, R>,
    ) -> Result<()> {
        backend.ssm_conv::<T>(k, u, Some(self.d()?), y, workspace)
    }

    /// Elements of `T` that [`S4d::chunk`] needs as `scratch` for a chunk of `len` tokens:
    /// `2 H len`.
    ///
    /// # Errors
    /// [`Error::Overflow`] naming `len`.
    pub fn chunk_scratch_len(&self, len: usize) -> Result<usize> {
        len.checked_mul(self.h)
            .and_then(|x| x.checked_mul(2))
            .ok_or(Error::Overflow { arg: "len" })
    }

    /// Chunked mode: runs the chunk `u [T, H]` by convolution, starting from `state [H, N, 2]`,
    /// and carries the state onward (S4's "state forwarding"):
    ///
    /// `y_t = (k * u)_t + D u_t + 2 Re(sum_n C Abar^{t+1} x_0)`, then
    /// `x_T = Abar^T x_0 + sum_s Abar^{T-1-s} Bbar u_s` (by [`Backend::ssm_scan`] without output).
    ///
    /// `k [H, >= T]` is a kernel from [`S4d::kernel`] (at least as long as the chunk; its first `T`
    /// columns are used), `scratch` holds at least [`S4d::chunk_scratch_len`] elements of `T`, and
    /// `workspace` is the convolution's. Running a sequence chunk by chunk gives the same outputs
    /// as one [`S4d::scan`] over it, whatever the chunk sizes.
    ///
    /// # Errors
    /// Shape errors naming `k`, `u`, `state`, `y`, `scratch` or `workspace`.
    #[allow(clippy::too_many_arguments)] // the operands of one chunk
    pub fn chunk<T: Element<Acc = R>>(
        &self,
        backend: &B,
        k: View<'_, B, T>,
        u: View<'_, B, T>,
        state: ViewMut<'_, B, R>,
        y: ViewMut<'_, B, T>,
        scratch: &mut B::Mem<T>,
        workspace: ViewMut<'_, B, R>,
    ) -> Result<()> {
        let [t, uh] = *u.shape() else {
            return Err(Error::Rank {
                arg: "u",
                got: u.shape().len(),
                min: 2,
                max: 2,
            });
        };
        if uh != self.h {
            return Err(Error::Shape {
                arg: "u",
                axis: 1,
                got: uh,
                expected: self.h,
                shape: u.layout().dims(),
            });
        }
        seqcore::check::shape("state", state.layout(), &[self.h, self.n, 2])?;
        seqcore::check::shape("y", y.layout(), &[t, self.h])?;
        let [kh, kl] = *k.shape() else {
            return Err(Error::Rank {
                arg: "k",
                got: k.shape().len(),
                min: 2,
                max: 2,
            });
        };
        if kh != self.h || kl < t {
            return Err(Error::Shape {
                arg: "k",
                axis: usize::from(kh == self.h),
                got: if kh == self.h { kl } else { kh },
                expected: if kh == self.h { t } else { self.h },
                shape: k.layout().dims(),
            });
        }
        let need = self.chunk_scratch_len(t)?;
        if B::mem_len(scratch) < need {
            return Err(Error::Shape {
                arg: "scratch",
                axis: 0,
                got: B::mem_len(scratch),
                expected: need,
                shape: seqcore::Dims::new(&[B::mem_len(scratch)]),
            });
        }
        if t == 0 {
            return Ok(());
        }
        let th = t * self.h;
        let conv_l = Layout::contiguous(&[t, self.h])?;
        let resp_l = Layout::contiguous_at(th, &[self.h, t])?;
        // Convolution of the chunk's input, with the skip term.
        self.conv(
            backend,
            k.narrow(1, 0, t)?,
            u,
            ViewMut::new(&mut *scratch, conv_l)?,
            workspace,
        )?;
        // Response to the initial state: 2 Re(sum_n (C Abar) x_0 Abar^t).
        backend.ssm_vandermonde::<T>(
            self.part(Part::LogAbar)?,
            self.part(Part::CAbar)?,
            Some(state.as_view()),
            ViewMut::new(&mut *scratch, resp_l)?,
        )?;
        let scratch: &B::Mem<T> = scratch;
        backend.binary(
            Binary::Add,
            View::new(scratch, conv_l)?,
            View::new(scratch, resp_l)?.transpose(0, 1)?,
            y,
        )?;
        // Carry the state to the chunk's end.
        self.scan::<T>(backend, u, state, None)
    }
}
