"""The prepare_corpus stage's work: turn ``pretrain.corpus`` into the pre-training text and its tokens.

Two passes, each a stream, so memory stays flat as the corpus grows:

1. read every source, clean each document as prepare does, drop empty texts and exact repeats, and
   drop every copy or near copy of a validation or test document (:mod:`ptft.pipeline.decontamination`);
   write what is kept as text shards, and draw the tokenizer's sample from it (a seeded reservoir);
2. train the tokenizer on that sample, then tokenise the text shards into flat token arrays.

The labelled train split needs no decontamination: prepare already removed copies and near copies
across the splits before splitting, and its documents pass through unchanged, so ``corpus: train``
gives the tokenizer and the blocks that pre-training used before this stage existed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptft.pipeline.blocks import TextShards, corpus_texts, token_dtype, write_tokens
from ptft.pipeline.corpus import (
    COMMIT,
    Source,
    check_columns,
    hub_revision,
    is_watched,
    read_documents,
    resolve_sources,
    stream_hub,
    train_documents,
)
from ptft.pipeline.data import DataError, normalize_text, read_split
from ptft.pipeline.decontamination import REASONS, HeldOutIndex, text_hash

BATCH = 1024
SAMPLE_CHARACTERS = 30_000  # each sampled document is cut to this, so the tokenizer's sample stays bounded


@dataclass
class CorpusReport:
    """What the pass read, removed and kept, and what needs a warning."""

    documents_read: int = 0
    empty_removed: int = 0
    duplicates_removed: int = 0
    decontaminated: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    undecodable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Reservoir:
    """A seeded uniform sample of at most ``size`` documents from a stream (Algorithm R).

    While the stream holds no more than ``size`` documents the sample is all of them, in order.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seen, self.items = size, 0, []
        self.rng = np.random.default_rng(seed)

    def add(self, text: str) -> None:
        text = text[:SAMPLE_CHARACTERS]
        if self.seen < self.size:
            self.items.append(text)
        else:
            slot = int(self.rng.integers(0, self.seen + 1))
            if slot < self.size:
                self.items[slot] = text
        self.seen += 1


def text_sample(directory: Path, size: int, seed: int) -> list[str]:
    """The tokenizer's sample of the pre-training text in ``directory`` again: the same documents, drawn in the
    same order with the same seed (``corpus.tokenizer_documents`` and ``seed``)."""
    sample = Reservoir(size, seed)
    for text in corpus_texts(directory):
        sample.add(text)
    return sample.items


def check_sources(value: str | list[str],
                  corpus: dict[str, Any]) -> tuple[list[Source], list[dict[str, Any]], list[str]]:
    """Resolve and check ``pretrain.corpus`` before the long pass: files, columns, Hub ids.

    Returns the sources, their identities for lineage (files with md5s, or the Hub id with the commit
    it resolves to) and the warnings: a local path DVC does not watch, a Hub corpus not pinned to a commit.
    """
    from ptft.pipeline.lineage import md5_path

    sources = resolve_sources(value)
    check_columns(sources, corpus["text_column"])
    identities, warnings = [], []
    for source in sources:
        if source.kind == "train":
            identities.append({"source": "train", "file": "data/prepared/train.parquet"})
        elif source.kind == "files":
            identities.append({"source": source.spec, "files": {str(p): md5_path(p) for p in source.files}})
            outside = [str(p) for p in source.files if not is_watched(p)]
            if outside:
                warnings.append(f"pretrain.corpus '{source.spec}' is outside corpus/, the folder that DVC watches "
                                "for prepare_corpus: DVC reruns the stage when pretrain.corpus changes, but not when "
                                "these files do. Move them under corpus/ (or run `dvc repro -f prepare_corpus` "
                                "after changing them)")
        else:
            revision = hub_revision(source)
            pinned = bool(source.hub["revision"] and COMMIT.fullmatch(source.hub["revision"]))
            identities.append({"source": source.spec, **source.hub, "split": corpus["hf_split"],
                               "resolved_revision": revision, "reproducible": pinned})
            if not pinned:
                warnings.append(f"pretrain.corpus '{source.spec}' is not pinned to a commit, so it is not "
                                "reproducible: the dataset may change under the same name. Pin it: "
                                f"hf:{source.hub['id']}{':' + source.hub['config'] if source.hub['config'] else ''}"
                                f"@{revision or '<commit sha>'}")
            next(stream_hub(source, corpus["hf_split"], corpus["text_column"]), None)  # checks split and column
    return sources, identities, warnings


def _documents(source: Source, corpus: dict[str, Any], prepared: Path, report: CorpusReport) -> Iterator[str]:
    if source.kind == "train":
        yield from train_documents(prepared)
    elif source.kind == "hf":
        yield from stream_hub(source, corpus["hf_split"], corpus["text_column"])
    else:
        for path in source.files:
            yield from read_documents(path, corpus["text_column"], corpus["txt_documents"], report.undecodable)


def held_out_index(prepared: Path, n: int) -> HeldOutIndex:
    """The decontamination index of the labelled validation and test splits."""
    texts = [text for split in ("validation", "test") for text in read_split(prepared, split)["text"]]
    return HeldOutIndex(texts, n)


def clean_corpus(sources: list[Source], corpus: dict[str, Any], prepared: Path, out_dir: Path,
                 sample: Reservoir) -> tuple[TextShards, CorpusReport]:
    """Pass 1: read, clean, deduplicate and decontaminate every source into text shards under ``out_dir``."""
    report = CorpusReport()
    index = held_out_index(prepared, corpus["decontamination_ngram"]) \
        if any(s.kind != "train" for s in sources) else None
    seen: set[int] = set()
    shards = TextShards(out_dir)
    for source in sources:
        batch: list[str] = []
        for raw in _documents(source, corpus, prepared, report):
            report.documents_read += 1
            text = normalize_text(raw)
            if not text:
                report.empty_removed += 1
                continue
            key = text_hash(text)
            if key in seen:
                report.duplicates_removed += 1
                continue
            seen.add(key)
            reason = index.reason(text) if index is not None and source.kind != "train" else None
            if reason:
                report.decontaminated[reason] += 1
                continue
            sample.add(text)
            batch.append(text)
            if len(batch) == BATCH:
                shards.write(batch)
                batch = []
        shards.write(batch)
    shards.close()
    if report.undecodable:
        report.warnings.append(f"{len(report.undecodable)} corpus file(s) held lines that are not UTF-8, read as "
                               f"cp1252: {', '.join(report.undecodable[:5])}; re-save them as UTF-8 to be sure")
    if not shards.shards:
        raise DataError(f"pretrain.corpus: no document is left after cleaning ({report.documents_read} read, "
                        f"{report.empty_removed} empty, {report.duplicates_removed} repeated, "
                        f"{sum(report.decontaminated.values())} copies of validation or test text); "
                        "point pretrain.corpus at more text")
    return shards, report


def tokenize_corpus(out_dir: Path, shards: TextShards, tokenizer: Any, threads: int) -> np.dtype:
    """Pass 2: tokenise the text shards (the Rust tokenizer on ``threads`` threads) into token arrays."""
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"  # no process forks here, so the tokenizer may use threads
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    dtype = token_dtype(len(tokenizer))
    try:
        write_tokens(out_dir, shards.shards, lambda texts: [e.ids for e in backend.encode_batch_fast(texts)], dtype)
    finally:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    return dtype


def corpus_stats(value: str | list[str], report: CorpusReport, shards: TextShards, sample: Reservoir,
                 tokens: int, warnings: list[str]) -> dict[str, Any]:
    """The stage's metrics: what was read, removed (and why) and kept, in documents, megabytes and tokens."""
    return {
        "corpus": value,
        "documents_read": report.documents_read,
        "empty_removed": report.empty_removed,
        "duplicates_removed": report.duplicates_removed,
        "decontamination_removed": {**report.decontaminated, "total": sum(report.decontaminated.values())},
        "documents": sum(s["documents"] for s in shards.shards),
        "text_mb": round(sum(s["text_bytes"] for s in shards.shards) / 1e6, 3),
        "tokens": tokens,
        "tokenizer_sample_documents": len(sample.items),
        "shards": len(shards.shards),
        "undecodable_files": list(report.undecodable),
        "warnings": [*warnings, *report.warnings],
    }

