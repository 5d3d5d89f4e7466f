"""How long `dvc repro` took with the defaults: each stage's wall time, from the run logs (not a new measurement).

Every stage run appends a line to ``logs/<stage>.jsonl`` (its status, start, wall seconds, host, machine and
environment, and the Trainer's speed for training stages). For every stage of ``dvc.lock`` (the run whose results
are committed) this takes the last ``succeeded`` entry and sums the wall times of

- main: prepare, prepare_corpus, pretrain, finetune, evaluate, test and export (the model);
- comparison: every other stage (the compare_* cells, the objectives' pre-training, compare_report, the optional
  MiniLM arms when dvc.lock has them).

It also records the speeds ``ptft estimate`` scales to other data and params when a machine has no run logs of its
own (``rates``: training FLOP/s of pre-training and fine-tuning, and a stage's start-up; see
:mod:`ptft.pipeline.cost`), and each training stage's estimate from them beside its measured time, which shows how
far the estimate is off.

Wall times are the stages' own (after Python start-up and imports); the seconds DVC spends between stages (hashing,
start-up) are not in them. Run it after a full `dvc repro` on the machine that ran it; logs/ is git-ignored, the
results are committed. A stage of dvc.lock without a succeeded entry, or stages run on different machines, fail
it with one line. A stage rerun since (alone, or while other work shared the machine) replaces its entry, so
after such reruns run `dvc repro -f` first: the committed results are those of one whole run. When a param change
made `dvc repro` rerun only some stages (not pretrain or finetune, whose runs set the rates), ``--rerun`` takes
those stages' times from the runs that built their locked outputs and keeps the others' from the committed
results; the Markdown names them.

Usage:  python benchmarks/pipeline_time.py [--logs logs] [--out benchmarks/results] [--rerun STAGE,...]
Writes pipeline_time.json and pipeline_time.md under --out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from ptft.estimate import estimate_pipeline
from ptft.pipeline.cost import Sizes, Speed, finetune_run_flops, last_succeeded, model_config, model_flops
from ptft.pipeline.flops import predicted_fraction
from ptft.pipeline.lineage import fingerprint, lineage_inputs, stage_inputs
from ptft.pipeline.params import load_params

ROOT = Path(__file__).resolve().parents[1]
MAIN = ("prepare", "prepare_corpus", "pretrain", "finetune", "evaluate", "test", "export")


def pipeline_time(stages: list[str], logs: Path) -> dict[str, Any]:
    """The results file's content for the dvc.lock stages ``stages``; SystemExit naming what is missing."""
    entries = {stage: last_succeeded(logs / f"{stage}.jsonl") for stage in stages}
    if missing := [stage for stage, entry in entries.items() if entry is None]:
        raise SystemExit(f"pipeline_time: no succeeded run of {', '.join(missing)} in {logs}/<stage>.jsonl; "
                         "run `dvc repro` (all of dvc.lock's stages) on this machine first")
    machines = {(e["machine"]["cpu"]["model"], e["machine"]["threads"], e["host"]) for e in entries.values()}
    if len(machines) > 1:
        raise SystemExit(f"pipeline_time: the stages' last runs were on different machines {sorted(machines)}; "
                         "rerun them on one (`dvc repro -f`) so that the times add up")
    (cpu, threads, host), = machines
    result: dict[str, Any] = {"machine": {"cpu": cpu, "threads": threads, "host": host}, "stages": {}}
    for stage, entry in entries.items():
        result["stages"][stage] = {"wall_seconds": entry["wall_seconds"], "started": entry["started"]}
        if "speed" in entry:
            result["stages"][stage]["speed"] = entry["speed"]
    return with_totals(result)


def with_totals(result: dict[str, Any]) -> dict[str, Any]:
    """The result with its main, comparison and overall seconds and minutes (re)computed from its stages."""
    main = sum(s["wall_seconds"] for name, s in result["stages"].items() if name in MAIN)
    comparison = sum(s["wall_seconds"] for name, s in result["stages"].items() if name not in MAIN)
    result["totals"] = {"main": round(main, 2), "comparison": round(comparison, 2), "all": round(main + comparison, 2)}
    result["minutes"] = {key: round(seconds / 60) for key, seconds in result["totals"].items()}
    return result


def partial_rerun(rerun: list[str], params: dict[str, Any], committed: Path, logs: Path) -> dict[str, Any]:
    """The committed results with the ``rerun`` stages' times replaced by the runs that built their outputs in
    dvc.lock (the run log entry whose params and data deps are the lock's); the rates stay those of the committed
    full run, whose pretrain and finetune these stages did not rerun."""
    result = json.loads(committed.read_text())
    if rates := {"pretrain", "finetune"} & set(rerun):
        raise SystemExit(f"pipeline_time: {', '.join(sorted(rates))} set the rates; rerun the whole pipeline")
    for stage in rerun:
        key = fingerprint(lineage_inputs(stage_inputs(stage, params)))
        entry = last_succeeded(logs / f"{stage}.jsonl", lambda e, key=key: e.get("lineage_inputs") == key)
        if entry is None:
            raise SystemExit(f"pipeline_time: {stage}: no run in {logs} built its locked outputs")
        if entry["host"] != result["machine"]["host"]:
            raise SystemExit(f"pipeline_time: {stage} reran on {entry['host']}, the committed run on "
                             f"{result['machine']['host']}; rerun the whole pipeline on one machine")
        result["stages"][stage] = {"wall_seconds": entry["wall_seconds"], "started": entry["started"]}
    result["rerun"] = sorted(set(result.get("rerun", [])) | set(rerun))
    return with_totals(result)


def run_rates(params: dict[str, Any], sizes: Sizes, logs: Path) -> dict[str, float]:
    """The speeds of the last pretrain and finetune runs in ``logs`` (FLOP/s, and start-up seconds), as the results
    record them for :func:`ptft.pipeline.cost.measured_speed`. ``params`` and ``sizes`` must be those runs' (the
    committed run's): a run logged before runs recorded their FLOP/s is counted from them. :func:`pipeline_time`
    has checked that both runs are there."""
    pretrain_run, finetune_run = (last_succeeded(logs / f"{stage}.jsonl") for stage in ("pretrain", "finetune"))
    pretrain, finetune = params["pretrain"], params["finetune"]
    runtime = finetune_run["speed"]["train_runtime"]
    pretrain_rate = pretrain_run["speed"].get("train_flops_per_second")
    if not pretrain_rate:
        config = model_config("pretrained", pretrain["objective"], params["model"], sizes.tokenizer_dir)
        pretrain_rate = pretrain_run["speed"]["train_tokens_per_second"] * model_flops(
            config, pretrain["seq_len"], predicted_fraction(pretrain, config))
    finetune_rate = finetune_run["speed"].get("train_flops_per_second")
    if not finetune_rate:  # finetune evaluates validation each epoch and never scores test
        flops, _ = finetune_run_flops(finetune, params, sizes, finetune["train_examples"] or sizes.documents["train"],
                                      finetune["epochs"] * sizes.documents["validation"])
        finetune_rate = flops / runtime
    return {"pretrain": pretrain_rate, "finetune": finetune_rate,
            "startup": max(0.0, finetune_run["wall_seconds"] - runtime)}


def markdown(result: dict[str, Any]) -> str:
    machine, totals, minutes = result["machine"], result["totals"], result["minutes"]
    lines = ["# `dvc repro` with the defaults: each stage's wall time", "",
             f"From the run logs (`logs/<stage>.jsonl`, the last succeeded run of each stage of `dvc.lock`) on "
             f"{machine['cpu']}, {machine['threads']} threads; a stage's own time, after Python start-up and "
             "imports. Written by `python benchmarks/pipeline_time.py`."
             + (f" {len(result['rerun'])} stages are from a later `dvc repro` that reran only them (`--rerun`): "
                + ", ".join(result["rerun"]) + "." if result.get("rerun") else ""), "",
             "The estimate is `ptft estimate`'s at the rates measured here (pre-training "
             f"{result['rates']['pretrain'] / 1e9:.1f} GFLOP/s, fine-tuning {result['rates']['finetune'] / 1e9:.1f} "
             "GFLOP/s), for the stages that train: pretrain and finetune are where those rates come from, so the "
             "other rows are the estimate's test.", "",
             "| stage | seconds | estimated |", "| --- | --- | --- |"]
    lines += [f"| {stage} | {row['wall_seconds']:.1f} | "
              + (f"{row['estimated_seconds']:.1f} |" if "estimated_seconds" in row else "— |")
              for stage, row in result["stages"].items()]
    lines += ["", f"- main (prepare → export): {totals['main']:.0f} s, {minutes['main']} minutes",
              f"- the comparison (every other stage): {totals['comparison']:.0f} s, {minutes['comparison']} minutes",
              f"- all: {totals['all']:.0f} s, {minutes['all']} minutes"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=Path, default=ROOT / "logs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    parser.add_argument("--rerun", default="", help="after `dvc repro` reran only these stages (comma-separated): "
                        "take their times from the runs that built their locked outputs, keep the others' from --out")
    args = parser.parse_args()
    stages = list(yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"])
    stages = [s for s in MAIN if s in stages] + [s for s in stages if s not in MAIN]  # the pipeline's order first
    params, sizes = load_params(ROOT / "params.yaml"), Sizes(*(ROOT / d for d in ("data/prepared", "data/corpus",
                                                                                   "data/tokenizer")))
    if args.rerun:
        result = partial_rerun(args.rerun.split(","), params, args.out / "pipeline_time.json", args.logs)
    else:
        result = pipeline_time(stages, args.logs)
        result["rates"] = run_rates(params, sizes, args.logs)
    speed = Speed(**result["rates"], source="benchmarks/results/pipeline_time.json")
    for estimate in (e for group in estimate_pipeline(params, sizes, speed).values() for e in group):
        if estimate.stage in result["stages"]:  # a partial rerun keeps the committed run's stages only
            result["stages"][estimate.stage]["estimated_seconds"] = round(estimate.seconds, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline_time.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "pipeline_time.md").write_text(markdown(result))
    print(f"wrote {args.out / 'pipeline_time.json'} and pipeline_time.md: main {result['minutes']['main']} minutes, "
          f"the comparison {result['minutes']['comparison']}, all {result['minutes']['all']}")


if __name__ == "__main__":
    main()
