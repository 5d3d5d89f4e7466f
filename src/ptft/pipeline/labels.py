"""What a classifier's config says about its labels: their names, single- or multi-label, the decision threshold.

Light on purpose (transformers' config type only): building a model (modeling), scoring it (evaluation), exporting
and serving it all read these, and none of them need import the others for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PretrainedConfig

MULTI_LABEL = "multi_label_classification"  # config.problem_type of a multi-label model
DEFAULT_THRESHOLD = 0.5  # for a multi-label model saved without config.threshold


def label_names(config: PretrainedConfig) -> list[str]:
    """A classifier's label names in the order of its label ids (its output columns)."""
    return [config.id2label[i] for i in range(config.num_labels)]


def is_multi_label(config: PretrainedConfig) -> bool:
    """Whether the classifier scores each label on its own (sigmoid), as a multi-label classifier."""
    return getattr(config, "problem_type", None) == MULTI_LABEL


def decision_threshold(config: PretrainedConfig) -> float:
    """The probability at or above which a multi-label classifier predicts a label (``config.threshold``)."""
    threshold = getattr(config, "threshold", None)
    return DEFAULT_THRESHOLD if threshold is None else float(threshold)


def label_ids(labels: list[str]) -> dict[str, int]:
    """Each label's id: its place in ``labels`` (a classifier's output column)."""
    return {label: i for i, label in enumerate(labels)}


def decide(probs: np.ndarray, multi_label: bool, threshold: float | None = None) -> np.ndarray:
    """A classifier's decisions from its probabilities (rows): the id of the most probable label, or for a
    multi-label classifier a 0/1 row marking every label at or above ``threshold``."""
    if not multi_label:
        return probs.argmax(-1)
    return (probs >= (DEFAULT_THRESHOLD if threshold is None else threshold)).astype(np.int64)
