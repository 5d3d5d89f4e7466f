"""The frame every stage script runs in: params, determinism, keyed checkpoints, lineage and the run log."""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptft.pipeline.artifacts import (
    atomic_dir,
    save_loaded_tokenizer,
    storage_problem,
    unwritable,
    write_json,
    write_text,
)
from ptft.pipeline.cards import model_card
from ptft.pipeline.hub import hub_identity, parse_hub, unpinned_warning
from ptft.pipeline.kernels import KernelError, apply_kernels, kernel_facts
from ptft.pipeline.lineage import (
    LINEAGE_FILE,
    fingerprint,
    lineage_inputs,
    lineage_record,
    run_environment,
    stage_inputs,
    stage_outputs,
)
from ptft.pipeline.params import UserError, declared, load_params
from ptft.pipeline.runtime import is_main_process, setup_runtime, wait_for_all_processes

if TYPE_CHECKING:  # transformers takes seconds to import; stages without a model do not need it
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

CHECKPOINTS = Path("checkpoints")
LOGS = Path("logs")


@dataclass
class StageRun:
    """One run of a stage: its params and seed, what it depends on, and the facts for its run log."""

    name: str
    params: dict[str, Any]
    seed: int
    inputs: dict[str, Any]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def threads(self) -> int:
        return self.params["runtime"]["threads"]

    @property
    def runtime(self) -> dict[str, Any]:
        """The ``runtime`` params block: threads, determinism and the GPU speed options."""
        return self.params["runtime"]

    @property
    def checkpoint_dir(self) -> Path:
        """``checkpoints/<stage>/<hash of params and deps>``: a checkpoint from other inputs is never resumed."""
        return CHECKPOINTS / self.name / fingerprint(self.inputs)

    def write_lineage(self, out_dir: Path, artifact: str, metrics: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Write ``lineage.json`` for ``artifact`` into ``out_dir`` (its scratch directory) and return it."""
        record = lineage_record(self.name, artifact, self.params, self.inputs, metrics, **extra)
        write_json(out_dir / LINEAGE_FILE, record)
        return record

    @contextmanager
    def output_dir(self, path: str | Path) -> Iterator[Path]:
        """A scratch directory renamed to ``path`` when the block succeeds (:func:`atomic_dir`). Under
        torchrun only rank 0 writes outputs: the other processes get a throwaway directory."""
        if is_main_process():
            with atomic_dir(path) as out:
                yield out
        else:
            with tempfile.TemporaryDirectory() as out:
                yield Path(out)

    @contextmanager
    def system_monitor(self) -> Iterator[None]:
        """Log CPU, RAM and disk use (and GPU use, on a GPU) with dvclive while the block runs, into
        ``logs/system/<stage>/``. No two runs measure the same, so these numbers stay out of the stage's DVC outputs,
        as the run log does; dvc.yaml's top-level plots show them all the same."""
        if not is_main_process():
            yield
            return
        import dvclive.monitor_system
        import torch
        from dvclive import Live

        # dvclive samples the GPU first whenever pynvml imports, and on a machine without NVIDIA's driver that
        # failure also loses the CPU and RAM samples: look at the GPU only where torch sees one.
        dvclive.monitor_system.GPU_AVAILABLE = dvclive.monitor_system.GPU_AVAILABLE and torch.cuda.is_available()
        live = Live(str(LOGS / "system" / self.name), save_dvc_exp=False, dvcyaml=None, report=None)
        live.monitor_system(interval=0.05, num_samples=10)  # a sample every 50 ms, logged every half second
        try:
            yield
        finally:
            live.end()

    def save_model(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, artifact: str,
                   metrics: dict[str, Any], init: tuple[str, str] | None = None, files: tuple[Path, ...] = (),
                   **card: str) -> None:
        """Save ``model`` and ``tokenizer`` to ``artifact`` in HF format, with ``lineage.json``, a model card
        (``card``: the :func:`ptft.pipeline.cards.model_card` texts) and copies of ``files`` (code the model's
        config names), renamed into place only when all is written. ``init`` (the param's key and value) names
        the checkpoint the model started from: a Hub one's resolved commit goes into the lineage."""
        extra = {"init": init_identity(*init, self.name)} if init and init[1].startswith("hf:") else {}
        with self.output_dir(artifact) as out:
            for file in files:
                shutil.copyfile(file, out / file.name)
            model.save_pretrained(out)
            save_loaded_tokenizer(tokenizer, out)
            lineage = self.write_lineage(out, artifact, metrics, **extra)
            write_text(out / "README.md", model_card(lineage=lineage, **card))


def init_identity(key: str, init: str, stage: str) -> dict[str, Any]:
    """The lineage of a Hub checkpoint ``init`` (``hf:<id>[@<revision>]``): the commit it resolved to; a warning
    printed and kept when it is not pinned to one."""
    ref = parse_hub(init)
    identity: dict[str, Any] = hub_identity(ref, "model")
    warning = unpinned_warning(ref, identity["resolved"])
    if warning:
        identity["warning"] = f"{key} {warning}"
        print(f"{stage}: warning: {identity['warning']}", file=sys.stderr)
    return identity


@contextmanager
def run_stage(name: str, seed: Callable[[dict[str, Any]], int] = lambda params: params["seed"]) -> Iterator[StageRun]:
    """Set up and frame one stage run.

    Before: read and check params.yaml, seed everything and fix the threads, hash the stage's
    inputs, and drop checkpoints left by runs with other inputs. After success: remove the
    stage's checkpoints. Always: append the run's timings and host to ``logs/<stage>.jsonl``,
    which is not a DVC output, so those facts never make a tracked file differ. Under torchrun,
    every process trains but only rank 0 touches files outside the checkpoints. A user error (bad
    param, missing file, malformed data, an unwritable output directory) ends the stage with its one-line
    message and exit status 2; a full disk with one line and status 1.
    """
    try:
        params = load_params()
        try:
            apply_kernels(params["runtime"])
        except KernelError as err:
            raise UserError(str(err)) from None
        inputs = stage_inputs(name, params)
        # The stage sees the params its dvc.yaml entry declares, no more: an undeclared read fails loudly.
        run = StageRun(name, declared(params, list(inputs["params"]), name), 0, inputs)
        run.seed = seed(run.params)
        setup_runtime(run.seed, run.threads, run.params["runtime"]["deterministic"])
        main = is_main_process()
        stage_dir = CHECKPOINTS / name
        blocked = unwritable([*stage_outputs(name, params), stage_dir, LOGS / name]) if main else []
        if blocked:  # found now, not after the training that would have written them
            raise UserError(f"cannot write the stage's outputs: {', '.join(blocked)} is not writable by this "
                            "user; make it writable (chmod u+w), or work in a clone you own")
        for stale in (p for p in stage_dir.glob("*") if main and p != run.checkpoint_dir):
            shutil.rmtree(stale, ignore_errors=True)
        started, status = time.time(), "failed"
        # SIGTERM (kill, a scheduler, CI's timeout) stops the stage as Ctrl-C does: scratch outputs are
        # removed, the run log says "interrupted", and the checkpoints stay for the next `dvc repro`.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            yield run
            status = "succeeded"
            wait_for_all_processes()
            if main:
                shutil.rmtree(stage_dir, ignore_errors=True)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            if main:
                _append_run_log(run, status, started)
    except UserError as err:  # a bad param, path or data row: the message says what to fix
        print(f"{name}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as err:  # the run log's line said "interrupted"; the shell's status for the signal
        raise SystemExit(128 + getattr(err, "signum", signal.SIGINT)) from None
    except Exception as err:  # a full disk, or a directory made read-only mid-run: say so, not a traceback
        problem = storage_problem(err)
        if problem is None:
            raise
        print(f"{name}: error: {problem}", file=sys.stderr)
        raise SystemExit(1) from None


class Stopped(KeyboardInterrupt):
    """A stage stopped by a signal (SIGTERM from kill, a scheduler, CI's timeout): unwound as Ctrl-C is."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signal.Signals(signum).name}")
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    raise Stopped(signum)


def _append_run_log(run: StageRun, status: str, started: float) -> None:
    entry = {
        "stage": run.name,
        "status": status,
        "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - started, 2),
        "host": platform.node(),
        "cwd": os.getcwd(),
        "command": [sys.executable, *sys.argv],
        "inputs_fingerprint": fingerprint(run.inputs) if run.inputs else None,
        # What ptft lineage matches an artifact's lineage.json by (it holds no code hashes).
        "lineage_inputs": fingerprint(lineage_inputs(run.inputs)) if run.inputs else None,
        "environment": run_environment(run.threads),
        "machine": kernel_facts(),
        **run.facts,
    }
    try:
        LOGS.mkdir(exist_ok=True)
        with (LOGS / f"{run.name}.jsonl").open("a") as f:
            f.write(json.dumps(entry) + "\n")
    except OSError as err:  # the log is a convenience; a full disk must not hide the stage's own error
        print(f"{run.name}: could not append to the run log: {err}", file=sys.stderr)
    resume = "; dvc repro reruns it, from its last checkpoint if it saved one" if status == "interrupted" else ""
    print(f"{run.name}: {status} in {entry['wall_seconds']:.1f} s{resume} (run log: {LOGS / run.name}.jsonl)")
