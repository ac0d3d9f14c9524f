//! Golden vectors: the `seq-vectors/1` format (`vectors/FORMAT.md` of this crate) and its runner.
//!
//! A vector is one case computed by an implementation that is not ours. The runner rounds its
//! inputs to the case's element type, runs the mechanism on a backend with guarded outputs, and
//! holds every element to the case's `atol + rtol * |expected|`, after checking that NaN and
//! infinities sit where the expected values have them. Anything wrong with a file (bad JSON, an
//! unknown mechanism, a missing input, a shape that does not match its data) is a failed case with
//! a one-line reason, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seqcore::{Allocate, DType, Element, Reduce, SoftmaxKind, Unary, bf16, f16};
use serde_json::Value;

use crate::Failure;
use crate::compare::{Agreement, Bound, compare, compare_exact};
use crate::harness::{Input, Output, Tensor, widen};

/// The seqcore mechanisms this build can run (rows of the format's table); [`mechanisms`] adds
/// the mechanism crates' own.
pub const MECHANISMS: [&str; 6] = ["softmax", "log_softmax", "gemm", "unary", "reduce", "top_k"];

/// Every mechanism this build can run: [`MECHANISMS`], then each mechanism crate's.
pub fn mechanisms() -> Vec<&'static str> {
    MECHANISMS
        .iter()
        .chain(crate::mechanisms::VECTORS.iter().copied().flatten())
        .copied()
        .collect()
}

/// A tensor of a vector file: shape and row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    /// Extents.
    pub shape: Vec<usize>,
    /// Elements (`"inf"`, `"-inf"`, `"nan"` parsed).
    pub data: Vec<f64>,
}

/// One parsed case.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// Its id.
    pub id: String,
    /// Which mechanism.
    pub mechanism: String,
    /// The element type it runs in.
    pub dtype: DType,
    /// Parameters, as written.
    pub params: serde_json::Map<String, Value>,
    /// Inputs by name.
    pub inputs: BTreeMap<String, Data>,
    /// Expected outputs by name.
    pub expected: BTreeMap<String, Data>,
    /// The bound every element must meet.
    pub tolerance: Bound,
}

/// A case as read from a file: parsed, or why it could not be.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The file.
    pub file: PathBuf,
    /// The id (or `#index` when the case has none).
    pub id: String,
    /// The case, or why it is unusable.
    pub case: Result<Case, Failure>,
}

pub(crate) fn bad(s: impl Into<String>) -> Failure {
    Failure::Setup(s.into())
}

pub(crate) fn number(v: &Value) -> Result<f64, Failure> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| bad(format!("number {n} out of range"))),
        Value::String(s) => match s.as_str() {
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            "nan" => Ok(f64::NAN),
            other => Err(bad(format!("`{other}` is not a number"))),
        },
        other => Err(bad(format!("`{other}` is not a number"))),
    }
}

fn data(name: &str, v: &Value) -> Result<Data, Failure> {
    let shape = v
        .get("shape")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("`{name}` has no shape")))?
        .iter()
        .map(|d| {
            d.as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| bad(format!("`{name}`: bad extent {d}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("`{name}` has no data")))?
        .iter()
        .map(number)
        .collect::<Result<Vec<_>, _>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("`{name}`: shape overflows")))?;
    if n != data.len() {
        return Err(bad(format!(
            "`{name}` has shape {shape:?} but {} elements",
            data.len()
        )));
    }
    Ok(Data { shape, data })
}

fn tensors(v: &Value, what: &str) -> Result<BTreeMap<String, Data>, Failure> {
    let obj = v
        .get(what)
        .and_then(Value::as_object)
        .ok_or_else(|| bad(format!("no `{what}` object")))?;
    obj.iter()
        .map(|(k, t)| Ok((k.clone(), data(k, t)?)))
        .collect()
}

/// Parses one case object.
///
/// # Errors
/// A one-line reason.
pub fn parse_case(v: &Value) -> Result<Case, Failure> {
    let format = v.get("format").and_then(Value::as_str).unwrap_or("");
    if format != "seq-vectors/1" {
        return Err(bad(format!("format `{format}`, expected `seq-vectors/1`")));
    }
    let s = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad(format!("no `{k}`")))
    };
    let dtype_name = s("dtype")?;
    let dtype = DType::from_name(&dtype_name)
        .ok_or_else(|| bad(format!("unknown dtype `{dtype_name}`")))?;
    let tol = v
        .get("tolerance")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no `tolerance` object"))?;
    if let Some(k) = tol.keys().find(|k| !["atol", "rtol"].contains(&k.as_str())) {
        return Err(bad(format!("unknown tolerance key `{k}`")));
    }
    let t = |k: &str| {
        tol.get(k)
            .map(number)
            .unwrap_or_else(|| Err(bad(format!("no tolerance `{k}`"))))
    };
    let tolerance = Bound {
        atol: t("atol")?,
        rtol: t("rtol")?,
    };
    if !(tolerance.atol >= 0.0 && tolerance.rtol >= 0.0) {
        return Err(bad("tolerance must be non-negative"));
    }
    Ok(Case {
        id: s("id")?,
        mechanism: s("mechanism")?,
        dtype,
        params: v
            .get("params")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        inputs: tensors(v, "inputs")?,
        expected: tensors(v, "expected")?,
        tolerance,
    })
}

/// Reads every case of `path`: a file, or every `*.json` under a folder (sorted). A file that
/// cannot be read or parsed is one entry with the reason.
pub fn load(path: &Path) -> Vec<Entry> {
    let mut files = Vec::new();
    collect(path, &mut files);
    let mut out = Vec::new();
    for file in files {
        let read = std::fs::read_to_string(&file).map_err(|e| format!("cannot read: {e}"));
        let value = read
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| format!("bad JSON: {e}")));
        let value = match value {
            Ok(v) => v,
            Err(why) => {
                out.push(Entry {
                    id: file.display().to_string(),
                    file,
                    case: Err(bad(why)),
                });
                continue;
            }
        };
        let items = match value {
            Value::Array(a) => a,
            other => vec![other],
        };
        for (i, item) in items.iter().enumerate() {
            let id = item
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{i}"), str::to_owned);
            out.push(Entry {
                file: file.clone(),
                id,
                case: parse_case(item),
            });
        }
    }
    out
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => {
                files.push(path.to_path_buf());
                return;
            }
        };
        entries.sort();
        for p in entries {
            if p.is_dir() || p.extension().is_some_and(|e| e == "json") {
                collect(&p, files);
            }
        }
    } else {
        files.push(path.to_path_buf());
    }
}

/// Runs one case on `b`.
///
/// # Errors
/// Why the case failed.
pub fn run<B: Allocate>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    match case.dtype {
        DType::F64 => run_in::<B, f64>(b, case),
        DType::F32 => run_in::<B, f32>(b, case),
        DType::F16 => run_in::<B, f16>(b, case),
        DType::BF16 => run_in::<B, bf16>(b, case),
        other => Err(bad(format!("dtype {other} has no runner"))),
    }
}

impl Case {
    pub(crate) fn input(&self, name: &str) -> Result<Tensor, Failure> {
        let d = self
            .inputs
            .get(name)
            .ok_or_else(|| bad(format!("no input `{name}`")))?;
        Tensor::contiguous(&d.shape, d.data.clone())
    }

    pub(crate) fn expected(&self, name: &str) -> Result<&Data, Failure> {
        self.expected
            .get(name)
            .ok_or_else(|| bad(format!("no expected `{name}`")))
    }

    pub(crate) fn param_f64(&self, name: &str, default: Option<f64>) -> Result<f64, Failure> {
        match self.params.get(name) {
            Some(v) => number(v),
            None => default.ok_or_else(|| bad(format!("no parameter `{name}`"))),
        }
    }

    pub(crate) fn param_str(&self, name: &str) -> Result<&str, Failure> {
        self.params
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("no parameter `{name}`")))
    }

    /// Compares a downloaded output with the expected tensor of the same name.
    pub(crate) fn check(&self, arg: &'static str, got: &[f64]) -> Result<Agreement, Failure> {
        let want = self.expected(arg)?;
        let b = self.tolerance;
        compare(arg, got, &want.data, |_| b)
    }
}

pub(crate) fn out<B: Allocate, T: Element>(
    b: &B,
    case: &Case,
    name: &str,
) -> Result<Output<B, T>, Failure> {
    let shape = &case.expected(name)?.shape;
    Output::new(
        b,
        &seqcore::Layout::contiguous(shape).map_err(Failure::setup)?,
        None,
    )
}

fn run_in<B: Allocate, T: Element>(b: &B, case: &Case) -> Result<Agreement, Failure> {
    let kernel = Failure::Kernel;
    match case.mechanism.as_str() {
        "softmax" | "log_softmax" => {
            let kind = if case.mechanism == "softmax" {
                SoftmaxKind::Softmax
            } else {
                SoftmaxKind::LogSoftmax
            };
            let x = Input::<B, T>::new(b, &case.input("x")?)?;
            let mut y = out::<B, T>(b, case, "y")?;
            b.softmax(kind, x.view()?, None, y.view()?)
                .map_err(kernel)?;
            case.check("y", &widen(&y.finish(b, "y")?))
        }
        "gemm" => {
            let a = Input::<B, T>::new(b, &case.input("a")?)?;
            let bb = Input::<B, T>::new(b, &case.input("b")?)?;
            let alpha = case.param_f64("alpha", Some(1.0))?;
            let beta = case.param_f64("beta", Some(0.0))?;
            let init: Option<Vec<T>> = match case.inputs.get("c") {
                Some(c) if c.shape != case.expected("c")?.shape => {
                    return Err(bad(format!(
                        "input `c` has shape {:?}, expected `c` {:?}",
                        c.shape,
                        case.expected("c")?.shape
                    )));
                }
                Some(c) => Some(c.data.iter().map(|&v| T::from_f64(v)).collect()),
                None if beta != 0.0 => {
                    return Err(bad("`beta` is not 0 but there is no input `c`"));
                }
                None => None,
            };
            let shape = &case.expected("c")?.shape;
            let layout = seqcore::Layout::contiguous(shape).map_err(Failure::setup)?;
            let mut c = Output::<B, T>::new(b, &layout, init.as_deref())?;
            b.gemm(alpha, a.view()?, bb.view()?, beta, c.view()?)
                .map_err(kernel)?;
            case.check("c", &widen(&c.finish(b, "c")?))
        }
        "unary" => {
            let name = case.param_str("op")?;
            let op =
                Unary::from_name(name).ok_or_else(|| bad(format!("unknown unary op `{name}`")))?;
            let x = Input::<B, T>::new(b, &case.input("x")?)?;
            let mut y = out::<B, T>(b, case, "y")?;
            b.unary(op, x.view()?, y.view()?).map_err(kernel)?;
            case.check("y", &widen(&y.finish(b, "y")?))
        }
        "reduce" => {
            let name = case.param_str("op")?;
            let op = Reduce::from_name(name)
                .ok_or_else(|| bad(format!("unknown reduction `{name}`")))?;
            let x = Input::<B, T>::new(b, &case.input("x")?)?;
            let mut y = out::<B, T>(b, case, "y")?;
            b.reduce(op, x.view()?, y.view()?).map_err(kernel)?;
            case.check("y", &widen(&y.finish(b, "y")?))
        }
        "top_k" => {
            let k = case.param_f64("k", None)?;
            if !(k >= 0.0 && k.fract() == 0.0 && k <= 1e9) {
                return Err(bad(format!("`k` = {k} is not a count")));
            }
            let x = Input::<B, T>::new(b, &case.input("x")?)?;
            let mut v = out::<B, T>(b, case, "values")?;
            let ishape = &case.expected("indices")?.shape;
            let mut ix = Output::<B, u32>::new(
                b,
                &seqcore::Layout::contiguous(ishape).map_err(Failure::setup)?,
                None,
            )?;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // integral, 0..=1e9
            let k = k as usize;
            b.top_k(k, x.view()?, v.view()?, ix.view()?)
                .map_err(kernel)?;
            let want_i = case
                .expected("indices")?
                .data
                .iter()
                .map(|&i| {
                    if i >= 0.0 && i.fract() == 0.0 && i <= f64::from(u32::MAX) {
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        // checked
                        Ok(i as u32)
                    } else {
                        Err(bad(format!("index {i}")))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            compare_exact("indices", &ix.finish(b, "indices")?, &want_i)?;
            // Values are inputs moved, not computed: equal, whatever the case's tolerance.
            let want_v = &case.expected("values")?.data;
            compare("values", &widen(&v.finish(b, "values")?), want_v, |_| {
                Bound::EXACT
            })
        }
        other => crate::mechanisms::run_vector::<B, T>(b, case).unwrap_or_else(|| {
            Err(bad(format!(
                "unknown mechanism `{other}` (this build runs: {})",
                mechanisms().join(", ")
            )))
        }),
    }
}
