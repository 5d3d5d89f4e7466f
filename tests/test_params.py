"""Unit tests for ptft.params: loading and merging partial configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ptft.lineage import flatten
from ptft.params import ParamsError, deep_merge, load_params, merge_files, require

ROOT = Path(__file__).resolve().parents[1]


def test_deep_merge_overrides_leaves_and_keeps_the_rest():
    base = {"seed": 1, "finetune": {"lr": 1e-4, "epochs": 3}}
    merged = deep_merge(base, {"finetune": {"lr": 5e-5}})
    assert merged == {"seed": 1, "finetune": {"lr": 5e-5, "epochs": 3}}
    assert base["finetune"]["lr"] == 1e-4  # the input is not modified


def test_deep_merge_rejects_unknown_keys():
    with pytest.raises(ParamsError, match="unknown param 'finetune.learnig_rate'"):
        deep_merge({"finetune": {"lr": 1}}, {"finetune": {"learnig_rate": 2}})


def test_smoke_config_merges_over_the_real_params(tmp_path):
    out = tmp_path / "params.yaml"
    merged = merge_files(ROOT / "params.yaml", ROOT / "configs/smoke.yaml", out)
    assert yaml.safe_load(out.read_text()) == merged
    assert merged["model"]["layers"] < load_params(ROOT / "params.yaml")["model"]["layers"]
    assert require(merged, "finetune.lr") == load_params(ROOT / "params.yaml")["finetune"]["lr"]


def test_missing_file_and_key_are_clear_errors(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    with pytest.raises(ParamsError, match="no 'finetune.lr'"):
        require({"finetune": {}}, "finetune.lr")


def test_cli_merge_params(tmp_path):
    from ptft.cli import main

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    assert main(["merge-params", str(ROOT / "configs/smoke.yaml"), "--params", str(params)]) == 0
    assert load_params(params)["pretrain"]["seq_len"] == 32
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune:\n  learnig_rate: 1\n")
    assert main(["merge-params", str(bad), "--params", str(params)]) == 2


def test_every_param_is_read_by_a_stage_so_dvc_exp_run_set_param_reruns_it(tmp_path):
    """`dvc exp run -S key=value` reruns exactly the stages that declare the key (or a section above it)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = {key for stage in stages.values() for key in stage.get("do", stage).get("params", [])}
    leaves = set(flatten(load_params(ROOT / "params.yaml")))
    unread = {leaf for leaf in leaves if not any(leaf == key or leaf.startswith(f"{key}.") for key in declared)}
    assert not unread, f"params no stage declares in dvc.yaml: {sorted(unread)}"
    missing = {key for key in declared if not any(leaf == key or leaf.startswith(f"{key}.") for leaf in leaves)}
    assert not missing, f"dvc.yaml declares params that params.yaml lacks: {sorted(missing)}"
    for config in (ROOT / "configs").glob("*.yaml"):  # every config merges cleanly over params.yaml
        merge_files(ROOT / "params.yaml", config, tmp_path / config.name)


def test_every_dvc_cached_output_is_ignored_by_git_and_not_tracked():
    """A cached output that git also tracks breaks `dvc repro` in every fresh clone ("already tracked by SCM")."""
    import subprocess

    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        paths = sorted(out.def_path for out in repo.index.outs if out.use_cache)
    assert "models/pretrained" in paths and "reports/compare/runs/scratch-25.json" in paths
    git = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)  # noqa: E731
    assert git("ls-files", "--", *paths).stdout == ""
    ignored = set(git("check-ignore", "--no-index", *paths).stdout.split())
    assert ignored == set(paths), sorted(set(paths) - ignored)


def _ptft_imports(path: Path) -> set[str]:
    """The ptft modules a file imports, at the top or inside a function (a lazy import runs too)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {f"src/{name.replace('.', '/')}.py" for name in names if name.startswith("ptft.")}


def test_every_stage_depends_on_exactly_the_code_its_script_can_import():
    """A module missing from a stage's deps lets DVC keep a stale result; one too many reruns it for nothing.
    (DVC has no list concatenation, so dvc.yaml repeats these lists; this keeps them right.)"""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        spec = stage.get("do", stage)
        script = spec["cmd"].split()[1]
        reachable, todo = set(), [script]
        while todo:
            for module in _ptft_imports(ROOT / todo.pop()) - reachable:
                reachable.add(module)
                todo.append(module)
        code = {dep for dep in spec["deps"] if dep.startswith(("src/", "stages/"))}
        assert code == {script} | reachable, f"{name}: deps {sorted(code)}, imports {sorted(reachable)}"
