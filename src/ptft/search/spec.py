"""A search's YAML file (configs/search.yaml): what to vary, how to score it, and where the study lives.

Every key it names is checked against params.yaml and every value it could try against the params schema
before any trial runs, so a typo or a refused value costs one line, not a failed experiment.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator, model_validator

from ptft.pipeline.lineage import flatten
from ptft.pipeline.params import UserError, require, with_values

SEED_KEY = "finetune.seed"  # what each of a trial's runs sets to one of `seeds`


class SearchError(UserError):
    """A search file that cannot run, or a study that cannot be resumed with it."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Range(_Strict):
    """A number between ``low`` and ``high`` (both included), on a log scale with ``log: true``."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _not_empty(self) -> Range:
        if not self.low < self.high:
            raise ValueError(f"an empty range: low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low above 0, got {self.low:g}")
        return self


class Choices(_Strict):
    """One of a list of values."""

    choices: Annotated[list[Any], Field(min_length=1)]


# An entry with `choices` is a Choices, any other a Range: errors then name the one meant, not both.
def _kind(entry: Any) -> str:
    return "Choices" if isinstance(entry, Choices) or isinstance(entry, dict) and "choices" in entry else "Range"


Distribution = Annotated[Annotated[Range, Tag("Range")] | Annotated[Choices, Tag("Choices")], Discriminator(_kind)]


class Pruner(_Strict):
    """Optuna's percentile pruner over the first seed's validation curve (see ptft.pipeline.pruning)."""

    percentile: Annotated[float, Field(gt=0, lt=100)] = 50.0
    startup_trials: Annotated[int, Field(ge=1)] = 5
    warmup_evals: Annotated[int, Field(ge=0)] = 1


class SearchSpec(_Strict):
    """The search file's keys (configs/search.yaml documents each)."""

    study: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=60)]
    storage: str = "reports/search/study.db"
    trials: Annotated[int, Field(ge=1)] = 20
    jobs: Annotated[int, Field(ge=1)] = 1
    objective: Literal["macro_f1", "accuracy"] = "macro_f1"
    seeds: Annotated[list[int], Field(min_length=1)] = [1]
    startup_trials: Annotated[int, Field(ge=1)] = 8
    set: dict[str, Any] = {}
    space: Annotated[dict[str, Distribution], Field(min_length=1)]
    first: list[dict[str, Any]] = []
    pruner: Pruner | None = Pruner()
    push: str | None = None  # a git remote: each finished run is pushed there (`dvc exp push`), outputs included
    grace_period: Annotated[int, Field(ge=4)] = 120  # seconds without a heartbeat before a trial's search is lost

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) < len(seeds):
            raise ValueError(f"{seeds} repeat a seed")
        return seeds

    def identity(self) -> str:
        """What a resumed study must share with the one it continues: every key that changes what is compared."""
        return json.dumps(self.model_dump(include={"objective", "seeds", "set", "space", "first", "pruner"}),
                          sort_keys=True)


def load_spec(path: str | Path, params: dict[str, Any]) -> SearchSpec:
    """Read and check the search file ``path`` against ``params`` (params.yaml); one line per problem found."""
    path = Path(path)
    if not path.is_file():
        raise SearchError(f"{path}: no such search file; start from configs/search.yaml")
    try:
        spec = SearchSpec.model_validate(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as err:
        raise SearchError(f"{path}: not valid YAML: {err}") from err
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if part not in ("Range", "Choices"))
        raise SearchError(f"{path}: {where}: {first['msg'].removeprefix('Value error, ')}") from None
    check_against_params(spec, params, str(path))
    return spec


def check_against_params(spec: SearchSpec, params: dict[str, Any], name: str) -> None:
    """Every key a params key, every value one the schema accepts (with ``set`` applied)."""
    known = list(flatten(params))
    named = [("set", key) for key in spec.set] + [("space", key) for key in spec.space] + \
        [(f"first[{i}]", key) for i, trial in enumerate(spec.first) for key in trial]
    for where, key in named:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise SearchError(f"{name}: {where}: '{key}' is not a key of params.yaml{hint}")
        if key == SEED_KEY:
            raise SearchError(f"{name}: {where}: {SEED_KEY} is what `seeds` sets for each run; list seeds there")
    base = with_values(params, spec.set)
    _refused(params, spec.set, f"{name}: set")
    for key, dist in spec.space.items():
        if isinstance(dist, Range) and type(require(params, key)) is int:
            if not (dist.low.is_integer() and dist.high.is_integer()):
                raise SearchError(f"{name}: space.{key}: {key} is a whole number; give low and high as integers")
        values = dist.choices if isinstance(dist, Choices) else [dist.low, dist.high]
        for value in values:
            _refused(base, {key: value}, f"{name}: space.{key}")
    for i, trial in enumerate(spec.first):
        missing = sorted(set(spec.space) - set(trial))
        if missing or set(trial) - set(spec.space):
            raise SearchError(f"{name}: first[{i}]: give exactly the keys of space ({', '.join(spec.space)})")
        for key, value in trial.items():
            dist = spec.space[key]
            outside = value not in dist.choices if isinstance(dist, Choices) else \
                not (isinstance(value, int | float) and dist.low <= value <= dist.high)
            if outside:
                raise SearchError(f"{name}: first[{i}]: {key}={value!r} is outside space.{key}")
        _refused(base, trial, f"{name}: first[{i}]")


def _refused(params: dict[str, Any], values: dict[str, Any], where: str) -> None:
    from ptft.pipeline.schema import problems

    found = problems(with_values(params, values))
    if found:
        shown = ", ".join(f"{key}={value!r}" for key, value in values.items())
        raise SearchError(f"{where}: {shown} is refused by params.yaml's schema: {found[0]}")
