"""The pre-training text named by ``pretrain.corpus``: where it is, and its documents read as a stream.

A corpus is ``train`` (the labelled train split's text), local files (one file, a folder searched
recursively, or a glob of shards), a Hub dataset ``hf:<id>[:<config>][@<revision>]`` (streamed), or
a list of these. Files are .txt, .jsonl/.json or .parquet, the text ones optionally compressed
(.gz, .bz2, .xz). Nothing is ever read whole: files are read line by line or batch by batch, and a
Hub dataset is streamed.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from ptft.pipeline.data import DataError, decode_bytes, is_parquet, json_records, prepared_file
from ptft.pipeline.hub import HubError, HubRef, resolve_revision
from ptft.pipeline.sources import CORPUS_ENTRIES, CORPUS_FOLDER, HUB_SOURCE, is_under

TRAIN = "train"
FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}  # what fsspec decompresses without extra packages
BATCH = 1024  # documents handed on at a time: memory stays flat whatever the corpus size


@dataclass
class Source:
    """One entry of ``pretrain.corpus``: the train split, local files, or a Hub dataset."""

    spec: str
    kind: str  # train | files | hf
    files: list[Path] = field(default_factory=list)
    hub: dict[str, str | None] = field(default_factory=dict)


def corpus_specs(value: str | list[str]) -> list[str]:
    """``pretrain.corpus`` as a list of entries."""
    return [value] if isinstance(value, str) else list(value)


def resolve_sources(value: str | list[str]) -> list[Source]:
    """Every entry of ``pretrain.corpus`` with its files listed, checked before anything is read.

    A missing path, a glob that matches nothing, a folder without corpus files or an unsupported
    extension is a DataError naming the entry.
    """
    sources = []
    for spec in corpus_specs(value):
        if spec == TRAIN:
            sources.append(Source(spec, "train"))
        elif spec.startswith("hf:"):
            match = HUB_SOURCE.fullmatch(spec)
            sources.append(Source(spec, "hf", hub={key: match.group(key) for key in ("id", "config", "revision")}))
        else:
            sources.append(Source(spec, "files", files=_files(spec)))
    return sources


def _files(spec: str) -> list[Path]:
    if glob.has_magic(spec):
        matched = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not matched:
            raise DataError(f"pretrain.corpus: the glob '{spec}' matches no file; check the pattern "
                            "(** matches folders at any depth)")
        return [_checked_format(path) for path in matched]
    path = Path(spec)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and file_format(p) is not None)
        if not found:
            raise DataError(f"pretrain.corpus: the folder '{spec}' holds no .txt, .jsonl, .json or .parquet file "
                            "(compressed text files may end in .gz, .bz2 or .xz)")
        return found
    if not path.exists():
        raise DataError(f"pretrain.corpus: '{spec}' does not exist; set it to {CORPUS_ENTRIES}")
    return [_checked_format(path)]


def file_format(path: Path) -> tuple[str, str | None] | None:
    """``(format, compression)`` of a corpus file from its extensions, or None if it is not one."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression:
        suffixes = suffixes[:-1]
    kind = FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None or (kind == "parquet" and compression):  # Parquet compresses itself
        return None
    return kind, compression


def _checked_format(path: Path) -> Path:
    if file_format(path) is None:
        raise DataError(f"pretrain.corpus: '{path}' is not a corpus file; use .txt, .jsonl, .json or .parquet "
                        "(text files may be compressed as .gz, .bz2 or .xz; recompress a .zst file with one of them)")
    return path


def check_columns(sources: list[Source], text_column: str) -> None:
    """Check, before the long pass, that every Parquet file is one and has ``text_column``, and that the
    first record of every JSON Lines file has it: a wrong column is found now, not minutes in."""
    for source in sources:
        for path in source.files:
            kind, _ = file_format(path)
            if kind == "parquet":
                names = _parquet(path).schema_arrow.names
                if text_column not in names:
                    raise DataError(f"corpus.text_column '{text_column}' is not a column of {path}; its columns are "
                                    f"{', '.join(names)}. Set corpus.text_column in params.yaml")
            elif kind == "jsonl":
                next(read_documents(path, text_column), None)  # reading the first record checks it


def _parquet(path: Path) -> pq.ParquetFile:
    if not is_parquet(path):
        raise DataError(f"pretrain.corpus: {path} is not a Parquet file (it lacks Parquet's magic bytes); "
                        "give it the extension of its real format, or remove it")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"pretrain.corpus: {path} cannot be read as Parquet: {err}") from err


def read_documents(path: Path, text_column: str = "text", txt_documents: str = "paragraph",
                   undecodable: list[str] | None = None) -> Iterator[str]:
    """The documents of one corpus file, in order, as raw strings (cleaning is the caller's).

    ``txt_documents`` says what a document is in a .txt file: a ``paragraph`` (lines up to a blank
    line), a ``line``, or the whole ``file``. Lines that are not UTF-8 are read as cp1252 and the
    file is added to ``undecodable``. A file that cannot be read (corrupt, truncated) is a
    DataError naming it.
    """
    kind, compression = file_format(path)
    try:
        if kind == "parquet":
            for batch in _parquet(path).iter_batches(batch_size=BATCH, columns=[text_column]):
                yield from ("" if text is None else str(text) for text in batch.column(0).to_pylist())
            return
        with fsspec.open(str(path), "rb", compression=compression) as f:
            if kind == "jsonl":
                yield from _jsonl_documents(f, path, text_column)
            else:
                yield from _txt_documents(f, path, txt_documents, undecodable)
    except DataError:
        raise
    except (OSError, EOFError, ValueError, pa.ArrowException) as err:  # zlib, lzma and gzip errors among them
        raise DataError(f"pretrain.corpus: cannot read {path}: {type(err).__name__}: {err}; "
                        "replace or remove the file") from err


def _decoded(raw: bytes, path: Path, undecodable: list[str] | None) -> str:
    text, is_utf8 = decode_bytes(raw)
    if not is_utf8 and undecodable is not None and str(path) not in undecodable:
        undecodable.append(str(path))
    return text


def _txt_documents(f: Any, path: Path, mode: str, undecodable: list[str] | None) -> Iterator[str]:
    if mode == "file":
        yield _decoded(f.read(), path, undecodable)
        return
    paragraph: list[str] = []
    for raw in f:
        line = _decoded(raw, path, undecodable)
        if mode == "line":
            yield line
        elif line.strip():
            paragraph.append(line)
        elif paragraph:
            yield "".join(paragraph)
            paragraph = []
    if paragraph:
        yield "".join(paragraph)


def _jsonl_documents(f: Any, path: Path, text_column: str) -> Iterator[str]:
    for number, record in json_records(f, f"pretrain.corpus: {path}"):
        if text_column not in record:
            raise DataError(f"corpus.text_column '{text_column}' is not in {path} line {number} (its fields are "
                            f"{', '.join(record)}); set corpus.text_column in params.yaml, or fix the line")
        text = record[text_column]
        yield "" if text is None else str(text)


def hub_revision(source: Source) -> str | None:
    """The commit a Hub corpus resolves to now (None if unknown); the DataError of a missing id or revision."""
    hub = source.hub
    try:
        return resolve_revision(HubRef(hub["id"], hub["config"], hub["revision"], source.spec), "dataset")
    except HubError as err:
        raise DataError(f"pretrain.corpus: {err}") from err


def stream_hub(source: Source, split: str, text_column: str) -> Iterator[str]:
    """The documents of a Hub dataset's ``split``, streamed (never downloaded whole)."""
    import datasets

    hub = source.hub
    try:
        stream = datasets.load_dataset(hub["id"], hub["config"], split=split, revision=hub["revision"],
                                       streaming=True)
    except ValueError as err:  # an unknown split or config
        raise DataError(f"pretrain.corpus: '{source.spec}': {err}. Set corpus.hf_split (or the :config)") from err
    for row in stream:  # a streamed dataset may not know its columns before its first row
        if text_column not in row:
            raise DataError(f"corpus.text_column '{text_column}' is not a column of {source.spec}; its columns are "
                            f"{', '.join(row)}. Set corpus.text_column in params.yaml")
        text = row[text_column]
        yield "" if text is None else str(text)


def train_documents(prepared: Path) -> Iterator[str]:
    """The labelled train split's text (written by prepare, already cleaned and deduplicated against
    validation and test)."""
    for batch in pq.ParquetFile(prepared_file(prepared, "train.parquet")).iter_batches(BATCH, columns=["text"]):
        yield from batch.column(0).to_pylist()


def is_watched(path: Path) -> bool:
    """Whether a local corpus path lies under ``corpus/``, whose files DVC hashes as the stage's dependency."""
    return is_under(path, CORPUS_FOLDER)
