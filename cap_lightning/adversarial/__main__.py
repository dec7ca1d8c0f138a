"""``python -m cap_lightning.adversarial {recipes,textattack,inject,metrics}``: build and inspect adversarial splits.

Examples::

    python -m cap_lightning.adversarial recipes
    python -m cap_lightning.adversarial textattack --ckpt runs/.../best.ckpt --dataset banking77 \\
        --recipe deepwordbug --n 200 --out runs/adversarial/banking77-deepwordbug-n200.jsonl
    python -m cap_lightning.adversarial inject --ckpt runs/.../best.ckpt --dataset banking77 --n 200 \\
        --generator smollm2-135m --out runs/adversarial/banking77-llm_keyword_injection-n200.jsonl
    python -m cap_lightning.adversarial metrics runs/adversarial/banking77-deepwordbug-n200.jsonl

Design decisions:
- Argument parsing and the order of checks live here; the work is in ``textattack_gen`` / ``keyword_injection``.
  Recipe names are validated by argparse-free code before the dataset, textattack or any model loads.
- ``--data_dir`` defaults to ``../shared/data/<dataset>`` (the project machine's layout) when that folder exists.
- Bad input (recipe name, victim/data label count, nothing to attack, missing extra or NLTK data) ends the command
  with one ``error: ...`` line and exit status 2; ``main()`` itself raises, for tests and notebooks.
- The summary (metrics against the victim, output path, cache key, wall time) is printed as one JSON object on
  stdout, so scripts can parse it; progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from cap_lightning.adversarial.recipes import OFFLINE_RECIPES, RECIPES, check_recipe


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="victim: a CapModule .ckpt or a saved HF classifier folder")
    p.add_argument("--dataset", required=True, help="sst2 | banking77 | hwu64 | clinc150 | emotion | custom")
    p.add_argument("--data_dir", default=None, help="dataset folder (default ../shared/data/<dataset> if present)")
    p.add_argument("--train_file", default=None, help="custom data: train file")
    p.add_argument("--test_file", default=None, help="custom data: test file")
    p.add_argument("--label_names", nargs="+", default=None, help="custom data: label order")
    p.add_argument("--split", default="test", choices=("test", "validation", "train"), help="split to attack")
    p.add_argument("--n", type=int, default=None, help="seeded subset of this many examples (default: all)")
    p.add_argument("--seed", type=int, default=0, help="subset and attack seed")
    p.add_argument("--out", default=None, help="attacked split .jsonl (default: inside the cache entry)")
    p.add_argument("--cache_dir", default="cache/adversarial", help="root of the resumable cache")
    p.add_argument("--chunk_size", type=int, default=10, help="examples per chunk file (unit of resumption)")
    p.add_argument("--max_length", type=int, default=64, help="tokens per text given to the victim")
    p.add_argument("--batch_size", type=int, default=32, help="victim batch size")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cap_lightning.adversarial", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("recipes", help="list TextAttack recipes and whether they run offline")
    ta = sub.add_parser("textattack", help="attack a split with a TextAttack recipe")
    _common(ta)
    ta.add_argument("--recipe", required=True, help=f"one of {list(OFFLINE_RECIPES)} (offline)")
    ta.add_argument("--query_budget", type=int, default=None, help="max victim queries per example")
    ta.add_argument("--allow_downloads", action="store_true", help="allow recipes that download resources")
    inj = sub.add_parser("inject", help="LLM keyword injection (the paper's protocol)")
    _common(inj)
    inj.add_argument("--generator", default="smollm2-135m", help="causal LM: short name, HF folder or hub id")
    inj.add_argument("--keywords", type=int, default=3, help="keywords of the confusable class to inject")
    inj.add_argument("--max_new_tokens", type=int, default=48, help="generation length")
    inj.add_argument("--pairs_split", default="validation", choices=("validation", "train", "test"),
                     help="split whose confusion matrix gives the confusable pairs")  # fmt: skip
    met = sub.add_parser("metrics", help="generation-time metrics of a split file from its statuses")
    met.add_argument("file", help="attacked split .jsonl")
    return parser


def _load_splits(args):
    from cap_lightning.datasets import CustomData, load_splits

    data_dir = args.data_dir
    if data_dir is None and args.dataset != "custom":
        default = Path("../shared/data") / args.dataset
        data_dir = str(default) if default.is_dir() else None
    return load_splits(
        args.dataset,
        data_dir,
        seed=args.seed,
        custom=CustomData(train_file=args.train_file, test_file=args.test_file, label_names=args.label_names),
    )


def _summary(result) -> dict:
    report = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.report.as_dict().items()}
    return {
        "out": str(result.out),
        "key": result.key,
        "rows": len(result.rows),
        "chunks_computed": result.chunks_computed,
        "wall_s": round(result.wall_s, 2),
        "victim_metrics": report,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "recipes":
        for name, spec in RECIPES.items():
            where = "offline" if spec.offline else f"needs {spec.missing}"
            print(f"{name:16s} {spec.class_name:30s} {where}")
        return 0
    if args.command == "metrics":
        from cap_lightning.adversarial.format import read_adversarial_jsonl
        from cap_lightning.adversarial.metrics import robustness_from_statuses

        rows = read_adversarial_jsonl(args.file)
        print(json.dumps(robustness_from_statuses([r.status for r in rows]).as_dict(), indent=2))
        return 0
    if args.command == "textattack":
        check_recipe(args.recipe, allow_downloads=args.allow_downloads)  # before the data loads
    from cap_lightning.adversarial.source import select_examples

    splits = _load_splits(args)
    selection = select_examples(splits, args.split, args.n, args.seed)
    common = dict(
        seed=args.seed,
        out=args.out,
        cache_dir=args.cache_dir,
        chunk_size=args.chunk_size,
        max_length=args.max_length,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    if args.command == "textattack":
        from cap_lightning.adversarial.textattack_gen import generate_textattack

        result = generate_textattack(
            args.ckpt,
            selection,
            splits.label_names,
            args.recipe,
            query_budget=args.query_budget,
            allow_downloads=args.allow_downloads,
            **common,
        )
    else:
        from cap_lightning.adversarial.keyword_injection import InjectionConfig, generate_injection

        config = InjectionConfig(generator=args.generator, n_keywords=args.keywords, max_new_tokens=args.max_new_tokens)
        result = generate_injection(args.ckpt, splits, selection, config, pairs_split=args.pairs_split, **common)
    print(json.dumps(_summary(result), indent=2))
    return 0


def _entry() -> int:
    """Command-line entry: bad input is one ``error: ...`` line and exit status 2, not a traceback."""
    from cap_lightning.adversarial.recipes import RecipeUnavailableError

    try:
        return main()
    except (ValueError, FileNotFoundError, ModuleNotFoundError, RecipeUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_entry())
