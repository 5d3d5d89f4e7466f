"""``ptft lineage``: the chain from an artifact back to the raw corpus, checked against the workspace; the
commit or experiment whose dvc.lock records it, with the command that rebuilds it; and how the running
environment differs from the one that built it.

Nothing here is stored in the artifacts: where an artifact came from in git is found now, from the
``dvc.lock`` history, so that a commit can never change an artifact's bytes.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from ptft.pipeline.dvc_files import md5_path, stages
from ptft.pipeline.lineage import LINEAGE_FILE, environment, fingerprint, flatten, run_environment
from ptft.pipeline.params import UserError, load_params

LOCK_FILE = "dvc.lock"
RUN_LOGS = Path("logs")


class LineageError(UserError):
    """The path is not an artifact with lineage, or is not inside the ptft repository."""


@functools.cache  # one trace hashes each model directory once, not once per mention
def _md5(path: str) -> str | None:
    try:
        return md5_path(path)
    except FileNotFoundError:
        return None


def _cache_files() -> Path:
    """Where the DVC cache keeps files by md5: ``files/md5`` of `dvc cache dir` (DVC documents the layout)."""
    found = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], capture_output=True, text=True)
    return Path(found.stdout.strip() or ".dvc/cache") / "files" / "md5"


def _from_cache(dir_md5: str) -> dict[str, Any] | None:
    """An artifact's lineage.json read back from the DVC cache, by the md5 of its directory: the ``.dir`` manifest
    (a JSON list of ``relpath`` and ``md5``) names the file's md5, and each is stored as ``<md5[:2]>/<md5[2:]>``."""
    files = _cache_files()

    def cached(md5: str) -> Path:
        return files / md5[:2] / md5[2:]

    manifest = cached(dir_md5)
    if not manifest.is_file():
        return None
    entry = next((e for e in json.loads(manifest.read_text()) if e["relpath"] == LINEAGE_FILE), None)
    return json.loads(cached(entry["md5"]).read_text()) if entry and cached(entry["md5"]).is_file() else None


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


def _producers() -> dict[str, str]:
    """Every output of the pipeline and the stage (``compare_scratch@100`` for a cell) that writes it."""
    return {out: name for name, stage in stages(load_params()).items() for out in stage.outs}


def _producer_of(path: str, producers: dict[str, str]) -> tuple[str, str] | None:
    """The output holding ``path`` (the path itself or a directory above it) and the stage writing it."""
    return next(((out, stage) for out, stage in producers.items() if path == out or path.startswith(f"{out}/")), None)


def _lock_outs(lock_text: str | None) -> dict[str, str]:
    lock = yaml.safe_load(lock_text or "") or {}
    return {out["path"]: out.get("md5") for stage in lock.get("stages", {}).values() for out in stage.get("outs", [])}


def _git(*args: str) -> str | None:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def recorded_by(path: str, md5: str) -> dict[str, str] | None:
    """The commit, or else the experiment, whose dvc.lock records ``md5`` for the output ``path``.

    ``git log -S`` finds the commits whose dvc.lock gained or lost the hash, in every branch and
    experiment at once; only those few are read, to keep the ones that record it as this output.
    A commit is preferred to an experiment, which a clone does not bring along.
    """
    log = _git("log", f"-S{md5}", "--format=%H%x09%D", "--decorate-refs=refs/exps", "--all", "--", LOCK_FILE) or ""
    found: list[dict[str, str]] = []
    for line in log.splitlines():
        commit, _, refs = line.partition("\t")
        if _lock_outs(_git("show", f"{commit}:{LOCK_FILE}")).get(path) != md5:
            continue  # the commit that dropped it, or one where it is another output's dep
        experiment = next((ref.rsplit("/", 1)[-1] for ref in refs.split(", ") if ref.startswith("refs/exps/")), None)
        found.append({"experiment": experiment} if experiment else {"commit": commit})
    return next((f for f in found if "commit" in f), found[0] if found else None)


def reproduce(artifact: str, stage: str, source: dict[str, str] | None) -> dict[str, str] | None:
    """The commands that restore the artifact from the DVC cache or remote, and that rebuild it from scratch."""
    if source is None:
        return None
    go = f"git checkout {source['commit'][:12]}" if "commit" in source else f"dvc exp apply {source['experiment']}"
    return {"restore": f"{go} && dvc checkout {artifact}", "rebuild": f"{go} && dvc repro -f {stage}"}


def run_log_entry(record: dict[str, Any]) -> dict[str, Any] | None:
    """The last successful run in ``logs/<stage>.jsonl`` that built from exactly this record's params and data:
    the machine and tools that ran it (the run log is local: a clone, or an artifact pulled from a remote, has
    none)."""
    from ptft.pipeline.cost import last_succeeded

    key = fingerprint({"params": record["params"], "deps": record["deps"]})
    return last_succeeded(RUN_LOGS / f"{record['stage']}.jsonl", lambda entry: entry.get("lineage_inputs") == key)


def environment_drift(records: list[dict[str, Any]]) -> list[str]:
    """How the running software differs from the software that built each record's artifact."""
    now = environment(0)  # the thread count is a param, which a rebuild sets as recorded
    drift: list[str] = []
    for record in records:
        built = record["environment"]
        pairs = [("Python", built["python"], now["python"])]
        pairs += [(name, version, now["packages"].get(name)) for name, version in built["packages"].items()]
        drift += [f"{record['artifact']}: {name} {was} when built, {here or 'not installed'} here"
                  for name, was, here in pairs if was != here]
    return drift


def machine_drift(record: dict[str, Any], entry: dict[str, Any] | None) -> list[str]:
    """What to expect from a rebuild of ``record``'s artifact on this machine, given the machine that built it
    (its run-log ``entry``): the differences docs/reproducibility.md says change the bytes."""
    from ptft.pipeline.kernels import kernel_facts

    kernels = flatten(record["params"]).get("runtime.kernels")
    now = kernel_facts()
    notes = []
    if kernels == "avx2" and "avx2" not in now["cpu"]["vector_extensions"]:
        notes.append("this CPU lacks AVX2, which runtime.kernels: avx2 needs: a rebuild here will differ")
    if entry is None or "machine" not in entry:
        return notes
    built, device = entry["machine"], entry["environment"].get("device")
    if device != run_environment(0)["device"]:
        notes.append(f"built on {device}, this is {run_environment(0)['device']}: a rebuild here will differ "
                     "(bit-exact holds on the same device and software)")
    elif kernels in (None, "native") and built["torch_cpu_capability"] != now["torch_cpu_capability"]:
        notes.append(f"built with native kernels on {built['torch_cpu_capability']}, this machine picks "
                     f"{now['torch_cpu_capability']}: a rebuild here will differ in the last bits, and training "
                     "grows them (runtime.kernels: avx2 gives the same bytes on both)")
    elif kernels == "avx2" and built["cpu"]["vendor"] != now["cpu"]["vendor"]:
        notes.append(f"built on a {built['cpu']['vendor']} CPU, this is {now['cpu']['vendor']}: oneMKL documents its "
                     "AVX2 reproducibility mode for Intel CPUs only (docs/reproducibility.md says what was measured)")
    return notes


def lineage(artifact: str | Path) -> dict[str, Any]:
    """The chain of stages from ``artifact`` (a model or data directory) back to the raw corpus, with where
    git records it, how to rebuild it, and the environment drift."""
    if not Path("dvc.yaml").is_file():
        raise LineageError("run `ptft lineage` from the root of the ptft repository (where dvc.yaml is)")
    try:
        start = Path(artifact).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        raise LineageError(f"{artifact} is outside this repository ({Path.cwd()})") from None
    if not (Path(start) / LINEAGE_FILE).is_file():
        raise LineageError(f"{start} has no {LINEAGE_FILE}: give a directory a ptft stage wrote "
                           "(models/finetuned, models/pretrained or data/prepared), after `dvc repro` or `dvc pull`")
    _md5.cache_clear()  # hashes are reused within one trace only: files may change between calls
    producers = _producers()
    order = list(dict.fromkeys(producers.values()))  # dvc.yaml's order: upstream stages first
    md5 = _md5(start)

    # Walk the deps upstream, breadth first; the steps are listed from the artifact back to the corpus.
    steps: list[dict[str, Any]] = []
    queue, seen = [(start, start, md5)], {start}
    while queue:
        out, dep, dep_md5 = queue.pop(0)
        record, found_in = _read(out, dep, dep_md5)
        stage = (_producer_of(out, producers) or (out, "?"))[1]
        steps.append({"artifact": out, "stage": stage, "found_in": found_in, "record": record,
                      "run_log": run_log_entry(record) if record else None})
        for upstream_dep, upstream_md5 in (record or {}).get("deps", {}).items():
            producer = _producer_of(upstream_dep, producers)
            if producer is not None and producer[0] not in seen:
                seen.add(producer[0])
                queue.append((producer[0], upstream_dep, upstream_md5))
    steps.sort(key=lambda s: -order.index(s["stage"]) if s["stage"] in order else 0)
    steps = [s for s in steps if s["record"] is not None or s["found_in"] is not None]

    source = recorded_by(start, md5) if md5 else None
    return {
        "artifact": start,
        "md5": md5,
        "matches_dvc_lock": Path(LOCK_FILE).is_file() and _lock_outs(Path(LOCK_FILE).read_text()).get(start) == md5,
        "steps": steps,
        "recorded_by": source,
        "reproduce": reproduce(start, (_producer_of(start, producers) or (start, start))[1], source),
        "environment_drift": environment_drift([s["record"] for s in steps if s["record"]]),
        "machine_drift": [f"{s['record']['artifact']}: {note}" for s in steps if s["record"]
                          for note in machine_drift(s["record"], s["run_log"])],
    }


def _field(name: str, items: list[str]) -> str:
    return textwrap.fill(", ".join(items), width=110, initial_indent=f"    {name:<12}", subsequent_indent=" " * 16,
                         break_long_words=False, break_on_hyphens=False)


def _machine(entry: dict[str, Any] | None) -> str:
    """Where the run log says the artifact was built: device, CPU, kernels, and the tools' versions."""
    if entry is None or "machine" not in entry:
        return "no run log of it here (built on another machine, or before run logs named the machine)"
    machine, packages = entry["machine"], entry["environment"]["packages"]
    tools = ", ".join(f"{n} {packages[n]}" for n in ("dvc", "dvclive") if packages.get(n))
    return (f"{entry['environment']['device']}, {machine['cpu']['model']} ({machine['torch_cpu_capability']} "
            f"kernels), {entry['started'][:10]}; {tools}")


def _step(record: dict[str, Any], found_in: str, entry: dict[str, Any] | None = None) -> list[str]:
    env = record["environment"]
    packages = ", ".join(f"{n} {v}" for n, v in env["packages"].items() if v and n in ("torch", "transformers"))
    lines = [
        f"{record['artifact']}  <- stage {record['stage']}   (lineage from the {found_in})",
        f"    built with  {env['threads']} threads, Python {env['python']}, {packages}",
        f"    built on    {_machine(entry)}",
        _field("params", [f"{k}={'null' if v is None else v}" for k, v in flatten(record["params"]).items()]),
        _field("metrics", [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in flatten(record["metrics"]).items()]),
    ]
    corpus = record.get("corpus", [])
    for identity in corpus if isinstance(corpus, list) else [corpus]:  # prepare_corpus: one per source
        files = [f"{path} {md5}" for path, md5 in identity.get("files", {}).items()]
        fields = flatten({k: v for k, v in identity.items() if k != "files"})  # a Hub source: hub.resolved=<commit>
        lines.append(_field("corpus", [f"{k}={v}" for k, v in fields.items()] + files))
    if "init" in record:  # a Hub checkpoint the model started from, and the commit it resolved to
        lines.append(_field("init", [f"{k}={v}" for k, v in record["init"].items()]))
    if record["deps"]:  # prepare reads only the raw corpus, named above
        lines.append("    inputs      (md5 as recorded; = the workspace still matches, ! it does not)")
    width = max(map(len, record["deps"]), default=0)
    for dep, md5 in record["deps"].items():
        now = _md5(dep)
        mark = "=" if now == md5 else "!"
        note = "" if now == md5 else ("  missing now" if now is None else f"  now {now}")
        lines.append(f"      {mark} {dep:<{width}}  {md5}{note}")
    return lines


def render(found: dict[str, Any]) -> str:
    """:func:`lineage` as the text ``ptft lineage`` prints."""
    state = "matches dvc.lock" if found["matches_dvc_lock"] else "differs from dvc.lock (see `dvc status`)"
    lines = [f"{found['artifact']}: md5 {found['md5']}, {state}", ""]
    for step in found["steps"]:
        record = step["record"]
        lines += (_step(record, step["found_in"], step["run_log"]) if record else
                  [f"{step['artifact']}  <- stage {step['stage']}: {step['found_in']}"]) + [""]
    source = found["recorded_by"]
    if source is None:
        lines.append("recorded by: no commit or experiment yet: commit dvc.lock (or `dvc exp save`) to make it "
                     "reproducible")
    else:
        where = f"commit {source['commit'][:12]}" if "commit" in source else f"experiment {source['experiment']}"
        commands = found["reproduce"]
        lines += [f"recorded by: {where} (its dvc.lock holds this md5, with the code and params that built it)",
                  f"    {commands['restore']}   # restore it (from the DVC cache, or `dvc pull` first)",
                  f"    {commands['rebuild']}   # rebuild it bit for bit (same software and threads)"]
    drift = found["environment_drift"]
    lines += ["", "environment: " + ("as when built" if not drift else
                                     "differs from when built, so a rebuild may not be bit-exact:")]
    lines += [f"    {line}" for line in drift]
    if found["machine_drift"]:
        lines += ["machine: differs from the one that built it in a way that changes the bytes:"]
        lines += [f"    {line}" for line in found["machine_drift"]]
    return "\n".join(lines)
