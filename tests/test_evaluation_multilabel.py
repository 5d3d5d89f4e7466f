"""Unit tests for ptft.pipeline.evaluation with a tiny multi-label model (sigmoid outputs, a saved threshold)."""

from __future__ import annotations

import collections
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertTokenizerFast

from ptft.pipeline.evaluation import evaluate_split, predict_proba

LABELS = ["business", "sport", "tech"]
WORDS = ["the", "market", "team", "chip", "rose", "won", "new", "shares", "match", "phone"]
# Zero classifier weights and these biases: every text gets exactly these probabilities, so the threshold
# (0.4) decides by hand: business and tech, never sport. At 0.5 it would be tech alone.
PROBS = [0.45, 0.3, 0.6]
SPLIT = pd.DataFrame({
    "text": ["the market rose", "the team won", "new chip", "the shares rose", "match won", "new phone"],
    "label": [["business"], ["sport"], ["tech"], ["business", "tech"], np.array(["sport"], dtype=object), []],
})


def tiny_model(path, problem_type: str | None = "multi_label_classification", threshold: float | None = 0.4):
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=len(LABELS),
                        id2label=dict(enumerate(LABELS)), label2id={name: i for i, name in enumerate(LABELS)},
                        problem_type=problem_type)
    if threshold is not None:
        config.threshold = threshold
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([math.log(p / (1 - p)) for p in PROBS]))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model, tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("multilabel")
    tiny_model(path)
    return path


def test_predict_proba_is_sigmoid_for_multi_label(tmp_path):
    model, tokenizer = tiny_model(tmp_path)
    probs = predict_proba(model, tokenizer, list(SPLIT["text"]), batch_size=4)
    assert probs == pytest.approx(np.tile(PROBS, (len(SPLIT), 1)), abs=1e-6)  # columns independent, no softmax


def test_evaluate_split_multi_label(model_dir, tmp_path):
    metrics = evaluate_split(model_dir, SPLIT, tmp_path, 4, "test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["by_label.json", "confusion.json", "confusion.png",
                                                          "metrics.json", "per_label.json", "per_label.png",
                                                          "predictions.csv"]
    assert list(metrics) == ["accuracy", "macro_f1", "micro_f1", "subset_accuracy", "hamming_loss", "documents",
                             "threshold"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert metrics["threshold"] == 0.4 and metrics["documents"] == 6
    # Every row predicted business|tech: only row 3 exactly right; business 2 tp 4 fp, tech 2 tp 4 fp.
    assert metrics["accuracy"] == metrics["subset_accuracy"] == pytest.approx(1 / 6)
    by_label = json.loads((tmp_path / "by_label.json").read_text())
    assert by_label["sport"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert by_label["tech"] == pytest.approx({"precision": 2 / 6, "recall": 1.0, "f1": 0.5, "support": 2})
    assert {row["label"] for row in json.loads((tmp_path / "per_label.json").read_text())} == set(LABELS)
    predictions = pd.read_csv(tmp_path / "predictions.csv", keep_default_na=False)
    assert list(predictions.columns) == ["row", "actual", "predicted", "correct", "score", "text"]
    assert list(predictions["actual"]) == ["business", "sport", "tech", "business|tech", "sport", ""]
    assert set(predictions["predicted"]) == {"business|tech"}
    assert list(predictions["correct"]) == [False, False, False, True, False, False]
    assert predictions["score"].tolist() == [0.6] * 6
    assert predictions["text"][0] == "the market rose"
    # Each label pairs with itself (hit) or "(none)" (miss, false alarm): business 2 hits and 4 false alarms,
    # sport 2 misses, tech 2 hits and 4 false alarms.
    pairs = collections.Counter((r["actual"], r["predicted"]) for r in json.loads((tmp_path / "confusion.json")
                                                                                    .read_text()))
    assert pairs == {("business", "business"): 2, ("(none)", "business"): 4, ("sport", "(none)"): 2,
                     ("tech", "tech"): 2, ("(none)", "tech"): 4}


def test_evaluate_split_threshold_defaults_to_half(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    tiny_model(model_dir, threshold=None)
    metrics = evaluate_split(model_dir, SPLIT, tmp_path / "out", 4, "test")
    assert metrics["threshold"] == 0.5
    assert set(pd.read_csv(tmp_path / "out" / "predictions.csv")["predicted"]) == {"tech"}


def test_evaluate_split_unknown_labels_are_a_data_error(model_dir, tmp_path):
    from ptft.pipeline.data import DataError

    split = SPLIT.assign(label=[["business"], ["weather"], ["tech", "weather"], ["politics"], [], ["sport"]])
    with pytest.raises(DataError, match=r"the test split has labels \['politics', 'weather'\] \(in 3 of 6 rows\)"):
        evaluate_split(model_dir, split, tmp_path, 4, "test")
    assert not (tmp_path / "metrics.json").exists()


def test_single_label_model_writes_its_confusion_matrix_and_per_class_scores(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    model, tokenizer = tiny_model(model_dir, problem_type="single_label_classification", threshold=None)
    split = SPLIT.assign(label=["business", "sport", "tech", "business", "sport", "tech"])
    metrics = evaluate_split(model_dir, split, tmp_path / "out", 4, "test")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["by_label.json", "confusion.json",
                                                                    "confusion.png", "metrics.json", "per_label.json",
                                                                    "per_label.png", "predictions.csv"]
    assert list(metrics) == ["accuracy", "macro_f1", "documents"]
    assert set(json.loads((tmp_path / "out/by_label.json").read_text())) == set(LABELS)
    probs = predict_proba(model, AutoTokenizer.from_pretrained(model_dir), list(split["text"]), batch_size=4)
    assert probs.sum(-1) == pytest.approx(np.ones(len(split)), abs=1e-6)  # softmax, as before
