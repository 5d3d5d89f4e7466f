"""The fine-tuned classifier as ONNX: exported with torch.onnx (the dynamo exporter), quantised to int8 with ONNX
Runtime's dynamic quantisation, checked against PyTorch on the validation split, and run with ONNX Runtime.

An exported directory is self-contained: ``model.onnx`` (and ``model.int8.onnx``), the tokenizer, and the model's
``config.json`` with its label names, problem type and threshold. Nothing in it depends on where or when it was
built: the exporter's per-node records of source files and stack traces are removed (they hold this machine's
paths), so a forced rerun writes the same bytes.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ptft.pipeline.artifacts import save_loaded_tokenizer
from ptft.pipeline.evaluation import predict_proba
from ptft.pipeline.labels import decide, decision_threshold, is_multi_label, label_ids, label_names
from ptft.pipeline.metrics import classification_metrics, multilabel_indicator, multilabel_metrics
from ptft.pipeline.onnx_classifier import INT8_FILE, ONNX_FILE, OnnxClassifier
from ptft.pipeline.params import UserError

INPUTS = ("input_ids", "attention_mask")  # what pooled_logits feeds a model


class ExportError(UserError):
    """An export that does not match the PyTorch model it came from, with what to do about it."""


def export_onnx(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, opset: int) -> None:
    """Export ``model`` to ``path`` as ONNX, batch size and sequence length dynamic."""
    sample = tokenizer.pad({"input_ids": tokenizer(["an example", "a longer example text"])["input_ids"]},
                           return_tensors="pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=_max_positions(model.config))
    # The exporter's notes on torch's own internals (torchvision absent, a deprecated pytree check, axis names it
    # renames) are nothing a user can act on; the parity check on validation is what tells a good export.
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(LeafSpec|The axis name)")
            program = torch.onnx.export(
                _Logits(model).eval(), (), kwargs={name: sample[name] for name in INPUTS}, input_names=list(INPUTS),
                output_names=["logits"], dynamic_shapes={name: {0: batch, 1: sequence} for name in INPUTS},
                opset_version=opset, dynamo=True, optimize=True, external_data=False, verbose=False,
            )
    finally:
        registration.setLevel(level)
    proto = program.model_proto
    strip_metadata(proto)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)


class _Logits(torch.nn.Module):
    """The classifier's logits alone: a decoder's output also holds its key/value cache, which has no ONNX form."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def _max_positions(config: Any) -> int:
    """The longest sequence the model takes (its position table), for the exporter's dynamic sequence dimension."""
    return int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 512))


def strip_metadata(model: onnx.ModelProto) -> None:
    """Remove the exporter's per-node records (source files, stack traces, module names) and doc strings: they
    hold this machine's paths, and the graph computes the same without them."""
    del model.metadata_props[:]
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        del graph.metadata_props[:]
        graph.doc_string = ""
        for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
            del value.metadata_props[:]
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            for attribute in node.attribute:  # the branches and bodies of If and Loop nodes
                graphs += [attribute.g] if attribute.HasField("g") else list(attribute.graphs)
    for function in model.functions:
        for node in function.node:
            del node.metadata_props[:]
            node.doc_string = ""


def quantize_int8(source: Path, target: Path) -> None:
    """A dynamically quantised copy of ``source``: int8 weights, activations quantised at run time.

    The graph is first pre-processed (shape inference and ONNX Runtime's graph optimisations), as ONNX Runtime
    recommends. Weights get per-channel scales and 7 bits (``reduce_range``): on CPUs without VNNI instructions,
    8-bit products can saturate.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_name(f".{target.name}.prepared")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(prepared, target, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    finally:
        prepared.unlink(missing_ok=True)


def export_classifier(model_dir: Path, out: Path, validation: pd.DataFrame, settings: dict[str, Any],
                      batch_size: int, threads: int) -> dict[str, Any]:
    """Write the ONNX export of ``model_dir`` (and its int8 copy, ``settings["quantize"]``) into ``out`` and check
    both against the PyTorch model on ``validation``; return the checks and file sizes.

    The ONNX model must predict the same label (label set, multi-label) for every document with probabilities
    within ``settings["max_probability_diff"]``; the int8 copy may lose at most ``settings["int8_max_accuracy_drop"]``
    points of accuracy. Either failure raises :class:`ExportError` naming the numbers and the params to change.
    """
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts, labels = list(validation["text"]), label_names(model.config)
    multi_label, threshold = is_multi_label(model.config), decision_threshold(model.config)
    if multi_label:
        truth = multilabel_indicator(validation["label"], labels)
    else:
        truth = validation["label"].map(label_ids(labels)).to_numpy()

    def scores(probs: np.ndarray) -> dict[str, float]:
        score = multilabel_metrics if multi_label else classification_metrics
        found = score(truth, decide(probs, multi_label, threshold), labels)
        return {"accuracy": found["accuracy"], "macro_f1": found["macro_f1"]}

    reference = predict_proba(model, tokenizer, texts, batch_size)
    weights = sum(file.stat().st_size for file in model_dir.glob("*.safetensors"))
    metrics: dict[str, Any] = {"documents": len(texts), "pytorch": {**scores(reference), "size_mb": _mb(weights)}}
    model.config.save_pretrained(out)  # the labels, problem type and threshold, beside the tokenizer
    save_loaded_tokenizer(tokenizer, out)
    export_onnx(model, tokenizer, out / ONNX_FILE, settings["opset"])
    variants = [("onnx", ONNX_FILE)] + ([("int8", INT8_FILE)] if settings["quantize"] else [])
    if settings["quantize"]:
        quantize_int8(out / ONNX_FILE, out / INT8_FILE)
    for name, file in variants:
        probs = OnnxClassifier(out, file, threads).predict_proba(texts, batch_size)
        same = decide(probs, multi_label, threshold) == decide(reference, multi_label, threshold)
        same = same.reshape(len(texts), -1).all(axis=1)
        found = scores(probs)
        metrics[name] = {
            **found,
            "accuracy_change_points": round(100 * (found["accuracy"] - metrics["pytorch"]["accuracy"]), 4),
            "same_prediction": float(same.mean()),
            "max_probability_diff": at_most(float(np.abs(probs - reference).max())),
            "size_mb": _mb((out / file).stat().st_size),
        }
    _check(metrics, settings)
    return metrics


def _check(metrics: dict[str, Any], settings: dict[str, Any]) -> None:
    """Raise :class:`ExportError` when the ONNX model departs from PyTorch, or int8 loses too much accuracy."""
    onnx_, limit = metrics["onnx"], settings["max_probability_diff"]
    if onnx_["same_prediction"] < 1 or onnx_["max_probability_diff"] > limit:
        changed = round((1 - onnx_["same_prediction"]) * metrics["documents"])
        raise ExportError(
            f"the ONNX export departs from the PyTorch model on validation: {changed} of {metrics['documents']} "
            f"predictions differ and the largest probability difference is {onnx_['max_probability_diff']:.3g} "
            f"(export.max_probability_diff: {limit:g}). Check that the model exports cleanly (a newer torch or "
            f"onnxscript), or raise export.max_probability_diff if the difference is acceptable"
        )
    int8, allowed = metrics.get("int8"), settings["int8_max_accuracy_drop"]
    if int8 is not None and -int8["accuracy_change_points"] > allowed:
        raise ExportError(
            f"the int8 model loses {-int8['accuracy_change_points']:.2f} points of validation accuracy "
            f"({metrics['pytorch']['accuracy']:.4f} -> {int8['accuracy']:.4f}); export.int8_max_accuracy_drop allows "
            f"{allowed:g}. Set export.quantize: false to export without it, or raise the limit"
        )


def at_most(value: float) -> float:
    """``value`` rounded up to one significant digit (1.13e-06 -> 2e-06).

    ONNX Runtime picks its kernels by the CPU (AVX-512 or AVX2) and, unlike torch, has no setting to pin them, so
    the last digits of its probabilities differ across CPUs; a bound by one digit stays the same, and the report
    with it (docs/reproducibility.md)."""
    if value <= 0:
        return 0.0
    exponent = math.floor(math.log10(value))
    return float(f"{math.ceil(round(value / 10**exponent, 9))}e{exponent}")


def _mb(size: int) -> float:
    return round(size / 1e6, 3)

