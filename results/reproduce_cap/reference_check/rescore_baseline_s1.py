"""Re-test the seed-1 CE baseline's (retrained) checkpoint with its own run.yaml, held-out prior callbacks included.

    python results/reproduce_cap/reference_check/rescore_baseline_s1.py hwu64   # from the repository root

Writes ``<dataset>_baseline_s1_retrained.json`` (the logged test metrics) beside this file; see README.md here.
"""

import json
import sys
from pathlib import Path

import yaml

from lmcore.cli import run_cli

HERE = Path(__file__).resolve().parent
dataset = sys.argv[1]
base = HERE.parent / dataset / "baseline" / "s1"
config = yaml.safe_load((base / "run.yaml").read_text())
config.pop("test_after_fit", None)  # a fit-only option
config["model"]["init_args"]["faithfulness"] = False  # as run; `--ckpt_path` hparams turn it back on
config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"] if "ModelCheckpoint" not in c["class_path"]]
config["trainer"]["default_root_dir"] = f"/tmp/rescore_{dataset}"
path = Path(f"/tmp/rescore_{dataset}.yaml")
path.write_text(yaml.safe_dump(config))
cli = run_cli(["test", "--config", str(path), "--ckpt_path", str(base / "checkpoints" / "best.ckpt")])
metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
(HERE / f"{dataset}_baseline_s1_retrained.json").write_text(json.dumps(metrics, indent=1))
print(metrics)
