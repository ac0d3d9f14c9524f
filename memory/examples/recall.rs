//! Multi-query associative recall: `N` random key/value pairs are written into a memory, then every
//! key is queried and the read is decoded to the nearest stored value. Prints the recall accuracy
//! of every preset at model widths 32, 64 and 128 and 8 to 1024 stored pairs (the table in the
//! README). `cargo run --release -p seq-memory --example recall [-- --quick]`.
//!
//! Keys and values are random unit vectors (`d` features). The write phase runs the memory over the
//! `N` pairs; the query phase reads without writing (a zero value for linear attention, `beta = 0`
//! for the delta rules, learning rate 0 and keep 1 for the Miras memories), so every key is read
//! from the same final memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_lossless,
    clippy::too_many_arguments,
    missing_docs
)]

use seq_memory::miras::Gates;
use seq_memory::{FeatureMap, LinearMemory, MemoryInputs, Miras};
use seqcore::{Backend, Reference};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.next().max(1e-300), self.next());
        (-2.0 * u.ln()).sqrt() * (2.0 * core::f64::consts::PI * v).cos()
    }
    fn unit(&mut self, d: usize) -> Vec<f32> {
        let x: Vec<f64> = (0..d).map(|_| self.normal()).collect();
        let n = x.iter().map(|a| a * a).sum::<f64>().sqrt();
        x.iter().map(|a| (a / n) as f32).collect()
    }
}

#[derive(Clone, Copy)]
enum Preset {
    Linear(&'static str, LinearMemory, f32, f32),
    Miras(&'static str, Miras, f32, f32),
}

fn presets(d: usize) -> Vec<Preset> {
    let h = 2 * d;
    vec![
        Preset::Linear(
            "linear attention",
            LinearMemory::linear_attention(FeatureMap::Identity),
            1.0,
            0.0,
        ),
        Preset::Linear(
            "linear attention (elu+1)",
            LinearMemory::linear_attention(FeatureMap::Elu1),
            1.0,
            0.0,
        ),
        Preset::Linear(
            "decayed linear attention (0.99)",
            LinearMemory::decayed_linear_attention(),
            1.0,
            0.99f32.ln(),
        ),
        Preset::Linear("DeltaNet (beta 1)", LinearMemory::delta_net(), 1.0, 0.0),
        Preset::Linear(
            "Gated DeltaNet (beta 1, 0.999)",
            LinearMemory::gated_delta_net(),
            1.0,
            0.999f32.ln(),
        ),
        Preset::Miras(
            "Titans (MLP 2d, momentum 0.5)",
            Miras::titans(h),
            0.5,
            0.999,
        ),
        Preset::Miras(
            "Moneta (MLP 2d, p 3, q 4)",
            Miras::moneta(h, 3.0, 4.0),
            0.5,
            1.0,
        ),
        Preset::Miras("Yaad (MLP 2d, delta 0.5)", Miras::yaad(h, 0.5), 0.5, 0.999),
        Preset::Miras(
            "Memora (MLP 2d, scale 1)",
            Miras::memora(h, 1.0),
            0.5,
            0.999,
        ),
    ]
}

fn linear_recall(
    m: LinearMemory,
    beta: f32,
    g: f32,
    keys: &[f32],
    vals: &[f32],
    n: usize,
    d: usize,
) -> Vec<f32> {
    let b = Reference;
    let mut state = vec![0.0f32; d * d];
    let betas = vec![beta; n];
    let gs = vec![g; n];
    fn with<'a>(
        m: LinearMemory,
        n: usize,
        x: MemoryInputs<'a, Reference, f32>,
        be: &'a [f32],
        gg: &'a [f32],
    ) -> MemoryInputs<'a, Reference, f32> {
        let b = Reference;
        let (wb, wg) = match m.gates {
            seq_memory::Gates::None => (false, false),
            seq_memory::Gates::Decay => (false, true),
            seq_memory::Gates::Beta => (true, false),
            seq_memory::Gates::BetaAndDecay => (true, true),
        };
        MemoryInputs {
            beta: wb.then(|| b.view(be, &[n, 1]).unwrap()),
            log_decay: wg.then(|| b.view(gg, &[n, 1]).unwrap()),
            ..x
        }
    }
    let write = MemoryInputs {
        q: b.view(keys, &[n, 1, d]).unwrap(),
        k: b.view(keys, &[n, 1, d]).unwrap(),
        v: b.view(vals, &[n, 1, d]).unwrap(),
        beta: None,
        log_decay: None,
    };
    m.forward(
        &b,
        with(m, n, write, &betas, &gs),
        b.view_mut(&mut state, &[1, d, d]).unwrap(),
        None,
        None,
    )
    .unwrap();
    let zeros = vec![0.0f32; n * d];
    let (zb, zg) = (vec![0.0f32; n], vec![0.0f32; n]);
    let read = MemoryInputs {
        v: b.view(&zeros, &[n, 1, d]).unwrap(),
        ..write
    };
    let mut o = vec![0.0f32; n * d];
    m.forward(
        &b,
        with(m, n, read, &zb, &zg),
        b.view_mut(&mut state, &[1, d, d]).unwrap(),
        Some(b.view_mut(&mut o, &[n, 1, d]).unwrap()),
        None,
    )
    .unwrap();
    o
}

fn miras_recall(
    m: Miras,
    lr: f32,
    keep: f32,
    keys: &[f32],
    vals: &[f32],
    n: usize,
    d: usize,
    rng: &mut Rng,
) -> Vec<f32> {
    let p = m.params_len(d, d).unwrap();
    let p0: Vec<f32> = match m.retention {
        seq_memory::Retention::Kl { .. } => {
            // Rows on the simplex, random (uniform rows would never break the symmetry between
            // hidden units): W0 rows over d, W1 rows over hidden.
            let h = p / (2 * d);
            let mut w: Vec<f32> = (0..p).map(|_| rng.normal().exp() as f32).collect();
            let c = 1.0f32;
            let (w0, w1) = w.split_at_mut(h * d);
            for r in w0.chunks_mut(d).chain(w1.chunks_mut(h)) {
                let s: f32 = r.iter().sum();
                r.iter_mut().for_each(|x| *x *= c / s);
            }
            w
        }
        // Fan-in scaled normal initialisation (1/sqrt(d) for W0, 1/sqrt(hidden) for W1).
        _ => {
            let h = p / (2 * d);
            (0..p)
                .map(|i| {
                    let fan = if i < h * d { d } else { h } as f64;
                    (rng.normal() / fan.sqrt()) as f32
                })
                .collect()
        }
    };
    let mut state = vec![0.0f32; m.state_len(d, d).unwrap()];
    m.init(d, d, &p0, &mut state).unwrap();
    let mut ws = vec![0.0f32; m.workspace_len(1, d, d).unwrap()];
    let mut o = vec![0.0f32; n * d];
    let (lrs, keeps, moms) = (vec![lr; n], vec![keep; n], vec![0.5f32; n]);
    let gates = Gates {
        lr: &lrs,
        keep: Some(&keeps),
        momentum: Some(&moms),
    };
    m.recurrent(d, d, keys, keys, vals, gates, &mut state, &mut o, &mut ws)
        .unwrap();
    let (z, one) = (vec![0.0f32; n], vec![1.0f32; n]);
    let gates = Gates {
        lr: &z,
        keep: Some(&one),
        momentum: Some(&z),
    };
    m.recurrent(d, d, keys, keys, vals, gates, &mut state, &mut o, &mut ws)
        .unwrap();
    o
}

fn accuracy(o: &[f32], vals: &[f32], n: usize, d: usize) -> f64 {
    let mut right = 0;
    for i in 0..n {
        let oi = &o[i * d..(i + 1) * d];
        let best = (0..n)
            .map(|j| {
                (
                    j,
                    vals[j * d..(j + 1) * d]
                        .iter()
                        .zip(oi)
                        .map(|(a, b)| a * b)
                        .sum::<f32>(),
                )
            })
            .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a })
            .0;
        if best == i {
            right += 1;
        }
    }
    right as f64 / n as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let widths: &[usize] = if quick { &[32] } else { &[32, 64, 128] };
    let counts: &[usize] = if quick {
        &[8, 64, 256]
    } else {
        &[8, 16, 32, 64, 128, 256, 512, 1024]
    };
    for &d in widths {
        println!("\nd = {d}: recall accuracy (%) after writing N pairs\n");
        print!("| preset |");
        for n in counts {
            print!(" N={n} |");
        }
        println!();
        print!("| --- |");
        for _ in counts {
            print!(" ---: |");
        }
        println!();
        for p in presets(d) {
            let name = match p {
                Preset::Linear(s, ..) | Preset::Miras(s, ..) => s,
            };
            print!("| {name} |");
            for &n in counts {
                let mut rng = Rng(0x5EED ^ (d as u64) << 20 ^ n as u64);
                let keys: Vec<f32> = (0..n).flat_map(|_| rng.unit(d)).collect();
                let vals: Vec<f32> = (0..n).flat_map(|_| rng.unit(d)).collect();
                let o = match p {
                    Preset::Linear(_, m, beta, g) => linear_recall(m, beta, g, &keys, &vals, n, d),
                    Preset::Miras(_, m, lr, keep) => {
                        miras_recall(m, lr, keep, &keys, &vals, n, d, &mut rng)
                    }
                };
                print!(" {:.0} |", 100.0 * accuracy(&o, &vals, n, d));
            }
            println!();
        }
    }
}
