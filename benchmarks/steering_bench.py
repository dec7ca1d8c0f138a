"""GrAInS extraction and steered-generation benchmark: ours vs the released procedure, measured in one run.

    .venv/bin/python -m benchmarks.steering_bench --out bench/out [--n-pairs 3] [--model smollm2-135m]

Pass counts come from instrumenting the model (a forward hook on decoder layer 0 counts sequence rows; a tensor
hook on its output counts rows that received a backward), not from assumptions. The released procedure
(docs/grains.md §2.2–§2.4, §2.10) is re-implemented here as a timing reference only: per example and per ``top`` in
(pos, neg) it runs captum IG (20 Gauss–Legendre steps, zero baseline) over the joined embeddings of s⁺ and s⁻ with the
off-by-one score, 8 log-prob forwards with autograd on, and 4 ``output_hidden_states`` forwards. Uses SmolLM2-135M
when its weights are available, a tiny random Llama otherwise (the report says which).
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
from pathlib import Path

import torch
from torch import nn

from steering import ContrastivePair, GrainsConfig, SteeringVector, extract_deltas, find_decoder_layers, steer

TQA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "truthfulqa" / "binary_2025" / "TruthfulQA.csv"


class PassCounter:
    """Counts sequence rows through decoder layer 0: forwards, and how many of them got a backward."""

    def __init__(self) -> None:
        self.forward_rows = 0
        self.backward_rows = 0

    @contextlib.contextmanager
    def attach(self, model: nn.Module) -> Iterator[PassCounter]:
        def hook(module, args, output):
            h = output if isinstance(output, torch.Tensor) else output[0]
            self.forward_rows += h.shape[0]
            if h.requires_grad:
                h.register_hook(lambda g: self._backward(g.shape[0]))

        handle = find_decoder_layers(model)[0].register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()

    def _backward(self, rows: int) -> None:
        self.backward_rows += rows


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


def measure_extraction(model, tok, pairs, n_steps: int, batch_size: int) -> dict:
    counter = PassCounter()
    cfg = GrainsConfig(top_k=10, ig_steps=n_steps, internal_batch_size=n_steps)
    with counter.attach(model):
        t0 = time.perf_counter()
        extract_deltas(model, tok, pairs, layers=None, config=cfg, batch_size=batch_size)
        ours = time.perf_counter() - t0
    ours_counts = (counter.forward_rows, counter.backward_rows)
    counter = PassCounter()
    with counter.attach(model):
        t0 = time.perf_counter()
        for pair in pairs:
            released_extraction(model, tok, pair, n_steps=n_steps)
        ref = time.perf_counter() - t0
    n = len(pairs)

    def summary(fwd: int, bwd: int, seconds: float) -> dict:
        fb, f_only = bwd / n, (fwd - bwd) / n
        return {"forward_backward_per_example": fb, "forward_only_per_example": f_only,
                "forward_equivalents_per_example": 3 * fb + f_only, "seconds_per_example": seconds / n}  # fmt: skip

    out = {"ours": summary(*ours_counts, ours), "released": summary(counter.forward_rows, counter.backward_rows, ref)}
    out["speedup"] = out["released"]["seconds_per_example"] / out["ours"]["seconds_per_example"]
    out["pass_ratio"] = (
        out["ours"]["forward_equivalents_per_example"] / out["released"]["forward_equivalents_per_example"]
    )
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
    lines = [
        "# GrAInS steering benchmark",
        "",
        f"Model: **{r['model']}**; {r['n_pairs']} TruthfulQA pairs; IG steps {r['ig_steps']}; "
        f"torch threads {r['threads']}. Passes counted by hooks on decoder layer 0 (sequence rows).",
        "",
        "| Extraction, per example | ours | released procedure |",
        "|---|---|---|",
    ]
    for key in ("forward_backward_per_example", "forward_only_per_example", "forward_equivalents_per_example",
                "seconds_per_example"):  # fmt: skip
        lines.append(f"| {key} | {e['ours'][key]:.2f} | {e['released'][key]:.2f} |")
    lines += [
        "",
        f"Speed-up: **{e['speedup']:.2f}×**; model passes (forward-equivalents, backward = 2 forwards): "
        f"**{e['pass_ratio']:.2f}** of the release.",
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
    parser.add_argument("--n-pairs", type=int, default=3)
    parser.add_argument("--ig-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1)
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
        "extraction": measure_extraction(model, tok, pairs, args.ig_steps, args.batch_size),
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
