"""A/B on the H200: SDPA with cuDNN attention allowed (the undecorated functions) vs variable_length_attention, on
sequences of new lengths. Random-init SmolLM2-135M (timing only); each arm meets pairs of lengths it has not seen.

    python ab_cudnn.py DIR   # DIR/model (SmolLM2-135M config + tokenizer), DIR/tqa.csv, DIR/truthfulqa (shared data)

Run 2 ran it in this form up to ruff's formatting (run2_after_fix/ab.log)."""

import csv
import sys
import time
import warnings

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from steering import ContrastivePair, GrainsConfig, extract_deltas
from steering.tasks import load_truthfulqa, score_examples

warnings.filterwarnings("ignore")
d = sys.argv[1]
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(d + "/model")).cuda().eval()
tok = AutoTokenizer.from_pretrained(d + "/model")
rows = list(csv.DictReader(open(d + "/tqa.csv", encoding="utf-8-sig")))
pairs = [
    ContrastivePair(f"Q: {r['Question']}\nA:", " " + r["Best Answer"], " " + r["Best Incorrect Answer"]) for r in rows
]
cfg = GrainsConfig(top_k=10, ig_steps=20, internal_batch_size=20)
cudnn = extract_deltas.__wrapped__


def per_example(fn, ps, dtype):
    model.to(dtype)
    torch.cuda.synchronize()
    s = time.perf_counter()
    fn(model, tok, ps, config=cfg)
    torch.cuda.synchronize()
    return (time.perf_counter() - s) / len(ps)


res = {}
for dtype, off in ((torch.bfloat16, 0), (torch.float32, 40)):
    name = str(dtype).removeprefix("torch.")
    per_example(extract_deltas, pairs[off + 60 : off + 62], dtype)  # warm-up: kernels, allocator
    res[f"{name} extraction, cuDNN off, new lengths"] = per_example(extract_deltas, pairs[off : off + 10], dtype)
    res[f"{name} extraction, cuDNN allowed, new lengths"] = per_example(cudnn, pairs[off + 10 : off + 20], dtype)
    res[f"{name} extraction, cuDNN allowed, same pairs again"] = per_example(cudnn, pairs[off + 10 : off + 20], dtype)
    res[f"{name} extraction, cuDNN off, same pairs"] = per_example(extract_deltas, pairs[off + 10 : off + 20], dtype)
model.to(torch.bfloat16)
ex = load_truthfulqa(tok, d + "/truthfulqa")
for label, fn, sl in (
    ("cuDNN off", score_examples, slice(0, 48)),
    ("cuDNN allowed", score_examples.__wrapped__, slice(48, 96)),
):
    torch.cuda.synchronize()
    s = time.perf_counter()
    fn(model, tok, ex[sl], batch_size=32)
    torch.cuda.synchronize()
    res[f"bfloat16 MC scoring, {label}, 48 new questions (s)"] = time.perf_counter() - s
for k, v in res.items():
    print(f"{k:60s} {v:8.3f}")
