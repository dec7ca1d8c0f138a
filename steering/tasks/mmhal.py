"""MMHal-Bench: 96 image questions, answers generated base vs steered, hallucination rate from a pluggable judge.

Design decisions: the question/answer template is local (``../shared/data/mmhal_bench/MMHal/image_data/MMHal.json``)
but the images are not (Flickr / OpenImages URLs): ``image_dir`` must hold them, named as the last part of each
``image_src`` URL; a missing folder or file is a clear error before any model is loaded. The steering pair for an
MMHal-only run is (ground-truth answer, the template's ``model_answer`` when it differs), the closest contrast the
file offers; steering sets are normally built from another task (e.g. SPA-VL). Judge: see ``generation.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

from steering.tasks.generation import GenExample
from steering.tasks.vlm_inputs import image_inputs, load_processor

KEYS = ("image_src", "question", "gt_answer")
PROMPT = "USER: <image>\n{question} ASSISTANT:"


def load_mmhal(
    tokenizer, model_path: str, data_dir: str, image_dir: str | None = None, prompt: str = PROMPT
) -> list[GenExample]:
    """MMHal-Bench items as ``GenExample`` (reference = ``gt_answer``), in file order."""
    base = Path(data_dir)
    path = next((p for p in (base / "MMHal/image_data/MMHal.json", base / "MMHal.json") if p.is_file()), None)
    if path is None:
        raise FileNotFoundError(f"MMHal.json not found under {base} (expected MMHal/image_data/MMHal.json)")
    rows = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in KEYS if rows and k not in rows[0]]
    if missing:
        raise ValueError(f"{path} is missing keys {missing}; has {sorted(rows[0])}")
    if image_dir is None or not Path(image_dir).is_dir():
        raise FileNotFoundError(f"MMHal-Bench images are not available offline: image_dir {image_dir!r} must hold the "
                                "96 images named as the last part of each image_src URL")  # fmt: skip
    from PIL import Image

    processor = load_processor(model_path)
    out = []
    for i, r in enumerate(rows):
        image_path = Path(image_dir) / r["image_src"].rsplit("/", 1)[-1]
        if not image_path.is_file():
            raise FileNotFoundError(f"MMHal-Bench image {image_path} (row {i}) is missing")
        text, pixels, extra = image_inputs(processor, Image.open(image_path).convert("RGB"),
                                           prompt.format(question=r["question"]))  # fmt: skip
        contrast = r.get("model_answer") if r.get("model_answer", "").strip() != r["gt_answer"].strip() else None
        out.append(GenExample(text, r["gt_answer"], pixels, extra, {"row": i, "type": r.get("question_type")},
                              contrast))  # fmt: skip
    return out
