"""Adversarial splits and robustness metrics (issue 6; docs/cap.md §3.3, §6 Evaluation).

- ``generator``: the one generator protocol (``AttackGenerator``) and the shared, resumable, content-keyed run
  (``generate``) behind both generators; ``format``: the attacked-split file format (``AdversarialExample``, jsonl);
- ``textattack_gen``: TextAttack recipes (offline: DeepWordBug, PWWS, Pruthi, InputReduction) against a victim,
  written as a resumable, content-keyed attacked split (jsonl);
- ``keyword_injection``: the paper's LLM keyword-injection protocol with a versioned prompt and a validity filter;
- ``metrics``: clean accuracy, accuracy under attack, attack success rate (pure functions);
- ``callback.RobustnessCallback``: logs them during ``lightning test`` on an adversarial split;
- ``environment``: the optional TextAttack extra and the project-local NLTK data (never downloaded at import).

Public names are imported lazily: importing this package imports neither textattack nor a model.
CLI: ``python -m cap_lightning.adversarial {recipes,textattack,inject,metrics} ...``.
"""

from __future__ import annotations

from lmcore.exports import lazy_exports

_EXPORTS = {
    "RobustnessCallback": "cap_lightning.adversarial.callback",
    "RobustnessReport": "cap_lightning.adversarial.metrics",
    "robustness_from_predictions": "cap_lightning.adversarial.metrics",
    "robustness_from_statuses": "cap_lightning.adversarial.metrics",
    "RECIPES": "cap_lightning.adversarial.recipes",
    "OFFLINE_RECIPES": "cap_lightning.adversarial.recipes",
    "check_recipe": "cap_lightning.adversarial.recipes",
    "AdversarialExample": "cap_lightning.adversarial.format",
    "read_adversarial_jsonl": "cap_lightning.adversarial.format",
    "write_adversarial_jsonl": "cap_lightning.adversarial.format",
    "AttackGenerator": "cap_lightning.adversarial.generator",
    "GenerationResult": "cap_lightning.adversarial.generator",
    "generate": "cap_lightning.adversarial.generator",
    "generate_textattack": "cap_lightning.adversarial.textattack_gen",
    "generate_injection": "cap_lightning.adversarial.keyword_injection",
    "InjectionConfig": "cap_lightning.adversarial.keyword_injection",
    "select_examples": "cap_lightning.adversarial.source",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
