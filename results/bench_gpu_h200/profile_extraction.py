"""Why is GrAInS extraction slower in bf16 than fp32 on the H200? Random-init SmolLM2-135M (timing only).

    python profile_extraction.py DIR   # DIR/model: SmolLM2-135M config + tokenizer; DIR/tqa.csv: TruthfulQA binary_2025

Run 1 ran it in this form up to ruff's import ordering (run1_before_fix/profile_extraction.log). Its variants run in
turn on the same pairs, so later variants meet cached shapes: read "no_check" with that in mind (ab_cudnn.py does not
share the confound)."""

import csv
import sys
import time
import warnings
from dataclasses import replace

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from steering import ContrastivePair, GrainsConfig, extract_deltas

d = sys.argv[1]
cfg = AutoConfig.from_pretrained(d + "/model")
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg).cuda().eval()
print("attn", model.config._attn_implementation)
tok = AutoTokenizer.from_pretrained(d + "/model")
rows = list(csv.DictReader(open(d + "/tqa.csv", encoding="utf-8-sig")))[:10]
pairs = [
    ContrastivePair(f"Q: {r['Question']}\nA:", " " + r["Best Answer"], " " + r["Best Incorrect Answer"]) for r in rows
]
base = GrainsConfig(top_k=10, ig_steps=20, internal_batch_size=20)
variants = {
    "default": base,
    "no_pack": replace(base, pack_ig=False),
    "no_check": replace(base, check_completeness=False),
}


def t(fn, n=1):
    torch.cuda.synchronize()
    s = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - s) / n


warnings.filterwarnings("ignore")
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    model.to(dtype)
    extract_deltas(model, tok, pairs[:2], config=base)
    res = {k: t(lambda c=c: extract_deltas(model, tok, pairs, config=c)) / len(pairs) for k, c in variants.items()}
    ids = torch.randint(0, 1000, (20, 60), device="cuda")
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)

    def fb(emb=emb):
        out = model(inputs_embeds=emb).logits.float().log_softmax(-1)[:, -1, 0].sum()
        out.backward()

    fb()
    res["fwd_bwd_20x60_ms"] = t(fb, 5) * 1000
    print(dtype, {k: round(v, 4) for k, v in res.items()}, flush=True)

for dtype in (torch.float32, torch.bfloat16):
    model.to(dtype)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        extract_deltas(model, tok, pairs[:3], config=base)
        torch.cuda.synchronize()
    print("=====", dtype, "by self CUDA time")
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=14, max_name_column_width=60))
    print("=====", dtype, "by self CPU time")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=60))
