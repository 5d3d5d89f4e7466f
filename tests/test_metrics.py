"""Unit tests for ptft.pipeline.metrics, the confusion-matrix outputs and the multi-label metrics and plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptft.pipeline.metrics import (
    THRESHOLDS,
    choose_threshold,
    classification_metrics,
    confusion,
    multilabel_indicator,
    multilabel_metrics,
)
from ptft.pipeline.plots import write_confusion, write_per_label

LABELS = ["a", "b", "c"]


def test_metrics_values_match_hand_computation():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(y_true, y_pred, LABELS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: p=1/2 r=1/2 f=1/2; b: p=2/3 r=1 f=0.8; c: p=1 r=1/2 f=2/3
    assert m["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["documents"] == 6


def test_absent_class_still_reported():
    m = classification_metrics([0, 1], [0, 1], LABELS)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert 0.0 <= m["macro_f1"] <= 1.0


def test_confusion_outputs(tmp_path):
    y_true, y_pred = [0, 0, 1, 2], [0, 1, 1, 2]
    matrix = confusion(y_true, y_pred, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    names = lambda ids: [LABELS[i] for i in ids]  # noqa: E731
    write_confusion(matrix, LABELS, names(y_true), names(y_pred), tmp_path, "t")
    rows = json.loads((tmp_path / "confusion.json").read_text())
    assert rows[1] == {"actual": "a", "predicted": "b"} and len(rows) == 4
    png = (tmp_path / "confusion.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    write_confusion(matrix, LABELS, names(y_true), names(y_pred), tmp_path, "t")
    assert (tmp_path / "confusion.png").read_bytes() == png  # no timestamp in the PNG


def test_multilabel_metrics_values_match_hand_computation():
    y_true = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    y_pred = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0]])
    m = multilabel_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    assert list(m) == ["accuracy", "macro_f1", "micro_f1", "subset_accuracy", "hamming_loss", "documents",
                       "per_label"]
    # Rows 1 and 2 are exactly right; 0 misses b, 3 adds b.
    assert m["accuracy"] == m["subset_accuracy"] == pytest.approx(2 / 4)
    # a: p=r=f=1 (2 docs); b: tp=1 fp=1 fn=1, p=r=f=1/2; c: p=r=f=1 (1 doc); d: no support, no predictions.
    assert m["per_label"]["a"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2})
    assert m["per_label"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_label"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    # micro: tp=4 fp=1 fn=1 -> 2*4 / (2*4 + 2)
    assert m["micro_f1"] == pytest.approx(0.8)
    assert m["hamming_loss"] == pytest.approx(2 / 16)  # two wrong cells of 4 x 4
    assert m["documents"] == 4
    json.dumps(m)  # plain floats and ints
    assert all(type(v) in (float, int) for row in m["per_label"].values() for v in row.values())


def test_thresholds_grid():
    assert THRESHOLDS[0] == 0.05 and THRESHOLDS[-1] == 0.95 and len(THRESHOLDS) == 19
    assert 0.5 in THRESHOLDS and 0.3 in THRESHOLDS  # rounded: no 0.30000000000000004


def test_choose_threshold_best_micro_f1_nearest_half():
    # Perfect for 0.55 <= t <= 0.7 (row 0 at 0.7 kept, row 1 at 0.5 dropped): the nearest to 0.5 wins.
    assert choose_threshold(np.array([[1], [0]]), np.array([[0.7], [0.5]])) == 0.55
    # Perfect for 0.35 <= t <= 0.6 (two labels): 0.5 itself.
    assert choose_threshold(np.array([[1, 0], [0, 1]]), np.array([[0.9, 0.3], [0.2, 0.6]])) == 0.5


def test_choose_threshold_tie_goes_to_the_lower():
    # t <= 0.45: tp=2 fp=2 fn=0 -> F1 4/6; t = 0.5: tp=1 fp=1 fn=1 -> 2/4; 0.55 <= t <= 0.9: tp=1 fp=0 fn=1 -> 2/3.
    # 0.45 and 0.55 tie (and are equally near 0.5): the lower is chosen.
    y_true = np.array([[1], [1], [0], [0]])
    probs = np.array([[0.9], [0.47], [0.52], [0.46]])
    assert choose_threshold(y_true, probs) == 0.45


def test_multilabel_indicator_columns_follow_labels():
    rows = [["c", "a"], np.array(["b"], dtype=object), [], "a"]  # Parquet gives object arrays; a string is one label
    assert multilabel_indicator(rows, ["a", "b", "c"]).tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 0, 0]]


def test_multilabel_indicator_names_unknown_labels():
    with pytest.raises(ValueError, match=r"\['x', 'y'\] \(in 2 rows\)"):
        multilabel_indicator([["a", "x"], ["y"], ["b"]], ["a", "b"])


def test_per_label_outputs(tmp_path):
    per_label = {"sport": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2},
                 "tech": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}}
    write_per_label(per_label, tmp_path, "t")
    rows = json.loads((tmp_path / "per_label.json").read_text())
    assert len(rows) == 6
    assert rows[2] == {"label": "sport", "metric": "f1", "value": 0.6667, "label_metric": "sport: f1"}
    assert len({row["label_metric"] for row in rows}) == 6  # one bar each: the DVC template must not stack them
    png = (tmp_path / "per_label.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    write_per_label(per_label, tmp_path, "t")
    assert (tmp_path / "per_label.png").read_bytes() == png  # no timestamp in the PNG
