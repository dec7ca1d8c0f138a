"""GPU benchmark (``make bench-gpu``): one unattended script, a few minutes on one CUDA device.

    python -m benchmarks.gpu_bench --out bench/out [--budget-s 420]

Measures, on the bundled models (tiny random models built in code where a bundled one is missing; the report says
which), and writes ``<out>/gpu.{json,md}``:
- aligned training steps (MiniLM, batch 32 × 64): CE, gradient×input, Expected Gradients, IG m = 8, as ratios to a
  CE step measured interleaved; the CE step runs with the default (fused) SDPA kernels, the attribution steps with
  the kernels their double backward allows (``cap_lightning.attribution``); peak GPU memory per step kind;
- GrAInS extraction (SmolLM2-135M, TruthfulQA pairs, IG 20 steps, top-k 10): s/example in fp32 and bf16, and the
  bf16 top-k agreement with fp32 (bf16 is recommended only where it is ≥ 95 %);
- MC evaluation: questions/s batched (shared-prompt packing) vs batch 1, and the max |Δ score| between them;
- the CAP teacher: masked variants scored per second and examples/s of a full CAP prior;
- greedy generation with the KV cache, steered (a third of the layers) vs unsteered, tokens/s;
- peak GPU memory of each section.

It fails fast, before loading anything, with one line naming the problem when no CUDA device is visible. Each
section stops adding repetitions once ``--budget-s`` is spent, so the whole run stays within its budget.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import interleave, ratio

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class NoCuda(SystemExit):
    """Raised (exit status 2) when no CUDA device is visible."""


def cuda_device() -> torch.device:
    """The first CUDA device, or ``NoCuda`` with one clear line."""
    if not torch.cuda.is_available():
        build = torch.version.cuda or "a CPU-only build"
        raise NoCuda(
            f"make bench-gpu needs a CUDA GPU: torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"CUDA {build}); run it on a machine with an NVIDIA GPU and a CUDA build of torch"
        )
    return torch.device("cuda")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1024**3 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _timed_section(device: torch.device, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    _reset_peak(device)
    start = time.perf_counter()
    out = body()
    _sync(device)
    return {**out, "section_seconds": time.perf_counter() - start, "peak_gpu_gb": _peak_gb(device)}


def _synced(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    def call() -> None:
        fn()
        _sync(device)

    return call


# ------------------------------------------------------------------------------------------------- sections
def aligned_steps(device: torch.device, tiny: bool, repeats: int) -> dict[str, Any]:
    """CE vs aligned steps (ratios measured interleaved) and the peak memory of each step kind."""
    import torch.nn.functional as F

    from benchmarks.cap_bench import _batch
    from cap_lightning.attribution import self_attribution
    from cap_lightning.losses import alignment_loss

    model = None
    if not tiny:
        from cap_lightning.datasets import load_splits
        from lmcore.models import load_classifier, load_tokenizer

        splits = load_splits("banking77", DATA / "banking77")
        try:
            model, tok, name = load_classifier("minilm", splits.num_labels), load_tokenizer("minilm"), "MiniLM-L6"
        except (ModuleNotFoundError, ValueError, OSError) as e:  # the bundled package is not installed here
            print(f"MiniLM unavailable ({type(e).__name__}: {e}); using a tiny random BERT", file=sys.stderr)
        texts, labels = [e.text for e in splits.train[:32]], [e.label for e in splits.train[:32]]
        batch, length = 32, 64
    if model is None:
        from tests.tiny import tiny_classifier, tiny_tokenizer

        model, tok, name = tiny_classifier(4), tiny_tokenizer(), "tiny random BERT"
        texts, labels, batch, length = ["a good film", "a bad plot twist"] * 2, [0, 1, 2, 3], 4, 16
    model = model.to(device).train()
    enc, wi, y = _batch(tok, texts[:batch], labels[:batch], length)
    enc, wi, y = {k: v.to(device) for k, v in enc.items()}, wi.to(device), y.to(device)
    content, pad = wi >= 0, tok.pad_token_id or 0
    prior = torch.rand(content.shape, device=device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def step(method: str | None, steps: int = 1, gradient: str = "exact") -> Callable[[], None]:
        def run() -> None:
            loss = F.cross_entropy(model(**enc).logits, y)
            if method is not None:
                a = self_attribution(model, enc["input_ids"], enc["attention_mask"], y, content, method, steps, "pad",
                                     pad, gradient=gradient)  # fmt: skip
                loss = loss + 0.5 * alignment_loss("kl", a, prior, content)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return _synced(run, device)

    # finite differences (attribution_grad: finite_difference) need no double backward, so fused attention runs
    cases = {"ce": step(None), "grad_x_input": step("grad_x_input"), "expected_gradients": step("expected_gradients"),
             "ig_m8": step("ig", 8), "expected_gradients_fd": step("expected_gradients", 1, "finite_difference"),
             "ig_m8_fd": step("ig", 8, "finite_difference")}  # fmt: skip
    peaks = {}
    for key, fn in cases.items():  # peak memory of each step kind alone
        _reset_peak(device)
        fn()
        peaks[key] = _peak_gb(device)
    timings = interleave(cases, repeats)
    return {
        "model": name,
        "batch": f"{batch} x {length}",
        "seconds": {k: timings[k] for k in cases},
        "ratio_to_ce": {k: ratio(timings, k, "ce") for k in cases if k != "ce"},
        "peak_gpu_gb_per_step": peaks,
    }


def extraction(model, tok, pairs, device: torch.device) -> dict[str, Any]:
    """GrAInS extraction s/example in fp32 and bf16, and the bf16 top-k agreement with fp32."""
    from steering import GrainsConfig, extract_deltas

    cfg = GrainsConfig(top_k=10, ig_steps=20, internal_batch_size=20)
    out, tops = {}, {}
    for dtype in (torch.float32, torch.bfloat16):
        model.to(device=device, dtype=dtype)
        extract_deltas(model, tok, pairs[:1], config=cfg)  # warm-up
        _sync(device)
        start = time.perf_counter()
        ex = extract_deltas(model, tok, pairs, config=cfg)
        _sync(device)
        key = str(dtype).removeprefix("torch.")
        out[f"{key}_seconds_per_example"] = (time.perf_counter() - start) / len(pairs)
        tops[key] = [set(t.tolist()) for t in ex.top_pos + ex.top_neg]
    model.to(dtype=torch.float32)
    agree = [len(a & b) / max(1, len(a)) for a, b in zip(tops["float32"], tops["bfloat16"])]
    out["bf16_topk_agreement"] = sum(agree) / len(agree)
    out["bf16_recommended"] = out["bf16_topk_agreement"] >= 0.95
    return out


def mc_eval(model, tok, device: torch.device, n: int, batch_size: int, repeats: int) -> dict[str, Any]:
    """Questions/s of MC scoring batched (packed) vs one sequence per forward; max |Δ score|."""
    from steering.tasks import load_truthfulqa, score_examples

    examples = load_truthfulqa(tok, str(DATA / "truthfulqa"))[:n]
    got: dict[str, list] = {}

    def scorer(key: str, **kw) -> Callable[[], None]:
        return _synced(lambda: got.__setitem__(key, score_examples(model, tok, examples, **kw)), device)

    timings = interleave(
        {"batch1": scorer("batch1", batch_size=1, packed=False), "batched": scorer("batched", batch_size=batch_size)},
        repeats,
    )
    diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(got["batch1"], got["batched"]))
    return {
        "questions": len(examples),
        "answers": sum(len(e.choices) for e in examples),
        "batch_size": batch_size,
        "questions_per_s_batch1": len(examples) / timings["batch1"]["median"],
        "questions_per_s_batched": len(examples) / timings["batched"]["median"],
        "speedup": ratio(timings, "batch1", "batched"),
        "max_abs_score_diff": diff,
    }


def teacher(model, tok, device: torch.device, n_texts: int, tiny: bool) -> dict[str, Any]:
    """CAP teacher throughput: (text, label) variants scored per second, over every label of Banking77."""
    from cap_lightning.priors.teacher import TeacherScorer, build_prompt_parts

    if tiny:  # words the tiny tokenizer knows
        texts, label_names, spec = ["the sky is blue"] * n_texts, ["true", "false", "yes"], ("q", "q", "a")
    else:
        from cap_lightning.datasets import load_splits
        from cap_lightning.datasets.specs import SPECS

        splits = load_splits("banking77", DATA / "banking77")
        texts, label_names = [e.text for e in splits.train[:n_texts]], splits.label_names
        prompt = SPECS["banking77"].prompt
        spec = (prompt.instruction, prompt.text_prefix, prompt.answer_prefix)
    scorer = TeacherScorer(model.to(device), tok, build_prompt_parts(label_names, *spec), label_names)
    rows = [(t, y) for t in texts for y in range(len(label_names))]
    scorer.score([t for t, _ in rows[:8]], [y for _, y in rows[:8]], progress=False)  # warm-up
    _sync(device)
    start = time.perf_counter()
    scorer.score([t for t, _ in rows], [y for _, y in rows], progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    n, k = len(texts), len(label_names)
    return {"texts": n, "labels": k, "variants": n * k, "variants_per_s": n * k / seconds,
            "texts_scored_over_all_labels_per_s": n / seconds}  # fmt: skip


def generation(model, tok, prompt: str, device: torch.device, new_tokens: int, repeats: int) -> dict[str, Any]:
    """Greedy generation tokens/s, steered on a third of the layers vs unsteered (interleaved)."""
    from steering import SteeringVector, find_decoder_layers, steer

    n_layers = len(find_decoder_layers(model))
    layers = list(range(n_layers // 3, 2 * n_layers // 3))
    d = model.get_input_embeddings().embedding_dim
    g = torch.Generator().manual_seed(0)
    vec = SteeringVector({layer: torch.randn(d, generator=g) for layer in layers}, {"num_layers": n_layers})
    ids = tok(prompt, return_tensors="pt").input_ids.to(device)
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, use_cache=True)
    kw["pad_token_id"] = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def steered() -> None:
        with steer(model, vec, alpha=4.0):
            model.generate(ids, **kw)

    with torch.no_grad():
        timings = interleave({"plain": _synced(lambda: model.generate(ids, **kw), device),
                              "steered": _synced(steered, device)}, repeats)  # fmt: skip
    return {"new_tokens": new_tokens, "steered_layers": layers,
            "tokens_per_s_unsteered": new_tokens / timings["plain"]["median"],
            "tokens_per_s_steered": new_tokens / timings["steered"]["median"],
            "steered_over_unsteered_time": ratio(timings, "steered", "plain")}  # fmt: skip


# ----------------------------------------------------------------------------------------------------- main
def markdown(report: dict[str, Any]) -> str:
    s, e, m, t, g = (report[k] for k in ("aligned_steps", "extraction", "mc_eval", "teacher", "generation"))

    def gb(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f}"

    lines = [
        "# GPU benchmark", "", f"{report['machine']}; models: {report['models']}", "",
        f"## Aligned training steps ({s['model']}, batch {s['batch']})", "",
        "| step | × CE step (median, min–max) | peak GPU GB |", "|---|---|---|",
        f"| CE | 1.00 | {gb(s['peak_gpu_gb_per_step']['ce'])} |",
        *[f"| CE + align ({k}) | {r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f}) | "
          f"{gb(s['peak_gpu_gb_per_step'][k])} |" for k, r in s["ratio_to_ce"].items()],
        "", "## GrAInS extraction (IG 20 steps, top-k 10)", "",
        f"fp32 {e['float32_seconds_per_example']:.3f} s/example, bf16 {e['bfloat16_seconds_per_example']:.3f} "
        f"s/example; bf16 top-k agreement with fp32 {100 * e['bf16_topk_agreement']:.1f} % "
        f"({'bf16 recommended' if e['bf16_recommended'] else 'keep fp32: below 95 %'}).",
        "", "## MC evaluation", "",
        f"{m['questions']} TruthfulQA questions ({m['answers']} answers): {m['questions_per_s_batched']:.1f} "
        f"questions/s batched (batch {m['batch_size']}) vs {m['questions_per_s_batch1']:.1f} at batch 1 "
        f"({m['speedup']['median']:.1f}×); max |Δ score| {m['max_abs_score_diff']:.1e}.",
        "", "## CAP teacher", "",
        f"{t['variants_per_s']:.0f} (text, label) variants/s; {t['texts_scored_over_all_labels_per_s']:.1f} texts/s "
        f"over all {t['labels']} labels.",
        "", "## Generation (greedy, KV cache)", "",
        f"{g['tokens_per_s_unsteered']:.1f} tokens/s unsteered, {g['tokens_per_s_steered']:.1f} steered on "
        f"{len(g['steered_layers'])} layers (time ratio {g['steered_over_unsteered_time']['median']:.3f}).",
        "", "## Peak GPU memory per section (GB)", "",
        *[f"- {k}: {gb(report[k]['peak_gpu_gb'])}" for k in ("aligned_steps", "extraction", "mc_eval", "teacher",
                                                               "generation")],
        "", f"Total {report['total_seconds']:.0f} s.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/out")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n-pairs", type=int, default=10)
    p.add_argument("--mc-questions", type=int, default=48)
    p.add_argument("--teacher-texts", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--tiny", action="store_true", help="tiny random models built in code (for the code-path test)")
    args = p.parse_args(argv)
    for name in ("repeats", "n_pairs", "mc_questions", "teacher_texts", "new_tokens"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    device = cuda_device()  # before any model or data loads
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    start = time.perf_counter()
    from benchmarks.steering_bench import load_model, load_pairs

    if args.tiny:
        from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

        lm, tok, lm_name = tiny_causal_lm("llama"), tiny_lm_tokenizer(), "tiny random Llama"
    else:
        lm, tok, lm_name = load_model("smollm2-135m")
    lm = lm.to(device).eval()
    pairs = load_pairs(args.n_pairs)
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}, "
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else device.type}",
    }
    report["aligned_steps"] = _timed_section(device, lambda: aligned_steps(device, args.tiny, args.repeats))
    report["extraction"] = _timed_section(device, lambda: extraction(lm, tok, pairs, device))
    report["mc_eval"] = _timed_section(device, lambda: mc_eval(lm, tok, device, args.mc_questions, 32, args.repeats))
    report["teacher"] = _timed_section(device, lambda: teacher(lm, tok, device, args.teacher_texts, args.tiny))
    report["generation"] = _timed_section(
        device, lambda: generation(lm, tok, pairs[0].prompt, device, args.new_tokens, args.repeats)
    )
    report["models"] = f"classifier {report['aligned_steps']['model']}; causal LM {lm_name}"
    report["total_seconds"] = time.perf_counter() - start
    from lmcore.io import atomic_write_json, atomic_write_text

    out = Path(args.out)
    atomic_write_json(out / "gpu.json", report, indent=2)
    text = markdown(report)
    atomic_write_text(out / "gpu.md", text)
    print(text)
    return report


if __name__ == "__main__":
    try:
        main()
    except NoCuda as e:
        print(e, file=sys.stderr)
        sys.exit(2)
