"""Unit tests for ptft.pipeline.data: loading, cleaning, dedup, splitting and split files."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest

from ptft.pipeline.data import (
    Columns,
    DataError,
    LoadReport,
    _from_dataset,
    clean,
    decode_bytes,
    drop_duplicates,
    drop_near_duplicates,
    drop_unlabelled,
    load_corpus,
    near_duplicates,
    normalize_text,
    read_labels,
    read_split,
    read_text_folder,
    shingles,
    split_stats,
    write_splits,
)
from ptft.pipeline.splits import split_dataset, stratified_subset

ROWS = [("great product", "pos"), ("terrible, broke at once", "neg"), ("works fine", "pos")]


@pytest.fixture
def corpus() -> pd.DataFrame:
    """60 unique texts in three unbalanced classes (30/20/10)."""
    labels = ["a"] * 30 + ["b"] * 20 + ["c"] * 10
    return pd.DataFrame({"text": [f"document {i} about {label}" for i, label in enumerate(labels)], "label": labels})


# ---------------------------------------------------------------- loading files


def test_load_csv_with_custom_columns(tmp_path):
    path = tmp_path / "reviews.csv"
    frame = pd.DataFrame({"id": [1, 2, 3], "body": [t for t, _ in ROWS], "stars": [label for _, label in ROWS]})
    frame.to_csv(path, index=False)
    df, report = load_corpus(str(path), text_column="body", label_column="stars")
    assert list(df.columns) == ["text", "label"]
    assert df["text"].tolist() == [t for t, _ in ROWS]
    assert df["label"].tolist() == ["pos", "neg", "pos"]
    assert report.documents == 3 and report.undecodable == []


def test_load_jsonl_casts_integer_labels_to_str(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"review": t, "y": i % 2}) + "\n" for i, (t, _) in enumerate(ROWS)))
    df, report = load_corpus(str(path), text_column="review", label_column="y")
    assert df["label"].tolist() == ["0", "1", "0"]
    assert all(isinstance(label, str) for label in df["label"])
    assert report.documents == 3


def test_load_parquet_maps_classlabel_to_names(tmp_path):
    path = tmp_path / "data.parquet"
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "sentiment": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict({"sentence": [t for t, _ in ROWS], "sentiment": [1, 0, 1]}, features=features)
    ds.to_parquet(str(path))  # datasets keeps the ClassLabel in the parquet schema metadata
    df, _ = load_corpus(str(path), text_column="sentence", label_column="sentiment")
    assert df["label"].tolist() == ["pos", "neg", "pos"]


def test_from_dataset_missing_text_becomes_empty():
    ds = datasets.Dataset.from_dict({"text": ["x", None], "label": ["a", "b"]})
    df = _from_dataset(ds, Columns("text", "label"), origin="mem")
    assert df["text"].tolist() == ["x", ""]


def test_rows_without_a_label_are_dropped_and_named():
    ds = datasets.Dataset.from_dict({"text": ["x", "y", "z", "w"], "label": ["a", None, " ", "b"]})
    report = LoadReport(documents=4)
    df, dropped = drop_unlabelled(_from_dataset(ds, Columns("text", "label"), origin="mem"), report)
    assert df["text"].tolist() == ["x", "w"] and dropped == 2
    assert "dropped 2 rows without a label (null, empty or -1)" in report.warnings[0]
    assert "rows 2, 3" in report.warnings[0]


def test_missing_column_lists_columns_found(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"text": ["a"], "label": ["x"]}).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_corpus(str(path), text_column="body")
    assert str(err.value) == (
        f"data.text_column 'body' not found in {path}; columns found: text, label. "
        "Set data.text_column in params.yaml."
    )
    with pytest.raises(DataError, match="data.label_column 'category' not found .* columns found: text, label"):
        load_corpus(str(path), label_column="category")


def test_missing_file_is_a_data_error(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=r"data.source '.*nope.csv' does not exist.*'bbc'.*hf:"):
        load_corpus(str(missing))


def test_unsupported_extension_is_a_data_error(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"not a spreadsheet")
    with pytest.raises(DataError, match=r"data.source '.*data.xlsx' has an unsupported extension '.xlsx'.*\.csv"):
        load_corpus(str(path))


# ---------------------------------------------------------------- awkward files: a warning, or an error naming where


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_bom_and_crlf_are_read_with_a_warning(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    lines = ["text,label", "hello world,a", "bye now,b"] if suffix == ".csv" else [
        json.dumps({"text": "hello world", "label": "a"}), json.dumps({"text": "bye now", "label": "b"})]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    df, report = load_corpus(str(path))
    assert df.values.tolist() == [["hello world", "a"], ["bye now", "b"]]  # no BOM in the first column's name or text
    assert report.warnings == [f"{path} has CRLF (Windows) line ends; they were read as plain line ends",
                               f"{path} starts with a UTF-8 byte-order mark; it was skipped"]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_non_utf8_file_is_read_as_cp1252_with_a_warning_naming_the_line(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    rows = ["text,label", "plain,a", "caf\u00e9 \u201cquoted\u201d,b"] if suffix == ".csv" else [
        json.dumps({"text": "plain", "label": "a"}), '{"text": "caf\u00e9 \u201cquoted\u201d", "label": "b"}']
    path.write_bytes("\n".join(rows).encode("cp1252"))
    df, report = load_corpus(str(path))
    assert df["text"].tolist() == ["plain", "caf\u00e9 \u201cquoted\u201d"]
    line = 3 if suffix == ".csv" else 2
    assert report.warnings == [f"{path} is not UTF-8 (byte 0xe9 on line {line}); it was read as cp1252. "
                               "Re-save it as UTF-8 to be sure of its text"]


def test_malformed_jsonl_line_is_named(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "fine", "label": "a"}\n\n{"text": "broken" "label": "b"}\n')
    with pytest.raises(DataError, match=r"data.jsonl' line 3 is not valid JSON \(Expecting ',' delimiter at column 19"):
        load_corpus(str(path))
    path.write_text('{"text": "fine", "label": "a"}\n["a", "list"]\n')
    with pytest.raises(DataError, match=r"line 2 is a JSON list, not an object"):
        load_corpus(str(path))


def test_ragged_csv_names_the_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("text,label\nfine,a\ntoo,many,fields\n")
    with pytest.raises(DataError, match=r"data.csv' could not be read as csv: .*Expected 2 fields in line 3, saw 3"):
        load_corpus(str(path))


@pytest.mark.parametrize(("name", "content", "message"), [
    ("csv-in-disguise.parquet", b"text,label\nx,a\n", r"is not a Parquet file"),
    ("parquet-in-disguise.csv", None, r"is binary, not CSV text"),
    ("parquet-in-disguise.jsonl", None, r"is binary, not JSONL text"),
])
def test_a_file_that_is_not_the_format_its_extension_claims(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        pd.DataFrame({"text": ["x"], "label": ["a"]}).to_parquet(path)
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=rf"data.source '.*{name}' {message}.*extension of its real format"):
        load_corpus(str(path))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_missing_label_column_lists_the_columns_found_in_every_format(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    frame = pd.DataFrame({"text": ["x", "y"], "topic": ["a", "b"]})
    {".csv": lambda: frame.to_csv(path, index=False), ".parquet": lambda: frame.to_parquet(path),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True)}[suffix]()
    with pytest.raises(DataError, match=rf"data.label_column 'label' not found in {path}; columns found: text, topic"):
        load_corpus(str(path))


def test_empty_texts_are_dropped_with_a_warning_naming_rows_or_files(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in [
        {"text": "kept", "label": "a"}, {"text": "  \t ", "label": "a"}, {"text": None, "label": "b"},
        {"label": "b"}, {"text": "also kept", "label": "b"}]))
    df, report = load_corpus(str(path))
    cleaned, dropped = clean(df, report)
    assert dropped == 3 and cleaned["text"].tolist() == ["kept", "also kept"]
    assert report.warnings == ["dropped 3 empty or whitespace-only texts: rows 2, 3, 4"]

    (tmp_path / "folder" / "a").mkdir(parents=True)
    (tmp_path / "folder" / "a" / "1.txt").write_text("text")
    (tmp_path / "folder" / "a" / "2.txt").write_text("\r\n")
    df, report = load_corpus(str(tmp_path / "folder"))
    assert clean(df, report)[1] == 1 and report.warnings == ["dropped 1 empty or whitespace-only text: file a/2.txt"]


# ---------------------------------------------------------------- folder reader and decoding


def test_folder_reader_sorts_and_falls_back_for_non_utf8(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "2.txt").write_bytes("caf\u00e9 \u201cquoted\u201d".encode("cp1252"))
    (tmp_path / "b" / "1.txt").write_text("plain utf-8 \u00e9", encoding="utf-8")
    (tmp_path / "a" / "1.txt").write_text("first", encoding="utf-8")
    (tmp_path / "a" / "notes.md").write_text("ignored", encoding="utf-8")
    report = LoadReport(documents=0, source=str(tmp_path))
    df = read_text_folder(tmp_path, report)
    assert df["label"].tolist() == ["a", "b", "b"]
    assert df["text"].tolist() == ["first", "plain utf-8 \u00e9", "caf\u00e9 \u201cquoted\u201d"]
    assert report.undecodable == ["b/2.txt"] and report.files == ["a/1.txt", "b/1.txt", "b/2.txt"]
    assert report.warnings == [f"{tmp_path}: 1 file not UTF-8, read as cp1252 (Windows): b/2.txt; "
                               "re-save as UTF-8 to be sure"]


def test_folder_source_reports_undecodable(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "1.txt").write_bytes(b"na\xefve")
    df, report = load_corpus(str(tmp_path))
    assert df["text"].tolist() == ["na\u00efve"]
    assert report.undecodable == ["x/1.txt"] and report.documents == 1


def test_decode_bytes_latin1_last_resort():
    # 0x81 is undefined in cp1252, so only latin-1 can decode it.
    assert decode_bytes(b"a\x81b") == ("a\x81b", False)
    assert decode_bytes("\u00e9".encode()) == ("\u00e9", True)


# ---------------------------------------------------------------- cleaning and dedup


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\ufeffHello world", "Hello world"),
        ("line one\r\nline two\n\nthree", "line one line two three"),
        ("tab\tseparated\u00a0nbsp  spaces ", "tab separated nbsp spaces"),
        ("  caf\u0065\u0301  ", "caf\u00e9"),  # NFC composes e + combining acute
        (" \r\n\t\u00a0", ""),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected


def test_clean_drops_empty_texts():
    df = pd.DataFrame({"text": ["keep  me", "", " \r\n ", "\ufeff", "also\tkept"], "label": list("abcde")})
    cleaned, dropped = clean(df)
    assert dropped == 3
    assert cleaned["text"].tolist() == ["keep me", "also kept"]
    assert cleaned["label"].tolist() == ["a", "e"]
    assert cleaned.index.tolist() == [0, 1]


def test_drop_duplicates_after_normalisation_keeps_first():
    df = pd.DataFrame({"text": ["same text", "same\r\ntext", "other", "same  text", "other"], "label": list("abcde")})
    deduped, removed = drop_duplicates(clean(df)[0])
    assert removed == 3
    assert deduped["text"].tolist() == ["same text", "other"]
    assert deduped["label"].tolist() == ["a", "c"]


# ---------------------------------------------------------------- splitting


def test_split_sizes_no_overlap_and_reset_index(corpus):
    splits = split_dataset(corpus, validation_fraction=0.2, test_fraction=0.2, seed=0)
    assert {name: len(frame) for name, frame in splits.items()} == {"train": 36, "validation": 12, "test": 12}
    texts = [set(frame["text"]) for frame in splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert set().union(*texts) == set(corpus["text"])
    assert all(frame.index.tolist() == list(range(len(frame))) for frame in splits.values())


def test_split_is_stratified(corpus):
    splits = split_dataset(corpus, validation_fraction=0.2, test_fraction=0.2, seed=3)
    shares = corpus["label"].value_counts(normalize=True)
    for frame in splits.values():
        counts = frame["label"].value_counts()
        for label, share in shares.items():
            assert abs(counts.get(label, 0) - share * len(frame)) <= 1


def test_split_is_seeded(corpus):
    first = split_dataset(corpus, 0.2, 0.2, seed=1)
    again = split_dataset(corpus, 0.2, 0.2, seed=1)
    other = split_dataset(corpus, 0.2, 0.2, seed=2)
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert first["test"]["text"].tolist() != other["test"]["text"].tolist()


def test_split_rejects_too_small_class(corpus):
    tiny = pd.concat([corpus, pd.DataFrame({"text": ["rare one", "rare two"], "label": ["rare", "rare"]})])
    with pytest.raises(DataError, match=r"'rare' \(2\).*at least 3"):
        split_dataset(tiny, 0.2, 0.2, seed=0)


def test_split_rejects_bad_fractions(corpus):
    with pytest.raises(DataError, match="validation=0.5, test=0.5"):
        split_dataset(corpus, 0.5, 0.5, seed=0)


# ---------------------------------------------------------------- subsets


def test_subset_none_returns_all(corpus):
    assert stratified_subset(corpus, None, seed=0) is corpus


def test_subset_too_large_names_the_param(corpus):
    with pytest.raises(DataError, match="finetune.train_examples=61"):
        stratified_subset(corpus, 61, seed=0)


def test_subset_is_proportional_and_seeded(corpus):
    subset = stratified_subset(corpus, 12, seed=0)
    assert subset["label"].value_counts().to_dict() == {"a": 6, "b": 4, "c": 2}
    assert set(subset["text"]) <= set(corpus["text"])
    assert subset.equals(stratified_subset(corpus, 12, seed=0))
    assert not subset.equals(stratified_subset(corpus, 12, seed=1))


def test_subset_keeps_every_class(corpus):
    # Proportionally "c" would get 0.5 of 3 rows; it must still appear once.
    subset = stratified_subset(corpus, 3, seed=0)
    assert sorted(subset["label"]) == ["a", "b", "c"]
    skewed = pd.concat([corpus[corpus["label"] == "a"], corpus[corpus["label"] == "c"].head(1)])
    assert sorted(stratified_subset(skewed, 2, seed=0)["label"]) == ["a", "c"]


def test_subset_of_all_rows_has_every_row(corpus):
    assert sorted(stratified_subset(corpus, len(corpus), seed=0)["text"]) == sorted(corpus["text"])


# ---------------------------------------------------------------- near-duplicates

STORY = ("Shares in the bank rose sharply on Monday after it said annual profits would beat the forecasts "
         "made by analysts in the City earlier this year, helped by strong lending and lower bad debts.")


def test_near_duplicates_finds_edited_copies_and_nothing_else():
    edited = STORY.replace("Monday", "Tuesday").replace("sharply", "strongly")  # two words changed
    other = "The striker scored twice as the home side came back from a goal down to win the cup final."
    # Shares its opening words with STORY, as stories on one subject do: not a copy.
    related = "Shares in the bank rose sharply on Monday, the day after the side won the cup final."
    texts = [STORY, other, edited, edited.upper(), related]
    assert near_duplicates(texts, threshold=0.5) == {2: 0, 3: 0}  # the case-folded copy points at the kept text
    assert near_duplicates([STORY, edited], threshold=0.99) == {}  # a stricter threshold keeps the edit
    assert shingles("Too short") == {"too short"}


def test_drop_near_duplicates_keeps_the_first_of_each_group():
    frame = pd.DataFrame({"text": [STORY, "An unrelated text about the weather in spring and summer.",
                                   STORY.replace("Monday", "Friday")], "label": ["a", "b", "a"]})
    kept, dropped = drop_near_duplicates(frame, 0.5)
    assert dropped == 1 and list(kept["text"]) == list(frame["text"][:2])


# ---------------------------------------------------------------- stats and files


def test_split_stats_counts(corpus):
    splits = split_dataset(corpus, 0.2, 0.2, seed=0)
    report = LoadReport(documents=64, undecodable=["x/1.txt"], source="s", warnings=["x/1.txt is not UTF-8"])
    stats = split_stats(splits, report, {"empty_removed": 1, "duplicates_removed": 3, "near_duplicates_removed": 2})
    assert json.loads(json.dumps(stats)) == stats
    assert stats["documents_read"] == 64
    assert (stats["empty_removed"], stats["duplicates_removed"], stats["near_duplicates_removed"]) == (1, 3, 2)
    assert stats["undecodable_files"] == 1 and stats["undecodable_file_names"] == ["x/1.txt"]
    assert stats["warnings"] == ["x/1.txt is not UTF-8"]
    assert stats["splits"]["test"] == {"documents": 12, "per_class": {"a": 6, "b": 4, "c": 2}}
    assert sum(s["documents"] for s in stats["splits"].values()) == 60


def test_write_and_read_splits_round_trip(corpus, tmp_path):
    splits = split_dataset(corpus, 0.2, 0.2, seed=0)
    write_splits(splits, tmp_path / "prepared")
    for name, frame in splits.items():
        loaded = read_split(tmp_path / "prepared", name)
        assert list(loaded.columns) == ["text", "label"]
        assert loaded["text"].tolist() == frame["text"].tolist()
        assert loaded["label"].tolist() == frame["label"].tolist()
    assert read_labels(tmp_path / "prepared") == ["a", "b", "c"]


def test_write_splits_is_byte_identical(corpus, tmp_path):
    splits = split_dataset(corpus, 0.2, 0.2, seed=0)
    write_splits(splits, tmp_path / "one")
    write_splits(splits, tmp_path / "two")
    for file in ["train.parquet", "validation.parquet", "test.parquet", "labels.json"]:
        assert (tmp_path / "one" / file).read_bytes() == (tmp_path / "two" / file).read_bytes()


def test_read_split_missing_file(tmp_path):
    with pytest.raises(DataError, match="train.parquet not found"):
        read_split(tmp_path, "train")


# ---------------------------------------------------------------- the real BBC corpus


def test_bbc_corpus():
    df, report = load_corpus("bbc")
    assert report.documents == len(df) == 2225
    assert sorted(df["label"].unique()) == ["business", "entertainment", "politics", "sports", "tech"]
    assert report.undecodable == ["sports/199.txt"]
    cleaned, empty = clean(df)
    deduped, duplicates = drop_duplicates(cleaned)
    # 98 byte-exact duplicates, plus 2 that differ only in whitespace.
    assert (empty, duplicates, len(deduped)) == (0, 100, 2125)
    assert len(report.warnings) == 1 and "sports/199.txt" in report.warnings[0]
