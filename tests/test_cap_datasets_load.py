"""load_splits: real datasets from ../shared/data, custom files, the faked hub path, every error case."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from cap_lightning.datasets import (
    DATASETS,
    EMOTION_LABELS,
    CustomData,
    LabelledSplits,
    TextExample,
    few_shot,
    load_splits,
)

FIXTURES = Path(__file__).parent / "fixtures"
INTENTS = ["goodbye", "greeting", "thanks"]  # sorted unique labels of the custom fixtures

# (num_labels, train, validation, test); BANKING77 validation is carved from its 10,003 train rows (seed 0, 10 %).
EXPECTED = {
    "sst2": (2, 60_614, 6_735, 872),
    "banking77": (77, 8_998, 1_005, 3_080),
    "hwu64": (64, 8_954, 1_006, 1_076),
    "clinc150": (150, 15_000, 3_000, 4_500),
    "emotion": (6, 16_000, 2_000, 2_000),
}
# Texts the upstream files themselves share between splits (kept as published); every other pair is disjoint.
UPSTREAM_SHARED = {
    ("sst2", "train", "validation"): 75,
    ("banking77", "train+validation", "test"): 6,  # validation is carved from train; how the 6 divide depends on seed
    ("clinc150", "train", "validation"): 3,
    ("clinc150", "train", "test"): 2,
    ("emotion", "train", "validation"): 5,
    ("emotion", "train", "test"): 11,
    ("emotion", "validation", "test"): 3,
}
PAIRS = (("train", "validation"), ("train", "test"), ("validation", "test"))


@pytest.fixture(scope="module")
def real(shared_data: Path) -> dict[str, LabelledSplits]:
    """Every built-in dataset, loaded once per module (about half a second in total)."""
    return {name: load_splits(name, shared_data / name) for name in DATASETS}


def load_custom(data_dir: Path | None = None, *, validation_fraction: float = 0.1, **options) -> LabelledSplits:
    """``load_splits("custom", ...)`` with the :class:`CustomData` options as keywords."""
    return load_splits("custom", data_dir, validation_fraction=validation_fraction, custom=CustomData(**options))


def texts(rows: list[TextExample]) -> set[str]:
    return {ex.text for ex in rows}


# ---------------------------------------------------------------------------------------------------- real data


@pytest.mark.parametrize("name", DATASETS)
def test_real_dataset_counts(real: dict[str, LabelledSplits], name: str) -> None:
    splits = real[name]
    counts = (splits.num_labels, len(splits.train), len(splits.validation), len(splits.test))
    assert counts == EXPECTED[name]
    assert len(set(splits.label_names)) == splits.num_labels
    for rows in (splits.train, splits.validation, splits.test):
        assert {ex.label for ex in rows} == set(range(splits.num_labels))  # every class in every split
        assert all(ex.text == ex.text.strip() and ex.text for ex in rows)


@pytest.mark.parametrize("name", DATASETS)
def test_real_dataset_split_overlap_is_only_upstream(real: dict[str, LabelledSplits], name: str) -> None:
    splits = real[name]
    if name == "banking77":  # carved validation: duplicate train texts stay on one side
        assert not texts(splits.train) & texts(splits.validation)
        shared = (texts(splits.train) | texts(splits.validation)) & texts(splits.test)
        assert len(shared) == UPSTREAM_SHARED[(name, "train+validation", "test")]
        return
    for a, b in PAIRS:
        shared = texts(getattr(splits, a)) & texts(getattr(splits, b))
        assert len(shared) == UPSTREAM_SHARED.get((name, a, b), 0), (a, b)


@pytest.mark.parametrize("name", DATASETS)
def test_few_shot_from_train_is_disjoint_from_evaluation(real: dict[str, LabelledSplits], name: str) -> None:
    splits = real[name]
    evaluation = texts(splits.validation) | texts(splits.test)
    shots = few_shot(splits.train, 10, seed=0, label_names=splits.label_names)
    assert Counter(ex.label for ex in shots) == dict.fromkeys(range(splits.num_labels), 10)
    assert len(texts(shots) & evaluation) <= len(texts(splits.train) & evaluation)
    if not texts(splits.train) & evaluation:
        assert not texts(shots) & evaluation


def test_real_label_orders(real: dict[str, LabelledSplits], shared_data: Path) -> None:
    assert real["sst2"].label_names == ["negative", "positive"]
    assert real["emotion"].label_names == list(EMOTION_LABELS)
    assert real["emotion"].label_names[:2] == ["sadness", "joy"]
    categories = json.loads((shared_data / "banking77/banking_data/categories.json").read_text())
    assert real["banking77"].label_names == categories
    assert real["hwu64"].label_names == sorted(real["hwu64"].label_names)
    clinc = real["clinc150"].label_names
    assert clinc == sorted(clinc) and "oos" not in clinc


def test_real_class_balance_matches_source_records(real: dict[str, LabelledSplits]) -> None:
    sst2 = real["sst2"]
    assert Counter(ex.label for ex in sst2.train + sst2.validation) == {1: 37_569, 0: 29_780}
    assert Counter(ex.label for ex in sst2.test) == {1: 444, 0: 428}
    emotion = real["emotion"]
    by_name = Counter(emotion.label_names[ex.label] for ex in emotion.train)
    assert by_name == {"joy": 5362, "sadness": 4666, "anger": 2159, "fear": 1937, "love": 1304, "surprise": 572}
    assert set(Counter(ex.label for ex in real["banking77"].test).values()) == {40}
    clinc = real["clinc150"]
    assert [set(Counter(ex.label for ex in rows).values()) for rows in (clinc.train, clinc.validation, clinc.test)] == [
        {100},
        {20},
        {30},
    ]


def test_banking77_validation_carve_is_seeded(shared_data: Path, real: dict[str, LabelledSplits]) -> None:
    again = load_splits("banking77", shared_data / "banking77", seed=0)
    other = load_splits("banking77", shared_data / "banking77", seed=1)
    assert again.validation == real["banking77"].validation
    assert other.validation != again.validation
    assert Counter(other.train + other.validation) == Counter(again.train + again.validation)


def test_parent_data_dir_is_accepted(shared_data: Path) -> None:
    assert len(load_splits("hwu64", shared_data).validation) == 1_006


# ---------------------------------------------------------------------------------------------------- custom files


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl", "parquet"])
def test_custom_files_load_with_named_columns_and_string_labels(suffix: str) -> None:
    splits = load_custom(
        FIXTURES,
        train_file=f"custom_train.{suffix}",
        test_file="custom_test.csv",
        text_column="utterance",
        label_column="intent",
        validation_fraction=0.34,
    )
    assert splits.name == "custom" and splits.label_names == INTENTS
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (6, 3, 3)
    assert Counter(ex.label for ex in splits.validation) == {0: 1, 1: 1, 2: 1}
    assert splits.test[0] == TextExample("hey", INTENTS.index("greeting"))
    assert all(ex.text == ex.text.strip() for ex in splits.train)


def test_custom_csv_quoting_and_tsv_without_quoting() -> None:
    common = {"text_column": "utterance", "label_column": "intent", "test_file": str(FIXTURES / "custom_test.csv")}
    csv_rows = load_custom(train_file=str(FIXTURES / "custom_train.csv"), validation_file=common["test_file"], **common)
    assert TextExample('thank you "so" much', 2) in csv_rows.train
    tsv_rows = load_custom(train_file=str(FIXTURES / "custom_train.tsv"), validation_file=common["test_file"], **common)
    assert TextExample('see you later " alligator', 0) in tsv_rows.train
    assert TextExample("hello there", 1) in tsv_rows.train  # trailing space stripped


def test_custom_integer_labels_are_kept_as_ids(tmp_path: Path) -> None:
    rows = [{"text": f"row {i}", "label": i % 3 * 2} for i in range(9)]  # ids 0, 2, 4
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "test.json").write_text(json.dumps({"text": ["a", "b"], "label": [4, 0]}))
    splits = load_custom(tmp_path, train_file="train.jsonl", validation_file="train.jsonl", test_file="test.json")
    assert splits.label_names == ["0", "1", "2", "3", "4"]
    assert [ex.label for ex in splits.test] == [4, 0]


def test_custom_label_names_fix_the_order() -> None:
    order = ["thanks", "greeting", "goodbye"]
    splits = load_custom(
        FIXTURES,
        train_file="custom_train.csv",
        validation_file="custom_test.csv",
        test_file="custom_test.csv",
        text_column="utterance",
        label_column="intent",
        label_names=order,
    )
    assert splits.label_names == order
    assert splits.test == [TextExample("hey", 1), TextExample("farewell", 2), TextExample("cheers", 0)]


# ---------------------------------------------------------------------------------------------------- errors


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_dataset_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'imdb'; expected one of \['sst2', .*'emotion', 'custom'\]"):
        load_splits("imdb", "/nowhere")


def test_missing_data_dir_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"data_dir for 'emotion' does not exist .*absent"):
        load_splits("emotion", tmp_path / "absent")


def test_missing_expected_file_names_its_path(tmp_path: Path) -> None:
    (tmp_path / "banking_data").mkdir()
    write(tmp_path / "banking_data/train.csv", "text,category\nhi,card_arrival\n")
    with pytest.raises(FileNotFoundError, match=r"missing: \[.*banking_data/test\.csv.*banking_data/categories\.json"):
        load_splits("banking77", tmp_path)


def test_missing_column_lists_present_columns() -> None:
    with pytest.raises(
        ValueError,
        match=r"custom_train\.csv: missing column\(s\) \['text'\]; columns present: \['utterance', 'intent'\]",
    ):
        load_custom(FIXTURES, train_file="custom_train.csv", test_file="custom_test.csv", label_column="intent")
    with pytest.raises(ValueError, match=r"custom_train\.parquet: missing column\(s\) \['label'\]"):
        load_custom(FIXTURES, train_file="custom_train.parquet", test_file="custom_test.csv", text_column="utterance")
    with pytest.raises(
        ValueError, match=r"custom_train\.jsonl, row 1: missing column\(s\) \['txt'\].*'utterance', 'intent', 'id'"
    ):
        load_custom(
            FIXTURES,
            train_file="custom_train.jsonl",
            test_file="custom_test.csv",
            text_column="txt",
            label_column="intent",
        )


def test_empty_text_names_file_and_row(tmp_path: Path) -> None:
    write(tmp_path / "train.csv", "text,label\nfine,a\n   ,b\n")
    write(tmp_path / "test.csv", "text,label\nok,a\n")
    with pytest.raises(ValueError, match=r"train\.csv, row 2 \(line 3\): empty or whitespace-only text"):
        load_custom(tmp_path, train_file="train.csv", test_file="test.csv")


def test_label_outside_label_names_is_named(tmp_path: Path) -> None:
    write(tmp_path / "train.csv", "text,label\nx,a\ny,b\n")
    write(tmp_path / "test.csv", "text,label\nz,c\n")
    with pytest.raises(ValueError, match=r"test\.csv, row 1 \(line 2\): label 'c' is not in label_names.*\['a', 'b'\]"):
        load_custom(tmp_path, train_file="train.csv", validation_file="train.csv", test_file="test.csv")
    with pytest.raises(ValueError, match=r"train\.csv, row 2 .*label 'b' is not in label_names.*\['a', 'z'\]"):
        load_custom(tmp_path, train_file="train.csv", test_file="train.csv", label_names=["a", "z"])


def test_unsupported_suffix_lists_supported(tmp_path: Path) -> None:
    write(tmp_path / "train.xlsx", "")
    with pytest.raises(ValueError, match=r"unsupported file suffix '\.xlsx'; supported: \['\.csv', '\.tsv', '\.jsonl'"):
        load_custom(tmp_path, train_file="train.xlsx", test_file="train.xlsx")


def test_custom_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"test_file not found: .*missing\.csv"):
        load_custom(FIXTURES, train_file="custom_train.csv", test_file="missing.csv")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"dataset": "sst2", "custom": CustomData(train_file="x.csv")},
            r"\['train_file'\] only apply to dataset='custom'",
        ),
        ({"dataset": "custom", "custom": CustomData(train_file="x.csv")}, "needs train_file and test_file"),
        ({"dataset": "custom", "custom": CustomData(hub_id="a/b", train_file="x.csv")}, "either hub_id or train_file"),
        (
            {"dataset": "sst2", "validation_fraction": 1.0},
            r"validation_fraction must be strictly between 0 and 1, got 1\.0",
        ),
    ],
)
def test_bad_argument_combinations(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_splits(**kwargs)


# ---------------------------------------------------------------------------------------------------- hub (faked)


class FakeHub:
    """Stands in for ``datasets.load_dataset``: serves ``Dataset.from_dict`` tables keyed by (path, config, split)."""

    def __init__(self, tables: dict[tuple[str, str | None, str], object]) -> None:
        self.tables = tables
        self.calls: list[tuple[str, str | None, str]] = []

    def __call__(self, path: str, name: str | None = None, *, split: str) -> object:
        self.calls.append((path, name, split))
        return self.tables[(path, name, split)]


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch):
    datasets = pytest.importorskip("datasets")

    def install(tables: dict) -> FakeHub:
        hub = FakeHub(tables)
        monkeypatch.setattr(datasets, "load_dataset", hub)
        return hub

    return install


def class_label_table(text_col: str, label_col: str, rows: list[tuple[str, int]], names: list[str]):
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({text_col: Value("string"), label_col: ClassLabel(names=names)})
    return Dataset.from_dict({text_col: [t for t, _ in rows], label_col: [lab for _, lab in rows]}, features=features)


def test_hub_sst2_carves_validation_and_uses_glue_dev_as_test(fake_hub) -> None:
    train = class_label_table("sentence", "label", [(f"s{i} ", i % 2) for i in range(20)], ["negative", "positive"])
    dev = class_label_table("sentence", "label", [("good", 1), ("bad", 0)], ["negative", "positive"])
    hub = fake_hub({("stanfordnlp/sst2", None, "train"): train, ("stanfordnlp/sst2", None, "validation"): dev})
    splits = load_splits("sst2")
    assert (len(splits.train), len(splits.validation)) == (18, 2)
    assert splits.test == [TextExample("good", 1), TextExample("bad", 0)]
    assert texts(splits.train) | texts(splits.validation) == {f"s{i}" for i in range(20)}  # stripped
    assert {call[2] for call in hub.calls} == {"train", "validation"}


def test_hub_clinc150_drops_oos_and_sorts_intents(fake_hub) -> None:
    names = ["transfer", "oos", "alarm"]
    rows = [("move money", 0), ("what is life", 1), ("wake me up", 2)]
    table = class_label_table("text", "intent", rows, names)
    fake_hub({("clinc/clinc_oos", "plus", split): table for split in ("train", "validation", "test")})
    splits = load_splits("clinc150")
    assert splits.label_names == ["alarm", "transfer"]
    assert splits.test == [TextExample("move money", 1), TextExample("wake me up", 0)]


def test_hub_hwu64_reads_names_from_intents_config(fake_hub) -> None:
    from datasets import Dataset

    intents = Dataset.from_dict({"id": [0, 1], "name": ["weather_query", "alarm_set"]})
    rows = {"utterance": ["rain today?", "wake me at 7", "sunny?", "alarm 6am"], "label": [0, 1, 0, 1]}
    table = Dataset.from_dict(rows)
    fake_hub(
        {
            ("AutoIntent/hwu64", "intents", "intents"): intents,
            ("AutoIntent/hwu64", None, "train"): table,
            ("AutoIntent/hwu64", None, "test"): table,
        }
    )
    splits = load_splits("hwu64", validation_fraction=0.5)
    assert splits.label_names == ["alarm_set", "weather_query"]
    assert splits.test[0] == TextExample("rain today?", 1)
    assert (len(splits.train), len(splits.validation)) == (2, 2)


def test_hub_custom_dataset_with_class_labels(fake_hub) -> None:
    table = class_label_table("review", "stars", [(f"r{i}", i % 3) for i in range(9)], ["low", "mid", "high"])
    fake_hub({("me/reviews", "en", "train"): table, ("me/reviews", "en", "test"): table})
    splits = load_custom(
        hub_id="me/reviews",
        hub_config="en",
        text_column="review",
        label_column="stars",
        validation_split=None,
        validation_fraction=0.34,
    )
    assert splits.label_names == ["low", "mid", "high"]
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (6, 3, 9)
    with pytest.raises(
        ValueError, match=r"me/reviews\[train\]: missing column\(s\) \['text'\]; columns present: \['review', 'stars'\]"
    ):
        load_custom(hub_id="me/reviews", hub_config="en", label_column="stars", validation_split=None)


def _latin1_files(tmp_path: Path, suffix: str) -> tuple[Path, Path]:
    rows = [("a great café visit", "positive"), ("a bad meal", "negative")] * 3 + [("très bien", "positive")]
    paths = []
    for name in ("train", "test"):
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".csv":
            body = "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows)
        else:
            body = "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n" for t, lab in rows)
        path.write_bytes(body.encode("latin-1"))
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_non_utf8_file_names_the_file_the_line_and_the_encoding_option(tmp_path: Path, suffix: str) -> None:
    train, test = _latin1_files(tmp_path, suffix)
    custom = CustomData(train_file=str(train), test_file=str(test))
    with pytest.raises(ValueError) as info:
        load_splits("custom", custom=custom)
    message = str(info.value)
    line = 2 if suffix == ".csv" else 1
    assert f"{train}, line {line}" in message and "not valid utf-8" in message
    assert "encoding" in message and "latin-1" in message
    splits = load_splits("custom", custom=CustomData(train_file=str(train), test_file=str(test), encoding="latin-1"))
    assert "a great café visit" in [e.text for e in splits.train + splits.validation]


def test_a_non_utf8_builtin_file_names_the_file_and_line(tmp_path: Path) -> None:
    folder = tmp_path / "data/emotion"
    folder.mkdir(parents=True)
    for name in ("train", "val"):
        (folder / f"{name}.txt").write_text("text;label_name\ni feel fine;joy\n")
    (folder / "test.txt").write_bytes("text;label_name\ni feel fine;joy\nun café;joy\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"test\.txt, line 3: not valid utf-8"):
        load_splits("emotion", str(tmp_path))


def test_an_unknown_encoding_is_named() -> None:
    with pytest.raises(ValueError, match=r"encoding 'utf-9' is not a known text encoding"):
        load_splits("custom", custom=CustomData(train_file="a.csv", test_file="b.csv", encoding="utf-9"))


def _overlapping_files(tmp_path: Path) -> CustomData:
    train = [("good film", "pos"), ("bad film", "neg"), ("great fun", "pos"), ("awful", "neg"), ("shared one", "pos")]
    validation = [("fine film", "pos"), ("shared two", "neg")]
    test = [("shared one", "pos"), ("shared two", "neg"), ("only in test", "pos")]
    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        (tmp_path / f"{name}.csv").write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    return CustomData(**{f"{n}_file": str(tmp_path / f"{n}.csv") for n in ("train", "validation", "test")})


def test_texts_shared_between_custom_splits_are_counted_and_can_be_dropped(tmp_path: Path) -> None:
    custom = _overlapping_files(tmp_path)
    with pytest.warns(UserWarning, match=r"1 train and 1 validation texts? also in test.*drop_duplicates"):
        kept = load_splits("custom", custom=custom)
    assert "shared one" in [e.text for e in kept.train] and len(kept.test) == 3
    from dataclasses import replace

    dropped = load_splits("custom", custom=replace(custom, drop_duplicates=True))
    assert [e.text for e in dropped.train] == ["good film", "bad film", "great fun", "awful"]
    assert [e.text for e in dropped.validation] == ["fine film"] and len(dropped.test) == 3
