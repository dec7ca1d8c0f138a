"""cap-lightning: explanation-guided training of small LM classifiers with attribution priors (arXiv 2512.14719).

Public names are imported lazily (``lmcore.exports``), so ``import cap_lightning`` stays light.
"""

from __future__ import annotations

from lmcore.exports import lazy_exports

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


__getattr__ = lazy_exports(__name__, _EXPORTS)
