"""Long documents read in overlapping windows (ptft.pipeline.windows): the windows cut, the logits pooled, and every
reader of a saved classifier (evaluation, ``ptft predict``, the ONNX export, the server) scoring them alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, EvalPrediction

from ptft.pipeline.evaluation import predict_proba
from ptft.pipeline.export import export_classifier
from ptft.pipeline.modeling import classifier
from ptft.pipeline.onnx_classifier import OnnxClassifier, TokenizerFile
from ptft.pipeline.tokenizer import save_tokenizer, train_tokenizer
from ptft.pipeline.training import _compute_metrics, encode_labelled
from ptft.pipeline.windows import Windows, pad, pool
from tests.test_export import LABELS, SETTINGS, VALIDATION

WORDS = "the market rose while the team won again and the chip maker shipped a new phone today".split()
# Texts from 3 to about 200 tokens: most span several 24-token windows.
LONG = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(3 + 13 * i)) for i in range(16)]
MODEL = {"family": "modernbert", "layers": 2, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 64,
         "dropout": 0.0}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    save_tokenizer(train_tokenizer(LONG * 2, vocab_size=120, min_frequency=1), out)
    return out


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


def test_one_window_is_truncation(tokenizer):
    encoded, documents = Windows(24).encode(tokenizer, LONG)
    assert encoded["input_ids"] == tokenizer(LONG, truncation=True, max_length=24)["input_ids"]
    assert documents.tolist() == list(range(len(LONG)))


@pytest.mark.parametrize("overlap", [0, 5, 12])
def test_windows_cover_the_text_in_order_with_the_overlap_asked(tokenizer, overlap):
    windows = Windows(24, count=3, overlap=overlap)
    encoded, documents = windows.encode(tokenizer, LONG)
    assert np.all(np.diff(documents) >= 0) and set(documents.tolist()) == set(range(len(LONG)))
    full = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    for doc, text in enumerate(full):
        pieces = [encoded["input_ids"][i][1:-1] for i in np.flatnonzero(documents == doc)]  # [CLS] ... [SEP]
        assert all(len(p) + 2 <= 24 for p in pieces) and len(pieces) <= 3
        joined = pieces[0] + [t for p in pieces[1:] for t in p[overlap:]]
        for before, after in zip(pieces, pieces[1:]):
            assert after[:overlap] == before[len(before) - overlap:]  # consecutive windows share `overlap` tokens
        assert joined == text[: len(joined)]
        if len(pieces) < 3:  # fewer windows than allowed: the whole text was read
            assert joined == text
    # What the cost estimate counts is what encode cuts.
    lengths = [len(ids) for ids in tokenizer(LONG)["input_ids"]]
    assert windows.lengths(lengths) == [len(ids) for ids in encoded["input_ids"]]


def test_pool_averages_a_documents_windows_and_keeps_a_single_window_exact():
    logits = np.array([[1.0, 2.0], [3.0, 6.0], [0.1, 0.7]], dtype=np.float32)
    pooled = pool(logits, np.array([0, 0, 1]), 2)
    assert pooled.tolist() == [[2.0, 4.0], [pytest.approx(0.1), pytest.approx(0.7)]]
    assert pooled[1].tobytes() == logits[2].tobytes()


@pytest.fixture(scope="module")
def windowed(tokenizer_dir, tmp_path_factory):
    """A classifier fine-tuned (here: initialised) to read 3 windows of 24 tokens, 6 shared, saved as finetune does."""
    torch.manual_seed(0)
    model, tokenizer = classifier("scratch", MODEL, tokenizer_dir, LABELS, "mean")
    Windows(24, 3, 6).attach(model.config, tokenizer)
    path = tmp_path_factory.mktemp("project") / "models/windowed"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path, model, tokenizer


def test_a_saved_classifier_is_read_in_the_windows_it_was_trained_with(windowed):
    path, model, tokenizer = windowed
    loaded = AutoTokenizer.from_pretrained(path)
    from transformers import AutoConfig

    assert Windows.of(AutoConfig.from_pretrained(path), loaded) == Windows(24, 3, 6)
    probs = predict_proba(model, tokenizer, LONG, batch_size=5)
    # Each text's probabilities: the softmax of the mean logits of its windows, scored one window at a time.
    encoded, documents = Windows(24, 3, 6).encode(tokenizer, LONG)
    with torch.inference_mode():
        model.eval()
        alone = np.concatenate([model(input_ids=torch.tensor([ids])).logits.numpy() for ids in encoded["input_ids"]])
    expected = torch.softmax(torch.from_numpy(pool(alone, documents, len(LONG))), -1).numpy()
    assert np.abs(probs - expected).max() <= 1e-5
    truncated = predict_proba(model, tokenizer, LONG, batch_size=5, windows=Windows(24))
    assert np.abs(probs - truncated)[documents[-1]].max() > 1e-4  # the long texts' later windows count


@pytest.mark.parametrize("windows", [Windows(24), Windows(24, count=3, overlap=5), Windows(None)])
def test_the_torch_free_tokenizer_cuts_and_pads_windows_as_transformers_does(tokenizer, tokenizer_dir, windows):
    """The serving install reads a saved tokenizer with the tokenizers library alone (TokenizerFile): the same
    windows, ids, document of each window and padded batches as transformers' tokenizer, accents, case and all."""
    free = TokenizerFile(tokenizer_dir)
    texts = [*LONG, "Ünïcode — ÉTÉ café\u00a0naïve", "  spaced\tout \n text  ", "x"]
    (ours, our_docs), (theirs, their_docs) = windows.encode(free, texts), windows.encode(tokenizer, texts)
    assert ours["input_ids"] == theirs["input_ids"] and our_docs.tolist() == their_docs.tolist()
    padded = tokenizer.pad({"input_ids": theirs["input_ids"][:5]}, return_tensors="np")
    mine = pad(ours["input_ids"][:5], free.pad_token_id, free.padding_side)
    for key in ("input_ids", "attention_mask"):
        assert mine[key].dtype == np.int64 and np.array_equal(mine[key], padded[key])


def test_training_rows_are_windows_and_validation_scores_documents(tokenizer):
    labels = [LABELS[i % 3] for i in range(len(LONG))]
    data = encode_labelled(LONG, labels, {name: i for i, name in enumerate(LABELS)}, tokenizer, Windows(24, 3, 6))
    documents = np.asarray(data["document"])
    assert len(data) > len(LONG) and sorted(set(documents.tolist())) == list(range(len(LONG)))
    assert [data["label"][i] for i in range(len(data))] == [LABELS.index(labels[d]) for d in documents]
    # One document's first window is wrong and its other two right: the pooled document is right.
    doc = int(np.flatnonzero(np.bincount(documents) == 3)[0])
    logits = np.eye(3, dtype=np.float32)[np.asarray(data["label"])] * 2.0
    rows = np.flatnonzero(documents == doc)
    logits[rows[0]] = np.roll(logits[rows[0]], 1)
    scores = _compute_metrics(EvalPrediction(predictions=logits, label_ids=np.asarray(data["label"])), documents)
    assert scores["accuracy"] == 1.0


def test_the_onnx_export_and_the_server_agree_with_pytorch_on_long_documents(windowed, tmp_path):
    path, model, tokenizer = windowed
    out = path.parent / "exported"
    out.mkdir()
    validation = VALIDATION.assign(text=LONG[-len(VALIDATION):])  # the longest texts: 10 windows' worth and more
    metrics = export_classifier(path, out, validation, SETTINGS, batch_size=4, threads=1)
    assert metrics["onnx"]["same_prediction"] == 1.0 and metrics["onnx"]["max_probability_diff"] <= 1e-4
    reference = predict_proba(model, tokenizer, LONG, 4)
    assert np.abs(OnnxClassifier(out).predict_proba(LONG, 3) - reference).max() <= 1e-4

    from tests.test_serve import Server

    server = Server(out / "model.onnx")
    try:
        status, answer, _ = server.post({"texts": LONG[-4:]})
    finally:
        server.stop()
    assert status == 200
    for served, row in zip(answer["predictions"], reference[-4:], strict=True):
        assert served["probabilities"] == pytest.approx(dict(zip(LABELS, row.tolist())), abs=1e-4)
