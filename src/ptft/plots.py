"""Plots: the confusion matrix as DVC plot data and as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ptft.artifacts import write_json  # noqa: E402


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
