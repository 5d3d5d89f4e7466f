"""Shared fixtures: one smoke run of the real pipeline, in a temp git clone, for every e2e test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ptft.pipeline.params import deep_merge, merge_files

ROOT = Path(__file__).resolve().parents[1]
# CI runs as root on a fresh machine with no git identity; tests commit, and so does `dvc exp run`.
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "ptft tests", "GIT_AUTHOR_EMAIL": "tests@ptft.invalid",
                "GIT_COMMITTER_NAME": "ptft tests", "GIT_COMMITTER_EMAIL": "tests@ptft.invalid"}


def clone_env(clone: Path) -> dict[str, str]:
    """The environment commands run with in a clone: this interpreter first on PATH, the clone's own library."""
    return {**os.environ, **GIT_IDENTITY, "DVC_NO_ANALYTICS": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            # Not the editable install's working copy: the code DVC hashed in the clone is the code that runs.
            "PYTHONPATH": str(clone / "src")}


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's environment first on PATH (and ``env`` over it); unless ``check`` is
    False, fail with its output when it fails."""
    result = subprocess.run(cmd, cwd=cwd, env={**clone_env(cwd), **(env or {})}, capture_output=True, text=True)
    if check and result.returncode:
        pytest.fail(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd)


def repro_until_checkpoint(clone: Path, stage: str = "pretrain") -> subprocess.Popen:
    """Start `dvc repro <stage>` in a session of its own; return it once the stage has saved a complete checkpoint
    (polled often: a short run can end soon after its first one)."""
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro", stage], cwd=clone, env=clone_env(clone),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not list(clone.glob(f"checkpoints/{stage}/*/checkpoint-*/trainer_state.json")):
        assert process.poll() is None, f"{stage} ended before writing a checkpoint"
        assert time.time() < deadline, "no checkpoint after 10 minutes"
        time.sleep(0.05)
    return process


def assert_resumed_like_unbroken(killed: Path, unbroken: Path, output: str, original: Path) -> None:
    """The rerun of a killed pretrain resumed, and ended with the uninterrupted run's model and curves."""
    from ptft.pipeline.lineage import md5_path

    assert "resuming from checkpoints/pretrain/" in output
    assert md5_path(killed / "models/pretrained") == md5_path(unbroken / "models/pretrained")
    assert md5_path(killed / "models/pretrained") != md5_path(original / "models/pretrained")
    for curve in ("train/loss.tsv", "eval/loss.tsv"):
        path = f"reports/pretrain/plots/metrics/{curve}"
        assert (killed / path).read_text() == (unbroken / path).read_text()
    assert not (killed / "checkpoints/pretrain").exists()  # removed once the stage succeeded
    assert not list(killed.glob("models/.*.tmp")) and not list(killed.glob("reports/.*.tmp"))


# For a test that runs MiniLM (13 times the smoke model's compute a token) and retrains from prepare anyway:
# validation and test splits a tenth of the smoke run's, since scoring them, not training, is most of its time.
SMALL_HELD_OUT = {"prepare": {"validation_fraction": 0.01, "test_fraction": 0.02}}


def copy_clone(clone: Path, to: Path, override: dict | None = None) -> Path:
    """A copy of a clone (workspace, git and DVC cache), with ``override`` deep-merged into its params.yaml."""
    shutil.copytree(clone, to, symlinks=True)
    if override:
        params = yaml.safe_load((to / "params.yaml").read_text())
        (to / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, override), sort_keys=False))
    return to


@pytest.fixture(scope="session")
def smoke_clone(tmp_path_factory) -> Path:
    """A clone of this repository's committed HEAD with configs/smoke.yaml merged in."""
    clone = tmp_path_factory.mktemp("e2e") / "ptft"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], ROOT)
    merge_files(clone / "params.yaml", clone / "configs/smoke.yaml")  # as `ptft merge-params` does
    return clone


@pytest.fixture(scope="session")
def smoke_run(smoke_clone) -> tuple[Path, str]:
    """The clone after one `dvc repro`, with that command's output."""
    return smoke_clone, dvc("repro", cwd=smoke_clone).stdout


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that runs the real pipeline (it uses the smoke clone) as ``e2e``, so that
    ``pytest -m "not e2e"`` runs the unit tests alone."""
    for item in items:
        if {"smoke_clone", "smoke_run", "default_clone"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
