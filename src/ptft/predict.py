"""``ptft predict``: label texts with a fine-tuned model, as JSON lines with every class probability
(the label set above the threshold for a multi-label model)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import numpy as np

from ptft.pipeline.onnx_classifier import INT8_FILE, ONNX_FILE
from ptft.pipeline.params import UserError

if TYPE_CHECKING:  # transformers takes seconds to import; `ptft --help` should not wait for it
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

TABLES = (".csv", ".jsonl", ".parquet")  # read with pandas
CHUNK = 512  # texts per progress update


class PredictError(UserError):
    """A bad model directory or input file, with what to do about it."""


def read_records(source: str, columns: str | list[str] = "text",
                 id_column: str | None = None) -> tuple[list[Any], list[str]]:
    """The ids and texts of every record of ``source``, in order, empty ones included.

    ``-`` (stdin) and ``.txt`` files hold one text per line, split on newlines only (a form feed or U+2028
    inside a line stays in its text); the id is the line number, from 1. A ``.csv``/``.jsonl``/``.parquet``
    file holds one per row, in ``columns`` (several are joined as prepare joins ``data.text_column``'s
    fields); the id is the row index, from 0, or the value of ``id_column``.
    """
    from ptft.pipeline.data import join_fields

    if id_column is not None and (source == "-" or Path(source).suffix.lower() == ".txt"):
        raise PredictError("--id-column names a column of a table input (.csv, .jsonl, .parquet); a text file's "
                           "records are identified by their line numbers")
    if source == "-":
        return _lines(sys.stdin.read())
    path = Path(source)
    if not path.is_file():
        raise PredictError(f"input '{source}' does not exist")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        try:
            return _lines(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise PredictError(f"input '{source}' is not UTF-8 (byte {err.start}); re-encode it, e.g. "
                               f"iconv -f cp1252 -t utf-8 '{source}'") from err
    if suffix not in TABLES:
        raise PredictError(f"input '{source}': unsupported extension '{suffix}'; use .txt (one text per line), "
                           ".csv, .jsonl or .parquet (with --column), or - for stdin")
    import pandas as pd  # not in the serving install (requirements/serve.txt), which reads no files

    readers = {".csv": pd.read_csv, ".jsonl": lambda file: pd.read_json(file, lines=True), ".parquet": pd.read_parquet}
    try:
        table = readers[suffix](path)
    except ValueError as err:
        raise PredictError(f"input '{source}' could not be read as {suffix[1:]}: {err}") from err
    fields = [columns] if isinstance(columns, str) else columns
    missing = [column for column in [*fields, id_column] if column is not None and column not in table.columns]
    if missing:
        raise PredictError(f"input '{source}' has no column {', '.join(repr(c) for c in missing)}; its columns are "
                           f"{list(table.columns)}. Name the text column with --column (repeat it for several "
                           "fields) and the id column with --id-column")
    ids = table[id_column].tolist() if id_column else list(range(len(table)))
    texts = [join_fields([None if pd.isna(value) else value for value in row])
             for row in table[fields].itertuples(index=False)]
    return ids, texts


def _lines(text: str) -> tuple[list[int], list[str]]:
    """A text's lines, split on newlines only, numbered from 1 (a byte-order mark, CR line ends and the newline
    that ends the last line are not text)."""
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    return list(range(1, len(lines) + 1)), [line.removesuffix("\r") for line in lines]


def check_model_dir(model: str) -> Path:
    """``model`` as a path ptft can load, before anything slow: a model directory (config.json and safetensors
    weights: PyTorch), an exported one (config.json and model.onnx: ONNX Runtime), or one of its ``.onnx`` files.
    A pickle-only checkpoint is refused unread."""
    path = Path(model)
    if path.suffix == ".onnx" and not path.is_file():
        raise PredictError(f"--model '{model}' does not exist; `dvc repro export` writes models/exported/"
                           f"{ONNX_FILE} and {INT8_FILE}")
    directory, onnx_file = locate(path)
    if not (directory / "config.json").is_file():
        raise PredictError(f"--model '{model}' is not a model directory (no config.json); use models/finetuned "
                           "after `dvc repro finetune`, or models/exported after `dvc repro export`")
    if onnx_file:
        return path
    try:
        from ptft.pipeline.modeling import unsafe_weights  # imports transformers: only once the input checks passed
    except ImportError as err:  # the serving install (requirements/serve.txt) runs ONNX exports only
        raise PredictError(f"--model '{model}' is a PyTorch model, which needs the full install ({err.name} is "
                           "missing here); serve or predict with its ONNX export instead (models/exported)") from None

    problem = unsafe_weights(path)
    if problem:
        raise PredictError(f"--model '{model}' {problem}")
    return path


def locate(path: Path) -> tuple[Path, str | None]:
    """The model directory of ``path`` and the ONNX file to run in it: ``path``'s own name for an ``.onnx`` file,
    ``model.onnx`` for an exported directory (ONNX, no PyTorch weights), None for a PyTorch model directory."""
    if path.suffix == ".onnx":
        return path.parent, path.name
    exported = (path / ONNX_FILE).is_file() and not any(path.glob("*.safetensors"))
    return path, ONNX_FILE if exported else None


class Classifier(Protocol):
    """What prediction needs of a model, whichever runtime runs it."""

    labels: list[str]
    multi_label: bool
    threshold: float

    def predict_proba(self, texts: list[str], batch_size: int) -> np.ndarray: ...


class TorchClassifier:
    """A fine-tuned model directory run with PyTorch."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
        from ptft.pipeline.labels import decision_threshold, is_multi_label, label_names

        self.model, self.tokenizer = model, tokenizer
        self.labels = label_names(model.config)
        self.multi_label, self.threshold = is_multi_label(model.config), decision_threshold(model.config)

    def predict_proba(self, texts: list[str], batch_size: int) -> np.ndarray:
        from ptft.pipeline.evaluation import predict_proba

        return predict_proba(self.model, self.tokenizer, texts, batch_size)


def load_classifier(model_dir: str, device: str = "auto", threads: int | None = None) -> Classifier:
    """The classifier at ``model_dir`` (see :func:`check_model_dir`): a PyTorch model from safetensors only (a
    pickle is never loaded) on ``device``, or an ONNX export run by ONNX Runtime on the CPU with ``threads``."""
    path = check_model_dir(model_dir)
    directory, onnx_file = locate(path)
    if onnx_file:
        if device not in ("auto", "cpu"):
            raise PredictError(f"--model '{model_dir}' is an ONNX export, which ptft runs on the CPU with ONNX "
                               "Runtime; drop --device, or use models/finetuned on the GPU")
        from ptft.pipeline.onnx_classifier import OnnxClassifier

        return OnnxClassifier(directory, onnx_file, threads)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return TorchClassifier(model.to(device), tokenizer)


def records_for(classifier: Classifier, texts: list[str], batch_size: int) -> list[dict[str, Any]]:
    """One record per text, in order: the label and its probability, or for a multi-label model the labels at
    or above its threshold (with their probabilities, most probable first); and every label's probability."""
    from ptft.pipeline.labels import decide

    labels, records = classifier.labels, []
    probs = classifier.predict_proba(texts, batch_size)
    for row, decision in zip(probs, decide(probs, classifier.multi_label, classifier.threshold)):
        every = {label: round(float(p), 6) for label, p in zip(labels, row)}
        if classifier.multi_label:
            chosen = sorted((label for label, on in zip(labels, decision) if on), key=lambda x: -every[x])
            records.append({"labels": {label: every[label] for label in chosen}, "probabilities": every})
        else:
            records.append({"label": labels[decision], "score": round(float(row[decision]), 6),
                            "probabilities": every})
    return records


def predictions(model_dir: str, texts: list[str], batch_size: int, device: str = "auto",
                progress: IO[str] | None = None) -> Iterator[dict]:
    """:func:`records_for` of every text, a chunk at a time, with progress lines for large inputs."""
    classifier = load_classifier(model_dir, device)
    started = time.monotonic()
    for start in range(0, len(texts), CHUNK):
        yield from records_for(classifier, texts[start : start + CHUNK], batch_size)
        if progress is not None and len(texts) > CHUNK:
            done, elapsed = min(start + CHUNK, len(texts)), time.monotonic() - started
            eta = elapsed / done * (len(texts) - done)
            end = "\r" if progress.isatty() and done < len(texts) else "\n"
            print(f"predicted {done}/{len(texts)} texts, {elapsed:.0f} s, ETA {eta:.0f} s", end=end, file=progress,
                  flush=True)


def write_predictions(model_dir: str, source: str, output: str, column: str | list[str], batch_size: int,
                      device: str, id_column: str | None = None) -> tuple[int, int]:
    """Predict every record of ``source`` and write one JSON line per record, in order, to ``output`` (``-``:
    stdout); return how many records were written and how many of them were empty.

    Each line starts with the record's ``id``; an empty text gets ``"error": "empty text"`` and a null label
    instead of a prediction, so no later record shifts. A file is written under a temporary name and renamed
    when complete, so an interrupted run leaves no output that looks finished.
    """
    path = check_model_dir(model_dir)  # before reading stdin or a large file
    if output != "-" and not Path(output).absolute().parent.is_dir():
        raise PredictError(f"--output '{output}': the directory {Path(output).parent} does not exist; create it first")
    ids, texts = read_records(source, column, id_column)
    from ptft.pipeline.labels import MULTI_LABEL

    present = [i for i, text in enumerate(texts) if text.strip()]
    config = json.loads((locate(path)[0] / "config.json").read_text(encoding="utf-8"))
    empty = {"labels" if config.get("problem_type") == MULTI_LABEL else "label": None, "error": "empty text"}
    found = predictions(model_dir, [texts[i] for i in present], batch_size, device, progress=sys.stderr)
    records = ({"id": _plain(id_), **(next(found) if text.strip() else empty)} for id_, text in zip(ids, texts))
    lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    if output == "-":
        sys.stdout.writelines(lines)
    else:
        tmp = Path(output).with_name(f".{Path(output).name}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                out.writelines(lines)
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    return len(texts), len(texts) - len(present)


def _plain(value: Any) -> Any:
    """A table's id as JSON can hold it: numpy scalars become Python ones."""
    return value.item() if hasattr(value, "item") else value
