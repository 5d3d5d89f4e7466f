"""Scoring a fine-tuned model on one prepared split: metrics, per-label scores, confusion matrix, predictions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ptft.pipeline.artifacts import write_json
from ptft.pipeline.labels import decide, decision_threshold, is_multi_label, label_ids, label_names
from ptft.pipeline.metrics import (
    choose_threshold,
    classification_metrics,
    confusion,
    multilabel_indicator,
    multilabel_metrics,
    unknown_labels,
)
from ptft.pipeline.plots import write_confusion, write_per_label
from ptft.pipeline.windows import Windows, pooled_logits

NONE = "(none)"  # a multi-label confusion matrix's row and column for "no label"


@torch.inference_mode()
def predict_proba(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                  batch_size: int, windows: Windows | None = None) -> np.ndarray:
    """Class probabilities for ``texts`` (rows) in the order of the model's label ids (columns), each text read
    in ``windows`` (default: those the model was fine-tuned with, :meth:`Windows.of`).

    A single-label model's rows sum to one (softmax); a multi-label model's columns are independent
    probabilities (sigmoid), see :func:`is_multi_label`.
    """
    model.eval()

    def logits(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**{key: value.to(model.device) for key, value in batch.items()}).logits.float().cpu()

    return batched_probabilities(logits, tokenizer, texts, batch_size, model.config.num_labels,
                                 is_multi_label(model.config), windows or Windows.of(model.config, tokenizer))


def validation_threshold(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, validation: pd.DataFrame,
                         labels: list[str], batch_size: int) -> float:
    """A multi-label model's decision threshold, chosen on the validation split (never on test): the one with the
    best micro-F1 (:func:`~ptft.pipeline.metrics.choose_threshold`)."""
    probs = predict_proba(model, tokenizer, list(validation["text"]), batch_size)
    return choose_threshold(multilabel_indicator(validation["label"], labels), probs)


def batched_probabilities(logits: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                          tokenizer: PreTrainedTokenizerBase, texts: list[str], batch_size: int, num_labels: int,
                          multi_label: bool, windows: Windows) -> np.ndarray:
    """The probabilities of ``texts`` from a PyTorch model's ``logits`` function: :func:`pooled_logits` (batched
    longest first, windows averaged), then the softmax (sigmoid for a multi-label model)."""
    pooled = torch.from_numpy(pooled_logits(lambda batch: logits({k: torch.from_numpy(v) for k, v in batch.items()})
                                            .numpy(), tokenizer, texts, batch_size, num_labels, windows))
    return (torch.sigmoid(pooled) if multi_label else torch.softmax(pooled, dim=-1)).numpy()


def evaluate_split(model_dir: Path, split: pd.DataFrame, out_dir: Path, batch_size: int,
                   split_name: str) -> dict[str, Any]:
    """Write ``metrics.json`` (the headline scores), ``by_label.json`` (precision, recall, F1 and support per label),
    ``per_label.{json,png}``, ``confusion.{json,png}`` and ``predictions.csv`` for ``split`` (the ``split_name`` split)
    into ``out_dir``.

    For a multi-label model (:func:`is_multi_label`) the metrics are
    :func:`~ptft.pipeline.metrics.multilabel_metrics` at the model's saved threshold, and the confusion matrix
    pairs each label with itself or with "(none)": per label, its hits, misses and false alarms.
    """
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    labels = label_names(model.config)
    rows = list(split["label"])
    unknown, count = unknown_labels(rows, labels)
    if unknown:
        from ptft.pipeline.data import DataError  # data imports much of the package: only when needed

        raise DataError(
            f"the {split_name} split has labels {unknown} (in {count} of {len(rows)} rows) that {model_dir} was not "
            f"trained on: it knows {labels}. Re-run fine-tuning on data with these labels, or drop them from the data."
        )
    probs = predict_proba(model, tokenizer, list(split["text"]), batch_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    if is_multi_label(model.config):
        threshold = decision_threshold(model.config)
        y_true, y_pred = multilabel_indicator(rows, labels), decide(probs, True, threshold)
        metrics = multilabel_metrics(y_true, y_pred, labels)
        metrics = {**metrics, "threshold": threshold}
        actual, predicted = _joined(y_true, labels), _joined(y_pred, labels)
        correct = (y_true == y_pred).all(axis=1)
        pairs = _label_pairs(y_true, y_pred, labels)
        write_confusion(confusion(*pairs, len(labels) + 1), [*labels, NONE], *_named(pairs, labels), out_dir,
                        f"Labels matched with themselves or {NONE}, {split_name} split")
    else:
        y_true = split["label"].map(label_ids(labels)).to_numpy()
        y_pred = decide(probs, False)
        metrics = classification_metrics(y_true, y_pred, labels)
        actual, predicted, correct = rows, [labels[i] for i in y_pred], y_true == y_pred
        write_confusion(confusion(y_true, y_pred, len(labels)), labels, actual, predicted, out_dir,
                        f"Confusion matrix, {split_name} split")
    # The headline scores are DVC metrics (a column each in `dvc exp show`); the per-label detail is a plain output.
    by_label = metrics.pop("per_label", None) or metrics.pop("per_class")
    write_json(out_dir / "metrics.json", metrics)
    write_json(out_dir / "by_label.json", by_label)
    write_per_label(by_label, out_dir, f"Per-label scores, {split_name} split")
    pd.DataFrame(
        {
            "actual": actual,
            "predicted": predicted,
            "correct": correct,
            "score": probs.max(-1).round(4),
            "text": split["text"].str.slice(0, 120),
        }
    ).to_csv(out_dir / "predictions.csv", index_label="row")
    return metrics


def _joined(indicator: np.ndarray, labels: list[str]) -> list[str]:
    """Each row's label names, in label-id order, joined by "|" ("" for none)."""
    return ["|".join(labels[j] for j in np.flatnonzero(row)) for row in indicator]


def _label_pairs(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> tuple[list[int], list[int]]:
    """(actual, predicted) label ids of a multi-label split, id ``len(labels)`` standing for none: a label both
    true and predicted pairs with itself, a missed one with none as predicted, a false alarm with none as actual."""
    none = len(labels)
    actual, predicted = [], []
    for truth, guess in zip(y_true, y_pred):
        for j in np.flatnonzero(truth | guess):
            actual.append(int(j) if truth[j] else none)
            predicted.append(int(j) if guess[j] else none)
    return actual, predicted


def _named(pairs: tuple[list[int], list[int]], labels: list[str]) -> tuple[list[str], list[str]]:
    names = [*labels, NONE]
    return [names[i] for i in pairs[0]], [names[i] for i in pairs[1]]
