"""Unit tests for ptft.pipeline.export: tiny ModernBERT, BERT (multi-label) and GPT-2 classifiers exported to ONNX
and int8, checked against PyTorch, byte-identical on a rerun, free of this machine's paths."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer, GPT2ForSequenceClassification

from ptft.pipeline.evaluation import predict_proba
from ptft.pipeline.export import INT8_FILE, ONNX_FILE, ExportError, _check, export_classifier
from ptft.pipeline.modeling import build_causal_config, classifier
from ptft.pipeline.onnx_classifier import OnnxClassifier
from ptft.pipeline.tokenizer import save_tokenizer, train_tokenizer
from tests.test_evaluation_multilabel import SPLIT, tiny_model

LABELS = ["business", "sport", "tech"]
SETTINGS = {"opset": 20, "quantize": True, "max_probability_diff": 1e-4, "int8_max_accuracy_drop": 100.0}
TEXTS = [f"the {w} market rose while the {w} team won {'again ' * n}" for n, w in
         enumerate(("stock", "football", "chip", "tennis", "bank", "phone"))]
VALIDATION = pd.DataFrame({"text": TEXTS, "label": [LABELS[i % 3] for i in range(len(TEXTS))]})


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    save_tokenizer(train_tokenizer(TEXTS * 4, vocab_size=120, min_frequency=1), out)
    return out


def saved(path, family: str, tokenizer_dir):
    """A randomly initialised classifier of ``family`` saved as finetune saves one."""
    if family == "gpt2":
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        config = build_causal_config({"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 64,
                                      "dropout": 0.0}, tokenizer)
        config.update({"num_labels": 3, "id2label": dict(enumerate(LABELS)),
                       "label2id": {label: i for i, label in enumerate(LABELS)}})
        model = GPT2ForSequenceClassification(config)
    else:
        model, tokenizer = classifier("scratch", {"family": family, "layers": 2, "hidden": 32, "heads": 2,
                                                  "intermediate": 64, "max_position": 64, "dropout": 0.0},
                                      tokenizer_dir, LABELS, "mean")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer


@pytest.mark.parametrize("family", ["modernbert", "bert", "gpt2"])
def test_export_matches_pytorch_on_every_document(family, tokenizer_dir, tmp_path):
    model, tokenizer = saved(tmp_path / "model", family, tokenizer_dir)
    out = tmp_path / "exported"
    out.mkdir()
    metrics = export_classifier(tmp_path / "model", out, VALIDATION, SETTINGS, batch_size=4, threads=1)
    assert metrics["documents"] == len(TEXTS)
    assert metrics["onnx"]["same_prediction"] == 1.0 and metrics["onnx"]["max_probability_diff"] <= 1e-4
    assert metrics["onnx"]["accuracy"] == metrics["pytorch"]["accuracy"]
    assert metrics["int8"]["size_mb"] < metrics["onnx"]["size_mb"]
    # Self-contained: the directory alone (tokenizer, labels, graph) gives PyTorch's probabilities.
    reference = predict_proba(model, tokenizer, TEXTS, 4)
    exported = OnnxClassifier(out)
    assert exported.labels == LABELS and not exported.multi_label
    assert np.abs(exported.predict_proba(TEXTS, 2) - reference).max() <= 1e-4
    assert OnnxClassifier(out, INT8_FILE).predict_proba(TEXTS, 2).shape == (len(TEXTS), 3)


def test_export_is_byte_identical_on_a_rerun_and_holds_no_path(tokenizer_dir, tmp_path):
    saved(tmp_path / "model", "modernbert", tokenizer_dir)
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        out.mkdir()
        export_classifier(tmp_path / "model", out, VALIDATION, SETTINGS, batch_size=4, threads=1)
        digests.append({name: hashlib.md5((out / name).read_bytes()).hexdigest() for name in (ONNX_FILE, INT8_FILE)})
        for name in (ONNX_FILE, INT8_FILE):
            data = (out / name).read_bytes()
            for where in (str(tmp_path), sys.prefix, "site-packages", "stack_trace"):
                assert where.encode() not in data, (name, where)
    assert digests[0] == digests[1]


def test_a_multi_label_export_keeps_the_threshold_and_compares_label_sets(tmp_path):
    (tmp_path / "model").mkdir()
    model, tokenizer = tiny_model(tmp_path / "model")
    out = tmp_path / "exported"
    out.mkdir()
    metrics = export_classifier(tmp_path / "model", out, SPLIT, SETTINGS, batch_size=4, threads=1)
    assert metrics["onnx"]["same_prediction"] == 1.0
    exported = OnnxClassifier(out)
    assert exported.multi_label and exported.threshold == 0.4
    assert exported.predict_proba(list(SPLIT["text"]), 4) == pytest.approx(
        predict_proba(model, tokenizer, list(SPLIT["text"]), 4), abs=1e-5)


def test_without_quantize_there_is_no_int8_model(tokenizer_dir, tmp_path):
    saved(tmp_path / "model", "modernbert", tokenizer_dir)
    out = tmp_path / "exported"
    out.mkdir()
    metrics = export_classifier(tmp_path / "model", out, VALIDATION, {**SETTINGS, "quantize": False}, 4, 1)
    assert "int8" not in metrics and not (out / INT8_FILE).exists() and (out / ONNX_FILE).is_file()


def test_an_export_that_departs_from_pytorch_fails_with_one_line(tokenizer_dir, tmp_path):
    saved(tmp_path / "model", "modernbert", tokenizer_dir)
    out = tmp_path / "exported"
    out.mkdir()
    with pytest.raises(ExportError, match=r"largest probability difference is .* \(export.max_probability_diff: "
                                          r"1e-12\)") as err:
        export_classifier(tmp_path / "model", out, VALIDATION, {**SETTINGS, "max_probability_diff": 1e-12}, 4, 1)
    assert "\n" not in str(err.value)


def test_the_gates():
    good = {"documents": 200, "pytorch": {"accuracy": 0.95},
            "onnx": {"same_prediction": 1.0, "max_probability_diff": 2e-6},
            "int8": {"accuracy": 0.945, "accuracy_change_points": -0.5}}
    _check(good, SETTINGS | {"int8_max_accuracy_drop": 0.5})
    with pytest.raises(ExportError, match="2 of 200 predictions differ"):
        _check({**good, "onnx": {"same_prediction": 0.99, "max_probability_diff": 2e-6}}, SETTINGS)
    with pytest.raises(ExportError, match="int8 model loses 0.50 points .* export.int8_max_accuracy_drop allows 0.4. "
                                          "Set export.quantize: false"):
        _check(good, SETTINGS | {"int8_max_accuracy_drop": 0.4})
    better = {**good, "int8": {"accuracy": 0.99, "accuracy_change_points": 4.0}}
    _check(better, SETTINGS | {"int8_max_accuracy_drop": 0})  # a gain is never a failure


def test_probability_differences_are_reported_as_a_one_digit_bound():
    """ONNX Runtime's last digits depend on the CPU's kernels: the report keeps a bound that does not."""
    from ptft.pipeline.export import at_most

    assert [at_most(v) for v in (1.13e-06, 1.19e-06, 2e-06, 0.0314, 9.5e-07, 0.0)] == \
        [2e-06, 2e-06, 2e-06, 0.04, 1e-06, 0.0]
