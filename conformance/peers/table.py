#!/usr/bin/env python3
"""Joins seq's perf JSON and the peers' JSON lines into the markdown peers table.

Usage: table.py SEQ_JSON PEERS_JSONL
A speed ratio is peer ms / seq ms (above 1: seq is faster).
"""
import json
import sys

# seq row -> (case, target text, checks); a check is (peer or "bw", minimum speed ratio or
# fraction of the measured bandwidth).
CASES = [
    ("peers_gemm_1024", "gemm 1024^3", ">= 0.8x numpy (OpenBLAS)", [("numpy", 0.8)]),
    ("peers_gemm_2048", "gemm 2048^3", ">= 0.8x numpy (OpenBLAS)", [("numpy", 0.8)]),
    ("peers_sdpa_causal_h8_d64_l512", "sdpa causal H=8 D=64 L=512", ">= 2x candle, >= 1x torch",
     [("candle", 2.0), ("torch", 1.0)]),
    ("peers_sdpa_causal_h8_d64_l2048", "sdpa causal H=8 D=64 L=2048", ">= 2x candle, >= 1x torch",
     [("candle", 2.0), ("torch", 1.0)]),
    ("peers_rope_l2048_h8_d64", "rope L=2048 H=8 D=64", ">= 70% bandwidth, >= 1x candle",
     [("bw", 0.7), ("candle", 1.0)]),
    ("peers_softmax_8x2048x2048", "softmax 8x2048x2048", ">= 70% bandwidth, >= 1x candle",
     [("bw", 0.7), ("candle", 1.0)]),
    ("peers_s4d_fft_conv_h256_l4096", "s4d fft conv H=256 L=4096", ">= 1x torch", [("torch", 1.0)]),
    ("peers_recurrent_dk128_dv128", "recurrent Dk=Dv=128", ">= 2x torch step (bandwidth: see note)",
     [("torch", 2.0)]),
    ("peers_kd_loss_grad_n4096_v32000", "kd loss+grad N=4096 V=32000", ">= 1x torch", [("torch", 1.0)]),
]


def main():
    seq = json.load(open(sys.argv[1]))
    peers = {}
    for line in open(sys.argv[2]):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        peers[(r["peer"], r["case"], r["threads"])] = r["ms"]
    rows = {r["kernel"]: r for r in seq["rows"] if r.get("timing")}
    peak = seq["peak"]
    print(f"peak (1 core, measured by seq-conformance): {peak['gflops']:.1f} GFLOP/s f32, "
          f"{peak['gbps']:.1f} GB/s triad\n")
    print("| case | threads | seq ms | torch ms | candle ms | numpy ms | torch/seq | candle/seq "
          "| numpy/seq | seq % peak | target | met? |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    fmt = lambda x: "-" if x is None else f"{x:.3f}" if x < 1 else f"{x:.1f}"
    for kernel, case, target, checks in CASES:
        r = rows.get(kernel)
        for threads in (1, 2):
            seq_ms = r["timing"]["seconds"] * 1e3 if r else None
            frac = r["timing"].get("fraction_of_peak") if r else None
            ms = {p: peers.get((p, case, threads)) for p in ("torch", "candle", "numpy")}
            ratio = {p: (ms[p] / seq_ms if (ms[p] and seq_ms) else None) for p in ms}
            met = []
            for peer, need in checks:
                if peer == "bw":
                    if frac is None:
                        met.append("?")
                    else:
                        met.append("yes" if frac >= need else f"no ({100 * frac:.0f}% of bw)")
                elif ratio[peer] is None:
                    met.append(f"? ({peer} missing)")
                else:
                    met.append("yes" if ratio[peer] >= need else f"no ({ratio[peer]:.2f}x {peer})")
            verdict = "yes" if all(m == "yes" for m in met) else "; ".join(m for m in met if m != "yes")
            seq_cell = fmt(seq_ms) + ("*" if threads == 2 and seq_ms is not None else "")
            print(f"| {case} | {threads} | {seq_cell} | {fmt(ms['torch'])} | {fmt(ms['candle'])} | "
                  f"{fmt(ms['numpy'])} | {fmt(ratio['torch'])} | {fmt(ratio['candle'])} | "
                  f"{fmt(ratio['numpy'])} | {'-' if frac is None else f'{100 * frac:.1f}'} | {target} | {verdict} |")
    print("\n\\* seq's perf rows run on one thread (the simd backend's `threads` feature is not "
          "enabled in seq-conformance), so its 2-thread column repeats the single-thread time.")
    print("seq % peak: the row's rate over the measured one-core peak (GFLOP/s for gemm, "
          "attention, FFT convolution and the recurrent update; GB/s for RoPE, softmax and the KD "
          "loss). The recurrent update's state (64 KiB) stays in cache, so its bandwidth target "
          "is not judged here.")


if __name__ == "__main__":
    main()
