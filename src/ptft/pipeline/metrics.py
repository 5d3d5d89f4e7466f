"""Classification metrics (scikit-learn), in the JSON layout the reports and PR diffs use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


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
        result["per_class"] = {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(labels)
        }
    return result


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n_labels: int) -> np.ndarray:
    """The confusion matrix, rows = actual, columns = predicted."""
    return confusion_matrix(y_true, y_pred, labels=list(range(n_labels)))
