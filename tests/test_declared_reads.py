"""Each stage reads what its dvc.yaml entry declares, no more, and a rerun writes the same bytes: every stage of the
smoke pipeline (one item of each foreach group), run again from a folder holding only its declared deps (its code
included), writes exactly the outputs that the smoke run recorded in dvc.lock (a forced rerun of the pipeline, from
declared inputs alone).

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
    """Every stage of the clone's pipeline, as DVC lists it (the lock also keeps cells the smoke params no longer
    make), with one item of each foreach group: its items share the entry that declares their deps and differ only
    in the item (a budget, an arm), so one of them tests the declaration."""
    listed = run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], clone).stdout.split()
    first: dict[str, str] = {}
    for name in listed:
        first.setdefault(name.split("@")[0], name)
    return list(first.values())


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


def test_each_stage_rerun_from_its_declared_deps_alone_writes_the_locked_outputs(smoke_run, tmp_path):
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
    assert len(stages) >= 14  # the main chain, and every kind of comparison cell
    assert not failures, "\n".join(failures)
