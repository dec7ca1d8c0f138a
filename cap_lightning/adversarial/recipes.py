"""TextAttack recipe names, what each needs, and which run offline here (docs/environment.md §6.3).

Design decisions:
- A recipe is known by a short lowercase name (``deepwordbug``, ``pwws``, ...) mapped to its TextAttack class.
  The registry is plain data: validating a name imports nothing, so a typo fails in milliseconds, before textattack,
  a dataset or a model loads.
- ``offline`` records what was verified on the project machine. A known recipe that needs downloads fails with a
  :class:`RecipeUnavailableError` naming exactly what is missing (embeddings, TF-Hub USE, a hub MLM, a flair tagger),
  unless the caller passes ``allow_downloads=True`` (a machine with internet and real flair).
- ``nltk`` lists the NLTK data a recipe reads, checked against the project-local ``nltk_data/`` before work starts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RecipeSpec:
    """One TextAttack recipe.

    Attributes:
        class_name: class in ``textattack.attack_recipes``.
        offline: runs on the project machine with only the project's NLTK data and the flair stub.
        nltk: NLTK resources it reads (keys of ``environment.NLTK_RESOURCES``).
        missing: for recipes that do not run offline, what they would download or lack.
        kind: ``untargeted`` (flip the prediction) or ``input_reduction`` (shrink the input, keep the prediction).
    """

    class_name: str
    offline: bool
    nltk: tuple[str, ...] = ("stopwords",)
    missing: str = ""
    kind: str = "untargeted"


_EMB = "counter-fitted word embeddings (paragramcf) from textattack.s3.amazonaws.com"
_USE = "the Universal Sentence Encoder from TF-Hub (tensorflow_hub)"
_GLOVE = "GloVe embeddings from textattack.s3.amazonaws.com"

RECIPES: dict[str, RecipeSpec] = {
    "deepwordbug": RecipeSpec("DeepWordBugGao2018", offline=True),
    "pwws": RecipeSpec("PWWSRen2019", offline=True, nltk=("stopwords", "wordnet")),
    "pruthi": RecipeSpec("Pruthi2019", offline=True),
    "input_reduction": RecipeSpec("InputReductionFeng2018", offline=True, kind="input_reduction"),
    "textfooler": RecipeSpec("TextFoolerJin2019", offline=False, missing=f"{_EMB} and {_USE}"),
    "textbugger": RecipeSpec(
        "TextBuggerLi2018",
        offline=False,
        missing=f"textattack/shared/intentional_homoglyphs.txt (absent from the 0.3.11 wheel), {_GLOVE} and {_USE}",
    ),
    "bae": RecipeSpec(
        "BAEGarg2019", offline=False, missing=f"the masked LM 'bert-base-uncased' from the HF hub and {_USE}"
    ),
    "bert_attack": RecipeSpec("BERTAttackLi2020", offline=False, missing="the masked LM 'bert-base-uncased' (HF hub)"),
    "checklist": RecipeSpec(
        "CheckList2020", offline=False, missing="flair's 'ner-english' tagger (real flair; only a stub is installed)"
    ),
    "hotflip": RecipeSpec(
        "HotFlipEbrahimi2017",
        offline=False,
        missing=f"{_EMB}, flair's POS tagger, and a word-level gradient model (BERT WordPiece is unsupported)",
    ),
    "alzantot": RecipeSpec("GeneticAlgorithmAlzantot2018", offline=False, missing=f"{_EMB} and the Google 1B LM"),
    "faster_alzantot": RecipeSpec("FasterGeneticAlgorithmJia2019", offline=False, missing=f"{_EMB} and the 1B LM"),
    "iga": RecipeSpec("IGAWang2019", offline=False, missing=_EMB),
    "kuleshov": RecipeSpec("Kuleshov2017", offline=False, missing=f"{_EMB}, {_USE} and GPT-2 (HF hub)"),
    "a2t": RecipeSpec("A2TYoo2021", offline=False, missing=f"{_EMB}, flair's POS tagger and a sentence-BERT model"),
    "clare": RecipeSpec("CLARE2020", offline=False, missing=f"'distilroberta-base' (HF hub) and {_USE}"),
    "pso": RecipeSpec("PSOZang2020", offline=False, missing="HowNet sememe data (OpenHowNet download)"),
}

OFFLINE_RECIPES: tuple[str, ...] = tuple(name for name, spec in RECIPES.items() if spec.offline)


class RecipeUnavailableError(RuntimeError):
    """A known recipe that cannot run here (it needs downloads); the message names what is missing."""


def check_recipe(name: str, allow_downloads: bool = False) -> RecipeSpec:
    """Validate a recipe name and return its spec; nothing is imported or loaded.

    Args:
        name: short recipe name (case-insensitive; ``-`` and ``_`` are equivalent).
        allow_downloads: accept recipes that need downloads (a machine with internet and the real flair).

    Raises:
        ValueError: unknown name; the message lists every known and every offline recipe.
        RecipeUnavailableError: known recipe that needs downloads and ``allow_downloads`` is False.
    """
    key = canonical_recipe(name)
    if key not in RECIPES:
        raise ValueError(
            f"recipe {name!r} does not exist. Offline recipes: {list(OFFLINE_RECIPES)}; "
            f"all known recipes: {sorted(RECIPES)}"
        )
    spec = RECIPES[key]
    if not spec.offline and not allow_downloads:
        raise RecipeUnavailableError(
            f"recipe {key!r} ({spec.class_name}) does not run offline: it needs {spec.missing}. "
            f"Use one of {list(OFFLINE_RECIPES)}, or pass allow_downloads=True (--allow_downloads) on a machine "
            "that can download them."
        )
    return spec


def canonical_recipe(name: str) -> str:
    """``"DeepWordBug"`` → ``"deepwordbug"``, ``"input-reduction"`` → ``"input_reduction"``."""
    return str(name).strip().lower().replace("-", "_")
