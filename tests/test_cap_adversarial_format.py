"""The attacked-split file format (cap_lightning.adversarial.format): round trip, atomic writes, errors by line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cap_lightning.adversarial.format import AdversarialExample, read_adversarial_jsonl, write_adversarial_jsonl

FIXTURES = Path(__file__).parent / "fixtures"

ADV_ROWS = [
    AdversarialExample("hwllo", 0, "hello", "deepwordbug", queries=12, index=0),
    AdversarialExample("bye", 1, "bye", "pwws", status="failed", queries=40, index=3),
    AdversarialExample("thanks, card payment ✓", 2, "thanks", "llm_keyword_injection", status="skipped"),
]


def test_adversarial_round_trip_and_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "adv.jsonl"
    write_adversarial_jsonl(path, ADV_ROWS)
    assert read_adversarial_jsonl(path) == ADV_ROWS
    write_adversarial_jsonl(path, ADV_ROWS[:1])  # overwrite in place
    assert read_adversarial_jsonl(str(path)) == ADV_ROWS[:1]
    assert [p.name for p in path.parent.iterdir()] == ["adv.jsonl"]  # no temp files left


def test_adversarial_failed_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "adv.jsonl"
    write_adversarial_jsonl(path, ADV_ROWS)
    with pytest.raises(TypeError, match="expected AdversarialExample rows, got dict"):
        write_adversarial_jsonl(path, [ADV_ROWS[0], {"text": "x"}])  # type: ignore[list-item]
    assert read_adversarial_jsonl(path) == ADV_ROWS
    assert [p.name for p in tmp_path.iterdir()] == ["adv.jsonl"]


def test_adversarial_fixture_uses_defaults() -> None:
    rows = read_adversarial_jsonl(FIXTURES / "adversarial_tiny.jsonl")
    assert len(rows) == 3
    assert rows[2].status == "successful" and rows[2].queries is None and rows[2].index is None


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_adversarial_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"text": "a", "label": 0, "original_text": "a", "recipe": "pwws"})
    path = _write_lines(tmp_path / "bad.jsonl", [good, "", good, "{not json"])
    with pytest.raises(ValueError, match=r"bad\.jsonl:4: malformed JSON"):
        read_adversarial_jsonl(path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"text": "a", "label": 0, "recipe": "pwws"}, r"missing required key\(s\) \['original_text'\]"),
        ({"text": "a", "label": "x", "original_text": "a", "recipe": "pwws"}, "label must be an integer id"),
        ({"text": "a", "label": 0, "original_text": "a", "recipe": "pwws", "status": "won"}, "status must be one of"),
        ({"text": "a", "label": 0, "original_text": "a", "recipe": "pwws", "queries": 1.5}, "queries must be"),
        (["a", 0], "expected a JSON object, got list"),
    ],
)
def test_adversarial_bad_record_names_line(tmp_path: Path, record: object, message: str) -> None:
    good = json.dumps({"text": "a", "label": 0, "original_text": "a", "recipe": "pwws"})
    path = _write_lines(tmp_path / "bad.jsonl", [good, json.dumps(record)])
    with pytest.raises(ValueError, match=rf"bad\.jsonl:2: .*{message}"):
        read_adversarial_jsonl(path)


def test_adversarial_missing_file_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jsonl.*produced by the adversarial generation command"):
        read_adversarial_jsonl(tmp_path / "nope.jsonl")
