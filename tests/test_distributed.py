"""End-to-end: data-parallel pretrain and finetune under torchrun (2 CPU processes, gloo), through `dvc repro`.

Both launches split the same global batch: the Trainer's sampler is seeded by ``seed`` alone, so the 2
processes' micro-batches of a step are the two halves of the 1-process batch, and DDP averages their
gradients. The training losses then agree step by step, which a loss scaled by the number of processes,
or ranks that each train alone, cannot.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import assert_resumed_like_unbroken, copy_clone, dvc, repro_until_checkpoint

LAUNCH = "torchrun --standalone --nproc_per_node=2"
TWO_PROCESSES = {"runtime": {"launch": LAUNCH}}
LONGER_PRETRAIN = {"pretrain": {"epochs": 0.05}}  # as in test_reproducibility: time to kill it mid-run
# The same examples in every global batch, and nothing random that depends on the rank: causal LM (no masks;
# every block full, so both ranks average over the same number of tokens; dropout is 0), and 48 fine-tuning
# examples, 3 full batches of 16 (a short last batch would be padded by looping back on 2 processes).
SAME_BATCHES = {"pretrain": {"objective": "clm"}, "finetune": {"train_examples": 48}}
# Relative difference between the losses of 1 and 2 processes at the same step. Measured (2 CPU cores): training
# loss 1.5e-7 at most over pretrain's 38 steps, 0 over finetune's 3; validation loss 1e-5 (pretrain) and 1.8e-4
# (finetune: on 2 processes the Trainer scores the last, uneven validation batch padded with repeated examples).
# A doubled or halved loss is off by 100% or 50%, and ranks training without DDP by 2.8e-4 at the first step
# (rank 0's half batch alone) and by up to 1.4e-2 later: none of them passes.
TRAIN_LOSS_TOLERANCE = 1e-4
EVAL_LOSS_TOLERANCE = 1e-3
# MLM: each rank masks its own half of the batch with a generator keyed by its rank, so the two launches mask
# different tokens and their losses differ by the masks' noise: measured up to 2.3% a step, 0.2% on validation.
# Still no doubled or halved loss passes.
MLM_STEP_TOLERANCE = 0.1
MLM_EVAL_TOLERANCE = 0.01


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _curve(clone: Path, stage: str, name: str) -> dict[int, float]:
    """A dvclive curve of ``reports/<stage>``: ``train/loss`` (each logged step) or ``eval/loss``, by step."""
    lines = (clone / f"reports/{stage}/plots/metrics/{name}.tsv").read_text().splitlines()
    assert lines[0] == "step\tloss"
    return {int(step): float(loss) for step, loss in (line.split("\t") for line in lines[1:])}


def _assert_same_curve(one: dict[int, float], two: dict[int, float], tolerance: float) -> None:
    assert list(two) == list(one) and len(one) > 0
    worst = max(abs(two[step] / one[step] - 1) for step in one)
    assert worst <= tolerance, {step: (one[step], two[step]) for step in one}


@pytest.fixture(scope="module")
def same_batches(smoke_run, tmp_path_factory) -> dict:
    """pretrain and finetune with SAME_BATCHES, on 1 process and on 2; dvc's status and output on 2."""
    root = tmp_path_factory.mktemp("same-batches")
    one = copy_clone(smoke_run[0], root / "one", SAME_BATCHES)
    dvc("repro", "pretrain", "finetune", cwd=one)
    two = copy_clone(smoke_run[0], root / "two", {**SAME_BATCHES, **TWO_PROCESSES})
    stale = set(json.loads(dvc("status", "--json", cwd=two).stdout))
    return {"one": one, "two": two, "stale": stale, "output": dvc("repro", "pretrain", "finetune", cwd=two).stdout}


@pytest.fixture(scope="module")
def mlm_two(smoke_run, tmp_path_factory) -> Path:
    """The smoke run's pretrain (MLM, the default) again on 2 processes."""
    clone = copy_clone(smoke_run[0], tmp_path_factory.mktemp("mlm") / "ptft", TWO_PROCESSES)
    dvc("repro", "pretrain", cwd=clone)
    return clone


def _kill_everything(process: subprocess.Popen) -> None:
    """SIGKILL dvc and every process under it, as a power cut would.

    torchrun starts each worker in a session of its own: killing dvc's process group alone leaves the
    workers training to the end, writing the outputs and removing the checkpoints.
    """
    tree = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGKILL)
    for child in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    process.wait()
    _, alive = psutil.wait_procs(tree, timeout=60)
    assert not alive, alive


@pytest.fixture(scope="module")
def resumed_two(smoke_run, tmp_path_factory) -> tuple[Path, Path, str]:
    """A longer 2-process MLM pretrain uninterrupted, and one killed after its first checkpoint then rerun by
    `dvc repro`; and the rerun's output. (The smoke run's pretrain can end between two polls.)"""
    root = tmp_path_factory.mktemp("resume")
    unbroken = copy_clone(smoke_run[0], root / "unbroken", {**LONGER_PRETRAIN, **TWO_PROCESSES})
    dvc("repro", "pretrain", cwd=unbroken)
    killed = copy_clone(smoke_run[0], root / "killed", {**LONGER_PRETRAIN, **TWO_PROCESSES})
    process = repro_until_checkpoint(killed)
    _kill_everything(process)
    assert len((killed / "logs/pretrain.jsonl").read_text().splitlines()) == 1  # the smoke run's: none finished
    return unbroken, killed, dvc("repro", "pretrain", cwd=killed).stdout


def test_torchrun_two_processes_match_one(same_batches):
    one, two, output = same_batches["one"], same_batches["two"], same_batches["output"]
    stale = same_batches["stale"]
    assert {"pretrain", "finetune"} <= stale and "prepare" not in stale  # the launcher is part of their command
    assert f"{LAUNCH} stages/pretrain.py" in output and f"{LAUNCH} stages/finetune.py" in output

    for out in ("models/pretrained", "reports/pretrain", "models/finetuned", "reports/finetune"):
        assert _files(two / out) == _files(one / out), out  # rank 0 alone wrote, and wrote everything
    assert not list(two.glob("**/.*.tmp")) and not (two / "checkpoints/pretrain").exists()
    logged = [json.loads(line) for line in (two / "logs/pretrain.jsonl").read_text().splitlines()]
    assert len(logged) == 2 and logged[-1]["status"] == "succeeded"  # the smoke run's entry and rank 0's
    for stage in ("pretrain", "finetune"):  # the same global batch, so the same schedule
        metrics = [json.loads((c / f"reports/{stage}/metrics.json").read_text()) for c in (one, two)]
        assert metrics[1]["steps"] == metrics[0]["steps"], stage
    assert json.loads(dvc("status", "--json", "pretrain", "finetune", cwd=two).stdout) == {}


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_losses_of_one_and_two_processes_agree_step_by_step(same_batches, stage):
    """Same examples, same weights at every step: only float rounding may differ (see TRAIN_LOSS_TOLERANCE)."""
    one, two = same_batches["one"], same_batches["two"]
    train = _curve(one, stage, "train/loss")
    assert list(train) == list(range(1, json.loads((one / f"reports/{stage}/metrics.json").read_text())["steps"] + 1))
    _assert_same_curve(train, _curve(two, stage, "train/loss"), TRAIN_LOSS_TOLERANCE)
    _assert_same_curve(_curve(one, stage, "eval/loss"), _curve(two, stage, "eval/loss"), EVAL_LOSS_TOLERANCE)


def test_mlm_losses_of_one_and_two_processes_differ_by_the_masks_only(smoke_run, mlm_two):
    single = smoke_run[0]
    _assert_same_curve(_curve(single, "pretrain", "train/loss"), _curve(mlm_two, "pretrain", "train/loss"),
                       MLM_STEP_TOLERANCE)
    _assert_same_curve(_curve(single, "pretrain", "eval/loss"), _curve(mlm_two, "pretrain", "eval/loss"),
                       MLM_EVAL_TOLERANCE)


def test_killed_torchrun_pretrain_resumes_to_the_identical_model(resumed_two, smoke_run):
    unbroken, killed, output = resumed_two
    assert_resumed_like_unbroken(killed, unbroken, output, smoke_run[0])
