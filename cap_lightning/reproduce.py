"""The CAP reproduction: ``python -m cap_lightning.reproduce`` (``make reproduce-cap``).

Per dataset (``reproduce_plan``): a CE-only baseline on the tuning seed, then every prior method at every λ of the
grid on that seed, scored on validation only; λ is chosen per method; then the reported seeds: CE-only baselines,
each prior method at its λ, and the controls (uniform and within-text shuffled prior) at the CAP Hybrid's λ. Every
reported run is tested once, on the test split, and the models of ``--attack-seeds`` (default: every reported
seed) are attacked directly (DeepWordBug, PWWS). ``reproduce_report`` turns the records into
``results.{md,csv,png}`` with paired differences to the baseline and to the shuffled control.

Design decisions:
- One experiment surface: every run is ``lightning fit --config <run>/run.yaml``, run in-process
  (``lmcore.cli.run_cli``); that config is the grid's (``cap_lightning.experiments.compose``) with this command's
  overrides, and it stays in the run folder, so any row can be re-run by hand.
- One budget for every student of a dataset (epochs, batch, schedule, learning rate, validation cadence); the
  budget is printed in the table. The IG / LIME reference of a run is another seed's CE baseline, trained the
  same way (``reproduce_plan.reference_of``).
- Resumable: each run writes ``<run>/metrics.json`` atomically and a finished run is skipped. Each record carries the
  git commit of the code that made it; resuming with other code is refused unless ``--allow-mixed-commits`` (run
  long grids from a ``git worktree`` at a fixed commit: ``make reproduce-cap`` does).
- Priors are cached per split and per example (CAP teacher scores are shared by every λ and run of a seed).
- ``--workers 2``: two processes (one thread each) take runs of any dataset as their inputs exist
  (``DatasetPlan``, ``schedule``), alternating datasets within a phase, so neither idles while the other dataset
  still has runs. Two runs needing the same prior cache entry at once (rare: only when one dataset has nothing
  else ready) wait on its file lock; the second reads what the first wrote.
- The projected time is printed at start (training only, from a short timing of CE and aligned steps), and a
  progress line with the ETA after every run; a resumed grid's ETA takes its rate from the recorded wall time of
  the runs already on disk (the start-up timing is a few steps under whatever else runs then).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from cap_lightning.experiments import GRID_DATASETS
from cap_lightning.reproduce_plan import (
    CONTROLS,
    METHODS,
    PRIOR_METHODS,
    DatasetPlan,
    Run,
    check_methods,
    reference_of,
    run_phase,
    tuned_methods,
)
from lmcore.io import atomic_write_json, atomic_write_text
from lmcore.progress import Eta, duration

DEFAULT_METHODS = ("baseline", "ig", "lime", "cap", "hybrid_mean", "uniform", "shuffled")
CAP_METHODS = ("cap", "hybrid_mean", "hybrid_max", "uniform", "shuffled")
# reproduction method -> the grid's prior name (the controls use the Hybrid's prior, then replace its content)
GRID_PRIOR = {"baseline": "baseline", "ig": "ig", "lime": "lime", "cap": "cap", "hybrid_mean": "cap_hybrid_mean",
              "hybrid_max": "cap_hybrid_max", "uniform": "cap_hybrid_mean", "shuffled": "cap_hybrid_mean"}  # fmt: skip
ATTACK_RECIPES = ("deepwordbug", "pwws")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--datasets", nargs="+", default=["banking77", "hwu64"], choices=sorted(GRID_DATASETS))
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    p.add_argument("--control-of", default="hybrid_mean", choices=PRIOR_METHODS, help="the controls take its λ")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5], help="reported seeds (paired)")
    p.add_argument("--few-seeds", type=int, default=3, help="reported seeds of the single-source IG / LIME priors")
    p.add_argument("--tune-seed", type=int, default=0, help="the seed λ is chosen on (validation only)")
    p.add_argument("--lambdas", nargs="+", type=float, default=[0.03, 0.1, 0.3, 1.0], help="λ grid")
    p.add_argument("--split", default="few_shot", choices=["few_shot", "full"])
    p.add_argument("--shots", type=int, default=10, help="examples per class for --split few_shot")
    p.add_argument(
        "--data-root", default="../shared/data", help="folder holding <dataset>/ (hub ids are used when absent)"
    )
    p.add_argument("--student", default="minilm")
    p.add_argument("--teacher", default="smollm2-135m")
    # the budget: a CE-only MiniLM reaches 82.4 % test accuracy on 10-shot Banking77 (seed 0) with 15 epochs at
    # lr 2e-4, max 32 tokens (82.2 % with 30 epochs at 1e-4), at half the cost
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--val-every", type=int, default=5, help="validate (and keep the best checkpoint) every N epochs")
    p.add_argument("--val-batches", type=int, default=0, help="validation batches (of 64) per check (0: all)")
    p.add_argument("--prior-warmup-steps", type=int, default=40)
    # mse: with gradient×input at initialisation the KL alignment gradient is 38× the CE gradient (mse: 4×)
    p.add_argument("--prior-loss", default="mse", choices=["kl", "mse", "cosine", "rank"])
    p.add_argument("--alignment-level", default="word", choices=["word", "subword"])
    p.add_argument("--prior-mask", default="all", choices=["all", "teacher_correct"], help="CAP priors only where "
                   "the teacher ranks the gold label first (teacher_correct), or everywhere")  # fmt: skip
    # IG with one midpoint step costs what gradient×input costs (one forward + double backward) and tracks the
    # model's 32-step IG far better: word-level ρ 0.58 / 0.61 vs 0.07 / 0.08 on HWU64 / Banking77 CE baselines
    # (96 test texts each, python -m cap_lightning.attribution_check; README "Which self-attribution to align")
    p.add_argument("--attribution", default="ig", choices=["ig", "grad_x_input", "expected_gradients"])
    p.add_argument("--ig-steps", type=int, default=1, help="steps of the differentiable IG when --attribution ig")
    p.add_argument("--ig-prior-steps", type=int, default=8)
    p.add_argument("--lime-samples", type=int, default=32)
    p.add_argument("--cap-samples", type=int, default=16)
    p.add_argument("--teacher-dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    p.add_argument(
        "--cap-target", default="gold_prob", choices=["gold_prob", "gold_logprob", "label_softmax", "contrastive_k"]
    )
    p.add_argument("--faithfulness-steps", type=int, default=8)
    p.add_argument(
        "--faithfulness-rows", type=int, default=400, help="seeded stratified test rows (every class) scored for "
        "word-level comp/suff and for ρ(IG, prior) against each prior on those held-out texts",
    )  # fmt: skip
    p.add_argument(
        "--attack-recipes", nargs="*", default=list(ATTACK_RECIPES), help="TextAttack recipes run against each "
        "model of --attack-seeds (none: skip; needs make install-adversarial)",
    )  # fmt: skip
    p.add_argument("--attack-examples", type=int, default=200, help="seeded test utterances attacked per model")
    p.add_argument("--attack-seeds", nargs="*", type=int, default=None, help="default: every reported seed (paired)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (one thread each by default)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: cores / workers)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep every run's best.ckpt (default: baselines)")
    p.add_argument("--allow-mixed-commits", action="store_true", help="resume runs made by other code")
    p.add_argument("--allow-retrained-references", action="store_true",
                   help="accept a restored reference whose weights differ from the recorded ones")  # fmt: skip
    p.add_argument("--out", default="runs/reproduce_cap")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--wandb", action="store_true", help="log every run to W&B (offline unless a key is configured)")
    p.add_argument("--report-only", action="store_true", help="write results.* from the runs finished so far (any "
                   "commit; the header says how many of the planned runs they are) and train nothing")  # fmt: skip
    args = p.parse_args(argv)
    if args.split == "few_shot" and args.shots < 1:
        p.error(f"--shots must be >= 1, got {args.shots}")
    for name in ("epochs", "val_every", "few_seeds", "attack_examples", "workers", "faithfulness_rows"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.epochs % min(args.val_every, args.epochs):
        p.error(f"--epochs {args.epochs} is not a multiple of --val-every {args.val_every}: the last epochs would "
                "never be validated")  # fmt: skip
    if any(lam <= 0 for lam in args.lambdas):
        p.error(f"--lambdas must be > 0, got {args.lambdas}")
    if args.tune_seed in args.seeds:
        p.error(f"--tune-seed {args.tune_seed} is also a reported seed {args.seeds}: λ would be scored on the run "
                "that chose it; pick a tuning seed outside --seeds")  # fmt: skip
    bad = [r for r in args.attack_recipes if r not in ATTACK_RECIPES]
    if bad:
        p.error(f"--attack-recipes {bad}: allowed {list(ATTACK_RECIPES)}")
    try:
        check_methods(args.methods, args.control_of)
    except ValueError as e:
        p.error(str(e))
    if args.attack_seeds is None:
        args.attack_seeds = list(args.seeds)
    return args


# The prior sources each grid method fuses (the controls carry the CAP Hybrid's, whose content they replace);
# a method with an IG or LIME source reads its reference baseline's checkpoint.
PRIOR_SOURCES: dict[str, tuple[str, ...]] = {
    "ig": ("ig",), "lime": ("lime",), "cap": ("cap",), "hybrid_mean": ("cap", "lime", "ig"),
    "hybrid_max": ("cap", "lime", "ig"), "uniform": ("cap", "lime", "ig"), "shuffled": ("cap", "lime", "ig"),
}  # fmt: skip


def prior_block(method: str, reference_ckpt: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``PriorCacheCallback.prior`` config of one method; IG and LIME read the seed's baseline checkpoint, CAP the
    teacher (its prompt comes from the dataset spec). Every method runs as a ``HybridPrior`` so IG/LIME scores of
    one reference are read from one per-example store (a one-source fusion is the source itself). The controls
    carry the CAP Hybrid's prior, whose content ``PriorCacheCallback.control`` then replaces."""
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
    blocks = {"ig": ig, "lime": lime, "cap": cap}
    return {"class_path": "cap_lightning.HybridPrior",
            "init_args": {"sources": [blocks[s] for s in PRIOR_SOURCES[method]],
                          "agg": "max" if method == "hybrid_max" else "mean",
                          "example_cache_dir": str(cache / "prior_examples")}}  # fmt: skip


def control_overrides(method: str) -> dict[str, Any]:
    """The prior-content control of ``method`` (``PriorCacheCallback.control``): none for real priors."""
    return {"control": method} if method in CONTROLS else {}


def run_config(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """The ``lightning fit`` config of one run: the grid cell with this command's overrides."""
    from cap_lightning.experiments import compose

    folder = Path(args.out) / run.folder
    reference = Path(args.out) / reference_of(run, args.tune_seed, args.seeds[0]).folder / "checkpoints" / "best.ckpt"
    data_dir = Path(args.data_root) / run.dataset
    setting = "fs10" if args.split == "few_shot" else "full"
    checkpoint = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                  "init_args": {"dirpath": str(folder / "checkpoints"), "filename": "best", "monitor": "val/acc",
                                "mode": "max", "save_weights_only": True, "enable_version_counter": False}}  # fmt: skip
    callbacks: list[dict[str, Any]] = [checkpoint]
    block = prior_block(run.method, str(reference), args)
    priors_dir = str(Path(args.cache_dir) / "priors")
    if block is not None:
        init = {"prior": block, "cache_dir": priors_dir, **control_overrides(run.method)}
        callbacks.insert(0, {"class_path": "cap_lightning.PriorCacheCallback", "init_args": init})
    final = run.stage == "final"
    if final:  # ρ(student IG, prior) on held-out test texts, against every prior of the grid, for every model
        for method in (m for m in args.methods if m in PRIOR_METHODS):
            held_out = {"prior": prior_block(method, str(reference), args), "name": method, "cache_dir": priors_dir,
                        "rows": args.faithfulness_rows, "seed": 0}  # fmt: skip
            callbacks.append(
                {"class_path": "cap_lightning.priors.held_out.HeldOutPriorCallback", "init_args": held_out}
            )
    logger: Any = False
    if args.wandb:
        logger = {
            "class_path": "lightning.pytorch.loggers.WandbLogger",
            "init_args": {"project": "cap-lightning", "save_dir": str(folder), "group": f"reproduce/{run.dataset}"},
        }
    overrides = {
        "seed_everything": run.seed,
        "test_after_fit": final,  # selection runs never read the test split
        "trainer": {"max_epochs": args.epochs, "devices": 1, "logger": logger, "callbacks": callbacks,
                    "enable_progress_bar": False, "enable_model_summary": False, "default_root_dir": str(folder),
                    "check_val_every_n_epoch": min(args.val_every, args.epochs),
                    "limit_val_batches": args.val_batches or 1.0},
        "model": {"init_args": {
            "model_path": args.student, "prior_weight": run.prior_weight, "prior_loss": args.prior_loss,
            "attribution": args.attribution, "ig_steps": args.ig_steps, "prior_warmup_steps": args.prior_warmup_steps,
            "alignment_level": args.alignment_level,
            "prior_mask": args.prior_mask if run.method in CAP_METHODS else "all",
            "lr": args.lr, "faithfulness": final, "faithfulness_steps": args.faithfulness_steps,
            "faithfulness_rows": args.faithfulness_rows, "faithfulness_seed": 0, "faithfulness_level": "word"}},
        "data": {"init_args": {
            "data_dir": str(data_dir) if data_dir.is_dir() else None, "seed": run.seed, "batch_size": args.batch_size,
            "eval_batch_size": 64, "max_length": args.max_length,
            **({"shots_per_class": args.shots} if args.split == "few_shot" else {})}},
    }  # fmt: skip
    return compose(run.dataset, GRID_PRIOR[run.method], setting, overrides)


def code_commit() -> str:
    """``<sha>`` of the code running this, ``<sha>+dirty`` with uncommitted changes, ``unknown`` outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _finished(path: Path, commit: str, args: argparse.Namespace) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("commit") != commit and not args.allow_mixed_commits:
        raise SystemExit(
            f"{path} was made by code at commit {record.get('commit')}, this is {commit}: a grid must come from one "
            "commit (run it from a git worktree at a fixed commit), or pass --allow-mixed-commits"
        )
    return record


def attack(run: Run, checkpoint: Path, datamodule, args: argparse.Namespace) -> dict[str, float]:
    """Clean accuracy, accuracy under attack and attack success rate of this model, attacked directly."""
    from cap_lightning.adversarial.source import select_examples
    from cap_lightning.adversarial.textattack_gen import generate_textattack

    if not args.attack_recipes or run.seed not in args.attack_seeds:
        return {}
    splits = datamodule.splits
    selection = select_examples(splits, "test", args.attack_examples, seed=0)
    out = {}
    for recipe in args.attack_recipes:
        result = generate_textattack(
            str(checkpoint), selection, list(splits.label_names), recipe, seed=0,
            cache_dir=Path(args.cache_dir) / "adversarial", max_length=args.max_length, progress=False,
        )  # fmt: skip
        report = result.report
        out |= {f"adv/{recipe}/clean_acc": report.clean_accuracy, f"adv/{recipe}/attacked_acc":
                report.attacked_accuracy, f"adv/{recipe}/attack_success_rate": report.attack_success_rate,
                f"adv/{recipe}/seconds": result.wall_s}  # fmt: skip
    return out


RESTORE_MUST_MATCH = ("split", "shots", "student", "max_length", "epochs", "lr", "batch_size", "val_every")


def state_dict_sha256(checkpoint: str | os.PathLike[str]) -> str:
    """SHA-256 over a Lightning checkpoint's weights (names, dtypes, shapes, values), not its file: two trainings
    that end at the same weights hash alike whatever else the file records."""
    import hashlib

    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def reads_reference(run: Run, args: argparse.Namespace) -> bool:
    """Whether ``run`` reads its reference baseline's checkpoint: an IG / LIME source in its prior or, for a
    reported run, in one of the held-out priors (every prior method of the grid)."""
    priors = {run.method} | (set(args.methods) if run.stage == "final" else set())
    return any(s in ("ig", "lime") for m in priors for s in PRIOR_SOURCES.get(m, ()))


def dependants(reference: Run, record: dict[str, Any], args: argparse.Namespace) -> list[tuple[Path, str]]:
    """``(metrics.json, reference_sha256)`` of the finished runs of ``reference``'s dataset that read a version of
    its checkpoint: the one it was trained with or one restored since (the digests in ``record``)."""
    known = {record.get("weights_sha256")} | {e.get("weights_sha256") for e in record.get("checkpoint_restored", [])}
    known.discard(None)
    own = Path(args.out) / reference.folder / "metrics.json"
    found = []
    for path in sorted((Path(args.out) / reference.dataset).rglob("metrics.json")):
        if path != own and (read := json.loads(path.read_text()).get("reference_sha256")) in known:
            found.append((path, read))
    return found


def restore_reference(reference: Run, args: argparse.Namespace, commit: str) -> None:
    """Retrain the reference baseline ``reference`` when its record is on disk but its checkpoint is not (a grid
    resumed from archived records, which keep no checkpoint), with its own config, never reading the test split.

    Refused (SystemExit) when this command's budget differs from the record's (``RESTORE_MUST_MATCH``) or its code
    from the record's commit (unless ``--allow-mixed-commits``), and when the retrained weights differ from those
    a finished dependant read (its ``reference_sha256``; unless ``--allow-retrained-references``: runs trained
    before and after would read different references). Other weights that no finished run read are accepted (a
    retrain on another machine or torch build is not bit-identical; nothing read the lost ones). The checkpoint is
    written into ``checkpoints/.restore/`` and moved into place only once
    the fit succeeded, so a restore that dies leaves no partial ``best.ckpt``; two workers needing the same
    reference wait on one lock and the second finds the checkpoint. Each restore is appended to the record's
    ``checkpoint_restored`` list.
    """
    import yaml

    from lmcore.cli import run_cli
    from lmcore.locks import entry_lock

    folder = Path(args.out) / reference.folder
    best = folder / "checkpoints" / "best.ckpt"
    done = folder / "metrics.json"
    if best.is_file() or not done.is_file():  # nothing lost, or not trained yet (the plan trains it first)
        return
    with entry_lock(folder / "checkpoints", "reference checkpoint"):
        if best.is_file():
            return
        record = json.loads(done.read_text())
        differ = {k: (record.get(k), getattr(args, k)) for k in RESTORE_MUST_MATCH if record.get(k) != getattr(args, k)}
        if differ:
            raise SystemExit(f"cannot restore the reference checkpoint of {folder}: this command's budget differs from "
                             f"its record's (record, now): {differ}; resume with the record's options")  # fmt: skip
        if record.get("commit") != commit and not args.allow_mixed_commits:
            raise SystemExit(f"cannot restore the reference checkpoint of {folder}: its record comes from commit "
                             f"{record.get('commit')}, this is {commit} (or pass --allow-mixed-commits)")  # fmt: skip
        print(f"[{reference.dataset}] restoring the reference checkpoint {best} (record kept; test not read)",
              flush=True)  # fmt: skip
        staging = folder / "checkpoints" / ".restore"
        shutil.rmtree(staging, ignore_errors=True)  # a restore that died earlier
        config = run_config(reference, args)
        config["test_after_fit"] = False
        checkpoint = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ModelCheckpoint"))
        checkpoint["init_args"]["dirpath"] = str(staging)
        path = atomic_write_text(folder / "restore.yaml", yaml.safe_dump(config))
        start = time.perf_counter()
        cli = run_cli(["fit", "--config", str(path)])
        score = cli.trainer.checkpoint_callback.best_model_score
        fresh = staging / "best.ckpt"
        if not fresh.is_file():
            raise RuntimeError(f"retraining {folder} wrote no checkpoint at {fresh}")
        digest = state_dict_sha256(fresh)
        entry = {"val_acc": float(score) if score is not None else None, "weights_sha256": digest,
                 "fit_seconds": time.perf_counter() - start, "commit": commit}  # fmt: skip
        readers = [path for path, read in dependants(reference, record, args) if read != digest]
        if readers and not args.allow_retrained_references:
            raise SystemExit(f"the retrained reference {folder} has other weights than the one its dependants read "
                             f"(sha256 {digest[:12]}; {len(readers)} finished run(s) read other weights, e.g. "
                             f"{readers[0].parent}; val acc {entry['val_acc']} vs {record.get('val_acc')}): other "
                             "torch threads, build or machine? Resume where it was trained, or pass "
                             "--allow-retrained-references")  # fmt: skip
        if record.get("weights_sha256") is None and entry["val_acc"] != record.get("val_acc"):
            print(f"[{reference.dataset}] warning: the restored reference {folder} reaches val acc "
                  f"{entry['val_acc']} where its record has {record.get('val_acc')}", flush=True)  # fmt: skip
        os.replace(fresh, best)
        shutil.rmtree(staging, ignore_errors=True)
        record["checkpoint_restored"] = [*record.get("checkpoint_restored", []), entry]
        atomic_write_json(done, record, indent=1, sort_keys=True)


def run_one(run: Run, args: argparse.Namespace, commit: str) -> tuple[dict[str, Any], bool]:
    """Train (and, for reported runs, test and attack) one run; ``(record, computed)``. Skips finished runs."""
    import yaml

    from lmcore.cli import run_cli

    folder = Path(args.out) / run.folder
    done = folder / "metrics.json"
    record = _finished(done, commit, args)
    if record is not None and record.get("prior_weight") != run.prior_weight:
        raise SystemExit(
            f"{done} was trained at λ={record.get('prior_weight'):g} but the plan now runs it at "
            f"λ={run.prior_weight:g} (other --lambdas or other validation scores): move that folder away or use "
            "another --out"
        )
    if record is not None:
        return record, False
    if reads_reference(run, args):
        restore_reference(reference_of(run, args.tune_seed, args.seeds[0]), args, commit)
    config = atomic_write_text(folder / "run.yaml", yaml.safe_dump(run_config(run, args)))
    start = time.perf_counter()
    cli = run_cli(["fit", "--config", str(config)])
    seconds = time.perf_counter() - start
    trainer, datamodule = cli.trainer, cli.datamodule
    prior_cb = next((c for c in trainer.callbacks if type(c).__name__ == "PriorCacheCallback"), None)
    best = Path(trainer.checkpoint_callback.best_model_path or "")
    score = trainer.checkpoint_callback.best_model_score
    record = {
        "dataset": run.dataset, "method": run.method, "seed": run.seed, "stage": run.stage,
        "prior_weight": run.prior_weight, "split": args.split, "shots": args.shots, "student": args.student,
        "teacher": args.teacher if run.method in CAP_METHODS else None, "attribution": args.attribution,
        "max_length": args.max_length, "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
        "val_every": args.val_every, "fit_seconds": seconds, "commit": commit,
        "command": f"lightning fit --config {config}", "train_examples": len(datamodule.splits.train),
        "val_acc": float(score) if score is not None else None,
        "prior": {k: v for k, v in (prior_cb.last if prior_cb else {}).items() if k != "path"},
        # the last epoch's training means (train/ce, train/align, train/zero_prior_rows, train/teacher_kept_rows)
        "train": {k.removesuffix("_epoch"): v for k, v in getattr(cli, "fit_metrics", {}).items()
                  if k.startswith("train/") and not k.endswith("_step")},
        "metrics": {},
    }  # fmt: skip
    if run.method == "baseline" and best.is_file():  # what a restored reference must reproduce
        record["weights_sha256"] = state_dict_sha256(best)
    if reads_reference(run, args):  # which reference this run read (a restored one must be the same)
        reference = Path(args.out) / reference_of(run, args.tune_seed, args.seeds[0]).folder
        record["reference_sha256"] = state_dict_sha256(reference / "checkpoints" / "best.ckpt")
    if run.stage == "final":
        tested = json.loads((folder / "test_metrics.json").read_text())
        record["metrics"] = {k: float(v) for k, v in tested["metrics"].items()}
        record["test_examples"] = len(datamodule.splits.test)
        if best.is_file():
            record["metrics"] |= attack(run, best, datamodule, args)
    if run.method != "baseline" and not args.keep_checkpoints and best.is_file():  # baselines are the references
        best.unlink()
    atomic_write_json(done, record, indent=1, sort_keys=True)
    return record, True


def steps_per_run(dataset: str, args: argparse.Namespace) -> int:
    """Optimizer steps of one run of ``dataset`` (the unit of the projected time), from its label count."""
    from cap_lightning.datasets import load_splits

    data_dir = Path(args.data_root) / dataset
    splits = load_splits(dataset, str(data_dir) if data_dir.is_dir() else None)
    rows = splits.num_labels * args.shots if args.split == "few_shot" else len(splits.train)
    return args.epochs * -(-rows // args.batch_size)


def step_seconds(args: argparse.Namespace) -> tuple[float, float]:
    """Seconds of one CE step and one aligned step of the student at this batch shape (3 timed steps each)."""
    import torch
    import torch.nn.functional as F

    from cap_lightning.attribution import self_attribution
    from lmcore.models import load_classifier

    model = load_classifier(args.student, 8).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.randint(vocab // 2, vocab, (args.batch_size, args.max_length))  # ordinary tokens, no specials
    mask, y = torch.ones_like(ids), torch.zeros(args.batch_size, dtype=torch.long)

    def step(aligned: bool) -> float:
        start = time.perf_counter()
        loss = F.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, y)
        if aligned:
            a = self_attribution(model, ids, mask, y, mask.bool(), args.attribution, args.ig_steps, "zero")
            loss = loss + a.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    step(True)  # warm-up
    return min(step(False) for _ in range(3)), min(step(True) for _ in range(3))


def _worker_init(threads: int, parent: int | None = None) -> None:
    """Set the worker's torch threads; with ``parent`` (the grid's pid), the worker also ends when the grid process
    dies (Linux parent-death signal), so a stopped grid leaves no orphan writing into its output folder."""
    import torch

    torch.set_num_threads(threads)
    if parent is not None and sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG; Lightning catches SIGTERM
        if os.getppid() != parent:  # the grid died before the signal was armed
            os._exit(1)


class _Inline:
    """A one-worker executor: each job runs in this process when it is submitted."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future, as a pool would
            future.set_exception(e)
        return future


def schedule(plans: Sequence[DatasetPlan], submit: Callable[[Run], Future], workers: int,
             on_done: Callable[[Run, dict[str, Any], bool], None]) -> None:  # fmt: skip
    """Keep ``workers`` runs going until every plan is complete: each free worker takes the released run of the
    highest priority (``run_phase``, then the dataset that has been given fewest runs, then plan order), so a worker
    whose dataset waits (or is done) takes runs of another one."""
    waiting: list[Run] = []
    running: dict[Future, Run] = {}
    given = {p.dataset: 0 for p in plans}
    by_name = {p.dataset: p for p in plans}
    while True:
        for plan in plans:
            waiting += plan.released()
        while waiting and len(running) < workers:
            run = min(waiting, key=lambda r: (run_phase(r), given[r.dataset]))
            waiting.remove(run)
            given[run.dataset] += 1
            running[submit(run)] = run
        if not running:
            break
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            run = running.pop(future)
            record, computed = future.result()
            by_name[run.dataset].finish(run, record.get("val_acc"))
            on_done(run, record, computed)
    stuck = [p.dataset for p in plans if not p.complete()]
    if stuck:
        raise RuntimeError(f"the plans of {stuck} did not complete: a run was never released")


def _slot(run: Run) -> tuple:
    """A run's place in the projected plan (reported runs have their λ only once it is chosen)."""
    return run.dataset, run.method, run.seed, run.stage, run.prior_weight if run.stage == "select" else None


def run_grid(args: argparse.Namespace, commit: str, rates: tuple[float, float] | None):
    """Every run of every dataset on ``args.workers`` processes; returns (records, λ selections)."""
    plans = [DatasetPlan(d, args.methods, args.lambdas, args.tune_seed, args.seeds, args.few_seeds, args.control_of)
             for d in args.datasets]  # fmt: skip
    ce, aligned = rates or (None, None)
    factor = max(aligned / ce, 1.0) if ce else 2.0
    slots, costs, kinds = {}, [], []
    for plan in plans:
        steps = steps_per_run(plan.dataset, args)
        planned = plan.planned()
        for run in planned:
            slots[_slot(run)] = len(costs)
            costs.append(steps if run.method == "baseline" else steps * factor)
            kinds.append("baseline" if run.method == "baseline" else "aligned")
        tuned = tuned_methods(args.methods, args.control_of)
        print(f"[{plan.dataset}] plan: {len(plan.selection)} selection runs (tuning seed {args.tune_seed}: "
              f"{', '.join(tuned)} × {len(args.lambdas)} λ) + {len(planned) - len(plan.selection)} reported runs, "
              f"{steps} steps each", flush=True)  # fmt: skip
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    # wall seconds per unit (a run's seconds over the workers sharing the machine), measured per kind: the timed
    # CE / aligned ratio is only a first guess (a loaded machine skews it)
    eta = Eta(costs, ce, kinds)
    projected = eta.projected_seconds()
    print(f"projected training time {duration(projected) if projected else 'unknown'} on "
          f"{args.workers} worker(s) × {threads} thread(s) (priors and attacks on top)", flush=True)  # fmt: skip
    records: list[dict[str, Any]] = []
    announced: set[tuple[str, str]] = set()

    def on_done(run: Run, record: dict[str, Any], computed: bool) -> None:
        if run.stage == "final":  # the selection runs enter the results through their plan's scores
            records.append(record)
        seconds = record["fit_seconds"] / args.workers  # wall seconds of the run over the workers sharing the machine
        eta.finish(slots[_slot(run)], seconds if computed else None, recorded=None if computed else seconds)
        shown = (f"val acc {100 * record['val_acc']:.2f}" if run.stage == "select" else
                 f"test acc {100 * record['metrics'].get('test/acc', float('nan')):.2f}")  # fmt: skip
        lam = f" λ={run.prior_weight:g}" if run.method != "baseline" else ""
        print(f"[{run.dataset} {run.stage} s{run.seed}] {run.method}{lam}: {shown} ({record['fit_seconds']:.0f} s"
              f"{'' if computed else ', resumed'}); {eta.line()}", flush=True)  # fmt: skip
        plan = next(p for p in plans if p.dataset == run.dataset)
        for method, lam in (plan.chosen or {}).items():
            if (plan.dataset, method) not in announced:
                announced.add((plan.dataset, method))
                print(
                    f"[{plan.dataset}] λ of {method} chosen on validation (seed {args.tune_seed}): {lam:g}", flush=True
                )

    if args.workers <= 1:
        _worker_init(threads)
        schedule(plans, lambda run: _Inline().submit(run_one, run, args, commit), 1, on_done)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        init = (threads, os.getpid())
        with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_worker_init, initargs=init) as pool:
            schedule(plans, lambda run: pool.submit(run_one, run, args, commit), args.workers, on_done)
    return records, selections_of(plans)


def selections_of(plans: Sequence[DatasetPlan]) -> list[dict[str, Any]]:
    """Per dataset, the λ grid's validation scores, the chosen λ and the tuning baseline's validation accuracy."""
    return [{"dataset": p.dataset, "scores": p.scores, "chosen": p.chosen, "baseline_val": p.baseline_val}
            for p in plans]  # fmt: skip


def collect_finished(args: argparse.Namespace) -> tuple[list[dict], list[dict], int, int, float]:
    """The records of the runs finished so far, released in plan order as ``run_grid`` would (so a λ counts as
    chosen only once its whole selection grid is on disk): ``(reported records, λ selections, finished, planned,
    seconds)``, ``seconds`` summed over every finished run (the λ selection's included). Reads records of any commit
    (the report lists them) and trains nothing."""
    plans = [DatasetPlan(d, args.methods, args.lambdas, args.tune_seed, args.seeds, args.few_seeds, args.control_of)
             for d in args.datasets]  # fmt: skip
    records: list[dict[str, Any]] = []
    finished, planned, seconds = 0, sum(len(p.planned()) for p in plans), 0.0
    for plan in plans:
        released = plan.released()
        while released:
            for run in released:
                path = Path(args.out) / run.folder / "metrics.json"
                record = json.loads(path.read_text()) if path.is_file() else None
                if record is None or record.get("prior_weight") != run.prior_weight:  # missing, or another λ's
                    continue
                plan.finish(run, record.get("val_acc"))
                finished += 1
                seconds += float(record.get("fit_seconds", 0.0))
                if run.stage == "final":
                    records.append(record)
            released = plan.released()
    return records, selections_of(plans), finished, planned, seconds


def check_attacks_installed(args: argparse.Namespace) -> None:
    """Refuse (SystemExit, before any training) a grid that is to attack its models without TextAttack: its report
    would have no robustness columns."""
    from cap_lightning.adversarial import environment

    if args.attack_recipes and args.attack_seeds and not environment.textattack_available():
        raise SystemExit(f"reproduce: --attack-recipes {list(args.attack_recipes)} needs TextAttack, which is not "
                         "installed: run `make install-adversarial`, or pass `--attack-recipes` with no recipe to "
                         "train and test without attacks")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from cap_lightning.reproduce_report import write_results

    args = parse_args(argv)
    if args.report_only:
        records, selections, finished, planned, seconds = collect_finished(args)
        if not finished:
            print(f"reproduce: error: --report-only: no finished run under {args.out} (of the {planned} planned by "
                  "these options); run the grid first, or point --out at its folder", file=sys.stderr)  # fmt: skip
            raise SystemExit(2)
        commits = ", ".join(sorted({str(r.get("commit")) for r in records})) or "none"
        write_results(Path(args.out), records, selections, vars(args), commits, seconds, (finished, planned))
        print(
            f"{finished} of {planned} planned runs finished; wrote results.md, results.csv, results.png to {args.out}"
        )
        return
    check_attacks_installed(args)
    commit = code_commit()
    start = time.perf_counter()
    print(f"reproduce-cap at commit {commit}: {' '.join(sys.argv[1:] if argv is None else argv)}", flush=True)
    try:
        rates = step_seconds(args)
        print(f"step timing: CE {rates[0]:.3f} s, aligned ({args.attribution}) {rates[1]:.3f} s", flush=True)
    except (OSError, ValueError) as e:  # e.g. a student that needs a download: no projection
        print(f"step timing skipped ({e}); the ETA starts after the first run", flush=True)
        rates = None
    records, selections = run_grid(args, commit, rates)
    wall = time.perf_counter() - start
    write_results(Path(args.out), records, selections, vars(args), commit, wall)
    print(f"wrote results.md, results.csv, results.png to {args.out} in {duration(wall)} ({args.workers} workers)")


if __name__ == "__main__":
    main()
