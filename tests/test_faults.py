"""A full disk or an unwritable output directory: one clear message, and no finished work lost."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import sqlite3
import subprocess
import sys

import pytest

from ptft.pipeline.artifacts import storage_problem
from ptft.pipeline.lineage import md5_path
from tests.conftest import clone_env, copy_clone, dvc


def _stage(clone, script: str, prefix: list[str] = (), **popen) -> subprocess.CompletedProcess:
    """Run ``stages/<script>`` in ``clone`` directly (no dvc), under an optional command ``prefix``."""
    return subprocess.run([*prefix, sys.executable, f"stages/{script}"], cwd=clone, env=clone_env(clone),
                          capture_output=True, text=True, **popen)


@pytest.mark.parametrize("err", [
    OSError(errno.ENOSPC, "No space left on device", "models/.pretrained.tmp/model.safetensors"),
    Exception("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors (Rust)
    OSError(errno.EIO, "Error writing bytes to file. Detail: [errno 28] No space left on device"),  # pyarrow
])
def test_a_full_disk_is_recognised_however_the_writer_reports_it(err):
    problem = storage_problem(err)
    assert problem is not None and problem.startswith("No space left on device")
    assert "free disk space, then rerun `dvc repro`" in problem
    if getattr(err, "filename", None):
        assert "(models/.pretrained.tmp/model.safetensors)" in problem


@pytest.mark.parametrize(("err", "problem"), [
    (OSError(errno.EFBIG, "File too large"), "File too large: free disk space, or raise the file-size limit"),
    (sqlite3.OperationalError("database or disk is full"), "database or disk is full (writing a database"),
    (sqlite3.OperationalError("disk I/O error"), "disk I/O error (writing a database"),
])
def test_a_file_size_limit_and_a_database_write_are_storage_problems(err, problem):
    assert storage_problem(err).startswith(problem)
    assert storage_problem(sqlite3.OperationalError("no such table: links")) is None  # a bug, not the disk


def test_a_storage_error_is_found_behind_the_error_it_caused():
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as cause:
            raise RuntimeError("saving the checkpoint failed") from cause
    except RuntimeError as err:
        assert storage_problem(err).startswith("Read-only file system: work in a clone on a writable file system")
    assert storage_problem(ValueError("a bug, not the disk")) is None
    assert storage_problem(OSError(errno.ENOENT, "No such file or directory")) is None


def test_a_full_disk_stops_a_stage_with_one_line_and_keeps_the_finished_outputs(smoke_run, tmp_path):
    """RLIMIT_FSIZE makes every write past 64 KiB fail with EFBIG, as a full disk fails with ENOSPC; unlike
    a read-only directory, it stops root too (CI runs as root)."""
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    before = {out: md5_path(clone / out) for out in ("data/prepared", "data/tokenizer", "reports/prepare")}
    limit = 64 * 1024
    result = _stage(clone, "prepare.py", preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    # The stage's first write past the limit: one of its outputs (a database write's message is unit-tested above).
    assert result.stderr.strip().splitlines()[-1].startswith("prepare: error: File too large: free disk space")
    assert "raise the file-size limit (ulimit -f), then rerun `dvc repro`" in result.stderr
    assert {out: md5_path(clone / out) for out in before} == before  # the last complete outputs are untouched
    assert not list(clone.glob("data/.*.tmp")) and not list(clone.glob("reports/**/.*.tmp"))
    assert "prepare" not in dvc("status", "--json", cwd=clone).stdout


def _as_a_plain_user() -> list[str]:
    """A command prefix under which read-only directories stop this user: as root (CI), drop the
    capabilities that let root write anywhere; otherwise nothing."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"]).returncode:
        reason = "running as root, and setpriv cannot drop root's right to write into read-only directories"
        pytest.fail(reason) if os.environ.get("PTFT_CI") else pytest.skip(reason)  # CI must run it
    return prefix


def test_an_unwritable_output_directory_stops_a_stage_before_any_work(smoke_run, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    before = md5_path(clone / "models/finetuned")
    (clone / "reports").chmod(0o555)
    try:
        result = _stage(clone, "finetune.py", _as_a_plain_user())
    finally:
        (clone / "reports").chmod(0o755)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        "finetune: error: cannot write the stage's outputs: reports is not writable by this user; "
        "make it writable (chmod u+w), or work in a clone you own")
    assert md5_path(clone / "models/finetuned") == before and not (clone / "checkpoints/finetune").exists()
