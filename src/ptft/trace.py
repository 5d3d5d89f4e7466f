"""``ptft lineage``: the chain from an artifact back to the raw corpus, checked against the workspace."""

from __future__ import annotations

import functools
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import yaml

from ptft.pipeline.lineage import DVC_YAML, LINEAGE_FILE, dvc_stages, flatten, md5_path, producer_of

DVC_CACHE = Path(".dvc/cache/files/md5")
LOCK_FILE = Path("dvc.lock")
# How far back in git history to look for the commit that recorded an artifact.
HISTORY_DEPTH = 500


class LineageError(ValueError):
    """The path is not an artifact with lineage, or is not inside the ptft repository."""


@functools.cache  # one trace hashes each model directory once, not once per mention
def _md5(path: str) -> str | None:
    try:
        return md5_path(path)
    except FileNotFoundError:
        return None


def _from_cache(dir_md5: str) -> dict[str, Any] | None:
    """An artifact's lineage.json read back from the DVC cache, by the directory's md5."""
    manifest = DVC_CACHE / dir_md5[:2] / dir_md5[2:]
    if not manifest.is_file():
        return None
    entry = next((e for e in json.loads(manifest.read_text()) if e["relpath"] == LINEAGE_FILE), None)
    cached = entry and DVC_CACHE / entry["md5"][:2] / entry["md5"][2:]
    return json.loads(cached.read_text()) if cached and cached.is_file() else None


def _read(out: str, dep: str, md5: str) -> tuple[dict[str, Any] | None, str | None]:
    """The lineage of output ``out`` at the version whose ``dep`` (``out`` or a file in it) hashed to ``md5``.

    Returns ``(None, None)`` for an output that carries no lineage of its own (the tokenizer).
    """
    if _md5(dep) == md5:
        lineage = Path(out) / LINEAGE_FILE
        return (json.loads(lineage.read_text()), "workspace") if lineage.is_file() else (None, None)
    if dep == out and (record := _from_cache(md5)) is not None:
        return record, "DVC cache (the workspace holds another version)"
    return None, "changed since, and not in the DVC cache"


def _lock_outs(lock_text: str) -> dict[str, str]:
    lock = yaml.safe_load(lock_text) or {}
    return {out["path"]: out.get("md5") for stage in lock.get("stages", {}).values() for out in stage.get("outs", [])}


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def _recorded_by(path: str, md5: str) -> str | None:
    """A command that restores the artifact: the newest commit or experiment whose dvc.lock records ``md5``."""
    for commit in (_git("log", f"-{HISTORY_DEPTH}", "--format=%H", "--", str(LOCK_FILE)) or "").split():
        if _lock_outs(_git("show", f"{commit}:{LOCK_FILE}") or "").get(path) == md5:
            return f"git checkout {commit[:12]} && dvc checkout   # or dvc repro, to rebuild it there"
    for line in (_git("for-each-ref", "--format=%(objectname) %(refname)", "refs/exps") or "").splitlines():
        commit, ref = line.split()
        if _lock_outs(_git("show", f"{commit}:{LOCK_FILE}") or "").get(path) == md5:
            return f"dvc exp apply {ref.rsplit('/', 1)[-1]}   # the experiment that recorded it"
    return None


def _field(name: str, items: list[str]) -> str:
    return textwrap.fill(", ".join(items), width=110, initial_indent=f"    {name:<12}", subsequent_indent=" " * 16,
                         break_long_words=False, break_on_hyphens=False)


def _step(record: dict[str, Any], found_in: str) -> list[str]:
    source, env = record["source"], record["environment"]
    if source["commit"] is None:
        built = "outside a git checkout"
    else:
        built = f"commit {source['commit'][:12]}" + (" + uncommitted code changes" if source["dirty"] else "")
    packages = ", ".join(f"{n} {v}" for n, v in env["packages"].items() if v and n in ("torch", "transformers"))
    lines = [
        f"{record['artifact']}  <- stage {record['stage']}   (lineage from the {found_in})",
        f"    built from  {built}; {env['device']}, {env['threads']} threads, Python {env['python']}, {packages}",
        _field("params", [f"{k}={'null' if v is None else v}" for k, v in flatten(record["params"]).items()]),
        _field("metrics", [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in flatten(record["metrics"]).items()]),
    ]
    if "corpus" in record:
        lines.append(_field("corpus", [f"{k}={v}" for k, v in record["corpus"].items()]))
    lines.append("    inputs      (md5 as recorded; = the workspace still matches, ! it does not)")
    width = max(map(len, record["deps"]), default=0)
    for dep, md5 in record["deps"].items():
        now = _md5(dep)
        mark = "=" if now == md5 else "!"
        note = "" if now == md5 else ("  missing now" if now is None else f"  now {now}")
        lines.append(f"      {mark} {dep:<{width}}  {md5}{note}")
    return lines


def trace(artifact: str | Path) -> str:
    """The chain of stages from ``artifact`` (a model or data directory) back to the raw corpus, as text."""
    if not DVC_YAML.is_file():
        raise LineageError("run `ptft lineage` from the root of the ptft repository (where dvc.yaml is)")
    try:
        start = Path(artifact).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        raise LineageError(f"{artifact} is outside this repository ({Path.cwd()})") from None
    if not (Path(start) / LINEAGE_FILE).is_file():
        raise LineageError(f"{start} has no {LINEAGE_FILE}: give a directory a ptft stage wrote "
                           "(models/finetuned, models/pretrained or data/prepared), after `dvc repro` or `dvc pull`")
    _md5.cache_clear()  # hashes are reused within one trace only: files may change between calls
    stages = dvc_stages()
    md5 = _md5(start)
    locked = _lock_outs(LOCK_FILE.read_text()) if LOCK_FILE.is_file() else {}
    state = "matches dvc.lock" if locked.get(start) == md5 else "differs from dvc.lock (see `dvc status`)"
    lines = [f"{start}: md5 {md5}, {state}", ""]

    # Walk the deps upstream; print the steps from the artifact back to the corpus, in stage order.
    steps: list[tuple[int, list[str]]] = []
    queue: list[tuple[str, str, str]] = [(start, start, md5)]
    seen = {start}
    first: dict[str, Any] | None = None
    while queue:
        out, dep, dep_md5 = queue.pop(0)
        record, found_in = _read(out, dep, dep_md5)
        stage = (producer_of(out, stages) or (out, "?"))[1]
        order = -list(stages).index(stage) if stage in stages else 0
        if record is None:
            if found_in is not None:
                steps.append((order, [f"{out}  <- stage {stage}: {found_in}"]))
            continue
        first = first or record
        steps.append((order, _step(record, found_in)))
        for upstream_dep, upstream_md5 in record["deps"].items():
            producer = producer_of(upstream_dep, stages)
            if producer is not None and producer[0] not in seen:
                seen.add(producer[0])
                queue.append((producer[0], upstream_dep, upstream_md5))
    for _, step in sorted(steps, key=lambda s: s[0]):
        lines += step + [""]

    restore = _recorded_by(start, md5) if md5 else None
    lines.append("reproduce:")
    if restore:
        lines.append(f"    {restore}")
    if first and first["rebuild"]:
        lines.append(f"    {first['rebuild']}   # rebuilds it bit for bit (same hardware, software, threads)")
    if not restore and not (first and first["rebuild"]):
        lines.append("    no commit records it yet: commit dvc.lock (or use `dvc exp save`) to make it reproducible")
    return "\n".join(lines)
