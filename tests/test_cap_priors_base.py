import inspect

import pytest
import torch

from cap_lightning.priors import AttributionPrior, ClassAwarePrior, HybridPrior, IGPrior, LIMEPrior


def _priors(teacher_dir):
    cap = ClassAwarePrior(str(teacher_dir), instruction="i", text_prefix="q", answer_prefix="a")
    return [IGPrior("org/reference"), LIMEPrior("org/reference"), cap, HybridPrior([cap, IGPrior("org/reference")])]


def test_config_is_every_init_argument_but_the_runtime_ones(teacher_dir):
    for prior in _priors(teacher_dir):
        params = set(inspect.signature(type(prior).__init__).parameters) - {"self"}
        always = params - set(prior.runtime_args) - set(prior.conditional_args)
        assert always <= set(prior.config()) <= params - set(prior.runtime_args), type(prior).__name__
        for name in set(prior.config()) & params - {"sources"}:
            assert prior.config()[name] == getattr(prior, name)


def test_runtime_arguments_never_change_the_cache_key(teacher_dir, tmp_path):
    changes = {"batch_size": 3, "internal_batch_size": 5, "max_tokens": 17, "example_cache_dir": str(tmp_path),
               "reference_cache_dir": str(tmp_path / "refs")}  # fmt: skip
    for prior in _priors(teacher_dir):
        cls, kwargs = type(prior), {}
        for name in prior.runtime_args:
            kwargs[name] = changes[name]
        args = {n: getattr(prior, n) for n in inspect.signature(cls.__init__).parameters if n != "self"}
        assert cls(**{**args, **kwargs}).cache_key() == prior.cache_key(), cls.__name__


def test_hybrid_key_follows_its_sources(teacher_dir):
    a = HybridPrior([IGPrior("org/reference")])
    assert a.config()["sources"] == [IGPrior("org/reference").cache_key()]
    assert a.cache_key() != HybridPrior([IGPrior("org/reference", steps=3)]).cache_key()


class _Doubled(IGPrior):
    pass


class _Forgetful(AttributionPrior):
    def __init__(self, width: int = 3) -> None:
        self.other = width

    def __call__(self, texts, labels):
        return [torch.zeros(len(t.split())) for t in texts]


def test_a_subclass_has_its_own_key_and_unstored_arguments_are_an_error():
    assert _Doubled("org/reference").cache_key() != IGPrior("org/reference").cache_key()
    with pytest.raises(TypeError, match=r"\['width'\] are not kept as attributes"):
        _Forgetful().cache_key()
