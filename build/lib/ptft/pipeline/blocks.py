"""The pre-training text on disk: cleaned text and token ids in shards, read back memory-mapped as blocks.

``data/corpus/`` holds, per shard, ``text-NNNNN.parquet`` (the cleaned documents: for inspection, the
semi-supervised TF-IDF baseline and continued pre-training in another tokenizer) and
``tokens-NNNNN.bin``: the shard's documents tokenised and concatenated, each with its [CLS] ... [SEP]
markers, as one flat array of unsigned integers (nanoGPT's format). ``meta.json`` lists the shards with
their sizes and the token dtype.

Blocks are cut when read, not when written: block ``i`` is tokens ``[i*L, (i+1)*L)`` of the shards
laid end to end, as run_mlm.py's group_texts cuts one stream and drops its short tail. A change of
``pretrain.seq_len`` then re-reads the same arrays instead of rebuilding them, and memory holds only
the pages of the blocks in use, whatever the corpus size.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ptft.pipeline.data import DataError

META = "meta.json"
SHARD_TEXT_BYTES = 256 * 2**20  # a new shard after this much text: files stay easy to move and to hash


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type that holds every token id."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


class ShardWriter:
    """Write documents into numbered shards under ``out_dir``, a batch at a time: their text, and their token ids.

    ``encode`` maps a batch of texts to their ids (special tokens included). It runs in a worker thread,
    one batch at a time in order, while the caller prepares the next batches: the Rust tokenizer
    releases the GIL, so reading and cleaning in Python overlap with tokenising. At most ``pending``
    batches wait, so memory stays flat.
    """

    def __init__(self, out_dir: Path, encode: Callable[[list[str]], list[list[int]]], dtype: np.dtype,
                 pending: int = 4):
        self.out_dir, self.encode, self.dtype, self.pending = Path(out_dir), encode, dtype, pending
        self.shards: list[dict[str, Any]] = []
        self._text: pq.ParquetWriter | None = None
        self._tokens: Any = None
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._queue: collections.deque[concurrent.futures.Future] = collections.deque()

    def write(self, texts: list[str]) -> None:
        if not texts:
            return
        if self._text is None or self.shards[-1]["text_bytes"] >= SHARD_TEXT_BYTES:
            self._rotate()
        shard = self.shards[-1]
        self._text.write_table(pa.table({"text": pa.array(texts, pa.string())}))
        shard["documents"] += len(texts)
        shard["text_bytes"] += sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)
        self._queue.append(self._worker.submit(self._write_tokens, self._tokens, shard, texts))
        while len(self._queue) > self.pending:
            self._queue.popleft().result()  # also raises the worker's error here

    def _write_tokens(self, file: Any, shard: dict[str, Any], texts: list[str]) -> None:
        array = np.concatenate([np.array(ids, dtype=self.dtype) for ids in self.encode(texts)])
        file.write(array.tobytes())
        shard["token_count"] += len(array)

    def _rotate(self) -> None:
        self._close_files()
        name = f"{len(self.shards):05d}"
        self.shards.append({"text": f"text-{name}.parquet", "tokens": f"tokens-{name}.bin",
                            "documents": 0, "text_bytes": 0, "token_count": 0})
        self._text = pq.ParquetWriter(self.out_dir / self.shards[-1]["text"], pa.schema([("text", pa.string())]),
                                      compression="zstd")
        self._tokens = (self.out_dir / self.shards[-1]["tokens"]).open("wb")

    def _close_files(self) -> None:
        while self._queue:  # the worker writes a shard's tokens before its file is closed
            self._queue.popleft().result()
        if self._text is not None:
            self._text.close()
            self._tokens.close()
            self._text = self._tokens = None

    def close(self) -> None:
        """Wait for the tokens of every batch, and close the files (also after an error, in a ``finally``)."""
        try:
            self._close_files()
        finally:
            self._worker.shutdown(wait=True, cancel_futures=True)


def vocabulary_hash(tokenizer: Any) -> str:
    """A short hash of a tokenizer's vocabulary: the token arrays are only valid with the tokenizer that made them."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return hashlib.md5(vocab.encode("utf-8")).hexdigest()


def check_tokenizer(directory: Path, tokenizer: Any) -> None:
    """Refuse token arrays written with another tokenizer than ``tokenizer`` (their ids would mean other words)."""
    made_with = read_meta(directory)["tokenizer"]
    if made_with["vocabulary_md5"] != vocabulary_hash(tokenizer):
        raise DataError(f"{directory} was tokenised with the tokenizer of {made_with['source']}, not the one "
                        "pre-training loads; run `dvc repro prepare_corpus`")


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META
    if not path.is_file():
        raise DataError(f"{path} not found; run the prepare_corpus stage (`dvc repro prepare_corpus`) first")
    return json.loads(path.read_text(encoding="utf-8"))


def corpus_texts(directory: Path, batch_size: int = 1024) -> Iterator[str]:
    """The cleaned documents of the pre-training text, in order, read a batch at a time."""
    for shard in read_meta(directory)["shards"]:
        for batch in pq.ParquetFile(Path(directory) / shard["text"]).iter_batches(batch_size=batch_size):
            yield from batch.column(0).to_pylist()


def corpus_dataset(directory: Path) -> Any:
    """The cleaned documents as a file-backed ``datasets.Dataset`` (memory-mapped Arrow), to tokenise with
    another tokenizer than the token arrays': ``datasets`` caches the result by fingerprint."""
    import datasets

    files = [str(Path(directory) / shard["text"]) for shard in read_meta(directory)["shards"]]
    return datasets.Dataset.from_parquet(files)


class TokenBlocks(torch.utils.data.Dataset):
    """Blocks of ``seq_len`` tokens over the memory-mapped token shards of ``directory``.

    Each item is ``{"input_ids": LongTensor[seq_len]}``, what the Trainer's collators take. Only the
    pages of the blocks read are loaded; under torchrun each process's sampler reads its own share.
    """

    def __init__(self, directory: Path, seq_len: int):
        meta = read_meta(directory)
        self.seq_len = seq_len
        self.arrays = [np.memmap(Path(directory) / s["tokens"], dtype=meta["dtype"], mode="r")
                       for s in meta["shards"] if s["token_count"]]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        self.blocks = int(self.starts[-1]) // seq_len

    def __len__(self) -> int:
        return self.blocks

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.blocks:
            raise IndexError(index)
        start = index * self.seq_len
        end = start + self.seq_len
        pieces = []
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1
        while start < end:  # a block may run across the end of a shard into the next
            offset = start - int(self.starts[shard])
            take = min(end - start, len(self.arrays[shard]) - offset)
            pieces.append(self.arrays[shard][offset : offset + take])
            start += take
            shard += 1
        return {"input_ids": torch.from_numpy(np.concatenate(pieces).astype(np.int64))}
