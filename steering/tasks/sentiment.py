"""Sentiment steering of generated continuations (the activation-addition benchmark) from SST-2.

Design decisions:
- A task a 135M model can do: continuing a movie review is within SmolLM2-135M's reach (unlike TruthfulQA, where it
  is at chance), and the sentiment of what it writes is measurable by a classifier (``continuations.py``), e.g. a
  MiniLM fine-tuned on SST-2 with ``cap_lightning`` and exported (``python -m cap_lightning.export``).
- Evaluation prompts: ``template`` around the first ``prompt_words`` words of each held-out sentence (SST-2
  ``test.tsv``, which is the labelled GLUE dev set; sentences of at least ``prompt_words + 2`` words, so the opening
  is never the whole review). Openings are mostly neutral ("it's a charming and ..." is the exception, not the rule);
  the comparison is paired per prompt, so an opening's own sentiment cancels in base-vs-steered differences. The
  held-out sentence's label is kept in ``meta`` for a per-label breakdown.
- Steering triples (x, y⁺, y⁻): x = ``template`` around the first ``pair_words`` words of one SST-2 ``train.tsv``
  sentence (label-balanced over rows; rows use disjoint training sentences). x carries real review text so GrAInS
  has sentiment-bearing tokens to attribute (its deltas come from masking prompt tokens; an instruction-only prompt
  would give every pair the same masked tokens).
  ``pairs="minimal"`` (the default, a measured choice: docs/grains.md §3.1) makes y⁺ and y⁻ one sentence with one
  evaluative word swapped for its antonym ("Overall, it was wonderful." / "... terrible."), a frame and an antonym
  pair drawn per row from ``FRAMES`` × ``ANTONYMS``: the contrast of activation addition ("Love" − "Hate") and CAA's
  paired completions, so a paired difference carries sentiment and nothing else. ``pairs="sentences"`` (the first
  design) takes a whole positive / negative training sentence each (unrelated content, length and topic as well):
  its CAA vector was not a direction (split-half cosine 0.07–0.27 at 100 triples, against 0.89–0.98 for minimal).
- Each row bundles one evaluation prompt with one training triple (``ContinuationExample``); the data module's seeded
  split decides which half a row serves (triple in the steering split, prompt in dev / test), so no evaluation
  prompt ever enters the steering set. Rows are in ``test.tsv`` order; the triples are drawn with ``seed``.
- SST-2 text is lower-cased and tokenised ("it 's a charming journey ."); ``detokenize`` rejoins clitics and
  punctuation and capitalises the first letter, so the LM sees ordinary prose.
- Text only; the chat template is not used (continuing a review is a completion task).
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path
from typing import Literal, get_args

from lmcore.choices import check_choice
from steering.tasks.types import ContinuationExample

TEMPLATE = "Movie review: {text}"
SentimentLabel = Literal["negative", "positive"]
PairStyle = Literal["minimal", "sentences"]
# (positive, negative) evaluative words of movie reviews, each usable after "is" / "was" / "felt".
ANTONYMS: tuple[tuple[str, str], ...] = (
    ("wonderful", "terrible"),
    ("great", "awful"),
    ("brilliant", "dreadful"),
    ("delightful", "tedious"),
    ("excellent", "poor"),
    ("beautiful", "ugly"),
    ("fascinating", "boring"),
    ("funny", "dull"),
    ("moving", "lifeless"),
    ("superb", "horrible"),
    ("charming", "annoying"),
    ("clever", "stupid"),
    ("enjoyable", "unbearable"),
    ("memorable", "forgettable"),
    ("fresh", "stale"),
    ("gripping", "tiresome"),
)
FRAMES: tuple[str, ...] = (
    "Overall, it was {}.",
    "I thought the film was {}.",
    "The acting is {}.",
    "The story is {}.",
    "Honestly, it felt {}.",
    "The whole movie is {}.",
)
SST2_LABELS: tuple[str, ...] = get_args(SentimentLabel)  # GLUE ids 0 / 1
_CLITIC = re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d)\b")
_BEFORE = re.compile(r" ([.,!?;:%)])")
_AFTER = re.compile(r"([($]) ")


def detokenize(text: str) -> str:
    """SST-2's tokenised, lower-cased text as prose: ``"it 's good ."`` → ``"It's good."``."""
    t = " ".join(text.replace("-lrb-", "(").replace("-rrb-", ")").split())
    t = _AFTER.sub(r"\1", _BEFORE.sub(r"\1", _CLITIC.sub(r"\1", t)))
    return t[:1].upper() + t[1:]


def _read_tsv(path: Path) -> list[tuple[str, str]]:
    """(sentence, label name) rows of an SST-2 TSV file."""
    if not path.is_file():
        raise FileNotFoundError(f"SST-2 file {path} does not exist (data_dir must hold SST-2/train.tsv, test.tsv)")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["sentence", "label"]:
            raise ValueError(f"{path}: expected the header 'sentence<TAB>label', got {header}")
        rows = []
        for i, row in enumerate(reader, start=2):
            if len(row) < 2 or row[1].strip() not in ("0", "1"):
                raise ValueError(f"{path} line {i}: expected a sentence and a 0/1 label, got {row}")
            rows.append((row[0].strip(), SST2_LABELS[int(row[1])]))
    return rows


def _sst2_dir(data_dir: str) -> Path:
    base = Path(data_dir)
    for cand in (base, base / "sst2"):
        if (cand / "SST-2").is_dir():
            return cand / "SST-2"
    raise FileNotFoundError(f"SST-2 not found under {base} (expected data_dir='../shared/data/sst2' holding SST-2/)")


def load_sentiment(
    tokenizer,
    data_dir: str,
    prompt_words: int = 4,
    pair_words: int = 12,
    min_words: int = 8,
    max_words: int = 40,
    template: str = TEMPLATE,
    seed: int = 0,
    prompt_label: str | None = None,
    pairs: str = "minimal",
) -> list[ContinuationExample]:
    """One ``ContinuationExample`` per held-out SST-2 sentence (``test.tsv`` order) with a training triple.

    Args:
        tokenizer: unused (every task loader takes it); the prompts are plain text.
        data_dir: the folder holding ``SST-2/`` (``../shared/data/sst2``).
        prompt_words: words of the held-out sentence that open the evaluation prompt (>= 1).
        pair_words: words of the training sentence in a steering prompt x (>= 1).
        min_words, max_words: length range (words) of the training sentences used as y⁺ / y⁻ and x.
        template: prompt with one ``{text}`` field, shared by evaluation and steering prompts.
        seed: draws the training triples.
        prompt_label: only held-out sentences of this label (``SentimentLabel``) open evaluation prompts,
            e.g. ``negative`` to steer negative reviews toward positive, where the base model leaves headroom (None:
            every sentence).
        pairs: ``minimal`` (y⁺ / y⁻ = one frame with an antonym pair, x still a training review's opening) or
            ``sentences`` (y⁺ / y⁻ = whole positive / negative training sentences); ``PairStyle``.

    Raises:
        ValueError: a bad option, or too few training sentences for the rows; FileNotFoundError: no SST-2 files.
    """
    if prompt_words < 1 or pair_words < 1:
        raise ValueError(f"prompt_words {prompt_words} and pair_words {pair_words} must be >= 1")
    if not 1 <= min_words <= max_words:
        raise ValueError(f"need 1 <= min_words ({min_words}) <= max_words ({max_words})")
    if template.count("{text}") != 1:
        raise ValueError(f"template {template!r} must hold exactly one '{{text}}' field")
    if prompt_label is not None:
        check_choice("prompt_label", prompt_label, SentimentLabel)
    check_choice("pairs", pairs, PairStyle)
    root = _sst2_dir(data_dir)
    held_out = [(i, s, y) for i, (s, y) in enumerate(_read_tsv(root / "test.tsv"))
                if len(s.split()) >= prompt_words + 2 and prompt_label in (None, y)]  # fmt: skip
    train = [(i, s, y) for i, (s, y) in enumerate(_read_tsv(root / "train.tsv"))
             if min_words <= len(s.split()) <= max_words]  # fmt: skip
    rng = random.Random(seed)
    rng.shuffle(train)
    pos = [r for r in train if r[2] == "positive"]
    neg = [r for r in train if r[2] == "negative"]
    n = len(held_out)
    if min(len(pos), len(neg)) < 2 * n:
        raise ValueError(f"{root}/train.tsv has {len(pos)} positive and {len(neg)} negative sentences of "
                         f"{min_words}..{max_words} words; {n} rows need {2 * n} of each")  # fmt: skip
    out = []
    for j, (row, sentence, label) in enumerate(held_out):
        good, bad = pos[2 * j], neg[2 * j]
        context = (pos if j % 2 == 0 else neg)[2 * j + 1]  # label-balanced, never y⁺ or y⁻ of any row
        opening = detokenize(" ".join(sentence.split()[:prompt_words]))
        pair_prompt = template.format(text=detokenize(" ".join(context[1].split()[:pair_words])))
        meta = {"row": row, "label": label, "opening": opening, "pair_rows": [context[0], good[0], bad[0]]}
        if pairs == "minimal":
            frame, (up, down) = rng.choice(FRAMES), rng.choice(ANTONYMS)
            preferred, dispreferred = " " + frame.format(up), " " + frame.format(down)
            meta["pair_rows"] = [context[0]]
        else:
            preferred, dispreferred = " " + detokenize(good[1]), " " + detokenize(bad[1])
        out.append(ContinuationExample(template.format(text=opening), pair_prompt, preferred, dispreferred, meta))
    if not out:
        raise ValueError(f"{root}/test.tsv has no sentence of at least {prompt_words + 2} words")
    return out
