"""Reproduction driver with matched side effects: predict (every method) → dev sweep and frozen selection per KL
budget → test of exactly the chosen settings → one table block per budget with paired statistics.

    python -m steering.reproduce --config experiments/steer_smollm2_truthfulqa.yaml --out runs/steer/smollm2 \\
        --methods grains caa pca random_k random_direction --layer-groups 8-11 16-19 --alphas 1 2 3 4 6 8 12 \\
        --kl-budgets 0.02 0.05 0.1 --split-seeds 0 1 2 [--data.init_args.n_test=200 ...]

Stages (each writes a record atomically; a rerun skips every stage whose record matches its inputs: the config text
and overrides, the deltas file, the dev rows and their content, the grid, the chosen setting and the split rows):
1. **predict**, once per method (``lightning predict``, the same config for every method): vector + deltas of the
   steering split, which does not depend on the split seed. Record ``<method>.predict.json``.
2. **select**, per split seed, on dev only: the sweep (layer group × α × k, from the saved deltas) gives each
   setting's dev target metric and dev KL(base ‖ steered) (``seed<s>/sweep_<method>.json``); for every KL budget and
   method, the dev-best setting within the budget (``steering.budget``) is frozen in ``seed<s>/selection.json``. The
   sweep is handed the dev examples and nothing else: the test rows never reach this stage (tested: permuting the
   test labels leaves the selection unchanged). ``--select-only`` stops here.
3. **test**, per split seed: reads the frozen ``selection.json`` and runs ``lightning test`` once per distinct
   chosen setting (the first also scores the base model), writing ``seed<s>/<setting>.test.json`` with per-question
   outcomes. The only stage that reads the test split.
3b. **null** (``--null-draws N``), per split seed: N further random directions at the random-direction control's
   chosen setting of each ``--null-budgets`` budget (``steering.null_directions``), tested like the control on the
   same test prompts, ``seed<s>/null/<setting>_draw<j>.test.json``.
4. **report**: ``results.md`` (pooled over split seeds, or the one seed), ``results_per_seed.md``, ``results.csv``,
   ``pareto_seed<s>.png``, ``summary.json`` (command, commit, wall time per stage), from the records only.

Design decisions:
- Split seeds are cross-fitted partitions (``SteeringDataModule(split_seed, n_folds)``): with ``--split-seeds 0 1
  2`` (``--folds`` defaults to their number) the test folds are disjoint and the steering rows are shared, so one
  extraction per method serves every seed and the pooled statistics are over distinct questions. Without
  ``--split-seeds`` the config's own dev / test split is used (one block, no pooling).
- Every method, including the controls (``random_direction``: a random unit direction, same norm; ``random_k``) and
  the base model, goes through the same grid, rule and test; CAA is the second reference of the paired differences.
- Continuation tasks (``task: sentiment``) go through the same stages: the dev sweep generates greedy continuations
  of the dev prompts under each setting and judges them with the config's ``judge_model`` (target ``p_positive`` by
  default, or ``--target positive_rate``), the base continuations once per split seed for every method; the side
  effect is the same dev KL on the prompts, and every sweep row also holds the continuation perplexity under the base
  model (fluency). A continuation task without ``--model.init_args.judge_model`` is refused before any work. The
  score-free references are multiple-choice only and are skipped (the report says so). Cost is dominated by
  generation: cap it with ``--data.init_args.n_dev=…`` and ``--model.init_args.max_new_tokens=…``.
- ``--kl-budgets none`` selects the dev-best setting without a budget (image tasks, where no KL is measured).
- ``--collect DIR [DIR …]`` rebuilds the report from the records of earlier runs (e.g. one split seed per folder).
- ``--tiny-llava DIR`` first builds the tiny random LLaVA there (``steering.tiny_llava``): the run then proves the
  VLM pipeline end to end and measures nothing about LLaVA (the table says so).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from lmcore.io import atomic_write_json, atomic_write_text, files_sha256, json_sha256
from lmcore.progress import duration
from steering.budget import check_budgets, select_at_budgets
from steering.dev_scoring import ContinuationJudging, default_target, dev_fingerprint, dev_kind, dev_targets
from steering.matched_report import (
    POOLED,
    RANDOM_DIRECTION,
    SeedResults,
    chosen_settings,
    lower_kl_csv,
    lower_kl_markdown,
    lower_kl_rows,
    reference_rows,
    result_rows,
    results_csv,
    results_markdown,
    stat_metrics,
)
from steering.methods import get_method
from steering.null_directions import (
    null_markdown,
    null_path,
    null_records,
    null_rows,
    null_settings,
    null_vector,
    same_vector,
)
from steering.sweep import base_dev_scores, group_vector, plot_sweep, sweep
from steering.vectors import SteeringVector
from steering.writer import atomic_write, deltas_path, results_path

REPO = Path(__file__).resolve().parents[1]
REFERENCES = ("constant", "longest")


def _groups(specs: list[str]) -> list[list[int]]:
    out = []
    for spec in specs:
        m = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", spec.strip())
        if m is None:
            raise ValueError(f"layer group {spec!r} is not an index or an inclusive range like 8-11")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        out.append(list(range(lo, hi + 1)))
        if not out[-1]:
            raise ValueError(f"layer group {spec!r} is empty (the range runs backwards)")
    return out


def _budgets(specs: list[str]) -> list[float]:
    if [s.lower() for s in specs] == ["none"]:
        return [math.inf]
    try:
        values = [float(s) for s in specs]
    except ValueError:
        raise ValueError(f"--kl-budgets takes numbers > 0 or the single word none, got {specs}") from None
    if math.inf in values:
        raise ValueError(f"--kl-budgets {specs}: write 'none' alone for no budget")
    return check_budgets(values)


def _cli(args: list[str], run: bool = True):
    from lmcore.cli import run_cli

    return run_cli(args, run=run)


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


def _commit() -> dict[str, Any]:
    """The commit this code runs from and whether the work tree differs from it (None outside a git checkout)."""
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _scored_base(record: dict[str, Any]) -> bool:
    return any(k.startswith("test/base/") for k in record.get("metrics", {}))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="the experiment YAML (required unless --collect)")
    p.add_argument("--collect", nargs="+", default=None, help="only rebuild the report from these run folders")
    p.add_argument("--out", required=True, help="folder for vectors, records, tables, plots")
    p.add_argument("--methods", nargs="+", default=["grains", "caa", "pca", "random_k", "random_direction"])
    p.add_argument("--layer-groups", nargs="+", default=["-1"], help="e.g. 8-11 16-19 (inclusive ranges)")
    p.add_argument("--alphas", nargs="+", type=float, default=[1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0],
                   help="the α grid, the same for every method and layer group")  # fmt: skip
    p.add_argument("--extra-alphas", nargs="+", default=[], metavar="METHOD=A,B",
                   help="extend one method's α grid, e.g. random_direction=16,24 (a random direction needs a larger "
                        "α for the same KL); the other methods' sweeps, and their records, are unchanged")  # fmt: skip
    p.add_argument("--ks", nargs="+", type=int, default=None,
                   help="k values to sweep (top_k or extra_top_k, extracted by predict); default all")  # fmt: skip
    p.add_argument("--target", default=None,
                   help="dev target used for selection (default: binary for MC tasks, else their first target; "
                        "p_positive for continuation tasks, or positive_rate)")  # fmt: skip
    p.add_argument("--kl-budgets", nargs="+", default=["0.02", "0.05", "0.1"],
                   help="dev KL(base ‖ steered) budgets in nats, one table block each; 'none': no budget")  # fmt: skip
    p.add_argument("--split-seeds", nargs="+", type=int, default=None,
                   help="cross-fitted dev / test partitions: split seed s tests on fold s of --folds")  # fmt: skip
    p.add_argument("--folds", type=int, default=None, help="number of test folds (default: the number of split seeds)")
    p.add_argument("--resamples", type=int, default=2000, help="paired bootstrap resamples per interval")
    p.add_argument("--confidence", type=float, default=0.95, help="confidence of the intervals")
    p.add_argument("--null-draws", type=int, default=0,
                   help="further random directions tested at the random-direction control's chosen setting, for a "
                        "null distribution of the gain over the base model (steering.null_directions)")  # fmt: skip
    p.add_argument(
        "--null-budgets",
        nargs="+",
        type=float,
        default=None,
        help="the budgets whose control setting gets the null draws (default: every --kl-budgets)",
    )
    p.add_argument("--select-only", action="store_true", help="stop after the frozen dev selection (no test split)")
    p.add_argument("--tiny-llava", default=None, help="build the tiny random LLaVA in this folder first")
    return p


def bad_alphas(alphas: Sequence[float]) -> list[float]:
    """The α values a grid cannot hold: non-finite, or 0 (the base model, scored anyway)."""
    return [x for x in alphas if not math.isfinite(x) or x == 0]


def method_alphas(alphas: Sequence[float], extras: Sequence[str], methods: Sequence[str]) -> dict[str, list[float]]:
    """Each method's α grid: ``alphas``, extended for a method by ``METHOD=A,B`` items of ``extras`` (sorted, no
    repeats); a method without extras keeps exactly ``alphas`` (so its sweep key, and its records, are unchanged).

    Raises:
        ValueError: a malformed item, a method not in ``methods``, a non-finite or zero α; each named.
    """
    grids = {m: list(alphas) for m in methods}
    for item in extras:
        method, sep, values = item.partition("=")
        if not sep or method not in grids:
            raise ValueError(
                f"--extra-alphas {item!r}: expected METHOD=A,B with METHOD one of --methods {list(methods)}"
            )
        try:
            more = [float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"--extra-alphas {item!r}: the α values must be numbers, e.g. {method}=16,24") from None
        if bad_alphas(more):
            raise ValueError(f"--extra-alphas {item!r}: α must be finite and non-zero, got {bad_alphas(more)}")
        grids[method] = sorted(set(grids[method]) | set(more))
    return grids


def _check(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Every option checked before anything expensive runs; errors name the bad value."""
    try:
        for m in a.methods:
            get_method(m)
        a.groups = _groups(a.layer_groups)
        a.budgets = _budgets(a.kl_budgets)
    except ValueError as err:
        p.error(str(err))
    if len(set(a.methods)) != len(a.methods):
        p.error(f"--methods {a.methods} repeats a method")
    if bad_alphas(a.alphas):
        p.error(f"--alphas must be finite and non-zero (α = 0 is the base model, scored anyway), got "
                f"{bad_alphas(a.alphas)}")  # fmt: skip
    try:
        a.method_alphas = method_alphas(a.alphas, a.extra_alphas, a.methods)
    except ValueError as err:
        p.error(str(err))
    if a.null_draws < 0:
        p.error(f"--null-draws {a.null_draws} must be >= 0")
    if a.null_draws and RANDOM_DIRECTION not in a.methods:
        p.error(f"--null-draws needs the {RANDOM_DIRECTION} control in --methods (its chosen setting is the null's)")
    a.null_budgets = a.budgets if a.null_budgets is None or not a.null_draws else a.null_budgets
    if any(b not in a.budgets for b in a.null_budgets):
        p.error(f"--null-budgets {a.null_budgets} must be among --kl-budgets {a.budgets}")
    if a.ks is not None and any(k < 1 for k in a.ks):
        p.error(f"--ks must be >= 1, got {a.ks}")
    if not 0 < a.confidence < 1 or a.resamples < 1:
        p.error(f"--confidence {a.confidence} must be in (0, 1) and --resamples {a.resamples} >= 1")
    if a.split_seeds is None:
        if a.folds is not None:
            p.error("--folds needs --split-seeds")
        a.seeds = [None]
        return
    a.folds = a.folds if a.folds is not None else len(a.split_seeds)
    if a.folds < 2:
        p.error(f"--folds {a.folds} must be >= 2 (a split seed's dev rows come from the other folds)")
    bad = [s for s in a.split_seeds if not 0 <= s < a.folds]
    if bad or len(set(a.split_seeds)) != len(a.split_seeds):
        p.error(f"--split-seeds {a.split_seeds} must be distinct and in 0 … --folds − 1 = {a.folds - 1} (split seed s "
                f"tests on fold s); out of range: {bad}")  # fmt: skip
    a.seeds = list(a.split_seeds)


def _against_config(a: argparse.Namespace, module, dev: list) -> str | None:
    """What in the options contradicts the config (extracted layers and k, dev targets, images), or None."""
    if not dev:
        return "the dev split is empty: selection needs n_dev >= 1"
    if any(getattr(ex, "pixel_values", None) is not None for ex in dev) and math.isfinite(a.budgets[0]):
        return f"--kl-budgets {a.kl_budgets}: the dev examples have images, where no KL is measured; pass 'none'"
    try:
        targets = sorted(dev_targets(dev))
    except ValueError as err:
        return str(err)
    if a.target is not None and a.target not in targets:
        return f"--target {a.target!r} is not a target of the dev examples {targets}"
    if dev_kind(dev) == "continuation" and module.judge_spec is None:
        return ("the dev examples are continuations (task 'sentiment'): their dev sweep and test need a judge "
                "classifier, pass --model.init_args.judge_model=<HF classifier folder> (python -m "
                "cap_lightning.export writes one)")  # fmt: skip
    if a.ks is not None and any(get_method(m).uses_k for m in a.methods):
        missing = [k for k in a.ks if k not in module.top_ks]
        if missing:
            return f"--ks {missing} are not extracted: the config extracts k {module.top_ks} (top_k, extra_top_k)"
    extracted = module.hparams.layers
    if extracted is not None:
        missing = sorted({x for g in a.groups for x in g if x not in extracted})
        if missing:
            return f"--layer-groups {a.layer_groups}: layers {missing} are not extracted (config layers {extracted})"
    return None


class Driver:
    """The stages of one run (module docstring); holds the parsed options and the run record."""

    def __init__(self, a: argparse.Namespace, overrides: list[str], argv: list[str]) -> None:
        self.a, self.out = a, Path(a.out)
        self.base_args = ["--config", a.config, *overrides]
        self.input_key = {"config": Path(a.config).read_text(), "overrides": overrides}
        self.run_key = json_sha256(self.input_key)  # a test record is reused only for the same config and overrides
        self.stage_seconds: dict[str, float] = {}
        self.resumed: list[str] = []
        self.command = "python -m steering.reproduce " + shlex.join(argv)
        self._model = None
        self._judge = None

    # ---- helpers --------------------------------------------------------------------------------------------
    def split_args(self, seed: int | None) -> list[str]:
        if seed is None:
            return []
        return [f"--data.init_args.split_seed={seed}", f"--data.init_args.n_folds={self.a.folds}"]

    def seed_dir(self, seed: int | None) -> Path:
        return self.out / ("split" if seed is None else f"seed{seed}")

    def instantiate(self, seed: int | None):
        """Module and data module of the config for split ``seed``, instantiated, not run (no weights loaded)."""
        cli = _cli([*self.base_args, f"--model.init_args.method={self.a.methods[0]}", *self.split_args(seed)],
                   run=False)  # fmt: skip
        cli.datamodule.setup("test")
        return cli.model, cli.datamodule

    def model(self, module):
        if self._model is None:
            module.configure_model()
            self._model = (module.hf_model, module.tokenizer)
        return self._model

    def judging(self, module) -> ContinuationJudging:
        """The dev judging of continuation tasks: the config's judge classifier (loaded once), label, tokens."""
        if self._judge is None:
            from steering.tasks.classifier_judge import ClassifierJudge

            device = next(self.model(module)[0].parameters()).device
            self._judge = ClassifierJudge(module.judge_spec, device, module.hparams.judge_batch_size)
        hp = module.hparams
        return ContinuationJudging(self._judge, module.judge_spec.target, hp.max_new_tokens, hp.score_batch_size)

    def _timed(self, stage: str, t0: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + time.time() - t0

    # ---- 1. predict -----------------------------------------------------------------------------------------
    def predict(self) -> None:
        for method in self.a.methods:
            vec = self.out / f"{method}.safetensors"
            record_path = self.out / f"{method}.predict.json"
            key = json_sha256({**self.input_key, "method": method})
            done = _read(record_path)
            if done and done.get("key") == key and vec.is_file() and deltas_path(vec).is_file():
                self.resumed.append(f"predict {method}")
                continue
            t0 = time.time()
            _cli(["predict", *self.base_args, *self.split_args(self.a.seeds[0]), f"--model.init_args.method={method}",
                  f"--model.init_args.vector_path={vec}"])  # fmt: skip
            self._timed("predict", t0)
            atomic_write_json(record_path, {"key": key, "method": method, "seconds": round(time.time() - t0, 1)})
            print(f"[{method}] predict {time.time() - t0:.0f} s")

    # ---- 2. dev sweep and frozen selection --------------------------------------------------------------------
    def select(self, seed: int | None) -> dict[str, Any]:
        a = self.a
        module, dm = self.instantiate(seed)
        dev = dm.splits["dev"]  # the only split this stage reads
        if not dev:
            raise ValueError("the dev split is empty: selection needs n_dev >= 1")
        target = a.target or default_target(dev)
        dev_rows = dm.split_record()["rows"]["dev"]
        hp, folder, sweeps = module.hparams, self.seed_dir(seed), {}
        dev_hash = dev_fingerprint(dev)
        continuation = dev_kind(dev) == "continuation"
        judge_key = None
        if continuation:  # the judge folder's files and the generation length change every dev score
            spec = module.judge_spec
            files = sorted(f for f in Path(spec.path).rglob("*") if f.is_file())
            judge_key = {"judge": files_sha256(files, [str(f.relative_to(spec.path)) for f in files]),
                         "label": spec.labels[spec.target], "n_tokens": hp.max_new_tokens}  # fmt: skip
        base = None  # the base model's dev scores, computed once for every method of this split seed
        for method in a.methods:
            deltas = deltas_path(self.out / f"{method}.safetensors")
            key = json_sha256({"deltas": files_sha256([deltas]), "dev_rows": dev_rows, "dev": dev_hash,
                               "groups": a.groups, "alphas": a.method_alphas[method], "ks": a.ks, "target": target,
                               "aggregate": hp.aggregate, "mode": hp.mode, "unit_norm": hp.unit_norm,
                               "normalize": hp.normalize, **({"judging": judge_key} if continuation else {}),
                               # absolute α: the key of the records written before alpha_unit existed
                               **({"alpha_unit": hp.alpha_unit} if hp.alpha_unit != "absolute" else {})})  # fmt: skip
            path = folder / f"sweep_{method}.json"
            done = _read(path)
            if done and done.get("key") == key:
                sweeps[method] = done["rows"]
                self.resumed.append(f"sweep {method} split {seed}")
                continue
            t0 = time.time()
            model, tok = self.model(module)
            judging = self.judging(module) if continuation else None
            if base is None:
                base = base_dev_scores(model, tok, dev, target, hp.score_batch_size, judging)
            alphas = a.method_alphas[method]
            rows = sweep(model, tok, deltas, method, dev, a.groups, alphas, a.ks, target, hp.aggregate, hp.mode,
                         hp.unit_norm, hp.normalize, hp.score_batch_size, judging, base,
                         alpha_unit=hp.alpha_unit)  # fmt: skip
            self._timed("sweep", t0)
            atomic_write_json(path, {"key": key, "split_seed": seed, "rows": rows})
            print(f"[{method}] split {seed}: dev sweep {time.time() - t0:.0f} s ({len(rows) - 1} settings)")
            sweeps[method] = rows
            title = f"{method}: dev {target} vs α (split seed {seed})"
            atomic_write(folder / f"sweep_{method}.png", partial(plot_sweep, rows, title=title))
        selection = {"split_seed": seed, "budgets": a.budgets, "target": target, "alpha_unit": hp.alpha_unit,
                     "dev_rows": dev_rows,
                     "choices": select_at_budgets(sweeps, a.budgets), "sweeps": sweeps}  # fmt: skip
        atomic_write_json(folder / "selection.json", selection)
        for c in selection["choices"]:
            r = c["chosen"]
            what = (
                "none within budget"
                if r is None
                else f"layers {r['layers']} α {r['alpha']:g} k {r['k']}, dev "
                f"{target} {r['value']:.3f}, dev KL {r['kl'] if r.get('kl') is None else round(r['kl'], 4)}"
                + ("" if r.get("continuation_ppl") is None else f", dev continuation ppl {r['continuation_ppl']:.2f}")
            )
            print(f"split {seed}, budget {c['budget']:g}, {c['method']}: {what}")
        return selection

    # ---- 3. test of the frozen choices ------------------------------------------------------------------------
    def test(self, seed: int | None) -> tuple[dict[str, dict], str]:
        """Run ``lightning test`` for every distinct chosen setting of the frozen selection of split ``seed``."""
        folder = self.seed_dir(seed)
        selection = _read(folder / "selection.json")
        if selection is None:
            raise FileNotFoundError(f"{folder / 'selection.json'} is missing: the select stage did not finish")
        module, dm = self.instantiate(seed)
        split = dm.split_record()
        if split["rows"]["dev"] != selection["dev_rows"]:
            raise ValueError(f"{folder / 'selection.json'} was frozen on other dev rows than split seed {seed} has "
                             "now (config changed?); rerun the select stage")  # fmt: skip
        hp, records = module.hparams, {}
        settings = chosen_settings(selection, {m: get_method(m).uses_k for m in selection["sweeps"]})
        if not settings:
            raise ValueError(f"split seed {seed}: no method has a setting within any budget {selection['budgets']}")
        for i, (key, method, chosen) in enumerate(settings):
            vec_path = folder / f"{key}.safetensors"
            eval_base = i == 0
            done = self._reusable(vec_path, split, chosen["alpha"], eval_base)
            if done is not None:
                records[key] = done
                self.resumed.append(f"test {key} split {seed}")
                continue
            meta = {"chosen_on": "dev", "dev_value": chosen["value"], "dev_kl": chosen.get("kl"),
                    "alpha": chosen["alpha"], "split_seed": seed, "run_key": self.run_key}  # fmt: skip
            vector = group_vector(deltas_path(self.out / f"{method}.safetensors"), method, chosen["k"],
                                  chosen["layers"], hp.aggregate, hp.mode, hp.unit_norm, meta)  # fmt: skip
            atomic_write(vec_path, vector.save)
            records[key] = self._run_test(seed, method, vec_path, chosen["alpha"], eval_base, key)
        from steering.tasks.references import reference_metrics

        test = dm.splits["test"]
        refs = {}  # score-free references score multiple-choice answers: none for continuation tasks
        if dev_kind(test) == "mc":
            refs = {kind: {**reference_metrics(test, kind), "n": len(test)} for kind in REFERENCES}
        atomic_write_json(folder / "references.json", refs)
        return records, settings[0][0]

    def _reusable(self, vec_path: Path, split: dict, alpha: float, eval_base: bool) -> dict | None:
        """The test record of ``vec_path`` when it is of this run, these split rows and α (and scored the base model
        when asked), else None."""
        done = _read(results_path(vec_path))
        same_split = done is not None and (done.get("splits") or {}).get("rows") == split["rows"]
        same_run = same_split and (done.get("vector_metadata") or {}).get("run_key") == self.run_key
        if same_run and done.get("alpha") == alpha and (not eval_base or _scored_base(done)):
            return done
        return None

    def _run_test(self, seed: int | None, method: str, vec_path: Path, alpha: float, eval_base: bool,
                  label: str) -> dict:  # fmt: skip
        t0 = time.time()
        _cli(["test", *self.base_args, *self.split_args(seed), f"--model.init_args.method={method}",
              f"--model.init_args.vector_path={vec_path}", f"--model.init_args.alpha={alpha}",
              "--model.init_args.steer_layers=null", f"--model.init_args.eval_base={eval_base}"])  # fmt: skip
        self._timed("test", t0)
        print(f"[{label}] split {seed}: test {time.time() - t0:.0f} s")
        return json.loads(results_path(vec_path).read_text())

    # ---- 3b. null draws of the random direction ----------------------------------------------------------------
    def null(self, seed: int | None) -> None:
        """Test ``--null-draws`` random directions at the control's chosen setting of each null budget."""
        folder = self.seed_dir(seed)
        selection = _read(folder / "selection.json")
        _, dm = self.instantiate(seed)
        split = dm.split_record()
        for key, chosen in null_settings(selection, self.a.null_budgets):
            reference = SteeringVector.load(folder / f"{key}.safetensors")
            for draw in range(1, self.a.null_draws + 1):
                vec_path = null_path(folder, key, draw)
                vector = null_vector(reference, draw)
                saved = SteeringVector.load(vec_path) if vec_path.is_file() else None
                fresh = saved is not None and same_vector(saved, vector)  # a draw of another generator is redone
                if fresh and self._reusable(vec_path, split, chosen["alpha"], False) is not None:
                    self.resumed.append(f"null {key} draw {draw} split {seed}")
                    continue
                vec_path.parent.mkdir(exist_ok=True)
                atomic_write(vec_path, vector.save)
                self._run_test(seed, RANDOM_DIRECTION, vec_path, chosen["alpha"], False, f"{key} null {draw}")


def _seed_results(folder: Path, null_budgets: Sequence[float] = (), null_draws: int = 0) -> SeedResults:
    """The records of one split seed: its frozen selection, the test record of each chosen setting (the first
    scored the base model), the score-free references and the null draws' test records."""
    selection = json.loads((folder / "selection.json").read_text())
    uses_k = {m: get_method(m).uses_k for m in selection["sweeps"]}
    settings = chosen_settings(selection, uses_k)
    if not settings:
        raise ValueError(f"{folder}: no method has a setting within any budget {selection['budgets']}")
    tests = {}
    for key, _, chosen in settings:
        rec = _read(folder / f"{key}.test.json")
        if rec is None or rec.get("alpha") != chosen["alpha"]:
            raise FileNotFoundError(f"{folder / key}.test.json is missing or stale: run the test stage")
        tests[key] = rec
    base_key = settings[0][0]
    if not _scored_base(tests[base_key]):
        raise FileNotFoundError(f"{folder / base_key}.test.json did not score the base model; rerun the test stage")
    refs = json.loads((folder / "references.json").read_text())
    nulls = null_records(folder, selection, null_budgets, null_draws) if null_draws else {}
    return SeedResults(selection, tests, base_key, refs, uses_k, nulls)


def _summary(out: Path, run: dict[str, Any], d: Driver, start: float, select_only: bool = False) -> dict[str, Any]:
    """``summary.json``: the options, this invocation's command, commit and wall time per stage, and every earlier
    invocation's (a resumed run adds one), with the total wall time."""
    seconds = round(time.time() - start, 1)
    this = {"command": run["command"], "commit": run["commit"], "dirty": run["dirty"], "seconds": seconds,
            "stage_seconds": {k: round(v, 1) for k, v in d.stage_seconds.items()}, "resumed": d.resumed,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "select_only": select_only}  # fmt: skip
    earlier = (_read(out / "summary.json") or {}).get("invocations", [])
    invocations = [*earlier, this]
    summary = {**run, **this, "invocations": invocations,
               "seconds_total": round(sum(i["seconds"] for i in invocations), 1)}  # fmt: skip
    atomic_write_json(out / "summary.json", summary)
    return summary


def report(seed_dirs: list[Path], out: Path, a: argparse.Namespace, header: list[str]) -> dict[str, Any]:
    """Tables and Pareto plots from the records in ``seed_dirs`` (no model)."""
    seeds = [_seed_results(d, a.null_budgets, a.null_draws) for d in seed_dirs]
    methods = list(seeds[0].selection["sweeps"])
    budgets = seeds[0].selection["budgets"]
    target = seeds[0].selection["target"]
    for s in seeds[1:]:
        if list(s.selection["sweeps"]) != methods or s.selection["budgets"] != budgets:
            raise ValueError(f"split seed {s.seed} was selected with other methods or budgets than split seed "
                             f"{seeds[0].seed}: {list(s.selection['sweeps'])} {s.selection['budgets']}")  # fmt: skip
    rows = result_rows(seeds, budgets, methods, a.confidence, a.resamples)
    refs = reference_rows(seeds)
    label = POOLED if len(seeds) > 1 else seeds[0].label
    if len(seeds) > 1:
        how = "questions pooled over the split seeds' disjoint test folds"
    else:
        how = "the config's own dev / test split" if seeds[0].seed is None else f"split seed {seeds[0].seed}"
    head = [*header, f"Test questions: {how}. Differences: method − reference over the same questions, "
            f"{a.confidence:.0%} paired bootstrap interval ({a.resamples} resamples); 0 / 1 outcomes (MC1, binary, "
            "positive_rate) add the exact McNemar p, which decides their verdict (p < 1 − confidence); other metrics: "
            "verdict 'no difference' when the interval covers 0. Verdicts are unadjusted; beside each, the "
            "Holm-adjusted p over the table's distinct comparisons per metric (McNemar p for 0 / 1 outcomes, "
            "paired t p otherwise) and the verdict after Holm where it differs. "
            f"Settings chosen on dev only (best dev {target} within the budget; ties: lower dev KL, then smaller "
            "α)."]  # fmt: skip
    targets = seeds[0].targets()
    md = results_markdown(rows, refs, targets, target, label, head, a.confidence)
    lower = lower_kl_rows(seeds, rows, methods, a.confidence, a.resamples)
    md += lower_kl_markdown(lower, stat_metrics(targets), label, a.confidence)
    if a.null_draws:
        md += null_markdown(null_rows(seeds, a.null_budgets, methods, stat_metrics(targets)))
    atomic_write_text(out / "results.md", md)
    per_seed = "\n".join(
        results_markdown(rows, refs, targets, target, s.label, [f"## Split seed {s.label}"], a.confidence)
        + lower_kl_markdown(lower, stat_metrics(targets), s.label, a.confidence)
        for s in seeds
    )
    atomic_write_text(out / "results_per_seed.md", per_seed)
    atomic_write_text(out / "results.csv", results_csv(rows, targets))
    atomic_write_text(out / "results_lower_kl.csv", lower_kl_csv(lower, stat_metrics(targets)))
    images = []
    try:
        from steering.pareto_plot import plot_pareto
    except ImportError:  # pragma: no cover - matplotlib is an optional extra
        plot_pareto = None
    finite = [b for b in budgets if math.isfinite(b)]
    for s in seeds:
        if plot_pareto is None:
            break
        points = []
        for r in rows:
            if r["split_seed"] == s.label and r["method"] != "base" and r.get(target) is not None:
                points.append({"method": r["method"], "budget": r["budget"], "kl": r.get("kl"), "value": r.get(target)})
        base = next(r for r in rows if r["split_seed"] == s.label and r["method"] == "base")
        title = f"dev {target} vs dev KL; test points at the budgets (split seed {s.label})"
        refs_s = {n: m[target] for n, m in s.references.items() if target in m}
        base_s = {"dev": base.get("dev_value"), "test": base.get(target)}
        draw = partial(plot_pareto, s.selection["sweeps"], points, metric=target, budgets=finite, base=base_s,
                       references=refs_s, title=title)  # fmt: skip
        images.append(atomic_write(out / f"pareto_{'split' if s.seed is None else f'seed{s.seed}'}.png", draw))
    return {"rows": rows, "references": refs, "images": images, "markdown": md}


def collect_header(folders: Sequence[str], argv: Sequence[str]) -> list[str]:
    """The ``--collect`` report's provenance: this command and commit, and each collected run's commands, commits
    and wall time from its ``summary.json`` (or a line saying it has none)."""
    here = _commit()
    lines = [f"Collected from {', '.join(folders)} by `python -m steering.reproduce {shlex.join(argv)}` at commit "
             f"{here['commit']}{' (work tree modified)' if here['dirty'] else ''}."]  # fmt: skip
    for folder in folders:
        summary = _read(Path(folder) / "summary.json")
        if summary is None:
            lines.append(f"- {folder}: no summary.json (run command, commit and wall time unknown).")
            continue
        invocations = summary.get("invocations") or [summary]
        commits = sorted({str(i.get("commit"))[:7] for i in invocations})
        total = summary.get("seconds_total", summary.get("seconds", 0.0))
        lines.append(f"- {folder}: `{summary.get('command')}` at commit(s) {', '.join(commits)}; wall time "
                     f"{duration(total)} over {len(invocations)} invocation(s).")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    a, overrides = p.parse_known_args(argv)  # the rest goes to every `lightning` call, e.g. --data.init_args.n_test=50
    bad = [o for o in overrides if not o.startswith("--") or "=" not in o]
    if bad:
        p.error(f"extra arguments must be lightning overrides written --key=value, got {bad}")
    _check(p, a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    if a.collect:
        dirs = sorted({d for folder in a.collect for d in Path(folder).glob("*/selection.json")})
        if not dirs:
            p.error(f"--collect {a.collect}: no <folder>/<seed>/selection.json found")
        res = report([d.parent for d in dirs], out, a, collect_header(a.collect, argv))
        print(res["markdown"])
        return res
    if not a.config:
        p.error("--config is required (unless --collect)")
    if not Path(a.config).is_file():
        p.error(f"--config {a.config} does not exist")
    if a.tiny_llava:
        from steering.tiny_llava import build_tiny_llava

        build_tiny_llava(a.tiny_llava)
        print(f"NOTE: tiny RANDOM LLaVA built in code at {a.tiny_llava}, synthetic images: the pipeline runs end to "
              "end, the numbers mean nothing about LLaVA-1.6")  # fmt: skip
    d = Driver(a, overrides, argv)
    module, dm = d.instantiate(a.seeds[0])  # data and options checked before any extraction
    problem = _against_config(a, module, dm.splits["dev"])
    if problem:
        p.error(problem)
    d.predict()
    for seed in a.seeds:
        d.select(seed)
    run = {"command": d.command, **_commit(), "config": a.config, "methods": a.methods, "layer_groups": a.layer_groups,
           "alphas": a.alphas, "extra_alphas": a.extra_alphas, "ks": a.ks, "kl_budgets": a.budgets,
           "split_seeds": a.split_seeds, "folds": a.folds, "null_draws": a.null_draws,
           "null_budgets": a.null_budgets,
           "tiny_llava": bool(a.tiny_llava)}  # fmt: skip
    if a.select_only:
        summary = _summary(out, run, d, start, select_only=True)
        return {"summary": summary, "selections": [_read(d.seed_dir(s) / "selection.json") for s in a.seeds]}
    for seed in a.seeds:
        d.test(seed)
        if a.null_draws:
            d.null(seed)
    t0 = time.time()
    header = [f"# Matched side effect: {', '.join(a.methods)} on {Path(a.config).stem}", "",
              f"`{d.command}` at commit {run['commit']}{' (work tree modified)' if run['dirty'] else ''}."]  # fmt: skip
    if a.tiny_llava:
        header.append("Tiny random LLaVA + synthetic images: wiring check only, not a LLaVA result.")
    res = report([d.seed_dir(s) for s in a.seeds], out, a, header)
    d._timed("report", t0)
    summary = _summary(out, run, d, start)
    res["markdown"] += (f"\nWall time {duration(summary['seconds_total'])} over {len(summary['invocations'])} "
                        f"invocation(s); this one {duration(summary['seconds'])} (seconds per stage "
                        f"{summary['stage_seconds']}; {len(d.resumed)} stage records reused).\n")  # fmt: skip
    atomic_write_text(out / "results.md", res["markdown"])
    _wandb_log(out, f"steer/{Path(a.config).stem}", {"results": out / "results.csv"}, res["images"], summary)
    print(res["markdown"])
    return {**res, "summary": summary}


if __name__ == "__main__":
    main()
