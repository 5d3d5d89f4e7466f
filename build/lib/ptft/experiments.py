"""`ptft exp-show`: `dvc exp show` narrowed to what a reader compares, the params the experiments changed and
the headline metrics; `ptft exp-run`: `dvc exp run`, refusing first a queued run whose data would not travel with it.

Plain `dvc exp show` lists every key of params.yaml, every dependency of every stage and every metric (over 200
columns here), and DVC 3 has no setting for its default columns. This view asks DVC for the rows first
(:func:`dvc.api.exp_show`), keeps the params whose values differ between them plus :data:`HEADLINE`, and then
runs `dvc exp show` itself with `--drop '.*' --keep <those columns>`, so the table is DVC's own (its sorting,
markdown and CSV output, its row options).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from ptft.pipeline.lineage import flatten
from ptft.pipeline.params import PARAMS_FILE, UserError, check_params, read_yaml, with_values
from ptft.pipeline.sources import is_local
from ptft.pipeline.tracked import untracked_problem

# The metrics every view shows, as (metrics file, key): validation and test scores, and whether pre-training
# helped at 100 labels (the comparison's headline). A file the pipeline has not written yet is left out.
HEADLINE = [
    ("reports/evaluate/metrics.json", "accuracy"),
    ("reports/evaluate/metrics.json", "macro_f1"),
    ("reports/test/metrics.json", "accuracy"),
    ("reports/test/metrics.json", "macro_f1"),
    ("reports/pretrain/metrics.json", "perplexity"),
    ("reports/compare/metrics.json", "pretrained_minus_scratch.at_100.accuracy"),
    ("reports/compare/metrics.json", "pretrained_minus_tfidf.at_100.accuracy"),
]
ALWAYS = ["Experiment", "Created"]
QUEUE = ["State", "Executor"]  # shown while the rows include queued, running or failed experiments


def column_name(row: dict[str, Any], file: str, key: str) -> str | None:
    """The column DVC shows ``file``'s ``key`` under: the bare key when no other file has it, else ``file:key``."""
    return next((name for name in (key, f"{file}:{key}") if name in row), None)


def _differs(values: list[Any]) -> bool:
    """Whether the rows hold more than one value (a row without the key, e.g. an older commit, is not one)."""
    return len({repr(value) for value in values if value is not None}) > 1


def columns(rows: list[dict[str, Any]], params: dict[str, Any]) -> list[str]:
    """The columns of the narrow view of ``rows`` (:func:`dvc.api.exp_show` records): the params whose values differ
    between the rows, in params.yaml's order, then the :data:`HEADLINE` metrics that any row has."""
    if not rows:
        return []
    names = set().union(*rows)
    everything = {name: None for name in names}  # look names up in the union of the rows' columns
    changed = []
    for key in flatten(params):  # params.yaml's keys as DVC names them: nested keys joined with dots
        name = column_name(everything, PARAMS_FILE.name, key)
        if name and _differs([row.get(name) for row in rows]):
            changed.append(name)
    metrics = [name for file, key in HEADLINE if (name := column_name(everything, file, key))
               and any(row.get(name) is not None for row in rows)]
    queue = QUEUE if any(row.get("State") not in (None, "Success") for row in rows) else []
    return queue + changed + metrics


def keep_pattern(names: list[str]) -> str:
    """A `--keep` regex that matches exactly ``names`` (DVC matches from the start of a column's name)."""
    return "(?:" + "|".join(re.escape(name) for name in [*ALWAYS, *names]) + ")$"


def show(revs: list[str] | None, num: int, dvc_args: list[str], extra_keep: list[str]) -> int:
    """Print the narrow table: the rows of ``revs`` (default HEAD) and ``num`` commits back with their experiments.

    ``dvc_args`` go to `dvc exp show` as they are (``--md``, ``--csv``, ``--sort-by``...); ``extra_keep`` are more
    `--keep` regexes for columns to show as well. Returns dvc's exit status.
    """
    import dvc.api
    from dvc.exceptions import DvcException

    if not Path(PARAMS_FILE).is_file():
        raise UserError(f"{PARAMS_FILE} is missing: run ptft exp-show in the repository root")
    try:
        rows = dvc.api.exp_show(revs=revs or None, num=num)
    except DvcException as err:
        raise UserError(f"dvc exp show failed: {err}") from err
    keep = [keep_pattern(columns(rows, read_yaml(PARAMS_FILE))), *extra_keep]
    command = [sys.executable, "-m", "dvc", "exp", "show", "--num", str(num),
               *(arg for rev in revs or [] for arg in ("--rev", rev)),
               "--drop", ".*", *(arg for pattern in keep for arg in ("--keep", pattern)), *dvc_args]
    return subprocess.run(command).returncode


# The params whose values name local files: what a queued run must find in its copy of the commit.
INPUT_KEYS = ("data.source", "pretrain.corpus")


def set_params(args: list[str]) -> dict[str, Any]:
    """The ``-S``/``--set-param`` values of `dvc exp run` arguments for params.yaml (``key=value``, the value read as
    YAML, as DVC reads it); another file's (``file.yaml:key=value``) are left out."""
    from ruamel.yaml import YAML

    found: dict[str, Any] = {}
    values = [arg.split("=", 1)[1] for arg in args if arg.startswith("--set-param=")]
    values += [after for before, after in zip(args, args[1:]) if before in ("-S", "--set-param")]
    values += [arg[2:] for arg in args if arg.startswith("-S") and len(arg) > 2]
    for value in values:
        key, _, text = value.partition("=")
        file, colon, key = key.rpartition(":")
        if colon and Path(file).name != PARAMS_FILE.name:
            continue
        found[key] = YAML(typ="safe", pure=True).load(text) if text else None
    return found


def local_inputs(params: dict[str, Any]) -> list[tuple[str, Path]]:
    """``(param key, path)`` of every local file or folder the run reads: data.source and pretrain.corpus entries."""
    from ptft.pipeline.corpus import resolve_sources

    found = []
    source = params["data"]["source"]
    if is_local(source):
        found.append(("data.source", Path(source)))
    found += [("pretrain.corpus", path) for entry in resolve_sources(params["pretrain"]["corpus"])
              if entry.kind == "files" for path in entry.files]
    return found


def check_tracked(params: dict[str, Any], root: Path = Path(".")) -> None:
    """Refuse (one line, with the fix) a run whose local inputs git or DVC does not carry to a queued experiment."""
    for key, path in local_inputs(params):
        problem = untracked_problem(key, path, root)
        if problem:
            raise UserError(problem)


def run(args: list[str]) -> int:
    """`dvc exp run` with ``args``. A run with ``--queue`` or ``--temp`` starts from a copy of the commit, so its
    local data (data.source, pretrain.corpus files, with the ``-S`` values applied) is checked first: a file that
    neither git nor DVC tracks is refused in one line, before anything is queued. Returns dvc's exit status."""
    if {"--queue", "--temp"} & set(args):
        if not PARAMS_FILE.is_file():
            raise UserError(f"{PARAMS_FILE} is missing: run ptft exp-run in the repository root")
        overrides = {key: value for key, value in set_params(args).items() if key in INPUT_KEYS}
        params = with_values(read_yaml(PARAMS_FILE), overrides)
        check_params(params)
        check_tracked(params)
    return subprocess.run([sys.executable, "-m", "dvc", "exp", "run", *args]).returncode
