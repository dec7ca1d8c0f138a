"""Run names for ``cap_lightning`` runs (the launcher's ``run_labels`` hook, via ``CapModule.run_labels``).

A run is named ``<dataset>-<prior>[-<control>][-<loss><λ>[-<attribution>][-gated][-subword]]-<setting>-s<seed>``
and grouped ``<dataset>/<setting>``, so a λ / loss / attribution sweep never collapses into one W&B group, and a
control (``uniform``, ``shuffled``), teacher gating (``prior_mask: teacher_correct``) or subword-level alignment is
never mistaken for the plain prior run.
"""

from __future__ import annotations

from typing import Any


def _short(class_path: str | None) -> str:
    name = (class_path or "none").rsplit(".", 1)[-1]
    return name.removesuffix("Prior").lower() or "none"


def run_labels(config: dict[str, Any]) -> dict[str, Any]:
    """Name, group and tags of a run from its resolved config (dataset, prior, setting, seed)."""
    data = (config.get("data") or {}).get("init_args") or {}
    model = (config.get("model") or {}).get("init_args") or {}
    prior, control = "none", "none"
    for cb in config.get("trainer", {}).get("callbacks") or []:
        if str(cb.get("class_path", "")).endswith("PriorCacheCallback"):
            prior = _short(cb.get("init_args", {}).get("prior", {}).get("class_path"))
            control = cb.get("init_args", {}).get("control") or "none"
    weight = float(model.get("prior_weight", 0.0) or 0.0)
    if weight == 0.0:
        prior = "baseline"
    else:
        prior += "" if control == "none" else f"-{control}"
        prior += f"-{model.get('prior_loss', 'kl')}{weight:g}"
        attribution = model.get("attribution", "ig")
        prior += "" if attribution == "ig" else f"-{attribution}"
        prior += "-gated" if model.get("prior_mask") == "teacher_correct" else ""
        prior += "-subword" if model.get("alignment_level") == "subword" else ""
    dataset = data.get("dataset", "data")
    split = data.get("split", "full")
    setting = f"fs{data.get('shots_per_class')}" if split == "few_shot" else split
    seed = data.get("seed", config.get("seed_everything"))
    return {
        "name": f"{dataset}-{prior}-{setting}-s{seed}",
        "group": f"{dataset}/{setting}",
        "tags": [str(dataset), prior, str(setting)],
    }
