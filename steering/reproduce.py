"""Reproduction driver: predict (every method) → dev sweep (layer × α × k) → test with the chosen settings → table.

    python -m steering.reproduce --config experiments/steer_smollm2_truthfulqa.yaml --out runs/steer/smollm2 \\
        --methods grains caa random_k --layer-groups 10-13 14-17 18-21 --alphas 2 4 8 [--data.init_args.n_test=50 ...]

Design decisions:
- Every stage is the ``lightning`` command run in-process (``lmcore.cli.run_cli``): the same configs, the
  same code path and files as ``lightning predict`` / ``lightning test`` by hand. Only the sweep runs here directly,
  on the model the GrAInS predict run loaded, from the saved deltas (no second extraction).
- Baselines (CAA, PCA, random-k) run through the same config with ``--model.init_args.method`` overridden, the same
  splits and the same selection rule on dev, so the table compares like with like.
- The base model is scored once (the first test run); the others pass ``eval_base false``.
- Writes ``<out>/results.{md,csv}``, ``<out>/sweep.{md,csv}``, ``<out>/sweep_<method>.png``, per-method vectors and
  test records; logs the tables and plots to an offline W&B run grouped with the predict/test runs when wandb is
  installed and ``WANDB_MODE`` is not ``disabled``.
- ``--collect DIR [DIR …]`` rebuilds the results table from the test records of earlier (possibly split) runs.
- ``--tiny-llava DIR`` first builds the tiny random LLaVA there (``steering.tiny_llava``): the run then proves the
  VLM pipeline end to end and measures nothing about LLaVA (the table says so).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from steering.methods import get_method
from steering.sweep import group_vector, plot_sweep, select_best, sweep, write_tables
from steering.writer import atomic_write, deltas_path


def _groups(specs: list[str]) -> list[list[int]]:
    out = []
    for spec in specs:
        lo, _, hi = spec.partition("-")
        out.append(list(range(int(lo), int(hi or lo) + 1)))
    return out


def _cli(args: list[str]):
    from lmcore.cli import run_cli

    return run_cli(args)


def _wandb_log(out: Path, group: str, tables: dict[str, Path], images: list[Path], summary: dict) -> None:
    if os.environ.get("WANDB_MODE") == "disabled":
        return
    try:
        import wandb
    except ModuleNotFoundError:
        return
    run = wandb.init(project="cap-lightning-steering", group=group, name=f"{group}-summary", dir=str(out),
                     mode=os.environ.get("WANDB_MODE", "offline"), config=summary)  # fmt: skip
    for name, path in tables.items():
        import csv

        with path.open() as f:
            rows = list(csv.reader(f))
        run.log({name: wandb.Table(columns=rows[0], data=rows[1:])})
    for image in images:
        run.log({image.stem: wandb.Image(str(image))})
    run.finish()


def _row(method: str, metrics: dict, cond: str) -> dict[str, Any]:
    return {"method": method, **{k.split("/")[-1]: v for k, v in metrics.items() if f"/{cond}/" in k},
            "n_test": int(metrics["test/n_examples"])}  # fmt: skip


def collect(folders: list[str]) -> list[dict[str, Any]]:
    """Result rows from the ``*.chosen.test.json`` records of earlier runs (base from the first that scored it)."""
    rows: list[dict[str, Any]] = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.chosen.test.json")):
            rec = json.loads(path.read_text())
            meta, m = rec["vector_metadata"], rec["metrics"]
            if any(k.startswith("test/base/") for k in m):
                if not any(r["method"] == "base" for r in rows):
                    rows.insert(0, _row("base", m, "base"))
            method = meta.get("method", path.name.split(".")[0])
            rows.append({**_row(method, m, "steered"), "layers": rec["vector_layers"], "alpha": rec["alpha"],
                         "k": meta.get("k") if get_method(method).uses_k else None,
                         "dev": meta.get("dev_value")})  # fmt: skip
    return rows


def write_results(rows: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    metrics = [
        c
        for c in ("mc1", "mc2", "accuracy", "binary", "preference", "nontoxic", "kl", "ppl")
        if any(c in r for r in rows)
    ]
    return write_tables(rows, out / "results", ["method", *metrics, "layers", "alpha", "k", "dev", "n_test"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="the experiment YAML (required unless --collect)")
    p.add_argument("--collect", nargs="+", default=None, help="only rebuild the results table from these run folders")
    p.add_argument("--out", required=True, help="folder for vectors, sweeps, tables")
    p.add_argument("--methods", nargs="+", default=["grains", "caa", "random_k"])
    p.add_argument("--layer-groups", nargs="+", default=["-1"], help="e.g. 10-13 14-17 (inclusive ranges)")
    p.add_argument("--alphas", nargs="+", type=float, default=[2.0, 4.0, 8.0])
    p.add_argument("--ks", nargs="+", type=int, default=None,
                   help="k values to sweep (grains.top_k or extra_top_k: extracted by predict)")  # fmt: skip
    p.add_argument("--target", default=None, help="dev target used for selection (default: binary, else the first)")
    p.add_argument("--max-kl", type=float, default=None,
                   help="select only among settings whose dev KL(base ‖ steered) is at most this")  # fmt: skip
    p.add_argument("--no-base", action="store_true", help="do not score the unsteered model (another run did)")
    p.add_argument("--tiny-llava", default=None, help="build the tiny random LLaVA in this folder first")
    a, overrides = p.parse_known_args(argv)  # the rest goes to every `lightning` call, e.g. --data.init_args.n_test=50
    bad = [o for o in overrides if not o.startswith("--") or "=" not in o]
    if bad:
        p.error(f"extra arguments must be lightning overrides written --key=value, got {bad}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.collect:
        md, _ = write_results(collect(a.collect), out)
        print(md.read_text())
        return {"results": collect(a.collect)}
    if not a.config:
        p.error("--config is required (unless --collect)")
    start = time.time()
    if a.tiny_llava:
        from steering.tiny_llava import build_tiny_llava

        build_tiny_llava(a.tiny_llava)
        print(f"NOTE: tiny RANDOM LLaVA built in code at {a.tiny_llava}, synthetic images: the pipeline runs end to "
              "end, the numbers mean nothing about LLaVA-1.6")  # fmt: skip
    base_args = ["--config", a.config, *overrides]
    groups = _groups(a.layer_groups)
    sweep_rows, results, images, model, tok, dev, split = [], [], [], None, None, None, None
    for method in a.methods:
        vec_path = out / f"{method}.safetensors"
        t0 = time.time()
        cli = _cli(["predict", *base_args, f"--model.init_args.method={method}",
                    f"--model.init_args.vector_path={vec_path}"])  # fmt: skip
        print(f"[{method}] predict {time.time() - t0:.0f} s")
        hp = cli.model.hparams
        if model is None:
            model, tok = cli.model.hf_model, cli.model.tokenizer
            dev, split = cli.datamodule.splits["dev"], cli.datamodule.split_record()
            targets = list(dev[0].targets) if dev else ["binary"]
            a.target = a.target or ("binary" if "binary" in targets else targets[0])
        t0 = time.time()
        rows = sweep(model, tok, deltas_path(vec_path), method, dev, groups, a.alphas, a.ks, a.target,
                     hp.aggregate, hp.mode, hp.unit_norm, hp.normalize, hp.score_batch_size)  # fmt: skip
        best = select_best(rows, a.max_kl)
        print(f"[{method}] sweep {time.time() - t0:.0f} s; chosen k={best['k']} layers={best['layers']} "
              f"alpha={best['alpha']} dev {a.target}={best['value']:.3f} (base {rows[0]['value']:.3f}), dev KL "
              f"{best['kl'] if best.get('kl') is None else round(best['kl'], 4)}")  # fmt: skip
        sweep_rows += rows if not sweep_rows else rows[1:]
        images.append(plot_sweep(rows, out / f"sweep_{method}.png", f"{method}: dev {a.target} vs α", a.max_kl))
        meta = {"chosen_on": "dev", "dev_value": best["value"], "dev_kl": best.get("kl"), "alpha": best["alpha"]}
        chosen = group_vector(deltas_path(vec_path), method, best["k"], best["layers"], hp.aggregate, hp.mode,
                              hp.unit_norm, meta)  # fmt: skip
        chosen_path = out / f"{method}.chosen.safetensors"
        atomic_write(chosen_path, chosen.save)
        t0 = time.time()
        eval_base = not results and not a.no_base
        cli = _cli(["test", *base_args, f"--model.init_args.method={method}",
                    f"--model.init_args.vector_path={chosen_path}", f"--model.init_args.alpha={best['alpha']}",
                    "--model.init_args.steer_layers=null", f"--model.init_args.eval_base={eval_base}"])  # fmt: skip
        print(f"[{method}] test {time.time() - t0:.0f} s")
        m = cli.model.test_results
        if not results and not a.no_base:
            results.append(_row("base", m, "base"))
        k = best["k"] if get_method(method).uses_k else None
        results.append({**_row(method, m, "steered"), "layers": best["layers"], "alpha": best["alpha"], "k": k,
                        "dev": best["value"]})  # fmt: skip
        write_results(results, out)  # after every method, so an interrupted run still leaves a table
    res_md, res_csv = write_results(results, out)
    sw_md, sw_csv = write_tables(sweep_rows, out / "sweep", ["method", "k", "layers", "alpha", "target", "value", "kl"])
    summary = {"config": a.config, "splits": {k: v for k, v in (split or {}).items() if k != "rows"},
               "methods": a.methods, "layer_groups": a.layer_groups, "alphas": a.alphas, "ks": a.ks,
               "target": a.target, "max_kl": a.max_kl, "seconds": round(time.time() - start, 1),
               "tiny_llava": bool(a.tiny_llava)}  # fmt: skip
    atomic_write(
        out / "summary.json", lambda tmp: tmp.write_text(json.dumps({**summary, "results": results}, indent=2))
    )
    _wandb_log(out, f"steer/{Path(a.config).stem}", {"results": res_csv, "sweep": sw_csv}, images, summary)
    print(f"\nSplits: {summary['splits'].get('sizes')} (seed {summary['splits'].get('seed')}); selection on dev "
          f"{a.target}; {summary['seconds']:.0f} s in total")  # fmt: skip
    if a.tiny_llava:
        print("Tiny random LLaVA + synthetic images: wiring check only, not a LLaVA result.")
    print(res_md.read_text())
    return {"results": results, "sweep": sweep_rows, "summary": summary}


if __name__ == "__main__":
    main()
