"""Plots for people (PNG) beside the data DVC plots: the confusion matrix, the per-label scores and the
comparison's learning curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ptft.pipeline.artifacts import write_json  # noqa: E402


def confusion_rows(actual: Sequence[str], predicted: Sequence[str]) -> list[dict[str, str]]:
    """One row per document, the layout of DVC's ``confusion`` plot template."""
    return [{"actual": a, "predicted": p} for a, p in zip(actual, predicted)]


def write_confusion(matrix: np.ndarray, labels: Sequence[str], actual: Sequence[str], predicted: Sequence[str],
                    out_dir: Path, title: str) -> None:
    """Write ``confusion.json`` (for ``dvc plots``) and ``confusion.png`` (for people) into ``out_dir``."""
    write_json(out_dir / "confusion.json", confusion_rows(actual, predicted))
    size = 1.2 + 0.7 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    # No Software/date metadata: the PNG must be byte-identical when the matrix is.
    fig.savefig(out_dir / "confusion.png", dpi=100, metadata={"Software": None})
    plt.close(fig)


PER_LABEL_METRICS = ("precision", "recall", "f1")


def per_label_rows(per_label: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per label and metric, for DVC's ``bar_horizontal`` template (x: ``value``, y: ``label_metric``).

    ``label_metric`` ("sport: f1") gives every bar its own place on the y axis: the built-in bar templates
    colour bars by revision only, so rows sharing a y value would stack into one bar.
    """
    return [
        {"label": label, "metric": metric, "value": round(float(scores[metric]), 4),
         "label_metric": f"{label}: {metric}"}
        for label, scores in per_label.items()
        for metric in PER_LABEL_METRICS
    ]


def write_per_label(per_label: dict[str, dict[str, Any]], out_dir: Path, title: str) -> None:
    """Write ``per_label.json`` (for ``dvc plots``) and ``per_label.png`` (for people) into ``out_dir``.

    ``per_label`` maps each label to its precision, recall, f1 and support (``by_label.json``).
    The PNG groups precision, recall and F1 per label, with each label's support in its tick text.
    """
    write_json(out_dir / "per_label.json", per_label_rows(per_label))
    labels = list(per_label)
    width = 0.8 / len(PER_LABEL_METRICS)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.6 * max(len(labels), 1)))
    positions = np.arange(len(labels))
    for j, metric in enumerate(PER_LABEL_METRICS):
        values = [float(per_label[label][metric]) for label in labels]
        ax.barh(positions + (j - (len(PER_LABEL_METRICS) - 1) / 2) * width, values, height=width,
                label="F1" if metric == "f1" else metric)
    ax.set_yticks(positions, [f"{label} (n={int(per_label[label]['support'])})" for label in labels])
    ax.invert_yaxis()  # the first label on top
    ax.set_xlim(0, 1)
    ax.set_xlabel("score")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", bbox_to_anchor=(1.01, 0), frameon=False)
    fig.tight_layout()
    # No Software/date metadata: the PNG must be byte-identical when the scores are.
    fig.savefig(out_dir / "per_label.png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def learning_curve(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Test accuracy against labelled examples (log scale), one line per method, ± one standard deviation."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(row["method"] for row in rows):
        points = sorted((row for row in rows if row["method"] == method), key=lambda row: row["train_examples"])
        x = [row["train_examples"] for row in points]
        y = [row["accuracy"] for row in points]
        ax.errorbar(x, y, yerr=[row["high"] - row["accuracy"] for row in points], marker="o", capsize=3,
                    label=method)
    ax.set_xscale("log")
    ax.set_xlabel("labelled train examples")
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title("Learning curves")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
