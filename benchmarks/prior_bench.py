"""Benchmark of the prior extractors on real data, measured side by side in one run.

    python -m benchmarks.prior_bench --out bench/out [--examples 16 --cap-samples 32 --threads 0]

Reports examples/s of: the CAP teacher (SmolLM2-135M-Instruct, Banking77 prompt with all 77 labels) with the shared
prefix KV-cached and variants packed vs naive full-prompt forwards (batched, same token ids), with the maximum
difference of their teacher log-probabilities and of the CAP coefficients (target: ≥ 5× faster, equal within
1e-4); the same cached path with the teacher in bfloat16; the LIME prior and the IG prior on a MiniLM reference.
Writes ``priors.json`` and ``priors.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from cap_lightning.datasets import SPECS, load_splits
from cap_lightning.priors.cap import ClassAwarePrior
from cap_lightning.priors.ig import IGPrior
from cap_lightning.priors.lime import LIMEPrior
from cap_lightning.priors.masks import apply_mask, sample_masks
from cap_lightning.tokens import split_words

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _cap(texts, labels, names, samples: int, dtype: str, cached: bool):
    prompt = SPECS["banking77"].prompt
    prior = ClassAwarePrior("smollm2-135m", prompt.instruction, prompt.text_prefix, prompt.answer_prefix,
                            n_samples=samples, teacher_dtype=dtype, example_cache_dir=None)  # fmt: skip
    prior.class_names = names
    prior.scorer = prior.build_scorer(torch.device("cpu"), use_prefix_cache=cached)
    variants, gold = [], []
    for text, y in zip(texts, labels):
        words = split_words(text)
        variants += [apply_mask(words, m) for m in sample_masks(len(words), n_samples=samples, text=text)]
        gold += [y] * (len(variants) - len(gold))
    prior.scorer.score(variants[:4], gold[:4])  # warm-up (and the prefix cache, once per dataset)
    start = time.perf_counter()
    records = prior.compute(texts, labels)
    seconds = time.perf_counter() - start
    logp = prior.scorer.score(variants, gold)
    return records, logp, seconds, len(variants)


def bench_cap(texts, labels, names, samples: int) -> dict:
    cached, logp_c, t_cached, n_variants = _cap(texts, labels, names, samples, "float32", True)
    naive, logp_n, t_naive, _ = _cap(texts, labels, names, samples, "float32", False)
    _, _, t_bf16, _ = _cap(texts, labels, names, samples, "bfloat16", True)
    phi_diff = max(abs(a - b) for rc, rn in zip(cached, naive) for a, b in zip(rc["phi"], rn["phi"]))
    return {
        "examples": len(texts),
        "masked_variants": n_variants,
        "cached_examples_per_second": len(texts) / t_cached,
        "naive_examples_per_second": len(texts) / t_naive,
        "cached_bf16_examples_per_second": len(texts) / t_bf16,
        "speedup": t_naive / t_cached,
        "max_abs_logprob_difference": float((logp_c - logp_n).abs().max()),
        "max_abs_coefficient_difference": phi_diff,
        "teacher_accuracy": sum(r["gold_rank"] == 0 for r in cached) / len(cached),
    }


def bench_slm(texts, labels, num_labels: int) -> dict:
    out = {}
    for name, prior in (
        ("lime_500", LIMEPrior("minilm", n_samples=500, max_length=64, fine_tune_epochs=1)),
        ("ig_50", IGPrior("minilm", steps=50, internal_batch_size=100, max_length=64, fine_tune_epochs=1)),
    ):
        prior.prepare(texts, labels, num_labels, torch.device("cpu"))
        start = time.perf_counter()
        prior(texts, labels)
        out[name] = {"examples": len(texts), "examples_per_second": len(texts) / (time.perf_counter() - start)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--cap-samples", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    splits = load_splits("banking77", DATA / "banking77")
    texts = [e.text for e in splits.train[: args.examples]]
    labels = [e.label for e in splits.train[: args.examples]]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads",
        "cap": bench_cap(texts, labels, splits.label_names, args.cap_samples),
        "slm_priors": bench_slm(texts, labels, splits.num_labels),
    }
    c, s = report["cap"], report["slm_priors"]
    report["targets"] = {
        "cap_prefix_cache_ge_5x": c["speedup"] >= 5,
        "cap_scores_equal_within_1e-4": c["max_abs_logprob_difference"] <= 1e-4,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "priors.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# prior extraction benchmark", "", f"{report['machine']}; Banking77 train texts", "",
        "| prior | examples/s | notes |", "|---|---|---|",
        f"| CAP, SmolLM2-135M fp32, prefix KV cache + packed variants | {c['cached_examples_per_second']:.3f} | "
        f"{args.cap_samples} masks/text, {c['masked_variants']} variants + all-label ranks |",
        f"| CAP, naive full-prompt forwards (fp32) | {c['naive_examples_per_second']:.3f} | speed-up of the cache "
        f"{c['speedup']:.2f}×; max |Δ log p| {c['max_abs_logprob_difference']:.1e}, max |Δ φ| "
        f"{c['max_abs_coefficient_difference']:.1e} |",
        f"| CAP, prefix cache, teacher in bfloat16 | {c['cached_bf16_examples_per_second']:.3f} | |",
        f"| LIME, 500 masks, MiniLM reference | {s['lime_500']['examples_per_second']:.3f} | |",
        f"| IG, 50 steps, MiniLM reference | {s['ig_50']['examples_per_second']:.3f} | |",
        "", f"Teacher picks the gold label on {100 * c['teacher_accuracy']:.0f}% of these texts.", "",
        "| target | met |", "|---|---|",
        *[f"| {k} | {'yes' if v else 'no'} |" for k, v in report["targets"].items()],
    ]  # fmt: skip
    (out / "priors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
