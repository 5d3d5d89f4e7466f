"""Scoring a fine-tuned model on one prepared split: metrics, confusion matrix, predictions."""

from __future__ import annotations

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
from ptft.pipeline.metrics import classification_metrics, confusion
from ptft.pipeline.plots import write_confusion


@torch.inference_mode()
def predict_proba(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                  batch_size: int, max_length: int | None = None) -> np.ndarray:
    """Class probabilities for ``texts`` (rows) in the order of the model's label ids (columns).

    Batches are formed longest first and padded to their own longest text, so few positions are
    padding; the rows come back in the order of ``texts``.
    """
    model.eval()
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        rows = order[start : start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in rows]}, return_tensors="pt")
        batch = {key: value.to(model.device) for key, value in batch.items()}
        probs[rows] = torch.softmax(model(**batch).logits.float(), dim=-1).cpu().numpy()
    return probs


def evaluate_split(model_dir: Path, split: pd.DataFrame, out_dir: Path, batch_size: int, title: str) -> dict[str, Any]:
    """Write ``metrics.json``, ``confusion.{json,png}`` and ``predictions.csv`` for ``split`` into ``out_dir``."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    probs = predict_proba(model, tokenizer, list(split["text"]), batch_size)
    unknown = sorted(set(split["label"]) - set(labels))
    if unknown:
        raise ValueError(f"{model_dir} does not know the labels {unknown}: was it fine-tuned on this data?")
    label2id = {label: i for i, label in enumerate(labels)}
    y_true = split["label"].map(label2id).to_numpy()
    y_pred = probs.argmax(-1)
    metrics = classification_metrics(y_true, y_pred, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "metrics.json", metrics)
    predicted = [labels[i] for i in y_pred]
    write_confusion(confusion(y_true, y_pred, len(labels)), labels, list(split["label"]), predicted, out_dir, title)
    pd.DataFrame(
        {
            "actual": split["label"],
            "predicted": predicted,
            "correct": y_true == y_pred,
            "score": probs.max(-1).round(4),
            "text": split["text"].str.slice(0, 120),
        }
    ).to_csv(out_dir / "predictions.csv", index_label="row")
    return metrics

