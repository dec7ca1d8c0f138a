"""cap_lightning.attribution_check: ρ of cheap self-attributions with the model's converged IG."""

import json

import pytest

from cap_lightning.attribution_check import check, parse_args, parse_candidate, summarise
from cap_lightning.module import CapModule
from tests.helpers import tiny_datamodule


def _args(tmp_path, tiny_model_dir, *extra):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"")  # parse_args checks that the file exists; check() receives the module itself
    return parse_args(["--ckpt", str(ckpt), "--dataset", "custom", "--rows", "6", "--out", str(tmp_path / "out"),
                       "--reference-steps", "6", *extra])  # fmt: skip


@pytest.fixture
def module(tiny_model_dir):
    m = CapModule(str(tiny_model_dir), prior_weight=0.0, num_labels=2)
    m.configure_model()
    return m


def test_the_reference_agrees_with_itself_and_batching_changes_nothing(tmp_path, tiny_model_dir, module):
    records = []
    for batch_size in ("1", "4"):
        args = _args(tmp_path, tiny_model_dir, "--candidates", "ig:6", "grad_x_input:1", "ig:1",
                     "--batch-size", batch_size)  # fmt: skip
        records.append(check(module, tiny_datamodule(tiny_model_dir), args, []))
    rho = records[0]["rho"]
    assert len(rho["ig:6"]) == 6 and all(r == pytest.approx(1.0, abs=1e-6) for r in rho["ig:6"])
    assert all(-1.0 <= r <= 1.0 for r in rho["grad_x_input:1"])
    for name, values in rho.items():
        assert values == pytest.approx(records[1]["rho"][name], abs=1e-5)
    written = json.loads((tmp_path / "out" / "attribution_check.json").read_text())
    assert written["reference"] == "ig:6" and [r["candidate"] for r in written["summary"]] == list(rho)
    assert "| grad_x_input:1 |" in (tmp_path / "out" / "attribution_check.md").read_text()


def test_summary_difference_to_the_first_candidate():
    rows = summarise({"a": [0.1, 0.2, 0.3], "b": [0.1, 0.2, 0.3], "c": [0.6, 0.7, 0.8]})
    assert "diff" not in rows[0]
    assert rows[1]["diff"] == pytest.approx(0.0) and rows[1]["verdict"] == "no difference"
    assert rows[2]["diff"] == pytest.approx(0.5) and rows[2]["low"] > 0


@pytest.mark.parametrize("spec", ["ig", "ig:0", "occlusion:2", "ig:x", "grad_x_input:"])
def test_bad_candidates_name_the_spec(spec):
    with pytest.raises(ValueError, match=f"candidate '{spec}'"):
        parse_candidate(spec)


def test_bad_arguments_fail_before_loading(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--ckpt", str(tmp_path / "missing.ckpt"), "--dataset", "hwu64"])
    assert "missing.ckpt: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--ckpt", str(tmp_path), "--dataset", "hwu64", "--candidates", "lime:3"])
    assert "candidate 'lime:3'" in capsys.readouterr().err
