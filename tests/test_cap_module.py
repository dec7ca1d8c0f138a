import lightning as L
import pytest
import torch
import torch.nn.functional as F

from cap_lightning.callbacks import PriorCacheCallback
from cap_lightning.models import load_classifier
from cap_lightning.module import CapModule
from tests.helpers import CountingPrior, tiny_datamodule


def _trainer(**kw):
    base = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    base.update(kw)
    return L.Trainer(**base)


def test_prior_weight_zero_reproduces_plain_fine_tuning_bit_for_bit(tiny_model_dir, tmp_path):
    steps, lr = 4, 1e-2
    L.seed_everything(0)
    dm = tiny_datamodule(tiny_model_dir)
    module = CapModule(str(tiny_model_dir), prior_weight=0.0, lr=lr, weight_decay=0.0, warmup_fraction=0.0)
    cb = PriorCacheCallback(CountingPrior(), cache_dir=str(tmp_path))  # priors in the batch must not matter
    _trainer(max_steps=steps, callbacks=[cb]).fit(module, dm)

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


def test_aligned_training_changes_weights_and_logs(tiny_model_dir, tmp_path):
    dm = tiny_datamodule(tiny_model_dir)
    module = CapModule(str(tiny_model_dir), prior_weight=1.0, ig_steps=2, lr=1e-2)
    trainer = _trainer(max_steps=2, callbacks=[PriorCacheCallback(CountingPrior(), cache_dir=str(tmp_path))])
    trainer.fit(module, dm)
    assert "train/align_step" in trainer.callback_metrics
    assert torch.isfinite(trainer.callback_metrics["train/align_step"])


def test_prior_weight_without_priors_is_a_clear_error(tiny_model_dir):
    module = CapModule(str(tiny_model_dir), prior_weight=0.5)
    with pytest.raises(RuntimeError, match="add cap_lightning.PriorCacheCallback"):
        _trainer(max_steps=1).fit(module, tiny_datamodule(tiny_model_dir))


def test_num_labels_mismatch_is_caught_before_loading_weights(tiny_model_dir):
    module = CapModule(str(tiny_model_dir), num_labels=5, prior_weight=0.0)
    with pytest.raises(ValueError, match="num_labels=5 but the data has 2 labels"):
        _trainer(max_steps=1).fit(module, tiny_datamodule(tiny_model_dir))
    assert module.model is None


def test_test_stage_logs_accuracy_and_macro_f1(tiny_model_dir):
    module = CapModule(str(tiny_model_dir), prior_weight=0.0)
    results = _trainer().test(module, tiny_datamodule(tiny_model_dir))
    assert {"test/acc", "test/macro_f1"} <= set(results[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prior_loss": "l1"}, "prior_loss 'l1' is not one of"),
        ({"attribution": "lime"}, "attribution 'lime' is not one of"),
        ({"ig_steps": 0}, "ig_steps must be >= 1"),
        ({"prior_weight": -1.0}, "prior_weight must be >= 0"),
        ({"model_path": "./no/such/folder"}, "does not exist. Allowed: a short name"),
    ],
)
def test_bad_init_arguments(kwargs, match, tiny_model_dir):
    args = {"model_path": str(tiny_model_dir), **kwargs}
    with pytest.raises(ValueError, match=match):
        CapModule(**args)
