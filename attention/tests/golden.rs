//! PyTorch golden values (float64) for pointer attention, the set encoders and ACT halting:
//! `tests/data/structure.txt`, written by `conformance/vectors/gen/set_encoder.py` from
//! `torch.nn.MultiheadAttention`, `nn.LayerNorm`, `nn.LSTMCell`, `log_softmax` and a transcription
//! of tensor2tensor's ACT loop. Run on the reference backend at f64.
//!
//! Tolerance: `1e-12` absolute on values of order 1, i.e. about `1e4` unit round-offs of f64 for
//! chains of a few hundred operations summed in a different order than PyTorch's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs,
    clippy::type_complexity,
    clippy::ptr_arg
)]

use std::collections::HashMap;

use seq_attention::act::Ponder;
use seq_attention::{
    Act, Isab, LayerNorm, Linear, LstmCell, Mab, MultiheadAttention, Pma, PointerAttention,
    ReadProcessWrite, Sab,
};
use seqcore::{Backend, Reference, Result, Unary, View, ViewMut};

const TOL: f64 = 1e-12;

struct Data(HashMap<String, (Vec<usize>, Vec<f64>)>);

impl Data {
    fn load() -> Data {
        let text = include_str!("data/structure.txt");
        let mut map = HashMap::new();
        let mut lines = text.lines().filter(|l| !l.starts_with('#'));
        while let Some(head) = lines.next() {
            let mut parts = head.split_whitespace();
            let name = parts.next().unwrap().to_string();
            let shape: Vec<usize> = parts.map(|s| s.parse().unwrap()).collect();
            let values: Vec<f64> = lines
                .next()
                .unwrap()
                .split_whitespace()
                .map(|s| s.parse().unwrap())
                .collect();
            assert_eq!(values.len(), shape.iter().product::<usize>(), "{name}");
            map.insert(name, (shape, values));
        }
        Data(map)
    }

    fn get(&self, name: &str) -> &[f64] {
        &self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("missing {name}"))
            .1
    }

    fn view(&self, name: &str) -> View<'_, Reference, f64> {
        let (shape, values) = self.0.get(name).unwrap_or_else(|| panic!("missing {name}"));
        View::contiguous(values.as_slice(), shape).unwrap()
    }
}

fn close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_infinite() {
            g == w
        } else {
            (g - w).abs() <= TOL
        };
        assert!(ok, "{what}[{i}]: got {g}, want {w}");
    }
}

fn buffers(count: usize, len: usize) -> Vec<Vec<f64>> {
    vec![vec![0.0; len]; count]
}

fn refs(v: &mut [Vec<f64>]) -> Vec<&mut [f64]> {
    v.iter_mut().map(Vec::as_mut_slice).collect()
}

fn mab<'a>(d: &'a Data, p: &str) -> Mab<'a, Reference, f64> {
    let g = |s: &str| d.view(&format!("{p}.{s}"));
    let attn = MultiheadAttention::new(
        8,
        2,
        g("in_proj_weight"),
        Some(g("in_proj_bias")),
        g("out_proj.weight"),
        Some(g("out_proj.bias")),
    )
    .unwrap();
    let ln0 = LayerNorm::new("ln0", g("ln0.weight"), g("ln0.bias"), 1e-5, 8).unwrap();
    let ln1 = LayerNorm::new("ln1", g("ln1.weight"), g("ln1.bias"), 1e-5, 8).unwrap();
    let ff = Linear::new("ff", g("ff.weight"), Some(g("ff.bias")), 8, 8).unwrap();
    Mab::new(attn, Some(ln0), ff, Some(ln1)).unwrap()
}

#[test]
fn mab_and_sab_match_torch() {
    let d = Data::load();
    let b = Reference;
    let m = mab(&d, "mab");
    let mut ws = buffers(
        Mab::<Reference, f64>::BUFFERS,
        m.workspace_len(5, 5).unwrap(),
    );
    let mut out = vec![f64::NAN; 40];
    m.forward(
        &b,
        d.view("mab.x"),
        d.view("mab.y"),
        b.view_mut(&mut out, &[5, 8]).unwrap(),
        &mut refs(&mut ws),
    )
    .unwrap();
    close("mab", &out, d.get("mab.out"));
    let sab = Sab { mab: m };
    sab.forward(
        &b,
        d.view("mab.x"),
        b.view_mut(&mut out, &[5, 8]).unwrap(),
        &mut refs(&mut ws),
    )
    .unwrap();
    close("sab", &out, d.get("sab.out"));
}

#[test]
fn isab_and_pma_match_torch() {
    let d = Data::load();
    let b = Reference;
    let isab = Isab::new(d.view("isab.inducing"), mab(&d, "isab0"), mab(&d, "isab1")).unwrap();
    let mut ws = buffers(
        Isab::<Reference, f64>::BUFFERS,
        isab.workspace_len(5).unwrap(),
    );
    let mut out = vec![f64::NAN; 40];
    isab.forward(
        &b,
        d.view("mab.x"),
        b.view_mut(&mut out, &[5, 8]).unwrap(),
        &mut refs(&mut ws),
    )
    .unwrap();
    close("isab", &out, d.get("isab.out"));

    let ff = Linear::new(
        "rff",
        d.view("pma.rff.weight"),
        Some(d.view("pma.rff.bias")),
        8,
        8,
    )
    .unwrap();
    let pma = Pma::new(d.view("pma.seeds"), ff, mab(&d, "pma")).unwrap();
    let mut ws = buffers(
        Pma::<Reference, f64>::BUFFERS,
        pma.workspace_len(5).unwrap(),
    );
    let mut out = vec![f64::NAN; 16];
    pma.forward(
        &b,
        d.view("mab.x"),
        b.view_mut(&mut out, &[2, 8]).unwrap(),
        &mut refs(&mut ws),
    )
    .unwrap();
    close("pma", &out, d.get("pma.out"));
}

#[test]
fn read_process_write_matches_torch_lstm_cell() {
    let d = Data::load();
    let b = Reference;
    let lstm = LstmCell::new(
        8,
        4,
        d.view("rpw.weight_ih"),
        d.view("rpw.weight_hh"),
        d.view("rpw.bias_ih"),
        d.view("rpw.bias_hh"),
    )
    .unwrap();
    let read = Linear::new(
        "read",
        d.view("rpw.read.weight"),
        Some(d.view("rpw.read.bias")),
        4,
        3,
    )
    .unwrap();
    let rpw = ReadProcessWrite::new(Some(read), lstm, 3).unwrap();
    let mut ws = buffers(
        ReadProcessWrite::<Reference, f64>::BUFFERS,
        rpw.workspace_len(6).unwrap(),
    );
    let mut q = vec![f64::NAN; 8];
    rpw.forward(
        &b,
        d.view("rpw.x"),
        b.view_mut(&mut q, &[8]).unwrap(),
        &mut refs(&mut ws),
    )
    .unwrap();
    close("rpw", &q, d.get("rpw.out"));
}

#[test]
fn pointer_matches_torch() {
    let d = Data::load();
    let b = Reference;
    let ptr = PointerAttention::new(d.view("ptr.w1"), d.view("ptr.w2"), d.view("ptr.v")).unwrap();
    let mut keys = vec![f64::NAN; 7 * 6];
    ptr.encode(&b, d.view("ptr.e"), b.view_mut(&mut keys, &[7, 6]).unwrap())
        .unwrap();
    let mut ws = buffers(
        PointerAttention::<Reference, f64>::BUFFERS,
        ptr.workspace_len(3, 7).unwrap(),
    );
    let mut u = vec![f64::NAN; 21];
    let kv = b.view(&keys, &[7, 6]).unwrap();
    ptr.scores(
        &b,
        kv,
        d.view("ptr.d"),
        b.view_mut(&mut u, &[3, 7]).unwrap(),
        &mut refs(&mut ws),
    )
    .unwrap();
    close("ptr.u", &u, d.get("ptr.u"));
    let mut out = vec![f64::NAN; 21];
    ptr.log_probs(
        &b,
        kv,
        d.view("ptr.d"),
        Some(d.view("ptr.mask")),
        b.view_mut(&mut out, &[3, 7]).unwrap(),
        &mut refs(&mut ws),
    )
    .unwrap();
    close("ptr.out", &out, d.get("ptr.out"));
}

/// The generator's ACT step: `state' = tanh(state A^T + c)`, `p = sigmoid(state w + b0)`, on the
/// backend's kernels.
fn act_step<'a>(
    d: &'a Data,
    scratch: &'a mut Vec<f64>,
) -> impl FnMut(
    usize,
    View<'_, Reference, f64>,
    ViewMut<'_, Reference, f64>,
    ViewMut<'_, Reference, f64>,
) -> Result<()>
+ 'a {
    let b = Reference;
    move |_t, state, next, halting| {
        let p = state.shape()[0];
        let dim = state.shape()[1];
        let lin = Linear::new("a", d.view("act.a"), Some(d.view("act.c")), dim, dim)?;
        lin.forward(&b, state, b.view_mut(scratch, &[p, dim])?)?;
        b.unary(Unary::Tanh, b.view(scratch, &[p, dim])?, next)?;
        let wp = d.view("act.wp").map_layout(|l| l.reshape(&[1, dim]))?;
        let halt = Linear::new("wp", wp, Some(d.view("act.bp")), 1, dim)?;
        halt.forward(&b, state, b.view_mut(scratch, &[p, 1])?)?;
        b.unary(Unary::Sigmoid, b.view(scratch, &[p])?, halting)
    }
}

#[test]
fn act_matches_tensor2tensor_loop() {
    let d = Data::load();
    let b = Reference;
    let (p, dim) = (6, 3);
    let act = Act::universal_transformer(5).unwrap();
    let mut scratch = vec![0.0; p * dim];
    let mut step = act_step(&d, &mut scratch);
    let lens = Act::workspace_lens(p, dim).unwrap();
    let mut ws: Vec<Vec<f64>> = lens.iter().map(|&n| vec![0.0; n]).collect();
    let mut host = vec![0.0; 3 * p];
    let (mut h, mut r, mut n) = (vec![0.0; p], vec![0.0; p], vec![0.0; p]);
    let mut out = vec![f64::NAN; p * dim];
    let (steps, cost) = act
        .run(
            &b,
            &mut step,
            d.view("act.state"),
            b.view_mut(&mut out, &[p, dim]).unwrap(),
            Ponder {
                halting: &mut h,
                remainders: &mut r,
                updates: &mut n,
            },
            &mut refs(&mut ws),
            &mut host,
        )
        .unwrap();
    close("act.out", &out, d.get("act.out"));
    close("act.halting", &h, d.get("act.halting"));
    close("act.remainders", &r, d.get("act.remainders"));
    assert_eq!(n, d.get("act.updates"));
    assert_eq!(steps as f64, d.get("act.steps")[0]);
    close("act.ponder", &[cost], d.get("act.ponder"));
}
