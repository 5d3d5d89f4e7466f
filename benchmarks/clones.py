"""What the benchmarks that run the real pipeline share: commands in a clone of the repository, with its own code."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def sh(cmd: list[str], cwd: Path) -> str:
    """Run ``cmd`` in the clone ``cwd`` (its own ``src`` first on the path); its output, or exit with its error."""
    env = {**os.environ, "PYTHONPATH": str(cwd / "src"), "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def repro(clone: Path, stages: list[str]) -> float:
    """`dvc repro` the stages; the wall seconds it took."""
    started = time.monotonic()
    sh([sys.executable, "-m", "dvc", "repro", *stages], clone)
    return round(time.monotonic() - started, 1)
