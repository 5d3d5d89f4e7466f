"""Pre-training and fine-tuning with the Hugging Face Trainer, logged with dvclive."""

from __future__ import annotations

import itertools
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
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
    TrainerState,
    TrainingArguments,
    default_data_collator,
)
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ptft.pipeline.blocks import TokenBlocks
from ptft.pipeline.electra import ReplacedTokenDetection, add_uniform
from ptft.pipeline.flops import device_batch, finetune_flops, padded_length, run_epochs
from ptft.pipeline.metrics import classification_metrics, multilabel_metrics
from ptft.pipeline.modeling import flops_per_token, layerwise_param_groups
from ptft.pipeline.params import ParamsError
from ptft.pipeline.runtime import world_size
from ptft.pipeline.windows import Windows, pool

# The step slot of the validation masks' seed: far above any real optimizer step.
VALIDATION_MASK_KEY = 2**32 - 1


class LiveCallback(TrainerCallback):
    """Log the Trainer's losses and eval metrics to dvclive, keyed by the optimizer step.

    transformers' own DVCLiveCallback counts log calls rather than steps and dumps every
    TrainingArguments field as a param; this keeps the plots on a true step axis and the params
    in params.yaml, where DVC already tracks them.
    """

    def __init__(self, live: Live):
        self.live = live

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - Trainer's signature
        if state.is_world_process_zero and logs:
            self.log(state.global_step, logs)

    def log(self, step: int, logs: dict[str, Any]) -> None:
        """Log one Trainer log entry; also used to replay a resumed run's history."""
        self.live.step = step
        for key, value in logs.items():
            if key == "loss":
                self.live.log_metric("train/loss", value)
            elif key.startswith("eval_") and not key.endswith(("runtime", "per_second")):
                self.live.log_metric(f"eval/{key[5:]}", value)


class PlainProgress(TrainerCallback):
    """Progress as plain lines, about one per tenth of the run, for logs that are not a terminal (CI, files).

    On a terminal the Trainer's own tqdm bar shows the steps and the ETA instead.
    """

    def __init__(self, label: str, lines: int = 10):
        self.label, self.lines, self.loss = label, lines, None
        self.started, self.first_step = 0.0, 0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - Trainer's signature
        self.started, self.first_step = time.monotonic(), state.global_step  # a resumed run starts past 0

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001 - Trainer's signature
        self.loss = (logs or {}).get("loss", self.loss)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - Trainer's signature
        step, total = state.global_step, state.max_steps
        if not state.is_world_process_zero or (step % max(1, total // self.lines) and step != total):
            return
        elapsed = time.monotonic() - self.started
        eta = elapsed / max(step - self.first_step, 1) * (total - step)
        loss = "" if self.loss is None else f", loss {self.loss:.4f}"
        print(f"{self.label}: step {step}/{total} ({step / total:.0%}){loss}, {_clock(elapsed)} elapsed, "
              f"ETA {_clock(eta)}", flush=True)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def show_progress(trainer: Trainer, label: str) -> Trainer:
    """Plain progress lines instead of the Trainer's raw log dicts when the output is not a terminal."""
    if trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(PlainProgress(label))
    return trainer


class KeepBest(TrainerCallback):
    """Keep the weights of the epoch with the best validation macro-F1 in memory (the first of equals)."""

    def __init__(self, model: PreTrainedModel):
        self.model, self.best, self.state = model, -math.inf, None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001 - Trainer's signature
        if metrics["eval_macro_f1"] > self.best:
            self.best = metrics["eval_macro_f1"]
            self.state = {key: value.detach().clone() for key, value in self.model.state_dict().items()}

    def restore(self) -> None:
        self.model.load_state_dict(self.state)


def last_checkpoint(work_dir: Path) -> Path | None:
    """The newest complete checkpoint under ``work_dir``.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint cut short by a kill lacks it and is skipped.
    """
    complete = [c for c in work_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
                if c.name.rsplit("-", 1)[1].isdigit() and (c / "trainer_state.json").is_file()]
    return max(complete, key=lambda c: int(c.name.rsplit("-", 1)[1]), default=None)


class MaskedLMTrainer(Trainer):
    """A Trainer that masks each training batch with a generator seeded by (seed, step, micro-batch, rank).

    Masks drawn from one running generator would depend on how many batches the data loader has
    fetched ahead, which a resumed run cannot repeat; seeding by the optimizer step makes a resumed
    run draw exactly the masks of an uninterrupted one.
    """

    def __init__(self, *args: Any, masker: DataCollatorForLanguageModeling, mask_seed: int, uniform: bool = False,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.masker, self.mask_seed, self.uniform = masker, mask_seed, uniform

    def get_batch_samples(self, epoch_iterator, num_batches, device):  # noqa: ANN001 - Trainer's signature
        key = (self.mask_seed, self.state.global_step, self.args.process_index)
        batches = [mask_batch(batch, self.masker, (*key, i), self.uniform) for i, batch in
                   enumerate(itertools.islice(epoch_iterator, num_batches))]
        return super().get_batch_samples(iter(batches), num_batches, device)


def mask_batch(batch: dict[str, torch.Tensor], masker: DataCollatorForLanguageModeling,
               key: tuple[int, ...], uniform: bool = False) -> dict[str, torch.Tensor]:
    """Mask ``batch``'s ``input_ids`` (as ``masker`` replaces them) and add MLM ``labels``, from a generator seeded
    by ``key``; ``uniform``: add ELECTRA's sampling numbers from the same generator (:func:`add_uniform`)."""
    masker.generator = torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
    device = batch["input_ids"].device
    input_ids, labels = masker.torch_mask_tokens(batch["input_ids"].cpu())
    masked = {**batch, "input_ids": input_ids.to(device), "labels": labels.to(device)}
    return add_uniform(masked, masker.generator) if uniform else masked


def _train(trainer: Trainer, live_callback: LiveCallback | None, checkpoint: Path | None) -> None:
    """Train, resuming from ``checkpoint`` if given: replay its logged history first, so the curves match."""
    if checkpoint is not None:
        print(f"resuming from {checkpoint}")
        for entry in TrainerState.load_from_json(str(checkpoint / "trainer_state.json")).log_history:
            if live_callback is not None:
                live_callback.log(entry["step"], entry)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)


def train_speed(trainer: Trainer) -> dict[str, float]:
    """Wall-clock facts of the last ``train()`` call: they vary run to run, so they go to the run log."""
    log = trainer.state.log_history[-1]
    return {key: log[key] for key in ("train_runtime", "train_samples_per_second", "train_steps_per_second")
            if key in log}


def open_live(directory: str | Path) -> Live:
    """A dvclive logger writing into a stage's report directory, and nowhere else."""
    return Live(str(directory), save_dvc_exp=False, dvcyaml=None, report=None, monitor_system=False)


def micro_batch(batch_size: int, accumulation: int, key: str) -> int:
    """The per-process batch of one forward pass.

    ``<key>.batch_size`` is the global batch of one optimizer step whatever the launch: torchrun's
    processes and ``<key>.accumulation`` steps split it, so the schedule and the results do not
    depend on how many processes share the work.
    """
    processes = world_size()
    micro, rest = divmod(batch_size, processes * accumulation)
    if rest or not micro:
        raise ParamsError(f"{key}.batch_size ({batch_size}) must be a multiple of the number of processes "
                          f"({processes}) times {key}.accumulation ({accumulation})")
    return micro


def training_arguments(params: dict[str, Any], seed: int, work_dir: Path, key: str,
                       runtime: dict[str, Any] | None = None, **schedule: Any) -> TrainingArguments:
    """The Trainer settings both stages share: the ``key`` params block (``pretrain`` or ``finetune``), the
    ``runtime`` block's speed options (bf16 autocast, torch.compile), plus stage-specific ``schedule``."""
    runtime = runtime or {}
    accumulation = params.get("accumulation", 1)
    return TrainingArguments(
        output_dir=str(work_dir),
        per_device_train_batch_size=micro_batch(params["batch_size"], accumulation, key),
        gradient_accumulation_steps=accumulation,
        per_device_eval_batch_size=64,
        num_train_epochs=params["epochs"],
        learning_rate=params["lr"],
        weight_decay=params["weight_decay"],
        warmup_steps=params["warmup"],
        lr_scheduler_type="linear",
        # Batches of similar length need less padding (a fine-tuning option; pretrain blocks are all full).
        train_sampling_strategy="group_by_length" if params.get("group_by_length") else "random",
        bf16=runtime.get("bf16", False),
        torch_compile=runtime.get("compile", False),
        # NCCL needs GPUs; gloo runs data-parallel training on CPUs. Without use_cpu, accelerate took a CPU
        # torchrun launch for one process: no DDP, each rank trained its own copy on its half of each batch.
        ddp_backend=None if torch.cuda.is_available() or world_size() == 1 else "gloo",
        # Each process averages its own loss and DDP averages the gradients. (The Trainer's token-count
        # sharing once doubled the loss here: it scaled by the 2 processes but, without use_cpu, summed no counts.)
        average_tokens_across_devices=False,
        report_to="none",  # LiveCallback logs to dvclive instead
        seed=seed,
        data_seed=seed,
        disable_tqdm=not sys.stderr.isatty(),  # a bar on a terminal; PlainProgress lines in a log
        dataloader_pin_memory=torch.cuda.is_available(),
        **{"use_cpu": not torch.cuda.is_available(), **schedule},
    )


def _tokenize(batch: dict[str, list], tokenizer: PreTrainedTokenizerBase) -> dict[str, list]:
    # verbose=False: a document longer than the model's maximum is not an error here (the stream is cut into blocks
    # of seq_len), so transformers' "will result in indexing errors" warning would be false.
    return tokenizer(batch["text"], return_attention_mask=False, return_token_type_ids=False, verbose=False)


def _cut_blocks(batch: dict[str, list], block_size: int) -> dict[str, list]:
    stream = np.fromiter(itertools.chain.from_iterable(batch["input_ids"]), dtype=np.int64)
    n_blocks = len(stream) // block_size
    return {"input_ids": stream[: n_blocks * block_size].reshape(n_blocks, block_size).tolist()}


def group_texts(texts: Dataset | list[str], tokenizer: PreTrainedTokenizerBase, block_size: int,
                num_proc: int | None = None) -> Dataset:
    """Tokenise ``texts``, concatenate them and cut the stream into blocks of ``block_size`` tokens.

    As in run_mlm.py: each document keeps its [CLS] ... [SEP] markers and blocks run across
    document boundaries, so no token is spent on padding. The short tail is dropped. Tokenising
    runs in ``num_proc`` processes; for a file-backed Dataset (:func:`ptft.pipeline.data.read_split_dataset`)
    ``datasets`` caches both steps by fingerprint, so a rerun with the same text and tokenizer
    (a new learning rate, say) reads the blocks back instead of redoing them.
    """
    data = texts if isinstance(texts, Dataset) else Dataset.from_dict({"text": list(texts)})
    encoded = data.map(_tokenize, fn_kwargs={"tokenizer": tokenizer}, batched=True, remove_columns=data.column_names,
                       num_proc=num_proc if num_proc and num_proc > 1 and len(data) >= 2 * num_proc else None,
                       desc="tokenising")
    # One batch: the stream runs across every document, so the blocks do not depend on num_proc.
    return encoded.map(_cut_blocks, fn_kwargs={"block_size": block_size}, batched=True, batch_size=None,
                       remove_columns=encoded.column_names, desc="grouping into blocks")


def pretrain_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_texts: TokenBlocks | Dataset | list[str],
    validation_texts: Dataset | list[str],
    params: dict[str, Any],
    seed: int,
    live: Live | None,
    work_dir: Path,
    runtime: dict[str, Any] | None = None,
    **schedule: Any,
) -> Trainer:
    """The pretrain stage's Trainer: blocks, masking (``mlm``, ``electra``) or shifted labels (``clm``), schedule,
    dvclive.

    ``train_texts`` is the pre-training text's :class:`TokenBlocks` (read memory-mapped), or texts to cut
    into blocks here. ``params["objective"]``: ``mlm`` (masked LM: masks seeded per step, validation
    masked once), ``electra`` (replaced-token detection, :mod:`ptft.pipeline.electra`: masked as MLM, the generator's
    samples drawn with the masks) or ``clm`` (causal LM: predict each next token, nothing random beyond the data
    order).
    The run lasts ``params["epochs"]``, or ``max_steps`` optimizer steps, or as many as ``tokens`` tokens
    take (:func:`pretrain_steps`). Checkpoints go to ``work_dir``; :func:`pretrain_lm` runs it.

    ``schedule`` overrides the evaluation and checkpoint schedule (the benchmark times bare steps).
    """
    num_proc = torch.get_num_threads() if runtime else None
    # Under torchrun, rank 0 tokenises and fills the datasets cache; the other processes then read it.
    with PartialState().main_process_first():
        train = train_texts if isinstance(train_texts, TokenBlocks) else \
            group_texts(train_texts, tokenizer, params["seq_len"], num_proc)
        validation = group_texts(validation_texts, tokenizer, params["seq_len"], num_proc)
    if params["objective"] in ("mlm", "electra"):
        electra = params["objective"] == "electra"
        # MLM replaces masked tokens 80/10/10 ([MASK], random, kept); ELECTRA's generator sees [MASK] at each one.
        masker = DataCollatorForLanguageModeling(
            tokenizer, mlm_probability=params["mask_prob"], mask_replace_prob=1.0 if electra else 0.8,
            random_replace_prob=0.0 if electra else 0.1
        )
        # Validation is masked once, so every evaluation scores the same masked tokens.
        masked = mask_batch(validation.with_format("torch")[:], masker, (seed, VALIDATION_MASK_KEY), electra)
        validation = Dataset.from_dict({key: value.tolist() for key, value in masked.items()})
        trainer_class, extra = MaskedLMTrainer, {"masker": masker, "mask_seed": seed, "uniform": electra,
                                                 "data_collator": default_data_collator}
    else:  # the labels are the inputs; the model shifts them by one
        trainer_class, extra = Trainer, {"data_collator": DataCollatorForLanguageModeling(tokenizer, mlm=False)}
    total_steps = pretrain_steps(params, len(train))
    if params.get("max_steps") or params.get("tokens"):  # a budget stands instead of epochs
        schedule = {"max_steps": total_steps, **schedule}
    log_every = max(1, total_steps // 100)
    # Evaluate and checkpoint on a multiple of the logging interval: a run resumed there logs the
    # same averaged losses as one that was never interrupted.
    eval_every = log_every * max(1, total_steps // params["evals"] // log_every)
    args = training_arguments(params, seed, work_dir, "pretrain", runtime, **{
        "logging_steps": log_every, "eval_strategy": "steps", "eval_steps": eval_every,
        "save_strategy": "steps", "save_steps": eval_every, "save_total_limit": 1, **schedule})
    return show_progress(trainer_class(model=model, args=args, train_dataset=train, eval_dataset=validation,
                                       callbacks=[LiveCallback(live)] if live is not None else [], **extra), "pretrain")


# A token or step budget worth more passes than this over the pre-training text is a mistake, not a plan: the model
# would memorise the text (configs/gpu.yaml's token budget on BBC News' train split would be thousands of passes).
MAX_BUDGET_PASSES = 100


def check_budget(params: dict[str, Any], blocks: int) -> None:
    """Refuse (one line, before training) a ``tokens`` or ``max_steps`` budget of over :data:`MAX_BUDGET_PASSES`
    passes over ``blocks`` blocks of pre-training text; an ``epochs`` budget says its passes itself."""
    key = next((key for key in ("max_steps", "tokens") if params.get(key)), None)
    if key is None:
        return
    passes = pretrain_steps(params, blocks) * params["batch_size"] / blocks
    if passes > MAX_BUDGET_PASSES:
        raise ParamsError(f"pretrain.{key} ({params[key]:,}) is {passes:,.0f} passes over the pre-training text "
                        f"({blocks * params['seq_len']:,} tokens in data/corpus), more than {MAX_BUDGET_PASSES}: "
                        f"point pretrain.corpus at more text first (a large-corpus config such as configs/gpu.yaml "
                        f"needs one), or lower pretrain.{key}")


def pretrain_steps(params: dict[str, Any], blocks: int) -> int:
    """Optimizer steps of a pre-training run: ``max_steps``, else enough for ``tokens`` tokens, else ``epochs``
    passes over ``blocks`` blocks (the last batch of an epoch may be short)."""
    if params.get("max_steps"):
        return params["max_steps"]
    if params.get("tokens"):
        return max(1, math.ceil(params["tokens"] / (params["batch_size"] * params["seq_len"])))
    return max(1, math.ceil(math.ceil(blocks / params["batch_size"]) * params["epochs"]))


def pretrain_lm(trainer: Trainer) -> tuple[dict[str, float], dict[str, float]]:
    """Run a :func:`pretrain_trainer`, resuming from a checkpoint in its output directory if one is there.

    Returns the validation loss and perplexity, and the run's speed (for the run log).
    """
    work_dir = Path(trainer.args.output_dir)
    seq_len = len(trainer.train_dataset[0]["input_ids"])  # every block is pretrain.seq_len tokens
    live_callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, LiveCallback)), None)
    _train(trainer, live_callback, last_checkpoint(work_dir))
    # The Trainer evaluates at the last step too: that is the final validation loss.
    loss = next(h["eval_loss"] for h in reversed(trainer.state.log_history) if "eval_loss" in h)
    blocks = len(trainer.train_dataset)
    metrics = {
        "eval_loss": loss,
        # ELECTRA's loss adds the generator's and the weighted detection loss: no perplexity of anything
        **({} if isinstance(trainer.model, ReplacedTokenDetection) else {"perplexity": math.exp(loss)}),
        "train_blocks": blocks,
        "train_tokens": blocks * seq_len,
        "steps": trainer.state.global_step,
    }
    speed = train_speed(trainer)
    speed["train_tokens_per_second"] = speed.get("train_samples_per_second", 0.0) * seq_len
    return metrics, speed


def encode_labelled(
    texts: list[str], labels: list[str] | list[list[str]], label2id: dict[str, int],
    tokenizer: PreTrainedTokenizerBase, windows: Windows
) -> Dataset:
    """A tokenised classification dataset, a row per window of each text (:mod:`ptft.pipeline.windows`; one with
    truncation) with its text's label and index (``document``); padding is left to the collator (per batch).

    Multi-label rows (lists of labels) become multi-hot float vectors, the targets of the BCE loss.
    """
    if labels and isinstance(labels[0], list):
        names = sorted(label2id, key=label2id.get)
        targets: list = [[float(name in row) for name in names] for row in labels]
    else:
        targets = [label2id[label] for label in labels]

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        encoded, source = windows.encode(tokenizer, batch["text"])
        return {**encoded, "label": [batch["label"][i] for i in source], "document": [indices[i] for i in source]}

    data = Dataset.from_dict({"text": texts, "label": targets})
    return data.map(encode, batched=True, with_indices=True, remove_columns=["text", "label"])


def _compute_metrics(prediction: EvalPrediction, documents: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 per document: the logits of a document's windows (rows of ``documents``) averaged."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    logits = pool(logits, documents, int(documents[-1]) + 1 if len(documents) else 0)
    label_ids = prediction.label_ids[np.flatnonzero(np.diff(documents, prepend=-1))]  # each document's first window
    if label_ids.ndim == 2:  # multi-label: every label whose logit is above 0 (probability 0.5)
        labels = [str(i) for i in range(logits.shape[1])]
        scores = multilabel_metrics(label_ids.astype(int), (logits > 0).astype(int), labels)
    else:
        scores = classification_metrics(label_ids, logits.argmax(-1))
    return {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}


def _divisor_near(n: int, target: int) -> int:
    """The divisor of ``n`` closest to ``target`` (the smaller one on a tie)."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - target), d))


def finetune_trainer(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    validation: Dataset,
    params: dict[str, Any],
    seed: int,
    live: Live | None,
    work_dir: Path | None,
    runtime: dict[str, Any] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    **overrides: Any,
) -> tuple[Trainer, KeepBest | None]:
    """The Trainer :func:`finetune_classifier` runs, and the callback that keeps the best evaluation's weights in
    memory when nothing is saved (``work_dir=None``). ``overrides`` replace its evaluation and checkpoint
    schedule (``ptft.op_trace`` runs bare steps)."""
    steps_per_epoch = math.ceil(len(train) / params["batch_size"])
    if work_dir:  # evaluate and checkpoint every epoch; the Trainer reloads the best one at the end
        schedule = {"eval_strategy": "epoch", "save_strategy": "epoch", "save_total_limit": 1,
                    "load_best_model_at_end": True, "metric_for_best_model": "macro_f1", "greater_is_better": True}
    else:  # the comparison's runs: at least min_steps optimizer steps, evaluated `evals` times
        epochs = run_epochs(len(train), params)
        params = {**params, "epochs": epochs}
        schedule = {"eval_strategy": "steps", "eval_steps": max(1, steps_per_epoch * epochs // params["evals"]),
                    "save_strategy": "no"}
    args = training_arguments(
        params,
        seed,
        work_dir or Path(tempfile.gettempdir()) / "ptft-unsaved",  # written to only when saving
        "finetune",
        runtime,
        # About four loss points per epoch, on a step that divides the epoch: a run resumed from an
        # epoch checkpoint then logs the same averaged losses as an uninterrupted one.
        logging_steps=_divisor_near(steps_per_epoch, steps_per_epoch // 4),
        **{**schedule, **overrides},
    )
    live_callback = LiveCallback(live) if live is not None else None
    keep_best = None if work_dir else KeepBest(model)
    decay = params.get("layer_lr_decay", 1.0)
    optimizer = None
    if decay != 1.0:  # otherwise the Trainer's own AdamW, with one learning rate
        groups = layerwise_param_groups(model, params["lr"], decay, params["weight_decay"])
        optimizer = torch.optim.AdamW(groups, lr=params["lr"])
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=validation,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=partial(_compute_metrics, documents=np.asarray(validation["document"])),
        callbacks=[c for c in (live_callback, keep_best) if c] + list(callbacks),
        optimizers=(optimizer, None),
    )
    return show_progress(trainer, "finetune"), keep_best


def finetune_classifier(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train: Dataset,
    validation: Dataset,
    params: dict[str, Any],
    seed: int,
    live: Live | None,
    work_dir: Path | None,
    runtime: dict[str, Any] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> tuple[dict[str, float], dict[str, float]]:
    """Fine-tune, evaluate on validation every epoch and keep the epoch with the best macro-F1.

    Checkpoints every epoch into ``work_dir`` and resumes from the last one found there. With
    ``work_dir=None`` (the comparison's short runs, which restart rather than resume) nothing is
    written: the run lasts at least ``params["min_steps"]`` steps, is evaluated ``params["evals"]``
    times and keeps the best evaluation in memory. The model ends with the best evaluation's weights.
    ``params["layer_lr_decay"]`` below 1 gives each layer a smaller learning rate than the one
    above it (see :func:`layerwise_param_groups`). ``callbacks`` join the Trainer's (a search trial's pruning,
    which may stop the run but never changes what it writes).
    Returns the metrics of the best epoch and the run's speed (for the run log).
    """
    trainer, keep_best = finetune_trainer(model, tokenizer, train, validation, params, seed, live, work_dir, runtime,
                                          callbacks)
    live_callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, LiveCallback)), None)
    _train(trainer, live_callback, last_checkpoint(work_dir) if work_dir else None)
    if keep_best:
        keep_best.restore()
    history = [h for h in trainer.state.log_history if "eval_macro_f1" in h]
    best = max(history, key=lambda h: h["eval_macro_f1"])  # the first of equals, as the Trainer keeps
    metrics = {
        "best_epoch": best["epoch"],
        "validation_accuracy": best["eval_accuracy"],
        "validation_macro_f1": best["eval_macro_f1"],
        "train_examples": len(set(train["document"])),
        "train_windows": len(train),  # more than the examples where texts are read in several windows
        "steps": trainer.state.global_step,
    }
    speed = train_speed(trainer)
    if speed.get("train_runtime"):  # the FLOP/s that `ptft estimate` scales to other data (ptft.pipeline.cost)
        lengths = [len(ids) for ids in train["input_ids"]]  # already cut at max_length by the encoding
        length = padded_length(lengths, device_batch(params), max(lengths), params.get("group_by_length", False))
        flops = finetune_flops(flops_per_token(model, max(1, round(length)), 0.0), length,
                               trainer.state.global_step * params["batch_size"], len(history) * len(validation))
        speed["train_flops_per_second"] = flops / speed["train_runtime"]
    return metrics, speed
