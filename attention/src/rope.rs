//! Rotary position embedding (RoPE) and its context-extension scalings.
//!
//! Su et al., *RoFormer* (2021), eq. (34): a token at position `m` has its feature pairs rotated by
//! `m * theta_i`, `theta_i = base^(-2i/r)`, so that `<R(m) q, R(n) k>` depends on `m - n` only.
//! [`RopeConfig`] computes the frequency table `theta_i` and the attention factor with the
//! formulas of Hugging Face transformers' `modeling_rope_utils` (`ROPE_INIT_FUNCTIONS`); the
//! rotation itself is the fused kernel [`Backend::rope`].
//!
//! | scaling | table (`r` = rotary dim, `i < r/2`) | attention factor |
//! | --- | --- | --- |
//! | [`RopeScaling::Default`] | `1 / base^(2i/r)` | 1 |
//! | [`RopeScaling::Linear`] (position interpolation) | default `/ factor` | 1 |
//! | [`RopeScaling::Ntk`] (NTK-aware, `alpha`) | default with `base * alpha^(r/(r-2))` | 1 |
//! | [`RopeScaling::Dynamic`] (dynamic NTK) | default with `base * (factor s / M - (factor - 1))^(r/(r-2))`, `s = max(seq_len, M)` | 1 |
//! | [`RopeScaling::Yarn`] (Peng et al. 2023) | interpolation / extrapolation blended by a linear ramp between the correction dims of `beta_fast`, `beta_slow` | `0.1 ln(factor) + 1` (or `mscale`, `mscale_all_dim`) |
//! | [`RopeScaling::Llama3`] | low frequencies `/ factor`, high kept, smooth blend between | 1 |
//! | [`RopeScaling::LongRope`] (Ding et al. 2024) | `1 / (ext_i base^(2i/r))`, `ext` = long factors when `seq_len > M_orig`, else short | `sqrt(1 + ln(factor) / ln(M_orig))` |
//!
//! `M` is `max_position_embeddings`.
//!
//! # Precision of the table
//!
//! Hugging Face computes the table in float32 tensors. [`FreqPrecision::Float32`] (the default)
//! reproduces that: every tensor operation of `modeling_rope_utils` is rounded to f32 in the same
//! order (powers are correctly rounded; PyTorch's vectorised `pow` differs from that by one f32
//! ulp in about 2% of entries, which moves an angle by `m * theta_i * 2^-24`).
//! [`FreqPrecision::Float64`] computes the same formulas in f64 (the table is then exact to a few
//! f64 ulps). Either way the angle `m * theta_i` is formed in f64 by the kernel, never in f32.

use seqcore::portable::rope::{RopeLayout, RopePositions};
use seqcore::{Backend, Element, Error, Result, View, ViewMut};

/// In which precision the frequency table is computed (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FreqPrecision {
    /// As Hugging Face transformers: float32 tensor arithmetic, operation by operation.
    #[default]
    Float32,
    /// The same formulas in f64.
    Float64,
}

/// YaRN parameters (Peng et al., *YaRN: Efficient Context Window Extension of Large Language
/// Models*, 2023, eq. (17)-(21)); the fields are Hugging Face's `rope_scaling` keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// `factor`: the context extension (replaced by `max_position_embeddings /
    /// original_max_position_embeddings` when the latter is given, as in Hugging Face).
    pub factor: f64,
    /// `original_max_position_embeddings`: the pre-training context (default:
    /// `max_position_embeddings`).
    pub original_max_position_embeddings: Option<usize>,
    /// `attention_factor`: overrides the computed `mscale`.
    pub attention_factor: Option<f64>,
    /// `beta_fast` (default 32): rotations above which dimensions extrapolate.
    pub beta_fast: Option<f64>,
    /// `beta_slow` (default 1): rotations below which dimensions interpolate.
    pub beta_slow: Option<f64>,
    /// `mscale` (DeepSeek-V2 style): with `mscale_all_dim`, the attention factor is
    /// `get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)`.
    pub mscale: Option<f64>,
    /// `mscale_all_dim`.
    pub mscale_all_dim: Option<f64>,
    /// `truncate` (default true): round the correction range outward to whole dimensions.
    pub truncate: bool,
}

impl Yarn {
    /// YaRN with `factor` and Hugging Face's defaults for everything else.
    pub const fn new(factor: f64) -> Yarn {
        Yarn {
            factor,
            original_max_position_embeddings: None,
            attention_factor: None,
            beta_fast: None,
            beta_slow: None,
            mscale: None,
            mscale_all_dim: None,
            truncate: true,
        }
    }
}

/// LongRoPE parameters (Ding et al., *LongRoPE*, 2024; Phi-3); Hugging Face's keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LongRope<'a> {
    /// `short_factor`: one rescale factor per frequency (`r/2` of them), for sequences within the
    /// original context.
    pub short_factor: &'a [f64],
    /// `long_factor`: the same, for longer sequences.
    pub long_factor: &'a [f64],
    /// `factor` (needed unless `original_max_position_embeddings` is given).
    pub factor: Option<f64>,
    /// `attention_factor`: overrides the computed one.
    pub attention_factor: Option<f64>,
    /// The model's `original_max_position_embeddings`: when given, `factor` becomes
    /// `max_position_embeddings / original_max_position_embeddings` (as in Hugging Face).
    pub original_max_position_embeddings: Option<usize>,
}

/// Which RoPE variant: Hugging Face's `rope_type` with its parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum RopeScaling<'a> {
    /// Plain RoPE (`"default"`).
    #[default]
    Default,
    /// Position interpolation (`"linear"`, Chen et al. 2023): frequencies divided by `factor`.
    Linear {
        /// `factor`.
        factor: f64,
    },
    /// NTK-aware scaling (the fixed "alpha" form, bloc97 2023): base `theta * alpha^(r/(r-2))`.
    Ntk {
        /// `alpha` (the vector format's `factor`).
        alpha: f64,
    },
    /// Dynamic NTK (`"dynamic"`): the NTK base grows with the current sequence length.
    Dynamic {
        /// `factor`.
        factor: f64,
    },
    /// YaRN (`"yarn"`).
    Yarn(Yarn),
    /// Llama 3.1 (`"llama3"`).
    Llama3 {
        /// `factor` (8 in Llama 3.1).
        factor: f64,
        /// `low_freq_factor` (1).
        low_freq_factor: f64,
        /// `high_freq_factor` (4).
        high_freq_factor: f64,
        /// `original_max_position_embeddings` (8192).
        original_max_position_embeddings: usize,
    },
    /// LongRoPE (`"longrope"`).
    LongRope(LongRope<'a>),
}

/// A RoPE configuration: the fields of a Hugging Face config that RoPE reads.
///
/// ```
/// use seq_attention::rope::{RopeConfig, RopeScaling};
/// use seqcore::portable::rope::RopePositions;
/// use seqcore::{Backend, Reference};
///
/// // q of one sequence: [B=1, H=1, L=2, D=4], rotated in place at positions 7 and 8.
/// let cfg = RopeConfig::new(10_000.0, 4).with_scaling(RopeScaling::Linear { factor: 2.0 });
/// let mut q = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
/// let mut table = [0.0f64; 2];
/// let b = Reference;
/// cfg.apply(&b, 9, RopePositions::Offset(7), None, b.view_mut(&mut q, &[1, 1, 2, 4])?, &mut table)?;
/// // Feature 0 pairs with feature 2 (rotate-half); frequency 1/2 at position 7: angle 3.5.
/// assert!((q[0] - 3.5f32.cos()).abs() < 1e-6 && (q[2] - 3.5f32.sin()).abs() < 1e-6);
/// # Ok::<(), seqcore::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeConfig<'a> {
    /// `rope_theta`: the base of the frequencies (10000 in RoFormer and Llama 2).
    pub theta: f64,
    /// Features per head `D`.
    pub head_dim: usize,
    /// Rotated features `r` (even, at most `D`; Hugging Face's `head_dim * partial_rotary_factor`).
    pub rotary_dim: usize,
    /// Pairing of the features.
    pub layout: RopeLayout,
    /// `max_position_embeddings` (read by dynamic NTK, YaRN and LongRoPE).
    pub max_position_embeddings: usize,
    /// The variant.
    pub scaling: RopeScaling<'a>,
    /// Precision of the table.
    pub precision: FreqPrecision,
}

fn param(arg: &'static str, reason: &'static str) -> Error {
    Error::Param { arg, reason }
}

fn positive(arg: &'static str, x: f64) -> Result<f64> {
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(param(arg, "must be finite and positive"))
    }
}

fn nonzero(arg: &'static str, x: usize) -> Result<usize> {
    if x == 0 {
        Err(param(arg, "must be positive"))
    } else {
        Ok(x)
    }
}

/// Converts a count to f64 (exact below 2^53).
#[allow(clippy::cast_precision_loss)]
fn fl(x: usize) -> f64 {
    x as f64
}

/// YaRN's `get_mscale`.
fn get_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * libm::log(scale) + 1.0
    }
}

impl<'a> RopeConfig<'a> {
    /// Plain RoPE of base `theta` over all `head_dim` features, rotate-half layout,
    /// `max_position_embeddings` 2048, table as Hugging Face computes it.
    pub const fn new(theta: f64, head_dim: usize) -> RopeConfig<'a> {
        RopeConfig {
            theta,
            head_dim,
            rotary_dim: head_dim,
            layout: RopeLayout::Half,
            max_position_embeddings: 2048,
            scaling: RopeScaling::Default,
            precision: FreqPrecision::Float32,
        }
    }

    /// With another feature pairing.
    #[must_use]
    pub const fn with_layout(mut self, layout: RopeLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Rotating only the first `rotary_dim` features (partial rotary).
    #[must_use]
    pub const fn with_rotary_dim(mut self, rotary_dim: usize) -> Self {
        self.rotary_dim = rotary_dim;
        self
    }

    /// With a scaling variant.
    #[must_use]
    pub const fn with_scaling(mut self, scaling: RopeScaling<'a>) -> Self {
        self.scaling = scaling;
        self
    }

    /// With `max_position_embeddings`.
    #[must_use]
    pub const fn with_max_position_embeddings(mut self, m: usize) -> Self {
        self.max_position_embeddings = m;
        self
    }

    /// With a table precision.
    #[must_use]
    pub const fn with_precision(mut self, p: FreqPrecision) -> Self {
        self.precision = p;
        self
    }

    /// Frequencies in the table: `rotary_dim / 2`.
    pub const fn pairs(&self) -> usize {
        self.rotary_dim / 2
    }

    /// Checks every parameter.
    ///
    /// # Errors
    /// [`Error::Param`] naming the parameter: `theta` (NaN, infinite or not positive),
    /// `rotary_dim` (odd, above `head_dim`, or 2 with an NTK base change), `factor`, `alpha`,
    /// `beta_fast`, `beta_slow`, `mscale`, `mscale_all_dim`, `attention_factor`,
    /// `low_freq_factor`, `high_freq_factor` (not above `low_freq_factor`),
    /// `original_max_position_embeddings`, `max_position_embeddings`, `short_factor`,
    /// `long_factor` (wrong length, or an entry not finite and positive).
    pub fn validate(&self) -> Result<()> {
        positive("theta", self.theta)?;
        if self.rotary_dim % 2 != 0 {
            return Err(param("rotary_dim", "must be even"));
        }
        if self.rotary_dim > self.head_dim {
            return Err(param("rotary_dim", "must not exceed head_dim"));
        }
        let ntk_base = matches!(
            self.scaling,
            RopeScaling::Ntk { .. } | RopeScaling::Dynamic { .. }
        );
        if ntk_base && self.rotary_dim <= 2 {
            return Err(param(
                "rotary_dim",
                "must exceed 2 for an NTK base change (exponent r/(r-2))",
            ));
        }
        match self.scaling {
            RopeScaling::Default => {}
            RopeScaling::Linear { factor } => {
                positive("factor", factor)?;
            }
            RopeScaling::Ntk { alpha } => {
                positive("alpha", alpha)?;
            }
            RopeScaling::Dynamic { factor } => {
                positive("factor", factor)?;
                nonzero("max_position_embeddings", self.max_position_embeddings)?;
            }
            RopeScaling::Yarn(y) => {
                positive("factor", y.factor)?;
                nonzero("max_position_embeddings", self.max_position_embeddings)?;
                if let Some(o) = y.original_max_position_embeddings {
                    nonzero("original_max_position_embeddings", o)?;
                }
                if let Some(a) = y.attention_factor {
                    if !(a.is_finite() && a >= 0.0) {
                        return Err(param("attention_factor", "must be finite and >= 0"));
                    }
                }
                positive("beta_fast", y.beta_fast.unwrap_or(32.0))?;
                positive("beta_slow", y.beta_slow.unwrap_or(1.0))?;
                for (arg, v) in [("mscale", y.mscale), ("mscale_all_dim", y.mscale_all_dim)] {
                    if v.is_some_and(|v| !v.is_finite()) {
                        return Err(param(arg, "must be finite"));
                    }
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                positive("factor", factor)?;
                positive("low_freq_factor", low_freq_factor)?;
                positive("high_freq_factor", high_freq_factor)?;
                if high_freq_factor <= low_freq_factor {
                    return Err(param("high_freq_factor", "must exceed low_freq_factor"));
                }
                nonzero(
                    "original_max_position_embeddings",
                    original_max_position_embeddings,
                )?;
            }
            RopeScaling::LongRope(l) => {
                nonzero("max_position_embeddings", self.max_position_embeddings)?;
                for (arg, f) in [
                    ("short_factor", l.short_factor),
                    ("long_factor", l.long_factor),
                ] {
                    if f.len() != self.pairs() {
                        return Err(param(arg, "must hold rotary_dim / 2 factors"));
                    }
                    if f.iter().any(|&v| !(v.is_finite() && v > 0.0)) {
                        return Err(param(arg, "must hold finite positive factors"));
                    }
                }
                match l.original_max_position_embeddings {
                    Some(o) => {
                        nonzero("original_max_position_embeddings", o)?;
                    }
                    None => {
                        positive("factor", l.factor.unwrap_or(f64::NAN))?;
                    }
                }
                if let Some(a) = l.attention_factor {
                    if !(a.is_finite() && a >= 0.0) {
                        return Err(param("attention_factor", "must be finite and >= 0"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the frequency table `theta_i` (`rotary_dim / 2` entries) into `out` and returns the
    /// attention factor, for a current sequence length `seq_len` (read by dynamic NTK and
    /// LongRoPE only; Hugging Face uses `max(position_ids) + 1`).
    ///
    /// Dynamic NTK in Hugging Face keeps the largest length seen so far (until the sequence drops
    /// back within `max_position_embeddings`): pass that length to get its numbers.
    ///
    /// # Errors
    /// As [`RopeConfig::validate`]; [`Error::Capacity`] naming `inv_freq` when `out` is shorter
    /// than `rotary_dim / 2`.
    pub fn inv_freq(&self, seq_len: usize, out: &mut [f64]) -> Result<f64> {
        self.validate()?;
        let pairs = self.pairs();
        let capacity = out.len();
        let out = out.get_mut(..pairs).ok_or(Error::Capacity {
            arg: "inv_freq",
            needed: pairs,
            capacity,
        })?;
        let f32mode = self.precision == FreqPrecision::Float32;
        // `r(x)`: a float32 tensor operation's rounding (identity in f64 mode).
        #[allow(clippy::cast_possible_truncation)]
        let r = move |x: f64| if f32mode { f64::from(x as f32) } else { x };
        let dim = fl(self.rotary_dim);
        // base ** (arange(0, dim, 2).float() / dim), then 1 / that.
        let exponent = |i: usize| r(fl(2 * i) / dim);
        let power = |base: f64, i: usize| r(libm::pow(r(base), exponent(i)));
        let default = |base: f64, out: &mut [f64]| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = r(1.0 / power(base, i));
            }
        };
        let theta = self.theta;
        let mpe = fl(self.max_position_embeddings);
        let mut attention_factor = 1.0;
        match self.scaling {
            RopeScaling::Default => default(theta, out),
            RopeScaling::Linear { factor } => {
                default(theta, out);
                for o in out.iter_mut() {
                    *o = r(*o / r(factor));
                }
            }
            RopeScaling::Ntk { alpha } => {
                default(theta * libm::pow(alpha, dim / (dim - 2.0)), out);
            }
            RopeScaling::Dynamic { factor } => {
                // Hugging Face's tensor path (seq_len is a tensor at inference): every operation
                // in float32. With seq_len <= max_position_embeddings the base is unchanged.
                let s = fl(seq_len).max(mpe);
                let grown = r(r(r(r(factor) * r(s)) / r(mpe)) - r(factor - 1.0));
                let base = r(theta * libm::pow(grown, dim / (dim - 2.0)));
                default(base, out);
            }
            RopeScaling::Yarn(y) => {
                let (factor, original) = match y.original_max_position_embeddings {
                    Some(o) => (mpe / fl(o), fl(o)),
                    None => (y.factor, mpe),
                };
                attention_factor = match (y.attention_factor, y.mscale, y.mscale_all_dim) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(ma)) if m != 0.0 && ma != 0.0 => {
                        get_mscale(factor, m) / get_mscale(factor, ma)
                    }
                    _ => get_mscale(factor, 1.0),
                };
                let beta_fast = y.beta_fast.filter(|&b| b != 0.0).unwrap_or(32.0);
                let beta_slow = y.beta_slow.filter(|&b| b != 0.0).unwrap_or(1.0);
                let correction_dim = |rot: f64| {
                    dim * libm::log(original / (rot * 2.0 * core::f64::consts::PI))
                        / (2.0 * libm::log(theta))
                };
                let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
                if y.truncate {
                    low = libm::floor(low);
                    high = libm::ceil(high);
                }
                let low = low.max(0.0);
                let mut high = high.min(dim - 1.0);
                if low == high {
                    high += 0.001;
                }
                for (i, o) in out.iter_mut().enumerate() {
                    let pos = power(theta, i);
                    let extrapolation = r(1.0 / pos);
                    let interpolation = r(1.0 / r(r(factor) * pos));
                    let ramp = r(r(fl(i) - r(low)) / r(high - low)).clamp(0.0, 1.0);
                    let extrapolation_factor = r(1.0 - ramp);
                    *o = r(r(interpolation * r(1.0 - extrapolation_factor))
                        + r(extrapolation * extrapolation_factor));
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                default(theta, out);
                let old = fl(original_max_position_embeddings);
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for o in out.iter_mut() {
                    let inv = *o;
                    let wavelen = r(r(2.0 * core::f64::consts::PI) / inv);
                    let scaled = if wavelen > low_wavelen {
                        r(inv / r(factor))
                    } else {
                        inv
                    };
                    let smooth = r(r(r(r(old) / wavelen) - r(low_freq_factor))
                        / r(high_freq_factor - low_freq_factor));
                    let smoothed =
                        r(r(r(r(1.0 - smooth) * scaled) / r(factor)) + r(smooth * scaled));
                    // Hugging Face: ~(wavelen < high) * ~(wavelen > low); the table is finite here.
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    *o = if medium { smoothed } else { scaled };
                }
            }
            RopeScaling::LongRope(l) => {
                let (factor, original) = match l.original_max_position_embeddings {
                    Some(o) => (mpe / fl(o), fl(o)),
                    None => (l.factor.unwrap_or(1.0), mpe),
                };
                attention_factor = match l.attention_factor {
                    Some(a) => a,
                    None if factor <= 1.0 => 1.0,
                    None => libm::sqrt(1.0 + libm::log(factor) / libm::log(original)),
                };
                let ext = if fl(seq_len) > original {
                    l.long_factor
                } else {
                    l.short_factor
                };
                for ((i, o), &e) in out.iter_mut().enumerate().zip(ext) {
                    *o = r(1.0 / r(r(e) * power(theta, i)));
                }
            }
        }
        if out.iter().any(|f| !f.is_finite()) {
            return Err(param("theta", "gives a frequency table that is not finite"));
        }
        Ok(attention_factor)
    }

    /// Rotates `x [B, H, L, D]` into `y` (or `y` in place when `x` is `None`) at `positions`,
    /// with the table for sequence length `seq_len` written into `table` (at least
    /// `rotary_dim / 2` entries). For a hot loop, compute the table once with
    /// [`RopeConfig::inv_freq`] and call [`Backend::rope`] directly.
    ///
    /// # Errors
    /// As [`RopeConfig::inv_freq`]; [`Error::Param`] naming `head_dim` when the tensors' last
    /// extent differs from it; the kernel's errors ([`Backend::rope`]).
    pub fn apply<B: Backend, T: Element>(
        &self,
        b: &B,
        seq_len: usize,
        positions: RopePositions<'_, B>,
        x: Option<View<'_, B, T>>,
        y: ViewMut<'_, B, T>,
        table: &mut [f64],
    ) -> Result<()> {
        if y.shape().last().is_some_and(|&d| d != self.head_dim) {
            return Err(param("head_dim", "differs from the last extent of y"));
        }
        let af = self.inv_freq(seq_len, table)?;
        let t = table.get(..self.pairs()).unwrap_or(&[]);
        b.rope(self.layout, t, af, positions, x, y)
    }
}
