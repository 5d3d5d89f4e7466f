"""Does this machine rebuild the committed dvc.lock? `dvc repro` in a clone of HEAD, each stage's outputs against the
committed lock's hashes, and, where a committed curve differs, the first logged step at which it parts.

The lock records hashes only, so this is the check a user on another machine can make with `git diff dvc.lock` after
a rebuild, stage by stage; `benchmarks/cross_cpu.py` finds the op where two CPUs part, this shows what it costs.

Usage: python benchmarks/rebuild.py [STAGE ...] [--clone DIR]
  STAGE: dvc repro targets (default: export, the main chain prepare -> export; the comparison's stages take 25
  minutes more). --clone: a clone (of a commit with HEAD's pipeline) to rebuild in, kept: a rerun there finds the
  stages up to date and only compares.
Adds this CPU's result to benchmarks/results/rebuild.json (keyed by CPU model and kernels; other machines' results
are kept) and rewrites rebuild.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from clones import repro, sh

from ptft.pipeline.kernels import cpu_info

RESULTS = Path("benchmarks/results")
PIPELINE = ["dvc.yaml", "dvc.lock", "params.yaml", "src", "stages", "reports"]  # what a rebuild reads and compares


def lock_outs(text: str) -> dict[str, dict[str, str]]:
    """stage -> {output path: md5} of a dvc.lock's text."""
    stages = yaml.safe_load(text)["stages"]
    return {name: {out["path"]: out["md5"] for out in entry.get("outs", [])} for name, entry in stages.items()}


def first_parting(committed: str, rebuilt: str) -> dict[str, Any] | None:
    """The first row of two dvclive curves (``step<TAB>value``) whose values differ, or None where they agree."""
    for old, new in zip(committed.splitlines()[1:], rebuilt.splitlines()[1:], strict=False):
        if old != new:
            step, was = old.split("\t")
            return {"step": int(step), "committed": float(was), "rebuilt": float(new.split("\t")[1])}
    return None


def started(clone: Path, stage: str) -> str:
    """When the stage's last run began (its run log's last line): the order the rebuild ran them in."""
    return json.loads((clone / "logs" / f"{stage}.jsonl").read_text().splitlines()[-1])["started"]


def compare(clone: Path) -> dict[str, dict[str, Any]]:
    """Each stage the rebuild ran (its outputs in the clone's lock), in the order they ran: identical or not, the
    curves that part and the metrics that moved."""
    committed = lock_outs(sh(["git", "show", "HEAD:dvc.lock"], clone))
    rebuilt = lock_outs((clone / "dvc.lock").read_text())
    changed = set(sh(["git", "diff", "--name-only", "HEAD"], clone).split())
    rows = {}
    for stage in sorted((stage for stage in rebuilt if (clone / "logs" / f"{stage}.jsonl").is_file()),  # run here
                        key=lambda stage: started(clone, stage)):
        outs = rebuilt[stage]
        differing = sorted(path for path, md5 in outs.items() if committed.get(stage, {}).get(path) != md5)
        curves = {}
        for path in sorted(changed):
            if path.endswith(".tsv") and "/plots/metrics/" in path and any(path.startswith(f"{out}/") for out in outs):
                parting = first_parting(sh(["git", "show", f"HEAD:{path}"], clone), (clone / path).read_text())
                if parting:
                    curves[path] = parting
        metrics = {}
        for path in differing:
            if path.endswith("metrics.json"):
                was = json.loads(sh(["git", "show", f"HEAD:{path}"], clone))
                now = json.loads((clone / path).read_text())
                metrics.update({key: [value, now[key]] for key, value in was.items()
                                if isinstance(value, float) and isinstance(now.get(key), float) and now[key] != value})
        rows[stage] = {"outputs": sorted(outs), "identical": not differing, "differing": differing, "curves": curves,
                       "metrics": metrics}
    return rows


def earliest_parting(stages: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The first stage (in the order they ran) whose logged curve parts from the committed one, at its earliest step."""
    for stage, row in stages.items():
        if row["curves"]:
            curve, parting = min(row["curves"].items(), key=lambda item: item[1]["step"])
            return {"stage": stage, "curve": curve, **parting}
    return None


def machine_key(info: dict[str, Any], kernels: str) -> str:
    """A run's key, a name the docs' placeholders can hold: the CPU model and the kernels, e.g. amd-epyc-avx2."""
    return re.sub(r"[^a-z0-9]+", "-", f"{info['model']} {kernels}".lower()).strip("-")


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Rebuilding the committed dvc.lock on other machines", "",
             f"The committed lock was built on {results['committed_on']}. "
             "Written by `python benchmarks/rebuild.py`.", ""]
    for run in results["runs"].values():
        cpu = run["cpu"]
        lines += [f"## {cpu['model']} ({cpu['vendor']}), runtime.kernels {run['kernels']}, {run['threads']} threads",
                  "",
                  f"`dvc repro {' '.join(run['targets'])}` in a clone of {run['commit'][:7]}: "
                  f"{run['identical']} of {len(run['stages'])} stages wrote the locked bytes.",
                  "", "| stage | outputs | result |", "| --- | --- | --- |"]
        for stage, row in run["stages"].items():
            result = "identical" if row["identical"] else f"differ: {', '.join(row['differing'])}"
            for path, parting in row["curves"].items():
                result += (f"; {path.split('/plots/metrics/')[1]} parts at step {parting['step']} "
                           f"({parting['committed']!r} committed, {parting['rebuilt']!r} here)")
            for name, (was, now) in row["metrics"].items():
                result += f"; {name} {was:.4f} committed, {now:.4f} here"
            lines.append(f"| {stage} | {', '.join(row['outputs'])} | {result} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", default=["export"])
    parser.add_argument("--clone", type=Path, help="a clone of HEAD to rebuild in (kept)")
    args = parser.parse_args()
    head = sh(["git", "rev-parse", "HEAD"], Path.cwd()).strip()
    clone = args.clone or Path(tempfile.mkdtemp(prefix="ptft-rebuild-")) / "ptft"
    if not clone.exists():
        sh(["git", "clone", "--quiet", str(Path.cwd()), str(clone)], Path.cwd())
    built = sh(["git", "rev-parse", "HEAD"], clone).strip()
    differs = subprocess.run(["git", "diff", "--quiet", built, head, "--", *PIPELINE], capture_output=True).returncode
    if differs:  # 1: another pipeline; otherwise git does not know the clone's commit here
        why = (f"has another pipeline than this checkout's HEAD ({head[:7]})" if differs == 1
               else "is not in this checkout")
        sys.exit(f"{clone}'s commit {built[:7]} {why}: clone this checkout again")
    print(f"rebuilding {' '.join(args.targets)} in {clone}", file=sys.stderr)
    repro(clone, args.targets)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    info = cpu_info()
    path = RESULTS / "rebuild.json"
    results = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    results["committed_on"] = json.loads((RESULTS / "pipeline_time.json").read_text())["machine"]["cpu"]
    stages = compare(clone)
    results["runs"][machine_key(info, params["runtime"]["kernels"])] = {
        "commit": built, "targets": args.targets, "kernels": params["runtime"]["kernels"],
        "threads": params["runtime"]["threads"], "cpu": info, "stages": stages,
        "identical": sum(row["identical"] for row in stages.values()), "first_parting": earliest_parting(stages)}
    path.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "rebuild.md").write_text(markdown(results))
    print((RESULTS / "rebuild.md").read_text())


if __name__ == "__main__":
    main()
