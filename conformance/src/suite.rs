//! [`check_backend`]: every kernel property, in every element type, on one backend.

use std::time::Duration;

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use regex::Regex;
use seqcore::{Allocate, DType, Element, Reduce, SoftmaxKind, bf16, f16};

use crate::Failure;
use crate::compare::Agreement;
use crate::perf::{self, Timing};
use crate::properties::{self as p, Bench};

/// What [`check_backend`] runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Random cases per kernel and element type, on top of the fixed edge cases.
    pub cases: usize,
    /// Seed of the case generator: the same seed gives the same cases.
    pub seed: u64,
    /// Only kernels whose name matches.
    pub filter: Option<Regex>,
    /// Element types to run.
    pub dtypes: Vec<DType>,
    /// Time each kernel for this long (`None`: no timing).
    pub timing: Option<Duration>,
    /// Run the correctness properties (off for a timing-only run).
    pub checks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cases: 64,
            seed: 0x5EC0_C0DE,
            filter: None,
            dtypes: DType::ALL.to_vec(),
            timing: None,
            checks: true,
        }
    }
}

impl Config {
    /// A small run: few cases, short timing.
    pub fn quick() -> Self {
        Config {
            cases: 12,
            timing: Some(Duration::from_millis(20)),
            ..Config::default()
        }
    }

    /// Timing only, each kernel for at least `budget` after a warm-up.
    pub fn perf(budget: Duration) -> Self {
        Config {
            cases: 0,
            timing: Some(budget),
            checks: false,
            ..Config::default()
        }
    }

    pub(crate) fn wants(&self, kernel: &str) -> bool {
        self.filter.as_ref().is_none_or(|r| r.is_match(kernel))
    }
}

/// The seqcore kernels of the suite, in report order (the mechanisms' rows follow: [`kernels`]).
pub const KERNELS: [&str; 9] = [
    "gemm",
    "softmax",
    "log_softmax",
    "unary",
    "binary",
    "reduce",
    "cast",
    "top_k",
    "rejection",
];

/// Every row name of the suite: the seqcore [`KERNELS`], then each mechanism crate's rows.
pub fn kernels() -> Vec<&'static str> {
    KERNELS
        .iter()
        .chain(crate::mechanisms::KERNELS.iter().copied().flatten())
        .copied()
        .collect()
}

/// One kernel in one element type on one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Kernel name (one of [`kernels`]).
    pub kernel: &'static str,
    /// Backend name.
    pub backend: &'static str,
    /// Element type.
    pub dtype: DType,
    /// Cases run.
    pub cases: usize,
    /// Cases failed.
    pub failed: usize,
    /// The worst agreement over the cases that passed.
    pub agreement: Agreement,
    /// The first failure: the case (its `Debug` form, shortened) and why.
    pub first_failure: Option<(String, Failure)>,
    /// The operation the backend answered [`seqcore::Error::Unsupported`] for, when it did: an
    /// optional capability it lacks (DESIGN: never a wrong result). Such cases are neither passed
    /// nor failed; a row whose every case was unsupported is reported `unsup`.
    pub unsupported: Option<&'static str>,
    /// True when the backend's memory is host memory ([`seqcore::Backend::host`]): only then is
    /// a timing compared with the host's measured peak.
    pub on_host: bool,
    /// Speed, when timed.
    pub timing: Option<Timing>,
}

impl Row {
    /// True when every case passed.
    pub fn passed(&self) -> bool {
        self.failed == 0
    }

    /// True when the backend answered `Unsupported` for this row's kernel and no case ran.
    pub fn is_unsupported(&self) -> bool {
        self.cases == 0 && self.unsupported.is_some()
    }

    /// Marks the row's kernel as one the backend does not support (`op`).
    pub(crate) fn mark_unsupported(&mut self, op: &'static str) {
        self.unsupported = Some(op);
    }
}

/// Everything [`check_backend`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// One row per kernel and element type.
    pub rows: Vec<Row>,
}

impl Report {
    /// True when every row passed.
    pub fn passed(&self) -> bool {
        self.rows.iter().all(Row::passed)
    }
}

/// Draws `n` values from `s`, deterministically from `seed`.
pub fn sample<S: Strategy>(s: &S, n: usize, seed: u64) -> Vec<S::Value> {
    let mut bytes = [0u8; 32];
    for (chunk, i) in bytes.chunks_mut(8).zip(0u64..) {
        let word = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let mut runner = TestRunner::new_with_rng(proptest::test_runner::Config::default(), rng);
    (0..n)
        .filter_map(|_| s.new_tree(&mut runner).ok().map(|t| t.current()))
        .collect()
}

fn describe<C: core::fmt::Debug>(c: &C) -> String {
    let s = format!("{c:?}");
    if s.len() > 160 {
        format!("{}...", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

/// Runs every kernel property in every element type of `config` on `backend`, against the f64
/// reference: fixed edge cases first, then `config.cases` random ones per kernel and type.
///
/// Works on any [`Allocate`] backend, including one written outside this workspace.
pub fn check_backend<B: Allocate>(backend: &B, config: &Config) -> Report {
    let mut rows = Vec::new();
    for &dt in &config.dtypes {
        match dt {
            DType::F64 => run_dtype::<B, f64>(backend, config, &mut rows),
            DType::F32 => run_dtype::<B, f32>(backend, config, &mut rows),
            DType::F16 => run_dtype::<B, f16>(backend, config, &mut rows),
            DType::BF16 => run_dtype::<B, bf16>(backend, config, &mut rows),
            _ => {}
        }
    }
    Report { rows }
}

impl Row {
    pub(crate) fn new<B: Allocate, T: Element>(b: &B, kernel: &'static str) -> Row {
        Row {
            kernel,
            backend: b.name(),
            dtype: T::DTYPE,
            cases: 0,
            failed: 0,
            agreement: Agreement::default(),
            first_failure: None,
            unsupported: None,
            on_host: b
                .alloc::<u8>(0)
                .is_ok_and(|m| B::host(core::borrow::Borrow::borrow(&m)).is_some()),
            timing: None,
        }
    }

    pub(crate) fn add<C: core::fmt::Debug>(&mut self, case: &C, r: Result<Agreement, Failure>) {
        if let Err(Failure::Kernel(seqcore::Error::Unsupported { op, .. })) = r {
            self.mark_unsupported(op);
            return;
        }
        self.cases += 1;
        match r {
            Ok(a) => self.agreement = self.agreement.worst(a),
            Err(f) => {
                self.failed += 1;
                if self.first_failure.is_none() {
                    self.first_failure = Some((describe(case), f));
                }
            }
        }
    }

    /// The fixed edge cases, unless this is a timing-only run; if they cannot be built, that is
    /// a failed case of the row, not a silent gap.
    pub(crate) fn fixed<C>(&mut self, config: &Config, cases: Result<Vec<C>, Failure>) -> Vec<C> {
        match cases {
            _ if !config.checks => Vec::new(),
            Ok(v) => v,
            Err(f) => {
                self.add(&"edge cases", Err(f));
                Vec::new()
            }
        }
    }

    pub(crate) fn time(&mut self, config: &Config, bench: Result<Bench<'_>, Failure>) {
        if let Some(t) = config.timing {
            match bench.and_then(|b| perf::time(b, t)) {
                Ok(timing) => self.timing = Some(timing),
                Err(f) => self.add(&"timing", Err(f)),
            }
        }
    }
}

fn run_dtype<B: Allocate, T: Element>(b: &B, config: &Config, rows: &mut Vec<Row>) {
    let seed = config.seed ^ (T::DTYPE as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let n = if config.checks { config.cases } else { 0 };
    if config.wants("gemm") {
        let mut row = Row::new::<B, T>(b, "gemm");
        let cases = row
            .fixed(config, p::gemm::edge_cases())
            .into_iter()
            .chain(sample(&p::gemm::cases(), n, seed));
        for c in cases {
            row.add(&c, p::gemm::check::<B, T>(b, &c));
        }
        row.time(config, p::gemm::bench::<B, T>(b, 128, 128, 128));
        rows.push(row);
    }
    for (kernel, kind) in [
        ("softmax", SoftmaxKind::Softmax),
        ("log_softmax", SoftmaxKind::LogSoftmax),
    ] {
        if !config.wants(kernel) {
            continue;
        }
        let mut row = Row::new::<B, T>(b, kernel);
        let edge = row
            .fixed(config, p::softmax::edge_cases())
            .into_iter()
            .filter(|c| c.kind == kind);
        let random = sample(&p::softmax::cases(), n, seed ^ 1)
            .into_iter()
            .map(|c| p::softmax::Case { kind, ..c });
        for c in edge.chain(random) {
            row.add(&c, p::softmax::check::<B, T>(b, &c));
        }
        row.time(config, p::softmax::bench::<B, T>(b, kind, 64, 1024));
        rows.push(row);
    }
    if config.wants("unary") {
        let mut row = Row::new::<B, T>(b, "unary");
        let cases = row
            .fixed(config, p::elementwise::unary_edge_cases())
            .into_iter()
            .chain(sample(&p::elementwise::unary_cases(), n * 2, seed ^ 2));
        for c in cases {
            row.add(&c, p::elementwise::check_unary::<B, T>(b, &c));
        }
        row.time(config, p::elementwise::bench_unary::<B, T>(b, 1 << 16));
        rows.push(row);
    }
    if config.wants("binary") {
        let mut row = Row::new::<B, T>(b, "binary");
        for c in sample(&p::elementwise::binary_cases(), n, seed ^ 3) {
            row.add(&c, p::elementwise::check_binary::<B, T>(b, &c));
        }
        row.time(config, p::elementwise::bench_binary::<B, T>(b, 1 << 16));
        rows.push(row);
    }
    if config.wants("reduce") {
        let mut row = Row::new::<B, T>(b, "reduce");
        let cases = row
            .fixed(config, p::reduce::edge_cases())
            .into_iter()
            .chain(sample(&p::reduce::cases(), n, seed ^ 4));
        for c in cases {
            row.add(&c, p::reduce::check::<B, T>(b, &c));
        }
        row.time(config, p::reduce::bench::<B, T>(b, Reduce::Sum, 256, 1024));
        rows.push(row);
    }
    if config.wants("cast") {
        let mut row = Row::new::<B, T>(b, "cast");
        for (x, y) in sample(&p::elementwise::cast_inputs(), n, seed ^ 5) {
            row.add(&x, p::elementwise::check_cast::<B, T, f64>(b, &x, y));
            row.add(&x, p::elementwise::check_cast::<B, T, f32>(b, &x, y));
            row.add(&x, p::elementwise::check_cast::<B, T, f16>(b, &x, y));
            row.add(&x, p::elementwise::check_cast::<B, T, bf16>(b, &x, y));
        }
        row.time(config, p::elementwise::bench_cast::<B, T>(b, 1 << 16));
        rows.push(row);
    }
    if config.wants("top_k") {
        let mut row = Row::new::<B, T>(b, "top_k");
        for c in sample(&p::top_k::cases(), n, seed ^ 6) {
            row.add(&c, p::top_k::check::<B, T>(b, &c));
        }
        row.time(config, p::top_k::bench::<B, T>(b, 64, 1024, 8));
        rows.push(row);
    }
    crate::mechanisms::rows::<B, T>(b, config, seed, n, rows);
    crate::peers::rows::<B, T>(b, config, rows);
    if config.wants("rejection") && config.checks {
        let mut row = Row::new::<B, T>(b, "rejection");
        match p::rejection::check::<B, T>(b) {
            Ok(count) => {
                row.cases = count;
            }
            Err(f) => row.add(&"bad-input table", Err(f)),
        }
        rows.push(row);
    }
}
