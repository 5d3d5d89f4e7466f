"""Reading params.yaml, and merging partial configs such as configs/smoke.yaml over it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

PARAMS_FILE = Path("params.yaml")


class UserError(ValueError):
    """An error the user can fix (a param, a data file, a path): stages print its message alone, no traceback."""


class ParamsError(UserError):
    """A user error in params.yaml: the message names the key and the fix."""


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a (possibly partial) params file as a nested dict, as DVC reads it: YAML 1.2, where ``1e-05`` (how
    `dvc exp run -S finetune.lr=1e-5` writes it) is a number, not the string PyYAML's YAML 1.1 makes of it."""
    from ruamel.yaml import YAML, YAMLError

    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path} not found: run from the repository root, where params.yaml lives")
    try:
        params = YAML(typ="safe", pure=True).load(path) or {}
    except YAMLError as err:
        raise ParamsError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path} must hold a mapping of param blocks, got {type(params).__name__}")
    return params


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Read the whole params file and check it before any slow work starts."""
    params = read_yaml(path)
    check_params(params)
    return params


def check_params(params: dict[str, Any]) -> None:
    """Check the whole file against :mod:`ptft.pipeline.schema`: every problem at once, each naming its key."""
    from ptft.pipeline.schema import problems  # pydantic builds the schema on import: only when checking

    found = problems(params)
    if found:
        raise ParamsError(f"params.yaml has {len(found)} problem{'s' if len(found) > 1 else ''}:\n  "
                          + "\n  ".join(found))


def finetune_seed(params: dict[str, Any]) -> int:
    """``finetune.seed`` if set, else the global ``seed``: reseeds fine-tuning alone over one pre-trained model."""
    seed = require(params, "finetune.seed")
    return require(params, "seed") if seed is None else seed


def deep_merge(base: dict[str, Any], override: dict[str, Any], _prefix: str = "") -> dict[str, Any]:
    """Return ``base`` with ``override`` merged in, block by block.

    An override key that ``base`` lacks is an error: a typo in a partial config would otherwise
    be ignored silently (nanoGPT's configurator does the same).
    """
    merged = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{_prefix}{key}"
        if key not in merged and not free_form(_prefix.rstrip(".")):
            raise ParamsError(f"unknown param '{name}' in override; known keys here: {', '.join(map(str, merged))}")
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value, f"{name}.")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def free_form(dotted: str) -> bool:
    """Whether the schema types ``dotted`` (``compare.objective_settings.mlm``), or a key above it, as a free-form
    mapping, whose keys are the user's (an arm's overrides): a partial config may add keys there."""
    import typing

    from pydantic import BaseModel

    from ptft.pipeline.schema import Params

    block: Any = Params
    for part in filter(None, dotted.split(".")):
        field = block.model_fields.get(part) if isinstance(block, type) and issubclass(block, BaseModel) else None
        if field is None:
            return False
        if typing.get_origin(field.annotation) is dict:
            return True
        block = field.annotation
    return False


def merge_files(base: str | Path, override: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Merge the params file ``override`` over ``base`` and write the result to ``out`` (default: base).

    The file is rewritten as a round trip (ruamel.yaml): its comments, which document every key, its key order
    and its layout stay as they were; only the overridden values change.
    """
    from ruamel.yaml import YAML

    overrides = read_yaml(override)
    merged = deep_merge(read_yaml(base), overrides)  # an unknown key stops here, before anything is written
    document_yaml = YAML()
    document_yaml.width = 4096  # keep long commented lines as they are
    document_yaml.representer.add_representer(  # null as params.yaml writes it, not as an empty value
        type(None), lambda representer, _: representer.represent_scalar("tag:yaml.org,2002:null", "null"))
    with Path(base).open() as f:
        document = document_yaml.load(f)
    _assign(document, overrides)
    with Path(out or base).open("w") as f:
        document_yaml.dump(document, f)
    return merged


def _assign(node: Any, overrides: dict[str, Any]) -> None:
    """Set ``overrides`` into the round-trip mapping ``node`` in place, keeping each key's comment; a list or
    mapping replaced whole keeps the flow style (``[a, b]``) of the one it replaces."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    for key, value in overrides.items():
        old = node.get(key)  # None: a key new to a free-form mapping (see free_form)
        if isinstance(value, dict) and isinstance(old, dict):
            _assign(old, value)
            continue
        if isinstance(value, list | dict) and getattr(old, "fa", None) is not None and old.fa.flow_style():
            value = CommentedSeq(value) if isinstance(value, list) else CommentedMap(value)
            value.fa.set_flow_style()
        node[key] = value


class DeclaredParams(dict):
    """The params a stage declares in dvc.yaml, and no more: reading another key with ``[]`` fails with one line
    naming it, so a stage cannot depend on a param that DVC does not know it reads (its result would not rerun when
    it changes). ``get`` keeps dict's default, for the keys one block has and another lacks."""

    def __init__(self, values: dict[str, Any], stage: str, prefix: str = ""):
        super().__init__({key: DeclaredParams(value, stage, f"{prefix}{key}.") if isinstance(value, dict) else value
                          for key, value in values.items()})
        self.stage, self.prefix = stage, prefix

    def __missing__(self, key: str) -> Any:
        raise ParamsError(f"stage {self.stage} reads '{self.prefix}{key}', which its dvc.yaml entry does not declare: "
                          "add it to the stage's params, so that DVC reruns the stage when it changes")


def declared(params: dict[str, Any], keys: list[str], stage: str) -> DeclaredParams:
    """The part of ``params`` at the dotted ``keys`` (a block, or one value), as :class:`DeclaredParams`."""
    view: dict[str, Any] = {}
    for dotted in keys:
        *path, last = dotted.split(".")
        node = view
        for part in path:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(require(params, dotted))
    return DeclaredParams(view, stage)


def require(params: dict[str, Any], dotted: str) -> Any:
    """Return the value at a dotted key such as ``finetune.lr``, with a clear error if it is missing."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ParamsError(f"params.yaml has no '{dotted}': add it (see the README's params table)")
        node = node[part]
    return node


def with_values(params: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``params`` with dotted ``values`` (``{"finetune.lr": 1e-4}``) set, as `dvc exp run -S` sets them."""
    result = copy.deepcopy(params)
    for key, value in values.items():
        *parents, last = key.split(".")
        node = result
        for part in parents:
            node = node[part]
        node[last] = value
    return result


# The main run's budget: the comparison's own pre-trained models never take it (see comparison_pretrain).
MAIN_BUDGET = ("max_steps", "tokens")


def comparison_pretrain(pretrain: dict[str, Any], settings: dict[str, Any], **fixed: Any) -> dict[str, Any]:
    """The pretrain params of one of the comparison's own models (an objective's, a continued checkpoint's):
    ``pretrain`` less its budget, then ``settings`` and ``fixed`` over it. A model takes its own budget from its
    settings (epochs, unless they set max_steps or tokens), never the main run's: under ``pretrain.tokens: 2e9`` an
    objective cell still runs its one epoch."""
    return {**{key: value for key, value in pretrain.items() if key not in MAIN_BUDGET},
            **dict.fromkeys(MAIN_BUDGET), **settings, **fixed}


def comparison_model_pretrain(kind: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The pretrain params of the comparison's model ``pretrain_<kind>@<name>``: an ``objective`` (its
    ``compare.objective_settings``) or a ``continued`` checkpoint (masked LM with ``compare.continued_settings``)."""
    compare = params["compare"]
    if kind == "objective":
        return comparison_pretrain(params["pretrain"], compare["objective_settings"][name])
    return comparison_pretrain(params["pretrain"], {"objective": "mlm", **compare["continued_settings"]}, init=name)
