"""Stub ``flair.models``: ``SequenceTagger.load`` raises."""

from flair.data import FlairUnavailableError


class SequenceTagger:
    def __init__(self, *args, **kwargs) -> None:
        raise FlairUnavailableError("flair.models.SequenceTagger")

    @classmethod
    def load(cls, *args, **kwargs):
        raise FlairUnavailableError(f"flair.models.SequenceTagger.load{args!r}")
