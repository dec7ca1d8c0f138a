"""A second, independent judge for a `make steer-sentiment` run: VADER (a sentiment lexicon with rules, no model)
re-scores every saved test continuation, and the matched-KL report is rebuilt from the re-scored records.

    python scripts/sentiment_second_judge.py runs/steer/smollm2_sentiment_matched_kl_v3 \\
        runs/steer/smollm2_sentiment_vader

(``vaderSentiment`` comes with the ``dev`` extra, which ``make install`` installs.)

The settings stay those chosen on dev with the run's own judge (the SST-2 MiniLM); only the test continuations are
re-scored, so a gain that exists only for the judge the selection maximised would vanish here. Scores: p_positive =
(compound + 1) / 2, positive_rate = compound >= 0.05 (VADER's usual threshold; neutral text is not positive). The
script first prints VADER's accuracy on SST-2 ``test.tsv`` (the GLUE validation sentences) and its agreement with the
run's judge on the base model's continuations, so a reader knows what the second judge is worth.
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import statistics
import sys
from pathlib import Path

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

THRESHOLD = 0.05
METRICS = ("p_positive", "positive_rate")


def vader_scores(analyzer: SentimentIntensityAnalyzer, texts: list[str]) -> dict[str, list[float]]:
    """p_positive and positive_rate of each text under VADER."""
    compound = [analyzer.polarity_scores(t)["compound"] for t in texts]
    return {"p_positive": [(c + 1) / 2 for c in compound], "positive_rate": [float(c >= THRESHOLD) for c in compound]}


def label_shares(analyzer: SentimentIntensityAnalyzer, texts: list[str]) -> tuple[float, float, float]:
    """Shares of negative / neutral / positive texts under VADER's usual rule (compound ≤ −0.05 / between / ≥ 0.05)."""
    compound = [analyzer.polarity_scores(t)["compound"] for t in texts]
    neg, pos = sum(c <= -THRESHOLD for c in compound), sum(c >= THRESHOLD for c in compound)
    return neg / len(texts), (len(texts) - neg - pos) / len(texts), pos / len(texts)


def agreement(a: list[float], b: list[float]) -> tuple[float, float]:
    """Raw agreement and Cohen's κ of two 0 / 1 labelings of the same items."""
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    return observed, (observed - chance) / (1 - chance)


def rejudge(record: dict, analyzer: SentimentIntensityAnalyzer) -> dict:
    """The test record with every p_positive / positive_rate (per example and mean) from VADER."""
    out = json.loads(json.dumps(record))
    conts = record["continuations"]
    for condition in ("base", "steered"):
        if f"{condition}/p_positive" not in record["per_example"]:
            continue
        per = record["per_example"][f"{condition}/p_positive"]
        if len(conts) != len(per["value"]):
            raise ValueError(f"{len(conts)} continuations for {len(per['value'])} scored examples")
        scores = vader_scores(analyzer, [conts[str(j)][condition] for j in range(len(conts))])
        for metric in METRICS:
            out["per_example"][f"{condition}/{metric}"]["value"] = scores[metric]
            out["metrics"][f"test/{condition}/{metric}"] = statistics.fmean(scores[metric])
    return out


def sst2_accuracy(analyzer: SentimentIntensityAnalyzer, data: Path) -> tuple[float, int]:
    """VADER's accuracy on SST-2 ``test.tsv`` (the GLUE validation sentences, where the run's judge scored 85.9 %)."""
    with open(data / "SST-2" / "test.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    said = vader_scores(analyzer, [r["sentence"] for r in rows])["positive_rate"]
    return statistics.fmean(float(s == float(r["label"])) for s, r in zip(said, rows)), len(rows)


def main(run: str, out: str, data: str = "../shared/data/sst2") -> None:
    from steering.reproduce import _parser
    from steering.reproduce import main as reproduce

    analyzer, src, dst = SentimentIntensityAnalyzer(), Path(run), Path(out)
    if dst.exists() and any(dst.iterdir()):
        raise SystemExit(f"{dst} is not empty: its old records would be collected with the new ones; use a new folder")
    acc, n = sst2_accuracy(analyzer, Path(data))
    print(f"VADER on SST-2 test.tsv (GLUE validation): accuracy {acc:.3f} (n {n})")
    ours, theirs, texts = [], [], {}
    for path in sorted(src.glob("seed*/**/*.json")):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not path.name.endswith(".test.json"):
            shutil.copyfile(path, target)
            continue
        record = json.loads(path.read_text())
        new = rejudge(record, analyzer)
        conts = record["continuations"].values()
        if "base/positive_rate" in record["per_example"]:
            theirs += record["per_example"]["base/positive_rate"]["value"]
            ours += new["per_example"]["base/positive_rate"]["value"]
            texts.setdefault("base", []).extend(c["base"] for c in conts)
        if path.parent.name.startswith("seed"):  # a tested setting (the null draws sit one folder deeper)
            texts.setdefault(path.name.removesuffix(".test.json"), []).extend(c["steered"] for c in conts)
        target.write_text(json.dumps(new))
    same, kappa = agreement(theirs, ours)
    print(f"VADER vs the run's judge on the base continuations: same label on {same:.3f}, Cohen's κ {kappa:.2f} "
          f"(n {len(ours)})")  # fmt: skip
    print("VADER's negative / neutral / positive shares of the continuations, pooled over the split seeds:")
    for name, group in sorted(texts.items(), key=lambda kv: kv[0] != "base"):
        neg, neu, pos = label_shares(analyzer, group)
        print(f"  {name}: {neg:.2f} / {neu:.2f} / {pos:.2f} (n {len(group)})")
    summary = json.loads((src / "summary.json").read_text())
    command = shlex.split(summary["command"])
    run_args, _ = _parser().parse_known_args(command[3:])  # "python -m steering.reproduce" …
    args = ["--methods", *run_args.methods, "--kl-budgets", *run_args.kl_budgets, "--null-draws",
            str(run_args.null_draws), *(["--target", run_args.target] if run_args.target else []),
            *(["--split-seeds", *map(str, run_args.split_seeds)] if run_args.split_seeds else []),
            *(["--null-budgets", *map(str, run_args.null_budgets)] if run_args.null_budgets else [])]  # fmt: skip
    reproduce(["--collect", str(dst), "--out", str(dst / "report"), *args])
    report = dst / "report" / "results.md"
    note = (f"**Second judge: VADER.** Test `p_positive` / `positive_rate` (and every difference of them) re-scored "
            f"by VADER from the continuations saved by `{' '.join(command)}` (commit {summary.get('commit')}) in "
            f"`{src}`; the settings, the dev "
            "columns (`dev p_positive`, the sweeps, the Pareto plots' dev curves), KL and perplexity are the run's "
            f"own judge's. VADER: SST-2 test.tsv accuracy {acc:.3f}; same label as the run's judge on "
            f"{same:.3f} of the base continuations (Cohen's κ {kappa:.2f}).\n\n")  # fmt: skip
    report.write_text(note + report.read_text())


if __name__ == "__main__":
    main(*sys.argv[1:])
