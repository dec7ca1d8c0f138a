"""Stub ``flair.data``: ``Sentence`` and ``Tokenizer`` exist for imports and raise when used."""


class FlairUnavailableError(RuntimeError):
    """Raised when code tries to use flair; the cap-lightning stub replaces the real package."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} needs the real flair package (POS/NER tagging), which cannot be installed beside transformers 5; "
            "this environment has the import-only flair stub from third_party/flair_stub. Use a recipe without "
            "flair-based constraints (deepwordbug, pwws, pruthi, input_reduction)."
        )


class Sentence:
    def __init__(self, *args, **kwargs) -> None:
        raise FlairUnavailableError("flair.data.Sentence")


class Tokenizer:
    def __init__(self, *args, **kwargs) -> None:
        raise FlairUnavailableError("flair.data.Tokenizer")
