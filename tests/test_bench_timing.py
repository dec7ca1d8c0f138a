"""The benchmark timing helper: interleaving, paired ratios, input checks."""

import pytest

from benchmarks.timing import interleave, ratio, ratio_cell


def test_interleave_runs_every_case_each_round_in_rotated_order():
    calls = []
    cases = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    out = interleave(cases, repeats=3, warmup=1)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert len(out["a"]["runs"]) == 3 and out["a"]["min"] <= out["a"]["median"] <= out["a"]["max"]
    assert set(out["load"]) == {"before", "after"}


def test_interleave_reports_each_round_with_an_eta_on_stderr(capsys):
    interleave({"a": int, "b": int}, repeats=2, warmup=1)
    err = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].split(",")[0].strip() for line in err] == ["1/3 done", "2/3 done", "3/3 done"]
    assert "ETA" in err[0] and err[0].startswith("interleaved rounds (1 warm-up)")


def test_ratio_pairs_rounds():
    timings = {"x": {"runs": [2.0, 4.0, 9.0]}, "y": {"runs": [1.0, 1.0, 3.0]}}
    r = ratio(timings, "x", "y")
    assert (r["min"], r["median"], r["max"]) == (2.0, 3.0, 4.0)
    assert "not met" in ratio_cell(r, target=3.5) and ": met" in ratio_cell(r, target=12, at_least=False)


@pytest.mark.parametrize("repeats,warmup,cases", [(0, 1, {"a": int}), (1, -1, {"a": int}), (1, 0, {})])
def test_interleave_refuses_bad_arguments(repeats, warmup, cases):
    with pytest.raises(ValueError, match="repeats"):
        interleave(cases, repeats, warmup)


def test_summary_reads_every_target_from_the_reports(tmp_path):
    import json

    from benchmarks.summary import main as summary

    (tmp_path / "cap.json").write_text(json.dumps({"targets": {"eg_le_2.5x_ce": True, "ig_le_12x": False}}))
    (tmp_path / "steering.json").write_text(json.dumps({"extraction": {"speedup_met": False, "speedup": 3.1}}))
    (tmp_path / "other.json").write_text(json.dumps({"no": "targets"}))
    found = summary(["--out", str(tmp_path)])
    assert found == {"cap": {"eg_le_2.5x_ce": True, "ig_le_12x": False}, "steering": {"extraction.speedup": False}}
    text = (tmp_path / "summary.md").read_text()
    assert "1 of 3 targets met" in text and "**not met**" in text
    assert summary(["--out", str(tmp_path)]) == found  # its own summary.json is not read back as a report
    with pytest.raises(SystemExit, match="no benchmark report"):
        summary(["--out", str(tmp_path / "empty")])
