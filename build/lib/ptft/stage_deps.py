"""Each stage's code deps, from its imports: its script and every ``ptft`` module it can import, as dvc.yaml lists them.

DVC reruns a stage when a file it depends on changes. A stage that depended on the whole ``src/ptft/pipeline``
folder reran for an edit to a module it never imports (export.py's error message reran the whole pipeline), so
each stage lists exactly its *import closure*: the modules its script imports, the modules those import, and so
on, read from the source with :mod:`ast` (imports inside functions count: they run when called), with the
packages' ``__init__.py`` on the way. Nothing is imported to find them.

Usage (from the repository root)::

    python -m ptft.stage_deps            # check: exit 1 and name each stage whose code deps differ
    python -m ptft.stage_deps --write    # rewrite those deps in dvc.yaml (comments and layout kept)

tests/test_stage_deps.py runs the check, so CI fails when an import changes and dvc.yaml does not.
This is a tool beside the pipeline: nothing under ``ptft.pipeline`` imports it.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

DVC_YAML = Path("dvc.yaml")
SOURCE = Path("src")
CODE_FOLDERS = ("stages/", "src/")


def _module_file(name: str, root: Path) -> Path | None:
    """The file of module ``name`` (``ptft.pipeline.data``) under ``root/src``: a module or a package's __init__."""
    base = root / SOURCE / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path, root: Path) -> set[str]:
    """The ``ptft`` modules ``path`` imports, anywhere in it (``from ptft.pipeline import data`` is the module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.split(".")[0] == "ptft"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ptft":
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names
                      if _module_file(f"{node.module}.{alias.name}", root)}
    return names


def _with_packages(name: str) -> list[str]:
    """``ptft.pipeline.data`` and the packages importing it runs first: ``ptft``, ``ptft.pipeline``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(script: str | Path, root: Path = Path(".")) -> list[str]:
    """The script and every file of the ptft modules it can import, as paths relative to ``root``, sorted after
    the script."""
    return [Path(script).as_posix(), *_closure(str(script), root.resolve())]


@cache
def _closure(script: str, root: Path) -> list[str]:
    seen: set[Path] = set()
    queue = [root / script]
    while queue:
        path = queue.pop()
        for name in _imported(path, root):
            for module in _with_packages(name):
                file = _module_file(module, root)
                if file is not None and file not in seen:
                    seen.add(file)
                    queue.append(file)
    return sorted(file.relative_to(root).as_posix() for file in seen)


def stage_script(definition: dict[str, Any]) -> str | None:
    """The stage script a dvc.yaml stage runs: the ``stages/*.py`` word of its command."""
    command = definition.get("do", definition).get("cmd", "")
    return next((word for word in str(command).split() if word.startswith("stages/") and word.endswith(".py")), None)


def _is_code(dep: str) -> bool:
    return dep.startswith(CODE_FOLDERS)


def differences(dvc_yaml: dict[str, Any], root: Path = Path(".")) -> dict[str, tuple[list[str], list[str]]]:
    """Each stage whose code deps in ``dvc_yaml`` are not its script's closure: (declared, expected)."""
    found = {}
    for name, definition in dvc_yaml["stages"].items():
        script = stage_script(definition)
        if script is None:
            continue
        body = definition.get("do", definition)
        declared = [dep for dep in body.get("deps", []) if _is_code(str(dep))]
        expected = closure(script, root)
        if declared != expected:
            found[name] = (declared, expected)
    return found


def write(path: Path = DVC_YAML, root: Path = Path(".")) -> list[str]:
    """Rewrite the code deps of every stage that differs, keeping dvc.yaml's comments; return their names. Every
    stage's deps and params are written as wrapped flow lists (:func:`wrap_lists`), so dvc.yaml stays short."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.width = 4096  # one line per list here; wrap_lists wraps them at a word
    yaml.indent(mapping=2, sequence=4, offset=2)
    document = yaml.load(path)
    changed = differences(document, root)
    for name in changed:
        body = document["stages"][name].get("do", document["stages"][name])
        deps = body["deps"]
        data = [dep for dep in deps if not _is_code(str(dep))]
        deps.clear()
        deps.extend([*closure(stage_script(document["stages"][name]), root), *data])
    for definition in document["stages"].values():
        for key in ("deps", "params"):
            if key in definition.get("do", definition):
                definition.get("do", definition)[key].fa.set_flow_style()
    stream = io.StringIO()
    yaml.dump(document, stream)
    text = wrap_lists(stream.getvalue())
    if text != path.read_text():
        path.write_text(text)
    return list(changed)


def wrap_lists(text: str, width: int = 118) -> str:
    """Wrap each one-line ``deps: [...]`` and ``params: [...]`` at a comma, continued lines aligned after the ``[``."""
    lines = []
    for line in text.splitlines():
        match = re.fullmatch(r"(\s*(?:deps|params): \[)(.*)\]", line)
        if match is None:
            lines.append(line)
            continue
        lines += textwrap.wrap(match[2] + "]", width, initial_indent=match[1], subsequent_indent=" " * len(match[1]),
                               break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptft.stage_deps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the stages' code deps in dvc.yaml")
    args = parser.parse_args(argv)
    if args.write:
        changed = write()
        print(f"rewrote the code deps of {len(changed)} stage(s): {', '.join(changed)}" if changed else
              "dvc.yaml's code deps are the stages' import closures")
        return 0
    import yaml

    found = differences(yaml.safe_load(DVC_YAML.read_text()))
    for name, (declared, expected) in found.items():
        missing, extra = sorted(set(expected) - set(declared)), sorted(set(declared) - set(expected))
        print(f"{name}: code deps are not its imports (missing: {', '.join(missing) or 'none'}; not imported: "
              f"{', '.join(extra) or 'none'}; or out of order)")
    if found:
        print("run `python -m ptft.stage_deps --write` and commit dvc.yaml", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
