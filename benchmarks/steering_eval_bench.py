"""MC evaluation throughput: ours vs the released procedure (interleaved), and steering overhead on generation.

    .venv/bin/python -m benchmarks.steering_eval_bench --out bench/out [--n 24] [--repeats 5] [--model smollm2-135m]

Scores every choice of ``--n`` TruthfulQA questions four ways, run interleaved (``benchmarks.timing``: each
repetition runs every path once, in a rotated order, after a warm-up), as questions/s with min / median / max:

- ``released``: the released evaluator (docs/grains.md §2.7, ``utils/steering.py::evaluate`` at 8ad78db), emulated
  for timing: one (prompt, answer) sequence per forward, batch 1, no gradients, logits of every position, score =
  log-softmax at the last position (its off-by-one score; our scores are not compared with it);
- ``one_per_forward``: ours, one sequence per forward (the same work, our correct score);
- ``padded``: ours, ``--batch-size`` padded rows per forward, sorted by length;
- ``packed`` (the default path): shared-prompt packing (``lmcore.packing``), ``--batch-size`` answers per forward.

Speed-ups are paired per repetition (released / ours). Scores of the padded and packed paths are checked against
one sequence per forward (max |Δ|, tolerance 1e-4). Generation: greedy ``generate`` with the KV cache,
``--new-tokens`` tokens, unsteered vs under ``steer`` on 4 layers (unit vectors, α = 4), tokens/s. Uses SmolLM2-135M
when its weights are available, a tiny random Llama otherwise (the report says which).
Sweep-shaped workload (``steering.sweep``): per layer group (``--groups``, SmolLM2: 8-11 and 16-19 as in
``make steer-smollm``) and α (``--alphas``), the dev MC2 and the prompt KL of the same questions three ways
(``SWEEP_MODES``): every layer with separate base and steered prompt forwards for the KL; the same re-using the
unsteered layers below the group (``steering.prefix_reuse``); and as ``steering.sweep`` does now, the KL read from
the scorer's own rows with the base prompts' log-probabilities computed once. Interleaved; values must agree
within 1e-4. Writes ``<out>/steering_eval_bench.{json,md}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from functools import partial
from pathlib import Path

import torch

from benchmarks.timing import interleave, ratio, ratio_cell
from steering import SteeringVector, steer
from steering.dev_scoring import dev_scores, prepare_dev
from steering.layers import find_decoder_layers
from steering.prefix_reuse import PrefixStore, reuse_prefix
from steering.tasks import load_truthfulqa, score_examples
from steering.tasks.side_effects import prompt_logprobs, prompt_side_effects

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "truthfulqa"
SPEEDUP_TARGET = 4.0  # packed vs the release, questions/s on this CPU (issue 15)
SCORE_TOLERANCE = 1e-4


def _load(model_name: str):
    try:
        from steering.loading import load_model_and_tokenizer

        model, tok = load_model_and_tokenizer(model_name)
        return model, tok, model_name
    except (ModuleNotFoundError, ValueError, OSError) as e:
        from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

        print(f"{model_name} unavailable ({e}); using a tiny random Llama")
        return tiny_causal_lm("llama"), tiny_lm_tokenizer(), "tiny-random-llama"


@torch.no_grad()
def released_scores(model, tok, examples) -> list[list[float]]:
    """The released MC evaluator's work: per choice, one forward of the whole text at batch 1 with logits of every
    position, then log-softmax at the last position (the off-by-one score, defect #8)."""
    out = []
    for ex in examples:
        scores = []
        for choice in ex.choices:
            ids = tok(ex.prompt + choice, return_tensors="pt").input_ids
            logits = model(ids).logits[0, -1]
            scores.append(logits.log_softmax(-1)[ids[0, -1]].item())
        out.append(scores)
    return out


def _generation(model, tok, prompt: str, new_tokens: int, repeats: int) -> dict:
    layers = list(range(len(model.get_decoder().layers)))[-8:-4]
    d = model.get_input_embeddings().embedding_dim
    vec = SteeringVector({layer: torch.nn.functional.normalize(torch.randn(d), dim=0) for layer in layers})
    ids = tok(prompt, return_tensors="pt")
    gen = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True)

    def plain():
        return model.generate(**ids, **gen)

    def steered():
        with steer(model, vec, 4.0):
            return model.generate(**ids, **gen)

    t = interleave({"plain": plain, "steered": steered}, repeats=repeats)
    overhead = ratio(t, "steered", "plain")
    return {"layers": layers, "tokens_per_s": new_tokens / t["plain"]["median"],
            "steered_tokens_per_s": new_tokens / t["steered"]["median"], "overhead": overhead}  # fmt: skip


def _groups(spec: list[str], n_layers: int) -> list[list[int]]:
    """``a-b`` specs inside the model, else (a tiny model) its upper half."""
    groups = [list(range(int(g.split("-")[0]), int(g.split("-")[1]) + 1)) for g in spec]
    if all(max(g) < n_layers for g in groups):
        return groups
    return [list(range(n_layers // 2, n_layers))]


SWEEP_MODES = {  # name: (prefix reuse, KL read from the scorer's rows with the base half once)
    "sweep_full": (False, False),  # every setting: MC rows + a base and a steered prompt forward, every layer
    "sweep_prefix_reuse": (True, False),  # the same, the unsteered layers below each group replayed
    "sweep_fused": (True, True),  # steering.sweep now: prefix reuse, the KL from the MC rows, base prompts once
}


def _sweep(model, tok, examples, groups, alphas, batch_size: int, mode: str) -> list[float]:
    """Dev MC2 and prompt KL at each (group, α), computed the way ``mode`` says (``SWEEP_MODES``) with the sweep's
    own ``dev_scores``."""
    reuse, fused = SWEEP_MODES[mode]
    store, out = PrefixStore(), []
    dev = prepare_dev(examples, "mc2")
    prompts = [e.prompt for e in dev]
    base = prompt_logprobs(model, tok, prompts, batch_size) if fused else None
    for group in groups:
        g = torch.Generator().manual_seed(group[0])
        vec = SteeringVector({layer: torch.nn.functional.normalize(torch.randn(model.config.hidden_size, generator=g),
                                                                   dim=0) for layer in group})  # fmt: skip
        for alpha in alphas:
            with reuse_prefix(model, store, group[0]) if reuse else contextlib.nullcontext():
                scores = dev_scores(model, tok, dev, "mc2", batch_size, partial(steer, model, vec, alpha), None, base)
                if not fused:
                    scores["kl"] = float(prompt_side_effects(model, tok, prompts, vec, alpha, None, "per_token",
                                                             batch_size)[0].mean())  # fmt: skip
            out += [scores["value"], scores["kl"]]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="bench/out")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=24, help="TruthfulQA questions scored")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--groups", nargs="+", default=["8-11", "16-19"], help="layer groups of the sweep workload")
    p.add_argument("--alphas", nargs="+", type=float, default=[2.0, 4.0, 8.0], help="α of the sweep workload")
    p.add_argument("--sweep-repeats", type=int, default=3)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    model, tok, name = _load(a.model)
    examples = load_truthfulqa(tok, str(DATA))[: a.n]
    n_seq = sum(len(e.choices) for e in examples)
    outputs: dict[str, object] = {}

    def case(key, fn):
        def run():
            outputs[key] = fn()

        return run

    cases = {
        "released": case("released", lambda: released_scores(model, tok, examples)),
        "one_per_forward": case("one", lambda: score_examples(model, tok, examples, batch_size=1, packed=False)),
        "padded": case("padded", lambda: score_examples(model, tok, examples, batch_size=a.batch_size, packed=False)),
        "packed": case("packed", lambda: score_examples(model, tok, examples, batch_size=a.batch_size, packed=True)),
    }
    t = interleave(cases, repeats=a.repeats)
    ref = outputs["one"]
    diffs = {k: max(float((x - y).abs().max()) for x, y in zip(ref, outputs[k])) for k in ("padded", "packed")}
    speedups = {k: ratio(t, "released", k) for k in cases if k != "released"}
    gen = _generation(model, tok, examples[0].prompt, a.new_tokens, 3)
    groups = _groups(a.groups, len(find_decoder_layers(model)))
    sweep_cases = {k: case(k, lambda k=k: _sweep(model, tok, examples, groups, a.alphas, a.batch_size, k))
                   for k in SWEEP_MODES}  # fmt: skip
    ts = interleave(sweep_cases, repeats=a.sweep_repeats)
    swept = {
        "groups": groups, "alphas": a.alphas, "seconds": {k: ts[k] for k in sweep_cases}, "load": ts["load"],
        "speedup": ratio(ts, "sweep_full", "sweep_prefix_reuse"),
        "speedup_fused": ratio(ts, "sweep_full", "sweep_fused"),
        "max_abs_diff": max(abs(x - y) for k in ("sweep_prefix_reuse", "sweep_fused")
                            for x, y in zip(outputs["sweep_full"], outputs[k])),
    }  # fmt: skip
    result = {
        "model": name, "threads": torch.get_num_threads(), "questions": a.n, "sequences": n_seq,
        "batch_size": a.batch_size, "repeats": a.repeats, "seconds": {k: t[k] for k in cases}, "load": t["load"],
        "questions_per_s": {k: a.n / t[k]["median"] for k in cases}, "speedup_vs_release": speedups,
        "speedup_target": SPEEDUP_TARGET, "speedup_met": speedups["packed"]["median"] >= SPEEDUP_TARGET,
        "max_abs_score_diff": diffs, "score_tolerance": SCORE_TOLERANCE,
        "scores_equal": max(diffs.values()) <= SCORE_TOLERANCE, "generation": gen, "sweep": swept,
    }  # fmt: skip
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "steering_eval_bench.json").write_text(json.dumps(result, indent=2))
    labels = {
        "released": ("released evaluator (emulated): one sequence per forward, all-position logits", 1),
        "one_per_forward": ("ours, one (prompt, answer) sequence per forward", 1),
        "padded": ("ours, padded rows sorted by length", a.batch_size),
        "packed": ("ours, shared-prompt packing (default)", a.batch_size),
    }
    load = t["load"]
    md = [
        f"MC evaluation ({name}, fp32, {a.n} TruthfulQA questions = {n_seq} scored answers, {result['threads']} "
        f"threads, {a.repeats} interleaved repetitions; load average {load['before']['load_avg_1min']} before, "
        f"{load['after']['load_avg_1min']} after, {load['after']['cpus']} CPUs):",
        "",
        "| path | answers per forward | questions/s (median) | seconds (min–max) | speed-up vs release |",
        "|---|---|---|---|---|",
    ]
    for k, (label, per) in labels.items():
        s = t[k]
        cell = "1.0×" if k == "released" else ratio_cell(speedups[k], SPEEDUP_TARGET if k == "packed" else None)
        md.append(f"| {label} | {per} | {a.n / s['median']:.2f} | {s['min']:.2f}–{s['max']:.2f} | {cell} |")
    md += [
        "",
        f"Max |Δ score| vs one sequence per forward: padded {diffs['padded']:.2e}, packed {diffs['packed']:.2e} "
        f"(tolerance {SCORE_TOLERANCE:g}: **{'met' if result['scores_equal'] else 'not met'}**).",
        f"Greedy generation, {a.new_tokens} tokens, KV cache: {gen['tokens_per_s']:.1f} tokens/s unsteered, "
        f"{gen['steered_tokens_per_s']:.1f} steered on {len(gen['layers'])} layers (time ratio "
        f"{ratio_cell(gen['overhead'])}).",
        f"Dev-sweep workload (MC scores + prompt KL of these questions at layer groups "
        f"{', '.join(f'{g[0]}-{g[-1]}' for g in groups)} × α {a.alphas}, {a.sweep_repeats} interleaved repetitions): "
        f"re-using the unsteered layers below each group is {ratio_cell(swept['speedup'])} faster than running every "
        f"layer, and with the KL read from the scoring rows (base prompts once: the sweep now) "
        f"{ratio_cell(swept['speedup_fused'])}; max |Δ| of dev MC2 and KL {swept['max_abs_diff']:.2e} (tolerance "
        f"{SCORE_TOLERANCE:g}: "
        f"**{'met' if swept['max_abs_diff'] <= SCORE_TOLERANCE else 'not met'}**).",
    ]
    (out / "steering_eval_bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
