"""The prior interface: one word-level score vector in [0, 1] per training text, w.r.t. the gold label
(docs/cap.md §1, §7).

Design decisions:
- ``AttributionPrior`` is the interface every prior source implements (IG, LIME, CAP and the hybrid).
  ``__call__(texts, labels)`` returns one ``(n_words,)`` tensor per text, where words are ``text.split()``;
  ``prepare`` loads (and, if asked, fine-tunes) whatever model the prior needs, once.
- The ``__init__`` signature is the config: every init argument is kept unchanged as the attribute of the same name
  (as scikit-learn's ``get_params`` reads them), and ``config()`` reads them back, less ``runtime_args`` (batch sizes,
  cache folders: speed, memory or storage, not scores). A prior among the arguments (the hybrid's sources) enters
  by its ``cache_key()``. State that ``prepare`` builds lives under other names.
- ``cache_key()`` hashes the class, ``config()`` and the content of local weight files (``model_path``,
  ``teacher_path``), so a retrained reference checkpoint gives a new cache entry. The built-in priors hash the
  import path they had before the ``priors/`` package (``cache_name``), so existing caches stay valid.
- Data-dependent defaults (CAP's teacher prompt and label names from the data module) come through
  ``set_data_defaults`` before ``cache_key()`` is read, so they feed the key like any explicit setting.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor


def normalise_word_scores(scores: Tensor) -> Tensor:
    """relu, then divide by the maximum: [0, 1], all zeros when no score is positive."""
    pos = scores.clamp_min(0).float()
    top = pos.max() if pos.numel() else pos.new_tensor(0.0)
    return pos / top if top > 0 else pos


def _file_digest(path: str) -> str | None:
    """Content hash of a local weight file or folder (short names resolved to their bundled folder first); None for
    hub ids (their revision is the user's to pin)."""
    from cap_lightning.classifier import weights_sha256
    from lmcore.models import BUNDLED_MODELS, resolve_model_path

    return weights_sha256(resolve_model_path(path) if path in BUNDLED_MODELS else path)


def _config_value(value: Any) -> Any:
    """A prior enters a config by its cache key, a list of priors by theirs; anything else as it is."""
    if isinstance(value, AttributionPrior):
        return value.cache_key()
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, AttributionPrior) for v in value):
        return [v.cache_key() for v in value]
    return value


class AttributionPrior(ABC):
    """A source of word-level attribution priors in [0, 1], w.r.t. the gold label."""

    #: init arguments that change speed, memory or storage, not the scores: left out of ``config()``
    runtime_args: ClassVar[tuple[str, ...]] = ()
    #: init arguments that a subclass's ``config()`` leaves out where they cannot change the scores (so that adding
    #: one keeps earlier cache keys valid), e.g. ``ClassAwarePrior.end_marker`` for label sets without prefix labels
    conditional_args: ClassVar[tuple[str, ...]] = ()
    #: the class name hashed into ``cache_key()`` (None: ``module.qualname``); read from the class itself only,
    #: so a subclass of a built-in prior gets its own
    cache_name: ClassVar[str | None] = None

    def config(self) -> dict[str, Any]:
        """Every setting that changes the scores (JSON-serialisable): the init arguments, read from the attributes
        of the same name, less ``runtime_args``."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        missing = [n for n in names if not hasattr(self, n)]
        if missing:
            raise TypeError(
                f"{type(self).__name__}.config(): init arguments {missing} are not kept as attributes of the same "
                "name; store them (self.<name> = <name>) or override config()"
            )
        return {n: _config_value(getattr(self, n)) for n in names if n not in self.runtime_args}

    def cache_key(self) -> str:
        """Stable hash of the class, ``config()`` and the content of local weight files it reads."""
        name = type(self).__dict__.get("cache_name") or f"{type(self).__module__}.{type(self).__qualname__}"
        cfg = {"class": name, **self.config()}
        for field in ("model_path", "teacher_path"):
            if isinstance(cfg.get(field), str):
                cfg[f"{field}_sha256"] = _file_digest(cfg[field])
        return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()

    def set_data_defaults(self, teacher_prompt: Any = None, label_names: Sequence[str] | None = None) -> None:
        """Take defaults from the data (duck-typed; ``teacher_prompt`` has ``instruction``, ``text_prefix`` and
        ``answer_prefix``; ``label_names`` in index order) for the settings left unset. ``PriorCacheCallback`` calls
        it before ``cache_key()``."""
        return None

    def prepare(
        self,
        texts: Sequence[str],
        labels: Sequence[int],
        num_labels: int,
        device: torch.device,
        label_names: Sequence[str] | None = None,
    ) -> None:
        """Load (and fine-tune, if configured) the models this prior needs; called once before ``__call__``.
        ``texts``/``labels`` are the whole training split; ``label_names`` the class names in index order."""
        return None

    def release(self) -> None:
        """Free the models loaded by ``prepare``."""
        return None

    def diagnostics(self, texts: Sequence[str], labels: Sequence[int]) -> dict[str, list] | None:
        """Per-example diagnostics of the last computation (e.g. teacher confidence), or None."""
        return None

    @abstractmethod
    def __call__(self, texts: Sequence[str], labels: Sequence[int]) -> list[Tensor]:
        """One ``(len(text.split()),)`` float tensor in [0, 1] per text."""
