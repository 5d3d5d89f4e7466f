"""Classification metrics (scikit-learn), in the JSON layout the reports and PR diffs use.

Single-label models are scored by :func:`classification_metrics`; multi-label ones (sigmoid outputs, one
0/1 column per label) by :func:`multilabel_metrics`, with the decision threshold from :func:`choose_threshold`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    precision_recall_fscore_support,
)
from sklearn.preprocessing import MultiLabelBinarizer

# The multi-label decision thresholds tried on validation: 0.05, 0.10, ..., 0.95.
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * step, 2) for step in range(1, 20))


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Accuracy and macro-F1, plus per-class precision, recall, F1 and support when ``labels`` is given.

    Label ids index ``labels``; a class absent from both ``y_true`` and ``y_pred`` still gets a row
    (with zeros) so that every report has the same keys.
    """
    ids = list(range(len(labels))) if labels is not None else None
    result: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "documents": len(y_true),
    }
    if labels is not None:
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=ids, zero_division=0
        )
        result["per_class"] = _per_label(precision, recall, f1, support, labels)
    return result


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> np.ndarray:
    """The confusion matrix, rows = actual, columns = predicted."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_labels)))


def _per_label(precision: np.ndarray, recall: np.ndarray, f1: np.ndarray, support: np.ndarray,
               labels: Sequence[str]) -> dict[str, dict[str, float | int]]:
    return {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i])}
        for i, name in enumerate(labels)
    }


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Scores of 0/1 indicator matrices (documents × labels, columns in the order of ``labels``).

    ``accuracy`` is subset accuracy (every label of a document right), the name other code and DVC metric
    diffs read; ``subset_accuracy`` repeats it under the name people look for. A label with no support
    still gets a per-label row (zeros where undefined).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ids = list(range(len(labels)))
    accuracy = float(accuracy_score(y_true, y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    return {
        "accuracy": accuracy,
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, labels=ids, average="micro", zero_division=0)),
        "subset_accuracy": accuracy,
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
        "documents": len(y_true),
        "per_label": _per_label(precision, recall, f1, support, labels),
    }


def choose_threshold(y_true: np.ndarray, probs: np.ndarray) -> float:
    """The value of :data:`THRESHOLDS` whose decisions ``probs >= t`` have the best micro-F1 on these rows.

    Choose it on the validation split, never on test: the test split only reports what the chosen
    threshold gives. Ties go to the threshold nearest 0.5, then to the lower one. F1 is compared exactly
    (as a fraction of counts), so equal scores tie whatever the floating-point rounding.
    """
    y_true = np.asarray(y_true).astype(bool)
    probs = np.asarray(probs)
    middle = THRESHOLDS.index(0.5)
    best: tuple[Fraction, int, int] | None = None
    for step, threshold in enumerate(THRESHOLDS):
        y_pred = probs >= threshold
        tp = int(np.sum(y_pred & y_true))
        wrong = int(np.sum(y_pred != y_true))  # false positives + false negatives
        f1 = Fraction(2 * tp, 2 * tp + wrong) if tp + wrong else Fraction(0)
        key = (-f1, abs(step - middle), step)
        if best is None or key < best:
            best = key
    assert best is not None
    return THRESHOLDS[best[2]]


def _label_list(row: str | Iterable[str]) -> list[str]:
    """A row's labels as a list: a bare string is one label (not a sequence of characters)."""
    return [row] if isinstance(row, str) else list(row)


def unknown_labels(rows: Sequence[str | Sequence[str]], labels: Sequence[str]) -> tuple[list[str], int]:
    """The labels in ``rows`` that are not in ``labels`` (sorted), and how many rows hold at least one."""
    known = set(labels)
    unknown: set[str] = set()
    count = 0
    for row in rows:
        extra = set(_label_list(row)) - known
        if extra:
            unknown |= extra
            count += 1
    return sorted(unknown), count


def multilabel_indicator(rows: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """The 0/1 matrix (rows × labels, columns in the order of ``labels``) of each row's label names.

    A row is a sequence of label names (a list, or a numpy array read back from Parquet); a bare string
    counts as one label. Raises ``ValueError`` naming any label not in ``labels``.
    """
    rows = [_label_list(row) for row in rows]
    unknown, count = unknown_labels(rows, labels)
    if unknown:
        raise ValueError(f"unknown labels {unknown} (in {count} rows); the known labels are {list(labels)}")
    binarizer = MultiLabelBinarizer(classes=list(labels))
    return binarizer.fit_transform(rows).astype(np.int64).reshape(len(rows), len(labels))
