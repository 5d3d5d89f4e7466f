"""Plots for people (PNG) beside the data DVC plots: the confusion matrix and the comparison's learning curve."""

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
