"""The pre-training text: reading shards of every format, cleaning, deduplication, decontamination against
validation and test, the tokenizer's sample, token arrays read back as blocks, and the errors a user can cause."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ptft.pipeline.blocks import TokenBlocks, read_meta
from ptft.pipeline.corpus import read_documents, resolve_sources
from ptft.pipeline.data import DataError, write_splits
from ptft.pipeline.decontamination import HeldOutIndex
from ptft.pipeline.pretraining_text import (
    Reservoir,
    build_corpus,
    check_sources,
    held_out_index,
    small_text_warning,
    token_encoder,
    tokenizer_sample,
)
from ptft.pipeline.tokenizer import train_tokenizer

CORPUS = {"text_column": "text", "txt_documents": "paragraph", "hf_split": "train", "decontamination_ngram": 13,
          "vocab_size": 300, "min_frequency": 1, "tokenizer_documents": 1000}
RNG = np.random.default_rng(0)
WORDS = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "po", "ra", "si", "tu") for b in ("n", "m", "r", "s", "t", "")]


def _text(words: int, rng: np.random.Generator = RNG) -> str:
    """Random words: two such texts share no 13-word sequence (48 words, 48**13 sequences)."""
    sentences, left = [], words
    while left > 0:
        n = min(left, int(rng.integers(6, 14)))
        sentences.append(" ".join(rng.choice(WORDS, n)).capitalize() + ".")
        left -= n
    return " ".join(sentences)


@pytest.fixture
def prepared(tmp_path) -> Path:
    """data/prepared with 4 train, 4 validation and 4 test documents."""
    splits = {name: pd.DataFrame({"text": [_text(80) for _ in range(4)], "label": ["a", "b", "a", "b"]})
              for name in ("train", "validation", "test")}
    write_splits(splits, tmp_path / "prepared")
    return tmp_path / "prepared"


def _held_out(prepared: Path) -> list[str]:
    return [t for split in ("validation", "test") for t in pd.read_parquet(prepared / f"{split}.parquet")["text"]]


def _rewrapped(text: str) -> str:
    words = text.split()
    return "\n".join(" ".join(words[i : i + 7]) for i in range(0, len(words), 7))


def _one_sentence_changed(text: str) -> str:
    sentences = text.split(". ")
    sentences[2] = "Something else entirely was said here instead"
    return ". ".join(sentences)


@pytest.fixture
def shards(tmp_path, prepared) -> dict:
    """A corpus of three shards in three formats, with planted copies of validation and test documents."""
    held = _held_out(prepared)
    clean = [_text(int(RNG.integers(30, 120))) for _ in range(40)]
    planted = {  # reason -> documents
        "copy": [held[0], _rewrapped(held[1]), held[4].upper()],
        "near_copy": [_one_sentence_changed(held[2]), _one_sentence_changed(held[5])],
        "shared_ngram": [f"{_text(150)} {held[3]} {_text(150)}", f"{_text(200)} {' '.join(held[6].split()[:20])}"],
    }
    root = tmp_path / "corpus"
    (root / "more").mkdir(parents=True)
    with gzip.open(root / "a.jsonl.gz", "wt") as f:
        for text in clean[:15] + planted["copy"]:
            f.write(json.dumps({"text": text, "id": 1}) + "\n")
    (root / "b.txt").write_text("\n\n".join([*clean[15:30], *planted["near_copy"], clean[0]]) + "\n")  # a repeat
    pq.write_table(pa.table({"text": clean[30:] + planted["shared_ngram"] + ["  \n "]}), root / "more/c.parquet")
    return {"root": root, "clean": clean, "planted": planted}


def _build(tmp_path, prepared, spec, corpus=CORPUS, seed=0, tokenizer=None):
    """prepare_corpus's work on ``spec``: the tokenizer's sample, then the text shards and token arrays (of
    ``tokenizer``, or one token a word)."""
    sources, identities, warnings = check_sources(spec, corpus)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    index = held_out_index(sources, prepared, corpus["decontamination_ngram"])
    sample = tokenizer_sample(sources, corpus, prepared, index, seed)
    encode = token_encoder(tokenizer) if tokenizer else lambda texts: [[1] * len(t.split()) for t in texts]
    shards, report = build_corpus(sources, corpus, prepared, index, out, encode, np.dtype(np.uint16))
    return out, shards, report, sample, identities, warnings


def _kept(out: Path) -> list[str]:
    return [t for f in sorted(out.glob("text-*.parquet")) for t in pq.read_table(f)["text"].to_pylist()]


def test_every_planted_copy_is_removed_and_counted_and_nothing_else(tmp_path, prepared, shards):
    out, _, report, _, _, _ = _build(tmp_path, prepared, str(shards["root"]))
    assert report.decontaminated == {reason: len(docs) for reason, docs in shards["planted"].items()}
    assert report.duplicates_removed == 1 and report.empty_removed == 1
    assert report.documents_read == 40 + 7 + 1 + 1
    assert _kept(out) == shards["clean"]  # every train-only text kept, in file order (a/, b, more/c)


def test_words_are_hashed_whatever_their_case_punctuation_and_typography():
    from ptft.pipeline.decontamination import word_hashes

    plain = word_hashes("the cafe don t say 42 things")
    assert len(plain) == 7 and len(set(plain.tolist())) == 7
    assert (word_hashes("The CAFE, don\u2019t \u201csay\u201d 42 things\u2026") == plain).all()
    assert (word_hashes("the\ncafe\u2014don-t say 42 things") == plain).all()
    assert word_hashes("caf\u00e9")[0] != word_hashes("cafe")[0]  # an accent makes another word
    assert len(word_hashes("")) == len(word_hashes(" ,;. ")) == 0


def test_decontamination_is_checked_against_both_held_out_splits(prepared):
    index = HeldOutIndex(_held_out(prepared), 13)
    for text in _held_out(prepared):
        assert index.reason(text) == "copy"
    assert index.reason(_text(100)) is None
    assert index.reason("too short to have any n-gram") is None


def test_the_train_split_passes_unchanged_and_is_never_decontaminated(tmp_path, prepared):
    out, _, report, sample, identities, _ = _build(tmp_path, prepared, "train")
    train = list(pd.read_parquet(prepared / "train.parquet")["text"])
    assert _kept(out) == train and sample == train
    assert identities == [{"source": "train", "file": "data/prepared/train.parquet"}]


def test_the_tokenizer_sample_is_cleaned_and_decontaminated_too(tmp_path, prepared, shards):
    _, _, _, sample, _, _ = _build(tmp_path, prepared, str(shards["root"]))
    assert sample == shards["clean"]  # fewer documents than the bound: all that is kept, in order
    _, _, _, small, _, _ = _build(tmp_path, prepared, str(shards["root"]), {**CORPUS, "tokenizer_documents": 10})
    assert len(small) <= 10 and set(small) <= set(shards["clean"])
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"text": "word " * 20_000}) + "\n")
    (tmp_path / "long").mkdir()
    _, _, _, cut, _, _ = _build(tmp_path / "long", prepared, str(long))
    assert [len(text) for text in cut] == [30_000]  # each sampled document is cut: the sample stays bounded


def test_a_list_of_sources_deduplicates_across_them(tmp_path, prepared, shards):
    train = list(pd.read_parquet(prepared / "train.parquet")["text"])
    copy = tmp_path / "corpus/more/train-copy.jsonl"
    copy.write_text(json.dumps({"text": train[0]}) + "\n")
    out, _, report, _, _, _ = _build(tmp_path, prepared, ["train", str(copy)])
    assert _kept(out) == train and report.duplicates_removed == 1


def test_tokens_of_every_shard_read_back_as_one_stream_of_blocks(tmp_path, prepared, shards, monkeypatch):
    monkeypatch.setattr("ptft.pipeline.blocks.SHARD_TEXT_BYTES", 2000)  # several shards, of batches of 8
    monkeypatch.setattr("ptft.pipeline.pretraining_text.BATCH", 8)
    tokenizer = train_tokenizer(shards["clean"], 300, 1)
    out, text_shards, _, _, _, _ = _build(tmp_path, prepared, str(shards["root"]), tokenizer=tokenizer)
    assert len(text_shards) > 2
    stream = [i for text in _kept(out) for i in tokenizer(text)["input_ids"]]  # [CLS] ... [SEP] per document
    assert sum(s["token_count"] for s in text_shards) == len(stream)
    (out / "meta.json").write_text(json.dumps({"dtype": "uint16", "shards": text_shards}))
    blocks = TokenBlocks(out, 16)
    assert len(blocks) == len(stream) // 16
    got = np.concatenate([blocks[i]["input_ids"].numpy() for i in range(len(blocks))])
    assert got.tolist() == stream[: len(blocks) * 16]  # blocks run across shard ends; the short tail is dropped
    with pytest.raises(IndexError):
        blocks[len(blocks)]


def test_an_error_while_tokenising_stops_the_pass(tmp_path, prepared, shards):
    def failing(texts):
        raise RuntimeError("tokenizer failed")

    sources, _, _ = check_sources(str(shards["root"]), CORPUS)
    with pytest.raises(RuntimeError, match="tokenizer failed"):
        build_corpus(sources, CORPUS, prepared, None, tmp_path, failing, np.dtype(np.uint16))


def test_the_reservoir_is_seeded_and_bounded():
    def sample(seed):
        reservoir = Reservoir(10, seed)
        for i in range(1000):
            reservoir.add(i)
        return reservoir.items

    assert sample(1) == sample(1) != sample(2) and len(sample(1)) == 10
    first = Reservoir(10, 0)
    for i in range(5):
        first.add(i)
    assert first.items == [0, 1, 2, 3, 4]  # a small corpus is sampled whole, in order


@pytest.mark.parametrize("mode, expected", [
    ("paragraph", ["one\ntwo\n", "three\n"]), ("line", ["one\n", "two\n", "\n", "\n", "three\n"]),
    ("file", ["one\ntwo\n\n\nthree\n"])])
def test_a_txt_document_is_a_paragraph_a_line_or_the_file(tmp_path, mode, expected):
    path = tmp_path / "a.txt"
    path.write_text("one\ntwo\n\n\nthree\n")
    assert list(read_documents(path, txt_documents=mode)) == expected


@pytest.mark.parametrize("suffix, opener", [(".txt.gz", gzip.open), (".txt.bz2", bz2.open), (".txt.xz", lzma.open)])
def test_compressed_text_shards_are_read(tmp_path, suffix, opener):
    path = tmp_path / f"a{suffix}"
    with opener(path, "wt") as f:
        f.write("first\n\nsecond caf\u00e9\n")
    assert [t.strip() for t in read_documents(path)] == ["first", "second caf\u00e9"]


def test_a_non_utf8_line_is_read_as_cp1252_and_named(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"caf\xe9 \x93quoted\x94\n")
    undecodable = []
    assert list(read_documents(path, undecodable=undecodable)) == ["caf\u00e9 \u201cquoted\u201d\n"]
    assert undecodable == [str(path)]


def test_a_glob_of_shards_and_a_folder_list_their_files_sorted(tmp_path):
    for name in ("b.jsonl", "a.jsonl", "sub/c.jsonl.gz", "notes.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    folder, = resolve_sources(str(tmp_path))
    assert [p.name for p in folder.files] == ["a.jsonl", "b.jsonl", "c.jsonl.gz"]  # notes.md is not a corpus file
    shards, = resolve_sources(f"{tmp_path}/*.jsonl")
    assert [p.name for p in shards.files] == ["a.jsonl", "b.jsonl"]


@pytest.mark.parametrize("spec, message", [
    ("missing/folder", "'missing/folder' does not exist"),
    ("nothing/*.jsonl", "the glob 'nothing/*.jsonl' matches no file"),
    ("empty", "the folder 'empty' holds no .txt, .jsonl, .json or .parquet file"),
    ("notes.zst", "'notes.zst' is not a corpus file"),
])
def test_a_bad_corpus_path_is_one_clear_error(tmp_path, monkeypatch, spec, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.zst").write_bytes(b"\x28\xb5\x2f\xfd")
    with pytest.raises(DataError, match=message.replace("*", r"\*").replace(".", r"\.")):
        resolve_sources(spec)


def test_a_wrong_column_is_found_before_the_pass(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(DataError, match=r"text_column .text. is not a column of .*a.parquet; its columns are body"):
        check_sources(str(tmp_path / "a.parquet"), CORPUS)
    with pytest.raises(DataError, match=r"'text' is not in .*b.jsonl line 1 \(its fields are body\)"):
        check_sources(str(tmp_path / "b.jsonl"), CORPUS)
    (tmp_path / "b.jsonl").write_text("\n" + json.dumps(["x"]) + "\n")
    with pytest.raises(DataError, match=r"pretrain.corpus: .*b.jsonl line 2 is a JSON list, not an object"):
        check_sources(str(tmp_path / "b.jsonl"), CORPUS)  # the reader labelled data uses too (data.json_records)


def test_an_unreadable_shard_is_named(tmp_path, prepared):
    good, bad = tmp_path / "corpus/a.jsonl.gz", tmp_path / "corpus/b.jsonl.gz"
    good.parent.mkdir()
    with gzip.open(good, "wt") as f:
        f.write(json.dumps({"text": _text(30)}) + "\n")
    whole = gzip.compress("".join(json.dumps({"text": _text(30)}) + "\n" for _ in range(100)).encode())
    bad.write_bytes(whole[: len(whole) // 2])  # cut short, as a failed copy leaves it
    with pytest.raises(DataError, match=r"cannot read .*b.jsonl.gz: EOFError"):
        _build(tmp_path, prepared, str(tmp_path / "corpus"))
    (tmp_path / "corpus/b.jsonl.gz").write_bytes(b"{not json\n")
    (tmp_path / "corpus/b.jsonl.gz").rename(tmp_path / "corpus/b.jsonl")
    with pytest.raises(DataError, match=r"b.jsonl line 1 is not valid JSON"):
        _build(tmp_path, prepared, str(tmp_path / "corpus"))


def test_a_corpus_left_empty_after_cleaning_is_an_error(tmp_path, prepared):
    path = tmp_path / "held-out.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in [*_held_out(prepared), " "]))
    with pytest.raises(DataError, match=r"no document is left after cleaning \(9 read, 1 empty, 0 repeated, "
                                        r"8 copies of validation or test text\)"):
        _build(tmp_path, prepared, str(path))


def test_local_files_outside_corpus_folder_are_identified_and_warned_about(tmp_path, prepared, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus").mkdir()
    inside, outside = tmp_path / "corpus/a.jsonl", tmp_path / "elsewhere.jsonl"
    for path in (inside, outside):
        path.write_text(json.dumps({"text": "x"}) + "\n")
    _, identities, warnings = check_sources(["corpus/a.jsonl", str(outside)], CORPUS)
    assert [list(i["files"]) for i in identities] == [["corpus/a.jsonl"], [str(outside)]]
    assert all(len(md5) == 32 for i in identities for md5 in i["files"].values())
    assert len(warnings) == 1 and "is outside corpus/" in warnings[0] and str(outside) in warnings[0]


@pytest.fixture
def fake_hub(monkeypatch):
    """The Hub, answered locally: one dataset whose main branch is at commit 'c' * 40."""
    import datasets
    from huggingface_hub import HfApi

    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append({"path": path, "name": name, **kwargs})
        return iter([{"text": "a streamed document", "label": 0}, {"text": None, "label": 1}])  # as streamed

    class Info:
        sha = "c" * 40

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(HfApi, "dataset_info", lambda self, repo_id, revision=None: Info())
    return calls


def test_a_hub_corpus_is_streamed_at_its_revision_and_recorded(tmp_path, prepared, fake_hub):
    pinned = f"hf:user/news:en@{'a' * 40}"
    out, _, report, _, identities, warnings = _build(tmp_path, prepared, pinned)
    assert all(call["streaming"] and call["revision"] == "a" * 40 and call["name"] == "en" for call in fake_hub)
    assert _kept(out) == ["a streamed document"] and report.empty_removed == 1
    assert identities[0]["reproducible"] and identities[0]["id"] == "user/news" and not warnings


def test_an_unpinned_hub_corpus_is_flagged_as_not_reproducible(tmp_path, prepared, fake_hub):
    _, _, _, _, identities, warnings = _build(tmp_path, prepared, "hf:user/news")
    assert identities[0]["resolved_revision"] == "c" * 40 and identities[0]["reproducible"] is False
    assert "not reproducible" in warnings[0] and f"hf:user/news@{'c' * 40}" in warnings[0]


def test_a_hub_corpus_without_the_text_column_is_an_error(tmp_path, prepared, fake_hub):
    with pytest.raises(DataError, match="corpus.text_column 'body' is not a column of hf:user/news; its columns "
                                        "are text, label"):
        check_sources("hf:user/news", {**CORPUS, "text_column": "body"})


def test_the_meta_file_is_required(tmp_path):
    with pytest.raises(DataError, match="run the prepare_corpus stage"):
        read_meta(tmp_path)


def test_small_pre_training_text_is_warned_about_with_the_remedies():
    warning = small_text_warning(999_999)
    assert "999,999 tokens, under the 1,000,000" in warning
    assert "pretrain.corpus" in warning and "pretrain.init: minilm" in warning
    assert small_text_warning(1_000_000) is None
