"""The steering benchmark's instruments: the released-procedure emulation has the real release's pass structure
(28 forward calls, 104 sequence-forwards, 80 sequence-backwards per example at 20 IG steps), and ours stays within
the forward-equivalent budget; counted by ``PassCounter`` on a tiny model."""

from __future__ import annotations

import pytest

from benchmarks.steering_bench import FORWARD_EQUIVALENTS_TARGET, RELEASE_COUNTS, PassCounter, released_extraction
from steering import GrainsConfig, extract_deltas
from tests.tiny_lm import tiny_pairs


def test_released_emulation_has_the_real_release_pass_counts(model_tok):
    pytest.importorskip("captum")
    model, tok = model_tok
    pairs = tiny_pairs()[:2]
    counter = PassCounter()
    with counter.attach(model):
        for pair in pairs:
            released_extraction(model, tok, pair, top_k=2, n_steps=20)
    counts = counter.per_example(len(pairs))
    assert {key: counts[key] for key in RELEASE_COUNTS} == RELEASE_COUNTS
    assert counts["forward_equivalents"] == 3 * 80 + 24


@pytest.mark.filterwarnings("ignore:top_k")
def test_ours_counts_one_packed_row_per_ig_step(model_tok):
    model, tok = model_tok
    pairs = tiny_pairs()
    counter = PassCounter()
    with counter.attach(model):
        extract_deltas(model, tok, pairs, config=GrainsConfig(top_k=2, ig_steps=20), batch_size=1)
    counts = counter.per_example(len(pairs))
    # 20 packed IG rows with a backward, 2 no-grad completeness rows, 3 delta rows (x, x∖P, x∖Q)
    assert (counts["sequence_backwards"], counts["forward_only"]) == (20, 5)
    assert counts["forward_equivalents"] == 65 <= FORWARD_EQUIVALENTS_TARGET


def test_eval_benchmark_reports_the_sweep_workload_with_and_without_prefix_reuse(tmp_path, monkeypatch):
    from benchmarks import steering_eval_bench

    monkeypatch.setattr(steering_eval_bench, "_load", lambda name: (*_tiny(), "tiny-random-llama"))
    result = steering_eval_bench.main(["--out", str(tmp_path), "--n", "3", "--repeats", "1", "--sweep-repeats", "1",
                                       "--new-tokens", "2", "--alphas", "2", "8"])  # fmt: skip
    sweep = result["sweep"]
    assert sweep["groups"] == [[4, 5, 6, 7]] and sweep["max_abs_diff"] <= steering_eval_bench.SCORE_TOLERANCE
    assert sweep["speedup"]["median"] > 0 and sweep["speedup_fused"]["median"] > 0
    assert set(sweep["seconds"]) == set(steering_eval_bench.SWEEP_MODES)
    assert "Dev-sweep workload" in (tmp_path / "steering_eval_bench.md").read_text()


def _tiny():
    from tests.tiny_lm import tiny_causal_lm, tiny_lm_tokenizer

    return tiny_causal_lm("llama", layers=8), tiny_lm_tokenizer()  # generation steers layers [-8:-4]
