"""Exploratory topic check of a `make steer-sentiment` run (README, "Sentiment steering"): per tested setting, the
share of continuations that mention a film word, and Δ p_positive (steered − base, paired bootstrap 95 %) over the
prompts whose base and steered continuations both do.

    python scripts/sentiment_on_topic.py runs/steer/smollm2_sentiment_matched_kl
"""

from __future__ import annotations

import glob
import json
import random
import re
import statistics
import sys

FILM = re.compile(
    r"\b(film|films|movie|movies|story|stories|character|characters|actor|actors|actress|acting|director|plot|cinema|"
    r"scene|scenes|performance|performances|comedy|drama|script|screen|audience|thriller|documentary|cast|picture|"
    r"sequel|screenplay|hollywood)\b",
    re.I,
)


def main(folder: str) -> None:
    records = {f: json.load(open(f)) for f in sorted(glob.glob(f"{folder}/seed*/*.test.json"))}
    bases = {f.split("/")[-2]: r for f, r in records.items() if "base/p_positive" in r["per_example"]}
    on_base = [bool(FILM.search(c["base"])) for r in bases.values() for c in r["continuations"].values()]
    print(f"base: on topic {statistics.fmean(on_base):.2f} (n {len(on_base)})")
    rng = random.Random(0)
    by_setting: dict[str, list[tuple[bool, bool, float]]] = {}
    for f, r in records.items():
        base = bases[f.split("/")[-2]]
        b, s = base["per_example"]["base/p_positive"], r["per_example"]["steered/p_positive"]
        if b["index"] != s["index"]:
            raise ValueError(f"{f}: tested on other prompts than its seed's base record")
        for j, (vb, vs) in enumerate(zip(b["value"], s["value"])):
            on_s = bool(FILM.search(r["continuations"][str(j)]["steered"]))
            on_b = bool(FILM.search(base["continuations"][str(j)]["base"]))
            by_setting.setdefault(f.split("/")[-1].removesuffix(".test.json"), []).append((on_s, on_b, vs - vb))
    for name, rows in sorted(by_setting.items()):
        both = [d for on_s, on_b, d in rows if on_s and on_b]
        boots = sorted(statistics.fmean(rng.choices(both, k=len(both))) for _ in range(2000))
        print(
            f"{name}: on topic {statistics.fmean(o for o, _, _ in rows):.2f} (n {len(rows)}); both on topic "
            f"Δ {statistics.fmean(both):+.3f} [{boots[50]:+.3f}, {boots[1949]:+.3f}] (n {len(both)})"
        )


if __name__ == "__main__":
    main(sys.argv[1])
