"""Benchmark of the prior extractors on real data, measured side by side in one run.

    python -m benchmarks.prior_bench --out bench/out [--examples 3 --cap-samples 16 --repeats 3 --threads 0]

Times, interleaved over ``--repeats`` rounds (``benchmarks.timing.interleave``: every extractor once per round in a
rotated order, min / median / max and the machine load), the prior of the same texts by: the CAP teacher
(SmolLM2-135M-Instruct, Banking77 prompt with all 77 labels) with the shared prefix KV-cached and variants packed;
the same teacher with naive full-prompt forwards (batched, same token ids); the cached path in bfloat16; the LIME
prior and the IG prior on a MiniLM reference. Reports examples/s, the cache's speed-up over the naive path and
bfloat16's over fp32 as per-round paired ratios, and the maximum difference of the cached and naive teacher
log-probabilities and CAP coefficients (targets: ≥ 5× faster, equal within 1e-4). Writes ``priors.json`` and
``priors.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import interleave, ratio, ratio_cell
from cap_lightning.datasets import SPECS, load_splits
from cap_lightning.priors.cap import ClassAwarePrior
from cap_lightning.priors.ig import IGPrior
from cap_lightning.priors.lime import LIMEPrior
from cap_lightning.priors.masks import perturb
from lmcore.io import atomic_write_json, atomic_write_text

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CAP_CASES = {"cap_cached": ("float32", True), "cap_naive": ("float32", False), "cap_bf16": ("bfloat16", True)}


def build_cap(teacher: str, names: Sequence[str], samples: int, dtype: str, cached: bool) -> ClassAwarePrior:
    """A CAP prior with the Banking77 prompt, its scorer built (prefix cache on or off) and warmed up."""
    prompt = SPECS["banking77"].prompt
    prior = ClassAwarePrior(teacher, prompt.instruction, prompt.text_prefix, prompt.answer_prefix,
                            n_samples=samples, teacher_dtype=dtype, example_cache_dir=None)  # fmt: skip
    prior.class_names = list(names)
    prior.scorer = prior.build_scorer(torch.device("cpu"), use_prefix_cache=cached)
    prior.scorer.score(["warm up"], [0])  # and, for the cached path, the shared prefix (once per dataset)
    return prior


def masked_variants(prior: ClassAwarePrior, texts: Sequence[str], labels: Sequence[int]) -> tuple[list, list]:
    """The masked variants ``prior.compute`` scores for ``texts`` (its own masks), with each variant's gold label."""
    masks, variants = perturb(texts, prior.mask_strategy, prior.n_samples, prior.seed, prior.mask_token)
    return variants, [int(y) for m, y in zip(masks, labels) for _ in range(len(m))]


def bench(texts: Sequence[str], labels: Sequence[int], names: Sequence[str], *, teacher: str = "smollm2-135m",
          reference: str = "minilm", cap_samples: int = 16, lime_samples: int = 500, ig_steps: int = 50,
          repeats: int = 3) -> dict[str, Any]:  # fmt: skip
    """Interleaved timings of every extractor on the same texts, the paired speed-ups, and the cached path's
    equality with the naive one."""
    caps = {name: build_cap(teacher, names, cap_samples, dtype, cached) for name, (dtype, cached) in CAP_CASES.items()}
    slm = {
        "lime": LIMEPrior(reference, n_samples=lime_samples, max_length=64, fine_tune_epochs=1),
        "ig": IGPrior(reference, steps=ig_steps, internal_batch_size=100, max_length=64, fine_tune_epochs=1),
    }
    for prior in slm.values():
        prior.prepare(texts, labels, len(names), torch.device("cpu"))
        prior(texts[:1], labels[:1])  # first-call costs outside the timed rounds (the CAP scorers warmed up above)
    last: dict[str, list[dict]] = {}  # each CAP path's records from its last timed round, for the equality check

    def cap_case(name: str, prior: ClassAwarePrior):
        return lambda: last.__setitem__(name, prior.compute(texts, labels))

    cases = {name: cap_case(name, p) for name, p in caps.items()}
    cases |= {name: (lambda p=p: p(texts, labels)) for name, p in slm.items()}
    timings = interleave(cases, repeats=repeats, warmup=0)
    cached, naive = last["cap_cached"], last["cap_naive"]
    variants, gold = masked_variants(caps["cap_cached"], texts, labels)
    logp = {name: caps[name].scorer.score(variants, gold) for name in ("cap_cached", "cap_naive")}
    phi = max(abs(a - b) for rc, rn in zip(cached, naive) for a, b in zip(rc["phi"], rn["phi"]))
    speedup, bf16 = ratio(timings, "cap_naive", "cap_cached"), ratio(timings, "cap_cached", "cap_bf16")
    logp_diff = float((logp["cap_cached"] - logp["cap_naive"]).abs().max())
    return {
        "examples": len(texts), "masked_variants": len(variants), "repeats": repeats, "load": timings.pop("load"),
        "examples_per_second": {name: len(texts) / t["median"] for name, t in timings.items()},
        "seconds": timings, "cache_speedup": speedup, "bf16_speedup": bf16,
        "max_abs_logprob_difference": logp_diff, "max_abs_coefficient_difference": phi,
        "teacher_accuracy": sum(r["gold_rank"] == 0 for r in cached) / len(cached),
        "targets": {"cap_prefix_cache_ge_5x": speedup["median"] >= 5,
                    "cap_scores_equal_within_1e-4": logp_diff <= 1e-4},
    }  # fmt: skip


def markdown(report: dict[str, Any], machine: str, cap_samples: int) -> str:
    r, eps = report, report["examples_per_second"]
    load = r["load"]
    return "\n".join([
        "# prior extraction benchmark", "",
        f"{machine}; {r['examples']} Banking77 train texts, {r['repeats']} interleaved rounds; load average "
        f"{load['before']['load_avg_1min']} → {load['after']['load_avg_1min']} on {load['after']['cpus']} CPUs", "",
        "| prior | examples/s (median round) | notes |", "|---|---|---|",
        f"| CAP, SmolLM2-135M fp32, prefix KV cache + packed variants | {eps['cap_cached']:.3f} | {cap_samples} "
        f"masks/text, {r['masked_variants']} variants + all-label ranks |",
        f"| CAP, naive full-prompt forwards (fp32) | {eps['cap_naive']:.3f} | the cache's speed-up "
        f"{ratio_cell(r['cache_speedup'], target=5)}; max abs Δ log p {r['max_abs_logprob_difference']:.1e}, "
        f"max abs Δ φ {r['max_abs_coefficient_difference']:.1e} (target 1e-4) |",
        f"| CAP, prefix cache, teacher in bfloat16 | {eps['cap_bf16']:.3f} | {ratio_cell(r['bf16_speedup'])} over "
        "the fp32 cached path |",
        f"| LIME, MiniLM reference | {eps['lime']:.3f} | |",
        f"| IG, MiniLM reference | {eps['ig']:.3f} | |",
        "", f"Teacher picks the gold label on {100 * r['teacher_accuracy']:.0f}% of these texts.", "",
        "| target | met |", "|---|---|",
        *[f"| {k} | {'yes' if v else 'no'} |" for k, v in r["targets"].items()],
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--examples", type=int, default=3)
    parser.add_argument("--cap-samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    splits = load_splits("banking77", DATA / "banking77")
    rows = splits.train[: args.examples]
    machine = (f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}, "
               f"{torch.get_num_threads()} torch threads")  # fmt: skip
    report = bench([e.text for e in rows], [e.label for e in rows], splits.label_names,
                   cap_samples=args.cap_samples, repeats=args.repeats)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "priors.json", {"machine": machine, **report}, indent=2)
    text = markdown(report, machine, args.cap_samples)
    atomic_write_text(out / "priors.md", text)
    print(text)


if __name__ == "__main__":
    main()
