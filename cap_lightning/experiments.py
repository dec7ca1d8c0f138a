"""The experiment grid: every ``experiments/<dataset>_<prior>[_fs10].yaml`` is generated from the tables below.

    python -m cap_lightning.experiments            # (re)write the grid's YAMLs into experiments/
    python -m cap_lightning.experiments --check    # exit 1 if a committed YAML differs from the grid

Design decisions:
- One config is composed as ``base ⊕ dataset ⊕ setting ⊕ prior`` by :func:`compose`; the YAMLs are that
  function's output, so a change made once here reaches every file, and ``tests/test_experiments.py`` fails when a
  committed YAML drifts from the grid. ``tests/test_cli.py`` type-checks each one against the current signatures.
- The CAP teacher's prompt is not written in any YAML: ``ClassAwarePrior`` takes it from the dataset spec through
  the data module (``CapDataModule.teacher_prompt``).
- The reproduction (``python -m cap_lightning.reproduce``) composes its runs with the same function, adding its
  own overrides, and launches each one with ``lightning fit``: one experiment surface.
- Hand-written configs with a purpose of their own stay hand-written: ``demo_sst2.yaml``, ``sst2_cap.yaml`` (the
  CPU-sized flagship), ``*_adv.yaml`` and the steering configs.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

GRID_DATASETS: dict[str, str] = {
    "banking77": "Banking77",
    "hwu64": "HWU64",
    "clinc150": "CLINC150 (150 in-scope intents)",
    "sst2": "SST-2",
}
# (dataset, prior) pairs of the grid; SST-2 has no CAP configs besides the hand-written flagship sst2_cap.yaml
PRIORS: tuple[str, ...] = ("baseline", "ig", "lime", "cap", "cap_hybrid_mean", "cap_hybrid_max")
SST2_PRIORS: tuple[str, ...] = ("baseline", "ig")

# training settings: full data and 10 shots per class
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {"suffix": "", "what": "full data", "lr": 2e-5, "warmup": 200, "ig_steps": 8, "data": {"split": "full"}},
    "fs10": {
        "suffix": "_fs10",
        "what": "10 shots per class (k = 5: --data.init_args.shots_per_class 5)",
        "lr": 1e-4,
        "warmup": 100,
        "ig_steps": 4,
        "data": {"split": "few_shot", "shots_per_class": 10},
    },
}
EPOCHS = {"sst2": {"full": 3}}  # SST-2 full data is 60k sentences; everything else trains 10 epochs

BASE: dict[str, Any] = {
    "seed_everything": 0,
    "trainer": {
        "max_epochs": 10,
        "accelerator": "auto",
        "gradient_clip_val": 1.0,
        "log_every_n_steps": 10,
        "logger": {
            "class_path": "lightning.pytorch.loggers.WandbLogger",
            "init_args": {"project": "cap-lightning", "save_dir": "runs"},
        },  # fmt: skip
    },
    "model": {"class_path": "cap_lightning.CapModule", "init_args": {"model_path": "minilm"}},
    "data": {"class_path": "cap_lightning.CapDataModule", "init_args": {"seed": 0, "batch_size": 32, "max_length": 64}},
}
CHECKPOINT = {
    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
    "init_args": {"monitor": "val/acc", "mode": "max", "filename": "best", "auto_insert_metric_name": False},
}
HEATMAP = {"class_path": "cap_lightning.AttributionTableCallback", "init_args": {"num_examples": 8}}
PRIOR_WHAT = {
    "baseline": "cross-entropy only",
    "ig": "IG prior (50 steps) from a CE-only reference fine-tuned on the same split",
    "lime": "LIME prior from a CE-only reference fine-tuned on the same split",
    "cap": "CAP prior (frozen SmolLM2-135M teacher over the full label space)",
    "cap_hybrid_mean": "CAP Hybrid prior = mean(CAP, LIME, IG), each max-normalised per text",
    "cap_hybrid_max": "CAP Hybrid prior = element-wise max(CAP, LIME, IG)",
}


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a`` updated by ``b``, recursively for nested dicts (lists and values in ``b`` replace those in ``a``)."""
    out = copy.deepcopy(a)
    for key, value in b.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def prior_config(prior: str, reference: dict[str, Any], teacher: str = "smollm2-135m") -> dict[str, Any] | None:
    """The ``prior`` block of ``PriorCacheCallback`` (None for the baseline); ``reference`` = IG/LIME reference
    arguments (model, max_length, fine-tune budget)."""
    if prior == "baseline":
        return None
    ig = {"class_path": "cap_lightning.IGPrior", "init_args": {**reference, "steps": 50}}
    lime = {"class_path": "cap_lightning.LIMEPrior", "init_args": dict(reference)}
    cap = {"class_path": "cap_lightning.ClassAwarePrior", "init_args": {"teacher_path": teacher}}
    if prior == "ig":
        return ig
    if prior == "lime":
        return lime
    if prior == "cap":
        return cap
    agg = {"cap_hybrid_mean": "mean", "cap_hybrid_max": "max"}[prior]
    return {"class_path": "cap_lightning.HybridPrior", "init_args": {"agg": agg, "sources": [cap, lime, ig]}}


def compose(dataset: str, prior: str, setting: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The resolved ``lightning fit`` config of one grid cell, with ``overrides`` merged last."""
    for name, value, allowed in (("dataset", dataset, GRID_DATASETS), ("prior", prior, PRIORS),
                                 ("setting", setting, SETTINGS)):  # fmt: skip
        if value not in allowed:
            raise ValueError(f"{name} {value!r} is not one of {tuple(allowed)}")
    s = SETTINGS[setting]
    epochs = EPOCHS.get(dataset, {}).get(setting, BASE["trainer"]["max_epochs"])
    max_length = BASE["data"]["init_args"]["max_length"]
    reference = {"model_path": "minilm", "max_length": max_length, "fine_tune_epochs": epochs, "fine_tune_lr": s["lr"]}
    model: dict[str, Any] = {"prior_weight": 0.0, "lr": s["lr"]}
    callbacks = [CHECKPOINT]
    block = prior_config(prior, reference)
    if block is not None:
        model = {"prior_weight": 0.1, "prior_warmup_steps": s["warmup"], "prior_loss": "kl", "attribution": "ig",
                 "ig_steps": s["ig_steps"], "lr": s["lr"]}  # fmt: skip
        callbacks = [{"class_path": "cap_lightning.PriorCacheCallback", "init_args": {"prior": block}}, HEATMAP,
                     CHECKPOINT]  # fmt: skip
    cell = {
        "trainer": {"max_epochs": epochs, "callbacks": callbacks},
        "model": {"init_args": model},
        "data": {"init_args": {"dataset": dataset, "data_dir": f"../shared/data/{dataset}", **s["data"]}},
    }
    return merge(merge(BASE, cell), overrides or {})


def grid() -> list[tuple[str, str, str]]:
    """Every (dataset, prior, setting) cell that has a YAML."""
    return [(d, p, s) for d in GRID_DATASETS for p in (SST2_PRIORS if d == "sst2" else PRIORS) for s in SETTINGS]


def file_name(dataset: str, prior: str, setting: str) -> str:
    return f"{dataset}_{prior}{SETTINGS[setting]['suffix']}.yaml"


def render(dataset: str, prior: str, setting: str) -> str:
    """The YAML text of one cell, with a header saying what it is and how it was made."""
    name = file_name(dataset, prior, setting)
    header = [
        f"# lightning fit --config experiments/{name}",
        f"# {GRID_DATASETS[dataset]}, {SETTINGS[setting]['what']}, {PRIOR_WHAT[prior]}.",
        "# Seeds: --seed_everything 1 --data.init_args.seed 1. fit ends by testing the best checkpoint; "
        "--test_after_fit false skips it.",
        "# GENERATED by `python -m cap_lightning.experiments` from the grid in cap_lightning/experiments.py: edit "
        "the grid, not this file.",
    ]
    body = yaml.safe_dump(compose(dataset, prior, setting), sort_keys=False, width=120, allow_unicode=True)
    return "\n".join(header) + "\n" + body


def write(folder: Path) -> list[Path]:
    """Write every grid YAML into ``folder``; returns the paths written."""
    from lmcore.io import atomic_write_text

    return [atomic_write_text(folder / file_name(*cell), render(*cell)) for cell in grid()]


def stale(folder: Path) -> list[str]:
    """Names of grid YAMLs in ``folder`` that are missing or differ from the grid."""
    return [
        file_name(*cell)
        for cell in grid()
        if not (folder / file_name(*cell)).is_file() or (folder / file_name(*cell)).read_text() != render(*cell)
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="experiments", help="folder of the YAMLs")
    p.add_argument("--check", action="store_true", help="only check that the committed YAMLs match the grid")
    args = p.parse_args(argv)
    folder = Path(args.out)
    if args.check:
        bad = stale(folder)
        if bad:
            sys.exit(f"{len(bad)} YAMLs differ from the grid (run python -m cap_lightning.experiments): {bad}")
        print(f"{len(grid())} grid YAMLs in {folder} match the grid")
        return
    paths = write(folder)
    print(f"wrote {len(paths)} YAMLs to {folder}")


if __name__ == "__main__":
    main()
