"""Attribution priors: one word-level score vector in [0, 1] per training text, w.r.t. the gold label
(docs/cap.md §1, §7).

Layout: ``base`` (the interface), one module per prior (``ig``, ``lime``, ``cap`` with its ``teacher``,
``hybrid``), the reference classifier of IG and LIME (``reference``), the LIME surrogate (``masks``, ``ridge``), the
per-example store (``store``), the disk cache of a split's priors (``cache``) and ``PriorCacheCallback``
(``callback``). Public names are imported lazily, so importing one module does not load Lightning or captum.
"""

from __future__ import annotations

from lmcore.exports import lazy_exports

_EXPORTS = {
    "AttributionPrior": "cap_lightning.priors.base",
    "normalise_word_scores": "cap_lightning.priors.base",
    "IGPrior": "cap_lightning.priors.ig",
    "LIMEPrior": "cap_lightning.priors.lime",
    "ClassAwarePrior": "cap_lightning.priors.cap",
    "HybridPrior": "cap_lightning.priors.hybrid",
    "PriorCacheCallback": "cap_lightning.priors.callback",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
