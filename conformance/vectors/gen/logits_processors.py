"""Golden vectors for `logits_processors`: transformers' own processor classes, in the order
`GenerationMixin._get_logits_processor` builds them, on float32 scores:
RepetitionPenaltyLogitsProcessor, NoRepeatNGramLogitsProcessor, SuppressTokensLogitsProcessor
(banned tokens), MinNewTokensLengthLogitsProcessor, then, when sampling, TemperatureLogitsWarper,
TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper.

Rows whose top-p or min-p boundary lies within 1e-5 of a cut are redrawn (float32 cumulative sums
in torch against f64 in seq-decode could decide such a token either way).

    python3 conformance/vectors/gen/logits_processors.py     (needs torch and transformers 4.55.x)
"""
import sys

import numpy as np
import torch
import transformers
from transformers.generation import logits_process as lp

from common import case, ftensor, rng_for, round_to, tensor, write_cases

SEED = 20260602


def processors(p):
    out = []
    if p["repetition_penalty"] != 1.0:
        out.append(lp.RepetitionPenaltyLogitsProcessor(penalty=p["repetition_penalty"]))
    if p["no_repeat_ngram_size"] > 0:
        out.append(lp.NoRepeatNGramLogitsProcessor(p["no_repeat_ngram_size"]))
    if p["banned"]:
        out.append(lp.SuppressTokensLogitsProcessor(p["banned"]))
    if p["min_new_tokens"] > 0:
        out.append(lp.MinNewTokensLengthLogitsProcessor(p["prompt_len"], p["min_new_tokens"], p["eos"]))
    if p["sampling"]:
        if p["temperature"] != 1.0:
            out.append(lp.TemperatureLogitsWarper(p["temperature"]))
        if p["top_k"] != 0:
            out.append(lp.TopKLogitsWarper(top_k=p["top_k"]))
        if p["top_p"] < 1.0:
            out.append(lp.TopPLogitsWarper(top_p=p["top_p"]))
        if p["min_p"] > 0.0:
            out.append(lp.MinPLogitsWarper(min_p=p["min_p"]))
    return lp.LogitsProcessorList(out)


def risky(scores, p):
    """True when a top-p or min-p cut lies within 1e-5 of a token's boundary."""
    s = scores.astype(np.float64)
    if p["temperature"] != 1.0:
        s = s / p["temperature"]
    for row in s:
        if not np.isfinite(row).any():
            continue
        pr = np.exp(row - row.max())
        pr /= pr.sum()
        if p["top_p"] < 1.0:
            cum = np.cumsum(np.sort(pr))
            if np.any(np.abs(cum - (1.0 - p["top_p"])) < 1e-5):
                return True
        if p["min_p"] > 0.0 and np.any(np.abs(pr - p["min_p"] * pr.max()) < 1e-6):
            return True
    return False


def make(cid, rng, v, rows, length, **kw):
    p = dict(repetition_penalty=1.0, no_repeat_ngram_size=0, banned=[], min_new_tokens=0,
             eos=1, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, sampling=False, prompt_len=2)
    p.update(kw)
    while True:
        scores = round_to("f32", rng.standard_normal((rows, v)) * 3.0)
        ids = rng.integers(0, v, size=(rows, length))
        if not risky(scores, p):
            break
    got = processors(p)(torch.tensor(ids), torch.tensor(scores, dtype=torch.float32)).double().numpy()
    return case(cid, "logits_processors",
                f"transformers {transformers.__version__} logits processors (HF order), float32", "f32",
                p, {"scores": ftensor(scores), "input_ids": tensor(ids.shape, [int(x) for x in ids.flat])},
                {"scores": ftensor(got)}, 1e-6, 1e-6)


def main():
    grid = [
        ("rep", dict(repetition_penalty=1.5)),
        ("rep-low", dict(repetition_penalty=0.7)),
        ("ngram2", dict(no_repeat_ngram_size=2)),
        ("ngram3", dict(no_repeat_ngram_size=3)),
        ("banned", dict(banned=[0, 3, 5])),
        ("min-new", dict(min_new_tokens=9)),
        ("min-new-met", dict(min_new_tokens=2)),
        ("temp", dict(sampling=True, temperature=0.7)),
        ("topk", dict(sampling=True, top_k=5)),
        ("topk-1", dict(sampling=True, top_k=1)),
        ("topp", dict(sampling=True, top_p=0.8)),
        ("topp-small", dict(sampling=True, top_p=0.05)),
        ("minp", dict(sampling=True, min_p=0.1)),
        ("warpers-off-greedy", dict(sampling=False, temperature=0.5, top_k=3, top_p=0.5)),
        ("all", dict(repetition_penalty=1.3, no_repeat_ngram_size=2, banned=[4], min_new_tokens=8,
                     sampling=True, temperature=0.8, top_k=10, top_p=0.9, min_p=0.02)),
        ("all-greedy", dict(repetition_penalty=1.2, no_repeat_ngram_size=3, banned=[2, 7],
                            min_new_tokens=3)),
    ]
    cases = []
    for name, kw in grid:
        for v, rows, length in [(12, 3, 6), (40, 4, 10)]:
            cid = f"logits_processors/{name}-V{v}-L{length}"
            cases.append(make(cid, rng_for(SEED, cid), v, rows, length, **kw))
    write_cases("logits_processors.json", cases)


if __name__ == "__main__":
    sys.exit(main())
