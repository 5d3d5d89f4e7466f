"""Writing outputs so that an interrupted stage never leaves something that looks complete, and saying
plainly when the disk refuses a write."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a scratch directory that replaces ``path`` only once the block finishes without error."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
    except BaseException:  # a full disk: leave no partial scratch file behind
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically, with a stable layout for diffs."""
    write_text(path, json.dumps(data, indent=2) + "\n")


# What a user can do when the file system refuses a write (or, for permissions, a read), by errno.
STORAGE_ERRORS = {
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free space or raise your disk quota",
    errno.EFBIG: "free disk space, or raise the file-size limit (ulimit -f)",
    errno.EACCES: "fix the permissions (outputs' directories writable, inputs readable)",
    errno.EPERM: "fix the permissions (outputs' directories writable, inputs readable)",
    errno.EROFS: "work in a clone on a writable file system",
}
# Rust-backed writers (safetensors, tokenizers) raise plain exceptions that end in "(os error 28)".
_OS_ERROR = re.compile(r"(?:os error|errno) (\d+)")
# SQLite (DVC's hash cache, opened when a stage hashes its inputs) names a refused write by message, no errno.
SQLITE_ERRORS = {
    "database or disk is full": STORAGE_ERRORS[errno.ENOSPC],
    "disk I/O error": "free disk space, or raise the file-size limit (ulimit -f)",
}


def storage_problem(err: BaseException) -> str | None:
    """One line saying what to do if ``err``, or an error that caused it, is the file system refusing a write."""
    seen: BaseException | None = err
    while seen is not None:
        code = seen.errno if isinstance(seen, OSError) else None
        if code not in STORAGE_ERRORS and (match := _OS_ERROR.search(str(seen))):
            code = int(match.group(1))
        if code in STORAGE_ERRORS:
            where = getattr(seen, "filename", None)
            return _advice(f"{os.strerror(code)}{f' ({where})' if where else ''}", STORAGE_ERRORS[code])
        if isinstance(seen, sqlite3.Error) and str(seen) in SQLITE_ERRORS:
            return _advice(f"{seen} (writing a database, such as DVC's hash cache)", SQLITE_ERRORS[str(seen)])
        seen = seen.__cause__ or seen.__context__
    return None


def _advice(problem: str, fix: str) -> str:
    return (f"{problem}: {fix}, then rerun `dvc repro`. No output was half-written, and finished stages and "
            "checkpoints are kept.")


def unwritable(paths: Iterable[str | Path]) -> list[str]:
    """The existing directories on the way to ``paths`` that this process cannot write to.

    Every output is written beside its final place and renamed over it, so each directory above it
    must be writable, not only the one holding it.
    """
    blocked = {str(directory) for path in paths for directory in Path(path).parents
               if directory.is_dir() and not os.access(directory, os.W_OK)}
    return sorted(blocked)


def save_loaded_tokenizer(tokenizer: PreTrainedTokenizerBase, out: str | Path) -> None:
    """``tokenizer.save_pretrained(out)`` without the options it was loaded with: transformers writes
    ``local_files_only`` (true under HF_HUB_OFFLINE=1) into tokenizer_config.json, which would make a stage's
    output depend on the environment it ran in, not only on its declared inputs."""
    tokenizer.init_kwargs.pop("local_files_only", None)
    tokenizer.save_pretrained(out)
