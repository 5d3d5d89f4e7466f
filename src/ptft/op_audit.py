"""Which aten ops ptft's training steps run, checked against the ops PyTorch's determinism switch refuses on CUDA.

The pipeline promises bit-exact reruns through ``torch.use_deterministic_algorithms(True)``
(``runtime.deterministic``). On CUDA some ops have no deterministic kernel and *raise* under that switch,
so a model that starts calling one (a new transformers release, a new pooling) would fail the first time
it meets a GPU. This audit runs ONE optimizer step of every model kind the pipeline trains -- MLM with each
``model.family``, CLM (GPT-2), the classifier of each family and pooling on a padded batch -- through the
project's own Trainer builders, in fp32 and in bf16 autocast (``runtime.bf16``), and records every aten op
called in the forward pass, the backward pass, gradient clipping, the optimizer step and the evaluation that
follows. Each op is written as a key that names the op and only the arguments that decide its determinism
or its kernel, never a shape: ``aten.index_put.default accumulate=True``, ``aten.cumsum.default
dtype=torch.int64``, ``aten.nll_loss_forward.default input_ndim=2 reduction=mean``,
``aten._scaled_dot_product_flash_attention_for_cpu.default causal=False dropout=False mask=True``.

The keys are checked against ``ptft/aten_ops/torch-<major>.<minor>.json`` (package data, so the
audit runs from an installed wheel too), a table tied to the torch
version that holds:

- ``raises_on_cuda``: the ops that raise under the switch on CUDA, transcribed from the docstring of
  ``torch.use_deterministic_algorithms`` (each entry keeps the docstring's bullet, so the tests notice a
  torch whose list changed), with the argument conditions (``reduction``, ``accumulate``, ``dtype``, ...);
- ``deterministic_when_switched``: the docstring's other list, ops the switch moves to a slower
  deterministic kernel (reported, never a failure);
- ``backend_dependent``: ops whose kernel depends on the device and its libraries (the SDPA variants):
  deterministic on one machine, but not bit-equal across machines;
- ``snapshot``: every op key the audit saw on CPU when the table was last refreshed, per model kind and
  precision. ``tests/test_op_audit.py`` fails on a key outside it, naming the op and the kind.

Usage::

    python -m ptft.op_audit                    # audit on CPU (or --device cuda); exit 1 on a problem
    python -m ptft.op_audit --write-snapshot   # refresh the snapshot of this torch version's table (CPU)
    python -m ptft.op_audit --device cuda --out audit.json   # strict steps on a GPU (benchmarks/gpu_check.sh)

Refresh the snapshot after reviewing the new ops a failing test names (an upgrade of torch or transformers,
a new model kind): ``python -m ptft.op_audit --write-snapshot``, then commit the table. For a torch version
without a table the same command starts one from the newest table there is; check its ``raises_on_cuda``
against that torch's docstring (the tests compare the bullets).

This is a tool beside the pipeline: nothing under ``ptft.pipeline`` imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

TABLE_DIR = Path(__file__).resolve().parent / "aten_ops"  # package data: in a wheel too
REFRESH = "python -m ptft.op_audit --write-snapshot"
PRECISIONS = ("fp32", "bf16")
# Attention implementations whose kernels PyTorch's determinism switch governs (not flash_attention_2 & co).
GOVERNED_ATTENTION = ("sdpa", "eager")

_REDUCTIONS = {0: "none", 1: "mean", 2: "sum"}
_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}
_TEXT_ORDER = ("market", "team", "film", "vote", "chip")


@dataclass(frozen=True)
class Kind:
    """A model the pipeline trains: the pretrain stage's LM or the finetune stage's classifier."""

    name: str
    task: str  # mlm | clm | classifier
    family: str  # modernbert | bert | gpt2
    pooling: str = "mean"


KINDS = (
    Kind("mlm-modernbert", "mlm", "modernbert"),
    Kind("mlm-bert", "mlm", "bert"),
    Kind("clm-gpt2", "clm", "gpt2"),
    Kind("classifier-modernbert-mean", "classifier", "modernbert", "mean"),
    Kind("classifier-modernbert-cls", "classifier", "modernbert", "cls"),
    Kind("classifier-bert-cls", "classifier", "bert", "cls"),  # BERT pools [CLS] through its pooler
    Kind("classifier-gpt2-last", "classifier", "gpt2", "last"),  # the last non-padding token (clm, then finetune)
)
KIND_NAMES = tuple(kind.name for kind in KINDS)

# A tiny model of each family: the op set does not depend on the size, and the audit stays a unit test.
TINY_MODEL = {"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64, "max_position": 64, "dropout": 0.0}
TEXTS = [f"the {w} {v} again today and the {w} fell" for w in _TEXT_ORDER
         for v in ("rose", "won", "opened", "passed", "shipped")]
# Texts of different lengths, so that the classifier's batch is padded (and its attention masked).
PADDED_TEXTS = ["the market rose", "the team won again today and the team fell",
                "the film opened", "the vote passed again today and the chip shipped and the market fell"]


# ---------------------------------------------------------------------------------------------------------
# Op keys


def _bind(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The op's arguments by schema name, defaults filled in."""
    bound: dict[str, Any] = {}
    for index, argument in enumerate(func._schema.arguments):  # noqa: SLF001 - an op's schema: torch has no public one
        if index < len(args) and not argument.kwarg_only:
            bound[argument.name] = args[index]
        elif argument.name in kwargs:
            bound[argument.name] = kwargs[argument.name]
        else:
            bound[argument.name] = argument.default_value
    return bound


def _first_tensor(bound: dict[str, Any]) -> torch.Tensor | None:
    return next((value for value in bound.values() if isinstance(value, torch.Tensor)), None)


def _tensors(bound: dict[str, Any]) -> Iterator[torch.Tensor]:
    for value in bound.values():
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (item for item in value if isinstance(item, torch.Tensor))


def _attributes(name: str, bound: dict[str, Any]) -> dict[str, str]:
    """The arguments of op ``name`` (its packet name, no namespace) that decide its determinism or kernel."""
    base = name.rstrip("_")
    found: dict[str, Any] = {}
    if base in ("index_put", "_index_put_impl", "_unsafe_index_put", "put"):
        found["accumulate"] = bound.get("accumulate")
    elif base in ("cumsum", "cumprod"):
        dtype = bound.get("dtype")
        found["dtype"] = dtype if dtype is not None else _first_tensor(bound).dtype
    elif base.startswith("nll_loss"):  # nll_loss_forward, nll_loss2d_forward and their backward
        found["input_ndim"] = bound.get("self", _first_tensor(bound)).ndim
        found["reduction"] = _REDUCTIONS.get(bound.get("reduction"), bound.get("reduction"))
    elif base in ("scatter", "index_reduce", "scatter_reduce"):
        if bound.get("reduce") is not None:
            found["reduce"] = bound["reduce"]
        if "include_self" in bound:
            found["include_self"] = bound["include_self"]
    elif "embedding_bag" in base:
        if "mode" in bound:
            found["mode"] = _BAG_MODES.get(bound["mode"], bound["mode"])
    elif base == "bincount":
        found["weights"] = bound.get("weights") is not None
    elif base == "resize" and bound["self"].is_quantized:
        found["quantized"] = True
    elif "attention" in base:  # which SDPA kernel, and with what (all its variants, forward and backward)
        if "is_causal" in bound:
            found["causal"] = bound["is_causal"]
        mask = bound.get("attn_mask", bound.get("attn_bias"))
        if "attn_mask" in bound or "attn_bias" in bound:
            found["mask"] = mask is not None
        if "dropout_p" in bound:
            found["dropout"] = bool(bound["dropout_p"])
        query = bound.get("query", _first_tensor(bound))
        if query is not None:  # fp32 rules out the flash kernels on CUDA
            found["dtype"] = query.dtype
    if any(t.layout != torch.strided for t in _tensors(bound)):
        found["sparse"] = True
    return {key: str(value) for key, value in sorted(found.items())}


def op_key(func: torch._ops.OpOverload, args: tuple = (), kwargs: dict | None = None) -> str:
    """``namespace.op.overload`` plus the arguments that matter for determinism and backends, sorted by name."""
    name = func._schema.name  # noqa: SLF001 - an op's schema: torch has no public one
    attributes = _attributes(name.split("::")[-1], _bind(func, args, kwargs or {}))
    return " ".join([str(func), *(f"{key}={value}" for key, value in attributes.items())])


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    op, *pairs = key.split(" ")
    return op, dict(pair.split("=", 1) for pair in pairs)


class OpRecorder(TorchDispatchMode):
    """Records the key of every op dispatched while active, in this thread and in the autograd engine's.

    A dispatch mode sits below autograd and autocast, so it sees the backward ops, the casts autocast
    inserts, and the kernel each composite op decomposes into (which SDPA variant was picked, say).
    """

    IGNORED_NAMESPACES = ("profiler",)  # record_function markers, not computation

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - the mode's signature
        if func.namespace not in self.IGNORED_NAMESPACES:
            self.keys.add(op_key(func, args, kwargs))
        return func(*args, **(kwargs or {}))


def record(fn: Callable[[], Any]) -> set[str]:
    """The op keys ``fn()`` dispatches, forward and backward."""
    with OpRecorder() as recorder:
        fn()
    return recorder.keys


# ---------------------------------------------------------------------------------------------------------
# The table


def torch_minor(version: str | None = None) -> str:
    """``2.13`` for torch ``2.13.0+cpu``."""
    return ".".join((version or torch.__version__).split("+")[0].split(".")[:2])


def table_path(version: str | None = None, table_dir: Path = TABLE_DIR) -> Path:
    return table_dir / f"torch-{torch_minor(version)}.json"


def _minor_tuple(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.stem))


def newest_table(table_dir: Path = TABLE_DIR) -> Path | None:
    return max(table_dir.glob("torch-*.json"), key=_minor_tuple, default=None)


def load_table(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def matches(key: str, entry: dict[str, Any]) -> bool:
    """Whether op ``key`` is one of ``entry["ops"]`` (a packet such as ``aten.put_`` matches every overload;
    ``aten.scatter.src`` one overload) with every argument condition in ``entry["when"]``."""
    op, attributes = parse_key(key)
    if op not in entry["ops"] and op.rsplit(".", 1)[0] not in entry["ops"]:
        return False
    return all(attributes.get(name) in allowed for name, allowed in entry.get("when", {}).items())


def flagged(keys: set[str], entries: list[dict[str, Any]]) -> dict[str, str]:
    """Each key matching an entry, with that entry's docstring bullet (or backend)."""
    return {key: entry.get("doc") or entry.get("backend", "") for key in sorted(keys) for entry in entries
            if matches(key, entry)}


def documented_ops(doc: str | None = None) -> dict[str, list[str]]:
    """The bullets of ``torch.use_deterministic_algorithms``'s two lists, whitespace-normalised:
    ``switched`` (made deterministic by the switch) and ``raises`` (RuntimeError under it)."""
    doc = doc if doc is not None else torch.use_deterministic_algorithms.__doc__
    lists: dict[str, list[str]] = {"switched": [], "raises": []}
    current: list[str] | None = None
    for line in doc.splitlines():
        text = line.strip()
        if "following normally-nondeterministic operations" in text:
            current = lists["raises"] if "throw" in text else lists["switched"]
        elif text.startswith("In addition"):
            current = None
        elif current is not None and text.startswith("* "):
            current.append(text[2:])
        elif current and text:  # a bullet's next line, or the header's (skipped: no bullet yet)
            current[-1] += " " + text
    return {name: [" ".join(item.split()) for item in items] for name, items in lists.items()}


def problems(kind: str, precision: str, keys: set[str], table: dict[str, Any],
             check_snapshot: bool = True) -> list[str]:
    """What is wrong with one audited step: an op that raises on CUDA, or (``check_snapshot``) one that the
    approved snapshot does not hold. Each message names the op and the kind."""
    found = [f"{kind} ({precision}): {key} raises under torch.use_deterministic_algorithms(True) on CUDA "
             f"(torch docs: {doc})" for key, doc in flagged(keys, table["raises_on_cuda"]).items()]
    if check_snapshot:
        approved = set(table.get("snapshot", {}).get(kind, {}).get(precision, []))
        found += [f"{kind} ({precision}): {key} is not in the approved snapshot of {table_label(table)}; check "
                  f"that it is deterministic on CUDA, then run `{REFRESH}` and commit the table"
                  for key in sorted(keys - approved)]
    return found


def table_label(table: dict[str, Any]) -> str:
    return f"src/ptft/aten_ops/torch-{table['torch']}.json"


# ---------------------------------------------------------------------------------------------------------
# One training step of each kind


@contextlib.contextmanager
def _global_torch_state() -> Iterator[None]:
    """Restore what setup_runtime changes (threads, determinism, cuDNN and TF32 flags), and progress bars."""
    import datasets

    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32, torch.random.get_rng_state())
    bars_off = datasets.utils.logging.is_progress_bar_enabled() is False
    datasets.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1], warn_only=saved[2])
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved[3:7]
        torch.random.set_rng_state(saved[7])
        if not bars_off:
            datasets.utils.logging.enable_progress_bar()


@dataclass
class StepResult:
    kind: str
    precision: str
    keys: set[str] = field(default_factory=set)
    attn_implementation: str | None = None
    error: str | None = None


def _tokenizer_dir(work: Path) -> Path:
    from ptft.pipeline.tokenizer import save_tokenizer, train_tokenizer

    out = work / "tokenizer"
    if not out.is_dir():
        save_tokenizer(train_tokenizer(TEXTS, vocab_size=150, min_frequency=1), out)
    return out


def _lm_trainer(kind: Kind, runtime: dict[str, Any], schedule: dict[str, Any], work: Path):  # noqa: ANN202
    from ptft.pipeline.modeling import language_model
    from ptft.pipeline.training import pretrain_trainer

    family = "modernbert" if kind.family == "gpt2" else kind.family  # clm builds GPT-2 of the same size
    model, tokenizer = language_model({"objective": kind.task, "init": "scratch"}, {**TINY_MODEL, "family": family},
                                      _tokenizer_dir(work))
    params = {"objective": kind.task, "evals": 1, "seq_len": 16, "mask_prob": 0.3, "epochs": 1, "batch_size": 2,
              "lr": 1e-3, "warmup": 0.0, "weight_decay": 0.01}
    # Three documents: under 2 x threads, so group_texts tokenises in this process (no worker pool).
    train = [" ".join(TEXTS[i::3][:5]) for i in range(3)]
    return model, pretrain_trainer(model, tokenizer, train, [" ".join(TEXTS[15:20])], params, 0, None,
                                   work / f"trainer-{kind.name}", runtime, **schedule)


def _classifier_trainer(kind: Kind, runtime: dict[str, Any], schedule: dict[str, Any], work: Path):  # noqa: ANN202
    """The finetune stage's Trainer for one step on a padded batch: the arguments and the padding collator
    that ``finetune_classifier`` uses, built here because neither the schedule nor the device can be passed
    to it (it trains on the GPU whenever there is one; the snapshot is of steps on CPU)."""
    from transformers import DataCollatorWithPadding, Trainer

    from ptft.pipeline.modeling import classifier, language_model
    from ptft.pipeline.training import encode_labelled, show_progress, training_arguments
    from ptft.pipeline.windows import Windows

    labels = ["a", "b"]
    if kind.family == "gpt2":  # pretrain.objective clm, then finetune.init: the GPT-2 checkpoint
        checkpoint = work / "clm-checkpoint"
        if not checkpoint.is_dir():
            lm, tok = language_model({"objective": "clm", "init": "scratch"}, {**TINY_MODEL, "family": "modernbert"},
                                     _tokenizer_dir(work))
            lm.save_pretrained(checkpoint)
            tok.save_pretrained(checkpoint)
        model, tokenizer = classifier(str(checkpoint), TINY_MODEL, None, labels, "mean")
    else:
        model, tokenizer = classifier("scratch", {**TINY_MODEL, "family": kind.family}, _tokenizer_dir(work), labels,
                                      kind.pooling)
    data = encode_labelled(PADDED_TEXTS, ["a", "b", "b", "a"], model.config.label2id, tokenizer, Windows(32))
    params = {"batch_size": len(PADDED_TEXTS), "epochs": 1, "lr": 1e-3, "warmup": 0.0, "weight_decay": 0.01}
    args = training_arguments(params, 0, work / f"trainer-{kind.name}", "finetune", runtime, logging_steps=1,
                              **schedule)
    return model, show_progress(Trainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                        data_collator=DataCollatorWithPadding(tokenizer)), "finetune")


def run_step(kind: Kind, precision: str, work: Path, device: str = "cpu") -> StepResult:
    """One optimizer step of ``kind`` (and one evaluation), under the pipeline's determinism switch, recorded."""
    from ptft.pipeline.runtime import setup_runtime

    result = StepResult(kind.name, precision)
    setup_runtime(0, torch.get_num_threads(), deterministic=True)  # raises on CUDA, as in a stage
    runtime = {"bf16": precision == "bf16", "compile": False}
    schedule = {"max_steps": 1, "eval_strategy": "steps", "eval_steps": 1, "save_strategy": "no",
                "use_cpu": device == "cpu"}
    build = _classifier_trainer if kind.task == "classifier" else _lm_trainer
    model, trainer = build(kind, runtime, schedule, work)
    result.attn_implementation = model.config._attn_implementation  # noqa: SLF001 - what transformers chose
    recorder = OpRecorder()
    try:
        with recorder:
            trainer.train()
    except RuntimeError as err:  # a nondeterministic kernel refused by the switch, on CUDA
        result.error = f"{type(err).__name__}: {err}".splitlines()[0]
    result.keys = recorder.keys
    return result


def audit(kinds: tuple[Kind, ...] = KINDS, precisions: tuple[str, ...] = PRECISIONS,
          device: str = "cpu") -> list[StepResult]:
    """One recorded step of every kind in every precision."""
    results = []
    with _global_torch_state(), tempfile.TemporaryDirectory(prefix="ptft-op-audit-") as tmp:
        for kind in kinds:
            for precision in precisions:
                results.append(run_step(kind, precision, Path(tmp), device))
    return results


# ---------------------------------------------------------------------------------------------------------
# Command line


def write_snapshot(results: list[StepResult], path: Path) -> Path:
    """Replace the snapshot of the table at ``path`` (started from the newest table if it has none yet)."""
    import transformers

    source = path if path.is_file() else newest_table(path.parent)
    table = load_table(source) if source else {"raises_on_cuda": [], "deterministic_when_switched": [],
                                                "backend_dependent": []}
    if source != path:
        table["started_from"] = source.name if source else None
    table.update({"torch": torch_minor(), "transformers": transformers.__version__})
    snapshot: dict[str, dict[str, list[str]]] = {}
    for result in results:
        snapshot.setdefault(result.kind, {})[result.precision] = sorted(result.keys)
    table["snapshot"] = snapshot
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_dump(table))
    return path


def _dump(table: dict[str, Any]) -> str:
    """JSON with one op key per line, so that a refreshed snapshot reads as a diff of op keys."""
    return json.dumps(table, indent=1) + "\n"


def _attention_backends(keys: set[str], table: dict[str, Any]) -> dict[str, str]:
    return flagged(keys, table.get("backend_dependent", []))


def report(results: list[StepResult], table: dict[str, Any] | None, table_file: Path | None,
           device: str) -> dict[str, Any]:
    """A JSON-ready summary: per kind and precision, errors, problems, attention kernels."""
    exact = table is not None and table.get("torch") == torch_minor()
    check_snapshot = exact and device == "cpu"  # the snapshot is recorded on CPU; CUDA picks its own kernels
    steps = []
    for result in results:
        found = problems(result.kind, result.precision, result.keys, table, check_snapshot) if table else []
        approved = set((table or {}).get("snapshot", {}).get(result.kind, {}).get(result.precision, []))
        steps.append({
            "kind": result.kind, "precision": result.precision, "ok": not result.error and not found,
            "error": result.error, "problems": found, "attn_implementation": result.attn_implementation,
            "attention_kernels": _attention_backends(result.keys, table or {}),
            "deterministic_when_switched": flagged(result.keys, (table or {}).get("deterministic_when_switched", [])),
            "ops": len(result.keys), "backward_ops": sum("backward" in key for key in result.keys),
            "not_in_cpu_snapshot": sorted(result.keys - approved) if table and not check_snapshot else [],
        })
    cuda = torch.cuda.is_available() and device == "cuda"
    return {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda, "table": str(table_file) if table_file else None,
        "table_matches_torch": exact, "deterministic_algorithms": True, "warn_only": False,
        "sdp_backends_enabled": {name: getattr(torch.backends.cuda, f"{name}_sdp_enabled")()
                                 for name in ("flash", "mem_efficient", "math", "cudnn")
                                 if hasattr(torch.backends.cuda, f"{name}_sdp_enabled")} if cuda else {},
        "ok": all(step["ok"] for step in steps),
        "steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptft.op_audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"),
                        help="where the steps run (default: cpu; auto: cuda if there is one)")
    parser.add_argument("--kinds", nargs="+", choices=KIND_NAMES, default=list(KIND_NAMES))
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    parser.add_argument("--table", type=Path, help="the op table (default: ptft/aten_ops/torch-<this torch>.json, "
                                                   "else the newest one there)")
    parser.add_argument("--write-snapshot", action="store_true", help="record this run as the approved snapshot")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    if args.write_snapshot and (device != "cpu" or set(args.kinds) != set(KIND_NAMES)
                                or set(args.precisions) != set(PRECISIONS)):
        parser.error("--write-snapshot records every kind and precision on CPU: drop --device/--kinds/--precisions")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    kinds = tuple(kind for kind in KINDS if kind.name in args.kinds)
    results = audit(kinds, tuple(args.precisions), device)
    if args.write_snapshot:
        path = write_snapshot(results, args.table or table_path())
        print(f"wrote the snapshot of {len(results)} steps to {path}")
        return 0
    table_file = args.table or (table_path() if table_path().is_file() else newest_table())
    table = load_table(table_file) if table_file else None
    summary = report(results, table, table_file, device)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    if table is None:
        print(f"no op table in {TABLE_DIR}: run `{REFRESH}` to start one", file=sys.stderr)
    elif not summary["table_matches_torch"]:
        print(f"no table for torch {torch_minor()}: checked against {table_file.name}", file=sys.stderr)
    for step in summary["steps"]:
        kernels = ", ".join(key.split(" ")[0] for key in step["attention_kernels"]) or "none"
        status = "ok" if step["ok"] else "FAIL"
        print(f"{status:4} {step['kind']:28} {step['precision']:4} {step['ops']:3} ops, attention "
              f"{step['attn_implementation']}: {kernels}")
        for line in ([step["error"]] if step["error"] else []) + step["problems"]:
            print(f"     {line}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
