"""Shared fixtures: one smoke run of the real pipeline, in a temp git clone, for every e2e test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ptft.params import merge_files

ROOT = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's environment first on PATH; fail with its output."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        pytest.fail(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd)


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
