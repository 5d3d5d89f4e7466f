"""How a classifier reads a document longer than its max_length: the first max_length tokens alone (truncation,
``finetune.windows: 1``), or up to ``windows`` windows of max_length tokens, each overlapping the one before by
``window_overlap`` tokens, whose logits are averaged.

Fine-tuning trains on every window as an example with its document's label; evaluation, prediction, serving and
the ONNX export score each window and average the logits of a document's windows before the softmax (or sigmoid).
A saved classifier carries both numbers in its config.json (``windows``, ``window_overlap``) and max_length as its
tokenizer's ``model_max_length``, so whatever reads it later windows a document as training did.

Torch-free on purpose: the ONNX server imports it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NO_LENGTH = int(1e30)  # transformers' model_max_length of a tokenizer saved without one (VERY_LARGE_INTEGER)


@dataclass(frozen=True)
class Windows:
    """``count`` windows of at most ``max_length`` tokens (special tokens included), ``overlap`` tokens shared;
    ``max_length`` None: a tokenizer that sets no length truncates as it does (a checkpoint saved without one)."""

    max_length: int | None
    count: int = 1
    overlap: int = 0

    @classmethod
    def of(cls, config: Any, tokenizer: Any) -> Windows:
        """The windows a saved classifier was trained with (truncation for a model saved without them)."""
        length = int(tokenizer.model_max_length)
        return cls(length if length < NO_LENGTH else None, int(getattr(config, "windows", None) or 1),
                   int(getattr(config, "window_overlap", None) or 0))

    @classmethod
    def from_params(cls, finetune: dict[str, Any]) -> Windows:
        return cls(finetune["max_length"], finetune.get("windows", 1), finetune.get("window_overlap", 0))

    def attach(self, config: Any, tokenizer: Any) -> None:
        """Record these windows in a classifier's config and tokenizer, which save them with the model."""
        tokenizer.model_max_length = self.max_length
        config.windows, config.window_overlap = self.count, self.overlap

    def encode(self, tokenizer: Any, texts: Sequence[str]) -> tuple[dict[str, list[list[int]]], np.ndarray]:
        """The tokenizer's output for every window of ``texts`` (input ids, attention mask, ...), and the index of the
        text each window comes from (ascending: a text's windows are consecutive, first window first)."""
        if self.count == 1:
            return dict(tokenizer(list(texts), truncation=True, max_length=self.max_length)), np.arange(len(texts))
        encoded = dict(tokenizer(list(texts), truncation=True, max_length=self.max_length, stride=self.overlap,
                                 return_overflowing_tokens=True))
        source = np.asarray(encoded.pop("overflow_to_sample_mapping"), dtype=np.int64)
        position = np.arange(len(source)) - np.searchsorted(source, source)  # each window's place in its text
        keep = np.flatnonzero(position < self.count)
        return {key: [values[i] for i in keep] for key, values in encoded.items()}, source[keep]

    def lengths(self, lengths: Sequence[int], specials: int = 2) -> list[int]:
        """The token counts of the windows that :meth:`encode` cuts from texts of ``lengths`` tokens (``specials``
        of them special tokens, as a text and each window has): what fine-tuning's cost is counted in."""
        room = self.max_length - specials  # a window's text tokens
        step = room - self.overlap  # each window starts this many text tokens after the one before
        windows = []
        for length in lengths:
            text = length - specials
            count = 1 if text <= room else min(self.count, 1 + math.ceil((text - room) / step))
            windows += [self.max_length] * (count - 1) + [min(room, text - (count - 1) * step) + specials]
        return windows


def pool(logits: np.ndarray, documents: np.ndarray, count: int) -> np.ndarray:
    """The mean of each document's window logits (rows of ``logits``; ``documents`` names each row's document), as
    float32; a document of one window keeps its logits exactly."""
    sums = np.zeros((count, logits.shape[1]), dtype=np.float64)
    np.add.at(sums, documents, logits)
    return (sums / np.bincount(documents, minlength=count)[:, None]).astype(np.float32)


def pad(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> dict[str, np.ndarray]:
    """``input_ids`` and ``attention_mask`` (int64) of ``rows`` padded to the longest of them on ``side``, as
    transformers' ``tokenizer.pad`` gives them."""
    longest = max(len(row) for row in rows)
    ids = np.full((len(rows), longest), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for i, row in enumerate(rows):
        span = slice(longest - len(row), longest) if side == "left" else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    return {"input_ids": ids, "attention_mask": mask}


def pooled_logits(logits: Callable[[dict[str, np.ndarray]], np.ndarray], tokenizer: Any, texts: list[str],
                  batch_size: int, num_labels: int, windows: Windows) -> np.ndarray:
    """The logits of ``texts`` (float32 rows, in order) from a model's ``logits`` function (PyTorch's or ONNX
    Runtime's), ``batch_size`` windows at a time; a text of several windows gets the mean of theirs (:func:`pool`).

    Batches are formed longest first and padded (:func:`pad`, with the tokenizer's pad token and side) to their own
    longest window, so few positions are padding."""
    encoded, documents = windows.encode(tokenizer, texts)
    ids = encoded["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    scores = np.zeros((len(ids), num_labels), dtype=np.float32)
    for start in range(0, len(ids), batch_size):
        rows = order[start : start + batch_size]
        scores[rows] = logits(pad([ids[i] for i in rows], tokenizer.pad_token_id, tokenizer.padding_side))
    return pool(scores, documents, len(texts))
