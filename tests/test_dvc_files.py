"""ptft's reading of DVC's files (ptft.pipeline.dvc_files) against DVC's own: every stage of dvc.yaml resolved as
DVC resolves it, and every hash as DVC computes it. DVC's internals are used here, in the test, and nowhere in src/
(checked below), so an upgrade that changes either fails here first."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ptft.pipeline.dvc_files import md5_path, stages
from ptft.pipeline.params import deep_merge, read_yaml

ROOT = Path(__file__).resolve().parents[1]


def _dvc_stages(root: Path) -> dict[str, tuple[list[str], list[str], list[str]]]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {stage.addressing: ([d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)],
                                   [key for d in stage.deps if isinstance(d, ParamsDependency) for key in d.params],
                                   [out.def_path for out in stage.outs])
                for stage in repo.index.stages}


@pytest.mark.parametrize("override", [{}, {"compare": {"budgets": [10, "all"], "objectives": ["clm"],
                                                        "continued": ["minilm"], "minilm_budgets": [25]}}])
def test_every_stage_is_resolved_as_dvc_resolves_it(tmp_path, monkeypatch, override):
    monkeypatch.chdir(tmp_path)  # DVC names a stage relative to the working directory
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name in ("dvc.yaml", "params.yaml", ".dvc/config"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    params = deep_merge(read_yaml(ROOT / "params.yaml"), override)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ours = {name: (stage.deps, stage.params, stage.outs) for name, stage in stages(params, tmp_path).items()}
    assert ours == _dvc_stages(tmp_path)
    if override:
        assert {"compare_pretrained@10", "compare_pretrained@all", "compare_continued@minilm-25"} <= set(ours)


def _dvc_md5(path: Path) -> str:
    """DVC's hash, through the functions `dvc add` and `dvc status` use."""
    import tempfile

    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    try:
        with Repo(Repo.find_root(str(path if path.is_dir() else path.parent))) as repo:
            _, _, obj = build(repo.cache.local, str(path), repo.fs, "md5", ignore=repo.dvcignore, dry_run=True)
    except NotDvcRepoError:
        fs = LocalFileSystem()
        _, _, obj = build(HashFileDB(fs, tempfile.gettempdir()), str(path), fs, "md5", dry_run=True)
    return obj.hash_info.value


def test_hashes_are_dvcs_inside_a_repository_with_its_dvcignore_and_outside_one(tmp_path):
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=repo, check=True)
    shutil.copy(ROOT / ".dvcignore", repo / ".dvcignore")
    code = repo / "src/pkg"
    (code / "__pycache__").mkdir(parents=True)
    (code / "a.py").write_text("x = 1\n")
    (code / "sub").mkdir()
    (code / "sub/b.txt").write_bytes("é\r\nbinary \x00 bytes".encode())
    (code / "__pycache__/a.cpython-311.pyc").write_bytes(b"compiled")
    (code / "c.pyc").write_bytes(b"compiled")
    outside = tmp_path / "raw"
    shutil.copytree(code, outside)
    for path in (code, code / "a.py", code / "sub/b.txt", outside, outside / "a.py"):
        assert md5_path(path) == _dvc_md5(path), path
    assert md5_path(outside) != md5_path(code)  # the ignored files count outside a repository, as in DVC


def test_src_uses_no_private_or_internal_api_of_optuna_or_dvc():
    """Only dvc.api (and its exceptions) and Optuna's public modules are imported in src/, and ruff's SLF001 finds
    no private attribute read (`study._storage`); torch internals the op tools need carry a reasoned noqa."""
    allowed = {"dvc.api", "dvc.exceptions"}
    found = []
    for file in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                top = name.split(".")[0]
                private = any(part.startswith("_") for part in name.split("."))
                if top in ("dvc_data", "dvc_objects") or top == "dvc" and name not in allowed or \
                        top == "optuna" and private:
                    found.append(f"{file.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not found
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "SLF001", "src"], cwd=ROOT,
                          capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout
