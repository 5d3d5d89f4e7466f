"""The study: Optuna's ask and tell around the runs of each trial, which a runner carries out (DVC experiments in
`ptft search`, see :mod:`ptft.search.runner`).

A trial is one point of the space, fine-tuned once per seed (``finetune.seed``). Its first seed's run reports the
validation curve, and the pruner may stop it there; the other seeds run only for a trial that survived, and the
trial's value is the mean of its runs' validation scores. Up to ``jobs`` trials run at once.

Resuming: while a search runs a trial it records the trial's heartbeat in the study (Optuna's RDBStorage
heartbeat). A trial whose search is gone, interrupted (which fails it at once) or killed with its machine (after
``grace_period`` seconds without a heartbeat, as Optuna's :func:`~optuna.storages.fail_stale_trials` finds), is
failed and queued again with the same point by Optuna's :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`;
the next search on the study, on this machine or another, runs that retry first. Its runs keep the first trial's
number in their names (:func:`origin`), so runs that had finished are reused; a study stops at ``trials`` finished
(complete or pruned) trials whoever ran them, so no point is counted twice.

Reproducible: the sampler is reseeded for each trial from the params' ``seed`` and the trial's place among the
proposed points (retries left out), so the same seed and the same results propose the same trials, in an
uninterrupted study and in a resumed one alike.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from ptft.pipeline.pruning import TrialStore, make_pruner, open_storage
from ptft.search.spec import SEED_KEY, Choices, SearchError, SearchSpec

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna marks its heartbeat and retry API experimental, and warns when the heartbeat is used outside
    ``Study.optimize``: a search asks and tells around DVC experiments instead, and beats itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        yield


def _retry() -> RetryHeartbeatStaleTrialCallback:
    """Optuna's callback that queues a stopped trial's point again, as a new trial."""
    with _quiet():
        return RetryHeartbeatStaleTrialCallback()


def search_storage(url: str, grace_period: int) -> RDBStorage:
    """The study's database, with a heartbeat every quarter of ``grace_period`` and stopped trials retried."""
    with _quiet():
        return open_storage(url, heartbeat_interval=max(1, grace_period // 4), grace_period=grace_period,
                            heartbeat_stale_trial_callback=_retry())


def origin(trial: FrozenTrial) -> int:
    """The number of the trial that ``trial`` retries (the first, if retried more than once), else its own."""
    with _quiet():
        retried = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.number if retried is None else retried


@dataclass(frozen=True)
class Run:
    """One fine-tuning run of a trial: one seed, as one DVC experiment named ``name``."""

    number: int
    seed: int
    name: str
    values: dict[str, Any]  # dotted params keys and values: the search's `set`, the trial's point, the seed
    report: bool  # the trial's first run reports its validation curve to the pruner


class Runner(Protocol):
    def run(self, runs: list[Run], beat: Callable[[], None]) -> dict[str, float | None]:
        """Carry out ``runs`` (calling ``beat`` now and then while they go); each run's validation score, or None
        for a run that failed or was pruned."""

    def failure(self, run: Run) -> str:
        """Why ``run`` failed, in a few lines (its log's end)."""

    def stop(self, runs: list[Run]) -> None:
        """Stop ``runs`` that are still queued or running (an interrupted search)."""


def experiment_name(study: str, number: int, seed: int) -> str:
    return f"{study}-{number}-s{seed}"


def open_study(spec: SearchSpec, storage: RDBStorage, baseline: str) -> optuna.Study:
    """Create the study, or load it to resume: only with the same search and on the same commit."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.study, storage=storage, direction="maximize",
                                pruner=make_pruner(spec.pruner and spec.pruner.model_dump()), load_if_exists=True)
    stored = study.user_attrs.get("search")
    if stored is None:
        study.set_user_attr("search", spec.identity())
        study.set_user_attr("baseline", baseline)
        for point in spec.first:  # e.g. the defaults: run first, as trials 0, 1, ...
            study.enqueue_trial(point)
    elif stored != spec.identity():
        raise SearchError(f"study '{spec.study}' in {storage.url} was started with another search (its objective, "
                          "seeds, set, space, first or pruner differ); resume it with the same file, or name a new "
                          "study")
    elif study.user_attrs["baseline"] != baseline:
        raise SearchError(f"study '{spec.study}' ran its trials on commit {study.user_attrs['baseline'][:12]}, and "
                          f"this is {baseline[:12]}: check that commit out to resume it, or name a new study")
    return study


def sampler_for(spec: SearchSpec, seed: int, number: int) -> optuna.samplers.BaseSampler:
    """TPE (after ``startup_trials`` random trials), seeded from ``seed`` and the trial's ``number``."""
    trial_seed = int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
    return optuna.samplers.TPESampler(seed=trial_seed, n_startup_trials=spec.startup_trials, multivariate=True)


def suggest(trial: optuna.Trial, spec: SearchSpec, whole: set[str]) -> dict[str, Any]:
    """The trial's point: a value for each key of the space (``whole``: the keys that take whole numbers)."""
    point = {}
    for key, dist in spec.space.items():
        if isinstance(dist, Choices):
            point[key] = trial.suggest_categorical(key, dist.choices)
        elif key in whole:
            point[key] = trial.suggest_int(key, int(dist.low), int(dist.high), log=dist.log)
        else:
            point[key] = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
    return point


class Search:
    """Run ``spec``'s study (its trials read and written through ``store``) with ``runner`` until it holds
    ``spec.trials`` finished trials."""

    def __init__(self, spec: SearchSpec, study: optuna.Study, store: TrialStore, runner: Runner, seed: int,
                 whole: set[str], log: Callable[[str], None] = print):
        self.spec, self.study, self.store, self.runner = spec, study, store, runner
        self.seed, self.whole, self.log = seed, whole, log
        self.active: list[FrozenTrial] = []  # the trials this search runs now (heartbeats, stopped on interrupt)
        self.beat_every = store.storage.get_heartbeat_interval() or 60
        self.last_beat = 0.0

    def run(self, at_end: Callable[[], None] = lambda: None) -> None:
        """Run rounds until the study is done; ``at_end`` runs then, or when the search stops (the report: written
        only then, since a tracked file changed during the search would go into its later trials' experiments)."""
        started = time.monotonic()
        try:
            while self._round():
                pass
        except KeyboardInterrupt:
            self._release()
            raise
        finally:
            spent = self.study.user_attrs.get("wall_seconds", 0) + time.monotonic() - started
            self.study.set_user_attr("wall_seconds", round(spent, 1))
            at_end()

    def _round(self) -> bool:
        """Start up to ``jobs`` trials (retries first) and finish them; False once the study has enough."""
        with _quiet():
            optuna.storages.fail_stale_trials(self.study)  # a lost search's trials: failed, and queued again
        trials = self.study.get_trials(deepcopy=False)
        finished = sum(trial.state in FINISHED for trial in trials)
        running = sum(trial.state == TrialState.RUNNING for trial in trials)
        if finished >= self.spec.trials:
            return False
        room = min(self.spec.jobs, self.spec.trials - finished - running)
        if room <= 0:  # the rest are running in other searches on this study: wait for them (or their heartbeat)
            time.sleep(self.beat_every)
            return True
        self.active = []
        for _ in range(room):
            self.active.append(self._ask())
        self._run_trials(self.active)
        self.active = []
        return True

    def _ask(self) -> FrozenTrial:
        """The next trial: a waiting one (a retry, or a ``first`` point) if any, else the sampler's, seeded by the
        number of points proposed so far (retries repeat a point, so they are not counted)."""
        trials = self.study.get_trials(deepcopy=False)
        proposed = sum(origin(trial) == trial.number for trial in trials)
        self.study.sampler = sampler_for(self.spec, self.seed, proposed)
        with _quiet():
            trial = self.study.ask()
        self.store.beat(trial.number)
        suggest(trial, self.spec, self.whole)
        found = self.store.get(trial.number)  # its params, as stored
        if origin(found) != found.number:
            self.log(f"trial {found.number}: retries trial {origin(found)}, whose search stopped")
        return found

    def _runs(self, trial: FrozenTrial, seeds: list[int], report: bool) -> list[Run]:
        point = {key: trial.params[key] for key in self.spec.space}
        return [Run(trial.number, seed, experiment_name(self.spec.study, origin(trial), seed),
                    {**self.spec.set, **point, SEED_KEY: seed}, report) for seed in seeds]

    def _run_trials(self, batch: list[FrozenTrial]) -> None:
        incomplete = [trial for trial in batch if set(trial.params) != set(self.spec.space)]
        for trial in incomplete:  # stopped between ask and sampling: nothing ran
            self.study.tell(trial.number, state=TrialState.FAIL)
        batch = [trial for trial in batch if trial not in incomplete]
        first = {trial.number: self._runs(trial, self.spec.seeds[:1], True)[0] for trial in batch}
        for run in first.values():
            self.log(f"trial {run.number}: {_point(run.values, self.spec)} (seed {run.seed} first)")
        scores = self.runner.run(list(first.values()), self._beat)
        alive = []
        for trial in batch:
            run = first[trial.number]
            if scores[run.name] is not None:
                alive.append(trial)
            elif "pruned_at" in self.store.get(trial.number).user_attrs:
                self.study.tell(trial.number, state=TrialState.PRUNED)
                self.log(f"trial {trial.number}: pruned")
            else:
                self._fail(trial, run)
        rest = {trial.number: self._runs(trial, self.spec.seeds[1:], False) for trial in alive}
        scores |= self.runner.run([run for runs in rest.values() for run in runs], self._beat) if any(rest.values()) \
            else {}
        for trial in alive:
            runs = [first[trial.number], *rest[trial.number]]
            failed = next((run for run in runs if scores[run.name] is None), None)
            if failed:
                self._fail(trial, failed)
                continue
            values = {str(run.seed): scores[run.name] for run in runs}
            self.store.set_user_attr(trial.number, "scores", values)
            self.study.tell(trial.number, float(np.mean(list(values.values()))))
            self.log(f"trial {trial.number}: validation {self.spec.objective} {np.mean(list(values.values())):.4f}")

    def _fail(self, trial: FrozenTrial, run: Run) -> None:
        self.study.tell(trial.number, state=TrialState.FAIL)
        self.log(f"trial {trial.number}: failed in {run.name}:\n{self.runner.failure(run)}")

    def _beat(self) -> None:
        if time.monotonic() - self.last_beat > self.beat_every:
            for trial in self.active:
                self.store.beat(trial.number)
            self.last_beat = time.monotonic()

    def _release(self) -> None:
        """An interrupted search: stop its runs, fail its trials and queue their points again at once (a killed
        search's trials wait for their heartbeat to go stale instead)."""
        unfinished = [t for t in self.active if self.store.get(t.number).state == TrialState.RUNNING]
        self.runner.stop([run for t in unfinished for run in self._runs(t, self.spec.seeds, False)])
        for trial in unfinished:
            self.study.tell(trial.number, state=TrialState.FAIL)
            _retry()(self.study, self.store.get(trial.number))


def _point(values: dict[str, Any], spec: SearchSpec) -> str:
    return ", ".join(f"{key}={values[key]:.3g}" if isinstance(values[key], float) else f"{key}={values[key]}"
                     for key in spec.space)
