"""Can the token attributions that choose P and Q be trusted? IG convergence and IG-vs-occlusion, per example.

    python -m steering.attribution_check --config experiments/steer_smollm2_truthfulqa.yaml --n 20 \
        --steps 10 20 50 --quadratures gausslegendre gausslegendre_squared --out runs/attribution_check

For the first ``--n`` examples of the config's steering split, with the config's ``grains`` settings (objective,
candidates, mask, selection rules, k), it reports per example (docs/grains.md §6.9):

- IG's **completeness error** Σ a − (F(x) − F(0)) at every step count of every quadrature, beside the gap F(x) − F(0);
- the **top-k Jaccard** of the P and of the Q sets between every two step counts (the sets the vector is built from:
  unconverged IG shows as sets that change with the step count);
- **IG vs occlusion**: Spearman ρ over the candidate tokens and the Jaccard of their P and Q sets, at every step count
  (occlusion = the drop in F when the token alone is masked the way P and Q are; ``steering.occlusion``);
- the seconds each attribution took (the cost of IG per step count, and of occlusion).

It writes ``attribution_check.json`` (every example, plus the summary) and ``attribution_check.md`` (mean and median of
every metric) into ``--out``, each atomically. Bad arguments fail before the model loads, naming the bad value and what
is allowed. The computations are ``steering.attribution_agreement``'s; this file orchestrates.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from lmcore.choices import check_choice
from lmcore.quadrature import QUADRATURES, Quadrature
from steering.attribution_agreement import jaccard, pairwise_jaccard, spearman, summarize

JSON_NAME, MARKDOWN_NAME = "attribution_check.json", "attribution_check.md"


def _fail(parser: argparse.ArgumentParser, message: str):
    parser.error(message)  # exits with status 2 and the usage line


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, Any], argparse.ArgumentParser]:
    p = argparse.ArgumentParser(prog="python -m steering.attribution_check", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="a SteeringModule YAML (experiments/steer_*.yaml)")
    p.add_argument("--n", type=int, default=20, help="examples from the steering split (default 20)")
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50], help="IG step counts (>= 2 distinct)")
    p.add_argument("--quadratures", nargs="+", default=None,
                   help=f"IG quadratures, of {QUADRATURES} (default: the config's grains.ig_method)")  # fmt: skip
    p.add_argument("--k", type=int, default=None, help="top-k of the P / Q sets (default: the config's grains.top_k)")
    p.add_argument("--no-occlusion", action="store_true", help="skip occlusion (and the IG-vs-occlusion agreement)")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    p.add_argument("--out", default="runs/attribution_check", help="output folder (default runs/attribution_check)")
    args = p.parse_args(argv)
    if args.n < 1:
        _fail(p, f"--n {args.n} must be >= 1")
    bad_steps = [s for s in args.steps if s < 1]
    if bad_steps:
        _fail(p, f"--steps {bad_steps} must all be >= 1")
    args.steps = sorted(set(args.steps))
    if len(args.steps) < 2:
        _fail(p, f"--steps {args.steps} needs at least 2 distinct step counts to compare (e.g. --steps 10 20 50)")
    if args.k is not None and args.k < 1:
        _fail(p, f"--k {args.k} must be >= 1")
    for q in args.quadratures or []:
        try:
            check_choice("--quadratures", q, Quadrature)
        except ValueError as e:
            _fail(p, str(e))
    if args.device is not None and args.device not in ("cpu", "cuda") and not args.device.startswith("cuda:"):
        _fail(p, f"--device {args.device!r}: allowed cpu, cuda or cuda:<i>")
    path = Path(args.config)
    if not path.is_file():
        _fail(p, f"--config {args.config} does not exist")
    config = yaml.safe_load(path.read_text()) or {}
    model_args = ((config.get("model") or {}).get("init_args")) or {}
    if "model_path" not in model_args:
        _fail(p, f"--config {args.config} has no model.init_args.model_path (is it a SteeringModule config?)")
    return args, config, p


def grains_from(config: dict[str, Any], parser: argparse.ArgumentParser, k: int | None):
    """The config's ``GrainsConfig`` (``model.init_args.grains``), with ``top_k`` replaced by ``--k``."""
    from steering.extract import GrainsConfig

    raw = dict(config["model"]["init_args"].get("grains") or {})
    known = {f.name for f in fields(GrainsConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        _fail(parser, f"grains keys {unknown} are not GrainsConfig fields; allowed: {sorted(known)}")
    if "exclude_token_ids" in raw:
        raw["exclude_token_ids"] = tuple(raw["exclude_token_ids"])
    try:
        grains = GrainsConfig(**raw)
        return replace(grains, top_k=k) if k is not None else grains
    except ValueError as err:
        _fail(parser, f"grains in the config: {err}")


def steering_examples(config: dict[str, Any], n: int, parser: argparse.ArgumentParser):
    """The first ``n`` pairs of the config's steering split (tokenizer and data only: no model weights)."""
    from steering.data import SteeringDataModule

    data = dict(((config.get("data") or {}).get("init_args")) or {})
    data.setdefault("model_path", config["model"]["init_args"]["model_path"])
    dm = SteeringDataModule(**data)
    dm.setup("predict")
    split = dm.splits["steer"]
    if n > len(split):
        _fail(parser, f"--n {n} exceeds the {len(split)} examples of the config's steering split (data n_steer)")
    return [(i, split[i].to_pair()) for i in range(n)]  # i: the index within the split, as the vector records it


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def check_example(model, tokenizer, pair, grains, steps: Sequence[int], quadratures: Sequence[str], replacement,
                  occlusion: bool) -> dict[str, Any]:  # fmt: skip
    """Every measurement of one example (see the module docstring)."""
    from steering.attribution import EmbeddedTriple, contrastive_ig_embeds
    from steering.extract import candidate_masks, select_positions
    from steering.occlusion import contrastive_occlusion_embeds
    from steering.pairs import embed_inputs, encode_pair

    x_ids, y_pos, y_neg = encode_pair(tokenizer, pair)
    with torch.no_grad():
        x = embed_inputs(model, x_ids, pair.pixel_values, **pair.image_kwargs).detach()
    triple = EmbeddedTriple(x, y_pos, y_neg)
    text, image = candidate_masks(tokenizer, model, x_ids, grains)
    cand = torch.nonzero(text | image)[:, 0]

    def sets(scores: torch.Tensor) -> dict[str, list[int]]:
        p, q, _ = select_positions(scores.cpu(), text, image, grains, torch.Generator().manual_seed(0))
        return {"P": sorted(p.tolist()), "Q": sorted(q.tolist())}

    row: dict[str, Any] = {"n_tokens": len(x_ids), "n_candidates": len(cand), "ig": {}}
    ig_scores: dict[str, dict[int, torch.Tensor]] = {}
    for q in quadratures:
        row["ig"][q], ig_scores[q] = {}, {}
        for s in steps:
            a, seconds = _timed(lambda s=s, q=q: contrastive_ig_embeds(
                model, [triple], n_steps=s, method=q, objective=grains.objective,
                internal_batch_size=grains.internal_batch_size, padding_side=grains.padding_side,
                check_completeness=True, packed=grains.pack_ig)[0])  # fmt: skip
            ig_scores[q][s] = a.scores.float().cpu()
            row["F"], row["gap"] = a.objective_value, a.objective_value - a.baseline_value
            row["ig"][q][str(s)] = {"completeness_error": a.completeness_error, "seconds": seconds, **sets(a.scores)}
    row["step_jaccard"] = {
        q: {side: pairwise_jaccard({s: row["ig"][q][str(s)][side] for s in steps}) for side in ("P", "Q")}
        for q in quadratures
    }
    if occlusion:
        o, seconds = _timed(lambda: contrastive_occlusion_embeds(
            model, [triple], [cand], grains.mask, replacement, grains.objective, grains.internal_batch_size,
            grains.padding_side, packed=grains.pack_ig)[0])  # fmt: skip
        occ = o.scores.float().cpu()
        row["occlusion"] = {"seconds": seconds, **sets(occ)}
        row["ig_vs_occlusion"] = {q: {str(s): {
            "spearman": spearman(ig_scores[q][s][cand], occ[cand]),
            "P_jaccard": jaccard(row["ig"][q][str(s)]["P"], row["occlusion"]["P"]),
            "Q_jaccard": jaccard(row["ig"][q][str(s)]["Q"], row["occlusion"]["Q"]),
        } for s in steps} for q in quadratures}  # fmt: skip
    return row


def summary(rows: Sequence[dict[str, Any]], steps: Sequence[int], quadratures: Sequence[str]) -> dict[str, dict]:
    """Mean / median / count of every per-example metric, keyed ``<metric>/<quadrature>/<steps>[/<set>]``."""
    out: dict[str, dict] = {}

    def add(key: str, values) -> None:
        out[key] = summarize(list(values))

    for q in quadratures:
        for s in map(str, steps):
            add(f"abs_completeness_error/{q}/{s}", (abs(r["ig"][q][s]["completeness_error"]) for r in rows))
            add(f"seconds_ig/{q}/{s}", (r["ig"][q][s]["seconds"] for r in rows))
        for side in ("P", "Q"):
            for pair in rows[0]["step_jaccard"][q][side]:
                add(f"step_jaccard/{q}/{pair}/{side}", (r["step_jaccard"][q][side][pair] for r in rows))
        if "ig_vs_occlusion" in rows[0]:
            for s in map(str, steps):
                for metric in ("spearman", "P_jaccard", "Q_jaccard"):
                    add(f"ig_vs_occlusion_{metric}/{q}/{s}", (r["ig_vs_occlusion"][q][s][metric] for r in rows))
    add("abs_gap_F(x)-F(0)", (abs(r["gap"]) for r in rows))
    if "occlusion" in rows[0]:
        add("seconds_occlusion", (r["occlusion"]["seconds"] for r in rows))
    add("n_candidates", (r["n_candidates"] for r in rows))
    return out


def markdown(report: dict[str, Any]) -> str:
    head = report["setup"]
    lines = [
        f"# Attribution check: {head['config']}", "",
        f"{head['n']} steering examples of `{head['model_path']}`, top-k {head['k']}, IG steps {head['steps']}, "
        f"quadratures {head['quadratures']}, occlusion {'on' if head['occlusion'] else 'off'}.", "",
        "| metric | mean | median | n |", "|---|---|---|---|",
    ]  # fmt: skip

    def fmt(v) -> str:
        return "–" if v is None else f"{v:.4g}"

    lines += [f"| {key} | {fmt(s['mean'])} | {fmt(s['median'])} | {s['n']} |" for key, s in report["summary"].items()]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """``attribution_check.json`` and ``.md`` in ``out``, each written atomically."""
    from steering.writer import atomic_write

    js = atomic_write(out / JSON_NAME, lambda tmp: tmp.write_text(json.dumps(report, indent=1, default=str)))
    md = atomic_write(out / MARKDOWN_NAME, lambda tmp: tmp.write_text(markdown(report)))
    return js, md


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from tqdm.auto import tqdm

    args, config, parser = parse_args(argv)
    grains = grains_from(config, parser, args.k)
    quadratures = list(dict.fromkeys(args.quadratures or [grains.ig_method]))
    examples = steering_examples(config, args.n, parser)  # data errors, too, before the weights load

    from steering.loading import load_model_and_tokenizer
    from steering.masking import replacement_embedding

    model_args = config["model"]["init_args"]
    model, tokenizer = load_model_and_tokenizer(model_args["model_path"], model_args.get("dtype", "float32"))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    replacement = replacement_embedding(model, tokenizer, grains.mask)
    rows = []
    cost = (sum(args.steps) + 2 * len(args.steps)) * len(quadratures)
    bar = tqdm(examples, desc=f"attribution check ({cost} IG rows per example)", unit="example")
    for index, pair in bar:
        row = check_example(model, tokenizer, pair, grains, args.steps, quadratures, replacement,
                            not args.no_occlusion)  # fmt: skip
        rows.append({"index": index, **row})
        q, s = quadratures[0], str(args.steps[0])
        bar.set_postfix(err=f"{abs(row['ig'][q][s]['completeness_error']):.3g}@{s}")
    setup = {
        "config": str(args.config), "model_path": model_args["model_path"], "n": args.n, "steps": args.steps,
        "quadratures": quadratures, "k": grains.top_k, "occlusion": not args.no_occlusion, "device": device,
        "grains": asdict(grains),
    }  # fmt: skip
    report = {"setup": setup, "summary": summary(rows, args.steps, quadratures), "examples": rows}
    js, md = write_report(Path(args.out), report)
    print(markdown(report))
    print(f"written: {js} and {md}")
    return report


if __name__ == "__main__":
    main()
