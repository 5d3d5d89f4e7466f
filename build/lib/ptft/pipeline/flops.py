"""What a training run computes, counted in FLOPs: what its run log records and what ``ptft estimate`` scales.

A token's training FLOPs (forward and backward) are :func:`ptft.pipeline.modeling.flops_per_token`'s; an
evaluation's forward pass costs a third of that. Fine-tuning pads each micro-batch to its longest text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

FORWARD = 1 / 3  # a forward pass, of a training step's FLOPs (the backward pass is about twice the forward)


def device_batch(settings: dict[str, Any]) -> int:
    """The texts padded together: a micro-batch (the global batch over its accumulation steps)."""
    return max(1, settings["batch_size"] // settings.get("accumulation", 1))


def padded_length(lengths: Sequence[int], batch_size: int, max_length: int, grouped: bool = False) -> float:
    """Mean tokens an example costs in fine-tuning: each batch is padded to its longest text (cut at
    ``max_length``); ``grouped`` (finetune.group_by_length) batches texts of similar length together."""
    capped = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)
    if len(capped) == 0:
        return 0.0
    capped = np.sort(capped) if grouped else np.random.default_rng(0).permutation(capped)
    batches = [capped[i:i + batch_size] for i in range(0, len(capped), batch_size)]
    return float(sum(batch.max() * len(batch) for batch in batches) / len(capped))


def run_epochs(train_examples: int, settings: dict[str, Any]) -> int:
    """Epochs of a fine-tuning run: ``epochs``, or enough for ``min_steps`` optimizer steps if that is more (the
    comparison's runs, which :func:`ptft.pipeline.training.finetune_trainer` schedules so)."""
    if not settings.get("min_steps"):
        return settings["epochs"]
    steps_per_epoch = math.ceil(train_examples / settings["batch_size"])
    return max(settings["epochs"], math.ceil(settings["min_steps"] / steps_per_epoch))


def run_passes(train_examples: int, settings: dict[str, Any]) -> int:
    """Examples a fine-tuning run trains on: :func:`run_epochs` passes over ``train_examples``."""
    return run_epochs(train_examples, settings) * train_examples


def predicted_fraction(pretrain: dict[str, Any], config: Any) -> float:
    """The share of tokens the LM head decodes: the masked ones of a sparse-prediction MLM (ModernBERT), else all."""
    sparse = pretrain["objective"] == "mlm" and getattr(config, "sparse_prediction", False)
    return pretrain["mask_prob"] if sparse else 1.0


def finetune_flops(per_token: float, length: float, passes: int, evaluated: int) -> float:
    """FLOPs of training on ``passes`` examples of ``length`` tokens and of forward passes over ``evaluated`` more,
    at ``per_token`` training FLOPs a token."""
    return (passes + FORWARD * evaluated) * length * per_token
