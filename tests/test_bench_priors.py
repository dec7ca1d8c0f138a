"""The prior-extraction benchmark on tiny models: every extractor timed in interleaved rounds, the speed-ups as
paired per-round ratios, the cached teacher equal to the naive one."""

from benchmarks.prior_bench import CAP_CASES, bench, markdown

TEXTS = ["is the sky blue", "the sun is hot and the moon is cold"]  # in the tiny teacher's vocabulary


def test_every_extractor_is_timed_interleaved_and_the_cached_teacher_equals_the_naive_one(teacher_dir,
                                                                                         tiny_model_dir):  # fmt: skip
    report = bench(TEXTS, [0, 1], ["yes", "no"], teacher=str(teacher_dir), reference=str(tiny_model_dir),
                   cap_samples=4, lime_samples=8, ig_steps=2, repeats=2)  # fmt: skip
    assert set(report["seconds"]) == {*CAP_CASES, "lime", "ig"}
    for timing in report["seconds"].values():
        assert len(timing["runs"]) == 2 and timing["min"] <= timing["median"] <= timing["max"]
    runs = {name: t["runs"] for name, t in report["seconds"].items()}
    pairs = {"cache_speedup": ("cap_naive", "cap_cached"), "bf16_speedup": ("cap_cached", "cap_bf16")}
    for name, (slow, fast) in pairs.items():
        assert report[name]["runs"] == [a / b for a, b in zip(runs[slow], runs[fast])]  # paired per round, slow/fast
    assert set(report["load"]) == {"before", "after"}
    assert report["masked_variants"] > len(TEXTS)
    assert report["max_abs_logprob_difference"] <= 1e-4 and report["max_abs_coefficient_difference"] <= 1e-3
    assert report["targets"]["cap_scores_equal_within_1e-4"]
    text = markdown(report, "test machine", 4)
    assert "2 interleaved rounds" in text and "target ≥ 5×" in text
    assert all(line.count("|") == 4 for line in text.splitlines() if line.startswith("| CAP"))  # 3 cells per row
