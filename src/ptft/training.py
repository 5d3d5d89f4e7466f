"""Pre-training and fine-tuning with the Hugging Face Trainer, logged with dvclive."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from dvclive import Live
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorWithPadding,
    EvalPrediction,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from ptft.metrics import classification_metrics

# Validation points per pre-training run: enough for a loss curve, few enough to stay cheap.
PRETRAIN_EVALS = 8


class LiveCallback(TrainerCallback):
    """Log the Trainer's losses and eval metrics to dvclive, keyed by the optimizer step.

    transformers' own DVCLiveCallback counts log calls rather than steps and dumps every
    TrainingArguments field as a param; this keeps the plots on a true step axis and the params
    in params.yaml, where DVC already tracks them.
    """

    def __init__(self, live: Live):
        self.live = live

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - Trainer's signature
        if not state.is_world_process_zero or not logs:
            return
        self.live.step = state.global_step
        for key, value in logs.items():
            if key == "loss":
                self.live.log_metric("train/loss", value)
            elif key.startswith("eval_") and not key.endswith(("runtime", "per_second")):
                self.live.log_metric(f"eval/{key[5:]}", value)


def open_live(directory: str | Path) -> Live:
    """A dvclive logger writing into a stage's report directory, and nowhere else."""
    return Live(str(directory), save_dvc_exp=False, dvcyaml=None, report=None, monitor_system=False)


def training_arguments(params: dict[str, Any], seed: int, work_dir: Path, **schedule: Any) -> TrainingArguments:
    """The Trainer settings both stages share (from their params block), plus stage-specific ``schedule``."""
    return TrainingArguments(
        output_dir=str(work_dir),
        per_device_train_batch_size=params["batch_size"],
        per_device_eval_batch_size=64,
        num_train_epochs=params["epochs"],
        learning_rate=params["lr"],
        weight_decay=params["weight_decay"],
        warmup_steps=params["warmup"],
        lr_scheduler_type="linear",
        report_to="none",  # LiveCallback logs to dvclive instead
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        **schedule,
    )


def group_texts(texts: list[str], tokenizer: PreTrainedTokenizerBase, block_size: int) -> Dataset:
    """Tokenise ``texts``, concatenate them and cut the stream into blocks of ``block_size`` tokens.

    As in run_mlm.py: each document keeps its [CLS] ... [SEP] markers and blocks run across
    document boundaries, so no token is spent on padding. The short tail is dropped.
    """
    encoded = Dataset.from_dict({"text": texts}).map(
        lambda batch: tokenizer(batch["text"], return_attention_mask=False, return_token_type_ids=False),
        batched=True,
        remove_columns=["text"],
    )
    stream = np.fromiter((i for ids in encoded["input_ids"] for i in ids), dtype=np.int64)
    n_blocks = len(stream) // block_size
    blocks = stream[: n_blocks * block_size].reshape(n_blocks, block_size)
    return Dataset.from_dict({"input_ids": blocks.tolist()})


def pretrain_mlm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_texts: list[str],
    validation_texts: list[str],
    params: dict[str, Any],
    seed: int,
    live: Live,
    work_dir: Path,
) -> dict[str, float]:
    """Masked-LM pre-training on ``train_texts``; returns validation loss and perplexity."""
    train = group_texts(train_texts, tokenizer, params["seq_len"])
    validation = group_texts(validation_texts, tokenizer, params["seq_len"])
    # 80/10/10 replacement of the masked tokens, from a generator seeded for reproducibility.
    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=params["mask_prob"], mask_replace_prob=0.8, random_replace_prob=0.1, seed=seed
    )
    steps_per_epoch = math.ceil(len(train) / params["batch_size"])
    total_steps = max(1, math.ceil(steps_per_epoch * params["epochs"]))
    args = training_arguments(
        params,
        seed,
        work_dir,
        logging_steps=max(1, total_steps // 100),
        eval_strategy="steps",
        eval_steps=max(1, total_steps // PRETRAIN_EVALS),
        save_strategy="no",
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=collator,
        callbacks=[LiveCallback(live)],
    )
    trainer.train()
    # The Trainer evaluates at the last step too; reuse that rather than draw new masks.
    loss = next(h["eval_loss"] for h in reversed(trainer.state.log_history) if "eval_loss" in h)
    return {
        "eval_loss": loss,
        "perplexity": math.exp(loss),
        "train_blocks": len(train),
        "train_tokens": len(train) * params["seq_len"],
        "steps": trainer.state.global_step,
    }


def encode_labelled(
    texts: list[str], labels: list[str], label2id: dict[str, int], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> Dataset:
    """A tokenised classification dataset; padding is left to the collator (per batch)."""
    data = Dataset.from_dict({"text": texts, "label": [label2id[label] for label in labels]})
    return data.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )


def _compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    scores = classification_metrics(prediction.label_ids, logits.argmax(-1))
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}


def finetune_classifier(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    validation: Dataset,
    params: dict[str, Any],
    seed: int,
    live: Live,
    work_dir: Path,
) -> dict[str, float]:
    """Fine-tune, evaluate on validation every epoch and keep the epoch with the best macro-F1."""
    args = training_arguments(
        params,
        seed,
        work_dir,
        logging_steps=max(1, len(train) // params["batch_size"] // 4),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        save_only_model=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=_compute_metrics,
        callbacks=[LiveCallback(live)],
    )
    trainer.train()
    history = [h for h in trainer.state.log_history if "eval_macro_f1" in h]
    best = max(history, key=lambda h: h["eval_macro_f1"])  # the first of equals, as the Trainer keeps
    shutil.rmtree(work_dir, ignore_errors=True)
    return {
        "best_epoch": best["epoch"],
        "validation_accuracy": best["eval_accuracy"],
        "validation_macro_f1": best["eval_macro_f1"],
        "train_examples": len(train),
        "steps": trainer.state.global_step,
    }
