"""A study's report in ``reports/search/<study>/``: the trials and the best as markdown, and Optuna's plots of the
history and of the parameters' importances (PNG)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ptft.pipeline.artifacts import write_json, write_text
from ptft.search.spec import SearchSpec
from ptft.search.study import experiment_name, origin


def _value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def apply_commands(study: optuna.Study, spec: SearchSpec) -> list[str]:
    """How to take the best trial into the workspace and score it on test, once."""
    best = best_trial(study)
    if best is None:
        return []
    name = experiment_name(spec.study, origin(best), spec.seeds[0])
    pull = [f"dvc exp pull {spec.push} {name}"] if spec.push else []  # it may have run on another machine
    return [*pull, f"dvc exp apply {name}", "dvc repro test"]


def results_table(study: optuna.Study, spec: SearchSpec) -> str:
    """The study as markdown: what it searched, the best trial and how to apply it, then every trial."""
    trials = study.get_trials(deepcopy=False)
    counts = {state: sum(t.state == state for t in trials) for state in TrialState}
    best = best_trial(study)
    lines = [
        f"# Search `{spec.study}`",
        "",
        f"{len(trials)} trials: {counts[TrialState.COMPLETE]} complete, {counts[TrialState.PRUNED]} pruned, "
        f"{counts[TrialState.FAIL]} failed, {counts[TrialState.RUNNING]} running. Objective: validation "
        f"{spec.objective} (reports/evaluate/metrics.json), the mean over finetune.seed {spec.seeds}. "
        f"Wall time {study.user_attrs.get('wall_seconds', 0) / 60:.1f} minutes.",
        "",
        "Fixed for every trial: " + (", ".join(f"`{k}={_value(v)}`" for k, v in spec.set.items()) or "nothing") + ".",
        "",
    ]
    if best:
        point = ", ".join(f"`{key}={_value(best.params[key])}`" for key in spec.space)
        commands = " && ".join(apply_commands(study, spec))
        lines += [f"**Best: trial {best.number}**, validation {spec.objective} {best.value:.4f}: {point}.",
                  f"Apply it and score it on test, once: `{commands}`.", ""]
    header = ["trial", "state", *spec.space, *(f"seed {s}" for s in spec.seeds), "mean", "pruned at evaluation"]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for trial in trials:
        scores = trial.user_attrs.get("scores", {})
        pruned = trial.user_attrs.get("pruned_at")
        # A pruned trial's value is its last reported score, not a mean over seeds: left out.
        mean = f"{trial.value:.4f}" if trial.state == TrialState.COMPLETE else ""
        state = trial.state.name.lower() + (f", retries {origin(trial)}" if origin(trial) != trial.number else "")
        cells = [str(trial.number), state,
                 *(_value(trial.params[key]) if key in trial.params else "" for key in spec.space),
                 *(f"{scores[str(s)]:.4f}" if str(s) in scores else "" for s in spec.seeds),
                 mean,
                 f"{pruned['evaluation']} ({pruned['value']:.3f})" if pruned else ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(study: optuna.Study, spec: SearchSpec, out_dir: Path) -> None:
    """results.md, results.json (the trials as data), history.png and, with two complete trials, importances.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "results.md", results_table(study, spec))
    trials = [{"number": t.number, "state": t.state.name.lower(), "params": t.params,
               "value": t.value if t.state == TrialState.COMPLETE else None,
               "scores": t.user_attrs.get("scores"), "pruned_at": t.user_attrs.get("pruned_at")}
              for t in study.get_trials(deepcopy=False)]
    write_json(out_dir / "results.json", {"study": spec.study, "trials": trials})
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figures = {"history.png": plots.plot_optimization_history} if complete else {}
        if len(complete) >= 2 and len({json.dumps(t.params, sort_keys=True) for t in complete}) >= 2:
            figures["importances.png"] = plots.plot_param_importances
        for name, plot in figures.items():
            axes = plot(study)
            axes.figure.savefig(out_dir / f".{name}", format="png", dpi=100, bbox_inches="tight")
            plt.close(axes.figure)
            (out_dir / f".{name}").replace(out_dir / name)  # never a half-written figure under the real name
