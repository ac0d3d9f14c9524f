//! `seq-conformance`: the report over every available backend, the golden-vector runner, the
//! benchmarks, and the list of backends. See the crate README for the interface.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use regex::Regex;
use seq_conformance::backends::{self, Visit};
use seq_conformance::perf::{self, Peak};
use seq_conformance::{Config, Failure, Report, Row, check_backend, vectors};
use seqcore::Allocate;
use serde_json::json;

const USAGE: &str = "usage:
  seq-conformance [report] [--quick] [--json] [--filter REGEX] [--backend NAME]
  seq-conformance vectors PATH... [--backend NAME]
  seq-conformance perf [--filter REGEX] [--backend NAME] [--json]
  seq-conformance backends";

#[derive(Default)]
struct Args {
    command: String,
    quick: bool,
    json: bool,
    filter: Option<Regex>,
    backend: Option<String>,
    paths: Vec<PathBuf>,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args::default();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--json" => a.json = true,
            "--filter" => {
                let re = it.next().ok_or("--filter needs a REGEX")?;
                a.filter = Some(Regex::new(&re).map_err(|e| format!("--filter: {e}"))?);
            }
            "--backend" => a.backend = Some(it.next().ok_or("--backend needs a NAME")?),
            "-h" | "--help" => a.command = "help".into(),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            s if a.command.is_empty() && ["report", "vectors", "perf", "backends"].contains(&s) => {
                a.command = s.into();
            }
            s if a.command == "vectors" => a.paths.push(s.into()),
            s => return Err(format!("unexpected argument `{s}`")),
        }
    }
    if a.command.is_empty() {
        a.command = "report".into();
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("seq-conformance: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.command.as_str() {
        "help" => {
            println!("{USAGE}");
            Ok(true)
        }
        "backends" => Ok(list_backends()),
        "vectors" => run_vectors(&args),
        "perf" => run_suite(&args, Config::perf(Duration::from_secs(1)), true),
        _ => {
            let mut config = if args.quick {
                Config::quick()
            } else {
                Config {
                    timing: Some(Duration::from_millis(100)),
                    ..Config::default()
                }
            };
            config.filter.clone_from(&args.filter);
            run_suite(&args, config, false)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("seq-conformance: {e}");
            ExitCode::from(2)
        }
    }
}

fn list_backends() -> bool {
    for b in backends::compiled() {
        match b.status {
            Ok(()) => println!("{:<12} available", b.name),
            Err(why) => println!("{:<12} unavailable: {why}", b.name),
        }
    }
    true
}

struct Suite<'a>(&'a Config);

impl Visit for Suite<'_> {
    type Out = Report;
    fn visit<B: Allocate>(&mut self, b: &B) -> Report {
        check_backend(b, self.0)
    }
}

fn run_suite(args: &Args, mut config: Config, perf_mode: bool) -> Result<bool, String> {
    config.filter.clone_from(&args.filter);
    let names = backends::selected(args.backend.as_deref())?;
    let t0 = Instant::now();
    eprintln!("measuring this machine's peak (one core) ...");
    let peak = perf::peak();
    let mut rows = Vec::new();
    for name in names {
        for &dt in &config.dtypes.clone() {
            eprintln!("[{:>5.1}s] {name} {dt} ...", t0.elapsed().as_secs_f64());
            let c = Config {
                dtypes: vec![dt],
                ..config.clone()
            };
            rows.extend(backends::with(name, &mut Suite(&c))?.rows);
        }
    }
    let passed = rows.iter().all(Row::passed);
    if args.json {
        println!("{}", to_json(&peak, &rows, perf_mode));
    } else {
        print_table(&peak, &rows, perf_mode);
        let failed = rows.iter().filter(|r| !r.passed()).count();
        let unsupported = rows.iter().filter(|r| r.is_unsupported()).count();
        println!(
            "\n{} rows, {} passed, {} unsupported by the backend, {} failed ({:.1} s)",
            rows.len(),
            rows.len() - failed - unsupported,
            unsupported,
            failed,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(passed)
}

fn print_table(peak: &Peak, rows: &[Row], perf_mode: bool) {
    println!(
        "peak (1 core, measured): {:.1} GFLOP/s f32 multiply-add, {:.1} GB/s triad",
        peak.gflops, peak.gbps
    );
    let mut out = std::io::stdout().lock();
    if perf_mode {
        let _ = writeln!(
            out,
            "{:<12} {:<10} {:<5} {:>16} {:>11} {:>10} {:<8} {:>7}",
            "kernel", "backend", "dtype", "size", "time", "rate", "unit", "% peak"
        );
    } else {
        let _ = writeln!(
            out,
            "{:<12} {:<10} {:<5} {:>6} {:<5} {:>10} {:>10} {:>8} {:>10} {:<8} {:>7}",
            "kernel",
            "backend",
            "dtype",
            "cases",
            "",
            "nmse",
            "max-abs",
            "of bound",
            "rate",
            "unit",
            "% peak"
        );
    }
    for r in rows {
        let (rate, unit, frac, size, secs) = match &r.timing {
            Some(t) => (
                format!("{:.3}", t.rate()),
                t.unit(),
                // the host's peak says nothing of a device's speed
                if r.on_host {
                    format!("{:.2}", 100.0 * t.fraction(peak))
                } else {
                    "-".into()
                },
                t.size.clone(),
                format!("{:.3e} s", t.seconds),
            ),
            None => ("-".into(), "", "-".into(), "-".into(), "-".into()),
        };
        if perf_mode {
            let _ = writeln!(
                out,
                "{:<12} {:<10} {:<5} {:>16} {:>11} {:>10} {:<8} {:>7}",
                r.kernel, r.backend, r.dtype, size, secs, rate, unit, frac
            );
        } else {
            let verdict = if !r.passed() {
                "FAIL"
            } else if r.is_unsupported() {
                "unsup"
            } else {
                "pass"
            };
            let _ = writeln!(
                out,
                "{:<12} {:<10} {:<5} {:>6} {:<5} {:>10.2e} {:>10.2e} {:>8.2} {:>10} {:<8} {:>7}",
                r.kernel,
                r.backend,
                r.dtype,
                r.cases,
                verdict,
                r.agreement.nmse,
                r.agreement.max_abs,
                r.agreement.worst_ratio,
                rate,
                unit,
                frac
            );
        }
        if let Some((case, why)) = &r.first_failure {
            let _ = writeln!(
                out,
                "    {} of {} failed; first: {why}\n    case: {case}",
                r.failed, r.cases
            );
        }
    }
}

fn to_json(peak: &Peak, rows: &[Row], perf_mode: bool) -> serde_json::Value {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "kernel": r.kernel,
                "backend": r.backend,
                "dtype": r.dtype.name(),
                "cases": r.cases,
                "failed": r.failed,
                "passed": r.passed(),
                "unsupported": r.unsupported,
                "nmse": r.agreement.nmse,
                "max_abs": r.agreement.max_abs,
                "worst_ratio": r.agreement.worst_ratio,
                "first_failure": r.first_failure.as_ref().map(|(c, f)| json!({"case": c, "why": f.to_string()})),
                "timing": r.timing.as_ref().map(|t| json!({
                    "size": t.size, "seconds": t.seconds, "calls": t.calls,
                    "rate": t.rate(), "unit": t.unit(), "fraction_of_peak": r.on_host.then(|| t.fraction(peak)),
                })),
            })
        })
        .collect();
    json!({
        "mode": if perf_mode { "perf" } else { "report" },
        "peak": {"gflops": peak.gflops, "gbps": peak.gbps, "cores": 1},
        "rows": rows,
    })
}

struct RunVectors<'a>(&'a [vectors::Entry]);

impl Visit for RunVectors<'_> {
    type Out = (usize, usize, usize);
    fn visit<B: Allocate>(&mut self, b: &B) -> (usize, usize, usize) {
        let (mut pass, mut fail, mut skip) = (0, 0, 0);
        for e in self.0 {
            let outcome = e
                .case
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|c| vectors::run(b, c));
            let dtype = e.case.as_ref().map_or("?", |c| c.dtype.name());
            match outcome {
                Ok(a) => {
                    pass += 1;
                    println!(
                        "PASS {} [{} {dtype}] max-abs {:.2e} worst {:.2} of bound",
                        e.id,
                        b.name(),
                        a.max_abs,
                        a.worst_ratio
                    );
                }
                Err(Failure::Kernel(seqcore::Error::Unsupported { op, .. })) => {
                    skip += 1;
                    println!(
                        "SKIP {} [{} {dtype}]: the backend does not support `{op}`",
                        e.id,
                        b.name()
                    );
                }
                Err(f) => {
                    fail += 1;
                    println!(
                        "FAIL {} [{} {dtype}] {}: {f}",
                        e.id,
                        b.name(),
                        e.file.display()
                    );
                }
            }
        }
        (pass, fail, skip)
    }
}

fn run_vectors(args: &Args) -> Result<bool, String> {
    if args.paths.is_empty() {
        return Err(format!("vectors needs at least one PATH\n{USAGE}"));
    }
    let entries: Vec<_> = args.paths.iter().flat_map(|p| vectors::load(p)).collect();
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    for name in backends::selected(args.backend.as_deref())? {
        let (p, f, s) = backends::with(name, &mut RunVectors(&entries))?;
        pass += p;
        fail += f;
        skip += s;
    }
    if skip > 0 {
        println!("{pass} passed, {skip} skipped (unsupported by the backend), {fail} failed");
    } else {
        println!("{pass} passed, {fail} failed");
    }
    Ok(fail == 0 && pass > 0)
}
