"""Golden vectors for `beam_search`: Hugging Face transformers' own `generate` (beam search, and
group beam search with `num_beam_groups` / `diversity_penalty`) on a step-indexed bigram table
model, a tiny `PreTrainedModel` + `GenerationMixin` whose next-token logits after `s` generated
tokens with previous token `p` are `table[s, p]`.

Sequences are the generated tokens (prompt excluded) up to and including EOS, padded with -1, best
first; scores are `sequences_scores`. Generated lengths come from `beam_indices` (-1 past the end).

    python3 conformance/vectors/gen/beam_search.py     (needs torch and transformers 4.55.x)
"""
import sys
import warnings

import numpy as np
import torch
import transformers
from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from common import case, ftensor, rng_for, round_to, tensor, write_cases

SEED = 20260601
PROMPT = 2


class TableConfig(PretrainedConfig):
    model_type = "seq_table_lm"


class TableLM(PreTrainedModel, GenerationMixin):
    config_class = TableConfig
    main_input_name = "input_ids"

    def __init__(self, config, table, prompt_len):
        super().__init__(config)
        self.table = torch.tensor(table, dtype=torch.float32)
        self.prompt_len = prompt_len
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        return {"input_ids": input_ids}

    def forward(self, input_ids, return_dict=True, **kwargs):
        s = input_ids.shape[1] - self.prompt_len
        prev = input_ids[:, -1]
        last = self.table[s][prev]  # [batch, V]
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], last.shape[-1])
        logits[:, -1, :] = last
        return CausalLMOutput(logits=logits)


def run_hf(table, eos, beams, max_new, lp, es, num_return, groups=1, div=0.0, procs=None):
    steps, v, _ = table.shape
    cfg = TableConfig(vocab_size=v, eos_token_id=eos, pad_token_id=eos, bos_token_id=PROMPT)
    model = TableLM(cfg, table, 1)
    model.eval()
    gc = GenerationConfig(
        num_beams=beams, max_new_tokens=max_new, eos_token_id=eos, pad_token_id=eos,
        length_penalty=lp, early_stopping=es, num_return_sequences=num_return,
        do_sample=False, return_dict_in_generate=True, output_scores=True, use_cache=False,
    )
    for k, val in (procs or {}).items():
        setattr(gc, k, val)
    if groups > 1:
        gc.num_beam_groups = groups
        gc.diversity_penalty = div
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        kwargs = {"trust_remote_code": True} if groups > 1 else {}
        try:
            out = model.generate(torch.tensor([[PROMPT]]), generation_config=gc, **kwargs)
        except TypeError:
            out = model.generate(torch.tensor([[PROMPT]]), generation_config=gc)
    seqs = out.sequences[:, 1:].tolist()
    lens = (out.beam_indices >= 0).sum(dim=1).tolist()
    rows = []
    width = max(lens)
    for sq, n in zip(seqs, lens):
        gen = sq[:n]
        if eos in gen:  # up to and including the first EOS
            gen = gen[: gen.index(eos) + 1]
        rows.append(gen)
    width = max(len(r) for r in rows)
    data = [t for r in rows for t in r + [-1] * (width - len(r))]
    return (num_return, width), data, out.sequences_scores.tolist()


def make(cid, rng, v, beams, max_new, lp, es, num_return, groups=1, div=0.0, eos=1,
         scale=2.5, edit=None, note=None, procs=None):
    table = rng.standard_normal((max_new, v, v)) * scale
    if edit:
        edit(table)
    table = round_to("f32", table)
    shape, data, scores = run_hf(table, eos, beams, max_new, lp, es, num_return, groups, div, procs)
    params = {"beams": beams, "max_new_tokens": max_new, "eos": eos, "length_penalty": lp,
              "early_stopping": es, "num_return": num_return}
    if groups > 1:
        params["groups"] = groups
        params["diversity_penalty"] = div
    params.update(procs or {})
    return case(
        cid, "beam_search",
        f"transformers {transformers.__version__} generate (beam search / group beam search) "
        "on a bigram table model, float32 logits",
        "f32", params,
        {"table": ftensor(table), "bos": tensor([1], [PROMPT])},
        {"sequences": tensor(shape, data), "scores": ftensor(np.array(scores))},
        1e-5, 1e-5,
        note or "score = sum of the generated tokens' processed log-probs / generated_length^length_penalty, "
        "as transformers' sequences_scores (float32 beam scores)",
    )


def main():
    cases = []
    grid = [
        # (v, beams, max_new, lp, es, num_return, groups, div)
        (8, 2, 5, 1.0, False, 2, 1, 0.0),
        (8, 3, 6, 1.0, True, 3, 1, 0.0),
        (10, 4, 7, 0.0, "never", 4, 1, 0.0),
        (10, 4, 7, 2.0, "never", 2, 1, 0.0),
        (12, 5, 6, -1.0, False, 3, 1, 0.0),
        (10, 5, 8, 0.5, "never", 5, 1, 0.0),
        (6, 2, 5, 1.0, False, 1, 1, 0.0),
        (16, 8, 6, 1.0, False, 8, 1, 0.0),
        (9, 4, 6, 1.0, True, 4, 2, 0.5),
        (9, 4, 6, 1.0, False, 3, 2, 1.5),
        (12, 6, 7, 0.0, "never", 6, 3, 1.0),
        (12, 6, 7, 2.0, "never", 4, 3, 0.7),
        (16, 8, 6, 1.0, False, 8, 4, 2.0),
        (12, 8, 5, -0.5, True, 5, 8, 1.0),
        (10, 4, 5, 1.0, False, 4, 4, 0.3),
    ]
    for (v, b, m, lp, es, nr, g, div) in grid:
        cid = f"beam_search/V{v}-b{b}-g{g}-lp{lp}-es{es}-n{nr}-d{div}"
        cases.append(make(cid, rng_for(SEED, cid), v, b, m, lp, es, nr, g, div))

    # EOS at step 0: the prompt's row makes EOS by far the likeliest first token
    def eos_first(t):
        t[0, PROMPT, 1] = 12.0
    for g, div in [(1, 0.0), (2, 1.0)]:
        for es in [True, False, "never"]:
            cid = f"beam_search/eos-at-step0-g{g}-es{es}"
            cases.append(make(cid, rng_for(SEED, cid), 8, 4, 5, 1.0, es, 4, g, div, edit=eos_first))

    # EOS likely everywhere: many hypotheses finish early
    def eos_heavy(t):
        t[:, :, 1] += 3.0
    for g, div in [(1, 0.0), (2, 0.8)]:
        for lp in [0.0, 1.0, 2.0]:
            cid = f"beam_search/eos-heavy-g{g}-lp{lp}"
            cases.append(make(cid, rng_for(SEED, cid), 10, 4, 6, lp, False, 4, g, div, edit=eos_heavy))

    # fewer finite candidates than beams: most of each row is -inf
    def sparse(t):
        t[:, :, 3:] = -np.inf
    for g, div in [(1, 0.0), (2, 0.5)]:
        cid = f"beam_search/few-finite-g{g}"
        cases.append(make(cid, rng_for(SEED, cid), 8, 4, 4, 1.0, False, 4, g, div, edit=sparse,
                          note="only tokens 0-2 are finite: fewer finite candidates than 2 x beams"))

    # logits processors inside beam search (applied to the log-probabilities, Hugging Face's order)
    for g, div in [(1, 0.0), (2, 0.6)]:
        for name, procs in [("rep1.5", {"repetition_penalty": 1.5}),
                            ("ngram2", {"no_repeat_ngram_size": 2}),
                            ("minnew4", {"min_new_tokens": 4}),
                            ("all", {"repetition_penalty": 1.3, "no_repeat_ngram_size": 2,
                                     "min_new_tokens": 2})]:
            cid = f"beam_search/procs-{name}-g{g}"
            cases.append(make(cid, rng_for(SEED, cid), 6, 4, 6, 1.0, False, 4, g, div,
                              edit=eos_heavy, scale=1.5, procs=procs))

    # No exact-tie cases: torch.topk orders equal values in an unspecified way (on CPU not by
    # index), so Hugging Face's choice among exact ties is not defined; seq-decode breaks them to
    # the lower index, which its property tests check.
    write_cases("beam_search.json", cases)


if __name__ == "__main__":
    sys.exit(main())
