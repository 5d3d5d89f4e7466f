"""What DVC's files say, read without DVC's internals: dvc.yaml's stages as ``dvc repro`` resolves them, and DVC's
hashes of files and directories as dvc.lock and ``.dvc`` files record them.

A stage reads its own declared inputs and outputs from here (its lineage), ``ptft lineage`` the stage of each
output, and the serving install, which has no DVC, a model directory's hash. ``tests/test_dvc_files.py`` checks both
against DVC's own resolution and hashing, so a DVC upgrade that changes either fails there, not in a user's lineage.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptft.pipeline.params import require

DVC_YAML = "dvc.yaml"
DVCIGNORE = ".dvcignore"
INTERPOLATION = re.compile(r"\$\{\s*([^}]+?)\s*\}")


@dataclass(frozen=True)
class Stage:
    """A stage (``name@item`` for a ``foreach`` cell) with its deps, the params keys it reads and every path it
    writes (outs, metrics and plots)."""

    name: str
    deps: list[str]
    params: list[str]
    outs: list[str]


def _fill(value: Any, context: dict[str, Any]) -> Any:
    """``${...}`` filled in as DVC does: a string that is one ``${key}`` takes the key's value, any other string
    the values' text."""
    if isinstance(value, dict):
        return {_fill(key, context): _fill(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, context) for item in value]
    if not isinstance(value, str):
        return value
    whole = INTERPOLATION.fullmatch(value)
    if whole:
        return require(context, whole.group(1))
    return INTERPOLATION.sub(lambda match: str(require(context, match.group(1))), value)


def _paths(entries: list[Any] | None) -> list[str]:
    """Paths of an outs, metrics or plots list: each a path, or a path with its options."""
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries or []]


def _params(entries: list[Any] | None) -> list[str]:
    """Keys of a params list: each a params.yaml key, or a ``{file: [keys]}`` of another file."""
    keys: list[str] = []
    for entry in entries or []:
        keys += [entry] if isinstance(entry, str) else [key for listed in entry.values() for key in listed or []]
    return keys


def _stage(name: str, definition: dict[str, Any]) -> Stage:
    outs = [path for kind in ("outs", "metrics", "plots") for path in _paths(definition.get(kind))]
    return Stage(name, list(definition.get("deps") or []), _params(definition.get("params")), outs)


def stages(params: dict[str, Any], root: str | Path = ".") -> dict[str, Stage]:
    """Every stage of ``root``'s dvc.yaml, each ``foreach`` cell as ``name@item`` and each ``matrix`` cell as
    ``name@value-value``, with ``${...}`` filled in from ``params`` (params.yaml's values)."""
    import yaml

    document = yaml.safe_load((Path(root) / DVC_YAML).read_text()) or {}
    found: dict[str, Stage] = {}
    for name, definition in (document.get("stages") or {}).items():
        if "foreach" in definition:
            items = _fill(definition["foreach"], params)
            cells = items.items() if isinstance(items, dict) else ((item, item) for item in items)
            definition, contexts = definition["do"], {key: {"item": item, "key": key} for key, item in cells}
        elif "matrix" in definition:
            axes = {axis: _fill(values, params) for axis, values in definition.pop("matrix").items()}
            combos = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
            contexts = {"-".join(map(str, combo.values())): {"item": combo} for combo in combos}
        else:
            found[name] = _stage(name, _fill(definition, params))
            continue
        for key, context in contexts.items():
            found[f"{name}@{key}"] = _stage(f"{name}@{key}", _fill(definition, {**params, **context}))
    return found


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def directory_md5(path: Path, ignored: Any = None) -> str:
    """DVC's hash of a directory, as dvc.lock records it (``<md5>.dir``: the md5 of the JSON list of its files' md5s
    and paths), its files matched by ``ignored`` (a ``.dvcignore``'s patterns) left out."""
    files = sorted((file.relative_to(path).as_posix(), file) for file in path.rglob("*") if file.is_file())
    if ignored is not None:
        files = [(name, file) for name, file in files if not ignored(file)]
    listing = [{"md5": file_md5(file), "relpath": name} for name, file in files]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def _ignore_rule(path: Path) -> Any:
    """The ``.dvcignore`` of the DVC repository around ``path``, as a test of a file; None outside one."""
    for folder in (path, *path.parents):
        if (folder / ".dvc").is_dir():
            rules = folder / DVCIGNORE
            if not rules.is_file():
                return None
            import pathspec

            spec = pathspec.GitIgnoreSpec.from_lines(rules.read_text().splitlines())
            return lambda file: spec.match_file(file.relative_to(folder).as_posix())
    return None


def md5_path(path: str | Path) -> str:
    """DVC's hash of a file, or of a directory (``.dir``), as dvc.lock records it; inside a DVC repository its
    ``.dvcignore`` applies (``__pycache__`` in a code folder changes no hash)."""
    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return directory_md5(path, _ignore_rule(path)) if path.is_dir() else file_md5(path)
