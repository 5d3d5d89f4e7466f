"""Unit tests for ptft.pipeline.metrics and the confusion-matrix outputs."""

from __future__ import annotations

import json

import pytest

from ptft.pipeline.metrics import classification_metrics, confusion
from ptft.pipeline.plots import write_confusion

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
