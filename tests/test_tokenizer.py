"""Unit tests for ptft.pipeline.tokenizer: special tokens, BERT template, HF round trip, determinism."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from ptft.pipeline.artifacts import save_loaded_tokenizer
from ptft.pipeline.tokenizer import SPECIAL_TOKENS, save_tokenizer, train_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Pre-training learns general features; fine-tuning adapts them.",
    "Caf\u00e9 owners d\u00e9j\u00e0 reported record sales in the third quarter.",
    "Shares in the company rose sharply after the announcement.",
] * 10


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=300, min_frequency=1, model_max_length=128)


def test_special_token_ids(tok):
    assert tok.convert_tokens_to_ids(SPECIAL_TOKENS) == [0, 1, 2, 3, 4]
    ids = (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id)
    assert ids == (0, 1, 2, 3, 4)
    assert tok.model_max_length == 128


def test_normalises_and_wraps_in_cls_sep(tok):
    ids = tok("CAF\u00c9 fox")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "cafe", "fox", "[SEP]"]
    assert tok.decode(ids, skip_special_tokens=True) == "cafe fox"


def test_unknown_characters_map_to_unk(tok):
    assert tok("\u4e2d")["input_ids"] == [2, 1, 3]


def test_pair_template_marks_second_segment(tok):
    enc = tok("the fox", "the dog", return_token_type_ids=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "the", "fox", "[SEP]", "the", "dog", "[SEP]"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1]


def test_round_trip_through_auto_tokenizer(tok, tmp_path):
    files = save_tokenizer(tok, tmp_path / "tokenizer")
    assert any(f.endswith("tokenizer.json") for f in files)
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    batch = [*TEXTS[:4], "unseen w\u00f6rds \u4e2d"]
    assert loaded(batch)["input_ids"] == tok(batch)["input_ids"]
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded.mask_token_id == 4 and loaded.pad_token_id == 0
    assert loaded.model_max_length == 128


def test_a_loaded_tokenizer_saves_the_same_bytes_online_and_offline(tok, tmp_path):
    """HF_HUB_OFFLINE=1 loads with local_files_only=True, which save_pretrained would write into the config."""
    save_tokenizer(tok, tmp_path / "tokenizer")
    for offline in (False, True):
        loaded = AutoTokenizer.from_pretrained(tmp_path / "tokenizer", local_files_only=offline)
        save_loaded_tokenizer(loaded, tmp_path / str(offline))
    online, offline = (tmp_path / name / "tokenizer_config.json" for name in ("False", "True"))
    assert online.read_bytes() == offline.read_bytes() and "local_files_only" not in offline.read_text()


def test_training_is_deterministic(tok):
    again = train_tokenizer(iter(TEXTS), vocab_size=300, min_frequency=1, model_max_length=128)
    assert again.get_vocab() == tok.get_vocab()
    assert len(tok.get_vocab()) > len(SPECIAL_TOKENS) + 26  # learnt more than letters and specials


def test_only_the_five_special_tokens_are_special(tok):
    assert sorted(tok.all_special_ids) == [0, 1, 2, 3, 4]
    assert len(tok.get_added_vocab()) == 5  # the "##x" seeds used in training are ordinary pieces
    ids = tok("announcements")["input_ids"]
    assert len(ids) > 3  # split into several pieces, and the pieces survive skip_special_tokens
    assert tok.decode(ids, skip_special_tokens=True) == "announcements"


def test_min_frequency_limits_vocab():
    rare = train_tokenizer(TEXTS[:4], vocab_size=300, min_frequency=2)
    common = train_tokenizer(TEXTS[:4], vocab_size=300, min_frequency=1)
    assert len(rare.get_vocab()) < len(common.get_vocab())
