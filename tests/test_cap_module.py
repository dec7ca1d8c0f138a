import lightning as L
import pytest
import torch
import torch.nn.functional as F

from cap_lightning.losses import alignment_loss
from cap_lightning.module import CapModule
from cap_lightning.priors.callback import PriorCacheCallback
from lmcore.models import load_classifier
from tests.helpers import CountingPrior, quiet_trainer, tiny_datamodule


def test_attribution_runs_without_dropout_and_restores_train_mode(tiny_model_dir):
    module = CapModule(str(tiny_model_dir), num_labels=2, ig_steps=2)
    module.configure_model()
    module.model.config.hidden_dropout_prob = 0.5
    for m in module.model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
    dm = tiny_datamodule(tiny_model_dir)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    module.model.train()
    a, b = module.attribute(batch), module.attribute(batch)
    torch.testing.assert_close(a, b)  # deterministic: dropout was off
    assert module.model.training


@pytest.mark.parametrize(
    "mode, chunk",
    [
        ("finite_difference", None),
        ("exact", 2),
        ("finite_difference", 2),
        ("one_sided_difference", None),
        ("one_sided_difference", 2),
    ],
)
def test_backward_of_attribute_matches_exact_under_dropout(tiny_model_dir, mode, chunk):
    """A finite-difference backward and a checkpointed chunk's recomputation run after ``attribute`` restored train
    mode: they must still see eval mode (no dropout), and give the one-shot exact gradient."""
    dm = tiny_datamodule(tiny_model_dir)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    prior = torch.rand(batch["input_ids"].shape, generator=torch.Generator().manual_seed(0))
    grads = []
    for grad, chunk_size in (("exact", None), (mode, chunk)):
        module = CapModule(str(tiny_model_dir), num_labels=2, ig_steps=3, ig_chunk_size=chunk_size,
                           attribution_grad=grad)  # fmt: skip
        module.configure_model()
        for m in module.model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.5
        module.model.train()
        content = batch["word_index"] >= 0
        with torch.no_grad():  # larger weights, so the attribution moves measurably with them
            for p in module.model.parameters():
                p.mul_(4.0)
        alignment_loss("mse", module.attribute(batch), prior, content).backward()
        assert module.model.training
        grads.append(torch.cat([torch.zeros(p.numel()) if p.grad is None else p.grad.flatten()
                                for p in module.model.parameters()]))  # fmt: skip
    assert grads[0].norm() > 0
    assert F.cosine_similarity(grads[0].double(), grads[1].double(), 0) > 0.99


def test_prior_weight_zero_reproduces_plain_fine_tuning_bit_for_bit(tiny_model_dir, tmp_path):
    steps, lr = 4, 1e-2
    L.seed_everything(0)
    dm = tiny_datamodule(tiny_model_dir)
    module = CapModule(str(tiny_model_dir), prior_weight=0.0, lr=lr, weight_decay=0.0, warmup_fraction=0.0)
    cb = PriorCacheCallback(CountingPrior(), cache_dir=str(tmp_path))  # priors in the batch must not matter
    quiet_trainer(max_steps=steps, callbacks=[cb]).fit(module, dm)

    L.seed_everything(0)
    ref_dm = tiny_datamodule(tiny_model_dir)
    ref_dm.setup("fit")
    model = load_classifier(str(tiny_model_dir), 2).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (steps - s) / steps))
    batches = iter(ref_dm.train_dataloader())
    for _ in range(steps):
        batch = next(batches)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = F.cross_entropy(logits, batch["labels"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    trained = dict(module.model.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, trained[name]), name


def test_aligned_training_differs_from_plain_training_and_logs(tiny_model_dir, tmp_path):
    weights = []
    for prior_weight in (0.0, 1.0):
        L.seed_everything(0)
        module = CapModule(str(tiny_model_dir), prior_weight=prior_weight, ig_steps=2, lr=1e-2)
        trainer = quiet_trainer(max_steps=2, callbacks=[PriorCacheCallback(CountingPrior(), cache_dir=str(tmp_path))])
        trainer.fit(module, tiny_datamodule(tiny_model_dir))
        weights.append(module.model.bert.encoder.layer[0].attention.self.query.weight.detach().clone())
    assert torch.isfinite(trainer.callback_metrics["train/align_step"])
    assert not torch.equal(weights[0], weights[1])  # the alignment term reached the encoder
    results = trainer.test(module, trainer.datamodule)[0]  # priors attached: agreement is reported too
    assert {"test/comp_aopc", "test/suff_aopc", "test/soft_comp", "test/prior_spearman"} <= set(results)
    assert -1 <= results["test/prior_spearman"] <= 1 and 0 <= results["test/prior_topk_iou"] <= 1


def test_prior_weight_without_priors_is_a_clear_error(tiny_model_dir):
    module = CapModule(str(tiny_model_dir), prior_weight=0.5)
    with pytest.raises(RuntimeError, match="add cap_lightning.PriorCacheCallback"):
        quiet_trainer(max_steps=1).fit(module, tiny_datamodule(tiny_model_dir))


def test_num_labels_mismatch_is_caught_before_loading_weights(tiny_model_dir):
    module = CapModule(str(tiny_model_dir), num_labels=5, prior_weight=0.0)
    with pytest.raises(ValueError, match="num_labels=5 but the data has 2 labels"):
        quiet_trainer(max_steps=1).fit(module, tiny_datamodule(tiny_model_dir))
    assert module.model is None


def test_test_stage_logs_accuracy_and_macro_f1(tiny_model_dir):
    module = CapModule(str(tiny_model_dir), prior_weight=0.0)
    results = quiet_trainer().test(module, tiny_datamodule(tiny_model_dir))
    assert {"test/acc", "test/macro_f1", "test/comp@1", "test/suff@50", "test/comp_aopc"} <= set(results[0])
    assert "test/prior_spearman" not in results[0]  # no priors attached, no agreement
    module = CapModule(str(tiny_model_dir), prior_weight=0.0, faithfulness=False)
    assert "test/comp_aopc" not in quiet_trainer().test(module, tiny_datamodule(tiny_model_dir))[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prior_loss": "l1"}, "prior_loss 'l1' is not one of"),
        ({"attribution": "lime"}, "attribution 'lime' is not one of"),
        ({"ig_steps": 0}, "ig_steps must be >= 1"),
        ({"alignment_level": "token"}, "alignment_level 'token' is not one of"),
        ({"prior_mask": "correct"}, "prior_mask 'correct' is not one of"),
        ({"attribution_grad": "jvp"}, "attribution_grad 'jvp' is not one of"),
        ({"prior_weight": -1.0}, "prior_weight must be >= 0"),
        ({"model_path": "./no/such/folder"}, "does not exist. Allowed: a short name"),
    ],
)
def test_bad_init_arguments(kwargs, match, tiny_model_dir):
    args = {"model_path": str(tiny_model_dir), **kwargs}
    with pytest.raises(ValueError, match=match):
        CapModule(**args)


def test_prior_weight_warms_up_linearly():
    module = CapModule("minilm", num_labels=2, prior_weight=0.4, prior_warmup_steps=4)

    class _Trainer:
        global_step = 0

    module._trainer = _Trainer()
    weights = []
    for step in range(6):
        _Trainer.global_step = step
        weights.append(module.current_prior_weight())
    assert weights == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


class _HalfZeroPrior(CountingPrior):
    """All-zero priors for the texts with an even word count (relu of a non-positive surrogate)."""

    def __call__(self, texts, labels):
        return [p * (len(t.split()) % 2) for p, t in zip(super().__call__(texts, labels), texts)]


def test_the_share_of_all_zero_prior_rows_is_logged(tiny_model_dir, tmp_path):
    dm = tiny_datamodule(tiny_model_dir)
    module = CapModule(str(tiny_model_dir), prior_weight=0.5, ig_steps=1)
    trainer = quiet_trainer(max_epochs=1, callbacks=[PriorCacheCallback(_HalfZeroPrior(), cache_dir=str(tmp_path))])
    trainer.fit(module, dm)
    texts = dm.prior_inputs()[0]
    expected = sum(len(t.split()) % 2 == 0 for t in texts) / len(texts)
    assert 0 < expected < 1
    assert trainer.callback_metrics["train/zero_prior_rows"] == pytest.approx(expected)
    assert torch.isfinite(trainer.callback_metrics["train/align_epoch"])
