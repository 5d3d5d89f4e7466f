"""A search trial's pruning inside fine-tuning (ptft.pipeline.pruning), against a real Optuna study in SQLite."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from ptft.pipeline.pruning import PruneTrial, Registration, TrialPruned, current_registration, register

PRUNER = {"percentile": 50, "startup_trials": 2, "warmup_evals": 0}


@pytest.fixture
def study(tmp_path):
    """A study whose two finished trials scored 0.8 then 0.9 at evaluations 1 and 2."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    found = optuna.create_study(study_name="s", storage=url, direction="maximize")
    for _ in range(2):
        trial = found.ask()
        trial.report(0.8, 1)
        trial.report(0.9, 2)
        found.tell(trial, 0.9)
    return url, found


def _registration(url: str, trial: optuna.trial.Trial, report: bool = True, pruner: dict | None = PRUNER):
    return Registration(storage=url, study="s", number=trial.number, metric="macro_f1", report=report,
                        pruner=pruner)


def _evaluate(callback: PruneTrial, epoch: float, value: float) -> None:
    callback.on_evaluate(None, SimpleNamespace(epoch=epoch), None, metrics={"eval_macro_f1": value})


def test_a_registration_is_found_by_the_experiment_dvc_runs(study, tmp_path, monkeypatch):
    url, found = study
    registration = _registration(url, found.ask())
    register(tmp_path, "s-2-seed1", registration)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert current_registration() is None  # outside an experiment
    monkeypatch.setenv("DVC_EXP_NAME", "s-2-seed1")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert current_registration() == registration
    monkeypatch.setenv("DVC_EXP_NAME", "someone-elses")
    assert current_registration() is None  # an experiment the search did not start


def test_a_trial_behind_the_others_is_stopped_and_one_level_with_them_goes_on(study):
    url, found = study
    level, behind = found.ask(), found.ask()
    keeps = PruneTrial(_registration(url, level))
    _evaluate(keeps, 1.0, 0.85)
    _evaluate(keeps, 2.0, 0.95)
    assert found.trials[level.number].intermediate_values == {1: 0.85, 2: 0.95}
    stops = PruneTrial(_registration(url, behind))
    with pytest.raises(TrialPruned, match=r"validation macro_f1 0\.1000 at evaluation 1 is behind"):
        _evaluate(stops, 1.0, 0.1)
    assert found.trials[behind.number].user_attrs["pruned_at"] == {"evaluation": 1, "value": 0.1}


def test_no_trial_is_stopped_during_its_warmup_evaluations(study):
    url, found = study
    trial = found.ask()
    callback = PruneTrial(_registration(url, trial, pruner={**PRUNER, "warmup_evals": 1}))
    _evaluate(callback, 1.0, 0.1)  # the first evaluation is warmup
    with pytest.raises(TrialPruned, match="at evaluation 2"):
        _evaluate(callback, 2.0, 0.1)


def test_only_the_reporting_run_reports_and_no_pruner_never_stops(study):
    url, found = study
    silent, unpruned = found.ask(), found.ask()
    _evaluate(PruneTrial(_registration(url, silent, report=False)), 1.0, 0.1)
    assert found.trials[silent.number].intermediate_values == {}
    _evaluate(PruneTrial(_registration(url, unpruned, pruner=None)), 1.0, 0.1)  # reported, not stopped
    assert found.trials[unpruned.number].intermediate_values == {1: 0.1}


def test_a_run_of_a_finished_trial_stops_before_training(study):
    url, found = study
    trial = found.ask()
    callback = PruneTrial(_registration(url, trial))
    found.tell(trial, state=optuna.trial.TrialState.PRUNED)
    with pytest.raises(TrialPruned, match="already pruned; this run is not needed"):
        callback.on_train_begin(None, None, None)
