"""The package's layout keeps DVC's code deps right by construction.

Every stage depends on its own script and on the whole ``src/ptft/pipeline`` folder. That is
correct only while the pipeline imports nothing outside itself and the stage scripts import nothing
but the pipeline; these tests hold that line, for every form of import (lazy, relative, ``from ptft
import x``). A change to a tool (cli, predict, report, trace) then reruns no stage.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PIPELINE = "ptft.pipeline"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = SRC / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_ptft_modules(path: Path, package: str | None = None) -> set[str]:
    """Every ptft module ``path`` imports, anywhere in the file, with relative and ``from ptft import x``
    forms resolved to the module they load. ``package``: the one relative imports start from (by default
    the file's own, under src/)."""
    if package is None and path.is_relative_to(SRC):
        package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    package = package or ""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up from this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # `from ptft.pipeline import data` loads the module ptft.pipeline.data
            found.update(f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}"))
    return {name for name in found if name == "ptft" or name.startswith("ptft.")}


def test_the_import_scanner_sees_every_form_of_import(tmp_path):
    pipeline = SRC / "ptft/pipeline/stage.py"  # a real module, for relative imports
    scanned = imported_ptft_modules(pipeline)
    assert {"ptft.pipeline.lineage", "ptft.pipeline.params"} <= scanned
    probe = tmp_path / "probe.py"  # read as a module of ptft.pipeline, never written into the package
    probe.write_text("from . import data\nfrom .. import cli\nfrom ptft import report\n"
                     "def f():\n    import ptft.trace\n")
    assert imported_ptft_modules(probe, "ptft.pipeline") >= {"ptft.pipeline.data", "ptft.cli", "ptft.report",
                                                             "ptft.trace"}


def test_the_pipeline_imports_nothing_outside_itself():
    for path in sorted((SRC / "ptft/pipeline").rglob("*.py")):
        outside = {m for m in imported_ptft_modules(path) if m != PIPELINE and not m.startswith(f"{PIPELINE}.")}
        assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}: stages would miss its changes"


def test_ptft_init_holds_no_code():
    """``src/ptft/__init__.py`` runs on every import of the pipeline but is no stage's dep."""
    tree = ast.parse((SRC / "ptft/__init__.py").read_text())
    assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in tree.body)


def test_every_stage_depends_on_its_script_and_pipeline_modules_and_imports_nothing_else():
    """Each stage's code deps are its import closure (tests/test_stage_deps.py), all inside the pipeline package."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        spec = stage.get("do", stage)
        script = next(word for word in spec["cmd"].split() if word.startswith("stages/"))
        code = [dep for dep in spec["deps"] if dep.startswith(("src/", "stages/"))]
        assert code[0] == script, f"{name}: its script first"
        assert all(dep == "src/ptft/__init__.py" or dep.startswith("src/ptft/pipeline/") for dep in code[1:]), name
        outside = {m for m in imported_ptft_modules(ROOT / script) if not m.startswith(f"{PIPELINE}.")}
        assert not outside, f"{script} imports {sorted(outside)}, which is not in its deps"


def test_scoring_and_predicting_load_neither_the_stage_frame_nor_lineage():
    code = ("import sys, ptft.predict, ptft.pipeline.evaluation, ptft.pipeline.modeling\n"
            "print(sorted(m for m in sys.modules if m in ('ptft.pipeline.stage', 'ptft.pipeline.lineage')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
