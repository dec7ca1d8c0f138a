"""cap-lightning: explanation-guided training of small LM classifiers with attribution priors (arXiv 2512.14719).

Public names are imported lazily, so ``import lmcore.models`` (used by ``steering``) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "AttributionPrior": "cap_lightning.priors.base",
    "IGPrior": "cap_lightning.priors.ig",
    "ClassAwarePrior": "cap_lightning.priors.cap",
    "LIMEPrior": "cap_lightning.priors.lime",
    "HybridPrior": "cap_lightning.priors.hybrid",
    "FaithfulnessMetrics": "cap_lightning.faithfulness",
    "CapDataModule": "cap_lightning.datasets",
    "CapModule": "cap_lightning.module",
    "PriorCacheCallback": "cap_lightning.priors.callback",
    "AttributionTableCallback": "cap_lightning.visual",
}

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cap_lightning' has no attribute {name!r}")
