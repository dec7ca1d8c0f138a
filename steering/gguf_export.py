"""Export a ``SteeringVector`` as a GGUF control vector, the format llama.cpp (``--control-vector``) and repeng read.

Design decisions:
- Layout as repeng's ``export_gguf``: architecture ``controlvector``, keys ``controlvector.model_hint`` and
  ``controlvector.layer_count``, one fp32 tensor ``direction.{i}`` per layer. llama.cpp adds ``direction.{i}`` to the
  output of (0-based) layer ``i`` and cannot steer layer 0, which is therefore refused here.
- llama.cpp *adds* the vector (scaled by its ``--control-vector-scaled`` factor) without norm preservation; ``alpha``
  can be baked in. ``gguf`` is an optional dependency (``pip install 'cap-lightning[gguf]'``), imported lazily.
"""

from __future__ import annotations

from pathlib import Path

import torch

from steering.vectors import SteeringVector


def _gguf():
    try:
        import gguf
    except ModuleNotFoundError as e:  # pragma: no cover - the venv has gguf
        raise ModuleNotFoundError("GGUF export needs gguf: pip install 'cap-lightning[gguf]'") from e
    return gguf


def export_gguf(vector: SteeringVector, path: str | Path, model_hint: str = "llama", alpha: float = 1.0) -> Path:
    """Write ``alpha · v_l`` for each layer of ``vector`` to a GGUF control-vector file at ``path``."""
    gguf = _gguf()
    if 0 in vector.vectors:
        raise ValueError("llama.cpp control vectors cannot steer layer 0; drop it from the vector before export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "controlvector")
    writer.add_string("controlvector.model_hint", model_hint)
    writer.add_uint32("controlvector.layer_count", len(vector.vectors))
    for layer in vector.layers:
        writer.add_tensor(f"direction.{layer}", (alpha * vector.vectors[layer]).float().cpu().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def load_gguf(path: str | Path) -> SteeringVector:
    """Read a GGUF control vector (ours, repeng's or llama.cpp's) back into a ``SteeringVector``."""
    gguf = _gguf()
    reader = gguf.GGUFReader(str(path))
    vectors = {}
    for tensor in reader.tensors:
        if tensor.name.startswith("direction."):
            vectors[int(tensor.name.split(".", 1)[1])] = torch.tensor(tensor.data.copy()).float().flatten()
    hint = reader.fields.get("controlvector.model_hint")
    meta = {"source": "gguf"}
    if hint is not None:
        meta["model_hint"] = bytes(hint.parts[hint.data[0]]).decode()
    return SteeringVector(vectors, meta)
