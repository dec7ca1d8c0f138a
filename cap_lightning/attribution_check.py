"""How well a cheap self-attribution tracks the model's converged IG (docs/cap.md §1.4).

    python -m cap_lightning.attribution_check --ckpt runs/reproduce_cap/hwu64/baseline/s2/checkpoints/best.ckpt \\
        --dataset hwu64 --data-root ../shared/data --rows 64 --out runs/attribution_check/hwu64_s2

Training aligns a differentiable self-attribution that must be cheap (it is recomputed, with its double backward,
at every step), while evaluation scores the model's IG with many steps. If the cheap one ranks words differently
from the IG, the alignment moves something the evaluation does not see. This command measures, on a trained
classifier, the word-level Spearman ρ of each candidate (``method:steps``, e.g. ``grad_x_input:1``, ``ig:1``,
``ig:4``, or ``ig:steps:quadrature``, e.g. ``ig:4:gausslegendre``) with the reference IG of the gold label, the
paired difference of each candidate to the first one, and each path attribution's completeness error
|Σ a − (F(x) − F(r))| / |F(x) − F(r)|: the measure of "fewer IG steps at equal accuracy" (a quadrature rule that
reaches 8 midpoint steps' error with fewer points would make the aligned IG step cheaper).

Design decisions:
- The reference is ``CapModule.attribute(..., method="ig", steps=--reference-steps)``: the model's own IG with its
  configured baseline and quadrature (midpoint by default), the quantity faithfulness and held-out agreement use.
- Rows: a seeded stratified subset of the test split (``stratified_rows``, every class when ``rows`` ≥ classes);
  ρ per text over its words (``tokens.word_sums``; ``faithfulness.spearman_rows``: average ranks, ρ = 0 for a text
  with fewer than two words or a constant side).
- Uncertainty: mean ρ per candidate, and the difference to the first candidate with a 95 % paired bootstrap
  interval over texts (``lmcore.statistics``); "no difference" when it covers 0.
- Writes ``attribution_check.json`` and ``attribution_check.md`` atomically; bad arguments fail before any model or
  data is loaded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple, get_args

from torch import Tensor

from cap_lightning.attribution import Method
from cap_lightning.faithfulness import spearman_rows
from cap_lightning.tokens import word_sums
from lmcore.io import atomic_write_json, atomic_write_text
from lmcore.quadrature import QUADRATURES
from lmcore.statistics import paired_bootstrap_interval, verdict

DEFAULT_CANDIDATES = ("grad_x_input:1", "ig:1", "ig:2", "ig:4", "expected_gradients:1")


class Candidate(NamedTuple):
    """One cheap self-attribution: ``method``, ``steps`` and, for IG, a quadrature (None: the model's)."""

    method: str
    steps: int
    quadrature: str | None = None

    @property
    def name(self) -> str:
        return ":".join([self.method, str(self.steps), *([self.quadrature] if self.quadrature else [])])


def parse_candidate(spec: str) -> Candidate:
    """``method:steps`` or, for IG, ``ig:steps:quadrature`` → a ``Candidate``.

    Raises:
        ValueError: naming the bad spec and what is allowed.
    """
    parts = spec.split(":")
    method, steps = (parts + [""])[:2]
    quadrature = parts[2] if len(parts) == 3 else None
    allowed = list(get_args(Method))
    if len(parts) not in (2, 3) or method not in allowed or not steps.isdigit() or int(steps) < 1:
        raise ValueError(f"candidate {spec!r}: expected method:steps (or ig:steps:quadrature) with method in "
                         f"{allowed} and steps >= 1")  # fmt: skip
    if quadrature is not None and (method != "ig" or quadrature not in QUADRATURES):
        raise ValueError(f"candidate {spec!r}: a quadrature is for ig only, one of {list(QUADRATURES)}")
    return Candidate(method, int(steps), quadrature)


def completeness_errors(scores: Tensor, gap: Tensor) -> Tensor:
    """|Σ_t a_t − (F(x) − F(r))| / |F(x) − F(r)| per row (B,): 0 for a complete path attribution."""
    return (scores.sum(-1) - gap).abs() / gap.abs().clamp_min(1e-12)


def word_rank_agreement(candidate: Tensor, reference: Tensor, word_index: Tensor, content: Tensor) -> Tensor:
    """Spearman ρ per row between two token attributions summed per word, (B,), over rows with content."""
    a, present = word_sums(candidate, word_index, content)
    b, _ = word_sums(reference, word_index, content)
    return spearman_rows(a, b, present)[content.any(-1)]


def agreement_with_reference(
    module, batches, candidates: Sequence[Candidate], reference_steps: int, progress=None
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per text, ρ of each candidate with the module's IG of ``reference_steps`` steps and each candidate's relative
    completeness error (``completeness_errors``; Expected Gradients, whose reference is another text, has none):
    ``(ρ, errors)`` keyed by ``Candidate.name``, the reference's errors under ``"reference"``."""
    from cap_lightning.faithfulness import rationale_scores
    from cap_lightning.tokens import content_mask

    rho: dict[str, list[float]] = {c.name: [] for c in candidates}
    errors: dict[str, list[float]] = {"reference": []}
    errors |= {c.name: [] for c in candidates if c.method != "expected_gradients"}

    def attribution(batch: dict[str, Tensor], method: str, steps: int, quadrature: str | None = None) -> Tensor:
        run = lambda x: module.attribute(x, False, steps, method, quadrature)  # noqa: E731
        return rationale_scores(run, batch, batch["labels"])

    for batch in batches:
        reference = attribution(batch, "ig", reference_steps)
        content = content_mask(batch)
        rows = content.any(-1)
        gap = module.endpoint_gap(batch)[rows]
        errors["reference"].extend(completeness_errors(reference[rows], gap).tolist())
        for c in candidates:
            scores = attribution(batch, c.method, c.steps, c.quadrature)
            rho[c.name].extend(word_rank_agreement(scores, reference, batch["word_index"], content).tolist())
            if c.name in errors:
                errors[c.name].extend(completeness_errors(scores[rows], gap).tolist())
        if progress is not None:
            progress.update(len(batch["labels"]))
    return rho, errors


def summarise(rho: dict[str, list[float]], errors: dict[str, list[float]] | None = None) -> list[dict[str, object]]:
    """Per candidate: mean and std of ρ, the paired difference to the first candidate (95 % bootstrap) and, where
    ``errors`` has the candidate, the median and mean relative completeness error."""
    names = list(rho)
    rows = []
    for name in names:
        values = rho[name]
        row: dict[str, object] = {"candidate": name, "texts": len(values), "mean_rho": statistics.fmean(values),
                                  "std_rho": statistics.stdev(values) if len(values) > 1 else 0.0}  # fmt: skip
        if name != names[0]:
            interval = paired_bootstrap_interval(values, rho[names[0]])
            row |= {"vs": names[0], "diff": interval.mean, "low": interval.low, "high": interval.high,
                    "verdict": verdict(interval)}  # fmt: skip
        if errors and errors.get(name):
            row |= {"completeness_median": statistics.median(errors[name]),
                    "completeness_mean": statistics.fmean(errors[name])}  # fmt: skip
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, object]], header: str) -> str:
    columns = ("| candidate | texts | mean ρ with reference IG | std | difference to first (95 % bootstrap) | "
               "completeness error, median (mean) |")  # fmt: skip
    lines = [header, "", columns, "|---|---|---|---|---|---|"]
    for r in rows:
        diff = f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] {r['verdict']}" if "diff" in r else "–"
        complete = (f"{r['completeness_median']:.3f} ({r['completeness_mean']:.3f})"
                    if "completeness_median" in r else "–")  # fmt: skip
        lines.append(f"| {r['candidate']} | {r['texts']} | {r['mean_rho']:.3f} | {r['std_rho']:.3f} | {diff} | "
                     f"{complete} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--ckpt", required=True, help="a CapModule checkpoint (read weights-only)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default="../shared/data", help="folder holding <dataset>/ (hub ids when absent)")
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--rows", type=int, default=64, help="seeded stratified test texts")
    p.add_argument("--rows-seed", type=int, default=0)
    p.add_argument(
        "--candidates",
        nargs="+",
        default=list(DEFAULT_CANDIDATES),
        help=f"method:steps, or ig:steps:quadrature ({', '.join(QUADRATURES)}; default: the model's)",
    )
    p.add_argument("--reference-steps", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", default="runs/attribution_check")
    args = p.parse_args(argv)
    try:
        args.parsed = [parse_candidate(c) for c in args.candidates]
    except ValueError as e:
        p.error(str(e))
    for name in ("rows", "reference_steps", "batch_size", "max_length"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not Path(args.ckpt).is_file():
        p.error(f"--ckpt {args.ckpt}: no such file")
    return args


def check(module, datamodule, args: argparse.Namespace, argv: Sequence[str]) -> dict[str, object]:
    """Score the candidates of ``args`` on ``datamodule``'s test split and write the JSON and Markdown files."""
    from tqdm.auto import tqdm

    from cap_lightning.stratified import stratified_rows

    start = time.perf_counter()
    datamodule.setup("test")
    loader = datamodule.test_dataloader()
    keep = stratified_rows([e.label for e in datamodule.splits.test], args.rows, args.rows_seed)
    items = [loader.dataset[i] for i in keep]
    if [int(it["index"]) for it in items] != keep:
        raise RuntimeError("the test dataset's items are not in row order")
    batches = [loader.collate_fn(items[s : s + args.batch_size]) for s in range(0, len(items), args.batch_size)]
    module.eval()
    with tqdm(total=len(items), desc="attribution check", unit="text") as bar:
        rho, errors = agreement_with_reference(module, batches, args.parsed, args.reference_steps, bar)
    rows = summarise(rho, errors)
    reference_error = statistics.median(errors["reference"]) if errors["reference"] else float("nan")
    out = Path(args.out)
    record = {"command": " ".join(["python -m cap_lightning.attribution_check", *argv]), "ckpt": args.ckpt,
              "dataset": args.dataset, "rows": len(items), "rows_seed": args.rows_seed,
              "reference": f"ig:{args.reference_steps}", "reference_completeness_median": reference_error,
              "summary": rows, "rho": rho, "completeness_errors": errors,
              "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    atomic_write_json(out / "attribution_check.json", record, indent=1)
    header = (f"Word-level ρ with the model's IG ({args.reference_steps} steps) of the gold label, {len(items)} "
              f"stratified {args.dataset} test texts, {args.ckpt}. Completeness error: |Σ a − (F(x) − F(r))| / "
              f"|F(x) − F(r)| per text (the reference's median: {reference_error:.2g}).")  # fmt: skip
    text = markdown(rows, header)
    atomic_write_text(out / "attribution_check.md", text)
    print(text + f"\nwrote {out}/attribution_check.{{json,md}} in {record['seconds']} s")
    return record


def main(argv: list[str] | None = None) -> None:
    from cap_lightning import CapDataModule
    from cap_lightning.module import CapModule

    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    data_dir = Path(args.data_root) / args.dataset
    datamodule = CapDataModule(dataset=args.dataset, data_dir=str(data_dir) if data_dir.is_dir() else None,
                               max_length=args.max_length, eval_batch_size=args.batch_size)  # fmt: skip
    check(CapModule.load_from_checkpoint(args.ckpt, map_location="cpu"), datamodule, args, argv)


if __name__ == "__main__":
    main()
