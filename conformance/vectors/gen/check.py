"""Independent pure-Python reader of the vector files (standard library only).

Parses every *.json in conformance/vectors/, checks the "seq-vectors/1" structure (keys, dtypes,
shapes against data lengths, mechanism-specific shapes, unique ids across files, inputs exactly
representable in their dtype), and recomputes every case with plain Python math in float64,
holding the stored expected values to the stored tolerance. Exits non-zero on any problem.

    python3 conformance/vectors/gen/check.py [FILE_OR_DIR...]
"""
import glob
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.dirname(HERE)
DTYPES = {"f32", "f64", "f16", "bf16"}
KEYS = {"format", "id", "mechanism", "source", "dtype", "params", "inputs", "expected", "tolerance"}
UNARY_OPS = {"exp", "log", "sigmoid", "silu", "gelu", "gelu_tanh", "softplus", "elu1", "tanh",
             "relu", "sqrt", "recip", "square", "abs", "neg"}
REDUCE_OPS = {"sum", "mean", "max", "min", "logsumexp", "l2norm"}
OVERFLOW_AT = {"f64": math.inf, "f32": (2 - 2 ** -24) * 2.0 ** 127, "f16": 65520.0,
               "bf16": (2 - 2 ** -8) * 2.0 ** 127}
NAN, INF = math.nan, math.inf

errors = []


def err(cid, msg):
    errors.append(f"{cid}: {msg}")


def num(v):
    if isinstance(v, str):
        return {"inf": INF, "-inf": -INF, "nan": NAN}[v]
    return float(v)


def representable(v, dtype):
    if not math.isfinite(v) or dtype == "f64":
        return True
    if dtype == "f16":
        try:
            return struct.unpack("<e", struct.pack("<e", v))[0] == v
        except OverflowError:
            return False
    try:
        f = struct.unpack("<f", struct.pack("<f", v))[0]
    except OverflowError:
        return False
    if f != v:
        return False
    return dtype == "f32" or (struct.unpack("<I", struct.pack("<f", v))[0] & 0xFFFF) == 0


def overflows(v, dtype):
    return math.isfinite(v) and abs(v) >= OVERFLOW_AT[dtype]


def close(got, exp, atol, rtol, dtype):
    """got: float64 recomputation; exp: stored expected value."""
    if math.isnan(exp):
        return math.isnan(got)
    if math.isinf(exp):
        return got == exp or (overflows(got, dtype) and math.copysign(1, got) == math.copysign(1, exp))
    return math.isfinite(got) and abs(got - exp) <= atol + rtol * abs(exp)


def tensor(cid, t, name):
    if not isinstance(t, dict) or set(t) != {"shape", "data"}:
        err(cid, f"{name}: not a {{shape, data}} object")
        return None
    shape, data = t["shape"], t["data"]
    if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
        err(cid, f"{name}: bad shape {shape!r}")
        return None
    n = 1
    for s in shape:
        n *= s
    if not isinstance(data, list) or len(data) != n:
        err(cid, f"{name}: shape {shape} holds {n} elements, data has "
                 f"{len(data) if isinstance(data, list) else '?'}")
        return None
    for v in data:
        if isinstance(v, bool) or not (isinstance(v, (int, float)) or v in ("inf", "-inf", "nan")):
            err(cid, f"{name}: bad element {v!r}")
            return None
    return shape, data


# ---- recomputation in plain Python (float64) ----

def softmax_row(row, log):
    if any(math.isnan(v) or v == INF for v in row):
        return [NAN] * len(row)
    if all(v == -INF for v in row):
        return [-INF if log else 0.0] * len(row)
    m = max(row)
    s = math.fsum(math.exp(v - m) for v in row)
    if log:
        return [v - m - math.log(s) for v in row]
    return [math.exp(v - m) / s for v in row]


def sigmoid(x):
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


def unary(op, x):
    if math.isnan(x):
        return NAN
    if op == "exp":
        return math.exp(x) if x < 710 else INF
    if op == "log":
        return NAN if x < 0 else (-INF if x == 0 else math.log(x))
    if op == "sigmoid":
        return sigmoid(x)
    if op in ("silu", "gelu", "gelu_tanh") and x == -INF:
        return -0.0
    if op in ("silu", "gelu", "gelu_tanh") and x == INF:
        return INF
    if op == "silu":
        return x * sigmoid(x)
    if op == "gelu":
        return 0.5 * x * math.erfc(-x / math.sqrt(2))
    if op == "gelu_tanh":
        w = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x) if abs(x) < 1e100 else math.copysign(INF, x)
        return x * sigmoid(2 * w)
    if op == "softplus":
        return max(x, 0.0) + math.log1p(math.exp(-abs(x)))
    if op == "elu1":
        return x + 1 if x > 0 else math.exp(x)
    if op == "tanh":
        return math.tanh(x)
    if op == "relu":
        return x if x > 0 else 0.0
    if op == "sqrt":
        return NAN if x < 0 else math.sqrt(x)
    if op == "recip":
        return math.copysign(INF, x) if x == 0 else 1 / x
    if op == "square":
        return x * x if abs(x) < 1e160 else INF
    if op == "abs":
        return abs(x)
    if op == "neg":
        return -x
    raise ValueError(op)


def reduce(op, row):
    C = len(row)
    if C == 0:
        return {"sum": 0.0, "mean": NAN, "max": -INF, "min": INF, "logsumexp": -INF, "l2norm": 0.0}[op]
    if any(math.isnan(v) for v in row):
        return NAN
    if op in ("sum", "mean"):
        if INF in row and -INF in row:
            return NAN
        if INF in row or -INF in row:
            return INF if INF in row else -INF
        s = math.fsum(row)
        return s if op == "sum" else s / C
    if op == "max":
        return max(row)
    if op == "min":
        return min(row)
    if op == "logsumexp":
        m = max(row)
        if math.isinf(m):
            return m
        return m + math.log(math.fsum(math.exp(v - m) for v in row))
    if op == "l2norm":
        if any(math.isinf(v) for v in row):
            return INF
        m = max(abs(v) for v in row)
        if m == 0:
            return 0.0
        return m * math.sqrt(math.fsum((v / m) ** 2 for v in row))
    raise ValueError(op)


def top_k(row, k):
    def key(i):
        v = row[i]
        return (0, 0.0, i) if math.isnan(v) else (1, -v, i)
    return sorted(range(len(row)), key=key)[:k]


def check_case(c, where):
    cid = c.get("id", f"<no id in {where}>")
    missing = KEYS - set(c)
    if missing:
        err(cid, f"missing keys {sorted(missing)}")
        return
    if set(c) - KEYS - {"note"}:
        err(cid, f"unknown keys {sorted(set(c) - KEYS - {'note'})}")
    if c["format"] != "seq-vectors/1":
        err(cid, f"format {c['format']!r}")
    dt = c["dtype"]
    if dt not in DTYPES:
        err(cid, f"dtype {dt!r}")
        return
    tol = c["tolerance"]
    atol, rtol = tol.get("atol"), tol.get("rtol")
    if not all(isinstance(t, (int, float)) and t >= 0 for t in (atol, rtol)):
        err(cid, f"bad tolerance {tol!r}")
        return
    if not isinstance(c["source"], str) or not c["source"]:
        err(cid, "empty source")
    ins, exps = {}, {}
    for name, t in c["inputs"].items():
        r = tensor(cid, t, "inputs." + name)
        if r is None:
            return
        ins[name] = (r[0], [num(v) if not isinstance(v, int) or name != "indices" else v for v in r[1]])
        # integer inputs (positions, token ids, masks) are indices, not values of the element type
        if name in INTEGER_INPUTS:
            continue
        for v in ins[name][1]:
            if not representable(v, dt):
                err(cid, f"input {name} value {v!r} is not a {dt} value")
                break
    for name, t in c["expected"].items():
        r = tensor(cid, t, "expected." + name)
        if r is None:
            return
        exps[name] = (r[0], r[1] if name == "indices" else [num(v) for v in r[1]])
    mech, p = c["mechanism"], c["params"]

    def compare(name, got):
        shape, exp = exps[name]
        if len(got) != len(exp):
            err(cid, f"{name}: recomputed {len(got)} values, stored {len(exp)}")
            return
        bad = [i for i, (g, e) in enumerate(zip(got, exp)) if not close(g, e, atol, rtol, dt)]
        if bad:
            i = bad[0]
            err(cid, f"{name}: {len(bad)} element(s) off, first [{i}] recomputed {got[i]!r} stored {exp[i]!r}")

    if mech in ("softmax", "log_softmax"):
        (xs, x), (ys, _) = ins["x"], exps["y"]
        if len(xs) != 2 or ys != xs:
            err(cid, f"shapes x {xs} y {ys}")
            return
        R, C = xs
        got = []
        for r in range(R):
            got += softmax_row(x[r * C:(r + 1) * C], mech == "log_softmax")
        compare("y", got)
    elif mech == "gemm":
        (ash, a), (bsh, b) = ins["a"], ins["b"]
        if len(ash) != 3 or len(bsh) != 3 or ash[0] != bsh[0] or ash[2] != bsh[1]:
            err(cid, f"shapes a {ash} b {bsh}")
            return
        B, M, K = ash
        N = bsh[2]
        alpha, beta = p.get("alpha", 1.0), p.get("beta", 0.0)
        if "c" in ins and ins["c"][0] != [B, M, N]:
            err(cid, f"c shape {ins['c'][0]}")
            return
        if beta != 0 and "c" not in ins:
            err(cid, "beta != 0 without c")
            return
        if exps["c"][0] != [B, M, N]:
            err(cid, f"expected c shape {exps['c'][0]}")
            return
        got = []
        for bi in range(B):
            for i in range(M):
                for j in range(N):
                    terms = [alpha * a[(bi * M + i) * K + k] * b[(bi * K + k) * N + j] for k in range(K)]
                    if beta != 0:
                        terms.append(beta * ins["c"][1][(bi * M + i) * N + j])
                    got.append(math.fsum(terms))
        compare("c", got)
    elif mech == "unary":
        if p.get("op") not in UNARY_OPS:
            err(cid, f"op {p.get('op')!r}")
            return
        (xs, x), (ys, _) = ins["x"], exps["y"]
        if len(xs) != 1 or ys != xs:
            err(cid, f"shapes x {xs} y {ys}")
            return
        compare("y", [unary(p["op"], v) for v in x])
    elif mech == "reduce":
        if p.get("op") not in REDUCE_OPS:
            err(cid, f"op {p.get('op')!r}")
            return
        (xs, x), (ys, _) = ins["x"], exps["y"]
        if len(xs) != 2 or ys != xs[:1]:
            err(cid, f"shapes x {xs} y {ys}")
            return
        R, C = xs
        compare("y", [reduce(p["op"], x[r * C:(r + 1) * C]) for r in range(R)])
    elif mech == "top_k":
        k = p.get("k")
        (xs, x) = ins["x"]
        if not isinstance(k, int) or len(xs) != 2 or not 0 <= k <= xs[1]:
            err(cid, f"k {k!r} with x {xs}")
            return
        R, C = xs
        if exps["values"][0] != [R, k] or exps["indices"][0] != [R, k]:
            err(cid, "values/indices shape")
            return
        if atol != 0 or rtol != 0:
            err(cid, "top_k tolerance must be exact")
        idx = exps["indices"][1]
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < C for i in idx):
            err(cid, "indices must be integers in [0, C)")
            return
        for r in range(R):
            row = x[r * C:(r + 1) * C]
            want = top_k(row, k)
            got_i = idx[r * k:(r + 1) * k]
            got_v = exps["values"][1][r * k:(r + 1) * k]
            if got_i != want:
                err(cid, f"row {r}: indices {got_i} != recomputed {want}")
            for i, v in zip(want, got_v):
                if not (row[i] == v or (math.isnan(row[i]) and math.isnan(v))):
                    err(cid, f"row {r}: value {v!r} != x[{i}] = {row[i]!r}")
                    break
    elif mech == "sdpa":
        (qs, q), (ks, k), (vs, v) = ins["q"], ins["k"], ins["v"]
        if len(qs) != 3 or len(ks) != 3 or vs[:2] != ks[:2] or ks[2] != qs[2] or ks[1] == 0 or qs[1] % ks[1]:
            err(cid, f"shapes q {qs} k {ks} v {vs}")
            return
        Lq, Hq, D = qs
        Lk, Hkv, _ = ks
        Dv = vs[2]
        if exps["o"][0] != [Lq, Hq, Dv]:
            err(cid, f"expected o shape {exps['o'][0]}")
            return
        causal, window = p.get("causal", False), p.get("window")
        scale = p.get("scale", 1.0 / math.sqrt(D) if D else 1.0)
        cap = p.get("softcap")
        mask = ins.get("key_mask", ([Lk], [1] * Lk))[1]
        bias = ins.get("bias", ([Hq, Lq, Lk], [0.0] * (Hq * Lq * Lk)))[1]
        got = []
        for i in range(Lq):
            ip = i + Lk - Lq
            for h in range(Hq):
                g = h // (Hq // Hkv)
                s = []
                for j in range(Lk):
                    if (causal or window is not None) and j > ip or window is not None and ip - j >= window or mask[j] == 0:
                        continue
                    x = scale * math.fsum(q[(i * Hq + h) * D + e] * k[(j * Hkv + g) * D + e] for e in range(D))
                    if cap is not None:
                        x = cap * math.tanh(x / cap)
                    s.append((j, x + bias[(h * Lq + i) * Lk + j]))
                if not s:
                    got += [0.0] * Dv
                    continue
                m = max(x for _, x in s)
                w = [(j, math.exp(x - m)) for j, x in s]
                z = math.fsum(x for _, x in w)
                got += [math.fsum(p_ * v[(j * Hkv + g) * Dv + e] for j, p_ in w) / z for e in range(Dv)]
        compare("o", got)
    elif mech == "beam_search":
        # the stored score of each returned sequence, recomputed from the table: the sum of its
        # tokens' log-probabilities over length^length_penalty (not with a diversity penalty,
        # which changes the scores a hypothesis collects)
        tshape, table = ins["table"]
        if len(tshape) != 3 or tshape[1] != tshape[2]:
            err(cid, f"table shape {tshape} is not [S, V, V]")
            return
        S, V = tshape[0], tshape[1]
        sshape, seqs = exps["sequences"]
        n = int(p["num_return"])
        if sshape[0] != n or exps["scores"][0] != [n]:
            err(cid, "sequences / scores do not hold num_return rows")
            return
        if int(p.get("groups", 1)) > 1 and float(p.get("diversity_penalty", 0.0)) != 0.0:
            return
        if any(k in p for k in ("repetition_penalty", "no_repeat_ngram_size", "min_new_tokens")):
            return  # processors change the log-probabilities the scores sum
        lp = float(p["length_penalty"])
        got = []
        for r in range(n):
            row = [int(t) for t in seqs[r * sshape[1]:(r + 1) * sshape[1]] if t != -1]
            prev, total = int(ins["bos"][1][0]), 0.0
            for s, t in enumerate(row):
                logits = table[(s * V + prev) * V:(s * V + prev + 1) * V]
                m = max(logits)
                lse = m + math.log(sum(math.exp(x - m) for x in logits if x != -INF))
                total += logits[t] - lse
                prev = t
            got.append(total / (len(row) ** lp))
        compare("scores", got)
    elif mech == "logits_processors":
        # structure only (the processors themselves are transformers' classes): shapes agree,
        # and a processed score is either -inf (removed) or finite
        sshape, _ = ins["scores"]
        ishape, _ = ins["input_ids"]
        eshape, exp = exps["scores"]
        if len(sshape) != 2 or len(ishape) != 2 or sshape[0] != ishape[0] or eshape != sshape:
            err(cid, f"scores {sshape} / input_ids {ishape} / expected {eshape} do not agree")
            return
        if any(math.isnan(x) or x == INF for x in exp):
            err(cid, "expected scores hold NaN or +inf")
    elif mech in ("linear_attention", "delta_rule"):
        (qs, q), (ks, k), (vs, v) = ins["q"], ins["k"], ins["v"]
        if len(qs) != 3 or ks != qs or len(vs) != 3 or vs[:2] != qs[:2] or exps["o"][0] != vs:
            err(cid, f"shapes q {qs} k {ks} v {vs}")
            return
        L, H, Dk = qs
        Dv = vs[2]
        at = lambda x, t, h, d, j: x[(t * H + h) * d + j]  # noqa: E731
        got = [0.0] * (L * H * Dv)
        if mech == "linear_attention":
            fm = p.get("feature_map")
            if fm not in ("identity", "elu1"):
                err(cid, f"feature_map {fm!r}")
                return
            phi = (lambda x: x) if fm == "identity" else (lambda x: x + 1.0 if x > 0 else math.exp(x))
            for h in range(H):
                for t in range(L):
                    for s in range(t + 1):
                        w = math.fsum(phi(at(q, t, h, Dk, j)) * phi(at(k, s, h, Dk, j)) for j in range(Dk))
                        for i in range(Dv):
                            got[(t * H + h) * Dv + i] += w * at(v, s, h, Dv, i)
        else:
            gated = p.get("gated", False)
            beta = ins["beta"][1]
            g = ins["g"][1] if gated else [0.0] * (L * H)
            for h in range(H):
                S = [[0.0] * Dk for _ in range(Dv)]
                for t in range(L):
                    a, b = math.exp(g[t * H + h]), beta[t * H + h]
                    kt = [at(k, t, h, Dk, j) for j in range(Dk)]
                    for i in range(Dv):
                        sk = math.fsum(S[i][j] * kt[j] for j in range(Dk))
                        u = b * (at(v, t, h, Dv, i) - a * sk)
                        S[i] = [a * S[i][j] + u * kt[j] for j in range(Dk)]
                        got[(t * H + h) * Dv + i] = math.fsum(S[i][j] * at(q, t, h, Dk, j) for j in range(Dk))
        compare("o", got)
    else:
        NOT_RECOMPUTED.add(mech)  # structure checked above; the values only by the generator


INTEGER_INPUTS = {"positions", "indices", "targets", "mask", "key_mask", "bos", "input_ids", "table_index"}
NOT_RECOMPUTED = set()


def main(paths):
    files = []
    for p in paths or [VECTORS]:
        files += sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p]
    seen = {}
    total = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f, parse_constant=lambda s: (_ for _ in ()).throw(ValueError(f"bare {s} in {path}")))
        cases = doc if isinstance(doc, list) else [doc]
        for c in cases:
            if not isinstance(c, dict):
                errors.append(f"{path}: a non-object entry")
                continue
            cid = c.get("id")
            if cid in seen:
                err(cid, f"duplicate id (also in {seen[cid]})")
            seen[cid] = os.path.basename(path)
            check_case(c, path)
        total += len(cases)
        print(f"{os.path.relpath(path)}: {len(cases)} cases, {os.path.getsize(path)} bytes")
    for e in errors:
        print("FAIL", e)
    print(f"{total} cases in {len(files)} files, {len(errors)} problems")
    if NOT_RECOMPUTED:
        print("structure only (no independent recomputation here):", ", ".join(sorted(NOT_RECOMPUTED)))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
