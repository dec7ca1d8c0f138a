"""ρ(model IG, prior) on the training texts the aligned runs were trained on, for models trained with and without
that prior: did the alignment move the attributions towards its targets on the training texts (and not on new ones)?

    python results/reproduce_cap/alignment_check/train_rho.py hwu64 hybrid_mean 1   # from the repository root

Tests each checkpoint below with the aligned run's own ``run.yaml`` (``<dataset>/<method>/s<seed>``), its prior
attached to the training texts as in training (the prior cache is hit, nothing is recomputed), so every model is
scored on the same ``faithfulness_rows`` training rows (the seeded train loader's first rows) against the same prior
and on the same held-out rows: the CE baseline (before alignment), the aligned run itself, the shuffled control,
and the IG m = 8 confirming row where there is one. Writes ``<dataset>_<method>_s<seed>.json`` beside this file.
"""

import json
import sys
from pathlib import Path

import lightning as L
import yaml

from lmcore.cli import run_cli

HERE = Path(__file__).resolve().parent
GRID = HERE.parent
dataset, method, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
run = GRID / dataset / method / f"s{seed}"
candidates = {
    "baseline": GRID / dataset / "baseline" / f"s{seed}",
    method: run,
    "shuffled": GRID / dataset / "shuffled" / f"s{seed}",
    f"{method}_ig8": GRID / "confirm_ig8" / f"{dataset}_{method}_s{seed}",
}
checkpoints = {k: d / "checkpoints" / "best.ckpt" for k, d in candidates.items()}
checkpoints = {k: c for k, c in checkpoints.items() if c.exists()}


class AttachPriorsForTest(L.Callback):
    """Runs the prior cache callback's fit-time setup at test time: the training texts get their priors."""

    def __init__(self, inner: L.Callback) -> None:
        self.inner = inner

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.inner.setup(trainer, pl_module, "fit")


config = yaml.safe_load((run / "run.yaml").read_text())
config.pop("test_after_fit", None)
keep = ("PriorCacheCallback", "HeldOutPriorCallback")
config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"] if c["class_path"].endswith(keep)]
config["trainer"]["default_root_dir"] = f"/tmp/train_rho_{dataset}"
config["trainer"]["logger"] = False
path = Path(f"/tmp/train_rho_{dataset}_{method}_s{seed}.yaml")
path.write_text(yaml.safe_dump(config))
out = HERE / f"{dataset}_{method}_s{seed}.json"
results = json.loads(out.read_text()) if out.exists() else {}
for name, ckpt in checkpoints.items():
    if name in results:
        continue
    cli = run_cli(["--config", str(path)], run=False)
    trainer = cli.trainer
    trainer.callbacks = [
        AttachPriorsForTest(c) if type(c).__name__ == "PriorCacheCallback" else c for c in trainer.callbacks
    ]
    trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=str(ckpt))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    results[name] = {"checkpoint": str(ckpt.relative_to(GRID)), "metrics": metrics}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(out)
    print(name, {k: round(v, 4) for k, v in metrics.items() if "spearman" in k or k == "test/acc"})
