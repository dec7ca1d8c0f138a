"""The results table (cap_lightning.report): mean ± std over seeds and the paired difference to the baseline."""

import json

import pytest

from cap_lightning.report import baseline_of, collect, main, paired_cell, paired_table
from lmcore.statistics import paired_t_interval


def _record(name, seed, **metrics):
    return {"name": f"{name}-s{seed}", "metrics": {f"test/{k}": v for k, v in metrics.items()}}


BASE = [_record("sst2-baseline-full", s, acc=a) for s, a in ((0, 0.80), (1, 0.82), (2, 0.79), (3, 0.90))]
CAP = [_record("sst2-cap-kl0.1-full", s, acc=a) for s, a in ((2, 0.83), (0, 0.84), (1, 0.83))]  # no seed 3


def test_baseline_of_keeps_dataset_and_setting():
    assert baseline_of("sst2-hybrid-kl0.1-grad_x_input-fs10") == "sst2-baseline-fs10"
    assert baseline_of("sst2-baseline-full") == "sst2-baseline-full"
    with pytest.raises(ValueError, match="is not <dataset>-<prior>-<setting>"):
        baseline_of("oddname")


def test_the_paired_cell_pairs_by_seed_over_the_shared_seeds():
    cell = paired_cell(CAP, BASE, "test/acc")
    ci = paired_t_interval([84.0, 83.0, 83.0], [80.0, 82.0, 79.0])  # seeds 0, 1, 2; the baseline's seed 3 is unpaired
    assert cell == f"{ci.mean:+.2f} [{ci.low:+.2f}, {ci.high:+.2f}] no difference (n=3)"
    assert ci.low < 0 < ci.high


def test_identical_runs_show_no_difference_and_a_clear_gain_shows_higher():
    assert paired_cell(BASE, BASE, "test/acc") == "+0.00 [+0.00, +0.00] no difference (n=4)"
    better = [_record("sst2-x-full", s, acc=r["metrics"]["test/acc"] + 0.05 + 0.001 * s) for s, r in enumerate(BASE)]
    assert "higher" in paired_cell(better, BASE, "test/acc")
    assert paired_cell(better[:1], BASE, "test/acc") == "+5.00 (n=1)"
    assert paired_cell(CAP, BASE, "test/macro_f1") == "–"


def test_paired_table_has_a_row_per_group_and_only_logged_metrics():
    groups = {"sst2-baseline-full": BASE, "sst2-cap-kl0.1-full": CAP, "emotion-cap-kl0.1-full": CAP}
    text = paired_table(groups)
    lines = text.splitlines()
    assert lines[0] == "| run | seeds | test/acc | Δ test/acc vs baseline |"  # no other metric was logged
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:] if line.startswith("| ")}
    assert set(rows) == set(groups)
    assert rows["sst2-baseline-full"].endswith("| baseline |")
    assert rows["sst2-cap-kl0.1-full"].endswith(f"| {paired_cell(CAP, BASE, 'test/acc')} |")
    assert rows["emotion-cap-kl0.1-full"].endswith("| – |")  # no emotion baseline
    assert "95 % paired-t interval" in text


def test_main_appends_the_paired_table_with_baseline(tmp_path, capsys):
    for i, record in enumerate(BASE + CAP):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        (folder / "test_metrics.json").write_text(json.dumps(record))
    assert set(collect([str(tmp_path)])) == {"sst2-baseline-full", "sst2-cap-kl0.1-full"}
    main([str(tmp_path)])
    plain = capsys.readouterr().out
    assert "vs baseline" not in plain
    main([str(tmp_path), "--baseline", "--out", str(tmp_path / "t.md")])
    out = capsys.readouterr().out
    assert plain.strip() in out and "Δ test/acc vs baseline" in out
    assert (tmp_path / "t.md").read_text().strip() == out.strip()
