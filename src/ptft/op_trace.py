"""Where do two training runs part? A hash of every aten op's output, recorded and compared.

``ptft.op_audit`` lists *which* ops a training step runs; this records *what each one computed*: for N
optimizer steps of the pipeline's own pre-training (or fine-tuning) with the repository's params (the
default model, ``runtime.threads``), every aten op dispatched -- forward, backward, gradient clipping,
optimizer, masking -- with its shapes, dtype, thread count, a hash of its inputs and a hash of its outputs.
Two records of the same steps made under different kernel settings (``ATEN_CPU_CAPABILITY``, ``MKL_CBWR``,
``ONEDNN_MAX_CPU_ISA``: what another CPU would pick) are compared op by op. The first op whose output bytes
differ while its inputs were equal is where the runs part; every op with that property is a kernel whose
result depends on the setting.

Usage (from the repository root, after ``dvc repro prepare_corpus``; finetune also needs ``models/pretrained``)::

    python -m ptft.op_trace record --steps 3 --out a.jsonl          # in this process, as the environment is
    python -m ptft.op_trace diff a.jsonl b.jsonl                     # the first op that parted, and every culprit
    python -m ptft.op_trace settings --steps 3 native avx2 \\
        'ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2,STRICT'              # record under each setting, diff each to the first

A setting is a name from :data:`ptft.pipeline.kernels.SETTINGS` or ``VAR=value`` pairs; each record runs in a
fresh process with the setting's variables (cleared where it names none, so ``native`` is what the machine
picks), since the libraries read them once, when they load. Records name the ISA torch chose.

This is a tool beside the pipeline: nothing under ``ptft.pipeline`` imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAGES = ("pretrain", "finetune")


@dataclass(frozen=True)
class OpCall:
    """One dispatched op: where it ran, what it was given and what it returned (as hashes)."""

    index: int
    step: int
    phase: str  # forward (and everything outside autograd) | backward
    op: str
    shapes: list[list[int]]
    dtype: str
    threads: int
    inputs: str
    output: str

    def describe(self) -> str:
        shapes = ", ".join("x".join(map(str, s)) or "scalar" for s in self.shapes)
        return (f"op {self.index} (step {self.step}, {self.phase}): {self.op} on [{shapes}] {self.dtype}, "
                f"{self.threads} threads")


def _tensor_bytes(value: Any) -> Iterator[bytes]:
    import torch

    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_meta:
            yield repr((value.layout, value.shape)).encode()
        else:
            tensor = value.detach().contiguous()
            yield str(tensor.dtype).encode() + repr(tuple(tensor.shape)).encode()
            yield tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensor_bytes(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensor_bytes(item)


def digest(value: Any) -> str:
    """A hash of every tensor's dtype, shape and bytes in ``value`` (nested lists, tuples and dicts)."""
    import xxhash

    hasher = xxhash.xxh3_64()
    for chunk in _tensor_bytes(value):
        hasher.update(chunk)
    return hasher.hexdigest()


def _shapes(args: tuple, kwargs: dict) -> tuple[list[list[int]], str]:
    import torch

    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    tensors += [t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
    return [list(t.shape) for t in tensors], str(tensors[0].dtype).removeprefix("torch.") if tensors else ""


def _recorder_class():  # noqa: ANN202 - built on first use: torch must load after the kernel settings
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpHasher(TorchDispatchMode):
        """Hashes the inputs and outputs of every op dispatched while active (autograd's backward included)."""

        def __init__(self, out: Any) -> None:
            super().__init__()
            self.out, self.index, self.step = out, 0, 1

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - the mode's signature
            kwargs = kwargs or {}
            inputs = digest((args, kwargs))
            result = func(*args, **kwargs)
            if func.namespace != "profiler":
                shapes, dtype = _shapes(args, kwargs)
                node = torch._C._current_autograd_node()  # noqa: SLF001 - autograd's, no public accessor
                phase = "backward" if node is not None else "forward"
                call = {"index": self.index, "step": self.step, "phase": phase, "op": str(func), "shapes": shapes,
                        "dtype": dtype, "threads": torch.get_num_threads(), "inputs": inputs, "output": digest(result)}
                self.out.write(json.dumps(call) + "\n")
                self.index += 1
            return result

    return OpHasher


def record(stage: str, steps: int, out: Path, params_file: Path = Path("params.yaml")) -> dict[str, Any]:
    """Run ``steps`` optimizer steps of ``stage`` as the pipeline runs it (its params, data, Trainer and kernel
    settings) with every op hashed into ``out`` (JSON lines, after a header line naming the setting)."""
    from ptft.pipeline.kernels import apply_kernels, kernel_facts
    from ptft.pipeline.params import load_params

    params = load_params(params_file)
    applied = apply_kernels(params["runtime"])  # before torch loads: the libraries read their settings once
    import torch
    from transformers import TrainerCallback

    from ptft.pipeline.runtime import setup_runtime

    setup_runtime(params["seed"], params["runtime"]["threads"], params["runtime"]["deterministic"])
    trainer = (_pretrain_trainer if stage == "pretrain" else _finetune_trainer)(params)
    header = {"stage": stage, "steps": steps, "kernels": kernel_facts(), "applied": applied,
              "threads": torch.get_num_threads()}

    with out.open("w") as f:
        f.write(json.dumps(header) + "\n")
        hasher = _recorder_class()(f)

        class Step(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 - Trainer's signature
                hasher.step = state.global_step + 1
                if state.global_step >= steps:
                    control.should_training_stop = True

        trainer.add_callback(Step())
        with hasher:
            trainer.train()
        header["ops"] = hasher.index
    return header


def _pretrain_trainer(params: dict[str, Any]):  # noqa: ANN202
    from ptft.pipeline.blocks import TokenBlocks
    from ptft.pipeline.data import read_split_dataset
    from ptft.pipeline.modeling import language_model
    from ptft.pipeline.training import pretrain_trainer

    pretrain = params["pretrain"]
    model, tokenizer = language_model(pretrain, params["model"], Path("data/tokenizer"))
    train = TokenBlocks(Path("data/corpus"), pretrain["seq_len"])
    validation = read_split_dataset(Path("data/prepared"), "validation")
    # The run's own schedule (learning rate, warmup over all its steps), cut after `steps`, with nothing saved.
    return pretrain_trainer(model, tokenizer, train, validation, pretrain, params["seed"], None,
                            Path(tempfile.mkdtemp(prefix="ptft-op-trace-")), params["runtime"],
                            save_strategy="no", eval_strategy="no")


def _finetune_trainer(params: dict[str, Any]):  # noqa: ANN202
    from ptft.pipeline.finetuning import finetune_inputs
    from ptft.pipeline.params import finetune_seed
    from ptft.pipeline.training import finetune_trainer

    seed = finetune_seed(params)
    inputs = finetune_inputs(params, seed)
    # The stage's Trainer (its optimizer, schedule and padding collator), cut after `steps`, with nothing saved.
    trainer, _ = finetune_trainer(inputs.model, inputs.tokenizer, inputs.train, inputs.validation, params["finetune"],
                                  seed, None, Path(tempfile.mkdtemp(prefix="ptft-op-trace-")), params["runtime"],
                                  save_strategy="no", eval_strategy="no", load_best_model_at_end=False)
    return trainer


def read_record(path: Path) -> tuple[dict[str, Any], list[OpCall]]:
    lines = path.read_text().splitlines()
    return json.loads(lines[0]), [OpCall(**json.loads(line)) for line in lines[1:]]


@dataclass
class Difference:
    """How two records of the same steps compare."""

    ops: int
    same_sequence: bool
    first: tuple[OpCall, OpCall] | None  # the first op whose output differs
    culprits: dict[str, tuple[OpCall, OpCall]]  # per op and shape: the first call with equal inputs, other outputs
    differing_outputs: int

    @property
    def identical(self) -> bool:
        return self.same_sequence and self.first is None


def compare(a: list[OpCall], b: list[OpCall]) -> Difference:
    """Compare two records op by op: the first output that differs, and every op that turned equal inputs into
    different outputs (a kernel whose result depends on the setting)."""
    same_sequence = len(a) == len(b) and all(x.op == y.op and x.shapes == y.shapes for x, y in zip(a, b))
    first, culprits, differing = None, {}, 0
    for x, y in zip(a, b):
        if x.op != y.op or x.shapes != y.shapes:
            break
        if x.output != y.output:
            differing += 1
            first = first or (x, y)
            if x.inputs == y.inputs:
                culprits.setdefault(f"{x.op} {x.shapes} {x.dtype}", (x, y))
    return Difference(min(len(a), len(b)), same_sequence, first, culprits, differing)


def describe(difference: Difference, name_a: str, name_b: str) -> str:
    if difference.identical:
        return f"{name_b}: identical to {name_a} ({difference.ops} ops, every output byte-equal)"
    lines = [f"{name_b}: differs from {name_a}"]
    if not difference.same_sequence:
        lines.append("  the op sequences differ (another code path ran)")
    if difference.first:
        lines.append(f"  first differing output: {difference.first[0].describe()}")
        lines.append(f"  {difference.differing_outputs} of {difference.ops} outputs differ; ops that turned equal "
                     f"inputs into different outputs ({len(difference.culprits)}):")
        lines += [f"    {x.describe()}" for x, _ in difference.culprits.values()]
    return "\n".join(lines)


# What a CPU without AVX2 picks: ATen's scalar kernels, oneMKL's and oneDNN's SSE4 paths, OpenBLAS's Nehalem.
SSE4 = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "SSE4_2,STRICT", "ONEDNN_MAX_CPU_ISA": "SSE41",
        "OPENBLAS_CORETYPE": "Nehalem", "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"}


def other_cpu_setting() -> str:
    """The kernel setting of another kind of x86 CPU that this one can run: AVX-512 where it has it (then the
    pinned AVX2 is the other kind), else SSE4 (a CPU older than AVX2)."""
    from ptft.pipeline.kernels import cpu_info

    return "avx512" if "avx512f" in cpu_info()["vector_extensions"] else "sse4"


def setting_env(setting: str) -> dict[str, str]:
    """The variables of a named setting (:data:`ptft.pipeline.kernels.SETTINGS`, or ``sse4``) or of
    ``VAR=value`` pairs."""
    from ptft.pipeline.kernels import SETTINGS, VARIABLES

    if setting == "sse4":
        return dict(SSE4)
    if setting in SETTINGS:
        return dict(SETTINGS[setting])
    pairs = dict(pair.split("=", 1) for pair in setting.split())
    unknown = set(pairs) - set(VARIABLES)
    if unknown:
        raise SystemExit(f"unknown variable(s) {', '.join(sorted(unknown))}: a setting is one of "
                         f"{', '.join(SETTINGS)} or pairs of {', '.join(VARIABLES)}")
    return pairs


def record_in_process(stage: str, steps: int, setting: str, out: Path, kernels: str | None = "native",
                      cwd: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """:func:`record` in a fresh process (in ``cwd``, with ``env`` over this one's) whose kernel variables are
    exactly ``setting``'s, with ``runtime.kernels`` overridden to ``kernels`` (``native``: the stage applies
    nothing over the setting; None: as params.yaml says)."""
    from ptft.pipeline.kernels import VARIABLES

    environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in VARIABLES}
    environ.update(setting_env(setting))
    cmd = [sys.executable, "-m", "ptft.op_trace", "record", "--stage", stage, "--steps", str(steps), "--out", str(out)]
    result = subprocess.run(cmd + (["--kernels", kernels] if kernels else []), cwd=cwd, env=environ,
                            capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"recording under '{setting}' failed:\n{result.stderr[-3000:]}")
    return read_record(out)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ptft.op_trace", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rec = commands.add_parser("record", help="record N steps in this process")
    rec.add_argument("--out", type=Path, required=True)
    diff = commands.add_parser("diff", help="compare two records")
    diff.add_argument("a", type=Path)
    diff.add_argument("b", type=Path)
    sets = commands.add_parser("settings", help="record under each setting in its own process; diff each to the first")
    sets.add_argument("settings", nargs="+")
    sets.add_argument("--keep", type=Path, help="keep the records in this folder")
    for sub in (rec, sets):
        sub.add_argument("--stage", choices=STAGES, default="pretrain")
        sub.add_argument("--steps", type=int, default=3)
        sub.add_argument("--kernels", help="override runtime.kernels for the run (native: apply nothing)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.command == "record":
        params_file = Path("params.yaml")
        if args.kernels:
            params_file = _params_with(params_file, {"runtime": {"kernels": args.kernels}})
        header = record(args.stage, args.steps, args.out, params_file)
        print(f"recorded {header['ops']} ops of {args.steps} {args.stage} steps to {args.out} ({_kernels(header)})")
        return 0
    if args.command == "diff":
        (_, a), (_, b) = read_record(args.a), read_record(args.b)
        difference = compare(a, b)
        print(describe(difference, str(args.a), str(args.b)))
        return 0 if difference.identical else 1
    folder = args.keep or Path(tempfile.mkdtemp(prefix="ptft-op-trace-"))
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, setting in enumerate(args.settings):
        path = folder / f"{i}.jsonl"
        header = record_in_process(args.stage, args.steps, setting, path, args.kernels or "native")
        records.append(read_record(path)[1])
        print(f"'{setting}': {len(records[-1])} ops, {_kernels(header)}")
    identical = True
    for setting, calls in zip(args.settings[1:], records[1:]):
        difference = compare(records[0], calls)
        identical &= difference.identical
        print(describe(difference, f"'{args.settings[0]}'", f"'{setting}'"))
    return 0 if identical else 1


def _kernels(header: dict[str, Any]) -> str:
    facts = header["kernels"]
    variables = " ".join(f"{k}={v}" for k, v in facts["variables"].items() if v is not None) or "no kernel variables"
    return f"{facts['torch_cpu_capability']} kernels, {facts['threads']} threads, {variables}"


def _params_with(path: Path, override: dict[str, Any]) -> Path:
    """A copy of params file ``path`` with ``override`` merged in (a temp file)."""
    import yaml

    from ptft.pipeline.params import deep_merge, read_yaml

    merged = deep_merge(read_yaml(path), override)
    out = Path(tempfile.mkdtemp(prefix="ptft-op-trace-")) / "params.yaml"
    out.write_text(yaml.safe_dump(merged, sort_keys=False))
    return out


if __name__ == "__main__":
    sys.exit(main())
