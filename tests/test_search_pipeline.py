"""End to end: `ptft search` on the smoke run, its trials real DVC experiments run by DVC's queue workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import clone_env, copy_clone, dvc, run

pytestmark = pytest.mark.e2e
UNREADABLE_TEST_SPLIT = Path(__file__).parent / "unreadable_test_split"  # its sitecustomize refuses test.parquet
# The smoke model learns little from 50 documents in one epoch: the whole train split for two, so that a trial
# that cannot learn (lr 1e-9) is clearly behind at its first evaluation.
TRAIN = {"finetune.epochs": 2, "finetune.train_examples": None}


def _committed(smoke_run, to: Path) -> Path:
    clone = copy_clone(smoke_run[0], to)
    run(["git", "commit", "--quiet", "-am", "smoke results"], clone)
    return clone


def _search_file(path: Path, **search) -> Path:
    path.write_text(yaml.safe_dump({"seeds": [1], "startup_trials": 2, "set": TRAIN,
                                    "space": {"finetune.lr": {"low": 1e-9, "high": 1e-2, "log": True}}, **search}))
    return path


def _study(clone: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{clone / 'reports/search/study.db'}")


def _experiments(clone: Path) -> dict[str, tuple[str, dict]]:
    """`dvc exp show`'s experiments of the commit: name -> (state, finetune params)."""
    shown = json.loads(dvc("exp", "show", "--json", cwd=clone).stdout)
    return {exp["name"]: ((exp["executor"] or {}).get("state"),
                          exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["finetune"])
            for exp in shown[1]["experiments"] or []}


def _guarded_env(clone: Path) -> dict[str, str]:
    return {"PYTHONPATH": f"{UNREADABLE_TEST_SPLIT}{os.pathsep}{clone / 'src'}"}


def test_a_search_runs_its_trials_as_dvc_experiments_on_two_workers_and_never_reads_the_test_split(
        smoke_run, tmp_path):
    clone = _committed(smoke_run, tmp_path / "ptft")
    spec = _search_file(tmp_path / "search.yaml", study="e2e", trials=3, jobs=2,
                        first=[{"finetune.lr": 3e-3}, {"finetune.lr": 1e-3}, {"finetune.lr": 1e-9}],
                        pruner={"percentile": 50, "startup_trials": 2, "warmup_evals": 0})
    # Every stage of every trial runs with the test split unreadable.
    output = run([sys.executable, "-m", "ptft.cli", "search", str(spec)], clone, env=_guarded_env(clone)).stdout
    study = _study(clone, "e2e")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    assert "trial 2: pruned" in output and "dvc exp apply e2e-" in output
    assert study.trials[2].user_attrs["pruned_at"]["evaluation"] == 1  # at its first evaluation, of two
    # Every trial is a DVC experiment of the commit, beside the others in `dvc exp show`.
    experiments = _experiments(clone)
    assert {name: state for name, (state, _) in experiments.items()} == {
        "e2e-0-s1": "success", "e2e-1-s1": "success", "e2e-2-s1": "failed"}  # the pruned run stopped the stage
    finetune = experiments["e2e-0-s1"][1]
    assert finetune["lr"] == 3e-3 and finetune["seed"] == 1 and finetune["epochs"] == 2
    for trial in study.trials[:2]:
        assert trial.value == pytest.approx(trial.user_attrs["scores"]["1"])
    report = clone / "reports/search/e2e"
    assert "**Best: trial" in (report / "results.md").read_text()
    assert all((report / figure).stat().st_size > 0 for figure in ("history.png", "importances.png"))
    # The guard works: the test stage, which reads the test split, fails under it.
    refused = run([sys.executable, "-m", "dvc", "exp", "run", "--temp", "test", "-S", "finetune.lr=3e-3", "-S",
                   "finetune.seed=1", "-S", "finetune.epochs=2", "-S", "finetune.train_examples=null"], clone,
                  env=_guarded_env(clone), check=False)
    assert refused.returncode != 0 and "the test split is unreadable" in refused.stdout + refused.stderr


def test_a_search_killed_during_a_trial_resumes_it_and_counts_every_trial_once(smoke_run, tmp_path):
    clone = _committed(smoke_run, tmp_path / "ptft")
    spec = _search_file(tmp_path / "search.yaml", study="resume", trials=2, jobs=1, pruner=None)
    command = [sys.executable, "-m", "ptft.cli", "search", str(spec)]
    search = subprocess.Popen(command, cwd=clone, env=clone_env(clone), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while "trial 1:" not in (line := search.stdout.readline()):  # trial 0 finished, trial 1 queued
        assert line and time.monotonic() < deadline, "the search ended before its second trial"
    time.sleep(15)  # into its run
    search.send_signal(signal.SIGTERM)
    rest = search.communicate(timeout=120)[0]
    assert search.returncode == 130 and "resumes the study" in rest
    assert [t.state for t in _study(clone, "resume").trials] == [TrialState.COMPLETE, TrialState.RUNNING]
    output = run(command, clone).stdout
    assert "trial 1: resumed" in output
    trials = _study(clone, "resume").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]  # as many as an unbroken study
    experiments = _experiments(clone)  # the killed run of trial 1 failed; its rerun under the same name succeeded
    assert {name: state for name, (state, _) in experiments.items()} == {"resume-0-s1": "success",
                                                                          "resume-1-s1": "success"}
