"""The CAP reproduction grid: ``python -m cap_lightning.reproduce`` (``make reproduce-cap``).

For every dataset × seed it trains the CE-only baseline, then uses that checkpoint as the reference SLM of the IG
and LIME priors (docs/cap.md §1.3: CE-only, same split) and the frozen teacher for CAP, and trains one student per prior
method. Each run is tested on the full test split; the table reports accuracy, macro-F1, comprehensiveness and
sufficiency (AOPC over the ERASER bins) and the agreement between the student's IG and its prior, mean ± std over
seeds, plus the cost of every stage.

Design decisions:
- One experiment surface: every run is ``lightning fit --config <run>/config.yaml``, run in-process
  (``lmcore.cli.run_cli``), and that config is the grid's (``cap_lightning.experiments.compose``) with this
  command's overrides merged in; it stays in the run folder, so any row of the table can be re-run by hand.
- Runs are resumable: each writes ``<out>/<dataset>/<method>/s<seed>/metrics.json`` atomically, and a finished run
  is skipped. Priors are cached per split (``PriorCacheCallback``) and per example (teacher scores are shared by
  all seeds; IG/LIME scores of one reference are shared by the IG, hybrid-mean and hybrid-max runs).
- The IG method runs as a one-source ``HybridPrior`` so it reads the same per-example store as the hybrids (a
  one-source fusion is the source itself: both are relu + max-normalised).
- Defaults are sized for a 2-core CPU (MiniLM student, SmolLM2-135M teacher, 10 shots, 32 tokens, gradient×input
  self-attribution); ``--student roberta-base --teacher <llama> --split full --attribution ig`` is the paper-sized
  run on a GPU.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from cap_lightning.experiments import GRID_DATASETS
from lmcore.io import atomic_write, atomic_write_text

METHODS = ("baseline", "ig", "lime", "cap", "hybrid_mean", "hybrid_max")
DEFAULT_METHODS = ("baseline", "ig", "cap", "hybrid_mean")  # + hybrid_max, lime with --methods

COLUMNS = (
    ("test/acc", "Acc"),
    ("test/macro_f1", "Macro-F1"),
    ("test/comp_aopc", "Comp AOPC ↑"),
    ("test/suff_aopc", "Suff AOPC ↓"),
    ("test/soft_comp", "Soft comp ↑"),
    ("test/soft_suff", "Soft suff ↓"),
    ("test/prior_spearman", "ρ(IG, prior)"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--datasets", nargs="+", default=["banking77", "hwu64"], choices=sorted(GRID_DATASETS))
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--split", default="few_shot", choices=["few_shot", "full"])
    p.add_argument("--shots", type=int, default=10, help="examples per class for --split few_shot")
    p.add_argument(
        "--data-root", default="../shared/data", help="folder holding <dataset>/ (hub ids are used when absent)"
    )
    p.add_argument("--student", default="minilm")
    p.add_argument("--teacher", default="smollm2-135m")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--prior-weight", type=float, default=0.1)
    p.add_argument("--prior-warmup-steps", type=int, default=40)
    # mse: with gradient×input at initialisation the KL alignment gradient is 38× the CE gradient (mse: 4×), and
    # λ = 0.1 with KL collapsed the 10-shot Banking77 student to 3.6 % accuracy
    p.add_argument("--prior-loss", default="mse", choices=["kl", "mse", "cosine", "rank"])
    p.add_argument("--attribution", default="grad_x_input", choices=["ig", "grad_x_input", "expected_gradients"])
    p.add_argument("--ig-steps", type=int, default=4, help="steps of the differentiable IG when --attribution ig")
    p.add_argument("--ig-prior-steps", type=int, default=8)
    p.add_argument("--lime-samples", type=int, default=32)
    p.add_argument("--cap-samples", type=int, default=16)
    p.add_argument("--teacher-dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    p.add_argument(
        "--cap-target", default="gold_prob", choices=["gold_prob", "gold_logprob", "label_softmax", "contrastive_k"]
    )
    p.add_argument("--faithfulness-steps", type=int, default=8)
    p.add_argument("--faithfulness-max-batches", type=int, default=2, help="test batches (of 64) scored for comp/suff")
    p.add_argument("--val-batches", type=int, default=5, help="validation batches (of 64) per epoch (0: all)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes, one (dataset, seed) chain each")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: cores / workers)")
    p.add_argument(
        "--adversarial-files", nargs="*", default=[], metavar="JSONL",
        help="attacked splits (python -m cap_lightning.adversarial ...) named <dataset>-<recipe>-*.jsonl: every run "
        "of that dataset is also scored on them (accuracy under attack, attack success rate)",
    )  # fmt: skip
    p.add_argument("--keep-checkpoints", action="store_true", help="keep every run's best.ckpt (default: baselines)")
    p.add_argument("--out", default="runs/reproduce_cap")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--wandb", action="store_true", help="log every run to W&B (offline unless a key is configured)")
    args = p.parse_args(argv)
    if args.split == "few_shot" and args.shots < 1:
        p.error(f"--shots must be >= 1, got {args.shots}")
    if any(m != "baseline" for m in args.methods) and "baseline" not in args.methods:
        p.error("the prior methods use the baseline checkpoint as their reference: keep 'baseline' in --methods")
    return args


# reproduction method -> the grid's prior name
GRID_PRIOR = {"baseline": "baseline", "ig": "ig", "lime": "lime", "cap": "cap", "hybrid_mean": "cap_hybrid_mean",
              "hybrid_max": "cap_hybrid_max"}  # fmt: skip


def prior_block(method: str, reference_ckpt: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``PriorCacheCallback.prior`` config of one method; IG and LIME read the baseline checkpoint, CAP the
    teacher (its prompt comes from the dataset spec). Every method runs as a ``HybridPrior`` so IG/LIME scores of
    one reference are read from one per-example store (a one-source fusion is the source itself)."""
    if method == "baseline":
        return None
    cache = Path(args.cache_dir)
    ig = {
        "class_path": "cap_lightning.IGPrior",
        "init_args": {"model_path": reference_ckpt, "steps": args.ig_prior_steps, "max_length": args.max_length},
    }
    lime = {
        "class_path": "cap_lightning.LIMEPrior",
        "init_args": {"model_path": reference_ckpt, "n_samples": args.lime_samples, "max_length": args.max_length},
    }
    cap = {
        "class_path": "cap_lightning.ClassAwarePrior",
        "init_args": {
            "teacher_path": args.teacher,
            "n_samples": args.cap_samples,
            "target": args.cap_target,
            "teacher_dtype": args.teacher_dtype,
            "example_cache_dir": str(cache / "cap_examples"),
        },
    }
    sources = {"ig": [ig], "lime": [lime], "cap": [cap], "hybrid_mean": [cap, lime, ig], "hybrid_max": [cap, lime, ig]}
    return {"class_path": "cap_lightning.HybridPrior",
            "init_args": {"sources": sources[method], "agg": "max" if method == "hybrid_max" else "mean",
                          "example_cache_dir": str(cache / "prior_examples")}}  # fmt: skip


def run_config(dataset: str, seed: int, method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The ``lightning fit`` config of one (dataset, seed, method): the grid cell with this command's overrides."""
    from cap_lightning.experiments import compose

    folder = Path(args.out) / dataset / method / f"s{seed}"
    reference = Path(args.out) / dataset / "baseline" / f"s{seed}" / "checkpoints" / "best.ckpt"
    data_dir = Path(args.data_root) / dataset
    setting = "fs10" if args.split == "few_shot" else "full"
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(folder / "checkpoints"), "filename": "best", "monitor": "val/acc",
                                "mode": "max", "save_weights_only": True, "enable_version_counter": False}}  # fmt: skip
    callbacks: list[dict[str, Any]] = [checkpoint]
    block = prior_block(method, str(reference), args)
    if block is not None:
        prior_cb = {"class_path": "cap_lightning.PriorCacheCallback",
                    "init_args": {"prior": block, "cache_dir": str(Path(args.cache_dir) / "priors")}}  # fmt: skip
        callbacks.insert(0, prior_cb)
    logger: Any = False
    if args.wandb:
        logger = {
            "class_path": "lightning.pytorch.loggers.WandbLogger",
            "init_args": {"project": "cap-lightning", "save_dir": str(folder), "group": f"reproduce/{dataset}"},
        }
    overrides = {
        "seed_everything": seed,
        "trainer": {"max_epochs": args.epochs, "devices": 1, "logger": logger, "callbacks": callbacks,
                    "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(folder),
                    "limit_val_batches": args.val_batches or 1.0},
        "model": {"init_args": {
            "model_path": args.student, "prior_weight": 0.0 if method == "baseline" else args.prior_weight,
            "prior_loss": args.prior_loss, "attribution": args.attribution, "ig_steps": args.ig_steps,
            "prior_warmup_steps": args.prior_warmup_steps, "lr": args.lr, "faithfulness_steps": args.faithfulness_steps,
            "faithfulness_max_batches": args.faithfulness_max_batches}},
        "data": {"init_args": {
            "data_dir": str(data_dir) if data_dir.is_dir() else None, "seed": seed, "batch_size": args.batch_size,
            "eval_batch_size": 64, "max_length": args.max_length,
            **({"shots_per_class": args.shots} if args.split == "few_shot" else {})}},
    }  # fmt: skip
    return compose(dataset, GRID_PRIOR[method], setting, overrides)


def run_one(dataset: str, seed: int, method: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train and test one (dataset, seed, method) with ``lightning fit``; returns (and stores) its metrics. Skips
    finished runs."""
    import yaml

    from lmcore.cli import run_cli
    from lmcore.io import atomic_write_json, atomic_write_text

    folder = Path(args.out) / dataset / method / f"s{seed}"
    done = folder / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    config = atomic_write_text(folder / "run.yaml", yaml.safe_dump(run_config(dataset, seed, method, args)))
    start = time.perf_counter()
    cli = run_cli(["fit", "--config", str(config)])
    seconds = time.perf_counter() - start
    trainer, module, datamodule = cli.trainer, cli.model, cli.datamodule
    tested = json.loads((folder / "test_metrics.json").read_text())
    prior_cb = next((c for c in trainer.callbacks if type(c).__name__ == "PriorCacheCallback"), None)
    record = {
        "dataset": dataset, "method": method, "seed": seed, "split": args.split, "shots": args.shots,
        "student": args.student, "teacher": args.teacher if method in ("cap", "hybrid_mean", "hybrid_max") else None,
        "attribution": args.attribution, "max_length": args.max_length, "epochs": args.epochs,
        "fit_seconds": seconds, "command": f"lightning fit --config {config}",
        "train_examples": len(datamodule.splits.train), "test_examples": len(datamodule.splits.test),
        "metrics": {k: float(v) for k, v in tested["metrics"].items()},
        "prior": {k: v for k, v in (prior_cb.last if prior_cb else {}).items() if k != "path"},
    }  # fmt: skip
    record["metrics"] |= robustness(module, datamodule.tokenizer, dataset, args)
    best = Path(tested.get("best_checkpoint") or "")
    if method != "baseline" and not args.keep_checkpoints and best.is_file():  # baselines are the references
        best.unlink()
    atomic_write_json(done, record, indent=1, sort_keys=True)
    return record


def robustness(module, tokenizer, dataset: str, args: argparse.Namespace) -> dict[str, float]:
    """Accuracy under attack and attack success rate of the tested model on each attacked split of ``dataset``
    (a transfer attack unless the split was generated against this very checkpoint)."""
    import torch

    from cap_lightning.adversarial.format import read_adversarial_jsonl
    from cap_lightning.adversarial.metrics import robustness_from_predictions
    from cap_lightning.classifier import predict_logits

    out = {}
    model = module.model.eval()
    for path in args.adversarial_files:
        name = Path(path).name
        if not name.startswith(f"{dataset}-"):
            continue
        recipe = name.removeprefix(f"{dataset}-").split("-")[0]
        rows = read_adversarial_jsonl(path)
        with torch.no_grad():
            clean = predict_logits(model, tokenizer, [r.original_text for r in rows], args.max_length).argmax(-1)
            attacked = predict_logits(model, tokenizer, [r.text for r in rows], args.max_length).argmax(-1)
        report = robustness_from_predictions([r.label for r in rows], clean.tolist(), attacked.tolist())
        out[f"adv/{recipe}/attacked_acc"] = report.attacked_accuracy
        out[f"adv/{recipe}/attack_success_rate"] = report.attack_success_rate
    return out


def _cell(values: list[float], scale: float = 100.0) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{scale * values[0]:.2f}"
    return f"{scale * statistics.mean(values):.2f} ± {scale * statistics.stdev(values):.2f}"


def summarise(records: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown table (one block per dataset, one row per method) and CSV rows, mean ± std over seeds."""
    lines, rows = [], []
    first = records[0]
    setting = first["split"] + (f", k={first['shots']}" if first["split"] == "few_shot" else "")
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        lines += [
            f"\n**{dataset}** ({setting})\n",
            "| Method | Seeds | " + " | ".join(name for _, name in COLUMNS) + " | Prior s | Fit s |",
            "|---|---|" + "---|" * (len(COLUMNS) + 2),
        ]  # fmt: skip
        in_dataset = [r for r in records if r["dataset"] == dataset]
        adv = {k for r in in_dataset for k in r["metrics"] if k.startswith("adv/")}
        adv = sorted(adv, key=lambda k: (k.rsplit("/", 1)[0], k.endswith("success_rate")))  # acc, then rate
        columns = [*COLUMNS, *((k, k.removeprefix("adv/").replace("attacked_acc", "acc under attack")) for k in adv)]
        lines[-2] = "| Method | Seeds | " + " | ".join(name for _, name in columns) + " | Prior s | Fit s |"
        lines[-1] = "|---|---|" + "---|" * (len(columns) + 2)
        for method in dict.fromkeys(r["method"] for r in in_dataset):
            group = [r for r in in_dataset if r["method"] == method]
            cells = [_cell([r["metrics"][k] for r in group if k in r["metrics"]]) for k, _ in columns]
            prior_s = [r["prior"].get("seconds", 0.0) for r in group if r["prior"]]
            costs = [_cell(prior_s, 1.0) if prior_s else "–", _cell([r["fit_seconds"] for r in group], 1.0)]
            seeds = ",".join(str(r["seed"]) for r in sorted(group, key=lambda r: r["seed"]))
            lines.append(f"| {method} | {seeds} | " + " | ".join(cells + costs) + " |")
            for r in group:
                rows.append({"dataset": dataset, "method": method, "seed": r["seed"], **r["metrics"],
                             "prior_seconds": r["prior"].get("seconds"), "fit_seconds": r["fit_seconds"]})  # fmt: skip
    return "\n".join(lines).strip() + "\n", rows


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Accuracy and comprehensiveness/sufficiency per method and dataset (mean ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    panels = (("test/acc", "test accuracy (%)"), ("test/comp_aopc", "comprehensiveness AOPC ↑"),
              ("test/suff_aopc", "sufficiency AOPC ↓"))  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8))
    width = 0.8 / len(methods)
    for ax, (key, title) in zip(axes, panels):
        for j, method in enumerate(methods):
            means, stds = [], []
            for dataset in datasets:
                vals = [
                    100 * r["metrics"][key]
                    for r in records
                    if r["dataset"] == dataset and r["method"] == method and key in r["metrics"]
                ]
                means.append(statistics.mean(vals) if vals else float("nan"))
                stds.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
            ax.bar([i + j * width for i in range(len(datasets))], means, width, yerr=stds, capsize=3, label=method)
        ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(datasets))], datasets)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def run_chain(dataset: str, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """All methods of one (dataset, seed), baseline first (the prior methods read its checkpoint)."""
    import torch

    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    torch.set_num_threads(threads)
    out = []
    for method in args.methods:
        t0 = time.perf_counter()
        record = run_one(dataset, seed, method, args)
        out.append(record)
        m = {k.removeprefix("test/"): 100 * v for k, v in record["metrics"].items()}
        print(
            f"[{dataset} s{seed}] {method}: acc {m['acc']:.2f}, comp {m.get('comp_aopc', float('nan')):.2f}, "
            f"suff {m.get('suff_aopc', float('nan')):.2f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    start = time.perf_counter()
    chains = [(d, s) for d in args.datasets for s in args.seeds]
    if args.workers <= 1:
        results = [run_chain(d, s, args) for d, s in chains]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
            results = list(pool.map(run_chain, *zip(*chains), [args] * len(chains)))
    records = [r for chain in results for r in chain]
    text, rows = summarise(records)
    header = (
        f"Student {args.student}, teacher {args.teacher}, {args.split}"
        f"{f' k={args.shots}' if args.split == 'few_shot' else ''}, seeds {args.seeds}, max_length {args.max_length}, "
        f"{args.epochs} epochs, λ={args.prior_weight} ({args.prior_loss}, warm-up {args.prior_warmup_steps} steps), "
        f"self-attribution {args.attribution}; priors: IG {args.ig_prior_steps} steps, LIME {args.lime_samples} "
        f"masks, CAP {args.cap_samples} masks ({args.cap_target}, teacher in {args.teacher_dtype}); "
        f"comp/suff on the first "
        f"{args.faithfulness_max_batches} test batches of 64 with {args.faithfulness_steps}-step IG rationales. "
        f"All figures in %.\n"
    )
    atomic_write_text(out / "results.md", header + "\n" + text)
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("dataset", "method", "seed"), k))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    plot(records, out / "results.png")
    print(header + "\n" + text)
    print(
        f"wrote results.md, results.csv, results.png to {out} in {time.perf_counter() - start:.0f} s "
        f"({args.workers} workers)"
    )


if __name__ == "__main__":
    main()
