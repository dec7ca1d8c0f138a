"""GrAInS extraction and steered-generation benchmark: ours vs the released procedure, measured in one run.

    .venv/bin/python -m benchmarks.steering_bench --out bench/out [--n-pairs 10] [--repeats 2] [--model smollm2-135m]

Pass counts come from instrumenting the model (a forward hook on decoder layer 0 counts forward calls, sequence rows
and tokens; a tensor hook on its output counts rows and tokens that received a backward), not from assumptions;
forward-equivalents count a backward as 2 forwards. The released procedure (docs/grains.md §2.2–§2.4, §2.10) is
re-implemented here as a timing reference only (``released_extraction``): per example and per ``top`` in (pos, neg)
it runs captum IG (20 Gauss–Legendre steps, zero baseline) over the joined embeddings of s⁺ and s⁻ with the
off-by-one score, 8 log-prob forwards with autograd on, and 4 ``output_hidden_states`` forwards; its counts are
compared with the real release's (28 forward calls, 104 sequence-forwards, 80 sequence-backwards per example).
Three extractions run interleaved, one pair per round (``benchmarks.timing``): ours (packed IG, the default), ours
with padded IG rows (``pack_ig=False``, the previous path) and the release; speed-ups are paired per round,
min / median / max. Packed and padded extractions are also compared: deltas, top-k sets, vector cosine distance.
Uses SmolLM2-135M when its weights are available, a tiny random Llama otherwise (the report says which).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from benchmarks.timing import interleave, ratio, ratio_cell
from steering import ContrastivePair, GrainsConfig, SteeringVector, extract_deltas, find_decoder_layers, steer

TQA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "truthfulqa" / "binary_2025" / "TruthfulQA.csv"


class PassCounter:
    """Counts model passes at decoder layer 0: forward calls, sequence rows and tokens (padding included), and the
    rows and tokens that received a backward."""

    def __init__(self) -> None:
        self.forward_calls = 0
        self.forward_rows = 0
        self.forward_tokens = 0
        self.backward_rows = 0
        self.backward_tokens = 0

    @contextlib.contextmanager
    def attach(self, model: nn.Module) -> Iterator[PassCounter]:
        def hook(module, args, output):
            h = output if isinstance(output, torch.Tensor) else output[0]
            self.forward_calls += 1
            self.forward_rows += h.shape[0]
            self.forward_tokens += h.shape[0] * h.shape[1]
            if h.requires_grad:
                h.register_hook(lambda g: self._backward(g.shape[0], g.shape[1]))

        handle = find_decoder_layers(model)[0].register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()

    def _backward(self, rows: int, length: int) -> None:
        self.backward_rows += rows
        self.backward_tokens += rows * length

    def per_example(self, n: int) -> dict[str, float]:
        """Counts per example and forward-equivalents (a backward = 2 forwards), by rows and by tokens."""
        fb, f_only = self.backward_rows / n, (self.forward_rows - self.backward_rows) / n
        tok_fb, tok_f = self.backward_tokens / n, (self.forward_tokens - self.backward_tokens) / n
        return {"forward_calls": self.forward_calls / n, "sequence_forwards": self.forward_rows / n,
                "sequence_backwards": fb, "forward_backward": fb, "forward_only": f_only,
                "forward_equivalents": 3 * fb + f_only, "token_forward_equivalents": 3 * tok_fb + tok_f}  # fmt: skip


RELEASE_COUNTS = {"forward_calls": 28, "sequence_forwards": 104, "sequence_backwards": 80}  # the real release, per
# example at 20 IG steps (docs/grains.md §2.10): 2 × (1 IG call over s⁺ and s⁻ + 8 log-prob + 4 hidden-state calls)
FORWARD_EQUIVALENTS_TARGET = 75  # ours, per example (issue 15)
SPEEDUP_TARGET = 3.5  # ours vs the release, fp32, same pairs and settings (issue 15)
COSINE_TOLERANCE = 1e-4  # packed vs padded IG vectors, per layer


def load_pairs(n: int) -> list[ContrastivePair]:
    if TQA.is_file():
        with TQA.open(encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
        return [
            ContrastivePair(f"Q: {r['Question']}\nA:", " " + r["Best Answer"], " " + r["Best Incorrect Answer"])
            for r in rows[:n]
        ]
    base = [("q what is the capital of france a", " paris", " london"), ("q can cats fly a", " no", " yes")]
    return [ContrastivePair(*base[i % 2]) for i in range(n)]


def load_model(name: str):
    try:
        from lmcore.models import load_causal_lm, load_tokenizer

        return load_causal_lm(name), load_tokenizer(name), name
    except (ModuleNotFoundError, ValueError, OSError) as e:
        from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

        label = f"tiny random Llama ({name!r} unavailable: {type(e).__name__})"
        return tiny_causal_lm("llama"), tiny_lm_tokenizer(), label


# ---- the released procedure, re-implemented faithfully for timing (docs/grains.md §2.2-§2.4, §2.10) ----


def _legacy_logprob(model, embeds: torch.Tensor, last_id: int) -> torch.Tensor:
    """Off-by-one score: log_softmax(logits at the last position)[id of the last token], per batch row."""
    logits = model(inputs_embeds=embeds).logits[:, -1]
    return logits.float().log_softmax(-1)[:, last_id]


def released_extraction(model, tok, pair: ContrastivePair, top_k: int = 10, n_steps: int = 20) -> None:
    from captum.attr import IntegratedGradients

    emb = model.get_input_embeddings()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.unk_token_id
    s_pos = tok(pair.prompt + pair.preferred, return_tensors="pt").input_ids[0]
    s_neg = tok(pair.prompt + pair.dispreferred, return_tensors="pt").input_ids[0]
    n_pos = len(s_pos)
    for top in ("pos", "neg"):  # the release runs the whole script twice and recomputes the same IG
        joined = torch.cat([emb(s_pos), emb(s_neg)]).detach()[None]  # (1, T⁺ + T⁻, d)

        def f(x):
            return _legacy_logprob(model, x[:, :n_pos], int(s_pos[-1])) - _legacy_logprob(
                model, x[:, n_pos:], int(s_neg[-1])
            )

        attr = IntegratedGradients(f).attribute(joined, baselines=torch.zeros_like(joined), n_steps=n_steps)
        scores = attr[0].sum(-1).detach()
        ablated = []
        for ids, sc in ((s_pos, scores[:n_pos]), (s_neg, scores[n_pos:])):
            idx = torch.topk(sc if top == "pos" else -sc, min(top_k, len(sc))).indices
            masked = ids.clone()
            masked[idx] = pad  # ids replaced by pad (= EOS for Llama-3), attention unchanged
            ablated.append(masked)
        conditions = [s_pos, s_neg, *ablated]
        for _ in range(2):  # 8 log-prob forwards with autograd enabled (bookkeeping CSV)
            for ids in conditions:
                _legacy_logprob(model, emb(ids)[None], int(ids[-1]))
        with torch.no_grad():  # 4 hidden-state forwards, last position, all layers
            for ids in conditions:
                model(ids[None], output_hidden_states=True).hidden_states  # noqa: B018


# ---- measurements ----


def _cycling(fn, pairs):
    """A zero-argument case for ``interleave`` that runs ``fn`` on the next pair each call."""
    state = {"i": 0}

    def run() -> None:
        fn(pairs[state["i"] % len(pairs)])
        state["i"] += 1

    return run


def compare_extractions(packed, padded) -> dict:
    """Packed vs padded extraction of the same pairs: deltas, top-k sets, vector cosine distance per layer."""
    dist = []
    v_a, v_b = packed.to_vector("pca", "both"), padded.to_vector("pca", "both")
    for layer in packed.layers:
        dist.append(1 - float(torch.nn.functional.cosine_similarity(v_a.vectors[layer], v_b.vectors[layer], dim=0)))
    same_top = sum(a.tolist() == b.tolist() for a, b in zip(packed.top_pos + packed.top_neg,
                                                           padded.top_pos + padded.top_neg))  # fmt: skip
    return {"max_abs_delta_diff": max(float((packed.deltas_pos - padded.deltas_pos).abs().max()),
                                      float((packed.deltas_neg - padded.deltas_neg).abs().max())),
            "top_k_sets_equal": same_top, "top_k_sets": len(packed.top_pos) * 2,
            "max_vector_cosine_distance": max(dist), "cosine_tolerance": COSINE_TOLERANCE,
            "vectors_equal": max(dist) <= COSINE_TOLERANCE}  # fmt: skip


def measure_extraction(model, tok, pairs, n_steps: int, repeats: int, release_count_pairs: int = 3) -> dict:
    """Counts (one counted pass over ``pairs`` per procedure; the first ``release_count_pairs`` for the release, whose
    row counts do not depend on the pair), then ``repeats`` × ``len(pairs)`` interleaved rounds of one pair each;
    ratios are paired per round. Token counts of the release are per example of those first pairs."""
    packed_cfg = GrainsConfig(top_k=10, ig_steps=n_steps, internal_batch_size=n_steps)
    padded_cfg = replace(packed_cfg, pack_ig=False)
    procedures = {
        "ours": lambda ps: extract_deltas(model, tok, ps, config=packed_cfg, batch_size=1),
        "ours_padded": lambda ps: extract_deltas(model, tok, ps, config=padded_cfg, batch_size=1),
        "released": lambda ps: [released_extraction(model, tok, p, n_steps=n_steps) for p in ps],
    }
    counts, outputs = {}, {}
    for name, fn in procedures.items():
        counted = pairs if name != "released" else pairs[:release_count_pairs]  # the release's counts are fixed
        counter = PassCounter()
        with counter.attach(model):
            outputs[name] = fn(counted)
        counts[name] = counter.per_example(len(counted))
    cases = {name: _cycling(lambda p, fn=fn: fn([p]), pairs) for name, fn in procedures.items()}
    timings = interleave(cases, repeats=repeats * len(pairs), warmup=1)
    rel = counts["released"]
    out = {
        "counts": counts,
        "seconds_per_example": {name: timings[name] for name in procedures},
        "speedup": ratio(timings, "released", "ours"),
        "speedup_padded": ratio(timings, "released", "ours_padded"),
        "packed_vs_padded_time": ratio(timings, "ours_padded", "ours"),
        "load": timings["load"],
        "equality": compare_extractions(outputs["ours"], outputs["ours_padded"]),
        "release_counts_match": {key: rel[key] == value for key, value in RELEASE_COUNTS.items()},
        "forward_equivalents_target": FORWARD_EQUIVALENTS_TARGET,
        "speedup_target": SPEEDUP_TARGET,
    }
    out["forward_equivalents_met"] = counts["ours"]["forward_equivalents"] <= FORWARD_EQUIVALENTS_TARGET
    out["speedup_met"] = out["speedup"]["median"] >= SPEEDUP_TARGET
    return out


def measure_generation(model, tok, prompt: str, new_tokens: int, repeats: int, layers: list[int]) -> dict:
    d = model.get_input_embeddings().embedding_dim
    g = torch.Generator().manual_seed(0)
    n_layers = len(find_decoder_layers(model))
    vec = SteeringVector({layer: torch.randn(d, generator=g) for layer in layers}, {"num_layers": n_layers})
    ids = tok(prompt, return_tensors="pt").input_ids
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True)
    kw["pad_token_id"] = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.no_grad():
        model.generate(ids, **kw)  # warm-up
        plain, steered = [], []
        for _ in range(repeats):  # interleaved, so machine load affects both alike
            t0 = time.perf_counter()
            model.generate(ids, **kw)
            plain.append(time.perf_counter() - t0)
            with steer(model, vec, alpha=4.0):
                t0 = time.perf_counter()
                model.generate(ids, **kw)
                steered.append(time.perf_counter() - t0)
    tp, ts = statistics.median(plain), statistics.median(steered)
    return {"new_tokens": new_tokens, "repeats": repeats, "steered_layers": layers, "kv_cache": True,
            "tokens_per_s_unsteered": new_tokens / tp, "tokens_per_s_steered": new_tokens / ts,
            "overhead_ratio": ts / tp}  # fmt: skip


def write_markdown(path: Path, r: dict) -> None:
    e, g = r["extraction"], r["generation"]
    c, eq = e["counts"], e["equality"]
    load = e["load"]
    lines = [
        "# GrAInS steering benchmark",
        "",
        f"Model: **{r['model']}** (fp32); {r['n_pairs']} TruthfulQA pairs; IG steps {r['ig_steps']}, top-k 10; "
        f"torch threads {r['threads']}. Passes counted by hooks on decoder layer 0; a backward counts as 2 forwards.",
        "",
        "| Extraction, per example | ours (packed IG) | ours, padded IG rows | released procedure | real release |",
        "|---|---|---|---|---|",
    ]
    for key in ("forward_calls", "sequence_forwards", "sequence_backwards", "forward_only", "forward_equivalents",
                "token_forward_equivalents"):  # fmt: skip
        real = RELEASE_COUNTS.get(key, "")
        lines.append(f"| {key} | {c['ours'][key]:.1f} | {c['ours_padded'][key]:.1f} | {c['released'][key]:.1f} "
                     f"| {real} |")  # fmt: skip
    secs = e["seconds_per_example"]
    cells = [f"{secs[k]['median']:.2f} ({secs[k]['min']:.2f}–{secs[k]['max']:.2f})" for k in c]
    lines.append("| seconds (median; min–max) | " + " | ".join(cells) + " | |")
    match = all(e["release_counts_match"].values())
    lines += [
        "",
        f"Emulation vs the real release's counts (28 forward calls, 104 sequence-forwards, 80 sequence-backwards): "
        f"**{'match' if match else 'MISMATCH ' + str(e['release_counts_match'])}**.",
        "",
        f"Forward-equivalents per example (ours): **{c['ours']['forward_equivalents']:.1f}**, target ≤ "
        f"{e['forward_equivalents_target']}: **{'met' if e['forward_equivalents_met'] else 'not met'}** "
        f"(release {c['released']['forward_equivalents']:.0f}; by tokens "
        f"{c['released']['token_forward_equivalents'] / c['ours']['token_forward_equivalents']:.2f}× fewer).",
        "",
        f"Speed-up vs the release, paired per round ({len(secs['ours']['runs'])} rounds, interleaved): "
        f"**{ratio_cell(e['speedup'], e['speedup_target'])}**; padded IG rows: {ratio_cell(e['speedup_padded'])}; "
        f"packed vs padded: {ratio_cell(e['packed_vs_padded_time'])}. Load average (1 min) "
        f"{load['before']['load_avg_1min']} before, {load['after']['load_avg_1min']} after, "
        f"{load['after']['cpus']} CPUs.",
        "",
        f"Packed vs padded IG on these pairs: max |Δ delta| {eq['max_abs_delta_diff']:.2e}; top-k sets equal "
        f"{eq['top_k_sets_equal']}/{eq['top_k_sets']}; max vector cosine distance "
        f"{eq['max_vector_cosine_distance']:.2e} "
        f"(tolerance {eq['cosine_tolerance']:g}: **{'met' if eq['vectors_equal'] else 'not met'}**).",
        "",
        "| Generation (greedy, KV cache on) | value |",
        "|---|---|",
        f"| new tokens × repeats | {g['new_tokens']} × {g['repeats']} |",
        f"| steered layers | {g['steered_layers']} |",
        f"| tokens/s unsteered | {g['tokens_per_s_unsteered']:.1f} |",
        f"| tokens/s steered | {g['tokens_per_s_steered']:.1f} |",
        f"| overhead ratio (steered / unsteered time) | {g['overhead_ratio']:.3f} |",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n-pairs", type=int, default=10)
    parser.add_argument("--ig-steps", type=int, default=20)
    parser.add_argument("--extraction-repeats", type=int, default=2, help="interleaved rounds per pair")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    model, tok, model_name = load_model(args.model)
    pairs = load_pairs(args.n_pairs)
    n_layers = len(find_decoder_layers(model))
    result = {
        "model": model_name,
        "n_pairs": len(pairs),
        "ig_steps": args.ig_steps,
        "threads": torch.get_num_threads(),
        "extraction": measure_extraction(model, tok, pairs, args.ig_steps, args.extraction_repeats),
        "generation": measure_generation(
            model, tok, pairs[0].prompt, args.new_tokens, args.repeats, list(range(n_layers // 3, 2 * n_layers // 3))
        ),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "steering.json").write_text(json.dumps(result, indent=2))
    write_markdown(out / "steering.md", result)
    print((out / "steering.md").read_text())
    return result


if __name__ == "__main__":
    main()
