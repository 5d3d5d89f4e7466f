"""A search's runs as DVC experiments, carried out by DVC's queue workers.

Each run is `dvc exp run --queue evaluate --name <study>-<trial>-s<seed> -S key=value ...`: the target `evaluate`
runs what the params reach up to the validation scores, never the test stage. `dvc queue start -j <jobs>` starts
the workers (each in a temporary copy of the repository), and the run's score is read back from the finished
experiment's `reports/evaluate/metrics.json`. A run that finished before (a resumed trial) is reused, not rerun.

With ``push: <git remote>`` (several machines on one study) each finished run is pushed there with `dvc exp push`
(its outputs to DVC's default remote), and a run that another machine finished and pushed (a retried trial's) is
pulled and reused.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ptft.experiments import column_name
from ptft.pipeline.pruning import Registration, register, registration_path
from ptft.search.spec import SearchError, SearchSpec
from ptft.search.study import Run

METRICS = "reports/evaluate/metrics.json"  # the validation split's scores: what a trial is judged by
POLL_SECONDS = 2.0
DONE = ("Success", "Failed")
PROGRESS = {"Failed": 0, "Queued": 1, "Running": 2, "Success": 3}  # how far along an experiment is


def dvc(*args: str, root: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run dvc (this interpreter's) in the repository at ``root``."""
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    if check and result.returncode:
        raise SearchError(f"dvc {' '.join(args[:3])} failed: {(result.stderr or result.stdout).strip()[-800:]}")
    return result


def override(key: str, value: Any) -> str:
    """``key=value`` for `dvc exp run -S`, the value in YAML as DVC reads it."""
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def check_push(spec: SearchSpec, root: Path) -> None:
    """``push`` names a git remote, and DVC has a default remote for the runs' outputs (before any trial runs)."""
    if not spec.push:
        return
    if subprocess.run(["git", "remote", "get-url", spec.push], cwd=root, capture_output=True).returncode:
        raise SearchError(f"push: '{spec.push}' is not a git remote of this repository (`git remote -v` lists them); "
                          f"add the one every machine shares: git remote add {spec.push} <url>")
    if not dvc("config", "core.remote", root=root, check=False).stdout.strip():
        raise SearchError(f"push: {spec.push} gets each run's experiment, and DVC's default remote its outputs, but "
                          "there is no default DVC remote: dvc remote add -d <name> <url>, and commit .dvc/config")


class DvcExperiments:
    """Runs as DVC experiments of the commit ``baseline`` in the repository ``root``, ``jobs`` at a time."""

    def __init__(self, root: Path, spec: SearchSpec, storage: str, baseline: str):
        self.root, self.spec, self.storage, self.baseline = root, spec, storage, baseline

    def run(self, runs: list[Run], beat: Callable[[], None]) -> dict[str, float | None]:
        names = [run.name for run in runs]
        statuses, scores = self.look(names)
        # Runs that an interrupted search left queued or running (a resumed trial): let them end first.
        inherited = [run.name for run in runs if statuses.get(run.name) in ("Queued", "Running")]
        if inherited:
            self._wait(inherited, beat)
            statuses, scores = self.look(names)
        if self.spec.push and set(names) - set(scores):  # finished on another machine?
            self._pull([name for name in names if name not in scores])
            statuses, scores = self.look(names)
        todo = [run for run in runs if run.name not in scores]  # a run that finished before is reused
        failed = [run.name for run in todo if statuses.get(run.name) == "Failed"]
        if failed:  # a killed run of a resumed trial: run it again under its name
            dvc("queue", "remove", *failed, root=self.root)
        if todo:
            self._check_unchanged()
        for run in todo:
            register(self.root, run.name, Registration(
                storage=self.storage, study=self.spec.study, number=run.number,
                metric=self.spec.objective, report=run.report,
                pruner=self.spec.pruner.model_dump() if self.spec.pruner else None))
            dvc("exp", "run", "--queue", "evaluate", "--name", run.name,
                *(arg for key, value in run.values.items() for arg in ("-S", override(key, value))), root=self.root)
        if todo:
            self._wait([run.name for run in todo], beat)
            scores = self.look(names)[1]
        for run in todo:
            registration_path(self.root, run.name).unlink(missing_ok=True)
        finished = [run.name for run in todo if run.name in scores]
        if self.spec.push and finished:
            dvc("exp", "push", self.spec.push, *finished, root=self.root)
        return {name: scores.get(name) for name in names}

    def _pull(self, names: list[str]) -> None:
        """Pull those of ``names`` that the push remote holds (experiments of the baseline)."""
        listed = dvc("exp", "list", "--name-only", "--rev", self.baseline, self.spec.push, root=self.root).stdout
        there = [name for name in names if name in listed.split()]
        if there:
            dvc("exp", "pull", self.spec.push, *there, root=self.root)

    def _check_unchanged(self) -> None:
        """`dvc exp run --queue` puts the work tree's changes into the experiment: a file edited during a search
        would end up in its later trials, which would no longer be experiments of the study's commit."""
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=self.root, capture_output=True, text=True, check=True).stdout

        if git("rev-parse", "HEAD").strip() != self.baseline:
            raise SearchError(f"HEAD moved during the search; the study's trials run commit {self.baseline[:12]}: "
                              "check it out again and rerun to resume")
        changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines() if line]
        if changed:
            raise SearchError(f"{', '.join(changed[:5])} changed during the search; the trials must run the study's "
                              "commit: commit or stash the change, check that commit out, and rerun to resume")

    def _wait(self, names: list[str], beat: Callable[[], None]) -> None:
        started = 0.0
        while True:
            if time.monotonic() - started > 30:  # (re)start workers: they leave after 10 s with an empty queue
                dvc("queue", "start", "-j", str(self.spec.jobs), root=self.root)
                started = time.monotonic()
            statuses = self.look([])[0]
            if all(statuses.get(name) in DONE for name in names):
                return
            beat()
            time.sleep(POLL_SECONDS)

    def look(self, names: list[str]) -> tuple[dict[str, str], dict[str, float]]:
        """From one `dvc exp show` of the baseline: every experiment's state by name (Queued, Running, Success or
        Failed; a pulled one has none, and is finished; a name queued again after it failed is rerunning: the state
        furthest along wins), and the validation scores of those of ``names`` that finished."""
        import dvc.api

        rows = [{**row, "State": row.get("State") or "Success"}
                for row in dvc.api.exp_show(repo=str(self.root), revs=self.baseline) if row.get("Experiment")]
        statuses: dict[str, str] = {}
        for row in rows:
            name, state = row["Experiment"], row["State"]
            if name not in statuses or PROGRESS.get(state, 0) > PROGRESS.get(statuses[name], 0):
                statuses[name] = state
        done = [row for row in rows  # a failed or queued one's files are its baseline's
                if row["Experiment"] in names and row["State"] == "Success"]
        column = column_name({key: None for row in done for key in row}, METRICS, self.spec.objective)
        return statuses, {row["Experiment"]: float(row[column]) for row in done
                          if column and row.get(column) is not None}

    def failure(self, run: Run) -> str:
        found = dvc("queue", "logs", run.name, root=self.root, check=False)
        lines = [line for line in (found.stdout + found.stderr).splitlines() if line.strip()]
        errors = [line for line in lines if ": error:" in line]  # a stage's own one-line error, if it gave one
        return "\n".join(f"  {line}" for line in (errors or lines[-15:]))

    def stop(self, runs: list[Run]) -> None:
        statuses = self.look([])[0]
        queued = [run.name for run in runs if statuses.get(run.name) == "Queued"]
        running = [run.name for run in runs if statuses.get(run.name) == "Running"]
        if queued:
            dvc("queue", "remove", *queued, root=self.root, check=False)
        if running:
            dvc("queue", "kill", *running, root=self.root, check=False)
