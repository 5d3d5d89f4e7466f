"""Each stage's code deps are its import closure (ptft.stage_deps), as dvc.yaml declares them: checked here, so an
import that changes without dvc.yaml fails CI; and an edit reruns only the stages that import the edited module."""

from __future__ import annotations

import json
import sys

import yaml

from ptft.stage_deps import closure, differences, main, write
from tests.conftest import ROOT, copy_clone, run


def test_dvc_yaml_declares_each_stages_import_closure(capsys):
    assert main([]) == 0, capsys.readouterr().out + "\nrun `python -m ptft.stage_deps --write` and commit dvc.yaml"


def test_the_closure_follows_imports_inside_functions_and_adds_the_packages(tmp_path):
    (tmp_path / "src/ptft/pipeline").mkdir(parents=True)
    for name, text in {"__init__.py": "", "pipeline/__init__.py": "", "pipeline/a.py": "import ptft.pipeline.b\n",
                       "pipeline/b.py": "def f():\n    from ptft.pipeline import c\n", "pipeline/c.py": "import os\n",
                       "pipeline/unused.py": ""}.items():
        (tmp_path / "src/ptft" / name).write_text(text)
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages/s.py").write_text("from ptft.pipeline.a import x\n")
    assert closure("stages/s.py", tmp_path) == [
        "stages/s.py", "src/ptft/__init__.py", "src/ptft/pipeline/__init__.py", "src/ptft/pipeline/a.py",
        "src/ptft/pipeline/b.py", "src/ptft/pipeline/c.py"]


def test_write_replaces_code_deps_and_keeps_data_deps_and_comments(tmp_path):
    (tmp_path / "src/ptft").mkdir(parents=True)
    (tmp_path / "src/ptft/__init__.py").write_text("")
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages/s.py").write_text("import ptft\n")
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text("stages:\n  # the one stage\n  s:\n    cmd: python stages/s.py\n    deps:\n"
                        "      - stages/s.py\n      - src/ptft\n      - data/x\n")
    assert list(differences(yaml.safe_load(dvc_yaml.read_text()), tmp_path)) == ["s"]
    assert write(dvc_yaml, tmp_path) == ["s"]
    text = dvc_yaml.read_text()
    assert "# the one stage" in text
    assert yaml.safe_load(text)["stages"]["s"]["deps"] == ["stages/s.py", "src/ptft/__init__.py", "data/x"]
    assert differences(yaml.safe_load(text), tmp_path) == {}


def changed_stages(clone) -> set[str]:
    """The stages `dvc status` says would rerun."""
    return set(json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], clone).stdout))


def test_an_edit_reruns_only_the_stages_that_import_the_module(smoke_run, tmp_path):
    clone = copy_clone(smoke_run[0], tmp_path / "ptft")
    assert changed_stages(clone) == set()
    with (clone / "src/ptft/pipeline/export.py").open("a") as f:
        f.write("# an edit to export's code\n")
    assert changed_stages(clone) == {"export"}
    run(["git", "checkout", "src/ptft/pipeline/export.py"], clone)
    with (clone / "src/ptft/pipeline/compare.py").open("a") as f:
        f.write("# an edit to the comparison's code\n")
    changed = changed_stages(clone)
    assert changed and all(stage.startswith("compare_") for stage in changed), changed
    assert {"compare_report", "compare_pretrained@25"} <= changed


def test_the_committed_dvc_yaml_is_what_write_leaves(tmp_path):
    """--write on the committed dvc.yaml changes nothing (so the check above and the writer agree)."""
    copy = tmp_path / "dvc.yaml"
    copy.write_text((ROOT / "dvc.yaml").read_text())
    assert write(copy, ROOT) == [] and copy.read_text() == (ROOT / "dvc.yaml").read_text()


def test_the_stages_declare_the_folders_the_users_files_live_in():
    from ptft.pipeline.sources import CORPUS_FOLDER, RAW_DATA

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert str(RAW_DATA) in stages["prepare"]["deps"] and str(CORPUS_FOLDER) in stages["prepare_corpus"]["deps"]
    assert (ROOT / RAW_DATA / "README.md").is_file() and (ROOT / CORPUS_FOLDER / "README.md").is_file()
