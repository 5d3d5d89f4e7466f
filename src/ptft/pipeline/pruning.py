"""A search trial's side of `ptft search`: Optuna's pruning, fed by fine-tuning's validation score at each evaluation.

`ptft search` runs each trial as DVC experiments and registers each one, by its experiment name, in
``<repository>/.dvc/tmp/ptft-search/<experiment>.json``: the study's storage and name, the trial, the metric and
the pruner. DVC runs an experiment's stages with ``DVC_EXP_NAME`` and ``DVC_ROOT`` (the repository, also for a
queued run in a temporary copy) set, so finetune finds its registration there, and :func:`trial_callbacks` gives
the Trainer a callback that reports each evaluation to the trial and stops the run when the pruner says so.

A registration only decides whether the run goes on. A run that finishes writes exactly what it writes outside a
search, and a pruned run writes nothing (the stage fails), so every DVC output stays a function of its declared
inputs. Outside a search (no registration) nothing here is imported beyond this module.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from ptft.pipeline.params import UserError

if TYPE_CHECKING:
    import optuna

REGISTRY = Path(".dvc/tmp/ptft-search")  # under the repository root; DVC ignores .dvc/tmp and so does git


class TrialPruned(UserError):
    """Optuna's pruner stopped this trial: the stage fails with this one line and writes no output."""


@dataclass(frozen=True)
class Registration:
    """What a trial's experiment needs to report to its study: where the study lives and how to prune."""

    storage: str  # an Optuna storage URL (an absolute sqlite:/// path for a file)
    study: str
    number: int  # the trial's number in the study
    metric: str  # the validation metric fine-tuning logs per evaluation (accuracy, macro_f1)
    report: bool  # whether this experiment reports its curve: the trial's first seed does, the others run whole
    pruner: dict[str, Any] | None  # make_pruner's settings; None: never pruned


def registration_path(root: str | Path, experiment: str) -> Path:
    return Path(root) / REGISTRY / f"{experiment}.json"


def register(root: str | Path, experiment: str, registration: Registration) -> None:
    """Register ``experiment`` (a DVC experiment name in the repository at ``root``) as a run of a trial."""
    path = registration_path(root, experiment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(registration)))


def current_registration() -> Registration | None:
    """This process's registration: the one of the DVC experiment it runs in, if a search registered it."""
    name, root = os.environ.get("DVC_EXP_NAME"), os.environ.get("DVC_ROOT")
    path = registration_path(root, name) if name and root else None
    if path is None or not path.is_file():
        return None
    return Registration(**json.loads(path.read_text()))


def open_storage(url: str, **kwargs: Any) -> optuna.storages.RDBStorage:
    """The study's database. SQLite waits up to a minute for a lock: several workers write to one file."""
    import optuna

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine, **kwargs)


class TrialStore:
    """A study's trials by their numbers, through its storage's public methods (Optuna keeps a study's storage and a
    trial's id private)."""

    def __init__(self, storage: optuna.storages.RDBStorage, study: str):
        self.storage = storage
        self.study_id = storage.get_study_id_from_name(study)

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def get(self, number: int) -> optuna.trial.FrozenTrial:
        return self.storage.get_trial(self.trial_id(number))

    def beat(self, number: int) -> None:
        """Record that the trial is still being run (RDBStorage's heartbeat, which a search checks for staleness)."""
        self.storage.record_heartbeat(self.trial_id(number))

    def set_user_attr(self, number: int, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self.trial_id(number), key, value)


def make_pruner(settings: dict[str, Any] | None) -> optuna.pruners.BasePruner:
    """Optuna's percentile pruner (the median one at 50): once ``startup_trials`` trials have finished, a trial
    whose validation score at an evaluation after its first ``warmup_evals`` is below that percentile of the
    finished trials' scores at the same evaluation stops. ``None``: no pruning."""
    import optuna

    if settings is None:
        return optuna.pruners.NopPruner()
    # Evaluations are numbered from 1 (the epoch), and Optuna prunes from step n_warmup_steps on.
    return optuna.pruners.PercentilePruner(settings["percentile"], n_startup_trials=settings["startup_trials"],
                                          n_warmup_steps=settings["warmup_evals"] + 1)


class PruneTrial(TrainerCallback):
    """Report each evaluation's validation score to the trial and stop fine-tuning when the pruner says so."""

    def __init__(self, registration: Registration):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.registration = registration
        self.store = TrialStore(open_storage(registration.storage), registration.study)
        self.study = optuna.load_study(study_name=registration.study, storage=self.store.storage,
                                       pruner=make_pruner(registration.pruner))

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001 - Trainer's signature
        found = self.store.get(self.registration.number)
        if found.state.is_finished():  # pruned or failed through another seed's run: this one is not needed
            raise TrialPruned(f"trial {self.registration.number} of search study '{self.registration.study}' is "
                              f"already {found.state.name.lower()}; this run is not needed")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001 - Trainer's signature
        if not self.registration.report or not metrics:
            return
        number = self.registration.number
        step, value = round(state.epoch or 0), metrics[f"eval_{self.registration.metric}"]
        self.store.storage.set_trial_intermediate_value(self.store.trial_id(number), step, value)  # Trial.report's
        if self.study.pruner.prune(self.study, self.store.get(number)):  # Trial.should_prune's question
            self.store.set_user_attr(number, "pruned_at", {"evaluation": step, "value": value})
            raise TrialPruned(f"pruned by search study '{self.registration.study}' (trial "
                              f"{self.registration.number}): validation {self.registration.metric} {value:.4f} at "
                              f"evaluation {step} is behind the earlier trials")


def trial_callbacks() -> list[TrainerCallback]:
    """The Trainer callbacks of a search trial's run (:class:`PruneTrial`); none outside a search."""
    registration = current_registration()
    return [PruneTrial(registration)] if registration else []
