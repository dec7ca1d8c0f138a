"""Load the model to steer (causal LM or VLM) and read its shape from its config alone, before any weights.

Design decisions:
- ``model_path`` goes through ``lmcore.models.resolve_model_path`` (short names such as ``smollm2-135m``,
  local folders, hub ids); the GGUF → safetensors cache is reused, not copied.
- A config with a ``vision_config`` loads with ``AutoModelForImageTextToText`` (LLaVA, LLaVA-NeXT, Qwen2.5-VL);
  anything else with ``load_causal_lm``. ``config_shape`` gives (hidden size, decoder layers) of the language
  model, so layer ranges and vector files are checked before loading the weights; ``check_steerable`` finds the
  decoder layers on an empty meta-device model built from the config (an encoder such as BERT fails there).
- ``device_map`` (e.g. ``"auto"``) shards a model too big for one device; the steering hooks move v to each layer.
"""

from __future__ import annotations

from typing import Literal

import torch

from lmcore.choices import check_choice

DType = Literal["float32", "bfloat16", "float16"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # the values of DType


def config_shape(model_path: str) -> tuple[int, int]:
    """(hidden size, number of decoder layers) of the (language) model at ``model_path``, from its config."""
    from transformers import AutoConfig

    from lmcore.models import resolve_model_path

    config = AutoConfig.from_pretrained(resolve_model_path(model_path))
    text = getattr(config, "text_config", None) or config
    hidden = next((getattr(text, k) for k in ("hidden_size", "n_embd", "d_model") if hasattr(text, k)), None)
    layers = next((getattr(text, k) for k in ("num_hidden_layers", "n_layer") if hasattr(text, k)), None)
    if hidden is None or layers is None:
        raise ValueError(f"cannot read the hidden size / layer count of {model_path!r} from its config")
    return int(hidden), int(layers)


def check_steerable(model_path: str) -> None:
    """Raise ``ValueError`` unless the model at ``model_path`` has decoder layers to steer, found exactly as on the
    loaded model (``find_decoder_layers``) but on an empty meta-device copy built from the config: no weights load."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from lmcore.models import resolve_model_path
    from steering.layers import find_decoder_layers

    config = AutoConfig.from_pretrained(resolve_model_path(model_path))
    auto = AutoModelForImageTextToText if getattr(config, "vision_config", None) is not None else AutoModelForCausalLM
    try:
        with torch.device("meta"):
            model = auto.from_config(config)
        find_decoder_layers(model)
    except ValueError as err:
        raise ValueError(f"{model_path!r} ({config.model_type}) has no decoder layers to steer ({err}); steering needs "
                         "a decoder-only causal LM or a VLM (e.g. smollm2-135m, Llama, Qwen2, Gemma 3, LLaVA): "
                         "choose such a model_path") from None  # fmt: skip


def check_layers(layers: list[int] | None, num_layers: int, model_path: str) -> None:
    """Raise ``ValueError`` when a configured layer index does not exist in a model with ``num_layers`` layers."""
    bad = [layer for layer in layers or [] if not -num_layers <= int(layer) < num_layers]
    if bad:
        raise ValueError(f"layers {bad} are out of range for {model_path!r}, which has {num_layers} decoder layers "
                         f"(allowed: {-num_layers} … {num_layers - 1})")  # fmt: skip


def load_model_and_tokenizer(model_path: str, dtype: DType = "float32", device_map: str | None = None):
    """An eval-mode, gradient-free model and its tokenizer."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from lmcore.models import load_causal_lm, load_tokenizer, resolve_model_path

    check_choice("dtype", dtype, DType)
    path = resolve_model_path(model_path)
    kwargs = {"device_map": device_map} if device_map else {}
    if getattr(AutoConfig.from_pretrained(path), "vision_config", None) is not None:
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=DTYPES[dtype], **kwargs).eval()
    else:
        model = load_causal_lm(path, dtype=dtype, **kwargs)
    model.requires_grad_(False)
    return model, load_tokenizer(path)
