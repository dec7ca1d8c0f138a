"""MC evaluation throughput (batched vs batch size 1) and steering overhead on generation.

    .venv/bin/python -m benchmarks.steering_eval_bench --out bench/out [--n 24] [--model smollm2-135m]

Measures ``steering.tasks.score_examples`` (every choice of every TruthfulQA question, sum log-likelihood) three ways,
as examples/s and sequences/s after one warm-up call each: one (prompt, answer) sequence per forward (batch size 1),
``--batch-size`` padded rows per forward, and shared-prompt packing (``lmcore.packing``: each prompt read once,
``--batch-size`` answers per forward, the default path); checks all give the same scores (max |Δ|).
Generation: greedy ``generate`` with the KV cache, ``--new-tokens`` tokens, unsteered vs
under ``steer`` on 4 layers (unit vectors, α = 4), tokens/s. Uses SmolLM2-135M when its weights are available,
a tiny random Llama otherwise (the report says which). Writes ``<out>/steering_eval_bench.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from steering import SteeringVector, steer
from steering.tasks import load_truthfulqa, score_examples

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "truthfulqa"


def _load(model_name: str):
    try:
        from steering.loading import load_model_and_tokenizer

        model, tok = load_model_and_tokenizer(model_name)
        return model, tok, model_name
    except (ModuleNotFoundError, ValueError, OSError) as e:
        from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

        print(f"{model_name} unavailable ({e}); using a tiny random Llama")
        return tiny_causal_lm("llama"), tiny_lm_tokenizer(), "tiny-random-llama"


def _timed(fn, repeats: int = 1) -> tuple[float, object]:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    return (time.perf_counter() - start) / repeats, out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="bench/out")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=24, help="TruthfulQA questions scored")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=32)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    model, tok, name = _load(a.model)
    examples = load_truthfulqa(tok, str(DATA))[: a.n]
    n_seq = sum(len(e.choices) for e in examples)
    t1, s1 = _timed(lambda: score_examples(model, tok, examples, batch_size=1, packed=False))
    tp, sp = _timed(lambda: score_examples(model, tok, examples, batch_size=a.batch_size, packed=False))
    tb, sb = _timed(lambda: score_examples(model, tok, examples, batch_size=a.batch_size, packed=True))
    max_diff = max(float((x - y).abs().max()) for other in (sp, sb) for x, y in zip(s1, other))
    layers = list(range(len(model.get_decoder().layers)))[-8:-4]
    d = model.get_input_embeddings().embedding_dim
    vec = SteeringVector({layer: torch.nn.functional.normalize(torch.randn(d), dim=0) for layer in layers})
    ids = tok(examples[0].prompt, return_tensors="pt")
    gen = dict(max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens, do_sample=False, use_cache=True)

    def plain():
        return model.generate(**ids, **gen)

    def steered():
        with steer(model, vec, 4.0):
            return model.generate(**ids, **gen)

    g0, _ = _timed(plain, 3)
    g1, _ = _timed(steered, 3)
    result = {
        "model": name, "threads": torch.get_num_threads(), "questions": a.n, "sequences": n_seq,
        "bs1_examples_per_s": a.n / t1, "padded_examples_per_s": a.n / tp, "batched_examples_per_s": a.n / tb,
        "batch_size": a.batch_size, "speedup": t1 / tb, "padded_speedup": t1 / tp, "max_abs_score_diff": max_diff,
        "gen_tokens_per_s": a.new_tokens / g0, "gen_steered_tokens_per_s": a.new_tokens / g1,
        "steering_overhead_pct": 100 * (g1 - g0) / g0, "steered_layers": layers,
    }  # fmt: skip
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "steering_eval_bench.json").write_text(json.dumps(result, indent=2))
    md = [
        f"MC evaluation ({name}, {a.n} TruthfulQA questions = {n_seq} scored answers, {result['threads']} threads):",
        "",
        "| path | answers per forward | examples/s | sequences/s | speed-up |",
        "|---|---|---|---|---|",
        f"| one sequence per forward | 1 | {a.n / t1:.2f} | {n_seq / t1:.1f} | 1.0× |",
        f"| padded rows | {a.batch_size} | {a.n / tp:.2f} | {n_seq / tp:.1f} | {t1 / tp:.1f}× |",
        f"| shared-prompt packing (default) | {a.batch_size} | {a.n / tb:.2f} | {n_seq / tb:.1f} | {t1 / tb:.1f}× |",
        "",
        f"Max |Δ score| batched vs one at a time: {max_diff:.2e}.",
        f"Greedy generation, {a.new_tokens} tokens, KV cache: {result['gen_tokens_per_s']:.1f} tokens/s unsteered, "
        f"{result['gen_steered_tokens_per_s']:.1f} steered on {len(layers)} layers "
        f"({result['steering_overhead_pct']:+.1f} %).",
    ]
    (out / "steering_eval_bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
