"""Teacher gating (docs/cap.md §2): with prior_mask='teacher_correct' the alignment uses only the rows whose teacher
ranks the gold label first; the gold ranks travel from the prior's diagnostics to the batch."""

import json

import pytest
import torch

from cap_lightning.losses import alignment_loss
from cap_lightning.module import CapModule
from cap_lightning.priors.callback import PriorCacheCallback, gold_ranks
from cap_lightning.teacher_gating import teacher_gate
from tests.helpers import CountingPrior, quiet_trainer, tiny_datamodule


class RankedPrior(CountingPrior):
    """A CountingPrior with teacher diagnostics: gold rank = text length mod 3 (so some rows are 0, some not)."""

    def diagnostics(self, texts, labels):
        return {"gold_rank": [len(t.split()) % 3 for t in texts], "gold_prob": [0.5] * len(texts)}


def test_gating_drops_exactly_the_rows_the_teacher_gets_wrong(tiny_model_dir):
    module = CapModule(str(tiny_model_dir), num_labels=2, prior_mask="teacher_correct", alignment_level="subword")
    mask = torch.tensor([[False, True, True, True], [False, True, True, False], [False, True, True, True]])
    prior = torch.tensor([[0.0, 1.0, 0.2, 0.5], [0.0, 0.3, 1.0, 0.0], [0.0, 0.9, 1.0, 0.1]])
    a = torch.randn(3, 4, requires_grad=True)
    batch = {"prior": prior, "word_index": torch.where(mask, 0, -1), "attention_mask": torch.ones(3, 4),
             "gold_rank": torch.tensor([0, 4, 0])}  # fmt: skip
    module.attribute = lambda b: a
    loss = module.alignment(batch)
    loss.backward()
    assert torch.equal(a.grad[1], torch.zeros(4))  # rank 4: left out
    assert (a.grad[0].abs().sum() > 0) and (a.grad[2].abs().sum() > 0)
    keep = torch.tensor([0, 2])
    torch.testing.assert_close(loss, alignment_loss("kl", a[keep], prior[keep], mask[keep]))
    assert teacher_gate(torch.tensor([0, 1, 0, 7]), "teacher_correct", 4).tolist() == [True, False, True, False]
    assert teacher_gate(torch.tensor([3]), "all", 1) is None
    with pytest.raises(ValueError, match="needs the teacher's gold-label rank"):
        teacher_gate(None, "teacher_correct", 4)


def test_gold_ranks_read_from_diagnostics(tmp_path):
    path = tmp_path / "diagnostics.json"
    assert gold_ranks(path, 3) is None
    path.write_text(json.dumps({"r2": [0.1, 0.2, 0.3]}))
    assert gold_ranks(path, 3) is None  # a prior without a teacher
    path.write_text(json.dumps({"ClassAwarePrior/gold_rank": [0, 2, 0], "LIMEPrior/r2": [1, 1, 1]}))
    assert gold_ranks(path, 3) == [0, 2, 0]  # a hybrid's CAP source
    path.write_text(json.dumps({"A/gold_rank": [0, 2, 0], "B/gold_rank": [1, 0, 0]}))
    assert gold_ranks(path, 3) == [1, 2, 0]  # kept only where every teacher is right
    path.write_text(json.dumps({"gold_rank": [0, 1]}))
    with pytest.raises(ValueError, match="3 non-negative integers"):
        gold_ranks(path, 3)


def test_gold_ranks_reach_the_batch_and_gate_training(tiny_model_dir, tmp_path):
    dm = tiny_datamodule(tiny_model_dir)
    callback = PriorCacheCallback(RankedPrior(), cache_dir=str(tmp_path))
    module = CapModule(str(tiny_model_dir), prior_weight=0.5, ig_steps=1, prior_mask="teacher_correct")
    trainer = quiet_trainer(callbacks=[callback], max_epochs=1)
    trainer.fit(module, dm)
    texts = dm.prior_inputs()[0]
    assert dm._train_gold_ranks == [len(t.split()) % 3 for t in texts]
    batch = next(iter(dm.train_dataloader()))
    assert batch["gold_rank"].tolist() == [len(texts[i].split()) % 3 for i in batch["index"]]
    expected = sum(len(t.split()) % 3 == 0 for t in texts) / len(texts)
    assert trainer.callback_metrics["train/teacher_kept_rows"] == pytest.approx(expected)  # every row
    assert 0 < expected < 1


def test_teacher_correct_without_gold_ranks_is_a_clear_error(tiny_model_dir, tmp_path):
    module = CapModule(str(tiny_model_dir), prior_weight=0.5, prior_mask="teacher_correct")
    callback = PriorCacheCallback(CountingPrior(), cache_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="carry no teacher gold-label ranks"):
        quiet_trainer(callbacks=[callback], max_steps=1).fit(module, tiny_datamodule(tiny_model_dir))
