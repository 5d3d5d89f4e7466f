"""The prepare_corpus stage's work: turn ``pretrain.corpus`` into the pre-training text and its tokens.

Memory stays flat as the corpus grows: every source is read as a stream, twice.

1. A pre-scan draws the tokenizer's sample: a seeded reservoir of documents, then cleaned, deduplicated
   and decontaminated like the rest, so no validation or test text trains the tokenizer.
2. The main pass reads every source again, cleans each document as prepare does, drops empty texts and
   exact repeats, drops every copy or near copy of a validation or test document
   (:mod:`ptft.pipeline.decontamination`), and writes what is kept as text shards and token arrays. The
   Rust tokenizer encodes each batch in a worker thread while Python prepares the next.

The labelled train split needs no decontamination: prepare already removed copies and near copies
across the splits before splitting, and its documents pass through unchanged, so ``corpus: train``
gives the tokenizer and the blocks that pre-training used before this stage existed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptft.pipeline.blocks import ShardWriter, corpus_texts
from ptft.pipeline.corpus import (
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
from ptft.pipeline.hub import is_commit, parse_hub, unpinned_warning

BATCH = 1024
SAMPLE_CHARACTERS = 30_000  # each sampled document is cut to this, so the tokenizer's sample stays bounded
# Below this, pre-training text is too small to pay off. Measured on BBC News (benchmarks/pretraining_text.py
# and the default pipeline's comparison, tabled in the README): 44k, 162k and 744k tokens of it all beat
# training from scratch, none beat TF-IDF at 100 labels. Above the largest size measured, rounded up.
SMALL_TEXT_TOKENS = 1_000_000


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
    """A seeded uniform sample of at most ``size`` items from a stream (Algorithm R).

    While the stream holds no more than ``size`` items the sample is all of them, in order.
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seen, self.items = size, 0, []
        self.rng = np.random.default_rng(seed)

    def add(self, item: Any) -> None:
        if self.seen < self.size:
            self.items.append(item)
        else:
            slot = int(self.rng.integers(0, self.seen + 1))
            if slot < self.size:
                self.items[slot] = item
        self.seen += 1


def text_sample(directory: Path, size: int, seed: int) -> list[str]:
    """A seeded sample of at most ``size`` documents of the pre-training text in ``directory`` (all of them, in
    order, when there are no more), each cut to SAMPLE_CHARACTERS."""
    sample = Reservoir(size, seed)
    for text in corpus_texts(directory):
        sample.add(text[:SAMPLE_CHARACTERS])
    return sample.items


def check_sources(value: str | list[str],
                  corpus: dict[str, Any]) -> tuple[list[Source], list[dict[str, Any]], list[str]]:
    """Resolve and check ``pretrain.corpus`` before the long pass: files, columns, Hub ids.

    Returns the sources, their identities for lineage (files with md5s, or the Hub id with the commit
    it resolves to) and the warnings: a local path DVC does not watch, a Hub corpus not pinned to a commit.
    """
    from ptft.pipeline.dvc_files import md5_path

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
            identities.append({"source": source.spec, **source.hub, "split": corpus["hf_split"],
                               "resolved_revision": revision, "reproducible": is_commit(source.hub["revision"])})
            warning = unpinned_warning(parse_hub(source.spec), revision)
            if warning:
                warnings.append(f"pretrain.corpus {warning}")
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


def held_out_index(sources: list[Source], prepared: Path, n: int) -> HeldOutIndex | None:
    """The decontamination index of the labelled validation and test splits (None for the train split alone)."""
    if all(source.kind == "train" for source in sources):
        return None
    texts = [text for split in ("validation", "test") for text in read_split(prepared, split)["text"]]
    return HeldOutIndex(texts, n)


class Filter:
    """Cleaning, exact deduplication and decontamination, one document at a time, counted into a report."""

    def __init__(self, index: HeldOutIndex | None, report: CorpusReport):
        self.index, self.report, self.seen = index, report, set()

    def keep(self, raw: str, source: Source) -> str | None:
        """The cleaned text, or None if it is empty, a repeat, or a (near) copy of held-out text."""
        text = normalize_text(raw)
        if not text:
            self.report.empty_removed += 1
            return None
        key = text_hash(text)  # 8 bytes a document: the only state that grows with the corpus
        if key in self.seen:
            self.report.duplicates_removed += 1
            return None
        self.seen.add(key)
        reason = self.index.reason(text) if self.index is not None and source.kind != "train" else None
        if reason:
            self.report.decontaminated[reason] += 1
            return None
        return text


def tokenizer_sample(sources: list[Source], corpus: dict[str, Any], prepared: Path, index: HeldOutIndex | None,
                     seed: int) -> list[str]:
    """Pass 1: a seeded sample of at most ``corpus.tokenizer_documents`` documents, cleaned, deduplicated and
    decontaminated (dropped ones are not replaced), each cut to SAMPLE_CHARACTERS."""
    reservoir = Reservoir(corpus["tokenizer_documents"], seed)
    scratch = CorpusReport()
    for source in sources:
        for raw in _documents(source, corpus, prepared, scratch):
            reservoir.add((source, raw[: 2 * SAMPLE_CHARACTERS]))  # room for whitespace that cleaning removes
    cleaner = Filter(index, scratch)
    kept = (cleaner.keep(raw, source) for source, raw in reservoir.items)
    return [text[:SAMPLE_CHARACTERS] for text in kept if text]


def build_corpus(sources: list[Source], corpus: dict[str, Any], prepared: Path, index: HeldOutIndex | None,
                 out_dir: Path, encode: Callable[[list[str]], list[list[int]]],
                 dtype: np.dtype) -> tuple[list[dict[str, Any]], CorpusReport]:
    """Pass 2: read, clean, deduplicate and decontaminate every source into text shards and token arrays."""
    report = CorpusReport()
    cleaner = Filter(index, report)
    writer = ShardWriter(out_dir, encode, dtype)
    try:
        for source in sources:
            batch: list[str] = []
            for raw in _documents(source, corpus, prepared, report):
                report.documents_read += 1
                text = cleaner.keep(raw, source)
                if text is None:
                    continue
                batch.append(text)
                if len(batch) == BATCH:
                    writer.write(batch)
                    batch = []
            writer.write(batch)
    finally:
        writer.close()
    if report.undecodable:
        report.warnings.append(f"{len(report.undecodable)} corpus file(s) held lines that are not UTF-8, read as "
                               f"cp1252: {', '.join(report.undecodable[:5])}; re-save them as UTF-8 to be sure")
    if not writer.shards:
        raise DataError(f"pretrain.corpus: no document is left after cleaning ({report.documents_read} read, "
                        f"{report.empty_removed} empty, {report.duplicates_removed} repeated, "
                        f"{sum(report.decontaminated.values())} copies of validation or test text); "
                        "point pretrain.corpus at more text")
    return writer.shards, report


def use_tokenizer_threads(threads: int) -> None:
    """Let the Rust tokenizers train and encode on ``threads`` threads: this stage forks no process, which is what
    their parallelism must not meet (the training stages keep it off). Results do not depend on it."""
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"


def token_encoder(tokenizer: Any) -> Callable[[list[str]], list[list[int]]]:
    """A batch of texts to their token ids: special tokens included, nothing truncated, no offsets computed."""
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    return lambda texts: [encoding.ids for encoding in backend.encode_batch_fast(texts)]


def small_text_warning(tokens: int) -> str | None:
    """What to do when the pre-training text is below SMALL_TEXT_TOKENS (None when it is not)."""
    if tokens >= SMALL_TEXT_TOKENS:
        return None
    return (f"the pre-training text is small: {tokens:,} tokens, under the {SMALL_TEXT_TOKENS:,} below which "
            "pre-training measured too little gain on BBC News (it lost to TF-IDF from 100 labels on). Point "
            "pretrain.corpus at more unlabelled text of your domain (files under corpus/, or hf:<dataset>), or "
            "continue pre-training a public checkpoint (pretrain.init: minilm, or hf:<model id>)")


def corpus_stats(value: str | list[str], report: CorpusReport, shards: list[dict[str, Any]], sample: list[str],
                 warnings: list[str]) -> dict[str, Any]:
    """The stage's metrics: what was read, removed (and why) and kept, in documents, megabytes and tokens."""
    tokens = sum(s["token_count"] for s in shards)
    small = small_text_warning(tokens)
    return {
        "sources": value,
        "documents_read": report.documents_read,
        "empty_removed": report.empty_removed,
        "duplicates_removed": report.duplicates_removed,
        "decontamination_removed": {**report.decontaminated, "total": sum(report.decontaminated.values())},
        "documents": sum(s["documents"] for s in shards),
        "text_mb": round(sum(s["text_bytes"] for s in shards) / 1e6, 3),
        "tokens": tokens,
        "small_text": small is not None,
        "tokenizer_sample_documents": len(sample),
        "shards": len(shards),
        "undecodable_files": list(report.undecodable),
        "warnings": [*warnings, *report.warnings, *([small] if small else [])],
    }
