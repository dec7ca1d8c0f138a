"""cap_lightning.attribution_check: ρ of cheap self-attributions with the model's converged IG."""

import json

import pytest
import torch

from cap_lightning.attribution_check import (
    Candidate,
    check,
    completeness_errors,
    parse_args,
    parse_candidate,
    summarise,
)
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


def test_candidates_with_a_quadrature():
    assert parse_candidate("ig:4") == Candidate("ig", 4, None)
    assert parse_candidate("ig:4:gausslegendre") == Candidate("ig", 4, "gausslegendre")
    assert parse_candidate("ig:4:gausslegendre").name == "ig:4:gausslegendre" and Candidate("ig", 4).name == "ig:4"


def test_completeness_errors_are_relative_to_the_endpoint_gap():
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.5, 0.0, 0.0]])
    gap = torch.tensor([2.0, -1.0])
    assert completeness_errors(scores, gap).tolist() == pytest.approx([0.0, 1.5])


def test_completeness_falls_with_steps_and_the_quadrature_is_the_one_asked(tmp_path, tiny_model_dir, module):
    args = _args(tmp_path, tiny_model_dir, "--candidates", "ig:1", "ig:64", "ig:2:gausslegendre", "ig:2:middle",
                 "expected_gradients:1", "--reference-steps", "64")  # fmt: skip
    record = check(module, tiny_datamodule(tiny_model_dir), args, [])
    errors = record["completeness_errors"]
    median = {r["candidate"]: r.get("completeness_median") for r in record["summary"]}
    assert "expected_gradients:1" not in errors and median["expected_gradients:1"] is None  # no path from r
    assert median["ig:64"] < 1e-2 and median["ig:64"] < median["ig:1"]
    assert errors["ig:64"] == pytest.approx(errors["reference"], abs=1e-6)  # the reference is ig:64, midpoint
    assert errors["ig:2:gausslegendre"] != pytest.approx(errors["ig:2:middle"], abs=1e-6)
    assert "completeness error" in (tmp_path / "out" / "attribution_check.md").read_text()


def test_endpoint_gap_is_what_a_converged_ig_sums_to(tiny_model_dir, module):
    dm = tiny_datamodule(tiny_model_dir)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    torch.manual_seed(0)
    with torch.no_grad():  # the tiny model's init (std 0.02) is close to constant: make F vary along the path
        for p in module.model.parameters():
            p.normal_(0.0, 0.3) if p.dim() > 1 else None
    module.model.train()
    gap = module.endpoint_gap(batch)
    assert module.model.training  # the mode is restored
    total = module.attribute(batch, create_graph=False, steps=256, method="ig", quadrature="gausslegendre").sum(-1)
    assert gap.shape == (4,) and gap.abs().min() > 1e-2
    assert total.detach() == pytest.approx(gap, rel=1e-3)


@pytest.mark.parametrize(
    "spec", ["ig", "ig:0", "occlusion:2", "ig:x", "grad_x_input:", "ig:2:simpson", "grad_x_input:1:middle", "ig:2:"]
)
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
