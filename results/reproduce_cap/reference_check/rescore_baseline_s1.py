import json, sys, yaml
from lmcore.cli import run_cli
ds = sys.argv[1]
base = f"/work/main/results/reproduce_cap/{ds}/baseline/s1"
cfg = yaml.safe_load(open(f"{base}/run.yaml"))
cfg.pop("test_after_fit", None)
cfg["model"]["init_args"]["faithfulness"] = False
cfg["trainer"]["callbacks"] = [c for c in cfg["trainer"]["callbacks"] if "ModelCheckpoint" not in c["class_path"]]
cfg["trainer"]["default_root_dir"] = f"/tmp/rho_check/{ds}"
path = f"/tmp/rho_check/{ds}.yaml"
yaml.safe_dump(cfg, open(path, "w"))
cli = run_cli(["test", "--config", path, "--ckpt_path", f"{base}/checkpoints/best.ckpt"])
res = cli.trainer.callback_metrics
out = {k: float(v) for k, v in res.items()}
json.dump(out, open(f"/tmp/rho_check/{ds}.json", "w"), indent=1)
print(out)
