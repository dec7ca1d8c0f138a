"""``make bench-gpu``: fails fast without CUDA; its whole code path runs with the device check mocked (tiny models)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_exits_nonzero_with_one_clear_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "benchmarks.gpu_bench", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs a CUDA GPU" in lines[0], run.stderr
    assert not list(tmp_path.iterdir())  # nothing loaded, nothing written


def test_bad_argument_is_refused_before_the_device_check(monkeypatch):
    monkeypatch.setattr(gpu_bench, "cuda_device", lambda: pytest.fail("device check ran before argument checks"))
    with pytest.raises(SystemExit):
        gpu_bench.main(["--repeats", "0"])


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "banking77").is_dir(), reason="needs ../shared/data")
def test_every_section_runs_with_the_device_check_mocked(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_bench, "cuda_device", lambda: torch.device("cpu"))
    report = gpu_bench.main(["--out", str(tmp_path), "--tiny", "--repeats", "1", "--n-pairs", "2",
                             "--mc-questions", "2", "--teacher-texts", "1", "--new-tokens", "2"])  # fmt: skip
    saved = json.loads((tmp_path / "gpu.json").read_text())
    for section in ("aligned_steps", "extraction", "mc_eval", "teacher", "generation"):
        assert section in saved and saved[section]["section_seconds"] > 0
    steps = report["aligned_steps"]["ratio_to_ce"]
    assert set(steps) == {"grad_x_input", "expected_gradients", "ig_m8", "expected_gradients_fd", "ig_m8_fd"}
    assert all(r["median"] > 0 for r in steps.values())
    assert 0.0 <= report["extraction"]["bf16_topk_agreement"] <= 1.0
    assert report["mc_eval"]["max_abs_score_diff"] < 1e-3
    assert "GPU benchmark" in (tmp_path / "gpu.md").read_text()
