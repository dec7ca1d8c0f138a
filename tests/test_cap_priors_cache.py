import lightning as L
import pytest
import torch

from cap_lightning.priors.cache import MERGED, load_priors, save_priors
from cap_lightning.priors.callback import PriorCacheCallback
from cap_lightning.priors.ig import IGPrior
from tests.helpers import CountingPrior, tiny_datamodule

PRIORS = [torch.tensor([0.0, 1.0, 0.5]), torch.tensor([1.0]), torch.tensor([0.25, 1.0])]
N_WORDS = [3, 1, 2]


def test_round_trip(tmp_path):
    save_priors(tmp_path / "p.safetensors", PRIORS, "k", 0)
    back = load_priors(tmp_path / "p.safetensors", "k", 0, N_WORDS)
    for a, b in zip(PRIORS, back):
        torch.testing.assert_close(a, b)
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temp file


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupted_file_is_rejected_and_deleted(tmp_path, damage):
    path = tmp_path / "p.safetensors"
    save_priors(path, PRIORS, "k", 0)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) - 5]
    elif damage == "flip":
        raw[-3] ^= 0xFF  # inside the values: the header still parses, the checksum catches it
    else:
        raw = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(raw))
    assert load_priors(path, "k", 0, N_WORDS) is None
    assert not path.exists()


def test_wrong_key_rows_or_word_counts_are_rejected(tmp_path):
    path = tmp_path / "p.safetensors"
    for key, start, n_words in [("other", 0, N_WORDS), ("k", 3, N_WORDS), ("k", 0, [3, 1, 3])]:
        save_priors(path, PRIORS, "k", 0)
        assert load_priors(path, key, start, n_words) is None


def test_cache_key_changes_with_every_prior_argument():
    base = dict(model_path="minilm", steps=50, baseline="pad", max_length=128, fine_tune_epochs=0, fine_tune_lr=5e-5)
    changed = dict(model_path="smollm2-135m", steps=49, baseline="mask", max_length=64, fine_tune_epochs=3,
                   fine_tune_lr=1e-4, seed=1)  # fmt: skip
    key = IGPrior(**base).cache_key()
    for name, value in changed.items():
        assert IGPrior(**{**base, name: value}).cache_key() != key, name
    assert IGPrior(**base, internal_batch_size=7).cache_key() == key  # memory knob, same scores


def _fit(model_dir, cache, prior, **dm_kw):
    from cap_lightning.module import CapModule

    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
        callbacks=[PriorCacheCallback(prior, cache_dir=str(cache), chunk_size=4)],
    )  # fmt: skip
    dm = tiny_datamodule(model_dir, **dm_kw)
    trainer.fit(CapModule(str(model_dir), prior_weight=0.5, ig_steps=1), dm)
    return dm


def test_second_fit_reads_the_cache(tiny_model_dir, tmp_path):
    first = CountingPrior()
    dm = _fit(tiny_model_dir, tmp_path, first)
    n_train = len(dm.prior_inputs()[0])
    assert first.calls == n_train
    second = CountingPrior()
    _fit(tiny_model_dir, tmp_path, second)
    assert second.calls == 0
    other_split = CountingPrior()
    _fit(tiny_model_dir, tmp_path, other_split, seed=1)  # another validation carve-out = other training data
    assert other_split.calls > 0


def test_corrupted_cache_is_recomputed_not_used(tiny_model_dir, tmp_path):
    _fit(tiny_model_dir, tmp_path, CountingPrior())
    (merged,) = tmp_path.glob(f"*/{MERGED}")
    merged.write_bytes(merged.read_bytes()[:-7])
    again = CountingPrior()
    _fit(tiny_model_dir, tmp_path, again)
    assert again.calls > 0 and merged.is_file()


def test_interrupted_extraction_resumes_from_disk(tiny_model_dir, tmp_path):
    crashing = CountingPrior(fail_after=8)  # two chunks of 4 rows, then a crash
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tiny_model_dir, tmp_path, crashing)
    assert len(list(tmp_path.glob("*/chunk-*.safetensors"))) == 2
    resumed = CountingPrior()
    dm = _fit(tiny_model_dir, tmp_path, resumed)
    assert resumed.calls == len(dm.prior_inputs()[0]) - 8
    assert not list(tmp_path.glob("*/chunk-*.safetensors"))  # merged and cleaned up


def test_stale_chunks_are_removed_on_a_cache_hit(tiny_model_dir, tmp_path):
    _fit(tiny_model_dir, tmp_path, CountingPrior())
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    save_priors(entry / "chunk-00000099.safetensors", [torch.ones(2)], entry.name, 99)  # a crashed run's chunk
    (entry / ".priors.safetensors.x1y2.tmp").write_bytes(b"half a file")  # a killed writer's temporary file
    again = CountingPrior()
    _fit(tiny_model_dir, tmp_path, again)
    assert again.calls == 0
    assert sorted(p.name for p in entry.iterdir()) == [MERGED]


def test_priors_cover_only_what_the_student_reads(tiny_model_dir, teacher_dir, tmp_path, monkeypatch):
    """A long text: the CAP teacher only scores the words within the student's max_length tokens (bounded work),
    the other words get prior 0, and a warning counts the truncated texts."""
    import csv

    from cap_lightning.datasets import CustomData
    from cap_lightning.priors.cap import ClassAwarePrior
    from cap_lightning.priors.teacher import TeacherScorer
    from tests.tiny import WORDS

    long_text = " ".join(WORDS[i % len(WORDS)] for i in range(400))  # 400 words, one tiny-tokenizer token each
    rows = [("good fun film", "yes"), ("bad boring movie", "no")] * 4 + [(long_text, "yes")]
    for name in ("train", "validation", "test"):
        with open(tmp_path / f"{name}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([("text", "label"), *rows])
    scored: list[int] = []
    original = TeacherScorer.score

    def counting(self, texts, labels):
        scored.extend(len(t.split()) for t in texts)
        return original(self, texts, labels)

    monkeypatch.setattr(TeacherScorer, "score", counting)
    files = {f"{name}_file": str(tmp_path / f"{name}.csv") for name in ("train", "validation", "test")}
    custom = CustomData(**files)
    prior = ClassAwarePrior(teacher_path=str(teacher_dir), n_samples=8, instruction="classify", text_prefix="q",
                            answer_prefix="a", example_cache_dir=None)  # fmt: skip
    with pytest.warns(UserWarning, match=r"1 of \d+ training texts? (is|are) longer than the student's max_length=16"):
        dm = _fit(tiny_model_dir, tmp_path / "cache", prior, custom=custom, max_length=16)
    texts = dm.prior_inputs()[0]
    (i,) = [k for k, t in enumerate(texts) if t == long_text]
    seen = 16 - 2  # [CLS] + 14 words + [SEP]
    p = dm._train_priors[i]
    assert p.shape == (400,) and p[:seen].sum() > 0 and not p[seen:].any()
    # every variant the teacher scores is at most the visible words long; the long text costs at most n_samples
    # masks + its LOO rows over the visible words (+ the unmasked row), each 3-word text at most 2^3 masks
    assert max(scored) <= seen and len(scored) <= (8 + seen + 1) + 8 * 8


def test_dropping_a_corrupt_cache_file_warns_with_its_name(tmp_path):
    path = tmp_path / "p.safetensors"
    save_priors(path, PRIORS, "k", 0)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.warns(UserWarning, match=r"dropping .*p\.safetensors.*recomputed"):
        assert load_priors(path, "k", 0, N_WORDS) is None
    assert load_priors(path, "k", 0, N_WORDS) is None  # absent: nothing to say


def test_dropping_a_corrupt_adversarial_chunk_warns_with_its_name(tmp_path):
    from cap_lightning.adversarial.chunks import ChunkStore
    from cap_lightning.adversarial.format import AdversarialExample

    store = ChunkStore(tmp_path, {"what": "test"}, 4, 2)
    store.save(0, [AdversarialExample("a b", 0, "a", "test", index=0)])
    store.path(0).write_text("{not json")
    with pytest.warns(UserWarning, match=r"dropping .*chunk-00000\.jsonl.*recomputed"):
        assert store.load(0, lambda p: p) is None


def test_safetensors_files_do_not_depend_on_insertion_order(tmp_path):
    """safetensors writes ``__metadata__`` in hash-map order (it changes from one save to the next): identical
    results must still be byte-identical files."""
    import itertools

    from lmcore.tensor_files import save_tensors

    tensors = {"values": torch.arange(3.0), "offsets": torch.ones(2, dtype=torch.long)}
    meta = {"key": "k", "n": "2", "start": "0", "sha256": "abc"}
    files = set()
    for i, order in enumerate(itertools.islice(itertools.permutations(meta), 8)):
        path = tmp_path / f"{i}.safetensors"
        save_tensors(path, dict(reversed(tensors.items())) if i % 2 else tensors, {k: meta[k] for k in order})
        files.add(path.read_bytes())
    assert len(files) == 1
    header = files.pop()[8:200]
    assert header.index(b'"key"') < header.index(b'"n"') < header.index(b'"sha256"') < header.index(b'"start"')
    for name in ("a", "b"):
        save_priors(tmp_path / name, PRIORS, "k", 0)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert load_priors(tmp_path / "a", "k", 0, N_WORDS) is not None
