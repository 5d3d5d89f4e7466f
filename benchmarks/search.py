"""What a finished search bought, on the test split: its best trial against its first trial (the defaults).

Run it in the repository where `ptft search <file>` ran, after the search. For each of the two trials and each
of the search's seeds it runs the test stage as a DVC experiment (`dvc exp run --temp test -S <the trial's
params>`): DVC's run cache gives back the trial's fine-tuned model and validation scores, so only the test stage
runs, once per model. The search itself never read the test split; this is the one look at it, after the choice.

Usage:  python benchmarks/search.py configs/search.yaml [--out DIR]
Writes search.json and search.md (default: benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import dvc.api
import optuna

from ptft.experiments import column_name
from ptft.pipeline.params import load_params
from ptft.search import storage_url
from ptft.search.report import best_trial
from ptft.search.runner import override
from ptft.search.spec import SEED_KEY, load_spec

ROOT = Path(__file__).resolve().parents[1]


def score_on_test(study: str, trial: optuna.trial.FrozenTrial, values: dict[str, Any], seed: int) -> dict[str, float]:
    """The test stage's accuracy and macro-F1 for ``trial``'s model of ``seed`` (an experiment named after them)."""
    name = f"{study}-test-{trial.number}-s{seed}"
    subprocess.run([sys.executable, "-m", "dvc", "exp", "remove", name], cwd=ROOT, capture_output=True)
    subprocess.run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "test", "--name", name,
                    *(arg for key, value in {**values, **trial.params, SEED_KEY: seed}.items()
                      for arg in ("-S", override(key, value)))], cwd=ROOT, check=True)
    row = next(r for r in dvc.api.exp_show(repo=str(ROOT)) if r.get("Experiment") == name)
    return {key: float(row[column_name(row, "reports/test/metrics.json", key)]) for key in ("accuracy", "macro_f1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file", help="the search file the study ran with")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    spec = load_spec(args.file, load_params(ROOT / "params.yaml"))
    study = optuna.load_study(study_name=spec.study, storage=storage_url(spec.storage, ROOT))
    best, default = best_trial(study), study.trials[0]
    finished = [t for t in study.trials if t.state.is_finished()]
    result: dict[str, Any] = {
        "study": spec.study, "objective": f"validation {spec.objective}", "seeds": spec.seeds, "set": spec.set,
        "trials": {state.name.lower(): sum(t.state == state for t in finished) for state in
                   (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)},
        "wall_minutes": round(study.user_attrs.get("wall_seconds", 0) / 60, 1),
        "rows": [],
    }
    for label, trial in (("default (trial 0)", default), (f"best (trial {best.number})", best)):
        tests = [score_on_test(spec.study, trial, spec.set, seed) for seed in spec.seeds]
        result["rows"].append({
            "trial": label, "params": trial.params, "validation": trial.value, "validation_by_seed":
            trial.user_attrs.get("scores"), "test_accuracy": [t["accuracy"] for t in tests],
            "test_macro_f1": [t["macro_f1"] for t in tests]})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "search.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"| trial | params | validation {spec.objective} (mean of {len(spec.seeds)} seeds) | test accuracy | "
             "test macro-F1 |", "| --- | --- | --- | --- | --- |"]
    for row in result["rows"]:
        params = ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                           for k, v in row["params"].items())
        cells = [f"{statistics.mean(row[k]):.3f} ± {statistics.stdev(row[k]):.3f}" if len(row[k]) > 1 else
                 f"{row[k][0]:.3f}" for k in ("test_accuracy", "test_macro_f1")]
        lines.append(f"| {row['trial']} | {params} | {row['validation']:.4f} | {cells[0]} | {cells[1]} |")
    (args.out / "search.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
