"""`ptft search`: a seeded, resumable, pruned Optuna study whose trials are DVC experiments.

:mod:`~ptft.search.spec` reads the search file, :mod:`~ptft.search.study` asks and tells Optuna,
:mod:`~ptft.search.runner` runs each trial's seeds as DVC experiments, :mod:`~ptft.search.report` writes
``reports/search/<study>/``.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

from ptft.pipeline.params import PARAMS_FILE, load_params, require

REPORTS = Path("reports/search")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def _git(*args: str) -> str:
    from ptft.search.spec import SearchError

    found = subprocess.run(["git", *args], capture_output=True, text=True)
    if found.returncode:  # not a git repository, or one without a commit: a search runs on a commit
        raise SearchError(f"git {args[0]} failed ({found.stderr.strip()}); run ptft search in a git clone of the "
                          "project, with its work committed")
    return found.stdout.strip()


def storage_url(storage: str, root: Path) -> str:
    """An Optuna storage URL: ``storage`` itself if it is one, else a SQLite file (relative to ``root``)."""
    if "://" in storage:
        return storage
    path = (root / storage).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _say(line: str) -> None:
    print(line, flush=True)  # as it happens, also into a pipe or a log file


def search(file: str, trials: int | None = None, jobs: int | None = None, log: Any = _say) -> Path:
    """Run (or resume) the study of the search file ``file`` in this repository; return its report directory."""
    from ptft.experiments import check_tracked
    from ptft.pipeline.pruning import TrialStore
    from ptft.search.report import apply_commands, best_trial, write_report
    from ptft.search.runner import DvcExperiments, check_push
    from ptft.search.spec import SearchError, load_spec, with_values
    from ptft.search.study import Search, open_study, search_storage

    root = Path.cwd()
    if not (root / "dvc.yaml").is_file() or not (root / PARAMS_FILE).is_file():
        raise SearchError("run ptft search in the repository root (where dvc.yaml and params.yaml are)")
    params = load_params()
    spec = load_spec(file, params)
    spec = spec.model_copy(update={k: v for k, v in (("trials", trials), ("jobs", jobs)) if v is not None})
    check_tracked(with_values(params, spec.set))  # trials run in copies of the commit: their data must travel
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise SearchError("the work tree has uncommitted changes; commit them first: every trial is an experiment "
                          "of one commit, so that it can be reproduced")
    baseline = _git("rev-parse", "HEAD")
    check_push(spec, root)
    url = storage_url(spec.storage, root)
    storage = search_storage(url, spec.grace_period)
    study = open_study(spec, storage, baseline)
    whole = {key for key in spec.space if type(require(params, key)) is int}
    seed = with_values(params, spec.set)["seed"]
    out = REPORTS / spec.study
    runner = DvcExperiments(root, spec, url, baseline)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        Search(spec, study, TrialStore(storage, spec.study), runner, seed, whole, log).run(
            at_end=lambda: write_report(study, spec, out))
    finally:
        signal.signal(signal.SIGTERM, previous)
    best = best_trial(study)
    if best is None:
        log(f"no trial completed; see {out / 'results.md'}")
    else:
        log(f"best: trial {best.number}, validation {spec.objective} {best.value:.4f} "
            f"({', '.join(f'{k}={v}' for k, v in best.params.items())}); report: {out / 'results.md'}")
        log("apply it and score it on test, once: " + " && ".join(apply_commands(study, spec)))
    return out
