"""Each stage reads what its dvc.yaml entry declares, no more: run from a folder holding only its declared deps (its
code included), it writes exactly the outputs that the full smoke run recorded in dvc.lock.

An undeclared read fails here one of two ways: the stage stops (a file or module missing), or it finds less than in
the full clone (a glob over a folder it does not declare) and its outputs differ from the lock's.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import yaml

from ptft.pipeline.lineage import md5_path
from tests.conftest import clone_env, run

# Beside the deps, a stage needs the files that say what it is: the pipeline and its params (which DVC hashes key by
# key), and DVC's own config. No git: nothing a stage writes may depend on git state.
FRAME = ["dvc.yaml", "params.yaml", ".dvcignore"]


def _stages(clone: Path) -> list[str]:
    """Every stage of the clone's pipeline, a foreach or matrix group by its first cell only (its cells share their
    code). Asked of DVC: the lock also keeps the entries of cells that the smoke params no longer make."""
    names = run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], clone).stdout.split()
    seen, chosen = set(), []
    for name in names:
        group = name.split("@")[0]
        if group not in seen:
            seen.add(group)
            chosen.append(name)
    return chosen


def _sandbox(clone: Path, entry: dict, to: Path) -> Path:
    for path in FRAME + [dep["path"] for dep in entry.get("deps", [])]:
        source, target = clone / path, to / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    (to / ".dvc").mkdir()
    (to / ".dvc/config").write_text("[core]\n    no_scm = true\n")
    return to


def test_each_stage_run_from_its_declared_deps_alone_writes_the_locked_outputs(smoke_run, tmp_path):
    clone = smoke_run[0]
    lock = yaml.safe_load((clone / "dvc.lock").read_text())
    failures = []
    stages = _stages(clone)
    for name in stages:
        entry = lock["stages"][name]
        sandbox = _sandbox(clone, entry, tmp_path / name)
        cmd = shlex.split(entry["cmd"])
        assert cmd[0] == "python", entry["cmd"]
        # The code the stage imports comes from the sandbox alone: a module it does not declare is missing there.
        env = {**clone_env(sandbox), "PYTHONPATH": str(sandbox / "src")}
        result = run([sys.executable, *cmd[1:]], sandbox, env, check=False)
        if result.returncode:
            failures.append(f"{name} failed from its declared deps alone:\n{result.stderr[-2000:]}")
            continue
        failures += [f"{name}: {out['path']} differs when the stage sees only its declared deps"
                     for out in entry["outs"] if md5_path(sandbox / out["path"]) != out["md5"]]
    assert len(stages) >= 14  # every kind of stage the smoke run has
    assert not failures, "\n".join(failures)
