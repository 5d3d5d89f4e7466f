"""Unit tests for official splits, unlabelled rows, text fields and multi-label data (ptft.pipeline.splits and the
loading side of ptft.pipeline.data)."""

from __future__ import annotations

import collections

import datasets
import pandas as pd
import pytest

from ptft.pipeline.data import (
    FIELD_SEPARATOR,
    DataError,
    LoadReport,
    drop_unlabelled,
    join_fields,
    label_counts,
    load_corpus,
    read_split,
    write_splits,
)
from ptft.pipeline.splits import (
    assign_splits,
    check_held_out_labels,
    drop_cross_split_duplicates,
    official_splits,
    split_dataset,
    stratified_subset,
)

TAGS = ["economy", "film", "music", "sport", "tech"]


def tagged(n: int = 200) -> pd.DataFrame:
    """n documents with 1-3 of five tags each, in a fixed pattern."""
    labels = [sorted({TAGS[i % 5], TAGS[(i * 3) % 5]} | ({TAGS[(i // 5) % 5]} if i % 3 == 0 else set()))
              for i in range(n)]
    return pd.DataFrame({"text": [f"document {i} words here" for i in range(n)], "label": labels})


# ---------------------------------------------------------------- text fields and labels as read


def test_text_fields_are_joined_with_the_separator_and_an_all_empty_row_is_empty():
    assert join_fields(["Title", "The body."]) == f"Title{FIELD_SEPARATOR}The body."
    assert join_fields([None, "The body."]) == f"{FIELD_SEPARATOR}The body."
    assert join_fields([None, " "]) == ""


def test_a_csv_with_two_text_columns_and_a_tag_column_is_read_as_multi_label(tmp_path):
    path = tmp_path / "tags.csv"
    pd.DataFrame({"title": ["A", "B", "C"], "body": ["one.", "two.", None],
                  "tags": ["x|y", " y ", ""]}).to_csv(path, index=False)
    df, _ = load_corpus(str(path), ["title", "body"], "tags", label_separator="|")
    assert df["text"].tolist() == [f"A{FIELD_SEPARATOR}one.", f"B{FIELD_SEPARATOR}two.", f"C{FIELD_SEPARATOR}"]
    assert df["label"].tolist() == [["x", "y"], ["y"], None]  # an empty tag cell: a row without a label


def test_a_label_separator_that_leaves_a_row_with_no_label_is_an_error(tmp_path):
    path = tmp_path / "tags.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "tags": ["x|y", "|", "z"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"data.label_separator '\|' leaves no label in row 2 .*e.g. '\|'"):
        load_corpus(str(path), "text", "tags", label_separator="|")


def test_a_list_column_is_multi_label_and_class_label_minus_one_is_unlabelled(tmp_path):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "topic": datasets.ClassLabel(names=["neg", "pos"]),
                                  "tags": datasets.List(datasets.Value("string"))})
    ds = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "topic": [1, -1, 0], "tags": [["x"], [], ["y", "x"]]},
                                    features=features)
    ds.save_to_disk(str(tmp_path / "saved"))
    single, _ = load_corpus(str(tmp_path / "saved"), "text", "topic")
    assert [None if pd.isna(x) else x for x in single["label"]] == ["pos", None, "neg"]
    assert single["split"].tolist() == ["train"] * 3
    multi, _ = load_corpus(str(tmp_path / "saved"), "text", "tags")
    assert multi["label"].tolist() == [["x"], None, ["x", "y"]]


def test_an_integer_label_of_minus_one_never_becomes_a_class(tmp_path):
    path = tmp_path / "glue.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": -1}\n{"text": "c", "label": 0}\n')
    df, report = load_corpus(str(path))
    df, dropped = drop_unlabelled(df, report)
    assert df["label"].tolist() == ["1", "0"] and dropped == 1 and "row 2" in report.warnings[0]


def test_a_file_s_split_column_is_read_only_when_asked_for(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"], "part": ["train", "test"]}).to_csv(path, index=False)
    df, report = load_corpus(str(path), split_column="part")
    assert df["split"].tolist() == ["train", "test"] and report.split_column == "part"
    df, report = load_corpus(str(path))
    assert "split" not in df and report.split_column is None
    with pytest.raises(DataError, match="data.split_column 'split' not found in .*columns found: text, label, part"):
        load_corpus(str(path), split_column="split")


def test_a_saved_dataset_dict_keeps_its_split_names(tmp_path):
    ds = datasets.DatasetDict({name: datasets.Dataset.from_dict({"text": [f"{name} text"], "label": ["a"]})
                               for name in ("train", "test", "unsupervised")})
    ds.save_to_disk(str(tmp_path / "saved"))
    df, _ = load_corpus(str(tmp_path / "saved"))
    assert df["split"].tolist() == ["train", "test", "unsupervised"]


# ---------------------------------------------------------------- official splits


def frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["text", "label", "split"])


def test_dataset_splits_are_mapped_and_an_unlabelled_split_is_left_out_and_counted():
    df = frame([("a", "x", "train"), ("b", "y", "dev"), ("c", "x", "eval"), ("d", None, "unsupervised")])
    kept, unused = assign_splits(df, {"train": "train", "validation": "dev", "test": "eval"}, "hf:x", None)
    assert kept["split"].tolist() == ["train", "validation", "test"] and unused == {"unsupervised": 1}


def test_a_split_that_the_source_lacks_is_an_error_naming_the_splits_found():
    df = frame([("a", "x", "train"), ("b", "y", "test")])
    with pytest.raises(DataError, match=r"data.splits.validation 'validation' not found in hf:x, whose splits are "
                                        r"test, train; set data.splits .*validation: null carves"):
        assign_splits(df, {"train": "train", "validation": "validation", "test": "test"}, "hf:x", None)


def test_a_split_column_with_values_data_splits_does_not_name_is_an_error():
    df = frame([("a", "x", "train"), ("b", "y", "test"), ("c", "y", "dev"), ("d", "y", "dev"), ("e", "x", "")])
    with pytest.raises(DataError, match=r"f.csv: the split column holds '' \(1 row\), 'dev' \(2 rows\), which "
                                        r"data.splits does not name"):
        assign_splits(df, {"train": "train", "validation": None, "test": "test"}, "f.csv", "split")


def test_a_folder_of_label_folders_has_no_official_splits():
    with pytest.raises(DataError, match="has no splits; set data.split to random"):
        assign_splits(pd.DataFrame({"text": ["a"], "label": ["x"]}), {"train": "train"}, "docs/", None)


def test_copies_across_splits_leave_train_and_validation_and_the_test_split_is_never_altered():
    words = "the quick brown fox jumps over the lazy dog near the river bank today"
    df = frame([
        ("train only", "x", "train"), ("in test", "x", "train"), ("in test", "x", "test"),
        ("in test", "x", "test"),  # a copy within test: kept
        ("in validation", "y", "train"), ("in validation", "y", "validation"), ("in test", "y", "validation"),
        (words, "x", "test"), (words + " again", "x", "train"),  # a near copy of a test document
        ("twice", "y", "train"), ("twice", "y", "train"),
    ])
    kept, removed = drop_cross_split_duplicates(df, threshold=0.5)
    assert kept[kept["split"] == "test"]["text"].tolist() == ["in test", "in test", words]
    assert sorted(kept[kept["split"] == "train"]["text"]) == ["train only", "twice"]
    assert kept[kept["split"] == "validation"]["text"].tolist() == ["in validation"]
    assert removed == {"duplicates_removed": 1, "near_duplicates_removed": 0, "test_duplicates_kept": 1,
                       "overlap_removed": {"train_test": 2, "train_validation": 1, "validation_test": 1}}


def test_without_a_validation_split_one_is_carved_from_train_stratified_and_seeded():
    rows = [(f"doc {i}", "xy"[i % 2], "train") for i in range(40)] + [(f"test {i}", "xy"[i % 2], "test")
                                                                       for i in range(10)]
    splits = official_splits(frame(rows), True, 0.25, 0, "f.csv")
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [30, 10, 10]
    assert collections.Counter(splits["validation"]["label"]) == {"x": 5, "y": 5}
    assert splits["test"]["text"].tolist() == [f"test {i}" for i in range(10)]  # test as given, in order
    assert splits["validation"].equals(official_splits(frame(rows), True, 0.25, 0, "f.csv")["validation"])


def test_an_official_split_left_empty_is_an_error_naming_the_fix():
    rows = [(f"doc {i}", "x", "train") for i in range(4)] + [("v", "x", "validation")]
    with pytest.raises(DataError, match=r"the official test split has no labelled rows left .*test: validation"):
        official_splits(frame(rows), False, 0.1, 0, "hf:glue")


def test_a_held_out_label_that_train_lacks_is_an_error():
    splits = {"train": pd.DataFrame({"text": ["a"], "label": [["x"]]}),
              "validation": pd.DataFrame({"text": ["b"], "label": [["x"]]}),
              "test": pd.DataFrame({"text": ["c", "d"], "label": [["x", "z"], ["z"]]})}
    with pytest.raises(DataError, match=r"f.csv: the test split has labels the train split lacks: 'z' \(2 rows\)"):
        check_held_out_labels(splits, "f.csv")


# ---------------------------------------------------------------- multi-label splits, subsets and files


def test_a_random_split_of_multi_label_data_keeps_every_tag_in_every_split():
    splits = split_dataset(tagged(), 0.2, 0.2, seed=0)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [120, 40, 40]
    whole = label_counts(tagged()) / 200
    for split in splits.values():
        assert (label_counts(split) / len(split) - whole).abs().max() < 0.05
    assert not set(splits["train"]["text"]) & set(splits["test"]["text"])


def test_a_multi_label_subset_is_seeded_stratified_and_the_right_size():
    subset = stratified_subset(tagged(), 50, seed=1)
    assert len(subset) == 50 and set(label_counts(subset).index) == set(TAGS)
    assert subset.equals(stratified_subset(tagged(), 50, seed=1))
    assert not subset.equals(stratified_subset(tagged(), 50, seed=2))


def test_multi_label_splits_round_trip_through_parquet(tmp_path):
    splits = split_dataset(tagged(), 0.2, 0.2, seed=0)
    write_splits(splits, tmp_path)
    back = read_split(tmp_path, "test")
    assert back["label"].tolist() == splits["test"]["label"].tolist()
    assert isinstance(back["label"].iloc[0], list)


def test_rows_without_a_label_are_counted_in_a_warning_with_their_rows():
    report = LoadReport(documents=3)
    df, dropped = drop_unlabelled(pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", None, ["y"]]}), report)
    assert dropped == 1 and df["text"].tolist() == ["a", "c"] and "row 2" in report.warnings[0]
