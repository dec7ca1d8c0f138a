"""A user's own contrastive data as a JSONL or CSV file: ``question``, ``preferred``, ``dispreferred`` columns.

Design decisions: optional ``correct`` / ``incorrect`` columns (lists in JSONL, ``;``-separated in CSV) add MC1/MC2
targets; without them the only target is ``binary`` (preferred vs dispreferred). Missing columns are a
``ValueError`` naming the file, the missing and the present columns, raised before any model is loaded; so is an
empty (or whitespace) preferred / dispreferred answer, naming the row. Rows whose two answers are identical carry no
contrast: they are skipped, with one warning counting them.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

from steering.tasks.prompts import format_answer, format_prompt
from steering.tasks.types import MCExample

REQUIRED = ("question", "preferred", "dispreferred")


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8-sig", newline="") as f:
            return list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
    raise ValueError(f"pairs file {path} has suffix {path.suffix!r}; allowed: ['.jsonl', '.csv', '.tsv']")


def _list(value) -> list[str]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, list) else str(value).split(";")
    return list(dict.fromkeys(str(a).strip() for a in items if str(a).strip()))


def load_pairs_file(path: str, tokenizer, chat_template: bool = False) -> list[MCExample]:
    """Examples from a pairs file (see module docstring), in file order."""
    path = Path(path)
    rows = _rows(path)
    if rows:
        missing = [c for c in REQUIRED if c not in rows[0]]
        if missing:
            raise ValueError(f"{path} is missing columns {missing}; has {sorted(rows[0])}, needs {list(REQUIRED)}")
    out, same = [], []
    for i, r in enumerate(rows):
        good, bad = str(r["preferred"] or "").strip(), str(r["dispreferred"] or "").strip()
        for name, value in (("preferred", good), ("dispreferred", bad)):
            if not value:
                raise ValueError(
                    f"{path}: row {i} has an empty {name} answer ({r[name]!r}): every row needs "
                    "non-empty preferred and dispreferred answers; fill it in or drop the row"
                )
        if good == bad:
            same.append(i)
            continue
        true = list(dict.fromkeys([good, *_list(r.get("correct"))]))
        false = [a for a in dict.fromkeys([bad, *_list(r.get("incorrect"))]) if a not in true]
        raw = true + false
        idx = {a: j for j, a in enumerate(raw)}
        targets = {"binary": ((idx[good],), (idx[bad],))}
        if len(raw) > 2:
            targets["mc1"] = ((idx[good],), tuple(idx[a] for a in false))
            targets["mc2"] = (tuple(idx[a] for a in true), tuple(idx[a] for a in false))
        choices = tuple(format_answer(a, chat_template) for a in raw)
        prompt = format_prompt(tokenizer, str(r["question"]), chat_template)
        out.append(MCExample(prompt, choices, targets, (idx[good], idx[bad]), meta={"row": i}))
    if same:
        warnings.warn(f"{path}: skipped {len(same)} of {len(rows)} rows (rows {same}) whose preferred and "
                      "dispreferred answers are identical: their contrast is 0, so they carry no steering signal",
                      stacklevel=2)  # fmt: skip
    return out
