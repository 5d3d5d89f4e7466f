"""What the finetune stage trains on and from: the labelled splits, encoded, and the classifier it starts from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ptft.pipeline.data import has_label_lists, read_labels, read_split
from ptft.pipeline.modeling import classifier, freeze_parameters
from ptft.pipeline.splits import stratified_subset
from ptft.pipeline.training import encode_labelled
from ptft.pipeline.windows import Windows

PREPARED = Path("data/prepared")
TOKENIZER = Path("data/tokenizer")


@dataclass
class FinetuneInputs:
    """The classifier (``finetune.init``, frozen as ``finetune.freeze`` says, reading texts in ``finetune.windows``)
    and the encoded train and validation splits (``finetune.train_examples`` of train, seeded and stratified)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    labels: list[str]
    multi_label: bool
    frozen: int
    validation_rows: pd.DataFrame
    train: Dataset
    validation: Dataset


def finetune_inputs(params: dict[str, Any], seed: int) -> FinetuneInputs:
    """Build what fine-tuning needs from the params and data/prepared (the finetune stage and ptft.op_trace)."""
    finetune = params["finetune"]
    labels = read_labels(PREPARED)
    # The subset first: a finetune.train_examples above the train split fails before the model loads.
    train = stratified_subset(read_split(PREPARED, "train"), finetune["train_examples"], seed)
    multi_label = has_label_lists(train)
    model, tokenizer = classifier(finetune["init"], params["model"], TOKENIZER, labels, finetune["pooling"],
                                  multi_label)
    frozen = freeze_parameters(model, finetune["freeze"])
    windows = Windows.from_params(finetune)
    windows.attach(model.config, tokenizer)  # saved with the model, so whatever reads it windows texts alike
    validation = read_split(PREPARED, "validation")

    def encode(df: pd.DataFrame) -> Dataset:
        return encode_labelled(list(df["text"]), list(df["label"]), model.config.label2id, tokenizer, windows)

    return FinetuneInputs(model, tokenizer, labels, multi_label, frozen, validation, encode(train), encode(validation))
