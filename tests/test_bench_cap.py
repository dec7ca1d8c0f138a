"""The attribution-training benchmark's wiring on a tiny model: every variant timed in interleaved rounds, the
finite-difference gradients compared with the exact one, the one-sided scheme paired with the central one."""

import torch

from benchmarks.cap_bench import CENTRAL_OF, EXACT_OF, bench_cosines, bench_steps
from cap_lightning.tokens import batch_word_index
from tests.tiny import tiny_classifier, tiny_tokenizer

TEXTS = ["this movie is great fun", "bad film", "i love this very good film"]


def _inputs():
    model = tiny_classifier(3).train()
    with torch.no_grad():  # larger weights, so the alignment gradient is not vanishingly small
        for p in model.parameters():
            p.mul_(4.0)
    enc, wi = batch_word_index(tiny_tokenizer(), TEXTS, 16)
    batch = {**enc, "labels": torch.tensor([0, 2, 1]), "word_index": wi}
    return model, batch, torch.rand(wi.shape, generator=torch.Generator().manual_seed(0)), 0


def test_one_sided_variants_are_paired_with_the_central_ones_and_match_the_exact_gradient():
    model, batch, prior, pad_id = _inputs()
    names = ["expected_gradients_fd", "expected_gradients_osd", "ig_m8_fd", "ig_m8_osd"]
    steps = bench_steps(model, batch, prior, pad_id, repeats=2, names=names)
    assert set(steps["one_sided_to_central"]) == {"expected_gradients_osd", "ig_m8_osd"}
    for osd, cell in steps["one_sided_to_central"].items():
        osd_runs, fd_runs = steps["seconds"][osd]["runs"], steps["seconds"][CENTRAL_OF[osd]]["runs"]
        assert cell["runs"] == [a / b for a, b in zip(osd_runs, fd_runs)]  # paired per round, one-sided / central
    cosines = bench_cosines(model, batch, prior, pad_id, names)
    assert set(cosines) == set(names)
    for name, c in cosines.items():
        assert c["exact"] == EXACT_OF[name]
        assert c["cosine"] >= 0.99 and abs(c["loss_fd"] - c["loss_exact"]) <= 1e-5 * abs(c["loss_exact"])
